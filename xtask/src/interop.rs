//! `cargo xtask interop`: TLS against real `openssl` and `curl` peers.

use anyhow::{Result, bail};

/// Runs the interop checks.
pub(crate) fn run(_args: &[String]) -> Result<()> {
    bail!("interop is not implemented yet")
}
