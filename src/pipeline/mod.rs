//! The pipeline of one run: collect → extract → compose (→ send), recording everything in
//! PostgreSQL. Decisions live in the pure submodules (`extract`, `near_dup`, `entities`,
//! `canonical`, `compose`); this module is the I/O around them.

pub mod canonical;
pub mod compose;
pub mod decode;
pub mod deliver;
pub mod entities;
pub mod extract;
pub mod fetch;
pub mod guard;
pub mod near_dup;
pub mod parse;
pub mod summarize;
pub mod text;
pub mod window;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use tracing::{info, instrument, warn};
use url::Url;

use crate::api::SourceKind;
use crate::plan::{PlannedSource, RunPlan, secret_env_name};
use crate::store::{
    ArticleInput, ConditionalState, FetchRecord, ReportArticle, RunKey, RunStart, Store, StoreError,
};
use compose::{ComposeError, ReportView, StatsView, Templates};
use extract::{Candidate, CleanItem, ExtractConfig, ExtractStats, Filters, SourceBatch};
use fetch::{FetchConfig, FetchError, FetchOutcome, FetchRequest, Fetcher};
use parse::RawItem;
use summarize::{CallOutcome, CallRecord, Summarizer};

/// Longest extractive summary, in characters.
const EXTRACTIVE_CHARS: usize = 120;
/// Time allowed for all AI summaries of a run.
const SUMMARY_DEADLINE: Duration = Duration::from_secs(90);

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Compose(#[from] ComposeError),
    #[error("cannot start the HTTP client: {0}")]
    Http(FetchError),
    #[error("invalid plan: {0}")]
    Plan(String),
    #[error("cannot write {path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How a run is carried out.
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    pub fetch: FetchConfig,
    /// Directory holding override templates (a mounted ConfigMap), used when the plan names
    /// a template.
    pub template_dir: Option<PathBuf>,
    /// Also write report.html, report.txt and outcome.json here.
    pub output_dir: Option<PathBuf>,
    /// The run's clock at start.
    pub now: DateTime<Utc>,
    /// Rebuild the report even if today's was already composed.
    pub recompose: bool,
}

/// What happened to one source.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SourceOutcome {
    pub name: String,
    /// `ok`, `not-modified` or `failed`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    pub items: usize,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Start and end of a step.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StepOutcome {
    pub step: &'static str,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub ok: bool,
}

/// What the summariser did.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SummarizerOutcome {
    pub provider: String,
    pub model: String,
    pub calls: usize,
    pub ok: usize,
    pub cached: usize,
    pub timeouts: usize,
    pub rate_limited: usize,
    pub errors: usize,
    /// Items that kept their extractive summary.
    pub extractive: usize,
    pub fell_back: bool,
}

/// The record of a run, printed as one JSON line and stored with the report.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunOutcome {
    pub namespace: String,
    pub report: String,
    pub date: String,
    pub report_id: i64,
    pub phase: String,
    pub manual: bool,
    /// The report was composed by an earlier attempt today and reused.
    pub reused: bool,
    pub articles: usize,
    pub recipients: usize,
    pub sources_total: usize,
    pub sources_ok: usize,
    pub sources_not_modified: usize,
    pub sources_failed: usize,
    pub sources: Vec<SourceOutcome>,
    pub extract: ExtractStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summarizer: Option<SummarizerOutcome>,
    pub steps: Vec<StepOutcome>,
    pub notes: Vec<String>,
    /// Deliveries by state after this attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<crate::store::DeliveryCounts>,
    /// Peak resident memory of the process at the end of the run, in KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_kib: Option<u64>,
}

/// Everything after compose needs: the stored report and its view.
pub struct Composed {
    pub report_id: i64,
    pub view: ReportView,
    /// The templates every recipient's copy is rendered with.
    pub templates: Templates,
    pub html: String,
    pub text: String,
    pub subject: String,
}

