//! `authtrail serve` as a child process: the binary as shipped (its allocator, its signal
//! handling), started on a config file and found by the proxy address it logs.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_authtrail");

/// Write `DIR/authtrail.yaml`: both listeners on free ports of 127.0.0.1, then `rest`.
pub fn config_file(dir: &std::path::Path, rest: &str) -> std::path::PathBuf {
    let path = dir.join("authtrail.yaml");
    let yaml = format!("listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\n{rest}");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Start `authtrail --log-format json serve --config CONFIG`; return it, the proxy address it
/// logged and its stderr, read up to that line (the caller reads on, or calls [`drain`]).
pub fn serve(config: &std::path::Path) -> (Child, String, BufReader<ChildStderr>) {
    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "serve", "--config"])
        .arg(config)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    for _ in 0..200 {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            if v["fields"]["message"] == "authtrail serving" {
                let addr = v["fields"]["proxy"].as_str().unwrap().to_string();
                return (child, addr, stderr);
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("authtrail serve never logged its address; last line: {line}");
}

/// Keep reading `stderr` on a thread of its own, so the child never blocks on a full pipe.
pub fn drain(mut stderr: BufReader<ChildStderr>) {
    std::thread::spawn(move || {
        let mut sink = String::new();
        while stderr.read_line(&mut sink).unwrap_or(0) > 0 {
            sink.clear();
        }
    });
}
