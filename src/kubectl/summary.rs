//! What `kubectl finrep status` says of a report, decided from the objects alone (its status,
//! the Sources and Recipients it selects, its run Job's pods, its Warning Events) and
//! rendered for people or scripts. Pure: the command reads, this decides and writes text.

use std::fmt::Write as _;

use finrep_core::api::selector;
use finrep_core::api::{
    DailyReport, PreviewStatus, Recipient, RunPhase, RunSummary, Source, TestSendStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use serde::Serialize;

/// Warning Events listed per report.
const MAX_WARNINGS: usize = 5;

/// Everything `status` says of one report.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportSummary {
    pub namespace: String,
    pub name: String,
    pub title: String,
    pub schedule: String,
    pub time_zone: String,
    pub suspended: bool,
    /// Why the report is not ready (`Ready=False`), if it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_ready: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_slot: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// The last run's Job and its pods, while the Job is kept.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<PodLine>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources_failing: Vec<Problem>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recipients_not_mailed: Vec<Problem>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<PreviewStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_send: Option<TestSendStatus>,
    pub verdict: Verdict,
    /// What needs attention, one line each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attention: Vec<String>,
}

/// One glance: all went out, a run is under way, or something needs a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Verdict {
    WentOut,
    Running,
    NeedsAttention,
    NoRunYet,
}

impl Verdict {
    fn words(self) -> &'static str {
        match self {
            Self::WentOut => "went out",
            Self::Running => "running",
            Self::NeedsAttention => "needs attention",
            Self::NoRunYet => "no run yet",
        }
    }
}

/// A source or recipient that needs a look, and what to do about it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    pub name: String,
    pub what: String,
    pub todo: String,
    /// Counts towards the verdict (an unsubscribe is the reader's choice, not a fault).
    #[serde(skip)]
    pub fault: bool,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodLine {
    pub name: String,
    pub phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The summary of `report` among its namespace's objects.
pub fn summarise(
    report: &DailyReport,
    sources: &[Source],
    recipients: &[Recipient],
    pods: &[Pod],
    events: &[Event],
) -> ReportSummary {
    let status = report.status.clone().unwrap_or_default();
    let not_ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == finrep_core::api::conditions::READY && c.status == "False")
        .map(|c| c.message.clone());
    let mut summary = ReportSummary {
        namespace: report.namespace().unwrap_or_default(),
        name: report.name_any(),
        title: report.spec.title.clone(),
        schedule: report.spec.schedule.clone(),
        time_zone: report.spec.time_zone.clone(),
        suspended: report.spec.suspend,
        not_ready,
        last_run: status.last_run.clone(),
        next_slot: status.next_schedule_time.clone(),
        waiting: status.waiting.clone(),
        pods: pods.iter().map(pod_line).collect(),
        sources_failing: sources_failing(report, sources),
        recipients_not_mailed: recipients_not_mailed(report, recipients),
        warnings: warnings(report, events),
        preview: status.preview.clone(),
        test_send: status.test_send.clone(),
        verdict: Verdict::NoRunYet,
        attention: Vec::new(),
    };
    (summary.verdict, summary.attention) = verdict(&summary);
    summary
}

fn sources_failing(report: &DailyReport, sources: &[Source]) -> Vec<Problem> {
    sources
        .iter()
        .filter(|s| s.spec.enabled)
        .filter(|s| selector::selects(report.spec.source_selector.as_ref(), *s))
        .filter_map(|s| {
            let st = s.status.as_ref()?;
            (st.consecutive_failures > 0).then(|| Problem {
                name: s.name_any(),
                what: format!(
                    "{} fetch(es) failed in a row: {}",
                    st.consecutive_failures,
                    st.last_error.as_deref().unwrap_or("no error recorded")
                ),
                todo: "check the URL and the site (kubectl describe source); a source gone for good: set spec.enabled: false (runbook: A source keeps failing)".to_string(),
                fault: true,
            })
        })
        .collect()
}

