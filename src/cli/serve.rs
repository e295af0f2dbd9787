//! `serve`: bind the proxy and admin listeners and run the sidecar until SIGTERM or SIGINT.

use anyhow::{Context, Result};

use super::ConfigArg;
use crate::sidecar::{self, Listeners};

/// Run the proxy and the admin listener; exit 1 when any event was dropped or failed.
pub async fn run(c: &ConfigArg) -> Result<i32> {
    let cfg = super::load(c)?;
    let shutdown = shutdown_signal();
    let proxy = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let admin = tokio::net::TcpListener::bind(cfg.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (admin)", cfg.admin_listen))?;
    let summary = sidecar::run(cfg, Listeners { proxy, admin }, shutdown).await?;
    Ok(if summary.events.dropped + summary.events.failed > 0 {
        1
    } else {
        0
    })
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, not when
/// the future is first polled, so a signal that arrives during startup still drains.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    #[cfg(unix)]
    let int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    async move {
        #[cfg(unix)]
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM/SIGINT");
                std::future::pending::<()>().await;
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
