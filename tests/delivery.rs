//! Delivery against a real SMTP server process (aiosmtpd) and real PostgreSQL: acceptance and
//! bulk headers, transient failures, bounces and the blacklist, a connection cut during DATA,
//! a server that is down, the mail window on an injected clock, and a pipeline killed with
//! SIGKILL at random moments.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::fake_clock::{FakeClock, at, date};
use common::http::{Response, TestServer};
use common::smtp::{SmtpServer, free_port};
use finrep::delivery::{Clock, DeliveryOptions, Unsubscribe};
use finrep::guard::NetworkPolicy;
use finrep::pipeline::fetch::FetchConfig;
use finrep::pipeline::{PipelineOptions, RunError, run};
use finrep::plan::{RunPlan, Slot};
use finrep::run::RunPhase;
use finrep::store::Store;
use finrep::window::WindowMode;
use rand::{Rng, SeedableRng};

const FEED: &str = r#"<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>t</title>
<item><title>央行宣布下调存款准备金率0.5个百分点</title><link>https://e.example.com/1</link><pubDate>Sun, 22 Nov 2026 21:30:00 +0000</pubDate><description>释放长期资金约1万亿元。</description></item>
<item><title>贵州茅台(600519)三季度净利增长15%</title><link>https://e.example.com/2</link><pubDate>Sun, 22 Nov 2026 20:30:00 +0000</pubDate><description>业绩预告。</description></item>
</channel></rss>"#;

/// Writes a configuration: one feed, `recipients` addresses, SMTP on `smtp_port`.
fn config(dir: &Path, feed_url: &str, smtp_port: u16, recipients: &[&str], late: &str) {
    let mut out = format!(
        "apiVersion: finrep.io/v1alpha1\nkind: Source\nmetadata:\n  name: news\nspec:\n  kind: feed\n  url: {feed_url}\n  category: 宏观\n---\n"
    );
    for (i, email) in recipients.iter().enumerate() {
        let extra = match i % 3 {
            1 => "  format: text\n",
            2 => "  categories: [A股]\n",
            _ => "",
        };
        out += &format!(
            "apiVersion: finrep.io/v1alpha1\nkind: Recipient\nmetadata:\n  name: r{i:03}\nspec:\n  email: {email}\n  displayName: 读者{i}\n{extra}---\n"
        );
    }
    out += &format!(
        "apiVersion: finrep.io/v1alpha1\nkind: DailyReport\nmetadata:\n  name: brief\nspec:\n  title: 金融情报日报\n  content:\n    lookbackHours: 48\n  mailWindow:\n    lateDelivery: {late}\n  smtp:\n    host: 127.0.0.1\n    port: {smtp_port}\n    tls: none\n    from: 金融情报日报 <brief@finrep.example>\n    replyTo: desk@finrep.example\n    maxPerMinute: 60000\n    maxConnections: 2\n"
    );
    std::fs::write(dir.join("all.yaml"), out).unwrap();
}

fn plan(dir: &Path, manual: bool, blacklist: &BTreeSet<String>) -> RunPlan {
    let slot = Slot {
        date: date(),
        scheduled_for: at("06:00").fixed_offset(),
        manual,
    };
    common::plan_of_brief(dir, slot, blacklist)
}

fn pipeline_options(feed: &TestServer) -> PipelineOptions {
    PipelineOptions {
        fetch: FetchConfig {
            policy: NetworkPolicy::strict(vec![feed.host_port()]),
            ..Default::default()
        },
        template_dir: None,
        output_dir: None,
        now: at("06:00"),
        clock: std::sync::Arc::new(finrep::clock::SystemClock),
        recompose: false,
        lock_wait: std::time::Duration::ZERO,
    }
}

fn delivery(mode: WindowMode, clock: Arc<dyn Clock>) -> DeliveryOptions {
    DeliveryOptions {
        mode,
        clock,
        unsubscribe: Some(Unsubscribe {
            signer: finrep::unsubscribe::Signer::Master(
                b"test-signing-key-0123456789abcdef".to_vec(),
            ),
            public_url: "https://finrep.example.com".into(),
        }),
        max_attempts: 4,
        retry_base: Duration::from_millis(50),
        smtp_timeout: Duration::from_secs(5),
        reuse_connections: true,
        network: NetworkPolicy::permissive(),
        ..Default::default()
    }
}

