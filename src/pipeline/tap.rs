//! Taps: a copy of each event, as it is handed to the pipeline, for the consumers beside the
//! store (alert rules, stream sinks). Every tap has its own bounded queue; when it is full the
//! copy is dropped and counted, so a slow consumer never slows the proxy or the store writer.
//!
//! A tap sees events before they are stored: without `seq` and `chain`, and including events
//! that later end in the spool or fail to store. A tap made with [`tap_with_checkpoints`] (the
//! sinks') also gets every checkpoint the writer signs, on a queue of its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::event::AuditEvent;
use crate::store::{Checkpoint, TypeFilter};

/// Counters of one tap, shared with its consumer and the metrics.
#[derive(Debug)]
pub struct TapStats {
    pub name: String,
    /// Copies refused because the tap's queue was full (or its consumer had stopped).
    pub dropped: AtomicU64,
    /// Copies queued.
    pub queued: AtomicU64,
    capacity: usize,
    tx: mpsc::WeakSender<Arc<AuditEvent>>,
}

impl TapStats {
    /// Copies waiting in the queue now.
    pub fn depth(&self) -> usize {
        self.tx
            .upgrade()
            .map_or(0, |tx| self.capacity - tx.capacity())
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// The sending side of one tap.
#[derive(Clone, Debug)]
pub struct Tap {
    /// Event types the consumer wants; every type when `None`.
    types: Option<Arc<[TypeFilter]>>,
    tx: mpsc::Sender<Arc<AuditEvent>>,
    stats: Arc<TapStats>,
    /// Signed checkpoints, when the consumer publishes them.
    checkpoints: Option<mpsc::Sender<Arc<Checkpoint>>>,
}

/// Checkpoints a tap's queue holds: one per `checkpoint.interval`, so a few suffice.
const CHECKPOINT_QUEUE: usize = 64;

/// [`tap`], and a queue of the signed checkpoints the writer publishes.
pub fn tap_with_checkpoints(
    name: &str,
    capacity: usize,
    types: Option<Vec<TypeFilter>>,
) -> (
    Tap,
    mpsc::Receiver<Arc<AuditEvent>>,
    mpsc::Receiver<Arc<Checkpoint>>,
) {
    let (mut tap, rx) = tap(name, capacity, types);
    let (tx, cp_rx) = mpsc::channel(CHECKPOINT_QUEUE);
    tap.checkpoints = Some(tx);
    (tap, rx, cp_rx)
}

/// A tap named `name` holding up to `capacity` events, taking only `types` (all when `None`),
/// and the queue its consumer reads.
pub fn tap(
    name: &str,
    capacity: usize,
    types: Option<Vec<TypeFilter>>,
) -> (Tap, mpsc::Receiver<Arc<AuditEvent>>) {
    let capacity = capacity.max(1);
    let (tx, rx) = mpsc::channel(capacity);
    let stats = Arc::new(TapStats {
        name: name.to_string(),
        dropped: AtomicU64::new(0),
        queued: AtomicU64::new(0),
        capacity,
        tx: tx.downgrade(),
    });
    let tap = Tap {
        types: types.map(Into::into),
        tx,
        stats,
        checkpoints: None,
    };
    (tap, rx)
}

/// Whether `filter` takes `event_type`.
pub fn type_matches(filter: &TypeFilter, event_type: &str) -> bool {
    match filter {
        TypeFilter::Exact(t) => t == event_type,
        TypeFilter::Prefix(p) => event_type.starts_with(p.as_str()),
    }
}

impl Tap {
    pub fn stats(&self) -> &Arc<TapStats> {
        &self.stats
    }

    fn wants(&self, event: &AuditEvent) -> bool {
        self.types
            .as_deref()
            .is_none_or(|types| types.iter().any(|f| type_matches(f, &event.event_type)))
    }
}

/// Every tap of a pipeline.
#[derive(Clone, Debug, Default)]
pub struct Taps(Arc<[Tap]>);

impl Taps {
    pub fn new(taps: Vec<Tap>) -> Taps {
        Taps(taps.into())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Offer a signed checkpoint to every tap that publishes them (whatever its event types),
    /// never waiting: a full queue drops it, counted.
    pub fn offer_checkpoint(&self, cp: &Checkpoint) {
        let shared = Arc::new(cp.clone());
        for tap in self.0.iter() {
            let Some(tx) = &tap.checkpoints else { continue };
            if tx.try_send(shared.clone()).is_err() {
                tap.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(tap = %tap.stats.name, "checkpoint not published: the sink's queue is full");
            }
        }
    }

    /// Offer `event` to every tap that wants it: one copy shared by all of them, never waiting.
    pub fn offer(&self, event: &AuditEvent) {
        let mut shared: Option<Arc<AuditEvent>> = None;
        for tap in self.0.iter().filter(|t| t.wants(event)) {
            let copy = shared
                .get_or_insert_with(|| Arc::new(event.clone()))
                .clone();
            match tap.tx.try_send(copy) {
                Ok(()) => {
                    tap.stats.queued.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    // Counted, not logged per event: a stuck sink would flood the log. The sink
                    // logs its own failures, and the count is a metric.
                    tap.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}
