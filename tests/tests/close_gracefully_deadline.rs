//! An independent review of the pass's library changes: each test pins a behaviour that one of
//! them could have broken.

use std::io::{ErrorKind, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use net_sockets::SelectorManager;
use net_tests::loopback::tcp_listener_with;
use net_tests::within;

/// Sends from `peer` until the connection takes no more (both sides' buffers full); how many
/// bytes.
fn fill_towards(peer: &mut std::net::TcpStream) -> usize {
    peer.set_nonblocking(true).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let mut sent = 0;
    for _ in 0..4096 {
        match peer.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    peer.set_nonblocking(false).unwrap();
    sent
}

/// `close_gracefully(wait)`'s deadline fires while the drain of the input still finds bytes
/// each time: a drain that never has to wait spends the task's cooperative budget every turn,
/// and a deadline polled after it must not be refused for want of budget (as
/// `tokio::time::timeout`'s is not: it polls its timer unconstrained then). Otherwise a peer
/// that sends faster than the drain reads holds the call, and the connection, for ever.
///
/// Here the input holds megabytes and `wait` is zero: the call returns in the turn it starts
/// (another task of the thread does not run meanwhile), as the docs say ("closes at once").
#[tokio::test]
async fn close_gracefully_s_deadline_fires_while_the_drain_still_finds_input() {
    let selector = SelectorManager::new();
    let listener = tcp_listener_with(&selector, |b| b.receive_buffer_size(8 << 20)).await;
    let mut peer = std::net::TcpStream::connect(("127.0.0.1", listener.port().unwrap())).unwrap();
    socket2::SockRef::from(&peer)
        .set_send_buffer_size(4 << 20)
        .unwrap();
    let server = within(listener.accept()).await.unwrap();
    let sent = fill_towards(&mut peer);
    assert!(sent >= 2 << 20, "only {sent} bytes in flight");
    let connection = server.connection().unwrap();
    // Another task of this (current-thread) runtime: it runs only when the call yields.
    let ticks = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = {
        let (ticks, stop) = (Arc::clone(&ticks), Arc::clone(&stop));
        tokio::spawn(async move {
            for _ in 0..1_000_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                ticks.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        })
    };
    tokio::task::yield_now().await;
    let before = ticks.load(Ordering::Relaxed);
    let started = Instant::now();
    let closed = tokio::time::timeout(
        Duration::from_secs(5),
        connection.close_gracefully(Duration::ZERO),
    )
    .await;
    let took = started.elapsed();
    let turns = ticks.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    ticker.await.unwrap();
    let closed =
        closed.unwrap_or_else(|_| panic!("close_gracefully(0) still drains after {took:?}"));
    assert!(closed.is_ok(), "{closed:?}");
    assert!(
        turns <= 1,
        "close_gracefully(0) yielded {turns} times to drain the input ({took:?})"
    );
}

/// The levels of the events of the `net_io` and `net_sockets` crates on this thread, while it
/// is set as the thread's default.
struct Levels(Arc<std::sync::Mutex<Vec<(tracing::Level, String)>>>);

impl tracing::Subscriber for Levels {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let target = event.metadata().target();
        if target.starts_with("net_io") || target.starts_with("net_sockets") {
            let mut message = String::new();
            event.record(
                &mut |field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
                    if field.name() == "message" {
                        message = format!("{value:?}");
                    }
                },
            );
            self.0
                .lock()
                .unwrap()
                .push((*event.metadata().level(), message));
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Runs `body` on a current-thread runtime with [`Levels`] as this thread's subscriber; the
/// `warn` (and `error`) events it logged.
fn warnings_of(body: impl Future<Output = ()>) -> Vec<(tracing::Level, String)> {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let _default = tracing::subscriber::set_default(Levels(Arc::clone(&seen)));
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(body);
    }
    let seen = seen.lock().unwrap();
    seen.iter()
        .filter(|(level, _)| *level <= tracing::Level::WARN)
        .cloned()
        .collect()
}

/// A connection accepted by a listener of `selector` whose peer reads nothing: the kernel's
/// buffers are full, and its output holds bytes. The peer comes with it.
async fn stuck(selector: &SelectorManager) -> (net_sockets::Connection, std::net::TcpStream) {
    let listener = tcp_listener_with(selector, |b| b.send_buffer_size(4096)).await;
    let (server, peer) = net_tests::loopback::accepted_with_full_buffers(&listener).await;
    let mut connection = server.connection().unwrap();
    connection.output.write_fully(b"goodbye\n").await.unwrap();
    (connection, peer)
}

/// A `close_gracefully(wait)` whose flush timed out (the peer reads nothing) returned
/// `Error::Timeout`: its caller was told, and the peer chose it. The write channel it drops
/// with the bytes it could not send must not log the `warn` meant for a channel dropped
/// unflushed by mistake (a peer would set the rate of warnings in a log kept at `info`, as
/// after a flush that returned `Timeout`, which logs `debug`).
#[test]
fn close_gracefully_that_timed_out_logs_no_warning() {
    let warnings = warnings_of(async {
        let selector = SelectorManager::new();
        let (connection, _peer) = stuck(&selector).await;
        let closed = within(connection.close_gracefully(Duration::from_millis(100))).await;
        assert!(
            matches!(closed, Err(net_sockets::Error::Timeout)),
            "{closed:?}"
        );
    });
    assert!(warnings.is_empty(), "{warnings:?}");
}

/// The same for a `close_gracefully` that its caller dropped (a deadline of its own, a
/// `select!`, an aborted task): the docs say it then closes at once, as `close`; the caller
/// ended it on purpose, so the bytes its output held are thrown away without the `warn`
/// ("dropped with N unflushed bytes ... call flush_and_close"), which the peer would set the
/// rate of.
#[test]
fn close_gracefully_dropped_by_its_caller_logs_no_warning() {
    let warnings = warnings_of(async {
        let selector = SelectorManager::new();
        let (connection, _peer) = stuck(&selector).await;
        let closed = tokio::time::timeout(
            Duration::from_millis(100),
            connection.close_gracefully(Duration::from_secs(30)),
        )
        .await;
        assert!(closed.is_err(), "the close completed: {closed:?}");
    });
    assert!(warnings.is_empty(), "{warnings:?}");
}

/// And for a STARTTLS upgrade that its caller dropped while it flushed the plain-text
/// output (its own handshake timeout logs no `warn` either).
#[test]
fn a_starttls_upgrade_dropped_by_its_caller_logs_no_warning() {
    use net_tls::TlsExt;
    let config = net_tests::pki::Pki::generate()
        .client_config()
        .build()
        .unwrap();
    let warnings = warnings_of(async move {
        let selector = SelectorManager::new();
        let (connection, _peer) = stuck(&selector).await;
        let upgraded =
            tokio::time::timeout(Duration::from_millis(100), connection.tls(config)).await;
        assert!(upgraded.is_err(), "the upgrade completed");
    });
    assert!(warnings.is_empty(), "{warnings:?}");
}

/// What a `close_gracefully` that timed out loses: its close is a reset, and a reset drops
/// what the kernel still queues for the peer as well as what the write channel holds. The
/// peer (which read nothing until then) receives less than was sent to the socket before the
/// call, then `ConnectionReset`.
#[tokio::test]
async fn close_gracefully_that_timed_out_drops_the_kernel_s_queue_too() {
    let selector = SelectorManager::new();
    let listener = tcp_listener_with(&selector, |b| b.send_buffer_size(64 * 1024)).await;
    let peer = std::net::TcpStream::connect(("127.0.0.1", listener.port().unwrap())).unwrap();
    socket2::SockRef::from(&peer)
        .set_recv_buffer_size(16 * 1024)
        .unwrap();
    let server = within(listener.accept()).await.unwrap();
    let chunk = vec![7u8; 16 * 1024];
    let sent = server
        .with_sock_ref(|sock| {
            let mut sent = 0;
            for _ in 0..4096 {
                match sock.send(&chunk) {
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            Ok(sent)
        })
        .unwrap();
    let mut connection = server.connection().unwrap();
    connection.output.write_fully(b"goodbye\n").await.unwrap();
    let closed = within(connection.close_gracefully(Duration::from_millis(100))).await;
    assert!(
        matches!(closed, Err(net_sockets::Error::Timeout)),
        "{closed:?}"
    );
    let (received, end) = tokio::task::spawn_blocking(move || {
        let mut peer = peer;
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut received = 0;
        loop {
            match std::io::Read::read(&mut peer, &mut buf) {
                Ok(0) => return (received, None),
                Ok(n) => received += n,
                Err(e) => return (received, Some(e.kind())),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(
        end,
        Some(ErrorKind::ConnectionReset),
        "after {received} of {sent}"
    );
    assert!(received < sent, "{received} of {sent}");
}

/// `close_gracefully(wait)` "reads and discards input until the peer's end of stream or until
/// `wait` has passed", whatever `socket_timeout` says: a peer silent for longer than the socket
/// timeout (it has not read our answer yet) that then sends a last word is still drained. The
/// drain stopped at the first `socket_timeout`, and the close made the kernel answer that word
/// with a reset, which destroyed the part of the answer still queued for the peer (while the
/// call returned `Ok`).
#[tokio::test(flavor = "current_thread")]
async fn the_drain_outlasts_a_shorter_socket_timeout() {
    const ANSWER: usize = 256 << 10;
    let selector = SelectorManager::new();
    let listener = tcp_listener_with(&selector, |b| {
        b.socket_timeout(Duration::from_millis(200))
            .send_buffer_size(1 << 20)
    })
    .await;
    let port = listener.port().unwrap();
    let client = std::thread::spawn(move || {
        use std::io::Read;
        let raw = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        raw.set_recv_buffer_size(4096).unwrap();
        let to: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        raw.connect(&to.into()).unwrap();
        let mut tcp: std::net::TcpStream = raw.into();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // Silent, reading nothing, for longer than the server's socket timeout; then a last
        // word; then it reads the answer to its end.
        std::thread::sleep(Duration::from_millis(700));
        tcp.write_all(b"thanks\n").unwrap();
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        let end = loop {
            match tcp.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => got += n,
                Err(e) => break Err(e),
            }
        };
        (got, end)
    });
    let socket = within(listener.accept()).await.unwrap();
    let mut connection = socket.connection().unwrap();
    connection
        .output
        .write_fully(&vec![1u8; ANSWER])
        .await
        .unwrap();
    let started = Instant::now();
    let closed = within(connection.close_gracefully(Duration::from_secs(5))).await;
    let took = started.elapsed();
    let (got, end) = client.join().unwrap();
    assert!(
        got == ANSWER && end.is_ok() && closed.is_ok(),
        "the client read {got} of {ANSWER} bytes, then {end:?}; close_gracefully(5 s) returned \
         {closed:?} after {took:?}"
    );
}

/// With a `socket_timeout` of zero, every wait fails at once: `close_gracefully`'s drain of a
/// silent peer ends at its first timeout (nothing to wait for), and the call returns `Ok`
/// without waiting for `wait` (an hour here).
#[test]
fn with_a_socket_timeout_of_zero_the_drain_of_a_silent_peer_ends_at_once() {
    let (done, finished) = std::sync::mpsc::channel();
    // A runtime of its own: a drain that never waits would keep its thread for ever.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let selector = SelectorManager::new();
            let listener = tcp_listener_with(&selector, |b| b.socket_timeout(Duration::ZERO)).await;
            let peer =
                std::net::TcpStream::connect(("127.0.0.1", listener.port().unwrap())).unwrap();
            let socket = within(listener.accept()).await.unwrap();
            let connection = socket.connection().unwrap();
            let closed = connection.close_gracefully(Duration::from_secs(3600)).await;
            let _ = done.send(closed);
            drop(peer);
            selector.close();
        });
    });
    let closed = finished
        .recv_timeout(Duration::from_secs(10))
        .expect("close_gracefully never returned");
    assert!(closed.is_ok(), "{closed:?}");
}
