//! The run plan: one immutable document saying what a run of a report does — which sources
//! to collect, which recipients to mail, with which settings — resolved at trigger time.
//!
//! In Kubernetes it is stored in a ConfigMap mounted into the run's Job; in standalone mode it
//! is passed in-process. `plan_for` ("the plan for report R at time T") and `build_plan`
//! under it are the one way to make one, for `finrep run`, standalone mode and the
//! controller alike. Secrets never enter the plan: it names the environment variables that
//! carry them. A plan read from a file is checked with `validate`: it may come from another
//! image's controller, or from a hand.

use std::collections::BTreeSet;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use chrono_tz::Tz;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use crate::api::selector::Selectable;
use crate::api::{
    ChatGroup, ContentSpec, DailyReport, MailFormat, MailWindow, Recipient, RecipientSpec,
    SecretKeyRef, SmtpSpec, Source, SourceSpec, selector,
};
use crate::schedule::{Schedule, ScheduleError, local_instant, parse_time_zone};
use crate::validation::{self, FieldProblem, ResourceSet, Severity};

/// Version of the plan document format.
pub const PLAN_VERSION: u32 = 1;

/// The plan's key in its ConfigMap (`binaryData`): gzip-compressed YAML. A ConfigMap holds at
/// most 1 MiB; a report for 10,000 recipients makes about 1.5 MB of YAML, a tenth of that
/// compressed (a test holds it under the limit with base64's overhead counted).
pub const PLAN_FILE: &str = "plan.yaml.gz";

/// Largest plan accepted once decompressed: a bound on what a damaged or hostile file can
/// cost.
const MAX_PLAN_BYTES: u64 = 64 << 20;

/// Which run a plan is for: a report's local date, and the instant it was scheduled for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Slot {
    /// Local date of the run in the report's time zone; runs are identified by it.
    pub date: NaiveDate,
    /// The scheduled instant, with the zone's UTC offset.
    pub scheduled_for: DateTime<FixedOffset>,
    /// Started by a person (`finrep run`, the run-now annotation) rather than the schedule.
    pub manual: bool,
}

/// Where a run's lookback window ends: what "the last N hours" are counted back from.
///
/// A run of today collects what is new when it starts. A run of an earlier day (`finrep run
/// --date`, a catch-up after midnight) collects what that day's report would have held, so
/// its window ends at that day's slot, whenever it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LookbackEnd {
    /// The instant the run starts (plans written before this field existed mean this).
    #[default]
    RunStart,
    /// The slot's scheduled instant.
    Slot,
}

/// A source as the pipeline needs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedSource {
    pub name: String,
    pub spec: SourceSpec,
}

impl PlannedSource {
    pub fn display_name(&self) -> &str {
        self.spec.display_name.as_deref().unwrap_or(&self.name)
    }
}

/// A recipient as the pipeline needs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedRecipient {
    pub name: String,
    /// The identity of a delivery: the lower-cased e-mail address, or `<platform>:<name>` for
    /// a chat group ([`RecipientSpec::address`]). Plans of older controllers call it `email`.
    #[serde(alias = "email")]
    pub address: String,
    /// The chat group, for a recipient that is one (its webhook and signing secret are named
    /// here by their Secret keys only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<ChatGroup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Sections wanted; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    pub format: MailFormat,
}

/// An environment variable the run needs, and the Secret key it comes from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretEnv {
    pub env: String,
    pub secret: String,
    pub key: String,
}

/// Everything one run of one report needs, apart from secrets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunPlan {
    pub plan_version: u32,
    pub namespace: String,
    pub report: String,
    pub title: String,
    pub time_zone: String,
    pub slot: Slot,
    /// Where the lookback window ends (see [`RunPlan::lookback_ends_at`]).
    #[serde(default)]
    pub lookback_end: LookbackEnd,
    pub mail_window: MailWindow,
    pub content: ContentSpec,
    /// The mail server; `None` for a report whose recipients are all chat groups.
    pub smtp: Option<SmtpSpec>,
    pub sources: Vec<PlannedSource>,
    pub recipients: Vec<PlannedRecipient>,
    /// Recipients left out because their address is blacklisted (for the run outcome).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_recipients: Vec<String>,
    /// Environment variables the run reads secrets from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretEnv>,
    /// What the Job does with the report: the day's run unless it says otherwise.
    #[serde(default, skip_serializing_if = "PlanPurpose::is_run")]
    pub purpose: PlanPurpose,
}

/// What a plan's Job does with the report it composes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum PlanPurpose {
    /// The day's run: compose (or resume) the day's report and deliver it to every recipient.
    #[default]
    Run,
    /// Compose the report and send it to nobody: the result is stored as a preview
    /// (`previews`), never as the day's run. The plan holds no recipient but the one whose
    /// copy is previewed, and no mail or chat credential.
    #[serde(rename_all = "camelCase")]
    Preview {
        /// The `finrep.io/preview` value that asked for it.
        request: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recipient: Option<String>,
    },
    /// One copy, marked as a test, of the newest preview or run to the plan's one recipient
    /// (`test_sends`); no delivery row is touched. The plan holds no source.
    #[serde(rename_all = "camelCase")]
    TestSend {
        /// The `finrep.io/test-send` value that asked for it.
        request: String,
        recipient: String,
    },
}

