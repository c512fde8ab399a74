//! An editor's requests of a report, apart from its runs: a preview (the report of a slot,
//! composed ahead of time and sent to nobody) and a test send (one copy, marked as a test, to
//! one of the report's own recipients). Reading their annotations and building their plans
//! are pure; the controller and standalone mode carry them out.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};

use crate::api::annotations;
use crate::plan::{
    PlanError, PlanPurpose, RunPlan, build_plan, find_report, local_date, lookback_end_for,
    manual_slot, scheduled_slot, secret_envs,
};
use crate::schedule::Schedule;
use crate::validation::ResourceSet;

/// The longest annotation value acted on (a Kubernetes name is at most 253 characters).
const MAX_VALUE: usize = 253;

/// A preview asked for on a DailyReport (`finrep.io/preview`, with `finrep.io/preview-date`
/// and `finrep.io/preview-as`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviewRequest {
    /// The `finrep.io/preview` value: one preview per value.
    pub value: String,
    /// The local date previewed; the next slot's when absent.
    pub date: Option<NaiveDate>,
    /// The Recipient whose copy is previewed.
    pub recipient: Option<String>,
}

impl PreviewRequest {
    /// The request the annotations make, if any, or why it cannot be carried out.
    pub fn of(annotations: &BTreeMap<String, String>) -> Option<Result<Self, String>> {
        let value = annotations.get(annotations::PREVIEW)?.trim().to_string();
        Some(Self::parse(
            value,
            annotations.get(annotations::PREVIEW_DATE).map(|s| s.trim()),
            annotations.get(annotations::PREVIEW_AS).map(|s| s.trim()),
        ))
    }

    fn parse(value: String, date: Option<&str>, recipient: Option<&str>) -> Result<Self, String> {
        if value.is_empty() || value.len() > MAX_VALUE {
            return Err(format!(
                "{} must be a value of 1 to {MAX_VALUE} characters (any new value asks for a new preview)",
                annotations::PREVIEW
            ));
        }
        let date = match date.filter(|d| !d.is_empty()) {
            None => None,
            Some(d) => Some(NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| {
                format!(
                    "{} must be a date YYYY-MM-DD, not {d:?}",
                    annotations::PREVIEW_DATE
                )
            })?),
        };
        let recipient = match recipient.filter(|r| !r.is_empty()) {
            None => None,
            Some(r) => Some(resource_name(r, annotations::PREVIEW_AS)?),
        };
        Ok(Self {
            value,
            date,
            recipient,
        })
    }
}

/// A test copy asked for on a DailyReport: `finrep.io/test-send: RECIPIENT`, or
/// `RECIPIENT#anything` to send again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestSendRequest {
    pub value: String,
    /// The name of the Recipient the copy goes to.
    pub recipient: String,
}

impl TestSendRequest {
    pub fn of(annotations: &BTreeMap<String, String>) -> Option<Result<Self, String>> {
        annotations
            .get(annotations::TEST_SEND)
            .map(|v| Self::parse(v.trim()))
    }

    pub fn parse(value: &str) -> Result<Self, String> {
        if value.len() > MAX_VALUE {
            return Err(format!(
                "{} is longer than {MAX_VALUE} characters",
                annotations::TEST_SEND
            ));
        }
        let name = value.split('#').next().unwrap_or_default();
        Ok(Self {
            value: value.to_string(),
            recipient: resource_name(name, annotations::TEST_SEND)?,
        })
    }
}

/// A Recipient's name as an annotation gives it: a Kubernetes object name, never an address
/// (a test copy goes only to a Recipient the report already selects).
fn resource_name(name: &str, annotation: &str) -> Result<String, String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_VALUE
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(name.to_string())
    } else {
        Err(format!(
            "{annotation} names a Recipient by its resource name (kubectl get recipients), such as alice; {name:?} is not one"
        ))
    }
}

/// The Job (and plan ConfigMap) of preview `value` of `report`.
pub fn preview_job_name(report: &str, value: &str) -> String {
    crate::run::bounded_name(
        report,
        &format!("-preview-{}", crate::run::short_hash(value)),
    )
}

/// The Job (and plan ConfigMap) of test send `value` of `report`.
pub fn test_send_job_name(report: &str, value: &str) -> String {
    crate::run::bounded_name(report, &format!("-test-{}", crate::run::short_hash(value)))
}

