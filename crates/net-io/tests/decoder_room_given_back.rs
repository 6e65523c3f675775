//! A fuzz-found peak of the `frames` target ("memory peaked at 2810068 bytes before at a
//! transport read, after receiving 717547 (calls the channel cannot prevent allocated
//! 1042134)"), replayed deterministically: a look-ahead (`await_content`) grows the buffer with
//! the bytes it receives, to room for up to twice as many (the `# Memory` rule); only then does
//! `read_frame`'s `LengthDelimitedCodec` see the frame's length prefix and make room for the
//! whole frame (`BytesMut::reserve`, which doubles the allocation); the channel gives that room
//! back before its next transport read, by moving what is buffered to a buffer of the usual
//! size. For that instant the grown buffer, the decoder's room and the copy are all live:
//! every part within the documented rules, the sum past the fuzz target's old peak bound
//! (twice the bytes received, 320 KiB, and what the decoder's own call allocated), which did
//! not count the copy.
//!
//! This binary installs a counting global allocator (`stats_alloc`, as `tests/alloc.rs` does);
//! its counters are process-wide, so the file holds a single `#[test]`. The workspace forbids
//! `unsafe_code`, so no allocator of its own records the peak: between two points the peak is
//! at most what was live at the first plus what was allocated since (exact here: the
//! give-back allocates its copy before it frees the grown buffer).

use std::alloc::System;
use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use net_io::ByteReadChannel;
use net_io::bytes::BytesMut;
use net_io::codec::{Decoder, LengthDelimitedCodec};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tokio::io::{AsyncRead, ReadBuf};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not freed so far.
fn live() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

/// Bytes allocated so far (never decreases).
fn allocated() -> isize {
    GLOBAL.stats().bytes_allocated as isize
}

/// The fuzz target's slack: room a decoder reserved that the channel keeps (up to 256 KiB),
/// its usual read buffer and small allocations.
const SLACK: isize = 256 * 1024 + 64 * 1024;

/// A read of the usual size: the give-back moves what is buffered to a buffer with this much
/// room more.
const READ_CHUNK: isize = 8 * 1024;

/// What was seen at a point: bytes live and bytes allocated so far.
#[derive(Clone, Copy, Debug, Default)]
struct Mark {
    live: isize,
    allocated: isize,
}

impl Mark {
    fn now() -> Self {
        Mark {
            live: live(),
            allocated: allocated(),
        }
    }

    /// The most that can have been live between `self` and `later`.
    fn peak_until(self, later: Mark) -> isize {
        self.live + (later.allocated - self.allocated)
    }
}

thread_local! {
    /// At the last transport read: the mark, and the bytes handed out before it.
    static AT_READ: Cell<(Mark, usize)> = Cell::new((Mark::default(), 0));
    /// Around the decoder's last call: before, after, and what was buffered after it.
    static AT_DECODE: Cell<(Mark, Mark, usize)> =
        Cell::new((Mark::default(), Mark::default(), 0));
    /// The peer's limit: it hands out up to this many bytes in all, then waits.
    static LIMIT: Cell<usize> = const { Cell::new(0) };
}

/// The peer: the whole input from the start (it frees nothing while the channel reads), of
/// which it hands out up to [`LIMIT`] bytes, then waits (`Pending`, without waking: the test
/// polls by hand).
struct Peer {
    input: Vec<u8>,
    pos: usize,
}

