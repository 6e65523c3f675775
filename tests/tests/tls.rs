//! TLS between this crate's client and server over real loopback sockets: versions, suites,
//! ALPN, SNI, verification failures, mutual TLS, truncation, half-close, large transfers and
//! certificate reload. Every failure case also proves that the server keeps serving a
//! well-behaved client afterwards.

use std::sync::Arc;
use std::time::Duration;

use net_io::{ByteReadChannel, LineEnding};
use net_sockets::{SelectorManager, ServerSocket};
use net_tests::fault::{raw_peer_of, reset};
use net_tests::greeting::{GreetingClient, serve_lines};
use net_tests::loopback::tcp_listener;
use net_tests::pki::{Leaf, TestCa};
use net_tests::tls::{
    SessionView, TlsTestServer, assert_certificate_error, assert_refused_without_certificate,
    connect, garbage_client, is_expired, is_not_valid_for_name, is_truncated, is_unknown_issuer,
    localhost, rustls_client_config,
};
use net_tests::{payload, within};
use net_tls::rustls::{self, CertificateError};
use net_tls::{Error, TlsConfig, TlsExt, TlsServerConfig, TlsSocket, TlsVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: usize = 1024;
/// The bound on a 64 MiB transfer over TLS in a debug build.
const TRANSFER_LIMIT: Duration = Duration::from_secs(120);

/// A TLS server on 127.0.0.1 that reports what each handshake negotiated (or its error), then
/// speaks the seed's protocol until the client leaves.
type Server = TlsTestServer<SessionView>;

async fn start_server(selector: &SelectorManager, config: TlsServerConfig) -> Server {
    TlsTestServer::start(selector, config, |tls, reporter| async move {
        reporter.report(SessionView::of(&tls));
        serve_lines(tls, LIMIT).await;
    })
    .await
}

/// Connects to `localhost:port`, trusting only `ca`.
async fn connect_trusting(
    selector: &SelectorManager,
    port: u16,
    ca: &TestCa,
) -> Result<TlsSocket, Error> {
    let config = ca.client_config().build().unwrap();
    connect(selector, "localhost", port, config).await
}

/// Starts a server that presents `leaf`, connects to it as `host` with `client`, and checks
/// that the client's handshake fails on the certificate for the reason `reason` accepts.
/// Returns the server, to look at what it saw.
async fn client_refuses(
    selector: &SelectorManager,
    leaf: &Leaf,
    host: &str,
    client: TlsConfig,
    reason: fn(&CertificateError) -> bool,
) -> Server {
    let server = start_server(selector, leaf.server_config().build().unwrap()).await;
    let e = connect(selector, host, server.port(), client)
        .await
        .expect_err("the client must refuse the certificate");
    assert_certificate_error(&e, reason);
    server
}

/// Reads the greeting, says `name`, checks the answer and ends the conversation cleanly.
async fn round_trip(tls: TlsSocket, name: &str) {
    let mut client = GreetingClient::start(tls).await;
    client.round_trip(name).await;
    client.finish().await;
}

/// Proves the server still serves a good client.
async fn good_client_works(selector: &SelectorManager, server: &mut Server, ca: &TestCa) {
    let tls = connect_trusting(selector, server.port(), ca).await.unwrap();
    round_trip(tls, "still-here").await;
    assert!(server.next().await.is_ok());
}

/// TLS 1.3 and 1.2 both work between our client and server, and both ends report the
/// negotiated version, a suite of that version, ALPN and SNI.
#[tokio::test]
async fn both_versions_negotiate_and_report_the_session() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("test ca");
    let leaf = ca.server(&["localhost", "127.0.0.1"]);
    for version in [TlsVersion::Tls13, TlsVersion::Tls12] {
        let config = leaf
            .server_config()
            .protocol_versions(&[version])
            .alpn_protocols(["h2", "http/1.1"])
            .build()
            .unwrap();
        let mut server = start_server(&selector, config).await;
        let client = ca
            .client_config()
            .alpn_protocols(["http/1.1"])
            .build()
            .unwrap();
        let tls = connect(&selector, "localhost", server.port(), client)
            .await
            .unwrap();
        assert_eq!(tls.protocol_version(), Some(version));
        assert_eq!(tls.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(tls.server_name(), Some("localhost"));
        assert!(!tls.peer_certificates().is_empty());
        let suite = format!("{:?}", tls.cipher_suite().unwrap());
        match version {
            TlsVersion::Tls13 => assert!(suite.starts_with("TLS13_"), "{suite}"),
            _ => assert!(suite.starts_with("TLS_ECDHE_"), "{suite}"),
        }
        let seen = server.next().await.unwrap();
        assert_eq!(seen.version, Some(version));
        assert_eq!(seen.alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert_eq!(seen.server_name.as_deref(), Some("localhost"));
        assert_eq!(seen.peer_certificates, 0);
        round_trip(tls, "Alice").await;
    }
}

/// Connecting by IP address verifies the certificate's IP SANs.
#[tokio::test]
async fn ip_address_is_checked_against_ip_sans() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("test ca");
    let mut with_ip = start_server(
        &selector,
        ca.server(&["127.0.0.1"]).server_config().build().unwrap(),
    )
    .await;
    let tls = connect(
        &selector,
        "127.0.0.1",
        with_ip.port(),
        ca.client_config().build().unwrap(),
    )
    .await
    .unwrap();
    round_trip(tls, "ip").await;
    assert!(with_ip.next().await.is_ok());

    client_refuses(
        &selector,
        &ca.server(&["localhost"]),
        "127.0.0.1",
        ca.client_config().build().unwrap(),
        is_not_valid_for_name,
    )
    .await;
}

/// Wrong host, untrusted CA and expired certificates each fail the client's handshake with the
/// matching reason, and the server keeps serving.
#[tokio::test]
async fn verification_failures_are_typed_and_the_server_keeps_serving() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("test ca");
    let other_ca = TestCa::new("other ca");
    let trusting_ca = || ca.client_config().build().unwrap();

    // Wrong host: the certificate names another host.
    let mut server = client_refuses(
        &selector,
        &ca.wrong_host_server(),
        "localhost",
        trusting_ca(),
        is_not_valid_for_name,
    )
    .await;
    assert!(
        server.next().await.is_err(),
        "the server saw the client's alert"
    );

    // Untrusted: signed by a CA the client does not trust.
    let mut server = client_refuses(
        &selector,
        &ca.server(&["localhost"]),
        "localhost",
        other_ca.client_config().build().unwrap(),
        is_unknown_issuer,
    )
    .await;
    assert!(server.next().await.is_err());
    good_client_works(&selector, &mut server, &ca).await;

    // Expired.
    let mut server = client_refuses(
        &selector,
        &ca.expired_server(&["localhost"]),
        "localhost",
        trusting_ca(),
        is_expired,
    )
    .await;
    assert!(server.next().await.is_err());
}

