//! Datagram sockets shared by several tasks, at their end and under cancellation.
//!
//! - Tasks that send and receive on one socket (and an `incoming()` stream) while another
//!   closes it, or closes its selector: every call pending then and every later one fails with
//!   the close's typed error, none hangs, no datagram is received twice or reported sent when
//!   it was not, `await_closed` returns and the port is free at once.
//! - Receives cancelled at every moment (timeouts, a poll then a drop) take no datagram: each
//!   one sent is received once, by one of the receives that completed.
//! - A connected socket's `send` that reports an earlier datagram's ICMP error did not send its
//!   own datagram: it must be sent again.
//! - An `incoming()` stream keeps its socket open after the socket's drop, until its own.
//! - A graceful shutdown of the selector closes its datagram sockets without a grace period.

use std::collections::HashSet;
use std::future::Future;
use std::net::UdpSocket as StdUdpSocket;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_core::Stream;

use net_sockets::{Datagram, Error, SelectorManager, SocketAddress, a_socket};
use net_tests::loopback::udp_socket;
use net_tests::within;

/// The numbered datagram `seq`: its number, then 24 bytes made from it (a cut or a mix shows).
fn numbered(seq: u64) -> Vec<u8> {
    let mut packet = seq.to_be_bytes().to_vec();
    packet.extend((0..24u64).map(|i| (seq.wrapping_mul(31).wrapping_add(i) % 251) as u8));
    packet
}

/// The number of a datagram made by [`numbered`], checking that it is whole.
fn number_of(packet: &[u8]) -> u64 {
    assert_eq!(packet.len(), 32, "a cut or padded datagram: {packet:?}");
    let seq = u64::from_be_bytes(packet[..8].try_into().unwrap());
    assert_eq!(packet, &numbered(seq)[..], "a datagram not sent as it came");
    seq
}

/// The numbers received by a `std` socket's reader thread, which stops once `stop` is set and
/// nothing more arrives.
struct Reader {
    socket: Arc<StdUdpSocket>,
    seen: Arc<Mutex<Vec<u64>>>,
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reader {
    fn start() -> Reader {
        let socket = Arc::new(StdUdpSocket::bind("127.0.0.1:0").unwrap());
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (socket, seen, count, stop) = (
                Arc::clone(&socket),
                Arc::clone(&seen),
                Arc::clone(&count),
                Arc::clone(&stop),
            );
            move || {
                let mut buffer = [0u8; 256];
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(60) {
                    match socket.recv(&mut buffer) {
                        Ok(size) => {
                            seen.lock().unwrap().push(number_of(&buffer[..size]));
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) if stop.load(Ordering::SeqCst) => return,
                        Err(_) => {}
                    }
                }
            }
        });
        Reader {
            socket,
            seen,
            count,
            stop,
            thread: Some(thread),
        }
    }

    fn address(&self) -> SocketAddress {
        self.socket.local_addr().unwrap().into()
    }

    /// Stops the thread once it read all that arrived; the numbers it read.
    fn finish(mut self) -> Vec<u64> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// Polls `stream` to its next item.
async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
}

