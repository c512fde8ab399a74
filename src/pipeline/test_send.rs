//! A test copy: the report's newest preview — or its run of the day, when that is newer —
//! sent once, marked as a test in its subject and body, to one recipient the report already
//! selects. It is logged in `test_sends` and touches no delivery row, so the recipient's copy
//! of the day still goes out once; an address blacklisted or unsubscribed gets nothing.

use std::time::Duration;

use chrono::NaiveDate;
use tracing::{info, warn};

use super::compose::ReportView;
use super::copies::Copies;
use super::report::{self, Composed};
use super::{PipelineOptions, RunError};
use crate::delivery::{
    Copy, DeliveryError, DeliveryOptions, Outcome, Render, chat::ChatTransport, smtp::SmtpTransport,
};
use crate::plan::{PlanError, PlanPurpose, PlannedRecipient, RunPlan};
use crate::run::{Channel, CopyOf, TestSendState};
use crate::store::{Store, TestSendClaim};

/// Put before a test copy's subject and title.
pub const TEST_MARK: &str = "【测试 TEST】";

/// The first note of a test copy's body.
pub const TEST_NOTE: &str = "这是一份测试副本（kubectl finrep test-send），不是今天的日报；日报仍会按时发送。This is a test copy (kubectl finrep test-send), not the day's report, which goes out as usual.";

/// What became of a test send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestSent {
    pub state: TestSendState,
    /// What was sent (`None`: nothing was composed to send).
    pub copy_of: Option<(CopyOf, NaiveDate)>,
    /// The server's or platform's reply, or why nothing was sent.
    pub reply: Option<String>,
}

/// Sends the plan's test copy, once per request whatever the retries.
pub async fn test_send(
    plan: &RunPlan,
    store: &Store,
    opts: &PipelineOptions,
    delivery: &DeliveryOptions,
) -> Result<TestSent, RunError> {
    let PlanPurpose::TestSend { request, recipient } = &plan.purpose else {
        return Err(PlanError::Invalid("this plan is not a test send's".to_string()).into());
    };
    plan.validate()?;
    let r = plan
        .recipients
        .iter()
        .find(|r| r.name == *recipient)
        .ok_or_else(|| PlanError::Invalid(format!("the plan has no Recipient {recipient}")))?;
    if let Some(done) = earlier_attempt(plan, store, opts, request).await? {
        return Ok(done);
    }
    let newest = newest_copy(plan, store, opts).await?;
    let claim = TestSendClaim {
        namespace: &plan.namespace,
        report: &plan.report,
        request,
        recipient,
        address: &r.address,
        channel: channel_of(r),
        copy_of: newest.as_ref().map(|(of, _)| *of),
        at: opts.clock.now(),
    };
    let Some(id) = store.claim_test_send(&claim).await? else {
        // Another attempt claimed it between the two reads: it answers.
        return Ok(earlier_attempt(plan, store, opts, request)
            .await?
            .unwrap_or(TestSent {
                state: TestSendState::Uncertain,
                copy_of: claim.copy_of,
                reply: None,
            }));
    };
    let (state, reply, message_id) = match (consent_refusal(plan, store, r).await?, &newest) {
        (Some(why), _) => (TestSendState::Refused, why, None),
        (None, None) => (TestSendState::Refused, NOTHING_COMPOSED.to_string(), None),
        (None, Some((_, composed))) => send(plan, composed, r, id, delivery).await?,
    };
    let now = opts.clock.now();
    store
        .finish_test_send(id, state, Some(&reply), message_id.as_deref(), now)
        .await?;
    info!(recipient = %r.name, state = %state, "test copy");
    Ok(TestSent {
        state,
        copy_of: claim.copy_of,
        reply: Some(reply),
    })
}

/// Why a report with neither a preview nor a composed run of the day gets no test copy.
const NOTHING_COMPOSED: &str = "nothing is composed yet: preview the report first (kubectl finrep preview), then send the test copy";

/// What an earlier attempt at this request did; one still `sending` died during its request,
/// and its copy may have arrived: it is not sent again.
async fn earlier_attempt(
    plan: &RunPlan,
    store: &Store,
    opts: &PipelineOptions,
    request: &str,
) -> Result<Option<TestSent>, RunError> {
    let Some(row) = store
        .test_send_by_request(&plan.namespace, &plan.report, request)
        .await?
    else {
        return Ok(None);
    };
    let mut state = row.state;
    if state == TestSendState::Sending
        && store
            .test_send_interrupted(row.id, opts.clock.now())
            .await?
    {
        warn!(
            request,
            "an earlier attempt stopped during its request; not sent again"
        );
        state = TestSendState::Uncertain;
    }
    Ok(Some(TestSent {
        state,
        copy_of: row.copy_of,
        reply: row.reply,
    }))
}

fn channel_of(r: &PlannedRecipient) -> Channel {
    r.chat
        .as_ref()
        .map_or(Channel::Email, |c| c.platform.into())
}

