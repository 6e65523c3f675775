//! A first-time user's programs, each asserting what the documentation promises where the
//! other test files do not already: length-prefixed RPC over TLS with `Framed` on one side and
//! the channels' frames on the other, a STARTTLS line protocol over a Unix socket with the
//! ClientHello in the command's write, a `copy_bidirectional` proxy read with
//! `BufReader::lines()`, the server toolkit under several rude clients at once, and how a
//! frame cut short surfaces through `read_frame`.

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use futures_sink::Sink;
use net_io::LineEnding;
use net_sockets::{Error, SelectorManager, a_socket};
use net_tests::loopback::tcp_listener;
use net_tests::pki::Pki;
use net_tests::{payload, within};
use net_tls::TlsExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

async fn send<S: Sink<Bytes> + Unpin>(s: &mut S, item: Bytes) -> Result<(), S::Error> {
    poll_fn(|cx| Pin::new(&mut *s).poll_ready(cx)).await?;
    Pin::new(&mut *s).start_send(item)?;
    poll_fn(|cx| Pin::new(&mut *s).poll_flush(cx)).await
}

fn answer(request: &[u8]) -> Bytes {
    let mut out = b"re:".to_vec();
    out.extend_from_slice(request);
    Bytes::from(out)
}

/// Length-prefixed RPC over TLS: the server is `Framed` over `into_stream()`, the client
/// uses the channels' `write_frame` / `read_frame`. Ping-pong, then pipelined, then a
/// half-close: the server answers everything, then shuts down; both see clean ends.
#[tokio::test]
async fn length_prefixed_rpc_over_tls_framed_and_channels() {
    let pki = Pki::generate();
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let port = listener.port().unwrap();
    let server_config = pki.server_config().build().unwrap();
    let server = tokio::spawn(async move {
        let tls = listener.accept().await?.tls_server(&server_config).await?;
        let stream = tls.into_stream()?;
        let mut framed = Framed::new(stream, LengthDelimitedCodec::new());
        let mut served = 0usize;
        while let Some(request) = next(&mut framed).await {
            let request = request?;
            send(&mut framed, answer(&request)).await?;
            served += 1;
        }
        let mut stream = framed.into_inner();
        stream.shutdown().await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(served)
    });

    let client = within(net_tests::tls::connect(
        &selector,
        "localhost",
        port,
        pki.client_config().build().unwrap(),
    ))
    .await
    .unwrap();
    let mut connection = client.connection().unwrap();
    let mut codec = LengthDelimitedCodec::new();
    // Ping-pong, sizes across record boundaries.
    for (i, size) in [0usize, 1, 100, 16 * 1024, 16 * 1024 + 1, 200_000]
        .into_iter()
        .enumerate()
    {
        let request = Bytes::from(payload(size));
        connection
            .output
            .write_frame(&mut codec, request.clone())
            .await
            .unwrap();
        connection.output.flush().await.unwrap();
        let reply = within(connection.input.read_frame(&mut codec))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&reply[..], &answer(&request)[..], "ping-pong {i}");
    }
    // Pipelined.
    let pipelined = 500;
    for i in 0..pipelined {
        let request = Bytes::from(format!("request {i}"));
        connection
            .output
            .write_frame(&mut codec, request)
            .await
            .unwrap();
    }
    connection.output.flush_and_close().await.unwrap();
    for i in 0..pipelined {
        let reply = within(connection.input.read_frame(&mut codec))
            .await
            .unwrap();
        assert_eq!(
            reply.as_deref(),
            Some(format!("re:request {i}").as_bytes()),
            "pipelined {i}"
        );
    }
    let end = within(connection.input.read_frame(&mut codec))
        .await
        .unwrap();
    assert_eq!(end, None, "a clean end after the server's shutdown");
    let served = within(server).await.unwrap().unwrap();
    assert_eq!(served, 6 + pipelined);
}

