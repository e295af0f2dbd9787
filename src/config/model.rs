//! The YAML file as written: serde structs with `deny_unknown_fields`. Every field's `///` is its
//! user documentation (docs/configuration.md follows it). Values with cross-field meaning are
//! kept `Spanned` so validation can point at them.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::types::{ByteSize, DeferredText, Duration, OneOrMany, Text};
use crate::classify::Source;

/// The whole config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Address the proxy listens on. Default `0.0.0.0:8080`.
    pub listen: Option<Spanned<Text>>,
    /// Base URL of the auth server this sidecar fronts, e.g. `http://127.0.0.1:9000`. Required.
    pub upstream: Spanned<Text>,
    /// How much of a mapped request's or response's body is inspected. Bodies stream through
    /// whole either way. Default `64KiB`.
    pub inspect_limit: Option<ByteSize>,
    /// What a request gets when an upstream may read its target as a mapped route the map's
    /// own reading does not take (`%2F`, `;x`, `\\`, case, method override, ...): `reject`
    /// (default: 400 and a `request.rejected` event) or `normalize` (forward the canonical form).
    pub path_policy: Option<Spanned<Text>>,
    /// Header carrying the request id; kept when the client sends one, else generated.
    /// Default `x-request-id`.
    pub request_id_header: Option<Spanned<Text>>,
    /// Most client connections served at once; more wait in the accept backlog. Default `10000`.
    pub max_connections: Option<usize>,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub admin: Admin,
    #[serde(default)]
    pub store: Store,
    #[serde(default)]
    pub redact: Redact,
    #[serde(default)]
    pub trust: Trust,
    /// TLS on the proxy listener (HTTP/2 by ALPN).
    pub tls: Option<Spanned<TlsSpec>>,
    /// TLS towards an `https://` upstream.
    pub upstream_tls: Option<Spanned<UpstreamTlsSpec>>,
    /// Named key sets for verifying tokens.
    #[serde(default)]
    pub keys: indexmap_lite::OrderedMap<Spanned<KeySetSpec>>,
    /// Named requirement blocks that routes reference with `require: NAME`.
    #[serde(default)]
    pub requirements: indexmap_lite::OrderedMap<Spanned<RequireSpec>>,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub routes: Vec<Route>,
    /// How long events are kept, per event type and app; nothing is ever purged without it.
    pub retention: Option<Spanned<Retention>>,
    /// Where events stream besides the store (JSON lines on stdout, batched webhooks, HTTP
    /// products, OTLP, syslog), by name.
    #[serde(default)]
    pub sinks: indexmap_lite::OrderedMap<Spanned<Sink>>,
    /// Rules that raise an alert (`alert.fired`, the log, webhooks) on matching events.
    #[serde(default)]
    pub alerts: Vec<Alert>,
    /// Lookup tables sources map their values through (`map: NAME`): a table of
    /// `value: mapped` pairs, or `{ file: PATH }` of a YAML file holding one.
    #[serde(default)]
    pub lookups: indexmap_lite::OrderedMap<Spanned<Lookup>>,
    /// Stable reason codes for upstream reason texts, after each route's own `reasons`.
    #[serde(default)]
    pub reasons: Vec<Spanned<ReasonRule>>,
}

/// A lookup table: `{ svc-alpha: app-alpha, ... }` or `{ file: clients.yaml }`.
#[derive(Debug)]
pub enum Lookup {
    Inline(Vec<(String, String)>),
    File(String),
}

impl<'de> Deserialize<'de> for Lookup {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = indexmap_lite::OrderedMap::<Text>::deserialize(d)?;
        match map.0.as_slice() {
            [(k, v)] if k == "file" => Ok(Lookup::File(v.0.clone())),
            _ => Ok(Lookup::Inline(
                map.0.into_iter().map(|(k, v)| (k, v.0)).collect(),
            )),
        }
    }
}

/// `{ prefix: "Unable to log in", code: invalid_credentials }`: every condition given must hold.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonRule {
    /// The reason text equals this.
    pub exact: Option<Text>,
    /// The reason text starts with this.
    pub prefix: Option<Text>,
    /// The reason text matches this regular expression (unanchored; use `^…$`).
    pub regex: Option<Text>,
    /// The response status: a code (`401`) or class (`4xx`).
    pub status: Option<Text>,
    /// The stable reason stored instead (`invalid_credentials`); the text is kept in
    /// `details.reason_text`.
    pub code: Text,
}

