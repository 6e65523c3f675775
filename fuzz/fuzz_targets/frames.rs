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

use std::future::poll_fn;
use std::io;
use std::pin::{Pin, pin};

use bytes::BytesMut;
use futures_core::Stream;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use net_io::ByteReadChannel;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::codec::{
    AnyDelimiterCodec, AnyDelimiterCodecError, BytesCodec, Decoder, FramedRead,
    LengthDelimitedCodec, LinesCodec, LinesCodecError, length_delimited,
};

include!("../common.rs");

thread_local! {
    /// What the decoder's own calls added to the peak since the last checkpoint (see
    /// [`Measured`]).
    static DECODER: Cell<isize> = const { Cell::new(0) };
    /// Timeouts the script has reported.
    static TIMEOUTS: Cell<usize> = const { Cell::new(0) };
}

/// Starts measuring the channel: from now on, checkpoints check.
fn start_measuring_decoder() {
    DECODER.set(0);
    start_measuring();
}

/// Checks memory, at a transport read, after a frame and at the end, with `received` bytes
/// received so far: what is live now, and the peak since the last checkpoint, at most twice
/// the bytes received plus [`SLACK`]. The peak may also hold what the decoder's own calls
/// allocated since the last checkpoint, which the channel cannot prevent: room
/// `LengthDelimitedCodec` reserves for a frame whose length it read (up to
/// `max_frame_length`, before the channel gives it back), or the `String` `LinesCodec` copies
/// a line into while the buffer still holds it; and the copy that gives such room back (see
/// [`Measured::give_back`]). Nothing else: the channel's own copies and growth (giving back a
/// buffer it grew, growing the buffer) stay within the bound at every instant.
fn checkpoint(received: usize, at: &dyn Fn() -> String) {
    check_memory(received, SLACK, DECODER.get(), at);
    DECODER.set(0);
}

/// A decoder whose calls are measured: what each adds to the peak (a reservation, a copied
/// item) is counted in [`DECODER`], and kept out of the peak the channel is held to.
#[derive(Debug)]
struct Measured<D>(D);

impl<D> Measured<D> {
    fn call<T>(f: impl FnOnce() -> T) -> T {
        let before = measured();
        let outer = PEAK.swap(before, Ordering::Relaxed);
        let out = f();
        let inner = PEAK.load(Ordering::Relaxed);
        DECODER.set(DECODER.get() + (inner - before));
        PEAK.fetch_max(outer, Ordering::Relaxed);
        out
    }

    /// Counts, for a call that made room in the buffer (`before`: its capacity before the
    /// call), the copy that gives that room back. Room past 256 KiB and past twice what is
    /// buffered is given back at once (the channel's `# Memory`), by moving what is buffered
    /// to a buffer of the usual size (what is buffered and a read of 8 KiB) while the room is
    /// still allocated. Without the room there would be no copy, and the copy follows what is
    /// buffered, up to every byte received, which the channel may hold in room for twice as
    /// many (a look-ahead grew the buffer before the decoder read the frame's length): so it
    /// is counted with the room, not held to the slack.
    fn give_back(src: &BytesMut, before: usize) {
        let room = src.capacity();
        if room > before && room > 256 * 1024 && room > 2 * src.len() {
            DECODER.set(DECODER.get() + (src.len() + 8 * 1024) as isize);
        }
    }
}

impl<D: Decoder> Decoder for Measured<D> {
    type Item = D::Item;
    type Error = D::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<D::Item>, D::Error> {
        let before = src.capacity();
        let out = Self::call(|| self.0.decode(src));
        Self::give_back(src, before);
        out
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<D::Item>, D::Error> {
        let before = src.capacity();
        let out = Self::call(|| self.0.decode_eof(src));
        Self::give_back(src, before);
        out
    }
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

/// What may come before a chunk, besides the `Pending` of a chunk of odd length.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Stall {
    Nothing,
    /// A `Pending` (where a cancelling reader drops its `read_frame`).
    Pending,
    /// A transport timeout (`Error::Timeout`, not final): `read_frame` fails with it, and the
    /// next call goes on.
    TimedOut,
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
    /// Used in turn before each chunk (nothing if empty), only for `read_frame`: `FramedRead`
    /// reads the same chunks without them.
    stalls: Vec<Stall>,
    /// Bit 0: `read_frame`'s future is dropped at every `Pending`, and called again with the
    /// same decoder (cancel safe). Bit 1: a look-ahead before each `read_frame`, see
    /// [`Case::ahead`].
    flags: u8,
}

impl Case {
    fn cancel(&self) -> bool {
        self.flags & 1 != 0
    }

