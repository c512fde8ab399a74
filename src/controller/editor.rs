//! An editor's requests of a DailyReport, carried out beside its runs: a preview
//! (`finrep.io/preview`) and a test copy (`finrep.io/test-send`). Each runs in a Job of its
//! own, labelled with its purpose so that nothing of the runs' logic (the slot, `lastRun`,
//! history, the run queue) ever counts it. One request of each kind at a time per report, and
//! none while the report's own run is due or going: they wait for it, and say so.
//!
//! `next_step` decides from what was observed (pure); the rest observes and applies: the
//! request's plan and Job, and — once the Job is done — its stored result in the status, and
//! a preview's copy in a ConfigMap the report owns, so that `kubectl finrep` reads it with no
//! database credential.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::{Resource, ResourceExt};

use super::cluster::{delete_owned, replace_owned};
use super::context::Context;
use super::desired::{Desired, Event, World, event_reasons};
use super::error::ReconcileError;
use super::objects::purposes;
use super::observed::EditorJob;
use super::report_reconciler::{create_plan_and_job, resource_set};
use super::run_queue::{ReportKey, Turn};
use super::status::JobState;
use crate::api::{
    DailyReport, PreviewPhase, PreviewStatus, SourceFailure, TestSendPhase, TestSendStatus,
};
use crate::run::{PreviewState, TestSendState};
use crate::store::PreviewRow;
use finrep_core::editor::{
    PreviewRequest, TestSendRequest, preview_config_map_name, preview_job_name, preview_plan,
    test_send_job_name, test_send_plan,
};

/// The most a preview's ConfigMap holds (the API server takes about 1 MiB per object).
pub const MAX_PREVIEW_BYTES: usize = 900 * 1024;
/// Finished preview and test-send Jobs kept per report, each kind (for `kubectl finrep logs`).
const KEPT_FINISHED: usize = 1;
/// Sources failing listed in a preview's status.
const MAX_FAILING_LISTED: usize = 20;

/// Where the request a status answers stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Waiting,
    Running,
    Final,
}

/// What to do about a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    Unchanged,
    /// It cannot start yet, for this reason.
    Wait(String),
    Start,
    /// Its Job is done: read what it stored.
    Finished(EditorJob),
    /// Its Job is gone before it was done.
    Lost,
    /// It cannot be carried out, for this reason.
    Refuse(String),
}

/// The next step of request `value` (`parsed`: whether its annotations make sense), given what
/// the status last said of a request (`previous`), the request's Job, and why it may have to
/// wait (`busy`).
pub fn next_step(
    previous: Option<(&str, Stage)>,
    value: &str,
    parsed: Result<(), &str>,
    job: Option<&EditorJob>,
    busy: Option<&str>,
) -> Step {
    let same = previous.filter(|(v, _)| *v == value).map(|(_, s)| s);
    if let Err(why) = parsed {
        return match same {
            Some(Stage::Final) => Step::Unchanged,
            _ => Step::Refuse(why.to_string()),
        };
    }
    match (same, job) {
        (Some(Stage::Final), _) => Step::Unchanged,
        (Some(Stage::Running), Some(j)) if j.state == JobState::Active => Step::Unchanged,
        (Some(Stage::Running), Some(j)) => Step::Finished(j.clone()),
        (Some(Stage::Running), None) => Step::Lost,
        _ => match busy {
            Some(why) => Step::Wait(why.to_string()),
            None => Step::Start,
        },
    }
}

/// Why neither kind of request may start now, if so: the report's run is due or going.
fn run_busy(decision: &Desired) -> Option<String> {
    if let Some(start) = &decision.start {
        return Some(format!(
            "the run of {} starts now; this waits for it to finish",
            start.date
        ));
    }
    if let Some(date) = decision.queued {
        return Some(format!(
            "the run of {date} is due and waits for a place; this waits for it to finish"
        ));
    }
    decision
        .status
        .active_run
        .as_ref()
        .map(|job| format!("the report's run ({job}) is in progress; this waits for it to finish"))
}

