//! `finrep standalone` end to end: the real binary on a clock read from a file, real
//! PostgreSQL, feeds on loopback and a real SMTP server process. Days pass in seconds; the
//! process is killed, stopped and restarted and its configuration edited along the way, and
//! every copy is counted from the SMTP server's own log.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use common::http::{Response, TestServer};
use common::smtp::{SmtpServer, free_port};
use finrep::store::Store;
use serde_json::{Value, json};

const RECIPIENTS: usize = 6;
/// Both reports run at 06:00 Asia/Shanghai, side by side.
const BRIEF: &str = "晨间要闻";
const CLOSE: &str = "隔夜市场";

// ---- configuration fixtures -------------------------------------------------------------

fn source(name: &str, url: &str) -> Value {
    json!({
        "apiVersion": "finrep.io/v1alpha1", "kind": "Source",
        "metadata": {"name": name},
        "spec": {"kind": "feed", "url": url, "category": "宏观"},
    })
}

fn recipient(i: usize) -> Value {
    json!({
        "apiVersion": "finrep.io/v1alpha1", "kind": "Recipient",
        "metadata": {"name": format!("r{i}")},
        "spec": {"email": email(i), "displayName": format!("读者{i}")},
    })
}

fn email(i: usize) -> String {
    format!("reader{i}@example.com")
}

/// A report at 06:00 Shanghai, window 06:05–06:20, mailing through the test server.
fn report(name: &str, title: &str, smtp_port: u16, deadline_seconds: u32) -> Value {
    json!({
        "apiVersion": "finrep.io/v1alpha1", "kind": "DailyReport",
        "metadata": {"name": name},
        "spec": {
            "title": title,
            "startingDeadlineSeconds": deadline_seconds,
            "content": {"lookbackHours": 96},
            "smtp": {
                "host": "127.0.0.1", "port": smtp_port, "tls": "none",
                "from": "finrep <brief@finrep.example>", "maxConnections": 1,
                "maxPerMinute": 60000,
            },
        },
    })
}

fn write_config(dir: &Path, docs: &[Value]) {
    let yaml: Vec<String> = docs
        .iter()
        .map(|d| serde_norway::to_string(d).unwrap())
        .collect();
    // Written aside and renamed, as an editor or `kubectl`-style tool would.
    let tmp = dir.join(".all.yaml.tmp");
    std::fs::write(&tmp, yaml.join("---\n")).unwrap();
    std::fs::rename(tmp, dir.join("all.yaml")).unwrap();
}