fn recipients_not_mailed(report: &DailyReport, recipients: &[Recipient]) -> Vec<Problem> {
    recipients
        .iter()
        .filter(|r| selector::selects(report.spec.recipient_selector.as_ref(), *r))
        .filter_map(|r| {
            let st = r.status.as_ref()?;
            let deliverable = st
                .conditions
                .iter()
                .find(|c| c.type_ == finrep_core::api::conditions::DELIVERABLE)?;
            if deliverable.status == "True" || deliverable.reason == "Disabled" {
                return None;
            }
            let unsubscribed = deliverable.reason == "Unsubscribed";
            let since = st
                .blacklisted_since
                .as_deref()
                .map(|t| local_time(t, &report.spec.time_zone));
            let what = if unsubscribed {
                format!(
                    "unsubscribed since {}",
                    since.as_deref().unwrap_or("an earlier day")
                )
            } else {
                format!(
                    "not mailed: {}",
                    st.blacklist_reason.as_deref().unwrap_or(&deliverable.reason)
                )
            };
            let todo = if unsubscribed {
                "nothing to do: it was the reader's choice (only they can re-subscribe)".to_string()
            } else {
                format!(
                    "fix the cause (address, mailbox, bot or its Secret), then: kubectl finrep unblock {} (runbook: SMTP throttling or bounces)",
                    r.name_any()
                )
            };
            Some(Problem {
                name: r.name_any(),
                what,
                todo,
                fault: !unsubscribed,
            })
        })
        .collect()
}

fn pod_line(pod: &Pod) -> PodLine {
    let status = pod.status.as_ref();
    let waiting = status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default()
        .iter()
        .find_map(|c| {
            let state = c.state.as_ref()?;
            state
                .waiting
                .as_ref()
                .and_then(|w| w.reason.clone())
                .or_else(|| state.terminated.as_ref().and_then(|t| t.reason.clone()))
        });
    PodLine {
        name: pod.name_any(),
        phase: status
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Unknown".to_string()),
        reason: waiting.or_else(|| status.and_then(|s| s.reason.clone())),
    }
}

/// The report's newest Warning Events.
fn warnings(report: &DailyReport, events: &[Event]) -> Vec<String> {
    let mut mine: Vec<&Event> = events
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("DailyReport")
                    && r.name.as_deref() == Some(report.name_any().as_str())
            })
        })
        .collect();
    mine.sort_by_key(|e| {
        std::cmp::Reverse(
            e.event_time
                .as_ref()
                .map(|t| t.0.as_second())
                .or_else(|| {
                    e.metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.as_second())
                })
                .unwrap_or(0),
        )
    });
    mine.into_iter()
        .take(MAX_WARNINGS)
        .map(|e| {
            format!(
                "{}: {}",
                e.reason.as_deref().unwrap_or("Warning"),
                e.note.as_deref().unwrap_or("")
            )
        })
        .collect()
}

fn verdict(s: &ReportSummary) -> (Verdict, Vec<String>) {
    let mut attention = Vec::new();
    if let Some(why) = &s.not_ready {
        attention.push(format!("the report is not ready: {why}"));
    }
    let mut running = false;
    match &s.last_run {
        None => {}
        Some(run) => match run.phase {
            RunPhase::Failed => attention.push(format!(
                "the run of {} failed (kubectl finrep logs {} --date {})",
                run.date, s.name, run.date
            )),
            RunPhase::PartiallyDelivered => attention.push(format!(
                "the run of {} delivered {} and failed {}, deferred {}",
                run.date, run.delivered, run.failed, run.deferred
            )),
            RunPhase::Missed => attention.push(format!(
                "the slot of {} passed without a run (runbook: A missed 06:00 run)",
                run.date
            )),
            RunPhase::Succeeded => {}
            _ => running = true,
        },
    }
    let failing = s.sources_failing.len();
    if failing > 0 {
        attention.push(format!("{failing} source(s) failing"));
    }
    let not_mailed = s.recipients_not_mailed.iter().filter(|p| p.fault).count();
    if not_mailed > 0 {
        attention.push(format!(
            "{not_mailed} recipient(s) not mailed after a bounce"
        ));
    }
    let verdict = match (&s.last_run, attention.is_empty(), running) {
        (_, false, _) => Verdict::NeedsAttention,
        (None, true, _) => Verdict::NoRunYet,
        (Some(_), true, true) => Verdict::Running,
        (Some(_), true, false) => Verdict::WentOut,
    };
    (verdict, attention)
}

/// The summaries as people read them.
pub fn render_text(summaries: &[ReportSummary]) -> String {
    let mut out = String::new();
    for (i, s) in summaries.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        render_one(&mut out, s);
    }
    out
}

