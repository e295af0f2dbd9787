//! Delivery under failure: a `sync` route fails closed (503, nothing forwarded) when its attempt
//! cannot be committed; `async` events outlive a store outage in the spool and arrive once each;
//! a spool outlives an abrupt stop; and after `kill -9` during load on a sync route, every
//! request that got a 2xx has its committed attempt event.

mod support;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authtrail::event::{AuditEvent, Outcome, Stage};
use authtrail::pipeline::{Pipeline, PipelineConfig, Spool, SpoolConfig};
use authtrail::sidecar::{self, Listeners, Summary};
use authtrail::store::sqlite::SqliteStore;
use authtrail::store::verify;
use authtrail::store::{EventStore, Query};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use support::fault::FaultStore;
use support::harness::send;
use support::store_conformance::{many, trusted};
use support::upstream;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const BIN: &str = env!("CARGO_BIN_EXE_authtrail");

/// A sidecar in-process on a store the test can switch off.
struct Running {
    addr: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<Summary, sidecar::Error>>,
}

impl Running {
    async fn stop(mut self) -> Summary {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("sidecar stopped within 30s")
            .unwrap()
            .unwrap()
    }

    async fn readyz(&self) -> serde_json::Value {
        let r = send(
            Method::GET,
            &format!("http://{}/readyz", self.admin),
            &[],
            Bytes::new(),
        )
        .await
        .unwrap();
        r.json()
    }
}

