//! A `recv` that returns fewer bytes than it had room for has not always drained the socket:
//! it stops at the mark of a peer's out-of-band byte (`MSG_OOB`: TCP's urgent data, which
//! Linux also has on Unix stream sockets), and on a Unix socket after bytes that came with
//! descriptors (`SCM_RIGHTS`), though input is queued after them. A read takes such a short
//! read for the socket drained, as tokio's own streams do (ruling it out would cost a `recv`
//! per read: see guarantees.md), so the input queued after it is read when more arrives:
//! nothing is lost or reordered. A listener's read of a PROXY protocol header, off the hot
//! path, reads it at once.

use std::io::Write;
use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_sockets::{Connection, SelectorManager, UnixSocketAddress, a_socket};
use net_tests::{TempDir, within};

/// Sends `abc`, an out-of-band `X`, then `def\n` from `peer`.
fn send_with_urgent_byte(peer: &mut (impl Write + std::os::fd::AsFd)) {
    peer.write_all(b"abc").unwrap();
    socket2::SockRef::from(&*peer)
        .send_out_of_band(b"X")
        .unwrap();
    peer.write_all(b"def\n").unwrap();
}

/// Reads the line the peer sent with its out-of-band byte, then the one it sends after a
/// while (`more`, which wakes a read that stopped at the mark, whenever it comes): every byte
/// of the stream in order, the out-of-band byte not among them (no `SO_OOBINLINE`).
async fn read_past_the_mark(connection: &mut Connection, peer: &mut impl Write) {
    let reading = async {
        let first = connection.input.read_line(64, LineEnding::Default).await;
        let second = connection.input.read_line(64, LineEnding::Default).await;
        (first.unwrap(), second.unwrap())
    };
    // When `more` comes does not decide the outcome: the lines are the same either way.
    let sending = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        peer.write_all(b"more\n").unwrap();
    };
    let ((first, second), ()) = within(async { tokio::join!(reading, sending) }).await;
    assert_eq!(first.as_deref(), Some("abcdef"));
    assert_eq!(second.as_deref(), Some("more"));
}

#[tokio::test]
async fn input_queued_past_an_out_of_band_mark_is_read_unix() {
    let selector = SelectorManager::new();
    let dir = TempDir::new("unix-oob");
    let path = dir.join("s.sock");
    let listener = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new(&path))
        .await
        .unwrap();
    let mut peer = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let socket = within(listener.accept()).await.unwrap();
    // A Unix send puts the bytes in the receiving socket's queue before it returns.
    send_with_urgent_byte(&mut peer);
    let mut connection = socket.connection().unwrap();
    read_past_the_mark(&mut connection, &mut peer).await;
}

#[tokio::test]
async fn input_queued_past_an_out_of_band_mark_is_read_tcp() {
    let selector = SelectorManager::new();
    let listener = a_socket(&selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let mut peer = std::net::TcpStream::connect(("127.0.0.1", listener.port().unwrap())).unwrap();
    // Every part leaves at once (no Nagle wait for an acknowledgement).
    peer.set_nodelay(true).unwrap();
    let socket = within(listener.accept()).await.unwrap();
    send_with_urgent_byte(&mut peer);
    // Over loopback, acknowledged is queued at the receiver: wait (bounded) for that.
    let (local, remote) = (peer.local_addr().unwrap(), peer.peer_addr().unwrap());
    let started = Instant::now();
    while net_tests::fault::unacknowledged(local, remote) > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut connection = socket.connection().unwrap();
    read_past_the_mark(&mut connection, &mut peer).await;
}

/// A local peer sends `abc` with a descriptor attached (`SCM_RIGHTS`, which the read, taking no
/// control messages, drops: the kernel closes it), then `def\n`, and later `more\n`: the lines
/// come whole and in order (the read stops after `abc`, and reads on when `more` arrives).
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[tokio::test]
async fn input_queued_after_bytes_that_came_with_a_descriptor_is_read() {
    let selector = SelectorManager::new();
    let dir = TempDir::new("unix-rights");
    let path = dir.join("s.sock");
    let listener = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new(&path))
        .await
        .unwrap();
    let mut peer = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let socket = within(listener.accept()).await.unwrap();
    let passed = std::fs::File::open("/dev/null").unwrap();
    net_tests::fault::send_with_a_descriptor(&peer, b"abc", &passed);
    peer.write_all(b"def\n").unwrap();
    let mut connection = socket.connection().unwrap();
    read_past_the_mark(&mut connection, &mut peer).await;
}

/// The same while a Unix listener reads a client's PROXY protocol header: a header whose
/// first part came with a descriptor is read whole, at once. Before, the header read (tokio's
/// `read_buf`, which takes a short read for the socket drained) waited with the rest queued
/// until the header timeout, then dropped the connection as a header cut short.
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[tokio::test]
async fn a_proxy_header_whose_first_part_came_with_a_descriptor_is_read_at_once() {
    let selector = SelectorManager::new();
    let dir = TempDir::new("unix-rights-proxy");
    let path = dir.join("s.sock");
    let listener = a_socket(&selector)
        .tcp()
        .proxy_protocol(net_sockets::ProxyProtocol::Required)
        .proxy_header_timeout(Duration::from_secs(60))
        .bind(UnixSocketAddress::new(&path))
        .await
        .unwrap();
    let mut peer = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let passed = std::fs::File::open("/dev/null").unwrap();
    net_tests::fault::send_with_a_descriptor(&peer, b"PROXY UNKNOWN", &passed);
    peer.write_all(b"\r\nhello\n").unwrap();
    let socket = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("the header read waited with the header's end queued")
        .unwrap();
    let mut connection = socket.connection().unwrap();
    let line = within(connection.input.read_line(64, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("hello"));
}
