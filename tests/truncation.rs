//! Issue 12, "the tail can be cut unseen", end to end through the binary: an idle sidecar still
//! signs a checkpoint every interval and a shutdown one when it stops; each is published to the
//! witness file, the sinks and the log; `verify` passes the untouched trail against its witness
//! and fails, naming the cut, once the newest events and the checkpoints after them are deleted,
//! or once the newest checkpoint is older than `--max-checkpoint-age`.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use authtrail::store::Checkpoint;
use serde_json::json;
use support::harness::{self, post_json};
use support::{upstream, webhook};

const BIN: &str = env!("CARGO_BIN_EXE_authtrail");
const SEED: &str = "4242424242424242424242424242424242424242424242424242424242424242";

fn write_config(dir: &Path, upstream: std::net::SocketAddr) -> std::path::PathBuf {
    let config = dir.join("authtrail.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\nupstream: http://{upstream}\n\
             store:\n  url: \"sqlite://{db}\"\n  flush_interval: 20ms\n  instance_id: side-a\n  \
             checkpoint: {{ signing_key: \"{SEED}\", interval: 1s, witness: \"{witness}\" }}\n\
             sinks:\n  out: {{ stdout: {{ format: json }}, events: [auth.*] }}\n\
             routes:\n  - id: login\n    match: {{ method: POST, path: /login }}\n    \
             event: auth.login\n    actor: {{ request_body: /username }}\n",
            db = dir.join("trail.db").display(),
            witness = dir.join("witness.jsonl").display(),
        ),
    )
    .unwrap();
    config
}

/// Start `serve`; returns the child, its proxy address, and a thread collecting its log.
fn serve(config: &Path) -> (Child, String, std::thread::JoinHandle<String>) {
    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "serve", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    let mut addr = None;
    for _ in 0..50 {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        log.push_str(&line);
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            if v["fields"]["message"] == "authtrail serving" {
                addr = v["fields"]["proxy"].as_str().map(str::to_string);
                break;
            }
        }
    }
    let Some(addr) = addr else {
        let _ = child.kill();
        panic!("serve never logged its address: {log}")
    };
    let rest = std::thread::spawn(move || {
        let _ = stderr.read_to_string(&mut log);
        log
    });
    (child, addr, rest)
}

/// The checkpoints of a JSON-lines text (witness file or sink output).
fn checkpoints(text: &str) -> Vec<Checkpoint> {
    text.lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            Checkpoint::from_record(&v).map(|r| r.unwrap())
        })
        .collect()
}

fn verify(config: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["verify", "--config"])
        .arg(config)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
}

