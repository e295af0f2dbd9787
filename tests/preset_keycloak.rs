//! The keycloak preset (config/presets/keycloak.yaml) against Keycloak's documented exchanges:
//! a stand-in that answers as Keycloak 26's OIDC endpoints and admin REST API are documented to
//! (RS256 realm tokens with a JWKS, refresh tokens signed with a key no JWKS publishes, OAuth
//! errors with `error_description`, the login form's 302 with a code, 204/201 from the admin
//! API). Not a live Keycloak: its exchanges written from the documents. Every event's type,
//! outcome, reason, actor, app and target are asserted, and no secret reaches the store.

mod support;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use authtrail::event::{ActorKind, AuditEvent, Outcome};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::events::now;
use support::harness::{self, contains, send};
use tokio::net::TcpListener;

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
const ALICE_ID: &str = "5f0c1c9e-6a8e-4f0e-9d3b-1c2a3b4c5d6e";
const BOB_ID: &str = "8a7b6c5d-4e3f-4a2b-9c1d-0e1f2a3b4c5d";
const ALICE_PW: &str = "alice-keycloak-pw-7!";
const SVC_SECRET: &str = "svc-client-secret-Qz81";
const REALM_HMAC: &str = "realm-hmac-key-no-jwks-publishes-0123456789";

#[derive(Clone, Default)]
struct Kc {
    base: Arc<Mutex<String>>,
    /// Active refresh tokens.
    refresh: Arc<Mutex<HashSet<String>>>,
    /// Unused codes.
    codes: Arc<Mutex<HashSet<String>>>,
    secrets: Arc<Mutex<Vec<String>>>,
}

fn rs256(claims: Value) -> String {
    let key =
        EncodingKey::from_rsa_pem(&std::fs::read(format!("{FIX}rsa1.key.pem")).unwrap()).unwrap();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("rsa1".into());
    encode(&h, &claims, &key).unwrap()
}

impl Kc {
    fn iss(&self, realm: &str) -> String {
        format!("{}/realms/{realm}", self.base.lock().unwrap())
    }

    fn keep(&self, s: &str) -> String {
        self.secrets.lock().unwrap().push(s.to_string());
        s.to_string()
    }

    /// A token response as Keycloak documents it.
    fn tokens(&self, sub: &str, user: &str, client: &str) -> Value {
        let iss = self.iss("main");
        let jti = || uuid::Uuid::now_v7().to_string();
        let access = rs256(json!({
            "iss": iss, "sub": sub, "azp": client, "typ": "Bearer", "preferred_username": user,
            "scope": "openid profile", "iat": now(), "exp": now() + 300, "jti": jti(),
        }));
        let id = rs256(json!({
            "iss": iss, "sub": sub, "aud": client, "azp": client, "typ": "ID",
            "preferred_username": user, "iat": now(), "exp": now() + 300,
        }));
        // Signed with the realm's HMAC key, which no JWKS publishes.
        let refresh = encode(
            &Header::new(Algorithm::HS512),
            &json!({ "iss": iss, "sub": sub, "azp": client, "typ": "Refresh", "iat": now(), "exp": now() + 1800, "jti": jti() }),
            &EncodingKey::from_secret(REALM_HMAC.as_bytes()),
        )
        .unwrap();
        self.refresh.lock().unwrap().insert(refresh.clone());
        for t in [&access, &id, &refresh] {
            self.keep(t);
        }
        json!({
            "access_token": access, "expires_in": 300, "refresh_expires_in": 1800,
            "refresh_token": refresh, "token_type": "Bearer", "id_token": id,
            "not-before-policy": 0, "session_state": uuid::Uuid::now_v7().to_string(),
            "scope": "openid profile",
        })
    }
}

