//! The server toolkit, in combinations the other files leave out: shutdowns that overlap (of
//! one listener twice, of two listeners and their selector at once), the shutdown signal made
//! after the start or shared between tasks, the caps' places freed by the TLS paths, and the
//! per-address cap of a dual-stack listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use net_io::LineEnding;
use net_sockets::{SelectorManager, ServerSocket, Socket, a_socket};
use net_tests::within;
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

/// Waits until `server` counts `open` connections open.
async fn until_open(server: &ServerSocket, open: usize) {
    within(async {
        while server.stats().open != open {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Reads until EOF or an error; what came.
async fn read_all(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let _ = within(stream.read_to_end(&mut all)).await;
    all
}

/// A connection that closes as soon as it learns that shutdown began.
fn closes_at_the_signal(socket: Socket) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        socket.shutdown_requested().await;
        socket.close();
    })
}

/// Two listeners of one selector, each with a connection that closes at the signal and one
/// that never does: the first listener shut down twice at once, the second once, the selector
/// at the same time with a longer grace period. Each report counts the stubborn connections it
/// found open as cut (by the listeners' grace end, which the selector's report counts as cut
/// too), never as finished; afterwards the stats count none open and every one accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_shutdowns_of_two_listeners_and_their_selector_count_each_connection_once() {
    let selector = SelectorManager::new();
    let (first, first_address) = listener(&selector, |b| b).await;
    let (second, second_address) = listener(&selector, |b| b).await;
    let mut clients = Vec::new();
    let mut stubborn = Vec::new();
    for (server, address) in [(&first, first_address), (&second, second_address)] {
        for polite in [true, false] {
            clients.push(within(TcpStream::connect(address)).await.unwrap());
            let socket = within(server.accept()).await.unwrap();
            if polite {
                closes_at_the_signal(socket);
            } else {
                stubborn.push(socket);
            }
        }
    }
    let grace = Duration::from_millis(300);
    let (a, b, c, whole) = tokio::join!(
        first.shutdown(grace),
        first.shutdown(grace),
        second.shutdown(grace),
        selector.shutdown(Duration::from_secs(5)),
    );
    // The later starts may find the connections signalled by the earlier ones gone: they
    // were not open when those began.
    for (name, report, open) in [("first", a, 2), ("first again", b, 2), ("second", c, 2)] {
        assert_eq!(report.cut, 1, "{name}: {report:?}");
        assert!(report.finished < open, "{name}: {report:?}");
    }
    assert_eq!((a.finished, c.finished), (1, 1), "{a:?} {c:?}");
    assert_eq!(whole.cut, 2, "selector: {whole:?}");
    for server in [&first, &second] {
        let stats = server.stats();
        assert_eq!((stats.accepted, stats.open), (2, 0), "{stats:?}");
    }
    for socket in &stubborn {
        assert!(socket.is_closed());
    }
    for mut client in clients {
        let _ = read_all(&mut client).await;
    }
}

/// A shutdown signal taken after the shutdown began is ready at once; clones of one signal
/// waited on by two tasks (one of them on another runtime's thread), and one moved into a task
/// after its future was polled, all see the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_signals_shared_moved_or_taken_late_all_see_the_start() {
    let selector = SelectorManager::new();
    let (server, address) = listener(&selector, |b| b).await;
    let _client = within(TcpStream::connect(address)).await.unwrap();
    let socket = within(server.accept()).await.unwrap();
    let signal = socket.shutdown_signal();
    assert!(!signal.is_requested());
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let signal = signal.clone();
            tokio::spawn(async move { signal.requested().await })
        })
        .collect();
    let elsewhere = {
        let signal = signal.clone();
        std::thread::spawn(move || net_tests::block_on(signal.requested()))
    };
    // Let the tasks register.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let server = Arc::new(server);
    let shutting = {
        let server = Arc::clone(&server);
        tokio::spawn(async move { server.shutdown(Duration::from_secs(5)).await })
    };
    for waiter in waiters {
        within(waiter).await.unwrap();
    }
    elsewhere.join().unwrap();
    assert!(signal.is_requested());
    assert!(socket.is_shutdown_requested());
    let late = socket.shutdown_signal();
    assert!(late.is_requested());
    within(late.requested()).await;
    within(socket.shutdown_requested()).await;
    socket.close();
    let report = within(shutting).await.unwrap();
    assert_eq!((report.finished, report.cut), (1, 0), "{report:?}");
    assert_eq!(server.stats().open, 0);
}

