//! A namespace's database role opens only its own rows: two namespaces run the real pipeline
//! (fetch, compose, deliver, bounce, blacklist) each with its own role made by
//! `ensure_tenant_role`, then each role is tried against the other's rows in every table,
//! against the operator's tables, against run locks, and against its limits.

mod common;

use std::time::Duration;

use finrep::guard::NetworkPolicy;
use finrep::store::{Store, TENANT_CONNECTION_LIMIT};
use sqlx::Row;

use common::http::{Response, TestServer};
use common::smtp::SmtpServer;

const FEED: &str = r#"<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>
<item><title>央行开展5000亿元MLF操作</title><link>https://e.example.com/mlf</link><description>利率持平。</description><pubDate>Sun, 22 Nov 2026 21:00:00 GMT</pubDate></item>
</channel></rss>"#;

/// Tables that carry their namespace, and tables that reach it through `reports`.
const BY_NAMESPACE: &[&str] = &[
    "reports",
    "articles",
    "article_summaries",
    "blacklist",
    "consent_log",
    "fetch_log",
    "source_state",
    "report_schedule",
    "chat_pace",
    "previews",
    "test_sends",
];
const BY_REPORT: &[&str] = &[
    "delivery_log",
    "report_articles",
    "step_timings",
    "provider_calls",
];

async fn count(store: &Store, sql: &str, id: Option<i64>) -> i64 {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
    if let Some(id) = id {
        q = q.bind(id);
    }
    q.fetch_one(store.pool()).await.unwrap().get(0)
}

/// The SQLSTATE of a statement's failure (it must fail).
async fn refused(store: &Store, sql: &str) -> String {
    let err = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(store.pool())
        .await
        .expect_err(sql);
    err.as_database_error()
        .and_then(|d| d.code().map(|c| c.to_string()))
        .unwrap_or_else(|| panic!("{sql}: {err}"))
}

#[tokio::test]
async fn a_namespace_role_opens_only_its_own_rows() {
    let feeds = TestServer::start().await;
    feeds.route("/rss.xml", Response::ok("application/rss+xml", FEED));
    let smtp = SmtpServer::start(serde_json::json!({"reject": ["gone@example.com"]}));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("all.yaml"),
        common::fill::desk_yaml(&feeds.url("/rss.xml"), smtp.port),
    )
    .unwrap();
    let (plan, operator, opts, url) =
        common::fill::prepare(dir.path(), NetworkPolicy::permissive()).await;

    // The operator makes each namespace's role; each namespace's pipeline runs with its own.
    let mut tenants = Vec::new();
    for ns in ["default", "other"] {
        let login = operator.ensure_tenant_role(ns).await.unwrap();
        let store = Store::connect(&login.url(&url).unwrap(), 4, Duration::from_secs(5))
            .await
            .unwrap();
        let mut plan = plan.clone();
        plan.namespace = ns.to_string();
        let delivery = common::fill::deliver_at_once();
        let outcome = finrep::pipeline::run(&plan, &store, &opts, Some(&delivery))
            .await
            .unwrap();
        let d = outcome.delivery.unwrap();
        assert_eq!((d.sent, d.bounced), (2, 1), "{ns}: the pipeline's own work");
        tenants.push((ns, store, outcome.report_id));
    }
    // Rotating gives a new password; the old one no longer logs in.
    // (The test server trusts loopback logins, so the stored verifier is compared.)
    let verifier = |role: String| {
        let operator = operator.clone();
        async move {
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            )
            .bind(role)
            .fetch_one(operator.pool())
            .await
            .unwrap()
        }
    };
    let before = operator.ensure_tenant_role("default").await.unwrap();
    let old = verifier(before.role.clone()).await;
    let after = operator.ensure_tenant_role("default").await.unwrap();
    assert_ne!(before.password, after.password);
    assert!(old.is_some() && old != verifier(after.role.clone()).await);
    let default = Store::connect(&after.url(&url).unwrap(), 4, Duration::from_secs(5))
        .await
        .unwrap();
    let other_report = tenants[1].2;

    // Reads: the operator sees both namespaces; the role only its own, in every table.
    for t in BY_NAMESPACE {
        let theirs = format!("SELECT count(*) FROM {t} WHERE namespace <> 'default'");
        assert_eq!(count(&default, &theirs, None).await, 0, "{t}");
    }
    for t in [
        "reports",
        "articles",
        "blacklist",
        "fetch_log",
        "source_state",
    ] {
        let theirs = format!("SELECT count(*) FROM {t} WHERE namespace = 'other'");
        assert!(
            count(&operator, &theirs, None).await > 0,
            "{t}: the test has rows to hide"
        );
        let mine = format!("SELECT count(*) FROM {t}");
        assert!(
            count(&default, &mine, None).await > 0,
            "{t}: its own rows stay"
        );
    }
    for t in BY_REPORT {
        let theirs = format!("SELECT count(*) FROM {t} WHERE report_id = $1");
        assert_eq!(count(&default, &theirs, Some(other_report)).await, 0, "{t}");
    }
    for t in ["delivery_log", "report_articles", "step_timings"] {
        let theirs = format!("SELECT count(*) FROM {t} WHERE report_id = $1");
        assert!(
            count(&operator, &theirs, Some(other_report)).await > 0,
            "{t}"
        );
    }

    // Writes naming the other namespace are refused or reach nothing.
    for sql in [
        "INSERT INTO reports (namespace, report, report_date, time_zone) VALUES ('other', 'x', '2026-11-24', 'UTC')",
        "INSERT INTO blacklist (namespace, email, reason) VALUES ('other', 'a@example.com', 'manual')",
        "INSERT INTO articles (namespace, url_hash, canonical_url, content_hash, title, source, category) VALUES ('other', 'h', 'u', 'c', 't', 's', 'c')",
    ] {
        assert_eq!(refused(&default, sql).await, "42501", "{sql}");
    }
    let into_theirs = format!(
        "INSERT INTO delivery_log (report_id, recipient, email) VALUES ({other_report}, 'r', 'x@example.com')"
    );
    assert_eq!(refused(&default, &into_theirs).await, "42501");
    for sql in [
        "UPDATE reports SET title = 'x' WHERE namespace = 'other'",
        "DELETE FROM blacklist WHERE namespace = 'other'",
        "DELETE FROM delivery_log",
        "UPDATE source_state SET last_error = 'x' WHERE namespace = 'other'",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(default.pool())
            .await
            .unwrap();
    }
    let kept = "SELECT count(*) FROM delivery_log WHERE report_id = $1";
    assert!(count(&operator, kept, Some(other_report)).await > 0);
    let title = "SELECT count(*) FROM reports WHERE namespace = 'other' AND title = 'x'";
    assert_eq!(count(&operator, title, None).await, 0);

    // The operator's tables, its functions and new objects are out of reach.
    for sql in [
        "SELECT * FROM web_sessions",
        "SELECT * FROM backups",
        "SELECT * FROM tenant_roles",
        "SELECT * FROM finrep_internal",
        "SELECT finrep_run_lock_key(1)",
        "CREATE TABLE mine (x int)",
    ] {
        assert_eq!(refused(&default, sql).await, "42501", "{sql}");
    }

    // Run locks: another namespace cannot take (or name) this one's.
    let other = &tenants[1].1;
    let mine = tenants[0].2;
    let taken: bool = sqlx::query_scalar("SELECT finrep_try_run_lock($1)")
        .bind(mine)
        .fetch_one(other.pool())
        .await
        .unwrap();
    assert!(!taken, "another namespace's report");
    // Even holding the lock key an older finrep used does not block it.
    let _old: bool = sqlx::query_scalar(
        "SELECT pg_try_advisory_lock(hashtextextended('finrep.run:' || $1::text, 0))",
    )
    .bind(mine)
    .fetch_one(other.pool())
    .await
    .unwrap();
    let lock = default
        .lock_run(mine, "test", Duration::ZERO)
        .await
        .unwrap();
    assert!(lock.is_ok(), "its own run lock");

    // Limits of the role.
    let limit: i32 =
        sqlx::query_scalar("SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user")
            .fetch_one(default.pool())
            .await
            .unwrap();
    assert_eq!(limit, TENANT_CONNECTION_LIMIT);
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(default.pool())
        .await
        .unwrap();
    assert_eq!(timeout, "1min");
    let superuser: bool = sqlx::query_scalar(
        "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(default.pool())
    .await
    .unwrap();
    assert!(!superuser);
}

