//! End to end against a real cluster (k3s, kind): set FINREP_E2E_KUBECONFIG to run it; without
//! it the test says it was skipped and passes. tests/e2e/README.md says how to run it on k3s.
//!
//! It installs the CRDs (server-side apply, waits until established), applies the examples into
//! a fresh namespace with the Secrets they name, runs the controller in this process against
//! the cluster and PostgreSQL, asks for a run with `finrep.io/run-now`, and waits for the
//! plan ConfigMap, the Job (restricted pod security, as the API server admits it) and the
//! status the controller writes. With FINREP_E2E_IMAGE (a finrep image the cluster can pull)
//! it also waits for the Job to finish and the run's phase to land in `status.lastRun`.

#[path = "../common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use finrep::api::{DailyReport, ResourceKind, annotations};
use finrep::controller::objects::Settings;
use finrep::controller::runtime::{ControllerOptions, LeaseOptions, run};
use finrep::store::Store;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};

const FIELD_MANAGER: &str = "finrep-e2e";

async fn client(path: &str) -> Client {
    finrep::tls::install_crypto_provider();
    let kubeconfig = Kubeconfig::read_from(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    Client::try_from(config).unwrap()
}

async fn apply<K>(api: &Api<K>, obj: &K)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {}: {e}", obj.name_any()));
}

async fn eventually<T>(what: &str, secs: u64, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let until = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{what}: not within {secs} s"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for kind in ResourceKind::ALL {
        let crd = kind.crd();
        apply(&crds, &crd).await;
        let name = crd.name_any();
        eventually(&format!("CRD {name} established"), 60, async || {
            let c = crds.get(&name).await.ok()?;
            c.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        })
        .await;
    }
}

