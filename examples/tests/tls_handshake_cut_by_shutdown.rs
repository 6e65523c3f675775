//! A TLS handshake still under way when the grace period of a shutdown ends is a connection
//! the server cut, as any other: `sockets-server-tls` and `starttls-server` report it once, in
//! `Closed 1 connection still open after the grace period`, and not a second time on stderr
//! as a client whose handshake failed (`No TLS with CLIENT: socket closed`), as their
//! greeting and SMTP sessions are not reported a second time either.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use net_tests::HANG_LIMIT;
use net_tests::harness::Process;

const TLS_SERVER: &str = env!("CARGO_BIN_EXE_sockets-server-tls");
const STARTTLS_SERVER: &str = env!("CARGO_BIN_EXE_starttls-server");

/// `PROGRAM 127.0.0.1 0 EXTRA...` (without `--cert`, a self-signed certificate),
/// its start-up lines read: (program, port).
fn start(program: &str, extra: &[&str]) -> (Process, u16) {
    let mut args = vec!["127.0.0.1", "0"];
    args.extend_from_slice(extra);
    let mut server = Process::start(program, args);
    server.stdout_line_where("the fingerprint", |l| {
        l.starts_with("SHA-256 fingerprint: ")
    });
    let port = server.listening_port();
    (server, port)
}

/// Sends SIGTERM to `server`, whose one client (`client`, never sending a ClientHello) is in
/// its TLS handshake, and checks the shutdown's report: the cut connection counted once on
/// stdout, nothing on stderr, status 0; the client sees the connection end.
fn cut_during_the_handshake(mut server: Process, mut client: TcpStream) {
    server.signal("TERM");
    let finished = server.finish();
    assert_eq!(finished.status.code(), Some(0), "{finished:?}");
    assert_eq!(
        finished.stdout,
        [
            "Shutting down (1 open)",
            "Closed 1 connection still open after the grace period",
            "Server stopped"
        ],
        "{finished:?}"
    );
    assert!(finished.stderr.is_empty(), "{finished:?}");
    client.set_read_timeout(Some(HANG_LIMIT)).unwrap();
    let mut rest = Vec::new();
    // An end or a reset: either way not a wait.
    let end = client.read_to_end(&mut rest);
    assert!(
        !matches!(&end, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "{end:?}"
    );
}

#[test]
fn sockets_server_tls_reports_a_handshake_cut_by_the_grace_period_once() {
    let (mut server, port) = start(TLS_SERVER, &["--grace", "1"]);
    // A client that connects and never starts its handshake (the handshake's own limit is
    // 10 seconds, longer than the grace period).
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    server.stdout_line_where("the client's acceptance", |l| l.starts_with("Accepted "));
    cut_during_the_handshake(server, client);
}

#[test]
fn starttls_server_reports_a_handshake_cut_by_the_grace_period_once() {
    let (mut server, port) = start(STARTTLS_SERVER, &["--grace", "1"]);
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "220 [127.0.0.1] ready\r\n");
    client.write_all(b"STARTTLS\r\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "220 Ready to start TLS\r\n");
    server.stdout_line_where("the client's acceptance", |l| l.starts_with("Accepted "));
    // The server now waits for the ClientHello, which never comes.
    cut_during_the_handshake(server, client);
}

/// The other side of the same rule (`starttls-server`'s docs: "A session in the middle of its
/// TLS handshake finishes it first"): a client told `220 Ready to start TLS` just before the
/// signal still gets its TLS session, and in it the SMTP goodbye, `421 HOST Server is
/// shutting down`, then `close_notify` (a clean end); the server reports nothing on stderr.
#[test]
fn starttls_server_finishes_a_handshake_begun_before_the_signal_then_says_421() {
    use net_tests::harness::path_arg;
    use net_tests::pki::Pki;
    use net_tests::tls::{localhost, rustls_client};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    let pki = Pki::generate();
    let files = pki.temp_files();
    let chain = path_arg(&files.server_chain);
    let key = path_arg(&files.server_key);
    // The grace period (5 s) is longer than the handshake takes.
    let (mut server, port) = start(
        STARTTLS_SERVER,
        &["--cert", chain, "--key", key, "--grace", "5"],
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let plain = runtime.block_on(async {
        let plain = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut plain = BufReader::new(plain);
        let mut line = String::new();
        plain.read_line(&mut line).await.unwrap();
        assert_eq!(line, "220 [127.0.0.1] ready\r\n");
        plain.write_all(b"STARTTLS\r\n").await.unwrap();
        line.clear();
        plain.read_line(&mut line).await.unwrap();
        assert_eq!(line, "220 Ready to start TLS\r\n");
        plain
    });
    server.stdout_line_where("the client's acceptance", |l| l.starts_with("Accepted "));
    server.signal("TERM");
    assert_eq!(server.stdout_line(), "Shutting down (1 open)");
    // The server is shutting down, and waits in the handshake for the ClientHello.
    assert!(plain.buffer().is_empty());
    let rest = runtime.block_on(async {
        let connector = tokio_rustls::TlsConnector::from(rustls_client(&pki.ca));
        let mut tls = connector
            .connect(localhost(), plain.into_inner())
            .await
            .expect("the handshake begun before the signal completes");
        let mut rest = String::new();
        // An end without close_notify is an `UnexpectedEof` error here.
        let read = tokio::time::timeout(HANG_LIMIT, tls.read_to_string(&mut rest))
            .await
            .expect("the server ends the session")
            .map(|_| rest);
        let _ = tls.shutdown().await;
        read.map_err(|e| e.to_string())
    });
    assert_eq!(
        rest,
        Ok("421 [127.0.0.1] Server is shutting down\r\n".to_owned())
    );
    let finished = server.finish();
    assert_eq!(finished.status.code(), Some(0), "{finished:?}");
    assert_eq!(
        finished.stdout.last().map(String::as_str),
        Some("Server stopped")
    );
    assert!(
        finished.stdout[0].starts_with("TLS with 127.0.0.1:"),
        "{finished:?}"
    );
    assert!(finished.stderr.is_empty(), "{finished:?}");
}
