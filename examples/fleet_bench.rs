//! Fleet scale on PostgreSQL: 1, 2, 4 and 8 writer *processes* (each a sidecar's store: its own
//! connection pool, its own chain) append to one trail at once, while a poller in this process
//! walks it by ascending cursor and counts what it sees; next to PostgreSQL's own insert limit
//! for rows of the same shape (same table, indexes and JSON body; no chain, no locks) measured in
//! the same run. A benchmark, not a test: run it in release mode.
//!
//! ```sh
//! AUTHTRAIL_BENCH_PG_URL=postgres://postgres@127.0.0.1:5432/bench \
//!     cargo run --release --example fleet_bench
//! ```
//! Options (env): `FLEET_SECONDS` (5 per step), `FLEET_BATCH` (256 events per append),
//! `FLEET_WRITERS` ("1 2 4 8"). Works in a schema `authtrail_fleet` it drops and recreates.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use authtrail::event::AuditEvent;
use authtrail::store::postgres::PostgresStore;
use authtrail::store::{EventStore, Query};
use sqlx::postgres::PgConnectOptions;
use sqlx::Connection;

#[path = "support/bench_event.rs"]
mod bench_event;
use bench_event::event;

const SCHEMA: &str = "authtrail_fleet";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn options(url: &str) -> PgConnectOptions {
    url.parse::<PgConnectOptions>()
        .expect("AUTHTRAIL_BENCH_PG_URL")
        .options([("search_path", SCHEMA)])
}

/// Child mode: append batches on chain `instance` until `seconds` pass; print the count.
async fn writer(url: &str, instance: &str, seconds: f64, batch: usize) {
    let store = PostgresStore::connect(options(url)).await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut n = 0;
    while Instant::now() < deadline {
        let events: Vec<AuditEvent> = (n..n + batch).map(event).collect();
        store
            .append(instance, &events, false)
            .await
            .expect("append");
        n += batch;
    }
    store.close().await;
    println!("{n}");
}

async fn reset(url: &str) {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    for sql in [
        format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"),
        format!("CREATE SCHEMA {SCHEMA}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect("reset schema");
    }
    conn.close().await.ok();
    // Migrate.
    PostgresStore::connect(options(url))
        .await
        .expect("migrate")
        .close()
        .await;
}

/// Poll ascending pages until `stop` says the writers are done and a page comes back empty:
/// (events seen, seen twice).
async fn poll(url: String, stop: tokio::sync::watch::Receiver<bool>) -> (usize, usize) {
    let store = PostgresStore::connect(options(&url))
        .await
        .expect("connect");
    let (mut seen, mut twice, mut cursor) = (HashSet::new(), 0, 0i64);
    loop {
        let done = *stop.borrow();
        let page = store
            .query(&Query {
                ascending: true,
                after_seq: Some(cursor),
                limit: 1000,
                ..Query::default()
            })
            .await
            .expect("poll");
        if let Some(last) = page.last() {
            cursor = last.seq.unwrap_or(cursor);
        }
        let empty = page.is_empty();
        for e in page {
            if !seen.insert(e.id) {
                twice += 1;
            }
        }
        if done && empty {
            break;
        }
        if empty {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    store.close().await;
    (seen.len(), twice)
}

/// PostgreSQL's own limit for rows like ours: `conns` connections inserting batches of `batch`
/// same-shaped rows (same table definition, indexes and body) for `seconds`.
async fn raw_limit(url: &str, conns: usize, seconds: f64, batch: usize) -> f64 {
    let mut conn = sqlx::PgConnection::connect_with(&options(url))
        .await
        .expect("connect");
    sqlx::query("CREATE TABLE raw (LIKE events INCLUDING ALL)")
        .execute(&mut conn)
        .await
        .expect("raw table");
    conn.close().await.ok();
    let body = serde_json::to_string(&event(1)).unwrap();
    let insert = "INSERT INTO raw (id, time_ms, type, stage, outcome, reason, app, actor_id, \
         route, status, ip, request_id, chain_instance, chain_n, chain_hash, body) \
         SELECT md5(random()::text || g), g, 'auth.login', 'completed', 'success', NULL, \
         'app-' || (g % 20), 'user-' || (g % 5000), 'login', 200, '10.0.0.' || (g % 256), \
         'req-' || g, md5(random()::text), g, md5(g::text) || md5(g::text), $1::jsonb \
         FROM generate_series(1, $2) g";
    let started = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let (opts, body) = (options(url), body.clone());
            tokio::spawn(async move {
                let mut c = sqlx::PgConnection::connect_with(&opts)
                    .await
                    .expect("connect");
                let deadline = Instant::now() + Duration::from_secs_f64(seconds);
                let mut n = 0;
                while Instant::now() < deadline {
                    sqlx::query(insert)
                        .bind(&body)
                        .bind(batch as i32)
                        .execute(&mut c)
                        .await
                        .expect("raw insert");
                    n += batch;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = std::env::var("AUTHTRAIL_BENCH_PG_URL")
        .expect("set AUTHTRAIL_BENCH_PG_URL to a PostgreSQL database to benchmark in");
    let seconds: f64 = env_or("FLEET_SECONDS", "5").parse().expect("FLEET_SECONDS");
    let batch: usize = env_or("FLEET_BATCH", "256").parse().expect("FLEET_BATCH");
    if args.get(1).map(String::as_str) == Some("--writer") {
        writer(&url, &args[2], seconds, batch).await;
        return;
    }
    let counts: Vec<usize> = env_or("FLEET_WRITERS", "1 2 4 8")
        .split_whitespace()
        .map(|n| n.parse().expect("FLEET_WRITERS"))
        .collect();
    let me = std::env::current_exe().unwrap();
    println!(
        "| writer processes | events/s (all) | per writer | poller: seen / stored | seen twice |"
    );
    println!("|---|---|---|---|---|");
    for &n in &counts {
        reset(&url).await;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let poller = tokio::spawn(poll(url.clone(), stop_rx));
        let started = Instant::now();
        let children: Vec<_> = (0..n)
            .map(|i| {
                Command::new(&me)
                    .args(["--writer", &format!("fleet-{i}")])
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("spawn writer")
            })
            .collect();
        let mut total = 0usize;
        for c in children {
            let out = c.wait_with_output().expect("writer");
            assert!(out.status.success(), "a writer failed");
            total += String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<usize>()
                .expect("writer count");
        }
        let took = started.elapsed().as_secs_f64().min(seconds + 1.0);
        let _ = stop_tx.send(true);
        let (seen, twice) = poller.await.unwrap();
        let rate = total as f64 / seconds.max(took.min(seconds));
        println!(
            "| {n} | {rate:.0} | {:.0} | {seen} / {total} | {twice} |",
            rate / n as f64
        );
    }
    let top = counts.iter().copied().max().unwrap_or(8);
    let raw = raw_limit(&url, top, seconds, batch).await;
    println!("\nPostgreSQL's own insert limit, {top} connections, rows of the same shape: {raw:.0} rows/s");
}
