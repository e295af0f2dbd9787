//! The listener: accept connections (bounded by `max_connections`), serve HTTP/1.1 and HTTP/2
//! on each, close connections idle for longer than the idle timeout, and on shutdown stop
//! accepting and let in-flight requests finish within the grace period.
//!
//! A plain HTTP/1.1 keep-alive connection that stays silent for the header-read timeout is
//! *parked*: hyper's connection state and buffers (two 8 KiB buffers and the request future)
//! are dropped and only the socket is kept until the client sends again, when a fresh HTTP/1.1
//! connection state takes over. Any partial request head would have been cut off by then, so a
//! client cannot tell; 10,000 idle keep-alive clients cost their sockets and little else.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::{Instant, Sleep};

use super::live::Live;

/// The client preface of HTTP/2 with prior knowledge (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What every connection task shares: protocol settings and the shutdown signal.
struct Shared {
    live: Arc<Live>,
    auto: auto::Builder<TokioExecutor>,
    h1: hyper::server::conn::http1::Builder,
    idle: Duration,
    header_read: Duration,
}

/// Accept and serve until `shutdown` resolves, then drain. Returns whether every connection
/// finished within the grace period.
pub async fn serve(
    live: Arc<Live>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> bool {
    // Listener settings are fixed at start; everything per request comes from the live proxy.
    let cfg = live.config();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.timeouts.header_read)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(64 * 1024);
    // The same HTTP/1.1 settings, for connections known to be HTTP/1.1 (see `serve_plain`).
    let mut h1 = hyper::server::conn::http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(cfg.timeouts.header_read)
        .max_buf_size(64 * 1024);
    let shared = Arc::new(Shared {
        live: live.clone(),
        auto: builder,
        h1,
        idle: cfg.timeouts.idle,
        header_read: cfg.timeouts.header_read,
    });
    let limit = Arc::new(Semaphore::new(cfg.max_connections));
    // Shutdown: `true` is sent to every connection; draining is done when every receiver
    // (one per connection task) is gone.
    let (stop_tx, stop_rx) = watch::channel(false);
    let tls = cfg
        .tls
        .as_ref()
        .map(|t| tokio_rustls::TlsAcceptor::from(crate::tls::server_config(t.cert.clone())));
    let cert_watch = cfg
        .tls
        .as_ref()
        .map(|t| t.cert.spawn_watch(t.reload_interval));
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let stop = stop_rx.clone();
        let tls = tls.clone();
        // The connection futures are boxed so the task itself stays small while a connection
        // is parked.
        // (The TLS branch too: its handshake state would otherwise size every task, plain ones
        // included, at ~2.8 KiB.)
        tokio::spawn(async move {
            match tls {
                None => Box::pin(serve_plain(&shared, stream, peer, stop)).await,
                Some(acceptor) => Box::pin(serve_tls(&shared, acceptor, stream, peer, stop)).await,
            }
            drop(permit);
        });
    }
    drop(listener);
    drop(stop_rx);
    if let Some(w) = cert_watch {
        w.abort();
    }
    let grace = cfg.timeouts.shutdown_grace;
    let _ = stop_tx.send(true);
    // The connections, then the mapped exchanges whose clients left before their answer (they
    // still build their events), within the one grace period.
    let exchanges = live.exchanges();
    exchanges.close();
    let drained = async {
        stop_tx.closed().await;
        exchanges.wait().await;
    };
    match tokio::time::timeout(grace, drained).await {
        Ok(()) => true,
        Err(_) => {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "shutdown grace period ended with requests still in flight"
            );
            false
        }
    }
}

/// Marks a request that arrived over TLS (a request extension), for `X-Forwarded-Proto`.
#[derive(Clone, Copy, Debug)]
pub struct Secure;

type Response = hyper::Response<super::ProxyBody>;
type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response, std::convert::Infallible>> + Send>>;

