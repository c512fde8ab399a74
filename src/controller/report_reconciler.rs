//! Reconciling one DailyReport: observe its Jobs, run records and spec problems, decide with
//! `desired::desired`, then make it so — the backup CronJob, the run's plan and Job, the
//! pruned history, the status (only when it changed) and the Events.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::cluster::{self, NameConflict, apply_status, create_owned, delete_owned};
use super::context::{Context, object_key};
use super::desired::{Desired, StartRun, Waiting, World, desired, event_reasons};
use super::editor;
use super::error::{MAX_PLAN_BYTES, ReconcileError, retry_after};
use super::image_policy::{self, image_allowed};
use super::objects::{Settings, labels, legacy_backup_name, plan_config_map, run_job};
use super::observed::{EditorJob, editor_job, observed_job};
use super::run_queue::{ReportKey, Turn};
use super::status::JobState;
use super::status::RunRecord;
use crate::api::selector::{self, Selectable};
use crate::api::{CatalogEntry, DailyReport, Recipient, Source};
use crate::plan::{RunPlan, plan_for, referenced_secrets};
use crate::run::{DeliveryStatus, RunPhase};
use crate::validation::{
    FieldProblem, ResourceSet, Severity, check_daily_report, reserved_secret_problems,
    selection_problems,
};

pub const KIND: &str = "DailyReport";

/// The longest a report waits without a change before it is looked at again (slots further
/// away are reached by several waits).
pub const MAX_WAIT_SECONDS: i64 = 3600;

/// What one reconcile did, for the caller (the controller's requeue, tests).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reconciled {
    /// The run started (its Job's name), if any.
    pub started: Option<String>,
    pub pruned: Vec<String>,
    pub status_written: bool,
    pub events: Vec<&'static str>,
    /// When to look again without a change.
    pub wake_at: DateTime<Utc>,
}

/// The controller's entry point.
pub async fn reconcile(
    report: Arc<DailyReport>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let key = object_key(KIND, report.as_ref());
    let result = reconcile_report(&report, &ctx).await;
    ctx.metrics
        .reconciled(KIND, started.elapsed().as_secs_f64());
    let done = result?;
    ctx.succeeded(&key);
    let wait = ctx
        .clock
        .wall_wait(done.wake_at)
        .max(std::time::Duration::from_secs(1));
    Ok(Action::requeue(wait))
}

/// Backs off per object: transient errors soon and longer each time, permanent ones late, with
/// a Warning Event so the user sees why nothing happens.
pub fn error_policy(report: Arc<DailyReport>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    let failures = ctx.failed(&object_key(KIND, report.as_ref()));
    ctx.metrics.failed(KIND, error.category());
    warn!(
        report = %report.name_any(),
        namespace = report.namespace().unwrap_or_default(),
        category = error.category().as_str(),
        failures,
        error = %error,
        "reconcile failed"
    );
    if !error.is_transient() {
        let recorder = ctx.recorder.clone();
        let reference = report.object_ref(&());
        let note = error.to_string();
        tokio::spawn(async move {
            let event = KubeEvent {
                type_: EventType::Warning,
                reason: "ReconcileFailed".to_string(),
                note: Some(note),
                action: "Reconcile".to_string(),
                secondary: None,
            };
            if let Err(e) = recorder.publish(&event, &reference).await {
                warn!(error = %e, "could not record an Event");
            }
        });
    }
    Action::requeue(retry_after(error.is_transient(), failures))
}

/// One reconcile of `report`: observe, decide, apply.
pub async fn reconcile_report(
    report: &DailyReport,
    ctx: &Context,
) -> Result<Reconciled, ReconcileError> {
    if !ctx.settings.serves(&namespace(report)) {
        return not_served(report, ctx).await;
    }
    let mut world = observe(report, ctx).await?;
    let mut decision = desired(report, &world);
    if let Some(waiting) = turn(report, &world, &decision, ctx) {
        world.waiting = Some(waiting);
        decision = desired(report, &world);
    }
    let acted = act(report, &world, &decision, ctx).await;
    let key = report_key(report);
    match &acted {
        Ok(Some(_)) => ctx.runs.started(&key, Instant::now()),
        // Told to go, it started nothing: its place goes to the next.
        _ if decision.start.is_some() => ctx.runs.withdraw(&key),
        _ => {}
    }
    let started = match acted {
        Ok(started) => started,
        Err(ReconcileError::NameConflict(conflict)) => {
            name_conflict(report, &world, &conflict, &mut decision);
            None
        }
        Err(e) => return Err(e),
    };
    editor::carry_out(report, &world, &mut decision, ctx).await?;
    let status_written = write_status(report, &decision, ctx).await?;
    publish_events(report, &decision, ctx).await;
    if decision
        .events
        .iter()
        .any(|e| event_reasons::RUN_ENDED.contains(&e.reason))
    {
        ctx.run_ended(&namespace(report)).await;
    }
    count(report, &decision, ctx);
    record_next_slot(report, &decision, ctx).await;
    Ok(Reconciled {
        started,
        pruned: decision.prune.clone(),
        status_written,
        events: decision.events.iter().map(|e| e.reason).collect(),
        wake_at: wake_at(&decision, world.now),
    })
}

