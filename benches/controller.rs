//! Benchmark W2, second part (../shared/BENCHMARKS.md): the controller at scale — 50
//! DailyReports, 500 Sources, 5,000 Recipients in one namespace, served by the in-memory
//! Kubernetes API of the tests (tests/common/kube_api.rs) over loopback HTTP.
//!
//! - Reconcile latency: `reconcile_report` for every report in this process, a first pass
//!   (statuses and backup CronJobs written) and steady passes (nothing changed, nothing
//!   written); p50 and p99.
//! - The controller process: `finrep controller` started against the same API server; time
//!   until its caches are synced (`/readyz`), time until every object has been reconciled
//!   once (the full resync, from `finrep_reconciles_total`), and its resident memory then
//!   (VmRSS, the peak VmHWM, and RssAnon: what it allocated, as opposed to mapped code) with
//!   every object cached. Then once more over the same objects, their statuses written (a
//!   restart or a fail-over): the restart resync.
//!
//! - With `--annotation-bytes B --labels L`, 600 Recipients and 50 Sources carry an annotation
//!   of B bytes and L extra labels each (what a tenant can add to objects the controller
//!   caches); with `--steady-seconds S`, resident memory is read again S seconds after the
//!   first pass (the steady state).
//!
//! Usage: cargo bench --bench controller -- --finrep PATH --database-url URL [--runs N]
//! [--scale S] [--annotation-bytes B] [--labels L] [--steady-seconds S]
//! (SCALE divides the sizes; 1 = W2). Prints one JSON object per run.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use finrep::clock::SystemClock;
use finrep::controller::context::{Catalog, Context};
use finrep::controller::objects::Settings;
use finrep::controller::report_reconciler::reconcile_report;
use finrep::metrics::Metrics;
use finrep::store::Store;
use finrep::validation::ResourceSet;

#[path = "common/w2.rs"]
mod w2;

#[path = "../tests/common/kube_api.rs"]
mod kube_api;

#[path = "../tests/common/process_stats.rs"]
mod process_stats;

use process_stats::{reconciles, status_kib as memory_kib};

struct Args {
    finrep: String,
    database_url: String,
    runs: usize,
    scale: usize,
    annotation_bytes: usize,
    labels: usize,
    steady_seconds: u64,
}

fn args() -> Args {
    let mut a = Args {
        finrep: "target/release/finrep".into(),
        database_url: std::env::var("DATABASE_URL").unwrap_or_default(),
        runs: 3,
        scale: 1,
        annotation_bytes: 0,
        labels: 0,
        steady_seconds: 0,
    };
    let mut it = std::env::args().skip(1).filter(|x| x != "--bench");
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--finrep" => a.finrep = value,
            "--database-url" => a.database_url = value,
            "--runs" => a.runs = value.parse().expect("--runs N"),
            "--scale" => a.scale = value.parse::<usize>().expect("--scale S").max(1),
            "--annotation-bytes" => {
                a.annotation_bytes = value.parse().expect("--annotation-bytes B")
            }
            "--labels" => a.labels = value.parse().expect("--labels L"),
            "--steady-seconds" => a.steady_seconds = value.parse().expect("--steady-seconds S"),
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(!a.database_url.is_empty(), "--database-url or DATABASE_URL");
    a
}

