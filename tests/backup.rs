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

fn finrep(args: &[&str], url: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_finrep"))
        .args(["--log-format", "json"])
        .args(args)
        .env("DATABASE_URL", url)
        .output()
        .unwrap()
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
    let out = finrep(
        &[
            "backup",
            "--dir",
            dir_arg,
            "--name",
            "brief",
            "--retention-days",
            "3",
        ],
        &url,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
    let (before, after) = (fingerprint(&url).await, fingerprint(&fresh).await);
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
}
