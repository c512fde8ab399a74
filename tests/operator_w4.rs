//! W4 through the operator: many reports due at one slot on one node, each run a Job the
//! controller starts (at most `--max-concurrent-runs` at once, the rest queued) and the Job
//! runner runs as the real `finrep-pipeline`; mail through `finrep relay` at 20 messages a
//! second, chat posts to WeCom stand-ins. Every report must be delivered inside its window,
//! every copy once (counted from the servers' own records).
//!
//! The test command runs a small version; `FINREP_W4=full` (`scripts/bench.sh w4`) runs the
//! benchmark's size — 20 reports in 4 namespaces, 2,000 e-mail recipients, 30 groups — and
//! prints its figures (`w4-operator: {json}`), with the peak resident memory of the run pods
//! and the relay together.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use common::chat_platforms::{ChatPlatforms, Platform};
use common::http::{Response, TestServer};
use common::job_runner::{JobRunner, RunnerOptions};
use common::kube_api::FakeApi;
use common::smtp::{SmtpServer, free_port};
use finrep::clock::{Clock, FileClock};
use finrep::controller::objects::Settings;
use finrep::controller::runtime::run;
use serde_json::{Value, json};

/// Namespaces, reports in each, e-mail readers per report, chat groups in all.
fn sizes() -> (usize, usize, usize, usize) {
    match std::env::var("FINREP_W4").as_deref() {
        Ok("full") => (4, 5, 100, 30),
        _ => (2, 2, 4, 2),
    }
}

const RELAY_PER_MINUTE: u32 = 1200;
const DAY: &str = "2026-12-01";

fn doc(kind: &str, ns: &str, name: &str, labels: Value, spec: Value) -> Value {
    json!({"apiVersion": "finrep.io/v1alpha1", "kind": kind,
           "metadata": {"name": name, "namespace": ns, "labels": labels}, "spec": spec})
}

struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_relay(listen: u16, upstream: u16) -> Relay {
    let child = Command::new(env!("CARGO_BIN_EXE_finrep"))
        .args(["relay", "--smtp-listen", &format!("127.0.0.1:{listen}")])
        .args(["--http-listen", &format!("127.0.0.1:{}", free_port())])
        .args([
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            &upstream.to_string(),
        ])
        .args(["--smtp-tls", "none", "--sender-domain", "w4.example"])
        .args(["--smtp-max-per-minute", &RELAY_PER_MINUTE.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", listen)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Relay(child)
}

/// Resident memory of every `finrep-pipeline` process and the relay, in KiB.
fn pods_and_relay_rss_kib(relay: u32) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        if pid != relay && !exe.to_string_lossy().ends_with("finrep-pipeline") {
            continue;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_reports_at_one_slot_through_the_controller_queue_and_the_relay() {
    finrep::tls::install_crypto_provider();
    let (namespaces, per_ns, readers, groups) = sizes();
    let dir = tempfile::tempdir().unwrap();
    let clock_path = dir.path().join("now");
    std::fs::write(&clock_path, format!("{DAY}T05:59:58+08:00 x1\n")).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(FileClock::open(clock_path.clone()).unwrap());
    let (store, db_url) = common::operator::database_and_url().await;
    let feed = TestServer::start().await;
    let items: String = (0..6)
        .map(|i| format!("<item><title>要闻{i}：沪深两市成交额突破{i}万亿元</title><link>https://news.example.com/{i}</link></item>"))
        .collect();
    feed.route(
        "/rss.xml",
        Response::ok(
            "application/rss+xml",
            format!(r#"<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>t</title>{items}</channel></rss>"#),
        ),
    );
    let upstream = SmtpServer::start(json!({}));
    let relay_port = free_port();
    let relay = start_relay(relay_port, upstream.port);
    let bots = ChatPlatforms::start().await;
    let api = FakeApi::start().await;
    api.install_crds();
    let names: Vec<String> = (0..namespaces).map(|n| format!("desk-{n}")).collect();
    let mut reports = Vec::new();
    for ns in &names {
        api.put_secret_data(ns, "finrep-database", &[("url", &db_url)]);
        let feed_url = feed.url("/rss.xml");
        api.put(&doc(
            "Source",
            ns,
            "news",
            json!({}),
            json!({"kind": "feed", "url": feed_url, "category": "宏观"}),
        ));
        for r in 0..per_ns {
            let name = format!("brief-{r}");
            reports.push((ns.clone(), name.clone()));
            api.put(&doc(
                "DailyReport",
                ns,
                &name,
                json!({}),
                json!({
                    "title": format!("W4 {ns}/{name}"),
                    "recipientSelector": {"matchLabels": {"w4/report": name}},
                    "smtp": {"host": "127.0.0.1", "port": relay_port, "tls": "none",
                             "from": format!("{name}@w4.example"), "maxPerMinute": 600},
                }),
            ));
            for i in 0..readers {
                api.put(&doc(
                    "Recipient",
                    ns,
                    &format!("{name}-r{i:03}"),
                    json!({"w4/report": name}),
                    json!({"email": format!("{ns}.{name}.{i:03}@example.com")}),
                ));
            }
        }
    }
    for g in 0..groups {
        let (ns, name) = &reports[g % reports.len()];
        let webhook = bots.add_bot(Platform::Wecom, &format!("tok-{g:02}"), None, None);
        api.put_secret_data(ns, &format!("bot-{g:02}"), &[("webhook", &webhook)]);
        api.put(&doc("Recipient", ns, &format!("group-{g:02}"), json!({"w4/report": name}), json!({
            "chat": {"platform": "wecom", "webhookSecretRef": {"name": format!("bot-{g:02}"), "key": "webhook"}},
        })));
    }
    let settings = Settings {
        trusted_hosts: vec![feed.host_port(), format!("127.0.0.1:{relay_port}")],
        trusted_webhook_hosts: vec![format!("http://{}", bots.host_port())],
        report_namespaces: names.clone(),
        clock_file: Some(clock_path.to_string_lossy().into_owned()),
        ..Settings::default()
    };
    let max_runs = settings.max_concurrent_runs;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(run(
        api.client(),
        store.clone(),
        common::operator::controller_options(settings, None, None),
        clock.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    let pods = dir.path().join("pods");
    std::fs::create_dir_all(&pods).unwrap();
    let runner = JobRunner::start(RunnerOptions {
        client: api.client(),
        namespaces: names.clone(),
        program: PathBuf::from(env!("CARGO_BIN_EXE_finrep-pipeline")),
        clock: clock.clone(),
        dir: pods,
    });
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (peak, relay_pid) = (peak.clone(), relay.0.id());
        tokio::spawn(async move {
            loop {
                peak.fetch_max(pods_and_relay_rss_kib(relay_pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // The slot passes; the first runs start and compose, the rest queue. Then the window opens.
    tokio::time::sleep(Duration::from_secs(8)).await;
    std::fs::write(&clock_path, format!("{DAY}T06:05:00+08:00 x1\n")).unwrap();
    let queued = reports
        .iter()
        .filter(|(ns, name)| {
            api.object("finrep.io", "dailyreports", ns, name)
                .is_some_and(|r| r["status"]["lastRun"]["phase"] == "Queued")
        })
        .count();
    let until = tokio::time::Instant::now() + Duration::from_secs(900 + 60);
    while tokio::time::Instant::now() < until {
        let done = runner
            .records()
            .values()
            .filter(|r| r.ended.is_some())
            .count();
        if done == reports.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    sampler.abort();
    let records = runner.records();
    assert_eq!(
        records.len(),
        reports.len(),
        "one Job per report: {records:#?}"
    );
    for (key, r) in &records {
        assert_eq!(r.ended.as_deref(), Some("Complete"), "{key:?}: {r:?}");
    }

    let open = DateTime::parse_from_rfc3339(&format!("{DAY}T06:05:00+08:00"))
        .unwrap()
        .to_utc();
    type LastDelivery = (String, String, Option<DateTime<Utc>>, i64);
    let rows: Vec<LastDelivery> = sqlx::query_as(
        "SELECT r.namespace, r.report, max(d.sent_at), count(*) FILTER (WHERE d.status = 'sent')
         FROM reports r JOIN delivery_log d ON d.report_id = r.id
         WHERE r.report_date = $1 GROUP BY r.namespace, r.report",
    )
    .bind(DAY.parse::<NaiveDate>().unwrap())
    .fetch_all(store.pool())
    .await
    .unwrap();
    let done: BTreeMap<String, f64> = rows
        .iter()
        .map(|(ns, r, last, _)| {
            let s = (last.expect("delivered") - open).num_milliseconds() as f64 / 1000.0;
            (format!("{ns}/{r}"), s)
        })
        .collect();
    assert_eq!(done.len(), reports.len());
    let last = done.values().cloned().fold(0.0, f64::max);
    assert!(
        last <= 900.0,
        "a report finished after its window: {done:?}"
    );
    let messages = upstream.messages();
    let mut addresses: Vec<&str> = messages
        .iter()
        .flat_map(|m| m["rcpt"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    let accepted = addresses.len();
    addresses.sort();
    addresses.dedup();
    assert_eq!(accepted, reports.len() * readers, "each e-mail once");
    assert_eq!(addresses.len(), accepted);
    assert_eq!(bots.shown_total(), groups, "each group's post once");
    assert!(
        runner.peak_pods() <= max_runs,
        "{} run pods at once, over the bound of {max_runs}",
        runner.peak_pods()
    );
    if reports.len() > max_runs {
        // Said durably by each report that waited (the status snapshot above may come before
        // a busy controller has written its first Queued).
        let waited: usize = names
            .iter()
            .map(|ns| {
                api.objects("events.k8s.io", "events", ns)
                    .iter()
                    .filter(|e| e["reason"] == "RunQueued")
                    .count()
            })
            .sum();
        assert!(waited > 0, "more reports than places: some waited");
    }
    println!(
        "w4-operator: {}",
        json!({
            "reports": reports.len(), "emails": accepted, "chat_posts": groups,
            "max_concurrent_runs": max_runs, "queued_at_the_slot": queued,
            "first_report_done_s": done.values().cloned().fold(f64::MAX, f64::min),
            "last_report_done_s": last, "window_s": 900,
            "peak_rss_mib_pods_and_relay": peak.load(Ordering::Relaxed) as f64 / 1024.0,
            "per_report_last_delivery_s": done,
        })
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), controller).await;
}
