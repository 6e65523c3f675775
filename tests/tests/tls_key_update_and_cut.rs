//! The TLS data path at two edges: a connection that only reads answers the peer's request to
//! update its keys, and a read after the selector cut the connection returns none of the input
//! the cut took in.

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

/// Takes what the raw socket holds now into `conn`; how many bytes that was.
fn take_in(tcp: &TcpStream, conn: &mut rustls::ClientConnection) -> usize {
    let mut total = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tcp.try_read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => {
                total += n;
                let mut slice = &buf[..n];
                while !slice.is_empty() {
                    conn.read_tls(&mut slice).unwrap();
                    conn.process_new_packets().unwrap();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return total,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Waits (up to 5 s) until the raw socket brings some bytes, and takes them into `conn`; how
/// many.
async fn take_some(tcp: &TcpStream, conn: &mut rustls::ClientConnection) -> usize {
    let started = Instant::now();
    loop {
        let n = take_in(tcp, conn);
        if n > 0 || started.elapsed() > Duration::from_secs(5) {
            return n;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), tcp.readable()).await;
    }
}

/// `TlsSocket`'s docs: "A connection that only reads still answers what the session owes the
/// peer: a KeyUpdate reply". The peer asks for a key update and sends a line under its new
/// keys; our server reads it and goes on only reading: its own KeyUpdate goes out. (Before,
/// rustls held the reply back until our next application data, which a server that only
/// reads never writes.)
#[tokio::test]
async fn a_connection_that_only_reads_answers_a_key_update_request() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("key update");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = tcp_listener(&selector).await;
    let (mut server, tcp, mut conn) = manual_pair(&listener, &ca, &config).await;
    let mut tcp = tcp;
    let mut input = server.open_read_channel().unwrap();

    conn.writer().write_all(b"before\n").unwrap();
    tcp.write_all(&records(&mut conn)).await.unwrap();
    let line = within(input.read_line(LIMIT, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("before"));
    // The session tickets the server sent after the handshake, out of the way: nothing else
    // comes until the key update.
    assert!(take_some(&tcp, &mut conn).await > 0, "the session tickets");

    conn.refresh_traffic_keys().unwrap();
    conn.writer().write_all(b"after\n").unwrap();
    tcp.write_all(&records(&mut conn)).await.unwrap();
    let line = within(input.read_line(LIMIT, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("after"));
    assert!(
        take_some(&tcp, &mut conn).await > 0,
        "our server, which only reads, sent nothing after the peer's KeyUpdate request"
    );
    server.close();
}

/// The selector closes (a cut: no `close_notify`) while the peer's line waits unread in our
/// socket. The cut takes in the session's own messages before it releases the descriptor, and
/// the peer's record with them. A read after the cut fails with the close's error, as on a
/// plain socket (whose kernel input the close throws away) and as after our own `close`,
/// never returning a request the connection can no longer answer. (Before, it returned the
/// line.)
#[tokio::test]
async fn a_read_after_the_selectors_cut_returns_nothing_the_cut_took_in() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("cut takes in");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = tcp_listener(&selector).await;
    let (mut server, mut tcp, mut conn) = manual_pair(&listener, &ca, &config).await;
    let mut input = server.open_read_channel().unwrap();
    conn.writer().write_all(b"first\n").unwrap();
    tcp.write_all(&records(&mut conn)).await.unwrap();
    let line = within(input.read_line(LIMIT, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("first"));
    conn.writer()
        .write_all(b"sent as the selector closed\n")
        .unwrap();
    tcp.write_all(&records(&mut conn)).await.unwrap();
    // Loopback: the record is in our socket once the peer's write returned; a moment more
    // only makes sure (without it, the old code's fault would go unseen, never a false one).
    tokio::time::sleep(Duration::from_millis(100)).await;
    selector.close();
    let read = within(input.read_line(LIMIT, LineEnding::Default)).await;
    assert!(
        matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted),
        "a read after the selector's close: {read:?}"
    );
}

/// A write timeout over TLS (the `socket_timeout` write row of guarantees.md): an auto-flushed
/// write that finds the socket full is usually the final kind (the session took its bytes
/// before its flush waited), but not when the session owes the peer records of its own that
/// wait for the full socket (here the reply to the peer's KeyUpdate, which the reader made):
/// the write then waits before rustls takes any of its bytes, and its timeout is the kind
/// without effect, `is_closed_for_write()` false, which tells a retry loop so. (Without the
/// KeyUpdate, the same write's timeout is final.)
#[tokio::test]
async fn a_tls_auto_flushed_write_behind_an_owed_key_update_reply_times_out_without_effect() {
    use std::io::Write as _;
    use std::time::Duration;

    use net_io::LineEnding;
    use net_tests::pki::TestCa;
    use net_tests::tls::{manual_pair, records};
    use tokio::io::AsyncWriteExt;

    let selector = SelectorManager::new();
    let ca = TestCa::new("key update write timeout");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = net_tests::loopback::tcp_listener_with(&selector, |b| {
        b.socket_timeout(Duration::from_millis(300))
    })
    .await;
    let (mut server, mut tcp, mut conn) = manual_pair(&listener, &ca, &config).await;
    let mut input = server.open_read_channel().unwrap();
    let mut output = server.open_write_channel(true).unwrap();
    conn.writer().write_all(b"before\n").unwrap();
    tcp.write_all(&records(&mut conn)).await.unwrap();
    let line = net_tests::within(input.read_line(1024, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("before"));

    // Fill the socket (the client reads nothing): bytes the session never sees, until it
    // takes no byte more, also after a pause (the kernel moves bytes to the peer meanwhile).
    socket2::SockRef::from(&tcp)
        .set_recv_buffer_size(4096)
        .unwrap();
    let fill = || {
        server
            .with_sock_ref(|s| {
                let mut total = 0usize;
                for size in [64 * 1024, 1024, 1] {
                    let chunk = vec![0u8; size];
                    for _ in 0..4096 {
                        match s.send(&chunk) {
                            Ok(n) => total += n,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e),
                        }
                    }
                }
                Ok(total)
            })
            .unwrap()
    };
    let mut quiet = 0;
    for _ in 0..100 {
        if fill() == 0 {
            quiet += 1;
            if quiet == 3 {
                break;
            }
        } else {
            quiet = 0;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(quiet, 3, "the socket never stayed full");

    // The peer asks for a key update: our reader owes it a reply, which waits for the socket.
    conn.refresh_traffic_keys().unwrap();
    conn.writer().write_all(b"after\n").unwrap();
    tcp.write_all(&records(&mut conn)).await.unwrap();
    let line = net_tests::within(input.read_line(1024, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("after"));

    let e = net_tests::within(output.write_string_utf8("answer\n"))
        .await
        .unwrap_err();
    assert!(matches!(e, net_io::Error::Timeout), "{e:?}");
    assert!(
        !output.is_closed_for_write(),
        "the write, which waited behind the KeyUpdate reply, failed the channel"
    );
    server.close();
}