/// How the one connection of a capped listener ends, on the TLS paths.
#[derive(Clone, Copy, Debug)]
enum TlsEnding {
    /// The server's handshake succeeds, and it drops the TLS socket.
    Dropped,
    /// As `Dropped`, through `into_stream`.
    StreamDropped,
    /// STARTTLS: a line in plain text, then the handshake on the connection; then the drop.
    StartTlsDropped,
}

/// `max_connections(1)` with `max_connections_per_ip(1)`: a connection that ends on a TLS
/// path (after a successful handshake, as a stream, after STARTTLS) gives both places back, so
/// the next client from the same address is accepted, and the stats count it gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_free_their_place_however_a_tls_connection_ends() {
    use net_tls::TlsExt;
    let pki = net_tests::pki::Pki::generate();
    let tls = pki.server_config().build().unwrap();
    let client_tls = pki.client_config().build().unwrap();
    let selector = SelectorManager::new();
    let (server, address) = listener(&selector, |b| {
        b.max_connections(1).max_connections_per_ip(1)
    })
    .await;
    let mut accepted = 0;
    for ending in [
        TlsEnding::Dropped,
        TlsEnding::StreamDropped,
        TlsEnding::StartTlsDropped,
        TlsEnding::Dropped,
    ] {
        for round in 0..2 {
            let client = {
                let selector = selector.clone();
                let client_tls = client_tls.clone();
                tokio::spawn(async move {
                    let socket = a_socket(&selector).tcp().connect(address).await?;
                    let tls = if matches!(ending, TlsEnding::StartTlsDropped) {
                        let mut connection = socket.connection()?;
                        connection.output.write_string_utf8("STARTTLS\n").await?;
                        connection.tls(client_tls).await?
                    } else {
                        socket.tls(client_tls).await?
                    };
                    let mut connection = tls.connection()?;
                    // Until the server's end.
                    let _ = connection.input.discard(u64::MAX).await;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
                })
            };
            let socket = within(server.accept())
                .await
                .unwrap_or_else(|e| panic!("{ending:?}, round {round}: {e}"));
            accepted += 1;
            let tls_socket = match ending {
                TlsEnding::StartTlsDropped => {
                    let mut connection = socket.connection().unwrap();
                    let line = within(connection.input.read_line(64, LineEnding::Default))
                        .await
                        .unwrap();
                    assert_eq!(line.as_deref(), Some("STARTTLS"));
                    within(connection.tls_server(&tls)).await.unwrap()
                }
                _ => within(socket.tls_server(&tls)).await.unwrap(),
            };
            match ending {
                TlsEnding::StreamDropped => drop(tls_socket.into_stream().unwrap()),
                _ => drop(tls_socket),
            }
            let _ = within(client).await.unwrap();
            until_open(&server, 0).await;
            let stats = server.stats();
            assert_eq!(
                (stats.accepted, stats.refused_per_ip),
                (accepted, 0),
                "{ending:?}, round {round}: {stats:?}"
            );
        }
    }
}

