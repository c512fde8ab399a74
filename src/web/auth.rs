//! The console's login: one account whose password is an argon2 hash from a Secret, sessions
//! kept in PostgreSQL (only the hash of the cookie), a CSRF token per session, and login
//! attempts limited per client address and per account name.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use argon2::{Argon2, PasswordHash, PasswordHasher as _, PasswordVerifier as _};
use axum::extract::{ConnectInfo, Form, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::Utc;
use sha2::{Digest as _, Sha256};

use super::login_limit::{LogDecision, LoginLimits, Refusal};
use super::render::Chrome;
use super::{AppState, WebError, WebResponse};

pub const SESSION_COOKIE: &str = "finrep_session";
const LOGIN_CSRF_COOKIE: &str = "finrep_login_csrf";
/// Longest user name or password looked at: argon2 of a megabyte is a denial of service.
const MAX_CREDENTIAL: usize = 256;

/// argon2id with 7 MiB and 5 passes: one of OWASP's equivalent settings (with 19 MiB and 2,
/// 12 MiB and 3 …), the one that keeps a login within the web's memory budget. A hash made
/// with other settings still verifies: they are read from the hash itself.
const HASH_MEMORY_KIB: u32 = 7 * 1024;
const HASH_PASSES: u32 = 5;

/// Prints a PHC string for `password` (a fresh random salt each time).
pub fn hash_password(password: &str) -> Result<String, WebError> {
    let params = argon2::Params::new(HASH_MEMORY_KIB, HASH_PASSES, 1, None)
        .map_err(|e| WebError::Internal(format!("argon2 parameters: {e}")))?;
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| WebError::Internal(format!("hashing the password failed: {e}")))
}

/// Checks that `hash` is an argon2 PHC string this build can verify against.
pub fn verify_password_hash(hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(hash.trim()).map_err(|e| {
        format!("not a PHC password hash ({e}); `finrep web hash-password` prints one")
    })?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(format!(
            "the password hash uses {}; only argon2 hashes are accepted",
            parsed.algorithm
        ));
    }
    Ok(())
}

fn password_matches(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash.trim())
        .is_ok()
}

/// Equality that takes as long whatever the first differing byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_token() -> Result<String, WebError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| WebError::Internal(format!("no randomness for a token: {e}")))?;
    Ok(B64.encode(bytes))
}

fn session_hash(value: &str) -> Vec<u8> {
    Sha256::digest(value.as_bytes()).to_vec()
}

/// The value of cookie `name` in a request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// A `Set-Cookie` value that only this site's pages send back, never to scripts.
fn set_cookie(name: &str, value: &str, path: &str, max_age_secs: u64) -> HeaderValue {
    let text = format!(
        "{name}={value}; Path={path}; Max-Age={max_age_secs}; Secure; HttpOnly; SameSite=Strict"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Failed logins allowed (see `login_limit`), and one password hash checked at a time (argon2
/// holds its memory cost, 7 MiB for our hashes, while it runs).
pub struct LoginGuard {
    limits: std::sync::Mutex<LoginLimits>,
    hashing: tokio::sync::Semaphore,
}

impl LoginGuard {
    pub fn new() -> Self {
        Self {
            limits: std::sync::Mutex::new(LoginLimits::new()),
            hashing: tokio::sync::Semaphore::new(1),
        }
    }

    fn limits(&self) -> std::sync::MutexGuard<'_, LoginLimits> {
        // A panic while holding the lock leaves counts that are still counts.
        self.limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn admit(&self, client: IpAddr, for_account: bool) -> Result<(), Refusal> {
        self.limits().admit(client, for_account, Instant::now())
    }

    fn succeeded(&self, client: IpAddr, for_account: bool) {
        self.limits().succeeded(client, for_account);
    }

    /// Logs `what` unless this window already logged its share (then it is counted).
    fn log_sampled(&self, client: IpAddr, what: &str) {
        if let LogDecision::Log { suppressed } = self.limits().log_sample(Instant::now()) {
            tracing::warn!(%client, suppressed_since_last_window = suppressed, "{what}");
        }
    }

    pub fn prune(&self) {
        self.limits().prune(Instant::now());
    }
}

/// The address a request came from: the peer, or — when the peer is one of the configured
/// proxies (an ingress) — the last X-Forwarded-For entry, the one that proxy appended. Any
/// other peer's X-Forwarded-For is the client's word and ignored.
fn client_address(
    parts_headers: &HeaderMap,
    peer: Option<SocketAddr>,
    trusted_proxies: &[ipnet::IpNet],
) -> IpAddr {
    let from_proxy = peer.is_some_and(|p| trusted_proxies.iter().any(|n| n.contains(&p.ip())));
    // Only the entry the ingress appended counts: earlier ones are whatever the client sent.
    let forwarded = from_proxy
        .then(|| {
            parts_headers
                .get_all("x-forwarded-for")
                .iter()
                .next_back()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|s| s.trim().parse::<IpAddr>().ok())
        })
        .flatten();
    forwarded
        .or(peer.map(|p| p.ip()))
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// The peer address of a request, when the server recorded one.
pub struct Peer(Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(p)| *p),
        ))
    }
}

