//! TLS helpers shared by the proxy, the config and every outgoing client, with rustls: the
//! listener's certificate (reloaded from its files when they change, so a renewed certificate
//! needs no restart; HTTP/2 by ALPN), the upstream client's roots and optional client
//! certificate (mTLS), and [`trust_roots`], the one CA-file loader the upstream, JWKS and
//! webhook clients share. It also reads the served certificate's notAfter (the expiry gauge's
//! value). A leaf: it imports nothing from the crate.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A PEM error as text: rustls-pki-types prints a section label as a list of bytes
/// (`[67, 69, 82, …]`); this prints the marker itself.
fn pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "missing section end marker: \"-----END {}-----\"",
            String::from_utf8_lossy(end_marker).escape_debug()
        ),
        pem::Error::IllegalSectionStart { line } => format!(
            "illegal section start: \"{}\"",
            String::from_utf8_lossy(line).escape_debug()
        ),
        other => other.to_string(),
    }
}

/// Read a PEM certificate chain and private key into a signing key, and check that the key
/// is the certificate's: a renewal that has replaced one file but not yet the other is refused
/// here rather than failing every handshake.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let cert_err = |e: pem::Error| format!("certificate {}: {}", cert.display(), pem_error(&e));
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(cert_err)?
        .collect::<Result<_, _>>()
        .map_err(cert_err)?;
    if chain.is_empty() {
        return Err(format!(
            "certificate {}: no certificate in the file",
            cert.display()
        ));
    }
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("private key {}: {}", key.display(), pem_error(&e)))?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der)
        .map_err(|e| format!("private key {}: {e}", key.display()))?;
    let ck = CertifiedKey::new(chain, signing);
    match ck.keys_match() {
        // Unknown: the key type cannot give its public key, so there is nothing to compare.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(ck),
        Err(rustls::Error::InconsistentKeys(_)) => Err(format!(
            "private key {} does not belong to certificate {} (their public keys differ)",
            key.display(),
            cert.display()
        )),
        Err(e) => Err(format!("certificate {}: {e}", cert.display())),
    }
}

/// The end of a certificate's validity (its notAfter), in Unix seconds.
///
/// # Errors
/// The DER does not decode as an X.509 certificate.
pub fn not_after_unix(cert: &CertificateDer<'_>) -> Result<i64, String> {
    use x509_cert::der::Decode;
    let c = x509_cert::Certificate::from_der(cert.as_ref()).map_err(|e| e.to_string())?;
    let secs = c
        .tbs_certificate()
        .validity()
        .not_after
        .to_unix_duration()
        .as_secs();
    i64::try_from(secs).map_err(|_| format!("notAfter {secs} out of range"))
}

/// The served (leaf) certificate's notAfter, or [`NO_EXPIRY`] when it does not decode: rustls
/// serves what it was given, so an undecodable validity is logged, never refused.
fn leaf_not_after(ck: &CertifiedKey, path: &Path) -> i64 {
    match ck.cert.first().map(not_after_unix) {
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            tracing::warn!(cert = %path.display(), error = %e, "tls certificate: its validity does not decode; no expiry is reported for it");
            NO_EXPIRY
        }
        None => NO_EXPIRY,
    }
}

/// [`ReloadingCert::not_after`]'s value while the served certificate's expiry is unknown.
const NO_EXPIRY: i64 = i64::MIN;

/// The listener's certificate, swapped in place when its files change.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// The served leaf's notAfter in Unix seconds ([`NO_EXPIRY`]: unknown), set on every load.
    not_after: AtomicI64,
    stamp: RwLock<Option<(SystemTime, SystemTime)>>,
    /// The files' stamp at the last failed reload, so one bad renewal is logged and counted
    /// once while it is retried on every check.
    failed: RwLock<Option<(SystemTime, SystemTime)>>,
    /// Renewals loaded since start.
    pub reloads: AtomicU64,
    /// Renewals that did not load (each changed state of the files counted once).
    pub reload_failures: AtomicU64,
}

