//! Claims of net-sockets' and net-tls' docs about writes, flushes, drops, copies and what the
//! peer receives, checked against the code (after net-io's write path changed: a write of up to
//! 8 KiB is buffered whole or not at all).

use std::io::Read as _;
use std::time::Duration;

use net_io::ByteWriteChannel;
use net_sockets::SelectorManager;
use net_sockets::{ServerSocket, Socket};
use net_tests::loopback::{connected_pair, tcp_listener, tcp_listener_with};
use net_tests::{pending_after_one_poll, within};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A connection accepted by `listener` whose kernel buffers are full of filler bytes (7), sent
/// through the socket itself before any channel is open, so that any write that reaches the
/// socket waits; and its peer, a blocking std stream, which reads nothing until the test drains
/// it. The fill is repeated (bounded: 50 rounds) until a round 20 ms after the last finds no
/// room, so that a window the peer still had open does not make room later.
async fn stalled(listener: &ServerSocket) -> (Socket, std::net::TcpStream) {
    let port = listener.port().expect("a TCP listener");
    let peer = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let server = within(listener.accept()).await.expect("accept");
    let chunk = vec![7u8; 64 * 1024];
    for _ in 0..50 {
        let mut took = 0usize;
        server
            .with_sock_ref(|sock| {
                for _ in 0..1024 {
                    match sock.send(&chunk) {
                        Ok(n) => took += n,
                        Err(_) => break,
                    }
                }
                Ok(())
            })
            .expect("the socket's descriptor");
        if took == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (server, peer)
}

/// Reads `peer` (a blocking std stream) to its end in a thread: the bytes, and how it ended.
fn read_to_end_in_a_thread(
    mut peer: std::net::TcpStream,
) -> tokio::task::JoinHandle<(Vec<u8>, std::io::Result<usize>)> {
    peer.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    tokio::task::spawn_blocking(move || {
        let mut received = Vec::new();
        let end = peer.read_to_end(&mut received);
        (received, end)
    })
}

/// guarantees.md, "A write future dropped before it completes": "a write of up to 8 KiB that
/// went into the buffer is sent whole or not at all", and the connection still ends cleanly
/// (the drop cut nothing). At the boundary: a write of exactly 8 KiB that does not fit the room
/// left, dropped while it waits for the buffer to be written out.
#[tokio::test]
async fn a_write_of_exactly_8_kib_dropped_while_it_waited_for_room_is_not_sent_and_the_end_is_clean()
 {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut socket, peer) = stalled(&listener).await;
    let mut output = socket.open_write_channel(false).unwrap();
    output.write_fully(&[b'a'; 100]).await.unwrap();
    {
        let write = output.write_fully(&[b'b'; 8192]);
        tokio::pin!(write);
        assert!(
            pending_after_one_poll(write.as_mut()).await,
            "a write that does not fit the room left waits for the buffer to be written out"
        );
    }
    let reader = read_to_end_in_a_thread(peer);
    within(output.flush_and_close()).await.unwrap();
    socket.close();
    let (received, end) = within(reader).await.unwrap();
    assert!(
        end.is_ok(),
        "a clean end after a drop that cut nothing: {end:?}"
    );
    let ours: Vec<u8> = received.into_iter().filter(|&b| b != 7).collect();
    assert_eq!(
        ours,
        vec![b'a'; 100],
        "the dropped write is not sent at all"
    );
}