/// The service of one connection: each request is served by the config current when it
/// arrived, and counts as in flight until its response head is ready.
fn service(
    live: &Arc<Live>,
    peer: std::net::SocketAddr,
    secure: bool,
    inflight: &Arc<AtomicUsize>,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = Response,
    Error = std::convert::Infallible,
    Future = ResponseFuture,
> {
    let (live, inflight) = (live.clone(), inflight.clone());
    hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let proxy = live.proxy();
        let guard = InflightGuard::new(inflight.clone());
        if secure {
            req.extensions_mut().insert(Secure);
        }
        // Boxed: an `Unpin` future lets the HTTP/1.1 path drive hyper's connection with
        // `poll_without_shutdown` and take the socket back when it parks.
        Box::pin(async move {
            let resp = proxy.handle(req, peer).await;
            drop(guard);
            Ok::<_, std::convert::Infallible>(resp)
        }) as ResponseFuture
    })
}

/// A TLS connection: the handshake, bounded like a request head (a stalled client cannot hold a
/// connection slot), then HTTP/1.1 or HTTP/2 as ALPN chose.
async fn serve_tls(
    shared: &Shared,
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    stop: watch::Receiver<bool>,
) {
    match tokio::time::timeout(shared.header_read, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            let io = IdleIo::new(TokioIo::new(tls), shared.idle, None);
            Box::pin(serve_auto(shared, io, peer, true, stop)).await
        }
        Ok(Err(e)) => tracing::debug!(peer = %peer, error = %e, "tls handshake failed"),
        Err(_) => tracing::debug!(peer = %peer, "tls handshake timed out"),
    }
}

