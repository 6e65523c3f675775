//! The round-two TLS rules (SPEC §4.1) that concern a connection's quiet side:
//!
//! - after the peer's KeyUpdate, a side that only read still reads, and its later writes work
//!   (both directions: our server and our client each face a tokio-rustls peer), also while
//!   the socket's writer, in another task, waits for a full socket;
//! - a fatal alert we owe the peer (for a corrupted record) is sent although we never write;
//! - a client that only writes ends cleanly though it never read the server's session tickets;
//! - the handshake timer runs on the selector's runtime, whatever executor polls the handshake;
//! - a failed write never ends with `close_notify`: the peer sees truncation;
//! - `socket_timeout` counts from when a read or write starts waiting, not from an earlier one
//!   that returned (TLS polls the socket more than once per read or write), and a write that
//!   times out took none of its bytes: retried, each byte arrives once, and the session ends
//!   with `close_notify` again (as a plain socket's with FIN). A write whose bytes rustls took
//!   succeeds; a socket error after that comes with the next write.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self};
use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_sockets::{SelectorManager, ServerSocket, a_socket};
use net_tests::block_on;
use net_tests::fault::reset_arrived;
use net_tests::loopback::{tcp_listener, tcp_listener_with};
use net_tests::pki::TestCa;
use net_tests::tls::{
    LINE_LIMIT as LIMIT, connect, is_truncated, localhost, rustls_client, rustls_error,
    rustls_io_error, rustls_server,
};
use net_tests::{HANG_LIMIT, within};
use net_tls::rustls::{self, AlertDescription};
use net_tls::{Error, TlsExt, TlsServerConfig, TlsSocket, TlsVersion};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Our server's TLS socket, accepted from `listener`, and a tokio-rustls client that reached it
/// through `port` (the listener's, or a relay's in front of it), both past the handshake.
async fn handshake(
    listener: &ServerSocket,
    port: u16,
    ca: &TestCa,
    config: &TlsServerConfig,
) -> (TlsSocket, tokio_rustls::client::TlsStream<TcpStream>) {
    let tcp = async { TcpStream::connect(("127.0.0.1", port)).await.unwrap() };
    handshake_over(listener, tcp, ca, config).await
}

/// As [`handshake`], the client's TCP connection made by `tcp`.
async fn handshake_over(
    listener: &ServerSocket,
    tcp: impl Future<Output = TcpStream>,
    ca: &TestCa,
    config: &TlsServerConfig,
) -> (TlsSocket, tokio_rustls::client::TlsStream<TcpStream>) {
    let connector = TlsConnector::from(rustls_client(ca));
    let (server, client) = within(async {
        tokio::join!(
            async { listener.accept().await.unwrap().tls_server(config).await },
            async { connector.connect(localhost(), tcp.await).await }
        )
    })
    .await;
    (server.unwrap(), client.unwrap())
}

/// A CA named `name`, a server configuration for `localhost` it signed, and a listener on
/// 127.0.0.1 whose connections have `socket_timeout(timeout)` (and `send_buffer_size`, if
/// given), with its port.
async fn timed_tls_listener(
    selector: &SelectorManager,
    name: &str,
    timeout: Duration,
    send_buffer_size: Option<usize>,
) -> (TestCa, TlsServerConfig, ServerSocket, u16) {
    let ca = TestCa::new(name);
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let mut tcp = a_socket(selector).tcp().socket_timeout(timeout);
    if let Some(size) = send_buffer_size {
        tcp = tcp.send_buffer_size(size);
    }
    let listener = tcp.bind(("127.0.0.1", 0)).await.unwrap();
    let port = listener.port().unwrap();
    (ca, config, listener, port)
}

/// The send buffer of our server's connections and the receive buffer of its client in the
/// tests whose retried write waits for the client's reads under `socket_timeout`: so small
/// that the retry waits for a few KiB of reads. (Linux wakes a waiting writer once a third of
/// its send buffer drained; with the kernel's default buffers, grown to MiBs, a starved client
/// did not read that much within the timeout.)
const SMALL_BUFFER: usize = 4096;

/// Our client, its receive buffer [`SMALL_BUFFER`], connected to 127.0.0.1:`port` and past the
/// handshake, trusting `ca`.
async fn small_window_client(selector: &SelectorManager, port: u16, ca: &TestCa) -> TlsSocket {
    let config = ca.client_config().server_name("localhost").build().unwrap();
    let connecting = async {
        let tcp = a_socket(selector)
            .tcp()
            .receive_buffer_size(SMALL_BUFFER)
            .connect(("127.0.0.1", port))
            .await
            .unwrap();
        tcp.tls(config).await.unwrap()
    };
    within(connecting).await
}

