//! Stream sinks: JSON lines on the binary's stdout parse as the stored events (and OCSF lines as
//! OCSF); a webhook sink delivers signed batches, retried after a 500; a stalled webhook fills its
//! own queue and drops (counted) while the proxy and the store carry on untouched.
//!
//! Syslog against a real rsyslogd (tests/support/rsyslog.rs): RFC 5424 over TCP (and again
//! after rsyslog restarts), TLS with CEF, UDP with JSON, each line as rsyslog parsed it. The HTTP
//! products against a receiver here that checks each one's documented wire format: Splunk HEC
//! (token header, gzip), Elasticsearch `_bulk` (NDJSON, per-item errors, a 429 item resent),
//! Loki (streams, labels, nanosecond values) and OTLP/HTTP protobuf logs (decoded, partial
//! success), with retries on 5xx and 429.

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
use support::{rsyslog, upstream, webhook};

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

/// A counter or gauge of the sidecar's `/metrics`.
async fn metric(sc: &harness::Sidecar, series: &str) -> f64 {
    let r = send(
        Method::GET,
        &format!("http://{}/metrics", sc.admin),
        &[],
        Bytes::new(),
    )
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&r.body).into_owned();
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit_once(' '))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// Wait (up to 10s) until `series` reaches `want`.
async fn wait_metric(sc: &harness::Sidecar, series: &str, want: f64) {
    for _ in 0..1_000 {
        if metric(sc, series).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{series} is {} after 10s, not {want}",
        metric(sc, series).await
    );
}

async fn logins(sc: &harness::Sidecar, users: &[&str]) {
    for user in users {
        post_json(&sc.url("/login"), json!({ "username": user }), &[]).await;
    }
}

/// Syslog severity the sink gives an event's outcome.
fn syslog_severity(e: &AuditEvent) -> u16 {
    match e.outcome.as_str() {
        "success" => 6,
        "failure" => 4,
        "unknown" => 5,
        _ => 3,
    }
}

