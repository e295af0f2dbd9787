//! The listener: accept connections (bounded by `max_connections`), serve HTTP/1.1 and HTTP/2
//! on each, close connections idle for longer than the idle timeout, and on shutdown stop
//! accepting and let in-flight requests finish within the grace period.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};

use super::live::Live;

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
    let builder = Arc::new(builder);
    let limit = Arc::new(Semaphore::new(cfg.max_connections));
    let graceful = GracefulShutdown::new();
    let tls = cfg
        .tls
        .as_ref()
        .map(|t| tokio_rustls::TlsAcceptor::from(super::tls::server_config(t.cert.clone())));
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
        let live = live.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let (idle, handshake) = (cfg.timeouts.idle, cfg.timeouts.header_read);
        tokio::spawn(async move {
            match tls {
                None => {
                    serve_io(
                        &builder,
                        watcher,
                        live,
                        TokioIo::new(stream),
                        peer,
                        false,
                        idle,
                    )
                    .await
                }
                Some(acceptor) => {
                    // The handshake is bounded like a request head: a stalled client cannot
                    // hold a connection slot.
                    match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            serve_io(&builder, watcher, live, TokioIo::new(tls), peer, true, idle)
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer, error = %e, "tls handshake failed")
                        }
                        Err(_) => tracing::debug!(peer = %peer, "tls handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    if let Some(w) = cert_watch {
        w.abort();
    }
    let grace = cfg.timeouts.shutdown_grace;
    match tokio::time::timeout(grace, graceful.shutdown()).await {
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

/// Serve one accepted connection (plain or TLS) until it closes or shutdown drains it.
async fn serve_io<I>(
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    live: Arc<Live>,
    io: I,
    peer: std::net::SocketAddr,
    secure: bool,
    idle: Duration,
) where
    I: Read + Write + Unpin + Send + 'static,
{
    let inflight = Arc::new(AtomicUsize::new(0));
    let io = IdleIo::new(io, idle, inflight.clone());
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        // Each request is served by the config current when it arrived.
        let proxy = live.proxy();
        let guard = InflightGuard::new(inflight.clone());
        if secure {
            req.extensions_mut().insert(Secure);
        }
        async move {
            let resp = proxy.handle(req, peer).await;
            drop(guard);
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let conn = builder.serve_connection(io, service);
    if let Err(e) = watcher.watch(conn).await {
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
/// `idle` while no request is waiting for its response, so hyper closes the connection.
struct IdleIo<T> {
    inner: T,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    inflight: Arc<AtomicUsize>,
}

impl<T> IdleIo<T> {
    fn new(inner: T, idle: Duration, inflight: Arc<AtomicUsize>) -> IdleIo<T> {
        IdleIo {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            inflight,
        }
    }

    fn touch(&mut self) {
        self.timer.as_mut().reset(Instant::now() + self.idle);
    }
}

impl<T: Read + Unpin> Read for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.touch();
                Poll::Ready(r)
            }
            Poll::Pending => {
                if this.timer.as_mut().poll(cx).is_ready() {
                    if this.inflight.load(Ordering::Acquire) == 0 {
                        // Zero bytes read: end of stream, hyper closes the connection.
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
