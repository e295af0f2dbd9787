//! The spring-authorization-server preset (config/presets/spring-authorization-server.yaml)
//! against Spring Authorization Server's documented exchanges: a stand-in that answers as its
//! protocol endpoints (https://docs.spring.io/spring-authorization-server/reference/protocol-endpoints.html)
//! and Spring Security's form login are documented to — RS256 JWT access and ID tokens with a
//! JWKS at /oauth2/jwks (`sub`, `aud` as an array, `scope`), opaque refresh tokens (reused by
//! default) and codes, `{"error": ...}` bodies (400 invalid_grant, 401 invalid_client), an
//! empty 401 with `WWW-Authenticate` at /userinfo, `/login?error` for a failed form login, a new
//! JSESSIONID at a successful one, 302s from /oauth2/authorize and /connect/logout. Not a live
//! server: its exchanges written from the documents. Every event's type, outcome, reason,
//! actor, app and target are asserted, and no secret reaches the store or the logs.

mod support;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use authtrail::event::{ActorKind, Outcome};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::events::{actor, app, basic, lineage, now, summary, target};
use support::harness::{self, contains, send, Reply};
use tokio::net::TcpListener;

/// One expected event: (request id, type, outcome, reason, actor, app).
type Row<'a> = (
    &'a str,
    &'a str,
    Outcome,
    Option<&'a str>,
    (Option<&'a str>, bool, Option<&'a str>),
    Option<(&'a str, bool, &'a str)>,
);

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
const ALICE_PW: &str = "alice-spring-pw-Qx7!";
const WEB_SECRET: &str = "web-client-secret-Hn42-Lp09";
const SVC_SECRET: &str = "reporting-secret-Bv63-Ty18";
const REDIRECT: &str = "http://127.0.0.1:9/web/callback";
const POST_LOGOUT: &str = "http://127.0.0.1:9/web/bye";

#[derive(Clone, Default)]
struct Sas {
    base: Arc<Mutex<String>>,
    /// Live sessions: JSESSIONID → the signed-in user (None: anonymous, a saved request).
    sessions: Arc<Mutex<HashMap<String, Option<String>>>>,
    /// Unused codes → user.
    codes: Arc<Mutex<HashMap<String, String>>>,
    /// Active refresh tokens → user.
    refresh: Arc<Mutex<HashMap<String, String>>>,
    /// Active access tokens (jti).
    revoked: Arc<Mutex<HashSet<String>>>,
    secrets: Arc<Mutex<Vec<String>>>,
}

fn rs256(claims: &Value) -> String {
    let key =
        EncodingKey::from_rsa_pem(&std::fs::read(format!("{FIX}rsa1.key.pem")).unwrap()).unwrap();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("rsa1".into());
    encode(&h, claims, &key).unwrap()
}

fn random(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}

impl Sas {
    fn keep(&self, s: String) -> String {
        self.secrets.lock().unwrap().push(s.clone());
        s
    }

    fn access(&self, sub: &str, client: &str, scope: &[&str]) -> String {
        let base = self.base.lock().unwrap().clone();
        self.keep(rs256(&json!({
            "sub": sub, "aud": [client], "nbf": now(), "scope": scope, "iss": base,
            "exp": now() + 300, "iat": now(), "jti": uuid::Uuid::now_v7().to_string(),
        })))
    }

    /// The token response of an authorization_code or refresh_token grant.
    fn user_tokens(&self, user: &str, client: &str, refresh: Option<String>) -> Value {
        let base = self.base.lock().unwrap().clone();
        let id_token = self.keep(rs256(&json!({
            "iss": base, "sub": user, "aud": [client], "azp": client, "auth_time": now(),
            "iat": now(), "exp": now() + 1800, "jti": uuid::Uuid::now_v7().to_string(),
            "sid": "sid-1",
        })));
        let refresh = refresh.unwrap_or_else(|| self.keep(random("rt-")));
        self.refresh
            .lock()
            .unwrap()
            .insert(refresh.clone(), user.into());
        json!({
            "access_token": self.access(user, client, &["openid", "profile"]),
            "refresh_token": refresh,
            "scope": "openid profile",
            "id_token": id_token,
            "token_type": "Bearer",
            "expires_in": 299,
        })
    }
}