/// `HOST:PORT` of rsyslog's input.
fn local(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

#[tokio::test]
async fn syslog_over_tcp_reaches_rsyslog_as_rfc5424_and_reconnects_after_a_restart() {
    if !rsyslog::available() {
        return;
    }
    let rs = rsyslog::Rsyslog::start();
    let up = upstream::spawn().await;
    let extra = format!(
        "sinks:\n  siem: {{ syslog: {{ address: \"{}\", transport: tcp, facility: authpriv, hostname: pod-1 }}, backoff: 50ms }}\n",
        local(rs.tcp)
    );
    let mut sc = harness::start(up.addr, &extra, ROUTES).await;
    logins(&sc, &["alice", "bob"]).await;
    post_json(&sc.url("/v1/users/u-7/deactivate"), json!({}), &[]).await;
    let lines = rs.wait_lines(3).await;
    let stored = sc.wait_events(3).await;
    for line in &lines {
        assert_eq!(line.version, "1", "parsed as RFC 5424: {line:?}");
        assert_eq!(line.input, "tcp");
        assert_eq!(line.hostname, "pod-1");
        assert_eq!(line.app_name, "authtrail");
        assert_eq!(line.procid, std::process::id().to_string());
        assert_eq!(
            line.structured_data,
            format!(
                "[origin software=\"authtrail\" swVersion=\"{}\"]",
                env!("CARGO_PKG_VERSION")
            )
        );
        let e: AuditEvent =
            serde_json::from_str(&line.msg).unwrap_or_else(|err| panic!("{err}: {:?}", line.msg));
        assert_eq!(line.msgid, e.event_type);
        assert_eq!(line.pri, 10 * 8 + syslog_severity(&e), "{line:?}");
        assert_eq!(
            line.timestamp,
            authtrail::event::rfc3339_millis::format(e.time)
        );
        let same = stored
            .iter()
            .find(|s| s.id == e.id)
            .expect("a stored event");
        assert_eq!(
            AuditEvent {
                seq: None,
                chain: None,
                ..same.clone()
            },
            e
        );
    }
    let msgids: Vec<&str> = lines.iter().map(|l| l.msgid.as_str()).collect();
    assert_eq!(msgids, ["auth.login", "auth.login", "account.deactivate"]);

    // rsyslog goes away and comes back on the same port: the sink notices the closed
    // connection and reconnects.
    let rs = rs.restart();
    logins(&sc, &["carol", "dave"]).await;
    let lines = rs.wait_lines(5).await;
    let actors: Vec<String> = lines[3..]
        .iter()
        .map(|l| {
            serde_json::from_str::<AuditEvent>(&l.msg)
                .unwrap()
                .actor
                .id
                .unwrap()
        })
        .collect();
    assert_eq!(actors, ["carol", "dave"]);
    wait_metric(&sc, "authtrail_sink_events_sent_total{sink=\"siem\"}", 5.0).await;
    assert_eq!(
        metric(&sc, "authtrail_sink_events_failed_total{sink=\"siem\"}").await,
        0.0
    );
    sc.stop().await;
}

/// A CEF extension as key/value pairs, values unescaped.
fn cef_extension(ext: &str) -> Vec<(String, String)> {
    // Split at each unescaped `=`: the key is the word before it.
    let chars: Vec<char> = ext.chars().collect();
    let mut eqs = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '=' => {
                eqs.push(i);
                i += 1;
            }
            _ => i += 1,
        }
    }
    let mut out = Vec::new();
    for (n, &eq) in eqs.iter().enumerate() {
        let key_start = chars[..eq]
            .iter()
            .rposition(|c| *c == ' ')
            .map_or(0, |p| p + 1);
        let key: String = chars[key_start..eq].iter().collect();
        let end = match eqs.get(n + 1) {
            Some(&next) => chars[..next].iter().rposition(|c| *c == ' ').unwrap(),
            None => chars.len(),
        };
        let raw: String = chars[eq + 1..end].iter().collect();
        let mut value = String::new();
        let mut it = raw.chars();
        while let Some(c) = it.next() {
            if c == '\\' {
                match it.next() {
                    Some('n') => value.push('\n'),
                    Some('r') => value.push('\r'),
                    Some(other) => value.push(other),
                    None => {}
                }
            } else {
                value.push(c);
            }
        }
        assert!(
            key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad key {key:?} in {ext}"
        );
        out.push((key, value));
    }
    out
}

