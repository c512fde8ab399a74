//! Previews and test copies: what an editor asked to see or to receive, kept apart from the
//! runs (`reports`, `delivery_log`) so that neither is ever taken for the day's report or a
//! recipient's delivery.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;

use super::{Store, StoreError, state_column};
use crate::run::{Channel, CopyOf, PreviewState, TestSendState};

/// A preview being made.
pub struct PreviewStart<'a> {
    pub namespace: &'a str,
    pub report: &'a str,
    pub request: &'a str,
    pub date: NaiveDate,
    pub recipient: Option<&'a str>,
    pub at: DateTime<Utc>,
}

/// What a preview composed.
pub struct PreviewResult<'a> {
    pub subject: &'a str,
    pub html: &'a str,
    pub text: &'a str,
    /// A chat group's message and its platform, for a preview as a chat group.
    pub chat: Option<(&'a str, Channel)>,
    pub articles: i32,
    pub view: serde_json::Value,
    pub outcome: serde_json::Value,
    pub at: DateTime<Utc>,
}

/// A stored preview.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PreviewRow {
    pub id: i64,
    pub namespace: String,
    pub report: String,
    pub request: String,
    pub date: NaiveDate,
    pub recipient: Option<String>,
    pub state: PreviewState,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub articles: i32,
    pub subject: Option<String>,
    pub html: Option<String>,
    pub text: Option<String>,
    pub chat_message: Option<String>,
    pub chat_platform: Option<String>,
    pub view: Option<serde_json::Value>,
    pub outcome: Option<serde_json::Value>,
    pub error: Option<String>,
}

impl PreviewRow {
    /// The sources the preview could not read, with their errors (from its stored outcome).
    pub fn sources_failing(&self) -> Vec<(String, String)> {
        let Some(outcome) = self
            .outcome
            .as_ref()
            .and_then(|o| serde_json::from_value::<crate::run::RunOutcome>(o.clone()).ok())
        else {
            return Vec::new();
        };
        outcome
            .sources
            .into_iter()
            .filter(|s| s.status == crate::run::FetchStatus::Failed)
            .map(|s| (s.name, s.error.unwrap_or_else(|| "failed".to_string())))
            .collect()
    }
}

/// A composed run of a report, as a test copy may send it.
#[derive(Clone, Debug, PartialEq)]
pub struct ComposedRun {
    pub report_id: i64,
    pub date: NaiveDate,
    pub started_at: Option<DateTime<Utc>>,
    pub subject: String,
    pub html: String,
    pub text: String,
    pub view: serde_json::Value,
}

/// A test copy about to be sent.
pub struct TestSendClaim<'a> {
    pub namespace: &'a str,
    pub report: &'a str,
    pub request: &'a str,
    pub recipient: &'a str,
    pub address: &'a str,
    pub channel: Channel,
    /// What is sent, and of which date (`None`: nothing was composed to send).
    pub copy_of: Option<(CopyOf, NaiveDate)>,
    pub at: DateTime<Utc>,
}

/// A stored test copy.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TestSendRow {
    pub id: i64,
    pub namespace: String,
    pub report: String,
    pub request: String,
    pub recipient: String,
    pub address: String,
    pub channel: Channel,
    pub copy_of: Option<(CopyOf, NaiveDate)>,
    pub state: TestSendState,
    pub reply: Option<String>,
    pub message_id: Option<String>,
    pub claimed_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

// Column lists as macros, so that every query stays one literal (no SQL built at run time).
macro_rules! preview_columns {
    () => {
        "id, namespace, report, request, report_date, recipient, status, started_at, finished_at,
         article_count, subject, html, text, chat_message, chat_platform, view, outcome, error"
    };
}

macro_rules! test_send_columns {
    () => {
        "id, namespace, report, request, recipient, address, channel, copy_of, copy_date, status,
         reply, message_id, claimed_at, finished_at"
    };
}

