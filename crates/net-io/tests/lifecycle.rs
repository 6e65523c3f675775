//! Channel lifecycle: flushing, closing, cancelling and dropping either end, backpressure,
//! `copy_to`, the tokio-util codec bridge, and the error type's `io::Error` mapping.

mod support;

use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use net_io::{
    ByteChannel, ByteReadChannel, ByteWriteChannel, Error, Frames, LineEnding, WriteState,
};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{BytesCodec, LinesCodec, LinesCodecError};

use support::{ChunkedReader, Step, guard, poll_once};

/// A recognisable payload of `n` bytes.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

/// Polls `fut` once in place (without dropping it); true if it is still pending.
async fn is_pending<F: Future>(fut: Pin<&mut F>) -> bool {
    let mut fut = fut;
    poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_pending())).await
}

/// An `AsyncWrite` whose every operation fails with an error made by `make`.
struct FailingWriter {
    make: fn() -> io::Error,
}

impl AsyncWrite for FailingWriter {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err((self.make)()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Err((self.make)()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Err((self.make)()))
    }
}

/// Every kind of write after flush_and_close fails with ClosedForWrite.
#[tokio::test]
async fn write_after_close_is_closed_for_write() {
    for auto_flush in [false, true] {
        let (mut w, _r) = ByteChannel::new(auto_flush);
        assert!(!w.is_closed_for_write());
        w.write_fully(b"x").await.unwrap();
        w.flush_and_close().await.unwrap();
        assert!(w.is_closed_for_write());
        let results = [
            w.write_u8(1).await,
            w.write_u32_le(1).await,
            w.write_f64(1.0).await,
            w.write_fully(b"abc").await,
            w.write_bytes(Bytes::from_static(b"abc")).await,
            w.write_string_utf8("abc").await,
        ];
        for r in results {
            assert!(
                matches!(r, Err(Error::ClosedForWrite)),
                "auto_flush={auto_flush}: {r:?}"
            );
        }
        match w.write_frame(&mut LinesCodec::new(), "abc").await {
            Err(LinesCodecError::Io(e)) => {
                assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
                assert!(matches!(Error::from(e), Error::ClosedForWrite));
            }
            other => panic!("write_frame after close: {other:?}"),
        }
    }

    let (a, _b) = tokio::io::duplex(64);
    let mut w = ByteWriteChannel::new(a, false);
    w.flush_and_close().await.unwrap();
    let r = w.write_fully(b"late").await;
    assert!(matches!(r, Err(Error::ClosedForWrite)), "duplex: {r:?}");
}

/// A normal close lets the reader drain everything written (more than the pipe holds), then EOF.
#[tokio::test]
async fn close_lets_reader_drain_everything() {
    for auto_flush in [false, true] {
        let data = pattern(300_000);
        let (mut w, mut r) = ByteChannel::new(auto_flush);
        let payload = data.clone();
        let writer = tokio::spawn(async move {
            let mut pos = 0;
            let mut size = 1;
            while pos < payload.len() {
                let end = (pos + size).min(payload.len());
                w.write_fully(&payload[pos..end]).await?;
                pos = end;
                size = size * 3 % 9001 + 1;
            }
            w.flush_and_close().await
        });
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = guard(r.read_available(&mut buf)).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got.len(), data.len(), "auto_flush={auto_flush}");
        assert!(got == data, "auto_flush={auto_flush}: bytes differ");
        guard(writer).await.unwrap().unwrap();
    }
}

/// With auto_flush the peer sees every kind of write without an explicit flush.
#[tokio::test]
async fn auto_flush_peer_sees_write_without_flush() {
    let (a, mut b) = tokio::io::duplex(1024);
    let mut w = ByteWriteChannel::new(a, true);
    assert!(w.auto_flush());
    let mut buf = [0u8; 64];

    w.write_fully(b"abc").await.unwrap();
    assert_eq!(
        poll_once(b.read(&mut buf))
            .await
            .expect("not delivered")
            .unwrap(),
        3
    );
    assert_eq!(&buf[..3], b"abc");

    w.write_u32(0x0102_0304).await.unwrap();
    assert_eq!(
        poll_once(b.read(&mut buf))
            .await
            .expect("not delivered")
            .unwrap(),
        4
    );
    assert_eq!(&buf[..4], &[1, 2, 3, 4]);

    w.write_string_utf8("h\u{e9}").await.unwrap();
    assert_eq!(
        poll_once(b.read(&mut buf))
            .await
            .expect("not delivered")
            .unwrap(),
        3
    );
    assert_eq!(&buf[..3], "h\u{e9}".as_bytes());

    w.write_bytes(Bytes::from_static(b"zz")).await.unwrap();
    assert_eq!(
        poll_once(b.read(&mut buf))
            .await
            .expect("not delivered")
            .unwrap(),
        2
    );

    w.write_frame(&mut LinesCodec::new(), "ln").await.unwrap();
    assert_eq!(
        poll_once(b.read(&mut buf))
            .await
            .expect("not delivered")
            .unwrap(),
        3
    );
    assert_eq!(&buf[..3], b"ln\n");

    // And through the in-memory pipe.
    let (mut w, mut r) = ByteChannel::new(true);
    assert!(w.auto_flush());
    w.write_u8(7).await.unwrap();
    assert_eq!(guard(r.read_u8()).await.unwrap(), 7);
}