fn report_key(report: &DailyReport) -> ReportKey {
    ReportKey {
        namespace: namespace(report),
        name: report.name_any(),
    }
}

/// Tells the run queue what this pass saw, and asks it for a turn when a run is due: `None`
/// when it may start (or none is due), else its place.
fn turn(report: &DailyReport, world: &World, decision: &Desired, ctx: &Context) -> Option<Waiting> {
    let key = report_key(report);
    let running = world.jobs.iter().any(|j| j.state == JobState::Active);
    ctx.runs.observe(&key, running, Instant::now());
    let start = decision.start.as_ref()?;
    let slot = match start.at {
        crate::plan::RunAt::Slot(t) => t,
        crate::plan::RunAt::Manual { now, .. } => now,
    };
    match ctx.runs.ask(&key, slot, Instant::now()) {
        Turn::Go => None,
        Turn::Wait {
            ahead,
            running,
            max,
        } => Some(Waiting {
            ahead,
            running,
            max,
        }),
    }
}

/// A report outside the served namespaces: its status says so, and nothing in its namespace
/// is read or written (the controller has no Role there).
async fn not_served(report: &DailyReport, ctx: &Context) -> Result<Reconciled, ReconcileError> {
    let now = ctx.clock.now();
    let status = super::desired::not_served(report, now);
    let status_written = report.status.as_ref() != Some(&status);
    if status_written {
        let api: Api<DailyReport> = Api::namespaced(ctx.client.clone(), &namespace(report));
        apply_status(&api, &report.name_any(), &status).await?;
    }
    Ok(Reconciled {
        status_written,
        wake_at: now + Duration::seconds(MAX_WAIT_SECONDS),
        ..Default::default()
    })
}

/// The writes the decision asks for: the run, the pruning (and, once, an old backup CronJob
/// removed).
async fn act(
    report: &DailyReport,
    world: &World,
    decision: &Desired,
    ctx: &Context,
) -> Result<Option<String>, ReconcileError> {
    remove_legacy_backup(report, ctx).await?;
    let started = match &decision.start {
        Some(start) => start_run(report, start, ctx, world.now).await?,
        None => None,
    };
    prune(report, &decision.prune, ctx).await?;
    Ok(started)
}

/// Somebody else's object under a name this report needs: nothing of it is used or touched,
/// the report says so (`Ready=False`, `NameConflict`) with one Warning Event, and the next
/// passes look again.
fn name_conflict(
    report: &DailyReport,
    world: &World,
    conflict: &NameConflict,
    decision: &mut Desired,
) {
    warn!(report = %report.name_any(), namespace = %conflict.namespace, kind = %conflict.kind, name = %conflict.name, "name conflict: left alone");
    let previous = report.status.clone().unwrap_or_default();
    if let Some(event) = super::desired::name_conflict(
        report,
        &previous,
        &conflict.to_string(),
        world.now,
        decision,
    ) {
        decision.events.push(event);
    }
}

fn namespace(report: &DailyReport) -> String {
    report.namespace().unwrap_or_else(|| "default".to_string())
}

fn wake_at(decision: &Desired, now: DateTime<Utc>) -> DateTime<Utc> {
    let latest = now + Duration::seconds(MAX_WAIT_SECONDS);
    decision.wake_at.map_or(latest, |w| w.min(latest))
}

/// The report's uid: what its objects' owner references name. A report read from the API
/// always has one; one without (never stored) owns nothing.
fn uid(report: &DailyReport) -> String {
    report.uid().unwrap_or_default()
}

