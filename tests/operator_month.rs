//! Mornings through the operator's whole path: the controller (in this process, on a clock
//! file) creates each slot's Job in the in-memory API, the Job runner runs the real
//! `finrep-pipeline` as the pod would (on the same clock file), the pipeline mails a real SMTP
//! server and posts to a chat stand-in, and the Job's status goes back to the controller,
//! which writes the report's status. Every copy is counted from the servers' own records.
//!
//! Two reports in two namespaces — Shanghai at 06:00 and New York at 07:00 — through a week
//! across New York's change from daylight-saving time, with a leader failover, a slot missed
//! while no controller runs (past its starting deadline: `Missed`, nothing sent late), a Job
//! whose pod is SIGKILLed mid-delivery and retried by the Job's backoff (each copy once), and
//! an edit of a report mid-week. `FINREP_MONTH_DAYS` makes it longer (`scripts/soak.sh` runs
//! thirty days).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use common::chat_platforms::{ChatPlatforms, Platform};
use common::http::{Response, TestServer};
use common::job_runner::{JobRunner, RunnerOptions};
use common::kube_api::FakeApi;
use common::operator::{RunningController as Controller, eventually};
use common::smtp::SmtpServer;
use finrep::clock::{Clock, FileClock};
use finrep::controller::objects::Settings;
use finrep::store::Store;
use serde_json::{Value, json};

const DESK_A: &str = "desk-a";
const DESK_B: &str = "desk-b";
const FIRST_DAY: &str = "2026-10-29";
const READERS: usize = 3;
const BOT: &str = "tok-desk-a";

/// One report of the week: where it is and when it runs.
#[derive(Clone, Copy)]
struct Desk {
    namespace: &'static str,
    report: &'static str,
    zone: Tz,
    /// The slot's local hour; the window is HH:05–HH:20.
    hour: u32,
}

const BRIEF: Desk = Desk {
    namespace: DESK_A,
    report: "brief",
    zone: chrono_tz::Asia::Shanghai,
    hour: 6,
};
const CLOSE: Desk = Desk {
    namespace: DESK_B,
    report: "close",
    zone: chrono_tz::America::New_York,
    hour: 7,
};

impl Desk {
    fn local(&self, date: NaiveDate, h: u32, m: u32, s: u32) -> DateTime<Utc> {
        let t = date.and_time(NaiveTime::from_hms_opt(h, m, s).unwrap());
        self.zone.from_local_datetime(&t).single().unwrap().to_utc()
    }
    fn slot(&self, date: NaiveDate) -> DateTime<Utc> {
        self.local(date, self.hour, 0, 0)
    }
    fn window(&self, date: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            self.local(date, self.hour, 5, 0),
            self.local(date, self.hour, 20, 0),
        )
    }
    fn job(&self, date: NaiveDate) -> String {
        format!("{}-{}", self.report, date.format("%Y%m%d"))
    }
}

// ---- fixtures ---------------------------------------------------------------------------

fn source(namespace: &str, url: &str) -> Value {
    json!({
        "apiVersion": "finrep.io/v1alpha1", "kind": "Source",
        "metadata": {"name": "news", "namespace": namespace},
        "spec": {"kind": "feed", "url": url, "category": "宏观"},
    })
}

fn reader(namespace: &str, i: usize) -> Value {
    json!({
        "apiVersion": "finrep.io/v1alpha1", "kind": "Recipient",
        "metadata": {"name": format!("r{i}"), "namespace": namespace},
        "spec": {"email": email(namespace, i), "displayName": format!("读者{i}")},
    })
}

fn email(namespace: &str, i: usize) -> String {
    format!("reader{i}@{namespace}.example.com")
}

fn chat_group(namespace: &str) -> Value {
    json!({
        "apiVersion": "finrep.io/v1alpha1", "kind": "Recipient",
        "metadata": {"name": "desk", "namespace": namespace},
        "spec": {"chat": {
            "platform": "feishu",
            "webhookSecretRef": {"name": "desk-bot", "key": "webhook"},
            "signingSecretRef": {"name": "desk-bot", "key": "secret"},
        }},
    })
}

