//! One verdict per report and its latest slot — it went out, it is running, or it needs
//! attention and why — decided here for the console's cards and, through `Health`, for
//! `finrep status` (`overview`) alike. Pure: the latest run's record, the slot the scheduler
//! last said was next, and the time in; a card out.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::api::MailWindow;
use crate::overview::{Health, health};
use crate::run::{Channel, DeliveryCounts, RunPhase};
use crate::store::LatestRun;

/// How long after a recorded slot a run must have started before the slot counts as passed
/// with no run (the default starting deadline is 15 minutes; a queue may hold it longer).
pub const NO_RUN_GRACE: chrono::Duration = chrono::Duration::minutes(30);

/// Why a report needs attention.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Reason {
    /// The run failed: nothing or not all was delivered, and no retry will.
    RunFailed,
    /// Some copies failed, bounced or were deferred.
    NotAllDelivered { failed: i64, deferred: i64 },
    /// Chat posts whose answer was lost: a person must look at the groups.
    Uncertain { posts: i64 },
    /// A slot came due and nothing ran (the scheduler recorded it as next; no run started).
    SlotWithoutRun { slot: DateTime<Utc> },
    /// The slot was recorded missed.
    Missed,
    /// The last copy went out after the mail window closed.
    DeliveredLate,
}

impl Reason {
    /// How `finrep status` says it (the console says it from its translation table).
    pub fn words(&self) -> String {
        match self {
            Self::RunFailed => "the run failed".into(),
            Self::NotAllDelivered { failed, deferred } => {
                format!("{failed} failed and {deferred} deferred")
            }
            Self::Uncertain { posts } => format!("{posts} chat post(s) uncertain"),
            Self::SlotWithoutRun { slot } => format!(
                "the slot at {} came due and nothing ran",
                slot.format("%Y-%m-%d %H:%M UTC")
            ),
            Self::Missed => "the slot was missed".into(),
            Self::DeliveredLate => "the last copy went out after the mail window".into(),
        }
    }
}

/// A run's deliveries on one channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChannelLine {
    pub channel: Channel,
    pub delivered: i64,
    pub failed: i64,
    pub deferred: i64,
}

/// What the scheduler and the records say of one report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportRecord {
    pub namespace: String,
    pub report: String,
    pub title: Option<String>,
    /// The latest run's row id, for links.
    pub run_id: Option<i64>,
    pub run: Option<LatestRun>,
    pub channels: Vec<(Channel, DeliveryCounts)>,
    /// When the last copy was accepted.
    pub last_delivery: Option<DateTime<Utc>>,
    /// The run's mail window and zone, as its plan recorded them.
    pub window: Option<(MailWindow, String)>,
    /// The slot the scheduler last recorded as next (`finrep status` gives the latest slot of
    /// the manifest's schedule when that is later and already past).
    pub next_slot: Option<DateTime<Utc>>,
    /// How long a slot may wait for its run (the report's starting deadline), when known;
    /// never less than [`NO_RUN_GRACE`].
    pub starting_deadline: Option<chrono::Duration>,
}

/// One report's card.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Card {
    pub namespace: String,
    pub report: String,
    pub title: Option<String>,
    pub run_id: Option<i64>,
    pub date: Option<NaiveDate>,
    pub phase: Option<RunPhase>,
    pub health: Health,
    pub reasons: Vec<Reason>,
    pub channels: Vec<ChannelLine>,
    pub last_delivery: Option<DateTime<Utc>>,
    pub window_end: Option<DateTime<Utc>>,
    /// The next slot, when it is still ahead.
    pub next_slot: Option<DateTime<Utc>>,
}

impl Card {
    /// Cards needing attention first, then those running, then the rest; by name within.
    fn rank(&self) -> u8 {
        match self.health {
            Health::Failed | Health::Missed => 0,
            Health::NeedsCheck => 1,
            Health::Running => 2,
            Health::Ok => 3,
            Health::NeverRun => 4,
        }
    }
}

