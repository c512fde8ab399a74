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
    let all = finrep::store::MIGRATOR.iter().count();
    assert!(log.contains(&format!("\"applied\":{all}")), "{log}");

    let second = migrate(&url);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let log = String::from_utf8_lossy(&second.stderr);
    assert!(log.contains("\"applied\":0"), "{log}");
    assert!(log.contains(&format!("\"already_applied\":{all}")), "{log}");

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

/// The values a CHECK constraint of `table.column` allows, read from PostgreSQL's catalog.
async fn allowed_values(conn: &mut sqlx::PgConnection, table: &str, column: &str) -> Vec<String> {
    let defs: Vec<String> = sqlx::query_scalar(
        "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
         JOIN pg_class t ON t.oid = c.conrelid
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(c.conkey)
         WHERE c.contype = 'c' AND t.relname = $1 AND a.attname = $2",
    )
    .bind(table)
    .bind(column)
    .fetch_all(conn)
    .await
    .unwrap();
    assert_eq!(defs.len(), 1, "one CHECK on {table}.{column}: {defs:?}");
    let mut values: Vec<String> = defs[0]
        .split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    values.sort();
    values
}

fn names<T: Copy>(all: &[T], as_str: fn(T) -> &'static str) -> Vec<String> {
    let mut v: Vec<String> = all.iter().map(|s| as_str(*s).to_string()).collect();
    v.sort();
    v
}

/// Every state the code knows is a state the schema accepts, and no other: the enums of
/// `finrep::run` and the migrations' CHECK constraints cannot drift apart.
#[tokio::test]
async fn schema_states_are_the_codes_states() {
    use finrep::run::{BlacklistReason, DeliveryStatus, FetchErrorKind, ProviderOutcome, RunPhase};
    let url = common::scratch_database().await;
    assert!(migrate(&url).status.success());
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let cases = [
        (
            "reports",
            "phase",
            names(&RunPhase::recorded().collect::<Vec<_>>(), RunPhase::as_str),
        ),
        (
            "delivery_log",
            "status",
            names(DeliveryStatus::ALL, DeliveryStatus::as_str),
        ),
        (
            "fetch_log",
            "error_kind",
            names(FetchErrorKind::ALL, FetchErrorKind::as_str),
        ),
        (
            "blacklist",
            "reason",
            names(BlacklistReason::ALL, BlacklistReason::as_str),
        ),
        (
            "provider_calls",
            "outcome",
            names(ProviderOutcome::ALL, ProviderOutcome::as_str),
        ),
    ];
    for (table, column, want) in cases {
        assert_eq!(
            allowed_values(&mut conn, table, column).await,
            want,
            "{table}.{column}"
        );
    }
}

