//! Backup and restore against real PostgreSQL with its own client programs: a database
//! filled by a real run is dumped by `finrep backup`, restored by `finrep restore` into a
//! fresh database, and every table compared by row count and a checksum of its contents.
//! Retention deletes only finrep's own old dumps.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use common::http::{Response, TestServer};
use common::smtp::SmtpServer;
use finrep::pipeline::deliver::DeliveryOptions;
use finrep::pipeline::fetch::FetchConfig;
use finrep::pipeline::guard::NetworkPolicy;
use finrep::pipeline::{PipelineOptions, run};
use finrep::plan::Slot;
use finrep::store::Store;
use finrep::window::WindowMode;
use sqlx::Connection;

const FEED: &str = r#"<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>
<item><title>央行开展5000亿元MLF操作</title><link>https://e.example.com/mlf</link><description>利率持平。</description><pubDate>Sun, 22 Nov 2026 21:00:00 GMT</pubDate></item>
<item><title>贵州茅台(600519)三季度净利润预增</title><link>https://e.example.com/moutai</link><description>公告。</description><pubDate>Sun, 22 Nov 2026 20:00:00 GMT</pubDate></item>
</channel></rss>"#;

/// A database holding one real run: sources fetched, articles, a composed report, deliveries.
async fn filled_database() -> String {
    let feeds = TestServer::start().await;
    feeds.route("/rss.xml", Response::ok("application/rss+xml", FEED));
    let smtp = SmtpServer::start(serde_json::json!({"reject": ["gone@example.com"]}));
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = format!(
        "apiVersion: finrep.io/v1alpha1\nkind: Source\nmetadata:\n  name: news\nspec:\n  kind: feed\n  url: {}\n  category: 宏观\n---\n",
        feeds.url("/rss.xml")
    );
    for (i, email) in ["a@example.com", "b@example.com", "gone@example.com"]
        .iter()
        .enumerate()
    {
        yaml += &format!(
            "apiVersion: finrep.io/v1alpha1\nkind: Recipient\nmetadata:\n  name: r{i}\nspec:\n  email: {email}\n  displayName: 读者{i}\n---\n"
        );
    }
    yaml += &format!(
        "apiVersion: finrep.io/v1alpha1\nkind: DailyReport\nmetadata:\n  name: brief\nspec:\n  title: 日报\n  smtp:\n    host: 127.0.0.1\n    port: {}\n    tls: none\n    from: brief@finrep.example\n",
        smtp.port
    );
    std::fs::write(dir.path().join("all.yaml"), yaml).unwrap();
    let six = DateTime::parse_from_rfc3339("2026-11-23T06:00:00+08:00").unwrap();
    let plan = common::plan_of_brief(
        dir.path(),
        Slot {
            date: NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
            scheduled_for: six,
            manual: true,
        },
        &Default::default(),
    );
    let url = common::scratch_database().await;
    let store = Store::connect(&url, 2, Duration::from_secs(5))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let opts = PipelineOptions {
        fetch: FetchConfig {
            policy: NetworkPolicy::permissive(),
            ..Default::default()
        },
        template_dir: None,
        output_dir: None,
        now: six.with_timezone(&Utc),
        recompose: false,
    };
    let delivery = DeliveryOptions {
        mode: WindowMode::Ignore,
        network: NetworkPolicy::permissive(),
        retry_base: Duration::from_millis(10),
        ..Default::default()
    };
    let outcome = run(&plan, &store, &opts, Some(&delivery)).await.unwrap();
    assert_eq!(outcome.delivery.unwrap().sent, 2);
    url
}

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
    let url = filled_database().await;
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
    assert!(dump.ends_with(&finrep::backup::file_name("brief", Utc::now().date_naive())));
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
    let url = filled_database().await;
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
