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

/// `--busy-poll 0`: the same conversation, the server's selector not busy-polling.
#[test]
fn sockets_server_without_busy_polling_talks_to_sockets_client() {
    let (_server, port) = start_server(env!("CARGO_BIN_EXE_sockets-server"), &["--busy-poll", "0"]);
    let RunOutput {
        status,
        stdout,
        stderr,
    } = run_with_input(CLIENT, ["127.0.0.1", &port.to_string()], "Alice\nBob\n");
    assert!(status.success(), "client failed: {stderr}");
    assert_eq!(
        stdout,
        "Please enter your name\nHello, Alice!\nHello, Bob!\nServer closed a connection\n"
    );
}

/// `sockets-server ARGS` with a client that has talked to it and is now silent, from 100 ms
/// after the client's last answer (a 200 µs window is long past by then).
fn server_with_a_silent_client(args: &[&str]) -> (Process, net_tests::harness::LineClient) {
    let (server, port) = start_server(env!("CARGO_BIN_EXE_sockets-server"), args);
    let mut client = net_tests::harness::LineClient::connect(port);
    client.expect("Please enter your name");
    for name in ["Alice", "Bob", "Carol"] {
        client.send(name);
        client.expect(&format!("Hello, {name}!"));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    (server, client)
}

/// The CPU time `sockets-server ARGS` spends in 1 s with a client connected and silent.
fn cpu_with_a_silent_client(args: &[&str]) -> std::time::Duration {
    let (server, mut client) = server_with_a_silent_client(args);
    let before = net_tests::probe::process_cpu(server.id());
    std::thread::sleep(std::time::Duration::from_secs(1));
    let spent = net_tests::probe::process_cpu(server.id()) - before;
    // Still serving.
    client.send("Dave");
    client.expect("Hello, Dave!");
    spent
}

/// As shipped, `sockets-server` busy-polls (`--busy-poll` 200 µs by default), and it spends
/// next to no CPU time once its clients fall silent: under 50 ms in 1 s with a client
/// connected and silent (a selector that kept polling spends most of the second: see the next
/// test).
#[test]
fn sockets_server_busy_polls_by_default_and_spends_next_to_no_cpu_while_its_clients_are_silent() {
    let help = run_with_input(env!("CARGO_BIN_EXE_sockets-server"), ["--help"], "");
    let option = help
        .stdout
        .split("\n  -")
        .find(|option| option.contains("--busy-poll"))
        .expect("--busy-poll in --help");
    assert!(option.contains("[default: 200]"), "{option}");
    let spent = cpu_with_a_silent_client(&[]);
    assert!(
        spent < std::time::Duration::from_millis(50),
        "{spent:?} of CPU time in 1 s with its client silent"
    );
}

/// `--busy-poll` reaches the selector, and the measurement above sees polling: with a window
/// longer than the test (60 s), the wait of the silent client's read keeps a thread polling,
/// and the server spends over 100 ms of CPU time while its client is silent (a server that
/// does not poll spends next to none, see above). That takes about 100 ms where a core is
/// free; the spinner gives its core away to any other runnable thread (`sched_yield`), so on
/// a machine busy with other tests it gets far less than a core (10 to 70 ms of CPU time in
/// 1 s were seen), and the test waits for the 100 ms for up to 20 s.
#[test]
fn sockets_server_with_a_window_longer_than_the_silence_keeps_polling() {
    const ENOUGH: std::time::Duration = std::time::Duration::from_millis(100);
    const LIMIT: std::time::Duration = std::time::Duration::from_secs(20);
    let (server, mut client) = server_with_a_silent_client(&["--busy-poll", "60000000"]);
    let before = net_tests::probe::process_cpu(server.id());
    let started = std::time::Instant::now();
    let spent = loop {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let spent = net_tests::probe::process_cpu(server.id()) - before;
        if spent > ENOUGH || started.elapsed() > LIMIT {
            break spent;
        }
    };
    assert!(
        spent > ENOUGH,
        "{spent:?} of CPU time in {:?} with its client silent",
        started.elapsed()
    );
    // Still serving.
    client.send("Dave");
    client.expect("Hello, Dave!");
}

#[test]
fn sockets_client_fails_with_one_line_when_nobody_listens() {
    // Held, never listening: refused for as long as the run takes (a dropped listener's port
    // can be anyone's again, or still listen in a parallel test's child until its `exec`).
    let nobody = net_tests::loopback::RefusingPort::new();
    let port = nobody.port().to_string();
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

/// A runtime failure is one line that says what failed, then why (`PROGRAM: what failed: why`,
/// as `examples::cli` promises), also when the failure comes from the server or from stdin.
#[test]
fn a_failure_after_connecting_names_what_failed() {
    // A server whose first line is over the client's 64 KiB limit.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::Write;
        let (mut stream, _) = listener.accept().unwrap();
        let mut line = vec![b'y'; 70_000];
        line.push(b'\n');
        // The client may leave before it has read it all.
        let _ = stream.write_all(&line);
        let _ = std::io::copy(&mut stream, &mut std::io::sink());
    });
    let RunOutput {
        status,
        stdout,
        stderr,
    } = run_with_input(CLIENT, ["127.0.0.1", &port.to_string()], "");
    server.join().unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "sockets-client: reading from 127.0.0.1:{port}: line longer"
        )),
        "{stderr}"
    );

    // A line of stdin over the largest datagram.
    let (_server, port) = start_server(env!("CARGO_BIN_EXE_udp-echo"), &["server"]);
    let RunOutput {
        status,
        stdout,
        stderr,
    } = run_with_input(
        env!("CARGO_BIN_EXE_udp-echo"),
        ["client", "127.0.0.1", &port.to_string()],
        &format!("{}\n", "x".repeat(65_508)),
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("udp-echo: reading stdin: line longer"),
        "{stderr}"
    );
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

