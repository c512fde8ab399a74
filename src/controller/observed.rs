//! What the controller reads off the cluster's objects, as the pure decision's inputs: a run
//! Job as an `ObservedJob` (its date, slot and state from the labels and annotation the
//! controller wrote, and the Job's conditions).

use chrono::{DateTime, NaiveDate, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::desired::ObservedJob;
use super::objects::labels;
use super::status::JobState;

/// A Job's state from its conditions: `Complete`/`SuccessCriteriaMet` is success,
/// `Failed`/`FailureTarget` failure (the targets come first while pods terminate), anything
/// else is still running — except a Job whose status counts a succeeded pod without saying so
/// in a condition (a Job controller that writes counts first), which is done: its single pod
/// succeeded.
pub fn job_state(job: &Job) -> JobState {
    let status = job.status.as_ref();
    let conditions = status
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let holds = |t: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == t && c.status == "True")
    };
    if holds("Complete") || holds("SuccessCriteriaMet") {
        JobState::Succeeded
    } else if holds("Failed") || holds("FailureTarget") {
        JobState::Failed
    } else if status.and_then(|s| s.succeeded).unwrap_or(0) >= 1 {
        JobState::Succeeded
    } else {
        JobState::Active
    }
}

/// The chrono instant of a Kubernetes time.
pub fn instant(t: &Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().unsigned_abs())
        .unwrap_or_default()
}

/// A run Job of the report as the decision sees it; `None` for a Job without the run labels
/// (not one the controller made).
pub fn observed_job(job: &Job) -> Option<ObservedJob> {
    let labels_of = job.labels();
    // A preview's or test send's Job is never a run.
    if labels_of.contains_key(labels::PURPOSE) {
        return None;
    }
    let date: NaiveDate = labels_of.get(labels::RUN_DATE)?.parse().ok()?;
    let manual = labels_of.get(labels::MANUAL).is_some_and(|m| m == "true");
    let scheduled_for = job
        .annotations()
        .get(labels::SCHEDULED_FOR)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.to_utc());
    Some(ObservedJob {
        name: job.name_any(),
        date,
        scheduled_for: if manual { None } else { scheduled_for },
        manual,
        state: job_state(job),
        created: job
            .metadata
            .creation_timestamp
            .as_ref()
            .map(instant)
            .unwrap_or_default(),
    })
}

/// A preview's or test send's Job, as the editor's requests see it.
#[derive(Clone, Debug, PartialEq)]
pub struct EditorJob {
    pub name: String,
    /// `finrep.io/purpose`: preview or test-send.
    pub purpose: String,
    /// The annotation value it answers.
    pub request: String,
    pub state: JobState,
    pub created: DateTime<Utc>,
    /// Why it failed, from its `Failed` condition.
    pub failure: Option<String>,
}

/// `None` for a run Job, or a Job without the labels the controller writes.
pub fn editor_job(job: &Job) -> Option<EditorJob> {
    let purpose = job.labels().get(labels::PURPOSE)?.clone();
    let request = job.annotations().get(labels::REQUEST)?.clone();
    let failure = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")
        .map(|c| {
            let reason = c.reason.clone().unwrap_or_default();
            match c.message.as_deref() {
                Some(m) if !m.is_empty() => format!("{reason}: {m}"),
                _ => reason,
            }
        });
    Some(EditorJob {
        name: job.name_any(),
        purpose,
        request,
        state: job_state(job),
        created: job
            .metadata
            .creation_timestamp
            .as_ref()
            .map(instant)
            .unwrap_or_default(),
        failure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use kube::api::ObjectMeta;
    use std::collections::BTreeMap;

    fn job(conditions: &[(&str, &str)], manual: bool) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some("morning-brief-20261124".into()),
                labels: Some(BTreeMap::from([
                    (labels::RUN_DATE.to_string(), "2026-11-24".to_string()),
                    (labels::MANUAL.to_string(), manual.to_string()),
                ])),
                annotations: Some(BTreeMap::from([(
                    labels::SCHEDULED_FOR.to_string(),
                    "2026-11-24T06:00:00+08:00".to_string(),
                )])),
                ..Default::default()
            },
            status: Some(JobStatus {
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(t, s)| JobCondition {
                            type_: t.to_string(),
                            status: s.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_job_state_follows_its_conditions() {
        assert_eq!(job_state(&job(&[], false)), JobState::Active);
        assert_eq!(
            job_state(&job(&[("Complete", "True")], false)),
            JobState::Succeeded
        );
        assert_eq!(
            job_state(&job(&[("FailureTarget", "True")], false)),
            JobState::Failed
        );
        assert_eq!(
            job_state(&job(&[("Failed", "False")], false)),
            JobState::Active
        );
        let mut counted = job(&[], false);
        counted.status.as_mut().unwrap().succeeded = Some(1);
        assert_eq!(job_state(&counted), JobState::Succeeded, "a pod succeeded");
        counted.status.as_mut().unwrap().succeeded = None;
        counted.status.as_mut().unwrap().failed = Some(2);
        assert_eq!(
            job_state(&counted),
            JobState::Active,
            "failed pods are retried"
        );
    }

    #[test]
    fn a_scheduled_job_carries_its_slot_and_a_manual_one_none() {
        let scheduled = observed_job(&job(&[], false)).unwrap();
        assert_eq!(
            scheduled.scheduled_for.unwrap().to_rfc3339(),
            "2026-11-23T22:00:00+00:00"
        );
        assert!(
            observed_job(&job(&[], true))
                .unwrap()
                .scheduled_for
                .is_none()
        );
        let mut foreign = job(&[], false);
        foreign.metadata.labels = None;
        assert!(observed_job(&foreign).is_none());
    }
}
