//! The whole-socket stream API (`into_stream`, plain and TLS) and STARTTLS edges that
//! the other files leave out: upgrading a connection whose output was half-closed, whose input
//! was cancelled, whose socket was closed, or whose peer already ended its side; plain text
//! pipelined after `STARTTLS` on the server's side; a PROXY header, the command and the
//! ClientHello in one segment; a read of a TLS stream after the peer's `close_notify` and our
//! own shutdown; vectored writes through a `TlsStream`; and a `TlsStream` shut down after a
//! write that timed out (which failed with `BrokenPipe` instead of flushing first).

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_sockets::{SelectorManager, a_socket};
use net_tests::loopback::tcp_listener;
use net_tests::pki::TestCa;
use net_tests::tls::{localhost, rustls_client};
use net_tests::within;
use net_tls::TlsExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A handshake timeout far above what any upgrade in this file should take: an upgrade that
/// ends with `HandshakeTimeout` waited for something that never comes.
const HANDSHAKE: Duration = Duration::from_secs(5);

/// After the peer's `close_notify` (read as the end of the stream) and our own `shutdown`
/// (both directions done: the socket closes itself), a `TlsStream` read is the end of the
/// stream again, as tokio's streams and a plain `SocketStream` give it — not an error. TLS 1.3
/// and 1.2; the peer's `close_notify` with its FIN, or alone (the connection stays open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_stream_reads_the_clean_end_again_after_both_sides_closed() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("stream edges ca");
    let listener = tcp_listener(&selector).await;
    for version in [net_tls::TlsVersion::Tls13, net_tls::TlsVersion::Tls12] {
        let config = ca
            .server(&["localhost"])
            .server_config()
            .protocol_versions(&[version])
            .build()
            .unwrap();
        for with_fin in [true, false] {
            for shutdown_first in [false, true] {
                let case = format!("{version:?}, fin {with_fin}, shutdown_first {shutdown_first}");
                let (mut stream, mut peer) = net_tests::tls::accept_stream(
                    &listener,
                    &config,
                    net_tests::tls::rustls_client_config(&ca, net_tls::rustls::DEFAULT_VERSIONS),
                )
                .await;
                if shutdown_first {
                    within(stream.shutdown()).await.unwrap();
                }
                peer.write_all(b"request").await.unwrap();
                if with_fin {
                    // close_notify, then FIN.
                    peer.shutdown().await.unwrap();
                } else {
                    peer.get_mut().1.send_close_notify();
                    peer.flush().await.unwrap();
                }
                let mut got = Vec::new();
                within(stream.read_to_end(&mut got)).await.unwrap();
                assert_eq!(got, b"request", "{case}");
                let mut buf = [0u8; 8];
                let n = within(stream.read(&mut buf)).await;
                assert_eq!(n.unwrap(), 0, "{case}: EOF again");
                if !shutdown_first {
                    within(stream.write_all(b"reply")).await.unwrap();
                    within(stream.shutdown()).await.unwrap();
                }
                for again in 0..3 {
                    let n = within(stream.read(&mut buf)).await;
                    assert!(
                        matches!(n, Ok(0)),
                        "{case}, read {again} after both ends: {n:?}"
                    );
                }
                let mut reply = Vec::new();
                within(peer.read_to_end(&mut reply)).await.unwrap();
                let expected: &[u8] = if shutdown_first { b"" } else { b"reply" };
                assert_eq!(reply, expected, "{case}");
            }
        }
    }
}

/// The same on a plain `SocketStream` (the reference behaviour).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_stream_reads_the_end_again_after_both_sides_closed() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let port = listener.port().unwrap();
    let (accepted, peer) =
        within(async { tokio::join!(listener.accept(), TcpStream::connect(("127.0.0.1", port))) })
            .await;
    let mut stream = accepted.unwrap().into_stream().unwrap();
    let mut peer = peer.unwrap();
    peer.write_all(b"request").await.unwrap();
    peer.shutdown().await.unwrap();
    let mut got = Vec::new();
    within(stream.read_to_end(&mut got)).await.unwrap();
    within(stream.write_all(b"reply")).await.unwrap();
    within(stream.shutdown()).await.unwrap();
    let mut buf = [0u8; 8];
    for again in 0..3 {
        let n = within(stream.read(&mut buf)).await;
        assert!(matches!(n, Ok(0)), "read {again}: {n:?}");
    }
    let mut reply = Vec::new();
    within(peer.read_to_end(&mut reply)).await.unwrap();
    assert_eq!(reply, b"reply");
}

