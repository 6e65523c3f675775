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
use net_sockets::{SelectorManager, a_socket};
use net_tests::pki::TestCa;
use net_tests::tls::rustls_server;
use net_tests::within;
use net_tls::rustls::ServerConnection;
use net_tls::{TlsExt, TlsSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

/// Our reply: more than the kernel sends to a peer that reads nothing.
const REPLY: usize = 512 * 1024;

/// The records `conn` has queued, taken out of it.
fn server_records(conn: &mut ServerConnection) -> Vec<u8> {
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("writing to a Vec");
    }
    out
}

/// Our TLS client connected to a rustls server driven by hand (TLS 1.3, past the handshake),
/// whose socket has a receive buffer of 4 KiB: (our client, the server's raw stream, its
/// session).
async fn hand_server(
    selector: &SelectorManager,
    ca: &TestCa,
) -> (TlsSocket, tokio::net::TcpStream, ServerConnection) {
    let leaf = ca.server(&["localhost"]);
    let acceptor = TlsAcceptor::from(rustls_server(&leaf));
    let listening = tokio::net::TcpSocket::new_v4().unwrap();
    listening.set_recv_buffer_size(4096).unwrap();
    listening.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let port = listening.local_addr().unwrap().port();
    let listener = listening.listen(4).unwrap();
    let config = ca.client_config().server_name("localhost").build().unwrap();
    let (accepted, client) = within(async {
        tokio::join!(
            async {
                let (tcp, _) = listener.accept().await.expect("accept");
                acceptor.accept(tcp).await
            },
            async {
                a_socket(selector)
                    .tcp()
                    .connect(("127.0.0.1", port))
                    .await
                    .expect("connect")
                    .tls(config)
                    .await
            }
        )
    })
    .await;
    let (tcp, conn) = accepted.expect("the server's handshake").into_inner();
    (client.expect("our client's handshake"), tcp, conn)
}

/// Reads what our client sends until the end: (how it ended, plaintext bytes received).
async fn read_to_the_end(
    tcp: &mut tokio::net::TcpStream,
    conn: &mut ServerConnection,
) -> (String, usize) {
    let mut received = 0;
    let mut buf = vec![0u8; 64 * 1024];
    within(async {
        loop {
            let n = match tcp.read(&mut buf).await {
                Ok(0) => return ("truncated".to_owned(), received),
                Ok(n) => n,
                Err(e) => return (format!("{:?}", e.kind()), received),
            };
            let mut slice = &buf[..n];
            while !slice.is_empty() {
                conn.read_tls(&mut slice).unwrap();
                let state = conn.process_new_packets().unwrap();
                let mut plain = vec![0u8; state.plaintext_bytes_to_read()];
                std::io::Read::read_exact(&mut conn.reader(), &mut plain).unwrap();
                received += plain.len();
                if state.peer_has_closed() {
                    return ("close_notify".to_owned(), received);
                }
            }
        }
    })
    .await
}

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
        let (client, mut tcp, mut conn) = hand_server(&selector, &ca).await;
        let mut connection = client.connection().unwrap();
        std::io::Write::write_all(&mut conn.writer(), b"hello\n").unwrap();
        conn.send_close_notify();
        tcp.write_all(&server_records(&mut conn)).await.unwrap();
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
        let (ended, received) = read_to_the_end(&mut tcp, &mut conn).await;
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
