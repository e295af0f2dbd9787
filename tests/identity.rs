//! Verified identity end to end: JWKS over HTTPS with a test CA (rotation, outage), actor and
//! app from verified claims, app conflicts, trusted and untrusted forwarding headers.

mod support;

use std::sync::atomic::Ordering;

use bytes::Bytes;
use hyper::Method;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use support::harness::{self, send};
use support::jwks_server::{self, FIX};
use support::upstream;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn rs_token(kid: &str, sub: &str, app: &str) -> String {
    let key =
        EncodingKey::from_rsa_pem(&std::fs::read(format!("{FIX}{kid}.key.pem")).unwrap()).unwrap();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.to_string());
    let claims = json!({"sub": sub, "app_id": app, "iss": "https://issuer.test", "exp": now() + 600, "iat": now(),
                        "jti": format!("jti-{sub}-{kid}")});
    encode(&h, &claims, &key).unwrap()
}

fn extra(jwks_url: &str, more: &str) -> String {
    format!(
        "trust:\n  fingerprint_key: identity-test-fingerprint-key\n{more}keys:\n  idp:\n    jwks_url: {jwks_url}\n    jwks_ca_file: {FIX}ca.pem\n    min_refresh: 0ms\n    issuer: https://issuer.test\n    algorithms: [RS256]\n"
    )
}

const ROUTES: &str = r#"  - id: me
    match: { path: /echo-headers }
    event: account.update
    actor: { claim: sub }
    app: [ { claim: app_id }, { header: X-App-Id } ]
"#;