/// Vectored writes through a `TlsStream` (tokio's `write_vectored`, as hyper and
/// `write_all_buf` use it) deliver every byte once, in order, also with empty slices among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectored_writes_through_a_tls_stream_deliver_every_byte_in_order() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("stream edges ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = tcp_listener(&selector).await;
    let (mut stream, mut peer) = net_tests::tls::accept_stream(
        &listener,
        &config,
        net_tests::tls::rustls_client_config(&ca, net_tls::rustls::DEFAULT_VERSIONS),
    )
    .await;
    let a = net_tests::payload(40_000);
    let b = vec![b'x'; 3];
    let c = net_tests::payload(70_001);
    let mut expected = Vec::new();
    for part in [&a, &b, &c] {
        expected.extend_from_slice(part);
    }
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.map(|_| got)
    });
    let parts: [&[u8]; 5] = [&[], &a, &[], &b, &c];
    let mut offsets = [0usize; 5];
    let mut rounds = 0;
    loop {
        let slices: Vec<std::io::IoSlice<'_>> = parts
            .iter()
            .zip(offsets.iter())
            .map(|(p, o)| std::io::IoSlice::new(&p[*o..]))
            .collect();
        if slices.iter().all(|s| s.is_empty()) {
            break;
        }
        let mut n = within(stream.write_vectored(&slices)).await.unwrap();
        assert!(n > 0, "a vectored write with bytes to write took none");
        for (p, o) in parts.iter().zip(offsets.iter_mut()) {
            let take = n.min(p.len() - *o);
            *o += take;
            n -= take;
        }
        rounds += 1;
        assert!(rounds < 10_000);
    }
    within(stream.shutdown()).await.unwrap();
    let got = within(reader).await.unwrap().unwrap();
    assert!(
        got == expected,
        "bytes differ ({} vs {})",
        got.len(),
        expected.len()
    );
}

/// A plain connection accepted by `listener`, and the tokio `TcpStream` connected to it.
async fn accepted_plain(
    listener: &net_sockets::ServerSocket,
) -> (net_sockets::Connection, TcpStream) {
    let port = listener.port().unwrap();
    let (accepted, tcp) =
        within(async { tokio::join!(listener.accept(), TcpStream::connect(("127.0.0.1", port))) })
            .await;
    (accepted.unwrap().connection().unwrap(), tcp.unwrap())
}

/// What an upgrade of `plain` with `server` (true: `tls_server`) or a client config gives,
/// and how long it took.
async fn upgrade(
    plain: net_sockets::Connection,
    ca: &TestCa,
    server: bool,
) -> (Result<net_tls::TlsSocket, net_tls::Error>, Duration) {
    let started = Instant::now();
    let result = if server {
        let config = ca
            .server(&["localhost"])
            .server_config()
            .handshake_timeout(HANDSHAKE)
            .build()
            .unwrap();
        within(plain.tls_server(&config)).await
    } else {
        let config = ca
            .client_config()
            .server_name("localhost")
            .handshake_timeout(HANDSHAKE)
            .build()
            .unwrap();
        within(plain.tls(config)).await
    };
    (result, started.elapsed())
}

