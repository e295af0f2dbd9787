//! authtrail in front of a real node oidc-provider (panva; `tests/thirdparty/oidc`, pinned in
//! its package-lock.json, started by `server.js` as a child process), with the preset map
//! `config/presets/node-oidc-provider.yaml`: the browser authorization-code flow with its cookies, a failed and a good
//! password login, consent, the code exchange and its replay, refresh-token rotation, reuse and
//! revocation, client authentication failures, forged and foreign JWTs at UserInfo, a denied
//! consent, RP-initiated logout and the old session cookie after it. Every event's type,
//! outcome, reason, actor, app and target are checked, then the store (with its WAL), the logs
//! and both exports are scanned for every secret the scenario used.
//!
//! Install: `npm ci --prefix tests/thirdparty/oidc --no-audit --no-fund --loglevel=error`.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use authtrail::event::{AuditEvent, Outcome, TokenRole};
use base64::Engine;
use bytes::Bytes;
use hyper::Method;
use serde_json::{json, Value};
use support::admin::{self, TOKEN_ALL};
use support::events::{basic, lineage};
use support::harness::{self, contains, send, Reply, Sidecar};
use support::thirdparty::{self, Server};

// The fixed users and clients of server.js.
const ALICE_PW: &str = "alice-pw-Correct-Horse-7731";
const BOB_PW: &str = "bob-pw-Battery-Staple-4402";
const WRONG_PW: &str = "alice-guess-Tr0ub4dor-55";
const ALPHA_SECRET: &str = "alpha-secret-Zq81-Vw3e-Kk20";
const BETA_SECRET: &str = "beta-secret-Lm55-Tr9u-Hx04";
const WRONG_SECRET: &str = "beta-secret-WRONG-Qq77-Jj31";
const COOKIE_KEY: &str = "cookie-signing-key-Pp47-Yy12-Nn93";
const FINGERPRINT_KEY: &str = "oidc-thirdparty-fingerprint-key-0425";
const API: &str = "urn:authtrail:api";

fn redirect_uri(client: &str) -> String {
    format!("http://127.0.0.1:9/{client}/cb")
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn form_body(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// One cookie of a browser's jar.
#[derive(Clone, Debug)]
struct Cookie {
    name: String,
    value: String,
    path: String,
}

/// A browser: its own cookie jar (the harness's `send` keeps none), by RFC 6265 path match.
#[derive(Default)]
struct Browser {
    jar: Vec<Cookie>,
}

impl Browser {
    fn cookie_header(&self, path: &str) -> Option<String> {
        let path = path.split('?').next().unwrap_or("");
        let matching: Vec<String> = self
            .jar
            .iter()
            .filter(|c| {
                path == c.path
                    || (path.starts_with(&c.path)
                        && (c.path.ends_with('/') || path[c.path.len()..].starts_with('/')))
            })
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        (!matching.is_empty()).then(|| matching.join("; "))
    }

    /// Apply a response's `Set-Cookie`s (a cleared cookie leaves the jar); every value set is a
    /// secret for the scan.
    fn take(&mut self, r: &Reply, secrets: &mut Vec<String>) {
        for v in r.headers.get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let mut parts = v.split(';');
            let (name, value) = parts.next().unwrap().trim().split_once('=').unwrap();
            let mut path = "/".to_string();
            let mut cleared = value.is_empty();
            for attr in parts {
                let (k, val) = attr.trim().split_once('=').unwrap_or((attr.trim(), ""));
                if k.eq_ignore_ascii_case("path") {
                    path = val.to_string();
                } else if (k.eq_ignore_ascii_case("expires") && val.contains("1970"))
                    || (k.eq_ignore_ascii_case("max-age") && val == "0")
                {
                    cleared = true;
                }
            }
            self.jar.retain(|c| !(c.name == name && c.path == path));
            if !cleared {
                secrets.push(value.to_string());
                self.jar.push(Cookie {
                    name: name.to_string(),
                    value: value.to_string(),
                    path,
                });
            }
        }
    }

    fn value(&self, name: &str) -> Option<String> {
        self.jar
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.value.clone())
    }
}

/// The client side of the scenario: every request goes through the sidecar with a request id
/// the events are found by, and every secret it sees is kept for the scan.
struct Client<'a> {
    sc: &'a Sidecar,
    secrets: Vec<String>,
    sent: usize,
}

