//! A stream whose own `poll_shutdown` went through (the end was made: everything written, then
//! the end, went to the peer), then closed (its `close` or its selector's): a flush and a second
//! shutdown stay `Ok` over TLS as on a plain socket (whose `poll_flush` says "After our own
//! shutdown it stays `Ok`"; a second shutdown of tokio's streams is `Ok` too), and a write still
//! fails with `BrokenPipe`. Before, a TLS stream's flush and second shutdown failed with the
//! close's error (`NotConnected`, inner `Closed`; or `SelectorClosed`), where a plain stream's
//! returned `Ok`.

use net_sockets::SelectorManager;
use net_tests::fault::raw_peer_of;
use net_tests::loopback::tcp_listener;
use net_tests::pki::TestCa;
use net_tests::tls::rustls_client;
use net_tests::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_or_second_shutdown_after_our_shutdown_and_the_close_is_ok_plain_and_tls() {
    let ca = TestCa::new("stream ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    for by_selector in [false, true] {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let (mut peer, socket) = raw_peer_of(&listener).await;
        let mut plain = socket.into_stream().unwrap();
        let (mut tls, mut tls_peer) =
            net_tests::tls::accept_stream(&listener, &config, rustls_client(&ca)).await;
        within(plain.write_all(b"last")).await.unwrap();
        within(tls.write_all(b"last")).await.unwrap();
        within(plain.shutdown()).await.unwrap();
        within(tls.shutdown()).await.unwrap();
        if by_selector {
            selector.close();
        } else {
            plain.close();
            tls.close();
        }
        let case = format!("by the selector: {by_selector}");
        for round in 0..2 {
            let flushed = within(plain.flush()).await;
            assert!(flushed.is_ok(), "{case}: plain flush {round}: {flushed:?}");
            let flushed = within(tls.flush()).await;
            assert!(flushed.is_ok(), "{case}: tls flush {round}: {flushed:?}");
            let shut = within(plain.shutdown()).await;
            assert!(shut.is_ok(), "{case}: plain shutdown {round}: {shut:?}");
            let shut = within(tls.shutdown()).await;
            assert!(shut.is_ok(), "{case}: tls shutdown {round}: {shut:?}");
        }
        let e = within(plain.write(b"x")).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{case}: plain");
        let e = within(tls.write(b"x")).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{case}: tls");
        // Each peer read what was written, then the clean end.
        let mut rest = Vec::new();
        within(peer.read_to_end(&mut rest)).await.unwrap();
        assert_eq!(rest, b"last", "{case}: plain peer");
        let mut rest = Vec::new();
        within(tls_peer.read_to_end(&mut rest)).await.unwrap();
        assert_eq!(rest, b"last", "{case}: tls peer");
    }
}
