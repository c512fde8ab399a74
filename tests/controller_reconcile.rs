//! The DailyReport reconciler against an in-memory Kubernetes API (tests/common/kube_api.rs)
//! and a real PostgreSQL: slots, missed slots, duplicates, suspend, run-now, Job outcomes,
//! invalid specs, the backup CronJob, history and large plans. The example report runs at
//! 06:00 Asia/Shanghai (22:00 UTC the day before) with a 900 s starting deadline.

mod common;

use common::operator::{Cluster, SECRETS, TestClock, database};
use finrep::api::annotations;
use finrep::controller::context::Context;
use finrep::controller::pod_security;
use finrep::controller::report_reconciler::reconcile_report;
use finrep::plan::{PLAN_FILE, RunPlan};
use finrep::run::RunPhase;
use finrep::store::{RunKey, RunStart, Store};
use k8s_openapi::api::batch::v1::Job;
use std::sync::Arc;

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
    // A report makes no backup: a dump holds every namespace's rows (the chart's CronJob in the
    // operator's namespace backs the database up).
    assert!(
        cluster
            .api
            .object("batch", "cronjobs", "default", "morning-brief-backup")
            .is_none()
    );
    assert_eq!(cluster.event_reasons(), Vec::<String>::new());
}

#[tokio::test]
async fn at_the_slot_it_stores_the_plan_and_creates_a_restricted_job() {
    let (cluster, _store, clock, ctx) = seen_before_the_slot().await;

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
    assert_eq!(cluster.event_count("RunStarted"), 1);
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
        .as_mut()
        .and_then(|s| s.credentials_secret_ref.as_mut())
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
}

/// The examples' cluster, a database, a clock and a context, after a first reconcile an hour
/// before the slot (the report is scheduled from then on).
async fn seen_before_the_slot() -> (Cluster, Store, Arc<TestClock>, Arc<Context>) {
    let cluster = Cluster::examples().await;
    let store = database().await;
    let clock = TestClock::at(BEFORE);
    let ctx = cluster.context(&store, clock.clone());
    reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    (cluster, store, clock, ctx)
}

