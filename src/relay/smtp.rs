//! The relay's SMTP side: pipeline pods hand it a message without any login; it sends the
//! message on to the operator's server with the operator's login, synchronously, and answers
//! the end of DATA with that server's reply. All runs through the relay share one pace
//! (`max_per_minute`), the upstream's limit.

use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, RateLimiter};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::session::{self, MAX_LINE_BYTES, MAX_MESSAGE_BYTES, State};

/// How long a client may be silent before the relay hangs up.
const IDLE: Duration = Duration::from_secs(60);
/// Sessions served at once.
const MAX_SESSIONS: usize = 64;

/// The operator's SMTP server and login.
#[derive(Clone)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    pub tls: UpstreamTls,
    pub credentials: Option<(String, String)>,
    pub timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the login.
        f.debug_struct("Upstream")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// Transport security toward the operator's server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum UpstreamTls {
    Starttls,
    Tls,
    /// Plain (an upstream on a trusted network, e.g. a test server).
    None,
}

/// What the relay does with messages.
pub struct Relay {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    pace: DefaultDirectRateLimiter,
    allowed_domains: Vec<String>,
    sessions: Arc<tokio::sync::Semaphore>,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the upstream SMTP settings are not usable: {0}")]
    Upstream(String),
}

impl Relay {
    pub fn new(
        upstream: &Upstream,
        max_per_minute: u32,
        allowed_domains: Vec<String>,
    ) -> Result<Self, RelayError> {
        finrep_core::tls::install_crypto_provider();
        let tls = |required: bool| {
            TlsParameters::new(upstream.host.clone())
                .map(|p| {
                    if required {
                        Tls::Required(p)
                    } else {
                        Tls::Wrapper(p)
                    }
                })
                .map_err(|e| RelayError::Upstream(e.to_string()))
        };
        let tls = match upstream.tls {
            UpstreamTls::Starttls => tls(true)?,
            UpstreamTls::Tls => tls(false)?,
            UpstreamTls::None => Tls::None,
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(upstream.host.as_str())
                .port(upstream.port)
                .tls(tls)
                .timeout(Some(upstream.timeout));
        if let Some((user, password)) = &upstream.credentials {
            if upstream.tls == UpstreamTls::None {
                tracing::warn!(
                    "the upstream login goes over a plain connection: only for a server on a network you trust"
                );
            }
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        let quota = finrep_core::pace::even_per_minute(max_per_minute);
        Ok(Self {
            transport: builder.build(),
            pace: RateLimiter::direct(quota),
            allowed_domains,
            sessions: Arc::new(tokio::sync::Semaphore::new(MAX_SESSIONS)),
        })
    }

    /// Sends one message on; the reply line for the client.
    async fn forward(&self, from: &str, to: &[String], message: &[u8]) -> String {
        let parse = |a: &str| a.parse::<Address>();
        let from = if from.is_empty() {
            None
        } else {
            parse(from).ok()
        };
        let to: Result<Vec<Address>, _> = to.iter().map(|a| parse(a)).collect();
        let envelope = match to.map(|to| Envelope::new(from, to)) {
            Ok(Ok(e)) => e,
            _ => return "553 5.1.3 An address the relay cannot use".to_string(),
        };
        self.pace.until_ready().await;
        match self.transport.send_raw(&envelope, message).await {
            Ok(resp) => {
                let words = resp.message().collect::<Vec<_>>().join(" ");
                format!("{} {}", u16::from(resp.code()), one_line(&words))
            }
            Err(e) => match e.status() {
                Some(code) => format!("{} {}", u16::from(code), one_line(&reply_words(&e))),
                // No answer from upstream: the message was not accepted; try again later.
                None => format!(
                    "451 4.4.1 The relay's upstream did not answer ({})",
                    one_line(&e.to_string())
                ),
            },
        }
    }

    /// Serves SMTP on `listener` until `stop`.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        stop: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<()> {
        loop {
            let (stream, peer) = tokio::select! {
                () = stop.cancelled() => return Ok(()),
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting an SMTP connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = self.sessions.clone().try_acquire_owned() else {
                let mut stream = stream;
                let _ = stream
                    .write_all(b"421 4.3.2 Too many sessions, try again later\r\n")
                    .await;
                continue;
            };
            let relay = self.clone();
            tokio::spawn(async move {
                let _slot = slot;
                if let Err(e) = relay.session(stream).await {
                    tracing::debug!(%peer, error = %e, "SMTP session ended");
                }
            });
        }
    }

    async fn session(&self, stream: TcpStream) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        write.write_all(b"220 finrep-relay ESMTP\r\n").await?;
        let mut state = State::Connected;
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = tokio::time::timeout(IDLE, read_line(&mut reader, &mut line))
                .await
                .map_err(|_| std::io::Error::other("idle"))??;
            if n == 0 {
                return Ok(());
            }
            let text = String::from_utf8_lossy(&line);
            let step = session::command(state, &text, &self.allowed_domains);
            write.write_all(step.reply.as_bytes()).await?;
            write.write_all(b"\r\n").await?;
            state = step.next;
            match state {
                State::Closed => return Ok(()),
                State::Data { from, to } => {
                    let reply = match read_message(&mut reader).await? {
                        Some(message) => self.forward(&from, &to, &message).await,
                        None => format!("552 5.3.4 Message larger than {MAX_MESSAGE_BYTES} bytes"),
                    };
                    write.write_all(reply.as_bytes()).await?;
                    write.write_all(b"\r\n").await?;
                    state = State::Ready;
                }
                _ => {}
            }
        }
    }
}

/// Reads one line (at most `MAX_LINE_BYTES`; a longer one is cut there).
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut limited = reader.take(MAX_LINE_BYTES as u64);
    limited.read_until(b'\n', line).await
}

/// The message of one DATA, dot-stuffing undone; `None` when it was too large (read to its
/// end all the same, so the session stays in step).
async fn read_message<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut message = Vec::new();
    let mut too_large = false;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = tokio::time::timeout(IDLE, read_line(reader, &mut line))
            .await
            .map_err(|_| std::io::Error::other("idle in DATA"))??;
        if n == 0 {
            return Err(std::io::Error::other("the client went away in DATA"));
        }
        let Some(content) = session::data_line(&line) else {
            return Ok((!too_large).then_some(message));
        };
        if message.len() + content.len() > MAX_MESSAGE_BYTES {
            too_large = true;
            message.clear();
        } else if !too_large {
            message.extend_from_slice(content);
        }
    }
}

/// The server's words of a negative reply, without lettre's "permanent error (550): ".
fn reply_words(e: &lettre::transport::smtp::Error) -> String {
    let text = e.to_string();
    match text.split_once("): ") {
        Some((head, words)) if head.ends_with(|c: char| c.is_ascii_digit()) => words.to_string(),
        _ => text,
    }
}

/// Text safe as one reply line.
fn one_line(s: &str) -> String {
    finrep_core::untrusted::clean(s, 400)
}
