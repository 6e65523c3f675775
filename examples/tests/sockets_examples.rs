//! End-to-end runs of the sample programs against each other, with the exact texts.

use net_tests::harness::{Process, RunOutput, run_with_input};

const CLIENT: &str = env!("CARGO_BIN_EXE_sockets-client");

/// Starts the server `program ARGS 127.0.0.1 0` and reads its port from the line where it says
/// it is listening.
fn start_server(program: &str, args: &[&str]) -> (Process, u16) {
    let mut server = Process::start(program, args.iter().chain(&["127.0.0.1", "0"]));
    let port = server.listening_port();
    (server, port)
}

#[test]
fn sockets_client_talks_to_sockets_server_with_piped_stdin() {
    let (_server, port) = start_server(env!("CARGO_BIN_EXE_sockets-server"), &[]);
    let port = port.to_string();
    let client = |input: &str| run_with_input(CLIENT, ["127.0.0.1", &port], input);
    let RunOutput {
        status,
        stdout,
        stderr,
    } = client("Alice\nBob\n");
    assert!(status.success(), "client failed: {stderr}");
    assert_eq!(
        stdout,
        "Please enter your name\nHello, Alice!\nHello, Bob!\nServer closed a connection\n"
    );
    // Empty input: just the prompt, then the server closes.
    let RunOutput { status, stdout, .. } = client("");
    assert!(status.success());
    assert_eq!(
        stdout,
        "Please enter your name\nServer closed a connection\n"
    );
    // A line over the limit ends that connection with a message; the server keeps serving.
    let RunOutput { status, stdout, .. } = client(&format!("{}\n", "a".repeat(9000)));
    assert!(status.success());
    assert!(stdout.contains("Line too long"), "{stdout}");
    let RunOutput { status, stdout, .. } = client("Carol\n");
    assert!(status.success());
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
    let RunOutput {
        status,
        stdout,
        stderr,
    } = run_with_input(CLIENT, ["127.0.0.1", &port], "");
    assert!(!status.success());
    assert_eq!(stdout, "");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("refused"), "{stderr}");
}

#[test]
fn udp_echo_client_and_server() {
    let (_server, port) = start_server(env!("CARGO_BIN_EXE_udp-echo"), &["server"]);
    let port = port.to_string();
    let RunOutput {
        status,
        stdout,
        stderr,
    } = run_with_input(
        env!("CARGO_BIN_EXE_udp-echo"),
        ["client", "127.0.0.1", &port],
        "one\ntwo\n",
    );
    assert!(status.success(), "{stderr}");
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
        let RunOutput { status, stderr, .. } = run_with_input(program, args, "");
        assert!(!status.success(), "{program} {args:?}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}