/// Our server only reads while a tokio-rustls client updates its keys (requesting that we
/// update ours): the server reads what the client sends under the new keys, and when it writes
/// at last, its KeyUpdate reply goes first and the client reads the data under the server's new
/// keys.
#[tokio::test]
async fn our_reading_server_follows_the_peers_key_update_and_writes_afterwards() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("key update ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = tcp_listener(&selector).await;
    let port = listener.port().unwrap();
    let (mut server, mut client) = handshake(&listener, port, &ca, &config).await;
    assert_eq!(server.protocol_version(), Some(TlsVersion::Tls13));
    let mut input = server.open_read_channel().unwrap();

    client.write_all(b"before the update\n").await.unwrap();
    client.flush().await.unwrap();
    let line = within(input.read_line(LIMIT, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("before the update"));

    // KeyUpdate (update_requested) goes out with the next record.
    client.get_mut().1.refresh_traffic_keys().unwrap();
    client.write_all(b"after the update\n").await.unwrap();
    client.flush().await.unwrap();
    let line = within(input.read_line(LIMIT, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("after the update"));
    client.write_all(b"still reading\n").await.unwrap();
    client.flush().await.unwrap();
    let line = within(input.read_line(LIMIT, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("still reading"));

    // Only now does our server write: the client can decrypt it, so the server's KeyUpdate
    // reply came first.
    let mut output = server.open_write_channel(true).unwrap();
    output.write_string_utf8("reply\n").await.unwrap();
    let mut client = BufReader::new(client);
    let mut reply = String::new();
    within(client.read_line(&mut reply)).await.unwrap();
    assert_eq!(reply, "reply\n");

    // And both directions go on.
    client.write_all(b"again\n").await.unwrap();
    client.flush().await.unwrap();
    let line = within(input.read_line(LIMIT, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("again"));
    output.flush_and_close().await.unwrap();
    let mut rest = Vec::new();
    within(client.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty(), "a clean end after the reply: {rest:?}");
    server.close();
}

/// The reverse: our client only reads while a tokio-rustls server updates its keys and
/// requests that ours be updated too; our client reads the data under the new keys, and its
/// later writes (preceded by its KeyUpdate reply) are read by the server.
#[tokio::test]
async fn our_reading_client_follows_the_peers_key_update_and_writes_afterwards() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("key update ca");
    let acceptor = TlsAcceptor::from(rustls_server(&ca.server(&["localhost"])));
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = ca.client_config().server_name("localhost").build().unwrap();
    let (peer, ours) = within(async {
        tokio::join!(
            async {
                let (tcp, _) = listener.accept().await.unwrap();
                acceptor.accept(tcp).await
            },
            async {
                let socket = a_socket(&selector)
                    .tcp()
                    .connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                socket.tls(config).await
            }
        )
    })
    .await;
    let mut peer = peer.unwrap();
    let mut ours = ours.unwrap();
    let mut input = ours.open_read_channel().unwrap();

    peer.write_all(b"one\n").await.unwrap();
    peer.flush().await.unwrap();
    let line = within(input.read_line(LIMIT, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("one"));

    peer.get_mut().1.refresh_traffic_keys().unwrap();
    peer.write_all(b"two\n").await.unwrap();
    peer.flush().await.unwrap();
    let line = within(input.read_line(LIMIT, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("two"));

    let mut output = ours.open_write_channel(true).unwrap();
    output.write_string_utf8("three\n").await.unwrap();
    let mut peer = BufReader::new(peer);
    let mut line = String::new();
    within(peer.read_line(&mut line)).await.unwrap();
    assert_eq!(line, "three\n");
    output.write_string_utf8("four\n").await.unwrap();
    line.clear();
    within(peer.read_line(&mut line)).await.unwrap();
    assert_eq!(line, "four\n");
    output.flush_and_close().await.unwrap();
    line.clear();
    assert_eq!(within(peer.read_line(&mut line)).await.unwrap(), 0);
    ours.close();
}

/// Forwards TLS records from `from` to `to`, whole; once `armed` is set, flips a bit in the
/// last byte (the AEAD tag) of the next application-data record, and tells `corrupted` once that
/// record is written to `to`. Ends at `from`'s end (or on an error) by shutting `to`'s write
/// side.
async fn forward_records(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    armed: Arc<AtomicBool>,
    corrupted: Arc<Notify>,
) {
    const APPLICATION_DATA: u8 = 23;
    let mut header = [0u8; 5];
    let mut body = vec![0u8; 1 << 15];
    // At most one record per pass, and the stream ends when the test ends: bounded by the data.
    while from.read_exact(&mut header).await.is_ok() {
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let Some(body) = body.get_mut(..len) else {
            break;
        };
        if from.read_exact(body).await.is_err() {
            break;
        }
        let corrupt = header[0] == APPLICATION_DATA && armed.swap(false, Ordering::AcqRel);
        match body.last_mut() {
            Some(last) if corrupt => *last ^= 0x01,
            _ => {}
        }
        // One write: on loopback, once it returns, the record is in the receiver's queue.
        let record = [&header[..], body].concat();
        if to.write_all(&record).await.is_err() {
            break;
        }
        if corrupt {
            corrupted.notify_one();
        }
    }
    let _ = to.shutdown().await;
}

/// A man in the middle between a client and our server: it forwards the client's records,
/// corrupting one byte of the first application record after `corrupt` is set (and tells
/// `corrupted` once that record is in our server's socket: on loopback, a write that returned
/// is in the receiver's queue), and the server's bytes while `down` is set (cleared, it soon
/// stops reading them, and our server's socket fills).
struct Relay {
    port: u16,
    corrupt: Arc<AtomicBool>,
    corrupted: Arc<Notify>,
    down: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// A relay for one connection to our server at `server_port`.
    async fn start(server_port: u16) -> Relay {
        let middle = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = middle.local_addr().unwrap().port();
        let corrupt = Arc::new(AtomicBool::new(false));
        let corrupted = Arc::new(Notify::new());
        let down = Arc::new(AtomicBool::new(true));
        let (trigger, forwarding) = (Arc::clone(&corrupt), Arc::clone(&down));
        let told = Arc::clone(&corrupted);
        let task = tokio::spawn(async move {
            let (client_side, _) = middle.accept().await.unwrap();
            let server_side = TcpStream::connect(("127.0.0.1", server_port))
                .await
                .unwrap();
            server_side.set_nodelay(true).unwrap();
            let (from_client, mut to_client) = client_side.into_split();
            let (mut from_server, to_server) = server_side.into_split();
            let downstream = async {
                let mut buf = vec![0u8; 16 * 1024];
                while forwarding.load(Ordering::Acquire) {
                    match from_server.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if to_client.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = to_client.shutdown().await;
            };
            tokio::join!(
                forward_records(from_client, to_server, trigger, told),
                downstream
            );
        });
        Relay {
            port,
            corrupt,
            corrupted,
            down,
            task,
        }
    }
}

/// A client (tokio-rustls) talks to our server through a man in the middle that corrupts one
/// byte of its first application record. Our server, which has no write channel and never
/// writes, gets a typed error (a rustls error inside an `InvalidData` I/O error) and no
/// corrupted plaintext, and the client receives the fatal `bad_record_mac` alert our server
/// owed it.
#[tokio::test]
async fn a_corrupted_record_gets_its_fatal_alert_though_our_server_never_writes() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("bad record ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = tcp_listener(&selector).await;
    let server_port = listener.port().unwrap();

    let relay = Relay::start(server_port).await;
    let (mut server, mut client) = handshake(&listener, relay.port, &ca, &config).await;
    // Our server opens no write channel: anything it sends from here on is owed by reading.
    let mut input = server.open_read_channel().unwrap();

    // The server's handshake is done, so the client's Finished has passed the relay: the next
    // application-data record from the client is its data.
    relay.corrupt.store(true, Ordering::Release);
    client.write_all(b"secret line\n").await.unwrap();
    client.flush().await.unwrap();

    let mut buf = [0u8; 64];
    let e = within(input.read_available(&mut buf)).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e:?}");
    assert!(
        matches!(rustls_error(&e), Some(rustls::Error::DecryptError)),
        "{e:?}"
    );
    // Nothing of the corrupted record is ever delivered.
    let again = within(input.read_available(&mut buf)).await.unwrap_err();
    assert!(matches!(&again, net_io::Error::Io(_)), "{again:?}");
    assert_eq!(again.kind(), std::io::ErrorKind::InvalidData, "{again:?}");
    assert!(
        matches!(rustls_error(&again), Some(rustls::Error::DecryptError)),
        "{again:?}"
    );

    let mut received = Vec::new();
    let e = within(client.read_to_end(&mut received)).await.unwrap_err();
    assert!(
        matches!(
            rustls_io_error(&e),
            Some(rustls::Error::AlertReceived(AlertDescription::BadRecordMac))
        ),
        "{e:?}"
    );
    assert!(received.is_empty(), "{received:?}");
    server.close();
    drop(client);
    within(relay.task).await.unwrap();
}

/// Through the tokio view (`into_stream`) too, a read that failed on a corrupted record fails
/// again, at once and with the same rustls error, while the peer keeps its connection open.
/// (Before, the next read waited for the peer's close or `socket_timeout`: rustls does not
/// report its stored error again, and the read channel, which remembers it, was not there.)
#[tokio::test]
async fn a_corrupted_record_fails_every_later_read_of_the_stream_view() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("bad record stream ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = tcp_listener(&selector).await;
    let relay = Relay::start(listener.port().unwrap()).await;
    let (server, mut client) = handshake(&listener, relay.port, &ca, &config).await;
    let mut stream = server.into_stream().unwrap();

    relay.corrupt.store(true, Ordering::Release);
    client.write_all(b"secret line\n").await.unwrap();
    client.flush().await.unwrap();

    let mut buf = [0u8; 64];
    for read in 0..3 {
        let e = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("read {read} waited instead of failing again"))
            .unwrap_err();
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::InvalidData,
            "read {read}: {e:?}"
        );
        assert!(
            matches!(rustls_io_error(&e), Some(rustls::Error::DecryptError)),
            "read {read}: {e:?}"
        );
    }
    drop(stream);
    drop(client);
    within(relay.task).await.unwrap();
}

/// Waits until `socket`'s receive queue holds a whole TLS record (peeked through a duplicate of
/// its descriptor, not read), for at most [`HANG_LIMIT`].
async fn await_whole_record(socket: &TlsSocket) {
    let peeker = std::net::TcpStream::from(socket.with_sock_ref(|s| s.try_clone()).unwrap());
    let started = Instant::now();
    let mut buf = vec![0u8; 1 << 15];
    loop {
        let peeked = peeker.peek(&mut buf).unwrap_or(0);
        if peeked >= 5 && peeked >= 5 + usize::from(u16::from_be_bytes([buf[3], buf[4]])) {
            return;
        }
        assert!(
            started.elapsed() < HANG_LIMIT,
            "no whole record arrived in {HANG_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A corrupted record that our server's half-close takes in (a shutdown reads what the socket
/// holds, so that the FIN is not answered with a reset) fails the next read at once, with the
/// rustls error, while the peer, which got our fatal alert, keeps its connection open. (Before,
/// rustls kept the error and the read waited for more bytes from the peer: for ever, or until
/// `socket_timeout`.)
#[tokio::test]
async fn a_corrupted_record_taken_in_by_our_half_close_fails_the_next_read_at_once() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("bad record half-close ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = tcp_listener(&selector).await;
    let relay = Relay::start(listener.port().unwrap()).await;
    let (server, mut client) = handshake(&listener, relay.port, &ca, &config).await;
    let mut connection = server.connection().unwrap();

    relay.corrupt.store(true, Ordering::Release);
    client.write_all(b"secret line\n").await.unwrap();
    client.flush().await.unwrap();
    within(relay.corrupted.notified()).await;
    await_whole_record(&connection.socket).await;
    // No read is waiting: the half-close is the first to see the record.
    let _ = within(connection.output.flush_and_close()).await;

    let mut buf = [0u8; 64];
    for read in 0..2 {
        let e = tokio::time::timeout(
            Duration::from_secs(5),
            connection.input.read_available(&mut buf),
        )
        .await
        .unwrap_or_else(|_| panic!("read {read} waited for the peer instead of failing"))
        .unwrap_err();
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::InvalidData,
            "read {read}: {e:?}"
        );
        assert!(
            matches!(rustls_error(&e), Some(rustls::Error::DecryptError)),
            "read {read}: {e:?}"
        );
    }
    connection.socket.close();
    drop(client);
    within(relay.task).await.unwrap();
}

/// The reading task does not take over the wake-up of a writer that waits for a full socket:
/// a corrupted record makes the session owe the peer a fatal alert while our server's socket is
/// full, and the attempt to send it, made by the reading task, must leave the waiting writer's
/// wake-ups alone, so the close that follows the read's error wakes the writer, which fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_record_while_the_writer_waits_leaves_the_writer_its_wake_up() {
    /// More than the socket buffers between our server and the relay hold.
    const FILL: usize = 64 << 20;
    let selector = SelectorManager::new();
    let ca = TestCa::new("waiting writer ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = tcp_listener(&selector).await;
    let relay = Relay::start(listener.port().unwrap()).await;
    let (mut server, mut client) = handshake(&listener, relay.port, &ca, &config).await;
    let mut input = server.open_read_channel().unwrap();
    let mut output = server.open_write_channel(false).unwrap();
    let server = Arc::new(server);

    // Nothing our server writes from here on is read: its writer waits for a full socket, in
    // a task of its own that runs again only when woken.
    relay.down.store(false, Ordering::Release);
    let (waiting, writer_waits) = oneshot::channel();
    let writer = tokio::spawn(async move {
        let big = vec![7u8; FILL];
        let mut writing = pin!(output.write_fully(&big));
        assert!(net_tests::pending_after_one_poll(writing.as_mut()).await);
        let _ = waiting.send(());
        writing.await
    });
    within(writer_waits).await.unwrap();

    let reader = tokio::spawn({
        let server = Arc::clone(&server);
        async move {
            let mut buf = [0u8; 64];
            let read = input.read_available(&mut buf).await;
            server.close();
            read
        }
    });
    relay.corrupt.store(true, Ordering::Release);
    client.write_all(b"secret line\n").await.unwrap();
    client.flush().await.unwrap();
    let e = within(reader).await.unwrap().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e:?}");

    // Woken, the writer fails: with the close, or with the session's failure where it ran
    // between the read's error and the close (the relay's last read of our server's output,
    // made in the same turn as its forward of the corrupted record, lets the socket take more
    // and wakes it then). A writer whose wake-up the reading task took would never end.
    let e = within(writer).await.unwrap().unwrap_err();
    let session_failed = e.kind() == std::io::ErrorKind::InvalidData
        && matches!(rustls_error(&e), Some(rustls::Error::DecryptError));
    let shown = format!("{e:?}");
    assert!(
        session_failed || matches!(net_sockets::Error::from(e), net_sockets::Error::Closed),
        "the writer fails with the close or the session's failure: {shown}"
    );
    drop(client);
    relay.task.abort();
}

/// A connect and a client handshake polled by a plain thread (no tokio runtime) against a
/// server that accepts and stays silent: the handshake timeout, a timer on the selector's own
/// runtime, fires and the handshake fails with `HandshakeTimeout`, without a panic.
#[test]
fn the_handshake_timer_runs_on_the_selectors_runtime() {
    const TIMEOUT: Duration = Duration::from_millis(300);
    let selector = SelectorManager::builder()
        .worker_threads(1)
        .build()
        .unwrap();
    let silent = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = silent.local_addr().unwrap().port();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let holder = thread::spawn(move || {
        let accepted = silent.accept();
        // Hold the connection, silent, until the test is done.
        let _ = finished.recv_timeout(HANG_LIMIT);
        drop(accepted);
    });
    let ca = TestCa::new("silent server ca");
    let config = ca
        .client_config()
        .server_name("localhost")
        .handshake_timeout(TIMEOUT)
        .build()
        .unwrap();

    let polled = thread::spawn(move || {
        let started = Instant::now();
        let result = block_on(async {
            let socket = a_socket(&selector)
                .tcp()
                .connect(("127.0.0.1", port))
                .await?;
            socket.tls(config).await
        });
        (result, started.elapsed(), selector)
    });
    let (result, elapsed, selector) = polled.join().expect("the polling thread panicked");
    let _ = done.send(());
    holder.join().unwrap();
    assert!(
        matches!(result, Err(Error::HandshakeTimeout(limit)) if limit == TIMEOUT),
        "{result:?}"
    );
    assert!(elapsed >= TIMEOUT, "{elapsed:?}");
    assert!(elapsed < TIMEOUT * 10, "{elapsed:?}");
    selector.close();
}

/// Our server's writes to a client that reads nothing time out (`socket_timeout`). The client
/// then reads everything the server's completed writes sent, and only then does the server
/// call `flush_and_close` (which fails) and `close` — at a moment when a `close_notify` could
/// reach the client. The client reading on sees truncation, never a clean end: the bytes of
/// the write that timed out were lost.
///
/// The timeout also governs the server's handshake, which the client must keep going: 1 s, for
/// a loaded machine. (At 300 ms, a starved test saw the server handshake time out.)
#[tokio::test]
async fn a_failed_write_never_ends_with_close_notify() {
    const TIMEOUT: Duration = Duration::from_secs(1);
    const CHUNK: usize = 64 * 1024;
    /// Far more than loopback's socket buffers hold: the writes must stall.
    const MAX_CHUNKS: usize = 1024;
    let selector = SelectorManager::new();
    let (ca, config, listener, port) =
        timed_tls_listener(&selector, "failed write ca", TIMEOUT, None).await;
    let (timed_out, stalled) = tokio::sync::oneshot::channel();
    let (close_now, close) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let mut tls = net_tests::tls::accept(&listener, &config).await;
        // auto_flush: every completed write is with TLS when it returns.
        let mut output = tls.open_write_channel(true).unwrap();
        let chunk = net_tests::payload(CHUNK);
        let mut written = 0usize;
        let mut failure = None;
        for _ in 0..MAX_CHUNKS {
            match output.write_fully(&chunk).await {
                Ok(()) => written += CHUNK,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let _ = timed_out.send((written, failure));
        let _ = within(close).await;
        let closed = output.flush_and_close().await;
        tls.close();
        closed
    });

    let client_config = ca.client_config().server_name("localhost").build().unwrap();
    let mut tls = within(connect(&selector, "127.0.0.1", port, client_config))
        .await
        .unwrap();
    let mut input = tls.open_read_channel().unwrap();
    // Stall, reading nothing, until the server's write has timed out.
    let (written, failure) = within(stalled).await.unwrap();
    let failure = failure.expect("a write timed out");
    assert!(matches!(failure, net_io::Error::Timeout), "{failure:?}");

    let mut buf = vec![0u8; CHUNK];
    let mut received = 0usize;
    let mut close_now = Some(close_now);
    // Each pass reads at least one byte or ends the loop.
    let end = loop {
        match close_now.take() {
            Some(signal) if received >= written => {
                let _ = signal.send(());
            }
            taken => close_now = taken,
        }
        match within(input.read_available(&mut buf)).await {
            Ok(0) => break Ok(()),
            Ok(n) => received += n,
            Err(e) => break Err(e),
        }
    };
    let closed = within(server).await.unwrap();
    assert!(
        matches!(closed, Err(net_io::Error::Timeout)),
        "flush_and_close after a failed write reports the write's error: {closed:?}"
    );
    assert!(received >= written, "{received} of {written} bytes");
    let e = end.expect_err("a truncated stream, not a clean end");
    assert!(is_truncated(&e), "{e:?}");
    tls.close();
}

/// `socket_timeout` on a TLS read counts from when the read starts waiting. Our server is busy
/// for longer than the timeout before each of two reads — after the handshake, and after a
/// line (tokio-rustls polls the socket once more after each record, and that raw read is left
/// waiting) — and each line arrives well within the timeout of its read: the server gets both
/// lines, no `Timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_read_times_out_only_after_waiting_socket_timeout() {
    const TIMEOUT: Duration = Duration::from_millis(1000);
    /// How long the server works between reads: longer than the timeout.
    const BUSY: Duration = Duration::from_millis(1300);
    /// How long after a read starts its line is sent: well within the timeout.
    const INTO_THE_READ: Duration = Duration::from_millis(200);
    const LINES: [&str; 2] = ["first", "second"];
    let selector = SelectorManager::new();
    let (ca, config, listener, port) =
        timed_tls_listener(&selector, "read timer ca", TIMEOUT, None).await;
    let (reading_now, mut reading) = mpsc::unbounded_channel::<()>();
    let server = tokio::spawn(async move {
        let mut tls = net_tests::tls::accept(&listener, &config).await;
        let mut input = tls.open_read_channel().unwrap();
        let mut lines = Vec::new();
        for _ in LINES {
            tokio::time::sleep(BUSY).await;
            let _ = reading_now.send(());
            let started = Instant::now();
            let line = input.read_line(LIMIT, LineEnding::Default).await;
            lines.push((line, started.elapsed()));
        }
        tls.close();
        lines
    });

    let client_config = ca.client_config().server_name("localhost").build().unwrap();
    let mut tls = within(connect(&selector, "127.0.0.1", port, client_config))
        .await
        .unwrap();
    let mut output = tls.open_write_channel(true).unwrap();
    for line in LINES {
        within(reading.recv()).await.unwrap();
        tokio::time::sleep(INTO_THE_READ).await;
        output
            .write_string_utf8(&format!("{line}\n"))
            .await
            .unwrap();
    }
    let lines = within(server).await.unwrap();
    for ((line, waited), expected) in lines.into_iter().zip(LINES) {
        match line {
            Ok(line) => assert_eq!(line.as_deref(), Some(expected)),
            Err(e) => panic!("{expected:?}: {e:?} after waiting {waited:?} (timeout {TIMEOUT:?})"),
        }
    }
    tls.close();
}

/// `len` bytes of the stream the write test sends, from `offset` on (not all equal, so a
/// duplicated or misplaced byte shows).
fn stream_bytes(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len).map(|i| (i % 251) as u8).collect()
}

/// A TLS write that times out took none of its bytes, so retrying it delivers each byte once
/// (SPEC §4.1). Our server fills the socket of a client that reads nothing, is idle for longer
/// than `socket_timeout` (as a server is between answers), then writes on: the writes rustls
/// has room for succeed, and the first that must wait for the socket times out after waiting
/// the timeout. Retried once the client reads, every byte arrives once, in order, and the retry
/// and flush made the timeout good: the close ends the session with `close_notify`.
///
/// The timeout also governs the handshake and the retry, which the client's reads must keep
/// going: 1 s, for a loaded machine, and the buffers are [`SMALL_BUFFER`]. (At 300 ms with the
/// kernel's default buffers, a starved test saw the retry time out.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_write_retried_after_timeout_delivers_each_byte_once() {
    const TIMEOUT: Duration = Duration::from_secs(1);
    /// One write while the socket fills: far more than rustls buffers (64 KiB).
    const FILL: usize = 1 << 20;
    const CHUNK: usize = 16 * 1024;
    let selector = SelectorManager::new();
    let (ca, config, listener, port) =
        timed_tls_listener(&selector, "write retry ca", TIMEOUT, Some(SMALL_BUFFER)).await;
    let (read_now, may_read) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let tls = net_tests::tls::accept(&listener, &config).await;
        let mut stream = tls.into_stream().unwrap();
        let mut sent = 0;
        // A write that takes less than it was given found the socket full.
        loop {
            let n = within(stream.write(&stream_bytes(sent, FILL)))
                .await
                .unwrap();
            sent += n;
            if n < FILL {
                break;
            }
        }
        tokio::time::sleep(TIMEOUT * 2).await;
        let (chunk, failure, waited) = loop {
            let chunk = stream_bytes(sent, CHUNK);
            let started = Instant::now();
            match within(stream.write(&chunk)).await {
                Ok(n) => sent += n,
                Err(e) => break (chunk, e, started.elapsed()),
            }
        };
        let _ = read_now.send(());
        within(stream.write_all(&chunk)).await.unwrap();
        sent += chunk.len();
        within(stream.flush()).await.unwrap();
        // The retry made the timeout good: the close sends close_notify.
        stream.close();
        (sent, failure, waited)
    });

    let mut tls = small_window_client(&selector, port, &ca).await;
    let mut input = tls.open_read_channel().unwrap();
    within(may_read).await.unwrap();
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let end = loop {
        match within(input.read_available(&mut buf)).await {
            Ok(0) => break Ok(()),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) => break Err(e),
        }
    };
    let (sent, failure, waited) = within(server).await.unwrap();
    assert_eq!(failure.kind(), std::io::ErrorKind::TimedOut, "{failure:?}");
    assert_eq!(received.len(), sent, "bytes received, of those written");
    assert!(
        received == stream_bytes(0, sent),
        "the stream differs from what was written"
    );
    assert!(waited >= TIMEOUT, "timed out after waiting {waited:?}");
    end.expect("close_notify after a timeout made good");
    tls.close();
}

