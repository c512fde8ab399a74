//! The collect step: every source of the plan fetched and parsed concurrently, each outcome
//! recorded as soon as it is known while slower sources still run. A source that fails —
//! a fetch error, content that does not parse, a panic while handling it, or a failure to
//! record it — is that source's failure, recorded with its kind; never the run's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio::task::{Id, JoinSet};
use tracing::warn;
use url::Url;

use super::canonical::canonical_url;
use super::extract::{self, CleanItem, Filters, SourceBatch};
use super::fetch::{FetchError, FetchOutcome, FetchRequest, Fetcher};
use super::isolate::isolate;
use super::parse::{self, RawItem};
use super::{Attempt, decode};
use crate::api::SourceKind;
use crate::clock::Clock;
use crate::plan::{PlannedSource, RunPlan};
use crate::run::{ErrorCategory, FetchErrorKind, FetchStatus, SourceOutcome};
use crate::store::{ConditionalState, FetchRecord, StoreError};
use crate::untrusted::{self, MAX_ERROR_CHARS};

/// Why collection as a whole could not run (single sources never fail it).
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("cannot start the HTTP client: {0}")]
    Client(FetchError),
    #[error("cannot read the sources' fetch state: {0}")]
    Store(#[from] StoreError),
}

impl CollectError {
    pub fn category(&self) -> ErrorCategory {
        match self {
            Self::Client(_) => ErrorCategory::Config,
            Self::Store(_) => ErrorCategory::Database,
        }
    }
}

/// A source's items, or "not modified".
#[derive(Debug)]
enum SourceFetch {
    Items {
        items: Vec<CleanItem>,
        /// Items dropped because cleaning them panicked.
        failed: usize,
        filters: Filters,
        status: u16,
        etag: Option<String>,
        last_modified: Option<String>,
    },
    NotModified {
        filters: Filters,
    },
}

/// A failure of one source.
#[derive(Debug, thiserror::Error)]
enum SourceError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{message}")]
    Parse { status: u16, message: String },
    #[error("{0}")]
    Config(String),
    #[error("handling this source hit a bug: {0}")]
    Panic(String),
    #[error("recording this source's fetch failed: {0}")]
    Store(StoreError),
}

impl SourceError {
    fn kind(&self) -> FetchErrorKind {
        match self {
            Self::Fetch(e) => e.kind(),
            Self::Parse { .. } => FetchErrorKind::Parse,
            Self::Config(_) => FetchErrorKind::Config,
            Self::Panic(_) => FetchErrorKind::Panic,
            Self::Store(_) => FetchErrorKind::Store,
        }
    }

    fn status(&self) -> Option<u16> {
        match self {
            Self::Fetch(e) => e.status(),
            Self::Parse { status, .. } => Some(*status),
            Self::Config(_) | Self::Panic(_) | Self::Store(_) => None,
        }
    }
}

/// One finished fetch task.
struct Fetched {
    index: usize,
    started: DateTime<Utc>,
    elapsed: Duration,
    result: Result<SourceFetch, SourceError>,
}

/// Fetches and parses every source; one recorded outcome per source (in plan order in the
/// run outcome) and the items of those that yielded any.
pub(crate) async fn collect<'p>(
    attempt: &mut Attempt<'p>,
) -> Result<Vec<SourceBatch<'p>>, CollectError> {
    let plan = attempt.plan;
    let fetcher = Arc::new(Fetcher::new(attempt.opts.fetch.clone()).map_err(CollectError::Client)?);
    let states = attempt.store.conditional_states(&plan.namespace).await?;
    let clock = Arc::clone(&attempt.opts.clock);
    let (mut tasks, index_of) = spawn_fetches(plan, &fetcher, &states, attempt.tz, &clock);
    let spawned = (clock.now(), Instant::now());
    let mut settled = Vec::with_capacity(plan.sources.len());
    while let Some(joined) = tasks.join_next_with_id().await {
        let fetched = match joined {
            Ok((_, fetched)) => fetched,
            Err(e) => {
                let Some(&index) = index_of.get(&e.id()) else {
                    continue;
                };
                let reason = if e.is_panic() {
                    untrusted::panic_message(e.into_panic().as_ref())
                } else {
                    "the fetch task was cancelled".to_string()
                };
                Fetched {
                    index,
                    started: spawned.0,
                    elapsed: spawned.1.elapsed(),
                    result: Err(SourceError::Panic(reason)),
                }
            }
        };
        settled.push(settle(attempt, fetched).await);
    }
    settled.sort_by_key(|(index, _, _)| *index);
    let mut batches = Vec::new();
    for (_, outcome, batch) in settled {
        attempt.outcome.add_source(outcome);
        batches.extend(batch);
    }
    let o = &attempt.outcome;
    tracing::info!(
        ok = o.sources_ok,
        not_modified = o.sources_not_modified,
        failed = o.sources_failed,
        "collect done"
    );
    Ok(batches)
}

