//! Day-two operations beside the road to the store: stream sinks and alert rules fed by the
//! pipeline's taps (each with its own bounded queue, so neither can slow the proxy or the store
//! writer), the signed webhooks both deliver through, and retention, which purges the store under
//! a policy and keeps `verify` passing.
//!
//! ```text
//! Pipeline::submit ─┬─► queue ─► writer ─► store ◄── retention (background purge)
//!                   ├─► tap ─► alert rules ─► log, alert.fired (back into submit), webhooks
//!                   └─► tap ─► sink (stdout | webhook | http product | otlp | syslog), one per sink
//! ```

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::pipeline::{Pipeline, Taps};
use crate::store::{EventStore, Signer};

pub mod alerts;
pub mod formats;
pub mod otlp;
pub mod retention;
pub mod sinks;
pub mod syslog;
pub mod webhook;

/// What runs here, as the config checked it (`retention:`, `sinks:`, `alerts:`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpsConfig {
    /// `retention:`; nothing is purged without it.
    pub retention: Option<retention::Policy>,
    /// `sinks:`, in file order.
    pub sinks: Vec<sinks::SinkConfig>,
    /// `alerts:`, in file order.
    pub alerts: Vec<alerts::Rule>,
}

/// Counters of everything running here, for the metrics.
#[derive(Debug, Default)]
pub struct OpsStats {
    pub sinks: Vec<Arc<sinks::SinkStats>>,
    pub alerts: Option<Arc<alerts::AlertStats>>,
    pub retention: Option<Arc<retention::RetentionStats>>,
}

/// The running sinks, alert task and background purge.
pub struct Ops {
    pub stats: Arc<OpsStats>,
    stop: watch::Sender<bool>,
    /// The sinks' own stop: after the writer, so they also get its shutdown checkpoint.
    sink_stop: watch::Sender<bool>,
    retention: Option<JoinHandle<()>>,
    alerts: Option<JoinHandle<()>>,
    sinks: Vec<JoinHandle<()>>,
}

impl Ops {
    /// Start what `cfg` configures on top of `pipeline`; returns the pipeline with the taps that
    /// feed the sinks and alerts (hand out clones of that one). Retention runs only with the
    /// `signer` of the store's checkpoints (each purge is sealed with a signed checkpoint).
    ///
    /// # Errors
    /// A webhook whose client cannot be built (an unreadable `ca_file`).
    pub fn start(
        cfg: &OpsConfig,
        signer: Option<&Signer>,
        store: Arc<dyn EventStore>,
        pipeline: Pipeline,
    ) -> Result<(Pipeline, Ops), String> {
        let (stop, stop_rx) = watch::channel(false);
        let (sink_stop, sink_stop_rx) = watch::channel(false);
        let mut taps = Vec::new();
        let mut stats = OpsStats::default();
        let mut sink_tasks = Vec::new();
        let mut hooks = HashMap::new();
        for sc in &cfg.sinks {
            if let sinks::Target::Webhook { webhook, .. } = &sc.target {
                hooks.insert(sc.name.clone(), webhook::Webhook::new(webhook.clone())?);
            }
            if sc.types.as_ref().is_some_and(Vec::is_empty) {
                continue; // Streams nothing: only there for alert notifications.
            }
            let (tap, sink) = sinks::start(sc, sink_stop_rx.clone())?;
            taps.push(tap);
            stats.sinks.push(sink.stats);
            sink_tasks.push(sink.task);
        }
        let slot = Arc::new(OnceLock::new());
        let mut alert_task = None;
        if !cfg.alerts.is_empty() {
            let (tap, a) = alerts::start(cfg.alerts.clone(), hooks, slot.clone(), stop_rx.clone());
            taps.insert(0, tap);
            stats.alerts = Some(a.stats);
            alert_task = Some(a.task);
        }
        let pipeline = if taps.is_empty() {
            pipeline
        } else {
            pipeline.with_taps(Taps::new(taps))
        };
        let _ = slot.set(pipeline.clone());
        let mut retention_task = None;
        if let (Some(policy), Some(signer)) = (&cfg.retention, signer) {
            let rs = Arc::new(retention::RetentionStats::default());
            retention_task = Some(retention::spawn(
                store,
                policy.clone(),
                signer.clone(),
                pipeline.clone(),
                rs.clone(),
                stop_rx,
            ));
            stats.retention = Some(rs);
        }
        Ok((
            pipeline,
            Ops {
                stats: Arc::new(stats),
                stop,
                sink_stop,
                retention: retention_task,
                alerts: alert_task,
                sinks: sink_tasks,
            },
        ))
    }

    /// Stop the purge and the alert task (which evaluates what is queued and records its last
    /// firings): call before the pipeline's writer shuts down.
    pub async fn stop_producers(&mut self, grace: Duration) {
        let _ = self.stop.send(true);
        for task in [self.retention.take(), self.alerts.take()]
            .into_iter()
            .flatten()
        {
            if tokio::time::timeout(grace, task).await.is_err() {
                tracing::warn!("shutdown: alert or retention task did not stop in time");
            }
        }
    }

    /// Let the sinks write what is queued and stop them (after the writer has shut down, so the
    /// last events reach them too).
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        self.stop_producers(grace).await;
        let _ = self.sink_stop.send(true);
        let sinks = std::mem::take(&mut self.sinks);
        let all = async {
            for task in sinks {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("shutdown: sinks still delivering after the grace period");
        }
    }
}