fn preview_stage(p: &PreviewStatus) -> Stage {
    match p.phase {
        PreviewPhase::Waiting => Stage::Waiting,
        PreviewPhase::Running => Stage::Running,
        _ => Stage::Final,
    }
}

fn test_send_stage(t: &TestSendStatus) -> Stage {
    match t.phase {
        TestSendPhase::Waiting => Stage::Waiting,
        TestSendPhase::Sending => Stage::Running,
        _ => Stage::Final,
    }
}

fn job_for<'a>(jobs: &'a [EditorJob], purpose: &str, request: &str) -> Option<&'a EditorJob> {
    jobs.iter()
        .filter(|j| j.purpose == purpose && j.request == request)
        .max_by_key(|j| j.created)
}

fn event(warning: bool, reason: &'static str, message: String) -> Event {
    Event {
        warning,
        reason,
        message,
    }
}

/// Carries out the report's preview and test-send requests: their status and Events go into
/// `decision`, their Jobs and the preview's ConfigMap are written here.
pub async fn carry_out(
    report: &DailyReport,
    world: &World,
    decision: &mut Desired,
    ctx: &Context,
) -> Result<(), ReconcileError> {
    let busy = run_busy(decision);
    preview(report, world, busy.as_deref(), decision, ctx).await?;
    let preview_going = decision
        .status
        .preview
        .as_ref()
        .filter(|p| !p.phase.is_final())
        .map(|p| {
            format!(
                "the preview {} is not done yet; the test copy waits for it",
                p.request
            )
        });
    test_send(
        report,
        world,
        busy.or(preview_going).as_deref(),
        decision,
        ctx,
    )
    .await?;
    prune(report, world, decision, ctx).await
}

async fn preview(
    report: &DailyReport,
    world: &World,
    busy: Option<&str>,
    decision: &mut Desired,
    ctx: &Context,
) -> Result<(), ReconcileError> {
    let Some(value) = report.annotations().get(crate::api::annotations::PREVIEW) else {
        return Ok(());
    };
    let value = value.trim().to_string();
    let parsed = match PreviewRequest::of(report.annotations()) {
        _ if !world.problems.is_empty() => Err(invalid_report(world)),
        Some(parsed) => parsed,
        None => return Ok(()),
    };
    let previous = decision.status.preview.clone();
    let previous_stage = previous
        .as_ref()
        .map(|p| (p.request.as_str(), preview_stage(p)));
    let job = job_for(&world.editor_jobs, purposes::PREVIEW, &value);
    let other_going = world.editor_jobs.iter().any(|j| {
        j.purpose == purposes::PREVIEW && j.request != value && j.state == JobState::Active
    });
    let busy = busy.map(str::to_string).or(other_going.then(|| {
        "an earlier preview of this report is still running; this one waits for it".to_string()
    }));
    let step = next_step(
        previous_stage,
        &value,
        parsed.as_ref().map(|_| ()).map_err(String::as_str),
        job,
        busy.as_deref(),
    );
    let step = queue_turn(report, world, step, decision, ctx);
    let base = || PreviewStatus {
        request: value.clone(),
        ..PreviewStatus::default()
    };
    let status = match step {
        Step::Unchanged => return Ok(()),
        Step::Wait(why) => PreviewStatus {
            phase: PreviewPhase::Waiting,
            message: Some(why),
            ..previous.filter(|p| p.request == value).unwrap_or_else(base)
        },
        Step::Refuse(why) => refused_preview(base(), why, decision),
        Step::Start => match parsed {
            Ok(request) => {
                let started = start_preview(report, &request, world.now, ctx, decision).await;
                match &started {
                    Ok(s) if s.phase == PreviewPhase::Running => {
                        ctx.runs.started(&preview_key(report), Instant::now())
                    }
                    _ => ctx.runs.withdraw(&preview_key(report)),
                }
                started?
            }
            Err(why) => refused_preview(base(), why, decision),
        },
        Step::Finished(job) => {
            finished_preview(report, previous.unwrap_or_else(base), &job, world.now, ctx, decision)
                .await?
        }
        Step::Lost => failed_preview(
            previous.unwrap_or_else(base),
            "the preview's Job was deleted before it finished; set finrep.io/preview to a new value to preview again".to_string(),
            world.now,
            decision,
        ),
    };
    decision.status.preview = Some(status);
    Ok(())
}

