//! The pipeline against a real SQLite store: everything queued is stored by shutdown, a full
//! queue drops instead of blocking, and a failing store is counted, not fatal.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authtrail::event::{AuditEvent, Outcome};
use authtrail::pipeline::{Pipeline, PipelineConfig, StatsSnapshot};
use authtrail::store::sqlite::SqliteStore;
use authtrail::store::{EventStore, Query};
use support::fault::FaultStore;
use support::store_conformance::{many, sample_event, T0};
use tempfile::TempDir;

async fn sqlite() -> (Arc<SqliteStore>, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    (Arc::new(store), dir)
}

async fn stored(store: &SqliteStore) -> Vec<AuditEvent> {
    store
        .query(&Query {
            ascending: true,
            limit: 10_000,
            ..Query::default()
        })
        .await
        .unwrap()
}

fn config(queue_capacity: usize, batch_size: usize) -> PipelineConfig {
    PipelineConfig {
        queue_capacity,
        batch_size,
        flush_interval: Duration::from_millis(10),
        ..PipelineConfig::default()
    }
}

/// Wait (bounded) until the stats satisfy `done`.
async fn wait_for(pipeline: &Pipeline, done: impl Fn(&StatsSnapshot) -> bool) -> StatsSnapshot {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = pipeline.stats().snapshot();
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "stats never got there: {s:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn every_submitted_event_is_stored_by_shutdown() {
    let (store, _dir) = sqlite().await;
    let (pipeline, writer) = Pipeline::start(store.clone(), config(10_000, 64));
    let events = many(1000);
    for e in &events {
        pipeline.submit(e.clone());
    }
    writer.shutdown().await;

    let got = stored(&store).await;
    assert_eq!(
        got.iter().map(|e| e.id).collect::<Vec<_>>(),
        events.iter().map(|e| e.id).collect::<Vec<_>>(),
        "stored once each, in submission order"
    );
    let stats = pipeline.stats().snapshot();
    assert_eq!(
        stats,
        StatsSnapshot {
            enqueued: 1000,
            written: 1000,
            ..StatsSnapshot::default()
        }
    );
    assert_eq!(pipeline.queue_depth(), 0);
}

#[tokio::test]
async fn default_config_stores_everything_too() {
    let (store, _dir) = sqlite().await;
    let (pipeline, writer) = Pipeline::start(store.clone(), PipelineConfig::default());
    for e in many(300) {
        pipeline.submit(e);
    }
    writer.shutdown().await;
    assert_eq!(stored(&store).await.len(), 300);
    assert_eq!(pipeline.stats().snapshot().written, 300);
}

#[tokio::test]
async fn a_partial_batch_is_written_after_flush_interval() {
    let (store, _dir) = sqlite().await;
    let (pipeline, _writer) = Pipeline::start(store.clone(), config(100, 256));
    pipeline.submit(many(1).remove(0));
    wait_for(&pipeline, |s| s.written == 1).await;
    assert_eq!(stored(&store).await.len(), 1);
}

#[tokio::test]
async fn dropping_the_writer_handle_does_not_stop_writing() {
    let (store, _dir) = sqlite().await;
    let (pipeline, writer) = Pipeline::start(store.clone(), config(100, 8));
    drop(writer);
    pipeline.submit(many(1).remove(0));
    wait_for(&pipeline, |s| s.written == 1).await;
}

