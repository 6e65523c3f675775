//! Small review fixes, program side: a client refuses port 0 as its destination.

use net_tests::harness::Process;

const SOCKETS_CLIENT: &str = env!("CARGO_BIN_EXE_sockets-client");
const TLS_CLIENT: &str = env!("CARGO_BIN_EXE_sockets-client-tls");
const STARTTLS_CLIENT: &str = env!("CARGO_BIN_EXE_starttls-client");
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
