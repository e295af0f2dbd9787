//! Bounded load helpers for `scripts/bench.sh` (127.0.0.1 only). A benchmark helper, not a test.
//!
//! ```sh
//! bench_client mint SECRET SUB APP                      # an HS256 bearer token, valid 24 h
//! bench_client requests ADDR PATH N CONNS [BEARER]      # exactly N POSTs over CONNS keep-alive connections
//! bench_client idle ADDR PATH CONNS HOLD_SECS           # CONNS keep-alive connections, one request each, then idle
//! bench_client fsync DIR N                              # N overwrites of a 4 KiB page, each made durable
//! ```
//! `requests` is what the callgrind runs use: a fixed request count makes instructions per
//! request comparable between builds. `idle` opens its connections at most 256 at a time, prints
//! `ready OPEN FAILED` once every connection has had its answer, holds them idle for
//! `HOLD_SECS`, then closes them all and exits. `fsync` measures the disk under `DIR` the way a
//! durable commit uses it: a 4 MiB file written and synced once, then N 4 KiB `pwrite`s cycling
//! through it, each followed by `fdatasync` (a write-ahead log reused after its checkpoint); it
//! prints the latency percentiles of write + `fdatasync` and removes the file.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// The request body of every benchmark case (a JSON login).
pub const LOGIN_BODY: &str = r#"{"username":"alice","password":"correct horse battery staple"}"#;

/// Most connection attempts in flight at once in `idle`.
const OPEN_PARALLEL: usize = 256;

fn usage() -> ! {
    eprintln!(
        "usage: bench_client mint SECRET SUB APP\n\
         \x20      bench_client requests ADDR PATH N CONNS [BEARER]\n\
         \x20      bench_client idle ADDR PATH CONNS HOLD_SECS\n\
         \x20      bench_client fsync DIR N"
    );
    std::process::exit(2)
}

fn arg(args: &[String], i: usize) -> &str {
    args.get(i).map(String::as_str).unwrap_or_else(|| usage())
}

fn num(args: &[String], i: usize) -> u64 {
    arg(args, i).parse().unwrap_or_else(|_| usage())
}

fn loopback(s: &str) -> SocketAddr {
    let addr: SocketAddr = s.parse().unwrap_or_else(|_| usage());
    if !addr.ip().is_loopback() {
        eprintln!("bench_client talks to 127.0.0.1 only");
        std::process::exit(2);
    }
    addr
}

fn mint(secret: &str, sub: &str, app: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = serde_json::json!({
        "sub": sub,
        "app_id": app,
        "iat": now,
        "exp": now + 24 * 3600,
        "jti": format!("bench-{now}"),
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap_or_else(|e| {
        eprintln!("mint: {e}");
        std::process::exit(1)
    })
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> std::io::Result<Sender> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn request(addr: SocketAddr, path: &str, bearer: Option<&str>) -> hyper::Request<Full<Bytes>> {
    let mut b = hyper::Request::post(path)
        .header(http::header::HOST, addr.to_string())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, "bench_client/1");
    if let Some(t) = bearer {
        b = b.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b.body(Full::new(Bytes::from_static(LOGIN_BODY.as_bytes())))
        .unwrap_or_else(|e| {
            eprintln!("request: {e}");
            std::process::exit(1)
        })
}

/// One request on `sender`; true on a 2xx answer read to its end.
async fn one(sender: &mut Sender, req: hyper::Request<Full<Bytes>>) -> bool {
    if sender.ready().await.is_err() {
        return false;
    }
    match sender.send_request(req).await {
        Ok(resp) => {
            let ok = resp.status().is_success();
            ok && resp.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}

async fn requests(addr: SocketAddr, path: String, n: u64, conns: u64, bearer: Option<String>) {
    let left = Arc::new(AtomicU64::new(n));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns.max(1) {
        let (left, ok, failed) = (left.clone(), ok.clone(), failed.clone());
        let (path, bearer) = (path.clone(), bearer.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = None;
            // Every iteration takes one request off the budget: the loop is bounded by `n`.
            while left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1))
                .is_ok()
            {
                if sender.is_none() {
                    sender = connect(addr).await.ok();
                }
                let done = match sender.as_mut() {
                    Some(s) => one(s, request(addr, &path, bearer.as_deref())).await,
                    None => false,
                };
                if done {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    sender = None;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    let ok = ok.load(Ordering::Relaxed);
    println!(
        "requests ok={ok} failed={} secs={secs:.3} rps={:.0}",
        failed.load(Ordering::Relaxed),
        ok as f64 / secs.max(1e-9)
    );
}

async fn idle(addr: SocketAddr, path: String, conns: u64, hold: u64) {
    let gate = Arc::new(Semaphore::new(OPEN_PARALLEL));
    let mut tasks = Vec::with_capacity(conns as usize);
    for _ in 0..conns {
        let (gate, path) = (gate.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.ok()?;
            let mut sender = tokio::time::timeout(Duration::from_secs(30), connect(addr))
                .await
                .ok()?
                .ok()?;
            one(&mut sender, request(addr, &path, None))
                .await
                .then_some(sender)
        }));
    }
    let mut held = Vec::with_capacity(conns as usize);
    let mut failed = 0u64;
    for t in tasks {
        match t.await {
            Ok(Some(s)) => held.push(s),
            _ => failed += 1,
        }
    }
    println!("ready {} {failed}", held.len());
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let still_open = held.iter().filter(|s| !s.is_closed()).count();
    println!("closing {still_open}");
}

/// `N` durable 4 KiB overwrites in a file under `dir`: p50/p99 of `pwrite` + `fdatasync`.
fn fsync(dir: &str, n: u64) {
    use std::os::unix::fs::FileExt;
    const PAGE: usize = 4096;
    const PAGES: u64 = 1024;
    let path = std::path::Path::new(dir).join("bench-fsync-probe");
    let fail = |what: &str, e: std::io::Error| -> ! {
        eprintln!("fsync: {what} {}: {e}", path.display());
        std::process::exit(1)
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| fail("open", e));
    // Allocated and synced first, so every measured sync flushes data, not the file's size.
    file.write_all_at(&vec![0u8; PAGE * PAGES as usize], 0)
        .and_then(|()| file.sync_all())
        .unwrap_or_else(|e| fail("allocate", e));
    let page = [0x5au8; PAGE];
    let mut took = Vec::with_capacity(n as usize);
    for i in 0..n {
        let t = Instant::now();
        file.write_all_at(&page, (i % PAGES) * PAGE as u64)
            .and_then(|()| file.sync_data())
            .unwrap_or_else(|e| fail("write", e));
        took.push(t.elapsed());
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    took.sort();
    let at = |q: f64| {
        took.get(((took.len() as f64 * q) as usize).min(took.len().saturating_sub(1)))
            .map_or(0, |d| d.as_micros())
    };
    println!("fsync n={n} p50_us={} p99_us={}", at(0.5), at(0.99));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("runtime: {e}");
            std::process::exit(1)
        });
    match arg(&args, 0) {
        "mint" => println!("{}", mint(arg(&args, 1), arg(&args, 2), arg(&args, 3))),
        "requests" => rt.block_on(requests(
            loopback(arg(&args, 1)),
            arg(&args, 2).to_string(),
            num(&args, 3),
            num(&args, 4),
            args.get(5).cloned(),
        )),
        "idle" => rt.block_on(idle(
            loopback(arg(&args, 1)),
            arg(&args, 2).to_string(),
            num(&args, 3),
            num(&args, 4),
        )),
        "fsync" => fsync(arg(&args, 1), num(&args, 2).max(1)),
        _ => usage(),
    }
}
