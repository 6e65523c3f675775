//! SPEC §4.2 completions of Ktor's API: `read_until`, `copy_and_close`,
//! `total_bytes_read` / `total_bytes_written`.

mod support;

use std::io;

use bytes::Bytes;
use net_io::{ByteChannel, ByteReadChannel, ByteWriteChannel, Error, LineEnding};
use support::{Act, ChunkedReader, MockWriter, guard, poll_once, timeout};

fn item(b: &[u8]) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(b))
}

/// Items before each delimiter; the delimiter is consumed; None once exhausted.
#[tokio::test]
async fn read_until_splits_at_the_delimiter() {
    let mut ch = ByteReadChannel::from_bytes("a::bc::::d::");
    for want in [&b"a"[..], b"bc", b"", b"d"] {
        assert_eq!(ch.read_until(b"::", 10).await.unwrap(), item(want));
    }
    assert_eq!(ch.read_until(b"::", 10).await.unwrap(), None);
    assert_eq!(ch.read_until(b"::", 10).await.unwrap(), None);
}

/// A multi-byte delimiter split across transport reads, at every position, is found.
#[tokio::test]
async fn read_until_finds_a_delimiter_split_across_reads() {
    let input = b"header\r\n\r\nbody\r\n\r\n";
    for reader in [
        ChunkedReader::bytewise(input),
        ChunkedReader::chunks_with_pauses([&input[..7], &input[7..9], &input[9..]]),
    ] {
        let mut ch = ByteReadChannel::new(reader);
        assert_eq!(
            guard(ch.read_until(b"\r\n\r\n", 6)).await.unwrap(),
            item(b"header")
        );
        assert_eq!(
            guard(ch.read_until(b"\r\n\r\n", 6)).await.unwrap(),
            item(b"body")
        );
        assert_eq!(guard(ch.read_until(b"\r\n\r\n", 6)).await.unwrap(), None);
    }
}

/// Exactly `limit` bytes then the delimiter is an item; one more byte is TooLongLine, decided
/// without waiting for the delimiter.
#[tokio::test]
async fn read_until_limit_is_exact_and_decided_early() {
    let mut ch = ByteReadChannel::from_bytes("abc;");
    assert_eq!(ch.read_until(b";", 3).await.unwrap(), item(b"abc"));

    let (mut w, mut r) = ByteChannel::new(true);
    w.write_fully(b"abcd").await.unwrap();
    let res = guard(r.read_until(b";", 3)).await;
    assert!(
        matches!(res, Err(Error::TooLongLine { limit: 3 })),
        "{res:?}"
    );

    // A multi-byte delimiter starting right at the limit waits for its rest.
    let (mut w, mut r) = ByteChannel::new(true);
    w.write_fully(b"abc\r").await.unwrap();
    assert!(poll_once(r.read_until(b"\r\n", 3)).await.is_none());
    w.write_fully(b"\n").await.unwrap();
    assert_eq!(guard(r.read_until(b"\r\n", 3)).await.unwrap(), item(b"abc"));
    w.write_fully(b"abc\rx").await.unwrap();
    let res = guard(r.read_until(b"\r\n", 3)).await;
    assert!(
        matches!(res, Err(Error::TooLongLine { limit: 3 })),
        "{res:?}"
    );
}

/// After TooLongLine the next read_until skips through the next delimiter, in bounded memory
/// however long the item.
#[tokio::test]
async fn read_until_skips_an_over_long_item() {
    let mut ch = ByteReadChannel::from_bytes("toolong--ok--");
    let res = ch.read_until(b"--", 3).await;
    assert!(
        matches!(res, Err(Error::TooLongLine { limit: 3 })),
        "{res:?}"
    );
    assert_eq!(ch.read_until(b"--", 3).await.unwrap(), item(b"ok"));

    let (mut w, mut r) = ByteChannel::new(false);
    let writer = tokio::spawn(async move {
        let chunk = vec![b'-'; 64 * 1024];
        for _ in 0..64 {
            w.write_fully(&chunk).await?;
        }
        // The delimiter split over two writes, after 4 MiB of near misses.
        w.write_fully(b"-=").await?;
        w.write_fully(b"=next-==").await?;
        w.flush_and_close().await
    });
    let res = guard(r.read_until(b"-==", 16)).await;
    assert!(
        matches!(res, Err(Error::TooLongLine { limit: 16 })),
        "{res:?}"
    );
    assert_eq!(
        guard(r.read_until(b"-==", 16)).await.unwrap(),
        item(b"next")
    );
    assert!(
        r.available_for_read() <= 64 * 1024,
        "{}",
        r.available_for_read()
    );
    assert_eq!(guard(r.read_until(b"-==", 16)).await.unwrap(), None);
    writer.await.unwrap().unwrap();
}

