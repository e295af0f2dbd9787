//! TLS on both sides of the proxy, with rustls: the listener's certificate (reloaded from its
//! files when they change, so a renewed certificate needs no restart; HTTP/2 by ALPN), and the
//! upstream client's roots and optional client certificate (mTLS).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Read a PEM certificate chain and private key into a signing key.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "certificate {}: no certificate in the file",
            cert.display()
        ));
    }
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("private key {}: {e}", key.display()))?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der)
        .map_err(|e| format!("private key {}: {e}", key.display()))?;
    Ok(CertifiedKey::new(chain, signing))
}

/// The listener's certificate, swapped in place when its files change.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    stamp: RwLock<Option<(SystemTime, SystemTime)>>,
}

impl ReloadingCert {
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<Arc<ReloadingCert>, String> {
        let ck = load_certified_key(&cert, &key)?;
        let me = ReloadingCert {
            stamp: RwLock::new(stamp(&cert, &key)),
            cert,
            key,
            current: RwLock::new(Arc::new(ck)),
        };
        Ok(Arc::new(me))
    }

    /// Reload when either file's modification time changed; keep the old certificate when the
    /// new files do not load (a half-written renewal is retried on the next check).
    pub fn reload_if_changed(&self) -> bool {
        let now = stamp(&self.cert, &self.key);
        if now.is_none() || now == *self.stamp.read().unwrap_or_else(|e| e.into_inner()) {
            return false;
        }
        match load_certified_key(&self.cert, &self.key) {
            Ok(ck) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ck);
                *self.stamp.write().unwrap_or_else(|e| e.into_inner()) = now;
                tracing::info!(cert = %self.cert.display(), "tls certificate reloaded");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "tls certificate changed but does not load; keeping the previous one");
                false
            }
        }
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

/// The upstream client's TLS: `ca_file` roots (else the system's), and a client certificate
/// for mTLS when given.
pub fn client_config(
    ca_file: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("ca file {}: {e}", path.display()))?
            {
                let cert = cert.map_err(|e| format!("ca file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("ca file {}: {e}", path.display()))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
        }
    }
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
