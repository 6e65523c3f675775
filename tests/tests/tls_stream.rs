//! `TlsSocket::into_stream()`: the TLS socket as one tokio `AsyncRead + AsyncWrite` stream, used
//! by code written against tokio's traits — `tokio::io::copy_bidirectional` in a TLS-terminating
//! relay, and hyper serving HTTP/1.1 to `curl` — with the session queries still answered on
//! the stream.
//!
//! `hyper_serves_http1_over_a_tls_stream_to_curl` needs `curl` on `PATH`, as the interop tests
//! do.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use net_sockets::{SelectorManager, a_socket};
use net_tests::loopback::tcp_listener;
use net_tests::pki::TestCa;
use net_tests::tls::rustls_client;
use net_tests::{payload, within};
use net_tls::{TlsExt, TlsVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A relay that terminates TLS with `into_stream` and `copy_bidirectional` in front of a plain
/// echo server: a client (also a `TlsStream`) sends 1 MiB and half-closes, gets every byte back
/// and a clean end; the relay's copy reports the same count each way; both streams answer the
/// session queries (ALPN, version, SNI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_stream_works_with_copy_bidirectional_and_answers_session_queries() {
    const LEN: usize = 1 << 20;
    let selector = SelectorManager::new();
    let ca = TestCa::new("stream ca");
    let backend = net_tests::loopback::echo_server(&selector).await;
    let backend_port = backend.port().unwrap();
    let config = ca
        .server(&["localhost"])
        .server_config()
        .alpn_protocols(["echo/1"])
        .build()
        .unwrap();
    let listener = tcp_listener(&selector).await;
    let port = listener.port().unwrap();
    let relay = tokio::spawn(async move {
        let tls = net_tests::tls::accept(&listener, &config).await;
        let mut stream = tls.into_stream().unwrap();
        assert_eq!(stream.alpn_protocol(), Some(&b"echo/1"[..]));
        assert_eq!(stream.protocol_version(), Some(TlsVersion::Tls13));
        assert_eq!(stream.server_name(), Some("localhost"));
        assert!(stream.cipher_suite().is_some());
        let mut upstream = TcpStream::connect(("127.0.0.1", backend_port))
            .await
            .unwrap();
        tokio::io::copy_bidirectional(&mut stream, &mut upstream).await
    });

    let socket = a_socket(&selector)
        .tcp()
        .connect(("127.0.0.1", port))
        .await
        .unwrap();
    let config = ca
        .client_config()
        .server_name("localhost")
        .alpn_protocols(["echo/1"])
        .build()
        .unwrap();
    let tls = within(socket.tls(config)).await.unwrap();
    let client = tls.into_stream().unwrap();
    assert_eq!(client.alpn_protocol(), Some(&b"echo/1"[..]));
    assert_eq!(client.server_name(), Some("localhost"));
    assert_eq!(client.peer_certificates().len(), 2, "leaf and CA");
    let (mut reader, mut writer) = tokio::io::split(client);
    let data = payload(LEN);
    let sending = data.clone();
    let sender = tokio::spawn(async move {
        writer.write_all(&sending).await?;
        // close_notify and FIN: the relay's copy toward the echo server ends cleanly.
        writer.shutdown().await?;
        Ok::<_, std::io::Error>(writer)
    });
    let mut echoed = Vec::with_capacity(LEN);
    within(reader.read_to_end(&mut echoed))
        .await
        .expect("every byte back, then a clean end");
    assert_eq!(echoed.len(), LEN);
    assert!(echoed == data, "the echo differs from what was sent");
    let writer = within(sender).await.unwrap().unwrap();
    let copied = within(relay).await.unwrap().unwrap();
    assert_eq!(copied, (LEN as u64, LEN as u64));
    reader.unsplit(writer).close();
    backend.close();
}

