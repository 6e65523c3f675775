//! How a TLS stream's shutdown ends a connection: a shutdown whose own flush of `close_notify`
//! and the data before it meets `socket_timeout`, and what a retry of it, a close, or the peer
//! sees then; a half-close after a read reported the peer's fatal alert; a writing-only server
//! asked to update its keys.

use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use net_sockets::SelectorManager;
use net_tests::pki::TestCa;
use net_tests::tls::{localhost, rustls_client};
use net_tests::within;
use net_tls::TlsExt;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;

/// The listener's `socket_timeout`.
const TIMEOUT: Duration = Duration::from_secs(1);

/// The peer's reader: every byte until a clean end, or the error that ended it.
type Reader = tokio::task::JoinHandle<std::io::Result<Vec<u8>>>;

/// A server `TlsStream` with `socket_timeout` 1 s and small buffers, whose writes all went
/// through (the session took every byte) though the peer reads nothing, so that the session
/// still holds records the socket could not take; the bytes written; and the peer (a
/// tokio-rustls client), which reads to its end once `go` is sent.
async fn stalled_after_accepted_writes(
    selector: &SelectorManager,
) -> (
    net_tls::TlsStream,
    tokio::sync::oneshot::Sender<()>,
    Reader,
    Vec<u8>,
) {
    let ca = TestCa::new("tls ends ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = net_tests::loopback::tcp_listener_with(selector, |b| {
        b.socket_timeout(TIMEOUT).send_buffer_size(16 * 1024)
    })
    .await;
    let port = listener.port().unwrap();
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(16 * 1024).unwrap();
    let (accepted, tcp) = within(async {
        tokio::join!(
            listener.accept(),
            tcp.connect(([127, 0, 0, 1], port).into())
        )
    })
    .await;
    let connector = TlsConnector::from(rustls_client(&ca));
    let (server, client) = within(async {
        tokio::join!(
            accepted.unwrap().tls_server(&config),
            connector.connect(localhost(), tcp.unwrap())
        )
    })
    .await;
    let mut stream = server.unwrap().into_stream().unwrap();
    let mut client = client.unwrap();
    within(stream.flush()).await.unwrap();
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        let _ = wait.await;
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.map(|_| received)
    });
    // Writes polled once each, until six in a row, 30 ms apart, cannot go on (the socket is
    // full, not just waiting for the peer's acknowledgements): each that returned took its
    // bytes (the session holds what the socket did not take); one that is pending took none.
    // Well within `socket_timeout`, so that no write times out.
    let chunk = net_tests::payload(16 * 1024);
    let mut sent = Vec::new();
    let mut pending = 0;
    for _ in 0..1000 {
        let polled =
            std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut stream).poll_write(cx, &chunk)))
                .await;
        match polled {
            Poll::Ready(Ok(n)) => {
                sent.extend_from_slice(&chunk[..n]);
                pending = 0;
            }
            Poll::Ready(Err(e)) => panic!("a write failed: {e:?}"),
            Poll::Pending => {
                pending += 1;
                if pending == 6 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
    }
    assert!(!sent.is_empty(), "no write went through");
    (stream, go, reader, sent)
}

/// Every write of a `TlsStream` went through (no write or flush timed out or failed); the
/// peer reads nothing for a while, so the shutdown, which must first send what the session
/// holds, then `close_notify`, meets `socket_timeout` and fails with `TimedOut`. That is a flush
/// that timed out, which takes nothing and loses nothing: the session still holds every record
/// (`TlsWrite`: "a timeout does not fail the session for good ... a flush does"), and the
/// stream's docs say that a shutdown after a timeout, retried, makes it good. Once the peer
/// reads again, the retried shutdown must succeed and the peer read every byte, then a clean
/// end — as it does when an earlier write had timed out instead (see
/// `a_shutdown_that_timed_out_after_a_timed_out_write_is_retried`). It failed with
/// `BrokenPipe` ("an earlier write failed"), no write having failed, and the peer's read
/// ended with `ConnectionReset` though nothing was lost: a shutdown's timeout failed the session
/// for good, where a flush's or a write's does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_stream_shutdown_that_timed_out_with_every_write_accepted_is_retried() {
    let selector = SelectorManager::new();
    let (mut stream, go, reader, sent) = stalled_after_accepted_writes(&selector).await;
    let shut = within(stream.shutdown()).await;
    assert_eq!(
        shut.as_ref().map_err(std::io::Error::kind),
        Err(std::io::ErrorKind::TimedOut),
        "the first shutdown, the peer reading nothing: {shut:?}"
    );
    go.send(()).unwrap();
    let retried = within(stream.shutdown()).await;
    drop(stream);
    let received = within(reader).await.unwrap();
    assert!(
        retried.is_ok(),
        "the retried shutdown failed: {retried:?}; the peer got {:?}",
        received.as_ref().map(Vec::len)
    );
    match received {
        Ok(received) => assert!(
            received == sent,
            "{} bytes received of {}",
            received.len(),
            sent.len()
        ),
        Err(e) => panic!("every byte, then a clean end, expected: {e:?}"),
    }
}

