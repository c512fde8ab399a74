//! `finrep web`: one-click unsubscribe for recipients and the console for the people who run
//! finrep, in one process that reads and writes PostgreSQL and never the Kubernetes API.
//!
//! Public: `/unsubscribe` (the token is the authority), `/healthz`, `/readyz`, `/metrics`,
//! `/static/*`. Everything under `/console` needs a session from `/login`.

#![forbid(unsafe_code)]

// The core's modules, reachable as `crate::store` and so on from every module here (the core's
// `unsubscribe` links are named in full: this crate has an `unsubscribe` page of its own).
use finrep_core::{run, signals, store, untrusted};

mod auth;
mod chart;
pub mod cli;
mod console;
mod download;
mod error;
mod i18n;
mod login_limit;
mod metrics;
mod previews;
mod render;
mod server;
mod unsubscribe;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::routing::{get, post};
use tower_http::set_header::SetResponseHeaderLayer;

pub use auth::{hash_password, verify_password_hash};
pub use error::WebError;
pub use i18n::Lang;
pub use metrics::WebMetrics;

use crate::store::Store;

/// The console's one account.
#[derive(Clone)]
pub struct Account {
    pub user: String,
    /// An argon2 PHC string (`finrep web hash-password` prints one).
    pub password_hash: String,
}

impl Account {
    /// What a session is bound to: a hash of the account name and password hash, so a new
    /// password or name ends the sessions opened with the old one.
    pub fn credential_epoch(&self) -> String {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(self.user.as_bytes());
        h.update(b"\0");
        h.update(self.password_hash.trim().as_bytes());
        h.finalize()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// How `finrep web` runs.
#[derive(Clone, Debug)]
pub struct WebSettings {
    /// The master keys unsubscribe links are verified with: the current one (the chart's
    /// FINREP_UNSUBSCRIBE_KEY) and the previous ones kept after a rotation; empty: every link
    /// is refused as not verifiable.
    pub unsubscribe_keys: finrep_core::unsubscribe::KeyRing,
    /// `None`: the console is off (only unsubscribe and the probes are served).
    pub account: Option<Account>,
    /// The console may lift blacklist entries (standalone mode; in Kubernetes the Recipient's
    /// `finrep.io/unblock` annotation does it).
    pub manage_subscriptions: bool,
    /// How long a console session lasts.
    pub session_ttl: Duration,
    /// Times are shown in this zone.
    pub time_zone: chrono_tz::Tz,
    /// Peers (an ingress) whose last X-Forwarded-For entry is taken as the client address for
    /// login limits; empty: the peer is the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// How long a console session may sit unused before it ends.
    pub session_idle: Duration,
    /// Connections served at once; more are closed at once (each holds memory).
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and how long an idle
    /// keep-alive connection is kept.
    pub header_read_timeout: Duration,
}

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            unsubscribe_keys: Default::default(),
            account: None,
            manage_subscriptions: false,
            session_ttl: Duration::from_secs(8 * 3600),
            time_zone: chrono_tz::Asia::Shanghai,
            trusted_proxies: Vec::new(),
            session_idle: Duration::from_secs(30 * 60),
            max_connections: 256,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// What every handler shares.
pub struct AppState {
    pub store: Store,
    pub settings: WebSettings,
    pub metrics: Arc<WebMetrics>,
    pages: render::Pages,
    logins: auth::LoginGuard,
}

impl AppState {
    pub fn new(store: Store, settings: WebSettings) -> Result<Arc<Self>, WebError> {
        Ok(Arc::new(Self {
            pages: render::Pages::new(settings.time_zone)?,
            store,
            settings,
            metrics: WebMetrics::new(),
            logins: auth::LoginGuard::new(),
        }))
    }
}

/// Security headers every answer carries unless a handler set its own (the sandboxed report
/// view does).
fn security_headers(router: Router) -> Router {
    const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
        form-action 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'";
    let headers: [(header::HeaderName, &'static str); 6] = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    headers.into_iter().fold(router, |r, (name, value)| {
        r.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ))
    })
}

/// Every route of `finrep web`.
pub fn router(state: Arc<AppState>) -> Router {
    let console = Router::new()
        .route("/console", get(console::dashboard))
        .route("/console/reports", get(console::archive))
        .route("/console/reports/{id}", get(console::report))
        .route("/console/reports/{id}/view", get(download::sandboxed_html))
        .route(
            "/console/reports/{id}/report.html",
            get(download::html_file),
        )
        .route("/console/reports/{id}/report.eml", get(download::eml_file))
        .route("/console/reports/{id}/deliveries", get(console::deliveries))
        .route("/console/deliveries", get(console::delivery_search))
        .route("/console/recipients", get(console::recipients))
        .route(
            "/console/recipients/resubscribe",
            post(console::resubscribe),
        )
        .route("/console/sources", get(console::sources))
        .route("/console/previews/{id}", get(previews::preview))
        .route("/console/previews/{id}/view", get(previews::sandboxed_html));
    let public = Router::new()
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/console") }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::serve))
        .route("/static/console.css", get(render::stylesheet))
        .route(
            "/unsubscribe",
            get(unsubscribe::confirm).post(unsubscribe::one_click),
        )
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout));
    let router = public
        .merge(console)
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        // Forms and one-click posts are small; nothing else is accepted.
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        // Outermost: a 408 or 413 of the layers above is a page too.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            error::pages,
        ))
        .with_state(state);
    security_headers(router)
}

async fn readyz(axum::extract::State(state): axum::extract::State<Arc<AppState>>) -> WebResponse {
    if state.store.ping().await {
        Ok((axum::http::StatusCode::OK, "ready\n").into_response())
    } else {
        Ok((
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "the database does not answer\n",
        )
            .into_response())
    }
}

use axum::response::IntoResponse as _;

/// What a handler answers.
pub type WebResponse = Result<axum::response::Response, WebError>;

/// Serves until `stop` is cancelled, then lets requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let pruner = tokio::spawn(auth::prune_periodically(state.clone(), stop.clone()));
    let result = server::serve(listener, state, stop).await;
    pruner.abort();
    result
}