/// Reconciles at `first` (the controller starts), then not again until `then`.
async fn down_until(
    cluster: &Cluster,
    first: &str,
    then: &str,
) -> finrep::controller::report_reconciler::Reconciled {
    let store = database().await;
    let clock = TestClock::at(first);
    let ctx = cluster.context(&store, clock.clone());
    reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    clock.set(then);
    reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_late_slot_within_the_starting_deadline_still_starts() {
    let cluster = Cluster::examples().await;
    let done = down_until(&cluster, BEFORE, "2026-11-24T06:14:00+08:00").await;
    assert_eq!(done.started.as_deref(), Some(JOB));
    assert!(!cluster.event_reasons().contains(&"RunMissed".to_string()));
}

#[tokio::test]
async fn a_slot_past_its_starting_deadline_is_missed_not_started() {
    let cluster = Cluster::examples().await;
    let done = down_until(&cluster, BEFORE, "2026-11-24T06:16:00+08:00").await;
    assert_eq!(done.started, None);
    assert!(cluster.jobs().is_empty());
    let report = cluster.report(REPORT);
    let last = report.status.clone().unwrap().last_run.unwrap();
    assert_eq!(
        (last.date.as_str(), last.phase),
        ("2026-11-24", RunPhase::Missed)
    );
    assert_eq!(
        condition(&report, "LastRunSucceeded"),
        ("False".into(), "Missed".into())
    );
    let missed: Vec<_> = cluster
        .events()
        .into_iter()
        .filter(|(r, _)| r == "RunMissed")
        .collect();
    assert_eq!(missed.len(), 1);
}

#[tokio::test]
async fn three_days_down_is_one_missed_event_and_no_burst_of_runs() {
    let cluster = Cluster::examples().await;
    let store = database().await;
    let clock = TestClock::at("2026-11-21T05:00:00+08:00");
    let ctx = cluster.context(&store, clock.clone());
    reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();

    clock.set("2026-11-24T05:00:00+08:00");
    let done = reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    assert_eq!(done.started, None);
    assert!(cluster.jobs().is_empty());
    let missed: Vec<_> = cluster
        .events()
        .into_iter()
        .filter(|(r, _)| r == "RunMissed")
        .collect();
    assert_eq!(missed.len(), 1, "{missed:?}");
    assert!(missed[0].1.starts_with("3 slot(s)"), "{}", missed[0].1);
    // The next pass is quiet, and today's slot runs as usual.
    reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    clock.set(AT_SLOT);
    let today = reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    assert_eq!(today.started.as_deref(), Some(JOB));
    assert_eq!(
        cluster
            .events()
            .iter()
            .filter(|(r, _)| r == "RunMissed")
            .count(),
        1
    );
}

#[tokio::test]
async fn a_suspended_report_starts_nothing() {
    let mut set = common::operator::examples();
    set.reports[0].spec.suspend = true;
    let cluster = Cluster::with(set).await;
    let done = down_until(&cluster, BEFORE, AT_SLOT).await;
    assert_eq!(done.started, None);
    assert!(cluster.jobs().is_empty());
    assert_eq!(
        cluster.report(REPORT).status.unwrap().next_schedule_time,
        None
    );
}

#[tokio::test]
async fn run_now_starts_one_manual_run_per_value() {
    let cluster = Cluster::examples().await;
    let store = database().await;
    let ctx = cluster.context(&store, TestClock::at("2026-11-24T10:00:00+08:00"));
    let ask = |value: &str| {
        cluster.annotate_report(REPORT, annotations::RUN_NOW, value);
    };

    ask("first");
    let done = reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    let manual = done.started.expect("a manual run");
    assert!(manual.starts_with("morning-brief-20261124-"), "{manual}");
    // The same value again, even after the run finished: nothing new.
    reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    cluster.finish_job(&manual, true);
    ask("first");
    let again = reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    assert_eq!(again.started, None);
    assert_eq!(cluster.jobs().len(), 1);
    // A new value: one more.
    ask("second");
    let second = reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    assert!(second.started.is_some_and(|n| n != manual));
    assert_eq!(cluster.jobs().len(), 2);
}

#[tokio::test]
async fn a_new_run_waits_while_one_is_active() {
    let cluster = Cluster::examples().await;
    let store = database().await;
    let clock = TestClock::at(BEFORE);
    let ctx = cluster.context(&store, clock.clone());
    cluster.annotate_report(REPORT, annotations::RUN_NOW, "early");
    let manual = reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap()
        .started
        .unwrap();

    clock.set(AT_SLOT);
    let busy = reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    assert_eq!(busy.started, None, "never two runs of one report at once");
    cluster.finish_job(&manual, true);
    clock.set("2026-11-24T06:05:00+08:00");
    let free = reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    assert_eq!(free.started.as_deref(), Some(JOB));
}

async fn record_run(store: &finrep::store::Store, phase: RunPhase) {
    let row = store
        .begin_run(&RunStart {
            key: RunKey {
                namespace: "default",
                report: REPORT,
                date: "2026-11-24".parse().unwrap(),
            },
            time_zone: "Asia/Shanghai",
            scheduled_for: common::operator::instant("2026-11-24T06:00:00+08:00"),
            manual: false,
            plan: serde_json::json!({}),
            at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    store
        .finish_run(
            row.id,
            phase,
            &serde_json::json!({}),
            None,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
}

async fn finished_run(succeeded: bool, phase: RunPhase) -> (Cluster, finrep::api::DailyReport) {
    let (cluster, store, clock, ctx) = seen_before_the_slot().await;
    clock.set(AT_SLOT);
    reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    record_run(&store, phase).await;
    cluster.finish_job(JOB, succeeded);
    clock.set("2026-11-24T06:21:00+08:00");
    reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    let report = cluster.report(REPORT);
    (cluster, report)
}

#[tokio::test]
async fn a_succeeded_job_and_record_make_a_succeeded_last_run() {
    let (cluster, report) = finished_run(true, RunPhase::Succeeded).await;
    let status = report.status.clone().unwrap();
    assert_eq!(status.last_run.unwrap().phase, RunPhase::Succeeded);
    assert_eq!(status.active_run, None);
    assert_eq!(condition(&report, "LastRunSucceeded").0, "True");
    assert_eq!(cluster.event_count("RunSucceeded"), 1);
}

#[tokio::test]
async fn a_partial_delivery_is_reported_as_such() {
    let (cluster, report) = finished_run(true, RunPhase::PartiallyDelivered).await;
    assert_eq!(
        report.status.unwrap().last_run.unwrap().phase,
        RunPhase::PartiallyDelivered
    );
    assert_eq!(cluster.event_count("RunPartiallyDelivered"), 1);
}

#[tokio::test]
async fn a_failed_job_makes_a_failed_last_run() {
    let (cluster, report) = finished_run(false, RunPhase::Sending).await;
    assert_eq!(
        report.status.clone().unwrap().last_run.unwrap().phase,
        RunPhase::Failed
    );
    assert_eq!(condition(&report, "LastRunSucceeded").0, "False");
    assert_eq!(cluster.event_count("RunFailed"), 1);
}

/// The per-report backup CronJob of an earlier version is removed once — when the report owns
/// it — and never made again, whatever spec.backup says.
#[tokio::test]
async fn an_earlier_versions_backup_cron_job_is_removed_and_never_made_again() {
    let cluster = Cluster::examples().await;
    let store = database().await;
    let ctx = cluster.context(&store, TestClock::at(BEFORE));
    let uid = cluster.report(REPORT).metadata.uid.unwrap();
    let mut legacy = planted(
        "CronJob",
        "batch/v1",
        "morning-brief-backup",
        serde_json::json!({"spec": {"schedule": "30 6 * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "OnFailure",
            "containers": [{"name": "backup", "image": "ghcr.io/finrep/finrep:0.1.0"}]
        }}}}}}),
    );
    legacy["metadata"]["ownerReferences"] = serde_json::json!([{
        "apiVersion": "finrep.io/v1alpha1", "kind": "DailyReport", "name": REPORT,
        "uid": uid, "controller": true,
    }]);
    cluster.api.put(&legacy);
    let cron_job = || {
        cluster
            .api
            .object("batch", "cronjobs", "default", "morning-brief-backup")
    };
    reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    assert!(cron_job().is_none());
    assert_eq!(cluster.event_count("LegacyBackupRemoved"), 1);

    let mut report = cluster.report(REPORT);
    report.spec.backup = Some(finrep::api::BackupSpec {
        schedule: "45 6 * * *".into(),
        ..Default::default()
    });
    cluster.api.put(&report);
    reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    assert!(cron_job().is_none());
    assert_eq!(condition(&cluster.report(REPORT), "Ready").0, "True");
}

