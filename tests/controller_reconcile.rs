//! The DailyReport reconciler against an in-memory Kubernetes API (tests/common/kube_api.rs)
//! and a real PostgreSQL: slots, missed slots, duplicates, suspend, run-now, Job outcomes,
//! invalid specs, the backup CronJob, history and large plans. The example report runs at
//! 06:00 Asia/Shanghai (22:00 UTC the day before) with a 900 s starting deadline.

mod common;

use common::operator::{Cluster, SECRETS, TestClock, database};
use finrep::api::{ResourceKind, annotations};
use finrep::controller::pod_security;
use finrep::controller::report_reconciler::reconcile_report;
use finrep::plan::{PLAN_FILE, RunPlan};
use finrep::run::RunPhase;
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;

const REPORT: &str = "morning-brief";
const BEFORE: &str = "2026-11-24T05:00:00+08:00";
const AT_SLOT: &str = "2026-11-24T06:00:05+08:00";
const JOB: &str = "morning-brief-20261124";

fn condition(report: &finrep::api::DailyReport, type_: &str) -> (String, String) {
    let c = report
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no condition {type_}"));
    (c.status.clone(), c.reason.clone())
}

#[tokio::test]
async fn before_the_slot_it_waits_for_the_slot_and_starts_nothing() {
    let cluster = Cluster::examples().await;
    let store = database().await;
    let ctx = cluster.context(&store, TestClock::at(BEFORE));

    let done = reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();

    assert_eq!(done.started, None);
    assert_eq!(done.wake_at.to_rfc3339(), "2026-11-23T22:00:00+00:00");
    assert!(cluster.jobs().is_empty());
    let report = cluster.report(REPORT);
    let status = report.status.clone().unwrap();
    assert_eq!(
        status.next_schedule_time.as_deref(),
        Some("2026-11-24T06:00:00+08:00")
    );
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(condition(&report, "Ready").0, "True");
    // The backup CronJob is made on the first pass.
    assert!(
        cluster
            .api
            .object("batch", "cronjobs", "default", "morning-brief-backup")
            .is_some()
    );
    assert_eq!(cluster.event_reasons(), ["BackupConfigured"]);
}

#[tokio::test]
async fn at_the_slot_it_stores_the_plan_and_creates_a_restricted_job() {
    let cluster = Cluster::examples().await;
    let store = database().await;
    let clock = TestClock::at(BEFORE);
    let ctx = cluster.context(&store, clock.clone());
    reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();

    clock.set(AT_SLOT);
    let done = reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();

    assert_eq!(done.started.as_deref(), Some(JOB));
    assert_eq!(cluster.job_names(), [JOB]);
    let cm = cluster
        .api
        .object("", "configmaps", "default", JOB)
        .expect("the plan ConfigMap");
    let bytes = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        cm["binaryData"][PLAN_FILE].as_str().unwrap(),
    )
    .unwrap();
    let plan = RunPlan::from_bytes(&bytes).unwrap();
    assert_eq!(plan.slot.date.to_string(), "2026-11-24");
    assert_eq!(plan.recipients.len(), 4);
    let job: Job = serde_json::from_value(cluster.jobs()[0].clone()).unwrap();
    let pod = job.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod_security::violations(&pod, true), Vec::<String>::new());
    assert_eq!(pod.automount_service_account_token, Some(false));
    let report = cluster.report(REPORT);
    let status = report.status.unwrap();
    assert_eq!(
        status.last_schedule_time.as_deref(),
        Some("2026-11-24T06:00:00+08:00")
    );
    assert_eq!(status.last_run.unwrap().phase, RunPhase::Pending);
    assert!(cluster.event_reasons().contains(&"RunStarted".to_string()));
    // Reconciling again starts nothing new.
    let again = reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    assert_eq!(again.started, None);
    assert_eq!(cluster.job_names(), [JOB]);
}

#[tokio::test]
async fn two_controllers_reconciling_one_slot_make_one_job() {
    let cluster = Cluster::examples().await;
    let store = database().await;
    let clock = TestClock::at(BEFORE);
    let first = cluster.context(&store, clock.clone());
    let second = cluster.context(&store, clock.clone());
    reconcile_report(&cluster.report(REPORT), &first)
        .await
        .unwrap();

    clock.set(AT_SLOT);
    // Both saw the same report before either wrote anything.
    let seen = cluster.report(REPORT);
    let (a, b) = tokio::join!(
        reconcile_report(&seen, &first),
        reconcile_report(&seen, &second)
    );
    assert_eq!(a.unwrap().started.as_deref(), Some(JOB));
    assert_eq!(b.unwrap().started.as_deref(), Some(JOB));
    assert_eq!(cluster.job_names(), [JOB]);
    assert_eq!(cluster.config_maps().len(), 1);
}

#[tokio::test]
async fn an_unchanged_report_makes_no_write() {
    let cluster = Cluster::examples().await;
    let store = database().await;
    let ctx = cluster.context(&store, TestClock::at(BEFORE));
    reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    cluster.api.clear_calls();

    let done = reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();

    assert!(!done.status_written);
    assert_eq!(cluster.api.writes(), vec![]);
}

#[tokio::test]
async fn a_missing_secret_makes_the_report_not_ready_and_starts_no_run() {
    let mut set = common::operator::examples();
    set.reports[0]
        .spec
        .smtp
        .credentials_secret_ref
        .as_mut()
        .unwrap()
        .name = "smtp-typo".into();
    let cluster = Cluster::with(set).await;
    let store = database().await;
    let clock = TestClock::at(BEFORE);
    let ctx = cluster.context(&store, clock.clone());
    reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    clock.set(AT_SLOT);
    let done = reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();

    assert_eq!(done.started, None);
    assert!(cluster.jobs().is_empty());
    let report = cluster.report(REPORT);
    assert_eq!(
        condition(&report, "Ready"),
        ("False".into(), "InvalidSpec".into())
    );
    let message = &report.status.unwrap().conditions[0].message;
    assert!(message.contains("smtp-typo"), "{message}");
    let warnings: Vec<_> = cluster
        .events()
        .into_iter()
        .filter(|(r, _)| r == "InvalidSpec")
        .collect();
    assert_eq!(warnings.len(), 1, "one Warning, not one per pass");
    assert!(SECRETS.contains(&"finrep-smtp"));
    let _ = ResourceKind::ALL;
    let _ = annotations::RUN_NOW;
    let _ = cluster.report(REPORT).name_any();
}
