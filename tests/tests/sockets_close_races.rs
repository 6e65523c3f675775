//! The socket core under races of its ends.
//!
//! - Two `close` calls at the same moment (two threads sharing the socket): when either
//!   returns, the socket is closed, as after one close; on a TLS socket too, whose layer's
//!   closing takes a while.
//! - A close from another thread while a large write goes to the socket: the peer gets all of
//!   the write then FIN, or a reset, never part of it then a clean end.
//! - Guard: reads retried after `socket_timeout`s that race arriving bytes, beside a stalled
//!   write, lose and double nothing (channels and `SocketStream`).
//! - A write that flush coalescing holds back, racing a close from another thread: its bytes
//!   reach the peer before the FIN, or the write fails, never `Ok` and lost before a clean end.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_tests::fault::raw_peer_of;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use net_sockets::SelectorManager;
use net_tests::loopback::{connected_pair, tcp_listener};
use net_tests::pki::Pki;
use net_tests::within;
use net_tls::TlsExt;

/// Runs `close_then_check` (a close, then whether the socket is closed) on two threads at the
/// same moment; what each found.
fn close_twice_at_once(close_then_check: Arc<dyn Fn() -> bool + Send + Sync>) -> [bool; 2] {
    let start = Arc::new(Barrier::new(2));
    let closers: Vec<_> = (0..2)
        .map(|_| {
            let (close, start) = (Arc::clone(&close_then_check), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                close()
            })
        })
        .collect();
    let mut seen = [false; 2];
    for (seen, closer) in seen.iter_mut().zip(closers) {
        *seen = closer.join().unwrap();
    }
    seen
}

/// `Socket::close` is immediate and synchronous: once it returns, the socket is closed (reads
/// and writes fail with `Closed`), also when another thread's close ran at the same moment and
/// did the closing. A close that found the other under way returned at once, the socket still
/// open, while the layer's closing ran (plain: a few loads; TLS: `close_notify` sealed and
/// sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_racing_another_returns_only_once_the_socket_is_closed() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let pki = Pki::generate();
    let server_config = pki.server_config().build().unwrap();
    let started = Instant::now();
    let mut rounds = 0;
    // Bounded in count and time; plain rounds, then TLS rounds.
    while rounds < 400 && started.elapsed() < Duration::from_millis(1000) {
        rounds += 1;
        let (client, server) = connected_pair(&selector, &listener).await;
        let seen = if rounds % 2 == 0 {
            let server = Arc::new(server);
            let seen = close_twice_at_once(Arc::new(move || {
                server.close();
                server.is_closed()
            }));
            drop(client);
            seen
        } else {
            let client_config = pki
                .client_config()
                .server_name("localhost")
                .build()
                .unwrap();
            let (server, client) = within(async {
                tokio::join!(server.tls_server(&server_config), client.tls(client_config))
            })
            .await;
            let (server, _client) = (server.unwrap(), client.unwrap());
            let server = Arc::new(server);
            close_twice_at_once(Arc::new(move || {
                server.close();
                server.is_closed()
            }))
        };
        assert_eq!(
            seen,
            [true, true],
            "round {rounds}: a close returned with the socket still open"
        );
    }
}

/// What a peer read of a stream: its bytes, and how it ended.
struct Received {
    bytes: usize,
    /// `None`: a clean end (FIN); else the error's kind.
    error: Option<std::io::ErrorKind>,
}