#[tokio::test]
async fn finished_runs_beyond_the_history_are_deleted_with_their_plans() {
    let cluster = Cluster::examples().await;
    let store = database().await;
    let clock = TestClock::at("2026-11-18T05:00:00+08:00");
    let ctx = cluster.context(&store, clock.clone());
    reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    // Six days of runs, each finished before the next.
    let mut pruned = Vec::new();
    for day in 18..=23 {
        clock.set(&format!("2026-11-{day}T06:00:05+08:00"));
        let done = reconcile_report(&cluster.report(REPORT), &ctx)
            .await
            .unwrap();
        pruned.extend(done.pruned);
        let job = done.started.expect("the day's run");
        cluster.finish_job(&job, day != 20);
    }
    clock.set("2026-11-23T07:00:00+08:00");
    let done = reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    pruned.extend(done.pruned);
    assert_eq!(pruned, ["morning-brief-20261118", "morning-brief-20261119"]);
    assert_eq!(
        cluster.job_names(),
        [
            "morning-brief-20261120",
            "morning-brief-20261121",
            "morning-brief-20261122",
            "morning-brief-20261123"
        ]
    );
    assert_eq!(cluster.config_maps().len(), 4);
}

#[tokio::test]
async fn ten_thousand_recipients_fit_one_plan_config_map() {
    let mut set = common::operator::examples();
    let template = set
        .recipients
        .iter()
        .find(|r| r.spec.email.is_some())
        .unwrap()
        .clone();
    set.recipients = (0..10_000)
        .map(|i| {
            let mut r = template.clone();
            r.metadata.name = Some(format!("reader-{i:05}"));
            r.spec.email = Some(format!("reader-{i:05}@example.com"));
            r
        })
        .collect();
    let cluster = Cluster::with(set).await;
    let done = down_until(&cluster, BEFORE, AT_SLOT).await;
    assert_eq!(done.started.as_deref(), Some(JOB));
    let cm = cluster
        .api
        .object("", "configmaps", "default", JOB)
        .unwrap();
    let encoded = cm["binaryData"][PLAN_FILE].as_str().unwrap();
    let bytes =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded).unwrap();
    assert!(
        bytes.len() < finrep::controller::error::MAX_PLAN_BYTES,
        "{} bytes",
        bytes.len()
    );
    assert_eq!(
        RunPlan::from_bytes(&bytes).unwrap().recipients.len(),
        10_000
    );
}

