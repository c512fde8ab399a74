//! The run's vocabulary: phases, fetch and delivery states, the outcome of a run with its
//! counts, error categories, and the exit codes a run's process ends with.
//!
//! Plain data with no I/O. The pipeline writes outcomes; the controller and the standalone
//! scheduler read them (from PostgreSQL or in-process) and build Jobs whose
//! `podFailurePolicy` names these exit codes; the console shows these states. Every state is
//! an enum whose `as_str` is also the value stored in the database, so no phase or status is
//! spelled anywhere else (the migrations' CHECK constraints are compared with `ALL` by a test).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::api::RunPhase;

/// A stored value that names no known state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownState {
    pub what: &'static str,
    pub value: String,
}

/// `as_str`, `ALL`, `Display` and `FromStr` for a state enum, from one table of names.
macro_rules! state_names {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every state, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The name stored in the database and shown to people.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownState;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(UnknownState { what: $what, value: s.to_string() }),
                }
            }
        }
    };
}

state_names!(RunPhase, "run phase", {
    Queued => "Queued",
    Pending => "Pending",
    Collecting => "Collecting",
    Composing => "Composing",
    Sending => "Sending",
    Succeeded => "Succeeded",
    PartiallyDelivered => "PartiallyDelivered",
    Failed => "Failed",
    Missed => "Missed",
});

impl RunPhase {
    /// The phases a run record holds: `Queued` is the controller's alone (a due run waiting
    /// for its turn has no record yet).
    pub fn recorded() -> impl Iterator<Item = RunPhase> {
        Self::ALL.iter().copied().filter(|p| *p != Self::Queued)
    }

    /// The run is over: nothing more will happen to it without a new attempt.
    pub const fn is_finished(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::PartiallyDelivered | Self::Failed | Self::Missed
        )
    }
}

/// What a scheduler runs at a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SlotTask {
    /// The report's pipeline run.
    Run,
    /// The database backup of the report's backup schedule.
    Backup,
}

state_names!(SlotTask, "slot task", {
    Run => "run",
    Backup => "backup",
});

/// What became of a slot a scheduler handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SlotState {
    /// Claimed and started; not finished yet (or interrupted: resumed on restart).
    Started,
    Finished,
    /// Ended with an error that a retry would not fix.
    Failed,
    /// Passed beyond its deadline without a run.
    Missed,
}

state_names!(SlotState, "slot state", {
    Started => "Started",
    Finished => "Finished",
    Failed => "Failed",
    Missed => "Missed",
});

/// Where a stored preview is (`previews.status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PreviewState {
    Running,
    Ready,
    Failed,
}

state_names!(PreviewState, "preview state", {
    Running => "running",
    Ready => "ready",
    Failed => "failed",
});

/// Where a test copy is (`test_sends.status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TestSendState {
    /// Claimed; the request is under way (or was, when its process died).
    Sending,
    Sent,
    Failed,
    /// Not sent: blacklisted or unsubscribed when its turn came.
    Refused,
    /// Its process stopped during the request: it may have arrived, and is not sent again.
    Uncertain,
}

state_names!(TestSendState, "test send state", {
    Sending => "sending",
    Sent => "sent",
    Failed => "failed",
    Refused => "refused",
    Uncertain => "uncertain",
});

/// What a test copy is a copy of (`test_sends.copy_of`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyOf {
    Preview,
    Run,
}

state_names!(CopyOf, "test copy origin", {
    Preview => "preview",
    Run => "run",
});

/// How the fetch of one source ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FetchStatus {
    Ok,
    /// 304: the items remembered from the last fetch stand in.
    NotModified,
    Failed,
}

state_names!(FetchStatus, "fetch status", {
    Ok => "ok",
    NotModified => "not-modified",
    Failed => "failed",
});

