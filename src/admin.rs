//! The admin listener: liveness and readiness, the query API under `/v1` (events, one event, a
//! token's life, stats, coverage, exports and the OpenAPI document describing them) and the
//! browser viewer at `/ui`.
//!
//! Every `/v1` data endpoint passes [`auth`]: a bearer credential from the config, matched by its
//! SHA-256 in constant time; its permission is checked and its app scope is applied to every
//! store query here, never left to the caller. Every read is itself recorded in the trail as an
//! `audit.query` or `audit.export` event through the pipeline, and so is every request refused
//! for want of a valid credential (aggregated per client address, see [`probes`]). This module
//! reads the store and the proxy's coverage counters; it never touches the route map or the
//! proxy's connections.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::config::Config;
use crate::pipeline::Pipeline;
use crate::proxy::coverage::Coverage;
use crate::store::{self, EventStore};

mod api;
mod audit;
pub mod auth;
pub mod export;
pub mod filter;
pub mod metrics;
mod openapi;
pub mod probes;
mod ui;

/// What the admin handlers read.
#[derive(Clone)]
pub struct AdminState {
    pub store: Arc<dyn EventStore>,
    /// Where `audit.query` / `audit.export` events go.
    pub pipeline: Pipeline,
    /// Set once shutdown begins: the sidecar stops reporting ready so traffic moves away.
    pub draining: Arc<AtomicBool>,
    /// The config in force, read on every request so a reload's `admin.credentials` and routes
    /// apply at once (rotating a leaked admin token needs no restart).
    pub config: ConfigSource,
    /// Unmapped traffic and per-route hits counted by the proxy, for `/v1/coverage`.
    pub coverage: Arc<Coverage>,
    /// Re-reads the config for `POST /v1/reload` (`None`: reload is not offered).
    pub reload: Option<Reloader>,
    /// Windows of failed authentications per client address: each becomes an `audit.query`
    /// event with reason `unauthenticated`, bursts aggregated.
    pub probes: Arc<probes::Probes>,
}

/// Re-read the config: the summary of what changed, or every config error.
pub type Reloader = Arc<
    dyn Fn() -> futures_util::future::BoxFuture<'static, Result<serde_json::Value, Vec<String>>>
        + Send
        + Sync,
>;

/// Where the admin API reads the config in force (the live-reloaded one in a sidecar).
pub type ConfigSource = Arc<dyn Fn() -> Arc<Config> + Send + Sync>;

/// Why an admin request failed. [`IntoResponse`] maps each variant to its status in one
/// exhaustive match; the client gets the status and a short message, details go to `tracing`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `Authorization: Bearer` header, or its token matches no credential.
    #[error("missing or invalid admin credential")]
    Unauthorized {
        /// A token was sent (and was wrong), as opposed to none at all.
        presented: bool,
    },
    #[error("credential \"{credential}\" lacks the {permission} permission")]
    Forbidden {
        credential: String,
        permission: &'static str,
    },
    /// The thing does not exist, or exists outside the caller's app scope: the two are
    /// deliberately indistinguishable.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("invalid {name} \"{value}\": {reason}")]
    InvalidParam {
        name: String,
        value: String,
        reason: String,
    },
    #[error("unknown query parameter \"{0}\"")]
    UnknownParam(String),
    #[error("query parameter \"{0}\" given more than once")]
    DuplicateParam(String),
    #[error("event store: {0}")]
    Store(#[from] store::Error),
}

impl Error {
    pub(crate) fn invalid(name: &str, value: &str, reason: impl Into<String>) -> Error {
        // Echo at most a short prefix of what the client sent.
        let value: String = value.chars().take(64).collect();
        Error::InvalidParam {
            name: name.to_string(),
            value,
            reason: reason.into(),
        }
    }

    /// The short reason recorded on the `audit.query` event of a failed read.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Error::Unauthorized { .. } => "unauthorized",
            Error::Forbidden { .. } => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::InvalidParam { .. } | Error::UnknownParam(_) | Error::DuplicateParam(_) => {
                "bad_request"
            }
            Error::Store(_) => "store_unavailable",
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Error::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Error::Forbidden { .. } => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::InvalidParam { .. } | Error::UnknownParam(_) | Error::DuplicateParam(_) => {
                StatusCode::BAD_REQUEST
            }
            Error::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            Error::Store(e) => {
                tracing::error!(error = %e, "admin: store query failed");
                "the event store is unavailable".to_string()
            }
            other => other.to_string(),
        };
        let body = json!({ "error": self.reason(), "message": message });
        let mut resp = (status, Json(body)).into_response();
        if let Error::Unauthorized { presented } = self {
            // RFC 6750 §3: say which scheme, and whether the token sent was the problem.
            let challenge = if presented {
                "Bearer realm=\"authtrail\", error=\"invalid_token\""
            } else {
                "Bearer realm=\"authtrail\""
            };
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        resp
    }
}

