//! A stored report as a file (`.html`, `.eml`) and as an inert page for the console's frame.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use lettre::Message;
use lettre::message::{Mailbox, MultiPart};

use super::auth::Session;
use super::{AppState, WebError, WebResponse};
use crate::store::StoredReport;
use crate::untrusted;

/// The report's HTML for the console's frame. It was composed from escaped feed text; this
/// policy makes it inert even so: no script, no plugin, no form, no request anywhere (a
/// sandbox with nothing allowed), shown only inside this console.
const REPORT_VIEW_CSP: &str =
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'";

async fn load(state: &AppState, id: i64) -> Result<StoredReport, WebError> {
    state
        .store
        .stored_report(id)
        .await?
        .ok_or(WebError::NotFound)
}

fn file_name(report: &StoredReport, ext: &str) -> String {
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!(
        "finrep-{}-{}-{}.{ext}",
        safe(&report.run.namespace),
        safe(&report.run.report),
        report.run.date
    )
}

fn attachment(name: &str, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    // A downloaded file opened in the browser is still inert.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(REPORT_VIEW_CSP),
    );
    response
}

/// `GET /console/reports/{id}/view`: the HTML as sent, for the report page's frame.
pub async fn sandboxed_html(
    State(state): State<Arc<AppState>>,
    _session: Session,
    Path(id): Path<i64>,
) -> WebResponse {
    let report = load(&state, id).await?;
    let html = report.html.ok_or(WebError::NotFound)?;
    Ok(inert_html(html))
}

/// A report's HTML for a console page's frame: no script, nothing fetched, only this origin
/// may frame it.
pub(super) fn inert_html(html: String) -> Response {
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(REPORT_VIEW_CSP),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    response
}

/// `GET /console/reports/{id}/report.html`.
pub async fn html_file(
    State(state): State<Arc<AppState>>,
    _session: Session,
    Path(id): Path<i64>,
) -> WebResponse {
    let report = load(&state, id).await?;
    let name = file_name(&report, "html");
    let html = report.html.ok_or(WebError::NotFound)?;
    Ok(attachment(
        &name,
        "text/html; charset=utf-8",
        html.into_bytes(),
    ))
}

/// `GET /console/reports/{id}/report.eml`: the report as one message (HTML and text), from
/// and to its sender: what any recipient got, without their personal footer.
pub async fn eml_file(
    State(state): State<Arc<AppState>>,
    _session: Session,
    Path(id): Path<i64>,
) -> WebResponse {
    let report = load(&state, id).await?;
    let sender = state.store.report_sender(id).await?;
    let name = file_name(&report, "eml");
    let bytes = archive_message(&report, sender.as_deref())?;
    Ok(attachment(&name, "message/rfc822", bytes))
}

fn archive_message(report: &StoredReport, sender: Option<&str>) -> Result<Vec<u8>, WebError> {
    let (Some(html), Some(text)) = (report.html.clone(), report.text.clone()) else {
        return Err(WebError::NotFound);
    };
    let from: Mailbox = sender
        .and_then(|s| s.parse().ok())
        .or_else(|| "finrep@localhost".parse().ok())
        .ok_or_else(|| WebError::Internal("no sender address".into()))?;
    let subject = report
        .run
        .subject
        .as_deref()
        .map_or_else(String::new, |s| untrusted::clean(s, 400));
    let message = Message::builder()
        .from(from.clone())
        .to(from)
        .subject(subject)
        .multipart(MultiPart::alternative_plain_html(text, html))
        .map_err(|e| WebError::Internal(format!("building the .eml failed: {e}")))?;
    Ok(message.formatted())
}
