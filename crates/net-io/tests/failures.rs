//! SPEC §4.1 failure semantics: errors keep their type when reported again, bytes received
//! before a read error are read first, a failed write is never retried into duplicates, and a
//! failed write channel never closes cleanly.

mod support;

use std::io;

use net_io::{ByteReadChannel, ByteWriteChannel, Error, LineEnding};
use support::{Act, Capture, ChunkedReader, MockWriter, Step, guard, poll_once, timeout};
use tokio::io::AsyncWriteExt;

fn reset() -> io::Error {
    io::Error::from_raw_os_error(libc::ECONNRESET)
}

/// Asserts that `res` is the connection reset, as an OS error with its code.
fn assert_reset<T: std::fmt::Debug>(res: net_io::Result<T>, what: &str) {
    match res {
        Err(Error::Io(e)) => {
            assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{what}: {e:?}");
            assert_eq!(e.raw_os_error(), Some(libc::ECONNRESET), "{what}: {e:?}");
        }
        other => panic!("{what}: expected the reset, got {other:?}"),
    }
}

// ----- reads -----------------------------------------------------------------------------

/// "a\nb\n" then ECONNRESET: lines a and b, then the reset twice, kind and OS code intact.
#[tokio::test]
async fn lines_before_a_reset_then_the_same_error_twice() {
    let mut ch = ByteReadChannel::new(ChunkedReader::new([
        Step::Data(b"a\nb\n".to_vec()),
        Step::Fail(reset()),
    ]));
    let mut lines = Vec::new();
    for _ in 0..2 {
        lines.push(guard(ch.read_line(10, LineEnding::Default)).await.unwrap());
    }
    assert_eq!(lines, [Some("a".to_owned()), Some("b".to_owned())]);
    assert_reset(
        guard(ch.read_line(10, LineEnding::Default)).await,
        "first report",
    );
    assert_reset(
        guard(ch.read_line(10, LineEnding::Default)).await,
        "second report",
    );
    assert_reset(guard(ch.read_u8()).await, "third report, another read");
    assert!(ch.is_closed_for_read());
}

/// After the error, reads the buffer can satisfy still succeed; one that needs more reports
/// the error again.
#[tokio::test]
async fn buffered_items_are_read_after_the_error() {
    let mut ch = ByteReadChannel::new(ChunkedReader::new([
        Step::Data(b"a\nb\r\n\x00\x07xyz".to_vec()),
        Step::Fail(reset()),
    ]));
    // A read that needs more than arrived meets the error first.
    assert_reset(guard(ch.peek(100)).await, "peek(100)");
    assert_eq!(ch.available_for_read(), 10);
    assert!(!ch.is_closed_for_read());
    assert_eq!(
        guard(ch.read_line(10, LineEnding::Default))
            .await
            .unwrap()
            .as_deref(),
        Some("a")
    );
    assert_eq!(
        guard(ch.read_line(10, LineEnding::Default))
            .await
            .unwrap()
            .as_deref(),
        Some("b")
    );
    assert_eq!(guard(ch.read_u16()).await.unwrap(), 7);
    assert!(guard(ch.await_content(3)).await.unwrap());
    assert_eq!(guard(ch.peek(2)).await.unwrap().unwrap(), &b"xy"[..]);
    // "xyz" is not a line: the stream did not end, it failed.
    assert_reset(
        guard(ch.read_line(10, LineEnding::Default)).await,
        "partial line",
    );
    assert_reset(guard(ch.read_u32()).await, "u32 from 3 bytes");
    assert_eq!(guard(ch.read_bytes(3)).await.unwrap(), &b"xyz"[..]);
    assert_reset(guard(ch.read_u8()).await, "empty buffer");
    assert!(ch.is_closed_for_read());
}

