//! Demo auth server — a stand-in for "your existing auth server". NOT part of authtrail.
//!
//! A small JSON auth API with in-memory state, used by the `demo` example and by the end-to-end
//! tests so the sidecar has something realistic to sit in front of: logins, refresh-token
//! rotation, logout, password reset, email verification and an admin-only deactivation.
//! Tokens are HS256 JWTs signed with the secret given to [`spawn`].
//!
//! It is included by path from both places (`#[path = ".../demo_auth/mod.rs"] mod demo_auth;`),
//! so it must only use external crates, never `crate::`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;

/// Request bodies above this size get 413; nothing is ever read unbounded.
const BODY_LIMIT: usize = 64 * 1024;
/// Access token lifetime, in seconds (also the `expires_in` of a token response).
const ACCESS_TTL: u64 = 15 * 60;
/// Refresh token lifetime, in seconds.
const REFRESH_TTL: u64 = 7 * 24 * 60 * 60;

type Resp = Response<Full<Bytes>>;
type Fields = Map<String, Value>;

/// A client error: a status and the `{"error": ...}` code.
struct Fail(StatusCode, &'static str);

impl Fail {
    const INVALID_REQUEST: Fail = Fail(StatusCode::BAD_REQUEST, "invalid_request");
    const INVALID_CODE: Fail = Fail(StatusCode::BAD_REQUEST, "invalid_code");
    const INVALID_GRANT: Fail = Fail(StatusCode::UNAUTHORIZED, "invalid_grant");
    const INVALID_TOKEN: Fail = Fail(StatusCode::UNAUTHORIZED, "invalid_token");
    const NOT_FOUND: Fail = Fail(StatusCode::NOT_FOUND, "not_found");
}

/// A running demo auth server.
#[allow(dead_code)]
pub struct DemoAuth {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

/// Serves on `listener` until the process (or runtime) ends. Spawns a task; returns immediately.
#[allow(dead_code)]
pub fn spawn(listener: TcpListener, secret: Vec<u8>) -> DemoAuth {
    spawn_with_shutdown(listener, secret, std::future::pending())
}

/// Like [`spawn`], but stops accepting connections once `shutdown` resolves.
#[allow(dead_code)]
pub fn spawn_with_shutdown(
    listener: TcpListener,
    secret: Vec<u8>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> DemoAuth {
    // An unbound listener has no address; 0.0.0.0:0 is an honest "unknown" rather than a panic.
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let shared = Arc::new(Shared {
        secret,
        requests: AtomicU64::new(0),
        state: Mutex::new(State::seeded()),
    });
    tokio::spawn(serve(listener, shared.clone(), shutdown));
    DemoAuth { addr, shared }
}

#[allow(dead_code)]
impl DemoAuth {
    /// Count of all requests received, on any path, valid or not.
    pub fn requests_seen(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// The pending password-reset code for `email` (what the real server would e-mail).
    pub fn last_reset_code(&self, email: &str) -> Option<String> {
        self.shared.lock().reset_codes.get(email).cloned()
    }

    /// The pending e-mail verification code for `email`.
    pub fn last_verify_code(&self, email: &str) -> Option<String> {
        self.shared.lock().verify_codes.get(email).cloned()
    }
}

async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // e.g. EMFILE: back off instead of spinning.
                    tracing::warn!(%error, "demo auth: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req).await) }
            });
            let conn = auto::Builder::new(TokioExecutor::new());
            if let Err(error) = conn.serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!(%error, "demo auth: connection ended with an error");
            }
        });
    }
}

