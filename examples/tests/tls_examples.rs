//! End-to-end runs of `sockets-server-tls` and `sockets-client-tls`, against each other,
//! against a TLS HTTP server made here with net-tls, and against GnuTLS (`gnutls-cli`,
//! `gnutls-serv --http`; skipped without them). Certificates come from the test kit's PKI,
//! written to a fresh temporary directory that is removed afterwards.

use net_io::LineEnding;
use net_sockets::SelectorManager;
use net_tests::TempDir;
use net_tests::harness::{Process, free_port, gnutls_present, path_arg, port_at_end};
use net_tests::pki::{Pki, PkiFiles};
use net_tests::tls::TlsTestServer;

const SERVER: &str = env!("CARGO_BIN_EXE_sockets-server-tls");
const CLIENT: &str = env!("CARGO_BIN_EXE_sockets-client-tls");

/// A test CA and a server certificate it issued for `localhost` only (no IP address), with
/// its PEM files.
fn pki() -> (Pki, PkiFiles) {
    let pki = Pki::with_server_names(&["localhost"]);
    let files = pki.temp_files();
    (pki, files)
}

/// `sockets-server-tls ARGS 127.0.0.1 0`, its start-up lines read: (program, port,
/// fingerprint printed).
fn start_server(args: &[&str]) -> (Process, u16, String) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["127.0.0.1", "0"]);
    let mut server = Process::start(SERVER, &all);
    let certificate = server.stdout_line();
    assert!(certificate.starts_with("Certificate: "), "{certificate}");
    let fingerprint = server
        .stdout_line()
        .strip_prefix("SHA-256 fingerprint: ")
        .expect("fingerprint line")
        .to_owned();
    let listening = server.stdout_line();
    assert!(
        listening.starts_with("Server is listening at 127.0.0.1:"),
        "{listening}"
    );
    let port = port_at_end(&listening);
    (server, port, fingerprint)
}

/// Reads the client's greeting lines: the server's prompt and one answer per request line.
fn assert_greeted(client: &mut Process, port: u16) {
    for expected in [
        "Please enter your name".to_owned(),
        "Hello, GET / HTTP/1.1!".to_owned(),
        format!("Hello, Host: localhost:{port}!"),
        "Hello, Connection: close!".to_owned(),
        "Hello, !".to_owned(),
    ] {
        assert_eq!(client.stdout_line(), expected);
    }
}

#[test]
fn tls_client_and_server_with_a_ca_issued_certificate() {
    let (pki, files) = pki();
    let (mut server, port, fingerprint) = start_server(&[
        "--cert",
        path_arg(&files.server_chain),
        "--key",
        path_arg(&files.server_key),
    ]);
    let leaf_fingerprint = examples::sha256_fingerprint(pki.server.cert_der());
    assert_eq!(fingerprint, leaf_fingerprint);
    assert_eq!(fingerprint.len(), 32 * 3 - 1);

    let port_text = port.to_string();
    let mut client = Process::start(
        CLIENT,
        ["localhost", &port_text, "--ca", path_arg(&files.ca)],
    );
    assert_greeted(&mut client, port);
    let connected = client.stderr_line();
    assert!(
        connected.starts_with(&format!("Connected to 127.0.0.1:{port}: TLS 1.3, TLS13_")),
        "{connected}"
    );
    assert!(
        connected.ends_with(&format!("no ALPN, peer certificate SHA-256 {fingerprint}")),
        "{connected}"
    );

    let accepted = server.stdout_line();
    assert!(accepted.starts_with("Accepted 127.0.0.1:"), "{accepted}");
    let session = server.stdout_line();
    assert!(
        session.starts_with(&format!("TLS with {}: TLS 1.3, TLS13_", &accepted[9..])),
        "{session}"
    );
    // Both say which key exchange the handshake made, the same one: with net-tls's `ring`
    // provider X25519, with `aws-lc-rs` the post-quantum hybrid.
    let exchange = |line: &str| {
        let (_, rest) = line
            .split_once(", key exchange ")
            .unwrap_or_else(|| panic!("no key exchange in {line:?}"));
        rest.split(',').next().unwrap().to_owned()
    };
    assert_eq!(exchange(&connected), exchange(&session));
    let expected = if cfg!(feature = "aws-lc-rs") {
        "X25519MLKEM768"
    } else {
        "X25519"
    };
    assert_eq!(exchange(&session), expected, "{session}");

    // The server waits for more lines, as sockets-server does; the client for the end of the
    // response. Killing the server ends the TCP stream without close_notify: the client reports
    // the truncation and fails.
    server.kill();
    let failure = client.finish();
    let failure = failure.failure_line();
    assert!(failure.contains("close_notify"), "{failure}");
}

