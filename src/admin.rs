//! The operational HTTP endpoints: health probes (`/livez`, `/readyz` and the aliases
//! `/liveness`, `/readiness`, SPEC §11.3) on the health port, and Prometheus text on
//! `/metrics` (SPEC §11.4) on the metrics port. When both ports are the same address, one
//! listener serves both.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::health::Health;
use crate::metrics::{Exporter, CONTENT_TYPE};
use crate::state::ServerState;

/// The health probe routes.
pub fn health_routes(health: Health) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/liveness", get(livez))
        .route("/readyz", get(readyz))
        .route("/readiness", get(readyz))
        .with_state(health)
}

/// The metrics route, over a registry built here once for `state`.
pub fn metrics_routes(state: ServerState) -> Router {
    let exporter = Exporter::new(&state)
        .expect("the metric table names every family once, with valid names and labels");
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(Arc::new(exporter))
}

async fn livez(State(health): State<Health>) -> impl IntoResponse {
    if health.is_live() {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not live: the engine has not advanced an epoch for {}s\n",
                health.epoch_lag()
            ),
        )
    }
}

async fn readyz(State(health): State<Health>) -> impl IntoResponse {
    if health.is_ready() {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: starting or shutting down\n",
        )
    }
}

async fn metrics(State(exporter): State<Arc<Exporter>>) -> impl IntoResponse {
    match exporter.scrape().await {
        Ok(text) => (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], text),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("cannot render the metrics: {error}\n"),
        ),
    }
}

/// Serves `routes` on `listener` until the task is dropped. Errors on single connections
/// are handled inside; an error here means the listener itself failed.
pub async fn serve(listener: TcpListener, routes: Router) -> std::io::Result<()> {
    axum::serve(listener, routes).await
}
