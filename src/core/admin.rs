//! The admin port: `/metrics` (Prometheus text), `/healthz` (the process serves) and
//! `/readyz` (it does its work: caches synced and, for a controller, the lease held and the
//! database answering).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::metrics::Metrics;

/// What the admin port reports.
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub ready: AtomicBool,
    /// The database answered the last time it was asked (true where nobody asks).
    pub database: AtomicBool,
}

impl AdminState {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            metrics,
            ready: AtomicBool::new(false),
            database: AtomicBool::new(true),
        })
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn set_database(&self, answers: bool) {
        self.database.store(answers, Ordering::Relaxed);
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.database.load(Ordering::Relaxed)
    }
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// The answer to one request.
pub fn route(state: &AdminState, method: &Method, path: &str) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if method != Method::GET && method != Method::HEAD {
        return respond(StatusCode::METHOD_NOT_ALLOWED, TEXT, "GET only\n".into());
    }
    match path {
        "/metrics" => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics.encode(),
        ),
        "/healthz" => respond(StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" if state.is_ready() => respond(StatusCode::OK, TEXT, "ready\n".into()),
        "/readyz" => respond(StatusCode::SERVICE_UNAVAILABLE, TEXT, "not ready\n".into()),
        _ => respond(StatusCode::NOT_FOUND, TEXT, "not found\n".into()),
    }
}

/// Serves the admin port on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "admin port: accept failed");
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let r = route(&state, req.method(), req.uri().path());
                async move { Ok::<_, Infallible>(r) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(%peer, error = %e, "admin port: connection ended");
            }
        });
    }
}

/// How often the per-report delivery gauges are read from PostgreSQL.
pub const FRESHNESS_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);

/// Keeps `finrep_report_last_delivered_timestamp_seconds`,
/// `finrep_report_last_slot_timestamp_seconds` and `finrep_report_health` (the console's
/// verdict) current from the database, so they survive a restart and cover runs another
/// process made.
pub async fn refresh_report_freshness(store: crate::store::Store, metrics: Arc<Metrics>) {
    loop {
        match store.report_freshness().await {
            Ok(rows) => metrics.report_freshness(&rows),
            Err(e) => debug!(error = %e, "report freshness not read this time"),
        }
        match store.latest_channel_deliveries().await {
            Ok(rows) => metrics.channel_deliveries(&rows),
            Err(e) => debug!(error = %e, "deliveries by channel not read this time"),
        }
        match store.report_records().await {
            Ok(records) => {
                metrics.report_health(&crate::glance::cards(&records, chrono::Utc::now()));
            }
            Err(e) => debug!(error = %e, "the reports' verdicts not read this time"),
        }
        tokio::time::sleep(FRESHNESS_PERIOD).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_told() {
        let state = AdminState::new(Metrics::new());
        assert_eq!(
            route(&state, &Method::GET, "/readyz").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        state.set_ready(true);
        assert_eq!(
            route(&state, &Method::GET, "/readyz").status(),
            StatusCode::OK
        );
        assert_eq!(
            route(&state, &Method::GET, "/healthz").status(),
            StatusCode::OK
        );
        assert_eq!(
            route(&state, &Method::POST, "/metrics").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn metrics_carry_the_shared_names() {
        let state = AdminState::new(Metrics::new());
        state.metrics.reconciled("DailyReport", 0.01);
        state.metrics.job_created();
        let text = state.metrics.encode();
        for name in [
            "finrep_reconciles_total",
            "finrep_reconcile_duration_seconds_bucket",
            "finrep_jobs_created_total",
            "finrep_slots_missed_total",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
