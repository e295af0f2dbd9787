//! config/presets/dj-rest-auth.yaml in front of a real JSON auth API: Django REST framework +
//! djangorestframework-simplejwt + dj-rest-auth (+ django-allauth), installed from PyPI at pinned
//! versions under tests/thirdparty/drf/py-deps and started here as a child process. Its JWTs
//! name the user in `user_id` (not `sub`) and the tenant in a `tenant` claim the fixture's token
//! serializer adds: the key set's `subject_claim` / `app_claim` must make forged and expired
//! tokens still name who they claim to be (unverified), and never satisfy a requirement.
//!
//! Scenario (39 requests through the sidecar, 00-38): logins that succeed and fail, refresh
//! with rotation and reuse of the rotated token, expired access tokens (one minted with the
//! shared secret, one issued by the server through the sidecar and left to expire: lineage),
//! forged and tampered tokens, cross-tenant requests (observed and enforced), revocation,
//! logout, password reset, registration and e-mail verification, a staff-only admin action
//! that succeeds and one that Django refuses. Every event's type, outcome, reason, actor, app
//! and target is checked; then the store (with its WAL), the captured logs and both exports are
//! scanned for every secret used. A repeated X-App-Id is refused at the edge.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use authtrail::event::{ActorKind, AuditEvent, Outcome, TokenRole};
use base64::Engine;
use bytes::Bytes;
use hyper::Method;
use serde_json::{json, Value};
use support::admin::{self, TOKEN_ALL};
use support::events::{actor, app, target};
use support::harness::{self, contains, post_json, send, Reply};
use support::thirdparty::{self, Server};

/// The HS256 signing key the server and authtrail share.
const JWT_SECRET: &str = "drf-e2e-signing-key-5f0c2a9e81d4b7";
/// Key of the forged tokens: not the server's.
const WRONG_KEY: &str = "attacker-chosen-key-77c1e09b2f";
const FINGERPRINT_KEY: &str = "drf-e2e-fingerprint-key-3e8a";
/// Every fixture user's password.
const PASSWORD: &str = "Fixture-Pass-9q2Lm7";
const WRONG_PASSWORD: &str = "Wrong-Guess-4kT8pz";
const NEW_PASSWORD: &str = "Reset-New-Pass-6hV3wx";
const FRANK_PASSWORD: &str = "Frank-Signup-Pass-2bN5rc";

// Fixture user ids (tests/thirdparty/drf/server.py creates them in this order).
const ALICE: &str = "1"; // acme
const BOB: &str = "2"; // globex
const CAROL: &str = "3"; // acme, staff
const DAVE: &str = "4"; // acme
const GINA: &str = "6"; // globex; her login hands out 1-second access tokens
const FRANK: &str = "7"; // registers during the test (acme)

fn py_deps() -> PathBuf {
    thirdparty::dir("drf").join("py-deps")
}

/// A request through the sidecar, labelled by its request id.
struct Client<'a> {
    sc: &'a harness::Sidecar,
}

impl Client<'_> {
    async fn post(&self, id: &str, path: &str, body: Value, extra: &[(&str, &str)]) -> Reply {
        let mut h = vec![("x-request-id", id)];
        h.extend_from_slice(extra);
        post_json(&self.sc.url(path), body, &h).await
    }

    async fn get(&self, id: &str, path: &str, extra: &[(&str, &str)]) -> Reply {
        let mut h = vec![("x-request-id", id)];
        h.extend_from_slice(extra);
        send(Method::GET, &self.sc.url(path), &h, Bytes::new())
            .await
            .unwrap()
    }
}

