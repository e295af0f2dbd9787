//! Syslog: RFC 5424 messages over TCP (octet-counting framing, RFC 6587), TLS (RFC 5425, same
//! framing) or UDP (one message per datagram, RFC 5426), their MSG the event as JSON or as an
//! ArcSight CEF line. [`Sender`] keeps one connection, checks it is still open before each
//! write, and reconnects with backoff; the sink task in `sinks.rs` feeds it.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::formats::{Format, Item, CHECKPOINT_TYPE};
use crate::event::{AuditEvent, Outcome};

/// How messages travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Tls,
    Udp,
}

impl Transport {
    /// The port an address without one gets: 514 (UDP, and TCP by custom), 6514 (TLS).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tcp | Transport::Udp => 514,
            Transport::Tls => 6514,
        }
    }
}

/// What MSG holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// The event as stored, one JSON object.
    Json,
    /// `CEF:0|authtrail|authtrail|VERSION|type|name|severity|extension`.
    Cef,
}

/// The facilities by name (RFC 5424 §6.2.1), with their codes.
pub const FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("ntp", 12),
    ("security", 13),
    ("console", 14),
    ("solaris-cron", 15),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// A checked `sinks.NAME.syslog`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogConfig {
    /// `host:port`.
    pub host: String,
    pub port: u16,
    pub transport: Transport,
    pub payload: Payload,
    /// Facility code, 0–23. Default 4 (`auth`).
    pub facility: u8,
    /// APP-NAME. Default `authtrail`.
    pub app_name: String,
    /// HOSTNAME; this machine's name when `None`.
    pub hostname: Option<String>,
    /// MSGID; the event type (at most 32 characters) when `None`.
    pub msgid: Option<String>,
    /// TLS: CA certificates trusted instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Connecting, and writing one batch.
    pub timeout: Duration,
    /// Attempts after the first, for one batch.
    pub retries: u32,
    /// Pause before the first reconnect; doubles each time (at most 30s).
    pub backoff: Duration,
}

/// Whether `s` is 1..=`max` characters of RFC 5424's PRINTUSASCII (`!` to `~`).
pub fn printusascii(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| (33..=126).contains(&b))
}

/// `s` made PRINTUSASCII of at most `max` bytes (others become `_`), or `-` when empty.
fn header_field(s: &str, max: usize) -> String {
    let out: String = s
        .chars()
        .map(|c| if ('!'..='~').contains(&c) { c } else { '_' })
        .take(max)
        .collect();
    if out.is_empty() {
        "-".into()
    } else {
        out
    }
}

/// Syslog severity of an event: err (3) when the upstream failed, warning (4) for a refused
/// action, notice (5) when the outcome is unknown, informational (6) for a success.
fn severity(item: &Item) -> u8 {
    match item {
        Item::Event(e) => match e.outcome {
            Outcome::Success => 6,
            Outcome::Failure => 4,
            Outcome::Unknown => 5,
            Outcome::Error => 3,
        },
        Item::Checkpoint(_) => 6,
    }
}

/// The fixed parts of every message of one sink.
#[derive(Debug)]
pub struct Header {
    facility: u8,
    hostname: String,
    app_name: String,
    procid: String,
    msgid: Option<String>,
    payload: Payload,
}

impl Header {
    pub fn new(cfg: &SyslogConfig) -> Header {
        let host = cfg
            .hostname
            .clone()
            .unwrap_or_else(super::formats::hostname);
        Header {
            facility: cfg.facility,
            hostname: header_field(&host, 255),
            app_name: header_field(&cfg.app_name, 48),
            procid: std::process::id().to_string(),
            msgid: cfg.msgid.clone(),
            payload: cfg.payload,
        }
    }

    /// One RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG`, its
    /// structured data the registered `origin` element, MSG without a BOM.
    pub fn message(&self, item: &Item) -> Vec<u8> {
        let pri = u16::from(self.facility) * 8 + u16::from(severity(item));
        let ms = item.unix_nanos().div_euclid(1_000_000);
        let ts = time::OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000)
            .map(crate::event::rfc3339_millis::format)
            .unwrap_or_else(|_| "-".into());
        let msgid = match &self.msgid {
            Some(m) => m.clone(),
            None => header_field(item.event_type(), 32),
        };
        let mut out = format!(
            "<{pri}>1 {ts} {} {} {} {msgid} [origin software=\"authtrail\" swVersion=\"{}\"] ",
            self.hostname,
            self.app_name,
            self.procid,
            env!("CARGO_PKG_VERSION")
        );
        match (self.payload, item) {
            (Payload::Cef, Item::Event(e)) => out.push_str(&cef(e)),
            (Payload::Cef, Item::Checkpoint(_)) => {
                let record = item.json(Format::Json).to_string();
                out.push_str(&cef_line(
                    CHECKPOINT_TYPE,
                    "checkpoint signed",
                    1,
                    &[("msg", record)],
                ));
            }
            (Payload::Json, _) => out.push_str(&item.json(Format::Json).to_string()),
        }
        out.into_bytes()
    }
}