/// A timeout is not final: the bytes before it stay, and reading goes on after it.
#[tokio::test]
async fn a_read_timeout_is_not_final() {
    let mut ch = ByteReadChannel::new(ChunkedReader::new([
        Step::Data(b"ab".to_vec()),
        Step::Fail(timeout()),
        Step::Data(b"c\n".to_vec()),
    ]));
    let res = guard(ch.read_line(10, LineEnding::Default)).await;
    assert!(matches!(res, Err(Error::Timeout)), "{res:?}");
    assert_eq!(
        guard(ch.read_line(10, LineEnding::Default))
            .await
            .unwrap()
            .as_deref(),
        Some("abc")
    );
}

/// A timeout is not an end: a CR that ends the bytes before one still waits for the next byte,
/// which may be the LF of a CRLF (SPEC: a CR that is the last buffered byte waits for the next
/// byte or the end of the stream). The line is read once, after the timeout, and the LF is not
/// taken for an empty line.
#[tokio::test]
async fn a_lenient_cr_before_a_timeout_still_waits_for_its_lf() {
    let mut ch = ByteReadChannel::new(ChunkedReader::new([
        Step::Data(b"abc\r".to_vec()),
        Step::Fail(timeout()),
        Step::Data(b"\ndef\n".to_vec()),
    ]));
    assert!(matches!(
        guard(ch.read_line(80, LineEnding::Lenient)).await,
        Err(Error::Timeout)
    ));
    for want in ["abc", "def"] {
        let line = guard(ch.read_line(80, LineEnding::Lenient)).await;
        assert_eq!(line.unwrap().as_deref(), Some(want));
    }
}

/// Lenient mode: "abc\r" is a whole line whatever follows, and a failed transport sends
/// nothing more, so the line is read before the reset is reported (every lenient line read,
/// and a read that met the reset first).
#[tokio::test]
async fn a_line_ended_by_cr_before_a_reset_is_read_first() {
    let input = |data: &[u8]| {
        ByteReadChannel::new(ChunkedReader::new([
            Step::Data(data.to_vec()),
            Step::Fail(reset()),
        ]))
    };
    let mut ch = input(b"abc\r");
    assert_eq!(
        guard(ch.read_utf8_line(80)).await.unwrap().as_deref(),
        Some("abc")
    );
    assert_eq!(ch.total_bytes_read(), 4);
    assert_reset(guard(ch.read_utf8_line(80)).await, "after the line");
    assert_reset(guard(ch.read_utf8_line(80)).await, "again");

    let mut ch = input(b"a\rb\r");
    for want in ["a", "b"] {
        let line = guard(ch.read_line_strict(80, LineEnding::Lenient)).await;
        assert_eq!(line.unwrap().as_deref(), Some(want));
    }
    assert_reset(
        guard(ch.read_line_strict(80, LineEnding::Lenient)).await,
        "strict, after the lines",
    );

    let mut ch = input(b"abc\r");
    assert_reset(guard(ch.peek(5)).await, "peek(5)");
    let mut line = String::new();
    let n = guard(ch.read_line_to(&mut line, 80, LineEnding::Lenient)).await;
    assert_eq!((n.unwrap(), line.as_str()), (Some(3), "abc"));
    assert_reset(
        guard(ch.read_line_to(&mut line, 80, LineEnding::Lenient)).await,
        "read_line_to, after the line",
    );
}

/// Bytes that are not a whole item when the transport fails are not returned as one (only a
/// clean end makes a last item of them): the reset is reported, and the bytes stay buffered.
#[tokio::test]
async fn an_unfinished_item_before_a_reset_is_the_reset() {
    let input = |data: &[u8]| {
        ByteReadChannel::new(ChunkedReader::new([
            Step::Data(data.to_vec()),
            Step::Fail(reset()),
        ]))
    };
    // Default: a lone CR is content. Lenient: no delimiter at all.
    for (data, ending) in [
        (&b"abc\r"[..], LineEnding::Default),
        (b"abc", LineEnding::Lenient),
    ] {
        let mut ch = input(data);
        let what = format!("{ending:?} {data:?}");
        assert_reset(guard(ch.read_line(80, ending)).await, &what);
        assert_reset(guard(ch.read_line(80, ending)).await, &what);
        assert_eq!(guard(ch.read_bytes(data.len())).await.unwrap(), data);
    }
    // A multi-byte delimiter's first byte ends the bytes.
    let mut ch = input(b"abc\r");
    assert_reset(guard(ch.read_until(b"\r\n", 80)).await, "read_until");
    assert_reset(guard(ch.read_until(b"\r\n", 80)).await, "read_until again");
    assert_eq!(guard(ch.read_bytes(4)).await.unwrap(), &b"abc\r"[..]);
}

