//! Standalone mode's scheduling state: when each report became schedulable and which slots
//! were handled. Claiming a slot is an insert, so two schedulers never run one slot twice.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{RunKey, Store, StoreError};
use crate::run::{RunPhase, SlotState, SlotTask};

/// One report's slot of one task.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SlotKey {
    pub namespace: String,
    pub report: String,
    pub task: SlotTask,
    pub slot: DateTime<Utc>,
}

/// The latest handled slot of every report and task, keyed by (namespace, report, task).
pub type LastHandled = HashMap<(String, String, SlotTask), DateTime<Utc>>;

impl Store {
    /// The instant report `namespace/report` became schedulable: recorded at `now` the first
    /// time the report is seen, and again when it is resumed after a suspension.
    pub async fn active_since(
        &self,
        namespace: &str,
        report: &str,
        suspended: bool,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, StoreError> {
        let at = sqlx::query_scalar(
            "INSERT INTO schedule_state (namespace, report, active_since, suspended)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (namespace, report) DO UPDATE
                SET active_since = CASE WHEN schedule_state.suspended AND NOT EXCLUDED.suspended
                                        THEN EXCLUDED.active_since
                                        ELSE schedule_state.active_since END,
                    suspended = EXCLUDED.suspended,
                    updated_at = now()
             RETURNING active_since",
        )
        .bind(namespace)
        .bind(report)
        .bind(now)
        .bind(suspended)
        .fetch_one(self.pool())
        .await?;
        Ok(at)
    }

    /// The latest slot handled (started, finished, failed or recorded missed) of every
    /// report and task.
    pub async fn last_handled_slots(&self) -> Result<LastHandled, StoreError> {
        let rows = sqlx::query(
            "SELECT namespace, report, task, max(slot) AS slot
             FROM schedule_slots GROUP BY namespace, report, task",
        )
        .fetch_all(self.pool())
        .await?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in rows {
            out.insert(
                (
                    r.try_get("namespace")?,
                    r.try_get("report")?,
                    super::state_column(&r, "task")?,
                ),
                r.try_get("slot")?,
            );
        }
        Ok(out)
    }

    /// Claims a slot in `state` (Started or Missed). False when it was claimed before.
    pub async fn claim_slot(&self, key: &SlotKey, state: SlotState) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO schedule_slots (namespace, report, task, slot, state, finished_at)
             VALUES ($1, $2, $3, $4, $5, CASE WHEN $5 = $6 THEN NULL ELSE now() END)
             ON CONFLICT DO NOTHING",
        )
        .bind(&key.namespace)
        .bind(&key.report)
        .bind(key.task.as_str())
        .bind(key.slot)
        .bind(state.as_str())
        .bind(SlotState::Started.as_str())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records how a started slot ended.
    pub async fn finish_slot(
        &self,
        key: &SlotKey,
        state: SlotState,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE schedule_slots SET state = $5, error = $6, finished_at = now()
             WHERE namespace = $1 AND report = $2 AND task = $3 AND slot = $4",
        )
        .bind(&key.namespace)
        .bind(&key.report)
        .bind(key.task.as_str())
        .bind(key.slot)
        .bind(state.as_str())
        .bind(error)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Slots started on or after `since` and never finished: a run or backup interrupted by a
    /// stop, oldest first.
    pub async fn unfinished_slots(&self, since: DateTime<Utc>) -> Result<Vec<SlotKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT namespace, report, task, slot FROM schedule_slots
             WHERE state = $1 AND slot >= $2 ORDER BY slot",
        )
        .bind(SlotState::Started.as_str())
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SlotKey {
                    namespace: r.try_get("namespace")?,
                    report: r.try_get("report")?,
                    task: super::state_column(r, "task")?,
                    slot: r.try_get("slot")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Records a slot that passed without a run as that day's run in phase Missed, unless
    /// the day has a run already.
    pub async fn record_missed_run(
        &self,
        key: &RunKey<'_>,
        time_zone: &str,
        scheduled_for: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO reports (namespace, report, report_date, time_zone, scheduled_for, phase,
                                  build_version, build_revision, finished_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
             ON CONFLICT (namespace, report, report_date) DO NOTHING",
        )
        .bind(key.namespace)
        .bind(key.report)
        .bind(key.date)
        .bind(time_zone)
        .bind(scheduled_for)
        .bind(RunPhase::Missed.as_str())
        .bind(crate::build::VERSION)
        .bind(crate::build::REVISION)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
