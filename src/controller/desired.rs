//! The reconcile decision for one DailyReport, as a pure function of what was observed: which
//! run to start (the due slot, or a manual run asked for with `finrep.io/run-now`), which
//! slots were missed, which finished Jobs to delete, the status to write, the Events to
//! record and when to look again. The reconciler observes, calls `desired`, applies.
//!
//! Rules it keeps: one run per slot (names are deterministic), never two runs of a report at
//! once, a manual run once per annotation value, no run for an invalid report, nothing
//! started while suspended (an active run finishes), and a status that does not change when
//! nothing did (no write, no loop).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use kube::ResourceExt;

use super::history::{self, FinishedJob};
use super::status::{self, JobState, ObservedRun, RunRecord, problems_message, reasons};
use crate::api::{DailyReport, DailyReportStatus, RunSummary, annotations, conditions};
use crate::plan::RunAt;
use crate::run::{RunPhase, run_name};
use crate::schedule::{Missed, Schedule, SlotDecision, SlotState, decide};
use crate::validation::FieldProblem;
use crate::window::report_window_end as window_end;

/// How often a report with a run in progress is looked at again (its record in PostgreSQL
/// moves through phases no watch reports).
pub const ACTIVE_POLL_SECONDS: i64 = 30;

/// A run Job the report owns, as observed.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedJob {
    pub name: String,
    pub date: NaiveDate,
    /// The slot it was started for (scheduled runs).
    pub scheduled_for: Option<DateTime<Utc>>,
    pub manual: bool,
    pub state: JobState,
    pub created: DateTime<Utc>,
}

/// What the reconciler observed for one report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct World {
    pub now: DateTime<Utc>,
    pub jobs: Vec<ObservedJob>,
    /// The report's run records in PostgreSQL, by local date.
    pub records: BTreeMap<NaiveDate, RunRecord>,
    /// Errors of the shared validation (spec, and references such as Secrets).
    pub problems: Vec<FieldProblem>,
    /// The node runs as many run Jobs as it may: a due run waits its turn.
    pub waiting: Option<Waiting>,
    /// Recipients the report selects (enabled): how long its delivery takes.
    pub recipients: usize,
    /// The report's preview and test-send Jobs (never runs).
    pub editor_jobs: Vec<super::observed::EditorJob>,
}

/// A due run's place in the queue of run Jobs (`run_queue`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// Reports whose runs start before this one.
    pub ahead: usize,
    /// Run Jobs running now.
    pub running: usize,
    /// The most at once.
    pub max: usize,
}

/// A run to start.
#[derive(Clone, Debug, PartialEq)]
pub struct StartRun {
    /// The Job's and plan ConfigMap's name.
    pub name: String,
    /// The run's local date in the report's zone.
    pub date: NaiveDate,
    pub at: RunAt,
    /// The mail window's end of the run's date (the Job's deadline counts from it).
    pub window_end: DateTime<Utc>,
}

/// An Event to record on the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Event reasons, named once.
pub mod event_reasons {
    pub const RUN_STARTED: &str = "RunStarted";
    pub const RUN_SUCCEEDED: &str = "RunSucceeded";
    pub const RUN_PARTIALLY_DELIVERED: &str = "RunPartiallyDelivered";
    pub const RUN_FAILED: &str = "RunFailed";
    pub const RUN_MISSED: &str = "RunMissed";
    /// The Events of a run that reached its end.
    pub const RUN_ENDED: [&str; 3] = [RUN_SUCCEEDED, RUN_PARTIALLY_DELIVERED, RUN_FAILED];
    pub const RUN_QUEUED: &str = "RunQueued";
    pub const RUN_MAY_MISS_WINDOW: &str = "RunMayMissWindow";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const NAME_CONFLICT: &str = "NameConflict";
    pub const NAMESPACE_NOT_SERVED: &str = "NamespaceNotServed";
    pub const PREVIEW_STARTED: &str = "PreviewStarted";
    pub const PREVIEW_READY: &str = "PreviewReady";
    pub const PREVIEW_FAILED: &str = "PreviewFailed";
    pub const PREVIEW_REFUSED: &str = "PreviewRefused";
    pub const TEST_SENT: &str = "TestSent";
    pub const TEST_SEND_FAILED: &str = "TestSendFailed";
    pub const TEST_SEND_REFUSED: &str = "TestSendRefused";
}

