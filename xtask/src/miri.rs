//! `cargo xtask miri [--tree-borrows] [--seeds N] [--list] [SUITE…]`: the tests that Miri can
//! run (in-memory ones: no TCP, UDP, processes or real files), under Miri, to find undefined
//! behaviour in the `unsafe` code of our crates and in what of our dependencies they reach
//! (tokio's `ReadBuf`, tokio-util's and bytes' uninitialised room, socket2's addresses).
//!
//! Not run: what opens sockets (Miri has no TCP or UDP, and no `getsockopt` or
//! `getsockname` on the socketpairs it has), so most of knet-sockets and the `net-tests`
//! package (processes too); knet-tls's handshakes and keys (ring's C and assembly).
//!
//! Needs a nightly toolchain with Miri (`rustup toolchain install nightly --component miri
//! rust-src`): where `cargo +nightly miri` is missing, the task says so and why, and succeeds
//! without running anything. Not part of `cargo xtask ci`: it needs a nightly toolchain, and
//! takes some 3 minutes of tests on 2 cores, after Miri's own builds of the crates and their
//! dependencies. Each suite is one test binary with test-name filters (`cargo test`'s): Miri
//! is some hundred times slower than a native run, so large and randomised tests (proptest
//! runs [`PROPTEST_CASES`] cases each) are left out by name rather than marked in the
//! sources.
//!
//! A suite whose filters select no test fails the run, so a renamed test is noticed rather
//! than silently no longer checked. `--tree-borrows` checks with Tree Borrows instead of
//! Stacked Borrows; `--seeds N` runs every test under N scheduler seeds
//! (`-Zmiri-many-seeds=0..N`), for the tests with threads. `MIRIFLAGS` of the environment are
//! passed on after this task's own.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{describe, project_root};

/// One test binary run under Miri, with the filters that pick its tests.
struct Suite {
    /// The name `cargo xtask miri SUITE` takes.
    name: &'static str,
    /// The package, as `-p` takes it.
    package: &'static str,
    /// `None`: the library's unit tests (`--lib`); else the integration test of that name.
    test: Option<&'static str>,
    /// Test-name filters (substrings); none: every test of the binary.
    filters: &'static [&'static str],
    /// Tests left out (substrings, `--skip`), each for a reason said beside it.
    skips: &'static [&'static str],
}