/// `retention: { default: 400d, rules: [...], legal_hold: [app-x] }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// How long an event no rule matches is kept: a duration such as `400d`, or `forever`.
    /// Default `forever`.
    pub default: Option<Spanned<Text>>,
    /// Per event type and app; the first rule that matches an event decides its keep.
    #[serde(default)]
    pub rules: Vec<RetentionRule>,
    /// Apps whose events are never purged while they are listed here.
    #[serde(default)]
    pub legal_hold: Vec<Spanned<Text>>,
    /// How often the background purge runs (its first run is at most 30s after start).
    /// Default `1h`.
    pub interval: Option<Duration>,
    /// Most events deleted in one transaction. Default `1000`.
    pub batch: Option<usize>,
}

/// `{ event: "auth.*", app: app-a, keep: 90d }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Event type, exact (`auth.login`) or a prefix (`auth.*`); any type when absent.
    pub event: Option<Spanned<Text>>,
    /// App (tenant); any app when absent.
    pub app: Option<Spanned<Text>>,
    /// A duration such as `90d`, or `forever`. Required.
    pub keep: Spanned<Text>,
}

/// One stream sink: `{ stdout: { format: json } }`, `{ webhook: URL, secret: ..., ... }`,
/// `{ http: { url: URL, body: splunk_hec, ... } }`, `{ otlp: { url: URL } }` or
/// `{ syslog: { address: HOST:PORT, transport: tls, format: cef } }`; the keys beside the
/// target (`batch`, `timeout`, ...) tune its delivery.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sink {
    /// JSON lines on standard output, one event per line.
    pub stdout: Option<StdoutSink>,
    /// URL batches of events are POSTed to (https; plain http only for loopback hosts).
    pub webhook: Option<Spanned<Text>>,
    /// Batches POSTed in an HTTP product's own body format (Splunk HEC, Elasticsearch
    /// `_bulk`, Loki).
    pub http: Option<Spanned<HttpSink>>,
    /// Batches POSTed to an OpenTelemetry collector as OTLP/HTTP protobuf log records.
    pub otlp: Option<Spanned<OtlpSink>>,
    /// RFC 5424 syslog messages over TCP, TLS or UDP.
    pub syslog: Option<Spanned<SyslogSink>>,
    /// Webhook: key of the `X-Authtrail-Signature` HMAC-SHA256, at least 16 bytes (use
    /// `${ENV}`). Without it requests are not signed.
    pub secret: Option<SigningKey>,
    /// Webhook, http, otlp: the event's shape, `json` (default) or `ocsf`.
    pub format: Option<Spanned<Text>>,
    /// Webhook, http, otlp: most events per request. Default `100`.
    pub batch: Option<usize>,
    /// Webhook, http, otlp: longest an event waits for its batch to fill. Default `1s`.
    pub flush: Option<Duration>,
    /// Time each attempt may take (syslog: connecting, and writing a batch). Default `5s`.
    pub timeout: Option<Duration>,
    /// Retries after a failed attempt (connection error, timeout, 408, 429, 5xx; syslog: a
    /// connection or write error). Default `3`.
    pub retries: Option<u32>,
    /// Pause before the first retry (syslog: reconnect), doubling for each next one. Default
    /// `500ms`.
    pub backoff: Option<Duration>,
    /// Webhook, http, otlp, syslog over TLS: PEM CA certificates trusted instead of the system
    /// roots.
    pub ca_file: Option<Text>,
    /// Events waiting for this sink; beyond it they are dropped (and counted). Default `10000`.
    pub queue: Option<usize>,
    /// Event types streamed, exact or prefix (`auth.*`). Default: all; `[]` streams none (a
    /// webhook that only receives alert notifications).
    pub events: Option<Spanned<Vec<Text>>>,
}