/// The same over TLS: the dropped write of up to 8 KiB is sent whole or not at all, and
/// `flush_and_close` still ends with `close_notify`.
#[tokio::test]
async fn a_tls_write_of_8_kib_dropped_while_it_waited_is_whole_or_absent_and_the_end_is_clean() {
    let selector = SelectorManager::new();
    let pki = net_tests::pki::Pki::generate();
    let listener = tcp_listener(&selector).await;
    let (mut server, mut client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
    let mut output = server.open_write_channel(false).unwrap();
    // Fill the way to the client until a flush waits.
    let mut filler = 0usize;
    let mut filled = false;
    for _ in 0..100_000 {
        output.write_fully(&[b'f'; 4096]).await.unwrap();
        filler += 4096;
        let flush = output.flush();
        tokio::pin!(flush);
        if pending_after_one_poll(flush.as_mut()).await {
            filled = true;
            break;
        }
    }
    assert!(filled, "a flush never waited");
    let mut waited = false;
    {
        let write = output.write_fully(&[b'b'; 8192]);
        tokio::pin!(write);
        if pending_after_one_poll(write.as_mut()).await {
            waited = true;
        }
    }
    let mut input = client.open_read_channel().unwrap();
    let closer = tokio::spawn(async move {
        let r = output.flush_and_close().await;
        (r, output)
    });
    let mut received = Vec::new();
    let end = within(async {
        loop {
            let mut chunk = [0u8; 65536];
            match input.read_available(&mut chunk).await {
                Ok(0) => break Ok(()),
                Ok(n) => received.extend_from_slice(&chunk[..n]),
                Err(e) => break Err(e),
            }
        }
    })
    .await;
    let (closed, _output) = within(closer).await.unwrap();
    closed.unwrap();
    assert!(end.is_ok(), "a clean end (close_notify): {end:?}");
    let bs = received.iter().filter(|&&b| b == b'b').count();
    let fs = received.iter().filter(|&&b| b == b'f').count();
    assert_eq!(fs, filler, "every byte of the filler");
    assert!(
        bs == 0 || bs == 8192,
        "whole or not at all (waited: {waited}): {bs} bytes of it"
    );
    drop(server);
}

/// coming_from_ktor.md, `copyAndClose`: "a copy that fails cuts the destination short ... so
/// its peer never sees a clean end (but for a `Timeout`, after which the copy can go on)".
#[tokio::test]
async fn copy_and_close_goes_on_after_a_source_timeout_and_ends_the_destination_cleanly() {
    let selector = SelectorManager::new();
    let timed =
        tcp_listener_with(&selector, |b| b.socket_timeout(Duration::from_millis(200))).await;
    let plain = tcp_listener(&selector).await;
    let (source_peer, mut source) = connected_pair(&selector, &timed).await;
    let (mut dest_peer, mut dest) = connected_pair(&selector, &plain).await;
    let mut source_peer = source_peer.into_stream().unwrap();
    let mut dest_peer_stream = {
        let _ = &mut dest_peer;
        dest_peer.into_stream().unwrap()
    };
    let mut input = source.open_read_channel().unwrap();
    let mut output: ByteWriteChannel = dest.open_write_channel(false).unwrap();
    source_peer.write_all(b"hello ").await.unwrap();
    let first = within(input.copy_and_close(&mut output, u64::MAX)).await;
    assert!(
        matches!(first, Err(net_io::Error::Timeout)),
        "the source's timeout: {first:?}"
    );
    assert!(
        !output.is_closed_for_write(),
        "a Timeout does not cut the destination"
    );
    source_peer.write_all(b"world").await.unwrap();
    source_peer.shutdown().await.unwrap();
    within(input.copy_and_close(&mut output, u64::MAX))
        .await
        .unwrap();
    let mut received = Vec::new();
    let end = within(dest_peer_stream.read_to_end(&mut received)).await;
    assert!(end.is_ok(), "a clean end: {end:?}");
    assert_eq!(received, b"hello world");
}

/// A connection (`socket_timeout` 300 ms) whose kernel buffers are full and whose write channel
/// holds 4,000 bytes; a `write_fully` of 5,000 more (which does not fit the room left, so waits
/// for the buffer to be written out) has just returned `Timeout`. Also the peer.
async fn a_small_write_timed_out_waiting_for_room(
    selector: &SelectorManager,
) -> (Socket, ByteWriteChannel, std::net::TcpStream) {
    let listener =
        tcp_listener_with(selector, |b| b.socket_timeout(Duration::from_millis(300))).await;
    let (mut socket, peer) = stalled(&listener).await;
    let mut output = socket.open_write_channel(false).unwrap();
    output.write_fully(&[b'a'; 4000]).await.unwrap();
    let timed_out = within(output.write_fully(&[b'b'; 5000])).await;
    assert!(
        matches!(timed_out, Err(net_io::Error::Timeout)),
        "{timed_out:?}"
    );
    (socket, output, peer)
}

/// guarantees.md, "A write times out": a write of up to 8 KiB that does not fit the room left
/// (new: it waits for the buffer to be written out) times out without effect — none of its own
/// bytes reached the socket — so `is_closed_for_write()` is false, the retry sends each byte
/// once, and the connection then ends cleanly ("close() sends everything written, then FIN").
#[tokio::test]
async fn a_small_write_that_timed_out_waiting_for_room_is_retried_and_the_end_is_clean() {
    let selector = SelectorManager::new();
    let (socket, mut output, peer) = a_small_write_timed_out_waiting_for_room(&selector).await;
    assert!(!output.is_closed_for_write(), "a call without effect");
    assert_eq!(
        output.total_bytes_written(),
        4000,
        "the call's bytes were not accepted"
    );
    let reader = read_to_end_in_a_thread(peer);
    within(output.write_fully(&[b'b'; 5000])).await.unwrap();
    within(output.flush()).await.unwrap();
    socket.close();
    let (received, end) = within(reader).await.unwrap();
    assert!(end.is_ok(), "a clean end: {end:?}");
    let ours: Vec<u8> = received.into_iter().filter(|&b| b != 7).collect();
    let mut expected = vec![b'a'; 4000];
    expected.extend_from_slice(&[b'b'; 5000]);
    assert!(
        ours == expected,
        "each byte once, in order ({} bytes)",
        ours.len()
    );
}

/// The same, given up instead of retried: a flush then makes the timeout good, and the
/// connection ends "as if the call had not been made".
#[tokio::test]
async fn a_small_write_that_timed_out_waiting_for_room_and_was_given_up_ends_cleanly_after_a_flush()
{
    let selector = SelectorManager::new();
    let (socket, mut output, peer) = a_small_write_timed_out_waiting_for_room(&selector).await;
    let reader = read_to_end_in_a_thread(peer);
    within(output.flush()).await.unwrap();
    socket.close();
    let (received, end) = within(reader).await.unwrap();
    assert!(end.is_ok(), "a clean end: {end:?}");
    let ours: Vec<u8> = received.into_iter().filter(|&b| b != 7).collect();
    assert!(ours == vec![b'a'; 4000], "{} bytes", ours.len());
}

/// coming_from_ktor.md, `copyTo`: "Does not close the destination, also when the copy fails";
/// and what was copied before the source failed reaches the destination's peer without a
/// flush of the caller's.
#[tokio::test]
async fn copy_to_leaves_the_destination_open_and_its_copied_bytes_sent_when_the_source_is_reset() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (source_peer, mut source) = connected_pair(&selector, &listener).await;
    let (dest_peer, mut dest) = connected_pair(&selector, &listener).await;
    let mut dest_peer = dest_peer.into_stream().unwrap();
    let mut input = source.open_read_channel().unwrap();
    let mut output = dest.open_write_channel(false).unwrap();
    let mut source_peer = source_peer.into_stream().unwrap();
    source_peer
        .write_all(b"copied before the reset")
        .await
        .unwrap();
    source_peer.flush().await.unwrap();
    let copy = tokio::spawn(async move {
        let r = input.copy_to(&mut output, u64::MAX).await;
        (r, output)
    });
    let mut got = vec![0u8; 23];
    within(dest_peer.read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"copied before the reset");
    source_peer
        .with_sock_ref(|s| s.set_linger(Some(Duration::ZERO)))
        .unwrap();
    drop(source_peer);
    let (result, mut output) = within(copy).await.unwrap();
    let e = result.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e:?}");
    assert!(!output.is_closed_for_write(), "the destination stays open");
    output.write_fully(b"; and after").await.unwrap();
    within(output.flush_and_close()).await.unwrap();
    let mut rest = Vec::new();
    within(dest_peer.read_to_end(&mut rest)).await.unwrap();
    assert_eq!(rest, b"; and after");
}

