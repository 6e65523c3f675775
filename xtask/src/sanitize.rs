//! `cargo xtask sanitize [--asan] [--tsan] [--list]`: the libraries' tests and a selection of
//! net-tests' lifecycle and concurrency tests, built and run under AddressSanitizer (with
//! LeakSanitizer: memory nothing references at exit) and ThreadSanitizer (data races). Neither
//! flag: both, ASan first. Not part of `cargo xtask ci`: it needs a nightly toolchain with
//! `rust-src` (the standard library is rebuilt with the sanitizer, `-Zbuild-std`, so that its
//! atomics and allocations are seen), and its builds take long (tens of minutes on 2 cores).
//! Where nightly or `rust-src` is missing it says what, and skips (successfully).
//!
//! Each sanitizer builds into a target directory of its own (`<target dir>/sanitize-address`,
//! `<target dir>/sanitize-thread`). The sanitizers write their reports to files
//! (`log_path`), one per process, so that a report from a child process a test started (and
//! whose output it keeps to itself) is seen too; every report is printed at the end, and any
//! report fails the run, as does a failing test.
//!
//! The C and assembly code of the crypto provider (ring) is not instrumented: its memory
//! accesses are not checked, and give no reports either. Suppressions of judged false
//! positives, each with its reason, are in `xtask/sanitize/SANITIZER.supp` (`thread.supp`:
//! tokio's I/O driver, ordered by `epoll`, which TSan cannot see). Some tests cannot run under
//! ASan ([`NOT_UNDER_ASAN`]) or TSan ([`NOT_UNDER_TSAN`]): they are skipped, each saying why.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{describe, project_root, target_dir};

/// The tests of net-tests (`tests/tests/NAME.rs`) run under each sanitizer: those that race
/// closes, shutdowns and cancellations against reads and writes, split TLS sessions between a
/// reader and a writer task, swap wakers, and run user code that panics, on multi-thread
/// runtimes, without long timing loops.
///
/// Left out: `sockets_close_waits_for_release`, whose check that a connect is refused once a
/// listener's close returned fails now and then under TSan (2 runs in 12, each in its first
/// round; never in 16 with `report_bugs=0`). When TSan first symbolizes a report it forks
/// `llvm-symbolizer`, and the child, before its `exec`, closes descriptors one by one up to
/// `RLIMIT_NOFILE` (20,055 `close` calls under strace), holding a copy of every descriptor of
/// the test process meanwhile: a listener closed then keeps accepting.
const NET_TESTS: &[&str] = &[
    "sockets_close_races",
    "failure_state_parity",
    "async_trait_contracts",
    "user_code_panics",
    "tls_read_only",
    "tls_reader_and_writer_share_the_socket",
    "tls_stream_shutdowns",
    "tls_writer_waiting_when_a_read_fails_the_session",
    "tls_write_after_a_failed_read_woke_the_writer",
    "tls_read_after_a_shutdown_woke_the_reader",
    "wakers_that_change",
    "coalescing",
    "coalescing_ends_and_races",
    "sockets_udp",
    "sockets_unix",
    "sockets_unix_races",
    "selector_close_racing_socket_drops",
    "selector_close_reentered_during_another_threads_close",
    "own_runtime_selector_closed_while_tls_halves_work_elsewhere",
    "accepts_on_several_threads_while_the_listener_closes",
    "shutdown_cuts",
    "locks_and_wakers",
    "socket_close_during_a_read_or_write_in_flight",
    "sockets_halves_while_closing",
];

/// A sanitizer this task runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sanitizer {
    Address,
    Thread,
}

impl Sanitizer {
    /// Its name for `-Zsanitizer=`.
    fn name(self) -> &'static str {
        match self {
            Sanitizer::Address => "address",
            Sanitizer::Thread => "thread",
        }
    }

    /// The environment variable of its runtime's options.
    fn options_env(self) -> &'static str {
        match self {
            Sanitizer::Address => "ASAN_OPTIONS",
            Sanitizer::Thread => "TSAN_OPTIONS",
        }
    }

    /// Its runtime's options, its reports written to files starting with `log`, and the
    /// suppressions in `suppressions` when there is such a file.
    fn options(self, log: &Path, suppressions: Option<&Path>) -> String {
        // `:` separates the options; a path holding one could not be given.
        let mut options = format!("log_path={}", log.display());
        match self {
            // Leaks too (LeakSanitizer, at each process's exit).
            Sanitizer::Address => options.push_str(":detect_leaks=1"),
            // Every race, not only the first of each process, and both stacks of a deadlock.
            Sanitizer::Thread => options.push_str(":halt_on_error=0:second_deadlock_stack=1"),
        }
        if let Some(file) = suppressions {
            options.push_str(&format!(":suppressions={}", file.display()));
        }
        options
    }
}

