//! What `finrep status` shows: each report's latest run and next slot, failing sources and
//! blacklisted addresses — and whether anything needs a person, so a cron job or a health
//! check can act on the exit code. Pure: rows from PostgreSQL and (optionally) the manifests
//! in, an overview out.

use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, Utc};
use kube::ResourceExt;
use serde::Serialize;

use crate::api::DailyReport;
use crate::run::RunPhase;
use crate::schedule::Schedule;
use crate::store::{BlacklistEntry, ChatPostRow, LatestRun, SourceHealthRow};

/// How a report is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    Ok,
    Running,
    /// The latest run ended Failed or PartiallyDelivered.
    Failed,
    /// A slot passed beyond its deadline with no run.
    Missed,
    NeverRun,
}

/// One report's line.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportLine {
    pub namespace: String,
    pub report: String,
    pub health: Health,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_slot: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missed: Option<NaiveDate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run: Option<LatestRun>,
}

/// Everything `finrep status` reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    pub reports: Vec<ReportLine>,
    pub failing_sources: Vec<SourceHealthRow>,
    pub blacklist: Vec<BlacklistEntry>,
    /// Each chat group's post in its report's latest run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chat_groups: Vec<ChatPostRow>,
}

impl Overview {
    /// True when a report's last run failed or a slot was missed.
    pub fn needs_attention(&self) -> bool {
        self.reports
            .iter()
            .any(|r| matches!(r.health, Health::Failed | Health::Missed))
    }
}

fn health(run: Option<&LatestRun>) -> Health {
    match run.map(|r| r.phase) {
        None => Health::NeverRun,
        Some(RunPhase::Succeeded) => Health::Ok,
        Some(RunPhase::Failed | RunPhase::PartiallyDelivered) => Health::Failed,
        Some(RunPhase::Missed) => Health::Missed,
        Some(
            RunPhase::Queued
            | RunPhase::Pending
            | RunPhase::Collecting
            | RunPhase::Composing
            | RunPhase::Sending,
        ) => Health::Running,
    }
}

/// The local date of the latest slot that passed beyond its starting deadline with no run
/// recorded on or after it.
fn missed_slot(
    report: &DailyReport,
    last: Option<NaiveDate>,
    now: DateTime<Utc>,
) -> Option<NaiveDate> {
    let spec = &report.spec;
    if spec.suspend {
        return None;
    }
    let schedule = Schedule::parse(&spec.schedule, &spec.time_zone).ok()?;
    let deadline = chrono::Duration::seconds(i64::from(spec.starting_deadline_seconds));
    let slot = schedule.latest_at_or_before(now - deadline)?;
    let date = slot.date_naive();
    last.is_none_or(|d| d < date).then_some(date)
}

/// The overview from the latest runs and, when given, the reports' manifests (for next
/// slots and missed slots).
pub fn overview(
    runs: Vec<LatestRun>,
    failing_sources: Vec<SourceHealthRow>,
    blacklist: Vec<BlacklistEntry>,
    reports: &[DailyReport],
    now: DateTime<Utc>,
) -> Overview {
    let mut lines: Vec<ReportLine> = Vec::new();
    for r in reports {
        let namespace = r.namespace().unwrap_or_else(|| "default".to_string());
        let name = r.name_any();
        let run = runs
            .iter()
            .find(|x| x.namespace == namespace && x.report == name)
            .cloned();
        // A report never run is not "missed" before its first slot after it appeared.
        let missed = run.as_ref().and_then(|x| missed_slot(r, Some(x.date), now));
        let next_slot = Schedule::parse(&r.spec.schedule, &r.spec.time_zone)
            .ok()
            .and_then(|s| s.next_after(now))
            .map(|t| t.fixed_offset().to_rfc3339());
        let health = if missed.is_some() {
            Health::Missed
        } else {
            health(run.as_ref())
        };
        lines.push(ReportLine {
            namespace,
            report: name,
            health,
            next_slot,
            missed,
            last_run: run,
        });
    }
    for run in runs {
        if !lines
            .iter()
            .any(|l| l.namespace == run.namespace && l.report == run.report)
        {
            lines.push(ReportLine {
                namespace: run.namespace.clone(),
                report: run.report.clone(),
                health: health(Some(&run)),
                next_slot: None,
                missed: None,
                last_run: Some(run),
            });
        }
    }
    lines.sort_by(|a, b| (&a.namespace, &a.report).cmp(&(&b.namespace, &b.report)));
    Overview {
        reports: lines,
        failing_sources,
        blacklist,
        chat_groups: Vec::new(),
    }
}

