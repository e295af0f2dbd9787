//! Admin credentials follow a config reload: a rotated token works and the old one stops, with no
//! restart. Its own test binary, because the reload is triggered by a real SIGHUP to this process.

mod support;

use std::time::Duration;

use authtrail::admin::auth::token_sha256_hex;
use hyper::StatusCode;
use support::admin::get;
use support::harness;
use support::upstream;

fn config(upstream: std::net::SocketAddr, db: &std::path::Path, token: &str) -> String {
    format!(
        "upstream: http://{upstream}\nstore:\n  url: sqlite://{}\nadmin:\n  credentials:\n    - {{ name: oncall, token_sha256: {}, apps: [\"*\"], permissions: [read] }}\n",
        db.display(),
        token_sha256_hex(token)
    )
}

#[cfg(unix)]
#[tokio::test]
async fn a_reload_rotates_admin_credentials() {
    let up = upstream::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trail.db");
    let file = dir.path().join("authtrail.yaml");
    std::fs::write(&file, config(up.addr, &db, "old-token-5f1e")).unwrap();
    let cfg = authtrail::config::load_file(&file).unwrap();
    let sc = harness::start_config(cfg, db.clone(), dir).await;
    assert_eq!(
        get(&sc, "/v1/whoami", Some("old-token-5f1e")).await.status,
        StatusCode::OK
    );

    std::fs::write(&file, config(up.addr, &db, "new-token-9a3c")).unwrap();
    let kill = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut rotated = false;
    for _ in 0..300 {
        if get(&sc, "/v1/whoami", Some("new-token-9a3c")).await.status == StatusCode::OK {
            assert_eq!(
                get(&sc, "/v1/events", Some("old-token-5f1e")).await.status,
                StatusCode::UNAUTHORIZED
            );
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        rotated,
        "the new admin token was not accepted within 3s of SIGHUP"
    );
    assert!(reloads(&sc, "ok").await >= 1.0);

    // A config that does not load is rejected, counted, and the running one stays.
    std::fs::write(&file, "upstream: [not, a, url]\n").unwrap();
    let kill = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    for _ in 0..300 {
        if reloads(&sc, "rejected").await >= 1.0 {
            assert_eq!(
                get(&sc, "/v1/whoami", Some("new-token-9a3c")).await.status,
                StatusCode::OK
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the rejected reload was not counted within 3s of SIGHUP");
}

/// `authtrail_reloads_total{result}` as the sidecar's /metrics says.
async fn reloads(sc: &harness::Sidecar, result: &str) -> f64 {
    let text = String::from_utf8_lossy(&get(sc, "/metrics", None).await.body).into_owned();
    let series = format!("authtrail_reloads_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
        .unwrap_or(0.0)
}