#[tokio::test]
async fn syslog_over_tls_carries_cef_and_over_udp_json() {
    if !rsyslog::available() {
        return;
    }
    let rs = rsyslog::Rsyslog::start();
    let up = upstream::spawn().await;
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ca.pem");
    let extra = format!(
        "sinks:\n  cef: {{ syslog: {{ address: \"{}\", transport: tls, format: cef, msgid: AUTHTRAIL }}, ca_file: \"{ca}\" }}\n  udp: {{ syslog: {{ address: \"{}\", transport: udp, facility: local4 }}, events: [account.*] }}\n",
        local(rs.tls),
        local(rs.udp)
    );
    let sc = harness::start(up.addr, &extra, ROUTES).await;
    let tricky = "eve|x=1\\y\nz";
    logins(&sc, &[tricky]).await;
    post_json(&sc.url("/v1/users/u-9/deactivate"), json!({}), &[]).await;
    let lines = rs.wait_lines(3).await;
    let stored = sc.wait_events(2).await;

    let tls: Vec<&rsyslog::Line> = lines.iter().filter(|l| l.input == "tls").collect();
    assert_eq!(tls.len(), 2, "{lines:#?}");
    for (line, e) in tls.iter().zip(&stored) {
        assert_eq!(
            (line.version.as_str(), line.msgid.as_str()),
            ("1", "AUTHTRAIL")
        );
        assert_eq!(line.pri, 4 * 8 + syslog_severity(e));
        // CEF:Version|Vendor|Product|Version|Class|Name|Severity|Extension; the header has no
        // unescaped pipe inside a field here.
        let parts: Vec<&str> = line.msg.splitn(8, '|').collect();
        assert_eq!(parts.len(), 8, "{}", line.msg);
        assert_eq!(
            &parts[..5],
            [
                "CEF:0",
                "authtrail",
                "authtrail",
                env!("CARGO_PKG_VERSION"),
                e.event_type.as_str()
            ]
        );
        assert_eq!(parts[5], format!("{} {}", e.event_type, e.outcome));
        let sev: u8 = parts[6].parse().unwrap();
        assert!(sev <= 10);
        let ext = cef_extension(parts[7]);
        let get = |k: &str| {
            ext.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("no {k} in {ext:?}"))
        };
        assert_eq!(get("externalId"), e.id.to_string());
        assert_eq!(get("rt"), authtrail::event::unix_millis(e.time).to_string());
        assert_eq!(get("outcome"), e.outcome.as_str());
        assert_eq!(get("src"), "127.0.0.1");
        assert_eq!(get("requestMethod"), "POST");
        assert_eq!(get("request"), e.http.path);
        assert_eq!(
            (get("cs2Label"), get("cs2")),
            ("requestId", e.http.request_id.as_str())
        );
        assert_eq!(
            (get("cs4Label"), get("cs4")),
            ("route", e.http.route.as_str())
        );
        match e.event_type.as_str() {
            "auth.login" => assert_eq!(get("suser"), tricky),
            _ => {
                assert_eq!(get("duser"), "u-9");
                assert_eq!((get("cs3Label"), get("cs3")), ("target", "user:u-9"));
            }
        }
    }

    let udp: Vec<&rsyslog::Line> = lines.iter().filter(|l| l.input == "udp").collect();
    assert_eq!(udp.len(), 1, "{lines:#?}");
    let e: AuditEvent = serde_json::from_str(&udp[0].msg).unwrap();
    assert_eq!(e.event_type, "account.deactivate");
    assert_eq!(udp[0].version, "1");
    assert_eq!(udp[0].pri, 20 * 8 + syslog_severity(&e));
    assert_eq!(e.id, stored[1].id);
    drop(sc);
}

