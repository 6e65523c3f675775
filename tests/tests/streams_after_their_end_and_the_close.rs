//! A socket stream after its end was read, or made, and the socket then closed (its `close` or
//! its selector's): over TLS as on a plain socket, and as the read channels do,
//!
//! - a read that found the peer's clean end (FIN; over TLS, `close_notify`) finds that end
//!   again (`Ok` with nothing read, tokio's contract for a read after the end) on every later
//!   read. Before, a TLS stream's read after the close failed with the close (`NotConnected`,
//!   inner `Closed`, or `SelectorClosed`), where the plain stream's found the end;
//! - after its own `poll_shutdown` went through (everything written, then the end, went to the
//!   peer), a flush and a second shutdown stay `Ok` (a plain stream's `poll_flush` says "After
//!   our own shutdown it stays `Ok`"; a second shutdown of tokio's streams is `Ok` too), and a
//!   write still fails with `BrokenPipe`. Before, a TLS stream's flush and second shutdown
//!   failed with the close's error, where a plain stream's returned `Ok`.

use net_sockets::{SelectorManager, SocketStream};
use net_tests::fault::raw_peer_of;
use net_tests::loopback::tcp_listener;
use net_tests::pki::TestCa;
use net_tests::tls::rustls_client;
use net_tests::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One round's streams: a plain one and a TLS one accepted by a listener of a fresh selector,
/// each with its peer (raw TCP; tokio-rustls).
struct Streams {
    selector: SelectorManager,
    plain: SocketStream,
    peer: tokio::net::TcpStream,
    tls: net_tls::TlsStream,
    tls_peer: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
}

impl Streams {
    async fn new(ca: &TestCa) -> Self {
        let config = ca.server(&["localhost"]).server_config().build().unwrap();
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let (peer, socket) = raw_peer_of(&listener).await;
        let plain = socket.into_stream().unwrap();
        let (tls, tls_peer) =
            net_tests::tls::accept_stream(&listener, &config, rustls_client(ca)).await;
        Self {
            selector,
            plain,
            peer,
            tls,
            tls_peer,
        }
    }

    /// Closes both streams: by their selector's close, or each by its own.
    fn close(&self, by_selector: bool) {
        if by_selector {
            self.selector.close();
        } else {
            self.plain.close();
            self.tls.close();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_end_is_found_again_after_the_close_plain_and_tls() {
    let ca = TestCa::new("stream ca");
    for by_selector in [false, true] {
        let mut s = Streams::new(&ca).await;
        s.peer.write_all(b"last").await.unwrap();
        s.peer.shutdown().await.unwrap();
        s.tls_peer.write_all(b"last").await.unwrap();
        s.tls_peer.shutdown().await.unwrap();
        let case = format!("by the selector: {by_selector}");
        let mut got = Vec::new();
        within(s.plain.read_to_end(&mut got)).await.unwrap();
        assert_eq!(got, b"last", "{case}: plain");
        let mut got = Vec::new();
        within(s.tls.read_to_end(&mut got)).await.unwrap();
        assert_eq!(got, b"last", "{case}: tls");
        s.close(by_selector);
        let mut buf = [0u8; 16];
        for read in 0..2 {
            let n = within(s.plain.read(&mut buf)).await;
            assert_eq!(
                n.ok(),
                Some(0),
                "{case}: plain, after the close, read {read}"
            );
            let n = within(s.tls.read(&mut buf)).await;
            assert!(
                matches!(n, Ok(0)),
                "{case}: tls, after the close, read {read}: {n:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_or_second_shutdown_after_our_shutdown_and_the_close_is_ok_plain_and_tls() {
    let ca = TestCa::new("stream ca");
    for by_selector in [false, true] {
        let mut s = Streams::new(&ca).await;
        within(s.plain.write_all(b"last")).await.unwrap();
        within(s.tls.write_all(b"last")).await.unwrap();
        within(s.plain.shutdown()).await.unwrap();
        within(s.tls.shutdown()).await.unwrap();
        s.close(by_selector);
        let case = format!("by the selector: {by_selector}");
        for round in 0..2 {
            let flushed = within(s.plain.flush()).await;
            assert!(flushed.is_ok(), "{case}: plain flush {round}: {flushed:?}");
            let flushed = within(s.tls.flush()).await;
            assert!(flushed.is_ok(), "{case}: tls flush {round}: {flushed:?}");
            let shut = within(s.plain.shutdown()).await;
            assert!(shut.is_ok(), "{case}: plain shutdown {round}: {shut:?}");
            let shut = within(s.tls.shutdown()).await;
            assert!(shut.is_ok(), "{case}: tls shutdown {round}: {shut:?}");
        }
        let e = within(s.plain.write(b"x")).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{case}: plain");
        let e = within(s.tls.write(b"x")).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{case}: tls");
        // Each peer read what was written, then the clean end.
        let mut rest = Vec::new();
        within(s.peer.read_to_end(&mut rest)).await.unwrap();
        assert_eq!(rest, b"last", "{case}: plain peer");
        let mut rest = Vec::new();
        within(s.tls_peer.read_to_end(&mut rest)).await.unwrap();
        assert_eq!(rest, b"last", "{case}: tls peer");
    }
}