#[test]
fn self_signed_server_refuses_nobody_but_only_insecure_clients_get_through() {
    let (mut server, port, fingerprint) = start_server(&[]);
    let port_text = port.to_string();

    // Verification is on by default: the self-signed certificate is not trusted.
    let refused = Process::start(CLIENT, ["localhost", &port_text]).finish();
    let refused = refused.failure_line();
    assert!(
        refused.starts_with(&format!(
            "sockets-client-tls: no TLS with localhost:{port}: "
        )),
        "{refused}"
    );
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    let accepted = server.stdout_line();
    let failed = server.stderr_line();
    assert_eq!(
        failed,
        format!(
            "No TLS with {}: tls handshake failed: received fatal alert: UnknownCA",
            &accepted["Accepted ".len()..]
        )
    );

    // The server keeps serving: an --insecure client gets through, warned, and sees the
    // fingerprint the server printed.
    let mut client = Process::start(CLIENT, ["localhost", &port_text, "--insecure"]);
    assert_greeted(&mut client, port);
    let warning = client.stderr_line();
    assert!(warning.starts_with("warning: --insecure"), "{warning}");
    let connected = client.stderr_line();
    assert!(
        connected.ends_with(&format!("peer certificate SHA-256 {fingerprint}")),
        "{connected}"
    );
    server.kill();
    assert!(!client.finish().status.success());
}

#[test]
fn tls_client_prints_an_http_response_and_verifies_the_host_name() {
    let (pki, files) = pki();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = pki.server_config().build().unwrap();
    let _guard = runtime.enter();
    let selector = SelectorManager::new();
    const RESPONSE: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n";
    // Serves one HTTP exchange per connection; reports each request's raw bytes to the test.
    let mut server = runtime.block_on(TlsTestServer::start(
        &selector,
        config,
        |mut tls, reporter| async move {
            let mut input = tls.open_read_channel().unwrap();
            let mut output = tls.open_write_channel(false).unwrap();
            let mut request = String::new();
            loop {
                let mut line = String::new();
                match input.read_line(1024, LineEnding::Default).await {
                    Ok(Some(l)) => line.push_str(&l),
                    _ => break,
                }
                request.push_str(&line);
                request.push('\n');
                if line.is_empty() {
                    break;
                }
            }
            reporter.report(request);
            output.write_string_utf8(RESPONSE).await.unwrap();
            output.flush_and_close().await.unwrap();
            tls.close();
        },
    ));
    let port = server.port();

    let port_text = port.to_string();
    let ca = path_arg(&files.ca);
    let exit = Process::start(CLIENT, ["localhost", &port_text, "--ca", ca]).finish();
    let (stdout, stderr) = (exit.stdout, exit.stderr);
    assert!(exit.status.success(), "{stderr:?}");
    assert_eq!(
        stdout,
        [
            "HTTP/1.1 200 OK\r",
            "Content-Type: text/plain\r",
            "Content-Length: 6\r",
            "Connection: close\r",
            "\r",
            "hello"
        ]
    );
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(
        stderr[0].starts_with("Connected to 127.0.0.1:"),
        "{stderr:?}"
    );
    assert_eq!(
        runtime.block_on(server.next()).unwrap(),
        format!("GET / HTTP/1.1\nHost: localhost:{port}\nConnection: close\n\n")
    );

    // The certificate names only localhost: connecting by address fails verification.
    let refused = Process::start(CLIENT, ["127.0.0.1", &port_text, "--ca", ca]).finish();
    let refused = refused.failure_line();
    assert!(
        refused.contains("certificate not valid for name \"127.0.0.1\""),
        "{refused}"
    );
    selector.close();
}

