//! The TLS read path asks rustls for the KeyUpdate reply it may hold back only after input came
//! in, not on every poll. A KeyUpdate request that comes alone, while the read waits, must still
//! be answered.

use std::io::Write as _;
use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_sockets::SelectorManager;
use net_tests::loopback::tcp_listener;
use net_tests::pki::TestCa;
use net_tests::tls::{manual_pair, records};
use net_tests::within;
use net_tls::rustls;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const LIMIT: usize = 64 * 1024;

/// Waits (up to 5 s) until the raw socket brings some bytes, and takes them into `conn`; how
/// many.
async fn take_some(tcp: &TcpStream, conn: &mut rustls::ClientConnection) -> usize {
    let started = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tcp.try_read(&mut buf) {
            Ok(0) => return 0,
            Ok(n) => {
                let mut slice = &buf[..n];
                while !slice.is_empty() {
                    conn.read_tls(&mut slice).unwrap();
                    conn.process_new_packets().unwrap();
                }
                return n;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
        if started.elapsed() > Duration::from_secs(5) {
            return 0;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), tcp.readable()).await;
    }
}

/// `TlsSocket`'s docs: "A connection that only reads still answers what the session owes the
/// peer: a KeyUpdate reply". Here the peer's KeyUpdate request comes alone (no application data
/// with it) while our server's read waits: the poll that takes it in returns `Pending`, and
/// still sends the reply; the peer's next line, under its new keys, is read.
#[tokio::test]
async fn a_key_update_that_comes_alone_to_a_waiting_read_is_answered() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("key update alone");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = tcp_listener(&selector).await;
    let (mut server, mut tcp, mut conn) = manual_pair(&listener, &ca, &config).await;
    let mut input = server.open_read_channel().unwrap();

    conn.writer().write_all(b"before\n").unwrap();
    tcp.write_all(&records(&mut conn)).await.unwrap();
    let line = within(input.read_line(LIMIT, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("before"));
    // The session tickets the server sent after the handshake, out of the way: nothing else
    // comes until the key update.
    assert!(take_some(&tcp, &mut conn).await > 0, "the session tickets");

    let reader = tokio::spawn(async move {
        let line = input.read_line(LIMIT, LineEnding::Default).await;
        (input, line.map_err(|e| e.to_string()))
    });
    conn.refresh_traffic_keys().unwrap();
    let key_update = records(&mut conn);
    assert!(!key_update.is_empty(), "the KeyUpdate request");
    tcp.write_all(&key_update).await.unwrap();
    assert!(
        take_some(&tcp, &mut conn).await > 0,
        "our server, whose read waits, sent nothing after the peer's lone KeyUpdate request"
    );
    assert!(!reader.is_finished(), "the read still waits for a line");

    conn.writer().write_all(b"after\n").unwrap();
    tcp.write_all(&records(&mut conn)).await.unwrap();
    let (_input, line) = within(reader).await.unwrap();
    assert_eq!(line.unwrap().as_deref(), Some("after"));
    server.close();
}
