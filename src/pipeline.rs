//! The road from a finished event to the store: a bounded queue the proxy hands events to without
//! ever waiting, and a writer task that batches them into the store. It knows events and the
//! `EventStore` trait; it never imports hyper, and it never logs an event field other than its
//! id, type and route.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::event::AuditEvent;
use crate::store::EventStore;

mod writer;

pub use writer::Writer;

/// Sizes and timing of the queue and the writer.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Events the queue holds before `submit` starts dropping them. Default: 10,000 events.
    pub queue_capacity: usize,
    /// Most events written in one store transaction. Default: 256 events.
    pub batch_size: usize,
    /// Longest an event waits in a partial batch before the batch is written. Default: 100 ms.
    pub flush_interval: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            queue_capacity: 10_000,
            batch_size: 256,
            flush_interval: Duration::from_millis(100),
        }
    }
}

/// Counters of what happened to submitted events, shared by the handle and the writer.
/// Every submitted event is counted in `dropped` or `enqueued`, and every enqueued one ends up in
/// exactly one of `written`, `duplicates` or `failed` once the writer is done with it.
#[derive(Default, Debug)]
pub struct Stats {
    /// Events accepted into the queue.
    pub enqueued: AtomicU64,
    /// Events newly stored.
    pub written: AtomicU64,
    /// Events refused by `submit` because the queue was full or closed. Must stay 0.
    pub dropped: AtomicU64,
    /// Events lost because the store kept failing.
    pub failed: AtomicU64,
    /// Batches given up on after retrying (each one counted in `failed` event by event).
    pub write_errors: AtomicU64,
    /// Events the store already held (same id), so were not stored again.
    pub duplicates: AtomicU64,
}

/// A plain copy of [`Stats`] at one moment, for metrics and the admin API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    pub enqueued: u64,
    pub written: u64,
    pub dropped: u64,
    pub failed: u64,
    pub write_errors: u64,
    pub duplicates: u64,
}

impl Stats {
    /// Read every counter (each one atomically; the set is not one consistent cut).
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            enqueued: self.enqueued.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
        }
    }
}

/// The submitting side of the pipeline: cheap to clone, held by every proxy connection.
#[derive(Clone, Debug)]
pub struct Pipeline {
    tx: mpsc::Sender<AuditEvent>,
    stats: Arc<Stats>,
}

impl Pipeline {
    /// Start the writer task on the current tokio runtime and return the submitting handle and
    /// the writer, whose [`Writer::shutdown`] flushes the queue.
    ///
    /// Dropping the `Writer` without calling `shutdown` leaves the task running until every
    /// `Pipeline` clone is dropped; it then writes what is left and stops.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(store: Arc<dyn EventStore>, cfg: PipelineConfig) -> (Pipeline, Writer) {
        let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
        let (stop_tx, stop_rx) = oneshot::channel();
        let stats = Arc::new(Stats::default());
        let writer = Writer::spawn(rx, stop_tx, stop_rx, store, cfg, Arc::clone(&stats));
        (Pipeline { tx, stats }, writer)
    }

    /// Queue `event` for the writer. Never blocks or awaits: when the queue is full or the
    /// pipeline has shut down the event is dropped, counted in `dropped` and logged by id, type
    /// and route.
    pub fn submit(&self, event: AuditEvent) {
        let (event, why) = match self.tx.try_send(event) {
            Ok(()) => {
                self.stats.enqueued.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(mpsc::error::TrySendError::Full(event)) => (event, "queue full"),
            Err(mpsc::error::TrySendError::Closed(event)) => (event, "pipeline shut down"),
        };
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            event_id = %event.id,
            event_type = %event.event_type,
            route = %event.http.route,
            reason = why,
            "audit event dropped"
        );
    }

    /// The counters shared with the writer.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Events waiting in the queue (not counting the batch being written).
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}