/// Without auto_flush a small write is invisible to the peer until flush.
#[tokio::test]
async fn without_auto_flush_small_write_waits_for_flush() {
    let (a, mut b) = tokio::io::duplex(1024);
    let mut w = ByteWriteChannel::new(a, false);
    assert!(!w.auto_flush());
    let mut buf = [0u8; 64];
    w.write_fully(b"abc").await.unwrap();
    w.write_u16(5).await.unwrap();
    assert!(
        poll_once(b.read(&mut buf)).await.is_none(),
        "peer saw bytes before flush"
    );
    w.flush().await.unwrap();
    assert_eq!(
        poll_once(b.read(&mut buf))
            .await
            .expect("not flushed")
            .unwrap(),
        5
    );
    assert_eq!(&buf[..5], b"abc\x00\x05");

    let (mut w, mut r) = ByteChannel::new(false);
    w.write_fully(b"abc").await.unwrap();
    assert!(
        poll_once(r.await_content(1)).await.is_none(),
        "reader saw bytes before flush"
    );
    assert_eq!(r.available_for_read(), 0);
    w.flush().await.unwrap();
    assert!(guard(r.await_content(3)).await.unwrap());
    assert_eq!(
        guard(r.read_bytes(3)).await.unwrap(),
        Bytes::from_static(b"abc")
    );
}

/// Without auto_flush a large write reaches the transport as the buffer fills, before any flush.
#[tokio::test]
async fn without_auto_flush_full_buffer_is_flushed() {
    let data = pattern(1 << 20);
    let (a, mut b) = tokio::io::duplex(64);
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let peer = tokio::spawn(async move {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = b.read(&mut buf).await.unwrap();
            if n == 0 {
                return all;
            }
            all.extend_from_slice(&buf[..n]);
            counter.fetch_add(n, Ordering::SeqCst);
        }
    });
    let mut w = ByteWriteChannel::new(a, false);
    guard(w.write_fully(&data)).await.unwrap();
    assert!(
        received.load(Ordering::SeqCst) > 0,
        "a 1 MiB write completed with nothing sent to the transport: the buffer is unbounded"
    );
    guard(w.flush_and_close()).await.unwrap();
    assert!(guard(peer).await.unwrap() == data);
}

/// A peer that reads nothing blocks a 16 MiB write (bounded buffering, backpressure).
#[tokio::test]
async fn slow_peer_applies_backpressure() {
    let data = vec![0u8; 16 << 20];
    for auto_flush in [false, true] {
        let (a, _b) = tokio::io::duplex(64);
        let mut w = ByteWriteChannel::new(a, auto_flush);
        assert!(
            poll_once(w.write_fully(&data)).await.is_none(),
            "auto_flush={auto_flush}: 16 MiB write completed against a peer that reads nothing"
        );
    }
    let (mut w, _r) = ByteChannel::new(false);
    let mut fut = pin!(w.write_fully(&data));
    assert!(
        is_pending(fut.as_mut()).await,
        "16 MiB write into a 64 KiB pipe completed"
    );
}

/// Reader cancel() discards buffered data and every later read fails with Cancelled.
#[tokio::test]
async fn reader_cancel_discards_and_fails_later_reads() {
    let (mut w, mut r) = ByteChannel::new(true);
    w.write_fully(b"line\nmore").await.unwrap();
    assert!(guard(r.await_content(9)).await.unwrap());
    r.cancel();
    assert_eq!(r.available_for_read(), 0);
    assert!(r.is_closed_for_read());

    let mut s = String::new();
    let mut buf = [0u8; 4];
    macro_rules! assert_cancelled {
        ($e:expr) => {
            let r = guard($e).await;
            assert!(
                matches!(r, Err(Error::Cancelled)),
                "{}: {r:?}",
                stringify!($e)
            );
        };
    }
    assert_cancelled!(r.read_u8());
    assert_cancelled!(r.read_u64_le());
    assert_cancelled!(r.read_line(100, LineEnding::Default));
    assert_cancelled!(r.read_line_strict(100, LineEnding::Lenient));
    assert_cancelled!(r.read_utf8_line(100));
    assert_cancelled!(r.read_line_to(&mut s, 100, LineEnding::Default));
    assert_cancelled!(r.read_fully(&mut buf));
    assert_cancelled!(r.read_available(&mut buf));
    assert_cancelled!(r.read_bytes(1));
    assert_cancelled!(r.read_remaining(100));
    assert_cancelled!(r.discard(1));
    assert_cancelled!(r.discard_exact(1));
    assert_cancelled!(r.await_content(1));
    assert_cancelled!(r.peek(1));
    assert_cancelled!(r.skip_if_found(b"m"));
    assert!(s.is_empty());

    // Cancelling a channel that holds bytes from memory works the same.
    let mut r = ByteReadChannel::from_bytes(&b"abc"[..]);
    r.cancel();
    assert_eq!(r.available_for_read(), 0);
    assert_cancelled!(r.read_u8());
}