/// The default client trusts only the bundled public roots, so a private CA is untrusted.
#[tokio::test]
async fn default_roots_do_not_trust_a_private_ca() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("test ca");
    client_refuses(
        &selector,
        &ca.server(&["localhost"]),
        "localhost",
        TlsConfig::builder().build().unwrap(),
        is_unknown_issuer,
    )
    .await;
}

/// The seed's trust-all mode connects to a server whose certificate nobody vouches for.
#[tokio::test]
async fn dangerous_mode_accepts_any_certificate() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("test ca");
    let server = start_server(
        &selector,
        ca.server(&["elsewhere.test"])
            .server_config()
            .build()
            .unwrap(),
    )
    .await;
    let config = TlsConfig::builder()
        .dangerous_accept_any_server_certificate()
        .build()
        .unwrap();
    let tls = connect(&selector, "localhost", server.port(), config)
        .await
        .unwrap();
    round_trip(tls, "trusting").await;
}

/// Mutual TLS: a client with a certificate from the required CA is served and its certificate
/// is visible; one without is refused (in TLS 1.3 the client learns it on its first read), and
/// the server reports the missing certificate.
#[tokio::test]
async fn mutual_tls_requires_a_client_certificate() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("test ca");
    let client_ca = TestCa::new("client ca");
    let client_leaf = client_ca.client("client.test");
    for version in [TlsVersion::Tls13, TlsVersion::Tls12] {
        let config = ca
            .server(&["localhost"])
            .mutual_tls_server_config(&client_ca)
            .protocol_versions(&[version])
            .build()
            .unwrap();
        let mut server = start_server(&selector, config).await;

        let with_cert = client_leaf
            .client_certificate(ca.client_config())
            .build()
            .unwrap();
        let tls = connect(&selector, "localhost", server.port(), with_cert)
            .await
            .unwrap();
        assert_eq!(server.next().await.unwrap().peer_certificates, 2);
        round_trip(tls, "certified").await;

        assert_refused_without_certificate(connect_trusting(&selector, server.port(), &ca).await)
            .await;
        let e = server.next().await.unwrap_err();
        assert!(
            matches!(e, Error::Handshake(rustls::Error::NoCertificatesPresented)),
            "{e:?}"
        );
    }
}