impl Client<'_> {
    async fn send(
        &mut self,
        label: &str,
        browser: Option<&mut Browser>,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: String,
    ) -> Reply {
        let cookie = browser.as_ref().and_then(|b| b.cookie_header(path));
        let mut h: Vec<(&str, &str)> = vec![("x-request-id", label), ("user-agent", "oidc-e2e")];
        if let Some(c) = &cookie {
            h.push(("cookie", c));
        }
        if !body.is_empty() {
            h.push(("content-type", "application/x-www-form-urlencoded"));
        }
        h.extend_from_slice(headers);
        let r = send(method, &self.sc.url(path), &h, Bytes::from(body))
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        self.sent += 1;
        if let Some(b) = browser {
            b.take(&r, &mut self.secrets);
        }
        r
    }

    async fn get(&mut self, label: &str, b: &mut Browser, path: &str) -> Reply {
        self.send(label, Some(b), Method::GET, path, &[], String::new())
            .await
    }

    async fn post(&mut self, label: &str, b: &mut Browser, path: &str, body: String) -> Reply {
        self.send(label, Some(b), Method::POST, path, &[], body)
            .await
    }

    /// A token-endpoint (or revocation) request with client_secret_basic.
    async fn token(
        &mut self,
        label: &str,
        path: &str,
        auth: &str,
        fields: &[(&str, &str)],
    ) -> Reply {
        self.send(
            label,
            None,
            Method::POST,
            path,
            &[("authorization", auth)],
            form_body(fields),
        )
        .await
    }

    async fn bearer(&mut self, label: &str, token: &str) -> Reply {
        let auth = format!("Bearer {token}");
        self.send(
            label,
            None,
            Method::GET,
            "/me",
            &[("authorization", &auth)],
            String::new(),
        )
        .await
    }

    fn keep(&mut self, r: &Reply, pointers: &[&str]) {
        let v = r.json();
        for p in pointers {
            let s = v
                .pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("no {p} in {v}"));
            self.secrets.push(s.to_string());
        }
    }
}

/// The path and query of a `Location` (relative, or absolute on any origin).
fn location(r: &Reply) -> String {
    let loc = r
        .headers
        .get("location")
        .unwrap_or_else(|| panic!("no Location ({}): {:?}", r.status, r.body))
        .to_str()
        .unwrap()
        .to_string();
    match loc.strip_prefix("http://") {
        Some(rest) => rest[rest.find('/').unwrap()..].to_string(),
        None => loc,
    }
}

fn location_param(r: &Reply, name: &str) -> Option<String> {
    let loc = location(r);
    let q = loc.split_once('?')?.1;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn authorize_path(client: &str, state: &str, prompt: Option<&str>) -> String {
    let mut p = format!(
        "/auth?client_id={client}&response_type=code&scope={}&redirect_uri={}&state={state}&nonce=n-{state}",
        enc("openid api:read"),
        enc(&redirect_uri(client)),
    );
    if let Some(prompt) = prompt {
        p.push_str(&format!("&prompt={prompt}"));
    }
    p
}

/// A JWT with its payload changed and its signature kept: what a forger can make.
fn tamper(jwt: &str, change: impl FnOnce(&mut Value)) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = jwt.split('.').collect();
    let mut payload: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    change(&mut payload);
    format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(payload.to_string()),
        parts[2]
    )
}

fn ev<'e>(evs: &'e [AuditEvent], label: &str) -> &'e AuditEvent {
    let found: Vec<&AuditEvent> = evs.iter().filter(|e| e.http.request_id == label).collect();
    assert_eq!(found.len(), 1, "one event for {label}: {evs:#?}");
    found[0]
}

/// What every event is checked for.
struct Want<'a> {
    ty: &'a str,
    outcome: Outcome,
    reason: Option<&'a str>,
    /// id, verified, source
    actor: (Option<&'a str>, bool, Option<&'a str>),
    /// value, verified, source
    app: Option<(&'a str, bool, &'a str)>,
    /// kind, id, source
    target: Option<(&'a str, &'a str, &'a str)>,
}

fn check(e: &AuditEvent, w: Want<'_>) {
    let label = &e.http.request_id;
    let got = (
        e.event_type.as_str(),
        e.outcome,
        e.reason.as_deref(),
        (
            e.actor.id.as_deref(),
            e.actor.verified,
            e.actor.source.as_deref(),
        ),
        e.app
            .as_ref()
            .map(|a| (a.value.as_str(), a.verified, a.source.as_str())),
        e.target
            .as_ref()
            .map(|t| (t.kind.as_str(), t.id.as_str(), t.source.as_str())),
    );
    let want = (w.ty, w.outcome, w.reason, w.actor, w.app, w.target);
    assert_eq!(got, want, "{label}: {e:#?}");
    assert!(e.app_conflict.is_none(), "{label}: {e:#?}");
}

fn has_token(e: &AuditEvent, role: TokenRole, kind: &str, source: &str) -> bool {
    e.tokens
        .iter()
        .any(|t| t.role == role && t.kind == kind && t.source == source)
}

