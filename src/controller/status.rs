//! A DailyReport's status, decided by pure functions from what the controller observed: the
//! run's Job and the run's record in PostgreSQL. A condition's `lastTransitionTime` moves
//! only when its status changes, and nothing here reads the clock except through `now`, so
//! reconciling an unchanged world yields an identical status (and no write).

use chrono::{DateTime, NaiveDate, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{ChannelSummary, RunSummary};
use crate::run::{DeliveryCounts, RunPhase};

/// Condition reasons, named once.
pub mod reasons {
    pub const VALID: &str = "Valid";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// An object under a name the report needs belongs to somebody else.
    pub const NAME_CONFLICT: &str = "NameConflict";
    /// The report's namespace is not one the controller serves.
    pub const NAMESPACE_NOT_SERVED: &str = "NamespaceNotServed";
    pub const SUCCEEDED: &str = "Succeeded";
    pub const PARTIALLY_DELIVERED: &str = "PartiallyDelivered";
    pub const FAILED: &str = "Failed";
    pub const MISSED: &str = "Missed";
    pub const NO_RUN_YET: &str = "NoRunYet";
    pub const RUNNING: &str = "Running";
}

/// Validation problems as one condition or Event message.
pub fn problems_message(problems: &[crate::validation::FieldProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("{}: {}", p.field, p.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where a run's Job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Not created yet, or gone (deleted with the history).
    Absent,
    Active,
    Succeeded,
    Failed,
}

/// A run's record as the pipeline left it in PostgreSQL.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunRecord {
    pub phase: RunPhase,
    pub started: Option<DateTime<Utc>>,
    pub finished: Option<DateTime<Utc>>,
    pub articles: u32,
    pub recipients: u32,
    pub deliveries: DeliveryCounts,
    pub channels: Vec<(crate::run::Channel, DeliveryCounts)>,
}

impl From<&crate::store::RunRow> for RunRecord {
    fn from(r: &crate::store::RunRow) -> Self {
        Self {
            phase: r.phase,
            started: r.started_at,
            finished: r.finished_at,
            articles: u32::try_from(r.articles).unwrap_or(0),
            recipients: u32::try_from(r.recipients).unwrap_or(0),
            deliveries: r.deliveries.clone(),
            channels: r.channels.clone(),
        }
    }
}

/// What the controller knows of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedRun {
    pub date: NaiveDate,
    pub job_name: String,
    pub job: JobState,
    pub record: Option<RunRecord>,
}

/// The phase of a run from its Job and its record. The record says how far the pipeline
/// got and how delivery ended; the Job says whether a pod is still at it. A Job that failed
/// before the pipeline recorded an end (an invalid plan, a crash past `backoffLimit`, the
/// deadline) is `Failed`.
pub fn run_phase(job: JobState, record: Option<&RunRecord>) -> RunPhase {
    let recorded = record.map(|r| r.phase);
    match (job, recorded) {
        (_, Some(RunPhase::Missed)) => RunPhase::Missed,
        (JobState::Active, Some(p)) if !p.is_finished() => p,
        (JobState::Active, _) => RunPhase::Pending,
        (JobState::Succeeded | JobState::Failed | JobState::Absent, Some(p)) if p.is_finished() => {
            p
        }
        (JobState::Failed, _) => RunPhase::Failed,
        // Succeeded without a finished record: the pipeline composed without sending.
        (JobState::Succeeded, _) => RunPhase::Succeeded,
        (JobState::Absent, Some(p)) => p,
        (JobState::Absent, None) => RunPhase::Pending,
    }
}

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// `status.lastRun` of an observed run.
pub fn run_summary(run: &ObservedRun) -> RunSummary {
    let record = run.record.as_ref();
    let d = record.map(|r| r.deliveries.clone()).unwrap_or_default();
    RunSummary {
        date: run.date.to_string(),
        job: Some(run.job_name.clone()),
        phase: run_phase(run.job, record),
        started: record.and_then(|r| r.started).map(|t| t.to_rfc3339()),
        finished: record.and_then(|r| r.finished).map(|t| t.to_rfc3339()),
        articles: record.map_or(0, |r| r.articles),
        recipients: record.map_or(0, |r| r.recipients),
        delivered: count(d.sent),
        failed: count(d.failed + d.bounced),
        deferred: count(d.deferred),
        channels: record
            .map(|r| r.channels.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|(channel, c)| ChannelSummary {
                channel: channel.as_str().to_string(),
                delivered: count(c.sent),
                failed: count(c.failed + c.bounced),
                deferred: count(c.deferred),
            })
            .collect(),
    }
}

/// A condition, keeping `lastTransitionTime` from `previous` when the status is unchanged.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| time(now));
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time: since,
    }
}