/// Why a source failed: a low-cardinality name for logs, metrics, status and the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FetchErrorKind {
    /// No complete answer within the source's deadline.
    Timeout,
    /// A non-success HTTP status.
    Http,
    /// The body was not what the source's kind says (malformed feed, JSON, HTML mapping).
    Parse,
    /// The network guard refused an address, a scheme or a redirect.
    Blocked,
    /// The (decompressed) body passed the source's size cap.
    TooLarge,
    /// DNS, TCP or TLS failed.
    Connect,
    /// The source's own settings cannot work (a missing secret, a bad filter).
    Config,
    /// Handling this source hit a bug; the run went on without it.
    Panic,
    /// Recording this source's outcome in the database failed.
    Store,
}

state_names!(FetchErrorKind, "fetch error kind", {
    Timeout => "timeout",
    Http => "http",
    Parse => "parse",
    Blocked => "blocked",
    TooLarge => "too-large",
    Connect => "connect",
    Config => "config",
    Panic => "panic",
    Store => "store",
});

/// State of one delivery (a report × recipient row of `delivery_log`); docs/delivery.md has
/// the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryStatus {
    Pending,
    /// Claimed for an SMTP transaction that has not been marked yet.
    Sending,
    Sent,
    /// Not made by the end of the mail window.
    Deferred,
    Failed,
    /// Permanently rejected: the address is blacklisted.
    Bounced,
    /// Found still `sending` by a later attempt: the process died during the transaction.
    Uncertain,
}

state_names!(DeliveryStatus, "delivery status", {
    Pending => "pending",
    Sending => "sending",
    Sent => "sent",
    Deferred => "deferred",
    Failed => "failed",
    Bounced => "bounced",
    Uncertain => "uncertain",
});

impl DeliveryStatus {
    /// The order a delivery log lists what did not go out: the failures a person acts on
    /// first, then what may still go (sent ones come after all of these).
    pub const NOT_DELIVERED_FIRST: [DeliveryStatus; 6] = [
        Self::Failed,
        Self::Bounced,
        Self::Uncertain,
        Self::Deferred,
        Self::Pending,
        Self::Sending,
    ];
}

/// Where a delivery goes: an e-mail over SMTP, or a post to a chat group's bot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Wecom,
    Dingtalk,
    Feishu,
    Lark,
}

state_names!(Channel, "delivery channel", {
    Email => "email",
    Wecom => "wecom",
    Dingtalk => "dingtalk",
    Feishu => "feishu",
    Lark => "lark",
});

impl From<crate::api::ChatPlatform> for Channel {
    fn from(p: crate::api::ChatPlatform) -> Self {
        use crate::api::ChatPlatform as P;
        match p {
            P::Wecom => Self::Wecom,
            P::Dingtalk => Self::Dingtalk,
            P::Feishu => Self::Feishu,
            P::Lark => Self::Lark,
        }
    }
}

impl Channel {
    /// A webhook post has no idempotency key: a copy whose fate is unknown is not posted again
    /// on its own (a second post would be a second message in the group), whereas an e-mail is
    /// resent with the same Message-ID, by which receiving systems drop the duplicate.
    pub const fn resends_uncertain(self) -> bool {
        matches!(self, Self::Email)
    }
}

/// How one call to an external provider (the summariser) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderOutcome {
    Ok,
    Timeout,
    RateLimited,
    Error,
    /// Answered from the cache, no call made.
    Cached,
}

state_names!(ProviderOutcome, "provider outcome", {
    Ok => "ok",
    Timeout => "timeout",
    RateLimited => "rate-limited",
    Error => "error",
    Cached => "cached",
});

/// Why an address is on a namespace's blacklist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlacklistReason {
    Bounce,
    Unsubscribe,
    Manual,
}

state_names!(BlacklistReason, "blacklist reason", {
    Bounce => "bounce",
    Unsubscribe => "unsubscribe",
    Manual => "manual",
});

impl BlacklistReason {
    /// The order a list of addresses shows those not mailed: what a person can fix first
    /// (a bounce, a block), then the readers' own choices; the mailed ones after all of these.
    pub const NOT_MAILED_FIRST: [BlacklistReason; 3] =
        [Self::Bounce, Self::Manual, Self::Unsubscribe];
}

/// The steps of a run, as timed and stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Collect,
    Extract,
    Summarize,
    Compose,
    Send,
}

