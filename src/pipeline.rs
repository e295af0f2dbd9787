//! The road from a finished event to the store: a bounded queue the proxy hands `async` events to
//! without ever waiting, a group-committed path for `sync` events that must be stored before the
//! request is forwarded, a local spool that keeps events through a store outage, and the writer
//! task that batches all of it into the store's hash chain and signs checkpoints.
//!
//! It knows events and the `EventStore` trait; it never imports hyper, and it never logs an event
//! field other than its id, type and route.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::event::AuditEvent;
use crate::store::{EventStore, Signer};

pub mod spool;
pub mod tap;
mod writer;

pub use spool::{Spool, SpoolConfig};
pub use tap::{Tap, TapStats, Taps};
pub use writer::Writer;

/// When the writer signs a checkpoint of its chain (`store.checkpoint`), and the keys `verify`
/// trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointPolicy {
    pub signer: Signer,
    /// After this many new links. Default: 1,000 events.
    pub every_events: u64,
    /// Or this long after the previous checkpoint; without new links a `heartbeat` checkpoint
    /// re-signs the same head. Default: 5 min.
    pub interval: Duration,
    /// Append-only file every signed checkpoint is also written to (one JSON line, fsync'd).
    pub witness: Option<std::path::PathBuf>,
    /// The signer's public key (hex): `checkpoint.public_key`, or derived from the signing key.
    /// What `verify` trusts.
    pub public_key: String,
    /// Public keys (hex) `verify` trusts besides the signer's own.
    pub trusted_keys: Vec<String>,
}

/// Sizes and timing of the queue and the writer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Events the queue holds before `submit` starts dropping them. Default: 10,000 events.
    pub queue_capacity: usize,
    /// Most events written in one store transaction. Default: 256 events.
    pub batch_size: usize,
    /// Longest an event waits in a partial batch before the batch is written. Default: 100 ms.
    pub flush_interval: Duration,
    /// The hash chain this writer appends to. Default: the spool's persisted id, else a random
    /// id per process.
    pub instance_id: Option<String>,
    /// Signed checkpoints; none when `None`.
    pub checkpoint: Option<CheckpointPolicy>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            queue_capacity: 10_000,
            batch_size: 256,
            flush_interval: Duration::from_millis(100),
            instance_id: None,
            checkpoint: None,
        }
    }
}

/// Why a `sync` event was not committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// The store refused or did not answer; the event went to the spool instead.
    #[error("audit store unavailable: the attempt event was not committed")]
    StoreUnavailable,
    /// The pipeline is shutting down.
    #[error("audit pipeline stopped: the attempt event was not committed")]
    Stopped,
}

/// Counters of what happened to events, shared by the handle and the writer.
///
/// Every submitted or committed event is counted in `dropped` or `enqueued`; every enqueued one
/// ends up in exactly one of `written`, `duplicates` or `failed`, or waits in the spool
/// (`spool_depth`) until it is replayed into one of the first two.
#[derive(Default, Debug)]
pub struct Stats {
    /// Events accepted into the queue (async) or the sync path.
    pub enqueued: AtomicU64,
    /// Events newly stored.
    pub written: AtomicU64,
    /// Events refused by `submit` because the queue was full or closed (and not in the
    /// write-ahead log). Must stay 0.
    pub dropped: AtomicU64,
    /// Events that found the queue full (or closed) but were in the write-ahead log: the writer
    /// reads them back from there (or the next start does) instead of dropping them.
    pub deferred: AtomicU64,
    /// Events the write-ahead log could not take (full, or an I/O error): they travelled in
    /// memory only, as without write-ahead.
    pub wal_errors: AtomicU64,
    /// Mapped requests that found the queue full and waited for a place (`store.queue_wait`).
    pub queue_waits: AtomicU64,
    /// Events lost: the store kept failing and the spool could not take them (full, or none).
    pub failed: AtomicU64,
    /// Batches given up on (each one counted in `failed` event by event).
    pub write_errors: AtomicU64,
    /// Events the store already held (same id), so were not stored again.
    pub duplicates: AtomicU64,
    /// Events written to the spool because the store was unavailable.
    pub spooled: AtomicU64,
    /// Events taken back out of the spool into the store.
    pub replayed: AtomicU64,
    /// Events in the spool now.
    pub spool_depth: AtomicU64,
    /// Bytes of the spool's files now.
    pub spool_bytes: AtomicU64,
    /// `sync` events committed before their request was forwarded.
    pub sync_committed: AtomicU64,
    /// `sync` events that could not be committed (their request got a 503).
    pub sync_failed: AtomicU64,
    /// Signed checkpoints written.
    pub checkpoints: AtomicU64,
    /// What the writer last learned about the store and the spool (for `/readyz`).
    pub health: Health,
    /// Set when an event went to the write-ahead log but not the queue: the writer must read
    /// the log back to find it.
    pub(crate) gap: AtomicBool,
    /// When a write-ahead failure was last logged (ms since the epoch): one line per second.
    wal_error_logged: AtomicU64,
}

