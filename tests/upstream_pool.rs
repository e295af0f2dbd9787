//! The upstream connection pool seen from outside: the sidecar in-process on 127.0.0.1:0 in
//! front of an upstream that counts the connections it accepts and still has open.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use support::harness::{self, send};
use support::jwks_server::FIX;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const ROUTES: &str =
    "  - id: login\n    match: { method: POST, path: /login }\n    event: auth.login\n";

#[derive(Clone, Default)]
struct Counts {
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    /// The TLS server name each connection was opened with (`-` without SNI).
    sni: Arc<Mutex<Vec<String>>>,
}

impl Counts {
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

struct Options {
    /// `/hold` answers once this many `/hold` requests are waiting.
    hold: usize,
    /// Close a connection that has been idle this long (hyper's header-read timeout).
    close_idle_after: Option<Duration>,
    tls: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            hold: 1,
            close_idle_after: None,
            tls: false,
        }
    }
}

/// A hyper HTTP/1.1 upstream answering `ok`, counting what it sees.
async fn upstream(opts: Options) -> (SocketAddr, Counts) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = Counts::default();
    let barrier = Arc::new(tokio::sync::Barrier::new(opts.hold));
    let acceptor = opts.tls.then(|| {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(format!("{FIX}server.pem"))
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
        let key = PrivateKeyDer::from_pem_file(format!("{FIX}server.key.pem")).unwrap();
        let cfg = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
    });
    let c = counts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            c.accepted.fetch_add(1, Ordering::SeqCst);
            c.open.fetch_add(1, Ordering::SeqCst);
            let (c, barrier, acceptor) = (c.clone(), barrier.clone(), acceptor.clone());
            tokio::spawn(async move {
                let requests = c.requests.clone();
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    requests.fetch_add(1, Ordering::SeqCst);
                    let barrier = barrier.clone();
                    async move {
                        if req.uri().path() == "/hold" {
                            barrier.wait().await;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok"))))
                    }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                if let Some(d) = opts.close_idle_after {
                    builder.timer(TokioTimer::new()).header_read_timeout(d);
                }
                match acceptor {
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                    }
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(s).await {
                            let name = tls.get_ref().1.server_name().unwrap_or("-").to_string();
                            c.sni.lock().unwrap().push(name);
                            let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                        }
                    }
                }
                c.open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, counts)
}

/// Wait (at most 10 s) until `cond` holds.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn get(sc: &harness::Sidecar, path: &str) -> u16 {
    send(Method::GET, &sc.url(path), &[], Bytes::new())
        .await
        .unwrap()
        .status
        .as_u16()
}

#[tokio::test]
async fn sequential_requests_share_one_upstream_connection() {
    let (addr, up) = upstream(Options::default()).await;
    let mut sc = harness::start(addr, "", ROUTES).await;
    for i in 0..20 {
        // Each on a new client connection; mapped and unmapped alike.
        let status = if i % 2 == 0 {
            get(&sc, "/unmapped").await
        } else {
            send(Method::POST, &sc.url("/login"), &[], Bytes::from("{}"))
                .await
                .unwrap()
                .status
                .as_u16()
        };
        assert_eq!(status, 200);
    }
    assert_eq!(up.requests(), 20);
    assert_eq!(up.accepted(), 1);
    sc.stop().await;
    assert_eq!(sc.events().await.len(), 10);
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_costs_no_request() {
    let (addr, up) = upstream(Options {
        close_idle_after: Some(Duration::from_millis(100)),
        ..Options::default()
    })
    .await;
    let mut sc = harness::start(addr, "", ROUTES).await;
    for round in 1..=3 {
        assert_eq!(get(&sc, "/a").await, 200);
        until("the upstream closed the idle connection", || up.open() == 0).await;
        assert_eq!(up.accepted(), round);
    }
    assert_eq!(up.requests(), 3);
    sc.stop().await;
}

/// An upstream that answers one request per connection with `answer`, then keeps the
/// connection open without reading: a request sent on it again would never be answered.
async fn one_answer_upstream(answer: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            a.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut b = [0u8; 1];
                    if s.read_exact(&mut b).await.is_err() {
                        return;
                    }
                    head.push(b[0]);
                }
                let _ = s.write_all(answer).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn connection_close_and_http10_answers_are_not_reused() {
    let answers: [&'static [u8]; 2] = [
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
    ];
    for answer in answers {
        let (addr, accepted) = one_answer_upstream(answer).await;
        let mut sc = harness::start(addr, "timeouts: { upstream_response: 2s }\n", ROUTES).await;
        for n in 1..=3 {
            assert_eq!(
                get(&sc, "/a").await,
                200,
                "{}",
                String::from_utf8_lossy(answer)
            );
            assert_eq!(accepted.load(Ordering::SeqCst), n);
        }
        sc.stop().await;
    }
}

#[tokio::test]
async fn concurrent_requests_open_parallel_connections_and_reuse_them() {
    // Each round holds every response until all 8 requests are at the upstream: 8 connections
    // at once, then the same 8 again.
    let (addr, up) = upstream(Options {
        hold: 8,
        ..Options::default()
    })
    .await;
    let mut sc = harness::start(addr, "", ROUTES).await;
    for _ in 0..2 {
        let url = sc.url("/hold");
        let all = (0..8).map(|_| {
            let url = url.clone();
            tokio::spawn(async move { send(Method::GET, &url, &[], Bytes::new()).await })
        });
        for r in futures_util::future::join_all(all).await {
            assert_eq!(r.unwrap().unwrap().status, 200);
        }
        assert_eq!(up.accepted(), 8);
    }
    assert_eq!(up.requests(), 16);
    sc.stop().await;
}

#[tokio::test]
async fn no_more_than_64_upstream_connections_stay_open() {
    let n = 70;
    let (addr, up) = upstream(Options {
        hold: n,
        ..Options::default()
    })
    .await;
    let mut sc = harness::start(addr, "", ROUTES).await;
    let url = sc.url("/hold");
    let all = (0..n).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { send(Method::GET, &url, &[], Bytes::new()).await })
    });
    for r in futures_util::future::join_all(all).await {
        assert_eq!(r.unwrap().unwrap().status, 200);
    }
    assert_eq!(up.accepted(), n);
    until("the surplus is closed", || up.open() == 64).await;
    // And it stays at 64: kept, not closed one by one.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(up.open(), 64);
    sc.stop().await;
}