fn report(desk: &Desk, title: &str, smtp_port: u16) -> Value {
    json!({
        "apiVersion": "finrep.io/v1alpha1", "kind": "DailyReport",
        "metadata": {"name": desk.report, "namespace": desk.namespace},
        "spec": {
            "title": title,
            "schedule": format!("0 {} * * *", desk.hour),
            "timeZone": desk.zone.name(),
            "mailWindow": {"start": format!("{:02}:05", desk.hour), "end": format!("{:02}:20", desk.hour)},
            "startingDeadlineSeconds": 300,
            "content": {"lookbackHours": 48},
            "smtp": {
                "host": "127.0.0.1", "port": smtp_port, "tls": "none",
                "from": format!("finrep <{}@finrep.example>", desk.report),
                "maxConnections": 1, "maxPerMinute": 6000,
            },
            "job": {"backoffLimit": 3},
        },
    })
}

/// Three new items at each fetch, dated by nothing: they count as published when fetched
/// (on the run's clock), inside every lookback.
fn serve_feed(feed: &TestServer) {
    let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    feed.handle("/rss.xml", move |_| {
        let n = fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let items: String = (0..3)
            .map(|i| {
                format!(
                    "<item><title>第{n}期市场要闻{i}：沪深两市成交额突破{n}.{i}万亿元</title><link>https://news.example.com/{n}/{i}</link><description>要闻{n}-{i}。</description></item>"
                )
            })
            .collect();
        Response::ok(
            "application/rss+xml",
            format!(r#"<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>t</title>{items}</channel></rss>"#),
        )
    });
}

// ---- the world --------------------------------------------------------------------------

struct Month {
    api: FakeApi,
    store: Store,
    clock_path: PathBuf,
    clock: Arc<dyn Clock>,
    feed: TestServer,
    smtp: SmtpServer,
    bots: ChatPlatforms,
    runner: JobRunner,
    /// Briefs delivered so far: the chat group's posts there must be.
    briefs: std::sync::atomic::AtomicUsize,
    _dir: tempfile::TempDir,
}

impl Month {
    async fn new() -> Self {
        finrep::tls::install_crypto_provider();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,finrep=info".into()),
            )
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let clock_path = dir.path().join("now");
        std::fs::write(&clock_path, "2026-10-28T00:00:00Z\n").unwrap();
        let clock: Arc<dyn Clock> = Arc::new(FileClock::open(clock_path.clone()).unwrap());
        let (store, db_url) = common::operator::database_and_url().await;
        let feed = TestServer::start().await;
        serve_feed(&feed);
        // Slow enough that a kill lands mid-delivery.
        let smtp = SmtpServer::start(json!({"delay_ms": 150}));
        let bots = ChatPlatforms::start().await;
        let webhook = bots.add_bot(Platform::Feishu, BOT, Some("feishu-secret-0123"), None);
        let api = FakeApi::start().await;
        api.install_crds();
        for desk in [BRIEF, CLOSE] {
            api.put_secret_data(desk.namespace, "finrep-database", &[("url", &db_url)]);
            api.put(&source(desk.namespace, &feed.url("/rss.xml")));
            for i in 0..READERS {
                api.put(&reader(desk.namespace, i));
            }
        }
        api.put_secret_data(
            DESK_A,
            "desk-bot",
            &[("webhook", &webhook), ("secret", "feishu-secret-0123")],
        );
        api.put(&chat_group(DESK_A));
        api.put(&report(&BRIEF, "晨间要闻", smtp.port));
        api.put(&report(&CLOSE, "Overnight close", smtp.port));
        let pods = dir.path().join("pods");
        std::fs::create_dir_all(&pods).unwrap();
        let runner = JobRunner::start(RunnerOptions {
            client: api.client(),
            namespaces: vec![DESK_A.into(), DESK_B.into()],
            program: PathBuf::from(env!("CARGO_BIN_EXE_finrep-pipeline")),
            clock: clock.clone(),
            dir: pods,
        });
        Self {
            api,
            store,
            clock_path,
            clock,
            feed,
            smtp,
            bots,
            runner,
            briefs: Default::default(),
            _dir: dir,
        }
    }

    fn set_clock(&self, t: DateTime<Utc>) {
        common::operator::set_clock_file(&self.clock_path, t);
    }

    fn settings(&self) -> Settings {
        Settings {
            trusted_hosts: vec![
                self.feed.host_port(),
                format!("127.0.0.1:{}", self.smtp.port),
            ],
            trusted_webhook_hosts: vec![format!("http://{}", self.bots.host_port())],
            report_namespaces: vec![DESK_A.into(), DESK_B.into()],
            clock_file: Some(self.clock_path.to_string_lossy().into_owned()),
            ..Settings::default()
        }
    }

    fn start_controller(&self, identity: &str) -> Controller {
        Controller::start(
            self.api.client(),
            self.store.clone(),
            self.settings(),
            identity,
            self.clock.clone(),
        )
    }

    fn report(&self, desk: &Desk) -> Value {
        self.api
            .object("finrep.io", "dailyreports", desk.namespace, desk.report)
            .unwrap()
    }

    fn job(&self, desk: &Desk, date: NaiveDate) -> Option<Value> {
        self.api
            .object("batch", "jobs", desk.namespace, &desk.job(date))
    }

    /// Copies of `desk`'s report of `date` the SMTP server accepted for each reader.
    fn copies(&self, desk: &Desk, date: NaiveDate) -> BTreeMap<String, Vec<String>> {
        let prefix = format!("<{date}.{}.{}.", desk.report, desk.namespace);
        let mut by_reader: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for m in self.smtp.messages() {
            let id = m["message_id"].as_str().unwrap_or_default();
            if !id.starts_with(&prefix) {
                continue;
            }
            for r in m["rcpt"].as_array().into_iter().flatten() {
                by_reader
                    .entry(r.as_str().unwrap_or_default().to_string())
                    .or_default()
                    .push(id.to_string());
            }
        }
        by_reader
    }

    /// The chat group's posts so far.
    fn posts(&self) -> usize {
        self.bots.texts(BOT).len()
    }

    /// `kubectl get dailyreports` of `desk`: each printer column's value.
    fn columns(&self, desk: &Desk) -> BTreeMap<String, String> {
        let object = self.report(desk);
        let crd = finrep::api::ResourceKind::DailyReport.crd();
        crd.spec.versions[0]
            .additional_printer_columns
            .clone()
            .unwrap()
            .iter()
            .map(|c| {
                let path = finrep::jsonpath::JsonPath::parse(&format!("${}", c.json_path)).unwrap();
                (c.name.clone(), path.text(&object).unwrap_or_default())
            })
            .collect()
    }
}

