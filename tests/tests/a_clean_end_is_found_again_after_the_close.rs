//! A stream whose read found the peer's clean end (FIN; over TLS, `close_notify`) finds that
//! end again (`Ok` with nothing read, tokio's contract for a read after the end) on every later
//! read, also after the socket's close or its selector's, over TLS as on a plain socket (and as
//! the read channels do). Before, a TLS stream's read after the close failed with the close
//! (`NotConnected`, inner `Closed`, or `SelectorClosed`), where the plain stream's found the end.

use net_sockets::SelectorManager;
use net_tests::fault::raw_peer_of;
use net_tests::loopback::tcp_listener;
use net_tests::pki::TestCa;
use net_tests::tls::rustls_client;
use net_tests::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_end_is_found_again_after_the_close_plain_and_tls() {
    let ca = TestCa::new("stream ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    for by_selector in [false, true] {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let (mut peer, socket) = raw_peer_of(&listener).await;
        let mut plain = socket.into_stream().unwrap();
        let (mut tls, mut tls_peer) =
            net_tests::tls::accept_stream(&listener, &config, rustls_client(&ca)).await;
        peer.write_all(b"last").await.unwrap();
        peer.shutdown().await.unwrap();
        tls_peer.write_all(b"last").await.unwrap();
        tls_peer.shutdown().await.unwrap();
        let case = format!("by the selector: {by_selector}");
        let mut got = Vec::new();
        within(plain.read_to_end(&mut got)).await.unwrap();
        assert_eq!(got, b"last", "{case}: plain");
        let mut got = Vec::new();
        within(tls.read_to_end(&mut got)).await.unwrap();
        assert_eq!(got, b"last", "{case}: tls");
        if by_selector {
            selector.close();
        } else {
            plain.close();
            tls.close();
        }
        let mut buf = [0u8; 16];
        for read in 0..2 {
            let n = within(plain.read(&mut buf)).await;
            assert_eq!(
                n.ok(),
                Some(0),
                "{case}: plain, after the close, read {read}"
            );
            let n = within(tls.read(&mut buf)).await;
            assert!(
                matches!(n, Ok(0)),
                "{case}: tls, after the close, read {read}: {n:?}"
            );
        }
        drop(peer);
        drop(tls_peer);
    }
}