/// A peer for our upgrading side: over raw TCP, reads the `STARTTLS` line (as the server) or
/// nothing, then runs the other side's handshake with tokio-rustls; whatever happens, it
/// reports how its handshake ended.
async fn peer_side(tcp: TcpStream, ca: &TestCa, we_are_server: bool) -> Result<(), String> {
    if we_are_server {
        let connector = TlsConnector::from(rustls_client(ca));
        connector
            .connect(localhost(), tcp)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    } else {
        let leaf = ca.server(&["localhost"]);
        let acceptor = tokio_rustls::TlsAcceptor::from(net_tests::tls::rustls_server(&leaf));
        acceptor
            .accept(tcp)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// STARTTLS on a connection whose output was already half-closed (`flush_and_close`: FIN sent)
/// can never complete: the upgrade fails at once with a typed error (no panic, no wait for the
/// handshake timeout), on either side, and closes the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_after_the_output_was_half_closed_fails_at_once() {
    let selector = SelectorManager::new();
    let ca = std::sync::Arc::new(TestCa::new("starttls edges ca"));
    let listener = tcp_listener(&selector).await;
    for we_are_server in [true, false] {
        let (mut plain, tcp) = accepted_plain(&listener).await;
        plain.output.write_string_utf8("220 go\r\n").await.unwrap();
        plain.output.flush_and_close().await.unwrap();
        let peer = {
            let ca = std::sync::Arc::clone(&ca);
            tokio::spawn(async move { peer_side(tcp, &ca, we_are_server).await })
        };
        let (result, took) = upgrade(plain, &ca, we_are_server).await;
        let e = result.expect_err("an upgrade over a half-closed output cannot succeed");
        assert!(
            !matches!(e, net_tls::Error::HandshakeTimeout(_)) && took < HANDSHAKE,
            "server {we_are_server}: waited {took:?} for {e:?}"
        );
        let _ = within(peer).await;
    }
}

/// STARTTLS on a connection whose input was cancelled (`ByteReadChannel::cancel`: buffered
/// bytes thrown away) fails with a typed error rather than starting TLS on a stream with a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_after_the_input_was_cancelled_fails_typed() {
    let selector = SelectorManager::new();
    let ca = std::sync::Arc::new(TestCa::new("starttls edges ca"));
    let listener = tcp_listener(&selector).await;
    let (mut plain, mut tcp) = accepted_plain(&listener).await;
    tcp.write_all(b"STARTTLS\r\nsomething more").await.unwrap();
    let line = within(plain.input.read_line(64, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("STARTTLS"));
    plain.input.cancel();
    let (result, took) = upgrade(plain, &ca, true).await;
    let e = result.expect_err("an upgrade after the input was cancelled");
    assert!(
        !matches!(e, net_tls::Error::HandshakeTimeout(_)) && took < HANDSHAKE,
        "waited {took:?} for {e:?}"
    );
    // The socket is closed: the peer sees the end (or a reset), not a live connection.
    let mut rest = Vec::new();
    let _ = within(tcp.read_to_end(&mut rest)).await;
}

/// STARTTLS after the peer sent its command and ended its side (FIN): the handshake can never
/// get a ClientHello; the server's upgrade fails at once, typed (not `HandshakeTimeout`), also
/// when our input had already read the end of the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_after_the_peer_ended_its_side_fails_at_once() {
    let selector = SelectorManager::new();
    let ca = std::sync::Arc::new(TestCa::new("starttls edges ca"));
    let listener = tcp_listener(&selector).await;
    for read_the_end in [false, true] {
        let (mut plain, mut tcp) = accepted_plain(&listener).await;
        tcp.write_all(b"STARTTLS\r\n").await.unwrap();
        tcp.shutdown().await.unwrap();
        let line = within(plain.input.read_line(64, LineEnding::Default)).await;
        assert_eq!(line.unwrap().as_deref(), Some("STARTTLS"));
        if read_the_end {
            let end = within(plain.input.read_line(64, LineEnding::Default)).await;
            assert_eq!(end.unwrap(), None);
        }
        plain.output.write_string_utf8("220 go\r\n").await.unwrap();
        let (result, took) = upgrade(plain, &ca, true).await;
        let e = result.expect_err("no ClientHello can come");
        assert!(
            !matches!(e, net_tls::Error::HandshakeTimeout(_)) && took < HANDSHAKE,
            "read_the_end {read_the_end}: waited {took:?} for {e:?}"
        );
        let mut rest = Vec::new();
        let _ = within(tcp.read_to_end(&mut rest)).await;
        assert!(rest.starts_with(b"220 go\r\n"), "{rest:?}");
    }
}

