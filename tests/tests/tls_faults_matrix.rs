//! TLS fault matrix, round two: FIN and RST in the middle of a handshake, RST during a session,
//! an ALPN mismatch, a TLS 1.1 client (`openssl s_client -tls1_1`), records that arrive a byte
//! at a time, and a client that goes idle after the handshake under `socket_timeout`. Each ends
//! in a typed error or correct data, without a panic, while a well-behaved session with the same
//! server is answered before, during and after (`fault_tls.rs` covers the round-one faults the
//! same way).
//!
//! `a_tls_1_1_client_is_refused` needs `openssl` on `PATH`, as the interop tests do.

use std::io;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use net_io::LineEnding;
use net_sockets::{SelectorManager, a_socket};
use net_tests::fault::reset;
use net_tests::greeting::GREETING;
use net_tests::pki::TestCa;
use net_tests::tls::{GoodTlsClient, LINE_LIMIT as LIMIT, TlsLineServer, localhost, rustls_client};
use net_tests::within;
use net_tls::rustls::{self, AlertDescription};
use net_tls::{Error, TlsConfig, TlsExt};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The first flight of a TLS client for `localhost`: a complete ClientHello record.
fn client_hello(ca: &TestCa) -> Vec<u8> {
    let mut client = rustls::ClientConnection::new(rustls_client(ca), localhost()).unwrap();
    let mut hello = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut hello).unwrap();
    }
    assert!(hello.len() > 100, "a ClientHello: {} bytes", hello.len());
    hello
}

/// A line server for `localhost` issued by `ca`, and a good session with it, answered once
/// (`before`) before the test misbehaves.
async fn serving(selector: &SelectorManager, ca: &TestCa) -> (TlsLineServer, GoodTlsClient) {
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let server = TlsLineServer::lines(selector, config).await;
    let mut good = server.good_client(selector, localhost_client(ca)).await;
    good.round_trip("before").await;
    (server, good)
}

/// Reads the next line from a tokio-rustls client and checks it.
async fn expect_line<S: AsyncRead + Unpin>(client: &mut BufReader<S>, expected: &str) {
    let mut line = String::new();
    within(client.read_line(&mut line)).await.unwrap();
    assert_eq!(line.trim_end(), expected);
}

/// Says `name` from a tokio-rustls client and checks the answer.
async fn raw_round_trip<S: AsyncRead + AsyncWrite + Unpin>(client: &mut BufReader<S>, name: &str) {
    client
        .write_all(format!("{name}\n").as_bytes())
        .await
        .unwrap();
    client.flush().await.unwrap();
    expect_line(client, &format!("Hello, {name}!")).await;
}

/// A client configuration that trusts `ca` and verifies the name `localhost`.
fn localhost_client(ca: &TestCa) -> TlsConfig {
    ca.client_config().server_name("localhost").build().unwrap()
}

#[tokio::test]
async fn fin_or_reset_in_the_middle_of_a_handshake_fails_typed_while_others_are_served() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("mid-handshake ca");
    let (mut server, mut good) = serving(&selector, &ca).await;
    let hello = client_hello(&ca);
    let half = &hello[..hello.len() / 2];

    // Half a ClientHello, then FIN: the handshake ends early, typed by its I/O kind.
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    tcp.write_all(half).await.unwrap();
    tcp.shutdown().await.unwrap();
    good.round_trip("during the FIN").await;
    let e = server.failed_handshake().await;
    assert!(matches!(e, Error::Socket(_)), "{e:?}");
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e:?}");
    // The server closed its side: the client's read ends (EOF or reset), it does not hang.
    let mut rest = Vec::new();
    let _ = within(tcp.read_to_end(&mut rest)).await;
    assert!(rest.is_empty(), "no answer to half a ClientHello: {rest:?}");
    good.round_trip("after the FIN").await;

    // Half a ClientHello, then RST.
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    tcp.write_all(half).await.unwrap();
    good.round_trip("during the RST").await;
    reset(tcp);
    let e = server.failed_handshake().await;
    assert!(matches!(e, Error::Socket(_)), "{e:?}");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e:?}");
    good.round_trip("after the RST").await;
    server.finish_good(good).await;
}

#[tokio::test]
async fn a_reset_during_a_session_is_a_typed_connection_reset() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("reset ca");
    let (mut server, mut good) = serving(&selector, &ca).await;

    let tcp = TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    let client = within(TlsConnector::from(rustls_client(&ca)).connect(localhost(), tcp))
        .await
        .unwrap();
    let mut client = BufReader::new(client);
    expect_line(&mut client, GREETING).await;
    raw_round_trip(&mut client, "doomed").await;
    good.round_trip("during").await;
    let (tcp, _) = client.into_inner().into_inner();
    reset(tcp);

    let outcome = server.session(Some("doomed")).await.outcome;
    assert_eq!(outcome.lines, ["doomed"]);
    let e = outcome.end.expect_err("a reset, not a clean end");
    assert!(matches!(&e, net_io::Error::Io(_)), "{e:?}");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e:?}");
    good.round_trip("after").await;
    server.finish_good(good).await;
}

