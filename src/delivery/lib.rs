//! Delivery: every recipient's copy of the day's report — an e-mail over SMTP, or a post to a
//! chat group's bot (WeCom, DingTalk, Feishu/Lark) — inside the mail window, paced, exactly
//! once per recipient as far as each transport allows.
//!
//! One loop (`lane`) owns claim → window → pacing → send → record → retry for every channel;
//! a transport (`smtp`, `chat`) only turns one request into an [`Outcome`], and the decisions
//! are pure functions (`outcome`). Rendering a recipient's copy is the step before: the
//! pipeline's [`Render`] makes an e-mail ([`letter`]) or a chat message ([`chat::compose`]).
//!
//! Each delivery is a `delivery_log` row claimed (`sending`) before the request and marked
//! after it; a row found in `sending` by a later attempt is `uncertain`: an e-mail is resent
//! with the same Message-ID, a chat post is not posted again on its own (a webhook has no
//! idempotency key; docs/delivery.md says why). Transient failures are retried with backoff
//! inside the window; a permanent refusal of the address or bot blacklists it in the report's
//! namespace; an unreachable SMTP server fails the run with rows left `pending` for the retry.

#![forbid(unsafe_code)]

// The core's modules, reachable as `crate::api` and so on from every module here.
use finrep_core::{
    api, clock, guard, plan, run, schedule, store, text_layout, tls, untrusted, window,
};

pub mod chat;
mod lane;
pub mod letter;
pub mod outcome;
mod shared_pace;
pub mod smtp;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::guard::NetworkPolicy;
use crate::plan::{PlannedRecipient, RunPlan};
use crate::run::{Channel, DeliveryCounts, DeliveryStatus, ErrorCategory};
use crate::store::{DeliveryRow, OwedDelivery, Store, StoreError};
use crate::window::{Gate, Window, WindowMode, gate};
pub use lane::Transports;
pub use outcome::{Outcome, Reply};

pub use crate::clock::{Clock, SystemClock};

/// One-click unsubscribe settings: the signing key (from a Secret) and the public URL of the
/// console that honours the link.
#[derive(Clone)]
pub struct Unsubscribe {
    pub signer: finrep_core::unsubscribe::Signer,
    pub public_url: String,
}

/// Which uncertain chat posts a run posts again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ResendUncertain {
    /// None: a webhook has no idempotency key, so a second post is a second message.
    #[default]
    None,
    /// Every group of the report whose post is uncertain.
    All,
    /// Only these groups (`<platform>:<name>` addresses, or Recipient names) — the ones a
    /// person checked and found without the message.
    Groups(std::collections::BTreeSet<String>),
}

impl ResendUncertain {
    /// Whether the uncertain post of `row` is to be posted again.
    pub fn covers(&self, row: &DeliveryRow) -> bool {
        match self {
            Self::None => false,
            Self::All => true,
            Self::Groups(groups) => {
                groups.contains(&row.address) || groups.contains(&row.recipient)
            }
        }
    }
}

/// How delivery runs.
#[derive(Clone)]
pub struct DeliveryOptions {
    pub mode: WindowMode,
    pub clock: Arc<dyn Clock>,
    pub unsubscribe: Option<Unsubscribe>,
    /// The console's public URL: a chat message links to the full report there.
    pub console_url: Option<String>,
    /// Attempts per message on transient failures.
    pub max_attempts: u32,
    /// First backoff between attempts (doubling).
    pub retry_base: Duration,
    /// SMTP command timeout.
    pub smtp_timeout: Duration,
    /// How long a chat platform may take to answer a post.
    pub chat_timeout: Duration,
    /// Which chat groups whose earlier post is `uncertain` to post again (a person checked
    /// the group and asks for it: `finrep run --resend-uncertain[=GROUP,…]`).
    pub resend_uncertain: ResendUncertain,
    /// Keep SMTP connections open between messages (off only to measure what it saves).
    pub reuse_connections: bool,
    /// Which SMTP hosts and webhooks may be reached (the sources' guard).
    pub network: NetworkPolicy,
    /// Once cancelled, no new message is started: the ones in flight finish and the rest
    /// stay pending for the next attempt (a scheduler shutting down).
    pub stop: CancellationToken,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        Self {
            mode: WindowMode::Respect,
            clock: Arc::new(SystemClock),
            unsubscribe: None,
            console_url: None,
            max_attempts: 4,
            retry_base: Duration::from_secs(2),
            smtp_timeout: Duration::from_secs(30),
            chat_timeout: Duration::from_secs(15),
            resend_uncertain: ResendUncertain::None,
            reuse_connections: true,
            network: NetworkPolicy::strict(Vec::new()),
            stop: CancellationToken::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("{what} is unreachable: {reason}")]
    Unreachable { what: String, reason: String },
    #[error("delivery settings: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DeliveryError {
    pub fn category(&self) -> ErrorCategory {
        match self {
            Self::Unreachable { .. } => ErrorCategory::Network,
            Self::Config(_) => ErrorCategory::Config,
            Self::Store(_) => ErrorCategory::Database,
        }
    }

