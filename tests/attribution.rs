//! Who acted, in which app, end to end through the sidecar: claimed identities of tokens that
//! fail verification (never satisfying a requirement), key sets naming their subject and app
//! claims, lookup tables from a file, stable reasons, constants as fallbacks, and the path
//! stored as the upstream received it — with no secret in the store or the logs.

mod support;

use bytes::Bytes;
use hyper::Method;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use support::harness::{self, contains, send};
use support::upstream;

const SECRET: &str = "attribution-e2e-hmac-secret-42";
const PASSWORD: &str = "hunter2-attribution-pw!";

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn token(secret: &str, user: &str, tenant: &str, exp: i64) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"user_id": user, "tenant": tenant, "exp": exp}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

const KEYS: &str = "trust:\n  fingerprint_key: attribution-fingerprint-key\nkeys:\n  main:\n    secret: attribution-e2e-hmac-secret-42\n    subject_claim: user_id\n    app_claim: tenant\n";

const ROUTES: &str = r#"  - id: me
    match: { method: GET, path: /echo-headers }
    event: account.read
    actor: { claim: user_id }
    app: [ { claim: tenant }, { const: app-alpha } ]
  - id: admin
    match: { method: POST, path: /admin/purge }
    event: admin.purge
    require: { mode: enforce, claims: { user_id: u-root } }
"#;

async fn get_me(sc: &harness::Sidecar, token: &str) {
    let bearer = format!("Bearer {token}");
    let r = send(
        Method::GET,
        &sc.url("/echo-headers"),
        &[("authorization", &bearer)],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
}

async fn purge(sc: &harness::Sidecar, token: &str) -> u16 {
    let bearer = format!("Bearer {token}");
    send(
        Method::POST,
        &sc.url("/admin/purge"),
        &[("authorization", &bearer)],
        Bytes::new(),
    )
    .await
    .unwrap()
    .status
    .as_u16()
}

#[tokio::test]
async fn claimed_identities_are_recorded_unverified_and_never_pass_a_requirement() {
    let up = upstream::spawn().await;
    let mut sc = harness::start(up.addr, KEYS, ROUTES).await;
    let good = token(SECRET, "u-1", "app-beta", now() + 600);
    let forged = token(
        "some-other-secret-0123456789",
        "u-2",
        "app-beta",
        now() + 600,
    );
    let expired = token(SECRET, "u-3", "app-beta", now() - 3600);
    let forged_root = token(
        "some-other-secret-0123456789",
        "u-root",
        "app-beta",
        now() + 600,
    );
    let root = token(SECRET, "u-root", "app-beta", now() + 600);
    get_me(&sc, &good).await;
    get_me(&sc, &forged).await;
    get_me(&sc, &expired).await;
    assert_eq!(purge(&sc, &forged_root).await, 401, "a claim is no proof");
    assert_eq!(
        purge(&sc, &root).await,
        404,
        "forwarded: the upstream has no such path"
    );
    sc.stop().await;
    assert_eq!(
        up.paths
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == "/admin/purge")
            .count(),
        1,
        "only the verified root reached the upstream"
    );

    let evs = sc.events().await;
    assert_eq!(evs.len(), 5, "{evs:#?}");
    let who = |i: usize| {
        let e = &evs[i];
        (
            e.actor.id.clone(),
            e.actor.verified,
            e.actor.source.clone(),
            e.app.as_ref().map(|a| (a.value.clone(), a.verified)),
        )
    };
    let s = |v: &str| Some(v.to_string());
    // Verified: the app from the token, the constant a fallback that does not compete.
    assert_eq!(
        who(0),
        (
            s("u-1"),
            true,
            s("claim:user_id@bearer"),
            Some(("app-beta".into(), true))
        )
    );
    assert_eq!(evs[0].app_conflict, None, "a constant never conflicts");
    // Forged and expired: who the token claims to be, unverified, with the reason on the token.
    for (i, user, why) in [(1, "u-2", "bad_signature"), (2, "u-3", "expired")] {
        assert_eq!(
            who(i),
            (
                s(user),
                false,
                s("claimed:user_id@bearer"),
                Some(("app-beta".into(), false))
            ),
            "{why}"
        );
        let t = &evs[i].tokens[0];
        assert_eq!(
            (
                t.sub.as_deref(),
                t.app.as_deref(),
                t.verified,
                t.invalid.as_deref()
            ),
            (Some(user), Some("app-beta"), false, Some(why))
        );
    }
    // The denial names the claimed subject (the key set's subject_claim), unverified.
    assert_eq!(evs[3].event_type, "access.denied");
    assert_eq!(evs[3].reason.as_deref(), Some("token_bad_signature"));
    assert_eq!(
        who(3),
        (
            s("u-root"),
            false,
            s("claimed:user_id@bearer"),
            Some(("app-beta".into(), false))
        )
    );
    assert_eq!(evs[4].event_type, "admin.purge");
    assert_eq!(
        who(4),
        (
            s("u-root"),
            true,
            s("claim:user_id@bearer"),
            Some(("app-beta".into(), true))
        )
    );

    let stored = harness::store_bytes(&sc.db);
    let logs = harness::captured_logs();
    for t in [&good, &forged, &expired, &forged_root, &root] {
        assert!(!contains(&stored, t), "a token reached the store");
        assert!(!logs.contains(t.as_str()), "a token reached the logs");
    }
}

