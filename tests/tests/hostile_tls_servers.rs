//! Hostile or unusual TLS servers against our TLS client (`socket.tls(config)`), and what our
//! client's close and drop send while rustls still holds records the socket did not take.
//!
//! Each server is a rustls session driven by hand over a raw TCP stream, so that the test
//! decides which records reach our client, in which segments, and when the server reads.

use std::time::Duration;

use net_io::LineEnding;
use net_sockets::{SelectorManager, a_socket};
use net_tests::pki::TestCa;
use net_tests::tls::{hand_server, read_session_to_the_end, records, rustls_localhost_server};
use net_tests::tls::{rustls_error, rustls_server};
use net_tests::within;
use net_tls::TlsExt;
use net_tls::rustls::{self, ServerConnection};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// SPEC §4 ("bytes received before the error are still readable") from the client's side: a
/// server's good record and a corrupted one in one segment. The line comes first, then
/// `DecryptError`, then the same error again.
#[tokio::test]
async fn hostiletls2_our_client_reads_a_line_before_a_corrupted_record_in_one_segment() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("client: line then corrupted record");
    let (mut client, mut tcp, mut conn) =
        hand_server(&selector, &ca, rustls_localhost_server(&ca), None).await;
    let mut input = client.open_read_channel().unwrap();
    std::io::Write::write_all(&mut conn.writer(), b"first line\n").unwrap();
    let mut bytes = records(&mut conn);
    std::io::Write::write_all(&mut conn.writer(), b"second line\n").unwrap();
    let mut bad = records(&mut conn);
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    bytes.extend_from_slice(&bad);
    tcp.write_all(&bytes).await.unwrap();

    let first = within(input.read_line(64, LineEnding::Default)).await;
    assert_eq!(first.unwrap().as_deref(), Some("first line"));
    for _ in 0..2 {
        let e = within(input.read_line(64, LineEnding::Default))
            .await
            .unwrap_err();
        assert_eq!(
            rustls_error(&e),
            Some(&rustls::Error::DecryptError),
            "{e:?}"
        );
    }
    client.close();
}

/// The server sends a line and `close_notify`, then bytes that are no record; it reads nothing
/// (a small receive buffer) until our client wrote its reply and closed (`close`, or
/// `close_gracefully`). It must get all of the reply, then `close_notify`: never a reset.
#[tokio::test]
async fn hostiletls2_bytes_after_the_servers_close_notify_do_not_reset_our_clients_close() {
    const REPLY: usize = 32 * 1024;
    for graceful in [false, true] {
        let selector = SelectorManager::new();
        let ca = TestCa::new("client: after close_notify");
        let (client, mut tcp, mut conn) =
            hand_server(&selector, &ca, rustls_localhost_server(&ca), Some(4096)).await;
        let mut connection = client.connection().unwrap();
        std::io::Write::write_all(&mut conn.writer(), b"hello\n").unwrap();
        conn.send_close_notify();
        tcp.write_all(&records(&mut conn)).await.unwrap();
        let line = within(connection.input.read_line(64, LineEnding::Default)).await;
        assert_eq!(line.unwrap().as_deref(), Some("hello"));
        let end = within(connection.input.read_line(64, LineEnding::Default)).await;
        assert_eq!(end.unwrap(), None, "the server's close_notify");
        tcp.write_all(b"bytes after close_notify").await.unwrap();

        connection
            .output
            .write_fully(&vec![b'r'; REPLY])
            .await
            .unwrap();
        within(connection.output.flush()).await.unwrap();
        if graceful {
            within(connection.close_gracefully(std::time::Duration::from_secs(5)))
                .await
                .unwrap();
        } else {
            connection.socket.close();
        }
        let seen = read_session_to_the_end(&mut tcp, &mut conn).await;
        assert_eq!(
            (seen.0.as_str(), seen.1),
            ("close_notify", REPLY),
            "close_gracefully: {graceful}"
        );
    }
}

/// A write that returned `Ok` while the server read nothing: rustls took its bytes, and holds
/// records the socket did not take. `close()` must deliver every one of them, then
/// `close_notify`; a drop without `close` sends no `close_notify` (the docs' truncation), so
/// the server never sees a clean end after part of what was accepted.
#[tokio::test]
async fn hostiletls2_records_rustls_holds_leave_with_close_and_a_drop_is_a_truncation() {
    const WRITE: usize = 8 * 1024 * 1024;
    for dropped in [false, true] {
        let selector = SelectorManager::new();
        let ca = TestCa::new("client: queued records");
        let (client, mut tcp, mut conn) =
            hand_server(&selector, &ca, rustls_localhost_server(&ca), Some(4096)).await;
        let mut stream = client.into_stream().unwrap();
        let data = vec![b'w'; WRITE];
        // Writes until the socket and rustls take no more (a write that would wait is not
        // made: polled once, it took nothing).
        let mut accepted = 0;
        while accepted < WRITE {
            let polled = std::future::poll_fn(|cx| {
                let pending = std::pin::Pin::new(&mut stream).poll_write(cx, &data[accepted..]);
                std::task::Poll::Ready(pending)
            })
            .await;
            match polled {
                std::task::Poll::Ready(n) => accepted += n.unwrap(),
                std::task::Poll::Pending => break,
            }
        }
        assert!(accepted < WRITE, "the server reads nothing");
        if dropped {
            drop(stream);
        } else {
            stream.close();
            drop(stream);
        }
        let (ended, received) = read_session_to_the_end(&mut tcp, &mut conn).await;
        if dropped {
            assert_ne!(
                ended, "close_notify",
                "a drop after {accepted} bytes accepted"
            );
        } else {
            assert_eq!(
                (ended.as_str(), received),
                ("close_notify", accepted),
                "close after {accepted} bytes accepted"
            );
        }
    }
}