/// A dual-stack listener (bound to `::`) with `max_connections_per_ip(1)`: a client over IPv4
/// (seen as `::ffff:127.0.0.1`) and one over IPv6 to the IPv4-mapped address are the same
/// client, and the second is refused; `::1` is another client. Once the first closes, its
/// address is free again.
#[tokio::test]
async fn a_dual_stack_listener_counts_an_ipv4_client_once_however_it_connects() {
    let selector = SelectorManager::new();
    let Ok(server) = a_socket(&selector)
        .tcp()
        .max_connections_per_ip(1)
        .bind(("::", 0))
        .await
    else {
        net_tests::harness::skipped("no IPv6: `::` cannot be bound");
        return;
    };
    let port = server.port().unwrap();
    let mut v4 = within(TcpStream::connect(("127.0.0.1", port)))
        .await
        .unwrap();
    v4.write_all(b"a").await.unwrap();
    let first = within(server.accept()).await.unwrap();
    let mapped_address: SocketAddr = format!("[::ffff:127.0.0.1]:{port}").parse().unwrap();
    let mut mapped = within(TcpStream::connect(mapped_address)).await.unwrap();
    let mut six = within(TcpStream::connect(("::1", port))).await.unwrap();
    let other = within(server.accept()).await.unwrap();
    assert_eq!(
        other.remote_address().as_inet().unwrap().ip(),
        "::1".parse::<std::net::IpAddr>().unwrap()
    );
    assert!(read_all(&mut mapped).await.is_empty());
    let stats = server.stats();
    assert_eq!((stats.accepted, stats.refused_per_ip), (2, 1), "{stats:?}");
    drop(first);
    assert!(read_all(&mut v4).await.is_empty());
    let mut again = within(TcpStream::connect(mapped_address)).await.unwrap();
    let third = within(server.accept()).await.unwrap();
    assert_eq!(
        third
            .remote_address()
            .as_inet()
            .unwrap()
            .ip()
            .to_canonical(),
        "127.0.0.1".parse::<std::net::IpAddr>().unwrap()
    );
    drop((third, other));
    let _ = read_all(&mut again).await;
    let _ = read_all(&mut six).await;
}

/// A connection that answers the signal with a last line and `close_gracefully` with a wait
/// longer than the grace period, to a client that reads everything but never ends its side:
/// the grace end cuts the drain, `close_gracefully` returns `Ok` then (the output was flushed
/// and closed), the report counts the connection as cut, and the client got the last line and
/// then the end; over TLS, `close_notify` before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_gracefully_cut_by_the_grace_end_is_ok_and_counted_as_cut() {
    use net_tls::TlsExt;
    let pki = net_tests::pki::Pki::generate();
    let tls = pki.server_config().build().unwrap();
    let client_tls = pki.client_config().build().unwrap();
    for over_tls in [false, true] {
        let selector = SelectorManager::new();
        let (server, address) = listener(&selector, |b| b).await;
        let client = {
            let selector = selector.clone();
            let client_tls = client_tls.clone();
            tokio::spawn(async move {
                let socket = a_socket(&selector).tcp().connect(address).await.unwrap();
                let mut all = Vec::new();
                let ended = if over_tls {
                    let tls = socket.tls(client_tls).await.unwrap();
                    let mut connection = tls.connection().unwrap();
                    let read = connection.input.read_remaining(1 << 20).await;
                    let read = read.map(|b| all.extend_from_slice(&b));
                    // Stays open (its side never ends) until the test is done.
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    read.map_err(|e| e.to_string())
                } else {
                    let mut connection = socket.connection().unwrap();
                    let read = connection.input.read_remaining(1 << 20).await;
                    let read = read.map(|b| all.extend_from_slice(&b));
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    read.map_err(|e| e.to_string())
                };
                (String::from_utf8_lossy(&all).into_owned(), ended)
            })
        };
        let socket = within(server.accept()).await.unwrap();
        let (set_up, ready) = tokio::sync::oneshot::channel();
        let serving = tokio::spawn({
            let tls = tls.clone();
            async move {
                if over_tls {
                    let socket = socket.tls_server(&tls).await.unwrap();
                    let mut connection = socket.connection().unwrap();
                    let _ = set_up.send(());
                    connection.socket.shutdown_requested().await;
                    connection.output.write_string_utf8("bye\n").await.unwrap();
                    connection.close_gracefully(Duration::from_secs(10)).await
                } else {
                    let mut connection = socket.connection().unwrap();
                    let _ = set_up.send(());
                    connection.socket.shutdown_requested().await;
                    connection.output.write_string_utf8("bye\n").await.unwrap();
                    connection.close_gracefully(Duration::from_secs(10)).await
                }
            }
        });
        until_open(&server, 1).await;
        // The TLS handshake ends before the signal.
        within(ready).await.unwrap();
        let started = std::time::Instant::now();
        let report = within(server.shutdown(Duration::from_millis(300))).await;
        let closed = within(serving).await.unwrap();
        let case = format!("over TLS: {over_tls}");
        assert!(closed.is_ok(), "{case}: {closed:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "{case}");
        assert_eq!((report.finished, report.cut), (0, 1), "{case}: {report:?}");
        let (got, ended) = within(client).await.unwrap();
        assert_eq!(got, "bye\n", "{case}");
        assert!(ended.is_ok(), "{case}: {ended:?}");
    }
}

