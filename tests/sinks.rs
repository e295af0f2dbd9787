//! Stream sinks: JSON lines on the binary's stdout parse as the stored events (and OCSF lines as
//! OCSF); a webhook sink delivers signed batches, retried after a 500; a stalled webhook fills its
//! own queue and drops (counted) while the proxy and the store carry on untouched.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use authtrail::event::AuditEvent;
use bytes::Bytes;
use hyper::Method;
use serde_json::json;
use support::harness::{self, post_json, send};
use support::{upstream, webhook};

const BIN: &str = env!("CARGO_BIN_EXE_authtrail");
const SECRET: &str = "sink-secret-0123456789";

const ROUTES: &str = r#"  - id: login
    match: { method: POST, path: /login }
    event: auth.login
    actor: { request_body: /username }
  - id: deactivate
    match: { method: POST, path: "/v1/users/{id}/deactivate" }
    event: account.deactivate
    target: { kind: user, from: { path: id } }
"#;

#[tokio::test]
async fn stdout_lines_parse_as_the_stored_events() {
    let up = upstream::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trail.db");
    let config = dir.path().join("authtrail.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\nupstream: http://{}\n\
             store: {{ url: \"sqlite://{}\", flush_interval: 20ms }}\n\
             sinks:\n  out: {{ stdout: {{ format: json }} }}\n  siem: {{ stdout: {{ format: ocsf }}, events: [account.*] }}\n\
             routes:\n{ROUTES}",
            up.addr,
            db.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut addr = None;
    let mut line = String::new();
    for _ in 0..50 {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            if v["fields"]["message"] == "authtrail serving" {
                addr = v["fields"]["proxy"].as_str().map(str::to_string);
                break;
            }
        }
    }
    let addr = addr.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("serve never logged its address: {line}")
    });
    // Keep draining stderr so the child never blocks on it.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
    });

    for user in ["alice", "bob"] {
        post_json(
            &format!("http://{addr}/login"),
            json!({ "username": user }),
            &[],
        )
        .await;
    }
    post_json(
        &format!("http://{addr}/v1/users/u-7/deactivate"),
        json!({}),
        &[],
    )
    .await;
    send(
        Method::GET,
        &format!("http://{addr}/unmapped"),
        &[],
        Bytes::new(),
    )
    .await
    .unwrap();
    // SIGTERM: the sinks write what is queued before the process exits.
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");

    let (mut events, mut ocsf) = (Vec::new(), Vec::new());
    for line in out.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if v.get("class_uid").is_some() {
            ocsf.push(v);
        } else {
            let e: AuditEvent = serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}: {line}"));
            events.push(e);
        }
    }
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["auth.login", "auth.login", "account.deactivate"]);
    assert_eq!(events[0].actor.id.as_deref(), Some("alice"));
    // Streamed before they are stored: no seq, no chain.
    assert!(events.iter().all(|e| e.seq.is_none() && e.chain.is_none()));
    assert_eq!(ocsf.len(), 1, "{ocsf:?}");
    assert_eq!(ocsf[0]["class_uid"], 3001);
    support::ocsf::assert_valid(&ocsf[0]);

    let store = authtrail::store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let stored: BTreeSet<String> = store
        .query(&authtrail::store::Query {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .iter()
        .map(|e| e.id.to_string())
        .collect();
    let streamed: BTreeSet<String> = events.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(stored, streamed);
}

#[tokio::test]
async fn webhook_sink_delivers_signed_batches_and_retries_a_500() {
    let up = upstream::spawn().await;
    let hook = webhook::spawn().await;
    hook.fail_next(1);
    let extra = format!(
        "sinks:\n  hook: {{ webhook: \"{}\", secret: \"{SECRET}\", batch: 3, flush: 100ms, backoff: 20ms }}\n",
        hook.url("/ingest")
    );
    let mut sc = harness::start(up.addr, &extra, ROUTES).await;
    for i in 0..7 {
        post_json(
            &sc.url("/login"),
            json!({ "username": format!("u{i}") }),
            &[],
        )
        .await;
    }
    let events_in = |r: &[webhook::Received]| -> usize {
        r.iter()
            .filter(|x| x.status == 200)
            .map(|x| x.json()["events"].as_array().unwrap().len())
            .sum()
    };
    let got = hook
        .wait_until("seven events delivered", |r| events_in(r) == 7)
        .await;
    assert_eq!(got[0].status, 500);
    assert_eq!(got[0].body, got[1].body, "the retry resends the batch");
    let mut streamed = BTreeSet::new();
    for r in got.iter().filter(|r| r.status == 200) {
        assert!(r.signed_with(SECRET), "{r:?}");
        let body = r.json();
        assert_eq!(body["sink"], "hook");
        let batch = body["events"].as_array().unwrap();
        assert!((1..=3).contains(&batch.len()), "{}", batch.len());
        for e in batch {
            let e: AuditEvent = serde_json::from_value(e.clone()).unwrap();
            assert_eq!(e.event_type, "auth.login");
            streamed.insert(e.id.to_string());
        }
    }
    let stored: BTreeSet<String> = sc
        .wait_events(7)
        .await
        .iter()
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(stored, streamed);
    sc.stop().await;
}

#[tokio::test]
async fn a_stalled_sink_drops_and_counts_without_slowing_the_proxy_or_the_store() {
    let up = upstream::spawn().await;
    let hook = webhook::spawn().await;
    hook.stall();
    let extra = format!(
        "sinks:\n  slow: {{ webhook: \"{}\", queue: 4, batch: 1, timeout: 10s, retries: 0 }}\n",
        hook.url("/ingest")
    );
    let sc = harness::start(up.addr, &extra, ROUTES).await;
    let started = Instant::now();
    for i in 0..30 {
        let t = Instant::now();
        let r = post_json(
            &sc.url("/login"),
            json!({ "username": format!("u{i}") }),
            &[],
        )
        .await;
        assert_eq!(r.status, 404);
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(sc.wait_events(30).await.len(), 30);
    let text = send(
        Method::GET,
        &format!("http://{}/metrics", sc.admin),
        &[],
        Bytes::new(),
    )
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&text.body).into_owned();
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit_once(' '))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
    };
    // One in flight, four queued: the other 25 were dropped.
    let dropped = value("authtrail_sink_events_dropped_total{sink=\"slow\"}");
    assert!(dropped >= 25.0, "{dropped}");
    assert_eq!(value("authtrail_sink_queue_depth{sink=\"slow\"}"), 4.0);
    assert_eq!(
        value("authtrail_sink_events_sent_total{sink=\"slow\"}"),
        0.0
    );
    assert_eq!(value("authtrail_events_dropped_total"), 0.0);
    assert_eq!(value("authtrail_events_written_total"), 30.0);
    // Not stopped: shutdown would give the stalled webhook its 5s to finish.
    drop(sc);
}
