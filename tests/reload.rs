//! Live reload under load: `authtrail serve` as a child process, requests flowing the whole
//! time, a good config and then a bad one sent with SIGHUP. No request fails; the good map
//! takes effect for new requests; the bad one is rejected and the running map stays.

mod support;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use support::harness::send;
use support::upstream;

const BIN: &str = env!("CARGO_BIN_EXE_authtrail");

fn config(up: std::net::SocketAddr, db: &std::path::Path, routes: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\nupstream: http://{up}\nstore: {{ url: \"sqlite://{}\", flush_interval: 20ms }}\nroutes:\n{routes}",
        db.display()
    )
}

/// Read the child's JSON log lines until one has `message` (bounded by `max_lines`).
fn wait_log(
    lines: &mut impl Iterator<Item = String>,
    message: &str,
    max_lines: usize,
) -> serde_json::Value {
    for line in lines.take(max_lines) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            if v["fields"]["message"] == message {
                return v;
            }
        }
    }
    panic!("the sidecar never logged {message:?}");
}

#[tokio::test]
async fn sighup_reloads_a_good_map_and_rejects_a_bad_one_while_requests_flow() {
    let up = upstream::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trail.db");
    let path = dir.path().join("authtrail.yaml");
    let echo = "  - id: echo\n    match: { path: /echo-headers }\n    event: account.update\n";
    std::fs::write(&path, config(up.addr, &db, echo)).unwrap();

    let mut child = Command::new(BIN)
        .args([
            "--log-format",
            "json",
            "serve",
            "--config",
            path.to_str().unwrap(),
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut lines = std::iter::from_fn(move || rx.recv_timeout(Duration::from_secs(10)).ok());
    let serving = wait_log(&mut lines, "authtrail serving", 50);
    let base = format!("http://{}", serving["fields"]["proxy"].as_str().unwrap());

    // Traffic for the whole test: bounded, stopped by the flag, every status recorded.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (stop, base) = (stop.clone(), base.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..5_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let path = if i % 2 == 0 {
                    "/echo-headers"
                } else {
                    "/bytes"
                };
                let r = send(Method::GET, &format!("{base}{path}"), &[], Bytes::new()).await;
                statuses.push(r.map(|r| r.status.as_u16()).unwrap_or(0));
            }
            statuses
        })
    };
    let kill = |sig: &str, pid: u32| {
        assert!(Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success());
    };

    tokio::time::sleep(Duration::from_millis(100)).await;
    let bytes = "  - id: bytes\n    match: { path: /bytes }\n    event: support.action\n";
    std::fs::write(&path, config(up.addr, &db, &format!("{echo}{bytes}"))).unwrap();
    kill("-HUP", child.id());
    let reloaded = wait_log(&mut lines, "config reloaded", 200);
    assert_eq!(reloaded["fields"]["routes"], 2);

    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::write(
        &path,
        config(
            up.addr,
            &db,
            "  - id: broken\n    match: { path: \"/x/{\" }\n    event: auth.login\n",
        ),
    )
    .unwrap();
    kill("-HUP", child.id());
    let rejected = wait_log(
        &mut lines,
        "config reload rejected; the running config stays",
        200,
    );
    assert!(rejected["fields"]["errors"]
        .as_str()
        .unwrap()
        .contains("routes[0].match.path: invalid path template \"/x/{\": unclosed brace"));

    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::SeqCst);
    let statuses = traffic.await.unwrap();
    kill("-TERM", child.id());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));

    assert!(statuses.len() >= 20, "traffic flowed: {}", statuses.len());
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 418),
        "a request failed during reload: {statuses:?}"
    );
    std::fs::write(&path, config(up.addr, &db, echo)).unwrap();
    let out = Command::new(BIN)
        .args(["export", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let bytes_events = events
        .iter()
        .filter(|e| e["http"]["route"] == "bytes")
        .count();
    let echo_events = events
        .iter()
        .filter(|e| e["http"]["route"] == "echo")
        .count();
    assert!(bytes_events > 0, "the reloaded map took effect");
    assert!(echo_events > 0);
    // After the rejected reload the good map still applied: /bytes stayed mapped to the end.
    assert!(events.iter().all(|e| e["http"]["route"] != "broken"));
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn admin_api_reload_needs_the_reload_permission_and_reports_errors() {
    let up = upstream::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trail.db");
    let path = dir.path().join("authtrail.yaml");
    let admin = format!(
        "admin:\n  credentials:\n    - {{ name: ops, token_sha256: {}, apps: [\"*\"], permissions: [read, reload] }}\n    - {{ name: support, token_sha256: {}, apps: [app-a], permissions: [read] }}\n",
        sha256_hex("ops-admin-token-0001"),
        sha256_hex("support-token-0002")
    );
    let write = |routes: &str| {
        std::fs::write(
            &path,
            format!(
                "upstream: http://{}\nstore: {{ url: \"sqlite://{}\" }}\n{admin}routes:\n{routes}",
                up.addr,
                db.display()
            ),
        )
        .unwrap()
    };
    write("  - id: echo\n    match: { path: /echo-headers }\n    event: account.update\n");
    let cfg = authtrail::config::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut sc = support::harness::start_config(
        cfg,
        dir.path().join("trail.db"),
        tempfile::tempdir().unwrap(),
    )
    .await;
    let url = format!("http://{}/v1/reload", sc.admin);
    let post = |token: &'static str| {
        let url = url.clone();
        async move {
            let bearer = format!("Bearer {token}");
            send(
                Method::POST,
                &url,
                &[("authorization", &bearer)],
                Bytes::new(),
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(post("support-token-0002").await.status, 403);
    assert_eq!(post("wrong-token").await.status, 401);
    write("  - id: echo\n    match: { path: /echo-headers }\n    event: account.update\n  - id: bytes\n    match: { path: /bytes }\n    event: support.action\n");
    let ok = post("ops-admin-token-0001").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["routes"], 2);
    write("  - id: broken\n    match: { path: \"/x/{\" }\n    event: auth.login\n");
    let bad = post("ops-admin-token-0001").await;
    assert_eq!(bad.status, 422);
    assert!(
        bad.json()["errors"][0]
            .as_str()
            .unwrap()
            .ends_with("routes[0].match.path: invalid path template \"/x/{\": unclosed brace"),
        "{}",
        bad.json()
    );
    // The good map stayed: /bytes is mapped.
    assert_eq!(
        send(Method::GET, &sc.url("/bytes"), &[], Bytes::new())
            .await
            .unwrap()
            .status,
        418
    );
    sc.stop().await;
    assert!(sc.events().await.iter().any(|e| e.http.route == "bytes"));
}

/// A loopback HTTP JWKS endpoint (the fixture key `rsa1`) that counts its fetches and, until
/// `open` is sent `true`, holds every answer.
async fn plain_jwks(open: bool) -> (String, Arc<AtomicU64>, tokio::sync::watch::Sender<bool>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let fetches = Arc::new(AtomicU64::new(0));
    let (open_tx, open_rx) = tokio::sync::watch::channel(open);
    let doc = support::jwks_server::jwks(&["rsa1"]);
    let counted = fetches.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (counted, mut open, doc) = (counted.clone(), open_rx.clone(), doc.clone());
            tokio::spawn(async move {
                let (mut buf, mut head) = ([0u8; 1024], Vec::new());
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                if open.wait_for(|o| *o).await.is_err() {
                    return;
                }
                let resp = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{doc}", doc.len());
                let _ = conn.write_all(resp.as_bytes()).await;
            });
        }
    });
    (url, fetches, open_tx)
}

