//! A failure as every path reports it: after a transport failure (a reset, a TLS truncation, a
//! corrupted record, the socket's close, the selector's close), every read of a channel
//! (lines, typed reads, `read_until`, `read_frame`, tokio's `AsyncRead` and `AsyncBufRead`,
//! `copy_to`, ...) and every write (buffered, typed, flush, tokio's `AsyncWrite`, the close)
//! reports the same kind, OS error code and inner error; and converted across the layers
//! (`net_io::Error`, `std::io::Error`, `net_sockets::Error`, `net_tls::Error`, a channel made
//! over a `TlsStream`) it stays the same error, never a string copy.

use std::io::ErrorKind;

use net_io::{ByteReadChannel, ByteWriteChannel, LineEnding};
use net_sockets::SelectorManager;
use net_tests::fault::{raw_peer_of, reset, reset_arrived};
use net_tests::loopback::tcp_listener;
use net_tests::pki::TestCa;
use net_tests::tls::manual_pair;
use net_tests::within;
use net_tls::rustls;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::{LinesCodec, LinesCodecError};

/// What a failure says: its kind, OS error code, and its inner error (looked up through the
/// wrapper a channel shares it in) as `Debug` prints it.
type Identity = (ErrorKind, Option<i32>, Option<String>);

fn of_io(e: &std::io::Error) -> Identity {
    let inner = e
        .get_ref()
        .map(|inner| match inner.downcast_ref::<net_io::SharedError>() {
            Some(shared) => format!("{:?}", shared.get_ref()),
            None => format!("{inner:?}"),
        });
    (e.kind(), e.raw_os_error(), inner)
}

fn of_channel(e: net_io::Error) -> Identity {
    of_io(&std::io::Error::from(e))
}

/// A TLS application-data record whose ciphertext does not decrypt.
fn corrupted_record() -> Vec<u8> {
    let mut record = vec![0x17, 0x03, 0x03, 0x00, 0x20];
    record.extend(1..=32u8);
    record
}

/// Each read path's report on a channel whose transport failed (nothing buffered).
async fn every_read(input: &mut ByteReadChannel) -> Vec<(&'static str, Identity)> {
    let mut seen = Vec::new();
    let e = within(input.read_line(80, LineEnding::Default)).await;
    seen.push(("read_line", of_channel(e.unwrap_err())));
    seen.push((
        "read_u32",
        of_channel(within(input.read_u32()).await.unwrap_err()),
    ));
    seen.push((
        "read_bytes",
        of_channel(within(input.read_bytes(3)).await.unwrap_err()),
    ));
    let e = within(input.read_remaining(10)).await;
    seen.push(("read_remaining", of_channel(e.unwrap_err())));
    let e = within(input.await_content(1)).await;
    seen.push(("await_content", of_channel(e.unwrap_err())));
    seen.push(("peek", of_channel(within(input.peek(1)).await.unwrap_err())));
    seen.push((
        "discard",
        of_channel(within(input.discard(5)).await.unwrap_err()),
    ));
    let e = within(input.read_until(b"\r\n", 5)).await;
    seen.push(("read_until", of_channel(e.unwrap_err())));
    let mut codec = LinesCodec::new();
    match within(input.read_frame(&mut codec)).await {
        Err(LinesCodecError::Io(e)) => seen.push(("read_frame", of_io(&e))),
        other => panic!("read_frame: {other:?}"),
    }
    let mut buf = [0u8; 8];
    let e = within(AsyncReadExt::read(input, &mut buf)).await;
    seen.push(("poll_read", of_io(&e.unwrap_err())));
    seen.push((
        "poll_fill_buf",
        of_io(&within(input.fill_buf()).await.unwrap_err()),
    ));
    let mut dst = ByteWriteChannel::new(tokio::io::sink(), false);
    let e = within(input.copy_to(&mut dst, 100)).await;
    seen.push(("copy_to", of_channel(e.unwrap_err())));
    let mut dst = [0u8; 4];
    let e = within(input.read_fully(&mut dst)).await;
    seen.push(("read_fully", of_channel(e.unwrap_err())));
    let e = within(input.read_available(&mut dst)).await;
    seen.push(("read_available", of_channel(e.unwrap_err())));
    seen
}

fn assert_all(case: &str, seen: &[(&str, Identity)], expected: &Identity) {
    for (path, identity) in seen {
        assert_eq!(identity, expected, "{case}: {path}");
    }
}

