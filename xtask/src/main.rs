//! Project automation, run as `cargo xtask <task>` (an alias in `.cargo/config.toml`).
//!
//! - `cargo xtask ci` — everything CI checks, in order, stopping at the first failure.
//! - `cargo xtask bench [SCENARIO…]` — release-build the benchmark programs and run them
//!   (see `BENCHMARKS.md`). `cargo xtask bench --list` names the scenarios.
//! - `cargo xtask interop` — TLS against real `openssl s_server`, `openssl s_client` and `curl`.
//! - `cargo xtask fuzz --seconds N` — the cargo-fuzz targets, N seconds each.
//! - `cargo xtask soak [--minutes N] [--conns C] [--port P]` — C ping-pong connections to the
//!   example `sockets-server` for N minutes; checks its memory and descriptors stay flat (see
//!   `RELIABILITY.md`). Minutes long, so not part of `ci`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod bench;
mod ci;
mod fuzz;
mod interop;
mod soak;

const USAGE: &str = "usage: cargo xtask ci | bench [--smoke] [--list] [SCENARIO…] [-- NETBENCH-OPTIONS] \
                     | interop | fuzz [--seconds N] [--list] [TARGET…] \
                     | soak [--minutes N] [--conns C] [--port P]   (soak: minutes long, not in ci)";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("interop") => interop::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("soak") => soak::run(&args[1..]),
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

pub(crate) fn cargo(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.args(args).current_dir(root);
    c
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
