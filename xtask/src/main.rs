//! Project automation, run as `cargo xtask <task>` (an alias in `.cargo/config.toml`).
//!
//! - `cargo xtask ci` — everything CI checks, in order, stopping at the first failure; a green
//!   run ends with the list of what the tests and the step "other targets" skipped (or none).
//! - `cargo xtask bench [SCENARIO…]` — release-build the benchmark programs and run them
//!   (see `BENCHMARKS.md`). `cargo xtask bench --list` names the scenarios.
//! - `cargo xtask interop` — TLS against real `openssl s_server`, `openssl s_client` and `curl`.
//! - `cargo xtask fuzz --seconds N` — the cargo-fuzz targets, N seconds each.
//! - `cargo xtask soak [--minutes N] [--conns C] [--port P]` — C ping-pong connections to the
//!   example `sockets-server` for N minutes; checks its memory and descriptors stay flat (see
//!   `RELIABILITY.md`). Minutes long, so not part of `ci`.
//! - `cargo xtask soak-mix [--minutes N] [--workers W]` — W workers churning connections of
//!   every kind (TCP, TLS, UDP, Unix, PROXY headers, resets, half-closes) through one server
//!   process for N minutes; checks its memory, descriptors and tasks (see `RELIABILITY.md`).
//! - `cargo xtask sanitize [--asan] [--tsan]` — the libraries' tests and net-tests' lifecycle
//!   and concurrency tests under AddressSanitizer and ThreadSanitizer (nightly with `rust-src`;
//!   skipped, saying why, without). Long builds, so not part of `ci`.
//! - `cargo xtask miri [--tree-borrows] [--seeds N] [SUITE…]` — the in-memory tests under Miri
//!   (nightly; skipped, with the reason, where `cargo +nightly miri` is missing). Not in `ci`.
//! - `cargo xtask coverage [--net-tests] [--html]` — the lines and regions of the libraries that
//!   the tests execute (LLVM source-based coverage; skipped, with the reason, where rustup's
//!   `llvm-tools` component is missing). Not in `ci`.
//! - `cargo xtask msrv` — the libraries checked with Rust of their `rust-version` (1.85), the
//!   whole workspace with the examples' and tests' (1.88); skipped, saying so, where rustup
//!   lacks those toolchains. Not in `ci`.

use std::env;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::OnceLock;

mod bench;
mod ci;
mod coverage;
mod fuzz;
mod interop;
mod miri;
mod msrv;
mod sanitize;
mod soak;
mod soak_mix;

