//! What is due, pure: a report's run slot (the controller's decision, same functions) and the
//! installation's backup slot, from what the database says was handled.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::api::DailyReport;
use crate::schedule::{Schedule, ScheduleError, SlotDecision, SlotState, decide};
use crate::window::report_window_end;

/// How late a backup slot may still start: a backup an hour late is still yesterday's
/// safety net; one found later waits for the next slot.
pub const BACKUP_DEADLINE: chrono::Duration = chrono::Duration::hours(1);

/// The schedule slots of the installation's own backup are kept under this namespace (no
/// report's: a Kubernetes namespace is never empty) and the report name `BACKUP_REPORT`.
pub const INSTALLATION: &str = "";
pub const BACKUP_REPORT: &str = "backup";

/// The database's one backup schedule: cron, its time zone and how long dumps are kept —
/// as the chart's single CronJob, whatever the number of reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupSchedule {
    pub cron: String,
    pub time_zone: String,
    pub retention_days: u32,
}

/// What the database says about one report's slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handled {
    pub active_since: DateTime<Utc>,
    pub last_run: Option<DateTime<Utc>>,
}

/// The decision for one report now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    pub run: SlotDecision,
    /// The next run slot, for `/metrics` and logs.
    pub next_run: Option<DateTime<Tz>>,
    /// When to look at this report again at the latest.
    pub wake_at: Option<DateTime<Utc>>,
}

/// The run decision for `report` at `now`.
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
    let next_run = (!spec.suspend).then(|| schedule.next_after(now)).flatten();
    let wake_at = wake(&run, now);
    Ok(Due {
        run,
        next_run,
        wake_at,
    })
}

/// The installation's backup decision at `now`: due at each slot of its schedule (at most an
/// hour late), counted from when the installation first scheduled it.
pub fn backup_due(
    backup: &BackupSchedule,
    active_since: DateTime<Utc>,
    last_backup: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<SlotDecision, ScheduleError> {
    let schedule = Schedule::parse(&backup.cron, &backup.time_zone)?;
    Ok(decide(
        &schedule,
        &SlotState {
            now,
            active_since,
            last_handled: last_backup,
            suspended: false,
            starting_deadline: BACKUP_DEADLINE,
        },
        |_| None,
    ))
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
        }
    }

    fn nightly() -> BackupSchedule {
        BackupSchedule {
            cron: "30 6 * * *".into(),
            time_zone: "Asia/Shanghai".into(),
            retention_days: 14,
        }
    }

    #[test]
    fn the_morning_slot_starts() {
        let r = report(|_| {});
        // 06:00:30 Shanghai.
        let d = due(
            &r,
            &handled("2026-11-23T00:00:00Z"),
            utc("2026-11-23T22:00:30Z"),
        )
        .unwrap();
        assert!(matches!(d.run, SlotDecision::Start { .. }), "{d:?}");
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
        assert_eq!(d.wake_at, Some(next.to_utc()));
        let r = report(|s| s.suspend = true);
        let d = due(&r, &h, utc("2026-11-23T22:31:00Z")).unwrap();
        assert_eq!((d.run, d.next_run), (SlotDecision::Suspended, None));
    }

    /// One backup for the installation, whatever the reports: due at 06:30, then tomorrow's;
    /// one found more than an hour late waits for the next slot.
    #[test]
    fn the_installation_backs_up_once_a_day_at_most_an_hour_late() {
        let since = utc("2026-11-23T00:00:00Z");
        let d = backup_due(&nightly(), since, None, utc("2026-11-23T22:00:30Z")).unwrap();
        let SlotDecision::Wait { next } = d else {
            panic!("{d:?}")
        };
        assert_eq!(next.to_rfc3339(), "2026-11-24T06:30:00+08:00");
        let d = backup_due(&nightly(), since, None, utc("2026-11-23T22:31:00Z")).unwrap();
        assert!(matches!(d, SlotDecision::Start { .. }), "{d:?}");
        let done = Some(utc("2026-11-23T22:30:00Z"));
        let d = backup_due(&nightly(), since, done, utc("2026-11-23T22:40:00Z")).unwrap();
        assert!(matches!(d, SlotDecision::Wait { .. }), "{d:?}");
        let d = backup_due(&nightly(), since, None, utc("2026-11-24T01:00:00Z")).unwrap();
        assert!(matches!(d, SlotDecision::Skip { .. }), "{d:?}");
    }
}