#[tokio::test]
async fn an_idle_sidecar_checkpoints_and_a_cut_tail_is_named() {
    let up = upstream::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), up.addr);
    let witness = dir.path().join("witness.jsonl");
    let (mut child, addr, log) = serve(&config);

    for user in ["alice", "bob", "carol"] {
        post_json(
            &format!("http://{addr}/login"),
            json!({ "username": user }),
            &[],
        )
        .await;
    }
    // Idle from here on: heartbeats keep coming, one per interval (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&witness).unwrap_or_default();
        let heartbeats = checkpoints(&text)
            .iter()
            .filter(|c| c.kind.as_str() == "heartbeat")
            .count();
        if heartbeats >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no idle checkpoints after 20s: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Graceful stop: a shutdown checkpoint closes the run.
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.wait().unwrap().success());
    let log = log.join().unwrap();

    let witnessed = checkpoints(&std::fs::read_to_string(&witness).unwrap());
    let last = witnessed.last().expect("checkpoints in the witness file");
    assert_eq!(last.kind.as_str(), "shutdown", "{witnessed:#?}");
    assert_eq!(last.instance, "side-a");
    assert_eq!(last.to_n, 3);
    let numbers: Vec<i64> = witnessed.iter().filter_map(|c| c.checkpoint_n).collect();
    assert_eq!(numbers, (1..=witnessed.len() as i64).collect::<Vec<_>>());
    assert!(witnessed.iter().all(Checkpoint::signature_valid));
    // The sink streamed the same checkpoints (whatever its event types), beside its events.
    assert_eq!(checkpoints(&out), witnessed, "{out}");
    assert_eq!(out.matches("\"auth.login\"").count(), 3, "{out}");
    // And the log named each one with its head hash and signature.
    for cp in &witnessed {
        assert!(
            log.contains(&cp.signature) && log.contains(&cp.head_hash),
            "checkpoint #{:?} not logged: {log}",
            cp.checkpoint_n
        );
    }

    let w = witness.to_str().unwrap();
    let (code, report) = verify(&config, &["--witness", w]);
    assert_eq!(code, 0, "{report}");
    assert!(report.starts_with("ok: 1 chains, 3 events, "), "{report}");

    // Read-only: verify runs without the signing key when the config names its public key.
    let text = std::fs::read_to_string(&config).unwrap();
    let unset = "signing_key: \"${AUTHTRAIL_TEST_SURELY_UNSET_CHECKPOINT_KEY}\"";
    let no_key = dir.path().join("no-key.yaml");
    std::fs::write(
        &no_key,
        text.replace(
            &format!("signing_key: \"{SEED}\""),
            &format!("{unset}, public_key: \"{}\"", last.public_key),
        ),
    )
    .unwrap();
    let (code, report) = verify(&no_key, &["--witness", w]);
    assert_eq!(code, 0, "{report}");
    assert!(report.starts_with("ok: 1 chains, 3 events, "), "{report}");
    assert!(!report.contains("warning"), "{report}");
    // Without public_key it says what to set; serving still needs the key.
    std::fs::write(
        &no_key,
        text.replace(&format!("signing_key: \"{SEED}\""), unset),
    )
    .unwrap();
    let (code, report) = verify(&no_key, &[]);
    assert_ne!(code, 0, "{report}");
    assert!(
        report.contains("AUTHTRAIL_TEST_SURELY_UNSET_CHECKPOINT_KEY")
            && report.contains("verify needs only store.checkpoint.public_key"),
        "{report}"
    );
    let check = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&no_key)
        .output()
        .unwrap();
    assert!(!check.status.success());

    // A newest checkpoint older than the limit is stale.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (code, report) = verify(&config, &["--max-checkpoint-age", "1s"]);
    assert_eq!(code, 1, "{report}");
    assert!(
        report
            .contains("chain \"side-a\" is stale: its newest checkpoint, the shutdown checkpoint"),
        "{report}"
    );
    let (code, report) = verify(&config, &["--max-checkpoint-age", "off"]);
    assert_eq!(code, 0, "{report}");

    // Cut the newest event and every checkpoint after the one that pinned #2.
    let keep = witnessed
        .iter()
        .filter(|c| c.to_n <= 2)
        .filter_map(|c| c.checkpoint_n)
        .max();
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("trail.db").display()
    ))
    .await
    .unwrap();
    sqlx::raw_sql("DELETE FROM events WHERE chain_n > 2")
        .execute(&db)
        .await
        .unwrap();
    let cut = match keep {
        // Checkpoints numbered after the newest one that still holds.
        Some(k) => format!(
            "DELETE FROM checkpoints WHERE CAST(body ->> '$.checkpoint_n' AS INTEGER) > {k}"
        ),
        None => "DELETE FROM checkpoints WHERE to_n > 2".to_string(),
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(cut))
        .execute(&db)
        .await
        .unwrap();
    db.close().await;

    let (code, report) = verify(&config, &["--witness", w]);
    assert_eq!(code, 1, "{report}");
    assert!(report.starts_with("FAILED: "), "{report}");
    assert!(
        report.contains(&format!(
            "the witnessed shutdown checkpoint #{} of chain \"side-a\"",
            last.checkpoint_n.unwrap()
        )) && report.contains("is not in the store: it was deleted or replaced"),
        "{report}"
    );
    assert!(
        report.contains("chain \"side-a\" was cut")
            && report.contains("the stored chain ends at #2: event #3 is gone"),
        "{report}"
    );
    // Restarted on the cut store, the writer links its next checkpoint after the newest one in
    // the witness file: the store alone now shows the hole.
    let (mut child, _, log) = serve(&config);
    let deadline = Instant::now() + Duration::from_secs(20);
    while checkpoints(&std::fs::read_to_string(&witness).unwrap()).len() <= witnessed.len() {
        assert!(Instant::now() < deadline, "no checkpoint after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert!(child.wait().unwrap().success());
    let log = log.join().unwrap();
    assert!(
        log.contains("no longer the newest in the store"),
        "the writer did not notice: {log}"
    );
    let (code, report) = verify(&config, &[]);
    assert_eq!(code, 1, "{report}");
    assert!(
        report.contains(&format!(
            "the periodic checkpoint #{} of chain \"side-a\"",
            last.checkpoint_n.unwrap() + 1
        )) || report.contains(&format!(
            "the heartbeat checkpoint #{} of chain \"side-a\"",
            last.checkpoint_n.unwrap() + 1
        )),
        "{report}"
    );
    assert!(report.contains("missing (deleted)"), "{report}");
}

/// A webhook sink gets each signed checkpoint (whatever its event types) as a request of its
/// own, signed like its event batches; the shutdown checkpoint too.
#[tokio::test]
async fn a_webhook_sink_gets_each_signed_checkpoint() {
    const SECRET: &str = "sink-secret-0123456789";
    let up = upstream::spawn().await;
    let hook = webhook::spawn().await;
    let extra = format!(
        "  checkpoint: {{ signing_key: \"{SEED}\", interval: 1s }}\n\
         sinks:\n  hook: {{ webhook: \"{}\", secret: \"{SECRET}\", events: [account.*] }}\n",
        hook.url("/ingest")
    );
    let routes =
        "  - id: login\n    match: { method: POST, path: /login }\n    event: auth.login\n";
    let mut sc = harness::start(up.addr, &extra, routes).await;
    let records = |all: &[webhook::Received]| -> Vec<Checkpoint> {
        all.iter()
            .filter(|r| r.status == 200)
            .flat_map(|r| {
                let body = r.json();
                assert_eq!(body["sink"], "hook");
                body["checkpoints"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|v| Checkpoint::from_record(v).unwrap().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let got = hook
        .wait_until("a checkpoint delivered", |r| !records(r).is_empty())
        .await;
    let first = got
        .iter()
        .find(|r| r.json().get("checkpoints").is_some())
        .unwrap();
    assert!(first.signed_with(SECRET), "{first:?}");
    assert_eq!(first.json()["events"], json!([]));
    sc.stop().await;
    let all = records(&hook.all());
    assert!(all.iter().all(Checkpoint::signature_valid));
    assert_eq!(
        all.last().map(|c| c.kind.as_str()),
        Some("shutdown"),
        "{all:#?}"
    );
}
