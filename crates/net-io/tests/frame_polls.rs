//! `read_frame` and `Frames` polled, dropped and made again: a decoder is handed what is
//! buffered again only after more bytes arrive (`120ab38`), and no frame is missed, delayed,
//! doubled or reordered; and the read sizes the `copy_to` and fairness docs state (written by
//! the review of those commits).
//!
//! A scripted transport (`Feed`) whose bytes the test pushes; polls are made by hand with a
//! no-op waker, so that a poll, a drop and a poll again are exact.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// The channel and decoder of a call live in `RefCell`s on one thread, polled by hand: a borrow
// held across the call's `await` is the call itself.
#![allow(clippy::await_holding_refcell_ref)]

mod support;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Pending polls checked, timeouts met, frames of 200 KiB or more: to show what the runs covered.
static PENDINGS: AtomicUsize = AtomicUsize::new(0);
static TIMEOUTS: AtomicUsize = AtomicUsize::new(0);
static LARGE: AtomicUsize = AtomicUsize::new(0);
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use futures_core::Stream;
use net_io::ByteReadChannel;
use support::rng::Rng;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::codec::{Decoder, LengthDelimitedCodec, LinesCodec};

// ----- scripted transport ---------------------------------------------------------------------

enum Item {
    Data(Vec<u8>),
    Timeout,
}

#[derive(Default)]
struct Shared {
    items: VecDeque<Item>,
    closed: bool,
    /// The largest room a read of the channel offered.
    max_offered: usize,
}

#[derive(Clone, Default)]
struct Feed(Arc<Mutex<Shared>>);

impl Feed {
    fn push(&self, bytes: &[u8]) {
        self.0
            .lock()
            .unwrap()
            .items
            .push_back(Item::Data(bytes.to_vec()));
    }
    fn timeout(&self) {
        self.0.lock().unwrap().items.push_back(Item::Timeout);
    }
    fn close(&self) {
        self.0.lock().unwrap().closed = true;
    }
    fn is_drained(&self) -> bool {
        self.0.lock().unwrap().items.is_empty()
    }
    fn max_offered(&self) -> usize {
        self.0.lock().unwrap().max_offered
    }
    fn reader(&self) -> FeedReader {
        FeedReader(self.clone())
    }
}

struct FeedReader(Feed);

impl AsyncRead for FeedReader {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut s = self.0.0.lock().unwrap();
        s.max_offered = s.max_offered.max(buf.remaining());
        let closed = s.closed;
        match s.items.front_mut() {
            Some(Item::Data(d)) => {
                let n = d.len().min(buf.remaining());
                buf.put_slice(&d[..n]);
                d.drain(..n);
                if d.is_empty() {
                    s.items.pop_front();
                }
                Poll::Ready(Ok(()))
            }
            Some(Item::Timeout) => {
                s.items.pop_front();
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    net_io::Error::Timeout,
                )))
            }
            None if closed => Poll::Ready(Ok(())),
            // No waker kept: the test polls by hand.
            None => Poll::Pending,
        }
    }
}

fn cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

fn is_timeout(e: io::Error) -> bool {
    matches!(net_io::Error::from(e), net_io::Error::Timeout)
}

// ----- decoders -------------------------------------------------------------------------------

/// Every decoder under test, as one with `Vec<u8>` frames and `io::Error`.
struct Wrap<D>(D);

impl<D> Decoder for Wrap<D>
where
    D: Decoder,
    D::Item: AsRef<[u8]>,
    D::Error: std::fmt::Debug,
{
    type Item = Vec<u8>;
    type Error = io::Error;
    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Vec<u8>>> {
        self.0
            .decode(src)
            .map(|f| f.map(|f| f.as_ref().to_vec()))
            .map_err(|e| io::Error::other(format!("{e:?}")))
    }
    fn decode_eof(&mut self, src: &mut BytesMut) -> io::Result<Option<Vec<u8>>> {
        self.0
            .decode_eof(src)
            .map(|f| f.map(|f| f.as_ref().to_vec()))
            .map_err(|e| io::Error::other(format!("{e:?}")))
    }
}

