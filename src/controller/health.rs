//! Source and Recipient status, decided from what PostgreSQL records: a source's latest
//! fetches, a recipient's deliveries and blacklist entry. Pure, like the DailyReport's
//! (`status`): equal inputs give an equal status, so an unchanged object is never rewritten.

use chrono::{DateTime, NaiveDate, Utc};

use super::status::{condition, problems_message};
use crate::api::{LastDelivery, RecipientStatus, SourceStatus, conditions};
use crate::run::{DeliveryStatus, FetchErrorKind};
use crate::store::BlacklistMark;
use crate::validation::FieldProblem;

/// Failed fetches in a row after which a source is not `Ready`: one bad morning is noise,
/// three are a broken feed.
pub const FAILING_AFTER: u32 = 3;

/// Condition reasons of sources and recipients.
pub mod reasons {
    pub const VALID: &str = "Valid";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const FETCHING: &str = "Fetching";
    pub const FETCH_FAILING: &str = "FetchFailing";
    pub const DELIVERABLE: &str = "Deliverable";
    pub const BLACKLISTED: &str = "Blacklisted";
    pub const UNSUBSCRIBED: &str = "Unsubscribed";
    pub const DISABLED: &str = "Disabled";
}

/// A source's fetch state as recorded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FetchState {
    pub last_fetch: Option<DateTime<Utc>>,
    pub last_success: Option<DateTime<Utc>>,
    pub items_last_fetch: u32,
    pub consecutive_failures: u32,
    pub last_error_kind: Option<FetchErrorKind>,
    pub last_error: Option<String>,
}

impl From<&crate::store::SourceHealthRow> for FetchState {
    fn from(r: &crate::store::SourceHealthRow) -> Self {
        Self {
            last_fetch: r.last_fetch_at,
            last_success: r.last_success_at,
            items_last_fetch: u32::try_from(r.items_last_fetch).unwrap_or(0),
            consecutive_failures: u32::try_from(r.consecutive_failures).unwrap_or(0),
            last_error_kind: r.last_error_kind,
            last_error: r.last_error.clone(),
        }
    }
}

/// A Source's status: its fetch record, and `Ready` false for an invalid spec or after
/// `FAILING_AFTER` failures in a row, naming the error kind.
pub fn source_status(
    previous: Option<&SourceStatus>,
    generation: Option<i64>,
    state: Option<&FetchState>,
    problems: &[FieldProblem],
    now: DateTime<Utc>,
) -> SourceStatus {
    let prev = previous.cloned().unwrap_or_default();
    let s = state.cloned().unwrap_or_default();
    let (ok, reason, message) = if !problems.is_empty() {
        (false, reasons::INVALID_SPEC, problems_message(problems))
    } else if s.consecutive_failures >= FAILING_AFTER {
        let kind = s.last_error_kind.map_or("unknown", FetchErrorKind::as_str);
        (
            false,
            reasons::FETCH_FAILING,
            format!(
                "{} fetches failed in a row ({kind}): {}",
                s.consecutive_failures,
                s.last_error.as_deref().unwrap_or("no message")
            ),
        )
    } else if s.last_fetch.is_none() {
        (true, reasons::VALID, "not fetched yet".to_string())
    } else {
        (
            true,
            reasons::FETCHING,
            format!("{} item(s) in the last fetch", s.items_last_fetch),
        )
    };
    SourceStatus {
        observed_generation: generation,
        last_fetch_time: s.last_fetch.map(|t| t.to_rfc3339()),
        last_success_time: s.last_success.map(|t| t.to_rfc3339()),
        items_in_last_fetch: s.last_fetch.map(|_| s.items_last_fetch),
        consecutive_failures: s.consecutive_failures,
        last_error: (s.consecutive_failures > 0)
            .then(|| s.last_error.clone())
            .flatten(),
        conditions: vec![condition(
            &prev.conditions,
            conditions::READY,
            ok,
            reason,
            &message,
            generation,
            now,
        )],
    }
}

/// A recipient's deliveries and blacklist entry as recorded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeliveryRecord {
    /// The latest delivery: local date, report, outcome.
    pub last: Option<(NaiveDate, String, DeliveryStatus)>,
    pub delivered: u64,
    pub bounced: u64,
    /// The blacklist entry of the address in the recipient's namespace.
    pub blacklisted: Option<BlacklistMark>,
    /// Who lifted this identity's last unsubscribe, and when.
    pub resubscribed: Option<crate::store::Resubscription>,
}

