//! Parity with Kotlin's ktor-io / ktor-network, method by method: the edge cases a Ktor user
//! relies on (`readUTF8Line` at the end of the input, `awaitContent` at EOF, `readAvailable`,
//! `copyTo`, `discard`, `cancel` vs `close`, `flush` after close, `isClosedForRead` /
//! `isClosedForWrite`), each pinned to what our documentation says, including where it
//! deliberately differs from Ktor.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use net_io::{ByteChannel, ByteReadChannel, Error as IoError, LineEnding};
use net_sockets::{Error, SelectorManager};
use net_tests::conversation::utf8_line;
use net_tests::loopback::{connected_pair, tcp_listener};
use net_tests::pki::TestCa;
use net_tests::tls::{is_truncated, pair};
use net_tests::within;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

/// A reader that yields its chunks, then fails with `ConnectionReset` (a peer that reset).
struct ThenReset(Vec<Vec<u8>>);

impl AsyncRead for ThenReset {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.0.is_empty() {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        let chunk = self.0.remove(0);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

// ----- readUTF8Line / readLine --------------------------------------------------------------

/// Ktor's `readUTF8Line` (and `readLine`) return a last line that has no delimiter, then `null`
/// for good; an empty input is `null` at once.
#[tokio::test]
async fn a_last_line_without_a_newline_is_returned_then_none_for_good() {
    let (mut output, mut input) = ByteChannel::new(false);
    output.write_string_utf8("one\ntwo").await.unwrap();
    output.flush_and_close().await.unwrap();
    assert_eq!(utf8_line(&mut input).await.as_deref(), Some("one"));
    assert_eq!(utf8_line(&mut input).await.as_deref(), Some("two"));
    assert!(input.is_closed_for_read());
    for _ in 0..3 {
        assert_eq!(utf8_line(&mut input).await, None);
    }

    let (mut output, mut input) = ByteChannel::new(false);
    output.flush_and_close().await.unwrap();
    assert_eq!(utf8_line(&mut input).await, None);
    assert_eq!(
        within(input.read_line_strict(64, LineEnding::Default))
            .await
            .unwrap(),
        None
    );
    assert_eq!(within(input.read_until(b"\r\n", 64)).await.unwrap(), None);
    assert!(input.is_closed_for_read());
}

/// A lone CR at the very end of a socket's stream: Ktor's `readUTF8Line` (CR is a delimiter)
/// gives the line without it; `readLine` with `LineEnding.Default` keeps it as content. A
/// CR-only input is one empty line in the first mode.
#[tokio::test]
async fn a_cr_at_the_end_of_a_socket_stream_ends_the_line_only_in_lenient_mode() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    for (sent, ending, lines) in [
        (&b"cmd\r"[..], LineEnding::Lenient, &["cmd"][..]),
        (b"cmd\r", LineEnding::Default, &["cmd\r"]),
        (b"\r", LineEnding::Lenient, &[""]),
        (b"\r", LineEnding::Default, &["\r"]),
        (b"a\r\rb", LineEnding::Lenient, &["a", "", "b"]),
        (b"a\r\rb", LineEnding::Default, &["a\r\rb"]),
        (b"a\r\r\nb\r\n", LineEnding::Default, &["a\r", "b"]),
    ] {
        let (mut client, mut server) = connected_pair(&selector, &listener).await;
        let mut output = client.open_write_channel(false).unwrap();
        let mut input = server.open_read_channel().unwrap();
        output.write_fully(sent).await.unwrap();
        output.flush_and_close().await.unwrap();
        let mut got = Vec::new();
        while let Some(line) = within(input.read_line(64, ending)).await.unwrap() {
            got.push(line);
            assert!(got.len() <= lines.len(), "{sent:?} {ending:?}: {got:?}");
        }
        assert_eq!(got, lines, "{sent:?} read with {ending:?}");
        assert!(input.is_closed_for_read());
        client.close();
        server.close();
    }
}

// ----- isClosedForRead / awaitContent / readAvailable -----------------------------------------

/// Ktor: `isClosedForRead` stays false while bytes remain buffered after the writer closed;
/// `awaitContent` at the end answers `false` (again and again) rather than failing.
#[tokio::test]
async fn at_the_end_buffered_bytes_keep_the_channel_open_for_read_and_await_content_says_false() {
    let (mut output, mut input) = ByteChannel::new(false);
    output.write_fully(b"ab").await.unwrap();
    output.flush_and_close().await.unwrap();
    assert!(!within(input.await_content(3)).await.unwrap());
    assert!(!input.is_closed_for_read(), "two bytes are still buffered");
    assert_eq!(input.available_for_read(), 2);
    assert!(within(input.await_content(2)).await.unwrap());
    assert_eq!(&within(input.read_bytes(2)).await.unwrap()[..], b"ab");
    assert!(input.is_closed_for_read());
    for _ in 0..3 {
        assert!(!within(input.await_content(1)).await.unwrap());
    }
    assert!(within(input.await_content(0)).await.unwrap());
}

/// `read_available` into an empty slice answers `Ok(0)` at once and consumes nothing (Ktor's
/// `readAvailable` would first wait for a byte); at the end it is `Ok(0)` (Ktor: `-1`).
#[tokio::test]
async fn read_available_into_an_empty_slice_returns_zero_at_once() {
    let (mut output, mut input) = ByteChannel::new(true);
    // Nothing written yet: an empty destination does not wait.
    assert_eq!(within(input.read_available(&mut [])).await.unwrap(), 0);
    output.write_fully(b"xyz").await.unwrap();
    assert!(within(input.await_content(3)).await.unwrap());
    assert_eq!(within(input.read_available(&mut [])).await.unwrap(), 0);
    assert_eq!(input.available_for_read(), 3);
    output.flush_and_close().await.unwrap();
    let mut buf = [0; 8];
    assert_eq!(within(input.read_available(&mut buf)).await.unwrap(), 3);
    assert_eq!(within(input.read_available(&mut buf)).await.unwrap(), 0);
    assert_eq!(within(input.read_available(&mut [])).await.unwrap(), 0);
}

/// After a transport failure, the bytes received before it are read first (Ktor would throw at
/// once): `is_closed_for_read` is false until they are, then every read reports the failure.
#[tokio::test]
async fn bytes_before_a_failure_are_read_first_then_the_failure_for_good() {
    let mut input = ByteReadChannel::new(ThenReset(vec![b"hi".to_vec()]));
    assert!(within(input.await_content(2)).await.unwrap());
    let e = within(input.await_content(3)).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    assert!(!input.is_closed_for_read(), "two bytes are still buffered");
    let mut buf = [0; 8];
    assert_eq!(within(input.read_available(&mut buf)).await.unwrap(), 2);
    assert!(input.is_closed_for_read());
    let e = within(input.read_available(&mut buf)).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    let e = within(input.discard(1)).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
}

// ----- discard / copyTo ---------------------------------------------------------------------

/// Ktor: `discard(max)` past the end returns how many it skipped; `discardExact` past the end is
/// an `EOFException` (here `UnexpectedEof`, the bytes that were there skipped).
#[tokio::test]
async fn discard_past_the_end_returns_the_count_and_discard_exact_fails() {
    let mut input = ByteReadChannel::from_bytes("abc");
    assert_eq!(within(input.discard(10)).await.unwrap(), 3);
    assert_eq!(within(input.discard(10)).await.unwrap(), 0);
    assert!(input.is_closed_for_read());

    let mut input = ByteReadChannel::from_bytes("abc");
    let e = within(input.discard_exact(10)).await.unwrap_err();
    assert!(
        matches!(
            e,
            IoError::UnexpectedEof {
                needed: 10,
                available: 3
            }
        ),
        "{e:?}"
    );
    assert_eq!(input.total_bytes_read(), 3);
    assert!(input.is_closed_for_read());
}

/// Ktor's `copyTo(channel, limit)`: copies at most `limit`, returns the count, stops early at
/// the end of the source; the rest stays in the source.
#[tokio::test]
async fn copy_to_stops_at_the_limit_or_the_end_and_returns_the_count() {
    let (mut output, mut sink) = ByteChannel::new(false);
    let mut input = ByteReadChannel::from_bytes("hello");
    assert_eq!(within(input.copy_to(&mut output, 3)).await.unwrap(), 3);
    assert_eq!(input.available_for_read(), 2);
    assert_eq!(within(input.copy_to(&mut output, 100)).await.unwrap(), 2);
    assert_eq!(within(input.copy_to(&mut output, 100)).await.unwrap(), 0);
    // Not closed by the copy, and flushed: the sink's reader has all five bytes.
    assert!(!output.is_closed_for_write());
    assert!(within(sink.await_content(5)).await.unwrap());
    assert_eq!(&within(sink.read_bytes(5)).await.unwrap()[..], b"hello");
}

/// When the source fails, Ktor's `copyTo` closes the destination with the cause; ours returns
/// the error and leaves the destination open (what was copied before the failure reached it,
/// flushed), as the documentation says.
#[tokio::test]
async fn copy_to_a_failing_source_returns_its_error_and_leaves_the_destination_open() {
    let (mut output, mut sink) = ByteChannel::new(false);
    let mut input = ByteReadChannel::new(ThenReset(vec![b"abc".to_vec(), b"de".to_vec()]));
    let e = within(input.copy_to(&mut output, u64::MAX))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(input.total_bytes_read(), 5);
    assert!(!output.is_closed_for_write());
    assert!(within(sink.await_content(5)).await.unwrap());
    output.write_fully(b"!").await.unwrap();
    output.flush_and_close().await.unwrap();
    assert_eq!(
        &within(sink.read_remaining(100)).await.unwrap()[..],
        b"abcde!"
    );
}

/// A failure of the destination leaves the chunk in the source, not consumed, and the
/// destination failed for good (no `close(cause)` as in Ktor, no cancel of the source).
#[tokio::test]
async fn copy_to_a_failing_destination_keeps_the_chunk_in_the_source() {
    let (mut output, mut gone) = ByteChannel::new(false);
    gone.cancel();
    let mut input = ByteReadChannel::from_bytes("hello");
    let e = within(input.copy_to(&mut output, u64::MAX))
        .await
        .unwrap_err();
    assert!(matches!(e, IoError::Cancelled), "{e:?}");
    assert!(output.is_closed_for_write());
    assert_eq!(input.total_bytes_read(), 0);
    assert_eq!(&within(input.read_bytes(5)).await.unwrap()[..], b"hello");
}

// ----- cancel vs close, flush after close -----------------------------------------------------

/// Ktor's `cancel(cause)` on a writer fails its reader's reads at once with the cause; ours
/// (no cause) lets the reader read what was delivered, then fails with `Cancelled`; a clean
/// close is the end of the stream instead.
#[tokio::test]
async fn a_cancelled_writer_fails_the_reader_after_what_was_delivered() {
    let (mut output, mut input) = ByteChannel::new(false);
    output.write_fully(b"sent\n").await.unwrap();
    output.flush().await.unwrap();
    output.write_fully(b"dropped\n").await.unwrap();
    output.cancel();
    assert!(output.is_closed_for_write());
    assert_eq!(
        within(input.read_utf8_line(64)).await.unwrap().as_deref(),
        Some("sent")
    );
    let e = within(input.read_utf8_line(64)).await.unwrap_err();
    assert!(matches!(e, IoError::Cancelled), "{e:?}");
    assert!(input.is_closed_for_read());
    let e = within(output.write_fully(b"x")).await.unwrap_err();
    assert!(matches!(e, IoError::ClosedForWrite), "{e:?}");
}

/// Ktor's `flush()` and `flushAndClose()` after a clean close do nothing; ours report
/// `ClosedForWrite`, as their documentation says (tokio's `AsyncWrite::poll_flush` and
/// `poll_shutdown` return `Ok` there). A write after close is `ClosedForWrite` in both.
#[tokio::test]
async fn flush_and_close_after_a_clean_close_report_closed_for_write() {
    let (mut output, mut input) = ByteChannel::new(false);
    output.write_fully(b"x").await.unwrap();
    output.flush_and_close().await.unwrap();
    assert!(output.is_closed_for_write());
    let e = output.flush().await.unwrap_err();
    assert!(matches!(e, IoError::ClosedForWrite), "{e:?}");
    let e = output.flush_and_close().await.unwrap_err();
    assert!(matches!(e, IoError::ClosedForWrite), "{e:?}");
    let e = output.write_u8(1).await.unwrap_err();
    assert!(matches!(e, IoError::ClosedForWrite), "{e:?}");
    AsyncWriteExt::flush(&mut output).await.unwrap();
    AsyncWriteExt::shutdown(&mut output).await.unwrap();
    let mut all = Vec::new();
    within(input.read_to_end(&mut all)).await.unwrap();
    assert_eq!(all, b"x");
}

// ----- sockets ---------------------------------------------------------------------------------

/// On a socket: the peer's last line without a newline, then `None`; writes after our
/// `flush_and_close` are `ClosedForWrite`; after `Socket::close`, reads and writes fail with
/// `Closed` inside the channel's error.
#[tokio::test]
async fn socket_channels_end_and_close_as_documented() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut client, mut server) = connected_pair(&selector, &listener).await;
    let mut client_out = client.open_write_channel(true).unwrap();
    let mut server_in = server.open_read_channel().unwrap();
    let mut server_out = server.open_write_channel(true).unwrap();
    client_out.write_string_utf8("hello\nlast").await.unwrap();
    client_out.flush_and_close().await.unwrap();
    let e = client_out.write_u8(1).await.unwrap_err();
    assert!(matches!(e, IoError::ClosedForWrite), "{e:?}");
    assert_eq!(
        within(server_in.read_utf8_line(64))
            .await
            .unwrap()
            .as_deref(),
        Some("hello")
    );
    assert_eq!(
        within(server_in.read_utf8_line(64))
            .await
            .unwrap()
            .as_deref(),
        Some("last")
    );
    assert_eq!(within(server_in.read_utf8_line(64)).await.unwrap(), None);
    assert!(server_in.is_closed_for_read());

    // The other direction still works (a half-close); then our own close.
    server_out.write_string_utf8("bye\n").await.unwrap();
    let mut client_in = client.open_read_channel().unwrap();
    assert_eq!(
        within(client_in.read_utf8_line(64))
            .await
            .unwrap()
            .as_deref(),
        Some("bye")
    );
    client.close();
    let e = within(client_in.read_u8()).await.unwrap_err();
    assert!(matches!(Error::from(e), Error::Closed));
    assert!(client_in.is_closed_for_read());
    server.close();
}