#[tokio::test]
async fn node_oidc_provider_behind_authtrail() {
    let dir = thirdparty::dir("oidc");
    if thirdparty::skip_unless_installed(
        "oidc-provider",
        &[dir.join("node_modules/oidc-provider/package.json")],
    )
    .is_some()
    {
        return;
    }
    let started = Instant::now();
    let port = thirdparty::free_port();
    let mut cmd = Command::new("node");
    cmd.current_dir(&dir).arg("server.js").arg(port.to_string());
    let op = Server::start("oidc-provider", cmd, port, Duration::from_secs(20));

    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("oidc.db");
    std::env::set_var("OIDC_UPSTREAM", op.url(""));
    std::env::set_var("OIDC_ISSUER", op.url(""));
    std::env::set_var("OIDC_JWKS_URL", op.url("/jwks"));
    std::env::set_var("OIDC_AUDIENCE", API);
    std::env::set_var("FINGERPRINT_KEY", FINGERPRINT_KEY);
    std::env::set_var("AUTHTRAIL_STORE", format!("sqlite://{}", db.display()));
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/presets/node-oidc-provider.yaml"
    );
    let yaml = std::fs::read_to_string(file).unwrap() + &admin::credentials_yaml();
    let cfg = authtrail::config::load_str(&yaml, file).unwrap_or_else(|e| panic!("{e}"));
    let mut sc = harness::start_config(cfg, db.clone(), tmp).await;

    let mut c = Client {
        sc: &sc,
        secrets: vec![
            ALICE_PW.into(),
            BOB_PW.into(),
            WRONG_PW.into(),
            ALPHA_SECRET.into(),
            BETA_SECRET.into(),
            WRONG_SECRET.into(),
            COOKIE_KEY.into(),
        ],
        sent: 0,
    };
    let alpha = basic("alpha-web", ALPHA_SECRET);
    let beta = basic("beta-web", BETA_SECRET);
    c.secrets.push(alpha.clone());
    c.secrets.push(beta.clone());

    // ---- alice signs in to alpha-web in her browser ----------------------------------------
    let mut alice = Browser::default();
    let r = c
        .get(
            "a01-authorize",
            &mut alice,
            &authorize_path("alpha-web", "st-a1", None),
        )
        .await;
    assert_eq!(r.status, 303, "{:?}", r.body);
    let page1 = location(&r);
    assert!(page1.starts_with("/interaction/"), "{page1}");
    let r = c.get("a02-login-page", &mut alice, &page1).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["prompt"], "login");
    let r = c
        .post(
            "a03-login-wrong",
            &mut alice,
            &format!("{page1}/login"),
            form_body(&[("login", "alice"), ("password", WRONG_PW)]),
        )
        .await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    let r = c
        .post(
            "a04-login",
            &mut alice,
            &format!("{page1}/login"),
            form_body(&[("login", "alice"), ("password", ALICE_PW)]),
        )
        .await;
    assert_eq!(r.status, 303, "{:?}", r.body);
    let resume1 = location(&r);
    let r = c.get("a05-resume-login", &mut alice, &resume1).await;
    assert_eq!(r.status, 303, "{:?}", r.body);
    assert!(
        alice.value("_session").is_some(),
        "_session after the login"
    );
    let page2 = location(&r);
    let r = c.get("a06-consent-page", &mut alice, &page2).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["prompt"], "consent");
    let r = c
        .post(
            "a07-consent",
            &mut alice,
            &format!("{page2}/confirm"),
            String::new(),
        )
        .await;
    assert_eq!(r.status, 303, "{:?}", r.body);
    let resume2 = location(&r);
    let r = c.get("a08-resume-consent", &mut alice, &resume2).await;
    assert_eq!(r.status, 303, "{:?}", r.body);
    assert!(
        location(&r).starts_with("/alpha-web/cb?"),
        "{}",
        location(&r)
    );
    assert_eq!(location_param(&r, "state").as_deref(), Some("st-a1"));
    let code = location_param(&r, "code").expect("a code");
    c.secrets.push(code.clone());

    // ---- the client exchanges the code -------------------------------------
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", &redirect_uri("alpha-web")),
    ];
    let r = c.token("t01-exchange", "/token", &alpha, &exchange).await;
    assert_eq!(r.status, 200, "{:?}\n{}", r.body, op.output());
    c.keep(&r, &["/access_token", "/refresh_token", "/id_token"]);
    let at1 = r.json()["access_token"].as_str().unwrap().to_string();
    let rt1 = r.json()["refresh_token"].as_str().unwrap().to_string();
    let id1 = r.json()["id_token"].as_str().unwrap().to_string();

    // ---- refresh, rotation, revocation, reuse ----------------------------------------------
    let fields = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt1.as_str()),
    ];
    let r = c.token("t02-refresh", "/token", &alpha, &fields).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    c.keep(&r, &["/access_token", "/refresh_token", "/id_token"]);
    let rt2 = r.json()["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt2, rt1, "rotated");
    let fields = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt2.as_str()),
    ];
    let r = c
        .token("t03-refresh-again", "/token", &alpha, &fields)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    c.keep(&r, &["/access_token", "/refresh_token", "/id_token"]);
    let rt3 = r.json()["refresh_token"].as_str().unwrap().to_string();
    let r = c
        .token(
            "t04-revoke",
            "/token/revocation",
            &alpha,
            &[("token", &rt3), ("token_type_hint", "refresh_token")],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let fields = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt3.as_str()),
    ];
    let r = c
        .token("t05-refresh-revoked", "/token", &alpha, &fields)
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let fields = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt1.as_str()),
    ];
    let r = c
        .token("t06-refresh-reuse", "/token", &alpha, &fields)
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    // The code again (the provider answers a replay by revoking what the code gave).
    let r = c
        .token("t07-code-replay", "/token", &alpha, &exchange)
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.json()["error"], "invalid_grant");

    // ---- client authentication failures, and a good client_credentials grant --------------
    let cc = |scope: &'static str| [("grant_type", "client_credentials"), ("scope", scope)];
    let wrong = basic("beta-web", WRONG_SECRET);
    c.secrets.push(wrong.clone());
    let r = c
        .token("c01-wrong-secret", "/token", &wrong, &cc("api:read"))
        .await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    let unknown = basic("gamma-web", WRONG_SECRET);
    let r = c
        .token("c02-unknown-client", "/token", &unknown, &cc("api:read"))
        .await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    let r = c
        .token("c03-invalid-scope", "/token", &beta, &cc("api:write"))
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let r = c
        .token("c04-client-credentials", "/token", &beta, &cc("api:read"))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    c.keep(&r, &["/access_token"]);

    // ---- UserInfo with alice's token, a forged one and a foreign one -----------------------
    let r = c.bearer("u01-userinfo", &at1).await;
    let genuine_status = r.status;
    let forged = tamper(&at1, |p| p["sub"] = json!("bob"));
    c.secrets.push(forged.clone());
    let r = c.bearer("u02-forged", &forged).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    // An ID token (addressed to the client, not the API) used as an access token.
    let r = c.bearer("u03-foreign", &id1).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    // A token of another issuer (HS256, never issued through the trail).
    let other = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": "mallory", "client_id": "beta-web", "iss": "https://other-idp.example",
                 "aud": API, "exp": 4_102_444_800u64 }),
        &jsonwebtoken::EncodingKey::from_secret(b"another-idp-hmac-secret-0000"),
    )
    .unwrap();
    c.secrets.push(other.clone());
    let r = c.bearer("u04-other-issuer", &other).await;
    assert_eq!(r.status, 401, "{:?}", r.body);

    // ---- bob, in another browser, denies consent to beta-web --------------------------------
    let mut bob = Browser::default();
    let r = c
        .get(
            "b01-authorize",
            &mut bob,
            &authorize_path("beta-web", "st-b1", None),
        )
        .await;
    assert_eq!(r.status, 303, "{:?}", r.body);
    let page = location(&r);
    let r = c
        .post(
            "b02-login",
            &mut bob,
            &format!("{page}/login"),
            form_body(&[("login", "bob"), ("password", BOB_PW)]),
        )
        .await;
    assert_eq!(r.status, 303, "{:?}", r.body);
    let resume = location(&r);
    let r = c.get("b03-resume-login", &mut bob, &resume).await;
    assert_eq!(r.status, 303, "{:?}", r.body);
    let page = location(&r);
    let r = c
        .post(
            "b04-deny",
            &mut bob,
            &format!("{page}/abort"),
            String::new(),
        )
        .await;
    assert_eq!(r.status, 303, "{:?}", r.body);
    let resume = location(&r);
    let r = c.get("b05-resume-denied", &mut bob, &resume).await;
    assert_eq!(r.status, 303, "{:?}", r.body);
    assert_eq!(
        location_param(&r, "error").as_deref(),
        Some("access_denied")
    );
    assert!(location_param(&r, "code").is_none());

    // ---- alice logs out; her old session cookie then names no one -------------------------
    let old_alice = alice.jar.clone();
    let r = c
        .get(
            "a09-logout-page",
            &mut alice,
            &format!(
                "/session/end?client_id=alpha-web&post_logout_redirect_uri={}",
                enc("http://127.0.0.1:9/alpha-web/bye")
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let html = String::from_utf8_lossy(&r.body).to_string();
    let xsrf = html
        .split("name=\"xsrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no xsrf in {html}"))
        .to_string();
    c.secrets.push(xsrf.clone());
    let r = c
        .post(
            "a10-logout",
            &mut alice,
            "/session/end/confirm",
            form_body(&[("xsrf", &xsrf), ("logout", "yes")]),
        )
        .await;
    assert_eq!(r.status, 303, "{:?}", r.body);
    assert!(
        alice.value("_session").is_none(),
        "the session cookie is cleared"
    );
    // The old cookie, presented again (a stolen copy): the provider has no such session.
    let mut stolen = Browser { jar: old_alice };
    let r = c
        .get(
            "a11-old-session",
            &mut stolen,
            &authorize_path("alpha-web", "st-a2", Some("none")),
        )
        .await;
    assert_eq!(r.status, 303, "{:?}", r.body);
    assert_eq!(
        location_param(&r, "error").as_deref(),
        Some("login_required")
    );
    let requests = c.sent;
    let mut secrets = c.secrets;
    assert!(requests >= 25, "{requests} requests");

    // Both exports, while the sidecar runs (the admin listener is its own).
    sc.wait_events(requests).await;
    let ndjson = admin::get(&sc, "/v1/export?format=ndjson", Some(TOKEN_ALL)).await;
    assert_eq!(ndjson.status, 200);
    let csv = admin::get(&sc, "/v1/export?format=csv", Some(TOKEN_ALL)).await;
    assert_eq!(csv.status, 200);
    sc.stop().await;
    let all = sc.events().await;
    let evs: Vec<AuditEvent> = all
        .into_iter()
        .filter(|e| !e.event_type.starts_with("audit."))
        .collect();
    assert_eq!(evs.len(), requests, "one event per request: {evs:#?}");
    let exported = String::from_utf8_lossy(&ndjson.body).lines().count();
    assert_eq!(exported, requests, "the ndjson export holds every event");
    assert!(
        String::from_utf8_lossy(&csv.body).lines().count() > requests,
        "the csv export holds every event (and a header)"
    );
    let e = |label: &str| ev(&evs, label);
    let none = (None, false, None);
    let alpha_q = Some(("app-alpha", false, "lookup:client_app(query:client_id)"));
    let alpha_page = Some((
        "app-alpha",
        false,
        "lookup:client_app(response_body:/client_id)",
    ));
    let alpha_token = Some((
        "app-alpha",
        true,
        "lookup:client_app(claim:client_id@response_body:/access_token)",
    ));

    // ---- alice's browser: authorization, login page, failed and good login -----------------
    check(
        e("a01-authorize"),
        Want {
            ty: "oauth.authorize",
            outcome: Outcome::Success,
            reason: None,
            actor: none,
            app: alpha_q,
            target: None,
        },
    );
    check(
        e("a02-login-page"),
        Want {
            ty: "oauth.interaction",
            outcome: Outcome::Success,
            reason: None,
            actor: none,
            app: alpha_page,
            target: None,
        },
    );
    // The interaction uid (the `_interaction` cookie's value) never reaches the stored path.
    assert_eq!(e("a02-login-page").http.path, "/interaction/{uid}");
    assert_eq!(e("a02-login-page").details["prompt"], "login");
    check(
        e("a03-login-wrong"),
        Want {
            ty: "auth.login",
            outcome: Outcome::Failure,
            reason: Some("invalid_credentials"),
            actor: (Some("alice"), false, Some("form:login")),
            app: alpha_page,
            target: None,
        },
    );
    // The interaction cookie /auth set is bound to the client's app: the login inherits it,
    // and binds the cookie to alice, so the steps after it name both (unverified: a typed
    // client id and a typed login).
    check(
        e("a04-login"),
        Want {
            ty: "auth.login",
            outcome: Outcome::Success,
            reason: None,
            actor: (Some("alice"), false, Some("form:login")),
            app: Some(("app-alpha", false, "session:_interaction")),
            target: None,
        },
    );
    assert_eq!(e("a04-login").details["session_bound"], json!(true));
    // The resume after the login: the `_interaction_resume` cookie (the interaction's uid, bound
    // by the login) names alice; it sets `_session`, bound to her.
    check(
        e("a05-resume-login"),
        Want {
            ty: "oauth.authorize",
            outcome: Outcome::Success,
            reason: None,
            actor: (Some("alice"), false, Some("session:_interaction_resume")),
            app: Some(("app-alpha", false, "session:_interaction_resume")),
            target: None,
        },
    );
    assert!(has_token(
        e("a05-resume-login"),
        TokenRole::Issued,
        "session",
        "set_cookie:_session"
    ));
    check(
        e("a06-consent-page"),
        Want {
            ty: "oauth.interaction",
            outcome: Outcome::Success,
            reason: None,
            actor: (Some("alice"), false, Some("session:_session")),
            app: alpha_page,
            target: None,
        },
    );
    assert_eq!(e("a06-consent-page").details["prompt"], "consent");
    check(
        e("a07-consent"),
        Want {
            ty: "oauth.consent",
            outcome: Outcome::Success,
            reason: None,
            actor: (Some("alice"), false, Some("session:_session")),
            app: Some(("app-alpha", false, "session:_session")),
            target: None,
        },
    );
    // The code in the redirect is issued to the session's user.
    let a08 = e("a08-resume-consent");
    check(
        a08,
        Want {
            ty: "oauth.authorize",
            outcome: Outcome::Success,
            reason: None,
            actor: (Some("alice"), false, Some("session:_session")),
            app: Some(("app-alpha", false, "session:_session")),
            target: None,
        },
    );
    assert!(has_token(a08, TokenRole::Issued, "code", "location:code"));
    assert_eq!(a08.details["state"], "st-a1");

    // ---- the token endpoint --------------------------------------------------------------
    let t01 = e("t01-exchange");
    check(
        t01,
        Want {
            ty: "token.exchange",
            outcome: Outcome::Success,
            reason: None,
            actor: (
                Some("alice"),
                true,
                Some("claim:sub@response_body:/id_token"),
            ),
            app: alpha_token,
            target: None,
        },
    );
    assert_eq!(
        t01.details["lineage"]["request_body:/code"]["event"],
        json!(a08.id)
    );
    assert_eq!(t01.details["scope"], "api:read");
    for (kind, source) in [
        ("access", "response_body:/access_token"),
        ("refresh", "response_body:/refresh_token"),
        ("id", "response_body:/id_token"),
    ] {
        assert!(has_token(t01, TokenRole::Issued, kind, source), "{kind}");
    }
    let verified_subs: Vec<(&str, Option<&str>, bool)> = t01
        .tokens
        .iter()
        .filter(|t| t.role == TokenRole::Issued)
        .map(|t| (t.kind.as_str(), t.sub.as_deref(), t.verified))
        .collect();
    assert_eq!(
        verified_subs,
        [
            ("access", Some("alice"), true),
            ("refresh", None, false),
            ("id", Some("alice"), true)
        ]
    );
    let t02 = e("t02-refresh");
    let t03 = e("t03-refresh-again");
    for t in [t02, t03] {
        check(
            t,
            Want {
                ty: "token.refresh",
                outcome: Outcome::Success,
                reason: None,
                actor: (
                    Some("alice"),
                    true,
                    Some("claim:sub@response_body:/access_token"),
                ),
                app: alpha_token,
                target: None,
            },
        );
    }
    // Rotation: each refresh presents the token the one before issued.
    assert_eq!(
        t02.details["lineage"]["request_body:/refresh_token"]["event"],
        json!(t01.id)
    );
    assert_eq!(
        t03.details["lineage"]["request_body:/refresh_token"]["event"],
        json!(t02.id)
    );
    // Revocation by the client: the revoked token's owner is the target, by lineage; the app
    // the token was issued in (verified) beats the client id typed.
    check(
        e("t04-revoke"),
        Want {
            ty: "token.revoke",
            outcome: Outcome::Success,
            reason: None,
            actor: (Some("alpha-web"), false, Some("basic_auth:user")),
            app: Some(("app-alpha", true, &lineage(t03))),
            target: Some(("user", "alice", &lineage(t03))),
        },
    );
    assert_eq!(
        e("t04-revoke").actor.kind,
        authtrail::event::ActorKind::Service
    );
    // The revoked token, and the rotated first one, fail and name their owner by lineage.
    check(
        e("t05-refresh-revoked"),
        Want {
            ty: "token.refresh",
            outcome: Outcome::Failure,
            reason: Some("invalid_grant"),
            actor: (Some("alice"), true, Some(&lineage(t03))),
            app: Some(("app-alpha", true, &lineage(t03))),
            target: None,
        },
    );
    check(
        e("t06-refresh-reuse"),
        Want {
            ty: "token.refresh",
            outcome: Outcome::Failure,
            reason: Some("invalid_grant"),
            actor: (Some("alice"), true, Some(&lineage(t01))),
            app: Some(("app-alpha", true, &lineage(t01))),
            target: None,
        },
    );
    // The replayed code names the user the code was issued to (as unverified as the session
    // that got it); the app is the client's, typed.
    check(
        e("t07-code-replay"),
        Want {
            ty: "token.exchange",
            outcome: Outcome::Failure,
            reason: Some("invalid_grant"),
            actor: (Some("alice"), false, Some(&lineage(a08))),
            app: Some(("app-alpha", false, "lookup:client_app(basic_auth:user)")),
            target: None,
        },
    );

    // ---- client authentication failures name the client and its app, unverified ------------
    let beta_basic = Some(("app-beta", false, "lookup:client_app(basic_auth:user)"));
    for (label, reason, client, app) in [
        ("c01-wrong-secret", "invalid_client", "beta-web", beta_basic),
        ("c02-unknown-client", "invalid_client", "gamma-web", None),
        ("c03-invalid-scope", "invalid_scope", "beta-web", beta_basic),
    ] {
        check(
            e(label),
            Want {
                ty: "token.issue",
                outcome: Outcome::Failure,
                reason: Some(reason),
                actor: (Some(client), false, Some("basic_auth:user")),
                app,
                target: None,
            },
        );
    }
    check(
        e("c04-client-credentials"),
        Want {
            ty: "token.issue",
            outcome: Outcome::Success,
            reason: None,
            actor: (
                Some("beta-web"),
                true,
                Some("claim:client_id@response_body:/access_token"),
            ),
            app: Some((
                "app-beta",
                true,
                "lookup:client_app(claim:client_id@response_body:/access_token)",
            )),
            target: None,
        },
    );
    assert_eq!(e("c04-client-credentials").details["scope"], "api:read");

    // ---- UserInfo ----------------------------------------------------------------------------
    // alice's access token verifies (the provider still refuses it: its audience is the API,
    // not UserInfo).
    assert_eq!(genuine_status, 401);
    check(
        e("u01-userinfo"),
        Want {
            ty: "account.read",
            outcome: Outcome::Failure,
            reason: Some("invalid_token"),
            actor: (Some("alice"), true, Some("claim:sub@bearer")),
            app: Some((
                "app-alpha",
                true,
                "lookup:client_app(claim:client_id@bearer)",
            )),
            target: None,
        },
    );
    // Forged (alice's token, sub changed to bob): what it claims, unverified.
    let u02 = e("u02-forged");
    check(
        u02,
        Want {
            ty: "account.read",
            outcome: Outcome::Failure,
            reason: Some("invalid_token"),
            actor: (Some("bob"), false, Some("claimed:sub@bearer")),
            app: Some((
                "app-alpha",
                false,
                "lookup:client_app(claimed:client_id@bearer)",
            )),
            target: None,
        },
    );
    assert_eq!(u02.tokens[0].invalid.as_deref(), Some("bad_signature"));
    assert_eq!(u02.details["lineage"]["bearer"], json!({ "found": false }));
    // alice's ID token used as an access token: it fails verification (wrong audience)…
    let u03 = e("u03-foreign");
    assert_eq!(u03.tokens[0].invalid.as_deref(), Some("wrong_audience"));
    assert!(!u03.tokens[0].verified);
    // …but the trail saw this very token issued to alice by a verified exchange: lineage names
    // her as verified as that exchange did, ahead of what the token claims (its own claims
    // never yield a verified value; the fingerprint match does: docs/security.md, Lineage).
    check(
        u03,
        Want {
            ty: "account.read",
            outcome: Outcome::Failure,
            reason: Some("invalid_token"),
            actor: (Some("alice"), true, Some(&lineage(t01))),
            app: Some(("app-alpha", true, &lineage(t01))),
            target: None,
        },
    );
    // Another issuer's token (HS256): what it claims, unverified; never issued here.
    let u04 = e("u04-other-issuer");
    check(
        u04,
        Want {
            ty: "account.read",
            outcome: Outcome::Failure,
            reason: Some("invalid_token"),
            actor: (Some("mallory"), false, Some("claimed:sub@bearer")),
            app: Some((
                "app-beta",
                false,
                "lookup:client_app(claimed:client_id@bearer)",
            )),
            target: None,
        },
    );
    assert_eq!(u04.tokens[0].invalid.as_deref(), Some("alg_not_allowed"));
    assert_eq!(u04.details["lineage"]["bearer"], json!({ "found": false }));

    // ---- bob denies consent: the error in the redirect is the failure --------------------------
    check(
        e("b01-authorize"),
        Want {
            ty: "oauth.authorize",
            outcome: Outcome::Success,
            reason: None,
            actor: none,
            app: Some(("app-beta", false, "lookup:client_app(query:client_id)")),
            target: None,
        },
    );
    check(
        e("b02-login"),
        Want {
            ty: "auth.login",
            outcome: Outcome::Success,
            reason: None,
            actor: (Some("bob"), false, Some("form:login")),
            app: Some(("app-beta", false, "session:_interaction")),
            target: None,
        },
    );
    check(
        e("b03-resume-login"),
        Want {
            ty: "oauth.authorize",
            outcome: Outcome::Success,
            reason: None,
            actor: (Some("bob"), false, Some("session:_interaction_resume")),
            app: Some(("app-beta", false, "session:_interaction_resume")),
            target: None,
        },
    );
    check(
        e("b04-deny"),
        Want {
            ty: "oauth.consent.deny",
            outcome: Outcome::Success,
            reason: None,
            actor: (Some("bob"), false, Some("session:_session")),
            app: Some(("app-beta", false, "session:_session")),
            target: None,
        },
    );
    let b05 = e("b05-resume-denied");
    check(
        b05,
        Want {
            ty: "oauth.authorize",
            outcome: Outcome::Failure,
            reason: Some("access_denied"),
            actor: (Some("bob"), false, Some("session:_session")),
            app: Some(("app-beta", false, "session:_session")),
            target: None,
        },
    );
    assert_eq!(b05.details["state"], "st-b1");
    assert!(!b05.tokens.iter().any(|t| t.kind == "code"));

    // ---- logout ends alice's session; the old cookie then names no one ---------------------
    check(
        e("a09-logout-page"),
        Want {
            ty: "auth.logout.request",
            outcome: Outcome::Success,
            reason: None,
            actor: (Some("alice"), false, Some("session:_session")),
            app: alpha_q,
            target: None,
        },
    );
    let a10 = e("a10-logout");
    check(
        a10,
        Want {
            ty: "auth.logout",
            outcome: Outcome::Success,
            reason: None,
            actor: (Some("alice"), false, Some("session:_session")),
            app: Some(("app-alpha", false, "session:_session")),
            target: None,
        },
    );
    assert_eq!(a10.details["session_ended"], json!(true));
    let a11 = e("a11-old-session");
    check(
        a11,
        Want {
            ty: "oauth.authorize",
            outcome: Outcome::Failure,
            reason: Some("login_required"),
            actor: none,
            app: alpha_q,
            target: None,
        },
    );
    assert_eq!(
        a11.details["lineage"]["cookie:_session"],
        json!({ "found": false, "ended": "logout", "event": a10.id })
    );
    assert_eq!(a11.details["prompt"], "none");

    // ---- the interaction cookie bound from the first request, as a preset naturally would ----
    let (gap_requests, gap_sc, gap_secrets) = app_only_binding_then_login(&yaml).await;
    secrets.extend(gap_secrets);

    // ---- no secret anywhere ------------------------------------------------------------------
    secrets.sort();
    secrets.dedup();
    assert!(secrets.len() > 40, "{} secrets to look for", secrets.len());
    let store = harness::store_bytes(&db);
    let gap_store = harness::store_bytes(&gap_sc.db);
    let logs = harness::captured_logs();
    // The scan reads what it should: non-secret values of the scenario are there.
    assert!(contains(&store, "st-a1") && contains(&store, "/interaction/{uid}"));
    assert!(contains(&ndjson.body, "st-a1") && contains(&csv.body, "alice"));
    assert!(logs.contains("audit event built"));
    for s in &secrets {
        assert!(!contains(&store, s), "{s} is in the store");
        assert!(!contains(&gap_store, s), "{s} is in the second store");
        assert!(!logs.contains(s.as_str()), "{s} is in the logs");
        assert!(!contains(&ndjson.body, s), "{s} is in the ndjson export");
        assert!(!contains(&csv.body, s), "{s} is in the csv export");
    }
    let took = started.elapsed();
    eprintln!(
        "oidc-provider: {} requests through the sidecar, {} secrets scanned, {took:?}",
        requests + gap_requests,
        secrets.len()
    );
}

