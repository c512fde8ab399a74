//! `finrep migrate` against a real PostgreSQL.

mod common;

use std::process::Command;

use sqlx::Connection;

fn migrate(url: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_finrep"))
        .args(["--log-format", "json", "migrate"])
        .env("DATABASE_URL", url)
        .output()
        .expect("run finrep")
}

#[tokio::test]
async fn migrate_twice_is_a_no_op() {
    let url = common::scratch_database().await;
    let first = migrate(&url);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let log = String::from_utf8_lossy(&first.stderr);
    assert!(log.contains("\"applied\":3"), "{log}");

    let second = migrate(&url);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let log = String::from_utf8_lossy(&second.stderr);
    assert!(log.contains("\"applied\":0"), "{log}");
    assert!(log.contains("\"already_applied\":3"), "{log}");

    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for t in [
        "article_summaries",
        "articles",
        "blacklist",
        "delivery_log",
        "fetch_log",
        "provider_calls",
        "report_articles",
        "reports",
        "source_state",
        "step_timings",
    ] {
        assert!(tables.iter().any(|x| x == t), "table {t} in {tables:?}");
    }
}

#[tokio::test]
async fn schema_enforces_one_delivery_per_recipient_and_one_report_per_day() {
    let url = common::scratch_database().await;
    assert!(migrate(&url).status.success());
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO reports (namespace, report, report_date, time_zone) VALUES ('default', 'brief', '2026-11-23', 'Asia/Shanghai') RETURNING id",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let again = sqlx::query(
        "INSERT INTO reports (namespace, report, report_date, time_zone) VALUES ('default', 'brief', '2026-11-23', 'Asia/Shanghai')",
    )
    .execute(&mut conn)
    .await;
    assert!(
        again.is_err(),
        "a second report for the same day is refused"
    );

    let insert = "INSERT INTO delivery_log (report_id, recipient, email) VALUES ($1, $2, $3)";
    sqlx::query(insert)
        .bind(id)
        .bind("zhang-wei")
        .bind("zhang.wei@example.com")
        .execute(&mut conn)
        .await
        .unwrap();
    let dup = sqlx::query(insert)
        .bind(id)
        .bind("zhang-wei")
        .bind("zhang.wei@example.com")
        .execute(&mut conn)
        .await;
    assert!(dup.is_err(), "one delivery row per report and address");
    let bad_status = sqlx::query("UPDATE delivery_log SET status = 'delivered'")
        .execute(&mut conn)
        .await;
    assert!(
        bad_status.is_err(),
        "status is one of the documented states"
    );
}

#[test]
fn unreachable_database_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_finrep"))
        .args(["migrate", "--connect-timeout", "2"])
        .env(
            "DATABASE_URL",
            "postgres://finrep:hunter2@127.0.0.1:9/finrep",
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect to PostgreSQL at postgres://finrep:***@127.0.0.1:9/finrep"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "password leaked: {err}");
    assert!(!err.contains("panicked"), "{err}");
}
