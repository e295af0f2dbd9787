//! Bodies that stream through the proxy. [`ProxyBody`] is the one body type on both sides of the
//! proxy; its `Tee` form forwards every frame untouched while keeping a copy of at most
//! `inspect_limit` bytes, and calls a finisher exactly once when the body ends, fails or is
//! dropped — the hook where the audit event is built once the response is known.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;

/// How a teed body ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyEnd {
    /// Every frame was delivered.
    Complete,
    /// The source body broke off midway (reset, closed early, or its connection failed).
    Failed,
    /// The source body's framing was invalid midway (a broken chunk): the peer sent something
    /// that is not HTTP.
    Malformed,
    /// The body was dropped before its end (the receiving side went away).
    Dropped,
}

/// The head of a body, kept for inspection.
#[derive(Debug, Default)]
pub struct Captured {
    pub bytes: BytesMut,
    /// More bytes passed than were kept.
    pub truncated: bool,
    /// `None` while the body is still streaming.
    pub end: Option<BodyEnd>,
}

/// A capture buffer shared between the body and whoever reads it afterwards.
#[derive(Clone, Debug)]
pub struct Capture {
    inner: Arc<Mutex<Captured>>,
    limit: usize,
}

impl Capture {
    pub fn new(limit: usize) -> Capture {
        Capture {
            inner: Arc::new(Mutex::new(Captured::default())),
            limit,
        }
    }

    fn push(&self, data: &[u8]) {
        let mut c = self.lock();
        let room = self.limit.saturating_sub(c.bytes.len());
        if data.len() > room {
            c.truncated = true;
        }
        let take = data.len().min(room);
        if take > 0 {
            c.bytes.extend_from_slice(&data[..take]);
        }
    }

    /// Nothing more would be kept.
    fn is_full(&self) -> bool {
        let c = self.lock();
        c.truncated || c.bytes.len() >= self.limit
    }

    fn end(&self, how: BodyEnd) {
        let mut c = self.lock();
        if c.end.is_none() {
            c.end = Some(how);
        }
    }

    /// How the body ended so far (`None` while streaming).
    pub fn take_end(&self) -> Option<BodyEnd> {
        self.lock().end
    }

    /// Take what was captured so far (the body may still be streaming).
    pub fn take(&self) -> Captured {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Captured> {
        // A poisoned lock only means a panic elsewhere mid-push; the bytes are still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Called once when a teed body ends, with how it ended.
pub type Finisher = Box<dyn FnOnce(BodyEnd) + Send>;

/// The single body type the proxy sends and receives.
pub enum ProxyBody {
    /// Passed through untouched (unmapped routes).
    Stream(Incoming),
    /// Passed through while its head is captured (mapped routes).
    Tee {
        inner: Incoming,
        capture: Capture,
        finish: Option<Finisher>,
    },
    /// A request body whose head was read for inspection before forwarding: the head is sent
    /// first, then the rest streams on.
    Replay {
        head: Option<Bytes>,
        rest: Option<Incoming>,
    },
    /// A response the proxy makes itself (errors).
    Full(Full<Bytes>),
}

/// The head of a request body, read before forwarding.
pub struct Head {
    /// Everything read so far (may exceed the limit by part of one frame).
    pub bytes: Bytes,
    /// The body went on past the limit (or failed) before it ended.
    pub truncated: bool,
    /// The rest of the body, `None` when it ended within the limit.
    pub rest: Option<Incoming>,
    /// The client's body failed while being read.
    pub failed: bool,
    /// The client sent the body too slowly (`timeouts.body_read`).
    pub timed_out: bool,
}

impl Head {
    /// The inspected part: at most `limit` bytes.
    pub fn inspected(&self, limit: usize) -> &[u8] {
        &self.bytes[..self.bytes.len().min(limit)]
    }

    /// The body to forward: the head, then the rest.
    pub fn into_body(self) -> ProxyBody {
        ProxyBody::Replay {
            head: (!self.bytes.is_empty()).then_some(self.bytes),
            rest: self.rest,
        }
    }
}

/// [`read_head`] within `timeout`: a body dribbled slower than that is cut off (`timed_out`).
pub async fn read_head_within(body: Incoming, limit: usize, timeout: std::time::Duration) -> Head {
    match tokio::time::timeout(timeout, read_head(body, limit)).await {
        Ok(head) => head,
        Err(_) => Head {
            bytes: Bytes::new(),
            truncated: true,
            rest: None,
            failed: true,
            timed_out: true,
        },
    }
}

/// Read frames until `limit` bytes or the end of the body. Trailers end the read (they are
/// not forwarded: auth endpoints do not use them).
pub async fn read_head(mut body: Incoming, limit: usize) -> Head {
    use http_body_util::BodyExt;

    let mut buf = BytesMut::new();
    loop {
        if buf.len() >= limit || body.is_end_stream() {
            let ended = body.is_end_stream();
            return Head {
                truncated: !ended,
                bytes: buf.freeze(),
                rest: (!ended).then_some(body),
                failed: false,
                timed_out: false,
            };
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    buf.extend_from_slice(data);
                }
            }
            Some(Err(_)) => {
                return Head {
                    bytes: buf.freeze(),
                    truncated: true,
                    rest: None,
                    failed: true,
                    timed_out: false,
                }
            }
            None => {
                return Head {
                    bytes: buf.freeze(),
                    truncated: false,
                    rest: None,
                    failed: false,
                    timed_out: false,
                }
            }
        }
    }
}

impl ProxyBody {
    pub fn tee(inner: Incoming, capture: Capture, finish: Option<Finisher>) -> ProxyBody {
        ProxyBody::Tee {
            inner,
            capture,
            finish,
        }
    }