/// A request from a logged-in person.
pub struct Session {
    pub account: String,
    pub csrf: String,
    id_hash: Vec<u8>,
}

impl Session {
    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, submitted: &str) -> Result<(), WebError> {
        if same(submitted.as_bytes(), self.csrf.as_bytes()) {
            Ok(())
        } else {
            Err(WebError::Csrf)
        }
    }
}

impl FromRequestParts<Arc<AppState>> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let to_login = || Redirect::to("/login").into_response();
        if state.settings.account.is_none() {
            return Err(to_login());
        }
        let Some(value) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login());
        };
        let id_hash = session_hash(value);
        let Some(account) = state.settings.account.as_ref() else {
            return Err(to_login());
        };
        let idle = chrono::Duration::from_std(state.settings.session_idle)
            .unwrap_or(chrono::Duration::minutes(30));
        let found = state
            .store
            .session(&id_hash, Utc::now(), idle, &account.credential_epoch())
            .await;
        match found {
            Ok(Some(row)) => Ok(Session {
                account: row.account,
                csrf: row.csrf_token,
                id_hash,
            }),
            Ok(None) => Err(to_login()),
            Err(e) => Err(WebError::from(e).into_response()),
        }
    }
}

#[derive(serde::Deserialize)]
pub struct LangQuery {
    pub lang: Option<String>,
}

/// `GET /login`: the form, with a CSRF token bound to a short-lived cookie.
pub async fn login_page(
    State(state): State<Arc<AppState>>,
    axum::extract::Query(q): axum::extract::Query<LangQuery>,
    headers: HeaderMap,
) -> WebResponse {
    login_form(&state, &headers, q.lang.as_deref(), StatusCode::OK, false)
}

