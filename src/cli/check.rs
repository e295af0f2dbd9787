//! `check`: validate the config, print its warnings and the route table.

use std::io::Write;

use anyhow::Result;

use super::{stdout, table, ConfigArg};
use crate::classify;
use crate::config::Config;

pub fn run(c: &ConfigArg) -> Result<i32> {
    let cfg = super::load(c)?;
    let mut out = stdout();
    for w in &cfg.warnings {
        eprintln!("warning: {w}");
    }
    writeln!(out, "{}: ok, {} routes", cfg.file, cfg.routes.routes.len())?;
    out.write_all(route_table(&cfg).as_bytes())?;
    Ok(0)
}

/// The `check` route table.
pub fn route_table(cfg: &Config) -> String {
    let rows: Vec<Vec<String>> = cfg
        .routes
        .routes
        .iter()
        .map(|r| {
            let methods = if r.methods.is_empty() {
                "*".to_string()
            } else {
                r.methods
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            vec![
                r.id.clone(),
                methods,
                r.host.clone().unwrap_or_else(|| "*".into()),
                r.path.to_string(),
                r.event.clone(),
                match r.delivery {
                    classify::Delivery::Async => "async".into(),
                    classify::Delivery::Sync => "sync".into(),
                },
            ]
        })
        .collect();
    table(
        &["ID", "METHODS", "HOST", "PATH", "EVENT", "DELIVERY"],
        &rows,
    )
}