/// Server-side STARTTLS command injection (CVE-2011-0411): the client pipelines plain text
/// after `STARTTLS` in the same segment, then runs a real handshake. The pipelined text is the
/// handshake's first input, so the upgrade fails (typed `Handshake`), and no plain text is ever
/// delivered as if it came over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_pipelined_after_starttls_fails_the_servers_handshake() {
    let selector = SelectorManager::new();
    let ca = std::sync::Arc::new(TestCa::new("starttls edges ca"));
    let listener = tcp_listener(&selector).await;
    let (mut plain, mut tcp) = accepted_plain(&listener).await;
    tcp.write_all(b"STARTTLS\r\nRCPT TO:<evil@example.com>\r\n")
        .await
        .unwrap();
    let line = within(plain.input.read_line(64, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("STARTTLS"));
    plain.output.write_string_utf8("220 go\r\n").await.unwrap();
    let peer = {
        let ca = std::sync::Arc::clone(&ca);
        tokio::spawn(async move {
            let mut reply = [0u8; 8];
            tcp.read_exact(&mut reply).await.unwrap();
            assert_eq!(&reply, b"220 go\r\n");
            peer_side(tcp, &ca, true).await
        })
    };
    let (result, _) = upgrade(plain, &ca, true).await;
    let e = result.expect_err("the injected text must fail the handshake");
    assert!(matches!(e, net_tls::Error::Handshake(_)), "{e:?}");
    assert!(within(peer).await.unwrap().is_err());
}

/// PROXY protocol v1 header, `STARTTLS` and the ClientHello in one segment, to a listener that
/// requires the header: the bytes the listener read past the header (kept for the first read
/// half) and the bytes the plain channel buffered past the command are handed to the handshake
/// in order; the session then carries data both ways, and the proxy's client is the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_after_a_proxy_header_with_everything_in_one_segment() {
    let selector = SelectorManager::new();
    let ca = std::sync::Arc::new(TestCa::new("starttls edges ca"));
    let listener = a_socket(&selector)
        .tcp()
        .proxy_protocol(net_sockets::ProxyProtocol::Required)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.port().unwrap();
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let server = tokio::spawn(async move {
        let socket = listener.accept().await?;
        let remote = socket.remote_address().to_string();
        let mut plain = socket.connection()?;
        let line = plain.input.read_line(64, LineEnding::Default).await?;
        assert_eq!(line.as_deref(), Some("STARTTLS"));
        plain.output.write_string_utf8("220 go\r\n").await?;
        let tls = plain.tls_server(&config).await?;
        let mut secure = tls.into_stream()?;
        let mut got = Vec::new();
        secure.read_to_end(&mut got).await?;
        secure.write_all(&got).await?;
        secure.shutdown().await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((remote, got))
    });
    let client_config =
        net_tests::tls::rustls_client_config(&ca, net_tls::rustls::DEFAULT_VERSIONS);
    let client = tokio::task::spawn_blocking(move || {
        let mut session =
            net_tls::rustls::ClientConnection::new(client_config, localhost()).unwrap();
        let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut first = b"PROXY TCP4 192.0.2.7 127.0.0.1 4242 25\r\nSTARTTLS\r\n".to_vec();
        session.write_tls(&mut first).unwrap();
        socket.write_all(&first).unwrap();
        let mut reply = [0u8; 8];
        socket.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"220 go\r\n");
        let mut tls = net_tls::rustls::StreamOwned::new(session, socket);
        tls.write_all(b"secret").unwrap();
        tls.conn.send_close_notify();
        tls.flush().unwrap();
        let mut back = Vec::new();
        tls.read_to_end(&mut back).unwrap();
        back
    });
    let back = within(client).await.unwrap();
    assert_eq!(back, b"secret");
    let (remote, got) = within(server).await.unwrap().unwrap();
    assert_eq!(got, b"secret");
    assert_eq!(remote, "192.0.2.7:4242");
}

