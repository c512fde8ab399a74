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

    #[test]
    fn dst_gap_moves_forward() {
        let tz = parse_time_zone("America/New_York").unwrap();
        let date = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
        let t = local_instant(tz, date, NaiveTime::from_hms_opt(2, 30, 0).unwrap()).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-03-08T03:00:00-04:00");
    }
}
