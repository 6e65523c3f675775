//! `cargo xtask ci`: every check CI runs, in order, stopping at the first failure. A run whose
//! steps all pass ends with what was skipped: the targets of the step `other targets` it could
//! not build for, and every part of a test that `net_tests::harness::skipped` noted in the file
//! `NET_TESTS_SKIP_LOG` names (set here for every cargo command).

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, describe, project_root};

/// Our packages' names, as `cargo package` unpacks them.
const PACKAGES: [&str; 3] = ["knet-io-", "knet-sockets-", "knet-tls-"];

/// Removes the copies of our own packages that an earlier `cargo package --workspace` unpacked
/// under `$CARGO_HOME/registry/src/-<hash>/`: cargo reuses such a copy when the version is
/// unchanged, so a second run on the same machine would verify knet-sockets against the old
/// knet-io. (A fresh machine has none.)
fn forget_packaged_sources() -> Result<()> {
    let home = match std::env::var_os("CARGO_HOME") {
        Some(home) => std::path::PathBuf::from(home),
        None => match std::env::var_os("HOME") {
            Some(home) => std::path::PathBuf::from(home).join(".cargo"),
            None => return Ok(()),
        },
    };
    let Ok(registries) = std::fs::read_dir(home.join("registry/src")) else {
        return Ok(());
    };
    for registry in registries.flatten() {
        // The local registry of `cargo package` is named `-<hash>`; crates.io's is not.
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        let Ok(unpacked) = std::fs::read_dir(registry.path()) else {
            continue;
        };
        for package in unpacked.flatten() {
            let name = package.file_name().to_string_lossy().into_owned();
            if PACKAGES.iter().any(|p| name.starts_with(p)) {
                std::fs::remove_dir_all(package.path())
                    .with_context(|| format!("could not remove {}", package.path().display()))?;
            }
        }
    }
    Ok(())
}

/// The targets whose builds differ from x86_64 glibc's where the libraries lean on them:
/// musl's C library (whose `O_ACCMODE` counts `O_PATH`; its resolver's messages) and a 32-bit
/// `usize` (where a read buffer reaches what a `Vec` may hold).
const OTHER_TARGETS: [&str; 2] = ["x86_64-unknown-linux-musl", "i686-unknown-linux-gnu"];

/// The targets `net-io` and `net-sockets` are checked to build for, not tested on (their
/// crate docs' "Platforms"): `cargo check` of the two libraries, which needs no C compiler
/// (`net-tls`'s crypto provider's C code would need one for the target).
const BUILD_ONLY_TARGETS: [&str; 2] = ["x86_64-apple-darwin", "x86_64-unknown-freebsd"];

/// The integration tests (all `net-io`'s) that run built for musl: those where the C library
/// shows, allocations past what the address space holds (`ulimit -v`) and the resident memory
/// the process reads from `/proc`. The others drive byte logic over scripted transports, which
/// musl changes nothing of; they run natively and on i686 (a 32-bit `usize`).
const MUSL_TESTS: [&str; 4] = [
    "line_past_what_can_be_allocated",
    "peek_past_what_can_be_allocated",
    "read_fully_timeout_past_what_can_be_allocated",
    "memory",
];

/// The `cargo test` arguments that pick the integration tests built for `target`.
fn integration_tests(target: &str) -> Vec<&'static str> {
    if target.ends_with("-musl") {
        MUSL_TESTS
            .iter()
            .flat_map(|test| ["--test", test])
            .collect()
    } else {
        vec!["--tests"]
    }
}

/// The case counts of `net-io`'s randomized tests on [`OTHER_TARGETS`]: a quarter of their
/// defaults, which the test step runs natively. What differs on those targets (the C library,
/// the width of `usize`) is met by every case alike; the full counts took about 40 of each
/// target's 100 seconds of tests, a quarter about 12.
const OTHER_TARGETS_CASES: [(&str, &str); 5] = [
    ("WRITES_CASES", "250"),
    ("COPIES_CASES", "75"),
    ("RESUME_SEEDS", "500"),
    ("RESUME_BIG_SEEDS", "3"),
    ("WRITE_REVIEW_SEEDS", "125"),
];

