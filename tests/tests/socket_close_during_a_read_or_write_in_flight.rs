//! `Socket::close` while another task of a multi-thread runtime is in the middle of a read or
//! a write of the socket's channels: the close is immediate, so the peer sees the end (here a
//! reset: the close leaves unread input, or cuts a write under way) once it returns, also when
//! the other task's operation was inside its poll of the socket at that moment.

use std::io::{Read as _, Write as _};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use net_sockets::{SelectorManager, Socket, Transport};
use net_tests::loopback::tcp_listener;
use net_tests::pki::TestCa;
use net_tests::tls::{manual_pair, records};
use net_tests::{HANG_LIMIT, within};
use net_tls::rustls::ClientConnection;

/// Waits (at most 5 s) until `count` reaches 3, then spins for `spin`: a close that lands at
/// a varied moment inside a run of operations on another thread.
fn after_three_then_spin(count: &AtomicUsize, spin: Duration) {
    let until = Instant::now() + Duration::from_secs(5);
    while count.load(Ordering::SeqCst) < 3 && Instant::now() < until {
        std::thread::yield_now();
    }
    let until = Instant::now() + spin;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// A connection accepted from a std peer (non-blocking), on a fresh selector.
async fn accepted() -> (SelectorManager, Socket, std::net::TcpStream) {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let peer = std::net::TcpStream::connect(("127.0.0.1", listener.port().unwrap())).unwrap();
    peer.set_nonblocking(true).unwrap();
    let socket = within(listener.accept()).await.unwrap();
    (selector, socket, peer)
}

/// Whether the peer finds the end (a FIN or a reset) without waiting, after what it has to
/// read (a TLS `close_notify`); what it found.
fn peer_finds_the_end(peer: &std::net::TcpStream) -> (bool, String) {
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..1000 {
        match (&*peer).read(&mut buf) {
            Ok(n) if n > 0 => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return (false, format!("{e:?}"));
            }
            end => return (true, format!("{end:?}")),
        }
    }
    (false, "more than 64 MiB".into())
}

/// What a round of [`close_during_reads`] runs on: our socket, its peer (raw TCP,
/// non-blocking), what the peer sends, and the selector to keep open until the round ends.
type Round<T> = (
    Socket<T>,
    std::net::TcpStream,
    Vec<u8>,
    Option<SelectorManager>,
);

/// Rounds of: the peer sends its bytes without pause, a task reads the socket's read channel
/// without pause, and another thread closes the socket after a varied moment; once the close
/// returns, the peer must find the end. `connect` makes each round's socket and peer.
/// With `elsewhere`, the read channel goes to a task of another runtime (on a thread of its
/// own) than the selector's.
async fn close_during_reads<T: Transport, F: Future<Output = Round<T>>>(
    connect: impl Fn() -> F,
    elsewhere: bool,
) {
    let started = Instant::now();
    let mut rounds = 0;
    while rounds < 200 && started.elapsed() < Duration::from_millis(2000) {
        rounds += 1;
        let (mut socket, peer, blob, _selector) = connect().await;
        let mut input = socket.open_read_channel().unwrap();
        let socket = Arc::new(socket);
        let stop = Arc::new(AtomicBool::new(false));
        let sender = std::thread::spawn({
            let (mut peer, stop) = (peer.try_clone().unwrap(), Arc::clone(&stop));
            move || {
                let mut rest = &blob[..];
                let until = Instant::now() + Duration::from_secs(5);
                while !rest.is_empty() && !stop.load(Ordering::SeqCst) && Instant::now() < until {
                    match peer.write(rest) {
                        Ok(n) => rest = &rest[n..],
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::yield_now();
                        }
                        Err(_) => return,
                    }
                }
            }
        });
        let reads = Arc::new(AtomicUsize::new(0));
        let reading = {
            let reads = Arc::clone(&reads);
            async move {
                let mut buf = [0u8; 4096];
                for _ in 0..10_000_000 {
                    match input.read_available(&mut buf).await {
                        Ok(n) if n > 0 => {
                            reads.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => return,
                    }
                }
            }
        };
        let reader = if elsewhere {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let thread = std::thread::spawn(move || runtime.block_on(reading));
            tokio::task::spawn_blocking(move || thread.join().unwrap())
        } else {
            tokio::spawn(reading)
        };
        let spin = Duration::from_micros((rounds as u64 * 7919) % 300);
        let ((seen, found), took) = std::thread::spawn({
            let (socket, reads) = (Arc::clone(&socket), Arc::clone(&reads));
            move || {
                after_three_then_spin(&reads, spin);
                let closing = Instant::now();
                socket.close();
                let took = closing.elapsed();
                (peer_finds_the_end(&peer), took)
            }
        })
        .join()
        .unwrap();
        stop.store(true, Ordering::SeqCst);
        within(reader).await.unwrap();
        sender.join().unwrap();
        // A thread the machine left unscheduled for 50 ms inside its poll may keep the socket
        // past a close that waited that long for it.
        assert!(
            seen || took >= Duration::from_millis(50),
            "round {rounds}: the close returned in {took:?} before the peer saw the end: \
             {found}"
        );
    }
}

