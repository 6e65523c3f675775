//! A TLS handshake waiting on a silent peer when its selector closes: it ends at once with
//! `Error::Socket(SelectorClosed)`, as the handshake's docs say, on the server side (a client
//! that connected and sends no ClientHello) and on the client side (a server that accepted and
//! answers nothing), never waiting out its 10-second handshake timeout. Looking for a test of
//! the handshake timer's `Err(closed)` arm, which a coverage run found never ran, we found
//! none that closed the selector under a waiting handshake. (That arm stays unreached here
//! too: the socket's read fails with the close first, and the handshake's own branch, polled
//! first, reports it.)

use std::time::{Duration, Instant};

use net_sockets::SelectorManager;
use net_tests::loopback::{connect, tcp_listener};
use net_tests::pki::TestCa;
use net_tests::within;
use net_tls::TlsExt;

/// The handshake's error once `selector` closes 100 ms after it started; how long it took.
async fn ends_with_the_close<T: std::fmt::Debug>(
    selector: &SelectorManager,
    handshake: impl std::future::Future<Output = Result<T, net_tls::Error>>,
) -> (net_tls::Error, Duration) {
    let started = Instant::now();
    let closing = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        selector.close();
        std::future::pending::<()>().await
    };
    let e = within(async {
        tokio::select! {
            done = handshake => done.unwrap_err(),
            () = closing => unreachable!(),
        }
    })
    .await;
    (e, started.elapsed())
}

#[tokio::test]
async fn a_server_handshake_waiting_for_a_silent_client_ends_with_the_selectors_close() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let ca = TestCa::new("handshake selector close CA");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let _silent = std::net::TcpStream::connect(listener.local_address().to_string()).unwrap();
    let accepted = within(listener.accept()).await.unwrap();
    let (e, took) = ends_with_the_close(&selector, accepted.tls_server(&config)).await;
    assert!(
        matches!(
            e,
            net_tls::Error::Socket(net_sockets::Error::SelectorClosed)
        ),
        "{e:?}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
async fn a_client_handshake_waiting_for_a_silent_server_ends_with_the_selectors_close() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("handshake selector close CA");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = connect(&selector, silent.local_addr().unwrap()).await;
    let _accepted = silent.accept().unwrap();
    let config = ca.client_config().build().unwrap();
    let (e, took) = ends_with_the_close(&selector, socket.tls(config)).await;
    assert!(
        matches!(
            e,
            net_tls::Error::Socket(net_sockets::Error::SelectorClosed)
        ),
        "{e:?}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}
