//! A write (or flush) of our TLS socket that waits for the socket to take more, in a task of
//! its own, while a read in another task finds the session failed (a record that cannot be
//! decrypted): the session can send nothing more, and the docs say that a write or flush then
//! fails with the session's error. The waiting one must be woken to fail too, not left waiting
//! for a peer that may never read again (here it reads nothing: without `socket_timeout`, the
//! writer's task and the connection would wait for ever).
//!
//! The peer is a rustls server driven by hand on a raw TCP stream with a small receive buffer,
//! which reads nothing.

use std::time::Duration;

use net_sockets::SelectorManager;
use net_tests::pki::TestCa;
use net_tests::tls::{hand_server, rustls_localhost_server};
use net_tests::tls::{rustls_error, rustls_io_error};
use net_tests::within;
use net_tls::rustls::{self};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// A record that cannot be decrypted: application data of 32 bytes of nothing.
fn bad_record() -> Vec<u8> {
    let mut bad = vec![0x17, 0x03, 0x03, 0x00, 0x20];
    bad.extend([0x55u8; 0x20]);
    bad
}

/// Whether the error of a channel is the session's failure: rustls's `DecryptError`.
fn is_decrypt_error(e: &net_io::Error) -> bool {
    rustls_error(e) == Some(&rustls::Error::DecryptError)
}

/// Whether the error of a stream is the session's failure: `InvalidData`, rustls's
/// `DecryptError`.
fn is_stream_decrypt_error(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::InvalidData
        && rustls_io_error(e) == Some(&rustls::Error::DecryptError)
}

/// An auto-flushed `write_fully` of the write channel waits for the full socket; a read in
/// another task fails on a bad record. The write must fail with the session's error (within
/// 5 s), not wait on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_write_fails_once_a_read_found_the_session_failed() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("write waits");
    let (mut client, mut tcp, _conn) =
        hand_server(&selector, &ca, rustls_localhost_server(&ca), Some(4096)).await;
    let mut input = client.open_read_channel().unwrap();
    let mut output = client.open_write_channel(true).unwrap();
    let writer = tokio::spawn(async move { output.write_fully(&vec![b'w'; 16 << 20]).await });
    // Bounded guard: the write is under way (it cannot end: the server reads nothing).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!writer.is_finished(), "the write waits for the server");
    tcp.write_all(&bad_record()).await.unwrap();
    let read = within(input.read_available(&mut [0u8; 64])).await;
    let e = read.unwrap_err();
    assert!(is_decrypt_error(&e), "the read: {e:?}");
    let written = tokio::time::timeout(Duration::from_secs(5), writer)
        .await
        .expect("the waiting write still waits 5 s after the read found the session failed")
        .unwrap();
    let e = written.unwrap_err();
    assert!(is_decrypt_error(&e), "the write: {e:?}");
    drop(tcp);
    selector.close();
}

/// Writes until the socket and rustls take no more: a write that would wait is not made
/// (polled once, it took nothing). At least one byte is taken.
async fn write_until_full(writing: &mut (impl AsyncWrite + Unpin)) {
    let data = vec![b'w'; 1 << 20];
    let mut accepted = 0;
    for _ in 0..1024 {
        let polled = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::pin::Pin::new(&mut *writing).poll_write(cx, &data))
        })
        .await;
        match polled {
            std::task::Poll::Ready(n) => accepted += n.unwrap(),
            std::task::Poll::Pending => break,
        }
    }
    assert!(accepted > 0);
}

/// The same for a `TlsStream`'s flush, waiting for the socket to take the records a write left
/// queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_flush_fails_once_a_read_found_the_session_failed() {
    use tokio::io::AsyncReadExt as _;
    let selector = SelectorManager::new();
    let ca = TestCa::new("flush waits");
    let (client, mut tcp, _conn) =
        hand_server(&selector, &ca, rustls_localhost_server(&ca), Some(4096)).await;
    let stream = client.into_stream().unwrap();
    let (mut reading, mut writing) = tokio::io::split(stream);
    // Writes until the socket and rustls take no more (a write that would wait is not made:
    // polled once, it took nothing), then flushes in a task of its own.
    write_until_full(&mut writing).await;
    let flusher = tokio::spawn(async move { writing.flush().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!flusher.is_finished(), "the flush waits for the server");
    tcp.write_all(&bad_record()).await.unwrap();
    let e = within(reading.read(&mut [0u8; 64])).await.unwrap_err();
    assert!(is_stream_decrypt_error(&e), "the read: {e:?}");
    let flushed = tokio::time::timeout(Duration::from_secs(5), flusher)
        .await
        .expect("the waiting flush still waits 5 s after the read found the session failed")
        .unwrap();
    let e = flushed.unwrap_err();
    assert!(is_stream_decrypt_error(&e), "the flush: {e:?}");
    drop(tcp);
    selector.close();
}

/// The same for a `TlsStream`'s shutdown, waiting for the socket to take the records a write
/// left queued and its `close_notify`: the session failed, so no clean end can come of it, and
/// the shutdown fails with the session's error rather than wait on. The failure is the peer's
/// fatal alert here, not a corrupted record: rustls (0.23, its issue #959) debug-asserts that it
/// sends one alert at most, and our `close_notify` was one, so a record that fails to decrypt
/// after it panics inside rustls in a debug build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_shutdown_fails_once_a_read_found_the_session_failed() {
    use tokio::io::AsyncReadExt as _;
    let selector = SelectorManager::new();
    let ca = TestCa::new("shutdown waits");
    let (client, mut tcp, mut conn) =
        hand_server(&selector, &ca, rustls_localhost_server(&ca), Some(4096)).await;
    let stream = client.into_stream().unwrap();
    let (mut reading, mut writing) = tokio::io::split(stream);
    write_until_full(&mut writing).await;
    let shutting = tokio::spawn(async move { writing.shutdown().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!shutting.is_finished(), "the shutdown waits for the server");
    // The peer gets a record it cannot decrypt, and answers with its fatal alert.
    conn.read_tls(&mut &bad_record()[..]).unwrap();
    assert!(conn.process_new_packets().is_err());
    let alert = net_tests::tls::records(&mut conn);
    assert!(!alert.is_empty(), "the peer's fatal alert");
    tcp.write_all(&alert).await.unwrap();
    let e = within(reading.read(&mut [0u8; 64])).await.unwrap_err();
    assert!(is_stream_alert(&e), "the read: {e:?}");
    let shut = tokio::time::timeout(Duration::from_secs(5), shutting)
        .await
        .expect("the waiting shutdown still waits 5 s after the read found the session failed")
        .unwrap();
    let e = shut.unwrap_err();
    assert!(is_stream_alert(&e), "the shutdown: {e:?}");
    // The stream goes, and with it the connection: the peer's socket reads to its end.
    drop(reading);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut end = None;
    for _ in 0..100_000 {
        match within(tcp.read(&mut chunk)).await {
            Ok(0) => {
                end = Some(Ok(()));
                break;
            }
            Ok(_) => {}
            Err(e) => {
                end = Some(Err(e.kind()));
                break;
            }
        }
    }
    assert!(end.is_some(), "the peer's socket read no end");
    selector.close();
}

/// Whether the error of a stream is the session's failure by the peer's fatal alert:
/// `InvalidData`, rustls's `AlertReceived(BadRecordMac)`.
fn is_stream_alert(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::InvalidData
        && rustls_io_error(e)
            == Some(&rustls::Error::AlertReceived(
                rustls::AlertDescription::BadRecordMac,
            ))
}
