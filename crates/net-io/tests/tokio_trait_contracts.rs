//! tokio's trait contracts on the channels, as generic code relies on them: repeated ends and
//! errors, partial fills, `fill_buf` after typed reads, `take`, `BufReader`, writes after
//! shutdown, vectored writes and counts, `LengthDelimitedCodec` over joined channels.

mod support;

use std::future::poll_fn;
use std::io;
use std::pin::Pin;

use net_io::{ByteChannel, ByteReadChannel, ByteWriteChannel, Error, LineEnding};
use support::{Act, ChunkedReader, MockWriter, Step, guard};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};

/// A write after `poll_shutdown` fails (`ClosedForWrite`, kind `BrokenPipe`), never panics; a
/// second shutdown and a flush succeed; the count is what was accepted.
#[tokio::test]
async fn a_trait_write_after_shutdown_fails_with_closed_for_write() {
    let w = MockWriter::default();
    let mut out = ByteWriteChannel::new(w.clone(), false);
    out.write_all(b"abc").await.unwrap();
    out.shutdown().await.unwrap();
    out.shutdown().await.unwrap();
    let e = out.write(b"x").await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    assert!(matches!(Error::from(e), Error::ClosedForWrite));
    assert!(
        out.write(b"").await.is_err(),
        "an empty write after shutdown fails too"
    );
    AsyncWriteExt::flush(&mut out).await.unwrap();
    assert_eq!(w.accepted(), b"abc");
    assert_eq!(out.total_bytes_written(), 3);
}

/// A `cancel` after a clean close throws nothing away and sends nothing, so the close stays
/// clean: `poll_flush` and `poll_shutdown` still return `Ok(())`, as the `AsyncWrite` docs say
/// of a channel closed cleanly (they failed with `ClosedForWrite` once `cancel` had run). A
/// write still fails.
#[tokio::test]
async fn a_cancel_after_a_clean_close_leaves_the_close_clean() {
    let w = MockWriter::default();
    let mut out = ByteWriteChannel::new(w.clone(), false);
    out.write_all(b"abc").await.unwrap();
    out.flush_and_close().await.unwrap();
    out.cancel();
    AsyncWriteExt::flush(&mut out).await.unwrap();
    out.shutdown().await.unwrap();
    let e = out.write(b"x").await.unwrap_err();
    assert!(matches!(Error::from(e), Error::ClosedForWrite));
    assert_eq!(w.accepted(), b"abc");
    assert_eq!(out.total_bytes_written(), 3);
}

/// The channel is not vectored: tokio's default writes the first non-empty slice, counted.
#[tokio::test]
async fn a_vectored_write_takes_the_first_non_empty_slice() {
    let w = MockWriter::default();
    let mut out = ByteWriteChannel::new(w.clone(), false);
    assert!(!out.is_write_vectored());
    let bufs = [
        io::IoSlice::new(b""),
        io::IoSlice::new(b"ab"),
        io::IoSlice::new(b"cd"),
    ];
    let n = out.write_vectored(&bufs).await.unwrap();
    assert_eq!(n, 2, "the first non-empty slice");
    out.flush().await.unwrap();
    assert_eq!(out.total_bytes_written(), n as u64);
}

/// After the end, every read (buffered and direct sizes, `fill_buf`, a line read) finds it again.
#[tokio::test]
async fn every_trait_read_after_the_end_finds_the_end_again() {
    let (mut w, mut r) = ByteChannel::new(false);
    w.write_fully(b"hi").await.unwrap();
    w.flush_and_close().await.unwrap();
    let mut big = vec![0u8; 16384];
    assert_eq!(r.read(&mut big).await.unwrap(), 2);
    for _ in 0..3 {
        assert_eq!(r.read(&mut big).await.unwrap(), 0);
    }
    let mut small = [0u8; 4];
    for _ in 0..3 {
        assert_eq!(r.read(&mut small).await.unwrap(), 0);
    }
    assert!(r.fill_buf().await.unwrap().is_empty());
    assert_eq!(r.read_line(10, LineEnding::Default).await.unwrap(), None);
}