/// A CEF header field: `\` and `|` escaped, line breaks made spaces.
fn cef_header(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A CEF extension value: `\`, `=` and line breaks escaped (`|` needs none there).
fn cef_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

fn cef_line(class: &str, name: &str, severity: u8, ext: &[(&str, String)]) -> String {
    let mut out = format!(
        "CEF:0|authtrail|authtrail|{}|{}|{}|{severity}|",
        cef_header(env!("CARGO_PKG_VERSION")),
        cef_header(class),
        cef_header(name),
    );
    for (i, (k, v)) in ext.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{k}={}", cef_value(v));
    }
    out
}

/// CEF severity (0–10): 3 for a success, 4 unknown, 6 for a refused action, 7 when the
/// upstream failed.
fn cef_severity(o: Outcome) -> u8 {
    match o {
        Outcome::Success => 3,
        Outcome::Unknown => 4,
        Outcome::Failure => 6,
        Outcome::Error => 7,
    }
}

/// The event as one CEF line. Standard keys where CEF has one: `rt` (event time, ms),
/// `externalId` (event id), `outcome`, `reason`, `suser` (actor), `duser` (a user target), `src`
/// (IPv4) or `c6a2` (IPv6 source), `requestMethod`, `request` (path),
/// `requestClientApplication` (user agent); custom strings for the rest: `cs1` app, `cs2`
/// request id, `cs3` target (`kind:id`), `cs4` route; `cn1` the HTTP status.
pub fn cef(e: &AuditEvent) -> String {
    let mut ext: Vec<(&str, String)> = vec![
        ("rt", crate::event::unix_millis(e.time).to_string()),
        ("externalId", e.id.to_string()),
        ("outcome", e.outcome.as_str().to_string()),
    ];
    if let Some(r) = &e.reason {
        ext.push(("reason", r.clone()));
    }
    if let Some(a) = &e.actor.id {
        ext.push(("suser", a.clone()));
    }
    if let Some(t) = e.target.as_ref().filter(|t| t.kind == "user") {
        ext.push(("duser", t.id.clone()));
    }
    match e.source.ip {
        Some(std::net::IpAddr::V4(ip)) => ext.push(("src", ip.to_string())),
        Some(std::net::IpAddr::V6(ip)) => {
            ext.push(("c6a2", ip.to_string()));
            ext.push(("c6a2Label", "Source IPv6 Address".into()));
        }
        None => {}
    }
    ext.push(("requestMethod", e.http.method.clone()));
    ext.push(("request", e.http.path.clone()));
    if let Some(ua) = &e.source.user_agent {
        ext.push(("requestClientApplication", ua.clone()));
    }
    if let Some(app) = &e.app {
        ext.push(("cs1", app.value.clone()));
        ext.push(("cs1Label", "app".into()));
    }
    ext.push(("cs2", e.http.request_id.clone()));
    ext.push(("cs2Label", "requestId".into()));
    if let Some(t) = &e.target {
        ext.push(("cs3", format!("{}:{}", t.kind, t.id)));
        ext.push(("cs3Label", "target".into()));
    }
    ext.push(("cs4", e.http.route.clone()));
    ext.push(("cs4Label", "route".into()));
    if let Some(status) = e.http.status {
        ext.push(("cn1", status.to_string()));
        ext.push(("cn1Label", "httpStatus".into()));
    }
    let name = format!("{} {}", e.event_type, e.outcome.as_str());
    cef_line(&e.event_type, &name, cef_severity(e.outcome), &ext)
}

enum Conn {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Udp(UdpSocket),
}

/// One sink's connection to its syslog server.
pub struct Sender {
    cfg: SyslogConfig,
    tls: Option<tokio_rustls::TlsConnector>,
    conn: Option<Conn>,
    /// The pause before the next reconnect; reset by a delivered batch.
    delay: Duration,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("host", &self.cfg.host)
            .field("port", &self.cfg.port)
            .finish_non_exhaustive()
    }
}

impl Sender {
    /// A sender for `cfg`; TLS roots from its `ca_file` (else the system's, see
    /// [`crate::tls::trust_roots`]). Connects on the first batch.
    pub fn new(cfg: SyslogConfig) -> Result<Sender, String> {
        let tls = match cfg.transport {
            Transport::Tls => {
                let roots = crate::tls::trust_roots(cfg.ca_file.as_deref(), "syslog")?;
                let config = rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
            }
            Transport::Tcp | Transport::Udp => None,
        };
        let delay = cfg.backoff;
        Ok(Sender {
            cfg,
            tls,
            conn: None,
            delay,
        })
    }

    fn target(&self) -> String {
        if self.cfg.host.contains(':') {
            format!("[{}]:{}", self.cfg.host, self.cfg.port)
        } else {
            format!("{}:{}", self.cfg.host, self.cfg.port)
        }
    }

    async fn connect(&self) -> Result<Conn, String> {
        let target = self.target();
        let connect = async {
            match self.cfg.transport {
                Transport::Udp => {
                    let addr = tokio::net::lookup_host(&target)
                        .await
                        .map_err(|e| format!("resolve: {e}"))?
                        .next()
                        .ok_or("resolve: no address")?;
                    let local = if addr.is_ipv4() {
                        "0.0.0.0:0"
                    } else {
                        "[::]:0"
                    };
                    let sock = UdpSocket::bind(local)
                        .await
                        .map_err(|e| format!("bind: {e}"))?;
                    sock.connect(addr)
                        .await
                        .map_err(|e| format!("connect: {e}"))?;
                    Ok(Conn::Udp(sock))
                }
                Transport::Tcp => {
                    let s = TcpStream::connect(&target)
                        .await
                        .map_err(|e| format!("connect: {e}"))?;
                    let _ = s.set_nodelay(true);
                    Ok(Conn::Tcp(s))
                }
                Transport::Tls => {
                    let s = TcpStream::connect(&target)
                        .await
                        .map_err(|e| format!("connect: {e}"))?;
                    let _ = s.set_nodelay(true);
                    let name = rustls_pki_types::ServerName::try_from(self.cfg.host.clone())
                        .map_err(|e| format!("server name {}: {e}", self.cfg.host))?;
                    let tls = self.tls.as_ref().ok_or("no TLS client")?;
                    let s = tls
                        .connect(name, s)
                        .await
                        .map_err(|e| format!("tls: {e}"))?;
                    Ok(Conn::Tls(Box::new(s)))
                }
            }
        };
        tokio::time::timeout(self.cfg.timeout, connect)
            .await
            .map_err(|_| format!("connect timed out after {:?}", self.cfg.timeout))?
    }

    /// Whether the open stream has been closed by the server (which never sends anything).
    async fn closed(conn: &mut Conn) -> bool {
        let mut buf = [0u8; 64];
        let read = match conn {
            Conn::Udp(_) => return false,
            Conn::Tcp(s) => tokio::time::timeout(Duration::ZERO, s.read(&mut buf)).await,
            Conn::Tls(s) => tokio::time::timeout(Duration::ZERO, s.read(&mut buf)).await,
        };
        // Pending: open and quiet. Data: ignored. End of stream or an error: closed.
        matches!(read, Ok(Ok(0) | Err(_)))
    }

    async fn write(&self, conn: &mut Conn, messages: &[Vec<u8>]) -> Result<(), String> {
        let write = async {
            match conn {
                Conn::Udp(sock) => {
                    for m in messages {
                        sock.send(m).await.map_err(|e| format!("send: {e}"))?;
                    }
                    Ok(())
                }
                Conn::Tcp(s) => write_frames(s, messages).await,
                Conn::Tls(s) => write_frames(s.as_mut(), messages).await,
            }
        };
        tokio::time::timeout(self.cfg.timeout, write)
            .await
            .map_err(|_| format!("write timed out after {:?}", self.cfg.timeout))?
    }

    /// Send `messages`, (re)connecting as needed, with up to `retries` more attempts after a
    /// failed one (pausing `backoff`, doubling). Returns the attempts it took, or why it gave
    /// up and after how many.
    pub async fn send(&mut self, messages: &[Vec<u8>]) -> Result<u32, (String, u32)> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = async {
                let open = match self.conn.take() {
                    Some(mut c) => (!Self::closed(&mut c).await).then_some(c),
                    None => None,
                };
                let mut conn = match open {
                    Some(c) => c,
                    None => self.connect().await?,
                };
                self.write(&mut conn, messages).await?;
                self.conn = Some(conn);
                Ok::<(), String>(())
            }
            .await;
            match result {
                Ok(()) => {
                    self.delay = self.cfg.backoff;
                    return Ok(attempts);
                }
                Err(why) => {
                    tracing::debug!(server = %self.target(), attempt = attempts, error = %why, "syslog attempt failed");
                    if attempts > self.cfg.retries {
                        return Err((format!("syslog {}: {why}", self.target()), attempts));
                    }
                    tokio::time::sleep(self.delay).await;
                    self.delay = (self.delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Close the stream cleanly (TLS close_notify).
    pub async fn close(&mut self) {
        match self.conn.take() {
            Some(Conn::Tcp(mut s)) => {
                let _ = s.shutdown().await;
            }
            Some(Conn::Tls(mut s)) => {
                let _ = tokio::time::timeout(self.cfg.timeout, s.shutdown()).await;
            }
            Some(Conn::Udp(_)) | None => {}
        }
    }
}

/// RFC 6587 octet counting: `LEN SP MSG` for each message, one flush.
async fn write_frames<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    messages: &[Vec<u8>],
) -> Result<(), String> {
    let mut buf = Vec::with_capacity(messages.iter().map(|m| m.len() + 8).sum());
    for m in messages {
        buf.extend_from_slice(m.len().to_string().as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(m);
    }
    w.write_all(&buf).await.map_err(|e| format!("write: {e}"))?;
    w.flush().await.map_err(|e| format!("write: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> AuditEvent {
        serde_json::from_value(serde_json::json!({
            "id": "0190a5d2-0000-7000-8000-000000000001",
            "time": "2026-01-02T03:04:05.678Z",
            "type": "auth.login",
            "stage": "completed",
            "outcome": "failure",
            "reason": "invalid_credentials",
            "app": { "value": "app|a=b", "source": "header:x-app", "verified": false },
            "actor": { "id": "ali\\ce=1\nx", "kind": "user", "verified": false },
            "source": { "ip": "192.0.2.7", "user_agent": "curl/8 | x" },
            "http": { "method": "POST", "path": "/login", "route": "login", "status": 401,
                      "duration_ms": 3, "request_id": "req-1" }
        }))
        .unwrap()
    }

    #[test]
    fn cef_escapes_and_maps_the_standard_keys() {
        let line = cef(&event());
        assert_eq!(
            line,
            "CEF:0|authtrail|authtrail|".to_string()
                + env!("CARGO_PKG_VERSION")
                + "|auth.login|auth.login failure|6|rt=1767323045678 \
                   externalId=0190a5d2-0000-7000-8000-000000000001 outcome=failure \
                   reason=invalid_credentials suser=ali\\\\ce\\=1\\nx src=192.0.2.7 \
                   requestMethod=POST request=/login requestClientApplication=curl/8 | x \
                   cs1=app|a\\=b cs1Label=app cs2=req-1 cs2Label=requestId cs4=login \
                   cs4Label=route cn1=401 cn1Label=httpStatus"
        );
        assert_eq!(cef_header("a|b\\c\nd"), "a\\|b\\\\c d");
    }

    #[test]
    fn rfc5424_header_fields() {
        let cfg = SyslogConfig {
            host: "127.0.0.1".into(),
            port: 514,
            transport: Transport::Udp,
            payload: Payload::Json,
            facility: 10,
            app_name: "authtrail".into(),
            hostname: Some("pod 1".into()),
            msgid: None,
            ca_file: None,
            timeout: Duration::from_secs(1),
            retries: 0,
            backoff: Duration::from_millis(10),
        };
        let h = Header::new(&cfg);
        let msg = String::from_utf8(h.message(&Item::Event(Arc::new(event())))).unwrap();
        let want = format!(
            "<84>1 2026-01-02T03:04:05.678Z pod_1 authtrail {} auth.login [origin software=\"authtrail\" swVersion=\"{}\"] {{",
            std::process::id(),
            env!("CARGO_PKG_VERSION")
        );
        assert!(msg.starts_with(&want), "{msg}");
        let json = &msg[want.len() - 1..];
        let back: AuditEvent = serde_json::from_str(json).unwrap();
        assert_eq!(back, event());
    }
}
