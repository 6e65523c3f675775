//! Every example program behaves like a command-line tool: `--help` prints the usage and exits
//! 0, a bad argument is one line on stderr and exit status 2, a runtime failure one line and
//! status 1.

use net_tests::harness::{Finished, LineClient, Process, free_port};

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

/// `program ARGS` run to its end.
fn run<S: AsRef<std::ffi::OsStr>>(
    program: &str,
    args: impl IntoIterator<Item = S>,
) -> (std::process::ExitStatus, Vec<String>, Vec<String>) {
    let Finished {
        status,
        stdout,
        stderr,
        ..
    } = Process::run(program, args);
    (status, stdout, stderr)
}

fn name(program: &str) -> &str {
    program.rsplit('/').next().unwrap()
}

#[test]
fn help_prints_usage_with_the_programs_name_and_exits_0() {
    for program in PROGRAMS {
        for flag in ["--help", "-h"] {
            let (status, stdout, stderr) = run(program, [flag]);
            assert_eq!(status.code(), Some(0), "{program} {flag}: {stderr:?}");
            assert!(stderr.is_empty(), "{program} {flag}: {stderr:?}");
            let usage = format!("Usage: {}", name(program));
            assert!(
                stdout.iter().any(|l| l.starts_with(&usage)),
                "{program} {flag}: {stdout:#?}"
            );
        }
    }
    // Even where a host name is expected first: not resolved as a host called "--help".
    let (status, stdout, _) = run(PROGRAMS[0], ["localhost", "--help"]);
    assert_eq!(status.code(), Some(0));
    assert!(stdout.iter().any(|l| l.contains("--idle-timeout <SECS>")));
    // Every server that holds connections has the idle timeout.
    for program in [PROGRAMS[3], PROGRAMS[5], PROGRAMS[8]] {
        let (status, stdout, _) = run(program, ["--help"]);
        assert_eq!(status.code(), Some(0));
        assert!(
            stdout.iter().any(|l| l.contains("--idle-timeout <SECS>")),
            "{program}: {stdout:#?}"
        );
    }
    let (status, stdout, _) = run(PROGRAMS[4], ["server", "--help"]);
    assert_eq!(status.code(), Some(0));
    assert!(
        stdout
            .iter()
            .any(|l| l.starts_with("Usage: udp-echo server"))
    );
}

