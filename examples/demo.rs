//! The authtrail demo: a small auth server, authtrail in front of it on SQLite, a scripted
//! session of logins, refreshes, resets, verifications and a deactivation, then the recorded
//! events as a table.
//!
//! Run it with `cargo run --release --example demo`. Everything listens on 127.0.0.1 on ports
//! the OS picks; the trail is left in `target/authtrail-demo.db` so it can be queried again:
//! `cargo run --release -- query --config config/demo.yaml`.

#[path = "demo_auth/mod.rs"]
mod demo_auth;

use std::net::SocketAddr;

use anyhow::{Context, Result};
use authtrail::sidecar::{self, Listeners};
use authtrail::store::{self, Query};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::net::TcpListener;

const CONFIG: &str = "config/demo.yaml";
const DB: &str = "target/authtrail-demo.db";

struct Session {
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    base: String,
}

impl Session {
    /// Send one request through the sidecar and print a line about it.
    async fn call(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Value,
        bearer: Option<&str>,
    ) -> Result<Value> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .header("user-agent", "authtrail-demo/1.0");
        if let Some(token) = bearer {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let resp = self
            .client
            .request(req.body(Full::new(Bytes::from(body.to_string())))?)
            .await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        println!(
            "  {:<52} {method:<4} {path:<44} → {}",
            what,
            status.as_u16()
        );
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let _ = std::fs::create_dir_all("target");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{DB}{suffix}"));
    }

    // 1. The auth server the sidecar fronts.
    let secret = format!("demo-secret-{}", uuid::Uuid::now_v7().simple());
    let auth = demo_auth::spawn(
        TcpListener::bind("127.0.0.1:0").await?,
        secret.clone().into_bytes(),
    );

    // 2. authtrail in front of it, configured by config/demo.yaml.
    std::env::set_var("AUTHTRAIL_DEMO_UPSTREAM", format!("http://{}", auth.addr));
    std::env::set_var("AUTHTRAIL_DEMO_STORE", format!("sqlite://{DB}"));
    std::env::set_var("AUTHTRAIL_DEMO_JWT_SECRET", &secret);
    let cfg = authtrail::config::load_file(CONFIG).map_err(|e| anyhow::anyhow!("{e}"))?;
    let fingerprinter = cfg
        .identity
        .fingerprinter
        .clone()
        .context("demo config has no fingerprint key")?;
    let proxy = TcpListener::bind("127.0.0.1:0").await?;
    let admin = TcpListener::bind("127.0.0.1:0").await?;
    let proxy_addr: SocketAddr = proxy.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sidecar = tokio::spawn(sidecar::run(cfg, Listeners { proxy, admin }, async move {
        let _ = stopped.await;
    }));
    println!(
        "demo auth server on {}, authtrail on {proxy_addr}\n",
        auth.addr
    );