#[tokio::test]
async fn api_failures_are_transient_errors_and_the_retry_finishes_the_work() {
    let (cluster, _store, clock, ctx) = seen_before_the_slot().await;
    clock.set(AT_SLOT);

    cluster
        .api
        .fail_next("create", "jobs", 500, "InternalError");
    let error = reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(cluster.jobs().is_empty());

    cluster
        .api
        .fail_next("patch", "dailyreports/status", 500, "InternalError");
    let error = reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error}");
    // The Job was made before the status write failed; the retry finds it and settles.
    assert_eq!(cluster.job_names(), [JOB]);
    let done = reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    assert!(done.status_written);
    assert_eq!(cluster.job_names(), [JOB]);
    assert_eq!(
        cluster.event_count("RunStarted"),
        1,
        "one RunStarted despite the retries"
    );
}

/// `kubectl get dailyreports` prints the CRD's columns from the status the controller wrote.
#[tokio::test]
async fn kubectl_get_shows_the_columns_the_controller_filled() {
    let (cluster, _) = finished_run(true, RunPhase::Succeeded).await;
    let object = cluster
        .api
        .object("finrep.io", "dailyreports", "default", REPORT)
        .unwrap();
    let crd = finrep::api::ResourceKind::DailyReport.crd();
    let columns = crd.spec.versions[0]
        .additional_printer_columns
        .clone()
        .unwrap();
    let row: Vec<(String, Option<String>)> = columns
        .iter()
        .map(|c| {
            // kubectl evaluates a column's path from the object's root.
            let path = finrep::jsonpath::JsonPath::parse(&format!("${}", c.json_path)).unwrap();
            (c.name.clone(), path.text(&object))
        })
        .collect();
    let value = |name: &str| {
        row.iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("column {name} is empty: {row:?}"))
    };
    assert_eq!(value("Last-Run"), "2026-11-24");
    assert_eq!(value("Phase"), "Succeeded");
    assert_eq!(value("Delivered"), "0");
    assert_eq!(value("Failed"), "0");
    assert_eq!(value("Next"), "2026-11-25T06:00:00+08:00");
}