/// A close from another thread while a large write (auto-flushed: it goes straight to the
/// socket, a slice per send) is under way, the peer reading as fast as it can: the peer must
/// get the whole write then FIN, or a reset — never part of the write then a clean end, which
/// it would take for the complete stream. A write whose task waited for the socket when the
/// close came reset the connection; one that was between two sends (or in one) when the
/// close came let it end with a FIN after the part it had sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_during_a_large_write_never_ends_the_stream_cleanly_after_part_of_it() {
    use std::io::Read as _;

    const LEN: usize = 4 * 1024 * 1024;
    let selector = SelectorManager::new();
    let listener =
        net_tests::loopback::tcp_listener_with(&selector, |b| b.send_buffer_size(16 * 1024)).await;
    let port = listener.local_address().as_inet().unwrap().port();
    let body = Arc::new(net_tests::payload(LEN));
    let started = Instant::now();
    let mut rounds = 0;
    let mut cut = 0;
    while rounds < 200 && started.elapsed() < Duration::from_millis(1200) {
        rounds += 1;
        let peer = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut socket = within(listener.accept()).await.unwrap();
        let mut output = socket.open_write_channel(true).unwrap();
        // The peer reads everything, and says when the write is well under way.
        let (under_way, wait_under_way) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut peer = peer;
            let mut buf = vec![0; 64 * 1024];
            let mut bytes = 0;
            let mut told = false;
            loop {
                match peer.read(&mut buf) {
                    Ok(0) => return Received { bytes, error: None },
                    Ok(n) => bytes += n,
                    Err(e) => {
                        return Received {
                            bytes,
                            error: Some(e.kind()),
                        };
                    }
                }
                if !told && bytes >= 64 * 1024 {
                    told = true;
                    let _ = under_way.send(());
                }
            }
        });
        let writer = tokio::spawn({
            let body = Arc::clone(&body);
            async move { output.write_fully(&body).await }
        });
        let socket = Arc::new(socket);
        let closer = std::thread::spawn({
            let socket = Arc::clone(&socket);
            move || {
                let _ = wait_under_way.recv_timeout(Duration::from_secs(5));
                socket.close();
            }
        });
        let written = within(writer).await.unwrap();
        closer.join().unwrap();
        let received = reader.join().unwrap();
        if written.is_ok() {
            // The close came after the write: all of it, then FIN.
            assert_eq!(received.bytes, LEN, "round {rounds}");
            assert_eq!(received.error, None, "round {rounds}");
            continue;
        }
        cut += 1;
        assert!(
            received.error.is_some() || received.bytes == 0,
            "round {rounds}: the peer read {} of the {LEN} bytes of a write cut by the close, \
             then a clean end",
            received.bytes
        );
    }
    assert!(cut > 0, "no close cut a write in {rounds} rounds");
}

/// `socket_timeout` firing around the moment bytes arrive, over and over (a peer that sends a
/// byte about every timeout), while a write of the same socket is outstanding and stalled (the
/// peer does not read) and times out on its own: every byte arrives once, in order, through
/// the read channel and through a `SocketStream` (read half) alike, each read retried after
/// its timeout; the stalled write ends with its own timeout. (Guard: passes on the old code.)
///
/// The peer sends `BYTES` bytes, and goes on, each pause twice as long as the one before (up
/// to 1.28 s), until a read has timed out: on a loaded machine, the reader, woken late by each
/// byte, started its wait (and its timeout) so late that the next byte came before the timeout
/// was seen, byte after byte, and no read timed out in 40 bytes (nor in 250 at the same pace).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_retried_after_timeouts_that_race_arriving_bytes_lose_and_double_nothing() {
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const TIMEOUT: Duration = Duration::from_millis(10);
    /// The bytes the peer sends at least.
    const BYTES: usize = 40;
    /// The bytes the peer sends at most, waiting for a read to time out.
    const MOST_BYTES: usize = 60;
    /// What the reader and the peer of a round tell each other.
    #[derive(Default)]
    struct Round {
        /// A read timed out.
        timed_out: AtomicBool,
        /// The bytes the peer sent.
        sent: AtomicUsize,
        /// The peer sends no more.
        done: AtomicBool,
    }
    impl Round {
        /// Whether the reader has every byte the peer will send, given `received` of them.
        fn over(&self, received: usize) -> bool {
            self.done.load(Ordering::SeqCst) && received == self.sent.load(Ordering::SeqCst)
        }
    }
    let selector = SelectorManager::new();
    let listener = net_tests::loopback::tcp_listener_with(&selector, |b| {
        b.socket_timeout(TIMEOUT).send_buffer_size(4096)
    })
    .await;
    let port = listener.local_address().as_inet().unwrap().port();
    // A peer that sends one byte about every timeout (a little before, at, a little after)
    // and never reads.
    let peer = |port: u16, round: Arc<Round>| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
        for i in 0..MOST_BYTES {
            if i >= BYTES && round.timed_out.load(Ordering::SeqCst) {
                break;
            }
            let pause = match i.checked_sub(BYTES) {
                None => TIMEOUT * 8 / 10 + Duration::from_micros((i as u64 % 5) * 1000),
                Some(late) => TIMEOUT * 2u32.pow(late.min(6) as u32 + 1),
            };
            tokio::time::sleep(pause).await;
            stream.write_all(&[i as u8]).await.unwrap();
            round.sent.store(i + 1, Ordering::SeqCst);
        }
        round.done.store(true, Ordering::SeqCst);
        stream
    };
    for stream_form in [false, true] {
        let round = Arc::new(Round::default());
        let peer = tokio::spawn(peer(port, Arc::clone(&round)));
        let socket = within(listener.accept()).await.unwrap();
        let mut timeouts = 0;
        let mut received = Vec::new();
        let write_error;
        if stream_form {
            let (mut input, mut output) = tokio::io::split(socket.into_stream().unwrap());
            let writer = tokio::spawn(async move {
                let chunk = vec![7; 64 * 1024];
                loop {
                    if let Err(e) = output.write_all(&chunk).await {
                        return e.kind();
                    }
                }
            });
            let mut byte = [0; 8];
            while !round.over(received.len()) {
                match within(input.read(&mut byte)).await {
                    Ok(0) => panic!("end of stream after {received:?}"),
                    Ok(n) => received.extend_from_slice(&byte[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                        timeouts += 1;
                        round.timed_out.store(true, Ordering::SeqCst);
                    }
                    Err(e) => panic!("{e:?} after {received:?}"),
                }
            }
            write_error = format!("{:?}", within(writer).await.unwrap());
        } else {
            let mut connection = socket.connection().unwrap();
            let mut output = connection.output;
            let writer = tokio::spawn(async move {
                let chunk = vec![7; 64 * 1024];
                loop {
                    let written = async {
                        output.write_fully(&chunk).await?;
                        output.flush().await
                    };
                    if let Err(e) = written.await {
                        return e;
                    }
                }
            });
            let mut byte = [0; 8];
            while !round.over(received.len()) {
                match within(connection.input.read_available(&mut byte)).await {
                    Ok(0) => panic!("end of stream after {received:?}"),
                    Ok(n) => received.extend_from_slice(&byte[..n]),
                    Err(net_io::Error::Timeout) => {
                        timeouts += 1;
                        round.timed_out.store(true, Ordering::SeqCst);
                    }
                    Err(e) => panic!("{e:?} after {received:?}"),
                }
            }
            write_error = format!("{:?}", within(writer).await.unwrap());
        }
        let expected: Vec<u8> = (0..round.sent.load(Ordering::SeqCst) as u8).collect();
        assert_eq!(received, expected, "stream form: {stream_form}");
        assert!(
            write_error.contains("TimedOut") || write_error.contains("Timeout"),
            "stream form: {stream_form}: the stalled write ended with {write_error}"
        );
        // Pauses of 11 and 12 ms: some reads timed out (the peer went on until one did).
        assert!(
            timeouts > 0,
            "stream form: {stream_form}: no read timed out in {MOST_BYTES} bytes"
        );
        drop(within(peer).await.unwrap());
    }
}