/// The overview as a terminal table.
pub fn render(o: &Overview) -> String {
    let mut out = String::new();
    let mut rows = vec![
        [
            "NAMESPACE",
            "REPORT",
            "HEALTH",
            "LAST-RUN",
            "PHASE",
            "DELIVERED",
            "FAILED",
            "DEFERRED",
            "NEXT",
        ]
        .map(str::to_string),
    ];
    for l in &o.reports {
        let run = l.last_run.as_ref();
        let d = run.map(|r| r.deliveries.clone()).unwrap_or_default();
        rows.push([
            l.namespace.clone(),
            l.report.clone(),
            match l.missed {
                Some(date) => format!("missed {date}"),
                None => serde_json::to_value(l.health)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
            },
            run.map_or("-".into(), |r| r.date.to_string()),
            run.map_or("-".into(), |r| r.phase.to_string()),
            d.sent.to_string(),
            (d.failed + d.bounced).to_string(),
            d.deferred.to_string(),
            l.next_slot.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    table(&mut out, &rows);
    let failing: Vec<String> = o
        .failing_sources
        .iter()
        .map(|s| {
            format!(
                "{}/{}: {} failure(s) in a row, {}: {}",
                s.namespace,
                s.source,
                s.consecutive_failures,
                s.last_error_kind.map_or("?", |k| k.as_str()),
                s.last_error.as_deref().unwrap_or("")
            )
        })
        .collect();
    section(&mut out, "failing sources", &failing);
    section(
        &mut out,
        "chat groups (latest run)",
        &chat_lines(&o.chat_groups),
    );
    blacklist_sections(&mut out, &o.blacklist);
    out
}

/// One line per chat group: where its post stands, with the platform's words when it was not
/// taken, and what to do about an uncertain one.
fn chat_lines(rows: &[ChatPostRow]) -> Vec<String> {
    rows.iter()
        .map(|c| {
            let detail = match c.status {
                crate::run::DeliveryStatus::Sent => String::new(),
                crate::run::DeliveryStatus::Uncertain => {
                    format!(
                        " — the platform may or may not have shown it: check the group; if the message is not there, `finrep run --resend-uncertain={}` posts it again",
                        c.address
                    )
                }
                _ => format!(
                    " ({}{})",
                    c.reply_code.map(|x| format!("{x} ")).unwrap_or_default(),
                    c.reply.as_deref().unwrap_or("")
                ),
            };
            format!(
                "{}/{} {}: {} {}{detail}",
                c.namespace, c.report, c.date, c.address, c.status
            )
        })
        .collect()
}

/// The blacklist in two lists: addresses that unsubscribed, and those refused or blocked.
fn blacklist_sections(out: &mut String, entries: &[BlacklistEntry]) {
    let since = |b: &BlacklistEntry| b.since.format("%Y-%m-%d %H:%M UTC").to_string();
    let unsubscribe = crate::run::BlacklistReason::Unsubscribe.as_str();
    let (unsubscribed, blacklisted): (Vec<_>, Vec<_>) =
        entries.iter().partition(|b| b.reason == unsubscribe);
    let unsubscribed: Vec<String> = unsubscribed
        .iter()
        .map(|b| format!("{}/{}: since {}", b.namespace, b.email, since(b)))
        .collect();
    section(out, "unsubscribed addresses", &unsubscribed);
    let blacklisted: Vec<String> = blacklisted
        .iter()
        .map(|b| {
            format!(
                "{}/{}: {}{} since {}",
                b.namespace,
                b.email,
                b.reason,
                b.smtp_code.map(|c| format!(" ({c})")).unwrap_or_default(),
                since(b)
            )
        })
        .collect();
    section(out, "blacklisted addresses", &blacklisted);
}

/// A titled list, left out when empty.
fn section(out: &mut String, title: &str, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{title}:");
    for l in lines {
        let _ = writeln!(out, "  {l}");
    }
}

fn table<const N: usize>(out: &mut String, rows: &[[String; N]]) {
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        let _ = writeln!(out, "{}", cells.join("   ").trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{DeliveryCounts, DeliveryStatus};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn report(name: &str) -> DailyReport {
        serde_norway::from_str(&format!(
            "apiVersion: finrep.io/v1alpha1\nkind: DailyReport\nmetadata: {{name: {name}}}\nspec: {{title: T, smtp: {{host: h.example.com, from: a@example.com}}}}\n"
        ))
        .unwrap()
    }

    fn run(report: &str, date: &str, phase: RunPhase) -> LatestRun {
        let mut deliveries = DeliveryCounts::default();
        deliveries.add(DeliveryStatus::Sent, 4, 0);
        LatestRun {
            namespace: "default".into(),
            report: report.into(),
            date: date.parse().unwrap(),
            phase,
            manual: false,
            started_at: None,
            finished_at: None,
            articles: 12,
            deliveries,
            error: None,
        }
    }

    #[test]
    fn healthy_failed_and_missed() {
        let now = at("2026-11-23T01:00:00Z"); // 09:00 in Shanghai
        let runs = vec![
            run("ok", "2026-11-23", RunPhase::Succeeded),
            run("bad", "2026-11-23", RunPhase::Failed),
            run("late", "2026-11-22", RunPhase::Succeeded),
        ];
        let reports = [report("ok"), report("bad"), report("late"), report("new")];
        let o = overview(runs, vec![], vec![], &reports, now);
        let by = |n: &str| o.reports.iter().find(|l| l.report == n).unwrap().clone();
        assert_eq!(by("ok").health, Health::Ok);
        assert_eq!(by("bad").health, Health::Failed);
        assert_eq!(by("late").health, Health::Missed);
        assert_eq!(by("late").missed, Some("2026-11-23".parse().unwrap()));
        assert_eq!(by("new").health, Health::NeverRun);
        assert_eq!(
            by("ok").next_slot.as_deref(),
            Some("2026-11-24T06:00:00+08:00")
        );
        assert!(o.needs_attention());
        let text = render(&o);
        assert!(text.contains("missed 2026-11-23"), "{text}");
        assert!(text.lines().next().unwrap().starts_with("NAMESPACE"));
        let fine = overview(
            vec![run("ok", "2026-11-23", RunPhase::Succeeded)],
            vec![],
            vec![],
            &[report("ok")],
            now,
        );
        assert!(!fine.needs_attention());
    }
}