/// A write blocked on a full ByteChannel fails with Cancelled when the reader is cancelled/dropped.
#[tokio::test]
async fn blocked_writer_released_by_reader_cancel() {
    let data = pattern(256 * 1024);
    for drop_reader in [false, true] {
        let (mut w, mut r) = ByteChannel::new(false);
        let mut fut = pin!(w.write_fully(&data));
        assert!(
            is_pending(fut.as_mut()).await,
            "256 KiB write into a 64 KiB pipe completed"
        );
        if drop_reader {
            drop(r);
        } else {
            r.cancel();
        }
        let res = guard(fut).await;
        assert!(
            matches!(res, Err(Error::Cancelled)),
            "drop_reader={drop_reader}: {res:?}"
        );
    }
}

/// A writer task blocked on a full ByteChannel ends with Cancelled on reader cancel or drop.
#[tokio::test]
async fn blocked_writer_task_released_by_reader_cancel_or_drop() {
    for drop_reader in [false, true] {
        for auto_flush in [false, true] {
            let (mut w, mut r) = ByteChannel::new(auto_flush);
            let writer = tokio::spawn(async move { w.write_fully(&pattern(1 << 20)).await });
            // The writer has started and filled what it can.
            assert!(guard(r.await_content(1)).await.unwrap());
            if drop_reader {
                drop(r);
            } else {
                r.cancel();
            }
            let res = guard(writer).await.unwrap();
            assert!(
                matches!(res, Err(Error::Cancelled)),
                "drop_reader={drop_reader} auto_flush={auto_flush}: {res:?}"
            );
        }
    }
}

/// After the reader is cancelled or dropped, the writer's next write or flush is Cancelled.
#[tokio::test]
async fn writes_after_reader_gone_fail_with_cancelled() {
    for drop_reader in [false, true] {
        let (mut w, mut r) = ByteChannel::new(true);
        if drop_reader {
            drop(r);
        } else {
            r.cancel();
        }
        let res = w.write_fully(b"x").await;
        assert!(
            matches!(res, Err(Error::Cancelled)),
            "drop_reader={drop_reader}: {res:?}"
        );

        let (mut w, mut r) = ByteChannel::new(false);
        if drop_reader {
            drop(r);
        } else {
            r.cancel();
        }
        let res = match w.write_fully(b"x").await {
            Ok(()) => w.flush().await,
            err => err,
        };
        assert!(
            matches!(res, Err(Error::Cancelled)),
            "buffered, drop_reader={drop_reader}: {res:?}"
        );
    }
}

/// Dropping the writer without closing is a clean EOF for the reader, after what was delivered,
/// when nothing it accepted is missing; otherwise the reader fails.
#[tokio::test]
async fn dropping_writer_is_eof_for_reader() {
    let (mut w, mut r) = ByteChannel::new(true);
    w.write_fully(b"abc\nde").await.unwrap();
    assert_eq!(
        guard(r.read_line(10, LineEnding::Default))
            .await
            .unwrap()
            .as_deref(),
        Some("abc")
    );
    assert!(
        poll_once(r.read_line(10, LineEnding::Default))
            .await
            .is_none()
    );
    drop(w);
    assert_eq!(
        guard(r.read_line(10, LineEnding::Default))
            .await
            .unwrap()
            .as_deref(),
        Some("de")
    );
    assert_eq!(
        guard(r.read_line(10, LineEnding::Default)).await.unwrap(),
        None
    );
    let res = guard(r.read_u8()).await;
    assert!(
        matches!(
            res,
            Err(Error::UnexpectedEof {
                needed: 1,
                available: 0
            })
        ),
        "{res:?}"
    );
    assert!(r.is_closed_for_read());

    // A buffered writer dropped with bytes its writes accepted still unflushed: the stream
    // lacks them, so the reader gets what was delivered, then fails as after a `cancel` (as a
    // socket's close then resets), never a clean end of a truncated stream. (Before, a clean
    // end.)
    let (mut w, mut r) = ByteChannel::new(false);
    w.write_fully(b"delivered").await.unwrap();
    w.flush().await.unwrap();
    w.write_fully(b", unflushed").await.unwrap();
    drop(w);
    assert_eq!(guard(r.read_bytes(9)).await.unwrap(), &b"delivered"[..]);
    let res = guard(r.read_remaining(usize::MAX)).await;
    assert!(matches!(res, Err(Error::Cancelled)), "{res:?}");
    assert!(r.is_closed_for_read());

    // The same after a write that went to the pipe directly and was dropped part-way: the
    // rest of it is missing.
    let (mut w, mut r) = ByteChannel::new(true);
    let big = pattern(200 * 1024);
    assert!(
        poll_once(w.write_fully(&big)).await.is_none(),
        "waits for room"
    );
    drop(w);
    let res = guard(r.read_remaining(usize::MAX)).await;
    assert!(matches!(res, Err(Error::Cancelled)), "{res:?}");
}