/// Why the address may not get even a test copy, if it may not.
async fn consent_refusal(
    plan: &RunPlan,
    store: &Store,
    r: &PlannedRecipient,
) -> Result<Option<String>, RunError> {
    let reason = store.blacklist_reason(&plan.namespace, &r.address).await?;
    Ok(reason.map(|reason| {
        format!(
            "not sent: {} is on the namespace's blacklist ({}); a test copy respects it like every copy",
            r.name,
            reason.as_str()
        )
    }))
}

/// The newest composed copy of the report: its latest preview, or its run of the plan's date
/// when that started after the preview was made. Marked as a test.
async fn newest_copy(
    plan: &RunPlan,
    store: &Store,
    opts: &PipelineOptions,
) -> Result<Option<((CopyOf, NaiveDate), Composed)>, RunError> {
    let preview = store
        .latest_ready_preview(&plan.namespace, &plan.report)
        .await?;
    let run = store
        .composed_run(&plan.namespace, &plan.report, plan.slot.date)
        .await?;
    let preview_at = preview.as_ref().and_then(|p| p.finished_at);
    let run_is_newer = run
        .as_ref()
        .is_some_and(|r| preview_at.is_none() || r.started_at > preview_at);
    let (copy_of, id, path, subject, html, text, view) = match (run, preview) {
        (Some(r), _) if run_is_newer => (
            (CopyOf::Run, r.date),
            r.report_id,
            format!("reports/{}", r.report_id),
            r.subject,
            r.html,
            r.text,
            r.view,
        ),
        (_, Some(p)) => (
            (CopyOf::Preview, p.date),
            p.id,
            format!("previews/{}", p.id),
            p.subject.unwrap_or_default(),
            p.html.unwrap_or_default(),
            p.text.unwrap_or_default(),
            p.view.unwrap_or_default(),
        ),
        _ => return Ok(None),
    };
    let Ok(mut view) = serde_json::from_value::<ReportView>(view) else {
        return Ok(None);
    };
    view.title = format!("{TEST_MARK}{}", view.title);
    view.notes.insert(0, TEST_NOTE.to_string());
    let mut notes = Vec::new();
    Ok(Some((
        copy_of,
        Composed {
            report_id: id,
            console_path: path,
            view,
            templates: report::load_templates(plan, opts, &mut notes)?,
            chat_templates: report::load_chat_templates(plan, opts)?,
            html,
            text,
            subject: format!("{TEST_MARK}{subject}"),
        },
    )))
}

/// Renders and sends the one copy; retries what the other side defers, a few times.
async fn send(
    plan: &RunPlan,
    composed: &Composed,
    r: &PlannedRecipient,
    id: i64,
    delivery: &DeliveryOptions,
) -> Result<(TestSendState, String, Option<String>), RunError> {
    // No unsubscribe link is signed: no delivery row stands behind a test copy.
    let opts = DeliveryOptions {
        unsubscribe: None,
        ..delivery.clone()
    };
    let copies = Copies::new(plan, composed, &opts)?;
    // Never the Message-ID of the recipient's real copy, which a mail client would take for it.
    let message_id = copies
        .delivery_id(r)
        .replacen('<', &format!("<test-{id}."), 1);
    let copy = copies
        .render(r, &message_id, 0)
        .map_err(|e| DeliveryError::Config(format!("Recipient {}'s copy: {e}", r.name)))?;
    let outcome = match &copy {
        Copy::Letter(letter) => {
            let smtp = SmtpTransport::open(plan, &opts).await?;
            let outcome = with_retries(&opts, || smtp.send(letter)).await;
            smtp.close().await;
            outcome
        }
        Copy::Post(post) => {
            let chat = ChatTransport::new(opts.network.clone(), opts.chat_timeout)
                .map_err(DeliveryError::Config)?;
            with_retries(&opts, || chat.send(post)).await
        }
    };
    let reply = outcome.reply();
    let reply = match reply.code {
        Some(code) if !reply.text.starts_with(&code.to_string()) => {
            format!("{code} {}", reply.text)
        }
        _ => reply.text.clone(),
    };
    let state = match outcome {
        Outcome::Accepted(_) => TestSendState::Sent,
        Outcome::Uncertain(_) => TestSendState::Uncertain,
        Outcome::Deferred { .. } | Outcome::Refused { .. } => TestSendState::Failed,
    };
    Ok((state, reply, Some(message_id)))
}

async fn with_retries<F, Fut>(opts: &DeliveryOptions, mut attempt: F) -> Outcome
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let mut wait = opts.retry_base;
    let mut tries = 1;
    loop {
        let outcome = attempt().await;
        let Outcome::Deferred { retry_after, .. } = &outcome else {
            return outcome;
        };
        if tries >= opts.max_attempts.max(1) {
            return outcome;
        }
        let pause = retry_after.unwrap_or(wait).min(Duration::from_secs(60));
        opts.clock.sleep(pause).await;
        wait *= 2;
        tries += 1;
    }
}