/// A second sidecar whose resume route reads `_interaction_resume` but not `_interaction`
/// (whose value is the same and would hide it): the interaction cookie bound to the app alone
/// at /auth is bound to the user by the login, and the steps after it name her; a cookie
/// cleared and set again in one response is recorded as issued.
async fn app_only_binding_then_login(preset: &str) -> (usize, Sidecar, Vec<String>) {
    let yaml = preset.to_string();
    let resume = "path: \"/auth/{uid}\" }\n    event: oauth.authorize\n";
    let yaml = yaml.replacen(
        resume,
        &format!("{resume}    session: {{ cookies: [_session, _interaction_resume] }}\n"),
        1,
    );
    assert!(yaml.contains("[_session, _interaction_resume]"));
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("gap.db");
    std::env::set_var("AUTHTRAIL_STORE", format!("sqlite://{}", db.display()));
    let cfg = authtrail::config::load_str(&yaml, "oidc-gap.yaml").unwrap_or_else(|e| panic!("{e}"));
    let mut sc = harness::start_config(cfg, db.clone(), tmp).await;
    let mut c = Client {
        sc: &sc,
        secrets: Vec::new(),
        sent: 0,
    };
    let mut carol = Browser::default();
    let r = c
        .get(
            "g01-authorize",
            &mut carol,
            &authorize_path("alpha-web", "st-g1", None),
        )
        .await;
    let page = location(&r);
    let r = c
        .post(
            "g02-login",
            &mut carol,
            &format!("{page}/login"),
            form_body(&[("login", "alice"), ("password", ALICE_PW)]),
        )
        .await;
    assert_eq!(r.status, 303, "{:?}", r.body);
    let resume = location(&r);
    let r = c.get("g03-resume-login", &mut carol, &resume).await;
    assert_eq!(r.status, 303, "{:?}", r.body);
    assert!(carol.value("_session").is_some());
    let (sent, secrets) = (c.sent, c.secrets);
    sc.stop().await;
    let evs = sc.events().await;
    assert_eq!(evs.len(), sent);
    let g01 = ev(&evs, "g01-authorize");
    assert!(has_token(
        g01,
        TokenRole::Issued,
        "session",
        "set_cookie:_interaction"
    ));
    // The login names alice and inherits the app from the cookie…
    check(
        ev(&evs, "g02-login"),
        Want {
            ty: "auth.login",
            outcome: Outcome::Success,
            reason: None,
            actor: (Some("alice"), false, Some("form:login")),
            app: Some(("app-alpha", false, "session:_interaction")),
            target: None,
        },
    );
    let g03 = ev(&evs, "g03-resume-login");
    // …and binds the cookie to her: it was bound to the app alone, to no one. The resume
    // presents the same value as `_interaction_resume` and names alice.
    assert_eq!(ev(&evs, "g02-login").details["session_bound"], json!(true));
    check(
        g03,
        Want {
            ty: "oauth.authorize",
            outcome: Outcome::Success,
            reason: None,
            actor: (Some("alice"), false, Some("session:_interaction_resume")),
            app: Some(("app-alpha", false, "session:_interaction_resume")),
            target: None,
        },
    );
    // The resume response clears the old `_interaction_resume` (its path) and then sets a new
    // one: the new one is recorded as issued, beside the `_session` it sets.
    assert!(has_token(
        g03,
        TokenRole::Issued,
        "session",
        "set_cookie:_session"
    ));
    assert!(has_token(
        g03,
        TokenRole::Issued,
        "session",
        "set_cookie:_interaction_resume"
    ));
    (sent, sc, secrets)
}