/// Bytes then the end of the stream without the delimiter: UnexpectedEof, bytes kept.
#[tokio::test]
async fn read_until_unterminated_item_is_unexpected_eof() {
    let mut ch = ByteReadChannel::from_bytes("a;rest");
    assert_eq!(ch.read_until(b";", 10).await.unwrap(), item(b"a"));
    let res = ch.read_until(b";", 10).await;
    assert!(
        matches!(
            res,
            Err(Error::UnexpectedEof {
                needed: 5,
                available: 4
            })
        ),
        "{res:?}"
    );
    assert_eq!(ch.read_remaining(10).await.unwrap(), &b"rest"[..]);
}

/// An empty delimiter is an InvalidInput error, not a panic.
#[tokio::test]
async fn read_until_empty_delimiter_is_invalid_input() {
    let mut ch = ByteReadChannel::from_bytes("abc");
    let e = ch.read_until(b"", 10).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e:?}");
    assert_eq!(ch.read_remaining(10).await.unwrap(), &b"abc"[..]);
}

/// Dropping a pending read_until loses nothing: the next one returns the whole item.
#[tokio::test]
async fn read_until_is_cancel_safe() {
    let (mut w, mut r) = ByteChannel::new(true);
    w.write_fully(b"par").await.unwrap();
    assert!(poll_once(r.read_until(b"\r\n", 100)).await.is_none());
    w.write_fully(b"tial\r").await.unwrap();
    assert!(poll_once(r.read_until(b"\r\n", 100)).await.is_none());
    w.write_fully(b"\n").await.unwrap();
    assert_eq!(
        guard(r.read_until(b"\r\n", 100)).await.unwrap(),
        item(b"partial")
    );
}

/// A line read and read_until share the over-long skip: a TooLongLine from either is skipped
/// by the next of either, through the over-long line's or item's own delimiter (the peer loses
/// that one, nothing more, and none of its bytes is read as a line or item of its own).
#[tokio::test]
async fn line_reads_and_read_until_share_the_skip() {
    let mut ch = ByteReadChannel::from_bytes("too long\nx;");
    let res = ch.read_line(3, LineEnding::Default).await;
    assert!(
        matches!(res, Err(Error::TooLongLine { limit: 3 })),
        "{res:?}"
    );
    assert_eq!(ch.read_until(b";", 3).await.unwrap(), item(b"x"));
    let mut ch = ByteReadChannel::from_bytes("too long;x\nnext\n");
    let res = ch.read_until(b";", 3).await;
    assert!(
        matches!(res, Err(Error::TooLongLine { limit: 3 })),
        "{res:?}"
    );
    for expected in ["x", "next"] {
        assert_eq!(
            ch.read_line(4, LineEnding::Default)
                .await
                .unwrap()
                .as_deref(),
            Some(expected)
        );
    }
}

/// copy_and_close copies, then closes the destination (the reader sees the end).
#[tokio::test]
async fn copy_and_close_closes_the_destination() {
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut src = ByteReadChannel::new(ChunkedReader::chunks(data.chunks(7000)));
    let (mut w, mut r) = ByteChannel::new(false);
    let reader = tokio::spawn(async move { r.read_remaining(usize::MAX).await });
    assert_eq!(
        guard(src.copy_and_close(&mut w, u64::MAX)).await.unwrap(),
        data.len() as u64
    );
    assert!(w.is_closed_for_write());
    assert_eq!(reader.await.unwrap().unwrap(), &data[..]);

    // With a limit: the rest stays in the source.
    let mut src = ByteReadChannel::from_bytes("0123456789");
    let mock = MockWriter::default();
    let mut dst = ByteWriteChannel::new(mock.clone(), false);
    assert_eq!(src.copy_and_close(&mut dst, 4).await.unwrap(), 4);
    assert_eq!(mock.accepted(), b"0123");
    assert_eq!(mock.shutdowns(), 1);
    assert_eq!(src.read_remaining(100).await.unwrap(), &b"456789"[..]);
}

