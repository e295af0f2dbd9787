//! The writer task: the only consumer of the queue and the sync path. It batches events into the
//! store's hash chain (`EventStore::append`), group-commits `sync` events, parks what the store
//! cannot take in the spool and replays it when the store is back, and signs checkpoints: after
//! `checkpoint.events` new links, at least every `checkpoint.interval` (a `heartbeat` over an
//! unchanged head when idle), and a `shutdown` one when it stops. Each signed checkpoint is also
//! published outside the store: a log line, the sinks, and the witness file when configured.
//!
//! One task per instance, so the chain needs no lock on this side (the store links inside its
//! write transaction). It must never hold an async event longer than `flush_interval` plus one
//! store write, never make a sync waiter wait past its own timeout for an answer it already has,
//! and never log event fields.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, timeout, Instant};

use super::spool::{self, Spool, SpoolError};
use super::{CheckpointPolicy, PipelineConfig, Queued, Stats, SyncError, SyncItem, Taps};
use crate::event::AuditEvent;
use crate::store::{Appended, Checkpoint, CheckpointKind, EventStore};

/// Pauses before retrying a failed batch when there is no spool to fall back on; once they run
/// out the batch is counted as failed.
const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_secs(1),
];
/// With a spool, one quick retry (a dropped connection) before the batch is parked.
const SPOOL_RETRY_DELAYS: [Duration; 1] = [Duration::from_millis(50)];
/// Retries left to a failed batch once shutdown has begun: shutdown must not wait on a dead store.
const RETRIES_WHILE_STOPPING: usize = 1;
/// Longest one store call may take before it counts as failed (a hung connection).
const STORE_TIMEOUT: Duration = Duration::from_secs(10);
/// Replay backoff while the store stays down.
const REPLAY_FIRST: Duration = Duration::from_millis(100);
const REPLAY_MAX: Duration = Duration::from_secs(5);
/// Most time one replay round takes before the queue gets a turn.
const REPLAY_SLICE: Duration = Duration::from_millis(250);
/// Longest a stopping writer keeps reading the spool back into a store that takes it; what is
/// left is replayed on the next start.
const STOP_REPLAY: Duration = Duration::from_secs(20);

/// The two ways in: the async queue and the sync path.
pub(super) struct Inputs {
    pub rx: mpsc::Receiver<Queued>,
    pub sync_rx: mpsc::Receiver<SyncItem>,
    /// Where signed checkpoints are published besides the log (the sinks' taps).
    pub published: Arc<Mutex<Taps>>,
}

/// The running writer task. Call [`Writer::shutdown`] to flush the queue and stop it.
#[derive(Debug)]
pub struct Writer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Writer {
    pub(super) fn spawn(
        inputs: Inputs,
        store: Arc<dyn EventStore>,
        cfg: PipelineConfig,
        stats: Arc<Stats>,
        instance: String,
        spool: Option<Arc<Mutex<Spool>>>,
        write_ahead: bool,
    ) -> Writer {
        let (stop_tx, stop_rx) = oneshot::channel();
        let (spooling, expected) = spool.as_ref().map_or((false, 0), |s| {
            let s = s.lock().unwrap_or_else(|p| p.into_inner());
            (s.depth() > 0, s.next_position())
        });
        if let Some(s) = &spool {
            let s = s.lock().unwrap_or_else(|p| p.into_inner());
            stats.spool_depth.store(s.depth(), Ordering::Relaxed);
            stats.spool_bytes.store(s.bytes(), Ordering::Relaxed);
            if spooling {
                tracing::warn!(
                    spool_depth = s.depth(),
                    "audit spool holds events from an earlier run: replaying"
                );
            }
        }
        let witness = cfg
            .checkpoint
            .as_ref()
            .and_then(|c| c.witness.clone())
            .map(|path| Arc::new(Mutex::new(WitnessFile { path, file: None })));
        let task = Task {
            published: inputs.published,
            witness,
            rx: inputs.rx,
            sync_rx: inputs.sync_rx,
            store,
            stats,
            batch_size: cfg.batch_size.max(1),
            flush_interval: cfg.flush_interval,
            instance,
            spool,
            write_ahead,
            expected,
            spooling,
            next_replay: Instant::now(),
            replay_backoff: REPLAY_FIRST,
            checkpoint: cfg.checkpoint,
            since_checkpoint: 1,
            last_checkpoint: Instant::now(),
            signed: None,
            stop: StopSignal(Some(stop_rx)),
            stopping: false,
        };
        Writer {
            stop: stop_tx,
            task: tokio::spawn(task.run()),
        }
    }