/// How long `cargo xtask ci` runs each fuzz target, in seconds: a smoke run of every target
/// (longer campaigns are `cargo xtask fuzz --seconds N`).
const FUZZ_SECONDS: u32 = 10;

/// Whether the standard library for `target` is installed (`rustup target add` installs it).
fn target_installed(target: &str) -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", target])
        .output()
    else {
        return false;
    };
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    out.status.success()
        && std::fs::read_dir(&dir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
        })
}

/// What is missing to build ring's C code for `target`, if anything: musl's compiler wrapper
/// (`musl-gcc`, Debian's `musl-tools`), or a C compiler that makes and links 32-bit programs
/// (Debian's `gcc-multilib`).
fn c_toolchain_missing(target: &str) -> Option<&'static str> {
    let works = |cmd: &mut Command| {
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if target.ends_with("-musl") {
        (!works(Command::new("musl-gcc").arg("--version"))).then_some("musl-gcc (musl-tools)")
    } else if target.starts_with("i686-") {
        let dir = std::env::temp_dir().join(format!("xtask-m32-{}", std::process::id()));
        let made = std::fs::create_dir_all(&dir).is_ok()
            && std::fs::write(dir.join("m.c"), "int main(void) { return 0; }\n").is_ok()
            && works(
                Command::new("cc")
                    .args(["-m32", "m.c", "-o", "m"])
                    .current_dir(&dir),
            );
        let _ = std::fs::remove_dir_all(&dir);
        (!made).then_some("a C compiler for 32-bit programs (gcc-multilib)")
    } else {
        None
    }
}

/// The three libraries' unit and integration tests (on musl [`MUSL_TESTS`] only; the
/// randomized ones with [`OTHER_TARGETS_CASES`]), built for each of [`OTHER_TARGETS`] whose
/// standard library and C compiler are installed (`.ci/run` installs them: the targets through
/// rustup, `musl-tools` and `gcc-multilib` for ring's C code); a target without them is
/// skipped, saying so. Then `net-io` and `net-sockets` checked for each of
/// [`BUILD_ONLY_TARGETS`] whose standard library is installed. Returns what it skipped.
fn other_targets(root: &std::path::Path) -> Result<Vec<String>> {
    let mut skipped = Vec::new();
    let mut skip = |why: String| {
        println!("    SKIPPED {why}");
        skipped.push(why);
    };
    for target in OTHER_TARGETS {
        if !target_installed(target) {
            skip(format!(
                "{target}: its standard library is not installed (rustup target add {target})"
            ));
            continue;
        }
        if let Some(missing) = c_toolchain_missing(target) {
            skip(format!(
                "{target}: ring's C code needs {missing}, not installed"
            ));
            continue;
        }
        let mut cmd = cargo(
            root,
            &[
                "test",
                "--locked",
                "--target",
                target,
                "-p",
                "knet-io",
                "-p",
                "knet-sockets",
                "-p",
                "knet-tls",
                "--lib",
            ],
        );
        cmd.args(integration_tests(target));
        cmd.envs(OTHER_TARGETS_CASES);
        let cases: Vec<String> = OTHER_TARGETS_CASES
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        println!("    {} {}", cases.join(" "), describe(&cmd));
        let status = cmd.status().context("could not start cargo")?;
        if !status.success() {
            bail!("{target}: {status}; command: {}", describe(&cmd));
        }
    }
    for target in BUILD_ONLY_TARGETS {
        if !target_installed(target) {
            skip(format!(
                "{target}: its standard library is not installed (rustup target add {target})"
            ));
            continue;
        }
        let mut cmd = cargo(
            root,
            &[
                "check",
                "--locked",
                "--target",
                target,
                "-p",
                "knet-io",
                "-p",
                "knet-sockets",
                "--lib",
            ],
        );
        println!("    {}", describe(&cmd));
        let status = cmd.status().context("could not start cargo")?;
        if !status.success() {
            bail!("{target}: {status}; command: {}", describe(&cmd));
        }
    }
    Ok(skipped)
}