/// `finrep tenant-role --apply` writes each namespace's Secret through the API: created, then
/// replaced on rotation; a Secret of that name it did not make is left alone and reported.
#[tokio::test]
async fn tenant_role_apply_writes_only_its_own_secret() {
    let url = common::scratch_database().await;
    let operator = Store::connect(&url, 2, Duration::from_secs(5))
        .await
        .unwrap();
    operator.migrate().await.unwrap();
    let api = common::kube_api::FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    // An older install's Secret of that name, holding the operator's URL.
    api.put_secret("desk-b", "finrep-database");
    let run = |namespaces: &str| {
        let kubeconfig = kubeconfig.clone();
        let url = url.clone();
        let namespaces = namespaces.to_string();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_finrep"))
                .args(["tenant-role", "--apply", "--namespace", &namespaces])
                .env("KUBECONFIG", kubeconfig)
                .env("DATABASE_URL", url)
                .output()
                .unwrap()
        })
    };
    let out = run("desk-a,desk-b").await.unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not made by finrep tenant-role"), "{err}");
    let stranger = api
        .object("", "secrets", "desk-b", "finrep-database")
        .unwrap();
    assert!(
        stranger.get("stringData").is_none(),
        "left alone: {stranger}"
    );
    let url_of = || {
        let s = api
            .object("", "secrets", "desk-a", "finrep-database")
            .unwrap();
        assert!(
            s["metadata"]["labels"]["finrep.io/tenant-role"].is_string(),
            "{s}"
        );
        s["stringData"]["url"].as_str().unwrap().to_string()
    };
    let first = url_of();
    assert!(
        first.contains("finrep_") && first.contains("_desk_a:"),
        "{first}"
    );
    let out = run("desk-a").await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(url_of(), first, "rotated");
    // Nothing secret on standard output or error.
    let password = url_of()
        .split(':')
        .nth(2)
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .to_string();
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&password));
    assert!(out.stdout.is_empty());

    // Exactly the verbs manifests/rbac.yaml grants the hook Job, and only on Secrets.
    let used: std::collections::BTreeSet<(String, String)> = api
        .calls()
        .into_iter()
        .map(|c| (c.resource, c.verb.to_string()))
        .collect();
    let rbac = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/rbac.yaml"),
    )
    .unwrap();
    let mut granted = std::collections::BTreeSet::new();
    for doc in serde_norway::Deserializer::from_str(&rbac) {
        let v: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        if v["kind"] == "Role" && v["metadata"]["name"] == "finrep-tenant-roles" {
            for rule in v["rules"].as_array().unwrap() {
                for r in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        granted.insert((
                            r.as_str().unwrap().to_string(),
                            verb.as_str().unwrap().to_string(),
                        ));
                    }
                }
            }
        }
    }
    assert_eq!(used, granted);
}