    /// Stop accepting events (later submissions are counted as dropped), write every event
    /// already queued (or spool it when the store is down), then return once the writer task has
    /// ended.
    pub async fn shutdown(self) {
        // The task may already have ended (every Pipeline dropped): nothing to tell it then.
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "audit writer task failed");
        }
    }
}

/// Resolves once shutdown is requested. If the `Writer` is dropped instead, it never resolves:
/// the task then ends when every `Pipeline` is gone.
struct StopSignal(Option<oneshot::Receiver<()>>);

impl StopSignal {
    async fn requested(&mut self) {
        if let Some(rx) = &mut self.0 {
            let sent = rx.await.is_ok();
            self.0 = None;
            if sent {
                return;
            }
        }
        std::future::pending().await
    }
}

/// What the writer takes in one round.
#[derive(Default)]
struct Batch {
    events: Vec<Queued>,
    sync: Vec<SyncItem>,
}

enum Next {
    Work,
    /// A timer: replay or checkpoint may be due.
    Tick,
    Done,
}

/// The append-only witness file, opened on first use (and again after a failed write).
struct WitnessFile {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
}

impl WitnessFile {
    /// Append `line` (O_APPEND) and fsync it.
    fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            ),
        };
        let result = file.write_all(line).and_then(|()| file.sync_data());
        if result.is_err() {
            self.file = None;
        }
        result
    }
}

/// The last `max` bytes of the file at `path`, from the first whole line in them.
fn read_tail(path: &std::path::Path, max: u64) -> std::io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(max);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    Ok(match (start > 0, text.find('\n')) {
        (true, Some(i)) => text[i + 1..].to_string(),
        _ => text,
    })
}

struct Task {
    published: Arc<Mutex<Taps>>,
    witness: Option<Arc<Mutex<WitnessFile>>>,
    rx: mpsc::Receiver<Queued>,
    sync_rx: mpsc::Receiver<SyncItem>,
    store: Arc<dyn EventStore>,
    stats: Arc<Stats>,
    batch_size: usize,
    flush_interval: Duration,
    instance: String,
    spool: Option<Arc<Mutex<Spool>>>,
    /// Async events are logged in the spool before they are queued.
    write_ahead: bool,
    /// The log position the next logged event from the queue should have: a higher one means
    /// events went to the log but not the queue, so the log must be read back.
    expected: u64,
    /// The spool holds events the store has not: new async events queue behind them (and, when
    /// logged, are read back from the log rather than taken from memory).
    spooling: bool,
    next_replay: Instant,
    replay_backoff: Duration,
    checkpoint: Option<CheckpointPolicy>,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    /// The newest checkpoint this writer signed (or, at start, the witness file's newest for
    /// this chain): the next one is linked after it even if the store lost it.
    signed: Option<Checkpoint>,
    stop: StopSignal,
    stopping: bool,
}

