//! `finrep relay`'s command line: where it listens, the operator's upstreams and their
//! credentials (from the environment, which the chart fills from Secrets).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use crate::smtp::{Relay, Upstream, UpstreamTls};
use crate::summarizer::SummarizerUpstream;

/// Relay mail and summariser calls of every report through the operator's own login.
#[derive(Args, Debug)]
pub struct RelayArgs {
    /// Where pipeline pods hand over mail (plain SMTP, no login).
    #[arg(long, env = "FINREP_RELAY_SMTP_LISTEN", default_value = "0.0.0.0:2525")]
    smtp_listen: SocketAddr,
    /// Where pipeline pods call the summariser (`/v1/chat/completions`), and `/healthz`.
    #[arg(long, env = "FINREP_RELAY_HTTP_LISTEN", default_value = "0.0.0.0:8090")]
    http_listen: SocketAddr,
    /// The operator's SMTP server.
    #[arg(long, env = "FINREP_RELAY_SMTP_HOST")]
    smtp_host: Option<String>,
    #[arg(long, env = "FINREP_RELAY_SMTP_PORT", default_value_t = 587)]
    smtp_port: u16,
    #[arg(
        long,
        env = "FINREP_RELAY_SMTP_TLS",
        value_enum,
        default_value = "starttls"
    )]
    smtp_tls: UpstreamTls,
    /// Messages a minute to the operator's server, shared by every run (its limit).
    #[arg(long, env = "FINREP_RELAY_SMTP_MAX_PER_MINUTE", default_value_t = 1200)]
    smtp_max_per_minute: u32,
    /// Sender domains the relay accepts in MAIL FROM (comma-separated; empty: any). The
    /// operator's login sends only as the operator's domains.
    #[arg(long, env = "FINREP_RELAY_SENDER_DOMAINS", value_delimiter = ',')]
    sender_domain: Vec<String>,
    /// The operator's OpenAI-compatible endpoint (e.g. https://api.example.com/v1).
    #[arg(long, env = "FINREP_RELAY_SUMMARIZER_ENDPOINT")]
    summarizer_endpoint: Option<url::Url>,
    /// The model every relayed call uses (empty: the report's).
    #[arg(long, env = "FINREP_RELAY_SUMMARIZER_MODEL")]
    summarizer_model: Option<String>,
}

fn env_secret(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl RelayArgs {
    fn upstream(&self) -> anyhow::Result<Option<Upstream>> {
        let Some(host) = self.smtp_host.clone().filter(|h| !h.is_empty()) else {
            return Ok(None);
        };
        let credentials = match (
            env_secret("FINREP_RELAY_SMTP_USERNAME"),
            env_secret("FINREP_RELAY_SMTP_PASSWORD"),
        ) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            _ => anyhow::bail!(
                "FINREP_RELAY_SMTP_USERNAME and FINREP_RELAY_SMTP_PASSWORD go together"
            ),
        };
        Ok(Some(Upstream {
            host,
            port: self.smtp_port,
            tls: self.smtp_tls,
            credentials,
            timeout: Duration::from_secs(60),
        }))
    }

    fn summarizer(&self) -> Option<SummarizerUpstream> {
        self.summarizer_endpoint
            .clone()
            .map(|endpoint| SummarizerUpstream {
                endpoint,
                api_key: env_secret("FINREP_RELAY_SUMMARIZER_API_KEY"),
                model: self.summarizer_model.clone().filter(|m| !m.is_empty()),
                timeout: Duration::from_secs(60),
            })
    }
}

pub fn run(args: &RelayArgs) -> anyhow::Result<ExitCode> {
    let upstream = args.upstream()?;
    let summarizer = args.summarizer();
    anyhow::ensure!(
        upstream.is_some() || summarizer.is_some(),
        "nothing to relay: give --smtp-host and/or --summarizer-endpoint"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let stop = tokio_util::sync::CancellationToken::new();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            finrep_core::signals::terminated().await;
            on_signal.cancel();
        });
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(upstream) = &upstream {
            let relay = Arc::new(Relay::new(
                upstream,
                args.smtp_max_per_minute,
                args.sender_domain.clone(),
            )?);
            let listener = tokio::net::TcpListener::bind(args.smtp_listen)
                .await
                .with_context(|| format!("listening on {}", args.smtp_listen))?;
            tracing::info!(listen = %args.smtp_listen, upstream = %upstream.host, "relaying mail");
            tasks.spawn(relay.serve(listener, stop.clone()));
        }
        let app = crate::summarizer::router(summarizer).map_err(anyhow::Error::msg)?;
        let listener = tokio::net::TcpListener::bind(args.http_listen)
            .await
            .with_context(|| format!("listening on {}", args.http_listen))?;
        tracing::info!(listen = %args.http_listen, "relay HTTP serving");
        let http_stop = stop.clone();
        tasks.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(http_stop.cancelled_owned())
                .await
        });
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
