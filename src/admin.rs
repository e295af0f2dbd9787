//! The admin listener: liveness and readiness now; the query API joins it later. It depends on
//! the store and the pipeline's counters, never on the proxy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::pipeline::Pipeline;
use crate::store::EventStore;

/// What the admin handlers read.
#[derive(Clone)]
pub struct AdminState {
    pub store: Arc<dyn EventStore>,
    pub pipeline: Pipeline,
    /// Set once shutdown begins: the sidecar stops reporting ready so traffic moves away.
    pub draining: Arc<AtomicBool>,
}

/// The admin router: `/healthz` (the process is alive) and `/readyz` (it can record events).
pub fn app(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AdminState>) -> Response {
    let stats = s.pipeline.stats().snapshot();
    let queue_depth = s.pipeline.queue_depth();
    if s.draining.load(Ordering::Acquire) {
        let body = json!({ "status": "draining", "queue_depth": queue_depth, "events": stats });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    match tokio::time::timeout(Duration::from_secs(2), s.store.ping()).await {
        Ok(Ok(())) => {
            let body = json!({ "status": "ready", "queue_depth": queue_depth, "events": stats });
            (StatusCode::OK, Json(body)).into_response()
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: store unreachable");
            let body = json!({ "status": "store_unreachable", "queue_depth": queue_depth, "events": stats });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
        Err(_) => {
            tracing::warn!("readiness: store ping timed out");
            let body =
                json!({ "status": "store_timeout", "queue_depth": queue_depth, "events": stats });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}
