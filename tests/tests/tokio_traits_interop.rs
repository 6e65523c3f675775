//! tokio I/O trait contracts of the crates' readers and writers, and tokio's own utilities
//! over them (`copy_bidirectional`, `split`, `BufWriter`, `Framed`), plain and TLS.

use std::time::Duration;

use net_sockets::{SelectorManager, a_socket};
use net_tests::fault::raw_peer_of;
use net_tests::loopback::tcp_listener;
use net_tests::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A `TlsStream` that read the peer's clean end and then shut down (the socket then closes
/// itself, both directions being done) answers a second `poll_shutdown` as the plain
/// `SocketStream` does and as the write channel documents ("it may be called again"): `Ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_stream_shutdown_twice_after_the_peers_end() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let pki = net_tests::pki::Pki::generate();
    let (server, client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
    let mut server = server.into_stream().unwrap();
    let mut client = client.into_stream().unwrap();
    client.write_all(b"hi").await.unwrap();
    client.shutdown().await.unwrap();
    let mut v = Vec::new();
    within(server.read_to_end(&mut v)).await.unwrap();
    assert_eq!(v, b"hi");
    server.shutdown().await.unwrap();
    let second = server.shutdown().await;
    let flushed = server.flush().await;
    let mut b = [0u8; 4];
    let again = server.read(&mut b).await;
    let mut v = Vec::new();
    within(client.read_to_end(&mut v)).await.unwrap();
    assert!(v.is_empty());
    assert!(flushed.is_ok(), "flush after shutdown: {flushed:?}");
    assert!(matches!(again, Ok(0)), "read after the end: {again:?}");
    assert!(second.is_ok(), "second shutdown: {second:?}");
}

/// The same on a plain `SocketStream` (the reference behaviour).
#[tokio::test]
async fn plain_stream_shutdown_twice_after_the_peers_end() {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let (mut client, socket) = raw_peer_of(&server).await;
    let mut s = socket.into_stream().unwrap();
    client.write_all(b"hi").await.unwrap();
    client.shutdown().await.unwrap();
    let mut v = Vec::new();
    within(s.read_to_end(&mut v)).await.unwrap();
    s.shutdown().await.unwrap();
    let second = s.shutdown().await;
    let flushed = s.flush().await;
    let mut b = [0u8; 4];
    let again = s.read(&mut b).await;
    assert!(flushed.is_ok(), "flush after shutdown: {flushed:?}");
    assert!(matches!(again, Ok(0)), "read after the end: {again:?}");
    assert!(second.is_ok(), "second shutdown: {second:?}");
}

/// `copy_bidirectional` between a plain `SocketStream` and a `TlsStream`, each side ending
/// first in turn: every byte, both counts, clean ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_bidirectional_plain_to_tls_half_closes_each_way() {
    for plain_first in [false, true] {
        let selector = SelectorManager::new();
        let tls_listener = tcp_listener(&selector).await;
        let plain_listener = tcp_listener(&selector).await;
        let pki = net_tests::pki::Pki::generate();
        let (tls_server, tls_client) =
            net_tests::tls::pair_of(&selector, &tls_listener, &pki).await;
        let (mut plain_peer, plain) = raw_peer_of(&plain_listener).await;
        let relay = tokio::spawn(async move {
            let mut a = tls_server.into_stream().unwrap();
            let mut b = plain.into_stream().unwrap();
            tokio::io::copy_bidirectional(&mut a, &mut b).await
        });
        let mut tls_client = tls_client.into_stream().unwrap();
        let up = net_tests::payload(300_000);
        let down = net_tests::payload(200_001);
        if plain_first {
            plain_peer.write_all(&down).await.unwrap();
            plain_peer.shutdown().await.unwrap();
            let mut v = Vec::new();
            within(tls_client.read_to_end(&mut v)).await.unwrap();
            assert_eq!(v.len(), down.len());
            assert!(v == down);
            tls_client.write_all(&up).await.unwrap();
            tls_client.shutdown().await.unwrap();
            let mut v = Vec::new();
            within(plain_peer.read_to_end(&mut v)).await.unwrap();
            assert!(v == up);
        } else {
            let w = tokio::spawn(async move {
                tls_client.write_all(&up).await.unwrap();
                tls_client.shutdown().await.unwrap();
                tls_client
            });
            let mut v = Vec::new();
            within(plain_peer.read_to_end(&mut v)).await.unwrap();
            assert_eq!(v.len(), 300_000);
            let mut tls_client = w.await.unwrap();
            plain_peer.write_all(&down).await.unwrap();
            plain_peer.shutdown().await.unwrap();
            let mut v = Vec::new();
            within(tls_client.read_to_end(&mut v)).await.unwrap();
            assert!(v == down);
        }
        let r = within(relay).await.unwrap();
        assert_eq!(r.unwrap(), (300_000, 200_001), "plain_first {plain_first}");
    }
}