/// Runs collect, extract and compose for a plan. Sources that fail are recorded and
/// skipped; only database and template failures fail the run.
#[instrument(skip_all, fields(report = %plan.report, date = %plan.slot.date))]
pub async fn collect_and_compose(
    plan: &RunPlan,
    store: &Store,
    opts: &PipelineOptions,
) -> Result<(RunOutcome, Composed), PipelineError> {
    let tz: Tz = crate::schedule::parse_time_zone(&plan.time_zone)
        .map_err(|e| PipelineError::Plan(e.to_string()))?;
    let key = RunKey {
        namespace: &plan.namespace,
        report: &plan.report,
        date: plan.slot.date,
    };
    let plan_json = serde_json::to_value(plan).map_err(|e| PipelineError::Plan(e.to_string()))?;
    let row = store
        .begin_run(&RunStart {
            key: key.clone(),
            time_zone: &plan.time_zone,
            scheduled_for: plan.slot.scheduled_for.to_utc(),
            manual: plan.slot.manual,
            plan: plan_json,
        })
        .await?;
    let mut outcome = RunOutcome {
        namespace: plan.namespace.clone(),
        report: plan.report.clone(),
        date: plan.slot.date.to_string(),
        report_id: row.id,
        phase: row.phase.clone(),
        manual: plan.slot.manual,
        reused: false,
        articles: 0,
        recipients: plan.recipients.len(),
        sources_total: plan.sources.len(),
        sources_ok: 0,
        sources_not_modified: 0,
        sources_failed: 0,
        sources: Vec::new(),
        extract: ExtractStats::default(),
        summarizer: None,
        steps: Vec::new(),
        notes: Vec::new(),
        peak_rss_kib: None,
        delivery: None,
    };
    if !plan.excluded_recipients.is_empty() {
        outcome.notes.push(format!(
            "{} recipient(s) left out as blacklisted: {}",
            plan.excluded_recipients.len(),
            plan.excluded_recipients.join(", ")
        ));
    }

    // A report already composed today is the one every recipient gets, whichever attempt
    // sends it.
    if !opts.recompose
        && let (Some(html), Some(text), Some(subject), Some(view)) =
            (&row.html, &row.text, &row.subject, &row.view)
        && let Ok(view) = serde_json::from_value::<ReportView>(view.clone())
    {
        info!(
            report_id = row.id,
            "reusing the report composed earlier today"
        );
        outcome.reused = true;
        outcome.articles = row.article_count.max(0) as usize;
        outcome
            .notes
            .push("reused the report composed by an earlier attempt today".to_string());
        let composed = Composed {
            report_id: row.id,
            view,
            templates: load_templates(plan, opts, &mut outcome.notes)?,
            html: html.clone(),
            text: text.clone(),
            subject: subject.clone(),
        };
        write_outputs(opts, &composed, &outcome)?;
        return Ok((outcome, composed));
    }

    // Collect.
    store.set_phase(row.id, "Collecting").await?;
    let started = Utc::now();
    let batches = collect(plan, store, opts, row.id, tz, &mut outcome).await?;
    step(store, row.id, &mut outcome, "collect", started, true).await?;

    // Extract.
    let started = Utc::now();
    let report_filters = Filters::compile(&plan.content.filters)
        .map_err(|e| PipelineError::Plan(format!("content.filters: {e}")))?;
    let cfg = ExtractConfig {
        now: opts.now,
        lookback_hours: plan.content.lookback_hours,
        report_filters,
        watchlist: entities::watch_entries(&plan.content.watchlist),
        max_items: plan.content.max_items as usize,
        max_items_per_source: plan.content.max_items_per_source as usize,
    };
    let source_batches: Vec<SourceBatch<'_>> = batches
        .into_iter()
        .map(|(source, items, fetched_at)| SourceBatch {
            source,
            items,
            fetched_at,
        })
        .collect();
    let mut stats = ExtractStats::default();
    let clock = Instant::now();
    let cands = extract::candidates(source_batches, &cfg, &mut stats);
    let t_candidates = clock.elapsed();
    let hashes: Vec<Vec<u8>> = cands
        .iter()
        .flat_map(|c| [c.url_hash.to_vec(), c.content_hash.to_vec()])
        .collect();
    let seen: HashSet<[u8; 32]> = store
        .reported_before(&plan.namespace, &plan.report, plan.slot.date, &hashes)
        .await?
        .into_iter()
        .filter_map(|h| h.try_into().ok())
        .collect();
    let t_seen = clock.elapsed();
    // Storing every candidate (database) and choosing among them (CPU) run side by side.
    let remember = tokio::spawn(remember_articles(
        store.clone(),
        article_rows(&plan.namespace, &cands),
    ));
    let select_cfg = cfg.clone();
    let (selected, stats) = tokio::task::spawn_blocking(move || {
        let selected = extract::select(cands, &seen, &select_cfg, &mut stats);
        (selected, stats)
    })
    .await
    .map_err(|e| PipelineError::Plan(format!("selection task failed: {e}")))?;
    let t_select = clock.elapsed();
    let article_ids = remember
        .await
        .map_err(|e| PipelineError::Plan(format!("article task failed: {e}")))??;
    tracing::debug!(
        candidates_ms = t_candidates.as_millis() as u64,
        reported_before_ms = (t_seen - t_candidates).as_millis() as u64,
        select_ms = (t_select - t_seen).as_millis() as u64,
        remember_wait_ms = (clock.elapsed() - t_select).as_millis() as u64,
        "extract timings"
    );
    let order = extract::section_order(&selected, &plan.content.section_order);
    let chosen: Vec<ReportArticle> = selected
        .iter()
        .enumerate()
        .filter_map(|(rank, c)| {
            Some(ReportArticle {
                article_id: *article_ids.get(&c.url_hash)?,
                rank: rank as i32 + 1,
                section: c.category.clone(),
                score: c.score,
                corroborated_by: serde_json::json!(c.corroborated_by),
            })
        })
        .collect();
    store.save_report_articles(row.id, &chosen).await?;
    outcome.extract = stats;
    outcome.articles = selected.len();
    step(store, row.id, &mut outcome, "extract", started, true).await?;
    info!(
        selected = selected.len(),
        sections = order.len(),
        "extraction done"
    );

    // Summaries.
    let started = Utc::now();
    let (summaries, overview) = summarise(
        plan,
        &opts.fetch.policy,
        store,
        row.id,
        &selected,
        &mut outcome,
    )
    .await?;
    step(store, row.id, &mut outcome, "summarize", started, true).await?;

    // Compose.
    store.set_phase(row.id, "Composing").await?;
    let started = Utc::now();
    let templates = load_templates(plan, opts, &mut outcome.notes)?;
    let view = ReportView::build(
        &plan.title,
        plan.slot.date,
        tz,
        opts.now,
        &selected,
        &summaries,
        overview,
        &plan.content.section_order,
        StatsView {
            sources_total: outcome.sources_total,
            sources_ok: outcome.sources_ok + outcome.sources_not_modified,
            items_considered: outcome.extract.raw_items,
            items_selected: selected.len(),
        },
        report_notes(&outcome),
    );
    let (html, text) = templates.render(&view)?;
    let subject = view.subject();
    store
        .save_composed(
            row.id,
            &crate::store::ComposedReport {
                title: &plan.title,
                subject: &subject,
                html: &html,
                text: &text,
                articles: selected.len() as i32,
                recipients: plan.recipients.len() as i32,
                view: serde_json::to_value(&view).unwrap_or_default(),
            },
        )
        .await?;
    step(store, row.id, &mut outcome, "compose", started, true).await?;
    outcome.phase = "Composing".to_string();
    let composed = Composed {
        report_id: row.id,
        view,
        templates,
        html,
        text,
        subject,
    };
    write_outputs(opts, &composed, &outcome)?;
    Ok((outcome, composed))
}

