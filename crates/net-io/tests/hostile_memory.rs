//! Memory follows bytes received, also when a hostile peer trickles them: a read channel fed
//! one byte (or a chunk) per transport read never holds much more than twice what it received
//! and has not handed out, whatever the read waits for (a long line, a long multi-byte
//! delimiter, a frame whose length prefix says huge).
//!
//! This test binary installs a counting global allocator (`stats_alloc`, as `tests/alloc.rs`
//! does); the counters are process-wide, so the file holds a single `#[test]` that runs every
//! scenario in turn on a current-thread runtime.

use std::alloc::System;
use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use net_io::{ByteReadChannel, Error, LineEnding};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::codec::LengthDelimitedCodec;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not freed so far (see `retained_memory.rs`).
fn live() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

/// What a scenario may hold beyond twice the bytes received: the channel's usual buffer and
/// its small allocations, with room to spare.
const SLACK: isize = 24 * 1024;

/// A channel over a [`Source`] that hands out `chunks`, whose memory is counted from now on.
fn channel(chunks: Vec<Vec<u8>>) -> ByteReadChannel {
    channel_with_end(chunks, false)
}

/// As [`channel`]; with `ends`, the peer closes after its chunks instead of going silent.
fn channel_with_end(chunks: Vec<Vec<u8>>, ends: bool) -> ByteReadChannel {
    let source = Source {
        chunks: chunks.into(),
        ends,
    };
    BASE.with(|b| b.set(live()));
    SENT.with(|s| s.set(0));
    WORST.with(|w| w.set(isize::MIN));
    ByteReadChannel::new(source)
}

thread_local! {
    static BASE: Cell<isize> = const { Cell::new(0) };
    static SENT: Cell<usize> = const { Cell::new(0) };
    static WORST: Cell<isize> = const { Cell::new(isize::MIN) };
}

/// The peer: hands out its chunks one per transport read (never more than the read has room
/// for), then waits for ever (without waking: the scenarios poll by hand), or closes. At every read it
/// records how far the memory allocated since the scenario began exceeds twice the bytes
/// handed out.
struct Source {
    chunks: VecDeque<Vec<u8>>,
    /// Whether the peer closes after its chunks.
    ends: bool,
}

impl AsyncRead for Source {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let sent = SENT.with(Cell::get);
        // The chunks handed out so far were freed: `sent` bytes off the count, added back.
        let over = live() + sent as isize - BASE.with(Cell::get) - 2 * sent as isize;
        WORST.with(|w| w.set(w.get().max(over)));
        let Some(mut chunk) = self.chunks.pop_front() else {
            return if self.ends {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            };
        };
        let n = chunk.len().min(buf.remaining());
        buf.put_slice(&chunk[..n]);
        if n < chunk.len() {
            let rest = chunk.split_off(n);
            self.chunks.push_front(rest);
        }
        SENT.with(|s| s.set(sent + n));
        Poll::Ready(Ok(()))
    }
}

/// How far memory exceeded twice the bytes received, at worst, in the current scenario.
fn worst() -> isize {
    WORST.with(Cell::get)
}

/// Polls `fut` until it completes or waits for the silent peer; `None` if it waits.
fn drive<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

fn bytes_one_at_a_time(bytes: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    bytes.iter().map(|&b| vec![b])
}

#[test]
fn memory_follows_bytes_a_trickling_peer_sent() {
    a_long_line_one_byte_at_a_time();
    a_long_delimiter_that_never_completes();
    a_frame_whose_length_says_huge();
    a_new_decoder_after_a_dropped_read_frame();
    frames_after_a_dropped_read_frame();
    a_frame_announced_after_the_end();
    frames_read_after_the_end_are_not_copied();
    a_large_frame_that_does_come();
}