#[test]
fn bad_arguments_and_files_are_one_line_and_non_zero() {
    let dir = TempDir::new("tls-examples");
    let missing = dir.join("missing.pem");
    let missing = path_arg(&missing);
    let empty = dir.write("empty.pem", "");
    let empty = path_arg(&empty);
    let cases: [(&str, Vec<&str>, &str); 7] = [
        (CLIENT, vec!["--ca", missing], "missing.pem"),
        (CLIENT, vec!["--ca", empty], "empty.pem"),
        (CLIENT, vec!["--ca", empty, "--insecure"], "exclude"),
        (CLIENT, vec!["--bogus"], "--bogus"),
        (SERVER, vec!["--cert", empty], "--key"),
        (
            SERVER,
            vec!["--cert", missing, "--key", missing],
            "missing.pem",
        ),
        (SERVER, vec!["--client-ca", missing], "missing.pem"),
    ];
    for (program, args, needle) in cases {
        let mut all = args.clone();
        // A server listens on any free port; a client's destination cannot be port 0 (that
        // is a usage error of its own), so it gets a port nobody listens on.
        let port = if program == CLIENT { "9" } else { "0" };
        all.extend(["127.0.0.1", port]);
        let failure = Process::start(program, &all).finish();
        let failure = failure.failure_line();
        assert!(failure.contains(needle), "{program} {args:?}: {failure}");
    }
}

