//! The day's report as stored: begun (or resumed) by every attempt of a run, reused when an
//! earlier attempt already composed it, composed and saved, and finished with the run's
//! phase and outcome. Also the files `--output` asks for.

use std::path::PathBuf;

use chrono::Utc;
use tracing::info;

use super::compose::{ComposeError, ReportView, StatsView, Templates};
use super::extract::Candidate;
use super::summarize::Summaries;
use super::{Attempt, PipelineOptions, RunError};
use crate::delivery::chat::ChatTemplates;
use crate::plan::RunPlan;
use crate::run::{RunOutcome, RunPhase, Step};
use crate::store::{ComposedReport, PreviewStart, ReportRow, RunKey, RunStart, Store, StoreError};

/// Everything after compose needs: the stored report and its view.
pub struct Composed {
    pub report_id: i64,
    /// Where the console shows it: `reports/<id>`, or `previews/<id>` for a preview.
    pub console_path: String,
    pub view: ReportView,
    /// The templates every recipient's copy is rendered with.
    pub templates: Templates,
    /// The templates of chat-group messages.
    pub chat_templates: ChatTemplates,
    pub html: String,
    pub text: String,
    pub subject: String,
}

/// Creates or resumes the day's report row; the attempt starts from it.
pub(crate) async fn begin<'p>(
    plan: &'p RunPlan,
    store: &'p Store,
    opts: &'p PipelineOptions,
) -> Result<(Attempt<'p>, ReportRow), RunError> {
    let tz = crate::schedule::parse_time_zone(&plan.time_zone)
        .map_err(|e| RunError::Plan(crate::plan::PlanError::Invalid(e.to_string())))?;
    // The report row keeps the plan without the credentials a source URL or header carries.
    let plan_json = serde_json::to_value(plan.redacted())
        .map_err(|e| RunError::Plan(crate::plan::PlanError::Invalid(e.to_string())))?;
    let row = store
        .begin_run(&RunStart {
            key: RunKey {
                namespace: &plan.namespace,
                report: &plan.report,
                date: plan.slot.date,
            },
            time_zone: &plan.time_zone,
            scheduled_for: plan.slot.scheduled_for.to_utc(),
            manual: plan.slot.manual,
            plan: plan_json,
            at: opts.clock.now(),
        })
        .await?;
    // Everything from here on — marking interrupted deliveries above all — is for one attempt
    // at a time: a second one (a retried Job whose old pod still runs, `finrep run` beside the
    // scheduler) stops here.
    let lock = store
        .lock_run(row.id, "run", opts.lock_wait)
        .await?
        .map_err(|holder| RunError::Busy { holder })?;
    let mut outcome = RunOutcome::new(
        &plan.namespace,
        &plan.report,
        plan.slot.date,
        plan.slot.manual,
    );
    let lookback_ends_at = plan.lookback_ends_at(opts.now);
    outcome.lookback_ends_at = Some(lookback_ends_at.0.with_timezone(&tz).to_rfc3339());
    outcome.report_id = row.id;
    outcome.phase = row.phase;
    outcome.recipients = plan.recipients.len();
    outcome.sources_total = plan.sources.len();
    if !plan.excluded_recipients.is_empty() {
        outcome.notes.push(format!(
            "{} recipient(s) left out as blacklisted: {}",
            plan.excluded_recipients.len(),
            plan.excluded_recipients.join(", ")
        ));
    }
    let attempt = Attempt {
        plan,
        store,
        opts,
        tz,
        lookback_ends_at,
        report_id: Some(row.id),
        outcome,
        lock: Some(lock),
    };
    Ok((attempt, row))
}