/// A `read_fully` that times out consumes nothing: the bytes that had arrived are buffered
/// again, and the retry reads every byte once, in order (through the channel's buffer, and
/// with a destination large enough to be read into directly).
#[tokio::test]
async fn read_fully_consumes_nothing_on_timeout() {
    for (head, len) in [(4, 8), (4000, 10_000)] {
        let data: Vec<u8> = (0..len + 4).map(|i| (i % 251) as u8).collect();
        let mut ch = ByteReadChannel::new(ChunkedReader::new([
            Step::Data(data[..head].to_vec()),
            Step::Fail(timeout()),
            Step::Data(data[head..].to_vec()),
        ]));
        let mut dst = vec![0; len];
        let res = guard(ch.read_fully(&mut dst)).await;
        assert!(matches!(res, Err(Error::Timeout)), "{len}: {res:?}");
        assert_eq!(ch.total_bytes_read(), 0, "{len}: consumed on timeout");
        assert_eq!(ch.available_for_read(), head, "{len}");
        let mut dst = vec![0; len];
        guard(ch.read_fully(&mut dst)).await.unwrap();
        assert!(
            dst == data[..len],
            "{len}: retry after Timeout out of order"
        );
        assert_eq!(ch.total_bytes_read(), len as u64);
        assert_eq!(guard(ch.read_bytes(4)).await.unwrap(), &data[len..]);
    }
}

// ----- writes ----------------------------------------------------------------------------

/// A write call whose bytes reached nothing before a timeout had no effect: the retry delivers
/// each byte exactly once (buffered and auto-flush modes, typed and slice writes).
#[tokio::test]
async fn retry_after_timeout_delivers_each_byte_once() {
    // Auto-flush: the call's bytes are buffered, then the flush times out before any left.
    let mock = MockWriter::default();
    let mut w = ByteWriteChannel::new(mock.clone(), true);
    w.write_fully(b"one ").await.unwrap();
    mock.on_write([Act::Fail(timeout())]);
    let res = w.write_u32(0x3132_3334).await;
    assert!(matches!(res, Err(Error::Timeout)), "{res:?}");
    assert!(!w.is_closed_for_write());
    w.write_u32(0x3132_3334).await.unwrap();
    assert_eq!(mock.accepted(), b"one 1234");
    // Auto-flush with nothing buffered: the slice goes to the transport directly, which times
    // out before taking any of it.
    mock.on_write([Act::Fail(timeout())]);
    let res = w.write_fully(b" five").await;
    assert!(matches!(res, Err(Error::Timeout)), "{res:?}");
    assert!(!w.is_closed_for_write());
    w.write_fully(b" five").await.unwrap();
    assert_eq!(mock.accepted(), b"one 1234 five");

    // Buffered: earlier calls' bytes fill the buffer; this call pushes it over, and the
    // transport takes part of the earlier bytes only, then times out.
    let mock = MockWriter::default();
    let mut w = ByteWriteChannel::new(mock.clone(), false);
    let earlier = vec![b'e'; 8190];
    w.write_fully(&earlier).await.unwrap();
    mock.on_write([Act::Take(100), Act::Fail(timeout())]);
    let res = w.write_fully(b"call").await;
    assert!(matches!(res, Err(Error::Timeout)), "{res:?}");
    w.write_fully(b"call").await.unwrap();
    w.flush().await.unwrap();
    let mut want = earlier.clone();
    want.extend_from_slice(b"call");
    assert_eq!(mock.accepted(), want);

    // A large write goes to the transport directly: a timeout before it took anything.
    let mock = MockWriter::default();
    let mut w = ByteWriteChannel::new(mock.clone(), false);
    w.write_fully(b"head").await.unwrap();
    let big = vec![b'b'; 20_000];
    mock.on_write([Act::Take(4), Act::Fail(timeout())]);
    let res = w.write_fully(&big).await;
    assert!(matches!(res, Err(Error::Timeout)), "{res:?}");
    w.write_fully(&big).await.unwrap();
    w.flush_and_close().await.unwrap();
    let mut want = b"head".to_vec();
    want.extend_from_slice(&big);
    assert_eq!(mock.accepted(), want);
    assert_eq!(mock.shutdowns(), 1);
}