impl PlanPurpose {
    pub fn is_run(&self) -> bool {
        matches!(self, Self::Run)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("DailyReport {report}: {source}")]
    Schedule {
        report: String,
        source: ScheduleError,
    },
    #[error("DailyReport {report} has no slot on {date}: the schedule does not fire that day")]
    NoSlotOnDate { report: String, date: NaiveDate },
    #[error("cannot read plan: {0}")]
    Decode(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
}

/// When a run is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunAt {
    /// A slot of the schedule (the scheduler found it due).
    Slot(DateTime<Utc>),
    /// A manual run: today's run of `date` (the report's local date), or of the local date
    /// at `now` when none is given.
    Manual {
        date: Option<NaiveDate>,
        now: DateTime<Utc>,
    },
}

/// The plan for report `name` of `namespace` at `when`, from a set of resources and the
/// namespace's blacklist (lower-cased addresses).
pub fn plan_for(
    set: &ResourceSet,
    namespace: &str,
    name: &str,
    when: RunAt,
    blacklist: &BTreeSet<String>,
) -> Result<RunPlan, PlanError> {
    let report = find_report(set, namespace, name)?;
    let (slot, lookback_end) = match when {
        RunAt::Slot(at) => (scheduled_slot(report, at)?, LookbackEnd::RunStart),
        RunAt::Manual { date, now } => {
            let today = local_date(report, now)?;
            let date = date.unwrap_or(today);
            (manual_slot(report, date)?, lookback_end_for(date, today))
        }
    };
    let mut plan = build_plan(report, &set.sources, &set.recipients, blacklist, slot);
    plan.lookback_end = lookback_end;
    Ok(plan)
}

/// A run of an earlier local date than `today` looks back from that day's slot; a run of
/// today (or of a later date, which waits for nothing) from its start.
pub fn lookback_end_for(date: NaiveDate, today: NaiveDate) -> LookbackEnd {
    if date < today {
        LookbackEnd::Slot
    } else {
        LookbackEnd::RunStart
    }
}

/// The DailyReport `name` of `namespace`; when there is none, the error says in which
/// namespaces a report of that name exists, or which reports the namespace has.
pub fn find_report<'a>(
    set: &'a ResourceSet,
    namespace: &str,
    name: &str,
) -> Result<&'a DailyReport, PlanError> {
    let ns_of = |r: &DailyReport| r.namespace().unwrap_or_else(|| "default".to_string());
    if let Some(r) = set
        .reports
        .iter()
        .find(|r| r.name_any() == name && ns_of(r) == namespace)
    {
        return Ok(r);
    }
    let elsewhere: BTreeSet<String> = set
        .reports
        .iter()
        .filter(|r| r.name_any() == name)
        .map(ns_of)
        .collect();
    let message = if let Some(first) = elsewhere.iter().next() {
        format!(
            "no DailyReport {name} in namespace {namespace}; it is in namespace {} (add -n {first})",
            elsewhere.iter().cloned().collect::<Vec<_>>().join(", ")
        )
    } else {
        let here: Vec<String> = set
            .reports
            .iter()
            .filter(|r| ns_of(r) == namespace)
            .map(|r| r.name_any())
            .collect();
        if here.is_empty() {
            format!("no DailyReport {name}: namespace {namespace} has no DailyReport")
        } else {
            format!(
                "no DailyReport {name} in namespace {namespace}; it has {}",
                here.join(", ")
            )
        }
    };
    Err(PlanError::NotFound(message))
}

/// The slot of a scheduled run at instant `at`: its local date and time in the report's zone.
pub fn scheduled_slot(report: &DailyReport, at: DateTime<Utc>) -> Result<Slot, PlanError> {
    let tz: Tz = parse_time_zone(&report.spec.time_zone).map_err(|source| PlanError::Schedule {
        report: report.name_any(),
        source,
    })?;
    let local = at.with_timezone(&tz);
    Ok(Slot {
        date: local.date_naive(),
        scheduled_for: local.fixed_offset(),
        manual: false,
    })
}

/// The environment variable carrying a Secret key: `FINREP_SECRET_<SECRET>_<KEY>`, upper-cased,
/// with every character other than letters and digits turned into `_`.
pub fn secret_env_name(secret: &str, key: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("FINREP_SECRET_{}_{}", clean(secret), clean(key))
}

fn secret_env(r: &SecretKeyRef) -> SecretEnv {
    SecretEnv {
        env: secret_env_name(&r.name, &r.key),
        secret: r.name.clone(),
        key: r.key.clone(),
    }
}

