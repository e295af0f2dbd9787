//! Typed configuration: one YAML file, parsed at the edge into checked types.
//!
//! Loading reports every problem with the file, line, column and field path
//! (`authtrail.yaml:12:11: routes[1].match.path: invalid path template "/a/{": unclosed brace`).
//! Syntax and type errors stop the parse at the first one (serde cannot go on); all cross-field
//! checks (duplicate ids, shadowed routes, unknown parameters, secret fields) are reported
//! together. `${ENV}` and `${ENV:-default}` are substituted in string values.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::header::HeaderName;

use crate::classify::redact::Redactor;
use crate::classify::RouteMap;

pub mod model;
pub mod types;

/// Tests that set and unset the same environment variables take this lock.
#[cfg(test)]
pub(crate) static TEST_ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());
mod validate;

/// One problem in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: u64,
    pub column: u64,
    /// Field path such as `routes[3].match.path`; empty for the document itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config {file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
}

impl Error {
    /// The individual problems (empty for a read error).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            Error::Invalid(d) => d,
            Error::Read { .. } => &[],
        }
    }
}

/// Proxy timeouts, resolved with their defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub header_read: Duration,
    pub body_read: Duration,
    pub upstream_connect: Duration,
    pub upstream_response: Duration,
    pub idle: Duration,
    pub shutdown_grace: Duration,
}

/// Store settings, resolved with their defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    pub url: String,
    /// The queue, batches, chain instance (`None`: the spool directory's persisted id) and
    /// signed checkpoints (`store.checkpoint`) of the writer. Under [`load_file_for_verify`]
    /// without the signing key, the checkpoint's `signer` is a stand-in that must not sign.
    pub pipeline: crate::pipeline::PipelineConfig,
    /// Longest a mapped request waits for a place in a full queue before it is forwarded.
    pub queue_wait: Duration,
    pub sync_timeout: Duration,
    pub spool: crate::pipeline::SpoolConfig,
}

/// Which apps an admin credential sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppScope {
    /// Every app, and events with no app.
    All,
    /// Only events whose app is one of these.
    Apps(Vec<String>),
}

/// What an admin credential may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// List and get events, a token's life, stats, coverage.
    Read,
    /// Bulk export (`/v1/export`).
    Export,
    /// Re-read the config (`POST /v1/reload`); only with an app scope of `*`.
    Reload,
}

impl Permission {
    /// The name used in the config and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Export => "export",
            Permission::Reload => "reload",
        }
    }
}

/// A checked `admin.credentials` entry: the token is known only by its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminCredential {
    pub name: String,
    pub token_sha256: [u8; 32],
    pub apps: AppScope,
    pub permissions: Vec<Permission>,
}

/// The listener's certificate and how often its files are checked for a renewal.
#[derive(Clone, Debug)]
pub struct ListenerTls {
    pub cert: std::sync::Arc<crate::tls::ReloadingCert>,
    pub reload_interval: Duration,
}

/// The checked configuration the sidecar runs on.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from, for messages.
    pub file: String,
    pub listen: SocketAddr,
    /// Upstream base: scheme and authority (`http://127.0.0.1:9000`).
    pub upstream: http::Uri,
    pub inspect_limit: usize,
    pub request_id_header: HeaderName,
    pub max_connections: usize,
    pub timeouts: Timeouts,
    pub admin_listen: SocketAddr,
    /// Who may use the admin query API (empty: nobody).
    pub admin_credentials: Vec<AdminCredential>,
    /// `admin.unauthenticated_window`: how failed admin authentications are aggregated.
    pub admin_unauthenticated_window: Duration,
    /// Key sets, trusted proxies, the fingerprint key.
    pub identity: crate::identity::Identity,
    /// TLS on the proxy listener.
    pub tls: Option<ListenerTls>,
    /// TLS towards an `https://` upstream.
    pub upstream_tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    pub store: StoreConfig,
    pub redactor: Redactor,
    pub routes: RouteMap,
    /// `retention:`, `sinks:` and `alerts:`.
    pub ops: crate::ops::OpsConfig,
    /// What `check` warns about (the config is valid): routes a request could reach as a
    /// variant the map does not take as that route.
    pub warnings: Vec<Diagnostic>,
}

/// Read and check a config file.
pub fn load_file(path: impl AsRef<Path>) -> Result<Config, Error> {
    let path = path.as_ref();
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        file: file.clone(),
        source,
    })?;
    load_str(&text, &file)
}

/// [`load_file`] for `verify`: as [`load_file_read_only`], and a `store.checkpoint.signing_key`
/// whose `${ENV}` is unset is passed over only when `store.checkpoint.public_key` names the key
/// to trust (the config's signer is then a stand-in: never sign with it).
pub fn load_file_for_verify(path: impl AsRef<Path>) -> Result<Config, Error> {
    validate::VERIFY_ONLY.with(|v| v.set(true));
    let result = load_file_read_only(path);
    validate::VERIFY_ONLY.with(|v| v.set(false));
    result
}

/// [`load_file`] for commands that only read the store (`query`, `export`, `verify`): a
/// `${ENV}` that is unset reads as a stand-in, so secrets they never use (fingerprint, checkpoint,
/// webhook and key-set keys) need not be set; the store's URL must resolve.
pub fn load_file_read_only(path: impl AsRef<Path>) -> Result<Config, Error> {
    types::read_only(|| load_file(path))
}

/// Check config text; `file` names it in messages.
pub fn load_str(text: &str, file: &str) -> Result<Config, Error> {
    let raw = from_yaml(text, file)?;
    validate::compile(raw, file).map_err(Error::Invalid)
}

/// Parse YAML into the raw model, turning a serde error into a positioned diagnostic.
fn from_yaml(text: &str, file: &str) -> Result<model::File, Error> {
    use serde::Deserialize;

    let mut failed_path = String::new();
    let res = serde_saphyr::with_deserializer_from_str(text, |de| {
        let mut track = serde_path_to_error::Track::new();
        let tracked = serde_path_to_error::Deserializer::new(de, &mut track);
        match model::File::deserialize(tracked) {
            Ok(v) => Ok(v),
            Err(e) => {
                failed_path = track.path().to_string();
                Err(e)
            }
        }
    });
    res.map_err(|e| {
        let (line, column) = e
            .location()
            .map_or((1, 1), |l| (l.line().max(1), l.column().max(1)));
        let path = clean_path(&failed_path);
        Error::Invalid(vec![Diagnostic {
            file: file.to_string(),
            line,
            column,
            path,
            message: bare_message(&e),
        }])
    })
}

/// serde-saphyr's message without its own position prefix/suffix and source snippet.
fn bare_message(e: &serde_saphyr::Error) -> String {
    let full = e.without_snippet().to_string();
    let mut msg = full.lines().next().unwrap_or("").trim();
    msg = msg.strip_prefix("error: ").unwrap_or(msg);
    // "line 3 column 15: msg" → "msg"
    if let Some((pos, rest)) = msg.split_once(": ") {
        if pos.starts_with("line ") && pos.contains(" column ") {
            msg = rest;
        }
    }
    if let Some(i) = msg.rfind(" at line ") {
        msg = &msg[..i];
    }
    msg.trim().to_string()
}

/// serde-path-to-error's path, without the `value` steps `Spanned` adds.
fn clean_path(path: &str) -> String {
    if path == "." {
        return String::new();
    }
    path.split('.')
        .filter(|seg| *seg != "value" && *seg != "?")
        .collect::<Vec<_>>()
        .join(".")
        .replace(".value[", "[")
}

#[cfg(test)]
mod tests;