/// Searches for LF from the start of the buffer at every call (keeps no place).
#[derive(Default)]
struct ScanNl;

impl Decoder for ScanNl {
    type Item = Vec<u8>;
    type Error = io::Error;
    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Vec<u8>>> {
        match memchr(src) {
            Some(i) => {
                let line = src.split_to(i + 1);
                Ok(Some(line[..i].to_vec()))
            }
            None => Ok(None),
        }
    }
}

fn memchr(src: &[u8]) -> Option<usize> {
    src.iter().position(|&b| b == b'\n')
}

/// A 4-byte big-endian length prefix, read again at every call (no state); makes room for the
/// whole frame and returns `None` until it is complete.
#[derive(Default)]
struct ReserveLen;

impl Decoder for ReserveLen {
    type Item = Vec<u8>;
    type Error = io::Error;
    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Vec<u8>>> {
        if src.len() < 4 {
            return Ok(None);
        }
        let n = u32::from_be_bytes(src[..4].try_into().unwrap()) as usize;
        if src.len() < 4 + n {
            src.reserve(4 + n - src.len());
            return Ok(None);
        }
        src.advance(4);
        Ok(Some(src.split_to(n).to_vec()))
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Lines,
    LengthDelimited,
    ScanNl,
    ReserveLen,
}

type Dyn = Box<dyn Decoder<Item = Vec<u8>, Error = io::Error> + Unpin>;

struct BoxDec(Dyn);

impl Decoder for BoxDec {
    type Item = Vec<u8>;
    type Error = io::Error;
    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Vec<u8>>> {
        self.0.decode(src)
    }
    fn decode_eof(&mut self, src: &mut BytesMut) -> io::Result<Option<Vec<u8>>> {
        self.0.decode_eof(src)
    }
}

impl Kind {
    fn decoder(self) -> BoxDec {
        BoxDec(match self {
            Kind::Lines => Box::new(Wrap(LinesCodec::new())),
            Kind::LengthDelimited => Box::new(Wrap(LengthDelimitedCodec::new())),
            Kind::ScanNl => Box::new(ScanNl),
            Kind::ReserveLen => Box::new(ReserveLen),
        })
    }
    fn line_based(self) -> bool {
        matches!(self, Kind::Lines | Kind::ScanNl)
    }
}

// ----- randomness -----------------------------------------------------------------------------

/// Frames (and the stream encoding them, with each frame's end offset).
fn make_input(rng: &mut Rng, kind: Kind) -> (Vec<Vec<u8>>, Vec<u8>, Vec<usize>) {
    let count = 1 + rng.below(12) as usize;
    let mut frames = Vec::new();
    let mut stream = Vec::new();
    let mut ends = Vec::new();
    for _ in 0..count {
        let len = match rng.below(20) {
            0 => 200_000 + rng.below(200_000) as usize,
            1 | 2 => rng.below(20_000) as usize,
            _ => rng.below(64) as usize,
        };
        let payload: Vec<u8> = if kind.line_based() {
            (0..len).map(|_| b'a' + rng.below(26) as u8).collect()
        } else {
            (0..len).map(|_| rng.next() as u8).collect()
        };
        if kind.line_based() {
            stream.extend_from_slice(&payload);
            stream.push(b'\n');
        } else {
            stream.extend_from_slice(&(len as u32).to_be_bytes());
            stream.extend_from_slice(&payload);
        }
        ends.push(stream.len());
        frames.push(payload);
    }
    (frames, stream, ends)
}

fn chunks(rng: &mut Rng, stream: &[u8]) -> VecDeque<Vec<u8>> {
    let mut out = VecDeque::new();
    let mut pos = 0;
    while pos < stream.len() {
        let size = match rng.below(10) {
            0 => 1 + rng.below(300_000) as usize,
            1..=3 => 1 + rng.below(3) as usize,
            _ => 1 + rng.below(5_000) as usize,
        };
        let end = (pos + size).min(stream.len());
        out.push_back(stream[pos..end].to_vec());
        pos = end;
    }
    out
}

fn complete(ends: &[usize], pushed: usize) -> usize {
    ends.iter().take_while(|&&e| e <= pushed).count()
}

// ----- the differential tests -----------------------------------------------------------------

type FrameFuture = Pin<Box<dyn Future<Output = io::Result<Option<Vec<u8>>>>>>;

/// One run of `read_frame` calls, polled, dropped and made again at random, with timeouts
/// injected; every frame must come once and in order, and a poll that waits must have
/// returned every frame the bytes pushed so far complete.
fn run_read_frame(seed: u64, kind: Kind) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let (frames, stream, ends) = make_input(&mut rng, kind);
    let mut pending_chunks = chunks(&mut rng, &stream);
    let feed = Feed::default();
    let channel = Rc::new(RefCell::new(ByteReadChannel::new(feed.reader())));
    let decoder = Rc::new(RefCell::new(kind.decoder()));
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut pushed = 0usize;
    let mut timeouts_queued = 0usize;
    let mut fut: Option<FrameFuture> = None;
    let mut ended = false;
    for step in 0..100_000 {
        match rng.below(10) {
            0..=2 => {
                if let Some(c) = pending_chunks.pop_front() {
                    pushed += c.len();
                    feed.push(&c);
                } else {
                    feed.close();
                }
            }
            3 if rng.below(4) == 0 => {
                feed.timeout();
                timeouts_queued += 1;
            }
            4 => {
                // A cancel: the next poll is a new call with the same decoder.
                fut = None;
            }
            _ => {
                if fut.is_none() {
                    let (channel, decoder) = (channel.clone(), decoder.clone());
                    // A new call: the same channel and decoder, borrowed while it lives.
                    fut = Some(Box::pin(async move {
                        let mut channel = channel.borrow_mut();
                        let mut decoder = decoder.borrow_mut();
                        channel.read_frame(&mut *decoder).await
                    }));
                }
                let polled = fut.as_mut().unwrap().as_mut().poll(&mut cx());
                match polled {
                    Poll::Ready(Ok(Some(frame))) => {
                        fut = None;
                        got.push(frame);
                    }
                    Poll::Ready(Ok(None)) => {
                        ended = true;
                        break;
                    }
                    Poll::Ready(Err(e)) => {
                        fut = None;
                        assert!(timeouts_queued > 0, "seed {seed} {kind:?}: error {e:?}");
                        assert!(is_timeout(e), "seed {seed} {kind:?}: not a timeout");
                        timeouts_queued -= 1;
                        TIMEOUTS.fetch_add(1, Ordering::Relaxed);
                    }
                    Poll::Pending => {
                        check_pending(&feed, got.len(), complete(&ends, pushed), seed, kind, step)
                    }
                }
            }
        }
    }
    check_end(ended, &got, &frames, seed, kind);
}