/// When the copy fails, the destination is cancelled as cut short, as Ktor's `copyAndClose`
/// closes it with the cause: what was copied is delivered, then its peer sees no clean end (a
/// pipe's reader fails, the shared state says bytes were lost, so a socket's close resets),
/// also when the caller then drops it. (Before, it was left open, and dropping it, as a `?`
/// does, ended a pipe's stream cleanly: a truncated copy looked complete.) After a timeout it
/// stays open: the copy can go on.
#[tokio::test]
async fn copy_and_close_cuts_the_destination_short_on_error() {
    let failing = || {
        ByteReadChannel::new(ChunkedReader::new([
            support::Step::Data(b"part".to_vec()),
            support::Step::Fail(io::Error::from(io::ErrorKind::ConnectionReset)),
        ]))
    };
    let mock = MockWriter::default();
    let mut dst = ByteWriteChannel::new(mock.clone(), false);
    let state = net_io::WriteState::new();
    dst.share_state(state.clone());
    let e = failing()
        .copy_and_close(&mut dst, u64::MAX)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(mock.accepted(), b"part");
    assert_eq!(mock.shutdowns(), 0);
    assert!(dst.is_closed_for_write());
    assert!(state.lost_bytes());

    let (mut w, mut r) = ByteChannel::new(false);
    assert!(failing().copy_and_close(&mut w, u64::MAX).await.is_err());
    drop(w);
    assert_eq!(guard(r.read_bytes(4)).await.unwrap(), &b"part"[..]);
    let end = guard(r.read_remaining(100)).await;
    assert!(matches!(end, Err(Error::Cancelled)), "{end:?}");

    // A timeout leaves the destination open, and the copy goes on.
    let mut src = ByteReadChannel::new(ChunkedReader::new([
        support::Step::Data(b"before ".to_vec()),
        support::Step::Fail(io::Error::from(Error::Timeout)),
        support::Step::Data(b"after".to_vec()),
    ]));
    let mock = MockWriter::default();
    let mut dst = ByteWriteChannel::new(mock.clone(), false);
    let e = src.copy_and_close(&mut dst, u64::MAX).await.unwrap_err();
    assert!(matches!(e, Error::Timeout), "{e:?}");
    assert!(!dst.is_closed_for_write());
    src.copy_and_close(&mut dst, u64::MAX).await.unwrap();
    assert_eq!(mock.accepted(), b"before after");
    assert_eq!(mock.shutdowns(), 1);
}

/// copy_and_close, "But for a Timeout": a timeout of `dst` after its transport took part of the
/// chunk it was writing does not leave `dst` open for a later call to go on (the doc said it
/// did): `dst` is failed for good, its stream is marked lost (no clean end), and a later call
/// returns the same `Timeout` at once and sends nothing more, so a loop that retries on
/// `Timeout` must check `is_closed_for_write`.
#[tokio::test]
async fn copy_and_close_after_a_timeout_of_dst_part_way_leaves_dst_failed() {
    let mut src = ByteReadChannel::from_bytes(vec![7u8; 20_000]);
    let mock = MockWriter::default();
    mock.on_write([Act::Take(100), Act::Fail(timeout())]);
    let mut dst = ByteWriteChannel::new(mock.clone(), false);
    let state = net_io::WriteState::new();
    dst.share_state(state.clone());
    let e = src.copy_and_close(&mut dst, u64::MAX).await.unwrap_err();
    assert!(matches!(e, Error::Timeout), "{e:?}");
    assert!(dst.is_closed_for_write());
    assert!(state.lost_bytes());
    // The chunk is not consumed here; `dst` counts what its transport took.
    assert_eq!(src.total_bytes_read(), 0);
    assert_eq!(dst.total_bytes_written(), 100);
    for _ in 0..3 {
        let e = guard(src.copy_and_close(&mut dst, u64::MAX))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Timeout), "{e:?}");
    }
    assert_eq!(mock.accepted().len(), 100);
    assert_eq!(mock.shutdowns(), 0);

    // A timeout of `dst` before its transport took a byte of the chunk had no effect: the
    // copy goes on, each byte once.
    let mut src = ByteReadChannel::from_bytes("payload");
    let mock = MockWriter::default();
    mock.on_write([Act::Fail(timeout())]);
    let mut dst = ByteWriteChannel::new(mock.clone(), false);
    let e = src.copy_and_close(&mut dst, u64::MAX).await.unwrap_err();
    assert!(matches!(e, Error::Timeout), "{e:?}");
    assert!(!dst.is_closed_for_write());
    assert_eq!(src.copy_and_close(&mut dst, u64::MAX).await.unwrap(), 7);
    assert_eq!(mock.accepted(), b"payload");
    assert_eq!(mock.shutdowns(), 1);
}

