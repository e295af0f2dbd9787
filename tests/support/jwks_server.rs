//! An HTTPS server on 127.0.0.1 serving a JWKS document that a test can swap (key rotation) or
//! take down, with a certificate from the test CA in tests/fixtures.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

pub const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");

#[derive(Clone)]
pub struct JwksServer {
    pub addr: SocketAddr,
    doc: Arc<Mutex<String>>,
    failing: Arc<AtomicBool>,
    pub fetches: Arc<AtomicU64>,
}

impl JwksServer {
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/jwks.json", self.addr.port())
    }
    pub fn set_keys(&self, kids: &[&str]) {
        *self.doc.lock().unwrap() = jwks(kids);
    }
    /// Answer 503 from now on (or again 200).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

/// A JWKS document with the fixture keys named by `kids` (rsa1, rsa2).
pub fn jwks(kids: &[&str]) -> String {
    let keys: Vec<serde_json::Value> = kids
        .iter()
        .map(|k| {
            serde_json::from_slice(&std::fs::read(format!("{FIX}{k}.jwk.json")).unwrap()).unwrap()
        })
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

pub async fn spawn(kids: &[&str]) -> JwksServer {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(format!("{FIX}server.pem"))
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
    let key = PrivateKeyDer::from_pem_file(format!("{FIX}server.key.pem")).unwrap();
    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = JwksServer {
        addr: listener.local_addr().unwrap(),
        doc: Arc::new(Mutex::new(jwks(kids))),
        failing: Arc::new(AtomicBool::new(false)),
        fetches: Arc::new(AtomicU64::new(0)),
    };
    let state = server.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let state = state.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |_req| {
                    let state = state.clone();
                    async move {
                        state.fetches.fetch_add(1, Ordering::SeqCst);
                        let resp = if state.failing.load(Ordering::SeqCst) {
                            Response::builder()
                                .status(StatusCode::SERVICE_UNAVAILABLE)
                                .body(Full::new(Bytes::new()))
                                .unwrap()
                        } else {
                            let doc = state.doc.lock().unwrap().clone();
                            Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(doc)))
                                .unwrap()
                        };
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    server
}
