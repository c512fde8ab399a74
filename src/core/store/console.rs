//! What the web console reads and the few things it writes: the dashboard's figures, the
//! archive, a report's delivery log, recipients, sources, sessions and unsubscribes.
//!
//! Every list is a page: `Page` clamps its size, and each query is bounded by an index (the
//! plans are quoted in docs/benchmarks.md, W3).

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;

use super::{Store, StoreError, state_column};

/// The columns of an archived run; `archived_run` reads them.
macro_rules! archived_run_columns {
    () => {
        "SELECT id, namespace, report, report_date, phase, manual, subject, article_count,
                started_at, finished_at FROM reports"
    };
}
use crate::run::{BlacklistReason, DeliveryCounts, DeliveryStatus, ProviderOutcome, RunPhase};

/// `WITH RECURSIVE … latest AS (…)`: each report's latest run with `$columns`, found by a walk
/// of the (namespace, report, report_date) index — a probe per report, not a sort of every
/// run ever made. Further CTEs follow after a comma.
macro_rules! latest_runs {
    ($columns:literal) => {
        concat!(
            "WITH RECURSIVE names AS (
                 (SELECT namespace, report FROM reports ORDER BY namespace, report LIMIT 1)
                 UNION ALL
                 SELECT n.namespace, n.report FROM names k
                 CROSS JOIN LATERAL (SELECT namespace, report FROM reports
                                     WHERE (namespace, report) > (k.namespace, k.report)
                                     ORDER BY namespace, report LIMIT 1) n),
             latest AS (
                 SELECT l.* FROM (SELECT * FROM names LIMIT 500) k
                 CROSS JOIN LATERAL (SELECT ",
            $columns,
            " FROM reports WHERE namespace = k.namespace AND report = k.report
                     ORDER BY report_date DESC LIMIT 1) l)"
        )
    };
}

/// One page of a list: its number (from 1) and size (clamped to 1..=`Page::MAX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Page {
    pub number: u32,
    pub size: u32,
}

impl Page {
    pub const MAX: u32 = 100;
    /// The deepest page served: offsets beyond it would make PostgreSQL walk the whole table.
    pub const LAST: u32 = 10_000;

    pub fn new(number: Option<u32>, size: Option<u32>, default_size: u32) -> Self {
        Self {
            number: number.unwrap_or(1).clamp(1, Self::LAST),
            size: size.unwrap_or(default_size).clamp(1, Self::MAX),
        }
    }

    pub(super) fn limit(self) -> i64 {
        // One more row than shown tells whether a next page exists.
        i64::from(self.size) + 1
    }

    pub(super) fn offset(self) -> i64 {
        i64::from(self.number - 1) * i64::from(self.size)
    }
}

/// Rows of one page and whether another follows.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Paged<T> {
    pub rows: Vec<T>,
    pub page: Page,
    pub has_next: bool,
    /// Rows in all pages, where the list counts them.
    pub total: Option<i64>,
}

impl<T> Paged<T> {
    pub(super) fn from_rows(mut rows: Vec<T>, page: Page) -> Self {
        let has_next = rows.len() > page.size as usize;
        rows.truncate(page.size as usize);
        Self {
            rows,
            page,
            has_next,
            total: None,
        }
    }

    pub(super) fn with_total(mut self, total: i64) -> Self {
        self.total = Some(total);
        self
    }
}

/// Which rows of a report's delivery log to show.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub channel: Option<crate::run::Channel>,
    /// Part of an address or a Recipient's name (a chat group's name too), any case.
    pub search: Option<String>,
}

/// `text` as a LIKE pattern matching it anywhere, its own wildcards taken literally.
pub fn contains_pattern(text: &str) -> String {
    let escaped: String = text
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("%{escaped}%")
}

/// Runs of one report in a period, by phase.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReportRuns {
    pub namespace: String,
    pub report: String,
    pub phase: RunPhase,
    pub runs: i64,
}

/// How often a pipeline step failed in a period.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepHealth {
    pub step: String,
    pub total: i64,
    pub failed: i64,
}

/// Summariser (provider) calls in a period.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ProviderHealth {
    pub provider: String,
    pub calls: i64,
    pub timeouts: i64,
    pub errors: i64,
    pub cached: i64,
    pub p95_ms: Option<f64>,
}

/// Deliveries of the reports of a period, by status.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeliveryTotal {
    pub status: DeliveryStatus,
    pub count: i64,
}

/// The figures of one period of the dashboard.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PeriodFigures {
    pub runs: Vec<ReportRuns>,
    pub steps: Vec<StepHealth>,
    pub providers: Vec<ProviderHealth>,
    pub deliveries: Vec<DeliveryTotal>,
}

/// One report date's deliveries, by outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DayDeliveries {
    pub date: NaiveDate,
    pub delivered: i64,
    pub failed: i64,
    pub deferred: i64,
    pub other: i64,
}

