//! SPEC §4.2: the channels implement tokio's `AsyncRead`, `AsyncBufRead` and `AsyncWrite`, so
//! `tokio::io::copy`, `copy_bidirectional` and tokio-util's `Framed` work on them, and trait
//! reads mix with the channel's own reads without losing a byte.

mod support;

use std::future::poll_fn;
use std::io;
use std::pin::Pin;

use futures_core::Stream;
use futures_sink::Sink;
use net_io::{ByteChannel, ByteReadChannel, ByteWriteChannel, Error, LineEnding};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::{Framed, FramedRead, LinesCodec};

use support::{Act, ChunkedReader, MockWriter, Step, guard, split_by, timeout};

/// A recognisable payload of `n` bytes.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

async fn send<S, I>(sink: &mut S, item: I) -> Result<(), S::Error>
where
    S: Sink<I> + Unpin,
{
    poll_fn(|cx| Pin::new(&mut *sink).poll_ready(cx)).await?;
    Pin::new(&mut *sink).start_send(item)?;
    poll_fn(|cx| Pin::new(&mut *sink).poll_flush(cx)).await
}

async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
}

/// `tokio::io::copy` from one channel to another moves every byte; shutdown ends the stream.
#[tokio::test]
async fn tokio_io_copy_between_channels() {
    for auto_flush in [false, true] {
        let data = pattern(300_000);
        let (mut w1, mut r1) = ByteChannel::new(false);
        let (mut w2, mut r2) = ByteChannel::new(auto_flush);
        let feed = {
            let data = data.clone();
            tokio::spawn(async move {
                w1.write_fully(&data).await?;
                w1.flush_and_close().await
            })
        };
        let drain = tokio::spawn(async move { r2.read_remaining(usize::MAX).await });
        let copied = guard(tokio::io::copy(&mut r1, &mut w2)).await.unwrap();
        w2.shutdown().await.unwrap();
        assert_eq!(copied, data.len() as u64);
        assert_eq!(r1.total_bytes_read(), data.len() as u64);
        assert_eq!(w2.total_bytes_written(), data.len() as u64);
        feed.await.unwrap().unwrap();
        assert_eq!(
            drain.await.unwrap().unwrap(),
            &data[..],
            "auto_flush {auto_flush}"
        );
    }
}

/// `copy_bidirectional` relays between two pairs of channels, half-closing each way.
#[tokio::test]
async fn copy_bidirectional_over_two_channel_pairs() {
    let (mut client_out, proxy_in_a) = ByteChannel::new(false);
    let (proxy_out_a, mut client_in) = ByteChannel::new(false);
    let (proxy_out_b, mut server_in) = ByteChannel::new(false);
    let (mut server_out, proxy_in_b) = ByteChannel::new(false);

    let server = tokio::spawn(async move {
        while let Some(line) = server_in.read_line(100, LineEnding::Default).await? {
            server_out
                .write_string_utf8(&format!("{}\n", line.to_uppercase()))
                .await?;
            server_out.flush().await?;
        }
        server_out.flush_and_close().await
    });
    let proxy = tokio::spawn(async move {
        let mut a = tokio::io::join(proxy_in_a, proxy_out_a);
        let mut b = tokio::io::join(proxy_in_b, proxy_out_b);
        tokio::io::copy_bidirectional(&mut a, &mut b).await
    });

    client_out
        .write_string_utf8("hello\nworld\n")
        .await
        .unwrap();
    client_out.flush_and_close().await.unwrap();
    let mut lines = Vec::new();
    while let Some(line) = guard(client_in.read_line(100, LineEnding::Default))
        .await
        .unwrap()
    {
        lines.push(line);
    }
    assert_eq!(lines, ["HELLO", "WORLD"]);
    assert_eq!(guard(proxy).await.unwrap().unwrap(), (12, 12));
    server.await.unwrap().unwrap();
}