#[test]
fn bad_arguments_are_one_line_and_exit_2() {
    let server = PROGRAMS[0];
    let cases: &[(&str, &[&str], &str)] = &[
        (
            server,
            &["127.0.0.1", "notaport"],
            // As README.md shows it.
            "invalid value 'notaport' for '[PORT]': invalid digit found in string",
        ),
        (
            server,
            &["127.0.0.1", "70000"],
            "invalid value '70000' for '[PORT]': 70000 is not in 0..=65535",
        ),
        (server, &["a", "1", "extra"], "unexpected argument 'extra'"),
        (server, &["--idle-timeout", "0"], "at least 1 second"),
        (server, &["--idle-timeout", "soon"], "--idle-timeout"),
        (server, &["--max-connections", "0"], "--max-connections"),
        // A negative number is the option's value, refused by the option's own check, not an
        // unknown argument.
        (
            server,
            &["--max-per-ip", "-3"],
            "invalid value '-3' for '--max-per-ip <N>'",
        ),
        (
            server,
            &["--grace", "-1"],
            "invalid value '-1' for '--grace <SECS>': \"-1\" is not a whole number of seconds",
        ),
        (
            server,
            &["127.0.0.1", "-1"],
            "invalid value '-1' for '[PORT]'",
        ),
        (
            server,
            &["--busy-poll", "-5"],
            "invalid value '-5' for '--busy-poll <MICROS>'",
        ),
        (server, &["--grace", "1.5"], "--grace"),
        (server, &["--bogus"], "--bogus"),
        (PROGRAMS[1], &["--port", "1"], "--port"),
        (
            PROGRAMS[1],
            &["--timeout", "0"],
            "'--timeout <SECS>': must be at least 1 second",
        ),
        (PROGRAMS[2], &["--ca", "x", "--insecure"], "exclude"),
        // A client's `--timeout` is not an idle timeout: the message names the option alone.
        (
            PROGRAMS[2],
            &["--timeout", "0"],
            "'--timeout <SECS>': must be at least 1 second",
        ),
        (PROGRAMS[2], &["--timeout", "soon"], "--timeout"),
        (
            PROGRAMS[7],
            &["localhost", "25", "--timeout", "0"],
            "'--timeout <SECS>': must be at least 1 second",
        ),
        (PROGRAMS[3], &["--key", "k.pem"], "--cert"),
        (PROGRAMS[3], &["--idle-timeout", "0"], "at least 1 second"),
        // RFC 7301: a protocol name has 1 to 255 bytes; an empty one is refused, not skipped.
        (PROGRAMS[3], &["--alpn", "h2,,x"], "1 to 255 bytes"),
        (PROGRAMS[3], &["--alpn", ""], "1 to 255 bytes"),
        (PROGRAMS[5], &["--idle-timeout", "0"], "at least 1 second"),
        (PROGRAMS[5], &["--idle-timeout", "soon"], "--idle-timeout"),
        (
            PROGRAMS[8],
            &["127.0.0.1:0", "h:1", "--idle-timeout", "0"],
            "at least 1 second",
        ),
        (PROGRAMS[4], &[], "subcommand"),
        (PROGRAMS[4], &["sideways"], "sideways"),
        (PROGRAMS[5], &["--grace", "x"], "--grace"),
        (PROGRAMS[6], &["--cert", "c.pem"], "--key"),
        (PROGRAMS[7], &["localhost"], "<PORT>"),
        (
            PROGRAMS[7],
            &["localhost", "25", "--ca", "x", "--insecure"],
            "exclude",
        ),
        (PROGRAMS[8], &["127.0.0.1:0"], "<UPSTREAM>"),
        (PROGRAMS[8], &["127.0.0.1", "127.0.0.1:1"], "HOST:PORT"),
        (PROGRAMS[8], &["127.0.0.1:0", "[::1]:x"], "port number"),
        (
            PROGRAMS[8],
            &["127.0.0.1:0", "h:1", "--tls-key", "k"],
            "--tls-cert",
        ),
        (
            PROGRAMS[8],
            &["127.0.0.1:0", "h:1", "--max-connections", "0"],
            "--max-connections",
        ),
    ];
    for &(program, args, needle) in cases {
        let (status, stdout, stderr) = run(program, args);
        assert_eq!(status.code(), Some(2), "{program} {args:?}: {stderr:?}");
        assert!(stdout.is_empty(), "{program} {args:?}: {stdout:?}");
        assert_eq!(stderr.len(), 1, "{program} {args:?}: {stderr:#?}");
        let prefix = format!("{}: ", name(program));
        assert!(stderr[0].starts_with(&prefix), "{stderr:?}");
        assert!(stderr[0].contains(needle), "{program} {args:?}: {stderr:?}");
        assert!(stderr[0].ends_with("(see --help)"), "{stderr:?}");
    }
}

#[test]
fn runtime_failures_are_one_line_and_exit_1() {
    // A port that is taken (servers) or where nobody listens (clients).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let free = free_port().to_string();
    let to_free = format!("127.0.0.1:{free}");
    let on_taken = format!("127.0.0.1:{port}");
    // An IPv6 HOST typed in brackets is named as typed, not as `[[::1]]:PORT`.
    let to_bracketed = format!("cannot connect to [::1]:{free}");
    let cases: &[(&str, Vec<&str>, &str)] = &[
        (PROGRAMS[0], vec!["127.0.0.1", &port], "cannot listen at"),
        (PROGRAMS[5], vec!["127.0.0.1", &port], "cannot listen at"),
        (PROGRAMS[6], vec!["127.0.0.1", &port], "cannot listen at"),
        (
            PROGRAMS[6],
            vec!["--cert", "/nonexistent.pem", "--key", "/nonexistent.key"],
            "nonexistent",
        ),
        (PROGRAMS[7], vec!["127.0.0.1", &free], "cannot connect"),
        (PROGRAMS[1], vec!["[::1]", &free], &to_bracketed),
        (PROGRAMS[8], vec![&on_taken, &to_free], "cannot listen at"),
    ];
    for (program, args, needle) in cases {
        let (status, stdout, stderr) = run(program, args);
        assert_eq!(status.code(), Some(1), "{program} {args:?}: {stderr:?}");
        assert!(stdout.is_empty(), "{program} {args:?}: {stdout:?}");
        assert_eq!(stderr.len(), 1, "{program} {args:?}: {stderr:#?}");
        assert!(
            stderr[0].starts_with(&format!("{}: ", name(program))),
            "{stderr:?}"
        );
        assert!(stderr[0].contains(needle), "{program} {args:?}: {stderr:?}");
    }
    drop(taken);
}

