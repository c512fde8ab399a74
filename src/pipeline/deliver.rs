//! Sending: every recipient's copy of the day's report over SMTP (lettre, pooled, TLS modes
//! starttls / tls / none), inside the mail window, paced by `maxPerMinute` and
//! `maxConnections`, exactly once per recipient as far as SMTP allows.
//!
//! Each delivery is a `delivery_log` row claimed (`sending`) before the SMTP transaction and
//! marked after it; a row found in `sending` by a later attempt is `uncertain` and is resent
//! with the same Message-ID (docs/delivery.md says why). Transient replies are retried with
//! backoff (backon's schedule, slept on the injected clock) inside the window; a permanent
//! rejection of the mailbox bounces and blacklists the address in the report's namespace; an
//! unreachable server fails the run with rows left `pending` for the retry.
//!
//! The SMTP host passes the same network guard as sources (a relay on the cluster network is
//! allowed with `--allow-private-networks` or as a trusted host), and credentials are never
//! sent over a plaintext connection unless the report says `allowPlaintextAuth: true`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use governor::{Quota, RateLimiter};
use lettre::Message;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::guard::{NetworkPolicy, ResolveError};
use super::report::Composed;
use crate::api::{MailFormat, TlsMode};
use crate::plan::{PlannedRecipient, RunPlan, secret_env_name};
use crate::run::{DeliveryCounts, DeliveryStatus, ErrorCategory};
use crate::store::{DeliveryResult, DeliveryRow, Store, StoreError};
use crate::untrusted::{self, MAX_ERROR_CHARS};
use crate::window::{Gate, Window, WindowMode, gate};

/// Connection failures in a row after which the server counts as unreachable.
const UNREACHABLE_AFTER: u32 = 3;

pub use crate::clock::{Clock, SystemClock};

/// One-click unsubscribe settings: the signing key (from a Secret) and the public URL of the
/// console that honours the link.
#[derive(Clone)]
pub struct Unsubscribe {
    pub key: Vec<u8>,
    pub public_url: String,
}

/// How delivery runs.
#[derive(Clone)]
pub struct DeliveryOptions {
    pub mode: WindowMode,
    pub clock: Arc<dyn Clock>,
    pub unsubscribe: Option<Unsubscribe>,
    /// Attempts per message on transient failures.
    pub max_attempts: u32,
    /// First backoff between attempts (doubling).
    pub retry_base: Duration,
    /// SMTP command timeout.
    pub smtp_timeout: Duration,
    /// Keep SMTP connections open between messages (off only to measure what it saves).
    pub reuse_connections: bool,
    /// Which SMTP hosts may be reached (the sources' guard).
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
            max_attempts: 4,
            retry_base: Duration::from_secs(2),
            smtp_timeout: Duration::from_secs(30),
            reuse_connections: true,
            network: NetworkPolicy::strict(Vec::new()),
            stop: CancellationToken::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("SMTP server {host}:{port} is unreachable: {reason}")]
    Unreachable {
        host: String,
        port: u16,
        reason: String,
    },
    #[error("SMTP settings: {0}")]
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

/// What a finished SMTP attempt means for the row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmtpVerdict {
    Accepted,
    /// 4xx, dropped connection, timeout: try again.
    Transient,
    /// The mailbox does not exist or is refused for good: bounce and blacklist.
    Bounce,
    /// Any other permanent refusal (policy, size): failed, address kept.
    Refused,
}

/// Classifies an SMTP reply code. Only mailbox-level permanent rejections (550, 551, 553,
/// or an enhanced status 5.1.x) blacklist; vacation replies and asynchronous reports never
/// reach this point.
pub fn verdict(code: Option<u16>, reply: &str) -> SmtpVerdict {
    match code {
        Some(c) if (200..300).contains(&c) => SmtpVerdict::Accepted,
        Some(550 | 551 | 553) => SmtpVerdict::Bounce,
        Some(c) if (500..600).contains(&c) && reply.contains("5.1.") => SmtpVerdict::Bounce,
        Some(c) if (500..600).contains(&c) => SmtpVerdict::Refused,
        _ => SmtpVerdict::Transient,
    }
}