#[tokio::test]
async fn an_invalid_schedule_is_reported_and_touches_nothing() {
    let mut set = common::operator::examples();
    set.reports[0].spec.schedule = "61 6 * * *".into();
    // A deprecated backup section is ignored, whatever it says.
    set.reports[0].spec.backup = Some(finrep::api::BackupSpec {
        schedule: "every morning".into(),
        ..Default::default()
    });
    let cluster = Cluster::with(set).await;
    let done = down_until(&cluster, BEFORE, AT_SLOT).await;
    assert_eq!(done.started, None);
    assert!(cluster.jobs().is_empty());
    assert!(
        cluster
            .api
            .object("batch", "cronjobs", "default", "morning-brief-backup")
            .is_none()
    );
    let report = cluster.report(REPORT);
    assert_eq!(
        condition(&report, "Ready"),
        ("False".into(), "InvalidSpec".into())
    );
    let message = &report.status.unwrap().conditions[0].message;
    assert!(
        message.contains("spec.schedule") && !message.contains("spec.backup"),
        "{message}"
    );
    assert_eq!(cluster.event_count("InvalidSpec"), 1);
}

/// An object somebody else made in the report's namespace (no owner reference).
fn planted(
    kind: &str,
    api_version: &str,
    name: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": "default"},
    });
    for (k, val) in body.as_object().unwrap() {
        v[k] = val.clone();
    }
    v
}

/// A ConfigMap planted under tomorrow's run name (anyone who may create ConfigMaps can guess
/// it) is never taken for the plan: no Job starts, the ConfigMap is left as it is, the report
/// says NameConflict once; when the stranger's object is gone, the run starts.
#[tokio::test]
async fn a_plan_planted_under_the_runs_name_is_never_used() {
    let (cluster, _store, clock, ctx) = seen_before_the_slot().await;
    let evil = "smtp: {host: collector.example.net}";
    cluster.api.put(&planted(
        "ConfigMap",
        "v1",
        JOB,
        serde_json::json!({"data": {"plan.yaml": evil}}),
    ));
    clock.set(AT_SLOT);
    let done = reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    assert_eq!(done.started, None);
    assert!(
        cluster.jobs().is_empty(),
        "no Job mounts a plan the controller did not write"
    );
    let cm = cluster
        .api
        .object("", "configmaps", "default", JOB)
        .unwrap();
    assert_eq!(cm["data"]["plan.yaml"], evil);
    assert!(cm["metadata"]["ownerReferences"].is_null(), "{cm}");
    let report = cluster.report(REPORT);
    assert_eq!(
        condition(&report, "Ready"),
        ("False".to_string(), "NameConflict".to_string())
    );
    assert_eq!(cluster.event_count("NameConflict"), 1);
    assert_eq!(cluster.event_count("RunStarted"), 0);

    reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    assert!(cluster.jobs().is_empty());
    assert_eq!(
        cluster.event_count("NameConflict"),
        1,
        "one Event, not one per pass"
    );

    let config_maps: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(cluster.api.client(), "default");
    config_maps.delete(JOB, &Default::default()).await.unwrap();
    let done = reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    assert_eq!(done.started.as_deref(), Some(JOB));
    assert_eq!(condition(&cluster.report(REPORT), "Ready").0, "True");
}

/// A CronJob of somebody else's named like an earlier version's backup of the report is
/// neither taken over nor deleted.
#[tokio::test]
async fn a_stranger_cron_job_named_like_the_backup_is_left_alone() {
    let cluster = Cluster::examples().await;
    let store = database().await;
    let theirs = planted(
        "CronJob",
        "batch/v1",
        "morning-brief-backup",
        serde_json::json!({"spec": {"schedule": "0 0 * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "theirs", "image": "registry.example.net/theirs:1"}]
        }}}}}}),
    );
    cluster.api.put(&theirs);
    let ctx = cluster.context(&store, TestClock::at(BEFORE));
    reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    let cron = cluster
        .api
        .object("batch", "cronjobs", "default", "morning-brief-backup")
        .unwrap();
    assert_eq!(cron["spec"]["schedule"], "0 0 * * *");
    assert_eq!(
        cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["name"],
        "theirs"
    );
    // Not a name the report needs any more: no conflict either.
    assert_eq!(condition(&cluster.report(REPORT), "Ready").0, "True");
    assert_eq!(cluster.event_count("LegacyBackupRemoved"), 0);
}