fn days() -> u64 {
    std::env::var("FINREP_MONTH_DAYS")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(7)
}

/// What each morning of the week holds besides an ordinary run.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Twist {
    None,
    /// The brief's title changes and a fourth reader is added the evening before.
    Edit,
    /// The brief's pod is SIGKILLed after its first copy is accepted.
    KillMidDelivery,
    /// The leading controller stops before the brief's slot; the standby takes over.
    Failover,
    /// No controller runs from before the brief's slot to past its starting deadline.
    ControllerDown,
}

fn twist(day: u64) -> Twist {
    match day % 7 {
        2 => Twist::Edit,
        3 => Twist::KillMidDelivery,
        4 => Twist::Failover,
        5 => Twist::ControllerDown,
        _ => Twist::None,
    }
}

/// One slot of `desk` on `date`, run as a morning goes: the clock reaches the slot, the
/// controller starts the Job, the runner runs it, the window opens, the run delivers and the
/// Job completes; the report's status then says so.
async fn morning(m: &Month, desk: &Desk, date: NaiveDate, readers: usize) {
    let slot = desk.slot(date);
    let (open, close) = desk.window(date);
    m.set_clock(slot - chrono::Duration::seconds(30));
    tokio::time::sleep(Duration::from_millis(300)).await;
    m.set_clock(slot + chrono::Duration::seconds(5));
    eventually(&format!("{} Job of {date}", desk.report), 30, || {
        m.job(desk, date).is_some()
    })
    .await
    .unwrap();
    let job = m.job(desk, date).unwrap();
    assert_eq!(
        job["metadata"]["annotations"]["finrep.io/scheduled-for"]
            .as_str()
            .map(|s| DateTime::parse_from_rfc3339(s).unwrap().to_utc()),
        Some(slot),
        "the Job is for the slot in the report's zone"
    );
    m.set_clock(open + chrono::Duration::seconds(30));
    eventually(
        &format!("{} Job of {date} complete", desk.report),
        90,
        || {
            m.runner
                .record(desk.namespace, &desk.job(date))
                .is_some_and(|r| r.ended.is_some())
        },
    )
    .await
    .unwrap();
    let record = m.runner.record(desk.namespace, &desk.job(date)).unwrap();
    assert_eq!(record.ended.as_deref(), Some("Complete"), "{record:?}");
    eventually(&format!("{} status of {date}", desk.report), 30, || {
        let c = m.columns(desk);
        c["Last-Run"] == date.to_string() && c["Phase"] == "Succeeded"
    })
    .await
    .unwrap();
    let c = m.columns(desk);
    let chat = usize::from(desk.namespace == DESK_A);
    assert_eq!(c["Delivered"], (readers + chat).to_string(), "{c:?}");
    assert_eq!(c["Failed"], "0");
    let next = DateTime::parse_from_rfc3339(&c["Next"]).unwrap().to_utc();
    assert_eq!(next, desk.slot(date.succ_opt().unwrap()), "{c:?}");
    assert_delivered_in_window(m, desk, date, readers, (open, close)).await;
    m.set_clock(close + chrono::Duration::minutes(1));
}