/// `http: { url: URL, body: splunk_hec, headers: { Authorization: "Splunk ${HEC_TOKEN}" } }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSink {
    /// Endpoint (https; plain http only for loopback hosts), without credentials in it:
    /// `https://splunk:8088/services/collector/event`, `https://es:9200/_bulk`,
    /// `https://loki:3100/loki/api/v1/push`.
    pub url: Spanned<Text>,
    /// The body format: `splunk_hec`, `elasticsearch_bulk` or `loki`. Required.
    pub body: Spanned<Text>,
    /// Headers sent with every request, such as credentials (use `${ENV}`; values are never
    /// logged).
    #[serde(default)]
    pub headers: indexmap_lite::OrderedMap<Spanned<HeaderText>>,
    /// Compress request bodies with gzip. Default `false`.
    pub gzip: Option<bool>,
    /// `elasticsearch_bulk`: the index or data stream (default `authtrail`); `splunk_hec`: the
    /// HEC `index` (default: the token's).
    pub index: Option<Spanned<Text>>,
    /// `splunk_hec`: the `host` field. Default: this machine's name.
    pub host: Option<Spanned<Text>>,
}

/// `otlp: { url: "https://collector:4318/v1/logs" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpSink {
    /// The OTLP/HTTP logs endpoint, with its path (`/v1/logs`); https, plain http only for
    /// loopback hosts.
    pub url: Spanned<Text>,
    /// Headers sent with every request (use `${ENV}`; values are never logged).
    #[serde(default)]
    pub headers: indexmap_lite::OrderedMap<Spanned<HeaderText>>,
    /// Compress request bodies with gzip. Default `false`.
    pub gzip: Option<bool>,
}

/// `syslog: { address: siem.example.com:6514, transport: tls, format: cef }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSink {
    /// `HOST:PORT` of the syslog server (`[v6]:PORT`); without a port, 514 (tcp, udp) or
    /// 6514 (tls).
    pub address: Spanned<Text>,
    /// `tcp` (default; octet-counted frames, RFC 6587), `tls` (RFC 5425) or `udp` (RFC 5426).
    pub transport: Option<Spanned<Text>>,
    /// MSG: `json` (the event as stored; default) or `cef` (ArcSight CEF).
    pub format: Option<Spanned<Text>>,
    /// Facility name: `auth` (default), `authpriv`, `local0`…`local7`, `security`, ...
    pub facility: Option<Spanned<Text>>,
    /// APP-NAME. Default `authtrail`.
    pub app_name: Option<Spanned<Text>>,
    /// HOSTNAME. Default: this machine's name.
    pub hostname: Option<Spanned<Text>>,
    /// MSGID. Default: the event type (at most 32 characters).
    pub msgid: Option<Spanned<Text>>,
}

/// A header value: often a credential, so `Debug` never shows it.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct HeaderText(pub Text);

impl std::fmt::Debug for HeaderText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeaderText(..)")
    }
}

/// `stdout: { format: json }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSink {
    /// `json` (the event as stored; default) or `ocsf`.
    pub format: Option<Spanned<Text>>,
}

/// One alert rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// Unique id, recorded on every `alert.fired` event of the rule.
    pub id: Spanned<Text>,
    /// Which events count; every condition given must hold.
    pub when: Spanned<AlertWhen>,
    /// Fire when `count` matching events of one group fall within `window`; without it every
    /// matching event fires.
    pub threshold: Option<Spanned<Threshold>>,
    /// Webhook sinks that receive the alert (it is always logged).
    #[serde(default)]
    pub notify: Vec<Spanned<Text>>,
}

/// `when: { event: auth.login, outcome: failure }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertWhen {
    /// Event type(s), exact or prefix (`provider.*`).
    pub event: Option<Spanned<OneOrMany<Text>>>,
    /// success, failure, error or unknown (one or a list).
    pub outcome: Option<Spanned<OneOrMany<Text>>>,
    /// App(s).
    pub app: Option<Spanned<OneOrMany<Text>>>,
    /// Route id(s).
    pub route: Option<Spanned<OneOrMany<Text>>>,
}

/// `threshold: { count: 5, window: 5m, group_by: actor }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// Matching events needed within the window (at least 1).
    pub count: u32,
    pub window: Duration,
    /// actor, ip, target or app: count each value separately (events without one are not
    /// counted). Default: all matching events together.
    pub group_by: Option<Spanned<Text>>,
}

/// Proxy timeouts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Time a client has to send the request head. Default `10s`.
    pub header_read: Option<Duration>,
    /// Time a client has to send the inspected head of a mapped route's body. Default `30s`.
    pub body_read: Option<Duration>,
    /// Time to open a connection to the upstream. Default `5s`.
    pub upstream_connect: Option<Duration>,
    /// Time for the upstream to start its response; then 504. Default `30s`.
    pub upstream_response: Option<Duration>,
    /// A client connection with no traffic for this long is closed. Default `60s`.
    pub idle: Option<Duration>,
    /// On SIGTERM, how long in-flight requests may take to finish. Default `20s`.
    pub shutdown_grace: Option<Duration>,
}

