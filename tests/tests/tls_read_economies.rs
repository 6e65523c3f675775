//! Guards of the TLS read path's two economies (a read asks rustls for a held-back KeyUpdate
//! reply only after input came; a read that has plaintext does not read on once the socket is
//! drained), at the edges where they could go wrong:
//!
//! - a KeyUpdate request is answered by a server that only reads, whether it came alone while
//!   the read waited, with the client's Finished (our server's handshake took it in), or in
//!   the same segment as data a read returns (the server sends no session tickets in the last
//!   two, so any byte it sends is the reply);
//! - the last line and `close_notify`, or the last line and the FIN, in one segment: the line,
//!   then the clean end (or the truncation);
//! - a read that returned early (the socket drained) leaves the next read registered: input
//!   that comes after wakes it, on a current-thread and on a multi-thread runtime.

use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use net_io::{ByteReadChannel, LineEnding};
use net_sockets::{SelectorManager, ServerSocket};
use net_tests::loopback::tcp_listener;
use net_tests::pki::TestCa;
use net_tests::tls::{is_truncated, localhost, manual_pair, records, rustls_client, rustls_server};
use net_tests::within;
use net_tls::{TlsExt, TlsServerConfig, TlsSocket, rustls};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

const LIMIT: usize = 64 * 1024;

/// A TLS 1.3 server configuration that sends no session tickets: after the handshake, our
/// server sends nothing of its own but a KeyUpdate reply.
fn no_tickets(ca: &TestCa) -> TlsServerConfig {
    let mut config = (*rustls_server(&ca.server(&["localhost"]))).clone();
    config.send_tls13_tickets = 0;
    TlsServerConfig::from_rustls(Arc::new(config))
}

/// A test's two ends: our server's TLS socket and a rustls client session on a raw TCP stream,
/// past the handshake (with session tickets or without: see [`no_tickets`]), with what must
/// outlive them (the selector and the listener).
async fn ends(
    name: &str,
    tickets: bool,
) -> (
    (SelectorManager, ServerSocket),
    TlsSocket,
    TcpStream,
    rustls::ClientConnection,
) {
    let selector = SelectorManager::new();
    let ca = TestCa::new(name);
    let config = if tickets {
        ca.server(&["localhost"]).server_config().build().unwrap()
    } else {
        no_tickets(&ca)
    };
    let listener = tcp_listener(&selector).await;
    let (server, tcp, conn) = manual_pair(&listener, &ca, &config).await;
    ((selector, listener), server, tcp, conn)
}

/// Sends `plaintext` from the client: rustls makes its records, the raw socket takes them.
async fn send(conn: &mut rustls::ClientConnection, tcp: &mut TcpStream, plaintext: &[u8]) {
    conn.writer().write_all(plaintext).unwrap();
    tcp.write_all(&records(conn)).await.unwrap();
}

/// Our server's next line (within the test's time limit).
async fn next_line(input: &mut ByteReadChannel) -> net_io::Result<Option<String>> {
    within(input.read_line(LIMIT, LineEnding::Default)).await
}

/// Takes the bytes `tcp` holds into `conn`, processing them (a decryption failure panics).
fn take_in(conn: &mut rustls::ClientConnection, bytes: &[u8]) {
    let mut slice = bytes;
    while !slice.is_empty() {
        conn.read_tls(&mut slice).expect("read_tls");
        conn.process_new_packets().expect("the server's records");
    }
}