impl Task {
    async fn run(mut self) {
        self.signed = self.witnessed_last().await;
        let mut batch = Batch::default();
        loop {
            match self.fill(&mut batch).await {
                Next::Done => break,
                Next::Work => {
                    // The next batch has room for as many as this one: a batch is not grown
                    // from nothing, event by event, under steady load.
                    let next = Batch {
                        events: Vec::with_capacity(batch.events.len()),
                        sync: Vec::with_capacity(batch.sync.len()),
                    };
                    self.process(std::mem::replace(&mut batch, next)).await;
                }
                Next::Tick => {}
            }
            self.notice_gap();
            if self.spooling && !self.stopping && Instant::now() >= self.next_replay {
                self.replay().await;
            }
            self.maybe_checkpoint(false).await;
        }
        self.notice_gap();
        // Read the rest back while the store takes it, so a clean stop leaves nothing behind.
        let deadline = Instant::now() + STOP_REPLAY;
        while self.spooling && Instant::now() < deadline && self.replay().await {}
        if self.spooling {
            let depth = self.stats.spool_depth.load(Ordering::Relaxed);
            tracing::warn!(spool_depth = depth, "audit writer stopped with events in the spool: they are replayed on the next start");
        } else {
            self.maybe_checkpoint(true).await;
        }
        self.close_spool().await;
        tracing::debug!("audit writer stopped");
    }

    /// Events went to the write-ahead log but not the queue (it was full): read the log back.
    fn notice_gap(&mut self) {
        if self.write_ahead && self.stats.gap.swap(false, Ordering::AcqRel) {
            self.fall_behind();
        }
    }

    /// From now on logged events are read back from the log, from the oldest not stored.
    fn fall_behind(&mut self) {
        if !self.spooling {
            self.spooling = true;
            self.next_replay = Instant::now();
            self.replay_backoff = REPLAY_FIRST;
        }
    }