/// The admin listener: health, readiness, the query API (`/v1/...`) and the viewer (`/ui`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Default `127.0.0.1:9090`.
    pub listen: Option<Spanned<Text>>,
    /// Who may use the query API. Default none: every `/v1` request is refused with 401.
    #[serde(default)]
    pub credentials: Vec<AdminCredential>,
    /// Requests refused for want of a valid credential are recorded as `audit.query` events:
    /// the first from a client address at once, the rest within this window as one aggregate
    /// event when it closes. Default `60s`.
    pub unauthenticated_window: Option<Duration>,
}

/// One admin API credential. Only the token's SHA-256 is configured, never the token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminCredential {
    /// Unique name, recorded on every `audit.query` / `audit.export` event it causes.
    pub name: Spanned<Text>,
    /// SHA-256 of the bearer token, 64 hex digits (`printf %s "$TOKEN" | sha256sum`).
    pub token_sha256: Spanned<Text>,
    /// Apps (tenants) whose events the credential sees, or `["*"]` for all.
    pub apps: Spanned<Vec<Text>>,
    /// `read` (list, get, tokens, stats, coverage) and/or `export`.
    pub permissions: Spanned<Vec<Text>>,
}

/// Where events are stored and how they get there.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    /// `sqlite://PATH` (created if missing) or `postgres://USER:PASSWORD@HOST:PORT/DB`.
    /// Default `sqlite://authtrail.db`.
    pub url: Option<Spanned<Text>>,
    /// This sidecar's hash chain: 1-64 characters of `A-Z a-z 0-9 . _ : -`, one per running
    /// sidecar. Default: a random id created once and kept in the spool directory.
    pub instance_id: Option<Spanned<Text>>,
    /// Longest a `sync` route waits for its attempt event to commit; then 503. Default `2s`.
    pub sync_timeout: Option<Duration>,
    /// Where events wait while the store is unavailable.
    #[serde(default)]
    pub spool: Spool,
    /// Signed checkpoints of the hash chain; none when absent.
    pub checkpoint: Option<Checkpoint>,
    /// Events that may wait for the writer; beyond it they are counted as dropped. Default `10000`.
    pub queue_capacity: Option<usize>,
    /// Longest a mapped request waits, before it is forwarded, for a place in a full queue (the
    /// writer behind): backpressure instead of a dropped event. `0s`: never wait (a full queue
    /// drops). Default `1s`.
    pub queue_wait: Option<Duration>,
    /// Most events written in one transaction. Default `256`.
    pub batch_size: Option<usize>,
    /// Longest an event waits for its batch to fill. Default `100ms`.
    pub flush_interval: Option<Duration>,
}

/// The local spool: the write-ahead log of async events, and where they wait while the store is
/// unavailable.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spool {
    /// Directory of the spool files. Default: beside a SQLite file (`PATH-spool`), else
    /// `authtrail-spool` in the working directory.
    pub dir: Option<Spanned<Text>>,
    /// Most bytes the spool may hold; further events are refused and counted. Default `256MiB`.
    pub max_bytes: Option<ByteSize>,
    /// Log every async event here (one `write`, no `fsync`) before its response is released,
    /// so a crashed or killed sidecar loses no acknowledged event. Default `true`.
    pub write_ahead: Option<bool>,
    /// How often the write-ahead log is `fsync`ed while it has new records: the most a machine
    /// crash (power, kernel) can lose. Default `100ms`.
    pub fsync_interval: Option<Spanned<Duration>>,
}

/// Ed25519 checkpoints: `{ signing_key: ${AUTHTRAIL_CHECKPOINT_KEY}, events: 1000, interval: 5m }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The 32-byte Ed25519 seed as 64 hex characters (`authtrail keygen` makes one). Required.
    pub signing_key: CheckpointKey,
    /// Sign after this many new events. Default `1000`.
    pub events: Option<u64>,
    /// Or this long after the previous checkpoint. Default `5m`.
    pub interval: Option<Duration>,
    /// More public keys (hex) whose checkpoints `verify` trusts, e.g. before a key rotation.
    #[serde(default)]
    pub trusted_keys: Vec<Spanned<Text>>,
    /// Append-only file (JSON lines, fsync'd) every signed checkpoint is also written to, for
    /// `verify --witness`. Default: none.
    pub witness: Option<Spanned<Text>>,
    /// The public key (hex) of `signing_key`: with it, `verify` runs without the signing key
    /// (its `${ENV}` may be unset there). Default: derived from `signing_key`.
    pub public_key: Option<Spanned<Text>>,
}

