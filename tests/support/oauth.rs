//! A small OAuth2/OIDC-style token endpoint for tests: form bodies, `client_credentials` with
//! HTTP Basic client authentication, `password` and `refresh_token` grants, revocation, and
//! RS256 access tokens whose keys are published as a JWKS (plain http on 127.0.0.1).

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use tokio::net::TcpListener;

pub const CLIENT_ID: &str = "billing-service";
pub const CLIENT_SECRET: &str = "oauth-client-secret-Vx81";
pub const ALICE_PASSWORD: &str = "alice-oauth-pw-44!";

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");

#[derive(Clone)]
pub struct OAuth {
    pub addr: SocketAddr,
    revoked: Arc<Mutex<HashSet<String>>>,
}

impl OAuth {
    pub fn jwks_url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }
}

pub async fn spawn() -> OAuth {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let oauth = OAuth {
        addr: listener.local_addr().unwrap(),
        revoked: Arc::new(Mutex::new(HashSet::new())),
    };
    super::serve::spawn(listener, oauth.clone(), handle);
    oauth
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn json_resp(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn sign(claims: serde_json::Value) -> String {
    let key =
        EncodingKey::from_rsa_pem(&std::fs::read(format!("{FIX}rsa1.key.pem")).unwrap()).unwrap();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("rsa1".into());
    encode(&h, &claims, &key).unwrap()
}

fn issue(sub: &str, client: &str, with_refresh: bool) -> serde_json::Value {
    let access = sign(json!({
        "iss": "https://oauth.test", "aud": "billing-api", "sub": sub, "client_id": client,
        "app_id": "app-billing", "scope": "invoices:read", "iat": now(), "exp": now() + 600,
        "jti": uuid::Uuid::now_v7().to_string(), "token_type": "access"
    }));
    let mut body = json!({"access_token": access, "token_type": "Bearer", "expires_in": 600});
    if with_refresh {
        // Opaque refresh tokens: the sidecar can only fingerprint them.
        body["refresh_token"] = json!(format!("rt-{}", uuid::Uuid::now_v7().simple()));
    }
    body
}

fn basic_client(req: &Request<Incoming>) -> Option<(String, String)> {
    let v = req.headers().get("authorization")?.to_str().ok()?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.strip_prefix("Basic ")?)
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (id, secret) = s.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

async fn handle(state: OAuth, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    if path == "/.well-known/jwks.json" {
        let jwk: serde_json::Value =
            serde_json::from_slice(&std::fs::read(format!("{FIX}rsa1.jwk.json")).unwrap()).unwrap();
        return Ok(json_resp(StatusCode::OK, json!({"keys": [jwk]})));
    }
    let client = basic_client(&req);
    let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(json_resp(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": "invalid_request"}),
            ))
        }
    };
    let form: std::collections::HashMap<String, String> =
        form_urlencoded::parse(&body).into_owned().collect();
    let authed_client = client.filter(|(id, secret)| id == CLIENT_ID && secret == CLIENT_SECRET);
    let resp = match (path.as_str(), form.get("grant_type").map(String::as_str)) {
        ("/oauth/token", Some("client_credentials")) => match authed_client {
            Some((id, _)) => json_resp(StatusCode::OK, issue(&id, &id, false)),
            None => json_resp(StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"})),
        },
        ("/oauth/token", Some("password")) => {
            if form.get("username").map(String::as_str) == Some("alice")
                && form.get("password").map(String::as_str) == Some(ALICE_PASSWORD)
            {
                json_resp(StatusCode::OK, issue("u-alice", CLIENT_ID, true))
            } else {
                json_resp(StatusCode::BAD_REQUEST, json!({"error": "invalid_grant"}))
            }
        }
        ("/oauth/token", Some("refresh_token")) => {
            let rt = form.get("refresh_token").cloned().unwrap_or_default();
            let mut revoked = state.revoked.lock().unwrap();
            if rt.starts_with("rt-") && revoked.insert(rt) {
                json_resp(StatusCode::OK, issue("u-alice", CLIENT_ID, true))
            } else {
                json_resp(StatusCode::BAD_REQUEST, json!({"error": "invalid_grant"}))
            }
        }
        ("/oauth/revoke", _) => {
            if let Some(t) = form.get("token") {
                state.revoked.lock().unwrap().insert(t.clone());
            }
            // RFC 7009: 200 whether or not the token was valid.
            Response::builder()
                .status(StatusCode::OK)
                .body(Full::new(Bytes::new()))
                .unwrap()
        }
        _ => json_resp(
            StatusCode::BAD_REQUEST,
            json!({"error": "unsupported_grant_type"}),
        ),
    };
    Ok(resp)
}
