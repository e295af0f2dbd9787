//! The demo auth server behaves as the demo and the end-to-end tests assume.
//!
//! Each test starts its own server on 127.0.0.1:0 and talks to it with a plain hyper client.

#[path = "../examples/demo_auth/mod.rs"]
mod demo_auth;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

const SECRET: &[u8] = b"demo-auth-test-secret";

struct Api {
    auth: demo_auth::DemoAuth,
    http: Client<HttpConnector, Full<Bytes>>,
}

async fn start() -> Api {
    start_with(Client::builder(TokioExecutor::new())).await
}

async fn start_with(builder: hyper_util::client::legacy::Builder) -> Api {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let auth = demo_auth::spawn(listener, SECRET.to_vec());
    Api {
        auth,
        http: builder.build_http(),
    }
}

impl Api {
    async fn send(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        content_type: &str,
        body: impl Into<Bytes>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.auth.addr))
            .header(CONTENT_TYPE, content_type);
        if let Some(token) = bearer {
            req = req.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let resp = self
            .http
            .request(req.body(Full::new(body.into())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        // Bounded by `Limited`, so `collect` cannot grow without limit.
        #[allow(clippy::disallowed_methods)]
        let body = Limited::new(resp.into_body(), 1 << 20)
            .collect()
            .await
            .unwrap()
            .to_bytes();
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, json)
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let body = body.to_string();
        self.send(Method::POST, path, None, "application/json", body)
            .await
    }

    async fn login(&self, username: &str, password: &str) -> Value {
        let (status, body) = self
            .post(
                "/v1/sessions",
                json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

fn claims(token: &str) -> Value {
    use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
    let key = DecodingKey::from_secret(SECRET);
    decode::<Value>(token, &key, &Validation::new(Algorithm::HS256))
        .unwrap()
        .claims
}

#[tokio::test]
async fn login_issues_signed_tokens_and_rejects_bad_credentials() {
    let api = start().await;
    let body = api.login("alice", "alice-pw-7Qx!").await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["user"], json!({"id": "u-alice", "app": "app-alpha"}));
    let access = claims(body["access_token"].as_str().unwrap());
    assert_eq!(access["sub"], "u-alice");
    assert_eq!(access["app_id"], "app-alpha");
    assert_eq!(access["role"], "user");
    assert_eq!(access["typ"], "access");
    let exp = access["exp"].as_u64().unwrap() - access["iat"].as_u64().unwrap();
    assert_eq!(exp, 900);
    let refresh = claims(body["refresh_token"].as_str().unwrap());
    assert_eq!(refresh["typ"], "refresh");
    assert_ne!(refresh["jti"], access["jti"]);

    let wrong = json!({"username": "alice", "password": "nope"});
    let unknown = json!({"username": "mallory", "password": "alice-pw-7Qx!"});
    for bad in [wrong, unknown] {
        let got = api.post("/v1/sessions", bad).await;
        let want = json!({"error": "invalid_credentials"});
        assert_eq!(got, (StatusCode::UNAUTHORIZED, want));
    }
    for malformed in ["{", "[]", r#"{"username":"alice"}"#, r#"{"username":1}"#] {
        let ct = "application/json";
        let got = api
            .send(Method::POST, "/v1/sessions", None, ct, malformed)
            .await;
        let want = json!({"error": "invalid_request"});
        assert_eq!(got, (StatusCode::BAD_REQUEST, want), "{malformed}");
    }

    let form = "username=bob&password=bob-pw-3Zk%3F";
    let ct = "application/x-www-form-urlencoded";
    let (status, body) = api.send(Method::POST, "/v1/sessions", None, ct, form).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["user"], json!({"id": "u-bob", "app": "app-beta"}));

    let token = body["access_token"].as_str().unwrap().to_owned();
    let (status, me) = api.send(Method::GET, "/v1/me", Some(&token), ct, "").await;
    assert_eq!(
        (status, &me["user"]["id"]),
        (StatusCode::OK, &json!("u-bob"))
    );
    let (status, _) = api.send(Method::GET, "/v1/me", Some("x.y.z"), ct, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.auth.requests_seen(), 10);
}

#[tokio::test]
async fn refresh_rotates_and_the_old_refresh_token_is_rejected() {
    let api = start().await;
    let first = api.login("alice", "alice-pw-7Qx!").await;
    let old = first["refresh_token"].as_str().unwrap();

    let (status, second) = api
        .post("/v1/token/refresh", json!({"refresh_token": old}))
        .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let new = second["refresh_token"].as_str().unwrap();
    assert_ne!(new, old);

    let rejected = (StatusCode::UNAUTHORIZED, json!({"error": "invalid_grant"}));
    let again = api
        .post("/v1/token/refresh", json!({"refresh_token": old}))
        .await;
    assert_eq!(again, rejected);
    // An access token is not a refresh token.
    let access = second["access_token"].as_str().unwrap();
    let got = api
        .post("/v1/token/refresh", json!({"refresh_token": access}))
        .await;
    assert_eq!(got, rejected);
    let forged = api
        .post("/v1/token/refresh", json!({"refresh_token": "a.b.c"}))
        .await;
    assert_eq!(forged, rejected);

    // The rotated token works once, via a form body too.
    let ct = "application/x-www-form-urlencoded";
    let form = format!("refresh_token={new}");
    let (status, third) = api
        .send(Method::POST, "/v1/token/refresh", None, ct, form)
        .await;
    assert_eq!(status, StatusCode::OK);

    let latest = third["refresh_token"].as_str().unwrap();
    let (status, _) = api
        .post("/v1/sessions/logout", json!({"refresh_token": latest}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let got = api
        .post("/v1/token/refresh", json!({"refresh_token": latest}))
        .await;
    assert_eq!(got, rejected);
    let got = api.post("/v1/sessions/logout", json!({})).await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn password_reset_with_the_mailed_code_changes_the_password() {
    let api = start().await;
    let email = "alice@example.com";
    let sent = (StatusCode::ACCEPTED, json!({"status": "sent"}));
    let unknown = json!({"email": "nobody@example.com"});
    assert_eq!(api.post("/v1/password/reset", unknown).await, sent);
    assert_eq!(api.auth.last_reset_code("nobody@example.com"), None);
    assert_eq!(
        api.post("/v1/password/reset", json!({"email": email}))
            .await,
        sent
    );
    let code = api.auth.last_reset_code(email).unwrap();
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "{code}"
    );

    let wrong = if code == "000000" { "111111" } else { "000000" };
    let attempt = |code: &str| json!({"email": email, "code": code, "new_password": "new-pw-1"});
    let bad = api
        .post("/v1/password/reset/complete", attempt(wrong))
        .await;
    assert_eq!(
        bad,
        (StatusCode::BAD_REQUEST, json!({"error": "invalid_code"}))
    );
    let ok = api
        .post("/v1/password/reset/complete", attempt(&code))
        .await;
    let want = json!({"status": "reset", "user": {"id": "u-alice"}});
    assert_eq!(ok, (StatusCode::OK, want));
    // Codes are single-use.
    let reused = api
        .post("/v1/password/reset/complete", attempt(&code))
        .await;
    assert_eq!(reused.0, StatusCode::BAD_REQUEST);

    let old = json!({"username": "alice", "password": "alice-pw-7Qx!"});
    assert_eq!(
        api.post("/v1/sessions", old).await.0,
        StatusCode::UNAUTHORIZED
    );
    api.login("alice", "new-pw-1").await;

    let verify = json!({"email": "bob@example.com"});
    let got = api.post("/v1/email/verify/request", verify).await;
    assert_eq!(got.0, StatusCode::ACCEPTED);
    let code = api.auth.last_verify_code("bob@example.com").unwrap();
    let body = json!({"email": "bob@example.com", "code": code});
    let got = api.post("/v1/email/verify", body).await;
    let want = json!({"status": "verified", "user": {"id": "u-bob"}});
    assert_eq!(got, (StatusCode::OK, want));
}

#[tokio::test]
async fn deactivate_needs_an_admin_token_of_the_same_app() {
    let api = start().await;
    let path = "/v1/apps/app-alpha/users/u-alice/deactivate";
    let root = api.login("root", "root-pw-9Lm#").await;
    let root = root["access_token"].as_str().unwrap().to_owned();
    let alice = api.login("alice", "alice-pw-7Qx!").await;
    let alice = alice["access_token"].as_str().unwrap().to_owned();
    let ct = "application/json";

    let got = api.send(Method::POST, path, None, ct, "").await;
    assert_eq!(
        got,
        (StatusCode::UNAUTHORIZED, json!({"error": "invalid_token"}))
    );
    let forbidden = (StatusCode::FORBIDDEN, json!({"error": "forbidden"}));
    let got = api.send(Method::POST, path, Some(&alice), ct, "").await;
    assert_eq!(got, forbidden);
    let other_app = "/v1/apps/app-beta/users/u-bob/deactivate";
    let got = api.send(Method::POST, other_app, Some(&root), ct, "").await;
    assert_eq!(got, forbidden);
    let missing = "/v1/apps/app-alpha/users/u-nobody/deactivate";
    let got = api.send(Method::POST, missing, Some(&root), ct, "").await;
    assert_eq!(got, (StatusCode::NOT_FOUND, json!({"error": "not_found"})));

    let got = api.send(Method::POST, path, Some(&root), ct, "").await;
    let want = json!({"status": "deactivated", "user": {"id": "u-alice"}});
    assert_eq!(got, (StatusCode::OK, want));
    let again = json!({"username": "alice", "password": "alice-pw-7Qx!"});
    let got = api.post("/v1/sessions", again).await;
    assert_eq!(
        got,
        (StatusCode::FORBIDDEN, json!({"error": "account_disabled"}))
    );
}

#[tokio::test]
async fn other_routes_limits_and_http2() {
    let mut builder = Client::builder(TokioExecutor::new());
    builder.http2_only(true);
    let api = start_with(builder).await;
    let ct = "application/json";
    let got = api.send(Method::GET, "/v1/public/info", None, ct, "").await;
    assert_eq!(got, (StatusCode::OK, json!({"name": "demo-auth"})));
    let got = api.send(Method::GET, "/healthz", None, ct, "").await;
    assert_eq!(got.0, StatusCode::OK);
    for (method, path) in [(Method::GET, "/v1/sessions"), (Method::POST, "/nope")] {
        let got = api.send(method, path, None, ct, "").await;
        assert_eq!(got, (StatusCode::NOT_FOUND, json!({"error": "not_found"})));
    }
    let big = format!(r#"{{"username":"{}"}}"#, "a".repeat(70 * 1024));
    let got = api.send(Method::POST, "/v1/sessions", None, ct, big).await;
    assert_eq!(got.0, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(api.auth.requests_seen(), 5);
}

#[tokio::test]
async fn stops_accepting_once_shutdown_resolves() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let auth = demo_auth::spawn_with_shutdown(listener, SECRET.to_vec(), async {
        let _ = stopped.await;
    });
    stop.send(()).unwrap();
    // The listener is dropped when the accept loop ends; connects are refused from then on.
    let refused = async {
        while tokio::net::TcpStream::connect(auth.addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), refused)
        .await
        .expect("still accepting 5s after shutdown");
}
