//! The fast half of the fault suite (the slow half is `scripts/faults.sh`): an upstream that
//! refuses, closes, resets mid-head or mid-body, stalls before or during its answer, lies about
//! its length or answers garbage — written here as a raw TCP server on 127.0.0.1. For each, the
//! client gets a clean status (502/504) or a body that breaks off, every mapped request leaves
//! exactly one event saying what went wrong, nothing is dropped, and the sidecar keeps serving.
//!
//! With `AUTHTRAIL_FAULT_REPORT=FILE` each scenario appends one JSON line (what the client saw,
//! the counts, what the trail holds) for the table in RELIABILITY.md.

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
            // Longer than the sidecar's upstream_response (300ms here).
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

/// What each mode must look like: (client sees, outcome, reason).
fn expected(mode: &str) -> (&'static [Seen], Outcome, Option<&'static str>) {
    use Seen::*;
    match mode {
        "ok" => (&[Status(200)], Outcome::Success, None),
        "close" | "reset-head" | "garbage" | "garbage-binary" | "huge-head" => {
            (&[Status(502)], Outcome::Error, Some("upstream_unreachable"))
        }
        "stall-head" => (&[Status(504)], Outcome::Error, Some("upstream_timeout")),
        "reset-body" | "short-body" | "stall-body" => {
            (&[BrokenBody(200)], Outcome::Error, Some("upstream_aborted"))
        }
        // The body fails before its first byte is sent on: the head is never written and the
        // connection closes.
        "bad-chunked" => (
            &[BrokenBody(200), NoResponse],
            Outcome::Error,
            Some("upstream_aborted"),
        ),
        other => panic!("unknown mode {other}"),
    }
}

#[tokio::test]
async fn a_misbehaving_upstream_never_costs_an_event_or_the_sidecar() {
    let up = spawn_misbehaving().await;
    let mut sc = harness::start(
        up,
        "timeouts: { upstream_response: 300ms, upstream_connect: 1s }\n",
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
        let (want_seen, want_outcome, want_reason) = expected(mode);
        let mut outcomes: HashMap<String, usize> = HashMap::new();
        for i in 0..K {
            let rid = format!("{mode}-{i}");
            let (n, outcome, reason, _) = by
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
                (*outcome, reason.as_deref()),
                (want_outcome, want_reason),
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
