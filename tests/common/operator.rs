//! Fixtures of the controller's tests: the example resources in an in-memory API server, a
//! migrated scratch database, a clock the test moves, and a controller `Context` over them.
#![allow(dead_code)]

use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use finrep::api::{DailyReport, Recipient, Source};
use finrep::clock::Clock;
use finrep::controller::context::{Catalog, Context};
use finrep::controller::objects::Settings;
use finrep::manifest::{self, LoadOptions};
use finrep::metrics::Metrics;
use finrep::store::Store;
use finrep::validation::ResourceSet;
use serde_json::Value;

use super::kube_api::FakeApi;

/// A clock that stays where the test puts it.
pub struct TestClock(Mutex<DateTime<Utc>>);

impl TestClock {
    pub fn at(t: &str) -> Arc<Self> {
        Arc::new(Self(Mutex::new(instant(t))))
    }

    pub fn set(&self, t: &str) {
        *self.0.lock().unwrap() = instant(t);
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }

    fn sleep_until(
        &self,
        _t: DateTime<Utc>,
    ) -> Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::task::yield_now())
    }
}

pub fn instant(t: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(t).unwrap().to_utc()
}

/// The example resources users apply (manifests/examples), in namespace `default`.
pub fn examples() -> ResourceSet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/examples");
    manifest::load_valid(&[dir], &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .set
}

/// The Secrets the example report and the controller's settings name.
pub const SECRETS: [&str; 3] = ["finrep-smtp", "finrep-summarizer", "finrep-database"];

/// An in-memory cluster holding the examples, their Secrets and finrep's CRDs.
pub struct Cluster {
    pub api: FakeApi,
    pub set: ResourceSet,
}

impl Cluster {
    pub async fn with(set: ResourceSet) -> Self {
        let api = FakeApi::start().await;
        api.install_crds();
        api.put_resources(&set);
        for name in SECRETS {
            api.put_secret("default", name);
        }
        Self { api, set }
    }

    pub async fn examples() -> Self {
        Self::with(examples()).await
    }

    /// The report as the API server has it now (status included).
    pub fn report(&self, name: &str) -> DailyReport {
        serde_json::from_value(
            self.api
                .object("finrep.io", "dailyreports", "default", name)
                .expect("the report"),
        )
        .unwrap()
    }

    /// Sets annotation `key` of report `name` to `value`, as `kubectl annotate` would.
    pub fn annotate_report(&self, name: &str, key: &str, value: &str) {
        let mut report = self.report(name);
        report
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(key.to_string(), value.to_string());
        self.api.put(&report);
    }

    pub fn source(&self, name: &str) -> Source {
        serde_json::from_value(
            self.api
                .object("finrep.io", "sources", "default", name)
                .unwrap(),
        )
        .unwrap()
    }

    pub fn recipient(&self, name: &str) -> Recipient {
        serde_json::from_value(
            self.api
                .object("finrep.io", "recipients", "default", name)
                .unwrap(),
        )
        .unwrap()
    }

    pub fn jobs(&self) -> Vec<Value> {
        self.api.objects("batch", "jobs", "default")
    }