/// Whether the store and the spool took their last write: set by the writer on every store
/// append and spool append, read by `/readyz` without waiting on either.
#[derive(Default, Debug)]
pub struct Health {
    store_failing: std::sync::atomic::AtomicBool,
    /// When the spool last refused a batch, in ms since the Unix epoch; 0 once a later append
    /// succeeded or replay made room.
    spool_refused_at: AtomicU64,
    spool_refused_full: std::sync::atomic::AtomicBool,
}

/// The spool's last append, as [`Health::spool`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpoolHealth {
    /// Took its last batch (or has not been asked yet).
    Ok,
    /// Refused a batch that would pass `max_bytes` this long ago, and replay has not made room
    /// since.
    Full { since: Duration },
    /// Could not write a batch (an I/O error, say a full disk) this long ago.
    Failing { since: Duration },
}

impl Health {
    /// The last store append failed, and none has succeeded since.
    pub fn store_failing(&self) -> bool {
        self.store_failing.load(Ordering::Relaxed)
    }

    pub(crate) fn store_result(&self, ok: bool) {
        self.store_failing.store(!ok, Ordering::Relaxed);
    }

    pub fn spool(&self) -> SpoolHealth {
        let at = self.spool_refused_at.load(Ordering::Relaxed);
        let since = Duration::from_millis(now_ms().saturating_sub(at));
        if at == 0 {
            SpoolHealth::Ok
        } else if self.spool_refused_full.load(Ordering::Relaxed) {
            SpoolHealth::Full { since }
        } else {
            SpoolHealth::Failing { since }
        }
    }

    /// The spool took a batch, or replay made room in it.
    pub(crate) fn spool_ok(&self) {
        self.spool_refused_at.store(0, Ordering::Relaxed);
    }

    pub(crate) fn spool_refused(&self, full: bool) {
        self.spool_refused_full.store(full, Ordering::Relaxed);
        self.spool_refused_at
            .store(now_ms().max(1), Ordering::Relaxed);
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A plain copy of [`Stats`] at one moment, for metrics and the admin API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    pub enqueued: u64,
    pub written: u64,
    pub dropped: u64,
    pub deferred: u64,
    pub wal_errors: u64,
    pub queue_waits: u64,
    pub failed: u64,
    pub write_errors: u64,
    pub duplicates: u64,
    pub spooled: u64,
    pub replayed: u64,
    pub spool_depth: u64,
    pub spool_bytes: u64,
    pub sync_committed: u64,
    pub sync_failed: u64,
    pub checkpoints: u64,
}

impl Stats {
    /// Read every counter (each one atomically; the set is not one consistent cut).
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            enqueued: get(&self.enqueued),
            written: get(&self.written),
            dropped: get(&self.dropped),
            deferred: get(&self.deferred),
            wal_errors: get(&self.wal_errors),
            queue_waits: get(&self.queue_waits),
            failed: get(&self.failed),
            write_errors: get(&self.write_errors),
            duplicates: get(&self.duplicates),
            spooled: get(&self.spooled),
            replayed: get(&self.replayed),
            spool_depth: get(&self.spool_depth),
            spool_bytes: get(&self.spool_bytes),
            sync_committed: get(&self.sync_committed),
            sync_failed: get(&self.sync_failed),
            checkpoints: get(&self.checkpoints),
        }
    }
}

/// A place held in the queue for one event: see [`Pipeline::reserve`].
pub struct Slot(mpsc::OwnedPermit<Queued>);

/// What [`Pipeline::log_ahead`] did with an event.
// Moved once per event, never stored: boxing the event would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Ahead {
    /// In the log (and queued, or left for the writer to read back).
    Logged,
    /// Not in the log: the event, and the slot it was given, back to the caller.
    NotLogged(AuditEvent, Option<mpsc::OwnedPermit<Queued>>),
}

/// An async event on its way to the writer, with its position in the write-ahead log when it
/// was logged there first.
pub(crate) struct Queued {
    pub event: AuditEvent,
    pub lsn: Option<u64>,
    /// Its write-ahead record ([`spool::encode`]), whose JSON the store takes as the event's
    /// body rather than encoding the event a second time.
    pub record: Option<Vec<u8>>,
}

/// A `sync` event and who waits for its commit.
pub(crate) struct SyncItem {
    pub event: AuditEvent,
    pub done: oneshot::Sender<Result<(), SyncError>>,
}

