//! Each run's deliveries counted by channel and status, for the console's figures and
//! pictures. A year of history is ~900,000 delivery rows and never changes once its runs are
//! done, so the counts of a run whose deliveries have settled are kept in memory, keyed by
//! the run and its deliveries' last change; only runs with recent changes (today's) are
//! counted again. The key is read per run from an index (`delivery_log (report_id,
//! updated_at)`), so a change is always seen: every write to `delivery_log` sets `updated_at`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;

use super::{Store, StoreError, state_column};
use crate::run::{Channel, DeliveryCounts, DeliveryStatus};

/// One channel and status of a run: how many, how many were resent after an interruption.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountRow {
    pub channel: Channel,
    pub status: DeliveryStatus,
    pub n: i64,
    pub resent: i64,
}

/// A run's deliveries, counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunCounts {
    pub report_id: i64,
    pub date: NaiveDate,
    pub rows: Arc<Vec<CountRow>>,
    /// When the last copy was accepted.
    pub last_sent: Option<DateTime<Utc>>,
}

impl RunCounts {
    /// The run's counts per channel, channels in their usual order.
    pub fn by_channel(&self) -> Vec<(Channel, DeliveryCounts)> {
        Channel::ALL
            .iter()
            .filter_map(|channel| {
                let mut counts = DeliveryCounts::default();
                let mut any = false;
                for r in self.rows.iter().filter(|r| r.channel == *channel) {
                    counts.add(r.status, r.n, r.resent);
                    any = true;
                }
                any.then_some((*channel, counts))
            })
            .collect()
    }
}

/// How long a run's deliveries must have been still before its counts are kept: longer than
/// any write to `delivery_log` takes to commit (`updated_at` is its transaction's start).
const SETTLED_SECONDS: f64 = 300.0;
/// Runs kept at most (a year of 100 reports); beyond, the memory is given back at once.
const MAX_RUNS: usize = 40_000;

#[derive(Debug, Default)]
pub(super) struct CountCache {
    runs: Mutex<HashMap<i64, Cached>>,
}

#[derive(Clone, Debug)]
struct Cached {
    version: DateTime<Utc>,
    rows: Arc<Vec<CountRow>>,
    last_sent: Option<DateTime<Utc>>,
}

/// A run, its deliveries' last change and whether that change has settled.
struct Version {
    report_id: i64,
    date: NaiveDate,
    version: Option<DateTime<Utc>>,
    settled: bool,
}

macro_rules! versions_of {
    ($filter:literal) => {
        concat!(
            "SELECT r.id, r.report_date, v.version,
                    v.version < now() - make_interval(secs => $2) AS settled
             FROM reports r
             CROSS JOIN LATERAL (SELECT max(d.updated_at) AS version FROM delivery_log d
                                 WHERE d.report_id = r.id) v
             WHERE ",
            $filter
        )
    };
}

impl Store {
    /// The deliveries of the runs of report dates from `since` on, counted.
    pub async fn run_counts_since(&self, since: NaiveDate) -> Result<Vec<RunCounts>, StoreError> {
        let rows = sqlx::query(versions_of!("r.report_date >= $1"))
            .bind(since)
            .bind(SETTLED_SECONDS)
            .fetch_all(self.pool())
            .await?;
        self.counted(versions(&rows)?).await
    }

    /// The deliveries of the runs `ids`, counted.
    pub async fn run_counts_of(&self, ids: &[i64]) -> Result<Vec<RunCounts>, StoreError> {
        let rows = sqlx::query(versions_of!("r.id = ANY($1)"))
            .bind(ids)
            .bind(SETTLED_SECONDS)
            .fetch_all(self.pool())
            .await?;
        self.counted(versions(&rows)?).await
    }

    /// Counts from memory where the run's deliveries have not changed since, from the
    /// database for the rest.
    async fn counted(&self, versions: Vec<Version>) -> Result<Vec<RunCounts>, StoreError> {
        let known: HashMap<i64, Cached> = {
            let cache = self.counts.runs.lock().unwrap_or_else(|e| e.into_inner());
            versions
                .iter()
                .filter_map(|v| {
                    let hit = cache.get(&v.report_id)?;
                    (Some(hit.version) == v.version).then(|| (v.report_id, hit.clone()))
                })
                .collect()
        };
        let missing: Vec<i64> = versions
            .iter()
            .filter(|v| v.version.is_some() && !known.contains_key(&v.report_id))
            .map(|v| v.report_id)
            .collect();
        let mut fresh = self.count_runs(&missing).await?;
        {
            let mut cache = self.counts.runs.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() + missing.len() > MAX_RUNS {
                cache.clear();
            }
            for v in versions.iter().filter(|v| v.settled) {
                if let (Some(version), Some(c)) = (v.version, fresh.get(&v.report_id)) {
                    cache.insert(
                        v.report_id,
                        Cached {
                            version,
                            ..c.clone()
                        },
                    );
                }
            }
        }
        Ok(versions
            .into_iter()
            .map(|v| {
                let c = known
                    .get(&v.report_id)
                    .cloned()
                    .or_else(|| fresh.remove(&v.report_id));
                RunCounts {
                    report_id: v.report_id,
                    date: v.date,
                    rows: c.as_ref().map(|c| c.rows.clone()).unwrap_or_default(),
                    last_sent: c.and_then(|c| c.last_sent),
                }
            })
            .collect())
    }

    /// The runs `ids` counted by channel and status, from `delivery_log`.
    async fn count_runs(&self, ids: &[i64]) -> Result<HashMap<i64, Cached>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = sqlx::query(
            "SELECT report_id, channel, status, count(*) AS n, count(uncertain_at) AS resent,
                    max(sent_at) AS last_sent
             FROM delivery_log WHERE report_id = ANY($1) GROUP BY report_id, channel, status",
        )
        .bind(ids)
        .fetch_all(self.pool())
        .await?;
        let mut out: HashMap<i64, (Vec<CountRow>, Option<DateTime<Utc>>)> = HashMap::new();
        for r in &rows {
            let entry = out.entry(r.try_get("report_id")?).or_default();
            entry.0.push(CountRow {
                channel: state_column(r, "channel")?,
                status: state_column(r, "status")?,
                n: r.try_get("n")?,
                resent: r.try_get("resent")?,
            });
            entry.1 = entry.1.max(r.try_get("last_sent")?);
        }
        Ok(out
            .into_iter()
            .map(|(id, (rows, last_sent))| {
                (
                    id,
                    Cached {
                        // Replaced by the version read with it before it is kept.
                        version: DateTime::<Utc>::MIN_UTC,
                        rows: Arc::new(rows),
                        last_sent,
                    },
                )
            })
            .collect())
    }
}

fn versions(rows: &[sqlx::postgres::PgRow]) -> Result<Vec<Version>, StoreError> {
    rows.iter()
        .map(|r| {
            Ok(Version {
                report_id: r.try_get("id")?,
                date: r.try_get("report_date")?,
                version: r.try_get("version")?,
                settled: r.try_get::<Option<bool>, _>("settled")?.unwrap_or(false),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(StoreError::from)
}