/// The report's Jobs, its run records and its spec problems.
async fn observe(report: &DailyReport, ctx: &Context) -> Result<World, ReconcileError> {
    let now = ctx.clock.now();
    let ns = namespace(report);
    let (jobs, editor_jobs) = owned_jobs(report, ctx, &ns).await?;
    let records = run_records(report, ctx, &ns, &jobs, now).await?;
    let selected = Selected::of(report, ctx, &ns);
    let problems = problems(report, ctx, &ns, now, &selected).await?;
    let recipients = selected
        .recipients
        .iter()
        .filter(|r| r.spec().enabled)
        .count();
    Ok(World {
        now,
        jobs,
        records,
        problems,
        waiting: None,
        recipients,
        editor_jobs,
    })
}

async fn owned_jobs(
    report: &DailyReport,
    ctx: &Context,
    ns: &str,
) -> Result<(Vec<super::desired::ObservedJob>, Vec<EditorJob>), ReconcileError> {
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!("{}={}", labels::REPORT, report.name_any());
    let uid = report.uid();
    let list = api.list(&ListParams::default().labels(&selector)).await?;
    // A Job of another report of the same name (deleted and made again) is not ours.
    let ours: Vec<&Job> = list
        .items
        .iter()
        .filter(|j| {
            uid.is_none()
                || j.owner_references()
                    .iter()
                    .any(|o| Some(&o.uid) == uid.as_ref())
        })
        .collect();
    Ok((
        ours.iter().copied().filter_map(observed_job).collect(),
        ours.iter().copied().filter_map(editor_job).collect(),
    ))
}

async fn run_records(
    report: &DailyReport,
    ctx: &Context,
    ns: &str,
    jobs: &[super::desired::ObservedJob],
    now: DateTime<Utc>,
) -> Result<BTreeMap<NaiveDate, RunRecord>, ReconcileError> {
    let today = now.date_naive() - Duration::days(1);
    let since = jobs
        .iter()
        .map(|j| j.date)
        .min()
        .unwrap_or(today)
        .min(today);
    let rows = ctx.store.runs_of(ns, &report.name_any(), since).await?;
    Ok(rows.iter().map(|r| (r.date, RunRecord::from(r))).collect())
}

/// Errors of the shared validation: the spec, what the selectors select, and the Secrets a run
/// would read (their existence; the controller never reads their values).
/// What the report selects among its namespace's Sources and Recipients, found once a pass:
/// every check selects again within these, and the run queue's estimate counts them.
struct Selected {
    sources: Vec<Arc<CatalogEntry<Source>>>,
    recipients: Vec<Arc<CatalogEntry<Recipient>>>,
}

impl Selected {
    fn of(report: &DailyReport, ctx: &Context, ns: &str) -> Self {
        Self {
            sources: ctx
                .catalog
                .sources_of(ns)
                .into_iter()
                .filter(|s| selector::selects(report.spec.source_selector.as_ref(), s.as_ref()))
                .collect(),
            recipients: ctx
                .catalog
                .recipients_of(ns)
                .into_iter()
                .filter(|r| selector::selects(report.spec.recipient_selector.as_ref(), r.as_ref()))
                .collect(),
        }
    }
}

async fn problems(
    report: &DailyReport,
    ctx: &Context,
    ns: &str,
    now: DateTime<Utc>,
    selected: &Selected,
) -> Result<Vec<FieldProblem>, ReconcileError> {
    let Selected {
        sources,
        recipients,
    } = selected;
    let mut out: Vec<FieldProblem> = check_daily_report(&report.spec, now);
    out.extend(selection_problems(
        report,
        sources.iter().map(AsRef::as_ref),
        recipients.iter().map(AsRef::as_ref),
    ));
    out.extend(trust_problems(report, &ctx.settings, sources, recipients));
    out.retain(|p| p.severity == Severity::Error);
    if out.is_empty() {
        out.extend(missing_secrets(report, ctx, ns, sources, recipients).await?);
    }
    Ok(out)
}

/// What a tenant may not make a run do: read the operator's Secrets, or run an image the
/// operator did not allow.
fn trust_problems(
    report: &DailyReport,
    settings: &Settings,
    sources: &[Arc<CatalogEntry<Source>>],
    recipients: &[Arc<CatalogEntry<Recipient>>],
) -> Vec<FieldProblem> {
    let selected = sources
        .iter()
        .filter(|s| s.spec().enabled)
        .filter(|s| selector::selects(report.spec.source_selector.as_ref(), s.as_ref()))
        .map(|s| (s.name(), s.spec()));
    let chat_groups = recipients
        .iter()
        .filter(|r| r.spec().enabled)
        .filter(|r| selector::selects(report.spec.recipient_selector.as_ref(), r.as_ref()))
        .filter_map(|r| Some((r.name(), r.spec().chat.as_deref()?)));
    let mut out = reserved_secret_problems(
        &report.spec,
        selected,
        chat_groups,
        &settings.reserved_secrets(),
    );
    if let Some(image) = &report.spec.job.image {
        let allowed = settings.allowed_images();
        if !image_allowed(image, &allowed) {
            out.push(FieldProblem::error(
                "spec.job.image",
                image_policy::refusal(image, &allowed),
            ));
        }
    }
    out
}