/// STARTTLS on a connection whose socket was closed (`connection.socket.close()`): a typed
/// `Closed`, at once, on either side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_after_the_socket_was_closed_is_closed() {
    let selector = SelectorManager::new();
    let ca = std::sync::Arc::new(TestCa::new("starttls edges ca"));
    let listener = tcp_listener(&selector).await;
    for we_are_server in [true, false] {
        for unflushed in [false, true] {
            let (mut plain, _tcp) = accepted_plain(&listener).await;
            if unflushed {
                plain.output.write_string_utf8("220 go\r\n").await.unwrap();
            }
            plain.socket.close();
            let (result, took) = upgrade(plain, &ca, we_are_server).await;
            let e = result.expect_err("closed");
            assert!(
                matches!(e, net_tls::Error::Socket(net_sockets::Error::Closed)),
                "server {we_are_server}, unflushed {unflushed}: {e:?} after {took:?}"
            );
        }
    }
}

/// A stream write that times out (`socket_timeout`, the peer reading nothing) took none of its
/// bytes, so nothing is missing from the stream; the caller gives that message up and ends the
/// stream with `shutdown()` (tokio's `AsyncWriteExt::shutdown`, no flush of its own first)
/// once the peer reads again. tokio's contract makes a shutdown a flush first, and the docs say
/// a flush makes such a timeout good "as on a plain socket": on a plain `SocketStream` the
/// shutdown succeeds and the peer gets every byte written, then the FIN. A `TlsStream` must do
/// the same (every byte, then `close_notify`), not fail the shutdown with `BrokenPipe` ("an
/// earlier write failed") and leave the peer a truncated stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_shuts_down_cleanly_after_a_timed_out_write_it_gave_up() {
    let selector = SelectorManager::new();
    let stalled = Stalled::new(&selector).await;
    for tls in [false, true] {
        let (mut stream, go, reader, sent) = stalled.stream(tls).await;
        // The peer reads again; the message whose write timed out is given up.
        go.send(true).unwrap();
        let shut = within(stream.shutdown()).await;
        assert!(shut.is_ok(), "tls {tls}: the shutdown failed: {shut:?}");
        drop(stream);
        assert_everything_received(tls, reader, &sent).await;
    }
}

/// A shutdown flushes first after a write that timed out, and a flush that times out again
/// fails the shutdown with that timeout, which a retry may make good. Over TLS and plain alike: a write times out, a shutdown
/// while the peer still reads nothing times out (`TimedOut`, not `BrokenPipe`), the peer reads again, and the retried
/// shutdown succeeds: the peer reads every byte the writes took, then a clean end. Then the
/// other ending: a peer that resets instead, where the shutdown must fail, not hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_that_timed_out_after_a_timed_out_write_is_retried() {
    let selector = SelectorManager::new();
    let stalled = Stalled::new(&selector).await;
    for (tls, reset) in [(false, false), (true, false), (false, true), (true, true)] {
        let (mut stream, go, reader, sent) = stalled.stream(tls).await;
        // The peer still reads nothing. Over TLS, the shutdown's flush times out again (rustls
        // holds the records the socket did not take); a plain stream holds nothing (the write
        // that timed out took none of its bytes), so its shutdown queues the FIN at once.
        let shut = within(stream.shutdown()).await;
        if tls {
            assert_eq!(
                shut.as_ref().map_err(std::io::Error::kind),
                Err(std::io::ErrorKind::TimedOut),
                "tls {tls}: {shut:?}"
            );
        } else {
            assert!(shut.is_ok(), "plain: {shut:?}");
        }
        go.send(!reset).unwrap();
        if reset && !tls {
            let _ = within(reader).await.unwrap();
            continue;
        }
        if reset {
            // Wait for the reset to arrive, then the shutdown must fail (not hang, not succeed).
            let _ = within(reader).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            let shut = within(stream.shutdown()).await;
            assert!(
                shut.is_err(),
                "tls {tls}: a shutdown after the peer's reset succeeded"
            );
            continue;
        }
        let shut = within(stream.shutdown()).await;
        assert!(
            shut.is_ok(),
            "tls {tls}: the retried shutdown failed: {shut:?}"
        );
        drop(stream);
        assert_everything_received(tls, reader, &sent).await;
    }
}

/// A listener whose streams time out their writes (`socket_timeout` 200 ms, small buffers),
/// and the certificates of its TLS ones.
struct Stalled {
    listener: net_sockets::ServerSocket,
    ca: TestCa,
    config: net_tls::TlsServerConfig,
}