fn render_one(out: &mut String, s: &ReportSummary) {
    let _ = writeln!(
        out,
        "DailyReport {}/{} — {}: {}",
        s.namespace,
        s.name,
        s.title,
        s.verdict.words()
    );
    let suspended = if s.suspended { ", suspended" } else { "" };
    let _ = writeln!(
        out,
        "  schedule   {} ({}){suspended}",
        s.schedule, s.time_zone
    );
    match &s.last_run {
        Some(run) => render_run(out, run, &s.time_zone),
        None => {
            let _ = writeln!(out, "  last run   none yet");
        }
    }
    for pod in &s.pods {
        let reason = pod
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let _ = writeln!(out, "  pod        {} {}{reason}", pod.name, pod.phase);
    }
    if let Some(w) = &s.waiting {
        let _ = writeln!(out, "  waiting    {w}");
    }
    let _ = writeln!(
        out,
        "  next slot  {}",
        s.next_slot
            .as_deref()
            .map_or("none (suspended or invalid)".to_string(), |t| {
                local_time(t, &s.time_zone)
            })
    );
    if let Some(p) = &s.preview {
        let _ = writeln!(out, "  preview    {}", preview_words(p));
    }
    if let Some(t) = &s.test_send {
        let _ = writeln!(out, "  test copy  {}", test_send_words(t));
    }
    render_problems(out, "sources failing", &s.sources_failing);
    render_problems(out, "recipients not mailed", &s.recipients_not_mailed);
    if !s.warnings.is_empty() {
        let _ = writeln!(out, "  recent warnings");
        for w in &s.warnings {
            let _ = writeln!(out, "    {w}");
        }
    }
    for a in &s.attention {
        let _ = writeln!(out, "  ! {a}");
    }
}

fn render_run(out: &mut String, run: &RunSummary, zone: &str) {
    let _ = writeln!(
        out,
        "  last run   {} {:?}: {} delivered, {} failed, {} deferred ({} items){}",
        run.date,
        run.phase,
        run.delivered,
        run.failed,
        run.deferred,
        run.articles,
        run.finished
            .as_deref()
            .map(|f| format!(", finished {}", local_time(f, zone)))
            .unwrap_or_default()
    );
    for c in &run.channels {
        let _ = writeln!(
            out,
            "             {}: {} delivered, {} failed, {} deferred",
            c.channel, c.delivered, c.failed, c.deferred
        );
    }
}

fn render_problems(out: &mut String, heading: &str, problems: &[Problem]) {
    if problems.is_empty() {
        return;
    }
    let _ = writeln!(out, "  {heading}");
    for p in problems {
        let _ = writeln!(out, "    {}: {}", p.name, p.what);
        let _ = writeln!(out, "      → {}", p.todo);
    }
}

/// An RFC 3339 instant as the report's desk reads it: local date and time with its offset
/// (the instant as written when the zone or the instant cannot be read).
pub fn local_time(instant: &str, zone: &str) -> String {
    let (Ok(t), Ok(tz)) = (
        chrono::DateTime::parse_from_rfc3339(instant),
        finrep_core::schedule::parse_time_zone(zone),
    ) else {
        return instant.to_string();
    };
    t.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M %:z")
        .to_string()
}

/// A preview's status in one line.
pub fn preview_words(p: &PreviewStatus) -> String {
    let what = p
        .date
        .as_deref()
        .map(|d| format!(" of {d}"))
        .unwrap_or_default();
    let as_whom = p
        .recipient
        .as_deref()
        .map(|r| format!(" as {r}"))
        .unwrap_or_default();
    let detail = match p.phase {
        finrep_core::api::PreviewPhase::Ready => format!(
            ": {} item(s), {} source(s) failing{}",
            p.articles,
            p.sources_failing.len(),
            p.config_map
                .as_deref()
                .map(|c| format!(", ConfigMap {c}"))
                .unwrap_or_default()
        ),
        _ => p
            .message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default(),
    };
    format!("{:?}{what}{as_whom}{detail}", p.phase)
}

/// A test send's status in one line.
pub fn test_send_words(t: &TestSendStatus) -> String {
    let of = t
        .copy_of
        .as_deref()
        .map(|c| format!(" ({c})"))
        .unwrap_or_default();
    let message = t
        .message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    format!("{:?} to {}{of}{message}", t.phase, t.recipient)
}
