//! Wiring: open the store, start the pipeline, serve the proxy and the admin listener, and on
//! shutdown drain in order — stop accepting, finish in-flight requests, flush every queued event.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::admin::{self, AdminState};
use crate::config::Config;
use crate::pipeline::{Pipeline, PipelineConfig, StatsSnapshot};
use crate::proxy::coverage::Coverage;
use crate::proxy::{server, Proxy};
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
    let cfg = Arc::new(cfg);
    let proxy_addr = listeners.proxy.local_addr().map_err(Error::Admin)?;
    let admin_addr = listeners.admin.local_addr().map_err(Error::Admin)?;
    let store = store::open(&cfg.store.url).await?;
    let (pipeline, writer) = Pipeline::start(
        store.clone(),
        PipelineConfig {
            queue_capacity: cfg.store.queue_capacity,
            batch_size: cfg.store.batch_size,
            flush_interval: cfg.store.flush_interval,
        },
    );
    let draining = Arc::new(AtomicBool::new(false));
    let admin_state = AdminState {
        store,
        pipeline: pipeline.clone(),
        draining: draining.clone(),
    };
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_server = axum::serve(listeners.admin, admin::app(admin_state))
        .with_graceful_shutdown(async move {
            let _ = admin_stopped.await;
        });
    let admin_task = tokio::spawn(async move { admin_server.await });

    let proxy = Arc::new(Proxy::new(
        cfg.clone(),
        pipeline.clone(),
        Arc::new(Coverage::default()),
    ));
    tracing::info!(
        proxy = %proxy_addr,
        admin = %admin_addr,
        upstream = %cfg.upstream,
        routes = cfg.routes.routes.len(),
        store = %cfg.store.url,
        "authtrail serving"
    );
    let drained = server::serve(proxy, listeners.proxy, async {
        shutdown.await;
        draining.store(true, Ordering::Release);
        tracing::info!("shutdown: draining in-flight requests");
    })
    .await;
    writer.shutdown().await;
    let events = pipeline.stats().snapshot();
    tracing::info!(
        written = events.written,
        dropped = events.dropped,
        failed = events.failed,
        "shutdown: events flushed"
    );
    let _ = admin_stop.send(());
    match admin_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(Error::Admin(e)),
        Err(e) => tracing::error!(error = %e, "admin task failed"),
    }
    Ok(Summary { drained, events })
}