struct Shared {
    secret: Vec<u8>,
    requests: AtomicU64,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not turn every later request into a panic too.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct User {
    id: &'static str,
    username: &'static str,
    password: String,
    app: &'static str,
    role: &'static str,
    email: &'static str,
    active: bool,
    email_verified: bool,
}

#[derive(Default)]
struct State {
    users: Vec<User>,
    /// `jti`s of refresh tokens that were rotated or logged out.
    revoked: HashSet<String>,
    reset_codes: HashMap<String, String>,
    verify_codes: HashMap<String, String>,
}

/// id, username, password, app, role, e-mail.
#[rustfmt::skip]
const USERS: [[&str; 6]; 3] = [
    ["u-alice", "alice", "alice-pw-7Qx!", "app-alpha", "user", "alice@example.com"],
    ["u-bob", "bob", "bob-pw-3Zk?", "app-beta", "user", "bob@example.com"],
    ["u-root", "root", "root-pw-9Lm#", "app-alpha", "admin", "root@example.com"],
];

impl State {
    fn seeded() -> Self {
        let users = USERS.map(|[id, username, password, app, role, email]| User {
            id,
            username,
            password: password.to_owned(),
            app,
            role,
            email,
            active: true,
            email_verified: false,
        });
        let users = users.into();
        State {
            users,
            ..State::default()
        }
    }

    fn user(&self, pred: impl Fn(&User) -> bool) -> Option<&User> {
        self.users.iter().find(|u| pred(u))
    }

    fn user_mut(&mut self, pred: impl Fn(&User) -> bool) -> Option<&mut User> {
        self.users.iter_mut().find(|u| pred(u))
    }
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    app_id: String,
    role: String,
    jti: String,
    iat: u64,
    exp: u64,
    typ: String,
}

async fn handle(s: &Shared, req: Request<Incoming>) -> Resp {
    s.requests.fetch_add(1, Ordering::SeqCst);
    let bearer = bearer(req.headers()).map(str::to_owned);
    let bearer = bearer.as_deref();
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let result = match (method, segments.as_slice()) {
        (Method::GET, ["healthz"]) => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"ok")));
            let plain = HeaderValue::from_static("text/plain; charset=utf-8");
            r.headers_mut().insert(CONTENT_TYPE, plain);
            Ok(r)
        }
        (Method::GET, ["v1", "public", "info"]) => {
            Ok(reply(StatusCode::OK, json!({"name": "demo-auth"})))
        }
        (Method::GET, ["v1", "me"]) => me(s, bearer),
        (Method::POST, ["v1", "apps", app, "users", user, "deactivate"]) => {
            deactivate(s, bearer, app, user)
        }
        (Method::POST, ["v1", "sessions"]) => with_fields(req, |f| login(s, f)).await,
        (Method::POST, ["v1", "token", "refresh"]) => with_fields(req, |f| refresh(s, f)).await,
        (Method::POST, ["v1", "sessions", "logout"]) => with_fields(req, |f| logout(s, f)).await,
        (Method::POST, ["v1", "password", "reset"]) => {
            with_fields(req, |f| send_code(s, f, Code::Reset)).await
        }
        (Method::POST, ["v1", "password", "reset", "complete"]) => {
            with_fields(req, |f| reset_complete(s, f)).await
        }
        (Method::POST, ["v1", "email", "verify", "request"]) => {
            with_fields(req, |f| send_code(s, f, Code::Verify)).await
        }
        (Method::POST, ["v1", "email", "verify"]) => with_fields(req, |f| verify_email(s, f)).await,
        _ => Err(Fail::NOT_FOUND),
    };
    result.unwrap_or_else(Fail::into_response)
}

fn login(s: &Shared, f: &Fields) -> Result<Resp, Fail> {
    let (username, password) = (field(f, "username")?, field(f, "password")?);
    let state = s.lock();
    let user = state
        .users
        .iter()
        .find(|u| u.username == username && u.password == password)
        .ok_or(Fail(StatusCode::UNAUTHORIZED, "invalid_credentials"))?;
    // Checked after the password so a wrong guess cannot tell which accounts are disabled.
    if !user.active {
        return Err(Fail(StatusCode::FORBIDDEN, "account_disabled"));
    }
    s.token_pair(user)
}

fn refresh(s: &Shared, f: &Fields) -> Result<Resp, Fail> {
    let presented = field(f, "refresh_token")?;
    let claims = s.verify(presented, "refresh").ok_or(Fail::INVALID_GRANT)?;
    let mut state = s.lock();
    // Check and revoke under one lock: a refresh token can be rotated exactly once.
    if !state.revoked.insert(claims.jti) {
        return Err(Fail::INVALID_GRANT);
    }
    match state.user(|u| u.id == claims.sub) {
        Some(user) if user.active => s.token_pair(user),
        _ => Err(Fail::INVALID_GRANT),
    }
}

