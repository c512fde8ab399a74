//! The pipeline of one run: collect → extract → summarise → compose (→ send), recording
//! everything in PostgreSQL. This module is the orchestrator only: each step lives in its own
//! module (`collect`, `selection`, `summarize`, `report`, `deliver`), decisions in the pure
//! ones (`extract`, `near_dup`, `entities`, `canonical`, `compose`), and the run's vocabulary
//! (phases, outcomes, exit codes) in `crate::run`.

#![forbid(unsafe_code)]

// The core's modules, reachable as `crate::api` and so on from every module here.
use finrep_core::{
    api, build, clock, guard, jsonpath, matching, plan, run, schedule, store, telemetry,
    text_layout, tls, unsubscribe, untrusted, window,
};
use finrep_delivery as delivery;

pub mod canonical;
pub mod cli;
pub mod collect;
pub mod compose;
pub mod copies;
pub mod decode;
pub mod entities;
pub mod extract;
pub mod fetch;
pub mod grounding;
pub mod isolate;
pub mod near_dup;
pub mod parse;
pub mod preview;
pub mod report;
pub mod selection;
mod simple_markup;
pub mod summarize;
pub mod syndication;
pub mod test_send;
pub mod text;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tracing::instrument;

use crate::delivery::{self as deliver, DeliveryError, DeliveryOptions};
use crate::plan::{LookbackEnd, PlanError, RunPlan};
use crate::run::{ErrorCategory, RunOutcome, RunPhase, Step};
use crate::store::{RunLock, Store, StoreError};
use collect::CollectError;
use compose::ComposeError;
use fetch::FetchConfig;
pub use report::Composed;
use selection::SelectionError;
use summarize::SummarizeError;

/// How a run is carried out.
#[derive(Clone)]
pub struct PipelineOptions {
    pub fetch: FetchConfig,
    /// Directory holding override templates (a mounted ConfigMap), used when the plan names
    /// a template.
    pub template_dir: Option<PathBuf>,
    /// Also write report.html, report.txt and outcome.json here.
    pub output_dir: Option<PathBuf>,
    /// The run's clock at start (a plan of an earlier day looks back from its slot instead).
    pub now: DateTime<Utc>,
    /// The clock every time the run records is read from (`--clock-file` or the wall clock).
    pub clock: std::sync::Arc<dyn crate::clock::Clock>,
    /// Rebuild the report even if today's was already composed.
    pub recompose: bool,
    /// How long to wait for another attempt at the same run to finish before giving up
    /// (`RunError::Busy`, exit 75).
    pub lock_wait: std::time::Duration,
}

/// One attempt at a day's run, as its steps share it: the plan, where things are recorded,
/// and the outcome so far.
pub struct Attempt<'p> {
    pub plan: &'p RunPlan,
    pub store: &'p Store,
    pub opts: &'p PipelineOptions,
    pub tz: Tz,
    /// Where the lookback window ends: the run's start, or the slot of an earlier day's run.
    pub lookback_ends_at: (DateTime<Utc>, LookbackEnd),
    /// The day's report row; `None` for a preview, which records nothing against a run (no
    /// fetch, step, phase or chosen article): it must never pass for the day's report.
    pub report_id: Option<i64>,
    pub outcome: RunOutcome,
    /// This attempt's hold on the run: no other process works on it meanwhile (`None` for a
    /// preview, which shares nothing with the run).
    pub lock: Option<RunLock>,
}

impl Attempt<'_> {
    /// A preview: collects, composes and records nothing of a run.
    pub fn is_preview(&self) -> bool {
        self.report_id.is_none()
    }
}