/// The same with a stream of frames: polled (a `next_frame` made again after every cancel is
/// exactly a `poll_next`), taken apart and made again after a timeout (which ends it) or at
/// random.
fn run_frames(seed: u64, kind: Kind) {
    let mut rng = Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
    let (frames, stream, ends) = make_input(&mut rng, kind);
    let mut pending_chunks = chunks(&mut rng, &stream);
    let feed = Feed::default();
    let mut stream_of = Some(ByteReadChannel::new(feed.reader()).into_frames(kind.decoder()));
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut pushed = 0usize;
    let mut timeouts_queued = 0usize;
    let mut ended = false;
    for step in 0..100_000 {
        match rng.below(10) {
            0..=2 => {
                if let Some(c) = pending_chunks.pop_front() {
                    pushed += c.len();
                    feed.push(&c);
                } else {
                    feed.close();
                }
            }
            3 if rng.below(4) == 0 => {
                feed.timeout();
                timeouts_queued += 1;
            }
            4 => {
                let (channel, decoder) = stream_of.take().unwrap().into_parts();
                stream_of = Some(channel.into_frames(decoder));
            }
            _ => {
                let frames_now = stream_of.as_mut().unwrap();
                match Pin::new(frames_now).poll_next(&mut cx()) {
                    Poll::Ready(Some(Ok(frame))) => got.push(frame),
                    Poll::Ready(None) => {
                        ended = true;
                        break;
                    }
                    Poll::Ready(Some(Err(e))) => {
                        assert!(timeouts_queued > 0, "seed {seed} {kind:?}: error {e:?}");
                        assert!(is_timeout(e), "seed {seed} {kind:?}: not a timeout");
                        timeouts_queued -= 1;
                        TIMEOUTS.fetch_add(1, Ordering::Relaxed);
                        // The stream ended with its error: go on with its parts.
                        let (channel, decoder) = stream_of.take().unwrap().into_parts();
                        stream_of = Some(channel.into_frames(decoder));
                    }
                    Poll::Pending => {
                        check_pending(&feed, got.len(), complete(&ends, pushed), seed, kind, step)
                    }
                }
            }
        }
    }
    check_end(ended, &got, &frames, seed, kind);
}