/// The suites, in the order they run.
const SUITES: &[Suite] = &[
    // knet-io's unit tests: buffers, lines, the read and write paths' own checks. Left out:
    // a 64 KiB line decoded and 256 KiB scanned five times over (minutes each under Miri:
    // sizes, not `unsafe`, are what they check), and the proptest blocks of `line.rs`, which
    // fix their own case counts (2,048) past what `PROPTEST_CASES` sets.
    Suite {
        name: "io-lib",
        package: "knet-io",
        test: None,
        filters: &[],
        skips: &[
            "a_large_line_decodes_into_room_reserved_for_it",
            "find_lf_is_the_first_lf_on_any_bytes",
            "push_lossy_is_from_utf8_lossy_on_any_bytes",
            "fallible_decoding_reserves_what_push_lossy_appends",
            "a_read_started_again_after_a_cancel_scans_only_the_new_bytes",
        ],
    },
    // Reads through tokio's traits (`ReadBuf`s over uninitialised room: `read_to_end`,
    // `BufReader`, `take`) and the channel's reads from a scripted transport (tokio-util's
    // `poll_read_buf` into the buffer's spare room).
    Suite {
        name: "io-reads",
        package: "knet-io",
        test: Some("read_edges"),
        filters: &[],
        skips: &[],
    },
    Suite {
        name: "io-trait-contracts",
        package: "knet-io",
        test: Some("tokio_trait_contracts"),
        filters: &[],
        // The same 100 KB through `take` as the `BufReader` test before it, twice as slow.
        skips: &["take_then_channel_reads_lose_nothing"],
    },
    Suite {
        name: "io-typed",
        package: "knet-io",
        test: Some("typed"),
        filters: &[],
        // 200 KB made and compared byte by byte; 120,000 typed writes and reads, each read
        // under a timeout.
        skips: &[
            "read_remaining_respects_limit",
            "typed_writes_round_trip_through_byte_channel",
        ],
    },
    // A decoder on a channel without a buffer (tokio-util's `LinesCodec` passed a dangling
    // pointer to `memchr`: the undefined behaviour Miri found first).
    Suite {
        name: "io-decoders",
        package: "knet-io",
        test: Some("decoders_are_handed_a_buffer_in_memory"),
        filters: &[],
        skips: &[],
    },
    // Decoders over the channel (tokio-util's codec traits), a decoder's panic caught; not
    // the seeded runs of 100,000 steps or the 1 MiB items.
    Suite {
        name: "io-frames",
        package: "knet-io",
        test: Some("frame_polls"),
        filters: &[
            "decode_eof_follows_a_skipped_decode",
            "a_frame_split_by_a_timeout_comes_whole_from_a_stream_made_again",
            "a_decoder_that_stops_after_its_header_waits_as_with_framed_read",
            "after_a_caught_decoder_panic_the_next_poll_decodes_without_new_bytes",
        ],
        skips: &[],
    },
    // knet-sockets' in-memory unit tests: addresses (the `unsafe` read of a Unix socket
    // address's path), errors, the waiter lists, the `unsafe` check of an inherited
    // descriptor, and a sample of the PROXY header tests (a parser without `unsafe`: its
    // exhaustive tests, every prefix of every header, take minutes under Miri). The rest
    // needs sockets, which Miri does not have (socketpair aside, and `getsockopt`,
    // `getsockname` on it it has not).
    Suite {
        name: "sockets-lib",
        package: "knet-sockets",
        test: None,
        filters: &[
            "address::",
            "error::",
            "waiters::",
            "a_descriptor_that_is_not_open_is_no_inherited_listener",
            "proxy_protocol::tests::v1_tcp",
            "proxy_protocol::tests::v2_ipv",
            "proxy_protocol::tests::v2_tlvs_are_skipped",
            "proxy_protocol::tests::bytes_after_the_header_are_not_consumed",
            "proxy_protocol::tests::any_addresses_round_trip",
        ],
        // 40,000 waiters, for a cost per waiter.
        skips: &["a_wake_and_a_close_of_many_waiters_cost_each_one_a_constant_time"],
    },
    // knet-tls's tests that reach no cryptography (ring's C and assembly, which Miri cannot
    // run): errors and server names.
    Suite {
        name: "tls-lib",
        package: "knet-tls",
        test: None,
        filters: &[
            "error::",
            "an_empty_server_name_is_refused_as_empty",
            "brackets_are_accepted_only_around_an_ipv6_literal",
        ],
        skips: &[],
    },
];

/// The cases each proptest test runs under Miri, unless the environment says otherwise (those
/// with a `proptest_config` of their own run theirs, which is why they are left out).
const PROPTEST_CASES: &str = "8";

