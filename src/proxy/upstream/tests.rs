//! The pool against real sockets on 127.0.0.1 (a hyper upstream that counts its connections),
//! and against an in-memory connection where the test plays the upstream byte by byte, to
//! close it at exactly the moment a case needs.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// A test upstream: `GET /stream` sends its head and a first chunk, then the rest when `release`
/// gives a permit; anything else answers `ok` (with `Connection: close` on `/close`).
struct Upstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    /// One permit lets one `/stream` body finish.
    release: Arc<tokio::sync::Semaphore>,
}

async fn upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = Upstream {
        addr: listener.local_addr().unwrap(),
        accepted: Arc::default(),
        open: Arc::default(),
        requests: Arc::default(),
        release: Arc::new(tokio::sync::Semaphore::new(0)),
    };
    let (accepted, open, requests, release) = (
        up.accepted.clone(),
        up.open.clone(),
        up.requests.clone(),
        up.release.clone(),
    );
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            accepted.fetch_add(1, Ordering::SeqCst);
            open.fetch_add(1, Ordering::SeqCst);
            let (open, requests, release) = (open.clone(), requests.clone(), release.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    requests.fetch_add(1, Ordering::SeqCst);
                    let release = release.clone();
                    async move {
                        type Chunk = Result<Frame<Bytes>, Infallible>;
                        let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(2);
                        let body = StreamBody::new(tokio_stream(rx));
                        let mut resp = Response::new(body);
                        match req.uri().path() {
                            "/stream" => {
                                tx.send(Ok(Frame::data(Bytes::from("first ")))).await.ok();
                                tokio::spawn(async move {
                                    release.acquire().await.unwrap().forget();
                                    tx.send(Ok(Frame::data(Bytes::from("last")))).await.ok();
                                });
                            }
                            path => {
                                if path == "/close" {
                                    resp.headers_mut().insert(
                                        header::CONNECTION,
                                        HeaderValue::from_static("close"),
                                    );
                                }
                                resp.headers_mut()
                                    .insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
                                tx.send(Ok(Frame::data(Bytes::from("ok")))).await.ok();
                            }
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    up
}

/// An mpsc receiver as a stream of frames (without a stream crate).
fn tokio_stream<T>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send
where
    T: Send,
{
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn pool(addr: SocketAddr, idle: Duration) -> Pool {
    let uri: Uri = format!("http://{addr}").parse().unwrap();
    Pool::new(&uri, None, Duration::from_secs(2), idle)
}

fn get(path: &str) -> Request<ProxyBody> {
    Request::get(path).body(ProxyBody::empty()).unwrap()
}

async fn text(resp: Response<Incoming>) -> String {
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// Wait (at most 5 s) until `cond` holds.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn sequential_requests_share_one_connection() {
    let up = upstream().await;
    let pool = pool(up.addr, Duration::from_secs(60));
    for _ in 0..10 {
        assert_eq!(text(pool.send(get("/")).await.unwrap()).await, "ok");
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(up.requests.load(Ordering::SeqCst), 10);
    assert_eq!(pool.held(), 1);
}

#[tokio::test]
async fn a_connection_still_reading_its_response_is_not_handed_out() {
    let up = upstream().await;
    let pool = pool(up.addr, Duration::from_secs(60));
    let streaming = pool.send(get("/stream")).await.unwrap();
    // Back on the stack at once, but busy until its body is read.
    assert_eq!(pool.held(), 1);
    assert!(pool.shared.checkout().is_none());
    assert_eq!(pool.held(), 1, "a busy connection is kept, not dropped");
    // Another request meanwhile gets a connection of its own, without waiting.
    assert_eq!(text(pool.send(get("/")).await.unwrap()).await, "ok");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
    up.release.add_permits(1);
    assert_eq!(text(streaming).await, "first last");
    // Ready once hyper has seen the end of the body: both connections are reused now.
    until("both connections are ready", || {
        let idle = pool.shared.lock();
        idle.stack.len() == 2 && idle.stack.iter().all(|e| e.sender.is_ready())
    })
    .await;
    let (a, b) = tokio::join!(pool.send(get("/")), pool.send(get("/")));
    assert_eq!(text(a.unwrap()).await, "ok");
    assert_eq!(text(b.unwrap()).await, "ok");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn connection_close_is_not_put_back() {
    let up = upstream().await;
    let pool = pool(up.addr, Duration::from_secs(60));
    for _ in 0..3 {
        assert_eq!(text(pool.send(get("/close")).await.unwrap()).await, "ok");
        assert_eq!(pool.held(), 0);
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let up = upstream().await;
    let pool = pool(up.addr, Duration::from_millis(200));
    let sent = Instant::now();
    assert_eq!(text(pool.send(get("/")).await.unwrap()).await, "ok");
    assert_eq!(up.open.load(Ordering::SeqCst), 1);
    until("the upstream sees the connection closed", || {
        up.open.load(Ordering::SeqCst) == 0
    })
    .await;
    assert!(sent.elapsed() >= Duration::from_millis(200), "closed early");
    assert_eq!(pool.held(), 0);
    assert!(
        !pool.shared.lock().reaper,
        "the reaper ends with the stack empty"
    );
    // The next connection gets a reaper again.
    assert_eq!(text(pool.send(get("/")).await.unwrap()).await, "ok");
    until("the second connection is closed too", || {
        up.open.load(Ordering::SeqCst) == 0
    })
    .await;
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_dropped_pool_closes_its_connections() {
    let up = upstream().await;
    let pool = pool(up.addr, Duration::from_secs(60));
    assert_eq!(text(pool.send(get("/")).await.unwrap()).await, "ok");
    assert_eq!(up.open.load(Ordering::SeqCst), 1);
    drop(pool);
    until("the connection is closed", || {
        up.open.load(Ordering::SeqCst) == 0
    })
    .await;
}

#[tokio::test]
async fn at_most_max_idle_connections_are_kept() {
    let up = upstream().await;
    let pool = Arc::new(pool(up.addr, Duration::from_secs(60)));
    // MAX_IDLE + 6 responses streaming at once: one connection each.
    let n = MAX_IDLE + 6;
    let mut streaming = Vec::new();
    for _ in 0..n {
        streaming.push(pool.send(get("/stream")).await.unwrap());
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), n);
    assert_eq!(pool.held(), MAX_IDLE);
    up.release.add_permits(n);
    for s in streaming {
        assert_eq!(text(s).await, "first last");
    }
    until("the surplus is closed", || {
        up.open.load(Ordering::SeqCst) == MAX_IDLE
    })
    .await;
    assert_eq!(pool.held(), MAX_IDLE);
}

#[tokio::test]
async fn requests_go_in_origin_form_with_the_upstreams_host() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
        String::from_utf8(head).unwrap()
    });
    let pool = pool(addr, Duration::from_secs(60));
    let req = Request::get(format!("http://{addr}/a/b?c=d"))
        .body(ProxyBody::empty())
        .unwrap();
    assert_eq!(text(pool.send(req).await.unwrap()).await, "ok");
    let head = seen.await.unwrap();
    assert_eq!(
        head,
        format!("GET /a/b?c=d HTTP/1.1\r\nhost: {addr}\r\n\r\n")
    );
}

/// A connection whose upstream end the test holds: one request answered on it, then it sits
/// ready on the pool's stack.
async fn pooled_in_memory(pool: &Pool) -> tokio::io::DuplexStream {
    let (ours, mut theirs) = tokio::io::duplex(4096);
    let (mut sender, conn) = http1::handshake::<_, ProxyBody>(TokioIo::new(ours))
        .await
        .unwrap();
    tokio::spawn(conn);
    let answer = async {
        read_head(&mut theirs).await;
        theirs
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
    };
    let (resp, ()) = tokio::join!(sender.send_request(get("/")), answer);
    assert_eq!(text(resp.unwrap()).await, "ok");
    sender.ready().await.unwrap();
    Shared::checkin(&pool.shared, sender);
    theirs
}

async fn read_head(s: &mut tokio::io::DuplexStream) -> Vec<u8> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if s.read_exact(&mut b).await.is_err() {
            break;
        }
        head.push(b[0]);
    }
    head
}

#[tokio::test]
async fn a_reused_connection_found_closed_is_sent_again_on_a_new_one() {
    let up = upstream().await;
    let pool = pool(up.addr, Duration::from_secs(60));
    let theirs = pooled_in_memory(&pool).await;
    // The upstream closes it while it is idle; its driver has not run since, so the pool still
    // sees it ready, and hyper finds the end of stream before writing the request.
    drop(theirs);
    let resp = pool.send(get("/")).await.unwrap();
    assert_eq!(text(resp).await, "ok");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(up.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_request_that_may_have_been_written_is_not_sent_again() {
    let up = upstream().await;
    let pool = pool(up.addr, Duration::from_secs(60));
    let mut theirs = pooled_in_memory(&pool).await;
    let upstream_end = async move {
        // The request arrives, then the connection closes without an answer.
        let head = read_head(&mut theirs).await;
        drop(theirs);
        head
    };
    let (sent, head) = tokio::join!(pool.send(get("/once")), upstream_end);
    assert!(head.starts_with(b"GET /once HTTP/1.1\r\n"));
    let err = sent.unwrap_err();
    assert!(matches!(err, Error::Request(_)), "{err:?}");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 0, "not sent again");
}

#[tokio::test]
async fn connect_failures_say_where() {
    // A port nobody listens on: bound, then closed.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let err = pool(addr, Duration::from_secs(60))
        .send(get("/"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("connect to {addr}"));
}

#[test]
fn reuse_follows_the_response_version_and_connection_header() {
    let resp = |version: Version, connection: Option<&'static str>| {
        let mut r = Response::new(());
        *r.version_mut() = version;
        if let Some(c) = connection {
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static(c));
        }
        r
    };
    let cases = [
        (Version::HTTP_11, None, true),
        (Version::HTTP_11, Some("keep-alive"), true),
        (Version::HTTP_11, Some("close"), false),
        (Version::HTTP_11, Some("Upgrade, Close"), false),
        (Version::HTTP_10, None, false),
        (Version::HTTP_10, Some("keep-alive"), true),
        (Version::HTTP_10, Some("keep-alive, close"), false),
    ];
    for (version, connection, want) in cases {
        assert_eq!(
            reusable(&resp(version, connection)),
            want,
            "{version:?} {connection:?}"
        );
    }
}