async fn start(yaml: &str, store: Arc<FaultStore>) -> Running {
    let cfg = authtrail::config::load_str(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"));
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, admin_addr) = (proxy.local_addr().unwrap(), admin.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(sidecar::run_with_store(
        cfg,
        store,
        Listeners { proxy, admin },
        async move {
            let _ = rx.await;
        },
    ));
    let running = Running {
        addr,
        admin: admin_addr,
        stop: Some(tx),
        task,
    };
    for _ in 0..300 {
        if running.readyz().await["status"] == "ready" {
            return running;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("sidecar never became ready");
}

fn yaml(upstream: std::net::SocketAddr, dir: &std::path::Path, routes: &str) -> String {
    format!(
        "upstream: http://{upstream}\nstore:\n  url: sqlite://{db}\n  flush_interval: 20ms\n  \
         sync_timeout: 1s\n  spool: {{ dir: {spool} }}\nroutes:\n{routes}",
        db = dir.join("trail.db").display(),
        spool = dir.join("spool").display(),
    )
}

const ROUTES: &str = "  - id: deactivate\n    match: { method: POST, path: /echo-headers }\n    \
     event: account.deactivate\n    delivery: sync\n  - id: login\n    match: { method: POST, \
     path: /upload }\n    event: auth.login\n";

async fn all_events(store: &dyn EventStore) -> Vec<AuditEvent> {
    store
        .query(&Query {
            ascending: true,
            limit: 10_000,
            ..Query::default()
        })
        .await
        .unwrap()
}

/// Poll (bounded) until `store` holds at least `n` events.
async fn wait_events(store: &dyn EventStore, n: usize) -> Vec<AuditEvent> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = all_events(store).await;
        if events.len() >= n {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} events arrived",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn by_request(events: &[AuditEvent]) -> HashMap<String, Vec<&AuditEvent>> {
    let mut m: HashMap<String, Vec<&AuditEvent>> = HashMap::new();
    for e in events {
        m.entry(e.http.request_id.clone()).or_default().push(e);
    }
    m
}

#[tokio::test]
async fn a_sync_route_with_the_store_down_answers_503_and_the_upstream_sees_nothing() {
    let up = upstream::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let inner = SqliteStore::open(dir.path().join("trail.db").to_str().unwrap())
        .await
        .unwrap();
    let store = FaultStore::new(Arc::new(inner));
    let sc = start(&yaml(up.addr, dir.path(), ROUTES), store.clone()).await;
    let url = format!("http://{}/echo-headers", sc.addr);

    store.set_down(true);
    let refused = send(
        Method::POST,
        &url,
        &[("x-request-id", "refused-1")],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        refused.json(),
        serde_json::json!({
            "error": "audit_unavailable",
            "message": "the audit trail could not record this request, so it was not forwarded",
            "request_id": "refused-1"
        })
    );
    assert_eq!(
        up.requests(),
        0,
        "the upstream never saw the refused request"
    );

    store.set_down(false);
    let ok = send(
        Method::POST,
        &url,
        &[("x-request-id", "allowed-1")],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(up.requests(), 1);

    // allowed-1: attempt then completed; refused-1: its attempt (spooled, replayed) and a
    // completed event saying why the client got 503.
    let events = wait_events(store.as_ref(), 4).await;
    let summary = sc.stop().await;
    assert_eq!((summary.events.dropped, summary.events.failed), (0, 0));
    let by = by_request(&events);
    let allowed = &by["allowed-1"];
    assert_eq!(
        allowed.iter().map(|e| e.stage).collect::<Vec<_>>(),
        [Stage::Attempt, Stage::Completed]
    );
    assert!(allowed[0].seq < allowed[1].seq);
    assert_eq!(allowed[0].http.status, None);
    assert_eq!(allowed[1].http.status, Some(200));
    let refused = &by["refused-1"];
    let done = refused
        .iter()
        .find(|e| e.stage == Stage::Completed)
        .expect("a completed event for the refused request");
    assert_eq!(
        (done.outcome, done.reason.as_deref(), done.http.status),
        (Outcome::Error, Some("audit_unavailable"), Some(503))
    );
    assert!(refused.iter().any(|e| e.stage == Stage::Attempt));
    assert_eq!(events.len(), 4);
}

#[tokio::test]
async fn async_events_outlive_a_store_outage_and_arrive_once_each() {
    let up = upstream::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let inner = SqliteStore::open(dir.path().join("trail.db").to_str().unwrap())
        .await
        .unwrap();
    let store = FaultStore::new(Arc::new(inner));
    let sc = start(&yaml(up.addr, dir.path(), ROUTES), store.clone()).await;
    let url = format!("http://{}/upload", sc.addr);

    store.set_down(true);
    const N: usize = 40;
    for i in 0..N {
        let rid = format!("out-{i}");
        let r = send(
            Method::POST,
            &url,
            &[("x-request-id", &rid)],
            Bytes::from("x"),
        )
        .await
        .unwrap();
        assert_eq!(
            r.status,
            StatusCode::OK,
            "async routes never wait on the store"
        );
    }
    // The spool takes them; readiness says so.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = sc.readyz().await;
        if r["spool_depth"] == N && r["events"]["spooled"] == N {
            // Still ready: the spool records what the store cannot take.
            assert_eq!(
                (&r["status"], &r["store"], &r["spool"]),
                (&"degraded".into(), &"down".into(), &"ok".into()),
                "{r}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "spool never held {N}: {r}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(all_events(store.as_ref()).await.is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await; // a few failed replays

    store.set_down(false);
    let events = wait_events(store.as_ref(), N).await;
    let summary = sc.stop().await;
    assert_eq!(events.len(), N);
    let ids: HashSet<_> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), N, "no event stored twice");
    let rids: Vec<String> = events.iter().map(|e| e.http.request_id.clone()).collect();
    let want: Vec<String> = (0..N).map(|i| format!("out-{i}")).collect();
    assert_eq!(rids, want, "replayed in order");
    let s = summary.events;
    assert_eq!(
        (
            s.written,
            s.spooled,
            s.replayed,
            s.spool_depth,
            s.failed,
            s.dropped
        ),
        (N as u64, N as u64, N as u64, 0, 0, 0)
    );
    let report = verify::verify(store.as_ref(), &verify::Options::default())
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

/// A queue too small for a burst: with write-ahead the events it could not take are read back
/// from the log (counted `deferred`), none dropped, all stored once and in order; without it
/// the same burst drops them.
#[tokio::test(flavor = "current_thread")]
async fn a_burst_past_a_full_queue_is_read_back_from_the_log_not_dropped() {
    for write_ahead in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn EventStore> = Arc::new(
            SqliteStore::open(dir.path().join("trail.db").to_str().unwrap())
                .await
                .unwrap(),
        );
        let spool = Spool::open(&SpoolConfig {
            write_ahead,
            ..SpoolConfig::new(dir.path().join("spool"))
        })
        .unwrap();
        let cfg = PipelineConfig {
            queue_capacity: 4,
            batch_size: 3,
            ..PipelineConfig::default()
        };
        let (pipeline, writer) = Pipeline::start_with(store.clone(), cfg, Some(spool));
        let events = many(200);
        // One thread, no await between submits: the writer cannot run, the queue fills.
        for e in &events {
            pipeline.submit(e.clone());
        }
        let s = pipeline.stats().snapshot();
        if !write_ahead {
            assert_eq!((s.dropped, s.deferred), (196, 0), "{s:?}");
            writer.shutdown().await;
            continue;
        }
        assert_eq!((s.dropped, s.deferred, s.enqueued), (0, 196, 200), "{s:?}");
        let got = wait_events(store.as_ref(), 200).await;
        writer.shutdown().await;
        assert_eq!(
            got.iter().map(|e| e.id).collect::<Vec<_>>(),
            events.iter().map(|e| e.id).collect::<Vec<_>>(),
            "stored once each, in submission order"
        );
        let s = pipeline.stats().snapshot();
        assert_eq!(
            (s.written, s.duplicates, s.dropped, s.failed, s.spool_depth),
            (200, 0, 0, 0, 0),
            "{s:?}"
        );
        let report = verify::verify(store.as_ref(), &verify::Options::default())
            .await
            .unwrap();
        assert!(report.ok(), "{:?}", report.problems);
    }
}

#[test]
fn a_spool_outlives_an_abrupt_stop_and_is_replayed_on_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trail.db");
    let spool_cfg = SpoolConfig {
        max_bytes: 1 << 24,
        ..SpoolConfig::new(dir.path().join("spool"))
    };
    let events = many(50);

    // First life: the store is down, everything goes to the spool; then the runtime is torn
    // down under the writer (nothing flushes, nothing says goodbye: as after kill -9).
    let first = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    first.block_on(async {
        let inner = SqliteStore::open(db.to_str().unwrap()).await.unwrap();
        let store = FaultStore::new(Arc::new(inner));
        store.set_down(true);
        let spool = Spool::open(&spool_cfg).unwrap();
        let (pipeline, writer) =
            Pipeline::start_with(store, PipelineConfig::default(), Some(spool));
        for e in &events {
            pipeline.submit(e.clone());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while pipeline.stats().snapshot().spooled < 50 {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        std::mem::forget(writer);
        std::mem::forget(pipeline);
    });
    first.shutdown_background();

    // Second life: the spool is found and replayed into the store that is back.
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        let store: Arc<dyn EventStore> =
            Arc::new(SqliteStore::open(db.to_str().unwrap()).await.unwrap());
        let spool = Spool::open(&spool_cfg).unwrap();
        assert_eq!(spool.depth(), 50);
        let (pipeline, writer) =
            Pipeline::start_with(store.clone(), PipelineConfig::default(), Some(spool));
        assert_eq!(pipeline.spool_depth(), 50);
        let got = wait_events(store.as_ref(), 50).await;
        writer.shutdown().await;
        assert_eq!(
            got.iter().map(|e| e.id).collect::<Vec<_>>(),
            events.iter().map(|e| e.id).collect::<Vec<_>>()
        );
        assert_eq!(pipeline.spool_depth(), 0);
        assert_eq!(Spool::open(&spool_cfg).unwrap().depth(), 0);
    });
}

/// Start `authtrail serve` as a child; return it with its proxy address.
fn spawn_serve(config: &std::path::Path) -> (std::process::Child, String) {
    let (child, addr, stderr) = support::child::serve(config);
    support::child::drain(stderr);
    (child, addr)
}

/// `workers` clients each send up to `each` POSTs to `url` (request ids `PREFIX-w-i`); once
/// `kill_after` have been answered with a 2xx, `child` gets SIGKILL. The request ids answered
/// with a 2xx; asserts the kill landed while requests were still being sent.
async fn kill_mid_load(
    child: &mut std::process::Child,
    url: &str,
    prefix: &str,
    workers: usize,
    each: usize,
    kill_after: usize,
) -> HashSet<String> {
    let ok: Arc<Mutex<Vec<String>>> = Arc::default();
    let sent = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (ok, sent) = (ok.clone(), sent.clone());
            let (url, prefix) = (url.to_string(), prefix.to_string());
            tokio::spawn(async move {
                for i in 0..each {
                    let rid = format!("{prefix}-{w}-{i}");
                    sent.fetch_add(1, Ordering::SeqCst);
                    match send(Method::POST, &url, &[("x-request-id", &rid)], Bytes::new()).await {
                        Ok(r) if r.status.is_success() => ok.lock().unwrap().push(rid),
                        Ok(_) => {}
                        Err(_) => return, // the sidecar is gone
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while ok.lock().unwrap().len() < kill_after {
        assert!(Instant::now() < deadline, "load did not get going");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        sent.load(Ordering::SeqCst) < workers * each,
        "the kill landed during the load"
    );
    let answered = ok.lock().unwrap().iter().cloned().collect();
    answered
}

#[tokio::test]
async fn after_kill_9_every_2xx_sync_request_has_its_attempt_event() {
    let up = upstream::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = support::child::config_file(dir.path(), &yaml(up.addr, dir.path(), ROUTES));
    let (mut child, addr) = spawn_serve(&cfg);

    let answered = kill_mid_load(
        &mut child,
        &format!("http://{addr}/echo-headers"),
        "k",
        6,
        200,
        150,
    )
    .await;
    assert!(answered.len() >= 150);

    // Restart on the same files (it must come up on whatever the kill left), then stop cleanly.
    let (mut again, addr) = spawn_serve(&cfg);
    // One request through it first: the SIGTERM handler is in place once it serves.
    let r = send(
        Method::POST,
        &format!("http://{addr}/upload"),
        &[],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let status = Command::new("kill")
        .args(["-TERM", &again.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(again.wait().unwrap().code(), Some(0));

    let store = SqliteStore::open(dir.path().join("trail.db").to_str().unwrap())
        .await
        .unwrap();
    let events = all_events(&store).await;
    let attempts: HashSet<String> = events
        .iter()
        .filter(|e| e.stage == Stage::Attempt)
        .map(|e| e.http.request_id.clone())
        .collect();
    let answered_with_attempt = answered.iter().filter(|r| attempts.contains(*r)).count();
    assert_eq!(
        answered_with_attempt,
        answered.len(),
        "every request that got a 2xx has its attempt event"
    );
    let report = verify::verify(&store, &trusted()).await.unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

/// The write-ahead log: `kill -9` in the middle of async load, with a long flush interval so
/// hundreds of events are only in memory at the kill; after a restart every request that got
/// its whole response has exactly one event (by request id), and the chain verifies.
#[tokio::test]
async fn after_kill_9_under_async_load_every_acknowledged_request_has_exactly_one_event() {
    let up = upstream::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("authtrail.yaml");
    let routes = ROUTES;
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\nupstream: http://{up}\n\
             store:\n  url: sqlite://{db}\n  flush_interval: 300ms\n  batch_size: 4096\n  \
             spool: {{ dir: {spool}}}\nroutes:\n{routes}",
            up = up.addr,
            db = dir.path().join("trail.db").display(),
            spool = dir.path().join("spool").display(),
        ),
    )
    .unwrap();
    let (mut child, addr) = spawn_serve(&cfg);

    let answered = kill_mid_load(
        &mut child,
        &format!("http://{addr}/upload"),
        "a",
        8,
        400,
        400,
    )
    .await;
    let stored_before = {
        let store = SqliteStore::open(dir.path().join("trail.db").to_str().unwrap())
            .await
            .unwrap();
        all_events(&store).await.len()
    };

    // Restart on the same files: the log is read back; then stop cleanly.
    let (mut again, addr) = spawn_serve(&cfg);
    let r = send(
        Method::POST,
        &format!("http://{addr}/upload"),
        &[("x-request-id", "after")],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let status = Command::new("kill")
        .args(["-TERM", &again.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(again.wait().unwrap().code(), Some(0));

    let store = SqliteStore::open(dir.path().join("trail.db").to_str().unwrap())
        .await
        .unwrap();
    let events = all_events(&store).await;
    let per_request = by_request(&events);
    let missing: Vec<&String> = answered
        .iter()
        .filter(|r| !per_request.contains_key(*r))
        .collect();
    eprintln!(
        "kill -9 under async load: {} acknowledged, {} events stored before the restart, \
         {} after; acknowledged without an event: {}",
        answered.len(),
        stored_before,
        events.len(),
        missing.len()
    );
    assert!(
        stored_before < answered.len(),
        "the kill left events only in memory (else this test proves nothing): {stored_before} \
         stored of {} acknowledged",
        answered.len()
    );
    assert!(
        missing.is_empty(),
        "{} acknowledged without an event, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let doubled: Vec<_> = per_request.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(doubled.is_empty(), "replayed twice: {doubled:?}");
    assert!(per_request.contains_key("after"));
    let report = verify::verify(&store, &trusted()).await.unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    let spool_left = std::fs::read_dir(dir.path().join("spool"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".log")
        })
        .count();
    assert_eq!(
        spool_left, 0,
        "a clean stop leaves no stored record to replay"
    );
}

#[tokio::test]
async fn three_writer_processes_on_one_postgres_trail_lose_nothing_and_verify() {
    let Some(url) = support::pg::url() else {
        return;
    };
    let schema = support::pg::schema(&url).await;
    let up = upstream::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let key = "42".repeat(32);
    let mut configs = Vec::new();
    let mut children = Vec::new();
    for i in 0..3 {
        let cfg = dir.path().join(format!("authtrail-{i}.yaml"));
        std::fs::write(
            &cfg,
            format!(
                "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\nupstream: http://{up}\n\
                 store:\n  url: \"{store}\"\n  flush_interval: 20ms\n  \
                 spool: {{ dir: {spool} }}\n  checkpoint: {{ signing_key: \"{key}\", events: 25 }}\n\
                 routes:\n{ROUTES}",
                up = up.addr,
                store = schema.store_url(),
                spool = dir.path().join(format!("spool-{i}")).display(),
            ),
        )
        .unwrap();
        children.push(spawn_serve(&cfg));
        configs.push(cfg);
    }

    const PER: usize = 40;
    let mut load = Vec::new();
    for (i, (_, addr)) in children.iter().enumerate() {
        for path in ["/echo-headers", "/upload"] {
            let url = format!("http://{addr}{path}");
            load.push(tokio::spawn(async move {
                for j in 0..PER {
                    let rid = format!("w{i}{path}-{j}");
                    let r = send(Method::POST, &url, &[("x-request-id", &rid)], Bytes::new())
                        .await
                        .unwrap();
                    assert_eq!(r.status, StatusCode::OK);
                }
            }));
        }
    }
    for l in load {
        l.await.unwrap();
    }
    for (child, _) in &mut children {
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
    for (mut child, _) in children {
        assert_eq!(child.wait().unwrap().code(), Some(0));
    }

    // Sync requests leave an attempt and a completed event, async ones a completed event.
    let want = 3 * PER * 2 + 3 * PER;
    let store = authtrail::store::postgres::PostgresStore::connect(schema.options())
        .await
        .unwrap();
    let events = all_events(&store).await;
    assert_eq!(events.len(), want);
    assert_eq!(
        events.iter().map(|e| e.id).collect::<HashSet<_>>().len(),
        want
    );
    let seqs: Vec<i64> = events.iter().map(|e| e.seq.unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    let mut chains = store.chains().await.unwrap();
    chains.sort();
    chains.dedup();
    assert_eq!(chains.len(), 3, "one chain per process");

    let out = Command::new(BIN)
        .args(["verify", "--config"])
        .arg(&configs[0])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.starts_with(&format!("ok: 3 chains, {want} events, ")),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_postgres_outage_spools_async_events_refuses_sync_ones_and_replays_them() {
    let Some(url) = support::pg::url() else {
        return;
    };
    let schema = support::pg::schema(&url).await;
    let relay = support::tcp_cut::Relay::start(schema.server_addr()).await;
    let up = upstream::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "upstream: http://{}\nstore:\n  url: \"{}\"\n  flush_interval: 20ms\n  sync_timeout: 3s\n  \
         spool: {{ dir: {} }}\nroutes:\n{ROUTES}",
        up.addr,
        schema.store_url_via(relay.addr),
        dir.path().join("spool").display()
    );
    let cfg = authtrail::config::load_str(&yaml, "test.yaml").unwrap();
    let store = authtrail::store::open(&cfg.store.url).await.unwrap();
    let fault = FaultStore::new(store); // never switched off: the relay is the outage here
    let sc = start(&yaml, fault.clone()).await;

    relay.cut();
    for i in 0..10 {
        let rid = format!("pg-out-{i}");
        let r = send(
            Method::POST,
            &format!("http://{}/upload", sc.addr),
            &[("x-request-id", &rid)],
            Bytes::from("x"),
        )
        .await
        .unwrap();
        assert_eq!(r.status, StatusCode::OK);
    }
    let started = Instant::now();
    let refused = send(
        Method::POST,
        &format!("http://{}/echo-headers", sc.addr),
        &[("x-request-id", "pg-sync")],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered within sync_timeout"
    );
    assert_eq!(
        up.requests(),
        10,
        "the sync request never reached the upstream"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while sc.readyz().await["spool_depth"].as_u64().unwrap_or(0) < 10 {
        assert!(Instant::now() < deadline, "events never reached the spool");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    relay.restore();
    // 10 async, the refused request's attempt and its 503 completed event.
    let events = wait_events(fault.as_ref(), 12).await;
    let summary = sc.stop().await;
    assert_eq!((summary.events.failed, summary.events.dropped), (0, 0));
    assert_eq!(events.len(), 12);
    assert_eq!(
        events.iter().map(|e| e.id).collect::<HashSet<_>>().len(),
        12
    );
    let report = verify::verify(fault.as_ref(), &verify::Options::default())
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}
