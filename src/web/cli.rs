//! `finrep web`'s command line.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::{Account, AppState, WebSettings};
use crate::store::Store;

/// Serve one-click unsubscribe and the console (`finrep web`), or print a password hash.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct WebArgs {
    #[command(subcommand)]
    action: Option<WebAction>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum WebAction {
    /// Read a password from standard input (one line) and print its argon2 hash, for the
    /// console's Secret (FINREP_WEB_PASSWORD_HASH).
    HashPassword,
    /// End every console session now (after a suspected leak; a changed password or account
    /// name already ends the sessions made with the old one).
    RevokeSessions {
        /// PostgreSQL URL.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Address to serve on.
    #[arg(long, env = "FINREP_WEB_LISTEN", default_value = "0.0.0.0:8081")]
    listen: SocketAddr,
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, default_value = "")]
    database_url: String,
    /// Most database connections.
    #[arg(long, default_value_t = 4)]
    max_connections: u32,
    /// The console's account name.
    #[arg(long, env = "FINREP_WEB_USER", default_value = "admin")]
    user: String,
    /// The console password's argon2 hash (from a Secret); without it the console is off and
    /// only unsubscribe is served.
    #[arg(long, env = "FINREP_WEB_PASSWORD_HASH", hide_env_values = true)]
    password_hash: Option<String>,
    /// Let the console lift blacklist entries (standalone mode; in Kubernetes the
    /// Recipient's finrep.io/unblock annotation does it).
    #[arg(long, env = "FINREP_WEB_MANAGE_SUBSCRIPTIONS", default_value_t = false)]
    manage_subscriptions: bool,
    /// Hours a console session lasts.
    #[arg(long, default_value_t = 8)]
    session_hours: u64,
    /// Time zone the console shows times in.
    #[arg(long, env = "FINREP_WEB_TIME_ZONE", default_value = "Asia/Shanghai")]
    time_zone: chrono_tz::Tz,
    /// Rate-limit logins by the last X-Forwarded-For address (behind an ingress).
    #[arg(long, env = "FINREP_WEB_TRUST_FORWARDED_FOR", default_value_t = false)]
    trust_forwarded_for: bool,
    /// Address ranges of the proxies (an ingress controller's pods) whose X-Forwarded-For is
    /// believed, comma-separated CIDRs; required with --trust-forwarded-for.
    #[arg(
        long = "trusted-proxy",
        env = "FINREP_WEB_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<ipnet::IpNet>,
    /// Minutes a console session may sit unused before it ends.
    #[arg(long, env = "FINREP_WEB_SESSION_IDLE_MINUTES", default_value_t = 30)]
    session_idle_minutes: u64,
    /// Client connections served at once (more are closed at once).
    #[arg(long, env = "FINREP_WEB_MAX_CLIENT_CONNECTIONS", default_value_t = 256)]
    max_client_connections: usize,
}

impl ServeArgs {
    /// The proxies whose X-Forwarded-For is believed: with --trust-forwarded-for, the ranges
    /// given (none given is a mistake: every peer the network admits would be believed).
    fn proxies(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        match (self.trust_forwarded_for, self.trusted_proxies.is_empty()) {
            (true, true) => anyhow::bail!(
                "--trust-forwarded-for needs --trusted-proxy CIDR (the ingress controller's address range): otherwise any client could choose the address its logins are counted under"
            ),
            (true, false) => Ok(self.trusted_proxies.clone()),
            (false, _) => Ok(Vec::new()),
        }
    }

    fn settings(&self) -> anyhow::Result<WebSettings> {
        let account = match self.password_hash.as_deref().map(str::trim) {
            None | Some("") => {
                tracing::warn!(
                    "no FINREP_WEB_PASSWORD_HASH: the console is off, unsubscribe is served"
                );
                None
            }
            Some(hash) => {
                super::verify_password_hash(hash).map_err(anyhow::Error::msg)?;
                Some(Account {
                    user: self.user.clone(),
                    password_hash: hash.to_string(),
                })
            }
        };
        let unsubscribe_keys = unsubscribe_keys()?;
        Ok(WebSettings {
            unsubscribe_keys,
            account,
            manage_subscriptions: self.manage_subscriptions,
            session_ttl: Duration::from_secs(self.session_hours.clamp(1, 24 * 30) * 3600),
            time_zone: self.time_zone,
            trusted_proxies: self.proxies()?,
            session_idle: Duration::from_secs(self.session_idle_minutes.clamp(1, 24 * 60) * 60),
            max_connections: self.max_client_connections.clamp(8, 65_536),
            ..WebSettings::default()
        })
    }
}

/// The current unsubscribe key (FINREP_UNSUBSCRIBE_KEY) and the previous ones
/// (FINREP_UNSUBSCRIBE_PREVIOUS_KEYS, separated by commas or new lines), which keep links
/// already sent working after a rotation.
fn unsubscribe_keys() -> anyhow::Result<finrep_core::unsubscribe::KeyRing> {
    let current = std::env::var("FINREP_UNSUBSCRIBE_KEY").ok();
    let previous = std::env::var("FINREP_UNSUBSCRIBE_PREVIOUS_KEYS").unwrap_or_default();
    if current.is_none() {
        tracing::warn!("no FINREP_UNSUBSCRIBE_KEY: unsubscribe links cannot be verified");
    }
    let keys: Vec<String> = current
        .into_iter()
        .chain(previous.split([',', '\n']).map(str::trim).map(String::from))
        .filter(|k| !k.is_empty())
        .collect();
    finrep_core::unsubscribe::KeyRing::new(&keys).map_err(|_| {
        anyhow::anyhow!(
            "FINREP_UNSUBSCRIBE_KEY and each of FINREP_UNSUBSCRIBE_PREVIOUS_KEYS must be at least {} bytes",
            finrep_core::unsubscribe::MIN_KEY_BYTES
        )
    })
}

pub fn run(args: &WebArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        Some(WebAction::HashPassword) => hash_password(),
        Some(WebAction::RevokeSessions { ref database_url }) => revoke_sessions(database_url),
        None => serve(&args.serve),
    }
}

fn revoke_sessions(database_url: &str) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ended = runtime.block_on(async {
        let store = Store::connect(database_url, 1, Duration::from_secs(10)).await?;
        anyhow::Ok(store.revoke_sessions().await?)
    })?;
    println!("{ended} console session(s) ended");
    Ok(ExitCode::SUCCESS)
}

fn hash_password() -> anyhow::Result<ExitCode> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.chars().count() < 12 {
        anyhow::bail!("the password must be at least 12 characters");
    }
    println!("{}", super::hash_password(password)?);
    Ok(ExitCode::SUCCESS)
}

fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let settings = args.settings()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // Lazy: the web starts while the database is away and says so on /readyz.
        let store = Store::connect_lazy(
            &args.database_url,
            args.max_connections,
            Duration::from_secs(5),
        )?;
        let state = AppState::new(store, settings)?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        tracing::info!(listen = %args.listen, "finrep web serving");
        let stop = tokio_util::sync::CancellationToken::new();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            crate::signals::terminated().await;
            tracing::info!("SIGTERM: stopping");
            on_signal.cancel();
        });
        super::serve(listener, state, stop).await?;
        Ok(ExitCode::SUCCESS)
    })
}
