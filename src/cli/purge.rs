//! `purge`: apply the config's retention policy once, sealed with signed checkpoints.

use std::io::Write;

use anyhow::{bail, Result};
use time::OffsetDateTime;

use super::{stdout, table, PurgeArgs};
use crate::ops::retention;
use crate::store;

/// `purge`: run the retention policy once (or, with `dry_run`, only count what is due), print
/// what went by app and type, and record an `audit.purge` event for what was deleted.
pub async fn run(a: PurgeArgs) -> Result<i32> {
    let (cfg, dry_run) = (super::load(&a.config)?, a.dry_run);
    let Some(policy) = &cfg.ops.retention else {
        bail!("{}: no retention policy (`retention:`) to apply", cfg.file);
    };
    let store = store::open(&cfg.store.url).await?;
    let signer = cfg.store.pipeline.checkpoint.as_ref().map(|c| &c.signer);
    let now = OffsetDateTime::now_utc();
    let (summary, error) =
        match retention::purge(store.as_ref(), policy, signer, now, dry_run).await {
            Ok(s) => (s, None),
            Err((e, s)) => (s, Some(e)),
        };
    let ms = |t: i64| {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(t) * 1_000_000)
            .map(crate::event::rfc3339_millis::format)
            .unwrap_or_default()
    };
    let rows: Vec<Vec<String>> = summary
        .due
        .iter()
        .map(|((app, t), tally)| {
            vec![
                app.clone().unwrap_or_else(|| "-".into()),
                t.clone(),
                tally.count.to_string(),
                ms(tally.oldest_ms),
                ms(tally.newest_ms),
            ]
        })
        .collect();
    let mut out = stdout();
    out.write_all(table(&["APP", "TYPE", "EVENTS", "OLDEST", "NEWEST"], &rows).as_bytes())?;
    if dry_run {
        writeln!(
            out,
            "dry run: {} events would be purged",
            summary.due_total()
        )?;
    } else {
        writeln!(
            out,
            "purged {} events ({} chains, {} signed checkpoints, {} partitions dropped whole)",
            summary.deleted, summary.chains, summary.checkpoints, summary.partitions
        )?;
    }
    if summary.tampered > 0 {
        writeln!(
            out,
            "kept {} due events whose content does not match their hash: run verify",
            summary.tampered
        )?;
    }
    if !dry_run && (summary.deleted > 0 || error.is_some()) {
        let why = error.as_ref().map(ToString::to_string);
        let event = retention::purge_event(&summary, policy, why.as_deref());
        store.append("authtrail-cli", &[event], true).await?;
    }
    match error {
        Some(e) => bail!("purge stopped early: {e}"),
        None => Ok(0),
    }
}
