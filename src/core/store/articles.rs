//! Articles (deduplicated by canonical URL across days, within a namespace), the articles
//! chosen for a report, and the AI summary cache (per namespace).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;

use super::{Store, StoreError};

/// An article to remember.
#[derive(Clone, Debug)]
pub struct ArticleInput {
    pub url_hash: Vec<u8>,
    pub canonical_url: String,
    pub content_hash: Vec<u8>,
    pub title: std::sync::Arc<str>,
    pub summary: std::sync::Arc<str>,
    pub namespace: String,
    pub source: String,
    pub category: String,
    pub language: Option<String>,
    pub published_at: Option<DateTime<Utc>>,
    pub entities: serde_json::Value,
}

/// An article remembered from an earlier fetch.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredArticle {
    pub canonical_url: String,
    pub title: String,
    pub summary: Option<String>,
    pub published_at: Option<DateTime<Utc>>,
}

/// One call to an external provider.
#[derive(Clone, Debug)]
pub struct ProviderCall<'a> {
    pub report_id: Option<i64>,
    pub provider: &'a str,
    pub model: &'a str,
    pub purpose: &'a str,
    pub outcome: crate::run::ProviderOutcome,
    pub latency_ms: i32,
    pub http_status: Option<i32>,
}

/// A chosen article of a report.
#[derive(Clone, Debug)]
pub struct ReportArticle {
    pub article_id: i64,
    pub rank: i32,
    pub section: String,
    pub score: f64,
    pub corroborated_by: serde_json::Value,
}

impl Store {
    /// Inserts or refreshes articles (unique by namespace and URL hash) in batches; returns
    /// ids by URL hash. All of `articles` belong to one namespace.
    pub async fn upsert_articles(
        &self,
        articles: &[ArticleInput],
    ) -> Result<HashMap<Vec<u8>, i64>, StoreError> {
        let mut ids = HashMap::with_capacity(articles.len());
        let mut tx = self.pool().begin().await?;
        for chunk in articles.chunks(1000) {
            let col = |f: fn(&ArticleInput) -> String| chunk.iter().map(f).collect::<Vec<_>>();
            let url_hashes: Vec<Vec<u8>> = chunk.iter().map(|a| a.url_hash.clone()).collect();
            let content_hashes: Vec<Vec<u8>> =
                chunk.iter().map(|a| a.content_hash.clone()).collect();
            let languages: Vec<Option<String>> = chunk.iter().map(|a| a.language.clone()).collect();
            let published: Vec<Option<DateTime<Utc>>> =
                chunk.iter().map(|a| a.published_at).collect();
            let rows = sqlx::query(
                "INSERT INTO articles (url_hash, canonical_url, content_hash, title, summary, namespace, source, category, language, published_at, entities)
                 SELECT u.h, u.url, u.ch, u.t, u.s, u.ns, u.src, u.cat, u.lang, u.pub, u.e::jsonb
                 FROM UNNEST($1::bytea[], $2::text[], $3::bytea[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::text[])
                      AS u(h, url, ch, t, s, ns, src, cat, lang, pub, e)
                 ON CONFLICT (namespace, url_hash) DO UPDATE SET
                    last_seen_at = now(),
                    content_hash = EXCLUDED.content_hash,
                    title = EXCLUDED.title,
                    summary = EXCLUDED.summary,
                    entities = EXCLUDED.entities
                 RETURNING id, url_hash",
            )
            .bind(&url_hashes)
            .bind(col(|a| a.canonical_url.clone()))
            .bind(&content_hashes)
            .bind(col(|a| a.title.to_string()))
            .bind(col(|a| a.summary.to_string()))
            .bind(col(|a| a.namespace.clone()))
            .bind(col(|a| a.source.clone()))
            .bind(col(|a| a.category.clone()))
            .bind(&languages)
            .bind(&published)
            .bind(col(|a| a.entities.to_string()))
            .fetch_all(&mut *tx)
            .await?;
            for r in rows {
                ids.insert(r.try_get("url_hash")?, r.try_get("id")?);
            }
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Articles a source yielded since `since`: what a "304 Not Modified" stands for.
    pub async fn recent_articles(
        &self,
        namespace: &str,
        source: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<StoredArticle>, StoreError> {
        let rows = sqlx::query(
            "SELECT canonical_url, title, summary, published_at FROM articles
             WHERE namespace = $1 AND source = $2 AND last_seen_at >= $3
             ORDER BY COALESCE(published_at, first_seen_at) DESC LIMIT 1000",
        )
        .bind(namespace)
        .bind(source)
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(StoredArticle {
                    canonical_url: r.try_get("canonical_url")?,
                    title: r.try_get("title")?,
                    summary: r.try_get("summary")?,
                    published_at: r.try_get("published_at")?,
                })
            })
            .collect()
    }

    /// Which of the given URL or content hashes an earlier day's run of this report carried.
    pub async fn reported_before(
        &self,
        namespace: &str,
        report: &str,
        date: NaiveDate,
        hashes: &[Vec<u8>],
    ) -> Result<HashSet<Vec<u8>>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.url_hash, a.content_hash FROM report_articles ra
             JOIN reports r ON r.id = ra.report_id
             JOIN articles a ON a.id = ra.article_id
             WHERE r.namespace = $1 AND r.report = $2 AND r.report_date < $3
               AND (a.url_hash = ANY($4) OR a.content_hash = ANY($4))",
        )
        .bind(namespace)
        .bind(report)
        .bind(date)
        .bind(hashes)
        .fetch_all(self.pool())
        .await?;
        let mut out = HashSet::new();
        for r in rows {
            out.insert(r.try_get::<Vec<u8>, _>("url_hash")?);
            out.insert(r.try_get::<Vec<u8>, _>("content_hash")?);
        }
        Ok(out)
    }