/// tokio-util's FramedRead over a read channel, and Framed over a joined pair.
#[tokio::test]
async fn framed_read_and_framed_over_channels() {
    let input = ByteReadChannel::new(ChunkedReader::bytewise(b"one\ntwo\r\nthree"));
    let mut lines = FramedRead::new(input, LinesCodec::new_with_max_length(16));
    let mut got = Vec::new();
    while let Some(line) = guard(next(&mut lines)).await {
        got.push(line.unwrap());
    }
    assert_eq!(got, ["one", "two", "three"]);

    let (to_peer, mut peer_in) = ByteChannel::new(false);
    let (mut peer_out, from_peer) = ByteChannel::new(false);
    let mut framed = Framed::new(
        tokio::io::join(from_peer, to_peer),
        LinesCodec::new_with_max_length(64),
    );
    guard(send(&mut framed, "ping")).await.unwrap();
    assert_eq!(
        guard(peer_in.read_line(64, LineEnding::Default))
            .await
            .unwrap()
            .as_deref(),
        Some("ping")
    );
    peer_out.write_string_utf8("pong\n").await.unwrap();
    peer_out.flush_and_close().await.unwrap();
    assert_eq!(guard(next(&mut framed)).await.unwrap().unwrap(), "pong");
    assert!(guard(next(&mut framed)).await.is_none());
}

/// `AsyncBufReadExt::read_line` on a read channel.
#[tokio::test]
async fn async_buf_read_line() {
    let mut ch = ByteReadChannel::new(ChunkedReader::bytewise(b"alpha\nbeta\r\ngamma"));
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if guard(AsyncBufReadExt::read_line(&mut ch, &mut line))
            .await
            .unwrap()
            == 0
        {
            break;
        }
        lines.push(line);
    }
    assert_eq!(lines, ["alpha\n", "beta\r\n", "gamma"]);
    assert_eq!(ch.total_bytes_read(), 17);
}

/// Trait reads and channel reads, interleaved over small chunks, see every byte once, in order.
#[tokio::test]
async fn mixing_trait_and_channel_reads_loses_nothing() {
    let mut data = b"first line\n".to_vec();
    data.extend_from_slice(&0xdead_beefu32.to_be_bytes());
    let body = pattern(20_000);
    data.extend_from_slice(&body);
    data.extend_from_slice(b"second;third\nrest of it");
    for sizes in [&[1usize][..], &[3, 5, 7], &[4096], &[9000, 13]] {
        let chunks = split_by(&data, sizes);
        let mut ch = ByteReadChannel::new(ChunkedReader::chunks_with_pauses(&chunks));
        let mut got = Vec::new();
        // channel: a line
        let line = ch
            .read_line(100, LineEnding::Default)
            .await
            .unwrap()
            .unwrap();
        got.extend_from_slice(line.as_bytes());
        got.push(b'\n');
        // trait: an integer (tokio's AsyncReadExt::read_u32)
        got.extend_from_slice(&AsyncReadExt::read_u32(&mut ch).await.unwrap().to_be_bytes());
        // trait: read_exact, large enough to go around the buffer
        let mut part = vec![0u8; 9000];
        ch.read_exact(&mut part).await.unwrap();
        got.extend_from_slice(&part);
        // channel: bytes
        got.extend_from_slice(&ch.read_bytes(10_000).await.unwrap());
        // trait: fill_buf / consume
        let n = {
            let buf = ch.fill_buf().await.unwrap();
            let n = buf.len().min(500);
            got.extend_from_slice(&buf[..n]);
            n
        };
        ch.consume(n);
        // channel: the rest of the body, then read_until
        got.extend_from_slice(&ch.read_bytes(1000 - n).await.unwrap());
        got.extend_from_slice(&ch.read_until(b";", 100).await.unwrap().unwrap());
        got.push(b';');
        // trait: a line, then everything
        let mut line = String::new();
        AsyncBufReadExt::read_line(&mut ch, &mut line)
            .await
            .unwrap();
        got.extend_from_slice(line.as_bytes());
        ch.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, data, "chunk sizes {sizes:?}");
        assert_eq!(ch.total_bytes_read(), data.len() as u64);
    }
}

/// Errors travel inside io::Error and come back with `Error::from`; bytes before the error come
/// first.
#[tokio::test]
async fn trait_reads_carry_channel_errors() {
    let mut ch = ByteReadChannel::new(ChunkedReader::new([
        Step::Data(b"abc".to_vec()),
        Step::Fail(io::Error::from_raw_os_error(libc::ECONNRESET)),
    ]));
    let mut all = Vec::new();
    let e = guard(ch.read_to_end(&mut all)).await.unwrap_err();
    assert_eq!(all, b"abc");
    assert_eq!(e.raw_os_error(), Some(libc::ECONNRESET));
    let mut one = [0u8; 1];
    let e = ch.read(&mut one).await.unwrap_err();
    assert!(matches!(Error::from(e), Error::Io(e) if e.raw_os_error() == Some(libc::ECONNRESET)));

    let mut ch = ByteReadChannel::from_bytes("x");
    ch.cancel();
    let e = ch.read(&mut one).await.unwrap_err();
    assert!(matches!(Error::from(e), Error::Cancelled));
    let e = ch.fill_buf().await.unwrap_err();
    assert!(matches!(Error::from(e), Error::Cancelled));
}