/// A close of a plain socket while a read of the read channel is under way in another task
/// (the peer sends without pause, so the read is often inside its poll of the socket): once
/// the close returns, the peer sees the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_during_a_read_in_another_task_returns_only_once_the_peer_sees_the_end() {
    let connect = || async {
        let (selector, socket, peer) = accepted().await;
        (socket, peer, vec![7u8; 16 << 20], Some(selector))
    };
    close_during_reads(connect, false).await;
}

/// The same with the read channel handed to a task of another runtime than the selector's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_during_a_read_on_another_runtime_returns_only_once_the_peer_sees_the_end() {
    let connect = || async {
        let (selector, socket, peer) = accepted().await;
        (socket, peer, vec![7u8; 16 << 20], Some(selector))
    };
    close_during_reads(connect, true).await;
}

/// The same for a TLS socket, whose reads take the peer's records through the same socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_close_during_a_read_in_another_task_returns_only_once_the_peer_sees_the_end() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let ca = TestCa::new("close during reads ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let (listener, ca, config) = (&listener, &ca, &config);
    let connect = || async move {
        let (tls, tcp, mut client) = manual_pair(listener, ca, config).await;
        let peer = tcp.into_std().unwrap();
        peer.set_nonblocking(true).unwrap();
        // The records of 4 MiB of the peer's session.
        let mut blob = Vec::new();
        for _ in 0..256 {
            std::io::Write::write_all(&mut client.writer(), &[7u8; 16 * 1024]).unwrap();
            blob.extend_from_slice(&records(&mut client));
        }
        (tls, peer, blob, None)
    };
    close_during_reads(connect, false).await;
}

/// A close of a plain socket while auto-flushed writes go to the socket in another task (the
/// peer reads without pause, so a write is often inside its poll of the socket): once the
/// close returns, the peer sees the end (the reset of a close that cuts a write under way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_during_a_write_in_another_task_returns_only_once_the_peer_sees_the_end() {
    close_during_writes(|| async {
        let (selector, socket, peer) = accepted().await;
        ((socket, peer, Vec::new(), Some(selector)), None)
    })
    .await;
}

/// The same for a TLS socket, whose writes go through the same socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_close_during_a_write_in_another_task_returns_only_once_the_peer_sees_the_end() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let ca = TestCa::new("close during writes ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let (listener, ca, config) = (&listener, &ca, &config);
    close_during_writes(|| async move {
        let (tls, tcp, client) = manual_pair(listener, ca, config).await;
        let peer = tcp.into_std().unwrap();
        peer.set_nonblocking(true).unwrap();
        ((tls, peer, Vec::new(), None), Some(client))
    })
    .await;
}

/// The peer of [`close_during_writes`]: its stream, whether a read found the end, and over
/// TLS its session, which every byte read goes through, and whether it took `close_notify`.
struct Peer {
    stream: std::net::TcpStream,
    ended: bool,
    tls: Option<ClientConnection>,
    close_notify: bool,
}

impl Peer {
    /// Takes `bytes` read from the stream into the TLS session (if any), its plaintext dropped.
    fn took(&mut self, bytes: &[u8]) {
        let Some(tls) = self.tls.as_mut() else {
            return;
        };
        let mut rest = bytes;
        let mut plain = vec![0u8; 64 * 1024];
        while !rest.is_empty() {
            tls.read_tls(&mut rest).unwrap();
            let state = tls.process_new_packets().unwrap();
            self.close_notify |= state.peer_has_closed();
            while matches!(tls.reader().read(&mut plain), Ok(n) if n > 0) {}
        }
    }