/// The report's templates: the ConfigMap's when the plan names one and it is mounted.
fn load_templates(
    plan: &RunPlan,
    opts: &PipelineOptions,
    notes: &mut Vec<String>,
) -> Result<Templates, ComposeError> {
    match (&plan.content.template, &opts.template_dir) {
        (Some(t), Some(dir)) => Templates::from_dir(dir, &t.html_key, &t.text_key),
        (Some(t), None) => {
            notes.push(format!(
                "template ConfigMap {} is not mounted; the built-in template was used",
                t.config_map_name
            ));
            Templates::builtin()
        }
        (None, _) => Templates::builtin(),
    }
}

/// Why a run did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Delivery(#[from] deliver::DeliveryError),
}

impl RunError {
    /// A later attempt may succeed (the database or mail server may come back).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Pipeline(PipelineError::Store(_)) => true,
            Self::Delivery(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// The phase a run ends in, from its delivery counts.
pub fn final_phase(c: &crate::store::DeliveryCounts) -> &'static str {
    let undelivered = c.pending + c.deferred + c.failed + c.bounced + c.uncertain;
    match (c.sent, undelivered) {
        (_, 0) => "Succeeded",
        (0, _) => "Failed",
        _ => "PartiallyDelivered",
    }
}

/// The whole run: collect, extract, compose, then deliver (unless `send` is false). The
/// outcome is stored with the report.
pub async fn run(
    plan: &RunPlan,
    store: &Store,
    opts: &PipelineOptions,
    delivery: Option<&deliver::DeliveryOptions>,
) -> Result<RunOutcome, RunError> {
    let (mut outcome, composed) = collect_and_compose(plan, store, opts).await?;
    let Some(delivery) = delivery else {
        store
            .finish_run(
                composed.report_id,
                "Composing",
                &serde_json::to_value(&outcome).unwrap_or_default(),
                None,
            )
            .await
            .map_err(PipelineError::from)?;
        return Ok(outcome);
    };
    store
        .set_phase(composed.report_id, "Sending")
        .await
        .map_err(PipelineError::from)?;
    let started = Utc::now();
    let result = deliver::deliver(
        plan,
        store,
        composed.report_id,
        &composed.view,
        &composed.subject,
        &composed.templates,
        delivery,
    )
    .await;
    match result {
        Ok(counts) => {
            step(
                store,
                composed.report_id,
                &mut outcome,
                "send",
                started,
                true,
            )
            .await
            .map_err(PipelineError::from)?;
            if counts.resent_after_interruption > 0 {
                outcome.notes.push(format!(
                    "{} delivery(ies) interrupted by an earlier attempt were resent with the same Message-ID",
                    counts.resent_after_interruption
                ));
            }
            outcome.phase = final_phase(&counts).to_string();
            outcome.delivery = Some(counts);
            store
                .finish_run(
                    composed.report_id,
                    &outcome.phase,
                    &serde_json::to_value(&outcome).unwrap_or_default(),
                    None,
                )
                .await
                .map_err(PipelineError::from)?;
            Ok(outcome)
        }
        Err(e) => {
            let message = e.to_string();
            outcome.phase = "Failed".to_string();
            outcome.delivery = store.delivery_counts(composed.report_id).await.ok();
            // Best effort: the error itself is what the caller must see.
            let _ = store
                .finish_run(
                    composed.report_id,
                    "Failed",
                    &serde_json::to_value(&outcome).unwrap_or_default(),
                    Some(&message),
                )
                .await;
            Err(e.into())
        }
    }
}

/// Notes a reader of the report should see (failed sources, summary fallback).
fn report_notes(outcome: &RunOutcome) -> Vec<String> {
    let mut notes = Vec::new();
    if outcome.sources_failed > 0 {
        let failed: Vec<&str> = outcome
            .sources
            .iter()
            .filter(|s| s.status == "failed")
            .map(|s| s.name.as_str())
            .collect();
        notes.push(format!(
            "{} 个来源本次未能获取：{}",
            failed.len(),
            failed.join("、")
        ));
    }
    if outcome.summarizer.as_ref().is_some_and(|s| s.fell_back) {
        notes.push("部分摘要由原文节选生成（AI 摘要服务超时或不可用）。".to_string());
    }
    notes
}

async fn step(
    store: &Store,
    report_id: i64,
    outcome: &mut RunOutcome,
    name: &'static str,
    started: DateTime<Utc>,
    ok: bool,
) -> Result<(), StoreError> {
    let finished = Utc::now();
    store
        .record_step(report_id, name, started, finished, ok, None)
        .await?;
    outcome.steps.push(StepOutcome {
        step: name,
        started,
        finished,
        ok,
    });
    Ok(())
}

type Batch<'p> = (&'p PlannedSource, Vec<CleanItem>, DateTime<Utc>);

