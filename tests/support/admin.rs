//! Helpers for the admin API and viewer tests: a sidecar with admin credentials, a fixture of
//! events written straight into its store, and authenticated requests to the admin listener.

use std::sync::Arc;

use authtrail::admin::auth::token_sha256_hex;
use authtrail::event::{AuditEvent, Outcome, Target, TokenRef, TokenRole};
use authtrail::store::{self, EventStore};
use bytes::Bytes;
use hyper::Method;
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use super::harness::{self, send, Reply, Sidecar};
use super::store_conformance::sample_event;

/// Sees every app; may read and export.
pub const TOKEN_ALL: &str = "tok-all-8f2d1c6e9b";
/// Sees app-a; may read.
pub const TOKEN_ALPHA: &str = "tok-alpha-3c7e0a5d1f";
/// Sees app-b; may read and export.
pub const TOKEN_BETA: &str = "tok-beta-6a9b4e2c8d";
/// Sees every app; may export only.
pub const TOKEN_EXPORTER: &str = "tok-exporter-1b5f7d3a9c";

/// `admin:` config with the four test credentials, by hash.
pub fn credentials_yaml() -> String {
    format!(
        "admin:\n  credentials:\n\
         \x20   - {{ name: security, token_sha256: {}, apps: [\"*\"], permissions: [read, export] }}\n\
         \x20   - {{ name: support-alpha, token_sha256: {}, apps: [app-a], permissions: [read] }}\n\
         \x20   - {{ name: support-beta, token_sha256: {}, apps: [app-b], permissions: [read, export] }}\n\
         \x20   - {{ name: siem, token_sha256: {}, apps: [\"*\"], permissions: [export] }}\n",
        token_sha256_hex(TOKEN_ALL),
        token_sha256_hex(TOKEN_ALPHA),
        token_sha256_hex(TOKEN_BETA),
        token_sha256_hex(TOKEN_EXPORTER),
    )
}

/// A route map with one mapped route, so coverage has something to report.
pub const ROUTES: &str = "  - id: login\n    match: { method: POST, path: /v1/sessions }\n    event: auth.login\n  - id: logout\n    match: { method: DELETE, path: /v1/sessions }\n    event: auth.logout\n";

/// A sidecar (in front of `upstream`) with the test credentials, and its store opened beside it.
pub async fn start(upstream: std::net::SocketAddr) -> (Sidecar, Arc<dyn EventStore>) {
    let sc = harness::start(upstream, &credentials_yaml(), ROUTES).await;
    let store = store::open(&format!("sqlite://{}", sc.db.display()))
        .await
        .unwrap();
    (sc, store)
}

/// GET an admin path with a bearer token (or none).
pub async fn get(sc: &Sidecar, path: &str, token: Option<&str>) -> Reply {
    let url = format!("http://{}{path}", sc.admin);
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("user-agent", "admin-test/1.0")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    send(Method::GET, &url, &headers, Bytes::new())
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// The request ids (labels) of a page's events, in order, leaving out the `audit.*` events the
/// admin reads themselves add.
pub fn labels(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events in {page}"))
        .iter()
        .filter(|e| !e["type"].as_str().unwrap_or("").starts_with("audit."))
        .map(|e| e["http"]["request_id"].as_str().unwrap().to_string())
        .collect()
}

/// When the fixture starts: two hours ago, whole seconds.
pub fn t0() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc() - Duration::hours(2);
    now.replace_nanosecond(0).unwrap()
}

fn token(fp: &str, jti: &str, role: TokenRole) -> TokenRef {
    TokenRef {
        role,
        kind: "refresh".into(),
        source: "response_body:/refresh_token".into(),
        fingerprint: fp.into(),
        jti: Some(jti.into()),
        sub: Some("alice".into()),
        app: None,
        iat: None,
        exp: Some(4_102_444_800),
        verified: true,
        invalid: None,
    }
}

/// The labels of [`fixture`], oldest first.
pub const FIXTURE_LABELS: [&str; 9] = [
    "a-login-ok",
    "a-login-fail",
    "a-login-fail-bob",
    "a-refresh",
    "a-deact",
    "b-login-ok",
    "b-login-fail",
    "b-mfa",
    "n-anon",
];

/// Nine events one minute apart from `t0`: apps a and b and none, several actors and outcomes,
/// a token's issue and refresh, a target with a display name and details with awkward text.
pub fn fixture(t0: OffsetDateTime) -> Vec<AuditEvent> {
    let at = |i: i64| t0 + Duration::minutes(i);
    let ev =
        |i: i64, label: &str, ty: &str, app: Option<&str>, actor: Option<&str>, o, ip: &str| {
            let mut e = sample_event(label, ty, app, actor, o, at(i));
            e.source.ip = Some(ip.parse().unwrap());
            e
        };
    let mut a_ok = ev(
        0,
        "a-login-ok",
        "auth.login",
        Some("app-a"),
        Some("alice"),
        Outcome::Success,
        "192.0.2.1",
    );
    a_ok.actor.display = Some("Alice Anders".into());
    a_ok.tokens
        .push(token("fp-a1", "jti-a1", TokenRole::Issued));
    let a_fail = ev(
        1,
        "a-login-fail",
        "auth.login",
        Some("app-a"),
        Some("alice"),
        Outcome::Failure,
        "192.0.2.1",
    );
    let a_fail_bob = ev(
        2,
        "a-login-fail-bob",
        "auth.login",
        Some("app-a"),
        Some("bob"),
        Outcome::Failure,
        "192.0.2.2",
    );
    let mut a_refresh = ev(
        3,
        "a-refresh",
        "token.refresh",
        Some("app-a"),
        Some("alice"),
        Outcome::Success,
        "192.0.2.1",
    );
    a_refresh.http.route = "refresh".into();
    a_refresh
        .tokens
        .push(token("fp-a1", "jti-a1", TokenRole::Presented));
    a_refresh
        .tokens
        .push(token("fp-a2", "jti-a2", TokenRole::Issued));
    let mut a_deact = ev(
        4,
        "a-deact",
        "account.deactivate",
        Some("app-a"),
        Some("admin1"),
        Outcome::Success,
        "192.0.2.9",
    );
    a_deact.http.route = "deactivate".into();
    a_deact.target = Some(Target {
        kind: "user".into(),
        id: "bob".into(),
        display: Some("Bob \"the builder\", Brown".into()),
        source: "path:user_id".into(),
    });
    a_deact.details.insert(
        "note".into(),
        "=HYPERLINK(\"http://x\")\noffboarding".into(),
    );
    let mut b_ok = ev(
        5,
        "b-login-ok",
        "auth.login",
        Some("app-b"),
        Some("carol"),
        Outcome::Success,
        "198.51.100.3",
    );
    b_ok.tokens
        .push(token("fp-b1", "jti-b1", TokenRole::Issued));
    let b_fail = ev(
        6,
        "b-login-fail",
        "auth.login",
        Some("app-b"),
        Some("carol"),
        Outcome::Failure,
        "198.51.100.3",
    );
    let mut b_mfa = ev(
        7,
        "b-mfa",
        "auth.mfa.verify",
        Some("app-b"),
        Some("carol"),
        Outcome::Failure,
        "198.51.100.3",
    );
    b_mfa.http.route = "mfa".into();
    let anon = ev(
        8,
        "n-anon",
        "auth.login",
        None,
        None,
        Outcome::Error,
        "203.0.113.5",
    );
    vec![
        a_ok, a_fail, a_fail_bob, a_refresh, a_deact, b_ok, b_fail, b_mfa, anon,
    ]
}