/// An `incoming()` stream whose `next()` gave up (a timeout around it) and is kept, not
/// polled: an `accept` called meanwhile on the same listener gets the next connection, as
/// `accept`'s docs say of several waiters. The stream keeps its accept operation under way
/// across the dropped `next()`; before, that operation held the listener's turn to wait on
/// the kernel, and the `accept` waited for it (the connection in the kernel's queue) until the
/// stream was polled again or dropped.
#[tokio::test]
async fn an_accept_beside_an_idle_incoming_stream_gets_the_connection() {
    use futures_core::Stream;
    let selector = SelectorManager::new();
    let (server, address) = listener(&selector, |b| b).await;
    let mut incoming = server.incoming();
    let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut incoming).poll_next(cx));
    let idle = tokio::time::timeout(Duration::from_millis(50), next).await;
    assert!(idle.is_err());
    let _client = within(TcpStream::connect(address)).await.unwrap();
    let accepted = tokio::time::timeout(Duration::from_secs(2), server.accept()).await;
    assert!(matches!(accepted, Ok(Ok(_))), "{accepted:?}");
    drop(incoming);
}

/// As above, with the `accept` already waiting on the kernel (in a task of its own) when the
/// client connects: the connection wakes it, though the idle stream's accept waits on the same
/// listener and is not polled.
#[tokio::test]
async fn an_accept_waiting_beside_an_idle_incoming_stream_is_woken_by_a_connection() {
    use futures_core::Stream;
    let selector = SelectorManager::new();
    let (server, address) = listener(&selector, |b| b).await;
    let server = Arc::new(server);
    let mut incoming = server.incoming();
    let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut incoming).poll_next(cx));
    assert!(
        tokio::time::timeout(Duration::from_millis(50), next)
            .await
            .is_err()
    );
    let waiting = tokio::spawn({
        let server = Arc::clone(&server);
        async move { server.accept().await }
    });
    // On this one thread, the task polls its `accept` (which waits) before the client starts.
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished());
    let _client = within(TcpStream::connect(address)).await.unwrap();
    let accepted = tokio::time::timeout(Duration::from_secs(2), waiting).await;
    assert!(matches!(accepted, Ok(Ok(Ok(_)))), "{accepted:?}");
    drop(incoming);
}

/// An `accept` waiting on the kernel (in a task of its own), then an `incoming()` stream's
/// `next()` that gives up after it waited too: the stream's accept, kept and not polled, is
/// the last to have polled the listener, and a connection must still wake the waiting
/// `accept` (tokio's listener keeps the waker it was last polled with only).
#[tokio::test]
async fn an_accept_waiting_before_an_idle_incoming_stream_is_woken_by_a_connection() {
    use futures_core::Stream;
    let selector = SelectorManager::new();
    let (server, address) = listener(&selector, |b| b).await;
    let server = Arc::new(server);
    let waiting = tokio::spawn({
        let server = Arc::clone(&server);
        async move { server.accept().await }
    });
    // On this one thread, the task polls its `accept` (which waits) before the stream does.
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished());
    let mut incoming = server.incoming();
    let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut incoming).poll_next(cx));
    assert!(
        tokio::time::timeout(Duration::from_millis(50), next)
            .await
            .is_err()
    );
    let _client = within(TcpStream::connect(address)).await.unwrap();
    let accepted = tokio::time::timeout(Duration::from_secs(2), waiting).await;
    assert!(matches!(accepted, Ok(Ok(Ok(_)))), "{accepted:?}");
    drop(incoming);
}