#[tokio::test]
async fn every_read_path_reports_the_failure_alike() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;

    // The peer's reset.
    let (peer, mut socket) = raw_peer_of(&listener).await;
    let mut input = socket.open_read_channel().unwrap();
    reset(peer);
    let reset_seen = (ErrorKind::ConnectionReset, Some(libc::ECONNRESET), None);
    assert_all("reset", &every_read(&mut input).await, &reset_seen);

    // Our own close.
    let (_peer, mut socket) = raw_peer_of(&listener).await;
    let mut input = socket.open_read_channel().unwrap();
    socket.close();
    let closed = (ErrorKind::NotConnected, None, Some("Closed".to_owned()));
    assert_all("closed", &every_read(&mut input).await, &closed);

    // A TLS peer that ends the TCP stream without close_notify.
    let ca = TestCa::new("errors across layers ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let (mut tls, mut tcp, _client) = manual_pair(&listener, &ca, &config).await;
    let mut input = tls.open_read_channel().unwrap();
    tcp.shutdown().await.unwrap();
    let truncated = (ErrorKind::UnexpectedEof, None, Some("Truncated".to_owned()));
    assert_all("truncated", &every_read(&mut input).await, &truncated);

    // A corrupted TLS record.
    let (mut tls, mut tcp, _client) = manual_pair(&listener, &ca, &config).await;
    let mut input = tls.open_read_channel().unwrap();
    tcp.write_all(&corrupted_record()).await.unwrap();
    let bad = (
        ErrorKind::InvalidData,
        None,
        Some("DecryptError".to_owned()),
    );
    assert_all("corrupted", &every_read(&mut input).await, &bad);
}

/// Each write path's report on a channel whose write failed.
async fn every_write(output: &mut ByteWriteChannel) -> Vec<(&'static str, Identity)> {
    let mut seen = Vec::new();
    let e = within(output.write_fully(b"x")).await;
    seen.push(("write_fully", of_channel(e.unwrap_err())));
    seen.push((
        "write_u32",
        of_channel(within(output.write_u32(1)).await.unwrap_err()),
    ));
    seen.push((
        "flush",
        of_channel(within(output.flush()).await.unwrap_err()),
    ));
    let e = within(AsyncWriteExt::write(output, b"x")).await;
    seen.push(("poll_write", of_io(&e.unwrap_err())));
    let e = within(AsyncWriteExt::flush(output)).await;
    seen.push(("poll_flush", of_io(&e.unwrap_err())));
    let e = within(AsyncWriteExt::shutdown(output)).await;
    seen.push(("poll_shutdown", of_io(&e.unwrap_err())));
    for _ in 0..2 {
        let e = within(output.flush_and_close()).await;
        seen.push(("flush_and_close", of_channel(e.unwrap_err())));
    }
    seen
}

#[tokio::test]
async fn every_write_path_reports_a_failed_write_alike_over_tcp_and_tls() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let ca = TestCa::new("errors across layers ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let reset_seen = (ErrorKind::ConnectionReset, Some(libc::ECONNRESET), None);
    for over_tls in [false, true] {
        let (mut output, peer) = if over_tls {
            let (mut tls, tcp, _client) = manual_pair(&listener, &ca, &config).await;
            (tls.open_write_channel(false).unwrap(), tcp)
        } else {
            let (peer, mut socket) = raw_peer_of(&listener).await;
            (socket.open_write_channel(false).unwrap(), peer)
        };
        reset_arrived(peer).await;
        // The first send after the reset arrived is told of it.
        output.write_fully(&[7; 100]).await.unwrap();
        let first = within(output.flush()).await.unwrap_err();
        assert_eq!(of_channel(first), reset_seen, "tls: {over_tls}");
        assert_all(
            if over_tls { "tls" } else { "tcp" },
            &every_write(&mut output).await,
            &reset_seen,
        );
    }
}

/// A channel made over a `TlsStream` (a `ByteReadChannel` around tokio's `AsyncRead`): the
/// stream's failure (a corrupted record, the selector's close) is that channel's failure, the
/// same on every report, and `net_tls::Error::from` finds it (`inner_error`, the variant).
#[tokio::test]
async fn a_channel_over_a_tls_stream_keeps_the_streams_failure_through_each_conversion() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let ca = TestCa::new("errors across layers ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();

    let (tls, mut tcp, _client) = manual_pair(&listener, &ca, &config).await;
    let mut input = ByteReadChannel::new(tls.into_stream().unwrap());
    tcp.write_all(&corrupted_record()).await.unwrap();
    for _ in 0..2 {
        let e = within(input.read_line(80, LineEnding::Default))
            .await
            .unwrap_err();
        let e = net_tls::Error::from(e);
        assert_eq!(e.kind(), ErrorKind::InvalidData, "{e:?}");
        assert!(
            e.inner_error()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(|tls| *tls == rustls::Error::DecryptError),
            "{e:?}"
        );
        // Into an `io::Error` and back: the same.
        let e = net_tls::Error::from(std::io::Error::from(e));
        assert!(
            e.inner_error()
                .is_some_and(|inner| inner.is::<rustls::Error>()),
            "{e:?}"
        );
    }

    let (tls, _tcp, _client) = manual_pair(&listener, &ca, &config).await;
    let mut input = ByteReadChannel::new(tls.into_stream().unwrap());
    selector.close();
    for _ in 0..2 {
        let e = within(input.read_line(80, LineEnding::Default))
            .await
            .unwrap_err();
        let e = net_tls::Error::from(e);
        assert!(
            matches!(
                e,
                net_tls::Error::Socket(net_sockets::Error::SelectorClosed)
            ),
            "{e:?}"
        );
    }
}