fn reply(status: StatusCode, body: Option<Value>) -> Response<Full<Bytes>> {
    let mut b = Response::builder()
        .status(status)
        .header("cache-control", "no-store");
    if body.is_some() {
        b = b.header("content-type", "application/json;charset=UTF-8");
    }
    b.body(Full::new(Bytes::from(
        body.map(|v| v.to_string()).unwrap_or_default(),
    )))
    .unwrap()
}

fn redirect(location: &str, cookie: Option<&str>) -> Response<Full<Bytes>> {
    let mut b = Response::builder()
        .status(StatusCode::FOUND)
        .header("location", location);
    if let Some(c) = cookie {
        b = b.header(
            "set-cookie",
            format!("JSESSIONID={c}; Path=/; HttpOnly; SameSite=Lax"),
        );
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

fn oauth_error(status: StatusCode, error: &str) -> Response<Full<Bytes>> {
    reply(status, Some(json!({ "error": error })))
}

fn jwt_claims(t: &str) -> Option<Value> {
    let payload = t.split('.').nth(1)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&raw).ok()
}

/// The client of `Authorization: Basic` when its secret is right (client_secret_basic).
fn client(req_auth: Option<&str>) -> Result<String, ()> {
    let raw = req_auth.and_then(|a| a.strip_prefix("Basic ")).ok_or(())?;
    let pair = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .map_err(|_| ())?;
    let pair = String::from_utf8(pair).map_err(|_| ())?;
    match pair.split_once(':') {
        Some(("web-client", s)) if s == WEB_SECRET => Ok("web-client".into()),
        Some(("reporting-service", s)) if s == SVC_SECRET => Ok("reporting-service".into()),
        _ => Err(()),
    }
}

async fn handle(sas: Sas, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
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
    let session_id = req
        .headers()
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| {
            c.split(';')
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| *k == "JSESSIONID")
                .map(|(_, v)| v.to_string())
        });
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let f = |k: &str| form.get(k).cloned().unwrap_or_default();
    let user_of_session = session_id
        .as_ref()
        .and_then(|s| sas.sessions.lock().unwrap().get(s).cloned().flatten());
    let base = sas.base.lock().unwrap().clone();
    let resp = match (method.as_str(), path.as_str()) {
        ("GET", "/oauth2/jwks") => {
            let jwk: Value =
                serde_json::from_slice(&std::fs::read(format!("{FIX}rsa1.jwk.json")).unwrap())
                    .unwrap();
            reply(StatusCode::OK, Some(json!({ "keys": [jwk] })))
        }
        ("GET", "/oauth2/authorize") => match user_of_session {
            // No authenticated session: the request is saved in a new session, and the
            // browser sent to the login page.
            None => {
                let sid = sas.keep(random("anon"));
                sas.sessions.lock().unwrap().insert(sid.clone(), None);
                redirect(&format!("{base}/login"), Some(&sid))
            }
            // Consent not given yet: the consent page.
            Some(_) => Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "text/html;charset=UTF-8")
                .body(Full::new(Bytes::from(
                    "<html><h1>Consent required</h1><form method=\"post\" action=\"/oauth2/authorize\"></form></html>",
                )))
                .unwrap(),
        },
        ("POST", "/oauth2/authorize") => match user_of_session {
            None => redirect(&format!("{base}/login"), None),
            Some(user) => {
                let state = f("state");
                if form.contains_key("scope") {
                    let code = sas.keep(random("code-"));
                    sas.codes.lock().unwrap().insert(code.clone(), user);
                    redirect(&format!("{REDIRECT}?code={code}&state={state}"), None)
                } else {
                    // No scope approved: access_denied, in the redirect (RFC 6749 §4.1.2.1).
                    redirect(
                        &format!("{REDIRECT}?error=access_denied&error_description=OAuth%202.0%20Parameter%3A%20scope&error_uri=https%3A%2F%2Fdatatracker.ietf.org%2Fdoc%2Fhtml%2Frfc6749%23section-4.1.2.1&state={state}"),
                        None,
                    )
                }
            }
        },
        ("POST", "/login") => {
            if f("username") == "alice" && f("password") == ALICE_PW {
                // Session-fixation protection: a new session id for the authenticated session.
                if let Some(old) = &session_id {
                    sas.sessions.lock().unwrap().remove(old);
                }
                let sid = sas.keep(random("auth"));
                sas.sessions
                    .lock()
                    .unwrap()
                    .insert(sid.clone(), Some("alice".into()));
                redirect(
                    &format!("{base}/oauth2/authorize?response_type=code&client_id=web-client&scope=openid%20profile&state=st-1&redirect_uri={REDIRECT}&continue"),
                    Some(&sid),
                )
            } else {
                redirect(&format!("{base}/login?error"), None)
            }
        }
        ("GET" | "POST", "/connect/logout") => {
            let hint = form
                .get("id_token_hint")
                .or(query.get("id_token_hint"))
                .cloned()
                .unwrap_or_default();
            match jwt_claims(&hint) {
                Some(_) => {
                    if let Some(s) = &session_id {
                        sas.sessions.lock().unwrap().remove(s);
                    }
                    redirect(&format!("{POST_LOGOUT}?state={}", f("state")), None)
                }
                None => oauth_error(StatusCode::BAD_REQUEST, "invalid_token"),
            }
        }
        ("POST", "/oauth2/token") => {
            let c = client(auth.as_deref());
            match (f("grant_type").as_str(), c) {
                (_, Err(())) => oauth_error(StatusCode::UNAUTHORIZED, "invalid_client"),
                ("authorization_code", Ok(c)) => {
                    match sas.codes.lock().unwrap().remove(&f("code")) {
                        Some(user) => reply(StatusCode::OK, Some(sas.user_tokens(&user, &c, None))),
                        None => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant"),
                    }
                }
                ("refresh_token", Ok(c)) => {
                    let rt = f("refresh_token");
                    let user = sas.refresh.lock().unwrap().get(&rt).cloned();
                    match user {
                        // reuseRefreshTokens: the same refresh token comes back.
                        Some(user) => {
                            reply(StatusCode::OK, Some(sas.user_tokens(&user, &c, Some(rt))))
                        }
                        None => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant"),
                    }
                }
                ("client_credentials", Ok(c)) => reply(
                    StatusCode::OK,
                    Some(json!({
                        "access_token": sas.access(&c, &c, &["reports.read"]),
                        "scope": "reports.read", "token_type": "Bearer", "expires_in": 299,
                    })),
                ),
                _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
            }
        }
        ("POST", "/oauth2/revoke") => match client(auth.as_deref()) {
            Ok(_) => {
                let t = f("token");
                sas.refresh.lock().unwrap().remove(&t);
                if let Some(jti) = jwt_claims(&t).and_then(|c| c["jti"].as_str().map(String::from)) {
                    sas.revoked.lock().unwrap().insert(jti);
                }
                reply(StatusCode::OK, None)
            }
            Err(()) => oauth_error(StatusCode::UNAUTHORIZED, "invalid_client"),
        },
        ("POST", "/oauth2/introspect") => match client(auth.as_deref()) {
            Ok(_) => {
                let t = f("token");
                let claims = jwt_claims(&t).filter(|c| {
                    !sas.revoked.lock().unwrap().contains(c["jti"].as_str().unwrap_or(""))
                });
                match claims {
                    Some(c) => reply(
                        StatusCode::OK,
                        Some(json!({
                            "active": true, "sub": c["sub"], "aud": c["aud"], "nbf": c["nbf"],
                            "scope": "openid profile", "iss": c["iss"], "exp": c["exp"],
                            "iat": c["iat"], "jti": c["jti"], "client_id": c["aud"][0],
                            "token_type": "Bearer",
                        })),
                    ),
                    None => reply(StatusCode::OK, Some(json!({ "active": false }))),
                }
            }
            Err(()) => oauth_error(StatusCode::UNAUTHORIZED, "invalid_client"),
        },
        ("GET", "/userinfo") => {
            let claims = auth
                .as_deref()
                .and_then(|a| a.strip_prefix("Bearer "))
                .and_then(|t| {
                    // Only a token this server signed (the stand-in checks its key id and the
                    // signature the sidecar also checks: a forged one carries another).
                    let h = jsonwebtoken::decode_header(t).ok()?;
                    let key = jsonwebtoken::DecodingKey::from_rsa_pem(
                        &std::fs::read(format!("{FIX}rsa1.pub.pem")).unwrap(),
                    )
                    .ok()?;
                    let mut v = jsonwebtoken::Validation::new(Algorithm::RS256);
                    v.validate_aud = false;
                    (h.kid.as_deref() == Some("rsa1"))
                        .then(|| jsonwebtoken::decode::<Value>(t, &key, &v).ok())
                        .flatten()
                        .map(|d| d.claims)
                });
            match claims {
                Some(c) => reply(StatusCode::OK, Some(json!({ "sub": c["sub"] }))),
                None => Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .header(
                        "www-authenticate",
                        "Bearer error=\"invalid_token\", error_description=\"An error occurred while attempting to decode the Jwt: Signed JWT rejected: Invalid signature\", error_uri=\"https://tools.ietf.org/html/rfc6750#section-3.1\"",
                    )
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            }
        }
        _ => reply(StatusCode::NOT_FOUND, None),
    };
    Ok(resp)
}