    /// Replaces the chosen articles of a report (a recomposed report replaces its list).
    pub async fn save_report_articles(
        &self,
        report_id: i64,
        rows: &[ReportArticle],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM report_articles WHERE report_id = $1")
            .bind(report_id)
            .execute(&mut *tx)
            .await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO report_articles (report_id, article_id, rank, section, score, corroborated_by)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(report_id)
            .bind(r.article_id)
            .bind(r.rank)
            .bind(&r.section)
            .bind(r.score)
            .bind(&r.corroborated_by)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Cached AI summaries of a namespace by input hash (the hash of what the model was given).
    pub async fn cached_summaries(
        &self,
        namespace: &str,
        provider: &str,
        model: &str,
        hashes: &[Vec<u8>],
    ) -> Result<HashMap<Vec<u8>, String>, StoreError> {
        let rows = sqlx::query(
            "SELECT input_hash, summary FROM article_summaries
             WHERE namespace = $1 AND provider = $2 AND model = $3 AND input_hash = ANY($4)",
        )
        .bind(namespace)
        .bind(provider)
        .bind(model)
        .bind(hashes)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|r| Ok((r.try_get("input_hash")?, r.try_get("summary")?)))
            .collect()
    }

    pub async fn store_summary(
        &self,
        namespace: &str,
        input_hash: &[u8],
        provider: &str,
        model: &str,
        summary: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO article_summaries (namespace, input_hash, provider, model, summary) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (namespace, input_hash, provider, model) DO UPDATE SET summary = EXCLUDED.summary, created_at = now()",
        )
        .bind(namespace)
        .bind(input_hash)
        .bind(provider)
        .bind(model)
        .bind(summary)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn record_provider_call(&self, c: &ProviderCall<'_>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO provider_calls (report_id, provider, model, purpose, outcome, latency_ms, http_status)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(c.report_id)
        .bind(c.provider)
        .bind(c.model)
        .bind(c.purpose)
        .bind(c.outcome.as_str())
        .bind(c.latency_ms)
        .bind(c.http_status)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
