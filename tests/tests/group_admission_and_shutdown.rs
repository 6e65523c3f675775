//! A listener's group of connections: its caps (`max_connections`, `max_connections_per_ip`)
//! free each place exactly once however a connection ends, and its graceful shutdown counts
//! every connection open when it began, finished or cut.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_sockets::{SelectorManager, ServerSocket, a_socket};
use net_tests::{pending_after_one_poll, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn listener(
    selector: &SelectorManager,
    configure: impl FnOnce(net_sockets::TcpSocketBuilder) -> net_sockets::TcpSocketBuilder,
) -> (ServerSocket, SocketAddr) {
    let server = configure(a_socket(selector).tcp())
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let address = SocketAddr::from(([127, 0, 0, 1], server.port().unwrap()));
    (server, address)
}

/// Waits (at most `HANG_LIMIT`) until the listener counts `open` connections open.
async fn until_open(server: &ServerSocket, open: usize) {
    let started = Instant::now();
    while server.stats().open != open {
        assert!(
            started.elapsed() < net_tests::HANG_LIMIT,
            "{:?}, expected {open} open",
            server.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A TLS server handshake waiting for a client that never sends its hello, and a
/// `close_gracefully` waiting for a client that never ends: a listener's shutdown cuts both at
/// the end of its grace period (not at their own, longer, deadlines), counts both as cut, and
/// their places are free then. The handshake fails; the graceful close, whose output was
/// flushed and closed before, returns `Ok` (a drain cut short is not reported).
#[tokio::test]
async fn a_shutdown_cuts_a_pending_tls_handshake_and_a_graceful_close_at_its_grace_end() {
    use net_tls::TlsExt;
    let pki = net_tests::pki::Pki::generate();
    let tls = pki
        .server_config()
        .handshake_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let selector = SelectorManager::new();
    let (server, address) = listener(&selector, |b| b.max_connections(2)).await;
    let _silent = within(TcpStream::connect(address)).await.unwrap();
    let handshaking = within(server.accept()).await.unwrap();
    let handshake = tokio::spawn(async move { handshaking.tls_server(&tls).await.map(|_| ()) });
    let mut lingering_client = within(TcpStream::connect(address)).await.unwrap();
    let lingering = within(server.accept()).await.unwrap();
    let closing = tokio::spawn(async move {
        let connection = lingering.connection().unwrap();
        connection.close_gracefully(Duration::from_secs(30)).await
    });
    let mut byte = [0; 1];
    // The graceful close's FIN: it now waits for the client's end.
    assert_eq!(
        within(lingering_client.read(&mut byte)).await.unwrap(),
        0,
        "the half-close"
    );
    let started = Instant::now();
    let report = within(server.shutdown(Duration::from_millis(300))).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((report.finished, report.cut), (0, 2), "{report:?}");
    let failed = within(handshake).await.unwrap().unwrap_err();
    assert!(
        matches!(failed, net_tls::Error::Socket(net_sockets::Error::Closed)),
        "the cut, not {failed:?}"
    );
    // The output was flushed and closed before the cut: a drain ended early is not reported.
    within(closing).await.unwrap().unwrap();
    assert_eq!(server.stats().open, 0);
}

/// `max_connections(2)` with `max_connections_per_ip(2)`: each connection's read and write
/// channels go to tasks of their own on a multi-thread runtime and are dropped there, in
/// either order, as the client resets or ends; then the caps admit exactly two more, and
/// the third waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn channels_dropped_in_either_order_on_other_threads_free_each_place_once() {
    let selector = SelectorManager::new();
    let (server, address) = listener(&selector, |b| {
        b.max_connections(2).max_connections_per_ip(2)
    })
    .await;
    let server = Arc::new(server);
    for round in 0..40u32 {
        let mut clients = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..2u32 {
            let client = within(TcpStream::connect(address)).await.unwrap();
            let socket = within(server.accept())
                .await
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            let connection = socket.connection().unwrap();
            let (socket, mut input, mut output) =
                (connection.socket, connection.input, connection.output);
            let read_first = (round + i).is_multiple_of(2);
            let reader = tokio::spawn(async move {
                let _ = input.read_line(64, LineEnding::Default).await;
                drop(input);
            });
            let writer = tokio::spawn(async move {
                let _ = output.write_string_utf8("hello\n").await;
                let _ = output.flush().await;
                drop(output);
            });
            if read_first {
                drop(socket);
            } else {
                tasks.push(tokio::spawn(async move { drop(socket) }));
            }
            tasks.push(reader);
            tasks.push(writer);
            clients.push(client);
        }
        for (i, client) in clients.into_iter().enumerate() {
            if (round as usize + i).is_multiple_of(3) {
                net_tests::fault::reset(client);
            } else {
                let mut client = client;
                client.shutdown().await.unwrap();
                let mut rest = Vec::new();
                let _ = within(client.read_to_end(&mut rest)).await;
            }
        }
        for task in tasks {
            within(task).await.unwrap();
        }
        until_open(&server, 0).await;
    }
    // Exactly two more, and the third waits.
    let _first = within(TcpStream::connect(address)).await.unwrap();
    let _second = within(TcpStream::connect(address)).await.unwrap();
    let _third = within(TcpStream::connect(address)).await.unwrap();
    let a = within(server.accept()).await.unwrap();
    let b = within(server.accept()).await.unwrap();
    let third = server.accept();
    tokio::pin!(third);
    assert!(pending_after_one_poll(third.as_mut()).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(pending_after_one_poll(third.as_mut()).await);
    drop(a);
    within(third).await.unwrap();
    drop(b);
    assert_eq!(server.stats().refused_per_ip, 0);
}

/// Clients whose connections wait in the kernel's listen queue (connected, never accepted) when
/// a shutdown begins: the listener's close resets them (their request is never read), none
/// is in the report, and the shutdown does not wait for them.
#[tokio::test]
async fn a_shutdown_resets_the_connections_still_in_the_listen_queue() {
    let selector = SelectorManager::new();
    let (server, address) = listener(&selector, |b| b.max_connections(1)).await;
    let _held = within(TcpStream::connect(address)).await.unwrap();
    let accepted = within(server.accept()).await.unwrap();
    // At the cap: these wait in the kernel's queue.
    let mut queued = Vec::new();
    for _ in 0..3 {
        let mut client = within(TcpStream::connect(address)).await.unwrap();
        client.write_all(b"a request\n").await.unwrap();
        queued.push(client);
    }
    let closing = tokio::spawn(async move {
        accepted.shutdown_requested().await;
        accepted.close();
    });
    let report = within(server.shutdown(Duration::from_secs(30))).await;
    assert_eq!((report.finished, report.cut), (1, 0), "{report:?}");
    within(closing).await.unwrap();
    for mut client in queued {
        let mut rest = Vec::new();
        let ended = within(client.read_to_end(&mut rest)).await;
        let e = ended.expect_err("a reset, not a clean end");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    }
    assert_eq!(server.stats().accepted, 1);
}

/// Eight connections that close by themselves around the end of the grace period (before it,
/// at it, after it; by `close`, by a drop, by `close_gracefully`), on a multi-thread runtime,
/// while a shutdown of the listener and one of its selector run at once (both begun before any
/// connection closes: one that closes between the two starts is none of the later one's):
/// each report counts all eight, finished or cut, none twice, and afterwards the listener
/// counts none open.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_shutdowns_count_every_connection_once_however_they_end_around_the_grace_end() {
    const GRACE: Duration = Duration::from_millis(40);
    for round in 0..24u64 {
        let selector = SelectorManager::new();
        let (server, address) = listener(&selector, |b| b).await;
        let mut clients = Vec::new();
        let mut tasks = Vec::new();
        let (began, both_began) = tokio::sync::watch::channel(false);
        for i in 0..8u64 {
            clients.push(within(TcpStream::connect(address)).await.unwrap());
            let socket = within(server.accept()).await.unwrap();
            // Spread over twice the grace period, differently each round.
            let after = Duration::from_millis((round * 7 + i * 11) % 80);
            let mut both_began = both_began.clone();
            tasks.push(tokio::spawn(async move {
                socket.shutdown_requested().await;
                both_began.wait_for(|began| *began).await.unwrap();
                tokio::time::sleep(after).await;
                match i % 3 {
                    0 => socket.close(),
                    1 => drop(socket),
                    // (Once the socket is cut, its channels no longer open.)
                    _ => {
                        if let Ok(connection) = socket.connection() {
                            let _ = connection.close_gracefully(Duration::ZERO).await;
                        }
                    }
                }
            }));
        }
        let by_listener = within(server.shutdown(GRACE));
        let by_selector = within(selector.shutdown(GRACE * (1 + round as u32 % 2)));
        tokio::pin!(by_listener, by_selector);
        assert!(pending_after_one_poll(by_listener.as_mut()).await);
        assert!(pending_after_one_poll(by_selector.as_mut()).await);
        began.send(true).unwrap();
        let (by_listener, by_selector) = tokio::join!(by_listener, by_selector);
        for report in [by_listener, by_selector] {
            assert_eq!(
                report.finished + report.cut,
                8,
                "round {round}: {by_listener:?} {by_selector:?}"
            );
        }
        for task in tasks {
            within(task).await.unwrap();
        }
        assert_eq!(server.stats().open, 0);
        drop(clients);
    }
}

/// A TLS server handshake dropped while it waits (for the client's hello, or for the rest of
/// it) gives back the connection's places: with `max_connections(1)` and
/// `max_connections_per_ip(1)`, the next client is accepted each time.
#[tokio::test]
async fn a_tls_handshake_dropped_while_it_waits_frees_the_connections_places() {
    use net_tls::TlsExt;
    let pki = net_tests::pki::Pki::generate();
    let tls = pki.server_config().build().unwrap();
    let selector = SelectorManager::new();
    let (server, address) = listener(&selector, |b| {
        b.max_connections(1).max_connections_per_ip(1)
    })
    .await;
    for round in 0..4 {
        let mut client = within(TcpStream::connect(address)).await.unwrap();
        if round % 2 == 1 {
            // The first bytes of a ClientHello record: the handshake waits for the rest.
            client
                .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
                .await
                .unwrap();
        }
        let socket = within(server.accept())
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let handshake = socket.tls_server(&tls);
        tokio::pin!(handshake);
        assert!(pending_after_one_poll(handshake.as_mut()).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(pending_after_one_poll(handshake.as_mut()).await);
    }
    let _last = within(TcpStream::connect(address)).await.unwrap();
    within(server.accept()).await.unwrap();
    assert_eq!(server.stats().refused_per_ip, 0);
}
