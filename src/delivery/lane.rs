//! The delivery loop: one lane per transport, each with its queue and workers, and for every
//! row the same steps whatever the channel — wait for the window, render the copy, pace,
//! claim, send (retrying inside the window), record.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tracing::{info, warn};

use super::chat::ChatTransport;
use super::outcome::{Next, Outcome, settle, unreachable_after};
use super::smtp::SmtpTransport;
use super::{Copy, DeliveryError, Run};
use crate::plan::PlannedRecipient;
use crate::run::{Channel, DeliveryStatus};
use crate::store::{DeliveryResult, DeliveryRow, StoreError};
use crate::untrusted::{self, MAX_ERROR_CHARS};
use crate::window::Gate;

/// The transports a run opened: SMTP when it has e-mail rows, chat when it has groups.
pub struct Transports {
    pub smtp: Option<SmtpTransport>,
    pub chat: Option<ChatTransport>,
}

/// One transport, as the loop sees it: how many workers, pacing, one request.
#[derive(Clone, Copy)]
enum Transport<'a> {
    Smtp(&'a SmtpTransport),
    Chat(&'a ChatTransport),
}

impl Transport<'_> {
    fn workers(self) -> usize {
        match self {
            Self::Smtp(t) => t.connections,
            Self::Chat(t) => t.concurrency,
        }
    }

    async fn pace(self, copy: &Copy, row: &DeliveryRow) {
        match (self, copy) {
            (Self::Smtp(t), _) => t.pace().await,
            (Self::Chat(t), Copy::Post(p)) => t.pace(p.bot.platform, &row.address).await,
            (Self::Chat(_), Copy::Letter(_)) => {}
        }
    }

    async fn send(self, copy: &Copy) -> Outcome {
        match (self, copy) {
            (Self::Smtp(t), Copy::Letter(m)) => t.send(m).await,
            (Self::Chat(t), Copy::Post(p)) => t.send(p).await,
            // The renderer made a copy of the other kind: a defect, refused, never sent.
            (_, _) => Outcome::Refused {
                reply: super::outcome::Reply::new(None, "the copy does not fit the channel"),
                recipient_gone: false,
            },
        }
    }

    fn unreachable(self, reason: String) -> DeliveryError {
        match self {
            Self::Smtp(t) => t.unreachable(reason),
            Self::Chat(_) => DeliveryError::Unreachable {
                what: "the chat platforms".to_string(),
                reason,
            },
        }
    }
}

/// A transport's share of the run: its rows, and whether its server stopped answering.
struct Lane<'a> {
    transport: Transport<'a>,
    queue: Mutex<VecDeque<DeliveryRow>>,
    failures_in_a_row: AtomicU32,
    gone: AtomicBool,
}

/// Runs every lane to its end; an unreachable server is the run's error, with its lane's rows
/// left pending for the retried run.
pub(super) async fn drive(
    run: &Run<'_>,
    transports: &Transports,
    rows: Vec<DeliveryRow>,
) -> Result<(), DeliveryError> {
    let lanes = lanes(transports, rows);
    let workers = lanes
        .iter()
        .flat_map(|lane| (0..lane.transport.workers().max(1)).map(move |_| worker(run, lane)));
    let results = futures_util::future::join_all(workers).await;
    results.into_iter().collect::<Result<(), _>>()?;
    match lanes.iter().find(|l| l.gone.load(Ordering::SeqCst)) {
        Some(lane) => {
            let reason = format!(
                "{} connection failures in a row",
                super::outcome::UNREACHABLE_AFTER
            );
            Err(lane.transport.unreachable(reason))
        }
        None => Ok(()),
    }
}

fn lanes(transports: &Transports, rows: Vec<DeliveryRow>) -> Vec<Lane<'_>> {
    let (mail, chat): (Vec<_>, Vec<_>) =
        rows.into_iter().partition(|r| r.channel == Channel::Email);
    let lane = |transport, rows: Vec<DeliveryRow>| Lane {
        transport,
        queue: Mutex::new(rows.into()),
        failures_in_a_row: AtomicU32::new(0),
        gone: AtomicBool::new(false),
    };
    let mut out = Vec::new();
    if let Some(t) = &transports.smtp {
        out.push(lane(Transport::Smtp(t), mail));
    }
    if let Some(t) = &transports.chat {
        out.push(lane(Transport::Chat(t), chat));
    }
    out
}

async fn worker(run: &Run<'_>, lane: &Lane<'_>) -> Result<(), DeliveryError> {
    while let Some(row) = next_row(run, lane).await {
        deliver_one(run, lane, row).await?;
    }
    Ok(())
}