/// A sanitizer's report, as read from its log files.
#[derive(Debug, PartialEq, Eq)]
struct Report {
    /// The first line (`==PID==ERROR: AddressSanitizer: heap-use-after-free ...`,
    /// `WARNING: ThreadSanitizer: data race ...`).
    headline: String,
    /// The whole report.
    text: String,
}

/// The reports in `log`, the text of a sanitizer's log file: each starts at a line that says
/// `ERROR: AddressSanitizer`, `ERROR: LeakSanitizer`, `WARNING: ThreadSanitizer` or
/// `LeakSanitizer has encountered a fatal error` (leaks could not be looked for: under a
/// debugger or `strace`, say), and runs up to the next such line or the end. Lines before the
/// first (none, normally) are no report.
fn reports(log: &str) -> Vec<Report> {
    const STARTS: [&str; 4] = [
        "ERROR: AddressSanitizer",
        "ERROR: LeakSanitizer",
        "WARNING: ThreadSanitizer",
        "LeakSanitizer has encountered a fatal error",
    ];
    let mut found: Vec<Report> = Vec::new();
    for line in log.lines() {
        // A headline: the marker at the start, or after the `==PID==` prefix.
        let body = line
            .strip_prefix("==")
            .and_then(|rest| rest.split_once("=="))
            .map_or(line, |(_, body)| body);
        if STARTS.iter().any(|start| body.starts_with(start)) {
            found.push(Report {
                headline: line.trim().to_owned(),
                text: String::new(),
            });
        }
        if let Some(report) = found.last_mut() {
            report.text.push_str(line);
            report.text.push('\n');
        }
    }
    found
}

/// The reports in the log files under `dir`, with the name of the file each came from.
fn reports_in(dir: &Path) -> Result<Vec<(PathBuf, Report)>> {
    let mut all = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .map(|entry| entry.path())
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        all.extend(reports(&text).into_iter().map(|r| (file.clone(), r)));
    }
    Ok(all)
}

/// The target triple of `rustc -vV`'s output (its `host:` line).
fn host_of(version: &str) -> Option<&str> {
    version
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::trim)
}

/// What is missing for a sanitized build, if anything: a nightly toolchain (rustup's
/// `+nightly`), or its `rust-src` component. Else the host's target triple.
fn toolchain() -> std::result::Result<String, String> {
    let missing_nightly = "no nightly toolchain (`rustup toolchain install nightly \
                           --component rust-src`)";
    let version = Command::new("rustc")
        .args(["+nightly", "-vV"])
        .output()
        .map_err(|_| missing_nightly.to_owned())?;
    if !version.status.success() {
        return Err(missing_nightly.to_owned());
    }
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    let Some(host) = host_of(&version) else {
        return Err(format!("`rustc +nightly -vV` names no host:\n{version}"));
    };
    let sysroot = Command::new("rustc")
        .args(["+nightly", "--print", "sysroot"])
        .output()
        .map_err(|_| missing_nightly.to_owned())?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if !sysroot
        .join("lib/rustlib/src/rust/library/Cargo.lock")
        .is_file()
    {
        return Err(format!(
            "the nightly toolchain has no `rust-src` component, which `-Zbuild-std` needs \
             (`rustup component add rust-src --toolchain nightly`); looked in {}",
            sysroot.display()
        ));
    }
    Ok(host.to_owned())
}

/// Why a run of a child process with its address space limited (`ulimit -v`) fails under
/// ASan: ASan cannot map its shadow memory (terabytes of address space) there, so the child
/// dies at its start ("ReserveShadowMemoryRange failed").
const ULIMIT_V: &str =
    "its child process runs under `ulimit -v`, where ASan cannot map its shadow memory";

/// Tests that cannot run under AddressSanitizer, and why.
const NOT_UNDER_ASAN: &[(&str, &str)] = &[
    (
        "a_line_whose_string_cannot_be_allocated_fails_without_ending_the_process",
        ULIMIT_V,
    ),
    (
        "a_peek_whose_copy_cannot_be_allocated_fails_without_ending_the_process",
        ULIMIT_V,
    ),
    (
        "a_read_fully_that_times_out_and_cannot_give_back_fails_without_ending_the_process",
        ULIMIT_V,
    ),
    (
        "a_read_past_what_can_be_allocated_fails_without_ending_the_process",
        ULIMIT_V,
    ),
    (
        // knet-io's tests/alloc.rs: 128 Ki reads of one byte, each after a `Poll::Pending`,
        // within the 10 s hang guard; ASan's slowdown of every allocation and poll made one
        // such read take longer on the 2-core machine ("read hung").
        "read_line_to_allocates_nothing_per_line",
        "its 131,072 one-byte reads outrun its 10 s hang guard under ASan's slowdown",
    ),
];