/// Two reloads at once (a SIGHUP and an API call behave alike: both call `Live::reload`) run one
/// after the other: the one that started first and waits for its key set cannot finish last and
/// put back the file's older content, nor stop the refresh schedule of the key set in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reloads_leave_the_newest_config_in_force_with_its_key_schedule() {
    let up = upstream::spawn().await;
    let (held_url, held_fetches, open_held) = plain_jwks(false).await;
    let (fresh_url, fresh_fetches, _open_fresh) = plain_jwks(true).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trail.db");
    let path = dir.path().join("authtrail.yaml");
    let admin = format!(
        "admin:\n  credentials:\n    - {{ name: ops, token_sha256: {}, apps: [\"*\"], permissions: [read, reload] }}\n",
        sha256_hex("ops-admin-token-0001")
    );
    let write = |keys: &str, route: &str| {
        let text = format!(
            "upstream: http://{}\nstore: {{ url: \"sqlite://{}\", flush_interval: 20ms }}\n{admin}{keys}routes:\n  - id: {route}\n    match: {{ path: /echo-headers }}\n    event: account.update\n",
            up.addr,
            db.display()
        );
        std::fs::write(&path, text).unwrap()
    };
    let keys = |url: &str| {
        format!("keys:\n  idp:\n    jwks_url: {url}\n    refresh: 50ms\n    min_refresh: 0ms\n    issuer: https://issuer.test\n    algorithms: [RS256]\n")
    };
    write("", "start");
    let cfg = authtrail::config::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut sc =
        support::harness::start_config(cfg, db.clone(), tempfile::tempdir().unwrap()).await;
    let url = format!("http://{}/v1/reload", sc.admin);
    let reload = || {
        let url = url.clone();
        tokio::spawn(async move {
            let bearer = "Bearer ops-admin-token-0001";
            send(
                Method::POST,
                &url,
                &[("authorization", bearer)],
                Bytes::new(),
            )
            .await
            .unwrap()
        })
    };

    // The first reload reads a key set whose endpoint holds its answer.
    write(&keys(&held_url), "first");
    let first = reload();
    let waiting = async {
        while held_fetches.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the first reload never fetched its key set");
    // The second reads the file's newest content, with a key set that answers at once; unless
    // reloads are serialised it is done long before the first.
    write(&keys(&fresh_url), "second");
    let mut second = reload();
    let early = tokio::time::timeout(Duration::from_millis(500), &mut second).await;
    open_held.send_replace(true);
    assert_eq!(first.await.unwrap().status, 200);
    let second = match early {
        Ok(done) => done,
        Err(_) => second.await,
    };
    assert_eq!(second.unwrap().status, 200);

    // The key set in force is refreshed on its schedule (every 50ms).
    let fetched = fresh_fetches.load(Ordering::SeqCst);
    let refreshed = async {
        while fresh_fetches.load(Ordering::SeqCst) < fetched + 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let scheduled = tokio::time::timeout(Duration::from_secs(3), refreshed).await;
    // The newest content is in force.
    let r = send(Method::GET, &sc.url("/echo-headers"), &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    sc.stop().await;
    let routes: Vec<String> = sc
        .events()
        .await
        .into_iter()
        .map(|e| e.http.route)
        .filter(|r| ["start", "first", "second"].contains(&r.as_str()))
        .collect();
    assert_eq!(
        routes.last().map(String::as_str),
        Some("second"),
        "{routes:?}"
    );
    assert!(
        scheduled.is_ok(),
        "the key set in force is no longer refreshed ({} fetches)",
        fresh_fetches.load(Ordering::SeqCst)
    );
}
