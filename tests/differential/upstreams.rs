//! The three upstream stacks, each with its own native routing, each logging which handler
//! ran for which `X-Request-Id`: Flask/Werkzeug and express as child processes (killed on
//! drop), and an axum server in this process.

use std::collections::HashMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

/// One handler run: (handler, request id).
pub type Run = (String, String);

pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/differential")
}

/// What is missing to run the child-process upstreams (empty when nothing is).
pub fn missing() -> Vec<String> {
    let d = dir();
    let mut out = Vec::new();
    // The pinned versions (tests/differential/requirements.txt, node/package-lock.json).
    for (what, path) in [
        ("Flask 3.0.3 (pip)", d.join("py-deps/flask-3.0.3.dist-info")),
        (
            "Werkzeug 3.0.3 (pip)",
            d.join("py-deps/werkzeug-3.0.3.dist-info"),
        ),
    ] {
        if !path.exists() {
            out.push(format!("{what}: no {}", path.display()));
        }
    }
    for (what, path, version) in [
        (
            "express (npm)",
            "node/node_modules/express/package.json",
            "4.21.2",
        ),
        (
            "vhost (npm)",
            "node/node_modules/vhost/package.json",
            "3.0.2",
        ),
    ] {
        let path = d.join(path);
        let found = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["version"].as_str().map(str::to_string));
        if found.as_deref() != Some(version) {
            out.push(format!(
                "{what} {version}: {} has {found:?}",
                path.display()
            ));
        }
    }
    for bin in ["python3", "node"] {
        let ok = Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            out.push(format!("{bin}: not on PATH"));
        }
    }
    out
}

pub enum Upstream {
    Child(ChildUpstream),
    Axum(AxumUpstream),
}

impl Upstream {
    pub fn addr(&self) -> SocketAddr {
        match self {
            Upstream::Child(c) => c.addr,
            Upstream::Axum(a) => a.addr,
        }
    }

    /// Every handler run so far, read from the upstream itself (never through the proxy).
    pub fn runs(&self) -> Vec<Run> {
        match self {
            Upstream::Child(c) => c.runs(),
            Upstream::Axum(a) => a.log.lock().unwrap().clone(),
        }
    }
}

/// A python or node upstream: started on a free port (it prints the port), killed on drop.
pub struct ChildUpstream {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl ChildUpstream {
    pub fn flask() -> ChildUpstream {
        let d = dir();
        let mut cmd = Command::new("python3");
        cmd.arg(d.join("upstream_flask.py"))
            .env("PYTHONPATH", d.join("py-deps"))
            .env("PYTHONDONTWRITEBYTECODE", "1");
        ChildUpstream::start("flask", cmd)
    }

    pub fn express() -> ChildUpstream {
        let mut cmd = Command::new("node");
        cmd.arg(dir().join("node/server.js"));
        ChildUpstream::start("express", cmd)
    }

    fn start(name: &str, mut cmd: Command) -> ChildUpstream {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("runs.jsonl");
        let stderr = tmp.path().join("stderr.txt");
        std::fs::write(&log, b"").unwrap();
        let mut child = cmd
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{name} upstream did not start: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let port: Option<u16> = rx
            .recv_timeout(Duration::from_secs(30))
            .ok()
            .and_then(|l| l.trim().parse().ok());
        let mut up = ChildUpstream {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            stderr,
            _dir: tmp,
        };
        match port {
            Some(p) => up.addr.set_port(p),
            None => panic!(
                "{name} upstream printed no port within 30s; its stderr:\n{}",
                up.stderr_text()
            ),
        }
        up
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn runs(&self) -> Vec<Run> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| {
                (
                    v["handler"].as_str().unwrap_or("?").to_string(),
                    v["rid"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

impl Drop for ChildUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The in-process upstream: axum's router (matchit), on the raw path as received. Its
/// handlers read bodies whatever the Content-Type says (as many hand-written handlers do),
/// form fields last-one-wins, and the admin host the way DNS reads it: case-insensitive,
/// without the port and without a trailing dot.
pub struct AxumUpstream {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Run>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AxumUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Log = Arc<Mutex<Vec<Run>>>;

fn ran(log: &Log, headers: &HeaderMap, handler: &str) -> Response {
    let rid = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    log.lock().unwrap().push((handler.to_string(), rid.clone()));
    let body = serde_json::json!({ "handler": handler, "rid": rid }).to_string();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn deactivate(State(log): State<Log>, headers: HeaderMap) -> Response {
    ran(&log, &headers, "deactivate")
}

async fn login(State(log): State<Log>, headers: HeaderMap) -> Response {
    ran(&log, &headers, "login")
}

async fn token(State(log): State<Log>, headers: HeaderMap, body: Bytes) -> Response {
    let fields: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let handler = match fields.get("grant_type").map(String::as_str) {
        Some("password") => "token_password",
        Some("client_credentials") => "token_client_credentials",
        _ => "token_other",
    };
    ran(&log, &headers, handler)
}

fn dns_host(host: &str) -> String {
    let h = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    h.trim_end_matches('.').to_ascii_lowercase()
}

async fn admin_users(State(log): State<Log>, headers: HeaderMap, body: Bytes) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(dns_host);
    if host.as_deref() != Some("admin.example.test") {
        return ran(&log, &headers, "catch_all");
    }
    let op = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("op")?.as_str().map(str::to_string));
    let handler = if op.as_deref() == Some("delete") {
        "admin_users_delete"
    } else {
        "admin_users_other"
    };
    ran(&log, &headers, handler)
}

async fn catch_all(State(log): State<Log>, headers: HeaderMap) -> Response {
    ran(&log, &headers, "catch_all")
}

impl AxumUpstream {
    pub async fn spawn() -> AxumUpstream {
        let log: Log = Arc::default();
        let app = Router::new()
            .route(
                "/v1/apps/{app}/users/{user_id}/deactivate",
                post(deactivate).fallback(catch_all),
            )
            .route("/v1/login", post(login).fallback(catch_all))
            .route("/oauth/token", post(token).fallback(catch_all))
            .route("/v1/admin/users", post(admin_users).fallback(catch_all))
            .fallback(catch_all)
            .with_state(log.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        AxumUpstream { addr, log, task }
    }
}