/// Starts preview `request` of the plan's report: a row of its own, no run row, no run lock.
pub(crate) async fn begin_preview<'p>(
    plan: &'p RunPlan,
    store: &'p Store,
    opts: &'p PipelineOptions,
    request: &str,
    recipient: Option<&str>,
) -> Result<(Attempt<'p>, i64), RunError> {
    let tz = crate::schedule::parse_time_zone(&plan.time_zone)
        .map_err(|e| RunError::Plan(crate::plan::PlanError::Invalid(e.to_string())))?;
    let preview_id = store
        .begin_preview(&PreviewStart {
            namespace: &plan.namespace,
            report: &plan.report,
            request,
            date: plan.slot.date,
            recipient,
            at: opts.clock.now(),
        })
        .await?;
    let mut outcome = RunOutcome::new(&plan.namespace, &plan.report, plan.slot.date, true);
    let lookback_ends_at = plan.lookback_ends_at(opts.now);
    outcome.lookback_ends_at = Some(lookback_ends_at.0.with_timezone(&tz).to_rfc3339());
    outcome.sources_total = plan.sources.len();
    let attempt = Attempt {
        plan,
        store,
        opts,
        tz,
        lookback_ends_at,
        report_id: None,
        outcome,
        lock: None,
    };
    Ok((attempt, preview_id))
}

/// The report an earlier attempt composed today: the one every recipient gets, whichever
/// attempt sends it (unless asked to recompose).
pub(crate) fn reuse(
    attempt: &mut Attempt<'_>,
    row: &ReportRow,
) -> Result<Option<Composed>, ComposeError> {
    if attempt.opts.recompose {
        return Ok(None);
    }
    let (Some(html), Some(text), Some(subject), Some(view)) =
        (&row.html, &row.text, &row.subject, &row.view)
    else {
        return Ok(None);
    };
    let Ok(view) = serde_json::from_value::<ReportView>(view.clone()) else {
        return Ok(None);
    };
    info!(
        report_id = row.id,
        "reusing the report composed earlier today"
    );
    let outcome = &mut attempt.outcome;
    outcome.reused = true;
    outcome.articles = usize::try_from(row.article_count).unwrap_or(0);
    outcome
        .notes
        .push("reused the report composed by an earlier attempt today".to_string());
    Ok(Some(Composed {
        report_id: row.id,
        console_path: format!("reports/{}", row.id),
        view,
        templates: load_templates(attempt.plan, attempt.opts, &mut outcome.notes)?,
        chat_templates: load_chat_templates(attempt.plan, attempt.opts)?,
        html: html.clone(),
        text: text.clone(),
        subject: subject.clone(),
    }))
}

/// Renders the report from the selection and stores it.
pub(crate) async fn compose(
    attempt: &mut Attempt<'_>,
    selected: &[Candidate],
    summaries: Summaries,
) -> Result<Composed, RunError> {
    let plan = attempt.plan;
    if let Some(report_id) = attempt.report_id {
        attempt
            .store
            .set_phase(report_id, RunPhase::Composing)
            .await?;
    }
    let templates = load_templates(plan, attempt.opts, &mut attempt.outcome.notes)?;
    let chat_templates = load_chat_templates(plan, attempt.opts)?;
    let outcome = &attempt.outcome;
    let view = ReportView::build(
        &plan.title,
        plan.slot.date,
        attempt.tz,
        attempt.lookback_ends_at.0,
        selected,
        &summaries.items,
        summaries.overview,
        &plan.content.section_order,
        StatsView {
            sources_total: outcome.sources_total,
            sources_ok: outcome.sources_ok + outcome.sources_not_modified,
            items_considered: outcome.extract.raw_items,
            items_selected: selected.len(),
        },
        notes_for_readers(outcome),
    );
    let (html, text) = templates.render(&view)?;
    let subject = view.subject();
    if let Some(report_id) = attempt.report_id {
        attempt
            .store
            .save_composed(
                report_id,
                &ComposedReport {
                    title: &plan.title,
                    subject: &subject,
                    html: &html,
                    text: &text,
                    articles: i32::try_from(selected.len()).unwrap_or(i32::MAX),
                    recipients: i32::try_from(plan.recipients.len()).unwrap_or(i32::MAX),
                    view: serde_json::to_value(&view).unwrap_or_default(),
                },
            )
            .await?;
    }
    attempt.outcome.phase = RunPhase::Composing;
    Ok(Composed {
        report_id: attempt.report_id.unwrap_or_default(),
        console_path: attempt
            .report_id
            .map(|id| format!("reports/{id}"))
            .unwrap_or_default(),
        view,
        templates,
        chat_templates,
        html,
        text,
        subject,
    })
}