/// lib.rs, "Tracing": "each send of a stream socket (TCP or Unix, TLS included) is a `trace`
/// event, `sent` (a datagram socket's sends are not traced)". (The sentence said "each send",
/// which a datagram socket's `send` is too: it produced no `sent` event.)
#[test]
fn a_datagram_sockets_sends_are_not_traced() {
    let sends = net_tests::sends::Sends::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(sends.clone(), || {
        runtime.block_on(async {
            let selector = SelectorManager::new();
            let a = net_tests::loopback::udp_socket(&selector).await;
            let b = net_tests::loopback::udp_socket(&selector).await;
            for i in 0..3u8 {
                let datagram = net_sockets::Datagram::new(vec![i; 10], b.local_address()).unwrap();
                within(a.send(datagram)).await.unwrap();
                within(b.receive()).await.unwrap();
            }
        });
    });
    assert_eq!(sends.count(), 0, "`sent` events for datagrams sent");
}

/// `BoundDatagramSocket::send`'s errors: "`Error::Io` of kind `InvalidInput` for an IPv6
/// address (other than an IPv4-mapped one) on a socket bound to an IPv4 address (or an
/// IPv4-mapped one, IPv4 in effect), or an IPv4 address (in either form) on a socket bound to
/// an IPv6 address other than `::` (such as `::1`)".
#[tokio::test]
async fn datagram_sends_across_families_are_invalid_input_as_documented() {
    if !net_tests::loopback::has_ipv6_loopback() {
        return;
    }
    let selector = SelectorManager::new();
    let v6 = net_sockets::a_socket(&selector)
        .udp()
        .bind(("::1", 0))
        .await
        .unwrap();
    for to in ["127.0.0.1:9", "[::ffff:127.0.0.1]:9"] {
        let to: std::net::SocketAddr = to.parse().unwrap();
        let e = v6
            .send(net_sockets::Datagram::new("x", to).unwrap())
            .await
            .unwrap_err();
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::InvalidInput,
            "::1 -> {to}: {e:?}"
        );
    }
    let mapped = net_sockets::a_socket(&selector)
        .udp()
        .bind(("::ffff:127.0.0.1", 0))
        .await;
    match mapped {
        Ok(mapped) => {
            let to: std::net::SocketAddr = "[::1]:9".parse().unwrap();
            let e = mapped
                .send(net_sockets::Datagram::new("x", to).unwrap())
                .await
                .unwrap_err();
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::InvalidInput,
                "mapped -> {to}: {e:?}"
            );
        }
        Err(e) => eprintln!("binding ::ffff:127.0.0.1 failed here: {e}"),
    }
}

