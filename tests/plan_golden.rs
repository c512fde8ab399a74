//! The run plan is a contract between images: the controller of one version writes plans
//! that Jobs of another version read. A plan written by an earlier build is checked in; this
//! build must read it, find it valid, and build the same plan from the same manifests. When
//! the shape changes incompatibly, bump `PLAN_VERSION` and add a new golden file (write it
//! with `FINREP_BLESS=1 cargo test --test plan_golden`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate};
use finrep::plan::{PLAN_VERSION, RunPlan, Slot};

fn golden_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "tests/fixtures/plans/morning-brief-v{PLAN_VERSION}.yaml"
    ))
}

fn plan_from_examples() -> RunPlan {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/examples");
    let loaded = finrep::manifest::load_valid(&[dir], &Default::default()).unwrap();
    let slot = Slot {
        date: NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
        scheduled_for: DateTime::parse_from_rfc3339("2026-11-23T06:00:00+08:00").unwrap(),
        manual: false,
    };
    let blacklist = BTreeSet::from(["li.na@example.com".to_string()]);
    let report = loaded
        .set
        .reports
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some("morning-brief"))
        .unwrap();
    finrep::plan::build_plan(
        report,
        &loaded.set.sources,
        &loaded.set.recipients,
        &blacklist,
        slot,
    )
}

#[test]
fn a_plan_written_by_an_earlier_build_is_read_and_equal() {
    let built = plan_from_examples();
    if std::env::var_os("FINREP_BLESS").is_some() {
        std::fs::write(golden_path(), built.to_yaml().unwrap()).unwrap();
    }
    let text = std::fs::read_to_string(golden_path()).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; write it with FINREP_BLESS=1 cargo test --test plan_golden",
            golden_path().display()
        )
    });
    let golden = RunPlan::from_yaml(&text).expect("the golden plan parses");
    golden.validate().expect("the golden plan is valid");
    assert_eq!(
        golden, built,
        "this build makes a different plan from the same manifests: if Jobs of older images can still read it, \
         re-bless the golden file; if not, bump PLAN_VERSION"
    );
    assert!(!golden.recipients.is_empty() && !golden.sources.is_empty());
}

#[test]
fn plans_of_another_version_are_refused_with_a_reason() {
    let text = std::fs::read_to_string(golden_path()).unwrap();
    let newer = text.replace(
        &format!("planVersion: {PLAN_VERSION}"),
        &format!("planVersion: {}", PLAN_VERSION + 1),
    );
    let err = RunPlan::from_yaml(&newer).unwrap_err().to_string();
    assert!(err.contains("is not supported"), "{err}");
}