    /// Reads without waiting, until nothing is queued or the end: the end found, if any.
    fn read_queued(&mut self) -> Option<String> {
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..10_000 {
            match (&self.stream).read(&mut buf) {
                Ok(n) if n > 0 => self.took(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
                end => return Some(format!("{end:?}")),
            }
        }
        None
    }
}

/// Rounds of: a task writes to the socket's write channel (auto-flushed) without pause, the
/// peer reads without pause, and another thread closes the socket after a varied moment; once
/// the close returns, the peer must find the end (or have found it). Over TLS, a close that
/// lands between two writes is graceful, and when the socket cannot take its `close_notify` at
/// once (the peer's reads lag behind the writes, as on a loaded host), a task sends it as the
/// socket drains, then the FIN, after the close returned (as the socket's docs say): then the
/// peer must take `close_notify`, then find the end, both after the close returned.
async fn close_during_writes<
    T: Transport,
    F: Future<Output = (Round<T>, Option<ClientConnection>)>,
>(
    connect: impl Fn() -> F,
) {
    let started = Instant::now();
    let mut rounds = 0;
    while rounds < 200 && started.elapsed() < Duration::from_millis(2000) {
        rounds += 1;
        let ((mut socket, stream, _, _selector), tls) = connect().await;
        let mut output = socket.open_write_channel(true).unwrap();
        let socket = Arc::new(socket);
        // The peer's reads and what they found, under one lock: a check after the close sees
        // either the end a read found, or the end still waiting (a reset's error, a FIN).
        let peer = Arc::new(Mutex::new(Peer {
            stream,
            ended: false,
            tls,
            close_notify: false,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let drainer = std::thread::spawn({
            let (peer, stop) = (Arc::clone(&peer), Arc::clone(&stop));
            move || {
                let mut buf = vec![0u8; 64 * 1024];
                let until = Instant::now() + Duration::from_secs(5);
                while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                    let mut peer = peer.lock().unwrap();
                    if peer.ended {
                        return;
                    }
                    match (&peer.stream).read(&mut buf) {
                        Ok(n) if n > 0 => peer.took(&buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            drop(peer);
                            std::thread::yield_now();
                        }
                        _ => peer.ended = true,
                    }
                }
            }
        });
        let writes = Arc::new(AtomicUsize::new(0));
        let writer = tokio::spawn({
            let writes = Arc::clone(&writes);
            async move {
                let block = vec![1u8; 4096];
                for _ in 0..10_000_000 {
                    if output.write_fully(&block).await.is_err() {
                        return;
                    }
                    writes.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let spin = Duration::from_micros((rounds as u64 * 7919) % 300);
        let (seen, took) = std::thread::spawn({
            let (socket, writes, peer) = (Arc::clone(&socket), Arc::clone(&writes), peer);
            move || {
                after_three_then_spin(&writes, spin);
                let closing = Instant::now();
                socket.close();
                let took = closing.elapsed();
                let mut peer = peer.lock().unwrap();
                let seen = if peer.ended {
                    "a read found it".to_owned()
                } else {
                    match peer.stream.take_error() {
                        Ok(Some(e)) => format!("pending error {e}"),
                        // A FIN: a read finds the end after what is queued.
                        other => match peer.read_queued() {
                            Some(end) => end,
                            None if peer.tls.is_some() && !peer.close_notify => {
                                late_close_notify(&mut peer)
                            }
                            None => format!("nothing ({other:?})"),
                        },
                    }
                };
                (seen, took)
            }
        })
        .join()
        .unwrap();
        stop.store(true, Ordering::SeqCst);
        within(writer).await.unwrap();
        drainer.join().unwrap();
        assert!(
            !seen.starts_with("nothing") || took >= Duration::from_millis(50),
            "round {rounds}: the close returned in {took:?} before the peer saw the end: \
             {seen}"
        );
    }
}

/// Over TLS, the peer found neither the end nor `close_notify` once the close returned: a
/// graceful close that left its `close_notify` to a task, which must come (within
/// [`HANG_LIMIT`]), then the end (a FIN, `Ok(0)`); what the peer found ("nothing ..." if not).
fn late_close_notify(peer: &mut Peer) -> String {
    let until = Instant::now() + HANG_LIMIT;
    while Instant::now() < until {
        match peer.read_queued() {
            Some(end) if peer.close_notify && end == "Ok(0)" => {
                return "close_notify sent after the close, then the end".to_owned();
            }
            Some(end) => {
                return format!(
                    "nothing at the close, then {end} (close_notify: {})",
                    peer.close_notify
                );
            }
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    format!(
        "nothing within {HANG_LIMIT:?} (close_notify: {})",
        peer.close_notify
    )
}
