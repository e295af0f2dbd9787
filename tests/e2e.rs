//! End to end: a real upstream and the sidecar in-process on 127.0.0.1:0, a real SQLite file.

mod support;

use std::time::Duration;

use authtrail::event::{ActorKind, Outcome, Stage};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::json;
use support::demo_auth;
use support::harness::{self, post_json, send, send_with};
use support::upstream;

const DEMO_SECRET: &[u8] = b"e2e-demo-signing-secret-9f8e7d";
const ALICE_PW: &str = "alice-pw-7Qx!";

const LOGIN_ROUTES: &str = r#"  - id: login
    match: { method: POST, path: /v1/sessions }
    event: auth.login
    actor: [ { response_body: /user/id }, { request_body: /username } ]
    app: [ { response_body: /user/app }, { header: X-App-Id } ]
    outcome: { success: [2xx], failure: [4xx], reason: /error }
    capture: { username: { request_body: /username } }
  - id: deactivate
    match: { method: POST, path: "/v1/apps/{app}/users/{user_id}/deactivate" }
    event: account.deactivate
    app: { path: app }
    target: { kind: user, from: { path: user_id } }
    outcome: { success: [2xx], failure: [4xx], reason: /error }
"#;

async fn demo() -> demo_auth::DemoAuth {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    demo_auth::spawn(l, DEMO_SECRET.to_vec())
}