/// The next row, once the window lets it start; `None` when the lane is done, its server
/// gone, the run stopping or the window over (what is left is deferred by the caller).
async fn next_row(run: &Run<'_>, lane: &Lane<'_>) -> Option<DeliveryRow> {
    loop {
        if lane.gone.load(Ordering::SeqCst) || run.opts.stop.is_cancelled() {
            return None;
        }
        match run.gate() {
            Gate::Open | Gate::Closed { send_late: true } => {
                return lane
                    .queue
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pop_front();
            }
            Gate::WaitUntil(t) => {
                tokio::select! {
                    () = run.opts.clock.sleep_until(t) => {}
                    () = run.opts.stop.cancelled() => {}
                }
            }
            Gate::Closed { send_late: false } => return None,
        }
    }
}

/// One delivery: render → pace → claim → send → record.
async fn deliver_one(
    run: &Run<'_>,
    lane: &Lane<'_>,
    row: DeliveryRow,
) -> Result<(), DeliveryError> {
    // An uncertain post is posted again only for the groups a person asked for.
    let uncertain_post =
        row.status == DeliveryStatus::Uncertain && !row.channel.resends_uncertain();
    if uncertain_post && !run.opts.resend_uncertain.covers(&row) {
        return Ok(());
    }
    let Some(recipient) = run.recipient(&row.address) else {
        // An earlier attempt's recipient who left the plan since (disabled, unsubscribed,
        // blacklisted): recorded, not sent.
        let why = "no longer in today's plan (disabled, unsubscribed or blacklisted)";
        return Ok(record_unsent(run, &row, None, why).await?);
    };
    let id = run.render.delivery_id(recipient);
    let copy = match run.render.render(recipient, &id, row.id) {
        Ok(c) => c,
        Err(e) => return Ok(record_unsent(run, &row, Some(&id), &e).await?),
    };
    lane.transport.pace(&copy, &row).await;
    if let Copy::Post(post) = &copy
        && !super::shared_pace::take_chat_turn(run, post).await
    {
        return Ok(());
    }
    if !claim(run, &row, &id).await? {
        return Ok(());
    }
    let ending = send(run, lane, &copy, &row, &id).await?;
    record(run, &row, recipient, &id, ending).await
}

/// Claims the row, asking a database that went away again for a while.
async fn claim(run: &Run<'_>, row: &DeliveryRow, id: &str) -> Result<bool, StoreError> {
    let claimable = run.claimable(row.channel);
    let asked = AtomicU32::new(0);
    let claim = || {
        let again = asked.fetch_add(1, Ordering::SeqCst) > 0;
        run.store
            .claim_delivery(row.id, &claimable, id, again, run.opts.clock.now())
    };
    patiently("claim", claim).await
}

/// How a sent delivery ends.
enum Ending {
    /// The outcome decided a state.
    Settled {
        outcome: Outcome,
        status: DeliveryStatus,
        blacklist: bool,
    },
    /// The server stopped answering: the row goes back to pending for the retried run.
    LeftPending(Outcome),
    /// Released to wait for a retry and not claimed again (blacklisted or unsubscribed in
    /// the meantime): the row stays as it is, nothing more to record.
    Released,
}

/// Sends the copy, retrying what is worth retrying inside the window, with backoff (backon's
/// schedule, slept on the injected clock) or the wait the other side asked for. The row is
/// released (back to pending, the refusal recorded) while it waits and claimed again after:
/// a process killed in a long wait leaves a row the next attempt sends, not an uncertain one.
async fn send(
    run: &Run<'_>,
    lane: &Lane<'_>,
    copy: &Copy,
    row: &DeliveryRow,
    id: &str,
) -> Result<Ending, DeliveryError> {
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(run.opts.retry_base)
        .with_max_delay(Duration::from_secs(60))
        .with_max_times(run.opts.max_attempts.saturating_sub(1) as usize)
        .with_jitter()
        .build();
    loop {
        let outcome = lane.transport.send(copy).await;
        if server_gone(lane, &outcome) {
            return Ok(Ending::LeftPending(outcome));
        }
        // Only a deferral asks for the next wait or the window (each reading of an injected
        // clock may move it).
        let (backoff, window_open) = match outcome {
            Outcome::Deferred { .. } => (delays.next(), run.window_open()),
            _ => (None, true),
        };
        match settle(&outcome, backoff, window_open) {
            Next::Record { status, blacklist } => {
                let ending = Ending::Settled {
                    outcome,
                    status,
                    blacklist,
                };
                return Ok(ending);
            }
            Next::RetryAfter(wait) => {
                // A retry that would start after the window's end (lateDelivery: skip) is
                // deferred now, not waited for: a platform asking for ten minutes must not
                // keep the run past its window.
                let resume = chrono::Duration::from_std(wait)
                    .ok()
                    .and_then(|w| run.opts.clock.now().checked_add_signed(w));
                let deferred = |outcome| Ending::Settled {
                    outcome,
                    status: DeliveryStatus::Deferred,
                    blacklist: false,
                };
                if !resume.is_some_and(|at| run.open_at(at)) {
                    return Ok(deferred(outcome));
                }
                let reply = outcome.reply().text.clone();
                patiently("release", || run.store.release_delivery(row.id, id, &reply)).await?;
                run.opts.clock.sleep(wait).await;
                if !run.window_open() {
                    return Ok(deferred(outcome));
                }
                // Claimed again: each try is one more of the row's attempts.
                if !claim(run, row, id).await? {
                    return Ok(Ending::Released);
                }
            }
        }
    }
}

