//! `cargo xtask coverage [--net-tests] [--html]`: which lines and regions of the three
//! libraries (`crates/*/src`) the tests execute, measured with LLVM's source-based coverage
//! (`-C instrument-coverage`), reported per file by `llvm-cov report`.
//!
//! Runs the libraries' own tests (unit and integration, not doc tests); `--net-tests` adds the
//! `net-tests` package, some 25 minutes more on 2 cores (a few timing-sensitive tests may
//! fail under the instrumentation's slowdown: they are listed, and the coverage of what ran is
//! still reported). `--html` also writes `llvm-cov show`'s annotated sources, with each
//! line's and region's counts, under `coverage/html` in the target directory.
//!
//! Builds into `coverage/` under the target directory (an instrumented build cannot reuse a
//! normal one), and keeps the raw profiles there (`coverage/profraw`, emptied at the start),
//! out of the sources. Needs rustup's `llvm-tools` component (`llvm-profdata` and `llvm-cov`
//! of the toolchain's own LLVM): where they are missing, the task says so and why, and
//! succeeds without running anything. Not part of `cargo xtask ci`: it is a measurement, not
//! a check, and its build is a second one of everything.
//!
//! Counts are of regions (LLVM's code regions: each arm, each side of `&&`, `?`'s early
//! return), which stand in for branches: branch coverage needs a nightly flag.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{cargo, describe, project_root, target_dir};

/// The sources reported on: the libraries'.
const SOURCES: &[&str] = &[
    "crates/net-io/src",
    "crates/net-sockets/src",
    "crates/net-tls/src",
];

/// The libraries' packages, whose tests always run.
const LIBRARIES: &[&str] = &["knet-io", "knet-sockets", "knet-tls"];

/// Runs the instrumented tests and reports.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let options = Options::parse(args)?;
    let root = project_root();
    let tools = match llvm_tools(&root) {
        Ok(tools) => tools,
        Err(why) => {
            println!("xtask: skipping coverage: {why}");
            return Ok(());
        }
    };
    let target = target_dir(&root).join("coverage");
    let profraw = target.join("profraw");
    if profraw.exists() {
        std::fs::remove_dir_all(&profraw)
            .with_context(|| format!("cannot empty {}", profraw.display()))?;
    }
    std::fs::create_dir_all(&profraw)
        .with_context(|| format!("cannot create {}", profraw.display()))?;
    let started = Instant::now();

    let mut runs: Vec<Vec<&str>> = vec![
        LIBRARIES
            .iter()
            .flat_map(|p| ["-p", p])
            .chain(["--lib", "--tests"])
            .collect(),
    ];
    if options.net_tests {
        runs.push(vec!["-p", "net-tests", "--tests"]);
    }
    let mut objects = Vec::new();
    let mut failed = Vec::new();
    for selection in &runs {
        // The test binaries, from cargo's messages, so that llvm-cov reads each one's map of
        // regions (a glob of `deps/` would also take stale binaries of earlier builds).
        let mut build = instrumented(
            cargo(&root, &["test", "--locked", "--no-run"]),
            &target,
            &profraw,
        );
        build
            .args(["--message-format", "json-render-diagnostics"])
            .args(selection)
            .stdout(Stdio::piped());
        println!("xtask: {}", describe(&build));
        let out = build
            .output()
            .with_context(|| format!("cannot run {}", describe(&build)))?;
        if !out.status.success() {
            bail!("the instrumented build failed: {}", describe(&build));
        }
        objects.extend(executables(&String::from_utf8_lossy(&out.stdout)));

        let mut test = instrumented(
            cargo(&root, &["test", "--locked", "--no-fail-fast"]),
            &target,
            &profraw,
        );
        test.args(selection).args(["--", "--test-threads=2"]);
        println!("xtask: {}", describe(&test));
        let status = test
            .status()
            .with_context(|| format!("cannot run {}", describe(&test)))?;
        if !status.success() {
            failed.push(describe(&test));
        }
    }
    if objects.is_empty() {
        bail!("cargo named no test binary");
    }

    let merged = target.join("coverage.profdata");
    let mut merge = Command::new(&tools.profdata);
    merge
        .args(["merge", "-sparse", "-o"])
        .arg(&merged)
        .arg(&profraw);
    checked(&mut merge)?;

    let mut report = llvm_cov(&tools, "report", &merged, &objects, &root);
    checked(&mut report)?;
    if options.html {
        let html = target.join("html");
        let mut show = llvm_cov(&tools, "show", &merged, &objects, &root);
        show.args(["--format=html", "--show-line-counts-or-regions"])
            .arg(format!("--output-dir={}", html.display()));
        checked(&mut show)?;
        println!(
            "xtask: annotated sources in {}",
            html.join("index.html").display()
        );
    }
    println!(
        "xtask: coverage of {} test binaries, {} s",
        objects.len(),
        started.elapsed().as_secs()
    );
    for run in &failed {
        println!(
            "xtask: some tests failed under the instrumentation (their coverage is counted up \
             to the failure): {run}"
        );
    }
    Ok(())
}

