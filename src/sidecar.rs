//! Wiring: open the store, start the pipeline, serve the proxy and the admin listener, and on
//! shutdown drain in order — stop accepting, finish in-flight requests, flush every queued event.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::admin::{self, AdminState};
use crate::config::Config;
use crate::pipeline::spool::SpoolError;
use crate::pipeline::{Pipeline, PipelineConfig, Spool, StatsSnapshot};
use crate::proxy::coverage::Coverage;
use crate::proxy::live::{self, Live};
use crate::proxy::server;
use crate::store;

/// The two sockets a sidecar serves; bound by the caller so tests can use port 0.
pub struct Listeners {
    pub proxy: TcpListener,
    pub admin: TcpListener,
}

/// Why the sidecar could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the event store: {0}")]
    Store(#[from] store::Error),
    #[error("listener: {0}")]
    Admin(#[source] std::io::Error),
    #[error("cannot open the audit spool: {0}")]
    Spool(#[from] SpoolError),
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Every connection finished within the grace period.
    pub drained: bool,
    pub events: StatsSnapshot,
}

/// Run until `shutdown` resolves, then drain and flush.
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<Summary, Error> {
    let store = store::open(&cfg.store.url).await?;
    run_with_store(cfg, store, listeners, shutdown).await
}

/// [`run`] on a store that is already open (tests wrap one to make it fail on demand).
pub async fn run_with_store(
    cfg: Config,
    store: Arc<dyn store::EventStore>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<Summary, Error> {
    let cfg = Arc::new(cfg);
    let proxy_addr = listeners.proxy.local_addr().map_err(Error::Admin)?;
    let admin_addr = listeners.admin.local_addr().map_err(Error::Admin)?;
    let spool_cfg = cfg.store.spool.clone();
    let spool = tokio::task::spawn_blocking(move || Spool::open(&spool_cfg))
        .await
        .map_err(|e| SpoolError::Io {
            path: cfg.store.spool.dir.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })??;
    let (pipeline, writer) = Pipeline::start_with(
        store.clone(),
        PipelineConfig::from_store(&cfg.store),
        Some(spool),
    );
    let draining = Arc::new(AtomicBool::new(false));
    let coverage = Arc::new(Coverage::default());
    let admin_state = AdminState {
        store,
        pipeline: pipeline.clone(),
        draining: draining.clone(),
        credentials: cfg.admin_credentials.clone().into(),
        coverage: coverage.clone(),
        routes: cfg.routes.routes.iter().map(|r| r.id.clone()).collect(),
    };
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_app = admin::app(admin_state).into_make_service_with_connect_info::<SocketAddr>();
    let admin_server = axum::serve(listeners.admin, admin_app).with_graceful_shutdown(async move {
        let _ = admin_stopped.await;
    });
    let mut admin_task = tokio::spawn(async move { admin_server.await });

    let live = Arc::new(Live::start(cfg.clone(), pipeline.clone(), coverage).await);
    #[cfg(unix)]
    let sighup = live::spawn_sighup(live.clone());
    tracing::info!(
        proxy = %proxy_addr,
        admin = %admin_addr,
        upstream = %cfg.upstream,
        routes = cfg.routes.routes.len(),
        store = %store::display_url(&cfg.store.url),
        chain = pipeline.instance(),
        spool_depth = pipeline.spool_depth(),
        "authtrail serving"
    );
    let drained = server::serve(live.clone(), listeners.proxy, async {
        shutdown.await;
        draining.store(true, Ordering::Release);
        tracing::info!("shutdown: draining in-flight requests");
    })
    .await;
    // Admin reads are recorded through the pipeline: stop the admin listener before the writer,
    // so no audit event arrives after the queue closed. A running export gets the grace period.
    let _ = admin_stop.send(());
    let admin_result = tokio::time::timeout(cfg.timeouts.shutdown_grace, &mut admin_task).await;
    if admin_result.is_err() {
        tracing::warn!("shutdown: admin requests still running after the grace period");
        admin_task.abort();
    }
    writer.shutdown().await;
    let events = pipeline.stats().snapshot();
    tracing::info!(
        written = events.written,
        dropped = events.dropped,
        failed = events.failed,
        "shutdown: events flushed"
    );
    live.stop();
    #[cfg(unix)]
    sighup.abort();
    match admin_result {
        Ok(Ok(Ok(()))) | Err(_) => {}
        Ok(Ok(Err(e))) => return Err(Error::Admin(e)),
        Ok(Err(e)) => tracing::error!(error = %e, "admin task failed"),
    }
    Ok(Summary { drained, events })
}