/// hyper's HTTP/1.1 server runs over our `TlsStream` (server side, ALPN `http/1.1`), and
/// `curl --http1.1`, verifying our certificate against the test CA, gets the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_serves_http1_over_a_tls_stream_to_curl() {
    const BODY: &str = "hello from hyper over net-tls\n";
    let selector = SelectorManager::new();
    let ca = TestCa::new("hyper ca");
    let config = ca
        .server(&["localhost"])
        .server_config()
        .alpn_protocols(["http/1.1"])
        .build()
        .unwrap();
    let listener = tcp_listener(&selector).await;
    let port = listener.port().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&requests);
    let server = tokio::spawn(async move {
        let tls = net_tests::tls::accept(&listener, &config).await;
        let stream = tls.into_stream().unwrap();
        let alpn = stream.alpn_protocol().map(<[u8]>::to_vec);
        let service = service_fn(move |request: Request<Incoming>| {
            let line = format!(
                "{} {} {:?}",
                request.method(),
                request.uri(),
                request.version()
            );
            seen.lock().unwrap().push(line);
            async move {
                // `connection: close`: hyper shuts the stream down (close_notify) after the
                // response, so the connection's future ends by itself.
                Response::builder()
                    .header("connection", "close")
                    .body(BODY.to_owned())
            }
        });
        let served = http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
        (alpn, served)
    });

    let dir = net_tests::TempDir::new("tls-stream");
    let ca_file = dir.write("ca.pem", ca.pem());
    let ca_path = ca_file.to_str().expect("a UTF-8 path").to_owned();
    let curl = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args([
                "--silent",
                "--show-error",
                "--http1.1",
                "--cacert",
                &ca_path,
            ])
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .arg(format!("https://localhost:{port}/hello"))
            .stdin(Stdio::null())
            .output()
    });
    let output = within(curl)
        .await
        .unwrap()
        .expect("`curl` is needed by this test (Debian: apt-get install curl)");
    assert!(
        output.status.success(),
        "curl {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), BODY);
    let (alpn, served) = within(server).await.unwrap();
    served.expect("hyper served the connection to its end");
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(*requests.lock().unwrap(), ["GET /hello HTTP/1.1"]);
}

/// A `TlsStream` whose peer resets the connection reports the reset on every later read, not
/// the reset once and then a truncation (the kernel reports `ECONNRESET` once, then an end of
/// stream, which rustls would take for a missing `close_notify`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_stream_reports_a_reset_again_on_every_read() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("stream ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = tcp_listener(&selector).await;
    let (mut stream, mut peer) =
        net_tests::tls::accept_stream(&listener, &config, rustls_client(&ca)).await;
    peer.write_all(b"data").await.unwrap();
    peer.flush().await.unwrap();
    let mut buf = [0; 4];
    within(stream.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"data");
    let (tcp, _) = peer.into_inner();
    socket2::SockRef::from(&tcp)
        .set_linger(Some(std::time::Duration::ZERO))
        .unwrap();
    drop(tcp);
    for read in 0..3 {
        let e = within(stream.read(&mut buf)).await.unwrap_err();
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset,
            "read {read}: {e:?}"
        );
        assert_eq!(e.raw_os_error(), Some(libc::ECONNRESET), "read {read}");
    }
}

/// A `TlsStream` whose selector closes reports `SelectorClosed` on every later read, never an
/// end of stream: tokio-rustls takes an error of kind `ConnectionAborted` (the kind of
/// `SelectorClosed`) for the end of reading, and without care the second read would report a
/// clean end the peer never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_stream_reports_its_selectors_close_again_on_every_read() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("stream ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = tcp_listener(&selector).await;
    let (mut stream, mut peer) =
        net_tests::tls::accept_stream(&listener, &config, rustls_client(&ca)).await;
    peer.write_all(b"data").await.unwrap();
    peer.flush().await.unwrap();
    let mut buf = [0; 4];
    within(stream.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"data");
    selector.close();
    for read in 0..3 {
        let e = within(stream.read(&mut buf))
            .await
            .expect_err(&format!("read {read}: an error, not an end of stream"));
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionAborted,
            "read {read}: {e:?}"
        );
        assert!(
            matches!(
                net_sockets::Error::from(e),
                net_sockets::Error::SelectorClosed
            ),
            "read {read}"
        );
    }
    drop(peer);
}

/// A `TlsStream` written to after its own `close` or `poll_shutdown` fails the write, as a plain
/// stream does: bytes that can never reach the peer (the socket is closed, or `close_notify` and
/// FIN already went) are not reported as accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_stream_refuses_writes_after_its_close_or_shutdown() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("stream ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = tcp_listener(&selector).await;
    for shutdown in [true, false] {
        let (mut stream, mut peer) =
            net_tests::tls::accept_stream(&listener, &config, rustls_client(&ca)).await;
        if shutdown {
            within(stream.shutdown()).await.unwrap();
        } else {
            stream.close();
        }
        // An empty write fails too (before the fix, `Ok(0)` after a shutdown).
        for (write, bytes) in [&b"lost\n"[..], b"lost\n", b""].into_iter().enumerate() {
            let e = within(stream.write(bytes))
                .await
                .expect_err(&format!("shutdown {shutdown}, write {write}"));
            if shutdown {
                assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e:?}");
            } else {
                let e = net_sockets::Error::from(e);
                assert!(matches!(e, net_sockets::Error::Closed), "{e:?}");
            }
        }
        // The peer sees the clean end it was sent, and nothing after it.
        let mut rest = Vec::new();
        within(peer.read_to_end(&mut rest)).await.unwrap();
        assert!(rest.is_empty(), "{rest:?}");
    }
}