/// The peer's reader: every byte until a clean end, or an error.
type Reader = tokio::task::JoinHandle<std::io::Result<Vec<u8>>>;

impl Stalled {
    async fn new(selector: &SelectorManager) -> Stalled {
        let ca = TestCa::new("stream edges ca");
        let config = ca.server(&["localhost"]).server_config().build().unwrap();
        let listener = net_tests::loopback::tcp_listener_with(selector, |b| {
            b.socket_timeout(Duration::from_millis(200))
                .send_buffer_size(16 * 1024)
        })
        .await;
        Stalled {
            listener,
            ca,
            config,
        }
    }

    /// A stream (TLS or plain) whose last write timed out, its peer reading nothing; the bytes
    /// its writes took; and the peer's reader, which waits for `go`: `true`, read everything;
    /// `false`, reset (close with the input unread, linger 0).
    async fn stream(
        &self,
        tls: bool,
    ) -> (
        Box<dyn Io>,
        tokio::sync::oneshot::Sender<bool>,
        Reader,
        Vec<u8>,
    ) {
        let port = self.listener.port().unwrap();
        let tcp = tokio::net::TcpSocket::new_v4().unwrap();
        tcp.set_recv_buffer_size(16 * 1024).unwrap();
        let (accepted, tcp) = within(async {
            tokio::join!(
                self.listener.accept(),
                tcp.connect(([127, 0, 0, 1], port).into())
            )
        })
        .await;
        let (accepted, tcp) = (accepted.unwrap(), tcp.unwrap());
        let (go, wait) = tokio::sync::oneshot::channel::<bool>();
        let (mut stream, reader): (Box<dyn Io>, Reader) = if tls {
            let connector = TlsConnector::from(rustls_client(&self.ca));
            let (server, client) = within(async {
                tokio::join!(
                    accepted.tls_server(&self.config),
                    connector.connect(localhost(), tcp)
                )
            })
            .await;
            let mut stream = server.unwrap().into_stream().unwrap();
            let client = client.unwrap();
            // Quiet: the stream is past its handshake's own writes.
            within(stream.flush()).await.unwrap();
            let reader = tokio::spawn(read_or_reset(client, wait, |client| {
                socket2::SockRef::from(client.get_ref().0)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            }));
            (Box::new(stream), reader)
        } else {
            let stream = accepted.into_stream().unwrap();
            let reader = tokio::spawn(read_or_reset(tcp, wait, |tcp| {
                socket2::SockRef::from(tcp)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            }));
            (Box::new(stream), reader)
        };
        let chunk = net_tests::payload(16 * 1024);
        let mut sent = Vec::new();
        within(async {
            loop {
                match stream.write(&chunk).await {
                    Ok(n) => sent.extend_from_slice(&chunk[..n]),
                    Err(e) => {
                        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "tls {tls}: {e:?}");
                        break;
                    }
                }
            }
        })
        .await;
        (stream, go, reader, sent)
    }
}

/// Waits for `go`: reads `peer` to its end (`true`), or resets it (`false`: `linger_zero`,
/// then its close).
async fn read_or_reset<P: tokio::io::AsyncRead + Unpin>(
    mut peer: P,
    go: tokio::sync::oneshot::Receiver<bool>,
    linger_zero: impl FnOnce(&P),
) -> std::io::Result<Vec<u8>> {
    if !go.await.unwrap() {
        linger_zero(&peer);
        drop(peer);
        return Err(std::io::Error::other("reset"));
    }
    let mut received = Vec::new();
    peer.read_to_end(&mut received).await.map(|_| received)
}

/// The peer's reader read every byte the writes took (`sent`), then a clean end.
async fn assert_everything_received(tls: bool, reader: Reader, sent: &[u8]) {
    match within(reader).await.unwrap() {
        Ok(received) => assert!(
            received == sent,
            "tls {tls}: {} bytes received of {}",
            received.len(),
            sent.len()
        ),
        Err(e) => panic!("tls {tls}: every byte, then a clean end, expected: {e:?}"),
    }
}

/// A plain or TLS stream, boxed.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}
