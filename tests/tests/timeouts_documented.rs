//! Every timeout the libraries offer, checked against what their documentation says: what
//! starts and ends each, what a zero or an enormous duration means, what a timed-out operation
//! leaves behind (`Connection::close_gracefully`'s `wait`, `socket_timeout`, `connect_timeout`).

use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_sockets::{Error, SelectorManager, Socket, a_socket};
use net_tests::loopback::tcp_listener_with;
use net_tests::within;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

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

/// Guard: `socket_timeout(Duration::ZERO)` is no "no timeout" (as a socket timeout of 0 is in
/// Java): every read that has to wait fails at once with `Timeout`, and what had arrived stays
/// buffered, so the read retried once the rest came returns the line whole.
#[tokio::test]
async fn a_zero_socket_timeout_fails_every_wait_at_once_and_loses_nothing() {
    let selector = SelectorManager::new();
    let listener = tcp_listener_with(&selector, |b| b.socket_timeout(Duration::ZERO)).await;
    let mut peer = TcpStream::connect(("127.0.0.1", listener.port().unwrap()))
        .await
        .unwrap();
    let mut server = within(listener.accept()).await.unwrap();
    let mut input = server.open_read_channel().unwrap();
    peer.write_all(b"hal").await.unwrap();
    let started = Instant::now();
    let read = within(input.read_line(64, LineEnding::Default)).await;
    assert!(matches!(read, Err(net_io::Error::Timeout)), "{read:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    peer.write_all(b"lo\n").await.unwrap();
    // Retried until the rest has come: each wait times out, nothing is lost.
    let line = within(async {
        loop {
            match input.read_line(64, LineEnding::Default).await {
                Err(net_io::Error::Timeout) => tokio::time::sleep(Duration::from_millis(5)).await,
                other => return other,
            }
        }
    })
    .await;
    assert_eq!(line.unwrap().as_deref(), Some("hallo"));
}

/// `socket_timeout` after a read given up while it waited: the docs say that time runs on for
/// the next read, and that only a read that completes with something from the socket (bytes
/// received, the end, an error) starts it afresh. A read served from bytes received before
/// (here `read_bytes`, after a `read_line` that waited for the rest of its line) is none: the
/// time the server then spends counts, and the next read that waits fails once the given-up
/// read's timeout passed, losing nothing. (The docs said any read that completes "with bytes
/// read" started it afresh: the next read failed at once all the same.)
#[tokio::test]
async fn a_read_served_from_bytes_received_before_leaves_a_given_up_reads_timeout_running() {
    const TIMEOUT: Duration = Duration::from_secs(1);
    let selector = SelectorManager::new();
    let listener = tcp_listener_with(&selector, |b| b.socket_timeout(TIMEOUT)).await;
    let mut peer = TcpStream::connect(("127.0.0.1", listener.port().unwrap()))
        .await
        .unwrap();
    let mut server = within(listener.accept()).await.unwrap();
    let mut input = server.open_read_channel().unwrap();
    peer.write_all(b"ab").await.unwrap();
    // Waits for the rest of the line (its timeout running from here), and is given up.
    let waited = Instant::now();
    let given_up = tokio::time::timeout(
        Duration::from_millis(50),
        input.read_line(64, LineEnding::Default),
    )
    .await;
    assert!(given_up.is_err(), "{given_up:?}");
    // Served from what was received before: no wait, nothing from the socket.
    assert_eq!(&within(input.read_bytes(2)).await.unwrap()[..], b"ab");
    // The server is busy past the given-up read's timeout; the peer sends nothing meanwhile.
    tokio::time::sleep_until((waited + TIMEOUT + Duration::from_millis(50)).into()).await;
    let started = Instant::now();
    let read = within(input.read_line(64, LineEnding::Default)).await;
    assert!(matches!(read, Err(net_io::Error::Timeout)), "{read:?}");
    assert!(
        started.elapsed() < TIMEOUT,
        "the read waited {:?}: a read served from bytes received before started the timeout \
         afresh",
        started.elapsed()
    );
    // Nothing was lost, and a read that receives bytes goes on as usual.
    peer.write_all(b"cd\n").await.unwrap();
    let line = within(input.read_line(64, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("cd"));
}

/// `socket_timeout` on a write counts from when the write waits for the kernel to say the
/// socket takes bytes again, and Linux says so only once a third of the send buffer drained: a
/// peer that reads steadily, but slower than that per timeout (here 4 KiB every 50 ms against
/// a send buffer of 512 KiB, some 2 s), sets it off though it reads, as the builder's docs now
/// say. (They called it an inactivity timeout on writes, with no word of this.)
#[tokio::test]
async fn a_write_to_a_peer_that_reads_slower_than_the_kernel_wakes_writers_times_out() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;

    const TIMEOUT: Duration = Duration::from_millis(300);
    let selector = SelectorManager::new();
    let listener = tcp_listener_with(&selector, |b| {
        b.socket_timeout(TIMEOUT).send_buffer_size(256 * 1024)
    })
    .await;
    let mut peer = TcpStream::connect(("127.0.0.1", listener.port().unwrap()))
        .await
        .unwrap();
    let mut server = within(listener.accept()).await.unwrap();
    let mut output = server.open_write_channel(false).unwrap();
    let read = Arc::new(AtomicUsize::new(0));
    let reading = {
        let read = Arc::clone(&read);
        tokio::spawn(async move {
            let mut chunk = vec![0; 4 * 1024];
            while let Ok(n @ 1..) = peer.read(&mut chunk).await {
                read.fetch_add(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // More than the kernel's buffers hold: the write waits, and times out. (Zeros: what is
    // written does not matter here, and a generated payload of this size costs seconds of CPU
    // on a loaded machine.)
    let written = within(output.write_fully(&vec![0; 16 << 20])).await;
    let read_before = read.load(Ordering::SeqCst);
    assert!(
        matches!(written, Err(net_io::Error::Timeout)),
        "{written:?}"
    );
    // The peer was reading all along, and still reads: waited for (bounded by the hang limit),
    // not slept on, so that a loaded machine that runs the reader late cannot fail it.
    within(async {
        while read.load(Ordering::SeqCst) <= read_before {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    server.close();
    reading.abort();
}

/// Guard: `socket_timeout` and `connect_timeout` are stream sockets' options; a datagram
/// socket ignores them, as the options' documentation says (a UDP `receive` waits until a
/// datagram comes: bound it with `tokio::time::timeout`, it is cancel safe).
#[tokio::test]
async fn socket_timeout_does_not_apply_to_datagram_sockets() {
    let selector = SelectorManager::new();
    let other = a_socket(&selector)
        .udp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let socket = a_socket(&selector)
        .udp()
        .configure(|o| o.socket_timeout = Some(Duration::from_millis(10)))
        .connect(other.local_address())
        .await
        .unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(300), socket.receive()).await;
    assert!(waited.is_err(), "{waited:?}");
    // The receive given up lost nothing: the next one gets the datagram.
    other
        .send(net_sockets::Datagram::new(&b"ping"[..], socket.local_address()).unwrap())
        .await
        .unwrap();
    let datagram = within(socket.receive()).await.unwrap();
    assert_eq!(&datagram.packet[..], b"ping");
}

const FDS_CHILD: &str = "NET_TESTS_REVIEW_TIMEOUTS_FDS_CHILD";

/// Guard: a connect that `connect_timeout` ends (a listener whose backlog is full leaves its
/// SYNs unanswered) leaves no descriptor behind, nor does one given `Duration::ZERO` (which
/// succeeds when the connect completes without waiting, and is a `Timeout` otherwise).
/// Counted in a child process of its own, where no other test opens descriptors.
#[test]
fn timed_out_connects_leave_no_descriptor_behind() {
    net_tests::harness::rerun_self_alone(
        "timed_out_connects_leave_no_descriptor_behind_child",
        FDS_CHILD,
        "fds settled",
    );
}

#[test]
fn timed_out_connects_leave_no_descriptor_behind_child() {
    net_tests::harness::run_if_child(FDS_CHILD, async {
        use net_tests::probe::fd_count;
        let selector = SelectorManager::new();
        let full = net_tests::loopback::never_accepting_listener(&selector).await;
        // Fill the backlog first (those connects complete in the kernel).
        let mut fillers = Vec::new();
        let before = loop {
            let attempt = a_socket(&selector)
                .tcp()
                .connect_timeout(Duration::from_millis(100))
                .connect(full.local_address())
                .await;
            match attempt {
                Ok(socket) => fillers.push(socket),
                Err(Error::Timeout) => break fd_count(),
                Err(e) => panic!("{e:?}"),
            }
            assert!(fillers.len() < 64, "the backlog never filled");
        };
        for timeout in [Duration::ZERO, Duration::from_millis(20)] {
            for _ in 0..20 {
                let attempt = a_socket(&selector)
                    .tcp()
                    .connect_timeout(timeout)
                    .connect(full.local_address())
                    .await;
                assert!(matches!(attempt, Err(Error::Timeout)), "{attempt:?}");
            }
        }
        assert_eq!(fd_count(), before, "timed-out connects left descriptors");
        println!("fds settled");
    });
}