/// A deterministic Message-ID per report, date and recipient, so a copy re-sent after a crash
/// carries the same id and receiving systems can tell it is one message.
pub fn message_id(plan: &RunPlan, email: &str, domain: &str) -> String {
    let digest = Sha256::digest(
        format!(
            "{}\0{}\0{}\0{}",
            plan.namespace, plan.report, plan.slot.date, email
        )
        .as_bytes(),
    );
    let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "<{}.{}.{}.{short}@{domain}>",
        plan.slot.date, plan.report, plan.namespace
    )
}

macro_rules! text_header {
    ($name:ident, $header:literal) => {
        #[derive(Clone, Debug)]
        struct $name(String);

        impl Header for $name {
            fn name() -> HeaderName {
                HeaderName::new_from_ascii_str($header)
            }

            fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
                Ok(Self(s.to_string()))
            }

            fn display(&self) -> HeaderValue {
                // Values are built here from validated parts; line breaks never pass.
                HeaderValue::new(Self::name(), self.0.replace(['\r', '\n'], " "))
            }
        }
    };
}

text_header!(ListId, "List-Id");
text_header!(ListUnsubscribe, "List-Unsubscribe");
text_header!(ListUnsubscribePost, "List-Unsubscribe-Post");

fn env_secret(name: &str, key: &str) -> Result<String, DeliveryError> {
    let var = secret_env_name(name, key);
    std::env::var(&var).map_err(|_| {
        DeliveryError::Config(format!(
            "credentials need the environment variable {var} (Secret {name}, key {key}), which is not set"
        ))
    })
}

/// Opens SMTP connections: TLS mode, credentials, timeouts, to guarded addresses.
struct Connector {
    host: String,
    port: u16,
    tls: TlsMode,
    credentials: Option<Credentials>,
    timeout: Duration,
    hello: ClientId,
    network: NetworkPolicy,
}

#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl Connector {
    fn new(plan: &RunPlan, opts: &DeliveryOptions) -> Result<Self, DeliveryError> {
        crate::tls::install_crypto_provider();
        let smtp = &plan.smtp;
        if smtp.tls == TlsMode::None
            && smtp.credentials_secret_ref.is_some()
            && !smtp.allow_plaintext_auth
        {
            return Err(DeliveryError::Config(
                "smtp.credentialsSecretRef with tls: none would send the password in clear text; use starttls or tls, or set smtp.allowPlaintextAuth: true for a relay on a trusted network".to_string(),
            ));
        }
        let credentials = match &smtp.credentials_secret_ref {
            Some(c) => Some(Credentials::new(
                env_secret(&c.name, &c.username_key)?,
                env_secret(&c.name, &c.password_key)?,
            )),
            None => None,
        };
        Ok(Self {
            host: smtp.host.clone(),
            port: smtp.port,
            tls: smtp.tls,
            credentials,
            timeout: opts.smtp_timeout,
            hello: ClientId::default(),
            network: opts.network.clone(),
        })
    }

    /// The server's addresses the network guard allows. A name that does not resolve may
    /// resolve later (retry the run); a refused address is a setting to change.
    async fn addresses(&self) -> Result<Vec<SocketAddr>, DeliveryError> {
        self.network
            .resolve(&self.host, self.port)
            .await
            .map_err(|e| match e {
                ResolveError::Lookup(reason) => DeliveryError::Unreachable {
                    host: self.host.clone(),
                    port: self.port,
                    reason,
                },
                ResolveError::Blocked(b) => {
                    DeliveryError::Config(format!("smtp.host {}: {}", self.host, b.0))
                }
            })
    }

    async fn connect(&self, addrs: &[SocketAddr]) -> Result<AsyncSmtpConnection, ConnectError> {
        let tls = || TlsParameters::new(self.host.clone());
        let connecting = async {
            let mut conn = match self.tls {
                TlsMode::Tls => {
                    AsyncSmtpConnection::connect_tokio1(
                        addrs,
                        Some(self.timeout),
                        &self.hello,
                        Some(tls()?),
                        None,
                    )
                    .await?
                }
                TlsMode::Starttls | TlsMode::None => {
                    let stream = tokio::net::TcpStream::connect(addrs).await?;
                    // lettre writes the end-of-data marker on its own; with Nagle's algorithm
                    // it would wait for the server's delayed ACK, about 40 ms per message.
                    stream.set_nodelay(true)?;
                    let mut conn =
                        AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello)
                            .await?;
                    if self.tls == TlsMode::Starttls {
                        // Required, not opportunistic: a server without STARTTLS is an error.
                        conn.starttls(tls()?, &self.hello).await?;
                    }
                    conn
                }
            };
            if let Some(c) = &self.credentials {
                conn.auth(&[Mechanism::Plain, Mechanism::Login], c).await?;
            }
            Ok::<_, ConnectError>(conn)
        };
        tokio::time::timeout(self.timeout, connecting)
            .await
            .map_err(|_| ConnectError::Timeout(self.timeout))?
    }
}

