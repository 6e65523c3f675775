//! `udp-echo server` stops on SIGINT and SIGTERM as the other example servers do: it prints
//! `Server stopped` and exits 0 (before, SIGTERM killed it with no word, status 143 in a shell,
//! and SIGINT did nothing when it ran where SIGINT is ignored, as in a shell's background job).

use std::net::UdpSocket;
use std::time::Duration;

use net_tests::harness::Process;

const UDP_ECHO: &str = env!("CARGO_BIN_EXE_udp-echo");

/// Sends one datagram to the server at `port` and checks that it comes back.
fn echoed(port: u16) {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client.send_to(b"ping", ("127.0.0.1", port)).unwrap();
    let mut buffer = [0; 16];
    let (size, _) = client.recv_from(&mut buffer).expect("the echo");
    assert_eq!(&buffer[..size], b"ping");
}

/// Starts the server, checks it echoes, sends it `signal` and checks how it ended.
fn stops_on(mut server: Process, signal: &str) {
    let port = server.listening_port();
    echoed(port);
    server.stdout_line_where("the echo", |l| l.starts_with("Echoing 4 bytes to "));
    server.signal(signal);
    let finished = server.finish();
    assert_eq!(finished.status.code(), Some(0), "{finished:?}");
    assert_eq!(
        finished.stdout.last().map(String::as_str),
        Some("Server stopped"),
        "{finished:?}"
    );
}

#[test]
fn sigterm_stops_the_server_with_status_0() {
    stops_on(
        Process::start(UDP_ECHO, ["server", "127.0.0.1", "0"]),
        "TERM",
    );
}

#[test]
fn sigint_stops_the_server_with_status_0() {
    stops_on(
        Process::start(UDP_ECHO, ["server", "127.0.0.1", "0"]),
        "INT",
    );
}

/// A shell starts a background job with SIGINT ignored; the server catches it all the same, as
/// the other example servers do.
#[test]
fn sigint_stops_the_server_where_sigint_was_ignored() {
    let script = format!("trap '' INT; exec '{UDP_ECHO}' server 127.0.0.1 0");
    stops_on(Process::start("sh", ["-c", script.as_str()]), "INT");
}
