//! `keygen`: a new checkpoint signing key and its public key.

use std::io::Write;

use anyhow::Result;

use super::stdout;
use crate::store;

pub fn run() -> Result<i32> {
    let (seed, signer) = store::Signer::generate().map_err(anyhow::Error::msg)?;
    let mut out = stdout();
    writeln!(out, "signing_key: {seed}")?;
    writeln!(out, "public_key:  {}", signer.public_key_hex())?;
    Ok(0)
}
