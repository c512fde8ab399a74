//! Slot math: when a report's cron expression fires, in its IANA time zone.
//!
//! Everything here is pure: instants in, instants out. The scheduler (controller or
//! standalone) and `finrep validate` share it, so a schedule that validates is a schedule
//! that runs.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::{
    Cron,
    parser::{CronParser, Seconds, Year},
};

/// Why a schedule or a local time was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error(
        "cron expression {expr:?} must have 5 fields (minute hour day-of-month month day-of-week), found {found}"
    )]
    FieldCount { expr: String, found: usize },
    #[error("cron expression {expr:?} is invalid: {reason}")]
    Cron { expr: String, reason: String },
    #[error("cron expression {expr:?} never fires")]
    NeverFires { expr: String },
    #[error(
        "unknown time zone {zone:?}; use an IANA name such as Asia/Shanghai, Asia/Hong_Kong or America/New_York"
    )]
    TimeZone { zone: String },
    #[error("{value:?} is not a local time HH:MM (24-hour), e.g. 06:05")]
    LocalTime { value: String },
}

/// A parsed cron expression bound to a time zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
}

impl Schedule {
    /// Parses a standard 5-field cron expression (no seconds, no year) and an IANA zone.
    pub fn parse(expr: &str, zone: &str) -> Result<Self, ScheduleError> {
        let tz = parse_time_zone(zone)?;
        let fields = expr.split_whitespace().count();
        // Nicknames such as @daily are accepted by croner and by Kubernetes CronJobs alike.
        if fields != 5 && !expr.trim_start().starts_with('@') {
            return Err(ScheduleError::FieldCount {
                expr: expr.to_string(),
                found: fields,
            });
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| ScheduleError::Cron {
                expr: expr.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self { cron, tz })
    }

    /// The first slot strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Tz>> {
        self.cron
            .find_next_occurrence(&after.with_timezone(&self.tz), false)
            .ok()
    }

    /// The latest slot at or before `at`.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Tz>> {
        self.cron
            .find_previous_occurrence(&at.with_timezone(&self.tz), true)
            .ok()
    }

    /// The time zone slots are in.
    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// Slots from `from` (exclusive) up to `limit` of them.
    pub fn slots_after(&self, from: DateTime<Utc>, limit: usize) -> Vec<DateTime<Tz>> {
        self.cron
            .iter_after(from.with_timezone(&self.tz))
            .take(limit)
            .collect()
    }

    /// Checks that the schedule fires at most once per local day and returns the local
    /// times of day it fires at, looking at the first `sample` slots after `reference`.
    pub fn daily_fire_times(
        &self,
        reference: DateTime<Utc>,
        sample: usize,
    ) -> Result<DailyFireTimes, ScheduleError> {
        let slots = self.slots_after(reference, sample);
        if slots.is_empty() {
            return Err(ScheduleError::NeverFires {
                expr: self.cron.pattern.to_string(),
            });
        }
        let mut times: Vec<NaiveTime> = slots.iter().map(|s| s.time()).collect();
        times.sort();
        times.dedup();
        let same_day = slots
            .windows(2)
            .find(|w| w[0].date_naive() == w[1].date_naive())
            .map(|w| (w[0].date_naive(), w[0].time(), w[1].time()));
        Ok(DailyFireTimes { times, same_day })
    }
}

/// When a schedule fires within a day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DailyFireTimes {
    /// Distinct local times of day seen, earliest first.
    pub times: Vec<NaiveTime>,
    /// A local date on which the schedule fired twice, with the two times, if any.
    pub same_day: Option<(NaiveDate, NaiveTime, NaiveTime)>,
}

/// Most missed slots listed by one decision; older ones are only counted, so a controller
/// down for a year neither bursts nor floods status and events.
pub const MAX_MISSED_LISTED: usize = 7;