#[tokio::test]
async fn login_success_and_failure_become_exact_events() {
    let auth = demo().await;
    let mut sc = harness::start(auth.addr, "", LOGIN_ROUTES).await;

    let ok = post_json(
        &sc.url("/v1/sessions"),
        json!({"username": "alice", "password": ALICE_PW}),
        &[("user-agent", "e2e-test/1.0"), ("x-request-id", "req-ok-1")],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.headers["x-request-id"], "req-ok-1");
    let bad = post_json(
        &sc.url("/v1/sessions"),
        json!({"username": "alice", "password": "wrong-guess-1"}),
        &[("x-app-id", "app-alpha")],
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);

    sc.stop().await;
    let evs = sc.events().await;
    assert_eq!(evs.len(), 2, "{evs:#?}");

    let s = &evs[0];
    assert_eq!(s.event_type, "auth.login");
    assert_eq!(s.stage, Stage::Completed);
    assert_eq!(s.outcome, Outcome::Success);
    assert_eq!(s.reason, None);
    assert_eq!(s.actor.id.as_deref(), Some("u-alice"));
    assert_eq!(s.actor.kind, ActorKind::User);
    assert_eq!(s.actor.source.as_deref(), Some("response_body:/user/id"));
    assert!(!s.actor.verified);
    let app = s.app.as_ref().unwrap();
    assert_eq!(
        (app.value.as_str(), app.source.as_str()),
        ("app-alpha", "response_body:/user/app")
    );
    assert_eq!(s.target, None);
    assert_eq!(s.http.route, "login");
    assert_eq!(s.http.status, Some(200));
    assert_eq!(s.http.method, "POST");
    assert_eq!(s.http.path, "/v1/sessions");
    assert_eq!(s.http.request_id, "req-ok-1");
    assert_eq!(s.source.user_agent.as_deref(), Some("e2e-test/1.0"));
    assert_eq!(s.source.ip, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(s.details["username"], "alice");
    assert!(s.seq.is_some());

    let f = &evs[1];
    assert_eq!(f.event_type, "auth.login");
    assert_eq!(f.outcome, Outcome::Failure);
    assert_eq!(f.reason.as_deref(), Some("invalid_credentials"));
    assert_eq!(f.actor.id.as_deref(), Some("alice"));
    assert_eq!(f.actor.source.as_deref(), Some("request_body:/username"));
    let app = f.app.as_ref().unwrap();
    assert_eq!(
        (app.value.as_str(), app.source.as_str()),
        ("app-alpha", "header:x-app-id")
    );
    assert_eq!(f.http.status, Some(401));
    assert_eq!(f.http.request_id.len(), 32, "a generated request id");
    assert!(f.seq > s.seq);
}

#[tokio::test]
async fn deactivation_records_target_and_app_from_the_path() {
    let auth = demo().await;
    let mut sc = harness::start(auth.addr, "", LOGIN_ROUTES).await;
    let login = post_json(
        &sc.url("/v1/sessions"),
        json!({"username": "root", "password": "root-pw-9Lm#"}),
        &[],
    )
    .await;
    let token = login.json()["access_token"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {token}");
    let r = post_json(
        &sc.url("/v1/apps/app-alpha/users/u-alice/deactivate"),
        json!({}),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let denied = post_json(
        &sc.url("/v1/apps/app-beta/users/u-bob/deactivate"),
        json!({}),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    sc.stop().await;
    let evs = sc.events().await;
    let deact: Vec<_> = evs
        .iter()
        .filter(|e| e.event_type == "account.deactivate")
        .collect();
    assert_eq!(deact.len(), 2);
    assert_eq!(deact[0].outcome, Outcome::Success);
    assert_eq!(
        deact[0]
            .target
            .as_ref()
            .map(|t| (t.kind.as_str(), t.id.as_str())),
        Some(("user", "u-alice"))
    );
    assert_eq!(
        deact[0].app.as_ref().map(|a| a.value.as_str()),
        Some("app-alpha")
    );
    assert_eq!(deact[1].outcome, Outcome::Failure);
    assert_eq!(deact[1].reason.as_deref(), Some("forbidden"));
    assert_eq!(
        deact[1].app.as_ref().map(|a| a.value.as_str()),
        Some("app-beta")
    );
    let all = harness::store_bytes(&sc.db);
    assert!(
        !harness::contains(&all, &token),
        "the bearer token reached the store"
    );
}

#[tokio::test]
async fn unmapped_response_is_byte_identical_and_nothing_is_stored() {
    let up = upstream::spawn().await;
    let mut sc = harness::start(up.addr, "", LOGIN_ROUTES).await;
    let direct = send(
        Method::GET,
        &format!("http://{}/bytes", up.addr),
        &[],
        Bytes::new(),
    )
    .await
    .unwrap();
    let proxied = send(Method::GET, &sc.url("/bytes"), &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(proxied.status, StatusCode::IM_A_TEAPOT);
    assert_eq!(proxied.body, direct.body);
    assert_eq!(proxied.body.as_ref(), upstream::pattern(100_000).as_slice());
    assert_eq!(proxied.headers["x-upstream"], "yes");
    assert_eq!(proxied.headers["content-type"], "application/octet-stream");
    // HTTP/2 from the client works the same.
    let h2 = send_with(true, Method::GET, &sc.url("/bytes"), &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(h2.body, direct.body);
    sc.stop().await;
    assert!(sc.events().await.is_empty());
}

#[tokio::test]
async fn forwarded_headers_are_set_and_hop_by_hop_stripped() {
    let up = upstream::spawn().await;
    let mut sc = harness::start(up.addr, "", LOGIN_ROUTES).await;
    let r = send(
        Method::GET,
        &sc.url("/echo-headers"),
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("connection", "keep-alive, x-drop-me"),
            ("x-drop-me", "1"),
            ("keep-alive", "timeout=5"),
        ],
        Bytes::new(),
    )
    .await
    .unwrap();
    let seen = r.json();
    // The peer is not a trusted proxy: its X-Forwarded-For is replaced, not extended.
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], sc.addr.to_string());
    assert!(seen.get("x-drop-me").is_none());
    assert!(seen.get("keep-alive").is_none());
    let rid = seen["x-request-id"].as_str().unwrap();
    assert_eq!(r.headers["x-request-id"], rid);
    sc.stop().await;
}

#[tokio::test]
async fn large_upload_through_a_mapped_route_arrives_intact() {
    let up = upstream::spawn().await;
    let routes = "  - id: upload\n    match: { method: POST, path: /upload }\n    event: account.update\n    actor: { request_body: /user }\n";
    let mut sc = harness::start(up.addr, "", routes).await;
    let body = upstream::pattern(10 * 1024 * 1024);
    let r = send(
        Method::POST,
        &sc.url("/upload"),
        &[("content-type", "application/octet-stream")],
        Bytes::from(body.clone()),
    )
    .await
    .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["len"], body.len());
    assert_eq!(r.json()["fnv"], upstream::fnv(&body).to_string());
    sc.stop().await;
    let evs = sc.events().await;
    assert_eq!(evs.len(), 1);
    assert!(evs[0].http.body_truncated);
    assert_eq!(evs[0].outcome, Outcome::Success);
    assert_eq!(evs[0].actor.id, None);
}

#[tokio::test]
async fn upstream_down_is_502_with_an_error_event() {
    // Bind then drop a listener: a port on 127.0.0.1 where nothing listens.
    let dead = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let mut sc = harness::start(dead, "", LOGIN_ROUTES).await;
    let r = post_json(
        &sc.url("/v1/sessions"),
        json!({"username": "carol", "password": "irrelevant-pw-5"}),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.json()["error"], "bad_gateway");
    let unmapped = send(Method::GET, &sc.url("/anything"), &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(unmapped.status, StatusCode::BAD_GATEWAY);
    sc.stop().await;
    let evs = sc.events().await;
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].outcome, Outcome::Error);
    assert_eq!(evs[0].reason.as_deref(), Some("upstream_unreachable"));
    assert_eq!(evs[0].http.status, None);
    assert_eq!(evs[0].actor.id.as_deref(), Some("carol"));
}

#[tokio::test]
async fn stalled_upstream_is_504_with_an_error_event() {
    let up = upstream::spawn().await;
    let routes = "  - id: stall\n    match: { path: /stall }\n    event: auth.login\n";
    let mut sc = harness::start(up.addr, "timeouts: { upstream_response: 300ms }\n", routes).await;
    let r = send(Method::POST, &sc.url("/stall"), &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    sc.stop().await;
    let evs = sc.events().await;
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].outcome, Outcome::Error);
    assert_eq!(evs[0].reason.as_deref(), Some("upstream_timeout"));
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_and_flushes_their_events() {
    let up = upstream::spawn().await;
    let routes = "  - id: slow\n    match: { path: /slow }\n    event: auth.login\n    actor: { response_body: /user/id }\n";
    let mut sc = harness::start(up.addr, "", routes).await;
    let url = sc.url("/slow");
    let inflight: Vec<_> = (0..5)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { send(Method::POST, &url, &[], Bytes::new()).await })
        })
        .collect();
    slow_started(&up, 5).await;
    let summary = sc.stop().await;
    for t in inflight {
        assert_eq!(t.await.unwrap().unwrap().status, StatusCode::OK);
    }
    assert!(summary.drained);
    assert_eq!(summary.events.written, 5);
    assert_eq!(summary.events.dropped, 0);
    let evs = sc.events().await;
    assert_eq!(evs.len(), 5);
    assert!(evs
        .iter()
        .all(|e| e.actor.id.as_deref() == Some("u-slow") && e.outcome == Outcome::Success));
    // After shutdown the proxy no longer accepts.
    assert!(send(Method::GET, &sc.url("/x"), &[], Bytes::new())
        .await
        .is_err());
}