/// Garbage instead of a ClientHello and a client that sends nothing both end with a typed
/// error on the server, the raw connection closed, while a good client is served meanwhile.
#[tokio::test]
async fn garbage_and_silent_clients_fail_without_blocking_others() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("test ca");
    let config = ca
        .server(&["localhost"])
        .server_config()
        .handshake_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let mut server = start_server(&selector, config).await;

    let mut garbage = garbage_client(server.port()).await;
    let e = server.next().await.unwrap_err();
    assert!(matches!(e, Error::Handshake(_)), "{e:?}");
    // The server closed the raw connection: reading ends (with EOF or a reset) instead of hanging.
    let mut rest = Vec::new();
    let _ = within(garbage.read_to_end(&mut rest)).await;

    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    // While the silent client holds its slot, a good client is served.
    good_client_works(&selector, &mut server, &ca).await;
    let e = server.next().await.unwrap_err();
    assert!(matches!(e, Error::HandshakeTimeout(_)), "{e:?}");
    let mut buf = [0u8; 16];
    let n = within(silent.read(&mut buf)).await;
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "the server closed the silent connection: {n:?}"
    );
}

/// A peer that drops the connection without close_notify is reported as truncation, while a
/// clean close is an ordinary end of stream.
#[tokio::test]
async fn truncation_is_distinct_from_a_clean_close() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("test ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = tcp_listener(&selector).await;
    let port = listener.port().unwrap();

    // Truncating peer: plain tokio-rustls, dropped without shutdown.
    let cfg = rustls_client_config(&ca, rustls::DEFAULT_VERSIONS);
    let raw = tokio::spawn(async move {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let connector = tokio_rustls::TlsConnector::from(cfg);
        let mut tls = connector.connect(localhost(), tcp).await.unwrap();
        tls.write_all(b"partial line\n").await.unwrap();
        tls.flush().await.unwrap();
        drop(tls); // FIN without close_notify
    });
    let (_truncated, mut input) = accept_tls(&listener, &config).await;
    raw.await.unwrap();
    assert_eq!(
        input
            .read_line(LIMIT, LineEnding::Default)
            .await
            .unwrap()
            .as_deref(),
        Some("partial line")
    );
    let e = input
        .read_line(LIMIT, LineEnding::Default)
        .await
        .unwrap_err();
    assert!(is_truncated(&e), "{e:?}");

    // Clean close: our client half-closes with close_notify.
    let client = tokio::spawn({
        let selector = selector.clone();
        let config = ca.client_config().build().unwrap();
        async move {
            let mut tls = connect(&selector, "localhost", port, config).await.unwrap();
            let mut output = tls.open_write_channel(false).unwrap();
            output.write_string_utf8("whole line\n").await.unwrap();
            output.flush_and_close().await.unwrap();
            tls
        }
    });
    let (_closed, mut input) = accept_tls(&listener, &config).await;
    assert_eq!(
        input
            .read_line(LIMIT, LineEnding::Default)
            .await
            .unwrap()
            .as_deref(),
        Some("whole line")
    );
    assert_eq!(
        input.read_line(LIMIT, LineEnding::Default).await.unwrap(),
        None
    );
    drop(client.await.unwrap());
}

/// Accepts the next connection on `listener` with the server handshake; returns the session (to
/// keep it open) and its read channel.
async fn accept_tls(
    listener: &ServerSocket,
    config: &TlsServerConfig,
) -> (TlsSocket, ByteReadChannel) {
    let socket = within(listener.accept()).await.unwrap();
    let mut tls = within(socket.tls_server(config)).await.unwrap();
    let input = tls.open_read_channel().unwrap();
    (tls, input)
}