/// What the reconciler should make true.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub start: Option<StartRun>,
    pub missed: Missed,
    pub prune: Vec<String>,
    pub status: DailyReportStatus,
    pub events: Vec<Event>,
    /// When to reconcile again without a change (`None`: only on changes).
    pub wake_at: Option<DateTime<Utc>>,
    /// The local date of a due run that waits for its turn.
    pub queued: Option<NaiveDate>,
}

/// The decision for `report` in `world`.
pub fn desired(report: &DailyReport, world: &World) -> Desired {
    let previous = report.status.clone().unwrap_or_default();
    let mut out = Desired {
        start: None,
        missed: Missed::default(),
        prune: prune(report, world),
        status: previous.clone(),
        events: Vec::new(),
        wake_at: None,
        queued: None,
    };
    out.status.observed_generation = report.metadata.generation;
    // Said again by this pass if the report still waits for its turn.
    out.status.waiting = None;
    out.status.active_run = world
        .jobs
        .iter()
        .find(|j| j.state == JobState::Active)
        .map(|j| j.name.clone());
    if let Some(problems) = invalid(world, &previous, &mut out) {
        out.events.extend(problems);
    } else {
        schedule(report, world, &previous, &mut out);
    }
    out.status.last_run = last_run(world, out.start.as_ref()).or(previous.last_run.clone());
    missed_run(&out.missed, &mut out.status);
    queued_run(out.queued, &mut out.status);
    run_events(&previous, &out.status, &mut out.events);
    conditions_for(report, world, &previous, &mut out.status);
    out
}

/// A report with spec problems starts nothing; the Warning Event is recorded when the
/// problems change, not on every pass.
fn invalid(world: &World, previous: &DailyReportStatus, out: &mut Desired) -> Option<Vec<Event>> {
    if world.problems.is_empty() {
        return None;
    }
    let message = problems_message(&world.problems);
    let already = previous
        .conditions
        .iter()
        .any(|c| c.type_ == conditions::READY && c.status == "False" && c.message == message);
    out.status.next_schedule_time = None;
    Some(if already {
        Vec::new()
    } else {
        vec![Event {
            warning: true,
            reason: event_reasons::INVALID_SPEC,
            message,
        }]
    })
}

