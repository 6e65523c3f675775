//! Rows of `crates/net-sockets/src/guarantees.md` on TLS sessions, runtime ends, cuts, UDP,
//! PROXY headers, linger and adoption whose tests were loose or missing, asserted exactly.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_sockets::{Error, SelectorManager, a_socket};
use net_tests::block_on;
use net_tests::loopback::{tcp_listener, tcp_listener_with};
use net_tests::pki::TestCa;
use net_tests::tls::{manual_pair, records};
use net_tests::{HANG_LIMIT, within};
use net_tls::rustls;
use net_tls::{TlsExt, TlsSocket};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How many bytes the kernel holds unread in `socket`'s receive queue (a peek of up to 4 MiB).
fn unread_in(socket: &TlsSocket) -> usize {
    let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 4 << 20];
    match socket.with_sock_ref(|s| s.peek(&mut buf)) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(e) => panic!("peek: {e:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// TLS: "A client that never sends its ClientHello", the server's side.

/// Row "A client that never sends its ClientHello (or a server that never answers ours)":
/// "Server (client): `HandshakeTimeout(t)`, kind `TimedOut`, after the configured handshake
/// timeout; when the socket's `socket_timeout` is shorter, `Socket(Timeout)`, kind `TimedOut`,
/// after it". The named tests check the server's side only as `HandshakeTimeout(_)` (no `t`,
/// no kind, no timing) and the shorter `socket_timeout` only on the client's side.
#[tokio::test]
async fn a_silent_clients_server_handshake_ends_at_the_first_of_socket_and_handshake_timeouts() {
    const SHORT: Duration = Duration::from_millis(200);
    const LONG: Duration = Duration::from_secs(30);
    let selector = SelectorManager::new();
    let ca = TestCa::new("silent client ca");
    for (socket_timeout, handshake_timeout) in
        [(None, SHORT), (Some(LONG), SHORT), (Some(SHORT), LONG)]
    {
        let listener = tcp_listener_with(&selector, |b| match socket_timeout {
            Some(t) => b.socket_timeout(t),
            None => b,
        })
        .await;
        let config = ca
            .server(&["localhost"])
            .server_config()
            .handshake_timeout(handshake_timeout)
            .build()
            .unwrap();
        let _silent = TcpStream::connect(("127.0.0.1", listener.port().unwrap()))
            .await
            .unwrap();
        let socket = within(listener.accept()).await.unwrap();
        let started = Instant::now();
        let e = within(socket.tls_server(&config))
            .await
            .expect_err("a silent client");
        let took = started.elapsed();
        let case = format!("socket_timeout {socket_timeout:?}, handshake {handshake_timeout:?}");
        assert!(took >= SHORT && took < LONG, "{case}: {took:?} {e:?}");
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{case}: {e:?}");
        if socket_timeout == Some(SHORT) {
            assert!(
                matches!(e, net_tls::Error::Socket(Error::Timeout)),
                "{case}: {e:?}"
            );
        } else {
            assert!(
                matches!(e, net_tls::Error::HandshakeTimeout(t) if t == SHORT),
                "{case}: {e:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// UDP: closes while an operation waits or runs.

/// Row "`close()` of a datagram socket ... while a receive waits (its close or the selector's,
/// also on the thread of the receiving task's runtime)": "That operation fails with
/// `Error::Closed`" (and, by the row above it, `SelectorClosed` for the selector's close). The
/// named test accepts either variant for either close.
#[tokio::test]
async fn a_receive_waiting_as_its_datagram_socket_closes_fails_with_that_closes_variant() {
    for by_selector in [false, true] {
        let selector = SelectorManager::new();
        let socket = Arc::new(
            a_socket(&selector)
                .udp()
                .bind(("127.0.0.1", 0))
                .await
                .unwrap(),
        );
        let address = socket.local_address().as_inet().unwrap().socket_addr();
        let receiver = tokio::spawn({
            let socket = Arc::clone(&socket);
            async move { socket.receive().await }
        });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!receiver.is_finished());
        if by_selector {
            selector.close();
        } else {
            socket.close();
        }
        assert!(
            std::net::UdpSocket::bind(address).is_ok(),
            "by selector {by_selector}"
        );
        let received = within(receiver).await.unwrap();
        if by_selector {
            assert!(
                matches!(received, Err(Error::SelectorClosed)),
                "{received:?}"
            );
        } else {
            assert!(matches!(received, Err(Error::Closed)), "{received:?}");
        }
    }
}

/// Row "`close()` of a datagram socket ... while another thread is in the middle of an
/// operation on it (a send ...)": "That operation fails with `Error::Closed` (or completes,
/// having run before the close)". The named test ends its sender on any error and never looks
/// at it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_racing_its_datagram_sockets_close_fails_with_closed() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let selector = SelectorManager::new();
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = sink.local_addr().unwrap();
    let started = Instant::now();
    let mut rounds = 0u64;
    while rounds < 200 && started.elapsed() < Duration::from_millis(1500) {
        rounds += 1;
        let socket = Arc::new(
            a_socket(&selector)
                .udp()
                .bind(("127.0.0.1", 0))
                .await
                .unwrap(),
        );
        let sent = Arc::new(AtomicUsize::new(0));
        let sender = tokio::spawn({
            let (socket, sent) = (Arc::clone(&socket), Arc::clone(&sent));
            async move {
                for _ in 0..1_000_000 {
                    let datagram = net_sockets::Datagram::new(&b"x"[..], target).unwrap();
                    if let Err(e) = socket.send(datagram).await {
                        return Some(e);
                    }
                    sent.fetch_add(1, Ordering::SeqCst);
                }
                None
            }
        });
        let spin = Duration::from_micros((rounds * 7919) % 300);
        std::thread::spawn({
            let (socket, sent) = (Arc::clone(&socket), Arc::clone(&sent));
            move || {
                let until = Instant::now() + Duration::from_secs(5);
                while sent.load(Ordering::SeqCst) < 3 && Instant::now() < until {
                    std::thread::yield_now();
                }
                let until = Instant::now() + spin;
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
                socket.close();
            }
        })
        .join()
        .unwrap();
        let e = within(sender).await.unwrap();
        assert!(matches!(e, Some(Error::Closed)), "round {rounds}: {e:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Runtime end: later operations polled by no runtime at all.

/// Row "The tokio runtime a selector made by `SelectorManager::new()` uses shuts down ...":
/// "every later operation, polled by another runtime or by none, fails with
/// `Error::SelectorClosed`". The named test polls the later operations on another runtime
/// only; here they are polled with no tokio context at all.
#[test]
fn operations_after_the_selectors_runtime_ended_fail_with_selector_closed_polled_by_no_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ca = TestCa::new("runtime end, no runtime");
    let client_config = ca.client_config().server_name("localhost").build().unwrap();
    let server_config = ca.server(&["localhost"]).server_config().build().unwrap();
    let (selector, listener, client, server_side, udp, tls_client, tls_server) =
        runtime.block_on(async {
            let selector = SelectorManager::new();
            let listener = a_socket(&selector)
                .tcp()
                .socket_timeout(Duration::from_secs(5))
                .bind(("127.0.0.1", 0))
                .await
                .unwrap();
            let (client, server_side) =
                net_tests::loopback::connected_pair(&selector, &listener).await;
            let (tls_client, tls_server) =
                net_tests::loopback::connected_pair(&selector, &listener).await;
            let udp = net_tests::loopback::udp_socket(&selector).await;
            (
                selector,
                listener,
                client,
                server_side,
                udp,
                tls_client,
                tls_server,
            )
        });
    let mut client = client;
    let mut input = client.open_read_channel().unwrap();
    let mut output = client.open_write_channel(true).unwrap();
    runtime.shutdown_timeout(HANG_LIMIT);
    assert!(selector.is_closed());
    let is_closed = |e: &Error| matches!(e, Error::SelectorClosed);
    let e = Error::from(block_on(input.read_line(64, LineEnding::Default)).unwrap_err());
    assert!(is_closed(&e), "read: {e:?}");
    let e = Error::from(block_on(output.write_string_utf8("x\n")).unwrap_err());
    assert!(is_closed(&e), "write: {e:?}");
    let e = block_on(listener.accept()).unwrap_err();
    assert!(is_closed(&e), "accept: {e:?}");
    let e = block_on(udp.receive()).unwrap_err();
    assert!(is_closed(&e), "receive: {e:?}");
    let e = block_on(udp.send(net_sockets::Datagram::new(&b"x"[..], udp.local_address()).unwrap()))
        .unwrap_err();
    assert!(is_closed(&e), "send: {e:?}");
    let e = block_on(
        a_socket(&selector)
            .tcp()
            .connect(("127.0.0.1", listener.port().unwrap_or(1))),
    )
    .unwrap_err();
    assert!(is_closed(&e), "connect: {e:?}");
    let e = block_on(a_socket(&selector).tcp().bind(("127.0.0.1", 0))).unwrap_err();
    assert!(is_closed(&e), "bind: {e:?}");
    let e = block_on(a_socket(&selector).udp().bind(("127.0.0.1", 0))).unwrap_err();
    assert!(is_closed(&e), "udp bind: {e:?}");
    let e = block_on(tls_client.tls(client_config)).unwrap_err();
    assert!(
        matches!(e, net_tls::Error::Socket(Error::SelectorClosed)),
        "tls: {e:?}"
    );
    let e = block_on(tls_server.tls_server(&server_config)).unwrap_err();
    assert!(
        matches!(e, net_tls::Error::Socket(Error::SelectorClosed)),
        "tls_server: {e:?}"
    );
    block_on(server_side.await_closed());
    block_on(selector.shutdown(Duration::from_millis(10)));
    block_on(listener.shutdown(Duration::from_millis(10)));
}

// ---------------------------------------------------------------------------------------------
// TLS: records without data while we half-close.

/// Row "The peer keeps sending TLS 1.3 records that carry no data ... while we `close()` (or
/// half-close: `flush_and_close`, `poll_shutdown`)": "it takes in at most 64 KiB of what the
/// socket holds before its `close_notify`". The named test covers `close()` only, and sees
/// the bound only as a reset. A half-close leaves the socket open, so what it took in can be
/// counted exactly: the kernel's receive queue before and after.
#[tokio::test]
async fn a_half_close_takes_in_at_most_64_kib_of_records_without_data() {
    for stream_view in [false, true] {
        let selector = SelectorManager::new();
        let ca = TestCa::new("no-data records, half-close");
        let config = ca.server(&["localhost"]).server_config().build().unwrap();
        let listener = tcp_listener_with(&selector, |tcp| tcp.receive_buffer_size(1 << 20)).await;
        let (server, _tcp, filled) =
            net_tests::records::no_data_flood(&listener, &ca, &config).await;
        // Until the kernel of our side holds all of it (loopback: at once, but for scheduling).
        let started = Instant::now();
        let before = loop {
            let unread = unread_in(&server);
            if unread >= filled || started.elapsed() > Duration::from_secs(5) {
                break unread;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(
            before, filled,
            "our socket holds {before} of the {filled} bytes sent"
        );
        let (server, after) = if stream_view {
            let mut stream = server.into_stream().unwrap();
            within(stream.shutdown()).await.unwrap();
            // (`into_stream` keeps the socket: ask through a fresh socket ref.)
            let after = {
                let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 4 << 20];
                stream.with_sock_ref(|s| s.peek(&mut buf)).unwrap_or(0)
            };
            (None, after)
        } else {
            let mut server = server;
            let mut output = server.open_write_channel(false).unwrap();
            within(output.flush_and_close()).await.unwrap();
            let after = unread_in(&server);
            (Some(server), after)
        };
        let taken = before - after;
        eprintln!("stream_view {stream_view}: before {before}, after {after}, taken {taken}");
        assert!(
            taken <= 64 * 1024,
            "stream_view {stream_view}: the half-close took in {taken} bytes of records without \
             data (before {before}, after {after})"
        );
        drop(server);
    }
}

// ---------------------------------------------------------------------------------------------
// TLS: a read after a cut returns nothing the cut took in.

/// How the connection is cut.
#[derive(Clone, Copy, Debug)]
enum Cut {
    SelectorClose,
    SelectorShutdown,
    ListenerShutdown,
}

/// Row "We `close()` a TLS socket while the peer's last data waits unread in it": "So after a
/// cut (the selector's close, a graceful shutdown's grace period ending, the runtime's end),
/// which takes the peer's records in as well: the close's error (`SelectorClosed`, or
/// `Closed`; before, the data)". The named test covers the selector's close, a read after it
/// only, and asserts the kind `ConnectionAborted`, not the variant. Here: each cut, with the
/// read made after it and waiting when it came.
#[tokio::test]
async fn a_read_after_each_cut_fails_with_the_cuts_error_never_the_data_it_took_in() {
    let ca = TestCa::new("cuts take in");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    for cut in [
        Cut::SelectorClose,
        Cut::SelectorShutdown,
        Cut::ListenerShutdown,
    ] {
        for waiting in [false, true] {
            if waiting && !matches!(cut, Cut::SelectorClose) {
                // A graceful shutdown yields (its grace period, 0) before it cuts: a read
                // waiting then may take the line before the cut, rightly.
                continue;
            }
            let selector = SelectorManager::new();
            let listener = tcp_listener(&selector).await;
            let (mut server, mut tcp, mut conn) = manual_pair(&listener, &ca, &config).await;
            let mut input = server.open_read_channel().unwrap();
            conn.writer().write_all(b"first\n").unwrap();
            tcp.write_all(&records(&mut conn)).await.unwrap();
            let line = within(input.read_line(64, LineEnding::Default)).await;
            assert_eq!(line.unwrap().as_deref(), Some("first"));
            let (reader, mut input) = if waiting {
                let reader = tokio::spawn(async move {
                    let read = input.read_line(64, LineEnding::Default).await;
                    (read, input)
                });
                (Some(reader), None)
            } else {
                (None, Some(input))
            };
            if waiting {
                for _ in 0..5 {
                    tokio::task::yield_now().await;
                }
            }
            conn.writer().write_all(b"sent as the cut came\n").unwrap();
            tcp.write_all(&records(&mut conn)).await.unwrap();
            // Until our socket holds the record (the runtime has not seen it: no yield).
            let started = Instant::now();
            while unread_in(&server) == 0 {
                assert!(started.elapsed() < Duration::from_secs(5), "no input came");
                std::thread::yield_now();
            }
            match cut {
                Cut::SelectorClose => selector.close(),
                Cut::SelectorShutdown => {
                    within(selector.shutdown(Duration::ZERO)).await;
                }
                Cut::ListenerShutdown => {
                    within(listener.shutdown(Duration::ZERO)).await;
                }
            }
            let read = match reader {
                Some(reader) => within(reader).await.unwrap().0,
                None => {
                    let input = input.as_mut().unwrap();
                    within(input.read_line(64, LineEnding::Default)).await
                }
            };
            let case = format!("{cut:?}, waiting {waiting}");
            let e = read.expect_err(&format!("{case}: a read after the cut returned data"));
            let e = Error::from(e);
            match cut {
                Cut::SelectorClose | Cut::SelectorShutdown => {
                    assert!(matches!(e, Error::SelectorClosed), "{case}: {e:?}");
                }
                Cut::ListenerShutdown => {
                    assert!(
                        matches!(e, Error::Closed | Error::SelectorClosed),
                        "{case}: {e:?}"
                    );
                }
            }
            drop(server);
        }
    }
}

/// The same row, the third cut: the end of the selector's runtime, with the peer's line unread
/// in the socket. A read after it (polled by another runtime) fails with `SelectorClosed`,
/// never returns the line.
#[test]
fn a_read_after_the_runtimes_end_returns_nothing_the_cut_took_in() {
    let ca = TestCa::new("runtime end takes in");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let dying = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (selector, server, input, tcp, conn) = dying.block_on(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let (mut server, mut tcp, mut conn) = manual_pair(&listener, &ca, &config).await;
        let mut input = server.open_read_channel().unwrap();
        conn.writer().write_all(b"first\n").unwrap();
        tcp.write_all(&records(&mut conn)).await.unwrap();
        let line = within(input.read_line(64, LineEnding::Default)).await;
        assert_eq!(line.unwrap().as_deref(), Some("first"));
        conn.writer()
            .write_all(b"sent as the runtime ended\n")
            .unwrap();
        tcp.write_all(&records(&mut conn)).await.unwrap();
        let tcp = tcp.into_std().unwrap();
        (selector, server, input, tcp, conn)
    });
    let started = Instant::now();
    while unread_in(&server) == 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "no input came");
        std::thread::yield_now();
    }
    dying.shutdown_timeout(HANG_LIMIT);
    assert!(selector.is_closed());
    let other = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut input = input;
    let read = other.block_on(async { within(input.read_line(64, LineEnding::Default)).await });
    let e = Error::from(read.expect_err("a read after the runtime's end returned data"));
    assert!(matches!(e, Error::SelectorClosed), "{e:?}");
    drop((server, tcp, conn));
}

// ---------------------------------------------------------------------------------------------
// TLS: a corrupted record.

/// Row "A ciphertext bit flipped on the way": "Our read fails: `net_io::Error::Io`, kind
/// `InvalidData`, inner `rustls::Error::DecryptError`; ... every later read fails the same
/// way". The named test checks the later read of the read channel only as `is_err()`. Here
/// each of three later reads (a line read, a read of what is available, a count-taking read)
/// has the variant, kind and inner error of the first; the peer gets `bad_record_mac`.
#[tokio::test]
async fn a_corrupted_record_fails_every_later_read_of_the_channel_the_same_way() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("corrupted record, channel");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = tcp_listener(&selector).await;
    let (mut server, mut tcp, mut conn) = manual_pair(&listener, &ca, &config).await;
    let mut input = server.open_read_channel().unwrap();
    conn.writer().write_all(b"secret line\n").unwrap();
    let mut bytes = records(&mut conn);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01; // the last byte of the record's tag
    tcp.write_all(&bytes).await.unwrap();
    let shape = |e: &net_io::Error| {
        (
            matches!(e, net_io::Error::Io(_)),
            e.kind(),
            net_tests::tls::rustls_error(e).cloned(),
        )
    };
    let first = within(input.read_line(64, LineEnding::Default))
        .await
        .unwrap_err();
    assert_eq!(
        shape(&first),
        (
            true,
            std::io::ErrorKind::InvalidData,
            Some(rustls::Error::DecryptError)
        ),
        "{first:?}"
    );
    let mut buf = [0u8; 64];
    let again = [
        within(input.read_line(64, LineEnding::Default))
            .await
            .map(|_| ())
            .unwrap_err(),
        within(input.read_available(&mut buf))
            .await
            .map(|_| ())
            .unwrap_err(),
        within(input.read_bytes(4)).await.map(|_| ()).unwrap_err(),
    ];
    for (i, e) in again.iter().enumerate() {
        assert_eq!(shape(e), shape(&first), "later read {i}: {e:?}");
    }
    // The peer gets the fatal alert, though we never wrote.
    let tcp = tcp.into_std().unwrap();
    tcp.set_nonblocking(false).unwrap();
    tcp.set_read_timeout(Some(HANG_LIMIT)).unwrap();
    let mut tcp = tcp;
    let alert = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = std::io::Read::read(&mut tcp, &mut buf).unwrap_or(0);
            if n == 0 {
                return None;
            }
            let mut slice = &buf[..n];
            while !slice.is_empty() {
                conn.read_tls(&mut slice).unwrap();
                if let Err(e) = conn.process_new_packets() {
                    return Some(e);
                }
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(
        alert,
        Some(rustls::Error::AlertReceived(
            rustls::AlertDescription::BadRecordMac
        ))
    );
    server.close();
}

// ---------------------------------------------------------------------------------------------
// PROXY protocol and SO_LINGER.

/// Row "With `ProxyProtocol::Optional`: no header (... or ends its sending (half-closes)
/// before a header could be complete; in the last two cases, what it sent does not begin with
/// a whole signature)": "the connection is handed out as it is, its remote address its own;
/// the bytes read while looking for a header are the read channel's first bytes". The named
/// test sends nothing or `\r\n` before its end; here the start of a signature of each version,
/// then the end: handed out with its bytes. A whole signature followed by the end is a header
/// cut short (the row on malformed headers): dropped and counted.
#[tokio::test]
async fn an_optional_header_begun_then_cut_by_the_clients_end_is_handed_out_before_a_whole_signature()
 {
    use net_sockets::ProxyProtocol;
    use tokio::io::AsyncReadExt;
    let selector = SelectorManager::new();
    let server = a_socket(&selector)
        .tcp()
        .proxy_protocol(ProxyProtocol::Optional)
        .proxy_header_timeout(Duration::from_secs(60))
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = server.port().unwrap();
    // Part of `PROXY`, and 11 of v2's 12 signature bytes.
    let starts: [&[u8]; 2] = [b"PROX", b"\r\n\r\n\0\r\nQUI"];
    for start in starts {
        let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        client.write_all(start).await.unwrap();
        client.shutdown().await.unwrap();
        let mut accepted = within(server.accept()).await.unwrap();
        assert_eq!(accepted.proxy_address(), None, "{start:?}");
        assert_eq!(
            accepted.remote_address(),
            net_sockets::SocketAddress::from(client.local_addr().unwrap()),
            "{start:?}"
        );
        let mut input = accepted.open_read_channel().unwrap();
        let got = within(input.read_remaining(1024)).await.unwrap();
        assert_eq!(&got[..], start);
    }
    assert_eq!(server.stats().proxy_header_failures, 0);
    // A whole signature of each version, then the end: dropped, counted, never handed out.
    let cut: [&[u8]; 2] = [b"PROXY TCP4 192.0.2.1 ", b"\r\n\r\n\0\r\nQUIT\n\x21"];
    for (n, start) in cut.into_iter().enumerate() {
        let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        client.write_all(start).await.unwrap();
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        // The listener reads only while an `accept` runs; it hands nothing out here.
        tokio::select! {
            accepted = server.accept() => panic!("{start:?} handed out: {:?}", accepted.map(|a| a.remote_address())),
            read = within(client.read_to_end(&mut rest)) => {
                assert!(rest.is_empty(), "{start:?}: {rest:?} ({read:?})");
            }
        }
        assert_eq!(
            server.stats().proxy_header_failures,
            n as u64 + 1,
            "{start:?}"
        );
    }
}

/// `ListenerStats::proxy_header_failures`: "a required header is missing also when the
/// connection ended or failed before it was complete". Here it failed (a reset) after nothing,
/// and after part of `PROXY`: each is dropped and counted, where an optional header's
/// connection that failed before a whole signature is dropped without being counted.
#[tokio::test]
async fn a_required_header_cut_by_a_reset_before_a_whole_signature_is_counted() {
    use net_sockets::ProxyProtocol;
    let selector = SelectorManager::new();
    let server = a_socket(&selector)
        .tcp()
        .proxy_protocol(ProxyProtocol::Required)
        .proxy_header_timeout(Duration::from_secs(60))
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = server.port().unwrap();
    for (n, start) in [&b""[..], b"PRO"].into_iter().enumerate() {
        let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        client.write_all(start).unwrap();
        socket2::SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(client);
        let counted = async {
            while server.stats().proxy_header_failures <= n as u64 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        // The listener reads only while an `accept` runs; it hands nothing out here.
        tokio::select! {
            accepted = server.accept() => panic!("{start:?} handed out: {:?}", accepted.map(|a| a.remote_address())),
            () = within(counted) => {}
        }
        assert_eq!(
            server.stats().proxy_header_failures,
            n as u64 + 1,
            "{start:?}"
        );
    }
}

/// Row "A listener with `linger(d)` (or `SO_LINGER` set on it another way), and a connection it
/// refuses or drops before handing it out (one over `max_connections_per_ip`, a bad PROXY
/// header, a failed set-up, the listener's close) ...": "With `linger(Duration::ZERO)` ... such
/// a connection is reset, as every close of the listener's connections is". The named test
/// covers a connection over `max_connections_per_ip` only; here a bad PROXY header, and a
/// connection whose header was read but that the listener's close dropped.
#[tokio::test]
async fn connections_a_listener_with_linger_zero_drops_for_their_header_or_its_close_are_reset() {
    use net_sockets::ProxyProtocol;
    use tokio::io::AsyncReadExt;
    let selector = SelectorManager::new();
    let server = a_socket(&selector)
        .tcp()
        .linger(Duration::ZERO)
        .proxy_protocol(ProxyProtocol::Required)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = server.port().unwrap();
    // A bad header; an `accept` takes it from the kernel.
    let mut bad = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    bad.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let accepted = tokio::time::timeout(Duration::from_millis(300), server.accept()).await;
    assert!(accepted.is_err(), "{accepted:?}");
    let read = within(bad.read(&mut [0; 16])).await;
    assert!(
        matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "a connection dropped for a bad header: {read:?}"
    );
    assert_eq!(server.stats().proxy_header_failures, 1);
    // A connection taken from the kernel by an `accept` that gave up, its header still being
    // read when the listener closes.
    let mut waiting = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let accepted = tokio::time::timeout(Duration::from_millis(300), server.accept()).await;
    assert!(accepted.is_err(), "{accepted:?}");
    server.close();
    let read = within(waiting.read(&mut [0; 16])).await;
    assert!(
        matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "a connection the listener's close dropped: {read:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Adoption: the wrong family, a pipe.

/// What descriptor `fd` is now (`/proc/self/fd`), if open.
fn descriptor_target(fd: std::os::fd::RawFd) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()
}

/// Row "A `std` socket to adopt ... that holds a descriptor of the wrong type, family or IP
/// protocol ..., or a descriptor that is no socket at all (a pipe, a file)": "`Error::Io`, kind
/// `InvalidInput` ...; nothing is adopted | Dropped with the error: the descriptor is closed".
/// The named tests cover the wrong type and protocol, a file and `/dev/null`, and check the
/// kind only. Here the wrong family (a Unix socket in a TCP wrapper and the reverse) and a
/// pipe, each checked for the variant, the kind and the descriptor's close.
#[tokio::test]
async fn sockets_of_the_wrong_family_and_pipes_are_refused_as_invalid_input_and_closed() {
    use net_sockets::{BoundDatagramSocket, Socket};
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};

    let selector = SelectorManager::new();
    let dir = net_tests::TempDir::new("adopt-wrong-family");
    let unix_listener = UnixListener::bind(dir.join("l.sock")).unwrap();
    let (unix_a, _unix_b) = UnixStream::pair().unwrap();
    let (unix_dgram, _unix_dgram_b) = UnixDatagram::pair().unwrap();
    let tcp_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_stream = std::net::TcpStream::connect(tcp_listener.local_addr().unwrap()).unwrap();
    let (pipe_read, _pipe_write) = std::io::pipe().unwrap();

    let check =
        |what: &str, fd: std::os::fd::RawFd, before: Option<std::path::PathBuf>, e: Error| {
            assert!(
                matches!(&e, Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidInput),
                "{what}: {e:?}"
            );
            assert_ne!(
                descriptor_target(fd),
                before,
                "{what}: the descriptor was not closed"
            );
        };
    let fd = unix_a.as_raw_fd();
    let before = descriptor_target(fd);
    let e =
        Socket::from_std(&selector, std::net::TcpStream::from(OwnedFd::from(unix_a))).unwrap_err();
    check("a Unix stream as a TcpStream", fd, before, e);

    let fd = tcp_stream.as_raw_fd();
    let before = descriptor_target(fd);
    let e = Socket::from_std(&selector, UnixStream::from(OwnedFd::from(tcp_stream))).unwrap_err();
    check("a TCP stream as a UnixStream", fd, before, e);

    // (A listener of either family is taken whatever its wrapper, as `ServerSocket::from_std`
    // documents: "not a TCP or Unix stream socket". Not asserted here.)
    drop((unix_listener, tcp_listener));

    let fd = unix_dgram.as_raw_fd();
    let before = descriptor_target(fd);
    let e = BoundDatagramSocket::from_std(
        &selector,
        std::net::UdpSocket::from(OwnedFd::from(unix_dgram)),
    )
    .unwrap_err();
    check("a Unix datagram socket as a UdpSocket", fd, before, e);

    let fd = pipe_read.as_raw_fd();
    let before = descriptor_target(fd);
    let e = Socket::from_std(
        &selector,
        std::net::TcpStream::from(OwnedFd::from(pipe_read)),
    )
    .unwrap_err();
    check("a pipe as a TcpStream", fd, before, e);
}

// ---------------------------------------------------------------------------------------------
// UDP: a send across families.

/// Row "`send` on a socket bound to an IPv4 address (or to an IPv4-mapped one, IPv4 in
/// effect), to an IPv6 address": "`Error::Io` of kind `InvalidInput`, naming both addresses
/// ...; nothing is sent | Goes on: sends to IPv4 peers go through". The named test checks the
/// variant and the kind from an IPv4 socket only; here the message names both addresses, from
/// a socket bound to `127.0.0.1` and to `::ffff:127.0.0.1`, and nothing reaches an IPv6 peer.
#[tokio::test]
async fn an_ipv4_or_mapped_socket_sending_to_ipv6_is_invalid_input_naming_both() {
    if !net_tests::loopback::has_ipv6_loopback() {
        eprintln!("no IPv6 loopback: skipped");
        return;
    }
    let selector = SelectorManager::new();
    let v6_peer = a_socket(&selector).udp().bind(("::1", 0)).await.unwrap();
    let v4_peer = net_tests::loopback::udp_socket(&selector).await;
    for local in ["127.0.0.1", "::ffff:127.0.0.1"] {
        let socket = a_socket(&selector).udp().bind((local, 0)).await.unwrap();
        let to = v6_peer.local_address();
        let e = socket
            .send(net_sockets::Datagram::new("x", to.clone()).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Io(_)), "{local}: {e:?}");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{local}: {e:?}");
        let message = e.to_string();
        assert!(
            message.contains(&socket.local_address().to_string()),
            "{local}: {message}"
        );
        assert!(message.contains(&to.to_string()), "{local}: {message}");
        socket
            .send(net_sockets::Datagram::new("still", v4_peer.local_address()).unwrap())
            .await
            .unwrap();
        let got = within(v4_peer.receive()).await.unwrap();
        assert_eq!(&got.packet[..], b"still", "{local}");
    }
    let nothing = tokio::time::timeout(Duration::from_millis(200), v6_peer.receive()).await;
    assert!(nothing.is_err(), "the IPv6 peer got {nothing:?}");
}

// ---------------------------------------------------------------------------------------------
// TLS: a failed write, then the end.

/// Row "Our write fails (a write timeout that failed the write channel for good ...), then
/// `flush_and_close` / `close`": "The write's error; no `close_notify` is sent, so the peer
/// reads what arrived and then sees `Truncated`". The named test checks `flush_and_close` as
/// `is_err()`, and always calls it before `close`. Here `flush_and_close` reports the write's
/// error (`Timeout`), and a `close()` alone, without it, is no clean end either.
#[tokio::test]
async fn after_a_failed_tls_write_flush_and_close_reports_it_and_close_alone_is_no_clean_end() {
    const TIMEOUT: Duration = Duration::from_millis(300);
    const CHUNK: usize = 64 * 1024;
    let ca = TestCa::new("failed write, exact");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    for half_close_first in [true, false] {
        let selector = SelectorManager::new();
        let listener = tcp_listener_with(&selector, |b| b.socket_timeout(TIMEOUT)).await;
        let port = listener.port().unwrap();
        let (timed_out, stalled) = tokio::sync::oneshot::channel();
        let (close_now, close) = tokio::sync::oneshot::channel::<()>();
        let config = config.clone();
        let server = tokio::spawn(async move {
            let mut tls = net_tests::tls::accept(&listener, &config).await;
            let mut output = tls.open_write_channel(true).unwrap();
            let chunk = net_tests::payload(CHUNK);
            let mut written = 0usize;
            let mut failure = None;
            for _ in 0..1024 {
                match output.write_fully(&chunk).await {
                    Ok(()) => written += CHUNK,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            let _ = timed_out.send((written, failure));
            let _ = within(close).await;
            let closed = if half_close_first {
                Some(output.flush_and_close().await)
            } else {
                None
            };
            tls.close();
            closed
        });
        let client_config = ca.client_config().server_name("localhost").build().unwrap();
        let mut tls = within(net_tests::tls::connect(
            &selector,
            "127.0.0.1",
            port,
            client_config,
        ))
        .await
        .unwrap();
        let mut input = tls.open_read_channel().unwrap();
        let (written, failure) = within(stalled).await.unwrap();
        assert!(
            matches!(failure, Some(net_io::Error::Timeout)),
            "{failure:?}"
        );
        let mut buf = vec![0u8; CHUNK];
        let mut received = 0usize;
        let mut close_now = Some(close_now);
        let end = loop {
            match close_now.take() {
                Some(signal) if received >= written => {
                    let _ = signal.send(());
                }
                taken => close_now = taken,
            }
            match within(input.read_available(&mut buf)).await {
                Ok(0) => break Ok(()),
                Ok(n) => received += n,
                Err(e) => break Err(e),
            }
        };
        let closed = within(server).await.unwrap();
        if half_close_first {
            assert!(
                matches!(closed, Some(Err(net_io::Error::Timeout))),
                "flush_and_close after the failed write: {closed:?}"
            );
        }
        let e = end.expect_err("a truncated stream, not a clean end");
        assert!(
            net_tests::tls::is_truncated(&e),
            "half-close first {half_close_first}: {e:?}"
        );
        tls.close();
    }
}

// ---------------------------------------------------------------------------------------------
// Runtime end: TLS sockets' descriptors.

/// Row "The tokio runtime a selector made by `SelectorManager::new()` uses shuts down ...":
/// "Closed: every socket descriptor is released when the runtime shuts down, though the
/// sockets are still held". The named test holds plain sockets, a listener and a UDP socket;
/// here TLS sockets (both sides, one with a line unread, one with bytes written and not
/// flushed) and a plain one whose write channel holds bytes the peer does not read.
#[test]
fn tls_sockets_held_past_their_runtimes_end_release_their_descriptors() {
    use std::os::fd::AsRawFd;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ca = TestCa::new("runtime end, tls descriptors");
    let server_config = ca.server(&["localhost"]).server_config().build().unwrap();
    let (selector, held, fds) = runtime.block_on(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let (client, server) = net_tests::loopback::connected_pair(&selector, &listener).await;
        let client_config = ca.client_config().server_name("localhost").build().unwrap();
        let (client, server) = within(async {
            tokio::join!(client.tls(client_config), server.tls_server(&server_config))
        })
        .await;
        let (mut client, mut server) = (client.unwrap(), server.unwrap());
        let mut client_out = client.open_write_channel(true).unwrap();
        client_out.write_string_utf8("unread line\n").await.unwrap();
        let mut server_out = server.open_write_channel(false).unwrap();
        server_out.write_string_utf8("never flushed").await.unwrap();
        let (plain, _peer) = net_tests::loopback::connected_pair(&selector, &listener).await;
        let mut plain = plain;
        let mut plain_out = plain.open_write_channel(false).unwrap();
        let chunk = net_tests::payload(64 * 1024);
        for _ in 0..64 {
            let mut write = std::pin::pin!(plain_out.write_fully(&chunk));
            if net_tests::pending_after_one_poll(write.as_mut()).await {
                break;
            }
        }
        let fd = |s: socket2::SockRef<'_>| Ok(s.as_raw_fd());
        let fds = vec![
            client.with_sock_ref(fd).unwrap(),
            server.with_sock_ref(fd).unwrap(),
            plain.with_sock_ref(fd).unwrap(),
        ];
        let held = (
            listener, client, server, client_out, server_out, plain, plain_out, _peer,
        );
        (selector, held, fds)
    });
    let before: Vec<_> = fds.iter().map(|&fd| descriptor_target(fd)).collect();
    assert!(before.iter().all(Option::is_some));
    runtime.shutdown_timeout(HANG_LIMIT);
    assert!(selector.is_closed());
    for (fd, before) in fds.iter().zip(&before) {
        assert_ne!(
            descriptor_target(*fd).as_ref(),
            before.as_ref(),
            "descriptor {fd} ({before:?}) still open after the runtime's end"
        );
    }
    drop(held);
}

// ---------------------------------------------------------------------------------------------
// SO_LINGER beyond the clock, end to end.

/// Row "`SO_LINGER` with a time the clock cannot add, set another way (`with_sock_ref` with
/// `set_linger(Some(Duration::MAX))` ...)": "`close()` returns at once, the lingering close
/// runs on a blocking thread ... (never a panic)". The named unit test calls the release
/// function on a listener nobody else holds. Here a connection with bytes in flight to a peer
/// that reads nothing, closed while a read of another task still holds it: `close()` returns
/// well under the hang bound, the runtime's thread keeps ticking, and once the peer goes
/// (a reset, which ends the kernel's linger), the runtime shuts down without a panic.
#[test]
fn a_linger_beyond_the_clock_set_through_with_sock_ref_closes_off_the_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener_with(&selector, |b| b.send_buffer_size(32 * 1024)).await;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let peer = within(socket.connect(([127, 0, 0, 1], listener.port().unwrap()).into()))
            .await
            .unwrap();
        let accepted = within(listener.accept()).await.unwrap();
        accepted
            .with_sock_ref(|s| s.set_linger(Some(Duration::MAX)))
            .unwrap();
        let mut connection = accepted.connection().unwrap();
        let data = net_tests::payload(16 * 1024);
        within(connection.output.write_fully(&data)).await.unwrap();
        within(connection.output.flush()).await.unwrap();
        let mut input = connection.input;
        let reader = tokio::spawn(async move { input.read_line(64, LineEnding::Default).await });
        tokio::task::yield_now().await;
        let ticker = tokio::spawn(async {
            let mut longest = Duration::ZERO;
            let mut last = Instant::now();
            for _ in 0..30 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                longest = longest.max(last.elapsed());
                last = Instant::now();
            }
            longest
        });
        tokio::task::yield_now().await;
        let started = Instant::now();
        connection.socket.close();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "close took {took:?}");
        let longest = within(ticker).await.unwrap();
        assert!(
            longest < Duration::from_secs(2),
            "the runtime stalled {longest:?}"
        );
        let read = within(reader).await.unwrap();
        assert!(read.is_err(), "{read:?}");
        // The peer goes with its input unread: a reset, which ends the kernel's linger.
        drop(peer);
    });
    runtime.shutdown_timeout(HANG_LIMIT);
}