/// A proxy: `copy_bidirectional` between our accepted socket's stream and a plain tokio
/// `TcpStream` to a tokio echo upstream; the client reads with `BufReader::lines()` over our
/// read channel and ends with `AsyncWriteExt::shutdown` on our write channel.
#[tokio::test]
async fn copy_bidirectional_proxy_with_lines_and_shutdown() {
    let selector = SelectorManager::new();
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_address = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = upstream.accept().await.unwrap();
        let (mut r, mut w) = stream.split();
        tokio::io::copy(&mut r, &mut w).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let listener = tcp_listener(&selector).await;
    let address = listener.local_address();
    let proxy = tokio::spawn(async move {
        let mut client = listener.accept().await?.into_stream()?;
        let mut upstream = tokio::net::TcpStream::connect(upstream_address).await?;
        let moved = tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
        Ok::<_, std::io::Error>(moved)
    });
    let mut socket = within(a_socket(&selector).tcp().connect(address))
        .await
        .unwrap();
    let input = socket.open_read_channel().unwrap();
    let mut output = socket.open_write_channel(false).unwrap();
    let mut sent = 0u64;
    let mut lines = input.lines();
    for i in 0..100 {
        let line = format!("line {i} {}\n", "x".repeat(i * 37));
        sent += line.len() as u64;
        output.write_all(line.as_bytes()).await.unwrap();
        if i % 10 == 9 {
            output.flush().await.unwrap();
            for j in i - 9..=i {
                let got = within(lines.next_line()).await.unwrap();
                assert_eq!(got, Some(format!("line {j} {}", "x".repeat(j * 37))));
            }
        }
    }
    output.shutdown().await.unwrap();
    assert_eq!(within(lines.next_line()).await.unwrap(), None);
    let moved = within(proxy).await.unwrap().unwrap();
    assert_eq!(moved, (sent, sent));
}