/// How a writing-only server ends after the peer asked it to update its keys.
#[derive(Clone, Copy, Debug)]
enum End {
    /// `flush_and_close` on the write channel (a half-close).
    FlushAndClose,
    /// The socket's `close`.
    Close,
}

/// A TLS 1.3 server that only writes (it never reads) is asked by its client to update its
/// keys (a KeyUpdate with `update_requested`), then writes a line and ends, by `flush_and_close`
/// or by `close`. The end takes in what the socket holds (so that the close is no reset), the
/// KeyUpdate with it: rustls then encrypts with new keys at once, and holds its own KeyUpdate,
/// which tells the peer so, until the next record it queues. `close_notify` must not be sent
/// under keys the peer was never told of: the client reads the line, then a clean end. (This
/// holds: rustls queues the held KeyUpdate before any record, `close_notify` included. Pinned
/// here because the end's taking in of the KeyUpdate is ours.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writing_only_server_asked_to_update_its_keys_still_ends_with_a_clean_close_notify() {
    use net_tests::tls::{manual_pair, records};

    let selector = SelectorManager::new();
    let ca = TestCa::new("tls ends key update ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = net_tests::loopback::tcp_listener(&selector).await;
    for end in [End::FlushAndClose, End::Close] {
        let (mut server, mut tcp, mut conn) = manual_pair(&listener, &ca, &config).await;
        let mut output = server.open_write_channel(false).unwrap();
        // The client asks for a key update and says nothing else.
        conn.refresh_traffic_keys().unwrap();
        tcp.write_all(&records(&mut conn)).await.unwrap();
        // Bounded guard: the KeyUpdate is in the server's socket (peeked, not read).
        let mut arrived = false;
        for _ in 0..500 {
            let peeked = server
                .with_sock_ref(|s| {
                    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1];
                    match s.peek(&mut buf) {
                        Ok(n) => Ok(n),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
                        Err(e) => Err(e),
                    }
                })
                .unwrap();
            if peeked > 0 {
                arrived = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(
            arrived,
            "{end:?}: the KeyUpdate never reached the server's socket"
        );
        output.write_string_utf8("the answer\n").await.unwrap();
        match end {
            End::FlushAndClose => within(output.flush_and_close()).await.unwrap(),
            End::Close => {
                within(output.flush()).await.unwrap();
                server.close();
            }
        }
        // The client reads everything to the end.
        let read = within(async {
            let mut plaintext = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = tcp.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                let mut slice = &buf[..n];
                while !slice.is_empty() {
                    conn.read_tls(&mut slice)?;
                    let state = conn.process_new_packets().map_err(std::io::Error::other)?;
                    let mut chunk = vec![0u8; state.plaintext_bytes_to_read()];
                    std::io::Read::read_exact(&mut conn.reader(), &mut chunk)?;
                    plaintext.extend_from_slice(&chunk);
                    if state.peer_has_closed() {
                        return Ok(plaintext);
                    }
                }
            }
            Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "FIN without close_notify after {:?}",
                    String::from_utf8_lossy(&plaintext)
                ),
            ))
        })
        .await;
        match read {
            Ok(plaintext) => assert_eq!(plaintext, b"the answer\n", "{end:?}"),
            Err(e) => panic!("{end:?}: the line, then a clean end, expected: {e}"),
        }
        drop(server);
    }
}

/// Waits (bounded) until `socket` holds input, without reading it.
async fn until_input_arrives(socket: &net_tls::TlsSocket) {
    for _ in 0..500 {
        let peeked = socket
            .with_sock_ref(|s| {
                let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1];
                match s.peek(&mut buf) {
                    Ok(n) => Ok(n),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
                    Err(e) => Err(e),
                }
            })
            .unwrap();
        if peeked > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("no input reached the socket");
}