/// Over IPv6 a datagram carries up to 65,527 bytes (`MAX_DATAGRAM_SIZE_V6`), 20 more than over
/// IPv4: the client sends a line of that size to an IPv6 server, and refuses only a longer one.
#[test]
fn udp_echo_client_sends_the_largest_ipv6_datagram() {
    let mut server = Process::start(env!("CARGO_BIN_EXE_udp-echo"), ["server", "::1", "0"]);
    let port = server.listening_port().to_string();
    let largest = "x".repeat(65_527);
    let RunOutput {
        status,
        stdout,
        stderr,
    } = run_with_input(
        env!("CARGO_BIN_EXE_udp-echo"),
        ["client", "::1", &port],
        &format!("{largest}\n"),
    );
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout, format!("{largest}\n"));

    let RunOutput {
        status,
        stdout,
        stderr,
    } = run_with_input(
        env!("CARGO_BIN_EXE_udp-echo"),
        ["client", "::1", &port],
        &format!("{largest}x\n"),
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stdout, "");
    assert!(
        stderr.starts_with("udp-echo: reading stdin: line longer than the limit of 65527 bytes"),
        "{stderr}"
    );
}

/// The client sends a line's bytes as they are, not as text: bytes that are not UTF-8 are not
/// turned into U+FFFD (three bytes each), so a line of any bytes within the limit goes out as
/// one datagram of its own length.
#[test]
fn udp_echo_client_sends_the_bytes_of_a_line_that_is_not_utf8() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let (mut server, port) = start_server(env!("CARGO_BIN_EXE_udp-echo"), &["server"]);
    let mut input = b"a\xffb\r\n".to_vec();
    input.extend(std::iter::repeat_n(0xff, 30_000));
    input.push(b'\n');
    let mut client = Command::new(env!("CARGO_BIN_EXE_udp-echo"))
        .args(["client", "127.0.0.1", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = client.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = client.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    for size in [3, 30_000] {
        let wanted = format!("Echoing {size} bytes to ");
        let line = server.stdout_line();
        assert!(line.starts_with(&wanted), "{line:?}, not {wanted:?}");
    }
}

/// With `--timeout SECS`, a server that says nothing for SECS ends the client with status 1 and
/// one line that says so, instead of keeping it waiting for ever (here after its stdin ended
/// and it half-closed, as `printf 'Alice\n' | sockets-client` does).
#[test]
fn sockets_client_gives_up_on_a_silent_server_after_its_timeout() {
    // The kernel takes the connection (and the client's line) into the backlog; nobody
    // accepts it or says anything.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let started = std::time::Instant::now();
    let RunOutput {
        status,
        stdout,
        stderr,
    } = run_with_input(CLIENT, ["127.0.0.1", &port, "--timeout", "1"], "Alice\n");
    let elapsed = started.elapsed();
    drop(silent);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        format!(
            "sockets-client: timed out: nothing from 127.0.0.1:{port} for 1 s (see --timeout)\n"
        )
    );
    assert!(
        elapsed < std::time::Duration::from_secs(8),
        "took {elapsed:?}"
    );
}
