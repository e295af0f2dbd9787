//! authtrail in front of a real django-oauth-toolkit (DOT) with config/presets/django-oauth-toolkit.yaml: DOT, Django
//! and their dependencies installed from PyPI at pinned versions
//! (tests/thirdparty/dot/requirements.txt, into the git-ignored tests/thirdparty/dot/py-deps),
//! started as a child process (tests/thirdparty/dot/server.py) on 127.0.0.1.
//!
//! DOT's access tokens, refresh tokens and codes are opaque, so who acted comes from what was
//! typed, from lineage (a presented token or code names the user of the event that issued it)
//! and from Django's `sessionid` cookie. The scenario: password-grant logins (success, wrong
//! password, unknown client, wrong client secret), refresh with rotation and reuse detection,
//! RFC 7009 revocation of an access and a refresh token, the browser authorization-code flow
//! with PKCE (login form with CSRF, consent, code exchange, code replay, denied consent),
//! logout, password reset (request, link, new password), an admin action (allowed and
//! forbidden), a made-up token, an expired token and cross-tenant use of a token. Every event's
//! type, outcome, reason, actor, app and target are checked; then no password, client secret,
//! token, code, PKCE verifier, cookie or reset token may be in the store (with its WAL), the
//! logs, or an NDJSON or CSV export.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use authtrail::event::{ActorKind, AuditEvent, Outcome, TokenRole};
use base64::Engine;
use bytes::Bytes;
use hyper::Method;
use serde_json::json;
use sha2::Digest;
use support::admin::{self, TOKEN_ALL};
use support::events::{actor as who, app, basic, lineage, target};
use support::harness::{self, contains, send, Reply, Sidecar};
use support::thirdparty;

// The fixtures of tests/thirdparty/dot/server.py.
const ALICE_PW: &str = "alice-pw-Qm7x2Lk9";
const BOB_PW: &str = "bob-pw-Vn4s8Rt1";
const CAROL_PW: &str = "carol-pw-Hd3j6Wp0";
const ROOT_PW: &str = "root-pw-Zc5f1Yg8";
const ALPHA_ID: &str = "alpha-cli";
const ALPHA_SECRET: &str = "alpha-secret-Jr8t3Nq6Bx2w";
const BETA_ID: &str = "beta-web";
const BETA_SECRET: &str = "beta-secret-Ke5m9Pv1Dz7c";
const GAMMA_ID: &str = "gamma-short";
const GAMMA_SECRET: &str = "gamma-secret-Wb6y4Hs0Fa3u";
const BETA_REDIRECT: &str = "http://client.beta.test/cb";

// Made up here.
const WRONG_PW: &str = "alice-wrong-pw-Tx81";
const WRONG_SECRET: &str = "alpha-wrong-secret-Lq55";
const NOBODY_SECRET: &str = "nobody-secret-Gh27";
const FORGED_TOKEN: &str = "MadeUpOpaqueToken0123456789abcd";
const CAROL_NEW_PW: &str = "carol-new-pw-Ry9e3Ku6";
const FP_KEY: &str = "dot-e2e-fingerprint-key-5c1a";

const WAIT: Duration = Duration::from_secs(30);

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn form_body(fields: &[(&str, &str)]) -> Bytes {
    Bytes::from(
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish(),
    )
}

