//! The upstream connection pool: HTTP/1.1 connections to the one upstream (`http://` or
//! `https://`), opened on demand and kept open between requests. It owns connecting (TCP with
//! `TCP_NODELAY`, then TLS), the request's form on the wire (origin-form, `Host`), reuse and
//! idle expiry; it never looks at what a request or response means.
//!
//! How it works, and why it is cheaper than hyper-util's legacy client it replaces:
//! - Each connection is a `hyper::client::conn::http1` sender; its driver runs on a task of its
//!   own (`tokio::spawn`, on the runtime serving the request, so a current-thread runtime
//!   works too).
//! - A sender goes back on the idle stack as soon as its response head arrives, and is handed
//!   out again only when hyper reports it ready (`SendRequest::is_ready`). hyper does that only
//!   when the exchange is over: the request written *and* the response body read to its end (its
//!   dispatcher asks for the next request only once both directions are idle). The legacy client
//!   spawned a task per request to wait for that moment before putting the connection back; here
//!   checkout reads one atomic flag instead.
//! - Checkout takes the most recently used ready connection (LIFO: warm connections stay warm,
//!   the rest age out), drops closed ones, skips busy ones and never waits for one: without a
//!   ready connection the request opens a new one.
//! - A response that says the connection ends (`Connection: close`, HTTP/1.0 without
//!   keep-alive) is not put back. hyper closes such connections itself; this only keeps them off
//!   the stack.
//! - At most [`MAX_IDLE`] connections are kept; beyond that the oldest is closed. Connections
//!   idle for `timeouts.idle` are closed by a reaper task that sleeps until the oldest one is
//!   due; it holds the pool weakly, so a dropped pool (a reload) closes its connections.
//! - A request sent on a *reused* connection that hyper hands back unsent (the connection was
//!   found closed before a byte of the request was written: `TrySendError::take_message`) is
//!   sent once more on a new connection, as the legacy client's `retry_canceled_requests` did.
//!   Once a request may have been written it is never retried: hyper does not hand it back.
//!
//! Not done, on purpose: HTTP/2 to the upstream (no ALPN is offered, as with the
//! HTTP/1-only hyper-rustls connector before, so a TLS upstream cannot choose h2, and a
//! cleartext upstream is spoken to in HTTP/1.1); happy eyeballs (the addresses of a name are
//! tried in order, the connect timeout split between them); upgrades (`Upgrade` is a hop-by-hop
//! header the proxy strips); a forward proxy in between.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::body::ProxyBody;

/// Most connections kept open for reuse (idle, or finishing a response body). A sidecar talks to
/// one upstream and its steady concurrency is far below this; the bound keeps a burst from
/// leaving hundreds of sockets (and an upstream worker each, on servers that tie one to a
/// connection) open afterwards. nginx's benchmark config here keeps the same number
/// (`keepalive 64`); as there, a burst's surplus is closed as it comes back.
pub const MAX_IDLE: usize = 64;

type Sender = http1::SendRequest<ProxyBody>;