/// Writer cancel(): later writes are ClosedForWrite; the reader gets what was sent, then Cancelled.
#[tokio::test]
async fn writer_cancel() {
    let (mut w, mut r) = ByteChannel::new(true);
    w.write_fully(b"abc").await.unwrap();
    w.cancel();
    assert!(w.is_closed_for_write());
    let res = w.write_u8(1).await;
    assert!(matches!(res, Err(Error::ClosedForWrite)), "{res:?}");
    assert_eq!(
        guard(r.read_bytes(3)).await.unwrap(),
        Bytes::from_static(b"abc")
    );
    let res = guard(r.read_u8()).await;
    assert!(matches!(res, Err(Error::Cancelled)), "{res:?}");

    let (mut w, mut r) = ByteChannel::new(false);
    w.write_fully(b"buffered").await.unwrap();
    w.cancel();
    let res = guard(r.read_u8()).await;
    assert!(
        matches!(res, Err(Error::Cancelled)),
        "buffered bytes: {res:?}"
    );

    // Over a transport: buffered bytes are dropped and the transport is dropped (peer EOF).
    let (a, mut b) = tokio::io::duplex(1024);
    let mut w = ByteWriteChannel::new(a, false);
    w.write_fully(b"dropped").await.unwrap();
    w.cancel();
    let mut got = Vec::new();
    guard(b.read_to_end(&mut got)).await.unwrap();
    assert!(got.is_empty(), "cancel flushed {got:?}");
}

/// flush_and_close half-closes: the peer reads all then EOF, and our read side still works.
#[tokio::test]
async fn flush_and_close_is_half_close() {
    let (ours, mut peer) = tokio::io::duplex(1024);
    let (rd, wr) = tokio::io::split(ours);
    let mut input = ByteReadChannel::new(rd);
    let mut output = ByteWriteChannel::new(wr, false);
    output.write_string_utf8("ping\n").await.unwrap();
    guard(output.flush_and_close()).await.unwrap();
    let mut got = Vec::new();
    guard(peer.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"ping\n");
    peer.write_all(b"pong\n").await.unwrap();
    assert_eq!(
        guard(input.read_line(10, LineEnding::Default))
            .await
            .unwrap()
            .as_deref(),
        Some("pong")
    );
}

/// copy_to pumps at most `limit` bytes, flushes and leaves open the destination, keeps the rest.
#[tokio::test]
async fn copy_to_with_limit() {
    let data = pattern(100);
    let mut src = ByteReadChannel::from_bytes(data.clone());
    let (mut dst, mut out) = ByteChannel::new(false);
    assert_eq!(guard(src.copy_to(&mut dst, 60)).await.unwrap(), 60);
    assert!(!dst.is_closed_for_write());
    // Readable without any flush of ours: copy_to flushed.
    assert_eq!(&guard(out.read_bytes(60)).await.unwrap()[..], &data[..60]);
    assert_eq!(guard(src.copy_to(&mut dst, 0)).await.unwrap(), 0);
    assert_eq!(guard(src.copy_to(&mut dst, u64::MAX)).await.unwrap(), 40);
    assert_eq!(&guard(out.read_bytes(40)).await.unwrap()[..], &data[60..]);
    assert_eq!(guard(src.copy_to(&mut dst, u64::MAX)).await.unwrap(), 0);
    dst.write_fully(b"after").await.unwrap();
    dst.flush_and_close().await.unwrap();
    assert_eq!(
        guard(out.read_remaining(100)).await.unwrap(),
        Bytes::from_static(b"after")
    );

    // Larger than the pipe, from a chunked source, to a reader in another task.
    let big = pattern(300_000);
    let mut src = ByteReadChannel::new(ChunkedReader::chunks_with_pauses(big.chunks(7000)));
    let (mut dst, mut out) = ByteChannel::new(false);
    let drain = tokio::spawn(async move { out.read_remaining(usize::MAX).await });
    assert_eq!(
        guard(src.copy_to(&mut dst, 250_000)).await.unwrap(),
        250_000
    );
    assert_eq!(
        guard(src.copy_to(&mut dst, u64::MAX)).await.unwrap(),
        50_000
    );
    dst.flush_and_close().await.unwrap();
    let got = guard(drain).await.unwrap().unwrap();
    assert!(got[..] == big[..]);
}

/// read_frame with LinesCodec decodes lines across chunks, then None; max length is its error.
#[tokio::test]
async fn read_frame_with_lines_codec() {
    let mut ch = ByteReadChannel::new(ChunkedReader::chunks_with_pauses([
        &b"on"[..],
        b"e\r\ntw",
        b"o\nthr",
        b"ee",
    ]));
    let mut codec = LinesCodec::new();
    let mut lines = Vec::new();
    while let Some(line) = guard(ch.read_frame(&mut codec)).await.unwrap() {
        lines.push(line);
    }
    assert_eq!(lines, ["one", "two", "three"]);
    assert_eq!(guard(ch.read_frame(&mut codec)).await.unwrap(), None);

    let mut ch = ByteReadChannel::from_bytes(&b"abcd\n"[..]);
    let mut codec = LinesCodec::new_with_max_length(3);
    let res = guard(ch.read_frame(&mut codec)).await;
    assert!(
        matches!(res, Err(LinesCodecError::MaxLineLengthExceeded)),
        "{res:?}"
    );
}