// ----- isClosedForWrite -------------------------------------------------------------------------

/// Ktor's `isClosedForWrite` turns true as soon as the reader of a `ByteChannel` cancels it, or
/// the socket is closed. Ours is the write channel's own state: it learns of a cancelled reader
/// or a closed socket from the first write (or flush) that reaches the transport, which fails,
/// and is true from then on.
#[tokio::test]
async fn is_closed_for_write_learns_of_a_gone_reader_or_a_closed_socket_from_a_write() {
    let (mut output, mut input) = ByteChannel::new(false);
    input.cancel();
    assert!(!output.is_closed_for_write());
    // Only buffered: succeeds, as on a socket whose peer is gone.
    output.write_fully(b"x").await.unwrap();
    assert!(!output.is_closed_for_write());
    let e = within(output.flush()).await.unwrap_err();
    assert!(matches!(e, IoError::Cancelled), "{e:?}");
    assert!(output.is_closed_for_write());

    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut client, server) = connected_pair(&selector, &listener).await;
    let mut output = client.open_write_channel(true).unwrap();
    client.close();
    assert!(!output.is_closed_for_write());
    let e = within(output.write_u8(1)).await.unwrap_err();
    assert!(matches!(Error::from(e), Error::Closed));
    assert!(output.is_closed_for_write());
    let e = within(output.write_u8(1)).await.unwrap_err();
    assert!(matches!(Error::from(e), Error::Closed));
    server.close();
}