fn manual() -> DeliveryOptions {
    delivery(
        WindowMode::Ignore,
        FakeClock::new(at("09:00"), Duration::ZERO),
    )
}

struct World {
    dir: tempfile::TempDir,
    feed: TestServer,
    store: Store,
    db_url: String,
}

async fn world() -> World {
    let feed = TestServer::start().await;
    feed.route("/rss.xml", Response::ok("application/rss+xml", FEED));
    let db_url = common::scratch_database().await;
    let store = Store::connect(&db_url, 4, Duration::from_secs(5))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    World {
        dir: tempfile::tempdir().unwrap(),
        feed,
        store,
        db_url,
    }
}

/// The brief for `n` recipients `deskNN@example.com` of `w`'s feed and the SMTP server on
/// `smtp_port`; their addresses.
fn desk_config(w: &World, smtp_port: u16, n: usize) -> Vec<String> {
    let recipients: Vec<String> = (0..n).map(|i| format!("desk{i:02}@example.com")).collect();
    let refs: Vec<&str> = recipients.iter().map(String::as_str).collect();
    config(
        w.dir.path(),
        &w.feed.url("/rss.xml"),
        smtp_port,
        &refs,
        "skip",
    );
    recipients
}

/// `finrep run` of the brief for `date()` against `w`'s feed and the SMTP server on
/// `smtp_port`, with `extra` arguments, its stderr captured; DATABASE_URL is `database_url`.
fn finrep_run(
    w: &World,
    smtp_port: u16,
    database_url: &str,
    extra: &[&str],
) -> std::process::Child {
    finrep_on_brief(w, smtp_port, "run")
        .args(["--date", &date().to_string()])
        .args(extra)
        .env("DATABASE_URL", database_url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

async fn statuses(store: &Store) -> Vec<(String, String, i32)> {
    sqlx::query_as("SELECT email, status, attempts FROM delivery_log ORDER BY email")
        .fetch_all(store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn delivers_once_with_bulk_headers_and_per_recipient_content() {
    let w = world().await;
    let smtp = SmtpServer::start(serde_json::json!({}));
    let rcpts = ["a@example.com", "b@example.com", "c@example.com"];
    config(
        w.dir.path(),
        &w.feed.url("/rss.xml"),
        smtp.port,
        &rcpts,
        "skip",
    );
    let p = plan(w.dir.path(), true, &BTreeSet::new());
    let outcome = run(&p, &w.store, &pipeline_options(&w.feed), Some(&manual()))
        .await
        .unwrap();
    let counts = outcome.delivery.clone().unwrap();
    assert_eq!((counts.sent, counts.recipients), (3, 3), "{counts:?}");
    assert_eq!(outcome.phase, RunPhase::Succeeded);

    let messages = smtp.messages();
    assert_eq!(messages.len(), 3);
    for m in &messages {
        let rcpt = m["rcpt"][0].as_str().unwrap();
        assert_eq!(smtp.copies_for(rcpt), 1);
        let id = m["message_id"].as_str().unwrap();
        assert!(
            id.starts_with("<2026-11-23.brief.default.") && id.ends_with("@finrep.example>"),
            "{id}"
        );
        assert!(
            m["list_id"]
                .as_str()
                .unwrap()
                .contains("<brief.default.finrep.example>")
        );
        let unsub = m["list_unsubscribe"].as_str().unwrap();
        assert!(
            unsub.contains("<https://finrep.example.com/unsubscribe?token=v2."),
            "{unsub}"
        );
        assert!(
            unsub.contains("<mailto:brief@finrep.example?subject=unsubscribe>"),
            "{unsub}"
        );
        assert_eq!(m["list_unsubscribe_post"], "List-Unsubscribe=One-Click");
        assert!(
            m["subject"]
                .as_str()
                .unwrap()
                .contains("金融情报日报 · 2026-11-23")
        );
        // The token unsubscribes exactly this recipient.
        let token = unsub
            .split("token=")
            .nth(1)
            .unwrap()
            .split('>')
            .next()
            .unwrap();
        // The token names neither the address nor the namespace; it unsubscribes exactly this
        // recipient, from the row it names.
        assert!(
            !token.contains("example") && !token.contains("default"),
            "{token}"
        );
        let ring =
            finrep::unsubscribe::KeyRing::new([b"test-signing-key-0123456789abcdef"]).unwrap();
        let parsed = finrep::unsubscribe::ParsedToken::parse(token).unwrap();
        let finrep::unsubscribe::ParsedToken::V2 { delivery_id, .. } = parsed else {
            panic!("a v2 token: {token}");
        };
        let target = w
            .store
            .unsubscribe_target(delivery_id)
            .await
            .unwrap()
            .unwrap();
        let who = ring
            .verify_v2(&parsed, &target.namespace, &target.report, &target.email)
            .unwrap();
        assert_eq!(who.email, rcpt);
        assert_eq!(who.report.as_deref(), Some("brief"));
    }
    let by = |email: &str| {
        messages
            .iter()
            .find(|m| m["rcpt"][0] == email)
            .unwrap()
            .clone()
    };
    assert_eq!(
        by("a@example.com")["parts"],
        serde_json::json!(["text/plain", "text/html"])
    );
    assert_eq!(
        by("b@example.com")["parts"],
        serde_json::json!(["text/plain"]),
        "text format"
    );
    assert!(
        by("a@example.com")["size"].as_u64() > by("c@example.com")["size"].as_u64(),
        "c only gets A股"
    );

    // Running again sends nothing new.
    let again = run(&p, &w.store, &pipeline_options(&w.feed), Some(&manual()))
        .await
        .unwrap();
    assert!(again.reused);
    assert_eq!(smtp.messages().len(), 3);
}

#[tokio::test]
async fn transient_failures_retry_and_bounces_blacklist() {
    let w = world().await;
    let smtp = SmtpServer::start(serde_json::json!({
        "busy_once": true,
        "tempfail_once": ["grey@example.com"],
        "reject": ["gone@example.com"],
        "drop_data": ["cut@example.com"],
    }));
    let rcpts = [
        "ok@example.com",
        "grey@example.com",
        "gone@example.com",
        "cut@example.com",
    ];
    config(
        w.dir.path(),
        &w.feed.url("/rss.xml"),
        smtp.port,
        &rcpts,
        "skip",
    );
    let p = plan(w.dir.path(), true, &BTreeSet::new());
    let outcome = run(&p, &w.store, &pipeline_options(&w.feed), Some(&manual()))
        .await
        .unwrap();
    let counts = outcome.delivery.unwrap();
    assert_eq!((counts.sent, counts.bounced), (3, 1), "{counts:?}");
    assert_eq!(outcome.phase, RunPhase::PartiallyDelivered);
    for ok in ["ok@example.com", "grey@example.com", "cut@example.com"] {
        assert_eq!(smtp.copies_for(ok), 1, "{ok}");
    }
    assert_eq!(smtp.copies_for("gone@example.com"), 0);
    let rows = statuses(&w.store).await;
    let row = |e: &str| rows.iter().find(|r| r.0 == e).unwrap().clone();
    assert_eq!(row("gone@example.com").1, "bounced");
    assert!(row("grey@example.com").2 >= 2, "greylisted address retried");
    assert!(row("cut@example.com").2 >= 2, "cut connection retried");
    let (code, reply): (Option<i32>, Option<String>) = sqlx::query_as(
        "SELECT smtp_code, smtp_reply FROM blacklist WHERE email = 'gone@example.com'",
    )
    .fetch_one(w.store.pool())
    .await
    .unwrap();
    assert_eq!(code, Some(550));
    assert!(reply.unwrap().contains("User unknown"));
    // Later plans leave the address out.
    let blacklist = w.store.blacklisted_emails("default").await.unwrap();
    // Only this namespace: another tenant's report still mails the address.
    assert!(
        w.store
            .blacklisted_emails("other")
            .await
            .unwrap()
            .is_empty()
    );
    let next = plan(w.dir.path(), true, &blacklist);
    assert!(
        next.recipients
            .iter()
            .all(|r| r.address != "gone@example.com")
    );
    assert_eq!(next.excluded_recipients, ["r002"]);
}

#[tokio::test]
async fn a_server_that_is_down_fails_the_run_and_loses_nothing() {
    let w = world().await;
    let port = free_port();
    let rcpts = ["a@example.com", "b@example.com"];
    config(w.dir.path(), &w.feed.url("/rss.xml"), port, &rcpts, "skip");
    let p = plan(w.dir.path(), true, &BTreeSet::new());
    let err = run(&p, &w.store, &pipeline_options(&w.feed), Some(&manual()))
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::Delivery(_)), "{err}");
    assert!(err.is_transient(), "a retry may succeed");
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{port} is unreachable")),
        "{err}"
    );
    assert!(statuses(&w.store).await.iter().all(|r| r.1 == "pending"));

    let smtp = SmtpServer::start_on(port, serde_json::json!({}));
    let outcome = run(&p, &w.store, &pipeline_options(&w.feed), Some(&manual()))
        .await
        .unwrap();
    assert_eq!(outcome.delivery.unwrap().sent, 2);
    assert_eq!(smtp.copies_for("a@example.com"), 1);
    assert_eq!(smtp.copies_for("b@example.com"), 1);
}

#[tokio::test]
async fn the_window_holds_scheduled_runs_on_an_injected_clock() {
    // Before the window: the run waits for 06:05 (the fake clock jumps), then delivers.
    let w = world().await;
    let smtp = SmtpServer::start(serde_json::json!({}));
    config(
        w.dir.path(),
        &w.feed.url("/rss.xml"),
        smtp.port,
        &["a@example.com"],
        "skip",
    );
    let p = plan(w.dir.path(), false, &BTreeSet::new());
    let clock = FakeClock::new(at("06:00"), Duration::ZERO);
    let outcome = run(
        &p,
        &w.store,
        &pipeline_options(&w.feed),
        Some(&delivery(WindowMode::Respect, clock.clone())),
    )
    .await
    .unwrap();
    assert_eq!(outcome.delivery.unwrap().sent, 1);
    assert!(clock.now() >= at("06:05"), "waited for the window");

    // After the window with lateDelivery: skip → deferred, nothing sent.
    let w = world().await;
    let smtp = SmtpServer::start(serde_json::json!({}));
    config(
        w.dir.path(),
        &w.feed.url("/rss.xml"),
        smtp.port,
        &["a@example.com", "b@example.com"],
        "skip",
    );
    let p = plan(w.dir.path(), false, &BTreeSet::new());
    let late = FakeClock::new(at("06:25"), Duration::ZERO);
    let outcome = run(
        &p,
        &w.store,
        &pipeline_options(&w.feed),
        Some(&delivery(WindowMode::Respect, late)),
    )
    .await
    .unwrap();
    assert_eq!(outcome.delivery.clone().unwrap().deferred, 2);
    assert_eq!(smtp.messages().len(), 0);
    // A manual run the same day resumes the deferred deliveries at once.
    let outcome = run(&p, &w.store, &pipeline_options(&w.feed), Some(&manual()))
        .await
        .unwrap();
    assert_eq!(outcome.delivery.unwrap().sent, 2);
    assert_eq!(smtp.messages().len(), 2);

    // lateDelivery: send → sent after the window.
    let w = world().await;
    let smtp = SmtpServer::start(serde_json::json!({}));
    config(
        w.dir.path(),
        &w.feed.url("/rss.xml"),
        smtp.port,
        &["a@example.com"],
        "send",
    );
    let p = plan(w.dir.path(), false, &BTreeSet::new());
    let late = FakeClock::new(at("06:25"), Duration::ZERO);
    let outcome = run(
        &p,
        &w.store,
        &pipeline_options(&w.feed),
        Some(&delivery(WindowMode::Respect, late)),
    )
    .await
    .unwrap();
    assert_eq!(outcome.delivery.unwrap().sent, 1);

    // The window closes during sending: the rest is deferred (each clock reading moves the
    // clock on by two minutes, so it runs out after a few messages).
    let w = world().await;
    let smtp = SmtpServer::start(serde_json::json!({}));
    let many: Vec<String> = (0..12).map(|i| format!("r{i}@example.com")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    config(
        w.dir.path(),
        &w.feed.url("/rss.xml"),
        smtp.port,
        &refs,
        "skip",
    );
    let p = plan(w.dir.path(), false, &BTreeSet::new());
    let ticking = FakeClock::new(at("06:05"), Duration::from_secs(120));
    let outcome = run(
        &p,
        &w.store,
        &pipeline_options(&w.feed),
        Some(&delivery(WindowMode::Respect, ticking)),
    )
    .await
    .unwrap();
    let c = outcome.delivery.unwrap();
    assert!(c.sent > 0 && c.deferred > 0, "{c:?}");
    assert_eq!(c.sent + c.deferred, 12);
    assert_eq!(smtp.messages().len() as i64, c.sent);
}

/// email, status, uncertain_at, message_id
type LogRow = (String, String, Option<DateTime<Utc>>, Option<String>);

/// SIGKILL the sending process at random moments (seeded), run again, and check from the SMTP
/// server's own record that every recipient got exactly one copy — or two copies of one
/// Message-ID where the log marks the delivery as interrupted and resent (docs/delivery.md).
#[test]
fn killed_mid_send_resumes_without_loss_or_silent_duplicates() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261123);
    let recipients: Vec<String> = (0..40)
        .map(|i| format!("reader{i:02}@example.com"))
        .collect();
    let refs: Vec<&str> = recipients.iter().map(String::as_str).collect();
    let mut interrupted_total = 0;
    for trial in 0..10 {
        let w = rt.block_on(world());
        let smtp = SmtpServer::start(serde_json::json!({"delay_ms": 15}));
        config(
            w.dir.path(),
            &w.feed.url("/rss.xml"),
            smtp.port,
            &refs,
            "skip",
        );
        let spawn = || finrep_run(&w, smtp.port, &w.db_url, &[]);
        // Kill somewhere between start-up and the end of sending.
        let mut child = spawn();
        let kill_after = Duration::from_millis(rng.random_range(150..1200));
        std::thread::sleep(kill_after);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let rerun = spawn().wait_with_output().unwrap();
        assert!(
            rerun.status.success(),
            "trial {trial}: re-run exit {:?}: {}",
            rerun.status,
            String::from_utf8_lossy(&rerun.stderr)
        );

        let rows: Vec<LogRow> = rt.block_on(async {
            sqlx::query_as("SELECT email, status, uncertain_at, message_id FROM delivery_log")
                .fetch_all(w.store.pool())
                .await
                .unwrap()
        });
        assert_eq!(rows.len(), 40, "trial {trial}");
        for (email, status, uncertain_at, message_id) in &rows {
            assert_eq!(status, "sent", "trial {trial}: {email}");
            let copies = smtp.copies_for(email);
            let ids: BTreeSet<String> = smtp
                .messages()
                .iter()
                .filter(|m| m["rcpt"][0] == email.as_str())
                .map(|m| m["message_id"].as_str().unwrap_or_default().to_string())
                .collect();
            match copies {
                1 => {}
                2 => {
                    assert!(
                        uncertain_at.is_some(),
                        "trial {trial}: {email} got two copies without being marked"
                    );
                    assert_eq!(
                        ids.len(),
                        1,
                        "trial {trial}: both copies carry one Message-ID"
                    );
                    interrupted_total += 1;
                }
                n => panic!("trial {trial}: {email} got {n} copies (kill after {kill_after:?})"),
            }
            assert_eq!(ids.iter().next(), message_id.as_ref(), "trial {trial}");
        }
        drop(w);
    }
    eprintln!("deliveries resent after an interruption over 10 trials: {interrupted_total}");
}