#[test]
fn huge_counts_and_durations_mean_no_limit() {
    // `usize::MAX` and `u64::MAX` seconds, and one past tokio's `Semaphore::MAX_PERMITS` (2^61
    // where `usize` has 64 bits):
    // accepted as "no limit in practice", never a panic (exit 101).
    let huge = usize::MAX.to_string();
    let past_max_permits = ((usize::MAX >> 3) + 1).to_string();

    // tcp-proxy relays a connection to an upstream that says one line and closes.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = format!("127.0.0.1:{}", upstream.local_addr().unwrap().port());
    std::thread::spawn(move || {
        for stream in upstream.incoming().take(2) {
            let _ = std::io::Write::write_all(&mut stream.unwrap(), b"hi\n");
        }
    });
    for cap in [&past_max_permits, &huge] {
        let mut proxy = Process::start(
            PROGRAMS[8],
            ["127.0.0.1:0", &up, "--max-connections", cap.as_str()],
        );
        let mut client = LineClient::connect(proxy.listening_port_after_banner());
        client.expect("hi");
        client.expect_end();
        drop(client);
        let line = proxy.stdout_line();
        assert!(
            line.ends_with("0 bytes up, 3 bytes down"),
            "{cap}: {line:?}"
        );
    }

    // sockets-server with every count and duration at its largest, then a graceful stop.
    let mut server = Process::start(
        PROGRAMS[0],
        [
            "127.0.0.1",
            "0",
            "--max-connections",
            &huge,
            "--max-per-ip",
            &huge,
            "--idle-timeout",
            &u64::MAX.to_string(),
            "--grace",
            &u64::MAX.to_string(),
        ],
    );
    let mut client = LineClient::connect(server.listening_port());
    client.expect("Please enter your name");
    client.send("Ann");
    client.expect("Hello, Ann!");
    server.signal("TERM");
    client.expect("Server is shutting down");
    client.expect_end();
    drop(client);
    let finished = server.finish();
    assert_eq!(finished.status.code(), Some(0), "{finished:?}");
    assert_eq!(
        finished.stdout.last().map(String::as_str),
        Some("Server stopped")
    );
}