fn preview_row(r: &sqlx::postgres::PgRow) -> Result<PreviewRow, sqlx::Error> {
    Ok(PreviewRow {
        id: r.try_get("id")?,
        namespace: r.try_get("namespace")?,
        report: r.try_get("report")?,
        request: r.try_get("request")?,
        date: r.try_get("report_date")?,
        recipient: r.try_get("recipient")?,
        state: state_column(r, "status")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        articles: r.try_get("article_count")?,
        subject: r.try_get("subject")?,
        html: r.try_get("html")?,
        text: r.try_get("text")?,
        chat_message: r.try_get("chat_message")?,
        chat_platform: r.try_get("chat_platform")?,
        view: r.try_get("view")?,
        outcome: r.try_get("outcome")?,
        error: r.try_get("error")?,
    })
}

fn test_send_row(r: &sqlx::postgres::PgRow) -> Result<TestSendRow, sqlx::Error> {
    Ok(TestSendRow {
        id: r.try_get("id")?,
        namespace: r.try_get("namespace")?,
        report: r.try_get("report")?,
        request: r.try_get("request")?,
        recipient: r.try_get("recipient")?,
        address: r.try_get("address")?,
        channel: state_column(r, "channel")?,
        copy_of: match r.try_get::<Option<String>, _>("copy_of")? {
            Some(of) => Some((
                of.parse()
                    .map_err(|e: crate::run::UnknownState| sqlx::Error::Decode(Box::new(e)))?,
                r.try_get("copy_date")?,
            )),
            None => None,
        },
        state: state_column(r, "status")?,
        reply: r.try_get("reply")?,
        message_id: r.try_get("message_id")?,
        claimed_at: r.try_get("claimed_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

impl Store {
    /// Starts (or, for a retried Job, starts again) the preview `p.request` of a report.
    pub async fn begin_preview(&self, p: &PreviewStart<'_>) -> Result<i64, StoreError> {
        let id = sqlx::query_scalar(
            "INSERT INTO previews (namespace, report, request, report_date, recipient, status, started_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (namespace, report, request) DO UPDATE
                SET report_date = $4, recipient = $5, status = $6, started_at = $7,
                    finished_at = NULL, error = NULL
             RETURNING id",
        )
        .bind(p.namespace)
        .bind(p.report)
        .bind(p.request)
        .bind(p.date)
        .bind(p.recipient)
        .bind(PreviewState::Running.as_str())
        .bind(p.at)
        .fetch_one(self.pool())
        .await?;
        Ok(id)
    }

    pub async fn finish_preview(&self, id: i64, r: &PreviewResult<'_>) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE previews SET status = $2, finished_at = $3, article_count = $4, subject = $5,
                    html = $6, text = $7, chat_message = $8, chat_platform = $9, view = $10,
                    outcome = $11, error = NULL
             WHERE id = $1",
        )
        .bind(id)
        .bind(PreviewState::Ready.as_str())
        .bind(r.at)
        .bind(r.articles)
        .bind(r.subject)
        .bind(r.html)
        .bind(r.text)
        .bind(r.chat.map(|(m, _)| m))
        .bind(r.chat.map(|(_, c)| c.as_str()))
        .bind(&r.view)
        .bind(&r.outcome)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn fail_preview(
        &self,
        id: i64,
        error: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE previews SET status = $2, finished_at = $3, error = $4 WHERE id = $1")
            .bind(id)
            .bind(PreviewState::Failed.as_str())
            .bind(at)
            .bind(error)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The preview a request made, if it has begun.
    pub async fn preview_by_request(
        &self,
        namespace: &str,
        report: &str,
        request: &str,
    ) -> Result<Option<PreviewRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            preview_columns!(),
            " FROM previews WHERE namespace = $1 AND report = $2 AND request = $3"
        ))
        .bind(namespace)
        .bind(report)
        .bind(request)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(preview_row).transpose()?)
    }

    /// A preview by its id (the console's link).
    pub async fn preview(&self, id: i64) -> Result<Option<PreviewRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            preview_columns!(),
            " FROM previews WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(preview_row).transpose()?)
    }

    /// The report's newest finished preview of the whole report (not one recipient's copy).
    pub async fn latest_ready_preview(
        &self,
        namespace: &str,
        report: &str,
    ) -> Result<Option<PreviewRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            preview_columns!(),
            " FROM previews
             WHERE namespace = $1 AND report = $2 AND status = $3 AND view IS NOT NULL
             ORDER BY finished_at DESC LIMIT 1"
        ))
        .bind(namespace)
        .bind(report)
        .bind(PreviewState::Ready.as_str())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(preview_row).transpose()?)
    }

    /// The newest previews of every report, newest first (the console), without their bodies.
    pub async fn recent_previews(&self, limit: i64) -> Result<Vec<PreviewRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, namespace, report, request, report_date, recipient, status, started_at,
                    finished_at, article_count, subject, NULL::text AS html, NULL::text AS text,
                    NULL::text AS chat_message, chat_platform, NULL::jsonb AS view,
                    NULL::jsonb AS outcome, error
             FROM previews ORDER BY started_at DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(preview_row).collect::<Result<_, _>>()?)
    }

    /// The report's run of `date`, if it was composed.
    pub async fn composed_run(
        &self,
        namespace: &str,
        report: &str,
        date: NaiveDate,
    ) -> Result<Option<ComposedRun>, StoreError> {
        let row = sqlx::query(
            "SELECT id, report_date, started_at, subject, html, text_body, view FROM reports
             WHERE namespace = $1 AND report = $2 AND report_date = $3
               AND html IS NOT NULL AND view IS NOT NULL AND subject IS NOT NULL",
        )
        .bind(namespace)
        .bind(report)
        .bind(date)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        Ok(Some(ComposedRun {
            report_id: r.try_get("id")?,
            date: r.try_get("report_date")?,
            started_at: r.try_get("started_at")?,
            subject: r.try_get("subject")?,
            html: r.try_get("html")?,
            text: r
                .try_get::<Option<String>, _>("text_body")?
                .unwrap_or_default(),
            view: r.try_get("view")?,
        }))
    }

    /// Claims test copy `c.request`: `Ok(None)` when it was claimed before (the row says what
    /// became of it; a copy is never sent twice for one request).
    pub async fn claim_test_send(&self, c: &TestSendClaim<'_>) -> Result<Option<i64>, StoreError> {
        let id = sqlx::query_scalar(
            "INSERT INTO test_sends (namespace, report, request, recipient, address, channel,
                                     copy_of, copy_date, status, claimed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (namespace, report, request) DO NOTHING
             RETURNING id",
        )
        .bind(c.namespace)
        .bind(c.report)
        .bind(c.request)
        .bind(c.recipient)
        .bind(c.address)
        .bind(c.channel.as_str())
        .bind(c.copy_of.map(|(of, _)| of.as_str()))
        .bind(c.copy_of.map(|(_, date)| date))
        .bind(TestSendState::Sending.as_str())
        .bind(c.at)
        .fetch_optional(self.pool())
        .await?;
        Ok(id)
    }

    /// Records what became of a claimed test copy.
    pub async fn finish_test_send(
        &self,
        id: i64,
        state: TestSendState,
        reply: Option<&str>,
        message_id: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE test_sends SET status = $2, reply = $3, message_id = $4, finished_at = $5
             WHERE id = $1",
        )
        .bind(id)
        .bind(state.as_str())
        .bind(reply)
        .bind(message_id)
        .bind(at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// A test copy found `sending` by a later attempt: its request may have arrived.
    pub async fn test_send_interrupted(
        &self,
        id: i64,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE test_sends SET status = $2, finished_at = $3 WHERE id = $1 AND status = $4",
        )
        .bind(id)
        .bind(TestSendState::Uncertain.as_str())
        .bind(at)
        .bind(TestSendState::Sending.as_str())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn test_send_by_request(
        &self,
        namespace: &str,
        report: &str,
        request: &str,
    ) -> Result<Option<TestSendRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            test_send_columns!(),
            " FROM test_sends WHERE namespace = $1 AND report = $2 AND request = $3"
        ))
        .bind(namespace)
        .bind(report)
        .bind(request)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(test_send_row).transpose()?)
    }

    /// The newest test copies of every report, newest first (the console).
    pub async fn recent_test_sends(&self, limit: i64) -> Result<Vec<TestSendRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            test_send_columns!(),
            " FROM test_sends ORDER BY claimed_at DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(test_send_row).collect::<Result<_, _>>()?)
    }
}
