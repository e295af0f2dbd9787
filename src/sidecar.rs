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
use crate::pipeline::{Pipeline, Spool, StatsSnapshot};
use crate::proxy::coverage::Coverage;
use crate::proxy::live::{self, Live};
use crate::proxy::server;
use crate::store;

/// How long alerts and retention get to stop, and the sinks to write what is queued, at
/// shutdown (each, after the proxy's drain).
const OPS_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

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
    #[error("cannot start the sinks: {0}")]
    Sinks(String),
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
    let (pipeline, writer) =
        Pipeline::start_with(store.clone(), cfg.store.pipeline.clone(), Some(spool));
    // Alert rules and sinks tap the pipeline: every clone handed out below carries the taps.
    let signer = cfg.store.pipeline.checkpoint.as_ref().map(|c| &c.signer);
    let (pipeline, mut ops) =
        crate::ops::Ops::start(&cfg.ops, signer, store.clone(), pipeline).map_err(Error::Sinks)?;
    // Before the proxy starts: its per-route instruments register with this recorder.
    let metrics = crate::metrics::install().map(|handle| {
        Arc::new(crate::admin::metrics::ScrapeState {
            handle,
            pipeline: pipeline.clone(),
            ops: ops.stats.clone(),
            live: std::sync::OnceLock::new(),
        })
    });
    let upkeep = metrics
        .as_ref()
        .map(|m| crate::metrics::spawn_upkeep(m.handle.clone(), std::time::Duration::from_secs(5)));
    // Not ready until the proxy is up (key sets loaded): `/readyz` answers 503 until then.
    let draining = Arc::new(AtomicBool::new(true));
    let coverage = Arc::new(Coverage::default());
    let probes = Arc::new(admin::probes::Probes::new(
        cfg.admin_unauthenticated_window,
        admin::probes::MAX_TRACKED,
    ));
    let probes_flusher = admin::probes::spawn_flusher(probes.clone(), pipeline.clone());
    // The admin API reads the live (reloadable) config once the proxy is up, the first before.
    let admin_live: Arc<std::sync::OnceLock<Arc<Live>>> = Arc::default();
    let admin_state = AdminState {
        store: store.clone(),
        pipeline: pipeline.clone(),
        draining: draining.clone(),
        config: {
            let (first, live) = (cfg.clone(), admin_live.clone());
            Arc::new(move || live.get().map_or_else(|| first.clone(), |l| l.config()))
        },
        coverage: coverage.clone(),
        reload: {
            let live = admin_live.clone();
            let reloader: admin::Reloader = Arc::new(move || {
                let live = live.get().cloned();
                Box::pin(async move {
                    let Some(live) = live else {
                        return Err(vec!["the sidecar is still starting".to_string()]);
                    };
                    match live.reload().await {
                        Ok(done) => Ok(serde_json::to_value(done).unwrap_or_default()),
                        Err(e) if !e.diagnostics().is_empty() => {
                            Err(e.diagnostics().iter().map(ToString::to_string).collect())
                        }
                        Err(e) => Err(vec![e.to_string()]),
                    }
                })
            });
            Some(reloader)
        },
        probes: probes.clone(),
    };
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut admin_router = admin::app(admin_state);
    if let Some(m) = &metrics {
        admin_router = admin_router.merge(crate::admin::metrics::router(m.clone()));
    }
    let admin_app = admin_router.into_make_service_with_connect_info::<SocketAddr>();
    let admin_server = axum::serve(listeners.admin, admin_app).with_graceful_shutdown(async move {
        let _ = admin_stopped.await;
    });
    let mut admin_task = tokio::spawn(async move { admin_server.await });

    // Who issued tokens, codes and session cookies belong to: memory first, then the store.
    let lineage = Arc::new(crate::identity::lineage::LineageIndex::new(
        cfg.identity.lineage_cache,
        Some(store.clone()),
    ));
    let live = Arc::new(Live::start(cfg.clone(), pipeline.clone(), coverage, lineage).await);
    let _ = admin_live.set(live.clone());
    draining.store(false, Ordering::Release);
    if let Some(m) = &metrics {
        let _ = m.live.set(live.clone());
    }
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
    // Failed admin authentications still counted in open windows are written now.
    probes_flusher.abort();
    probes.drain(&pipeline);
    // Alerts and retention still submit events: stop them before the writer's last flush, and
    // the sinks after it, so they get every event.
    ops.stop_producers(OPS_GRACE).await;
    writer.shutdown().await;
    ops.shutdown(OPS_GRACE).await;
    if let Some(u) = upkeep {
        u.abort();
    }
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
