//! The supabase-auth preset (config/presets/supabase-auth.yaml) against Supabase Auth's
//! (GoTrue's) documented exchanges: a stand-in that answers as its REST API is documented to
//! (https://github.com/supabase/auth/blob/master/openapi.yaml; errors as
//! internal/api/errors.go writes them for `X-Supabase-Api-Version: 2024-01-01`:
//! `{"code": "<error code>", "message"}`) — HS256 access tokens of the project's JWT secret with
//! `sub`, `aud: authenticated`, `role`, `aal`, `session_id`; opaque single-use refresh tokens;
//! 200 sessions `{access_token, token_type, expires_in, expires_at, refresh_token, user}`; MFA
//! factors; the admin API behind the service_role key. Not a live GoTrue: its exchanges written
//! from the documents. Every event's type, outcome, reason, actor, app and target are asserted,
//! and no secret reaches the store or the logs.

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use authtrail::event::{ActorKind, Outcome, TokenRole};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::events::{actor, app, lineage, now, summary, target};
use support::harness::{self, contains, send, Reply};
use tokio::net::TcpListener;

/// One expected event: (request id, type, outcome, reason, actor, target).
type Row<'a> = (
    &'a str,
    &'a str,
    Outcome,
    Option<&'a str>,
    (Option<&'a str>, bool, Option<&'a str>),
    Option<(&'a str, &'a str, &'a str)>,
);

const JWT_SECRET: &str = "supabase-project-jwt-secret-with-at-least-32-chars";
const ALICE: &str = "7f5b0a6e-1c2d-4e3f-8a9b-0c1d2e3f4a5b";
const BOB: &str = "2b3c4d5e-6f70-4182-93a4-b5c6d7e8f901";
const ALICE_PW: &str = "alice-supabase-pw-Kd83";
const TOTP_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DP";
const TOTP_CODE: &str = "492039";
const SIGNUP_HASH: &str = "pkce_4a7f0c2e9d1b3a5c7e9f0a2b4c6d8e0f1a3b5c7d9e";

#[derive(Clone, Default)]
struct GoTrue {
    /// Active refresh tokens → (user, aal).
    refresh: Arc<Mutex<HashMap<String, (String, String)>>>,
    confirmed: Arc<Mutex<bool>>,
    factor: Arc<Mutex<Option<String>>>,
    challenge: Arc<Mutex<Option<String>>>,
    secrets: Arc<Mutex<Vec<String>>>,
}

fn hs256(claims: &Value, key: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

fn user_json(id: &str, email: &str, confirmed: bool) -> Value {
    json!({
        "id": id, "aud": "authenticated", "role": "authenticated", "email": email,
        "email_confirmed_at": if confirmed { json!("2026-01-05T10:00:00Z") } else { Value::Null },
        "phone": "", "confirmation_sent_at": "2026-01-05T09:59:00Z",
        "app_metadata": { "provider": "email", "providers": ["email"] },
        "user_metadata": {}, "identities": [], "created_at": "2026-01-05T09:59:00Z",
        "updated_at": "2026-01-05T10:00:00Z", "is_anonymous": false,
    })
}

impl GoTrue {
    fn keep(&self, s: String) -> String {
        self.secrets.lock().unwrap().push(s.clone());
        s
    }

    /// A session as GoTrue returns it (AccessTokenResponseSchema).
    fn session(&self, user: &str, aal: &str) -> Value {
        let sid = uuid::Uuid::now_v7().to_string();
        let amr = if aal == "aal2" {
            json!([{ "method": "totp", "timestamp": now() }, { "method": "password", "timestamp": now() }])
        } else {
            json!([{ "method": "password", "timestamp": now() }])
        };
        let access = self.keep(hs256(
            &json!({
                "iss": "http://127.0.0.1/auth/v1", "sub": user, "aud": "authenticated",
                "exp": now() + 3600, "iat": now(), "email": "alice@example.com", "phone": "",
                "role": "authenticated", "aal": aal, "amr": amr, "session_id": sid,
                "is_anonymous": false,
            }),
            JWT_SECRET,
        ));
        let refresh = self.keep(format!(
            "r{}",
            &uuid::Uuid::now_v7().simple().to_string()[20..]
        ));
        self.refresh
            .lock()
            .unwrap()
            .insert(refresh.clone(), (user.into(), aal.into()));
        json!({
            "access_token": access, "token_type": "bearer", "expires_in": 3600,
            "expires_at": now() + 3600, "refresh_token": refresh,
            "user": user_json(user, "alice@example.com", true),
        })
    }
}

fn reply(status: StatusCode, body: Option<Value>) -> Response<Full<Bytes>> {
    let mut b = Response::builder()
        .status(status)
        .header("x-supabase-api-version", "2024-01-01");
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    b.body(Full::new(Bytes::from(
        body.map(|v| v.to_string()).unwrap_or_default(),
    )))
    .unwrap()
}

/// An error as GoTrue writes it for API version 2024-01-01.
fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    reply(status, Some(json!({ "code": code, "message": message })))
}

