//! A TLS session that failed (the peer's corrupted record) reports it to the next write at
//! once, whatever room the socket has.

use std::time::Duration;

use net_sockets::{SelectorManager, a_socket};
use net_tests::pki::TestCa;
use net_tests::within;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Writes 1 KiB chunks until one has waited 200 ms (the peer reads nothing); what the writes
/// took.
async fn written_until_a_write_waits(stream: &mut (impl AsyncWrite + Unpin)) -> usize {
    let chunk = vec![7u8; 1024];
    let mut sent = 0;
    loop {
        match tokio::time::timeout(Duration::from_millis(200), stream.write(&chunk)).await {
            Ok(Ok(n)) => sent += n,
            Ok(Err(e)) => panic!("a write failed after {sent} bytes: {e}"),
            Err(_) => return sent,
        }
        assert!(sent < 64 << 20, "the socket never filled");
    }
}

/// A write after the session failed (the peer's corrupted record, read by us) fails at once with
/// the session's error, as rustls reports it, also while the socket is full: it must not wait
/// for the socket (for ever without `socket_timeout`: a peer that reads nothing would hold the
/// writer on a session that is dead), though a write on a full socket hands rustls nothing.
#[tokio::test]
async fn a_write_after_the_session_failed_fails_at_once_though_the_socket_is_full() {
    use std::io::Write;
    use tokio::io::AsyncReadExt;
    let selector = SelectorManager::new();
    let listener = a_socket(&selector)
        .tcp()
        .send_buffer_size(32 * 1024)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let ca = TestCa::new("failed session ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let (tls, mut peer, mut conn) = net_tests::tls::manual_pair(&listener, &ca, &config).await;
    // A receive buffer of its own: the kernel no longer grows it, so the socket stays full.
    socket2::SockRef::from(&peer)
        .set_recv_buffer_size(4096)
        .unwrap();
    let mut tls = tls.into_stream().unwrap();
    // The peer reads nothing: the socket fills (and rustls's queue holds what the last write
    // left).
    written_until_a_write_waits(&mut tls).await;
    // The peer's record, corrupted on the way.
    conn.writer().write_all(b"line\n").unwrap();
    let mut record = net_tests::tls::records(&mut conn);
    let last = record.len() - 1;
    record[last] ^= 0x01;
    peer.write_all(&record).await.unwrap();
    let mut buf = [0u8; 64];
    let read = within(tls.read(&mut buf)).await;
    let failure = read.expect_err("the corrupted record fails the read");
    assert_eq!(
        failure.kind(),
        std::io::ErrorKind::InvalidData,
        "{failure:?}"
    );
    // The session is dead: a write reports it.
    let write = tokio::time::timeout(Duration::from_secs(5), tls.write(b"more")).await;
    match write {
        Ok(Err(e)) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e:?}"),
        Ok(Ok(n)) => panic!("a write on the failed session took {n} bytes"),
        Err(_) => panic!("a write on the failed session waited 5 s for the full socket"),
    }
    drop((peer, conn));
    selector.close();
}
