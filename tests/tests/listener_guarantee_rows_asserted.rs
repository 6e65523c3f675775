//! Parts of the rows of `guarantees.md` on listeners (accepting, shutting down, resources running
//! out) that the tests the rows named did not assert: each test here asserts one such part, as
//! the row states it.
//!
//! - A graceful shutdown, of a listener or of its selector, stops accepting at once: while its
//!   grace period still runs (a connection keeps it waiting), a pending `accept` has failed
//!   with `Error::Closed`, a later one fails so, and a new connect is refused.
//! - Every way a listener closes (`close`, the drop of its last handle, the selector's close, a
//!   shutdown) resets the connections still in the kernel's listen queue, TCP and Unix.
//! - A graceful shutdown of an adopted listener whose socket another descriptor keeps leaves
//!   the socket listening and its queue to that copy.
//! - A Unix listener handed over by a duplicate: the copy keeps listening, but the close
//!   removes the listener's file (an abstract name stays reachable).
//! - A connect that `connect_timeout` ends is `Error::Timeout` of kind `TimedOut`.
//! - A listener whose address is removed: `incoming()` neither fails nor ends meanwhile, and a
//!   connect to the address fails at once (in a network namespace of its own).
//! - Every ephemeral port in use: one more connect fails at once, also under `connect_timeout`
//!   (in a network namespace of its own).

use std::io::ErrorKind;
use std::process::Command;
use std::time::{Duration, Instant};

use futures_core::Stream;
use net_sockets::{Error, SelectorManager, ServerSocket, a_socket};
use net_tests::harness::{rerun_self_in_own_netns, run_if_child, status};
use net_tests::loopback::{never_accepting_listener, next_item, tcp_listener};
use net_tests::{pending_after_one_poll, within};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const CHILD: &str = "NET_TESTS_LISTENER_ROWS_CHILD";

/// A grace period no test here waits out: the shutdown ends when its connection closes.
const LONG_GRACE: Duration = Duration::from_secs(60);

/// The address of `listener`, for `tokio`'s clients.
fn address_of(listener: &ServerSocket) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], listener.port().expect("a TCP port")))
}

/// While a graceful shutdown's grace period runs, the listener accepts nothing: an `accept`
/// pending as it began has failed with `Error::Closed`, a later one fails so, `incoming()`
/// ended, a new connect is refused, and the connection open is told (`shutdown_requested()`).
/// Before, the test of the row looked only after the shutdown had ended.
async fn a_shutdown_stops_accepting_before_its_grace_period_ends(
    selector: &SelectorManager,
    server: &ServerSocket,
    shutdown: impl std::future::Future<Output = net_sockets::ShutdownReport>,
) {
    let address = address_of(server);
    let _client = within(TcpStream::connect(address)).await.unwrap();
    let open = within(server.accept()).await.unwrap();
    let mut pending = Box::pin(server.accept());
    assert!(pending_after_one_poll(pending.as_mut()).await);
    let mut incoming = server.incoming();
    assert!(next_is_pending(&mut incoming).await);

    let mut shutdown = Box::pin(shutdown);
    assert!(
        pending_after_one_poll(shutdown.as_mut()).await,
        "the open connection keeps the shutdown waiting"
    );
    let failed = within(pending).await;
    assert!(matches!(failed, Err(Error::Closed)), "{failed:?}");
    let later = within(server.accept()).await;
    assert!(matches!(later, Err(Error::Closed)), "{later:?}");
    assert!(
        next_item(&mut incoming).await.is_none(),
        "incoming() did not end"
    );
    let refused = within(TcpStream::connect(address)).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
    within(open.shutdown_requested()).await;
    assert!(
        pending_after_one_poll(shutdown.as_mut()).await,
        "the grace period still runs"
    );
    assert!(!selector.is_closed());

    open.close();
    let report = within(shutdown).await;
    assert_eq!((report.finished, report.cut), (1, 0), "{report:?}");
}