    // 3. A scripted session, every request through the sidecar.
    let s = Session {
        client: Client::builder(TokioExecutor::new()).build_http(),
        base: format!("http://{proxy_addr}"),
    };
    let alice_pw = "alice-pw-7Qx!";
    s.call(
        "alice logs in with a wrong password",
        Method::POST,
        "/v1/sessions",
        json!({"username": "alice", "password": "hunter2-guess"}),
        None,
    )
    .await?;
    let login = s
        .call(
            "alice logs in",
            Method::POST,
            "/v1/sessions",
            json!({"username": "alice", "password": alice_pw}),
            None,
        )
        .await?;
    s.call(
        "mallory tries an unknown account",
        Method::POST,
        "/v1/sessions",
        json!({"username": "mallory", "password": "letmein-123"}),
        None,
    )
    .await?;
    let refresh = login["refresh_token"]
        .as_str()
        .context("login returned no refresh token")?;
    let refreshed = s
        .call(
            "alice refreshes her session",
            Method::POST,
            "/v1/token/refresh",
            json!({"refresh_token": refresh}),
            None,
        )
        .await?;
    s.call(
        "the old refresh token is replayed",
        Method::POST,
        "/v1/token/refresh",
        json!({"refresh_token": refresh}),
        None,
    )
    .await?;
    s.call(
        "bob asks for a password reset",
        Method::POST,
        "/v1/password/reset",
        json!({"email": "bob@example.com"}),
        None,
    )
    .await?;
    let code = auth
        .last_reset_code("bob@example.com")
        .context("no reset code for bob")?;
    s.call(
        "bob submits a wrong reset code",
        Method::POST,
        "/v1/password/reset/complete",
        json!({"email": "bob@example.com", "code": "000000", "new_password": "bob-new-pw-1"}),
        None,
    )
    .await?;
    s.call(
        "bob resets his password",
        Method::POST,
        "/v1/password/reset/complete",
        json!({"email": "bob@example.com", "code": code, "new_password": "bob-new-pw-1"}),
        None,
    )
    .await?;
    s.call(
        "alice asks to verify her email",
        Method::POST,
        "/v1/email/verify/request",
        json!({"email": "alice@example.com"}),
        None,
    )
    .await?;
    let vcode = auth
        .last_verify_code("alice@example.com")
        .context("no verify code for alice")?;
    s.call(
        "alice verifies her email",
        Method::POST,
        "/v1/email/verify",
        json!({"email": "alice@example.com", "code": vcode}),
        None,
    )
    .await?;
    let root = s
        .call(
            "root (admin of app-alpha) logs in",
            Method::POST,
            "/v1/sessions",
            json!({"username": "root", "password": "root-pw-9Lm#"}),
            None,
        )
        .await?;
    let admin_token = root["access_token"]
        .as_str()
        .context("root login returned no token")?;
    s.call(
        "root tries to deactivate bob in app-beta",
        Method::POST,
        "/v1/apps/app-beta/users/u-bob/deactivate",
        json!({}),
        Some(admin_token),
    )
    .await?;
    s.call(
        "root deactivates alice in app-alpha",
        Method::POST,
        "/v1/apps/app-alpha/users/u-alice/deactivate",
        json!({}),
        Some(admin_token),
    )
    .await?;
    s.call(
        "alice can no longer log in",
        Method::POST,
        "/v1/sessions",
        json!({"username": "alice", "password": alice_pw}),
        None,
    )
    .await?;
    let new_refresh = refreshed["refresh_token"].as_str().unwrap_or_default();
    s.call(
        "alice's session is logged out",
        Method::POST,
        "/v1/sessions/logout",
        json!({"refresh_token": new_refresh}),
        None,
    )
    .await?;
    s.call(
        "an unmapped request passes through",
        Method::GET,
        "/v1/public/info",
        Value::Null,
        None,
    )
    .await?;

    // 4. Stop (drains and flushes), then show what was recorded.
    let _ = stop.send(());
    let summary = sidecar.await??;
    let store = store::open(&format!("sqlite://{DB}")).await?;
    let events = store
        .query(&Query {
            limit: 100,
            ..Query::default()
        })
        .await?;
    println!(
        "\n{} events recorded ({} dropped), newest first:\n",
        events.len(),
        summary.events.dropped
    );
    print!("{}", authtrail::cli::events_table(&events));

    // 5. Follow alice's first refresh token through its life, by fingerprint only.
    let fp = fingerprinter.fingerprint(refresh);
    let life = store::lineage::token_life(store.as_ref(), &fp, None).await?;
    println!(
        "\nthe life of alice's first refresh token (fingerprint {}…), oldest first:\n",
        &fp[..16]
    );
    print!("{}", authtrail::cli::events_table(&life));
    println!("\nquery it again: cargo run --release -- query --config {CONFIG} --type 'auth.*'");
    println!("a token's life: cargo run --release -- query --config {CONFIG} --token \"$(printf %s \"$TOKEN\" | cargo run -q --release -- fingerprint --config {CONFIG})\"");
    Ok(())
}
