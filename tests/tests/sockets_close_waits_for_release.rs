//! Closes racing other closes and operations.
//!
//! - Two closes of one listener at the same moment (two `close` calls, `close` and the
//!   selector's close, or two closes of the selector): when either returns, the descriptor is
//!   released, so new connects are refused, as after one close.
//! - The same for a connected socket: when either close returns, the peer sees the end.
//! - A listener's close while another thread is inside the kernel's accept: once it returns,
//!   connects are refused, and that accept fails with `Closed`.
//! - A datagram socket's close while another thread is in the middle of a send: once it
//!   returns, its port can be bound again.

use std::io::Read as _;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use net_sockets::{SelectorManager, Socket, a_socket};
use net_tests::loopback::{RefusingPort, tcp_listener};
use net_tests::within;

/// Runs `close` on two threads at the same moment, each followed by `check` (told which
/// thread it is); what each check found.
fn twice_at_once<T: Send + 'static>(
    close: [Box<dyn FnOnce() + Send>; 2],
    check: Arc<dyn Fn() -> T + Send + Sync>,
) -> Vec<T> {
    let start = Arc::new(Barrier::new(2));
    let closers: Vec<_> = close
        .into_iter()
        .map(|close| {
            let (check, start) = (Arc::clone(&check), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                close();
                check()
            })
        })
        .collect();
    closers.into_iter().map(|c| c.join().unwrap()).collect()
}

/// How a connect to `port` of 127.0.0.1 went: `None` when it was refused.
fn connect_to(port: u16) -> Option<String> {
    match std::net::TcpStream::connect(("127.0.0.1", port)) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => None,
        other => Some(format!("{other:?}")),
    }
}

/// `ServerSocket::close` and `SelectorManager::close` say the descriptor is released (new
/// connects are refused): so it must be once any close returns, also a close that found
/// another one (another thread's, or the selector's) under way. A close that lost the race returned while the winner was still
/// releasing the descriptor, and a connect right after it still reached the listener. (The
/// listener shares a port that a [`RefusingPort`] holds, so that no other socket of a
/// parallel test, nor a connect's own port, can answer on it once it is closed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_close_racing_another_returns_only_once_connects_are_refused() {
    let started = Instant::now();
    let mut rounds = 0;
    while rounds < 400 && started.elapsed() < Duration::from_millis(1500) {
        rounds += 1;
        let selector = SelectorManager::new();
        let held = RefusingPort::new();
        let listener = a_socket(&selector)
            .tcp()
            .reuse_port(true)
            .bind(held.address())
            .await
            .unwrap();
        let listener = Arc::new(listener);
        let port = held.port();
        // The listener's close and another close: the listener's, or the selector's; or two
        // closes of the selector.
        let close_listener = || -> Box<dyn FnOnce() + Send> {
            let listener = Arc::clone(&listener);
            Box::new(move || listener.close())
        };
        let close_selector = || -> Box<dyn FnOnce() + Send> {
            let selector = selector.clone();
            Box::new(move || selector.close())
        };
        let (first, other) = match rounds % 3 {
            0 => (close_listener(), close_listener()),
            1 => (close_listener(), close_selector()),
            _ => (close_selector(), close_selector()),
        };
        let seen = twice_at_once([first, other], Arc::new(move || connect_to(port)));
        assert!(
            seen.iter().all(Option::is_none),
            "round {rounds}: a connect after a close returned was not refused: {seen:?}"
        );
    }
}

