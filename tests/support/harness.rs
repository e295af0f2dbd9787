//! Start a sidecar in-process on 127.0.0.1:0 in front of a given upstream, send it requests,
//! read what it stored, and capture its logs for the secret scan.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use authtrail::event::AuditEvent;
use authtrail::sidecar::{self, Listeners, Summary};
use authtrail::store::{self, Query};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Capture every log line of this test binary (debug level and up) in memory.
pub fn init_logs() {
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = LogSink(buf.clone());
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug,hyper=info,hyper_util=info,sqlx=info,h2=info")
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .try_init();
        buf
    });
}

/// Everything logged so far.
pub fn captured_logs() -> String {
    LOGS.get()
        .map(|b| String::from_utf8_lossy(&b.lock().unwrap()).into_owned())
        .unwrap_or_default()
}

pub struct Sidecar {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub db: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<Summary, sidecar::Error>>>,
    pub dir: tempfile::TempDir,
}

/// A config with `routes` (YAML list items, indented by two spaces) in front of `upstream`.
pub fn config_yaml(
    upstream: SocketAddr,
    db: &std::path::Path,
    extra: &str,
    routes: &str,
) -> String {
    format!(
        "upstream: http://{upstream}\nstore:\n  url: sqlite://{}\n  flush_interval: 20ms\n{extra}routes:\n{routes}",
        db.display()
    )
}

pub async fn start(upstream: SocketAddr, extra: &str, routes: &str) -> Sidecar {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trail.db");
    let yaml = config_yaml(upstream, &db, extra, routes);
    let cfg = authtrail::config::load_str(&yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"));
    start_config(cfg, db, dir).await
}

/// Start a sidecar on a loaded config whose store is the SQLite file `db` inside `dir`.
pub async fn start_config(
    cfg: authtrail::config::Config,
    db: PathBuf,
    dir: tempfile::TempDir,
) -> Sidecar {
    init_logs();
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = proxy.local_addr().unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(sidecar::run(cfg, Listeners { proxy, admin }, async move {
        let _ = rx.await;
    }));
    let sc = Sidecar {
        addr,
        admin: admin_addr,
        db,
        stop: Some(tx),
        task: Some(task),
        dir,
    };
    sc.wait_ready().await;
    sc
}

impl Sidecar {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn wait_ready(&self) {
        let url = format!("http://{}/readyz", self.admin);
        for _ in 0..200 {
            if let Ok(r) = send(Method::GET, &url, &[], Bytes::new()).await {
                if r.status == StatusCode::OK {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("sidecar never became ready");
    }

    /// Stop (as on SIGTERM) and wait for the drain and flush.
    pub async fn stop(&mut self) -> Summary {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let task = self.task.take().expect("sidecar already stopped");
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("sidecar did not stop within 30s")
            .expect("sidecar task panicked")
            .expect("sidecar failed")
    }

    /// All stored events, oldest first.
    pub async fn events(&self) -> Vec<AuditEvent> {
        let store = store::open(&format!("sqlite://{}", self.db.display()))
            .await
            .unwrap();
        store
            .query(&Query {
                ascending: true,
                limit: 10_000,
                ..Query::default()
            })
            .await
            .unwrap()
    }

    /// Stored events matching `q` (its limit defaults to 10,000).
    pub async fn query(&self, q: Query) -> Vec<AuditEvent> {
        let store = store::open(&format!("sqlite://{}", self.db.display()))
            .await
            .unwrap();
        let limit = if q.limit == 0 { 10_000 } else { q.limit };
        store.query(&Query { limit, ..q }).await.unwrap()
    }

    /// Wait until at least `n` events are stored (the writer flushes every 20ms here).
    pub async fn wait_events(&self, n: usize) -> Vec<AuditEvent> {
        for _ in 0..300 {
            let evs = self.events().await;
            if evs.len() >= n {
                return evs;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("fewer than {n} events were stored within 3s");
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// `authtrail_exchanges_abandoned_total{when="WHEN"}` from the admin `/metrics` at `admin`
/// (0 before the first).
pub async fn abandoned(admin: SocketAddr, when: &str) -> f64 {
    let url = format!("http://{admin}/metrics");
    let r = send(Method::GET, &url, &[], Bytes::new()).await.unwrap();
    let series = format!("authtrail_exchanges_abandoned_total{{when=\"{when}\"}} ");
    String::from_utf8_lossy(&r.body)
        .lines()
        .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// One HTTP/1.1 request on a fresh connection.
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Reply, String> {
    send_with(false, method, url, headers, body).await
}

pub async fn send_with(
    http2: bool,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Reply, String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(http2)
        .build_http();
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

pub async fn post_json(url: &str, body: serde_json::Value, headers: &[(&str, &str)]) -> Reply {
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    send(Method::POST, url, &h, Bytes::from(body.to_string()))
        .await
        .unwrap()
}

/// The bytes of the SQLite database and its WAL, for the secret scan.
pub fn store_bytes(db: &std::path::Path) -> Vec<u8> {
    let mut all = std::fs::read(db).unwrap_or_default();
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        all.extend(std::fs::read(PathBuf::from(p)).unwrap_or_default());
    }
    all
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}