/// A plain TCP connection: HTTP/1.1 with parking, or (HTTP/2 prior knowledge, or a first
/// read too short to tell) the auto-detecting server as it is.
async fn serve_plain(
    shared: &Shared,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    // Nothing sent within the header-read timeout: the connection is closed unserved.
    let mut head = [0u8; H2_PREFACE.len()];
    let peeked = tokio::select! {
        biased;
        _ = stop.changed() => return,
        p = tokio::time::timeout(shared.header_read, stream.peek(&mut head)) => p,
    };
    let n = match peeked {
        Ok(Ok(n)) if n > 0 => n,
        _ => return,
    };
    let surely_h1 = head[..n] != H2_PREFACE[..n];
    // Parking needs a wait shorter than the idle timeout to be worth anything.
    let park_after = shared.header_read.max(Duration::from_millis(100));
    if !surely_h1 || park_after >= shared.idle {
        let io = IdleIo::new(TokioIo::new(stream), shared.idle, None);
        return Box::pin(serve_auto(shared, io, peer, false, stop)).await;
    }

    let mut stream = stream;
    let mut carry = Bytes::new();
    loop {
        // Boxed: the HTTP/1.1 state lives only as long as the connection is active.
        let round = Box::pin(serve_h1(shared, stream, carry, peer, park_after, &mut stop)).await;
        let Some((parked, rest)) = round else {
            return;
        };
        stream = parked;
        if !rest.is_empty() {
            carry = rest;
            continue;
        }
        // An empty `Bytes` from hyper still owns its whole read buffer (8 KiB): drop it now, not
        // at the end of this loop body, which would keep it alive for the whole park.
        drop(rest);
        carry = Bytes::new();
        tracing::debug!(peer = %peer, "idle connection parked");
        // Parked: only the socket, until the client speaks again, the idle timeout runs out,
        // or shutdown.
        let left = shared.idle.saturating_sub(park_after);
        let woke = tokio::select! {
            biased;
            _ = stop.changed() => false,
            r = tokio::time::timeout(left, stream.readable()) => matches!(r, Ok(Ok(()))),
        };
        if !woke {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// Serve HTTP/1.1 on `stream` until the connection ends (`None`) or parks: then the socket and
/// any bytes hyper had read ahead.
async fn serve_h1(
    shared: &Shared,
    stream: TcpStream,
    carry: Bytes,
    peer: std::net::SocketAddr,
    park_after: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Option<(TcpStream, Bytes)> {
    let inflight = Arc::new(AtomicUsize::new(0));
    let mut io = IdleIo::new(TokioIo::new(stream), park_after, Some(inflight.clone()));
    io.pre = (!carry.is_empty()).then_some(carry);
    let svc = service(&shared.live, peer, false, &inflight);
    let mut conn = shared.h1.serve_connection(io, svc);
    let mut stopping = *stop.borrow();
    if stopping {
        Pin::new(&mut conn).graceful_shutdown();
    }
    let result = {
        let mut changed = std::pin::pin!(stop.changed());
        std::future::poll_fn(|cx| {
            if !stopping && changed.as_mut().poll(cx).is_ready() {
                stopping = true;
                Pin::new(&mut conn).graceful_shutdown();
            }
            conn.poll_without_shutdown(cx)
        })
        .await
    };
    if let Err(e) = result {
        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
        // The response body being sent failed (the upstream broke off or its framing broke):
        // reset rather than close, so a client reading the body to the close (HTTP/1.0, no
        // length) cannot take what it got for the whole response.
        if e.is_user() && std::error::Error::source(&e).is_some_and(|s| s.is::<hyper::Error>()) {
            let _ = conn.into_parts().io.inner.inner().set_zero_linger();
        }
        return None;
    }
    let parts = conn.into_parts();
    let mut io = parts.io;
    if !io.parked || stopping {
        // Ended (client closed, `Connection: close`, shutdown): close our side as hyper would.
        let _ = io.inner.inner_mut().shutdown().await;
        return None;
    }
    Some((io.inner.into_inner(), parts.read_buf))
}

/// Serve one connection (TLS, HTTP/2, or undecided) with the auto-detecting server until it
/// closes or shutdown drains it.
async fn serve_auto<I>(
    shared: &Shared,
    mut io: IdleIo<I>,
    peer: std::net::SocketAddr,
    secure: bool,
    mut stop: watch::Receiver<bool>,
) where
    I: Read + Write + Unpin + Send + 'static,
{
    let inflight = Arc::new(AtomicUsize::new(0));
    io.inflight = Some(inflight.clone());
    let svc = service(&shared.live, peer, secure, &inflight);
    let conn = shared.auto.serve_connection(io, svc);
    tokio::pin!(conn);
    let result = tokio::select! {
        biased;
        r = conn.as_mut() => r,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
    }
}

/// Counts a request as in flight until its response head is ready.
struct InflightGuard(Arc<AtomicUsize>);

impl InflightGuard {
    fn new(n: Arc<AtomicUsize>) -> InflightGuard {
        n.fetch_add(1, Ordering::AcqRel);
        InflightGuard(n)
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's I/O that reports end-of-stream once nothing has been read or written for
/// `quiet` while no request is waiting for its response, so hyper ends the connection: the
/// idle timeout, or (HTTP/1.1 path) the point where the connection is parked, marked `parked`.
struct IdleIo<T> {
    inner: T,
    /// Bytes read before (a parked connection's leftovers), served first.
    pre: Option<Bytes>,
    quiet: Duration,
    timer: Pin<Box<Sleep>>,
    /// `None` until the connection's service exists (then requests in flight).
    inflight: Option<Arc<AtomicUsize>>,
    /// The end of stream reported was a park, not an idle close.
    parked: bool,
    /// Parking is what a quiet connection gets (else it is closed).
    parks: bool,
}

impl<T> IdleIo<T> {
    fn new(inner: T, quiet: Duration, parking: Option<Arc<AtomicUsize>>) -> IdleIo<T> {
        IdleIo {
            inner,
            pre: None,
            quiet,
            timer: Box::pin(tokio::time::sleep(quiet)),
            parks: parking.is_some(),
            inflight: parking,
            parked: false,
        }
    }

    fn touch(&mut self) {
        self.timer.as_mut().reset(Instant::now() + self.quiet);
    }

    fn busy(&self) -> bool {
        self.inflight
            .as_ref()
            .is_some_and(|n| n.load(Ordering::Acquire) > 0)
    }
}

impl<T: Read + Unpin> Read for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(mut pre) = this.pre.take() {
            let n = pre.len().min(buf.remaining());
            buf.put_slice(&pre.split_to(n));
            if !pre.is_empty() {
                this.pre = Some(pre);
            }
            this.touch();
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.touch();
                Poll::Ready(r)
            }
            Poll::Pending => {
                if this.timer.as_mut().poll(cx).is_ready() {
                    if !this.busy() {
                        // Zero bytes read: end of stream, hyper ends the connection.
                        this.parked = this.parks;
                        return Poll::Ready(Ok(()));
                    }
                    this.touch();
                    let _ = this.timer.as_mut().poll(cx);
                }
                Poll::Pending
            }
        }
    }
}

impl<T: Write + Unpin> Write for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if r.is_ready() {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if r.is_ready() {
            self.touch();
        }
        r
    }
}