/// Polls `future` once on this thread, with a waker that does nothing.
fn poll_once<F: std::future::Future>(future: F) -> Poll<F::Output> {
    let mut future = std::pin::pin!(future);
    future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
}

/// An auto-flushed write while a request is pending is held back (flush coalescing) and
/// returns `Ok` at once: "as good as sent". Racing a `close` on another thread, it must reach
/// the peer before the FIN, or fail. Before the fix, the close set the backlog's closed flag
/// and then looked for held bytes without its lock, while the write, which had seen the flag
/// still clear, was copying its bytes in: the close found nothing held, closed gracefully, and
/// the write's bytes were never sent; the peer read a clean end (within a few rounds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_back_write_racing_a_close_is_sent_or_fails() {
    const ANSWER: &[u8] = b"a held-back answer ..........................................\n";
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let started = Instant::now();
    for round in 0..200u32 {
        if started.elapsed() > Duration::from_secs(10) {
            break;
        }
        let (mut client, mut socket) = raw_peer_of(&server).await;
        let mut input = socket.open_read_channel().unwrap();
        let mut output = socket.open_write_channel(true).unwrap();
        client.write_all(b"a\nb\n").await.unwrap();
        assert!(within(input.await_content(4)).await.unwrap());
        let line = input.read_line(16, LineEnding::Default).await.unwrap();
        assert_eq!(line.as_deref(), Some("a"));
        assert_eq!(input.available_for_read(), 2, "`b` is pending");

        // Both threads start together; the close comes a little later each round.
        let go = Arc::new(AtomicU32::new(0));
        let writer_go = Arc::clone(&go);
        let writer = std::thread::spawn(move || {
            writer_go.fetch_add(1, Ordering::SeqCst);
            while writer_go.load(Ordering::SeqCst) < 2 {
                std::hint::spin_loop();
            }
            let written = poll_once(output.write_fully(ANSWER));
            (matches!(written, Poll::Ready(Ok(()))), output)
        });
        let closer_go = Arc::clone(&go);
        let closer = std::thread::spawn(move || {
            closer_go.fetch_add(1, Ordering::SeqCst);
            while closer_go.load(Ordering::SeqCst) < 2 {
                std::hint::spin_loop();
            }
            for _ in 0..(round % 16) * 10 {
                std::hint::spin_loop();
            }
            socket.close();
            socket
        });
        let (written, output) = writer.join().unwrap();
        let socket = closer.join().unwrap();

        let mut received = Vec::new();
        let end = within(client.read_to_end(&mut received)).await;
        drop((socket, input, output));
        assert!(
            !(written && end.is_ok() && received != ANSWER),
            "round {round}: the write returned Ok, yet the peer read a clean end after {} of \
             its {} bytes",
            received.len(),
            ANSWER.len()
        );
    }
}
