//! A bounded load generator for `scripts/faults.sh` and `scripts/soak.sh` (127.0.0.1 only). A
//! test helper, not a benchmark: it records what every request got, so a script can compare
//! what clients were told with what the trail holds.
//!
//! ```sh
//! reliability_load --target http://127.0.0.1:8080 --mix faults --paths /a,/b \
//!     --requests 5000 --seconds 30 --concurrency 8 [--rate 200] [--out acks.csv] [--prefix run1]
//! reliability_load --target ... --mix soak --admin http://127.0.0.1:9090 --admin-token T \
//!     --seconds 1800 --requests 100000000 --rate 150
//! ```
//! `--mix faults` POSTs a JSON login to each of `--paths` in turn, with `x-request-id:
//! PREFIX-N`; `--out` gets one CSV line per request: `request_id,path,status` (status 0: no
//! response or a body cut off). `--mix soak` runs mixed traffic against the demo auth server:
//! good and bad logins, refreshes with valid and forged tokens, forged bearer tokens on a mapped
//! admin route, unmapped reads, password resets, and admin API reads. Every run stops at
//! `--requests` or `--seconds`, whichever comes first, and prints a JSON summary.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct Args {
    target: String,
    mix: String,
    paths: Vec<String>,
    requests: u64,
    seconds: u64,
    concurrency: usize,
    rate: Option<u64>,
    out: Option<String>,
    prefix: String,
    admin: Option<String>,
    admin_token: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        target: String::new(),
        mix: "faults".into(),
        paths: vec!["/v1/sessions".into()],
        requests: 1000,
        seconds: 60,
        concurrency: 4,
        rate: None,
        out: None,
        prefix: "r".into(),
        admin: None,
        admin_token: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--target" => a.target = v,
            "--mix" => a.mix = v,
            "--paths" => a.paths = v.split(',').map(str::to_string).collect(),
            "--requests" => a.requests = v.parse().expect("--requests N"),
            "--seconds" => a.seconds = v.parse().expect("--seconds N"),
            "--concurrency" => a.concurrency = v.parse().expect("--concurrency N"),
            "--rate" => a.rate = Some(v.parse().expect("--rate N")),
            "--out" => a.out = Some(v),
            "--prefix" => a.prefix = v,
            "--admin" => a.admin = Some(v),
            "--admin-token" => a.admin_token = Some(v),
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    assert!(
        a.target.starts_with("http://127.") || a.target.starts_with("http://localhost"),
        "--target must be a loopback http:// URL"
    );
    if let Some(admin) = &a.admin {
        assert!(
            admin.starts_with("http://127.") || admin.starts_with("http://localhost"),
            "--admin must be a loopback http:// URL"
        );
    }
    a
}

/// One request's result: the status, or 0 when no response came or its body broke off.
async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, String)],
    body: Option<String>,
) -> (u16, Option<Bytes>) {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let Ok(req) = req.body(Full::new(Bytes::from(body.unwrap_or_default()))) else {
        return (0, None);
    };
    let fut = async {
        let resp = client.request(req).await.ok()?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.ok()?.to_bytes();
        Some((status, bytes))
    };
    match tokio::time::timeout(Duration::from_secs(30), fut).await {
        Ok(Some((s, b))) => (s, Some(b)),
        _ => (0, None),
    }
}

/// A token nobody signed: `alg: none`, or a valid-looking HS256 with a wrong signature.
fn forged(n: u64) -> String {
    let header = if n % 2 == 0 {
        r#"{"alg":"none","typ":"JWT"}"#
    } else {
        r#"{"alg":"HS256","typ":"JWT"}"#
    };
    let claims = format!(
        r#"{{"sub":"u-root","app_id":"app-alpha","role":"admin","typ":"refresh","exp":4102444800,"jti":"forged-{n}"}}"#
    );
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims),
        if n % 2 == 0 { "" } else { "c2lnbmF0dXJl" }
    )
}

#[derive(Default)]
struct Shared {
    /// Refresh tokens from recent logins, each used once (the demo server rotates them).
    refresh: Mutex<Vec<String>>,
    access: Mutex<Option<String>>,
    by_kind: Mutex<BTreeMap<String, BTreeMap<u16, u64>>>,
}

impl Shared {
    fn count(&self, kind: &str, status: u16) {
        let mut m = self.by_kind.lock().unwrap();
        *m.entry(kind.to_string())
            .or_default()
            .entry(status)
            .or_default() += 1;
    }
}