/// A timeout after some of the call's bytes reached the transport fails the channel for good:
/// no retry can duplicate them, and the channel does not close cleanly.
#[tokio::test]
async fn timeout_after_a_partial_write_fails_the_channel() {
    let mock = MockWriter::default();
    let mut w = ByteWriteChannel::new(mock.clone(), true);
    mock.on_write([Act::Take(3), Act::Fail(timeout())]);
    let res = w.write_fully(b"abcdef").await;
    assert!(matches!(res, Err(Error::Timeout)), "{res:?}");
    assert!(w.is_closed_for_write());
    let res = w.write_fully(b"abcdef").await;
    assert!(matches!(res, Err(Error::Timeout)), "retry: {res:?}");
    let res = w.flush_and_close().await;
    assert!(matches!(res, Err(Error::Timeout)), "close: {res:?}");
    assert_eq!(mock.accepted(), b"abc");
    assert_eq!(mock.shutdowns(), 0, "a failed channel was shut down");
}

/// A flush that times out keeps the buffer; the next flush goes on where it stopped.
#[tokio::test]
async fn flush_timeout_keeps_the_buffer() {
    let mock = MockWriter::default();
    let mut w = ByteWriteChannel::new(mock.clone(), false);
    w.write_fully(b"hello world").await.unwrap();
    mock.on_write([Act::Take(5), Act::Fail(timeout())]);
    let res = w.flush().await;
    assert!(matches!(res, Err(Error::Timeout)), "{res:?}");
    mock.on_flush([Act::Fail(timeout())]);
    let res = w.flush().await;
    assert!(
        matches!(res, Err(Error::Timeout)),
        "transport flush: {res:?}"
    );
    w.flush().await.unwrap();
    w.flush().await.unwrap();
    assert_eq!(mock.accepted(), b"hello world");
}

/// Any other transport error fails the channel for good: every later operation reports the
/// same error, OS code included.
#[tokio::test]
async fn a_write_error_is_reported_again_and_again() {
    let mock = MockWriter::default();
    let mut w = ByteWriteChannel::new(mock.clone(), false);
    w.write_fully(b"lost").await.unwrap();
    mock.on_write([Act::Fail(reset())]);
    assert_reset(w.flush().await, "flush");
    assert!(w.is_closed_for_write());
    assert_reset(w.write_fully(b"x").await, "write after");
    assert_reset(w.write_u64(1).await, "typed write after");
    assert_reset(w.flush().await, "flush after");
    assert_reset(w.flush_and_close().await, "close after");
    assert_reset(w.flush_and_close().await, "close again");
    assert!(mock.accepted().is_empty());
    assert_eq!(mock.shutdowns(), 0);
}

