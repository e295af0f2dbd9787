//! config/presets/fastapi-users.yaml in front of a real fastapi-users app (FastAPI + the
//! SQLAlchemy adapter on aiosqlite, served by uvicorn), installed from PyPI at pinned versions
//! under tests/thirdparty/fastapi-users/py-deps and started here as a child process
//! (tests/thirdparty/fastapi-users/server.py). Its access tokens are HS256 JWTs of the JWT
//! strategy; its reset-password and verification tokens are JWTs of two other secrets and
//! audiences: the preset verifies all three, so the user a reset or a verification is for is
//! read verified from the token, and a forged or expired one is told apart.
//!
//! Scenario (41 requests through the sidecar, 00-40): logins that succeed and fail (wrong
//! password, inactive, unverified, malformed), the current user with a good, a forged and an
//! expired token, profile updates refused by the password policy and for a taken address,
//! registration (ok, taken, weak password), e-mail verification (forged, good, again), password
//! reset (forged token, weak password, good, replayed), superuser actions (read, deactivate,
//! reactivate, grant superuser, update, delete; refused for a non-superuser, for an unknown id,
//! and at the edge for a forged or missing token), logout, and the logged-out JWT used again.
//! Every event's type, outcome, reason, actor, app and target is checked; then the store (with
//! its WAL), the captured logs and both exports are scanned for every secret used.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use authtrail::event::{ActorKind, AuditEvent, Outcome, TokenRole};
use bytes::Bytes;
use hyper::Method;
use serde_json::{json, Value};
use support::admin::{self, TOKEN_ALL};
use support::events::{actor, app, now, summary, target};
use support::harness::{self, contains, send, Reply};
use support::thirdparty::{self, Server};

/// One expected event: (request id, type, outcome, reason, actor, target).
type Row<'a> = (
    &'a str,
    &'a str,
    Outcome,
    Option<&'a str>,
    (Option<&'a str>, bool, Option<&'a str>),
    Option<(&'a str, &'a str, &'a str)>,
);

const JWT_SECRET: &str = "fu-e2e-jwt-strategy-secret-8c1f4a7d2e9b";
const RESET_SECRET: &str = "fu-e2e-reset-password-secret-3b6e0d9a1c";
const VERIFY_SECRET: &str = "fu-e2e-verification-secret-7a2c5f8e4d";
/// Key of the forged tokens: not the server's.
const WRONG_KEY: &str = "attacker-chosen-key-5d9e2b7c1a";
const FINGERPRINT_KEY: &str = "fu-e2e-fingerprint-key-4f1a9c";
/// Every fixture user's password.
const PASSWORD: &str = "Fixture-Pass-7tQ2wz";
const WRONG_PASSWORD: &str = "Wrong-Guess-9pL4kx";
const NEW_PASSWORD: &str = "Reset-New-Pass-2mB8rv";
const FRANK_PASSWORD: &str = "Frank-Signup-Pass-6cW1yn";
/// Refused by the fixture's validate_password (< 8 characters).
const WEAK_PASSWORD: &str = "Wk-3x";
const APP: &str = "fastapi-users";

// Fixture users (server.py).
const ALICE: &str = "11111111-1111-4111-8111-111111111111";
const BOB: &str = "22222222-2222-4222-8222-222222222222";
const ROOT: &str = "33333333-3333-4333-8333-333333333333";
const NOBODY: &str = "99999999-9999-4999-8999-999999999999";

fn py_deps() -> PathBuf {
    thirdparty::dir("fastapi-users").join("py-deps")
}

struct Client<'a> {
    sc: &'a harness::Sidecar,
}