impl AsyncRead for Peer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        AT_READ.set((Mark::now(), self.pos));
        let n = (LIMIT.get() - self.pos).min(buf.remaining());
        if n == 0 {
            return Poll::Pending;
        }
        let pos = self.pos;
        buf.put_slice(&self.input[pos..pos + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// A decoder whose calls are marked in [`AT_DECODE`].
struct Marked(LengthDelimitedCodec);

impl Decoder for Marked {
    type Item = BytesMut;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<BytesMut>> {
        let before = Mark::now();
        let out = self.0.decode(src);
        AT_DECODE.set((before, Mark::now(), src.len()));
        out
    }
}

/// Polls `fut` once; `None` if it waits for the peer.
fn poll_once<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

#[test]
fn a_decoder_room_given_back_after_a_look_ahead_grew_the_buffer() {
    // One frame of 2 MiB (under the codec's default 8 MiB `max_frame_length`) after a 4-byte
    // big-endian length prefix.
    let frame_len = 2 << 20;
    let mut input = (frame_len as u32).to_be_bytes().to_vec();
    input.extend((0..frame_len).map(|i| i as u8));
    LIMIT.set(0);
    let base = live();
    let mut channel = ByteReadChannel::new(Peer { input, pos: 0 });

    // The peer sends 8 KiB at a time; a look-ahead for more than will come reads it all. Stop
    // right after a step that doubled the buffer, past what the slack covers: the buffer then
    // holds room for about twice the bytes received.
    let mut received = 0;
    let mut grown = false;
    for _ in 0..200 {
        received += 8 * 1024;
        LIMIT.set(received);
        let held_before = live() - base;
        assert!(poll_once(channel.await_content(usize::MAX)).is_none());
        assert_eq!(channel.available_for_read(), received);
        let held = live() - base;
        // `# Memory`: a read that waits for a count holds room for at most twice the bytes
        // it received (or 8 KiB more, for fewer).
        assert!(
            held <= 2 * received as isize + READ_CHUNK,
            "the look-ahead holds {held} bytes after receiving {received}"
        );
        if received > 400 * 1024 && held > held_before && held > 3 * received as isize / 2 {
            grown = true;
            break;
        }
    }
    assert!(grown, "the look-ahead's buffer never doubled past 400 KiB");
    let grown_to = live() - base;

    // Now the decoder sees the length prefix: it makes room for the whole frame, the channel
    // gives that room back, and reads (the peer has nothing more: `Pending`).
    let mut decoder = Marked(LengthDelimitedCodec::new());
    assert!(poll_once(channel.read_frame(&mut decoder)).is_none());
    let (before, after, buffered) = AT_DECODE.get();
    let (at_read, handed) = AT_READ.get();
    assert_eq!(handed, received);
    assert_eq!(buffered, received - 4, "the decoder took the prefix off");
    let room = before.peak_until(after) - before.live;
    // (`stats_alloc` counts a reallocation by what it adds.)
    assert!(
        before.live - base + room >= frame_len as isize,
        "LengthDelimitedCodec made room for the frame: {room} bytes more"
    );
    let peak = after.peak_until(at_read) - base;
    let held = at_read.live - base;
    let r = received as isize;
    eprintln!(
        "received {r}, look-ahead buffer {grown_to}, decoder's room +{room}, peak before the \
         read {peak} (old bound {}, corrected {}), held at the read {held}",
        2 * r + SLACK + room,
        2 * r + SLACK + room + buffered as isize + READ_CHUNK
    );

    // `# Memory`: the decoder's room is given back before the next transport read; what is
    // buffered is in a buffer of the usual size.
    assert!(
        held <= buffered as isize + READ_CHUNK + 1024,
        "after the give-back the channel holds {held} bytes with {buffered} buffered"
    );
    // At the give-back, live: the look-ahead's buffer (up to twice the bytes received), the
    // decoder's room, and the copy of what is buffered (plus a read chunk). The fuzz target's
    // corrected peak bound counts the copy as the decoder's; its old bound did not.
    assert!(
        peak <= 2 * r + SLACK + room + buffered as isize + READ_CHUNK,
        "memory peaked at {peak} bytes after receiving {r} (decoder's room {room}, copy of \
         {buffered} buffered)"
    );

    // The frame still comes whole.
    LIMIT.set(frame_len + 4);
    let mut frame = None;
    for _ in 0..1000 {
        if let Some(out) = poll_once(channel.read_frame(&mut decoder)) {
            frame = Some(out.unwrap().unwrap());
            break;
        }
    }
    let frame = frame.expect("the frame came");
    assert_eq!(frame.len(), frame_len);
    assert!(frame.iter().enumerate().all(|(i, &b)| b == i as u8));
}
