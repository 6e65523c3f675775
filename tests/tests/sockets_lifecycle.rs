//! Selector lifecycle: closing the selector fails pending operations; a selector with its own
//! runtime; sockets made after close.

use std::sync::Arc;

use net_io::LineEnding;
use net_sockets::{Datagram, Error, SelectorManager, a_socket};
use net_tests::block_on;
use net_tests::loopback::{
    connect, connected_pair, echo_server, never_accepting_listener, tcp_listener, udp_socket,
};
use net_tests::within;

/// A pending read whose task is polled again and again (another branch of a `select!` wakes it)
/// registers its close wake-up once, and the close still ends it, with the close's variant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_polled_again_and_again_still_wakes_on_close() {
    for by_selector in [false, true] {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let (_client, mut server) = connected_pair(&selector, &listener).await;
        let mut input = server.open_read_channel().unwrap();
        let (polled, mut polled_rx) = tokio::sync::mpsc::channel::<()>(1);
        let read = tokio::spawn(async move {
            let read = input.read_line(64, LineEnding::Default);
            tokio::pin!(read);
            let mut ticks = tokio::time::interval(std::time::Duration::from_millis(2));
            let mut woken = 0;
            loop {
                tokio::select! {
                    biased;
                    result = &mut read => break result,
                    // After five wake-ups only the close can wake the task.
                    _ = ticks.tick(), if woken < 5 => {
                        woken += 1;
                        if woken == 5 {
                            polled.send(()).await.unwrap();
                        }
                    }
                }
            }
        });
        // The read has been polled five times with the same waker, pending each time.
        within(polled_rx.recv()).await.unwrap();
        if by_selector {
            selector.close();
        } else {
            server.close();
        }
        let err = within(read).await.unwrap().unwrap_err();
        let expected = if by_selector {
            matches!(Error::from(err), Error::SelectorClosed)
        } else {
            matches!(Error::from(err), Error::Closed)
        };
        assert!(expected, "by_selector = {by_selector}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_selector_fails_pending_operations() {
    let selector = SelectorManager::new();
    let listener = Arc::new(tcp_listener(&selector).await);
    let (mut client, server_side) = connected_pair(&selector, &listener).await;
    let udp = Arc::new(udp_socket(&selector).await);

    let mut input = client.open_read_channel().unwrap();
    let read = tokio::spawn(async move { input.read_line(64, LineEnding::Default).await });
    let accepting = Arc::clone(&listener);
    let accept = tokio::spawn(async move { accepting.accept().await });
    let receiving = Arc::clone(&udp);
    let receive = tokio::spawn(async move { receiving.receive().await });
    tokio::task::yield_now().await;

    selector.close();
    assert!(selector.is_closed());
    let err = within(read).await.unwrap().unwrap_err();
    assert!(matches!(Error::from(err), Error::SelectorClosed));
    assert!(matches!(
        within(accept).await.unwrap(),
        Err(Error::SelectorClosed)
    ));
    assert!(matches!(
        within(receive).await.unwrap(),
        Err(Error::SelectorClosed)
    ));
    for closed in [
        client.is_closed(),
        server_side.is_closed(),
        listener.is_closed(),
        udp.is_closed(),
    ] {
        assert!(closed);
    }
    within(client.await_closed()).await;
    within(listener.await_closed()).await;
    within(udp.await_closed()).await;

    // Nothing new can be made through it.
    let err = a_socket(&selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SelectorClosed));
    let err = a_socket(&selector)
        .udp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SelectorClosed));
    assert!(matches!(
        client.open_write_channel(true),
        Err(Error::SelectorClosed)
    ));
    let err = udp
        .send(Datagram::new("x", udp.local_address()).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SelectorClosed));
}

#[tokio::test]
async fn closing_the_selector_fails_a_pending_connect() {
    let selector = SelectorManager::new();
    // A full backlog keeps later connects pending.
    let listener = never_accepting_listener(&selector).await;
    let other = SelectorManager::new();
    let mut fillers = Vec::new();
    let address = listener.local_address();
    let pending = loop {
        let mut attempt = Box::pin(a_socket(&other).tcp().connect(address.clone()));
        match tokio::time::timeout(std::time::Duration::from_millis(200), &mut attempt).await {
            Ok(socket) => fillers.push(socket.unwrap()),
            Err(_) => break tokio::spawn(attempt),
        }
        assert!(fillers.len() < 64, "connects never stalled");
    };
    other.close();
    assert!(matches!(
        within(pending).await.unwrap(),
        Err(Error::SelectorClosed)
    ));
}

