//! A peer that sends bytes after its `close_notify` (which TLS forbids: RFC 8446 §6.1 has the
//! receiver ignore them) only once our close began, while our reply still waits in the kernel
//! for it to read. Our side cannot throw those bytes away: they come after the close took in
//! what the socket held (`close`), or after the socket closed itself (`close_gracefully`, whose
//! half-close ends the connection: the peer's `close_notify` was read). The kernel answers them
//! with a reset, which destroys what it still queued. The docs say so; what must hold all the
//! same is SPEC §4's rule: the peer never reads a clean end (our `close_notify`) after part of
//! the reply.
//!
//! The peer is a rustls server driven by hand on a raw TCP stream with a small receive buffer,
//! which reads nothing until it sent its late bytes.

use std::time::Duration;

use net_io::LineEnding;
use net_sockets::SelectorManager;
use net_tests::pki::TestCa;
use net_tests::tls::{hand_server, read_session_to_the_end, records, rustls_localhost_server};
use net_tests::within;
use tokio::io::AsyncWriteExt;

/// Our reply: more than the kernel sends to a peer that reads nothing.
const REPLY: usize = 512 * 1024;

/// The server sends a line and its `close_notify`; our client reads them, writes its reply
/// (which mostly waits in the kernel: the server reads nothing yet), then closes (`close`, or
/// `close_gracefully` in a task of its own); only then the server sends bytes, and reads. It
/// sees a reset, as the docs say (the close cannot throw away bytes that come after it), and
/// never our `close_notify` after part of the reply.
#[tokio::test]
async fn bytes_the_peer_sends_after_its_close_notify_once_our_close_began_reset_it() {
    for graceful in [false, true] {
        let selector = SelectorManager::new();
        let ca = TestCa::new("late bytes after close_notify");
        let (client, mut tcp, mut conn) =
            hand_server(&selector, &ca, rustls_localhost_server(&ca), Some(4096)).await;
        let mut connection = client.connection().unwrap();
        std::io::Write::write_all(&mut conn.writer(), b"hello\n").unwrap();
        conn.send_close_notify();
        tcp.write_all(&records(&mut conn)).await.unwrap();
        let line = within(connection.input.read_line(64, LineEnding::Default)).await;
        assert_eq!(line.unwrap().as_deref(), Some("hello"));
        let end = within(connection.input.read_line(64, LineEnding::Default)).await;
        assert_eq!(end.unwrap(), None, "the server's close_notify");
        within(connection.output.write_fully(&vec![b'r'; REPLY]))
            .await
            .unwrap();
        let closing = if graceful {
            Some(tokio::spawn(async move {
                connection.close_gracefully(Duration::from_secs(5)).await
            }))
        } else {
            connection.socket.close();
            drop(connection);
            None
        };
        // The close went as far as it goes without the server: a `close` at once, a
        // `close_gracefully` through its flush and half-close (the socket then closes itself).
        tokio::time::sleep(Duration::from_millis(100)).await;
        tcp.write_all(b"bytes after close_notify").await.unwrap();
        let (ended, received) = read_session_to_the_end(&mut tcp, &mut conn).await;
        assert!(
            ended != "close_notify" || received == REPLY,
            "graceful: {graceful}: our close_notify after {received} of the {REPLY} bytes"
        );
        assert_eq!(
            ended, "ConnectionReset",
            "graceful: {graceful}: {received} bytes, then {ended} (the docs say: a reset)"
        );
        if let Some(closing) = closing {
            let _ = within(closing).await;
        }
        selector.close();
    }
}
