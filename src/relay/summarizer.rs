//! The relay's summariser side: `POST /v1/chat/completions` from a pipeline pod, sent on to
//! the operator's OpenAI-compatible endpoint with the operator's key, and the answer handed
//! back. The key reaches only that endpoint; the model is the operator's choice when set.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

/// The largest request or answer passed through.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The operator's summariser.
#[derive(Clone)]
pub struct SummarizerUpstream {
    /// Base URL, e.g. `https://api.example.com/v1` (`/chat/completions` is appended).
    pub endpoint: url::Url,
    pub api_key: Option<String>,
    /// When set, every request asks for this model, whatever the report named.
    pub model: Option<String>,
    pub timeout: Duration,
}

impl std::fmt::Debug for SummarizerUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SummarizerUpstream")
            .field(
                "endpoint",
                &finrep_core::untrusted::redact_url(self.endpoint.as_str()),
            )
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

struct Proxy {
    upstream: SummarizerUpstream,
    url: url::Url,
    client: reqwest::Client,
}

/// The relay's HTTP routes: the summariser, and `/healthz`.
pub fn router(upstream: Option<SummarizerUpstream>) -> Result<axum::Router, String> {
    let health = || axum::Router::new().route("/healthz", get(|| async { "ok\n" }));
    let Some(upstream) = upstream else {
        return Ok(health());
    };
    finrep_core::tls::install_crypto_provider();
    let mut url = upstream.endpoint.clone();
    url.path_segments_mut()
        .map_err(|()| "the summariser endpoint cannot have a path".to_string())?
        .pop_if_empty()
        .extend(["chat", "completions"]);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(upstream.timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let proxy = Arc::new(Proxy {
        upstream,
        url,
        client,
    });
    let summarizer = axum::Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(proxy);
    Ok(health().merge(summarizer))
}

/// The request as it goes on: the operator's model, when one is set.
fn outgoing_body(body: &[u8], model: Option<&str>) -> Result<Vec<u8>, String> {
    let mut value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not a JSON request: {e}"))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| "the request is not a JSON object".to_string())?;
    if let Some(model) = model {
        object.insert("model".into(), serde_json::Value::from(model));
    }
    serde_json::to_vec(&value).map_err(|e| e.to_string())
}

async fn chat_completions(State(proxy): State<Arc<Proxy>>, body: Bytes) -> Response {
    let body = match outgoing_body(&body, proxy.upstream.model.as_deref()) {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let mut request = proxy
        .client
        .post(proxy.url.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(key) = &proxy.upstream.api_key {
        request = request.bearer_auth(key);
    }
    let mut answer = match request.send().await {
        Ok(a) => a,
        Err(e) if e.is_timeout() => {
            return (
                StatusCode::GATEWAY_TIMEOUT,
                "the summariser did not answer in time",
            )
                .into_response();
        }
        Err(e) => {
            // Without the URL: it may carry the operator's key in a query.
            tracing::warn!(error = %e.without_url(), "the summariser could not be reached");
            return (
                StatusCode::BAD_GATEWAY,
                "the summariser could not be reached",
            )
                .into_response();
        }
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out = Vec::new();
    loop {
        match answer.chunk().await {
            Ok(Some(chunk)) if out.len() + chunk.len() <= MAX_BODY_BYTES => {
                out.extend_from_slice(&chunk);
            }
            Ok(Some(_)) => {
                return (
                    StatusCode::BAD_GATEWAY,
                    "the summariser's answer is too large",
                )
                    .into_response();
            }
            Ok(None) => break,
            Err(_) => {
                return (
                    StatusCode::BAD_GATEWAY,
                    "the summariser's answer was cut off",
                )
                    .into_response();
            }
        }
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    (status, headers, out).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_model_replaces_the_reports() {
        let out = outgoing_body(
            br#"{"model":"tenant-pick","messages":[]}"#,
            Some("op-model"),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "op-model");
        assert!(outgoing_body(b"[1]", None).is_err());
        assert!(outgoing_body(b"not json", None).is_err());
    }
}