/// The claims of a bearer JWT this project signed (the stand-in checks the secret as GoTrue does).
fn bearer(req_auth: Option<&str>) -> Option<Value> {
    let t = req_auth?.strip_prefix("Bearer ")?;
    let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
    v.validate_aud = false;
    v.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(
        t,
        &jsonwebtoken::DecodingKey::from_secret(JWT_SECRET.as_bytes()),
        &v,
    )
    .ok()
    .map(|d| d.claims)
}

async fn handle(gt: GoTrue, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let method = req.method().clone();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let claims = bearer(auth.as_deref());
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let b: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let s = |k: &str| b[k].as_str().unwrap_or("").to_string();
    let user = claims
        .as_ref()
        .and_then(|c| c["sub"].as_str().map(String::from));
    let unauthorized = || {
        error(
            StatusCode::UNAUTHORIZED,
            "no_authorization",
            "This endpoint requires a valid Bearer token",
        )
    };
    let resp = match (method.as_str(), path.as_str()) {
        ("POST", "/signup") => {
            if s("password").len() < 8 {
                reply(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Some(
                        json!({ "code": "weak_password", "message": "Password should be at least 8 characters.", "weak_password": { "reasons": ["length"] } }),
                    ),
                )
            } else {
                // Confirmations on: the unconfirmed user, a mail with the link.
                reply(StatusCode::OK, Some(user_json(ALICE, &s("email"), false)))
            }
        }
        ("POST", "/verify") => match (s("type").as_str(), s("token_hash").as_str()) {
            ("signup", SIGNUP_HASH) => {
                *gt.confirmed.lock().unwrap() = true;
                reply(StatusCode::OK, Some(gt.session(ALICE, "aal1")))
            }
            _ => error(
                StatusCode::FORBIDDEN,
                "otp_expired",
                "Token has expired or is invalid",
            ),
        },
        ("POST", "/token") => match query.get("grant_type").map(String::as_str) {
            Some("password") => {
                if s("email") == "alice@example.com" && s("password") == ALICE_PW {
                    reply(StatusCode::OK, Some(gt.session(ALICE, "aal1")))
                } else {
                    error(
                        StatusCode::BAD_REQUEST,
                        "invalid_credentials",
                        "Invalid login credentials",
                    )
                }
            }
            Some("refresh_token") => {
                let found = gt.refresh.lock().unwrap().remove(&s("refresh_token"));
                match found {
                    Some((u, aal)) => reply(StatusCode::OK, Some(gt.session(&u, &aal))),
                    None => error(
                        StatusCode::BAD_REQUEST,
                        "refresh_token_not_found",
                        "Invalid Refresh Token: Refresh Token Not Found",
                    ),
                }
            }
            _ => error(
                StatusCode::BAD_REQUEST,
                "validation_failed",
                "unsupported_grant_type",
            ),
        },
        ("GET", "/user") => match &user {
            Some(u) => reply(
                StatusCode::OK,
                Some(user_json(u, "alice@example.com", true)),
            ),
            None => unauthorized(),
        },
        ("PUT", "/user") => match &user {
            Some(_) if s("password") == ALICE_PW => error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "same_password",
                "New password should be different from the old password.",
            ),
            Some(u) => reply(
                StatusCode::OK,
                Some(user_json(u, "alice@example.com", true)),
            ),
            None => unauthorized(),
        },
        ("POST", "/factors") => match &user {
            Some(_) => {
                let id = uuid::Uuid::now_v7().to_string();
                *gt.factor.lock().unwrap() = Some(id.clone());
                reply(
                    StatusCode::OK,
                    Some(json!({
                        "id": id, "type": "totp", "friendly_name": s("friendly_name"),
                        "totp": { "qr_code": "data:image/svg+xml;utf-8,<svg/>", "secret": TOTP_SECRET,
                                  "uri": format!("otpauth://totp/example:alice@example.com?secret={TOTP_SECRET}&issuer=example") },
                    })),
                )
            }
            None => unauthorized(),
        },
        ("POST", p) if p.starts_with("/factors/") && p.ends_with("/challenge") => {
            let id = uuid::Uuid::now_v7().to_string();
            *gt.challenge.lock().unwrap() = Some(id.clone());
            reply(
                StatusCode::OK,
                Some(json!({ "id": id, "type": "totp", "expires_at": now() + 300 })),
            )
        }
        ("POST", p) if p.starts_with("/factors/") && p.ends_with("/verify") => {
            let ok =
                Some(s("challenge_id")) == *gt.challenge.lock().unwrap() && s("code") == TOTP_CODE;
            match (&user, ok) {
                (Some(u), true) => reply(StatusCode::OK, Some(gt.session(u, "aal2"))),
                (Some(_), false) => error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "mfa_verification_failed",
                    "Invalid TOTP code entered",
                ),
                (None, _) => unauthorized(),
            }
        }
        ("POST", "/recover") | ("POST", "/otp") => reply(StatusCode::OK, Some(json!({}))),
        ("POST", "/logout") => match &user {
            Some(u) => {
                // scope=global (the default): every refresh token of the user is revoked.
                gt.refresh
                    .lock()
                    .unwrap()
                    .retain(|_, (owner, _)| owner != u);
                reply(StatusCode::NO_CONTENT, None)
            }
            None => unauthorized(),
        },
        (_, p) if p.starts_with("/admin/") => {
            let role = claims
                .as_ref()
                .and_then(|c| c["role"].as_str().map(String::from));
            if role.as_deref() != Some("service_role") {
                error(StatusCode::FORBIDDEN, "not_admin", "User not allowed")
            } else if method == Method::POST && p == "/admin/users" {
                reply(StatusCode::OK, Some(user_json(BOB, &s("email"), true)))
            } else if method == Method::DELETE {
                reply(StatusCode::OK, Some(json!({})))
            } else {
                error(StatusCode::NOT_FOUND, "user_not_found", "User not found")
            }
        }
        _ => error(StatusCode::NOT_FOUND, "not_found", "Not Found"),
    };
    Ok(resp)
}