/// A failed flush, then flush_and_close: the error, and no shutdown (no FIN, no close_notify).
#[tokio::test]
async fn failed_flush_then_close_does_not_shut_down() {
    for fail_in in ["write", "flush"] {
        let mock = MockWriter::default();
        let mut w = ByteWriteChannel::new(mock.clone(), false);
        w.write_fully(b"data").await.unwrap();
        match fail_in {
            "write" => mock.on_write([Act::Fail(reset())]),
            _ => mock.on_flush([Act::Fail(reset())]),
        }
        assert_reset(w.flush().await, fail_in);
        assert_reset(w.flush_and_close().await, fail_in);
        assert_eq!(mock.shutdowns(), 0, "{fail_in}: shut down after a failure");
    }
}

/// flush_and_close whose own flush fails (even by a timeout) does not shut down either.
#[tokio::test]
async fn close_whose_flush_fails_does_not_shut_down() {
    let mock = MockWriter::default();
    let mut w = ByteWriteChannel::new(mock.clone(), false);
    w.write_fully(b"data").await.unwrap();
    mock.on_write([Act::Fail(timeout())]);
    let res = w.flush_and_close().await;
    assert!(matches!(res, Err(Error::Timeout)), "{res:?}");
    assert_eq!(mock.shutdowns(), 0);
    assert!(w.is_closed_for_write());
    let res = w.write_fully(b"x").await;
    assert!(matches!(res, Err(Error::Timeout)), "{res:?}");

    let mock = MockWriter::default();
    let mut w = ByteWriteChannel::new(mock.clone(), true);
    mock.on_flush([Act::Fail(reset())]);
    assert_reset(w.write_fully(b"data").await, "auto-flush write");
    assert_reset(w.flush_and_close().await, "close");
    assert_eq!(mock.shutdowns(), 0);
}

/// A stalled transport holds a write back; dropping the write and retrying later sends
/// nothing twice (a flush is cancel safe).
#[tokio::test]
async fn a_dropped_flush_on_a_stalled_transport_loses_nothing() {
    let mock = MockWriter::default();
    let mut w = ByteWriteChannel::new(mock.clone(), false);
    w.write_fully(b"0123456789").await.unwrap();
    mock.on_write([Act::Take(4), Act::Stall]);
    assert!(poll_once(w.flush()).await.is_none());
    w.flush().await.unwrap();
    assert_eq!(mock.accepted(), b"0123456789");
}

/// A transport whose shutdown fails fails the channel for good, as any other write failure:
/// a second shutdown, a close, a write and a flush all report the same error (never `Ok` or
/// `ClosedForWrite`), and nothing retries the shutdown (`flush_and_close` and the
/// `AsyncWrite` shutdown alike).
#[tokio::test]
async fn a_failed_shutdown_fails_the_channel() {
    for via_trait in [false, true] {
        let mock = MockWriter::default();
        let mut w = ByteWriteChannel::new(mock.clone(), false);
        w.write_fully(b"x").await.unwrap();
        mock.on_shutdown([Act::Fail(reset())]);
        let first = if via_trait {
            AsyncWriteExt::shutdown(&mut w).await.map_err(Error::from)
        } else {
            w.flush_and_close().await
        };
        assert_reset(first, "shutdown");
        assert!(w.is_closed_for_write());
        assert_reset(
            AsyncWriteExt::shutdown(&mut w).await.map_err(Error::from),
            "second shutdown",
        );
        assert_reset(w.flush_and_close().await, "close after");
        assert_reset(w.write_fully(b"y").await, "write after");
        assert_reset(w.flush().await, "flush after");
        assert_eq!(mock.accepted(), b"x");
        assert_eq!(mock.shutdowns(), 0, "the failed shutdown was retried");
    }
}

// ----- dropping a channel with unflushed bytes -------------------------------------------