/// read_frame with BytesCodec yields all bytes in order, then None.
#[tokio::test]
async fn read_frame_with_bytes_codec() {
    let data = pattern(10_000);
    let mut ch = ByteReadChannel::new(ChunkedReader::chunks_with_pauses(data.chunks(999)));
    let mut codec = BytesCodec::new();
    let mut got = BytesMut::new();
    let mut frames = 0;
    while let Some(frame) = guard(ch.read_frame(&mut codec)).await.unwrap() {
        assert!(!frame.is_empty(), "empty frame");
        got.extend_from_slice(&frame);
        frames += 1;
        assert!(frames <= data.len(), "endless frames");
    }
    assert_eq!(&got[..], &data[..]);
}

/// A transport error reaches a codec through its io::Error variant.
#[tokio::test]
async fn read_frame_propagates_transport_error() {
    let mut ch = ByteReadChannel::new(ChunkedReader::new([
        Step::Data(b"ok\npart".to_vec()),
        Step::Fail(io::Error::from(io::ErrorKind::ConnectionReset)),
    ]));
    let mut codec = LinesCodec::new();
    assert_eq!(
        guard(ch.read_frame(&mut codec)).await.unwrap().as_deref(),
        Some("ok")
    );
    match guard(ch.read_frame(&mut codec)).await {
        Err(LinesCodecError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
        other => panic!("expected Io(ConnectionReset), got {other:?}"),
    }
}

/// into_frames is a Stream of decoded frames that ends with None at EOF.
#[tokio::test]
async fn into_frames_is_a_stream() {
    let ch = ByteReadChannel::new(ChunkedReader::chunks_with_pauses([
        &b"a\nb"[..],
        b"b\n",
        b"c",
    ]));
    let mut frames: Frames<LinesCodec> = ch.into_frames(LinesCodec::new());
    let mut got = Vec::new();
    while let Some(item) = guard(poll_fn(|cx| Pin::new(&mut frames).poll_next(cx))).await {
        got.push(item.unwrap());
        assert!(got.len() <= 3, "endless stream: {got:?}");
    }
    assert_eq!(got, ["a", "bb", "c"]);

    let (mut w, r) = ByteChannel::new(true);
    let mut frames = r.into_frames(BytesCodec::new());
    w.write_fully(b"xyz").await.unwrap();
    drop(w);
    let mut all = BytesMut::new();
    while let Some(item) = guard(poll_fn(|cx| Pin::new(&mut frames).poll_next(cx))).await {
        all.extend_from_slice(&item.unwrap());
    }
    assert_eq!(&all[..], b"xyz");
}

/// write_frame with LinesCodec writes each item followed by a newline.
#[tokio::test]
async fn write_frame_with_lines_codec() {
    let (mut w, mut r) = ByteChannel::new(false);
    let mut codec = LinesCodec::new();
    w.write_frame(&mut codec, "hello").await.unwrap();
    w.write_frame(&mut codec, String::from("world"))
        .await
        .unwrap();
    w.flush_and_close().await.unwrap();
    assert_eq!(
        guard(r.read_remaining(100)).await.unwrap(),
        Bytes::from_static(b"hello\nworld\n")
    );
}

/// Each Error variant maps to the io::ErrorKind of SPEC §2.1 and round-trips back unchanged.
#[test]
fn error_to_io_error_kinds_and_back() {
    let cases: Vec<(Error, &[io::ErrorKind])> = vec![
        (
            Error::TooLongLine { limit: 7 },
            &[io::ErrorKind::InvalidData],
        ),
        (
            Error::UnexpectedEof {
                needed: 8,
                available: 3,
            },
            &[io::ErrorKind::UnexpectedEof],
        ),
        (Error::ClosedForWrite, &[io::ErrorKind::BrokenPipe]),
        // SPEC: `Other` (or `ConnectionAborted`); the API note picks ConnectionAborted.
        (
            Error::Cancelled,
            &[io::ErrorKind::ConnectionAborted, io::ErrorKind::Other],
        ),
        (Error::Timeout, &[io::ErrorKind::TimedOut]),
    ];
    for (e, kinds) in cases {
        let text = format!("{e:?}");
        let io_err: io::Error = e.into();
        assert!(
            kinds.contains(&io_err.kind()),
            "{text} -> {:?}",
            io_err.kind()
        );
        let back = Error::from(io_err);
        assert_eq!(format!("{back:?}"), text, "round trip changed the error");
    }
    let back = Error::from(io::Error::from(Error::TooLongLine { limit: 7 }));
    assert!(matches!(back, Error::TooLongLine { limit: 7 }));
    let back = Error::from(io::Error::from(Error::UnexpectedEof {
        needed: 8,
        available: 3,
    }));
    assert!(matches!(
        back,
        Error::UnexpectedEof {
            needed: 8,
            available: 3
        }
    ));
}

/// A custom inner error for the `Io` tests.
#[derive(Debug)]
struct Marker;
impl std::fmt::Display for Marker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("marker")
    }
}
impl std::error::Error for Marker {}