/// Why a run did not finish: one variant per step, each with its own error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid plan: {0}")]
    Plan(#[from] PlanError),
    #[error("recording the run failed: {0}")]
    Record(#[from] StoreError),
    #[error("collect: {0}")]
    Collect(#[from] CollectError),
    #[error("extract: {0}")]
    Selection(#[from] SelectionError),
    #[error("summarize: {0}")]
    Summarize(#[from] SummarizeError),
    #[error("compose: {0}")]
    Compose(#[from] ComposeError),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    #[error(
        "another attempt at this run is in progress ({holder}); this one exits so that nobody gets two copies, and may be retried once that one is done"
    )]
    Busy { holder: crate::store::LockHolder },
    #[error("cannot write {path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl RunError {
    pub fn category(&self) -> ErrorCategory {
        match self {
            Self::Plan(_) | Self::Compose(_) => ErrorCategory::Config,
            Self::Record(_) => ErrorCategory::Database,
            Self::Collect(e) => e.category(),
            Self::Selection(e) => e.category(),
            Self::Summarize(e) => e.category(),
            Self::Delivery(e) => e.category(),
            Self::Output { .. } => ErrorCategory::Io,
            Self::Busy { .. } => ErrorCategory::Busy,
        }
    }

    /// A later attempt may succeed (the database or mail server may come back).
    pub fn is_transient(&self) -> bool {
        match self.category() {
            ErrorCategory::Database | ErrorCategory::Network | ErrorCategory::Busy => true,
            ErrorCategory::Config | ErrorCategory::Io | ErrorCategory::Internal => false,
        }
    }
}

/// The whole run: collect, extract, summarise, compose, then deliver (unless `delivery` is
/// `None`). The outcome is stored with the report.
#[instrument(skip_all, fields(report = %plan.report, date = %plan.slot.date))]
pub async fn run(
    plan: &RunPlan,
    store: &Store,
    opts: &PipelineOptions,
    delivery: Option<&DeliveryOptions>,
) -> Result<RunOutcome, RunError> {
    let (mut attempt, composed) = compose_today(plan, store, opts).await?;
    match delivery {
        Some(delivery) => send(&mut attempt, &composed, delivery).await?,
        None => report::finish(&attempt, None).await?,
    }
    Ok(attempt.outcome)
}

/// Collect, extract, summarise and compose — or reuse what an earlier attempt composed today.
/// Sources that fail are recorded and skipped; only database and template failures fail the
/// run.
pub async fn collect_and_compose(
    plan: &RunPlan,
    store: &Store,
    opts: &PipelineOptions,
) -> Result<(RunOutcome, Composed), RunError> {
    let (attempt, composed) = compose_today(plan, store, opts).await?;
    Ok((attempt.outcome, composed))
}

async fn compose_today<'p>(
    plan: &'p RunPlan,
    store: &'p Store,
    opts: &'p PipelineOptions,
) -> Result<(Attempt<'p>, Composed), RunError> {
    plan.validate()?;
    let (mut attempt, row) = report::begin(plan, store, opts).await?;
    if let Some(composed) = report::reuse(&mut attempt, &row)? {
        report::write_outputs(opts, &composed, &attempt.outcome)?;
        return Ok((attempt, composed));
    }
    store.set_phase(row.id, RunPhase::Collecting).await?;
    let composed = collect_to_compose(&mut attempt).await?;
    report::write_outputs(opts, &composed, &attempt.outcome)?;
    Ok((attempt, composed))
}

/// Collect, extract, summarise and compose, each step timed.
pub(crate) async fn collect_to_compose(attempt: &mut Attempt<'_>) -> Result<Composed, RunError> {
    let clock = std::sync::Arc::clone(&attempt.opts.clock);
    let started = clock.now();
    let batches = collect::collect(attempt).await?;
    report::record_step(attempt, Step::Collect, started).await?;
    let started = clock.now();
    let selected = selection::select(attempt, batches).await?;
    report::record_step(attempt, Step::Extract, started).await?;
    let started = clock.now();
    let summaries = summarize::summarise(attempt, &selected).await?;
    report::record_step(attempt, Step::Summarize, started).await?;
    let started = clock.now();
    let composed = report::compose(attempt, &selected, summaries).await?;
    report::record_step(attempt, Step::Compose, started).await?;
    Ok(composed)
}

/// Delivers the composed report and records the phase it ends in.
async fn send(
    attempt: &mut Attempt<'_>,
    composed: &Composed,
    delivery: &DeliveryOptions,
) -> Result<(), RunError> {
    let store = attempt.store;
    store
        .set_phase(composed.report_id, RunPhase::Sending)
        .await?;
    let started = delivery.clock.now();
    let delivered = match copies::Copies::new(attempt.plan, composed, delivery) {
        Ok(copies) => {
            deliver::deliver(attempt.plan, store, composed.report_id, &copies, delivery).await
        }
        Err(e) => Err(e),
    };
    match delivered {
        Ok(counts) => {
            report::record_step(attempt, Step::Send, started).await?;
            if counts.resent_after_interruption > 0 {
                attempt.outcome.notes.push(format!(
                    "{} delivery(ies) interrupted by an earlier attempt were resent with the same Message-ID",
                    counts.resent_after_interruption
                ));
            }
            attempt.outcome.phase = counts.final_phase();
            attempt.outcome.delivery = Some(counts);
            report::finish(attempt, None).await?;
            Ok(())
        }
        Err(e) => {
            attempt.outcome.phase = RunPhase::Failed;
            attempt.outcome.delivery = store.delivery_counts(composed.report_id).await.ok();
            // Best effort: the error itself is what the caller must see.
            let _ = report::finish(attempt, Some(&e.to_string())).await;
            Err(e.into())
        }
    }
}