/// A controller told which namespaces it serves leaves a report elsewhere alone: its status
/// says NamespaceNotServed, and nothing in its namespace but that status is read or written
/// (the controller has no Role there).
#[tokio::test]
async fn a_report_outside_the_served_namespaces_is_told_so_and_left_alone() {
    let cluster = Cluster::examples().await;
    let store = database().await;
    let settings = finrep::controller::objects::Settings {
        report_namespaces: vec!["desk-a".to_string()],
        ..Default::default()
    };
    let ctx = cluster.context_with_settings(&store, TestClock::at(AT_SLOT), &cluster.set, settings);
    cluster.api.clear_calls();
    let done = reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    assert_eq!(done.started, None);
    assert!(cluster.jobs().is_empty());
    let report = cluster.report(REPORT);
    assert_eq!(
        condition(&report, "Ready"),
        ("False".to_string(), "NamespaceNotServed".to_string())
    );
    let touched: Vec<String> = cluster
        .api
        .calls()
        .into_iter()
        .map(|c| format!("{} {}", c.verb, c.resource))
        .collect();
    assert!(
        touched
            .iter()
            .all(|c| c.ends_with("dailyreports/status") || c.ends_with("dailyreports")),
        "{touched:?}"
    );
}

/// Five reports at one slot on a controller that runs two run Jobs at once: two start, three
/// wait and say so (`Queued` in `kubectl get`, why in `status.waiting`, one RunQueued Event
/// each); as Jobs end the next ones start, in order; one still waiting past its starting
/// deadline is Missed, never started late.
#[tokio::test]
async fn runs_over_the_bound_wait_their_turn_and_say_so() {
    let mut set = common::operator::examples();
    let template = set.reports[0].clone();
    set.reports = (1..=5)
        .map(|i| {
            let mut r = template.clone();
            r.metadata.name = Some(format!("desk-{i}"));
            r
        })
        .collect();
    let cluster = Cluster::with(set.clone()).await;
    let store = database().await;
    let clock = TestClock::at(BEFORE);
    let settings = finrep::controller::objects::Settings {
        max_concurrent_runs: 2,
        ..Default::default()
    };
    let ctx = cluster.context_with_settings(&store, clock.clone(), &set, settings);
    let names: Vec<String> = (1..=5).map(|i| format!("desk-{i}")).collect();
    let pass = async |names: &[String]| {
        for n in names {
            reconcile_report(&cluster.report(n), &ctx).await.unwrap();
        }
    };
    pass(&names).await;
    clock.set(AT_SLOT);
    pass(&names).await;
    assert_eq!(
        cluster.job_names(),
        ["desk-1-20261124", "desk-2-20261124"],
        "two at once"
    );
    for n in &names[2..] {
        let status = cluster.report(n).status.unwrap();
        let last = status.last_run.clone().unwrap();
        assert_eq!(
            (last.date.as_str(), last.phase),
            ("2026-11-24", RunPhase::Queued)
        );
        let why = status.waiting.unwrap();
        assert!(why.contains("2 of 2 run Jobs"), "{why}");
    }
    assert_eq!(cluster.event_count("RunQueued"), 3);
    pass(&names).await;
    assert_eq!(cluster.event_count("RunQueued"), 3, "one Event per wait");

    cluster.finish_job("desk-1-20261124", true);
    clock.set("2026-11-24T06:03:00+08:00");
    pass(&names).await;
    assert_eq!(cluster.job_names().len(), 3, "{:?}", cluster.job_names());
    assert!(cluster.job_names().contains(&"desk-3-20261124".to_string()));
    assert_eq!(cluster.report("desk-3").status.unwrap().waiting, None);

    // Nothing ends until past the example's 900 s starting deadline: the rest are missed.
    clock.set("2026-11-24T06:16:00+08:00");
    pass(&names).await;
    cluster.finish_job("desk-2-20261124", true);
    cluster.finish_job("desk-3-20261124", true);
    pass(&names).await;
    assert_eq!(cluster.job_names().len(), 3, "none started late");
    for n in &names[3..] {
        let status = cluster.report(n).status.unwrap();
        assert_eq!(status.last_run.unwrap().phase, RunPhase::Missed, "{n}");
        assert_eq!(status.waiting, None);
    }
}