/// Dropping a channel that holds unflushed bytes warns once, naming the count; nothing when
/// the buffer is empty.
#[test]
fn dropping_unflushed_bytes_warns_once() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mock = MockWriter::default();
    let mut w = ByteWriteChannel::new(mock.clone(), false);
    runtime.block_on(w.write_fully(b"12345")).unwrap();
    let events = Capture::during(|| drop(w));
    let warnings: Vec<_> = events
        .iter()
        .filter(|(level, _)| *level == tracing::Level::WARN)
        .collect();
    assert_eq!(warnings.len(), 1, "{events:?}");
    assert!(warnings[0].1.contains("unflushed=5"), "{events:?}");
    assert!(mock.accepted().is_empty());

    let mut w = ByteWriteChannel::new(MockWriter::default(), false);
    runtime.block_on(async {
        w.write_fully(b"12345").await.unwrap();
        w.flush().await.unwrap();
    });
    assert_eq!(Capture::during(|| drop(w)), []);
    let w = ByteWriteChannel::new(MockWriter::default(), false);
    assert_eq!(Capture::during(|| drop(w)), []);
    let mut w = ByteWriteChannel::new(MockWriter::default(), false);
    runtime.block_on(w.write_fully(b"12345")).unwrap();
    w.cancel();
    assert_eq!(
        Capture::during(|| drop(w)),
        [],
        "cancel drops the bytes on purpose"
    );
}

// ----- the inner error -------------------------------------------------------------------

/// A custom inner error for the identity tests.
#[derive(Debug)]
struct Marker(u32);

impl std::fmt::Display for Marker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "marker {}", self.0)
    }
}

impl std::error::Error for Marker {}

/// Where the inner error of `e` lives (to tell "the same error" from "an equal one").
fn inner_address(e: &Error) -> *const u8 {
    let inner = e.inner_error().expect("an inner error");
    std::ptr::from_ref(inner).cast()
}

/// A custom inner error delivered by the reader is the same object, downcastable through the
/// accessor, on every report; converting to io::Error and back keeps it.
#[tokio::test]
async fn a_custom_inner_error_is_the_same_on_every_report() {
    let mut ch = ByteReadChannel::new(ChunkedReader::new([
        Step::Data(b"line\n".to_vec()),
        Step::Fail(io::Error::new(io::ErrorKind::ConnectionAborted, Marker(7))),
    ]));
    assert_eq!(
        guard(ch.read_line(10, LineEnding::Default))
            .await
            .unwrap()
            .as_deref(),
        Some("line")
    );
    let first = guard(ch.read_line(10, LineEnding::Default))
        .await
        .unwrap_err();
    let second = guard(ch.read_u8()).await.unwrap_err();
    for e in [&first, &second] {
        assert!(matches!(e, Error::Io(_)), "{e:?}");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
        let marker = e.inner_error().and_then(|i| i.downcast_ref::<Marker>());
        assert_eq!(marker.map(|m| m.0), Some(7), "{e:?}");
        assert_eq!(e.to_string(), "marker 7");
    }
    assert_eq!(inner_address(&first), inner_address(&second));

    // Through io::Error and back (as a codec or a trait user would carry it).
    let back = Error::from(io::Error::from(second));
    assert_eq!(back.kind(), io::ErrorKind::ConnectionAborted);
    assert_eq!(inner_address(&back), inner_address(&first));
}

/// The write side keeps a custom inner error the same way.
#[tokio::test]
async fn a_write_failure_keeps_its_inner_error() {
    let mock = MockWriter::default();
    let mut w = ByteWriteChannel::new(mock.clone(), true);
    mock.on_write([Act::Fail(io::Error::new(
        io::ErrorKind::BrokenPipe,
        Marker(9),
    ))]);
    let first = w.write_fully(b"x").await.unwrap_err();
    let second = w.flush_and_close().await.unwrap_err();
    for e in [&first, &second] {
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        assert!(e.inner_error().is_some_and(|i| i.is::<Marker>()), "{e:?}");
    }
    assert_eq!(inner_address(&first), inner_address(&second));
    assert_eq!(mock.shutdowns(), 0);
}

