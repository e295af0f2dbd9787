//! HTTP delivery, shared by stream sinks and alert notifications: signed webhooks (one JSON body
//! per POST, an `X-Authtrail-Timestamp` header (Unix seconds) and an `X-Authtrail-Signature`
//! header `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`) and the product sinks' requests
//! ([`Webhook::send`]: their content type, configured headers, optional gzip, and the answer's
//! body for the sink to read). Each attempt has a timeout; connection errors, timeouts, 408, 429
//! and 5xx are retried with exponential backoff, other statuses are final. It never logs a body,
//! a header value or the secret.

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
/// Most bytes of a response body kept for a sink that reads it (an Elasticsearch `_bulk`
/// answer names every item).
const MAX_KEPT_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Extra request headers (`sinks.NAME.http.headers`): names are shown by `Debug`, values never
/// (they are usually credentials) and are marked sensitive for hyper.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(header::HeaderName, HeaderValue)>);

impl Headers {
    /// Headers from checked names and values.
    pub fn new(pairs: Vec<(header::HeaderName, HeaderValue)>) -> Headers {
        Headers(
            pairs
                .into_iter()
                .map(|(n, mut v)| {
                    v.set_sensitive(true);
                    (n, v)
                })
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &header::HeaderName> {
        self.0.iter().map(|(n, _)| n)
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(n, _)| format!("{n}: ..")))
            .finish()
    }
}

/// One request of a product sink: its body, content type, extra headers and whether the body
/// goes gzip-compressed (`Content-Encoding: gzip`).
pub struct Outgoing<'a> {
    pub body: Bytes,
    pub content_type: &'static str,
    pub headers: &'a Headers,
    pub gzip: bool,
}

/// A delivered request: the attempts it took and the final (2xx) answer.
#[derive(Debug)]
pub struct Reply {
    pub attempts: u32,
    pub status: u16,
    /// The answer's body (at most 16 MiB; empty if larger or unreadable).
    pub body: Bytes,
}

/// `body` gzip-compressed.
pub fn gzip(body: &[u8]) -> Bytes {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(body);
    Bytes::from(enc.finish().unwrap_or_default())
}

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
    Done(u16, Bytes),
    Retry(String),
    Final(u16),
}

/// How one request is built, for [`Webhook::attempt`].
struct RequestSpec<'a> {
    body: Bytes,
    content_type: &'static str,
    headers: Option<&'a Headers>,
    gzip: bool,
    /// Sign with the webhook's secret (the signed webhook), or not (product sinks).
    signed: bool,
    /// Keep the answer's body.
    keep: bool,
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
        let spec = RequestSpec {
            body,
            content_type: "application/json",
            headers: None,
            gzip: false,
            signed: true,
            keep: false,
        };
        self.deliver(&spec).await.map(|r| r.attempts)
    }

    /// POST a product sink's request (no signature headers), retrying as configured; the
    /// answer's body is kept for the sink to read.
    pub async fn send(&self, out: &Outgoing<'_>) -> Result<Reply, Error> {
        let spec = RequestSpec {
            body: if out.gzip {
                gzip(&out.body)
            } else {
                out.body.clone()
            },
            content_type: out.content_type,
            headers: Some(out.headers),
            gzip: out.gzip,
            signed: false,
            keep: true,
        };
        self.deliver(&spec).await
    }

    async fn deliver(&self, spec: &RequestSpec<'_>) -> Result<Reply, Error> {
        let mut delay = self.cfg.backoff;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let why = match self.attempt(spec).await {
                Attempt::Done(status, body) => {
                    return Ok(Reply {
                        attempts,
                        status,
                        body,
                    })
                }
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

    async fn attempt(&self, spec: &RequestSpec<'_>) -> Attempt {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut req = Request::post(self.cfg.url.clone())
            .header(header::CONTENT_TYPE, spec.content_type)
            .header(
                header::USER_AGENT,
                concat!("authtrail/", env!("CARGO_PKG_VERSION")),
            );
        if spec.gzip {
            req = req.header(header::CONTENT_ENCODING, "gzip");
        }
        if let Some(headers) = spec.headers {
            for (name, value) in &headers.0 {
                req = req.header(name, value);
            }
        }
        if spec.signed {
            req = req.header(TIMESTAMP_HEADER, timestamp);
            if let Some(secret) = &self.cfg.secret {
                let sig = sign(secret, timestamp, &spec.body);
                if let Ok(v) = HeaderValue::from_str(&sig) {
                    req = req.header(SIGNATURE_HEADER, v);
                }
            }
        }
        let req = match req.body(Full::new(spec.body.clone())) {
            Ok(r) => r,
            Err(e) => return Attempt::Retry(format!("request: {e}")),
        };
        let limit = if spec.keep {
            MAX_KEPT_RESPONSE_BYTES
        } else {
            MAX_RESPONSE_BYTES
        };
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| format!("{e}"))?;
            let status = resp.status();
            // Read the answer (a little of it when it is thrown away) so the connection can go
            // back to the pool.
            let body = http_body_util::Limited::new(resp.into_body(), limit)
                .collect()
                .await
                .map(http_body_util::Collected::to_bytes)
                .unwrap_or_default();
            Ok::<(StatusCode, Bytes), String>((status, body))
        };
        match tokio::time::timeout(self.cfg.timeout, exchange).await {
            Err(_) => Attempt::Retry(format!("timed out after {:?}", self.cfg.timeout)),
            Ok(Err(e)) => Attempt::Retry(e),
            Ok(Ok((s, body))) if s.is_success() => {
                Attempt::Done(s.as_u16(), if spec.keep { body } else { Bytes::new() })
            }
            Ok(Ok((s, _)))
                if s.is_server_error()
                    || s == StatusCode::TOO_MANY_REQUESTS
                    || s == StatusCode::REQUEST_TIMEOUT =>
            {
                Attempt::Retry(format!("status {}", s.as_u16()))
            }
            Ok(Ok((s, _))) => Attempt::Final(s.as_u16()),
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