/// Concatenated (or newline-separated) JSON values.
fn json_stream(body: &[u8]) -> Vec<serde_json::Value> {
    serde_json::Deserializer::from_slice(body)
        .into_iter::<serde_json::Value>()
        .map(Result::unwrap)
        .collect()
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test]
async fn splunk_hec_gets_its_event_json_gzipped_with_the_token_header_and_a_503_retried() {
    std::env::set_var("AUTHTRAIL_TEST_HEC_TOKEN", "0f5e-hec-token-test");
    let up = upstream::spawn().await;
    let hec = webhook::spawn().await;
    hec.fail_with(503);
    hec.fail_next(1);
    hec.respond(|_| (200, Bytes::from_static(br#"{"text":"Success","code":0}"#)));
    let extra = format!(
        "sinks:\n  hec: {{ http: {{ url: \"{}\", body: splunk_hec, index: audit, host: pod-1, gzip: true, headers: {{ Authorization: \"Splunk ${{AUTHTRAIL_TEST_HEC_TOKEN}}\" }} }}, batch: 3, flush: 2s, backoff: 20ms }}\n",
        hec.url("/services/collector/event")
    );
    let mut sc = harness::start(up.addr, &extra, ROUTES).await;
    logins(&sc, &["u1", "u2", "u3"]).await;
    let got = hec
        .wait_until("a delivered batch", |r| r.iter().any(|x| x.status == 200))
        .await;
    assert_eq!(got[0].status, 503);
    assert_eq!(got[0].body, got[1].body, "the retry resends the batch");
    let r = &got[1];
    assert_eq!(r.path, "/services/collector/event");
    assert_eq!(r.headers["authorization"], "Splunk 0f5e-hec-token-test");
    assert_eq!(r.headers["content-encoding"], "gzip");
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(r.headers.get("x-authtrail-signature").is_none());
    let objs = json_stream(&gunzip(&r.body));
    let stored = sc.wait_events(3).await;
    assert_eq!(objs.len(), 3);
    for (o, s) in objs.iter().zip(&stored) {
        let keys: BTreeSet<&str> = o.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["time", "host", "source", "sourcetype", "index", "event"])
        );
        assert_eq!(
            (&o["host"], &o["source"], &o["sourcetype"], &o["index"]),
            (
                &json!("pod-1"),
                &json!("authtrail"),
                &json!("authtrail:event"),
                &json!("audit")
            )
        );
        let ms = authtrail::event::unix_millis(s.time);
        assert_eq!((o["time"].as_f64().unwrap() * 1000.0).round() as i64, ms);
        let e: AuditEvent = serde_json::from_value(o["event"].clone()).unwrap();
        assert_eq!(e.id, s.id);
    }
    wait_metric(&sc, "authtrail_sink_events_sent_total{sink=\"hec\"}", 3.0).await;
    sc.stop().await;
    assert!(!harness::captured_logs().contains("0f5e-hec-token-test"));
}

#[tokio::test]
async fn elasticsearch_bulk_is_ndjson_create_by_event_id_and_per_item_errors_count() {
    let up = upstream::spawn().await;
    let es = webhook::spawn().await;
    // First request: item 1 refused for good, item 2 rejected (429: sent again); then all ok.
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let c = calls.clone();
    es.respond(move |r| {
        let n = c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let lines: Vec<serde_json::Value> = json_stream(&r.body);
        let items: Vec<serde_json::Value> = lines
            .chunks(2)
            .enumerate()
            .map(|(i, pair)| {
                let id = pair[0]["create"]["_id"].clone();
                let (status, error) = match (n, i) {
                    (0, 1) => (400, Some("document_parsing_exception")),
                    (0, 2) => (429, Some("es_rejected_execution_exception")),
                    _ => (201, None),
                };
                let mut res = json!({ "_index": "audit-trail", "_id": id, "status": status });
                if let Some(t) = error {
                    res["error"] = json!({ "type": t, "reason": "quoted doc value" });
                }
                json!({ "create": res })
            })
            .collect();
        let errors = items.iter().any(|i| i["create"]["status"] != 201);
        let body = json!({ "took": 2, "errors": errors, "items": items });
        (200, Bytes::from(body.to_string()))
    });
    let extra = format!(
        "sinks:\n  es: {{ http: {{ url: \"{}\", body: elasticsearch_bulk, index: audit-trail }}, batch: 3, flush: 2s, backoff: 20ms }}\n",
        es.url("/_bulk")
    );
    let mut sc = harness::start(up.addr, &extra, ROUTES).await;
    logins(&sc, &["u1", "u2", "u3"]).await;
    let got = es.wait_until("two requests", |r| r.len() >= 2).await;
    let stored = sc.wait_events(3).await;
    let first = &got[0];
    assert_eq!(first.headers["content-type"], "application/x-ndjson");
    assert!(first.body.ends_with(b"\n"), "NDJSON ends with a newline");
    let lines = json_stream(&first.body);
    assert_eq!(lines.len(), 6);
    for (pair, s) in lines.chunks(2).zip(&stored) {
        assert_eq!(
            pair[0],
            json!({ "create": { "_index": "audit-trail", "_id": s.id.to_string() } })
        );
        assert_eq!(
            pair[1]["@timestamp"],
            json!(authtrail::event::rfc3339_millis::format(s.time))
        );
        let mut doc = pair[1].clone();
        doc.as_object_mut().unwrap().remove("@timestamp");
        let e: AuditEvent = serde_json::from_value(doc).unwrap();
        assert_eq!(e.id, s.id);
    }
    // Only the 429 item went again.
    let again = json_stream(&got[1].body);
    assert_eq!(again.len(), 2);
    assert_eq!(again[0]["create"]["_id"], json!(stored[2].id.to_string()));
    wait_metric(&sc, "authtrail_sink_events_sent_total{sink=\"es\"}", 2.0).await;
    assert_eq!(
        metric(&sc, "authtrail_sink_events_failed_total{sink=\"es\"}").await,
        1.0
    );
    sc.stop().await;
    let logs = harness::captured_logs();
    assert!(logs.contains("document_parsing_exception"));
    assert!(!logs.contains("quoted doc value"));
}

#[tokio::test]
async fn loki_push_groups_events_into_low_cardinality_streams_and_retries_a_429() {
    let up = upstream::spawn().await;
    let loki = webhook::spawn().await;
    loki.fail_with(429);
    loki.fail_next(1);
    loki.respond(|_| (204, Bytes::new()));
    let extra = format!(
        "sinks:\n  loki: {{ http: {{ url: \"{}\", body: loki }}, batch: 3, flush: 2s, backoff: 20ms }}\n",
        loki.url("/loki/api/v1/push")
    );
    let mut sc = harness::start(up.addr, &extra, ROUTES).await;
    logins(&sc, &["u1", "u2"]).await;
    post_json(&sc.url("/v1/users/u-3/deactivate"), json!({}), &[]).await;
    let got = loki
        .wait_until("a delivered push", |r| r.iter().any(|x| x.status == 204))
        .await;
    assert_eq!(got[0].status, 429);
    let r = &got[1];
    assert_eq!(r.path, "/loki/api/v1/push");
    assert_eq!(r.headers["content-type"], "application/json");
    let stored = sc.wait_events(3).await;
    let push = r.json();
    let streams = push["streams"].as_array().unwrap();
    let mut seen = Vec::new();
    for st in streams {
        let labels = st["stream"].as_object().unwrap();
        let names: BTreeSet<&str> = labels.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            BTreeSet::from(["source", "app", "event_type", "outcome"])
        );
        for v in st["values"].as_array().unwrap() {
            let ns: i128 = v[0].as_str().unwrap().parse().unwrap();
            let e: AuditEvent = serde_json::from_str(v[1].as_str().unwrap()).unwrap();
            assert_eq!(ns, e.time.unix_timestamp_nanos());
            assert_eq!(labels["event_type"], json!(e.event_type));
            assert_eq!(labels["outcome"], json!(e.outcome.as_str()));
            assert_eq!(labels["app"], json!("-"));
            seen.push(e.id);
        }
    }
    // Two logins share a stream (same labels); the deactivation has its own.
    assert_eq!(streams.len(), 2, "{push}");
    let mut want: Vec<_> = stored.iter().map(|e| e.id).collect();
    want.sort();
    seen.sort();
    assert_eq!(seen, want);
    wait_metric(&sc, "authtrail_sink_events_sent_total{sink=\"loki\"}", 3.0).await;
    sc.stop().await;
}

