//! The fast half of the fault suite (the slow half is `scripts/faults.sh`): an upstream that
//! refuses, closes, resets mid-head or mid-body, stalls before or during its answer, lies about
//! its length or answers garbage — written here as a raw TCP server on 127.0.0.1. For each, the
//! client gets a clean status (502/504) or a body that breaks off, every mapped request leaves
//! exactly one event saying what went wrong, nothing is dropped, and the sidecar keeps serving.
//!
//! Then the store side: `/readyz` while the store, the spool or both refuse writes; a SQLite
//! store made read-only under a running sidecar (`chattr +i`; skipped where that is not
//! possible), a PostgreSQL database turned read-only, and a full disk that has room again.
//!
//! With `AUTHTRAIL_FAULT_REPORT=FILE` each scenario appends one JSON line (what the client saw,
//! the counts, what the trail holds) for the table in docs/reliability.md.

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use authtrail::event::{AuditEvent, Outcome};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::harness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the misbehaving upstream answers, chosen by the request path's last segment.
const MODES: &[&str] = &[
    "ok",
    "close",
    "reset-head",
    "reset-body",
    "stall-head",
    "stall-body",
    "garbage",
    "garbage-binary",
    "bad-chunked",
    "bad-chunked-mid",
    "chunked-cut",
    "bad-status",
    "short-body",
    "huge-head",
];

/// Read a request head (bounded), so the answer comes after the request was seen.
async fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    // The small body the tests send arrived with the head or is left unread: either way the
    // answer below comes after the request was seen.
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Close with RST instead of FIN.
fn reset(s: TcpStream) {
    let _ = s.set_zero_linger();
    drop(s);
}

async fn misbehave(mut s: TcpStream) {
    let Some(head) = read_head(&mut s).await else {
        return;
    };
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let mode = path.rsplit('/').next().unwrap_or("");
    let ok_body = br#"{"user":{"id":"u-1"}}"#;
    match mode {
        "ok" => {
            let _ = s
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        ok_body.len()
                    )
                    .as_bytes(),
                )
                .await;
            let _ = s.write_all(ok_body).await;
        }
        "close" => {}
        "reset-head" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Le").await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            reset(s);
            return;
        }
        "reset-body" => {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"user\":")
                .await;
            let _ = s.flush().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            reset(s);
            return;
        }
        "stall-head" => {
            // Longer than the sidecar's upstream_response (1s here).
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        "stall-body" => {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
                .await;
            let _ = s.flush().await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        "garbage" => {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
        }
        "garbage-binary" => {
            let junk: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
            let _ = s.write_all(&junk).await;
        }
        "bad-chunked" => {
            let _ = s
                .write_all(
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nZZZ\r\nnot a chunk\r\n",
                )
                .await;
        }
        "bad-chunked-mid" => {
            // A valid first chunk the sidecar passes on, then a chunk-size line that is not hex:
            // the response to the client has started when the upstream stops speaking HTTP.
            let _ = s
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n8\r\n{\"user\":\r\n",
                )
                .await;
            let _ = s.flush().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = s.write_all(b"ZZZ\r\nnot a chunk\r\n").await;
            // Keep the connection open: the sidecar must act on the broken framing itself,
            // not wait for the close.
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        "chunked-cut" => {
            // A valid first chunk, then a clean close without the last chunk.
            let _ = s
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n8\r\n{\"user\":\r\n",
                )
                .await;
            let _ = s.flush().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        "bad-status" => {
            let _ = s
                .write_all(b"HTTP/1.1 2OO OK\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
        "short-body" => {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n0123456789")
                .await;
        }
        "huge-head" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n").await;
            for i in 0..2_000 {
                if s.write_all(format!("x-filler-{i}: {}\r\n", "v".repeat(100)).as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let _ = s.write_all(b"content-length: 0\r\n\r\n").await;
        }
        _ => {}
    }
    let _ = s.shutdown().await;
}

/// The misbehaving upstream: every connection is served by [`misbehave`].
async fn spawn_misbehaving() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(misbehave(s));
        }
    });
    addr
}

/// What the client saw: a status, and whether the body arrived whole.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Seen {
    Status(u16),
    /// The head arrived with this status, then the body broke off.
    BrokenBody(u16),
    /// No response at all.
    NoResponse,
}

impl Seen {
    fn label(&self) -> String {
        match self {
            Seen::Status(s) => s.to_string(),
            Seen::BrokenBody(s) => format!("{s} + body cut off"),
            Seen::NoResponse => "no response".to_string(),
        }
    }
}