/// The message of knet-tls's `compile_error!` for a build with neither crypto provider.
const NO_PROVIDER_MESSAGE: &str = "knet-tls needs a crypto provider";

/// Checks what `cargo check` printed (`--message-format=short`) for knet-tls built with
/// neither crypto provider: it failed with the crate's `compile_error!` and no other error, so
/// that a user who turned the default feature off reads one clear message.
fn judge_no_provider_build(succeeded: bool, stderr: &str) -> Result<()> {
    if succeeded {
        bail!("knet-tls built without a crypto provider; its compile_error! did not fire");
    }
    // A diagnostic is `error...` at the start of a line or after its `FILE:LINE:COL: `; cargo's
    // progress lines (`Checking thiserror v2.0.17`) are neither.
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("error") || line.contains(": error"))
        .filter(|line| !line.starts_with("error: could not compile"))
        .collect();
    match errors.as_slice() {
        [only] if only.contains(NO_PROVIDER_MESSAGE) => Ok(()),
        _ => bail!(
            "knet-tls without a crypto provider should fail with its compile_error! alone; \
             it reported:\n{}",
            errors.join("\n")
        ),
    }
}

/// `cargo check` of knet-tls with neither crypto provider, judged by
/// [`judge_no_provider_build`].
fn no_provider_build(root: &std::path::Path) -> Result<()> {
    let mut cmd = cargo(
        root,
        &[
            "check",
            "-p",
            "knet-tls",
            "--no-default-features",
            "--lib",
            "--locked",
            "--message-format=short",
        ],
    );
    println!("    {}", describe(&cmd));
    let out = cmd.output().context("could not start cargo")?;
    judge_no_provider_build(out.status.success(), &String::from_utf8_lossy(&out.stderr))
}

/// The file where the tests note what they skip, removed when dropped.
struct SkipLog(std::path::PathBuf);

impl Drop for SkipLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The last lines of a run whose `total` steps passed: that they passed, and everything that
/// was skipped, `targets` (by the step `other targets`) and `tests` (the lines the tests
/// appended to the skip log), so that a green run says what it did not cover.
fn summary(total: usize, targets: &[String], tests: &str) -> String {
    let tests: Vec<&str> = tests.lines().filter(|l| !l.trim().is_empty()).collect();
    let count = targets.len() + tests.len();
    if count == 0 {
        return format!("==> ci: all {total} steps passed; nothing was skipped");
    }
    let mut text =
        format!("==> ci: all {total} steps passed, but {count} part(s) were SKIPPED, not checked:");
    for target in targets {
        text.push_str(&format!("\n    SKIPPED target {target}"));
    }
    for line in tests {
        text.push_str(&format!("\n    {line}"));
    }
    text
}