/// Builds the plan of `report` for `slot` from the resources of its namespace.
///
/// Sources: selected by label, enabled. Recipients: selected by label, enabled, and not in
/// `blacklist` (lower-cased addresses). Both sorted by name, so equal inputs give equal plans.
pub fn build_plan(
    report: &DailyReport,
    sources: &[Source],
    recipients: &[Recipient],
    blacklist: &BTreeSet<String>,
    slot: Slot,
) -> RunPlan {
    let namespace = report.namespace().unwrap_or_else(|| "default".to_string());
    let in_namespace =
        |ns: Option<String>| ns.unwrap_or_else(|| "default".to_string()) == namespace;
    let spec = &report.spec;

    let mut planned_sources: Vec<PlannedSource> = sources
        .iter()
        .filter(|s| in_namespace(s.namespace()))
        .filter(|s| s.spec.enabled)
        .filter(|s| selector::matches(spec.source_selector.as_ref(), s.labels()))
        .map(|s| PlannedSource {
            name: s.name_any(),
            spec: s.spec.clone(),
        })
        .collect();
    planned_sources.sort_by(|a, b| a.name.cmp(&b.name));

    let (planned_recipients, excluded) = planned_recipients(report, recipients, blacklist);
    let secrets = secret_envs(
        planned_sources.iter().map(|s| &s.spec),
        planned_recipients.iter().filter_map(|r| r.chat.as_ref()),
        spec,
    );

    RunPlan {
        plan_version: PLAN_VERSION,
        namespace,
        report: report.name_any(),
        title: spec.title.clone(),
        time_zone: spec.time_zone.clone(),
        slot,
        lookback_end: LookbackEnd::RunStart,
        mail_window: spec.mail_window.clone(),
        content: spec.content.clone(),
        smtp: spec.smtp.clone(),
        sources: planned_sources,
        recipients: planned_recipients,
        excluded_recipients: excluded,
        secrets,
        purpose: PlanPurpose::Run,
    }
}

/// The report's recipients of its namespace: selected by label, enabled, not blacklisted
/// (those are returned apart, by name), one per address, sorted by name.
fn planned_recipients(
    report: &DailyReport,
    recipients: &[Recipient],
    blacklist: &BTreeSet<String>,
) -> (Vec<PlannedRecipient>, Vec<String>) {
    let namespace = report.namespace().unwrap_or_else(|| "default".to_string());
    let mut planned = Vec::new();
    let mut excluded = Vec::new();
    for r in recipients
        .iter()
        .filter(|r| r.namespace().unwrap_or_else(|| "default".to_string()) == namespace)
        .filter(|r| r.spec.enabled)
        .filter(|r| selector::matches(report.spec.recipient_selector.as_ref(), r.labels()))
    {
        let name = r.name_any();
        let address = r.spec.address(&name);
        // An unsubscribe is recorded under the address's identity (no `+tag`): every variant
        // of an address that left stays out.
        if blacklist.contains(&address)
            || blacklist.contains(&crate::unsubscribe::address_key(&address))
        {
            excluded.push(name);
            continue;
        }
        planned.push(PlannedRecipient {
            name,
            address,
            chat: r.spec.chat.as_deref().cloned(),
            display_name: r.spec.display_name.clone(),
            categories: r.spec.categories.clone(),
            format: r.spec.format,
        });
    }
    planned.sort_by(|a, b| a.name.cmp(&b.name));
    // Two Recipients with one address would mean two copies; validation refuses it, and the
    // plan keeps the first so a delivery is still once per address.
    let mut seen = BTreeSet::new();
    planned.retain(|r| seen.insert(r.address.clone()));
    excluded.sort();
    (planned, excluded)
}

/// Every Secret key the run reads, as the environment variables that carry them.
pub(crate) fn secret_envs<'a>(
    sources: impl IntoIterator<Item = &'a SourceSpec>,
    chat_groups: impl IntoIterator<Item = &'a ChatGroup>,
    spec: &crate::api::DailyReportSpec,
) -> Vec<SecretEnv> {
    let mut secrets = BTreeSet::new();
    for s in sources {
        for h in &s.fetch.headers_from {
            secrets.insert(secret_env(&h.secret_key_ref));
        }
    }
    for c in chat_groups {
        secrets.insert(secret_env(&c.webhook_secret_ref));
        if let Some(r) = &c.signing_secret_ref {
            secrets.insert(secret_env(r));
        }
    }
    if let Some(r) = spec
        .content
        .summarizer
        .as_ref()
        .and_then(|s| s.api_key_secret_ref.as_ref())
    {
        secrets.insert(secret_env(r));
    }
    if let Some(c) = spec
        .smtp
        .as_ref()
        .and_then(|s| s.credentials_secret_ref.as_ref())
    {
        for key in [&c.username_key, &c.password_key] {
            secrets.insert(SecretEnv {
                env: secret_env_name(&c.name, key),
                secret: c.name.clone(),
                key: key.clone(),
            });
        }
    }
    secrets.into_iter().collect()
}