/// Why nothing is carried out for a report that is not valid.
fn invalid_report(world: &World) -> String {
    format!(
        "the report is not valid: {}",
        super::status::problems_message(&world.problems)
    )
}

/// A report's previews in the run queue: a preview Job takes a place among the run Jobs the
/// node runs at once, like a run (`/` cannot be in a report's name, so it is nobody else's).
fn preview_key(report: &DailyReport) -> ReportKey {
    ReportKey {
        namespace: report.namespace().unwrap_or_else(|| "default".to_string()),
        name: format!("{}/preview", report.name_any()),
    }
}

/// A preview about to start asks the run queue for a place; told to wait, it says why and
/// asks again soon.
fn queue_turn(
    report: &DailyReport,
    world: &World,
    step: Step,
    decision: &mut Desired,
    ctx: &Context,
) -> Step {
    let key = preview_key(report);
    let going = world
        .editor_jobs
        .iter()
        .any(|j| j.purpose == purposes::PREVIEW && j.state == JobState::Active);
    ctx.runs.observe(&key, going, Instant::now());
    if step != Step::Start {
        return step;
    }
    match ctx.runs.ask(&key, world.now, Instant::now()) {
        Turn::Go => Step::Start,
        Turn::Wait {
            ahead,
            running,
            max,
        } => {
            let again = world.now + chrono::Duration::seconds(super::desired::WAIT_POLL_SECONDS);
            decision.wake_at = Some(decision.wake_at.map_or(again, |w| w.min(again)));
            Step::Wait(format!(
                "waiting for a place to run: {running} of {max} run Jobs are running on this node and {ahead} go first (the controller's --max-concurrent-runs)"
            ))
        }
    }
}

fn refused_preview(base: PreviewStatus, why: String, decision: &mut Desired) -> PreviewStatus {
    decision
        .events
        .push(event(true, event_reasons::PREVIEW_REFUSED, why.clone()));
    PreviewStatus {
        phase: PreviewPhase::Refused,
        message: Some(why),
        ..base
    }
}

fn failed_preview(
    previous: PreviewStatus,
    why: String,
    now: DateTime<Utc>,
    decision: &mut Desired,
) -> PreviewStatus {
    decision
        .events
        .push(event(true, event_reasons::PREVIEW_FAILED, why.clone()));
    PreviewStatus {
        phase: PreviewPhase::Failed,
        finished: Some(now.to_rfc3339()),
        message: Some(why),
        ..previous
    }
}

async fn start_preview(
    report: &DailyReport,
    request: &PreviewRequest,
    now: DateTime<Utc>,
    ctx: &Context,
    decision: &mut Desired,
) -> Result<PreviewStatus, ReconcileError> {
    let ns = report.namespace().unwrap_or_else(|| "default".to_string());
    let base = PreviewStatus {
        request: request.value.clone(),
        recipient: request.recipient.clone(),
        ..PreviewStatus::default()
    };
    let blacklist = ctx.store.blacklisted_emails(&ns).await?;
    let set = resource_set(report, ctx);
    let plan = match preview_plan(&set, &ns, &report.name_any(), request, now, &blacklist) {
        Ok(plan) => plan,
        Err(e) => return Ok(refused_preview(base, e.to_string(), decision)),
    };
    let name = preview_job_name(&report.name_any(), &request.value);
    // Somebody else's object under the Job's or plan's name: the preview says so; the
    // report's runs and status go on.
    // Its deadline: two hours from now (`run_job` adds them to the window's end).
    match create_plan_and_job(report, &name, &plan, ctx, now, now).await {
        Ok(_) => {}
        Err(ReconcileError::NameConflict(c)) => {
            return Ok(refused_preview(base, c.to_string(), decision));
        }
        Err(e) => return Err(e),
    }
    decision.events.push(event(
        false,
        event_reasons::PREVIEW_STARTED,
        format!(
            "composing the report of {} to preview it (Job {name}); nothing is sent",
            plan.slot.date
        ),
    ));
    Ok(PreviewStatus {
        phase: PreviewPhase::Running,
        date: Some(plan.slot.date.to_string()),
        job: Some(name),
        started: Some(now.to_rfc3339()),
        ..base
    })
}