/// The scheduling part: suspend, the due slot, missed slots, a manual run.
fn schedule(report: &DailyReport, world: &World, previous: &DailyReportStatus, out: &mut Desired) {
    let spec = &report.spec;
    let Ok(schedule) = Schedule::parse(&spec.schedule, &spec.time_zone) else {
        return;
    };
    if spec.suspend {
        // Resuming starts counting slots afresh.
        out.status.active_since = None;
        out.status.next_schedule_time = None;
        return;
    }
    let active_since = previous
        .active_since
        .as_deref()
        .and_then(parse_time)
        .unwrap_or(world.now);
    out.status.active_since = Some(rfc3339(active_since));
    let state = SlotState {
        now: world.now,
        active_since,
        last_handled: last_handled(previous, world),
        suspended: false,
        starting_deadline: chrono::Duration::seconds(i64::from(spec.starting_deadline_seconds)),
    };
    let window_end = |slot: &DateTime<chrono_tz::Tz>| window_end(report, slot.date_naive());
    let decision = decide(&schedule, &state, window_end);
    let busy = out.status.active_run.is_some();
    match decision {
        SlotDecision::Start { slot, missed } if !busy && world.waiting.is_some() => {
            record_missed(&missed, out);
            wait_turn(report, slot.date_naive(), world, previous, out);
        }
        SlotDecision::Start { slot, missed } if !busy => {
            let date = slot.date_naive();
            out.start = window_end(&slot).map(|end| StartRun {
                name: run_name(&report.name_any(), date, None),
                date,
                at: RunAt::Slot(slot.to_utc()),
                window_end: end,
            });
            out.status.last_schedule_time = Some(slot.fixed_offset().to_rfc3339());
            record_missed(&missed, out);
        }
        SlotDecision::Skip { missed, .. } => {
            if let Some(latest) = missed.listed.last() {
                out.status.last_schedule_time = Some(latest.fixed_offset().to_rfc3339());
            }
            record_missed(&missed, out);
        }
        SlotDecision::Start { .. } | SlotDecision::Wait { .. } | SlotDecision::Suspended => {}
    }
    if out.start.is_none() && out.queued.is_none() && !busy {
        manual_run(report, world, previous, out);
    }
    let next = schedule.next_after(world.now);
    out.status.next_schedule_time = next.map(|n| n.fixed_offset().to_rfc3339());
    let poll = (busy || out.start.is_some())
        .then(|| world.now + chrono::Duration::seconds(ACTIVE_POLL_SECONDS));
    let turn = out
        .queued
        .map(|_| world.now + chrono::Duration::seconds(WAIT_POLL_SECONDS));
    out.wake_at = [next.map(|n| n.to_utc()), poll, turn]
        .into_iter()
        .flatten()
        .min();
}

/// How often a run waiting for its turn asks again.
pub const WAIT_POLL_SECONDS: i64 = 3;

/// The run of `date` is due but waits for a place: the status says so (and `lastRun` is that
/// date's, `Queued`); one Event when it starts waiting. The slot stays unhandled, so the next
/// pass starts it — or, past its starting deadline, records it missed.
fn wait_turn(
    report: &DailyReport,
    date: NaiveDate,
    world: &World,
    previous: &DailyReportStatus,
    out: &mut Desired,
) {
    let Some(w) = world.waiting else {
        return;
    };
    let message = format!(
        "waiting for a place to run: {} of {} run Jobs are running on this node and {} report(s) go first (the controller's --max-concurrent-runs)",
        w.running, w.max, w.ahead
    );
    if previous.waiting.is_none() {
        out.events.push(Event {
            warning: false,
            reason: event_reasons::RUN_QUEUED,
            message: format!("the run of {date} {message}"),
        });
        out.events.extend(late_warning(report, date, world, w));
    }
    out.status.waiting = Some(message);
    out.queued = Some(date);
}

/// A Warning when the queue ahead of a run cannot be through inside its window: the runs
/// ahead are taken to be the size of this one (its recipients at its `maxPerMinute`), on
/// `max` places from when the window opens (or now, if later).
fn late_warning(report: &DailyReport, date: NaiveDate, world: &World, w: Waiting) -> Option<Event> {
    let tz = crate::schedule::parse_time_zone(&report.spec.time_zone).ok()?;
    let window = crate::window::Window::for_date(&report.spec.mail_window, tz, date).ok()?;
    let per_minute = report
        .spec
        .smtp
        .as_ref()
        .map_or(u32::MAX, |s| s.max_per_minute)
        .max(1);
    let finish = expected_finish(&window, world.now, w, world.recipients, per_minute);
    (finish > window.end).then(|| Event {
        warning: true,
        reason: event_reasons::RUN_MAY_MISS_WINDOW,
        message: format!(
            "the run of {date} waits behind {} run(s) on {} place(s); at {per_minute} messages a minute for {} recipients each it would finish about {}, after the mail window ends at {}: raise the controller's --max-concurrent-runs or spec.smtp.maxPerMinute, or move the schedule",
            w.running + w.ahead,
            w.max,
            world.recipients,
            finish.with_timezone(&tz).format("%H:%M"),
            window.end.with_timezone(&tz).format("%H:%M"),
        ),
    })
}

