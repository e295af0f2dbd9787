//! Live reload: the proxy a request is served by is swapped whole when the config is re-read
//! (SIGHUP or the admin API). A request keeps the snapshot it started with, so nothing in flight
//! changes under it and no connection is dropped; an invalid new config is rejected with its
//! errors and the running one stays.

use std::sync::{Arc, Mutex, RwLock};

use tokio::task::JoinHandle;

use super::coverage::Coverage;
use super::Proxy;
use crate::config::{self, Config};
use crate::identity::lineage::LineageIndex;
use crate::pipeline::Pipeline;

/// The current proxy and what reloading needs.
pub struct Live {
    current: RwLock<Arc<Proxy>>,
    pipeline: Pipeline,
    coverage: Arc<Coverage>,
    lineage: Arc<LineageIndex>,
    jwks: Mutex<Vec<JoinHandle<()>>>,
    /// Held across a whole reload: two at once (a SIGHUP and an API call) would each read the
    /// file, wait for their key sets and then swap, so the one that started first could finish
    /// last, putting back the older content and stopping the key schedules of the config in
    /// force.
    reloading: tokio::sync::Mutex<()>,
    /// Every proxy's mapped exchanges still running after their clients hung up (see
    /// `Proxy::complete`), awaited by the shutdown drain.
    exchanges: tokio_util::task::TaskTracker,
}

/// What a successful reload changed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Reloaded {
    pub file: String,
    pub routes: usize,
    /// Settings that only take effect after a restart and were left as they were.
    pub needs_restart: Vec<&'static str>,
}

impl Live {
    /// Start serving `cfg`: its key sets are loaded first (see [`Live::keys_ready`]).
    pub async fn start(
        cfg: Arc<Config>,
        pipeline: Pipeline,
        coverage: Arc<Coverage>,
        lineage: Arc<LineageIndex>,
    ) -> Live {
        let jwks = keys_ready(&cfg).await;
        coverage.set_routes(&cfg.routes);
        let exchanges = tokio_util::task::TaskTracker::new();
        let proxy = Arc::new(Proxy::new(
            cfg,
            pipeline.clone(),
            coverage.clone(),
            lineage.clone(),
            exchanges.clone(),
        ));
        Live {
            current: RwLock::new(proxy),
            pipeline,
            coverage,
            lineage,
            jwks: Mutex::new(jwks),
            reloading: tokio::sync::Mutex::new(()),
            exchanges,
        }
    }

    /// The proxy new requests are served by.
    pub fn proxy(&self) -> Arc<Proxy> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The mapped exchanges still running after their clients hung up: the shutdown drain
    /// waits for them after the connections (see `Proxy::complete`).
    pub fn exchanges(&self) -> &tokio_util::task::TaskTracker {
        &self.exchanges
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.proxy().cfg.clone()
    }

    /// Re-read the config file; on success new requests use it. Listener, admin listener,
    /// store, TLS listener, retention, sinks and alerts need a restart and are kept (and
    /// reported). Reloads run one at a time, each reading the file when its turn comes.
    pub async fn reload(&self) -> Result<Reloaded, config::Error> {
        let _one_at_a_time = self.reloading.lock().await;
        let done = self.apply_reload().await;
        crate::metrics::reload(done.is_ok());
        done
    }

    async fn apply_reload(&self) -> Result<Reloaded, config::Error> {
        let old = self.config();
        let mut new = config::load_file(&old.file)?;
        let mut needs_restart = Vec::new();
        if new.listen != old.listen {
            needs_restart.push("listen");
            new.listen = old.listen;
        }
        if new.admin_listen != old.admin_listen {
            needs_restart.push("admin.listen");
            new.admin_listen = old.admin_listen;
        }
        if new.admin_unauthenticated_window != old.admin_unauthenticated_window {
            needs_restart.push("admin.unauthenticated_window");
            new.admin_unauthenticated_window = old.admin_unauthenticated_window;
        }
        if new.store != old.store {
            needs_restart.push("store");
            new.store = old.store.clone();
        }
        if new.tls.is_some() != old.tls.is_some() {
            needs_restart.push("tls");
        }
        new.tls = old.tls.clone();
        new.max_connections = old.max_connections;
        // Retention, sinks and alerts run as tasks started with the sidecar.
        if new.ops.retention != old.ops.retention {
            needs_restart.push("retention");
            new.ops.retention = old.ops.retention.clone();
        }
        if new.ops.sinks != old.ops.sinks {
            needs_restart.push("sinks");
            new.ops.sinks = old.ops.sinks.clone();
        }
        if new.ops.alerts != old.ops.alerts {
            needs_restart.push("alerts");
            new.ops.alerts = old.ops.alerts.clone();
        }
        let new = Arc::new(new);
        let jwks = keys_ready(&new).await;
        // Coverage shapes keep the new map's literals readable, and no longer the old map's.
        self.coverage.set_routes(&new.routes);
        let proxy = Arc::new(Proxy::new(
            new.clone(),
            self.pipeline.clone(),
            self.coverage.clone(),
            self.lineage.clone(),
            self.exchanges.clone(),
        ));
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = proxy;
        let old_jwks = std::mem::replace(
            &mut *self.jwks.lock().unwrap_or_else(|e| e.into_inner()),
            jwks,
        );
        for t in old_jwks {
            t.abort();
        }
        let done = Reloaded {
            file: new.file.clone(),
            routes: new.routes.routes.len(),
            needs_restart,
        };
        tracing::info!(file = %done.file, routes = done.routes, needs_restart = ?done.needs_restart, "config reloaded");
        Ok(done)
    }

    /// Reload, logging the outcome (for SIGHUP).
    pub async fn reload_logged(&self) {
        if let Err(e) = self.reload().await {
            tracing::error!(errors = %e, "config reload rejected; the running config stays");
        }
    }

    /// Stop the JWKS refresh schedules (at shutdown).
    pub fn stop(&self) {
        for t in self
            .jwks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

/// Load every JWKS of `cfg` (a failure is logged; tokens then read `keys_unavailable` until a
/// refresh succeeds) and start their refresh schedules.
async fn keys_ready(cfg: &Config) -> Vec<JoinHandle<()>> {
    let mut schedules = Vec::new();
    for ks in cfg.identity.keysets.values() {
        if let Some(cache) = ks.jwks() {
            cache.refresh().await;
            schedules.push(cache.spawn_schedule());
        }
    }
    schedules
}

/// Reload on every SIGHUP until the task is aborted.
#[cfg(unix)]
pub fn spawn_sighup(live: Arc<Live>) -> JoinHandle<()> {
    // Registered before returning: a SIGHUP that arrives once serving has begun never falls
    // back to the default action (terminating the process).
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    tokio::spawn(async move {
        let Ok(mut hup) = hup else {
            tracing::error!("cannot listen for SIGHUP: reload only through the admin API");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config");
            live.reload_logged().await;
        }
    })
}
