//! HTTP fetching of sources: bounded concurrency overall and per host, one total deadline per
//! fetch, retries with backoff on connection errors, 5xx and 429 (honouring Retry-After),
//! conditional GET, a cap on the decompressed body, limited redirects, and the SSRF guard.
//!
//! A request carrying headers from a Secret (an API key) goes through a client that follows
//! same-origin redirects only: reqwest drops `Authorization` and cookies on a cross-host
//! redirect but not a custom `X-Api-Key`, and an https → http hop would expose it on the wire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use tokio::sync::Semaphore;
use url::Url;

use crate::guard::{Blocked, GuardedResolver, NetworkPolicy, find_blocked};
use crate::run::FetchErrorKind;

/// Settings of the fetcher shared by all sources of a run.
#[derive(Clone, Debug)]
pub struct FetchConfig {
    pub max_concurrency: usize,
    pub max_per_host: usize,
    /// Retries after the first attempt.
    pub retries: usize,
    pub max_redirects: usize,
    pub policy: NetworkPolicy,
    pub user_agent: String,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            max_concurrency: 32,
            max_per_host: 4,
            retries: 2,
            max_redirects: 5,
            policy: NetworkPolicy::strict(Vec::new()),
            user_agent: format!("finrep/{} (daily report fetcher)", crate::build::VERSION),
        }
    }
}

/// One fetch to make.
#[derive(Clone, Debug, Default)]
pub struct FetchRequest {
    pub url: String,
    pub timeout: Duration,
    pub max_body_bytes: u64,
    pub headers: Vec<(String, String)>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Some header values come from a Secret: no redirect to another origin is followed.
    pub carries_secrets: bool,
}

/// A fetched body (or "not modified").
#[derive(Clone, Debug)]
pub enum FetchOutcome {
    Body(FetchedBody),
    NotModified,
}

#[derive(Clone, Debug)]
pub struct FetchedBody {
    pub status: u16,
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// After redirects; relative item links resolve against it.
    pub final_url: Url,
}

/// Why a fetch failed. `kind()` is the low-cardinality name stored and shown. Messages never
/// hold the request's URL (it may carry a key in its query); the caller names the source.
#[derive(Debug, thiserror::Error, Clone)]
pub enum FetchError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP {status}{}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    Http {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("{0}")]
    Blocked(String),
    #[error("body larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("invalid request: {0}")]
    Config(String),
}

