//! No request slips past the map: a target an upstream may read as a mapped route is refused
//! (or normalised), a body-conditioned route fails closed when its body cannot be read one way,
//! and a request never carries a second credential past the one that was checked. Each case
//! is sent as raw bytes on 127.0.0.1, so nothing normalises it on the way in.

mod support;

use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;
use support::harness::{self, send_with};
use support::upstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "path-policy-test-secret-0042";

const EXTRA: &str = r#"inspect_limit: 16KiB
keys:
  demo:
    secret: path-policy-test-secret-0042
requirements:
  admin:
    claims: { role: admin }
"#;

const ROUTES: &str = r#"  - id: deactivate
    match: { method: POST, path: "/v1/apps/{app}/users/{user_id}/deactivate" }
    event: account.deactivate
    target: { kind: user, from: { path: user_id } }
    app: { path: app }
    require: { use: admin, mode: enforce }
  - id: admin-delete
    match: { method: POST, path: /v1/admin/users, body: { /op: delete } }
    event: account.delete
    require: { use: admin, mode: enforce }
  - id: password-login
    match: { method: POST, path: /oauth/token, body: { /grant_type: password } }
    event: auth.login
    actor: { form: username }
  - id: impersonate
    match: { method: POST, host: admin.example.test, path: /v1/support/impersonate }
    event: admin.impersonate
    require: { use: admin, mode: enforce }
  - id: rotate
    match: { method: POST, path: /v1/keys/rotate, path_policy: normalize }
    event: admin.key_rotate
    require: { use: admin, mode: enforce }
  - id: verify-email
    match: { method: POST, path: "/v1/email/verify/{code}", path_policy: normalize }
    event: account.verify
  - id: reset-password
    match: { method: POST, path: "/v1/password/reset/{code}" }
    event: account.password_reset
  - id: login-ci
    match: { method: POST, path: /Account/Login, path_case: insensitive }
    event: auth.login
"#;