/// STARTTLS over TCP (coalescing on, the default) with the plain-text part done only through
/// tokio's traits on the connection's channels (`AsyncBufReadExt::read_line`,
/// `AsyncWriteExt::write_all` without a flush): the client's ClientHello comes in the same
/// write as `STARTTLS`; the reply is flushed by the upgrade, the ClientHello fed to TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_after_trait_reads_and_writes_over_tcp() {
    use net_tls::TlsExt;
    use std::io::{Read, Write};
    use tokio::io::AsyncBufReadExt;
    let pki = net_tests::pki::Pki::generate();
    let server_config = pki.server_config().build().unwrap();
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let port = listener.port().unwrap();
    let server = tokio::spawn(async move {
        let socket = listener.accept().await?;
        let mut plain = socket.connection()?;
        plain.output.write_all(b"220 ready\r\n").await?;
        plain.output.flush().await?;
        let mut line = String::new();
        loop {
            line.clear();
            AsyncBufReadExt::read_line(&mut plain.input, &mut line).await?;
            if line == "STARTTLS\r\n" {
                plain.output.write_all(b"220 go\r\n").await?;
                break;
            }
            plain
                .output
                .write_all(format!("250 {}", line).as_bytes())
                .await?;
            plain.output.flush().await?;
        }
        let tls = plain.tls_server(&server_config).await?;
        let mut secure = tls.into_stream()?;
        let mut got = Vec::new();
        secure.read_to_end(&mut got).await?;
        secure.write_all(&got).await?;
        secure.shutdown().await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(got)
    });
    let config = net_tests::tls::rustls_client_config(&pki.ca, net_tls::rustls::DEFAULT_VERSIONS);
    let client = tokio::task::spawn_blocking(move || {
        let mut session =
            net_tls::rustls::ClientConnection::new(config, net_tests::tls::localhost()).unwrap();
        let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let read_line = |socket: &mut std::net::TcpStream| {
            let mut line = Vec::new();
            let mut byte = [0u8];
            while !line.ends_with(b"\r\n") {
                socket.read_exact(&mut byte).unwrap();
                line.push(byte[0]);
            }
            String::from_utf8(line).unwrap()
        };
        assert_eq!(read_line(&mut socket), "220 ready\r\n");
        socket.write_all(b"one\r\n").unwrap();
        assert_eq!(read_line(&mut socket), "250 one\r\n");
        let mut first = b"STARTTLS\r\n".to_vec();
        session.write_tls(&mut first).unwrap();
        socket.write_all(&first).unwrap();
        assert_eq!(read_line(&mut socket), "220 go\r\n");
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
    assert_eq!(within(server).await.unwrap().unwrap(), b"secret");
}

/// Pending trait reads and writes (a stream split with `tokio::io::split`, its two halves in
/// two tasks; the peer neither sends nor reads) are woken by the selector's graceful shutdown
/// once its grace period ends, and by its close: plain and TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_stream_reads_and_writes_are_woken_by_the_selectors_end() {
    for tls in [false, true] {
        for graceful in [false, true] {
            let selector = SelectorManager::new();
            let listener = tcp_listener(&selector).await;
            let pki = net_tests::pki::Pki::generate();
            let (reader, writer, _peer);
            if tls {
                let (server, client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
                let (r, w) = tokio::io::split(server.into_stream().unwrap());
                let r: Box<dyn tokio::io::AsyncRead + Send + Unpin> = Box::new(r);
                let w: Box<dyn tokio::io::AsyncWrite + Send + Unpin> = Box::new(w);
                reader = r;
                writer = w;
                _peer = Box::new(client) as Box<dyn std::any::Any + Send>;
            } else {
                let (client, socket) = raw_peer_of(&listener).await;
                let (r, w) = tokio::io::split(socket.into_stream().unwrap());
                reader = Box::new(r);
                writer = Box::new(w);
                _peer = Box::new(client) as Box<dyn std::any::Any + Send>;
            }
            let mut reader = reader;
            let mut writer = writer;
            let read = tokio::spawn(async move {
                let mut b = [0u8; 100];
                reader.read(&mut b).await
            });
            let write = tokio::spawn(async move {
                let chunk = vec![7u8; 64 * 1024];
                let mut total = 0usize;
                loop {
                    match writer.write(&chunk).await {
                        Ok(n) => total += n,
                        Err(e) => return (total, e),
                    }
                    if total > 512 << 20 {
                        panic!("the peer reads nothing, yet 512 MiB went");
                    }
                }
            });
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(!read.is_finished() && !write.is_finished());
            if graceful {
                within(selector.shutdown(Duration::from_millis(100))).await;
            } else {
                selector.close();
            }
            let r = within(read).await.unwrap();
            let (_, w) = within(write).await.unwrap();
            assert!(r.is_err(), "tls {tls} graceful {graceful}: read {r:?}");
            let _ = w;
        }
    }
}

/// `SocketStream`'s doc: "A write after [`poll_shutdown`] fails with `BrokenPipe`". A
/// `TlsStream` (a `SocketStream<TlsSession>`) whose peer also ended (the socket then closes
/// itself, both directions being done) reports `NotConnected` ("socket closed") instead, where
/// the plain stream reports `EPIPE` in the same situation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_stream_write_after_its_shutdown_is_broken_pipe_after_the_peers_end_too() {
    for shut_first in [false, true] {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let pki = net_tests::pki::Pki::generate();
        let (server, client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
        let mut server = server.into_stream().unwrap();
        let mut client = client.into_stream().unwrap();
        client.write_all(b"hi").await.unwrap();
        client.shutdown().await.unwrap();
        if shut_first {
            server.shutdown().await.unwrap();
        }
        let mut v = Vec::new();
        within(server.read_to_end(&mut v)).await.unwrap();
        if !shut_first {
            server.shutdown().await.unwrap();
        }
        let e = server.write(b"late").await.unwrap_err();
        // The plain stream, the same way.
        let plain_listener = tcp_listener(&selector).await;
        let (mut peer, socket) = raw_peer_of(&plain_listener).await;
        let mut plain = socket.into_stream().unwrap();
        peer.shutdown().await.unwrap();
        if shut_first {
            plain.shutdown().await.unwrap();
        }
        let mut v = Vec::new();
        within(plain.read_to_end(&mut v)).await.unwrap();
        if !shut_first {
            plain.shutdown().await.unwrap();
        }
        let p = plain.write(b"late").await.unwrap_err();
        assert_eq!(p.kind(), std::io::ErrorKind::BrokenPipe, "plain: {p:?}");
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "tls (shutdown before the peer's end: {shut_first}): {e:?} ({e})"
        );
    }
}

