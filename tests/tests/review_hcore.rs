//! Review round (hcore): the socket core under races of its ends.
//!
//! - Two `close` calls at the same moment (two threads sharing the socket): when either
//!   returns, the socket is closed, as after one close; on a TLS socket too, whose layer's
//!   closing takes a while.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

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