    /// Worth retrying the run later (the server or database may come back).
    pub fn is_transient(&self) -> bool {
        match self.category() {
            ErrorCategory::Network | ErrorCategory::Database | ErrorCategory::Busy => true,
            ErrorCategory::Config | ErrorCategory::Io | ErrorCategory::Internal => false,
        }
    }
}

/// A recipient's copy, rendered, ready for its transport.
pub enum Copy {
    Letter(letter::Letter),
    Post(chat::Post),
}

/// Renders each recipient's copy (the pipeline's templates) before a transport sees it.
pub trait Render: Sync {
    /// The delivery's id, claimed with its row: an e-mail's Message-ID.
    fn delivery_id(&self, r: &PlannedRecipient) -> String;
    /// The copy of delivery row `row` (its id signs the unsubscribe link), or why there is
    /// none (recorded as the delivery's failure).
    fn render(&self, r: &PlannedRecipient, id: &str, row: i64) -> Result<Copy, String>;
}

/// What the loop shares about the run.
pub(crate) struct Run<'a> {
    plan: &'a RunPlan,
    store: &'a Store,
    report_id: i64,
    render: &'a dyn Render,
    opts: &'a DeliveryOptions,
    window: Window,
    /// The window as the run found it, which decides the states it may claim.
    start: Gate,
    /// The plan's recipients by address (a plan may hold 10,000).
    recipients: HashMap<&'a str, &'a PlannedRecipient>,
}

impl Run<'_> {
    /// The states a row on `channel` may be claimed from.
    fn claimable(&self, channel: Channel) -> Vec<DeliveryStatus> {
        outcome::claimable_states(
            channel,
            self.start,
            self.opts.mode,
            self.plan.slot.manual,
            self.opts.resend_uncertain != ResendUncertain::None,
        )
    }

    fn gate(&self) -> Gate {
        gate(&self.window, self.opts.mode, self.opts.clock.now())
    }

    /// May deliveries still start?
    fn window_open(&self) -> bool {
        self.open_at(self.opts.clock.now())
    }

    /// May deliveries still start at `at` (a retry's time)?
    fn open_at(&self, at: chrono::DateTime<chrono::Utc>) -> bool {
        matches!(
            gate(&self.window, self.opts.mode, at),
            Gate::Open | Gate::Closed { send_late: true }
        )
    }

    fn recipient(&self, address: &str) -> Option<&PlannedRecipient> {
        self.recipients.get(address).copied()
    }

    /// Waits for the window to open; false when the run is stopping or the window is over.
    async fn wait_for_window(&self) -> bool {
        if let Gate::WaitUntil(t) = self.gate() {
            info!(until = %t, "waiting for the mail window to open");
            tokio::select! {
                () = self.opts.clock.sleep_until(t) => {}
                () = self.opts.stop.cancelled() => {}
            }
        }
        !self.opts.stop.is_cancelled() && self.window_open()
    }

    /// At the window end (lateDelivery: skip), what was not delivered is deferred — but not a
    /// chat post left uncertain, which a later run would then post again; returns the
    /// report's counts.
    async fn finish(&self) -> Result<DeliveryCounts, StoreError> {
        if let Gate::Closed { send_late: false } = self.gate() {
            let resent: Vec<Channel> = Channel::ALL
                .iter()
                .copied()
                .filter(|c| c.resends_uncertain())
                .collect();
            let deferred = DeliveryStatus::Deferred;
            let store = self.store;
            let pending = &[DeliveryStatus::Pending];
            let uncertain = &[DeliveryStatus::Uncertain];
            let moved = store
                .move_deliveries(self.report_id, pending, Channel::ALL, deferred)
                .await?
                + store
                    .move_deliveries(self.report_id, uncertain, &resent, deferred)
                    .await?;
            if moved > 0 {
                info!(
                    deferred = moved,
                    "the mail window is over; deliveries deferred"
                );
            }
        }
        self.store.delivery_counts(self.report_id).await
    }
}