/// POST a form through the sidecar, with extra headers (authorization, cookie).
async fn post(
    sc: &Sidecar,
    path: &str,
    fields: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> Reply {
    let mut h = vec![("content-type", "application/x-www-form-urlencoded")];
    h.extend_from_slice(headers);
    tokio::time::timeout(
        WAIT,
        send(Method::POST, &sc.url(path), &h, form_body(fields)),
    )
    .await
    .unwrap_or_else(|_| panic!("POST {path}: no answer within {WAIT:?}"))
    .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

async fn get(sc: &Sidecar, path: &str, headers: &[(&str, &str)]) -> Reply {
    tokio::time::timeout(
        WAIT,
        send(Method::GET, &sc.url(path), headers, Bytes::new()),
    )
    .await
    .unwrap_or_else(|_| panic!("GET {path}: no answer within {WAIT:?}"))
    .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

async fn token(sc: &Sidecar, fields: &[(&str, &str)], auth: &str) -> Reply {
    post(sc, "/o/token/", fields, &[("authorization", auth)]).await
}

fn str_of(r: &Reply, field: &str) -> String {
    r.json()[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {:?}", r.body))
        .to_string()
}

/// The value a response's `Set-Cookie` gives cookie `name` (`Some("")` when it deletes it).
fn set_cookie(r: &Reply, name: &str) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_string())
}

fn location(r: &Reply) -> String {
    r.headers
        .get("location")
        .unwrap_or_else(|| panic!("no Location ({})", r.status))
        .to_str()
        .unwrap()
        .to_string()
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// A browser: Django's `csrftoken` and `sessionid` cookies, kept from each response.
#[derive(Default)]
struct Browser {
    csrf: String,
    session: Option<String>,
}

impl Browser {
    fn cookie(&self) -> String {
        match &self.session {
            Some(s) => format!("csrftoken={}; sessionid={s}", self.csrf),
            None => format!("csrftoken={}", self.csrf),
        }
    }

    fn keep(&mut self, r: &Reply, secrets: &mut Vec<String>) {
        if let Some(c) = set_cookie(r, "csrftoken").filter(|c| !c.is_empty()) {
            secrets.push(c.clone());
            self.csrf = c;
        }
        match set_cookie(r, "sessionid") {
            Some(s) if s.is_empty() => self.session = None,
            Some(s) => {
                secrets.push(s.clone());
                self.session = Some(s);
            }
            None => {}
        }
    }

    async fn get(&mut self, sc: &Sidecar, path: &str, secrets: &mut Vec<String>) -> Reply {
        let r = get(sc, path, &[("cookie", &self.cookie())]).await;
        self.keep(&r, secrets);
        r
    }

    /// POST a form with the CSRF token (Django accepts the cookie's secret as the form field).
    async fn post(
        &mut self,
        sc: &Sidecar,
        path: &str,
        fields: &[(&str, &str)],
        secrets: &mut Vec<String>,
    ) -> Reply {
        let csrf = self.csrf.clone();
        let mut all = vec![("csrfmiddlewaretoken", csrf.as_str())];
        all.extend_from_slice(fields);
        let r = post(sc, path, &all, &[("cookie", &self.cookie())]).await;
        self.keep(&r, secrets);
        r
    }
}

fn dump(evs: &[AuditEvent]) -> String {
    evs.iter()
        .enumerate()
        .map(|(i, e)| {
            format!(
                "{i:2} {} {} {:?} {:?} reason={:?} actor={:?} app={:?} conflict={:?} target={:?} details={} path={} tokens={:?}",
                e.http.route,
                e.event_type,
                e.outcome,
                e.actor.kind,
                e.reason,
                who(e),
                app(e),
                e.app_conflict,
                target(e),
                serde_json::Value::Object(e.details.clone()),
                e.http.path,
                e.tokens.iter().map(|t| (t.role, t.kind.as_str(), t.source.as_str(), t.exp, t.verified)).collect::<Vec<_>>()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn django_oauth_toolkit_behind_the_sidecar() {
    let dir = thirdparty::dir("dot");
    let deps = dir.join("py-deps");
    if thirdparty::skip_unless_installed(
        "django-oauth-toolkit",
        &[
            deps.join("django-5.2.19.dist-info"),
            deps.join("django_oauth_toolkit-3.4.1.dist-info"),
        ],
    )
    .is_some()
    {
        return;
    }
    let started = std::time::Instant::now();
    let data = tempfile::tempdir().unwrap();
    let port = thirdparty::free_port();
    let mut cmd = Command::new("python3");
    cmd.arg(dir.join("server.py"))
        .arg(data.path())
        .arg(port.to_string())
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let dot = thirdparty::Server::start("django-oauth-toolkit", cmd, port, WAIT);

    let sdir = tempfile::tempdir().unwrap();
    let db = sdir.path().join("dot.db");
    std::env::set_var("DOT_UPSTREAM", format!("http://{}", dot.addr));
    std::env::set_var("FINGERPRINT_KEY", FP_KEY);
    std::env::set_var("AUTHTRAIL_STORE", format!("sqlite://{}", db.display()));
    let yaml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/presets/django-oauth-toolkit.yaml"),
    )
    .unwrap();
    // The preset plus the admin API's test credentials, for the exports.
    let cfg = authtrail::config::load_str(
        &format!("{yaml}\n{}", admin::credentials_yaml()),
        "config/presets/django-oauth-toolkit.yaml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut sc = harness::start_config(cfg, db, sdir).await;

    let alpha = basic(ALPHA_ID, ALPHA_SECRET);
    let beta = basic(BETA_ID, BETA_SECRET);
    let gamma = basic(GAMMA_ID, GAMMA_SECRET);
    let wrong_secret = basic(ALPHA_ID, WRONG_SECRET);
    let nobody = basic("nobody-cli", NOBODY_SECRET);
    let mut secrets: Vec<String> = [
        ALICE_PW,
        BOB_PW,
        CAROL_PW,
        ROOT_PW,
        ALPHA_SECRET,
        BETA_SECRET,
        GAMMA_SECRET,
        WRONG_PW,
        WRONG_SECRET,
        NOBODY_SECRET,
        FORGED_TOKEN,
        CAROL_NEW_PW,
        FP_KEY,
        TOKEN_ALL,
    ]
    .iter()
    .map(|s| s.to_string())
    // The Basic credentials as sent (base64 of `id:secret`).
    .chain(
        [&alpha, &beta, &gamma, &wrong_secret, &nobody]
            .iter()
            .map(|b| b.trim_start_matches("Basic ").to_string()),
    )
    .collect();
    let mut keep = |r: &Reply, fields: &[&str]| -> Vec<String> {
        fields
            .iter()
            .map(|f| {
                let v = str_of(r, f);
                secrets.push(v.clone());
                v
            })
            .collect()
    };

    // ---- password grant (tenant app-alpha) ----
    let pw = |user: &'static str, pass: &'static str, scope: &'static str| {
        [
            ("grant_type", "password"),
            ("username", user),
            ("password", pass),
            ("scope", scope),
        ]
    };
    let r = token(&sc, &pw("alice", ALICE_PW, "read write"), &alpha).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let [_at1, rt1] = keep(&r, &["access_token", "refresh_token"])
        .try_into()
        .unwrap();
    let r = token(&sc, &pw("alice", WRONG_PW, "read"), &alpha).await;
    assert_eq!(
        (r.status.as_u16(), str_of(&r, "error").as_str()),
        (400, "invalid_grant")
    );
    let r = token(&sc, &pw("alice", ALICE_PW, "read"), &nobody).await;
    assert_eq!(
        (r.status.as_u16(), str_of(&r, "error").as_str()),
        (401, "invalid_client")
    );
    let r = token(&sc, &pw("alice", ALICE_PW, "read"), &wrong_secret).await;
    assert_eq!(
        (r.status.as_u16(), str_of(&r, "error").as_str()),
        (401, "invalid_client")
    );

    // ---- refresh: rotation, reuse detection ----
    let refresh = |rt: &str| {
        [
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", rt.to_string()),
        ]
    };
    let r = token(&sc, &as_ref(&refresh(&rt1)), &alpha).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let [_at2, rt2] = keep(&r, &["access_token", "refresh_token"])
        .try_into()
        .unwrap();
    assert_ne!(rt1, rt2, "DOT rotates refresh tokens");
    let r = token(&sc, &as_ref(&refresh(&rt2)), &alpha).await;
    assert_eq!(r.status, 200, "the rotated token works: {:?}", r.body);
    let [_at3, rt3] = keep(&r, &["access_token", "refresh_token"])
        .try_into()
        .unwrap();
    let r = token(&sc, &as_ref(&refresh(&rt1)), &alpha).await;
    assert_eq!(
        (r.status.as_u16(), str_of(&r, "error").as_str()),
        (400, "invalid_grant"),
        "reuse"
    );
    let r = token(&sc, &as_ref(&refresh(&rt3)), &alpha).await;
    assert_eq!(
        (r.status.as_u16(), str_of(&r, "error").as_str()),
        (400, "invalid_grant"),
        "the reuse revoked the whole family"
    );

    // ---- a fresh login: cross-tenant use, resource, forbidden admin action, revocation ----
    let r = token(&sc, &pw("alice", ALICE_PW, "read write"), &alpha).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let [at4, rt4] = keep(&r, &["access_token", "refresh_token"])
        .try_into()
        .unwrap();
    let r = token(&sc, &as_ref(&refresh(&rt4)), &beta).await;
    assert_eq!(
        (r.status.as_u16(), str_of(&r, "error").as_str()),
        (400, "invalid_grant"),
        "app-alpha's refresh token at app-beta's client"
    );
    let r = get(
        &sc,
        "/api/app-alpha/me",
        &[("authorization", &bearer(&at4))],
    )
    .await;
    assert_eq!(r.json(), json!({ "username": "alice", "app": "app-alpha" }));
    let r = get(&sc, "/api/app-beta/me", &[("authorization", &bearer(&at4))]).await;
    assert_eq!(
        (r.status.as_u16(), str_of(&r, "error").as_str()),
        (403, "wrong_tenant")
    );
    let r = post(
        &sc,
        "/api/app-alpha/users/bob/deactivate",
        &[],
        &[("authorization", &bearer(&at4))],
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), str_of(&r, "error").as_str()),
        (403, "insufficient_scope")
    );
    let r = post(
        &sc,
        "/o/revoke_token/",
        &[("token", &at4), ("token_type_hint", "access_token")],
        &[("authorization", &alpha)],
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = get(
        &sc,
        "/api/app-alpha/me",
        &[("authorization", &bearer(&at4))],
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), str_of(&r, "error").as_str()),
        (401, "invalid_token"),
        "revoked"
    );
    let r = post(
        &sc,
        "/o/revoke_token/",
        &[("token", &rt4), ("token_type_hint", "refresh_token")],
        &[("authorization", &alpha)],
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = token(&sc, &as_ref(&refresh(&rt4)), &alpha).await;
    assert_eq!(
        (r.status.as_u16(), str_of(&r, "error").as_str()),
        (400, "invalid_grant"),
        "revoked"
    );
    let r = get(
        &sc,
        "/api/app-alpha/me",
        &[("authorization", &bearer(FORGED_TOKEN))],
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), str_of(&r, "error").as_str()),
        (401, "invalid_token")
    );

    // ---- the admin action ----
    let r = token(&sc, &pw("root", ROOT_PW, "read admin"), &alpha).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let [at_root, _rt_root] = keep(&r, &["access_token", "refresh_token"])
        .try_into()
        .unwrap();
    let r = post(
        &sc,
        "/api/app-alpha/users/bob/deactivate",
        &[],
        &[("authorization", &bearer(&at_root))],
    )
    .await;
    assert_eq!(r.json(), json!({ "deactivated": "bob", "by": "root" }));
    let r = token(&sc, &pw("bob", BOB_PW, "read"), &alpha).await;
    assert_eq!(
        (r.status.as_u16(), str_of(&r, "error").as_str()),
        (400, "invalid_grant"),
        "bob is deactivated"
    );

    // ---- an expired token (app-gamma's access tokens live 1 s) ----
    let r = token(&sc, &pw("carol", CAROL_PW, "read"), &gamma).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["expires_in"], 1);
    let [at_c, _rt_c] = keep(&r, &["access_token", "refresh_token"])
        .try_into()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = get(
        &sc,
        "/api/app-gamma/me",
        &[("authorization", &bearer(&at_c))],
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), str_of(&r, "error").as_str()),
        (401, "invalid_token"),
        "expired"
    );

    // ---- the browser: login form, consent, code (PKCE), exchange, replay, denial, logout ----
    let verifier = format!(
        "{}{}",
        uuid::Uuid::now_v7().simple(),
        uuid::Uuid::now_v7().simple()
    );
    secrets.push(verifier.clone());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let authorize = |state: &str| {
        format!(
            "/o/authorize/?response_type=code&client_id={BETA_ID}&redirect_uri={}&scope=read&state={state}&code_challenge={challenge}&code_challenge_method=S256",
            urlencode(BETA_REDIRECT)
        )
    };
    let consent = |state: &'static str| {
        vec![
            ("redirect_uri", BETA_REDIRECT.to_string()),
            ("scope", "read".to_string()),
            ("nonce", String::new()),
            ("client_id", BETA_ID.to_string()),
            ("state", state.to_string()),
            ("response_type", "code".to_string()),
            ("code_challenge", challenge.clone()),
            ("code_challenge_method", "S256".to_string()),
            ("claims", String::new()),
        ]
    };
    let mut browser = Browser::default();
    let r = browser.get(&sc, "/accounts/login/", &mut secrets).await; // unmapped: the form
    assert_eq!(r.status, 200);
    assert!(!browser.csrf.is_empty(), "csrftoken cookie set");
    let r = browser
        .post(
            &sc,
            "/accounts/login/",
            &[
                ("username", "alice"),
                ("password", WRONG_PW),
                ("next", &authorize("st-1")),
            ],
            &mut secrets,
        )
        .await;
    assert_eq!(r.status, 200, "a bad password re-renders the form");
    assert!(browser.session.is_none());
    let r = browser
        .post(
            &sc,
            "/accounts/login/",
            &[
                ("username", "alice"),
                ("password", ALICE_PW),
                ("next", &authorize("st-1")),
            ],
            &mut secrets,
        )
        .await;
    assert_eq!(r.status, 302);
    assert_eq!(location(&r), authorize("st-1"));
    let alice_session = browser.session.clone().expect("sessionid set at login");
    let r = browser.get(&sc, &authorize("st-1"), &mut secrets).await;
    assert_eq!(r.status, 200, "the consent screen");
    let mut fields = consent("st-1");
    fields.push(("allow", "Authorize".into()));
    let r = browser
        .post(&sc, "/o/authorize/", &as_ref(&fields), &mut secrets)
        .await;
    assert_eq!(r.status, 302);
    let loc = location(&r);
    assert!(loc.starts_with(BETA_REDIRECT), "{loc}");
    assert_eq!(query_param(&loc, "state").as_deref(), Some("st-1"));
    let code = query_param(&loc, "code").expect("a code in the Location");
    secrets.push(code.clone());
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", BETA_REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    let r = token(&sc, &exchange, &beta).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let at_b = str_of(&r, "access_token");
    secrets.push(at_b.clone());
    secrets.push(str_of(&r, "refresh_token"));
    let r = token(&sc, &exchange, &beta).await;
    assert_eq!(
        (r.status.as_u16(), str_of(&r, "error").as_str()),
        (400, "invalid_grant"),
        "replay"
    );
    let r = get(
        &sc,
        "/api/app-beta/me",
        &[("authorization", &bearer(&at_b))],
    )
    .await;
    assert_eq!(r.json(), json!({ "username": "alice", "app": "app-beta" }));
    // alice has a live token for beta-web with that scope: `approval_prompt=auto` skips the
    // consent screen and the code comes straight in the GET's redirect.
    let r = browser
        .get(
            &sc,
            &format!("{}&approval_prompt=auto", authorize("st-auto")),
            &mut secrets,
        )
        .await;
    assert_eq!(r.status, 302);
    let auto_code = query_param(&location(&r), "code").expect("a code without consent");
    secrets.push(auto_code);
    let r = browser.get(&sc, &authorize("st-2"), &mut secrets).await;
    assert_eq!(r.status, 200);
    let r = browser
        .post(
            &sc,
            "/o/authorize/",
            &as_ref(&consent("st-2")),
            &mut secrets,
        )
        .await;
    assert_eq!(r.status, 302);
    let loc = location(&r);
    assert_eq!(
        query_param(&loc, "error").as_deref(),
        Some("access_denied"),
        "{loc}"
    );
    let r = browser
        .post(&sc, "/accounts/logout/", &[], &mut secrets)
        .await;
    assert_eq!(r.status, 302);
    assert!(browser.session.is_none(), "the logout deletes sessionid");
    // The old session cookie, replayed: Django knows no one and asks for a login.
    let r = get(
        &sc,
        &authorize("st-3"),
        &[("cookie", &format!("sessionid={alice_session}"))],
    )
    .await;
    assert_eq!(r.status, 302);
    assert!(
        location(&r).starts_with("/accounts/login/"),
        "{}",
        location(&r)
    );

    // ---- password reset: request, the mailed link, the new password ----
    let r = browser
        .post(
            &sc,
            "/accounts/password_reset/",
            &[("email", "carol@example.test")],
            &mut secrets,
        )
        .await;
    assert_eq!(r.status, 302);
    let mail = std::fs::read_dir(data.path().join("mail"))
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
        .collect::<String>();
    let link = mail
        .split_whitespace()
        .find_map(|w| w.find("/accounts/reset/").map(|i| w[i..].to_string()))
        .unwrap_or_else(|| panic!("no reset link in {mail}"));
    let parts: Vec<&str> = link.split('/').collect();
    let (uid, reset_token) = (parts[3].to_string(), parts[4].to_string());
    secrets.push(reset_token.clone());
    let r = browser.get(&sc, &link, &mut secrets).await;
    assert_eq!(r.status, 302, "a valid link");
    let set_password = format!("/accounts/reset/{uid}/set-password/");
    assert_eq!(location(&r), set_password);
    assert!(browser.session.is_some(), "the link opens a session");
    let r = browser
        .post(
            &sc,
            &set_password,
            &[
                ("new_password1", CAROL_NEW_PW),
                ("new_password2", CAROL_NEW_PW),
            ],
            &mut secrets,
        )
        .await;
    assert_eq!(r.status, 302, "{:?}", r.body);
    // This time the client authenticates in the body (client_secret_post).
    let mut fields = pw("carol", CAROL_NEW_PW, "read").to_vec();
    fields.extend([("client_id", GAMMA_ID), ("client_secret", GAMMA_SECRET)]);
    let r = post(&sc, "/o/token/", &fields, &[]).await;
    assert_eq!(r.status, 200, "the new password works: {:?}", r.body);
    let at_c2 = str_of(&r, "access_token");
    secrets.push(at_c2.clone());
    secrets.push(str_of(&r, "refresh_token"));

    // ---- cross-tenant revocation: app-beta's client revokes app-gamma's token ----
    // RFC 7009 §2.1/2.2: DOT answers 200 and revokes nothing (the token is not beta-web's).
    let r = post(
        &sc,
        "/o/revoke_token/",
        &[("token", &at_c2), ("token_type_hint", "access_token")],
        &[("authorization", &beta)],
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = get(
        &sc,
        "/api/app-gamma/me",
        &[("authorization", &bearer(&at_c2))],
    )
    .await;
    assert_eq!(
        r.json(),
        json!({ "username": "carol", "app": "app-gamma" }),
        "not revoked"
    );

    // ---- the exports, while the admin listener runs ----
    const EVENTS: usize = 41;
    sc.wait_events(EVENTS).await;
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
    let dumped = dump(&evs);
    assert_eq!(evs.len(), EVENTS, "{dumped}");
    let ndjson_lines = String::from_utf8_lossy(&ndjson.body)
        .lines()
        .filter(|l| l.contains("\"route\""))
        .count();
    assert!(
        ndjson_lines >= EVENTS,
        "ndjson export: {ndjson_lines} events"
    );
    assert!(
        String::from_utf8_lossy(&csv.body).lines().count() > EVENTS,
        "csv export"
    );

    // ---- every event: type, outcome, reason, actor, app, target ----
    // DOT's tokens, codes and sessions are opaque: nothing here is verified with a key, so every
    // actor and app is `verified: false` — what was typed, looked up, or inherited by lineage
    // from an unverified event.
    let l = |i: usize| lineage(&evs[i]);
    const TYPED: &str = "form:username";
    const SESSION: &str = "session:sessionid";
    const BASIC: &str = "lookup:client_app(basic_auth:user)";
    const PATH: &str = "path:app";
    let alpha_app = Some(("app-alpha", BASIC));
    #[rustfmt::skip]
    let want: Vec<Want> = vec![
        // 0-3: password grant at app-alpha's client: success, wrong password, unknown client,
        // wrong client secret (the unknown client names no app).
        w("password-grant", "auth.login", Outcome::Success, None, Some("alice"), TYPED, alpha_app, None),
        w("password-grant", "auth.login", Outcome::Failure, Some("invalid_grant"), Some("alice"), TYPED, alpha_app, None),
        w("password-grant", "auth.login", Outcome::Failure, Some("invalid_client"), Some("alice"), TYPED, None, None),
        w("password-grant", "auth.login", Outcome::Failure, Some("invalid_client"), Some("alice"), TYPED, alpha_app, None),
        // 4-7: rotation (each link names alice through the event that issued its token), reuse
        // of the first token, then the family DOT revoked on that reuse.
        w("refresh-grant", "token.refresh", Outcome::Success, None, Some("alice"), &l(0), alpha_app, None),
        w("refresh-grant", "token.refresh", Outcome::Success, None, Some("alice"), &l(4), alpha_app, None),
        w("refresh-grant", "token.refresh", Outcome::Failure, Some("invalid_grant"), Some("alice"), &l(0), alpha_app, None),
        w("refresh-grant", "token.refresh", Outcome::Failure, Some("invalid_grant"), Some("alice"), &l(5), alpha_app, None),
        // 8: a fresh login; 9: its refresh token at app-beta's client (cross-tenant).
        w("password-grant", "auth.login", Outcome::Success, None, Some("alice"), TYPED, alpha_app, None),
        w("refresh-grant", "token.refresh", Outcome::Failure, Some("invalid_grant"), Some("alice"), &l(8), Some(("app-beta", BASIC)), None),
        // 10-12: its access token at app-alpha's resource, at app-beta's (cross-tenant), and at
        // the admin action without the admin scope (forbidden).
        w("resource-me", "account.read", Outcome::Success, None, Some("alice"), &l(8), Some(("app-alpha", PATH)), None),
        w("resource-me", "account.read", Outcome::Failure, Some("wrong_tenant"), Some("alice"), &l(8), Some(("app-beta", PATH)), None),
        w("deactivate-user", "account.deactivate", Outcome::Failure, Some("insufficient_scope"), Some("alice"), &l(8), Some(("app-alpha", PATH)), Some(("user", "bob", "path:username".into()))),
        // 13-16: RFC 7009: the access token revoked (then refused), the refresh token revoked
        // (then refused); the owner is the actor and the target.
        w("revoke", "token.revoke", Outcome::Success, None, Some("alice"), &l(8), alpha_app, Some(("user", "alice", l(8)))),
        w("resource-me", "account.read", Outcome::Failure, Some("invalid_token"), Some("alice"), &l(8), Some(("app-alpha", PATH)), None),
        w("revoke", "token.revoke", Outcome::Success, None, Some("alice"), &l(8), alpha_app, Some(("user", "alice", l(8)))),
        w("refresh-grant", "token.refresh", Outcome::Failure, Some("invalid_grant"), Some("alice"), &l(8), alpha_app, None),
        // 17: a made-up token names no one.
        w("resource-me", "account.read", Outcome::Failure, Some("invalid_token"), None, "", Some(("app-alpha", PATH)), None),
        // 18-20: the admin action: root logs in with scope admin, deactivates bob, whose next
        // login fails.
        w("password-grant", "auth.login", Outcome::Success, None, Some("root"), TYPED, alpha_app, None),
        w("deactivate-user", "account.deactivate", Outcome::Success, None, Some("root"), &l(18), Some(("app-alpha", PATH)), Some(("user", "bob", "path:username".into()))),
        w("password-grant", "auth.login", Outcome::Failure, Some("invalid_grant"), Some("bob"), TYPED, alpha_app, None),
        // 21-22: app-gamma's one-second token, presented after it expired.
        w("password-grant", "auth.login", Outcome::Success, None, Some("carol"), TYPED, Some(("app-gamma", BASIC)), None),
        w("resource-me", "account.read", Outcome::Failure, Some("invalid_token"), Some("carol"), &l(21), Some(("app-gamma", PATH)), None),
        // 23-24: the login form: a bad password (200, the form again), then a good one (302,
        // sessionid). The provider's own login belongs to no app.
        w("browser-login", "auth.login", Outcome::Failure, Some("invalid_credentials"), Some("alice"), TYPED, None, None),
        w("browser-login", "auth.login", Outcome::Success, None, Some("alice"), TYPED, None, None),
        // 25-26: the consent screen and the decision, by the session; the code in the redirect.
        w("authorize-screen", "oauth.authorize", Outcome::Success, None, Some("alice"), SESSION, Some(("app-beta", "lookup:client_app(query:client_id)")), None),
        w("authorize-decision", "oauth.consent", Outcome::Success, None, Some("alice"), SESSION, Some(("app-beta", "lookup:client_app(form:client_id)")), None),
        // 27-29: the code exchanged and replayed (both name alice through the consent), the new
        // access token used at app-beta.
        w("code-exchange", "token.exchange", Outcome::Success, None, Some("alice"), &l(26), Some(("app-beta", BASIC)), None),
        w("code-exchange", "token.exchange", Outcome::Failure, Some("invalid_grant"), Some("alice"), &l(26), Some(("app-beta", BASIC)), None),
        w("resource-me", "account.read", Outcome::Success, None, Some("alice"), &l(27), Some(("app-beta", PATH)), None),
        // 30: approval_prompt=auto: a code straight in the GET's redirect.
        w("authorize-screen", "oauth.authorize", Outcome::Success, None, Some("alice"), SESSION, Some(("app-beta", "lookup:client_app(query:client_id)")), None),
        // 31-32: consent denied: the redirect's error=access_denied is the failure.
        w("authorize-screen", "oauth.authorize", Outcome::Success, None, Some("alice"), SESSION, Some(("app-beta", "lookup:client_app(query:client_id)")), None),
        w("authorize-decision", "oauth.consent", Outcome::Failure, Some("access_denied"), Some("alice"), SESSION, Some(("app-beta", "lookup:client_app(form:client_id)")), None),
        // 33-34: logout, then the old cookie replayed: no one (Django redirects to the login).
        w("browser-logout", "auth.logout", Outcome::Success, None, Some("alice"), SESSION, None, None),
        w("authorize-screen", "oauth.authorize", Outcome::Success, None, None, "", Some(("app-beta", "lookup:client_app(query:client_id)")), None),
        // 35-38: password reset of carol: request, the mailed link, the new password; the new
        // password then works at the token endpoint.
        w("password-reset-request", "auth.password_reset.request", Outcome::Success, None, None, "", None, Some(("email", "carol@example.test", "form:email".into()))),
        w("password-reset-link", "auth.password_reset.open", Outcome::Success, None, None, "", None, Some(("user_ref", uid.as_str(), "path:uidb64".into()))),
        w("password-reset-confirm", "auth.password_reset.confirm", Outcome::Success, None, None, "", None, Some(("user_ref", uid.as_str(), "path:uidb64".into()))),
        w("password-grant", "auth.login", Outcome::Success, None, Some("carol"), TYPED, Some(("app-gamma", "lookup:client_app(form:client_id)")), None),
        // 39-40: app-beta's client revokes carol's app-gamma token: DOT's 200 is a success
        // (RFC 7009), the disagreeing apps are the app_conflict; the token still works.
        w("revoke", "token.revoke", Outcome::Success, None, Some("carol"), &l(38), Some(("app-beta", BASIC)), Some(("user", "carol", l(38)))),
        w("resource-me", "account.read", Outcome::Success, None, Some("carol"), &l(38), Some(("app-gamma", PATH)), None),
    ];
    assert_eq!(want.len(), EVENTS);
    for (i, (e, w)) in evs.iter().zip(&want).enumerate() {
        let ctx = format!("event {i} ({}):\n{dumped}", w.route);
        assert_eq!(
            (
                e.http.route.as_str(),
                e.event_type.as_str(),
                e.outcome,
                e.reason.as_deref()
            ),
            (w.route, w.ty, w.outcome, w.reason),
            "{ctx}"
        );
        let source = (!w.by.is_empty()).then_some(w.by.as_str());
        assert_eq!(who(e), (w.actor, false, source), "actor of {ctx}");
        let kind = match (w.actor, w.route) {
            (None, _) => ActorKind::Anonymous,
            (_, "deactivate-user") => ActorKind::Admin,
            _ => ActorKind::User,
        };
        assert_eq!(e.actor.kind, kind, "actor kind of {ctx}");
        assert_eq!(app(e), w.app.map(|(v, s)| (v, false, s)), "app of {ctx}");
        assert_eq!(
            target(e),
            w.target.as_ref().map(|(k, id, s)| (*k, *id, s.as_str())),
            "target of {ctx}"
        );
        if ![9, 11, 39].contains(&i) {
            assert_eq!(e.app_conflict, None, "{ctx}");
        }
    }

    // Cross-tenant: the app the request names and the app the token was issued to disagree.
    let conflict = |e: &AuditEvent| -> Vec<(String, String)> {
        e.app_conflict
            .iter()
            .flatten()
            .map(|a| (a.value.clone(), a.source.clone()))
            .collect()
    };
    assert_eq!(
        conflict(&evs[9]),
        [
            ("app-beta".into(), BASIC.into()),
            ("app-alpha".into(), l(8))
        ]
    );
    assert_eq!(
        conflict(&evs[39]),
        [
            ("app-beta".into(), BASIC.into()),
            ("app-gamma".into(), l(38))
        ]
    );
    assert_eq!(
        conflict(&evs[11]),
        [("app-beta".into(), PATH.into()), ("app-alpha".into(), l(8))]
    );

    // The token chain: what a refresh presents is what the previous link issued.
    let fp = |i: usize, role: TokenRole, kind: &str| -> String {
        evs[i]
            .tokens
            .iter()
            .find(|t| t.role == role && t.kind == kind)
            .unwrap_or_else(|| panic!("no {role:?} {kind} token on event {i}:\n{dumped}"))
            .fingerprint
            .clone()
    };
    use TokenRole::{Issued, Presented};
    assert_eq!(fp(4, Presented, "refresh"), fp(0, Issued, "refresh"));
    assert_eq!(fp(5, Presented, "refresh"), fp(4, Issued, "refresh"));
    assert_eq!(
        fp(6, Presented, "refresh"),
        fp(0, Issued, "refresh"),
        "reuse"
    );
    assert_eq!(fp(7, Presented, "refresh"), fp(5, Issued, "refresh"));
    assert_eq!(fp(10, Presented, "access"), fp(8, Issued, "access"));
    assert_eq!(fp(13, Presented, "token"), fp(8, Issued, "access"));
    assert_eq!(fp(15, Presented, "token"), fp(8, Issued, "refresh"));
    assert_eq!(fp(27, Presented, "code"), fp(26, Issued, "code"));
    assert_eq!(fp(28, Presented, "code"), fp(26, Issued, "code"), "replay");
    assert_eq!(fp(25, Presented, "session"), fp(24, Issued, "session"));
    assert_eq!(fp(33, Presented, "session"), fp(24, Issued, "session"));
    let auto = &evs[30].tokens;
    assert!(
        auto.iter()
            .any(|t| t.role == Issued && t.kind == "code" && t.source == "location:code"),
        "{auto:?}"
    );
    for (i, e) in evs.iter().enumerate() {
        assert!(
            e.tokens
                .iter()
                .all(|t| !t.verified && t.invalid.is_none() && t.jti.is_none()),
            "opaque: fingerprints only (event {i}):\n{dumped}"
        );
    }
    // Django's session cookie lives two weeks (Max-Age 1209600): the binding ends with it.
    let session = evs[24].tokens.iter().find(|t| t.kind == "session").unwrap();
    let exp = session.exp.expect("the cookie's Max-Age");
    assert!((exp - evs[24].time.unix_timestamp() - 1_209_600).abs() <= 5);

    // Details: the client, DOT's error descriptions, lineage lookups, the session's end.
    assert_eq!(evs[0].details["client"], ALPHA_ID);
    assert_eq!(evs[0].details["scope"], "read write");
    assert_eq!(evs[2].details["client"], "nobody-cli");
    assert_eq!(evs[38].details["client"], GAMMA_ID);
    // The redirects, with the code masked; none when the screen is shown.
    let redirect = |i: usize| evs[i].details.get("redirect").cloned().unwrap_or_default();
    assert_eq!(redirect(25), json!(null));
    assert_eq!(
        redirect(26),
        json!(format!("{BETA_REDIRECT}?code={{code}}&state=st-1"))
    );
    assert_eq!(
        redirect(30),
        json!(format!("{BETA_REDIRECT}?code={{code}}&state=st-auto"))
    );
    assert_eq!(
        redirect(32),
        json!(format!("{BETA_REDIRECT}?error=access_denied&state=st-2"))
    );
    // The login redirect nests the whole authorization request in `next=`: its secret-named
    // parameters (`code_challenge`, a word `code`) are masked there too.
    let login_redirect = redirect(34).as_str().unwrap_or_default().to_string();
    assert!(
        login_redirect.starts_with("/accounts/login/?next=%2Fo%2Fauthorize%2F"),
        "{login_redirect}"
    );
    assert!(
        login_redirect.contains("code_challenge%3D%7Bcode_challenge%7D"),
        "{login_redirect}"
    );
    assert!(!login_redirect.contains(&challenge), "{login_redirect}");
    assert!(login_redirect.contains("state%3Dst-3"), "{login_redirect}");
    assert_eq!(evs[9].details["client"], BETA_ID);
    assert_eq!(evs[13].details["client"], ALPHA_ID);
    assert_eq!(
        evs[14].details["error_description"],
        "The access token is invalid."
    );
    assert_eq!(
        evs[22].details["error_description"],
        "The access token has expired."
    );
    assert_eq!(
        evs[17].details["lineage"]["bearer"],
        json!({ "found": false })
    );
    assert_eq!(evs[23].details["reason_text"], "http_200");
    assert_eq!(evs[33].details["session_ended"], json!(true));
    assert_eq!(
        evs[34].details["lineage"]["cookie:sessionid"]["ended"],
        "logout"
    );
    // The reset link's event (36) issued this sessionid to no one in particular: the
    // set-password POST links it to that event (and so names no one either).
    assert_eq!(
        fp(37, Presented, "session"),
        fp(36, Issued, "session"),
        "the same anonymous session"
    );
    assert_eq!(
        evs[37].details["lineage"]["cookie:sessionid"],
        json!({ "event": evs[36].id.to_string() })
    );
    // The reset token in the link's path is stored as its placeholder.
    assert_eq!(
        evs[36].http.path,
        format!("/accounts/reset/{uid}/{{token}}/")
    );

    // ---- no secret in the store (with its WAL), the logs or the exports ----
    let stored = harness::store_bytes(&sc.db);
    let logs = harness::captured_logs();
    assert!(secrets.len() > 40, "{} secrets to look for", secrets.len());
    // The scan reads what it should: the trail's plain values are there.
    assert!(contains(&stored, "carol@example.test") && contains(&stored, "lookup:client_app"));
    assert!(logs.contains("audit event built"));
    assert!(contains(&ndjson.body, "token.exchange") && contains(&csv.body, "access_denied"));
    for secret in &secrets {
        assert!(!secret.is_empty());
        assert!(
            !contains(&stored, secret),
            "{secret:.24}… reached the store"
        );
        assert!(
            !logs.contains(secret.as_str()),
            "{secret:.24}… reached the logs"
        );
        assert!(
            !contains(&ndjson.body, secret),
            "{secret:.24}… reached the NDJSON export"
        );
        assert!(
            !contains(&csv.body, secret),
            "{secret:.24}… reached the CSV export"
        );
    }
    let took = started.elapsed();
    eprintln!("django-oauth-toolkit scenario: {EVENTS} events in {took:?}");
    drop(dot);
}

struct Want<'a> {
    route: &'static str,
    ty: &'static str,
    outcome: Outcome,
    reason: Option<&'static str>,
    actor: Option<&'static str>,
    /// The actor's source; "" for none.
    by: String,
    /// (value, source).
    app: Option<(&'static str, &'static str)>,
    /// (kind, id, source).
    target: Option<(&'static str, &'a str, String)>,
}

#[allow(clippy::too_many_arguments)]
fn w<'a>(
    route: &'static str,
    ty: &'static str,
    outcome: Outcome,
    reason: Option<&'static str>,
    actor: Option<&'static str>,
    by: &str,
    app: Option<(&'static str, &'static str)>,
    target: Option<(&'static str, &'a str, String)>,
) -> Want<'a> {
    Want {
        route,
        ty,
        outcome,
        reason,
        actor,
        by: by.to_string(),
        app,
        target,
    }
}

fn as_ref<'a>(fields: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    fields.iter().map(|(k, v)| (*k, v.as_str())).collect()
}