    /// With bit 1 of the flags, how many bytes beyond those buffered each `read_frame` is
    /// preceded by an `await_content` for (bits 2 to 7: 0 to 31 bytes, or 2 KiB to 64 KiB).
    /// It consumes nothing, so the frames stay `FramedRead`'s; one that reaches the end of the
    /// stream first makes `read_frame` decode what is buffered with `decode_eof` at once (a
    /// length prefix there may be the first the decoder sees).
    fn ahead(&self) -> Option<usize> {
        let n = usize::from(self.flags >> 2);
        (self.flags & 2 != 0).then_some(if n < 32 { n } else { (n - 31) * 2048 })
    }
}

/// One read of the script.
#[derive(Debug)]
enum Step {
    Pending,
    TimedOut,
    Data(usize),
}

/// The scripted transport: plays the chunks (one per read, less if the read has less room),
/// a `Pending` before each of odd length, then an end of stream or the chosen error. It holds
/// the whole input from the start, so it frees nothing while the channel reads; every read
/// first passes a [`checkpoint`] (which checks only while the channel is measured).
struct Script {
    input: Vec<u8>,
    steps: Vec<Step>,
    step: usize,
    /// Bytes handed out.
    pos: usize,
    fail: Option<Failure>,
}

impl Script {
    fn new(input: &[u8], cuts: &[u16], fail: Option<Failure>, stalls: &[Stall]) -> Self {
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
            match stalls.get(i % stalls.len().max(1)) {
                None | Some(Stall::Nothing) => {}
                Some(Stall::Pending) => steps.push(Step::Pending),
                Some(Stall::TimedOut) => steps.push(Step::TimedOut),
            }
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
        checkpoint(this.pos, &|| "at a transport read".to_owned());
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
            Some(Step::TimedOut) => {
                this.step += 1;
                TIMEOUTS.set(TIMEOUTS.get() + 1);
                // As a transport adapter reports it: not final.
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    net_io::Error::Timeout,
                )))
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
    /// The item's bytes, not copied (the checked run allocates nothing of its own).
    fn slice(item: &Self::Item) -> &[u8];
    fn end(e: &Self::Error) -> End;
}

impl Comparable for LengthDelimitedCodec {
    fn bytes(item: BytesMut) -> Vec<u8> {
        item.to_vec()
    }
    fn slice(item: &BytesMut) -> &[u8] {
        item
    }
    fn end(e: &io::Error) -> End {
        io_end(e)
    }
}

impl Comparable for BytesCodec {
    fn bytes(item: BytesMut) -> Vec<u8> {
        item.to_vec()
    }
    fn slice(item: &BytesMut) -> &[u8] {
        item
    }
    fn end(e: &io::Error) -> End {
        io_end(e)
    }
}

