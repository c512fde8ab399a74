//! The mail window as pure decisions: given the clock, may a delivery start now, must the
//! run wait, or is the window over? Scheduled runs never start before `start` and stop
//! starting deliveries at `end`; manual runs deliver at once unless asked to respect it.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::api::{DailyReport, LateDelivery, MailWindow};
use crate::schedule::{ScheduleError, local_instant, parse_local_time};

/// The window of one day, as instants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub late: LateDelivery,
}

impl Window {
    pub fn for_date(window: &MailWindow, tz: Tz, date: NaiveDate) -> Result<Self, ScheduleError> {
        let at = |hhmm: &str| -> Result<DateTime<Utc>, ScheduleError> {
            let t = parse_local_time(hhmm)?;
            local_instant(tz, date, t)
                .map(|d| d.to_utc())
                .ok_or_else(|| ScheduleError::LocalTime {
                    value: hhmm.to_string(),
                })
        };
        Ok(Self {
            start: at(&window.start)?,
            end: at(&window.end)?,
            late: window.late_delivery,
        })
    }
}

/// The end of a report's mail window on local `date`: a scheduled slot found after it is
/// missed, and a run's deadline counts from it. `None` when the spec's zone or times are
/// invalid (validation reports those).
pub fn report_window_end(report: &DailyReport, date: NaiveDate) -> Option<DateTime<Utc>> {
    let tz = crate::schedule::parse_time_zone(&report.spec.time_zone).ok()?;
    Window::for_date(&report.spec.mail_window, tz, date)
        .ok()
        .map(|w| w.end)
}

/// How a run treats the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowMode {
    /// Scheduled runs, and manual runs with `--respect-window`.
    Respect,
    /// Manual runs: deliver now, whatever the time.
    Ignore,
}

impl WindowMode {
    /// A scheduled run keeps to the window; a manual run (today's run, started by a person)
    /// delivers at once unless it was asked to respect the window.
    pub fn for_run(manual: bool, respect_window: bool) -> Self {
        if manual && !respect_window {
            Self::Ignore
        } else {
            Self::Respect
        }
    }
}

/// What to do about the next delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Deliver now.
    Open,
    /// Too early: wait until this instant.
    WaitUntil(DateTime<Utc>),
    /// The window is over: what is left is deferred; `send_late` says whether it is still
    /// sent.
    Closed { send_late: bool },
}

pub fn gate(window: &Window, mode: WindowMode, now: DateTime<Utc>) -> Gate {
    match mode {
        WindowMode::Ignore => Gate::Open,
        WindowMode::Respect if now < window.start => Gate::WaitUntil(window.start),
        WindowMode::Respect if now < window.end => Gate::Open,
        WindowMode::Respect => Gate::Closed {
            send_late: window.late == LateDelivery::Send,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(late: LateDelivery) -> Window {
        let mw = MailWindow {
            start: "06:05".into(),
            end: "06:20".into(),
            late_delivery: late,
        };
        Window::for_date(
            &mw,
            chrono_tz::Asia::Shanghai,
            NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
        )
        .unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn scheduled_runs_wait_for_and_stop_at_the_window() {
        let w = window(LateDelivery::Skip);
        assert_eq!(w.start, at("2026-11-22T22:05:00Z"));
        assert_eq!(
            gate(&w, WindowMode::Respect, at("2026-11-23T06:00:00+08:00")),
            Gate::WaitUntil(w.start)
        );
        assert_eq!(
            gate(&w, WindowMode::Respect, at("2026-11-23T06:05:00+08:00")),
            Gate::Open
        );
        assert_eq!(
            gate(&w, WindowMode::Respect, at("2026-11-23T06:19:59+08:00")),
            Gate::Open
        );
        assert_eq!(
            gate(&w, WindowMode::Respect, at("2026-11-23T06:20:00+08:00")),
            Gate::Closed { send_late: false }
        );
        let w = window(LateDelivery::Send);
        assert_eq!(
            gate(&w, WindowMode::Respect, at("2026-11-23T09:00:00+08:00")),
            Gate::Closed { send_late: true }
        );
    }

    #[test]
    fn only_manual_runs_may_ignore_the_window() {
        assert_eq!(WindowMode::for_run(false, false), WindowMode::Respect);
        assert_eq!(WindowMode::for_run(false, true), WindowMode::Respect);
        assert_eq!(WindowMode::for_run(true, false), WindowMode::Ignore);
        assert_eq!(WindowMode::for_run(true, true), WindowMode::Respect);
    }

    #[test]
    fn manual_runs_deliver_at_once() {
        let w = window(LateDelivery::Skip);
        for t in ["2026-11-23T05:00:00+08:00", "2026-11-23T23:00:00+08:00"] {
            assert_eq!(gate(&w, WindowMode::Ignore, at(t)), Gate::Open);
        }
    }
}