/// total_bytes_read counts what reads consumed (delimiters, skips and copies included), not what
/// is buffered or was cancelled.
#[tokio::test]
async fn total_bytes_read_counts_consumed_bytes() {
    let mut ch = ByteReadChannel::new(ChunkedReader::chunks_with_pauses([
        &b"line\r\n\x00\x01"[..],
        b"toolong\nabc;",
        b"0123456789",
        b"tail",
    ]));
    assert_eq!(ch.total_bytes_read(), 0);
    ch.read_line(10, LineEnding::Default).await.unwrap();
    assert_eq!(ch.total_bytes_read(), 6);
    ch.read_u16().await.unwrap();
    assert_eq!(ch.total_bytes_read(), 8);
    assert!(ch.read_line(3, LineEnding::Default).await.is_err());
    assert_eq!(ch.total_bytes_read(), 8, "a failed read consumes nothing");
    ch.read_until(b";", 3).await.unwrap();
    assert_eq!(ch.total_bytes_read(), 20, "skipped line and item");
    ch.peek(4).await.unwrap();
    assert_eq!(ch.total_bytes_read(), 20, "peek consumes nothing");
    ch.discard(2).await.unwrap();
    let mut four = [0u8; 4];
    ch.read_fully(&mut four).await.unwrap();
    ch.read_bytes(4).await.unwrap();
    assert_eq!(ch.total_bytes_read(), 30);
    let (mut w, _r) = ByteChannel::new(false);
    assert_eq!(ch.copy_to(&mut w, 2).await.unwrap(), 2);
    assert_eq!(ch.total_bytes_read(), 32);
    assert!(ch.await_content(2).await.unwrap());
    ch.cancel();
    assert_eq!(ch.total_bytes_read(), 32, "cancelled bytes were not read");

    let mut ch = ByteReadChannel::from_bytes("abc");
    ch.read_remaining(10).await.unwrap();
    assert_eq!(ch.total_bytes_read(), 3);
}

/// total_bytes_written counts what writes accepted; a write without effect counts nothing.
#[tokio::test]
async fn total_bytes_written_counts_accepted_bytes() {
    let mock = MockWriter::default();
    let mut w = ByteWriteChannel::new(mock.clone(), true);
    w.write_fully(b"abc").await.unwrap();
    w.write_u32(1).await.unwrap();
    w.write_fully(&[0u8; 10_000]).await.unwrap();
    assert_eq!(w.total_bytes_written(), 10_007);
    mock.on_write([Act::Fail(timeout())]);
    assert!(w.write_u64(1).await.is_err());
    assert_eq!(w.total_bytes_written(), 10_007, "a write without effect");
    w.write_u64(1).await.unwrap();
    assert_eq!(w.total_bytes_written(), 10_015);
    assert_eq!(mock.accepted().len(), 10_015);
    let mut codec = tokio_util::codec::LinesCodec::new();
    w.write_frame(&mut codec, "line").await.unwrap();
    assert_eq!(w.total_bytes_written(), 10_020);
}