/// What a peer's read found, without waiting: `true` for the end (FIN or a reset), `false`
/// while the connection is still open.
fn peer_sees_the_end(peer: &std::net::TcpStream) -> bool {
    let mut byte = [0; 1];
    !matches!((&*peer).read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// `Socket::close` is immediate: the descriptor is released (the kernel sends FIN) before it
/// returns, also for a close that found another (another thread's, or the selector's) under
/// way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_close_racing_another_returns_only_once_the_peer_can_see_the_end() {
    let started = Instant::now();
    let mut rounds = 0;
    while rounds < 400 && started.elapsed() < Duration::from_millis(1500) {
        rounds += 1;
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let peer = std::net::TcpStream::connect(("127.0.0.1", listener.port().unwrap())).unwrap();
        peer.set_nonblocking(true).unwrap();
        let socket: Arc<Socket> = Arc::new(within(listener.accept()).await.unwrap());
        let other: Box<dyn FnOnce() + Send> = if rounds % 2 == 0 {
            let socket = Arc::clone(&socket);
            Box::new(move || socket.close())
        } else {
            let selector = selector.clone();
            Box::new(move || selector.close())
        };
        let first: Box<dyn FnOnce() + Send> = {
            let socket = Arc::clone(&socket);
            Box::new(move || socket.close())
        };
        let peer = Arc::new(peer);
        let seen = twice_at_once(
            [first, other],
            Arc::new({
                let peer = Arc::clone(&peer);
                move || peer_sees_the_end(&peer)
            }),
        );
        assert!(
            seen.iter().all(|&end| end),
            "round {rounds}: a close returned before the peer could see the end: {seen:?}"
        );
    }
}

/// `ServerSocket::close` while another thread is in the middle of an `accept` (connections
/// keep coming, so the accept task is often inside the kernel's accept): once the close
/// returns, connects are refused, and the accept fails with `Closed`. An accept in flight held
/// the listener for the moment of its poll, and its end, not the close, released the
/// descriptor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_close_during_an_accept_returns_only_once_connects_are_refused() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let selector = SelectorManager::new();
    let started = Instant::now();
    let mut rounds = 0;
    while rounds < 200 && started.elapsed() < Duration::from_millis(1500) {
        rounds += 1;
        let held = RefusingPort::new();
        let port = held.port();
        let listener = a_socket(&selector)
            .tcp()
            .reuse_port(true)
            .bind(held.address())
            .await
            .unwrap();
        let listener = Arc::new(listener);
        let accepted = Arc::new(AtomicUsize::new(0));
        let acceptor = tokio::spawn({
            let (listener, accepted) = (Arc::clone(&listener), Arc::clone(&accepted));
            async move {
                loop {
                    match listener.accept().await {
                        Ok(socket) => {
                            accepted.fetch_add(1, Ordering::SeqCst);
                            drop(socket);
                        }
                        Err(e) => return e,
                    }
                }
            }
        });
        // Connections keep coming until the close.
        let stop = Arc::new(AtomicBool::new(false));
        let connector = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                for _ in 0..10_000 {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                        return;
                    }
                }
            }
        });
        let spin = Duration::from_micros((rounds as u64 * 7919) % 500);
        let seen = std::thread::spawn({
            let (listener, accepted) = (Arc::clone(&listener), Arc::clone(&accepted));
            move || {
                after_three_then_spin(&accepted, spin);
                listener.close();
                connect_to(port)
            }
        })
        .join()
        .unwrap();
        stop.store(true, Ordering::SeqCst);
        connector.join().unwrap();
        let error = within(acceptor).await.unwrap();
        assert!(
            seen.is_none(),
            "round {rounds}: a connect after the close returned was not refused: {seen:?}"
        );
        assert!(
            matches!(error, net_sockets::Error::Closed),
            "round {rounds}: the accept failed with {error:?}"
        );
    }
}

/// `BoundDatagramSocket::close` says the descriptor is released: once it returns, the port can
/// be bound again, also while another thread is in the middle of a send on the socket (a task
/// that sends without pause). A send in flight held the socket for the moment of its poll, and
/// its end, not the close, released the port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datagram_close_during_a_send_returns_only_once_the_port_is_free() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    let selector = SelectorManager::new();
    // Where the datagrams go (nobody reads them).
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = sink.local_addr().unwrap();
    let started = Instant::now();
    let mut rounds = 0;
    while rounds < 200 && started.elapsed() < Duration::from_millis(1500) {
        rounds += 1;
        let socket = a_socket(&selector)
            .udp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let address = socket.local_address().as_inet().unwrap().socket_addr();
        let socket = Arc::new(socket);
        let sent = Arc::new(AtomicUsize::new(0));
        let sender = tokio::spawn({
            let (socket, sent) = (Arc::clone(&socket), Arc::clone(&sent));
            async move {
                for _ in 0..1_000_000 {
                    let datagram = net_sockets::Datagram::new(&b"x"[..], target).unwrap();
                    if let Err(e) = socket.send(datagram).await {
                        return Some(e);
                    }
                    sent.fetch_add(1, Ordering::SeqCst);
                }
                None
            }
        });
        let spin = Duration::from_micros((rounds as u64 * 7919) % 300);
        let rebound = std::thread::spawn({
            let (socket, sent) = (Arc::clone(&socket), Arc::clone(&sent));
            move || {
                after_three_then_spin(&sent, spin);
                let closing = Instant::now();
                socket.close();
                let took = closing.elapsed();
                (std::net::UdpSocket::bind(address).map(drop), took)
            }
        })
        .join()
        .unwrap();
        // The send under way when the close came, or the next one, fails with `Closed`.
        let failed = within(sender).await.unwrap();
        assert!(
            matches!(failed, Some(net_sockets::Error::Closed)),
            "round {rounds}: {failed:?}"
        );
        // The close waits at most 50 ms for the send to let go (documented): a sender thread
        // the machine left unscheduled longer than that keeps the port until its poll ends.
        let (rebound, took) = rebound;
        assert!(
            rebound.is_ok() || took >= Duration::from_millis(50),
            "round {rounds}: the port was still bound after the close returned in {took:?}: \
             {rebound:?}"
        );
    }
}

/// Waits (at most 5 s) until `count` reaches 3, then spins for `spin`: a close that lands at
/// a varied moment inside a run of operations on another thread.
fn after_three_then_spin(count: &std::sync::atomic::AtomicUsize, spin: Duration) {
    let until = Instant::now() + Duration::from_secs(5);
    while count.load(std::sync::atomic::Ordering::SeqCst) < 3 && Instant::now() < until {
        std::thread::yield_now();
    }
    let until = Instant::now() + spin;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}