/// The report's templates: the ConfigMap's when the plan names one and it is mounted.
pub(crate) fn load_templates(
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

/// The chat templates: the ConfigMap's `chatKey` when it holds one, else the built-in ones.
pub(crate) fn load_chat_templates(
    plan: &RunPlan,
    opts: &PipelineOptions,
) -> Result<ChatTemplates, ComposeError> {
    let templates = match (&plan.content.template, &opts.template_dir) {
        (Some(t), Some(dir)) => {
            if let Some(problem) = crate::api::TemplateRef::key_problem(&t.chat_key) {
                return Err(ComposeError::Key(problem));
            }
            ChatTemplates::from_dir(dir, &t.chat_key)
        }
        _ => ChatTemplates::builtin(),
    };
    templates.map_err(|e| ComposeError::Chat(e.to_string()))
}

/// Notes a reader of the report should see (failed sources, summary fallback).
fn notes_for_readers(outcome: &RunOutcome) -> Vec<String> {
    let mut notes = Vec::new();
    let failed: Vec<&str> = outcome.failed_sources().collect();
    if !failed.is_empty() {
        notes.push(format!(
            "{} 个来源本次未能获取：{}",
            failed.len(),
            failed.join("、")
        ));
    }
    if outcome.summarizer.as_ref().is_some_and(|s| s.fell_back) {
        notes.push("部分摘要由原文节选生成（AI 摘要服务超时或不可用）。".to_string());
    }
    if let Some(n) = outcome
        .summarizer
        .as_ref()
        .map(|s| s.ungrounded)
        .filter(|n| *n > 0)
    {
        notes.push(format!(
            "AI 摘要中有 {n} 处原文未出现的链接、邮箱或电话号码，已删除。"
        ));
    }
    notes
}

/// Records how this attempt ended.
pub(crate) async fn finish(attempt: &Attempt<'_>, error: Option<&str>) -> Result<(), StoreError> {
    let outcome = &attempt.outcome;
    attempt
        .store
        .finish_run(
            outcome.report_id,
            outcome.phase,
            &serde_json::to_value(outcome).unwrap_or_default(),
            error,
            attempt.opts.clock.now(),
        )
        .await
}

/// Records a finished step in the outcome and the database.
pub(crate) async fn record_step(
    attempt: &mut Attempt<'_>,
    step: Step,
    started: chrono::DateTime<Utc>,
) -> Result<(), StoreError> {
    let finished = attempt.opts.clock.now();
    if let Some(report_id) = attempt.report_id {
        attempt
            .store
            .record_step(report_id, step, started, finished, true, None)
            .await?;
    }
    attempt.outcome.steps.push(crate::run::StepOutcome {
        step,
        started,
        finished,
        ok: true,
    });
    Ok(())
}

/// report.html, report.txt and outcome.json, when `--output` asks for them.
pub(crate) fn write_outputs(
    opts: &PipelineOptions,
    composed: &Composed,
    outcome: &RunOutcome,
) -> Result<(), RunError> {
    let Some(dir) = &opts.output_dir else {
        return Ok(());
    };
    let output_error = |path: PathBuf| move |source| RunError::Output { path, source };
    std::fs::create_dir_all(dir).map_err(output_error(dir.clone()))?;
    let json = serde_json::to_string_pretty(outcome).unwrap_or_default();
    for (name, content) in [
        ("report.html", composed.html.as_str()),
        ("report.txt", composed.text.as_str()),
        ("outcome.json", json.as_str()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, content).map_err(output_error(path.clone()))?;
    }
    Ok(())
}
