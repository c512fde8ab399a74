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