fn reply(status: StatusCode, body: Option<Value>) -> Response<Full<Bytes>> {
    let mut b = Response::builder().status(status);
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    b.body(Full::new(Bytes::from(
        body.map(|v| v.to_string()).unwrap_or_default(),
    )))
    .unwrap()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response<Full<Bytes>> {
    reply(
        status,
        Some(json!({ "error": error, "error_description": description })),
    )
}

fn bearer_claims(req: &Request<Incoming>) -> Option<Value> {
    let t = req.headers().get("authorization")?.to_str().ok()?;
    let t = t.strip_prefix("Bearer ")?;
    let payload = t.split('.').nth(1)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&raw).ok()
}

async fn handle(kc: Kc, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let claims = bearer_claims(&req);
    let basic = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .map(str::to_string);
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let jwk: Value =
        serde_json::from_slice(&std::fs::read(format!("{FIX}rsa1.jwk.json")).unwrap()).unwrap();
    let admin_iss = kc.iss("master");
    let resp = match (method.as_str(), path.as_str()) {
        ("GET", p) if p.ends_with("/protocol/openid-connect/certs") => {
            reply(StatusCode::OK, Some(json!({ "keys": [jwk] })))
        }
        ("POST", "/realms/main/protocol/openid-connect/token") => {
            match form.get("grant_type").map(String::as_str) {
                Some("password") => {
                    if form.get("username").map(String::as_str) == Some("alice")
                        && form.get("password").map(String::as_str) == Some(ALICE_PW)
                    {
                        reply(StatusCode::OK, Some(kc.tokens(ALICE_ID, "alice", "web")))
                    } else {
                        oauth_error(
                            StatusCode::UNAUTHORIZED,
                            "invalid_grant",
                            "Invalid user credentials",
                        )
                    }
                }
                Some("refresh_token") => {
                    let rt = form.get("refresh_token").cloned().unwrap_or_default();
                    if kc.refresh.lock().unwrap().contains(&rt) {
                        reply(StatusCode::OK, Some(kc.tokens(ALICE_ID, "alice", "web")))
                    } else {
                        oauth_error(
                            StatusCode::BAD_REQUEST,
                            "invalid_grant",
                            "Token is not active",
                        )
                    }
                }
                Some("authorization_code") => {
                    let code = form.get("code").cloned().unwrap_or_default();
                    if kc.codes.lock().unwrap().remove(&code) {
                        reply(StatusCode::OK, Some(kc.tokens(ALICE_ID, "alice", "web")))
                    } else {
                        oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Code not valid")
                    }
                }
                Some("client_credentials") => {
                    let ok = basic.as_deref()
                        == Some(
                            &base64::engine::general_purpose::STANDARD
                                .encode(format!("svc:{SVC_SECRET}")),
                        );
                    if ok {
                        let mut t = kc.tokens("1e2d3c4b-svc", "service-account-svc", "svc");
                        t.as_object_mut().unwrap().remove("refresh_token");
                        t.as_object_mut().unwrap().remove("id_token");
                        reply(StatusCode::OK, Some(t))
                    } else {
                        oauth_error(
                            StatusCode::UNAUTHORIZED,
                            "unauthorized_client",
                            "Invalid client or Invalid client credentials",
                        )
                    }
                }
                _ => oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    "Unsupported grant_type",
                ),
            }
        }
        ("POST", "/realms/main/login-actions/authenticate") => {
            if form.get("username").map(String::as_str) == Some("alice")
                && form.get("password").map(String::as_str) == Some(ALICE_PW)
            {
                let code = kc.keep(&format!("code-{}", uuid::Uuid::now_v7().simple()));
                kc.codes.lock().unwrap().insert(code.clone());
                let identity = kc.keep(&format!("kcid-{}", uuid::Uuid::now_v7().simple()));
                Response::builder()
                    .status(StatusCode::FOUND)
                    .header(
                        "location",
                        format!("https://app.example/cb?state=s1&session_state=x&code={code}"),
                    )
                    .header(
                        "set-cookie",
                        format!("KEYCLOAK_IDENTITY={identity}; Path=/realms/main/; HttpOnly"),
                    )
                    .body(Full::new(Bytes::new()))
                    .unwrap()
            } else {
                Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "text/html")
                    .body(Full::new(Bytes::from(
                        "<html>Invalid username or password.</html>",
                    )))
                    .unwrap()
            }
        }
        ("POST", "/realms/main/protocol/openid-connect/revoke") => {
            if let Some(t) = form.get("token") {
                kc.refresh.lock().unwrap().remove(t);
            }
            reply(StatusCode::OK, None)
        }
        ("POST", "/realms/main/protocol/openid-connect/logout") => {
            if let Some(t) = form.get("refresh_token") {
                kc.refresh.lock().unwrap().remove(t);
            }
            reply(StatusCode::NO_CONTENT, None)
        }
        ("GET", "/realms/main/protocol/openid-connect/userinfo") => match claims {
            Some(c) if c["exp"].as_i64().unwrap_or(0) > now() => reply(
                StatusCode::OK,
                Some(json!({ "sub": c["sub"], "preferred_username": c["preferred_username"] })),
            ),
            _ => oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "Token verification failed",
            ),
        },
        (_, p) if p.starts_with("/admin/realms/main/users") => {
            let admin = claims.as_ref().is_some_and(|c| {
                c["iss"] == admin_iss.as_str() && c["preferred_username"] == "admin"
            });
            if !admin {
                reply(
                    StatusCode::FORBIDDEN,
                    Some(json!({ "error": "unknown_error" })),
                )
            } else if method == Method::POST && p == "/admin/realms/main/users" {
                Response::builder()
                    .status(StatusCode::CREATED)
                    .header(
                        "location",
                        format!(
                            "{}/admin/realms/main/users/{BOB_ID}",
                            kc.base.lock().unwrap()
                        ),
                    )
                    .body(Full::new(Bytes::new()))
                    .unwrap()
            } else if p.ends_with("/users/00000000-0000-0000-0000-000000000000") {
                reply(
                    StatusCode::NOT_FOUND,
                    Some(json!({ "error": "User not found" })),
                )
            } else {
                reply(StatusCode::NO_CONTENT, None)
            }
        }
        _ => reply(StatusCode::NOT_FOUND, Some(json!({ "error": "not_found" }))),
    };
    Ok(resp)
}