async fn spring() -> (Sas, std::net::SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sas = Sas::default();
    *sas.base.lock().unwrap() = format!("http://{addr}");
    support::serve::spawn(listener, sas.clone(), handle);
    (sas, addr)
}

/// A browser's JSESSIONID, kept from the Set-Cookie of each answer.
#[derive(Default)]
struct Jar(Option<String>);

impl Jar {
    fn take(&mut self, r: &Reply) {
        if let Some(c) = r.headers.get("set-cookie").and_then(|v| v.to_str().ok()) {
            let v = c.split(';').next().unwrap();
            self.0 = Some(v.strip_prefix("JSESSIONID=").unwrap().to_string());
        }
    }
    fn header(&self) -> Option<String> {
        self.0.as_ref().map(|v| format!("JSESSIONID={v}"))
    }
}

#[tokio::test]
async fn the_spring_authorization_server_preset_follows_code_tokens_and_the_session() {
    let (sas, up) = spring().await;
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("sas.db");
    let base = format!("http://{up}");
    for (k, v) in [
        ("SAS_UPSTREAM", base.clone()),
        ("SAS_ISSUER", base.clone()),
        ("SAS_JWKS_URL", format!("{base}/oauth2/jwks")),
        (
            "FINGERPRINT_KEY",
            "spring-preset-fingerprint-key".to_string(),
        ),
        ("AUTHTRAIL_STORE", format!("sqlite://{}", db.display())),
    ] {
        std::env::set_var(k, v);
    }
    let cfg = authtrail::config::load_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/presets/spring-authorization-server.yaml"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let mut sc = harness::start_config(cfg, db.clone(), tmp).await;
    let call = |id: &'static str,
                method: Method,
                path: String,
                fields: Vec<(&'static str, String)>,
                extra: Vec<(&'static str, String)>| {
        let url = sc.url(&path);
        async move {
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(fields.iter().map(|(k, v)| (*k, v.as_str())))
                .finish();
            let mut h: Vec<(&str, &str)> = vec![("x-request-id", id)];
            if !body.is_empty() {
                h.push(("content-type", "application/x-www-form-urlencoded"));
            }
            for (k, v) in &extra {
                h.push((k, v.as_str()));
            }
            send(method, &url, &h, Bytes::from(body)).await.unwrap()
        }
    };
    let web = basic("web-client", WEB_SECRET);
    let authorize = format!("/oauth2/authorize?response_type=code&client_id=web-client&scope=openid%20profile&state=st-1&redirect_uri={REDIRECT}");
    let mut jar = Jar::default();
    let cookie = |jar: &Jar| {
        jar.header()
            .map(|c| vec![("cookie", c)])
            .unwrap_or_default()
    };

    // 00: no session: to the login page, a session keeps the request.
    let r = call(
        "00-authorize-anon",
        Method::GET,
        authorize.clone(),
        vec![],
        vec![],
    )
    .await;
    assert_eq!(r.status, 302);
    assert_eq!(r.headers["location"], format!("{base}/login"));
    jar.take(&r);
    // 01, 02: the form login, wrong then right; the right one changes the session id.
    let login = |pw: &str| {
        vec![
            ("username", "alice".to_string()),
            ("password", pw.to_string()),
            ("_csrf", "csrf-1".into()),
        ]
    };
    let r = call(
        "01-login-wrong",
        Method::POST,
        "/login".into(),
        login("wrong-pw-55"),
        cookie(&jar),
    )
    .await;
    assert_eq!(r.headers["location"], format!("{base}/login?error"));
    let anon = jar.0.clone().unwrap();
    let r = call(
        "02-login",
        Method::POST,
        "/login".into(),
        login(ALICE_PW),
        cookie(&jar),
    )
    .await;
    assert_eq!(r.status, 302);
    jar.take(&r);
    assert_ne!(jar.0.as_deref(), Some(anon.as_str()), "a new session id");
    // 03: the consent page; 04: the consent, with a code in the redirect.
    let r = call(
        "03-authorize",
        Method::GET,
        authorize.clone(),
        vec![],
        cookie(&jar),
    )
    .await;
    assert_eq!(r.status, 200);
    let consent = vec![
        ("client_id", "web-client".to_string()),
        ("state", "st-1".into()),
        ("scope", "profile".into()),
    ];
    let r = call(
        "04-consent",
        Method::POST,
        "/oauth2/authorize".into(),
        consent,
        cookie(&jar),
    )
    .await;
    let location = r.headers["location"].to_str().unwrap().to_string();
    let code = location
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    // 05, 06: the code exchanged, then replayed.
    let exchange = vec![
        ("grant_type", "authorization_code".to_string()),
        ("code", code.clone()),
        ("redirect_uri", REDIRECT.into()),
    ];
    let r = call(
        "05-code-exchange",
        Method::POST,
        "/oauth2/token".into(),
        exchange.clone(),
        vec![("authorization", web.clone())],
    )
    .await;
    assert_eq!(r.status, 200);
    let (at1, rt1, idt) = (
        r.json()["access_token"].as_str().unwrap().to_string(),
        r.json()["refresh_token"].as_str().unwrap().to_string(),
        r.json()["id_token"].as_str().unwrap().to_string(),
    );
    let r = call(
        "06-code-replayed",
        Method::POST,
        "/oauth2/token".into(),
        exchange,
        vec![("authorization", web.clone())],
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.json()["error"].clone()),
        (400, json!("invalid_grant"))
    );
    // 07: refresh (the same refresh token comes back).
    let refresh = vec![
        ("grant_type", "refresh_token".to_string()),
        ("refresh_token", rt1.clone()),
    ];
    let r = call(
        "07-refresh",
        Method::POST,
        "/oauth2/token".into(),
        refresh.clone(),
        vec![("authorization", web.clone())],
    )
    .await;
    assert_eq!(r.json()["refresh_token"], rt1.as_str());
    // 08, 09: userinfo with the access token, and with a forged one.
    let r = call(
        "08-userinfo",
        Method::GET,
        "/userinfo".into(),
        vec![],
        vec![("authorization", format!("Bearer {at1}"))],
    )
    .await;
    assert_eq!(r.json()["sub"], "alice");
    let forged = {
        let key = EncodingKey::from_rsa_pem(&std::fs::read(format!("{FIX}rsa2.key.pem")).unwrap())
            .unwrap();
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("rsa1".into());
        encode(
            &h,
            &json!({ "sub": "admin", "aud": ["web-client"], "iss": base, "exp": now() + 300 }),
            &key,
        )
        .unwrap()
    };
    let r = call(
        "09-userinfo-forged",
        Method::GET,
        "/userinfo".into(),
        vec![],
        vec![("authorization", format!("Bearer {forged}"))],
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.body.is_empty());
    // 10: a resource server introspects the access token.
    let r = call(
        "10-introspect",
        Method::POST,
        "/oauth2/introspect".into(),
        vec![("token", at1.clone())],
        vec![("authorization", web.clone())],
    )
    .await;
    assert_eq!(r.json()["active"], true);
    // 11, 12: the refresh token revoked, then refused.
    let r = call(
        "11-revoke",
        Method::POST,
        "/oauth2/revoke".into(),
        vec![
            ("token", rt1.clone()),
            ("token_type_hint", "refresh_token".into()),
        ],
        vec![("authorization", web.clone())],
    )
    .await;
    assert_eq!(r.status, 200);
    let r = call(
        "12-refresh-revoked",
        Method::POST,
        "/oauth2/token".into(),
        refresh,
        vec![("authorization", web.clone())],
    )
    .await;
    assert_eq!(r.status, 400);
    // 13, 14: client credentials, good and with a wrong secret.
    let cc = vec![
        ("grant_type", "client_credentials".to_string()),
        ("scope", "reports.read".into()),
    ];
    let r = call(
        "13-client-credentials",
        Method::POST,
        "/oauth2/token".into(),
        cc.clone(),
        vec![("authorization", basic("reporting-service", SVC_SECRET))],
    )
    .await;
    assert_eq!(r.status, 200);
    let svc_at = r.json()["access_token"].as_str().unwrap().to_string();
    let r = call(
        "14-client-wrong-secret",
        Method::POST,
        "/oauth2/token".into(),
        cc,
        vec![(
            "authorization",
            basic("reporting-service", "wrong-secret-77"),
        )],
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.json()["error"].clone()),
        (401, json!("invalid_client"))
    );
    // 15: consent denied (no scope approved): the error travels in the redirect.
    let r = call(
        "15-consent-denied",
        Method::POST,
        "/oauth2/authorize".into(),
        vec![
            ("client_id", "web-client".to_string()),
            ("state", "st-2".into()),
        ],
        cookie(&jar),
    )
    .await;
    assert!(r.headers["location"]
        .to_str()
        .unwrap()
        .contains("error=access_denied"));
    // 16: RP-initiated logout with the ID token; 17: the old session cookie after it.
    let logout = vec![
        ("id_token_hint", idt.clone()),
        ("post_logout_redirect_uri", POST_LOGOUT.into()),
        ("state", "st-3".into()),
    ];
    let r = call(
        "16-oidc-logout",
        Method::POST,
        "/connect/logout".into(),
        logout,
        cookie(&jar),
    )
    .await;
    assert_eq!(r.headers["location"], format!("{POST_LOGOUT}?state=st-3"));
    let r = call(
        "17-authorize-after-logout",
        Method::GET,
        authorize,
        vec![],
        cookie(&jar),
    )
    .await;
    assert_eq!(r.headers["location"], format!("{base}/login"));
    sc.stop().await;

    let evs = sc.events().await;
    let dump: String = evs.iter().map(|e| summary(e) + "\n").collect();
    eprintln!("{dump}");
    assert_eq!(evs.len(), 18, "{dump}");
    let ev = |id: &str| {
        evs.iter()
            .find(|e| e.http.request_id == id)
            .unwrap_or_else(|| panic!("{id}:\n{dump}"))
    };
    let (l02, l04, l05) = (
        lineage(ev("02-login")),
        lineage(ev("04-consent")),
        lineage(ev("05-code-exchange")),
    );
    type Who<'a> = (Option<&'a str>, bool, Option<&'a str>);
    let issued_sub: Who = (
        Some("alice"),
        true,
        Some("claim:sub@response_body:/access_token"),
    );
    let web_issued = Some((
        "app-web",
        true,
        "lookup:client_app(claim:aud@response_body:/access_token)",
    ));
    let web_basic = Some(("app-web", false, "lookup:client_app(basic_auth:user)"));
    let web_query = Some(("app-web", false, "lookup:client_app(query:client_id)"));
    // The session the authorization request opened names the client's app at the login form.
    let web_session = Some(("app-web", false, "session:JSESSIONID"));
    let web_form = Some(("app-web", false, "lookup:client_app(form:client_id)"));
    fn by(l: &str) -> (Option<&str>, bool, Option<&str>) {
        (Some("alice"), false, Some(l))
    }
    let session = by("session:JSESSIONID");
    let service: Who = (Some("web-client"), false, Some("basic_auth:user"));
    #[rustfmt::skip]
    let want: Vec<Row> = vec![
        ("00-authorize-anon", "oauth.authorize", Outcome::Success, None, (None, false, None), web_query),
        ("01-login-wrong", "auth.login", Outcome::Failure, Some("invalid_credentials"), (Some("alice"), false, Some("form:username")), web_session),
        ("02-login", "auth.login", Outcome::Success, None, (Some("alice"), false, Some("form:username")), web_session),
        ("03-authorize", "oauth.authorize", Outcome::Success, None, session, web_query),
        ("04-consent", "oauth.consent", Outcome::Success, None, session, web_form),
        ("05-code-exchange", "token.exchange", Outcome::Success, None, issued_sub, web_issued),
        ("06-code-replayed", "token.exchange", Outcome::Failure, Some("invalid_grant"), by(&l04), web_basic),
        ("07-refresh", "token.refresh", Outcome::Success, None, issued_sub, web_issued),
        ("08-userinfo", "account.read", Outcome::Success, None, (Some("alice"), true, Some("claim:sub@bearer")), Some(("app-web", true, "lookup:client_app(claim:aud@bearer)"))),
        ("09-userinfo-forged", "account.read", Outcome::Failure, Some("token_bad_signature"), (Some("admin"), false, Some("claimed:sub@bearer")), Some(("app-web", false, "lookup:client_app(claimed:aud@bearer)"))),
        ("10-introspect", "token.verify", Outcome::Success, None, service, web_basic),
        ("11-revoke", "token.revoke", Outcome::Success, None, service, Some(("app-web", true, l05.as_str()))),
        ("12-refresh-revoked", "token.refresh", Outcome::Failure, Some("invalid_grant"), (Some("alice"), true, Some(l05.as_str())), Some(("app-web", true, l05.as_str()))),
        ("13-client-credentials", "token.issue", Outcome::Success, None, (Some("reporting-service"), true, Some("claim:sub@response_body:/access_token")), Some(("app-reporting", true, "lookup:client_app(claim:aud@response_body:/access_token)"))),
        ("14-client-wrong-secret", "token.issue", Outcome::Failure, Some("invalid_client"), (Some("reporting-service"), false, Some("basic_auth:user")), Some(("app-reporting", false, "lookup:client_app(basic_auth:user)"))),
        ("15-consent-denied", "oauth.consent", Outcome::Failure, Some("access_denied"), session, web_form),
        ("16-oidc-logout", "auth.logout", Outcome::Success, None, (Some("alice"), true, Some("claim:sub@form:id_token_hint")), Some(("app-web", true, "lookup:client_app(claim:aud@form:id_token_hint)"))),
        ("17-authorize-after-logout", "oauth.authorize", Outcome::Success, None, (None, false, None), web_query),
    ];
    for (id, ty, outcome, reason, who, app_want) in &want {
        let e = ev(id);
        assert_eq!(
            (e.event_type.as_str(), e.outcome, e.reason.as_deref()),
            (*ty, *outcome, *reason),
            "{}",
            summary(e)
        );
        assert_eq!(actor(e), *who, "{}", summary(e));
        assert_eq!(app(e), *app_want, "{}", summary(e));
    }
    let _ = l02;
    // The revoked and the introspected token's owner is the target; services act on users.
    assert_eq!(
        target(ev("11-revoke")),
        Some(("user", "alice", l05.as_str()))
    );
    assert_eq!(
        target(ev("10-introspect")),
        Some(("user", "alice", "response_body:/sub"))
    );
    assert_eq!(ev("10-introspect").details["active"], true);
    assert_eq!(ev("11-revoke").actor.kind, ActorKind::Service);
    assert_eq!(ev("13-client-credentials").actor.kind, ActorKind::Service);
    // The session: bound at the login, ended by the logout, unknown after it.
    assert!(ev("02-login")
        .tokens
        .iter()
        .any(|t| t.kind == "session" && t.source == "set_cookie:JSESSIONID"));
    assert_eq!(ev("16-oidc-logout").details["session_ended"], true);
    assert_eq!(
        ev("17-authorize-after-logout").details["lineage"]["cookie:JSESSIONID"]["ended"],
        "logout"
    );
    // The code: issued in the consent's redirect (stored masked), presented at the exchange.
    assert!(ev("04-consent")
        .tokens
        .iter()
        .any(|t| t.kind == "code" && t.source == "location:code"));
    assert_eq!(ev("04-consent").details["state"], "st-1");
    assert_eq!(ev("01-login-wrong").details["reason_text"], "error");

    let store = harness::store_bytes(&db);
    let logs = harness::captured_logs();
    let mut secrets = sas.secrets.lock().unwrap().clone();
    secrets.extend(
        [
            ALICE_PW,
            WEB_SECRET,
            SVC_SECRET,
            "wrong-secret-77",
            "wrong-pw-55",
        ]
        .map(String::from),
    );
    secrets.extend([web.clone(), forged, svc_at, code]);
    for s in &secrets {
        assert!(!contains(&store, s), "{s:.24}… is in the store");
        assert!(!logs.contains(s.as_str()), "{s:.24}… is in the logs");
    }
}
