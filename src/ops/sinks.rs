//! Stream sinks: every event (or those of the listed types) also goes out as JSON lines on
//! standard output, for cluster log collectors, or in batches to a signed webhook. Each sink is
//! one task reading its own bounded tap, so a slow or dead sink only fills its own queue: further
//! copies are dropped and counted, the proxy and the store writer never wait for it.
//!
//! A sink sees events as they are handed to the pipeline (no `seq`, no `chain`), and every
//! checkpoint the writer signs, whatever its `types`, as a record of its own kind
//! (`{"record": "authtrail.checkpoint", "checkpoint": {...}}`: a stdout line, or a webhook
//! request `{"sink": NAME, "events": [], "checkpoints": [record]}`), so the chain heads also live
//! outside the store. Delivery is at most once: a webhook batch that keeps failing is given up (counted and logged) so the queue
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
use crate::store::{Checkpoint, TypeFilter};

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
    let (tap, rx, cps) = tap::tap_with_checkpoints(&cfg.name, cfg.queue, cfg.types.clone());
    let stats = Arc::new(SinkStats {
        name: cfg.name.clone(),
        tap: tap.stats().clone(),
        sent: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        requests: AtomicU64::new(0),
    });
    let task = match &cfg.target {
        Target::Stdout => tokio::spawn(stdout_task(
            Queues { rx, cps },
            cfg.format,
            stats.clone(),
            stop,
        )),
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
                cps,
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
        Format::Ocsf => crate::event::ocsf::to_ocsf(event),
    }
}

/// A sink's two queues: events, and signed checkpoints.
struct Queues {
    rx: mpsc::Receiver<Arc<AuditEvent>>,
    cps: mpsc::Receiver<Arc<Checkpoint>>,
}

/// What a sink takes next.
enum Item {
    Event(Arc<AuditEvent>),
    Checkpoint(Arc<Checkpoint>),
}

/// Wait for the next checkpoint or event (checkpoints first), or `None` once stopping and both
/// queues are empty.
async fn next_item(
    rx: &mut mpsc::Receiver<Arc<AuditEvent>>,
    cps: &mut mpsc::Receiver<Arc<Checkpoint>>,
    stop: &mut watch::Receiver<bool>,
) -> Option<Item> {
    let now = |rx: &mut mpsc::Receiver<Arc<AuditEvent>>,
               cps: &mut mpsc::Receiver<Arc<Checkpoint>>| {
        cps.try_recv()
            .ok()
            .map(Item::Checkpoint)
            .or_else(|| rx.try_recv().ok().map(Item::Event))
    };
    if *stop.borrow() {
        return now(rx, cps);
    }
    tokio::select! {
        biased;
        Some(cp) = cps.recv() => Some(Item::Checkpoint(cp)),
        ev = rx.recv() => ev
            .map(Item::Event)
            .or_else(|| cps.try_recv().ok().map(Item::Checkpoint)),
        _ = stop.changed() => now(rx, cps),
    }
}

/// The line (or webhook record) a checkpoint is published as.
fn checkpoint_record(cp: &Checkpoint) -> serde_json::Value {
    cp.record()
}

async fn stdout_task(
    mut q: Queues,
    format: Format,
    stats: Arc<SinkStats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut out = tokio::io::BufWriter::new(tokio::io::stdout());
    let mut line = Vec::with_capacity(1024);
    while let Some(item) = next_item(&mut q.rx, &mut q.cps, &mut stop).await {
        let ev = match item {
            Item::Event(ev) => ev,
            Item::Checkpoint(cp) => {
                line.clear();
                if serde_json::to_writer(&mut line, &checkpoint_record(&cp)).is_ok() {
                    line.push(b'\n');
                    let ok = out.write_all(&line).await.is_ok() && out.flush().await.is_ok();
                    if !ok {
                        tracing::warn!(sink = %stats.name, "checkpoint not written to stdout");
                    }
                }
                continue;
            }
        };
        let mut pending = vec![ev];
        // Whatever else is queued goes out with it, then one flush.
        while pending.len() < 256 {
            match q.rx.try_recv() {
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
    cps: mpsc::Receiver<Arc<Checkpoint>>,
    hook: Webhook,
    format: Format,
    batch: usize,
    flush: Duration,
    stats: Arc<SinkStats>,
    stop: watch::Receiver<bool>,
}

async fn webhook_task(mut s: WebhookSink) {
    loop {
        let first = match next_item(&mut s.rx, &mut s.cps, &mut s.stop).await {
            None => return,
            Some(Item::Checkpoint(cp)) => {
                deliver_checkpoint(&s, &cp).await;
                continue;
            }
            Some(Item::Event(ev)) => ev,
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

/// POST one signed checkpoint: `{"sink": NAME, "events": [], "checkpoints": [record]}`.
async fn deliver_checkpoint(s: &WebhookSink, cp: &Checkpoint) {
    let body = serde_json::json!({
        "sink": s.name,
        "events": [],
        "checkpoints": [checkpoint_record(cp)],
    });
    match s.hook.post(Bytes::from(body.to_string())).await {
        Ok(attempts) => {
            s.stats
                .requests
                .fetch_add(u64::from(attempts), Ordering::Relaxed);
        }
        Err(e) => {
            s.stats.requests.fetch_add(1, Ordering::Relaxed);
            tracing::error!(sink = %s.name, chain = %cp.instance, error = %e, "checkpoint not delivered to the sink");
        }
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