/// The Secrets a run of `report` reads, given the Sources and Recipients of its namespace
/// (only the enabled, selected ones count, as in the plan).
pub fn referenced_secrets<'a, S, R>(
    report: &'a DailyReport,
    sources_of_namespace: impl IntoIterator<Item = &'a S>,
    recipients_of_namespace: impl IntoIterator<Item = &'a R>,
) -> BTreeSet<String>
where
    S: Selectable<Spec = SourceSpec> + 'a,
    R: Selectable<Spec = RecipientSpec> + 'a,
{
    let selected = sources_of_namespace
        .into_iter()
        .filter(|s| s.spec().enabled)
        .filter(|s| selector::selects(report.spec.source_selector.as_ref(), *s))
        .map(|s| s.spec());
    let chat_groups = selected_chat_groups(report, recipients_of_namespace);
    secret_envs(selected, chat_groups, &report.spec)
        .into_iter()
        .map(|e| e.secret)
        .collect()
}

/// The chat groups among the enabled Recipients `report` selects.
pub fn selected_chat_groups<'a, R>(
    report: &'a DailyReport,
    recipients_of_namespace: impl IntoIterator<Item = &'a R>,
) -> impl Iterator<Item = &'a ChatGroup>
where
    R: Selectable<Spec = RecipientSpec> + 'a,
{
    recipients_of_namespace
        .into_iter()
        .filter(|r| r.spec().enabled)
        .filter(|r| selector::selects(report.spec.recipient_selector.as_ref(), *r))
        .filter_map(|r| r.spec().chat.as_deref())
}

/// The slot of a manual run on `date` (the report's local date): the instant the schedule
/// fires that day, or — when it does not fire that day — the start of the mail window.
pub fn manual_slot(report: &DailyReport, date: NaiveDate) -> Result<Slot, PlanError> {
    let spec = &report.spec;
    let name = report.name_any();
    let err = |source| PlanError::Schedule {
        report: name.clone(),
        source,
    };
    let schedule = Schedule::parse(&spec.schedule, &spec.time_zone).map_err(err)?;
    let tz = parse_time_zone(&spec.time_zone).map_err(err)?;
    let day_start = local_instant(tz, date, chrono::NaiveTime::MIN)
        .ok_or_else(|| PlanError::NoSlotOnDate {
            report: name.clone(),
            date,
        })?
        .with_timezone(&Utc);
    let fired = schedule
        .next_after(day_start - chrono::Duration::seconds(1))
        .filter(|t| t.date_naive() == date);
    let scheduled_for = match fired {
        Some(t) => t,
        None => {
            let start = crate::schedule::parse_local_time(&spec.mail_window.start).map_err(err)?;
            local_instant(tz, date, start).ok_or(PlanError::NoSlotOnDate {
                report: name.clone(),
                date,
            })?
        }
    };
    Ok(Slot {
        date,
        scheduled_for: scheduled_for.fixed_offset(),
        manual: true,
    })
}

/// The report's local date at `now`.
pub fn local_date(report: &DailyReport, now: DateTime<Utc>) -> Result<NaiveDate, PlanError> {
    let tz = parse_time_zone(&report.spec.time_zone).map_err(|source| PlanError::Schedule {
        report: report.name_any(),
        source,
    })?;
    Ok(now.with_timezone(&tz).date_naive())
}

impl RunPlan {
    /// This plan as it may be stored or shown (the report row's record of its plan): each
    /// source's URL with its credential query values and password replaced by `***`, and
    /// credential-looking inline headers (`Authorization`, `X-Api-Key` …) the same. The
    /// plan a run fetches with is never this one.
    pub fn redacted(&self) -> Self {
        let mut plan = self.clone();
        for source in &mut plan.sources {
            source.spec.url = crate::untrusted::redact_url(&source.spec.url);
            for (name, value) in source.spec.fetch.headers.iter_mut() {
                if crate::untrusted::is_secret_param(name) {
                    *value = "***".to_string();
                }
            }
        }
        plan
    }
}

impl RunPlan {
    /// Where the lookback window of a run started at `run_start` ends, and what that end is:
    /// the slot when the plan says so, or when the run starts on a later local date than its
    /// slot (a retried Job or a catch-up past midnight still makes that day's report);
    /// otherwise the run's start.
    pub fn lookback_ends_at(&self, run_start: DateTime<Utc>) -> (DateTime<Utc>, LookbackEnd) {
        let run_date = match parse_time_zone(&self.time_zone) {
            Ok(tz) => run_start.with_timezone(&tz).date_naive(),
            Err(_) => run_start
                .with_timezone(self.slot.scheduled_for.offset())
                .date_naive(),
        };
        match (
            self.lookback_end,
            lookback_end_for(self.slot.date, run_date),
        ) {
            (LookbackEnd::Slot, _) | (_, LookbackEnd::Slot) => {
                (self.slot.scheduled_for.to_utc(), LookbackEnd::Slot)
            }
            (LookbackEnd::RunStart, LookbackEnd::RunStart) => (run_start, LookbackEnd::RunStart),
        }
    }