/// STARTTLS over a Unix socket: the client sends `STARTTLS` and its ClientHello in one
/// write; the server answers the command in plain text, then upgrades; nothing is lost.
#[tokio::test]
async fn starttls_over_unix_with_the_client_hello_in_the_command_write() {
    use std::io::{Read, Write};
    let pki = Pki::generate();
    let server_config = pki.server_config().build().unwrap();
    let dir = net_tests::TempDir::new("user-journey-unix");
    let path = dir.path().join("s.sock");
    let selector = SelectorManager::new();
    let listener = a_socket(&selector)
        .tcp()
        .bind(net_sockets::UnixSocketAddress::new(&path))
        .await
        .unwrap();
    let server = tokio::spawn(async move {
        let socket = listener.accept().await?;
        let mut plain = socket.connection()?;
        plain.output.write_string_utf8("220 ready\r\n").await?;
        plain.output.flush().await?;
        let mut lines = Vec::new();
        loop {
            let line = plain.input.read_line(1024, LineEnding::Default).await?;
            let line = line.expect("a command");
            if line == "STARTTLS" {
                plain.output.write_string_utf8("220 go\r\n").await?;
                break;
            }
            plain
                .output
                .write_string_utf8(&format!("250 {line}\r\n"))
                .await?;
            plain.output.flush().await?;
            lines.push(line);
        }
        let tls = plain.tls_server(&server_config).await?;
        let mut secure = tls.connection()?;
        while let Some(line) = secure.input.read_line(1024, LineEnding::Default).await? {
            secure
                .output
                .write_string_utf8(&format!("secure {line}\r\n"))
                .await?;
            secure.output.flush().await?;
            lines.push(line);
        }
        secure.output.flush_and_close().await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(lines)
    });

    let config = net_tests::tls::rustls_client_config(&pki.ca, net_tls::rustls::DEFAULT_VERSIONS);
    let client = tokio::task::spawn_blocking(move || {
        let mut session =
            net_tls::rustls::ClientConnection::new(config, net_tests::tls::localhost()).unwrap();
        let mut socket = std::os::unix::net::UnixStream::connect(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let read_line = |socket: &mut std::os::unix::net::UnixStream| {
            let mut line = Vec::new();
            let mut byte = [0u8];
            while !line.ends_with(b"\r\n") {
                socket.read_exact(&mut byte).unwrap();
                line.push(byte[0]);
            }
            String::from_utf8(line).unwrap()
        };
        assert_eq!(read_line(&mut socket), "220 ready\r\n");
        for word in ["one", "two"] {
            socket.write_all(format!("{word}\r\n").as_bytes()).unwrap();
            assert_eq!(read_line(&mut socket), format!("250 {word}\r\n"));
        }
        let mut first = b"STARTTLS\r\n".to_vec();
        session.write_tls(&mut first).unwrap();
        assert!(first.len() > 100, "the ClientHello follows the command");
        socket.write_all(&first).unwrap();
        assert_eq!(read_line(&mut socket), "220 go\r\n");
        let mut tls = net_tls::rustls::StreamOwned::new(session, socket);
        let mut replies = String::new();
        for word in ["three", "four"] {
            tls.write_all(format!("{word}\r\n").as_bytes()).unwrap();
            tls.flush().unwrap();
        }
        tls.conn.send_close_notify();
        tls.flush().unwrap();
        tls.read_to_string(&mut replies).unwrap();
        replies
    });
    let replies = within(client).await.unwrap();
    assert_eq!(replies, "secure three\r\nsecure four\r\n");
    let lines = within(server).await.unwrap().unwrap();
    assert_eq!(lines, ["one", "two", "three", "four"]);
}

type Report = (String, Result<usize, Error>);

/// The toolkit server of the guide: one task per connection, greeting lines, the shutdown
/// signal beside the read, `close_gracefully` at the end; each connection reports its address
/// and how it ended (the count of lines answered, or the error).
async fn serve_toolkit(
    socket: net_sockets::Socket,
    reports: tokio::sync::mpsc::UnboundedSender<Report>,
) {
    let remote = socket.remote_address().to_string();
    let result = async {
        let mut connection = socket.connection()?;
        let mut answered = 0;
        loop {
            let line = tokio::select! {
                biased;
                line = connection.input.read_line(1024, LineEnding::Default) => line?,
                () = connection.socket.shutdown_requested() => {
                    connection.output.write_string_utf8("bye\n").await?;
                    break;
                }
            };
            let Some(name) = line else { break };
            connection
                .output
                .write_string_utf8(&format!("Hello, {name}!\n"))
                .await?;
            connection.output.flush().await?;
            answered += 1;
        }
        connection
            .close_gracefully(Duration::from_millis(500))
            .await?;
        Ok::<_, Error>(answered)
    }
    .await;
    let _ = reports.send((remote, result));
}

async fn report_of(
    reports: &mut tokio::sync::mpsc::UnboundedReceiver<Report>,
    address: &str,
) -> Result<usize, Error> {
    let (from, result) = within(reports.recv()).await.expect("a report");
    assert_eq!(
        from, address,
        "a report from another connection: {result:?}"
    );
    result
}

async fn round_trip(stream: &mut tokio::io::BufReader<tokio::net::TcpStream>, name: &str) {
    stream
        .get_mut()
        .write_all(format!("{name}\n").as_bytes())
        .await
        .unwrap();
    let mut line = String::new();
    within(stream.read_line(&mut line)).await.unwrap();
    assert_eq!(line, format!("Hello, {name}!\n"));
}

/// The toolkit under rude clients: caps, idle timeout, an optional PROXY header, graceful
/// shutdown; a well-behaved client is answered throughout.
#[tokio::test]
async fn a_toolkit_server_under_rude_clients() {
    let selector = SelectorManager::new();
    let timeout = Duration::from_secs(1);
    let listener = a_socket(&selector)
        .tcp()
        .socket_timeout(timeout)
        .max_connections(5)
        .max_connections_per_ip(3)
        .proxy_protocol(net_sockets::ProxyProtocol::Optional)
        .proxy_header_timeout(Duration::from_millis(200))
        .send_buffer_size(4096)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let address = listener.local_address().to_string();
    let listener = std::sync::Arc::new(listener);
    let (tx, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let accepting = {
        let listener = std::sync::Arc::clone(&listener);
        tokio::spawn(async move {
            while let Ok(socket) = listener.accept().await {
                tokio::spawn(serve_toolkit(socket, tx.clone()));
            }
        })
    };
    let connect = || async {
        let stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let local = stream.local_addr().unwrap().to_string();
        (tokio::io::BufReader::new(stream), local)
    };
    let (mut good, _) = connect().await;
    round_trip(&mut good, "good").await;
    // The well-behaved client talks all along, within its idle timeout.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let keeper = tokio::spawn(async move {
        let mut n = 0usize;
        loop {
            round_trip(&mut good, &format!("good {n}")).await;
            n += 1;
            tokio::select! {
                _ = &mut stopped => return (good, n),
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    });

    // RST in the middle of a request.
    let (mut rude, rude_address) = connect().await;
    round_trip(&mut rude, "first").await;
    rude.get_mut().write_all(b"half a li").await.unwrap();
    net_tests::fault::reset(rude.into_inner());
    let e = report_of(&mut reports, &rude_address).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e:?}");

    // Slowloris: a line a byte at a time, each within the timeout, the whole longer than it.
    let (mut slow, slow_address) = connect().await;
    let line = b"slowly\n";
    let mut interval = tokio::time::interval(timeout * 3 / 10);
    for byte in line {
        interval.tick().await;
        slow.get_mut().write_all(&[*byte]).await.unwrap();
    }
    let mut reply = String::new();
    within(slow.read_line(&mut reply)).await.unwrap();
    assert_eq!(reply, "Hello, slowly!\n");
    // Then stops in the middle of a line: the idle timeout.
    slow.get_mut().write_all(b"stuck").await.unwrap();
    let e = report_of(&mut reports, &slow_address).await.unwrap_err();
    assert!(matches!(e, Error::Timeout), "{e:?}");
    let mut rest = Vec::new();
    let end = within(tokio::io::AsyncReadExt::read_to_end(&mut slow, &mut rest)).await;
    assert!(
        end.is_ok() || end.as_ref().unwrap_err().kind() == std::io::ErrorKind::ConnectionReset,
        "{end:?}"
    );

    // A client that never reads its replies.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let deaf = socket.connect(address.parse().unwrap()).await.unwrap();
    let deaf_address = deaf.local_addr().unwrap().to_string();
    let (_deaf_read, mut deaf_write) = deaf.into_split();
    let flood = tokio::spawn(async move {
        let chunk = "x\n".repeat(4096);
        for _ in 0..200 {
            if deaf_write.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
        }
        deaf_write
    });
    let e = report_of(&mut reports, &deaf_address).await.unwrap_err();
    assert!(matches!(e, Error::Timeout), "{e:?}");
    drop(within(flood).await);

    // A PROXY v1 header: the named client is the remote address.
    let (mut proxied, _) = connect().await;
    proxied
        .get_mut()
        .write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 80\r\n")
        .await
        .unwrap();
    round_trip(&mut proxied, "proxied").await;

    stop.send(()).unwrap();
    let (mut good, rounds) = within(keeper).await.unwrap();
    assert!(rounds > 10, "{rounds}");
    // Per-IP cap: good and proxied are this address's (the proxied one counts as 192.0.2.7).
    let (mut second, _) = connect().await;
    round_trip(&mut second, "second").await;
    let (mut third, _) = connect().await;
    round_trip(&mut third, "third").await;
    let (mut refused, _) = connect().await;
    refused.get_mut().write_all(b"refused\n").await.unwrap();
    let mut rest = Vec::new();
    let end = within(tokio::io::AsyncReadExt::read_to_end(
        &mut refused,
        &mut rest,
    ))
    .await;
    assert!(rest.is_empty(), "{rest:?} {end:?}");
    assert_eq!(listener.stats().refused_per_ip, 1);
    // max_connections(5): good, proxied, second, third and one from 127.0.0.2 are open; the
    // next one waits.
    let fifth = a_socket(&selector)
        .tcp()
        .local_address(net_sockets::InetSocketAddress::new([127, 0, 0, 2], 0))
        .connect(address.clone());
    let mut fifth = within(fifth).await.unwrap().connection().unwrap();
    fifth.output.write_string_utf8("fifth\n").await.unwrap();
    fifth.output.flush().await.unwrap();
    let line = within(fifth.input.read_line(1024, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("Hello, fifth!"));
    let waiting = a_socket(&selector)
        .tcp()
        .local_address(net_sockets::InetSocketAddress::new([127, 0, 0, 2], 0))
        .connect(address.clone());
    let waiting = within(waiting).await.unwrap();
    let mut waiting = waiting.connection().unwrap();
    waiting.output.write_string_utf8("waiting\n").await.unwrap();
    waiting.output.flush().await.unwrap();
    let early = tokio::time::timeout(
        Duration::from_millis(100),
        waiting.input.read_line(1024, LineEnding::Default),
    )
    .await;
    assert!(early.is_err(), "served past the cap: {early:?}");
    drop(third);
    let third_report = reports.recv().await.unwrap();
    assert!(matches!(third_report.1, Ok(1)), "{third_report:?}");
    let line = within(waiting.input.read_line(1024, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(line.as_deref(), Some("Hello, waiting!"));

    // Graceful shutdown: every open connection hears `bye`; those that leave finish.
    let shutdown = {
        let listener = std::sync::Arc::clone(&listener);
        tokio::spawn(async move { listener.shutdown(Duration::from_secs(5)).await })
    };
    let line = within(fifth.input.read_line(1024, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("bye"));
    drop(fifth);
    for client in [&mut good, &mut proxied, &mut second] {
        let mut line = String::new();
        within(client.read_line(&mut line)).await.unwrap();
        assert_eq!(line, "bye\n");
        client.get_mut().shutdown().await.unwrap();
        line.clear();
        assert_eq!(within(client.read_line(&mut line)).await.unwrap(), 0);
    }
    let line = within(waiting.input.read_line(1024, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("bye"));
    waiting.output.flush_and_close().await.unwrap();
    assert_eq!(
        within(waiting.input.read_line(1024, LineEnding::Default))
            .await
            .unwrap(),
        None
    );
    let report = within(shutdown).await.unwrap();
    assert_eq!((report.finished, report.cut), (5, 0), "{report:?}");
    within(accepting).await.unwrap();
}

/// A frame cut short by a truncation (no `close_notify`) is reported as the truncation through
/// `read_frame`, and one cut by a clean end as the decoder's leftover-bytes error.
#[tokio::test]
async fn a_frame_cut_short_reports_how_the_stream_ended() {
    let pki = Pki::generate();
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    for clean in [false, true] {
        let (mut server, client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
        let mut connection = client.connection().unwrap();
        connection
            .output
            .write_fully(&[0, 0, 0, 100, 1, 2, 3])
            .await
            .unwrap();
        if clean {
            connection.output.flush_and_close().await.unwrap();
        } else {
            connection.output.flush().await.unwrap();
            connection
                .socket
                .with_sock_ref(|s| s.shutdown(std::net::Shutdown::Write))
                .unwrap();
        }
        let mut input = server.open_read_channel().unwrap();
        let mut codec = LengthDelimitedCodec::new();
        for _ in 0..2 {
            let e = within(input.read_frame(&mut codec)).await.unwrap_err();
            if clean {
                // The decoder's own verdict on leftover bytes at a clean end.
                assert_eq!(e.kind(), std::io::ErrorKind::Other, "{e:?}");
            } else {
                let e = net_io::Error::from(e);
                assert!(net_tests::tls::is_truncated(&e), "{e:?}");
            }
        }
        drop(connection);
    }
}