#[tokio::test]
async fn a_listener_shutdown_stops_accepting_at_once_not_at_the_end_of_its_grace() {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    a_shutdown_stops_accepting_before_its_grace_period_ends(
        &selector,
        &server,
        server.shutdown(LONG_GRACE),
    )
    .await;
}

#[tokio::test]
async fn a_selector_shutdown_stops_accepting_at_once_with_closed_not_at_the_end_of_its_grace() {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    a_shutdown_stops_accepting_before_its_grace_period_ends(
        &selector,
        &server,
        selector.shutdown(LONG_GRACE),
    )
    .await;
    assert!(selector.is_closed());
}

/// How a test closes its listener.
#[derive(Clone, Copy, Debug)]
enum Closing {
    Method,
    DropLastHandle,
    SelectorsClose,
    Shutdown,
}

/// Connections in the kernel's listen queue (connected, never accepted) are reset by every
/// way a listener closes: their clients read `ConnectionReset`. Before, only a shutdown was
/// tested.
#[tokio::test]
async fn every_way_a_listener_closes_resets_the_connections_in_its_listen_queue() {
    for how in [
        Closing::Method,
        Closing::DropLastHandle,
        Closing::SelectorsClose,
        Closing::Shutdown,
    ] {
        let selector = SelectorManager::new();
        let server = tcp_listener(&selector).await;
        let address = address_of(&server);
        let mut queued = Vec::new();
        for _ in 0..3 {
            queued.push(within(TcpStream::connect(address)).await.unwrap());
        }
        // Another handle, which holds the listener open: the drop of both closes it.
        let other = server.incoming();
        match how {
            Closing::Method => server.close(),
            Closing::DropLastHandle => {
                drop(server);
                drop(other);
            }
            Closing::SelectorsClose => selector.close(),
            Closing::Shutdown => {
                let report = within(server.shutdown(LONG_GRACE)).await;
                assert_eq!((report.finished, report.cut), (0, 0), "{how:?}: {report:?}");
            }
        }
        for mut client in queued {
            let mut rest = Vec::new();
            let ended = within(client.read_to_end(&mut rest)).await;
            let e = ended.expect_err("a reset, not a clean end");
            assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{how:?}: {e}");
        }
        let refused = within(TcpStream::connect(address)).await.unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{how:?}");
    }
}

/// A connect that `connect_timeout` ends is `Error::Timeout`, of kind `TimedOut` (with a time,
/// and with `Duration::ZERO`).
#[tokio::test]
async fn a_connect_that_connect_timeout_ends_is_of_kind_timed_out() {
    let selector = SelectorManager::new();
    let full = never_accepting_listener(&selector).await;
    let mut fillers = Vec::new();
    let first = loop {
        let attempt = a_socket(&selector)
            .tcp()
            .connect_timeout(Duration::from_millis(100))
            .connect(full.local_address())
            .await;
        match attempt {
            Ok(socket) => fillers.push(socket),
            Err(e) => break e,
        }
        assert!(fillers.len() < 64, "the backlog never filled");
    };
    assert!(matches!(first, Error::Timeout), "{first:?}");
    assert_eq!(first.kind(), ErrorKind::TimedOut);
    assert_eq!(std::io::Error::from(first).kind(), ErrorKind::TimedOut);
    let zero = a_socket(&selector)
        .tcp()
        .connect_timeout(Duration::ZERO)
        .connect(full.local_address())
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(zero, Error::Timeout), "{zero:?}");
    assert_eq!(zero.kind(), ErrorKind::TimedOut);
}

// ----- in a network namespace of its own ----------------------------------------------------

/// The address that comes and goes, on the namespace's loopback.
const MOVING: &str = "10.9.0.1";

/// Runs `ip` with `args` (words separated by spaces) in the test's namespace.
fn ip(args: &str) {
    let done = status(Command::new("ip").args(args.split(' ')));
    assert!(
        done.as_ref().is_ok_and(|s| s.success()),
        "ip {args}: {done:?}"
    );
}

