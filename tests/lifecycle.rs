//! Worked example (a), config/demo.yaml, against the demo auth server: a token's life from login
//! through two refresh rotations to logout, followed with `authtrail fingerprint` and
//! `authtrail query --token`, and a refresh with an expired token recorded as such.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use authtrail::event::{Outcome, TokenRole};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use support::demo_auth;
use support::harness::{self, post_json};

const BIN: &str = env!("CARGO_BIN_EXE_authtrail");
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.yaml");
const SECRET: &str = "lifecycle-test-demo-secret-42";
const FP_KEY: &str = "lifecycle-fingerprint-key-42";

fn cli(envs: &[(&str, String)], args: &[&str], stdin: Option<&str>) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn login_refresh_refresh_logout_is_one_story() {
    let auth = demo_auth::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SECRET.as_bytes().to_vec(),
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let envs = [
        ("AUTHTRAIL_DEMO_UPSTREAM", format!("http://{}", auth.addr)),
        ("AUTHTRAIL_DEMO_STORE", format!("sqlite://{}", db.display())),
        ("AUTHTRAIL_DEMO_JWT_SECRET", SECRET.to_string()),
        ("AUTHTRAIL_DEMO_FINGERPRINT_KEY", FP_KEY.to_string()),
    ];
    for (k, v) in &envs {
        std::env::set_var(k, v);
    }
    let cfg = authtrail::config::load_file(CONFIG).unwrap_or_else(|e| panic!("{e}"));
    let mut sc = harness::start_config(cfg, db.clone(), dir).await;

    let login = post_json(
        &sc.url("/v1/sessions"),
        json!({"username": "alice", "password": "alice-pw-7Qx!"}),
        &[],
    )
    .await;
    assert_eq!(login.status, 200);
    let r1 = login.json()["refresh_token"].as_str().unwrap().to_string();
    let one = post_json(
        &sc.url("/v1/token/refresh"),
        json!({"refresh_token": r1}),
        &[],
    )
    .await;
    assert_eq!(one.status, 200);
    let replay = post_json(
        &sc.url("/v1/token/refresh"),
        json!({"refresh_token": r1}),
        &[],
    )
    .await;
    assert_eq!(replay.status, 401, "a rotated refresh token is refused");
    let r2 = one.json()["refresh_token"].as_str().unwrap().to_string();
    let two = post_json(
        &sc.url("/v1/token/refresh"),
        json!({"refresh_token": r2}),
        &[],
    )
    .await;
    assert_eq!(two.status, 200);
    let r3 = two.json()["refresh_token"].as_str().unwrap().to_string();
    let a3 = two.json()["access_token"].as_str().unwrap().to_string();
    let logout = post_json(
        &sc.url("/v1/sessions/logout"),
        json!({"refresh_token": r3}),
        &[],
    )
    .await;
    assert_eq!(logout.status, 204);

    // An expired refresh token, correctly signed: the event says so.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let expired = encode(
        &Header::default(),
        &json!({"sub": "u-alice", "app_id": "app-alpha", "typ": "refresh", "jti": "expired-1", "iat": now - 7200, "exp": now - 3600}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let late = post_json(
        &sc.url("/v1/token/refresh"),
        json!({"refresh_token": expired}),
        &[],
    )
    .await;
    assert_eq!(late.status, 401);
    sc.stop().await;

    let evs = sc.events().await;
    let refresh_one = &evs[1];
    assert_eq!(
        (refresh_one.actor.id.as_deref(), refresh_one.actor.verified),
        (Some("u-alice"), true)
    );
    assert_eq!(
        refresh_one
            .app
            .as_ref()
            .map(|a| (a.value.as_str(), a.verified)),
        Some(("app-alpha", true))
    );
    let expired_ev = evs.last().unwrap();
    assert_eq!(
        (expired_ev.outcome, expired_ev.reason.as_deref()),
        (Outcome::Failure, Some("token_expired"))
    );
    assert_eq!(expired_ev.tokens[0].invalid.as_deref(), Some("expired"));
    assert!(
        !expired_ev.actor.verified
            && expired_ev
                .actor
                .source
                .as_deref()
                .is_none_or(|s| s.starts_with("claimed:")),
        "an expired token yields no verified actor: {:?}",
        expired_ev.actor
    );

    // The fingerprint command computes what the trail stores.
    let fp = cli(&envs, &["fingerprint", "--config", CONFIG], Some(&r1))
        .trim()
        .to_string();
    let issued_r1 = evs[0]
        .tokens
        .iter()
        .find(|t| t.kind == "refresh" && t.role == TokenRole::Issued)
        .unwrap();
    assert_eq!(fp, issued_r1.fingerprint);

    let life = |token: &str| -> Vec<(String, String)> {
        cli(
            &envs,
            &["query", "--config", CONFIG, "--token", token, "--json"],
            None,
        )
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
    };
    let story = vec![
        ("auth.login".to_string(), "success".to_string()),
        ("token.refresh".to_string(), "success".to_string()),
        ("token.refresh".to_string(), "failure".to_string()),
        ("token.refresh".to_string(), "success".to_string()),
        ("auth.logout".to_string(), "success".to_string()),
    ];
    assert_eq!(life(&fp), story);
    // From the last access token's jti, the same story: followed back through the rotations.
    let a3_jti = authtrail::identity::unverified_claims(&a3).unwrap()["jti"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(life(&a3_jti), story);
    // The expired token's life is its one refusal.
    assert_eq!(
        life("expired-1"),
        vec![("token.refresh".to_string(), "failure".to_string())]
    );
}
