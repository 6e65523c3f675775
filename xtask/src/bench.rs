//! `cargo xtask bench [--smoke] [--list] [SCENARIO…] [-- NETBENCH-OPTIONS]`: build the benchmark
//! programs and run them.
//!
//! - No scenario: all of them. `--list` names them.
//! - `--smoke`: a debug build, a tiny `lines` run, and one short round of every network
//!   scenario on every side but Go (the idle one with 600 connections), to prove the harness
//!   works (CI runs this; the numbers mean nothing and nothing is asserted about them). With
//!   scenarios named, only those; options after `--` still go to `netbench`.
//! - Anything after `--` goes to `netbench` (`--rounds N`, `--secs S`,
//!   `--only ours|raw|tuned|go`, `--no-go`, `--go-flush idle|each`, `--keep-rep-movsb`).
//!
//! The Go baseline of the ping-pong and pipeline scenarios is built from `bench/go/` when a
//! `go` tool is on `PATH` (or named by `NETBENCH_GO`); without one those scenarios run without
//! it and say so. Nothing here requires Go.
//!
//! Line parsing runs in the `lines` program; every network scenario in one `netbench` run,
//! which prints one table at the end.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, child_command, describe, project_root};

/// The benchmark scenarios and the program that runs each. The netbench ones must be the names
/// of netbench's own list (`SCENARIOS` in `bench/benches/netbench/main.rs`), in its order: a
/// test here checks that they are.
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
    ("tls-idle", "netbench"),
    ("nobusy-pingpong-1", "netbench"),
    ("nobusy-pingpong-50", "netbench"),
    ("nobusy-pingpong-500", "netbench"),
    ("nobusy-churn-50", "netbench"),
    ("nobusy-pipeline-1", "netbench"),
];

/// A benchmark program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Program {
    Lines,
    Netbench,
}

/// The programs to run, each with its arguments, for the `chosen` scenarios (all when none is
/// chosen), in smoke mode or not; `passed` (what followed `--`) goes to netbench.
fn plan(smoke: bool, chosen: &[(&str, &str)], passed: &[String]) -> Vec<(Program, Vec<String>)> {
    let all = chosen.is_empty();
    let mut runs = Vec::new();
    if all || chosen.iter().any(|(_, bin)| *bin == "lines") {
        let args = if smoke {
            vec!["--smoke".to_owned()]
        } else {
            vec![]
        };
        runs.push((Program::Lines, args));
    }
    let net: Vec<String> = chosen
        .iter()
        .filter(|(_, bin)| *bin == "netbench")
        .map(|(name, _)| (*name).to_owned())
        .collect();
    if all || !net.is_empty() {
        let mut args: Vec<String> = if smoke {
            vec!["--smoke".to_owned()]
        } else {
            vec![]
        };
        args.extend(passed.iter().cloned());
        // No name: netbench runs every scenario.
        args.extend(net);
        runs.push((Program::Netbench, args));
    }
    runs
}

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
    let mut chosen: Vec<(&str, &str)> = Vec::new();
    for a in args.iter().filter(|a| *a != "--smoke") {
        match SCENARIOS.iter().find(|(name, _)| name == a) {
            Some(s) => chosen.push(*s),
            // An option of netbench's given before `--` (`--rounds 3`) is no scenario.
            None if a.starts_with('-') => bail!(
                "unknown option `{a}` (usage: cargo xtask bench [--smoke] [--list] [SCENARIO…] \
                 [-- NETBENCH-OPTIONS]; netbench's options go after `--`, as in \
                 `cargo xtask bench -- --rounds 3`)"
            ),
            None => bail!("unknown scenario `{a}` (try `cargo xtask bench --list`)"),
        }
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
    let runs: Vec<Command> = plan(smoke, &chosen, passed)
        .into_iter()
        .map(|(program, args)| {
            let mut c = match program {
                Program::Lines => child_command(bin_dir.join("lines")),
                Program::Netbench => netbench(&[]),
            };
            c.args(args);
            c
        })
        .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_smoke_run_keeps_the_named_scenarios_and_the_options_after_the_dashes() {
        // `cargo xtask bench --smoke echo-1 -- --only ours` once ran `lines` and every network
        // scenario on every side, dropping both the name and the option.
        let chosen = [("echo-1", "netbench")];
        let runs = plan(true, &chosen, &strings(&["--only", "ours"]));
        assert_eq!(
            runs,
            [(
                Program::Netbench,
                strings(&["--smoke", "--only", "ours", "echo-1"])
            )]
        );
        // `lines` alone, in its smoke size.
        let runs = plan(true, &[("lines", "lines")], &[]);
        assert_eq!(runs, [(Program::Lines, strings(&["--smoke"]))]);
    }

    #[test]
    fn an_option_before_the_dashes_is_refused_as_an_option() {
        // `cargo xtask bench --rounds 3` once said "unknown scenario `--rounds`".
        let err = run(&strings(&["--rounds", "3"])).expect_err("not a scenario");
        let msg = err.to_string();
        assert!(
            msg.contains("unknown option `--rounds`") && msg.contains("-- --rounds 3"),
            "{msg}"
        );
        let err = run(&strings(&["pingpong-51"])).expect_err("no such scenario");
        assert!(
            err.to_string().contains("unknown scenario `pingpong-51`"),
            "{err}"
        );
    }

    #[test]
    fn the_netbench_scenarios_are_the_ones_netbench_defines() {
        // `cargo xtask bench nobusy-pingpong-50` once said "unknown scenario": this list had
        // fallen behind netbench's. Read the names from netbench's source (each scenario's
        // `name: "…",` line in its `SCENARIOS`), so the two cannot drift apart again.
        let source = std::fs::read_to_string(project_root().join("bench/benches/netbench/main.rs"))
            .expect("netbench's source");
        let list = source
            .split_once("const SCENARIOS: &[Scenario] = &[")
            .and_then(|(_, rest)| rest.split_once("\n];"))
            .expect("netbench's SCENARIOS")
            .0;
        let theirs: Vec<&str> = list
            .lines()
            .filter_map(|l| l.trim().strip_prefix("name: \""))
            .filter_map(|l| l.strip_suffix("\","))
            .collect();
        let ours: Vec<&str> = SCENARIOS
            .iter()
            .filter(|(_, bin)| *bin == "netbench")
            .map(|(name, _)| *name)
            .collect();
        assert!(theirs.len() >= 20, "read too few names: {theirs:?}");
        assert_eq!(ours, theirs);
    }

    #[test]
    fn no_name_runs_everything() {
        assert_eq!(
            plan(true, &[], &[]),
            [
                (Program::Lines, strings(&["--smoke"])),
                (Program::Netbench, strings(&["--smoke"])),
            ]
        );
        assert_eq!(
            plan(false, &[], &strings(&["--rounds", "7"])),
            [
                (Program::Lines, vec![]),
                (Program::Netbench, strings(&["--rounds", "7"])),
            ]
        );
        // Named, not smoke: as before.
        let chosen = [("pingpong-50", "netbench"), ("idle", "netbench")];
        assert_eq!(
            plan(false, &chosen, &[]),
            [(Program::Netbench, strings(&["pingpong-50", "idle"]))]
        );
    }
}
