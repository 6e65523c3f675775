//! `cargo xtask bench [--smoke] [--list] [SCENARIO…] [-- NETBENCH-OPTIONS]`: build the benchmark
//! programs and run them.
//!
//! - No scenario: all of them. `--list` names them.
//! - `--smoke`: a debug build, a tiny `lines` run, and one short round of every network
//!   scenario on every side but Go (the idle one with 600 connections), to prove the harness
//!   works (CI runs this; the numbers mean nothing and nothing is asserted about them).
//! - Anything after `--` goes to `netbench` (`--rounds N`, `--secs S`,
//!   `--only ours|raw|tuned|go`, `--no-go`, `--go-flush idle|each`).
//!
//! The Go baseline of the ping-pong and pipeline scenarios is built from `bench/go/` when a
//! `go` tool is on `PATH` (or named by `NETBENCH_GO`); without one those scenarios run without
//! it and say so. Nothing here requires Go.
//!
//! Line parsing runs in the `lines` program; every network scenario in one `netbench` run,
//! which prints one table at the end.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, describe, project_root};

/// The benchmark scenarios and the program that runs each.
const SCENARIOS: &[(&str, &str)] = &[
    ("lines", "lines"),
    ("pingpong-1", "netbench"),
    ("pingpong-50", "netbench"),
    ("pingpong-500", "netbench"),
    ("pipeline-1", "netbench"),
    ("pipeline-50", "netbench"),
    ("pipeline-500", "netbench"),
    ("echo-1", "netbench"),
    ("echo-16", "netbench"),
    ("tls-echo", "netbench"),
    ("tls-handshake", "netbench"),
    ("udp-64", "netbench"),
    ("udp-1400", "netbench"),
    ("churn-50", "netbench"),
    ("idle", "netbench"),
];

/// Runs the chosen scenarios (all when none is named).
pub(crate) fn run(args: &[String]) -> Result<()> {
    let (args, passed) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    if args.iter().any(|a| a == "--list") {
        for (name, _) in SCENARIOS {
            println!("{name}");
        }
        return Ok(());
    }
    let smoke = args.iter().any(|a| a == "--smoke");
    let mut chosen = Vec::new();
    for a in args.iter().filter(|a| *a != "--smoke") {
        match SCENARIOS.iter().find(|(name, _)| name == a) {
            Some(s) => chosen.push(*s),
            None => bail!("unknown scenario `{a}` (try `cargo xtask bench --list`)"),
        }
    }
    if chosen.is_empty() && !smoke {
        chosen = SCENARIOS.to_vec();
    }

    let root = project_root();
    let mut build_args = vec!["build", "--locked", "-p", "bench", "--bins"];
    if !smoke {
        build_args.insert(1, "--release");
    }
    let mut build = cargo(&root, &build_args);
    println!("==> {}", describe(&build));
    if !build
        .status()
        .context("could not start cargo build")?
        .success()
    {
        bail!("building the benchmark programs failed");
    }
    // Cargo puts the programs under `$CARGO_TARGET_DIR` when that is set.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .map_or_else(|| root.join("target"), |dir| root.join(dir));
    let bin_dir = target_dir.join(if smoke { "debug" } else { "release" });

    // netbench is a `harness = false` bench target (its test PKI comes from a
    // dev-dependency): `cargo bench` builds and runs it optimised, `cargo test` in debug.
    let netbench = |args: &[&str]| {
        let mut c = if smoke {
            cargo(
                &root,
                &[
                    "test", "--locked", "-p", "bench", "--bench", "netbench", "--",
                ],
            )
        } else {
            cargo(
                &root,
                &[
                    "bench", "--locked", "-p", "bench", "--bench", "netbench", "--",
                ],
            )
        };
        c.args(args);
        c
    };
    let mut runs: Vec<Command> = Vec::new();
    if smoke {
        let mut lines = Command::new(bin_dir.join("lines"));
        lines.arg("--smoke");
        runs.push(lines);
        runs.push(netbench(&["--smoke"]));
    } else {
        if chosen.iter().any(|(_, bin)| *bin == "lines") {
            runs.push(Command::new(bin_dir.join("lines")));
        }
        let net: Vec<&str> = chosen
            .iter()
            .filter(|(_, bin)| *bin == "netbench")
            .map(|(name, _)| *name)
            .collect();
        if !net.is_empty() {
            let passed: Vec<&str> = passed.iter().map(String::as_str).collect();
            let mut c = netbench(&passed);
            c.args(net);
            runs.push(c);
        }
    }
    for mut cmd in runs {
        println!("==> {}", describe(&cmd));
        let status = cmd
            .status()
            .with_context(|| format!("could not run {}", describe(&cmd)))?;
        if !status.success() {
            bail!("benchmark failed ({status}): {}", describe(&cmd));
        }
    }
    Ok(())
}