state_names!(Step, "step", {
    Collect => "collect",
    Extract => "extract",
    Summarize => "summarize",
    Compose => "compose",
    Send => "send",
});

/// What kind of thing went wrong, for logs and metrics (low cardinality).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCategory {
    /// PostgreSQL was unreachable or refused a query.
    Database,
    /// A remote server (SMTP, HTTP) was unreachable.
    Network,
    /// The plan, a template or a setting is invalid; retrying cannot help.
    Config,
    /// Writing local files failed.
    Io,
    /// A bug: a task panicked.
    Internal,
    /// Another attempt at the same run holds it; this one may try again once it is done.
    Busy,
}

state_names!(ErrorCategory, "error category", {
    Database => "database",
    Network => "network",
    Config => "config",
    Io => "io",
    Internal => "internal",
    Busy => "busy",
});

/// How a run's process ends, as a Job sees it (docs/delivery.md). The controller's Job
/// builder turns these into a `podFailurePolicy`: `Invalid` fails the Job at once, `Retry`
/// lets it retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunExit {
    /// The report was delivered to every recipient (or nothing was to be sent).
    Done,
    /// Invalid plan, configuration or template: retrying will not help.
    Invalid,
    /// Done, with deliveries that failed, bounced or were deferred: recorded, not retried.
    DoneWithFailures,
    /// Retry me: the database or the mail server was unreachable; nothing was lost.
    Retry,
}

impl RunExit {
    pub const ALL: [RunExit; 4] = [
        Self::Done,
        Self::Invalid,
        Self::DoneWithFailures,
        Self::Retry,
    ];

    pub const fn code(self) -> u8 {
        match self {
            Self::Done => 0,
            Self::Invalid => 1,
            Self::DoneWithFailures => 2,
            // EX_TEMPFAIL of sysexits.h.
            Self::Retry => 75,
        }
    }

    pub fn from_code(code: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|e| i32::from(e.code()) == code)
    }

    /// The exit of a run that finished with this outcome.
    pub fn for_outcome(outcome: &RunOutcome) -> Self {
        match outcome
            .delivery
            .as_ref()
            .map_or(0, DeliveryCounts::undelivered)
        {
            0 => Self::Done,
            _ => Self::DoneWithFailures,
        }
    }

    /// The exit of a run that stopped with an error.
    pub fn for_failure(transient: bool) -> Self {
        if transient {
            Self::Retry
        } else {
            Self::Invalid
        }
    }
}

/// Longest run name: a Job's name is copied into a label value, which holds 63 characters.
pub const MAX_RUN_NAME: usize = 63;

/// The name of a run's Job and plan, derived from the report and the local date alone (and,
/// for a manual run, the value of its `finrep.io/run-now` annotation), so a restarted,
/// lagging or duplicated scheduler can never start a second run for one slot: creating the
/// same name twice is refused by the API server. `<report>-<yyyymmdd>` for the scheduled
/// run, `<report>-<yyyymmdd>-m<hash>` for a manual one; a long report name is shortened and
/// made unique with a hash of the whole name.
pub fn run_name(report: &str, date: chrono::NaiveDate, manual: Option<&str>) -> String {
    let mut suffix = format!("-{}", date.format("%Y%m%d"));
    if let Some(value) = manual {
        suffix += &format!("-m{}", short_hash(value));
    }
    bounded_name(report, &suffix)
}

/// `<report><suffix>` within a run name's length: a long report name is shortened and made
/// unique with a hash of the whole name.
pub fn bounded_name(report: &str, suffix: &str) -> String {
    let budget = MAX_RUN_NAME.saturating_sub(suffix.len()).max(10);
    let base = if report.chars().count() <= budget {
        report.to_string()
    } else {
        let keep: String = report.chars().take(budget - 9).collect();
        format!(
            "{}-{}",
            keep.trim_end_matches(['-', '.']),
            short_hash(report)
        )
    };
    base + suffix
}

