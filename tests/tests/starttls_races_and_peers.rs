//! STARTTLS under races, cancellation and hostile peers, where the other files leave off: an
//! upgrade after a plain-text write was dropped part-way (a stream with a gap: refused, typed),
//! an upgrade polled by no runtime, the listener's `max_connections` slot after upgrades that
//! failed (garbage, a reset, a FIN) or were dropped, the plain socket's `socket_timeout` over
//! TLS, a flood of plain text after the command, the selector's close and a listener's
//! shutdown while a handshake waits, a client that pipelines its ClientHello with the command
//! and its first command with its Finished, and our client against python3's `ssl`.

use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_sockets::SelectorManager;
use net_tests::loopback::{tcp_listener, tcp_listener_with};
use net_tests::pki::Pki;
use net_tests::within;
use net_tls::{Error, TlsExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A server STARTTLS upgrade polled on a thread with no tokio context (`block_on`) still ends
/// at its handshake timeout when the client says nothing after `STARTTLS`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starttls_upgrade_polled_by_no_runtime_ends_at_its_handshake_timeout() {
    const LIMIT: Duration = Duration::from_millis(300);
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let config = Pki::generate()
        .server_config()
        .handshake_timeout(LIMIT)
        .build()
        .unwrap();
    let port = listener.port().unwrap();
    let (accepted, peer) =
        within(async { tokio::join!(listener.accept(), TcpStream::connect(("127.0.0.1", port))) })
            .await;
    let mut peer = peer.unwrap();
    let mut plain = accepted.unwrap().connection().unwrap();
    peer.write_all(b"STARTTLS\r\n").await.unwrap();
    let line = within(plain.input.read_line(64, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("STARTTLS"));
    plain.output.write_string_utf8("220 go\r\n").await.unwrap();
    let upgraded = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let upgraded = net_tests::block_on(plain.tls_server(&config));
        (upgraded.map(|_| ()), started.elapsed())
    })
    .await
    .unwrap();
    assert!(
        matches!(upgraded.0, Err(Error::HandshakeTimeout(t)) if t == LIMIT),
        "{upgraded:?}"
    );
    let mut rest = Vec::new();
    let _ = within(peer.read_to_end(&mut rest)).await;
    assert_eq!(rest, b"220 go\r\n");
    selector.close();
}

/// `socket_timeout` set on the listener holds for the TLS socket a STARTTLS upgrade makes:
/// a read over TLS from a silent peer times out after about that long, fresh from the read's
/// start (not counting the plain-text phase's waits).
///
/// The plain read waits half the timeout for the command: long enough that a timer carried
/// over from it would cut the TLS read well short, and far enough from the timeout that a
/// loaded machine running the client late does not make the plain read time out instead. (It
/// waited 3/4 of 400 ms: a client run 100 ms late failed the test at the plain read.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plain_sockets_timeout_holds_after_starttls() {
    const TIMEOUT: Duration = Duration::from_secs(2);
    let selector = SelectorManager::new();
    let listener = tcp_listener_with(&selector, |builder| builder.socket_timeout(TIMEOUT)).await;
    let pki = Pki::generate();
    let config = pki.server_config().build().unwrap();
    let port = listener.port().unwrap();
    let (accepted, peer) =
        within(async { tokio::join!(listener.accept(), TcpStream::connect(("127.0.0.1", port))) })
            .await;
    let mut peer = peer.unwrap();
    let mut plain = accepted.unwrap().connection().unwrap();
    let client = tokio::spawn(async move {
        // Half the timeout passes before the command: the plain read waits that long.
        tokio::time::sleep(TIMEOUT / 2).await;
        peer.write_all(b"STARTTLS\r\n").await.unwrap();
        let mut reply = [0; 8];
        peer.read_exact(&mut reply).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(net_tests::tls::rustls_client(&pki.ca));
        let tls = connector
            .connect(net_tests::tls::localhost(), peer)
            .await
            .unwrap();
        // Silent from now on, and open until the server gave up (the test aborts this).
        tokio::time::sleep(TIMEOUT * 50).await;
        drop(tls);
    });
    let line = within(plain.input.read_line(64, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("STARTTLS"));
    plain.output.write_string_utf8("220 go\r\n").await.unwrap();
    let mut tls = within(plain.tls_server(&config)).await.unwrap();
    let mut input = tls.open_read_channel().unwrap();
    let started = Instant::now();
    let read = within(input.read_line(64, LineEnding::Default)).await;
    let took = started.elapsed();
    assert!(matches!(read, Err(net_io::Error::Timeout)), "{read:?}");
    assert!(
        took >= TIMEOUT - Duration::from_millis(20) && took < TIMEOUT * 10,
        "timed out after {took:?}"
    );
    tls.close();
    client.abort();
    selector.close();
}

