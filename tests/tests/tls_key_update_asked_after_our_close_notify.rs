//! A TLS 1.3 peer that asks for a key update (a KeyUpdate with `update_requested`) after our
//! side half-closed (`flush_and_close`: our `close_notify` sent), then sends data and its own
//! `close_notify`. Nothing may follow our `close_notify`: the read must still return the
//! peer's data, then a clean end, and the peer must receive no record after our
//! `close_notify`. Only the JVM interop test (JSSE at its key limits, skipped where no JDK is
//! installed) did this; no rustls-driven test did. (Found looking at a coverage run's
//! uncovered branch of the socket's `try_write` for a write side shut down, for the records a
//! read makes the layer owe; this test does not reach that branch either: at each of its
//! two calls here the write side was not shut down.)

use std::time::Duration;

use net_io::LineEnding;
use net_sockets::SelectorManager;
use net_tests::loopback::tcp_listener;
use net_tests::pki::TestCa;
use net_tests::tls::{manual_pair, records};
use net_tests::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Feeds what arrives on `tcp` to `conn` until the server's `close_notify` has been read, or
/// `limit` passes; whether it was, and the plaintext read before it.
async fn read_to_close_notify(
    tcp: &mut tokio::net::TcpStream,
    conn: &mut net_tls::rustls::ClientConnection,
    limit: Duration,
) -> (bool, Vec<u8>) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut plain = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) | Err(_) => return (false, plain),
        };
        if n == 0 {
            return (false, plain);
        }
        conn.read_tls(&mut &buf[..n]).unwrap();
        let state = conn.process_new_packets().unwrap();
        let mut chunk = vec![0u8; state.plaintext_bytes_to_read()];
        std::io::Read::read_exact(&mut conn.reader(), &mut chunk).unwrap();
        plain.extend_from_slice(&chunk);
        if state.peer_has_closed() {
            return (true, plain);
        }
    }
}

#[tokio::test]
async fn a_key_update_asked_after_our_close_notify_gets_no_reply_and_reads_on_to_a_clean_end() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let ca = TestCa::new("key update after close_notify CA");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let (mut server, mut tcp, mut conn) = manual_pair(&listener, &ca, &config).await;
    let mut input = server.open_read_channel().unwrap();
    let mut output = server.open_write_channel(false).unwrap();
    output.write_string_utf8("last words\n").await.unwrap();
    within(output.flush_and_close()).await.unwrap();
    let (closed, plain) = read_to_close_notify(&mut tcp, &mut conn, Duration::from_secs(10)).await;
    assert!(closed, "our close_notify never came");
    assert_eq!(plain, b"last words\n");

    // The peer, its direction still open: a KeyUpdate request, data, its own close_notify.
    conn.refresh_traffic_keys().unwrap();
    std::io::Write::write_all(&mut conn.writer(), b"after\n").unwrap();
    conn.send_close_notify();
    tcp.write_all(&records(&mut conn)).await.unwrap();

    let line = within(input.read_line(80, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("after"));
    let end = within(input.read_line(80, LineEnding::Default)).await;
    assert_eq!(
        end.unwrap(),
        None,
        "the peer's close_notify reads as the end"
    );

    // Nothing came after our close_notify: the connection ends (our side closes once both
    // directions are done), with no record.
    let mut after = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut after)).await;
    assert!(
        matches!(read, Ok(Ok(0))),
        "after our close_notify: {read:?}, {} bytes",
        after.len()
    );
}