/// The ConfigMap holding a report's latest preview (one per report, replaced by each).
pub fn preview_config_map_name(report: &str) -> String {
    crate::run::bounded_name(report, "-preview")
}

/// The plan of a preview of report `name`: the next slot after `now` (or the requested
/// date's), its sources, no recipient but the one previewed, and no mail or chat credential.
pub fn preview_plan(
    set: &ResourceSet,
    namespace: &str,
    name: &str,
    request: &PreviewRequest,
    now: DateTime<Utc>,
    blacklist: &BTreeSet<String>,
) -> Result<RunPlan, PlanError> {
    let report = find_report(set, namespace, name)?;
    let today = local_date(report, now)?;
    let slot = match request.date {
        Some(date) => manual_slot(report, date)?,
        None => {
            let spec = &report.spec;
            let schedule = Schedule::parse(&spec.schedule, &spec.time_zone).map_err(|source| {
                PlanError::Schedule {
                    report: name.to_string(),
                    source,
                }
            })?;
            match schedule.next_after(now) {
                Some(next) => scheduled_slot(report, next.to_utc())?,
                None => manual_slot(report, today)?,
            }
        }
    };
    let date = slot.date;
    let mut plan = build_plan(report, &set.sources, &set.recipients, blacklist, slot);
    plan.lookback_end = lookback_end_for(date, today);
    let previewed = match &request.recipient {
        Some(r) => vec![take_recipient(&mut plan, r)?],
        None => Vec::new(),
    };
    plan.recipients = previewed;
    plan.excluded_recipients.clear();
    // Only what collecting and summarising read: no mail or chat credential reaches a preview.
    let mut spec = report.spec.clone();
    spec.smtp = None;
    plan.secrets = secret_envs(
        plan.sources.iter().map(|s| &s.spec),
        std::iter::empty(),
        &spec,
    );
    if let Some(smtp) = plan.smtp.as_mut() {
        smtp.credentials_secret_ref = None;
    }
    plan.purpose = PlanPurpose::Preview {
        request: request.value.clone(),
        recipient: request.recipient.clone(),
    };
    Ok(plan)
}

/// The plan of a test send of report `name` to one of its recipients: that recipient alone,
/// no source, and only the credential its channel needs.
pub fn test_send_plan(
    set: &ResourceSet,
    namespace: &str,
    name: &str,
    request: &TestSendRequest,
    now: DateTime<Utc>,
    blacklist: &BTreeSet<String>,
) -> Result<RunPlan, PlanError> {
    let report = find_report(set, namespace, name)?;
    let today = local_date(report, now)?;
    let mut plan = build_plan(
        report,
        &[],
        &set.recipients,
        blacklist,
        manual_slot(report, today)?,
    );
    let recipient = take_recipient(&mut plan, &request.recipient)?;
    let mut spec = report.spec.clone();
    spec.content.summarizer = None;
    if recipient.chat.is_some() {
        spec.smtp = None;
    }
    plan.secrets = secret_envs(std::iter::empty(), recipient.chat.as_ref(), &spec);
    plan.recipients = vec![recipient];
    plan.excluded_recipients.clear();
    plan.purpose = PlanPurpose::TestSend {
        request: request.value.clone(),
        recipient: request.recipient.clone(),
    };
    Ok(plan)
}