/// Each reader has the day's copy once (one Message-ID; a second copy only of the same id,
/// after a kill cut its transaction), the chat group one post, and the delivery log's times
/// — on the run's clock — are inside the window.
async fn assert_delivered_in_window(
    m: &Month,
    desk: &Desk,
    date: NaiveDate,
    readers: usize,
    (open, close): (DateTime<Utc>, DateTime<Utc>),
) {
    let copies = m.copies(desk, date);
    assert_eq!(copies.len(), readers, "{} {date}: {copies:#?}", desk.report);
    for (reader, ids) in &copies {
        let mut distinct = ids.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), 1, "{reader} {date}: {ids:?}");
        assert!(ids.len() <= 2, "{reader} {date}: {ids:?}");
    }
    if desk.namespace == DESK_A {
        let briefs = m.briefs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        assert_eq!(
            m.posts(),
            briefs,
            "{date}: one post a day: {:?}",
            m.bots.refusals(BOT)
        );
    }
    type Times = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    let times: Vec<Times> = sqlx::query_as(
        "SELECT d.sent_at, r.finished_at FROM delivery_log d JOIN reports r ON r.id = d.report_id
         WHERE r.namespace = $1 AND r.report = $2 AND r.report_date = $3",
    )
    .bind(desk.namespace)
    .bind(desk.report)
    .bind(date)
    .fetch_all(m.store.pool())
    .await
    .unwrap();
    assert_eq!(times.len(), readers + usize::from(desk.namespace == DESK_A));
    for (sent, finished) in times {
        let sent = sent.expect("sent");
        assert!(open <= sent && sent <= close, "{date}: sent at {sent}");
        let finished = finished.expect("finished");
        assert!(
            finished >= sent && finished <= close,
            "{date}: finished {finished}"
        );
    }
}