/// coming_from_ktor.md, `cancel(cause)`: "The writer of a `ByteChannel` fails with `Cancelled`
/// on its next write that reaches the pipe (one that only adds to its buffer succeeds)". With
/// the new write path, a write of up to 8 KiB that does not fit the room left writes the
/// buffer out first: it reaches the pipe, so it fails.
#[tokio::test]
async fn a_byte_channel_writer_learns_of_the_cancel_from_a_small_write_that_does_not_fit() {
    let (mut output, mut input) = net_io::ByteChannel::new(false);
    input.cancel();
    output.write_fully(&[1; 4000]).await.unwrap();
    let e = within(output.write_fully(&[2; 5000])).await.unwrap_err();
    assert!(matches!(e, net_io::Error::Cancelled), "{e:?}");
}

/// net-tls lib.rs, "Truncation": "A truncation in the middle of a line gives the same error and
/// returns none of the line's bytes, so a half-received request is never taken for a whole one."
#[tokio::test]
async fn a_truncation_in_the_middle_of_a_line_returns_none_of_its_bytes() {
    let selector = SelectorManager::new();
    let pki = net_tests::pki::Pki::generate();
    let listener = tcp_listener(&selector).await;
    let (mut server, mut client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
    let mut input = server.open_read_channel().unwrap();
    let mut output = client.open_write_channel(false).unwrap();
    output.write_fully(b"whole\nhalf a li").await.unwrap();
    within(output.flush()).await.unwrap();
    client
        .with_sock_ref(|s| s.shutdown(std::net::Shutdown::Write))
        .unwrap();
    let first = within(input.read_line(64, net_io::LineEnding::Default)).await;
    assert_eq!(first.unwrap().as_deref(), Some("whole"));
    for _ in 0..2 {
        let e = within(input.read_line(64, net_io::LineEnding::Default))
            .await
            .unwrap_err();
        assert!(net_tests::tls::is_truncated(&e), "{e:?}");
    }
    drop(output);
}