/// One greylisted recipient (451 on the first try) and a scheduled run starting at `start`
/// on a clock that only moves when the run waits; retries wait 90 s at least.
async fn greylisted_run(start: &str) -> (finrep::run::DeliveryCounts, Arc<FakeClock>, usize) {
    let w = world().await;
    let smtp = SmtpServer::start(serde_json::json!({"tempfail_once": ["grey@example.com"]}));
    config(
        w.dir.path(),
        &w.feed.url("/rss.xml"),
        smtp.port,
        &["grey@example.com"],
        "skip",
    );
    let p = plan(w.dir.path(), false, &BTreeSet::new());
    let clock = FakeClock::new(at(start), Duration::ZERO);
    let mut opts = delivery(WindowMode::Respect, clock.clone());
    opts.retry_base = Duration::from_secs(90);
    let outcome = run(&p, &w.store, &pipeline_options(&w.feed), Some(&opts))
        .await
        .unwrap();
    (
        outcome.delivery.unwrap(),
        clock,
        smtp.copies_for("grey@example.com"),
    )
}

/// A 451 at 06:19 whose retry (backon's backoff of 90 s or more) would start after 06:20 is
/// deferred at once: the run does not wait past its window for it. Inside the window the
/// same greylisting is retried on the injected clock (no real sleeping) and delivered.
#[tokio::test]
async fn a_retry_that_would_land_after_the_window_is_deferred_at_once() {
    let started = std::time::Instant::now();
    let (c, clock, copies) = greylisted_run("06:19").await;
    assert_eq!((c.sent, c.deferred, copies), (0, 1, 0), "{c:?}");
    assert!(
        clock.now() < at("06:20"),
        "deferred without waiting for the window's end: {}",
        clock.now()
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "no real sleeping"
    );
    let (c, _, copies) = greylisted_run("06:06").await;
    assert_eq!((c.sent, copies), (1, 1), "{c:?}");
}