/// The card of one report at `now`.
pub fn card(r: &ReportRecord, now: DateTime<Utc>) -> Card {
    let run = r.run.as_ref();
    let window_end = match (run, &r.window) {
        (Some(run), Some((window, zone))) => window_end(window, zone, run.date),
        _ => None,
    };
    let no_run_since = slot_without_run(r, now);
    let mut reasons = run_reasons(run);
    // A manual run sends at once, whatever the window: only a slot's run can be late.
    let scheduled = run.is_some_and(|x| !x.manual);
    if let (Some(last), Some(end)) = (r.last_delivery, window_end)
        && last > end
        && scheduled
    {
        reasons.push(Reason::DeliveredLate);
    }
    let mut health = health(run);
    if let Some(slot) = no_run_since {
        reasons.insert(0, Reason::SlotWithoutRun { slot });
        health = Health::Missed;
    }
    Card {
        namespace: r.namespace.clone(),
        report: r.report.clone(),
        title: r.title.clone(),
        run_id: r.run_id,
        date: run.map(|x| x.date),
        phase: run.map(|x| x.phase),
        health,
        reasons,
        channels: r
            .channels
            .iter()
            .map(|(channel, c)| ChannelLine {
                channel: *channel,
                delivered: c.sent,
                failed: c.failed + c.bounced,
                deferred: c.deferred,
            })
            .collect(),
        last_delivery: r.last_delivery,
        window_end,
        next_slot: r.next_slot.filter(|t| *t > now),
    }
}

/// When the mail window of a run of `date` closed, from the window and zone its plan recorded.
pub fn window_end(window: &MailWindow, zone: &str, date: NaiveDate) -> Option<DateTime<Utc>> {
    let tz = crate::schedule::parse_time_zone(zone).ok()?;
    crate::window::Window::for_date(window, tz, date)
        .ok()
        .map(|w| w.end)
}

/// The recorded slot, when it passed (beyond the grace) with no run started for it.
fn slot_without_run(r: &ReportRecord, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let slot = r.next_slot?;
    let grace = r
        .starting_deadline
        .unwrap_or(NO_RUN_GRACE)
        .max(NO_RUN_GRACE);
    if slot + grace > now {
        return None;
    }
    let run = r.run.as_ref();
    // A run started for the slot (or after it) answers it; a manual run may start a little
    // before the slot it stands for. A run of the slot's local date answers it too (a record
    // without its start time, a run made by hand that morning).
    let started = run
        .and_then(|x| x.started_at)
        .is_some_and(|started| started + chrono::Duration::hours(1) >= slot);
    let slot_date = r
        .window
        .as_ref()
        .and_then(|(_, zone)| crate::schedule::parse_time_zone(zone).ok())
        .map(|tz| slot.with_timezone(&tz).date_naive());
    let same_date = run.zip(slot_date).is_some_and(|(x, d)| x.date >= d);
    (!(started || same_date)).then_some(slot)
}

/// The local date of a slot without a run, in the zone of the report's plan or manifest.
pub fn slot_date(card: &Card, zone: &str) -> Option<NaiveDate> {
    let slot = card.reasons.iter().find_map(|r| match r {
        Reason::SlotWithoutRun { slot } => Some(*slot),
        _ => None,
    })?;
    let tz = crate::schedule::parse_time_zone(zone).ok()?;
    Some(slot.with_timezone(&tz).date_naive())
}

fn run_reasons(run: Option<&LatestRun>) -> Vec<Reason> {
    let Some(run) = run else {
        return Vec::new();
    };
    let d = &run.deliveries;
    let mut out = Vec::new();
    match run.phase {
        RunPhase::Failed => out.push(Reason::RunFailed),
        RunPhase::Missed => out.push(Reason::Missed),
        _ => {}
    }
    let failed = d.failed + d.bounced;
    let finished = !matches!(
        run.phase,
        RunPhase::Queued
            | RunPhase::Pending
            | RunPhase::Collecting
            | RunPhase::Composing
            | RunPhase::Sending
    );
    if finished && (failed > 0 || d.deferred > 0) {
        out.push(Reason::NotAllDelivered {
            failed,
            deferred: d.deferred,
        });
    }
    if d.uncertain > 0 {
        out.push(Reason::Uncertain { posts: d.uncertain });
    }
    out
}

