//! Fault suite, TCP: a peer that resets mid-line, half-closes while we write, or leaves while we
//! write; slow and idle peers against `socket_timeout`; a dropped write future; a hostile length
//! given to a count-taking read. Each case runs over real loopback sockets while a well-behaved
//! client of the same server is answered.

use std::io;
use std::time::Duration;

use net_sockets::{SelectorManager, a_socket};
use net_tests::fault::{
    GoodClient, LineServer, finish_good_client_of, good_client_of, raw_peer_from, raw_peer_of,
    reset,
};
use net_tests::loopback::{tcp_listener, write_until_error};
use net_tests::{payload, pending_after_one_poll, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: usize = 1024;

fn is_reset_or_broken_pipe(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

/// A peer that resets the connection (`SO_LINGER` 0) in the middle of a line: the server's
/// read fails with `Error::Io` of kind `ConnectionReset` (not EOF, not a partial line), and the
/// other connection is not disturbed.
#[tokio::test]
async fn peer_reset_mid_line_is_connection_reset() {
    let selector = SelectorManager::new();
    let mut server = LineServer::start(&selector, LIMIT, |b| b).await;
    let mut good = GoodClient::connect(&selector, server.port()).await;

    let mut hostile = server.raw_client().await;
    let mut greeting = [0u8; 23];
    within(hostile.read_exact(&mut greeting)).await.unwrap();
    hostile.write_all(b"first\nhalf a li").await.unwrap();
    let mut answer = [0u8; 14];
    within(hostile.read_exact(&mut answer)).await.unwrap();
    assert_eq!(&answer, b"Hello, first!\n");
    good.round_trip("before the reset").await;
    reset(hostile);

    let outcome = server.next_outcome().await;
    assert_eq!(outcome.lines, ["first"]);
    match outcome.end {
        Err(net_io::Error::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
        other => panic!("expected Io(ConnectionReset), got {other:?}"),
    }
    good.round_trip("after the reset").await;
    server.finish_good(good).await;
}

/// The peer half-closes (sends FIN) right after its lines, before reading anything: the server
/// reads every line, then end of stream, and every answer it writes after the peer's FIN still
/// arrives.
#[tokio::test]
async fn peer_half_close_while_we_still_write() {
    let selector = SelectorManager::new();
    let mut server = LineServer::start(&selector, LIMIT, |b| b).await;
    let mut good = GoodClient::connect(&selector, server.port()).await;

    let mut peer = server.raw_client().await;
    let names: Vec<String> = (0..2000).map(|i| format!("name {i}")).collect();
    let mut request = String::new();
    for name in &names {
        request.push_str(name);
        request.push('\n');
    }
    let (mut peer_in, mut peer_out) = peer.split();
    let write = async {
        peer_out.write_all(request.as_bytes()).await.unwrap();
        peer_out.shutdown().await.unwrap(); // FIN: our write side is done
    };
    let read = async {
        let mut answers = String::new();
        peer_in.read_to_string(&mut answers).await.unwrap();
        answers
    };
    let ((), answers) = within(async { tokio::join!(write, read) }).await;
    let mut expected = String::from("Please enter your name\n");
    for name in &names {
        expected.push_str(&format!("Hello, {name}!\n"));
    }
    assert_eq!(answers, expected);

    let outcome = server.next_outcome().await;
    outcome.end.expect("end of stream is a clean end");
    assert_eq!(outcome.lines, names);
    good.round_trip("after the half-close").await;
    server.finish_good(good).await;
}

/// Writing to a peer that left fails with `BrokenPipe` or `ConnectionReset` (the process gets
/// no `SIGPIPE`), every later write fails too, and the other connection goes on.
#[tokio::test]
async fn writes_after_the_peer_left_fail_without_a_signal() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut good, good_served) = good_client_of(&selector, &listener).await;
    let (peer, mut accepted) = raw_peer_of(&listener).await;
    let mut output = accepted.open_write_channel(true).unwrap();
    output.write_string_utf8("hello\n").await.unwrap();
    drop(peer); // unread data: the peer's kernel answers with RST

    let chunk = payload(16 * 1024);
    let first = write_until_error(&mut output, &chunk).await;
    assert!(matches!(first, net_io::Error::Io(_)), "{first:?}");
    assert!(is_reset_or_broken_pipe(first.kind()), "{first:?}");
    good.round_trip("after the first failed write").await;
    for _ in 0..3 {
        let again = within(output.write_fully(&chunk)).await.unwrap_err();
        assert!(is_reset_or_broken_pipe(again.kind()), "{again:?}");
        // The same way: the same variant, kind and OS error code as the first failure.
        assert!(matches!(again, net_io::Error::Io(_)), "{again:?}");
        assert_eq!(again.kind(), first.kind(), "{again:?} after {first:?}");
        let code = |e: &net_io::Error| match e {
            net_io::Error::Io(io) => io.raw_os_error(),
            _ => None,
        };
        assert_eq!(code(&again), code(&first), "{again:?} after {first:?}");
    }
    good.round_trip("after more failed writes").await;
    finish_good_client_of(good, good_served).await;
}

/// Against `socket_timeout`: a peer that sends one byte at a time, each well within the
/// timeout, is served even though the line takes longer than the timeout in total; an idle
/// peer is ended with `Error::Timeout`; a client that keeps talking is unaffected.
#[tokio::test]
async fn slow_peer_is_served_and_idle_peer_times_out() {
    const TIMEOUT: Duration = Duration::from_millis(1200);
    const PACE: Duration = Duration::from_millis(300);
    let selector = SelectorManager::new();
    let mut server = LineServer::start(&selector, LIMIT, |b| b.socket_timeout(TIMEOUT)).await;
    let mut good = GoodClient::connect(&selector, server.port()).await;

    let mut idle = server.raw_client().await;
    let mut slow = server.raw_client().await;
    let started = tokio::time::Instant::now();
    let slow_client = async {
        let mut greeting = [0u8; 23];
        slow.read_exact(&mut greeting).await.unwrap();
        // "slow!\n": six bytes, one every 300 ms: 1.8 s for the line, never 1.2 s of silence.
        for byte in b"slow!\n" {
            tokio::time::sleep(PACE).await;
            slow.write_all(&[*byte]).await.unwrap();
        }
        let mut answer = [0u8; 14];
        slow.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"Hello, slow!!\n");
        assert!(
            started.elapsed() > TIMEOUT,
            "the line took longer than the timeout"
        );
        slow.shutdown().await.unwrap();
        let mut rest = Vec::new();
        slow.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    };
    let talk = async {
        for i in 0..8 {
            good.round_trip(&format!("talking {i}")).await;
            tokio::time::sleep(PACE).await;
        }
    };
    within(async { tokio::join!(slow_client, talk) }).await;

    // The idle peer timed out (it sent nothing); the slow one ended cleanly.
    let (mut first, mut second) = (server.next_outcome().await, server.next_outcome().await);
    if !first.lines.is_empty() {
        std::mem::swap(&mut first, &mut second);
    }
    assert!(
        matches!(first.end, Err(net_io::Error::Timeout)),
        "{:?}",
        first.end
    );
    assert!(first.lines.is_empty());
    second.end.expect("the slow peer was not timed out");
    assert_eq!(second.lines, ["slow!"]);
    // The server closed the idle connection: its peer sees the greeting, then the end.
    let mut seen = Vec::new();
    within(idle.read_to_end(&mut seen)).await.unwrap();
    assert_eq!(seen, b"Please enter your name\n");

    good.round_trip("done").await;
    server.finish_good(good).await;
}