/// What a scheduler (the controller or standalone mode) knows about one report's slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotState {
    pub now: DateTime<Utc>,
    /// Slots at or before this instant are never run nor counted as missed: the report's
    /// creation, or the end of its last suspension (no surprise runs when a schedule is
    /// created or resumed).
    pub active_since: DateTime<Utc>,
    /// The latest slot already started or recorded as missed.
    pub last_handled: Option<DateTime<Utc>>,
    /// `spec.suspend`.
    pub suspended: bool,
    /// How late a slot may still start (`spec.startingDeadlineSeconds`).
    pub starting_deadline: chrono::Duration,
}

/// What to do about a report's schedule now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotDecision {
    /// Suspended: no new run, no wake-up needed for the schedule.
    Suspended,
    /// Nothing is due: wake at `next`.
    Wait { next: DateTime<Tz> },
    /// Start the run of `slot`, the latest one due (still within its deadline and before
    /// its mail window ends). Earlier slots that passed unrun are `missed`.
    Start { slot: DateTime<Tz>, missed: Missed },
    /// Slots passed beyond their deadline, to record as Missed; then wait for `next`.
    Skip {
        missed: Missed,
        next: Option<DateTime<Tz>>,
    },
}

/// Slots that passed unrun.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Missed {
    /// The latest of them (at most `MAX_MISSED_LISTED`), oldest first.
    pub listed: Vec<DateTime<Tz>>,
    /// How many there were in all.
    pub total: usize,
}

/// The scheduling decision: one run per slot, the latest due slot only, never a burst of
/// old runs however long the scheduler was away. `window_end` gives, for a slot, the end of
/// that day's mail window: a slot found after it is missed even inside its deadline (a
/// report mailed at noon is no morning report).
pub fn decide(
    schedule: &Schedule,
    state: &SlotState,
    window_end: impl Fn(&DateTime<Tz>) -> Option<DateTime<Utc>>,
) -> SlotDecision {
    if state.suspended {
        return SlotDecision::Suspended;
    }
    let floor = state
        .last_handled
        .map_or(state.active_since, |h| h.max(state.active_since));
    let next = schedule.next_after(state.now);
    let due = due_slots(schedule, floor, state.now);
    let Some((latest, earlier)) = due.listed.split_last() else {
        return match next {
            Some(next) => SlotDecision::Wait { next },
            None => SlotDecision::Skip {
                missed: Missed::default(),
                next: None,
            },
        };
    };
    let late = state.now - latest.to_utc();
    let before_window_end = window_end(latest).is_none_or(|end| state.now < end);
    if late <= state.starting_deadline && before_window_end {
        return SlotDecision::Start {
            slot: *latest,
            missed: Missed {
                listed: earlier.to_vec(),
                total: due.total - 1,
            },
        };
    }
    SlotDecision::Skip { missed: due, next }
}

/// Slots in (`floor`, `now`], newest `MAX_MISSED_LISTED` listed (oldest first), all counted.
fn due_slots(schedule: &Schedule, floor: DateTime<Utc>, now: DateTime<Utc>) -> Missed {
    let mut newest_first = Vec::new();
    let mut total = 0;
    let mut cursor = schedule.latest_at_or_before(now);
    while let Some(slot) = cursor {
        if slot.to_utc() <= floor {
            break;
        }
        total += 1;
        if newest_first.len() < MAX_MISSED_LISTED {
            newest_first.push(slot);
        } else if total > 400 {
            // A daily schedule: over a year away, the exact count adds nothing.
            break;
        }
        cursor = schedule.cron.find_previous_occurrence(&slot, false).ok();
    }
    newest_first.reverse();
    Missed {
        listed: newest_first,
        total,
    }
}

/// Parses an IANA time zone name.
pub fn parse_time_zone(zone: &str) -> Result<Tz, ScheduleError> {
    Tz::from_str(zone).map_err(|_| ScheduleError::TimeZone {
        zone: zone.to_string(),
    })
}