/// One request of the soak mix, chosen by `n`.
async fn soak_one(client: &HttpClient, a: &Args, s: &Shared, n: u64) {
    let t = &a.target;
    let rid = vec![("x-request-id", format!("{}-{n}", a.prefix))];
    let login = |user: &str, pw: &str| {
        Some(format!(
            r#"{{"username":"{user}","password":"{pw}","client":"soak-{}"}}"#,
            n % 7
        ))
    };
    let (kind, (status, body)) = match n % 20 {
        0..=4 => (
            "login_ok",
            send(
                client,
                Method::POST,
                &format!("{t}/v1/sessions"),
                &rid,
                login("alice", "alice-pw-7Qx!"),
            )
            .await,
        ),
        5..=7 => (
            "login_bad_password",
            send(
                client,
                Method::POST,
                &format!("{t}/v1/sessions"),
                &rid,
                login("bob", &format!("wrong-{n}")),
            )
            .await,
        ),
        8..=10 => {
            let path = if n % 2 == 0 {
                "/v1/public/info"
            } else {
                "/healthz"
            };
            (
                "unmapped",
                send(client, Method::GET, &format!("{t}{path}"), &rid, None).await,
            )
        }
        11..=12 => {
            let token = s.refresh.lock().unwrap().pop();
            let kind = if token.is_some() {
                "refresh_valid"
            } else {
                "refresh_missing"
            };
            let body = format!(
                r#"{{"refresh_token":"{}"}}"#,
                token.unwrap_or_else(|| forged(n))
            );
            (
                kind,
                send(
                    client,
                    Method::POST,
                    &format!("{t}/v1/token/refresh"),
                    &rid,
                    Some(body),
                )
                .await,
            )
        }
        13 => (
            "refresh_forged",
            send(
                client,
                Method::POST,
                &format!("{t}/v1/token/refresh"),
                &rid,
                Some(format!(r#"{{"refresh_token":"{}"}}"#, forged(n))),
            )
            .await,
        ),
        14 => {
            let mut h = rid.clone();
            h.push(("authorization", format!("Bearer {}", forged(n))));
            (
                "deactivate_forged_bearer",
                send(
                    client,
                    Method::POST,
                    &format!("{t}/v1/apps/app-alpha/users/u-bob/deactivate"),
                    &h,
                    Some("{}".into()),
                )
                .await,
            )
        }
        15 => {
            let mut h = rid.clone();
            if let Some(tok) = s.access.lock().unwrap().clone() {
                h.push(("authorization", format!("Bearer {tok}")));
            }
            (
                "me_unmapped_valid_bearer",
                send(client, Method::GET, &format!("{t}/v1/me"), &h, None).await,
            )
        }
        16 => {
            let mut h = rid.clone();
            h.push(("x-app-id", "app-beta".into()));
            (
                "password_reset_request",
                send(
                    client,
                    Method::POST,
                    &format!("{t}/v1/password/reset"),
                    &h,
                    Some(r#"{"email":"bob@example.com"}"#.into()),
                )
                .await,
            )
        }
        _ => match (&a.admin, &a.admin_token) {
            (Some(admin), Some(token)) => {
                let q = if n % 2 == 0 {
                    "limit=20"
                } else {
                    "type=auth.*&outcome=failure&limit=50"
                };
                (
                    "admin_read",
                    send(
                        client,
                        Method::GET,
                        &format!("{admin}/v1/events?{q}"),
                        &[("authorization", format!("Bearer {token}"))],
                        None,
                    )
                    .await,
                )
            }
            _ => (
                "unmapped",
                send(client, Method::GET, &format!("{t}/healthz"), &rid, None).await,
            ),
        },
    };
    if kind == "login_ok" || kind == "refresh_valid" {
        if let Some(v) = body.and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()) {
            if let Some(r) = v["refresh_token"].as_str() {
                let mut q = s.refresh.lock().unwrap();
                q.push(r.to_string());
                let len = q.len();
                if len > 64 {
                    q.drain(..len - 64);
                }
            }
            if let Some(acc) = v["access_token"].as_str() {
                *s.access.lock().unwrap() = Some(acc.to_string());
            }
        }
    }
    s.count(kind, status);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = Arc::new(parse_args());
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http();
    let shared = Arc::new(Shared::default());
    let next = Arc::new(AtomicU64::new(0));
    let out: Option<Arc<Mutex<std::io::BufWriter<std::fs::File>>>> = a.out.as_ref().map(|p| {
        Arc::new(Mutex::new(std::io::BufWriter::new(
            std::fs::File::create(p).expect("--out file"),
        )))
    });
    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.seconds);
    let mut workers = Vec::new();
    for _ in 0..a.concurrency {
        let (a, client, shared, next, out) = (
            a.clone(),
            client.clone(),
            shared.clone(),
            next.clone(),
            out.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= a.requests || Instant::now() >= deadline {
                    return;
                }
                if let Some(rate) = a.rate {
                    // Pace to `rate` requests per second overall.
                    let due = started + Duration::from_micros(n * 1_000_000 / rate.max(1));
                    if due > deadline {
                        return;
                    }
                    tokio::time::sleep_until(due.into()).await;
                }
                if a.mix == "soak" {
                    soak_one(&client, &a, &shared, n).await;
                    continue;
                }
                let path = &a.paths[(n as usize) % a.paths.len()];
                let rid = format!("{}-{n}", a.prefix);
                let (status, _) = send(
                    &client,
                    Method::POST,
                    &format!("{}{path}", a.target),
                    &[("x-request-id", rid.clone())],
                    Some(r#"{"username":"alice","password":"alice-pw-7Qx!","email":"alice@example.com"}"#.into()),
                )
                .await;
                shared.count(path, status);
                if let Some(out) = &out {
                    let _ = writeln!(out.lock().unwrap(), "{rid},{path},{status}");
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    if let Some(out) = &out {
        let _ = out.lock().unwrap().flush();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let by_kind = shared.by_kind.lock().unwrap().clone();
    let sent: u64 = by_kind.values().flat_map(|m| m.values()).sum();
    let summary = serde_json::json!({
        "sent": sent,
        "seconds": (elapsed * 10.0).round() / 10.0,
        "rps": ((sent as f64 / elapsed.max(0.001)) * 10.0).round() / 10.0,
        "by_kind": by_kind,
    });
    println!("{summary}");
}