#[test]
fn a_selector_with_its_own_runtime_serves_another_runtime() {
    let selector = SelectorManager::builder()
        .worker_threads(1)
        .build()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let server = echo_server(&selector).await;
        let mut socket = connect(&selector, server.local_address()).await;
        let mut input = socket.open_read_channel().unwrap();
        let mut output = socket.open_write_channel(true).unwrap();
        output.write_string_utf8("hello\n").await.unwrap();
        let line = within(input.read_line(64, LineEnding::Default))
            .await
            .unwrap();
        assert_eq!(line.as_deref(), Some("hello"));
        selector.close();
        let err = within(input.read_u8()).await.unwrap_err();
        assert!(matches!(Error::from(err), Error::SelectorClosed));
    });
    drop(selector);
}

#[tokio::test]
async fn dropping_everything_without_close_is_fine() {
    let selector = SelectorManager::new();
    let server = echo_server(&selector).await;
    for _ in 0..10 {
        let mut socket = connect(&selector, server.local_address()).await;
        let _input = socket.open_read_channel().unwrap();
        drop(socket);
    }
    drop(selector);
    server.close();
}

#[test]
fn the_public_types_and_futures_are_send_and_sync() {
    fn send_sync<T: Send + Sync + 'static>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<SelectorManager>();
    send_sync::<net_sockets::Socket>();
    send_sync::<net_sockets::ServerSocket>();
    send_sync::<net_sockets::BoundDatagramSocket>();
    send_sync::<net_sockets::ConnectedDatagramSocket>();
    send_sync::<net_sockets::Error>();
    send_sync::<net_sockets::SocketAddress>();
    fn send_static<T: Send + 'static>() {}
    send_static::<net_sockets::Incoming>();
    send_static::<net_sockets::DatagramIncoming>();
    send_static::<net_sockets::SocketStream>();
    send_static::<net_sockets::Connection>();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let selector = SelectorManager::new();
        send(&a_socket(&selector).tcp().connect(("localhost", 1)));
        send(&a_socket(&selector).tcp().bind(("127.0.0.1", 0)));
        send(&a_socket(&selector).udp().bind(("127.0.0.1", 0)));
        let server = tcp_listener(&selector).await;
        send(&server.accept());
        send(&server.await_closed());
        let udp = udp_socket(&selector).await;
        send(&udp.receive());
        send(&udp.send(Datagram::new("x", udp.local_address()).unwrap()));
    });
}

#[test]
fn a_selector_with_its_own_runtime_works_without_any_tokio_context() {
    let selector = SelectorManager::builder()
        .worker_threads(1)
        .build()
        .unwrap();
    block_on(async {
        let listener = a_socket(&selector)
            .tcp()
            .socket_timeout(std::time::Duration::from_secs(5))
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let mut client = a_socket(&selector)
            .tcp()
            .connect_timeout(std::time::Duration::from_secs(5))
            .connect(("localhost", listener.port().unwrap()))
            .await
            .unwrap();
        let mut server_side = listener.accept().await.unwrap();
        let mut output = client.open_write_channel(true).unwrap();
        let mut input = server_side.open_read_channel().unwrap();
        output.write_string_utf8("no tokio here\n").await.unwrap();
        let line = input.read_line(64, LineEnding::Default).await.unwrap();
        assert_eq!(line.as_deref(), Some("no tokio here"));
        let udp = a_socket(&selector)
            .udp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        udp.send(Datagram::new("d", udp.local_address()).unwrap())
            .await
            .unwrap();
        assert_eq!(&udp.receive().await.unwrap().packet[..], b"d");
    });
    selector.close();
}