impl From<&crate::store::RecipientDeliveries> for DeliveryRecord {
    fn from(r: &crate::store::RecipientDeliveries) -> Self {
        Self {
            last: r.last.clone(),
            delivered: u64::try_from(r.delivered).unwrap_or(0),
            bounced: u64::try_from(r.bounced).unwrap_or(0),
            blacklisted: r.blacklisted.clone(),
            resubscribed: r.resubscribed.clone(),
        }
    }
}

impl DeliveryRecord {
    /// The record of `email` in its namespace's records: its own deliveries, and the
    /// unsubscribe of its identity (`alice+news@` is covered by `alice@`'s), which outranks
    /// any entry of its own.
    pub fn of(
        records: &std::collections::HashMap<String, crate::store::RecipientDeliveries>,
        email: &str,
    ) -> Self {
        let mut record = records.get(email).map(Self::from).unwrap_or_default();
        let key = crate::unsubscribe::address_key(email);
        let unsubscribe = crate::run::BlacklistReason::Unsubscribe.as_str();
        let own_unsubscribe = record
            .blacklisted
            .as_ref()
            .is_some_and(|m| m.reason == unsubscribe);
        let identity = records
            .get(&key)
            .filter(|_| key != email && !own_unsubscribe);
        if let Some(identity) = identity {
            if let Some(mark) = identity
                .blacklisted
                .as_ref()
                .filter(|m| m.reason == unsubscribe)
            {
                record.blacklisted = Some(mark.clone());
            }
            if record.resubscribed.is_none() {
                record.resubscribed = identity.resubscribed.clone();
            }
        }
        record
    }
}

/// Whether a recipient is mailed, the condition's reason and the message a person reads.
fn deliverability(record: &DeliveryRecord, enabled: bool) -> (bool, &'static str, String) {
    let unsubscribe = crate::run::BlacklistReason::Unsubscribe.as_str();
    match (&record.blacklisted, enabled) {
        (Some(mark), _) if mark.reason == unsubscribe => (
            false,
            reasons::UNSUBSCRIBED,
            format!(
                "the recipient unsubscribed on {}; only they can undo it (the re-subscribe button of their unsubscribe page) or an operator with their consent (finrep resubscribe ADDRESS --by NAME --reason WHY); finrep.io/unblock lifts bounces only",
                mark.since.format("%Y-%m-%d")
            ),
        ),
        (Some(mark), _) => (
            false,
            reasons::BLACKLISTED,
            format!(
                "blacklisted ({}{}); fix the cause (for a chat group: the bot, its webhook or signing Secret), then set the annotation finrep.io/unblock to a new value to lift the bounce",
                mark.reason,
                refusal(mark)
            ),
        ),
        (None, false) => (
            false,
            reasons::DISABLED,
            "spec.enabled is false".to_string(),
        ),
        (None, true) => (
            true,
            reasons::DELIVERABLE,
            match &record.resubscribed {
                None => "reports are delivered".to_string(),
                Some(r) => format!(
                    "reports are delivered; re-subscribed on {} by {}{}",
                    r.at.format("%Y-%m-%d"),
                    match (r.by, r.actor.as_deref()) {
                        (crate::store::Resubscriber::Recipient, _) => "the recipient".to_string(),
                        (crate::store::Resubscriber::Operator, Some(who)) =>
                            format!("operator {}", crate::untrusted::clean(who, 80)),
                        (crate::store::Resubscriber::Operator, None) => "an operator".to_string(),
                    },
                    r.reason
                        .as_deref()
                        .map(|w| format!(" ({})", crate::untrusted::clean(w, 200)))
                        .unwrap_or_default()
                ),
            },
        ),
    }
}

/// The refusal's code and words, as the server or platform gave them: `: 93000 invalid webhook
/// url`.
fn refusal(mark: &BlacklistMark) -> String {
    let code = mark.code.map(|c| c.to_string());
    let words: Vec<&str> = [code.as_deref(), mark.reply.as_deref()]
        .into_iter()
        .flatten()
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        String::new()
    } else {
        format!(": {}", crate::untrusted::clean(&words.join(" "), 200))
    }
}