/// What the command line asked for.
#[derive(Debug, Default, PartialEq)]
struct Options {
    net_tests: bool,
    html: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut options = Options::default();
        for arg in args {
            match arg.as_str() {
                "--net-tests" => options.net_tests = true,
                "--html" => options.html = true,
                other => bail!(
                    "unknown argument {other:?} (usage: cargo xtask coverage [--net-tests] \
                     [--html])"
                ),
            }
        }
        Ok(options)
    }
}

/// The toolchain's `llvm-profdata` and `llvm-cov`.
#[derive(Debug)]
struct Tools {
    profdata: PathBuf,
    cov: PathBuf,
}

/// Finds the `llvm-tools` component's programs in the sysroot of the `rustc` that cargo
/// runs here; else why they are not there.
fn llvm_tools(root: &Path) -> Result<Tools, String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let ask = |args: &[&str]| -> Result<String, String> {
        let out = Command::new(&rustc)
            .args(args)
            .current_dir(root)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("`{rustc} {}` could not start: {e}", args.join(" ")))?;
        if !out.status.success() {
            return Err(format!(
                "`{rustc} {}` failed ({})",
                args.join(" "),
                out.status
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let sysroot = ask(&["--print", "sysroot"])?;
    let host = host_of(&ask(&["-vV"])?)
        .ok_or_else(|| format!("`{rustc} -vV` names no host"))?
        .to_owned();
    tools_in(Path::new(sysroot.trim()), &host)
}

/// The programs in `sysroot` for `host`, or what is missing.
fn tools_in(sysroot: &Path, host: &str) -> Result<Tools, String> {
    let bin = sysroot.join("lib/rustlib").join(host).join("bin");
    let tools = Tools {
        profdata: bin.join("llvm-profdata"),
        cov: bin.join("llvm-cov"),
    };
    for tool in [&tools.profdata, &tools.cov] {
        if !tool.is_file() {
            return Err(format!(
                "{} is missing; install it with `rustup component add llvm-tools`",
                tool.display()
            ));
        }
    }
    Ok(tools)
}

/// The host triple from `rustc -vV`'s output.
fn host_of(version: &str) -> Option<&str> {
    version
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::trim)
}

/// `cmd` (a cargo command) building instrumented into `target`, without incremental builds
/// (whose caches the instrumentation would double), every instrumented program it runs (the
/// tests, and build scripts, which `RUSTFLAGS` instruments too) writing its profile into
/// `profraw`, not into the directory it runs in (a package's, in the sources).
fn instrumented(mut cmd: Command, target: &Path, profraw: &Path) -> Command {
    let flags = std::env::var("RUSTFLAGS").unwrap_or_default();
    cmd.env("CARGO_TARGET_DIR", target)
        .env("CARGO_INCREMENTAL", "0")
        .env("LLVM_PROFILE_FILE", profraw.join("%p-%m.profraw"))
        .env(
            "RUSTFLAGS",
            format!("{flags} -C instrument-coverage").trim_start(),
        );
    cmd
}

/// The test binaries that cargo's JSON messages (`--message-format json`) name.
fn executables(messages: &str) -> Vec<PathBuf> {
    messages
        .lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\""))
        .filter_map(|l| {
            let rest = &l[l.find("\"executable\":\"")? + "\"executable\":\"".len()..];
            Some(PathBuf::from(&rest[..rest.find('"')?]))
        })
        .collect()
}