fn logout(s: &Shared, f: &Fields) -> Result<Resp, Fail> {
    let presented = field(f, "refresh_token")?;
    let claims = s
        .verify(presented, "refresh")
        .ok_or(Fail::INVALID_REQUEST)?;
    s.lock().revoked.insert(claims.jti);
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}

#[derive(Clone, Copy)]
enum Code {
    Reset,
    Verify,
}

impl State {
    fn codes(&mut self, kind: Code) -> &mut HashMap<String, String> {
        match kind {
            Code::Reset => &mut self.reset_codes,
            Code::Verify => &mut self.verify_codes,
        }
    }

    /// Consumes `email`'s pending code if it matches (codes work once); returns that user.
    fn redeem(&mut self, kind: Code, email: &str, code: &str) -> Result<&mut User, Fail> {
        let codes = self.codes(kind);
        if codes.get(email).is_none_or(|c| c != code) {
            return Err(Fail::INVALID_CODE);
        }
        codes.remove(email);
        self.user_mut(|u| u.email == email)
            .ok_or(Fail::INVALID_CODE)
    }
}

/// Stores a fresh code for a known e-mail; answers 202 either way so existence does not leak.
fn send_code(s: &Shared, f: &Fields, kind: Code) -> Result<Resp, Fail> {
    let email = field(f, "email")?;
    let mut state = s.lock();
    if state.users.iter().any(|u| u.email == email) {
        state.codes(kind).insert(email.to_owned(), six_digit_code());
    }
    Ok(reply(StatusCode::ACCEPTED, json!({"status": "sent"})))
}

fn reset_complete(s: &Shared, f: &Fields) -> Result<Resp, Fail> {
    let (email, code) = (field(f, "email")?, field(f, "code")?);
    let new_password = field(f, "new_password")?;
    let mut state = s.lock();
    let user = state.redeem(Code::Reset, email, code)?;
    user.password = new_password.to_owned();
    let body = json!({"status": "reset", "user": {"id": user.id}});
    Ok(reply(StatusCode::OK, body))
}

fn verify_email(s: &Shared, f: &Fields) -> Result<Resp, Fail> {
    let (email, code) = (field(f, "email")?, field(f, "code")?);
    let mut state = s.lock();
    let user = state.redeem(Code::Verify, email, code)?;
    user.email_verified = true;
    let body = json!({"status": "verified", "user": {"id": user.id}});
    Ok(reply(StatusCode::OK, body))
}

fn deactivate(s: &Shared, bearer: Option<&str>, app: &str, user_id: &str) -> Result<Resp, Fail> {
    let claims = s.access_claims(bearer)?;
    if claims.role != "admin" || claims.app_id != app {
        return Err(Fail(StatusCode::FORBIDDEN, "forbidden"));
    }
    let mut state = s.lock();
    // A user of another app is as unknown to this app's admin as one that does not exist.
    let user = state
        .user_mut(|u| u.id == user_id && u.app == app)
        .ok_or(Fail::NOT_FOUND)?;
    user.active = false;
    let body = json!({"status": "deactivated", "user": {"id": user.id}});
    Ok(reply(StatusCode::OK, body))
}

fn me(s: &Shared, bearer: Option<&str>) -> Result<Resp, Fail> {
    let claims = s.access_claims(bearer)?;
    let state = s.lock();
    let u = state
        .user(|u| u.id == claims.sub)
        .ok_or(Fail::INVALID_TOKEN)?;
    let user = json!({
        "id": u.id, "username": u.username, "app": u.app, "role": u.role,
        "email": u.email, "email_verified": u.email_verified, "active": u.active,
    });
    Ok(reply(StatusCode::OK, json!({ "user": user })))
}

impl Shared {
    fn token_pair(&self, user: &User) -> Result<Resp, Fail> {
        let body = json!({
            "access_token": self.sign(user, "access", ACCESS_TTL)?,
            "refresh_token": self.sign(user, "refresh", REFRESH_TTL)?,
            "token_type": "Bearer",
            "expires_in": ACCESS_TTL,
            "user": {"id": user.id, "app": user.app},
        });
        Ok(reply(StatusCode::OK, body))
    }