#[tokio::test]
async fn an_alpn_mismatch_fails_with_no_application_protocol() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("alpn ca");
    let config = ca
        .server(&["localhost"])
        .server_config()
        .alpn_protocols(["h2"])
        .build()
        .unwrap();
    let mut server = TlsLineServer::lines(&selector, config).await;
    let offering = |protocol: &str| {
        ca.client_config()
            .server_name("localhost")
            .alpn_protocols([protocol])
    };
    let mut good = server
        .good_client(&selector, offering("h2").build().unwrap())
        .await;
    good.round_trip("before").await;

    let offers_other = offering("http/1.1").build().unwrap();
    let socket = a_socket(&selector)
        .tcp()
        .connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    let e = within(socket.tls(offers_other)).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Handshake(rustls::Error::AlertReceived(
                AlertDescription::NoApplicationProtocol
            ))
        ),
        "{e:?}"
    );
    let server_side = server.failed_handshake().await;
    assert!(
        matches!(
            server_side,
            Error::Handshake(rustls::Error::NoApplicationProtocol)
        ),
        "{server_side:?}"
    );
    good.round_trip("after").await;
    let view = server.finish_good(good).await.view;
    assert_eq!(view.alpn.as_deref(), Some(&b"h2"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_1_1_client_is_refused() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("old version ca");
    let (mut server, mut good) = serving(&selector, &ca).await;

    // Security level 0 lets OpenSSL 3 offer TLS 1.1 at all; `-tls1_1` allows only it.
    let connect = format!("127.0.0.1:{}", server.port());
    let s_client = tokio::task::spawn_blocking(move || {
        Command::new("openssl")
            .args(["s_client", "-connect", &connect, "-tls1_1"])
            .args(["-cipher", "DEFAULT@SECLEVEL=0", "-servername", "localhost"])
            .stdin(Stdio::null())
            .output()
    });
    good.round_trip("during").await;
    let output = within(s_client)
        .await
        .unwrap()
        .expect("`openssl` is needed by this test (Debian: apt-get install openssl)");
    let e = server.failed_handshake().await;
    assert!(
        !output.status.success(),
        "s_client -tls1_1 succeeded: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    // The server read a ClientHello (not just an end of stream) and refused its version.
    assert!(
        matches!(e, Error::Handshake(rustls::Error::PeerIncompatible(_))),
        "{e:?}; s_client said: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    good.round_trip("after").await;
    server.finish_good(good).await;
}

/// A transport that writes one byte per write and flushes before the next.
struct OneByteWrites<S> {
    inner: S,
    unflushed: bool,
    /// Writes made so far (one byte each).
    writes: usize,
}

impl<S: AsyncRead + Unpin> AsyncRead for OneByteWrites<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for OneByteWrites<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.unflushed {
            ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
            self.unflushed = false;
        }
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &buf[..1]))?;
        self.unflushed = true;
        self.writes += n;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        self.unflushed = false;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn byte_at_a_time_records_complete_the_handshake_and_carry_data() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("trickle ca");
    let (mut server, mut good) = serving(&selector, &ca).await;

    let tcp = TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    tcp.set_nodelay(true).unwrap();
    let trickle = OneByteWrites {
        inner: tcp,
        unflushed: false,
        writes: 0,
    };
    let client = within(TlsConnector::from(rustls_client(&ca)).connect(localhost(), trickle))
        .await
        .expect("a handshake written a byte at a time");
    good.round_trip("during the handshake's end").await;
    let mut client = BufReader::new(client);
    expect_line(&mut client, GREETING).await;
    let long = "x".repeat(LIMIT);
    for name in ["first trickle", long.as_str(), "last trickle"] {
        raw_round_trip(&mut client, name).await;
    }
    good.round_trip("during the trickle").await;
    let writes = client.get_ref().get_ref().0.writes;
    assert!(
        writes > LIMIT + 200,
        "every byte its own write: {writes} writes"
    );
    client.get_mut().shutdown().await.unwrap();
    let mut rest = String::new();
    within(client.read_to_string(&mut rest)).await.unwrap();
    assert_eq!(rest, "", "a clean end");

    let outcome = server.session(Some("first trickle")).await.outcome;
    outcome.end.expect("the trickling session ended cleanly");
    assert_eq!(
        outcome.lines,
        ["first trickle", long.as_str(), "last trickle"]
    );
    good.round_trip("after").await;
    server.finish_good(good).await;
}

/// An idle client after the handshake, under `socket_timeout`: the server's read gets
/// `Timeout`; its close is a clean one (no write failed), so the client reads the greeting and
/// a clean end. The server's other sessions — one before, one while the idle client waits, one
/// after — are short, since the timeout applies to them too.
#[tokio::test]
async fn an_idle_client_after_the_handshake_gets_a_timeout() {
    /// Long enough for a whole good session to fit many times while the idle one waits.
    const TIMEOUT: Duration = Duration::from_millis(600);
    let selector = SelectorManager::new();
    let ca = TestCa::new("idle ca");
    let mut server = TlsLineServer::lines_with(
        &selector,
        ca.server(&["localhost"]).server_config().build().unwrap(),
        |tcp| tcp.socket_timeout(TIMEOUT),
    )
    .await;
    let config = localhost_client(&ca);
    server.serve_once(&selector, config.clone(), "before").await;

    let socket = a_socket(&selector)
        .tcp()
        .connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut idle = within(socket.tls(config.clone())).await.unwrap();
    server.serve_once(&selector, config.clone(), "during").await;

    let outcome = server.session(None).await.outcome;
    assert!(started.elapsed() >= TIMEOUT, "{:?}", started.elapsed());
    assert!(outcome.lines.is_empty());
    let e = outcome.end.expect_err("the idle session timed out");
    assert!(matches!(e, net_io::Error::Timeout), "{e:?}");
    let mut input = idle.open_read_channel().unwrap();
    let greeting = within(input.read_line(LIMIT, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(greeting.as_deref(), Some(GREETING));
    let end = within(input.read_line(LIMIT, LineEnding::Default)).await;
    assert!(matches!(end, Ok(None)), "a clean end: {end:?}");
    idle.close();

    server.serve_once(&selector, config, "after").await;
}