/// Half-close over TLS: the client sends, closes its write side with close_notify, and still
/// reads the whole reply; 1 MiB and 64 MiB arrive intact in both directions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_and_large_transfers_arrive_intact() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("test ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    // Echo server: reads until close_notify, then sends everything back and closes.
    let mut server = TlsTestServer::start(&selector, config, |mut tls, reporter| async move {
        let mut input = tls.open_read_channel().unwrap();
        let mut output = tls.open_write_channel(false).unwrap();
        let copied = input.copy_to(&mut output, u64::MAX).await;
        let closed = output.flush_and_close().await;
        tls.close();
        reporter.report((copied, closed));
    })
    .await;
    for size in [1 << 20, 64 << 20] {
        let payload = Arc::new(payload(size));
        let mut tls = connect_trusting(&selector, server.port(), &ca)
            .await
            .unwrap();
        let mut input = tls.open_read_channel().unwrap();
        let mut output = tls.open_write_channel(false).unwrap();
        let sent = Arc::clone(&payload);
        let writer = tokio::spawn(async move {
            output.write_fully(&sent).await.unwrap();
            output.flush_and_close().await.unwrap();
        });
        let echoed = tokio::time::timeout(TRANSFER_LIMIT, input.read_remaining(usize::MAX))
            .await
            .unwrap()
            .unwrap();
        writer.await.unwrap();
        assert_eq!(echoed.len(), payload.len());
        assert!(echoed[..] == payload[..], "{size} bytes came back changed");
        let (copied, closed) = server.next().await.unwrap();
        assert_eq!(copied.unwrap(), size as u64);
        closed.unwrap();
    }
}

/// Reloading the server configuration: new handshakes see the new certificate, an open session
/// keeps working; SNI picks a per-name certificate.
#[tokio::test]
async fn reload_and_sni_choose_the_certificate() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("test ca");
    let first = ca.server(&["localhost"]);
    let second = ca.server(&["localhost"]);
    let named = ca.server(&["other.test"]);
    let config = named
        .sni_certificate("Other.Test", first.server_config())
        .build()
        .unwrap();
    let mut server = start_server(&selector, config.clone()).await;

    let open = connect_trusting(&selector, server.port(), &ca)
        .await
        .unwrap();
    assert_eq!(&open.peer_certificates()[0], first.cert_der());
    assert!(server.next().await.is_ok());

    let by_name = ca
        .client_config()
        .server_name("other.test")
        .build()
        .unwrap();
    let tls = connect(&selector, "localhost", server.port(), by_name)
        .await
        .unwrap();
    assert_eq!(&tls.peer_certificates()[0], named.cert_der());
    assert_eq!(
        server.next().await.unwrap().server_name.as_deref(),
        Some("other.test")
    );

    config.reload(&second.server_config().build().unwrap());
    let fresh = connect_trusting(&selector, server.port(), &ca)
        .await
        .unwrap();
    assert_eq!(&fresh.peer_certificates()[0], second.cert_der());
    assert!(server.next().await.is_ok());
    round_trip(fresh, "new").await;
    round_trip(open, "old").await;
}

/// A listener whose PROXY header is optional reads the first bytes of each connection to look
/// for one; when there is none, those bytes (here the start of a ClientHello) are the
/// connection's, and `tls_server` hands them to the handshake first: nothing is lost.
#[tokio::test]
async fn tls_after_an_absent_optional_proxy_header_gets_every_byte() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("optional proxy ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = net_sockets::a_socket(&selector)
        .tcp()
        .proxy_protocol(net_sockets::ProxyProtocol::Optional)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.port().unwrap();
    let served = tokio::spawn(async move {
        let tls = listener.accept().await?.tls_server(&config).await?;
        serve_lines(tls, LIMIT).await;
        Ok::<_, Error>(())
    });
    let tls = within(connect_trusting(&selector, port, &ca))
        .await
        .unwrap();
    round_trip(tls, "direct").await;
    within(served).await.unwrap().unwrap();
}