/// A selector's graceful shutdown while a PROXY protocol header is still being read, while
/// an `incoming()` stream waits in another task, and while an accepted connection runs as a
/// `SocketStream` (it learns of the shutdown through the stream, and ends by the stream's
/// drop): the stream of connections ends, the connection whose header never came is closed and
/// neither counted nor reported, the one handed out finishes, and the stats say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selector_shutdown_amid_a_header_read_an_incoming_stream_and_a_socket_stream() {
    use futures_core::Stream;
    let selector = SelectorManager::new();
    let (server, address) = listener(&selector, |b| {
        b.proxy_protocol(net_sockets::ProxyProtocol::Required)
            .proxy_header_timeout(Duration::from_secs(30))
    })
    .await;
    let mut incoming = server.incoming();
    let mut good = within(TcpStream::connect(address)).await.unwrap();
    good.write_all(b"PROXY TCP4 192.0.2.1 127.0.0.1 1000 80\r\n")
        .await
        .unwrap();
    let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut incoming).poll_next(cx));
    let socket = within(next).await.unwrap().unwrap();
    let stream = socket.into_stream().unwrap();
    let serving = tokio::spawn(async move {
        stream.shutdown_requested().await;
        drop(stream);
    });
    let mut silent = within(TcpStream::connect(address)).await.unwrap();
    let waiting = tokio::spawn(async move {
        let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut incoming).poll_next(cx));
        next.await.map(|item| item.map(|s| s.remote_address()))
    });
    // Let the stream take the silent one from the kernel and begin reading its header.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let report = within(selector.shutdown(Duration::from_secs(5))).await;
    assert_eq!((report.finished, report.cut), (1, 0), "{report:?}");
    let ended = within(waiting).await.unwrap();
    assert!(ended.is_none(), "{ended:?}");
    within(serving).await.unwrap();
    assert!(read_all(&mut silent).await.is_empty());
    assert!(read_all(&mut good).await.is_empty());
    let stats = server.stats();
    assert_eq!(
        (stats.accepted, stats.open, stats.proxy_header_failures),
        (1, 0, 0),
        "{stats:?}"
    );
}

/// A listener's shutdown after its selector closed (the connections cut by that close, before
/// it began) returns at once and reports nothing; a selector of its own runtime, shut down
/// from another runtime, tells a connected (outgoing) socket, and counts it finished when it
/// closes at the signal.
#[tokio::test]
async fn shutdowns_after_the_close_and_from_another_runtime() {
    let selector = SelectorManager::new();
    let (server, address) = listener(&selector, |b| b).await;
    let _client = within(TcpStream::connect(address)).await.unwrap();
    let accepted = within(server.accept()).await.unwrap();
    selector.close();
    assert!(accepted.is_closed());
    let report = within(server.shutdown(Duration::MAX)).await;
    assert_eq!((report.finished, report.cut), (0, 0), "{report:?}");
    assert_eq!(server.stats().open, 0);

    let own = SelectorManager::builder()
        .worker_threads(1)
        .build()
        .unwrap();
    let peer = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let connected = within(a_socket(&own).tcp().connect(peer.local_addr().unwrap()))
        .await
        .unwrap();
    let (_peer_side, _) = within(peer.accept()).await.unwrap();
    let closing = closes_at_the_signal(connected);
    let report = within(own.shutdown(Duration::from_secs(60))).await;
    within(closing).await.unwrap();
    assert_eq!((report.finished, report.cut), (1, 0), "{report:?}");
    assert!(own.is_closed());
}