    /// The receiver went away before this body was read (a client that hung up while the
    /// upstream worked): read on for the capture alone, until the body ends, the capture is full
    /// or `within` passes, then end it as [`BodyEnd::Dropped`]. Only a `Tee` has anything to
    /// keep; any other body is dropped.
    pub async fn abandon(mut self, within: std::time::Duration) {
        use http_body_util::BodyExt;
        if let ProxyBody::Tee {
            inner,
            capture,
            finish: f,
        } = &mut self
        {
            let read = async {
                while !capture.is_full() {
                    match inner.frame().await {
                        Some(Ok(frame)) => {
                            if let Some(data) = frame.data_ref() {
                                capture.push(data);
                            }
                        }
                        Some(Err(_)) | None => break,
                    }
                }
            };
            let _ = tokio::time::timeout(within, read).await;
            finish(capture, f, BodyEnd::Dropped);
        }
    }

    pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
        ProxyBody::Full(Full::new(bytes.into()))
    }

    pub fn empty() -> ProxyBody {
        ProxyBody::Full(Full::new(Bytes::new()))
    }
}

/// How a body that failed midway ended: hyper reports broken framing (a bad chunk-size line, an
/// overflowing chunk size, over-long trailers) as an I/O error of kind `InvalidData` or
/// `InvalidInput`; a reset or an early end is any other kind.
pub fn body_failure(e: &hyper::Error) -> BodyEnd {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => {
                    BodyEnd::Malformed
                }
                _ => BodyEnd::Failed,
            };
        }
        source = s.source();
    }
    if e.is_parse() {
        BodyEnd::Malformed
    } else {
        BodyEnd::Failed
    }
}

fn finish(capture: &Capture, finish: &mut Option<Finisher>, how: BodyEnd) {
    capture.end(how);
    if let Some(f) = finish.take() {
        f(how);
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Stream(b) => Pin::new(b).poll_frame(cx),
            ProxyBody::Full(b) => Pin::new(b).poll_frame(cx).map_err(|never| match never {}),
            ProxyBody::Replay { head, rest } => {
                if let Some(h) = head.take() {
                    return Poll::Ready(Some(Ok(Frame::data(h))));
                }
                match rest {
                    Some(r) => Pin::new(r).poll_frame(cx),
                    None => Poll::Ready(None),
                }
            }
            ProxyBody::Tee {
                inner,
                capture,
                finish: f,
            } => {
                let polled = ready!(Pin::new(&mut *inner).poll_frame(cx));
                match &polled {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            capture.push(data);
                        }
                        // The last frame: the event is recorded (written ahead) before the
                        // client can have the whole response, so an acknowledged request always
                        // has its event, even if the sidecar is killed the next instant.
                        if inner.is_end_stream() {
                            finish(capture, f, BodyEnd::Complete);
                        }
                    }
                    Some(Err(e)) => finish(capture, f, body_failure(e)),
                    None => finish(capture, f, BodyEnd::Complete),
                }
                Poll::Ready(polled)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Stream(b) => b.is_end_stream(),
            ProxyBody::Tee { inner, .. } => inner.is_end_stream(),
            ProxyBody::Full(b) => b.is_end_stream(),
            ProxyBody::Replay { head, rest } => {
                head.is_none() && rest.as_ref().is_none_or(|r| r.is_end_stream())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Stream(b) => b.size_hint(),
            ProxyBody::Tee { inner, .. } => inner.size_hint(),
            ProxyBody::Full(b) => b.size_hint(),
            ProxyBody::Replay { head, rest } => {
                let h = head.as_ref().map_or(0, |h| h.len() as u64);
                match rest {
                    None => SizeHint::with_exact(h),
                    Some(r) => {
                        let mut hint = SizeHint::new();
                        hint.set_lower(h + r.size_hint().lower());
                        if let Some(u) = r.size_hint().upper() {
                            hint.set_upper(h + u);
                        }
                        hint
                    }
                }
            }
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        if let ProxyBody::Tee {
            inner,
            capture,
            finish: f,
        } = self
        {
            // An empty body may be dropped without ever being polled: that is a complete body.
            let how = if inner.is_end_stream() {
                BodyEnd::Complete
            } else {
                BodyEnd::Dropped
            };
            finish(capture, f, how);
        }
    }
}