impl Comparable for LinesCodec {
    fn bytes(item: String) -> Vec<u8> {
        item.into_bytes()
    }
    fn slice(item: &String) -> &[u8] {
        item.as_bytes()
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
    fn slice(item: &bytes::Bytes) -> &[u8] {
        item
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

/// One `read_frame` to its end, polled by hand; with `cancel`, its future is dropped at every
/// `Pending` and `read_frame` called again with the same decoder. `pendings` counts the
/// `Pending`s of the whole run (a bounded number: the script wakes at once whenever it is
/// pending, and stalls but once before each chunk).
fn next_frame<D>(
    channel: &mut ByteReadChannel,
    decoder: &mut Measured<D>,
    cancel: bool,
    pendings: &mut usize,
) -> Result<Option<D::Item>, D::Error>
where
    D: Decoder,
    D::Error: From<io::Error>,
{
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        let mut read = pin!(channel.read_frame(decoder));
        loop {
            if let Poll::Ready(frame) = read.as_mut().poll(&mut cx) {
                return frame;
            }
            *pendings += 1;
            assert!(
                *pendings < 1_000_000,
                "a read did not complete although all input was available"
            );
            if cancel {
                break;
            }
        }
    }
}

/// `await_content(min)` to its end, polled (and with `cancel`, dropped at every `Pending` and
/// called again) as [`next_frame`] does.
fn look_ahead(
    channel: &mut ByteReadChannel,
    min: usize,
    cancel: bool,
    pendings: &mut usize,
) -> net_io::Result<bool> {
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        let mut read = pin!(channel.await_content(min));
        loop {
            if let Poll::Ready(done) = read.as_mut().poll(&mut cx) {
                return done;
            }
            *pendings += 1;
            assert!(
                *pendings < 1_000_000,
                "a look-ahead did not complete although all input was available"
            );
            if cancel {
                break;
            }
        }
    }
}

/// `read_frame` over the script, compared with `want` frame by frame as they come (so that
/// no frame is held while memory is counted), each preceded by `await_content` for `ahead`
/// more bytes than are buffered if there is one. A timeout is no end: reading goes on.
fn check<D: Comparable>(
    decoder: D,
    script: Script,
    want: &Run,
    whole_frames: bool,
    cancel: bool,
    ahead: Option<usize>,
) {
    let mut concat_want: Vec<u8> = Vec::new();
    if !whole_frames {
        concat_want = want.frames.concat();
    }
    let mut decoder = Measured(decoder);
    start_measuring_decoder();
    let mut channel = ByteReadChannel::new(script);
    let mut count = 0usize;
    let mut seen = 0usize;
    let mut pendings = 0usize;
    let mut timeouts = 0usize;
    TIMEOUTS.set(0);
    let received = |channel: &ByteReadChannel| {
        (channel.total_bytes_read() + channel.available_for_read() as u64) as usize
    };
    let end = loop {
        if let Some(ahead) = ahead {
            let min = channel.available_for_read() + ahead;
            match look_ahead(&mut channel, min, cancel, &mut pendings) {
                Ok(complete) => assert_eq!(
                    complete,
                    channel.available_for_read() >= min,
                    "await_content({min})'s answer"
                ),
                Err(net_io::Error::Timeout) => {
                    timeouts += 1;
                    assert_eq!(timeouts, TIMEOUTS.get(), "a timeout reported again");
                    continue;
                }
                // The transport's error: `read_frame` decodes what is buffered, then reports
                // it too.
                Err(_) => {}
            }
            checkpoint(received(&channel), &|| {
                format!("after a look-ahead for {min} bytes")
            });
        }
        let frame = match next_frame(&mut channel, &mut decoder, cancel, &mut pendings) {
            Ok(Some(frame)) => frame,
            Ok(None) => break End::Clean,
            Err(e) => match D::end(&e) {
                End::Io(io::ErrorKind::TimedOut, _) => {
                    // Each once: the channel must not keep a timeout as its failure.
                    timeouts += 1;
                    assert_eq!(timeouts, TIMEOUTS.get(), "a timeout reported again");
                    continue;
                }
                end => break end,
            },
        };
        let bytes = D::slice(&frame);
        if whole_frames {
            assert!(count < want.frames.len(), "an extra frame {bytes:?}");
            assert_eq!(bytes, &want.frames[count][..], "frame {count}");
            assert_eq!(
                channel.total_bytes_read(),
                want.consumed[count],
                "bytes consumed after frame {count}"
            );
        } else {
            assert!(!bytes.is_empty(), "an empty frame");
            assert_eq!(
                bytes,
                &concat_want[seen..(seen + bytes.len()).min(concat_want.len())],
                "frame {count} at byte {seen}"
            );
            seen += bytes.len();
            assert_eq!(channel.total_bytes_read(), seen as u64);
        }
        count += 1;
        drop(frame);
        checkpoint(received(&channel), &|| format!("after frame {count}"));
    };
    checkpoint(received(&channel), &|| format!("at the end ({end:?})"));
    stop_measuring();
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
    let want = reference(
        decoder.clone(),
        Script::new(input, &case.cuts, case.fail, &[]),
    );
    check(
        decoder,
        Script::new(input, &case.cuts, case.fail, &case.stalls),
        &want,
        whole_frames,
        case.cancel(),
        case.ahead(),
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