/// Runs the steps. `ci` takes no arguments: any is refused before a step runs.
pub(crate) fn run(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!("unexpected argument {arg:?} (usage: cargo xtask ci)");
    }
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
            "tests (unit, integration, doc; examples end to end)",
            cargo(&root, &["test", "--workspace", "--locked"]),
        ),
        // knet-tls's other crypto provider (its `aws-lc-rs` feature, without `ring`): the
        // workspace's build has `ring` only.
        (
            "clippy, knet-tls on aws-lc-rs",
            cargo(
                &root,
                &[
                    "clippy",
                    "-p",
                    "knet-tls",
                    "--no-default-features",
                    "--features",
                    "aws-lc-rs",
                    "--all-targets",
                    "--locked",
                    "--",
                    "-D",
                    "warnings",
                ],
            ),
        ),
        (
            "tests, knet-tls on aws-lc-rs (unit, doc)",
            cargo(
                &root,
                &[
                    "test",
                    "-p",
                    "knet-tls",
                    "--no-default-features",
                    "--features",
                    "aws-lc-rs",
                    "--locked",
                ],
            ),
        ),
        (
            // The interop suites against openssl, curl, Python and GnuTLS, session
            // resumption, and graceful closes dropped at every poll, with knet-tls on
            // aws-lc-rs (which takes `ring`'s place when both are on): its post-quantum key
            // exchange against peers that lack it, and its own record sizes under backpressure.
            "TLS interop, knet-tls on aws-lc-rs",
            cargo(
                &root,
                &[
                    "test",
                    "-p",
                    "net-tests",
                    "--features",
                    "net-tls/aws-lc-rs",
                    "--locked",
                    "--test",
                    "tls_interop",
                    "--test",
                    "tls_gnutls_interop",
                    "--test",
                    "tls_resume",
                    "--test",
                    "tls_session_resumption",
                    "--test",
                    "cancel_every_poll",
                ],
            ),
        ),
        ("docs", {
            let mut c = cargo(&root, &["doc", "--workspace", "--no-deps", "--locked"]);
            c.env("RUSTDOCFLAGS", "-D warnings");
            c
        }),
        (
            // Every crate packages and builds from its package alone (knet-io, knet-sockets and
            // knet-tls are the ones meant for crates.io). `--allow-dirty` lets a developer run
            // this mid-change; CI runs on a clean clone.
            // A package's own manifest has no `[profile]` of the workspace's, so the build that
            // verifies it is told here to skip debug info (it would be ~50 MB per binary).
            "packaging",
            {
                let mut c = cargo(
                    &root,
                    &["package", "--workspace", "--locked", "--allow-dirty"],
                );
                c.env("CARGO_PROFILE_DEV_DEBUG", "false");
                c
            },
        ),
    ];
    let total = steps.len() + 5;
    forget_packaged_sources()?;
    // Every test that skips a part of itself (a tool, a permission or IPv6 this machine lacks)
    // passes; it adds a line here, and the summary lists them.
    let log = SkipLog(std::env::temp_dir().join(format!("xtask-ci-skips-{}", std::process::id())));
    std::fs::write(&log.0, "").with_context(|| format!("could not create {}", log.0.display()))?;
    if crate::SKIP_LOG.set(log.0.clone()).is_err() {
        bail!("ci runs once per process");
    }
    let mut steps = steps;
    for (_, cmd) in &mut steps {
        cmd.env(crate::SKIP_LOG_ENV, &log.0);
    }
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
    println!(
        "==> [{}/{total}] knet-tls without a crypto provider: its compile_error! alone",
        total - 4
    );
    no_provider_build(&root).context("step `knet-tls without a crypto provider` failed")?;
    println!(
        "==> [{}/{total}] other targets: the libraries' tests built for {}; net-io and \
         net-sockets checked for {}",
        total - 3,
        OTHER_TARGETS.join(" and "),
        BUILD_ONLY_TARGETS.join(" and ")
    );
    let skipped_targets = other_targets(&root).context("step `other targets` failed")?;
    // Every fuzz target briefly: hostile lengths and the line rules against the model, the
    // PROXY protocol header parser, address strings, PEM loading and TLS names.
    println!(
        "==> [{}/{total}] fuzz targets, {FUZZ_SECONDS} s each: cargo xtask fuzz --seconds \
         {FUZZ_SECONDS}",
        total - 2
    );
    crate::fuzz::run(&["--seconds".to_owned(), FUZZ_SECONDS.to_string()])
        .context("step `fuzz targets` failed")?;
    println!(
        "==> [{}/{total}] benchmark smoke run: cargo xtask bench --smoke",
        total - 1
    );
    crate::bench::run(&["--smoke".to_owned()]).context("step `benchmark smoke run` failed")?;
    // The interop matrix also runs inside the test step; this run prints it case by case.
    println!("==> [{total}/{total}] TLS interop against openssl and curl: cargo xtask interop");
    crate::interop::run(&[]).context("step `TLS interop` failed")?;
    let tests = std::fs::read_to_string(&log.0)
        .with_context(|| format!("could not read {}", log.0.display()))?;
    println!("{}", summary(total, &skipped_targets, &tests));
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn musl_builds_the_tests_it_names_and_i686_all() {
        use super::{MUSL_TESTS, integration_tests};
        let root = crate::project_root();
        for test in MUSL_TESTS {
            let file = root.join("crates/net-io/tests").join(format!("{test}.rs"));
            assert!(file.exists(), "{}", file.display());
        }
        assert_eq!(
            integration_tests("x86_64-unknown-linux-musl"),
            MUSL_TESTS
                .iter()
                .flat_map(|t| ["--test", t])
                .collect::<Vec<_>>()
        );
        assert_eq!(integration_tests("i686-unknown-linux-gnu"), ["--tests"]);
    }

    #[test]
    fn an_argument_is_refused_before_any_step_runs() {
        // `cargo xtask ci --fast` once ran the whole pipeline (many minutes), the argument unseen.
        let err = super::run(&["--fast".to_owned()]).expect_err("an unknown argument");
        let msg = err.to_string();
        assert!(msg.contains("--fast") && msg.contains("usage"), "{msg}");
    }

    #[test]
    fn a_build_without_a_crypto_provider_must_report_its_compile_error_alone() {
        // Before the stand-in `provider` (net-tls's lib.rs), the build added E0425 beside it.
        let two = "crates/net-tls/src/lib.rs:564:1: error: knet-tls needs a crypto provider: \
                   its `ring` feature (the default) or `aws-lc-rs`\n\
                   crates/net-tls/src/pem.rs:329:28: error[E0425]: cannot find function \
                   `provider` in the crate root: not found in the crate root\n\
                   error: could not compile `knet-tls` (lib) due to 2 previous errors\n";
        let err = super::judge_no_provider_build(false, two).expect_err("two errors");
        assert!(err.to_string().contains("E0425"), "{err}");
        let one = "    Checking thiserror v2.0.17\n\
                   \x20   Checking knet-tls v0.1.0 (/w/crates/net-tls)\n\
                   crates/net-tls/src/lib.rs:564:1: error: knet-tls needs a crypto provider: \
                   its `ring` feature (the default) or `aws-lc-rs`\n\
                   error: could not compile `knet-tls` (lib) due to 1 previous error\n";
        super::judge_no_provider_build(false, one).expect("the compile_error! alone");
        super::judge_no_provider_build(true, "").expect_err("a build that succeeded");
    }

    #[test]
    fn the_summary_of_a_green_run_lists_what_was_skipped() {
        // A test that skipped its namespace part (no `unshare -n` in a container, say) passed,
        // its note hidden by libtest's capture; `ci` ended "all 12 steps passed" all the same.
        let tests = "SKIPPED fault_udp slowed: `unshare -n` is not available\n\
                     SKIPPED ipv6_end_to_end v6: no IPv6 loopback (`::1`)\n";
        let targets = ["i686-unknown-linux-gnu: ring's C code needs gcc-multilib".to_owned()];
        let text = super::summary(13, &targets, tests);
        assert!(text.contains("3 part(s) were SKIPPED"), "{text}");
        assert!(
            text.contains("    SKIPPED fault_udp slowed: `unshare -n`"),
            "{text}"
        );
        assert!(text.contains("    SKIPPED ipv6_end_to_end v6"), "{text}");
        assert!(
            text.contains("    SKIPPED target i686-unknown-linux-gnu"),
            "{text}"
        );
        let clean = super::summary(13, &[], "");
        assert_eq!(clean, "==> ci: all 13 steps passed; nothing was skipped");
    }
}