async fn finished_preview(
    report: &DailyReport,
    previous: PreviewStatus,
    job: &EditorJob,
    now: DateTime<Utc>,
    ctx: &Context,
    decision: &mut Desired,
) -> Result<PreviewStatus, ReconcileError> {
    let ns = report.namespace().unwrap_or_else(|| "default".to_string());
    let row = ctx
        .store
        .preview_by_request(&ns, &report.name_any(), &previous.request)
        .await?;
    let row = match row {
        Some(row) if row.state == PreviewState::Ready => row,
        Some(row) if row.state == PreviewState::Failed => {
            let why = row
                .error
                .unwrap_or_else(|| "the preview failed".to_string());
            return Ok(failed_preview(previous, why, now, decision));
        }
        _ => {
            let why = job.failure.clone().map_or_else(
                || {
                    "the preview's Job ended without storing a preview; see kubectl finrep logs"
                        .to_string()
                },
                |f| format!("the preview's Job failed ({f}); see kubectl finrep logs"),
            );
            return Ok(failed_preview(previous, why, now, decision));
        }
    };
    let name = preview_config_map_name(&report.name_any());
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let owner = report.uid().unwrap_or_default();
    // Somebody else's ConfigMap of that name is never written over: the preview says so.
    let map = preview_config_map(report, &name, &row);
    match replace_owned(&config_maps, &map, &owner).await {
        Ok(()) => {}
        Err(super::cluster::OwnedWriteError::Conflict(c)) => {
            return Ok(failed_preview(previous, c.to_string(), now, decision));
        }
        Err(e) => return Err(e.into()),
    }
    let failing: Vec<SourceFailure> = row
        .sources_failing()
        .into_iter()
        .take(MAX_FAILING_LISTED)
        .map(|(source, error)| SourceFailure {
            source,
            error: crate::untrusted::clean(&error, 300),
        })
        .collect();
    decision.events.push(event(
        false,
        event_reasons::PREVIEW_READY,
        format!(
            "the preview of {} is ready: {} item(s), {} source(s) failing; ConfigMap {name}",
            row.date,
            row.articles,
            failing.len()
        ),
    ));
    Ok(PreviewStatus {
        phase: PreviewPhase::Ready,
        date: Some(row.date.to_string()),
        finished: row.finished_at.map(|t| t.to_rfc3339()),
        articles: u32::try_from(row.articles).unwrap_or(0),
        sources_failing: failing,
        config_map: Some(name),
        console_url: ctx
            .settings
            .public_url
            .as_deref()
            .map(|u| format!("{}/console/previews/{}", u.trim_end_matches('/'), row.id)),
        message: None,
        ..previous
    })
}

