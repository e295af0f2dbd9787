//! A test upstream with the behaviours the proxy tests need: echo uploads, fixed bytes, stalls,
//! slow answers. Counts every request it receives.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;

/// FNV-1a, to compare uploads without a hash crate.
pub fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A deterministic body of `n` bytes with every byte value.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

#[derive(Clone)]
pub struct TestUpstream {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
    /// Requests that reached `/slow` (before it answers).
    pub slow_started: Arc<AtomicU64>,
    /// Every request's path, in arrival order.
    pub paths: Arc<std::sync::Mutex<Vec<String>>>,
}

impl TestUpstream {
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

pub async fn spawn() -> TestUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let up = TestUpstream {
        addr,
        requests: Arc::new(AtomicU64::new(0)),
        slow_started: Arc::new(AtomicU64::new(0)),
        paths: Arc::new(std::sync::Mutex::new(Vec::new())),
    };
    super::serve::spawn(listener, up.clone(), handle);
    up
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

async fn handle(
    state: TestUpstream,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    state.paths.lock().unwrap().push(path.clone());
    let headers = req.headers().clone();
    let resp = match path.as_str() {
        "/upload" => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            json(
                StatusCode::OK,
                serde_json::json!({ "len": body.len(), "fnv": fnv(&body).to_string() }),
            )
        }
        "/echo-headers" => {
            let mut map = serde_json::Map::new();
            for (k, v) in &headers {
                map.insert(
                    k.as_str().to_string(),
                    serde_json::Value::String(v.to_str().unwrap_or("").to_string()),
                );
            }
            json(StatusCode::OK, serde_json::Value::Object(map))
        }
        // `302 Location: <to>`: an OAuth server answering an authorization request.
        "/redirect" => {
            let to = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .find(|(k, _)| k == "to")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            Response::builder()
                .status(StatusCode::FOUND)
                .header("location", to)
                .body(Full::new(Bytes::new()))
                .unwrap()
        }
        "/bytes" => Response::builder()
            .status(StatusCode::IM_A_TEAPOT)
            .header("content-type", "application/octet-stream")
            .header("x-upstream", "yes")
            .body(Full::new(Bytes::from(pattern(100_000))))
            .unwrap(),
        "/stall" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            json(StatusCode::OK, serde_json::json!({}))
        }
        "/slow" => {
            state.slow_started.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(400)).await;
            json(
                StatusCode::OK,
                serde_json::json!({ "user": { "id": "u-slow" } }),
            )
        }
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": "not_found" }),
        ),
    };
    Ok(resp)
}