    /// Sync the spool and delete what is stored, on a clean stop.
    async fn close_spool(&self) {
        let Some(spool) = self.spool.clone() else {
            return;
        };
        let closed = tokio::task::spawn_blocking(move || {
            spool.lock().unwrap_or_else(|p| p.into_inner()).close()
        })
        .await;
        match closed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "audit spool not closed cleanly"),
            Err(e) => tracing::error!(error = %e, "audit spool task failed"),
        }
    }

    fn begin_stop(&mut self) {
        self.stopping = true;
        // Refuse new events but keep the queued ones readable.
        self.rx.close();
        self.sync_rx.close();
    }

    /// The next time a timer wants the task: a replay or a checkpoint by interval.
    fn next_timer(&self) -> Option<Instant> {
        let replay = (self.spooling && !self.stopping).then_some(self.next_replay);
        let checkpoint = self
            .checkpoint
            .as_ref()
            .filter(|_| !self.spooling)
            .map(|p| self.last_checkpoint + p.interval);
        match (replay, checkpoint) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Wait for a first event (or a timer), then gather more: a sync event closes the batch at
    /// once with whatever else is already waiting (group commit); async events wait up to
    /// `flush_interval` for the batch to fill.
    async fn fill(&mut self, batch: &mut Batch) -> Next {
        loop {
            if self.stopping {
                if let Ok(item) = self.sync_rx.try_recv() {
                    batch.sync.push(item);
                    break;
                }
                match self.rx.recv().await {
                    Some(e) => {
                        batch.events.push(e);
                        break;
                    }
                    None => match self.sync_rx.try_recv() {
                        Ok(item) => {
                            batch.sync.push(item);
                            break;
                        }
                        Err(_) => return Next::Done,
                    },
                }
            }
            let timer = self.next_timer();
            tokio::select! {
                biased;
                item = self.sync_rx.recv() => match item {
                    Some(item) => { batch.sync.push(item); break; }
                    None => self.begin_stop(),
                },
                event = self.rx.recv() => match event {
                    Some(e) => { batch.events.push(e); break; }
                    // Every Pipeline is gone: write what is left and stop.
                    None => self.begin_stop(),
                },
                () = self.stop.requested() => self.begin_stop(),
                () = sleep_until(timer.unwrap_or_else(Instant::now)), if timer.is_some() => {
                    return Next::Tick;
                }
            }
        }

        let deadline = Instant::now() + self.flush_interval;
        loop {
            while batch.sync.len() < self.batch_size {
                match self.sync_rx.try_recv() {
                    Ok(item) => batch.sync.push(item),
                    Err(_) => break,
                }
            }
            while batch.events.len() < self.batch_size {
                match self.rx.try_recv() {
                    Ok(e) => batch.events.push(e),
                    Err(_) => break,
                }
            }
            if !batch.sync.is_empty() || self.stopping || batch.events.len() >= self.batch_size {
                return Next::Work;
            }
            tokio::select! {
                biased;
                item = self.sync_rx.recv() => match item {
                    Some(item) => batch.sync.push(item),
                    None => { self.begin_stop(); return Next::Work; }
                },
                event = self.rx.recv() => match event {
                    Some(e) => batch.events.push(e),
                    None => { self.begin_stop(); return Next::Work; }
                },
                () = sleep_until(deadline) => return Next::Work,
                () = self.stop.requested() => self.begin_stop(),
            }
        }
    }

    /// Write a batch: async events from memory in log order (those the log holds and the
    /// queue lost, or all logged ones while the spool drains, are read back from the log
    /// instead), sync events at once even while the spool drains (their requests wait).
    async fn process(&mut self, batch: Batch) {
        self.notice_gap();
        let mut events = Vec::with_capacity(batch.events.len() + batch.sync.len());
        let mut logged = Vec::with_capacity(events.capacity());
        let mut records = Vec::with_capacity(events.capacity());
        let mut diverted = 0u64;
        for q in batch.events {
            match q.lsn {
                None => {
                    events.push(q.event);
                    logged.push(false);
                    records.push(q.record);
                }
                // Already read back from the log.
                Some(lsn) if lsn < self.expected => {}
                Some(lsn) if lsn == self.expected && !self.spooling => {
                    self.expected += 1;
                    events.push(q.event);
                    logged.push(true);
                    records.push(q.record);
                }
                // Behind (or a gap: events before it are in the log only): the log has it.
                Some(_) => {
                    self.fall_behind();
                    diverted += 1;
                }
            }
        }
        if self.spooling {
            // Logged events taken before falling behind are read back with the rest.
            let before = events.len();
            let unlogged: Vec<AuditEvent> = events
                .into_iter()
                .zip(logged)
                .filter_map(|(e, l)| (!l).then_some(e))
                .collect();
            diverted += (before - unlogged.len()) as u64;
            self.stats.spooled.fetch_add(diverted, Ordering::Relaxed);
            self.park(unlogged).await;
            if !batch.sync.is_empty() {
                let (events, waiters): (Vec<AuditEvent>, Vec<_>) =
                    batch.sync.into_iter().map(|s| (s.event, s.done)).unzip();
                let logged = vec![false; events.len()];
                self.write_or_park(events, logged, Vec::new(), true, waiters)
                    .await;
            }
            return;
        }
        let durable = !batch.sync.is_empty();
        let mut waiters = Vec::with_capacity(batch.sync.len());
        for item in batch.sync {
            events.push(item.event);
            logged.push(false);
            records.push(None);
            waiters.push(item.done);
        }
        if !events.is_empty() {
            self.write_or_park(events, logged, records, durable, waiters)
                .await;
        }
    }

    /// Append `events` to the chain, retrying briefly; tell the sync `waiters`. Once stored, the
    /// log is released up to them. If the store will not take them, the logged ones wait in the
    /// log and the others are parked in the spool (or counted failed without one). `records`:
    /// the events' write-ahead records, where they have one (or none at all).
    async fn write_or_park(
        &mut self,
        events: Vec<AuditEvent>,
        logged: Vec<bool>,
        records: Vec<Option<Vec<u8>>>,
        durable: bool,
        waiters: Vec<oneshot::Sender<Result<(), SyncError>>>,
    ) {
        let count = events.len() as u64;
        let any_logged = logged.iter().any(|l| *l);
        let delays: &[Duration] = if self.spool.is_some() {
            &SPOOL_RETRY_DELAYS
        } else {
            &RETRY_DELAYS
        };
        // The records' JSON, taken as the events' bodies (see `EventStore::append_encoded`).
        let bodies: Vec<Option<&str>> = records
            .iter()
            .map(|r| {
                r.as_deref()
                    .and_then(|r| std::str::from_utf8(spool::payload(r)).ok())
            })
            .collect();
        let mut retries = 0;
        let error = loop {
            let error = match self.append(&events, &bodies, durable).await {
                Ok(appended) => {
                    self.count_appended(count, &appended);
                    if any_logged {
                        self.release(self.expected, None).await;
                    }
                    if self.spooling {
                        // The store is back: drain the spool now, not at the next backoff.
                        self.next_replay = Instant::now();
                        self.replay_backoff = REPLAY_FIRST;
                    }
                    let n = waiters.len() as u64;
                    for w in waiters {
                        let _ = w.send(Ok(()));
                    }
                    self.stats.sync_committed.fetch_add(n, Ordering::Relaxed);
                    return;
                }
                Err(e) => e,
            };
            let delay = delays
                .get(retries)
                .filter(|_| !self.stopping || retries < RETRIES_WHILE_STOPPING);
            let Some(&delay) = delay else { break error };
            retries += 1;
            tracing::warn!(count, retry = retries, error = %error, "audit batch not stored, retrying");
            self.pause(delay).await;
        };
        let n = waiters.len() as u64;
        for w in waiters {
            let _ = w.send(Err(SyncError::StoreUnavailable));
        }
        self.stats.sync_failed.fetch_add(n, Ordering::Relaxed);
        if self.spool.is_some() {
            tracing::warn!(count, error = %error, "audit store unavailable: spooling events");
            let unlogged: Vec<AuditEvent> = events
                .into_iter()
                .zip(logged)
                .filter_map(|(e, l)| (!l).then_some(e))
                .collect();
            let waiting = count - unlogged.len() as u64;
            if waiting > 0 {
                self.stats.spooled.fetch_add(waiting, Ordering::Relaxed);
                self.fall_behind();
            }
            self.park(unlogged).await;
            if self.spooling {
                self.next_replay = Instant::now() + self.replay_backoff;
            }
        } else {
            self.stats.failed.fetch_add(count, Ordering::Relaxed);
            self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(count, error = %error, "audit events could not be stored");
        }
    }

    /// Everything below `upto` is stored: let the log drop it. The depth, and the position the
    /// next record gets, after it; `None` when the spool failed (logged).
    async fn release(&mut self, upto: u64, cursor: Option<(u64, u64)>) -> Option<(u64, u64)> {
        let spool = self.spool.clone()?;
        let released = tokio::task::spawn_blocking(move || {
            let mut s = spool.lock().unwrap_or_else(|p| p.into_inner());
            let r = s.release(upto, cursor);
            (r, s.depth(), s.bytes(), s.next_position())
        })
        .await;
        match released {
            Ok((Ok(()), depth, bytes, next)) => {
                // Room again for a batch the spool refused as full.
                self.stats.health.spool_ok();
                self.stats.spool_depth.store(depth, Ordering::Relaxed);
                self.stats.spool_bytes.store(bytes, Ordering::Relaxed);
                Some((depth, next))
            }
            Ok((Err(e), _, _, _)) => {
                tracing::error!(error = %e, "audit spool could not drop stored events");
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "audit spool task failed");
                None
            }
        }
    }

    async fn append(
        &self,
        events: &[AuditEvent],
        bodies: &[Option<&str>],
        durable: bool,
    ) -> Result<Appended, String> {
        let started = std::time::Instant::now();
        let result = timeout(
            STORE_TIMEOUT,
            self.store
                .append_encoded(&self.instance, events, bodies, durable),
        )
        .await;
        crate::metrics::store_write(started.elapsed());
        self.stats.health.store_result(matches!(result, Ok(Ok(_))));
        match result {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("store did not answer within {STORE_TIMEOUT:?}")),
        }
    }

    fn count_appended(&mut self, count: u64, appended: &Appended) {
        let inserted = appended.inserted.min(count);
        self.stats.written.fetch_add(inserted, Ordering::Relaxed);
        self.stats
            .duplicates
            .fetch_add(count - inserted, Ordering::Relaxed);
        self.since_checkpoint += inserted;
    }

    /// Put `events` in the spool (fsync'd); without a spool, or when it is full, count them lost.
    async fn park(&mut self, events: Vec<AuditEvent>) {
        if events.is_empty() {
            return;
        }
        let count = events.len() as u64;
        let Some(spool) = self.spool.clone() else {
            self.stats.failed.fetch_add(count, Ordering::Relaxed);
            self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
            self.stats.health.spool_refused(false);
            return;
        };
        let result = tokio::task::spawn_blocking(move || {
            let mut s = spool.lock().unwrap_or_else(|p| p.into_inner());
            let r = s.append(&events);
            (r, s.depth(), s.bytes())
        })
        .await;
        match result {
            Ok((Ok(()), depth, bytes)) => {
                self.stats.health.spool_ok();
                self.stats.spooled.fetch_add(count, Ordering::Relaxed);
                self.stats.spool_depth.store(depth, Ordering::Relaxed);
                self.stats.spool_bytes.store(bytes, Ordering::Relaxed);
                if !self.spooling {
                    self.spooling = true;
                    self.replay_backoff = REPLAY_FIRST;
                    self.next_replay = Instant::now() + REPLAY_FIRST;
                }
            }
            Ok((Err(e), _, _)) => self.lost(count, &e),
            Err(e) => {
                let e = SpoolError::Io {
                    path: "spool".into(),
                    source: std::io::Error::other(e.to_string()),
                };
                self.lost(count, &e);
            }
        }
    }

    fn lost(&self, count: u64, e: &SpoolError) {
        self.stats
            .health
            .spool_refused(matches!(e, SpoolError::Full { .. }));
        self.stats.failed.fetch_add(count, Ordering::Relaxed);
        self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(count, error = %e, "audit events lost: the store is unavailable and the spool refused them");
    }

    /// Move spooled events into the store, oldest first, until the spool is empty, the store
    /// fails (then back off), or the time slice is used up. False when the store or the spool
    /// failed.
    async fn replay(&mut self) -> bool {
        let Some(spool) = self.spool.clone() else {
            self.spooling = false;
            return true;
        };
        let started = Instant::now();
        let chunk = (self.batch_size * 4).clamp(1, 1024);
        loop {
            // Planned under the lock, read without it: submitters keep logging meanwhile.
            let plan = spool.lock().unwrap_or_else(|p| p.into_inner()).plan(chunk);
            let read = match tokio::task::spawn_blocking(move || plan.read()).await {
                Ok(Ok(read)) => read,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "audit spool unreadable");
                    self.back_off();
                    return false;
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit spool task failed");
                    self.back_off();
                    return false;
                }
            };
            if !read.events.is_empty() {
                match self.append(&read.events, &[], false).await {
                    Ok(appended) => {
                        self.count_appended(read.events.len() as u64, &appended);
                        self.stats
                            .replayed
                            .fetch_add(read.events.len() as u64, Ordering::Relaxed);
                    }
                    Err(error) => {
                        let depth = self.stats.spool_depth.load(Ordering::Relaxed);
                        tracing::warn!(spool_depth = depth, error = %error, "audit store still unavailable");
                        self.back_off();
                        return false;
                    }
                }
            }
            let Some((depth, next)) = self.release(read.end, read.cursor).await else {
                self.back_off();
                return false;
            };
            if depth == 0 {
                self.spooling = false;
                self.expected = next;
                self.replay_backoff = REPLAY_FIRST;
                let replayed = self.stats.replayed.load(Ordering::Relaxed);
                tracing::info!(
                    replayed,
                    "audit spool replayed: writing from the queue again"
                );
                return true;
            }
            if started.elapsed() >= REPLAY_SLICE {
                // Let the queue have a turn; continue right after.
                self.next_replay = Instant::now();
                return true;
            }
        }
    }

    fn back_off(&mut self) {
        self.next_replay = Instant::now() + self.replay_backoff;
        self.replay_backoff = (self.replay_backoff * 2).min(REPLAY_MAX);
    }

    /// Sign a checkpoint when one is due: at `final_` always (`shutdown`), after
    /// `every_events` new links or `interval` (`periodic`), or after `interval` without new
    /// links (`heartbeat`: the same head with a fresh time).
    async fn maybe_checkpoint(&mut self, final_: bool) {
        let Some(policy) = &self.checkpoint else {
            return;
        };
        if self.spooling {
            return;
        }
        let interval_due = self.last_checkpoint.elapsed() >= policy.interval;
        let kind = if final_ {
            CheckpointKind::Shutdown
        } else if self.since_checkpoint >= policy.every_events
            || (self.since_checkpoint > 0 && interval_due)
        {
            CheckpointKind::Periodic
        } else if interval_due {
            CheckpointKind::Heartbeat
        } else {
            return;
        };
        let signer = policy.signer.clone();
        let after = self.signed.as_ref();
        let mut result = timeout(
            STORE_TIMEOUT,
            self.store
                .checkpoint_after(&self.instance, kind, &signer, after),
        )
        .await;
        if kind == CheckpointKind::Periodic && interval_due && matches!(result, Ok(Ok(None))) {
            // Nothing new after all (the links were already stored): still a fresh statement.
            result = timeout(
                STORE_TIMEOUT,
                self.store.checkpoint_after(
                    &self.instance,
                    CheckpointKind::Heartbeat,
                    &signer,
                    after,
                ),
            )
            .await;
        }
        self.last_checkpoint = Instant::now();
        match result {
            Ok(Ok(cp)) => {
                self.since_checkpoint = 0;
                if let Some(cp) = cp {
                    self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                    self.publish(&cp).await;
                    self.signed = Some(cp);
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "audit checkpoint not written"),
            Err(_) => tracing::warn!("audit checkpoint not written: store did not answer"),
        }
    }

    /// The newest checkpoint of this chain in the witness file (its last 64 KiB), if any.
    async fn witnessed_last(&self) -> Option<Checkpoint> {
        let witness = self.witness.clone()?;
        let instance = self.instance.clone();
        let read = tokio::task::spawn_blocking(move || {
            let path = witness
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .path
                .clone();
            read_tail(&path, 64 * 1024).map(|text| {
                crate::store::verify::Witness::parse("", &text)
                    .checkpoints
                    .into_iter()
                    .map(|(_, cp)| cp)
                    .rfind(|cp| cp.instance == instance && cp.checkpoint_n.is_some())
            })
        })
        .await;
        match read {
            Ok(Ok(last)) => last,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => None,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "audit witness file unreadable at start");
                None
            }
            Err(_) => None,
        }
    }

    /// Publish a signed checkpoint outside the store, so a cut tail shows against it: the log,
    /// the sinks, and the witness file.
    async fn publish(&self, cp: &Checkpoint) {
        tracing::info!(
            chain = %cp.instance,
            checkpoint_n = cp.checkpoint_n.unwrap_or(0),
            n = cp.to_n,
            head_hash = %cp.head_hash,
            kind = cp.kind.as_str(),
            created_ms = cp.created_ms,
            signature = %cp.signature,
            "audit checkpoint signed"
        );
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .offer_checkpoint(cp);
        let Some(witness) = self.witness.clone() else {
            return;
        };
        let mut line = cp.record().to_string().into_bytes();
        line.push(b'\n');
        let result = tokio::task::spawn_blocking(move || {
            let mut w = witness.lock().unwrap_or_else(|p| p.into_inner());
            w.append(&line)
                .map_err(|e| format!("{}: {e}", w.path.display()))
        })
        .await;
        let error = match result {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(e) => e.to_string(),
        };
        tracing::error!(
            error = %error,
            chain = %cp.instance,
            checkpoint_n = cp.checkpoint_n.unwrap_or(0),
            "audit checkpoint not written to the witness file"
        );
    }

    /// Sleep before a retry, cut short if shutdown begins meanwhile.
    async fn pause(&mut self, delay: Duration) {
        if self.stopping {
            sleep(delay).await;
            return;
        }
        tokio::select! {
            () = sleep(delay) => {}
            () = self.stop.requested() => self.begin_stop(),
        }
    }
}