/// The preview's copy as a ConfigMap: `subject`, and `report.html` + `report.txt` or a chat
/// group's `message.md`; a body too large is gzipped into `binaryData` (`*.gz`), and one
/// too large even so is left out and named in `omitted`.
pub fn preview_config_map(report: &DailyReport, name: &str, row: &PreviewRow) -> ConfigMap {
    let mut data = BTreeMap::from([
        (
            "subject".to_string(),
            row.subject.clone().unwrap_or_default(),
        ),
        ("date".to_string(), row.date.to_string()),
        ("request".to_string(), row.request.clone()),
    ]);
    if let Some(r) = &row.recipient {
        data.insert("recipient".to_string(), r.clone());
    }
    let bodies: Vec<(&str, &str)> = match (&row.chat_message, &row.chat_platform) {
        (Some(m), Some(p)) => {
            data.insert("platform".to_string(), p.clone());
            vec![("message.md", m.as_str())]
        }
        _ => vec![
            ("report.txt", row.text.as_deref().unwrap_or_default()),
            ("report.html", row.html.as_deref().unwrap_or_default()),
        ],
    };
    let mut binary = BTreeMap::new();
    let mut omitted = Vec::new();
    let mut used: usize = data.values().map(String::len).sum();
    for (key, body) in bodies {
        if used + body.len() <= MAX_PREVIEW_BYTES {
            used += body.len();
            data.insert(key.to_string(), body.to_string());
            continue;
        }
        match gzip(body) {
            Some(gz) if used + gz.len() <= MAX_PREVIEW_BYTES => {
                used += gz.len();
                binary.insert(format!("{key}.gz"), ByteString(gz));
            }
            _ => omitted.push(key),
        }
    }
    if !omitted.is_empty() {
        data.insert("omitted".to_string(), omitted.join(","));
    }
    let mut labels = BTreeMap::from([
        (
            super::objects::labels::REPORT.to_string(),
            report.name_any(),
        ),
        (
            super::objects::labels::PURPOSE.to_string(),
            purposes::PREVIEW.to_string(),
        ),
    ]);
    labels.insert(
        super::objects::labels::MANAGED_BY.to_string(),
        "finrep".to_string(),
    );
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            namespace: report.namespace(),
            labels: Some(labels),
            owner_references: report.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        data: Some(data),
        binary_data: (!binary.is_empty()).then_some(binary),
        ..Default::default()
    }
}

fn gzip(text: &str) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(text.as_bytes()).ok()?;
    gz.finish().ok()
}

async fn test_send(
    report: &DailyReport,
    world: &World,
    busy: Option<&str>,
    decision: &mut Desired,
    ctx: &Context,
) -> Result<(), ReconcileError> {
    let Some(value) = report.annotations().get(crate::api::annotations::TEST_SEND) else {
        return Ok(());
    };
    let value = value.trim().to_string();
    let parsed = match world.problems.is_empty() {
        true => TestSendRequest::parse(&value),
        false => Err(invalid_report(world)),
    };
    let previous = decision.status.test_send.clone();
    let previous_stage = previous
        .as_ref()
        .map(|t| (t.request.as_str(), test_send_stage(t)));
    let job = job_for(&world.editor_jobs, purposes::TEST_SEND, &value);
    let step = next_step(
        previous_stage,
        &value,
        parsed.as_ref().map(|_| ()).map_err(String::as_str),
        job,
        busy,
    );
    let base = || TestSendStatus {
        request: value.clone(),
        recipient: parsed
            .as_ref()
            .map(|r| r.recipient.clone())
            .unwrap_or_default(),
        ..TestSendStatus::default()
    };
    let status = match step {
        Step::Unchanged => return Ok(()),
        Step::Wait(why) => TestSendStatus {
            phase: TestSendPhase::Waiting,
            message: Some(why),
            ..previous.filter(|t| t.request == value).unwrap_or_else(base)
        },
        Step::Refuse(why) => {
            ended_test_send(base(), TestSendPhase::Refused, why, world.now, decision)
        }
        Step::Start => match &parsed {
            Ok(request) => start_test_send(report, request, world.now, ctx, decision).await?,
            Err(why) => ended_test_send(
                base(),
                TestSendPhase::Refused,
                why.clone(),
                world.now,
                decision,
            ),
        },
        Step::Finished(job) => {
            finished_test_send(
                report,
                previous.unwrap_or_else(base),
                &job,
                world.now,
                ctx,
                decision,
            )
            .await?
        }
        Step::Lost => ended_test_send(
            previous.unwrap_or_else(base),
            TestSendPhase::Failed,
            "the test send's Job was deleted before it finished".to_string(),
            world.now,
            decision,
        ),
    };
    decision.status.test_send = Some(status);
    Ok(())
}