/// Whether `stream`'s next item is still to come after one poll.
async fn next_is_pending<S: Stream + Unpin>(stream: &mut S) -> bool {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(std::pin::Pin::new(&mut *stream).poll_next(cx).is_pending())
    })
    .await
}

/// A listener whose address is removed: `incoming()`, polled meanwhile, neither fails nor
/// ends (the row's test made its `incoming()` only once the address was back), a connect to
/// the address fails at once, and `incoming()` yields the next connection once it is back.
#[test]
fn incoming_neither_fails_nor_ends_while_its_address_is_removed() {
    rerun_self_in_own_netns(
        "incoming_neither_fails_nor_ends_while_its_address_is_removed_child",
        CHILD,
        "incoming waited",
    );
}

#[test]
fn incoming_neither_fails_nor_ends_while_its_address_is_removed_child() {
    run_if_child(CHILD, async {
        let selector = SelectorManager::new();
        ip(&format!("addr add {MOVING}/32 dev lo"));
        let listener = a_socket(&selector).tcp().bind((MOVING, 0)).await.unwrap();
        let port = listener.port().unwrap();
        let mut incoming = listener.incoming();
        assert!(next_is_pending(&mut incoming).await);
        ip(&format!("addr del {MOVING}/32 dev lo"));
        // A connect meanwhile fails at once (never at a timeout), `NetworkUnreachable`.
        let started = Instant::now();
        let e = within(a_socket(&selector).tcp().connect((MOVING, port)))
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NetworkUnreachable, "{e:?}");
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "the connect failed after {took:?}"
        );
        // Longer than a back-off of the accept loop (100 ms), polled throughout.
        let until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < until {
            assert!(
                next_is_pending(&mut incoming).await,
                "incoming() yielded while the address was gone"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ip(&format!("addr add {MOVING}/32 dev lo"));
        let client = within(a_socket(&selector).tcp().connect((MOVING, port)))
            .await
            .unwrap();
        let accepted = next_item(&mut incoming).await.unwrap().unwrap();
        assert_eq!(accepted.remote_address(), client.local_address());
        println!("incoming waited");
    });
}

/// A fixed port outside the ephemeral range the test sets (the namespace is the test's own).
const SERVER_PORT: u16 = 5000;

/// With every ephemeral port in use towards one address, one more connect there fails at once
/// (well within a second, never at `connect_timeout`'s 5 s), with kind `AddrNotAvailable`.
#[test]
fn a_connect_with_every_ephemeral_port_in_use_fails_at_once() {
    rerun_self_in_own_netns(
        "a_connect_with_every_ephemeral_port_in_use_fails_at_once_child",
        CHILD,
        "failed at once",
    );
}

#[test]
fn a_connect_with_every_ephemeral_port_in_use_fails_at_once_child() {
    run_if_child(CHILD, async {
        std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "40000 40009")
            .expect("set ip_local_port_range in the namespace");
        let selector = SelectorManager::new();
        let server = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", SERVER_PORT))
            .await
            .unwrap();
        let mut held = Vec::new();
        for _ in 0..10 {
            held.push(
                within(
                    a_socket(&selector)
                        .tcp()
                        .connect(("127.0.0.1", SERVER_PORT)),
                )
                .await
                .unwrap(),
            );
            held.push(within(server.accept()).await.unwrap());
        }
        for timeout in [None, Some(Duration::from_secs(5))] {
            let mut builder = a_socket(&selector).tcp();
            if let Some(timeout) = timeout {
                builder = builder.connect_timeout(timeout);
            }
            let started = Instant::now();
            let e = within(builder.connect(("127.0.0.1", SERVER_PORT)))
                .await
                .map(|_| ())
                .unwrap_err();
            let took = started.elapsed();
            assert_eq!(e.kind(), ErrorKind::AddrNotAvailable, "{timeout:?}: {e:?}");
            assert!(took < Duration::from_secs(1), "{timeout:?}: took {took:?}");
        }
        println!("failed at once");
    });
}