/// Why a request got no response head from the upstream.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("resolve {host}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("resolve {0}: no address")]
    NoAddress(String),
    #[error("connect to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("connect to {0}: timed out")]
    ConnectTimeout(SocketAddr),
    #[error("tls handshake with {name}")]
    Tls {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid tls server name {0:?}")]
    ServerName(String),
    #[error("http/1.1 handshake")]
    Handshake(#[source] hyper::Error),
    /// The connection failed after it was open: closed or reset before a whole response head,
    /// or a head hyper could not parse.
    #[error("request to the upstream")]
    Request(#[source] hyper::Error),
}

/// Where connections go, decided once from the upstream URI.
struct Target {
    /// `Some` for an IP literal (no resolution), else resolved at every connect.
    addr: Option<SocketAddr>,
    host: String,
    port: u16,
    /// The `Host` of a request that has none (as the legacy client set it: host, and the port
    /// when it is not the scheme's default).
    host_header: HeaderValue,
    authority: Authority,
    /// `https://`: the TLS config and the name to verify (and send as SNI when it is a DNS name).
    tls: Option<(
        tokio_rustls::TlsConnector,
        Result<ServerName<'static>, String>,
    )>,
}

struct Entry {
    sender: Sender,
    /// When it was put back (for a busy entry the reaper moves this on: it is not idle yet).
    since: Instant,
}

#[derive(Default)]
struct Idle {
    /// Oldest first; checkout looks from the back.
    stack: VecDeque<Entry>,
    reaper: bool,
}

struct Shared {
    target: Target,
    builder: http1::Builder,
    connect_timeout: Duration,
    idle_timeout: Duration,
    idle: Mutex<Idle>,
}

/// The upstream connection pool of one proxy (one config): dropped with it.
pub struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    /// A pool for `upstream` (scheme and authority are used; `tls` is the client config of an
    /// `https://` upstream, ignored for `http://`).
    pub fn new(
        upstream: &Uri,
        tls: Option<Arc<rustls::ClientConfig>>,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Pool {
        let https = upstream.scheme() == Some(&Scheme::HTTPS);
        let authority = upstream
            .authority()
            .cloned()
            .unwrap_or_else(|| Authority::from_static("localhost"));
        let raw_host = authority.host();
        // `[::1]` in a URI, `::1` as an address or a server name.
        let host = raw_host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(raw_host)
            .to_string();
        let default_port = if https { 443 } else { 80 };
        let port = authority.port_u16().unwrap_or(default_port);
        let host_header = match authority.port_u16() {
            Some(p) if p != default_port => HeaderValue::from_str(&format!("{raw_host}:{p}")),
            _ => HeaderValue::from_str(raw_host),
        }
        .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        let tls = https.then(|| {
            let config = tls.unwrap_or_else(|| {
                Arc::new(
                    rustls::ClientConfig::builder()
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                )
            });
            // HTTP/1.1 only: offering no ALPN (as before) means no server can pick h2.
            let config = if config.alpn_protocols.is_empty() {
                config
            } else {
                let mut c = (*config).clone();
                c.alpn_protocols.clear();
                Arc::new(c)
            };
            let name = ServerName::try_from(host.clone()).map_err(|_| host.clone());
            (tokio_rustls::TlsConnector::from(config), name)
        });
        let target = Target {
            addr: host
                .parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, port)),
            host,
            port,
            host_header,
            authority,
            tls,
        };
        Pool {
            shared: Arc::new(Shared {
                target,
                builder: http1::Builder::new(),
                connect_timeout,
                idle_timeout,
                idle: Mutex::new(Idle::default()),
            }),
        }
    }

    /// Send `req` (its URI is rewritten to origin-form, a missing `Host` is set) on a ready
    /// pooled connection, else on a new one; the response head, or why there is none.
    pub async fn send(&self, mut req: Request<ProxyBody>) -> Result<Response<Incoming>, Error> {
        self.shared.target.prepare(&mut req);
        let Some(mut sender) = self.shared.checkout() else {
            let (sender, resp) = Box::pin(self.send_new(req)).await?;
            return Ok(self.keep(sender, resp));
        };
        let resp = match sender.try_send_request(req).await {
            Ok(resp) => resp,
            Err(mut e) => {
                // Never written: the connection was found closed first. Once, on a new one.
                let Some(req) = e.take_message() else {
                    return Err(Error::Request(e.into_error()));
                };
                tracing::debug!(error = %e.error(), "pooled upstream connection was closed, request sent again on a new one");
                drop(e);
                let (new, resp) = Box::pin(self.send_new(req)).await?;
                sender = new;
                resp
            }
        };
        Ok(self.keep(sender, resp))
    }

    /// Send `req` on a new connection: the connect and its handshake live on the heap, so a
    /// request on a pooled connection (most) does not carry their state in its future.
    async fn send_new(
        &self,
        req: Request<ProxyBody>,
    ) -> Result<(Sender, Response<Incoming>), Error> {
        let mut sender = self.shared.connect().await?;
        let resp = sender
            .try_send_request(req)
            .await
            .map_err(|e| Error::Request(e.into_error()))?;
        Ok((sender, resp))
    }

    /// `resp` as it came on `sender`, whose connection is pooled again if it can be reused.
    fn keep(&self, sender: Sender, resp: Response<Incoming>) -> Response<Incoming> {
        if reusable(&resp) {
            Shared::checkin(&self.shared, sender);
        }
        resp
    }

    /// Connections held now (idle or finishing a response), for tests.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.shared.lock().stack.len()
    }
}

