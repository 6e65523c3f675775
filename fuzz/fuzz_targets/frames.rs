//! `read_frame` against tokio-util's own `FramedRead`, over the same bytes cut into the same
//! chunks (a `Pending` before each chunk of odd length, as the other targets' `ChunkedReader`
//! does), with a decoder the fuzzer builds: `LengthDelimitedCodec` (field length 1, 2, 3, 4 or
//! 8 bytes, offset, adjustment, `num_skip`, either byte order, `max_frame_length` from 0 to
//! 8 MiB), `LinesCodec` and `AnyDelimiterCodec` with a maximum length, `BytesCodec`.
//! The stream may end with a transport error instead of an end of stream.
//!
//! Both must give the same frames (for `BytesCodec`, whose frames are whatever is buffered, the
//! same bytes), then the same outcome (clean end, the codec's error, the transport's error), and
//! the decoder must have consumed the same bytes (`total_bytes_read` against what `FramedRead`
//! read less what it still buffers). Memory the channel holds, counted by a global allocator at
//! every transport read and after every frame, stays within twice the bytes received plus
//! 256 KiB (the most room a decoder's reservation may keep, see the channel's `# Memory`) and a
//! little slack, whatever a length prefix says (up to `max_frame_length`, just over it, or
//! `u64::MAX`; SPEC §4.1).

#![no_main]

use std::alloc::System;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;

use bytes::BytesMut;
use futures_core::Stream;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use net_io::ByteReadChannel;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::codec::{
    AnyDelimiterCodec, AnyDelimiterCodecError, BytesCodec, Decoder, FramedRead,
    LengthDelimitedCodec, LinesCodec, LinesCodecError, length_delimited,
};

include!("../common.rs");

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not freed so far.
fn live() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

/// The most the channel may hold beyond twice the bytes received: room a decoder reserved that
/// the channel keeps (up to 256 KiB), its usual read buffer and small allocations.
const SLACK: isize = 256 * 1024 + 64 * 1024;

/// The largest `max_frame_length` the target uses (a user-set `usize::MAX` can make
/// tokio-util's own reservation abort; out of scope).
const MAX_FRAME: usize = 8 << 20;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum MaxLen {
    Small(u8),
    Medium(u16),
    /// `1 << (n % 24)`: up to 8 MiB.
    Power(u8),
    /// Up to 8 MiB.
    Any(u32),
}

