//! Signed webhook delivery, shared by stream sinks and alert notifications: one JSON body per
//! POST, an `X-Authtrail-Timestamp` header (Unix seconds) and an `X-Authtrail-Signature` header
//! `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`, a timeout per attempt, and retries with
//! exponential backoff on connection errors, timeouts, 408, 429 and 5xx. Other statuses are
//! final. It never logs a body or the secret.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use bytes::Bytes;
use http::{header, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Header with the Unix time (seconds) the signature covers.
pub const TIMESTAMP_HEADER: &str = "x-authtrail-timestamp";
/// Header with `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "x-authtrail-signature";
/// Most bytes of a response body read (and thrown away) so the connection can be reused.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// A webhook signing key. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    pub fn new(bytes: &[u8]) -> Secret {
        Secret(bytes.into())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Where and how to deliver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    pub url: http::Uri,
    /// Signs each request when set.
    pub secret: Option<Secret>,
    /// Per attempt, connecting included.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// Pause before the first retry; doubles each time (at most 30s).
    pub backoff: Duration,
    /// CA certificates trusted instead of the system roots.
    pub ca_file: Option<PathBuf>,
}

/// `v1=<hex>`: the signature of `body` sent at `timestamp` (Unix seconds).
pub fn sign(secret: &Secret, timestamp: u64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &secret.0);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1={}", crate::hex::encode(ctx.sign().as_ref()))
}

/// Why a delivery was given up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("webhook {url}: {why} (after {attempts} attempts)")]
    Failed {
        url: String,
        why: String,
        attempts: u32,
    },
    #[error("webhook {url}: refused with status {status} (not retried)")]
    Refused { url: String, status: u16 },
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A webhook ready to deliver to.
#[derive(Clone)]
pub struct Webhook {
    cfg: WebhookConfig,
    client: HttpsClient,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.cfg.url.to_string())
            .finish_non_exhaustive()
    }
}

/// One attempt's result: retry or not.
enum Attempt {
    Done,
    Retry(String),
    Final(u16),
}

impl Webhook {
    /// A client for `cfg`: HTTPS with `ca_file` (else the system roots, see
    /// [`crate::tls::trust_roots`]), plain HTTP where the
    /// config allowed it (loopback hosts).
    pub fn new(cfg: WebhookConfig) -> Result<Webhook, String> {
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let roots = crate::tls::trust_roots(cfg.ca_file.as_deref(), "webhook")?;
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(cfg.timeout));
        let https = builder
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Webhook { cfg, client })
    }

    pub fn url(&self) -> &http::Uri {
        &self.cfg.url
    }

    /// POST `body` (JSON), retrying as configured. Returns the attempts it took.
    pub async fn post(&self, body: Bytes) -> Result<u32, Error> {
        let mut delay = self.cfg.backoff;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let why = match self.attempt(body.clone()).await {
                Attempt::Done => return Ok(attempts),
                Attempt::Final(status) => {
                    return Err(Error::Refused {
                        url: self.cfg.url.to_string(),
                        status,
                    })
                }
                Attempt::Retry(why) => why,
            };
            if attempts > self.cfg.retries {
                return Err(Error::Failed {
                    url: self.cfg.url.to_string(),
                    why,
                    attempts,
                });
            }
            tracing::debug!(url = %self.cfg.url, attempt = attempts, error = %why, "webhook attempt failed; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    async fn attempt(&self, body: Bytes) -> Attempt {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut req = Request::post(self.cfg.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("authtrail/", env!("CARGO_PKG_VERSION")),
            )
            .header(TIMESTAMP_HEADER, timestamp);
        if let Some(secret) = &self.cfg.secret {
            let sig = sign(secret, timestamp, &body);
            if let Ok(v) = HeaderValue::from_str(&sig) {
                req = req.header(SIGNATURE_HEADER, v);
            }
        }
        let req = match req.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => return Attempt::Retry(format!("request: {e}")),
        };
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| format!("{e}"))?;
            let status = resp.status();
            // Read a little of the answer so the connection can go back to the pool.
            let _ = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await;
            Ok::<StatusCode, String>(status)
        };
        match tokio::time::timeout(self.cfg.timeout, exchange).await {
            Err(_) => Attempt::Retry(format!("timed out after {:?}", self.cfg.timeout)),
            Ok(Err(e)) => Attempt::Retry(e),
            Ok(Ok(s)) if s.is_success() => Attempt::Done,
            Ok(Ok(s))
                if s.is_server_error()
                    || s == StatusCode::TOO_MANY_REQUESTS
                    || s == StatusCode::REQUEST_TIMEOUT =>
            {
                Attempt::Retry(format!("status {}", s.as_u16()))
            }
            Ok(Ok(s)) => Attempt::Final(s.as_u16()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_covers_timestamp_and_body() {
        let secret = Secret::new(b"0123456789abcdef");
        let a = sign(&secret, 1_700_000_000, b"{}");
        assert!(a.starts_with("v1=") && a.len() == 3 + 64, "{a}");
        assert_ne!(a, sign(&secret, 1_700_000_001, b"{}"));
        assert_ne!(a, sign(&secret, 1_700_000_000, b"{ }"));
        assert_ne!(
            a,
            sign(&Secret::new(b"fedcba9876543210"), 1_700_000_000, b"{}")
        );
        // RFC 4231 test case 2, as a check that this is plain HMAC-SHA256 over "ts.body".
        let key = Secret::new(b"Jefe");
        let sig = sign(&key, 0, b"what do ya want for nothing?");
        // HMAC-SHA256("Jefe", "0.what do ya want for nothing?"), computed independently.
        assert_eq!(
            sig,
            "v1=37f471929915ccd2cbbe79feb84ffcff4f2bb25e15fc41c2506687331ae179cc"
        );
        assert_eq!(format!("{secret:?}"), "Secret(..)");
    }
}
