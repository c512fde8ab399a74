//! Backup and restore against real PostgreSQL with its own client programs: a database
//! filled by a real run is dumped by `finrep backup`, restored by `finrep restore` into a
//! fresh database, and every table compared by row count and a checksum of its contents.
//! Retention deletes only finrep's own old dumps.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use sqlx::Connection;

/// Every table's row count and a checksum of its rows.
async fn fingerprint(url: &str) -> BTreeMap<String, (i64, String)> {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut out = BTreeMap::new();
    for t in tables {
        let (n, sum): (i64, Option<String>) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*), md5(string_agg(x::text, '|' ORDER BY x::text)) FROM \"{t}\" x"
        )))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        out.insert(t, (n, sum.unwrap_or_default()));
    }
    out
}

/// The fingerprints of a backed-up database and of its restored dump, but for the record of
/// that backup: written once the dump was complete, it cannot be in it (the console reads it).
async fn restored_alike(
    source: &str,
    restored: &str,
) -> (
    BTreeMap<String, (i64, String)>,
    BTreeMap<String, (i64, String)>,
) {
    let (mut before, mut after) = (fingerprint(source).await, fingerprint(restored).await);
    assert_eq!(
        before.remove("backups").map(|b| b.0),
        Some(1),
        "the backup was recorded"
    );
    assert_eq!(after.remove("backups").map(|b| b.0), Some(0));
    (before, after)
}

fn finrep(args: &[&str], url: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_finrep"))
        .args(["--log-format", "json"])
        .args(args)
        .env("DATABASE_URL", url)
        .output()
        .unwrap()
}

/// `finrep backup` with `args`: what it printed, once it exited 0.
fn backed_up(args: &[&str], url: &str) -> serde_json::Value {
    let out = finrep(&[&["backup"], args].concat(), url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn backup_restore_gives_the_same_database_and_retention_spares_other_files() {
    let url = common::fill::filled_database().await;
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "finrep_brief_20200101.sql.gz",
        "finrep_other_20200101.sql.gz",
        "notes.txt",
    ] {
        std::fs::write(dir.path().join(name), "keep?").unwrap();
    }
    let dir_arg = dir.path().to_str().unwrap();
    let result = backed_up(
        &["--dir", dir_arg, "--name", "brief", "--retention-days", "3"],
        &url,
    );
    assert_eq!(
        result["pruned"],
        serde_json::json!(["finrep_brief_20200101.sql.gz"])
    );
    let dump = result["file"].as_str().unwrap().to_string();
    assert!(dump.ends_with(&finrep::backup::file_name(
        "brief",
        chrono::Local::now().date_naive()
    )));
    assert!(dir.path().join("finrep_other_20200101.sql.gz").exists());
    assert!(dir.path().join("notes.txt").exists());

    let fresh = common::scratch_database().await;
    let out = finrep(&["restore", "--file", &dump], &fresh);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (before, after) = restored_alike(&url, &fresh).await;
    assert!(
        before["delivery_log"].0 >= 3 && before["articles"].0 >= 2,
        "{before:?}"
    );
    assert_eq!(before, after);

    // Restoring over a database that has finrep's tables is refused.
    let out = finrep(&["restore", "--file", &dump], &fresh);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("restore into an empty database"));
    // The restored database is current: migrate has nothing to apply.
    let out = finrep(&["migrate"], &fresh);
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"applied\":0"));
}

/// `finrep status` after a run that bounced an address: the report needs attention (exit 1),
/// the blacklist names the address, JSON and table alike.
#[tokio::test]
async fn status_reports_a_partly_failed_run_and_exits_non_zero() {
    let url = common::fill::filled_database().await;
    let out = finrep(&["status", "-o", "json"], &url);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(o["reports"][0]["report"], "brief");
    assert_eq!(o["reports"][0]["health"], "failed");
    assert_eq!(o["reports"][0]["lastRun"]["phase"], "PartiallyDelivered");
    assert_eq!(o["blacklist"][0]["email"], "gone@example.com");
    let out = finrep(&["status"], &url);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("NAMESPACE"), "{table}");
    assert!(table.contains("gone@example.com"), "{table}");

    // A report whose slot the scheduler recorded, that came due, and that never ran: missed,
    // as the console's card says it — with no manifest at hand.
    let store = finrep::store::Store::connect(&url, 1, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    store
        .record_next_slot(
            "default",
            "close",
            Some(chrono::Utc::now() - chrono::Duration::hours(2)),
        )
        .await
        .unwrap();
    let out = finrep(&["status", "-o", "json"], &url);
    let o: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let close = o["reports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["report"] == "close")
        .unwrap_or_else(|| panic!("{o:#}"));
    assert_eq!(close["health"], "missed", "{o:#}");
    assert_eq!(close["reasons"][0]["kind"], "slot-without-run", "{o:#}");
    let table = String::from_utf8_lossy(&finrep(&["status"], &url).stdout).to_string();
    assert!(
        table.contains("default/close: the slot at") && table.contains("came due and nothing ran"),
        "{table}"
    );
}

/// Tables of the public schema: none after a restore that failed.
async fn tables(url: &str) -> Vec<String> {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

fn gunzip(path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()),
        &mut out,
    )
    .unwrap();
    out
}