/// Several tasks may wait in `accept` on one listener: a connection wakes one that still waits,
/// also when the caller that waited last gave up (its `accept` dropped, as a `select!` branch
/// that lost), so a connection never sits unaccepted while an `accept` is pending.
#[tokio::test]
async fn an_accept_still_waiting_is_woken_when_another_gave_up() {
    let selector = SelectorManager::new();
    let server = Arc::new(tcp_listener(&selector).await);
    let port = server.port().unwrap();
    // The first waits in a task of its own, which runs again only when woken.
    let (waiting, first_waits) = tokio::sync::oneshot::channel();
    let first = tokio::spawn({
        let server = Arc::clone(&server);
        async move {
            let mut accept = std::pin::pin!(server.accept());
            assert!(net_tests::pending_after_one_poll(accept.as_mut()).await);
            let _ = waiting.send(());
            accept.await
        }
    });
    within(first_waits).await.unwrap();
    {
        let mut second = std::pin::pin!(server.accept());
        assert!(net_tests::pending_after_one_poll(second.as_mut()).await);
    }
    let client = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let accepted = within(first).await.unwrap().unwrap();
    assert_eq!(
        accepted.remote_address(),
        net_sockets::SocketAddress::from(client.local_addr().unwrap())
    );
}

/// The selector closes while a client handshake waits for a silent server: the handshake ends
/// at once with the selector's close, not with the handshake timeout.
#[tokio::test]
async fn closing_the_selector_ends_a_pending_handshake() {
    let selector = SelectorManager::new();
    let listener = net_tests::loopback::tcp_listener(&selector).await;
    let (client, _silent) = connected_pair(&selector, &listener).await;
    let config = net_tests::pki::TestCa::new("silent ca")
        .client_config()
        .server_name("localhost")
        .handshake_timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    let mut handshake = Box::pin(net_tls::TlsExt::tls(client, config));
    assert!(net_tests::pending_after_one_poll(handshake.as_mut()).await);
    let handshake = tokio::spawn(handshake);
    selector.close();
    let err = within(handshake).await.unwrap().unwrap_err();
    assert!(
        matches!(err, net_tls::Error::Socket(Error::SelectorClosed)),
        "{err:?}"
    );
}

