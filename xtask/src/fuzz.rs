//! `cargo xtask fuzz --seconds N`: the cargo-fuzz targets, each for N seconds.

use anyhow::{Result, bail};

/// Runs the fuzz targets.
pub(crate) fn run(_args: &[String]) -> Result<()> {
    bail!("fuzz is not implemented yet")
}
