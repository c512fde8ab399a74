//! The accept loop: what an anonymous client can make `finrep web` hold is bounded.
//!
//! At most `max_connections` connections are served at once (more are closed as they arrive,
//! each counted); a client must send a request's headers within `header_read_timeout` — the
//! same bound applies while a keep-alive connection sits idle between requests, so half-sent
//! headers and idle sockets are closed; and no connection lives longer than
//! [`MAX_CONNECTION_AGE`]. A stop lets requests in flight finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::task::JoinSet;

use super::AppState;

/// The longest a connection is served; a browser opens another.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);
/// How long requests in flight may take to finish after a stop or a connection's age.
const DRAIN: Duration = Duration::from_secs(10);

pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(state.settings.max_connections));
    let header_read = state.settings.header_read_timeout;
    let metrics = state.metrics.clone();
    // The router already bounds each request's time and body.
    let app = super::router(state);
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        // Finished connections' tasks are collected as we go.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.connection_refused();
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(
            app.clone()
                .layer(axum::Extension(ConnectInfo::<SocketAddr>(peer))),
        );
        let stop = stop.clone();
        connections.spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read)
                .max_buf_size(64 * 1024);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                () = stop.cancelled() => {}
                () = tokio::time::sleep(MAX_CONNECTION_AGE) => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN, conn).await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN + Duration::from_secs(1), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}