fn spawn_fetches(
    plan: &RunPlan,
    fetcher: &Arc<Fetcher>,
    states: &HashMap<String, ConditionalState>,
    tz: Tz,
    clock: &Arc<dyn Clock>,
) -> (JoinSet<Fetched>, HashMap<Id, usize>) {
    let mut tasks = JoinSet::new();
    let mut index_of = HashMap::new();
    for (index, source) in plan.sources.iter().enumerate() {
        let fetcher = Arc::clone(fetcher);
        // Validators apply only to the URL they were stored for (stored redacted).
        let state = states
            .get(&source.name)
            .filter(|s| s.url == untrusted::redact_url(&source.spec.url))
            .cloned();
        let source = source.clone();
        let clock = Arc::clone(clock);
        let handle = tasks.spawn(async move {
            let started = clock.now();
            let timer = Instant::now();
            let result = fetch_source(&fetcher, &source, state.as_ref(), tz).await;
            Fetched {
                index,
                started,
                elapsed: timer.elapsed(),
                result,
            }
        });
        index_of.insert(handle.id(), index);
    }
    (tasks, index_of)
}

/// Records one source's fetch and turns it into its outcome and items. A 304 brings back
/// the items remembered from earlier fetches, so a retried run sees what the first saw.
async fn settle<'p>(
    attempt: &Attempt<'p>,
    fetched: Fetched,
) -> (usize, SourceOutcome, Option<SourceBatch<'p>>) {
    let plan = attempt.plan;
    let source = &plan.sources[fetched.index];
    let mut result = fetched.result;
    // A preview leaves the sources' health and validators as the runs left them.
    let recorded = match attempt.is_preview() {
        true => Ok(()),
        false => {
            let record = fetch_record(attempt, source, &fetched.started, fetched.elapsed, &result);
            attempt.store.record_fetch(&record).await
        }
    };
    if let Err(e) = recorded {
        result = Err(SourceError::Store(e));
    }
    let items = match result {
        Ok(SourceFetch::NotModified { filters }) => match remembered_items(attempt, source).await {
            Ok(items) => Ok((
                items,
                0,
                filters,
                SourceOutcome {
                    status: FetchStatus::NotModified,
                    http_status: Some(304),
                    ..outcome_base(source, fetched.elapsed)
                },
            )),
            Err(e) => Err(SourceError::Store(e)),
        },
        Ok(SourceFetch::Items {
            items,
            failed,
            filters,
            status,
            ..
        }) => {
            let outcome = SourceOutcome {
                status: FetchStatus::Ok,
                http_status: Some(status),
                items: items.len(),
                ..outcome_base(source, fetched.elapsed)
            };
            Ok((items, failed, filters, outcome))
        }
        Err(e) => Err(e),
    };
    match items {
        Ok((items, failed, filters, outcome)) => {
            let batch = SourceBatch {
                source,
                filters,
                items,
                fetched_at: fetched.started,
                failed,
            };
            (fetched.index, outcome, Some(batch))
        }
        Err(e) => (
            fetched.index,
            failed_outcome(source, fetched.elapsed, &e),
            None,
        ),
    }
}

fn outcome_base(source: &PlannedSource, elapsed: Duration) -> SourceOutcome {
    SourceOutcome {
        name: source.name.clone(),
        status: FetchStatus::Failed,
        http_status: None,
        items: 0,
        latency_ms: elapsed.as_millis().min(u128::from(u64::MAX)) as u64,
        error_kind: None,
        error: None,
    }
}

fn failed_outcome(source: &PlannedSource, elapsed: Duration, e: &SourceError) -> SourceOutcome {
    let error = untrusted::clean(&e.to_string(), MAX_ERROR_CHARS);
    warn!(source = %source.name, kind = %e.kind(), error = %error, "source failed");
    SourceOutcome {
        http_status: e.status(),
        error_kind: Some(e.kind()),
        error: Some(error),
        ..outcome_base(source, elapsed)
    }
}

