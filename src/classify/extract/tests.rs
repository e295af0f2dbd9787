//! Who acted and in which app: verified, claimed and looked-up values; constants as fallbacks;
//! stable reasons; the stored path.

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::classify::{classify, RequestHead};
use crate::config::{load_str, Config};
use crate::event::AuditEvent;

const SECRET: &str = "unit-test-hmac-secret-0123456789";

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn token(secret: &str, claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn good(user: &str, tenant: &str) -> String {
    token(
        SECRET,
        json!({"user_id": user, "tenant": tenant, "aud": "api", "exp": now() + 600}),
    )
}

fn forged(user: &str, tenant: &str) -> String {
    token(
        "not-the-secret-at-all-0123456789",
        json!({"user_id": user, "tenant": tenant, "aud": "api", "exp": now() + 600}),
    )
}

fn config(extra: &str, routes: &str) -> Config {
    let yaml = format!(
        "upstream: http://127.0.0.1:9\ntrust:\n  fingerprint_key: unit-test-fingerprint-key\nkeys:\n  hs:\n    secret: {SECRET}\n    subject_claim: user_id\n    app_claim: tenant\n    audience: api\n    id_token_audience: client-1\n{extra}routes:\n{routes}"
    );
    load_str(&yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"))
}

/// One exchange through the route map: the request (headers, form or JSON body), the
/// response (status, JSON body), every token the route reads checked with the config's keys.
struct Exchange<'a> {
    method: &'a str,
    path: &'a str,
    headers: Vec<(&'a str, String)>,
    body: String,
    status: u16,
    resp: Value,
    resp_headers: Vec<(&'a str, String)>,
}

impl Default for Exchange<'_> {
    fn default() -> Self {
        Exchange {
            method: "POST",
            path: "/x",
            headers: Vec::new(),
            body: String::new(),
            status: 200,
            resp: json!({}),
            resp_headers: Vec::new(),
        }
    }
}

fn run(cfg: &Config, x: Exchange<'_>) -> AuditEvent {
    let method = Method::from_bytes(x.method.as_bytes()).unwrap();
    let head = RequestHead {
        method: &method,
        host: None,
        path: x.path,
    };
    let m = classify(&cfg.routes, &head).expect("a route matches");
    let mut headers = HeaderMap::new();
    for (k, v) in &x.headers {
        headers.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let (path, query) = match x.path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (x.path, None),
    };
    let req_parsed = ParsedBody::default();
    let cookies = cookie_prints(m.route, &headers, cfg.identity.fingerprinter.as_ref());
    let req = RequestFacts {
        method: &method,
        path,
        query,
        headers: &headers,
        body: x.body.as_bytes(),
        body_truncated: false,
        parsed: &req_parsed,
        cookies: &cookies,
    };
    let resp_body = x.resp.to_string();
    let mut resp_headers = HeaderMap::new();
    resp_headers.insert("content-type", HeaderValue::from_static("application/json"));
    for (k, v) in &x.resp_headers {
        resp_headers.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let resp_parsed = ParsedBody::default();
    let resp = ResponseFacts {
        status: Some(StatusCode::from_u16(x.status).unwrap()),
        headers: Some(&resp_headers),
        body: resp_body.as_bytes(),
        body_truncated: false,
        failure: None,
        parsed: &resp_parsed,
    };
    let mut seen = Vec::new();
    for (location, keys) in m.route.token_reads() {
        let raw = match location {
            l if l.is_issued() => issued_token(l, &resp).map(|(t, _)| t),
            other => request_token(other, &req),
        };
        if let Some(raw) = raw {
            let checked = cfg.identity.check_now(&raw, keys.as_deref());
            seen.push(SeenToken::new(location.clone(), keys.clone(), checked));
        }
    }
    let base = EventBase {
        id: uuid::Uuid::now_v7(),
        time: crate::event::now_millis(),
        request_id: "r".into(),
        client: Default::default(),
        duration_ms: 0,
    };
    build_event(&m, &cfg.redactor, &req, &resp, &seen, base)
}

fn bearer(t: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {t}"))]
}

fn actor(e: &AuditEvent) -> (Option<&str>, bool, Option<&str>) {
    (
        e.actor.id.as_deref(),
        e.actor.verified,
        e.actor.source.as_deref(),
    )
}

fn app(e: &AuditEvent) -> Option<(&str, bool, &str)> {
    e.app
        .as_ref()
        .map(|a| (a.value.as_str(), a.verified, a.source.as_str()))
}

const CLAIM_ROUTE: &str = "  - id: me\n    match: { path: /x }\n    event: account.update\n    actor: { claim: user_id }\n    app: { claim: tenant }\n";

#[test]
fn a_verified_token_names_the_actor_and_app_verified() {
    let cfg = config("", CLAIM_ROUTE);
    let e = run(
        &cfg,
        Exchange {
            headers: bearer(&good("u-1", "app-alpha")),
            ..Default::default()
        },
    );
    assert_eq!(actor(&e), (Some("u-1"), true, Some("claim:user_id@bearer")));
    assert_eq!(app(&e), Some(("app-alpha", true, "claim:tenant@bearer")));
    assert_eq!(
        e.tokens[0].sub.as_deref(),
        Some("u-1"),
        "from subject_claim"
    );
    assert_eq!(
        e.tokens[0].app.as_deref(),
        Some("app-alpha"),
        "from app_claim"
    );
    assert!(e.tokens[0].verified);
}

#[test]
fn a_token_that_fails_verification_still_says_who_it_claims_to_be() {
    let cfg = config("", CLAIM_ROUTE);
    let expired = token(
        SECRET,
        json!({"user_id": "u-old", "tenant": "app-alpha", "aud": "api", "exp": now() - 3600}),
    );
    for (t, why, user) in [
        (
            forged("u-mallory", "app-alpha"),
            "bad_signature",
            "u-mallory",
        ),
        (expired, "expired", "u-old"),
    ] {
        let e = run(
            &cfg,
            Exchange {
                headers: bearer(&t),
                ..Default::default()
            },
        );
        assert_eq!(
            actor(&e),
            (Some(user), false, Some("claimed:user_id@bearer")),
            "{why}"
        );
        assert_eq!(app(&e), Some(("app-alpha", false, "claimed:tenant@bearer")));
        let t = &e.tokens[0];
        assert_eq!(
            (
                t.sub.as_deref(),
                t.app.as_deref(),
                t.verified,
                t.invalid.as_deref()
            ),
            (Some(user), Some("app-alpha"), false, Some(why))
        );
    }
}

#[test]
fn a_claimed_value_yields_to_any_verified_one_and_keeps_its_place_otherwise() {
    let cfg = config(
        "",
        "  - id: me\n    match: { path: /x }\n    event: account.update\n    actor: [ { claim: user_id }, { header: X-User } ]\n    app: [ { claim: tenant }, { header: X-App } ]\n",
    );
    // No verified value: the claimed one comes first in source order.
    let mut h = bearer(&forged("u-claimed", "app-claimed"));
    h.push(("x-user", "u-typed".into()));
    h.push(("x-app", "app-typed".into()));
    let e = run(
        &cfg,
        Exchange {
            headers: h,
            ..Default::default()
        },
    );
    assert_eq!(
        actor(&e),
        (Some("u-claimed"), false, Some("claimed:user_id@bearer"))
    );
    assert_eq!(
        app(&e),
        Some(("app-claimed", false, "claimed:tenant@bearer"))
    );
    assert_eq!(
        e.app_conflict.as_ref().map(Vec::len),
        Some(2),
        "a claimed app that disagrees is a conflict"
    );
    // A verified value always wins over a claimed one.
    let values = vec![
        Resolved {
            value: "claimed".into(),
            source: "claimed:sub@bearer".into(),
            verified: false,
            claimed: true,
            constant: false,
        },
        Resolved {
            value: "typed".into(),
            source: "header:x-user".into(),
            verified: false,
            claimed: false,
            constant: false,
        },
        Resolved {
            value: "proven".into(),
            source: "claim:sub@header:x-token".into(),
            verified: true,
            claimed: false,
            constant: false,
        },
    ];
    assert_eq!(
        pick(values.clone()).map(|r| r.value).as_deref(),
        Some("typed"),
        "with a verified value present, the source order of real values holds"
    );
    assert_eq!(
        pick(values[..2].to_vec()).map(|r| r.value).as_deref(),
        Some("claimed")
    );
}

#[test]
fn a_claimed_subject_never_satisfies_a_requirement() {
    let cfg = config(
        "requirements:\n  admin:\n    mode: enforce\n    claims: { user_id: u-root }\n",
        "  - id: me\n    match: { path: /x }\n    event: account.update\n    require: admin\n",
    );
    let route = &cfg.routes.routes[0];
    let requirement = route.require.as_deref().unwrap();
    let forged = cfg.identity.check_now(&forged("u-root", "app-alpha"), None);
    assert_eq!(forged.subject().as_deref(), Some("u-root"));
    let d = crate::identity::require::evaluate(requirement, Some(&forged), &[], &HeaderMap::new());
    assert!(
        matches!(&d, crate::identity::require::Decision::Deny(d) if d.reason == "token_bad_signature"),
        "{d:?}"
    );
    // The event still names who the token claims to be (the requirement's token, by the key
    // set's subject_claim), unverified.
    let e = run(
        &cfg,
        Exchange {
            headers: bearer(&forged_token_root()),
            ..Default::default()
        },
    );
    assert_eq!(
        actor(&e),
        (Some("u-root"), false, Some("claimed:user_id@bearer"))
    );
    let ok = run(
        &cfg,
        Exchange {
            headers: bearer(&good("u-root", "app-alpha")),
            ..Default::default()
        },
    );
    assert_eq!(
        actor(&ok),
        (Some("u-root"), true, Some("claim:user_id@bearer"))
    );
    assert_eq!(app(&ok), Some(("app-alpha", true, "claim:tenant@bearer")));
}

fn forged_token_root() -> String {
    forged("u-root", "app-alpha")
}

#[test]
fn a_constant_app_is_a_fallback_never_a_conflict() {
    let cfg = config(
        "",
        "  - id: me\n    match: { path: /x }\n    event: account.update\n    app: [ { claim: tenant }, { header: X-App }, { const: app-alpha } ]\n",
    );
    let e = run(
        &cfg,
        Exchange {
            headers: bearer(&good("u-1", "app-beta")),
            ..Default::default()
        },
    );
    assert_eq!(app(&e), Some(("app-beta", true, "claim:tenant@bearer")));
    assert_eq!(e.app_conflict, None, "the default does not compete");
    let e = run(
        &cfg,
        Exchange {
            headers: vec![("x-app", "app-gamma".into())],
            ..Default::default()
        },
    );
    assert_eq!(app(&e), Some(("app-gamma", false, "header:x-app")));
    assert_eq!(e.app_conflict, None);
    let e = run(&cfg, Exchange::default());
    assert_eq!(app(&e), Some(("app-alpha", false, "const")));
    assert_eq!(e.app_conflict, None);
    // Real sources that disagree are still a conflict.
    let mut h = bearer(&good("u-1", "app-beta"));
    h.push(("x-app", "app-gamma".into()));
    let e = run(
        &cfg,
        Exchange {
            headers: h,
            ..Default::default()
        },
    );
    let values: Vec<&str> = e
        .app_conflict
        .iter()
        .flatten()
        .map(|a| a.value.as_str())
        .collect();
    assert_eq!(values, ["app-beta", "app-gamma"]);
}

fn basic(user: &str) -> Vec<(&'static str, String)> {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw-never-read"));
    vec![("authorization", format!("Basic {b}"))]
}

#[test]
fn lookups_map_a_value_or_fall_through_to_the_next_source() {
    let cfg = config(
        "lookups:\n  client_app: { svc-alpha: app-alpha, svc-beta: app-beta }\n",
        "  - id: token\n    match: { path: /x }\n    event: token.issue\n    actor: { basic_auth: user }\n    app: [ { basic_auth: user, map: client_app }, { form: client_id, map: client_app }, { const: app-unknown } ]\n    capture: { client_app: { basic_auth: user, map: client_app } }\n",
    );
    let e = run(
        &cfg,
        Exchange {
            headers: basic("svc-alpha"),
            status: 401,
            ..Default::default()
        },
    );
    assert_eq!(
        app(&e),
        Some(("app-alpha", false, "lookup:client_app(basic_auth:user)"))
    );
    assert_eq!(e.details["client_app"], "app-alpha");
    assert_eq!(e.app_conflict, None);
    // Not in the table: that source yields nothing, the next one is asked.
    let mut h = basic("svc-nobody");
    h.push((
        "content-type",
        "application/x-www-form-urlencoded".to_string(),
    ));
    let e = run(
        &cfg,
        Exchange {
            headers: h,
            body: "client_id=svc-beta&grant_type=client_credentials".into(),
            ..Default::default()
        },
    );
    assert_eq!(
        app(&e),
        Some(("app-beta", false, "lookup:client_app(form:client_id)"))
    );
    assert!(!e.details.contains_key("client_app"));
    let e = run(&cfg, Exchange::default());
    assert_eq!(app(&e), Some(("app-unknown", false, "const")));
}

#[test]
fn a_looked_up_claim_keeps_its_verification() {
    let cfg = config(
        "lookups:\n  tenants: { t-1: app-alpha }\n",
        "  - id: me\n    match: { path: /x }\n    event: account.update\n    app: { claim: tenant, map: tenants }\n",
    );
    let e = run(
        &cfg,
        Exchange {
            headers: bearer(&good("u-1", "t-1")),
            ..Default::default()
        },
    );
    assert_eq!(
        app(&e),
        Some(("app-alpha", true, "lookup:tenants(claim:tenant@bearer)"))
    );
    let e = run(
        &cfg,
        Exchange {
            headers: bearer(&forged("u-1", "t-1")),
            ..Default::default()
        },
    );
    assert_eq!(
        app(&e),
        Some(("app-alpha", false, "lookup:tenants(claimed:tenant@bearer)"))
    );
}

const REASONS: &str = "reasons:\n  - { exact: \"Unable to log in with provided credentials.\", code: invalid_credentials }\n  - { prefix: \"E-mail is not verified\", code: email_unverified }\n  - { regex: \"(?i)token.*revoked\", code: token_revoked }\n  - { status: 401, code: invalid_client }\n";

#[test]
fn reasons_become_stable_codes_and_keep_the_text() {
    let cfg = config(
        REASONS,
        "  - id: login\n    match: { path: /x }\n    event: auth.login\n    outcome: { reason: /detail }\n    reasons:\n      - { exact: \"Unable to log in with provided credentials.\", status: 403, code: locked_out }\n",
    );
    let cases = [
        (
            400,
            "Unable to log in with provided credentials.",
            "invalid_credentials",
        ),
        (
            403,
            "Unable to log in with provided credentials.",
            "locked_out",
        ),
        (400, "E-mail is not verified for alice", "email_unverified"),
        (400, "The Token has been REVOKED", "token_revoked"),
        (401, "who are you", "invalid_client"),
    ];
    for (status, text, code) in cases {
        let e = run(
            &cfg,
            Exchange {
                status,
                resp: json!({ "detail": text }),
                ..Default::default()
            },
        );
        assert_eq!(e.reason.as_deref(), Some(code), "{text}");
        assert_eq!(e.details["reason_text"], text);
    }
    // No rule: the text stays the reason; a status-only rule maps http_401 too.
    let e = run(
        &cfg,
        Exchange {
            status: 400,
            resp: json!({ "detail": "something else" }),
            ..Default::default()
        },
    );
    assert_eq!(e.reason.as_deref(), Some("something else"));
    assert!(!e.details.contains_key("reason_text"));
    let e = run(
        &cfg,
        Exchange {
            status: 401,
            ..Default::default()
        },
    );
    assert_eq!(e.reason.as_deref(), Some("invalid_client"));
    assert_eq!(e.details["reason_text"], "http_401");
    // A success has no reason to map.
    let e = run(&cfg, Exchange::default());
    assert_eq!(e.reason, None);
}

#[test]
fn the_stored_path_is_the_one_the_upstream_received() {
    let cfg = config(
        "",
        "  - id: login\n    match: { path: /auth/login }\n    event: auth.login\n  - id: verify\n    match: { path: \"/v1/email/verify/{code}\" }\n    event: account.verify\n",
    );
    let e = run(
        &cfg,
        Exchange {
            path: "/auth/login/",
            ..Default::default()
        },
    );
    assert_eq!(e.http.path, "/auth/login/");
    let e = run(
        &cfg,
        Exchange {
            path: "/auth/login?next=/x",
            ..Default::default()
        },
    );
    assert_eq!(e.http.path, "/auth/login", "the query is dropped");
    let e = run(
        &cfg,
        Exchange {
            path: "/v1/email/verify/s3cr%65t-code/",
            ..Default::default()
        },
    );
    assert_eq!(
        e.http.path, "/v1/email/verify/{code}/",
        "a secret-named parameter is masked however it is spelled"
    );
}

#[test]
fn id_tokens_are_checked_against_the_client_audience() {
    let cfg = config(
        "",
        "  - id: login\n    match: { path: /x }\n    event: auth.login\n    actor: { issued_token: /access_token, claim: user_id }\n    tokens: { issued: [/access_token, /id_token] }\n",
    );
    let access = token(
        SECRET,
        json!({"user_id": "u-1", "aud": "api", "exp": now() + 600}),
    );
    let id = token(
        SECRET,
        json!({"user_id": "u-1", "aud": "client-1", "exp": now() + 600}),
    );
    let e = run(
        &cfg,
        Exchange {
            resp: json!({"access_token": access, "id_token": id}),
            ..Default::default()
        },
    );
    let by_kind = |k: &str| e.tokens.iter().find(|t| t.kind == k).unwrap();
    assert!(by_kind("access").verified);
    assert!(by_kind("id").verified, "{:?}", by_kind("id"));
    assert!(actor(&e).1);
    // The other way round neither verifies.
    let e = run(
        &cfg,
        Exchange {
            resp: json!({"access_token": id, "id_token": access}),
            ..Default::default()
        },
    );
    for t in &e.tokens {
        assert_eq!(t.invalid.as_deref(), Some("wrong_audience"), "{t:?}");
    }
}

const AUTHORIZE: &str = "  - id: authorize\n    match: { method: GET, path: /authorize }\n    event: oauth.authorize\n    actor: { query: login_hint }\n    capture:\n      redirect: { response_header: Location }\n      state: { response_header: Location, query: state }\n";

fn redirect_to(cfg: &Config, location: &str) -> AuditEvent {
    run(
        cfg,
        Exchange {
            method: "GET",
            path: "/authorize?login_hint=alice",
            status: 302,
            resp_headers: vec![("location", location.to_string())],
            ..Default::default()
        },
    )
}

#[test]
fn an_oauth_error_in_a_redirect_is_the_failure_and_its_reason() {
    let cfg = config("", AUTHORIZE);
    for location in [
        "https://client.example/cb?error=access_denied&error_description=User+denied&state=s1",
        // Implicit and hybrid flows answer in the fragment.
        "https://client.example/cb#state=s1&error=access_denied",
    ] {
        let e = redirect_to(&cfg, location);
        assert_eq!(e.outcome, Outcome::Failure, "{location}");
        assert_eq!(e.reason.as_deref(), Some("access_denied"), "{location}");
        assert_eq!(e.details["state"], json!("s1"), "{location}");
    }
    // A redirect that carries a code is the success it says it is, and the code is masked.
    let e = redirect_to(
        &cfg,
        "https://client.example/cb?code=SplxlOBeZQQYbYS6WxSbIA&state=s2",
    );
    assert_eq!((e.outcome, e.reason.as_deref()), (Outcome::Success, None));
    assert_eq!(
        e.details["redirect"],
        json!("https://client.example/cb?code={code}&state=s2")
    );
    assert!(!serde_json::to_string(&e)
        .unwrap()
        .contains("SplxlOBeZQQYbYS6WxSbIA"));
}

#[test]
fn redirect_errors_read_the_named_parameter_or_none() {
    let named = config(
        "",
        &format!("{AUTHORIZE}    outcome: {{ redirect_error: err }}\n"),
    );
    let e = redirect_to(&named, "https://client.example/cb?err=consent_required");
    assert_eq!(e.outcome, Outcome::Failure);
    assert_eq!(e.reason.as_deref(), Some("consent_required"));
    let e = redirect_to(&named, "https://client.example/cb?error=access_denied");
    assert_eq!(
        e.outcome,
        Outcome::Success,
        "only the named parameter counts"
    );

    let off = config(
        "",
        &format!("{AUTHORIZE}    outcome: {{ redirect_error: off }}\n"),
    );
    let e = redirect_to(&off, "https://client.example/cb?error=access_denied");
    assert_eq!(e.outcome, Outcome::Success);

    // Only a redirect: a 200 page that links to `?error=` is not an OAuth error response.
    let cfg = config("", AUTHORIZE);
    let e = run(
        &cfg,
        Exchange {
            method: "GET",
            path: "/authorize",
            status: 200,
            resp_headers: vec![("location", "https://client.example/cb?error=x".into())],
            ..Default::default()
        },
    );
    assert_eq!(e.outcome, Outcome::Success);
}

#[test]
fn a_request_cookie_is_recorded_by_fingerprint_only() {
    let cfg = config(
        "",
        "  - id: logout\n    match: { path: /logout }\n    event: auth.logout\n    target: { kind: session, from: { request_cookie: _session } }\n    capture:\n      interaction: { request_cookie: _interaction }\n",
    );
    let e = run(
        &cfg,
        Exchange {
            path: "/logout",
            headers: vec![(
                "cookie",
                "theme=dark; _session=sess-value-9f8e7d6c; other=1".into(),
            )],
            ..Default::default()
        },
    );
    let f = cfg.identity.fingerprinter.as_ref().unwrap();
    let target = e.target.as_ref().expect("target from the cookie");
    assert_eq!(target.id, f.fingerprint("sess-value-9f8e7d6c"));
    assert_eq!(target.source, "request_cookie:_session");
    assert!(
        e.details.get("interaction").is_none(),
        "an absent cookie yields nothing"
    );
    assert!(!serde_json::to_string(&e)
        .unwrap()
        .contains("sess-value-9f8e7d6c"));
}

#[test]
fn json_pointer_finds_what_serde_json_finds() {
    let doc = json!({
        "user": {"name": "alice", "ids": [10, 20, {"deep": true}]},
        "a/b": 1, "m~n": 2, "~1": 3, "": {"": 4}, "0": "zero", "01": "leading",
        "list": ["x", "y"]
    });
    let pointers = [
        "",
        "/",
        "//",
        "/user",
        "/user/name",
        "/user/ids",
        "/user/ids/0",
        "/user/ids/2/deep",
        "/user/ids/3",
        "/user/ids/01",
        "/user/ids/+1",
        "/user/ids/-1",
        "/user/ids/1x",
        "/a~1b",
        "/m~0n",
        "/~01",
        "/~1",
        "/~",
        "/~2",
        "/0",
        "/01",
        "/list/1",
        "/list/1/x",
        "user",
        "/missing",
        "/user/name/more",
        "/user/ids/18446744073709551616",
    ];
    for p in pointers {
        assert_eq!(json_pointer(&doc, p), doc.pointer(p), "pointer {p:?}");
    }
    // Random pointers over the characters that matter.
    proptest::proptest!(|(p in "(/[a-z0-9~+]{0,4}){0,4}")| {
        proptest::prop_assert_eq!(json_pointer(&doc, &p), doc.pointer(&p));
    });
}