struct Context<'a> {
    plan: &'a RunPlan,
    store: &'a Store,
    report_id: i64,
    composed: &'a Composed,
    from: Mailbox,
    reply_to: Option<Mailbox>,
    domain: String,
    list_id: String,
    opts: &'a DeliveryOptions,
    window: Window,
    connector: Connector,
    /// The server's addresses, resolved and guarded once per run.
    addrs: Vec<SocketAddr>,
    limiter: governor::DefaultDirectRateLimiter,
    connection_failures: AtomicU32,
    abort: AtomicBool,
}

/// Sends the day's report to every recipient of the plan not yet served; returns the counts
/// of the report's deliveries afterwards.
pub async fn deliver(
    plan: &RunPlan,
    store: &Store,
    composed: &Composed,
    opts: &DeliveryOptions,
) -> Result<DeliveryCounts, DeliveryError> {
    let report_id = composed.report_id;
    let tz = crate::schedule::parse_time_zone(&plan.time_zone)
        .map_err(|e| DeliveryError::Config(e.to_string()))?;
    let window = Window::for_date(&plan.mail_window, tz, plan.slot.date)
        .map_err(|e| DeliveryError::Config(e.to_string()))?;
    let claimable = claimable_states(&window, opts, plan.slot.manual);
    let rows = rows_to_send(plan, store, report_id, &claimable).await?;
    if rows.is_empty() {
        return Ok(store.delivery_counts(report_id).await?);
    }
    let ctx = Context::new(plan, store, composed, opts, window).await?;
    // Waiting for the window first keeps the connection test close to the first message.
    if let Gate::WaitUntil(t) = gate(&ctx.window, opts.mode, opts.clock.now()) {
        info!(until = %t, "waiting for the mail window to open");
        tokio::select! {
            () = opts.clock.sleep_until(t) => {}
            () = opts.stop.cancelled() => {}
        }
    }
    if opts.stop.is_cancelled() {
        return Ok(store.delivery_counts(report_id).await?);
    }
    if let Gate::Closed { send_late: false } = gate(&ctx.window, opts.mode, opts.clock.now()) {
        let moved = defer_the_rest(store, report_id).await?;
        info!(
            deferred = moved,
            "the mail window is over; deliveries deferred"
        );
        return Ok(store.delivery_counts(report_id).await?);
    }
    match ctx.connector.connect(&ctx.addrs).await {
        Ok(mut conn) => {
            let _ = conn.quit().await;
        }
        Err(e) => return Err(unreachable(plan, e.to_string())),
    }
    let queue: Mutex<VecDeque<DeliveryRow>> = Mutex::new(rows.into());
    let workers = plan.smtp.max_connections.max(1) as usize;
    let results =
        futures_util::future::join_all((0..workers).map(|_| worker(&ctx, &queue, &claimable)))
            .await;
    results.into_iter().collect::<Result<(), _>>()?;
    if ctx.abort.load(Ordering::SeqCst) {
        let reason = format!("{UNREACHABLE_AFTER} connection failures in a row");
        return Err(unreachable(plan, reason));
    }
    if let Gate::Closed { send_late: false } = gate(&ctx.window, opts.mode, opts.clock.now()) {
        let moved = defer_the_rest(store, report_id).await?;
        if moved > 0 {
            info!(
                deferred = moved,
                "the mail window closed before every delivery"
            );
        }
    }
    Ok(store.delivery_counts(report_id).await?)
}