/// The accessor: None for variants without an io::Error, for OS errors and bare kinds; the
/// inner error itself for a plain io::Error; through the wrapper for a shared one.
#[test]
fn inner_error_accessor() {
    assert!(Error::Timeout.inner_error().is_none());
    assert!(Error::Io(reset()).inner_error().is_none());
    assert!(
        Error::Io(io::Error::from(io::ErrorKind::BrokenPipe))
            .inner_error()
            .is_none()
    );
    let plain = Error::Io(io::Error::other(Marker(1)));
    assert!(plain.inner_error().is_some_and(|i| i.is::<Marker>()));
    let shared = net_io::SharedError::new(Marker(2));
    assert!(shared.get_ref().is::<Marker>());
    let wrapped = Error::Io(io::Error::other(shared.clone()));
    assert!(wrapped.inner_error().is_some_and(|i| i.is::<Marker>()));
    // Not wrapped twice.
    let again = net_io::SharedError::new(shared.clone());
    assert!(again.same_as(&shared));
    assert_eq!(again.to_string(), "marker 2");
}

/// An io::Error carrying one of this crate's errors converts back to that variant, also when
/// the carried error sits in a SharedError.
#[test]
fn carried_errors_convert_back_through_the_wrapper() {
    for (variant, kind) in [
        (Error::Cancelled, io::ErrorKind::ConnectionAborted),
        (Error::Timeout, io::ErrorKind::TimedOut),
        (Error::ClosedForWrite, io::ErrorKind::BrokenPipe),
        (Error::TooLongLine { limit: 3 }, io::ErrorKind::InvalidData),
    ] {
        let text = format!("{variant:?}");
        let io = io::Error::new(kind, net_io::SharedError::new(variant));
        assert_eq!(format!("{:?}", Error::from(io)), text);
    }
    let io = io::Error::new(
        io::ErrorKind::ConnectionReset,
        net_io::SharedError::new(Error::Io(reset())),
    );
    match Error::from(io) {
        Error::Io(e) => assert_eq!(e.raw_os_error(), Some(libc::ECONNRESET)),
        other => panic!("{other:?}"),
    }
}

/// A cancelled pipe writer: the reader reports Cancelled, after the delivered bytes, every time.
#[tokio::test]
async fn a_cancelled_writer_is_cancelled_on_every_read() {
    let (mut w, mut r) = net_io::ByteChannel::new(true);
    w.write_fully(b"ab").await.unwrap();
    w.cancel();
    assert_eq!(guard(r.read_u16()).await.unwrap(), 0x6162);
    for _ in 0..2 {
        let res = guard(r.read_u8()).await;
        assert!(matches!(res, Err(Error::Cancelled)), "{res:?}");
    }
}

// ----- a write cut short ------------------------------------------------------------------

