//! Edges of a socket's stream (`into_stream`, plain and TLS) through tokio's traits, beside the
//! stress of `sockets_streams_while_closing.rs`: what a write of nothing reports once the
//! socket is closed, and what a stream whose two directions ended answers after that.

use net_sockets::SelectorManager;
use net_tests::fault::raw_peer_of;
use net_tests::loopback::tcp_listener;
use net_tests::pki::TestCa;
use net_tests::tls::rustls_client;
use net_tests::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Whether `e` is the close's error: `Closed`, or `SelectorClosed` after the selector's close.
fn is_close_error(e: std::io::Error, by_selector: bool) -> bool {
    match net_sockets::Error::from(e) {
        net_sockets::Error::SelectorClosed => by_selector,
        net_sockets::Error::Closed => !by_selector,
        _ => false,
    }
}

/// A write of nothing (single or vectored) after the socket's close, or its selector's, fails
/// with the close's error as every other write does, on a plain stream as on a TLS one (whose
/// `poll_write` says "An empty write too, as on a plain socket"). Before, a plain stream's
/// returned `Ok(0)`, as if the stream were still open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_of_nothing_after_the_close_fails_with_the_close_plain_and_tls() {
    let ca = TestCa::new("stream ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    for by_selector in [false, true] {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let (_peer, socket) = raw_peer_of(&listener).await;
        let mut plain = socket.into_stream().unwrap();
        let (mut tls, _tls_peer) =
            net_tests::tls::accept_stream(&listener, &config, rustls_client(&ca)).await;
        if by_selector {
            selector.close();
        } else {
            plain.close();
            tls.close();
        }
        let case = format!("by the selector: {by_selector}");
        let e = within(plain.write(b"")).await.expect_err(&case);
        assert!(is_close_error(e, by_selector), "{case}: plain");
        let nothing = [std::io::IoSlice::new(b""), std::io::IoSlice::new(b"")];
        let e = within(plain.write_vectored(&nothing))
            .await
            .expect_err(&case);
        assert!(is_close_error(e, by_selector), "{case}: plain, vectored");
        let e = within(plain.write(b"x")).await.expect_err(&case);
        assert!(is_close_error(e, by_selector), "{case}: plain, one byte");
        let e = within(tls.write(b"")).await.expect_err(&case);
        assert!(is_close_error(e, by_selector), "{case}: tls");
        let e = within(tls.write_vectored(&nothing)).await.expect_err(&case);
        assert!(is_close_error(e, by_selector), "{case}: tls, vectored");
    }
}

/// Once the peer's end was read and our shutdown ended the connection (the socket then closes
/// itself), a flush and a second shutdown stay `Ok`, and a read still finds the end, on a plain
/// stream as on a TLS one; the peer reads what was written, then a clean end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_two_directions_ended_stays_quiet_plain_and_tls() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let ca = TestCa::new("stream ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let mut buf = [0u8; 10];

    let (mut peer, socket) = raw_peer_of(&listener).await;
    let mut plain = socket.into_stream().unwrap();
    peer.shutdown().await.unwrap();
    assert_eq!(within(plain.read(&mut buf)).await.unwrap(), 0);
    within(plain.write_all(b"last")).await.unwrap();
    within(plain.shutdown()).await.unwrap();
    within(plain.flush()).await.unwrap();
    within(plain.shutdown()).await.unwrap();
    assert_eq!(within(plain.read(&mut buf)).await.unwrap(), 0);
    let mut rest = Vec::new();
    within(peer.read_to_end(&mut rest)).await.unwrap();
    assert_eq!(rest, b"last");

    let (mut tls, mut tls_peer) =
        net_tests::tls::accept_stream(&listener, &config, rustls_client(&ca)).await;
    tls_peer.shutdown().await.unwrap();
    assert_eq!(within(tls.read(&mut buf)).await.unwrap(), 0);
    within(tls.write_all(b"last")).await.unwrap();
    within(tls.shutdown()).await.unwrap();
    within(tls.flush()).await.unwrap();
    within(tls.shutdown()).await.unwrap();
    assert_eq!(within(tls.read(&mut buf)).await.unwrap(), 0);
    let mut rest = Vec::new();
    within(tls_peer.read_to_end(&mut rest)).await.unwrap();
    assert_eq!(rest, b"last");
}

/// A stream whose read reported the peer's reset reports it again (kind `ConnectionReset`, OS
/// error `ECONNRESET`) on every later read, also after the socket's close or its selector's
/// (into_stream: "A read that failed for good (the socket's error ...) fails again, the same
/// way, every later read"; SPEC §4.1: every later read reports the same typed error), over
/// TLS as on a plain socket. Before, a TLS stream's read after the close reported the close
/// (`Closed`, or `SelectorClosed`) instead; the plain stream's reported the reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_is_reported_again_after_the_close_plain_and_tls() {
    let ca = TestCa::new("stream ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let reset_seen = |what: &str, e: std::io::Error| {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset,
            "{what}: {e:?}"
        );
        assert_eq!(e.raw_os_error(), Some(libc::ECONNRESET), "{what}: {e:?}");
    };
    for by_selector in [false, true] {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let (peer, socket) = raw_peer_of(&listener).await;
        let mut plain = socket.into_stream().unwrap();
        let (mut tls, tls_peer) =
            net_tests::tls::accept_stream(&listener, &config, rustls_client(&ca)).await;
        net_tests::fault::reset(peer);
        net_tests::fault::reset(tls_peer.into_inner().0);
        let mut buf = [0u8; 16];
        let case = format!("by the selector: {by_selector}");
        reset_seen(
            &format!("{case}: plain"),
            within(plain.read(&mut buf)).await.unwrap_err(),
        );
        reset_seen(
            &format!("{case}: tls"),
            within(tls.read(&mut buf)).await.unwrap_err(),
        );
        if by_selector {
            selector.close();
        } else {
            plain.close();
            tls.close();
        }
        for read in 0..2 {
            reset_seen(
                &format!("{case}: plain, after the close, read {read}"),
                within(plain.read(&mut buf)).await.unwrap_err(),
            );
            reset_seen(
                &format!("{case}: tls, after the close, read {read}"),
                within(tls.read(&mut buf)).await.unwrap_err(),
            );
        }
    }
}
