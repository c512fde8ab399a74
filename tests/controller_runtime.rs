//! `finrep controller` as a whole against the in-memory API: it waits for the CRDs, takes the
//! lease, becomes ready once its caches are synced, starts the due run through the watches,
//! writes every status, stops on shutdown and hands the lease to a standby. The RBAC test
//! derives the verbs it used from the API's request log and compares them with
//! manifests/rbac.yaml in both directions.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::kube_api::FakeApi;
use common::operator::{Cluster, TestClock, database, examples};
use finrep::controller::objects::Settings;
use finrep::controller::report_reconciler::reconcile_report;
use finrep::controller::runtime::{RuntimeError, run};
use finrep::store::Store;
use tokio::sync::oneshot;

const AT_SLOT: &str = "2026-11-24T06:00:05+08:00";

fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Running {
    admin: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), RuntimeError>>,
}

impl Running {
    async fn stop(mut self) -> Result<(), RuntimeError> {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the controller stops within 20 s")
            .unwrap()
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let url = format!("http://{}{path}", self.admin);
        match reqwest::get(&url).await {
            Ok(r) => {
                let code = r.status().as_u16();
                (code, r.text().await.unwrap_or_default())
            }
            Err(_) => (0, String::new()),
        }
    }

    async fn ready(&self) -> bool {
        self.get("/readyz").await.0 == 200
    }
}

fn start(api: &FakeApi, store: &Store, identity: &str, clock: Arc<TestClock>) -> Running {
    let admin = free_port();
    let opts =
        common::operator::controller_options(Settings::default(), Some(identity), Some(admin));
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(run(api.client(), store.clone(), opts, clock, async move {
        let _ = rx.await;
    }));
    Running {
        admin,
        stop: Some(tx),
        task,
    }
}