fn field(r: &Reply, name: &str) -> String {
    r.json()[name]
        .as_str()
        .unwrap_or_else(|| {
            panic!(
                "no {name} in {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )
        })
        .to_string()
}

fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sign(claims: &Value, key: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

/// Wait (bounded) for a mail in `dir` matching `re`; the first capture groups.
async fn mail_link(dir: &Path, re: &str) -> Vec<String> {
    let re = regex::Regex::new(re).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
            if let Some(c) = re.captures(&text) {
                return c
                    .iter()
                    .skip(1)
                    .map(|m| m.unwrap().as_str().to_string())
                    .collect();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no mail matching {re} in {dir:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// (type, outcome, reason) of an event.
fn what(e: &AuditEvent) -> (&str, Outcome, Option<&str>) {
    (e.event_type.as_str(), e.outcome, e.reason.as_deref())
}

fn summary(e: &AuditEvent) -> String {
    format!(
        "{:<22} {:<24} {:<8} {:<26} actor={:?} app={:?} conflict={} target={:?} tokens={:?} details={}",
        e.http.request_id,
        e.event_type,
        e.outcome.as_str(),
        e.reason.as_deref().unwrap_or("-"),
        actor(e),
        app(e),
        e.app_conflict.is_some(),
        target(e),
        e.tokens
            .iter()
            .map(|t| format!(
                "{:?}/{}/{}/v={}/{:?}/sub={:?}/app={:?}",
                t.role, t.kind, t.source, t.verified, t.invalid, t.sub, t.app
            ))
            .collect::<Vec<_>>(),
        Value::Object(e.details.clone())
    )
}

const ACME: &[(&str, &str)] = &[("x-app-id", "acme")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drf_simplejwt_dj_rest_auth_end_to_end() {
    let deps = py_deps();
    if thirdparty::skip_unless_installed(
        "drf",
        &[
            deps.join("django-5.2.19.dist-info"),
            deps.join("djangorestframework_simplejwt-5.5.1.dist-info"),
            deps.join("dj_rest_auth-7.2.0.dist-info"),
            deps.join("django_allauth-65.22.1.dist-info"),
        ],
    )
    .is_some()
    {
        return;
    }
    let started = Instant::now();

    // The Django server, on a fresh database in a temp dir.
    let data = tempfile::tempdir().unwrap();
    let mail_dir = data.path().join("mail");
    let port = thirdparty::free_port();
    let mut cmd = Command::new("python3");
    cmd.arg(thirdparty::dir("drf").join("server.py"))
        .arg(data.path())
        .arg(port.to_string())
        .env("DRF_SIGNING_KEY", JWT_SECRET)
        .env("DRF_PASSWORD", PASSWORD)
        .env("DRF_SHORT_LIVED", "gina")
        .env("DRF_SHORT_LIVED_SECONDS", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let django = Server::start("drf", cmd, port, Duration::from_secs(30));

    // The sidecar, on config/presets/dj-rest-auth.yaml plus admin credentials for the exports.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("drf.db");
    std::env::set_var("DRF_UPSTREAM", format!("http://{}", django.addr));
    std::env::set_var("AUTHTRAIL_STORE", format!("sqlite://{}", db.display()));
    std::env::set_var("FINGERPRINT_KEY", FINGERPRINT_KEY);
    std::env::set_var("DRF_JWT_SECRET", JWT_SECRET);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/presets/dj-rest-auth.yaml"
    );
    let yaml = std::fs::read_to_string(path).unwrap() + &admin::credentials_yaml();
    let cfg = authtrail::config::load_str(&yaml, path).unwrap_or_else(|e| panic!("{e}"));
    let mut sc = harness::start_config(cfg, db, dir).await;
    let c = Client { sc: &sc };
    let login = |u: &str, p: &str| json!({ "username": u, "password": p });

    // --- logins -------------------------------------------------------------------------
    // gina's access token expires in a second: presented at the end, it is a real expired
    // token the trail saw issued (lineage).
    let r = c
        .post(
            "00-login-gina",
            "/auth/login/",
            login("gina", PASSWORD),
            &[("x-app-id", "globex")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", django.output());
    let (access_gina, refresh_gina) = (field(&r, "access"), field(&r, "refresh"));
    let gina_exp = claims_of(&access_gina)["exp"].as_i64().unwrap();
    assert!(gina_exp <= now() + 1, "short-lived");
    let r = c
        .post("01-login", "/auth/login/", login("alice", PASSWORD), ACME)
        .await;
    assert_eq!(r.status, 200, "{}", django.output());
    let (access1, refresh1) = (field(&r, "access"), field(&r, "refresh"));
    assert_eq!(claims_of(&access1)["user_id"], ALICE);
    assert_eq!(claims_of(&access1)["tenant"], "acme");
    let r = c
        .post(
            "02-login-wrong-pw",
            "/auth/login/",
            login("alice", WRONG_PASSWORD),
            ACME,
        )
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .post(
            "03-login-unknown",
            "/auth/login/",
            login("mallory", WRONG_PASSWORD),
            ACME,
        )
        .await;
    assert_eq!(r.status, 400);

    // --- refresh: rotation, reuse of the rotated token ------------------------------------
    let r = c
        .post(
            "04-refresh",
            "/auth/token/refresh/",
            json!({ "refresh": refresh1 }),
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    let (access2, refresh2) = (field(&r, "access"), field(&r, "refresh"));
    assert_ne!(refresh2, refresh1, "rotated");
    let r = c
        .post(
            "05-refresh-reuse",
            "/auth/token/refresh/",
            json!({ "refresh": refresh1 }),
            &[],
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["detail"], "Token is blacklisted");

    // --- GET /auth/user: valid, other tenant (observed), expired, forged -------------------
    let bearer2 = format!("Bearer {access2}");
    let r = c
        .get(
            "06-me",
            "/auth/user/",
            &[("authorization", &bearer2), ("x-app-id", "acme")],
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), field(&r, "username")),
        (200, "alice".into())
    );
    let r = c
        .get(
            "07-me-other-tenant",
            "/auth/user/",
            &[("authorization", &bearer2), ("x-app-id", "globex")],
        )
        .await;
    assert_eq!(r.status, 200, "observe mode forwards it");

    // An access token of alice's, exactly as simplejwt makes them, but expired ten minutes ago.
    let mut claims = claims_of(&access2);
    claims["iat"] = json!(now() - 900);
    claims["exp"] = json!(now() - 600);
    claims["jti"] = json!("0e0f0e0f0e0f0e0f0e0f0e0f0e0f0e0f");
    let expired = sign(&claims, JWT_SECRET);
    let bearer_expired = format!("Bearer {expired}");
    let r = c
        .get(
            "08-me-expired",
            "/auth/user/",
            &[("authorization", &bearer_expired), ("x-app-id", "acme")],
        )
        .await;
    assert_eq!(r.status, 401, "Django refuses it too");

    // A token claiming to be carol (staff, acme), signed with a key that is not the server's.
    let mut claims = claims_of(&access2);
    claims["user_id"] = json!(CAROL);
    claims["jti"] = json!("f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0");
    let forged = sign(&claims, WRONG_KEY);
    let bearer_forged = format!("Bearer {forged}");
    let r = c
        .get(
            "09-me-forged",
            "/auth/user/",
            &[("authorization", &bearer_forged), ("x-app-id", "acme")],
        )
        .await;
    assert_eq!(r.status, 401);

    // --- the staff-only admin action (enforced tenancy) --------------------------------------
    let r = c
        .post(
            "10-login-carol",
            "/auth/login/",
            login("carol", PASSWORD),
            ACME,
        )
        .await;
    assert_eq!(r.status, 200);
    let (access_carol, refresh_carol) = (field(&r, "access"), field(&r, "refresh"));
    let bearer_carol = format!("Bearer {access_carol}");
    let deactivate = |id: &str| format!("/api/admin/users/{id}/deactivate/");
    let r = c
        .post(
            "11-admin-other-tenant",
            &deactivate(BOB),
            json!({}),
            &[("authorization", &bearer_carol), ("x-app-id", "globex")],
        )
        .await;
    assert_eq!(r.status, 403, "refused at the edge");
    let r = c
        .post(
            "12-admin-forged",
            &deactivate(BOB),
            json!({}),
            &[("authorization", &bearer_forged), ("x-app-id", "acme")],
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(r.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
    let r = c
        .post(
            "13-admin-expired",
            &deactivate(BOB),
            json!({}),
            &[("authorization", &bearer_expired), ("x-app-id", "acme")],
        )
        .await;
    assert_eq!(r.status, 401);
    let r = c
        .post(
            "14-admin-forbidden",
            &deactivate(DAVE),
            json!({}),
            &[("authorization", &bearer2), ("x-app-id", "acme")],
        )
        .await;
    assert_eq!(r.status, 403, "Django: alice is not staff");
    assert_eq!(
        r.json()["detail"],
        "You do not have permission to perform this action."
    );
    let r = c
        .post(
            "15-admin-ok",
            &deactivate(DAVE),
            json!({}),
            &[("authorization", &bearer_carol), ("x-app-id", "acme")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["is_active"], false);
    // bob was never deactivated: none of the refused requests reached Django.
    let r = c
        .post(
            "16-login-bob",
            "/auth/login/",
            login("bob", PASSWORD),
            &[("x-app-id", "globex")],
        )
        .await;
    assert_eq!(r.status, 200);
    let (access_bob, refresh_bob) = (field(&r, "access"), field(&r, "refresh"));

    // --- revocation, logout -------------------------------------------------------------------
    let r = c
        .post(
            "17-revoke",
            "/api/token/blacklist/",
            json!({ "refresh": refresh2 }),
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    let r = c
        .post(
            "18-refresh-revoked",
            "/auth/token/refresh/",
            json!({ "refresh": refresh2 }),
            &[],
        )
        .await;
    assert_eq!(r.status, 401);
    let r = c
        .post(
            "19-logout",
            "/auth/logout/",
            json!({ "refresh": refresh_carol }),
            &[("authorization", &bearer_carol)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = c
        .post(
            "20-refresh-logged-out",
            "/auth/token/refresh/",
            json!({ "refresh": refresh_carol }),
            &[],
        )
        .await;
    assert_eq!(r.status, 401);

    // --- password reset ---------------------------------------------------------------------
    let r = c
        .post(
            "21-reset-request",
            "/auth/password/reset/",
            json!({ "email": "alice@acme.test" }),
            ACME,
        )
        .await;
    assert_eq!(r.status, 200);
    let link = mail_link(
        &mail_dir,
        r"/password-reset/confirm/([0-9a-z]+)/([0-9A-Za-z-]+)/",
    )
    .await;
    let (uid, reset_token) = (link[0].clone(), link[1].clone());
    assert_eq!(uid, ALICE, "base 36 of 1");
    let confirm = |token: &str| json!({ "uid": uid, "token": token, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD });
    let bogus_reset_token = "cz0abc-0123456789abcdef0123456789abcdef";
    let r = c
        .post(
            "22-reset-confirm-bad",
            "/auth/password/reset/confirm/",
            confirm(bogus_reset_token),
            ACME,
        )
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .post(
            "23-reset-confirm",
            "/auth/password/reset/confirm/",
            confirm(&reset_token),
            ACME,
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = c
        .post(
            "24-login-old-pw",
            "/auth/login/",
            login("alice", PASSWORD),
            ACME,
        )
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .post(
            "25-login-new-pw",
            "/auth/login/",
            login("alice", NEW_PASSWORD),
            ACME,
        )
        .await;
    assert_eq!(r.status, 200);
    let (access3, refresh3) = (field(&r, "access"), field(&r, "refresh"));

    // --- registration, e-mail verification ----------------------------------------------------
    let signup = |email: &str| json!({ "username": "frank", "email": email, "password1": FRANK_PASSWORD, "password2": FRANK_PASSWORD });
    let r = c
        .post(
            "26-register",
            "/auth/registration/",
            signup("frank@acme.test"),
            ACME,
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = c
        .post(
            "27-register-taken",
            "/auth/registration/",
            signup("frank2@acme.test"),
            ACME,
        )
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .post(
            "28-login-unverified",
            "/auth/login/",
            login("frank", FRANK_PASSWORD),
            ACME,
        )
        .await;
    assert_eq!(r.status, 400);
    let key = mail_link(&mail_dir, r"/account-confirm-email/([-:\w]+)/").await[0].clone();
    let bogus_key = "MQ:1aaaaa:bogusbogusbogusbogusbogusbogusbogusbogus0";
    let r = c
        .post(
            "29-verify-bad",
            "/auth/registration/verify-email/",
            json!({ "key": bogus_key }),
            ACME,
        )
        .await;
    assert_eq!(r.status, 404);
    let r = c
        .post(
            "30-verify",
            "/auth/registration/verify-email/",
            json!({ "key": key }),
            ACME,
        )
        .await;
    assert_eq!(r.status, 200);
    let r = c
        .post(
            "31-login-frank",
            "/auth/login/",
            login("frank", FRANK_PASSWORD),
            ACME,
        )
        .await;
    assert_eq!(r.status, 200);
    let (access_frank, refresh_frank) = (field(&r, "access"), field(&r, "refresh"));

    // --- odd tokens at the edges --------------------------------------------------------------
    let bearer_refresh3 = format!("Bearer {refresh3}");
    let r = c
        .post(
            "32-admin-refresh-as-bearer",
            &deactivate(BOB),
            json!({}),
            &[("authorization", &bearer_refresh3), ("x-app-id", "acme")],
        )
        .await;
    assert_eq!(r.status, 403, "a refresh token is no access token");
    let r = c
        .post("33-admin-no-token", &deactivate(BOB), json!({}), ACME)
        .await;
    assert_eq!(r.status, 401);
    // Logout with an expired access token: DRF refuses before the view runs, so the refresh
    // token is not blacklisted and still refreshes.
    let r = c
        .post(
            "34-logout-expired",
            "/auth/logout/",
            json!({ "refresh": refresh3 }),
            &[("authorization", &bearer_expired)],
        )
        .await;
    assert_eq!(r.status, 401);
    let r = c
        .post(
            "35-refresh-after-failed-logout",
            "/auth/token/refresh/",
            json!({ "refresh": refresh3 }),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "the failed logout revoked nothing");
    let (access4, refresh4) = (field(&r, "access"), field(&r, "refresh"));
    // alice's refresh token with its payload edited to name bob (globex); the signature no
    // longer matches.
    let mut parts: Vec<String> = refresh3.split('.').map(String::from).collect();
    let mut claims = claims_of(&refresh3);
    claims["user_id"] = json!(BOB);
    claims["tenant"] = json!("globex");
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    let tampered = parts.join(".");
    let r = c
        .post(
            "36-refresh-tampered",
            "/auth/token/refresh/",
            json!({ "refresh": tampered }),
            &[],
        )
        .await;
    assert_eq!(r.status, 401);

    // gina's token, expired for Django (no leeway) and for authtrail (leeway 2s): wait for
    // that (bounded: it was issued a few seconds ago).
    while now() < gina_exp + 3 {
        assert!(now() < gina_exp + 10);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bearer_gina = format!("Bearer {access_gina}");
    let r = c
        .get(
            "37-me-expired-issued",
            "/auth/user/",
            &[("authorization", &bearer_gina), ("x-app-id", "globex")],
        )
        .await;
    assert_eq!(r.status, 401, "Django: expired");

    // carol's acme token with X-App-Id given twice, acme then globex, against globex's bob.
    let r = c
        .post(
            "38-admin-app-id-twice",
            &deactivate(BOB),
            json!({}),
            &[
                ("authorization", &bearer_carol),
                ("x-app-id", "acme"),
                ("x-app-id", "globex"),
            ],
        )
        .await;
    // The requirement's `app_matches: { header: X-App-Id }` checks one X-App-Id; Django would
    // read both ("acme,globex"). Like a credential given twice, the repeated header is refused
    // before Django sees it.
    assert_eq!(r.status, 400);

    // 39 requests; 07, 08, 09 and 37 add an access.would_deny each; the two exports below add
    // their audit.export events.
    let evs = sc.wait_events(43).await;
    let dump: String = evs.iter().map(|e| summary(e) + "\n").collect();
    eprintln!("{dump}");
    let ev = |id: &str, ty: &str| -> &AuditEvent {
        evs.iter()
            .find(|e| e.http.request_id == id && e.event_type == ty)
            .unwrap_or_else(|| panic!("no {ty} event for {id}:\n{dump}"))
    };

    // Exports, while the admin listener runs.
    let ndjson = admin::get(&sc, "/v1/export?format=ndjson", Some(TOKEN_ALL)).await;
    assert_eq!(ndjson.status, 200);
    let csv = admin::get(&sc, "/v1/export?format=csv", Some(TOKEN_ALL)).await;
    assert_eq!(csv.status, 200);
    sc.stop().await;

    // --- every event ------------------------------------------------------------------------
    let verified_actor = |id| (Some(id), true, Some("claim:user_id@response_body:/access"));
    let verified_app = |v| Some((v, true, "claim:tenant@response_body:/access"));
    let header_app = |v| Some((v, false, "header:x-app-id"));
    let bearer_actor = |id| (Some(id), true, Some("claim:user_id@bearer"));
    let bearer_app = |v| Some((v, true, "claim:tenant@bearer"));
    let claimed_actor = |id| (Some(id), false, Some("claimed:user_id@bearer"));
    let claimed_app = |v| Some((v, false, "claimed:tenant@bearer"));
    let refresh_actor = |id| (Some(id), true, Some("claim:user_id@request_body:/refresh"));
    let refresh_app = |v| Some((v, true, "claim:tenant@request_body:/refresh"));

    // 01: login; the verified user_id and tenant of the access token it issued.
    let e = ev("01-login", "auth.login");
    assert_eq!(what(e), ("auth.login", Outcome::Success, None));
    assert_eq!(actor(e), verified_actor(ALICE));
    assert_eq!(e.actor.kind, ActorKind::User);
    assert_eq!(app(e), verified_app("acme"));
    assert_eq!(e.app_conflict, None, "X-App-Id agrees with the token");
    assert_eq!(e.details["username"], "alice");
    let issued: Vec<_> = e
        .tokens
        .iter()
        .map(|t| {
            (
                t.role,
                t.kind.as_str(),
                t.verified,
                t.sub.as_deref(),
                t.app.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        issued,
        [
            (TokenRole::Issued, "access", true, Some(ALICE), Some("acme")),
            (
                TokenRole::Issued,
                "refresh",
                true,
                Some(ALICE),
                Some("acme")
            )
        ]
    );
    let login_refresh_fp = e.tokens[1].fingerprint.clone();

    // 02, 03: failed logins name the username typed, unverified; the app the client said.
    for (id, who) in [
        ("02-login-wrong-pw", "alice"),
        ("03-login-unknown", "mallory"),
    ] {
        let e = ev(id, "auth.login");
        assert_eq!(
            what(e),
            ("auth.login", Outcome::Failure, Some("invalid_credentials"))
        );
        assert_eq!(actor(e), (Some(who), false, Some("request_body:/username")));
        assert_eq!(app(e), header_app("acme"));
        assert_eq!(
            e.details["reason_text"],
            "Unable to log in with provided credentials."
        );
        assert!(e.tokens.is_empty());
    }

    // 04: refresh: presented refresh → rotated pair, all alice's.
    let e = ev("04-refresh", "token.refresh");
    assert_eq!(what(e), ("token.refresh", Outcome::Success, None));
    assert_eq!(actor(e), verified_actor(ALICE));
    assert_eq!(app(e), verified_app("acme"));
    let presented = e
        .tokens
        .iter()
        .find(|t| t.role == TokenRole::Presented)
        .unwrap();
    assert_eq!(
        presented.fingerprint, login_refresh_fp,
        "the login's refresh token"
    );
    assert_eq!(
        e.tokens
            .iter()
            .filter(|t| t.role == TokenRole::Issued)
            .count(),
        2
    );
    let rotated_fp = e
        .tokens
        .iter()
        .find(|t| t.role == TokenRole::Issued && t.kind == "refresh")
        .unwrap()
        .fingerprint
        .clone();

    // 05: the rotated-out refresh token again: refused by simplejwt (blacklisted), and still
    // names alice — the token is well signed, so its user_id is read verified.
    let e = ev("05-refresh-reuse", "token.refresh");
    assert_eq!(
        what(e),
        ("token.refresh", Outcome::Failure, Some("token_revoked"))
    );
    assert_eq!(actor(e), refresh_actor(ALICE));
    assert_eq!(app(e), refresh_app("acme"));
    assert_eq!(e.details["reason_text"], "Token is blacklisted");
    assert_eq!(e.tokens.len(), 1);
    assert_eq!(e.tokens[0].fingerprint, login_refresh_fp);

    // 06: GET /auth/user with a valid token of the tenant it names.
    let e = ev("06-me", "account.read");
    assert_eq!(what(e), ("account.read", Outcome::Success, None));
    assert_eq!(actor(e), bearer_actor(ALICE));
    assert_eq!(app(e), bearer_app("acme"));
    assert_eq!(e.app_conflict, None);

    // 07: alice's acme token with X-App-Id: globex. Observed: forwarded, and recorded twice.
    let e = ev("07-me-other-tenant", "access.would_deny");
    assert_eq!(
        what(e),
        ("access.would_deny", Outcome::Failure, Some("app_mismatch"))
    );
    assert_eq!(actor(e), bearer_actor(ALICE));
    assert_eq!(app(e), bearer_app("acme"));
    assert_eq!(
        (
            e.details["requirement"].as_str(),
            e.details["mode"].as_str()
        ),
        (Some("same-tenant"), Some("observe"))
    );
    let e = ev("07-me-other-tenant", "account.read");
    assert_eq!(what(e), ("account.read", Outcome::Success, None));
    assert_eq!(actor(e), bearer_actor(ALICE));
    assert_eq!(app(e), bearer_app("acme"), "the verified claim wins");
    let conflict: Vec<_> = e
        .app_conflict
        .as_ref()
        .expect("app_conflict")
        .iter()
        .map(|a| (a.value.as_str(), a.verified))
        .collect();
    assert_eq!(conflict, [("acme", true), ("globex", false)]);

    // 08: expired: who it claims to be, unverified; the token record says why.
    for ty in ["access.would_deny", "account.read"] {
        let e = ev("08-me-expired", ty);
        assert_eq!(what(e), (ty, Outcome::Failure, Some("token_expired")));
        assert_eq!(actor(e), claimed_actor(ALICE));
        assert_eq!(app(e), claimed_app("acme"));
        let t = &e.tokens[0];
        assert_eq!(
            (
                t.role,
                t.verified,
                t.invalid.as_deref(),
                t.sub.as_deref(),
                t.app.as_deref()
            ),
            (
                TokenRole::Presented,
                false,
                Some("expired"),
                Some(ALICE),
                Some("acme")
            )
        );
    }

    // 09: forged (wrong key) claiming carol: recorded as claimed, never verified.
    for ty in ["access.would_deny", "account.read"] {
        let e = ev("09-me-forged", ty);
        assert_eq!(what(e), (ty, Outcome::Failure, Some("token_bad_signature")));
        assert_eq!(actor(e), claimed_actor(CAROL));
        assert_eq!(app(e), claimed_app("acme"));
        let t = &e.tokens[0];
        assert_eq!(
            (t.verified, t.invalid.as_deref(), t.sub.as_deref()),
            (false, Some("bad_signature"), Some(CAROL))
        );
    }

    // 10: carol's login.
    let e = ev("10-login-carol", "auth.login");
    assert_eq!(what(e), ("auth.login", Outcome::Success, None));
    assert_eq!(actor(e), verified_actor(CAROL));
    assert_eq!(app(e), verified_app("acme"));

    // 11: carol (acme staff) against globex: denied at the edge, app_mismatch.
    let e = ev("11-admin-other-tenant", "access.denied");
    assert_eq!(
        what(e),
        ("access.denied", Outcome::Failure, Some("app_mismatch"))
    );
    assert_eq!(actor(e), bearer_actor(CAROL));
    assert_eq!(e.actor.kind, ActorKind::Admin);
    assert_eq!(app(e), bearer_app("acme"));
    assert!(e.app_conflict.is_some());
    assert_eq!(target(e), Some(("user", BOB, "path:user_id")));
    assert_eq!(e.http.status, Some(403));
    assert_eq!(e.details["mode"], "enforce");

    // 12, 13: forged and expired tokens at the enforced route: 401, who they claim, unverified.
    for (id, who, why) in [
        ("12-admin-forged", CAROL, "token_bad_signature"),
        ("13-admin-expired", ALICE, "token_expired"),
    ] {
        let e = ev(id, "access.denied");
        assert_eq!(what(e), ("access.denied", Outcome::Failure, Some(why)));
        assert_eq!(actor(e), claimed_actor(who));
        assert_eq!(app(e), claimed_app("acme"));
        assert_eq!(target(e), Some(("user", BOB, "path:user_id")));
        assert_eq!(e.http.status, Some(401));
    }

    // 14: alice is no staff: Django refuses (403).
    let e = ev("14-admin-forbidden", "account.deactivate");
    assert_eq!(
        what(e),
        ("account.deactivate", Outcome::Failure, Some("forbidden"))
    );
    assert_eq!(actor(e), bearer_actor(ALICE));
    assert_eq!(app(e), bearer_app("acme"));
    assert_eq!(target(e), Some(("user", DAVE, "path:user_id")));

    // 15: carol deactivates dave.
    let e = ev("15-admin-ok", "account.deactivate");
    assert_eq!(what(e), ("account.deactivate", Outcome::Success, None));
    assert_eq!(actor(e), bearer_actor(CAROL));
    assert_eq!(e.actor.kind, ActorKind::Admin);
    assert_eq!(app(e), bearer_app("acme"));
    assert_eq!(target(e), Some(("user", DAVE, "path:user_id")));
    assert_eq!(e.target.as_ref().unwrap().display.as_deref(), Some("dave"));
    let denied_or_refused: Vec<_> = evs
        .iter()
        .filter(|e| e.http.route == "deactivate-user")
        .map(|e| (e.http.request_id.as_str(), e.event_type.as_str()))
        .collect();
    assert_eq!(
        denied_or_refused,
        [
            ("11-admin-other-tenant", "access.denied"),
            ("12-admin-forged", "access.denied"),
            ("13-admin-expired", "access.denied"),
            ("14-admin-forbidden", "account.deactivate"),
            ("15-admin-ok", "account.deactivate"),
            ("32-admin-refresh-as-bearer", "access.denied"),
            ("33-admin-no-token", "access.denied"),
            ("38-admin-app-id-twice", "request.rejected"),
        ],
        "a denied request has no route event: Django never saw it"
    );

    // 16: bob, still active.
    let e = ev("16-login-bob", "auth.login");
    assert_eq!(what(e), ("auth.login", Outcome::Success, None));
    assert_eq!(actor(e), verified_actor(BOB));
    assert_eq!(app(e), verified_app("globex"));

    // 17: revoke alice's rotated refresh token (no bearer): the token names the actor and
    // the target.
    let e = ev("17-revoke", "token.revoke");
    assert_eq!(what(e), ("token.revoke", Outcome::Success, None));
    assert_eq!(actor(e), refresh_actor(ALICE));
    assert_eq!(app(e), refresh_app("acme"));
    assert_eq!(
        target(e),
        Some(("user", ALICE, "claim:user_id@request_body:/refresh"))
    );
    assert_eq!(e.tokens[0].fingerprint, rotated_fp);

    // 18: the revoked token at refresh.
    let e = ev("18-refresh-revoked", "token.refresh");
    assert_eq!(
        what(e),
        ("token.refresh", Outcome::Failure, Some("token_revoked"))
    );
    assert_eq!(actor(e), refresh_actor(ALICE));
    assert_eq!(app(e), refresh_app("acme"));

    // 19, 20: carol logs out (blacklisting her refresh token), which then fails.
    let e = ev("19-logout", "auth.logout");
    assert_eq!(what(e), ("auth.logout", Outcome::Success, None));
    assert_eq!(actor(e), bearer_actor(CAROL));
    assert_eq!(app(e), bearer_app("acme"));
    let e = ev("20-refresh-logged-out", "token.refresh");
    assert_eq!(
        what(e),
        ("token.refresh", Outcome::Failure, Some("token_revoked"))
    );
    assert_eq!(actor(e), refresh_actor(CAROL));
    assert_eq!(app(e), refresh_app("acme"));

    // 21-23: password reset: anonymous requests, the account as target.
    let e = ev("21-reset-request", "password.reset_request");
    assert_eq!(what(e), ("password.reset_request", Outcome::Success, None));
    assert_eq!(actor(e), (None, false, None));
    assert_eq!(e.actor.kind, ActorKind::Anonymous);
    assert_eq!(app(e), header_app("acme"));
    assert_eq!(
        target(e),
        Some(("user", "alice@acme.test", "request_body:/email"))
    );
    let e = ev("22-reset-confirm-bad", "password.reset");
    assert_eq!(
        what(e),
        (
            "password.reset",
            Outcome::Failure,
            Some("invalid_reset_token")
        )
    );
    assert_eq!(actor(e), (None, false, None));
    assert_eq!(app(e), header_app("acme"));
    assert_eq!(target(e), Some(("user", ALICE, "request_body:/uid")));
    let e = ev("23-reset-confirm", "password.reset");
    assert_eq!(what(e), ("password.reset", Outcome::Success, None));
    assert_eq!(actor(e), (None, false, None));
    assert_eq!(target(e), Some(("user", ALICE, "request_body:/uid")));

    // 24, 25: the old password no longer works, the new one does.
    let e = ev("24-login-old-pw", "auth.login");
    assert_eq!(
        what(e),
        ("auth.login", Outcome::Failure, Some("invalid_credentials"))
    );
    assert_eq!(
        actor(e),
        (Some("alice"), false, Some("request_body:/username"))
    );
    let e = ev("25-login-new-pw", "auth.login");
    assert_eq!(what(e), ("auth.login", Outcome::Success, None));
    assert_eq!(actor(e), verified_actor(ALICE));
    assert_eq!(app(e), verified_app("acme"));

    // 26-31: registration, a taken username, login before and after verification.
    let e = ev("26-register", "account.register");
    assert_eq!(what(e), ("account.register", Outcome::Success, None));
    assert_eq!(
        actor(e),
        (Some("frank"), false, Some("request_body:/username"))
    );
    assert_eq!(app(e), header_app("acme"));
    assert_eq!(target(e), Some(("user", "frank", "request_body:/username")));
    assert_eq!(
        e.target.as_ref().unwrap().display.as_deref(),
        Some("frank@acme.test")
    );
    let e = ev("27-register-taken", "account.register");
    assert_eq!(
        what(e),
        ("account.register", Outcome::Failure, Some("username_taken"))
    );
    assert_eq!(target(e), Some(("user", "frank", "request_body:/username")));
    let e = ev("28-login-unverified", "auth.login");
    assert_eq!(
        what(e),
        ("auth.login", Outcome::Failure, Some("email_unverified"))
    );
    assert_eq!(
        actor(e),
        (Some("frank"), false, Some("request_body:/username"))
    );
    assert_eq!(app(e), header_app("acme"));
    let e = ev("29-verify-bad", "email.verify");
    assert_eq!(
        what(e),
        (
            "email.verify",
            Outcome::Failure,
            Some("invalid_verification_key")
        )
    );
    assert_eq!(actor(e), (None, false, None));
    assert_eq!(app(e), header_app("acme"));
    let e = ev("30-verify", "email.verify");
    assert_eq!(what(e), ("email.verify", Outcome::Success, None));
    assert_eq!(actor(e), (None, false, None));
    assert_eq!(app(e), header_app("acme"));
    let e = ev("31-login-frank", "auth.login");
    assert_eq!(what(e), ("auth.login", Outcome::Success, None));
    assert_eq!(actor(e), verified_actor(FRANK));
    assert_eq!(app(e), verified_app("acme"));

    // 32: a refresh token as bearer: well signed (the actor is verified) but not an access
    // token: claim_mismatch, at the edge.
    let e = ev("32-admin-refresh-as-bearer", "access.denied");
    assert_eq!(
        what(e),
        (
            "access.denied",
            Outcome::Failure,
            Some("claim_mismatch:token_type")
        )
    );
    assert_eq!(actor(e), bearer_actor(ALICE));
    assert_eq!(app(e), bearer_app("acme"));
    assert_eq!(target(e), Some(("user", BOB, "path:user_id")));
    assert_eq!(e.http.status, Some(403));
    // 33: no token at all: no one, the app as the client said it.
    let e = ev("33-admin-no-token", "access.denied");
    assert_eq!(
        what(e),
        ("access.denied", Outcome::Failure, Some("missing_token"))
    );
    assert_eq!(actor(e), (None, false, None));
    assert_eq!(app(e), header_app("acme"));
    assert_eq!(target(e), Some(("user", BOB, "path:user_id")));
    assert_eq!(e.http.status, Some(401));
    // 34: logout with an expired bearer: failure token_expired; the refresh token in the body
    // (verified) names alice over the bearer's claim.
    let e = ev("34-logout-expired", "auth.logout");
    assert_eq!(
        what(e),
        ("auth.logout", Outcome::Failure, Some("token_expired"))
    );
    assert_eq!(actor(e), refresh_actor(ALICE));
    assert_eq!(app(e), refresh_app("acme"));
    let e = ev("35-refresh-after-failed-logout", "token.refresh");
    assert_eq!(what(e), ("token.refresh", Outcome::Success, None));
    assert_eq!(actor(e), verified_actor(ALICE));
    assert_eq!(app(e), verified_app("acme"));
    // 36: the tampered refresh token claims bob of globex: recorded so, unverified, with the
    // token's own reason; the trail never issued it (no lineage).
    let e = ev("36-refresh-tampered", "token.refresh");
    assert_eq!(
        what(e),
        (
            "token.refresh",
            Outcome::Failure,
            Some("token_bad_signature")
        )
    );
    assert_eq!(
        actor(e),
        (
            Some(BOB),
            false,
            Some("claimed:user_id@request_body:/refresh")
        )
    );
    assert_eq!(
        app(e),
        Some(("globex", false, "claimed:tenant@request_body:/refresh"))
    );
    assert_eq!(
        (e.tokens[0].invalid.as_deref(), e.tokens[0].sub.as_deref()),
        (Some("bad_signature"), Some(BOB))
    );
    assert_eq!(
        e.details["lineage"]["request_body:/refresh"]["found"],
        false
    );

    // 00 and 37: gina's login, and her access token presented after it expired. The token
    // no longer proves itself (claimed, `invalid: expired`), so the event names the user the
    // trail saw it issued to: lineage from the login, as verified as it was there.
    let gina_login = ev("00-login-gina", "auth.login");
    assert_eq!(what(gina_login), ("auth.login", Outcome::Success, None));
    assert_eq!(actor(gina_login), verified_actor(GINA));
    assert_eq!(app(gina_login), verified_app("globex"));
    let lineage = format!("lineage:{}", gina_login.id);
    for ty in ["access.would_deny", "account.read"] {
        let e = ev("37-me-expired-issued", ty);
        assert_eq!(what(e), (ty, Outcome::Failure, Some("token_expired")));
        assert_eq!(actor(e), (Some(GINA), true, Some(lineage.as_str())));
        assert_eq!(app(e), Some(("globex", true, lineage.as_str())));
        let t = &e.tokens[0];
        assert_eq!(
            (t.verified, t.invalid.as_deref(), t.sub.as_deref()),
            (false, Some("expired"), Some(GINA))
        );
        assert_eq!(
            t.fingerprint, gina_login.tokens[0].fingerprint,
            "the access token the login issued"
        );
        assert_eq!(
            e.details["lineage"]["bearer"]["event"],
            gina_login.id.to_string()
        );
    }

    // 38: refused at the edge as request.rejected (duplicate_credentials, the app header),
    // still naming who tried and what against; the deactivation never ran.
    let e = ev("38-admin-app-id-twice", "request.rejected");
    assert_eq!(
        what(e),
        (
            "request.rejected",
            Outcome::Failure,
            Some("duplicate_credentials")
        )
    );
    assert_eq!(e.details["duplicate"], "app_header");
    assert_eq!(target(e), Some(("user", BOB, "path:user_id")));
    assert!(!evs.iter().any(
        |e| e.http.request_id == "38-admin-app-id-twice" && e.event_type != "request.rejected"
    ));

    // Nothing else was recorded, and nothing unverified ever passed the requirement.
    let stored = sc.events().await;
    let audit: Vec<_> = stored
        .iter()
        .filter(|e| e.event_type.starts_with("audit."))
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(audit, ["audit.export", "audit.export"], "the two exports");
    assert_eq!(stored.len() - audit.len(), 43, "{dump}");
    for e in &stored {
        if e.actor
            .source
            .as_deref()
            .is_some_and(|s| s.starts_with("claimed:"))
        {
            assert!(!e.actor.verified);
            assert_ne!(e.outcome, Outcome::Success, "{}", summary(e));
        }
    }

    // --- no secret anywhere -------------------------------------------------------------------
    let store = harness::store_bytes(&sc.db);
    let logs = harness::captured_logs();
    let exports = [ndjson.body.to_vec(), csv.body.to_vec()].concat();
    assert!(
        contains(&ndjson.body, "31-login-frank") && contains(&csv.body, "31-login-frank"),
        "the exports hold the events"
    );
    for secret in [
        PASSWORD,
        WRONG_PASSWORD,
        NEW_PASSWORD,
        FRANK_PASSWORD,
        JWT_SECRET,
        WRONG_KEY,
        FINGERPRINT_KEY,
        &access1,
        &refresh1,
        &access2,
        &refresh2,
        &access3,
        &refresh3,
        &access_carol,
        &refresh_carol,
        &access_bob,
        &refresh_bob,
        &access_frank,
        &refresh_frank,
        &access4,
        &refresh4,
        &access_gina,
        &refresh_gina,
        &tampered,
        &expired,
        &forged,
        &reset_token,
        bogus_reset_token,
        &key,
        bogus_key,
    ] {
        assert!(!contains(&store, secret), "{secret:.24}… reached the store");
        assert!(!logs.contains(secret), "{secret:.24}… reached the logs");
        assert!(
            !contains(&exports, secret),
            "{secret:.24}… reached an export"
        );
    }
    // Nor the signature part of any token on its own.
    for jwt in [&access1, &refresh1, &expired, &forged] {
        let sig = jwt.rsplit('.').next().unwrap();
        assert!(!contains(&store, sig) && !logs.contains(sig) && !contains(&exports, sig));
    }
    drop(django);
    eprintln!("drf end to end: {:?}", started.elapsed());
}
