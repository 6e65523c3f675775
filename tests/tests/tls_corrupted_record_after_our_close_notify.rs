//! A record that cannot be decrypted, from a peer that keeps sending after our half-close (our
//! `close_notify` sent): rustls 0.23 answers it with a fatal alert, and debug-asserts that a
//! session sends one alert at most, which the `close_notify` already was (rustls issue #959,
//! open). So a debug build of rustls panics inside our read, in the reading task; a release
//! build reports the session's failure, `InvalidData` with rustls's `DecryptError`. This pins
//! that upstream limitation as `guarantees.md` states it: when rustls stops asserting, the
//! debug case fails here, and the row can say "no panic" for both.

use net_io::LineEnding;
use net_sockets::SelectorManager;
use net_tests::pki::TestCa;
use net_tests::tls::manual_pair;
use net_tests::within;
use net_tls::rustls;
use tokio::io::AsyncWriteExt;

/// Our server half-closes (its `close_notify` goes out), then the peer sends a corrupted
/// record, and our server reads: a panic inside rustls in a debug build, the session's error
/// in a release one. Another connection of the same listener works on either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_record_after_our_close_notify_is_rustls_debug_assertion_or_decrypt_error() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("corrupted after close_notify");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = net_tests::loopback::tcp_listener(&selector).await;
    let (mut server, mut tcp, _conn) = manual_pair(&listener, &ca, &config).await;
    let mut input = server.open_read_channel().unwrap();
    let mut output = server.open_write_channel(false).unwrap();
    within(output.flush_and_close()).await.unwrap();
    tcp.write_all(b"\x17\x03\x03\x00\x20corrupted record, not decryptable")
        .await
        .unwrap();
    let reading = tokio::spawn(async move {
        let read = within(input.read_line(1024, LineEnding::Default)).await;
        drop(server);
        read
    });
    let outcome = within(reading).await;
    if cfg!(debug_assertions) {
        let e = outcome.expect_err("a debug build of rustls panics (issue #959)");
        assert!(e.is_panic(), "{e:?}");
        let payload = e.into_panic();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(message.contains("sent_fatal_alert"), "{message}");
    } else {
        let e = outcome.unwrap().unwrap_err();
        assert_eq!(
            net_tests::tls::rustls_error(&e),
            Some(&rustls::Error::DecryptError),
            "{e:?}"
        );
    }
    // Another connection of the listener is served as before.
    let (mut other, _tcp, _conn) = manual_pair(&listener, &ca, &config).await;
    let mut output = other.open_write_channel(false).unwrap();
    within(output.flush_and_close()).await.unwrap();
    selector.close();
}
