//! A TLS 1.3 session that a read found failed by the peer, where rustls queued no fatal alert
//! of its own, ends without `close_notify` when our side closes: a handshake message split over
//! two records with application data between them (tlsfuzzer's `test-tls13-keyupdate`, "1/4
//! fragmented keyupdate msg, appdata between": RFC 8446 §5.1 forbids the interleaving, and
//! rustls fails the session with `MessageInterleavedWithHandshakeMessage` but sends no alert),
//! and the peer's own fatal alert (RFC 8446 §6.2: both sides close at once). The read fails
//! typed; the close sends no `close_notify`, so the peer never reads a clean end of a session
//! that its misbehaviour ended (as a shutdown of the write side sends nothing then).

use std::io;

use net_sockets::SelectorManager;
use net_tests::pki::TestCa;
use net_tests::records::{RecordWriter, raw_tls13_peer};
use net_tests::tls::rustls_error;
use net_tests::within;
use net_tls::rustls::{self, ContentType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The client sends what `write` makes; our server's read fails with `expected` (kind
/// `InvalidData`), and then it closes. Whether what the client then reads to the end holds our
/// `close_notify`.
async fn close_after_failed_read(
    what: &str,
    expected: &rustls::Error,
    write: impl FnOnce(&mut RecordWriter, &mut Vec<u8>),
) -> bool {
    let selector = SelectorManager::new();
    let ca = TestCa::new("failed session ca");
    let (mut tcp, mut conn, mut records, mut server) = raw_tls13_peer(&selector, &ca).await;
    let mut bytes = Vec::new();
    write(&mut records, &mut bytes);
    within(tcp.write_all(&bytes)).await.unwrap();
    let mut input = server.open_read_channel().unwrap();
    let mut buf = [0u8; 64];
    let e = within(input.read_available(&mut buf))
        .await
        .expect_err(what);
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}: {e:?}");
    assert_eq!(rustls_error(&e), Some(expected), "{what}: {e:?}");
    server.close();
    let mut ours = Vec::new();
    within(tcp.read_to_end(&mut ours))
        .await
        .unwrap_or_else(|e| panic!("{what}: the client's read of our end: {e}"));
    let mut rest = &ours[..];
    while !rest.is_empty() {
        conn.read_tls(&mut rest).unwrap();
        conn.process_new_packets()
            .unwrap_or_else(|e| panic!("{what}: our records: {e}"));
    }
    selector.close();
    conn.process_new_packets().unwrap().peer_has_closed()
}

/// A KeyUpdate split over two handshake records, with application data between them: the
/// read fails with `MessageInterleavedWithHandshakeMessage`, and the close sends no
/// `close_notify`.
#[tokio::test]
async fn a_handshake_message_interleaved_with_data_ends_the_session_without_close_notify() {
    let expected = rustls::Error::PeerMisbehaved(
        rustls::PeerMisbehaved::MessageInterleavedWithHandshakeMessage,
    );
    let clean = close_after_failed_read("interleaved", &expected, |records, out| {
        // key_update(24), length 1, update_not_requested(0): its first byte, then the rest.
        records.record(ContentType::Handshake, &[24], out);
        records.record(ContentType::ApplicationData, b"between\n", out);
        records.record(ContentType::Handshake, &[0, 0, 1, 0], out);
    })
    .await;
    assert!(
        !clean,
        "our close sent close_notify after the peer broke the protocol"
    );
}

/// The peer's fatal alert (`unexpected_message`): the read fails with `AlertReceived`, and the
/// close sends no `close_notify`.
#[tokio::test]
async fn the_peers_fatal_alert_ends_the_session_without_close_notify() {
    let expected = rustls::Error::AlertReceived(rustls::AlertDescription::UnexpectedMessage);
    let clean = close_after_failed_read("fatal alert", &expected, |records, out| {
        records.record(ContentType::Alert, &[2, 10], out);
    })
    .await;
    assert!(
        !clean,
        "our close sent close_notify after the peer's fatal alert"
    );
}
