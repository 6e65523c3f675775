//! Scenarios run in a child process: this test binary again, with an environment variable
//! naming the `#[test]` to run, its address space limited where a scenario needs it (so that a
//! failed allocation that aborts fails the test instead of ending the test run).

use std::process::Command;

/// Runs the scenario `name` (a `#[test]` of this binary that checks [`is_child`] with the same
/// `env`) in a child process, its address space limited to `limit_kib` KiB (`ulimit -v`) if
/// given. The child must pass and print `child {name} passed`; returns its output.
pub(crate) fn run_child(env: &str, name: &str, limit_kib: Option<u64>) -> String {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = match limit_kib {
        Some(kib) => {
            let mut sh = Command::new("sh");
            sh.args(["-c", &format!("ulimit -v {kib} && exec \"$0\" \"$@\"")])
                .arg(exe);
            sh
        }
        None => Command::new(exe),
    };
    let output = command
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(env, name)
        .output()
        .expect("could not start the child test process");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "child {name} failed ({}):\n{text}",
        output.status
    );
    assert!(
        text.contains(&format!("child {name} passed")),
        "child {name} did not run:\n{text}"
    );
    text
}

/// Whether this process is the child that runs the scenario `name` (see [`run_child`]).
pub(crate) fn is_child(env: &str, name: &str) -> bool {
    std::env::var(env).is_ok_and(|v| v == name)
}