/// A TLS write that timed out having taken nothing (neither rustls nor the socket took any of
/// its bytes), then was retried with success, leaves nothing missing, as on a plain socket: a
/// `close()` straight after the retry (no flush; rustls still queues records the socket has
/// not taken) sends those records, then `close_notify`, and the peer reads every byte once,
/// then a clean end. (Before, the timeout failed the session for good: the close sent neither
/// the queued records nor `close_notify`, and the peer saw part of the stream, then
/// `Truncated`.) A timed-out call that is not retried still ends without `close_notify`.
///
/// The timeout also governs the handshake and the retried write, which the client's reads must
/// keep going: 1 s, for a loaded machine, and the buffers are [`SMALL_BUFFER`]. (At 200 ms, a
/// starved test saw the server handshake or the retried write time out; at 1 s with the
/// kernel's default buffers, the retried write.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_close_after_a_timed_out_write_was_retried_ends_with_close_notify() {
    const TIMEOUT: Duration = Duration::from_secs(1);
    const CHUNK: usize = 64 * 1024;
    let selector = SelectorManager::new();
    let (ca, config, listener, port) =
        timed_tls_listener(&selector, "retried close ca", TIMEOUT, Some(SMALL_BUFFER)).await;
    let listener = Arc::new(listener);
    for retried in [true, false] {
        let (read_now, may_read) = oneshot::channel::<()>();
        let server = tokio::spawn({
            let listener = Arc::clone(&listener);
            let config = config.clone();
            async move {
                let mut tls = net_tests::tls::accept(&listener, &config).await;
                let mut output = tls.open_write_channel(false).unwrap();
                let chunk = net_tests::payload(CHUNK);
                let mut expected = Vec::new();
                // The channel's `AsyncWrite` goes straight to TLS with a chunk this large, and
                // reports what it took: the call that times out took nothing.
                let failure = within(async {
                    loop {
                        match output.write(&chunk).await {
                            Ok(n) => expected.extend_from_slice(&chunk[..n]),
                            Err(e) => break e,
                        }
                    }
                })
                .await;
                assert!(!output.is_closed_for_write(), "the call had no effect");
                let _ = read_now.send(());
                if retried {
                    within(output.write_fully(&chunk)).await.unwrap();
                    expected.extend_from_slice(&chunk);
                }
                assert_eq!(output.total_bytes_written(), expected.len() as u64);
                tls.close();
                (failure, expected)
            }
        });

        let mut tls = small_window_client(&selector, port, &ca).await;
        let mut input = tls.open_read_channel().unwrap();
        within(may_read).await.unwrap();
        let mut received = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let end = loop {
            match within(input.read_available(&mut buf)).await {
                Ok(0) => break Ok(()),
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e) => break Err(e),
            }
        };
        let (failure, expected) = within(server).await.unwrap();
        assert_eq!(failure.kind(), std::io::ErrorKind::TimedOut, "{failure:?}");
        if retried {
            end.unwrap_or_else(|e| {
                panic!(
                    "every byte, then close_notify: {e:?} after {} of {} bytes",
                    received.len(),
                    expected.len()
                )
            });
            assert_eq!(received.len(), expected.len(), "each byte once");
            assert!(
                received == expected,
                "the stream differs from what was written"
            );
        } else {
            let e = end.expect_err("a write given up must not end with close_notify");
            assert!(is_truncated(&e), "{e:?}");
        }
        tls.close();
    }
}