/// Fetches and parses every source concurrently; one outcome per source, recorded.
async fn collect<'p>(
    plan: &'p RunPlan,
    store: &Store,
    opts: &PipelineOptions,
    report_id: i64,
    tz: Tz,
    outcome: &mut RunOutcome,
) -> Result<Vec<Batch<'p>>, PipelineError> {
    let fetcher = Arc::new(Fetcher::new(opts.fetch.clone()).map_err(PipelineError::Http)?);
    let states = store.conditional_states(&plan.namespace).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for (index, source) in plan.sources.iter().enumerate() {
        let fetcher = Arc::clone(&fetcher);
        let state = states
            .get(&source.name)
            .filter(|s| s.url == source.spec.url)
            .cloned();
        let source = source.clone();
        tasks.spawn(async move {
            let started = Utc::now();
            let clock = Instant::now();
            let result = fetch_source(&fetcher, &source, state.as_ref(), tz).await;
            (index, started, clock.elapsed(), result)
        });
    }
    let lookback_start = opts.now - chrono::Duration::hours(i64::from(plan.content.lookback_hours));
    let mut batches = Vec::new();
    let mut source_outcomes = Vec::new();
    // Each outcome is recorded as soon as its source is done, while slower ones still run.
    while let Some(joined) = tasks.join_next().await {
        let (index, started, elapsed, result) = match joined {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "a fetch task failed");
                continue;
            }
        };
        let source = &plan.sources[index];
        let latency_ms = elapsed.as_millis() as u64;
        let mut record = FetchRecord {
            report_id: Some(report_id),
            namespace: &plan.namespace,
            source: &source.name,
            url: &source.spec.url,
            started_at: started,
            latency_ms: latency_ms.min(i32::MAX as u64) as i32,
            http_status: None,
            items: 0,
            not_modified: false,
            error_kind: None,
            error: None,
            etag: None,
            last_modified: None,
        };
        let source_outcome = match &result {
            Ok(SourceFetch::Items {
                items,
                status,
                etag,
                last_modified,
            }) => {
                record.http_status = Some(i32::from(*status));
                record.items = items.len() as i32;
                record.etag = etag.as_deref();
                record.last_modified = last_modified.as_deref();
                outcome.sources_ok += 1;
                SourceOutcome {
                    name: source.name.clone(),
                    status: "ok",
                    http_status: Some(*status),
                    items: items.len(),
                    latency_ms,
                    error_kind: None,
                    error: None,
                }
            }
            Ok(SourceFetch::NotModified) => {
                record.http_status = Some(304);
                record.not_modified = true;
                outcome.sources_not_modified += 1;
                SourceOutcome {
                    name: source.name.clone(),
                    status: "not-modified",
                    http_status: Some(304),
                    items: 0,
                    latency_ms,
                    error_kind: None,
                    error: None,
                }
            }
            Err(e) => {
                record.http_status = e.status().map(i32::from);
                record.error_kind = Some(e.kind());
                outcome.sources_failed += 1;
                warn!(source = %source.name, kind = e.kind(), error = %e, "source failed");
                SourceOutcome {
                    name: source.name.clone(),
                    status: "failed",
                    http_status: e.status(),
                    items: 0,
                    latency_ms,
                    error_kind: Some(e.kind()),
                    error: Some(e.to_string()),
                }
            }
        };
        let error_text = source_outcome.error.clone();
        record.error = error_text.as_deref();
        store.record_fetch(&record).await?;
        source_outcomes.push((index, source_outcome));
        match result {
            Ok(SourceFetch::Items { items, .. }) => batches.push((index, (source, items, started))),
            Ok(SourceFetch::NotModified) => {
                // Nothing new: the items remembered from earlier fetches stand in, so a
                // retried run sees what the first attempt saw.
                let remembered = store
                    .recent_articles(&plan.namespace, &source.name, lookback_start)
                    .await?
                    .into_iter()
                    .map(|a| CleanItem {
                        title: a.title,
                        link: Some(a.canonical_url),
                        published: a.published_at,
                        summary: a.summary.unwrap_or_default(),
                    })
                    .collect();
                batches.push((index, (source, remembered, started)));
            }
            Err(_) => {}
        }
    }
    source_outcomes.sort_by_key(|(i, _)| *i);
    outcome.sources = source_outcomes.into_iter().map(|(_, o)| o).collect();
    batches.sort_by_key(|(i, _)| *i);
    let batches: Vec<Batch<'p>> = batches.into_iter().map(|(_, b)| b).collect();
    info!(
        ok = outcome.sources_ok,
        not_modified = outcome.sources_not_modified,
        failed = outcome.sources_failed,
        "collect done"
    );
    Ok(batches)
}