impl MaxLen {
    fn get(self) -> usize {
        match self {
            MaxLen::Small(n) => usize::from(n),
            MaxLen::Medium(n) => usize::from(n),
            MaxLen::Power(n) => 1 << (n % 24),
            MaxLen::Any(n) => n as usize % (MAX_FRAME + 1),
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
enum Codec {
    Length {
        /// 1, 2, 3, 4 or 8.
        field: u8,
        offset: u8,
        adjustment: i8,
        /// From 1 to the header's length (more would make tokio-util panic).
        num_skip: Option<u8>,
        little_endian: bool,
        max: MaxLen,
    },
    Lines(MaxLen),
    Bytes,
    AnyDelimiter {
        delimiters: Vec<u8>,
        max: MaxLen,
    },
}

/// The length-delimited codec's settings, as used to build it and to encode headers.
#[derive(Debug, Clone, Copy)]
struct Length {
    field: usize,
    offset: usize,
    adjustment: isize,
    num_skip: usize,
    little_endian: bool,
    max: usize,
}

impl Length {
    fn head(&self) -> usize {
        self.offset + self.field
    }

    fn codec(&self) -> LengthDelimitedCodec {
        let mut builder = length_delimited::Builder::new();
        builder
            .length_field_length(self.field)
            .length_field_offset(self.offset)
            .length_adjustment(self.adjustment)
            .num_skip(self.num_skip)
            .max_frame_length(self.max);
        if self.little_endian {
            builder.little_endian();
        } else {
            builder.big_endian();
        }
        builder.new_codec()
    }

    /// A header whose length field says `value` (truncated to the field).
    fn header(&self, value: u64, filler: u8) -> Vec<u8> {
        let mut out = vec![filler; self.offset];
        if self.little_endian {
            out.extend_from_slice(&value.to_le_bytes()[..self.field]);
        } else {
            out.extend_from_slice(&value.to_be_bytes()[8 - self.field..]);
        }
        out
    }

    /// The field value that makes the codec take `payload` bytes after the header as the frame.
    fn value_for(&self, payload: usize) -> Option<u64> {
        let n = (self.head() - self.num_skip + payload) as i64 - self.adjustment as i64;
        let n = u64::try_from(n).ok()?;
        (self.field == 8 || n < 1 << (8 * self.field)).then_some(n)
    }
}

/// A piece of the input stream.
#[derive(Arbitrary, Debug, Clone)]
enum Piece {
    Raw(Vec<u8>),
    /// For the length-delimited codec: a well-formed frame holding these bytes (raw bytes
    /// otherwise, or where the field cannot say the length).
    Frame(Vec<u8>),
    /// A header whose field says `u64::MAX` (all ones, in the field's width).
    AllOnes,
    /// A header whose field says `max_frame_length` plus this much (from 0: just at the limit).
    OverMax(u8),
    /// A header whose field says this.
    Header(u64),
    /// `2^(shift % 21) + extra` bytes (up to 1 MiB and a little) of one value; for the
    /// length-delimited codec, a frame holding them: an item past 256 KiB, whose room the
    /// channel gives back and which then does come. Sizes are spread evenly over the powers of
    /// two, and only the first two big pieces of an input count (the others are empty), so
    /// that most runs stay short.
    Big {
        shift: u8,
        extra: u16,
        byte: u8,
    },
}

/// How many [`Piece::Big`] of an input count.
const BIG_PIECES: usize = 2;

/// The bytes of a [`Piece::Big`].
fn big(shift: u8, extra: u16, byte: u8) -> Vec<u8> {
    vec![byte; (1 << (shift % 21)) + usize::from(extra)]
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Failure {
    Reset,
    Other,
}

#[derive(Arbitrary, Debug)]
struct Case {
    codec: Codec,
    pieces: Vec<Piece>,
    /// Chunk lengths, used in turn until the input is used up (one chunk of all of it if
    /// empty; none shorter than a 1024th of the input); a `Pending` comes before every chunk
    /// of odd length.
    cuts: Vec<u16>,
    /// Ends the stream with a transport error instead of an end of stream.
    fail: Option<Failure>,
}

/// One read of the script.
#[derive(Debug)]
enum Step {
    Pending,
    Data(usize),
}

/// The scripted transport: plays the chunks (one per read, less if the read has less room),
/// a `Pending` before each of odd length, then an end of stream or the chosen error. It holds
/// the whole input from the start, so it frees nothing while the channel reads; with `check`,
/// every read first checks what has been allocated since `base` against what it handed out.
struct Script {
    input: Vec<u8>,
    steps: Vec<Step>,
    step: usize,
    /// Bytes handed out.
    pos: usize,
    fail: Option<Failure>,
    check: Option<isize>,
}

impl Script {
    fn new(input: &[u8], cuts: &[u16], fail: Option<Failure>) -> Self {
        let mut steps = Vec::new();
        // No more than about 1024 chunks (`drive` polls a read at most a million times).
        let least = input.len() / 1024;
        let mut at = 0;
        let mut i = 0;
        while at < input.len() {
            let want = match cuts.get(i % cuts.len().max(1)) {
                Some(&n) => usize::from(n).max(least).max(1),
                None => input.len(),
            };
            let n = want.min(input.len() - at);
            if n % 2 == 1 {
                steps.push(Step::Pending);
            }
            steps.push(Step::Data(n));
            at += n;
            i += 1;
        }
        Script {
            input: input.to_vec(),
            steps,
            step: 0,
            pos: 0,
            fail,
            check: None,
        }
    }

    fn check_memory(&self) {
        if let Some(base) = self.check {
            let held = live() - base;
            assert!(
                held <= 2 * self.pos as isize + SLACK,
                "the channel holds {held} bytes after receiving {}",
                self.pos
            );
        }
    }
}

impl AsyncRead for Script {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.check_memory();
        match this.steps.get_mut(this.step) {
            None => match this.fail {
                None => Poll::Ready(Ok(())),
                Some(Failure::Reset) => Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
                Some(Failure::Other) => Poll::Ready(Err(io::Error::other("injected"))),
            },
            Some(Step::Pending) => {
                this.step += 1;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Some(Step::Data(left)) => {
                let n = (*left).min(buf.remaining());
                buf.put_slice(&this.input[this.pos..this.pos + n]);
                this.pos += n;
                *left -= n;
                if *left == 0 {
                    this.step += 1;
                }
                Poll::Ready(Ok(()))
            }
        }
    }
}

/// How a run of frames ended, comparably.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Clean,
    /// `LinesCodec`'s or `AnyDelimiterCodec`'s maximum length.
    TooLong,
    /// An I/O error (the codec's, such as "frame size too big" or "bytes remaining on
    /// stream", or the transport's), by kind and message.
    Io(io::ErrorKind, String),
}

fn io_end(e: &io::Error) -> End {
    End::Io(e.kind(), e.to_string())
}

/// The decoders' results in a comparable form.
trait Comparable: Decoder {
    fn bytes(item: Self::Item) -> Vec<u8>;
    fn end(e: &Self::Error) -> End;
}

impl Comparable for LengthDelimitedCodec {
    fn bytes(item: BytesMut) -> Vec<u8> {
        item.to_vec()
    }
    fn end(e: &io::Error) -> End {
        io_end(e)
    }
}

impl Comparable for BytesCodec {
    fn bytes(item: BytesMut) -> Vec<u8> {
        item.to_vec()
    }
    fn end(e: &io::Error) -> End {
        io_end(e)
    }
}

impl Comparable for LinesCodec {
    fn bytes(item: String) -> Vec<u8> {
        item.into_bytes()
    }
    fn end(e: &LinesCodecError) -> End {
        match e {
            LinesCodecError::MaxLineLengthExceeded => End::TooLong,
            LinesCodecError::Io(e) => io_end(e),
        }
    }
}

impl Comparable for AnyDelimiterCodec {
    fn bytes(item: bytes::Bytes) -> Vec<u8> {
        item.to_vec()
    }
    fn end(e: &AnyDelimiterCodecError) -> End {
        match e {
            AnyDelimiterCodecError::MaxChunkLengthExceeded => End::TooLong,
            AnyDelimiterCodecError::Io(e) => io_end(e),
        }
    }
}

/// What a run gave: the frames, the bytes consumed after each, how it ended, and the bytes
/// consumed in all.
#[derive(Debug)]
struct Run {
    frames: Vec<Vec<u8>>,
    consumed: Vec<u64>,
    end: End,
    total: u64,
}

/// The reference: tokio-util's `FramedRead` over the script, up to its first `None` or error.
fn reference<D: Comparable>(decoder: D, script: Script) -> Run {
    let mut framed = FramedRead::new(script, decoder);
    let mut frames = Vec::new();
    let mut consumed = Vec::new();
    let end = drive(poll_fn(|cx| {
        loop {
            match std::task::ready!(Pin::new(&mut framed).poll_next(cx)) {
                Some(Ok(frame)) => {
                    frames.push(D::bytes(frame));
                    consumed.push((framed.get_ref().pos - framed.read_buffer().len()) as u64);
                }
                Some(Err(e)) => return Poll::Ready(D::end(&e)),
                None => return Poll::Ready(End::Clean),
            }
        }
    }));
    let total = (framed.get_ref().pos - framed.read_buffer().len()) as u64;
    Run {
        frames,
        consumed,
        end,
        total,
    }
}

/// `read_frame` over the script, compared with `want` frame by frame as they come (so that
/// no frame is held while memory is counted).
fn check<D: Comparable>(mut decoder: D, mut script: Script, want: &Run, whole_frames: bool) {
    let mut concat_want: Vec<u8> = Vec::new();
    if !whole_frames {
        concat_want = want.frames.concat();
    }
    let base = live();
    script.check = Some(base);
    let mut channel = ByteReadChannel::new(script);
    let mut count = 0usize;
    let mut seen = 0usize;
    let end = drive(async {
        loop {
            match channel.read_frame(&mut decoder).await {
                Ok(Some(frame)) => {
                    let frame = D::bytes(frame);
                    if whole_frames {
                        assert!(count < want.frames.len(), "an extra frame {frame:?}");
                        assert_eq!(frame, want.frames[count], "frame {count}");
                        assert_eq!(
                            channel.total_bytes_read(),
                            want.consumed[count],
                            "bytes consumed after frame {count}"
                        );
                    } else {
                        assert!(!frame.is_empty(), "an empty frame");
                        assert_eq!(
                            frame[..],
                            concat_want[seen..(seen + frame.len()).min(concat_want.len())],
                            "frame {count} at byte {seen}"
                        );
                        seen += frame.len();
                        assert_eq!(channel.total_bytes_read(), seen as u64);
                    }
                    count += 1;
                    drop(frame);
                    let held = live() - base;
                    assert!(
                        held <= 2
                            * (channel.total_bytes_read() as isize
                                + channel.available_for_read() as isize)
                            + SLACK,
                        "the channel holds {held} bytes after frame {count}"
                    );
                }
                Ok(None) => return End::Clean,
                Err(e) => return D::end(&e),
            }
        }
    });
    if whole_frames {
        assert_eq!(count, want.frames.len(), "frames missing");
    } else {
        assert_eq!(seen, concat_want.len(), "bytes missing");
    }
    assert_eq!(end, want.end);
    // (A clean end need not consume everything: `LinesCodec` leaves a last lone `\r`.)
    assert_eq!(
        channel.total_bytes_read(),
        want.total,
        "bytes consumed in all"
    );
}

/// A well-formed frame holding `payload` (or the payload alone where the field cannot say its
/// length).
fn frame(out: &mut Vec<u8>, length: &Length, payload: &[u8]) {
    if let Some(v) = length.value_for(payload.len()) {
        out.extend(length.header(v, 0xa5));
    }
    out.extend_from_slice(payload);
}

/// The input: `case`'s pieces, headers encoded for `length`'s codec if there is one. A big
/// piece holds no byte of `delimiters` (a million empty items would only slow the fuzzer).
fn input(case: &Case, length: Option<&Length>, delimiters: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut bigs = 0;
    for piece in &case.pieces {
        if let Piece::Big { .. } = piece {
            bigs += 1;
            if bigs > BIG_PIECES {
                continue;
            }
        }
        let Some(length) = length else {
            match piece {
                Piece::Raw(bytes) | Piece::Frame(bytes) => out.extend_from_slice(bytes),
                Piece::AllOnes => out.extend_from_slice(&[0xff; 8]),
                Piece::OverMax(d) => out.push(*d),
                Piece::Header(v) => out.extend_from_slice(&v.to_be_bytes()),
                Piece::Big { shift, extra, byte } => {
                    if let Some(byte) = (0..=255)
                        .map(|b| byte.wrapping_add(b))
                        .find(|b| !delimiters.contains(b))
                    {
                        out.extend(big(*shift, *extra, byte));
                    }
                }
            }
            continue;
        };
        match piece {
            Piece::Raw(bytes) => out.extend_from_slice(bytes),
            Piece::Frame(payload) => frame(&mut out, length, payload),
            Piece::Big { shift, extra, byte } => {
                frame(&mut out, length, &big(*shift, *extra, *byte))
            }
            Piece::AllOnes => out.extend(length.header(u64::MAX, 0)),
            Piece::OverMax(d) => {
                out.extend(length.header((length.max as u64).saturating_add(u64::from(*d)), 1))
            }
            Piece::Header(v) => out.extend(length.header(*v, 2)),
        }
    }
    out
}

fn compare<D: Comparable + Clone>(decoder: D, input: &[u8], case: &Case, whole_frames: bool) {
    let want = reference(decoder.clone(), Script::new(input, &case.cuts, case.fail));
    check(
        decoder,
        Script::new(input, &case.cuts, case.fail),
        &want,
        whole_frames,
    );
}

fuzz_target!(|case: Case| {
    match case.codec.clone() {
        Codec::Length {
            field,
            offset,
            adjustment,
            num_skip,
            little_endian,
            max,
        } => {
            let field = [1, 2, 3, 4, 8][usize::from(field) % 5];
            let offset = usize::from(offset % 16);
            let length = Length {
                field,
                offset,
                adjustment: isize::from(adjustment),
                // At least one byte: with none, a header saying 0 is an empty frame that
                // consumes nothing, for ever (`FramedRead` too).
                num_skip: num_skip
                    .map_or(offset + field, |n| 1 + usize::from(n) % (offset + field)),
                little_endian,
                max: max.get(),
            };
            let input = input(&case, Some(&length), &[]);
            compare(length.codec(), &input, &case, true);
        }
        Codec::Lines(max) => {
            let input = input(&case, None, b"\n");
            compare(
                LinesCodec::new_with_max_length(max.get()),
                &input,
                &case,
                true,
            );
        }
        Codec::Bytes => {
            let input = input(&case, None, &[]);
            compare(BytesCodec::new(), &input, &case, false);
        }
        Codec::AnyDelimiter { delimiters, max } => {
            let input = input(&case, None, &delimiters);
            let codec =
                AnyDelimiterCodec::new_with_max_length(delimiters, b",".to_vec(), max.get());
            compare(codec, &input, &case, true);
        }
    }
});