async fn cluster(set: &ResourceSet) -> kube_api::FakeApi {
    let api = kube_api::FakeApi::start().await;
    api.install_crds();
    api.put_resources(set);
    for name in ["smtp", "finrep-database"] {
        api.put_secret("default", name);
    }
    api
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Milliseconds per reconcile of every report: one first pass, then three steady passes.
async fn reconcile_latency(
    set: &ResourceSet,
    api: &kube_api::FakeApi,
    store: &Store,
) -> (Vec<f64>, Vec<f64>) {
    let ctx = Context::new(
        api.client(),
        store.clone(),
        Settings::default(),
        Arc::new(SystemClock),
        Catalog::from_objects(set.sources.clone(), set.recipients.clone()),
        Metrics::new(),
    );
    let report = |name: &str| -> finrep::api::DailyReport {
        serde_json::from_value(
            api.object("finrep.io", "dailyreports", "default", name)
                .unwrap(),
        )
        .unwrap()
    };
    let names: Vec<String> = set
        .reports
        .iter()
        .map(|r| r.metadata.name.clone().unwrap())
        .collect();
    let mut first = Vec::new();
    let mut steady = Vec::new();
    for pass in 0..4 {
        for name in &names {
            let r = report(name);
            let t = Instant::now();
            reconcile_report(&r, &ctx)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            if pass == 0 {
                first.push(ms)
            } else {
                steady.push(ms)
            }
        }
    }
    first.sort_by(f64::total_cmp);
    steady.sort_by(f64::total_cmp);
    (first, steady)
}

struct ProcessResult {
    ready_seconds: f64,
    resync_seconds: f64,
    rss_kib: u64,
    hwm_kib: u64,
    /// Of the resident memory, what the process allocated (heap, stacks), not its code.
    anon_kib: u64,
    anon_at_ready_kib: u64,
    /// Resident memory `--steady-seconds` after the pass (0 when not asked).
    steady_rss_kib: u64,
}

/// `finrep controller` against the API server: readiness, full resync, memory.
async fn controller_process(
    a: &Args,
    set: &ResourceSet,
    api: &kube_api::FakeApi,
    steady_seconds: u64,
) -> ProcessResult {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    // `finrep controller`, or the controller-only `finrep-controller`.
    let subcommand = (!a.finrep.ends_with("finrep-controller")).then_some("controller");
    let mut child = Command::new(&a.finrep)
        .args(subcommand)
        .args([
            "--no-leader-election",
            "--admin-listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(
            std::env::var("FINREP_BENCH_CONTROLLER_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .env("KUBECONFIG", &kubeconfig)
        .env("DATABASE_URL", &a.database_url)
        .env("RUST_LOG", "warn")
        .envs(std::env::vars().filter(|(k, _)| k.starts_with("MALLOC_")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", a.finrep));
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut ready_seconds = 0.0;
    let mut anon_at_ready_kib = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    let (want_r, want_s, want_c) = (
        set.reports.len() as u64,
        set.sources.len() as u64,
        set.recipients.len() as u64,
    );
    let resync_seconds = loop {
        assert!(
            Instant::now() < deadline,
            "the controller did not finish a full pass in 600 s"
        );
        if let Ok(Some(status)) = child.try_wait() {
            panic!("finrep controller exited: {status}");
        }
        if ready_seconds == 0.0 {
            if let Ok(r) = http.get(format!("{base}/readyz")).send().await
                && r.status().is_success()
            {
                ready_seconds = started.elapsed().as_secs_f64();
                anon_at_ready_kib = memory_kib(child.id(), "RssAnon:");
            }
        } else if let Ok(r) = http.get(format!("{base}/metrics")).send().await {
            let m = r.text().await.unwrap_or_default();
            if reconciles(&m, "DailyReport") >= want_r
                && reconciles(&m, "Source") >= want_s
                && reconciles(&m, "Recipient") >= want_c
            {
                break started.elapsed().as_secs_f64() - ready_seconds;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let pid = child.id();
    let rss_kib = memory_kib(pid, "VmRSS:");
    let hwm_kib = memory_kib(pid, "VmHWM:");
    let anon_kib = memory_kib(pid, "RssAnon:");
    let mut steady_rss_kib = 0;
    if steady_seconds > 0 {
        tokio::time::sleep(Duration::from_secs(steady_seconds)).await;
        if let Ok(Some(status)) = child.try_wait() {
            panic!("finrep controller exited: {status}");
        }
        steady_rss_kib = memory_kib(pid, "VmRSS:");
    }
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    ProcessResult {
        ready_seconds,
        resync_seconds,
        rss_kib,
        hwm_kib,
        anon_kib,
        anon_at_ready_kib,
        steady_rss_kib,
    }
}

fn main() {
    let a = args();
    finrep::tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut set = w2::resources((50 / a.scale).max(1), (500 / a.scale).max(1), (5000 / a.scale).max(1));
        w2::bloat(&mut set, 600 / a.scale, 50 / a.scale, a.annotation_bytes, a.labels);
        let store = Store::connect(&a.database_url, 4, Duration::from_secs(10)).await.unwrap_or_else(|e| panic!("{e}"));
        store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..a.runs {
            let api = cluster(&set).await;
            let (first, steady) = reconcile_latency(&set, &api, &store).await;
            let api = cluster(&set).await;
            let p = controller_process(&a, &set, &api, a.steady_seconds).await;
            // Started again over the same objects, their statuses written: the pass a
            // restarted or failed-over controller makes.
            let again = controller_process(&a, &set, &api, 0).await;
            println!(
                "{{\"reports\": {}, \"sources\": {}, \"recipients\": {}, \"first_pass_ms_p50\": {:.2}, \"first_pass_ms_p99\": {:.2}, \"reconcile_ms_p50\": {:.2}, \"reconcile_ms_p99\": {:.2}, \"ready_seconds\": {:.3}, \"full_resync_seconds\": {:.3}, \"restart_resync_seconds\": {:.3}, \"rss_mib\": {:.1}, \"peak_rss_mib\": {:.1}, \"anon_rss_mib\": {:.1}, \"anon_rss_at_ready_mib\": {:.1}, \"steady_rss_mib\": {:.1}, \"annotation_bytes\": {}, \"labels\": {}}}",
                set.reports.len(),
                set.sources.len(),
                set.recipients.len(),
                percentile(&first, 0.5),
                percentile(&first, 0.99),
                percentile(&steady, 0.5),
                percentile(&steady, 0.99),
                p.ready_seconds,
                p.resync_seconds,
                again.resync_seconds,
                p.rss_kib as f64 / 1024.0,
                p.hwm_kib as f64 / 1024.0,
                p.anon_kib as f64 / 1024.0,
                p.anon_at_ready_kib as f64 / 1024.0,
                p.steady_rss_kib as f64 / 1024.0,
                a.annotation_bytes,
                a.labels,
            );
        }
    });
}