/// The fetch-log row of a result (URL redacted, error cleaned).
fn fetch_record<'a>(
    attempt: &'a Attempt<'_>,
    source: &'a PlannedSource,
    started: &DateTime<Utc>,
    elapsed: Duration,
    result: &'a Result<SourceFetch, SourceError>,
) -> FetchRecord<'a> {
    let mut record = FetchRecord {
        report_id: attempt.report_id,
        namespace: &attempt.plan.namespace,
        source: &source.name,
        url: untrusted::redact_url(&source.spec.url),
        started_at: *started,
        latency_ms: elapsed.as_millis().min(i32::MAX as u128) as i32,
        http_status: None,
        items: 0,
        not_modified: false,
        error_kind: None,
        error: None,
        etag: None,
        last_modified: None,
    };
    match result {
        Ok(SourceFetch::Items {
            items,
            status,
            etag,
            last_modified,
            ..
        }) => {
            record.http_status = Some(i32::from(*status));
            record.items = items.len().min(i32::MAX as usize) as i32;
            record.etag = etag.as_deref();
            record.last_modified = last_modified.as_deref();
        }
        Ok(SourceFetch::NotModified { .. }) => {
            record.http_status = Some(304);
            record.not_modified = true;
        }
        Err(e) => {
            record.http_status = e.status().map(i32::from);
            record.error_kind = Some(e.kind());
            record.error = Some(untrusted::clean(&e.to_string(), MAX_ERROR_CHARS));
        }
    }
    record
}

async fn remembered_items(
    attempt: &Attempt<'_>,
    source: &PlannedSource,
) -> Result<Vec<CleanItem>, StoreError> {
    let lookback = chrono::Duration::hours(i64::from(attempt.plan.content.lookback_hours));
    let rows = attempt
        .store
        .recent_articles(
            &attempt.plan.namespace,
            &source.name,
            attempt.lookback_ends_at.0 - lookback,
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|a| CleanItem {
            title: a.title,
            // Canonical when stored; read again as any link is.
            link: canonical_url(&a.canonical_url),
            published: a.published_at,
            summary: a.summary.unwrap_or_default(),
        })
        .collect())
}

/// The request headers of a source: its plain ones and those from Secrets (read from the
/// environment); true when any came from a Secret.
fn request_headers(
    spec: &crate::api::SourceSpec,
) -> Result<(Vec<(String, String)>, bool), SourceError> {
    let mut headers: Vec<(String, String)> = spec
        .fetch
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for h in &spec.fetch.headers_from {
        let value = RunPlan::secret_value(&h.secret_key_ref)
            .map_err(|e| SourceError::Config(format!("header {}: {e}", h.name)))?;
        headers.push((h.name.clone(), value));
    }
    Ok((headers, !spec.fetch.headers_from.is_empty()))
}

async fn fetch_source(
    fetcher: &Fetcher,
    source: &PlannedSource,
    state: Option<&ConditionalState>,
    tz: Tz,
) -> Result<SourceFetch, SourceError> {
    let spec = &source.spec;
    // A filter that cannot compile fails its source, visibly, before anything is fetched.
    let filters = Filters::compile(&spec.filters)
        .map_err(|e| SourceError::Config(format!("spec.filters.{e}")))?;
    let (headers, carries_secrets) = request_headers(spec)?;
    let request = FetchRequest {
        url: spec.url.clone(),
        timeout: Duration::from_secs(u64::from(spec.fetch.timeout_seconds)),
        max_body_bytes: spec.fetch.max_body_bytes,
        headers,
        etag: state.and_then(|s| s.etag.clone()),
        last_modified: state.and_then(|s| s.last_modified.clone()),
        carries_secrets,
    };
    let body = match fetcher.fetch(&request).await? {
        FetchOutcome::NotModified => return Ok(SourceFetch::NotModified { filters }),
        FetchOutcome::Body(b) => b,
    };
    let status = body.status;
    let decoded = decode::decode(
        &body.bytes,
        body.content_type.as_deref(),
        spec.fetch.charset.as_deref(),
    );
    drop(body.bytes);
    let raw = parse_items(spec.kind, source, &decoded.text, &body.final_url, tz).map_err(|e| {
        SourceError::Parse {
            status,
            message: e.0,
        }
    })?;
    let mut failed = 0;
    let items = raw
        .into_iter()
        .take(spec.fetch.max_items as usize)
        .filter_map(|item| {
            let cleaned = isolate(|| extract::clean(item)).ok();
            failed += usize::from(cleaned.is_none());
            cleaned
        })
        .collect();
    Ok(SourceFetch::Items {
        items,
        failed,
        filters,
        status,
        etag: body.etag,
        last_modified: body.last_modified,
    })
}

fn parse_items(
    kind: SourceKind,
    source: &PlannedSource,
    text: &str,
    base: &Url,
    tz: Tz,
) -> Result<Vec<RawItem>, parse::ParseError> {
    let missing = |what: &str| parse::ParseError(format!("kind {what} needs spec.{what}"));
    match kind {
        SourceKind::Feed => parse::parse_feed(text, base),
        SourceKind::Json => parse::parse_json(
            text,
            source.spec.json.as_ref().ok_or_else(|| missing("json"))?,
            base,
            tz,
        ),
        SourceKind::Html => parse::parse_html(
            text,
            source.spec.html.as_ref().ok_or_else(|| missing("html"))?,
            base,
            tz,
        ),
    }
}