/// A listener bound during a selector's graceful shutdown fails with `Error::SelectorClosed`
/// and leaves nothing bound: a Unix listener's socket file is removed, a TCP listener's port
/// refuses connects.
#[tokio::test]
async fn a_listener_bound_during_a_selector_shutdown_leaves_nothing_bound() {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let _client = within(TcpStream::connect(address_of(&server)))
        .await
        .unwrap();
    let held = within(server.accept()).await.unwrap();
    let mut shutdown = Box::pin(selector.shutdown(LONG_GRACE));
    assert!(pending_after_one_poll(shutdown.as_mut()).await);

    let dir = net_tests::TempDir::new("bound-during-shutdown");
    let path = dir.join("late.sock");
    let late = a_socket(&selector)
        .tcp()
        .bind(net_sockets::UnixSocketAddress::new(path.clone()))
        .await;
    assert!(matches!(late, Err(Error::SelectorClosed)), "{late:?}");
    assert!(!path.exists(), "the socket file was left behind");

    // A port held by a socket that never listens (so nothing else takes it meanwhile), shared
    // with `reuse_port`: once the late listener is gone, connects there are refused.
    let port = net_tests::loopback::RefusingPort::new();
    let late = a_socket(&selector)
        .tcp()
        .reuse_port(true)
        .bind(port.address())
        .await;
    assert!(matches!(late, Err(Error::SelectorClosed)), "{late:?}");
    let refused = within(TcpStream::connect(port.address()))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");

    drop(held);
    let report = within(shutdown).await;
    assert_eq!((report.finished, report.cut), (1, 0), "{report:?}");
}

/// As [`every_way_a_listener_closes_resets_the_connections_in_its_listen_queue`], for a Unix
/// listener: its clients in the listen queue read `ConnectionReset` too, and once the close
/// returned a connect to the path fails with `NotFound` (the file is gone).
#[tokio::test]
async fn every_way_a_unix_listener_closes_resets_the_connections_in_its_listen_queue() {
    for how in [
        Closing::Method,
        Closing::DropLastHandle,
        Closing::SelectorsClose,
        Closing::Shutdown,
    ] {
        let selector = SelectorManager::new();
        let dir = net_tests::TempDir::new("unix-listen-queue");
        let path = dir.join("s.sock");
        let server = a_socket(&selector)
            .tcp()
            .bind(net_sockets::UnixSocketAddress::new(path.clone()))
            .await
            .unwrap();
        let mut queued = Vec::new();
        for _ in 0..3 {
            queued.push(
                within(tokio::net::UnixStream::connect(&path))
                    .await
                    .unwrap(),
            );
        }
        let other = server.incoming();
        match how {
            Closing::Method => server.close(),
            Closing::DropLastHandle => {
                drop(server);
                drop(other);
            }
            Closing::SelectorsClose => selector.close(),
            Closing::Shutdown => {
                let report = within(server.shutdown(LONG_GRACE)).await;
                assert_eq!((report.finished, report.cut), (0, 0), "{how:?}: {report:?}");
            }
        }
        for mut client in queued {
            let mut rest = Vec::new();
            let ended = within(client.read_to_end(&mut rest)).await;
            let e = ended.expect_err("a reset, not a clean end");
            assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{how:?}: {e}");
        }
        let failed = within(tokio::net::UnixStream::connect(&path))
            .await
            .unwrap_err();
        assert_eq!(failed.kind(), ErrorKind::NotFound, "{how:?}: {failed}");
        assert!(!path.exists(), "{how:?}: the socket file was left behind");
    }
}