/// With `--idle-timeout 1`, a client that connects and never starts its handshake and one
/// that completes it and then says nothing are both closed (the first well before the
/// handshake's own 10-second limit), while a client that talks is served.
#[test]
fn silent_clients_are_closed_after_the_idle_timeout_while_a_talking_one_is_served() {
    use std::io::Read;
    use std::time::{Duration, Instant};

    use net_tests::HANG_LIMIT;
    use net_tests::tls::{localhost, rustls_client};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    let (pki, files) = pki();
    let (mut server, port, _) = start_server(&[
        "--cert",
        path_arg(&files.server_chain),
        "--key",
        path_arg(&files.server_key),
        "--idle-timeout",
        "1",
    ]);
    // No handshake at all: how long until the server closes the connection.
    let mut mute = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    mute.set_read_timeout(Some(HANG_LIMIT)).unwrap();
    let mute_address = mute.local_addr().unwrap().to_string();
    let mute = std::thread::spawn(move || {
        let started = Instant::now();
        let end = mute.read_to_end(&mut Vec::new());
        (end.map_err(|e| e.kind()), started.elapsed())
    });

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let connector = tokio_rustls::TlsConnector::from(rustls_client(&pki.ca));
    let greeted = || async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let address = tcp.local_addr().unwrap().to_string();
        let tls = connector.connect(localhost(), tcp).await.unwrap();
        let mut tls = BufReader::new(tls);
        let mut prompt = String::new();
        tls.read_line(&mut prompt).await.unwrap();
        assert_eq!(prompt, "Please enter your name\n");
        (tls, address)
    };
    let ((mut silent, silent_address), mut talker) = runtime.block_on(async {
        let silent = greeted().await;
        (silent, greeted().await.0)
    });

    // The talker sends a line every 300 ms for 2.1 s: more than the idle timeout in all,
    // never that long silent (the pace is the behaviour here).
    let started = Instant::now();
    runtime.block_on(async {
        for i in 0..7 {
            let mut answer = String::new();
            talker
                .write_all(format!("round {i}\n").as_bytes())
                .await
                .unwrap();
            talker.flush().await.unwrap();
            talker.read_line(&mut answer).await.unwrap();
            assert_eq!(answer, format!("Hello, round {i}!\n"));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    assert!(started.elapsed() > Duration::from_secs(2));

    // The silent session was closed, and the server said why.
    let rest = runtime.block_on(async {
        let mut rest = Vec::new();
        tokio::time::timeout(HANG_LIMIT, silent.read_to_end(&mut rest))
            .await
            .map(|_| rest)
    });
    assert_eq!(
        rest.as_deref().ok(),
        Some(&[][..]),
        "the silent session was not closed"
    );
    let ended = server.stdout_line_where("the silent session's end", |l| {
        l.starts_with(&format!("Connection with {silent_address} ended"))
    });
    assert!(ended.ends_with("timed out"), "{ended}");
    // The mute one within a few seconds, not the handshake's 10.
    let (end, took) = mute.join().unwrap();
    assert!(
        !matches!(
            end,
            Err(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
        ),
        "the mute client was not closed: {end:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    let failed = server.stderr_line();
    assert!(
        failed.starts_with(&format!("No TLS with {mute_address}: ")),
        "{failed}"
    );
    runtime.block_on(async {
        talker.write_all(b"still here\n").await.unwrap();
        let mut answer = String::new();
        talker.read_line(&mut answer).await.unwrap();
        assert_eq!(answer, "Hello, still here!\n");
    });
}

/// SIGTERM, as for `sockets-server`: the line already sent is answered, the client is told
/// `Server is shutting down` and gets the TLS `close_notify` (a clean end, not a cut), new
/// clients are refused, and once the client has left the server prints `Server stopped` and
/// exits 0. A client that stays is cut at the end of `--grace`.
#[test]
fn sigterm_says_goodbye_with_close_notify_and_exits_0() {
    use std::time::{Duration, Instant};

    use net_tests::HANG_LIMIT;
    use net_tests::tls::{localhost, rustls_client};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    let (pki, files) = pki();
    let (cert, key) = (path_arg(&files.server_chain), path_arg(&files.server_key));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let connector = tokio_rustls::TlsConnector::from(rustls_client(&pki.ca));
    let greeted = |port: u16| {
        runtime.block_on(async {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let mut tls = BufReader::new(connector.connect(localhost(), tcp).await.unwrap());
            let mut prompt = String::new();
            tls.read_line(&mut prompt).await.unwrap();
            assert_eq!(prompt, "Please enter your name\n");
            tls
        })
    };
    let lines_then_end = |tls: &mut BufReader<_>| {
        runtime.block_on(async {
            let mut rest = String::new();
            tokio::time::timeout(HANG_LIMIT, tls.read_to_string(&mut rest))
                .await
                .expect("the server ends the session")
                .map(|_| rest)
                .map_err(|e: std::io::Error| e.to_string())
        })
    };

    let (mut server, port, _) = start_server(&["--cert", cert, "--key", key]);
    let mut client = greeted(port);
    server.stdout_line_where("the session", |l| l.starts_with("TLS with "));
    runtime.block_on(async {
        client.write_all(b"Alice\n").await.unwrap();
        client.flush().await.unwrap();
        // The line is answered before the signal, so it is in the server's hands.
        let mut answer = String::new();
        client.read_line(&mut answer).await.unwrap();
        assert_eq!(answer, "Hello, Alice!\n");
        client.write_all(b"Bob\n").await.unwrap();
        client.flush().await.unwrap();
    });
    server.signal("TERM");
    // A clean end (close_notify): an end without it is an `UnexpectedEof` error here.
    assert_eq!(
        lines_then_end(&mut client),
        Ok("Hello, Bob!\nServer is shutting down\n".to_owned())
    );
    assert_eq!(server.stdout_line(), "Shutting down (1 open)");
    let refused = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    // The client leaves (its own close_notify): the server stops without the grace period.
    runtime.block_on(async { client.shutdown().await.unwrap() });
    drop(client);
    let finished = server.finish();
    assert_eq!(finished.status.code(), Some(0), "{finished:?}");
    assert_eq!(finished.stdout, ["Server stopped"]);
    assert!(finished.stderr.is_empty(), "{finished:?}");

    // A client that does not leave is told, then cut after --grace.
    let (mut server, port, _) = start_server(&["--cert", cert, "--key", key, "--grace", "1"]);
    let mut stubborn = greeted(port);
    server.stdout_line_where("the session", |l| l.starts_with("TLS with "));
    let signalled = Instant::now();
    server.signal("INT");
    let told = runtime.block_on(async {
        let mut line = String::new();
        stubborn.read_line(&mut line).await.unwrap();
        line
    });
    assert_eq!(told, "Server is shutting down\n");
    let finished = server.finish();
    assert!(signalled.elapsed() >= Duration::from_millis(900));
    assert_eq!(finished.status.code(), Some(0), "{finished:?}");
    assert_eq!(
        finished.stdout,
        [
            "Shutting down (1 open)",
            "Closed 1 connection still open after the grace period",
            "Server stopped"
        ]
    );
    assert!(finished.stderr.is_empty(), "{finished:?}");
}

/// `--timeout SECS` bounds every wait of the client: a server that takes the TCP connection
/// but never starts TLS fails it after SECS (not the handshake's own 10 seconds), and one that
/// completes the handshake, takes the request and then says nothing fails it after SECS of
/// silence, instead of keeping it waiting for ever; each with status 1 and one line that says
/// so. A client that gives up still ends its TLS session cleanly (`close_notify`): the server
/// sees a normal end, not a truncation.
#[test]
fn tls_client_gives_up_on_a_silent_server_after_its_timeout() {
    use std::time::{Duration, Instant};
    let (pki, files) = pki();
    let ca = path_arg(&files.ca);

    // Never answers the ClientHello: the kernel takes the connection, nobody accepts it.
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mute_port = mute.local_addr().unwrap().port().to_string();
    let started = Instant::now();
    let exit = Process::start(
        CLIENT,
        ["localhost", &mute_port, "--ca", ca, "--timeout", "1"],
    )
    .finish();
    let elapsed = started.elapsed();
    let failure = exit.failure_line();
    assert!(failure.contains("timed out"), "{failure}");
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");

    // Completes the handshake, reads the request, then stays silent until the client leaves.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = pki.server_config().build().unwrap();
    let _guard = runtime.enter();
    let selector = SelectorManager::new();
    let mut server = runtime.block_on(TlsTestServer::start(
        &selector,
        config,
        |mut tls, reporter| async move {
            let mut input = tls.open_read_channel().unwrap();
            while let Ok(Some(line)) = input.read_line(1024, LineEnding::Default).await {
                if line.is_empty() {
                    break;
                }
            }
            reporter.report(None);
            // Silent: the client's timeout, not this server, ends the exchange. How the stream
            // ends: the client that gives up still closes with `close_notify`, so the server
            // sees a clean end, not a truncation.
            let end = input.discard(u64::MAX).await;
            reporter.report(Some(end.map(drop).map_err(|e| e.to_string())));
        },
    ));
    let port = server.port().to_string();
    let started = Instant::now();
    let mut client = Process::start(CLIENT, ["localhost", &port, "--ca", ca, "--timeout", "1"]);
    assert_eq!(runtime.block_on(server.next()).unwrap(), None);
    let exit = client.finish();
    let elapsed = started.elapsed();
    assert_eq!(
        runtime.block_on(server.next()).unwrap(),
        Some(Ok(())),
        "the client that timed out did not end with close_notify"
    );
    assert_eq!(exit.status.code(), Some(1), "{:?}", exit.stderr);
    assert!(exit.stdout.is_empty(), "{:?}", exit.stdout);
    assert_eq!(exit.stderr.len(), 2, "{:?}", exit.stderr);
    assert!(
        exit.stderr[0].starts_with("Connected to "),
        "{:?}",
        exit.stderr
    );
    assert_eq!(
        exit.stderr[1],
        format!(
            "sockets-client-tls: timed out: nothing from localhost:{port} for 1 s (see --timeout)"
        )
    );
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
    selector.close();
}

/// `sockets-server-tls` against GnuTLS's `gnutls-cli`: the prompt and an answer per line
/// arrive, both ends report TLS 1.3 (the server's `TLS with` line, gnutls-cli's
/// description), and gnutls-cli's `close_notify` at the end of its stdin ends the session
/// cleanly on both sides. Skipped (with a line saying so) without GnuTLS's tools.
#[test]
fn sockets_server_tls_against_gnutls_cli() {
    if !gnutls_present() {
        return;
    }
    let (_, files) = pki();
    let (mut server, port, _) = start_server(&[
        "--cert",
        path_arg(&files.server_chain),
        "--key",
        path_arg(&files.server_key),
    ]);
    let port_text = port.to_string();
    let mut gnutls = Process::start(
        "gnutls-cli",
        [
            "--x509cafile",
            path_arg(&files.ca),
            "--sni-hostname=localhost",
            "--verify-hostname=localhost",
            "--port",
            &port_text,
            "127.0.0.1",
        ],
    );
    gnutls.send("Alice\nBob\n");
    let description = gnutls.stdout_line_where("description", |l| l.starts_with("- Description: "));
    assert!(
        description.starts_with("- Description: (TLS1.3-X.509)"),
        "{description}"
    );
    for expected in ["Please enter your name", "Hello, Alice!", "Hello, Bob!"] {
        gnutls.stdout_line_where(expected, |l| l == expected);
    }
    let finished = gnutls.finish();
    assert!(finished.status.success(), "{finished:?}");
    assert!(
        finished
            .stdout
            .iter()
            .any(|l| l == "- Peer has closed the GnuTLS connection"),
        "{finished:?}"
    );
    let accepted = server.stdout_line();
    assert!(accepted.starts_with("Accepted 127.0.0.1:"), "{accepted}");
    let session = server.stdout_line();
    assert!(
        session.starts_with(&format!("TLS with {}: TLS 1.3, TLS13_", &accepted[9..])),
        "{session}"
    );
}

/// `sockets-client-tls` against GnuTLS's `gnutls-serv --http`: it verifies the certificate
/// for `localhost`, prints the whole HTML page (which names our SNI and TLS 1.3), reports the
/// session on stderr, and exits 0 on gnutls-serv's `close_notify`. Skipped (with a line saying
/// so) without GnuTLS's tools.
#[test]
fn sockets_client_tls_against_gnutls_serv_http() {
    if !gnutls_present() {
        return;
    }
    let (_, files) = pki();
    let port_text = free_port().to_string();
    let mut gnutls = Process::start(
        "gnutls-serv",
        [
            "--http",
            "--port",
            &port_text,
            "--x509certfile",
            path_arg(&files.server_chain),
            "--x509keyfile",
            path_arg(&files.server_key),
        ],
    );
    loop {
        let line = gnutls.stderr_line();
        if line.starts_with("HTTP Server listening on IPv4") {
            assert!(line.ends_with("...done"), "{line}");
            break;
        }
    }
    let client = Process::run(
        CLIENT,
        ["localhost", &port_text, "--ca", path_arg(&files.ca)],
    );
    assert!(client.status.success(), "{client:?}");
    // Its lines end in CRLF.
    let lines: Vec<&str> = client.stdout.iter().map(|l| l.trim_end()).collect();
    assert_eq!(lines.first(), Some(&"HTTP/1.0 200 OK"));
    assert!(
        lines.contains(&"<p>Server Name: localhost</p>"),
        "{:?}",
        client.stdout
    );
    assert!(
        lines.iter().any(|l| l.contains("(TLS1.3-X.509)")),
        "{:?}",
        client.stdout
    );
    assert!(lines.contains(&"</BODY></HTML>"), "{:?}", client.stdout);
    assert_eq!(client.stderr.len(), 1, "{:?}", client.stderr);
    assert!(
        client.stderr[0].contains(": TLS 1.3, TLS13_"),
        "{:?}",
        client.stderr
    );
}

/// `sockets-server-tls --client-ca FILE` with a FILE that holds no usable CA certificate fails
/// with one line, status 1, that names FILE as the place of the fault, as `--cert`, `--key` and
/// `sockets-client-tls --ca` do, and not `PEM bytes`, a source the user never gave.
#[test]
fn an_unusable_client_ca_file_is_named_as_the_source_of_the_fault() {
    let dir = TempDir::new("user-runs");
    let pki = Pki::with_server_names(&["localhost"]);
    let files = pki.temp_files();
    // A key where the CA certificate should be (a file mixed up on the command line), and a
    // file with no PEM at all.
    let key_file = path_arg(&files.server_key).to_owned();
    let empty = dir.write("empty.pem", "");
    let empty = path_arg(&empty).to_owned();
    for client_ca in [key_file, empty] {
        let args = [
            "--cert",
            path_arg(&files.server_chain),
            "--key",
            path_arg(&files.server_key),
            "--client-ca",
            &client_ca,
            "127.0.0.1",
            "0",
        ];
        let finished = Process::start(SERVER, args).finish();
        let failure = finished.failure_line();
        assert_eq!(finished.status.code(), Some(1), "{failure}");
        assert!(failure.contains(&client_ca), "{failure}");
        assert!(
            !failure.contains("PEM bytes"),
            "the line names a source that is not the file given: {failure}"
        );
    }
}