/// A source whose last fetch failed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FailingSource {
    pub namespace: String,
    pub source: String,
    pub consecutive_failures: i32,
    pub error_kind: Option<String>,
    pub error: Option<String>,
    pub last_success_at: Option<DateTime<Utc>>,
}

/// A report's next slot as its scheduler last wrote it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NextSlot {
    pub namespace: String,
    pub report: String,
    pub next_slot: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// One recorded backup.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BackupRecord {
    pub name: String,
    pub file: Option<String>,
    pub bytes: Option<i64>,
    pub ok: bool,
    pub error: Option<String>,
    pub finished_at: DateTime<Utc>,
}

/// A run in the archive.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ArchivedRun {
    pub id: i64,
    pub namespace: String,
    pub report: String,
    pub date: NaiveDate,
    pub phase: RunPhase,
    pub manual: bool,
    pub subject: Option<String>,
    pub articles: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub deliveries: DeliveryCounts,
}

/// A report as it was sent, with its run's steps.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StoredReport {
    pub run: ArchivedRun,
    pub time_zone: String,
    pub html: Option<String>,
    pub text: Option<String>,
    pub error: Option<String>,
    pub steps: Vec<StepTiming>,
}

/// One step of a run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepTiming {
    pub step: String,
    pub started_at: DateTime<Utc>,
    pub millis: i64,
    pub ok: bool,
    pub detail: Option<String>,
}

/// One row of a report's delivery log.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeliveryLogRow {
    pub recipient: String,
    /// The e-mail address, or `<platform>:<name>` of a chat group.
    pub email: String,
    pub channel: crate::run::Channel,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub smtp_code: Option<i32>,
    pub smtp_reply: Option<String>,
    pub last_error: Option<String>,
    /// The server's or platform's answer as a person reads it: its code once, then its words
    /// (`reply_line`).
    pub reply: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// A reply shown once, cleanly: `451 4.3.0 try later` for a stored code 451 and text
/// `transient error (451): 4.3.0 try later` (the SMTP client's wording) or `4.3.0 try later`.
pub fn reply_line(code: Option<i32>, text: &str) -> String {
    let text = text.trim();
    // The SMTP client's own framing repeats the code.
    let text = ["transient error (", "permanent error ("]
        .iter()
        .find_map(|prefix| {
            let rest = text.strip_prefix(prefix)?;
            let (_, words) = rest.split_once("):")?;
            Some(words.trim())
        })
        .unwrap_or(text);
    match code {
        Some(code) if !text.starts_with(&code.to_string()) => format!("{code} {text}"),
        _ => text.to_string(),
    }
}

/// A recipient address of a namespace: in a report's latest run or on the blacklist.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RecipientRow {
    pub namespace: String,
    pub email: String,
    pub recipient: Option<String>,
    pub blacklist_reason: Option<BlacklistReason>,
    pub via: Option<String>,
    pub since: Option<DateTime<Utc>>,
}

/// A source with its fetch health over the last seven days.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SourceHealth {
    pub namespace: String,
    pub source: String,
    pub url: String,
    pub last_fetch_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub consecutive_failures: i32,
    pub last_error: Option<String>,
    pub fetches_7d: i64,
    pub failures_7d: i64,
    pub avg_latency_ms_7d: Option<f64>,
}

/// One source's fetches of one local day.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SourceDay {
    pub namespace: String,
    pub source: String,
    pub day: NaiveDate,
    pub fetches: i64,
    pub failures: i64,
}

/// One run of a report, as its month strip shows it: when it finished against its window.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RunDay {
    pub namespace: String,
    pub report: String,
    pub date: NaiveDate,
    pub phase: RunPhase,
    /// A manual run sends at once, whatever the window: it is never late.
    pub manual: bool,
    pub finished_at: Option<DateTime<Utc>>,
    /// The run's mail window and zone, as its plan recorded them.
    #[serde(skip)]
    pub window: Option<(crate::api::MailWindow, String)>,
}

/// A console session as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    pub account: String,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// The last delivered run and last attempted slot of a report, for per-report alerts.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportFreshness {
    pub namespace: String,
    pub report: String,
    pub last_delivered_at: Option<DateTime<Utc>>,
    pub last_slot: Option<DateTime<Utc>>,
}

const DELIVERED: [RunPhase; 2] = [RunPhase::Succeeded, RunPhase::PartiallyDelivered];

fn phase_names(phases: &[RunPhase]) -> Vec<&'static str> {
    phases.iter().map(|p| p.as_str()).collect()
}

impl Store {
    /// Runs, steps, provider calls and deliveries since `since` (the reports of local dates
    /// from `since_date`).
    /// The figures of the runs of report dates from `since_date` on: one counting rule for
    /// runs, steps, summariser calls and deliveries alike.
    pub async fn period_figures(&self, since_date: NaiveDate) -> Result<PeriodFigures, StoreError> {
        // Independent reads, each on its own pooled connection.
        let (runs, steps, providers, deliveries) = tokio::try_join!(
            self.runs_by_phase(since_date),
            self.step_health(since_date),
            self.provider_health(since_date),
            self.delivery_totals(since_date),
        )?;
        Ok(PeriodFigures {
            runs,
            steps,
            providers,
            deliveries,
        })
    }

