//! A preview: the report of a slot composed as its run would compose it — the same sources,
//! ranking, summaries and templates — and sent to nobody. It is stored in `previews`, never as
//! the day's run: no run row, fetch, step or chosen article of a run is recorded, so the
//! morning run starts from nothing a preview did.

use std::path::PathBuf;

use super::copies::{Copies, ReadableCopy};
use super::report::{self, Composed};
use super::{Attempt, PipelineOptions, RunError};
use crate::delivery::{DeliveryError, DeliveryOptions};
use crate::plan::{PlanError, PlanPurpose, RunPlan};
use crate::run::{Channel, RunOutcome};
use crate::store::{PreviewResult, Store};

/// The longest error kept with a failed preview.
const MAX_ERROR_CHARS: usize = 2000;

/// A finished preview.
pub struct Previewed {
    pub preview_id: i64,
    pub outcome: RunOutcome,
    pub subject: String,
    pub articles: usize,
    /// The previewed recipient's copy, when the plan names one.
    pub copy: Option<ReadableCopy>,
}

/// Composes the plan's preview and stores it; on failure the stored preview says why.
pub async fn preview(
    plan: &RunPlan,
    store: &Store,
    opts: &PipelineOptions,
    console_url: Option<&str>,
) -> Result<Previewed, RunError> {
    let PlanPurpose::Preview { request, recipient } = &plan.purpose else {
        return Err(PlanError::Invalid("this plan is not a preview's".to_string()).into());
    };
    plan.validate()?;
    let (mut attempt, id) =
        report::begin_preview(plan, store, opts, request, recipient.as_deref()).await?;
    match compose(&mut attempt, id, recipient.as_deref(), console_url).await {
        Ok(done) => Ok(done),
        Err(e) => {
            let error = crate::untrusted::clean(&e.to_string(), MAX_ERROR_CHARS);
            // Best effort: the error itself is what the caller must see.
            let _ = store.fail_preview(id, &error, opts.clock.now()).await;
            Err(e)
        }
    }
}

async fn compose(
    attempt: &mut Attempt<'_>,
    id: i64,
    recipient: Option<&str>,
    console_url: Option<&str>,
) -> Result<Previewed, RunError> {
    let mut composed = super::collect_to_compose(attempt).await?;
    composed.console_path = format!("previews/{id}");
    let copy = recipient
        .map(|name| readable_copy(attempt.plan, &composed, name, console_url))
        .transpose()?;
    let (subject, html, text) = match &copy {
        Some(ReadableCopy::Letter {
            subject,
            html,
            text,
        }) => (subject, html, text),
        _ => (&composed.subject, &composed.html, &composed.text),
    };
    let chat = match &copy {
        Some(ReadableCopy::Chat { platform, markdown }) => {
            Some((markdown.as_str(), Channel::from(*platform)))
        }
        _ => None,
    };
    let outcome = &attempt.outcome;
    attempt
        .store
        .finish_preview(
            id,
            &PreviewResult {
                subject,
                html,
                text,
                chat,
                articles: i32::try_from(outcome.articles).unwrap_or(i32::MAX),
                view: serde_json::to_value(&composed.view).unwrap_or_default(),
                outcome: serde_json::to_value(outcome).unwrap_or_default(),
                at: attempt.opts.clock.now(),
            },
        )
        .await?;
    write_outputs(attempt.opts, &composed, copy.as_ref(), outcome)?;
    Ok(Previewed {
        preview_id: id,
        outcome: attempt.outcome.clone(),
        subject: subject.clone(),
        articles: attempt.outcome.articles,
        copy,
    })
}

/// The copy Recipient `name` of the plan would get.
fn readable_copy(
    plan: &RunPlan,
    composed: &Composed,
    name: &str,
    console_url: Option<&str>,
) -> Result<ReadableCopy, RunError> {
    let r = plan
        .recipients
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| PlanError::Invalid(format!("the plan has no Recipient {name}")))?;
    let opts = DeliveryOptions {
        console_url: console_url.map(str::to_string),
        ..DeliveryOptions::default()
    };
    let copies = Copies::new(plan, composed, &opts)?;
    copies
        .readable(r)
        .map_err(|e| DeliveryError::Config(format!("Recipient {name}'s copy: {e}")).into())
}

/// report.html, report.txt (the recipient's copy when previewed as one), message.md for a
/// chat group, and outcome.json, when `--output` asks for them.
fn write_outputs(
    opts: &PipelineOptions,
    composed: &Composed,
    copy: Option<&ReadableCopy>,
    outcome: &RunOutcome,
) -> Result<(), RunError> {
    report::write_outputs(opts, composed, outcome)?;
    let (Some(dir), Some(copy)) = (&opts.output_dir, copy) else {
        return Ok(());
    };
    let files: Vec<(&str, &str)> = match copy {
        ReadableCopy::Letter { html, text, .. } => {
            vec![
                ("report.html", html.as_str()),
                ("report.txt", text.as_str()),
            ]
        }
        ReadableCopy::Chat { markdown, .. } => vec![("message.md", markdown.as_str())],
    };
    for (name, content) in files {
        let path: PathBuf = dir.join(name);
        std::fs::write(&path, content).map_err(|source| RunError::Output { path, source })?;
    }
    Ok(())
}
