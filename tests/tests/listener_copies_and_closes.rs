//! Closes of listeners that other descriptors share (adopted from systemd, handed over to a
//! successor), and closes made from inside a socket's own `with_sock_ref`.

use std::future::Future as _;
use std::io::{Read as _, Write as _};
use std::time::Duration;

use net_sockets::{SelectorManager, ServerSocket, a_socket};
use net_tests::TempDir;
use net_tls::TlsExt as _;

/// Accepts, within a bounded time, the connection `kept` (a copy of a listening socket) has
/// in its queue.
fn accept_on(kept: &std::net::TcpListener) -> std::io::Result<std::net::TcpStream> {
    kept.set_nonblocking(true)?;
    let until = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match kept.accept() {
            Ok((stream, _)) => return Ok(stream),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if std::time::Instant::now() > until {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
}

/// A listening socket adopted with `from_std` (or from systemd, which keeps a copy of it so
/// that connections queue while the service restarts, and hands the same socket to the next
/// instance) is shared: closing the adopted listener releases this process's descriptor, and
/// must leave the socket listening for the other copies. (Stopping it with
/// `shutdown(SHUT_RD)` stops it for every copy: systemd's socket no longer listens, the next
/// instance's accept fails, and connects are refused.)
#[tokio::test]
async fn closing_an_adopted_tcp_listener_leaves_the_other_copies_listening() {
    for how in ["close", "drop", "selector"] {
        let selector = SelectorManager::new();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = std_listener.local_addr().unwrap();
        // The supervisor's copy.
        let kept = std_listener.try_clone().unwrap();
        let server = ServerSocket::from_std(&selector, std_listener).unwrap();
        match how {
            "close" => server.close(),
            "drop" => drop(server),
            _ => selector.close(),
        }
        let mut client = std::net::TcpStream::connect(address)
            .unwrap_or_else(|e| panic!("{how}: a connect to the still shared socket: {e}"));
        let mut accepted = accept_on(&kept)
            .unwrap_or_else(|e| panic!("{how}: the supervisor's copy accepts: {e}"));
        client.write_all(b"hi").unwrap();
        let mut got = [0; 2];
        accepted.set_nonblocking(false).unwrap();
        accepted
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        accepted.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi");
    }
}

/// The same for a Unix listener.
#[tokio::test]
async fn closing_an_adopted_unix_listener_leaves_the_other_copies_listening() {
    let dir = TempDir::new("hx-review");
    for (i, how) in ["close", "drop", "selector"].into_iter().enumerate() {
        let selector = SelectorManager::new();
        let path = dir.join(&format!("s{i}"));
        let std_listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let kept = std_listener.try_clone().unwrap();
        let server = ServerSocket::from_std(&selector, std_listener).unwrap();
        match how {
            "close" => server.close(),
            "drop" => drop(server),
            _ => selector.close(),
        }
        let connected = std::os::unix::net::UnixStream::connect(&path);
        assert!(
            connected.is_ok(),
            "{how}: a connect to the still shared socket: {connected:?}"
        );
        kept.set_nonblocking(true).unwrap();
        assert!(
            kept.accept().is_ok(),
            "{how}: the supervisor's copy accepts"
        );
    }
}

/// A listener this process bound and handed over (its descriptor duplicated through
/// `with_sock_ref` and passed to a successor, which takes over the port for a restart without
/// downtime): closing the old one leaves the successor's copy listening, as closing any
/// descriptor of a socket does.
#[tokio::test]
async fn closing_a_listener_whose_socket_was_handed_over_leaves_the_successor_listening() {
    let selector = SelectorManager::new();
    let server = a_socket(&selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = server.port().unwrap();
    let successor: std::net::TcpListener = server.with_sock_ref(|s| s.try_clone()).unwrap().into();
    server.close();
    let connected = std::net::TcpStream::connect(("127.0.0.1", port));
    assert!(
        connected.is_ok(),
        "a connect to the successor's socket: {connected:?}"
    );
    assert!(accept_on(&successor).is_ok(), "the successor accepts");
}

/// How a connect to `port` of 127.0.0.1 went: `None` when it was refused.
fn connect_to(port: u16) -> Option<String> {
    match std::net::TcpStream::connect(("127.0.0.1", port)) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => None,
        other => Some(format!("{other:?}")),
    }
}

/// Guard of the one case where a close still stops the listening itself: a listener closed
/// from inside its own `with_sock_ref` closure, which holds the socket until the closure
/// returns (after the close). The close waits `LET_GO` for it, then stops the listening:
/// once `close` returns, connects are refused. (The listener shares a port a
/// `RefusingPort` holds, so that nothing else answers on it once it is closed.)
#[tokio::test]
async fn a_listener_closed_inside_its_own_with_sock_ref_refuses_connects_once_close_returns() {
    let selector = SelectorManager::new();
    let held = net_tests::loopback::RefusingPort::new();
    let listener = a_socket(&selector)
        .tcp()
        .reuse_port(true)
        .bind(held.address())
        .await
        .unwrap();
    let port = held.port();
    let seen = listener
        .with_sock_ref(|_| {
            listener.close();
            Ok(connect_to(port))
        })
        .unwrap();
    assert!(
        seen.is_none(),
        "a connect after the close returned: {seen:?}"
    );
    assert!(connect_to(port).is_none());
}

/// A listener's or datagram socket's close never waits for a peer, so `SO_LINGER` on it (the
/// builder's `linger`, or one set through `with_sock_ref`) changes nothing: its descriptor
/// goes before `close` returns, never later on a blocking thread as a lingering
/// connection's does. Once `close` returns, connects are refused and the UDP port binds
/// again.
#[tokio::test]
async fn a_listener_or_datagram_socket_with_a_linger_time_frees_its_port_as_close_returns() {
    let selector = SelectorManager::new();
    for round in 0..5 {
        let held = net_tests::loopback::RefusingPort::new();
        let listener = a_socket(&selector)
            .tcp()
            .reuse_port(true)
            .linger(Duration::from_secs(3))
            .bind(held.address())
            .await
            .unwrap();
        listener.close();
        let seen = connect_to(held.port());
        assert!(
            seen.is_none(),
            "round {round}: a connect after the close: {seen:?}"
        );

        let udp = a_socket(&selector)
            .udp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        udp.with_sock_ref(|s| s.set_linger(Some(Duration::from_secs(3))))
            .unwrap();
        let address = udp.local_address().as_inet().unwrap().socket_addr();
        udp.close();
        let rebound = std::net::UdpSocket::bind(address);
        assert!(
            rebound.is_ok(),
            "round {round}: the UDP port after the close: {rebound:?}"
        );
    }
}

/// Guard: a datagram socket closed (by its own close, or its selector's) while a receive of
/// another task waits on it, from the thread of that task's runtime: the waiting receive
/// holds the socket, and the close lets go of it first, so that the port is free as the close
/// returns (no wait for `LET_GO`, which would end with the port still bound), and the
/// receive fails with the close.
#[tokio::test]
async fn a_datagram_socket_closed_while_a_receive_waits_frees_its_port_at_once() {
    for by_selector in [false, true] {
        let selector = SelectorManager::new();
        let socket = std::sync::Arc::new(
            a_socket(&selector)
                .udp()
                .bind(("127.0.0.1", 0))
                .await
                .unwrap(),
        );
        let address = socket.local_address().as_inet().unwrap().socket_addr();
        let receiver = tokio::spawn({
            let socket = std::sync::Arc::clone(&socket);
            async move { socket.receive().await }
        });
        // A current-thread runtime: the receive runs until it waits on these yields.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!receiver.is_finished());
        let started = std::time::Instant::now();
        if by_selector {
            selector.close();
        } else {
            socket.close();
        }
        let took = started.elapsed();
        let rebound = std::net::UdpSocket::bind(address);
        assert!(
            rebound.is_ok(),
            "by selector: {by_selector}: the port after the close ({took:?}): {rebound:?}"
        );
        let received = net_tests::within(receiver).await.unwrap();
        // `Closed` after the socket's close, `SelectorClosed` after the selector's.
        assert!(
            match received {
                Err(net_sockets::Error::Closed) => !by_selector,
                Err(net_sockets::Error::SelectorClosed) => by_selector,
                _ => false,
            },
            "by selector: {by_selector}: {received:?}"
        );
    }
}

/// Guard: closes made from inside a socket's own `with_sock_ref` closure (which holds the
/// socket while the close runs), and a selector's close made from inside one, on a
/// current-thread runtime: each returns (no deadlock on the close's locks, a listener's and a
/// datagram socket's close within their 50 ms wait), and once the closure returned, the peer
/// of a plain and of a TLS socket sees a clean end (TLS: `close_notify`).
#[test]
fn closes_from_inside_with_sock_ref_return_and_end_cleanly() {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let selector = SelectorManager::new();
            let listener = net_tests::loopback::tcp_listener(&selector).await;
            // A plain socket closes itself inside its closure.
            let (mut client, server_side) =
                net_tests::loopback::connected_pair(&selector, &listener).await;
            let mut input = client.open_read_channel().unwrap();
            server_side
                .with_sock_ref(|_| {
                    server_side.close();
                    Ok(())
                })
                .unwrap();
            let end = net_tests::within(input.read_line(64, net_io::LineEnding::Default)).await;
            assert!(matches!(end, Ok(None)), "plain: {end:?}");
            // A TLS socket.
            let pki = net_tests::pki::Pki::generate();
            let server_config = pki.server_config().build().unwrap();
            let client_config = pki.client_config().build().unwrap();
            let (client, server_side) =
                net_tests::loopback::connected_pair(&selector, &listener).await;
            let (client, server_side) = tokio::join!(
                client.tls(client_config),
                server_side.tls_server(&server_config)
            );
            let (mut client, server_side) = (client.unwrap(), server_side.unwrap());
            let mut input = client.open_read_channel().unwrap();
            server_side
                .with_sock_ref(|_| {
                    server_side.close();
                    Ok(())
                })
                .unwrap();
            let end = net_tests::within(input.read_line(64, net_io::LineEnding::Default)).await;
            assert!(matches!(end, Ok(None)), "tls: {end:?}");
            // A datagram socket, and the selector's close inside the listener's closure.
            let udp = net_tests::loopback::udp_socket(&selector).await;
            udp.with_sock_ref(|_| {
                udp.close();
                Ok(())
            })
            .unwrap();
            assert!(udp.is_closed());
            listener
                .with_sock_ref(|_| {
                    selector.close();
                    Ok(())
                })
                .unwrap();
            assert!(listener.is_closed());
            assert!(selector.is_closed());
        });
        let _ = done.send(());
    });
    finished
        .recv_timeout(Duration::from_secs(20))
        .expect("the closes from inside with_sock_ref returned");
}

/// The selector's close ends a waiting `accept` and every later one with
/// `Error::SelectorClosed` (the listener's own close: `Error::Closed`), as guarantees.md's row on
/// a listener that closes says.
#[tokio::test]
async fn the_selectors_close_fails_pending_and_later_accepts_with_selector_closed() {
    let selector = SelectorManager::new();
    let listener = net_tests::loopback::tcp_listener(&selector).await;
    let mut waiting = std::pin::pin!(listener.accept());
    // Polled once: it waits (nobody connects).
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(waiting.as_mut().poll(cx))).await;
    assert!(first.is_pending());
    selector.close();
    let pending = net_tests::within(waiting).await.map(drop);
    assert!(
        matches!(pending, Err(net_sockets::Error::SelectorClosed)),
        "{pending:?}"
    );
    let later = listener.accept().await.map(drop);
    assert!(
        matches!(later, Err(net_sockets::Error::SelectorClosed)),
        "{later:?}"
    );
}