/// Why a test that counts the process's open descriptors fails under TSan: the first report
/// TSan symbolizes (every process has some, suppressed: `thread.supp`) starts
/// `llvm-symbolizer`, whose two pipes stay open in the process, so a test that took its count
/// before that sees two descriptors more after ("descriptors: 9 before, 11 after").
const SYMBOLIZER_PIPES: &str =
    "it counts open descriptors, and TSan's symbolizer adds its two pipes when it starts";

/// net-tests' tests that cannot run under ThreadSanitizer, and why.
const NOT_UNDER_TSAN: &[(&str, &str)] = &[
    (
        "unix_clients_ending_at_random_while_the_file_goes_leave_nothing_behind",
        SYMBOLIZER_PIPES,
    ),
    (
        "halves_in_two_tasks_while_a_third_ends_the_socket",
        SYMBOLIZER_PIPES,
    ),
];

/// The cargo commands for `sanitizer`: the libraries' tests (under ASan the three libraries'
/// unit and integration tests but [`NOT_UNDER_ASAN`]; under TSan knet-sockets' and
/// knet-tls's unit tests, knet-io's being single-threaded), then [`NET_TESTS`] (under TSan but
/// [`NOT_UNDER_TSAN`]). Each runs
/// every test (`--no-fail-fast`); doctests are left out (they would need
/// `-Zdoctest-xcompile` with `--target`).
fn commands(root: &Path, host: &str, sanitizer: Sanitizer) -> Vec<Command> {
    let common = [
        "+nightly",
        "test",
        "-Zbuild-std",
        "--target",
        host,
        "--locked",
        "--no-fail-fast",
    ];
    let mut libraries = Vec::from(common);
    match sanitizer {
        Sanitizer::Address => libraries.extend([
            "-p",
            "knet-io",
            "-p",
            "knet-sockets",
            "-p",
            "knet-tls",
            "--lib",
            "--tests",
            "--",
        ]),
        Sanitizer::Thread => {
            libraries.extend(["-p", "knet-sockets", "-p", "knet-tls", "--lib", "--"]);
        }
    }
    if sanitizer == Sanitizer::Address {
        for (test, _) in NOT_UNDER_ASAN {
            libraries.extend(["--skip", test]);
        }
    }
    let mut net_tests = Vec::from(common);
    net_tests.extend(["-p", "net-tests"]);
    for test in NET_TESTS {
        net_tests.extend(["--test", test]);
    }
    if sanitizer == Sanitizer::Thread {
        net_tests.push("--");
        for (test, _) in NOT_UNDER_TSAN {
            net_tests.extend(["--skip", test]);
        }
    }
    // rustup's `cargo` (its proxy takes `+nightly`), not the `$CARGO` that runs xtask: that
    // is the stable toolchain's own binary.
    let cargo = |args: &[&str]| {
        let mut c = Command::new("cargo");
        c.args(args).current_dir(root);
        c
    };
    vec![cargo(&libraries), cargo(&net_tests)]
}

/// Builds and runs the tests under `sanitizer`; the reports it wrote, and whether every
/// test passed.
fn run_one(
    root: &Path,
    host: &str,
    sanitizer: Sanitizer,
) -> Result<(Vec<(PathBuf, Report)>, bool)> {
    let name = sanitizer.name();
    let logs = std::env::temp_dir().join(format!("xtask-sanitize-{name}-{}", std::process::id()));
    // A run's own directory: the reports found are this run's.
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let suppressions = root.join("xtask/sanitize").join(format!("{name}.supp"));
    let suppressions = suppressions.is_file().then_some(suppressions);
    let options = sanitizer.options(&logs.join("report"), suppressions.as_deref());
    let flags = format!("-Zsanitizer={name}");
    let mut passed = true;
    for mut cmd in commands(root, host, sanitizer) {
        cmd.env("RUSTFLAGS", &flags)
            .env("RUSTDOCFLAGS", &flags)
            .env(
                "CARGO_TARGET_DIR",
                target_dir(root).join(format!("sanitize-{name}")),
            )
            .env(sanitizer.options_env(), &options)
            // No backtraces of panics: the tests that panic on purpose (user code that
            // panics) would wait for each to be symbolized, seconds in an instrumented binary,
            // on their runtime's thread (net-tests' shutdown_cuts took 18 s under ASan with
            // `RUST_BACKTRACE=1`, past its bound of 2). A sanitizer's report has its stacks.
            .env("RUST_BACKTRACE", "0");
        println!("==> sanitize ({name}): {}", describe(&cmd));
        let started = Instant::now();
        let status = cmd
            .status()
            .with_context(|| format!("cannot run {}", describe(&cmd)))?;
        println!(
            "==> sanitize ({name}): {status} after {} s",
            started.elapsed().as_secs()
        );
        passed &= status.success();
    }
    let found = reports_in(&logs)?;
    if found.is_empty() {
        let _ = std::fs::remove_dir_all(&logs);
    }
    Ok((found, passed))
}

