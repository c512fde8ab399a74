//! Report runs: one `reports` row per report per local date, its phase, content and outcome,
//! and the step timings.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;

use super::{Store, StoreError};
use crate::run::{RunPhase, Step};

/// Identity of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunKey<'a> {
    pub namespace: &'a str,
    pub report: &'a str,
    pub date: NaiveDate,
}

/// What a new or resumed run starts with.
#[derive(Clone, Debug)]
pub struct RunStart<'a> {
    pub key: RunKey<'a>,
    pub time_zone: &'a str,
    pub scheduled_for: DateTime<Utc>,
    pub manual: bool,
    pub plan: serde_json::Value,
    /// When this attempt started, on the run's clock (kept from the first attempt).
    pub at: DateTime<Utc>,
}

/// The composed report to store.
#[derive(Clone, Debug)]
pub struct ComposedReport<'a> {
    pub title: &'a str,
    pub subject: &'a str,
    pub html: &'a str,
    pub text: &'a str,
    pub articles: i32,
    pub recipients: i32,
    /// The report's view model, for rendering each recipient's copy later.
    pub view: serde_json::Value,
}

/// A stored report row.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportRow {
    pub id: i64,
    pub phase: RunPhase,
    pub subject: Option<String>,
    pub html: Option<String>,
    pub text: Option<String>,
    pub article_count: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub view: Option<serde_json::Value>,
}

impl Store {
    /// Creates the day's report row, or returns the existing one: a retried or repeated run
    /// of the same day works on the same row.
    pub async fn begin_run(&self, start: &RunStart<'_>) -> Result<ReportRow, StoreError> {
        let row = sqlx::query(
            "INSERT INTO reports (namespace, report, report_date, time_zone, scheduled_for, manual, plan, started_at, build_version, build_revision)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $10, $8, $9)
             ON CONFLICT (namespace, report, report_date) DO UPDATE
                SET plan = EXCLUDED.plan,
                    manual = reports.manual OR EXCLUDED.manual,
                    started_at = COALESCE(reports.started_at, EXCLUDED.started_at),
                    updated_at = now()
             RETURNING id, phase, subject, html, text_body, article_count, started_at, view",
        )
        .bind(start.key.namespace)
        .bind(start.key.report)
        .bind(start.key.date)
        .bind(start.time_zone)
        .bind(start.scheduled_for)
        .bind(start.manual)
        .bind(&start.plan)
        .bind(crate::build::VERSION)
        .bind(crate::build::REVISION)
        .bind(start.at)
        .fetch_one(self.pool())
        .await?;
        Ok(report_row(&row)?)
    }

    pub async fn set_phase(&self, report_id: i64, phase: RunPhase) -> Result<(), StoreError> {
        sqlx::query("UPDATE reports SET phase = $2, updated_at = now() WHERE id = $1")
            .bind(report_id)
            .bind(phase.as_str())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn save_composed(
        &self,
        report_id: i64,
        r: &ComposedReport<'_>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE reports SET title = $2, subject = $3, html = $4, text_body = $5,
                    article_count = $6, recipient_count = $7,
                    build_version = $8, build_revision = $9, view = $10, updated_at = now()
             WHERE id = $1",
        )
        .bind(report_id)
        .bind(r.title)
        .bind(r.subject)
        .bind(r.html)
        .bind(r.text)
        .bind(r.articles)
        .bind(r.recipients)
        .bind(crate::build::VERSION)
        .bind(crate::build::REVISION)
        .bind(&r.view)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records the end of a run (or of this attempt at it) at `at`, on the run's clock.
    pub async fn finish_run(
        &self,
        report_id: i64,
        phase: RunPhase,
        outcome: &serde_json::Value,
        error: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE reports SET phase = $2, outcome = $3, error = $4, finished_at = $5, updated_at = now()
             WHERE id = $1",
        )
        .bind(report_id)
        .bind(phase.as_str())
        .bind(outcome)
        .bind(error)
        .bind(at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn record_step(
        &self,
        report_id: i64,
        step: Step,
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
        ok: bool,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO step_timings (report_id, step, started_at, finished_at, ok, detail)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(report_id)
        .bind(step.as_str())
        .bind(started_at)
        .bind(finished_at)
        .bind(ok)
        .bind(detail)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

/// A `reports` row as `begin_run` returns it.
fn report_row(row: &sqlx::postgres::PgRow) -> Result<ReportRow, sqlx::Error> {
    Ok(ReportRow {
        id: row.try_get("id")?,
        phase: super::state_column(row, "phase")?,
        subject: row.try_get("subject")?,
        html: row.try_get("html")?,
        text: row.try_get("text_body")?,
        article_count: row.try_get("article_count")?,
        started_at: row.try_get("started_at")?,
        view: row.try_get("view")?,
    })
}

/// The latest run of each report, for `finrep status` and the console.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LatestRun {
    pub namespace: String,
    pub report: String,
    pub date: NaiveDate,
    pub phase: RunPhase,
    pub manual: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub articles: i32,
    pub deliveries: crate::run::DeliveryCounts,
    pub error: Option<String>,
}

impl Store {
    /// The latest run of every report, with its deliveries counted by state.
    pub async fn latest_runs(&self) -> Result<Vec<LatestRun>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT ON (namespace, report) id, namespace, report, report_date, phase, manual,
                    started_at, finished_at, article_count, error
             FROM reports ORDER BY namespace, report, report_date DESC",
        )
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = r.try_get("id")?;
            out.push(LatestRun {
                namespace: r.try_get("namespace")?,
                report: r.try_get("report")?,
                date: r.try_get("report_date")?,
                phase: super::state_column(&r, "phase")?,
                manual: r.try_get("manual")?,
                started_at: r.try_get("started_at")?,
                finished_at: r.try_get("finished_at")?,
                articles: r.try_get("article_count")?,
                deliveries: self.delivery_counts(id).await?,
                error: r.try_get("error")?,
            });
        }
        Ok(out)
    }
}

/// One run of a report, as the controller's status needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRow {
    pub date: NaiveDate,
    pub phase: RunPhase,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub articles: i32,
    pub recipients: i32,
    pub deliveries: crate::run::DeliveryCounts,
    /// The same counts per channel, channels in declaration order.
    pub channels: Vec<(crate::run::Channel, crate::run::DeliveryCounts)>,
}

impl Store {
    /// The runs of one report on or after `since`, oldest first, deliveries counted.
    pub async fn runs_of(
        &self,
        namespace: &str,
        report: &str,
        since: NaiveDate,
    ) -> Result<Vec<RunRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, report_date, phase, started_at, finished_at, article_count, recipient_count
             FROM reports WHERE namespace = $1 AND report = $2 AND report_date >= $3
             ORDER BY report_date",
        )
        .bind(namespace)
        .bind(report)
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let channels = self.delivery_counts_by_channel(r.try_get("id")?).await?;
            out.push(RunRow {
                date: r.try_get("report_date")?,
                phase: super::state_column(&r, "phase")?,
                started_at: r.try_get("started_at")?,
                finished_at: r.try_get("finished_at")?,
                articles: r.try_get("article_count")?,
                recipients: r.try_get("recipient_count")?,
                deliveries: channels.iter().fold(
                    crate::run::DeliveryCounts::default(),
                    |mut all, (_, c)| {
                        all.merge(c);
                        all
                    },
                ),
                channels,
            });
        }
        Ok(out)
    }
}