/// A preview is a pod like a run: with the node's places taken it waits its turn and says so,
/// a preview of a report whose own run goes waits for that run, and its plan can send nothing.
#[tokio::test]
async fn a_preview_waits_for_a_place_and_for_its_reports_run() {
    let mut set = common::operator::examples();
    let mut other = set.reports[0].clone();
    other.metadata.name = Some("evening-brief".into());
    set.reports.push(other);
    let cluster = Cluster::with(set.clone()).await;
    let store = database().await;
    let clock = TestClock::at(BEFORE);
    let settings = finrep::controller::objects::Settings {
        max_concurrent_runs: 1,
        ..Default::default()
    };
    let ctx = cluster.context_with_settings(&store, clock.clone(), &set, settings);
    for n in [REPORT, "evening-brief"] {
        reconcile_report(&cluster.report(n), &ctx).await.unwrap();
    }
    clock.set(AT_SLOT);
    reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    assert_eq!(cluster.job_names(), [JOB], "the one place is the run's");

    // The evening brief's editor previews: no place is free.
    cluster.annotate_report("evening-brief", annotations::PREVIEW, "p1");
    // Its own slot is due too (it waits for a place first); then the preview waits for it.
    let done = reconcile_report(&cluster.report("evening-brief"), &ctx)
        .await
        .unwrap();
    let preview = cluster
        .report("evening-brief")
        .status
        .unwrap()
        .preview
        .unwrap();
    assert_eq!(preview.phase, finrep::api::PreviewPhase::Waiting);
    assert!(
        preview
            .message
            .as_deref()
            .is_some_and(|m| m.contains("waits")),
        "{preview:?}"
    );
    let soon = chrono::DateTime::parse_from_rfc3339(AT_SLOT)
        .unwrap()
        .to_utc()
        + chrono::Duration::seconds(finrep::controller::desired::WAIT_POLL_SECONDS);
    assert!(done.wake_at <= soon, "asks again soon: {}", done.wake_at);
    assert_eq!(cluster.job_names(), [JOB], "no preview Job yet");

    // The morning brief's own preview waits for its run, whatever the places.
    cluster.annotate_report(REPORT, annotations::PREVIEW, "p2");
    reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    let preview = cluster.report(REPORT).status.unwrap().preview.unwrap();
    assert_eq!(preview.phase, finrep::api::PreviewPhase::Waiting);
    assert!(preview.message.unwrap().contains(JOB));

    // The run over, the place goes by the queue's order: the evening brief's run (due at the
    // slot) first, then its preview (asked for first), then the morning brief's preview.
    cluster.finish_job(JOB, true);
    reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    let preview = cluster.report(REPORT).status.unwrap().preview.unwrap();
    assert!(preview.message.unwrap().contains("go first"));
    reconcile_report(&cluster.report("evening-brief"), &ctx)
        .await
        .unwrap();
    assert!(
        cluster
            .job_names()
            .contains(&"evening-brief-20261124".to_string())
    );
    cluster.finish_job("evening-brief-20261124", true);
    reconcile_report(&cluster.report("evening-brief"), &ctx)
        .await
        .unwrap();
    let preview = cluster
        .report("evening-brief")
        .status
        .unwrap()
        .preview
        .unwrap();
    assert_eq!(
        preview.phase,
        finrep::api::PreviewPhase::Running,
        "{preview:?}"
    );
    let job = preview.job.unwrap();
    assert!(job.starts_with("evening-brief-preview-"), "{job}");
    let map = cluster
        .api
        .object("", "configmaps", "default", &job)
        .unwrap();
    use base64::Engine as _;
    let gz = base64::engine::general_purpose::STANDARD
        .decode(map["binaryData"][PLAN_FILE].as_str().unwrap())
        .unwrap();
    let plan = RunPlan::from_bytes(&gz).unwrap();
    assert!(plan.recipients.is_empty() && !plan.sources.is_empty());
    assert!(
        plan.secrets.iter().all(|s| s.secret != "finrep-smtp"),
        "{:?}",
        plan.secrets
    );
    let job = cluster
        .api
        .object("batch", "jobs", "default", &job)
        .unwrap();
    assert_eq!(job["metadata"]["labels"]["finrep.io/purpose"], "preview");
    assert_eq!(
        job["metadata"]["labels"]["app.kubernetes.io/component"], "run",
        "a run to the network policies"
    );
    // Never the day's run: lastRun is still the slot's.
    let last = cluster
        .report("evening-brief")
        .status
        .unwrap()
        .last_run
        .unwrap();
    assert_eq!(last.job.as_deref(), Some("evening-brief-20261124"));
    // The morning brief's preview still waits: the one place is the evening preview's.
    reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    let preview = cluster.report(REPORT).status.unwrap().preview.unwrap();
    assert_eq!(preview.phase, finrep::api::PreviewPhase::Waiting);
}