/// A write future dropped while the peer does not read leaves the channel open, in the state
/// `ByteWriteChannel` documents: bytes that had reached its buffer are still written, in order,
/// by the next flush; of a large write that bypasses the buffer, exactly the prefix the socket
/// took was sent, and the rest is discarded. Nothing is written twice. Since the stream now
/// misses the rest of that write, it never ends cleanly: a flush writes everything out, but
/// `flush_and_close` sends no FIN and reports the loss, and the close resets the connection.
#[tokio::test]
async fn a_dropped_write_future_leaves_a_defined_state() {
    let selector = SelectorManager::new();
    let listener = a_socket(&selector)
        .tcp()
        .send_buffer_size(16 * 1024)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let (mut good, good_served) = good_client_of(&selector, &listener).await;
    let peer_socket = tokio::net::TcpSocket::new_v4().unwrap();
    peer_socket.set_recv_buffer_size(16 * 1024).unwrap();
    let (mut peer, mut accepted) = raw_peer_from(peer_socket, &listener).await;
    let mut output = accepted.open_write_channel(false).unwrap();

    output.write_string_utf8("head\n").await.unwrap(); // buffered
    // A large write goes to the socket directly; the peer does not read, so it stalls.
    let big = payload(4 * 1024 * 1024);
    {
        let write = std::pin::pin!(output.write_fully(&big));
        assert!(pending_after_one_poll(write).await, "4 MiB fit the socket");
    }
    assert!(!output.is_closed_for_write());
    // A write that fills the buffer tries to write it out, stalls too, and is dropped.
    let block = vec![b'b'; 8 * 1024];
    {
        let write = std::pin::pin!(output.write_fully(&block));
        assert!(pending_after_one_poll(write).await);
    }
    assert!(!output.is_closed_for_write());
    good.round_trip("while the writer is stuck").await;

    let reader = tokio::spawn(async move {
        // Everything the channel wrote out, up to its last write; then the end, which must be
        // no clean one.
        let mut received = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        while !received.ends_with(b"tail") {
            let n = peer.read(&mut chunk).await.unwrap();
            assert!(n > 0, "a clean end after {} bytes", received.len());
            received.extend_from_slice(&chunk[..n]);
        }
        (received, peer)
    });
    output.write_string_utf8("tail").await.unwrap();
    within(output.flush()).await.unwrap();
    let e = within(output.flush_and_close()).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e:?}");
    let (received, mut peer) = within(reader).await.unwrap();
    accepted.close();
    let end = within(peer.read(&mut [0u8; 16])).await;
    let e = end.expect_err("a stream cut in the middle of a write must not end cleanly");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e:?}");

    // head, a prefix of big, all of block, tail.
    assert!(received.starts_with(b"head\n"));
    assert!(received.ends_with(b"tail"));
    let middle = &received[5..received.len() - 4];
    assert!(middle.len() >= block.len());
    let (sent_of_big, rest) = middle.split_at(middle.len() - block.len());
    assert_eq!(rest, &block[..], "the buffered write was written whole");
    assert!(!sent_of_big.is_empty() && sent_of_big.len() < big.len());
    assert_eq!(
        sent_of_big,
        &big[..sent_of_big.len()],
        "a prefix of the large write"
    );

    good.round_trip("after").await;
    finish_good_client_of(good, good_served).await;
}