#[tokio::test]
async fn otlp_logs_are_protobuf_records_and_partial_success_counts_as_failed() {
    use authtrail::ops::otlp::proto;
    use prost::Message;
    let up = upstream::spawn().await;
    let otel = webhook::spawn().await;
    otel.respond(|_| {
        let resp = proto::ExportLogsServiceResponse {
            partial_success: Some(proto::ExportLogsPartialSuccess {
                rejected_log_records: 1,
                error_message: "one record too old".into(),
            }),
        };
        (200, Bytes::from(resp.encode_to_vec()))
    });
    let extra = format!(
        "sinks:\n  otel: {{ otlp: {{ url: \"{}\", headers: {{ x-scope-orgid: tenant-1 }} }}, batch: 2, flush: 2s }}\n",
        otel.url("/v1/logs")
    );
    let mut sc = harness::start(up.addr, &extra, ROUTES).await;
    logins(&sc, &["alice", "bob"]).await;
    let got = otel.wait_until("a request", |r| !r.is_empty()).await;
    let r = &got[0];
    assert_eq!(r.path, "/v1/logs");
    assert_eq!(r.headers["content-type"], "application/x-protobuf");
    assert_eq!(r.headers["x-scope-orgid"], "tenant-1");
    let req = proto::ExportLogsServiceRequest::decode(r.body.as_ref()).unwrap();
    assert_eq!(req.resource_logs.len(), 1);
    let rl = &req.resource_logs[0];
    let attr = |kvs: &[proto::KeyValue], k: &str| -> Option<String> {
        kvs.iter().find(|kv| kv.key == k).and_then(|kv| {
            match kv.value.as_ref()?.value.as_ref()? {
                proto::any_value::Value::StringValue(s) => Some(s.clone()),
                proto::any_value::Value::IntValue(i) => Some(i.to_string()),
            }
        })
    };
    let resource = rl.resource.as_ref().unwrap();
    assert_eq!(
        attr(&resource.attributes, "service.name").as_deref(),
        Some("authtrail")
    );
    let records = &rl.scope_logs[0].log_records;
    assert_eq!(rl.scope_logs[0].scope.as_ref().unwrap().name, "authtrail");
    assert_eq!(records.len(), 2);
    let stored = sc.wait_events(2).await;
    for (rec, s) in records.iter().zip(&stored) {
        assert_eq!(
            i128::from(rec.time_unix_nano),
            s.time.unix_timestamp_nanos()
        );
        assert!(rec.observed_time_unix_nano >= rec.time_unix_nano);
        let want_sev = match s.outcome.as_str() {
            "success" => 9,
            "unknown" => 10,
            "failure" => 13,
            _ => 17,
        };
        assert_eq!(rec.severity_number, want_sev);
        assert_eq!(rec.event_name, "auth.login");
        let Some(proto::any_value::Value::StringValue(body)) =
            rec.body.as_ref().and_then(|b| b.value.clone())
        else {
            panic!("a string body")
        };
        let e: AuditEvent = serde_json::from_str(&body).unwrap();
        assert_eq!(e.id, s.id);
        assert_eq!(
            attr(&rec.attributes, "event.type").as_deref(),
            Some("auth.login")
        );
        assert_eq!(
            attr(&rec.attributes, "outcome").as_deref(),
            Some(s.outcome.as_str())
        );
        assert_eq!(attr(&rec.attributes, "actor.id"), s.actor.id);
        assert_eq!(
            attr(&rec.attributes, "request.id").as_deref(),
            Some(s.http.request_id.as_str())
        );
    }
    wait_metric(
        &sc,
        "authtrail_sink_events_failed_total{sink=\"otel\"}",
        1.0,
    )
    .await;
    assert_eq!(
        metric(&sc, "authtrail_sink_events_sent_total{sink=\"otel\"}").await,
        1.0
    );
    sc.stop().await;
}

#[tokio::test]
async fn a_syslog_server_that_is_down_gives_batches_up_counted_and_the_trail_goes_on() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let up = upstream::spawn().await;
    let extra = format!(
        "sinks:\n  down: {{ syslog: {{ address: \"127.0.0.1:{port}\" }}, retries: 1, backoff: 10ms, timeout: 1s }}\n"
    );
    let mut sc = harness::start(up.addr, &extra, ROUTES).await;
    logins(&sc, &["u1", "u2"]).await;
    assert_eq!(sc.wait_events(2).await.len(), 2);
    wait_metric(
        &sc,
        "authtrail_sink_events_failed_total{sink=\"down\"}",
        2.0,
    )
    .await;
    assert_eq!(
        metric(&sc, "authtrail_sink_events_sent_total{sink=\"down\"}").await,
        0.0
    );
    // Each given-up batch took the first attempt and one retry.
    let attempts = metric(&sc, "authtrail_sink_requests_total{sink=\"down\"}").await;
    assert!(attempts >= 2.0 && attempts % 2.0 == 0.0, "{attempts}");
    sc.stop().await;
    assert!(harness::captured_logs().contains("syslog batch given up"));
}