/// STARTTLS on a plain connection whose peer reset it, after a read reported the reset: the
/// handshake reports the reset too (kind `ConnectionReset`), not an end of stream or a
/// generic handshake failure.
#[tokio::test]
async fn starttls_after_a_reset_reports_the_reset() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (peer, socket) = raw_peer_of(&listener).await;
    let mut connection = socket.connection().unwrap();
    reset(peer);
    let read = within(connection.input.read_u8()).await.unwrap_err();
    assert_eq!(read.kind(), std::io::ErrorKind::ConnectionReset, "{read:?}");
    let config = TestCa::new("starttls ca")
        .client_config()
        .server_name("localhost")
        .build()
        .unwrap();
    let e = within(connection.tls(config)).await.unwrap_err();
    assert!(matches!(e, Error::Socket(_)), "{e:?}");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e:?}");
}

/// An SNI name given with the trailing dot of a fully qualified name is the same name: clients
/// send it without the dot (whether or not theirs had one), and still get its certificate.
/// (Before, `"other.test."` was kept with its dot and never chosen.)
#[tokio::test]
async fn an_sni_name_with_a_trailing_dot_is_chosen() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("sni dot ca");
    let default = ca.server(&["localhost"]);
    let named = ca.server(&["other.test"]);
    let config = named
        .sni_certificate("Other.Test.", default.server_config())
        .build()
        .unwrap();
    let mut server = start_server(&selector, config).await;
    for asked in ["other.test", "other.test."] {
        let by_name = ca.client_config().server_name(asked).build().unwrap();
        let tls = connect(&selector, "localhost", server.port(), by_name)
            .await
            .unwrap();
        assert_eq!(&tls.peer_certificates()[0], named.cert_der(), "{asked}");
        assert!(server.next().await.is_ok());
    }
}

/// A TCP socket adopted with `Socket::from_std` has no host name, but it has its peer's IP
/// address: `tls` verifies the server against it, as it does for a socket connected to an
/// address. A Unix socket has neither: the error says to set a server name. (Before, both
/// failed with `invalid tls server name ""`.)
#[tokio::test]
async fn tls_on_an_adopted_socket_verifies_the_peer_address() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("adopted ca");
    let leaf = ca.server(&["127.0.0.1"]);
    let mut server = start_server(&selector, leaf.server_config().build().unwrap()).await;
    let std_stream = std::net::TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    let adopted = net_sockets::Socket::from_std(&selector, std_stream).unwrap();
    let tls = within(adopted.tls(ca.client_config().build().unwrap()))
        .await
        .unwrap();
    assert_eq!(&tls.peer_certificates()[0], leaf.cert_der());
    assert!(server.next().await.is_ok());

    let (unix, _other) = std::os::unix::net::UnixStream::pair().unwrap();
    let adopted = net_sockets::Socket::from_std(&selector, unix).unwrap();
    let err = within(adopted.tls(ca.client_config().build().unwrap()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidServerName { .. }), "{err:?}");
    assert!(err.to_string().contains("server_name"), "{err}");

    // A configuration from `from_rustls` has no `server_name`: over a Unix socket its handshake
    // fails the same way, as its docs say.
    let (unix, _other) = std::os::unix::net::UnixStream::pair().unwrap();
    let adopted = net_sockets::Socket::from_std(&selector, unix).unwrap();
    let config = net_tls::TlsConfig::from_rustls(net_tests::tls::rustls_client(&ca));
    let err = within(adopted.tls(config)).await.unwrap_err();
    assert!(matches!(err, Error::InvalidServerName { .. }), "{err:?}");
}

