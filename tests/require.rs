//! Authenticating mode: routes that require a verified token, enforced at the edge or only
//! observed; every kind of requirement; the upstream never sees a denied request.

mod support;

use base64::Engine;
use bytes::Bytes;
use hyper::Method;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::demo_auth;
use support::harness::{self, contains, post_json, send};
use support::jwks_server::{self, FIX};
use support::upstream;

const SECRET: &str = "require-test-demo-secret-0042";
const BIN: &str = env!("CARGO_BIN_EXE_authtrail");

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn hs(claims: Value, secret: &str) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn extra(mode: &str) -> String {
    format!(
        r#"trust:
  fingerprint_key: require-test-fingerprint-key
keys:
  demo:
    secret: {SECRET}
requirements:
  app-admin:
    claims: {{ role: [admin, support], typ: access }}
    app_matches: {{ path: app }}
defaults:
  require_mode: {mode}
"#
    )
}

const ROUTES: &str = r#"  - id: deactivate
    match: { method: POST, path: "/v1/apps/{app}/users/{user_id}/deactivate" }
    event: account.deactivate
    actor: { claim: sub }
    actor_kind: admin
    target: { kind: user, from: { path: user_id } }
    outcome: { success: [2xx], failure: [4xx], reason: /error }
    require: app-admin
  - id: me
    match: { method: GET, path: /v1/me }
    event: account.update
    require: { mode: enforce, app_matches: { header: X-App-Id } }
"#;

async fn token(sc: &harness::Sidecar, user: &str, pw: &str) -> String {
    let r = post_json(
        &sc.url("/v1/sessions"),
        json!({"username": user, "password": pw}),
        &[],
    )
    .await;
    r.json()["access_token"].as_str().unwrap().to_string()
}