impl ReloadingCert {
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<Arc<ReloadingCert>, String> {
        let ck = load_certified_key(&cert, &key)?;
        let me = ReloadingCert {
            not_after: AtomicI64::new(leaf_not_after(&ck, &cert)),
            stamp: RwLock::new(stamp(&cert, &key)),
            failed: RwLock::new(None),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            cert,
            key,
            current: RwLock::new(Arc::new(ck)),
        };
        Ok(Arc::new(me))
    }

    /// Reload when either file's modification time changed; keep the old certificate when the
    /// new files do not load — half-written, or a certificate whose key is not written yet —
    /// and retry on every later check until they do.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamp(&self.cert, &self.key);
        if now.is_none() || now == *self.stamp.read().unwrap_or_else(|e| e.into_inner()) {
            return false;
        }
        match load_certified_key(&self.cert, &self.key) {
            Ok(ck) => {
                self.not_after
                    .store(leaf_not_after(&ck, &self.cert), Ordering::Relaxed);
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ck);
                *self.stamp.write().unwrap_or_else(|e| e.into_inner()) = now;
                *self.failed.write().unwrap_or_else(|e| e.into_inner()) = None;
                self.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(cert = %self.cert.display(), "tls certificate reloaded");
                true
            }
            Err(e) => {
                let mut failed = self.failed.write().unwrap_or_else(|e| e.into_inner());
                if *failed != now {
                    *failed = now;
                    self.reload_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "tls certificate changed but does not load; keeping the previous one");
                }
                false
            }
        }
    }

    /// The served certificate's notAfter, Unix seconds (`None` when it does not decode).
    pub fn not_after(&self) -> Option<i64> {
        Some(self.not_after.load(Ordering::Relaxed)).filter(|&t| t != NO_EXPIRY)
    }

    /// Check the files every `every` until the task is aborted.
    pub fn spawn_watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                me.reload_if_changed();
            }
        })
    }
}

fn stamp(cert: &Path, key: &Path) -> Option<(SystemTime, SystemTime)> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(cert)?, m(key)?))
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// The listener's rustls config: the reloading certificate, ALPN h2 then http/1.1.
pub fn server_config(cert: Arc<ReloadingCert>) -> Arc<rustls::ServerConfig> {
    let mut cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(cert);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// The roots an outgoing HTTPS client trusts (the upstream, a JWKS endpoint, a webhook).
///
/// - With a `ca_file`: exactly the certificates of that PEM file; a file that cannot be read
///   or parsed is an error (`ca file PATH: …`), so a wrong path is a config error.
/// - Without one: the system's roots. Finding none is **not** an error (a loopback `http://`
///   endpoint needs no roots); a warning naming `purpose` is logged, and HTTPS handshakes with
///   that client will then fail until a `ca_file` is set.
///
/// # Errors
/// An unreadable or malformed `ca_file`.
pub fn trust_roots(ca_file: Option<&Path>, purpose: &str) -> Result<rustls::RootCertStore, String> {
    roots_or_system(ca_file, purpose, rustls_native_certs::load_native_certs)
}

/// [`trust_roots`] with the system's roots injected (for tests).
fn roots_or_system(
    ca_file: Option<&Path>,
    purpose: &str,
    system: impl FnOnce() -> rustls_native_certs::CertificateResult,
) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let err = |e: &dyn std::fmt::Display| format!("ca file {}: {e}", path.display());
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| err(&e))? {
                let cert = cert.map_err(|e| err(&e))?;
                roots.add(cert).map_err(|e| err(&e))?;
            }
        }
        None => {
            for cert in system().certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                tracing::warn!(
                    client = purpose,
                    "no system trust roots found: HTTPS connections of this client will fail; set its ca_file"
                );
            }
        }
    }
    Ok(roots)
}

/// The upstream client's TLS: `ca_file` roots (else the system's, see [`trust_roots`]), and a
/// client certificate for mTLS when given.
pub fn client_config(
    ca_file: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, String> {
    let roots = trust_roots(ca_file, "upstream")?;
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    match client_cert {
        Some((cert, key)) => {
            let ck = load_certified_key(cert, key)?;
            let chain = ck.cert.clone();
            let der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("private key {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, der)
                .map_err(|e| format!("client certificate {}: {e}", cert.display()))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}
