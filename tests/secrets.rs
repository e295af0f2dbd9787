//! No secret used in a test — password, token, code, cookie, Authorization value — appears in
//! the SQLite file's bytes or in the logs the sidecar wrote (debug level).

mod support;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::json;
use support::demo_auth;
use support::harness::{self, contains, post_json, send};

const ROUTES: &str = r#"  - id: login
    match: { method: POST, path: /v1/sessions }
    event: auth.login
    actor: [ { response_body: /user/id }, { request_body: /username } ]
    app: [ { response_body: /user/app }, { header: X-App-Id } ]
    outcome: { success: [2xx], failure: [4xx], reason: /error }
    capture:
      username: { request_body: /username }
      whole_response: { response_body: "" }
      whole_request: { request_body: "" }
  - id: refresh
    match: { method: POST, path: /v1/token/refresh }
    event: token.refresh
    capture: { request: { request_body: "" }, response: { response_body: "" } }
  - id: reset
    match: { method: POST, path: /v1/password/reset/complete }
    event: password.reset.complete
    target: { kind: user, from: { request_body: /email } }
    capture: { request: { request_body: "" } }
  - id: verify-link
    match: { method: GET, path: "/v1/email/verify/{code}" }
    event: email.verify.complete
  - id: form-login
    match: { method: POST, path: /oauth/token }
    event: token.issue
    actor: { form: username }
    capture: { grant: { form: grant_type }, request: { request_body: "" } }
"#;

#[tokio::test]
async fn no_secret_reaches_the_store_or_the_logs() {
    let auth = demo_auth::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        b"secret-scan-signing-key-77".to_vec(),
    );
    let mut sc = harness::start(auth.addr, "", ROUTES).await;
    let mut secrets: Vec<String> = vec![
        "alice-pw-7Qx!".into(),
        "wrong-Pa55word-zz".into(),
        "session-cookie-value-8c1f".into(),
        "Basic Y2xpZW50OmNsaWVudC1zZWNyZXQtcXE=".into(),
        "client-secret-qq".into(),
        "111222333".into(),
        "new-password-Zz9!".into(),
        "magic-verify-code-4e2a".into(),
    ];

    let ok = post_json(
        &sc.url("/v1/sessions"),
        json!({"username": "alice", "password": "alice-pw-7Qx!"}),
        &[("cookie", "sid=session-cookie-value-8c1f")],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    let access = ok.json()["access_token"].as_str().unwrap().to_string();
    let refresh = ok.json()["refresh_token"].as_str().unwrap().to_string();
    secrets.push(access.clone());
    secrets.push(refresh.clone());
    // The token's signature part alone must not leak either.
    secrets.push(access.rsplit('.').next().unwrap().to_string());

    post_json(
        &sc.url("/v1/sessions"),
        json!({"username": "alice", "password": "wrong-Pa55word-zz"}),
        &[],
    )
    .await;
    let r = post_json(
        &sc.url("/v1/token/refresh"),
        json!({"refresh_token": refresh}),
        &[("authorization", &format!("Bearer {access}"))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    secrets.push(r.json()["access_token"].as_str().unwrap().to_string());
    secrets.push(r.json()["refresh_token"].as_str().unwrap().to_string());

    post_json(
        &sc.url("/v1/password/reset"),
        json!({"email": "alice@example.com"}),
        &[],
    )
    .await;
    let code = auth.last_reset_code("alice@example.com").unwrap();
    secrets.push(code.clone());
    post_json(
        &sc.url("/v1/password/reset/complete"),
        json!({"email": "alice@example.com", "code": "111222333", "new_password": "new-password-Zz9!"}),
        &[],
    )
    .await;
    post_json(
        &sc.url("/v1/password/reset/complete"),
        json!({"email": "alice@example.com", "code": code, "new_password": "new-password-Zz9!"}),
        &[],
    )
    .await;
    send(
        Method::GET,
        &sc.url("/v1/email/verify/magic-verify-code-4e2a"),
        &[],
        Bytes::new(),
    )
    .await
    .unwrap();
    send(
        Method::POST,
        &sc.url("/oauth/token"),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("authorization", "Basic Y2xpZW50OmNsaWVudC1zZWNyZXQtcXE="),
        ],
        Bytes::from("grant_type=password&username=alice&password=alice-pw-7Qx!&client_secret=client-secret-qq"),
    )
    .await
    .unwrap();

    sc.stop().await;
    let evs = sc.events().await;
    assert_eq!(evs.len(), 7, "every mapped request was recorded");
    // The non-secret parts are still there.
    assert_eq!(evs[0].details["username"], "alice");
    assert_eq!(
        evs[0].details["whole_request"],
        json!({"username": "alice"})
    );
    assert_eq!(evs[0].details["whole_response"]["user"]["id"], "u-alice");
    assert_eq!(evs[5].http.path, "/v1/email/verify/{code}");
    assert_eq!(evs[6].details["grant"], "password");
    assert_eq!(evs[6].actor.id.as_deref(), Some("alice"));

    let stored = harness::store_bytes(&sc.db);
    assert!(
        contains(&stored, "u-alice"),
        "the scan reads the real store"
    );
    let logs = harness::captured_logs();
    assert!(
        logs.contains("audit event built"),
        "the scan reads the real logs"
    );
    for s in &secrets {
        assert!(
            !contains(&stored, s),
            "secret {s:?} found in the SQLite file"
        );
        assert!(!logs.contains(s.as_str()), "secret {s:?} found in the logs");
    }
}