#[tokio::test]
async fn a_full_queue_drops_and_never_blocks() {
    let (inner, _dir) = sqlite().await;
    let store = FaultStore::gated(inner.clone());
    let (pipeline, writer) = Pipeline::start(store.clone(), config(4, 1));
    let events = many(8);

    // The writer takes the first event and blocks in the store...
    pipeline.submit(events[0].clone());
    store.entered.notified().await;
    // ...so four fill the queue and the rest are dropped, each submit returning at once.
    let started = Instant::now();
    for e in &events[1..] {
        pipeline.submit(e.clone());
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(pipeline.queue_depth(), 4);
    let stats = pipeline.stats().snapshot();
    assert_eq!((stats.enqueued, stats.dropped, stats.written), (5, 3, 0));

    store.gate.as_ref().unwrap().add_permits(1);
    writer.shutdown().await;
    let got: Vec<_> = stored(&inner).await.iter().map(|e| e.id).collect();
    assert_eq!(got, events[..5].iter().map(|e| e.id).collect::<Vec<_>>());
    assert_eq!(
        pipeline.stats().snapshot(),
        StatsSnapshot {
            enqueued: 5,
            written: 5,
            dropped: 3,
            ..StatsSnapshot::default()
        }
    );
}

#[tokio::test]
async fn submissions_after_shutdown_are_dropped() {
    let (store, _dir) = sqlite().await;
    let (pipeline, writer) = Pipeline::start(store.clone(), config(100, 8));
    pipeline.submit(many(1).remove(0));
    writer.shutdown().await;
    pipeline.submit(many(1).remove(0));
    let stats = pipeline.stats().snapshot();
    assert_eq!((stats.written, stats.dropped), (1, 1));
    assert_eq!(stored(&store).await.len(), 1);
}

#[tokio::test]
async fn duplicates_are_counted_not_stored_twice() {
    let (store, _dir) = sqlite().await;
    let (pipeline, writer) = Pipeline::start(store.clone(), config(100, 8));
    let e = many(1).remove(0);
    pipeline.submit(e.clone());
    pipeline.submit(e);
    writer.shutdown().await;
    let stats = pipeline.stats().snapshot();
    assert_eq!((stats.written, stats.duplicates), (1, 1));
    assert_eq!(stored(&store).await.len(), 1);
}

#[tokio::test]
async fn a_failing_store_counts_failures_and_keeps_going() {
    let (store, _dir) = sqlite().await;
    // A closed store fails every insert, for real.
    store.close().await;
    let (pipeline, writer) = Pipeline::start(store.clone(), config(100, 100));
    for e in many(10) {
        pipeline.submit(e);
    }
    // Retried with backoff, then given up on as one batch.
    let stats = wait_for(&pipeline, |s| s.failed == 10).await;
    assert_eq!((stats.write_errors, stats.written), (1, 0));

    // Shutdown does not sit through the long backoff.
    for e in many(5) {
        pipeline.submit(e);
    }
    let started = Instant::now();
    writer.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "shutdown took {:?}",
        started.elapsed()
    );
    let stats = pipeline.stats().snapshot();
    assert_eq!((stats.enqueued, stats.failed, stats.written), (15, 15, 0));
    assert_eq!(stats.write_errors, 2);
}

/// A `MakeWriter` into a shared buffer, to read back what was logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_dropped_event_is_logged_by_id_type_and_route_only() {
    let (store, _dir) = sqlite().await;
    let (pipeline, writer) = Pipeline::start(store, config(1, 1));
    writer.shutdown().await;

    let mut e = sample_event(
        "req-secretish-7",
        "auth.login",
        Some("app-secretish"),
        Some("alice-secretish"),
        Outcome::Failure,
        T0,
    );
    e.http.path = "/login/path-secretish".into();
    e.source.user_agent = Some("agent-secretish".into());
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || pipeline.submit(e.clone()));

    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("audit event dropped"), "{logged}");
    assert!(logged.contains(&e.id.to_string()), "{logged}");
    assert!(logged.contains("auth.login"), "{logged}");
    assert!(logged.contains("route=login"), "{logged}");
    assert!(!logged.contains("secretish"), "{logged}");
    assert!(!logged.contains("192.0.2.7"), "{logged}");
    assert_eq!(pipeline.stats().snapshot().dropped, 1);
}

/// Backpressure: a request that reserves its event's place before it is forwarded waits while
/// the queue is full and never has its event dropped; without the reservation the same burst
/// into a one-place queue drops events.
#[tokio::test]
async fn reserved_places_wait_for_the_writer_instead_of_dropping() {
    // A place held by one request: the next one waits, up to its bound, then goes without.
    let (store, _dir) = sqlite().await;
    let (pipeline, writer) = Pipeline::start(store.clone(), config(1, 8));
    let held = pipeline.reserve(Duration::from_secs(5)).await;
    assert!(held.is_some());
    let started = Instant::now();
    assert!(pipeline.reserve(Duration::from_millis(100)).await.is_none());
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(pipeline.stats().snapshot().queue_waits, 1);
    assert!(
        pipeline.reserve(Duration::ZERO).await.is_none(),
        "0s: never waits"
    );
    drop(held);
    assert!(
        pipeline.reserve(Duration::ZERO).await.is_some(),
        "a dropped place is free"
    );
    writer.shutdown().await;

    // 200 concurrent submitters into a one-place queue, each reserving first: all stored.
    let (store, _dir) = sqlite().await;
    let (pipeline, writer) = Pipeline::start(store.clone(), config(1, 8));
    let tasks: Vec<_> = many(200)
        .into_iter()
        .map(|e| {
            let p = pipeline.clone();
            tokio::spawn(async move {
                let slot = p.reserve(Duration::from_secs(30)).await;
                assert!(slot.is_some(), "the writer makes room within the bound");
                p.submit_reserved(e, slot);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    writer.shutdown().await;
    let stats = pipeline.stats().snapshot();
    assert_eq!((stats.dropped, stats.written), (0, 200));
    assert_eq!(stored(&store).await.len(), 200);

    // The same burst without reserving: the one-place queue drops most of it (counted).
    let (store, _dir) = sqlite().await;
    let (pipeline, writer) = Pipeline::start(store.clone(), config(1, 8));
    for e in many(200) {
        pipeline.submit(e);
    }
    writer.shutdown().await;
    let stats = pipeline.stats().snapshot();
    assert!(stats.dropped > 0, "{stats:?}");
    assert_eq!(stats.dropped + stats.written, 200);
}
