//! `finrep web`'s own metrics, under the `finrep_` prefix like the controller's: requests by
//! route and status, their duration, logins and unsubscribes.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

pub struct WebMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabel, Histogram>,
    logins: Family<OutcomeLabel, Counter>,
    unsubscribes: Family<OutcomeLabel, Counter>,
    connections_refused: Counter,
}

impl WebMetrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("finrep_web");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<RouteLabel, Histogram>::new_with_constructor(|| {
            // 0.5 ms to ~4 s.
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        let logins = Family::<OutcomeLabel, Counter>::default();
        let unsubscribes = Family::<OutcomeLabel, Counter>::default();
        registry.register("requests", "Requests by route and status", requests.clone());
        registry.register(
            "request_duration_seconds",
            "Time to answer, by route",
            duration.clone(),
        );
        registry.register(
            "logins",
            "Console login attempts by outcome",
            logins.clone(),
        );
        registry.register(
            "unsubscribes",
            "Unsubscribe requests by outcome (done, already, invalid)",
            unsubscribes.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Connections closed on arrival because the most connections were open",
            connections_refused.clone(),
        );
        Arc::new(Self {
            connections_refused,
            registry,
            requests,
            duration,
            logins,
            unsubscribes,
        })
    }

    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    pub fn login(&self, outcome: &'static str) {
        self.logins.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    pub fn unsubscribe(&self, outcome: &'static str) {
        self.unsubscribes
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Counts and times every request by its route pattern (never the raw path: ids and tokens
/// would make a series each).
pub async fn track(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    let m = &state.metrics;
    m.duration
        .get_or_create(&RouteLabel {
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&RequestLabels {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// `GET /metrics`.
pub async fn serve(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}