async fn deactivate(
    sc: &harness::Sidecar,
    app: &str,
    user: &str,
    token: Option<&str>,
) -> harness::Reply {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut h = vec![("content-type", "application/json")];
    if let Some(b) = &bearer {
        h.push(("authorization", b.as_str()));
    }
    send(
        Method::POST,
        &sc.url(&format!("/v1/apps/{app}/users/{user}/deactivate")),
        &h,
        Bytes::from("{}"),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn enforce_denies_at_the_edge_with_rfc6750_answers() {
    let auth = demo_auth::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SECRET.as_bytes().to_vec(),
    );
    let mut sc = harness::start(auth.addr, &extra("enforce"), ROUTES).await;
    let root = token(&sc, "root", "root-pw-9Lm#").await;
    let alice = token(&sc, "alice", "alice-pw-7Qx!").await;
    let expired = hs(
        json!({"sub": "u-root", "role": "admin", "typ": "access", "app_id": "app-alpha", "exp": now() - 600}),
        SECRET,
    );
    let forged = hs(
        json!({"sub": "u-root", "role": "admin", "typ": "access", "app_id": "app-alpha", "exp": now() + 600}),
        "attacker-guess-secret-123456",
    );
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(json!({"sub": "u-root", "role": "admin", "typ": "access", "app_id": "app-alpha", "exp": now() + 600}).to_string())
    );
    let seen_before = auth.requests_seen();

    let cases: Vec<(Option<&str>, &str, u16, &str)> = vec![
        (None, "app-alpha", 401, "Bearer realm=\"authtrail\""),
        (Some(&alice), "app-alpha", 403, "Bearer realm=\"authtrail\", error=\"insufficient_scope\", error_description=\"claim role is not admin or support\""),
        (Some(&root), "app-beta", 403, "Bearer realm=\"authtrail\", error=\"insufficient_scope\", error_description=\"the token is not valid for this app\""),
        (Some(&expired), "app-alpha", 401, "Bearer realm=\"authtrail\", error=\"invalid_token\", error_description=\"the token is invalid: expired\""),
        (Some(&forged), "app-alpha", 401, "Bearer realm=\"authtrail\", error=\"invalid_token\", error_description=\"the token is invalid: bad_signature\""),
        (Some(&none), "app-alpha", 401, "Bearer realm=\"authtrail\", error=\"invalid_token\", error_description=\"the token is invalid: alg_not_allowed\""),
    ];
    for (tok, app, status, www) in &cases {
        let r = deactivate(&sc, app, "u-alice", *tok).await;
        assert_eq!(r.status.as_u16(), *status, "{www}");
        assert_eq!(r.headers["www-authenticate"], *www);
        assert_eq!(r.headers["content-type"], "application/json");
    }
    assert_eq!(
        auth.requests_seen(),
        seen_before,
        "the upstream never received a denied request"
    );

    let ok = deactivate(&sc, "app-alpha", "u-alice", Some(&root)).await;
    assert_eq!(ok.status, 200);
    assert_eq!(auth.requests_seen(), seen_before + 1);

    // Tenancy by header.
    let me = |app: &'static str, t: String| {
        let url = sc.url("/v1/me");
        async move {
            let bearer = format!("Bearer {t}");
            send(
                Method::GET,
                &url,
                &[("authorization", &bearer), ("x-app-id", app)],
                Bytes::new(),
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(me("app-beta", alice.clone()).await.status, 403);
    assert_eq!(me("app-alpha", alice.clone()).await.status, 200);
    sc.stop().await;

    let evs = sc.events().await;
    let denied: Vec<_> = evs
        .iter()
        .filter(|e| e.event_type == "access.denied")
        .collect();
    let reasons: Vec<&str> = denied
        .iter()
        .map(|e| e.reason.as_deref().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "missing_token",
            "claim_mismatch:role",
            "app_mismatch",
            "token_expired",
            "token_bad_signature",
            "token_alg_not_allowed",
            "app_mismatch"
        ]
    );
    assert_eq!(denied[0].http.status, Some(401));
    assert_eq!(denied[1].http.status, Some(403));
    assert_eq!(
        (denied[1].actor.id.as_deref(), denied[1].actor.verified),
        (Some("u-alice"), true)
    );
    assert_eq!(
        (denied[3].actor.id.as_deref(), denied[3].actor.verified),
        (Some("u-root"), false),
        "unverified if that is all there is"
    );
    assert_eq!(denied[2].http.route, "deactivate");
    assert_eq!(denied[2].details["requirement"], "app-admin");
    assert_eq!(denied[2].details["mode"], "enforce");
    assert!(
        denied[4].tokens[0].fingerprint.len() == 64
            && denied[4].tokens[0].invalid.as_deref() == Some("bad_signature")
    );
    assert_eq!(
        evs.iter()
            .filter(|e| e.event_type == "account.deactivate")
            .count(),
        1,
        "only the allowed one reached the upstream"
    );
    // Denials can be listed by route, reason and app.
    let by_reason = sc
        .query(authtrail::store::Query {
            event_type: Some(authtrail::store::TypeFilter::Prefix("access.".into())),
            route: Some("deactivate".into()),
            reason: Some("app_mismatch".into()),
            ..Default::default()
        })
        .await;
    assert_eq!(by_reason.len(), 1);
    assert_eq!(
        by_reason[0].http.path,
        "/v1/apps/app-beta/users/u-alice/deactivate"
    );

    let stored = harness::store_bytes(&sc.db);
    let logs = harness::captured_logs();
    for t in [&root, &alice, &expired, &forged, &none] {
        assert!(!contains(&stored, t) && !logs.contains(t.as_str()));
    }
}

#[tokio::test]
async fn observe_records_would_deny_and_forwards() {
    let auth = demo_auth::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SECRET.as_bytes().to_vec(),
    );
    let mut sc = harness::start(auth.addr, &extra("observe"), ROUTES).await;
    let alice = token(&sc, "alice", "alice-pw-7Qx!").await;
    let before = auth.requests_seen();
    let r = deactivate(&sc, "app-alpha", "u-bob", Some(&alice)).await;
    assert_eq!(r.status, 403, "the upstream's own answer");
    assert!(r.headers.get("www-authenticate").is_none());
    assert_eq!(auth.requests_seen(), before + 1, "observe never blocks");
    sc.stop().await;
    let evs = sc.events().await;
    let kinds: Vec<(&str, Option<&str>)> = evs
        .iter()
        .map(|e| (e.event_type.as_str(), e.reason.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("access.would_deny", Some("claim_mismatch:role")),
            ("account.deactivate", Some("forbidden"))
        ]
    );
    assert_eq!(evs[0].details["mode"], "observe");
}

#[tokio::test]
async fn scopes_and_array_claims() {
    let up = upstream::spawn().await;
    let routes = r#"  - id: admin-api
    match: { path: /echo-headers }
    event: support.action
    require: { mode: enforce, scopes: [users:write], claims: { roles: support } }
"#;
    let mut sc = harness::start(up.addr, &extra("enforce"), routes).await;
    let call = |claims: Value| {
        let url = sc.url("/echo-headers");
        async move {
            let bearer = format!("Bearer {}", hs(claims, SECRET));
            send(
                Method::GET,
                &url,
                &[("authorization", &bearer)],
                Bytes::new(),
            )
            .await
            .unwrap()
        }
    };
    let exp = now() + 600;
    assert_eq!(call(json!({"sub": "s", "exp": exp, "scope": "users:read users:write", "roles": ["viewer", "support"]})).await.status, 200);
    let r =
        call(json!({"sub": "s", "exp": exp, "scope": "users:read", "roles": ["support"]})).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.headers["www-authenticate"],
        "Bearer realm=\"authtrail\", error=\"insufficient_scope\", error_description=\"scope users:write is required\", scope=\"users:write\""
    );
    assert_eq!(
        call(json!({"sub": "s", "exp": exp, "scope": "users:write", "roles": ["viewer"]}))
            .await
            .status,
        403
    );
    assert_eq!(up.requests(), 1);
    sc.stop().await;
}