/// Runs the task.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut sanitizers = Vec::new();
    for arg in args {
        match arg.as_str() {
            "--asan" => sanitizers.push(Sanitizer::Address),
            "--tsan" => sanitizers.push(Sanitizer::Thread),
            "--list" => {
                for test in NET_TESTS {
                    println!("{test}");
                }
                return Ok(());
            }
            other => bail!(
                "unknown argument {other:?} (usage: cargo xtask sanitize [--asan] [--tsan] \
                 [--list])"
            ),
        }
    }
    if sanitizers.is_empty() {
        sanitizers = vec![Sanitizer::Address, Sanitizer::Thread];
    }
    let host = match toolchain() {
        Ok(host) => host,
        Err(missing) => {
            println!("==> sanitize: SKIPPED, nothing run: {missing}");
            return Ok(());
        }
    };
    let root = project_root();
    let mut failures = Vec::new();
    for sanitizer in sanitizers {
        let not_run = match sanitizer {
            Sanitizer::Address => NOT_UNDER_ASAN,
            Sanitizer::Thread => NOT_UNDER_TSAN,
        };
        for (test, why) in not_run {
            println!("==> sanitize ({}): SKIPPED {test}: {why}", sanitizer.name());
        }
        let (found, passed) = run_one(&root, &host, sanitizer)?;
        for (file, report) in &found {
            println!(
                "==> {} reported ({}):\n{}",
                sanitizer.name(),
                file.display(),
                report.text
            );
        }
        if !found.is_empty() {
            failures.push(format!(
                "{} report(s) under {}: {}",
                found.len(),
                sanitizer.name(),
                found
                    .iter()
                    .map(|(_, r)| r.headline.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        if !passed {
            failures.push(format!("tests failed under {}", sanitizer.name()));
        }
    }
    if !failures.is_empty() {
        bail!("sanitize: {}", failures.join("\n"));
    }
    println!("==> sanitize: passed, no report");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_split_at_each_headline_with_or_without_the_pid_prefix() {
        let log = "\
=================================================================
==4242==ERROR: AddressSanitizer: heap-use-after-free on address 0x6020
    #0 0x55 in net_sockets::stream::read
SUMMARY: AddressSanitizer: heap-use-after-free stream.rs:10
==4242==ERROR: LeakSanitizer: detected memory leaks
Direct leak of 64 byte(s) in 1 object(s) allocated from:
==================
WARNING: ThreadSanitizer: data race (pid=77)
  Write of size 8 at 0x7b04 by thread T1:
SUMMARY: ThreadSanitizer: data race core.rs:5 in close
==================
";
        let found = reports(log);
        let headlines: Vec<&str> = found.iter().map(|r| r.headline.as_str()).collect();
        assert_eq!(
            headlines,
            [
                "==4242==ERROR: AddressSanitizer: heap-use-after-free on address 0x6020",
                "==4242==ERROR: LeakSanitizer: detected memory leaks",
                "WARNING: ThreadSanitizer: data race (pid=77)",
            ]
        );
        assert!(
            found[0]
                .text
                .contains("SUMMARY: AddressSanitizer: heap-use-after-free")
        );
        assert!(!found[0].text.contains("LeakSanitizer"));
        assert!(found[1].text.contains("Direct leak of 64 byte(s)"));
        assert!(found[2].text.contains("core.rs:5 in close"));
    }

    #[test]
    fn a_log_without_a_headline_holds_no_report() {
        assert!(reports("").is_empty());
        // Leaks not looked for is a report: the run did not check what it says it did.
        let fatal = "==9==LeakSanitizer has encountered a fatal error.\n==9==HINT: ptrace\n";
        assert_eq!(reports(fatal).len(), 1);
        assert!(reports("==1==WARNING: something the runtime said\nstats: 3\n").is_empty());
        // A test's name or message that merely mentions a sanitizer is no report.
        assert!(reports("test tsan_sees_no_ThreadSanitizer: data race ... ok\n").is_empty());
    }

    #[test]
    fn reports_are_read_from_every_log_file_of_a_directory() {
        let dir = std::env::temp_dir().join(format!("xtask-sanitize-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("report.1"),
            "==1==ERROR: LeakSanitizer: detected memory leaks\n",
        )
        .unwrap();
        std::fs::write(dir.join("report.2"), "nothing\n").unwrap();
        std::fs::write(
            dir.join("report.3"),
            "WARNING: ThreadSanitizer: data race (pid=3)\n",
        )
        .unwrap();
        let found = reports_in(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let files: Vec<String> = found
            .iter()
            .map(|(f, _)| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files, ["report.1", "report.3"]);
    }

    #[test]
    fn the_host_is_read_from_rustc_version_output() {
        let out = "rustc 1.95.0-nightly (abc 2026-01-01)\nbinary: rustc\n\
                   host: x86_64-unknown-linux-gnu\nrelease: 1.95.0-nightly\n";
        assert_eq!(host_of(out), Some("x86_64-unknown-linux-gnu"));
        assert_eq!(host_of("rustc 1.95.0\n"), None);
    }

    #[test]
    fn options_name_the_log_leaks_and_suppressions() {
        let log = Path::new("/tmp/l/report");
        assert_eq!(
            Sanitizer::Address.options(log, None),
            "log_path=/tmp/l/report:detect_leaks=1"
        );
        assert_eq!(
            Sanitizer::Thread.options(log, Some(Path::new("/x/thread.supp"))),
            "log_path=/tmp/l/report:halt_on_error=0:second_deadlock_stack=1:\
             suppressions=/x/thread.supp"
        );
    }

    /// Each suppression is a judged false positive: the lines just above it say why.
    #[test]
    fn every_suppression_is_explained_by_a_comment_above_it() {
        let dir = project_root().join("xtask/sanitize");
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            let mut explained = false;
            for line in text.lines().map(str::trim) {
                if line.starts_with('#') {
                    explained = true;
                } else if line.is_empty() {
                    explained = false;
                } else {
                    assert!(
                        explained,
                        "{}: {line:?} has no comment",
                        entry.path().display()
                    );
                    // `KIND:PATTERN` (`race:`, `leak:`, ...).
                    let kind = line.split_once(':').map_or("", |(kind, _)| kind);
                    assert!(
                        !kind.is_empty()
                            && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                        "{}: {line:?} is no suppression",
                        entry.path().display()
                    );
                }
            }
        }
    }

    /// Each sanitizer's tests skip what it cannot run, after the `--` that gives the test
    /// binaries their arguments; the other sanitizer's skips are not applied.
    #[test]
    fn each_sanitizer_skips_its_own_tests_after_the_separator() {
        let root = Path::new("/r");
        let args = |cmd: &Command| -> Vec<String> {
            cmd.get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        let skipped_after_separator = |args: &[String], test: &str| {
            let separator = args.iter().position(|a| a == "--");
            let skip = args
                .windows(2)
                .position(|w| w[0] == "--skip" && w[1] == test);
            matches!((separator, skip), (Some(s), Some(k)) if s < k)
        };
        for sanitizer in [Sanitizer::Address, Sanitizer::Thread] {
            let commands = commands(root, "x86_64-unknown-linux-gnu", sanitizer);
            let [libraries, net_tests] = commands.as_slice() else {
                panic!("two commands");
            };
            let (libraries, net_tests) = (args(libraries), args(net_tests));
            for args in [&libraries, &net_tests] {
                assert_eq!(args[..3], ["+nightly", "test", "-Zbuild-std"]);
            }
            for (test, _) in NOT_UNDER_ASAN {
                let skipped = skipped_after_separator(&libraries, test);
                assert_eq!(skipped, sanitizer == Sanitizer::Address, "{test}");
            }
            for (test, _) in NOT_UNDER_TSAN {
                let skipped = skipped_after_separator(&net_tests, test);
                assert_eq!(skipped, sanitizer == Sanitizer::Thread, "{test}");
            }
            assert_eq!(
                net_tests.iter().filter(|a| *a == "--test").count(),
                NET_TESTS.len()
            );
        }
    }

    #[test]
    fn every_listed_net_test_exists() {
        let dir = project_root().join("tests/tests");
        for test in NET_TESTS {
            assert!(
                dir.join(format!("{test}.rs")).is_file(),
                "tests/tests/{test}.rs"
            );
        }
    }
}
