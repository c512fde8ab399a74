//! One-click unsubscribe (RFC 8058), no login: the signed token is the authority.
//!
//! `GET` only shows a confirmation (link scanners fetch every URL of a mail); `POST` with
//! `List-Unsubscribe=One-Click` unsubscribes at once and answers 200, however often it comes.
//! A token that does not verify changes nothing, and no page names anybody but the holder of
//! the token (and them only masked). The page names the report whose mail carried the link and
//! says that the unsubscribe covers every report of that sender; the same token lets its holder
//! take the unsubscribe back (`action=resubscribe`), the only way besides an operator's recorded
//! action that an unsubscribe is ever lifted.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;

use super::render::Chrome;
use super::{AppState, WebResponse};
use crate::run::BlacklistReason;
use finrep_core::store::{Resubscriber, UnsubscribeOutcome};
use finrep_core::unsubscribe::{ParsedToken, Subscriber};

#[derive(serde::Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
    lang: Option<String>,
}

/// What the page says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
enum Outcome {
    Confirm,
    Done,
    Already,
    Resubscribed,
    Invalid,
    Unavailable,
}

impl Outcome {
    fn status(self) -> StatusCode {
        match self {
            Self::Confirm | Self::Done | Self::Already | Self::Resubscribed => StatusCode::OK,
            Self::Invalid => StatusCode::BAD_REQUEST,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn metric(self) -> &'static str {
        match self {
            Self::Confirm => "confirm",
            Self::Done => "done",
            Self::Already => "already",
            Self::Resubscribed => "resubscribed",
            Self::Invalid => "invalid",
            Self::Unavailable => "unavailable",
        }
    }
}

/// The sender as a reader knows it: the display name of `金融情报 <report@example.com>`, or the
/// address when it has none.
fn sender_name(from: &str) -> Option<String> {
    let name = match from.split_once('<') {
        Some((name, address)) if name.trim().is_empty() => address.trim_end_matches('>'),
        Some((name, _)) => name,
        None => from,
    };
    let name = name.trim().trim_matches('"').trim();
    (!name.is_empty()).then(|| crate::untrusted::clean(name, 200))
}

/// `a***@example.com`: enough for the holder to recognise, nothing for anybody else.
fn masked(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_string(),
    }
}

/// Whom a token unsubscribes. A v2 token's key is picked by its id before anything is read;
/// its delivery row is then read and the MAC checked against it.
async fn subscriber(state: &AppState, token: Option<&str>) -> Result<Subscriber, Outcome> {
    let ring = &state.settings.unsubscribe_keys;
    if ring.is_empty() {
        return Err(Outcome::Unavailable);
    }
    let token = token
        .filter(|t| !t.is_empty() && t.len() <= 2048)
        .ok_or(Outcome::Invalid)?;
    let parsed = ParsedToken::parse(token).map_err(|_| Outcome::Invalid)?;
    match &parsed {
        ParsedToken::V1 { .. } => ring.verify_v1(&parsed).map_err(|_| Outcome::Invalid),
        ParsedToken::V2 {
            key_id,
            delivery_id,
            ..
        } => {
            if !ring.holds(key_id) {
                return Err(Outcome::Invalid);
            }
            let target = match state.store.unsubscribe_target(*delivery_id).await {
                Ok(Some(t)) => t,
                Ok(None) => return Err(Outcome::Invalid),
                Err(e) => {
                    tracing::warn!(error = %e, "unsubscribe: the database did not answer");
                    return Err(Outcome::Unavailable);
                }
            };
            let mut who = ring
                .verify_v2(&parsed, &target.namespace, &target.report, &target.email)
                .map_err(|_| Outcome::Invalid)?;
            who.report_title = target.title.filter(|t| !t.trim().is_empty());
            who.sender = target.sender.as_deref().and_then(sender_name);
            Ok(who)
        }
    }
}