/// The submitting side of the pipeline: cheap to clone, held by every proxy connection.
#[derive(Clone)]
pub struct Pipeline {
    tx: mpsc::Sender<Queued>,
    /// The write-ahead log (the spool, with `write_ahead`): every async event is written there
    /// before it is queued.
    wal: Option<Arc<Mutex<Spool>>>,
    sync_tx: mpsc::Sender<SyncItem>,
    stats: Arc<Stats>,
    instance: Arc<str>,
    /// Copies of every event for alert rules and stream sinks.
    taps: Taps,
    /// The taps the writer publishes signed checkpoints to (the sinks'): set by `with_taps`.
    published: Arc<std::sync::Mutex<Taps>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Start the writer task without a spool: events the store cannot take are counted in
    /// `failed`. See [`Pipeline::start_with`].
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(store: Arc<dyn EventStore>, cfg: PipelineConfig) -> (Pipeline, Writer) {
        Pipeline::start_with(store, cfg, None)
    }

    /// Start the writer task on the current tokio runtime and return the submitting handle and
    /// the writer, whose [`Writer::shutdown`] flushes the queue. With a `spool`, events the store
    /// cannot take wait there (and anything it already holds is replayed first).
    ///
    /// Dropping the `Writer` without calling `shutdown` leaves the task running until every
    /// `Pipeline` clone is dropped; it then writes what is left and stops.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start_with(
        store: Arc<dyn EventStore>,
        cfg: PipelineConfig,
        spool: Option<Spool>,
    ) -> (Pipeline, Writer) {
        let instance: Arc<str> = match (&cfg.instance_id, &spool) {
            (Some(id), _) => id.as_str().into(),
            (None, Some(s)) => s.instance_id().into(),
            (None, None) => format!("auto-{}", uuid::Uuid::now_v7().simple()).into(),
        };
        let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
        // Write-ahead, with its fsync interval, when the spool is configured for it.
        let write_ahead = spool
            .as_ref()
            .and_then(|s| s.write_ahead().then(|| s.fsync_interval()));
        let spool = spool.map(|s| Arc::new(Mutex::new(s)));
        let wal = spool.clone().filter(|_| write_ahead.is_some());
        if let (Some(wal), Some(interval)) = (&wal, write_ahead) {
            if let Err(e) = spool::spawn_flusher(wal, interval) {
                tracing::error!(error = %e, "spool: no fsync thread: write-ahead records are synced only at rotation and stop");
            }
        }
        let (sync_tx, sync_rx) = mpsc::channel(cfg.batch_size.max(1) * 4);
        let stats = Arc::new(Stats::default());
        let published = Arc::new(std::sync::Mutex::new(Taps::default()));
        let writer = Writer::spawn(
            writer::Inputs {
                rx,
                sync_rx,
                published: published.clone(),
            },
            store,
            cfg,
            Arc::clone(&stats),
            instance.to_string(),
            spool,
            wal.is_some(),
        );
        (
            Pipeline {
                tx,
                wal,
                sync_tx,
                stats,
                instance,
                taps: Taps::default(),
                published,
            },
            writer,
        )
    }

    /// This pipeline with `taps`: every event submitted or committed through it (or a clone made
    /// from it) is also offered to them. Set it before handing out clones.
    pub fn with_taps(mut self, taps: Taps) -> Pipeline {
        *self.published.lock().unwrap_or_else(|p| p.into_inner()) = taps.clone();
        self.taps = taps;
        self
    }

    /// A place in the queue for one event, taken when a mapped request is admitted (see
    /// [`Pipeline::reserve`]) and used by [`Pipeline::submit_reserved`] when its event is built.
    /// Dropped unused, it frees the place.
    pub async fn reserve(&self, wait: Duration) -> Option<Slot> {
        match self.tx.clone().try_reserve_owned() {
            Ok(slot) => return Some(Slot(slot)),
            Err(mpsc::error::TrySendError::Closed(_)) => return None,
            Err(mpsc::error::TrySendError::Full(_)) if wait.is_zero() => return None,
            Err(mpsc::error::TrySendError::Full(_)) => {}
        }
        // The writer is behind: hold this request until it has made room (backpressure), or
        // give up after `wait` and let `submit` count the event as dropped if it still is.
        self.stats.queue_waits.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(wait, self.tx.clone().reserve_owned()).await {
            Ok(Ok(slot)) => Some(Slot(slot)),
            _ => None,
        }
    }

    /// [`Pipeline::submit`] into a place reserved for it: never dropped for a full queue.
    pub fn submit_reserved(&self, event: AuditEvent, slot: Option<Slot>) {
        let Some(Slot(slot)) = slot else {
            return self.submit(event);
        };
        self.offer(&event);
        if let Ahead::NotLogged(event, Some(slot)) = self.log_ahead(event, Some(slot)) {
            slot.send(Queued {
                event,
                lsn: None,
                record: None,
            });
            self.stats.enqueued.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// What every submitted event gets before the queue: its count, and the taps.
    fn offer(&self, event: &AuditEvent) {
        crate::metrics::count_event(event);
        if !self.taps.is_empty() {
            self.taps.offer(event);
        }
    }

    /// Queue `event` for the writer. Never blocks or awaits: when the queue is full or the
    /// pipeline has shut down the event is dropped, counted in `dropped` and logged by id, type
    /// and route.
    pub fn submit(&self, event: AuditEvent) {
        self.offer(&event);
        let Ahead::NotLogged(event, _) = self.log_ahead(event, None) else {
            return;
        };
        let queued = Queued {
            event,
            lsn: None,
            record: None,
        };
        let (event, why) = match self.tx.try_send(queued) {
            Ok(()) => {
                self.stats.enqueued.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(mpsc::error::TrySendError::Full(q)) => (q.event, "queue full"),
            Err(mpsc::error::TrySendError::Closed(q)) => (q.event, "pipeline shut down"),
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

    /// With write-ahead: write `event` to the log and queue it (into `slot` when given) under the
    /// log's lock, so the queue holds logged events in log order. `Ok` once it is in the log
    /// (counted in `enqueued`, and in `deferred` when the queue could not take it: the writer
    /// reads it back from the log). `NotLogged` gives the event and the slot back when the
    /// event is not in the log (no write-ahead, or the log refused it): it travels in memory
    /// only.
    fn log_ahead(&self, event: AuditEvent, slot: Option<mpsc::OwnedPermit<Queued>>) -> Ahead {
        let Some(wal) = &self.wal else {
            return Ahead::NotLogged(event, slot);
        };
        let record = match spool::encode(&event) {
            Ok(r) => r,
            Err(e) => {
                self.wal_failed(&e);
                return Ahead::NotLogged(event, slot);
            }
        };
        let mut log = wal.lock().unwrap_or_else(|p| p.into_inner());
        let lsn = match log.log(&record) {
            Ok(lsn) => lsn,
            Err(e) => {
                drop(log);
                self.wal_failed(&e);
                return Ahead::NotLogged(event, slot);
            }
        };
        let queued = Queued {
            event,
            lsn: Some(lsn),
            record: Some(record),
        };
        let sent = match slot {
            Some(slot) => {
                slot.send(queued);
                Ok(())
            }
            None => self.tx.try_send(queued),
        };
        self.stats.spool_depth.store(log.depth(), Ordering::Relaxed);
        self.stats.spool_bytes.store(log.bytes(), Ordering::Relaxed);
        drop(log);
        self.stats.enqueued.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = sent {
            self.stats.deferred.fetch_add(1, Ordering::Relaxed);
            self.stats.gap.store(true, Ordering::Release);
            let q = match e {
                mpsc::error::TrySendError::Full(q) | mpsc::error::TrySendError::Closed(q) => q,
            };
            tracing::debug!(event_id = %q.event.id, "audit queue full: event kept in the write-ahead log");
        }
        Ahead::Logged
    }

    /// Count (and at most once a second log) an event the write-ahead log did not take.
    fn wal_failed(&self, e: &spool::SpoolError) {
        self.stats.wal_errors.fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        let last = self.stats.wal_error_logged.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1000
            && self
                .stats
                .wal_error_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::error!(error = %e, "audit write-ahead log refused an event: it travels in memory only");
        }
    }

    /// Store `event` and wait until its transaction has committed (durably). Concurrent commits
    /// share one transaction. On `Err` the event was not committed (it may still reach the
    /// store later through the spool). The caller bounds the wait with its own timeout;
    /// dropping the future does not withdraw the event.
    pub fn commit(
        &self,
        event: AuditEvent,
    ) -> impl Future<Output = Result<(), SyncError>> + Send + 'static {
        self.offer(&event);
        let tx = self.sync_tx.clone();
        let stats = Arc::clone(&self.stats);
        async move {
            let (done, wait) = oneshot::channel();
            tx.send(SyncItem { event, done })
                .await
                .map_err(|_| SyncError::Stopped)?;
            stats.enqueued.fetch_add(1, Ordering::Relaxed);
            wait.await.map_err(|_| SyncError::Stopped)?
        }
    }

    /// The counters shared with the writer.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Events waiting in the queue (not counting the batch being written).
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Events waiting in the spool for the store to come back.
    pub fn spool_depth(&self) -> u64 {
        self.stats.spool_depth.load(Ordering::Relaxed)
    }

    /// The hash chain this pipeline's writer appends to.
    pub fn instance(&self) -> &str {
        &self.instance
    }
}
