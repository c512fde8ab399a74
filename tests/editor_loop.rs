//! The editor's loop through the operator, as an editor types it: `kubectl finrep` (the real
//! plugin binary, with a kubeconfig) against the in-memory API, the controller running in this
//! process, the Job runner running the real `finrep-pipeline` for every Job, a real SMTP
//! server and a chat stand-in counting every message.
//!
//! At 17:00 the editor previews tomorrow's report (nothing is sent, to anybody; the run's
//! records are untouched), previews a chat group's copy, sends a test copy to a reader of the
//! report (one message, marked) and tries a stranger and a Recipient the report does not
//! select (refused, nothing sent). At 06:00 a preview asked for while the slot is due waits
//! for the run; the run delivers each reader's copy exactly once. Then `status` and `logs` of
//! a morning with a failing source and a bounced reader, and `-o json` parsed.

mod common;

use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::chat_platforms::{ChatPlatforms, Platform};
use common::http::{Response, TestServer};
use common::job_runner::{JobRunner, RunnerOptions};
use common::kube_api::FakeApi;
use common::operator::{RunningController, eventually, set_clock_file};
use common::smtp::SmtpServer;
use finrep::clock::{Clock, FileClock};
use finrep::controller::objects::Settings;
use finrep::store::Store;
use serde_json::{Value, json};

const NS: &str = "desk";
const REPORT: &str = "brief";
const BOT: &str = "tok-desk";
const READERS: usize = 3;
const BOUNCING: &str = "reader9@desk.example.com";

fn shanghai(s: &str) -> DateTime<Utc> {
    let t = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
    chrono_tz::Asia::Shanghai
        .from_local_datetime(&t)
        .single()
        .unwrap()
        .to_utc()
}

// ---- fixtures ---------------------------------------------------------------------------

fn source(name: &str, url: &str) -> Value {
    json!({
        "apiVersion": "finrep.io/v1alpha1", "kind": "Source",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"kind": "feed", "url": url, "category": "宏观"},
    })
}

fn reader(name: &str, email: &str, selected: bool) -> Value {
    let labels = if selected {
        json!({"brief": "yes"})
    } else {
        json!({})
    };
    json!({
        "apiVersion": "finrep.io/v1alpha1", "kind": "Recipient",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"email": email},
    })
}

fn email(i: usize) -> String {
    format!("reader{i}@desk.example.com")
}

fn chat_group() -> Value {
    json!({
        "apiVersion": "finrep.io/v1alpha1", "kind": "Recipient",
        "metadata": {"name": "desk-group", "namespace": NS, "labels": {"brief": "yes"}},
        "spec": {"chat": {
            "platform": "feishu",
            "webhookSecretRef": {"name": "desk-bot", "key": "webhook"},
            "signingSecretRef": {"name": "desk-bot", "key": "secret"},
        }},
    })
}

fn report(smtp_port: u16) -> Value {
    json!({
        "apiVersion": "finrep.io/v1alpha1", "kind": "DailyReport",
        "metadata": {"name": REPORT, "namespace": NS},
        "spec": {
            "title": "晨间要闻",
            "schedule": "0 6 * * *",
            "timeZone": "Asia/Shanghai",
            "mailWindow": {"start": "06:05", "end": "06:20"},
            "startingDeadlineSeconds": 300,
            "recipientSelector": {"matchLabels": {"brief": "yes"}},
            "content": {"lookbackHours": 48},
            "smtp": {
                "host": "127.0.0.1", "port": smtp_port, "tls": "none",
                "from": "晨间要闻 <brief@finrep.example>",
                "maxConnections": 1, "maxPerMinute": 6000,
            },
            "history": {"succeeded": 3, "failed": 3},
        },
    })
}

