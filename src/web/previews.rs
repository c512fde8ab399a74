//! Previews and test copies on the console, beside the archive and marked as what they are:
//! a preview was sent to nobody, a test copy to one reader, and neither is a day's report.

use std::sync::Arc;

use axum::extract::{Path, State};
use minijinja::Value;
use minijinja::value::Serde;

use super::auth::Session;
use super::console::Viewer;
use super::{AppState, WebError, WebResponse};
use crate::store::{PreviewRow, TestSendRow};

/// Previews and test copies listed beside the archive.
pub const LISTED: i64 = 10;

/// The newest previews and test copies, for the archive page.
pub async fn recent(state: &AppState) -> Result<(Vec<PreviewRow>, Vec<TestSendRow>), WebError> {
    let (previews, test_sends) = tokio::try_join!(
        state.store.recent_previews(LISTED),
        state.store.recent_test_sends(LISTED),
    )?;
    Ok((previews, test_sends))
}

/// A preview as the page shows it.
#[derive(serde::Serialize)]
struct PreviewPage {
    id: i64,
    namespace: String,
    report: String,
    date: String,
    recipient: Option<String>,
    state: String,
    started_at: chrono::DateTime<chrono::Utc>,
    articles: i32,
    subject: Option<String>,
    has_html: bool,
    text: Option<String>,
    chat_message: Option<String>,
    chat_platform: Option<String>,
    error: Option<String>,
    sources_failing: Vec<(String, String)>,
}

impl From<PreviewRow> for PreviewPage {
    fn from(p: PreviewRow) -> Self {
        let failing = p.sources_failing();
        Self {
            id: p.id,
            namespace: p.namespace,
            report: p.report,
            date: p.date.to_string(),
            recipient: p.recipient,
            state: p.state.as_str().to_string(),
            started_at: p.started_at,
            articles: p.articles,
            subject: p.subject,
            has_html: p.html.is_some() && p.chat_message.is_none(),
            text: p.text.filter(|_| p.chat_message.is_none()),
            chat_message: p.chat_message,
            chat_platform: p.chat_platform,
            error: p.error,
            sources_failing: failing,
        }
    }
}

/// `GET /console/previews/{id}`: a preview, marked as sent to nobody.
pub async fn preview(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> WebResponse {
    let row = state.store.preview(id).await?.ok_or(WebError::NotFound)?;
    viewer.page(
        &state,
        "preview.html",
        minijinja::context! { preview => Value::from(Serde(PreviewPage::from(row))) },
    )
}

/// `GET /console/previews/{id}/view`: the previewed HTML, inert, for the page's frame.
pub async fn sandboxed_html(
    State(state): State<Arc<AppState>>,
    _session: Session,
    Path(id): Path<i64>,
) -> WebResponse {
    let row = state.store.preview(id).await?.ok_or(WebError::NotFound)?;
    let html = row.html.ok_or(WebError::NotFound)?;
    Ok(super::download::inert_html(html))
}
