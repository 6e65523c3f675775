//! Unix domain stream sockets, reviewed: what a close that would reset a TCP connection does
//! to a Unix one, binding over files that are there, abstract names at their edges, and the
//! socket file when the selector or its runtime ends.

use std::io::ErrorKind;

use net_sockets::{SelectorManager, UnixSocketAddress, a_socket};
use net_tests::{TempDir, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A Unix socket has no reset. A close that resets a TCP connection (here: bytes still
/// buffered in the write channel) ends a Unix stream as a clean close does: the peer reads
/// what was sent, then the end of the stream, and cannot tell that bytes were lost. (Before,
/// the documentation promised every byte stream, Unix included, a reset: `ConnectionReset`,
/// "never a clean end".) What Linux does report to a Unix peer: `ECONNRESET`, after every
/// byte sent, when the closing side leaves input unread.
#[tokio::test]
async fn a_unix_close_that_resets_tcp_ends_the_stream_as_unix_has_no_reset() {
    let selector = SelectorManager::new();
    let dir = TempDir::new("hx-unix-reset");
    let path = dir.join("s.sock");
    let listener = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new(&path))
        .await
        .unwrap();
    for unread_input in [false, true] {
        let mut peer = tokio::net::UnixStream::connect(&path).await.unwrap();
        let socket = within(listener.accept()).await.unwrap();
        let mut connection = socket.connection().unwrap();
        connection.output.write_fully(b"sent").await.unwrap();
        connection.output.flush().await.unwrap();
        if unread_input {
            // A Unix stream's write puts the bytes in the other socket's input queue at once:
            // once it returned, they wait there, unread.
            peer.write_all(b"never read").await.unwrap();
        }
        connection.output.write_fully(b"never sent").await.unwrap();
        connection.socket.close();
        let mut received = Vec::new();
        let end = within(peer.read_to_end(&mut received)).await;
        assert_eq!(received, b"sent", "unread input: {unread_input}");
        if unread_input {
            let e = end.expect_err("a close with unread input is reported as a reset");
            assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e:?}");
        } else {
            assert!(
                end.is_ok(),
                "a Unix stream ends cleanly, it has no reset: {end:?}"
            );
        }
    }
}
