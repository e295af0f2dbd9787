//! TLS: the listener over HTTP/1.1 and HTTP/2 (ALPN) with a test CA, certificate rotation
//! without a restart, and an https upstream with a client certificate (mTLS).

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::harness;
use support::jwks_server::FIX;
use support::upstream;

fn roots(files: &[&str]) -> rustls::RootCertStore {
    let mut r = rustls::RootCertStore::empty();
    for f in files {
        for c in CertificateDer::pem_file_iter(format!("{FIX}{f}")).unwrap() {
            r.add(c.unwrap()).unwrap();
        }
    }
    r
}

struct TlsReply {
    alpn: Option<Vec<u8>>,
    peer_cert: Vec<u8>,
    status: u16,
    body: serde_json::Value,
}

/// One GET over a fresh TLS connection, speaking h2 or http/1.1 as negotiated.
async fn tls_get(addr: std::net::SocketAddr, trust: &[&str], alpn: &[u8], path: &str) -> TlsReply {
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots(trust))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let (_, session) = tls.get_ref();
    let negotiated = session.alpn_protocol().map(<[u8]>::to_vec);
    let peer_cert = session.peer_certificates().unwrap()[0].as_ref().to_vec();
    let req = Request::get(format!("https://127.0.0.1:{}{path}", addr.port()))
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = if negotiated.as_deref() == Some(b"h2") {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        send.send_request(req).await.unwrap()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        send.send_request(req).await.unwrap()
    };
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    TlsReply {
        alpn: negotiated,
        peer_cert,
        status,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    }
}

fn tls_block(dir: &std::path::Path) -> String {
    format!(
        "tls:\n  cert_file: {0}/tls.crt\n  key_file: {0}/tls.key\n  reload_interval: 50ms\n",
        dir.display()
    )
}

