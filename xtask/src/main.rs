//! Project automation, run as `cargo xtask <task>` (an alias in `.cargo/config.toml`).
//!
//! - `cargo xtask ci` — everything CI checks, in order, stopping at the first failure.
//! - `cargo xtask bench [SCENARIO…]` — release-build the benchmark programs and run them
//!   (see `BENCHMARKS.md`). `cargo xtask bench --list` names the scenarios.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

/// The benchmark scenarios: name, binary in the `bench` package, and its arguments.
const SCENARIOS: &[(&str, &str, &[&str])] = &[("lines", "lines", &[])];

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("bench") => bench(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask ci | cargo xtask bench [--list] [SCENARIO…]");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn ci() -> Result<()> {
    let root = project_root();
    let steps: Vec<(&str, Command)> = vec![
        ("format", cargo(&root, &["fmt", "--all", "--", "--check"])),
        (
            "clippy",
            cargo(
                &root,
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--locked",
                    "--",
                    "-D",
                    "warnings",
                ],
            ),
        ),
        (
            "tests (unit, integration, doc)",
            cargo(&root, &["test", "--workspace", "--locked"]),
        ),
        ("docs", {
            let mut c = cargo(&root, &["doc", "--workspace", "--no-deps", "--locked"]);
            c.env("RUSTDOCFLAGS", "-D warnings");
            c
        }),
        (
            "benchmark smoke run",
            cargo(
                &root,
                &[
                    "run", "--locked", "-p", "bench", "--bin", "lines", "--", "--smoke",
                ],
            ),
        ),
    ];
    let total = steps.len();
    for (i, (name, mut cmd)) in steps.into_iter().enumerate() {
        println!("==> [{}/{total}] {name}: {}", i + 1, describe(&cmd));
        let status = cmd
            .status()
            .with_context(|| format!("could not start step `{name}`"))?;
        if !status.success() {
            bail!(
                "step `{name}` failed ({status}); command: {}",
                describe(&cmd)
            );
        }
    }
    println!("==> ci: all {total} steps passed");
    Ok(())
}

fn bench(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "--list") {
        for (name, _, _) in SCENARIOS {
            println!("{name}");
        }
        return Ok(());
    }
    let chosen: Vec<_> = if args.is_empty() {
        SCENARIOS.iter().collect()
    } else {
        let mut chosen = Vec::new();
        for a in args {
            match SCENARIOS.iter().find(|(name, _, _)| name == a) {
                Some(s) => chosen.push(s),
                None => bail!("unknown scenario `{a}` (try `cargo xtask bench --list`)"),
            }
        }
        chosen
    };
    let root = project_root();
    let mut build = cargo(
        &root,
        &["build", "--release", "--locked", "-p", "bench", "--bins"],
    );
    println!("==> {}", describe(&build));
    if !build
        .status()
        .context("could not start cargo build")?
        .success()
    {
        bail!("building the benchmark programs failed");
    }
    for (name, bin, bin_args) in chosen {
        let path = root.join("target/release").join(bin);
        println!(
            "==> scenario {name}: {} {}",
            path.display(),
            bin_args.join(" ")
        );
        let status = Command::new(&path)
            .args(*bin_args)
            .status()
            .with_context(|| format!("could not run {}", path.display()))?;
        if !status.success() {
            bail!("scenario `{name}` failed ({status})");
        }
    }
    Ok(())
}

fn cargo(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.args(args).current_dir(root);
    c
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the root")
        .to_path_buf()
}