/// Parses a local time written `HH:MM` (24-hour, zero-padded).
pub fn parse_local_time(value: &str) -> Result<NaiveTime, ScheduleError> {
    let err = || ScheduleError::LocalTime {
        value: value.to_string(),
    };
    let bytes = value.as_bytes();
    if bytes.len() != 5 || bytes[2] != b':' {
        return Err(err());
    }
    NaiveTime::parse_from_str(value, "%H:%M").map_err(|_| err())
}

/// The instant of a local date and time in a zone. In a DST gap the time is moved forward
/// past the gap; in an overlap the earlier instant is taken.
pub fn local_instant(tz: Tz, date: NaiveDate, time: NaiveTime) -> Option<DateTime<Tz>> {
    let naive = date.and_time(time);
    match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) => Some(t),
        chrono::LocalResult::Ambiguous(earlier, _) => Some(earlier),
        chrono::LocalResult::None => (1..=4)
            .map(|h| naive + chrono::Duration::minutes(30 * h))
            .find_map(|n| tz.from_local_datetime(&n).earliest()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn next_slot_is_in_the_report_zone() {
        let s = Schedule::parse("0 6 * * *", "Asia/Shanghai").unwrap();
        // 2026-11-22T23:00Z is 07:00 in Shanghai, so the next 06:00 is the day after.
        let next = s.next_after(utc("2026-11-22T23:00:00Z")).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-11-24T06:00:00+08:00");
        let next = s.next_after(utc("2026-11-22T21:59:00Z")).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-11-23T06:00:00+08:00");
    }

    #[test]
    fn weekday_schedule_skips_weekends() {
        let s = Schedule::parse("0 6 * * 1-5", "Asia/Shanghai").unwrap();
        // Friday 2026-11-27 07:00 local → next is Monday 2026-11-30.
        let next = s.next_after(utc("2026-11-26T23:00:00Z")).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-11-30T06:00:00+08:00");
    }

    #[test]
    fn rejects_six_fields_and_bad_zones() {
        assert!(matches!(
            Schedule::parse("0 0 6 * * *", "Asia/Shanghai"),
            Err(ScheduleError::FieldCount { found: 6, .. })
        ));
        assert!(matches!(
            Schedule::parse("0 25 * * *", "Asia/Shanghai"),
            Err(ScheduleError::Cron { .. })
        ));
        assert!(matches!(
            Schedule::parse("0 6 * * *", "Asia/Beijing"),
            Err(ScheduleError::TimeZone { .. })
        ));
    }

    #[test]
    fn detects_more_than_one_run_a_day() {
        let s = Schedule::parse("0 6,18 * * *", "Asia/Shanghai").unwrap();
        let fired = s.daily_fire_times(utc("2026-01-01T00:00:00Z"), 16).unwrap();
        assert!(fired.same_day.is_some());
        let s = Schedule::parse("0 6 * * *", "Asia/Shanghai").unwrap();
        let fired = s.daily_fire_times(utc("2026-01-01T00:00:00Z"), 16).unwrap();
        assert_eq!(fired.same_day, None);
        assert_eq!(fired.times, vec![NaiveTime::from_hms_opt(6, 0, 0).unwrap()]);
    }

    #[test]
    fn local_times() {
        assert_eq!(
            parse_local_time("06:05").unwrap(),
            NaiveTime::from_hms_opt(6, 5, 0).unwrap()
        );
        for bad in ["6:05", "24:00", "06:60", "0605", "06:05:00", ""] {
            assert!(parse_local_time(bad).is_err(), "{bad}");
        }
    }

    fn state(now: &str) -> SlotState {
        SlotState {
            now: utc(now),
            active_since: utc("2026-01-01T00:00:00Z"),
            last_handled: None,
            suspended: false,
            starting_deadline: chrono::Duration::seconds(900),
        }
    }

    fn no_window(_: &DateTime<Tz>) -> Option<DateTime<Utc>> {
        None
    }

    fn rfc(t: &DateTime<Tz>) -> String {
        t.to_rfc3339()
    }

    #[test]
    fn waits_for_the_next_slot_then_starts_it() {
        let s = Schedule::parse("0 6 * * *", "Asia/Shanghai").unwrap();
        let mut st = state("2026-11-22T21:59:00Z");
        st.last_handled = Some(utc("2026-11-21T22:00:00Z"));
        match decide(&s, &st, no_window) {
            SlotDecision::Wait { next } => assert_eq!(rfc(&next), "2026-11-23T06:00:00+08:00"),
            d => panic!("{d:?}"),
        }
        st.now = utc("2026-11-22T22:00:30Z");
        match decide(&s, &st, no_window) {
            SlotDecision::Start { slot, missed } => {
                assert_eq!(rfc(&slot), "2026-11-23T06:00:00+08:00");
                assert_eq!(missed, Missed::default());
            }
            d => panic!("{d:?}"),
        }
        // Once started, the same slot is never due again.
        st.last_handled = Some(utc("2026-11-22T22:00:00Z"));
        assert!(matches!(
            decide(&s, &st, no_window),
            SlotDecision::Wait { .. }
        ));
    }

    #[test]
    fn three_days_away_starts_only_todays_slot_or_none() {
        let s = Schedule::parse("0 6 * * *", "Asia/Shanghai").unwrap();
        let mut st = state("2026-11-22T22:05:00Z");
        st.last_handled = Some(utc("2026-11-19T22:00:00Z"));
        match decide(&s, &st, no_window) {
            SlotDecision::Start { slot, missed } => {
                assert_eq!(rfc(&slot), "2026-11-23T06:00:00+08:00");
                assert_eq!(missed.total, 2);
                let listed: Vec<String> = missed.listed.iter().map(rfc).collect();
                assert_eq!(
                    listed,
                    ["2026-11-21T06:00:00+08:00", "2026-11-22T06:00:00+08:00"]
                );
            }
            d => panic!("{d:?}"),
        }
        // Beyond the deadline: all three are missed, none runs.
        st.now = utc("2026-11-22T23:00:00Z");
        match decide(&s, &st, no_window) {
            SlotDecision::Skip { missed, next } => {
                assert_eq!(missed.total, 3);
                assert_eq!(rfc(&next.unwrap()), "2026-11-24T06:00:00+08:00");
            }
            d => panic!("{d:?}"),
        }
        // A year away: a bounded list, a count, no burst.
        st.last_handled = Some(utc("2025-11-22T22:00:00Z"));
        match decide(&s, &st, no_window) {
            SlotDecision::Skip { missed, .. } => {
                assert_eq!(missed.listed.len(), MAX_MISSED_LISTED);
                assert!(missed.total > 300, "{}", missed.total);
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn the_window_end_closes_a_slot_inside_its_deadline() {
        let s = Schedule::parse("0 6 * * *", "Asia/Shanghai").unwrap();
        let mut st = state("2026-11-22T22:25:00Z"); // 06:25, the window ended at 06:20
        st.starting_deadline = chrono::Duration::seconds(3600);
        let end = |_: &DateTime<Tz>| Some(utc("2026-11-22T22:20:00Z"));
        assert!(matches!(decide(&s, &st, end), SlotDecision::Skip { .. }));
        st.now = utc("2026-11-22T22:15:00Z");
        assert!(matches!(decide(&s, &st, end), SlotDecision::Start { .. }));
    }

    #[test]
    fn no_surprise_runs_when_created_or_resumed() {
        let s = Schedule::parse("0 6 * * *", "Asia/Shanghai").unwrap();
        // Created at 06:05, five minutes after today's slot: nothing runs, nothing is missed.
        let mut st = state("2026-11-22T22:06:00Z");
        st.active_since = utc("2026-11-22T22:05:00Z");
        assert!(matches!(
            decide(&s, &st, no_window),
            SlotDecision::Wait { .. }
        ));
        st.suspended = true;
        assert_eq!(decide(&s, &st, no_window), SlotDecision::Suspended);
    }

    #[test]
    fn dst_gaps_and_overlaps_fire_once_a_day() {
        // New York springs forward at 02:00 on 2026-03-08: a 02:30 run happens at 03:00.
        let s = Schedule::parse("30 2 * * *", "America/New_York").unwrap();
        let slots: Vec<String> = s
            .slots_after(utc("2026-03-07T12:00:00Z"), 3)
            .iter()
            .map(rfc)
            .collect();
        assert_eq!(
            slots,
            [
                "2026-03-08T03:00:00-04:00",
                "2026-03-09T02:30:00-04:00",
                "2026-03-10T02:30:00-04:00"
            ]
        );
        // It falls back at 02:00 on 2026-11-01: a 01:30 run happens once, at the first 01:30.
        let s = Schedule::parse("30 1 * * *", "America/New_York").unwrap();
        let slots: Vec<String> = s
            .slots_after(utc("2026-10-31T12:00:00Z"), 3)
            .iter()
            .map(rfc)
            .collect();
        assert_eq!(
            slots,
            [
                "2026-11-01T01:30:00-04:00",
                "2026-11-02T01:30:00-05:00",
                "2026-11-03T01:30:00-05:00"
            ]
        );
        // London: 01:30 does not exist on 2026-03-29 and happens twice on 2026-10-25.
        let s = Schedule::parse("30 1 * * *", "Europe/London").unwrap();
        let spring: Vec<String> = s
            .slots_after(utc("2026-03-28T12:00:00Z"), 2)
            .iter()
            .map(rfc)
            .collect();
        assert_eq!(
            spring,
            ["2026-03-29T02:00:00+01:00", "2026-03-30T01:30:00+01:00"]
        );
        let autumn: Vec<String> = s
            .slots_after(utc("2026-10-24T12:00:00Z"), 2)
            .iter()
            .map(rfc)
            .collect();
        assert_eq!(
            autumn,
            ["2026-10-25T01:30:00+01:00", "2026-10-26T01:30:00+00:00"]
        );
        // Deciding right after the repeated hour does not run the slot again.
        let mut st = state("2026-10-25T01:10:00Z"); // 01:10 GMT, the second 01:10
        st.last_handled = Some(utc("2026-10-25T00:30:00Z"));
        assert!(matches!(
            decide(&s, &st, no_window),
            SlotDecision::Wait { .. }
        ));
    }

    #[test]
    fn month_ends_and_leap_days() {
        let s = Schedule::parse("0 6 29 2 *", "Asia/Shanghai").unwrap();
        let next = s.next_after(utc("2026-03-01T00:00:00Z")).unwrap();
        assert_eq!(rfc(&next), "2028-02-29T06:00:00+08:00");
        let s = Schedule::parse("0 6 31 * *", "Asia/Shanghai").unwrap();
        let slots: Vec<String> = s
            .slots_after(utc("2026-11-01T00:00:00Z"), 2)
            .iter()
            .map(rfc)
            .collect();
        assert_eq!(
            slots,
            ["2026-12-31T06:00:00+08:00", "2027-01-31T06:00:00+08:00"]
        );
        // Across midnight in the report's zone: 23:30 UTC is already tomorrow in Shanghai.
        let s = Schedule::parse("0 6 * * *", "Asia/Shanghai").unwrap();
        let latest = s.latest_at_or_before(utc("2026-11-22T23:30:00Z")).unwrap();
        assert_eq!(rfc(&latest), "2026-11-23T06:00:00+08:00");
    }

    #[test]
    fn dst_gap_moves_forward() {
        let tz = parse_time_zone("America/New_York").unwrap();
        let date = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
        let t = local_instant(tz, date, NaiveTime::from_hms_opt(2, 30, 0).unwrap()).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-03-08T03:00:00-04:00");
    }
}