    pub fn to_yaml(&self) -> Result<String, serde_norway::Error> {
        serde_norway::to_string(self)
    }

    pub fn from_yaml(text: &str) -> Result<Self, PlanError> {
        let plan: RunPlan =
            serde_norway::from_str(text).map_err(|e| PlanError::Decode(e.to_string()))?;
        if plan.plan_version != PLAN_VERSION {
            return Err(PlanError::Decode(format!(
                "plan version {} is not supported (this build reads version {PLAN_VERSION})",
                plan.plan_version
            )));
        }
        Ok(plan)
    }

    /// The plan as stored in its ConfigMap: gzip-compressed YAML.
    pub fn to_gzip(&self) -> Result<Vec<u8>, PlanError> {
        use std::io::Write;
        let yaml = self
            .to_yaml()
            .map_err(|e| PlanError::Decode(e.to_string()))?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(yaml.as_bytes())
            .and_then(|()| gz.finish())
            .map_err(|e| PlanError::Decode(e.to_string()))
    }

    /// Reads a plan file: gzip-compressed (as mounted from a ConfigMap) or plain YAML/JSON.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PlanError> {
        use std::io::Read;
        let text = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut text = String::new();
            flate2::read::GzDecoder::new(bytes)
                .take(MAX_PLAN_BYTES + 1)
                .read_to_string(&mut text)
                .map_err(|e| PlanError::Decode(format!("gzip: {e}")))?;
            if text.len() as u64 > MAX_PLAN_BYTES {
                return Err(PlanError::Decode(format!(
                    "larger than {MAX_PLAN_BYTES} bytes once decompressed"
                )));
            }
            text
        } else {
            String::from_utf8(bytes.to_vec())
                .map_err(|e| PlanError::Decode(format!("not UTF-8: {e}")))?
        };
        Self::from_yaml(&text)
    }

    /// Checks everything a run relies on, with the rules `finrep validate` applies to the
    /// resources the plan was made from: a plan that was not made by `build_plan` from
    /// validated resources (an edited file, another version's controller) fails here, with
    /// every problem named, instead of somewhere in the middle of a run.
    pub fn validate(&self) -> Result<(), PlanError> {
        let mut problems: Vec<String> = Vec::new();
        let mut push = |prefix: &str, found: Vec<FieldProblem>| {
            problems.extend(
                found
                    .into_iter()
                    .filter(|p| p.severity == Severity::Error)
                    .map(|p| format!("{prefix}{}: {}", p.field, p.message)),
            );
        };
        if self.plan_version != PLAN_VERSION {
            push(
                "",
                vec![FieldProblem::error(
                    "planVersion",
                    format!(
                        "version {} is not supported (this build reads version {PLAN_VERSION})",
                        self.plan_version
                    ),
                )],
            );
        }
        let mut report = Vec::new();
        if self.title.trim().is_empty() || self.title.contains(['\r', '\n']) {
            report.push(FieldProblem::error(
                "spec.title",
                "title must be one non-blank line",
            ));
        }
        if let Err(e) = parse_time_zone(&self.time_zone) {
            report.push(FieldProblem::error("spec.timeZone", e.to_string()));
        }
        validation::check_mail_window(&self.mail_window, &mut report);
        validation::check_content(&self.content, &mut report);
        match &self.smtp {
            Some(smtp) => validation::check_smtp(smtp, &mut report),
            None if self.recipients.iter().any(|r| r.chat.is_none()) => {
                report.push(FieldProblem::error(
                    "spec.smtp",
                    "the plan has e-mail recipients but no smtp section",
                ));
            }
            None => {}
        }
        push(&format!("DailyReport {}: ", self.report), report);
        for s in &self.sources {
            push(
                &format!("Source {}: ", s.name),
                validation::check_source(&s.spec),
            );
        }
        for r in &self.recipients {
            let spec = RecipientSpec {
                email: r.chat.is_none().then(|| r.address.clone()),
                chat: r.chat.clone().map(Box::new),
                display_name: r.display_name.clone(),
                enabled: true,
                categories: r.categories.clone(),
                format: r.format,
            };
            push(
                &format!("Recipient {}: ", r.name),
                validation::check_recipient(&spec),
            );
        }
        // PostgreSQL refuses NUL in text and jsonb, and the plan is stored with its run:
        // whatever field holds one, the plan is refused here rather than failing every retry.
        if serde_json::to_string(self).is_ok_and(|j| j.contains("\\u0000")) {
            problems.push("the plan holds a NUL character".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PlanError::Invalid(problems.join("; ")))
        }
    }

    /// The secret value carried by `r`, read from the environment.
    pub fn secret_value(r: &SecretKeyRef) -> Result<String, MissingSecret> {
        secret_from_env(&r.name, &r.key)
    }
}

