//! The SMTP transport: lettre connections (TLS modes starttls / tls / none) to a guarded
//! server, at most `maxConnections` open and kept between messages, paced by
//! `maxPerMinute`. It turns each transaction into an [`Outcome`]; the loop does the rest.
//!
//! The SMTP host passes the same network guard as sources (a relay on the cluster network is
//! allowed with `--allow-private-networks` or as a trusted host), and credentials are never
//! sent over a plaintext connection unless the report says `allowPlaintextAuth: true`.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use governor::RateLimiter;
use lettre::Message;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;

use super::outcome::{Outcome, Reply, Verdict};
use super::{DeliveryError, DeliveryOptions};
use crate::api::TlsMode;
use crate::guard::{NetworkPolicy, ResolveError};
use crate::plan::{RunPlan, secret_from_env};
use crate::untrusted::{self, MAX_ERROR_CHARS};

/// Classifies an SMTP reply code. Only mailbox-level permanent rejections (550, 551, 553,
/// or an enhanced status 5.1.x) blacklist; vacation replies and asynchronous reports never
/// reach this point. A 4xx, a dropped connection or a timeout is worth another try.
pub fn verdict(code: Option<u16>, reply: &str) -> Verdict {
    match code {
        Some(c) if (200..300).contains(&c) => Verdict::Accepted,
        Some(550 | 551 | 553) => Verdict::RecipientGone,
        Some(c) if (500..600).contains(&c) && reply.contains("5.1.") => Verdict::RecipientGone,
        Some(c) if (500..600).contains(&c) => Verdict::Refused,
        _ => Verdict::Deferred(None),
    }
}