/// `AsyncWrite` follows the channel's rules: a poll_write that timed out had no effect,
/// shutdown on a failed channel does not shut the transport down, shutdown is idempotent.
#[tokio::test]
async fn async_write_follows_the_failure_rules() {
    let mock = MockWriter::default();
    let mut w = ByteWriteChannel::new(mock.clone(), false);
    let big = pattern(50_000);
    mock.on_write([Act::Fail(timeout())]);
    let e = w.write_all(&big).await.unwrap_err();
    assert!(matches!(Error::from(e), Error::Timeout));
    w.write_all(&big).await.unwrap();
    w.write_all(b"small").await.unwrap();
    w.flush().await.unwrap();
    let mut want = big.clone();
    want.extend_from_slice(b"small");
    assert_eq!(mock.accepted(), want);
    w.shutdown().await.unwrap();
    w.shutdown().await.unwrap();
    assert_eq!(mock.shutdowns(), 1);
    let e = w.write_all(b"late").await.unwrap_err();
    assert!(matches!(Error::from(e), Error::ClosedForWrite));

    let mock = MockWriter::default();
    let mut w = ByteWriteChannel::new(mock.clone(), false);
    w.write_all(b"data").await.unwrap();
    mock.on_write([Act::Fail(io::Error::from_raw_os_error(libc::EPIPE))]);
    for _ in 0..2 {
        let e = AsyncWriteExt::flush(&mut w).await.unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPIPE));
    }
    let e = w.shutdown().await.unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPIPE));
    assert_eq!(mock.shutdowns(), 0);
}

/// With auto_flush, a trait write reaches the peer without a flush when the transport is ready;
/// without it, trait writes that fit the buffer wait there for a flush (a second one does not
/// write the first out).
#[tokio::test]
async fn async_write_in_auto_flush_mode_reaches_the_peer() {
    let (mut w, mut r) = ByteChannel::new(true);
    w.write_all(b"hi\n").await.unwrap();
    assert_eq!(
        guard(r.read_line(10, LineEnding::Default))
            .await
            .unwrap()
            .as_deref(),
        Some("hi")
    );
    let (mut w, mut r) = ByteChannel::new(false);
    w.write_all(b"hi\n").await.unwrap();
    w.write_all(b"there\n").await.unwrap();
    assert!(support::poll_once(r.read_u8()).await.is_none());
    AsyncWriteExt::flush(&mut w).await.unwrap();
    let mut both = [0; 9];
    guard(r.read_exact(&mut both)).await.unwrap();
    assert_eq!(&both, b"hi\nthere\n");
}

/// `poll_shutdown` is `flush_and_close`: on a cancelled channel (its bytes dropped, the reader
/// told `Cancelled`) it fails as `flush_and_close` does, never reporting a clean end to code
/// written against the trait (`tokio::io::copy`, hyper).
#[tokio::test]
async fn shutdown_of_a_cancelled_channel_is_not_a_clean_end() {
    let (mut output, _input) = net_io::ByteChannel::new(false);
    output.write_all(b"abc").await.unwrap();
    output.cancel();
    let e = output.shutdown().await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e:?}");
    assert!(matches!(
        output.flush_and_close().await,
        Err(net_io::Error::ClosedForWrite)
    ));
}

/// A look-ahead through `AsyncBufRead` (`fill_buf`, then `consume(0)`) consumes nothing, so
/// the skip of an over-long line that a line read left due still happens at the next line
/// read, as after `peek` or `await_content`.
#[tokio::test]
async fn fill_buf_keeps_the_skip_of_an_over_long_line() {
    let mut input = ByteReadChannel::from_bytes("toolongline\nnext\n");
    assert!(matches!(
        input.read_line(4, LineEnding::Default).await,
        Err(net_io::Error::TooLongLine { limit: 4 })
    ));
    assert!(!input.fill_buf().await.unwrap().is_empty());
    std::pin::Pin::new(&mut input).consume(0);
    assert_eq!(
        input
            .read_line(100, LineEnding::Default)
            .await
            .unwrap()
            .as_deref(),
        Some("next")
    );
}

