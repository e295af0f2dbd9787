//! Live reload under load: `authtrail serve` as a child process, requests flowing the whole
//! time, a good config and then a bad one sent with SIGHUP. No request fails; the good map
//! takes effect for new requests; the bad one is rejected and the running map stays.

mod support;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
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