// ----- readLineTo ---------------------------------------------------------------------------------

/// Ktor's `readLineTo` returns the number of bytes of the line's content as received; ours
/// returns how many bytes it appended to the `String`, which differs when invalid UTF-8 was
/// replaced by U+FFFD (three bytes for each).
#[tokio::test]
async fn read_line_to_counts_the_bytes_appended_not_those_received() {
    let mut input = ByteReadChannel::from_bytes(&b"a\xffb\nok\n"[..]);
    let mut out = String::new();
    let n = within(input.read_line_to(&mut out, 64, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(out, "a\u{FFFD}b");
    assert_eq!(n, Some(5), "three bytes received, five appended");
    assert_eq!(input.total_bytes_read(), 4);
    out.clear();
    let n = within(input.read_line_to(&mut out, 64, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!((n, out.as_str()), (Some(2), "ok"));
}

// ----- TLS ------------------------------------------------------------------------------------

/// Over TLS, a last line without a newline is a line only when the peer ended the stream with
/// `close_notify`; a peer whose stream is cut (here a close that must not end it cleanly) leaves
/// it unterminated, and the read
/// reports the truncation rather than return a cut line (Ktor's TLS channel ends without
/// telling the two apart).
#[tokio::test]
async fn over_tls_a_last_line_without_a_newline_is_a_line_only_after_close_notify() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("ktor parity ca");
    let server_config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = tcp_listener(&selector).await;
    for clean in [true, false] {
        let client_config = ca.client_config().build().unwrap();
        let (mut server, mut client) =
            pair(&selector, &listener, &server_config, client_config).await;
        let mut input = server.open_read_channel().unwrap();
        let mut output = client.open_write_channel(false).unwrap();
        output.write_string_utf8("whole\nlast").await.unwrap();
        output.flush().await.unwrap();
        if clean {
            output.flush_and_close().await.unwrap();
        } else {
            // A close while the channel holds a byte it did not send: no `close_notify`.
            output.write_u8(b'!').await.unwrap();
            client.close();
        }
        assert_eq!(utf8_line(&mut input).await.as_deref(), Some("whole"));
        if clean {
            assert_eq!(utf8_line(&mut input).await.as_deref(), Some("last"));
            assert_eq!(utf8_line(&mut input).await, None);
        } else {
            for _ in 0..2 {
                let e = within(input.read_utf8_line(64)).await.unwrap_err();
                assert!(is_truncated(&e), "{e:?}");
            }
            // The cut line's bytes stay buffered.
            assert_eq!(input.available_for_read(), 4);
            assert!(!input.is_closed_for_read());
        }
        server.close();
    }
}

/// Dropping a TLS socket and its channels without `close` sends no `close_notify`: the peer
/// reads what was sent, then a truncation (as the net-tls docs say), also when our side is a
/// TLS 1.3 client that never read (the server's session tickets unread in its socket).
#[tokio::test]
async fn a_dropped_tls_client_that_never_read_ends_truncated_not_reset() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("ktor parity drop ca");
    let server_config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = tcp_listener(&selector).await;
    let client_config = ca.client_config().build().unwrap();
    let (mut server, mut client) = pair(&selector, &listener, &server_config, client_config).await;
    let mut input = server.open_read_channel().unwrap();
    let mut output = client.open_write_channel(true).unwrap();
    output.write_string_utf8("whole\nlast").await.unwrap();
    drop(output);
    drop(client);
    assert_eq!(utf8_line(&mut input).await.as_deref(), Some("whole"));
    let e = within(input.read_utf8_line(64)).await.unwrap_err();
    assert!(is_truncated(&e), "{e:?}");
    server.close();
}
