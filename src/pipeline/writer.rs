//! The writer task: takes events off the queue in batches and stores them, retrying a failed
//! batch a few times before counting it lost. It is the only consumer of the queue; it must never
//! hold an event longer than `flush_interval` plus one store write, and never log event fields.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, Instant};

use super::{PipelineConfig, Stats};
use crate::event::AuditEvent;
use crate::store::EventStore;

/// Pauses before retrying a failed batch; once they run out the batch is counted as failed.
const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_secs(1),
];
/// Retries left to a failed batch once shutdown has begun: shutdown must not wait on a dead store.
const RETRIES_WHILE_STOPPING: usize = 1;

/// The running writer task. Call [`Writer::shutdown`] to flush the queue and stop it.
#[derive(Debug)]
pub struct Writer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Writer {
    pub(super) fn spawn(
        rx: mpsc::Receiver<AuditEvent>,
        stop_tx: oneshot::Sender<()>,
        stop_rx: oneshot::Receiver<()>,
        store: Arc<dyn EventStore>,
        cfg: PipelineConfig,
        stats: Arc<Stats>,
    ) -> Writer {
        let task = Task {
            rx,
            store,
            stats,
            batch_size: cfg.batch_size.max(1),
            flush_interval: cfg.flush_interval,
            stop: StopSignal(Some(stop_rx)),
            stopping: false,
        };
        Writer {
            stop: stop_tx,
            task: tokio::spawn(task.run()),
        }
    }

    /// Stop accepting events (later submissions are counted as dropped), write every event
    /// already queued, then return once the writer task has ended.
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

struct Task {
    rx: mpsc::Receiver<AuditEvent>,
    store: Arc<dyn EventStore>,
    stats: Arc<Stats>,
    batch_size: usize,
    flush_interval: Duration,
    stop: StopSignal,
    stopping: bool,
}

impl Task {
    async fn run(mut self) {
        let mut batch = Vec::with_capacity(self.batch_size);
        while self.fill(&mut batch).await {
            self.write(&batch).await;
            batch.clear();
        }
        tracing::debug!("audit writer stopped");
    }

    fn begin_stop(&mut self) {
        self.stopping = true;
        // Refuse new events but keep the queued ones readable.
        self.rx.close();
    }

    /// Wait for a first event, then gather more until the batch is full or `flush_interval` has
    /// passed since the first. False when the queue is closed and empty.
    async fn fill(&mut self, batch: &mut Vec<AuditEvent>) -> bool {
        let first = loop {
            if self.stopping {
                break self.rx.recv().await;
            }
            tokio::select! {
                event = self.rx.recv() => break event,
                () = self.stop.requested() => self.begin_stop(),
            }
        };
        let Some(first) = first else {
            return false;
        };
        batch.push(first);

        let deadline = Instant::now() + self.flush_interval;
        while batch.len() < self.batch_size {
            if self.stopping {
                // Draining: take what is already queued, wait for nothing.
                while batch.len() < self.batch_size {
                    match self.rx.try_recv() {
                        Ok(event) => batch.push(event),
                        Err(_) => break,
                    }
                }
                break;
            }
            let room = self.batch_size - batch.len();
            tokio::select! {
                received = self.rx.recv_many(batch, room) => {
                    if received == 0 {
                        break;
                    }
                }
                () = sleep_until(deadline) => break,
                () = self.stop.requested() => self.begin_stop(),
            }
        }
        true
    }

    /// Store `batch`, retrying with backoff; count the outcome.
    async fn write(&mut self, batch: &[AuditEvent]) {
        let count = batch.len() as u64;
        let mut retries = 0;
        loop {
            let error = match self.store.insert_batch(batch).await {
                Ok(inserted) => {
                    let inserted = inserted.min(count);
                    self.stats.written.fetch_add(inserted, Ordering::Relaxed);
                    self.stats
                        .duplicates
                        .fetch_add(count - inserted, Ordering::Relaxed);
                    return;
                }
                Err(e) => e,
            };
            let delay = RETRY_DELAYS
                .get(retries)
                .filter(|_| !self.stopping || retries < RETRIES_WHILE_STOPPING);
            let Some(&delay) = delay else {
                self.stats.failed.fetch_add(count, Ordering::Relaxed);
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(count, error = %error, "audit events could not be stored");
                return;
            };
            retries += 1;
            tracing::warn!(
                count,
                retry = retries,
                error = %error,
                "audit batch not stored, retrying"
            );
            self.pause(delay).await;
        }
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