/// A server that stops reading while our client's output still holds bytes: a write cut short
/// (its caller gave up), then `close_gracefully` with a short wait, or `close`. Whatever the
/// server then reads, a clean `close_notify` comes only after every byte the write channel
/// accepted (SPEC §4: a TLS peer never sees a clean close after data was lost).
#[tokio::test]
async fn hostiletls2_a_server_that_stops_reading_never_sees_a_clean_end_after_a_loss() {
    const WRITE: usize = 16 * 1024 * 1024;
    for graceful in [false, true] {
        let selector = SelectorManager::new();
        let ca = TestCa::new("client: server stops reading");
        let (client, mut tcp, mut conn) =
            hand_server(&selector, &ca, rustls_localhost_server(&ca), Some(4096)).await;
        let mut connection = client.connection().unwrap();
        let data = vec![b'w'; WRITE];
        let cut = tokio::time::timeout(
            Duration::from_millis(200),
            connection.output.write_fully(&data),
        )
        .await;
        assert!(cut.is_err(), "the server reads nothing: the write waits");
        let accepted = connection.output.total_bytes_written();
        if graceful {
            let closed = within(connection.close_gracefully(Duration::from_millis(300))).await;
            assert!(closed.is_err(), "{closed:?}");
        } else {
            connection.socket.close();
            drop(connection);
        }
        let (ended, received) = read_session_to_the_end(&mut tcp, &mut conn).await;
        if ended == "close_notify" {
            assert_eq!(
                received as u64, accepted,
                "close_gracefully: {graceful}: close_notify after {received} of {accepted} bytes accepted"
            );
        }
        println!("graceful {graceful}: {ended} after {received} of {accepted}");
    }
}

/// A server that sends a line and `close_notify` as soon as its handshake is done, before our
/// client wrote anything, then closes its TCP stream. Our client reads the line, then a clean end, never a truncation; its
/// `close` after that does not hang.
#[tokio::test]
async fn hostiletls2_a_server_that_speaks_and_ends_before_our_client_writes() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("client: 0.5-RTT data");
    let leaf = ca.server(&["localhost"]);
    let server_config = rustls_server(&leaf);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut conn = ServerConnection::new(server_config).unwrap();
        std::io::Write::write_all(&mut conn.writer(), b"early line\n").unwrap();
        let mut buf = vec![0u8; 16 * 1024];
        let mut sent_flight = false;
        while conn.is_handshaking() {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "our client's end during the handshake");
            let mut slice = &buf[..n];
            while !slice.is_empty() {
                conn.read_tls(&mut slice).unwrap();
                conn.process_new_packets().unwrap();
            }
            if !sent_flight && conn.wants_write() {
                sent_flight = true;
                let flight = records(&mut conn);
                tcp.write_all(&flight).await.unwrap();
            }
        }
        // rustls sends the line once the handshake is done: it, then `close_notify`.
        conn.send_close_notify();
        let rest = records(&mut conn);
        tcp.write_all(&rest).await.unwrap();
        tcp.shutdown().await.unwrap();
        // Reads to our client's end, so that our close is no reset.
        while tcp.read(&mut buf).await.map(|n| n > 0).unwrap_or(false) {}
    });
    let config = ca.client_config().server_name("localhost").build().unwrap();
    let mut client = within(async {
        a_socket(&selector)
            .tcp()
            .connect(("127.0.0.1", port))
            .await
            .unwrap()
            .tls(config)
            .await
    })
    .await
    .expect("our client's handshake");
    let mut input = client.open_read_channel().unwrap();
    let line = within(input.read_line(64, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("early line"));
    let end = within(input.read_line(64, LineEnding::Default)).await;
    assert_eq!(end.unwrap(), None, "the server's close_notify");
    client.close();
    within(server).await.unwrap();
}