/// Garbage sent with `STARTTLS` in one write, more than a channel buffers: the server's upgrade
/// fails with `Handshake` at once, and the client sees the connection end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_plain_text_after_starttls_fails_the_handshake_at_once() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let config = Pki::generate().server_config().build().unwrap();
    let port = listener.port().unwrap();
    let (accepted, peer) =
        within(async { tokio::join!(listener.accept(), TcpStream::connect(("127.0.0.1", port))) })
            .await;
    let mut peer = peer.unwrap();
    let mut plain = accepted.unwrap().connection().unwrap();
    let mut flood = b"STARTTLS\r\n".to_vec();
    flood.extend(std::iter::repeat_n(b'A', 300 * 1024));
    let writer = tokio::spawn(async move {
        let _ = peer.write_all(&flood).await;
        let mut rest = Vec::new();
        let _ = peer.read_to_end(&mut rest).await;
        rest
    });
    let line = within(plain.input.read_line(64, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("STARTTLS"));
    plain.output.write_string_utf8("220 go\r\n").await.unwrap();
    let started = Instant::now();
    let upgraded = within(plain.tls_server(&config)).await;
    assert!(matches!(upgraded, Err(Error::Handshake(_))), "{upgraded:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let _ = within(writer).await;
    selector.close();
}

/// A listener with `max_connections(1)`: each failed STARTTLS upgrade (garbage, a reset during
/// the handshake, a dropped upgrade) gives its slot back, so the next client is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_starttls_upgrades_give_the_listeners_slot_back() {
    let selector = SelectorManager::new();
    let listener = tcp_listener_with(&selector, |builder| builder.max_connections(1)).await;
    let pki = Pki::generate();
    let config = pki
        .server_config()
        .handshake_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let port = listener.port().unwrap();
    for how in ["garbage", "reset", "dropped", "fin"] {
        let (accepted, peer) = within(async {
            tokio::join!(listener.accept(), TcpStream::connect(("127.0.0.1", port)))
        })
        .await;
        let mut peer = peer.unwrap();
        let mut plain = accepted.unwrap().connection().unwrap();
        peer.write_all(b"STARTTLS\r\n").await.unwrap();
        let line = within(plain.input.read_line(64, LineEnding::Default)).await;
        assert_eq!(line.unwrap().as_deref(), Some("STARTTLS"));
        plain.output.write_string_utf8("220 go\r\n").await.unwrap();
        let mut upgrade = Box::pin(plain.tls_server(&config));
        assert!(
            net_tests::pending_after_one_poll(upgrade.as_mut()).await,
            "{how}"
        );
        let mut reply = [0; 8];
        within(peer.read_exact(&mut reply)).await.unwrap();
        match how {
            "garbage" => {
                peer.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
                let e = within(upgrade).await.map(|_| ()).unwrap_err();
                assert!(matches!(e, Error::Handshake(_)), "{how}: {e:?}");
            }
            "reset" => {
                net_tests::fault::reset(peer);
                let e = within(upgrade).await.map(|_| ()).unwrap_err();
                assert!(!matches!(e, Error::HandshakeTimeout(_)), "{how}: {e:?}");
                peer = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                let next = within(listener.accept()).await.unwrap();
                drop(next);
                drop(peer);
                continue;
            }
            "dropped" => drop(upgrade),
            _ => {
                peer.shutdown().await.unwrap();
                let e = within(upgrade).await.map(|_| ()).unwrap_err();
                assert!(!matches!(e, Error::HandshakeTimeout(_)), "{how}: {e:?}");
            }
        }
        let mut rest = Vec::new();
        let _ = within(peer.read_to_end(&mut rest)).await;
    }
    // The slot is free: one more client is accepted.
    let (accepted, _peer) =
        within(async { tokio::join!(listener.accept(), TcpStream::connect(("127.0.0.1", port))) })
            .await;
    accepted.unwrap();
    selector.close();
}