/// A TLS write that fails took none of its bytes, also when the socket fails under them: our
/// server's first write after the peer's reset arrived, before any read reported it, is taken
/// by rustls and succeeds (its bytes are as good as sent: a caller that retried a failed call
/// would send them twice); the socket's error comes with the next write, before it takes
/// anything, and with every one after it. (Once a read has reported the reset, a write takes
/// nothing and fails at once, as on a plain socket: `writes_after_a_reset`.)
#[tokio::test]
async fn a_tls_write_whose_bytes_were_taken_succeeds_and_the_next_reports_the_socket_error() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("reset write ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = tcp_listener(&selector).await;
    let port = listener.port().unwrap();
    let (server, client) = handshake(&listener, port, &ca, &config).await;
    let mut server = server.into_stream().unwrap();
    let (tcp, _) = client.into_inner();
    // The reset has arrived once the kernel ended our side of the connection; no read saw it.
    reset_arrived(tcp).await;

    let taken = within(server.write(b"taken by rustls\n")).await;
    assert_eq!(taken.unwrap(), 16);
    for _ in 0..2 {
        let e = within(server.write(b"refused\n")).await.unwrap_err();
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "{e:?}"
        );
    }
    server.close();
}

/// The two channels of one TLS socket share its session, each in a task of its own: our
/// server's writer waits for a full socket (the client reads nothing) while its reader takes a
/// KeyUpdate (update requested) and the line after it. Neither blocks the other: the reader
/// gets the line while the writer still waits, and once the client reads, the writer's bytes
/// — those encrypted before the update, the KeyUpdate reply, those after it — all arrive in
/// order and decrypt, followed by a clean end.
///
/// Our send buffer and the client's receive buffer are 4 KiB, so that a fill of 1 MiB is far
/// more than the socket and rustls hold. (With the kernel's default buffers the fill was
/// 32 MiB, which a starved machine did not make and encrypt within the 20 s hang limit.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_writer_and_a_reader_taking_a_key_update_share_the_session() {
    /// Far more than the small socket buffers and rustls (64 KiB) hold.
    const FILL: usize = 1 << 20;
    let selector = SelectorManager::new();
    let ca = TestCa::new("shared session ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = tcp_listener_with(&selector, |tcp| tcp.send_buffer_size(4096)).await;
    let port = listener.port().unwrap();
    let tcp = async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(([127, 0, 0, 1], port).into()).await.unwrap()
    };
    let (mut server, mut client) = handshake_over(&listener, tcp, &ca, &config).await;
    assert_eq!(server.protocol_version(), Some(TlsVersion::Tls13));
    let mut input = server.open_read_channel().unwrap();
    let mut output = server.open_write_channel(false).unwrap();

    let (waiting, writer_waits) = oneshot::channel();
    let writer = tokio::spawn(async move {
        let big = net_tests::payload(FILL);
        {
            let mut writing = pin!(output.write_fully(&big));
            assert!(net_tests::pending_after_one_poll(writing.as_mut()).await);
            let _ = waiting.send(());
            writing.await.unwrap();
        }
        output.write_string_utf8("after the fill\n").await.unwrap();
        output.flush_and_close().await.unwrap();
    });
    within(writer_waits).await.unwrap();

    client.get_mut().1.refresh_traffic_keys().unwrap();
    client.write_all(b"under new keys\n").await.unwrap();
    client.flush().await.unwrap();
    let line = within(input.read_line(LIMIT, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("under new keys"));
    assert!(!writer.is_finished(), "the writer waits for the client");

    let mut received = Vec::with_capacity(FILL + 64);
    within(client.read_to_end(&mut received)).await.unwrap();
    within(writer).await.unwrap();
    let (data, rest) = received.split_at(FILL.min(received.len()));
    assert!(
        data == net_tests::payload(FILL).as_slice(),
        "the fill arrived changed"
    );
    assert_eq!(rest, b"after the fill\n");
    server.close();
}

