//! What `finrep status` shows: each report's latest run and next slot, failing sources and
//! blacklisted addresses — and whether anything needs a person, so a cron job or a health
//! check can act on the exit code. Pure: rows from PostgreSQL and (optionally) the manifests
//! in, an overview out.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, Utc};
use kube::ResourceExt;
use serde::Serialize;

use crate::api::DailyReport;
use crate::glance;
use crate::run::{DeliveryStatus, RunPhase};
use crate::schedule::Schedule;
use crate::store::{BlacklistEntry, ChatPostRow, LatestRun, NextSlot, SourceHealthRow};

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
    /// The latest run's only trouble is chat posts whose answer was lost (`uncertain`): a
    /// person must look at the groups before anything is posted again.
    NeedsCheck,
    NeverRun,
}

impl Health {
    pub const ALL: [Self; 6] = [
        Self::Ok,
        Self::Running,
        Self::Failed,
        Self::Missed,
        Self::NeedsCheck,
        Self::NeverRun,
    ];

    /// Its name in metrics and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Running => "running",
            Self::Failed => "failed",
            Self::Missed => "missed",
            Self::NeedsCheck => "needs-check",
            Self::NeverRun => "never-run",
        }
    }

    /// How `finrep status` says it.
    pub fn words(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Running => "running",
            Self::Failed => "failed",
            Self::Missed => "missed",
            Self::NeedsCheck => "needs a check",
            Self::NeverRun => "never run",
        }
    }
}

/// What `finrep status` exits with, so a cron job or a health check can act on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every report ran, is running or has not had a slot yet.
    AllWell,
    /// A last run failed or a slot was missed (exit 1).
    Attention,
    /// Nothing failed, but chat posts are uncertain and need a person's look (exit 3).
    NeedsCheck,
}

impl Verdict {
    pub const fn exit_code(self) -> u8 {
        match self {
            Self::AllWell => 0,
            Self::Attention => 1,
            Self::NeedsCheck => 3,
        }
    }
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
    /// Why it needs attention, as the console's card says it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<glance::Reason>,
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

    /// The verdict over every report.
    pub fn verdict(&self) -> Verdict {
        if self.needs_attention() {
            Verdict::Attention
        } else if self.reports.iter().any(|r| r.health == Health::NeedsCheck) {
            Verdict::NeedsCheck
        } else {
            Verdict::AllWell
        }
    }
}

/// A run that did not deliver everything only because some chat posts are uncertain: none
/// failed, bounced, was deferred or is left pending.
fn only_uncertain(run: &LatestRun) -> bool {
    let d = &run.deliveries;
    d.uncertain > 0 && d.failed == 0 && d.bounced == 0 && d.deferred == 0 && d.pending == 0
}

/// The health of a report from its latest run (`glance` adds what the scheduler recorded).
pub fn health(run: Option<&LatestRun>) -> Health {
    match run.map(|r| (r.phase, r)) {
        None => Health::NeverRun,
        Some((RunPhase::Succeeded, _)) => Health::Ok,
        Some((RunPhase::Failed | RunPhase::PartiallyDelivered, r)) if only_uncertain(r) => {
            Health::NeedsCheck
        }
        Some((RunPhase::Failed | RunPhase::PartiallyDelivered, _)) => Health::Failed,
        Some((RunPhase::Missed, _)) => Health::Missed,
        Some((
            RunPhase::Queued
            | RunPhase::Pending
            | RunPhase::Collecting
            | RunPhase::Composing
            | RunPhase::Sending,
            _,
        )) => Health::Running,
    }
}

/// The latest slot of a report's manifest at or before `now` — for a report that has run
/// before (one never run is not late for a slot before it appeared) and is not suspended.
fn manifest_slot(
    report: &DailyReport,
    run: Option<&LatestRun>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if report.spec.suspend || run.is_none() {
        return None;
    }
    Schedule::parse(&report.spec.schedule, &report.spec.time_zone)
        .ok()?
        .latest_at_or_before(now)
        .map(|t| t.to_utc())
}

