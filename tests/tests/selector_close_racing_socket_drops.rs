//! `SelectorManager::close` at the same moment as another thread drops the last handle of one of
//! the selector's sockets: the close must still return only once that socket's descriptor is
//! released, as it does for every socket it closes itself and for a socket another thread
//! `close()`s at the same moment (`sockets_close_waits_for_release`). A socket whose drop began
//! cannot be reached by the selector any more (its handle is gone), but it is one of the
//! selector's sockets until its descriptor went: a program that closes the selector on shutdown
//! while a task drops its listener, then binds the port again, must not find it still bound.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use net_sockets::{SelectorManager, a_socket};
use net_tests::block_on;

/// The most rounds of each kind, and the time they may take (a bound for a slow machine).
const ROUNDS: usize = 1000;
const BUDGET: Duration = Duration::from_secs(5);

/// Drops `socket` on another thread while this one closes `selector`; returns once both are
/// done, with what `after_close` saw right after the selector's close returned.
fn drop_while_the_selector_closes<T: Send + 'static, R>(
    selector: &SelectorManager,
    socket: T,
    after_close: impl FnOnce() -> R,
) -> R {
    let start = Arc::new(Barrier::new(2));
    let dropping = std::thread::spawn({
        let start = Arc::clone(&start);
        move || {
            start.wait();
            drop(socket);
        }
    });
    start.wait();
    selector.close();
    let seen = after_close();
    dropping.join().unwrap();
    seen
}

/// Runs `round` up to [`ROUNDS`] times within [`BUDGET`]; returns the failures it reported.
fn rounds(mut round: impl FnMut() -> Option<String>) -> Vec<String> {
    let started = Instant::now();
    let mut failures = Vec::new();
    for _ in 0..ROUNDS {
        if started.elapsed() > BUDGET {
            break;
        }
        failures.extend(round());
    }
    failures
}

/// A selector with a runtime of its own per round: its close is the only one in the round.
fn selector() -> SelectorManager {
    SelectorManager::builder()
        .worker_threads(1)
        .build()
        .unwrap()
}

/// A connected socket dropped as its selector closes: once the close returned, its peer sees
/// the end of the stream (on loopback the FIN is there as the descriptor goes).
#[test]
fn a_connection_dropped_as_the_selector_closes_is_released_when_the_close_returns() {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = server.local_addr().unwrap();
    let failures = rounds(|| {
        let selector = selector();
        let socket = block_on(a_socket(&selector).tcp().connect(address)).unwrap();
        let (peer, _) = server.accept().unwrap();
        peer.set_nonblocking(true).unwrap();
        let read = drop_while_the_selector_closes(&selector, socket, || {
            std::io::Read::read(&mut &peer, &mut [0; 1])
        });
        match read {
            Ok(0) => None,
            other => Some(format!("the peer read {other:?}, not the end")),
        }
    });
    assert!(
        failures.is_empty(),
        "{} rounds: after the selector's close returned, the dropped connection was still \
         open: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
}

/// A listener dropped as its selector closes: once the close returned, connects are refused.
#[test]
fn a_listener_dropped_as_the_selector_closes_is_released_when_the_close_returns() {
    let failures = rounds(|| {
        let selector = selector();
        let listener = block_on(a_socket(&selector).tcp().bind(("127.0.0.1", 0))).unwrap();
        let port = listener.port().unwrap();
        let connect = drop_while_the_selector_closes(&selector, listener, || {
            std::net::TcpStream::connect(("127.0.0.1", port))
        });
        connect
            .ok()
            .map(|_| format!("a connect to port {port} was accepted"))
    });
    assert!(
        failures.is_empty(),
        "{} rounds: after the selector's close returned, the dropped listener still listened: \
         {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
}

/// A datagram socket dropped as its selector closes: once the close returned, its port is
/// free to bind again.
#[test]
fn a_datagram_socket_dropped_as_the_selector_closes_is_released_when_the_close_returns() {
    let failures = rounds(|| {
        let selector = selector();
        let socket = block_on(a_socket(&selector).udp().bind(("127.0.0.1", 0))).unwrap();
        let address = socket.local_address().as_inet().unwrap().socket_addr();
        let bound = drop_while_the_selector_closes(&selector, socket, || {
            std::net::UdpSocket::bind(address)
        });
        bound
            .err()
            .map(|e| format!("binding {address} again failed: {e}"))
    });
    assert!(
        failures.is_empty(),
        "{} rounds: after the selector's close returned, the dropped datagram socket still held \
         its port: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
}