    fn sign(&self, user: &User, typ: &str, ttl: u64) -> Result<String, Fail> {
        let iat = unix_now();
        let claims = Claims {
            sub: user.id.to_owned(),
            app_id: user.app.to_owned(),
            role: user.role.to_owned(),
            jti: uuid::Uuid::now_v7().to_string(),
            iat,
            exp: iat + ttl,
            typ: typ.to_owned(),
        };
        let key = EncodingKey::from_secret(&self.secret);
        encode(&Header::new(Algorithm::HS256), &claims, &key).map_err(|e| {
            tracing::error!(error = %e, "demo auth: signing failed");
            Fail(StatusCode::INTERNAL_SERVER_ERROR, "server_error")
        })
    }

    /// Claims of a token with a valid signature, unexpired, of the wanted `typ`.
    fn verify(&self, token: &str, typ: &str) -> Option<Claims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        let key = DecodingKey::from_secret(&self.secret);
        let claims = decode::<Claims>(token, &key, &validation).ok()?.claims;
        (claims.typ == typ).then_some(claims)
    }

    fn access_claims(&self, bearer: Option<&str>) -> Result<Claims, Fail> {
        bearer
            .and_then(|t| self.verify(t, "access"))
            .ok_or(Fail::INVALID_TOKEN)
    }
}

/// Reads the capped body into fields, then runs `handler` on them.
async fn with_fields(
    req: Request<Incoming>,
    handler: impl FnOnce(&Fields) -> Result<Resp, Fail>,
) -> Result<Resp, Fail> {
    handler(&read_fields(req).await?)
}

/// A JSON object body or, for `application/x-www-form-urlencoded`, the form fields.
async fn read_fields(req: Request<Incoming>) -> Result<Fields, Fail> {
    let is_form = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.trim_start().to_ascii_lowercase();
            ct.starts_with("application/x-www-form-urlencoded")
        });
    // `collect` is safe here: `Limited` stops it at BODY_LIMIT.
    #[allow(clippy::disallowed_methods)]
    let collected = Limited::new(req.into_body(), BODY_LIMIT).collect().await;
    let bytes = match collected {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return Err(Fail(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"))
        }
        Err(_) => return Err(Fail::INVALID_REQUEST),
    };
    if is_form {
        let pairs = form_urlencoded::parse(&bytes);
        let to_field = |(k, v): (Cow<str>, Cow<str>)| (k.into_owned(), Value::from(v.into_owned()));
        return Ok(pairs.map(to_field).collect());
    }
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(fields)) => Ok(fields),
        _ => Err(Fail::INVALID_REQUEST),
    }
}

/// A required, non-empty string field.
fn field<'a>(fields: &'a Fields, name: &str) -> Result<&'a str, Fail> {
    match fields.get(name) {
        Some(Value::String(v)) if !v.is_empty() => Ok(v),
        _ => Err(Fail::INVALID_REQUEST),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn six_digit_code() -> String {
    // The low 32 bits of a v7 UUID are random (its counter lives in the higher bits).
    let b = uuid::Uuid::now_v7().into_bytes();
    let n = u32::from_be_bytes([b[12], b[13], b[14], b[15]]);
    format!("{:06}", n % 1_000_000)
}

fn unix_now() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH);
    now.map_or(0, |d| d.as_secs())
}

fn reply(status: StatusCode, body: Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    let json = HeaderValue::from_static("application/json");
    r.headers_mut().insert(CONTENT_TYPE, json);
    r
}

impl Fail {
    fn into_response(self) -> Resp {
        let Fail(status, code) = self;
        let mut r = reply(status, json!({ "error": code }));
        if status == StatusCode::UNAUTHORIZED && code == "invalid_token" {
            let challenge = HeaderValue::from_static(r#"Bearer error="invalid_token""#);
            r.headers_mut().insert(WWW_AUTHENTICATE, challenge);
        }
        r
    }
}