/// At a `Pending`: every byte pushed was read, and every frame complete in them was returned.
fn check_pending(feed: &Feed, got: usize, complete: usize, seed: u64, kind: Kind, step: usize) {
    PENDINGS.fetch_add(1, Ordering::Relaxed);
    assert!(feed.is_drained(), "seed {seed}: pending with bytes unread");
    assert_eq!(
        got, complete,
        "seed {seed} {kind:?} step {step}: a poll waits though a frame is complete in what was \
         received"
    );
}

/// At the end of a run: the stream ended, and the frames came whole and in order.
fn check_end(ended: bool, got: &[Vec<u8>], frames: &[Vec<u8>], seed: u64, kind: Kind) {
    assert!(ended, "seed {seed} {kind:?}: no end within the step bound");
    assert_eq!(got.len(), frames.len(), "seed {seed} {kind:?}: frame count");
    assert!(got == frames, "seed {seed} {kind:?}: frames differ");
    LARGE.fetch_add(
        frames.iter().filter(|f| f.len() >= 200_000).count(),
        Ordering::Relaxed,
    );
}

const KINDS: [Kind; 4] = [
    Kind::Lines,
    Kind::LengthDelimited,
    Kind::ScanNl,
    Kind::ReserveLen,
];

/// Runs `run` for 150 seeds with each decoder, then prints what the checks covered (both
/// tests' counts, as they may run at once).
fn every_seed_and_decoder(run: fn(u64, Kind)) {
    for seed in 1..=150 {
        for kind in KINDS {
            run(seed, kind);
        }
    }
    eprintln!(
        "pending polls checked {}, timeouts {}, large frames {}",
        PENDINGS.load(Ordering::Relaxed),
        TIMEOUTS.load(Ordering::Relaxed),
        LARGE.load(Ordering::Relaxed)
    );
}

/// `read_frame` calls polled, dropped and made again with the same decoder at random: no
/// frame missed, delayed (a poll that waits though a frame is complete), doubled or reordered.
#[test]
fn read_frame_calls_polled_dropped_and_made_again_at_random_miss_and_delay_no_frame() {
    every_seed_and_decoder(run_read_frame);
}

/// The same for a stream of frames, its `next_frame` dropped at random and the stream taken
/// apart and made again.
#[test]
fn frames_polled_and_taken_apart_at_random_miss_and_delay_no_frame() {
    every_seed_and_decoder(run_frames);
}

// ----- targeted cases -------------------------------------------------------------------------