/// The brief's slot passes while no controller runs; back past its starting deadline, the
/// controller records it missed and starts nothing.
async fn missed_morning(m: &Month, date: NaiveDate, identity: &str) -> Controller {
    let slot = BRIEF.slot(date);
    m.set_clock(slot + chrono::Duration::minutes(10));
    let controller = m.start_controller(identity);
    eventually("the missed brief", 30, || {
        let c = m.columns(&BRIEF);
        c["Last-Run"] == date.to_string() && c["Phase"] == "Missed"
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(m.job(&BRIEF, date).is_none(), "no Job for a missed slot");
    let events = m.api.objects("events.k8s.io", "events", DESK_A);
    assert!(
        events.iter().any(|e| e["reason"] == "RunMissed"),
        "a RunMissed Event"
    );
    let (_, close) = BRIEF.window(date);
    m.set_clock(close + chrono::Duration::minutes(1));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(m.copies(&BRIEF, date).is_empty(), "nothing sent late");
    assert_eq!(
        m.posts(),
        m.briefs.load(std::sync::atomic::Ordering::SeqCst),
        "no post late"
    );
    controller
}

/// The evening before: a new title and a fourth reader.
fn edit_brief(m: &Month) {
    let mut report = m.report(&BRIEF);
    report["spec"]["title"] = json!("晨间要闻（改版）");
    report["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    m.api.put(&report);
    m.api.put(&reader(DESK_A, READERS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_week_of_mornings_through_the_controller_and_its_jobs() {
    let m = Month::new().await;
    let first: NaiveDate = FIRST_DAY.parse().unwrap();
    m.set_clock(BRIEF.slot(first) - chrono::Duration::hours(2));
    let mut leader = m.start_controller("a");
    let mut standby = Some(m.start_controller("b"));
    eventually("both reports scheduled", 30, || {
        [BRIEF, CLOSE]
            .iter()
            .all(|d| m.report(d)["status"]["nextScheduleTime"].is_string())
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {:#} {:#}",
            m.report(&BRIEF)["status"],
            m.report(&CLOSE)["status"]
        )
    });
    let mut readers = READERS;
    for day in 0..days() {
        let date = first + chrono::Days::new(day);
        match twist(day) {
            Twist::Edit => {
                edit_brief(&m);
                readers = READERS + 1;
            }
            Twist::KillMidDelivery => {
                let smtp_before = m.smtp.messages().len();
                let smtp = m.smtp.messages_path();
                m.runner.kill_when(
                    &BRIEF.job(date),
                    Box::new(move || common::smtp::count_lines(&smtp) > smtp_before),
                );
            }
            Twist::Failover => {
                leader.stop().await;
                leader = standby.take().expect("a standby");
                standby = Some(m.start_controller(&format!("standby-{day}")));
            }
            Twist::ControllerDown => {
                leader.stop().await;
                if let Some(s) = standby.take() {
                    s.stop().await;
                }
                leader = missed_morning(&m, date, &format!("back-{day}")).await;
                standby = Some(m.start_controller(&format!("standby-{day}")));
                morning(&m, &CLOSE, date, READERS).await;
                continue;
            }
            Twist::None => {}
        }
        morning(&m, &BRIEF, date, readers).await;
        if twist(day) == Twist::KillMidDelivery {
            let record = m.runner.record(DESK_A, &BRIEF.job(date)).unwrap();
            assert_eq!(record.pods, 2, "killed once, retried once: {record:?}");
            assert_eq!(record.exits.first(), Some(&None), "{record:?}");
        }
        if twist(day) == Twist::Edit {
            let subjects: Vec<String> = m
                .smtp
                .messages()
                .iter()
                .filter(|msg| {
                    msg["message_id"]
                        .as_str()
                        .unwrap_or_default()
                        .starts_with(&format!("<{date}.brief."))
                })
                .map(|msg| msg["subject"].as_str().unwrap_or_default().to_string())
                .collect();
            assert!(subjects.iter().all(|s| s.contains("改版")), "{subjects:?}");
        }
        morning(&m, &CLOSE, date, READERS).await;
    }
    // Standard time began in New York on 1 November: its slots moved an hour in UTC.
    let before = CLOSE.slot("2026-10-31".parse().unwrap());
    let after = CLOSE.slot("2026-11-02".parse().unwrap());
    assert_eq!((after - before).num_hours(), 49);
    // Every Job the week made was for a slot, one per report and day, and none is left running.
    let records = m.runner.records();
    for (key, record) in &records {
        assert!(record.ended.is_some(), "{key:?}: {record:?}");
    }
    let missed = (0..days())
        .filter(|d| twist(*d) == Twist::ControllerDown)
        .count() as u64;
    assert_eq!(records.len() as u64, 2 * days() - missed, "{records:#?}");
    println!(
        "operator month: {} days, {} Jobs, {} pods, {} e-mails accepted, {} chat posts, {missed} slot(s) missed while no controller ran",
        days(),
        records.len(),
        records.values().map(|r| r.pods).sum::<u32>(),
        m.smtp.messages().len(),
        m.posts(),
    );
    leader.stop().await;
    if let Some(s) = standby {
        s.stop().await;
    }
}