/// A secret config value: never shown by `Debug`.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct SigningKey(pub Spanned<Text>);

/// The checkpoint signing key: a secret never shown by `Debug`, whose unset `${ENV}` is reported
/// by validation (or passed over by `verify`, which does not sign).
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct CheckpointKey(pub Spanned<DeferredText>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// Extra secret field names, on top of the built-in list.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redact {
    /// Field names (whole words, case-insensitive) never captured. Default empty.
    #[serde(default)]
    pub fields: Vec<Text>,
}

/// `tls: { cert_file, key_file }`: PEM files, re-read when they change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    pub cert_file: Text,
    pub key_file: Text,
    /// How often the files are checked for a renewed certificate. Default `30s`.
    pub reload_interval: Option<Duration>,
}

/// `upstream_tls: { ca_file, client_cert_file, client_key_file }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsSpec {
    /// PEM CA certificates trusted for the upstream; default: the system roots.
    pub ca_file: Option<Text>,
    /// A client certificate and key for mTLS to the upstream.
    pub client_cert_file: Option<Text>,
    pub client_key_file: Option<Text>,
}

/// What the sidecar believes about its network and how it names tokens.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trust {
    /// CIDRs of proxies whose `Forwarded` / `X-Forwarded-For` headers are believed. Default none.
    #[serde(default)]
    pub proxies: Vec<Spanned<Text>>,
    /// Key for token fingerprints (HMAC-SHA-256), at least 16 bytes. Without it no token is
    /// recorded.
    pub fingerprint_key: Option<Spanned<Text>>,
    /// How many issued tokens, codes and session cookies are remembered in memory for identity
    /// by lineage (older ones are asked of the store). Default 50000; 0: the store only.
    pub lineage_cache: Option<Spanned<u64>>,
}

/// One key set: exactly one of `secret`, `public_key_pem`, `public_key_file`, `jwks_url`,
/// `jwks_file`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySetSpec {
    /// HMAC secret (HS256/384/512).
    pub secret: Option<Text>,
    /// A PEM public key (RSA, EC P-256/P-384 or Ed25519).
    pub public_key_pem: Option<Text>,
    pub public_key_file: Option<Text>,
    /// HTTPS URL of a JWKS document (plain http only for loopback hosts).
    pub jwks_url: Option<Text>,
    pub jwks_file: Option<Text>,
    /// PEM CA certificates trusted for `jwks_url` instead of the system roots.
    pub jwks_ca_file: Option<Text>,
    /// Scheduled JWKS refresh. Default `10m`.
    pub refresh: Option<Duration>,
    /// Shortest time between refreshes triggered by unknown `kid`s. Default `30s`.
    pub min_refresh: Option<Duration>,
    /// Allowed algorithms. Default: HS256 for a secret, the key's kind for a PEM key, every
    /// asymmetric algorithm for a JWKS.
    pub algorithms: Option<Spanned<Vec<Text>>>,
    /// Required `iss` (one or a list).
    pub issuer: Option<OneOrMany<Text>>,
    /// Required `aud` (one or a list); not checked when absent.
    pub audience: Option<OneOrMany<Text>>,
    /// Clock skew allowed on `exp` and `nbf`. Default `30s`.
    pub leeway: Option<Duration>,
    /// Required `aud` of ID tokens (one or a list: the client ids), which are addressed to
    /// the client rather than the API. ID tokens are the ones read from a request or response
    /// body field named `id_token`. Default: `audience` applies to them too.
    pub id_token_audience: Option<OneOrMany<Text>>,
    /// Claim naming the token's subject (claim name or JSON pointer). Default `sub`.
    pub subject_claim: Option<Spanned<Text>>,
    /// Claim naming the token's app (tenant), recorded with the token. Default: none.
    pub app_claim: Option<Spanned<Text>>,
}