fn der(file: &str) -> Vec<u8> {
    CertificateDer::pem_file_iter(format!("{FIX}{file}"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .as_ref()
        .to_vec()
}

#[tokio::test]
async fn tls_listener_speaks_http1_and_http2_and_reloads_its_certificate() {
    let up = upstream::spawn().await;
    let certs = tempfile::tempdir().unwrap();
    std::fs::copy(format!("{FIX}server.pem"), certs.path().join("tls.crt")).unwrap();
    std::fs::copy(format!("{FIX}server.key.pem"), certs.path().join("tls.key")).unwrap();
    let routes = "  - id: echo\n    match: { path: /echo-headers }\n    event: account.update\n";
    let mut sc = harness::start(up.addr, &tls_block(certs.path()), routes).await;

    let h1 = tls_get(sc.addr, &["ca.pem"], b"http/1.1", "/echo-headers").await;
    assert_eq!(
        (h1.alpn.as_deref(), h1.status),
        (Some(&b"http/1.1"[..]), 200)
    );
    assert_eq!(h1.body["x-forwarded-proto"], "https");
    let h2 = tls_get(sc.addr, &["ca.pem"], b"h2", "/echo-headers").await;
    assert_eq!((h2.alpn.as_deref(), h2.status), (Some(&b"h2"[..]), 200));
    assert_eq!(h2.peer_cert, der("server.pem"));

    // Renew: new files in place, no restart. Connections made after the reload see them.
    std::fs::copy(format!("{FIX}server2.pem"), certs.path().join("tls.crt")).unwrap();
    std::fs::copy(
        format!("{FIX}server2.key.pem"),
        certs.path().join("tls.key"),
    )
    .unwrap();
    let mut rotated = false;
    for _ in 0..100 {
        let r = tls_get(
            sc.addr,
            &["ca.pem", "ca2.pem"],
            b"http/1.1",
            "/echo-headers",
        )
        .await;
        if r.peer_cert == der("server2.pem") {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        rotated,
        "the renewed certificate was not picked up within 5s"
    );
    sc.stop().await;
    let evs = sc.events().await;
    assert!(
        evs.len() >= 3,
        "h1, h2 and at least one request after the renewal"
    );
    assert!(evs
        .iter()
        .all(|e| e.event_type == "account.update" && e.http.status == Some(200)));
}

/// An https upstream that requires a client certificate from the test client CA.
async fn mtls_upstream() -> std::net::SocketAddr {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(format!("{FIX}server.pem"))
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
    let key = PrivateKeyDer::from_pem_file(format!("{FIX}server.key.pem")).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder(Arc::new(roots(&["clientca.pem"])))
            .build()
            .unwrap();
    let cfg = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let client_cn = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(|c| c.len())
                    .unwrap_or(0);
                let svc = hyper::service::service_fn(move |_req| async move {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                        "{{\"client_certs\":{client_cn}}}"
                    )))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn https_upstream_with_a_client_certificate() {
    let up = mtls_upstream().await;
    let routes = "  - id: any\n    match: { path: /login }\n    event: auth.login\n";
    let yaml = |tls: &str| {
        format!(
            "upstream: https://127.0.0.1:{}\nstore: {{ url: \"sqlite://{{DB}}\" }}\n{tls}routes:\n{routes}",
            up.port()
        )
    };
    let start = |tls: String| async move {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let text = yaml(&tls).replace("{DB}", &db.display().to_string());
        let cfg = authtrail::config::load_str(&text, "tls.yaml").unwrap_or_else(|e| panic!("{e}"));
        harness::start_config(cfg, db, dir).await
    };
    let full = format!(
        "upstream_tls:\n  ca_file: {FIX}ca.pem\n  client_cert_file: {FIX}client.pem\n  client_key_file: {FIX}client.key.pem\n"
    );
    let mut sc = start(full).await;
    let r = harness::send(hyper::Method::POST, &sc.url("/login"), &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["client_certs"], 1);
    sc.stop().await;
    assert_eq!(sc.events().await[0].http.status, Some(200));

    // Without the client certificate the upstream refuses the handshake: 502, an error event.
    let mut sc = start(format!("upstream_tls:\n  ca_file: {FIX}ca.pem\n")).await;
    let r = harness::send(hyper::Method::POST, &sc.url("/login"), &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(r.status, 502);
    sc.stop().await;
    assert_eq!(
        sc.events().await[0].reason.as_deref(),
        Some("upstream_unreachable")
    );
}

#[test]
fn tls_config_errors_name_the_file() {
    let yaml = "upstream: http://127.0.0.1:9\ntls:\n  cert_file: /nonexistent/tls.crt\n  key_file: /nonexistent/tls.key\n";
    let err = authtrail::config::load_str(yaml, "a.yaml")
        .unwrap_err()
        .to_string();
    assert_eq!(err, "a.yaml:3:3: tls: certificate /nonexistent/tls.crt: I/O error: No such file or directory (os error 2)");
    let yaml = "upstream: http://127.0.0.1:9\nupstream_tls:\n  ca_file: /x.pem\n";
    let err = authtrail::config::load_str(yaml, "a.yaml")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "a.yaml:3:3: upstream_tls: upstream_tls needs an https:// upstream"
    );
}

/// `authtrail_tls_reloads_total{result}` as scraped from the admin listener now.
async fn tls_reloads(admin: std::net::SocketAddr, result: &str) -> f64 {
    let r = harness::send(
        hyper::Method::GET,
        &format!("http://{admin}/metrics"),
        &[],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let series = format!("authtrail_tls_reloads_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn a_certificate_renewed_before_its_key_keeps_the_previous_pair_until_the_key_follows() {
    let up = upstream::spawn().await;
    let certs = tempfile::tempdir().unwrap();
    let (crt, key) = (certs.path().join("tls.crt"), certs.path().join("tls.key"));
    std::fs::copy(format!("{FIX}server.pem"), &crt).unwrap();
    std::fs::copy(format!("{FIX}server.key.pem"), &key).unwrap();
    let routes = "  - id: echo\n    match: { path: /echo-headers }\n    event: account.update\n";
    let mut sc = harness::start(up.addr, &tls_block(certs.path()), routes).await;
    let trust = ["ca.pem", "ca2.pem"];

    // The renewal tool writes the new certificate first; the key is still the old one.
    std::fs::copy(format!("{FIX}server2.pem"), &crt).unwrap();
    let mut refused = false;
    for _ in 0..100 {
        if tls_reloads(sc.admin, "failed").await >= 1.0 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "the mismatched pair was not refused within 5s");
    // Handshakes keep working, with the previous pair.
    let r = tls_get(sc.addr, &trust, b"http/1.1", "/echo-headers").await;
    assert_eq!((r.status, r.peer_cert), (200, der("server.pem")));
    let r = tls_get(sc.addr, &trust, b"h2", "/echo-headers").await;
    assert_eq!((r.status, r.peer_cert), (200, der("server.pem")));
    let logs = harness::captured_logs();
    let warning = format!(
        "private key {} does not belong to certificate {} (their public keys differ)",
        key.display(),
        crt.display()
    );
    assert!(logs.contains(&warning), "{logs}");
    assert!(!logs.contains(&format!("tls certificate reloaded cert={}", crt.display())));

    // The key follows: the next check loads the new pair.
    std::fs::copy(format!("{FIX}server2.key.pem"), &key).unwrap();
    let mut rotated = false;
    for _ in 0..100 {
        let r = tls_get(sc.addr, &trust, b"http/1.1", "/echo-headers").await;
        assert_eq!(r.status, 200);
        if r.peer_cert == der("server2.pem") {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rotated, "the completed renewal was not picked up within 5s");
    assert_eq!(tls_reloads(sc.admin, "ok").await, 1.0);
    assert_eq!(
        tls_reloads(sc.admin, "failed").await,
        1.0,
        "one bad renewal, counted once however often it was retried"
    );
    sc.stop().await;
}

#[test]
fn check_refuses_a_key_that_is_not_the_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::copy(format!("{FIX}server2.pem"), &crt).unwrap();
    std::fs::copy(format!("{FIX}server.key.pem"), &key).unwrap();
    let cfg = dir.path().join("authtrail.yaml");
    std::fs::write(
        &cfg,
        format!(
            "upstream: http://127.0.0.1:9\ntls:\n  cert_file: {}\n  key_file: {}\nroutes: []\n",
            crt.display(),
            key.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_authtrail"))
        .args(["check", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "authtrail: {}:3:3: tls: private key {} does not belong to certificate {} (their public keys differ)",
            cfg.display(),
            key.display(),
            crt.display()
        )
    );
    // The matching pair passes.
    std::fs::copy(format!("{FIX}server2.key.pem"), &key).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_authtrail"))
        .args(["check", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_truncated_certificate_names_the_missing_marker_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let pem = std::fs::read_to_string(format!("{FIX}server.pem")).unwrap();
    let cut = &pem[..pem.find("-----END").unwrap()];
    std::fs::write(dir.path().join("tls.crt"), cut).unwrap();
    std::fs::copy(format!("{FIX}server.key.pem"), dir.path().join("tls.key")).unwrap();
    let yaml = format!("upstream: http://127.0.0.1:9\n{}", tls_block(dir.path()));
    let err = authtrail::config::load_str(&yaml, "a.yaml")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "a.yaml:3:3: tls: certificate {}/tls.crt: missing section end marker: \"-----END CERTIFICATE-----\"",
            dir.path().display()
        )
    );
}

/// A self-signed certificate for 127.0.0.1 valid until `not_after`, and its key, as PEM.
fn certificate_until(not_after: time::OffsetDateTime) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.not_before = not_after - time::Duration::days(365);
    params.not_after = not_after;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// The value of `series` (name and labels, as the exposition writes them) scraped from the
/// admin listener now, if it is there.
async fn scraped(admin: std::net::SocketAddr, series: &str) -> Option<f64> {
    let r = harness::send(
        hyper::Method::GET,
        &format!("http://{admin}/metrics"),
        &[],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
}

const EXPIRY: &str = "authtrail_tls_certificate_expiration_timestamp_seconds{listener=\"proxy\"}";

#[tokio::test]
async fn the_expiry_gauge_is_the_served_certificates_not_after_and_follows_a_renewal() {
    let up = upstream::spawn().await;
    let certs = tempfile::tempdir().unwrap();
    let (crt, key) = (certs.path().join("tls.crt"), certs.path().join("tls.key"));
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let (first, second) = (
        now + time::Duration::days(10),
        now + time::Duration::days(90),
    );
    let (pem, key_pem) = certificate_until(first);
    std::fs::write(&crt, pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    let routes = "  - id: echo\n    match: { path: /echo-headers }\n    event: account.update\n";
    let mut sc = harness::start(up.addr, &tls_block(certs.path()), routes).await;

    assert_eq!(
        scraped(sc.admin, EXPIRY).await,
        Some(first.unix_timestamp() as f64)
    );

    // Renewed in place: the gauge follows the reload.
    let (pem, key_pem) = certificate_until(second);
    std::fs::write(&key, key_pem).unwrap();
    std::fs::write(&crt, pem).unwrap();
    let mut seen = None;
    for _ in 0..100 {
        seen = scraped(sc.admin, EXPIRY).await;
        if seen == Some(second.unix_timestamp() as f64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen,
        Some(second.unix_timestamp() as f64),
        "the renewed certificate's notAfter within 5s"
    );
    assert_eq!(tls_reloads(sc.admin, "ok").await, 1.0);
    sc.stop().await;
}

#[test]
fn not_after_reads_generalized_time_past_2049() {
    // `openssl x509 -enddate -noout -in tests/fixtures/server.pem`: Nov  2 02:10:20 2126 GMT.
    let cert = CertificateDer::from_pem_file(format!("{FIX}server.pem")).unwrap();
    assert_eq!(authtrail::tls::not_after_unix(&cert), Ok(4_949_259_020));
    let (pem, _) = certificate_until(time::macros::datetime!(2031-05-06 07:08:09 UTC));
    let cert = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    assert_eq!(authtrail::tls::not_after_unix(&cert), Ok(1_935_817_689));
}