/// Counts requests that reached nobody; true once this lane's server counts as unreachable.
fn server_gone(lane: &Lane<'_>, outcome: &Outcome) -> bool {
    let before = lane.failures_in_a_row.load(Ordering::SeqCst);
    let (now, gone) = unreachable_after(before, outcome);
    lane.failures_in_a_row.store(now, Ordering::SeqCst);
    if gone {
        lane.gone.store(true, Ordering::SeqCst);
    }
    gone
}

/// Records how the delivery ended (the transport has the copy: its mark must not be lost to a
/// database restart), and blacklists an address or bot refused for good.
async fn record(
    run: &Run<'_>,
    row: &DeliveryRow,
    recipient: &PlannedRecipient,
    id: &str,
    ending: Ending,
) -> Result<(), DeliveryError> {
    let (outcome, status, blacklist) = match ending {
        Ending::Settled {
            outcome,
            status,
            blacklist,
        } => (outcome, status, blacklist),
        Ending::LeftPending(outcome) => (outcome, DeliveryStatus::Pending, false),
        Ending::Released => return Ok(()),
    };
    let reply = outcome.reply();
    let answered = status != DeliveryStatus::Pending;
    let result = DeliveryResult {
        status,
        reply_code: reply.code.filter(|_| answered),
        reply: answered.then_some(reply.text.as_str()),
        message_id: Some(id),
        error: (!answered).then_some(reply.text.as_str()),
        at: run.opts.clock.now(),
    };
    patiently("record", || run.store.finish_delivery(row.id, &result)).await?;
    if status == DeliveryStatus::Uncertain {
        warn!(recipient = %recipient.name, channel = %row.channel, "no answer after the request went out; left uncertain, not posted again on its own");
    }
    if blacklist {
        warn!(recipient = %recipient.name, channel = %row.channel, code = reply.code, "refused for good; blacklisted in its namespace");
        patiently("blacklist", || {
            run.store
                .blacklist_bounce(&row.address, reply.code, Some(&reply.text), run.report_id)
        })
        .await?;
    }
    if status == DeliveryStatus::Sent && row.channel != Channel::Email {
        info!(recipient = %recipient.name, channel = %row.channel, "posted to the chat group");
    }
    Ok(())
}

/// Records a delivery that failed before any request.
async fn record_unsent(
    run: &Run<'_>,
    row: &DeliveryRow,
    id: Option<&str>,
    error: &str,
) -> Result<(), StoreError> {
    let result = DeliveryResult {
        status: DeliveryStatus::Failed,
        reply_code: None,
        reply: None,
        message_id: id,
        error: Some(&untrusted::clean(error, MAX_ERROR_CHARS)),
        at: run.opts.clock.now(),
    };
    run.store.finish_delivery(row.id, &result).await
}

/// How long a delivery keeps asking a database that went away (restarting, failing over)
/// before the attempt gives up: about two minutes, backing off from a quarter second to five.
/// A copy the transport took is then left `sending`, which the next attempt marks
/// `uncertain` (docs/delivery.md).
fn database_patience() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(30)
        .with_jitter()
}

/// `write`, asked again while the database is unreachable.
async fn patiently<T, F, Fut>(what: &'static str, write: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    use backon::Retryable;
    write
        .retry(database_patience())
        .sleep(tokio::time::sleep)
        .when(StoreError::is_transient)
        .notify(|e: &StoreError, wait| {
            warn!(what, error = %e, retry_in = ?wait, "the database did not answer; asking again");
        })
        .await
}