/// Three new items at every fetch: every day's report has news of its own. Items carry no
/// date, so they count as published when fetched (wall-clock time), inside every lookback.
fn serve_feed(feed: &TestServer) {
    let fetches = Arc::new(AtomicUsize::new(0));
    feed.handle("/rss.xml", move |_| {
        let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
        let items: String = [
            format!("央行公开市场操作净投放{n}00亿元"),
            format!("沪深两市成交额第{n}次突破1.{n}万亿元"),
            format!("港股恒生指数收涨{n}.5%，科技股领涨"),
        ]
        .iter()
        .enumerate()
        .map(|(i, title)| {
            format!(
                "<item><title>{title}</title><link>https://news.example.com/{n}/{i}</link><description>{title}。</description></item>"
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

struct World {
    /// Day 0 of the test: tomorrow in Shanghai, so fetch times (wall clock) stay within
    /// the reports' lookback.
    base: NaiveDate,
    config: tempfile::TempDir,
    backups: tempfile::TempDir,
    clock: PathBuf,
    _clock_dir: tempfile::TempDir,
    feed: TestServer,
    smtp: SmtpServer,
    db_url: String,
    store: Store,
    admin: u16,
}

impl World {
    async fn new(smtp_delay_ms: u64) -> Self {
        finrep::tls::install_crypto_provider();
        let db_url = common::scratch_database().await;
        let store = Store::connect(&db_url, 2, Duration::from_secs(10))
            .await
            .unwrap();
        let feed = TestServer::start().await;
        serve_feed(&feed);
        let clock_dir = tempfile::tempdir().unwrap();
        let shanghai = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
        Self {
            base: chrono::Utc::now().with_timezone(&shanghai).date_naive() + chrono::Days::new(1),
            config: tempfile::tempdir().unwrap(),
            backups: tempfile::tempdir().unwrap(),
            clock: clock_dir.path().join("now"),
            _clock_dir: clock_dir,
            feed,
            smtp: SmtpServer::start(json!({"delay_ms": smtp_delay_ms})),
            db_url,
            store,
            admin: free_port(),
        }
    }

    /// Both reports; `close` catches up only within 5 minutes.
    fn configure(&self, recipients: usize, brief_title: &str) {
        let mut docs = vec![source("news", &self.feed.url("/rss.xml"))];
        docs.extend((0..recipients).map(recipient));
        docs.push(report("brief", brief_title, self.smtp.port, 1800));
        docs.push(report("close", CLOSE, self.smtp.port, 300));
        write_config(self.config.path(), &docs);
    }

    fn date(&self, day: u64) -> NaiveDate {
        self.base + chrono::Days::new(day)
    }

    /// A Shanghai local time on test day `day`.
    fn at(&self, day: u64, hhmmss: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("{}T{hhmmss}+08:00", self.date(day)))
            .unwrap()
            .to_utc()
    }

    /// Sets the clock to a Shanghai local time on test day `day`.
    fn set_clock(&self, day: u64, hhmmss: &str) {
        std::fs::write(
            &self.clock,
            format!("{}\n", self.at(day, hhmmss).to_rfc3339()),
        )
        .unwrap();
    }

    fn start(&self) -> Process {
        self.start_with(&[])
    }

    fn start_with(&self, extra: &[String]) -> Process {
        let log = self
            .backups
            .path()
            .join(format!("standalone-{}.log", free_port()));
        let child = Command::new(env!("CARGO_BIN_EXE_finrep"))
            .args(["--log-format", "json", "standalone", "--config"])
            .arg(self.config.path())
            .args(["--poll-seconds", "0.2", "--admin-listen"])
            .arg(format!("127.0.0.1:{}", self.admin))
            .arg("--backup-dir")
            .arg(self.backups.path().join("dumps"))
            .args(["--backup-retention-days", "3"])
            .args(["--trusted-host", &self.feed.host_port()])
            .args(["--trusted-host", &format!("127.0.0.1:{}", self.smtp.port)])
            .args(extra)
            .env("FINREP_CLOCK_FILE", &self.clock)
            .env("DATABASE_URL", &self.db_url)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Process { child, log }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        match reqwest::get(format!("http://127.0.0.1:{}{path}", self.admin)).await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    }

    async fn wait_ready(&self, p: &mut Process) {
        let what = "the admin port to answer ready";
        wait_for(what, p, || async { self.get("/readyz").await.0 == 200 }).await;
    }

    /// Copies of report `title` of `day` that `email` received.
    fn copies(&self, title: &str, day: u64, email: &str) -> usize {
        let subject = format!("{title} · {}", self.date(day));
        self.smtp
            .messages()
            .iter()
            .filter(|m| m["subject"].as_str() == Some(subject.as_str()))
            .filter(|m| m["rcpt"][0].as_str() == Some(email))
            .count()
    }

    fn all_copies(&self, title: &str, day: u64) -> usize {
        (0..RECIPIENTS + 1)
            .map(|i| self.copies(title, day, &email(i)))
            .sum()
    }

    async fn slot_state(&self, report: &str, task: &str, day: u64, hhmm: &str) -> Option<String> {
        let slot = self.at(day, &format!("{hhmm}:00"));
        sqlx::query_scalar(
            "SELECT state FROM schedule_slots WHERE report = $1 AND task = $2 AND slot = $3",
        )
        .bind(report)
        .bind(task)
        .bind(slot)
        .fetch_optional(self.store.pool())
        .await
        .unwrap()
    }

    async fn wait_slot(
        &self,
        p: &mut Process,
        report: &str,
        task: &str,
        day: u64,
        hhmm: &str,
        state: &str,
    ) {
        let what = format!("slot {report}/{task} of day {day} {hhmm} to be {state}");
        wait_for(&what, p, || async {
            self.slot_state(report, task, day, hhmm).await.as_deref() == Some(state)
        })
        .await;
    }

    async fn phase(&self, report: &str, day: u64) -> Option<String> {
        let date = self.date(day);
        sqlx::query_scalar("SELECT phase FROM reports WHERE report = $1 AND report_date = $2")
            .bind(report)
            .bind(date)
            .fetch_optional(self.store.pool())
            .await
            .unwrap()
    }

    fn dumps(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.backups.path().join("dumps"))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn finrep(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_finrep"))
            .args(args)
            .env("DATABASE_URL", &self.db_url)
            .output()
            .unwrap()
    }
}

struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    /// SIGTERM, and the exit status once it stopped.
    async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no exit 30 s after SIGTERM:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `done` for up to 60 s; on time-out, fails with the process's log.
async fn wait_for<F, Fut>(what: &str, p: &mut Process, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !done().await {
        if let Some(status) = p.child.try_wait().unwrap() {
            panic!(
                "standalone exited ({status}) waiting for {what}:\n{}",
                p.log()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- the tests --------------------------------------------------------------------------

/// Three days of two reports with a kill mid-delivery, a graceful stop mid-delivery, a
/// manual run beside the scheduler, a configuration edit, a stop across a slot (caught up by
/// one report, missed by the other), backups with pruning, and `finrep status` after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_days_with_kills_edits_and_a_missed_slot() {
    let w = World::new(120).await;
    w.configure(RECIPIENTS, BRIEF);
    let dumps = w.backups.path().join("dumps");
    std::fs::create_dir_all(&dumps).unwrap();
    for keep in [
        "finrep_database_20200101.sql.gz",
        "finrep_brief_20200101.sql.gz",
        "notes.txt",
    ] {
        std::fs::write(dumps.join(keep), b"x").unwrap();
    }

    // Day 0. The scheduler first sees the reports at 05:59; nothing runs before 06:00.
    w.set_clock(0, "05:59:00");
    let mut p = w.start();
    w.wait_ready(&mut p).await;
    let (_, metrics) = w.get("/metrics").await;
    let next = format!(
        "finrep_next_slot_timestamp_seconds{{namespace=\"default\",report=\"brief\"}} {}",
        w.at(0, "06:00:00").timestamp()
    );
    assert!(metrics.contains(&next), "{next} in\n{metrics}");
    w.set_clock(0, "06:00:20");
    w.wait_slot(&mut p, "brief", "run", 0, "06:00", "Started")
        .await;
    w.wait_slot(&mut p, "close", "run", 0, "06:00", "Started")
        .await;
    assert!(
        w.smtp.messages().is_empty(),
        "nothing is sent before the window opens"
    );

    // The window opens; the process is killed (SIGKILL) after a few messages.
    w.set_clock(0, "06:06:00");
    wait_for("a few messages", &mut p, || async {
        w.smtp.messages().len() >= 3
    })
    .await;
    p.kill();
    let sent_before_restart = w.smtp.messages().len();
    assert!(sent_before_restart < 2 * RECIPIENTS, "killed mid-delivery");

    // A restart resumes both runs; nobody gets a second copy.
    let mut p = w.start();
    w.wait_slot(&mut p, "brief", "run", 0, "06:00", "Finished")
        .await;
    w.wait_slot(&mut p, "close", "run", 0, "06:00", "Finished")
        .await;
    assert_one_copy_each(&w, 0, RECIPIENTS, true);

    // A restart after the finished slot does not run it again.
    assert!(p.terminate().await.success());
    let mut p = w.start();
    w.wait_ready(&mut p).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_one_copy_each(&w, 0, RECIPIENTS, true);

    // 06:30: the installation's one backup of the database, whatever the number of reports;
    // its old dump is pruned (--backup-retention-days 3), nothing else — not even a report's
    // dump of an earlier version.
    w.set_clock(0, "06:30:10");
    w.wait_slot(&mut p, "backup", "backup", 0, "06:30", "Finished")
        .await;
    let today = format!("finrep_database_{}.sql.gz", w.date(0).format("%Y%m%d"));
    assert_eq!(
        w.dumps(),
        ["finrep_brief_20200101.sql.gz", today.as_str(), "notes.txt"]
    );
    for report in ["brief", "close"] {
        assert_eq!(
            w.slot_state(report, "backup", 0, "06:30").await,
            None,
            "{report} backs nothing up on its own"
        );
    }

    // A bad edit is refused and the last good configuration stays; a good one is taken at
    // the next slot: a new recipient and a new title for brief.
    std::fs::write(
        w.config.path().join("broken.yaml"),
        "kind: DailyReport\nspec: [\n",
    )
    .unwrap();
    wait_for("the refusal to be logged", &mut p, || async {
        p_log_contains(&w, "configuration refused")
    })
    .await;
    std::fs::remove_file(w.config.path().join("broken.yaml")).unwrap();
    w.configure(RECIPIENTS + 1, "晨间要闻（新版）");
    w.set_clock(0, "12:00:00");
    wait_for("the edit to load", &mut p, || async {
        p_log_contains(&w, "configuration loaded")
    })
    .await;

    // Day 1: stopped from 05:00 to 06:10. brief (deadline 30 min) catches up at 06:10;
    // close (deadline 5 min) is recorded Missed.
    w.set_clock(1, "05:00:00");
    assert!(p.terminate().await.success());
    w.set_clock(1, "06:10:00");
    let mut p = w.start();
    w.wait_slot(&mut p, "brief", "run", 1, "06:00", "Finished")
        .await;
    w.wait_slot(&mut p, "close", "run", 1, "06:00", "Missed")
        .await;
    assert_eq!(w.phase("close", 1).await.as_deref(), Some("Missed"));
    for i in 0..=RECIPIENTS {
        assert_eq!(
            w.copies("晨间要闻（新版）", 1, &email(i)),
            1,
            "{}",
            email(i)
        );
        assert_eq!(w.copies(CLOSE, 1, &email(i)), 0);
    }
    assert_eq!(
        w.copies(BRIEF, 0, &email(RECIPIENTS)),
        0,
        "the new recipient starts on the 25th"
    );

    // finrep status sees the missed slot and exits non-zero.
    let out = w.finrep(&["status", "--output", "json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let close = status["reports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["report"] == "close")
        .unwrap();
    assert_eq!(close["health"], "missed");

    // Day 2: a manual run of brief at 05:30 beside the scheduler, then the 06:00 slot. The
    // slot finds everyone served; close is stopped gracefully (SIGTERM) mid-delivery.
    w.set_clock(2, "05:30:00");
    let manual = w.finrep(&[
        "run",
        "--config",
        w.config.path().to_str().unwrap(),
        "--report",
        "brief",
        "--date",
        &w.date(2).to_string(),
        "--trusted-host",
        &w.feed.host_port(),
        "--trusted-host",
        &format!("127.0.0.1:{}", w.smtp.port),
    ]);
    assert!(
        manual.status.success(),
        "{}",
        String::from_utf8_lossy(&manual.stderr)
    );
    assert_eq!(w.all_copies("晨间要闻（新版）", 2), RECIPIENTS + 1);
    w.set_clock(2, "06:00:20");
    w.wait_slot(&mut p, "brief", "run", 2, "06:00", "Finished")
        .await;
    w.wait_slot(&mut p, "close", "run", 2, "06:00", "Started")
        .await;
    w.set_clock(2, "06:06:00");
    wait_for("close to start sending", &mut p, || async {
        w.all_copies(CLOSE, 2) >= 2
    })
    .await;
    let (_, day_two_metrics) = w.get("/metrics").await;
    assert!(p.terminate().await.success(), "SIGTERM is a clean exit");
    assert!(
        w.all_copies(CLOSE, 2) < RECIPIENTS + 1,
        "stopped before the end"
    );
    let mut p = w.start();
    w.wait_slot(&mut p, "brief", "run", 2, "06:00", "Finished")
        .await;
    w.wait_slot(&mut p, "close", "run", 2, "06:00", "Finished")
        .await;
    for i in 0..=RECIPIENTS {
        assert_eq!(
            w.copies("晨间要闻（新版）", 2, &email(i)),
            1,
            "{}",
            email(i)
        );
        assert_eq!(
            w.copies(CLOSE, 2, &email(i)),
            1,
            "graceful stop: exactly one copy"
        );
    }

    // Metrics name the runs by report and phase, under the controller's names.
    for line in [
        "finrep_report_runs_total{namespace=\"default\",report=\"brief\",phase=\"Succeeded\"} 2",
        "finrep_report_runs_total{namespace=\"default\",report=\"close\",phase=\"Missed\"} 1",
        "finrep_slots_missed_total 1",
        "finrep_fetches_total{outcome=\"ok\"}",
        "finrep_step_duration_seconds_count{step=\"collect\"}",
    ] {
        assert!(
            day_two_metrics.contains(line),
            "{line} in\n{day_two_metrics}"
        );
    }
    let (_, metrics) = w.get("/metrics").await;
    for line in [
        "finrep_report_runs_total{namespace=\"default\",report=\"close\",phase=\"Succeeded\"} 1",
        "finrep_runs_total{phase=\"Succeeded\"} 1",
        "finrep_report_deliveries{namespace=\"default\",report=\"close\",status=\"sent\"} 7",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    assert!(p.terminate().await.success());
}

fn p_log_contains(w: &World, text: &str) -> bool {
    std::fs::read_dir(w.backups.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("standalone-"))
        .any(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .contains(text)
        })
}

/// Every one of `n` recipients got one copy of each report of `day` — or, after a SIGKILL
/// cut an SMTP transaction (`killed`), two copies of one Message-ID that the delivery log
/// marks as resent after an interruption (docs/delivery.md), never silently.
fn assert_one_copy_each(w: &World, day: u64, n: usize, killed: bool) {
    for title in [BRIEF, CLOSE] {
        for i in 0..n {
            let copies = w.copies(title, day, &email(i));
            assert!(
                copies == 1 || (killed && copies == 2),
                "{title} day {day}: {} got {copies} copies",
                email(i)
            );
        }
    }
}

/// A configuration with an error refuses to start, with `finrep validate`'s message.
#[tokio::test]
async fn an_invalid_configuration_refuses_to_start() {
    let w = World::new(0).await;
    w.configure(1, BRIEF);
    let mut docs = vec![source("news", &w.feed.url("/rss.xml")), recipient(0)];
    let mut bad = report("brief", BRIEF, w.smtp.port, 600);
    bad["spec"]["schedule"] = json!("0 6 * *");
    docs.push(bad);
    write_config(w.config.path(), &docs);
    w.set_clock(0, "05:00:00");
    let out = Command::new(env!("CARGO_BIN_EXE_finrep"))
        .args(["standalone", "--config"])
        .arg(w.config.path())
        .env("FINREP_CLOCK_FILE", &w.clock)
        .env("DATABASE_URL", &w.db_url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.schedule") && err.contains("5 fields"),
        "{err}"
    );
}

/// A report whose mail server is down fails (and is retried later) while the other report
/// of the same minute delivers; the scheduler keeps running and SIGHUP reloads at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_report_never_stops_the_others() {
    let w = World::new(0).await;
    let closed_port = free_port();
    let mut docs = vec![source("news", &w.feed.url("/rss.xml"))];
    docs.extend((0..RECIPIENTS).map(recipient));
    docs.push(report("brief", BRIEF, w.smtp.port, 900));
    docs.push(report("close", CLOSE, closed_port, 900));
    write_config(w.config.path(), &docs);
    w.set_clock(0, "05:59:00");
    let mut p = w.start_with(&["--trusted-host".into(), format!("127.0.0.1:{closed_port}")]);
    w.wait_ready(&mut p).await;
    w.set_clock(0, "06:06:00");
    w.wait_slot(&mut p, "brief", "run", 0, "06:00", "Finished")
        .await;
    assert_eq!(w.all_copies(BRIEF, 0), RECIPIENTS);
    wait_for("close to fail", &mut p, || async {
        p_log_contains(&w, "slot failed; will try again")
    })
    .await;
    assert_eq!(
        w.slot_state("close", "run", 0, "06:00").await.as_deref(),
        Some("Started"),
        "a transient failure keeps the slot for a retry"
    );

    // SIGHUP reads the configuration at once: close now points at the live server, and its
    // retry (a minute later on the clock) delivers.
    docs.pop();
    docs.push(report("close", CLOSE, w.smtp.port, 900));
    write_config(w.config.path(), &docs);
    let pid = p.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_for("the reload", &mut p, || async {
        p_log_contains(&w, "configuration loaded")
    })
    .await;
    w.set_clock(0, "06:08:00");
    w.wait_slot(&mut p, "close", "run", 0, "06:00", "Finished")
        .await;
    assert_eq!(w.all_copies(CLOSE, 0), RECIPIENTS);
    assert!(p.terminate().await.success());
}

/// A chat group (a Feishu bot that signs, on the platform's stand-in) beside e-mail in
/// standalone mode: each day's report posted once, not again after a restart the same day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_group_gets_each_days_report_once() {
    use common::chat_platforms::{ChatPlatforms, Platform};
    let w = World::new(0).await;
    let bots = ChatPlatforms::start().await;
    let webhook = bots.add_bot(
        Platform::Feishu,
        "tok-desk",
        Some("feishu-secret-0123"),
        None,
    );
    // SAFETY: nextest runs each test in a process of its own, and the variables are set
    // before the process it starts (which inherits them) or any thread that reads them.
    unsafe {
        std::env::set_var("FINREP_SECRET_DESK_BOT_WEBHOOK", &webhook);
        std::env::set_var("FINREP_SECRET_DESK_BOT_SECRET", "feishu-secret-0123");
    }
    let mut docs = vec![source("news", &w.feed.url("/rss.xml"))];
    docs.extend((0..RECIPIENTS).map(recipient));
    docs.push(json!({
        "apiVersion": "finrep.io/v1alpha1", "kind": "Recipient",
        "metadata": {"name": "desk"},
        "spec": {"chat": {
            "platform": "feishu",
            "webhookSecretRef": {"name": "desk-bot", "key": "webhook"},
            "signingSecretRef": {"name": "desk-bot", "key": "secret"},
        }},
    }));
    docs.push(report("brief", BRIEF, w.smtp.port, 900));
    write_config(w.config.path(), &docs);
    let trusted = [
        "--trusted-webhook-host".to_string(),
        format!("http://{}", bots.host_port()),
    ];

    w.set_clock(0, "05:59:00");
    let mut p = w.start_with(&trusted);
    w.wait_ready(&mut p).await;
    w.set_clock(0, "06:06:00");
    w.wait_slot(&mut p, "brief", "run", 0, "06:00", "Finished")
        .await;
    assert_eq!(w.all_copies(BRIEF, 0), RECIPIENTS);
    assert_eq!(
        bots.shown("tok-desk").len(),
        1,
        "{:?}",
        bots.refusals("tok-desk")
    );
    assert!(p.terminate().await.success());

    let mut p = w.start_with(&trusted);
    w.wait_ready(&mut p).await;
    w.set_clock(1, "06:06:00");
    w.wait_slot(&mut p, "brief", "run", 1, "06:00", "Finished")
        .await;
    let texts = bots.texts("tok-desk");
    assert_eq!(texts.len(), 2, "one post a day: {texts:#?}");
    assert!(bots.refusals("tok-desk").is_empty());
    assert!(p.terminate().await.success());
}