/// A Recipient's status: deliveries, blacklist, and `Deliverable`.
pub fn recipient_status(
    previous: Option<&RecipientStatus>,
    generation: Option<i64>,
    enabled: bool,
    record: &DeliveryRecord,
    problems: &[FieldProblem],
    now: DateTime<Utc>,
) -> RecipientStatus {
    let prev = previous.cloned().unwrap_or_default();
    let ready = if problems.is_empty() {
        condition(
            &prev.conditions,
            conditions::READY,
            true,
            reasons::VALID,
            "the recipient is valid",
            generation,
            now,
        )
    } else {
        condition(
            &prev.conditions,
            conditions::READY,
            false,
            reasons::INVALID_SPEC,
            &problems_message(problems),
            generation,
            now,
        )
    };
    let (ok, reason, message) = deliverability(record, enabled);
    let deliverable = condition(
        &prev.conditions,
        conditions::DELIVERABLE,
        ok,
        reason,
        &message,
        generation,
        now,
    );
    RecipientStatus {
        observed_generation: generation,
        last_delivered: record
            .last
            .as_ref()
            .map(|(date, report, outcome)| LastDelivery {
                date: date.to_string(),
                report: Some(report.clone()),
                outcome: outcome.as_str().to_string(),
            }),
        delivered_count: record.delivered,
        bounce_count: record.bounced,
        blacklisted: record.blacklisted.is_some(),
        blacklist_reason: record
            .blacklisted
            .as_ref()
            .map(|m| format!("{}{}", m.reason, refusal(m))),
        blacklisted_since: record.blacklisted.as_ref().map(|m| m.since.to_rfc3339()),
        handled_unblock: prev.handled_unblock,
        conditions: vec![ready, deliverable],
    }
}