async fn request(url: &str, rid: &str) -> Seen {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = Request::builder()
        .method(Method::POST)
        .uri(url)
        .header("x-request-id", rid)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{\"username\":\"alice\"}")))
        .unwrap();
    let fut = async {
        match client.request(req).await {
            Err(_) => Seen::NoResponse,
            Ok(resp) => {
                let status = resp.status().as_u16();
                match resp.into_body().collect().await {
                    Ok(_) => Seen::Status(status),
                    Err(_) => Seen::BrokenBody(status),
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or(Seen::NoResponse)
}

fn report(line: serde_json::Value) {
    println!("{line}");
    if let Ok(path) = std::env::var("AUTHTRAIL_FAULT_REPORT") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(f, "{line}").unwrap();
    }
}

const ROUTES: &str = "  - id: mapped\n    match: { method: POST, path: \"/m/*\" }\n    event: auth.login\n    actor: { request_body: /username }\n";

/// Per request id: how many events, and the (outcome, reason, status) of the first.
fn by_request(
    events: &[AuditEvent],
) -> HashMap<String, (usize, Outcome, Option<String>, Option<u16>)> {
    let mut m: HashMap<String, (usize, Outcome, Option<String>, Option<u16>)> = HashMap::new();
    for e in events {
        m.entry(e.http.request_id.clone())
            .and_modify(|v| v.0 += 1)
            .or_insert((1, e.outcome, e.reason.clone(), e.http.status));
    }
    m
}

/// What each mode must look like: (client sees, outcome, reason, the status on the event).
type Expected = (&'static [Seen], Outcome, Option<&'static str>, Option<u16>);

fn expected(mode: &str) -> Expected {
    use Seen::*;
    match mode {
        "ok" => (&[Status(200)], Outcome::Success, None, Some(200)),
        // Nothing came back: no connection, or it ended before a whole response head.
        "close" | "reset-head" => (
            &[Status(502)],
            Outcome::Error,
            Some("upstream_unreachable"),
            None,
        ),
        // Something came back, and it was not HTTP.
        "garbage" | "garbage-binary" | "huge-head" | "bad-status" => (
            &[Status(502)],
            Outcome::Error,
            Some("upstream_bad_response"),
            None,
        ),
        "stall-head" => (
            &[Status(504)],
            Outcome::Error,
            Some("upstream_timeout"),
            None,
        ),
        "reset-body" | "short-body" | "stall-body" | "chunked-cut" => (
            &[BrokenBody(200)],
            Outcome::Error,
            Some("upstream_aborted"),
            Some(200),
        ),
        // The response to the client has begun (head and first chunk): it must break off
        // visibly, never end as if complete, and never hang.
        "bad-chunked-mid" => (
            &[BrokenBody(200)],
            Outcome::Error,
            Some("upstream_bad_response"),
            Some(200),
        ),
        // The body fails before its first byte is sent on: the head may never be written, and
        // the connection closes.
        "bad-chunked" => (
            &[BrokenBody(200), NoResponse],
            Outcome::Error,
            Some("upstream_bad_response"),
            Some(200),
        ),
        other => panic!("unknown mode {other}"),
    }
}

#[tokio::test]
async fn a_misbehaving_upstream_never_costs_an_event_or_the_sidecar() {
    let up = spawn_misbehaving().await;
    let mut sc = harness::start(
        up,
        // 1 s: well under stall-head's 3 s, and room for a well-behaved answer on a loaded
        // machine (at 300 ms this test failed once on an event's outcome while the machine was
        // loaded; not reproduced in 10 runs since).
        "timeouts: { upstream_response: 1s, upstream_connect: 1s }\n",
        ROUTES,
    )
    .await;
    const K: usize = 6;
    let mut mapped_sent = 0;
    for mode in MODES {
        let started = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..K {
            let (m, u) = (sc.url(&format!("/m/{mode}")), sc.url(&format!("/u/{mode}")));
            let rid = format!("{mode}-{i}");
            tasks.push(tokio::spawn(async move {
                (
                    request(&m, &rid).await,
                    request(&u, &format!("{rid}-u")).await,
                )
            }));
        }
        let mut seen_mapped: HashMap<Seen, usize> = HashMap::new();
        let mut seen_unmapped: HashMap<Seen, usize> = HashMap::new();
        for t in tasks {
            let (m, u) = t.await.unwrap();
            *seen_mapped.entry(m).or_default() += 1;
            *seen_unmapped.entry(u).or_default() += 1;
        }
        mapped_sent += K;
        let elapsed = started.elapsed();

        let events = sc.wait_events(mapped_sent).await;
        let by = by_request(&events);
        let (want_seen, want_outcome, want_reason, want_status) = expected(mode);
        let mut outcomes: HashMap<String, usize> = HashMap::new();
        for i in 0..K {
            let rid = format!("{mode}-{i}");
            let (n, outcome, reason, status) = by
                .get(&rid)
                .unwrap_or_else(|| panic!("{mode}: no event for {rid}"));
            assert_eq!(*n, 1, "{mode}: {rid} stored {n} times");
            *outcomes
                .entry(format!(
                    "{}{}",
                    outcome.as_str(),
                    reason
                        .as_deref()
                        .map(|r| format!("/{r}"))
                        .unwrap_or_default()
                ))
                .or_default() += 1;
            assert_eq!(
                (*outcome, reason.as_deref(), *status),
                (want_outcome, want_reason, want_status),
                "{mode}: event of {rid}"
            );
        }
        assert!(
            by.keys().all(|k| !k.ends_with("-u")),
            "{mode}: an unmapped request was stored"
        );
        for (seen, n) in &seen_mapped {
            assert!(
                want_seen.contains(seen),
                "{mode}: the client saw {seen:?} ({n} times), want one of {want_seen:?}"
            );
        }
        // Unmapped requests stream through untouched, and break the same way.
        for (seen, n) in &seen_unmapped {
            assert!(
                want_seen.contains(seen),
                "{mode}, unmapped: the client saw {seen:?} ({n} times), want one of {want_seen:?}"
            );
        }
        report(serde_json::json!({
            "suite": "upstream",
            "scenario": mode,
            "requests": K,
            "client_mapped": seen_mapped.iter().map(|(s, n)| format!("{n}× {}", s.label())).collect::<Vec<_>>().join(", "),
            "client_unmapped": seen_unmapped.iter().map(|(s, n)| format!("{n}× {}", s.label())).collect::<Vec<_>>().join(", "),
            "events": K,
            "outcomes": outcomes,
            "duplicates": 0,
            "elapsed_ms": elapsed.as_millis() as u64,
        }));
    }
    // Still serving, and nothing was dropped or failed on the way.
    assert_eq!(request(&sc.url("/m/ok"), "after").await, Seen::Status(200));
    sc.wait_events(mapped_sent + 1).await;
    let summary = sc.stop().await;
    assert_eq!((summary.events.dropped, summary.events.failed), (0, 0));
}

#[tokio::test]
async fn an_upstream_that_refuses_connections_is_502_with_one_error_event_each() {
    // A port that was just free: nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut sc = harness::start(closed, "", ROUTES).await;
    const K: usize = 20;
    let mut tasks = Vec::new();
    for i in 0..K {
        let url = sc.url("/m/refused");
        tasks.push(tokio::spawn(async move {
            request(&url, &format!("refused-{i}")).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), Seen::Status(502));
    }
    let events = sc.wait_events(K).await;
    let by = by_request(&events);
    assert_eq!(by.len(), K);
    assert!(by.values().all(|(n, o, r, s)| *n == 1
        && *o == Outcome::Error
        && r.as_deref() == Some("upstream_unreachable")
        && s.is_none()));
    let summary = sc.stop().await;
    assert_eq!((summary.events.dropped, summary.events.failed), (0, 0));
    report(serde_json::json!({
        "suite": "upstream",
        "scenario": "refused",
        "requests": K,
        "client_mapped": format!("{K}× 502"),
        "client_unmapped": "",
        "events": K,
        "outcomes": { "error/upstream_unreachable": K },
        "duplicates": 0,
    }));
}

/// A tmpfs of `size` mounted on a fresh temp dir, unmounted on drop; `None` (after saying why)
/// where mounting is not allowed (not root, no CAP_SYS_ADMIN).
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: cannot mount a tmpfs here (needs root)");
            return None;
        }
        Some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

/// Found by the same soak: with stderr on the full disk, tracing-subscriber reported its failed
/// write with `eprintln!`, which panics when stderr fails too — in whichever task was logging.
/// The writer task died that way ("pipeline shut down" for every later event) while the proxy
/// kept serving. Logging must never take the trail down: a log line that cannot be written is
/// lost, and nothing else.
#[tokio::test]
async fn a_full_log_disk_does_not_stop_the_trail() {
    use authtrail::store::Query;

    let Some(fs) = Tmpfs::mount("64k") else {
        return;
    };
    let up = support::upstream::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trail.db");
    let (proxy, admin) = {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        (
            a.local_addr().unwrap().port(),
            b.local_addr().unwrap().port(),
        )
    };
    let config = dir.path().join("authtrail.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{proxy}\nadmin: {{ listen: \"127.0.0.1:{admin}\" }}\n\
             upstream: http://{}\nstore: {{ url: \"sqlite://{}\", flush_interval: 20ms }}\n\
             routes:\n  - id: echo\n    match: {{ path: /echo-headers }}\n    event: account.update\n",
            up.addr,
            db.display()
        ),
    )
    .unwrap();
    // stderr is a file on a file system without a free byte.
    let log = std::fs::File::create(fs.0.path().join("authtrail.log")).unwrap();
    let mut filler = std::fs::File::create(fs.0.path().join("filler")).unwrap();
    let chunk = vec![0u8; 4096];
    while filler.write_all(&chunk).is_ok() {}
    while filler.write_all(&chunk[..1]).is_ok() {}
    drop(filler);

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_authtrail"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("AUTHTRAIL_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", proxy)).await.is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("authtrail exited with its stderr on a full disk: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "authtrail did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _child = Kill(child);

    for i in 0..20 {
        let r = harness::send(
            Method::GET,
            &format!("http://127.0.0.1:{proxy}/echo-headers?n={i}"),
            &[],
            Bytes::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(r.status, 200, "request {i}");
    }
    let store = authtrail::store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let stored = store.query(&Query::default()).await.unwrap().len();
        if stored == 20 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{stored} of 20 events stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Found by the 10-minute soak of `scripts/bench.sh` when the machine's disk filled: the spool
/// created its first segment, the disk had no room for the segment's magic bytes, and the
/// half-made file stayed behind untracked — every later append then failed with "File exists"
/// and the spool refused events for good, also once the disk had room again.
#[tokio::test]
async fn a_spool_that_hit_a_full_disk_takes_events_once_there_is_room() {
    use authtrail::pipeline::spool::{Spool, SpoolConfig};
    use std::io::Write as _;
    use support::store_conformance::many;

    let Some(fs) = Tmpfs::mount("1m") else {
        return;
    };
    let dir = fs.0.path().join("spool");
    let mut spool = Spool::open(&SpoolConfig {
        max_bytes: 64 << 20,
        ..SpoolConfig::new(dir.clone())
    })
    .unwrap();
    // Fill the file system to the last byte.
    let filler_path = fs.0.path().join("filler");
    let mut filler = std::fs::File::create(&filler_path).unwrap();
    let chunk = vec![0u8; 4096];
    while filler.write_all(&chunk).is_ok() {}
    while filler.write_all(&chunk[..1]).is_ok() {}
    drop(filler);

    let events = many(3);
    let full = spool.append(&events);
    assert!(full.is_err(), "a full disk took a segment: {full:?}");
    std::fs::remove_file(&filler_path).unwrap();
    spool
        .append(&events)
        .expect("the spool takes events once the disk has room");
    assert_eq!(spool.depth(), 3);
    let replayed = spool.peek(10).unwrap();
    assert_eq!(
        replayed.iter().map(|e| e.id).collect::<Vec<_>>(),
        events.iter().map(|e| e.id).collect::<Vec<_>>()
    );
}

/// Found by `scripts/faults.sh disk-full`: a commit that failed on a full disk left SQLite's
/// writer connection inside a transaction sqlx still counted, so every later append failed with
/// "attempted to call begin_with at non-zero transaction depth" — the store never came back,
/// and the spool never drained, after the space did.
#[tokio::test]
async fn a_sqlite_store_recovers_when_a_full_disk_has_room_again() {
    use authtrail::store::sqlite::SqliteStore;
    use authtrail::store::EventStore;
    use support::store_conformance::many;

    let Some(fs) = Tmpfs::mount("8m") else {
        return;
    };
    let store = SqliteStore::open(fs.0.path().join("trail.db").to_str().unwrap())
        .await
        .unwrap();
    let events = many(400);
    store.append("disk", &events[..10], false).await.unwrap();
    // Fill the disk to the last byte.
    let filler = fs.0.path().join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    let mut failed = 0;
    for chunk in events[10..].chunks(39) {
        if store.append("disk", chunk, true).await.is_err() {
            failed += 1;
        }
    }
    assert!(failed > 0, "the disk never filled up");
    std::fs::remove_file(&filler).unwrap();
    // Room again: the very next append works, and everything not yet stored goes in once.
    let got = store.append("disk", &events[10..], true).await.unwrap();
    assert!(got.inserted > 0);
    let stored = store
        .query(&authtrail::store::Query {
            ascending: true,
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 400);
    let report =
        authtrail::store::verify::verify(&store, &authtrail::store::verify::Options::default())
            .await
            .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    store.close().await;
}

/// What a raw client reads from the sidecar for one request: every byte until the connection
/// ended, how it ended, and how long that took.
async fn raw_exchange(addr: SocketAddr, request: &str) -> (Vec<u8>, &'static str, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Err(_) => break "hang",
            Ok(Ok(0)) => break "eof",
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(_)) => break "reset",
        }
    };
    (got, end, started.elapsed())
}

/// Once the head and part of the body are on their way, an upstream that breaks its chunked
/// framing (or closes before the last chunk) must not leave the client with a response that looks
/// complete or with a connection that hangs: the sidecar resets the connection at once, which is
/// the only signal an HTTP/1.0 client (body read to the close) gets. The event says why.
#[tokio::test]
async fn a_response_that_breaks_after_it_began_is_reset_not_ended_or_left_hanging() {
    let up = spawn_misbehaving().await;
    let mut sc = harness::start(up, "timeouts: { upstream_response: 2s }\n", ROUTES).await;
    let cases = [
        ("bad-chunked-mid", "upstream_bad_response"),
        ("chunked-cut", "upstream_aborted"),
    ];
    let mut mapped = 0;
    for (mode, reason) in cases {
        for version in ["1.1", "1.0"] {
            for prefix in ["m", "u"] {
                let rid = format!("raw-{mode}-{version}-{prefix}");
                let req = format!(
                    "POST /{prefix}/{mode} HTTP/{version}\r\nhost: t\r\nx-request-id: {rid}\r\n\
                     content-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}"
                );
                let (got, end, took) = raw_exchange(sc.addr, &req).await;
                let text = String::from_utf8_lossy(&got);
                let what = format!(
                    "{mode} HTTP/{version} /{prefix}: ended by {end} after {took:?}, got {text:?}"
                );
                assert_eq!(end, "reset", "{what}");
                // The upstream keeps its connection open for 3s after the bad chunk: the sidecar
                // acted on the framing, not on the close.
                assert!(took < Duration::from_millis(2500), "{what}");
                assert!(
                    text.starts_with(&format!("HTTP/{version} 200 OK\r\n")),
                    "{what}"
                );
                assert!(
                    !text.contains("\r\n0\r\n\r\n"),
                    "a last chunk was sent: {what}"
                );
                if prefix == "m" {
                    mapped += 1;
                    let events = sc.wait_events(mapped).await;
                    let ev = events
                        .iter()
                        .find(|e| e.http.request_id == rid)
                        .unwrap_or_else(|| panic!("no event for {rid}"));
                    assert_eq!(
                        (ev.outcome, ev.reason.as_deref(), ev.http.status),
                        (Outcome::Error, Some(reason), Some(200)),
                        "{what}"
                    );
                }
            }
        }
    }
    // The sidecar still serves, and nothing was dropped.
    assert_eq!(
        request(&sc.url("/m/ok"), "raw-after").await,
        Seen::Status(200)
    );
    let summary = sc.stop().await;
    assert_eq!((summary.events.dropped, summary.events.failed), (0, 0));
    assert_eq!(by_request(&sc.events().await).len(), mapped + 1);
}

/// The config of a sidecar on `dir/trail.db` (wrapped in a `FaultStore` by the test) with its
/// spool in `spool` holding at most `spool_max`, in front of `upstream`; route `/m/*` is async.
fn store_fault_yaml(
    upstream: SocketAddr,
    dir: &std::path::Path,
    spool: &std::path::Path,
    spool_max: &str,
) -> String {
    format!(
        "upstream: http://{upstream}\nstore:\n  url: sqlite://{db}\n  flush_interval: 10ms\n  \
         batch_size: 1\n  spool: {{ dir: {spool}, max_bytes: {spool_max} }}\nroutes:\n{ROUTES}",
        db = dir.join("trail.db").display(),
        spool = spool.display(),
    )
}

async fn fault_store(dir: &std::path::Path) -> std::sync::Arc<support::fault::FaultStore> {
    let inner = authtrail::store::sqlite::SqliteStore::open(dir.join("trail.db").to_str().unwrap())
        .await
        .unwrap();
    support::fault::FaultStore::new(std::sync::Arc::new(inner))
}

/// `/readyz` answers "will a request now be recorded?": ready while the store takes writes;
/// still ready (`degraded`) while it does not but the spool does; 503 once the spool is full
/// too; ready again when the store is back and the spool has been replayed.
#[tokio::test]
async fn readyz_is_ready_while_the_store_or_the_spool_takes_events_and_503_when_neither_does() {
    let up = spawn_misbehaving().await;
    let dir = tempfile::tempdir().unwrap();
    let store = fault_store(dir.path()).await;
    let yaml = store_fault_yaml(up, dir.path(), &dir.path().join("spool"), "8KiB");
    let sc = support::fault::Running::start(&yaml, store.clone()).await;
    let url = format!("http://{}/m/ok", sc.addr);

    let (code, r) = sc.readyz().await;
    assert_eq!(
        (code, &r["status"], &r["store"], &r["spool"]),
        (200, &"ready".into(), &"ok".into(), &"ok".into()),
        "{r}"
    );
    assert_eq!(r["spool_max_bytes"], 8192, "{r}");

    // The store goes away: nothing written yet, so its read check says so; the spool (asked
    // with a probe write) takes events, so a request now is recorded.
    store.set_down(true);
    let (code, r) = sc.readyz().await;
    assert_eq!(
        (
            code,
            &r["status"],
            &r["store"],
            &r["store_error"],
            &r["spool"]
        ),
        (
            200,
            &"degraded".into(),
            &"down".into(),
            &"unreachable".into(),
            &"ok".into()
        ),
        "{r}"
    );

    // Requests keep coming: their events are spooled until the spool is full.
    let mut sent = 0;
    loop {
        assert_eq!(
            request(&url, &format!("spool-{sent}")).await,
            Seen::Status(200)
        );
        sent += 1;
        let (_, r) = sc
            .readyz_until("the event spooled or refused", |_, r| {
                r["events"]["spooled"].as_u64().unwrap() + r["events"]["failed"].as_u64().unwrap()
                    == sent
            })
            .await;
        if r["events"]["failed"] != 0 {
            break;
        }
        let (code, r) = sc.readyz().await;
        assert_eq!(
            (code, &r["status"], &r["store_error"], &r["spool"]),
            (
                200,
                &"degraded".into(),
                &"write_failed".into(),
                &"ok".into()
            ),
            "{r}"
        );
        assert!(sent < 100, "the 8 KiB spool never filled up: {r}");
    }
    let spooled = sent - 1;
    assert!(spooled >= 2, "a few events fit in 8 KiB: {spooled}");
    let (code, r) = sc.readyz().await;
    assert_eq!(
        (code, &r["status"], &r["store"], &r["spool"]),
        (503, &"unavailable".into(), &"down".into(), &"full".into()),
        "{r}"
    );
    assert_eq!(r["spool_depth"], spooled, "{r}");
    assert_eq!(r["events"]["failed"], 1, "{r}");

    // The store is back: the spool is replayed (no new request needed) and readiness returns.
    store.set_down(false);
    let (code, r) = sc
        .readyz_until("ready with an empty spool", |code, r| {
            code == 200 && r["status"] == "ready" && r["spool_depth"] == 0
        })
        .await;
    assert_eq!((code, &r["spool"]), (200, &"ok".into()), "{r}");
    assert_eq!(r["events"]["replayed"], spooled, "{r}");
    assert_eq!(
        request(&url, "after").await,
        Seen::Status(200),
        "still serving"
    );
    let summary = sc.stop().await;
    assert_eq!(
        (summary.events.written, summary.events.failed),
        (spooled + 1, 1)
    );
}

/// A spool that cannot write (its disk is full) while the store is down: 503. When the disk has
/// room again readiness comes back by itself — a probe write, no request needed (none would
/// arrive while the sidecar reports unready).
#[tokio::test]
async fn readyz_notices_a_spool_disk_with_room_again_without_traffic() {
    let Some(fs) = Tmpfs::mount("1m") else {
        return;
    };
    let up = spawn_misbehaving().await;
    let dir = tempfile::tempdir().unwrap();
    let store = fault_store(dir.path()).await;
    let spool = fs.0.path().join("spool");
    let yaml = store_fault_yaml(up, dir.path(), &spool, "64MiB");
    let sc = support::fault::Running::start(&yaml, store.clone()).await;
    let url = format!("http://{}/m/ok", sc.addr);

    let filler = fs.0.path().join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    store.set_down(true);
    assert_eq!(request(&url, "lost").await, Seen::Status(200));
    let (code, r) = sc
        .readyz_until("the event refused", |_, r| r["events"]["failed"] == 1)
        .await;
    assert_eq!(
        (code, &r["status"], &r["store_error"], &r["spool"]),
        (
            503,
            &"unavailable".into(),
            &"write_failed".into(),
            &"failing".into()
        ),
        "{r}"
    );

    std::fs::remove_file(&filler).unwrap();
    let started = Instant::now();
    let (code, r) = sc
        .readyz_until("degraded once the disk has room", |code, _| code == 200)
        .await;
    assert_eq!(
        (&r["status"], &r["store"], &r["spool"]),
        (&"degraded".into(), &"down".into(), &"ok".into()),
        "{code} {r}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "{r}");
    // A leftover probe file would be mistaken for nothing, but must not pile up.
    let leftovers: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("probe-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    store.set_down(false);
    assert_eq!(request(&url, "back").await, Seen::Status(200));
    sc.readyz_until("ready", |code, r| code == 200 && r["status"] == "ready")
        .await;
    let summary = sc.stop().await;
    assert_eq!((summary.events.written, summary.events.failed), (1, 1));
}

/// Files made immutable (`chattr +i`) until dropped: even root's writes through descriptors
/// already open then fail with EPERM — a read-only store under a running sidecar. `None` (after
/// saying why) where the file system or the user cannot do that.
struct Immutable(Vec<std::path::PathBuf>);

impl Immutable {
    fn set(files: &[std::path::PathBuf]) -> Option<Immutable> {
        let guard = Immutable(files.to_vec());
        let ok = std::process::Command::new("chattr")
            .arg("+i")
            .args(files)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: cannot chattr +i here (needs root on ext4, xfs or btrfs)");
            return None;
        }
        Some(guard)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .args(&self.0)
            .status();
    }
}

const RW_ROUTES: &str = "  - id: mapped\n    match: { method: POST, path: \"/m/*\" }\n    event: auth.login\n    actor: { request_body: /username }\n  - id: sync\n    match: { method: POST, path: \"/s/*\" }\n    event: account.deactivate\n    delivery: sync\n";

/// The SQLite database and its WAL become immutable under a running sidecar (a read-only store:
/// every write fails with EPERM). Async requests are answered and their events spooled; sync
/// requests get 503 and are not forwarded; `/readyz` stays ready (`degraded`: the spool takes
/// the events). Once the files are writable again the spool is replayed without any new
/// request, every event once, and the chain verifies. This found the writer reconnecting after
/// the failed commit into a connection SQLite had silently opened read-only, which refused every
/// write for good: the store never came back.
#[tokio::test]
async fn a_read_only_sqlite_store_spools_async_events_refuses_sync_ones_and_recovers() {
    let up = spawn_misbehaving().await;
    let mut sc = harness::start(up, "  sync_timeout: 1s\n", RW_ROUTES).await;
    let (m, s) = (sc.url("/m/ok"), sc.url("/s/ok"));
    for i in 0..3 {
        assert_eq!(request(&m, &format!("before-{i}")).await, Seen::Status(200));
        assert_eq!(
            request(&s, &format!("before-s-{i}")).await,
            Seen::Status(200)
        );
    }
    sc.wait_events(3 + 3 * 2).await;
    let wal = sc.db.with_extension("db-wal");
    assert!(wal.exists(), "no WAL file at {}", wal.display());
    let Some(ro) = Immutable::set(&[sc.db.clone(), wal]) else {
        sc.stop().await;
        return;
    };
    let admin = format!("http://{}/readyz", sc.admin);
    const N: usize = 20;
    let started = Instant::now();
    for i in 0..N {
        assert_eq!(request(&m, &format!("ro-{i}")).await, Seen::Status(200));
    }
    let async_took = started.elapsed();
    let mut refused = 0;
    for i in 0..3 {
        match request(&s, &format!("ro-s-{i}")).await {
            Seen::Status(503) => refused += 1,
            other => panic!("a sync request with a read-only store: {other:?}"),
        }
    }
    let r = harness::send(Method::GET, &admin, &[], Bytes::new())
        .await
        .unwrap();
    let body = r.json();
    assert_eq!(
        (
            r.status.as_u16(),
            &body["status"],
            &body["store_error"],
            &body["spool"]
        ),
        (
            200,
            &"degraded".into(),
            &"write_failed".into(),
            &"ok".into()
        ),
        "{body}"
    );
    let spooled_during = body["spool_depth"].as_u64().unwrap();
    drop(ro);

    // Writable again: the spool drains into the store without any new request.
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let r = harness::send(Method::GET, &admin, &[], Bytes::new())
            .await
            .unwrap();
        let body = r.json();
        if body["status"] == "ready" && body["spool_depth"] == 0 && body["queue_depth"] == 0 {
            break body;
        }
        assert!(Instant::now() < deadline, "never recovered: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let summary = sc.stop().await;
    let events = sc.events().await;
    let mut completed: HashMap<&str, usize> = HashMap::new();
    for e in &events {
        if e.stage == authtrail::event::Stage::Completed {
            *completed.entry(e.http.request_id.as_str()).or_default() += 1;
        }
    }
    for i in 0..N {
        assert_eq!(
            completed.get(format!("ro-{i}").as_str()),
            Some(&1),
            "ro-{i}"
        );
    }
    let refusals = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("audit_unavailable"))
        .count();
    assert_eq!(refusals, refused, "one audit_unavailable event per 503");
    assert!(completed.values().all(|n| *n == 1), "an event stored twice");
    assert_eq!((summary.events.dropped, summary.events.failed), (0, 0));
    let store = authtrail::store::sqlite::SqliteStore::open(sc.db.to_str().unwrap())
        .await
        .unwrap();
    let verified =
        authtrail::store::verify::verify(&store, &authtrail::store::verify::Options::default())
            .await
            .unwrap();
    assert!(verified.ok(), "{:?}", verified.problems);
    report(serde_json::json!({
        "suite": "readonly",
        "scenario": "sqlite-readonly-test",
        "async_requests": N,
        "async_answered_200_in_ms": async_took.as_millis() as u64,
        "sync_requests": 3,
        "sync_503": refused,
        "spool_depth_during": spooled_during,
        "replayed": body["events"]["replayed"],
        "events_stored": events.len(),
    }));
}

/// A database of its own on the test server (`ALTER DATABASE` must not touch the shared one),
/// dropped with everything connected to it when this is dropped.
struct PgDatabase {
    server: String,
    name: String,
}

impl PgDatabase {
    async fn create(server: &str) -> PgDatabase {
        let name = format!("authtrail_ro_{}", uuid::Uuid::now_v7().simple());
        let admin = sqlx::PgPool::connect(server).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap_or_else(|e| panic!("the test server must allow CREATE DATABASE: {e}"));
        admin.close().await;
        PgDatabase {
            server: server.to_string(),
            name,
        }
    }

    fn url(&self) -> String {
        let (base, rest) = self.server.rsplit_once('/').unwrap();
        let query = rest
            .split_once('?')
            .map_or(String::new(), |(_, q)| format!("?{q}"));
        format!("{base}/{}{query}", self.name)
    }

    /// Run `sql` on the server (as the test server's user, from outside the database).
    async fn admin(&self, sql: String) -> i64 {
        let admin = sqlx::PgPool::connect(&self.server).await.unwrap();
        let n: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_optional(&admin)
            .await
            .unwrap()
            .flatten();
        admin.close().await;
        n.unwrap_or(0)
    }

    /// New sessions of the database are read-only (or not), and the current ones are cut, so
    /// the store's pool reconnects into the new default: a failover to a standby and back.
    async fn set_read_only(&self, on: bool) -> i64 {
        let name = &self.name;
        let set = if on {
            format!("ALTER DATABASE {name} SET default_transaction_read_only = on")
        } else {
            format!("ALTER DATABASE {name} RESET default_transaction_read_only")
        };
        self.admin(set).await;
        if !on {
            // Back to writable without cutting anyone: the store must notice by itself.
            return 0;
        }
        self.admin(format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ))
        .await
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        support::pg::run_sql_from_drop(
            self.server.clone(),
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// A PostgreSQL store whose sessions turn read-only (`default_transaction_read_only`, as on a
/// standby after a failover) refuses appends with SQLSTATE 25006. Once new sessions may write
/// again the store takes appends again by itself: a writer connection that saw 25006 is not
/// reused (it would keep its read-only default for its whole life, so the store never came
/// back: found by this test).
#[tokio::test]
async fn a_postgres_store_that_turned_read_only_takes_writes_again_when_the_database_does() {
    use authtrail::store::EventStore;
    let Some(server) = support::pg::url() else {
        return;
    };
    let db = PgDatabase::create(&server).await;
    let store = authtrail::store::postgres::PostgresStore::open(&db.url())
        .await
        .unwrap();
    let events = support::store_conformance::many(30);
    assert_eq!(
        store
            .append("ro", &events[..10], false)
            .await
            .unwrap()
            .inserted,
        10
    );
    assert!(
        db.set_read_only(true).await > 0,
        "no session of the store was cut"
    );
    for _ in 0..3 {
        let err = store
            .append("ro", &events[10..20], false)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("read-only transaction"), "{err}");
    }
    db.set_read_only(false).await;
    let got = store.append("ro", &events[10..20], false).await;
    assert_eq!(
        got.map(|a| a.inserted).ok(),
        Some(10),
        "the first append after"
    );
    assert_eq!(
        store
            .append("ro", &events[20..], true)
            .await
            .unwrap()
            .inserted,
        10
    );
    let report =
        authtrail::store::verify::verify(&store, &authtrail::store::verify::Options::default())
            .await
            .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    store.close().await;
}

/// A client that hangs up while its `sync` request waits for the attempt's commit: hyper drops
/// the request, the upstream never sees it, and the trail has the attempt (committed after
/// all) and its completion, `client_aborted` without a status, under the same request id.
#[tokio::test]
async fn a_sync_request_abandoned_before_forwarding_completes_its_attempt_and_is_not_sent() {
    let Gated {
        up,
        _dir,
        inner,
        store,
        sc,
    } = Gated::start("").await;
    let entered = store.entered.notified();
    let mut s = TcpStream::connect(sc.addr).await.unwrap();
    s.write_all(
        b"POST /s/1 HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nx-request-id: left-1\r\n\r\n{}",
    )
    .await
    .unwrap();
    // The attempt is in the store, held at the gate: hang up and let hyper notice.
    tokio::time::timeout(Duration::from_secs(10), entered)
        .await
        .expect("the attempt reached the store");
    drop(s);
    tokio::time::sleep(Duration::from_millis(200)).await;
    store.gate.as_ref().unwrap().add_permits(1_000);
    let summary = sc.stop().await;
    assert_eq!(
        up.requests(),
        0,
        "a request whose client left was forwarded"
    );
    assert_eq!(summary.events.dropped, 0);
    let evs = stored(inner.as_ref()).await;
    let got: Vec<_> = evs
        .iter()
        .map(|e| {
            (
                e.http.request_id.as_str(),
                e.stage,
                e.outcome,
                e.reason.as_deref(),
                e.http.status,
            )
        })
        .collect();
    use authtrail::event::Stage;
    assert_eq!(
        got,
        vec![
            ("left-1", Stage::Attempt, Outcome::Unknown, None, None),
            (
                "left-1",
                Stage::Completed,
                Outcome::Error,
                Some("client_aborted"),
                None
            ),
        ]
    );
}

/// A client that hangs up while its mapped request waits for a place in the writer's full
/// queue: hyper drops the request before its exchange opened. It is never forwarded, has no
/// event, and is counted (`authtrail_exchanges_abandoned_total{when="before_admission"}`); the
/// requests before it keep their events.
#[tokio::test]
async fn a_request_abandoned_while_waiting_for_queue_room_is_counted_and_not_sent() {
    let Gated {
        up,
        _dir,
        inner,
        store,
        sc,
    } = Gated::start("  queue_capacity: 1\n  queue_wait: 20s\n").await;
    let before = harness::abandoned(sc.admin, "before_admission").await;
    let url = format!("http://{}/m/1", sc.addr);
    // The writer takes the first event and is held at the gate; the second fills the queue.
    // (The test upstream answers /m/1 with its 404: any answer makes an event.)
    let entered = store.entered.notified();
    assert_eq!(request(&url, "held-1").await, Seen::Status(404));
    tokio::time::timeout(Duration::from_secs(10), entered)
        .await
        .expect("the first event reached the store");
    assert_eq!(request(&url, "queued-2").await, Seen::Status(404));
    // The third waits for room (queue_wait 20 s); its client hangs up.
    let mut s = TcpStream::connect(sc.addr).await.unwrap();
    s.write_all(b"POST /m/1 HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 20\r\nx-request-id: left-3\r\n\r\n{\"username\":\"alice\"}")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(s);
    let mut counted = 0.0;
    for _ in 0..200 {
        counted = harness::abandoned(sc.admin, "before_admission").await - before;
        if counted >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(counted, 1.0);
    store.gate.as_ref().unwrap().add_permits(1_000);
    let summary = sc.stop().await;
    assert_eq!(up.requests(), 2, "the abandoned request was forwarded");
    assert_eq!((summary.events.written, summary.events.dropped), (2, 0));
    let evs = stored(inner.as_ref()).await;
    let ids: Vec<_> = evs.iter().map(|e| e.http.request_id.as_str()).collect();
    assert_eq!(ids, ["held-1", "queued-2"]);
}

/// A sidecar in front of the test upstream on a SQLite store behind a gate (`FaultStore::gated`:
/// the writer's appends wait until the test adds permits), with [`RW_ROUTES`];
/// `store_yaml` adds lines to `store:`.
struct Gated {
    up: support::upstream::TestUpstream,
    _dir: tempfile::TempDir,
    inner: std::sync::Arc<dyn authtrail::store::EventStore>,
    store: std::sync::Arc<support::fault::FaultStore>,
    sc: support::fault::Running,
}

impl Gated {
    async fn start(store_yaml: &str) -> Gated {
        let up = support::upstream::spawn().await;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("trail.db");
        let inner = authtrail::store::sqlite::SqliteStore::open(db.to_str().unwrap())
            .await
            .unwrap();
        let inner: std::sync::Arc<dyn authtrail::store::EventStore> = std::sync::Arc::new(inner);
        let store = support::fault::FaultStore::gated(inner.clone());
        let yaml = format!(
            "upstream: http://{}\nstore:\n  url: sqlite://{}\n  flush_interval: 10ms\n{store_yaml}routes:\n{RW_ROUTES}",
            up.addr,
            db.display(),
        );
        let sc = support::fault::Running::start(&yaml, store.clone()).await;
        Gated {
            up,
            _dir: dir,
            inner,
            store,
            sc,
        }
    }
}

/// Every event in `store`, oldest first.
async fn stored(store: &dyn authtrail::store::EventStore) -> Vec<AuditEvent> {
    store
        .query(&authtrail::store::Query {
            ascending: true,
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
}