/// Sends the day's report to every recipient of the plan not yet served; returns the counts
/// of the report's deliveries afterwards.
pub async fn deliver(
    plan: &RunPlan,
    store: &Store,
    report_id: i64,
    render: &dyn Render,
    opts: &DeliveryOptions,
) -> Result<DeliveryCounts, DeliveryError> {
    let window = mail_window(plan)?;
    let start = gate(&window, opts.mode, opts.clock.now());
    let run = Run {
        plan,
        store,
        report_id,
        render,
        opts,
        window,
        start,
        recipients: plan
            .recipients
            .iter()
            .map(|r| (r.address.as_str(), r))
            .collect(),
    };
    let rows = rows_to_send(&run).await?;
    if rows.is_empty() {
        return Ok(store.delivery_counts(report_id).await?);
    }
    let transports = open_transports(plan, opts, &rows).await?;
    // Waiting for the window first keeps the connection test close to the first message.
    if !run.wait_for_window().await {
        return Ok(run.finish().await?);
    }
    if let Some(smtp) = &transports.smtp {
        smtp.check().await?;
    }
    let driven = lane::drive(&run, &transports, rows).await;
    if let Some(smtp) = &transports.smtp {
        smtp.close().await;
    }
    driven?;
    Ok(run.finish().await?)
}

fn mail_window(plan: &RunPlan) -> Result<Window, DeliveryError> {
    let tz = crate::schedule::parse_time_zone(&plan.time_zone)
        .map_err(|e| DeliveryError::Config(e.to_string()))?;
    Window::for_date(&plan.mail_window, tz, plan.slot.date)
        .map_err(|e| DeliveryError::Config(e.to_string()))
}

/// The deliveries a plan owes, one per recipient.
pub fn owed(plan: &RunPlan) -> Vec<OwedDelivery> {
    plan.recipients
        .iter()
        .map(|r| OwedDelivery {
            recipient: r.name.clone(),
            address: r.address.clone(),
            channel: r
                .chat
                .as_ref()
                .map_or(Channel::Email, |c| c.platform.into()),
        })
        .collect()
}

/// Makes sure every recipient of the plan has its row, marks rows a dead attempt left in
/// `sending`, and returns the rows this attempt may claim on each row's channel.
async fn rows_to_send(run: &Run<'_>) -> Result<Vec<DeliveryRow>, StoreError> {
    run.store
        .ensure_deliveries(run.report_id, &owed(run.plan))
        .await?;
    let interrupted = run
        .store
        .mark_interrupted(run.report_id, run.opts.clock.now())
        .await?;
    if interrupted > 0 {
        tracing::warn!(
            interrupted,
            "deliveries were interrupted during their request; e-mails are resent with the same Message-ID, chat posts left uncertain"
        );
    }
    let mut all = run.claimable(Channel::Email);
    all.extend(run.claimable(Channel::Wecom));
    all.sort_by_key(|s| s.as_str());
    all.dedup();
    let rows = run.store.deliveries_in(run.report_id, &all).await?;
    Ok(rows
        .into_iter()
        .filter(|r| run.claimable(r.channel).contains(&r.status))
        .collect())
}

/// The transports the rows need: SMTP for e-mail, the chat client for groups.
async fn open_transports(
    plan: &RunPlan,
    opts: &DeliveryOptions,
    rows: &[DeliveryRow],
) -> Result<Transports, DeliveryError> {
    let smtp = if rows.iter().any(|r| r.channel == Channel::Email) {
        Some(smtp::SmtpTransport::open(plan, opts).await?)
    } else {
        None
    };
    let chat = if rows.iter().any(|r| r.channel != Channel::Email) {
        let t = chat::ChatTransport::new(opts.network.clone(), opts.chat_timeout)
            .map_err(DeliveryError::Config)?;
        Some(t)
    } else {
        None
    };
    Ok(Transports { smtp, chat })
}