/// Makes sure every recipient of the plan has its row, marks rows a dead attempt left in
/// `sending`, and returns the rows this attempt may claim.
async fn rows_to_send(
    plan: &RunPlan,
    store: &Store,
    report_id: i64,
    claimable: &[DeliveryStatus],
) -> Result<Vec<DeliveryRow>, StoreError> {
    let recipients: Vec<(String, String)> = plan
        .recipients
        .iter()
        .map(|r| (r.name.clone(), r.email.clone()))
        .collect();
    store.ensure_deliveries(report_id, &recipients).await?;
    let interrupted = store.mark_interrupted(report_id).await?;
    if interrupted > 0 {
        warn!(
            interrupted,
            "deliveries were interrupted during their SMTP transaction; resending them with the same Message-ID"
        );
    }
    store.deliveries_in(report_id, claimable).await
}

impl<'a> Context<'a> {
    /// Everything the workers share: sender, pacing, the guarded server addresses.
    async fn new(
        plan: &'a RunPlan,
        store: &'a Store,
        composed: &'a Composed,
        opts: &'a DeliveryOptions,
        window: Window,
    ) -> Result<Self, DeliveryError> {
        let mailbox = |field: &str, value: &str| {
            value
                .parse::<Mailbox>()
                .map_err(|e| DeliveryError::Config(format!("smtp.{field} {value:?}: {e}")))
        };
        let from = mailbox("from", &plan.smtp.from)?;
        let reply_to = plan
            .smtp
            .reply_to
            .as_deref()
            .map(|r| mailbox("replyTo", r))
            .transpose()?;
        let domain = from.email.domain().to_string();
        let per_minute =
            NonZeroU32::new(plan.smtp.max_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(Duration::from_secs(60) / per_minute.get())
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::MIN);
        let connector = Connector::new(plan, opts)?;
        let addrs = connector.addresses().await?;
        Ok(Self {
            plan,
            store,
            report_id: composed.report_id,
            composed,
            list_id: format!(
                "{} <{}.{}.{domain}>",
                untrusted::clean(&plan.title, 200),
                plan.report,
                plan.namespace
            ),
            from,
            reply_to,
            domain,
            opts,
            window,
            connector,
            addrs,
            limiter: RateLimiter::direct(quota),
            connection_failures: AtomicU32::new(0),
            abort: AtomicBool::new(false),
        })
    }
}

/// The rows an attempt may claim. A scheduled run retried by its Job resumes pending and
/// interrupted rows; a manual run (today's run, started by a person) also picks up what the
/// scheduled run deferred or failed transiently; past the window, `lateDelivery: send` sends
/// what was deferred.
fn claimable_states(window: &Window, opts: &DeliveryOptions, manual: bool) -> Vec<DeliveryStatus> {
    let mut claimable = vec![DeliveryStatus::Pending, DeliveryStatus::Uncertain];
    if opts.mode == WindowMode::Ignore || manual {
        claimable.extend([DeliveryStatus::Deferred, DeliveryStatus::Failed]);
    }
    if let Gate::Closed { send_late: true } = gate(window, opts.mode, opts.clock.now())
        && !claimable.contains(&DeliveryStatus::Deferred)
    {
        claimable.push(DeliveryStatus::Deferred);
    }
    claimable
}

/// At the window end (lateDelivery: skip), what was not delivered is deferred.
async fn defer_the_rest(store: &Store, report_id: i64) -> Result<u64, StoreError> {
    store
        .move_deliveries(
            report_id,
            &[DeliveryStatus::Pending, DeliveryStatus::Uncertain],
            DeliveryStatus::Deferred,
        )
        .await
}