impl FetchError {
    pub fn kind(&self) -> FetchErrorKind {
        match self {
            Self::Timeout(_) => FetchErrorKind::Timeout,
            Self::Http { .. } => FetchErrorKind::Http,
            Self::Blocked(_) => FetchErrorKind::Blocked,
            Self::TooLarge { .. } => FetchErrorKind::TooLarge,
            Self::Connect(_) => FetchErrorKind::Connect,
            Self::Config(_) => FetchErrorKind::Config,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            Self::Connect(_) => true,
            Self::Http { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The HTTP client of a run.
pub struct Fetcher {
    client: reqwest::Client,
    /// For requests carrying secret headers: same-origin redirects only.
    sealed_client: reqwest::Client,
    config: FetchConfig,
    global: Arc<Semaphore>,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Fetcher {
    pub fn new(config: FetchConfig) -> Result<Self, FetchError> {
        crate::tls::install_crypto_provider();
        let build = |same_origin_only: bool| {
            reqwest::Client::builder()
                .user_agent(config.user_agent.clone())
                .redirect(redirect_policy(
                    config.policy.clone(),
                    config.max_redirects,
                    same_origin_only,
                ))
                .dns_resolver(GuardedResolver::new(config.policy.clone()))
                .no_proxy()
                .connect_timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(config.max_per_host)
                .build()
                .map_err(|e| FetchError::Config(e.without_url().to_string()))
        };
        Ok(Self {
            client: build(false)?,
            sealed_client: build(true)?,
            global: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
            hosts: Mutex::new(HashMap::new()),
            config,
        })
    }

    fn host_permits(&self, url: &Url) -> Arc<Semaphore> {
        let key = format!(
            "{}:{}",
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or(0)
        );
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts
            .entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.max_per_host.max(1))))
            .clone()
    }

    /// Fetches one URL within its deadline (queueing for a permit included).
    pub async fn fetch(&self, req: &FetchRequest) -> Result<FetchOutcome, FetchError> {
        let url = Url::parse(&req.url).map_err(|e| FetchError::Config(e.to_string()))?;
        self.config
            .policy
            .check_url(&url)
            .map_err(|b| FetchError::Blocked(b.to_string()))?;
        let headers = request_headers(req)?;
        let deadline = Instant::now() + req.timeout;
        let work = async {
            let host = self.host_permits(&url);
            let _host = host
                .acquire_owned()
                .await
                .map_err(|e| FetchError::Config(e.to_string()))?;
            let _global = self
                .global
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| FetchError::Config(e.to_string()))?;
            let backoff = ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(5))
                .with_max_times(self.config.retries)
                .with_jitter();
            let client = if req.carries_secrets {
                &self.sealed_client
            } else {
                &self.client
            };
            (|| self.attempt(client, &url, &headers, req.max_body_bytes))
                .retry(backoff)
                .sleep(tokio::time::sleep)
                .when(|e: &FetchError| e.retryable())
                .adjust(move |e: &FetchError, planned| {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    let wait = match e {
                        FetchError::Http {
                            retry_after: Some(after),
                            ..
                        } => Some(*after),
                        _ => planned,
                    }?;
                    // A wait that cannot end before the deadline is no retry at all.
                    (wait < remaining).then_some(wait)
                })
                .await
        };
        match tokio::time::timeout_at(deadline.into(), work).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout(req.timeout)),
        }
    }

    async fn attempt(
        &self,
        client: &reqwest::Client,
        url: &Url,
        headers: &HeaderMap,
        max_body: u64,
    ) -> Result<FetchOutcome, FetchError> {
        let mut resp = client
            .get(url.clone())
            .headers(headers.clone())
            .send()
            .await
            .map_err(classify)?;
        let status = resp.status().as_u16();
        if status == 304 {
            return Ok(FetchOutcome::NotModified);
        }
        if !resp.status().is_success() {
            return Err(FetchError::Http {
                status,
                retry_after: retry_after(resp.headers()),
            });
        }
        if resp.content_length().is_some_and(|len| len > max_body) {
            return Err(FetchError::TooLarge { limit: max_body });
        }
        let header_text = |name: header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header_text(header::CONTENT_TYPE);
        let etag = header_text(header::ETAG);
        let last_modified = header_text(header::LAST_MODIFIED);
        let final_url = resp.url().clone();
        // Counted after decompression, so a gzip bomb stops at the cap.
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(classify)? {
            if bytes.len() as u64 + chunk.len() as u64 > max_body {
                return Err(FetchError::TooLarge { limit: max_body });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(FetchOutcome::Body(FetchedBody {
            status,
            bytes,
            content_type,
            etag,
            last_modified,
            final_url,
        }))
    }
}

/// Every hop is checked by the network guard; with `same_origin_only`, a hop to another
/// scheme, host or port is refused.
fn redirect_policy(
    policy: NetworkPolicy,
    max_redirects: usize,
    same_origin_only: bool,
) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > max_redirects {
            return attempt.error(Blocked(format!("more than {max_redirects} redirects")));
        }
        let verdict = match attempt.previous().last() {
            None => Ok(()),
            Some(from) if same_origin_only && from.origin() != attempt.url().origin() => {
                Err(Blocked(format!(
                    "redirect to {} refused: the request carries headers from a Secret, which are never sent to another origin",
                    crate::untrusted::redact_url(attempt.url().as_str())
                )))
            }
            Some(from) => policy.check_redirect(from, attempt.url()),
        };
        match verdict {
            Ok(()) => attempt.follow(),
            Err(b) => attempt.error(b),
        }
    })
}

fn request_headers(req: &FetchRequest) -> Result<HeaderMap, FetchError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static(
            "application/rss+xml, application/atom+xml, application/feed+json, application/json;q=0.9, text/html;q=0.8, */*;q=0.5",
        ),
    );
    for (name, value) in &req.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| FetchError::Config(format!("invalid header name {name:?}")))?;
        // The value may be a secret: never echo it.
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| FetchError::Config(format!("invalid value for header {name}")))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    if let Some(etag) = &req.etag
        && let Ok(v) = HeaderValue::from_str(etag)
    {
        headers.insert(header::IF_NONE_MATCH, v);
    }
    if let Some(lm) = &req.last_modified
        && let Ok(v) = HeaderValue::from_str(lm)
    {
        headers.insert(header::IF_MODIFIED_SINCE, v);
    }
    Ok(headers)
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let secs = (when.timestamp() - chrono::Utc::now().timestamp()).max(0);
    Some(Duration::from_secs(secs as u64))
}

fn classify(e: reqwest::Error) -> FetchError {
    if let Some(b) = find_blocked(&e) {
        return FetchError::Blocked(b.0);
    }
    if e.is_timeout() {
        return FetchError::Connect("timed out".to_string());
    }
    if e.is_redirect() {
        return FetchError::Blocked(format!("redirect refused: {}", e.without_url()));
    }
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    FetchError::Connect(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn which_errors_are_retried() {
        assert!(FetchError::Connect("reset".into()).retryable());
        assert!(
            FetchError::Http {
                status: 503,
                retry_after: None
            }
            .retryable()
        );
        assert!(
            FetchError::Http {
                status: 429,
                retry_after: None
            }
            .retryable()
        );
        assert!(
            !FetchError::Http {
                status: 404,
                retry_after: None
            }
            .retryable()
        );
        assert!(!FetchError::Blocked("x".into()).retryable());
        assert!(!FetchError::TooLarge { limit: 1 }.retryable());
    }
}