/// A decoder whose `decode` found nothing, then the end of the stream without a byte more:
/// `decode_eof` is still handed what is buffered.
#[test]
fn decode_eof_follows_a_skipped_decode() {
    let feed = Feed::default();
    let mut channel = ByteReadChannel::new(feed.reader());
    let mut codec = Wrap(LinesCodec::new());
    feed.push(b"partial");
    let mut fut = Box::pin(channel.read_frame(&mut codec));
    assert!(fut.as_mut().poll(&mut cx()).is_pending());
    assert!(fut.as_mut().poll(&mut cx()).is_pending());
    feed.close();
    match fut.as_mut().poll(&mut cx()) {
        Poll::Ready(Ok(Some(line))) => assert_eq!(line, b"partial"),
        other => panic!("{other:?}"),
    }
}

/// A timeout between two polls of one stream: the stream ends with it; taken apart and made
/// again, the frame whose first half was buffered comes whole.
#[test]
fn a_frame_split_by_a_timeout_comes_whole_from_a_stream_made_again() {
    let feed = Feed::default();
    let mut frames = ByteReadChannel::new(feed.reader()).into_frames(LengthDelimitedCodec::new());
    feed.push(&[0, 0, 0, 4, b'a']);
    assert!(Pin::new(&mut frames).poll_next(&mut cx()).is_pending());
    feed.timeout();
    match Pin::new(&mut frames).poll_next(&mut cx()) {
        Poll::Ready(Some(Err(e))) => assert!(is_timeout(e)),
        other => panic!("{other:?}"),
    }
    let (channel, codec) = frames.into_parts();
    let mut frames = channel.into_frames(codec);
    assert!(Pin::new(&mut frames).poll_next(&mut cx()).is_pending());
    feed.push(b"bcd");
    match Pin::new(&mut frames).poll_next(&mut cx()) {
        Poll::Ready(Some(Ok(f))) => assert_eq!(&f[..], b"abcd"),
        other => panic!("{other:?}"),
    }
}

/// A decoder that breaks tokio-util's contract: it consumes a frame's header and returns
/// `None` though the body is buffered. Before 120ab38 a second poll of the same call decoded
/// the body; now, as with tokio-util's `FramedRead`, only bytes arriving do. (Info: parity
/// with `FramedRead`, asserted here.)
#[derive(Default)]
struct HeaderThenBody(Option<usize>);

impl Decoder for HeaderThenBody {
    type Item = Vec<u8>;
    type Error = io::Error;
    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Vec<u8>>> {
        match self.0 {
            None if !src.is_empty() => {
                self.0 = Some(src[0] as usize);
                src.advance(1);
                Ok(None)
            }
            Some(n) if src.len() >= n => {
                self.0 = None;
                Ok(Some(src.split_to(n).to_vec()))
            }
            _ => Ok(None),
        }
    }
}

#[test]
fn a_decoder_that_stops_after_its_header_waits_as_with_framed_read() {
    let feed = Feed::default();
    feed.push(&[3, b'a', b'b', b'c']);
    let mut channel = ByteReadChannel::new(feed.reader());
    let mut decoder = HeaderThenBody::default();
    let mut fut = Box::pin(channel.read_frame(&mut decoder));
    assert!(fut.as_mut().poll(&mut cx()).is_pending());
    let second = fut.as_mut().poll(&mut cx());

    let feed2 = Feed::default();
    feed2.push(&[3, b'a', b'b', b'c']);
    let mut framed = tokio_util::codec::FramedRead::new(feed2.reader(), HeaderThenBody::default());
    assert!(Pin::new(&mut framed).poll_next(&mut cx()).is_pending());
    let framed_second = Pin::new(&mut framed).poll_next(&mut cx());
    assert_eq!(second.is_pending(), framed_second.is_pending());
}

// ----- the read sizes the docs state --------------------------------------------------------------------