fn unreachable(plan: &RunPlan, reason: String) -> DeliveryError {
    DeliveryError::Unreachable {
        host: plan.smtp.host.clone(),
        port: plan.smtp.port,
        reason,
    }
}

async fn worker(
    ctx: &Context<'_>,
    queue: &Mutex<VecDeque<DeliveryRow>>,
    claimable: &[DeliveryStatus],
) -> Result<(), DeliveryError> {
    // Each worker keeps one connection open across messages (maxConnections workers).
    let mut conn: Option<AsyncSmtpConnection> = None;
    let result = worker_loop(ctx, queue, claimable, &mut conn).await;
    if let Some(mut c) = conn {
        let _ = c.quit().await;
    }
    result
}

async fn worker_loop(
    ctx: &Context<'_>,
    queue: &Mutex<VecDeque<DeliveryRow>>,
    claimable: &[DeliveryStatus],
    conn: &mut Option<AsyncSmtpConnection>,
) -> Result<(), DeliveryError> {
    loop {
        if ctx.abort.load(Ordering::SeqCst) || ctx.opts.stop.is_cancelled() {
            return Ok(());
        }
        match gate(&ctx.window, ctx.opts.mode, ctx.opts.clock.now()) {
            Gate::Open | Gate::Closed { send_late: true } => {}
            Gate::WaitUntil(t) => {
                tokio::select! {
                    () = ctx.opts.clock.sleep_until(t) => {}
                    () = ctx.opts.stop.cancelled() => {}
                }
                continue;
            }
            // The window end is a hard stop: what is left is deferred by the caller.
            Gate::Closed { send_late: false } => return Ok(()),
        }
        let Some(row) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front() else {
            return Ok(());
        };
        let Some(recipient) = ctx.plan.recipients.iter().find(|r| r.email == row.email) else {
            // An earlier attempt's recipient who left the plan since (disabled, unsubscribed,
            // blacklisted): recorded, not sent.
            fail_unsent(
                ctx,
                &row,
                None,
                "no longer in today's plan (disabled, unsubscribed or blacklisted)",
            )
            .await?;
            continue;
        };
        ctx.limiter.until_ready().await;
        let id = message_id(ctx.plan, &row.email, &ctx.domain);
        let asked = AtomicU32::new(0);
        let claim = || {
            let again = asked.fetch_add(1, Ordering::SeqCst) > 0;
            ctx.store.claim_delivery(row.id, claimable, &id, again)
        };
        if !patiently("claim", claim).await? {
            continue;
        }
        let message = match build_message(ctx, recipient, &id) {
            Ok(m) => m,
            Err(e) => {
                fail_unsent(ctx, &row, Some(&id), &e).await?;
                continue;
            }
        };
        send_one(ctx, &row, message, &id, conn).await?;
    }
}

/// How long a delivery keeps asking a database that went away (restarting, failing over)
/// before the attempt gives up: about two minutes, backing off from a quarter second to five.
/// A message the SMTP server accepted is then left `sending`, which the next attempt marks
/// `uncertain` and resends with the same Message-ID (docs/delivery.md).
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

/// Records a delivery that failed before any SMTP transaction.
async fn fail_unsent(
    ctx: &Context<'_>,
    row: &DeliveryRow,
    message_id: Option<&str>,
    error: &str,
) -> Result<(), StoreError> {
    ctx.store
        .finish_delivery(
            row.id,
            &DeliveryResult {
                status: DeliveryStatus::Failed,
                smtp_code: None,
                smtp_reply: None,
                message_id,
                error: Some(&untrusted::clean(error, MAX_ERROR_CHARS)),
                retries: 0,
            },
        )
        .await
}