/// A stranger's ConfigMap under the preview's name is never written over: the preview fails
/// saying so, and the report's status goes on being written.
#[tokio::test]
async fn a_strangers_config_map_named_like_the_preview_is_left_alone() {
    let (cluster, store, clock, ctx) = seen_before_the_slot().await;
    cluster.api.put(&serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "morning-brief-preview", "namespace": "default"},
        "data": {"mine": "keep"},
    }));
    cluster.annotate_report(REPORT, annotations::PREVIEW, "p1");
    reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    let preview = cluster.report(REPORT).status.unwrap().preview.unwrap();
    assert_eq!(
        preview.phase,
        finrep::api::PreviewPhase::Running,
        "{preview:?}"
    );
    // The Job stored its preview and ended.
    let at = chrono::Utc::now();
    let id = store
        .begin_preview(&finrep::store::PreviewStart {
            namespace: "default",
            report: REPORT,
            request: "p1",
            date: chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
            recipient: None,
            at,
        })
        .await
        .unwrap();
    store
        .finish_preview(
            id,
            &finrep::store::PreviewResult {
                subject: "s",
                html: "<p>h</p>",
                text: "t",
                chat: None,
                articles: 1,
                view: serde_json::json!({}),
                outcome: serde_json::json!({}),
                at,
            },
        )
        .await
        .unwrap();
    cluster.finish_job(preview.job.as_deref().unwrap(), true);
    clock.set(AT_SLOT);
    reconcile_report(&cluster.report(REPORT), &ctx)
        .await
        .unwrap();
    let status = cluster.report(REPORT).status.unwrap();
    let preview = status.preview.unwrap();
    assert_eq!(
        preview.phase,
        finrep::api::PreviewPhase::Failed,
        "{preview:?}"
    );
    assert!(preview.message.unwrap().contains("not this report's"));
    let theirs = cluster
        .api
        .object("", "configmaps", "default", "morning-brief-preview")
        .unwrap();
    assert_eq!(
        theirs["data"],
        serde_json::json!({"mine": "keep"}),
        "untouched"
    );
    // The slot's run started and the status says so, whatever the preview's trouble.
    assert_eq!(status.last_run.unwrap().job.as_deref(), Some(JOB));
}