/// Two runs of one report and day at once — `finrep run` beside the scheduler, a retried Job
/// whose old pod still runs — against a server that holds every DATA for a while: the second
/// waits for the first, then exits 75 naming it; every recipient gets one copy, counted by the
/// SMTP server. Then a third run, with the first done, finds everyone served.
#[test]
fn overlapping_runs_of_one_report_send_each_copy_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let w = rt.block_on(world());
    let smtp = SmtpServer::start(serde_json::json!({"delay_ms": 1500}));
    let recipients = desk_config(&w, smtp.port, 6);
    let spawn = || finrep_run(&w, smtp.port, &w.db_url, &["--lock-wait-seconds", "1"]);
    let first = spawn();
    // The first is sending (six messages, 1.5 s each, two connections: 4.5 s) when the second
    // starts, and still is when the second's second of waiting ends, however loaded the
    // machine (with 0.7 s a message the first could finish inside that wait).
    std::thread::sleep(Duration::from_millis(1200));
    let second = spawn().wait_with_output().unwrap();
    let first = first.wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains("another attempt at this run is in progress")
            && stderr.contains("finrep run pid"),
        "the holder is named: {stderr}"
    );
    for r in &recipients {
        assert_eq!(smtp.copies_for(r), 1, "{r}");
    }
    let third = spawn().wait_with_output().unwrap();
    assert!(third.status.success());
    assert_eq!(smtp.messages().len(), recipients.len());
    let rows = rt.block_on(statuses(&w.store));
    assert!(
        rows.iter()
            .all(|(_, status, attempts)| status == "sent" && *attempts == 1),
        "{rows:?}"
    );
}

