//! `authtrail suggest` end to end: a real sidecar in front of a real upstream that serves auth
//! endpoints no route maps; traffic through the sidecar; the binary asks the admin API and drafts
//! routes; the draft, appended to the config, loads as `check` loads it. No password, token or
//! other value reaches the draft, the admin API's coverage answer or the logs.

mod support;

use std::convert::Infallible;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use support::admin::{credentials_yaml, TOKEN_ALL};
use support::harness::{self, send};
use tokio::net::TcpListener;

const BIN: &str = env!("CARGO_BIN_EXE_authtrail");

const PASSWORD: &str = "Pw-7c1e93b2-correct-horse";
const WRONG_PASSWORD: &str = "Pw-wrong-5d0a8e44";
const ACCESS_TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1LTQyIn0.c2lnLWFjY2Vzcy05ZjNk";
const REFRESH_TOKEN: &str = "rt_Q2x9ZkVwM3NfbG9uZ19yZWZyZXNo";
const EMAIL: &str = "alice.smith@example.org";
const USER_ID: &str = "7d444840-9dc0-11d1-b245-5ffdce74fad2";
const FINGERPRINT_KEY: &str = "suggest-test-fingerprint-key-0123456789";

/// The auth server: endpoints as a typical JSON auth API answers them.
async fn handle(_: (), req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let json = |status: StatusCode, v: Value| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(v.to_string())))
            .unwrap()
    };
    let path = parts.uri.path();
    let resp = match (parts.method.as_str(), path) {
        ("POST", "/api/v2/login") if sent["password"] == PASSWORD => json(
            StatusCode::OK,
            json!({
                "access_token": ACCESS_TOKEN,
                "refresh_token": REFRESH_TOKEN,
                "token_type": "bearer",
                "expires_in": 3600,
            }),
        ),
        ("POST", "/api/v2/login") => json(
            StatusCode::UNAUTHORIZED,
            json!({ "error": "invalid_credentials" }),
        ),
        ("POST", "/api/v2/logout") => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Full::new(Bytes::new()))
            .unwrap(),
        ("POST", "/api/v2/password/forgot") => {
            json(StatusCode::ACCEPTED, json!({ "detail": "sent" }))
        }
        ("POST", "/api/v2/register") => json(StatusCode::CREATED, json!({ "id": "u-43" })),
        ("PATCH", p) if p.starts_with("/api/v2/users/") => json(
            StatusCode::OK,
            json!({
                "id": p.trim_start_matches("/api/v2/users/"),
                "email": EMAIL,
                "display_name": sent["display_name"],
            }),
        ),
        ("GET", "/static/app.js") => Response::builder()
            .header("content-type", "application/javascript")
            .body(Full::new(Bytes::from_static(b"console.log('app');")))
            .unwrap(),
        // A long JSON answer: the unmapped path streams it whole, whatever is read of it.
        ("POST", "/api/v2/search") => {
            let rows: Vec<Value> = (0..4000)
                .map(|i| json!({ "n": i, "pad": "x".repeat(40) }))
                .collect();
            json(StatusCode::OK, json!({ "rows": rows, "total": 4000 }))
        }
        _ => json(StatusCode::NOT_FOUND, json!({ "error": "not_found" })),
    };
    Ok(resp)
}

fn routes() -> &'static str {
    "  - id: register\n    match: { method: POST, path: /api/v2/register }\n    event: account.register\n"
}

fn extra() -> String {
    format!(
        "{}trust:\n  fingerprint_key: \"{FINGERPRINT_KEY}\"\n",
        credentials_yaml()
    )
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("AUTHTRAIL_ADMIN_TOKEN", TOKEN_ALL)
        .output()
        .expect("run authtrail");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The draft's route with this id.
fn route<'a>(routes: &'a [Value], path: &str, method: &str) -> &'a Value {
    routes
        .iter()
        .find(|r| r["match"]["path"] == path && r["match"]["method"] == method)
        .unwrap_or_else(|| panic!("no route for {method} {path} in {routes:?}"))
}

