//! The extract step around the pure `extract` functions: candidates from the collected items,
//! what earlier days of this report already carried (PostgreSQL), every candidate remembered
//! as an article (so a later "304 Not Modified" can stand for it), and the ranked selection
//! stored with the report.

use std::collections::{HashMap, HashSet};

use tracing::info;

use super::Attempt;
use super::entities;
use super::extract::{self, Candidate, ExtractConfig, Filters, SourceBatch};
use crate::run::{ErrorCategory, ExtractStats};
use crate::store::{ArticleInput, ReportArticle, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum SelectionError {
    #[error("content.filters.{0}")]
    Filters(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("ranking hit a bug: {0}")]
    Panic(String),
}

impl SelectionError {
    pub fn category(&self) -> ErrorCategory {
        match self {
            Self::Filters(_) => ErrorCategory::Config,
            Self::Store(_) => ErrorCategory::Database,
            Self::Panic(_) => ErrorCategory::Internal,
        }
    }
}

/// The ranked selection of the day, best first, stored with the report.
pub(crate) async fn select(
    attempt: &mut Attempt<'_>,
    batches: Vec<SourceBatch<'_>>,
) -> Result<Vec<Candidate>, SelectionError> {
    let plan = attempt.plan;
    let cfg = ExtractConfig {
        now: attempt.lookback_ends_at.0,
        end: attempt.lookback_ends_at.1,
        lookback_hours: plan.content.lookback_hours,
        report_filters: Filters::compile(&plan.content.filters).map_err(SelectionError::Filters)?,
        watchlist: entities::watch_entries(&plan.content.watchlist),
        max_items: plan.content.max_items as usize,
        max_items_per_source: plan.content.max_items_per_source as usize,
    };
    let mut stats = ExtractStats::default();
    let cands = extract::candidates(batches, &cfg, &mut stats);
    let seen = reported_before(attempt, &cands).await?;
    // Storing every candidate (database) and choosing among them (CPU) run side by side.
    let remember = tokio::spawn(remember_articles(
        attempt.store.clone(),
        article_rows(&plan.namespace, &cands),
    ));
    let (selected, stats) = tokio::task::spawn_blocking(move || {
        let selected = extract::select(cands, &seen, &cfg, &mut stats);
        (selected, stats)
    })
    .await
    .map_err(|e| SelectionError::Panic(e.to_string()))?;
    let article_ids = remember
        .await
        .map_err(|e| SelectionError::Panic(e.to_string()))??;
    if let Some(report_id) = attempt.report_id {
        attempt
            .store
            .save_report_articles(report_id, &report_articles(&selected, &article_ids))
            .await?;
    }
    info!(
        selected = selected.len(),
        sections = extract::section_order(&selected, &plan.content.section_order).len(),
        "extraction done"
    );
    attempt.outcome.extract = stats;
    attempt.outcome.articles = selected.len();
    Ok(selected)
}

/// URL and content hashes among `cands` that an earlier day's run of this report carried.
async fn reported_before(
    attempt: &Attempt<'_>,
    cands: &[Candidate],
) -> Result<HashSet<[u8; 32]>, StoreError> {
    let plan = attempt.plan;
    let hashes: Vec<Vec<u8>> = cands
        .iter()
        .flat_map(|c| [c.url_hash.to_vec(), c.content_hash.to_vec()])
        .collect();
    Ok(attempt
        .store
        .reported_before(&plan.namespace, &plan.report, plan.slot.date, &hashes)
        .await?
        .into_iter()
        .filter_map(|h| h.try_into().ok())
        .collect())
}

/// The chosen articles in rank order, as stored with the report.
fn report_articles(
    selected: &[Candidate],
    article_ids: &HashMap<[u8; 32], i64>,
) -> Vec<ReportArticle> {
    selected
        .iter()
        .enumerate()
        .filter_map(|(rank, c)| {
            Some(ReportArticle {
                article_id: *article_ids.get(&c.url_hash)?,
                rank: i32::try_from(rank + 1).unwrap_or(i32::MAX),
                section: c.category.clone(),
                score: c.score,
                corroborated_by: serde_json::json!(c.corroborated_by),
            })
        })
        .collect()
}

/// The article rows of the candidates, owned so they can be stored from another task.
fn article_rows(namespace: &str, cands: &[Candidate]) -> Vec<ArticleInput> {
    cands
        .iter()
        .map(|c| ArticleInput {
            url_hash: c.url_hash.to_vec(),
            canonical_url: c.url.clone(),
            content_hash: c.content_hash.to_vec(),
            title: c.title.clone(),
            summary: c.summary.clone(),
            namespace: namespace.to_string(),
            source: c.source.clone(),
            category: c.category.clone(),
            language: c.language.clone(),
            published_at: c.published_known.then_some(c.published),
            entities: serde_json::json!(c.tickers),
        })
        .collect()
}

/// Stores every candidate; returns article ids by URL hash.
async fn remember_articles(
    store: Store,
    rows: Vec<ArticleInput>,
) -> Result<HashMap<[u8; 32], i64>, StoreError> {
    let ids = store.upsert_articles(&rows).await?;
    Ok(ids
        .into_iter()
        .filter_map(|(hash, id)| Some((<[u8; 32]>::try_from(hash.as_slice()).ok()?, id)))
        .collect())
}