/// PostgreSQL goes away in the middle of delivery (every connection cut, new ones refused for
/// three seconds: a restart as its clients see it) and comes back. What the SMTP server
/// accepted meanwhile is recorded once the database answers; every recipient gets exactly
/// one copy, counted by the SMTP server, and the log says `sent` for each.
#[test]
fn a_database_restart_mid_delivery_loses_and_duplicates_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let w = rt.block_on(world());
    let proxy = rt.block_on(common::tcp_proxy::TcpProxy::for_database(&w.db_url));
    let smtp = SmtpServer::start(serde_json::json!({"delay_ms": 250}));
    let recipients = desk_config(&w, smtp.port, 16);
    // The pool gives up on a connection after a second, so the outage reaches the delivery
    // loop instead of being waited out inside the pool.
    let child = finrep_run(
        &w,
        smtp.port,
        &proxy.route(&w.db_url),
        &["--connect-timeout", "1"],
    );
    // Down once the first messages are through, for three seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while smtp.messages().len() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(smtp.messages().len() >= 3, "delivery started");
    proxy.down();
    let down_at = smtp.messages().len();
    std::thread::sleep(Duration::from_secs(3));
    rt.block_on(proxy.up());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{stderr}", out.status);
    assert!(
        stderr.contains("the database did not answer; asking again"),
        "the outage was met and waited out: {stderr}"
    );
    assert!(
        down_at < recipients.len(),
        "the outage fell inside delivery"
    );
    for r in &recipients {
        assert_eq!(smtp.copies_for(r), 1, "{r}");
    }
    let rows = rt.block_on(statuses(&w.store));
    assert_eq!(rows.len(), recipients.len());
    assert!(
        rows.iter()
            .all(|(_, status, attempts)| status == "sent" && *attempts == 1),
        "{rows:?}"
    );
}

