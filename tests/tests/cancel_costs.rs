//! CPU and memory redone when a cancel-safe read is dropped and made again (a
//! `tokio::select!` loop whose other branch wins often). The project's rule: CPU and memory
//! follow the bytes received, never the number of polls or cancels.
//!
//! Each test buffers a partial item, then drops and re-creates the read many times with no
//! new byte (polled once each with a no-op waker, as a `select!` that another branch won),
//! and counts something deterministic: bytes a decoder was handed, or bytes the channel moved
//! under the decoder. (Line reads and `read_until`: `net-io`'s
//! `read::tests::a_read_started_again_after_a_cancel_scans_only_the_new_bytes`.)

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use net_io::ByteReadChannel;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::codec::Decoder;

/// A transport fed by the test: hands out what was fed, else `Pending` (the tests poll by
/// hand with a no-op waker, so no wake-up is needed). Counts its reads.
#[derive(Clone, Default)]
struct Feed(Arc<Mutex<(VecDeque<u8>, u64)>>);

impl Feed {
    fn push(&self, bytes: &[u8]) {
        self.0.lock().unwrap().0.extend(bytes);
    }
}

impl AsyncRead for Feed {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut inner = self.0.lock().unwrap();
        inner.1 += 1;
        if inner.0.is_empty() {
            return Poll::Pending;
        }
        let n = inner.0.len().min(buf.remaining());
        let chunk: Vec<u8> = inner.0.drain(..n).collect();
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

/// Polls `future` once, then drops it: a `select!` whose other branch won.
fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
    let mut future = pin!(future);
    future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
}

/// A channel over a [`Feed`] holding `bytes`, all of them received (buffered) by reads that
/// stopped for more.
fn channel_holding(bytes: &[u8]) -> (ByteReadChannel, Feed) {
    let feed = Feed::default();
    let mut channel = ByteReadChannel::new(feed.clone());
    feed.push(bytes);
    // `await_content` buffers everything fed and waits for one byte more.
    while poll_once(channel.await_content(bytes.len() + 1)).is_pending()
        && channel.available_for_read() < bytes.len()
    {}
    assert_eq!(channel.available_for_read(), bytes.len());
    (channel, feed)
}

/// A decoder that counts the bytes it is handed, around another.
struct Counting<D> {
    inner: D,
    calls: u64,
    handed: u64,
}

impl<D: Decoder> Decoder for Counting<D> {
    type Item = D::Item;
    type Error = D::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<D::Item>, D::Error> {
        self.calls += 1;
        self.handed += src.len() as u64;
        self.inner.decode(src)
    }
}

/// The plainest hand-written delimiter decoder (a search from the start at every call, as
/// most are written against `FramedRead`, which calls `decode` only after new bytes).
struct CrlfCrlf;

impl Decoder for CrlfCrlf {
    type Item = BytesMut;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<BytesMut>> {
        Ok(src.windows(4).position(|w| w == b"\r\n\r\n").map(|i| {
            let item = src.split_to(i);
            src.advance(4);
            item
        }))
    }
}

/// A length-prefixed decoder that reserves the rest of the frame it has begun at every call,
/// the buffer management tokio-util's `Decoder::decode` documentation recommends. Counts the
/// buffered bytes that moved to another allocation: in its own `reserve` (because the buffer
/// lost the room it reserved before), and between its calls (the channel copied them).
#[derive(Default)]
struct Reserving {
    last: Option<(usize, usize)>,
    moved: u64,
}

impl Decoder for Reserving {
    type Item = BytesMut;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<BytesMut>> {
        if let Some((ptr, len)) = self.last
            && len == src.len()
            && ptr != src.as_ptr() as usize
        {
            self.moved += len as u64;
        }
        if src.len() < 4 {
            return Ok(None);
        }
        let n = u32::from_be_bytes(src[..4].try_into().unwrap()) as usize;
        if src.len() >= 4 + n {
            self.last = None;
            src.advance(4);
            return Ok(Some(src.split_to(n)));
        }
        let before = src.as_ptr() as usize;
        src.reserve(4 + n - src.len());
        if src.as_ptr() as usize != before {
            self.moved += src.len() as u64;
        }
        self.last = Some((src.as_ptr() as usize, src.len()));
        Ok(None)
    }
}