/// Asserts that `res` is the error of a close after a write cut short: `BrokenPipe`.
fn assert_cut<T: std::fmt::Debug>(res: net_io::Result<T>, what: &str) {
    match res {
        Err(Error::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{what}: {e:?}"),
        other => panic!("{what}: expected the cut-short write's error, got {other:?}"),
    }
}

/// A write that went to the transport directly and was dropped after the transport took part
/// of it (a `select!` branch that lost, a timeout) leaves the stream in the middle of that
/// write: neither `flush_and_close` nor tokio's `shutdown` ends it cleanly, whatever was
/// written after it. The close reports an error, does not shut the transport down, and every
/// later operation reports the same error.
#[tokio::test]
async fn a_close_after_a_write_cut_short_is_no_clean_end() {
    for auto_flush in [false, true] {
        // Auto-flushed, a write with nothing buffered goes to the transport directly; without,
        // one larger than the buffer does.
        let cut = vec![7u8; if auto_flush { 20 } else { 20_000 }];
        for later in ["nothing", "a small write", "a large write"] {
            for via_trait in [false, true] {
                let what = format!("auto_flush {auto_flush}, then {later}, trait {via_trait}");
                let mock = MockWriter::default();
                let mut w = ByteWriteChannel::new(mock.clone(), auto_flush);
                w.write_fully(b"head").await.unwrap();
                w.flush().await.unwrap();
                mock.on_write([Act::Take(5), Act::Stall]);
                assert!(poll_once(w.write_fully(&cut)).await.is_none(), "{what}");
                assert_eq!(mock.accepted().len(), 4 + 5, "{what}");
                match later {
                    "a small write" => w.write_fully(b"tail").await.unwrap(),
                    "a large write" => w.write_fully(&cut).await.unwrap(),
                    _ => {}
                }
                let first = if via_trait {
                    AsyncWriteExt::shutdown(&mut w).await.map_err(Error::from)
                } else {
                    w.flush_and_close().await
                };
                assert_cut(first, &what);
                assert_eq!(
                    mock.shutdowns(),
                    0,
                    "{what}: shut down in the middle of a write"
                );
                assert!(w.is_closed_for_write(), "{what}");
                assert_cut(
                    AsyncWriteExt::shutdown(&mut w).await.map_err(Error::from),
                    "second shutdown",
                );
                assert_cut(w.flush_and_close().await, "close again");
                assert_cut(w.write_fully(b"x").await, "write after");
                assert_cut(w.flush().await, "flush after");
                assert_eq!(mock.shutdowns(), 0, "{what}");
            }
        }
    }
}

/// A direct write that waited after the transport took part of it, and then went on to its
/// end (the same future polled again), left nothing missing: the close is clean.
#[tokio::test]
async fn a_write_that_waited_part_way_and_finished_closes_cleanly() {
    for auto_flush in [false, true] {
        let src = vec![7u8; if auto_flush { 20 } else { 20_000 }];
        let mock = MockWriter::default();
        let mut w = ByteWriteChannel::new(mock.clone(), auto_flush);
        mock.on_write([Act::Take(5), Act::Stall]);
        {
            let mut write = std::pin::pin!(w.write_fully(&src));
            assert!(poll_once(write.as_mut()).await.is_none());
            guard(write).await.unwrap();
        }
        w.write_fully(b"tail").await.unwrap();
        guard(w.flush_and_close()).await.unwrap();
        assert_eq!(mock.shutdowns(), 1, "auto_flush {auto_flush}");
        let mut want = src.clone();
        want.extend_from_slice(b"tail");
        assert_eq!(mock.accepted(), want, "auto_flush {auto_flush}");
    }
}

/// Over an in-memory `ByteChannel`, a write cut short (the pipe full, the write dropped) then a
/// close: the close fails, and the reader, after the bytes delivered, fails too (never a clean
/// end of stream in the middle of the write), every time it reads.
#[tokio::test]
async fn a_pipe_writer_that_failed_never_ends_the_stream_cleanly() {
    for end in ["flush_and_close", "shutdown", "drop after close"] {
        let (mut w, mut r) = net_io::ByteChannel::new(true);
        // More than the pipe holds while nobody reads: the write sends a prefix, then waits.
        let big = vec![7u8; 100_000];
        assert!(poll_once(w.write_fully(&big)).await.is_none(), "{end}");
        let closed = match end {
            "shutdown" => AsyncWriteExt::shutdown(&mut w).await.map_err(Error::from),
            _ => w.flush_and_close().await,
        };
        assert_cut(closed, end);
        if end == "drop after close" {
            drop(w);
        }
        let mut received = 0;
        let res = loop {
            match guard(r.discard(u64::MAX)).await {
                Ok(0) => break Ok(()),
                Ok(n) => received += n,
                Err(e) => break Err(e),
            }
        };
        assert!(
            matches!(res, Err(Error::Cancelled)),
            "{end}: after {received} bytes: {res:?}"
        );
        assert!(received < big.len() as u64, "{end}: {received}");
        let again = guard(r.read_u8()).await;
        assert!(matches!(again, Err(Error::Cancelled)), "{end}: {again:?}");
    }
}
