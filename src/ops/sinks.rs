//! Stream sinks: every event (or those of the listed types) also goes out as JSON lines on
//! standard output, for cluster log collectors; in batches to a signed webhook, to an HTTP
//! product (Splunk HEC, Elasticsearch `_bulk`, Loki) or an OpenTelemetry collector (OTLP/HTTP);
//! or as syslog messages (RFC 5424 over TCP, TLS or UDP; JSON or CEF). Each sink is one task
//! reading its own bounded tap, so a slow or dead sink only fills its own queue: further copies
//! are dropped and counted, the proxy and the store writer never wait for it.
//!
//! A sink sees events as they are handed to the pipeline (no `seq`, no `chain`), and every
//! checkpoint the writer signs, whatever its `types`, as a record of its own kind
//! (`{"record": "authtrail.checkpoint", "checkpoint": {...}}`: a stdout line, a webhook
//! request `{"sink": NAME, "events": [], "checkpoints": [record]}`, or one record of the
//! product's own shape), so the chain heads also live outside the store. Delivery is at most
//! once: a batch that keeps failing is given up (counted and logged) so the queue behind it
//! moves on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::formats::{self as fmts, Item};
pub use super::formats::{encode, BodyFormat, Format, HttpBody};
use super::syslog::{self, SyslogConfig};
use super::webhook::{self, Headers, Outgoing, Webhook, WebhookConfig};
use crate::event::AuditEvent;
use crate::pipeline::tap::{self, Tap, TapStats};
use crate::store::{Checkpoint, TypeFilter};

/// An HTTP product endpoint: where (and with which client settings) and what it adds to each
/// request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// URL, timeout, retries, backoff, CA file (never signed: `secret` is `None`).
    pub client: WebhookConfig,
    /// Sent with every request (values never logged).
    pub headers: Headers,
    /// Compress bodies (`Content-Encoding: gzip`).
    pub gzip: bool,
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
    /// Batches POSTed in a product's body format.
    Http {
        endpoint: Endpoint,
        body: HttpBody,
        batch: usize,
        flush: Duration,
    },
    /// Batches POSTed as OTLP/HTTP protobuf log records.
    Otlp {
        endpoint: Endpoint,
        batch: usize,
        flush: Duration,
    },
    /// RFC 5424 messages to a syslog server.
    Syslog(SyslogConfig),
}

/// A checked `sinks.NAME` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkConfig {
    pub name: String,
    pub target: Target,
    /// The event's shape (stdout, webhook, http, otlp; syslog has its own payload).
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
    /// Events written (stdout, syslog) or delivered (HTTP sinks).
    pub sent: AtomicU64,
    /// Events given up after the sink's endpoint kept failing, refused by it (an Elasticsearch
    /// item error, OTLP rejected records), or unwritable to stdout.
    pub failed: AtomicU64,
    /// Delivery attempts: HTTP requests or syslog batch writes, retries included.
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
    let err = |e: String| format!("sink \"{}\": {e}", cfg.name);
    let q = Queues { rx, cps };
    let batched = |q: Queues, deliver: Deliver, batch: usize, flush: Duration| BatchSink {
        name: cfg.name.clone(),
        q,
        deliver,
        format: cfg.format,
        batch: batch.max(1),
        flush,
        stats: stats.clone(),
        stop: stop.clone(),
    };
    let task = match &cfg.target {
        Target::Stdout => tokio::spawn(stdout_task(q, cfg.format, stats.clone(), stop)),
        Target::Webhook {
            webhook,
            batch,
            flush,
        } => {
            let hook = Webhook::new(webhook.clone()).map_err(err)?;
            tokio::spawn(batch_task(batched(
                q,
                Deliver::Webhook(hook),
                *batch,
                *flush,
            )))
        }
        Target::Http {
            endpoint,
            body,
            batch,
            flush,
        } => {
            let hook = Webhook::new(endpoint.client.clone()).map_err(err)?;
            let host = body.host.clone().unwrap_or_else(fmts::hostname);
            let deliver = Deliver::Http {
                hook,
                endpoint: endpoint.clone(),
                body: body.clone(),
                host,
            };
            tokio::spawn(batch_task(batched(q, deliver, *batch, *flush)))
        }
        Target::Otlp {
            endpoint,
            batch,
            flush,
        } => {
            let hook = Webhook::new(endpoint.client.clone()).map_err(err)?;
            let deliver = Deliver::Otlp {
                hook,
                endpoint: endpoint.clone(),
            };
            tokio::spawn(batch_task(batched(q, deliver, *batch, *flush)))
        }
        Target::Syslog(sc) => {
            let sender = syslog::Sender::new(sc.clone()).map_err(err)?;
            let header = syslog::Header::new(sc);
            tokio::spawn(syslog_task(q, sender, header, stats.clone(), stop))
        }
    };
    Ok((tap, Sink { stats, task }))
}

