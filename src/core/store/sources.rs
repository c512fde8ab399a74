//! Per-source fetch state (conditional GET validators, health) and the fetch log.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError};
use crate::run::FetchErrorKind;

/// Validators remembered from a source's last successful fetch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConditionalState {
    pub url: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// One fetch outcome.
#[derive(Clone, Debug)]
pub struct FetchRecord<'a> {
    pub report_id: Option<i64>,
    pub namespace: &'a str,
    pub source: &'a str,
    /// Redacted: a key in the query string is never stored.
    pub url: String,
    pub started_at: DateTime<Utc>,
    pub latency_ms: i32,
    pub http_status: Option<i32>,
    pub items: i32,
    pub not_modified: bool,
    pub error_kind: Option<FetchErrorKind>,
    /// Cleaned and bounded.
    pub error: Option<String>,
    pub etag: Option<&'a str>,
    pub last_modified: Option<&'a str>,
}

impl Store {
    /// Conditional-GET validators of a namespace's sources, by source name (with the URL they
    /// were fetched from, as stored: redacted).
    pub async fn conditional_states(
        &self,
        namespace: &str,
    ) -> Result<HashMap<String, ConditionalState>, StoreError> {
        let rows = sqlx::query(
            "SELECT source, url, etag, last_modified FROM source_state WHERE namespace = $1",
        )
        .bind(namespace)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    r.try_get("source")?,
                    ConditionalState {
                        url: r.try_get("url")?,
                        etag: r.try_get("etag")?,
                        last_modified: r.try_get("last_modified")?,
                    },
                ))
            })
            .collect()
    }

    /// Appends to the fetch log and updates the source's state.
    pub async fn record_fetch(&self, r: &FetchRecord<'_>) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO fetch_log (report_id, namespace, source, url, started_at, latency_ms, http_status, items, not_modified, error_kind, error)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(r.report_id)
        .bind(r.namespace)
        .bind(r.source)
        .bind(&r.url)
        .bind(r.started_at)
        .bind(r.latency_ms)
        .bind(r.http_status)
        .bind(r.items)
        .bind(r.not_modified)
        .bind(r.error_kind.map(FetchErrorKind::as_str))
        .bind(&r.error)
        .execute(&mut *tx)
        .await?;
        let ok = r.error_kind.is_none();
        // Validators are kept only from a full, successful fetch of the same URL; a changed
        // URL starts over.
        sqlx::query(
            "INSERT INTO source_state AS s (namespace, source, url, etag, last_modified, last_fetch_at, last_success_at,
                                       last_status, items_last_fetch, consecutive_failures, last_error_kind, last_error)
             VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $7 THEN $6 END, $8, $9, CASE WHEN $7 THEN 0 ELSE 1 END, $10, $11)
             ON CONFLICT (namespace, source) DO UPDATE SET
                etag = CASE WHEN $7 AND NOT $12 THEN EXCLUDED.etag
                            WHEN s.url <> EXCLUDED.url THEN NULL ELSE s.etag END,
                last_modified = CASE WHEN $7 AND NOT $12 THEN EXCLUDED.last_modified
                                     WHEN s.url <> EXCLUDED.url THEN NULL ELSE s.last_modified END,
                url = EXCLUDED.url,
                last_fetch_at = EXCLUDED.last_fetch_at,
                last_success_at = CASE WHEN $7 THEN EXCLUDED.last_fetch_at ELSE s.last_success_at END,
                last_status = EXCLUDED.last_status,
                items_last_fetch = CASE WHEN $12 THEN s.items_last_fetch ELSE EXCLUDED.items_last_fetch END,
                consecutive_failures = CASE WHEN $7 THEN 0 ELSE s.consecutive_failures + 1 END,
                last_error_kind = EXCLUDED.last_error_kind,
                last_error = EXCLUDED.last_error,
                updated_at = now()",
        )
        .bind(r.namespace)
        .bind(r.source)
        .bind(&r.url)
        .bind(r.etag)
        .bind(r.last_modified)
        .bind(r.started_at)
        .bind(ok)
        .bind(r.http_status)
        .bind(r.items)
        .bind(r.error_kind.map(FetchErrorKind::as_str))
        .bind(&r.error)
        .bind(r.not_modified)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A source's recorded fetch health: its status, and `finrep status`'s failing sources.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceHealthRow {
    pub namespace: String,
    pub source: String,
    pub last_fetch_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub items_last_fetch: i32,
    pub consecutive_failures: i32,
    pub last_error_kind: Option<FetchErrorKind>,
    pub last_error: Option<String>,
}

impl Store {
    /// The fetch health of every source ever fetched, of one namespace or of all, by
    /// namespace and name.
    pub async fn source_health(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<SourceHealthRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT namespace, source, last_fetch_at, last_success_at, items_last_fetch,
                    consecutive_failures, last_error_kind, last_error
             FROM source_state WHERE $1::text IS NULL OR namespace = $1
             ORDER BY namespace, source",
        )
        .bind(namespace)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|r| {
                let kind: Option<String> = r.try_get("last_error_kind")?;
                Ok(SourceHealthRow {
                    namespace: r.try_get("namespace")?,
                    source: r.try_get("source")?,
                    last_fetch_at: r.try_get("last_fetch_at")?,
                    last_success_at: r.try_get("last_success_at")?,
                    items_last_fetch: r.try_get("items_last_fetch")?,
                    consecutive_failures: r.try_get("consecutive_failures")?,
                    // A kind this build does not know (a newer writer) is shown as none.
                    last_error_kind: kind.and_then(|k| k.parse().ok()),
                    last_error: r.try_get("last_error")?,
                })
            })
            .collect()
    }

    /// Sources whose latest fetch failed, in every namespace, worst first.
    pub async fn failing_sources(&self) -> Result<Vec<SourceHealthRow>, StoreError> {
        let mut failing: Vec<SourceHealthRow> = self
            .source_health(None)
            .await?
            .into_iter()
            .filter(|s| s.consecutive_failures > 0)
            .collect();
        // Stable: ties keep the namespace and name order of the query.
        failing.sort_by_key(|s| std::cmp::Reverse(s.consecutive_failures));
        Ok(failing)
    }
}