/// Recipient `name` of the plan, or why it is not one the report may send to.
fn take_recipient(
    plan: &mut RunPlan,
    name: &str,
) -> Result<crate::plan::PlannedRecipient, PlanError> {
    if let Some(at) = plan.recipients.iter().position(|r| r.name == name) {
        return Ok(plan.recipients.swap_remove(at));
    }
    let why = if plan.excluded_recipients.iter().any(|r| r == name) {
        format!(
            "Recipient {name} is blacklisted or unsubscribed in namespace {}; nothing is sent to it, not even a test copy",
            plan.namespace
        )
    } else {
        format!(
            "Recipient {name} is not a recipient of DailyReport {} (it does not exist in namespace {}, is disabled, or the report's recipientSelector does not select it); a test copy goes only to the report's own recipients",
            plan.report, plan.namespace
        )
    };
    Err(PlanError::NotFound(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_preview_request_reads_its_three_annotations() {
        assert_eq!(PreviewRequest::of(&annotations(&[])), None);
        let req = PreviewRequest::of(&annotations(&[
            (annotations::PREVIEW, "p1"),
            (annotations::PREVIEW_DATE, "2026-12-07"),
            (annotations::PREVIEW_AS, "alice"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(req.date, NaiveDate::from_ymd_opt(2026, 12, 7));
        assert_eq!(req.recipient.as_deref(), Some("alice"));
        let bad = PreviewRequest::of(&annotations(&[
            (annotations::PREVIEW, "p1"),
            (annotations::PREVIEW_DATE, "tomorrow"),
        ]))
        .unwrap();
        assert!(bad.unwrap_err().contains("YYYY-MM-DD"));
    }

    #[test]
    fn a_test_send_names_a_recipient_never_an_address() {
        let req = TestSendRequest::parse("alice#20261205T1700").unwrap();
        assert_eq!(req.recipient, "alice");
        for bad in ["bob@example.com", "", "#x", "Alice", "-a"] {
            assert!(TestSendRequest::parse(bad).is_err(), "{bad}");
        }
    }

    fn examples() -> ResourceSet {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests/examples");
        crate::manifest::load_valid(&[dir], &crate::manifest::LoadOptions::default())
            .unwrap()
            .set
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn preview(value: &str, recipient: Option<&str>) -> PreviewRequest {
        PreviewRequest {
            value: value.into(),
            date: None,
            recipient: recipient.map(str::to_string),
        }
    }

    #[test]
    fn a_preview_plan_is_the_next_slots_with_nobody_to_send_to_and_no_mail_credential() {
        let set = examples();
        let now = at("2026-12-04T09:00:00Z"); // 17:00 in Shanghai
        let plan = preview_plan(
            &set,
            "default",
            "morning-brief",
            &preview("p", None),
            now,
            &BTreeSet::new(),
        )
        .unwrap();
        assert_eq!(plan.slot.date.to_string(), "2026-12-05");
        assert!(plan.recipients.is_empty());
        assert!(!plan.sources.is_empty());
        let secrets: Vec<&str> = plan.secrets.iter().map(|s| s.secret.as_str()).collect();
        assert_eq!(secrets, ["finrep-summarizer"], "the summariser's key alone");
        assert!(plan.smtp.as_ref().unwrap().credentials_secret_ref.is_none());
        assert!(matches!(plan.purpose, PlanPurpose::Preview { .. }));
        plan.validate().unwrap();
        // As one reader: that reader alone, still no credential to send with.
        let plan = preview_plan(
            &set,
            "default",
            "morning-brief",
            &preview("p", Some("zhang-wei")),
            now,
            &BTreeSet::new(),
        )
        .unwrap();
        assert_eq!(plan.recipients.len(), 1);
        assert_eq!(plan.recipients[0].name, "zhang-wei");
        assert_eq!(plan.secrets.len(), 1);
    }

    #[test]
    fn a_test_send_plan_holds_one_selected_recipient_and_only_its_channels_credential() {
        let set = examples();
        let now = at("2026-12-04T09:00:00Z");
        let request = TestSendRequest::parse("zhang-wei#1").unwrap();
        let plan = test_send_plan(
            &set,
            "default",
            "morning-brief",
            &request,
            now,
            &BTreeSet::new(),
        )
        .unwrap();
        assert_eq!(plan.recipients.len(), 1);
        assert!(plan.sources.is_empty(), "a test send fetches nothing");
        let secrets: BTreeSet<&str> = plan.secrets.iter().map(|s| s.secret.as_str()).collect();
        assert_eq!(secrets, BTreeSet::from(["finrep-smtp"]));
        plan.validate().unwrap();

        let blocked = plan.recipients[0].address.clone();
        let err = test_send_plan(
            &set,
            "default",
            "morning-brief",
            &request,
            now,
            &BTreeSet::from([blocked]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("blacklisted or unsubscribed"), "{err}");
        for outsider in ["nobody", "macro-team-feishu"] {
            let request = TestSendRequest::parse(outsider).unwrap();
            let err = test_send_plan(
                &set,
                "default",
                "morning-brief",
                &request,
                now,
                &BTreeSet::new(),
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("not a recipient of DailyReport morning-brief"),
                "{outsider}: {err}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn no_annotation_value_panics(value in ".{0,300}", date in ".{0,20}", who in ".{0,40}") {
            let _ = TestSendRequest::parse(&value);
            let _ = PreviewRequest::parse(value, Some(&date), Some(&who));
        }
    }
}