/// How long one suite may run (the build included) before it is stopped and fails the run.
const SUITE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Runs the suites.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let options = Options::parse(args)?;
    if options.list {
        for suite in SUITES {
            println!("{}", suite.name);
        }
        return Ok(());
    }
    let probe = Command::new("cargo")
        .args(["+nightly", "miri", "--version"])
        .stdin(Stdio::null())
        .output();
    if let Some(why) = miri_missing(probe) {
        println!("xtask: skipping Miri: {why}");
        return Ok(());
    }
    let root = project_root();
    let suites: Vec<&Suite> = SUITES
        .iter()
        .filter(|s| options.suites.is_empty() || options.suites.iter().any(|n| n == s.name))
        .collect();
    let flags = miri_flags(&options, std::env::var("MIRIFLAGS").ok().as_deref());
    let cases = std::env::var("PROPTEST_CASES").unwrap_or_else(|_| PROPTEST_CASES.into());
    let started = Instant::now();
    let mut passed = 0;
    for suite in &suites {
        // `cargo` as found on PATH (rustup's), not `$CARGO` (this toolchain's own, which
        // takes no `+nightly`).
        let mut cmd = Command::new("cargo");
        cmd.args(suite_args(suite))
            .current_dir(&root)
            .env("MIRIFLAGS", &flags)
            .env("PROPTEST_CASES", &cases)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        println!(
            "xtask: Miri suite {} (MIRIFLAGS={flags:?}): {}",
            suite.name,
            describe(&cmd)
        );
        let (success, stdout) = run_bounded(&mut cmd, SUITE_TIMEOUT)?;
        let ran = judge_suite(success, &stdout)
            .with_context(|| format!("Miri suite {} ({})", suite.name, describe(&cmd)))?;
        passed += ran;
    }
    println!(
        "xtask: Miri found no undefined behaviour: {passed} test(s) in {} suite(s), {} s",
        suites.len(),
        started.elapsed().as_secs()
    );
    Ok(())
}

/// What the command line asked for.
#[derive(Debug, Default, PartialEq)]
struct Options {
    tree_borrows: bool,
    seeds: Option<u32>,
    list: bool,
    suites: Vec<String>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut options = Options::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--tree-borrows" => options.tree_borrows = true,
                "--list" => options.list = true,
                "--seeds" => {
                    let value = args.next().context("--seeds needs a number")?;
                    let seeds: u32 =
                        value.parse().ok().filter(|&n| n > 0).with_context(|| {
                            format!("--seeds: {value:?} is not a positive number")
                        })?;
                    options.seeds = Some(seeds);
                }
                name if SUITES.iter().any(|s| s.name == name) => {
                    options.suites.push(name.to_owned());
                }
                other => bail!(
                    "unknown argument {other:?} (usage: cargo xtask miri [--tree-borrows] \
                     [--seeds N] [--list] [SUITE…]; suites: {})",
                    SUITES.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
                ),
            }
        }
        Ok(options)
    }
}

/// Why Miri cannot run, from the outcome of `cargo +nightly miri --version`; `None` when it can.
fn miri_missing(probe: std::io::Result<Output>) -> Option<String> {
    let out = match probe {
        Ok(out) => out,
        Err(e) => {
            return Some(format!(
                "`cargo +nightly miri --version` could not start: {e}"
            ));
        }
    };
    if out.status.success() {
        return None;
    }
    // Its first error line (cargo's and rustup's begin with `error`), else its last line.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut lines = stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    let said = lines
        .clone()
        .find(|l| l.starts_with("error"))
        .or_else(|| lines.next_back())
        .unwrap_or("no message");
    Some(format!(
        "`cargo +nightly miri --version` failed ({}: {said}); install it with `rustup \
         toolchain install nightly --component miri rust-src`",
        out.status
    ))
}

/// `MIRIFLAGS` for the run: ours, then the environment's.
///
/// Isolation stays on (Miri's own clock, so the tests' timeouts measure interpreted work, not
/// Miri's slowness), but an operation it refuses (proptest asks for the working directory to
/// find its regression files) fails with an error, as the OS's could, instead of stopping.
/// Isolation also hides the environment: `PROPTEST_CASES` is passed on by name.
fn miri_flags(options: &Options, environment: Option<&str>) -> String {
    let mut flags = vec![
        "-Zmiri-isolation-error=warn-nobacktrace".to_owned(),
        "-Zmiri-env-forward=PROPTEST_CASES".to_owned(),
    ];
    if options.tree_borrows {
        flags.push("-Zmiri-tree-borrows".into());
    }
    if let Some(seeds) = options.seeds {
        flags.push(format!("-Zmiri-many-seeds=0..{seeds}"));
    }
    if let Some(more) = environment.map(str::trim).filter(|m| !m.is_empty()) {
        flags.push(more.to_owned());
    }
    flags.join(" ")
}

