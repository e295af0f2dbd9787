//! The demo auth server (`examples/demo_auth/`) on its own, for scripts that run `authtrail
//! serve` as a separate process in front of it (`scripts/soak.sh`, `scripts/faults.sh`).
//!
//! ```sh
//! demo_auth_server [ADDR]      # default 127.0.0.1:0; prints `listening ADDR` once bound
//! ```
//! The JWT secret comes from `AUTHTRAIL_DEMO_JWT_SECRET` (default: config/demo.yaml's default).
//! Runs until SIGTERM or Ctrl-C.

#[path = "demo_auth/mod.rs"]
mod demo_auth;

use std::io::Write;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let secret = std::env::var("AUTHTRAIL_DEMO_JWT_SECRET")
        .unwrap_or_else(|_| "demo-jwt-secret-change-me-0000".to_string());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let bound = listener.local_addr()?;
    let _server = demo_auth::spawn(listener, secret.into_bytes());
    println!("listening {bound}");
    std::io::stdout().flush()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}