/// Waits (bounded) until `done` holds, checking every millisecond.
async fn until(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// How the socket under test is ended.
#[derive(Clone, Copy, Debug)]
enum End {
    Close,
    SelectorClose,
}

/// Four receiving tasks, an `incoming()` stream and two sending tasks share one socket while a
/// `std` socket feeds it numbered datagrams; once they are all busy, `end` ends it from yet
/// another task.
async fn share_then_end(end: End) {
    let selector = SelectorManager::new();
    let socket = Arc::new(udp_socket(&selector).await);
    let address = socket.local_address();
    let port = address.port().unwrap();
    let expected = |e: &Error| match end {
        End::Close => matches!(e, Error::Closed),
        End::SelectorClose => matches!(e, Error::SelectorClosed),
    };

    // The feeder: numbered datagrams to the socket, paced by what the socket's tasks took.
    let received = Arc::new(AtomicUsize::new(0));
    let stop_feeding = Arc::new(AtomicBool::new(false));
    let feeder = std::thread::spawn({
        let (received, stop) = (Arc::clone(&received), Arc::clone(&stop_feeding));
        let to = match &address {
            SocketAddress::Inet(inet) => inet.socket_addr(),
            SocketAddress::Unix(_) => unreachable!(),
        };
        move || {
            let feeder = StdUdpSocket::bind("127.0.0.1:0").unwrap();
            let started = Instant::now();
            let mut seq = 0u64;
            while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(30) {
                if (seq as usize) < received.load(Ordering::SeqCst) + 64 {
                    let _ = feeder.send_to(&numbered(seq), to);
                    seq += 1;
                } else {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            seq
        }
    });

    let mut receivers = Vec::new();
    for _ in 0..4 {
        let (socket, received) = (Arc::clone(&socket), Arc::clone(&received));
        receivers.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            loop {
                match socket.receive().await {
                    Ok(datagram) => {
                        seqs.push(number_of(&datagram.packet));
                        received.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => return (seqs, e),
                }
            }
        }));
    }
    let streamed = tokio::spawn({
        let (mut incoming, received) = (socket.incoming(), Arc::clone(&received));
        async move {
            let mut seqs = Vec::new();
            while let Some(item) = next(&mut incoming).await {
                match item {
                    Ok(datagram) => {
                        seqs.push(number_of(&datagram.packet));
                        received.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => panic!("incoming() yielded an error before it ended: {e:?}"),
                }
            }
            // Ended for good.
            assert!(next(&mut incoming).await.is_none());
            seqs
        }
    });

    // The senders: numbered datagrams to a reader, each reported sent or not.
    let reader = Reader::start();
    let next_seq = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..2 {
        let (socket, to, next_seq, read) = (
            Arc::clone(&socket),
            reader.address(),
            Arc::clone(&next_seq),
            Arc::clone(&reader.count),
        );
        senders.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            let started = Instant::now();
            loop {
                // Paced by the reader, so that the kernel drops none of them at its end.
                if next_seq.load(Ordering::SeqCst) >= read.load(Ordering::SeqCst) + 64 {
                    assert!(
                        started.elapsed() < Duration::from_secs(30),
                        "reader stalled"
                    );
                    tokio::time::sleep(Duration::from_micros(200)).await;
                    continue;
                }
                let seq = next_seq.fetch_add(1, Ordering::SeqCst) as u64;
                let datagram = Datagram::new(numbered(seq), to.clone()).unwrap();
                match socket.send(datagram).await {
                    Ok(()) => sent.push(seq),
                    Err(e) => return (sent, e),
                }
            }
        }));
    }

    until("the tasks to exchange datagrams", || {
        received.load(Ordering::SeqCst) >= 200 && reader.count.load(Ordering::SeqCst) >= 200
    })
    .await;
    let ender = {
        let (socket, selector) = (Arc::clone(&socket), selector.clone());
        tokio::spawn(async move {
            match end {
                End::Close => socket.close(),
                End::SelectorClose => selector.close(),
            }
        })
    };
    within(ender).await.unwrap();
    // The port is free the moment the close returned.
    drop(StdUdpSocket::bind(("127.0.0.1", port)).expect("the port is still bound after close"));
    within(socket.await_closed()).await;
    assert!(socket.is_closed());

    let mut all = HashSet::new();
    for receiver in receivers {
        let (seqs, e) = within(receiver).await.unwrap();
        assert!(expected(&e), "{end:?}: a receive ended with {e:?}");
        for seq in seqs {
            assert!(all.insert(seq), "{end:?}: datagram {seq} received twice");
        }
    }
    for seq in within(streamed).await.unwrap() {
        assert!(all.insert(seq), "{end:?}: datagram {seq} received twice");
    }
    stop_feeding.store(true, Ordering::SeqCst);
    let fed = feeder.join().unwrap();
    assert!(all.iter().all(|&seq| seq < fed), "a datagram never sent");

    let mut sent = Vec::new();
    for sender in senders {
        let (seqs, e) = within(sender).await.unwrap();
        assert!(expected(&e), "{end:?}: a send ended with {e:?}");
        sent.extend(seqs);
    }
    let read: HashSet<u64> = reader.finish().into_iter().collect();
    for seq in &sent {
        assert!(
            read.contains(seq),
            "{end:?}: datagram {seq} reported sent never came"
        );
    }

    // Every later call too.
    let later = socket.receive().await.unwrap_err();
    assert!(expected(&later), "{end:?}: {later:?}");
    let later = socket
        .send(Datagram::new("x", address.clone()).unwrap())
        .await
        .unwrap_err();
    assert!(expected(&later), "{end:?}: {later:?}");
    assert!(next(&mut socket.incoming()).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_sharing_a_socket_end_with_closed_when_another_closes_it() {
    for _ in 0..5 {
        share_then_end(End::Close).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_sharing_a_socket_end_with_selector_closed_when_its_selector_closes() {
    for _ in 0..5 {
        share_then_end(End::SelectorClose).await;
    }
}

/// Receives that are cancelled at every moment (by short timeouts, by a poll then a drop), in
/// two tasks at once, take no datagram: each datagram sent is received exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receives_cancelled_at_every_moment_lose_and_double_nothing() {
    const SENT: usize = 3_000;
    let selector = SelectorManager::new();
    let socket = Arc::new(udp_socket(&selector).await);
    let to = match socket.local_address() {
        SocketAddress::Inet(inet) => inet.socket_addr(),
        SocketAddress::Unix(_) => unreachable!(),
    };
    let received = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let mut receivers = Vec::new();
    for task in 0..2u64 {
        let (socket, received, count) = (
            Arc::clone(&socket),
            Arc::clone(&received),
            Arc::clone(&count),
        );
        receivers.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut turn = 0u64;
            while count.load(Ordering::SeqCst) < SENT {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "datagrams lost"
                );
                turn += 1;
                let datagram = if (turn + task).is_multiple_of(3) {
                    // One poll, then dropped if it has to wait.
                    let mut receive = std::pin::pin!(socket.receive());
                    match std::future::poll_fn(|cx| Poll::Ready(receive.as_mut().poll(cx))).await {
                        Poll::Ready(datagram) => datagram,
                        Poll::Pending => continue,
                    }
                } else {
                    let wait = Duration::from_micros(20 + (turn * 37 + task * 11) % 400);
                    match tokio::time::timeout(wait, socket.receive()).await {
                        Ok(datagram) => datagram,
                        Err(_) => continue,
                    }
                };
                let seq = number_of(&datagram.unwrap().packet);
                received.lock().unwrap().push(seq);
                count.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let feeder = std::thread::spawn({
        let count = Arc::clone(&count);
        move || {
            let feeder = StdUdpSocket::bind("127.0.0.1:0").unwrap();
            let started = Instant::now();
            let mut seq = 0;
            while seq < SENT {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "receivers stalled"
                );
                // Paced, so that the kernel never drops one for want of room.
                if seq < count.load(Ordering::SeqCst) + 32 {
                    feeder.send_to(&numbered(seq as u64), to).unwrap();
                    seq += 1;
                } else {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        }
    });
    for receiver in receivers {
        within(receiver).await.unwrap();
    }
    feeder.join().unwrap();
    let mut received = std::mem::take(&mut *received.lock().unwrap());
    received.sort_unstable();
    let expected: Vec<u64> = (0..SENT as u64).collect();
    assert_eq!(received, expected);
}

/// An ICMP "port unreachable" for an earlier datagram surfaces on the next `send` (Linux checks
/// the socket's pending error before it builds the datagram): that send did not send its own
/// datagram, which is lost unless sent again, as the docs say; the next send goes out.
#[tokio::test]
async fn a_send_that_reports_an_earlier_icmp_error_sent_nothing_of_its_own() {
    let selector = SelectorManager::new();
    let (gone, _port) = net_tests::loopback::unbound_udp_address();
    let client = a_socket(&selector)
        .udp()
        .connect(gone.clone())
        .await
        .unwrap();
    client
        .send(Datagram::new("anyone?", gone.clone()).unwrap())
        .await
        .unwrap();
    // The ICMP error is pending (seen on a duplicate of the descriptor, without taking it).
    let duplicate = client.with_sock_ref(|s| s.try_clone()).unwrap();
    let duplicate = tokio::net::UdpSocket::from_std(duplicate.into()).unwrap();
    let ready = within(duplicate.ready(tokio::io::Interest::ERROR))
        .await
        .unwrap();
    assert!(ready.is_error(), "{ready:?}");
    drop(duplicate);
    // Someone listens there now; the error for the first datagram is still pending.
    let SocketAddress::Inet(inet) = &gone else {
        unreachable!()
    };
    let listener = StdUdpSocket::bind(inet.socket_addr()).unwrap();
    listener
        .set_read_timeout(Some(net_tests::HANG_LIMIT))
        .unwrap();
    let error = client
        .send(Datagram::new("lost", gone.clone()).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Io(_)), "{error:?}");
    assert_eq!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "{error:?}"
    );
    client
        .send(Datagram::new("sent", gone.clone()).unwrap())
        .await
        .unwrap();
    let mut buffer = [0u8; 16];
    let size = listener.recv(&mut buffer).unwrap();
    assert_eq!(
        &buffer[..size],
        b"sent",
        "the send that failed sent its datagram"
    );
}

/// `incoming()`'s stream holds its socket, as its docs say: the socket dropped while the stream
/// lives stays open and receiving; the stream's drop then closes it, its port free at once.
#[tokio::test]
async fn an_incoming_stream_keeps_its_socket_open_until_both_are_dropped() {
    let selector = SelectorManager::new();
    let socket = udp_socket(&selector).await;
    let address = socket.local_address();
    let port = address.port().unwrap();
    let mut incoming = socket.incoming();
    drop(socket);
    let sender = udp_socket(&selector).await;
    sender
        .send(Datagram::new(numbered(7), address).unwrap())
        .await
        .unwrap();
    let datagram = within(next(&mut incoming)).await.unwrap().unwrap();
    assert_eq!(number_of(&datagram.packet), 7);
    assert!(
        StdUdpSocket::bind(("127.0.0.1", port)).is_err(),
        "the socket closed while its stream lived"
    );
    drop(incoming);
    drop(StdUdpSocket::bind(("127.0.0.1", port)).expect("the port is still bound"));
}

/// A graceful shutdown of the selector neither tells its datagram sockets nor waits for them
/// (they are no connections), as its docs say: with only datagram sockets open, it closes them
/// at once, however long its grace, counts none, and their receives fail with
/// `SelectorClosed`.
#[tokio::test]
async fn a_graceful_shutdown_closes_datagram_sockets_at_once_and_counts_none() {
    let selector = SelectorManager::new();
    let bound = Arc::new(udp_socket(&selector).await);
    let connected = a_socket(&selector)
        .udp()
        .connect(bound.local_address())
        .await
        .unwrap();
    let receive = tokio::spawn({
        let bound = Arc::clone(&bound);
        async move { bound.receive().await }
    });
    // Far longer than `within` waits.
    let report = within(selector.shutdown(Duration::from_secs(600))).await;
    assert_eq!((report.finished, report.cut), (0, 0), "{report:?}");
    assert!(bound.is_closed() && connected.is_closed());
    let received = within(receive).await.unwrap();
    assert!(
        matches!(received, Err(Error::SelectorClosed)),
        "{received:?}"
    );
}