/// A server that reads our ClientHello, then resets the connection (or ends it with FIN):
/// the handshake fails with a typed socket error of the kind the OS gave, at once, never a
/// wait for the handshake timeout or a panic.
#[tokio::test]
async fn hostiletls2_a_server_that_resets_or_ends_mid_handshake_gives_a_socket_error() {
    for reset in [true, false] {
        let selector = SelectorManager::new();
        let ca = TestCa::new("client: cut mid-handshake");
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 5];
            tcp.read_exact(&mut buf).await.unwrap();
            assert_eq!(buf[0], 22, "a handshake record");
            if reset {
                socket2::SockRef::from(&tcp)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                drop(tcp);
            } else {
                // Reads the rest of the ClientHello first: the FIN, not a reset.
                let len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
                let mut rest = vec![0u8; len];
                tcp.read_exact(&mut rest).await.unwrap();
                tcp.shutdown().await.unwrap();
                let _ = tcp.read(&mut buf).await;
            }
        });
        let config = ca
            .client_config()
            .server_name("localhost")
            .handshake_timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let socket = a_socket(&selector)
            .tcp()
            .connect(("127.0.0.1", port))
            .await
            .unwrap();
        let e = within(socket.tls(config)).await.unwrap_err();
        within(server).await.unwrap();
        let net_tls::Error::Socket(socket_error) = &e else {
            panic!("reset: {reset}: {e:?}");
        };
        let kind = if reset {
            std::io::ErrorKind::ConnectionReset
        } else {
            std::io::ErrorKind::UnexpectedEof
        };
        assert_eq!(e.kind(), kind, "reset: {reset}: {e:?}");
        println!("reset {reset}: {e:?} / {socket_error}");
    }
}

/// A server that resets the connection while our client's records wait in rustls and in the
/// socket (it read nothing): our client's writes, flush and `flush_and_close` fail with typed
/// errors of the socket's kind, never `Ok` after the reset was seen, and never a panic; the
/// close after them does not hang.
#[tokio::test]
async fn hostiletls2_a_reset_under_queued_records_fails_the_writes_typed() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("client: reset under queued records");
    let (client, tcp, _conn) =
        hand_server(&selector, &ca, rustls_localhost_server(&ca), Some(4096)).await;
    let mut stream = client.into_stream().unwrap();
    let data = vec![b'w'; 8 * 1024 * 1024];
    let mut accepted = 0;
    loop {
        let polled = std::future::poll_fn(|cx| {
            let pending = std::pin::Pin::new(&mut stream).poll_write(cx, &data[accepted..]);
            std::task::Poll::Ready(pending)
        })
        .await;
        match polled {
            std::task::Poll::Ready(n) => accepted += n.unwrap(),
            std::task::Poll::Pending => break,
        }
    }
    socket2::SockRef::from(&tcp)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(tcp);
    let mut kinds = Vec::new();
    for _ in 0..3 {
        match within(stream.write(b"after the reset")).await {
            Ok(n) => kinds.push(format!("Ok({n})")),
            Err(e) => kinds.push(format!("{:?}", e.kind())),
        }
    }
    match within(stream.flush()).await {
        Ok(()) => kinds.push("flush Ok".into()),
        Err(e) => kinds.push(format!("flush {:?}", e.kind())),
    }
    match within(stream.shutdown()).await {
        Ok(()) => kinds.push("shutdown Ok".into()),
        Err(e) => kinds.push(format!("shutdown {:?}", e.kind())),
    }
    println!("after {accepted}: {kinds:?}");
    assert!(!kinds.iter().any(|k| k.contains("Ok")), "{kinds:?}");
    stream.close();
}

/// Our client half-closes (its reply, `close_notify` and FIN wait in its socket: the server
/// reads nothing yet), then reads the server's `close_notify`, which came with more bytes than
/// rustls reads in one go after it (bytes that are no record: TLS says to ignore them). Both
/// directions done, the socket closes itself; left unread, those bytes made the kernel answer
/// that close with a reset, which destroyed the reply still queued for the server. The server
/// must get all of the reply, then `close_notify`.
#[tokio::test]
async fn hostiletls2_bytes_after_close_notify_do_not_reset_the_close_after_both_ends() {
    const REPLY: usize = 32 * 1024;
    let selector = SelectorManager::new();
    let ca = TestCa::new("client: both ends, then bytes after close_notify");
    let (client, mut tcp, mut conn) =
        hand_server(&selector, &ca, rustls_localhost_server(&ca), Some(4096)).await;
    let mut connection = client.connection().unwrap();
    connection
        .output
        .write_fully(&vec![b'r'; REPLY])
        .await
        .unwrap();
    within(connection.output.flush_and_close()).await.unwrap();

    conn.send_close_notify();
    let mut bytes = records(&mut conn);
    bytes.extend_from_slice(&vec![0x17; 64 * 1024]);
    tcp.write_all(&bytes).await.unwrap();
    let end = within(connection.input.read_line(64, LineEnding::Default)).await;
    assert_eq!(end.unwrap(), None, "the server's close_notify");

    let seen = read_session_to_the_end(&mut tcp, &mut conn).await;
    assert_eq!((seen.0.as_str(), seen.1), ("close_notify", REPLY));
    drop(connection);
}