fn ended_test_send(
    previous: TestSendStatus,
    phase: TestSendPhase,
    message: String,
    now: DateTime<Utc>,
    decision: &mut Desired,
) -> TestSendStatus {
    let (warning, reason) = match phase {
        TestSendPhase::Sent => (false, event_reasons::TEST_SENT),
        TestSendPhase::Refused => (true, event_reasons::TEST_SEND_REFUSED),
        _ => (true, event_reasons::TEST_SEND_FAILED),
    };
    let note = format!("test copy to {}: {message}", previous.recipient);
    decision.events.push(event(warning, reason, note));
    TestSendStatus {
        phase,
        finished: Some(now.to_rfc3339()),
        message: Some(message),
        ..previous
    }
}

async fn start_test_send(
    report: &DailyReport,
    request: &TestSendRequest,
    now: DateTime<Utc>,
    ctx: &Context,
    decision: &mut Desired,
) -> Result<TestSendStatus, ReconcileError> {
    let ns = report.namespace().unwrap_or_else(|| "default".to_string());
    let base = TestSendStatus {
        request: request.value.clone(),
        recipient: request.recipient.clone(),
        ..TestSendStatus::default()
    };
    let blacklist = ctx.store.blacklisted_emails(&ns).await?;
    let set = resource_set(report, ctx);
    let plan = match test_send_plan(&set, &ns, &report.name_any(), request, now, &blacklist) {
        Ok(plan) => plan,
        Err(e) => {
            return Ok(ended_test_send(
                base,
                TestSendPhase::Refused,
                e.to_string(),
                now,
                decision,
            ));
        }
    };
    let name = test_send_job_name(&report.name_any(), &request.value);
    // Its deadline: two hours from now (`run_job` adds them to the window's end).
    match create_plan_and_job(report, &name, &plan, ctx, now, now).await {
        Ok(_) => {}
        Err(ReconcileError::NameConflict(c)) => {
            let why = c.to_string();
            return Ok(ended_test_send(
                base,
                TestSendPhase::Refused,
                why,
                now,
                decision,
            ));
        }
        Err(e) => return Err(e),
    }
    Ok(TestSendStatus {
        phase: TestSendPhase::Sending,
        job: Some(name),
        ..base
    })
}

async fn finished_test_send(
    report: &DailyReport,
    previous: TestSendStatus,
    job: &EditorJob,
    now: DateTime<Utc>,
    ctx: &Context,
    decision: &mut Desired,
) -> Result<TestSendStatus, ReconcileError> {
    let ns = report.namespace().unwrap_or_else(|| "default".to_string());
    let row = ctx
        .store
        .test_send_by_request(&ns, &report.name_any(), &previous.request)
        .await?;
    let Some(row) = row else {
        let why = job.failure.clone().map_or_else(
            || "the test send's Job ended without sending; see kubectl finrep logs".to_string(),
            |f| format!("the test send's Job failed ({f}); see kubectl finrep logs"),
        );
        // Nothing composed to send is said by the Job's output, not a row: read the plan's
        // refusal from the Job's failure or say it plainly.
        return Ok(ended_test_send(
            previous,
            TestSendPhase::Failed,
            why,
            now,
            decision,
        ));
    };
    let phase = match row.state {
        TestSendState::Sent => TestSendPhase::Sent,
        TestSendState::Refused => TestSendPhase::Refused,
        TestSendState::Uncertain => TestSendPhase::Uncertain,
        TestSendState::Failed => TestSendPhase::Failed,
        TestSendState::Sending => TestSendPhase::Uncertain,
    };
    let message = row.reply.clone().unwrap_or_default();
    let at = row.finished_at.unwrap_or(now);
    let status = TestSendStatus {
        copy_of: row.copy_of.map(|(of, date)| format!("{of} of {date}")),
        ..previous
    };
    Ok(ended_test_send(status, phase, message, at, decision))
}

