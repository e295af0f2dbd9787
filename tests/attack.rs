//! Hostile input at the edge: request smuggling, oversized and flooding headers, slowloris and
//! slow bodies, control characters, forged tokens of every kind. Each is bounded by a limit or
//! a timeout, closes or refuses cleanly, and never yields a verified identity.

mod support;

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use hyper::Method;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use support::harness::{self, send};
use support::jwks_server::{self, FIX};
use support::upstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Write `req`, then read until the peer closes or 10s pass; returns what was read.
async fn raw(addr: std::net::SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(req).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

const ROUTES: &str = "  - id: login\n    match: { method: POST, path: /v1/sessions }\n    event: auth.login\n    actor: { request_body: /username }\n";
const TOKEN_ROUTES: &str = "  - id: login\n    match: { method: POST, path: /v1/sessions }\n    event: auth.login\n    actor: [ { claim: sub }, { request_body: /username } ]\n";

#[tokio::test]
async fn smuggling_with_content_length_and_transfer_encoding_is_refused() {
    let up = upstream::spawn().await;
    let mut sc = harness::start(up.addr, "", ROUTES).await;
    let req = b"POST /echo-headers HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    // hyper frames such a request by Transfer-Encoding alone, drops Content-Length, answers it
    // and closes the connection (RFC 9112 §6.1): what follows is never read as a request.
    let got = raw(sc.addr, req).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert_eq!(got.matches("HTTP/1.1 ").count(), 1, "{got}");
    assert_eq!(
        *up.paths.lock().unwrap(),
        ["/echo-headers"],
        "a smuggled request reached the upstream"
    );
    let body = &got[got.find("\r\n\r\n").unwrap() + 4..];
    let seen: serde_json::Value = serde_json::from_str(body).unwrap();
    assert!(
        seen.get("transfer-encoding").is_none() || seen.get("content-length").is_none(),
        "forwarded framed two ways: {seen}"
    );
    sc.stop().await;
}

#[tokio::test]
async fn oversized_and_flooding_headers_are_refused() {
    let up = upstream::spawn().await;
    let mut sc = harness::start(up.addr, "", ROUTES).await;
    let big = format!(
        "GET /echo-headers HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    let got = raw(sc.addr, big.as_bytes()).await;
    assert!(got.starts_with("HTTP/1.1 431"), "{:.80}", got);
    let mut flood = String::from("GET /echo-headers HTTP/1.1\r\nHost: x\r\n");
    for i in 0..500 {
        flood.push_str(&format!("X-H{i}: v\r\n"));
    }
    flood.push_str("\r\n");
    let got = raw(sc.addr, flood.as_bytes()).await;
    assert!(got.starts_with("HTTP/1.1 431"), "{:.80}", got);
    assert_eq!(up.requests(), 0);
    sc.stop().await;
}

#[tokio::test]
async fn slowloris_heads_and_slow_bodies_are_cut_off() {
    let up = upstream::spawn().await;
    let mut sc = harness::start(
        up.addr,
        "timeouts: { header_read: 300ms, body_read: 300ms }\n",
        ROUTES,
    )
    .await;
    // Headers dribbled a byte at a time: closed at the header timeout.
    let mut s = TcpStream::connect(sc.addr).await.unwrap();
    let head = b"GET /echo-headers HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut closed = false;
    for b in head
        .iter()
        .chain(b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter())
    {
        if s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(closed || read.is_ok(), "a slowloris connection stayed open");
    assert_eq!(up.requests(), 0);

    // A mapped route's body sent too slowly: 408, and the attempt is still recorded.
    let mut s = TcpStream::connect(sc.addr).await.unwrap();
    s.write_all(b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        for _ in 0..50 {
            if s.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let got = String::from_utf8_lossy(&buf);
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert_eq!(up.requests(), 0);
    sc.stop().await;
    let evs = sc.events().await;
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].reason.as_deref(), Some("client_timeout"));
}

#[tokio::test]
async fn control_characters_cannot_forge_lines() {
    let up = upstream::spawn().await;
    let mut sc = harness::start(up.addr, "", ROUTES).await;
    let evil = "mallory\nauthtrail: FORGED line\u{1b}[31m\r\u{7}";
    let r = send(
        Method::POST,
        &sc.url("/v1/sessions"),
        &[("content-type", "application/json")],
        Bytes::from(json!({"username": evil}).to_string()),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 404);
    sc.stop().await;
    let evs = sc.events().await;
    assert_eq!(
        evs[0].actor.id.as_deref(),
        Some(evil),
        "stored as sent (JSON escapes it)"
    );
    let table = authtrail::cli::events_table(&evs);
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(
        table.contains("mallory\\nauthtrail: FORGED line\\u{1b}[31m\\r\\u{7}"),
        "{table}"
    );
    assert!(
        !harness::captured_logs().contains("FORGED line"),
        "usernames are not logged"
    );
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[tokio::test]
async fn forged_tokens_never_yield_a_verified_actor() {
    let up = upstream::spawn().await;
    let idp = jwks_server::spawn(&["rsa1"]).await;
    // A server the attacker controls: the sidecar must never fetch from it.
    let lure = jwks_server::spawn(&["rsa2"]).await;
    let extra = format!(
        "trust:\n  fingerprint_key: attack-test-fingerprint-key\nkeys:\n  idp:\n    jwks_url: {}\n    jwks_ca_file: {FIX}ca.pem\n    min_refresh: 0ms\n    algorithms: [RS256]\n    issuer: https://issuer.test\n    audience: api\n",
        idp.url()
    );
    let mut sc = harness::start(up.addr, &extra, TOKEN_ROUTES).await;
    let rsa2 =
        EncodingKey::from_rsa_pem(&std::fs::read(format!("{FIX}rsa2.key.pem")).unwrap()).unwrap();
    let rsa1 =
        EncodingKey::from_rsa_pem(&std::fs::read(format!("{FIX}rsa1.key.pem")).unwrap()).unwrap();
    let claims = |sub: &str| json!({"sub": sub, "iss": "https://issuer.test", "aud": "api", "exp": now() + 600});
    let with = |kid: Option<&str>, jku: Option<String>, key: &EncodingKey, c: serde_json::Value| {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = kid.map(str::to_string);
        h.jku = jku;
        encode(&h, &c, key).unwrap()
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let pem = std::fs::read(format!("{FIX}rsa1.pub.pem")).unwrap();
    let mut tokens = vec![
        // alg none
        format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none"}"#),
            b64.encode(claims("none").to_string())
        ),
        // HS256 signed with the RSA public key as the secret
        encode(
            &Header::new(Algorithm::HS256),
            &claims("confused"),
            &EncodingKey::from_secret(&pem),
        )
        .unwrap(),
        // kid path traversal and SQL-looking kid, signed with a key nobody published
        with(
            Some("../../../../etc/passwd"),
            None,
            &rsa2,
            claims("traversal"),
        ),
        with(Some("' OR '1'='1' --"), None, &rsa2, claims("sql")),
        // jku pointing at the attacker's JWKS with their key
        with(Some("rsa2"), Some(lure.url()), &rsa2, claims("jku")),
        // right key, wrong audience / issuer, expired, not yet valid
        with(
            Some("rsa1"),
            None,
            &rsa1,
            json!({"sub": "aud", "iss": "https://issuer.test", "aud": "other", "exp": now() + 600}),
        ),
        with(
            Some("rsa1"),
            None,
            &rsa1,
            json!({"sub": "iss", "iss": "https://evil.test", "aud": "api", "exp": now() + 600}),
        ),
        with(
            Some("rsa1"),
            None,
            &rsa1,
            json!({"sub": "exp", "iss": "https://issuer.test", "aud": "api", "exp": now() - 600}),
        ),
        with(
            Some("rsa1"),
            None,
            &rsa1,
            json!({"sub": "nbf", "iss": "https://issuer.test", "aud": "api", "exp": now() + 600, "nbf": now() + 600}),
        ),
    ];
    // A huge token.
    tokens.push(format!(
        "{}.{}.{}",
        b64.encode(r#"{"alg":"RS256"}"#),
        "A".repeat(40_000),
        "B".repeat(100)
    ));
    let fetches_before = lure.fetches.load(std::sync::atomic::Ordering::SeqCst);
    for t in &tokens {
        let bearer = format!("Bearer {t}");
        let r = send(
            Method::POST,
            &sc.url("/v1/sessions"),
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            Bytes::from("{}"),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 404);
    }
    sc.stop().await;
    assert_eq!(
        lure.fetches.load(std::sync::atomic::Ordering::SeqCst),
        fetches_before,
        "jku was followed"
    );
    let evs = sc.events().await;
    assert_eq!(evs.len(), tokens.len());
    let reasons: Vec<Option<&str>> = evs
        .iter()
        .map(|e| e.tokens.first().and_then(|t| t.invalid.as_deref()))
        .collect();
    assert_eq!(
        reasons,
        [
            Some("alg_not_allowed"),
            Some("alg_not_allowed"),
            Some("unknown_key"),
            Some("unknown_key"),
            Some("unknown_key"),
            Some("wrong_audience"),
            Some("wrong_issuer"),
            Some("expired"),
            Some("not_yet_valid"),
            None, // 40 KB: not even parsed as a JWT (fingerprint only)
        ]
    );
    for e in &evs {
        // A forged token names only the actor it claims to be, never a verified one.
        assert!(
            !e.actor.verified
                && e.actor
                    .source
                    .as_deref()
                    .is_none_or(|s| s.starts_with("claimed:")),
            "{:?}",
            e.actor
        );
    }
}