/// A client that hangs up while the upstream is still working on its mapped request: the
/// upstream acts all the same, so the trail says what it answered (with the actor its response
/// named), that the client went away, and the shutdown that follows at once waits for it.
#[tokio::test]
async fn a_client_that_hangs_up_before_the_upstream_answers_still_leaves_its_event() {
    use tokio::io::AsyncWriteExt;
    let up = upstream::spawn().await;
    let routes = "  - id: slow\n    match: { path: /slow }\n    event: auth.login\n    actor: { response_body: /user/id }\n";
    let mut sc = harness::start(up.addr, "", routes).await;
    let mut s = tokio::net::TcpStream::connect(sc.addr).await.unwrap();
    s.write_all(
        b"POST /slow HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nx-request-id: gone-1\r\n\r\n",
    )
    .await
    .unwrap();
    slow_started(&up, 1).await;
    // Hang up with the upstream still working (it answers 400 ms after it started), and stop
    // the sidecar before it has answered: the drain must wait for the exchange.
    drop(s);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let summary = sc.stop().await;
    assert!(summary.drained);
    assert_eq!((summary.events.written, summary.events.dropped), (1, 0));
    let evs = sc.events().await;
    assert_eq!(evs.len(), 1, "{evs:?}");
    let e = &evs[0];
    assert_eq!(e.http.request_id, "gone-1");
    assert_eq!(e.http.status, Some(200));
    assert_eq!(e.outcome, Outcome::Success);
    assert_eq!(e.reason.as_deref(), Some("client_aborted"));
    assert_eq!(e.actor.id.as_deref(), Some("u-slow"));
}

/// A client that hangs up in the middle of a mapped request's body: the proxy, reading the
/// body's head, sees the body break off; nothing reaches the upstream, and the trail has the
/// attempt — an `error` event, `client_aborted`, without a status. (Not one of the requests
/// dropped before admission: those have no event, see `tests/fault.rs`.)
#[tokio::test]
async fn a_client_that_hangs_up_mid_body_leaves_its_event_and_nothing_is_forwarded() {
    use tokio::io::AsyncWriteExt;
    let up = upstream::spawn().await;
    let routes = "  - id: login\n    match: { method: POST, path: /login }\n    event: auth.login\n    actor: { request_body: /username }\n  - id: token\n    match: { method: POST, path: /token, body: { /grant_type: password } }\n    event: token.issue\n";
    let mut sc = harness::start(up.addr, "", routes).await;
    let before = harness::abandoned(sc.admin, "before_admission").await;
    // A whole request that turns out unmapped once its body is read is no abandoned one.
    send(
        Method::POST,
        &sc.url("/token"),
        &[("content-type", "application/json")],
        Bytes::from_static(br#"{"grant_type":"client_credentials"}"#),
    )
    .await
    .unwrap();
    let mut s = tokio::net::TcpStream::connect(sc.addr).await.unwrap();
    s.write_all(b"POST /login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\nx-request-id: cut-1\r\n\r\n{\"username\":")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(s);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        harness::abandoned(sc.admin, "before_admission").await - before,
        0.0
    );
    let summary = sc.stop().await;
    assert_eq!((summary.events.written, summary.events.dropped), (1, 0));
    let evs = sc.events().await;
    let got: Vec<_> = evs
        .iter()
        .map(|e| {
            (
                e.http.request_id.as_str(),
                e.outcome,
                e.reason.as_deref(),
                e.http.status,
            )
        })
        .collect();
    assert_eq!(
        got,
        [("cut-1", Outcome::Error, Some("client_aborted"), None)]
    );
    assert_eq!(up.requests(), 1, "only the unmapped /token request");
}