/// A Secret key the run needs whose environment variable is not set.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the environment variable {env} (Secret {secret}, key {key}) is not set")]
pub struct MissingSecret {
    pub env: String,
    pub secret: String,
    pub key: String,
}

/// The value of key `key` of Secret `secret`, from the environment variable a run gets it in.
pub fn secret_from_env(secret: &str, key: &str) -> Result<String, MissingSecret> {
    let env = secret_env_name(secret, key);
    std::env::var(&env).map_err(|_| MissingSecret {
        env,
        secret: secret.to_string(),
        key: key.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml<T: serde::de::DeserializeOwned>(s: &str) -> T {
        serde_norway::from_str(s).unwrap()
    }

    fn report() -> DailyReport {
        yaml(
            r#"
apiVersion: finrep.io/v1alpha1
kind: DailyReport
metadata: {name: brief, namespace: desk}
spec:
  title: 日报
  sourceSelector: {matchLabels: {desk: research}}
  recipientSelector: {matchLabels: {brief: morning}}
  content:
    summarizer: {endpoint: "https://api.example.com/v1", model: m, apiKeySecretRef: {name: ai, key: api-key}}
  smtp: {host: smtp.example.com, from: a@example.com, credentialsSecretRef: {name: smtp}}
"#,
        )
    }

    fn source(name: &str, ns: &str, labels: &str, enabled: bool) -> Source {
        yaml(&format!(
            "apiVersion: finrep.io/v1alpha1\nkind: Source\nmetadata: {{name: {name}, namespace: {ns}, labels: {labels}}}\nspec: {{kind: feed, url: 'https://e.com/{name}', category: A股, enabled: {enabled}}}\n"
        ))
    }

    fn recipient(name: &str, email: &str, labels: &str) -> Recipient {
        yaml(&format!(
            "apiVersion: finrep.io/v1alpha1\nkind: Recipient\nmetadata: {{name: {name}, namespace: desk, labels: {labels}}}\nspec: {{email: '{email}'}}\n"
        ))
    }

    fn slot() -> Slot {
        Slot {
            date: NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
            scheduled_for: DateTime::parse_from_rfc3339("2026-11-23T06:00:00+08:00").unwrap(),
            manual: false,
        }
    }

    fn chat_group(name: &str, labels: &str) -> Recipient {
        yaml(&format!(
            "apiVersion: finrep.io/v1alpha1\nkind: Recipient\nmetadata: {{name: {name}, namespace: desk, labels: {labels}}}\nspec: {{chat: {{platform: dingtalk, webhookSecretRef: {{name: {name}-bot, key: webhook}}, signingSecretRef: {{name: {name}-bot, key: secret}}}}}}\n"
        ))
    }

    #[test]
    fn a_chat_group_is_planned_by_name_with_its_secrets_named_never_valued() {
        let recipients = vec![
            chat_group("desk", "{brief: morning}"),
            chat_group("gone", "{brief: morning}"),
            chat_group("other", "{brief: evening}"),
        ];
        let blacklist = BTreeSet::from(["dingtalk:gone".to_string()]);
        let plan = build_plan(&report(), &[], &recipients, &blacklist, slot());
        assert_eq!(plan.recipients.len(), 1);
        assert_eq!(plan.recipients[0].address, "dingtalk:desk");
        assert_eq!(plan.excluded_recipients, ["gone"]);
        let envs: Vec<&str> = plan.secrets.iter().map(|s| s.env.as_str()).collect();
        assert!(envs.contains(&"FINREP_SECRET_DESK_BOT_WEBHOOK"), "{envs:?}");
        assert!(envs.contains(&"FINREP_SECRET_DESK_BOT_SECRET"), "{envs:?}");
        assert!(!envs.iter().any(|e| e.contains("OTHER")), "{envs:?}");
        let secrets = referenced_secrets(&report(), &[] as &[Source], &recipients);
        assert!(secrets.contains("desk-bot") && secrets.contains("gone-bot"));
        assert!(!secrets.contains("other-bot"));
        plan.validate().unwrap();
        // A plan of an earlier controller calls the address `email`.
        let mut json = serde_json::to_value(&plan).unwrap();
        let r = json["recipients"][0].as_object_mut().unwrap();
        let address = r.remove("address").unwrap();
        r.insert("email".into(), address);
        let old: RunPlan = serde_json::from_value(json).unwrap();
        assert_eq!(old.recipients[0].address, "dingtalk:desk");
    }

    #[test]
    fn selects_enabled_matching_resources_of_the_namespace() {
        let sources = vec![
            source("b", "desk", "{desk: research}", true),
            source("a", "desk", "{desk: research}", true),
            source("off", "desk", "{desk: research}", false),
            source("other-label", "desk", "{desk: sales}", true),
            source("other-ns", "elsewhere", "{desk: research}", true),
        ];
        let recipients = vec![
            recipient("zhang", "Zhang.Wei@Example.com", "{brief: morning}"),
            recipient("li", "li@example.com", "{brief: morning}"),
            recipient("evening", "e@example.com", "{brief: evening}"),
        ];
        let blacklist = BTreeSet::from(["li@example.com".to_string()]);
        let plan = build_plan(&report(), &sources, &recipients, &blacklist, slot());
        let names: Vec<&str> = plan.sources.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(plan.recipients.len(), 1);
        assert_eq!(plan.recipients[0].address, "zhang.wei@example.com");
        assert_eq!(plan.excluded_recipients, ["li"]);
        let envs: Vec<&str> = plan.secrets.iter().map(|s| s.env.as_str()).collect();
        assert_eq!(
            envs,
            [
                "FINREP_SECRET_AI_API_KEY",
                "FINREP_SECRET_SMTP_PASSWORD",
                "FINREP_SECRET_SMTP_USERNAME"
            ]
        );
    }

    #[test]
    fn an_unsubscribed_identity_covers_its_plus_tag_variants() {
        let recipients = vec![
            recipient("again", "Alice+Again@example.com", "{brief: morning}"),
            recipient("bob", "bob@example.com", "{brief: morning}"),
        ];
        // `alice@example.com` unsubscribed: the tagged address stays out, bob does not.
        let blacklist = BTreeSet::from(["alice@example.com".to_string()]);
        let plan = build_plan(&report(), &[], &recipients, &blacklist, slot());
        assert_eq!(plan.excluded_recipients, ["again"]);
        assert_eq!(plan.recipients.len(), 1);
    }

    #[test]
    fn the_stored_plan_carries_no_credential_of_a_source_url_or_header() {
        let mut s = source("a", "desk", "{desk: research}", true);
        s.spec.url = "https://api.example.com/news?apikey=s3cr3t&lang=zh".into();
        s.spec
            .fetch
            .headers
            .insert("Authorization".into(), "Bearer tok3n".into());
        s.spec
            .fetch
            .headers
            .insert("Accept".into(), "application/json".into());
        let plan = build_plan(&report(), &[s], &[], &BTreeSet::new(), slot());
        let stored = serde_json::to_string(&plan.redacted()).unwrap();
        assert!(
            !stored.contains("s3cr3t") && !stored.contains("tok3n"),
            "{stored}"
        );
        assert!(
            stored.contains("lang=zh") && stored.contains("application/json"),
            "{stored}"
        );
        // The plan a run fetches with keeps them.
        assert!(plan.sources[0].spec.url.contains("s3cr3t"));
    }

    #[test]
    fn round_trips_through_yaml_without_secret_values() {
        let plan = build_plan(&report(), &[], &[], &BTreeSet::new(), slot());
        let text = plan.to_yaml().unwrap();
        assert_eq!(RunPlan::from_yaml(&text).unwrap(), plan);
        assert!(
            text.contains("scheduledFor: 2026-11-23T06:00:00+08:00"),
            "{text}"
        );
    }

    #[test]
    fn a_plan_with_a_header_injection_is_refused() {
        let recipients = vec![recipient("zhang", "zhang@example.com", "{brief: morning}")];
        let mut plan = build_plan(&report(), &[], &recipients, &BTreeSet::new(), slot());
        assert_eq!(plan.validate(), Ok(()));
        plan.recipients[0].display_name = Some("Zhang\r\nBcc: all@example.com".into());
        plan.content.template = Some(crate::api::TemplateRef {
            config_map_name: "t".into(),
            html_key: "../../etc/passwd".into(),
            text_key: "report.txt".into(),
            chat_key: "chat.md".into(),
        });
        let err = plan.validate().unwrap_err().to_string();
        assert!(err.contains("Recipient zhang: spec.displayName"), "{err}");
        assert!(err.contains("spec.content.template.htmlKey"), "{err}");
        let mut nul = build_plan(&report(), &[], &recipients, &BTreeSet::new(), slot());
        nul.content.section_order = vec!["宏观\0".into()];
        let err = nul.validate().unwrap_err().to_string();
        assert!(err.contains("the plan holds a NUL character"), "{err}");
    }

    #[test]
    fn ten_thousand_recipients_fit_a_config_map() {
        let recipients: Vec<Recipient> = (0..10_000)
            .map(|i| {
                let mut r = recipient(
                    &format!("reader-{i:05}"),
                    &format!("reader.{i:05}@research-desk.example.com"),
                    "{brief: morning}",
                );
                r.spec.display_name = Some(format!("研究部 读者{i}"));
                r.spec.categories = vec!["宏观".into(), "A股".into()];
                r
            })
            .collect();
        let plan = build_plan(&report(), &[], &recipients, &BTreeSet::new(), slot());
        assert_eq!(plan.recipients.len(), 10_000);
        let yaml = plan.to_yaml().unwrap();
        assert!(yaml.len() > 1 << 20, "the uncompressed plan would not fit");
        let gz = plan.to_gzip().unwrap();
        // binaryData is base64 in the stored object: 4/3 of the bytes, plus the rest.
        let stored = gz.len().div_ceil(3) * 4;
        assert!(stored < 900 * 1024, "{stored} bytes stored");
        assert_eq!(RunPlan::from_bytes(&gz).unwrap(), plan);
        assert_eq!(RunPlan::from_bytes(yaml.as_bytes()).unwrap(), plan);
        assert!(RunPlan::from_bytes(&gz[..gz.len() / 2]).is_err());
    }

    #[test]
    fn missing_reports_say_where_they_are() {
        let mut other = report();
        other.metadata.namespace = Some("acc".into());
        other.metadata.name = Some("acc-brief".into());
        let set = ResourceSet {
            reports: vec![report(), other],
            ..Default::default()
        };
        let now = at("2026-11-23T01:00:00Z");
        let when = RunAt::Manual { date: None, now };
        let err = plan_for(&set, "default", "acc-brief", when, &BTreeSet::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no DailyReport acc-brief in namespace default; it is in namespace acc (add -n acc)"
        );
        let err = plan_for(&set, "desk", "nope", when, &BTreeSet::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no DailyReport nope in namespace desk; it has brief"
        );
        assert!(plan_for(&set, "acc", "acc-brief", when, &BTreeSet::new()).is_ok());
    }

    #[test]
    fn scheduled_slots_are_local() {
        let at = DateTime::parse_from_rfc3339("2026-11-22T22:00:00Z")
            .unwrap()
            .to_utc();
        let s = scheduled_slot(&report(), at).unwrap();
        assert_eq!(s.date, NaiveDate::from_ymd_opt(2026, 11, 23).unwrap());
        assert_eq!(s.scheduled_for.to_rfc3339(), "2026-11-23T06:00:00+08:00");
        assert!(!s.manual);
    }

    #[test]
    fn manual_slot_uses_the_days_schedule() {
        let s = manual_slot(&report(), NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()).unwrap();
        assert_eq!(s.scheduled_for.to_rfc3339(), "2026-11-23T06:00:00+08:00");
        assert!(s.manual);
    }

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
    }

    #[test]
    fn an_earlier_days_run_looks_back_from_that_days_slot() {
        let set = ResourceSet {
            reports: vec![report()],
            ..Default::default()
        };
        let now = at("2026-11-26T03:15:00Z");
        let three_days_back = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        let when = RunAt::Manual {
            date: Some(three_days_back),
            now,
        };
        let plan = plan_for(&set, "desk", "brief", when, &BTreeSet::new()).unwrap();
        assert_eq!(plan.lookback_end, LookbackEnd::Slot);
        assert_eq!(
            plan.lookback_ends_at(now),
            (at("2026-11-23T06:00:00+08:00"), LookbackEnd::Slot)
        );
        // The plan says so in the document a Job reads.
        assert!(plan.to_yaml().unwrap().contains("lookbackEnd: slot"));

        let today = RunAt::Manual { date: None, now };
        let plan = plan_for(&set, "desk", "brief", today, &BTreeSet::new()).unwrap();
        assert_eq!(plan.lookback_end, LookbackEnd::RunStart);
        assert_eq!(plan.lookback_ends_at(now), (now, LookbackEnd::RunStart));
    }

    #[test]
    fn a_scheduled_run_started_after_its_day_looks_back_from_its_slot() {
        let plan = build_plan(&report(), &[], &[], &BTreeSet::new(), slot());
        assert_eq!(plan.lookback_end, LookbackEnd::RunStart);
        // On time, or late the same day: from the run's start.
        let late_morning = at("2026-11-23T11:00:00+08:00");
        assert_eq!(
            plan.lookback_ends_at(late_morning),
            (late_morning, LookbackEnd::RunStart)
        );
        // A Job retried past midnight still makes the 23rd's report.
        let next_day = at("2026-11-24T00:30:00+08:00");
        assert_eq!(
            plan.lookback_ends_at(next_day),
            (at("2026-11-23T06:00:00+08:00"), LookbackEnd::Slot)
        );
    }

    #[test]
    fn plans_without_a_lookback_end_look_back_from_the_run_start() {
        let plan = build_plan(&report(), &[], &[], &BTreeSet::new(), slot());
        let yaml = plan
            .to_yaml()
            .unwrap()
            .replace("lookbackEnd: runStart\n", "");
        assert!(!yaml.contains("lookbackEnd"));
        assert_eq!(
            RunPlan::from_yaml(&yaml).unwrap().lookback_end,
            LookbackEnd::RunStart
        );
    }
}