/// TLS over a Unix socket, both ways: the client names the server (`server_name`, a Unix path
/// is no name), the server runs `tls_server` on what a Unix listener accepted; then the same
/// after a STARTTLS exchange in plain text on the connection's channels.
#[tokio::test]
async fn tls_and_starttls_over_a_unix_socket() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("unix ca");
    let leaf = ca.server(&["unix.test"]);
    let server_config = leaf.server_config().build().unwrap();
    let path = std::env::temp_dir().join(format!("net-tls-{}-unix.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let address = net_sockets::UnixSocketAddress::new(&path);
    let listener = net_sockets::a_socket(&selector)
        .tcp()
        .bind(address.clone())
        .await
        .unwrap();

    for starttls in [false, true] {
        // A Unix connect completes once the kernel queued it: accept after it.
        let socket = within(
            net_sockets::a_socket(&selector)
                .tcp()
                .connect(address.clone()),
        )
        .await
        .unwrap();
        let accepted = within(listener.accept()).await.unwrap();
        let serving = async {
            let tls = if starttls {
                let mut plain = accepted.connection().unwrap();
                let line = plain.input.read_line(64, LineEnding::Default).await;
                assert_eq!(line.unwrap().as_deref(), Some("STARTTLS"));
                plain.output.write_string_utf8("220 go\r\n").await.unwrap();
                plain.tls_server(&server_config).await.unwrap()
            } else {
                accepted.tls_server(&server_config).await.unwrap()
            };
            let mut connection = tls.connection().unwrap();
            let line = connection.input.read_line(64, LineEnding::Default).await;
            let line = line.unwrap().unwrap();
            connection
                .output
                .write_string_utf8(&format!("{line}!\n"))
                .await
                .unwrap();
            connection.output.flush().await.unwrap();
            connection
        };
        let client = async {
            let config = ca.client_config().server_name("unix.test").build().unwrap();
            let tls = if starttls {
                let mut plain = socket.connection().unwrap();
                plain
                    .output
                    .write_string_utf8("STARTTLS\r\n")
                    .await
                    .unwrap();
                plain.output.flush().await.unwrap();
                let line = plain.input.read_line(64, LineEnding::Default).await;
                assert_eq!(line.unwrap().as_deref(), Some("220 go"));
                plain.tls(config).await.unwrap()
            } else {
                socket.tls(config).await.unwrap()
            };
            assert_eq!(&tls.peer_certificates()[0], leaf.cert_der());
            let mut connection = tls.connection().unwrap();
            connection
                .output
                .write_string_utf8("hello\n")
                .await
                .unwrap();
            connection.output.flush().await.unwrap();
            let line = connection.input.read_line(64, LineEnding::Default).await;
            assert_eq!(
                line.unwrap().as_deref(),
                Some("hello!"),
                "starttls: {starttls}"
            );
            connection
        };
        let (server_side, client_side) = within(async { tokio::join!(serving, client) }).await;
        drop((server_side, client_side));
    }
    listener.close();
}

/// A selector's graceful shutdown reaches the owners of TLS connections: one that says goodbye
/// and closes at the signal ends its session cleanly (its client reads the goodbye, then
/// `close_notify`: a clean end) and counts as finished; one that ignores the signal is cut at
/// the end of the grace period, and its client sees no clean end (no `close_notify`).
#[tokio::test]
async fn a_selector_shutdown_reaches_tls_connections_and_a_polite_one_ends_with_close_notify() {
    let pki = net_tests::pki::Pki::generate();
    let server_config = pki.server_config().build().unwrap();
    let selector = SelectorManager::new();
    let clients_selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let mut servers = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..2 {
        let client_config = pki.client_config().build().unwrap();
        let (server, client) =
            net_tests::tls::pair(&clients_selector, &listener, &server_config, client_config).await;
        servers.push(server);
        clients.push(client.connection().unwrap());
    }
    let ignoring = servers.pop().unwrap();
    let polite = servers.pop().unwrap();
    let polite = tokio::spawn(async move {
        let mut connection = polite.connection().unwrap();
        connection.socket.shutdown_requested().await;
        connection.output.write_string_utf8("bye\n").await.unwrap();
        connection.output.flush_and_close().await.unwrap();
        connection.socket.close();
    });
    let report = within(selector.shutdown(Duration::from_millis(300))).await;
    within(polite).await.unwrap();
    assert_eq!((report.finished, report.cut), (1, 1), "{report:?}");
    assert!(ignoring.is_closed());
    let polite = &mut clients[0].input;
    let line = within(polite.read_line(LIMIT, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("bye"));
    let end = within(polite.read_line(LIMIT, LineEnding::Default)).await;
    assert!(matches!(end, Ok(None)), "{end:?}");
    let cut = &mut clients[1].input;
    let end = within(cut.read_line(LIMIT, LineEnding::Default)).await;
    assert!(end.is_err(), "a cut TLS session ended cleanly: {end:?}");
}