/// What `glance` is told of one report: its latest run, the slot due by now (the later of
/// the scheduler's record and the manifest's schedule), its window and starting deadline.
fn record(
    key: &(String, String),
    manifest: Option<&DailyReport>,
    run: Option<&LatestRun>,
    recorded: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> glance::ReportRecord {
    let from_manifest = manifest.and_then(|m| manifest_slot(m, run, now));
    glance::ReportRecord {
        namespace: key.0.clone(),
        report: key.1.clone(),
        run: run.cloned(),
        window: manifest.map(|m| (m.spec.mail_window.clone(), m.spec.time_zone.clone())),
        next_slot: [recorded, from_manifest]
            .into_iter()
            .flatten()
            .filter(|t| *t <= now)
            .max(),
        starting_deadline: manifest
            .map(|m| chrono::Duration::seconds(i64::from(m.spec.starting_deadline_seconds))),
        ..glance::ReportRecord::default()
    }
}

/// The overview from the latest runs, the slots the scheduler recorded and, when given, the
/// reports' manifests (next slots, zones, starting deadlines). Each report's health is the
/// console's glance of it: the same verdict, the same rule for a slot that passed with no run.
pub fn overview(
    runs: Vec<LatestRun>,
    failing_sources: Vec<SourceHealthRow>,
    blacklist: Vec<BlacklistEntry>,
    reports: &[DailyReport],
    recorded: &[NextSlot],
    now: DateTime<Utc>,
) -> Overview {
    let key_of = |r: &DailyReport| {
        (
            r.namespace().unwrap_or_else(|| "default".to_string()),
            r.name_any(),
        )
    };
    let mut keys: BTreeSet<(String, String)> = reports.iter().map(key_of).collect();
    keys.extend(runs.iter().map(|r| (r.namespace.clone(), r.report.clone())));
    keys.extend(
        recorded
            .iter()
            .map(|r| (r.namespace.clone(), r.report.clone())),
    );
    let lines = keys
        .into_iter()
        .map(|key| {
            let manifest = reports.iter().find(|r| key_of(r) == key);
            let run = runs
                .iter()
                .find(|x| x.namespace == key.0 && x.report == key.1);
            let slot = recorded
                .iter()
                .find(|x| x.namespace == key.0 && x.report == key.1)
                .and_then(|x| x.next_slot);
            let card = glance::card(&record(&key, manifest, run, slot, now), now);
            let next_slot = manifest
                .and_then(|m| Schedule::parse(&m.spec.schedule, &m.spec.time_zone).ok())
                .and_then(|s| s.next_after(now))
                .map(|t| t.fixed_offset().to_rfc3339())
                .or_else(|| slot.filter(|t| *t > now).map(|t| t.to_rfc3339()));
            ReportLine {
                // A local date needs the report's zone: without the manifest, the reason says
                // the slot's time in UTC instead.
                missed: manifest.and_then(|m| glance::slot_date(&card, &m.spec.time_zone)),
                namespace: key.0,
                report: key.1,
                health: card.health,
                reasons: card.reasons,
                next_slot,
                last_run: run.cloned(),
            }
        })
        .collect();
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
                None => l.health.words().to_string(),
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
    let why: Vec<String> = o
        .reports
        .iter()
        .filter(|l| !l.reasons.is_empty())
        .map(|l| {
            let words: Vec<String> = l.reasons.iter().map(glance::Reason::words).collect();
            format!("{}/{}: {}", l.namespace, l.report, words.join("; "))
        })
        .collect();
    section(&mut out, "needs attention", &why);
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

/// The chat groups of each report's latest run, summarised: how many were posted, and by name
/// only those that were not — uncertain ones with since when and the command that posts them
/// again once checked, refused ones grouped by the platform's answer. Thirty groups that all
/// got the post are one line, not thirty.
fn chat_lines(rows: &[ChatPostRow]) -> Vec<String> {
    use std::collections::BTreeMap;
    let mut runs: BTreeMap<(&str, &str, NaiveDate), Vec<&ChatPostRow>> = BTreeMap::new();
    for c in rows {
        runs.entry((&c.namespace, &c.report, c.date))
            .or_default()
            .push(c);
    }
    let mut out = Vec::new();
    for ((namespace, report, date), groups) in runs {
        let of = |s: DeliveryStatus| groups.iter().filter(|c| c.status == s).count();
        let posted = of(DeliveryStatus::Sent);
        let mut line = format!(
            "{namespace}/{report} {date}: {posted} of {} group(s) posted",
            groups.len()
        );
        let uncertain: Vec<&&ChatPostRow> = groups
            .iter()
            .filter(|c| c.status == DeliveryStatus::Uncertain)
            .collect();
        if !uncertain.is_empty() {
            let since = uncertain
                .iter()
                .filter_map(|c| c.uncertain_at)
                .min()
                .map(|t| format!(" since {}", t.format("%Y-%m-%d %H:%M UTC")))
                .unwrap_or_default();
            let names: Vec<&str> = uncertain.iter().map(|c| c.address.as_str()).collect();
            let _ = write!(
                line,
                "\n    needs a check — {} uncertain{since} (the platform may or may not have shown the post): {}\n    look in each group; for those without the message: finrep run --config DIR -n {namespace} --report {report} --date {date} --resend-uncertain={}",
                names.len(),
                names.join(", "),
                names.join(",")
            );
        }
        let mut refused: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for c in groups
            .iter()
            .filter(|c| !matches!(c.status, DeliveryStatus::Sent | DeliveryStatus::Uncertain))
        {
            let why = format!(
                "{}{}{}",
                c.status,
                c.reply_code.map(|x| format!(" {x}")).unwrap_or_default(),
                c.reply
                    .as_deref()
                    .map(|r| format!(" {r}"))
                    .unwrap_or_default()
            );
            refused.entry(why).or_default().push(&c.address);
        }
        for (why, names) in refused {
            let _ = write!(line, "\n    {why}: {}", names.join(", "));
        }
        out.push(line);
    }
    out
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
        let o = overview(runs, vec![], vec![], &reports, &[], now);
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
            &[],
            now,
        );
        assert!(!fine.needs_attention());
    }

    /// `finrep status` and the console's card say the same of a report: a slot the scheduler
    /// recorded that came due with nothing run is "missed" even for a report that never ran
    /// and has no manifest at hand, with the card's reasons.
    #[test]
    fn status_says_what_the_console_card_says() {
        let now = at("2026-11-23T01:00:00Z");
        let recorded = |report: &str, slot: &str| NextSlot {
            namespace: "default".into(),
            report: report.into(),
            next_slot: Some(at(slot)),
            updated_at: at("2026-11-22T00:00:00Z"),
        };
        let mut partly = run("partly", "2026-11-23", RunPhase::PartiallyDelivered);
        partly.started_at = Some(at("2026-11-22T22:00:01Z"));
        partly.deliveries.add(DeliveryStatus::Failed, 1, 0);
        let runs = vec![partly];
        let slots = [
            recorded("first", "2026-11-22T22:00:00Z"),
            recorded("partly", "2026-11-23T22:00:00Z"),
        ];
        let o = overview(runs.clone(), vec![], vec![], &[], &slots, now);
        let by = |n: &str| o.reports.iter().find(|l| l.report == n).unwrap().clone();
        assert_eq!(by("first").health, Health::Missed);
        assert_eq!(by("partly").health, Health::Failed);
        assert_eq!(
            by("partly").next_slot.as_deref(),
            Some("2026-11-23T22:00:00+00:00")
        );
        let records: Vec<glance::ReportRecord> = o
            .reports
            .iter()
            .map(|l| glance::ReportRecord {
                namespace: l.namespace.clone(),
                report: l.report.clone(),
                run: l.last_run.clone(),
                next_slot: slots
                    .iter()
                    .find(|s| s.report == l.report)
                    .and_then(|s| s.next_slot),
                ..glance::ReportRecord::default()
            })
            .collect();
        for (line, card) in o.reports.iter().zip(glance::cards(&records, now).iter()) {
            assert_eq!((&line.report, line.health), (&card.report, card.health));
            assert_eq!(line.reasons, card.reasons);
        }
        let text = render(&o);
        assert!(
            text.contains(
                "default/first: the slot at 2026-11-22 22:00 UTC came due and nothing ran"
            ),
            "{text}"
        );
        assert!(
            text.contains("default/partly: 1 failed and 0 deferred"),
            "{text}"
        );
    }

    fn post(group: usize, status: DeliveryStatus) -> ChatPostRow {
        ChatPostRow {
            namespace: "desk".into(),
            report: "brief".into(),
            date: "2026-11-23".parse().unwrap(),
            address: format!("wecom:g{group:02}"),
            channel: crate::run::Channel::Wecom,
            status,
            reply_code: (status == DeliveryStatus::Failed).then_some(93000),
            reply: (status == DeliveryStatus::Failed).then(|| "invalid webhook url".into()),
            uncertain_at: (status == DeliveryStatus::Uncertain).then(|| at("2026-11-22T22:07:00Z")),
        }
    }

    /// Thirty groups, two of them uncertain: one summary line naming only those two, with the
    /// command that posts them again once checked — and a run whose only trouble they are
    /// "needs a check" (exit 3), not "failed".
    #[test]
    fn uncertain_posts_are_summarised_and_need_a_check_not_a_failure() {
        let now = at("2026-11-23T01:00:00Z");
        let mut r = run("brief", "2026-11-23", RunPhase::PartiallyDelivered);
        r.namespace = "desk".into();
        r.deliveries.add(DeliveryStatus::Uncertain, 2, 0);
        let mut o = overview(vec![r.clone()], vec![], vec![], &[], &[], now);
        o.chat_groups = (0..30)
            .map(|g| {
                post(
                    g,
                    if g < 2 {
                        DeliveryStatus::Uncertain
                    } else {
                        DeliveryStatus::Sent
                    },
                )
            })
            .collect();
        assert_eq!(o.reports[0].health, Health::NeedsCheck);
        assert_eq!(o.verdict(), Verdict::NeedsCheck);
        assert_eq!(o.verdict().exit_code(), 3);
        let text = render(&o);
        let chat: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("chat groups"))
            .collect();
        assert!(chat.len() <= 4, "{text}");
        assert!(text.contains("28 of 30 group(s) posted"), "{text}");
        assert!(text.contains("since 2026-11-22 22:07 UTC"), "{text}");
        assert!(
            text.contains("--resend-uncertain=wecom:g00,wecom:g01"),
            "{text}"
        );
        assert!(text.contains("needs a check"), "{text}");
        assert!(
            !text.contains("wecom:g05"),
            "posted groups are counted, not listed"
        );

        // A refusal besides makes it a failure, grouped by the platform's answer.
        r.deliveries.add(DeliveryStatus::Failed, 1, 0);
        let mut o = overview(vec![r], vec![], vec![], &[], &[], now);
        o.chat_groups = vec![
            post(0, DeliveryStatus::Uncertain),
            post(1, DeliveryStatus::Failed),
        ];
        assert_eq!(o.verdict(), Verdict::Attention);
        let text = render(&o);
        assert!(
            text.contains("failed 93000 invalid webhook url: wecom:g01"),
            "{text}"
        );
    }
}