/// The admin router: `/healthz`, `/readyz`, the `/v1` API and the `/ui` viewer.
///
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so audit events carry the
/// client's address; without it they carry none.
pub fn app(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/events", get(api::list_events))
        .route("/v1/events/{id}", get(api::get_event))
        .route("/v1/tokens/{key}", get(api::token_life))
        .route("/v1/stats", get(api::stats))
        .route("/v1/coverage", get(api::coverage))
        .route("/v1/export", get(export::handler))
        .route("/v1/whoami", get(api::whoami))
        .route("/v1/reload", axum::routing::post(api::reload))
        .route("/v1/openapi.json", get(openapi::handler))
        .route("/", get(ui::redirect))
        .route("/ui", get(ui::page))
        .route("/ui/", get(ui::redirect))
        .route("/ui/app.js", get(ui::script))
        .route("/ui/app.css", get(ui::style))
        .fallback(not_found)
        .layer(axum::middleware::map_response(common_headers))
        .with_state(state)
}

async fn common_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Audit data must not linger in shared caches or the browser's disk cache.
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// An unknown path. Under `/v1` the caller is authenticated first, so a probe for endpoints
/// without a valid credential is refused (401) and audited like any other `/v1` request; a
/// caller with one learns that the endpoint does not exist.
async fn not_found(State(state): State<AdminState>, req: axum::extract::Request) -> Response {
    if req.uri().path() == "/v1" || req.uri().path().starts_with("/v1/") {
        use axum::extract::FromRequestParts;
        let (mut parts, _) = req.into_parts();
        if let Err(e) = auth::Caller::from_request_parts(&mut parts, &state).await {
            return e.into_response();
        }
    }
    let body = json!({ "error": "not_found", "message": "no such admin endpoint" });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Longest the store's read check and the spool's write probe may each take: together below a
/// default Kubernetes probe timeout.
const READY_CHECK: Duration = Duration::from_millis(450);
/// A spool write failure younger than this is believed as it is; an older one is checked again
/// by a probe write, so a disk that has room again is noticed without traffic.
const SPOOL_RECHECK: Duration = Duration::from_secs(5);

/// Ready means "a request now will be recorded": the store takes writes, or — while it does
/// not — the spool does (async events wait there; sync routes answer 503). 503 when neither
/// can, and while starting or draining. The body says which, with the queue and spool counts.
///
/// The store is down when the writer's last append failed (a full disk, a read-only or locked
/// database: a read would still succeed), or, with no failed write pending, when it does not
/// answer a read. The spool is only probed with a real write while the store is down: then it
/// decides.
async fn readyz(State(s): State<AdminState>) -> Response {
    use crate::pipeline::SpoolHealth;

    let health = &s.pipeline.stats().health;
    let stats = s.pipeline.stats().snapshot();
    let cfg = (s.config)();
    let mut body = json!({
        "queue_depth": s.pipeline.queue_depth(),
        // Events parked locally while the store is unavailable (also in `events.spool_depth`).
        "spool_depth": stats.spool_depth,
        "spool_bytes": stats.spool_bytes,
        "spool_max_bytes": cfg.store.spool.max_bytes,
        "events": stats,
    });
    if s.draining.load(Ordering::Acquire) {
        body["status"] = json!("draining");
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let store: Result<(), &str> = if health.store_failing() {
        Err("write_failed")
    } else {
        match tokio::time::timeout(READY_CHECK, s.store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: store unreachable");
                Err("unreachable")
            }
            Err(_) => Err("timeout"),
        }
    };
    let spool = match health.spool() {
        _ if stats.spool_bytes >= cfg.store.spool.max_bytes => "full",
        // Replay makes room once the store is back: a full spool that holds events stays full
        // until then. (One that holds none refused a batch bigger than all of it: recheck.)
        SpoolHealth::Full { since } if stats.spool_depth > 0 || since < SPOOL_RECHECK => "full",
        SpoolHealth::Failing { since } if since < SPOOL_RECHECK => "failing",
        // While the store is down the spool decides whether a request is recorded: ask it.
        _ if store.is_err() => {
            let dir = cfg.store.spool.dir.clone();
            let probe = tokio::task::spawn_blocking(move || crate::pipeline::spool::probe(&dir));
            match tokio::time::timeout(READY_CHECK, probe).await {
                Ok(Ok(Ok(()))) => "ok",
                Ok(Ok(Err(e))) => {
                    tracing::warn!(error = %e, "readiness: the spool refuses writes");
                    // Believed for SPOOL_RECHECK, as a refused batch would be.
                    health.spool_refused(false);
                    "failing"
                }
                Ok(Err(_)) | Err(_) => "failing",
            }
        }
        SpoolHealth::Full { .. } => "full",
        SpoolHealth::Failing { .. } => "failing",
        SpoolHealth::Ok => "ok",
    };
    let (status, code) = match (store, spool) {
        (Ok(()), _) => ("ready", StatusCode::OK),
        (Err(_), "ok") => ("degraded", StatusCode::OK),
        (Err(_), _) => ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
    };
    body["status"] = json!(status);
    body["store"] = json!(if store.is_ok() { "ok" } else { "down" });
    if let Err(why) = store {
        body["store_error"] = json!(why);
    }
    body["spool"] = json!(spool);
    if code != StatusCode::OK {
        tracing::warn!(
            store_error = store.err().unwrap_or_default(),
            spool,
            "readiness: not ready, a request now would not be recorded"
        );
    }
    (code, Json(body)).into_response()
}

#[cfg(test)]
mod tests;