async fn keycloak() -> (Kc, std::net::SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let kc = Kc::default();
    *kc.base.lock().unwrap() = format!("http://{addr}");
    support::serve::spawn(listener, kc.clone(), handle);
    (kc, addr)
}

fn form_req<'a>(fields: &'a [(&'a str, &'a str)]) -> Bytes {
    Bytes::from(
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish(),
    )
}

/// (type, outcome, reason, actor id, actor verified, actor source, app)
type Row<'a> = (
    &'a str,
    Outcome,
    Option<&'a str>,
    Option<&'a str>,
    bool,
    Option<&'a str>,
    Option<&'a str>,
);

fn row(e: &AuditEvent) -> Row<'_> {
    (
        e.event_type.as_str(),
        e.outcome,
        e.reason.as_deref(),
        e.actor.id.as_deref(),
        e.actor.verified,
        e.actor.source.as_deref(),
        e.app.as_ref().map(|a| a.value.as_str()),
    )
}

#[tokio::test]
async fn the_keycloak_preset_names_who_did_what_in_which_realm() {
    let (kc, up) = keycloak().await;
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("kc.db");
    let base = format!("http://{up}");
    for (k, v) in [
        ("KEYCLOAK_UPSTREAM", base.clone()),
        (
            "KEYCLOAK_REALM_JWKS_URL",
            format!("{base}/realms/main/protocol/openid-connect/certs"),
        ),
        ("KEYCLOAK_REALM_ISSUER", format!("{base}/realms/main")),
        (
            "KEYCLOAK_ADMIN_JWKS_URL",
            format!("{base}/realms/master/protocol/openid-connect/certs"),
        ),
        ("KEYCLOAK_ADMIN_ISSUER", format!("{base}/realms/master")),
        (
            "FINGERPRINT_KEY",
            "keycloak-preset-fingerprint-key".to_string(),
        ),
        ("AUTHTRAIL_STORE", format!("sqlite://{}", db.display())),
    ] {
        std::env::set_var(k, v);
    }
    let cfg = authtrail::config::load_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/presets/keycloak.yaml"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let mut sc = harness::start_config(cfg, db.clone(), tmp).await;
    let token_url = sc.url("/realms/main/protocol/openid-connect/token");
    let form_h = [("content-type", "application/x-www-form-urlencoded")];
    let post = |url: String, body: Bytes, extra: Vec<(&'static str, String)>| async move {
        let mut h: Vec<(&str, &str)> = form_h.to_vec();
        for (k, v) in &extra {
            h.push((k, v.as_str()));
        }
        send(Method::POST, &url, &h, body).await.unwrap()
    };

    // 0, 1: password grant, good and bad.
    let r = post(
        token_url.clone(),
        form_req(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", ALICE_PW),
            ("client_id", "web"),
        ]),
        vec![],
    )
    .await;
    assert_eq!(r.status, 200);
    let rt1 = r.json()["refresh_token"].as_str().unwrap().to_string();
    let at1 = r.json()["access_token"].as_str().unwrap().to_string();
    let r = post(
        token_url.clone(),
        form_req(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "wrong-pw-123"),
            ("client_id", "web"),
        ]),
        vec![],
    )
    .await;
    assert_eq!(r.status, 401);
    // 2: refresh (the refresh token does not verify here: lineage names alice).
    let r = post(
        token_url.clone(),
        form_req(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt1),
            ("client_id", "web"),
        ]),
        vec![],
    )
    .await;
    assert_eq!(r.status, 200);
    let rt2 = r.json()["refresh_token"].as_str().unwrap().to_string();
    // 3: revoke rt2; 4: refresh with it → Token is not active, still alice.
    let r = post(
        sc.url("/realms/main/protocol/openid-connect/revoke"),
        form_req(&[("token", &rt2), ("client_id", "web")]),
        vec![],
    )
    .await;
    assert_eq!(r.status, 200);
    let r = post(
        token_url.clone(),
        form_req(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt2),
            ("client_id", "web"),
        ]),
        vec![],
    )
    .await;
    assert_eq!(r.status, 400);
    // 5: userinfo with the access token.
    let bearer = format!("Bearer {at1}");
    let r = send(
        Method::GET,
        &sc.url("/realms/main/protocol/openid-connect/userinfo"),
        &[("authorization", &bearer)],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    // 6, 7: the browser: a wrong password (the form again, 200), then a 302 with a code.
    let login_url = sc.url("/realms/main/login-actions/authenticate?session_code=sc1&execution=e1&client_id=web&tab_id=t1");
    let r = post(
        login_url.clone(),
        form_req(&[("username", "alice"), ("password", "nope-wrong-1")]),
        vec![],
    )
    .await;
    assert_eq!(r.status, 200);
    let r = post(
        login_url,
        form_req(&[("username", "alice"), ("password", ALICE_PW)]),
        vec![],
    )
    .await;
    assert_eq!(r.status, 302);
    let location = r.headers["location"].to_str().unwrap().to_string();
    let code = location.rsplit("code=").next().unwrap().to_string();
    // 8, 9: the code exchanged, then replayed.
    let r = post(
        token_url.clone(),
        form_req(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", "web"),
        ]),
        vec![],
    )
    .await;
    assert_eq!(r.status, 200);
    let rt3 = r.json()["refresh_token"].as_str().unwrap().to_string();
    let r = post(
        token_url.clone(),
        form_req(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", "web"),
        ]),
        vec![],
    )
    .await;
    assert_eq!(r.status, 400);
    // 10, 11: client credentials, good and bad.
    let good = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("svc:{SVC_SECRET}"))
    );
    let bad = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("svc:wrong-secret-99")
    );
    let r = post(
        token_url.clone(),
        form_req(&[("grant_type", "client_credentials")]),
        vec![("authorization", good.clone())],
    )
    .await;
    assert_eq!(r.status, 200);
    let r = post(
        token_url.clone(),
        form_req(&[("grant_type", "client_credentials")]),
        vec![("authorization", bad.clone())],
    )
    .await;
    assert_eq!(r.status, 401);
    // 12: logout with rt3 (by lineage, alice).
    let r = post(
        sc.url("/realms/main/protocol/openid-connect/logout"),
        form_req(&[("refresh_token", &rt3), ("client_id", "web")]),
        vec![],
    )
    .await;
    assert_eq!(r.status, 204);
    // 13-17: the admin API, as `admin` of the master realm; 18: alice is no admin.
    let admin = rs256(json!({
        "iss": format!("{base}/realms/master"), "sub": "0a0b0c0d-admin", "azp": "admin-cli",
        "preferred_username": "admin", "typ": "Bearer", "iat": now(), "exp": now() + 60,
    }));
    kc.keep(&admin);
    let admin_h = format!("Bearer {admin}");
    fn json_h(auth: &str) -> Vec<(&'static str, &str)> {
        vec![
            ("content-type", "application/json"),
            ("authorization", auth),
        ]
    }
    let users = sc.url("/admin/realms/main/users");
    let r = send(
        Method::POST,
        &users,
        &json_h(&admin_h),
        Bytes::from(json!({"username": "bob", "enabled": true}).to_string()),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 201);
    let bob = sc.url(&format!("/admin/realms/main/users/{BOB_ID}"));
    let r = send(
        Method::PUT,
        &bob,
        &json_h(&admin_h),
        Bytes::from(json!({"enabled": false}).to_string()),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204);
    let r = send(
        Method::PUT,
        &bob,
        &json_h(&admin_h),
        Bytes::from(json!({"email": "bob@example.test"}).to_string()),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204);
    let r = send(
        Method::PUT,
        &format!("{bob}/reset-password"),
        &json_h(&admin_h),
        Bytes::from(
            json!({"type": "password", "value": "bob-new-pw-42!", "temporary": true}).to_string(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204);
    let r = send(Method::DELETE, &bob, &json_h(&admin_h), Bytes::new())
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    let r = send(Method::DELETE, &bob, &json_h(&bearer), Bytes::new())
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    sc.stop().await;

    let evs = sc.events().await;
    assert_eq!(evs.len(), 19, "{evs:#?}");
    let lineage = |i: usize| format!("lineage:{}", evs[i].id);
    let sub_resp = Some("claim:sub@response_body:/access_token");
    let (l0, l2, l7, l8) = (lineage(0), lineage(2), lineage(7), lineage(8));
    let s = |v: &'static str| Some(v);
    let want: Vec<Row> = vec![
        (
            "auth.login",
            Outcome::Success,
            None,
            s(ALICE_ID),
            true,
            sub_resp,
            s("main"),
        ),
        (
            "auth.login",
            Outcome::Failure,
            s("invalid_credentials"),
            s("alice"),
            false,
            s("form:username"),
            s("main"),
        ),
        (
            "token.refresh",
            Outcome::Success,
            None,
            s(ALICE_ID),
            true,
            sub_resp,
            s("main"),
        ),
        (
            "token.revoke",
            Outcome::Success,
            None,
            s(ALICE_ID),
            true,
            Some(l2.as_str()),
            s("main"),
        ),
        (
            "token.refresh",
            Outcome::Failure,
            s("token_inactive"),
            s(ALICE_ID),
            true,
            Some(l2.as_str()),
            s("main"),
        ),
        (
            "account.read",
            Outcome::Success,
            None,
            s(ALICE_ID),
            true,
            s("claim:sub@bearer"),
            s("main"),
        ),
        (
            "auth.login",
            Outcome::Failure,
            s("http_200"),
            s("alice"),
            false,
            s("form:username"),
            s("main"),
        ),
        (
            "auth.login",
            Outcome::Success,
            None,
            s("alice"),
            false,
            s("form:username"),
            s("main"),
        ),
        (
            "token.exchange",
            Outcome::Success,
            None,
            s(ALICE_ID),
            true,
            sub_resp,
            s("main"),
        ),
        (
            "token.exchange",
            Outcome::Failure,
            s("Code not valid"),
            s("alice"),
            false,
            Some(l7.as_str()),
            s("main"),
        ),
        (
            "token.issue",
            Outcome::Success,
            None,
            s("svc"),
            true,
            s("claim:azp@response_body:/access_token"),
            s("main"),
        ),
        (
            "token.issue",
            Outcome::Failure,
            s("invalid_client"),
            s("svc"),
            false,
            s("basic_auth:user"),
            s("main"),
        ),
        (
            "auth.logout",
            Outcome::Success,
            None,
            s(ALICE_ID),
            true,
            Some(l8.as_str()),
            s("main"),
        ),
        (
            "account.create",
            Outcome::Success,
            None,
            s("admin"),
            true,
            s("claim:preferred_username@bearer"),
            s("main"),
        ),
        (
            "account.deactivate",
            Outcome::Success,
            None,
            s("admin"),
            true,
            s("claim:preferred_username@bearer"),
            s("main"),
        ),
        (
            "account.update",
            Outcome::Success,
            None,
            s("admin"),
            true,
            s("claim:preferred_username@bearer"),
            s("main"),
        ),
        (
            "password.reset",
            Outcome::Success,
            None,
            s("admin"),
            true,
            s("claim:preferred_username@bearer"),
            s("main"),
        ),
        (
            "account.delete",
            Outcome::Success,
            None,
            s("admin"),
            true,
            s("claim:preferred_username@bearer"),
            s("main"),
        ),
        // alice's own token at the admin API: it does not verify as an admin's, and lineage
        // names whose it is.
        (
            "account.delete",
            Outcome::Failure,
            s("http_403"),
            s(ALICE_ID),
            true,
            Some(l0.as_str()),
            s("main"),
        ),
    ];
    for (i, (e, w)) in evs.iter().zip(&want).enumerate() {
        assert_eq!(&row(e), w, "event {i}: {e:#?}");
    }
    // The revoked token's owner is the revocation's target; the admin's targets are the user.
    let t = evs[3].target.as_ref().unwrap();
    assert_eq!((t.kind.as_str(), t.id.as_str()), ("user", ALICE_ID));
    assert_eq!(evs[13].target.as_ref().unwrap().id, "bob");
    assert_eq!(
        evs[13].details["location"],
        format!("{base}/admin/realms/main/users/{BOB_ID}")
    );
    for (i, e) in evs.iter().enumerate().skip(14) {
        assert_eq!(e.target.as_ref().unwrap().id, BOB_ID, "event {i}");
        if i < 18 {
            assert_eq!(e.actor.kind, ActorKind::Admin, "event {i}");
        }
    }
    // The code came from the browser login's redirect, and the session cookie was bound.
    assert!(evs[7]
        .tokens
        .iter()
        .any(|t| t.kind == "code" && t.source == "location:code"));
    assert!(evs[7]
        .tokens
        .iter()
        .any(|t| t.kind == "session" && t.source == "set_cookie:KEYCLOAK_IDENTITY"));
    // A refresh token that does not verify here is never what names the user.
    assert_eq!(evs[4].tokens[0].invalid.as_deref(), Some("alg_not_allowed"));

    let store = harness::store_bytes(&db);
    let logs = harness::captured_logs();
    let mut secrets = kc.secrets.lock().unwrap().clone();
    secrets.extend(
        [
            ALICE_PW,
            SVC_SECRET,
            REALM_HMAC,
            "wrong-pw-123",
            "bob-new-pw-42!",
            "nope-wrong-1",
        ]
        .map(String::from),
    );
    secrets.push(good.clone());
    secrets.push(bad.clone());
    for sec in &secrets {
        assert!(!contains(&store, sec), "{sec} is in the store");
        assert!(!logs.contains(sec.as_str()), "{sec} is in the logs");
    }
}
