//! A real rsyslogd for the syslog sink tests: started as a child process with a private config
//! (no system daemon): plain TCP (imtcp, octet-counted frames), TLS (imtcp with the gtls
//! netstream driver and the test certificate of tests/fixtures) and UDP (imudp) inputs on
//! 127.0.0.1 free ports, every message written by omfile to a file with one line per message:
//! the RFC 5424 fields rsyslog parsed, separated by tabs (rsyslog escapes control characters in
//! what it receives, so a tab is only ever a separator).
//!
//! Debian's `rsyslog` and `rsyslog-gnutls` (.ci/run installs both). Without rsyslogd the tests
//! skip with a message; under `CI` they fail instead.

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs it.
const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

/// One message as rsyslog parsed it.
#[derive(Clone, Debug)]
pub struct Line {
    pub pri: u16,
    /// `1` only when rsyslog's RFC 5424 parser took the message.
    pub version: String,
    pub timestamp: String,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    pub msgid: String,
    pub structured_data: String,
    pub msg: String,
    /// The input that received it: `tcp`, `tls` or `udp`.
    pub input: String,
}

pub struct Rsyslog {
    child: Child,
    pub dir: tempfile::TempDir,
    pub tcp: u16,
    pub tls: u16,
    pub udp: u16,
    out: PathBuf,
}

/// rsyslogd, or `None` (after saying why) when the test should be skipped.
///
/// # Panics
/// When `CI` is set and rsyslogd (or its gtls driver) is missing: CI must run these tests.
pub fn available() -> bool {
    let gtls = std::path::Path::new("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so").exists()
        || std::path::Path::new("/usr/lib/aarch64-linux-gnu/rsyslog/lmnsd_gtls.so").exists();
    if std::path::Path::new(RSYSLOGD).exists() && gtls {
        return true;
    }
    let msg =
        "rsyslogd with the gtls driver is not installed (apt-get install rsyslog rsyslog-gnutls)";
    if std::env::var_os("CI").is_some() {
        panic!("{msg}, and CI must run the syslog tests");
    }
    eprintln!("skipped: {msg}");
    false
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");

impl Rsyslog {
    /// Start rsyslogd with all three inputs on fresh ports; wait until both TCP ports accept.
    pub fn start() -> Rsyslog {
        let dir = tempfile::tempdir().unwrap();
        let (tcp, tls, udp) = (free_tcp_port(), free_tcp_port(), free_udp_port());
        Self::start_on(dir, tcp, tls, udp)
    }

    fn start_on(dir: tempfile::TempDir, tcp: u16, tls: u16, udp: u16) -> Rsyslog {
        let out = dir.path().join("messages.log");
        let conf = dir.path().join("rsyslog.conf");
        let d = dir.path().display();
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{d}" maxMessageSize="256k"
       defaultNetstreamDriverCAFile="{FIX}ca.pem"
       defaultNetstreamDriverCertFile="{FIX}server.pem"
       defaultNetstreamDriverKeyFile="{FIX}server.key.pem")
module(load="imtcp" maxSessions="100")
module(load="imudp")
input(type="imtcp" address="127.0.0.1" port="{tcp}" name="tcp")
input(type="imtcp" address="127.0.0.1" port="{tls}" name="tls"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imudp" address="127.0.0.1" port="{udp}" name="udp")
template(name="fields" type="list") {{
  property(name="pri") constant(value="\t")
  property(name="protocol-version") constant(value="\t")
  property(name="timereported" dateFormat="rfc3339") constant(value="\t")
  property(name="hostname") constant(value="\t")
  property(name="app-name") constant(value="\t")
  property(name="procid") constant(value="\t")
  property(name="msgid") constant(value="\t")
  property(name="structured-data") constant(value="\t")
  property(name="inputname") constant(value="\t")
  property(name="msg" droplastlf="on") constant(value="\n")
}}
action(type="omfile" file="{out}" template="fields" flushOnTXEnd="on" asyncWriting="off")
"#,
                out = out.display()
            ),
        )
        .unwrap();
        let child = Command::new(RSYSLOGD)
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rsyslogd");
        let r = Rsyslog {
            child,
            dir,
            tcp,
            tls,
            udp,
            out,
        };
        r.wait_listening();
        r
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        for port in [self.tcp, self.tls] {
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "rsyslogd did not listen on {port}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // imudp binds in the same startup; give it a moment past the TCP inputs.
        std::thread::sleep(Duration::from_millis(100));
    }

    /// Stop it (SIGTERM, then wait), keeping the directory and the messages written.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start again on the same ports and directory (messages so far are kept).
    pub fn restart(mut self) -> Rsyslog {
        self.stop();
        let dir = tempfile::tempdir().unwrap();
        let old = std::mem::replace(&mut self.dir, dir);
        let (tcp, tls, udp) = (self.tcp, self.tls, self.udp);
        // Drop runs stop() again, harmlessly.
        drop(self);
        Self::start_on(old, tcp, tls, udp)
    }

    /// Every message written so far.
    pub fn lines(&self) -> Vec<Line> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .filter(|l| !l.is_empty())
            // rsyslogd's own messages (a TLS session closed early, ...).
            .filter(|l| {
                ["tcp", "tls", "udp"]
                    .iter()
                    .any(|i| l.contains(&format!("\t{i}\t")))
            })
            .map(|l| {
                let f: Vec<&str> = l.splitn(10, '\t').collect();
                assert_eq!(f.len(), 10, "unexpected line: {l:?}");
                Line {
                    pri: f[0].parse().unwrap(),
                    version: f[1].into(),
                    timestamp: f[2].into(),
                    hostname: f[3].into(),
                    app_name: f[4].into(),
                    procid: f[5].into(),
                    msgid: f[6].into(),
                    structured_data: f[7].into(),
                    input: f[8].into(),
                    msg: f[9].into(),
                }
            })
            .collect()
    }

    /// Wait (up to 15s) until at least `n` messages are written.
    pub async fn wait_lines(&self, n: usize) -> Vec<Line> {
        for _ in 0..1_500 {
            let lines = self.lines();
            if lines.len() >= n {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "rsyslog wrote {} of {n} messages within 15s: {:#?}",
            self.lines().len(),
            self.lines()
        );
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}
