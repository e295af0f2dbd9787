//! Stream sinks: every event (or those of the listed types) also goes out as JSON lines on
//! standard output, for cluster log collectors, or in batches to a signed webhook. Each sink is
//! one task reading its own bounded tap, so a slow or dead sink only fills its own queue: further
//! copies are dropped and counted, the proxy and the store writer never wait for it.
//!
//! A sink sees events as they are handed to the pipeline (no `seq`, no `chain`). Delivery is at
//! most once: a webhook batch that keeps failing is given up (counted and logged) so the queue
//! behind it moves on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::webhook::{Webhook, WebhookConfig};
use crate::event::AuditEvent;
use crate::pipeline::tap::{self, Tap, TapStats};
use crate::store::TypeFilter;

/// How events are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The event as the store keeps it.
    Json,
    /// OCSF 1.x (Authentication, Account Change, API Activity), as `export --format ocsf`.
    Ocsf,
}

/// Where a sink writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One line per event on standard output.
    Stdout,
    /// Batches POSTed as `{"sink": NAME, "events": [...]}`.
    Webhook {
        webhook: WebhookConfig,
        /// Most events per request.
        batch: usize,
        /// Longest an event waits for its batch to fill.
        flush: Duration,
    },
}

/// A checked `sinks.NAME` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkConfig {
    pub name: String,
    pub target: Target,
    pub format: Format,
    /// Events the sink's queue holds.
    pub queue: usize,
    /// Event types it takes; all when `None`, none when empty.
    pub types: Option<Vec<TypeFilter>>,
}

/// What a sink did, for the metrics.
#[derive(Debug)]
pub struct SinkStats {
    pub name: String,
    /// Its queue: depth, and copies dropped because it was full.
    pub tap: Arc<TapStats>,
    /// Events written (stdout) or delivered (webhook).
    pub sent: AtomicU64,
    /// Events given up after the webhook kept failing, or unwritable to stdout.
    pub failed: AtomicU64,
    /// Webhook requests, retries included.
    pub requests: AtomicU64,
}

/// A running sink.
pub struct Sink {
    pub stats: Arc<SinkStats>,
    pub(super) task: JoinHandle<()>,
}

/// The sink's tap and its task; the task runs until `stop` turns true, then writes what is
/// queued and ends.
pub fn start(cfg: &SinkConfig, stop: watch::Receiver<bool>) -> Result<(Tap, Sink), String> {
    let (tap, rx) = tap::tap(&cfg.name, cfg.queue, cfg.types.clone());
    let stats = Arc::new(SinkStats {
        name: cfg.name.clone(),
        tap: tap.stats().clone(),
        sent: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        requests: AtomicU64::new(0),
    });
    let task = match &cfg.target {
        Target::Stdout => tokio::spawn(stdout_task(rx, cfg.format, stats.clone(), stop)),
        Target::Webhook {
            webhook,
            batch,
            flush,
        } => {
            let hook =
                Webhook::new(webhook.clone()).map_err(|e| format!("sink \"{}\": {e}", cfg.name))?;
            tokio::spawn(webhook_task(WebhookSink {
                name: cfg.name.clone(),
                rx,
                hook,
                format: cfg.format,
                batch: (*batch).max(1),
                flush: *flush,
                stats: stats.clone(),
                stop,
            }))
        }
    };
    Ok((tap, Sink { stats, task }))
}

/// `event` in `format`, as one JSON value.
pub fn encode(event: &AuditEvent, format: Format) -> serde_json::Value {
    match format {
        Format::Json => serde_json::to_value(event).unwrap_or(serde_json::Value::Null),
        Format::Ocsf => crate::admin::export::to_ocsf(event),
    }
}

/// Wait for the next event, or `None` once stopping and the queue is empty.
async fn next(
    rx: &mut mpsc::Receiver<Arc<AuditEvent>>,
    stop: &mut watch::Receiver<bool>,
) -> Option<Arc<AuditEvent>> {
    if *stop.borrow() {
        return rx.try_recv().ok();
    }
    tokio::select! {
        ev = rx.recv() => ev,
        _ = stop.changed() => rx.try_recv().ok(),
    }
}

async fn stdout_task(
    mut rx: mpsc::Receiver<Arc<AuditEvent>>,
    format: Format,
    stats: Arc<SinkStats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut out = tokio::io::BufWriter::new(tokio::io::stdout());
    let mut line = Vec::with_capacity(1024);
    while let Some(ev) = next(&mut rx, &mut stop).await {
        let mut pending = vec![ev];
        // Whatever else is queued goes out with it, then one flush.
        while pending.len() < 256 {
            match rx.try_recv() {
                Ok(ev) => pending.push(ev),
                Err(_) => break,
            }
        }
        let mut ok = true;
        for ev in &pending {
            line.clear();
            if serde_json::to_writer(&mut line, &encode(ev, format)).is_err() {
                continue;
            }
            line.push(b'\n');
            ok &= out.write_all(&line).await.is_ok();
        }
        ok &= out.flush().await.is_ok();
        let n = pending.len() as u64;
        if ok {
            stats.sent.fetch_add(n, Ordering::Relaxed);
        } else {
            stats.failed.fetch_add(n, Ordering::Relaxed);
        }
    }
    let _ = out.flush().await;
}

struct WebhookSink {
    name: String,
    rx: mpsc::Receiver<Arc<AuditEvent>>,
    hook: Webhook,
    format: Format,
    batch: usize,
    flush: Duration,
    stats: Arc<SinkStats>,
    stop: watch::Receiver<bool>,
}

async fn webhook_task(mut s: WebhookSink) {
    loop {
        let Some(first) = next(&mut s.rx, &mut s.stop).await else {
            return;
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + s.flush;
        while batch.len() < s.batch {
            if *s.stop.borrow() {
                match s.rx.try_recv() {
                    Ok(ev) => batch.push(ev),
                    Err(_) => break,
                }
                continue;
            }
            tokio::select! {
                ev = s.rx.recv() => match ev {
                    Some(ev) => batch.push(ev),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
                _ = s.stop.changed() => {}
            }
        }
        deliver(&s, &batch).await;
    }
}

async fn deliver(s: &WebhookSink, batch: &[Arc<AuditEvent>]) {
    let events: Vec<serde_json::Value> = batch.iter().map(|e| encode(e, s.format)).collect();
    let body = serde_json::json!({ "sink": s.name, "events": events });
    let body = Bytes::from(body.to_string());
    let n = batch.len() as u64;
    match s.hook.post(body).await {
        Ok(attempts) => {
            s.stats
                .requests
                .fetch_add(u64::from(attempts), Ordering::Relaxed);
            s.stats.sent.fetch_add(n, Ordering::Relaxed);
        }
        Err(e) => {
            let attempts = match &e {
                super::webhook::Error::Failed { attempts, .. } => *attempts,
                super::webhook::Error::Refused { .. } => 1,
            };
            s.stats
                .requests
                .fetch_add(u64::from(attempts), Ordering::Relaxed);
            s.stats.failed.fetch_add(n, Ordering::Relaxed);
            tracing::error!(sink = %s.name, events = n, error = %e, "sink batch given up");
        }
    }
}