fn admin_token() -> String {
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 600;
    encode(
        &Header::default(),
        &json!({"sub": "u-root", "role": "admin", "exp": exp}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// Write `parts` (one write each, `gap` apart), then read the whole answer (the request says
/// `Connection: close`).
async fn raw_parts(addr: std::net::SocketAddr, parts: &[Vec<u8>], gap: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    for p in parts {
        if s.write_all(p).await.is_err() {
            break;
        }
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

fn request(method: &str, target: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut r =
        format!("{method} {target} HTTP/1.1\r\nHost: auth.example.test\r\nConnection: close\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = r.into_bytes();
    out.extend_from_slice(body);
    out
}

async fn raw(addr: std::net::SocketAddr, req: Vec<u8>) -> String {
    raw_parts(addr, &[req], Duration::ZERO).await
}

fn status(resp: &str) -> u16 {
    resp.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The events of one request id, waiting for the writer.
async fn events_of(sc: &harness::Sidecar, rid: &str) -> Vec<authtrail::event::AuditEvent> {
    for _ in 0..300 {
        let evs: Vec<_> = sc
            .events()
            .await
            .into_iter()
            .filter(|e| e.http.request_id == rid)
            .collect();
        if !evs.is_empty() {
            return evs;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Vec::new()
}

#[tokio::test]
async fn encoded_and_variant_targets_of_an_enforcing_route_are_refused_and_recorded() {
    let up = upstream::spawn().await;
    let mut sc = harness::start(up.addr, EXTRA, ROUTES).await;

    // The plain path without a token: the requirement answers (control).
    let plain = raw(
        sc.addr,
        request(
            "POST",
            "/v1/apps/app-a/users/u1/deactivate",
            &["X-Request-Id: plain"],
            b"{}",
        ),
    )
    .await;
    assert_eq!(status(&plain), 401, "{plain}");

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "slash",
            request("POST", "/v1/apps%2Fapp-a%2Fusers/u1/deactivate", &[], b"{}"),
            "encoded_separator",
        ),
        (
            "slash-all",
            request(
                "POST",
                "/v1%2Fapps%2Fapp-a%2Fusers%2Fu1%2Fdeactivate",
                &[],
                b"{}",
            ),
            "encoded_separator",
        ),
        (
            "trailing-2F",
            request("POST", "/v1/apps/app-a/users/u1/deactivate%2F", &[], b"{}"),
            "encoded_separator",
        ),
        (
            "trailing-2f",
            request("POST", "/v1/apps/app-a/users/u1/deactivate%2f", &[], b"{}"),
            "encoded_separator",
        ),
        (
            "backslash-escape",
            request("POST", "/v1/apps/app-a/users/u1%5Cdeactivate", &[], b"{}"),
            "encoded_separator",
        ),
        (
            "matrix",
            request("POST", "/v1/apps/app-a/users/u1/deactivate;x=1", &[], b"{}"),
            "matrix_params",
        ),
        (
            "nul",
            request(
                "POST",
                "/v1/apps/app-a/users/u1/deactivate%00.json",
                &[],
                b"{}",
            ),
            "nul",
        ),
        (
            "case",
            request("POST", "/V1/Apps/app-a/Users/u1/Deactivate", &[], b"{}"),
            "case",
        ),
        (
            "method-case",
            request("post", "/v1/apps/app-a/users/u1/deactivate", &[], b"{}"),
            "method_case",
        ),
        (
            "override",
            request(
                "GET",
                "/v1/apps/app-a/users/u1/deactivate",
                &["X-HTTP-Method-Override: POST"],
                b"",
            ),
            "method_override",
        ),
        (
            "override-query",
            request(
                "GET",
                "/v1/apps/app-a/users/u1/deactivate?_method=POST",
                &[],
                b"",
            ),
            "method_override",
        ),
        (
            "absolute",
            request(
                "POST",
                "http://auth.example.test/v1/apps%2Fapp-a%2Fusers/u1/deactivate",
                &[],
                b"{}",
            ),
            "encoded_separator",
        ),
        (
            "dot-tenant",
            request(
                "POST",
                "/v1/apps/app-a/users/x%2F..%2F..%2F..%2Fapp-b%2Fusers%2Fu1/deactivate",
                &[],
                b"{}",
            ),
            "encoded_separator",
        ),
    ];
    let before = up.requests();
    for (name, mut req, variant) in cases {
        // Tag the request so its event can be found.
        let rid = format!("variant-{name}");
        let at = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let tag = format!("\r\nX-Request-Id: {rid}");
        req.splice(at..at, tag.into_bytes());
        let resp = raw(sc.addr, req).await;
        assert_eq!(status(&resp), 400, "{name}: {resp}");
        assert!(resp.contains("ambiguous_path"), "{name}: {resp}");
        let evs = events_of(&sc, &rid).await;
        assert_eq!(evs.len(), 1, "{name}: {evs:?}");
        let ev = &evs[0];
        assert_eq!(ev.event_type, "request.rejected", "{name}");
        assert_eq!(ev.reason.as_deref(), Some("ambiguous_path"), "{name}");
        assert_eq!(ev.http.route, "deactivate", "{name}");
        assert_eq!(ev.details["resembles"], "deactivate", "{name}");
        let got = ev.details["variant"].as_str().unwrap_or("");
        assert!(
            got.split('+').any(|v| v == variant),
            "{name}: variant {got}"
        );
    }
    assert_eq!(up.requests(), before, "no variant reached the upstream");

    // HTTP/2 with prior knowledge reads the target the same way.
    let url = sc.url("/v1/apps%2Fapp-a%2Fusers/u1/deactivate");
    let r = send_with(
        true,
        Method::POST,
        &url,
        &[("x-request-id", "variant-h2")],
        Bytes::from("{}"),
    )
    .await
    .unwrap();
    assert_eq!(r.status.as_u16(), 400);
    let evs = events_of(&sc, "variant-h2").await;
    assert_eq!(evs[0].event_type, "request.rejected");
    assert_eq!(up.requests(), before);

    // A tenant switched inside an encoded parameter: the event names the app the upstream would
    // have acted on, not the one the raw path shows.
    let evs = events_of(&sc, "variant-dot-tenant").await;
    assert_eq!(evs[0].app.as_ref().map(|a| a.value.as_str()), Some("app-b"));
    sc.stop().await;
}

#[tokio::test]
async fn normalize_policy_forwards_the_canonical_form_under_the_requirement() {
    let up = upstream::spawn().await;
    let mut sc = harness::start(up.addr, EXTRA, ROUTES).await;
    // Without a token the requirement now applies to the variant.
    let resp = raw(
        sc.addr,
        request(
            "POST",
            "/v1/keys%2Frotate;v=1",
            &["X-Request-Id: norm-1"],
            b"{}",
        ),
    )
    .await;
    assert_eq!(status(&resp), 401, "{resp}");
    let evs = events_of(&sc, "norm-1").await;
    assert_eq!(evs[0].event_type, "access.denied");
    assert_eq!(evs[0].http.route, "rotate");
    assert_eq!(
        evs[0].details["normalized"]["path"],
        "/v1/keys%2Frotate;v=1"
    );

    // With one, the upstream receives the canonical path, and the event is the route's.
    let auth = format!("Authorization: Bearer {}", admin_token());
    let resp = raw(
        sc.addr,
        request(
            "POST",
            "/v1/KEYS/rotate",
            &[&auth, "X-Request-Id: norm-2"],
            b"{}",
        ),
    )
    .await;
    assert_eq!(
        status(&resp),
        404,
        "the test upstream has no such handler: {resp}"
    );
    assert_eq!(
        up.paths.lock().unwrap().last().map(String::as_str),
        Some("/v1/keys/rotate")
    );
    let evs = events_of(&sc, "norm-2").await;
    assert_eq!(evs[0].event_type, "admin.key_rotate");
    assert_eq!(evs[0].details["normalized"]["variant"], "case");

    // A route declared case-insensitive matches any case as itself.
    let resp = raw(
        sc.addr,
        request("POST", "/account/LOGIN", &["X-Request-Id: ci-1"], b"{}"),
    )
    .await;
    assert_eq!(status(&resp), 404, "{resp}");
    let evs = events_of(&sc, "ci-1").await;
    assert_eq!(evs[0].event_type, "auth.login");

    // Codes in the path never reach the store, however the target hid them.
    let resp = raw(
        sc.addr,
        request(
            "POST",
            "/v1/email/VERIFY/S3cretCode-777",
            &["X-Request-Id: code-1"],
            b"{}",
        ),
    )
    .await;
    assert_eq!(status(&resp), 404, "{resp}");
    let evs = events_of(&sc, "code-1").await;
    assert_eq!(
        evs[0].details["normalized"]["path"],
        "/v1/email/VERIFY/{code}"
    );
    let resp = raw(
        sc.addr,
        request(
            "POST",
            "/v1/password/reset%2FS3cretCode-888",
            &["X-Request-Id: code-2"],
            b"{}",
        ),
    )
    .await;
    assert_eq!(status(&resp), 400, "{resp}");
    let evs = events_of(&sc, "code-2").await;
    assert_eq!(evs[0].event_type, "request.rejected");
    assert!(
        !evs[0].http.path.contains("S3cretCode"),
        "{}",
        evs[0].http.path
    );
    sc.stop().await;
    let stored = harness::store_bytes(&sc.db);
    assert!(!harness::contains(&stored, "S3cretCode"), "no code at rest");
}

#[tokio::test]
async fn body_conditioned_routes_fail_closed_however_the_body_arrives() {
    let up = upstream::spawn().await;
    let mut sc = harness::start(up.addr, EXTRA, ROUTES).await;
    let before = up.requests();
    let json_ct = "Content-Type: application/json";

    // The condition read in full: the enforcing route answers (control).
    let resp = raw(
        sc.addr,
        request(
            "POST",
            "/v1/admin/users",
            &[json_ct, "X-Request-Id: body-plain"],
            br#"{"op":"delete"}"#,
        ),
    )
    .await;
    assert_eq!(status(&resp), 401, "{resp}");

    let mut padded = br#"{"op":"delete","pad":""#.to_vec();
    padded.extend(std::iter::repeat_n(b'A', 70_000));
    padded.extend_from_slice(br#""}"#);
    let gz = ["Content-Type: application/json", "Content-Encoding: gzip"];
    let cases: Vec<(&str, Vec<u8>, usize, u16, &str)> = vec![
        (
            "padded-one-write",
            request("POST", "/v1/admin/users", &[json_ct], &padded),
            0,
            413,
            "too_large",
        ),
        (
            "padded-8k-writes",
            request("POST", "/v1/admin/users", &[json_ct], &padded),
            8192,
            413,
            "too_large",
        ),
        (
            "gzip",
            request("POST", "/v1/admin/users", &gz, b"\x1f\x8b\x08\x00"),
            0,
            415,
            "content_encoding",
        ),
        (
            "text-plain",
            request(
                "POST",
                "/v1/admin/users",
                &["Content-Type: text/plain"],
                br#"{"op":"delete"}"#,
            ),
            0,
            415,
            "unsupported_type",
        ),
        (
            "multipart",
            request(
                "POST",
                "/v1/admin/users",
                &["Content-Type: multipart/form-data; boundary=b"],
                b"--b\r\nContent-Disposition: form-data; name=\"op\"\r\n\r\ndelete\r\n--b--\r\n",
            ),
            0,
            415,
            "unsupported_type",
        ),
        (
            "dup-json",
            request(
                "POST",
                "/v1/admin/users",
                &[json_ct],
                br#"{"op":"list","op":"delete"}"#,
            ),
            0,
            400,
            "duplicate_field",
        ),
        (
            "broken-json",
            request("POST", "/v1/admin/users", &[json_ct], br#"{"op":"delete""#),
            0,
            400,
            "unparsable",
        ),
    ];
    for (name, mut req, chunk, want, why) in cases {
        let rid = format!("body-{name}");
        let at = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        req.splice(at..at, format!("\r\nX-Request-Id: {rid}").into_bytes());
        let parts: Vec<Vec<u8>> = if chunk == 0 {
            vec![req]
        } else {
            req.chunks(chunk).map(<[u8]>::to_vec).collect()
        };
        let gap = if chunk == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(2)
        };
        let resp = raw_parts(sc.addr, &parts, gap).await;
        assert_eq!(status(&resp), want, "{name}: {resp}");
        let evs = events_of(&sc, &rid).await;
        assert_eq!(evs.len(), 1, "{name}: {evs:?}");
        assert_eq!(evs[0].event_type, "access.denied", "{name}");
        assert_eq!(evs[0].reason.as_deref(), Some("body_uninspected"), "{name}");
        assert_eq!(evs[0].http.route, "admin-delete", "{name}");
        assert_eq!(evs[0].details["body_uninspected"]["why"], why, "{name}");
    }
    assert_eq!(
        up.requests(),
        before,
        "no uninspectable body reached the upstream"
    );

    // A route that only observes: forwarded, and recorded as its route, flagged.
    let form = "Content-Type: application/x-www-form-urlencoded";
    let mut pw = b"grant_type=password&username=victim&password=hunter2-secret&pad=".to_vec();
    pw.extend(std::iter::repeat_n(b'A', 70_000));
    let req = request(
        "POST",
        "/oauth/token",
        &[form, "X-Request-Id: login-padded"],
        &pw,
    );
    let parts: Vec<Vec<u8>> = req.chunks(8192).map(<[u8]>::to_vec).collect();
    let resp = raw_parts(sc.addr, &parts, Duration::from_millis(2)).await;
    assert_eq!(status(&resp), 404, "forwarded to the upstream: {resp}");
    let evs = events_of(&sc, "login-padded").await;
    assert_eq!(evs[0].event_type, "auth.login");
    assert_eq!(evs[0].details["body_uninspected"]["why"], "too_large");
    let dup = request(
        "POST",
        "/oauth/token",
        &[form, "X-Request-Id: login-dup"],
        b"grant_type=client_credentials&grant_type=password&username=victim",
    );
    let resp = raw(sc.addr, dup).await;
    assert_eq!(status(&resp), 404, "{resp}");
    let evs = events_of(&sc, "login-dup").await;
    assert_eq!(evs[0].event_type, "auth.login");
    assert_eq!(evs[0].details["body_uninspected"]["why"], "duplicate_field");
    sc.stop().await;
    let stored = harness::store_bytes(&sc.db);
    assert!(
        !harness::contains(&stored, "hunter2-secret"),
        "no password at rest"
    );
}

#[tokio::test]
async fn duplicate_credentials_and_host_spellings_cannot_walk_around_a_requirement() {
    let up = upstream::spawn().await;
    let mut sc = harness::start(up.addr, EXTRA, ROUTES).await;
    let before = up.requests();
    let good = format!("Authorization: Bearer {}", admin_token());

    // A valid token first and a second Authorization header: refused, not half-checked.
    let resp = raw(
        sc.addr,
        request(
            "POST",
            "/v1/apps/app-a/users/u1/deactivate",
            &[
                &good,
                "Authorization: Bearer other",
                "X-Request-Id: dup-auth",
            ],
            b"{}",
        ),
    )
    .await;
    assert_eq!(status(&resp), 400, "{resp}");
    let evs = events_of(&sc, "dup-auth").await;
    assert_eq!(evs[0].event_type, "request.rejected");
    assert_eq!(evs[0].reason.as_deref(), Some("duplicate_credentials"));
    // A bearer token and an access_token parameter together.
    let resp = raw(
        sc.addr,
        request(
            "POST",
            "/v1/apps/app-a/users/u1/deactivate?access_token=other",
            &[&good, "X-Request-Id: dup-query"],
            b"{}",
        ),
    )
    .await;
    assert_eq!(status(&resp), 400, "{resp}");
    assert_eq!(up.requests(), before);

    // The host-bound route by other spellings of its host: the requirement answers each.
    for (i, host) in [
        "admin.example.test.",
        "ADMIN.example.test",
        "admin.example.test:80",
    ]
    .iter()
    .enumerate()
    {
        let rid = format!("host-{i}");
        let req = format!(
            "POST /v1/support/impersonate HTTP/1.1\r\nHost: {host}\r\nX-Request-Id: {rid}\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{{}}"
        );
        let resp = raw(sc.addr, req.into_bytes()).await;
        assert_eq!(status(&resp), 401, "{host}: {resp}");
        let evs = events_of(&sc, &rid).await;
        assert_eq!(evs[0].event_type, "access.denied", "{host}");
    }
    assert_eq!(up.requests(), before);
    sc.stop().await;
}