/// `llvm-cov SUBCOMMAND` on `objects` with `profile`, for the libraries' sources.
fn llvm_cov(
    tools: &Tools,
    subcommand: &str,
    profile: &Path,
    objects: &[PathBuf],
    root: &Path,
) -> Command {
    let mut cmd = Command::new(&tools.cov);
    cmd.arg(subcommand)
        .arg(format!("--instr-profile={}", profile.display()))
        .current_dir(root);
    // The first binary goes as llvm-cov's positional argument, the others with `--object`.
    for (i, object) in objects.iter().enumerate() {
        if i > 0 {
            cmd.arg("--object");
        }
        cmd.arg(object);
    }
    cmd.args(SOURCES.iter().map(|s| root.join(s)));
    cmd
}

/// Runs `cmd`, its output shown; an error when it fails.
fn checked(cmd: &mut Command) -> Result<()> {
    println!("xtask: {}", describe(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {}", describe(cmd)))?;
    if !status.success() {
        bail!("failed ({status}): {}", describe(cmd));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only compiler artifacts with an executable are test binaries; build scripts' and
    /// libraries' messages name none.
    #[test]
    fn test_binaries_are_read_from_cargos_messages() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","target":{"name":"lines"},"executable":"/t/deps/lines-1a"}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"net_io"},"executable":null}"#,
            "\n",
            r#"{"reason":"build-script-executed","package_id":"x"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
            "\n",
        );
        assert_eq!(
            executables(messages),
            vec![PathBuf::from("/t/deps/lines-1a")]
        );
    }

    /// Where the component is missing, the reason names the program and how to install it.
    #[test]
    fn coverage_is_skipped_with_the_reason_when_llvm_tools_are_missing() {
        let why = tools_in(
            Path::new("/nonexistent-sysroot"),
            "x86_64-unknown-linux-gnu",
        )
        .unwrap_err();
        assert!(why.contains("llvm-profdata is missing"), "{why}");
        assert!(why.contains("rustup component add llvm-tools"), "{why}");
        assert_eq!(
            host_of("rustc 1.95.0\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\n"),
            Some("x86_64-unknown-linux-gnu")
        );
        assert_eq!(host_of("rustc 1.95.0\n"), None);
    }

    /// llvm-cov takes the first binary as its positional argument (`--object` for each
    /// other), then the libraries' source directories; with the directories first, it read
    /// `crates/net-io/src` as the binary ("Is a directory").
    #[test]
    fn llvm_cov_gets_a_binary_first_then_the_sources() {
        let tools = Tools {
            profdata: PathBuf::from("/bin/llvm-profdata"),
            cov: PathBuf::from("/bin/llvm-cov"),
        };
        let objects = [PathBuf::from("/t/a"), PathBuf::from("/t/b")];
        let cmd = llvm_cov(
            &tools,
            "report",
            Path::new("/t/p"),
            &objects,
            Path::new("/r"),
        );
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
        assert_eq!(
            args,
            [
                "report",
                "--instr-profile=/t/p",
                "/t/a",
                "--object",
                "/t/b",
                "/r/crates/net-io/src",
                "/r/crates/net-sockets/src",
                "/r/crates/net-tls/src",
            ]
        );
    }

    /// The options are `--net-tests` and `--html`; anything else is refused.
    #[test]
    fn options_are_parsed_and_unknown_ones_refused() {
        let all = Options::parse(&["--html".into(), "--net-tests".into()]).unwrap();
        assert_eq!(
            all,
            Options {
                net_tests: true,
                html: true
            }
        );
        assert!(Options::parse(&["--all".into()]).is_err());
    }
}