async fn database() -> Store {
    let url = match std::env::var("FINREP_E2E_DATABASE_URL") {
        Ok(url) => url,
        Err(_) => common::scratch_database().await,
    };
    let store = Store::connect(&url, 4, Duration::from_secs(10))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_run_on_a_real_cluster() {
    let Ok(kubeconfig) = std::env::var("FINREP_E2E_KUBECONFIG") else {
        eprintln!(
            "skipped: set FINREP_E2E_KUBECONFIG to run against a cluster (tests/e2e/README.md)"
        );
        return;
    };
    let client = client(&kubeconfig).await;
    install_crds(&client).await;

    let ns = format!("finrep-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut namespace = Namespace::default();
    namespace.metadata.name = Some(ns.clone());
    namespace.metadata.labels = Some(
        [(
            "pod-security.kubernetes.io/enforce".to_string(),
            "restricted".to_string(),
        )]
        .into(),
    );
    apply(&namespaces, &namespace).await;

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let database_url = std::env::var("FINREP_E2E_POD_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://finrep@postgres:5432/finrep".into());
    for (name, key, value) in [
        ("finrep-smtp", "username", "e2e"),
        ("finrep-summarizer", "api-key", "e2e"),
        ("finrep-database", "url", database_url.as_str()),
    ] {
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        s.string_data = Some([(key.to_string(), value.to_string())].into());
        if name == "finrep-smtp" {
            s.string_data
                .get_or_insert_default()
                .insert("password".into(), "e2e".into());
        }
        apply(&secrets, &s).await;
    }
    let set = common::operator::examples();
    for s in &set.sources {
        let mut s = s.clone();
        s.metadata.namespace = Some(ns.clone());
        apply(&Api::namespaced(client.clone(), &ns), &s).await;
    }
    for r in &set.recipients {
        let mut r = r.clone();
        r.metadata.namespace = Some(ns.clone());
        apply(&Api::namespaced(client.clone(), &ns), &r).await;
    }
    let reports: Api<DailyReport> = Api::namespaced(client.clone(), &ns);
    let mut report = set.reports[0].clone();
    report.metadata.namespace = Some(ns.clone());
    report
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(annotations::RUN_NOW.into(), "e2e".into());
    apply(&reports, &report).await;

    let image = std::env::var("FINREP_E2E_IMAGE").ok();
    let mut settings = Settings::default();
    if let Some(image) = &image {
        settings.image = image.clone();
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(run(
        client.clone(),
        database().await,
        ControllerOptions {
            settings,
            namespace: Some(ns.clone()),
            admin_listen: None,
            lease: Some(LeaseOptions {
                name: "finrep-e2e".into(),
                namespace: ns.clone(),
                identity: format!("e2e-{}", std::process::id()),
                duration_seconds: 15,
            }),
            concurrency: 2,
        },
        Arc::new(finrep::clock::SystemClock),
        async move {
            let _ = stopped.await;
        },
    ));

    let name = report.name_any();
    let job_name = eventually("the manual run's Job", 120, async || {
        let r = reports.get(&name).await.ok()?;
        r.status?.last_run?.job
    })
    .await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let job = jobs.get(&job_name).await.expect("the Job the status names");
    assert_eq!(
        job.spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .automount_service_account_token,
        Some(false)
    );
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    assert!(
        config_maps.get(&job_name).await.is_ok(),
        "the plan ConfigMap"
    );
    let r = reports.get(&name).await.unwrap();
    let status = r.status.unwrap();
    assert_eq!(status.handled_run_now.as_deref(), Some("e2e"));
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );

    if image.is_some() {
        let phase = eventually("the run's end", 900, async || {
            let r = reports.get(&name).await.ok()?;
            let last = r.status?.last_run?;
            last.phase.is_finished().then_some(last.phase)
        })
        .await;
        eprintln!("run {job_name} ended {phase:?}");
    }

    let _ = stop.send(());
    controller.await.unwrap().unwrap();
    namespaces
        .delete(&ns, &DeleteParams::background())
        .await
        .unwrap();
}

/// Runs tests/e2e/helm_release.py (Helm's library) against the cluster.
fn helm(kubeconfig: &str, action: &str, namespace: &str, values: &serde_json::Value) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/helm_release.py");
    let out = std::process::Command::new(common::smtp::python())
        .arg(script)
        .args([kubeconfig, action, "finrep-e2e", namespace])
        .arg(values.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm {action}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The chart on a real cluster: `helm install` (in-cluster PostgreSQL, the migration hook),
/// the controller ready, a manual run of the examples started by the installed controller,
/// `helm upgrade` with a report scheduled (CRDs upgraded in place, the report kept and still
/// scheduled), `helm uninstall` keeping the CRDs. Needs FINREP_E2E_KUBECONFIG and
/// FINREP_E2E_IMAGE (an image the cluster can pull or has imported).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_installs_upgrades_and_uninstalls() {
    let (Ok(kubeconfig), Ok(image)) = (
        std::env::var("FINREP_E2E_KUBECONFIG"),
        std::env::var("FINREP_E2E_IMAGE"),
    ) else {
        eprintln!(
            "skipped: set FINREP_E2E_KUBECONFIG and FINREP_E2E_IMAGE to install the chart (tests/e2e/README.md)"
        );
        return;
    };
    let client = client(&kubeconfig).await;
    let system = format!("finrep-e2e-system-{}", std::process::id());
    let reports_ns = format!("finrep-e2e-reports-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in [&system, &reports_ns] {
        let mut namespace = Namespace::default();
        namespace.metadata.name = Some(ns.clone());
        namespace.metadata.labels = Some(
            [(
                "pod-security.kubernetes.io/enforce".to_string(),
                "restricted".to_string(),
            )]
            .into(),
        );
        apply(&namespaces, &namespace).await;
    }
    let (repository, tag) = image
        .rsplit_once(':')
        .expect("FINREP_E2E_IMAGE is REPOSITORY:TAG");
    let values = serde_json::json!({
        "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        "reportNamespaces": [reports_ns],
        "secrets": {"create": true, "databasePassword": format!("e2e-{}", std::process::id()),
                    "smtp": {"username": "e2e", "password": "e2e"}, "summarizerApiKey": "e2e"},
        "backup": {"pvc": {"name": "finrep-e2e-backups"}},
    });
    helm(&kubeconfig, "install", &system, &values);

    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &system);
    eventually("the controller ready", 300, async || {
        let d = deployments.get("finrep-e2e-controller").await.ok()?;
        (d.status?.ready_replicas? == 1).then_some(())
    })
    .await;

    let set = common::operator::examples();
    for s in &set.sources {
        let mut s = s.clone();
        s.metadata.namespace = Some(reports_ns.clone());
        apply(&Api::namespaced(client.clone(), &reports_ns), &s).await;
    }
    for r in &set.recipients {
        let mut r = r.clone();
        r.metadata.namespace = Some(reports_ns.clone());
        apply(&Api::namespaced(client.clone(), &reports_ns), &r).await;
    }
    let reports: Api<DailyReport> = Api::namespaced(client.clone(), &reports_ns);
    let mut report = set.reports[0].clone();
    report.metadata.namespace = Some(reports_ns.clone());
    report
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(annotations::RUN_NOW.into(), "e2e-chart".into());
    apply(&reports, &report).await;
    let name = report.name_any();
    let job = eventually("the installed controller's Job", 180, async || {
        reports.get(&name).await.ok()?.status?.last_run?.job
    })
    .await;
    eprintln!("the installed controller started {job}");

    // An upgrade with the report scheduled: CRDs re-applied in place, the report kept.
    helm(&kubeconfig, "upgrade", &system, &values);
    eventually("the controller ready after the upgrade", 300, async || {
        let d = deployments.get("finrep-e2e-controller").await.ok()?;
        (d.status?.ready_replicas? == 1).then_some(())
    })
    .await;
    let next = eventually("the report still scheduled", 120, async || {
        reports.get(&name).await.ok()?.status?.next_schedule_time
    })
    .await;
    eprintln!("after the upgrade, the next slot is {next}");

    helm(&kubeconfig, "uninstall", &system, &serde_json::json!({}));
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    assert!(
        crds.get("dailyreports.finrep.io").await.is_ok(),
        "the CRDs outlive the release"
    );
    assert!(reports.get(&name).await.is_ok(), "and so do the reports");
    for ns in [&system, &reports_ns] {
        namespaces
            .delete(ns, &DeleteParams::background())
            .await
            .unwrap();
    }
}