/// A sink's two queues: events, and signed checkpoints.
struct Queues {
    rx: mpsc::Receiver<Arc<AuditEvent>>,
    cps: mpsc::Receiver<Arc<Checkpoint>>,
}

/// Wait for the next checkpoint or event (checkpoints first), or `None` once stopping and both
/// queues are empty.
async fn next_item(q: &mut Queues, stop: &mut watch::Receiver<bool>) -> Option<Item> {
    let now = |q: &mut Queues| {
        q.cps
            .try_recv()
            .ok()
            .map(Item::Checkpoint)
            .or_else(|| q.rx.try_recv().ok().map(Item::Event))
    };
    if *stop.borrow() {
        return now(q);
    }
    tokio::select! {
        biased;
        Some(cp) = q.cps.recv() => Some(Item::Checkpoint(cp)),
        ev = q.rx.recv() => ev
            .map(Item::Event)
            .or_else(|| q.cps.try_recv().ok().map(Item::Checkpoint)),
        _ = stop.changed() => now(q),
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
    while let Some(item) = next_item(&mut q, &mut stop).await {
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

/// Most messages a syslog sink writes at once.
const SYSLOG_BATCH: usize = 256;

async fn syslog_task(
    mut q: Queues,
    mut sender: syslog::Sender,
    header: syslog::Header,
    stats: Arc<SinkStats>,
    mut stop: watch::Receiver<bool>,
) {
    while let Some(first) = next_item(&mut q, &mut stop).await {
        let mut items = vec![first];
        // Whatever else is queued goes out in the same write.
        while items.len() < SYSLOG_BATCH {
            match q.rx.try_recv() {
                Ok(ev) => items.push(Item::Event(ev)),
                Err(_) => break,
            }
        }
        let messages: Vec<Vec<u8>> = items.iter().map(|i| header.message(i)).collect();
        let events = items.iter().filter(|i| i.is_event()).count() as u64;
        match sender.send(&messages).await {
            Ok(attempts) => {
                stats
                    .requests
                    .fetch_add(u64::from(attempts), Ordering::Relaxed);
                stats.sent.fetch_add(events, Ordering::Relaxed);
            }
            Err((why, attempts)) => {
                stats
                    .requests
                    .fetch_add(u64::from(attempts), Ordering::Relaxed);
                stats.failed.fetch_add(events, Ordering::Relaxed);
                tracing::error!(sink = %stats.name, events, checkpoints = items.len() as u64 - events, error = %why, "syslog batch given up");
            }
        }
    }
    sender.close().await;
}

/// How a batching sink delivers.
enum Deliver {
    /// The signed webhook.
    Webhook(Webhook),
    /// An HTTP product.
    Http {
        hook: Webhook,
        endpoint: Endpoint,
        body: HttpBody,
        /// The HEC `host`.
        host: String,
    },
    /// OTLP/HTTP.
    Otlp { hook: Webhook, endpoint: Endpoint },
}

struct BatchSink {
    name: String,
    q: Queues,
    deliver: Deliver,
    format: Format,
    batch: usize,
    flush: Duration,
    stats: Arc<SinkStats>,
    stop: watch::Receiver<bool>,
}

async fn batch_task(mut s: BatchSink) {
    loop {
        let first = match next_item(&mut s.q, &mut s.stop).await {
            None => return,
            Some(Item::Checkpoint(cp)) => {
                deliver(&s, &[Item::Checkpoint(cp)]).await;
                continue;
            }
            Some(ev) => ev,
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + s.flush;
        while batch.len() < s.batch {
            if *s.stop.borrow() {
                match s.q.rx.try_recv() {
                    Ok(ev) => batch.push(Item::Event(ev)),
                    Err(_) => break,
                }
                continue;
            }
            tokio::select! {
                ev = s.q.rx.recv() => match ev {
                    Some(ev) => batch.push(Item::Event(ev)),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
                _ = s.stop.changed() => {}
            }
        }
        deliver(&s, &batch).await;
    }
}

/// Attempts an error took.
fn attempts_of(e: &webhook::Error) -> u32 {
    match e {
        webhook::Error::Failed { attempts, .. } => *attempts,
        webhook::Error::Refused { .. } => 1,
    }
}

/// Deliver one batch (of events, or one checkpoint) and count what came of it.
async fn deliver(s: &BatchSink, items: &[Item]) {
    let events = items.iter().filter(|i| i.is_event()).count() as u64;
    let (attempts, failed) = match &s.deliver {
        Deliver::Webhook(hook) => deliver_webhook(s, hook, items).await,
        Deliver::Http {
            hook,
            endpoint,
            body,
            host,
        } => deliver_http(s, hook, endpoint, body, host, items).await,
        Deliver::Otlp { hook, endpoint } => {
            let out = Outgoing {
                body: super::otlp::export_request(items, s.format),
                content_type: super::otlp::CONTENT_TYPE,
                headers: &endpoint.headers,
                gzip: endpoint.gzip,
            };
            match hook.send(&out).await {
                Ok(reply) => {
                    let rejected = match super::otlp::rejected(&reply.body) {
                        Some((n, msg)) => {
                            tracing::warn!(sink = %s.name, rejected = n, error = %msg, "OTLP receiver rejected log records");
                            u64::try_from(n).unwrap_or(0).min(events)
                        }
                        None => 0,
                    };
                    (reply.attempts, Ok(rejected))
                }
                Err(e) => (attempts_of(&e), Err(e.to_string())),
            }
        }
    };
    s.stats
        .requests
        .fetch_add(u64::from(attempts), Ordering::Relaxed);
    match failed {
        Ok(refused) => {
            s.stats
                .sent
                .fetch_add(events.saturating_sub(refused), Ordering::Relaxed);
            s.stats.failed.fetch_add(refused, Ordering::Relaxed);
        }
        Err(e) => {
            s.stats.failed.fetch_add(events, Ordering::Relaxed);
            if events == 0 {
                tracing::error!(sink = %s.name, error = %e, "checkpoint not delivered to the sink");
            } else {
                tracing::error!(sink = %s.name, events, error = %e, "sink batch given up");
            }
        }
    }
}

/// The signed webhook: `{"sink": NAME, "events": [...]}`, or a checkpoint alone as
/// `{"sink": NAME, "events": [], "checkpoints": [record]}`. Returns the attempts, and the events
/// refused (always 0) or why the batch was given up.
async fn deliver_webhook(
    s: &BatchSink,
    hook: &Webhook,
    items: &[Item],
) -> (u32, Result<u64, String>) {
    let mut events = Vec::new();
    let mut checkpoints = Vec::new();
    for item in items {
        match item {
            Item::Event(e) => events.push(encode(e, s.format)),
            Item::Checkpoint(cp) => checkpoints.push(checkpoint_record(cp)),
        }
    }
    let body = if checkpoints.is_empty() {
        serde_json::json!({ "sink": s.name, "events": events })
    } else {
        serde_json::json!({ "sink": s.name, "events": events, "checkpoints": checkpoints })
    };
    match hook.post(Bytes::from(body.to_string())).await {
        Ok(attempts) => (attempts, Ok(0)),
        Err(e) => (attempts_of(&e), Err(e.to_string())),
    }
}

/// An HTTP product's batch. Elasticsearch answers per item: an item already there (409, a
/// resend) counts as delivered, one refused with 429 is sent again (within `retries`), others
/// are counted as failed and logged by error type.
async fn deliver_http(
    s: &BatchSink,
    hook: &Webhook,
    endpoint: &Endpoint,
    body: &HttpBody,
    host: &str,
    items: &[Item],
) -> (u32, Result<u64, String>) {
    let mut pending: Vec<Item> = items.to_vec();
    let mut attempts = 0;
    let mut refused = 0u64;
    let mut resends = 0;
    let mut delay = endpoint.client.backoff;
    loop {
        let out = Outgoing {
            body: fmts::http_body(body, host, &pending),
            content_type: body.format.content_type(),
            headers: &endpoint.headers,
            gzip: endpoint.gzip,
        };
        let reply = match hook.send(&out).await {
            Ok(r) => r,
            Err(e) => return (attempts + attempts_of(&e), Err(e.to_string())),
        };
        attempts += reply.attempts;
        if body.format != BodyFormat::ElasticsearchBulk {
            return (attempts, Ok(refused));
        }
        let result = match fmts::bulk_result(&reply.body, pending.len()) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(sink = %s.name, error = %e, "unreadable _bulk answer; counting the batch as delivered");
                return (attempts, Ok(refused));
            }
        };
        for (i, status, kind) in &result.failed {
            if pending[*i].is_event() {
                refused += 1;
            }
            tracing::warn!(sink = %s.name, id = %pending[*i].id(), status, error_type = %kind, "Elasticsearch refused an item");
        }
        if result.retry.is_empty() {
            return (attempts, Ok(refused));
        }
        if resends >= endpoint.client.retries {
            let n = result
                .retry
                .iter()
                .filter(|i| pending[**i].is_event())
                .count() as u64;
            tracing::warn!(sink = %s.name, items = result.retry.len(), "Elasticsearch kept refusing items with 429; given up");
            return (attempts, Ok(refused + n));
        }
        resends += 1;
        pending = result.retry.iter().map(|i| pending[*i].clone()).collect();
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}
