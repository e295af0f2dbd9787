//! `fingerprint`: a token's fingerprint under the config's `trust.fingerprint_key`.

use std::io::{Read, Write};

use anyhow::{bail, Result};

use super::{stdout, FingerprintArgs};

pub fn run(a: FingerprintArgs) -> Result<i32> {
    let cfg = super::load(&a.config)?;
    let Some(f) = cfg.identity.fingerprinter.as_ref() else {
        bail!("{}: trust.fingerprint_key is not set", cfg.file);
    };
    let token = match a.token.as_deref() {
        Some(t) if t != "-" => t.to_string(),
        _ => {
            let mut buf = String::new();
            std::io::stdin().take(64 * 1024).read_to_string(&mut buf)?;
            buf
        }
    };
    let token = token.trim();
    let token = token
        .strip_prefix("Bearer ")
        .or_else(|| token.strip_prefix("bearer "))
        .unwrap_or(token);
    if token.is_empty() {
        bail!("no token given");
    }
    writeln!(stdout(), "{}", f.fingerprint(token))?;
    Ok(0)
}