/// When a run waiting behind `w` would finish: rounds of `max` runs of `recipients` at
/// `per_minute` each, from the window's opening (or `now`, if later).
pub fn expected_finish(
    window: &crate::window::Window,
    now: DateTime<Utc>,
    w: Waiting,
    recipients: usize,
    per_minute: u32,
) -> DateTime<Utc> {
    let run_seconds = (recipients as f64 * 60.0 / f64::from(per_minute.max(1))).ceil() as i64;
    let rounds = ((w.running + w.ahead) / w.max.max(1)) as i64 + 1;
    window.start.max(now) + chrono::Duration::seconds(run_seconds.saturating_mul(rounds))
}

/// A run waiting for its turn is the last run, in phase `Queued`.
fn queued_run(queued: Option<NaiveDate>, status: &mut DailyReportStatus) {
    let Some(date) = queued else {
        return;
    };
    status.last_run = Some(RunSummary {
        date: date.to_string(),
        phase: RunPhase::Queued,
        ..RunSummary::default()
    });
}

/// The latest slot already handled: from status, or from the Jobs (a status lost or stale
/// never makes a slot due twice).
fn last_handled(previous: &DailyReportStatus, world: &World) -> Option<DateTime<Utc>> {
    let from_status = previous.last_schedule_time.as_deref().and_then(parse_time);
    let from_jobs = world
        .jobs
        .iter()
        .filter(|j| !j.manual)
        .filter_map(|j| j.scheduled_for)
        .max();
    from_status.max(from_jobs)
}

fn record_missed(missed: &Missed, out: &mut Desired) {
    if missed.total == 0 {
        return;
    }
    let listed: Vec<String> = missed
        .listed
        .iter()
        .map(|s| s.fixed_offset().to_rfc3339())
        .collect();
    out.events.push(Event {
        warning: true,
        reason: event_reasons::RUN_MISSED,
        message: format!(
            "{} slot(s) passed without a run (beyond startingDeadlineSeconds or the mail window): {}",
            missed.total,
            listed.join(", ")
        ),
    });
    out.missed = missed.clone();
}

/// A new `finrep.io/run-now` value starts one manual run: today's run of the report (or
/// waits for its turn, like a slot).
fn manual_run(
    report: &DailyReport,
    world: &World,
    previous: &DailyReportStatus,
    out: &mut Desired,
) {
    let Some(value) = report.annotations().get(annotations::RUN_NOW) else {
        return;
    };
    if out.status.handled_run_now.as_deref() == Some(value.as_str()) {
        return;
    }
    let Ok(date) = crate::plan::local_date(report, world.now) else {
        return;
    };
    let Some(end) = window_end(report, date) else {
        return;
    };
    if world.waiting.is_some() {
        return wait_turn(report, date, world, previous, out);
    }
    out.start = Some(StartRun {
        name: run_name(&report.name_any(), date, Some(value)),
        date,
        at: RunAt::Manual {
            date: Some(date),
            now: world.now,
        },
        window_end: end.max(world.now),
    });
    out.status.handled_run_now = Some(value.clone());
}

/// Finished Jobs beyond the report's history.
fn prune(report: &DailyReport, world: &World) -> Vec<String> {
    let finished: Vec<FinishedJob> = world
        .jobs
        .iter()
        .map(|j| FinishedJob {
            name: j.name.clone(),
            state: j.state,
            created: j.created,
        })
        .collect();
    history::to_prune(&finished, &report.spec.history)
}

/// `lastRun`: the run being started, or the newest run observed.
fn last_run(world: &World, start: Option<&StartRun>) -> Option<RunSummary> {
    if let Some(s) = start {
        let date = s.date;
        let mut summary = status::run_summary(&ObservedRun {
            date,
            job_name: s.name.clone(),
            job: JobState::Active,
            record: world.records.get(&date).cloned(),
        });
        summary.phase = RunPhase::Pending;
        return Some(summary);
    }
    let newest = world
        .jobs
        .iter()
        .max_by(|a, b| a.date.cmp(&b.date).then(a.created.cmp(&b.created)))?;
    Some(status::run_summary(&ObservedRun {
        date: newest.date,
        job_name: newest.name.clone(),
        job: newest.state,
        record: world.records.get(&newest.date).cloned(),
    }))
}

