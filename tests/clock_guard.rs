//! The guard of the shifted-clock run (scripts/shifted-clock-tests.sh): the tests there must
//! really see the moved clock, or their passing proves nothing. Outside that run it checks
//! nothing and says so.

#[test]
fn the_shifted_clock_run_sees_the_shifted_clock() {
    let Ok(at_least) = std::env::var("FINREP_TEST_CLOCK_AT_LEAST") else {
        eprintln!("not a shifted-clock run (FINREP_TEST_CLOCK_AT_LEAST unset)");
        return;
    };
    let at_least = chrono::DateTime::parse_from_rfc3339(&at_least)
        .expect("FINREP_TEST_CLOCK_AT_LEAST is RFC 3339")
        .to_utc();
    let now = chrono::Utc::now();
    assert!(
        now >= at_least,
        "this test process reads {now}, not a clock moved past {at_least}: the faketime runner did not apply"
    );
    // The processes the tests start (finrep itself) inherit it.
    let child = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date runs");
    let child_now =
        chrono::DateTime::parse_from_rfc3339(String::from_utf8_lossy(&child.stdout).trim())
            .expect("date prints RFC 3339")
            .to_utc();
    assert!(child_now >= at_least, "a child process reads {child_now}");
}
