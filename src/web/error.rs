//! What goes wrong in a request, and the page each failure shows.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::run::ErrorCategory;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("the database could not answer: {0}")]
    Store(#[from] StoreError),
    #[error("a page could not be rendered: {0}")]
    Render(#[from] minijinja::Error),
    #[error("{0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
    #[error(
        "the form has expired or did not come from this console; reload the page and try again"
    )]
    Csrf,
    #[error("too many attempts; wait a minute and try again")]
    RateLimited,
    #[error("{0}")]
    Internal(String),
}

impl WebError {
    pub fn category(&self) -> ErrorCategory {
        match self {
            Self::Store(_) => ErrorCategory::Database,
            Self::Render(_) | Self::Internal(_) => ErrorCategory::Internal,
            Self::BadRequest(_) | Self::NotFound | Self::Csrf | Self::RateLimited => {
                ErrorCategory::Config
            }
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::Store(e) if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(_) | Self::Render(_) | Self::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Csrf => StatusCode::FORBIDDEN,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if status.is_server_error() {
            // Details stay in the log; the page says what a visitor can do.
            tracing::error!(error = %self, category = %self.category(), "request failed");
            "finrep could not answer this request; try again in a minute.".to_string()
        } else {
            self.to_string()
        };
        let mut response = (status, message).into_response();
        if matches!(self, Self::RateLimited) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("60"),
            );
        }
        response
    }
}

pub async fn not_found() -> WebError {
    WebError::NotFound
}

/// Turns every error answer that is not a page of its own (the handlers' errors, the
/// framework's rejections, the login limiter's 429) into a page in the visitor's language,
/// keeping the headers that matter (Retry-After, Set-Cookie, Cache-Control).
pub async fn pages(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<super::AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // Probes and scrapers read a status and a line, not a page.
    if matches!(request.uri().path(), "/healthz" | "/readyz" | "/metrics") {
        return next.run(request).await;
    }
    let headers = request.headers().clone();
    let lang = request.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "lang")
            .map(|(_, v)| v.into_owned())
    });
    let response = next.run(request).await;
    let status = response.status();
    let is_page = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_page {
        return response;
    }
    let chrome = super::render::Chrome::new(&headers, lang.as_deref(), "", None);
    let page = state.pages.render(
        "error.html",
        &chrome,
        minijinja::context! { code => status.as_u16() },
    );
    let Ok(html) = page else {
        return response;
    };
    let mut page = (status, html).into_response();
    for name in [
        axum::http::header::RETRY_AFTER,
        axum::http::header::SET_COOKIE,
        axum::http::header::CACHE_CONTROL,
    ] {
        for value in response.headers().get_all(&name) {
            page.headers_mut().append(name.clone(), value.clone());
        }
    }
    page
}