/// Every report's card, what needs attention first.
pub fn cards(records: &[ReportRecord], now: DateTime<Utc>) -> Vec<Card> {
    let mut out: Vec<Card> = records.iter().map(|r| card(r, now)).collect();
    out.sort_by(|a, b| {
        (a.rank(), &a.namespace, &a.report).cmp(&(b.rank(), &b.namespace, &b.report))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn run(phase: RunPhase, sent: i64, failed: i64, started: &str) -> LatestRun {
        LatestRun {
            namespace: "desk".into(),
            report: "brief".into(),
            date: NaiveDate::from_ymd_opt(2026, 12, 5).unwrap(),
            phase,
            manual: false,
            started_at: Some(at(started)),
            finished_at: None,
            articles: 10,
            deliveries: DeliveryCounts {
                recipients: sent + failed,
                sent,
                failed,
                ..DeliveryCounts::default()
            },
            error: None,
        }
    }

    fn record(run: Option<LatestRun>, next: &str) -> ReportRecord {
        ReportRecord {
            namespace: "desk".into(),
            report: "brief".into(),
            run,
            window: Some((MailWindow::default(), "Asia/Shanghai".into())),
            next_slot: Some(at(next)),
            ..ReportRecord::default()
        }
    }

    #[test]
    fn a_morning_that_went_out_is_ok_and_says_its_next_slot() {
        let r = record(
            Some(run(RunPhase::Succeeded, 3, 0, "2026-12-04T22:00:01Z")),
            "2026-12-05T22:00:00Z",
        );
        let c = card(&r, at("2026-12-04T22:21:00Z"));
        assert_eq!(c.health, Health::Ok);
        assert!(c.reasons.is_empty());
        assert_eq!(c.window_end, Some(at("2026-12-04T22:20:00Z")));
        assert_eq!(c.next_slot, Some(at("2026-12-05T22:00:00Z")));
    }

    #[test]
    fn a_slot_that_came_due_with_no_run_needs_attention() {
        // Yesterday's run; the controller recorded today's 06:00 as next, then nothing ran.
        let mut yesterday = run(RunPhase::Succeeded, 3, 0, "2026-12-03T22:00:01Z");
        yesterday.date = NaiveDate::from_ymd_opt(2026, 12, 4).unwrap();
        let r = record(Some(yesterday.clone()), "2026-12-04T22:00:00Z");
        let c = card(&r, at("2026-12-04T22:40:00Z"));
        assert_eq!(c.health, Health::Missed);
        assert_eq!(
            c.reasons[0],
            Reason::SlotWithoutRun {
                slot: at("2026-12-04T22:00:00Z")
            }
        );
        assert_eq!(c.next_slot, None, "the recorded next slot is past");
        // Within the grace it may still start: not yet missed.
        assert_eq!(card(&r, at("2026-12-04T22:10:00Z")).health, Health::Ok);
        // A longer starting deadline holds the verdict back as long.
        let patient = ReportRecord {
            starting_deadline: Some(chrono::Duration::hours(2)),
            ..r.clone()
        };
        assert_eq!(
            card(&patient, at("2026-12-04T22:40:00Z")).health,
            Health::Ok
        );
        // A run of that morning with no start time recorded (made by hand) answers the slot.
        let mut by_hand = yesterday;
        by_hand.date = NaiveDate::from_ymd_opt(2026, 12, 5).unwrap();
        by_hand.started_at = None;
        let answered = record(Some(by_hand), "2026-12-04T22:00:00Z");
        assert_eq!(
            card(&answered, at("2026-12-04T22:40:00Z")).health,
            Health::Ok
        );
    }

    #[test]
    fn partly_delivered_and_late_are_said_and_ranked_first() {
        let mut late = record(
            Some(run(
                RunPhase::PartiallyDelivered,
                3,
                1,
                "2026-12-04T22:00:01Z",
            )),
            "2026-12-05T22:00:00Z",
        );
        late.report = "a-late".into();
        late.last_delivery = Some(at("2026-12-04T22:25:00Z"));
        let ok = record(
            Some(run(RunPhase::Succeeded, 3, 0, "2026-12-04T22:00:01Z")),
            "2026-12-05T22:00:00Z",
        );
        let cards = cards(&[ok, late], at("2026-12-04T22:30:00Z"));
        assert_eq!(cards[0].report, "a-late");
        assert_eq!(cards[0].health, Health::Failed);
        assert_eq!(
            cards[0].reasons,
            [
                Reason::NotAllDelivered {
                    failed: 1,
                    deferred: 0
                },
                Reason::DeliveredLate
            ]
        );
    }
}