fn build_message(ctx: &Context<'_>, r: &PlannedRecipient, id: &str) -> Result<Message, String> {
    let address = r
        .email
        .parse()
        .map_err(|e| format!("address {:?}: {e}", r.email))?;
    // Validated when the plan was loaded; cleaned again because a header is no place to find
    // out otherwise.
    let name = r
        .display_name
        .as_deref()
        .map(|n| untrusted::clean(n, 200))
        .filter(|n| !n.is_empty());
    let to = Mailbox::new(name, address);
    let token_url = ctx.opts.unsubscribe.as_ref().and_then(|u| {
        crate::unsubscribe::sign(&u.key, &ctx.plan.namespace, &r.email)
            .ok()
            .map(|t| {
                format!(
                    "{}/unsubscribe?token={t}",
                    u.public_url.trim_end_matches('/')
                )
            })
    });
    let view = ctx.composed.view.for_recipient(
        &r.categories,
        r.display_name.as_deref(),
        token_url.clone(),
    );
    let (html, text) = ctx
        .composed
        .templates
        .render(&view)
        .map_err(|e| e.to_string())?;
    let mailto = format!("<mailto:{}?subject=unsubscribe>", ctx.from.email);
    let list_unsubscribe = match &token_url {
        Some(url) => format!("<{url}>, {mailto}"),
        None => mailto,
    };
    let mut builder = Message::builder()
        .from(ctx.from.clone())
        .to(to)
        .subject(untrusted::clean(&ctx.composed.subject, 400))
        .message_id(Some(id.to_string()))
        .header(ListId(ctx.list_id.clone()))
        .header(ListUnsubscribe(list_unsubscribe));
    if token_url.is_some() {
        builder = builder.header(ListUnsubscribePost("List-Unsubscribe=One-Click".into()));
    }
    if let Some(reply_to) = &ctx.reply_to {
        builder = builder.reply_to(reply_to.clone());
    }
    let message = match r.format {
        MailFormat::Html => builder.multipart(MultiPart::alternative_plain_html(text, html)),
        MailFormat::Text => builder.singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(text),
        ),
    };
    message.map_err(|e| e.to_string())
}

/// One SMTP transaction on the worker's connection (opened when there is none): the reply
/// code and text, or `None` as code when the connection failed.
async fn transact(
    ctx: &Context<'_>,
    conn: &mut Option<AsyncSmtpConnection>,
    envelope: &lettre::address::Envelope,
    bytes: &[u8],
) -> (Option<u16>, String) {
    if conn.is_none() {
        match ctx.connector.connect(&ctx.addrs).await {
            Ok(c) => *conn = Some(c),
            Err(e) => return (None, format!("connect: {e}")),
        }
    }
    let Some(c) = conn.as_mut() else {
        return (None, "no connection".to_string());
    };
    match tokio::time::timeout(ctx.opts.smtp_timeout, c.send(envelope, bytes)).await {
        Ok(Ok(resp)) => {
            // The server's words are stored and logged: cleaned like any network text.
            let reply = untrusted::clean(
                &resp.message().collect::<Vec<_>>().join(" "),
                MAX_ERROR_CHARS,
            );
            if !ctx.opts.reuse_connections {
                let _ = c.quit().await;
                *conn = None;
            }
            (Some(u16::from(resp.code())), reply)
        }
        Ok(Err(e)) => {
            // lettre has aborted the connection; the next message opens a new one.
            *conn = None;
            (
                e.status().map(u16::from),
                untrusted::clean(&e.to_string(), MAX_ERROR_CHARS),
            )
        }
        Err(_) => {
            *conn = None;
            (None, format!("no reply within {:?}", ctx.opts.smtp_timeout))
        }
    }
}