/// A python3 STARTTLS server (OpenSSL): greets, reads `STARTTLS`, answers `220 go`, then runs
/// TLS (1.2 or 1.3 as argv[3] says): reads one line and sends it back upper-cased, then ends
/// with `close_notify` (`unwrap`) and closes.
const PYTHON_STARTTLS_SERVER: &str = r#"
import socket, ssl, sys
chain, key, version = sys.argv[1:4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(chain, key)
v = ssl.TLSVersion.TLSv1_3 if version == "13" else ssl.TLSVersion.TLSv1_2
ctx.minimum_version = v
ctx.maximum_version = v
server = socket.create_server(("127.0.0.1", 0))
print("listening at 127.0.0.1:%d" % server.getsockname()[1], flush=True)
raw, _ = server.accept()
raw.sendall(b"220 python ready\r\n")
line = b""
while not line.endswith(b"\n"):
    line += raw.recv(1)
assert line == b"STARTTLS\r\n", line
raw.sendall(b"220 go\r\n")
tls = ctx.wrap_socket(raw, server_side=True)
got = b""
while not got.endswith(b"\n"):
    chunk = tls.recv(1024)
    if not chunk:
        break
    got += chunk
tls.sendall(got.upper())
raw2 = tls.unwrap()
raw2.close()
print("done", got.decode().strip(), flush=True)
"#;

/// Our STARTTLS client against python3's `ssl` server, TLS 1.2 and 1.3: the plain text, the
/// upgrade, a line each way, and a clean end (python's `close_notify`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_starttls_client_against_python_ssl() {
    use net_tests::harness::{Process, path_arg, port_at_end};
    let pki = Pki::generate();
    let files = pki.temp_files();
    for version in ["12", "13"] {
        let mut python = Process::start(
            "python3",
            [
                "-c",
                PYTHON_STARTTLS_SERVER,
                path_arg(&files.server_chain),
                path_arg(&files.server_key),
                version,
            ],
        );
        let port = port_at_end(&tokio::task::block_in_place(|| python.stdout_line()));
        let selector = SelectorManager::new();
        let socket = net_tests::loopback::connect(&selector, ("localhost", port)).await;
        let mut plain = socket.connection().unwrap();
        let greeting = within(plain.input.read_line(64, LineEnding::Default)).await;
        assert_eq!(greeting.unwrap().as_deref(), Some("220 python ready"));
        plain
            .output
            .write_string_utf8("STARTTLS\r\n")
            .await
            .unwrap();
        plain.output.flush().await.unwrap();
        let go = within(plain.input.read_line(64, LineEnding::Default)).await;
        assert_eq!(go.unwrap().as_deref(), Some("220 go"));
        let config = pki.client_config().build().unwrap();
        let tls = within(plain.tls(config)).await.unwrap();
        let mut secure = tls.connection().unwrap();
        secure.output.write_string_utf8("hello\r\n").await.unwrap();
        secure.output.flush().await.unwrap();
        let back = within(secure.input.read_line(64, LineEnding::Default)).await;
        assert_eq!(back.unwrap().as_deref(), Some("HELLO"), "TLS {version}");
        let end = within(secure.input.read_line(64, LineEnding::Default)).await;
        assert_eq!(end.unwrap(), None, "TLS {version}: a clean end");
        within(secure.close_gracefully(Duration::from_secs(2)))
            .await
            .unwrap();
        let done = tokio::task::block_in_place(|| python.stdout_line());
        assert_eq!(done, "done hello", "TLS {version}");
        selector.close();
    }
}

/// More than loopback's socket buffers (both sides) take from a peer that does not read yet.
const TORN: usize = 16 * 1024 * 1024;

/// Reads `peer` until what it read ends with `end` (or the stream ends): `true` when found.
async fn read_through(peer: &mut TcpStream, end: &[u8]) -> bool {
    let mut tail = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match peer.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.ends_with(end) {
                    return true;
                }
                let keep = tail.len().saturating_sub(end.len());
                tail.drain(..keep);
            }
        }
    }
}