/// Many frames received whole, the end of the stream seen by a look-ahead, then the frames read
/// one by one: the buffer the channel grew with the bytes it received is not the decoder's
/// room for an announced length, and is not copied (it was, as the frames were read, with the
/// copy and the old buffer both held: over twice the bytes received at that instant).
fn frames_read_after_the_end_are_not_copied() {
    for total_frames in [300, 700, 1000, 1500, 2000] {
        let mut stream = Vec::new();
        for i in 0..total_frames {
            stream.extend_from_slice(&1020u32.to_be_bytes());
            stream.extend_from_slice(&[i as u8; 1020]);
        }
        let received = stream.len();
        let chunks = stream.chunks(64 * 1024).map(<[u8]>::to_vec).collect();
        let mut input = channel_with_end(chunks, true);
        assert!(
            matches!(drive(input.await_content(received + 1)), Some(Ok(false))),
            "the look-ahead did not see the end"
        );
        let mut codec = LengthDelimitedCodec::new();
        let allocated = || GLOBAL.stats().bytes_allocated;
        let before = allocated();
        for _ in 0..total_frames {
            let frame = drive(input.read_frame(&mut codec));
            assert!(matches!(frame, Some(Ok(Some(_)))), "a frame is missing");
        }
        assert!(matches!(
            drive(input.read_frame(&mut codec)),
            Some(Ok(None))
        ));
        let copied = allocated() - before;
        assert!(
            copied <= SLACK as usize,
            "reading {total_frames} frames ({received} bytes) after the end allocated {copied} bytes"
        );
    }
}

/// A peer that sends a length prefix announcing 8 MiB and a few bytes, and closes, all before
/// the channel decodes the prefix (a look-ahead reached the end first): the decoder's end of
/// stream is an error, and the room it made for the announced length is not kept.
fn a_frame_announced_after_the_end() {
    let announced: u32 = 8 * 1024 * 1024 - 1;
    let mut start = announced.to_be_bytes().to_vec();
    start.extend_from_slice(b"0123");
    let mut input = channel_with_end(vec![start], true);
    assert!(
        matches!(drive(input.await_content(64)), Some(Ok(false))),
        "the look-ahead did not see the end"
    );
    let mut codec = LengthDelimitedCodec::new();
    assert!(
        matches!(drive(input.read_frame(&mut codec)), Some(Err(_))),
        "a frame cut short by the end is not an error"
    );
    let held = live() - BASE.with(Cell::get);
    assert!(
        held <= SLACK,
        "a frame announced as 8 MiB with 8 bytes received before the end: {held} bytes held"
    );
}

/// A `read_frame` that gave back the room its decoder reserved, then dropped while it waits
/// (a timeout), and a new decoder on the same channel whose first length prefix also says
/// huge: the new decoder's room is given back too (it was kept: the channel took it for the
/// room of the frame it had already given back once).
fn a_new_decoder_after_a_dropped_read_frame() {
    let announced: u32 = 8 * 1024 * 1024 - 1;
    let mut start = announced.to_be_bytes().to_vec();
    start.extend_from_slice(&announced.to_be_bytes());
    start.extend_from_slice(b"0123456789");
    let mut input = channel(vec![start]);
    let mut first = LengthDelimitedCodec::new();
    assert!(
        drive(input.read_frame(&mut first)).is_none(),
        "the first frame is not there"
    );
    let mut second = LengthDelimitedCodec::new();
    assert!(
        drive(input.read_frame(&mut second)).is_none(),
        "the second decoder's frame is not there"
    );
    let held = live() - BASE.with(Cell::get);
    assert!(
        held <= SLACK,
        "a second decoder's frame announced as 8 MiB with 18 bytes received: {held} bytes held"
    );
}

/// As [`a_new_decoder_after_a_dropped_read_frame`], with the channel then turned into a
/// stream of frames (`into_frames`) with a new decoder: its room is given back too.
fn frames_after_a_dropped_read_frame() {
    let announced: u32 = 8 * 1024 * 1024 - 1;
    let mut start = announced.to_be_bytes().to_vec();
    start.extend_from_slice(&announced.to_be_bytes());
    start.extend_from_slice(b"0123456789");
    let mut input = channel(vec![start]);
    let mut first = LengthDelimitedCodec::new();
    assert!(
        drive(input.read_frame(&mut first)).is_none(),
        "the first frame is not there"
    );
    let mut frames = input.into_frames(LengthDelimitedCodec::new());
    assert!(
        drive(std::future::poll_fn(|cx| {
            futures_core::Stream::poll_next(Pin::new(&mut frames), cx)
        }))
        .is_none(),
        "the stream's first frame is not there"
    );
    let held = live() - BASE.with(Cell::get);
    assert!(
        held <= SLACK,
        "a stream's frame announced as 8 MiB with 18 bytes received: {held} bytes held"
    );
}