/// Error::Io(e) converts back to e unchanged; a foreign io::Error becomes Error::Io.
#[test]
fn io_variant_is_passed_through_unchanged() {
    let e = Error::from(io::Error::new(io::ErrorKind::ConnectionReset, Marker));
    let Error::Io(inner) = &e else {
        panic!("expected Io, got {e:?}")
    };
    assert_eq!(inner.kind(), io::ErrorKind::ConnectionReset);
    let back: io::Error = e.into();
    assert_eq!(back.kind(), io::ErrorKind::ConnectionReset);
    assert!(
        back.get_ref().is_some_and(|i| i.is::<Marker>()),
        "inner error lost: {back:?}"
    );

    let e = Error::from(io::Error::from_raw_os_error(104));
    assert!(
        matches!(&e, Error::Io(i) if i.raw_os_error() == Some(104)),
        "{e:?}"
    );
    let back: io::Error = e.into();
    assert_eq!(back.raw_os_error(), Some(104));

    let e = Error::from(io::Error::from(io::ErrorKind::BrokenPipe));
    assert!(
        matches!(&e, Error::Io(i) if i.kind() == io::ErrorKind::BrokenPipe),
        "{e:?}"
    );
}

/// An io::Error carrying a net_io::Error (from an adapter) is unwrapped to that variant.
#[tokio::test]
async fn io_error_wrapping_net_io_error_is_unwrapped() {
    for (variant, kind) in [
        (Error::Timeout, io::ErrorKind::TimedOut),
        (Error::Cancelled, io::ErrorKind::ConnectionAborted),
        (Error::ClosedForWrite, io::ErrorKind::BrokenPipe),
    ] {
        let text = format!("{variant:?}");
        let back = Error::from(io::Error::new(kind, variant));
        assert_eq!(format!("{back:?}"), text);
    }

    let mut ch = ByteReadChannel::new(ChunkedReader::new([
        Step::Data(b"ab".to_vec()),
        Step::Fail(io::Error::new(io::ErrorKind::TimedOut, Error::Timeout)),
    ]));
    let res = guard(ch.read_line(10, LineEnding::Default)).await;
    assert!(matches!(res, Err(Error::Timeout)), "{res:?}");

    let mut ch = ByteReadChannel::new(ChunkedReader::new([Step::Fail(io::Error::from(
        io::ErrorKind::ConnectionReset,
    ))]));
    let res = guard(ch.read_u32()).await;
    assert!(
        matches!(&res, Err(Error::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset),
        "{res:?}"
    );

    let mut w = ByteWriteChannel::new(
        FailingWriter {
            make: || io::Error::new(io::ErrorKind::TimedOut, Error::Timeout),
        },
        true,
    );
    let res = guard(w.write_fully(b"x")).await;
    assert!(matches!(res, Err(Error::Timeout)), "{res:?}");

    let mut w = ByteWriteChannel::new(
        FailingWriter {
            make: || io::Error::from(io::ErrorKind::BrokenPipe),
        },
        false,
    );
    w.write_fully(b"x").await.unwrap();
    let res = guard(w.flush()).await;
    assert!(
        matches!(&res, Err(Error::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe),
        "{res:?}"
    );
}

/// Channels, Frames and Error are Send + 'static and work across a multi-thread runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_are_send_and_work_across_threads() {
    fn assert_send_static<T: Send + 'static + std::fmt::Debug>() {}
    fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}
    assert_send_static::<ByteReadChannel>();
    assert_send_static::<ByteWriteChannel>();
    assert_send_static::<Frames<LinesCodec>>();
    assert_error::<Error>();

    let (mut w, mut r) = ByteChannel::new(false);
    let writer = tokio::spawn(async move {
        for i in 0..2000 {
            w.write_string_utf8(&format!("line {i}\r\n")).await?;
        }
        w.flush_and_close().await
    });
    let reader = tokio::spawn(async move {
        let mut buf = String::new();
        let mut n = 0;
        while r
            .read_line_to(&mut buf, 100, LineEnding::Default)
            .await?
            .is_some()
        {
            assert_eq!(buf, format!("line {n}"));
            buf.clear();
            n += 1;
        }
        Ok::<usize, Error>(n)
    });
    guard(writer).await.unwrap().unwrap();
    assert_eq!(guard(reader).await.unwrap().unwrap(), 2000);
}

/// The shared [`WriteState`] hears of bytes thrown away (a cancel or a drop with some unsent),
/// and of nothing else: not of a cancel or drop with nothing buffered, nor of a clean close. It
/// says whether bytes are unsent meanwhile.
#[tokio::test]
async fn the_write_state_hears_only_of_buffered_bytes_thrown_away() {
    enum End {
        Cancel,
        Drop,
        Close,
    }
    for (unsent, end, lost) in [
        (true, End::Cancel, true),
        (true, End::Drop, true),
        (false, End::Cancel, false),
        (false, End::Drop, false),
        (true, End::Close, false),
    ] {
        let state = WriteState::new();
        let mut output = ByteWriteChannel::new(tokio::io::sink(), false);
        output.share_state(state.clone());
        // Nothing written, nothing held (a close now would be a clean one).
        output.write_fully(b"").await.unwrap();
        assert!(!state.has_unsent());
        output.write_fully(b"flushed").await.unwrap();
        assert!(state.has_unsent());
        output.flush().await.unwrap();
        assert!(!state.has_unsent());
        if unsent {
            output.write_fully(b"buffered").await.unwrap();
        }
        assert_eq!(state.has_unsent(), unsent);
        match end {
            End::Cancel => {
                output.cancel();
                output.cancel();
                drop(output);
            }
            End::Drop => drop(output),
            End::Close => {
                output.flush_and_close().await.unwrap();
                drop(output);
            }
        }
        assert_eq!(state.lost_bytes(), lost);
        assert!(!state.has_unsent(), "nothing is held any more");
    }
}

