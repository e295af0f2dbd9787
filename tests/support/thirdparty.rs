//! Real third-party auth servers for the identity tests (`tests/thirdparty_*.rs`): each is
//! installed by `.ci/run` from its registry at pinned versions under `tests/thirdparty/NAME/`
//! (git-ignored `py-deps/` or `node_modules/`), started here as a child process on a free port
//! on 127.0.0.1, and killed on drop. A test whose server is not installed is skipped with a
//! message, and fails when `CI=true` (CI must always run it).

#![allow(dead_code)]

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `tests/thirdparty/NAME`.
pub fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/thirdparty")
        .join(name)
}

/// `None` when everything in `needs` exists, else whether to skip: prints what is missing and
/// returns `Some(())` (skip), or panics under `CI=true`.
pub fn skip_unless_installed(name: &str, needs: &[PathBuf]) -> Option<()> {
    let missing: Vec<String> = needs
        .iter()
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        return None;
    }
    let msg = format!(
        "{name}: not installed ({}); .ci/run installs it",
        missing.join(", ")
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg}, and CI must run this test");
    }
    eprintln!("skipped: {msg}");
    Some(())
}

/// A free port on 127.0.0.1 (bound, then released for the child to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server running as a child process; killed on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    stderr: PathBuf,
    stdout: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Server {
    /// Start `cmd` (which must listen on `port` on 127.0.0.1) and wait until it accepts TCP
    /// connections, for at most `wait`. Its stdout and stderr go to files shown on failure.
    pub fn start(name: &str, mut cmd: Command, port: u16, wait: Duration) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let stdout = tmp.path().join("stdout.txt");
        let stderr = tmp.path().join("stderr.txt");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{name} did not start: {e}"));
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            stderr,
            stdout,
            _tmp: tmp,
        };
        let deadline = std::time::Instant::now() + wait;
        loop {
            if std::net::TcpStream::connect_timeout(&server.addr, Duration::from_millis(200))
                .is_ok()
            {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "{name} exited ({status}) before listening:\n{}",
                    server.output()
                );
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "{name} did not listen on {} within {wait:?}:\n{}",
                    server.addr,
                    server.output()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the server printed so far (stdout, then stderr).
    pub fn output(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// `http://127.0.0.1:PORT{path}`: the server itself, not through the sidecar.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Read lines of `child`'s stdout until one parses as a port (for servers that pick their own).
pub fn first_line(reader: impl std::io::Read + Send + 'static, wait: Duration) -> Option<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(reader).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(wait).ok()
}