/// An SMTP answer as the loop's outcome. A timeout or dropped connection is worth another
/// try (the copy is resent with its Message-ID), and without a reply code counts towards the
/// server being unreachable.
fn outcome(code: Option<u16>, text: String) -> Outcome {
    let reply = Reply::new(code.map(i32::from), text);
    verdict(code, &reply.text).outcome(reply, code.is_some(), None)
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

/// The SMTP transport of one run.
pub struct SmtpTransport {
    host: String,
    port: u16,
    tls: TlsMode,
    credentials: Option<Credentials>,
    timeout: Duration,
    hello: ClientId,
    /// The server's addresses, resolved and guarded once per run.
    addrs: Vec<SocketAddr>,
    reuse: bool,
    /// Connections open between messages (at most `maxConnections`, one per worker).
    idle: Mutex<Vec<AsyncSmtpConnection>>,
    limiter: governor::DefaultDirectRateLimiter,
    pub(super) connections: usize,
}

impl SmtpTransport {
    /// Settings, credentials (from the environment) and the guarded server addresses.
    pub async fn open(plan: &RunPlan, opts: &DeliveryOptions) -> Result<Self, DeliveryError> {
        crate::tls::install_crypto_provider();
        let smtp = plan.smtp.as_ref().ok_or_else(|| {
            DeliveryError::Config(
                "the report has e-mail recipients but no spec.smtp to send them through"
                    .to_string(),
            )
        })?;
        if smtp.tls == TlsMode::None
            && smtp.credentials_secret_ref.is_some()
            && !smtp.allow_plaintext_auth
        {
            return Err(DeliveryError::Config(
                "smtp.credentialsSecretRef with tls: none would send the password in clear text; use starttls or tls, or set smtp.allowPlaintextAuth: true for a relay on a trusted network".to_string(),
            ));
        }
        let secret = |name: &str, key: &str| {
            secret_from_env(name, key)
                .map_err(|e| DeliveryError::Config(format!("SMTP credentials: {e}")))
        };
        let credentials = match &smtp.credentials_secret_ref {
            Some(c) => Some(Credentials::new(
                secret(&c.name, &c.username_key)?,
                secret(&c.name, &c.password_key)?,
            )),
            None => None,
        };
        let quota = finrep_core::pace::even_per_minute(smtp.max_per_minute);
        let addrs = addresses(&opts.network, &smtp.host, smtp.port).await?;
        Ok(Self {
            host: smtp.host.clone(),
            port: smtp.port,
            tls: smtp.tls,
            credentials,
            timeout: opts.smtp_timeout,
            hello: ClientId::default(),
            addrs,
            reuse: opts.reuse_connections,
            idle: Mutex::new(Vec::new()),
            limiter: RateLimiter::direct(quota),
            connections: smtp.max_connections.max(1) as usize,
        })
    }

    /// One connection opened and closed before the first message: a server that does not
    /// answer fails the run at once, with every row left for the retry.
    pub async fn check(&self) -> Result<(), DeliveryError> {
        match self.connect().await {
            Ok(mut conn) => {
                let _ = conn.quit().await;
                Ok(())
            }
            Err(e) => Err(self.unreachable(e.to_string())),
        }
    }

    pub fn unreachable(&self, reason: String) -> DeliveryError {
        DeliveryError::Unreachable {
            what: format!("SMTP server {}:{}", self.host, self.port),
            reason,
        }
    }

    /// Waits for the run's `maxPerMinute`.
    pub async fn pace(&self) {
        self.limiter.until_ready().await;
    }

    /// One SMTP transaction on an idle connection, or a new one.
    pub async fn send(&self, message: &Message) -> Outcome {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut conn = match idle {
            Some(c) => c,
            None => match self.connect().await {
                Ok(c) => c,
                Err(e) => return outcome(None, format!("connect: {e}")),
            },
        };
        let envelope = message.envelope();
        let bytes = message.formatted();
        match tokio::time::timeout(self.timeout, conn.send(envelope, &bytes)).await {
            Ok(Ok(resp)) => {
                // The server's words are stored and logged: cleaned like any network text.
                let text = untrusted::clean(
                    &resp.message().collect::<Vec<_>>().join(" "),
                    MAX_ERROR_CHARS,
                );
                self.put_back(conn).await;
                outcome(Some(u16::from(resp.code())), text)
            }
            // lettre has aborted the connection; the next message opens a new one.
            Ok(Err(e)) => outcome(
                e.status().map(u16::from),
                untrusted::clean(&e.to_string(), MAX_ERROR_CHARS),
            ),
            Err(_) => outcome(None, format!("no reply within {:?}", self.timeout)),
        }
    }

    async fn put_back(&self, mut conn: AsyncSmtpConnection) {
        if self.reuse {
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
        } else {
            let _ = conn.quit().await;
        }
    }

    /// Says goodbye on every idle connection.
    pub async fn close(&self) {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        for mut c in idle {
            let _ = c.quit().await;
        }
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, ConnectError> {
        let tls = || TlsParameters::new(self.host.clone());
        let connecting = async {
            let mut conn = match self.tls {
                TlsMode::Tls => {
                    AsyncSmtpConnection::connect_tokio1(
                        &self.addrs[..],
                        Some(self.timeout),
                        &self.hello,
                        Some(tls()?),
                        None,
                    )
                    .await?
                }
                TlsMode::Starttls | TlsMode::None => {
                    let stream = tokio::net::TcpStream::connect(&self.addrs[..]).await?;
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

/// The server's addresses the network guard allows. A name that does not resolve may resolve
/// later (retry the run); a refused address is a setting to change.
async fn addresses(
    network: &NetworkPolicy,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, DeliveryError> {
    network.resolve(host, port).await.map_err(|e| match e {
        ResolveError::Lookup(reason) => DeliveryError::Unreachable {
            what: format!("SMTP server {host}:{port}"),
            reason,
        },
        ResolveError::Blocked(b) => DeliveryError::Config(format!("smtp.host {host}: {}", b.0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_verdicts() {
        assert_eq!(verdict(Some(250), "ok"), Verdict::Accepted);
        assert_eq!(verdict(Some(421), "busy"), Verdict::Deferred(None));
        assert_eq!(verdict(Some(451), "try later"), Verdict::Deferred(None));
        assert_eq!(verdict(None, "connection reset"), Verdict::Deferred(None));
        assert_eq!(verdict(Some(550), "no such user"), Verdict::RecipientGone);
        assert_eq!(verdict(Some(553), "bad mailbox"), Verdict::RecipientGone);
        assert_eq!(
            verdict(Some(554), "5.1.1 unknown user"),
            Verdict::RecipientGone
        );
        assert_eq!(verdict(Some(552), "5.3.4 too big"), Verdict::Refused);
        assert_eq!(verdict(Some(554), "5.7.1 spam"), Verdict::Refused);
    }

    #[test]
    fn no_reply_code_means_no_answer() {
        assert!(matches!(
            outcome(None, "connection refused".into()),
            Outcome::Deferred {
                answered: false,
                ..
            }
        ));
        assert!(matches!(
            outcome(Some(451), "later".into()),
            Outcome::Deferred { answered: true, .. }
        ));
    }
}