/// Abandoned exchanges are followed to the upstream's answer at most `max_connections` at once
/// (clients that send and hang up cannot hold more upstream requests open than connections
/// could): past that, the event is still there, without the answer, marked `forwarded`.
#[tokio::test]
async fn abandoned_exchanges_past_the_connection_limit_still_leave_their_events() {
    use tokio::io::AsyncWriteExt;
    let up = upstream::spawn().await;
    let routes = "  - id: slow\n    match: { path: /slow }\n    event: auth.login\n    actor: { response_body: /user/id }\n";
    let mut sc = harness::start(up.addr, "max_connections: 1\n", routes).await;
    let unfollowed_before = harness::abandoned(sc.admin, "unfollowed").await;
    for (i, rid) in ["gone-1", "gone-2"].iter().enumerate() {
        let mut s = tokio::net::TcpStream::connect(sc.addr).await.unwrap();
        let req = format!(
            "POST /slow HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nx-request-id: {rid}\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        slow_started(&up, i as u64 + 1).await;
        drop(s);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Counted (other tests of this binary count `followed` too, never `unfollowed`).
    assert_eq!(
        harness::abandoned(sc.admin, "unfollowed").await - unfollowed_before,
        1.0
    );
    assert!(harness::abandoned(sc.admin, "followed").await >= 1.0);
    let summary = sc.stop().await;
    assert_eq!((summary.events.written, summary.events.dropped), (2, 0));
    let mut evs = sc.events().await;
    evs.sort_by(|a, b| a.http.request_id.cmp(&b.http.request_id));
    let got: Vec<_> = evs
        .iter()
        .map(|e| {
            (
                e.http.request_id.as_str(),
                e.http.status,
                e.outcome,
                e.reason.as_deref(),
                e.actor.id.as_deref(),
                e.details.get("forwarded").cloned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "gone-1",
                Some(200),
                Outcome::Success,
                Some("client_aborted"),
                Some("u-slow"),
                None
            ),
            (
                "gone-2",
                None,
                Outcome::Error,
                Some("client_aborted"),
                None,
                Some(json!(true))
            ),
        ]
    );
}

/// HTTP/2: a client that cancels its stream (RST_STREAM) while the upstream works, its
/// connection staying open: hyper drops the request as on an HTTP/1.1 hang-up, and the event is
/// the same.
#[tokio::test]
async fn an_http2_stream_reset_before_the_upstream_answers_still_leaves_its_event() {
    let up = upstream::spawn().await;
    let routes = "  - id: slow\n    match: { path: /slow }\n    event: auth.login\n    actor: { response_body: /user/id }\n";
    let mut sc = harness::start(up.addr, "", routes).await;
    let tcp = tokio::net::TcpStream::connect(sc.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req = hyper::Request::post(format!("http://{}/slow", sc.addr))
        .header("x-request-id", "reset-1")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let pending = tokio::spawn(send.send_request(req));
    slow_started(&up, 1).await;
    // Dropping the response future resets the stream; the connection stays.
    pending.abort();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !conn.is_finished(),
        "the connection closed: not a stream reset"
    );
    let summary = sc.stop().await;
    conn.abort();
    assert_eq!((summary.events.written, summary.events.dropped), (1, 0));
    let evs = sc.events().await;
    assert_eq!(evs.len(), 1, "{evs:?}");
    let e = &evs[0];
    assert_eq!(e.http.request_id, "reset-1");
    assert_eq!(e.http.status, Some(200));
    assert_eq!(e.reason.as_deref(), Some("client_aborted"));
    assert_eq!(e.actor.id.as_deref(), Some("u-slow"));
}

/// Wait (bounded) until `n` requests have reached the upstream's `/slow`, and insist on it.
async fn slow_started(up: &upstream::TestUpstream, n: u64) {
    use std::sync::atomic::Ordering;
    for _ in 0..200 {
        if up.slow_started.load(Ordering::SeqCst) == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(up.slow_started.load(Ordering::SeqCst), n);
}
