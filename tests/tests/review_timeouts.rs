//! Every timeout the libraries offer, checked against what their documentation says: what
//! starts and ends each, what a zero or an enormous duration means, what a timed-out operation
//! leaves behind (`Connection::close_gracefully`'s `wait`, `socket_timeout`, `connect_timeout`).

use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

use net_sockets::{Error, SelectorManager, Socket};
use net_tests::loopback::tcp_listener_with;
use net_tests::within;

/// Fills the kernel's buffers of `socket` towards a peer that reads nothing: sends straight to
/// the socket (not through its write channel) until it takes no more.
fn fill_send_buffers(socket: &Socket) {
    let chunk = vec![7u8; 64 * 1024];
    socket
        .with_sock_ref(|sock| {
            for _ in 0..1024 {
                match sock.send(&chunk) {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            panic!("64 MiB sent to a peer that reads nothing");
        })
        .unwrap();
}

/// Reads what `peer` receives up to its end: `Ok(count)` after a clean end, the error (with
/// the count before it) otherwise.
fn read_to_the_end(mut peer: std::net::TcpStream) -> Result<usize, (usize, ErrorKind)> {
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut received = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match peer.read(&mut buf) {
            Ok(0) => return Ok(received),
            Ok(n) => received += n,
            Err(e) => return Err((received, e.kind())),
        }
    }
}

/// `close_gracefully(wait)` returns within `wait` also when the peer reads nothing and the
/// write channel still holds bytes: before, its flush waited for the peer for ever (without
/// `socket_timeout`), `wait` bounding only the drain of the input after it. The bytes that
/// could not be sent are lost, so the connection ends with a reset, never a clean end.
#[tokio::test]
async fn close_gracefully_returns_within_its_wait_when_the_peer_reads_nothing() {
    const WAIT: Duration = Duration::from_millis(200);
    let selector = SelectorManager::new();
    let listener = tcp_listener_with(&selector, |b| b.send_buffer_size(4096)).await;
    let peer = std::net::TcpStream::connect(("127.0.0.1", listener.port().unwrap())).unwrap();
    socket2::SockRef::from(&peer)
        .set_recv_buffer_size(4096)
        .unwrap();
    let server = within(listener.accept()).await.unwrap();
    fill_send_buffers(&server);
    let mut connection = server.connection().unwrap();
    // Buffered by the write channel (a `Connection`'s does not flush by itself).
    connection.output.write_fully(b"goodbye\n").await.unwrap();
    let started = Instant::now();
    let closed = tokio::time::timeout(WAIT * 10, connection.close_gracefully(WAIT)).await;
    let took = started.elapsed();
    let closed =
        closed.unwrap_or_else(|_| panic!("close_gracefully({WAIT:?}) still waits after {took:?}"));
    assert!(matches!(closed, Err(Error::Timeout)), "{closed:?}");
    assert!(took >= WAIT && took < WAIT * 5, "{took:?}");
    // The peer gets a reset after what was sent (the goodbye never left), not a clean end.
    let end = tokio::task::spawn_blocking(move || read_to_the_end(peer))
        .await
        .unwrap();
    assert!(
        matches!(end, Err((_, ErrorKind::ConnectionReset))),
        "{end:?}"
    );
}