/// A missed slot newer than the last run is the last run, in phase `Missed` (no Job, nothing
/// delivered), so `kubectl get dailyreports` shows it.
fn missed_run(missed: &Missed, status: &mut DailyReportStatus) {
    let Some(latest) = missed.listed.last() else {
        return;
    };
    let date = latest.date_naive().to_string();
    // A run that waited for its turn until too late is missed, not queued.
    if status
        .last_run
        .as_ref()
        .is_some_and(|r| r.date >= date && r.phase != RunPhase::Queued)
    {
        return;
    }
    status.last_run = Some(RunSummary {
        date,
        job: None,
        phase: RunPhase::Missed,
        started: None,
        finished: None,
        articles: 0,
        recipients: 0,
        delivered: 0,
        failed: 0,
        deferred: 0,
        channels: Vec::new(),
    });
}

/// Events for a run that reached its end since the last status.
fn run_events(previous: &DailyReportStatus, now: &DailyReportStatus, events: &mut Vec<Event>) {
    let Some(run) = &now.last_run else {
        return;
    };
    let was = previous
        .last_run
        .as_ref()
        .filter(|r| r.job == run.job)
        .map(|r| r.phase);
    if was == Some(run.phase) {
        return;
    }
    let message = format!(
        "run {} of {}: {} delivered, {} failed, {} deferred",
        run.job.as_deref().unwrap_or_default(),
        run.date,
        run.delivered,
        run.failed,
        run.deferred
    );
    let (warning, reason) = match run.phase {
        RunPhase::Pending => (false, event_reasons::RUN_STARTED),
        RunPhase::Succeeded => (false, event_reasons::RUN_SUCCEEDED),
        RunPhase::PartiallyDelivered => (true, event_reasons::RUN_PARTIALLY_DELIVERED),
        RunPhase::Failed => (true, event_reasons::RUN_FAILED),
        RunPhase::Queued
        | RunPhase::Missed
        | RunPhase::Collecting
        | RunPhase::Composing
        | RunPhase::Sending => {
            return;
        }
    };
    events.push(Event {
        warning,
        reason,
        message,
    });
}

/// `Ready` from the problems, `LastRunSucceeded` from the last run (kept while one runs).
fn conditions_for(
    report: &DailyReport,
    world: &World,
    previous: &DailyReportStatus,
    status: &mut DailyReportStatus,
) {
    let generation = report.metadata.generation;
    let ready = if world.problems.is_empty() {
        status::condition(
            &previous.conditions,
            conditions::READY,
            true,
            reasons::VALID,
            "the report is valid and scheduled",
            generation,
            world.now,
        )
    } else {
        status::condition(
            &previous.conditions,
            conditions::READY,
            false,
            reasons::INVALID_SPEC,
            &problems_message(&world.problems),
            generation,
            world.now,
        )
    };
    let mut list = vec![ready];
    match status::last_run_condition(status.last_run.as_ref()) {
        Some((ok, reason, message)) => list.push(status::condition(
            &previous.conditions,
            conditions::LAST_RUN_SUCCEEDED,
            ok,
            reason,
            &message,
            generation,
            world.now,
        )),
        None => list.extend(
            previous
                .conditions
                .iter()
                .find(|c| c.type_ == conditions::LAST_RUN_SUCCEEDED)
                .cloned(),
        ),
    }
    status.conditions = list;
}