/// A selector with its own runtime, shut down gracefully by two threads at once, neither in a
/// tokio context, then closed during their grace periods: both shutdowns return at the close
/// and report alike, the connection that closed during the grace period as finished and the two
/// still open as cut. Two shutdowns with no grace cut everything.
#[test]
fn an_own_runtime_selector_shut_down_from_two_threads_then_closed_reports_alike() {
    use std::future::Future;
    use std::time::Duration;
    for grace in [Duration::from_secs(60), Duration::ZERO] {
        let selector = SelectorManager::builder()
            .worker_threads(1)
            .build()
            .unwrap();
        let server = block_on(a_socket(&selector).tcp().bind(("127.0.0.1", 0))).unwrap();
        let port = server.port().unwrap();
        let mut clients = Vec::new();
        let mut accepted = Vec::new();
        for _ in 0..3 {
            clients.push(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
            accepted.push(block_on(server.accept()).unwrap());
        }
        // Both begin here, with three connections open; then each finishes on a thread of its
        // own.
        let waker = std::task::Waker::noop();
        let shutdowns = [grace, grace / 2].map(|grace| {
            let selector = selector.clone();
            let mut shutdown = Box::pin(async move { selector.shutdown(grace).await });
            let poll = shutdown
                .as_mut()
                .poll(&mut std::task::Context::from_waker(waker));
            (shutdown, poll.is_ready())
        });
        if grace.is_zero() {
            // No grace: nothing finishes, everything open is cut.
            let [(first, _), (second, _)] = shutdowns;
            let first = block_on(first);
            assert_eq!((first.finished, first.cut), (0, 3), "{first:?}");
            let second = block_on(second);
            assert_eq!(second.finished, 0, "{second:?}");
            assert!(selector.is_closed());
            continue;
        }
        let threads = shutdowns.map(|(shutdown, done)| {
            assert!(!done);
            std::thread::spawn(move || block_on(shutdown))
        });
        accepted[0].close();
        selector.close();
        for thread in threads {
            let report = thread.join().unwrap();
            assert_eq!((report.finished, report.cut), (1, 2), "{report:?}");
        }
        assert!(accepted.iter().all(|socket| socket.is_closed()));
    }
}

/// Closing the selector while a `bind` or a UDP `connect` to a host name waits for its lookup
/// (here queued behind a blocking task that holds the runtime's only blocking thread) fails it
/// with `SelectorClosed` at once, as it fails a TCP `connect` then: the close does not wait for
/// the lookup (before, each waited until the lookup had run, however long that took).
#[test]
fn closing_the_selector_fails_binds_and_connects_waiting_for_their_lookup() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (busy, blocker_runs) = std::sync::mpsc::channel();
    let blocker = runtime.spawn_blocking(move || {
        busy.send(()).unwrap();
        // Bounded: released below, or after the hang limit.
        let _ = held.recv_timeout(net_tests::HANG_LIMIT);
    });
    blocker_runs.recv().unwrap();
    runtime.block_on(async {
        let selector = SelectorManager::new();
        let mut tcp_bind = Box::pin(a_socket(&selector).tcp().bind(("localhost", 0)));
        let mut udp_bind = Box::pin(a_socket(&selector).udp().bind(("localhost", 0)));
        let mut udp_connect = Box::pin(a_socket(&selector).udp().connect(("localhost", 9)));
        let mut tcp_connect = Box::pin(a_socket(&selector).tcp().connect(("localhost", 9)));
        // Each polled once: it has begun, and waits for its lookup, which cannot run while the
        // blocker holds the blocking thread.
        let now = std::time::Duration::ZERO;
        assert!(tokio::time::timeout(now, &mut tcp_bind).await.is_err());
        assert!(tokio::time::timeout(now, &mut udp_bind).await.is_err());
        assert!(tokio::time::timeout(now, &mut udp_connect).await.is_err());
        assert!(tokio::time::timeout(now, &mut tcp_connect).await.is_err());
        selector.close();
        let limit = std::time::Duration::from_secs(5);
        let tcp_bind = tokio::time::timeout(limit, tcp_bind).await;
        assert!(
            matches!(tcp_bind, Ok(Err(Error::SelectorClosed))),
            "TCP bind: {tcp_bind:?}"
        );
        let udp_bind = tokio::time::timeout(limit, udp_bind).await;
        assert!(
            matches!(udp_bind, Ok(Err(Error::SelectorClosed))),
            "UDP bind: {udp_bind:?}"
        );
        let udp_connect = tokio::time::timeout(limit, udp_connect).await;
        assert!(
            matches!(udp_connect, Ok(Err(Error::SelectorClosed))),
            "UDP connect: {udp_connect:?}"
        );
        let tcp_connect = tokio::time::timeout(limit, tcp_connect).await;
        assert!(
            matches!(tcp_connect, Ok(Err(Error::SelectorClosed))),
            "TCP connect: {tcp_connect:?}"
        );
    });
    let _ = release.send(());
    runtime.block_on(blocker).unwrap();
}

/// Once the selector is closed, a bind or a connect fails with `SelectorClosed` before it
/// touches the network, not with the error the network would have given: a TCP or UDP bind to
/// a port in use, a TCP connect to a port nobody listens on, a Unix bind to a path in use.
#[tokio::test]
async fn a_closed_selector_fails_binds_and_connects_before_the_network() {
    let selector = SelectorManager::new();
    let tcp_taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let udp_taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let nobody = net_tests::loopback::RefusingPort::new();
    let dir = net_tests::TempDir::new("closed-selector");
    let path = dir.join("taken.sock");
    let _unix_taken = std::os::unix::net::UnixListener::bind(&path).unwrap();
    selector.close();
    let tcp_bind = a_socket(&selector)
        .tcp()
        .bind(tcp_taken.local_addr().unwrap())
        .await;
    assert!(
        matches!(tcp_bind, Err(Error::SelectorClosed)),
        "{tcp_bind:?}"
    );
    let udp_bind = a_socket(&selector)
        .udp()
        .bind(udp_taken.local_addr().unwrap())
        .await;
    assert!(
        matches!(udp_bind, Err(Error::SelectorClosed)),
        "{udp_bind:?}"
    );
    let tcp_connect = a_socket(&selector).tcp().connect(nobody.address()).await;
    assert!(
        matches!(tcp_connect, Err(Error::SelectorClosed)),
        "{tcp_connect:?}"
    );
    let unix_bind = a_socket(&selector)
        .tcp()
        .bind(net_sockets::UnixSocketAddress::new(&path))
        .await;
    assert!(
        matches!(unix_bind, Err(Error::SelectorClosed)),
        "{unix_bind:?}"
    );
}