/// A read of a whole line (`read_line`) at a peer that never finishes it does not stop the
/// server from answering others, and the half line is still there for the next read once the
/// peer completes it.
#[tokio::test]
async fn an_unfinished_line_blocks_only_its_own_connection() {
    let selector = SelectorManager::new();
    let mut server = LineServer::start(&selector, LIMIT, |b| b).await;
    let mut good = GoodClient::connect(&selector, server.port()).await;
    let mut stalled = server.raw_client().await;
    stalled.write_all(b"never fin").await.unwrap();
    for i in 0..5 {
        good.round_trip(&format!("meanwhile {i}")).await;
    }
    stalled.write_all(b"ished\n").await.unwrap();
    stalled.shutdown().await.unwrap();
    let mut answers = String::new();
    within(stalled.read_to_string(&mut answers)).await.unwrap();
    assert_eq!(answers, "Please enter your name\nHello, never finished!\n");
    assert_eq!(server.next_outcome().await.lines, ["never finished"]);
    server.finish_good(good).await;
}

/// A length the peer sent, passed to a count-taking read (`read_bytes` of `0xFFFF_FFFF`, `2^40`
/// and `u64::MAX` bytes, the count read from an 8-byte prefix): the read waits for bytes the
/// peer never sends, with no panic and no abort, and fails with `UnexpectedEof` at the peer's
/// end of stream, after taking in every byte the peer did send; another connection of the same
/// listener is answered before, while each read waits, and after.
#[tokio::test]
async fn a_hostile_length_waits_on_its_own_connection_while_another_is_answered() {
    const SENT: usize = 256 * 1024;
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut good, good_served) = good_client_of(&selector, &listener).await;
    good.round_trip("before").await;
    for count in [u64::from(u32::MAX), 1 << 40, u64::MAX] {
        let (mut hostile, mut accepted) = raw_peer_of(&listener).await;
        let (prefix_read, counted) = tokio::sync::oneshot::channel();
        let served = tokio::spawn(async move {
            let mut input = accepted.open_read_channel().unwrap();
            let n = input.read_u64().await.unwrap();
            let _ = prefix_read.send(n);
            let body = input
                .read_bytes(usize::try_from(n).unwrap_or(usize::MAX))
                .await;
            (body.map(|b| b.len()), input.total_bytes_read())
        });
        hostile.write_all(&count.to_be_bytes()).await.unwrap();
        assert_eq!(within(counted).await.unwrap(), count);
        good.round_trip(&format!("while {count} bytes are awaited"))
            .await;
        hostile.write_all(&payload(SENT)).await.unwrap();
        good.round_trip(&format!("while {count} bytes are still awaited"))
            .await;
        assert!(!served.is_finished(), "read_bytes({count}) did not wait");
        hostile.shutdown().await.unwrap();
        let (body, read) = within(served).await.expect("the reading task ended");
        let e = body.expect_err("the bytes never came");
        let needed = usize::try_from(count).unwrap_or(usize::MAX);
        assert!(
            matches!(e, net_io::Error::UnexpectedEof { needed: n, available: SENT } if n == needed),
            "{e:?}"
        );
        assert_eq!(read, 8, "only the prefix was consumed");
        good.round_trip(&format!("after read_bytes({count})")).await;
    }
    finish_good_client_of(good, good_served).await;
}