#[tokio::test]
async fn lookups_stable_reasons_and_the_path_as_received() {
    let up = upstream::spawn().await;
    let files = tempfile::tempdir().unwrap();
    let clients = files.path().join("clients.yaml");
    std::fs::write(&clients, "svc-alpha: app-alpha\nsvc-beta: app-beta\n").unwrap();
    let extra = format!(
        "lookups:\n  client_app: {{ file: {} }}\nreasons:\n  - {{ status: 404, code: no_such_endpoint }}\n",
        clients.display()
    );
    let routes = r#"  - id: login
    match: { method: POST, path: /auth/login }
    event: auth.login
    actor: { form: username }
    app: [ { form: client_id, map: client_app }, { const: app-default } ]
    outcome: { reason: /error }
    reasons:
      - { exact: not_found, code: invalid_credentials }
  - id: token
    match: { method: POST, path: /auth/token }
    event: token.issue
    actor: { form: client_id }
    app: { form: client_id, map: client_app }
"#;
    let mut sc = harness::start(up.addr, &extra, routes).await;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let body = |client: &str| {
        Bytes::from(format!(
            "username=alice&password={}&client_id={client}",
            form_urlencoded::byte_serialize(PASSWORD.as_bytes()).collect::<String>()
        ))
    };
    for (path, client) in [
        ("/auth/login/", "svc-beta"),
        ("/auth/login", "svc-unknown"),
        ("/auth/token", "svc-alpha"),
    ] {
        let r = send(Method::POST, &sc.url(path), &form, body(client))
            .await
            .unwrap();
        assert_eq!(r.status, 404);
    }
    sc.stop().await;
    assert_eq!(
        up.paths.lock().unwrap().as_slice(),
        ["/auth/login/", "/auth/login", "/auth/token"]
    );
    let evs = sc.events().await;
    assert_eq!(evs.len(), 3, "{evs:#?}");
    let e = &evs[0];
    assert_eq!(
        e.http.path, "/auth/login/",
        "stored as the upstream received it"
    );
    assert_eq!(
        e.app
            .as_ref()
            .map(|a| (a.value.as_str(), a.verified, a.source.as_str())),
        Some(("app-beta", false, "lookup:client_app(form:client_id)"))
    );
    assert_eq!(e.reason.as_deref(), Some("invalid_credentials"));
    assert_eq!(e.details["reason_text"], "not_found");
    // Not in the table: the next source.
    assert_eq!(evs[1].http.path, "/auth/login");
    assert_eq!(
        evs[1]
            .app
            .as_ref()
            .map(|a| (a.value.as_str(), a.source.as_str())),
        Some(("app-default", "const"))
    );
    // The file's rules apply after the route's: here by status.
    assert_eq!(evs[2].reason.as_deref(), Some("no_such_endpoint"));
    assert_eq!(evs[2].details["reason_text"], "http_404");
    assert_eq!(
        evs[2].app.as_ref().map(|a| a.value.as_str()),
        Some("app-alpha")
    );

    let stored = harness::store_bytes(&sc.db);
    assert!(!contains(&stored, PASSWORD));
    assert!(!harness::captured_logs().contains(PASSWORD));
}

#[tokio::test]
async fn id_tokens_meet_the_client_audience_access_tokens_the_api_one() {
    let up = upstream::spawn().await;
    let extra = "trust:\n  fingerprint_key: attribution-fingerprint-key\nkeys:\n  main:\n    secret: attribution-e2e-hmac-secret-42\n    audience: billing-api\n    id_token_audience: [web-client]\n";
    let routes = r#"  - id: oidc-login
    match: { method: POST, path: /auth/oidc }
    event: auth.login
    actor: { claim: sub, request_body: /id_token }
    tokens: { presented: [/id_token] }
"#;
    let mut sc = harness::start(up.addr, extra, routes).await;
    let signed = |aud: &str| {
        encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "u-oidc", "aud": aud, "exp": now() + 600}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let (access, id) = (signed("billing-api"), signed("web-client"));
    for (bearer, id_token) in [(&access, &id), (&id, &access)] {
        let auth = format!("Bearer {bearer}");
        let r = send(
            Method::POST,
            &sc.url("/auth/oidc"),
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ],
            Bytes::from(json!({ "id_token": id_token }).to_string()),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 404);
    }
    sc.stop().await;
    let evs = sc.events().await;
    assert_eq!(evs.len(), 2);
    let verdicts = |i: usize| {
        let mut v: Vec<(String, bool, Option<String>)> = evs[i]
            .tokens
            .iter()
            .map(|t| (t.kind.clone(), t.verified, t.invalid.clone()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        verdicts(0),
        [("access".into(), true, None), ("id".into(), true, None)],
        "each kind meets its own audience"
    );
    assert_eq!(
        (evs[0].actor.id.as_deref(), evs[0].actor.verified),
        (Some("u-oidc"), true)
    );
    assert_eq!(
        verdicts(1),
        [
            ("access".into(), false, Some("wrong_audience".into())),
            ("id".into(), false, Some("wrong_audience".into()))
        ],
        "swapped, neither verifies"
    );
    assert_eq!(
        evs[1].actor.source.as_deref(),
        Some("claimed:sub@request_body:/id_token")
    );
}
