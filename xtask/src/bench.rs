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

use std::path::PathBuf;
use std::process::{Command, Stdio};

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
    ("tls-pipeline-50", "netbench"),
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
    // dev-dependency): `cargo bench` builds it optimised, `cargo test` in debug. It is built
    // here without running (`--no-run`) and then run by xtask itself, as `lines` is, under
    // `child_command`: run by cargo, it was cargo's child, and a signal that ended xtask alone
    // left cargo and netbench (with its servers) running a whole benchmark long.
    let plan = plan(smoke, &chosen, passed);
    let netbench = if plan.iter().any(|(p, _)| *p == Program::Netbench) {
        let mut build = cargo(
            &root,
            &[
                if smoke { "test" } else { "bench" },
                "--no-run",
                "--locked",
                "-p",
                "bench",
                "--bench",
                "netbench",
                "--message-format=json-render-diagnostics",
            ],
        );
        build.stdout(Stdio::piped()).stderr(Stdio::inherit());
        println!("==> {}", describe(&build));
        let out = build.output().context("could not start cargo")?;
        if !out.status.success() {
            bail!("building netbench failed ({})", out.status);
        }
        Some(
            netbench_executable(&String::from_utf8_lossy(&out.stdout))
                .context("cargo named no netbench executable")?,
        )
    } else {
        None
    };
    let runs: Vec<Command> = plan
        .into_iter()
        .map(|(program, args)| {
            let mut c = match (program, &netbench) {
                (Program::Lines, _) => child_command(bin_dir.join("lines")),
                (Program::Netbench, Some(exe)) => {
                    let mut c = child_command(exe);
                    // Where cargo runs a bench target: its package's folder.
                    c.current_dir(root.join("bench"));
                    c
                }
                (Program::Netbench, None) => unreachable!("built above"),
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

/// The netbench executable that cargo built, from its JSON messages (`--message-format=json`):
/// the `executable` of the `compiler-artifact` message of the bench target `netbench`.
fn netbench_executable(messages: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter(|l| l.contains(r#""reason":"compiler-artifact""#))
        .filter(|l| l.contains(r#""name":"netbench""#) && l.contains(r#""kind":["bench"]"#))
        .find_map(|l| json_string(l, "executable"))
        .map(PathBuf::from)
}

/// The string value of `"key":"…"` in a line of JSON (its escapes `\\`, `\"` and `\/` undone);
/// `None` when there is none, or it holds another escape.
fn json_string(line: &str, key: &str) -> Option<String> {
    let (_, rest) = line.split_once(&format!("\"{key}\":\""))?;
    let mut value = String::new();
    let mut chars = rest.chars();
    loop {
        match chars.next()? {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                c @ ('\\' | '"' | '/') => value.push(c),
                _ => return None,
            },
            c => value.push(c),
        }
    }
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

    /// Set in the copy of this test binary that runs `bench` and dies while netbench runs.
    const DYING_XTASK: &str = "XTASK_TEST_BENCH_PARENT";

    /// netbench, like the other benchmark programs, dies with xtask even when xtask ends by a
    /// way that runs no destructor (a SIGTERM or SIGKILL to its PID alone). It ran under
    /// `cargo bench`, whose child it was: xtask's death left cargo and netbench running, a
    /// whole benchmark long (with its servers). Here a stand-in `cargo` (`$CARGO`) builds
    /// nothing and runs a stand-in netbench (`sleep`) as cargo would, or names it as the
    /// executable it built when asked for JSON messages.
    #[test]
    fn netbench_does_not_outlive_xtask() {
        use std::time::{Duration, Instant};
        if let Some(pid_file) = std::env::var_os(DYING_XTASK) {
            // The dying xtask: run the benchmark on another thread, say netbench's PID once it
            // runs `sleep`, and end without a destructor.
            std::thread::spawn(|| run(&strings(&["--smoke", "echo-1"])));
            let deadline = Instant::now() + Duration::from_secs(10);
            let pid = loop {
                let pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
                let comm = format!("/proc/{}/comm", pid.trim());
                let running = std::fs::read_to_string(comm).is_ok_and(|c| c.trim() == "sleep");
                if running || Instant::now() >= deadline {
                    break pid;
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            println!("NETBENCH {}", pid.trim());
            std::process::exit(0);
        }
        let dir = std::env::temp_dir().join(format!("xtask-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary folder");
        let (cargo, netbench, pid_file) = (
            dir.join("cargo"),
            dir.join("netbench"),
            dir.join("netbench.pid"),
        );
        let script = |path: &std::path::Path, text: String| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::write(path, text).expect("script");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        };
        script(
            &netbench,
            format!(
                "#!/bin/sh\necho $$ > '{}'\nexec sleep 30\n",
                pid_file.display()
            ),
        );
        script(
            &cargo,
            format!(
                "#!/bin/sh\ncase \" $* \" in\n\
                 *\" --no-run \"*) printf '%s\\n' \
                 '{{\"reason\":\"compiler-artifact\",\"target\":{{\"kind\":[\"bench\"],\
                 \"name\":\"netbench\"}},\"executable\":\"{}\"}}' ;;\n\
                 *\" --bench netbench \"*) '{}' & wait ;;\n\
                 esac\n",
                netbench.display(),
                netbench.display()
            ),
        );
        let pid = crate::test_support::rerun_for_pid(
            "bench::tests::netbench_does_not_outlive_xtask",
            &[
                (DYING_XTASK, pid_file.as_os_str()),
                ("CARGO", cargo.as_os_str()),
            ],
            "NETBENCH ",
        );
        let survived = crate::test_support::outlives(pid);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!survived, "netbench ({pid}) outlived xtask by 5 s");
    }

    #[test]
    fn the_netbench_executable_is_read_from_cargos_messages() {
        // As `cargo test --no-run --message-format=json-render-diagnostics` prints them
        // (shortened): the library's artifact has no executable, the bench target's has.
        let messages = concat!(
            r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"bench"},"#,
            r#""executable":null,"fresh":true}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"kind":["bench"],"#,
            r#""crate_types":["bin"],"name":"netbench"},"#,
            r#""executable":"/t/a \"b\"\\c/debug/deps/netbench-15221b8668e605d5","fresh":true}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        assert_eq!(
            netbench_executable(messages),
            Some(PathBuf::from(
                r#"/t/a "b"\c/debug/deps/netbench-15221b8668e605d5"#
            ))
        );
        assert_eq!(netbench_executable(r#"{"reason":"build-finished"}"#), None);
        // An escape it does not undo: no path rather than a wrong one.
        let odd = concat!(
            r#"{"reason":"compiler-artifact","target":{"kind":["bench"],"name":"netbench"},"#,
            r#""executable":"/t/\u00e9"}"#,
        );
        assert_eq!(netbench_executable(odd), None);
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