    pub fn job_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .jobs()
            .iter()
            .map(|j| j["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }

    pub fn config_maps(&self) -> Vec<Value> {
        self.api.objects("", "configmaps", "default")
    }

    /// Events recorded so far, as (reason, note).
    pub fn events(&self) -> Vec<(String, String)> {
        self.api
            .objects("events.k8s.io", "events", "default")
            .iter()
            .map(|e| {
                (
                    e["reason"].as_str().unwrap_or_default().to_string(),
                    e["note"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// How many times an Event of `reason` was recorded (repeats within minutes are one
    /// Event with a series count, as kube's recorder aggregates them).
    pub fn event_count(&self, reason: &str) -> u64 {
        self.api
            .objects("events.k8s.io", "events", "default")
            .iter()
            .filter(|e| e["reason"] == reason)
            .map(|e| e["series"]["count"].as_u64().unwrap_or(1))
            .sum()
    }

    pub fn event_reasons(&self) -> Vec<String> {
        let mut r: Vec<String> = self.events().into_iter().map(|(r, _)| r).collect();
        r.sort();
        r
    }

    /// Marks a Job finished as the Job controller would.
    pub fn finish_job(&self, name: &str, succeeded: bool) {
        let condition = if succeeded { "Complete" } else { "Failed" };
        self.api.set_status(
            "batch",
            "jobs",
            "default",
            name,
            serde_json::json!({"conditions": [{"type": condition, "status": "True"}]}),
        );
    }

    /// A controller context over this cluster, with its own client.
    pub fn context(&self, store: &Store, clock: Arc<TestClock>) -> Arc<Context> {
        self.context_with(store, clock, &self.set)
    }

    pub fn context_with(
        &self,
        store: &Store,
        clock: Arc<TestClock>,
        set: &ResourceSet,
    ) -> Arc<Context> {
        self.context_with_settings(store, clock, set, Settings::default())
    }

    /// A context with the operator's settings given.
    pub fn context_with_settings(
        &self,
        store: &Store,
        clock: Arc<TestClock>,
        set: &ResourceSet,
        settings: Settings,
    ) -> Arc<Context> {
        Arc::new(
            Context::new(
                self.api.client(),
                store.clone(),
                settings,
                clock,
                Catalog::from_objects(set.sources.clone(), set.recipients.clone()),
                Metrics::new(),
            )
            .with_snapshot_ttl(std::time::Duration::ZERO),
        )
    }
}

/// The controller's options as the tests run it: `settings`, four reconciles at once, a Lease
/// held as `identity` (lasting 3 s, so a standby takes over soon) or none.
pub fn controller_options(
    settings: Settings,
    identity: Option<&str>,
    admin_listen: Option<std::net::SocketAddr>,
) -> finrep::controller::runtime::ControllerOptions {
    finrep::controller::runtime::ControllerOptions {
        settings,
        namespace: None,
        admin_listen,
        lease: identity.map(|identity| finrep::controller::runtime::LeaseOptions {
            name: "finrep-controller".into(),
            namespace: "finrep-system".into(),
            identity: identity.into(),
            duration_seconds: 3,
        }),
        concurrency: 4,
    }
}

/// A migrated scratch database.
pub async fn database() -> Store {
    database_and_url().await.0
}

/// A migrated scratch database and its URL (for the Secret a run pod reads it from).
pub async fn database_and_url() -> (Store, String) {
    let url = super::scratch_database().await;
    let store = Store::connect(&url, 4, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    (store, url)
}

/// A controller running in this process until stopped.
pub struct RunningController {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), finrep::controller::runtime::RuntimeError>>,
}

impl RunningController {
    /// Starts the controller's whole runtime (watches, leader election as `identity`) against
    /// `api`'s client.
    pub fn start(
        client: kube::Client,
        store: Store,
        settings: Settings,
        identity: &str,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let opts = controller_options(settings, Some(identity), None);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(finrep::controller::runtime::run(
            client,
            store,
            opts,
            clock,
            async move {
                let _ = rx.await;
            },
        ));
        Self {
            stop: Some(tx),
            task,
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(std::time::Duration::from_secs(30), self.task)
            .await
            .expect("the controller stops within 30 s")
            .unwrap()
            .unwrap();
    }
}

/// Waits for `check` to hold; says what did not happen otherwise (`.unwrap()` it, or add
/// what explains the failure).
pub async fn eventually(
    what: &str,
    secs: u64,
    mut check: impl FnMut() -> bool,
) -> Result<(), String> {
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    while tokio::time::Instant::now() < until {
        if check() {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(format!("{what} did not happen within {secs} s"))
}

/// Moves a clock file (`FileClock`) to `t`, atomically: every process reading it agrees.
pub fn set_clock_file(path: &Path, t: DateTime<Utc>) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{}\n", t.to_rfc3339())).unwrap();
    std::fs::rename(tmp, path).unwrap();
}