/// A graceful shutdown (the listener's, the selector's) of a listener adopted with `from_std`
/// whose socket another descriptor keeps (systemd's copy, a successor's) closes as `close`
/// does: it releases this process's descriptor only. The connections in the listen queue are
/// not reset but left to the other copy, which accepts them and those made after.
#[tokio::test]
async fn a_shutdown_of_an_adopted_listener_leaves_its_queue_and_socket_to_the_other_copy() {
    use std::io::{Read as _, Write as _};
    for selectors in [false, true] {
        let selector = SelectorManager::new();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = std_listener.local_addr().unwrap();
        let kept = std_listener.try_clone().unwrap();
        let server = ServerSocket::from_std(&selector, std_listener).unwrap();
        let mut clients = vec![std::net::TcpStream::connect(address).unwrap()];
        let report = if selectors {
            within(selector.shutdown(LONG_GRACE)).await
        } else {
            within(server.shutdown(LONG_GRACE)).await
        };
        assert_eq!((report.finished, report.cut), (0, 0), "{report:?}");
        assert!(server.is_closed());
        clients.push(
            std::net::TcpStream::connect(address)
                .unwrap_or_else(|e| panic!("a connect after the shutdown: {e}")),
        );
        kept.set_nonblocking(true).unwrap();
        for (i, client) in clients.iter_mut().enumerate() {
            let until = Instant::now() + Duration::from_secs(5);
            let mut accepted = loop {
                match kept.accept() {
                    Ok((stream, _)) => break stream,
                    Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < until => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("selector's {selectors}: the copy's accept {i}: {e}"),
                }
            };
            client.write_all(b"hi").unwrap();
            accepted.set_nonblocking(false).unwrap();
            accepted
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut got = [0; 2];
            accepted
                .read_exact(&mut got)
                .unwrap_or_else(|e| panic!("selector's {selectors}: connection {i}: {e}"));
            assert_eq!(&got, b"hi");
        }
    }
}

/// Accepts, within a bounded time, a connection from the queue of `copy`.
fn accept_on_copy(
    copy: &std::os::unix::net::UnixListener,
) -> std::io::Result<std::os::unix::net::UnixStream> {
    copy.set_nonblocking(true)?;
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        match copy.accept() {
            Ok((stream, _)) => return Ok(stream),
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
}

/// A Unix listener this process bound, handed over to a successor (a duplicate through
/// `with_sock_ref`), then closed: the socket goes on listening for the copy, which accepts the
/// connection queued before the close (not reset); but the close removes the socket file the
/// listener made, so no connect reaches the copy by that path afterwards (before, the row on
/// listeners with other descriptors said a connect then reached the copy, Unix or TCP). With
/// an abstract name, which has no file, connects reach the copy after the close.
#[tokio::test]
async fn a_unix_listener_handed_over_by_a_duplicate_keeps_listening_but_its_file_goes() {
    let selector = SelectorManager::new();
    let dir = net_tests::TempDir::new("unix-handed-over");
    let path = dir.join("s.sock");
    let abstract_name = format!("\0net-tests-handed-over-{}", std::process::id());
    for name in [path.clone(), std::path::PathBuf::from(&abstract_name)] {
        let address = net_sockets::UnixSocketAddress::new(name.clone());
        let server = a_socket(&selector)
            .tcp()
            .bind(address.clone())
            .await
            .unwrap();
        let successor: std::os::unix::net::UnixListener =
            server.with_sock_ref(|s| s.try_clone()).unwrap().into();
        let queued = within(a_socket(&selector).tcp().connect(address.clone()))
            .await
            .unwrap();
        server.close();
        accept_on_copy(&successor).expect("the copy accepts the queued one");
        drop(queued);
        let after = within(a_socket(&selector).tcp().connect(address)).await;
        if name == path {
            assert!(!path.exists(), "the listener's file is still there");
            let e = after.map(|_| ()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NotFound, "{e:?}");
        } else {
            let _client = after.expect("a connect to the copy by its abstract name");
            accept_on_copy(&successor).expect("the copy accepts a connect made after the close");
        }
    }
}