fn serve_feed(feed: &TestServer) {
    let items: String = (0..4)
        .map(|i| {
            format!(
                "<item><title>央行开展第{i}笔逆回购操作，利率维持不变</title><link>https://news.example.com/{i}</link><description>要闻{i}。</description></item>"
            )
        })
        .collect();
    feed.route(
        "/rss.xml",
        Response::ok(
            "application/rss+xml",
            format!(r#"<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>t</title>{items}</channel></rss>"#),
        ),
    );
    feed.route("/gone.xml", Response::status(404));
}

// ---- the desk ---------------------------------------------------------------------------

struct Desk {
    api: FakeApi,
    store: Store,
    clock_path: PathBuf,
    clock: Arc<dyn Clock>,
    feed: TestServer,
    smtp: SmtpServer,
    bots: ChatPlatforms,
    _runner: JobRunner,
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
}

impl Desk {
    async fn new(now: DateTime<Utc>) -> Self {
        finrep::tls::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let clock_path = dir.path().join("now");
        set_clock_file(&clock_path, now);
        let clock: Arc<dyn Clock> = Arc::new(FileClock::open(clock_path.clone()).unwrap());
        let (store, db_url) = common::operator::database_and_url().await;
        let feed = TestServer::start().await;
        serve_feed(&feed);
        // The bouncing reader's address is refused for good (a hard bounce).
        let smtp = SmtpServer::start(json!({"reject": [BOUNCING]}));
        let bots = ChatPlatforms::start().await;
        let webhook = bots.add_bot(Platform::Feishu, BOT, Some("feishu-secret-0123"), None);
        let api = FakeApi::start().await;
        api.install_crds();
        api.put_secret_data(NS, "finrep-database", &[("url", &db_url)]);
        api.put_secret_data(
            NS,
            "desk-bot",
            &[("webhook", &webhook), ("secret", "feishu-secret-0123")],
        );
        api.put(&source("news", &feed.url("/rss.xml")));
        api.put(&source("gone", &feed.url("/gone.xml")));
        for i in 0..READERS {
            api.put(&reader(&format!("r{i}"), &email(i), true));
        }
        api.put(&reader("r9", BOUNCING, true));
        api.put(&reader("outsider", "outsider@desk.example.com", false));
        api.put(&chat_group());
        api.put(&report(smtp.port));
        let pods = dir.path().join("pods");
        std::fs::create_dir_all(&pods).unwrap();
        let runner = JobRunner::start(RunnerOptions {
            client: api.client(),
            namespaces: vec![NS.into()],
            program: PathBuf::from(env!("CARGO_BIN_EXE_finrep-pipeline")),
            clock: clock.clone(),
            dir: pods,
        });
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
        Self {
            api,
            store,
            clock_path,
            clock,
            feed,
            smtp,
            bots,
            _runner: runner,
            kubeconfig,
            dir,
        }
    }

    fn set_clock(&self, t: DateTime<Utc>) {
        set_clock_file(&self.clock_path, t);
    }

    fn start_controller(&self) -> RunningController {
        let settings = Settings {
            trusted_hosts: vec![
                self.feed.host_port(),
                format!("127.0.0.1:{}", self.smtp.port),
            ],
            trusted_webhook_hosts: vec![format!("http://{}", self.bots.host_port())],
            report_namespaces: vec![NS.into()],
            clock_file: Some(self.clock_path.to_string_lossy().into_owned()),
            public_url: Some("https://finrep.example.com".into()),
            ..Settings::default()
        };
        RunningController::start(
            self.api.client(),
            self.store.clone(),
            settings,
            "editor-test",
            self.clock.clone(),
        )
    }

    /// `kubectl finrep ARGS -n desk`, as an editor types it (the kubeconfig of the API).
    async fn kubectl(&self, args: &[&str]) -> Output {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-finrep"))
            .args(args)
            .args(["-n", NS, "--kubeconfig"])
            .arg(&self.kubeconfig)
            .current_dir(self.dir.path())
            .env_remove("KUBECONFIG")
            .output();
        tokio::time::timeout(Duration::from_secs(120), out)
            .await
            .expect("kubectl finrep answers within 2 min")
            .unwrap()
    }

    fn report(&self) -> Value {
        self.api
            .object("finrep.io", "dailyreports", NS, REPORT)
            .unwrap()
    }

    fn messages(&self) -> Vec<Value> {
        self.smtp.messages()
    }

    fn posts(&self) -> usize {
        self.bots.texts(BOT).len()
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(self.store.pool())
            .await
            .unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn show(out: &Output) -> String {
    format!(
        "exit {}\n--- stdout\n{}\n--- stderr\n{}",
        code(out),
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// The plan a Job mounted, read back from its ConfigMap.
fn plan_of(api: &FakeApi, job: &str) -> Value {
    let map = api
        .object("", "configmaps", NS, job)
        .expect("the plan's ConfigMap");
    let gz = map["binaryData"]["plan.yaml.gz"].as_str().unwrap();
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(gz)
        .unwrap();
    let plan = finrep::plan::RunPlan::from_bytes(&bytes).unwrap();
    serde_json::to_value(plan).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_editors_evening_and_the_morning_after() {
    // 17:00 the day before.
    let desk = Desk::new(shanghai("2026-12-04 17:00:00")).await;
    let controller = desk.start_controller();
    evening_previews(&desk).await;
    test_sends(&desk).await;
    morning(&desk).await;
    status_and_logs(&desk).await;
    run_now(&desk).await;
    unblock(&desk).await;
    controller.stop().await;
    plugin_verbs_are_the_editor_roles(&desk);
}

/// A manual run of a day already delivered starts, and sends nobody a second copy.
async fn run_now(desk: &Desk) {
    let before = desk.messages().len();
    let out = desk.kubectl(&["run-now", REPORT]).await;
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert!(
        text(&out.stdout).contains("run started: Job brief-20261205-m"),
        "{}",
        show(&out)
    );
    eventually("the manual run over", 60, || {
        let s = desk.report()["status"].clone();
        s["activeRun"].is_null()
            && s["lastRun"]["job"]
                .as_str()
                .is_some_and(|j| j.contains("-m"))
            && s["lastRun"]["finished"].is_string()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:#}", desk.report()["status"]));
    assert_eq!(
        desk.messages().len(),
        before,
        "each copy once, whatever the runs"
    );
    assert_eq!(desk.posts(), 1);
}

/// The bounced reader's address fixed, the editor lifts the bounce.
async fn unblock(desk: &Desk) {
    let out = desk.kubectl(&["unblock", "r9"]).await;
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert!(text(&out.stdout).contains("mailed again"), "{}", show(&out));
    let out = desk.kubectl(&["unblock", "nobody"]).await;
    assert_eq!(code(&out), 1, "{}", show(&out));
    assert!(
        text(&out.stderr).contains("no Recipient nobody"),
        "{}",
        show(&out)
    );
}

/// Every request the plugin made is one the chart's editor role grants, and the role grants
/// nothing the plugin never asks for.
fn plugin_verbs_are_the_editor_roles(desk: &Desk) {
    let used: std::collections::BTreeSet<(String, String, String)> = desk
        .api
        .calls_from("kubectl-finrep")
        .into_iter()
        .map(|c| (c.group, c.resource, c.verb.to_string()))
        .collect();
    assert!(
        !used.is_empty(),
        "the plugin's requests are told apart by their User-Agent"
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/rbac.yaml");
    let granted = common::granted(&std::fs::read_to_string(path).unwrap(), "finrep-editor");
    let missing: Vec<_> = used.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&used).collect();
    assert!(missing.is_empty(), "used but not granted: {missing:?}");
    assert!(unused.is_empty(), "granted but never used: {unused:?}");
}

/// Previews at 17:00: tomorrow's report composed, sent to nobody, stored apart from runs.
async fn evening_previews(desk: &Desk) {
    let html = desk.dir.path().join("tomorrow.html");
    let out = desk
        .kubectl(&["preview", REPORT, "--html", html.to_str().unwrap()])
        .await;
    assert_eq!(code(&out), 0, "{}", show(&out));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("央行开展第"),
        "the text on stdout: {}",
        show(&out)
    );
    assert!(
        std::fs::read_to_string(&html).unwrap().contains("<html"),
        "the HTML in the file"
    );
    assert!(
        text(&out.stderr).contains("gone"),
        "the failing source is named: {}",
        show(&out)
    );
    let status = desk.report()["status"].clone();
    let preview = &status["preview"];
    assert_eq!(preview["phase"], "Ready", "{status:#}");
    assert_eq!(preview["date"], "2026-12-05", "the next slot's date");
    assert_eq!(preview["sourcesFailing"][0]["source"], "gone");
    assert!(
        preview["consoleUrl"]
            .as_str()
            .unwrap()
            .starts_with("https://finrep.example.com/console/previews/")
    );
    assert!(
        status.get("lastRun").is_none(),
        "a preview is never a run: {status:#}"
    );
    // The plan it ran: a preview, no recipient, no mail or chat credential.
    let plan = plan_of(&desk.api, preview["job"].as_str().unwrap());
    assert_eq!(plan["purpose"]["kind"], "preview", "{plan:#}");
    assert_eq!(plan["recipients"], json!([]));
    assert!(
        plan["secrets"].as_array().is_none_or(|s| s.is_empty()),
        "{plan:#}"
    );
    // Nothing sent, no run recorded, no delivery claimed, the sources' health untouched.
    assert_eq!(desk.messages().len(), 0);
    assert_eq!(desk.posts(), 0);
    assert_eq!(desk.count("SELECT count(*) FROM reports").await, 0);
    assert_eq!(desk.count("SELECT count(*) FROM delivery_log").await, 0);
    assert_eq!(desk.count("SELECT count(*) FROM fetch_log").await, 0);
    assert_eq!(desk.count("SELECT count(*) FROM previews").await, 1);

    // The chat group's copy, in its platform's markup; still nothing posted.
    let out = desk
        .kubectl(&["preview", REPORT, "--as", "desk-group"])
        .await;
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert!(text(&out.stdout).contains("晨间要闻"), "{}", show(&out));
    let map = desk
        .api
        .object("", "configmaps", NS, "brief-preview")
        .unwrap();
    assert_eq!(map["data"]["platform"], "feishu", "{map:#}");
    assert!(map["data"]["message.md"].as_str().is_some());
    assert_eq!(desk.posts(), 0);
    assert_eq!(desk.messages().len(), 0);
}

/// A test copy reaches only the reader named, once; anybody else is refused.
async fn test_sends(desk: &Desk) {
    let out = desk.kubectl(&["test-send", REPORT, "--to", "r0"]).await;
    assert_eq!(code(&out), 0, "{}", show(&out));
    let messages = desk.messages();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0]["rcpt"], json!([email(0)]));
    assert!(
        messages[0]["subject"].as_str().unwrap().contains("测试"),
        "{messages:#?}"
    );
    assert!(
        messages[0]["message_id"]
            .as_str()
            .unwrap()
            .starts_with("<test-"),
        "never the Message-ID of the real copy"
    );
    assert_eq!(desk.count("SELECT count(*) FROM delivery_log").await, 0);

    for (stranger, why) in [
        ("stranger@evil.example.com", "by its resource name"),
        ("nobody", "not a recipient of DailyReport brief"),
        ("outsider", "not a recipient of DailyReport brief"),
    ] {
        let out = desk.kubectl(&["test-send", REPORT, "--to", stranger]).await;
        assert_eq!(code(&out), 1, "{stranger}: {}", show(&out));
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(
            all.contains("Refused") && all.contains(why),
            "{stranger}: {all}"
        );
    }
    assert_eq!(desk.messages().len(), 1, "nothing more sent");
    assert_eq!(desk.posts(), 0);
    let events = desk.api.objects("events.k8s.io", "events", NS);
    assert!(events.iter().any(|e| e["reason"] == "TestSendRefused"));
    assert!(events.iter().any(|e| e["reason"] == "TestSent"));
}

/// At 06:00 a preview is asked for while the slot is due: it waits for the run, which
/// delivers each reader's copy once (the test copy counts for nothing).
async fn morning(desk: &Desk) {
    desk.set_clock(shanghai("2026-12-05 06:00:01"));
    eventually("the run's Job", 30, || {
        desk.api
            .object("batch", "jobs", NS, "brief-20261205")
            .is_some()
    })
    .await
    .unwrap();
    let out = desk.kubectl(&["preview", REPORT, "--no-wait"]).await;
    assert_eq!(code(&out), 0, "{}", show(&out));
    eventually("the preview waits for the run", 30, || {
        let s = desk.report()["status"].clone();
        s["preview"]["phase"] == "Waiting"
            && s["preview"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("brief-20261205"))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:#}", desk.report()["status"]));
    desk.set_clock(shanghai("2026-12-05 06:05:30"));
    eventually("the run delivered", 90, || {
        let s = desk.report()["status"].clone();
        s["lastRun"]["phase"] == "PartiallyDelivered"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:#}", desk.report()["status"]));
    eventually("the preview after the run", 90, || {
        desk.report()["status"]["preview"]["phase"] == "Ready"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:#}", desk.report()["status"]));
    let run = &desk.report()["status"]["lastRun"];
    assert_eq!(run["date"], "2026-12-05");
    assert_eq!(
        run["delivered"],
        (READERS + 1).to_string().parse::<u64>().unwrap()
    );
    assert_eq!(run["failed"], 1, "the bounced reader: {run:#}");
    for i in 0..READERS {
        assert_eq!(
            desk.smtp.copies_for(&email(i)),
            usize::from(i == 0) + 1,
            "reader {i}"
        );
    }
    assert_eq!(desk.posts(), 1, "one post to the group");
    let channels = run["channels"].as_array().unwrap();
    assert!(
        channels
            .iter()
            .any(|c| c["channel"] == "feishu" && c["delivered"] == 1)
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM delivery_log").await,
        (READERS + 2) as i64
    );
    desk.set_clock(shanghai("2026-12-05 06:21:00"));
}

/// The morning's status and logs from the cluster alone, for people and for scripts.
async fn status_and_logs(desk: &Desk) {
    // The health reconciler writes the Sources' and Recipients' status from the records.
    eventually("the sources' and recipients' status", 30, || {
        let gone = desk.api.object("finrep.io", "sources", NS, "gone").unwrap();
        let r9 = desk
            .api
            .object("finrep.io", "recipients", NS, "r9")
            .unwrap();
        gone["status"]["consecutiveFailures"].as_u64() >= Some(1)
            && r9["status"]["blacklisted"] == true
    })
    .await
    .unwrap();
    let out = desk.kubectl(&["status", REPORT]).await;
    assert_eq!(code(&out), 3, "needs attention: {}", show(&out));
    let stdout = text(&out.stdout);
    for expected in [
        "PartiallyDelivered",
        "email: 3 delivered, 1 failed",
        "feishu: 1 delivered",
        "gone: 1 fetch(es) failed",
        "kubectl finrep unblock r9",
        "next slot  2026-12-06 06:00 +08:00",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in:\n{stdout}");
    }
    let all = desk.kubectl(&["status"]).await;
    assert_eq!(code(&all), 3, "{}", show(&all));
    assert_eq!(text(&all.stdout), stdout, "the namespace's one report");
    let out = desk.kubectl(&["status", REPORT, "-o", "json"]).await;
    let parsed: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    assert_eq!(parsed[0]["verdict"], "NeedsAttention");
    assert_eq!(parsed[0]["lastRun"]["failed"], 1);
    assert_eq!(parsed[0]["recipientsNotMailed"][0]["name"], "r9");

    let out = desk.kubectl(&["logs", REPORT]).await;
    assert_eq!(code(&out), 0, "{}", show(&out));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("==> pod brief-20261205-0"), "{stdout}");
    assert!(
        stdout.contains("\"phase\":\"PartiallyDelivered\""),
        "the run's outcome line: {stdout}"
    );
    let out = desk
        .kubectl(&["logs", REPORT, "--date", "2026-11-01"])
        .await;
    assert_eq!(code(&out), 1, "{}", show(&out));
    assert!(
        text(&out.stderr).contains("no Job on record"),
        "{}",
        show(&out)
    );
}
