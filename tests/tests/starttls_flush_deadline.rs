//! STARTTLS on a `Connection` flushes the connection's output before the handshake: that flush
//! is part of the upgrade, and the handshake timeout bounds the whole of it. A peer that never
//! reads must not hold `tls_server` (or `tls`) for ever when the output holds more than the
//! socket's buffers take; one deadline counts from the start of the upgrade, not one for the
//! flush and another for the handshake.

use std::pin::pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use net_sockets::{Connection, SelectorManager, ServerSocket};
use net_tests::loopback::{connect, tcp_listener};
use net_tests::pending_after_one_poll;
use net_tests::pki::Pki;
use net_tls::{Error, TlsExt, TlsServerConfig, TlsSocket};
use tokio::io::AsyncReadExt;
use tokio_util::codec::BytesCodec;

/// More than loopback's socket buffers (both sides) take from a peer that never reads.
const UNFLUSHED: usize = 16 * 1024 * 1024;

/// The bound on a test's upgrade: well past its handshake timeout, far short of for ever.
const OUTER: Duration = Duration::from_secs(10);

/// Leaves `UNFLUSHED` bytes in `connection`'s output (no auto-flush), more than the socket
/// takes: a frame is buffered whole, and a `write_frame` dropped while it writes the buffer
/// out leaves the rest buffered.
async fn leave_unflushed(connection: &mut Connection) {
    let frame = Bytes::from(vec![7u8; UNFLUSHED]);
    let mut codec = BytesCodec::new();
    let writing = pin!(connection.output.write_frame(&mut codec, frame));
    assert!(
        pending_after_one_poll(writing).await,
        "the socket took {UNFLUSHED} bytes from a peer that reads nothing"
    );
}

/// A connection accepted by `listener` with `UNFLUSHED` bytes left in its output, and its peer,
/// which reads nothing.
async fn unflushed_accepted(listener: &ServerSocket) -> (Connection, tokio::net::TcpStream) {
    let peer = tokio::net::TcpStream::connect(listener.local_address().to_string())
        .await
        .unwrap();
    let accepted = net_tests::within(listener.accept()).await.unwrap();
    let mut connection = accepted.connection().unwrap();
    leave_unflushed(&mut connection).await;
    (connection, peer)
}

/// A server configuration from the test PKI with this handshake timeout.
fn server_config(handshake_timeout: Duration) -> TlsServerConfig {
    Pki::generate()
        .server_config()
        .handshake_timeout(handshake_timeout)
        .build()
        .unwrap()
}

/// The upgrade failed with its handshake timeout, `limit`, no sooner than `limit` after it
/// began (`took`).
fn assert_handshake_timeout(
    upgraded: &net_tls::Result<TlsSocket>,
    took: Duration,
    limit: Duration,
) {
    assert!(
        matches!(upgraded, Err(Error::HandshakeTimeout(t)) if *t == limit),
        "{upgraded:?}"
    );
    assert!(took >= limit, "failed after {took:?}, before the timeout");
}

/// Awaits an upgrade for `OUTER` at most.
async fn bounded(
    upgrade: impl Future<Output = net_tls::Result<TlsSocket>>,
) -> net_tls::Result<TlsSocket> {
    match tokio::time::timeout(OUTER, upgrade).await {
        Ok(done) => done,
        Err(_) => panic!(
            "the upgrade was still flushing to a peer that reads nothing after {OUTER:?}, \
             though its handshake timeout is far shorter"
        ),
    }
}

/// Reads what `peer` gets until its end, which must be a reset (the upgrade gave up on a flush,
/// throwing away what the output held): the byte count read before it.
async fn read_to_the_end(peer: &mut tokio::net::TcpStream) -> usize {
    let mut buf = vec![0; 64 * 1024];
    let mut total = 0;
    loop {
        match peer.read(&mut buf).await {
            Ok(0) => panic!(
                "a clean end after {total} bytes: the upgrade gave up on a flush, which resets"
            ),
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
                return total;
            }
            Ok(n) => total += n,
        }
    }
}

