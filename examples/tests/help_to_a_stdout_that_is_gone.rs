//! `--help` and `--version` with a stdout that takes nothing (a full device, a pipe whose
//! reader is gone): the usage was not printed, so the program must not exit 0 as if it had.
//! As for every other line the programs print (`examples::cli`), it is a runtime failure: one
//! line on stderr, `PROGRAM: cannot write to stdout: ...`, and exit status 1.

use std::process::{Command, Stdio};

const PROGRAMS: [&str; 9] = [
    env!("CARGO_BIN_EXE_sockets-server"),
    env!("CARGO_BIN_EXE_sockets-client"),
    env!("CARGO_BIN_EXE_sockets-client-tls"),
    env!("CARGO_BIN_EXE_sockets-server-tls"),
    env!("CARGO_BIN_EXE_udp-echo"),
    env!("CARGO_BIN_EXE_chat-server"),
    env!("CARGO_BIN_EXE_starttls-server"),
    env!("CARGO_BIN_EXE_starttls-client"),
    env!("CARGO_BIN_EXE_tcp-proxy"),
];

/// Runs `program args` with `stdout`; its exit status and stderr.
fn run(program: &str, args: &[&str], stdout: Stdio) -> (Option<i32>, String) {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

fn assert_failed(program: &str, args: &[&str], (code, stderr): (Option<i32>, String), why: &str) {
    let name = program.rsplit('/').next().unwrap();
    assert_eq!(code, Some(1), "{name} {args:?} {why}: {stderr:?}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{name} {args:?} {why}: {stderr:?}");
    assert!(
        lines[0].starts_with(&format!("{name}: cannot write to stdout: ")),
        "{name} {args:?} {why}: {stderr:?}"
    );
}

#[test]
fn help_and_version_to_a_full_stdout_fail_with_status_1() {
    for program in PROGRAMS {
        for args in [&["--help"][..], &["-h"], &["--version"]] {
            let full = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .expect("/dev/full");
            let result = run(program, args, Stdio::from(full));
            assert_failed(program, args, result, "to /dev/full");
        }
    }
    // A subcommand's help too.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let result = run(PROGRAMS[4], &["client", "--help"], Stdio::from(full));
    assert_failed(PROGRAMS[4], &["client", "--help"], result, "to /dev/full");
}

#[test]
fn help_to_a_pipe_nobody_reads_fails_with_status_1() {
    for program in PROGRAMS {
        // The reading end is closed before the program starts: its write gets EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let result = run(program, &["--help"], Stdio::from(writer));
        assert_failed(program, &["--help"], result, "to a closed pipe");
    }
}
