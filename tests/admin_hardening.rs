//! Issue 12, over real sockets with the real SQLite store: `/v1/coverage` never lists a secret
//! that travelled in a URL path, and admin requests that fail authentication leave `audit.query`
//! events (aggregated per client address, so guessing cannot flood the trail).

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use authtrail::admin::auth::token_sha256_hex;
use base64::Engine;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::Value;
use support::admin::get;
use support::harness::{self, send, Sidecar};
use support::upstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// May read, export and reload; sees every app.
const OPS_TOKEN: &str = "ops-token-4b1d9e7a2c";

/// SplitMix64: a seeded generator, so the token corpus is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// Python's `secrets.token_urlsafe(n)`: n random bytes, base64url without padding.
    fn token_urlsafe(&mut self, n: usize) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.bytes(n))
    }
}

/// RFC 4648 base32 without padding (Python's `b32encode(...).rstrip(b"=")`).
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut out, mut acc, mut bits) = (String::new(), 0u32, 0);
    for b in bytes {
        acc = (acc << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn config(upstream: SocketAddr, db: &std::path::Path, routes: &str, extra: &str) -> String {
    format!(
        "upstream: http://{upstream}\nstore:\n  url: sqlite://{}\n  flush_interval: 20ms\n\
         admin:\n  credentials:\n\
         \x20   - {{ name: ops, token_sha256: {}, apps: [\"*\"], permissions: [read, export, reload] }}\n\
         {extra}routes:\n{routes}",
        db.display(),
        token_sha256_hex(OPS_TOKEN),
    )
}

/// The login route, and a webhook route whose path literal looks like a value: only its being a
/// literal of the map keeps it readable in coverage shapes.
const ROUTES_WITH_HOOK: &str = "  - id: login\n    match: { method: POST, path: /v1/sessions }\n    event: auth.login\n  - id: hook\n    match: { method: POST, path: \"/hooks/Kx7Qz9Lm/{event}\" }\n    event: auth.hook\n";
const ROUTES_LOGIN: &str =
    "  - id: login\n    match: { method: POST, path: /v1/sessions }\n    event: auth.login\n";

/// A sidecar started from a config file (so `POST /v1/reload` can re-read it).
async fn start_file(
    upstream: SocketAddr,
    routes: &str,
    extra: &str,
) -> (Sidecar, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trail.db");
    let file = dir.path().join("authtrail.yaml");
    std::fs::write(&file, config(upstream, &db, routes, extra)).unwrap();
    let cfg = authtrail::config::load_file(&file).unwrap_or_else(|e| panic!("{e}"));
    (harness::start_config(cfg, db, dir).await, file)
}

async fn proxy_get(sc: &Sidecar, path: &str) {
    let r = send(Method::GET, &sc.url(path), &[], Bytes::new())
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    // Forwarded (the test upstream answers 404 for paths it does not know).
    assert!(!r.status.is_server_error(), "{path}: {}", r.status);
}

async fn coverage(sc: &Sidecar) -> Value {
    let r = get(sc, "/v1/coverage", Some(OPS_TOKEN)).await;
    assert_eq!(r.status, StatusCode::OK);
    r.json()
}

fn unmapped_count(cov: &Value, path: &str) -> u64 {
    cov["unmapped"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"] == path)
        .map(|r| r["count"].as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn coverage_never_lists_a_token_from_a_path() {
    let up = upstream::spawn().await;
    let (sc, file) = start_file(up.addr, ROUTES_WITH_HOOK, "").await;
    let mut rng = Rng(0x1550_E012);

    // The reported case: 200 magic links with 22-character token_urlsafe(16) values.
    let mut secrets = Vec::new();
    for _ in 0..200 {
        let t = rng.token_urlsafe(16);
        proxy_get(&sc, &format!("/v1/magic-login/{t}")).await;
        secrets.push(t);
    }
    // token_urlsafe(n) for n in 8..=64, hex, base32 (upper and lower), UUIDs and JWT parts, in
    // a few positions of a path.
    let mut more = Vec::new();
    for n in 8..=64 {
        more.push(rng.token_urlsafe(n));
    }
    for n in [8, 16, 20, 32] {
        more.push(rng.bytes(n).iter().map(|b| format!("{b:02x}")).collect());
    }
    for n in [10, 16, 20, 32] {
        let b = base32(&rng.bytes(n));
        more.push(b.to_ascii_lowercase());
        more.push(b);
    }
    more.push(uuid::Uuid::now_v7().to_string());
    more.push(uuid::Uuid::from_bytes(rng.bytes(16).try_into().unwrap()).to_string());
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    more.push(b64.encode(br#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#));
    more.push(b64.encode(br#"{"sub":"alice","exp":4102444800}"#));
    more.push(b64.encode(rng.bytes(64)));
    for (i, t) in more.iter().enumerate() {
        let path = match i % 3 {
            0 => format!("/v1/password-reset/{t}"),
            1 => format!("/v2/users/{t}/verify-email"),
            _ => format!("/.well-known/openid-configuration/{t}"),
        };
        proxy_get(&sc, &path).await;
    }
    secrets.extend(more);
    // Query strings are never kept.
    proxy_get(&sc, "/v1/magic-login?token=QueryStringSecret123").await;
    secrets.push("QueryStringSecret123".to_string());
    // A literal of the route map stays readable however it looks.
    proxy_get(&sc, "/hooks/Kx7Qz9Lm/Zq81LmNx0pQr").await;

    let cov = coverage(&sc).await;
    let text = cov.to_string();
    for s in &secrets {
        assert!(!text.contains(s.as_str()), "{s} is listed: {text}");
    }
    assert_eq!(unmapped_count(&cov, "/v1/magic-login/{}"), 200, "{text}");
    assert!(unmapped_count(&cov, "/v1/password-reset/{}") > 0, "{text}");
    assert!(
        unmapped_count(&cov, "/v2/users/{}/verify-email") > 0,
        "{text}"
    );
    assert!(
        unmapped_count(&cov, "/.well-known/openid-configuration/{}") > 0,
        "{text}"
    );
    assert_eq!(unmapped_count(&cov, "/v1/magic-login"), 1, "{text}");
    assert_eq!(unmapped_count(&cov, "/hooks/Kx7Qz9Lm/{}"), 1, "{text}");

    // After a reload without the hook route its literal is a value like any other.
    std::fs::write(&file, config(up.addr, &sc.db, ROUTES_LOGIN, "")).unwrap();
    let r = send(
        Method::POST,
        &format!("http://{}/v1/reload", sc.admin),
        &[("authorization", &format!("Bearer {OPS_TOKEN}"))],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    proxy_get(&sc, "/hooks/Kx7Qz9Lm/Zq81LmNx0pQr").await;
    let cov = coverage(&sc).await;
    assert_eq!(unmapped_count(&cov, "/hooks/{}/{}"), 1, "{cov}");
    assert!(!cov.to_string().contains("Zq81LmNx0pQr"));
}

/// One admin request on a fresh connection from the loopback address `from` (127.0.0.0/8 is
/// all local, so each test address is its own client): the status code.
async fn admin_from(sc: &Sidecar, from: &str, path: &str, authorization: Option<&str>) -> u16 {
    let local: IpAddr = from.parse().unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(local, 0)).unwrap();
    let mut conn = sock.connect(sc.admin).await.unwrap();
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: prober/2.0\r\nConnection: close\r\n",
        sc.admin
    );
    if let Some(a) = authorization {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut resp))
        .await
        .expect("admin answer within 10s")
        .unwrap();
    let head = String::from_utf8_lossy(&resp);
    head.split(' ').nth(1).unwrap().parse().unwrap()
}

/// The `unauthenticated` events from `ip`, once their counts add up to `want` (bounded wait).
async fn refused_from(sc: &Sidecar, ip: &str, want: u64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let page = get(
            sc,
            &format!(
                "/v1/events?type=audit.query&reason=unauthenticated&ip={ip}&limit=1000&order=asc"
            ),
            Some(OPS_TOKEN),
        )
        .await
        .json();
        let evs = page["events"].as_array().unwrap().clone();
        let total: u64 = evs
            .iter()
            .map(|e| e["details"]["count"].as_u64().unwrap())
            .sum();
        if total >= want || Instant::now() > deadline {
            assert_eq!(total, want, "{ip}: {evs:?}");
            return evs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_no_secret(sc: &Sidecar, evs: &[Value], secrets: &[&str]) {
    let text = serde_json::to_string(evs).unwrap();
    let stored = harness::store_bytes(&sc.db);
    for s in secrets {
        assert!(!text.contains(s), "{s} in {text}");
        assert!(!harness::contains(&stored, s), "{s} in the store file");
    }
}

#[tokio::test]
async fn refused_admin_requests_are_audited_without_the_credential() {
    let up = upstream::spawn().await;
    let (sc, _file) = start_file(up.addr, ROUTES_LOGIN, "").await;
    let wrong = "ops-token-4b1d9e7a2d-Guess";
    let basic = "Basic b3BzOmh1bnRlcjItU2VjcmV0";
    assert_eq!(admin_from(&sc, "127.0.0.2", "/v1/events", None).await, 401);
    let bearer = format!("Bearer {wrong}");
    assert_eq!(
        admin_from(&sc, "127.0.0.3", "/v1/coverage?x=1", Some(&bearer)).await,
        401
    );
    assert_eq!(
        admin_from(
            &sc,
            "127.0.0.4",
            "/v1/events/0190f5d2-0000-7000-8000-000000000000",
            Some(basic)
        )
        .await,
        401
    );

    for (ip, failure, endpoint) in [
        ("127.0.0.2", "missing_credential", "/v1/events"),
        ("127.0.0.3", "invalid_credential", "/v1/coverage"),
        ("127.0.0.4", "malformed_credential", "/v1/events/{id}"),
    ] {
        let evs = refused_from(&sc, ip, 1).await;
        assert_eq!(evs.len(), 1, "{ip}: {evs:?}");
        let e = &evs[0];
        assert_eq!(e["type"], "audit.query");
        assert_eq!(e["outcome"], "failure");
        assert_eq!(e["reason"], "unauthenticated");
        assert_eq!(e["source"]["ip"], ip);
        assert_eq!(e["source"]["user_agent"], "prober/2.0");
        assert_eq!(e["actor"]["kind"], "anonymous");
        assert_eq!(e["details"]["failure"], failure);
        assert_eq!(e["details"]["endpoint"], endpoint);
        assert_eq!(e["details"]["count"], 1);
        assert_eq!(e["http"]["status"], 401);
        assert_eq!(e["http"]["route"], format!("admin:{endpoint}"));
        assert_eq!(
            e["http"]["path"], endpoint,
            "the route, not the concrete path"
        );
        assert!(e.get("app").is_none());
    }
    let all = refused_from(&sc, "127.0.0.3", 1).await;
    assert_no_secret(&sc, &all, &[wrong, "b3BzOmh1bnRlcjItU2VjcmV0", "hunter2"]);

    // A probe for endpoints that do not exist is refused and audited too, not answered 404.
    assert_eq!(admin_from(&sc, "127.0.0.7", "/v1/users", None).await, 401);
    let evs = refused_from(&sc, "127.0.0.7", 1).await;
    assert_eq!(evs[0]["reason"], "unauthenticated");
    assert_eq!(evs[0]["details"]["endpoint"], "/v1");
}

#[tokio::test]
async fn a_burst_of_wrong_credentials_is_aggregated_per_address() {
    let up = upstream::spawn().await;
    let window = Duration::from_secs(2);
    let (sc, _file) = start_file(up.addr, ROUTES_LOGIN, "  unauthenticated_window: 2s\n").await;
    let started = Instant::now();
    for i in 0..50 {
        let bearer = format!("Bearer guess-{i:04}-Secret");
        assert_eq!(
            admin_from(&sc, "127.0.0.5", "/v1/events", Some(&bearer)).await,
            401
        );
    }
    let elapsed = started.elapsed();
    // Another address is not held back by this one's burst.
    assert_eq!(admin_from(&sc, "127.0.0.6", "/v1/stats", None).await, 401);
    refused_from(&sc, "127.0.0.6", 1).await;

    let evs = refused_from(&sc, "127.0.0.5", 50).await;
    // Each window that opened gives at most two events: its first failure and its aggregate.
    let windows = (elapsed.as_millis() / window.as_millis()) as usize + 1;
    assert!(
        evs.len() <= 2 * windows,
        "{} events for {windows} window(s): {evs:?}",
        evs.len()
    );
    assert_eq!(evs[0]["details"]["aggregate"], false);
    for e in &evs {
        assert_eq!(e["reason"], "unauthenticated");
        assert_eq!(e["details"]["failure"], "invalid_credential");
        assert_eq!(e["source"]["user_agent"], "prober/2.0");
        if e["details"]["aggregate"] == true {
            assert_eq!(
                e["details"]["failures"]["invalid_credential"],
                e["details"]["count"]
            );
            assert!(e["details"]["window_start"].is_string());
            assert!(e["details"]["window_end"].is_string());
        }
    }
    let secrets: Vec<String> = (0..50).map(|i| format!("guess-{i:04}-Secret")).collect();
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_no_secret(&sc, &evs, &secrets);
}

#[tokio::test]
async fn open_windows_are_written_at_shutdown() {
    let up = upstream::spawn().await;
    let (mut sc, _file) = start_file(up.addr, ROUTES_LOGIN, "  unauthenticated_window: 1h\n").await;
    for _ in 0..5 {
        assert_eq!(admin_from(&sc, "127.0.0.7", "/v1/whoami", None).await, 401);
    }
    sc.stop().await;
    let from: IpAddr = "127.0.0.7".parse().unwrap();
    let evs: Vec<_> = sc
        .events()
        .await
        .into_iter()
        .filter(|e| e.source.ip == Some(from))
        .collect();
    assert_eq!(evs.len(), 2, "{evs:?}");
    let total: u64 = evs
        .iter()
        .map(|e| e.details["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 5);
    assert!(evs
        .iter()
        .all(|e| e.reason.as_deref() == Some("unauthenticated")));
}
