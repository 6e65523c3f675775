//! `cargo xtask fuzz --seconds N [TARGET…]`: runs each cargo-fuzz target in `fuzz/` for N
//! seconds (default 60), one after the other, on stable Rust (`-s none`: no sanitizer).
//! `cargo xtask ci` runs every target for 10 seconds.
//!
//! cargo-fuzz is installed with `cargo install cargo-fuzz --version 0.13.2 --locked` first if
//! it is missing (about 22 s on the 2-core CI machine). The fuzz project is a workspace of its
//! own with a committed `fuzz/Cargo.lock`, checked with `cargo fetch --locked` before the build
//! (cargo-fuzz has no `--locked`), so a clean clone builds exactly what was tested; after
//! changing the dependencies of `net-io`, `net-sockets` or `net-tls`, refresh it with
//! `cargo update --manifest-path fuzz/Cargo.toml --workspace`. libfuzzer-sys compiles
//! libFuzzer, which needs a C++ compiler (`c++`).
//!
//! A target's committed seed inputs, in `fuzz/seeds/TARGET/` (for the targets that have
//! some), are read along with its corpus, `fuzz/corpus/TARGET/` (ignored by git: libFuzzer
//! adds to it what it finds).
//!
//! An input that runs for more than [`INPUT_TIMEOUT_S`] seconds is a failure (a hang: a read
//! that loops without returning), as is a crash. Either stops the run with a non-zero status;
//! libFuzzer leaves the input (`timeout-…` or `crash-…`) in
//! `fuzz/artifacts/TARGET/`, and `cargo fuzz run TARGET -s none fuzz/artifacts/TARGET/crash-…`
//! replays it.

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::{cargo, describe, project_root};

/// The targets in `fuzz/fuzz_targets/`.
const TARGETS: &[&str] = &[
    "line_reader",
    "typed_reads",
    "frames",
    "writes",
    "proxy_header",
    "peer_text",
    "addresses",
    "pem",
    "tls_names",
];

/// How long one input may run before libFuzzer reports it as a hang and fails (its own default,
/// 1,200 s, would hold CI for 20 minutes on a read that loops; an input normally takes well
/// under a millisecond).
const INPUT_TIMEOUT_S: u64 = 10;

/// libFuzzer's options for a run of `seconds`.
fn libfuzzer_args(seconds: u64) -> [String; 2] {
    [
        format!("-max_total_time={seconds}"),
        format!("-timeout={INPUT_TIMEOUT_S}"),
    ]
}

/// Runs the fuzz targets.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut seconds: u64 = 60;
    let mut targets: Vec<&str> = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = args.next().context("--seconds needs a number")?;
                seconds = value
                    .parse()
                    .with_context(|| format!("--seconds: {value:?} is not a number"))?;
            }
            "--list" => {
                for target in TARGETS {
                    println!("{target}");
                }
                return Ok(());
            }
            name => match TARGETS.iter().find(|t| **t == name) {
                Some(target) => targets.push(target),
                None => bail!(
                    "unknown argument {name:?} (usage: cargo xtask fuzz [--seconds N] [--list] \
                     [TARGET…]; targets: {})",
                    TARGETS.join(", ")
                ),
            },
        }
    }
    if seconds == 0 {
        bail!("--seconds must be at least 1");
    }
    if targets.is_empty() {
        targets = TARGETS.to_vec();
    }
    ensure_cargo_fuzz()?;

    let root = project_root();
    let fuzz_dir = root.join("fuzz");
    let mut fetch = cargo(&fuzz_dir, &["fetch", "--locked"]);
    println!("xtask: checking fuzz/Cargo.lock: {}", describe(&fetch));
    let status = fetch
        .status()
        .with_context(|| format!("cannot run {}", describe(&fetch)))?;
    if !status.success() {
        bail!(
            "fuzz/Cargo.lock is missing or out of date ({status}); refresh it with \
             `cargo update --manifest-path fuzz/Cargo.toml --workspace` and commit it"
        );
    }
    for target in &targets {
        let mut cmd = cargo(&fuzz_dir, &["fuzz", "run", target, "-s", "none"]);
        // The committed seeds, when the target has some, are read along with the corpus (the
        // first directory, where libFuzzer writes what it finds); named, the corpus is not made
        // for us.
        let seeds = fuzz_dir.join("seeds").join(target);
        if seeds.is_dir() {
            let corpus = fuzz_dir.join("corpus").join(target);
            std::fs::create_dir_all(&corpus)
                .with_context(|| format!("cannot create {}", corpus.display()))?;
            cmd.arg(corpus).arg(seeds);
        }
        cmd.arg("--").args(libfuzzer_args(seconds));
        // Instrumented builds stay in fuzz/target, apart from the workspace's own.
        cmd.env_remove("CARGO_TARGET_DIR");
        println!(
            "xtask: fuzzing {target} for {seconds} s: {}",
            describe(&cmd)
        );
        let status = cmd
            .status()
            .with_context(|| format!("cannot run {}", describe(&cmd)))?;
        if !status.success() {
            bail!(
                "fuzz target {target} failed ({status}); the crashing (or hanging) input is in \
                 fuzz/artifacts/{target}/ — replay it with \
                 `cd fuzz && cargo fuzz run {target} -s none artifacts/{target}/<file>`"
            );
        }
    }
    println!(
        "xtask: {} fuzz target(s) ran {seconds} s each without a crash",
        targets.len()
    );
    Ok(())
}

/// The cargo-fuzz release that `ensure_cargo_fuzz` installs.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Installs cargo-fuzz with `cargo install` when `cargo fuzz` is not available.
fn ensure_cargo_fuzz() -> Result<()> {
    let root = project_root();
    let probe = cargo(&root, &["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if probe.is_ok_and(|s| s.success()) {
        return Ok(());
    }
    println!(
        "xtask: cargo-fuzz is not installed; installing cargo-fuzz {CARGO_FUZZ_VERSION} with \
         `cargo install` (this compiles it: about half a minute)"
    );
    let mut install: Command = cargo(
        &root,
        &[
            "install",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
            "--locked",
        ],
    );
    let status = install
        .status()
        .with_context(|| format!("cannot run {}", describe(&install)))?;
    if !status.success() {
        bail!("installing cargo-fuzz failed ({status}); install it by hand and try again");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fuzz_lock_file_is_committed_not_ignored() {
        // `fuzz/Cargo.toml` once said the lock file was ignored by git; the run checks it with
        // `cargo fetch --locked`, so a clean clone must have it.
        let fuzz = crate::project_root().join("fuzz");
        assert!(fuzz.join("Cargo.lock").is_file(), "no fuzz/Cargo.lock");
        let ignored = std::fs::read_to_string(fuzz.join(".gitignore")).unwrap_or_default();
        assert!(
            !ignored
                .lines()
                .any(|l| l.trim().trim_start_matches('/') == "Cargo.lock"),
            "{ignored}"
        );
        let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).expect("fuzz/Cargo.toml");
        assert!(!manifest.contains("(both ignored by git)"), "{manifest}");
    }

    #[test]
    fn an_input_that_hangs_fails_the_run_within_seconds() {
        // Without `-timeout`, libFuzzer waits 1,200 s on an input that never returns: a
        // `copy_to` that looped on a limit of 2^32 held `cargo xtask fuzz --seconds 40` past
        // two minutes without a word.
        let args = super::libfuzzer_args(20);
        assert!(args.contains(&"-max_total_time=20".to_owned()), "{args:?}");
        assert!(args.contains(&"-timeout=10".to_owned()), "{args:?}");
    }
}
