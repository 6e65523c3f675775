//! `cargo xtask interop`: TLS against real `openssl` and `curl` peers.
//!
//! Runs `tests/tests/tls_interop.rs` (package `net-tests`) with its output shown: our client
//! against `openssl s_server`, our server against `openssl s_client` and `curl`, TLS 1.2 and
//! 1.3, with and without client certificates and ALPN. Each passing case prints one `PASS`
//! line, so the output is the interop matrix. `openssl` and `curl` must be on `PATH`
//! (`.ci/run` installs them on CI).

use std::process::{Command, Stdio};

use anyhow::{Result, bail};

use crate::{cargo, describe, project_root};

/// The peers the interop tests start, with the argument that makes each print its version.
const TOOLS: &[(&str, &str)] = &[("openssl", "version"), ("curl", "--version")];

/// Runs the interop checks.
pub(crate) fn run(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!("unexpected argument {arg:?} (usage: cargo xtask interop)");
    }
    let missing: Vec<&str> = TOOLS
        .iter()
        .filter(|(tool, version)| !runs(tool, version))
        .map(|(tool, _)| *tool)
        .collect();
    if !missing.is_empty() {
        bail!(
            "the TLS interop tests need {} on PATH; install {} (Debian: apt-get install {})",
            missing.join(" and "),
            if missing.len() == 1 { "it" } else { "them" },
            missing.join(" ")
        );
    }
    let root = project_root();
    let mut cmd = cargo(
        &root,
        &[
            "test",
            "--locked",
            "-p",
            "net-tests",
            "--test",
            "tls_interop",
            "--",
            "--nocapture",
            "--test-threads=1",
        ],
    );
    println!("==> TLS interop: {}", describe(&cmd));
    let status = cmd.status()?;
    if !status.success() {
        bail!(
            "TLS interop tests failed ({status}); command: {}",
            describe(&cmd)
        );
    }
    Ok(())
}

/// Whether `tool version_arg` runs and succeeds.
fn runs(tool: &str, version_arg: &str) -> bool {
    Command::new(tool)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