/// The type docs: "at the latest after 128 reads from the socket, each of at most what the
/// channel's buffer has room for (8 KiB usually, 64 KiB in copy_to, up to 256 KiB in a buffer
/// that a large item grew; while an item larger than that arrives, up to about as much as is
/// buffered of it)". A 1 MiB line arriving at once: no read offers room for much more than
/// the line (a buffer grown by doubling what it holds).
#[test]
fn no_read_of_a_large_line_offers_much_more_than_is_buffered() {
    let feed = Feed::default();
    let mut line = vec![b'x'; 1 << 20];
    line.push(b'\n');
    feed.push(&line);
    feed.close();
    let mut channel = ByteReadChannel::new(feed.reader());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let read = rt
        .block_on(channel.read_line(2 << 20, net_io::LineEnding::Default))
        .unwrap()
        .unwrap();
    assert_eq!(read.len(), 1 << 20);
    assert!(
        feed.max_offered() <= (1 << 20) + 8 * 1024,
        "a read offered {} bytes of room",
        feed.max_offered()
    );
}

/// The same for a frame of 1 MiB (a length prefix, then the body at once).
#[test]
fn no_read_of_a_large_frame_offers_much_more_than_is_buffered() {
    let feed = Feed::default();
    let mut stream = (1u32 << 20).to_be_bytes().to_vec();
    stream.extend(std::iter::repeat_n(7u8, 1 << 20));
    feed.push(&stream);
    feed.close();
    let mut channel = ByteReadChannel::new(feed.reader());
    let mut codec = LengthDelimitedCodec::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let frame = rt
        .block_on(channel.read_frame(&mut codec))
        .unwrap()
        .unwrap();
    assert_eq!(frame.len(), 1 << 20);
    assert!(
        feed.max_offered() <= (1 << 20) + 8 * 1024,
        "a read offered {} bytes of room",
        feed.max_offered()
    );
}

/// copy_to's docs: a read takes "more than 64 KiB when an earlier item grew the buffer past
/// that (up to 256 KiB, kept for the copy)".
#[test]
fn copy_to_after_a_large_item_reads_at_most_256_kib_at_once() {
    let feed = Feed::default();
    let mut line = vec![b'x'; 200 * 1024];
    line.push(b'\n');
    feed.push(&line);
    let body = vec![b'y'; 1 << 20];
    feed.push(&body);
    feed.close();
    let mut channel = ByteReadChannel::new(feed.reader());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        channel
            .read_line(1 << 20, net_io::LineEnding::Default)
            .await
            .unwrap()
            .unwrap();
        let before = feed.max_offered();
        let (mut w, mut r) = net_io::ByteChannel::new(false);
        let reader = async move { r.read_remaining(4 << 20).await.unwrap().len() };
        let writer = async {
            let n = channel.copy_to(&mut w, u64::MAX).await.unwrap();
            w.flush_and_close().await.unwrap();
            n
        };
        let (n, m) = tokio::join!(writer, reader);
        assert_eq!(n, 1 << 20);
        assert_eq!(m, 1 << 20);
        eprintln!(
            "max room before copy {before}, overall {}",
            feed.max_offered()
        );
        assert!(feed.max_offered() <= 256 * 1024);
    });
}

/// A decoder that panics at its first call, then finds lines.
#[derive(Default)]
struct PanicsOnce(bool);

impl Decoder for PanicsOnce {
    type Item = Vec<u8>;
    type Error = io::Error;
    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Vec<u8>>> {
        if !self.0 {
            self.0 = true;
            panic!("decoder panics once");
        }
        ScanNl.decode(src)
    }
}

/// After a decoder's panic (caught), the stream's next poll hands it what is buffered again,
/// without a byte more.
#[test]
fn after_a_caught_decoder_panic_the_next_poll_decodes_without_new_bytes() {
    let feed = Feed::default();
    feed.push(b"a\n");
    let mut frames = ByteReadChannel::new(feed.reader()).into_frames(PanicsOnce::default());
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = Pin::new(&mut frames).poll_next(&mut cx());
    }));
    assert!(caught.is_err());
    match Pin::new(&mut frames).poll_next(&mut cx()) {
        Poll::Ready(Some(Ok(line))) => assert_eq!(line, b"a"),
        other => panic!("{other:?}"),
    }
}