fn time(t: DateTime<Utc>) -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::from_second(t.timestamp())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

/// `LastRunSucceeded` from the last run: true for Succeeded, false for anything that ended
/// otherwise; `None` while it runs or before any run (the condition is then Unknown-free:
/// simply absent, or kept as it was).
pub fn last_run_condition(summary: Option<&RunSummary>) -> Option<(bool, &'static str, String)> {
    let s = summary?;
    let message = format!(
        "run of {}: {} delivered, {} failed, {} deferred",
        s.date, s.delivered, s.failed, s.deferred
    );
    match s.phase {
        RunPhase::Succeeded => Some((true, reasons::SUCCEEDED, message)),
        RunPhase::PartiallyDelivered => Some((false, reasons::PARTIALLY_DELIVERED, message)),
        RunPhase::Failed => Some((false, reasons::FAILED, message)),
        RunPhase::Missed => Some((
            false,
            reasons::MISSED,
            format!("the slot of {} was missed", s.date),
        )),
        RunPhase::Queued
        | RunPhase::Pending
        | RunPhase::Collecting
        | RunPhase::Composing
        | RunPhase::Sending => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn record(phase: RunPhase) -> RunRecord {
        RunRecord {
            phase,
            ..Default::default()
        }
    }

    #[test]
    fn phases_from_job_and_record() {
        use JobState as J;
        use RunPhase as P;
        let cases = [
            (J::Active, None, P::Pending),
            (J::Active, Some(P::Collecting), P::Collecting),
            (J::Active, Some(P::Sending), P::Sending),
            // A pod at work again after an attempt that ended: pending until it records.
            (J::Active, Some(P::PartiallyDelivered), P::Pending),
            (J::Succeeded, Some(P::Succeeded), P::Succeeded),
            (
                J::Failed,
                Some(P::PartiallyDelivered),
                P::PartiallyDelivered,
            ),
            (J::Failed, Some(P::Sending), P::Failed),
            (J::Failed, None, P::Failed),
            (J::Absent, Some(P::Succeeded), P::Succeeded),
            (J::Absent, None, P::Pending),
            (J::Absent, Some(P::Missed), P::Missed),
        ];
        for (job, rec, want) in cases {
            let r = rec.map(record);
            assert_eq!(run_phase(job, r.as_ref()), want, "{job:?} {rec:?}");
        }
    }

    #[test]
    fn summary_counts_failures_and_bounces_together() {
        let mut deliveries = DeliveryCounts::default();
        deliveries.add(crate::run::DeliveryStatus::Sent, 3, 0);
        deliveries.add(crate::run::DeliveryStatus::Bounced, 1, 0);
        deliveries.add(crate::run::DeliveryStatus::Failed, 1, 0);
        deliveries.add(crate::run::DeliveryStatus::Deferred, 2, 0);
        let run = ObservedRun {
            date: NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
            job_name: "brief-20261123".into(),
            job: JobState::Failed,
            record: Some(RunRecord {
                phase: RunPhase::PartiallyDelivered,
                articles: 12,
                recipients: 7,
                deliveries,
                ..Default::default()
            }),
        };
        let s = run_summary(&run);
        assert_eq!((s.delivered, s.failed, s.deferred), (3, 2, 2));
        assert_eq!(s.phase, RunPhase::PartiallyDelivered);
        let (ok, reason, _) = last_run_condition(Some(&s)).unwrap();
        assert!(!ok);
        assert_eq!(reason, reasons::PARTIALLY_DELIVERED);
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let t0 = at("2026-11-22T22:30:00Z");
        let t1 = at("2026-11-23T22:30:00Z");
        let first = condition(&[], "Ready", true, reasons::VALID, "ok", Some(1), t0);
        let same = condition(
            std::slice::from_ref(&first),
            "Ready",
            true,
            reasons::VALID,
            "ok",
            Some(2),
            t1,
        );
        assert_eq!(same.last_transition_time, first.last_transition_time);
        assert_eq!(same.observed_generation, Some(2));
        let flipped = condition(
            &[same],
            "Ready",
            false,
            reasons::INVALID_SPEC,
            "bad",
            Some(3),
            t1,
        );
        assert_ne!(flipped.last_transition_time, first.last_transition_time);
        assert_eq!(flipped.status, "False");
    }
}