#[tokio::test]
async fn jwks_outage_on_an_enforcing_route_is_503_or_flagged() {
    let up = upstream::spawn().await;
    let idp = jwks_server::spawn(&["rsa1"]).await;
    idp.set_failing(true);
    let keys = |on: &str| {
        format!(
            "trust:\n  fingerprint_key: require-test-fingerprint-key\nkeys:\n  idp:\n    jwks_url: {}\n    jwks_ca_file: {FIX}ca.pem\n    min_refresh: 1h\ndefaults:\n  on_keys_unavailable: {on}\n",
            idp.url()
        )
    };
    let routes = "  - id: guarded\n    match: { path: /echo-headers }\n    event: support.action\n    require: { mode: enforce }\n";
    let key =
        EncodingKey::from_rsa_pem(&std::fs::read(format!("{FIX}rsa1.key.pem")).unwrap()).unwrap();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("rsa1".into());
    let tok = encode(&h, &json!({"sub": "u-1", "exp": now() + 600}), &key).unwrap();
    let bearer = format!("Bearer {tok}");

    let mut deny = harness::start(up.addr, &keys("deny"), routes).await;
    let r = send(
        Method::GET,
        &deny.url("/echo-headers"),
        &[("authorization", &bearer)],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"], "keys_unavailable");
    assert_eq!(up.requests(), 0, "never a silent allow");
    deny.stop().await;
    assert_eq!(
        deny.events().await[0].reason.as_deref(),
        Some("keys_unavailable")
    );

    let mut flag = harness::start(up.addr, &keys("allow_and_flag"), routes).await;
    let r = send(
        Method::GET,
        &flag.url("/echo-headers"),
        &[("authorization", &bearer)],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(up.requests(), 1);
    flag.stop().await;
    let evs = flag.events().await;
    assert_eq!(
        (evs[0].event_type.as_str(), evs[0].reason.as_deref()),
        ("access.would_deny", Some("keys_unavailable"))
    );
    assert_eq!(evs[1].event_type, "support.action");
}

#[test]
fn explain_token_says_whether_a_request_would_pass() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("authtrail.yaml");
    std::fs::write(
        &cfg,
        format!(
            "upstream: http://127.0.0.1:9\n{}routes:\n{ROUTES}",
            extra("enforce")
        ),
    )
    .unwrap();
    let exp = now() + 600;
    let admin = hs(
        json!({"sub": "u-root", "role": "admin", "typ": "access", "app_id": "app-alpha", "exp": exp}),
        SECRET,
    );
    let user = hs(
        json!({"sub": "u-alice", "role": "user", "typ": "access", "app_id": "app-alpha", "exp": exp}),
        SECRET,
    );
    let run = |tok: &str, path: &str, extra_args: &[&str]| {
        let mut args = vec!["explain", "--config", cfg.to_str().unwrap(), "--token", tok];
        args.extend_from_slice(extra_args);
        args.extend_from_slice(&["POST", path]);
        let out = std::process::Command::new(BIN)
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines()
            .skip_while(|l| !l.starts_with("requirement"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        run(&admin, "/v1/apps/app-alpha/users/u-bob/deactivate", &[]),
        "requirement app-admin (enforce), token from bearer: verified, sub u-root\nPASS: the request would be forwarded"
    );
    assert_eq!(
        run(&user, "/v1/apps/app-alpha/users/u-bob/deactivate", &[]),
        "requirement app-admin (enforce), token from bearer: verified, sub u-alice\nDENY: 403 insufficient_scope (claim_mismatch:role): claim role is not admin or support"
    );
    assert_eq!(
        run(&admin, "/v1/apps/app-beta/users/u-bob/deactivate", &[]),
        "requirement app-admin (enforce), token from bearer: verified, sub u-root\nDENY: 403 insufficient_scope (app_mismatch): the token is not valid for this app"
    );
    assert_eq!(
        run("not-a-token", "/v1/apps/app-alpha/users/u-bob/deactivate", &[]),
        "requirement app-admin (enforce), token from bearer: not a verifiable JWT\nDENY: 401 invalid_token (token_malformed): the token is invalid: malformed"
    );
}

#[test]
fn explain_without_a_token_says_the_request_would_be_refused_or_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("authtrail.yaml");
    let explain = |mode: &str, path: &str| {
        std::fs::write(
            &cfg,
            format!(
                "upstream: http://127.0.0.1:9\n{}routes:\n{ROUTES}",
                extra(mode)
            ),
        )
        .unwrap();
        let out = std::process::Command::new(BIN)
            .args(["explain", "--config", cfg.to_str().unwrap(), "POST", path])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines()
            .skip_while(|l| !l.starts_with("MATCH"))
            .skip(1)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let path = "/v1/apps/app-alpha/users/u-bob/deactivate";
    assert_eq!(
        explain("enforce", path),
        "requirement app-admin (enforce), token from bearer: none given (--token)\nDENY: 401 unauthorized (missing_token): a bearer token is required"
    );
    assert_eq!(
        explain("observe", path),
        "requirement app-admin (observe), token from bearer: none given (--token)\nWOULD DENY (observe: forwarded, recorded as access.would_deny): 401 unauthorized (missing_token): a bearer token is required"
    );
}
