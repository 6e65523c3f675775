//! Small review fixes, program side: a client refuses port 0 as its destination, and
//! `starttls-server` greets with an address as RFC 5321 writes one.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;

use net_tests::harness::{Process, port_at_end};

const SOCKETS_CLIENT: &str = env!("CARGO_BIN_EXE_sockets-client");
const TLS_CLIENT: &str = env!("CARGO_BIN_EXE_sockets-client-tls");
const STARTTLS_CLIENT: &str = env!("CARGO_BIN_EXE_starttls-client");
const STARTTLS_SERVER: &str = env!("CARGO_BIN_EXE_starttls-server");
const UDP_ECHO: &str = env!("CARGO_BIN_EXE_udp-echo");
const TCP_PROXY: &str = env!("CARGO_BIN_EXE_tcp-proxy");

/// `program ARGS` is refused as a bad command line: exit status 2, nothing on stdout, one line
/// on stderr, `NAME: ... (see --help)`, that names port 0.
fn assert_refused_port_0(program: &str, args: &[&str]) {
    let finished = Process::run(program, args);
    assert_eq!(finished.status.code(), Some(2), "{args:?}: {finished:#?}");
    assert!(finished.stdout.is_empty(), "{finished:#?}");
    assert_eq!(finished.stderr.len(), 1, "{finished:#?}");
    let line = &finished.stderr[0];
    let name = program.rsplit('/').next().unwrap();
    assert!(line.starts_with(&format!("{name}: ")), "{line}");
    assert!(line.ends_with("(see --help)"), "{line}");
    assert!(line.contains("port 0"), "{name} {args:?}: {line}");
}

/// `sockets-client 127.0.0.1 0` tried to connect to port 0 and failed as a connection does
/// (exit status 1). Port 0 means "any free port" only where a server listens; no server is
/// there, so every client refuses it as a usage error, in both spellings, and `tcp-proxy`
/// refuses it as its UPSTREAM (it still listens on port 0).
#[test]
fn clients_refuse_port_0_as_a_usage_error() {
    for (program, before) in [
        (SOCKETS_CLIENT, &[][..]),
        (TLS_CLIENT, &[]),
        (STARTTLS_CLIENT, &[]),
        (UDP_ECHO, &["client"]),
    ] {
        for host_port in [&["127.0.0.1", "0"][..], &["127.0.0.1:0"], &["[::1]:0"]] {
            let args: Vec<&str> = before.iter().chain(host_port).copied().collect();
            assert_refused_port_0(program, &args);
        }
    }
    assert_refused_port_0(TCP_PROXY, &["127.0.0.1:0", "127.0.0.1:0"]);
}

/// The greeting of `starttls-server HOST 0`.
fn greeting(host: &str) -> String {
    let mut server = Process::start(STARTTLS_SERVER, [host, "0"]);
    let listening = server.stdout_line_where("listening line", |l| l.contains(" is listening at "));
    let port = port_at_end(&listening);
    let address = host.trim_start_matches('[').trim_end_matches(']');
    let stream = TcpStream::connect((address, port)).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    server.kill();
    line
}

/// Listening on `::1`, the server greeted with `220 ::1 ready`: no SMTP domain. RFC 5321
/// (§4.1.3) writes an address in the greeting as an address literal, `[IPv6:::1]` and
/// `[127.0.0.1]`; a host name stays as it is.
#[test]
fn starttls_server_greets_with_an_address_literal() {
    assert_eq!(greeting("::1"), "220 [IPv6:::1] ready\r\n");
    assert_eq!(greeting("[::1]"), "220 [IPv6:::1] ready\r\n");
    assert_eq!(greeting("127.0.0.1"), "220 [127.0.0.1] ready\r\n");
    assert_eq!(greeting("localhost"), "220 localhost ready\r\n");
}