/// STARTTLS after a write of the plain-text output was dropped part-way (the socket took a
/// prefix of it, the rest is lost: a stream with a gap, on which, the channel's docs say, no
/// framed protocol can go on) fails with a typed error and closes the socket, as an upgrade
/// after the input was cancelled does, rather than starting TLS on a stream with a gap (whose
/// session could then never end cleanly). On either side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_after_a_plain_write_was_dropped_part_way_fails_typed() {
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let listener = tcp_listener(&selector).await;
    let port = listener.port().unwrap();
    for we_are_server in [true, false] {
        let (accepted, peer) = within(async {
            tokio::join!(listener.accept(), TcpStream::connect(("127.0.0.1", port)))
        })
        .await;
        let mut peer = peer.unwrap();
        let mut plain = accepted.unwrap().connection().unwrap();
        {
            let big = vec![7u8; TORN];
            let writing = std::pin::pin!(plain.output.write_fully(&big));
            assert!(
                net_tests::pending_after_one_poll(writing).await,
                "the socket took {TORN} bytes from a peer that reads nothing"
            );
        }
        plain.output.write_string_utf8("220 go\r\n").await.unwrap();
        // The peer reads everything up to the reply, then starts TLS.
        let peer_side = {
            let client = net_tests::tls::rustls_client(&pki.ca);
            let server = net_tests::tls::rustls_server(&pki.server);
            // Whether its handshake completed.
            tokio::spawn(async move {
                if !read_through(&mut peer, b"220 go\r\n").await {
                    return false;
                }
                if we_are_server {
                    let connector = tokio_rustls::TlsConnector::from(client);
                    let tls = connector.connect(net_tests::tls::localhost(), peer).await;
                    tls.is_ok()
                } else {
                    let acceptor = tokio_rustls::TlsAcceptor::from(server);
                    acceptor.accept(peer).await.is_ok()
                }
            })
        };
        let started = Instant::now();
        let upgraded = if we_are_server {
            let config = pki.server_config().build().unwrap();
            within(plain.tls_server(&config)).await
        } else {
            let config = pki
                .client_config()
                .server_name("localhost")
                .build()
                .unwrap();
            within(plain.tls(config)).await
        };
        let e = upgraded
            .map(|_| ())
            .expect_err("TLS must not start on a stream that misses part of a write");
        assert!(
            matches!(&e, Error::Socket(net_sockets::Error::Io(io))
                if io.kind() == std::io::ErrorKind::BrokenPipe),
            "server {we_are_server}: {e:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "server {we_are_server}"
        );
        assert!(
            !within(peer_side).await.unwrap(),
            "server {we_are_server}: the peer completed a handshake"
        );
    }
    selector.close();
}