    async fn runs_by_phase(&self, since: NaiveDate) -> Result<Vec<ReportRuns>, StoreError> {
        let rows = sqlx::query(
            "SELECT namespace, report, phase, count(*) AS runs FROM reports
             WHERE report_date >= $1 GROUP BY namespace, report, phase
             ORDER BY namespace, report, phase LIMIT 500",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReportRuns {
                    namespace: r.try_get("namespace")?,
                    report: r.try_get("report")?,
                    phase: state_column(r, "phase")?,
                    runs: r.try_get("runs")?,
                })
            })
            .collect()
    }

    /// Steps of the runs of report dates from `since` (the one counting rule of the page). A
    /// send step whose run did not deliver everything counts as failed, so the rate agrees with
    /// the runs shown beside it.
    async fn step_health(&self, since: NaiveDate) -> Result<Vec<StepHealth>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.step, count(*) AS total,
                    count(*) FILTER (WHERE NOT s.ok OR (s.step = $2 AND r.phase = ANY($3))) AS failed
             FROM step_timings s JOIN reports r ON r.id = s.report_id
             WHERE r.report_date >= $1 GROUP BY s.step ORDER BY s.step",
        )
        .bind(since)
        .bind(crate::run::Step::Send.as_str())
        .bind(vec![
            RunPhase::PartiallyDelivered.as_str(),
            RunPhase::Failed.as_str(),
        ])
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StepHealth {
                    step: r.try_get("step")?,
                    total: r.try_get("total")?,
                    failed: r.try_get("failed")?,
                })
            })
            .collect()
    }

    /// Summariser calls of the runs of report dates from `since` (a preview's calls are not a
    /// run's).
    async fn provider_health(&self, since: NaiveDate) -> Result<Vec<ProviderHealth>, StoreError> {
        // An array of the period's runs, not IN (…): with IN the planner hash-joins a
        // year of calls read whole (W3: 7.8 ms against 2.1 ms).
        let rows = sqlx::query(
            "SELECT provider, count(*) AS calls,
                    count(*) FILTER (WHERE outcome = $2) AS timeouts,
                    count(*) FILTER (WHERE outcome = ANY($3)) AS errors,
                    count(*) FILTER (WHERE outcome = $4) AS cached,
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)
                        FILTER (WHERE outcome <> $4) AS p95_ms
             FROM provider_calls
             WHERE report_id = ANY(ARRAY(SELECT id FROM reports WHERE report_date >= $1))
             GROUP BY provider ORDER BY provider LIMIT 50",
        )
        .bind(since)
        .bind(ProviderOutcome::Timeout.as_str())
        .bind(vec![
            ProviderOutcome::Error.as_str(),
            ProviderOutcome::RateLimited.as_str(),
        ])
        .bind(ProviderOutcome::Cached.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ProviderHealth {
                    provider: r.try_get("provider")?,
                    calls: r.try_get("calls")?,
                    timeouts: r.try_get("timeouts")?,
                    errors: r.try_get("errors")?,
                    cached: r.try_get("cached")?,
                    p95_ms: r.try_get("p95_ms")?,
                })
            })
            .collect()
    }

    async fn delivery_totals(&self, since: NaiveDate) -> Result<Vec<DeliveryTotal>, StoreError> {
        let mut by: std::collections::BTreeMap<&'static str, (DeliveryStatus, i64)> =
            Default::default();
        for run in self.run_counts_since(since).await? {
            for c in run.rows.iter() {
                by.entry(c.status.as_str()).or_insert((c.status, 0)).1 += c.n;
            }
        }
        Ok(by
            .into_values()
            .map(|(status, count)| DeliveryTotal { status, count })
            .collect())
    }

    /// Deliveries of the runs of each report date from `since` on, by outcome: delivered,
    /// failed (failed or bounced), deferred, other (pending, sending, uncertain). From the
    /// runs' counts (`run_counts`), so a year of deliveries is never read whole.
    pub async fn deliveries_per_day(
        &self,
        since: NaiveDate,
    ) -> Result<Vec<DayDeliveries>, StoreError> {
        let mut days: std::collections::BTreeMap<NaiveDate, DayDeliveries> = Default::default();
        for run in self.run_counts_since(since).await? {
            let day = days.entry(run.date).or_insert_with(|| DayDeliveries {
                date: run.date,
                ..DayDeliveries::default()
            });
            for c in run.rows.iter() {
                match c.status {
                    DeliveryStatus::Sent => day.delivered += c.n,
                    DeliveryStatus::Failed | DeliveryStatus::Bounced => day.failed += c.n,
                    DeliveryStatus::Deferred => day.deferred += c.n,
                    DeliveryStatus::Pending
                    | DeliveryStatus::Sending
                    | DeliveryStatus::Uncertain => day.other += c.n,
                }
            }
        }
        Ok(days.into_values().collect())
    }

    /// Sources whose latest fetch failed, most failures first.
    pub async fn sources_failing_now(&self) -> Result<Vec<FailingSource>, StoreError> {
        let rows = sqlx::query(
            "SELECT namespace, source, consecutive_failures, last_error_kind, last_error, last_success_at
             FROM source_state WHERE consecutive_failures > 0
             ORDER BY consecutive_failures DESC, namespace, source LIMIT 50",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FailingSource {
                    namespace: r.try_get("namespace")?,
                    source: r.try_get("source")?,
                    consecutive_failures: r.try_get("consecutive_failures")?,
                    error_kind: r.try_get("last_error_kind")?,
                    error: r.try_get("last_error")?,
                    last_success_at: r.try_get("last_success_at")?,
                })
            })
            .collect()
    }

    /// Each report's next slot, soonest first.
    pub async fn next_slots(&self) -> Result<Vec<NextSlot>, StoreError> {
        let rows = sqlx::query(
            "SELECT namespace, report, next_slot, updated_at FROM report_schedule
             ORDER BY next_slot NULLS LAST, namespace, report LIMIT 200",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NextSlot {
                    namespace: r.try_get("namespace")?,
                    report: r.try_get("report")?,
                    next_slot: r.try_get("next_slot")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Records a report's next slot (`None`: suspended or no longer scheduled). Writes only
    /// when it changed, so a reconcile that changes nothing costs one indexed read.
    pub async fn record_next_slot(
        &self,
        namespace: &str,
        report: &str,
        next: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO report_schedule (namespace, report, next_slot) VALUES ($1, $2, $3)
             ON CONFLICT (namespace, report) DO UPDATE SET next_slot = EXCLUDED.next_slot, updated_at = now()
             WHERE report_schedule.next_slot IS DISTINCT FROM EXCLUDED.next_slot",
        )
        .bind(namespace)
        .bind(report)
        .bind(next)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records a backup's result.
    pub async fn record_backup(
        &self,
        name: &str,
        started_at: DateTime<Utc>,
        result: Result<(&str, i64), &str>,
    ) -> Result<(), StoreError> {
        let (file, bytes, error) = match result {
            Ok((file, bytes)) => (Some(file), Some(bytes), None),
            Err(e) => (None, None, Some(e)),
        };
        sqlx::query(
            "INSERT INTO backups (name, file, bytes, ok, error, started_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(name)
        .bind(file)
        .bind(bytes)
        .bind(error.is_none())
        .bind(error)
        .bind(started_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The latest backup, and the latest that succeeded when it did not.
    pub async fn last_backups(&self) -> Result<Vec<BackupRecord>, StoreError> {
        let rows = sqlx::query(
            "(SELECT name, file, bytes, ok, error, finished_at FROM backups ORDER BY finished_at DESC LIMIT 1)
             UNION
             (SELECT name, file, bytes, ok, error, finished_at FROM backups WHERE ok ORDER BY finished_at DESC LIMIT 1)
             ORDER BY finished_at DESC",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(BackupRecord {
                    name: r.try_get("name")?,
                    file: r.try_get("file")?,
                    bytes: r.try_get("bytes")?,
                    ok: r.try_get("ok")?,
                    error: r.try_get("error")?,
                    finished_at: r.try_get("finished_at")?,
                })
            })
            .collect()
    }

    /// The archive: runs by date, newest first.
    /// A page of the archive, newest first; from `on_or_before` back when given (the date
    /// jump), with the number of runs in the whole archive.
    pub async fn archive(
        &self,
        on_or_before: Option<NaiveDate>,
        page: Page,
    ) -> Result<Paged<ArchivedRun>, StoreError> {
        let rows = sqlx::query(concat!(
            archived_run_columns!(),
            " WHERE $3::date IS NULL OR report_date <= $3
              ORDER BY report_date DESC, namespace, report LIMIT $1 OFFSET $2"
        ))
        .bind(page.limit())
        .bind(page.offset())
        .bind(on_or_before)
        .fetch_all(self.pool())
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM reports")
            .fetch_one(self.pool())
            .await?;
        let mut runs = rows
            .iter()
            .map(archived_run)
            .collect::<Result<Vec<_>, _>>()?;
        self.count_deliveries(&mut runs).await?;
        Ok(Paged::from_rows(runs, page).with_total(total))
    }

    /// One stored report with its steps.
    pub async fn stored_report(&self, id: i64) -> Result<Option<StoredReport>, StoreError> {
        let Some(run) = self.archived_run_of(id).await? else {
            return Ok(None);
        };
        let row =
            sqlx::query("SELECT time_zone, html, text_body, error FROM reports WHERE id = $1")
                .bind(id)
                .fetch_one(self.pool())
                .await?;
        let steps = sqlx::query(
            "SELECT step, started_at, (extract(epoch FROM finished_at - started_at) * 1000)::bigint AS millis,
                    ok, detail
             FROM step_timings WHERE report_id = $1 ORDER BY started_at, id LIMIT 100",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(StepTiming {
                step: r.try_get("step")?,
                started_at: r.try_get("started_at")?,
                millis: r.try_get("millis")?,
                ok: r.try_get("ok")?,
                detail: r.try_get("detail")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Some(StoredReport {
            run,
            time_zone: row.try_get("time_zone")?,
            html: row.try_get("html")?,
            text: row.try_get("text_body")?,
            error: row.try_get("error")?,
            steps,
        }))
    }

    /// One run of the archive (without its report's text), deliveries counted.
    pub async fn archived_run_of(&self, id: i64) -> Result<Option<ArchivedRun>, StoreError> {
        let Some(row) = sqlx::query(concat!(archived_run_columns!(), " WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
        else {
            return Ok(None);
        };
        let mut runs = [archived_run(&row)?];
        self.count_deliveries(&mut runs).await?;
        let [run] = runs;
        Ok(Some(run))
    }

    /// The From address a report was sent with (from its plan).
    pub async fn report_sender(&self, id: i64) -> Result<Option<String>, StoreError> {
        let from: Option<Option<String>> =
            sqlx::query_scalar("SELECT plan -> 'smtp' ->> 'from' FROM reports WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?;
        Ok(from.flatten())
    }

    async fn count_deliveries(&self, runs: &mut [ArchivedRun]) -> Result<(), StoreError> {
        let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
        // Index-only over (report_id, status, email): the archive does not show resends.
        let rows = sqlx::query(
            "SELECT report_id, status, count(*) AS n FROM delivery_log
             WHERE report_id = ANY($1) GROUP BY report_id, status",
        )
        .bind(&ids)
        .fetch_all(self.pool())
        .await?;
        for r in rows {
            let id: i64 = r.try_get("report_id")?;
            if let Some(run) = runs.iter_mut().find(|run| run.id == id) {
                run.deliveries
                    .add(state_column(&r, "status")?, r.try_get("n")?, 0);
            }
        }
        Ok(())
    }

    /// A report's delivery log, by address, optionally of one status.
    /// A page of a report's delivery log: what did not go out first (failed, bounced,
    /// uncertain, deferred, still pending), then by address in numeric-aware order
    /// (reader10 before reader100), with the count of every row the filter keeps.
    pub async fn delivery_log(
        &self,
        report_id: i64,
        filter: &DeliveryFilter,
        page: Page,
    ) -> Result<Paged<DeliveryLogRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT recipient, email, channel, status, attempts, smtp_code, smtp_reply, last_error, sent_at,
                    updated_at, count(*) OVER () AS total
             FROM delivery_log
             WHERE report_id = $1 AND ($2::text IS NULL OR status = $2)
               AND ($3::text IS NULL OR channel = $3)
               AND ($4::text IS NULL OR email ILIKE $4 OR recipient ILIKE $4)
             ORDER BY COALESCE(array_position($7::text[], status), 99),
                      regexp_replace(lower(email), '[0-9]+', '', 'g'),
                      substring(email from '[0-9]{1,18}')::bigint NULLS FIRST, email
             LIMIT $5 OFFSET $6",
        )
        .bind(report_id)
        .bind(filter.status.map(DeliveryStatus::as_str))
        .bind(filter.channel.map(crate::run::Channel::as_str))
        .bind(filter.search.as_deref().map(contains_pattern))
        .bind(page.limit())
        .bind(page.offset())
        .bind(
            DeliveryStatus::NOT_DELIVERED_FIRST
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>(),
        )
        .fetch_all(self.pool())
        .await?;
        let total: i64 = match rows.first() {
            Some(r) => r.try_get("total")?,
            None => 0,
        };
        let rows = rows
            .iter()
            .map(delivery_log_row)
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Paged::from_rows(rows, page).with_total(total))
    }

    /// Addresses of each report's latest run and of the blacklist: the ones not mailed first
    /// (bounced or blocked, then unsubscribed), then by namespace and address in numeric-aware
    /// order, `search` (part of an address or a name) keeping only those that hold it, with
    /// the count of every row kept.
    pub async fn recipients(
        &self,
        search: Option<&str>,
        page: Page,
    ) -> Result<Paged<RecipientRow>, StoreError> {
        let rows = sqlx::query(concat!(
            latest_runs!("id, namespace"),
            // The addresses from the (report_id, email) index alone; a Recipient's name is
            // read for the page's rows only (and for a search, which may match it).
            ", addresses AS (
                 SELECT l.namespace, d.email FROM latest l JOIN delivery_log d ON d.report_id = l.id
                 UNION
                 SELECT namespace, email FROM blacklist),
             kept AS (
                 SELECT a.namespace, a.email, b.reason, b.via, b.created_at,
                        COALESCE(array_position($4::text[], b.reason), 99) AS rank,
                        count(*) OVER () AS total
                 FROM addresses a LEFT JOIN blacklist b USING (namespace, email)
                 WHERE $3::text IS NULL OR a.email ILIKE $3
                    OR EXISTS (SELECT 1 FROM latest l JOIN delivery_log d ON d.report_id = l.id
                               WHERE l.namespace = a.namespace AND d.email = a.email
                                 AND d.recipient ILIKE $3)
                 ORDER BY rank, a.namespace,
                          regexp_replace(lower(a.email), '[0-9]+', '', 'g'),
                          substring(a.email from '[0-9]{1,18}')::bigint NULLS FIRST, a.email
                 LIMIT $1 OFFSET $2)
             SELECT k.namespace, k.email, k.reason, k.via, k.created_at, k.total,
                    (SELECT max(d.recipient) FROM latest l JOIN delivery_log d ON d.report_id = l.id
                     WHERE l.namespace = k.namespace AND d.email = k.email) AS recipient
             FROM kept k
             ORDER BY k.rank, k.namespace,
                      regexp_replace(lower(k.email), '[0-9]+', '', 'g'),
                      substring(k.email from '[0-9]{1,18}')::bigint NULLS FIRST, k.email"
        ))
        .bind(page.limit())
        .bind(page.offset())
        .bind(search.map(contains_pattern))
        .bind(
            BlacklistReason::NOT_MAILED_FIRST
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>(),
        )
        .fetch_all(self.pool())
        .await?;
        let total: i64 = match rows.first() {
            Some(r) => r.try_get("total")?,
            None => 0,
        };
        let rows = rows
            .iter()
            .map(|r| {
                let reason: Option<String> = r.try_get("reason")?;
                Ok(RecipientRow {
                    namespace: r.try_get("namespace")?,
                    email: r.try_get("email")?,
                    recipient: r.try_get("recipient")?,
                    blacklist_reason: reason
                        .map(|s| s.parse())
                        .transpose()
                        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                    via: r.try_get("via")?,
                    since: r.try_get("created_at")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Paged::from_rows(rows, page).with_total(total))
    }

    /// Sources with their fetches of the last seven days.
    pub async fn source_fetch_health(
        &self,
        now: DateTime<Utc>,
        page: Page,
    ) -> Result<Paged<SourceHealth>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.namespace, s.source, s.url, s.last_fetch_at, s.last_success_at,
                    s.consecutive_failures, s.last_error, w.fetches, w.failures, w.avg_latency
             FROM source_state s
             LEFT JOIN LATERAL (
                 SELECT count(*) AS fetches, count(*) FILTER (WHERE f.error_kind IS NOT NULL) AS failures,
                        avg(f.latency_ms)::float8 AS avg_latency
                 FROM fetch_log f
                 WHERE f.namespace = s.namespace AND f.source = s.source AND f.started_at >= $1) w ON true
             ORDER BY s.consecutive_failures DESC, s.namespace, s.source LIMIT $2 OFFSET $3",
        )
        .bind(now - chrono::Duration::days(7))
        .bind(page.limit())
        .bind(page.offset())
        .fetch_all(self.pool())
        .await?;
        let rows = rows
            .iter()
            .map(|r| {
                Ok(SourceHealth {
                    namespace: r.try_get("namespace")?,
                    source: r.try_get("source")?,
                    url: r.try_get("url")?,
                    last_fetch_at: r.try_get("last_fetch_at")?,
                    last_success_at: r.try_get("last_success_at")?,
                    consecutive_failures: r.try_get("consecutive_failures")?,
                    last_error: r.try_get("last_error")?,
                    fetches_7d: r.try_get::<Option<i64>, _>("fetches")?.unwrap_or(0),
                    failures_7d: r.try_get::<Option<i64>, _>("failures")?.unwrap_or(0),
                    avg_latency_ms_7d: r.try_get("avg_latency")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Paged::from_rows(rows, page))
    }

    /// Every report's runs of report dates from `since` on (the cards' month strips): one row
    /// per run, its finish against its window — no delivery row is read.
    pub async fn run_days(&self, since: NaiveDate) -> Result<Vec<RunDay>, StoreError> {
        let rows = sqlx::query(
            "SELECT namespace, report, report_date, phase, manual, finished_at, time_zone,
                    plan -> 'mailWindow' AS mail_window
             FROM reports WHERE report_date >= $1 ORDER BY namespace, report, report_date LIMIT 20000",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let window = r
                    .try_get::<Option<serde_json::Value>, _>("mail_window")?
                    .and_then(|w| serde_json::from_value::<crate::api::MailWindow>(w).ok())
                    .zip(r.try_get::<Option<String>, _>("time_zone")?);
                Ok(RunDay {
                    namespace: r.try_get("namespace")?,
                    report: r.try_get("report")?,
                    date: r.try_get("report_date")?,
                    phase: state_column(r, "phase")?,
                    manual: r.try_get("manual")?,
                    finished_at: r.try_get("finished_at")?,
                    window,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// The fetches of `sources` per day of `zone` since `since` (the sources page's health
    /// strips): one indexed range per source, never the whole log.
    pub async fn source_days(
        &self,
        sources: &[(String, String)],
        zone: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<SourceDay>, StoreError> {
        let (namespaces, names): (Vec<&str>, Vec<&str>) = sources
            .iter()
            .map(|(n, s)| (n.as_str(), s.as_str()))
            .unzip();
        let rows = sqlx::query(
            "SELECT k.namespace, k.source, (f.started_at AT TIME ZONE $3)::date AS day,
                    count(*) AS fetches, count(*) FILTER (WHERE f.error_kind IS NOT NULL) AS failures
             FROM unnest($1::text[], $2::text[]) AS k(namespace, source)
             JOIN fetch_log f ON f.namespace = k.namespace AND f.source = k.source AND f.started_at >= $4
             GROUP BY 1, 2, 3",
        )
        .bind(namespaces)
        .bind(names)
        .bind(zone)
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SourceDay {
                    namespace: r.try_get("namespace")?,
                    source: r.try_get("source")?,
                    day: r.try_get("day")?,
                    fetches: r.try_get("fetches")?,
                    failures: r.try_get("failures")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Each report's last delivered run and last attempted slot.
    pub async fn report_freshness(&self) -> Result<Vec<ReportFreshness>, StoreError> {
        let rows = sqlx::query(
            "SELECT namespace, report,
                    max(finished_at) FILTER (WHERE phase = ANY($1)) AS delivered,
                    max(COALESCE(scheduled_for, started_at)) AS last_slot
             FROM reports GROUP BY namespace, report ORDER BY namespace, report",
        )
        .bind(phase_names(&DELIVERED))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReportFreshness {
                    namespace: r.try_get("namespace")?,
                    report: r.try_get("report")?,
                    last_delivered_at: r.try_get("delivered")?,
                    last_slot: r.try_get("last_slot")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}

/// A row of `delivery_log` (its columns by name), its reply shown once.
pub(super) fn delivery_log_row(r: &sqlx::postgres::PgRow) -> Result<DeliveryLogRow, sqlx::Error> {
    let smtp_code: Option<i32> = r.try_get("smtp_code")?;
    let smtp_reply: Option<String> = r.try_get("smtp_reply")?;
    let last_error: Option<String> = r.try_get("last_error")?;
    let reply = smtp_reply
        .as_deref()
        .or(last_error.as_deref())
        .map(|text| reply_line(smtp_code, text));
    Ok(DeliveryLogRow {
        recipient: r.try_get("recipient")?,
        email: r.try_get("email")?,
        channel: state_column(r, "channel")?,
        status: state_column(r, "status")?,
        attempts: r.try_get("attempts")?,
        smtp_code,
        smtp_reply,
        last_error,
        reply,
        sent_at: r.try_get("sent_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn archived_run(r: &sqlx::postgres::PgRow) -> Result<ArchivedRun, sqlx::Error> {
    Ok(ArchivedRun {
        id: r.try_get("id")?,
        namespace: r.try_get("namespace")?,
        report: r.try_get("report")?,
        date: r.try_get("report_date")?,
        phase: state_column(r, "phase")?,
        manual: r.try_get("manual")?,
        subject: r.try_get("subject")?,
        articles: r.try_get("article_count")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        deliveries: DeliveryCounts::default(),
    })
}

/// A console session to start.
#[derive(Clone, Copy, Debug)]
pub struct NewSession<'a> {
    /// The hash of its cookie value (the value itself is never stored).
    pub id_hash: &'a [u8],
    pub account: &'a str,
    pub csrf_token: &'a str,
    /// When it starts, on the web's clock (its idle time counts from here).
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The credential it belongs to (see `Account::credential_epoch`).
    pub credential_epoch: &'a str,
}

impl Store {
    /// Starts a console session.
    pub async fn create_session(&self, s: NewSession<'_>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO web_sessions
                    (id_hash, account, csrf_token, created_at, last_seen_at, expires_at, credential_epoch)
             VALUES ($1, $2, $3, $4, $4, $5, $6)",
        )
        .bind(s.id_hash)
        .bind(s.account)
        .bind(s.csrf_token)
        .bind(s.started_at)
        .bind(s.expires_at)
        .bind(s.credential_epoch)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The live session of a cookie's hash, marked as used now: not expired, used within
    /// `idle`, and opened with the current credential (`credential_epoch`).
    pub async fn session(
        &self,
        id_hash: &[u8],
        now: DateTime<Utc>,
        idle: chrono::Duration,
        credential_epoch: &str,
    ) -> Result<Option<SessionRow>, StoreError> {
        // The last sight is written when it is a tenth of the idle time old (a minute at
        // most), not on every page: a write per request is a commit flushed to disk per
        // request, which halved the console's throughput under load (W3).
        let touch_every = (idle / 10).min(chrono::Duration::minutes(1));
        let row = sqlx::query(
            "WITH live AS (
                 SELECT id_hash, account, csrf_token, expires_at, last_seen_at FROM web_sessions
                 WHERE id_hash = $1 AND expires_at > $2 AND last_seen_at > $3
                   AND credential_epoch = $4),
             touched AS (
                 UPDATE web_sessions w SET last_seen_at = $2 FROM live
                 WHERE w.id_hash = live.id_hash AND live.last_seen_at < $5)
             SELECT account, csrf_token, expires_at FROM live",
        )
        .bind(id_hash)
        .bind(now)
        .bind(now - idle)
        .bind(credential_epoch)
        .bind(now - touch_every)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(SessionRow {
                account: r.try_get("account")?,
                csrf_token: r.try_get("csrf_token")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| e.into())
    }

    /// Ends every console session; returns how many.
    pub async fn revoke_sessions(&self) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM web_sessions")
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    /// Ends a session (logout).
    pub async fn end_session(&self, id_hash: &[u8]) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Deletes expired sessions; returns how many.
    pub async fn prune_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM web_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}

impl Store {
    /// What the console's cards are made of: each report's latest run (its deliveries per
    /// channel, its last accepted copy, its mail window) and the slot its scheduler last
    /// recorded as next — also for a report that has never run. Bounded: one row per report.
    pub async fn report_records(&self) -> Result<Vec<crate::glance::ReportRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            latest_runs!(
                "id, namespace, report, report_date, phase, manual, started_at, finished_at,
                 article_count, error, title, time_zone, plan -> 'mailWindow' AS mail_window"
            ),
            " SELECT COALESCE(l.namespace, s.namespace) AS ns, COALESCE(l.report, s.report) AS name,
                    l.id, l.report_date, l.phase, l.manual, l.started_at, l.finished_at,
                    l.article_count, l.error, l.title, l.time_zone, l.mail_window, s.next_slot
             FROM latest l FULL OUTER JOIN report_schedule s
               ON s.namespace = l.namespace AND s.report = l.report
             ORDER BY 1, 2 LIMIT 500"
        ))
        .fetch_all(self.pool())
        .await?;
        let ids: Vec<i64> = rows
            .iter()
            .map(|r| r.try_get::<Option<i64>, _>("id"))
            .collect::<Result<Vec<_>, sqlx::Error>>()?
            .into_iter()
            .flatten()
            .collect();
        let counts = self.run_counts_of(&ids).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let namespace: String = r.try_get("ns")?;
            let report: String = r.try_get("name")?;
            let id: Option<i64> = r.try_get("id")?;
            let counted = counts.iter().find(|c| Some(c.report_id) == id);
            let channels = counted.map(|c| c.by_channel()).unwrap_or_default();
            let run = match id {
                Some(_) => Some(super::LatestRun {
                    namespace: namespace.clone(),
                    report: report.clone(),
                    date: r.try_get("report_date")?,
                    phase: state_column(&r, "phase")?,
                    manual: r.try_get("manual")?,
                    started_at: r.try_get("started_at")?,
                    finished_at: r.try_get("finished_at")?,
                    articles: r.try_get("article_count")?,
                    deliveries: channels.iter().fold(
                        DeliveryCounts::default(),
                        |mut all, (_, c)| {
                            all.merge(c);
                            all
                        },
                    ),
                    error: r.try_get("error")?,
                }),
                None => None,
            };
            let window = r
                .try_get::<Option<serde_json::Value>, _>("mail_window")?
                .and_then(|w| serde_json::from_value::<crate::api::MailWindow>(w).ok())
                .zip(r.try_get::<Option<String>, _>("time_zone")?);
            out.push(crate::glance::ReportRecord {
                namespace,
                report,
                title: r.try_get("title")?,
                run_id: id,
                run,
                channels,
                last_delivery: counted.and_then(|c| c.last_sent),
                window,
                next_slot: r.try_get("next_slot")?,
                // The plan does not record it: the glance's own grace stands.
                starting_deadline: None,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_reply_says_its_code_once() {
        assert_eq!(
            reply_line(Some(451), "transient error (451): 4.3.0 try later"),
            "451 4.3.0 try later"
        );
        assert_eq!(
            reply_line(Some(550), "5.1.1 no such user"),
            "550 5.1.1 no such user"
        );
        assert_eq!(
            reply_line(Some(550), "550 5.1.1 no such user"),
            "550 5.1.1 no such user"
        );
        assert_eq!(reply_line(None, "connection refused"), "connection refused");
        assert_eq!(
            reply_line(Some(93000), "token is invalid"),
            "93000 token is invalid"
        );
    }

    use super::*;

    #[test]
    fn pages_are_bounded() {
        let p = Page::new(Some(0), Some(10_000), 30);
        assert_eq!((p.number, p.size), (1, Page::MAX));
        let p = Page::new(Some(u32::MAX), None, 30);
        assert_eq!((p.number, p.size), (Page::LAST, 30));
        assert_eq!(p.offset(), i64::from(Page::LAST - 1) * 30);
        let paged = Paged::from_rows(vec![1, 2, 3], Page::new(Some(1), Some(2), 2));
        assert_eq!(paged.rows, vec![1, 2]);
        assert!(paged.has_next);
    }
}