impl Target {
    /// The request as the upstream gets it: origin-form (authority-form for `CONNECT`), and
    /// the upstream's `Host` when the client sent none.
    fn prepare(&self, req: &mut Request<ProxyBody>) {
        if req.method() == Method::CONNECT {
            let mut parts = http::uri::Parts::default();
            parts.authority = Some(self.authority.clone());
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        } else if req.uri().scheme().is_some() || req.uri().authority().is_some() {
            let mut parts = http::uri::Parts::default();
            parts.path_and_query = req.uri().path_and_query().cloned();
            *req.uri_mut() = Uri::from_parts(parts).unwrap_or_default();
        }
        if !req.headers().contains_key(header::HOST) {
            req.headers_mut()
                .insert(header::HOST, self.host_header.clone());
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        // A poisoned lock only means a panic elsewhere while it was held; the stack is intact.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used ready connection; closed ones found on the way are dropped,
    /// busy ones (still reading a response) stay.
    fn checkout(&self) -> Option<Sender> {
        let mut idle = self.lock();
        let mut i = idle.stack.len();
        while i > 0 {
            i -= 1;
            let e = &idle.stack[i];
            if e.sender.is_closed() {
                idle.stack.remove(i);
            } else if e.sender.is_ready() {
                return idle.stack.remove(i).map(|e| e.sender);
            }
        }
        None
    }

    /// Put `sender` back; it is handed out again once hyper says it is ready.
    fn checkin(this: &Arc<Shared>, sender: Sender) {
        let mut idle = this.lock();
        if idle.stack.len() >= MAX_IDLE {
            idle.stack.pop_front();
        }
        idle.stack.push_back(Entry {
            sender,
            since: Instant::now(),
        });
        if !idle.reaper {
            idle.reaper = true;
            tokio::spawn(reap(Arc::downgrade(this)));
        }
    }

    /// A new connection: TCP (within the connect timeout, split between the addresses), TLS
    /// for `https://`, the HTTP/1.1 handshake; its driver spawned. As with the legacy connector,
    /// only the TCP connect is bounded by `upstream_connect`; the TLS handshake counts towards
    /// the request's `upstream_response`.
    async fn connect(&self) -> Result<Sender, Error> {
        let t = &self.target;
        let addrs: Vec<SocketAddr> = match t.addr {
            Some(a) => vec![a],
            None => tokio::net::lookup_host((t.host.as_str(), t.port))
                .await
                .map_err(|source| Error::Resolve {
                    host: t.host.clone(),
                    source,
                })?
                .collect(),
        };
        let Some(&last) = addrs.last() else {
            return Err(Error::NoAddress(t.host.clone()));
        };
        let each = self.connect_timeout / addrs.len().max(1) as u32;
        let mut failed = Error::ConnectTimeout(last);
        let mut tcp = None;
        for &addr in &addrs {
            match tokio::time::timeout(each, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    tcp = Some(s);
                    break;
                }
                Ok(Err(source)) => failed = Error::Connect { addr, source },
                Err(_) => failed = Error::ConnectTimeout(addr),
            }
        }
        let Some(tcp) = tcp else {
            return Err(failed);
        };
        // Requests are written whole; Nagle would only hold back their last segment.
        let _ = tcp.set_nodelay(true);
        match &t.tls {
            None => self.handshake(TokioIo::new(tcp)).await,
            Some((connector, name)) => {
                let name = name.clone().map_err(Error::ServerName)?;
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|source| Error::Tls {
                        name: t.host.clone(),
                        source,
                    })?;
                self.handshake(TokioIo::new(tls)).await
            }
        }
    }

    async fn handshake<T>(&self, io: T) -> Result<Sender, Error>
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (sender, conn) = self.builder.handshake(io).await.map_err(Error::Handshake)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// Close connections idle for `idle_timeout`: sleep until the oldest is due, drop what is due
/// or closed, again; end when the pool is empty (the next checkin starts another) or gone.
async fn reap(pool: Weak<Shared>) {
    let mut wake = match pool.upgrade() {
        Some(p) => Instant::now() + p.idle_timeout,
        None => return,
    };
    loop {
        tokio::time::sleep_until(wake).await;
        let Some(p) = pool.upgrade() else {
            return;
        };
        let now = Instant::now();
        let mut idle = p.lock();
        idle.stack.retain_mut(|e| {
            if e.sender.is_closed() {
                return false;
            }
            if !e.sender.is_ready() {
                // Still reading its response: its idle time has not begun.
                e.since = now;
                return true;
            }
            now.duration_since(e.since) < p.idle_timeout
        });
        match idle.stack.iter().map(|e| e.since).min() {
            Some(oldest) => wake = oldest + p.idle_timeout,
            None => {
                idle.reaper = false;
                return;
            }
        }
    }
}

/// Whether the connection may carry another request after this response: not when the
/// upstream says it closes (`Connection: close`), nor after an HTTP/1.0 response that did not
/// ask for keep-alive.
fn reusable<B>(resp: &Response<B>) -> bool {
    let has = |token: &str| {
        resp.headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    match resp.version() {
        Version::HTTP_11 => !has("close"),
        Version::HTTP_10 => has("keep-alive") && !has("close"),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