/// A 1 MiB frame whose prefix came with its first bytes, then the rest in 64 KiB reads: the
/// frame is whole, and the buffer grew with its bytes.
fn a_large_frame_that_does_come() {
    let size = 1 << 20;
    let mut first = (size as u32).to_be_bytes().to_vec();
    first.extend_from_slice(&[7; 10]);
    let mut chunks = vec![first];
    let rest: Vec<u8> = (10..size).map(|i| i as u8).collect();
    chunks.extend(rest.chunks(64 * 1024).map(<[u8]>::to_vec));
    let mut input = channel(chunks);
    let mut codec = LengthDelimitedCodec::new();
    let frame = drive(input.read_frame(&mut codec))
        .expect("the frame came")
        .unwrap()
        .unwrap();
    assert_eq!(frame.len(), size);
    assert_eq!(&frame[..10], &[7; 10]);
    assert!(
        frame[10..]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (i + 10) as u8)
    );
    assert!(
        worst() <= SLACK,
        "a 1 MiB frame: memory exceeded twice the bytes received by {} bytes",
        worst()
    );
}

/// A 100 KB line, one byte per read: the buffer grows with the line, never past twice it.
fn a_long_line_one_byte_at_a_time() {
    let mut line = vec![b'a'; 100_000];
    line.push(b'\n');
    let mut input = channel(bytes_one_at_a_time(&line).collect::<Vec<_>>());
    let got = drive(input.read_line(200_000, LineEnding::Default)).expect("the line came");
    assert_eq!(got.unwrap().map(|l| l.len()), Some(100_000));
    assert!(
        worst() <= SLACK,
        "a trickled line: memory exceeded twice the bytes received by {} bytes",
        worst()
    );
}

/// `read_until` with a 64-byte delimiter that never comes, one byte per read: too long at the
/// limit, memory bounded throughout, also while the next read skips 1 MiB of it.
fn a_long_delimiter_that_never_completes() {
    let delimiter = [b'|'; 64];
    let mut almost = delimiter[..63].to_vec();
    almost.push(b'x');
    let stream: Vec<u8> = almost.iter().cycle().take(16 * 1024).copied().collect();
    let mut input = channel(bytes_one_at_a_time(&stream).collect::<Vec<_>>());
    let got = drive(input.read_until(&delimiter, 4096)).expect("decided at the limit");
    assert!(
        matches!(got, Err(Error::TooLongLine { limit: 4096 })),
        "{got:?}"
    );
    assert!(
        worst() <= SLACK,
        "an unfinished delimiter: memory exceeded twice the bytes received by {} bytes",
        worst()
    );
}

/// A 4-byte length prefix announcing 8 MiB (`LengthDelimitedCodec`'s default limit), then a
/// few bytes and silence: memory follows the few bytes, not the announced length.
fn a_frame_whose_length_says_huge() {
    let announced: u32 = 8 * 1024 * 1024 - 1;
    let mut start = announced.to_be_bytes().to_vec();
    start.extend_from_slice(b"0123456789");
    // In one packet, and one byte at a time.
    for chunks in [vec![start.clone()], bytes_one_at_a_time(&start).collect()] {
        frame_whose_length_says_huge(chunks);
    }
}

fn frame_whose_length_says_huge(chunks: Vec<Vec<u8>>) {
    let one_packet = chunks.len() == 1;
    let mut input = channel(chunks);
    let mut codec = LengthDelimitedCodec::new();
    assert!(
        drive(input.read_frame(&mut codec)).is_none(),
        "the frame is not there"
    );
    let held = live() - BASE.with(Cell::get);
    assert!(
        held <= SLACK,
        "a frame announced as 8 MiB with 14 bytes received (in one packet: {one_packet}): {held} bytes held"
    );
}
