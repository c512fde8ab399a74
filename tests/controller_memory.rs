//! The controller's memory is bounded by construction: whatever tenants add to the objects it
//! caches, it keeps the same few bytes of each. `finrep-controller` runs as its own process
//! against the in-memory API, once over objects as a desk writes them and once with 600
//! Recipients and 50 Sources carrying a 250 kB annotation each (and, on some, more labels than
//! a report may select by); its allocated memory after a full pass must not follow the
//! annotations, and its peak must stay within the chart's limit.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::kube_api::FakeApi;
use common::process_stats::{reconciles, status_kib};
use finrep::api::selector::LABELS_OVER_LIMIT;
use finrep::store::Store;
use finrep::validation::ResourceSet;

#[path = "../benches/common/w2.rs"]
mod w2;

/// The chart's memory limit of the controller (`charts/finrep/values.yaml`).
const LIMIT_MIB: u64 = 128;

struct Memory {
    /// Allocated (RssAnon) after a full pass, KiB.
    anon_kib: u64,
    /// The peak resident set less the mapped binary, KiB: what the process allocated at most.
    peak_allocated_kib: u64,
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `finrep-controller` over `set` until every object was reconciled once; its memory then.
async fn controller_memory(set: &ResourceSet) -> (Memory, FakeApi) {
    let api = FakeApi::start().await;
    api.install_crds();
    api.put_resources(set);
    for name in ["smtp", "finrep-database"] {
        api.put_secret("default", name);
    }
    let database = common::scratch_database().await;
    Store::connect(&database, 2, Duration::from_secs(10))
        .await
        .unwrap()
        .migrate()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_finrep-controller"))
        .args(["--no-leader-election", "--admin-listen", &admin.to_string()])
        .env("KUBECONFIG", &kubeconfig)
        .env("DATABASE_URL", &database)
        .env("RUST_LOG", "warn")
        .env_remove("MALLOC_ARENA_MAX")
        .env_remove("MALLOC_MMAP_THRESHOLD_")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = Killed(child);
    let pid = child.0.id();
    let deadline = Instant::now() + Duration::from_secs(240);
    let counts = [
        ("DailyReport", set.reports.len() as u64),
        ("Source", set.sources.len() as u64),
        ("Recipient", set.recipients.len() as u64),
    ];
    loop {
        assert!(Instant::now() < deadline, "no full pass in 240 s");
        let url = format!("http://{admin}/metrics");
        if let Ok(r) = reqwest::get(&url).await {
            let m = r.text().await.unwrap_or_default();
            if counts.iter().all(|(k, n)| reconciles(&m, k) >= *n) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Reconciles counted include second ones after a status write: the pass is over when every
    // Source and Recipient has its status.
    let unwritten = |plural: &str, names: Vec<String>| {
        names.into_iter().any(|name| {
            api.object("finrep.io", plural, "default", &name)
                .is_some_and(|o| o.pointer("/status/conditions/0").is_none())
        })
    };
    let names = |objs: Vec<&kube::api::ObjectMeta>| -> Vec<String> {
        objs.into_iter().filter_map(|m| m.name.clone()).collect()
    };
    while unwritten(
        "recipients",
        names(set.recipients.iter().map(|r| &r.metadata).collect()),
    ) || unwritten(
        "sources",
        names(set.sources.iter().map(|r| &r.metadata).collect()),
    ) {
        assert!(
            Instant::now() < deadline,
            "statuses not all written in 240 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let file = status_kib(pid, "RssFile:");
    let memory = Memory {
        anon_kib: status_kib(pid, "RssAnon:"),
        peak_allocated_kib: status_kib(pid, "VmHWM:").saturating_sub(file),
    };
    (memory, api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_annotations_and_labels_do_not_grow_the_controller() {
    finrep::tls::install_crypto_provider();
    // A tenth of W2's reports and sources and all the Recipients the bloat needs.
    let plain = w2::resources(10, 100, 1000);
    let mut bloated = plain.clone();
    w2::bloat(&mut bloated, 600, 50, 250_000, 0);
    // Some objects also carry more labels than a report may select by.
    w2::bloat(&mut bloated, 20, 5, 0, 100);

    let (before, _) = controller_memory(&plain).await;
    let (after, api) = controller_memory(&bloated).await;
    let grown_mib = after.anon_kib.saturating_sub(before.anon_kib) / 1024;
    // 650 annotations of 250 kB are 155 MiB; kept, they would show here many times over.
    assert!(
        grown_mib < 8,
        "the controller holds {grown_mib} MiB more with tenants' annotations \
         ({} KiB → {} KiB allocated)",
        before.anon_kib,
        after.anon_kib
    );
    assert!(
        after.peak_allocated_kib / 1024 < LIMIT_MIB,
        "peak allocated {} MiB over the {LIMIT_MIB} MiB limit",
        after.peak_allocated_kib / 1024
    );
    // An object over the label bound is selected by no report, and its status says why.
    let status = |name: &str| {
        api.object("finrep.io", "recipients", "default", name)
            .unwrap()
            .pointer("/status/conditions/0")
            .cloned()
            .unwrap_or_default()
    };
    let over = status("rcpt-00000");
    assert_eq!(over["status"], "False", "{over}");
    assert!(
        over["message"]
            .as_str()
            .unwrap()
            .contains("no report selects"),
        "{over}"
    );
    let fine = status("rcpt-00100");
    assert_eq!(fine["status"], "True", "{fine}");
}

#[test]
fn the_bloat_reaches_the_objects() {
    // The test above measures what it claims: the fixture does carry the bloat.
    let mut set = w2::resources(2, 10, 10);
    w2::bloat(&mut set, 3, 2, 1000, 100);
    let r = &set.recipients[0];
    assert_eq!(r.metadata.annotations.as_ref().unwrap().len(), 1);
    assert!(r.metadata.labels.as_ref().unwrap().len() > 100);
    assert!(set.recipients[3].metadata.annotations.is_none());
    let mut leaned = r.clone();
    finrep::api::lean::lean(&mut leaned);
    assert!(leaned.metadata.annotations.is_none());
    assert!(
        leaned
            .metadata
            .labels
            .unwrap()
            .contains_key(LABELS_OVER_LIMIT)
    );
}