const USAGE: &str = "usage: cargo xtask ci | bench [--smoke] [--list] [SCENARIO…] [-- NETBENCH-OPTIONS] \
                     | interop | fuzz [--seconds N] [--list] [TARGET…] \
                     | soak [--minutes N] [--conns C] [--port P] | soak-mix [--minutes N] [--workers W] \
                     | sanitize [--asan] [--tsan] [--list] \
                     | miri [--tree-borrows] [--seeds N] [--list] [SUITE…] \
                     | coverage [--net-tests] [--html] | msrv   \
                     (soak, soak-mix, sanitize, miri, coverage, msrv: minutes long, not in ci)";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("interop") => interop::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("soak") => soak::run(&args[1..]),
        Some("soak-mix") => soak_mix::run(&args[1..]),
        Some("sanitize") => sanitize::run(&args[1..]),
        Some("miri") => miri::run(&args[1..]),
        Some("coverage") => coverage::run(&args[1..]),
        Some("msrv") => msrv::run(&args[1..]),
        // Asked for: the usage on stdout, and success.
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => {
            if let Some(task) = other {
                eprintln!("xtask: unknown task {task:?}");
            }
            eprintln!("{USAGE}");
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

/// The environment variable with which the tests' kit (`net_tests::harness::skipped`) is told
/// the file where a test that skips a part of itself adds a line saying so.
pub(crate) const SKIP_LOG_ENV: &str = "NET_TESTS_SKIP_LOG";

/// Where the tests that `cargo xtask ci` runs note what they skip: set by `ci` before its first
/// step, given to every cargo command after that ([`cargo`]).
pub(crate) static SKIP_LOG: OnceLock<PathBuf> = OnceLock::new();

pub(crate) fn cargo(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.args(args).current_dir(root);
    if let Some(log) = SKIP_LOG.get() {
        c.env(SKIP_LOG_ENV, log);
    }
    c
}

/// A command for `program`, for a child that must not outlive this process: the soak's server
/// and load program, the benchmark programs.
///
/// A destructor that kills the child (`Drop for Server`) runs only when xtask ends by itself;
/// a signal that ends it (`kill PID`, a CI runner's or supervisor's SIGTERM to xtask alone, a
/// SIGKILL) would leave the child running, reparented to init. So the command runs under
/// `setpriv --pdeathsig KILL` (util-linux), which asks the kernel (`PR_SET_PDEATHSIG`) to
/// SIGKILL the child when the thread that started it dies and then `exec`s the program: same
/// PID, same arguments, no `unsafe` here. Start such children from the main thread (the
/// signal follows the thread that forked, not the process). Where `setpriv` is missing the
/// program runs bare, as before. (A child whose parent dies before `setpriv` made the request,
/// a window of microseconds after the start, is not covered.)
pub(crate) fn child_command(program: impl AsRef<OsStr>) -> Command {
    static SETPRIV: OnceLock<bool> = OnceLock::new();
    let has_setpriv = *SETPRIV.get_or_init(|| {
        Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if has_setpriv {
        let mut c = Command::new("setpriv");
        c.args(["--pdeathsig", "KILL"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

pub(crate) fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the root")
        .to_path_buf()
}

/// Where cargo puts build outputs: `$CARGO_TARGET_DIR` (relative to `root`, where the build
/// commands run) when that is set, else `root/target`.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |dir| root.join(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Set in the copy of this test binary that starts a child and dies at once.
    const PARENT_ENV: &str = "XTASK_TEST_ORPHAN_PARENT";

    /// A child started with `child_command` dies with xtask, even when xtask ends by a way
    /// that runs no destructor. Once, `kill -TERM` to `cargo xtask soak` alone left the soak
    /// server running, reparented to init, for ever.
    #[test]
    fn a_child_does_not_outlive_xtask() {
        if env::var_os(PARENT_ENV).is_some() {
            // The dying parent: start `sleep 30`, say its PID, and end without a destructor
            // (as a SIGTERM or SIGKILL would).
            let child = child_command("sleep")
                .arg("30")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .expect("start sleep");
            // Once it runs `sleep` (setpriv has made its request): a parent dying in the
            // microseconds before that is the window `child_command` leaves open.
            let comm = format!("/proc/{}/comm", child.id());
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() != "sleep")
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            println!("CHILD {}", child.id());
            std::process::exit(0);
        }
        let pid = test_support::rerun_for_pid(
            "tests::a_child_does_not_outlive_xtask",
            &[(PARENT_ENV, OsStr::new("1"))],
            "CHILD ",
        );
        assert!(
            !test_support::outlives(pid),
            "the child {pid} outlived its parent by 5 s"
        );
    }
}

/// What xtask's tests that check a child dies with its parent share.
#[cfg(test)]
pub(crate) mod test_support {
    use std::ffi::OsStr;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// Runs `test` of this test binary again, with `envs` set, as a parent that starts a
    /// process, prints `PREFIX PID` for it and ends without its destructors; that PID.
    pub(crate) fn rerun_for_pid(test: &str, envs: &[(&str, &OsStr)], prefix: &str) -> u32 {
        let mut parent = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", test, "--nocapture"])
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .expect("rerun the test binary");
        let out = BufReader::new(parent.stdout.take().expect("stdout"));
        let pid: u32 = out
            .lines()
            .map_while(Result::ok)
            .find_map(|l| {
                l.strip_prefix(prefix)
                    .map(|p| p.trim().parse().expect("a PID"))
            })
            .expect("the parent printed the PID of what it started");
        assert!(parent.wait().expect("wait").success());
        pid
    }

    /// Whether `pid` still runs 5 s on (an orphan is reaped by init at once when it ends, so
    /// it is polled for); killed then if it does.
    pub(crate) fn outlives(pid: u32) -> bool {
        // Alive: listed and not a zombie (`/proc/PID/stat`: "PID (COMM) STATE ...").
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| !rest.starts_with('Z'))
            })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let survived = alive();
        if survived {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        survived
    }
}