/// Finished preview and test-send Jobs beyond the newest of each kind, with their plans.
async fn prune(
    report: &DailyReport,
    world: &World,
    decision: &Desired,
    ctx: &Context,
) -> Result<(), ReconcileError> {
    let current: Vec<&str> = [
        decision
            .status
            .preview
            .as_ref()
            .and_then(|p| p.job.as_deref()),
        decision
            .status
            .test_send
            .as_ref()
            .and_then(|t| t.job.as_deref()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let ns = report.namespace().unwrap_or_else(|| "default".to_string());
    let owner = report.uid().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    for purpose in [purposes::PREVIEW, purposes::TEST_SEND] {
        let mut finished: Vec<&EditorJob> = world
            .editor_jobs
            .iter()
            .filter(|j| j.purpose == purpose && j.state != JobState::Active)
            .filter(|j| !current.contains(&j.name.as_str()))
            .collect();
        finished.sort_by_key(|j| std::cmp::Reverse(j.created));
        let keep = KEPT_FINISHED.saturating_sub(usize::from(current.iter().any(|c| {
            world
                .editor_jobs
                .iter()
                .any(|j| j.name == *c && j.purpose == purpose)
        })));
        for j in finished.into_iter().skip(keep) {
            delete_owned(&jobs, &ns, &j.name, &owner).await?;
            // Somebody else's ConfigMap of that name is not ours to delete.
            let _ = delete_owned(&config_maps, &ns, &j.name, &owner).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(request: &str, state: JobState) -> EditorJob {
        EditorJob {
            name: format!("brief-preview-{request}"),
            purpose: purposes::PREVIEW.to_string(),
            request: request.to_string(),
            state,
            created: DateTime::default(),
            failure: None,
        }
    }

    #[test]
    fn a_new_request_starts_unless_the_run_goes() {
        assert_eq!(next_step(None, "a", Ok(()), None, None), Step::Start);
        assert_eq!(
            next_step(None, "a", Ok(()), None, Some("run")),
            Step::Wait("run".into())
        );
        // A request that waited starts once the run is done.
        assert_eq!(
            next_step(Some(("a", Stage::Waiting)), "a", Ok(()), None, None),
            Step::Start
        );
        // A finished request is never carried out twice; a new value is a new request.
        assert_eq!(
            next_step(Some(("a", Stage::Final)), "a", Ok(()), None, None),
            Step::Unchanged
        );
        assert_eq!(
            next_step(Some(("a", Stage::Final)), "b", Ok(()), None, None),
            Step::Start
        );
    }

    #[test]
    fn a_running_request_follows_its_job() {
        let active = job("a", JobState::Active);
        let done = job("a", JobState::Succeeded);
        let running = Some(("a", Stage::Running));
        assert_eq!(
            next_step(running, "a", Ok(()), Some(&active), None),
            Step::Unchanged
        );
        assert_eq!(
            next_step(running, "a", Ok(()), Some(&done), Some("run")),
            Step::Finished(done.clone())
        );
        assert_eq!(next_step(running, "a", Ok(()), None, None), Step::Lost);
    }

    #[test]
    fn a_request_that_makes_no_sense_is_refused_once() {
        assert_eq!(
            next_step(None, "a", Err("why"), None, None),
            Step::Refuse("why".into())
        );
        assert_eq!(
            next_step(Some(("a", Stage::Final)), "a", Err("why"), None, None),
            Step::Unchanged
        );
    }
}
