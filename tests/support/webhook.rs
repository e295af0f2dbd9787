//! A webhook receiver on 127.0.0.1:0 for sink and alert tests: records every request (path,
//! headers, body, the status it answered), can answer 500 to the next N requests or to all, or
//! stall, and checks `X-Authtrail-Signature` independently of the sidecar's code.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::hmac;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, Response, StatusCode};
use tokio::net::TcpListener;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// What the receiver answered.
    pub status: u16,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// Whether the signature header is `v1=hex(HMAC-SHA256(secret, "<timestamp>.<body>"))`
    /// with the timestamp header's value.
    pub fn signed_with(&self, secret: &str) -> bool {
        let (Some(ts), Some(sig)) = (
            self.headers
                .get("x-authtrail-timestamp")
                .and_then(|v| v.to_str().ok()),
            self.headers
                .get("x-authtrail-signature")
                .and_then(|v| v.to_str().ok()),
        ) else {
            return false;
        };
        let Some(hex) = sig.strip_prefix("v1=") else {
            return false;
        };
        let Ok(tag) = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
        else {
            return false;
        };
        let mut signed = ts.as_bytes().to_vec();
        signed.push(b'.');
        signed.extend_from_slice(&self.body);
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        hmac::verify(&key, &signed, &tag).is_ok()
    }

    /// The timestamp header, Unix seconds.
    pub fn timestamp(&self) -> u64 {
        self.headers
            .get("x-authtrail-timestamp")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// Answers a request that is not failed on purpose: status and body.
pub type Responder = Arc<dyn Fn(&Received) -> (u16, Bytes) + Send + Sync>;

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    fail_next: Arc<AtomicU64>,
    fail_status: Arc<AtomicU16>,
    fail_always: Arc<AtomicBool>,
    stall: Arc<AtomicBool>,
    responder: Arc<Mutex<Option<Responder>>>,
}

impl Receiver {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answer 500 to the next `n` requests.
    pub fn fail_next(&self, n: u64) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// Answer `status` (instead of 500) to the requests failed on purpose.
    pub fn fail_with(&self, status: u16) {
        self.fail_status.store(status, Ordering::SeqCst);
    }

    /// Answer the other requests with `f` (instead of 200 `{}`).
    pub fn respond(&self, f: impl Fn(&Received) -> (u16, Bytes) + Send + Sync + 'static) {
        *self.responder.lock().unwrap() = Some(Arc::new(f));
    }

    /// Answer 500 to every request.
    pub fn fail_always(&self) {
        self.fail_always.store(true, Ordering::SeqCst);
    }

    /// Hold every request for 30s before answering.
    pub fn stall(&self) {
        self.stall.store(true, Ordering::SeqCst);
    }

    /// Every request so far, in arrival order.
    pub fn all(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Requests answered 2xx so far.
    pub fn delivered(&self) -> Vec<Received> {
        self.all().into_iter().filter(|r| r.status < 300).collect()
    }

    /// Wait (up to 10s) until `pred` holds for the requests received.
    pub async fn wait_until(
        &self,
        what: &str,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        for _ in 0..1_000 {
            let all = self.all();
            if pred(&all) {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "webhook receiver: {what} did not happen within 10s; got {:#?}",
            self.all()
        );
    }
}

pub async fn spawn() -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rx = Receiver {
        addr: listener.local_addr().unwrap(),
        got: Arc::new(Mutex::new(Vec::new())),
        fail_next: Arc::new(AtomicU64::new(0)),
        fail_status: Arc::new(AtomicU16::new(500)),
        responder: Arc::new(Mutex::new(None)),
        fail_always: Arc::new(AtomicBool::new(false)),
        stall: Arc::new(AtomicBool::new(false)),
    };
    super::serve::spawn(listener, rx.clone(), handle);
    rx
}

async fn handle(
    state: Receiver,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    if state.stall.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    let fail = state.fail_always.load(Ordering::SeqCst)
        || state
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    let mut got = Received {
        path,
        headers,
        body,
        status: 200,
    };
    let (status, answer) = if fail {
        (
            state.fail_status.load(Ordering::SeqCst),
            Bytes::from_static(b"{}"),
        )
    } else {
        let responder = state.responder.lock().unwrap().clone();
        match responder {
            Some(f) => f(&got),
            None => (200, Bytes::from_static(b"{}")),
        }
    };
    got.status = status;
    state.got.lock().unwrap().push(got);
    Ok(Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .body(Full::new(answer))
        .unwrap())
}