/// Waits (up to 5 s) until the raw socket brings some bytes, and takes them into `conn`; how
/// many (0 when none came).
async fn take_some(tcp: &TcpStream, conn: &mut rustls::ClientConnection) -> usize {
    let started = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tcp.try_read(&mut buf) {
            Ok(0) => return 0,
            Ok(n) => {
                take_in(conn, &buf[..n]);
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

/// Our server, accepted with `config`, and a rustls client driven by hand through its side of
/// the handshake until it has taken in the server's Finished: the client's Finished is still
/// queued in `conn`, unsent.
async fn handshake_but_the_clients_finished(
    listener: &ServerSocket,
    ca: &TestCa,
    config: &TlsServerConfig,
) -> (
    impl std::future::Future<Output = TlsSocket>,
    TcpStream,
    rustls::ClientConnection,
) {
    let port = listener.port().expect("a TCP listener");
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let accepted = listener.accept().await.unwrap();
    let config = config.clone();
    let server = tokio::spawn(async move { accepted.tls_server(&config).await.unwrap() });
    let mut conn = rustls::ClientConnection::new(rustls_client(ca), localhost()).unwrap();
    let mut tcp = tcp;
    tcp.write_all(&records(&mut conn)).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    while conn.is_handshaking() {
        let n = within(tcp.read(&mut buf)).await.unwrap();
        assert!(n > 0, "the server ended the handshake");
        take_in(&mut conn, &buf[..n]);
    }
    (async { within(server).await.unwrap() }, tcp, conn)
}

/// The client's Finished and a KeyUpdate request leave in one segment: our server's handshake
/// takes both in, and rustls holds the reply back. The server then only reads (its read
/// waits): the reply must leave all the same, and the client's next line, under its new keys,
/// is read.
#[tokio::test]
async fn a_key_update_that_came_with_the_clients_finished_is_answered_by_a_server_that_only_reads()
{
    let selector = SelectorManager::new();
    let ca = TestCa::new("key update in the handshake");
    let config = no_tickets(&ca);
    let listener = tcp_listener(&selector).await;
    let (server, mut tcp, mut conn) =
        handshake_but_the_clients_finished(&listener, &ca, &config).await;
    conn.refresh_traffic_keys().unwrap();
    tcp.write_all(&records(&mut conn)).await.unwrap();
    let mut server = server.await;
    let mut input = server.open_read_channel().unwrap();
    let reader = tokio::spawn(async move {
        let line = input.read_line(LIMIT, LineEnding::Default).await;
        (input, line.map_err(|e| e.to_string()))
    });
    assert!(
        take_some(&tcp, &mut conn).await > 0,
        "our server, which only reads, never answered the KeyUpdate its handshake took in"
    );
    assert!(!reader.is_finished(), "the read still waits for a line");
    send(&mut conn, &mut tcp, b"after\n").await;
    let (_input, line) = within(reader).await.unwrap();
    assert_eq!(line.unwrap().as_deref(), Some("after"));
    server.close();
}

/// A line and a KeyUpdate request in one segment: the read that returns the line took the
/// request in too (and, the socket drained, does not read on); the server, which then only
/// waits for the next line, still answers it.
#[tokio::test]
async fn a_key_update_that_came_with_the_data_a_read_returns_is_answered() {
    let (_keep, mut server, mut tcp, mut conn) = ends("key update with data", false).await;
    let mut input = server.open_read_channel().unwrap();
    conn.writer().write_all(b"one\n").unwrap();
    conn.refresh_traffic_keys().unwrap();
    tcp.write_all(&records(&mut conn)).await.unwrap();
    let line = next_line(&mut input).await;
    assert_eq!(line.unwrap().as_deref(), Some("one"));
    let reader = tokio::spawn(async move {
        let line = input.read_line(LIMIT, LineEnding::Default).await;
        (input, line.map_err(|e| e.to_string()))
    });
    assert!(
        take_some(&tcp, &mut conn).await > 0,
        "our server, which only reads, never answered the KeyUpdate that came with its data"
    );
    send(&mut conn, &mut tcp, b"two\n").await;
    let (_input, line) = within(reader).await.unwrap();
    assert_eq!(line.unwrap().as_deref(), Some("two"));
    server.close();
}

/// The last line and `close_notify` in one segment: the line, then the clean end.
async fn last_line_and_close_notify_in_one_segment() {
    let (_keep, mut server, mut tcp, mut conn) = ends("last line and close_notify", true).await;
    let mut input = server.open_read_channel().unwrap();
    send(&mut conn, &mut tcp, b"first\n").await;
    let line = next_line(&mut input).await;
    assert_eq!(line.unwrap().as_deref(), Some("first"));
    conn.writer().write_all(b"last\n").unwrap();
    conn.send_close_notify();
    tcp.write_all(&records(&mut conn)).await.unwrap();
    let line = next_line(&mut input).await;
    assert_eq!(line.unwrap().as_deref(), Some("last"));
    let end = next_line(&mut input).await;
    assert_eq!(end.unwrap(), None, "the clean end after the last line");
    server.close();
}

#[tokio::test]
async fn the_last_line_and_close_notify_in_one_segment_give_the_line_then_the_end() {
    last_line_and_close_notify_in_one_segment().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_line_and_close_notify_in_one_segment_give_the_line_then_the_end_multi_thread() {
    last_line_and_close_notify_in_one_segment().await;
}

/// The last line, then at once the FIN without `close_notify`: the line, then the truncation.
#[tokio::test]
async fn the_last_line_then_a_fin_give_the_line_then_the_truncation() {
    let (_keep, mut server, mut tcp, mut conn) = ends("last line and fin", true).await;
    let mut input = server.open_read_channel().unwrap();
    send(&mut conn, &mut tcp, b"last\n").await;
    tcp.shutdown().await.unwrap();
    let line = next_line(&mut input).await;
    assert_eq!(line.unwrap().as_deref(), Some("last"));
    let end = next_line(&mut input).await;
    let e = end.expect_err("a truncation, not a clean end");
    assert!(is_truncated(&e), "{e:?}");
    server.close();
}

/// A waker that tells a `Notify` (which keeps the permit when nobody waits yet).
#[derive(Default)]
struct Flag(Notify);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.notify_one();
    }
}

/// A read of the TLS stream that returned what one segment brought (the socket drained: it did
/// not read on), then a poll that waits: input that comes after wakes that poll, which then
/// returns it.
async fn a_wait_after_an_early_return_is_woken() {
    let (_keep, server, mut tcp, mut conn) = ends("wake-up after an early return", true).await;
    let mut stream = server.into_stream().unwrap();
    let mut buf = [0u8; 4096];
    for round in 0..20u8 {
        send(&mut conn, &mut tcp, &[b'a' + round]).await;
        let n = within(stream.read(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], &[b'a' + round], "round {round}");

        let flag = Arc::new(Flag::default());
        let waker = Waker::from(Arc::clone(&flag));
        let mut cx = Context::from_waker(&waker);
        let mut read = ReadBuf::new(&mut buf);
        let polled = Pin::new(&mut stream).poll_read(&mut cx, &mut read);
        assert!(polled.is_pending(), "round {round}: {polled:?}");
        send(&mut conn, &mut tcp, &[b'A' + round]).await;
        within(flag.0.notified()).await;
        // Woken: the input is there (a poll that still finds nothing would be a spurious
        // wake-up; poll until it comes, each time woken again).
        loop {
            let mut read = ReadBuf::new(&mut buf);
            match Pin::new(&mut stream).poll_read(&mut cx, &mut read) {
                Poll::Ready(result) => {
                    result.unwrap();
                    assert_eq!(read.filled(), &[b'A' + round], "round {round}");
                    break;
                }
                Poll::Pending => within(flag.0.notified()).await,
            }
        }
    }
    drop(stream);
}

#[tokio::test]
async fn a_wait_after_a_read_that_returned_early_is_woken_by_later_input() {
    a_wait_after_an_early_return_is_woken().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_after_a_read_that_returned_early_is_woken_by_later_input_multi_thread() {
    a_wait_after_an_early_return_is_woken().await;
}

/// `TlsSocket`'s docs: "A connection that only reads still answers what the session owes the
/// peer: a KeyUpdate reply". Here the peer's KeyUpdate request comes alone (no application data
/// with it) while our server's read waits: the poll that takes it in returns `Pending`, and
/// still sends the reply; the peer's next line, under its new keys, is read.
#[tokio::test]
async fn a_key_update_that_comes_alone_to_a_waiting_read_is_answered() {
    let (_keep, mut server, mut tcp, mut conn) = ends("key update alone", true).await;
    let mut input = server.open_read_channel().unwrap();

    send(&mut conn, &mut tcp, b"before\n").await;
    let line = next_line(&mut input).await;
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

    send(&mut conn, &mut tcp, b"after\n").await;
    let (_input, line) = within(reader).await.unwrap();
    assert_eq!(line.unwrap().as_deref(), Some("after"));
    server.close();
}