/// Sends one message on the worker's connection, retrying transient failures with backoff
/// inside the window, and records how it ended.
async fn send_one(
    ctx: &Context<'_>,
    row: &DeliveryRow,
    message: Message,
    id: &str,
    conn: &mut Option<AsyncSmtpConnection>,
) -> Result<(), DeliveryError> {
    let envelope = message.envelope().clone();
    let bytes = message.formatted();
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(ctx.opts.retry_base)
        .with_max_delay(Duration::from_secs(60))
        .with_max_times(ctx.opts.max_attempts.saturating_sub(1) as usize)
        .with_jitter()
        .build();
    let mut attempt: i32 = 0;
    loop {
        attempt += 1;
        let (code, reply) = transact(ctx, conn, &envelope, &bytes).await;
        let v = verdict(code, &reply);
        if server_gone(ctx, &v, code) {
            // Leave the row for the retried run.
            let left = DeliveryResult {
                status: DeliveryStatus::Pending,
                smtp_code: None,
                smtp_reply: None,
                message_id: Some(id),
                error: Some(&reply),
                retries: attempt - 1,
            };
            patiently("record", || ctx.store.finish_delivery(row.id, &left)).await?;
            return Ok(());
        }
        let state = match v {
            SmtpVerdict::Accepted => DeliveryStatus::Sent,
            SmtpVerdict::Bounce => DeliveryStatus::Bounced,
            SmtpVerdict::Refused => DeliveryStatus::Failed,
            SmtpVerdict::Transient => match retry_or_end(ctx, &mut delays).await {
                None => continue,
                Some(state) => state,
            },
        };
        let code = code.map(i32::from);
        let result = DeliveryResult {
            status: state,
            smtp_code: code,
            smtp_reply: Some(reply.as_str()),
            message_id: Some(id),
            error: None,
            retries: attempt - 1,
        };
        // The server has the message: its mark must not be lost to a database restart.
        patiently("record", || ctx.store.finish_delivery(row.id, &result)).await?;
        if state == DeliveryStatus::Bounced {
            warn!(recipient = %row.recipient, code, "permanent rejection; address blacklisted");
            patiently("blacklist", || {
                ctx.store
                    .blacklist_bounce(&row.email, code, Some(&reply), ctx.report_id)
            })
            .await?;
        }
        return Ok(());
    }
}

/// Counts connection-level failures; true once they say the server is unreachable.
fn server_gone(ctx: &Context<'_>, v: &SmtpVerdict, code: Option<u16>) -> bool {
    if *v == SmtpVerdict::Transient && code.is_none() {
        let n = ctx.connection_failures.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= UNREACHABLE_AFTER {
            ctx.abort.store(true, Ordering::SeqCst);
            return true;
        }
    } else {
        ctx.connection_failures.store(0, Ordering::SeqCst);
    }
    false
}

/// May deliveries still start?
fn window_open(ctx: &Context<'_>) -> bool {
    matches!(
        gate(&ctx.window, ctx.opts.mode, ctx.opts.clock.now()),
        Gate::Open | Gate::Closed { send_late: true }
    )
}

/// After a transient failure: waits for the next try (`None`), or says the state the
/// delivery ends in — `deferred` when the window closed (also while waiting), `failed` when
/// the tries are spent.
async fn retry_or_end(
    ctx: &Context<'_>,
    delays: &mut impl Iterator<Item = Duration>,
) -> Option<DeliveryStatus> {
    if !window_open(ctx) {
        return Some(DeliveryStatus::Deferred);
    }
    let Some(wait) = delays.next() else {
        return Some(DeliveryStatus::Failed);
    };
    ctx.opts.clock.sleep(wait).await;
    (!window_open(ctx)).then_some(DeliveryStatus::Deferred)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_verdicts() {
        assert_eq!(verdict(Some(250), "ok"), SmtpVerdict::Accepted);
        assert_eq!(verdict(Some(421), "busy"), SmtpVerdict::Transient);
        assert_eq!(verdict(Some(451), "try later"), SmtpVerdict::Transient);
        assert_eq!(verdict(None, "connection reset"), SmtpVerdict::Transient);
        assert_eq!(verdict(Some(550), "no such user"), SmtpVerdict::Bounce);
        assert_eq!(verdict(Some(553), "bad mailbox"), SmtpVerdict::Bounce);
        assert_eq!(
            verdict(Some(554), "5.1.1 unknown user"),
            SmtpVerdict::Bounce
        );
        assert_eq!(verdict(Some(552), "5.3.4 too big"), SmtpVerdict::Refused);
        assert_eq!(verdict(Some(554), "5.7.1 spam"), SmtpVerdict::Refused);
    }
}