/// A TLS 1.3 client that only writes never reads the session tickets the server sends after
/// the handshake; they wait in its socket's receive buffer. Our client writes more than the
/// server has read (the rest waits in the client's send buffer) and ends: with `close`, or with
/// the write channel's `flush_and_close` and then the socket's drop. The server, reading only
/// now, gets every byte and then `close_notify`, a clean end. Before the fix the unread tickets
/// made the kernel answer the close with a reset that threw the queued bytes (and the
/// `close_notify` and FIN after them) away: the server read a part, then `ConnectionReset`.
#[tokio::test]
async fn a_writing_clients_end_is_clean_though_it_never_read_the_session_tickets() {
    /// More than the server's small receive window, less than the client's send buffer.
    const BODY: usize = 256 * 1024;
    let selector = SelectorManager::new();
    let ca = TestCa::new("write-only client ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = a_socket(&selector)
        .tcp()
        .receive_buffer_size(4096)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.port().unwrap();
    let body = net_tests::payload(BODY);
    for by_close in [true, false] {
        let client_config = ca.client_config().server_name("localhost").build().unwrap();
        let connect = async {
            a_socket(&selector)
                .tcp()
                .send_buffer_size(4 << 20)
                .connect(("127.0.0.1", port))
                .await
                .unwrap()
                .tls(client_config)
                .await
                .unwrap()
        };
        // The server's handshake ends once its tickets are sent.
        let (mut server, mut client) =
            within(async { tokio::join!(net_tests::tls::accept(&listener, &config), connect) })
                .await;
        assert_eq!(client.protocol_version(), Some(TlsVersion::Tls13));
        let mut output = client.open_write_channel(false).unwrap();
        within(output.write_fully(&body)).await.unwrap();
        if by_close {
            within(output.flush()).await.unwrap();
            client.close();
        } else {
            within(output.flush_and_close()).await.unwrap();
            drop((output, client));
        }

        let mut input = server.open_read_channel().unwrap();
        let received = within(input.read_remaining(usize::MAX))
            .await
            .unwrap_or_else(|e| {
                panic!("by close: {by_close}: every byte, then close_notify, not {e:?}")
            });
        assert!(received == body, "{} of {BODY} bytes", received.len());
        server.close();
    }
}