/// A write that goes to the transport directly and is dropped after the transport took part of
/// it leaves the stream ending in the middle of that write: a later cancel tells the shared
/// [`WriteState`], though nothing is buffered. A write dropped before anything left does not.
#[tokio::test]
async fn the_write_state_hears_of_a_write_cut_short() {
    for (prefix_sent, lost) in [(true, true), (false, false)] {
        // A pipe of 4 bytes nobody reads: a write takes 4 bytes, or none once it is full.
        let (client, _server) = tokio::io::duplex(4);
        let mut output = ByteWriteChannel::new(client, true);
        if !prefix_sent {
            output.write_fully(b"full").await.unwrap();
        }
        let state = WriteState::new();
        output.share_state(state.clone());
        {
            let mut write = pin!(output.write_fully(b"longer than the pipe"));
            assert!(is_pending(write.as_mut()).await);
        }
        output.cancel();
        assert_eq!(state.lost_bytes(), lost, "prefix sent: {prefix_sent}");
    }
}

/// A transport that takes 4 bytes a call, or none (pending) while `pending` is set, and notes
/// what the shared [`WriteState`] says as each call hands it bytes.
struct Watching {
    state: WriteState,
    seen: Arc<std::sync::Mutex<Vec<bool>>>,
    pending: Arc<std::sync::atomic::AtomicBool>,
}