/// The decision once an object under a name the report needs turned out to be somebody
/// else's: nothing started, `Ready=False` with reason `NameConflict`, and the Warning Event to
/// record when the condition is new (not on every pass).
pub fn name_conflict(
    report: &DailyReport,
    previous: &DailyReportStatus,
    message: &str,
    now: DateTime<Utc>,
    decision: &mut Desired,
) -> Option<Event> {
    // Nothing was started: what desired() said of the run it meant to start is taken back.
    if decision.start.take().is_some() {
        decision.status.last_run = previous.last_run.clone();
        decision.status.last_schedule_time = previous.last_schedule_time.clone();
        decision
            .events
            .retain(|e| e.reason != event_reasons::RUN_STARTED);
    }
    let ready = status::condition(
        &previous.conditions,
        conditions::READY,
        false,
        reasons::NAME_CONFLICT,
        message,
        report.metadata.generation,
        now,
    );
    let already = previous.conditions.iter().any(|c| {
        c.type_ == conditions::READY && c.reason == reasons::NAME_CONFLICT && c.message == message
    });
    decision
        .status
        .conditions
        .retain(|c| c.type_ != conditions::READY);
    decision.status.conditions.insert(0, ready);
    (!already).then(|| Event {
        warning: true,
        reason: event_reasons::NAME_CONFLICT,
        message: message.to_string(),
    })
}