/// A trait read into an empty buffer (tokio's `read(&mut [])`, `read_available(&mut [])`)
/// takes nothing, so it leaves the skip of an over-long line due, as `consume(0)` does.
#[tokio::test]
async fn an_empty_read_keeps_the_skip_of_an_over_long_line() {
    let mut input = ByteReadChannel::from_bytes("toolongline\nnext\n");
    assert!(matches!(
        input.read_line(4, LineEnding::Default).await,
        Err(Error::TooLongLine { limit: 4 })
    ));
    assert_eq!(input.read(&mut []).await.unwrap(), 0);
    assert_eq!(input.read_available(&mut []).await.unwrap(), 0);
    assert_eq!(
        input
            .read_line(100, LineEnding::Default)
            .await
            .unwrap()
            .as_deref(),
        Some("next")
    );
    // A cancelled channel still reports it, also to an empty read.
    input.cancel();
    let e = input.read(&mut []).await.unwrap_err();
    assert!(matches!(Error::from(e), Error::Cancelled));
}

/// After a clean `poll_shutdown`, `poll_flush` has nothing to do and succeeds, as tokio's
/// `TcpStream` and tokio-rustls's streams do: a `FramedWrite` closed twice (a `SinkExt::close`
/// and then its owner's) does not fail. After `cancel`, the flush still fails: that end was no
/// clean one.
#[tokio::test]
async fn a_flush_after_a_clean_shutdown_succeeds() {
    let (client, _server) = tokio::io::duplex(1024);
    let mut output = ByteWriteChannel::new(client, false);
    output.write_all(b"last\n").await.unwrap();
    output.shutdown().await.unwrap();
    AsyncWriteExt::flush(&mut output).await.unwrap();
    assert!(matches!(
        output.write_all(b"more").await.map_err(Error::from),
        Err(Error::ClosedForWrite)
    ));

    let (client, _server) = tokio::io::duplex(1024);
    let mut framed = tokio_util::codec::FramedWrite::new(
        ByteWriteChannel::new(client, false),
        LinesCodec::new(),
    );
    for _ in 0..2 {
        poll_fn(|cx| Sink::<&str>::poll_close(Pin::new(&mut framed), cx))
            .await
            .unwrap();
    }

    let (client, _server) = tokio::io::duplex(1024);
    let mut cancelled = ByteWriteChannel::new(client, false);
    cancelled.cancel();
    assert!(AsyncWriteExt::flush(&mut cancelled).await.is_err());
}

/// A read that waits and is dropped before it took a byte (`read_available` is cancel safe: a
/// lost `select!` branch, a timeout) leaves the skip of an over-long line due, as a read into
/// an empty buffer does: the rest of that line is still skipped, not read as a line. Both the
/// buffered path and the direct one (a buffer of 8 KiB or more) are tried.
#[tokio::test]
async fn a_read_dropped_while_it_waits_keeps_the_skip_of_an_over_long_line() {
    for size in [16, 64 * 1024] {
        let (mut output, mut input) = ByteChannel::new(true);
        output.write_fully(b"toolong").await.unwrap();
        assert!(matches!(
            input.read_line(4, LineEnding::Default).await,
            Err(Error::TooLongLine { limit: 4 })
        ));
        // A line read skips what arrived of the over-long line, then waits: dropped there.
        {
            let line = std::pin::pin!(input.read_line(100, LineEnding::Default));
            assert!(poll_once(line).await, "the line read waits");
        }
        let mut dst = vec![0u8; size];
        {
            let read = std::pin::pin!(input.read_available(&mut dst));
            assert!(poll_once(read).await, "read_available waits ({size})");
        }
        {
            let read = std::pin::pin!(AsyncReadExt::read(&mut input, &mut dst));
            assert!(poll_once(read).await, "the trait read waits ({size})");
        }
        output.write_fully(b"line\nnext\n").await.unwrap();
        assert_eq!(
            input
                .read_line(100, LineEnding::Default)
                .await
                .unwrap()
                .as_deref(),
            Some("next"),
            "buffer of {size} bytes"
        );
    }
}

/// Polls `fut` once; whether it is pending.
async fn poll_once<F: std::future::Future>(mut fut: Pin<&mut F>) -> bool {
    poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx).is_pending())).await
}