/// A restore is all or nothing: a dump cut in half (gzipped or plain), or one with a failing
/// statement in the middle, leaves the database empty, and the message says where it stopped.
#[tokio::test]
async fn a_damaged_dump_restores_nothing_and_says_where_it_stopped() {
    let url = common::fill::filled_database().await;
    let dir = tempfile::tempdir().unwrap();
    let result = backed_up(
        &["--dir", dir.path().to_str().unwrap(), "--name", "cut"],
        &url,
    );
    let dump = result["file"].as_str().unwrap().to_string();
    let gz = std::fs::read(&dump).unwrap();
    let sql = gunzip(&dump);

    let half_gz = dir.path().join("half.sql.gz");
    std::fs::write(&half_gz, &gz[..gz.len() / 2]).unwrap();
    let half_sql = dir.path().join("half.sql");
    std::fs::write(&half_sql, &sql[..sql.len() / 2]).unwrap();
    let broken = dir.path().join("broken.sql");
    let text = String::from_utf8(sql.clone()).unwrap();
    let at = text.find("\nCOPY ").expect("the dump copies rows");
    let broken_text = format!(
        "{}\nINSERT INTO no_such_table VALUES (1);{}",
        &text[..at],
        &text[at..]
    );
    std::fs::write(&broken, broken_text).unwrap();

    for (file, expected) in [
        (half_gz.to_str().unwrap(), "cannot be read past"),
        (half_sql.to_str().unwrap(), "without pg_dump's closing line"),
        (broken.to_str().unwrap(), "no_such_table"),
    ] {
        let fresh = common::scratch_database().await;
        let out = finrep(&["restore", "--file", file], &fresh);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file}: {stderr}");
        assert!(stderr.contains(expected), "{file}: {stderr}");
        assert!(stderr.contains("nothing was restored"), "{file}: {stderr}");
        assert_eq!(tables(&fresh).await, Vec::<String>::new(), "{file}");
    }
    // The whole dump still restores.
    let fresh = common::scratch_database().await;
    let out = finrep(&["restore", "--file", &dump], &fresh);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (before, after) = restored_alike(&url, &fresh).await;
    assert_eq!(before, after);
}

/// The password reaches pg_dump in its environment, never on its command line (where `ps`
/// shows it to every user); dumps are readable by their owner only, in a private directory.
#[tokio::test]
async fn passwords_stay_off_the_command_line_and_dumps_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let url = common::fill::filled_database().await;
    let secret = "s3cr t@pw/%";
    let encoded = "s3cr%20t%40pw%2F%25";
    let with_password = url.replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{encoded}@"),
        1,
    );
    assert_ne!(
        with_password, url,
        "the test database URL has a user to add a password to"
    );
    let work = tempfile::tempdir().unwrap();
    let seen = work.path().join("seen");
    let wrapper = work.path().join("pg_dump");
    let real = Command::new("sh")
        .args(["-c", "command -v pg_dump"])
        .output()
        .unwrap();
    let real = String::from_utf8_lossy(&real.stdout).trim().to_string();
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" >> '{seen}.args'\nprintf '%s' \"$PGPASSWORD\" > '{seen}.env'\nexec '{real}' \"$@\"\n",
            seen = seen.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dumps = work.path().join("dumps");
    let out = Command::new(env!("CARGO_BIN_EXE_finrep"))
        .args([
            "backup",
            "--dir",
            dumps.to_str().unwrap(),
            "--name",
            "private",
        ])
        .arg("--pg-dump")
        .arg(&wrapper)
        .env("DATABASE_URL", &with_password)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let args = std::fs::read_to_string(seen.with_extension("args")).unwrap();
    assert!(!args.contains(encoded) && !args.contains(secret), "{args}");
    assert!(args.contains("--dbname"), "{args}");
    assert_eq!(
        std::fs::read_to_string(seen.with_extension("env")).unwrap(),
        secret
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let file = result["file"].as_str().unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(std::path::Path::new(file)), 0o600);
    assert_eq!(mode(&dumps), 0o700);
}