impl AsyncWrite for Watching {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.pending.load(Ordering::SeqCst) {
            return Poll::Pending;
        }
        self.seen.lock().unwrap().push(self.state.has_unsent());
        Poll::Ready(Ok(buf.len().min(4)))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// While a write that goes to the transport directly hands it bytes (its first ones
/// included), the shared state says bytes are unsent: an owner that ends the stream at that
/// moment (a socket's close on another thread) must not end it cleanly after a prefix of the
/// write. It said so only once the write had waited part-way, so a close racing a write that
/// never waited sent FIN after part of it. Once the write is done, or while it waits having
/// handed over nothing (dropped then, it had no effect), nothing is unsent.
#[tokio::test]
async fn the_write_state_counts_a_direct_write_unsent_while_it_hands_over_bytes() {
    // Auto-flushed (every write goes directly), and too big for the buffer.
    for (auto_flush, len) in [(true, 10), (false, 20_000)] {
        let state = WriteState::new();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let pending = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let transport = Watching {
            state: state.clone(),
            seen: Arc::clone(&seen),
            pending: Arc::clone(&pending),
        };
        let mut output = ByteWriteChannel::new(transport, auto_flush);
        output.share_state(state.clone());
        let body = pattern(len);
        {
            let mut write = pin!(output.write_fully(&body));
            assert!(is_pending(write.as_mut()).await);
            assert!(
                !state.has_unsent(),
                "auto flush {auto_flush}: a write that handed over nothing is not unsent"
            );
        }
        assert!(!state.has_unsent() && !state.lost_bytes());
        pending.store(false, Ordering::SeqCst);
        output.write_fully(&body).await.unwrap();
        let seen = std::mem::take(&mut *seen.lock().unwrap());
        assert_eq!(seen.len(), len.div_ceil(4));
        assert!(
            seen.iter().all(|unsent| *unsent),
            "auto flush {auto_flush}: the write was not unsent as it handed over bytes: {seen:?}"
        );
        assert!(
            !state.has_unsent(),
            "auto flush {auto_flush}: the write is done"
        );
        assert!(!state.lost_bytes());
    }
}

/// A write cut short stays known until the channel ends, whatever follows it: the state says
/// bytes are unsent while the channel is still there (a close now ends the stream in the middle
/// of that write), and a later write that goes to the transport directly and completes, or a
/// flush, does not make the stream whole again: the cancel that follows still tells of the
/// loss.
#[tokio::test]
async fn the_write_state_keeps_a_write_cut_short_past_later_writes() {
    for later in ["direct", "buffered and flushed"] {
        let (client, mut server) = tokio::io::duplex(4);
        let mut output = ByteWriteChannel::new(client, true);
        let state = WriteState::new();
        output.share_state(state.clone());
        {
            let mut write = pin!(output.write_fully(b"longer than the pipe"));
            assert!(is_pending(write.as_mut()).await);
        }
        assert!(
            state.has_unsent() || state.lost_bytes(),
            "{later}: the stream would end in the middle of a write"
        );
        // The peer reads what arrives: later writes complete.
        let reader = tokio::spawn(async move {
            let mut sink = Vec::new();
            server.read_to_end(&mut sink).await.map(|_| sink.len())
        });
        if later == "direct" {
            guard(output.write_fully(&[7; 20_000])).await.unwrap();
        } else {
            guard(output.write_fully(b"small")).await.unwrap();
            guard(output.flush()).await.unwrap();
        }
        assert!(
            state.has_unsent() || state.lost_bytes(),
            "{later}: the earlier write is still cut short"
        );
        output.cancel();
        assert!(state.lost_bytes(), "{later}: the cut-short write is lost");
        drop(output);
        guard(reader).await.unwrap().unwrap();
    }
}

/// A state shared after the channel already lost bytes hears of the loss at once: after a write
/// cut short and a later direct write (the stream misses bytes for good), and after a failure
/// that threw buffered bytes away. A state shared after a clean history hears nothing.
#[tokio::test]
async fn a_write_state_shared_after_a_loss_hears_of_it() {
    // A write cut short, then a direct write that starts: the rest of the first is lost.
    let (client, mut server) = tokio::io::duplex(4);
    let mut output = ByteWriteChannel::new(client, true);
    {
        let mut write = pin!(output.write_fully(b"longer than the pipe"));
        assert!(is_pending(write.as_mut()).await);
    }
    let reader = tokio::spawn(async move {
        let mut sink = Vec::new();
        server.read_to_end(&mut sink).await.map(|_| sink.len())
    });
    guard(output.write_fully(&[7; 20_000])).await.unwrap();
    let state = WriteState::new();
    output.share_state(state.clone());
    assert!(state.lost_bytes(), "shared after a gap in the stream");
    drop(output);
    guard(reader).await.unwrap().unwrap();

    // A failure with bytes buffered.
    let (client, server) = tokio::io::duplex(64);
    let mut output = ByteWriteChannel::new(client, false);
    output.write_fully(b"buffered").await.unwrap();
    drop(server);
    assert!(output.flush().await.is_err());
    let state = WriteState::new();
    output.share_state(state.clone());
    assert!(
        state.lost_bytes(),
        "shared after a failure that threw bytes away"
    );

    // Nothing lost.
    let mut output = ByteWriteChannel::new(tokio::io::sink(), false);
    output.write_fully(b"sent").await.unwrap();
    output.flush().await.unwrap();
    let state = WriteState::new();
    output.share_state(state.clone());
    assert!(!state.lost_bytes() && !state.has_unsent());
}

/// A transport that takes 4 bytes, then fails every call (as a socket closed by another
/// thread between two sends of one write).
struct FailsAfterFour {
    taken: bool,
}

impl AsyncWrite for FailsAfterFour {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if std::mem::replace(&mut self.taken, true) {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        }
        Poll::Ready(Ok(buf.len().min(4)))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A write that goes to the transport directly and fails after the transport took part of it
/// (a socket's close on another thread, between two of its sends) leaves the shared state
/// telling of the loss, also once the write has failed: an owner that decides how the stream
/// ends after that (the close, which marked the socket closed and looks at the state only
/// then) must not end it cleanly after a prefix of the write. (Before, the failure cleared
/// "unsent" and marked nothing lost: a close that looked late sent FIN after the prefix.)
#[tokio::test]
async fn a_direct_write_failed_after_a_prefix_leaves_the_state_telling_of_the_loss() {
    // Auto-flushed (every write goes directly), and too big for the buffer.
    for (auto_flush, len) in [(true, 10), (false, 20_000)] {
        let state = WriteState::new();
        let mut output = ByteWriteChannel::new(FailsAfterFour { taken: false }, auto_flush);
        output.share_state(state.clone());
        let e = output.write_fully(&pattern(len)).await.unwrap_err();
        assert!(matches!(e, Error::Io(_)), "auto flush {auto_flush}: {e:?}");
        assert!(
            state.has_unsent() || state.lost_bytes(),
            "auto flush {auto_flush}: 4 bytes of the write left, the rest never will"
        );
        drop(output);
        assert!(
            state.lost_bytes(),
            "auto flush {auto_flush}: after the drop"
        );
    }
}

/// `total_bytes_written` counts the bytes writes accepted: a write call that fails, with its
/// bytes thrown away (none reached the pipe, whose reader is gone), accepted none, whichever
/// path its bytes took. (Before, a buffered `write_fully` of 8 KiB, and an auto-flushed
/// `poll_write`, counted theirs; a larger or an auto-flushed `write_fully` did not.)
#[tokio::test]
async fn a_failed_write_whose_bytes_were_thrown_away_counts_nothing() {
    for (auto_flush, len, through_the_trait) in [
        (false, 8193, false),
        (false, 8192, false),
        (true, 3, false),
        (true, 3, true),
    ] {
        let (mut w, r) = ByteChannel::new(auto_flush);
        drop(r);
        let data = vec![7u8; len];
        let res = if through_the_trait {
            AsyncWriteExt::write(&mut w, &data)
                .await
                .map(|_| ())
                .map_err(Error::from)
        } else {
            w.write_fully(&data).await
        };
        assert!(matches!(res, Err(Error::Cancelled)), "{res:?}");
        assert!(w.is_closed_for_write());
        assert_eq!(
            w.total_bytes_written(),
            0,
            "auto_flush {auto_flush}, {len} bytes, through the trait {through_the_trait}"
        );
    }
}