/// Bytes before an error are read first; then every trait read reports it again.
#[tokio::test]
async fn every_trait_read_after_an_error_reports_it_again() {
    let mut r = ByteReadChannel::new(ChunkedReader::new(vec![
        Step::Data(b"ab".to_vec()),
        Step::Fail(io::Error::new(io::ErrorKind::ConnectionReset, "reset")),
    ]));
    let mut buf = [0u8; 1];
    assert_eq!(r.read(&mut buf).await.unwrap(), 1);
    assert_eq!(r.fill_buf().await.unwrap(), b"b");
    r.consume(1);
    let e1 = r.read(&mut buf).await.unwrap_err();
    let e2 = r.read(&mut buf).await.unwrap_err();
    let mut big = vec![0u8; 20000];
    let e3 = r.read(&mut big).await.unwrap_err();
    let e4 = r.fill_buf().await.unwrap_err();
    assert_eq!(e2.kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(e1.kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(e3.kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(e4.kind(), io::ErrorKind::ConnectionReset);
}

/// The same for reads of 8 KiB or more, which go to the transport directly.
#[tokio::test]
async fn a_direct_trait_read_reports_an_error_again() {
    let mut r = ByteReadChannel::new(ChunkedReader::new(vec![
        Step::Data(b"ab".to_vec()),
        Step::Fail(io::Error::new(io::ErrorKind::ConnectionReset, "reset")),
    ]));
    let mut big = vec![0u8; 20000];
    assert_eq!(r.read(&mut big).await.unwrap(), 2);
    let e1 = r.read(&mut big).await.unwrap_err();
    let e2 = r.read(&mut big).await.unwrap_err();
    assert_eq!(e1.kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(e2.kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(r.total_bytes_read(), 2);
}

/// `fill_buf` after a typed read returns what it left (part of a line); tokio's `read_line`
/// completes it, and the channel's own line read follows.
#[tokio::test]
async fn fill_buf_after_a_typed_read_returns_the_partial_line_left() {
    let mut r = ByteReadChannel::new(ChunkedReader::chunks_with_pauses([
        &b"\x07par"[..],
        b"tial\nnext\n",
    ]));
    assert_eq!(r.read_u8().await.unwrap(), 7);
    assert_eq!(r.fill_buf().await.unwrap(), b"par");
    let mut s = String::new();
    AsyncBufReadExt::read_line(&mut r, &mut s).await.unwrap();
    assert_eq!(s, "partial\n");
    assert_eq!(
        r.read_line(10, LineEnding::Default)
            .await
            .unwrap()
            .as_deref(),
        Some("next")
    );
    assert_eq!(r.total_bytes_read(), 14);
}

/// `consume` of more than `fill_buf` returned takes what is there.
#[tokio::test]
async fn consume_of_more_than_is_buffered_takes_what_is_there() {
    let mut r = ByteReadChannel::from_bytes(&b"abc"[..]);
    assert_eq!(r.fill_buf().await.unwrap(), b"abc");
    Pin::new(&mut r).consume(100);
    assert_eq!(r.total_bytes_read(), 3);
    assert!(r.fill_buf().await.unwrap().is_empty());
}

/// After `TooLongLine`, trait reads take the over-long line as it is, and a line read goes on.
#[tokio::test]
async fn trait_reads_after_too_long_line_see_the_line_as_it_is() {
    let data = b"0123456789abcdef\nok\n";
    let mut r = ByteReadChannel::new(ChunkedReader::bytewise(data));
    let e = r.read_line(4, LineEnding::Default).await.unwrap_err();
    assert!(matches!(e, Error::TooLongLine { .. }));
    // The look-ahead shows the over-long line as it is (documented: the skip stays due until
    // `consume` takes bytes, and a trait read takes the bytes as they are).
    assert!(r.fill_buf().await.unwrap().starts_with(b"01234"));
    let mut s = String::new();
    AsyncBufReadExt::read_line(&mut r, &mut s).await.unwrap();
    assert_eq!(s, "0123456789abcdef\n");
    assert_eq!(
        r.read_line(10, LineEnding::Default)
            .await
            .unwrap()
            .as_deref(),
        Some("ok")
    );
    assert_eq!(r.total_bytes_read(), data.len() as u64);
}

/// `BufReader` around a channel, `take(..).read_to_end`, then the rest: every byte once.
#[tokio::test]
async fn a_bufreader_and_take_over_a_channel_lose_nothing() {
    let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let (mut w, r) = ByteChannel::new(false);
    let d2 = data.clone();
    tokio::spawn(async move {
        w.write_fully(&d2).await.unwrap();
        w.flush_and_close().await.unwrap();
    });
    let mut br = BufReader::new(r);
    let mut first = Vec::new();
    (&mut br)
        .take(30_000)
        .read_to_end(&mut first)
        .await
        .unwrap();
    assert_eq!(first, &data[..30_000]);
    let mut rest = Vec::new();
    br.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, &data[30_000..]);
}

/// `take(n).read_to_end` on the channel consumes exactly `n`; its own reads get the rest.
#[tokio::test]
async fn take_then_channel_reads_lose_nothing() {
    let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let (mut w, mut r) = ByteChannel::new(false);
    let d2 = data.clone();
    tokio::spawn(async move {
        w.write_fully(&d2).await.unwrap();
        w.flush_and_close().await.unwrap();
    });
    let mut first = Vec::new();
    (&mut r).take(30_001).read_to_end(&mut first).await.unwrap();
    assert_eq!(first, &data[..30_001]);
    assert_eq!(r.total_bytes_read(), 30_001);
    let b = r.read_bytes(10).await.unwrap();
    assert_eq!(&b[..], &data[30_001..30_011]);
    let rest = r.read_remaining(usize::MAX).await.unwrap();
    assert_eq!(&rest[..], &data[30_011..]);
}

/// A timeout is not final for trait reads either.
#[tokio::test]
async fn a_trait_read_goes_on_after_a_timeout() {
    let mut r = ByteReadChannel::new(ChunkedReader::new(vec![
        Step::Fail(support::timeout()),
        Step::Data(b"ok".to_vec()),
    ]));
    let mut buf = [0u8; 8];
    let e = r.read(&mut buf).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert_eq!(r.read(&mut buf).await.unwrap(), 2);
}

/// After a failed write, flush, write and shutdown report the same failure.
#[tokio::test]
async fn trait_flush_write_and_shutdown_after_a_failure_report_it() {
    let w = MockWriter::default();
    w.on_write([Act::Fail(io::Error::new(
        io::ErrorKind::ConnectionReset,
        "x",
    ))]);
    let mut out = ByteWriteChannel::new(w.clone(), false);
    out.write_all(b"abc").await.unwrap();
    let e = out.flush().await.unwrap_err();
    let e2 = out.flush().await.unwrap_err();
    let e3 = out.write(b"z").await.unwrap_err();
    let e4 = out.shutdown().await.unwrap_err();
    assert!(matches!(e, Error::Io(_)));
    assert_eq!(e3.kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(e2.kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(e4.kind(), io::ErrorKind::ConnectionReset);
}

/// A large write goes to the transport and reports what it took; the rest follows in order.
#[tokio::test]
async fn a_large_trait_write_counts_what_the_transport_took() {
    let w = MockWriter::default();
    w.on_write([Act::Take(5000)]);
    let mut out = ByteWriteChannel::new(w.clone(), false);
    let data = vec![9u8; 200_000];
    let n = out.write(&data).await.unwrap();
    assert_eq!(n, 5000, "what the transport took of a direct write");
    out.write_all(&data[n..]).await.unwrap();
    out.shutdown().await.unwrap();
    assert_eq!(w.accepted().len(), 200_000);
    assert_eq!(out.total_bytes_written(), 200_000);
}

/// A short read leaves the rest for `fill_buf`; `consume(0)` takes nothing.
#[tokio::test]
async fn a_short_trait_read_leaves_the_rest_for_fill_buf() {
    // poll_read pending with a small buf, then fill_buf
    let mut r = ByteReadChannel::new(ChunkedReader::chunks_with_pauses([&b"abc"[..], b"def"]));
    let mut buf = [0u8; 2];
    assert_eq!(r.read(&mut buf).await.unwrap(), 2);
    assert_eq!(r.fill_buf().await.unwrap(), b"c");
    r.consume(0);
    let mut v = Vec::new();
    r.read_to_end(&mut v).await.unwrap();
    assert_eq!(v, b"cdef");
}

/// `Framed` with `LengthDelimitedCodec` over joined channels: a 300 KB frame, then the end.
#[tokio::test]
async fn length_delimited_frames_over_joined_channels() {
    use tokio_util::codec::{Framed, LengthDelimitedCodec};
    let (a_out, b_in) = ByteChannel::new(false);
    let (b_out, a_in) = ByteChannel::new(false);
    let mut a = Framed::new(tokio::io::join(a_in, a_out), LengthDelimitedCodec::new());
    let mut b = Framed::new(tokio::io::join(b_in, b_out), LengthDelimitedCodec::new());
    let big = bytes::Bytes::from(vec![3u8; 300_000]);
    let big2 = big.clone();
    let t = tokio::spawn(async move {
        use futures_sink::Sink;
        poll_fn(|cx| Sink::<bytes::Bytes>::poll_ready(Pin::new(&mut a), cx))
            .await
            .unwrap();
        Pin::new(&mut a).start_send(big2).unwrap();
        poll_fn(|cx| Sink::<bytes::Bytes>::poll_close(Pin::new(&mut a), cx))
            .await
            .unwrap();
    });
    use futures_core::Stream;
    let got = guard(poll_fn(|cx| Pin::new(&mut b).poll_next(cx)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), big.len());
    assert!(
        guard(poll_fn(|cx| Pin::new(&mut b).poll_next(cx)))
            .await
            .is_none()
    );
    t.await.unwrap();
}