/// `copy_bidirectional` between a TLS connection's channels and a plain connection's channels
/// (each joined with `tokio::io::join`), half-closing each way in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_bidirectional_between_tls_and_plain_channels() {
    for plain_first in [false, true] {
        let selector = SelectorManager::new();
        let tls_listener = tcp_listener(&selector).await;
        let plain_listener = tcp_listener(&selector).await;
        let pki = net_tests::pki::Pki::generate();
        let (tls_server, tls_client) =
            net_tests::tls::pair_of(&selector, &tls_listener, &pki).await;
        let (mut plain_peer, plain) = raw_peer_of(&plain_listener).await;
        let relay = tokio::spawn(async move {
            let mut tls_server = tls_server;
            let mut plain = plain;
            let mut a = tokio::io::join(
                tls_server.open_read_channel().unwrap(),
                tls_server.open_write_channel(false).unwrap(),
            );
            let mut b = tokio::io::join(
                plain.open_read_channel().unwrap(),
                plain.open_write_channel(true).unwrap(),
            );
            let r = tokio::io::copy_bidirectional(&mut a, &mut b).await;
            (r, tls_server, plain)
        });
        let mut tls_client = tls_client.into_stream().unwrap();
        let up = net_tests::payload(300_000);
        let down = net_tests::payload(200_001);
        if plain_first {
            plain_peer.write_all(&down).await.unwrap();
            plain_peer.shutdown().await.unwrap();
            let mut v = Vec::new();
            within(tls_client.read_to_end(&mut v)).await.unwrap();
            assert!(v == down);
            tls_client.write_all(&up).await.unwrap();
            tls_client.shutdown().await.unwrap();
            let mut v = Vec::new();
            within(plain_peer.read_to_end(&mut v)).await.unwrap();
            assert!(v == up);
        } else {
            let w = tokio::spawn(async move {
                tls_client.write_all(&up).await.unwrap();
                tls_client.shutdown().await.unwrap();
                tls_client
            });
            let mut v = Vec::new();
            within(plain_peer.read_to_end(&mut v)).await.unwrap();
            assert_eq!(v.len(), 300_000);
            let mut tls_client = w.await.unwrap();
            plain_peer.write_all(&down).await.unwrap();
            plain_peer.shutdown().await.unwrap();
            let mut v = Vec::new();
            within(tls_client.read_to_end(&mut v)).await.unwrap();
            assert!(v == down);
        }
        let (r, _a, _b) = within(relay).await.unwrap();
        assert_eq!(r.unwrap(), (300_000, 200_001), "plain_first {plain_first}");
    }
}