/// The arguments of `cargo` for a suite.
fn suite_args(suite: &Suite) -> Vec<String> {
    let mut args: Vec<String> = ["+nightly", "miri", "test", "--locked", "-p", suite.package]
        .map(String::from)
        .to_vec();
    match suite.test {
        None => args.push("--lib".into()),
        Some(test) => args.extend(["--test".into(), test.into()]),
    }
    args.push("--".into());
    args.extend(suite.filters.iter().map(|f| f.to_string()));
    for skip in suite.skips {
        args.extend(["--skip".into(), skip.to_string()]);
    }
    args
}

/// Runs `cmd`, its stdout echoed as it comes and kept, stopped after `limit`; whether it
/// succeeded, and its stdout.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<(bool, String)> {
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", describe(cmd)))?;
    let stdout = child.stdout.take().context("the suite's stdout")?;
    let reader = std::thread::spawn(move || {
        let mut kept = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            kept.push_str(&line);
            kept.push('\n');
        }
        kept
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().context("wait for the suite")? {
            break status;
        }
        if Instant::now() >= deadline {
            // Cargo leaves its children (the interpreted test binary) running when killed:
            // they are stopped first, found by their parents, and then cargo.
            for pid in descendants(child.id(), &process_parents()) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "stopped after {} s: `cargo xtask miri SUITE` runs one suite, and test-name \
                 filters in xtask/src/miri.rs leave out slow tests",
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let kept = reader.join().unwrap_or_default();
    Ok((status.success(), kept))
}

/// Every process's id and its parent's (from `/proc`; none where there is no `/proc`).
fn process_parents() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // "PID (COMM) STATE PPID ...": the command may hold spaces and parentheses.
            let ppid = stat.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// The descendants of `root` in `parents` (pairs of a process and its parent), the deepest
/// last.
fn descendants(root: u32, parents: &[(u32, u32)]) -> Vec<u32> {
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|&&(pid, ppid)| ppid == parent && !found.contains(&pid))
                .map(|&(pid, _)| pid)
                .collect::<Vec<_>>(),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// The tests a suite ran, from its exit and the `test result:` line of its test binary; an
/// error when it failed (Miri's report of undefined behaviour, on stderr, ends the binary
/// with a failure) or when its filters selected no test.
fn judge_suite(success: bool, stdout: &str) -> Result<u64> {
    if !success {
        bail!("failed: undefined behaviour or a failing test (Miri's report is above)");
    }
    let mut ran = None;
    for line in stdout.lines() {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            continue;
        };
        let passed = rest
            .split(';')
            .find_map(|part| part.trim().strip_suffix(" passed"))
            .and_then(|n| n.trim_start_matches("ok. ").trim().parse::<u64>().ok())
            .with_context(|| format!("cannot read the test result {line:?}"))?;
        *ran.get_or_insert(0) += passed;
    }
    match ran {
        None => bail!("no `test result:` line: the test binary did not run"),
        Some(0) => bail!(
            "its filters selected no test: a test was renamed or removed (update the \
             suite in xtask/src/miri.rs)"
        ),
        Some(n) => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    fn output(code: i32, stderr: &str) -> Output {
        Output {
            status: ExitStatus::from_raw(code << 8),
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    /// Miri is run when its probe succeeds; else the reason names what failed: no cargo, no
    /// nightly toolchain, no Miri component.
    #[test]
    fn miri_is_skipped_with_the_reason_it_cannot_run() {
        assert_eq!(miri_missing(Ok(output(0, ""))), None);
        let no_cargo = miri_missing(Err(std::io::Error::from(std::io::ErrorKind::NotFound)));
        assert!(no_cargo.unwrap().contains("could not start"));
        let no_nightly = miri_missing(Ok(output(
            1,
            "error: toolchain 'nightly-x86_64-unknown-linux-gnu' is not installed\n",
        )))
        .unwrap();
        assert!(no_nightly.contains("is not installed"), "{no_nightly}");
        let unsaid = miri_missing(Ok(output(1, "\n  something odd  \nthe last\n"))).unwrap();
        assert!(unsaid.contains("the last"), "{unsaid}");
        let no_miri = miri_missing(Ok(output(
            101,
            "error: no such command: `miri`\n\nhelp: view all installed commands with \
             `cargo --list`\n",
        )))
        .expect("a reason");
        assert!(!no_miri.contains("help:"), "{no_miri}");
        assert!(no_miri.contains("no such command: `miri`"), "{no_miri}");
        assert!(
            no_miri.contains("rustup toolchain install nightly"),
            "{no_miri}"
        );
    }

    /// A suite passes with the tests it ran; it fails when the binary failed (UB) or when its
    /// filters selected nothing.
    #[test]
    fn a_suite_passes_only_when_it_ran_tests_and_succeeded() {
        let ran = "running 3 tests\ntest a ... ok\n\ntest result: ok. 3 passed; 0 failed; \
                   0 ignored; 0 measured; 40 filtered out; finished in 9.10s\n";
        assert_eq!(judge_suite(true, ran).unwrap(), 3);
        let e = judge_suite(false, ran).unwrap_err().to_string();
        assert!(e.contains("undefined behaviour"), "{e}");
        let none = "running 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; \
                    0 measured; 43 filtered out; finished in 0.00s\n";
        let e = judge_suite(true, none).unwrap_err().to_string();
        assert!(e.contains("selected no test"), "{e}");
        assert!(judge_suite(true, "").is_err());
    }

    /// Our flags come first, the environment's after them (so they can override ours).
    #[test]
    fn miri_flags_put_the_environments_last() {
        let plain = Options::default();
        assert_eq!(
            miri_flags(&plain, None),
            "-Zmiri-isolation-error=warn-nobacktrace -Zmiri-env-forward=PROPTEST_CASES"
        );
        let all = Options::parse(&["--tree-borrows".into(), "--seeds".into(), "4".into()])
            .expect("options");
        assert_eq!(
            miri_flags(&all, Some(" -Zmiri-backtrace=full ")),
            "-Zmiri-isolation-error=warn-nobacktrace -Zmiri-env-forward=PROPTEST_CASES \
             -Zmiri-tree-borrows -Zmiri-many-seeds=0..4 -Zmiri-backtrace=full"
        );
        assert!(Options::parse(&["--seeds".into(), "0".into()]).is_err());
        assert!(Options::parse(&["no-such-suite".into()]).is_err());
    }

    /// A stopped suite's processes are found below cargo, however deep, and nothing else.
    #[test]
    fn the_processes_below_a_suite_are_found_and_no_others() {
        let parents = [
            (10, 1),
            (11, 10),
            (12, 11),
            (13, 11),
            (20, 1),
            (21, 20),
            (14, 12),
        ];
        assert_eq!(descendants(10, &parents), vec![11, 12, 13, 14]);
        assert_eq!(descendants(21, &parents), Vec::<u32>::new());
        let me = std::process::id();
        assert!(process_parents().iter().any(|&(pid, _)| pid == me));
    }

    /// A suite's command selects its binary, then its filters, then its skips.
    #[test]
    fn suite_arguments_select_the_binary_and_its_tests() {
        let suite = Suite {
            name: "x",
            package: "knet-io",
            test: Some("lines"),
            filters: &["a::"],
            skips: &["slow"],
        };
        assert_eq!(
            suite_args(&suite).join(" "),
            "+nightly miri test --locked -p knet-io --test lines -- a:: --skip slow"
        );
    }
}