fn page(
    state: &AppState,
    headers: &HeaderMap,
    lang: Option<&str>,
    outcome: Outcome,
    who: Option<&Subscriber>,
    token: Option<&str>,
) -> WebResponse {
    state.metrics.unsubscribe(outcome.metric());
    let mut chrome = Chrome::new(headers, lang, "/unsubscribe", None);
    if let Some(token) = token {
        chrome = chrome.keeping_pair("token", token);
    }
    let html = state.pages.render(
        "unsubscribe.html",
        &chrome,
        minijinja::context! {
            outcome => outcome.metric(),
            address => who.map(|s| masked(&s.email)),
            report => who.and_then(|s| s.report_title.clone().or_else(|| s.report.clone())),
            sender => who.and_then(|s| s.sender.clone()),
            token => token,
        },
    )?;
    let mut response = (outcome.status(), chrome.respond(html)).into_response();
    // Never cached by a proxy or the browser: the page answers for one token.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// `GET /unsubscribe?token=…`: what a click would do, and a button that does it.
pub async fn confirm(
    State(state): State<Arc<AppState>>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> WebResponse {
    let lang = q.lang.as_deref();
    let who = match subscriber(&state, q.token.as_deref()).await {
        Ok(who) => who,
        Err(outcome) => return page(&state, &headers, lang, outcome, None, None),
    };
    let outcome = match state
        .store
        .blacklist_reason(&who.namespace, &who.email)
        .await
    {
        Ok(Some(BlacklistReason::Unsubscribe)) => Outcome::Already,
        Ok(_) => Outcome::Confirm,
        Err(e) => {
            tracing::warn!(error = %e, "unsubscribe page: the database did not answer");
            Outcome::Unavailable
        }
    };
    page(
        &state,
        &headers,
        lang,
        outcome,
        Some(&who),
        q.token.as_deref(),
    )
}

/// True when a POST body says `List-Unsubscribe=One-Click`, as
/// application/x-www-form-urlencoded or multipart/form-data (RFC 8058 §3.1 allows both).
fn is_one_click(headers: &HeaderMap, body: &[u8]) -> bool {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let text = String::from_utf8_lossy(body);
        return text.split("--").any(|part| {
            let Some((head, value)) = part
                .split_once("\r\n\r\n")
                .or_else(|| part.split_once("\n\n"))
            else {
                return false;
            };
            head.contains("name=\"List-Unsubscribe\"") && value.trim() == "One-Click"
        });
    }
    url::form_urlencoded::parse(body).any(|(k, v)| k == "List-Unsubscribe" && v == "One-Click")
}

/// `POST /unsubscribe?token=…` with `List-Unsubscribe=One-Click`: unsubscribed, 200. With
/// `action=resubscribe` from the page instead: the holder of the link takes it back.
pub async fn one_click(
    State(state): State<Arc<AppState>>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> WebResponse {
    let lang = q.lang.as_deref();
    let form = |key: &str, value: &str| {
        url::form_urlencoded::parse(&body).any(|(k, v)| k == key && v == value)
    };
    let resubscribing = form("action", "resubscribe");
    if !resubscribing && !is_one_click(&headers, &body) {
        return page(&state, &headers, lang, Outcome::Invalid, None, None);
    }
    let who = match subscriber(&state, q.token.as_deref()).await {
        Ok(who) => who,
        Err(outcome) => return page(&state, &headers, lang, outcome, None, None),
    };
    let outcome = if resubscribing {
        resubscribe(&state, &who).await
    } else {
        let via = if form("from", "page") {
            "page"
        } else {
            "one-click"
        };
        unsubscribe(&state, &who, via).await
    };
    let token = (outcome == Outcome::Done)
        .then_some(q.token.as_deref())
        .flatten();
    page(&state, &headers, lang, outcome, Some(&who), token)
}

async fn unsubscribe(state: &AppState, who: &Subscriber, via: &str) -> Outcome {
    let done = state
        .store
        .unsubscribe(&who.namespace, &who.email, via, who.report.as_deref())
        .await;
    match done {
        Ok(UnsubscribeOutcome::Done) => {
            tracing::info!(namespace = %who.namespace, via, "a recipient unsubscribed");
            Outcome::Done
        }
        Ok(UnsubscribeOutcome::Already) => Outcome::Already,
        Err(e) => {
            tracing::warn!(error = %e, "unsubscribe: the database did not answer");
            Outcome::Unavailable
        }
    }
}

async fn resubscribe(state: &AppState, who: &Subscriber) -> Outcome {
    let done = state
        .store
        .resubscribe(
            &who.namespace,
            &who.email,
            Resubscriber::Recipient,
            None,
            Some("the recipient's own link"),
        )
        .await;
    match done {
        Ok(_) => {
            tracing::info!(namespace = %who.namespace, "a recipient re-subscribed with their link");
            Outcome::Resubscribed
        }
        Err(e) => {
            tracing::warn!(error = %e, "re-subscribe: the database did not answer");
            Outcome::Unavailable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn addresses_are_masked() {
        assert_eq!(masked("zhang.wei@example.com"), "z***@example.com");
        assert_eq!(masked("nobody"), "***");
    }

    #[test]
    fn one_click_in_either_form_encoding() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        assert!(is_one_click(&h, b"List-Unsubscribe=One-Click"));
        assert!(!is_one_click(&h, b"List-Unsubscribe=Other"));
        assert!(!is_one_click(&h, b""));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("multipart/form-data; boundary=xyz"),
        );
        let body = b"--xyz\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--xyz--\r\n";
        assert!(is_one_click(&h, body));
    }

    #[test]
    fn the_sender_is_the_name_a_reader_knows() {
        assert_eq!(
            sender_name("金融情报日报 <brief@example.com>").as_deref(),
            Some("金融情报日报")
        );
        assert_eq!(
            sender_name("\"Desk\" <d@example.com>").as_deref(),
            Some("Desk")
        );
        assert_eq!(
            sender_name("<d@example.com>").as_deref(),
            Some("d@example.com")
        );
        assert_eq!(
            sender_name("d@example.com").as_deref(),
            Some("d@example.com")
        );
        assert_eq!(sender_name("  "), None);
    }
}
