//! A test that skips a part of itself (no network namespace here, no `strace`, no IPv6
//! loopback, no GnuTLS) still passes, so its skip must show where a CI log shows it: on the
//! test binary's stderr even under libtest's output capture (which hides what a passing test
//! prints), and in the file `NET_TESTS_SKIP_LOG` names, from which `cargo xtask ci` lists every
//! skip in its summary.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use net_tests::TempDir;

const CHILD: &str = "NET_TESTS_SKIPS_ARE_REPORTED_CHILD";

#[test]
fn a_skip_shows_in_the_log_of_a_passing_test() {
    if std::env::var_os(CHILD).is_some() {
        // A test on a machine where `unshare` fails: its namespace part is skipped.
        let ran = net_tests::harness::rerun_self_in_own_netns("never_run", "NEVER_SET", "never");
        assert!(ran.is_none(), "the failing `unshare` ran a child");
        return;
    }
    let dir = TempDir::new("skips-are-reported");
    let unshare = dir.write("unshare", "#!/bin/sh\nexit 1\n");
    std::fs::set_permissions(&unshare, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = dir.join("skips.log");
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Run as `cargo test` runs it: output captured, not `--nocapture`.
    let out = net_tests::harness::output(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "a_skip_shows_in_the_log_of_a_passing_test"])
            .env(CHILD, "1")
            .env("PATH", path)
            .env("NET_TESTS_SKIP_LOG", &log),
    )
    .expect("the test binary runs again");
    let printed = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.contains("1 passed"),
        "the child test did not run: {printed}"
    );
    assert!(
        printed.contains("SKIPPED") && printed.contains("unshare -n"),
        "a passing test's skip is not in its output: {printed}"
    );
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains("a_skip_shows_in_the_log_of_a_passing_test")
            && logged.contains("unshare -n")
            && logged.lines().count() == 1,
        "the skip log has not the one skip: {logged:?}"
    );
}