/// `max_connections(1)`: a connection whose two directions both ended cleanly (its input read
/// to the end, its write side shut down) is closed, and frees its slot, while its handle is
/// still held: as a `Connection`, as a `SocketStream`, and over TLS as a `TlsStream`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_directions_both_ended_frees_its_slot_while_still_held() {
    use net_tls::TlsExt;
    use tokio::io::AsyncWriteExt as _;
    let pki = net_tests::pki::Pki::generate();
    let tls = pki.server_config().build().unwrap();
    let client_tls = pki.client_config().build().unwrap();
    let selector = SelectorManager::new();
    let (server, address) = listener(&selector, |b| b.max_connections(1)).await;
    let mut held = Vec::<Box<dyn std::any::Any + Send>>::new();
    for (round, how) in ["connection", "stream", "tls stream"]
        .into_iter()
        .enumerate()
    {
        let over_tls = how == "tls stream";
        let client = {
            let selector = selector.clone();
            let client_tls = client_tls.clone();
            tokio::spawn(async move {
                let socket = a_socket(&selector).tcp().connect(address).await.unwrap();
                if over_tls {
                    let mut stream = socket.tls(client_tls).await.unwrap().into_stream().unwrap();
                    stream.write_all(b"hi").await.unwrap();
                    stream.shutdown().await.unwrap();
                    let mut all = Vec::new();
                    let _ = stream.read_to_end(&mut all).await;
                    all
                } else {
                    let mut stream = socket.into_stream().unwrap();
                    stream.write_all(b"hi").await.unwrap();
                    stream.shutdown().await.unwrap();
                    let mut all = Vec::new();
                    let _ = stream.read_to_end(&mut all).await;
                    all
                }
            })
        };
        let socket = within(server.accept())
            .await
            .unwrap_or_else(|e| panic!("{how}: {e}"));
        match how {
            "connection" => {
                let mut connection = socket.connection().unwrap();
                let got = within(connection.input.read_remaining(64)).await.unwrap();
                assert_eq!(&got[..], b"hi");
                connection.output.write_fully(b"yo").await.unwrap();
                within(connection.output.flush_and_close()).await.unwrap();
                held.push(Box::new(connection));
            }
            "stream" => {
                let mut stream = socket.into_stream().unwrap();
                let mut got = Vec::new();
                within(stream.read_to_end(&mut got)).await.unwrap();
                assert_eq!(got, b"hi");
                stream.write_all(b"yo").await.unwrap();
                within(stream.shutdown()).await.unwrap();
                held.push(Box::new(stream));
            }
            _ => {
                let socket = within(socket.tls_server(&tls)).await.unwrap();
                let mut stream = socket.into_stream().unwrap();
                let mut got = Vec::new();
                within(stream.read_to_end(&mut got)).await.unwrap();
                assert_eq!(got, b"hi");
                stream.write_all(b"yo").await.unwrap();
                within(stream.shutdown()).await.unwrap();
                held.push(Box::new(stream));
            }
        }
        assert_eq!(within(client).await.unwrap(), b"yo", "{how}");
        let freed = tokio::time::timeout(Duration::from_secs(2), until_open(&server, 0)).await;
        assert!(freed.is_ok(), "{how}: {:?}", server.stats());
        assert_eq!(server.stats().accepted, round as u64 + 1);
    }
    drop(held);
}

/// `max_connections(1)` with `max_connections_per_ip(1)`: a STARTTLS upgrade that fails (the
/// client sends no TLS after its command) or whose future the server drops mid-handshake
/// gives both places back: the next client from the same address is accepted.
#[tokio::test]
async fn caps_free_their_place_when_a_starttls_upgrade_fails_or_is_dropped() {
    use net_tls::TlsExt;
    let pki = net_tests::pki::Pki::generate();
    let tls = pki.server_config().build().unwrap();
    let selector = SelectorManager::new();
    let (server, address) = listener(&selector, |b| {
        b.max_connections(1).max_connections_per_ip(1)
    })
    .await;
    for (round, fails) in [true, false, true, false].into_iter().enumerate() {
        let mut client = within(TcpStream::connect(address)).await.unwrap();
        client.write_all(b"STARTTLS\n").await.unwrap();
        if fails {
            client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        }
        let socket = within(server.accept())
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let mut connection = socket.connection().unwrap();
        let line = within(connection.input.read_line(64, LineEnding::Default))
            .await
            .unwrap();
        assert_eq!(line.as_deref(), Some("STARTTLS"));
        let upgrade =
            tokio::time::timeout(Duration::from_millis(200), connection.tls_server(&tls)).await;
        match upgrade {
            Ok(Err(_)) => assert!(fails, "round {round}"),
            Err(_) => assert!(!fails, "round {round}"),
            Ok(Ok(_)) => panic!("round {round}: a handshake with no TLS client succeeded"),
        }
        let _ = read_all(&mut client).await;
        let freed = tokio::time::timeout(Duration::from_secs(2), until_open(&server, 0)).await;
        assert!(freed.is_ok(), "round {round}: {:?}", server.stats());
    }
    let _client = within(TcpStream::connect(address)).await.unwrap();
    let last = within(server.accept()).await.unwrap();
    assert_eq!(server.stats().accepted, 5);
    drop(last);
}