async fn missing_secrets(
    report: &DailyReport,
    ctx: &Context,
    ns: &str,
    sources: &[Arc<CatalogEntry<Source>>],
    recipients: &[Arc<CatalogEntry<Recipient>>],
) -> Result<Vec<FieldProblem>, ReconcileError> {
    let mut names: BTreeSet<String> = referenced_secrets(
        report,
        sources.iter().map(AsRef::as_ref),
        recipients.iter().map(AsRef::as_ref),
    );
    names.insert(ctx.settings.database_url.name.clone());
    if let Some(k) = &ctx.settings.unsubscribe_key {
        names.insert(k.name.clone());
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let mut out = Vec::new();
    for name in names {
        if api.get_metadata_opt(&name).await?.is_none() {
            out.push(FieldProblem::error(
                format!("Secret {name}"),
                format!(
                    "does not exist in namespace {ns}; create it (kubectl create secret generic {name} -n {ns} --from-literal=…) before the next run"
                ),
            ));
        }
    }
    Ok(out)
}

/// Removes the per-report backup CronJob earlier versions made (it dumped the whole shared
/// database into the report's namespace), once per report and controller process, and only
/// when this report owns it.
async fn remove_legacy_backup(report: &DailyReport, ctx: &Context) -> Result<(), ReconcileError> {
    let owner = uid(report);
    if !ctx.first_look(&owner) {
        return Ok(());
    }
    let ns = namespace(report);
    let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
    let name = legacy_backup_name(report);
    match delete_owned(&api, &ns, &name, &owner).await {
        Ok(true) => {
            let note = format!(
                "removed the backup CronJob {name}: the database is backed up by the operator, in its own namespace"
            );
            info!(report = %report.name_any(), namespace = %ns, cron_job = %name, "legacy backup removed");
            publish(report, ctx, false, "LegacyBackupRemoved", note).await;
            Ok(())
        }
        Ok(false) => Ok(()),
        // Somebody else's CronJob of that name: not ours to touch, and no reason to stop.
        Err(cluster::OwnedWriteError::Conflict(_)) => Ok(()),
        Err(e) => {
            ctx.forget_look(&owner);
            Err(e.into())
        }
    }
}

/// Builds the run's plan with the library function every mode uses, stores it in a ConfigMap
/// and creates the Job. Both names are the run's: whoever creates them first wins and the
/// others find them (a second controller, a retry after a lost status write).
async fn start_run(
    report: &DailyReport,
    start: &StartRun,
    ctx: &Context,
    now: DateTime<Utc>,
) -> Result<Option<String>, ReconcileError> {
    let ns = namespace(report);
    let blacklist = ctx.store.blacklisted_emails(&ns).await?;
    // The namespace's resources are held only while the plan is built.
    let plan = plan_for(
        &resource_set(report, ctx),
        &ns,
        &report.name_any(),
        start.at,
        &blacklist,
    )?;
    if create_plan_and_job(report, &start.name, &plan, ctx, start.window_end, now).await? {
        info!(report = %report.name_any(), namespace = %ns, job = %start.name, recipients = plan.recipients.len(), "run started");
    }
    Ok(Some(start.name.clone()))
}

/// The report and the Sources and Recipients of its namespace, as plans are built from them.
pub(super) fn resource_set(report: &DailyReport, ctx: &Context) -> ResourceSet {
    let ns = namespace(report);
    ResourceSet {
        sources: ctx
            .catalog
            .sources_of(&ns)
            .iter()
            .map(|s| s.to_object())
            .collect(),
        recipients: ctx
            .catalog
            .recipients_of(&ns)
            .iter()
            .map(|r| r.to_object())
            .collect(),
        reports: vec![report.clone()],
    }
}

/// Stores `plan` in its ConfigMap and creates its Job, both under `name` and owned by the
/// report (a run's, a preview's or a test send's); true when this call created the Job.
/// The Job's deadline counts from `window_end`.
pub(super) async fn create_plan_and_job(
    report: &DailyReport,
    name: &str,
    plan: &RunPlan,
    ctx: &Context,
    window_end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, ReconcileError> {
    let ns = namespace(report);
    plan.validate()?;
    let gz = plan.to_gzip()?;
    if gz.len() > MAX_PLAN_BYTES {
        return Err(ReconcileError::PlanTooLarge {
            run: name.to_string(),
            bytes: gz.len(),
            max: MAX_PLAN_BYTES,
        });
    }
    // A plan somebody else put under the run's name is never used: the Job would mount it.
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    create_owned(
        &config_maps,
        &plan_config_map(report, name, plan, gz),
        &uid(report),
    )
    .await?;
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let job = run_job(report, name, plan, &ctx.settings, window_end, now);
    let created = create_owned(&jobs, &job, &uid(report)).await?;
    if created {
        ctx.metrics.job_created();
    }
    Ok(created)
}

/// Deletes finished runs beyond the history: the Job (its pods with it) and its plan.
async fn prune(
    report: &DailyReport,
    names: &[String],
    ctx: &Context,
) -> Result<(), ReconcileError> {
    let ns = namespace(report);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let owner = uid(report);
    for name in names {
        delete_owned(&jobs, &ns, name, &owner).await?;
        // A stranger's ConfigMap of the run's name is not ours to delete, nor a reason to
        // stop pruning.
        if let Err(e) = delete_owned(&config_maps, &ns, name, &owner).await {
            match ReconcileError::from(e) {
                ReconcileError::NameConflict(c) => warn!(error = %c, "not pruned"),
                e => return Err(e),
            }
        }
    }
    Ok(())
}

/// Writes the status when it differs from the one observed; true when it wrote.
async fn write_status(
    report: &DailyReport,
    decision: &Desired,
    ctx: &Context,
) -> Result<bool, ReconcileError> {
    if report.status.as_ref() == Some(&decision.status) {
        return Ok(false);
    }
    let api: Api<DailyReport> = Api::namespaced(ctx.client.clone(), &namespace(report));
    apply_status(&api, &report.name_any(), &decision.status).await?;
    Ok(true)
}

async fn publish_events(report: &DailyReport, decision: &Desired, ctx: &Context) {
    for e in &decision.events {
        publish(report, ctx, e.warning, e.reason, e.message.clone()).await;
    }
}

/// Records an Event; a failure to record one is logged, never fatal (the status says it too).
async fn publish(report: &DailyReport, ctx: &Context, warning: bool, reason: &str, note: String) {
    let event = KubeEvent {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_string(),
        note: Some(crate::untrusted::clean(&note, 1000)),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &report.object_ref(&())).await {
        warn!(report = %report.name_any(), reason, error = %e, "could not record an Event");
    }
}

/// The next slot, for the console (which never asks the Kubernetes API).
async fn record_next_slot(report: &DailyReport, decision: &Desired, ctx: &Context) {
    let next = decision
        .status
        .next_schedule_time
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.to_utc());
    let (ns, name) = (namespace(report), report.name_any());
    ctx.metrics.next_slot(&ns, &name, next);
    if let Err(e) = ctx.store.record_next_slot(&ns, &name, next).await {
        warn!(report = %name, namespace = %ns, error = %e, "could not record the next slot");
    }
}

fn count(report: &DailyReport, decision: &Desired, ctx: &Context) {
    let namespace = report.namespace().unwrap_or_default();
    let name = report.name_any();
    ctx.metrics
        .slots_missed(u64::try_from(decision.missed.total).unwrap_or(0));
    for e in &decision.events {
        let phase = match e.reason {
            event_reasons::RUN_SUCCEEDED => RunPhase::Succeeded,
            event_reasons::RUN_PARTIALLY_DELIVERED => RunPhase::PartiallyDelivered,
            event_reasons::RUN_FAILED => RunPhase::Failed,
            event_reasons::RUN_MISSED => RunPhase::Missed,
            _ => continue,
        };
        ctx.metrics.report_run_ended(&namespace, &name, phase);
        if let Some(run) = &decision.status.last_run {
            ctx.metrics.report_deliveries(
                &namespace,
                &name,
                &[
                    (DeliveryStatus::Sent, i64::from(run.delivered)),
                    (DeliveryStatus::Failed, i64::from(run.failed)),
                    (DeliveryStatus::Deferred, i64::from(run.deferred)),
                ],
            );
        }
    }
}