/// Eight hex digits of the SHA-256 of `s`: a short, stable tag for names.
pub fn short_hash(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deliveries of one report by state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryCounts {
    pub recipients: i64,
    pub pending: i64,
    pub sent: i64,
    pub deferred: i64,
    pub failed: i64,
    pub bounced: i64,
    pub uncertain: i64,
    /// Deliveries found interrupted during their SMTP transaction and resent (same
    /// Message-ID); their recipients may hold two copies.
    pub resent_after_interruption: i64,
}

impl DeliveryCounts {
    /// Adds `n` rows in `status` (`resent` of them were once found interrupted).
    pub fn add(&mut self, status: DeliveryStatus, n: i64, resent: i64) {
        self.recipients += n;
        match status {
            DeliveryStatus::Pending | DeliveryStatus::Sending => self.pending += n,
            DeliveryStatus::Sent => {
                self.sent += n;
                self.resent_after_interruption += resent;
            }
            DeliveryStatus::Deferred => self.deferred += n,
            DeliveryStatus::Failed => self.failed += n,
            DeliveryStatus::Bounced => self.bounced += n,
            DeliveryStatus::Uncertain => self.uncertain += n,
        }
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &DeliveryCounts) {
        self.recipients += other.recipients;
        self.pending += other.pending;
        self.sent += other.sent;
        self.deferred += other.deferred;
        self.failed += other.failed;
        self.bounced += other.bounced;
        self.uncertain += other.uncertain;
        self.resent_after_interruption += other.resent_after_interruption;
    }

    /// Deliveries not (yet) accepted by the mail server.
    pub fn undelivered(&self) -> i64 {
        self.pending + self.deferred + self.failed + self.bounced + self.uncertain
    }

    /// The phase a run ends in after delivering.
    pub fn final_phase(&self) -> RunPhase {
        match (self.sent, self.undelivered()) {
            (_, 0) => RunPhase::Succeeded,
            (0, _) => RunPhase::Failed,
            _ => RunPhase::PartiallyDelivered,
        }
    }
}

/// What happened to one source.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SourceOutcome {
    pub name: String,
    pub status: FetchStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    pub items: usize,
    pub latency_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<FetchErrorKind>,
    /// Cleaned and bounded (it may quote the source's content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Start and end of a step.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StepOutcome {
    pub step: Step,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub ok: bool,
}

/// Counts of what extraction kept and dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractStats {
    pub raw_items: usize,
    pub invalid: usize,
    /// Items whose handling panicked; each was dropped on its own.
    #[serde(default)]
    pub failed: usize,
    pub too_old: usize,
    /// Items published after the slot of an earlier day's run (later news).
    #[serde(default)]
    pub too_new: usize,
    pub filtered: usize,
    pub same_url: usize,
    pub reported_before: usize,
    pub same_story: usize,
    pub over_caps: usize,
    pub selected: usize,
}

/// What the summariser did.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SummarizerOutcome {
    pub provider: String,
    pub model: String,
    pub calls: usize,
    pub ok: usize,
    pub cached: usize,
    pub timeouts: usize,
    pub rate_limited: usize,
    pub errors: usize,
    /// Items that kept their extractive summary.
    pub extractive: usize,
    pub fell_back: bool,
    /// URLs, e-mail addresses and phone numbers the model wrote that its article did not
    /// contain, dropped from its answers.
    #[serde(default)]
    pub ungrounded: usize,
}

/// The record of a run, printed as one JSON line and stored with the report.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunOutcome {
    pub namespace: String,
    pub report: String,
    pub date: String,
    pub report_id: i64,
    pub phase: RunPhase,
    pub manual: bool,
    /// Where the lookback window ended (RFC 3339 in the report's zone): the run's start, or
    /// the slot of an earlier day's run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookback_ends_at: Option<String>,
    /// The report was composed by an earlier attempt today and reused.
    pub reused: bool,
    pub articles: usize,
    pub recipients: usize,
    pub sources_total: usize,
    pub sources_ok: usize,
    pub sources_not_modified: usize,
    pub sources_failed: usize,
    pub sources: Vec<SourceOutcome>,
    pub extract: ExtractStats,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summarizer: Option<SummarizerOutcome>,
    pub steps: Vec<StepOutcome>,
    pub notes: Vec<String>,
    /// Deliveries by state after this attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryCounts>,
    /// Peak resident memory of the process at the end of the run, in KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_kib: Option<u64>,
}