/// `max_connections(1)` with its one connection open, an `accept` waiting for the slot and a
/// client waiting in the kernel's queue: a graceful shutdown fails the `accept` at once (not at
/// the end of the grace period) with `Closed`, the queued client is never handed out nor
/// counted, and the report counts only the open connection.
#[tokio::test]
async fn a_shutdown_at_the_cap_fails_the_waiting_accept_at_once_and_counts_only_the_open_one() {
    let selector = SelectorManager::new();
    let (server, address) = listener(&selector, |b| b.max_connections(1)).await;
    let _first = within(TcpStream::connect(address)).await.unwrap();
    let open = within(server.accept()).await.unwrap();
    let mut queued = within(TcpStream::connect(address)).await.unwrap();
    let server = Arc::new(server);
    let waiting = {
        let server = Arc::clone(&server);
        tokio::spawn(async move { server.accept().await.map(|s| s.remote_address()) })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let shutting = {
        let server = Arc::clone(&server);
        tokio::spawn(async move { server.shutdown(Duration::from_secs(60)).await })
    };
    let failed = tokio::time::timeout(Duration::from_secs(5), waiting).await;
    assert!(
        matches!(failed, Ok(Ok(Err(net_sockets::Error::Closed)))),
        "{failed:?}"
    );
    assert!(read_all(&mut queued).await.is_empty());
    open.close();
    let report = within(shutting).await.unwrap();
    assert_eq!((report.finished, report.cut), (1, 0), "{report:?}");
    let stats = server.stats();
    assert_eq!((stats.accepted, stats.open), (1, 0), "{stats:?}");
}

/// `max_connections_per_ip(1)` behind PROXY protocol headers: a client the proxy names as
/// `TCP4 192.0.2.1` and again as `TCP6 ::ffff:192.0.2.1` (a proxy listening on IPv6) is one
/// client: the second is refused.
#[tokio::test]
async fn the_per_address_cap_counts_a_client_named_ipv4_mapped_by_its_proxy_once() {
    let selector = SelectorManager::new();
    let (server, address) = listener(&selector, |b| {
        b.proxy_protocol(net_sockets::ProxyProtocol::Required)
            .max_connections_per_ip(1)
    })
    .await;
    let mut first = within(TcpStream::connect(address)).await.unwrap();
    first
        .write_all(b"PROXY TCP4 192.0.2.1 192.0.2.100 1000 80\r\n")
        .await
        .unwrap();
    let accepted = within(server.accept()).await.unwrap();
    let server = Arc::new(server);
    // An `accept` under way, which refuses the mapped one as its header is read.
    let accepting = {
        let server = Arc::clone(&server);
        tokio::spawn(async move { server.accept().await })
    };
    let mut mapped = within(TcpStream::connect(address)).await.unwrap();
    mapped
        .write_all(b"PROXY TCP6 ::ffff:192.0.2.1 2001:db8::1 1001 80\r\n")
        .await
        .unwrap();
    assert!(read_all(&mut mapped).await.is_empty());
    let mut other = within(TcpStream::connect(address)).await.unwrap();
    other
        .write_all(b"PROXY TCP4 192.0.2.2 192.0.2.100 1002 80\r\n")
        .await
        .unwrap();
    let next = within(accepting).await.unwrap().unwrap();
    assert_eq!(next.remote_address().to_string(), "192.0.2.2:1002");
    assert_eq!(server.stats().refused_per_ip, 1, "{:?}", server.stats());
    drop((accepted, next));
    let _ = read_all(&mut first).await;
    let _ = read_all(&mut other).await;
}