const CANCELS: u64 = 1_000;
const MIB: usize = 1024 * 1024;

/// A stream of frames whose `next_frame` is dropped and made again with no new byte does not
/// hand its decoder what is buffered again: the decoder lives in the stream, which knows that
/// nothing was received since the decoder last found no frame (tokio-util's `FramedRead`
/// decodes only after new bytes too). A decoder that searches from the start of the buffer
/// (most hand-written ones) was handed 1 MiB at every cancel before.
#[test]
fn frames_next_frame_recreated_does_not_decode_the_buffer_again_without_new_bytes() {
    let (channel, _feed) = channel_holding(&vec![b'a'; MIB]);
    let mut frames = channel.into_frames(Counting {
        inner: CrlfCrlf,
        calls: 0,
        handed: 0,
    });
    for _ in 0..CANCELS {
        assert!(poll_once(frames.next_frame()).is_pending());
    }
    let (_, decoder) = frames.into_parts();
    assert!(
        decoder.handed <= 2 * MIB as u64,
        "next_frame handed the decoder {} bytes over {CANCELS} cancels with {} bytes buffered and \
         none received meanwhile ({} calls)",
        decoder.handed,
        MIB,
        decoder.calls
    );
}

/// What the cancels above must not change: nothing lost or doubled once the rest arrives.
#[test]
fn read_frame_recreated_loses_and_doubles_nothing() {
    let mut frame = 100_000u32.to_be_bytes().to_vec();
    frame.extend((0..100_000u32).map(|i| i as u8));
    let (mut channel, feed) = channel_holding(&frame[..50_000]);
    let mut decoder = Reserving::default();
    for _ in 0..100 {
        assert!(poll_once(channel.read_frame(&mut decoder)).is_pending());
    }
    feed.push(&frame[50_000..]);
    feed.push(b"\0\0\0\x01z");
    let Poll::Ready(Ok(Some(got))) = poll_once(channel.read_frame(&mut decoder)) else {
        panic!("no frame");
    };
    assert_eq!(&got[..], &frame[4..]);
    let Poll::Ready(Ok(Some(got))) = poll_once(channel.read_frame(&mut decoder)) else {
        panic!("no second frame");
    };
    assert_eq!(&got[..], b"z");
}

/// One `read_frame` future kept across a `select!` loop (`&mut fut`, so not dropped) is
/// polled at every wake-up of the task, whichever branch woke it: with no byte received
/// since, its decoder is not handed the buffer again.
#[test]
fn read_frame_polled_again_without_new_bytes_does_not_decode_again() {
    let (mut channel, _feed) = channel_holding(&vec![b'a'; MIB]);
    let mut decoder = Counting {
        inner: CrlfCrlf,
        calls: 0,
        handed: 0,
    };
    {
        let mut future = pin!(channel.read_frame(&mut decoder));
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..CANCELS {
            assert!(future.as_mut().poll(&mut cx).is_pending());
        }
    }
    assert!(
        decoder.handed <= 2 * MIB as u64,
        "one read_frame polled {CANCELS} times handed the decoder {} bytes ({} buffered, none \
         received meanwhile; {} calls)",
        decoder.handed,
        MIB,
        decoder.calls
    );
}

/// A stream of frames gives its decoder's room back once per frame, also when `next_frame` is
/// made again after every cancel: a decoder that reserves room for the whole frame at every
/// call (tokio-util's documented buffer management) does not have the partial frame copied
/// at every cancel.
#[test]
fn frames_next_frame_recreated_does_not_copy_the_partial_frame_at_every_cancel() {
    let mut partial = (16 * MIB as u32).to_be_bytes().to_vec();
    partial.resize(4 + MIB, b'x');
    let (channel, _feed) = channel_holding(&partial);
    let mut frames = channel.into_frames(Reserving::default());
    assert!(poll_once(frames.next_frame()).is_pending());
    for _ in 0..CANCELS {
        assert!(poll_once(frames.next_frame()).is_pending());
    }
    let (_, decoder) = frames.into_parts();
    assert!(
        decoder.moved <= 4 * partial.len() as u64,
        "{} bytes of the partial frame ({} buffered) moved over {CANCELS} cancels",
        decoder.moved,
        partial.len()
    );
}