/// A source's items, or "not modified".
#[derive(Debug)]
enum SourceFetch {
    Items {
        items: Vec<CleanItem>,
        status: u16,
        etag: Option<String>,
        last_modified: Option<String>,
    },
    NotModified,
}

/// A failure of one source: a fetch error, or content that would not parse.
#[derive(Debug, thiserror::Error)]
enum SourceError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{message}")]
    Parse { status: u16, message: String },
    #[error("{0}")]
    Config(String),
}

impl SourceError {
    fn kind(&self) -> &'static str {
        match self {
            Self::Fetch(e) => e.kind(),
            Self::Parse { .. } => "parse",
            Self::Config(_) => "config",
        }
    }

    fn status(&self) -> Option<u16> {
        match self {
            Self::Fetch(e) => e.status(),
            Self::Parse { status, .. } => Some(*status),
            Self::Config(_) => None,
        }
    }
}

async fn fetch_source(
    fetcher: &Fetcher,
    source: &PlannedSource,
    state: Option<&ConditionalState>,
    tz: Tz,
) -> Result<SourceFetch, SourceError> {
    let spec = &source.spec;
    let mut headers: Vec<(String, String)> = spec
        .fetch
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for h in &spec.fetch.headers_from {
        let env = secret_env_name(&h.secret_key_ref.name, &h.secret_key_ref.key);
        let value = std::env::var(&env).map_err(|_| {
            SourceError::Config(format!(
                "header {} needs the environment variable {env} (from Secret {} key {}), which is not set",
                h.name, h.secret_key_ref.name, h.secret_key_ref.key
            ))
        })?;
        headers.push((h.name.clone(), value));
    }
    let request = FetchRequest {
        url: spec.url.clone(),
        timeout: Duration::from_secs(u64::from(spec.fetch.timeout_seconds)),
        max_body_bytes: spec.fetch.max_body_bytes,
        headers,
        etag: state.and_then(|s| s.etag.clone()),
        last_modified: state.and_then(|s| s.last_modified.clone()),
    };
    let body = match fetcher.fetch(&request).await? {
        FetchOutcome::NotModified => return Ok(SourceFetch::NotModified),
        FetchOutcome::Body(b) => b,
    };
    let status = body.status;
    let decoded = decode::decode(
        &body.bytes,
        body.content_type.as_deref(),
        spec.fetch.charset.as_deref(),
    );
    drop(body.bytes);
    let parse_err = |e: parse::ParseError| SourceError::Parse {
        status,
        message: e.0,
    };
    let items = parse_items(spec.kind, source, &decoded.text, &body.final_url, tz)
        .map_err(parse_err)?
        .into_iter()
        .take(spec.fetch.max_items as usize)
        .map(extract::clean)
        .collect();
    Ok(SourceFetch::Items {
        items,
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

/// Stores every candidate (so a later "not modified" can stand for them); returns article ids
/// by URL hash.
async fn remember_articles(
    store: Store,
    rows: Vec<ArticleInput>,
) -> Result<std::collections::HashMap<[u8; 32], i64>, StoreError> {
    let ids = store.upsert_articles(&rows).await?;
    Ok(ids
        .into_iter()
        .filter_map(|(hash, id)| Some((<[u8; 32]>::try_from(hash.as_slice()).ok()?, id)))
        .collect())
}

/// The extractive summary of an item: the start of its text, unless that only repeats the
/// title.
fn extractive(c: &Candidate) -> String {
    let summary = c.summary.trim();
    if summary.is_empty()
        || text::normalise_for_matching(summary) == text::normalise_for_matching(&c.title)
    {
        return String::new();
    }
    text::truncate(summary, EXTRACTIVE_CHARS)
}

async fn summarise(
    plan: &RunPlan,
    policy: &guard::NetworkPolicy,
    store: &Store,
    report_id: i64,
    selected: &[Candidate],
    outcome: &mut RunOutcome,
) -> Result<(Vec<String>, Option<String>), StoreError> {
    let mut summaries: Vec<String> = selected.iter().map(extractive).collect();
    let Some(spec) = &plan.content.summarizer else {
        return Ok((summaries, None));
    };
    let api_key = match &spec.api_key_secret_ref {
        None => None,
        Some(r) => match RunPlan::secret_value(r) {
            Some(k) => Some(k),
            None => {
                outcome.notes.push(format!(
                    "summarizer API key variable {} is not set; extractive summaries were used",
                    secret_env_name(&r.name, &r.key)
                ));
                let mut s = SummarizerOutcome {
                    model: spec.model.clone(),
                    extractive: selected.len(),
                    fell_back: true,
                    ..Default::default()
                };
                s.provider = url::Url::parse(&spec.endpoint)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_string))
                    .unwrap_or_default();
                outcome.summarizer = Some(s);
                return Ok((summaries, None));
            }
        },
    };
    let summarizer = match Summarizer::new(spec, api_key, policy.clone()) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            outcome.notes.push(format!(
                "summarizer unavailable ({e}); extractive summaries were used"
            ));
            outcome.summarizer = Some(SummarizerOutcome {
                model: spec.model.clone(),
                extractive: selected.len(),
                fell_back: true,
                ..Default::default()
            });
            return Ok((summaries, None));
        }
    };
    let mut stats = SummarizerOutcome {
        provider: summarizer.provider().to_string(),
        model: summarizer.model().to_string(),
        ..Default::default()
    };
    let hashes: Vec<Vec<u8>> = selected.iter().map(|c| c.content_hash.to_vec()).collect();
    let cached = store
        .cached_summaries(summarizer.provider(), summarizer.model(), &hashes)
        .await?;
    let mut records: Vec<CallRecord> = Vec::new();

    let top: Vec<String> = selected
        .iter()
        .take(compose::HIGHLIGHTS * 2)
        .map(|c| c.title.to_string())
        .collect();
    let overview = match summarizer.overview(&top).await {
        Some(rec) => {
            let text = match &rec.outcome {
                CallOutcome::Ok(t) => Some(t.clone()),
                _ => None,
            };
            records.push(rec);
            text
        }
        None => None,
    };

    let mut to_call = Vec::new();
    let mut call_index = Vec::new();
    for (i, c) in selected.iter().enumerate() {
        match cached.get(c.content_hash.as_slice()) {
            Some(s) => {
                summaries[i] = s.clone();
                stats.cached += 1;
            }
            None => {
                to_call.push((c.title.to_string(), c.summary.to_string()));
                call_index.push(i);
            }
        }
    }
    let results = summarizer
        .summarise_items(to_call, Instant::now() + SUMMARY_DEADLINE)
        .await;
    for (k, &i) in call_index.iter().enumerate() {
        match results.get(k).cloned().flatten() {
            Some(rec) => {
                if let CallOutcome::Ok(text) = &rec.outcome {
                    summaries[i] = text.clone();
                    store
                        .store_summary(
                            &selected[i].content_hash,
                            summarizer.provider(),
                            summarizer.model(),
                            text,
                        )
                        .await?;
                } else {
                    stats.extractive += 1;
                }
                records.push(rec);
            }
            None => stats.extractive += 1,
        }
    }
    for rec in &records {
        stats.calls += 1;
        match &rec.outcome {
            CallOutcome::Ok(_) => stats.ok += 1,
            CallOutcome::Timeout => stats.timeouts += 1,
            CallOutcome::RateLimited => stats.rate_limited += 1,
            CallOutcome::Error(e) => {
                warn!(error = %e, "summarizer call failed");
                stats.errors += 1
            }
        }
        store
            .record_provider_call(&crate::store::ProviderCall {
                report_id: Some(report_id),
                provider: summarizer.provider(),
                model: summarizer.model(),
                purpose: rec.purpose,
                outcome: rec.outcome.kind(),
                latency_ms: rec.latency.as_millis().min(i32::MAX as u128) as i32,
                http_status: rec.http_status.map(i32::from),
            })
            .await?;
    }
    stats.fell_back = stats.timeouts + stats.rate_limited + stats.errors > 0
        || summarizer.breaker_open()
        || stats.extractive > 0;
    if stats.fell_back {
        outcome.notes.push(format!(
            "AI summaries: {} from the model, {} cached, {} extractive ({} timeouts, {} rate-limited, {} errors)",
            stats.ok, stats.cached, stats.extractive, stats.timeouts, stats.rate_limited, stats.errors
        ));
    }
    outcome.summarizer = Some(stats);
    Ok((summaries, overview))
}

fn write_outputs(
    opts: &PipelineOptions,
    composed: &Composed,
    outcome: &RunOutcome,
) -> Result<(), PipelineError> {
    let Some(dir) = &opts.output_dir else {
        return Ok(());
    };
    let write = |name: &str, content: &str| {
        let path = dir.join(name);
        std::fs::write(&path, content).map_err(|source| PipelineError::Output { path, source })
    };
    std::fs::create_dir_all(dir).map_err(|source| PipelineError::Output {
        path: dir.clone(),
        source,
    })?;
    write("report.html", &composed.html)?;
    write("report.txt", &composed.text)?;
    let json = serde_json::to_string_pretty(outcome).unwrap_or_default();
    write("outcome.json", &json)
}