impl RunOutcome {
    /// The outcome of a run that has not done anything yet.
    pub fn new(namespace: &str, report: &str, date: chrono::NaiveDate, manual: bool) -> Self {
        Self {
            namespace: namespace.to_string(),
            report: report.to_string(),
            date: date.to_string(),
            report_id: 0,
            phase: RunPhase::Pending,
            manual,
            lookback_ends_at: None,
            reused: false,
            articles: 0,
            recipients: 0,
            sources_total: 0,
            sources_ok: 0,
            sources_not_modified: 0,
            sources_failed: 0,
            sources: Vec::new(),
            extract: ExtractStats::default(),
            summarizer: None,
            steps: Vec::new(),
            notes: Vec::new(),
            delivery: None,
            peak_rss_kib: None,
        }
    }

    /// Counts one source's outcome.
    pub fn add_source(&mut self, source: SourceOutcome) {
        match source.status {
            FetchStatus::Ok => self.sources_ok += 1,
            FetchStatus::NotModified => self.sources_not_modified += 1,
            FetchStatus::Failed => self.sources_failed += 1,
        }
        self.sources.push(source);
    }

    /// Names of the sources that failed, in plan order.
    pub fn failed_sources(&self) -> impl Iterator<Item = &str> {
        self.sources
            .iter()
            .filter(|s| s.status == FetchStatus::Failed)
            .map(|s| s.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in RunPhase::ALL {
            assert_eq!(p.as_str().parse::<RunPhase>(), Ok(*p));
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
        for s in DeliveryStatus::ALL {
            assert_eq!(s.as_str().parse::<DeliveryStatus>(), Ok(*s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for k in FetchErrorKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for s in FetchStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!("Done".parse::<RunPhase>().is_err());
    }

    #[test]
    fn exit_codes_are_stable() {
        let codes: Vec<u8> = RunExit::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(codes, [0, 1, 2, 75]);
        assert_eq!(RunExit::from_code(75), Some(RunExit::Retry));
        assert_eq!(RunExit::from_code(3), None);
        assert_eq!(RunExit::for_failure(true), RunExit::Retry);
        assert_eq!(RunExit::for_failure(false), RunExit::Invalid);
    }

    #[test]
    fn run_names_are_deterministic_and_fit_a_label() {
        let date = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        assert_eq!(
            run_name("morning-brief", date, None),
            "morning-brief-20261123"
        );
        let manual = run_name("morning-brief", date, Some("2026-11-23T07:10"));
        assert!(manual.starts_with("morning-brief-20261123-m"), "{manual}");
        assert_eq!(
            manual,
            run_name("morning-brief", date, Some("2026-11-23T07:10"))
        );
        assert_ne!(manual, run_name("morning-brief", date, Some("again")));
        let long = "a".repeat(70);
        let other = format!("{}b", "a".repeat(69));
        for name in [&long, &other] {
            let n = run_name(name, date, Some("x"));
            assert!(n.len() <= MAX_RUN_NAME, "{n}");
        }
        assert_ne!(run_name(&long, date, None), run_name(&other, date, None));
    }

    #[test]
    fn final_phase_from_counts() {
        let mut c = DeliveryCounts::default();
        assert_eq!(c.final_phase(), RunPhase::Succeeded);
        c.add(DeliveryStatus::Sent, 3, 1);
        assert_eq!(c.final_phase(), RunPhase::Succeeded);
        assert_eq!(c.resent_after_interruption, 1);
        c.add(DeliveryStatus::Deferred, 1, 0);
        assert_eq!(c.final_phase(), RunPhase::PartiallyDelivered);
        let mut none = DeliveryCounts::default();
        none.add(DeliveryStatus::Bounced, 2, 0);
        assert_eq!(none.final_phase(), RunPhase::Failed);
        assert_eq!(none.recipients, 2);
    }
}