/// The status of a report in a namespace this controller does not serve: nothing scheduled,
/// `Ready=False` saying why and what to do.
pub fn not_served(report: &DailyReport, now: DateTime<Utc>) -> DailyReportStatus {
    let previous = report.status.clone().unwrap_or_default();
    let namespace = report.namespace().unwrap_or_default();
    let message = format!(
        "namespace {namespace} is not one this finrep serves (the chart's reportNamespaces): nothing is scheduled here; ask the operator to add it"
    );
    let ready = status::condition(
        &previous.conditions,
        conditions::READY,
        false,
        reasons::NAMESPACE_NOT_SERVED,
        &message,
        report.metadata.generation,
        now,
    );
    let mut out = previous;
    out.observed_generation = report.metadata.generation;
    out.next_schedule_time = None;
    out.conditions.retain(|c| c.type_ != conditions::READY);
    out.conditions.insert(0, ready);
    out
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.to_utc())
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn report() -> DailyReport {
        serde_norway::from_str(
            r#"
apiVersion: finrep.io/v1alpha1
kind: DailyReport
metadata: {name: brief, namespace: desk, uid: u-1, generation: 1}
spec:
  title: 日报
  smtp: {host: smtp.example.com, from: a@example.com}
"#,
        )
        .unwrap()
    }

    /// Reconciles until the status stops changing, like the controller would (a status
    /// write triggers the next pass), and returns the last decision.
    fn settle(report: &mut DailyReport, world: &World) -> Desired {
        let mut d = desired(report, world);
        for _ in 0..5 {
            if report.status.as_ref() == Some(&d.status) {
                return d;
            }
            report.status = Some(d.status.clone());
            d = desired(report, world);
        }
        panic!("status never settles: {:?}", d.status);
    }

    fn world(now: &str) -> World {
        World {
            now: at(now),
            ..Default::default()
        }
    }

    /// A run waiting behind eighteen others on two places: at 120 messages a minute for 100
    /// recipients each (50 s a run) the queue is through by 06:13:20, inside the window; at
    /// 60 a minute it would end at 06:21:40, and a Warning says so when the wait begins.
    #[test]
    fn a_queue_that_cannot_be_through_in_the_window_is_warned_of() {
        let mut r = report();
        r.status = Some(DailyReportStatus {
            active_since: Some("2026-11-22T21:00:00+00:00".into()),
            ..Default::default()
        });
        let mut w = world("2026-11-22T22:00:05Z");
        w.recipients = 100;
        w.waiting = Some(Waiting {
            ahead: 16,
            running: 2,
            max: 2,
        });
        let d = desired(&r, &w);
        assert!(d.start.is_none());
        assert_eq!(d.status.last_run.as_ref().unwrap().phase, RunPhase::Queued);
        let reasons: Vec<&str> = d.events.iter().map(|e| e.reason).collect();
        assert_eq!(reasons, [event_reasons::RUN_QUEUED], "inside the window");
        r.spec.smtp.as_mut().unwrap().max_per_minute = 60;
        let d = desired(&r, &w);
        let late = d
            .events
            .iter()
            .find(|e| e.reason == event_reasons::RUN_MAY_MISS_WINDOW)
            .expect("a warning");
        assert!(late.warning);
        assert!(
            late.message.contains("about 06:21") && late.message.contains("06:20"),
            "{}",
            late.message
        );
        // Said once, when the wait begins.
        r.status = Some(d.status);
        assert!(desired(&r, &w).events.is_empty());
    }

    fn job(name: &str, date: &str, slot: &str, state: JobState) -> ObservedJob {
        ObservedJob {
            name: name.into(),
            date: date.parse().unwrap(),
            scheduled_for: Some(at(slot)),
            manual: false,
            state,
            created: at(slot),
        }
    }

    #[test]
    fn before_the_slot_nothing_starts_and_the_wake_up_is_the_slot() {
        let mut r = report();
        let d = settle(&mut r, &world("2026-11-22T20:00:00Z"));
        assert!(d.start.is_none());
        assert_eq!(d.wake_at, Some(at("2026-11-22T22:00:00Z")));
        assert_eq!(
            d.status.next_schedule_time.as_deref(),
            Some("2026-11-23T06:00:00+08:00")
        );
        // An unchanged world gives an unchanged status: no write, no event.
        let again = desired(&r, &world("2026-11-22T20:00:00Z"));
        assert_eq!(Some(&again.status), r.status.as_ref());
        assert!(again.events.is_empty());
    }

    #[test]
    fn at_the_slot_one_run_starts_once() {
        let mut r = report();
        settle(&mut r, &world("2026-11-22T20:00:00Z"));
        let d = desired(&r, &world("2026-11-22T22:00:05Z"));
        let start = d.start.clone().unwrap();
        assert_eq!(start.name, "brief-20261123");
        assert_eq!(d.status.last_run.as_ref().unwrap().date, "2026-11-23");
        assert_eq!(
            d.status.last_schedule_time.as_deref(),
            Some("2026-11-23T06:00:00+08:00")
        );
        assert_eq!(start.window_end, at("2026-11-22T22:20:00Z"));
        assert!(
            d.events
                .iter()
                .any(|e| e.reason == event_reasons::RUN_STARTED)
        );
        r.status = Some(d.status);
        // The Job now exists: nothing more starts, and a second controller that missed the
        // status sees the Job.
        let mut w = world("2026-11-22T22:00:30Z");
        w.jobs.push(job(
            "brief-20261123",
            "2026-11-23",
            "2026-11-22T22:00:00Z",
            JobState::Active,
        ));
        assert!(desired(&r, &w).start.is_none());
        let mut stale = report();
        stale.status = None;
        let d = desired(&stale, &w);
        assert!(d.start.is_none(), "never two runs at once");
    }

    #[test]
    fn three_days_down_starts_todays_run_and_reports_the_missed_ones() {
        let mut r = report();
        settle(&mut r, &world("2026-11-19T20:00:00Z"));
        let mut status = r.status.clone().unwrap();
        status.last_schedule_time = Some("2026-11-20T06:00:00+08:00".into());
        r.status = Some(status);
        let d = desired(&r, &world("2026-11-22T22:05:00Z"));
        assert_eq!(d.start.unwrap().name, "brief-20261123");
        assert_eq!(d.missed.total, 2);
        assert!(
            d.events
                .iter()
                .any(|e| e.reason == event_reasons::RUN_MISSED && e.warning)
        );
        // Past the deadline: missed, nothing starts, and it is recorded once.
        let mut late = r.clone();
        let d = desired(&late, &world("2026-11-22T23:30:00Z"));
        assert!(d.start.is_none());
        assert_eq!(d.missed.total, 3);
        late.status = Some(d.status);
        let d = desired(&late, &world("2026-11-22T23:31:00Z"));
        assert_eq!(d.missed.total, 0, "missed slots are reported once");
    }

    #[test]
    fn suspend_stops_new_runs_and_resuming_does_not_catch_up() {
        let mut r = report();
        settle(&mut r, &world("2026-11-20T20:00:00Z"));
        r.spec.suspend = true;
        let d = settle(&mut r, &world("2026-11-20T22:00:10Z"));
        assert!(d.start.is_none());
        r.spec.suspend = false;
        let d = settle(&mut r, &world("2026-11-22T22:05:00Z"));
        assert!(d.start.is_none(), "slots while suspended are not run");
        assert_eq!(d.missed.total, 0, "nor counted as missed");
    }

    #[test]
    fn run_now_starts_once_per_value() {
        let mut r = report();
        settle(&mut r, &world("2026-11-23T01:00:00Z"));
        r.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(annotations::RUN_NOW.into(), "try-1".into());
        let d = desired(&r, &world("2026-11-23T01:10:00Z"));
        let start = d.start.clone().unwrap();
        assert!(start.name.starts_with("brief-20261123-m"), "{}", start.name);
        r.status = Some(d.status);
        assert!(desired(&r, &world("2026-11-23T01:20:00Z")).start.is_none());
        r.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(annotations::RUN_NOW.into(), "try-2".into());
        let again = desired(&r, &world("2026-11-23T01:30:00Z")).start.unwrap();
        assert_ne!(again.name, start.name);
    }

    #[test]
    fn an_invalid_report_starts_nothing_and_says_why_once() {
        let mut r = report();
        let mut w = world("2026-11-22T22:00:05Z");
        w.problems = vec![FieldProblem::error(
            "spec.smtp.credentialsSecretRef",
            "Secret smtp does not exist in namespace desk",
        )];
        let d = desired(&r, &w);
        assert!(d.start.is_none());
        assert_eq!(d.events.len(), 1);
        let ready = &d.status.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", reasons::INVALID_SPEC)
        );
        r.status = Some(d.status);
        assert!(
            desired(&r, &w).events.is_empty(),
            "the Event is not repeated"
        );
    }

    #[test]
    fn a_finished_run_sets_status_events_and_history() {
        let mut r = report();
        settle(&mut r, &world("2026-11-22T20:00:00Z"));
        let mut w = world("2026-11-22T22:30:00Z");
        for (i, day) in ["18", "19", "20", "21", "22"].iter().enumerate() {
            w.jobs.push(job(
                &format!("brief-202611{day}"),
                &format!("2026-11-{day}"),
                &format!("2026-11-{:02}T22:00:00Z", 17 + i),
                JobState::Succeeded,
            ));
        }
        w.jobs.push(job(
            "brief-20261123",
            "2026-11-23",
            "2026-11-22T22:00:00Z",
            JobState::Failed,
        ));
        let mut deliveries = crate::run::DeliveryCounts::default();
        deliveries.add(crate::run::DeliveryStatus::Sent, 3, 0);
        deliveries.add(crate::run::DeliveryStatus::Deferred, 1, 0);
        w.records.insert(
            "2026-11-23".parse().unwrap(),
            RunRecord {
                phase: RunPhase::PartiallyDelivered,
                deliveries,
                ..Default::default()
            },
        );
        let d = desired(&r, &w);
        let run = d.status.last_run.clone().unwrap();
        assert_eq!(
            (run.phase, run.delivered, run.deferred),
            (RunPhase::PartiallyDelivered, 3, 1)
        );
        assert!(
            d.events
                .iter()
                .any(|e| e.reason == event_reasons::RUN_PARTIALLY_DELIVERED)
        );
        assert_eq!(d.prune, ["brief-20261118", "brief-20261119"]);
        let last = d
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == conditions::LAST_RUN_SUCCEEDED)
            .unwrap();
        assert_eq!(last.status, "False");
    }
}