/// How the write side ends after the read reported the peer's fatal alert.
#[derive(Clone, Copy, Debug)]
enum HalfClose {
    /// `flush_and_close` on the write channel.
    Channel,
    /// `shutdown` of a `TlsStream`.
    Stream,
}

/// The peer could not decrypt a record (here, a corrupted one it got): it sends its fatal
/// `bad_record_mac` alert, which ends the session for both sides (RFC 8446 §6.2: "Upon
/// transmission or receipt of a fatal alert message, both parties MUST immediately close the
/// connection"). Our read reports it (`InvalidData`, `AlertReceived`), and a write after it
/// fails with it. The half-close after it must fail too, as it does after a read reported the
/// peer's reset (`flush_and_close_after_a_read_reported_the_reset_fails_with_nothing_buffered`):
/// an `Ok` says the end was made cleanly, which the peer already refused. The write channel's
/// `flush_and_close` fails (its flush asks rustls, which reports the failure), but a
/// `TlsStream`'s `shutdown` returned `Ok`, having sent `close_notify` after the peer's fatal
/// alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_close_after_a_read_reported_the_peers_fatal_alert_fails() {
    use net_tests::tls::{manual_pair, records};

    let selector = SelectorManager::new();
    let ca = TestCa::new("tls ends fatal alert ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = net_tests::loopback::tcp_listener(&selector).await;
    for how in [HalfClose::Channel, HalfClose::Stream] {
        let (server, mut tcp, mut conn) = manual_pair(&listener, &ca, &config).await;
        // The peer gets a record it cannot decrypt, and answers with its fatal alert.
        conn.read_tls(&mut &b"\x17\x03\x03\x00\x20corrupted record, not decryptable"[..])
            .unwrap();
        assert!(conn.process_new_packets().is_err());
        let alert = records(&mut conn);
        assert!(!alert.is_empty(), "the peer's fatal alert");
        tcp.write_all(&alert).await.unwrap();
        until_input_arrives(&server).await;
        let (read, shut) = match how {
            HalfClose::Channel => {
                let mut server = server;
                let mut input = server.open_read_channel().unwrap();
                let mut output = server.open_write_channel(false).unwrap();
                let read = within(input.read_line(1024, net_io::LineEnding::Default)).await;
                let shut = within(output.flush_and_close()).await;
                (
                    read.map(|_| ()).map_err(|e| format!("{e:?}")),
                    shut.map_err(|e| format!("{e:?}")),
                )
            }
            HalfClose::Stream => {
                let mut stream = server.into_stream().unwrap();
                let mut buf = [0u8; 64];
                let read = within(stream.read(&mut buf)).await;
                let shut = within(stream.shutdown()).await;
                (
                    read.map(|_| ()).map_err(|e| format!("{e:?}")),
                    shut.map_err(|e| format!("{e:?}")),
                )
            }
        };
        assert!(
            read.as_ref().is_err_and(|e| e.contains("AlertReceived")),
            "{how:?}: the read reports the peer's alert: {read:?}"
        );
        assert!(
            shut.is_err(),
            "{how:?}: the half-close after the peer's fatal alert reported a clean end"
        );
        drop(tcp);
    }
}

/// The other way on from a shutdown that met `socket_timeout`: no retry, but the socket's
/// `close()`. The session still held records the peer never got, so the close sends no
/// `close_notify`: the peer reads what arrived, then a truncation, never a clean end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_stream_closed_after_its_shutdown_timed_out_is_truncated() {
    let selector = SelectorManager::new();
    let (mut stream, go, reader, sent) = stalled_after_accepted_writes(&selector).await;
    let shut = within(stream.shutdown()).await;
    assert_eq!(
        shut.as_ref().map_err(std::io::Error::kind),
        Err(std::io::ErrorKind::TimedOut),
        "the shutdown, the peer reading nothing: {shut:?}"
    );
    stream.close();
    go.send(()).unwrap();
    let received = within(reader).await.unwrap();
    let e = received.expect_err("a truncation, not a clean end, after the records left behind");
    assert_eq!(
        e.kind(),
        std::io::ErrorKind::UnexpectedEof,
        "{e:?} ({} sent)",
        sent.len()
    );
}
