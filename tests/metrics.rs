//! `/metrics` on the admin listener: scraped before and after traffic, the counters move —
//! requests by route (and unmapped), events by route, type and outcome, upstream latency and the
//! sidecar's added latency, upstream timeouts, events written, store write latency, JWKS
//! refreshes and failures — dropped events stay 0, and no label carries a raw path.
//!
//! One sidecar per process: the recorder is process-global.

mod support;

use std::collections::BTreeMap;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::json;
use support::harness::{self, post_json, send};
use support::upstream;

const ROUTES: &str = r#"  - id: login
    match: { method: POST, path: /login }
    event: auth.login
    actor: { request_body: /username }
  - id: user-update
    match: { method: POST, path: "/v1/users/{id}" }
    event: account.update
    target: { kind: user, from: { path: id } }
  - id: stall
    match: { path: /stall }
    event: token.verify
"#;

/// Every sample of a scrape: (name, sorted labels) → value.
fn parse(text: &str) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => {
                let mut parts: Vec<&str> = l.trim_end_matches('}').split(',').collect();
                parts.sort();
                (n.to_string(), parts.join(","))
            }
            None => (series.to_string(), String::new()),
        };
        out.insert((name, labels), value.parse().unwrap());
    }
    out
}

struct Scrape {
    text: String,
    samples: BTreeMap<(String, String), f64>,
}

impl Scrape {
    fn get(&self, name: &str, labels: &str) -> f64 {
        self.samples
            .get(&(name.to_string(), labels.to_string()))
            .copied()
            .unwrap_or(0.0)
    }
}

async fn scrape(admin: std::net::SocketAddr) -> Scrape {
    let r = send(
        Method::GET,
        &format!("http://{admin}/metrics"),
        &[],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    Scrape {
        samples: parse(&text),
        text,
    }
}

#[tokio::test]
async fn counters_move_with_traffic_and_labels_stay_bounded() {
    let up = upstream::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let jwk: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/rsa1.jwk.json"
        ))
        .unwrap(),
    )
    .unwrap();
    std::fs::write(&jwks, json!({ "keys": [jwk] }).to_string()).unwrap();
    // One key set that loads, one whose server is not there.
    let extra = format!(
        "timeouts: {{ upstream_response: 200ms }}\nkeys:\n  idp: {{ jwks_file: \"{}\", algorithms: [RS256] }}\n  gone: {{ jwks_url: \"http://127.0.0.1:1/jwks.json\", algorithms: [RS256] }}\ndefaults: {{ keys: idp }}\n",
        jwks.display()
    );
    let mut sc = harness::start(up.addr, &extra, ROUTES).await;
    let before = scrape(sc.admin).await;
    assert_eq!(before.get("authtrail_events_dropped_total", ""), 0.0);

    for user in ["alice", "bob", "carol"] {
        let r = post_json(&sc.url("/login"), json!({ "username": user }), &[]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    for id in ["u-1", "u-2"] {
        post_json(&sc.url(&format!("/v1/users/{id}")), json!({}), &[]).await;
    }
    let r = send(Method::GET, &sc.url("/bytes"), &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 418);
    let r = send(Method::GET, &sc.url("/stall"), &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    sc.wait_events(6).await;

    let after = scrape(sc.admin).await;
    assert!(after
        .text
        .contains("# TYPE authtrail_upstream_latency_seconds histogram"));
    let delta = |name: &str, labels: &str| after.get(name, labels) - before.get(name, labels);
    assert_eq!(delta("authtrail_requests_total", "route=\"login\""), 3.0);
    assert_eq!(
        delta("authtrail_requests_total", "route=\"user-update\""),
        2.0
    );
    assert_eq!(delta("authtrail_requests_total", "route=\"unmapped\""), 1.0);
    assert_eq!(
        delta(
            "authtrail_events_total",
            "outcome=\"failure\",route=\"login\",type=\"auth.login\""
        ),
        3.0
    );
    assert_eq!(
        delta(
            "authtrail_events_total",
            "outcome=\"error\",route=\"stall\",type=\"token.verify\""
        ),
        1.0
    );
    assert_eq!(
        delta(
            "authtrail_upstream_errors_total",
            "kind=\"timeout\",route=\"stall\""
        ),
        1.0
    );
    assert_eq!(
        delta(
            "authtrail_upstream_latency_seconds_count",
            "route=\"login\""
        ),
        3.0
    );
    assert_eq!(
        delta(
            "authtrail_proxy_added_latency_seconds_count",
            "route=\"user-update\""
        ),
        2.0
    );
    assert_eq!(
        delta(
            "authtrail_upstream_latency_seconds_count",
            "route=\"unmapped\""
        ),
        1.0
    );
    assert!(
        after.get(
            "authtrail_upstream_latency_seconds_bucket",
            "le=\"+Inf\",route=\"login\""
        ) >= 3.0
    );
    assert!(delta("authtrail_events_written_total", "") >= 6.0);
    // The upstream's answers by class: three 404 logins, the 418 of /bytes.
    assert_eq!(
        delta(
            "authtrail_upstream_responses_total",
            "class=\"4xx\",route=\"login\""
        ),
        3.0
    );
    assert_eq!(
        delta(
            "authtrail_upstream_responses_total",
            "class=\"4xx\",route=\"unmapped\""
        ),
        1.0
    );
    assert_eq!(after.get("authtrail_requests_in_flight", ""), 0.0);
    assert!(after.text.contains(&format!(
        "authtrail_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    // The process itself, read from /proc at scrape time.
    assert!(after.get("process_resident_memory_bytes", "") > 1e6);
    assert!(after.get("process_open_fds", "") >= 3.0);
    assert!(after.get("process_max_fds", "") >= after.get("process_open_fds", ""));
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    let started = after.get("process_start_time_seconds", "");
    assert!(
        started > now - 3600.0 && started <= now + 1.0,
        "{started} vs {now}"
    );
    assert!(after.get("authtrail_store_write_seconds_count", "") >= 1.0);
    assert_eq!(after.get("authtrail_events_dropped_total", ""), 0.0);
    assert_eq!(after.get("authtrail_queue_depth", ""), 0.0);
    assert_eq!(after.get("authtrail_spool_depth", ""), 0.0);
    assert!(after.get("authtrail_jwks_refreshes_total", "keys=\"idp\"") >= 1.0);
    assert!(after.get("authtrail_jwks_failures_total", "keys=\"gone\"") >= 1.0);
    assert_eq!(
        after.get("authtrail_jwks_failures_total", "keys=\"idp\""),
        0.0
    );

    // Route ids, never the concrete paths.
    for raw in ["/v1/users", "u-1", "/bytes", "/login"] {
        assert!(!after.text.contains(raw), "{raw} leaked into a label");
    }
    let summary = sc.stop().await;
    assert_eq!(summary.events.dropped, 0);
}