/// The comment block written above the route for `method path`.
fn block<'a>(draft: &'a str, method: &str, path: &str) -> &'a str {
    draft
        .split("\n\n")
        .find(|b| b.contains(&format!("# {method} {path}:")))
        .unwrap_or_else(|| panic!("no block for {method} {path}:\n{draft}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suggest_drafts_routes_from_unmapped_auth_traffic() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    support::serve::spawn(listener, (), handle);
    let mut sc = harness::start(up, &extra(), routes()).await;

    let post = |path: &str, body: Value| {
        let url = sc.url(path);
        async move { harness::post_json(&url, body, &[]).await }
    };
    for _ in 0..3 {
        let r = post(
            "/api/v2/login",
            json!({ "username": "alice", "password": PASSWORD }),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        // The client gets the upstream's answer untouched.
        assert_eq!(r.json()["access_token"], ACCESS_TOKEN);
    }
    for _ in 0..2 {
        let r = post(
            "/api/v2/login",
            json!({ "username": "alice", "password": WRONG_PASSWORD }),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    for _ in 0..2 {
        let r = send(
            Method::POST,
            &sc.url("/api/v2/logout"),
            &[("authorization", &format!("Bearer {ACCESS_TOKEN}"))],
            Bytes::new(),
        )
        .await
        .unwrap();
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    }
    for _ in 0..2 {
        let r = post("/api/v2/password/forgot", json!({ "email": EMAIL })).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
    for id in [USER_ID, "0b6e5c1a-3f7d-4e2b-9a8c-1d2e3f4a5b6c"] {
        let r = harness::send(
            Method::PATCH,
            &sc.url(&format!("/api/v2/users/{id}")),
            &[("content-type", "application/json")],
            Bytes::from(json!({ "display_name": "Alice S." }).to_string()),
        )
        .await
        .unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["id"], id);
    }
    for _ in 0..3 {
        let r = send(Method::GET, &sc.url("/static/app.js"), &[], Bytes::new())
            .await
            .unwrap();
        assert_eq!(&r.body[..], b"console.log('app');");
    }
    let big = post("/api/v2/search", json!({ "q": "x" })).await;
    assert!(big.body.len() > 100_000, "{}", big.body.len());
    assert_eq!(big.json()["rows"].as_array().unwrap().len(), 4000);
    assert_eq!(big.json()["total"], 4000);
    let r = post(
        "/api/v2/register",
        json!({ "email": EMAIL, "password": PASSWORD }),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);

    // The evidence is read once each response ends, off the client's path: wait for it.
    let mut coverage = Value::Null;
    for _ in 0..300 {
        coverage = support::admin::get(&sc, "/v1/coverage", Some(TOKEN_ALL))
            .await
            .json();
        let observed: u64 = coverage["unmapped"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|u| u["evidence"]["observed"].as_u64().unwrap_or(0))
            .sum();
        if observed == 5 + 2 + 2 + 2 + 3 + 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rows = coverage["unmapped"].as_array().unwrap();
    let login = rows
        .iter()
        .find(|u| u["path"] == "/api/v2/login")
        .unwrap_or_else(|| panic!("{coverage}"));
    let e = &login["evidence"];
    assert_eq!(e["observed"], 5, "{coverage}");
    assert_eq!(
        e["status"],
        json!({ "2xx": 3, "3xx": 0, "4xx": 2, "5xx": 0 })
    );
    assert_eq!(e["request_content"]["json"], 5);
    assert_eq!(e["request_keys"], json!(["password", "username"]));
    assert_eq!(
        e["response_keys"]["2xx"],
        json!(["access_token", "expires_in", "refresh_token", "token_type"])
    );
    assert_eq!(e["response_keys"]["4xx"], json!(["error"]));
    let users = rows
        .iter()
        .find(|u| u["method"] == "PATCH")
        .unwrap_or_else(|| panic!("{coverage}"));
    assert_eq!(users["path"], "/api/v2/users/{}");
    assert_eq!(users["count"], 2);
    // Only the first 16 KiB of the long answer was read: its first key.
    let search = rows.iter().find(|u| u["path"] == "/api/v2/search").unwrap();
    assert_eq!(search["evidence"]["response_keys"]["2xx"], json!(["rows"]));
    // A read's answer is not read at all.
    let asset = rows.iter().find(|u| u["path"] == "/static/app.js").unwrap();
    assert_eq!(asset["evidence"]["observed"], 3);
    assert_eq!(asset["evidence"]["request_content"]["none"], 3);

    // The draft, from the binary, against the admin API.
    let dir = tempfile::tempdir().unwrap();
    let config_text = harness::config_yaml(up, &sc.db, &extra(), routes());
    let config = dir.path().join("authtrail.yaml");
    std::fs::write(&config, &config_text).unwrap();
    let c = config.to_str().unwrap().to_string();
    let admin = format!("http://{}", sc.admin);
    let (code, draft, err) = {
        let (c, admin) = (c.clone(), admin.clone());
        tokio::task::spawn_blocking(move || run(&["suggest", "--config", &c, "--admin", &admin]))
            .await
            .unwrap()
    };
    assert_eq!(code, 0, "{err}");
    println!("{draft}");
    let v: Value = serde_saphyr::from_str(&draft).unwrap_or_else(|e| panic!("{e}\n{draft}"));
    let routes_v = v["routes"].as_array().unwrap_or_else(|| panic!("{draft}"));

    let login = route(routes_v, "/api/v2/login", "POST");
    assert_eq!(login["event"], "auth.login", "{draft}");
    assert_eq!(login["actor"], json!({ "request_body": "/username" }));
    assert_eq!(
        login["tokens"]["issued"],
        json!(["/access_token", "/refresh_token"])
    );
    assert_eq!(
        login["outcome"],
        json!({ "success": ["2xx"], "failure": ["4xx"], "reason": "/error" })
    );
    let b = block(&draft, "POST", "/api/v2/login");
    assert!(b.contains("# confidence: high"), "{b}");
    assert!(b.contains("5 requests; responses 2xx ×3, 4xx ×2"), "{b}");
    assert!(b.contains("request keys: password, username"), "{b}");

    let logout = route(routes_v, "/api/v2/logout", "POST");
    assert_eq!(logout["event"], "auth.logout");
    let forgot = route(routes_v, "/api/v2/password/forgot", "POST");
    assert_eq!(forgot["event"], "password.reset.request");
    assert_eq!(
        forgot["target"],
        json!({ "kind": "email", "from": { "request_body": "/email" } })
    );
    let update = route(routes_v, "/api/v2/users/{id}", "PATCH");
    assert_eq!(update["event"], "account.update");
    assert_eq!(update["target"]["kind"], "user");
    assert_eq!(update["target"]["from"], json!({ "path": "id" }));
    assert_eq!(
        update["target"]["display"],
        json!({ "response_body": "/email" })
    );

    // Skipped, and said so.
    assert!(
        draft.contains("#   GET /static/app.js (3 requests): static asset"),
        "{draft}"
    );
    assert!(
        draft.contains(
            "#   POST /api/v2/search (1 request): no auth word in the path or the body names"
        ),
        "{draft}"
    );
    assert!(
        draft.contains("2 shapes skipped as not auth actions"),
        "{draft}"
    );
    assert!(
        draft.contains("loads as `authtrail check` loads it"),
        "{draft}"
    );
    assert!(!draft.contains("/api/v2/register"), "mapped: {draft}");
    assert_eq!(routes_v.len(), 4, "{draft}");

    // No value anywhere: not in the draft, the admin API's answer, the sidecar's logs.
    let logs = harness::captured_logs();
    let coverage_text = coverage.to_string();
    for secret in [
        PASSWORD,
        WRONG_PASSWORD,
        ACCESS_TOKEN,
        REFRESH_TOKEN,
        EMAIL,
        USER_ID,
        "invalid_credentials",
        "Alice S.",
    ] {
        assert!(!draft.contains(secret), "{secret} in the draft");
        assert!(!err.contains(secret), "{secret} in suggest's stderr");
        assert!(!coverage_text.contains(secret), "{secret} in coverage");
        assert!(!logs.contains(secret), "{secret} in the logs");
    }

    // The draft appended to the config's routes loads with the loader `check` uses, and
    // `check` itself accepts it.
    let merged = format!(
        "{config_text}{}",
        draft.split_once("\nroutes:\n").unwrap().1
    );
    let merged_path = dir.path().join("merged.yaml");
    std::fs::write(&merged_path, &merged).unwrap();
    let cfg =
        authtrail::config::load_file(&merged_path).unwrap_or_else(|e| panic!("{e}\n{merged}"));
    assert_eq!(cfg.routes.routes.len(), 5);
    let m = merged_path.to_str().unwrap().to_string();
    let (code, out, err) = tokio::task::spawn_blocking(move || run(&["check", "--config", &m]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}\n{merged}");
    assert!(out.contains("ok, 5 routes"), "{out}");

    // --min-confidence and -o: only the login, written to a file.
    let out_file = dir.path().join("draft.yaml");
    let o = out_file.to_str().unwrap().to_string();
    let (code, stdout, err) = tokio::task::spawn_blocking(move || {
        run(&[
            "suggest",
            "--config",
            &c,
            "--admin",
            &admin,
            "--min-confidence",
            "high",
            "-o",
            &o,
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(err.contains("1 routes suggested"), "{err}");
    let high = std::fs::read_to_string(&out_file).unwrap();
    let v: Value = serde_saphyr::from_str(&high).unwrap();
    assert_eq!(v["routes"].as_array().unwrap().len(), 1, "{high}");
    assert_eq!(v["routes"][0]["event"], "auth.login");
    assert!(high.contains("below --min-confidence"), "{high}");

    sc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suggest_needs_a_credential_that_sees_every_app() {
    use support::admin::TOKEN_ALPHA;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    support::serve::spawn(listener, (), handle);
    let mut sc = harness::start(up, &extra(), routes()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("authtrail.yaml");
    std::fs::write(
        &config,
        harness::config_yaml(up, &sc.db, &extra(), routes()),
    )
    .unwrap();
    let c = config.to_str().unwrap().to_string();
    let admin = format!("http://{}", sc.admin);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["suggest", "--config", &c, "--admin", &admin])
            .env("AUTHTRAIL_ADMIN_TOKEN", TOKEN_ALPHA)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs one that sees every app"), "{err}");
    sc.stop().await;
}
