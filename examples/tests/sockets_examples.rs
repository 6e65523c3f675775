//! End-to-end runs of the sample programs against each other, with the exact texts.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

/// A server program running on a free port; killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Starts `program ARGS 127.0.0.1 0` and reads the port from its first line, which ends
    /// in `127.0.0.1:PORT`.
    fn start(program: &str, args: &[&str]) -> Server {
        let mut child = Command::new(program)
            .args(args)
            .args(["127.0.0.1", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start server");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .expect("port in first line");
        Server { child, port }
    }

    fn first_line_prefix(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `program args` with `input` on stdin; returns (status ok, stdout).
fn run_with_input(program: &str, args: &[&str], input: &str) -> (bool, String, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start client");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn sockets_client_talks_to_sockets_server_with_piped_stdin() {
    let server = Server::start(env!("CARGO_BIN_EXE_sockets-server"), &[]);
    assert!(!server.first_line_prefix().is_empty());
    let port = server.port.to_string();
    let (ok, stdout, stderr) = run_with_input(
        env!("CARGO_BIN_EXE_sockets-client"),
        &["127.0.0.1", &port],
        "Alice\nBob\n",
    );
    assert!(ok, "client failed: {stderr}");
    assert_eq!(
        stdout,
        "Please enter your name\nHello, Alice!\nHello, Bob!\nServer closed a connection\n"
    );
    // Empty input: just the prompt, then the server closes.
    let (ok, stdout, _) = run_with_input(
        env!("CARGO_BIN_EXE_sockets-client"),
        &["127.0.0.1", &port],
        "",
    );
    assert!(ok);
    assert_eq!(
        stdout,
        "Please enter your name\nServer closed a connection\n"
    );
    // A line over the limit ends that connection with a message; the server keeps serving.
    let long = format!("{}\n", "a".repeat(9000));
    let (ok, stdout, _) = run_with_input(
        env!("CARGO_BIN_EXE_sockets-client"),
        &["127.0.0.1", &port],
        &long,
    );
    assert!(ok);
    assert!(stdout.contains("Line too long"), "{stdout}");
    let (ok, stdout, _) = run_with_input(
        env!("CARGO_BIN_EXE_sockets-client"),
        &["127.0.0.1", &port],
        "Carol\n",
    );
    assert!(ok);
    assert_eq!(
        stdout,
        "Please enter your name\nHello, Carol!\nServer closed a connection\n"
    );
}

#[test]
fn sockets_client_fails_with_one_line_when_nobody_listens() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    let (ok, stdout, stderr) = run_with_input(
        env!("CARGO_BIN_EXE_sockets-client"),
        &["127.0.0.1", &port],
        "",
    );
    assert!(!ok);
    assert_eq!(stdout, "");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("refused"), "{stderr}");
}

#[test]
fn udp_echo_client_and_server() {
    let server = Server::start(env!("CARGO_BIN_EXE_udp-echo"), &["server"]);
    let port = server.port.to_string();
    let (ok, stdout, stderr) = run_with_input(
        env!("CARGO_BIN_EXE_udp-echo"),
        &["client", "127.0.0.1", &port],
        "one\ntwo\n",
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "one\ntwo\n");
}

#[test]
fn bad_arguments_are_one_line_and_non_zero() {
    for (program, args) in [
        (
            env!("CARGO_BIN_EXE_sockets-server"),
            &["127.0.0.1", "notaport"][..],
        ),
        (env!("CARGO_BIN_EXE_udp-echo"), &["sideways"][..]),
        (env!("CARGO_BIN_EXE_udp-echo"), &[][..]),
    ] {
        let (ok, _, stderr) = run_with_input(program, args, "");
        assert!(!ok, "{program} {args:?}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}
