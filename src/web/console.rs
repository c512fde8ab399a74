//! The console's pages: dashboard, archive, one report, its delivery log, recipients and
//! sources. Each needs a session; each list is one bounded page.

use std::sync::Arc;

use axum::extract::{Form, Path, Query, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect};
use chrono::{Duration, Utc};

use super::auth::Session;
use super::render::Chrome;
use super::{AppState, WebError, WebResponse};
use crate::run::DeliveryStatus;
use crate::store::Page;
use minijinja::Value;
use minijinja::value::Serde;

/// Rows per page unless `?size=` says otherwise (at most `Page::MAX`).
const PAGE_SIZE: u32 = 30;

#[derive(serde::Deserialize, Default)]
pub struct ListQuery {
    page: Option<u32>,
    size: Option<u32>,
    status: Option<String>,
    lang: Option<String>,
}

impl ListQuery {
    fn page(&self) -> Page {
        Page::new(self.page, self.size, PAGE_SIZE)
    }
}

fn render(state: &AppState, chrome: &Chrome, name: &str, data: minijinja::Value) -> WebResponse {
    Ok(chrome.respond(state.pages.render(name, chrome, data)?))
}

/// `GET /console`: the last 24 hours and 7 days at a glance.
pub async fn dashboard(
    State(state): State<Arc<AppState>>,
    session: Session,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> WebResponse {
    let now = Utc::now();
    let today = now.with_timezone(&state.settings.time_zone).date_naive();
    let store = &state.store;
    let (day, week, failing, next_slots, backups) = tokio::try_join!(
        store.period_figures(now - Duration::hours(24), today - Duration::days(1)),
        store.period_figures(now - Duration::days(7), today - Duration::days(7)),
        store.sources_failing_now(),
        store.next_slots(),
        store.last_backups(),
    )?;
    let chrome = Chrome::new(&headers, q.lang.as_deref(), "/console", Some(&session));
    render(
        &state,
        &chrome,
        "dashboard.html",
        minijinja::context! {
            periods => Value::from(Serde(&vec![("last_24h", day), ("last_7d", week)])),
            failing => Value::from(Serde(failing)),
            next_slots => Value::from(Serde(next_slots)),
            backups => Value::from(Serde(backups)),
        },
    )
}

/// `GET /console/reports`: the archive by date.
pub async fn archive(
    State(state): State<Arc<AppState>>,
    session: Session,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> WebResponse {
    let runs = state.store.archive(q.page()).await?;
    let chrome = Chrome::new(
        &headers,
        q.lang.as_deref(),
        "/console/reports",
        Some(&session),
    )
    .keeping(raw.as_deref());
    render(
        &state,
        &chrome,
        "reports.html",
        minijinja::context! { runs => Value::from(Serde(&runs)) },
    )
}

/// `GET /console/reports/{id}`: the report as sent, its downloads and its run's steps.
pub async fn report(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<i64>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> WebResponse {
    let stored = state
        .store
        .stored_report(id)
        .await?
        .ok_or(WebError::NotFound)?;
    let chrome = Chrome::new(
        &headers,
        q.lang.as_deref(),
        "/console/reports",
        Some(&session),
    );
    render(
        &state,
        &chrome,
        "report.html",
        minijinja::context! { report => Value::from(Serde(&stored)) },
    )
}

/// `GET /console/reports/{id}/deliveries?status=…`: the report's delivery log.
pub async fn deliveries(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<i64>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> WebResponse {
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(s.parse::<DeliveryStatus>().map_err(|e| {
            WebError::BadRequest(format!("{e}; one of: {}", status_names().join(", ")))
        })?),
    };
    let stored = state
        .store
        .stored_report(id)
        .await?
        .ok_or(WebError::NotFound)?;
    let rows = state.store.delivery_log(id, status, q.page()).await?;
    let chrome = Chrome::new(
        &headers,
        q.lang.as_deref(),
        "/console/reports",
        Some(&session),
    )
    .keeping(raw.as_deref());
    render(
        &state,
        &chrome,
        "deliveries.html",
        minijinja::context! {
            report => Value::from(Serde(&stored.run)),
            rows => Value::from(Serde(&rows)),
            status => Value::from(Serde(&status)),
            statuses => status_names(),
        },
    )
}

fn status_names() -> Vec<&'static str> {
    DeliveryStatus::ALL.iter().map(|s| s.as_str()).collect()
}

/// `GET /console/recipients`: addresses with their subscription state.
pub async fn recipients(
    State(state): State<Arc<AppState>>,
    session: Session,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> WebResponse {
    let rows = state.store.recipients(q.page()).await?;
    let chrome = Chrome::new(
        &headers,
        q.lang.as_deref(),
        "/console/recipients",
        Some(&session),
    )
    .keeping(raw.as_deref());
    render(
        &state,
        &chrome,
        "recipients.html",
        minijinja::context! {
            rows => Value::from(Serde(&rows)),
            manage => state.settings.manage_subscriptions,
        },
    )
}

#[derive(serde::Deserialize)]
pub struct ResubscribeForm {
    #[serde(default)]
    csrf: String,
    namespace: String,
    email: String,
}

/// `POST /console/recipients/resubscribe`: lifts an address's blacklist entry (standalone
/// mode; in Kubernetes the Recipient's annotation does it, with its audit trail).
pub async fn resubscribe(
    State(state): State<Arc<AppState>>,
    session: Session,
    Form(form): Form<ResubscribeForm>,
) -> WebResponse {
    session.check_csrf(&form.csrf)?;
    if !state.settings.manage_subscriptions {
        return Err(WebError::BadRequest(
            "this console does not change subscriptions; annotate the Recipient with finrep.io/unblock".into(),
        ));
    }
    let lifted = state
        .store
        .unblock(&form.namespace, &form.email.to_lowercase())
        .await?;
    tracing::info!(account = %session.account, namespace = %form.namespace, lifted, "re-subscribed from the console");
    Ok(Redirect::to("/console/recipients").into_response())
}

/// `GET /console/sources`: every source with its last week of fetches.
pub async fn sources(
    State(state): State<Arc<AppState>>,
    session: Session,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> WebResponse {
    let rows = state
        .store
        .source_fetch_health(Utc::now(), q.page())
        .await?;
    let chrome = Chrome::new(
        &headers,
        q.lang.as_deref(),
        "/console/sources",
        Some(&session),
    )
    .keeping(raw.as_deref());
    render(
        &state,
        &chrome,
        "sources.html",
        minijinja::context! { rows => Value::from(Serde(&rows)) },
    )
}
