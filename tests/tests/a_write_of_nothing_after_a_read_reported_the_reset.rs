//! Through `into_stream`, once a read reported the peer's reset, a write of nothing (single or
//! vectored) fails as a write of bytes does, with the error a plain socket's send then gets
//! (`EPIPE`, kind `BrokenPipe`, as tokio's `TcpStream` reports it), over TCP and Unix as over
//! TLS (whose write of nothing failed so already) and as the write channel's. Before, the plain
//! stream's write of nothing returned `Ok(0)`, as if the connection could still take bytes.

use std::io::{ErrorKind, IoSlice};

use net_sockets::{SelectorManager, UnixSocketAddress, a_socket};
use net_tests::fault::raw_peer_of;
use net_tests::loopback::tcp_listener;
use net_tests::pki::TestCa;
use net_tests::tls::rustls_client;
use net_tests::{TempDir, within};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// After the read reported the reset: writes of nothing, single and vectored, then of bytes.
async fn writes_after_the_reset(what: &str, stream: &mut (impl AsyncRead + AsyncWrite + Unpin)) {
    let mut buf = [0u8; 16];
    let e = within(stream.read(&mut buf)).await.unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::ConnectionReset,
        "{what}: the read: {e:?}"
    );
    for round in 0..2 {
        let written = within(stream.write(b"")).await;
        assert!(
            matches!(&written, Err(e) if e.kind() == ErrorKind::BrokenPipe),
            "{what}: a write of nothing, {round}: {written:?}"
        );
        let nothing = [IoSlice::new(b""), IoSlice::new(b"")];
        let written = within(stream.write_vectored(&nothing)).await;
        assert!(
            matches!(&written, Err(e) if e.kind() == ErrorKind::BrokenPipe),
            "{what}: a vectored write of nothing, {round}: {written:?}"
        );
        let written = within(stream.write(b"x")).await;
        assert!(
            matches!(&written, Err(e) if e.kind() == ErrorKind::BrokenPipe),
            "{what}: a write of one byte, {round}: {written:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_of_nothing_after_a_read_reported_the_reset_fails_tcp_unix_and_tls() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let ca = TestCa::new("stream ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();

    let (peer, socket) = raw_peer_of(&listener).await;
    let mut tcp = socket.into_stream().unwrap();
    net_tests::fault::reset(peer);
    writes_after_the_reset("tcp", &mut tcp).await;

    let (mut tls, tls_peer) =
        net_tests::tls::accept_stream(&listener, &config, rustls_client(&ca)).await;
    net_tests::fault::reset(tls_peer.into_inner().0);
    writes_after_the_reset("tls", &mut tls).await;

    // A Unix peer that closes with our bytes unread: its end reads as `ECONNRESET`.
    let dir = TempDir::new("nothing-after-reset");
    let path = dir.join("s.sock");
    let unix = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new(&path))
        .await
        .unwrap();
    let peer = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let mut stream = within(unix.accept()).await.unwrap().into_stream().unwrap();
    within(stream.write_all(b"unread")).await.unwrap();
    net_tests::harness::without_spawns(|| drop(peer));
    writes_after_the_reset("unix", &mut stream).await;
}
