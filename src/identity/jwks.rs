//! JWKS key sets: fetched over HTTPS (rustls; system roots or a configured CA) or read from a
//! file, cached, refreshed on a schedule and when a token names an unknown `kid` (rate-limited,
//! one fetch at a time). The last good set is kept through fetch failures; before the first
//! success, verification reports `keys_unavailable`, never a bad token.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Longest a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The family of an algorithm: keys of one family never verify another's.
pub fn family(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => "hmac",
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => "rsa",
        Algorithm::ES256 | Algorithm::ES384 => "ec",
        Algorithm::EdDSA => "okp",
        // An algorithm this code does not know verifies nothing.
        _ => "unknown",
    }
}

/// Where the JWKS document lives.
pub enum JwksSource {
    Url {
        uri: http::Uri,
        client: Box<HttpsClient>,
    },
    File(PathBuf),
}

/// One usable key of a JWKS document.
pub struct JwkKey {
    pub kid: Option<String>,
    pub alg: Option<Algorithm>,
    pub family: &'static str,
    pub key: DecodingKey,
}

/// The keys of one successful fetch.
pub struct JwkKeys {
    pub keys: Vec<JwkKey>,
}

impl JwkKeys {
    /// The key for `kid` that can verify `alg`; without a `kid`, the only such key.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&DecodingKey> {
        let fits = |k: &&JwkKey| k.family == family(alg) && k.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(fits)
                .find(|k| k.kid.as_deref() == Some(kid))
                .map(|k| &k.key),
            None => {
                let mut it = self.keys.iter().filter(fits);
                match (it.next(), it.next()) {
                    (Some(k), None) => Some(&k.key),
                    _ => None,
                }
            }
        }
    }
}

/// A cached, refreshed JWKS.
pub struct JwksCache {
    pub name: String,
    source: JwksSource,
    keys: RwLock<Option<Arc<JwkKeys>>>,
    last_attempt: Mutex<Option<Instant>>,
    gate: tokio::sync::Mutex<()>,
    /// Shortest time between two fetches triggered by unknown keys.
    pub min_interval: Duration,
    /// Scheduled refresh period.
    pub every: Duration,
    pub refreshes: AtomicU64,
    pub failures: AtomicU64,
}

impl JwksCache {
    pub fn new(
        name: String,
        source: JwksSource,
        every: Duration,
        min_interval: Duration,
    ) -> JwksCache {
        JwksCache {
            name,
            source,
            keys: RwLock::new(None),
            last_attempt: Mutex::new(None),
            gate: tokio::sync::Mutex::new(()),
            min_interval,
            every,
            refreshes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// An HTTPS (or loopback HTTP) client trusting `ca_file`, else the system roots
    /// ([`crate::tls::trust_roots`]: no system roots is a warning, not an error).
    pub fn client(ca_file: Option<&std::path::Path>) -> Result<HttpsClient, String> {
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let roots = crate::tls::trust_roots(ca_file, "jwks")?;
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let https = builder
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Client::builder(TokioExecutor::new()).build(https))
    }

    /// The keys held now (`None` before the first successful fetch).
    pub fn current(&self) -> Option<Arc<JwkKeys>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fetch now unless a fetch happened within `min_interval`; one fetch at a time.
    pub async fn refresh_if_due(&self) {
        let _gate = self.gate.lock().await;
        {
            let mut last = self.last_attempt.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < self.min_interval) {
                return;
            }
            *last = Some(Instant::now());
        }
        self.fetch_and_store().await;
    }

    /// [`refresh_if_due`](Self::refresh_if_due) on a spawned task.
    pub fn refresh_in_background(self: &Arc<Self>) {
        if tokio::runtime::Handle::try_current().is_ok() {
            let me = self.clone();
            tokio::spawn(async move { me.refresh_if_due().await });
        }
    }

    /// Fetch unconditionally (startup and the schedule).
    pub async fn refresh(&self) -> bool {
        let _gate = self.gate.lock().await;
        *self.last_attempt.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.fetch_and_store().await
    }

    /// Refresh every `every` until the returned task is aborted.
    pub fn spawn_schedule(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(me.every).await;
                me.refresh().await;
            }
        })
    }

    async fn fetch_and_store(&self) -> bool {
        match self.fetch().await {
            Ok(keys) => {
                let n = keys.keys.len();
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(keys));
                self.refreshes.fetch_add(1, Ordering::Relaxed);
                tracing::info!(keys = %self.name, count = n, "jwks refreshed");
                true
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(keys = %self.name, error = %e, "jwks refresh failed; keeping the last good key set");
                false
            }
        }
    }

    async fn fetch(&self) -> Result<JwkKeys, String> {
        let bytes = match &self.source {
            JwksSource::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| format!("jwks file {}: {e}", path.display()))?,
            JwksSource::Url { uri, client } => {
                let req = http::Request::get(uri.clone())
                    .header(http::header::ACCEPT, "application/json")
                    .body(Empty::new())
                    .map_err(|e| format!("jwks request: {e}"))?;
                let resp = tokio::time::timeout(FETCH_TIMEOUT, client.request(req))
                    .await
                    .map_err(|_| format!("jwks {uri}: timed out"))?
                    .map_err(|e| format!("jwks {uri}: {e}"))?;
                if !resp.status().is_success() {
                    return Err(format!("jwks {uri}: status {}", resp.status()));
                }
                let body = tokio::time::timeout(
                    FETCH_TIMEOUT,
                    Limited::new(resp.into_body(), MAX_JWKS_BYTES).collect(),
                )
                .await
                .map_err(|_| format!("jwks {uri}: body timed out"))?
                .map_err(|e| format!("jwks {uri}: {e}"))?;
                body.to_bytes().to_vec()
            }
        };
        parse_jwks(&bytes)
    }
}

/// Parse a JWKS document. Symmetric (`oct`) keys are ignored: a JWKS never supplies HMAC secrets.
pub fn parse_jwks(bytes: &[u8]) -> Result<JwkKeys, String> {
    let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| format!("invalid jwks: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let fam = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => "rsa",
            AlgorithmParameters::EllipticCurve(_) => "ec",
            AlgorithmParameters::OctetKeyPair(_) => "okp",
            // Symmetric keys, and kinds this version does not know, are never used.
            _ => continue,
        };
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| Algorithm::try_from(a).ok());
        keys.push(JwkKey {
            kid: jwk.common.key_id.clone(),
            alg,
            family: fam,
            key,
        });
    }
    Ok(JwkKeys { keys })
}