/// Sources used by routes that do not name their own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Key set for claim sources and tokens that name none (needed when there are several).
    pub keys: Option<Spanned<Text>>,
    /// Mode of requirements that name none: observe (default) or enforce.
    pub require_mode: Option<Spanned<Text>>,
    /// deny (default) or allow_and_flag.
    pub on_keys_unavailable: Option<Spanned<Text>>,
    pub actor: Option<Spanned<OneOrMany<Source>>>,
    pub app: Option<Spanned<OneOrMany<Source>>>,
    /// Session cookies of every route that names none (`session: { cookies: [_session] }`).
    pub session: Option<Spanned<Session>>,
}

/// `session: { cookies: [_session, _interaction], ends: true }`: browser session cookies, recorded
/// by fingerprint. A successful event that sets one binds it to its actor and app; a request
/// presenting it later inherits them (source `session:NAME`). `ends`: a success of this route
/// ends the bindings of the cookies it was sent (default: true for `auth.logout` routes).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    #[serde(default)]
    pub cookies: Vec<Text>,
    pub ends: Option<bool>,
}

/// One entry of the route-to-event map.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Unique id, stored on every event of the route.
    pub id: Spanned<Text>,
    #[serde(rename = "match")]
    pub matcher: Match,
    /// Event type: dotted lowercase words, e.g. `auth.login`.
    pub event: Spanned<Text>,
    #[serde(default)]
    pub outcome: Outcome,
    /// Ordered sources for the actor's id: the first that yields a value wins.
    pub actor: Option<Spanned<OneOrMany<Source>>>,
    /// Ordered sources for the app (tenant).
    pub app: Option<Spanned<OneOrMany<Source>>>,
    pub target: Option<Target>,
    /// Extra non-secret fields stored in `details`, by name.
    #[serde(default)]
    pub capture: indexmap_lite::OrderedMap<Spanned<OneOrMany<Source>>>,
    /// `async` (default): queued, never slows the response.
    pub delivery: Option<Spanned<Text>>,
    /// Kind of a resolved actor: user (default), admin or service.
    pub actor_kind: Option<Spanned<Text>>,
    /// Tokens recorded by fingerprint.
    pub tokens: Option<Spanned<Tokens>>,
    /// Browser session cookies: see [`Session`]. Default: `defaults.session`.
    pub session: Option<Spanned<Session>>,
    /// A verified token this route requires: a requirement's name, or an inline block.
    pub require: Option<Spanned<RequireRef>>,
    /// Stable reason codes for this route's reason texts, before the file's `reasons`.
    #[serde(default)]
    pub reasons: Vec<Spanned<ReasonRule>>,
}

/// `require: NAME` or `require: { use: NAME, mode: enforce }` or an inline block.
#[derive(Debug)]
pub enum RequireRef {
    Name(String),
    Inline(Box<RequireSpec>),
}

