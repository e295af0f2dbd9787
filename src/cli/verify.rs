//! `verify`: check every hash chain and signed checkpoint of the trail; exit 1 on any problem.

use std::io::Write;

use anyhow::{Context, Result};
use time::OffsetDateTime;

use super::{parse_time, stdout, VerifyArgs};
use crate::config;
use crate::store;

pub async fn run(a: VerifyArgs) -> Result<i32> {
    let VerifyArgs {
        config,
        since,
        max_checkpoint_age,
        witness,
    } = a;
    // Read-only: the checkpoint signing key's variable may be unset here.
    let cfg = config::load_file_for_verify(&config.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let since = since
        .as_deref()
        .map(|s| parse_time(s, OffsetDateTime::now_utc()))
        .transpose()?;
    let max_checkpoint_age = match max_checkpoint_age.as_deref().map(str::trim) {
        Some("off") => None,
        Some(d) => Some(
            crate::units::parse_duration(d)
                .map_err(|why| anyhow::anyhow!("invalid --max-checkpoint-age \"{d}\": {why}"))?,
        ),
        None => cfg
            .store
            .pipeline
            .checkpoint
            .as_ref()
            .map(|c| c.interval.saturating_mul(2) + std::time::Duration::from_secs(60)),
    };
    let witness = witness
        .map(|path| {
            store::verify::Witness::read(&path)
                .with_context(|| format!("cannot read witness {}", path.display()))
        })
        .transpose()?;
    let store = store::open(&cfg.store.url).await?;
    let mut trusted_keys = Vec::new();
    if let Some(cp) = &cfg.store.pipeline.checkpoint {
        trusted_keys.push(cp.public_key.clone());
        trusted_keys.extend(cp.trusted_keys.iter().cloned());
    }
    let opts = store::verify::Options {
        trusted_keys,
        since,
        max_checkpoint_age,
        now: None,
        witness,
    };
    let report = store::verify::verify(store.as_ref(), &opts).await?;
    stdout().write_all(report.render().as_bytes())?;
    Ok(if report.ok() { 0 } else { 1 })
}
