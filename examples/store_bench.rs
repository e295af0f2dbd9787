//! Store throughput: events per second sustained into SQLite and PostgreSQL through the
//! pipeline (async batches; sync group commit), next to the raw batched-append limit of the same
//! store measured in the same run. A benchmark, not a test: run it in release mode.
//!
//! ```sh
//! cargo run --release --example store_bench                       # SQLite only
//! AUTHTRAIL_BENCH_PG_URL=postgres://postgres@127.0.0.1:5432/bench \
//!     cargo run --release --example store_bench                   # and PostgreSQL
//! ```
//! Options (env): `BENCH_EVENTS` (default 50000), `BENCH_SYNC_EVENTS` (20000),
//! `BENCH_SYNC_CLIENTS` (64).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use authtrail::event::AuditEvent;
use authtrail::pipeline::{Pipeline, PipelineConfig};
use authtrail::store::postgres::PostgresStore;
use authtrail::store::sqlite::SqliteStore;
use authtrail::store::EventStore;

#[path = "support/bench_event.rs"]
mod bench_event;
use bench_event::event;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rate(n: usize, d: Duration) -> String {
    format!("{:>9.0} events/s", n as f64 / d.as_secs_f64())
}

/// The raw limit: pre-built batches of 256 appended straight to one chain (`EventStore::append`,
/// not durable), one after another — no queue, no writer.
async fn raw(store: &dyn EventStore, n: usize) -> Duration {
    let events: Vec<AuditEvent> = (0..n).map(event).collect();
    let started = Instant::now();
    for chunk in events.chunks(256) {
        store.append("bench", chunk, false).await.unwrap();
    }
    started.elapsed()
}

/// Submit `n` events as fast as possible; time until the writer has stored them all.
async fn pipeline_async(store: Arc<dyn EventStore>, n: usize) -> Duration {
    let events: Vec<AuditEvent> = (0..n).map(event).collect();
    let cfg = PipelineConfig {
        queue_capacity: n + 1,
        instance_id: Some("bench-async".into()),
        ..PipelineConfig::default()
    };
    let (pipeline, writer) = Pipeline::start(store, cfg);
    let started = Instant::now();
    for e in events {
        pipeline.submit(e);
    }
    while pipeline.stats().written.load(Ordering::Relaxed) < n as u64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = started.elapsed();
    writer.shutdown().await;
    assert_eq!(pipeline.stats().snapshot().failed, 0);
    took
}

/// `clients` concurrent callers each commit one event at a time (as sync routes do), `n` in
/// all. Returns the time and the commit latencies.
async fn pipeline_sync(
    store: Arc<dyn EventStore>,
    n: usize,
    clients: usize,
) -> (Duration, Vec<Duration>) {
    let cfg = PipelineConfig {
        instance_id: Some("bench-sync".into()),
        ..PipelineConfig::default()
    };
    let (pipeline, writer) = Pipeline::start(store, cfg);
    let started = Instant::now();
    let per = n / clients;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let pipeline = pipeline.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per);
                for i in 0..per {
                    let e = event(c * per + i);
                    let t = Instant::now();
                    pipeline.commit(e).await.unwrap();
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let took = started.elapsed();
    writer.shutdown().await;
    lat.sort();
    (took, lat)
}

fn pct(lat: &[Duration], p: f64) -> String {
    let i = ((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1));
    format!("{:.1} ms", lat[i].as_secs_f64() * 1000.0)
}

async fn bench<F, Fut>(name: &str, open: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn EventStore>>,
{
    let n = env_usize("BENCH_EVENTS", 50_000);
    let sync_n = env_usize("BENCH_SYNC_EVENTS", 20_000);
    let clients = env_usize("BENCH_SYNC_CLIENTS", 64).max(1);

    let d = raw(open().await.as_ref(), n).await;
    println!(
        "{name:<10} raw append(256)                  {n:>6} events  {}",
        rate(n, d)
    );
    let d = pipeline_async(open().await, n).await;
    println!(
        "{name:<10} pipeline async (batches of 256)   {n:>6} events  {}",
        rate(n, d)
    );
    let (d, lat) = pipeline_sync(open().await, sync_n, clients).await;
    println!(
        "{name:<10} pipeline sync ({clients} clients)        {sync_n:>6} events  {}  commit p50 {} p99 {}",
        rate(sync_n, d),
        pct(&lat, 0.50),
        pct(&lat, 0.99)
    );
    let (d, lat) = pipeline_sync(open().await, 2_000, 1).await;
    println!(
        "{name:<10} pipeline sync (1 client)          {:>6} events  {}  commit p50 {} p99 {}",
        2_000,
        rate(2_000, d),
        pct(&lat, 0.50),
        pct(&lat, 0.99)
    );
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    bench("sqlite", || {
        let path = dir.path().join(format!(
            "bench-{}.db",
            counter.fetch_add(1, Ordering::Relaxed)
        ));
        async move {
            Arc::new(SqliteStore::open(path.to_str().unwrap()).await.unwrap())
                as Arc<dyn EventStore>
        }
    })
    .await;

    let Ok(url) = std::env::var("AUTHTRAIL_BENCH_PG_URL") else {
        println!("postgres   skipped: AUTHTRAIL_BENCH_PG_URL not set");
        return;
    };
    bench("postgres", || {
        let url = url.clone();
        async move {
            // A fresh schema per measurement, so each starts from an empty table.
            let schema = format!("bench_{}", uuid::Uuid::now_v7().simple());
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
            let opts: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
            Arc::new(
                PostgresStore::connect(opts.options([("search_path", schema.as_str())]))
                    .await
                    .unwrap(),
            ) as Arc<dyn EventStore>
        }
    })
    .await;
}