impl<'de> Deserialize<'de> for RequireRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RequireRef;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a requirement name or a requirement block")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RequireRef, E> {
                Ok(RequireRef::Name(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RequireRef, A::Error> {
                RequireSpec::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|s| RequireRef::Inline(Box::new(s)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A requirement block.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequireSpec {
    /// Start from the named requirement (inline blocks only).
    #[serde(rename = "use")]
    pub use_: Option<Text>,
    /// observe (record `access.would_deny`, never block) or enforce (deny at the edge).
    pub mode: Option<Text>,
    /// Key set that must verify the token. Default: `defaults.keys`.
    pub keys: Option<Text>,
    /// Where the token is: `{ header: X-Token }`, `{ cookie: NAME }`, `{ query: NAME }`.
    /// Default: `Authorization: Bearer`.
    pub token: Option<TokenAt>,
    /// Claim → required value or list of allowed values (an array claim must contain one).
    #[serde(default)]
    pub claims: indexmap_lite::OrderedMap<OneOrMany<Text>>,
    /// Scopes that must all be granted (`scope` string or `scp` array).
    #[serde(default)]
    pub scopes: Vec<Text>,
    /// The token's app (claim `app_claim`) must equal `{ path: PARAM }` or `{ header: NAME }`.
    pub app_matches: Option<AppAt>,
    /// Default `app_id`.
    pub app_claim: Option<Text>,
    /// deny or allow_and_flag. Default: `defaults.on_keys_unavailable`.
    pub on_keys_unavailable: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenAt {
    pub header: Option<Text>,
    pub cookie: Option<Text>,
    pub query: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppAt {
    pub path: Option<Text>,
    pub header: Option<Text>,
}

/// `tokens: { issued: [/access_token, /refresh_token], presented: [/refresh_token] }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tokens {
    /// Response-body JSON pointers of tokens the upstream issues.
    #[serde(default)]
    pub issued: Vec<Text>,
    /// Request-body pointers (JSON, or `/field` of a form) of tokens the client presents.
    #[serde(default)]
    pub presented: Vec<Text>,
    /// Parameters of a redirect's `Location` (query or fragment) that carry what the upstream
    /// issues there: `[code]` for an authorization code.
    #[serde(default)]
    pub redirect: Vec<Text>,
    /// Record the `Authorization: Bearer` token. Default true.
    pub bearer: Option<bool>,
    /// Key set to verify them with. Default: `defaults.keys`.
    pub keys: Option<Text>,
}

/// Which requests a route takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// One method or a list; any method when absent.
    pub method: Option<Spanned<OneOrMany<Text>>>,
    /// Path template: `{name}` matches one segment, a final `*` the rest.
    pub path: Spanned<Text>,
    /// Host (without port); any host when absent.
    pub host: Option<Spanned<Text>>,
    /// Request-body conditions: `{ /grant_type: refresh_token }` (JSON pointer, or `/field` of a
    /// form body) → one value or a list of allowed values.
    #[serde(default)]
    pub body: indexmap_lite::OrderedMap<Spanned<OneOrMany<Text>>>,
    /// `insensitive` when the upstream routes this path ignoring case; `sensitive` when it
    /// routes it exactly (case variants are then not this route). Unset: case variants of the
    /// path are ambiguous.
    pub path_case: Option<Spanned<Text>>,
    /// `reject` or `normalize` for ambiguous requests resembling this route; default: the
    /// file's `path_policy`.
    pub path_policy: Option<Spanned<Text>>,
}

/// Outcome rules.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// Status codes or classes of a success. Default `[2xx, 3xx]`.
    pub success: Option<Spanned<Vec<Text>>>,
    /// Default `[4xx]`.
    pub failure: Option<Spanned<Vec<Text>>>,
    /// Default `[5xx]`.
    pub error: Option<Spanned<Vec<Text>>>,
    /// A success must also satisfy this response-body condition, else it is a failure.
    pub success_if: Option<BodyCondition>,
    /// JSON pointer into the response body giving the reason, e.g. `/error`.
    pub reason: Option<Spanned<Text>>,
    /// `failure` (or `error`, `unknown`): the outcome when a presented token failed verification.
    pub on_invalid_token: Option<Spanned<Text>>,
    /// The parameter of a redirect's `Location` URL (query or fragment) that carries an OAuth
    /// error (RFC 6749 §4.1.2.1, e.g. `?error=access_denied&state=...`): a 3xx response that
    /// carries it is a `failure` with that error as its reason (the parameter's name when it
    /// has no value, as in Spring Security's `/login?error`). Default `error`; `off` turns it
    /// off.
    pub redirect_error: Option<Spanned<Text>>,
}

/// `{ pointer: /ok, equals: true }`; without `equals` the value must exist and not be null.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BodyCondition {
    pub pointer: Spanned<Text>,
    pub equals: Option<serde_json::Value>,
}

/// `{ kind: user, from: { path: user_id } }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// user, token, provider, org, app, ...
    pub kind: Spanned<Text>,
    pub from: Spanned<OneOrMany<Source>>,
    /// Optional sources for a display name.
    pub display: Option<Spanned<OneOrMany<Source>>>,
}

/// A tiny insertion-ordered map for `capture` (YAML order is the stored order).
pub mod indexmap_lite {
    use std::fmt;

    use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

    #[derive(Debug)]
    pub struct OrderedMap<V>(pub Vec<(String, V)>);

    impl<V> Default for OrderedMap<V> {
        fn default() -> Self {
            OrderedMap(Vec::new())
        }
    }

    impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Vis<V>(std::marker::PhantomData<V>);
            impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
                type Value = OrderedMap<V>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a map")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                    let mut out = Vec::new();
                    while let Some((k, v)) = m.next_entry::<String, V>()? {
                        out.push((k, v));
                    }
                    Ok(OrderedMap(out))
                }
            }
            d.deserialize_map(Vis(std::marker::PhantomData))
        }
    }
}