async fn eventually(what: &str, secs: u64, mut check: impl AsyncFnMut() -> bool) {
    let until = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < until {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within {secs} s");
}

/// The example report, as if scheduled for days already (a report first seen at 06:00:05
/// would not start the 06:00 slot, like a CronJob created late).
fn scheduled_for_days(api: &FakeApi) {
    api.set_status(
        "finrep.io",
        "dailyreports",
        "default",
        "morning-brief",
        serde_json::json!({"activeSince": "2026-11-20T00:00:00+00:00"}),
    );
}

/// An API server with the examples but no CRDs yet.
async fn cluster_without_crds() -> FakeApi {
    let api = FakeApi::start().await;
    api.put_resources(&examples());
    for name in common::operator::SECRETS {
        api.put_secret("default", name);
    }
    scheduled_for_days(&api);
    api
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_waits_for_its_crds_then_runs_the_due_slot_and_stops_cleanly() {
    let api = cluster_without_crds().await;
    let store = database().await;
    let controller = start(&api, &store, "controller-a", TestClock::at(AT_SLOT));

    eventually("the admin port", 10, async || {
        controller.get("/healthz").await.0 == 200
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!controller.ready().await, "not ready without CRDs");
    assert!(api.objects("batch", "jobs", "default").is_empty());

    api.install_crds();
    eventually("readiness", 20, async || controller.ready().await).await;
    eventually("the run's Job", 20, async || {
        !api.objects("batch", "jobs", "default").is_empty()
    })
    .await;
    eventually("Source statuses", 20, async || {
        api.objects("finrep.io", "sources", "default")
            .iter()
            .all(|s| s["status"]["conditions"].is_array())
    })
    .await;
    // The Job is in the API a moment before the controller has counted its creation.
    eventually("the Job counted", 10, async || {
        controller
            .get("/metrics")
            .await
            .1
            .contains("finrep_jobs_created_total 1")
    })
    .await;
    let (_, metrics) = controller.get("/metrics").await;
    assert!(metrics.contains("finrep_jobs_created_total 1"), "{metrics}");
    assert!(
        metrics.contains("finrep_reconciles_total{kind=\"DailyReport\"}"),
        "{metrics}"
    );

    controller.stop().await.unwrap();
    let lease = api
        .object(
            "coordination.k8s.io",
            "leases",
            "finrep-system",
            "finrep-controller",
        )
        .unwrap();
    assert!(
        lease["spec"]["holderIdentity"].is_null(),
        "the lease is released on shutdown: {lease}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_waits_and_takes_over_when_the_leader_stops() {
    let cluster = Cluster::examples().await;
    scheduled_for_days(&cluster.api);
    let store = database().await;
    let leader = start(&cluster.api, &store, "controller-a", TestClock::at(AT_SLOT));
    eventually("the leader ready", 20, async || leader.ready().await).await;
    let standby = start(&cluster.api, &store, "controller-b", TestClock::at(AT_SLOT));
    eventually("the standby's admin port", 10, async || {
        standby.get("/healthz").await.0 == 200
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        !standby.ready().await,
        "a standby is not ready while the lease is held"
    );

    leader.stop().await.unwrap();
    eventually("the standby leading", 10, async || standby.ready().await).await;
    // The slot's run was started once, whoever led.
    assert_eq!(cluster.job_names(), ["morning-brief-20261124"]);
    standby.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_grants_exactly_the_verbs_the_controller_uses() {
    // Everything the controller does: start, lead, run a slot, write statuses, record
    // Events, prune history, remove an earlier version's backup CronJob, stop.
    let cluster = Cluster::examples().await;
    let uid = cluster.report("morning-brief").metadata.uid.unwrap();
    cluster.api.put(&serde_json::json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "morning-brief-backup", "namespace": "default",
                     "ownerReferences": [{"apiVersion": "finrep.io/v1alpha1", "kind": "DailyReport",
                                          "name": "morning-brief", "uid": uid, "controller": true}]},
        "spec": {"schedule": "30 6 * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "OnFailure", "containers": [{"name": "backup", "image": "finrep"}]}}}}},
    }));
    scheduled_for_days(&cluster.api);
    let store = database().await;
    let clock = TestClock::at(AT_SLOT);
    let controller = start(&cluster.api, &store, "controller-a", clock.clone());
    eventually("the run's Job", 20, async || !cluster.jobs().is_empty()).await;
    controller.stop().await.unwrap();
    let ctx = cluster.context(&store, clock.clone());
    for day in 25..=29 {
        cluster.finish_job(&cluster.job_names().last().unwrap().clone(), true);
        clock.set(&format!("2026-11-{day}T06:00:05+08:00"));
        reconcile_report(&cluster.report("morning-brief"), &ctx)
            .await
            .unwrap();
    }
    assert!(
        cluster
            .api
            .object("batch", "cronjobs", "default", "morning-brief-backup")
            .is_none(),
        "the earlier version's backup CronJob is gone"
    );

    let used: BTreeSet<(String, String, String)> = cluster
        .api
        .calls()
        .into_iter()
        .map(|c| (c.group, c.resource, c.verb.to_string()))
        .collect();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/rbac.yaml");
    let granted = common::granted(&std::fs::read_to_string(path).unwrap(), "finrep-controller");
    let missing: Vec<_> = used.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&used).collect();
    assert!(missing.is_empty(), "used but not granted: {missing:?}");
    assert!(unused.is_empty(), "granted but never used: {unused:?}");
}

/// The database is away when the controller starts (a first install: PostgreSQL still
/// initialising): it does not exit, says not-ready, and once the database answers it becomes
/// ready and starts the due run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_starts_while_the_database_is_away_and_becomes_ready_when_it_answers() {
    let cluster = Cluster::examples().await;
    scheduled_for_days(&cluster.api);
    let url = common::scratch_database().await;
    let proxy = common::tcp_proxy::TcpProxy::for_database(&url).await;
    proxy.down();
    let store = Store::connect_lazy(&proxy.route(&url), 4, Duration::from_secs(1)).unwrap();
    let controller = start(&cluster.api, &store, "controller-a", TestClock::at(AT_SLOT));
    eventually("the admin port", 10, async || {
        controller.get("/healthz").await.0 == 200
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !controller.task.is_finished(),
        "the controller keeps running"
    );
    assert!(!controller.ready().await, "not ready without its database");
    assert!(cluster.jobs().is_empty(), "no run without the database");

    proxy.up().await;
    // Migrated as the chart's hook would, through the same route.
    Store::connect(&proxy.route(&url), 1, Duration::from_secs(5))
        .await
        .unwrap()
        .migrate()
        .await
        .unwrap();
    eventually("ready once the database answers", 20, async || {
        controller.ready().await
    })
    .await;
    eventually("the due run", 30, async || !cluster.jobs().is_empty()).await;
    controller.stop().await.unwrap();
}
