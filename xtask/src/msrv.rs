//! `cargo xtask msrv`: builds what the manifests' `rust-version` promises with those versions
//! of Rust themselves, not the one that builds everything else: the three libraries with the
//! workspace's `rust-version` (on each of knet-tls's crypto providers), and the whole
//! workspace, every target, with the version that the examples, tests and bench declare (their
//! dependencies rcgen and proptest need it). `cargo check` against the committed `Cargo.lock`:
//! the libraries' tests cannot be built with the older version, since their
//! dev-dependencies declare the newer one.
//!
//! A newer compiler takes what an older one refuses (let chains, for one, stable since 1.88),
//! and clippy's `incompatible_msrv` sees only the standard library's items, so only the old
//! compiler itself can tell.
//!
//! Needs those toolchains through rustup (`rustup toolchain install 1.85 1.88 --profile
//! minimal`): where one is missing, the task says so and skips its checks. Builds go to
//! `target/msrv`. Not part of `cargo xtask ci`: it takes some 6 minutes on 2 cores besides the
//! toolchains' downloads, more than the CI run has to spare.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{describe, project_root};

/// The `rust-version` a manifest declares, from its text: `None` where it declares none or
/// takes the workspace's (`rust-version.workspace = true`).
fn declared(manifest: &str) -> Option<String> {
    manifest.lines().find_map(|line| {
        let value = line.trim().strip_prefix("rust-version")?.trim_start();
        let value = value.strip_prefix('=')?.trim();
        let value = value.strip_prefix('"')?.strip_suffix('"')?;
        Some(value.to_owned())
    })
}

/// The `rust-version` of the manifest at `path` (relative to the root).
fn declared_in(root: &Path, path: &str) -> Result<String> {
    let text = std::fs::read_to_string(root.join(path))
        .with_context(|| format!("could not read {path}"))?;
    declared(&text).with_context(|| format!("{path} declares no rust-version of its own"))
}

/// Whether rustup has the toolchain `version` installed (and rustup is there at all).
fn installed(version: &str) -> bool {
    Command::new("rustup")
        .args(["run", version, "rustc", "--version"])
        .output()
        .is_ok_and(|out| out.status.success())
}

/// `cargo check` with the toolchain `version` (through `rustup run`), into `target/msrv`.
fn check(root: &Path, version: &str, args: &[&str]) -> Result<()> {
    let mut cmd = Command::new("rustup");
    cmd.current_dir(root)
        .args(["run", version, "cargo", "check", "--locked"])
        .args(args)
        .env("CARGO_TARGET_DIR", root.join("target").join("msrv"))
        // What the outer `cargo run` set names its own toolchain's tools.
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .env_remove("CARGO")
        .env_remove("RUSTUP_TOOLCHAIN");
    println!("==> msrv: {}", describe(&cmd));
    let status = cmd.status().context("could not start rustup")?;
    if !status.success() {
        bail!("Rust {version}: {status}; command: {}", describe(&cmd));
    }
    Ok(())
}

/// Runs the checks; `msrv` takes no arguments.
pub(crate) fn run(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!("unexpected argument {arg:?} (usage: cargo xtask msrv)");
    }
    let root = project_root();
    let libraries = declared_in(&root, "Cargo.toml")?;
    let others = declared_in(&root, "examples/Cargo.toml")?;
    for path in ["tests/Cargo.toml", "bench/Cargo.toml"] {
        let version = declared_in(&root, path)?;
        if version != others {
            bail!("{path} declares rust-version {version}, examples/Cargo.toml {others}");
        }
    }
    let mut skipped = Vec::new();
    if installed(&libraries) {
        let libs = ["-p", "knet-io", "-p", "knet-sockets", "-p", "knet-tls"];
        check(&root, &libraries, &libs)?;
        let aws = [
            "-p",
            "knet-tls",
            "--no-default-features",
            "--features",
            "aws-lc-rs",
        ];
        check(&root, &libraries, &aws)?;
    } else {
        skipped.push(libraries);
    }
    if installed(&others) {
        check(&root, &others, &["--workspace", "--all-targets"])?;
    } else {
        skipped.push(others);
    }
    if skipped.is_empty() {
        println!("==> msrv: every manifest's rust-version builds with that version");
    } else {
        for version in &skipped {
            println!(
                "==> msrv: SKIPPED Rust {version}: not installed \
                 (rustup toolchain install {version} --profile minimal)"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_version_is_read_and_a_workspace_one_is_not() {
        assert_eq!(
            declared("[package]\nname = \"x\"\nrust-version = \"1.88\"\n").as_deref(),
            Some("1.88")
        );
        assert_eq!(declared("rust-version.workspace = true\n"), None);
        assert_eq!(declared("[package]\nname = \"x\"\n"), None);
    }

    #[test]
    fn the_manifests_declare_what_the_readme_says() {
        let root = project_root();
        assert_eq!(declared_in(&root, "Cargo.toml").unwrap(), "1.85");
        assert_eq!(declared_in(&root, "examples/Cargo.toml").unwrap(), "1.88");
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        assert!(readme.contains("`rust-version = \"1.85\"`"));
        assert!(readme.contains("`cargo xtask msrv`"));
    }

    #[test]
    fn an_argument_is_refused() {
        let err = run(&["--all".to_owned()]).unwrap_err().to_string();
        assert!(err.contains("usage: cargo xtask msrv"), "{err}");
    }
}
