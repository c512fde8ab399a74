//! What is due for one report, pure: its run slot (the controller's decision, same
//! functions) and its backup slot, from what the database says was handled.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::api::DailyReport;
use crate::schedule::{Schedule, ScheduleError, SlotDecision, SlotState, decide};
use crate::window::report_window_end;

/// How late a backup slot may still start: a backup an hour late is still yesterday's
/// safety net; one found later waits for the next slot.
pub const BACKUP_DEADLINE: chrono::Duration = chrono::Duration::hours(1);

/// What the database says about one report's slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handled {
    pub active_since: DateTime<Utc>,
    pub last_run: Option<DateTime<Utc>>,
    pub last_backup: Option<DateTime<Utc>>,
}

/// The decisions for one report now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    pub run: SlotDecision,
    /// `None` when the report's backup is disabled.
    pub backup: Option<SlotDecision>,
    /// The next run slot, for `/metrics` and logs.
    pub next_run: Option<DateTime<Tz>>,
    /// When to look at this report again at the latest.
    pub wake_at: Option<DateTime<Utc>>,
}

/// The run and backup decisions for `report` at `now`.
pub fn due(
    report: &DailyReport,
    handled: &Handled,
    now: DateTime<Utc>,
) -> Result<Due, ScheduleError> {
    let spec = &report.spec;
    let schedule = Schedule::parse(&spec.schedule, &spec.time_zone)?;
    let run = decide(
        &schedule,
        &SlotState {
            now,
            active_since: handled.active_since,
            last_handled: handled.last_run,
            suspended: spec.suspend,
            starting_deadline: chrono::Duration::seconds(i64::from(spec.starting_deadline_seconds)),
        },
        |slot| report_window_end(report, slot.date_naive()),
    );
    let backup = if spec.backup.enabled {
        let schedule = Schedule::parse(&spec.backup.schedule, &spec.time_zone)?;
        Some(decide(
            &schedule,
            &SlotState {
                now,
                active_since: handled.active_since,
                last_handled: handled.last_backup,
                suspended: false,
                starting_deadline: BACKUP_DEADLINE,
            },
            |_| None,
        ))
    } else {
        None
    };
    let next_run = (!spec.suspend).then(|| schedule.next_after(now)).flatten();
    let wake_at = [Some(&run), backup.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|d| wake(d, now))
        .min();
    Ok(Due {
        run,
        backup,
        next_run,
        wake_at,
    })
}

/// When a decision wants the scheduler to look again.
pub fn wake(decision: &SlotDecision, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match decision {
        SlotDecision::Suspended => None,
        SlotDecision::Wait { next } => Some(next.to_utc()),
        SlotDecision::Skip { next, .. } => next.map(|n| n.to_utc()),
        // Started now; the pass after it finds the next slot.
        SlotDecision::Start { .. } => Some(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DailyReportSpec;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn report(edit: impl FnOnce(&mut DailyReportSpec)) -> DailyReport {
        let mut spec: DailyReportSpec = serde_json::from_value(serde_json::json!({
            "title": "Brief",
            "smtp": {"host": "smtp.example.com", "from": "brief@example.com"},
        }))
        .unwrap();
        edit(&mut spec);
        DailyReport::new("brief", spec)
    }

    fn handled(active_since: &str) -> Handled {
        Handled {
            active_since: utc(active_since),
            last_run: None,
            last_backup: None,
        }
    }

    #[test]
    fn the_morning_slot_starts_and_the_backup_follows() {
        let r = report(|_| {});
        // 06:00:30 Shanghai.
        let d = due(
            &r,
            &handled("2026-11-23T00:00:00Z"),
            utc("2026-11-23T22:00:30Z"),
        )
        .unwrap();
        assert!(matches!(d.run, SlotDecision::Start { .. }), "{d:?}");
        let Some(SlotDecision::Wait { next }) = d.backup else {
            panic!("{d:?}")
        };
        assert_eq!(next.to_rfc3339(), "2026-11-24T06:30:00+08:00");
        assert_eq!(d.wake_at, Some(utc("2026-11-23T22:00:30Z")));
    }

    #[test]
    fn a_handled_slot_waits_for_tomorrow() {
        let r = report(|_| {});
        let mut h = handled("2026-11-23T00:00:00Z");
        h.last_run = Some(utc("2026-11-23T22:00:00Z"));
        let d = due(&r, &h, utc("2026-11-23T22:10:00Z")).unwrap();
        let SlotDecision::Wait { next } = d.run else {
            panic!("{d:?}")
        };
        assert_eq!(next.to_rfc3339(), "2026-11-25T06:00:00+08:00");
        // The backup at 06:30 is the earlier wake-up.
        assert_eq!(d.wake_at, Some(utc("2026-11-23T22:30:00Z")));
    }

    #[test]
    fn suspended_reports_still_back_up_and_disabled_backups_do_not() {
        let r = report(|s| s.suspend = true);
        let d = due(
            &r,
            &handled("2026-11-23T00:00:00Z"),
            utc("2026-11-23T22:31:00Z"),
        )
        .unwrap();
        assert_eq!(d.run, SlotDecision::Suspended);
        assert_eq!(d.next_run, None);
        assert!(matches!(d.backup, Some(SlotDecision::Start { .. })));
        let r = report(|s| s.backup.enabled = false);
        let d = due(
            &r,
            &handled("2026-11-23T00:00:00Z"),
            utc("2026-11-23T22:31:00Z"),
        )
        .unwrap();
        assert_eq!(d.backup, None);
    }

    #[test]
    fn a_backup_found_hours_late_is_skipped() {
        let r = report(|_| {});
        let d = due(
            &r,
            &handled("2026-11-23T00:00:00Z"),
            utc("2026-11-24T01:00:00Z"),
        )
        .unwrap();
        assert!(matches!(d.backup, Some(SlotDecision::Skip { .. })), "{d:?}");
    }
}