/// A `TlsStream` flushed or shut down after its own `close` or its selector's close fails with
/// that close's error, `Closed` or `SelectorClosed`, as a plain stream does (and as
/// `TlsWrite`'s docs say of a shutdown). Before, a flush that met the close failed the session as
/// a failed write does, so the shutdown after it reported `BrokenPipe`, "an earlier write
/// failed; the session ends without close_notify" (no write had failed, and `close` had sent
/// `close_notify`), and a shutdown after the selector's close reported `Closed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_stream_flushed_or_shut_down_after_a_close_reports_that_close() {
    let ca = TestCa::new("stream ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    for by_selector in [false, true] {
        for flush_first in [false, true] {
            let selector = SelectorManager::new();
            let listener = tcp_listener(&selector).await;
            let (mut stream, _peer) =
                net_tests::tls::accept_stream(&listener, &config, rustls_client(&ca)).await;
            if by_selector {
                selector.close();
            } else {
                stream.close();
            }
            let case = format!("by the selector: {by_selector}, flushed first: {flush_first}");
            let assert_closed = |what: &str, e: std::io::Error| {
                let shown = format!("{e:?}");
                let kind = if by_selector {
                    std::io::ErrorKind::ConnectionAborted
                } else {
                    std::io::ErrorKind::NotConnected
                };
                assert_eq!(e.kind(), kind, "{case}: {what}: {shown}");
                let closed = match net_sockets::Error::from(e) {
                    net_sockets::Error::SelectorClosed => by_selector,
                    net_sockets::Error::Closed => !by_selector,
                    _ => false,
                };
                assert!(closed, "{case}: {what}: {shown}");
            };
            if flush_first {
                assert_closed("flush", within(stream.flush()).await.expect_err(&case));
            }
            assert_closed(
                "shutdown",
                within(stream.shutdown()).await.expect_err(&case),
            );
        }
    }
}

/// A `TlsStream` that half-closed (`poll_shutdown`: `close_notify` and FIN) and then sees its
/// peer end without `close_notify` reports the truncation on every later read. (With both
/// directions done the socket closes itself, and a read that asked it again would report
/// `Closed` instead.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_tls_stream_reports_a_truncation_again_on_every_read() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("stream ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = tcp_listener(&selector).await;
    let (mut stream, mut peer) =
        net_tests::tls::accept_stream(&listener, &config, rustls_client(&ca)).await;
    within(stream.write_all(b"bye\n")).await.unwrap();
    within(stream.shutdown()).await.unwrap();
    let mut received = Vec::new();
    within(peer.read_to_end(&mut received)).await.unwrap();
    assert_eq!(received, b"bye\n");
    // The peer ends its side without close_notify.
    let (tcp, _) = peer.into_inner();
    drop(tcp);
    let mut buf = [0; 16];
    for read in 0..3 {
        let e = within(stream.read(&mut buf))
            .await
            .expect_err(&format!("read {read}: a truncation, not an end of stream"));
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof,
            "read {read}: {e:?}"
        );
        assert!(
            e.get_ref()
                .is_some_and(|inner| inner.is::<net_tls::Truncated>()),
            "read {read}: {e:?}"
        );
    }
}

/// A read into an empty buffer completes at once (tokio's convention), with nothing to read
/// and the peer silent; reading then goes on as usual.
#[tokio::test]
async fn a_tls_stream_read_into_an_empty_buffer_does_not_wait() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("stream ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = tcp_listener(&selector).await;
    let (mut stream, mut peer) =
        net_tests::tls::accept_stream(&listener, &config, rustls_client(&ca)).await;
    let n = within(stream.read(&mut [])).await.unwrap();
    assert_eq!(n, 0);
    peer.write_all(b"after\n").await.unwrap();
    peer.flush().await.unwrap();
    let mut buf = [0; 6];
    within(stream.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"after\n");
}

/// SPEC §4.2: `TlsStream: AsyncRead + AsyncWrite + Send + Unpin + 'static` (checked when this
/// file compiles).
#[test]
fn a_tls_stream_is_async_read_write_send_unpin_and_static() {
    fn io_type<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static>() {}
    io_type::<net_tls::TlsStream>();
}