/// A plain connection accepted by `listener` whose client sent `STARTTLS` and was answered, and
/// that client.
async fn after_starttls(
    listener: &net_sockets::ServerSocket,
) -> (net_sockets::Connection, TcpStream) {
    let port = listener.port().unwrap();
    let (accepted, peer) =
        within(async { tokio::join!(listener.accept(), TcpStream::connect(("127.0.0.1", port))) })
            .await;
    let mut peer = peer.unwrap();
    let mut plain = accepted.unwrap().connection().unwrap();
    peer.write_all(b"STARTTLS\r\n").await.unwrap();
    let line = within(plain.input.read_line(64, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("STARTTLS"));
    plain.output.write_string_utf8("220 go\r\n").await.unwrap();
    (plain, peer)
}

/// The selector's close, and a listener's graceful shutdown whose grace period ends, while a
/// STARTTLS handshake waits for the ClientHello: the upgrade fails at once with the close's
/// error, and the client sees the connection end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_while_a_starttls_handshake_waits_ends_it_typed() {
    for how in ["selector", "shutdown"] {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let config = Pki::generate()
            .server_config()
            .handshake_timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let (plain, mut peer) = after_starttls(&listener).await;
        let mut upgrade = Box::pin(plain.tls_server(&config));
        assert!(net_tests::pending_after_one_poll(upgrade.as_mut()).await);
        let mut reply = [0; 8];
        within(peer.read_exact(&mut reply)).await.unwrap();
        let started = Instant::now();
        let (upgraded, report) = if how == "selector" {
            selector.close();
            (within(upgrade).await.map(|_| ()), None)
        } else {
            let (upgraded, report) = within(async {
                tokio::join!(upgrade, listener.shutdown(Duration::from_millis(200)))
            })
            .await;
            (upgraded.map(|_| ()), Some(report))
        };
        let e = upgraded.unwrap_err();
        let expected = if how == "selector" {
            matches!(e, Error::Socket(net_sockets::Error::SelectorClosed))
        } else {
            matches!(e, Error::Socket(net_sockets::Error::Closed))
        };
        assert!(expected, "{how}: {e:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "{how}");
        if let Some(report) = report {
            assert_eq!((report.finished, report.cut), (0, 1), "{how}");
        }
        let mut rest = Vec::new();
        let _ = within(peer.read_to_end(&mut rest)).await;
        selector.close();
    }
}

/// A client that pipelines everything it may: `STARTTLS` and its ClientHello in one write, then
/// its Finished and its first command in one write (TLS 1.2 and 1.3). Our server's upgrade
/// takes the ClientHello from what its channel buffered with the command, and its first read
/// over TLS returns the command that came with the Finished, without waiting for more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_pipelines_hello_and_first_command_is_served() {
    use net_tls::rustls;
    use std::io::Write as _;
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let pki = Pki::generate();
    let port = listener.port().unwrap();
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = pki.server_config().build().unwrap();
        let (accepted, tcp) = within(async {
            tokio::join!(listener.accept(), TcpStream::connect(("127.0.0.1", port)))
        })
        .await;
        let mut tcp = tcp.unwrap();
        let client_config = rustls::ClientConfig::builder_with_provider(net_tests::tls::provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates({
                let mut roots = rustls::RootCertStore::empty();
                roots.add(pki.ca.der()).unwrap();
                roots
            })
            .with_no_client_auth();
        let mut conn = rustls::ClientConnection::new(
            std::sync::Arc::new(client_config),
            net_tests::tls::localhost(),
        )
        .unwrap();
        let mut first = b"STARTTLS\r\n".to_vec();
        first.extend(net_tests::tls::records(&mut conn));
        tcp.write_all(&first).await.unwrap();
        let mut plain = accepted.unwrap().connection().unwrap();
        let line = within(plain.input.read_line(64, LineEnding::Default)).await;
        assert_eq!(line.unwrap().as_deref(), Some("STARTTLS"));
        plain.output.write_string_utf8("220 go\r\n").await.unwrap();
        let server = tokio::spawn(async move {
            let tls = plain.tls_server(&config).await.unwrap();
            let mut connection = tls.connection().unwrap();
            let line = connection.input.read_line(64, LineEnding::Default).await;
            (connection, line)
        });
        // The reply, then the server's flight, taken in until the handshake is done on our side.
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while !got.starts_with(b"220 go\r\n") || got.len() < 8 {
            let n = within(tcp.read(&mut buf)).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        let mut rest = got.split_off(8);
        while conn.is_handshaking() {
            let mut slice = &rest[..];
            while !slice.is_empty() {
                conn.read_tls(&mut slice).unwrap();
                conn.process_new_packets().unwrap();
            }
            if !conn.is_handshaking() {
                break;
            }
            if conn.wants_write() {
                // TLS 1.2: the client's second flight, before the server's Finished.
                tcp.write_all(&net_tests::tls::records(&mut conn))
                    .await
                    .unwrap();
            }
            let n = within(tcp.read(&mut buf)).await.unwrap();
            assert!(n > 0, "{version:?}: the server ended the handshake");
            rest = buf[..n].to_vec();
        }
        // TLS 1.3: the client's Finished and the first command in one write (TLS 1.2: the
        // command alone, its Finished went before the server's).
        conn.writer().write_all(b"EHLO pipelined\r\n").unwrap();
        tcp.write_all(&net_tests::tls::records(&mut conn))
            .await
            .unwrap();
        let (_connection, line) = within(server).await.unwrap();
        assert_eq!(
            line.unwrap().as_deref(),
            Some("EHLO pipelined"),
            "{version:?}"
        );
    }
    selector.close();
}