#[tokio::test]
async fn the_supabase_auth_preset_names_who_signed_in_refreshed_and_administered() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let gt = GoTrue::default();
    support::serve::spawn(listener, gt.clone(), handle);
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("supabase.db");
    for (k, v) in [
        ("SUPABASE_AUTH_UPSTREAM", format!("http://{up}")),
        ("SUPABASE_JWT_SECRET", JWT_SECRET.to_string()),
        (
            "FINGERPRINT_KEY",
            "supabase-preset-fingerprint-key".to_string(),
        ),
        ("AUTHTRAIL_STORE", format!("sqlite://{}", db.display())),
    ] {
        std::env::set_var(k, v);
    }
    let cfg = authtrail::config::load_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/presets/supabase-auth.yaml"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let mut sc = harness::start_config(cfg, db.clone(), tmp).await;
    // As supabase-js sends them: JSON, the API version, the project's anon key as apikey.
    let call =
        |id: &'static str, method: Method, path: &str, body: Option<Value>, token: Option<&str>| {
            let url = sc.url(path);
            let auth = token.map(|t| format!("Bearer {t}"));
            async move {
                let mut h: Vec<(&str, &str)> = vec![
                    ("x-request-id", id),
                    ("x-supabase-api-version", "2024-01-01"),
                    ("apikey", "anon-key-public"),
                ];
                if body.is_some() {
                    h.push(("content-type", "application/json"));
                }
                if let Some(a) = &auth {
                    h.push(("authorization", a.as_str()));
                }
                let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
                send(method, &url, &h, body).await.unwrap()
            }
        };
    let tok = |r: &Reply, k: &str| {
        r.json()[k]
            .as_str()
            .unwrap_or_else(|| panic!("no {k}: {}", String::from_utf8_lossy(&r.body)))
            .to_string()
    };
    let creds = |pw: &str| json!({ "email": "alice@example.com", "password": pw });

    let r = call(
        "00-signup",
        Method::POST,
        "/signup",
        Some(creds(ALICE_PW)),
        None,
    )
    .await;
    assert_eq!(r.json()["id"], ALICE);
    let r = call(
        "01-signup-weak",
        Method::POST,
        "/signup",
        Some(json!({ "email": "weak@example.com", "password": "short" })),
        None,
    )
    .await;
    assert_eq!(r.status, 422);
    let r = call(
        "02-verify-signup",
        Method::POST,
        "/verify",
        Some(json!({ "type": "signup", "token_hash": SIGNUP_HASH })),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let r = call(
        "03-login-wrong",
        Method::POST,
        "/token?grant_type=password",
        Some(creds("wrong-pw-Zz19")),
        None,
    )
    .await;
    assert_eq!(r.json()["code"], "invalid_credentials");
    let r = call(
        "04-login",
        Method::POST,
        "/token?grant_type=password",
        Some(creds(ALICE_PW)),
        None,
    )
    .await;
    let (at1, rt1) = (tok(&r, "access_token"), tok(&r, "refresh_token"));
    let r = call("05-user", Method::GET, "/user", None, Some(&at1)).await;
    assert_eq!(r.json()["id"], ALICE);
    let r = call(
        "06-refresh",
        Method::POST,
        "/token?grant_type=refresh_token",
        Some(json!({ "refresh_token": rt1 })),
        None,
    )
    .await;
    let (at2, rt2) = (tok(&r, "access_token"), tok(&r, "refresh_token"));
    let r = call(
        "07-refresh-reused",
        Method::POST,
        "/token?grant_type=refresh_token",
        Some(json!({ "refresh_token": rt1 })),
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    let r = call(
        "08-mfa-enroll",
        Method::POST,
        "/factors",
        Some(json!({ "factor_type": "totp", "friendly_name": "phone" })),
        Some(&at2),
    )
    .await;
    let factor = tok(&r, "id");
    let r = call(
        "09-mfa-challenge",
        Method::POST,
        &format!("/factors/{factor}/challenge"),
        Some(json!({})),
        Some(&at2),
    )
    .await;
    let challenge = tok(&r, "id");
    let r = call(
        "10-mfa-verify-wrong",
        Method::POST,
        &format!("/factors/{factor}/verify"),
        Some(json!({ "challenge_id": challenge, "code": "000000" })),
        Some(&at2),
    )
    .await;
    assert_eq!(r.status, 422);
    let r = call(
        "11-mfa-verify",
        Method::POST,
        &format!("/factors/{factor}/verify"),
        Some(json!({ "challenge_id": challenge, "code": TOTP_CODE })),
        Some(&at2),
    )
    .await;
    let (at3, rt3) = (tok(&r, "access_token"), tok(&r, "refresh_token"));
    let r = call(
        "12-update-same-password",
        Method::PUT,
        "/user",
        Some(json!({ "password": ALICE_PW })),
        Some(&at3),
    )
    .await;
    assert_eq!(r.status, 422);
    let r = call(
        "13-recover",
        Method::POST,
        "/recover",
        Some(json!({ "email": "alice@example.com" })),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let r = call(
        "14-otp",
        Method::POST,
        "/otp",
        Some(json!({ "email": "alice@example.com", "create_user": false })),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let service = hs256(
        &json!({ "iss": "supabase", "ref": "abcdefghijklmnopqrst", "role": "service_role", "iat": now(), "exp": now() + 3600 }),
        JWT_SECRET,
    );
    let r = call("15-admin-create", Method::POST, "/admin/users", Some(json!({ "email": "bob@example.com", "password": "bob-pw-Xc55-long", "email_confirm": true })), Some(&service)).await;
    assert_eq!(r.json()["id"], BOB);
    let r = call(
        "16-admin-as-user",
        Method::DELETE,
        &format!("/admin/users/{BOB}"),
        None,
        Some(&at3),
    )
    .await;
    assert_eq!(r.status, 403, "refused at the edge");
    let r = call(
        "17-admin-delete",
        Method::DELETE,
        &format!("/admin/users/{BOB}"),
        None,
        Some(&service),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = call("18-logout", Method::POST, "/logout", None, Some(&at3)).await;
    assert_eq!(r.status, 204);
    let r = call(
        "19-refresh-after-logout",
        Method::POST,
        "/token?grant_type=refresh_token",
        Some(json!({ "refresh_token": rt3 })),
        None,
    )
    .await;
    assert_eq!(r.json()["code"], "refresh_token_not_found");
    let r = call(
        "20-verify-expired",
        Method::POST,
        "/verify",
        Some(json!({ "type": "magiclink", "token": "123456", "email": "alice@example.com" })),
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    sc.stop().await;

    let evs = sc.events().await;
    let dump: String = evs.iter().map(|e| summary(e) + "\n").collect();
    eprintln!("{dump}");
    assert_eq!(evs.len(), 21, "{dump}");
    let ev = |id: &str| {
        evs.iter()
            .find(|e| e.http.request_id == id)
            .unwrap_or_else(|| panic!("{id}:\n{dump}"))
    };
    type Who<'a> = (Option<&'a str>, bool, Option<&'a str>);
    let issued: Who = (
        Some(ALICE),
        true,
        Some("claim:sub@response_body:/access_token"),
    );
    let bearer_w: Who = (Some(ALICE), true, Some("claim:sub@bearer"));
    let email: Who = (
        Some("alice@example.com"),
        false,
        Some("request_body:/email"),
    );
    let service_w: Who = (Some("service_role"), true, Some("claim:role@bearer"));
    let nobody: Who = (None, false, None);
    let (l04, l11) = (lineage(ev("04-login")), lineage(ev("11-mfa-verify")));
    let factor_t = Some(("factor", factor.as_str(), "path:factor_id"));
    #[rustfmt::skip]
    let want: Vec<Row> = vec![
        ("00-signup", "account.register", Outcome::Success, None, (Some(ALICE), false, Some("response_body:/id")), Some(("user", ALICE, "response_body:/id"))),
        ("01-signup-weak", "account.register", Outcome::Failure, Some("weak_password"), (Some("weak@example.com"), false, Some("request_body:/email")), Some(("user", "weak@example.com", "request_body:/email"))),
        ("02-verify-signup", "email.verify.complete", Outcome::Success, None, issued, Some(("user", ALICE, "claim:sub@response_body:/access_token"))),
        ("03-login-wrong", "token.issue", Outcome::Failure, Some("invalid_credentials"), email, None),
        ("04-login", "token.issue", Outcome::Success, None, issued, None),
        ("05-user", "account.read", Outcome::Success, None, bearer_w, None),
        ("06-refresh", "token.issue", Outcome::Success, None, issued, None),
        ("07-refresh-reused", "token.issue", Outcome::Failure, Some("refresh_token_not_found"), (Some(ALICE), true, Some(l04.as_str())), None),
        ("08-mfa-enroll", "auth.mfa.enroll", Outcome::Success, None, bearer_w, Some(("factor", factor.as_str(), "response_body:/id"))),
        ("09-mfa-challenge", "auth.mfa.challenge", Outcome::Success, None, bearer_w, factor_t),
        ("10-mfa-verify-wrong", "auth.mfa.verify", Outcome::Failure, Some("mfa_verification_failed"), bearer_w, factor_t),
        ("11-mfa-verify", "auth.mfa.verify", Outcome::Success, None, issued, factor_t),
        ("12-update-same-password", "account.update", Outcome::Failure, Some("same_password"), bearer_w, Some(("user", ALICE, "claim:sub@bearer"))),
        ("13-recover", "password.reset.request", Outcome::Success, None, nobody, Some(("email", "alice@example.com", "request_body:/email"))),
        ("14-otp", "auth.otp.request", Outcome::Success, None, nobody, Some(("user", "alice@example.com", "request_body:/email"))),
        ("15-admin-create", "account.create", Outcome::Success, None, service_w, Some(("user", BOB, "response_body:/id"))),
        ("16-admin-as-user", "access.denied", Outcome::Failure, Some("claim_mismatch:role"), (Some("authenticated"), true, Some("claim:role@bearer")), Some(("user", BOB, "path:user_id"))),
        ("17-admin-delete", "account.delete", Outcome::Success, None, service_w, Some(("user", BOB, "path:user_id"))),
        ("18-logout", "auth.logout", Outcome::Success, None, bearer_w, None),
        ("19-refresh-after-logout", "token.issue", Outcome::Failure, Some("refresh_token_not_found"), (Some(ALICE), true, Some(l11.as_str())), None),
        ("20-verify-expired", "auth.login", Outcome::Failure, Some("otp_expired"), email, None),
    ];
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
        // A presented refresh token brings the app of the event that issued it.
        let app_w = match *id {
            "06-refresh" | "07-refresh-reused" => l04.as_str(),
            "19-refresh-after-logout" => l11.as_str(),
            _ => "const",
        };
        assert_eq!(app(e), Some(("supabase", false, app_w)), "{}", summary(e));
    }
    // The grant of each /token request, and the assurance level the tokens carry.
    let grant = |id: &str| ev(id).details["grant_type"].clone();
    assert_eq!(
        (grant("04-login"), grant("06-refresh")),
        (json!("password"), json!("refresh_token"))
    );
    assert_eq!(ev("04-login").details["aal"], "aal1");
    assert_eq!(ev("11-mfa-verify").details["aal"], "aal2");
    assert_eq!(ev("08-mfa-enroll").details["factor_type"], "totp");
    assert_eq!(ev("15-admin-create").actor.kind, ActorKind::Admin);
    assert_eq!(ev("16-admin-as-user").http.status, Some(403));
    // The refresh presented the login's refresh token and was handed a new pair.
    let e = ev("06-refresh");
    let presented: Vec<_> = e
        .tokens
        .iter()
        .filter(|t| t.role == TokenRole::Presented)
        .collect();
    assert_eq!(presented.len(), 1);
    assert_eq!(
        presented[0].fingerprint,
        ev("04-login")
            .tokens
            .iter()
            .find(|t| t.kind == "refresh")
            .unwrap()
            .fingerprint
    );
    assert_eq!(
        e.tokens
            .iter()
            .filter(|t| t.role == TokenRole::Issued)
            .count(),
        2
    );

    let store = harness::store_bytes(&db);
    let logs = harness::captured_logs();
    let mut secrets = gt.secrets.lock().unwrap().clone();
    secrets.extend(
        [
            JWT_SECRET,
            ALICE_PW,
            TOTP_SECRET,
            SIGNUP_HASH,
            "wrong-pw-Zz19",
            "bob-pw-Xc55-long",
        ]
        .map(String::from),
    );
    secrets.extend([service, at1, rt1, at2, rt2, at3, rt3]);
    for s in &secrets {
        assert!(!contains(&store, s), "{s:.24}… is in the store");
        assert!(!logs.contains(s.as_str()), "{s:.24}… is in the logs");
    }
}