#[test]
fn a_closed_stdout_is_a_runtime_failure() {
    // Each server with its stdout a pipe whose read end is closed
    // once it has said where it listens, then what makes it print: a connection (a datagram
    // for udp-echo). `sockets-server | head -1` and a client, in short.
    let upstream = format!("127.0.0.1:{}", free_port());
    let cases: [(&str, Vec<&str>); 6] = [
        (PROGRAMS[0], vec!["127.0.0.1", "0"]),
        (PROGRAMS[3], vec!["127.0.0.1", "0"]),
        (PROGRAMS[4], vec!["server", "127.0.0.1", "0"]),
        (PROGRAMS[5], vec!["127.0.0.1", "0"]),
        (PROGRAMS[6], vec!["127.0.0.1", "0"]),
        (PROGRAMS[8], vec!["127.0.0.1:0", &upstream]),
    ];
    for (program, args) in cases {
        let mut child = std::process::Command::new(program)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        // The reader, and with it the pipe's read end, is dropped at the end of this block.
        let port = {
            let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
            let line = std::io::BufRead::lines(stdout)
                .map(|line| line.unwrap())
                .find(|line| line.contains(" is listening at "))
                .unwrap_or_else(|| panic!("{program}: no listening line"));
            net_tests::harness::port_at_end(&line)
        };
        let stderr = child.stderr.take().unwrap();
        let (lines, stderr_lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let all: Vec<String> = std::io::BufRead::lines(std::io::BufReader::new(stderr))
                .map_while(Result::ok)
                .collect();
            let _ = lines.send(all);
        });
        // stderr ends when the program exits. Until then, one more connection (or datagram)
        // at a time: a process that another test thread starts at that moment holds a copy of
        // the pipe's read end until it execs, and a line written meanwhile does not fail.
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut peers = Vec::new();
        let started = std::time::Instant::now();
        let stderr = loop {
            if program == PROGRAMS[4] {
                udp.send_to(b"ping", ("127.0.0.1", port)).unwrap();
            } else if let Ok(peer) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                peers.push(peer);
            }
            match stderr_lines.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(stderr) => break stderr,
                Err(_) if started.elapsed() < net_tests::HANG_LIMIT => {}
                Err(e) => {
                    let _ = child.kill();
                    panic!("{program}: still running with its stdout closed ({e:?})");
                }
            }
        };
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(1), "{program}: {stderr:#?}");
        assert_eq!(stderr.len(), 1, "{program}: {stderr:#?}");
        let expected = format!("{}: cannot write to stdout: ", name(program));
        assert!(stderr[0].starts_with(&expected), "{program}: {stderr:?}");
    }
}

/// A private key that is not the certificate's: one line naming both files, exit status 1, and
/// nothing printed before it (no certificate description for a certificate that is not used).
#[test]
fn a_key_that_does_not_match_the_certificate_is_one_line_naming_both_files() {
    use net_tests::harness::path_arg;
    let files = net_tests::pki::Pki::generate().temp_files();
    // The client's key: a valid key, just not the server certificate's.
    let (cert, key) = (path_arg(&files.server_chain), path_arg(&files.client_key));
    let cases: [(&str, Vec<&str>); 3] = [
        (
            PROGRAMS[3],
            vec!["127.0.0.1", "0", "--cert", cert, "--key", key],
        ),
        (
            PROGRAMS[6],
            vec!["127.0.0.1", "0", "--cert", cert, "--key", key],
        ),
        (
            PROGRAMS[8],
            vec![
                "127.0.0.1:0",
                "127.0.0.1:1",
                "--tls-cert",
                cert,
                "--tls-key",
                key,
            ],
        ),
    ];
    for (program, args) in cases {
        let finished = Process::run(program, &args);
        assert_eq!(finished.status.code(), Some(1), "{finished:?}");
        assert_eq!(
            finished.failure_line(),
            format!(
                "{}: the private key in {key} does not match the certificate in {cert}",
                name(program)
            )
        );
    }
}

/// A program whose stderr is gone (a pipe whose read end is closed: `2>&1 | head -1` after
/// the first line) exits with the status it would have had, or 1 when it was still going,
/// never 101 (the panic of `eprintln!`): the usage error 2, the runtime failure 1, and the
/// TLS client, whose `--insecure` warning is its first line on stderr, 1.
#[test]
fn a_closed_stderr_is_a_failure_not_a_panic() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let free = free_port().to_string();
    let cases: [(&str, Vec<&str>, i32); 3] = [
        (PROGRAMS[0], vec!["--bogus"], 2),
        (PROGRAMS[0], vec!["127.0.0.1", &port], 1),
        (PROGRAMS[2], vec!["--insecure", "127.0.0.1", &free], 1),
    ];
    for (program, args, expected) in cases {
        let mut child = std::process::Command::new(program)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        drop(child.stderr.take());
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > net_tests::HANG_LIMIT {
                let _ = child.kill();
                panic!("{program} {args:?}: still running");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(expected), "{program} {args:?}");
    }
    drop(taken);
}