#[tokio::test]
async fn starttls_server_flush_to_a_peer_that_never_reads_ends_at_the_handshake_timeout() {
    const LIMIT: Duration = Duration::from_millis(200);
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let config = server_config(LIMIT);
    let (connection, mut peer) = unflushed_accepted(&listener).await;

    let started = Instant::now();
    let upgraded = bounded(connection.tls_server(&config)).await;
    assert_handshake_timeout(&upgraded, started.elapsed(), LIMIT);
    // The socket is closed: the peer reads up to an end (or a reset), never waits for more.
    let read = net_tests::within(read_to_the_end(&mut peer)).await;
    assert!(read < UNFLUSHED, "the peer read all {read} bytes");
    selector.close();
}

#[tokio::test]
async fn starttls_client_flush_to_a_peer_that_never_reads_ends_at_the_handshake_timeout() {
    const LIMIT: Duration = Duration::from_millis(200);
    let selector = SelectorManager::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pki = Pki::generate();
    let config = pki
        .client_config()
        .handshake_timeout(LIMIT)
        .build()
        .unwrap();
    let socket = connect(&selector, listener.local_addr().unwrap()).await;
    let (mut peer, _) = net_tests::within(listener.accept()).await.unwrap();
    let mut connection = socket.connection().unwrap();
    leave_unflushed(&mut connection).await;

    let started = Instant::now();
    let upgraded = bounded(connection.tls(config)).await;
    assert_handshake_timeout(&upgraded, started.elapsed(), LIMIT);
    let read = net_tests::within(read_to_the_end(&mut peer)).await;
    assert!(read < UNFLUSHED, "the peer read all {read} bytes");
    selector.close();
}

/// A peer that reads everything only after `DRAINS_AFTER`, then never sends a ClientHello:
/// the flush ends after that, and the handshake has only what is left of the one deadline.
/// Two timeouts (one for the flush, then a fresh one for the handshake) would end the upgrade
/// no sooner than `DRAINS_AFTER + LIMIT`.
///
/// The peer has `LIMIT - DRAINS_AFTER` to take the flush, and the upgrade `DRAINS_AFTER` past
/// its deadline to report the failure: both seconds, for a loaded machine. (With 2 s and
/// 800 ms, a starved peer did not take all the flush in time: "the flush reached the peer".)
#[tokio::test]
async fn starttls_flush_and_handshake_share_one_deadline() {
    const LIMIT: Duration = Duration::from_secs(5);
    const DRAINS_AFTER: Duration = Duration::from_millis(1500);
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let config = server_config(LIMIT);
    let (connection, mut peer) = unflushed_accepted(&listener).await;

    let started = Instant::now();
    // The peer reads all it is sent, from `DRAINS_AFTER` on, and says nothing.
    let draining = tokio::spawn(async move {
        tokio::time::sleep_until((started + DRAINS_AFTER).into()).await;
        let mut buf = vec![0; 64 * 1024];
        let mut total = 0;
        while total < UNFLUSHED {
            match peer.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        (peer, total)
    });
    let upgraded = bounded(connection.tls_server(&config)).await;
    let took = started.elapsed();
    assert!(
        matches!(upgraded, Err(Error::HandshakeTimeout(t)) if t == LIMIT),
        "{upgraded:?}"
    );
    let (_peer, drained) = net_tests::within(draining).await.unwrap();
    assert_eq!(drained, UNFLUSHED, "the flush reached the peer");
    assert!(
        took >= LIMIT && took < DRAINS_AFTER + LIMIT,
        "the upgrade failed after {took:?}: the handshake timeout ({LIMIT:?}) must count from \
         the start of the upgrade, the flush included, not from the flush's end (the peer \
         began to read after {DRAINS_AFTER:?})"
    );
    selector.close();
}

/// A `socket_timeout` shorter than the handshake timeout ends the flush first, as it ends a
/// silent handshake first: `Socket(Timeout)`.
#[tokio::test]
async fn a_shorter_socket_timeout_ends_the_starttls_flush_first() {
    let selector = SelectorManager::new();
    let listener = net_tests::loopback::tcp_listener_with(&selector, |builder| {
        builder.socket_timeout(Duration::from_millis(200))
    })
    .await;
    let config = server_config(Duration::from_secs(60));
    let (connection, _peer) = unflushed_accepted(&listener).await;

    let upgraded = bounded(connection.tls_server(&config)).await;
    assert!(
        matches!(upgraded, Err(Error::Socket(net_sockets::Error::Timeout))),
        "{upgraded:?}"
    );
    selector.close();
}