#[tokio::test]
async fn idle_upstream_connections_close_after_the_idle_timeout() {
    let (addr, up) = upstream(Options::default()).await;
    let mut sc = harness::start(addr, "timeouts: { idle: 300ms }\n", ROUTES).await;
    let sent = Instant::now();
    assert_eq!(get(&sc, "/a").await, 200);
    assert_eq!(up.open(), 1);
    until("the idle connection is closed", || up.open() == 0).await;
    let after = sent.elapsed();
    assert!(
        after >= Duration::from_millis(300),
        "closed after {after:?}"
    );
    assert_eq!(get(&sc, "/a").await, 200);
    assert_eq!(up.accepted(), 2);
    sc.stop().await;
}

#[tokio::test]
async fn an_https_upstream_keeps_its_tls_connection_and_gets_the_server_name() {
    let (addr, up) = upstream(Options {
        tls: true,
        ..Options::default()
    })
    .await;
    for host in ["localhost", "127.0.0.1"] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let yaml = format!(
            "upstream: https://{host}:{}\nupstream_tls: {{ ca_file: {FIX}ca.pem }}\nstore: {{ url: \"sqlite://{}\" }}\nroutes:\n{ROUTES}",
            addr.port(),
            db.display()
        );
        let cfg = authtrail::config::load_str(&yaml, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
        let mut sc = harness::start_config(cfg, db, dir).await;
        for _ in 0..5 {
            assert_eq!(get(&sc, "/a").await, 200);
        }
        sc.stop().await;
    }
    assert_eq!(up.requests(), 10);
    assert_eq!(up.accepted(), 2, "one TLS connection per sidecar");
    // A DNS name is sent as SNI (and verified); an IP address is verified and not sent.
    assert_eq!(*up.sni.lock().unwrap(), ["localhost", "-"]);
}

#[tokio::test]
async fn a_failed_upstream_request_is_logged_with_its_whole_error_chain() {
    // A port nobody listens on: bound, then closed.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut sc = harness::start(addr, "", ROUTES).await;
    let r = send(
        Method::GET,
        &sc.url("/a"),
        &[("x-request-id", "pool-log-1")],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["message"], "upstream unreachable");
    sc.stop().await;
    let logs = harness::captured_logs();
    let line = logs
        .lines()
        .find(|l| l.contains("pool-log-1") && l.contains("upstream request failed"))
        .unwrap_or_else(|| panic!("no log line in:\n{logs}"));
    assert!(line.contains("reason=\"upstream_unreachable\""), "{line}");
    assert!(
        line.contains(&format!("error=connect to {addr}: Connection refused")),
        "{line}"
    );
}