/// BufReader/BufWriter over a TLS connection's channels, `read_exact`, `write_all_buf` with a
/// chained buffer, mixed with the channel's own reads through `BufReader::get_mut` after the
/// `BufReader`'s buffer was used up: every byte once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_wrappers_and_mixed_reads_over_tls_channels() {
    use bytes::Buf;
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let pki = net_tests::pki::Pki::generate();
    let (mut server, client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
    let mut client = client.into_stream().unwrap();
    let input = server.open_read_channel().unwrap();
    let output = server.open_write_channel(false).unwrap();
    let mut w = tokio::io::BufWriter::new(output);
    let mut chain = Buf::chain(&b"head:"[..], &b"tail\n"[..]);
    w.write_all_buf(&mut chain).await.unwrap();
    w.write_all(&net_tests::payload(100_000)).await.unwrap();
    w.shutdown().await.unwrap();
    let mut got = Vec::new();
    within(client.read_to_end(&mut got)).await.unwrap();
    assert_eq!(&got[..10], b"head:tail\n");
    assert!(got[10..] == net_tests::payload(100_000)[..]);
    client
        .write_all(b"0123456789line one\n\x00\x00\x00\x2arest")
        .await
        .unwrap();
    client.shutdown().await.unwrap();
    let mut input = input;
    let mut ten = [0u8; 10];
    within(input.read_exact(&mut ten)).await.unwrap();
    assert_eq!(&ten, b"0123456789");
    let line = within(input.read_line(100, net_io::LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(line.as_deref(), Some("line one"));
    let n = within(tokio::io::AsyncReadExt::read_u32(&mut input))
        .await
        .unwrap();
    assert_eq!(n, 42);
    let mut rest = Vec::new();
    within(input.read_to_end(&mut rest)).await.unwrap();
    assert_eq!(rest, b"rest");
    let mut b = [0u8; 3];
    assert_eq!(input.read(&mut b).await.unwrap(), 0);
}

/// A TLS server (small send buffer) writes length-delimited frames through `FramedWrite` over
/// its write channel (both flush modes) while it reads frames with `FramedRead` over its read
/// channel in another task; the client echoes with `tokio::io::copy` over its split
/// `TlsStream`, reading slowly in small pieces. Every frame comes back once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framed_length_delimited_through_tls_channels_with_a_slow_echo() {
    use futures_sink::Sink;
    use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
    for auto_flush in [false, true] {
        let selector = SelectorManager::new();
        let listener = a_socket(&selector)
            .send_buffer_size(4096)
            .receive_buffer_size(4096)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let pki = net_tests::pki::Pki::generate();
        let (mut server, client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
        let client = client.into_stream().unwrap();
        let echo = tokio::spawn(async move {
            let (r, mut w) = tokio::io::split(client);
            struct Slow<R>(R, u32);
            impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Slow<R> {
                fn poll_read(
                    mut self: std::pin::Pin<&mut Self>,
                    cx: &mut std::task::Context<'_>,
                    buf: &mut tokio::io::ReadBuf<'_>,
                ) -> std::task::Poll<std::io::Result<()>> {
                    self.1 += 1;
                    if self.1.is_multiple_of(3) {
                        cx.waker().wake_by_ref();
                        return std::task::Poll::Pending;
                    }
                    let n = buf.remaining().min(777);
                    let mut tmp = [0u8; 777];
                    let mut small = tokio::io::ReadBuf::new(&mut tmp[..n]);
                    let r = std::pin::Pin::new(&mut self.0).poll_read(cx, &mut small);
                    buf.put_slice(small.filled());
                    r
                }
            }
            let mut r = Slow(r, 0);
            let n = tokio::io::copy(&mut r, &mut w).await?;
            w.shutdown().await?;
            Ok::<_, std::io::Error>(n)
        });
        let input = server.open_read_channel().unwrap();
        let output = server.open_write_channel(auto_flush).unwrap();
        let frames: Vec<Vec<u8>> = (0..400)
            .map(|i| net_tests::payload((i * 7919) % 40_000 + (i % 3)))
            .collect();
        let sent = frames.clone();
        let writer = tokio::spawn(async move {
            let mut w = FramedWrite::new(output, LengthDelimitedCodec::new());
            for f in sent {
                std::future::poll_fn(|cx| {
                    Sink::<bytes::Bytes>::poll_ready(std::pin::Pin::new(&mut w), cx)
                })
                .await?;
                Sink::<bytes::Bytes>::start_send(
                    std::pin::Pin::new(&mut w),
                    bytes::Bytes::from(f),
                )?;
            }
            std::future::poll_fn(|cx| {
                Sink::<bytes::Bytes>::poll_close(std::pin::Pin::new(&mut w), cx)
            })
            .await?;
            Ok::<_, std::io::Error>(())
        });
        let mut reader = FramedRead::new(input, LengthDelimitedCodec::new());
        let mut i = 0;
        while let Some(f) = within(net_tests::loopback::next_item(&mut reader)).await {
            let f = f.unwrap();
            assert!(f[..] == frames[i][..], "frame {i}");
            i += 1;
        }
        assert_eq!(i, frames.len(), "auto_flush {auto_flush}");
        within(writer).await.unwrap().unwrap();
        within(echo).await.unwrap().unwrap();
    }
}