/// `finrep preview` and `finrep test-send` of the brief from its manifests, as a standalone
/// desk types them; their output.
fn finrep_editor(w: &World, smtp_port: u16, args: &[&str]) -> std::process::Output {
    finrep_on_brief(w, smtp_port, args[0])
        .args(&args[1..])
        .env("DATABASE_URL", &w.db_url)
        .output()
        .unwrap()
}

/// `finrep COMMAND` on the brief of `w`'s configuration, trusting its feed and the SMTP
/// server on `smtp_port`.
fn finrep_on_brief(w: &World, smtp_port: u16, command: &str) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_finrep"));
    c.args(["--log-format", "json", command, "--config"])
        .arg(w.dir.path())
        .args(["--report", "brief"])
        .args(["--trusted-host", &w.feed.host_port()])
        .args(["--trusted-host", &format!("127.0.0.1:{smtp_port}")]);
    c
}

// Multi-threaded: the feed is served by this runtime while the command blocks a thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_preview_sends_nothing_and_a_test_copy_reaches_one_reader() {
    let w = world().await;
    let smtp = SmtpServer::start(serde_json::json!({}));
    let rcpts = ["a@example.com", "b@example.com", "c@example.com"];
    config(
        w.dir.path(),
        &w.feed.url("/rss.xml"),
        smtp.port,
        &rcpts,
        "skip",
    );
    // The day the feed's items are of (a date in the past looks back from its slot).
    let day = date().to_string();
    let out = finrep_editor(&w, smtp.port, &["preview", "--date", &day]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("央行宣布下调存款准备金率"),
        "{stdout}{stderr}"
    );
    assert!(smtp.messages().is_empty(), "a preview sends nothing");
    let counts: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM previews), (SELECT count(*) FROM reports),
                (SELECT count(*) FROM delivery_log)",
    )
    .fetch_one(w.store.pool())
    .await
    .unwrap();
    assert_eq!(counts, (1, 0, 0), "stored as a preview, never as a run");

    let out = finrep_editor(&w, smtp.port, &["test-send", "--to", "r001"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0]["rcpt"], serde_json::json!(["b@example.com"]));
    assert!(
        messages[0]["subject"]
            .as_str()
            .unwrap()
            .starts_with("【测试 TEST】")
    );
    assert!(
        messages[0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("test copy"),
        "the body says so: {messages:#?}"
    );
    let out = finrep_editor(&w, smtp.port, &["test-send", "--to", "stranger"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a recipient of DailyReport brief"),
        "{stderr}"
    );
    assert_eq!(smtp.messages().len(), 1, "nothing more sent");
}