async fn call(sc: &harness::Sidecar, token: &str, headers: &[(&str, &str)]) {
    let bearer = format!("Bearer {token}");
    let mut h = vec![("authorization", bearer.as_str())];
    h.extend_from_slice(headers);
    let r = send(Method::GET, &sc.url("/echo-headers"), &h, Bytes::new())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn jwks_rotation_unknown_kid_then_verified() {
    let up = upstream::spawn().await;
    let idp = jwks_server::spawn(&["rsa1"]).await;
    let mut sc = harness::start(up.addr, &extra(&idp.url(), ""), ROUTES).await;
    let t1 = rs_token("rsa1", "u-1", "app-alpha");
    let t2 = rs_token("rsa2", "u-2", "app-alpha");
    call(&sc, &t1, &[]).await;
    call(&sc, &t2, &[]).await; // rsa2 is not published yet
    idp.set_keys(&["rsa1", "rsa2"]);
    call(&sc, &t2, &[]).await; // the unknown kid triggers a refresh that finds it
    sc.stop().await;

    let evs = sc.events().await;
    assert_eq!(evs.len(), 3);
    assert_eq!(evs[0].actor.id.as_deref(), Some("u-1"));
    assert!(evs[0].actor.verified);
    assert_eq!(evs[0].actor.source.as_deref(), Some("claim:sub@bearer"));
    assert_eq!(evs[0].tokens.len(), 1);
    assert_eq!(evs[0].tokens[0].jti.as_deref(), Some("jti-u-1-rsa1"));
    assert!(evs[0].tokens[0].verified);
    assert_eq!(evs[0].tokens[0].kind, "access");

    assert_eq!(
        (
            evs[1].actor.id.as_deref(),
            evs[1].actor.verified,
            evs[1].actor.source.as_deref()
        ),
        (Some("u-2"), false, Some("claimed:sub@bearer")),
        "an unknown key never yields a verified actor: only the one the token claims"
    );
    assert_eq!(evs[1].tokens[0].invalid.as_deref(), Some("unknown_key"));
    assert!(!evs[1].tokens[0].verified);
    assert_eq!(
        evs[1].tokens[0].sub.as_deref(),
        Some("u-2"),
        "claims are kept, marked unverified"
    );

    assert_eq!(evs[2].actor.id.as_deref(), Some("u-2"));
    assert!(evs[2].actor.verified);
    assert!(
        idp.fetches.load(Ordering::SeqCst) >= 3,
        "startup, unknown kid, rotation"
    );
}

#[tokio::test]
async fn jwks_outage_is_keys_unavailable_not_a_bad_token() {
    let up = upstream::spawn().await;
    let idp = jwks_server::spawn(&["rsa1"]).await;
    idp.set_failing(true);
    let mut sc = harness::start(up.addr, &extra(&idp.url(), ""), ROUTES).await;
    call(&sc, &rs_token("rsa1", "u-1", "app-alpha"), &[]).await;
    sc.stop().await;
    let evs = sc.events().await;
    assert_eq!(
        evs[0].tokens[0].invalid.as_deref(),
        Some("keys_unavailable")
    );
    assert_eq!(
        (evs[0].actor.id.as_deref(), evs[0].actor.verified),
        (Some("u-1"), false),
        "claimed, never verified"
    );

    // A JWKS server nobody listens on behaves the same.
    let dead = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let mut sc = harness::start(
        up.addr,
        &extra(&format!("https://{dead}/jwks.json"), ""),
        ROUTES,
    )
    .await;
    call(&sc, &rs_token("rsa1", "u-1", "app-alpha"), &[]).await;
    sc.stop().await;
    assert_eq!(
        sc.events().await[0].tokens[0].invalid.as_deref(),
        Some("keys_unavailable")
    );
}

#[tokio::test]
async fn app_conflict_keeps_the_verified_app_and_both_values() {
    let up = upstream::spawn().await;
    let idp = jwks_server::spawn(&["rsa1"]).await;
    let mut sc = harness::start(up.addr, &extra(&idp.url(), ""), ROUTES).await;
    call(
        &sc,
        &rs_token("rsa1", "u-1", "app-alpha"),
        &[("x-app-id", "app-beta")],
    )
    .await;
    call(
        &sc,
        &rs_token("rsa1", "u-1", "app-alpha"),
        &[("x-app-id", "app-alpha")],
    )
    .await;
    sc.stop().await;
    let evs = sc.events().await;
    let app = evs[0].app.as_ref().unwrap();
    assert_eq!(
        (app.value.as_str(), app.verified, app.source.as_str()),
        ("app-alpha", true, "claim:app_id@bearer")
    );
    let conflict = evs[0].app_conflict.as_ref().expect("conflict recorded");
    let values: Vec<(&str, bool)> = conflict
        .iter()
        .map(|a| (a.value.as_str(), a.verified))
        .collect();
    assert_eq!(values, vec![("app-alpha", true), ("app-beta", false)]);
    assert_eq!(evs[1].app_conflict, None);
    // A query can list the conflicts.
    let conflicts = sc
        .query(authtrail::store::Query {
            app_conflict: true,
            ..Default::default()
        })
        .await;
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].id, evs[0].id);
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let up = upstream::spawn().await;
    let idp = jwks_server::spawn(&["rsa1"]).await;
    let token = rs_token("rsa1", "u-1", "app-alpha");
    let spoof = [("x-forwarded-for", "198.51.100.7")];

    let mut untrusted = harness::start(up.addr, &extra(&idp.url(), ""), ROUTES).await;
    call(&untrusted, &token, &spoof).await;
    let seen = send(
        Method::GET,
        &untrusted.url("/nope/echo"),
        &spoof,
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(seen.status, 404);
    untrusted.stop().await;
    assert_eq!(
        untrusted.events().await[0].source.ip,
        Some("127.0.0.1".parse().unwrap())
    );

    let mut trusted = harness::start(
        up.addr,
        &extra(&idp.url(), "  proxies: [127.0.0.1/32]\n"),
        ROUTES,
    )
    .await;
    call(&trusted, &token, &spoof).await;
    trusted.stop().await;
    assert_eq!(
        trusted.events().await[0].source.ip,
        Some("198.51.100.7".parse().unwrap())
    );
}

#[tokio::test]
async fn upstream_sees_forwarded_for_replaced_when_the_peer_is_untrusted() {
    let up = upstream::spawn().await;
    let mut sc = harness::start(up.addr, "", "  []\n").await;
    let r = send(
        Method::GET,
        &sc.url("/echo-headers"),
        &[("x-forwarded-for", "198.51.100.7")],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.json()["x-forwarded-for"], "127.0.0.1");
    sc.stop().await;
    let mut sc = harness::start(up.addr, "trust:\n  proxies: [127.0.0.0/8]\n", "  []\n").await;
    let r = send(
        Method::GET,
        &sc.url("/echo-headers"),
        &[("x-forwarded-for", "198.51.100.7")],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.json()["x-forwarded-for"], "198.51.100.7, 127.0.0.1");
    sc.stop().await;
}