/// Rows written before namespaces scoped the blacklist, articles and summary cache are kept:
/// a blacklisted address stays blacklisted in its report's namespace.
#[tokio::test]
async fn tenancy_migration_keeps_existing_rows() {
    let url = common::scratch_database().await;
    let store = finrep::store::Store::connect(&url, 2, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    // The schema as it was before the tenancy migration.
    let (mut conn, before) = schema_before(&url, "tenancy").await;
    assert_eq!(before, 2);
    sqlx::raw_sql(
        "INSERT INTO reports (id, namespace, report, report_date, time_zone) VALUES (7, 'acc', 'brief', '2026-11-20', 'Asia/Shanghai');
         INSERT INTO blacklist (email, reason, report_id) VALUES ('gone@example.com', 'bounce', 7), ('left@example.com', 'unsubscribe', NULL);
         INSERT INTO articles (url_hash, canonical_url, content_hash, title, namespace, source, category)
              VALUES ('\\x01', 'https://e.com/a', '\\x02', '标题', 'acc', 'cls', 'A股');
         INSERT INTO article_summaries (content_hash, provider, model, summary) VALUES ('\\x02', 'p', 'm', '摘要');",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let tenancy = finrep::store::MIGRATOR.iter().nth(before).unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(tenancy.sql.as_str().to_string()))
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        store.blacklisted_emails("acc").await.unwrap(),
        ["gone@example.com".to_string()].into()
    );
    assert_eq!(
        store.blacklisted_emails("default").await.unwrap(),
        ["left@example.com".to_string()].into()
    );
    let kept: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM articles), (SELECT count(*) FROM article_summaries)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(kept, (1, 1));
    // The same URL in another namespace is another article.
    sqlx::query(
        "INSERT INTO articles (url_hash, canonical_url, content_hash, title, namespace, source, category)
         VALUES ('\\x01', 'https://e.com/a', '\\x02', 'other', 'desk', 'cls', 'A股')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
}

/// A schema a newer release migrated (during a rolling upgrade, its migration hook runs while
/// this release's pods still run): this build's `migrate` leaves the newer migration alone and
/// carries on, rather than refusing a database it can still use.
#[tokio::test]
async fn a_newer_release_s_migration_does_not_stop_this_one() {
    let url = common::scratch_database().await;
    assert!(migrate(&url).status.success());
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99991231000000, 'from a newer release', true, '\\x00'::bytea, 1)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let again = migrate(&url);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

/// An install of the single application role upgrades: unsubscribes recorded under a tagged
/// address move to the identity they cover (outranking a bounce there), sessions of before
/// end, and a namespace role made afterwards sees its namespace's rows of before and no other.
#[tokio::test]
async fn the_consent_and_tenant_migrations_keep_what_was_there() {
    let url = common::scratch_database().await;
    let store = finrep::store::Store::connect(&url, 2, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let (mut conn, before) = schema_before(&url, "consent").await;
    sqlx::raw_sql(
        "INSERT INTO reports (id, namespace, report, report_date, time_zone) VALUES
              (7, 'desk-a', 'brief', '2026-11-20', 'Asia/Shanghai'),
              (8, 'desk-b', 'brief', '2026-11-20', 'Asia/Shanghai');
         INSERT INTO delivery_log (report_id, recipient, email, status) VALUES
              (7, 'r', 'alice@example.com', 'bounced'), (8, 'r', 'bob@example.com', 'sent');
         INSERT INTO blacklist (namespace, email, reason, report_id) VALUES
              ('desk-a', 'alice@example.com', 'bounce', 7);
         INSERT INTO blacklist (namespace, email, reason, via) VALUES
              ('desk-a', 'alice+news@example.com', 'unsubscribe', 'one-click'),
              ('desk-b', 'carol+x@example.com', 'unsubscribe', 'page');
         INSERT INTO web_sessions (id_hash, account, csrf_token, expires_at)
              VALUES ('\\x01', 'admin', 't', now() + interval '1 hour');",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    // The new migrations, in order, as `finrep migrate` applies them.
    apply(&mut conn, finrep::store::MIGRATOR.iter().skip(before)).await;
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT namespace, email, reason FROM blacklist ORDER BY 1, 2")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        rows,
        [
            ("desk-a", "alice@example.com", "unsubscribe"),
            ("desk-b", "carol@example.com", "unsubscribe"),
        ]
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    );
    let consent: i64 = sqlx::query_scalar("SELECT count(*) FROM consent_log")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        consent, 2,
        "the unsubscribes of before are in the consent log"
    );
    let session: bool = sqlx::query_scalar("SELECT credential_epoch = '' FROM web_sessions")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(
        session,
        "a session of before matches no credential: it has ended"
    );
    // A namespace role made after the upgrade sees its rows of before, and no other.
    let login = store.ensure_tenant_role("desk-a").await.unwrap();
    let tenant = finrep::store::Store::connect(
        &login.url(&url).unwrap(),
        1,
        std::time::Duration::from_secs(5),
    )
    .await
    .unwrap();
    let seen: Vec<String> = sqlx::query_scalar("SELECT email FROM delivery_log")
        .fetch_all(tenant.pool())
        .await
        .unwrap();
    assert_eq!(seen, ["alice@example.com"]);
}

/// A connection to `url` whose schema is as it was before the migration `description`, and
/// how many migrations that is.
async fn schema_before(url: &str, description: &str) -> (sqlx::PgConnection, usize) {
    let before = finrep::store::MIGRATOR
        .iter()
        .take_while(|m| m.description != description)
        .count();
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    apply(&mut conn, finrep::store::MIGRATOR.iter().take(before)).await;
    (conn, before)
}

async fn apply<'m>(
    conn: &mut sqlx::PgConnection,
    migrations: impl Iterator<Item = &'m sqlx::migrate::Migration>,
) {
    for m in migrations {
        sqlx::raw_sql(sqlx::AssertSqlSafe(m.sql.as_str().to_string()))
            .execute(&mut *conn)
            .await
            .unwrap();
    }
}
