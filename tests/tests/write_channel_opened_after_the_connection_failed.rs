//! A write channel opened only after a read reported the connection's failure: the peer's
//! reset on TCP, a corrupted record on TLS (the session failed for good). Its writes fail at
//! once, also those that would only add bytes to its buffer, and its flush and its close
//! fail too: none may report success for bytes, or an end, that can never reach the peer.
//! Channels opened before the failure were tested; no test opened one after it (found by a
//! coverage run: the two branches of `Conn::watch_channel` that fail such a channel's state
//! ran 0 times).

use std::io::ErrorKind;

use net_io::LineEnding;
use net_sockets::SelectorManager;
use net_tests::fault::{raw_peer_of, reset};
use net_tests::loopback::tcp_listener;
use net_tests::pki::TestCa;
use net_tests::tls::manual_pair;
use net_tests::within;
use tokio::io::AsyncWriteExt;

/// Whether `e` is the failure of a connection that is gone: the broken pipe a send then gets,
/// or the session's own error (TLS).
fn is_failure(e: &net_io::Error, expected: ErrorKind) -> bool {
    matches!(e, net_io::Error::Io(io) if io.kind() == expected)
}

#[tokio::test]
async fn a_write_channel_opened_after_the_peers_reset_was_read_fails_at_once() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (peer, mut socket) = raw_peer_of(&listener).await;
    let mut input = socket.open_read_channel().unwrap();
    reset(peer);
    let read = within(input.read_line(80, LineEnding::Default)).await;
    assert!(
        matches!(&read, Err(e) if is_failure(e, ErrorKind::ConnectionReset)),
        "the read: {read:?}"
    );

    let mut output = socket.open_write_channel(false).unwrap();
    // Two bytes that fit in the buffer: refused all the same, before any flush.
    let written = within(output.write_fully(b"ok")).await;
    assert!(
        matches!(&written, Err(e) if is_failure(e, ErrorKind::BrokenPipe)),
        "a buffered write: {written:?}"
    );
    let flushed = within(output.flush()).await;
    assert!(
        matches!(&flushed, Err(e) if is_failure(e, ErrorKind::BrokenPipe)),
        "the flush: {flushed:?}"
    );
    let closed = within(output.flush_and_close()).await;
    assert!(closed.is_err(), "the close: {closed:?}");
}

#[tokio::test]
async fn a_write_channel_opened_after_a_corrupted_record_was_read_fails_at_once() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let ca = TestCa::new("opened after failure CA");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let (mut socket, mut tcp, _client) = manual_pair(&listener, &ca, &config).await;
    let mut input = socket.open_read_channel().unwrap();
    // An application-data record of 32 bytes that no key sealed.
    let mut record = vec![0x17, 0x03, 0x03, 0x00, 0x20];
    record.extend_from_slice(&[0x5a; 32]);
    within(tcp.write_all(&record)).await.unwrap();
    let read = within(input.read_line(80, LineEnding::Default)).await;
    assert!(
        matches!(&read, Err(e) if is_failure(e, ErrorKind::InvalidData)),
        "the read: {read:?}"
    );

    let mut output = socket.open_write_channel(false).unwrap();
    let written = within(output.write_fully(b"ok")).await;
    assert!(
        matches!(&written, Err(e) if is_failure(e, ErrorKind::InvalidData)),
        "a buffered write: {written:?}"
    );
    let flushed = within(output.flush()).await;
    assert!(flushed.is_err(), "the flush: {flushed:?}");
    let closed = within(output.flush_and_close()).await;
    assert!(closed.is_err(), "the close: {closed:?}");
}