fn login_form(
    state: &AppState,
    headers: &HeaderMap,
    lang: Option<&str>,
    status: StatusCode,
    failed: bool,
) -> WebResponse {
    let token = random_token()?;
    let chrome = Chrome::new(headers, lang, "/login", None);
    let body = state.pages.render(
        "login.html",
        &chrome,
        minijinja::context! {
            login_csrf => &token,
            failed => failed,
            enabled => state.settings.account.is_some(),
        },
    )?;
    let mut response = (status, body).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_CSRF_COOKIE, &token, "/login", 3600),
    );
    chrome.remember_language(&mut response);
    Ok(response)
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /login`: a session cookie and the dashboard, or the form again.
pub async fn login(
    State(state): State<Arc<AppState>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> WebResponse {
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same(form.csrf.as_bytes(), expected.as_bytes()) {
        return Err(WebError::Csrf);
    }
    let Some(account) = state.settings.account.clone() else {
        return login_form(&state, &headers, None, StatusCode::FORBIDDEN, false);
    };
    let client = client_address(&headers, peer, &state.settings.trusted_proxies);
    let names_account = form.user.eq_ignore_ascii_case(&account.user);
    if let Err(why) = state.logins.admit(client, names_account) {
        state.metrics.login("rate-limited");
        state.logins.log_sampled(
            client,
            &format!("login attempts over the limit ({})", why.as_str()),
        );
        return Err(WebError::RateLimited);
    }
    if !credentials_match(&state, &account, form.user, form.password).await? {
        state.metrics.login("refused");
        state.logins.log_sampled(client, "login refused");
        return login_form(&state, &headers, None, StatusCode::UNAUTHORIZED, true);
    }
    state.logins.succeeded(client, names_account);
    state.metrics.login("ok");
    let value = random_token()?;
    let ttl = state.settings.session_ttl;
    // Both ends of the session on this process's clock, as its checks are.
    let now = Utc::now();
    let expires = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(8));
    state
        .store
        .create_session(finrep_core::store::NewSession {
            id_hash: &session_hash(&value),
            account: &account.user,
            csrf_token: &random_token()?,
            started_at: now,
            expires_at: expires,
            credential_epoch: &account.credential_epoch(),
        })
        .await?;
    let mut response = Redirect::to("/console").into_response();
    let h = response.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &value, "/", ttl.as_secs()),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(LOGIN_CSRF_COOKIE, "", "/login", 0),
    );
    Ok(response)
}

async fn credentials_match(
    state: &AppState,
    account: &super::Account,
    user: String,
    password: String,
) -> Result<bool, WebError> {
    if user.len() > MAX_CREDENTIAL || password.len() > MAX_CREDENTIAL {
        return Ok(false);
    }
    let _permit = state
        .logins
        .hashing
        .acquire()
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?;
    let hash = account.password_hash.clone();
    // The hash is checked even for a wrong name, so timing does not tell names apart.
    let password_ok = tokio::task::spawn_blocking(move || password_matches(&password, &hash))
        .await
        .map_err(|e| WebError::Internal(format!("the password check failed: {e}")))?;
    Ok(password_ok && same(user.as_bytes(), account.user.as_bytes()))
}

#[derive(serde::Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /logout`: the session ends here and in the database.
pub async fn logout(
    State(state): State<Arc<AppState>>,
    session: Session,
    Form(form): Form<CsrfForm>,
) -> WebResponse {
    session.check_csrf(&form.csrf)?;
    state.store.end_session(&session.id_hash).await?;
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", "/", 0));
    Ok(response)
}

/// Drops expired sessions and idle rate-limit entries every few minutes.
pub async fn prune_periodically(state: Arc<AppState>, stop: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(std::time::Duration::from_secs(300)) => {}
        }
        state.logins.prune();
        if let Err(e) = state.store.prune_sessions(Utc::now()).await {
            tracing::warn!(error = %e, "pruning expired sessions failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{hash}");
        assert!(verify_password_hash(&hash).is_ok());
        assert!(password_matches("correct horse", &hash));
        assert!(!password_matches("correct horse ", &hash));
        assert!(verify_password_hash("plain-text").is_err());
        assert!(!password_matches("x", "not a hash"));
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("xfinrep_session=bad; finrep_session=good; other=1"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("good"));
        assert_eq!(cookie(&h, "missing"), None);
    }

    #[test]
    fn forwarded_for_only_when_trusted() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.2.3.4, 10.0.0.9"),
        );
        let peer = Some(SocketAddr::from(([127, 0, 0, 1], 1)));
        assert_eq!(client_address(&h, peer, &[]), IpAddr::from([127, 0, 0, 1]));
        let proxies: Vec<ipnet::IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        assert_eq!(
            client_address(&h, peer, &proxies),
            IpAddr::from([10, 0, 0, 9])
        );
        // A peer outside the proxies' ranges is not believed.
        let stranger = Some(SocketAddr::from(([10, 42, 0, 7], 1)));
        assert_eq!(
            client_address(&h, stranger, &proxies),
            IpAddr::from([10, 42, 0, 7])
        );
    }
}