/// The `finrep.io/unblock` value to act on: a new one lifts the blacklist entry once.
pub fn unblock_request<'a>(
    annotation: Option<&'a str>,
    previous: Option<&RecipientStatus>,
) -> Option<&'a str> {
    let handled = previous.and_then(|p| p.handled_unblock.as_deref());
    annotation.filter(|v| Some(*v) != handled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn a_source_is_ready_until_it_fails_three_times() {
        let now = at("2026-11-23T00:00:00Z");
        let mut s = FetchState {
            last_fetch: Some(now),
            last_success: Some(now),
            items_last_fetch: 50,
            ..Default::default()
        };
        let st = source_status(None, Some(1), Some(&s), &[], now);
        assert_eq!(st.conditions[0].status, "True");
        assert_eq!(st.items_in_last_fetch, Some(50));
        s.consecutive_failures = 3;
        s.last_error_kind = Some(FetchErrorKind::Timeout);
        s.last_error = Some("no answer within 20s".into());
        let failing = source_status(Some(&st), Some(1), Some(&s), &[], now);
        let ready = &failing.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", reasons::FETCH_FAILING)
        );
        assert!(ready.message.contains("timeout"), "{}", ready.message);
        assert_eq!(failing.last_error.as_deref(), Some("no answer within 20s"));
        // Unchanged input, unchanged status.
        assert_eq!(
            source_status(
                Some(&failing),
                Some(1),
                Some(&s),
                &[],
                at("2026-11-24T00:00:00Z")
            ),
            failing
        );
    }

    fn mark(reason: &str, since: DateTime<Utc>) -> BlacklistMark {
        BlacklistMark {
            reason: reason.into(),
            since,
            code: None,
            reply: None,
        }
    }

    #[test]
    fn an_unsubscribed_recipient_says_so() {
        let now = at("2026-11-26T00:00:00Z");
        let record = DeliveryRecord {
            last: None,
            delivered: 3,
            bounced: 0,
            blacklisted: Some(mark("unsubscribe", now)),
            resubscribed: None,
        };
        let st = recipient_status(None, Some(1), true, &record, &[], now);
        let d = &st.conditions[1];
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("False", reasons::UNSUBSCRIBED)
        );
        // The way back is the recipient's or a recorded operator's, never the unblock
        // annotation.
        assert!(d.message.contains("finrep resubscribe"), "{}", d.message);
        assert!(
            d.message.contains("finrep.io/unblock lifts bounces only"),
            "{}",
            d.message
        );
    }

    #[test]
    fn a_bounced_recipient_is_not_deliverable_until_unblocked() {
        let now = at("2026-11-23T00:00:00Z");
        let record = DeliveryRecord {
            last: Some((
                "2026-11-23".parse().unwrap(),
                "brief".into(),
                DeliveryStatus::Bounced,
            )),
            delivered: 10,
            bounced: 1,
            blacklisted: Some(BlacklistMark {
                code: Some(93000),
                reply: Some("HTTP 200: invalid webhook url".into()),
                ..mark("bounce", now)
            }),
            resubscribed: None,
        };
        let st = recipient_status(None, Some(2), true, &record, &[], now);
        assert!(st.blacklisted);
        let d = &st.conditions[1];
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("False", reasons::BLACKLISTED)
        );
        // The platform's (or server's) code is in the message, as a bounce's reply is.
        assert!(
            d.message
                .contains("bounce: 93000 HTTP 200: invalid webhook url"),
            "{}",
            d.message
        );
        assert_eq!(st.last_delivered.as_ref().unwrap().outcome, "bounced");
        assert_eq!(
            unblock_request(Some("2026-11-23"), Some(&st)),
            Some("2026-11-23")
        );
        let mut acked = st.clone();
        acked.handled_unblock = Some("2026-11-23".into());
        assert_eq!(unblock_request(Some("2026-11-23"), Some(&acked)), None);
        let lifted = recipient_status(
            Some(&acked),
            Some(2),
            true,
            &DeliveryRecord {
                blacklisted: None,
                ..record
            },
            &[],
            now,
        );
        assert_eq!(lifted.conditions[1].status, "True");
        assert_eq!(lifted.handled_unblock.as_deref(), Some("2026-11-23"));
    }

    /// The controller's cache keeps a thinned status and a digest (`api::CatalogEntry`): what
    /// a reconcile computes from it, and whether it writes, must be what it would be with the
    /// whole status.
    #[test]
    fn a_cached_status_gives_the_same_next_status_and_write_decision() {
        use crate::api::{CatalogEntry, Recipient, Source};
        let then = at("2026-11-23T00:00:00Z");
        let now = at("2026-11-24T00:00:00Z");
        let bounced = DeliveryRecord {
            last: Some((
                "2026-11-23".parse().unwrap(),
                "brief".into(),
                DeliveryStatus::Bounced,
            )),
            delivered: 4,
            bounced: 1,
            blacklisted: Some(mark("550 no such user", then)),
            resubscribed: None,
        };
        let mut written = recipient_status(None, Some(2), true, &bounced, &[], then);
        written.handled_unblock = Some("1".into());
        let mut r: Recipient = serde_json::from_value(serde_json::json!({
            "apiVersion": "finrep.io/v1alpha1", "kind": "Recipient",
            "metadata": {"name": "r", "namespace": "desk", "generation": 2},
            "spec": {"email": "a@example.com"},
        }))
        .unwrap();
        r.status = Some(written.clone());
        let entry = CatalogEntry::new(r);
        assert!(entry.to_object().status.is_none());
        let previous = entry.previous_status();
        let cached = previous.as_ref();
        assert!(cached.unwrap().conditions[0].message.is_empty());
        for (record, enabled) in [
            (bounced.clone(), true),
            (bounced.clone(), false),
            (DeliveryRecord::default(), true),
        ] {
            let from_whole = recipient_status(Some(&written), Some(2), enabled, &record, &[], now);
            let from_cache = recipient_status(cached, Some(2), enabled, &record, &[], now);
            assert_eq!(from_cache, from_whole);
            assert_eq!(entry.status_is(&from_cache), from_whole == written);
        }
        assert!(entry.status_is(&written));
        assert_eq!(unblock_request(Some("1"), cached), None);
        assert_eq!(unblock_request(Some("2"), cached), Some("2"));

        let fetched = FetchState {
            last_fetch: Some(then),
            last_success: Some(then),
            items_last_fetch: 7,
            ..Default::default()
        };
        let written = source_status(None, Some(1), Some(&fetched), &[], then);
        let mut s: Source = serde_json::from_value(serde_json::json!({
            "apiVersion": "finrep.io/v1alpha1", "kind": "Source",
            "metadata": {"name": "s", "namespace": "desk", "generation": 1},
            "spec": {"kind": "feed", "url": "https://example.com/feed.xml", "category": "宏观"},
        }))
        .unwrap();
        s.status = Some(written.clone());
        let entry = CatalogEntry::new(s);
        let previous = entry.previous_status();
        let cached = previous.as_ref();
        let failing = FetchState {
            consecutive_failures: 3,
            last_error: Some("timeout".into()),
            ..fetched.clone()
        };
        for state in [&fetched, &failing] {
            let from_whole = source_status(Some(&written), Some(1), Some(state), &[], now);
            let from_cache = source_status(cached, Some(1), Some(state), &[], now);
            assert_eq!(from_cache, from_whole);
            assert_eq!(entry.status_is(&from_cache), from_whole == written);
        }
    }
}
