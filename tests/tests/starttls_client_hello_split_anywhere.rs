//! STARTTLS where the ClientHello is split between the plain-text phase and the handshake at
//! every byte: the client sends `STARTTLS` and the first `k` bytes of its ClientHello in one
//! write (they land in the connection's read channel with the command), waits for the
//! server's go-ahead, then sends the rest (which the handshake reads from the socket). For every
//! `k`, from none of the ClientHello to all of it, the bytes the channel held and those that
//! came later make one ClientHello, in order: the handshake succeeds and the session carries
//! data both ways. (The other files send the ClientHello whole, with the command or after it.)

use std::io::{Read as _, Write as _};
use std::sync::Arc;

use net_io::LineEnding;
use net_sockets::SelectorManager;
use net_tests::loopback::tcp_listener;
use net_tests::pki::TestCa;
use net_tests::tls::{localhost, records, rustls_client};
use net_tests::within;
use net_tls::TlsExt;
use net_tls::rustls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Runs the client's side of the handshake by hand over `tcp`, then reads one line of data.
async fn finish_handshake_and_read_line(
    tcp: &mut TcpStream,
    conn: &mut rustls::ClientConnection,
) -> String {
    let mut buf = vec![0u8; 16 * 1024];
    let mut line = Vec::new();
    while !line.ends_with(b"\n") {
        let out = records(conn);
        if !out.is_empty() {
            tcp.write_all(&out).await.unwrap();
        }
        if !conn.is_handshaking() {
            let mut plain = [0u8; 256];
            match conn.reader().read(&mut plain) {
                Ok(n) => {
                    line.extend_from_slice(&plain[..n]);
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("reading plaintext: {e}"),
            }
        }
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0, "the server ended the stream after {line:?}");
        conn.read_tls(&mut &buf[..n]).unwrap();
        conn.process_new_packets().expect("the server's records");
    }
    String::from_utf8(line).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hello_split_at_any_byte_between_the_command_and_the_socket_is_whole() {
    let selector = SelectorManager::new();
    let ca = Arc::new(TestCa::new("split hello ca"));
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = tcp_listener(&selector).await;
    let port = listener.port().unwrap();
    let hello_len = {
        let mut conn = rustls::ClientConnection::new(rustls_client(&ca), localhost()).unwrap();
        records(&mut conn).len()
    };
    assert!(hello_len > 100, "a ClientHello of {hello_len} bytes");
    for k in 0..=hello_len {
        let (accepted, tcp) = within(async {
            tokio::join!(listener.accept(), TcpStream::connect(("127.0.0.1", port)))
        })
        .await;
        let mut tcp = tcp.unwrap();
        let ca = Arc::clone(&ca);
        let client = tokio::spawn(async move {
            let mut conn = rustls::ClientConnection::new(rustls_client(&ca), localhost()).unwrap();
            let hello = records(&mut conn);
            let mut first = b"STARTTLS\r\n".to_vec();
            first.extend_from_slice(&hello[..k.min(hello.len())]);
            tcp.write_all(&first).await.unwrap();
            let mut go = [0u8; 8];
            tcp.read_exact(&mut go).await.unwrap();
            assert_eq!(&go, b"220 go\r\n");
            tcp.write_all(&hello[k.min(hello.len())..]).await.unwrap();
            let line = finish_handshake_and_read_line(&mut tcp, &mut conn).await;
            conn.writer().write_all(b"bye\n").unwrap();
            tcp.write_all(&records(&mut conn)).await.unwrap();
            (line, tcp, conn)
        });
        let mut plain = accepted.unwrap().connection().unwrap();
        let line = within(plain.input.read_line(64, LineEnding::Default)).await;
        assert_eq!(line.unwrap().as_deref(), Some("STARTTLS"), "k {k}");
        plain.output.write_string_utf8("220 go\r\n").await.unwrap();
        let tls = within(plain.tls_server(&config)).await;
        let tls = tls.unwrap_or_else(|e| panic!("k {k}: {e:?}"));
        let mut secure = tls.connection().unwrap();
        secure.output.write_string_utf8("hello\n").await.unwrap();
        secure.output.flush().await.unwrap();
        let (line, _tcp, _conn) = within(client).await.unwrap();
        assert_eq!(line, "hello\n", "k {k}");
        let answer = within(secure.input.read_line(64, LineEnding::Default)).await;
        assert_eq!(answer.unwrap().as_deref(), Some("bye"), "k {k}");
        secure.socket.close();
    }
    selector.close();
}