impl Client<'_> {
    async fn req(
        &self,
        id: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        bearer: Option<&str>,
    ) -> Reply {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let mut h = vec![("x-request-id", id)];
        if body.is_some() {
            h.push(("content-type", "application/json"));
        }
        if let Some(a) = &auth {
            h.push(("authorization", a.as_str()));
        }
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        send(method, &self.sc.url(path), &h, body).await.unwrap()
    }

    async fn post(&self, id: &str, path: &str, body: Value, bearer: Option<&str>) -> Reply {
        self.req(id, Method::POST, path, Some(body), bearer).await
    }

    /// The login form (OAuth2PasswordRequestForm).
    async fn login(&self, id: &str, fields: &[(&str, &str)]) -> Reply {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let h = [
            ("x-request-id", id),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        send(
            Method::POST,
            &self.sc.url("/auth/jwt/login"),
            &h,
            Bytes::from(body),
        )
        .await
        .unwrap()
    }
}

fn body(r: &Reply) -> String {
    format!("{} {}", r.status, String::from_utf8_lossy(&r.body))
}

fn access_token(r: &Reply) -> String {
    r.json()["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token: {}", body(r)))
        .to_string()
}

fn sign(claims: &Value, key: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

/// Wait (bounded) for the mail of `kind` to `email` in `dir`: the token it carries.
async fn mailed_token(dir: &Path, kind: &str, email: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names.iter().rev() {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let parts: Vec<&str> = text.split_whitespace().collect();
            if parts.len() == 3 && parts[0] == kind && parts[1] == email {
                return parts[2].to_string();
            }
        }
        assert!(Instant::now() < deadline, "no {kind} mail to {email}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

type Who<'a> = (Option<&'a str>, bool, Option<&'a str>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fastapi_users_jwt_end_to_end() {
    let deps = py_deps();
    if thirdparty::skip_unless_installed(
        "fastapi-users",
        &[
            deps.join("fastapi_users-15.0.5.dist-info"),
            deps.join("fastapi_users_db_sqlalchemy-7.0.0.dist-info"),
            deps.join("fastapi-0.165.0.dist-info"),
            deps.join("uvicorn-0.55.0.dist-info"),
        ],
    )
    .is_some()
    {
        return;
    }
    let started = Instant::now();

    let data = tempfile::tempdir().unwrap();
    let mail_dir = data.path().join("mail");
    let port = thirdparty::free_port();
    let mut cmd = Command::new("python3");
    cmd.arg(thirdparty::dir("fastapi-users").join("server.py"))
        .arg(data.path())
        .arg(port.to_string())
        .env("FU_JWT_SECRET", JWT_SECRET)
        .env("FU_RESET_SECRET", RESET_SECRET)
        .env("FU_VERIFY_SECRET", VERIFY_SECRET)
        .env("FU_PASSWORD", PASSWORD)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let server = Server::start("fastapi-users", cmd, port, Duration::from_secs(60));

    // The sidecar, on config/presets/fastapi-users.yaml plus admin credentials for the exports.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fu.db");
    for (k, v) in [
        ("FASTAPI_USERS_UPSTREAM", format!("http://{}", server.addr)),
        ("AUTHTRAIL_STORE", format!("sqlite://{}", db.display())),
        ("FINGERPRINT_KEY", FINGERPRINT_KEY.to_string()),
        ("FASTAPI_USERS_JWT_SECRET", JWT_SECRET.to_string()),
        ("FASTAPI_USERS_RESET_SECRET", RESET_SECRET.to_string()),
        ("FASTAPI_USERS_VERIFY_SECRET", VERIFY_SECRET.to_string()),
    ] {
        std::env::set_var(k, v);
    }
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/presets/fastapi-users.yaml"
    );
    let yaml = std::fs::read_to_string(path).unwrap() + &admin::credentials_yaml();
    let cfg = authtrail::config::load_str(&yaml, path).unwrap_or_else(|e| panic!("{e}"));
    let mut sc = harness::start_config(cfg, db, dir).await;
    let c = Client { sc: &sc };
    let creds = |u: &'static str, p: &'static str| [("username", u), ("password", p)];

    // --- logins -------------------------------------------------------------------------------
    let r = c
        .login("00-login", &creds("alice@example.com", PASSWORD))
        .await;
    assert_eq!(r.status, 200, "{}\n{}", body(&r), server.output());
    let alice1 = access_token(&r);
    let r = c
        .login(
            "01-login-wrong-pw",
            &creds("alice@example.com", WRONG_PASSWORD),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.json()["detail"].clone()),
        (400, json!("LOGIN_BAD_CREDENTIALS"))
    );
    let r = c
        .login("02-login-inactive", &creds("dave@example.com", PASSWORD))
        .await;
    assert_eq!(r.status, 400, "dave is inactive: {}", body(&r));
    let r = c
        .login("03-login-malformed", &[("username", "alice@example.com")])
        .await;
    assert_eq!(r.status, 422, "no password: {}", body(&r));

    // --- the current user: good, forged, expired tokens ---------------------------------------
    let r = c
        .req("04-me", Method::GET, "/users/me", None, Some(&alice1))
        .await;
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(r.json()["id"], ALICE);
    let forged = sign(
        &json!({ "sub": BOB, "aud": ["fastapi-users:auth"], "exp": now() + 600 }),
        WRONG_KEY,
    );
    let r = c
        .req(
            "05-me-forged",
            Method::GET,
            "/users/me",
            None,
            Some(&forged),
        )
        .await;
    assert_eq!(r.status, 401);
    let expired = sign(
        &json!({ "sub": ALICE, "aud": ["fastapi-users:auth"], "exp": now() - 120 }),
        JWT_SECRET,
    );
    let r = c
        .req(
            "06-me-expired",
            Method::GET,
            "/users/me",
            None,
            Some(&expired),
        )
        .await;
    assert_eq!(r.status, 401);

    // --- profile updates refused ----------------------------------------------------------------
    let r = c
        .req(
            "07-update-me-weak",
            Method::PATCH,
            "/users/me",
            Some(json!({ "password": WEAK_PASSWORD })),
            Some(&alice1),
        )
        .await;
    assert_eq!(r.status, 400, "{}", body(&r));
    let r = c
        .req(
            "08-update-me-taken",
            Method::PATCH,
            "/users/me",
            Some(json!({ "email": "bob@example.com" })),
            Some(&alice1),
        )
        .await;
    assert_eq!(
        r.json()["detail"],
        "UPDATE_USER_EMAIL_ALREADY_EXISTS",
        "{}",
        body(&r)
    );

    // --- registration, verification -------------------------------------------------------------
    let signup = |email: &str, pw: &str| json!({ "email": email, "password": pw });
    let r = c
        .post(
            "09-register",
            "/auth/register",
            signup("frank@example.com", FRANK_PASSWORD),
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{}", body(&r));
    let frank = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(r.json()["is_verified"], false);
    let r = c
        .post(
            "10-register-taken",
            "/auth/register",
            signup("frank@example.com", FRANK_PASSWORD),
            None,
        )
        .await;
    assert_eq!(r.json()["detail"], "REGISTER_USER_ALREADY_EXISTS");
    let r = c
        .post(
            "11-register-weak",
            "/auth/register",
            signup("gina@example.com", WEAK_PASSWORD),
            None,
        )
        .await;
    assert_eq!(
        r.json()["detail"]["code"],
        "REGISTER_INVALID_PASSWORD",
        "{}",
        body(&r)
    );
    let r = c
        .login(
            "12-login-unverified",
            &creds("frank@example.com", FRANK_PASSWORD),
        )
        .await;
    assert_eq!(r.json()["detail"], "LOGIN_USER_NOT_VERIFIED");
    let r = c
        .post(
            "13-request-verify",
            "/auth/request-verify-token",
            json!({ "email": "frank@example.com" }),
            None,
        )
        .await;
    assert_eq!(r.status, 202);
    let verify_token = mailed_token(&mail_dir, "verify", "frank@example.com").await;
    let forged_verify = sign(
        &json!({ "sub": frank, "email": "frank@example.com", "aud": "fastapi-users:verify", "exp": now() + 600 }),
        WRONG_KEY,
    );
    let r = c
        .post(
            "14-verify-forged",
            "/auth/verify",
            json!({ "token": forged_verify }),
            None,
        )
        .await;
    assert_eq!(r.json()["detail"], "VERIFY_USER_BAD_TOKEN");
    let r = c
        .post(
            "15-verify",
            "/auth/verify",
            json!({ "token": verify_token }),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(r.json()["is_verified"], true);
    let r = c
        .post(
            "16-verify-again",
            "/auth/verify",
            json!({ "token": verify_token }),
            None,
        )
        .await;
    assert_eq!(r.json()["detail"], "VERIFY_USER_ALREADY_VERIFIED");
    let r = c
        .login(
            "17-login-frank",
            &creds("frank@example.com", FRANK_PASSWORD),
        )
        .await;
    assert_eq!(r.status, 200, "{}", body(&r));
    let frank1 = access_token(&r);

    // --- password reset ---------------------------------------------------------------------------
    let r = c
        .post(
            "18-forgot",
            "/auth/forgot-password",
            json!({ "email": "alice@example.com" }),
            None,
        )
        .await;
    assert_eq!(r.status, 202);
    let r = c
        .post(
            "19-forgot-unknown",
            "/auth/forgot-password",
            json!({ "email": "mallory@example.com" }),
            None,
        )
        .await;
    assert_eq!(r.status, 202, "no enumeration");
    let reset_token = mailed_token(&mail_dir, "reset", "alice@example.com").await;
    let reset = |t: &str, pw: &str| json!({ "token": t, "password": pw });
    // alice's access token is no reset token (another secret, another audience).
    let r = c
        .post(
            "20-reset-with-access-token",
            "/auth/reset-password",
            reset(&alice1, NEW_PASSWORD),
            None,
        )
        .await;
    assert_eq!(r.json()["detail"], "RESET_PASSWORD_BAD_TOKEN");
    let r = c
        .post(
            "21-reset-weak",
            "/auth/reset-password",
            reset(&reset_token, WEAK_PASSWORD),
            None,
        )
        .await;
    assert_eq!(
        r.json()["detail"]["code"],
        "RESET_PASSWORD_INVALID_PASSWORD",
        "{}",
        body(&r)
    );
    let r = c
        .post(
            "22-reset",
            "/auth/reset-password",
            reset(&reset_token, NEW_PASSWORD),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", body(&r));
    let r = c
        .post(
            "23-reset-replayed",
            "/auth/reset-password",
            reset(&reset_token, NEW_PASSWORD),
            None,
        )
        .await;
    assert_eq!(
        r.json()["detail"],
        "RESET_PASSWORD_BAD_TOKEN",
        "the password changed: the token's fingerprint no longer matches"
    );
    let r = c
        .login("24-login-old-pw", &creds("alice@example.com", PASSWORD))
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .login("25-login-new-pw", &creds("alice@example.com", NEW_PASSWORD))
        .await;
    assert_eq!(r.status, 200);
    let alice2 = access_token(&r);

    // --- superusers -------------------------------------------------------------------------------
    let user = |id: &str| format!("/users/{id}");
    let r = c
        .req(
            "26-admin-not-superuser",
            Method::DELETE,
            &user(BOB),
            None,
            Some(&alice2),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.json()["detail"].clone()),
        (403, json!("Forbidden"))
    );
    let r = c
        .login("27-login-root", &creds("root@example.com", PASSWORD))
        .await;
    assert_eq!(r.status, 200);
    let root = access_token(&r);
    let r = c
        .req("28-admin-read", Method::GET, &user(BOB), None, Some(&root))
        .await;
    assert_eq!(r.json()["email"], "bob@example.com", "{}", body(&r));
    let r = c
        .req(
            "29-admin-deactivate",
            Method::PATCH,
            &user(BOB),
            Some(json!({ "is_active": false })),
            Some(&root),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.json()["is_active"].clone()),
        (200, json!(false))
    );
    let r = c
        .login("30-login-deactivated", &creds("bob@example.com", PASSWORD))
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .req(
            "31-admin-reactivate",
            Method::PATCH,
            &user(BOB),
            Some(json!({ "is_active": true })),
            Some(&root),
        )
        .await;
    assert_eq!(r.json()["is_active"], true);
    let r = c
        .req(
            "32-admin-grant",
            Method::PATCH,
            &user(&frank),
            Some(json!({ "is_superuser": true })),
            Some(&root),
        )
        .await;
    assert_eq!(r.json()["is_superuser"], true, "{}", body(&r));
    let r = c
        .req(
            "33-admin-update",
            Method::PATCH,
            &user(BOB),
            Some(json!({ "email": "bob2@example.com" })),
            Some(&root),
        )
        .await;
    assert_eq!(r.json()["email"], "bob2@example.com");
    let forged_root = sign(
        &json!({ "sub": ROOT, "aud": ["fastapi-users:auth"], "exp": now() + 600 }),
        WRONG_KEY,
    );
    let r = c
        .req(
            "34-admin-forged",
            Method::DELETE,
            &user(BOB),
            None,
            Some(&forged_root),
        )
        .await;
    assert_eq!(r.status, 401, "refused at the edge");
    let r = c
        .req("35-admin-no-token", Method::GET, &user(BOB), None, None)
        .await;
    assert_eq!(r.status, 401);
    let r = c
        .req(
            "36-admin-unknown",
            Method::DELETE,
            &user(NOBODY),
            None,
            Some(&root),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = c
        .req(
            "37-admin-delete",
            Method::DELETE,
            &user(BOB),
            None,
            Some(&root),
        )
        .await;
    assert_eq!(r.status, 204, "{}", body(&r));

    // --- logout: a JWT cannot be revoked ------------------------------------------------------------
    let r = c
        .post("38-logout", "/auth/jwt/logout", json!({}), Some(&alice2))
        .await;
    assert_eq!(r.status, 204, "{}", body(&r));
    let r = c
        .post(
            "39-logout-expired",
            "/auth/jwt/logout",
            json!({}),
            Some(&expired),
        )
        .await;
    assert_eq!(r.status, 401);
    let r = c
        .req(
            "40-me-after-logout",
            Method::GET,
            "/users/me",
            None,
            Some(&alice2),
        )
        .await;
    assert_eq!(r.status, 200, "the JWT stays valid until it expires");

    // 41 requests, 41 events (34 and 35 are access.denied instead of their route's event), and
    // the two exports.
    let evs = sc.wait_events(41).await;
    let dump: String = evs.iter().map(|e| summary(e) + "\n").collect();
    eprintln!("{dump}");
    let ndjson = admin::get(&sc, "/v1/export?format=ndjson", Some(TOKEN_ALL)).await;
    assert_eq!(ndjson.status, 200);
    let csv = admin::get(&sc, "/v1/export?format=csv", Some(TOKEN_ALL)).await;
    assert_eq!(csv.status, 200);
    sc.stop().await;
    let stored = sc.events().await;
    let evs: Vec<&AuditEvent> = stored
        .iter()
        .filter(|e| !e.event_type.starts_with("audit."))
        .collect();
    assert_eq!(evs.len(), 41, "{dump}");
    let ev = |id: &str| -> &AuditEvent {
        let found: Vec<&&AuditEvent> = evs.iter().filter(|e| e.http.request_id == id).collect();
        assert_eq!(found.len(), 1, "one event for {id}:\n{dump}");
        found[0]
    };

    // --- every event ----------------------------------------------------------------------------------
    let issued = |id| -> Who {
        (
            Some(id),
            true,
            Some("claim:sub@response_body:/access_token"),
        )
    };
    let typed = |name| -> Who { (Some(name), false, Some("form:username")) };
    let bearer = |id| -> Who { (Some(id), true, Some("claim:sub@bearer")) };
    let claimed = |id| -> Who { (Some(id), false, Some("claimed:sub@bearer")) };
    let reset_tok = |id| -> Who { (Some(id), true, Some("claim:sub@request_body:/token")) };
    let nobody: Who = (None, false, None);
    // An access token sent as a reset token: it does not verify with the reset key, but the
    // trail saw it issued by alice's login: lineage names her (as verified as the login did).
    let login_lineage = support::events::lineage(ev("00-login"));
    let user_t = |id| Some(("user", id, "path:id"));
    #[rustfmt::skip]
    let want: Vec<Row> = vec![
        ("00-login", "auth.login", Outcome::Success, None, issued(ALICE), None),
        ("01-login-wrong-pw", "auth.login", Outcome::Failure, Some("invalid_credentials"), typed("alice@example.com"), None),
        ("02-login-inactive", "auth.login", Outcome::Failure, Some("invalid_credentials"), typed("dave@example.com"), None),
        ("03-login-malformed", "auth.login", Outcome::Failure, Some("invalid_request"), typed("alice@example.com"), None),
        ("04-me", "account.read", Outcome::Success, None, bearer(ALICE), None),
        ("05-me-forged", "account.read", Outcome::Failure, Some("token_bad_signature"), claimed(BOB), None),
        ("06-me-expired", "account.read", Outcome::Failure, Some("token_expired"), claimed(ALICE), None),
        ("07-update-me-weak", "account.update", Outcome::Failure, Some("password_rejected"), bearer(ALICE), Some(("user", ALICE, "claim:sub@bearer"))),
        ("08-update-me-taken", "account.update", Outcome::Failure, Some("email_taken"), bearer(ALICE), Some(("user", ALICE, "claim:sub@bearer"))),
        ("09-register", "account.register", Outcome::Success, None, (Some(frank.as_str()), false, Some("response_body:/id")), Some(("user", frank.as_str(), "response_body:/id"))),
        ("10-register-taken", "account.register", Outcome::Failure, Some("email_taken"), (Some("frank@example.com"), false, Some("request_body:/email")), Some(("user", "frank@example.com", "request_body:/email"))),
        ("11-register-weak", "account.register", Outcome::Failure, Some("password_rejected"), (Some("gina@example.com"), false, Some("request_body:/email")), Some(("user", "gina@example.com", "request_body:/email"))),
        ("12-login-unverified", "auth.login", Outcome::Failure, Some("email_unverified"), typed("frank@example.com"), None),
        ("13-request-verify", "email.verify.request", Outcome::Success, None, nobody, Some(("email", "frank@example.com", "request_body:/email"))),
        ("14-verify-forged", "email.verify.complete", Outcome::Failure, Some("token_bad_signature"), (Some(frank.as_str()), false, Some("claimed:sub@request_body:/token")), Some(("user", frank.as_str(), "claimed:sub@request_body:/token"))),
        ("15-verify", "email.verify.complete", Outcome::Success, None, reset_tok(frank.as_str()), Some(("user", frank.as_str(), "claim:sub@request_body:/token"))),
        ("16-verify-again", "email.verify.complete", Outcome::Failure, Some("already_verified"), reset_tok(frank.as_str()), Some(("user", frank.as_str(), "claim:sub@request_body:/token"))),
        ("17-login-frank", "auth.login", Outcome::Success, None, issued(frank.as_str()), None),
        ("18-forgot", "password.reset.request", Outcome::Success, None, nobody, Some(("email", "alice@example.com", "request_body:/email"))),
        ("19-forgot-unknown", "password.reset.request", Outcome::Success, None, nobody, Some(("email", "mallory@example.com", "request_body:/email"))),
        ("20-reset-with-access-token", "password.reset.complete", Outcome::Failure, Some("token_bad_signature"), (Some(ALICE), true, Some(login_lineage.as_str())), Some(("user", ALICE, "claimed:sub@request_body:/token"))),
        ("21-reset-weak", "password.reset.complete", Outcome::Failure, Some("password_rejected"), reset_tok(ALICE), Some(("user", ALICE, "claim:sub@request_body:/token"))),
        ("22-reset", "password.reset.complete", Outcome::Success, None, reset_tok(ALICE), Some(("user", ALICE, "claim:sub@request_body:/token"))),
        ("23-reset-replayed", "password.reset.complete", Outcome::Failure, Some("invalid_reset_token"), reset_tok(ALICE), Some(("user", ALICE, "claim:sub@request_body:/token"))),
        ("24-login-old-pw", "auth.login", Outcome::Failure, Some("invalid_credentials"), typed("alice@example.com"), None),
        ("25-login-new-pw", "auth.login", Outcome::Success, None, issued(ALICE), None),
        ("26-admin-not-superuser", "account.delete", Outcome::Failure, Some("forbidden"), bearer(ALICE), user_t(BOB)),
        ("27-login-root", "auth.login", Outcome::Success, None, issued(ROOT), None),
        ("28-admin-read", "account.read", Outcome::Success, None, bearer(ROOT), user_t(BOB)),
        ("29-admin-deactivate", "account.deactivate", Outcome::Success, None, bearer(ROOT), user_t(BOB)),
        ("30-login-deactivated", "auth.login", Outcome::Failure, Some("invalid_credentials"), typed("bob@example.com"), None),
        ("31-admin-reactivate", "account.reactivate", Outcome::Success, None, bearer(ROOT), user_t(BOB)),
        ("32-admin-grant", "admin.role.grant", Outcome::Success, None, bearer(ROOT), user_t(frank.as_str())),
        ("33-admin-update", "account.update", Outcome::Success, None, bearer(ROOT), user_t(BOB)),
        ("34-admin-forged", "access.denied", Outcome::Failure, Some("token_bad_signature"), claimed(ROOT), user_t(BOB)),
        ("35-admin-no-token", "access.denied", Outcome::Failure, Some("missing_token"), nobody, user_t(BOB)),
        ("36-admin-unknown", "account.delete", Outcome::Failure, Some("not_found"), bearer(ROOT), user_t(NOBODY)),
        ("37-admin-delete", "account.delete", Outcome::Success, None, bearer(ROOT), user_t(BOB)),
        ("38-logout", "auth.logout", Outcome::Success, None, bearer(ALICE), None),
        ("39-logout-expired", "auth.logout", Outcome::Failure, Some("token_expired"), claimed(ALICE), None),
        ("40-me-after-logout", "account.read", Outcome::Success, None, bearer(ALICE), None),
    ];
    assert_eq!(want.len(), evs.len());
    for (id, ty, outcome, reason, who, tgt) in &want {
        let e = ev(id);
        assert_eq!(
            (e.event_type.as_str(), e.outcome, e.reason.as_deref()),
            (*ty, *outcome, *reason),
            "{}",
            summary(e)
        );
        assert_eq!(actor(e), *who, "{}", summary(e));
        assert_eq!(target(e), *tgt, "{}", summary(e));
        // One deployment, one app: a constant (or, by lineage, the issuing event's constant).
        let app_source = if *id == "20-reset-with-access-token" {
            login_lineage.as_str()
        } else {
            "const"
        };
        assert_eq!(app(e), Some((APP, false, app_source)), "{}", summary(e));
        let kind = if who.0.is_none() {
            ActorKind::Anonymous
        } else if id.contains("-admin-") {
            ActorKind::Admin
        } else {
            ActorKind::User
        };
        assert_eq!(e.actor.kind, kind, "{}", summary(e));
    }

    // Details: what was typed, why a password was refused, the mail a verification names.
    assert_eq!(
        ev("01-login-wrong-pw").details["username"],
        "alice@example.com"
    );
    assert_eq!(
        ev("01-login-wrong-pw").details["reason_text"],
        "LOGIN_BAD_CREDENTIALS"
    );
    for id in ["07-update-me-weak", "11-register-weak", "21-reset-weak"] {
        assert_eq!(
            ev(id).details["policy"],
            "Password should be at least 8 characters",
            "{}",
            summary(ev(id))
        );
    }
    assert_eq!(
        ev("33-admin-update").details["new_email"],
        "bob2@example.com"
    );
    assert_eq!(ev("32-admin-grant").details["role"], "superuser");
    let t = ev("15-verify").target.as_ref().unwrap();
    assert_eq!(t.display.as_deref(), Some("frank@example.com"));
    let t = ev("28-admin-read").target.as_ref().unwrap();
    assert_eq!(t.display.as_deref(), Some("bob@example.com"));
    assert_eq!(ev("34-admin-forged").http.status, Some(401));
    assert_eq!(ev("34-admin-forged").details["mode"], "enforce");

    // Tokens: the login's access token, verified; the reset token presented and verified with
    // the reset key; an access token at the reset endpoint does not verify there.
    let login = ev("25-login-new-pw");
    assert_eq!(login.tokens.len(), 1);
    let issued_tok = &login.tokens[0];
    assert_eq!(
        (
            issued_tok.role,
            issued_tok.kind.as_str(),
            issued_tok.verified,
            issued_tok.sub.as_deref()
        ),
        (TokenRole::Issued, "access", true, Some(ALICE))
    );
    let presented = &ev("22-reset").tokens;
    assert_eq!(presented.len(), 1, "only the body's token: bearer: false");
    assert_eq!(
        (
            presented[0].role,
            presented[0].verified,
            presented[0].sub.as_deref()
        ),
        (TokenRole::Presented, true, Some(ALICE))
    );
    assert_eq!(
        ev("20-reset-with-access-token").tokens[0]
            .invalid
            .as_deref(),
        Some("bad_signature")
    );
    // Logged out, then used again: the same token, by fingerprint, still accepted (a JWT
    // cannot be revoked) — the trail shows it.
    let fp = |id: &str| ev(id).tokens[0].fingerprint.clone();
    assert_eq!(fp("38-logout"), issued_tok.fingerprint);
    assert_eq!(fp("40-me-after-logout"), issued_tok.fingerprint);

    // --- no secret anywhere -------------------------------------------------------------------------
    let store = harness::store_bytes(&sc.db);
    let logs = harness::captured_logs();
    let exports = [ndjson.body.to_vec(), csv.body.to_vec()].concat();
    assert!(contains(&ndjson.body, "37-admin-delete") && contains(&csv.body, "37-admin-delete"));
    for secret in [
        JWT_SECRET,
        RESET_SECRET,
        VERIFY_SECRET,
        WRONG_KEY,
        FINGERPRINT_KEY,
        PASSWORD,
        WRONG_PASSWORD,
        NEW_PASSWORD,
        FRANK_PASSWORD,
        WEAK_PASSWORD,
        &alice1,
        &alice2,
        &frank1,
        &root,
        &forged,
        &forged_root,
        &expired,
        &verify_token,
        &forged_verify,
        &reset_token,
    ] {
        assert!(!contains(&store, secret), "{secret:.24}… reached the store");
        assert!(!logs.contains(secret), "{secret:.24}… reached the logs");
        assert!(
            !contains(&exports, secret),
            "{secret:.24}… reached an export"
        );
    }
    for jwt in [&alice1, &reset_token, &verify_token] {
        let sig = jwt.rsplit('.').next().unwrap();
        assert!(!contains(&store, sig) && !logs.contains(sig) && !contains(&exports, sig));
    }
    drop(server);
    eprintln!("fastapi-users end to end: {:?}", started.elapsed());
}
