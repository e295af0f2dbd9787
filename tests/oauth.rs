//! Worked example (b), config/oauth.yaml, against an OAuth2 token endpoint: client_credentials
//! with Basic client auth, password and refresh grants on one path told apart by `grant_type`,
//! revocation, RS256 access tokens verified with the provider's JWKS — and no client secret,
//! password or token in the store or the logs.

mod support;

use authtrail::event::{ActorKind, Outcome, TokenRole};
use base64::Engine;
use bytes::Bytes;
use hyper::Method;
use support::events::basic;
use support::harness::{self, contains, send};
use support::oauth::{self, ALICE_PASSWORD, CLIENT_ID, CLIENT_SECRET};

async fn form(
    sc: &harness::Sidecar,
    path: &str,
    body: String,
    auth: Option<&str>,
) -> harness::Reply {
    let mut h = vec![("content-type", "application/x-www-form-urlencoded")];
    if let Some(a) = auth {
        h.push(("authorization", a));
    }
    send(Method::POST, &sc.url(path), &h, Bytes::from(body))
        .await
        .unwrap()
}

#[tokio::test]
async fn oauth_token_endpoint_example_config() {
    let idp = oauth::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("oauth.db");
    std::env::set_var("OAUTH_UPSTREAM", format!("http://{}", idp.addr));
    std::env::set_var("OAUTH_JWKS_URL", idp.jwks_url());
    std::env::set_var("FINGERPRINT_KEY", "oauth-example-fingerprint-key");
    std::env::set_var("AUTHTRAIL_STORE", format!("sqlite://{}", db.display()));
    let cfg =
        authtrail::config::load_file(concat!(env!("CARGO_MANIFEST_DIR"), "/config/oauth.yaml"))
            .unwrap_or_else(|e| panic!("{e}"));
    let mut sc = harness::start_config(cfg, db, dir).await;

    let good = basic(CLIENT_ID, CLIENT_SECRET);
    let bad = basic(CLIENT_ID, "wrong-client-secret-zz");
    let cc = form(
        &sc,
        "/oauth/token",
        "grant_type=client_credentials&scope=invoices%3Aread".into(),
        Some(&good),
    )
    .await;
    assert_eq!(cc.status, 200);
    let cc_access = cc.json()["access_token"].as_str().unwrap().to_string();
    let denied = form(
        &sc,
        "/oauth/token",
        "grant_type=client_credentials".into(),
        Some(&bad),
    )
    .await;
    assert_eq!(denied.status, 401);
    let login = form(
        &sc,
        "/oauth/token",
        format!(
            "grant_type=password&username=alice&password={}",
            urlencode(ALICE_PASSWORD)
        ),
        Some(&good),
    )
    .await;
    assert_eq!(login.status, 200);
    let access1 = login.json()["access_token"].as_str().unwrap().to_string();
    let refresh1 = login.json()["refresh_token"].as_str().unwrap().to_string();
    let refreshed = form(
        &sc,
        "/oauth/token",
        format!("grant_type=refresh_token&refresh_token={refresh1}"),
        Some(&good),
    )
    .await;
    assert_eq!(refreshed.status, 200);
    let access2 = refreshed.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let refresh2 = refreshed.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let revoked = form(
        &sc,
        "/oauth/revoke",
        format!("token={refresh2}&token_type_hint=refresh_token"),
        Some(&good),
    )
    .await;
    assert_eq!(revoked.status, 200);
    let unknown = form(
        &sc,
        "/oauth/token",
        "grant_type=device_code".into(),
        Some(&good),
    )
    .await;
    assert_eq!(unknown.status, 400);
    sc.stop().await;

    let evs = sc.events().await;
    let types: Vec<&str> = evs.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "token.issue",
            "token.issue",
            "auth.login",
            "token.refresh",
            "token.revoke"
        ],
        "the device_code grant is unmapped"
    );

    let (ok, fail, login_ev, refresh_ev, revoke_ev) = (&evs[0], &evs[1], &evs[2], &evs[3], &evs[4]);
    assert_eq!(
        (
            ok.outcome,
            ok.actor.id.as_deref(),
            ok.actor.verified,
            ok.actor.kind
        ),
        (Outcome::Success, Some(CLIENT_ID), true, ActorKind::Service)
    );
    assert_eq!(
        ok.app.as_ref().map(|a| (a.value.as_str(), a.verified)),
        Some(("app-billing", true))
    );
    assert_eq!(ok.app_conflict, None, "the lookup agrees with the token");
    assert_eq!(ok.details["grant"], "client_credentials");
    assert_eq!(ok.details["scope"], "invoices:read");
    assert_eq!(ok.tokens.len(), 1);
    assert_eq!(
        (
            ok.tokens[0].role,
            ok.tokens[0].kind.as_str(),
            ok.tokens[0].verified
        ),
        (TokenRole::Issued, "access", true)
    );

    assert_eq!(
        (fail.outcome, fail.reason.as_deref()),
        (Outcome::Failure, Some("invalid_client"))
    );
    assert_eq!(
        (
            fail.actor.id.as_deref(),
            fail.actor.verified,
            fail.actor.source.as_deref()
        ),
        (Some(CLIENT_ID), false, Some("basic_auth:user"))
    );
    // The client id names its app through the lookup table, unverified.
    assert_eq!(
        fail.app
            .as_ref()
            .map(|a| (a.value.as_str(), a.verified, a.source.as_str())),
        Some(("app-billing", false, "lookup:client_app(basic_auth:user)"))
    );

    assert_eq!(
        (login_ev.actor.id.as_deref(), login_ev.actor.verified),
        (Some("u-alice"), true)
    );
    assert_eq!(login_ev.details["username"], "alice");
    assert_eq!(login_ev.details["client"], CLIENT_ID);
    let issued_refresh = login_ev
        .tokens
        .iter()
        .find(|t| t.kind == "refresh")
        .expect("refresh token recorded");
    assert!(
        !issued_refresh.verified
            && issued_refresh.invalid.is_none()
            && issued_refresh.jti.is_none(),
        "opaque: fingerprint only"
    );

    // The refresh links the token it was given to the ones it issued.
    let presented = refresh_ev
        .tokens
        .iter()
        .find(|t| t.role == TokenRole::Presented)
        .unwrap();
    assert_eq!(presented.fingerprint, issued_refresh.fingerprint);
    assert_eq!(
        refresh_ev
            .tokens
            .iter()
            .filter(|t| t.role == TokenRole::Issued)
            .count(),
        2
    );
    let rotated = refresh_ev
        .tokens
        .iter()
        .find(|t| t.role == TokenRole::Issued && t.kind == "refresh")
        .unwrap();
    assert_eq!(revoke_ev.tokens[0].fingerprint, rotated.fingerprint);
    assert_eq!(
        (revoke_ev.tokens[0].role, revoke_ev.actor.kind),
        (TokenRole::Presented, ActorKind::Service)
    );

    let stored = harness::store_bytes(&sc.db);
    let logs = harness::captured_logs();
    for secret in [
        CLIENT_SECRET,
        "wrong-client-secret-zz",
        ALICE_PASSWORD,
        &good,
        &bad,
        &cc_access,
        &access1,
        &access2,
        &refresh1,
        &refresh2,
    ] {
        assert!(
            !contains(&stored, secret),
            "{secret:.24}… reached the store"
        );
        assert!(!logs.contains(secret), "{secret:.24}… reached the logs");
    }
    let b64 =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    assert!(!contains(&stored, &b64));
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
