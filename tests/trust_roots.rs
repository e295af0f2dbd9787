//! The three outgoing TLS clients (upstream, JWKS, webhook) load their trust roots through one
//! loader, `tls::trust_roots`, and so behave alike: a `ca_file` that cannot be read is an
//! error, and no `ca_file` on a machine without system roots is a warning, not an error (a
//! loopback `http://` endpoint needs no roots).
//!
//! This file is its own test binary: it points the system roots (`SSL_CERT_FILE`,
//! `SSL_CERT_DIR`, read by rustls-native-certs) at an empty directory before anything loads
//! them, so no other test sees the change.

use std::path::Path;
use std::time::Duration;

use authtrail::identity::jwks::JwksCache;
use authtrail::ops::webhook::{Webhook, WebhookConfig};
use authtrail::tls::{client_config, trust_roots};

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");

fn webhook(ca_file: Option<&Path>) -> Result<Webhook, String> {
    Webhook::new(WebhookConfig {
        url: "http://127.0.0.1:9/hook".parse().unwrap(),
        secret: None,
        timeout: Duration::from_secs(1),
        retries: 0,
        backoff: Duration::from_millis(10),
        ca_file: ca_file.map(Path::to_path_buf),
    })
}

#[test]
fn all_clients_load_their_roots_alike() {
    let empty = tempfile::tempdir().unwrap();
    let no_certs = empty.path().join("none.pem");
    std::fs::write(&no_certs, "").unwrap();
    // The only test of this binary: no other thread reads the environment.
    std::env::set_var("SSL_CERT_FILE", &no_certs);
    std::env::set_var("SSL_CERT_DIR", empty.path());

    // No ca_file, no system roots: an empty store and a warning, for every client.
    assert!(trust_roots(None, "test").unwrap().is_empty());
    client_config(None, None).expect("upstream client without system roots");
    JwksCache::client(None).expect("JWKS client without system roots");
    webhook(None).expect("webhook client without system roots");

    // A ca_file: exactly its certificates.
    let ca = format!("{FIX}ca.pem");
    assert_eq!(trust_roots(Some(Path::new(&ca)), "test").unwrap().len(), 1);
    client_config(Some(Path::new(&ca)), None).unwrap();
    JwksCache::client(Some(Path::new(&ca))).unwrap();
    webhook(Some(Path::new(&ca))).unwrap();

    // A ca_file that is not there: the same error from each.
    let missing = empty.path().join("missing.pem");
    let want = trust_roots(Some(&missing), "test").unwrap_err();
    assert!(
        want.starts_with(&format!("ca file {}: ", missing.display())),
        "{want}"
    );
    assert_eq!(client_config(Some(&missing), None).unwrap_err(), want);
    assert_eq!(JwksCache::client(Some(&missing)).err().unwrap(), want);
    assert_eq!(webhook(Some(&missing)).err().unwrap(), want);
}
