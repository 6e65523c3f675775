//! `net-io`'s channels against a model, under a seeded random stress: a `ByteWriteChannel` and
//! a `ByteReadChannel` at the two ends of an in-memory transport that, by the seed, takes and
//! hands out bytes a few at a time, returns `Pending` (and wakes at once), times out
//! ([`Error::Timeout`], which is not final), and ends cleanly (a shutdown) or with a reset (a
//! write side dropped without one, or a write error at a chosen byte); or at the two ends of a
//! `ByteChannel`. Most rounds run both ends in one task (a seed replays exactly), some in two
//! tasks on two threads.
//!
//! - The writer runs random calls (every typed write, strings, byte slices small and over
//!   8 KiB, `write_bytes`, `write_frame` with tokio-util's `BytesCodec` and `LinesCodec`,
//!   `flush`, tokio's `write` and `flush`), some dropped after a random number of polls, and
//!   ends with `flush_and_close`, tokio's `shutdown`, `cancel` or a drop, then one call more.
//!   Its log is what each call counted in `total_bytes_written` (the prefix of its bytes that
//!   the peer will receive, as `# Dropped writes` says).
//! - The reader, concurrently, runs random reads (every typed read, `read_bytes`, `read_fully`,
//!   `read_available`, `read_remaining`, `discard`, `discard_exact`, `peek`, `await_content`,
//!   `skip_if_found`, every line read with random limits and both endings, `read_until` with
//!   random delimiters, `read_frame`, a stream of frames, tokio's `read` and
//!   `poll_fill_buf`/`consume`, `cancel`), some dropped after a random number of polls, and
//!   records what each returned and consumed (`total_bytes_read`).
//! - Checked afterwards against the reference model (`crates/net-io/tests/support/model.rs`,
//!   a cursor over the bytes the transport carried, ending cleanly or with a failure): every
//!   value, every error's variant and documented counts, what each dropped or timed-out read
//!   consumed (nothing for a cancel-safe read; the skip of an over-long line; the bytes a
//!   `discard` or `read_fully` took), the skip of an over-long line across all of it,
//!   `available_for_read` and `is_closed_for_read`; that the transport's bytes are exactly the
//!   writer's log after a clean close and a prefix of it otherwise, that a stream ends cleanly
//!   only when nothing was cut or failed, and that a failed or closed writer answers every
//!   later call with its failure or `ClosedForWrite`, taking nothing. No panic, no hang (each
//!   round is bounded in time).
//!
//! `MODEL_SEED` and `MODEL_ROUNDS` choose the rounds (default: 600 rounds from seed 1, about
//! 2 s, 4 s on a loaded machine, and bounded to 20 s); a failing seed is printed, and runs
//! again on its own with `MODEL_SEED=n MODEL_ROUNDS=1` (`MODEL_STATS` prints a line per
//! round).
//!
//! A second test does the same for the codec bridge with tokio-util's `LinesCodec` (with and
//! without a maximum) and `LengthDelimitedCodec` (field widths, offsets, adjustments,
//! `num_skip`, maximums, hostile lengths; bytes sent as they are, or frames `write_frame`
//! wrote), against `FramedRead` over the bytes carried, with `read_frame`, `next_frame`,
//! `into_parts` and typed reads between them, and for `copy_to` and `copy_and_close` between
//! two flaky transports: `MODEL_FRAMES_SEED` and `MODEL_FRAMES_ROUNDS` (default: 100 rounds,
//! about 3 s); see "frames and copies" below.

#[path = "../../crates/net-io/tests/support/model.rs"]
mod model;

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use net_io::codec::{BytesCodec, LengthDelimitedCodec, LinesCodec, LinesCodecError};
use net_io::{ByteChannel, ByteReadChannel, ByteWriteChannel, Error, LineEnding};
use net_tests::rng::Rng;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use model::{Model, Outcome};

// ----- the transport ------------------------------------------------------------------------

/// How the write side of the transport ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Open,
    /// `poll_shutdown`: a clean end.
    Shutdown,
    /// Dropped without a shutdown, or failed: the reader sees a reset.
    Reset,
}

/// The two halves' shared state.
#[derive(Debug)]
struct Shared {
    rng: Rng,
    /// Bytes taken by the write side and not yet handed out.
    queue: VecDeque<u8>,
    /// The most bytes `queue` holds.
    cap: usize,
    /// Every byte the write side took, in order.
    taken: Vec<u8>,
    end: End,
    reader_gone: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
    /// `poll_write` fails with a reset once this many bytes were taken.
    fail_at: Option<usize>,
    /// One poll in this many returns `Pending` (waking at once).
    pending_one_in: u64,
    /// One read (write) poll in this many times out; 0: never.
    read_timeout_one_in: u64,
    write_timeout_one_in: u64,
    /// The most bytes one poll hands out or takes.
    max_chunk: u64,
}

impl Shared {
    fn chunk(&mut self, most: usize) -> usize {
        let n = 1 + self.rng.below(self.max_chunk) as usize;
        n.min(most)
    }

    fn yield_now(&mut self, cx: &Context<'_>) -> bool {
        if self.rng.chance(self.pending_one_in) {
            cx.waker().wake_by_ref();
            return true;
        }
        false
    }

    fn times_out(&mut self, one_in: u64) -> bool {
        one_in != 0 && self.rng.chance(one_in)
    }
}

fn timeout() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, Error::Timeout)
}

struct Reader(Arc<Mutex<Shared>>);
struct Writer(Arc<Mutex<Shared>>);

impl AsyncRead for Reader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut s = self.0.lock().unwrap();
        if s.yield_now(cx) {
            return Poll::Pending;
        }
        let one_in = s.read_timeout_one_in;
        if s.times_out(one_in) {
            return Poll::Ready(Err(timeout()));
        }
        if !s.queue.is_empty() {
            let most = s.queue.len().min(buf.remaining());
            let n = s.chunk(most);
            let bytes: Vec<u8> = s.queue.drain(..n).collect();
            buf.put_slice(&bytes);
            if let Some(w) = s.writer.take() {
                w.wake();
            }
            return Poll::Ready(Ok(()));
        }
        match s.end {
            End::Shutdown => Poll::Ready(Ok(())),
            End::Reset => Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
            End::Open => {
                s.reader = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut s = self.0.lock().unwrap();
        s.reader_gone = true;
        if let Some(w) = s.writer.take() {
            w.wake();
        }
    }
}

impl Writer {
    fn ended(s: &mut Shared, end: End) {
        if s.end == End::Open {
            s.end = end;
        }
        if let Some(w) = s.reader.take() {
            w.wake();
        }
    }
}

impl AsyncWrite for Writer {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        src: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut s = self.0.lock().unwrap();
        assert_eq!(s.end, End::Open, "a write after the transport ended");
        if s.reader_gone {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if s.yield_now(cx) {
            return Poll::Pending;
        }
        let one_in = s.write_timeout_one_in;
        if s.times_out(one_in) {
            return Poll::Ready(Err(timeout()));
        }
        if s.fail_at.is_some_and(|at| s.taken.len() >= at) {
            Writer::ended(&mut s, End::Reset);
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        if src.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let room = s.cap - s.queue.len();
        if room == 0 {
            s.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = s.chunk(room.min(src.len()));
        s.queue.extend(&src[..n]);
        s.taken.extend_from_slice(&src[..n]);
        if let Some(w) = s.reader.take() {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.0.lock().unwrap();
        if s.yield_now(cx) {
            return Poll::Pending;
        }
        let one_in = s.write_timeout_one_in;
        if s.times_out(one_in) {
            return Poll::Ready(Err(timeout()));
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.0.lock().unwrap();
        if s.yield_now(cx) {
            return Poll::Pending;
        }
        Writer::ended(&mut s, End::Shutdown);
        Poll::Ready(Ok(()))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        Writer::ended(&mut self.0.lock().unwrap(), End::Reset);
    }
}

/// Polls `fut` until it completes or, with `polls`, until it returned `Pending` that many
/// times; then drops it (`None`).
async fn limited<F: Future>(fut: F, polls: Option<u64>) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut pending = 0;
    poll_fn(|cx| match fut.as_mut().poll(cx) {
        Poll::Ready(v) => Poll::Ready(Some(v)),
        Poll::Pending => {
            pending += 1;
            if polls.is_some_and(|p| pending >= p) {
                Poll::Ready(None)
            } else {
                Poll::Pending
            }
        }
    })
    .await
}

fn drop_after(rng: &mut Rng, one_in: u64) -> Option<u64> {
    rng.chance(one_in).then(|| 1 + rng.below(8))
}

// ----- generated content --------------------------------------------------------------------

/// Pieces of text: line endings, and UTF-8 of every width, which transport reads split.
const PIECES: [&str; 12] = [
    "a",
    "b",
    "xy",
    "\r",
    "\n",
    "\r\n",
    "é",
    "€",
    "😀",
    ".",
    "ab",
    "\r\n.\r\n",
];

fn text(rng: &mut Rng, len: usize) -> String {
    let mut s = String::new();
    while s.len() < len {
        s.push_str(PIECES[rng.below(PIECES.len() as u64) as usize]);
    }
    s
}

fn bytes(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(10) {
        0 => 8 * 1024 + rng.below(12 * 1024) as usize,
        1..=3 => 0,
        _ => rng.below(40) as usize,
    };
    let mut v = text(rng, len).into_bytes();
    // Bytes that are no UTF-8: a lone continuation byte, a truncated sequence.
    for _ in 0..rng.below(3) {
        let at = rng.below(v.len() as u64 + 1) as usize;
        v.insert(at, [0xff, 0x80, 0xe2][rng.below(3) as usize]);
    }
    v
}

fn count(rng: &mut Rng) -> usize {
    match rng.below(12) {
        0 => 0,
        1 => 4096 + rng.below(16 * 1024) as usize,
        2 => [usize::MAX, u32::MAX as usize, 1 << 20][rng.below(3) as usize],
        _ => rng.below(24) as usize,
    }
}

fn limit(rng: &mut Rng) -> usize {
    match rng.below(8) {
        0 => 0,
        1 => usize::MAX,
        2 => 1 << 16,
        _ => rng.below(24) as usize,
    }
}

const DELIMITERS: [&[u8]; 7] = [b"\n", b"\r\n", b"ab", b"\r\n.\r\n", b"\xff", b"a", b""];

// ----- the writer ---------------------------------------------------------------------------

/// One typed write: its kind (an index into the 18 typed writes) and value.
fn typed_bytes(kind: u64, v: u64) -> Vec<u8> {
    match kind {
        0 => vec![v as u8],
        1 => vec![v as u8],
        2 => (v as u16).to_be_bytes().to_vec(),
        3 => (v as i16).to_be_bytes().to_vec(),
        4 => (v as u32).to_be_bytes().to_vec(),
        5 => (v as i32).to_be_bytes().to_vec(),
        6 => v.to_be_bytes().to_vec(),
        7 => (v as i64).to_be_bytes().to_vec(),
        8 => f32::from_bits(v as u32).to_be_bytes().to_vec(),
        9 => f64::from_bits(v).to_be_bytes().to_vec(),
        10 => (v as u16).to_le_bytes().to_vec(),
        11 => (v as i16).to_le_bytes().to_vec(),
        12 => (v as u32).to_le_bytes().to_vec(),
        13 => (v as i32).to_le_bytes().to_vec(),
        14 => v.to_le_bytes().to_vec(),
        15 => (v as i64).to_le_bytes().to_vec(),
        16 => f32::from_bits(v as u32).to_le_bytes().to_vec(),
        _ => f64::from_bits(v).to_le_bytes().to_vec(),
    }
}

async fn typed_write(w: &mut ByteWriteChannel, kind: u64, v: u64) -> net_io::Result<()> {
    match kind {
        0 => w.write_u8(v as u8).await,
        1 => w.write_i8(v as i8).await,
        2 => w.write_u16(v as u16).await,
        3 => w.write_i16(v as i16).await,
        4 => w.write_u32(v as u32).await,
        5 => w.write_i32(v as i32).await,
        6 => w.write_u64(v).await,
        7 => w.write_i64(v as i64).await,
        8 => w.write_f32(f32::from_bits(v as u32)).await,
        9 => w.write_f64(f64::from_bits(v)).await,
        10 => w.write_u16_le(v as u16).await,
        11 => w.write_i16_le(v as i16).await,
        12 => w.write_u32_le(v as u32).await,
        13 => w.write_i32_le(v as i32).await,
        14 => w.write_u64_le(v).await,
        15 => w.write_i64_le(v as i64).await,
        16 => w.write_f32_le(f32::from_bits(v as u32)).await,
        _ => w.write_f64_le(f64::from_bits(v)).await,
    }
}

#[derive(Debug)]
enum WriteOp {
    Typed(u64, u64),
    Fully(Vec<u8>),
    Str(String),
    Bytes(Vec<u8>),
    Frame(Vec<u8>),
    Line(String),
    Flush,
    /// tokio's `AsyncWriteExt::write`: one `poll_write`, which may take part.
    TraitWrite(Vec<u8>),
    /// tokio's `AsyncWriteExt::flush`.
    TraitFlush,
}

impl WriteOp {
    fn random(rng: &mut Rng) -> WriteOp {
        match rng.below(14) {
            0..=4 => WriteOp::Typed(rng.below(18), rng.below(u64::MAX)),
            5..=7 => WriteOp::Fully(bytes(rng)),
            8 | 9 => {
                let len = rng.below(30) as usize;
                WriteOp::Str(text(rng, len))
            }
            10 => WriteOp::Bytes(bytes(rng)),
            11 => WriteOp::Frame(bytes(rng)),
            12 => {
                // LinesCodec writes the line and an LF.
                let len = rng.below(20) as usize;
                let line: String = text(rng, len).replace(['\r', '\n'], "");
                WriteOp::Line(line)
            }
            13 if rng.chance(2) => WriteOp::TraitWrite(bytes(rng)),
            13 if rng.chance(2) => WriteOp::TraitFlush,
            _ => WriteOp::Flush,
        }
    }

    /// The bytes the call writes.
    fn bytes(&self) -> Vec<u8> {
        match self {
            WriteOp::Typed(kind, v) => typed_bytes(*kind, *v),
            WriteOp::Fully(b) | WriteOp::Bytes(b) | WriteOp::Frame(b) => b.clone(),
            WriteOp::Str(s) => s.as_bytes().to_vec(),
            WriteOp::Line(s) => format!("{s}\n").into_bytes(),
            WriteOp::TraitWrite(b) => b.clone(),
            WriteOp::Flush | WriteOp::TraitFlush => Vec::new(),
        }
    }

    /// The call, for messages.
    fn name(&self) -> String {
        match self {
            WriteOp::Typed(kind, v) => format!("typed write {kind} of {v}"),
            WriteOp::Fully(b) => format!("write_fully of {}", b.len()),
            WriteOp::Str(s) => format!("write_string_utf8 of {}", s.len()),
            WriteOp::Bytes(b) => format!("write_bytes of {}", b.len()),
            WriteOp::Frame(b) => format!("write_frame of {}", b.len()),
            WriteOp::Line(s) => format!("write_frame of a line of {}", s.len()),
            WriteOp::Flush => "flush".into(),
            WriteOp::TraitWrite(b) => format!("AsyncWrite::poll_write of {}", b.len()),
            WriteOp::TraitFlush => "AsyncWrite::poll_flush".into(),
        }
    }

    /// Whether a dropped call leaves all of its bytes or none (typed writes, frames).
    fn whole(&self) -> bool {
        matches!(
            self,
            WriteOp::Typed(..) | WriteOp::Frame(_) | WriteOp::Line(_)
        )
    }

    /// Runs the call; returns how many of its bytes it says it took.
    async fn run(&self, w: &mut ByteWriteChannel) -> net_io::Result<usize> {
        let n = self.bytes().len();
        match self {
            WriteOp::TraitWrite(b) => {
                return tokio::io::AsyncWriteExt::write(w, b)
                    .await
                    .map_err(Error::from);
            }
            WriteOp::TraitFlush => {
                return tokio::io::AsyncWriteExt::flush(w)
                    .await
                    .map(|()| 0)
                    .map_err(Error::from);
            }
            _ => {}
        }
        match self {
            WriteOp::Typed(kind, v) => typed_write(w, *kind, *v).await,
            WriteOp::Fully(b) => w.write_fully(b).await,
            WriteOp::Str(s) => w.write_string_utf8(s).await,
            WriteOp::Bytes(b) => w.write_bytes(Bytes::copy_from_slice(b)).await,
            WriteOp::Frame(b) => w
                .write_frame(&mut BytesCodec::new(), Bytes::copy_from_slice(b))
                .await
                .map_err(Error::from),
            WriteOp::Line(s) => w
                .write_frame(&mut LinesCodec::new(), s.as_str())
                .await
                .map_err(|e| match e {
                    net_io::codec::LinesCodecError::Io(e) => Error::from(e),
                    other => panic!("LinesCodec: {other}"),
                }),
            WriteOp::Flush => w.flush().await,
            WriteOp::TraitWrite(_) | WriteOp::TraitFlush => unreachable!(),
        }
        .map(|()| n)
    }
}

/// What the writer did: its log, and how it ended.
#[derive(Debug)]
struct Written {
    log: Vec<u8>,
    /// A call was dropped after the transport took part of it.
    cut: bool,
    /// `flush_and_close` returned `Ok`.
    closed_cleanly: bool,
    /// A call failed the channel for good.
    failed: bool,
}

/// Runs `ops` random write calls and an end; `carried`: the transport's state, to check what a
/// call that failed counted (not for a pipe).
async fn writer(
    mut w: ByteWriteChannel,
    mut rng: Rng,
    ops: usize,
    carried: Option<Arc<Mutex<Shared>>>,
) -> Result<Written, String> {
    let mut log = Vec::new();
    let mut cut = false;
    // The kind of the failure a failed channel reports again.
    let mut failed: Option<io::ErrorKind> = None;
    for _ in 0..ops {
        let op = WriteOp::random(&mut rng);
        let bytes = op.bytes();
        let polls = drop_after(&mut rng, 4);
        for attempt in 0.. {
            let before = w.total_bytes_written();
            let result = limited(op.run(&mut w), polls).await;
            let delta = (w.total_bytes_written() - before) as usize;
            // A call that failed for good counts what the transport took of it (a prefix);
            // one that was dropped or succeeded, all of a typed write or frame or nothing.
            let whole = op.whole() && !matches!(result, Some(Err(_)));
            if delta > bytes.len() || (whole && delta != 0 && delta != bytes.len()) {
                return Err(format!(
                    "{}: counted {delta} of {} bytes ({result:?})",
                    op.name(),
                    bytes.len()
                ));
            }
            if matches!(op, WriteOp::TraitWrite(_)) && delta != 0 && !matches!(result, Some(Ok(_)))
            {
                // tokio's contract: `Pending` or an error took nothing.
                return Err(format!(
                    "{}: counted {delta} without Ok ({result:?})",
                    op.name()
                ));
            }
            log.extend_from_slice(&bytes[..delta]);
            match result {
                None => {
                    cut |= delta != 0 && delta != bytes.len();
                }
                Some(Ok(n)) if delta == n && failed.is_none() => {}
                Some(Ok(_)) => {
                    return Err(format!(
                        "{}: Ok, counted {delta} of {} bytes (failed: {failed:?})",
                        op.name(),
                        bytes.len()
                    ));
                }
                Some(Err(e)) => {
                    if let Some(kind) = failed {
                        if e.kind() != kind {
                            return Err(format!(
                                "{}: {e:?} after a failure of {kind:?}",
                                op.name()
                            ));
                        }
                    } else if matches!(e, Error::Timeout) && !w.is_closed_for_write() {
                        // No effect: retried, its bytes are sent once.
                        if delta != 0 {
                            return Err(format!(
                                "{}: a Timeout without effect counted {delta}",
                                op.name()
                            ));
                        }
                        if attempt < 20 {
                            continue;
                        }
                    } else if !w.is_closed_for_write() {
                        return Err(format!(
                            "{}: {e:?}, and the channel is still open",
                            op.name()
                        ));
                    } else {
                        failed = Some(e.kind());
                        // A call that failed the channel counts what the transport took of it
                        // (which takes the log's bytes in order).
                        let before = log.len() - delta;
                        let taken = carried.as_ref().map(|c| c.lock().unwrap().taken.len());
                        if let Some(taken) = taken {
                            let want = taken.saturating_sub(before).min(bytes.len());
                            if delta != want {
                                return Err(format!(
                                    "{}: failed ({e:?}), counted {delta}, the transport took \
                                     {want} of it",
                                    op.name()
                                ));
                            }
                        }
                    }
                }
            }
            break;
        }
    }
    let mut closed_cleanly = false;
    let end = rng.below(8);
    match end {
        0 => w.cancel(),
        1 => {}
        close => match if close == 2 {
            tokio::io::AsyncWriteExt::shutdown(&mut w)
                .await
                .map_err(Error::from)
        } else {
            w.flush_and_close().await
        } {
            Ok(()) => {
                if cut || failed.is_some() {
                    return Err(format!(
                        "flush_and_close: Ok after a cut write ({cut}) or a failure ({failed:?})"
                    ));
                }
                closed_cleanly = true;
            }
            Err(e) => {
                if let Some(kind) = failed {
                    if e.kind() != kind {
                        return Err(format!("flush_and_close: {e:?} after {kind:?}"));
                    }
                } else if cut && e.kind() != io::ErrorKind::BrokenPipe {
                    return Err(format!("flush_and_close after a cut write: {e:?}"));
                }
                if !w.is_closed_for_write() {
                    return Err(format!("flush_and_close: {e:?}, and still open"));
                }
                failed = Some(e.kind());
            }
        },
    }
    if end != 1 {
        // One call after the end fails at once and takes nothing: with the failure, or
        // `ClosedForWrite` (tokio's `poll_flush` and `poll_shutdown` of a channel closed cleanly:
        // `Ok`).
        let op = WriteOp::random(&mut rng);
        let before = w.total_bytes_written();
        let result = limited(op.run(&mut w), Some(1)).await;
        let trait_ok = closed_cleanly && matches!(op, WriteOp::TraitFlush);
        let right = match &result {
            Some(Ok(0)) => trait_ok,
            Some(Err(e)) => match failed {
                Some(kind) => e.kind() == kind,
                None => matches!(e, Error::ClosedForWrite),
            },
            _ => false,
        };
        if !right || w.total_bytes_written() != before {
            return Err(format!(
                "{} after the end ({end}, failed: {failed:?}): {result:?}",
                op.name()
            ));
        }
    }
    drop(w);
    Ok(Written {
        log,
        cut,
        closed_cleanly,
        failed: failed.is_some(),
    })
}

// ----- the reader ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum ReadOp {
    Typed(u64),
    Bytes(usize),
    Fully(usize),
    Available(usize),
    Remaining(usize),
    Discard(u64),
    DiscardExact(u64),
    Peek(usize),
    AwaitContent(usize),
    SkipIfFound(Vec<u8>),
    /// `kind`: 0 `read_line`, 1 `read_line_strict`, 2 `read_line_to`, 3 `read_utf8_line`.
    Line {
        kind: u8,
        lenient: bool,
        limit: usize,
    },
    Until(&'static [u8], usize),
    Frame,
    TraitRead(usize),
    /// `poll_fill_buf`, then `consume` of at most this many.
    BufRead(usize),
    /// `cancel`: every later read fails with `Error::Cancelled`.
    Cancel,
    /// `into_frames(BytesCodec)`, up to this many `next_frame` calls (each recorded as a
    /// `Frame`, as `read_frame`'s rules are the stream's), then `into_parts`.
    Frames(u64),
}

impl ReadOp {
    fn random(rng: &mut Rng) -> ReadOp {
        match rng.below(22) {
            0..=3 => ReadOp::Typed(rng.below(18)),
            20 if rng.chance(8) => ReadOp::Cancel,
            20 if rng.chance(4) => ReadOp::Frames(1 + rng.below(6)),
            20 | 21 => ReadOp::BufRead(count(rng)),
            4 => ReadOp::Bytes(count(rng)),
            5 => ReadOp::Fully(count(rng).min(64 * 1024)),
            6 => ReadOp::Available(count(rng).min(64 * 1024)),
            7 => ReadOp::Remaining(count(rng)),
            8 => ReadOp::Discard(count(rng) as u64),
            9 => ReadOp::DiscardExact(count(rng) as u64),
            10 => ReadOp::Peek(count(rng)),
            11 => ReadOp::AwaitContent(count(rng)),
            12 => {
                let len = rng.below(4) as usize;
                ReadOp::SkipIfFound(text(rng, len).into_bytes())
            }
            13..=16 => ReadOp::Line {
                kind: rng.below(4) as u8,
                lenient: rng.chance(2),
                limit: limit(rng),
            },
            17 => ReadOp::Until(
                DELIMITERS[rng.below(DELIMITERS.len() as u64) as usize],
                limit(rng),
            ),
            18 => ReadOp::Frame,
            _ => ReadOp::TraitRead(count(rng).min(64 * 1024)),
        }
    }
}

/// What a read returned.
#[derive(Debug)]
enum Got {
    Bytes(Vec<u8>),
    Count(u64),
    Bool(bool),
    Line(Option<String>),
    Item(Option<Vec<u8>>),
}

/// One read, what it returned, and how many bytes it consumed.
#[derive(Debug)]
struct Record {
    op: ReadOp,
    /// `None`: dropped.
    result: Option<Result<Got, Error>>,
    consumed: u64,
    /// `read_fully`'s slice and `read_line_to`'s string after the call.
    dst: Vec<u8>,
    /// `available_for_read` and `is_closed_for_read` after the call.
    available: usize,
    closed: bool,
}

async fn typed_read(r: &mut ByteReadChannel, kind: u64) -> net_io::Result<Vec<u8>> {
    Ok(match kind {
        0 => vec![r.read_u8().await?],
        1 => r.read_i8().await?.to_be_bytes().to_vec(),
        2 => r.read_u16().await?.to_be_bytes().to_vec(),
        3 => r.read_i16().await?.to_be_bytes().to_vec(),
        4 => r.read_u32().await?.to_be_bytes().to_vec(),
        5 => r.read_i32().await?.to_be_bytes().to_vec(),
        6 => r.read_u64().await?.to_be_bytes().to_vec(),
        7 => r.read_i64().await?.to_be_bytes().to_vec(),
        8 => r.read_f32().await?.to_be_bytes().to_vec(),
        9 => r.read_f64().await?.to_be_bytes().to_vec(),
        10 => r.read_u16_le().await?.to_le_bytes().to_vec(),
        11 => r.read_i16_le().await?.to_le_bytes().to_vec(),
        12 => r.read_u32_le().await?.to_le_bytes().to_vec(),
        13 => r.read_i32_le().await?.to_le_bytes().to_vec(),
        14 => r.read_u64_le().await?.to_le_bytes().to_vec(),
        15 => r.read_i64_le().await?.to_le_bytes().to_vec(),
        16 => r.read_f32_le().await?.to_le_bytes().to_vec(),
        _ => r.read_f64_le().await?.to_le_bytes().to_vec(),
    })
}

fn typed_size(kind: u64) -> usize {
    typed_bytes(kind, 0).len()
}

/// The prefix `read_line_to` finds in its string (it appends).
const PREFIX: &str = "pre";

async fn run_read(
    r: &mut ByteReadChannel,
    op: &ReadOp,
    dst: &mut [u8],
    line: &mut String,
) -> net_io::Result<Got> {
    Ok(match op {
        ReadOp::Typed(kind) => Got::Bytes(typed_read(r, *kind).await?),
        ReadOp::Bytes(n) => Got::Bytes(r.read_bytes(*n).await?.to_vec()),
        ReadOp::Fully(_) => {
            r.read_fully(dst).await?;
            Got::Bytes(dst.to_vec())
        }
        ReadOp::Available(_) => {
            let n = r.read_available(dst).await?;
            Got::Bytes(dst[..n].to_vec())
        }
        ReadOp::Remaining(limit) => Got::Bytes(r.read_remaining(*limit).await?.to_vec()),
        ReadOp::Discard(max) => Got::Count(r.discard(*max).await?),
        ReadOp::DiscardExact(n) => {
            r.discard_exact(*n).await?;
            Got::Count(*n)
        }
        ReadOp::Peek(n) => Got::Item(r.peek(*n).await?.map(|b| b.to_vec())),
        ReadOp::AwaitContent(n) => Got::Bool(r.await_content(*n).await?),
        ReadOp::SkipIfFound(p) => Got::Bool(r.skip_if_found(p).await?),
        ReadOp::Line {
            kind,
            lenient,
            limit,
        } => {
            let ending = if *lenient {
                LineEnding::Lenient
            } else {
                LineEnding::Default
            };
            Got::Line(match kind {
                0 => r.read_line(*limit, ending).await?,
                1 => r.read_line_strict(*limit, ending).await?,
                2 => match r.read_line_to(line, *limit, ending).await? {
                    Some(n) => {
                        let got = line[PREFIX.len()..].to_string();
                        assert_eq!(n, got.len(), "read_line_to's count");
                        Some(got)
                    }
                    None => None,
                },
                _ if *lenient => r.read_utf8_line(*limit).await?,
                _ => r.read_line(*limit, ending).await?,
            })
        }
        ReadOp::Until(delimiter, limit) => {
            Got::Item(r.read_until(delimiter, *limit).await?.map(|b| b.to_vec()))
        }
        ReadOp::Frame => Got::Item(
            r.read_frame(&mut BytesCodec::new())
                .await
                .map_err(Error::from)?
                .map(|b| b.to_vec()),
        ),
        ReadOp::TraitRead(_) => {
            let n = AsyncReadExt::read(r, dst).await.map_err(Error::from)?;
            Got::Bytes(dst[..n].to_vec())
        }
        ReadOp::BufRead(n) => {
            let got = poll_fn(|cx| {
                Pin::new(&mut *r)
                    .poll_fill_buf(cx)
                    .map_ok(|buf| buf.to_vec())
            })
            .await
            .map_err(Error::from)?;
            Pin::new(&mut *r).consume(got.len().min(*n));
            Got::Bytes(got)
        }
        ReadOp::Cancel => {
            r.cancel();
            Got::Count(0)
        }
        ReadOp::Frames(_) => unreachable!("the reader runs a stream of frames itself"),
    })
}

/// Runs `ops` random reads (`pipe`: no `cancel`, and always to the end of the stream); returns
/// them, and how many bytes the channel received.
async fn reader(
    mut r: ByteReadChannel,
    mut rng: Rng,
    ops: usize,
    pipe: bool,
) -> (Vec<Record>, u64) {
    let mut records = Vec::new();
    for _ in 0..ops {
        let op = match ReadOp::random(&mut rng) {
            ReadOp::Cancel if pipe => ReadOp::Frame,
            op => op,
        };
        let polls = drop_after(&mut rng, 3);
        let mut dst = vec![
            0xaa;
            match op {
                ReadOp::Fully(n) | ReadOp::Available(n) | ReadOp::TraitRead(n) => n,
                _ => 0,
            }
        ];
        if let ReadOp::Frames(calls) = op {
            let before = r.total_bytes_read();
            let mut frames = r.into_frames(BytesCodec::new());
            let mut taken = 0;
            for _ in 0..calls {
                let polls = drop_after(&mut rng, 3);
                let (result, consumed) = match limited(frames.next_frame(), polls).await {
                    None => (None, 0),
                    Some(Some(Ok(frame))) => {
                        (Some(Ok(Got::Item(Some(frame.to_vec())))), frame.len())
                    }
                    Some(Some(Err(e))) => (Some(Err(Error::from(e))), 0),
                    Some(None) => (Some(Ok(Got::Item(None))), 0),
                };
                taken += consumed as u64;
                let ended = matches!(result, Some(Err(_)) | Some(Ok(Got::Item(None))));
                records.push(Record {
                    op: ReadOp::Frame,
                    result,
                    consumed: consumed as u64,
                    dst: Vec::new(),
                    // Not known inside the stream of frames: not checked.
                    available: 0,
                    closed: false,
                });
                if ended {
                    break;
                }
            }
            r = frames.into_parts().0;
            assert_eq!(r.total_bytes_read() - before, taken, "frames consumed");
            continue;
        }
        let mut line = String::from(PREFIX);
        let before = r.total_bytes_read();
        let result = limited(run_read(&mut r, &op, &mut dst, &mut line), polls).await;
        let consumed = r.total_bytes_read() - before;
        if matches!(op, ReadOp::Line { kind: 2, .. }) {
            dst = line.into_bytes();
        }
        let end = matches!(
            result,
            Some(Ok(Got::Line(None) | Got::Item(None)))
                | Some(Err(Error::Io(_) | Error::UnexpectedEof { .. }))
        ) && r.is_closed_for_read();
        records.push(Record {
            op,
            result,
            consumed,
            dst,
            available: r.available_for_read(),
            closed: r.is_closed_for_read(),
        });
        if end && rng.chance(2) {
            break;
        }
    }
    // The rest, to the end (or the channel is dropped, which resets a writer still writing).
    if pipe || rng.chance(2) {
        let before = r.total_bytes_read();
        let op = ReadOp::Remaining(usize::MAX);
        let result = Some(run_read(&mut r, &op, &mut Vec::new(), &mut String::new()).await);
        records.push(Record {
            op,
            consumed: r.total_bytes_read() - before,
            result,
            dst: Vec::new(),
            available: r.available_for_read(),
            closed: r.is_closed_for_read(),
        });
    }
    let received = r.total_bytes_read() + r.available_for_read() as u64;
    (records, received)
}

// ----- checks ---------------------------------------------------------------------------

/// The outcome of a line read or `read_until` as the model says it; `item`: the bytes left
/// for the item (after the skip of an over-long one).
fn outcome(result: &Result<Got, Error>, item: &[u8], delimiter: Option<&[u8]>) -> Outcome {
    let rest = item.len();
    match result {
        Ok(Got::Line(Some(line))) => Outcome::Line(line.clone()),
        Ok(Got::Item(Some(item))) => Outcome::Item(item.clone()),
        Ok(Got::Line(None) | Got::Item(None)) => Outcome::End,
        Err(Error::TooLongLine { .. }) => Outcome::TooLong,
        Err(Error::UnexpectedEof { needed, available }) => {
            // read_line_strict: the line and one byte more; read_until: and the part of its
            // delimiter missing after the bytes there (its first bytes may end them).
            let want = match delimiter {
                None => rest + 1,
                Some(d) => {
                    let begun = (1..d.len())
                        .rev()
                        .find(|&k| item.ends_with(&d[..k]))
                        .unwrap_or(0);
                    rest + d.len() - begun
                }
            };
            if (*needed, *available) != (want, rest) {
                return Outcome::Line(format!("UnexpectedEof {needed}/{available}"));
            }
            Outcome::UnexpectedEof
        }
        Err(e) if is_failure(e) => Outcome::Failed,
        Err(Error::Io(e)) if e.kind() == io::ErrorKind::InvalidInput => Outcome::InvalidInput,
        Ok(other) => Outcome::Line(format!("unexpected {other:?}")),
        Err(e) => Outcome::Line(format!("unexpected {e:?}")),
    }
}

thread_local! {
    /// This round's transport is an in-memory `ByteChannel`.
    static PIPE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The failure that ends a stream whose writer did not close it cleanly: the transport's reset,
/// or, for a `ByteChannel`, `Error::Cancelled`.
fn is_failure(e: &Error) -> bool {
    if PIPE.get() {
        matches!(e, Error::Cancelled)
    } else {
        matches!(e, Error::Io(e) if e.kind() == io::ErrorKind::ConnectionReset)
    }
}

/// Checks one read against the model (and moves the model as the read did).
fn check(m: &mut Model, rec: &Record) -> Result<(), String> {
    let start = m.consumed();
    let rest = m.rest().to_vec();
    let fails = m.fails();
    let consumed = rec.consumed as usize;
    let bad = |what: &str| {
        let mut got = format!("{:?}", rec.result);
        got.truncate(300);
        Err(format!(
            "{:?}: {what}; got {got}, consumed {consumed}; {} bytes left (fails: {fails}): {:?}",
            rec.op,
            rest.len(),
            String::from_utf8_lossy(&rest[..rest.len().min(80)])
        ))
    };
    // Dropped, or timed out (not final): what the read consumed, as documented.
    let timed_out = matches!(rec.result, Some(Err(Error::Timeout)));
    if rec.result.is_none() || timed_out {
        match &rec.op {
            ReadOp::Line { .. } | ReadOp::Until(..) => {
                if !m.skipped_before_timeout(consumed) {
                    return bad("consumed more than the skip of an over-long line");
                }
            }
            ReadOp::Discard(max) | ReadOp::DiscardExact(max) => {
                if consumed as u64 > *max || consumed > rest.len() {
                    return bad("discarded too much");
                }
                m.discard(consumed as u64);
                if timed_out {
                    m.drop_skip(*max > 0);
                }
            }
            ReadOp::Fully(n) => {
                if timed_out {
                    if consumed != 0 {
                        return bad("a read_fully that timed out kept bytes");
                    }
                    m.drop_skip(*n > 0);
                } else {
                    if consumed > rest.len() || rec.dst[..consumed] != rest[..consumed] {
                        return bad("read_fully's slice is not what it consumed");
                    }
                    m.discard(consumed as u64);
                }
            }
            op => {
                if consumed != 0 {
                    return bad("a cancel-safe read consumed bytes");
                }
                if timed_out {
                    // Reads of a byte or more that fail end the skip; the look-aheads keep it.
                    let takes = match op {
                        ReadOp::Typed(_) => true,
                        ReadOp::Bytes(n)
                        | ReadOp::Available(n)
                        | ReadOp::Remaining(n)
                        | ReadOp::TraitRead(n) => *n > 0,
                        ReadOp::Frame => true,
                        // A look-ahead until `consume`.
                        _ => false,
                    };
                    m.drop_skip(takes);
                }
            }
        }
        if matches!(rec.op, ReadOp::Line { kind: 2, .. }) && rec.dst != PREFIX.as_bytes() {
            return bad("read_line_to touched its string");
        }
        return Ok(());
    }
    let Some(result) = &rec.result else {
        unreachable!()
    };
    match (&rec.op, result) {
        (
            ReadOp::Line {
                kind,
                lenient,
                limit,
            },
            _,
        ) => {
            let before = m.consumed();
            let want = m.line(*lenient, *kind == 1, *limit);
            let item = &rest[rest.len() - rest_at_line_for(&rest, m, before)..];
            let got = outcome(result, item, None);
            if got != want {
                return bad(&format!("the model says {want:?}"));
            }
            if matches!(result, Err(Error::TooLongLine { limit: l }) if l != limit) {
                return bad("TooLongLine's limit");
            }
            if *kind == 2 && matches!(want, Outcome::Line(_)) {
                let Outcome::Line(line) = &want else {
                    unreachable!()
                };
                if rec.dst != format!("{PREFIX}{line}").as_bytes() {
                    return bad("read_line_to's string");
                }
            } else if *kind == 2 && rec.dst != PREFIX.as_bytes() {
                return bad("read_line_to touched its string without a line");
            }
        }
        (ReadOp::Until(delimiter, limit), _) => {
            let before = m.consumed();
            let want = m.until(delimiter, *limit);
            let item = &rest[rest.len() - rest_at_line_for(&rest, m, before)..];
            let got = outcome(result, item, Some(&delimiter[..]));
            if got != want {
                return bad(&format!("the model says {want:?}"));
            }
        }
        (ReadOp::Typed(kind), _) => {
            let size = typed_size(*kind);
            match (m.take(size), result) {
                (Some(want), Ok(Got::Bytes(got))) if *got == want => {}
                (None, Err(Error::UnexpectedEof { needed, available }))
                    if !fails && *needed == size && *available == rest.len() => {}
                (None, Err(e)) if fails && is_failure(e) => {}
                _ => return bad("typed read"),
            }
        }
        (ReadOp::Bytes(n), _) => match (m.take(*n), result) {
            (Some(want), Ok(Got::Bytes(got))) if *got == want => {}
            (None, Err(Error::UnexpectedEof { needed, available }))
                if !fails && needed == n && *available == rest.len() => {}
            (None, Err(e)) if fails && is_failure(e) => {}
            _ => return bad("read_bytes"),
        },
        (ReadOp::Fully(n), _) => match result {
            Ok(Got::Bytes(got)) if rest.len() >= *n && got[..] == rest[..*n] => {
                m.take(*n);
            }
            Err(Error::UnexpectedEof { needed, available })
                if !fails
                    && needed == n
                    && *available == rest.len()
                    && rest.len() < *n
                    && rec.dst[..rest.len()] == rest[..] =>
            {
                m.discard(rest.len() as u64);
            }
            Err(e) if fails && is_failure(e) && rest.len() < *n && consumed == rest.len() => {
                if rec.dst[..rest.len()] != rest[..] {
                    return bad("read_fully's slice before the failure");
                }
                m.discard(rest.len() as u64);
                m.drop_skip(*n > 0);
            }
            _ => return bad("read_fully"),
        },
        (ReadOp::Available(n) | ReadOp::TraitRead(n), _) => match result {
            Ok(Got::Bytes(got))
                if rest.starts_with(got)
                    && (got.len() <= *n)
                    && (!got.is_empty() || *n == 0 || (rest.is_empty() && !fails)) =>
            {
                m.take(got.len());
            }
            Err(e) if fails && is_failure(e) && rest.is_empty() && *n > 0 => {
                m.drop_skip(true);
            }
            _ => return bad("read_available"),
        },
        (ReadOp::BufRead(n), _) => match result {
            Ok(Got::Bytes(got))
                if rest.starts_with(got) && (!got.is_empty() || (rest.is_empty() && !fails)) =>
            {
                m.take(got.len().min(*n));
            }
            Err(e) if fails && is_failure(e) && rest.is_empty() => {}
            _ => return bad("poll_fill_buf"),
        },
        (ReadOp::Cancel | ReadOp::Frames(_), _) => unreachable!(),
        (ReadOp::Remaining(limit), _) => match result {
            Ok(Got::Bytes(got))
                if *got == rest[..rest.len().min(*limit)] && (!fails || rest.len() >= *limit) =>
            {
                m.take(got.len());
                m.drop_skip(*limit > 0);
            }
            Err(e) if fails && is_failure(e) && rest.len() < *limit => {
                m.drop_skip(true);
            }
            _ => return bad("read_remaining"),
        },
        (ReadOp::Discard(max), _) => {
            let n = (*max).min(rest.len() as u64);
            match result {
                Ok(Got::Count(got)) if *got == n && (!fails || n == *max) => {
                    m.discard(n);
                }
                Err(e) if fails && is_failure(e) && n < *max && consumed as u64 == n => {
                    m.discard(n);
                    m.drop_skip(true);
                }
                _ => return bad("discard"),
            }
        }
        (ReadOp::DiscardExact(n), _) => match result {
            Ok(_) if rest.len() as u64 >= *n => {
                m.discard(*n);
            }
            Err(Error::UnexpectedEof { needed, available })
                if !fails && *needed as u64 == *n && *available == rest.len() =>
            {
                m.discard(*n);
            }
            Err(e) if fails && is_failure(e) && (rest.len() as u64) < *n => {
                m.discard(*n);
            }
            _ => return bad("discard_exact"),
        },
        (ReadOp::Peek(n), _) => match (m.peek(*n), result) {
            (Some(want), Ok(Got::Item(Some(got)))) if *got == want => {}
            (None, Ok(Got::Item(None))) if !fails => {}
            (None, Err(e)) if fails && is_failure(e) => {}
            _ => return bad("peek"),
        },
        (ReadOp::AwaitContent(n), _) => match (m.has(*n), result) {
            (true, Ok(Got::Bool(true))) => {}
            (false, Ok(Got::Bool(false))) if !fails => {}
            (false, Err(e)) if fails && is_failure(e) => {}
            _ => return bad("await_content"),
        },
        (ReadOp::SkipIfFound(p), _) => match (m.found(p), result) {
            (Some(want), Ok(Got::Bool(got))) if want == *got => {}
            (None, Err(e)) if is_failure(e) => {}
            _ => return bad("skip_if_found"),
        },
        (ReadOp::Frame, _) => match result {
            Ok(Got::Item(Some(got))) if !got.is_empty() && rest.starts_with(got) => {
                m.take(got.len());
                m.drop_skip(true);
            }
            Ok(Got::Item(None)) if rest.is_empty() && !fails => m.drop_skip(true),
            Err(e) if fails && is_failure(e) && rest.is_empty() => m.drop_skip(true),
            _ => return bad("read_frame"),
        },
    }
    if consumed != m.consumed() - start {
        return bad(&format!("the model consumed {}", m.consumed() - start));
    }
    // What is buffered was received and not consumed; a channel closed for read has nothing
    // more, and one that read the end is closed for read.
    if rec.available > m.rest().len() {
        return bad(&format!("{} bytes available", rec.available));
    }
    if rec.closed && !m.rest().is_empty() {
        return bad("closed for read with bytes left");
    }
    let ended = matches!(result, Ok(Got::Line(None) | Got::Item(None)));
    if ended && !rec.closed && !matches!(rec.op, ReadOp::Frame | ReadOp::Peek(_)) {
        return bad("the end read, and not closed for read");
    }
    Ok(())
}

/// How many bytes were left for the line itself, after the skip the model just did (from
/// `before`, its position before the read, to its position now, less the line it consumed).
fn rest_at_line_for(rest: &[u8], m: &Model, before: usize) -> usize {
    // The model consumes only the skip when the read fails, and the skip and the line when it
    // succeeds; an `UnexpectedEof` (the only outcome whose counts matter) consumed the skip.
    rest.len() - (m.consumed() - before)
}

// ----- rounds -------------------------------------------------------------------------------

fn round(seed: u64) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let pipe = rng.chance(4);
    PIPE.set(pipe);
    let cap = 1 + rng.below(64) as usize * if rng.chance(4) { 512 } else { 1 };
    let shared = Arc::new(Mutex::new(Shared {
        rng: Rng::new(seed ^ 0x5eed),
        queue: VecDeque::new(),
        cap,
        taken: Vec::new(),
        end: End::Open,
        reader_gone: false,
        reader: None,
        writer: None,
        fail_at: rng.chance(5).then(|| rng.below(4096) as usize),
        pending_one_in: 2 + rng.below(6),
        read_timeout_one_in: if rng.chance(3) { 4 + rng.below(50) } else { 0 },
        write_timeout_one_in: if rng.chance(3) { 4 + rng.below(50) } else { 0 },
        max_chunk: [1, 3, 17, 600, 20_000][rng.below(5) as usize],
    }));
    let auto_flush = rng.chance(2);
    let (w, r) = if pipe {
        ByteChannel::new(auto_flush)
    } else {
        (
            ByteWriteChannel::new(Writer(shared.clone()), auto_flush),
            ByteReadChannel::new(Reader(shared.clone())),
        )
    };
    // Some rounds long.
    let long = rng.chance(4);
    let writer_ops = rng.below(if long { 200 } else { 60 }) as usize;
    let carried = (!pipe).then(|| shared.clone());
    let reader_ops = rng.below(if long { 300 } else { 80 }) as usize;
    let writer_rng = Rng::new(seed.wrapping_mul(3));
    let reader_rng = Rng::new(seed.wrapping_mul(5));

    // Most rounds in one task (deterministic: a seed replays exactly); some with the two ends
    // in tasks of their own on two threads.
    let threads = rng.chance(4);
    let runtime = if threads {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    };
    let (written, (records, received)) = runtime
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(20), async {
                if threads {
                    let writer = tokio::spawn(writer(w, writer_rng, writer_ops, carried));
                    let reader = tokio::spawn(reader(r, reader_rng, reader_ops, pipe));
                    (writer.await.unwrap(), reader.await.unwrap())
                } else {
                    tokio::join!(
                        writer(w, writer_rng, writer_ops, carried),
                        reader(r, reader_rng, reader_ops, pipe)
                    )
                }
            })
            .await
        })
        .map_err(|_| format!("seed {seed}: hung"))?;
    let written = written.map_err(|e| format!("seed {seed}: writer: {e}"))?;
    let s = shared.lock().unwrap();
    // What the reader's transport carried, and whether it ended cleanly. A pipe's reader
    // always reads to the end: what it received, and whether the last read failed.
    let (taken, clean) = if pipe {
        let last = records.last().and_then(|r| r.result.as_ref());
        let taken = written.log[..(received as usize).min(written.log.len())].to_vec();
        (taken, matches!(last, Some(Ok(_))))
    } else {
        (s.taken.clone(), s.end == End::Shutdown)
    };
    let context = || {
        format!(
            "seed {seed} (pipe {pipe}, threads {threads}, auto_flush {auto_flush}, cap {cap}, \
             chunk {}, fail_at {:?}, clean end {clean}, cut {}, closed cleanly {}, \
             log {} bytes, carried {}, received {received})",
            s.max_chunk,
            s.fail_at,
            written.cut,
            written.closed_cleanly,
            written.log.len(),
            taken.len()
        )
    };
    // No byte lost, doubled or reordered on the way out; a clean end only after a clean close
    // (a pipe's writer may also be dropped or cancelled with nothing lost).
    if !written.log.starts_with(&taken) || received as usize > written.log.len() {
        return Err(format!(
            "{}: the transport carried bytes the writer did not count",
            context()
        ));
    }
    if written.closed_cleanly && !clean {
        return Err(format!("{}: a clean close ended as a failure", context()));
    }
    if clean && (written.cut || written.failed || (!pipe && !written.closed_cleanly)) {
        return Err(format!("{}: a clean end after a failed close", context()));
    }
    if clean && taken != written.log {
        return Err(format!("{}: a clean end without every byte", context()));
    }
    // Every read as the model says.
    let mut m = if clean {
        Model::new(&taken)
    } else {
        Model::failing(&taken)
    };
    let mut cancelled = false;
    for (i, rec) in records.iter().enumerate() {
        if cancelled {
            // Every read after `cancel` fails at once, consuming nothing (an empty delimiter
            // is refused first; a second `cancel` does nothing).
            let refused = match (&rec.op, &rec.result) {
                (ReadOp::Until(b"", _), Some(Err(Error::Io(e)))) => {
                    e.kind() == io::ErrorKind::InvalidInput
                }
                (ReadOp::Cancel, _) => true,
                (_, result) => matches!(result, Some(Err(Error::Cancelled))),
            };
            if !refused || rec.consumed != 0 {
                return Err(format!("{}: read {i} after cancel: {rec:?}", context()));
            }
            continue;
        }
        if let ReadOp::Cancel = rec.op {
            cancelled = true;
            continue;
        }
        check(&mut m, rec).map_err(|e| format!("{}: read {i}: {e}", context()))?;
    }
    if std::env::var_os("MODEL_STATS").is_some() {
        let dropped = records.iter().filter(|r| r.result.is_none()).count();
        let errors = records
            .iter()
            .filter(|r| matches!(r.result, Some(Err(_))))
            .count();
        eprintln!(
            "seed {seed}: {} reads ({dropped} dropped, {errors} errors), {} of {} bytes read, \
             clean end {}",
            records.len(),
            m.consumed(),
            taken.len(),
            clean
        );
    }
    Ok(())
}

/// The channels against the model (`MODEL_SEED`, `MODEL_ROUNDS` choose the rounds).
#[test]
fn channels_over_a_flaky_transport_match_the_model() {
    let seeds = net_tests::rng::seeds("MODEL", 600);
    let chosen = std::env::var_os("MODEL_ROUNDS").is_some();
    // A chosen count runs whole; the default one is also bounded in time.
    let limit = Duration::from_secs(if chosen { 3600 } else { 20 });
    let started = Instant::now();
    let mut failures = Vec::new();
    for seed in seeds {
        if started.elapsed() > limit {
            break;
        }
        if let Err(e) = round(seed) {
            eprintln!("{e}");
            failures.push(e);
            if failures.len() >= 5 {
                break;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
}

// ----- frames and copies --------------------------------------------------------------------
//
// The codec bridge with tokio-util's `LinesCodec` and `LengthDelimitedCodec`, and the copies,
// over the same flaky transport. The model of a decoder is tokio-util's own `FramedRead` over
// an in-memory copy of the bytes the transport carried (ending as the transport ended): every
// frame and error as it gives them, and after each frame `total_bytes_read` equal to what
// `FramedRead` read less what it still buffers. Between frame reads, `into_parts` and typed
// reads that must return exactly the bytes at `total_bytes_read`, then a new decoder (a new
// `FramedRead` from there). The model of a copy is the source's bytes: the destination's
// transport carries a prefix of them, each byte once, in order, and each call's count and end
// as `copy_to` and `copy_and_close` document.

/// A frame read's outcome, comparable between the channel and `FramedRead`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum FrameOutcome {
    Frame(Vec<u8>),
    /// The decoder's error, described (`LinesCodecError`'s variant, an I/O error's kind).
    Error(String),
    End,
}

/// Describes a decoder's error; `None` for this crate's `Timeout`, which `FramedRead` over
/// the in-memory copy never sees.
trait Describe {
    fn describe(&self) -> Option<String>;
}

fn describe_io(e: &io::Error) -> Option<String> {
    // `From<Error>` wraps this crate's error in an `io::Error`.
    let inner = e.get_ref().and_then(|inner| inner.downcast_ref::<Error>());
    if let Some(Error::Timeout) = inner {
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e:?}");
        return None;
    }
    Some(format!("io {:?}", e.kind()))
}

impl Describe for io::Error {
    fn describe(&self) -> Option<String> {
        describe_io(self)
    }
}

impl Describe for LinesCodecError {
    fn describe(&self) -> Option<String> {
        match self {
            LinesCodecError::MaxLineLengthExceeded => Some("max line length".into()),
            LinesCodecError::Io(e) => describe_io(e),
        }
    }
}

/// The transport's bytes as `FramedRead`'s input: then a clean end, or a reset (again at
/// every later read, as a channel reports its failure).
struct InMemory {
    bytes: Vec<u8>,
    at: usize,
    clean: bool,
}

impl AsyncRead for InMemory {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // A few bytes at a time, so that the decoder sees partial frames too.
        let n = (self.bytes.len() - self.at).min(buf.remaining()).min(7);
        if n == 0 && !self.clean {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        let at = self.at;
        buf.put_slice(&self.bytes[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

/// What the reader of a frames round saw, in order.
#[derive(Debug)]
enum FrameEvent {
    /// A frame read with the segment's decoder: its outcome, and `total_bytes_read` after it.
    Read(FrameOutcome, u64),
    /// A typed read: `total_bytes_read` before, the bytes it returned, `total_bytes_read`
    /// after; a new decoder follows, or the same one where it had just returned a frame (the
    /// same state as a new one: the model goes on with a new `FramedRead` from there).
    Typed(u64, Vec<u8>, u64),
}

/// Where the decoder is: in a stream of frames, or beside the channel.
enum Place<D> {
    Frames(net_io::Frames<D>),
    Channel(ByteReadChannel, D),
}

fn frame_outcome<T: AsRef<[u8]>, E: Describe>(
    result: Option<Result<T, E>>,
) -> Option<FrameOutcome> {
    match result {
        None => Some(FrameOutcome::End),
        Some(Ok(frame)) => Some(FrameOutcome::Frame(frame.as_ref().to_vec())),
        Some(Err(e)) => e.describe().map(FrameOutcome::Error),
    }
}

async fn frames_reader<D>(
    r: ByteReadChannel,
    new: impl Fn() -> D,
    mut rng: Rng,
    ops: usize,
) -> Vec<FrameEvent>
where
    D: net_io::codec::Decoder,
    D::Item: AsRef<[u8]>,
    D::Error: From<io::Error> + Describe,
{
    let mut events = Vec::new();
    let mut place = Some(Place::Channel(r, new()));
    // Whether the decoder's last call returned a frame: then it holds nothing of the next
    // one, and other reads before its next call are fine ("Other reads between calls that
    // each returned a frame are fine").
    let mut between_frames = true;
    for _ in 0..ops {
        let polls = drop_after(&mut rng, 4);
        place = Some(match place.take().unwrap() {
            Place::Frames(mut frames) => match rng.below(6) {
                0 => {
                    // A new decoder: what the old one consumed of a frame it began is gone.
                    let r = frames.into_parts().0;
                    let total = r.total_bytes_read();
                    events.push(FrameEvent::Typed(total, Vec::new(), total));
                    between_frames = true;
                    Place::Channel(r, new())
                }
                1 => {
                    let (r, d) = frames.into_parts();
                    Place::Channel(r, d)
                }
                _ => {
                    between_frames = false;
                    if let Some(got) = limited(frames.next_frame(), polls).await {
                        let failed = matches!(got, Some(Err(_)));
                        if failed {
                            // The stream ends at its first error (a timeout included).
                            assert!(
                                frames.next_frame().await.is_none(),
                                "a frame after an error"
                            );
                        }
                        // The count is the channel's: through `into_parts`, then on with the
                        // same decoder (as `FramedRead` goes on after the `None` that follows
                        // an error).
                        between_frames = matches!(got, Some(Ok(_)));
                        let (r, d) = frames.into_parts();
                        if let Some(o) = frame_outcome(got) {
                            events.push(FrameEvent::Read(o, r.total_bytes_read()));
                        }
                        frames = r.into_frames(d);
                    }
                    Place::Frames(frames)
                }
            },
            Place::Channel(mut r, mut d) => match rng.below(6) {
                0 => Place::Frames(r.into_frames(d)),
                1 => {
                    // A typed read, then a new decoder, or the same one between frames.
                    let before = r.total_bytes_read();
                    let mut got = Vec::new();
                    let n = rng.below(20) as usize;
                    match rng.below(3) {
                        0 => {
                            let mut buf = vec![0; n.max(1)];
                            if let Some(Ok(k)) = limited(r.read_available(&mut buf), polls).await {
                                got.extend_from_slice(&buf[..k]);
                            }
                        }
                        1 => {
                            if let Some(Ok(b)) = limited(r.read_bytes(n), polls).await {
                                got.extend_from_slice(&b);
                            }
                        }
                        _ => {
                            // The bytes a discard took are known only by their count.
                            let _ = limited(r.discard(n as u64), polls).await;
                        }
                    }
                    events.push(FrameEvent::Typed(before, got, r.total_bytes_read()));
                    if between_frames && rng.chance(2) {
                        Place::Channel(r, d)
                    } else {
                        between_frames = true;
                        Place::Channel(r, new())
                    }
                }
                _ => {
                    between_frames = false;
                    if let Some(got) = limited(r.read_frame(&mut d), polls).await {
                        between_frames = matches!(got, Ok(Some(_)));
                        if let Some(o) = frame_outcome(got.transpose()) {
                            events.push(FrameEvent::Read(o, r.total_bytes_read()));
                        }
                    }
                    Place::Channel(r, d)
                }
            },
        });
        if let Some(FrameEvent::Read(FrameOutcome::End, _)) = events.last() {
            break;
        }
    }
    events
}

/// Writes `input` in random pieces, then closes (or, by the seed, drops the channel: a
/// reset). Stops at the first error (a timeout after part of a write fails the channel).
async fn plain_writer(mut w: ByteWriteChannel, input: Vec<u8>, mut rng: Rng) {
    let mut at = 0;
    while at < input.len() {
        let n = (1 + rng.below(600) as usize).min(input.len() - at);
        match w.write_fully(&input[at..at + n]).await {
            Ok(()) => at += n,
            Err(Error::Timeout) if !w.is_closed_for_write() => {}
            Err(_) => return,
        }
    }
    if !rng.chance(6) {
        for _ in 0..100 {
            match w.flush_and_close().await {
                Err(Error::Timeout) if !w.is_closed_for_write() => {}
                _ => return,
            }
        }
    }
}

/// Writes `payloads` with `write_frame` and `codec` (some longer than its maximum, which its
/// encoder refuses, writing nothing), then closes as `plain_writer` does; returns the bytes of
/// the frames written (what the peer receives when the channel closes cleanly; with the frame
/// a failed call was writing, of which the peer may receive a part), or what went wrong.
async fn frame_writer(
    mut w: ByteWriteChannel,
    payloads: Vec<Vec<u8>>,
    mut codec: LengthDelimitedCodec,
    mut rng: Rng,
) -> Result<Vec<u8>, String> {
    use net_io::codec::Encoder;
    let mut log = Vec::new();
    for payload in payloads {
        let mut encoded = bytes::BytesMut::new();
        let encodes = codec.clone().encode(&payload[..], &mut encoded);
        loop {
            let before = w.total_bytes_written();
            match w.write_frame(&mut codec, &payload[..]).await {
                Ok(()) if encodes.is_ok() => {
                    log.extend_from_slice(&encoded);
                    break;
                }
                Err(e) if encodes.is_err() => {
                    if e.kind() != io::ErrorKind::InvalidInput || w.total_bytes_written() != before
                    {
                        return Err(format!("a frame too long: {e:?}, wrote some of it"));
                    }
                    break;
                }
                Err(e) => {
                    if e.kind() == io::ErrorKind::TimedOut && !w.is_closed_for_write() {
                        // A timeout without effect: the frame again, sent once.
                        continue;
                    }
                    // Failed for good, perhaps after part of this frame went out.
                    log.extend_from_slice(&encoded);
                    return Ok(log);
                }
                Ok(()) => return Err("a frame its encoder refuses was written".into()),
            }
        }
    }
    if !rng.chance(6) {
        for _ in 0..100 {
            match w.flush_and_close().await {
                Err(Error::Timeout) if !w.is_closed_for_write() => {}
                _ => break,
            }
        }
    }
    Ok(log)
}

/// A length field of `len` bytes saying `value`, in either byte order.
fn field(value: u64, len: usize, big: bool) -> Vec<u8> {
    let b = value.to_be_bytes();
    let mut v = b[8 - len..].to_vec();
    if !big {
        v.reverse();
    }
    v
}

/// A frames round's decoder input: lines, or length-delimited frames (some with a hostile
/// length: past the maximum, or far more than is sent), cut anywhere.
fn lines_input(rng: &mut Rng) -> Vec<u8> {
    let mut v = Vec::new();
    for _ in 0..rng.below(40) {
        v.extend(bytes(rng));
        if rng.chance(2) {
            v.push(b'\n');
        }
    }
    v
}

fn length_input(rng: &mut Rng, len: usize, offset: usize, big: bool, adjustment: isize) -> Vec<u8> {
    let mut v = Vec::new();
    let most = if len == 8 {
        u64::MAX
    } else {
        (1u64 << (8 * len)) - 1
    };
    for _ in 0..rng.below(30) {
        let payload = match rng.below(8) {
            0 => 0,
            1 => 4096 + rng.below(20_000) as usize,
            _ => rng.below(40) as usize,
        };
        // Mostly the payload's length (`adjustment` is added when the head is decoded).
        let value = match rng.below(16) {
            0 => most,
            1 => most / 2 + rng.below(1000),
            2 => payload as u64 + rng.below(3),
            _ => (payload as i64 - adjustment as i64).max(0) as u64,
        }
        .min(most);
        v.extend((0..offset).map(|_| rng.below(256) as u8));
        v.extend(field(value, len, big));
        v.extend((0..payload).map(|i| i as u8));
    }
    let cut = v.len() - rng.below(v.len() as u64 / 8 + 1) as usize;
    v.truncate(cut);
    v
}

/// Checks a frames round's events against `FramedRead` over `taken`.
fn check_frames<D>(
    events: &[FrameEvent],
    taken: &[u8],
    clean: bool,
    new: impl Fn() -> D,
) -> Result<(), String>
where
    D: net_io::codec::Decoder,
    D::Item: AsRef<[u8]>,
    D::Error: From<io::Error> + Describe,
{
    use futures_core::Stream;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let reference = |start: u64| {
        let start = usize::try_from(start).unwrap();
        if start > taken.len() {
            return None;
        }
        Some(tokio_util::codec::FramedRead::new(
            InMemory {
                bytes: taken[start..].to_vec(),
                at: 0,
                clean,
            },
            new(),
        ))
    };
    let mut start = 0u64;
    let mut model = reference(0);
    let mut failed = false;
    for (i, event) in events.iter().enumerate() {
        match event {
            FrameEvent::Read(got, total) => {
                if model.is_none() {
                    return Err(format!("event {i}: past the end"));
                }
                let mut next = None;
                if failed {
                    // A stream of frames ends at its first error; the channel goes on after
                    // `into_parts` with the same decoder and "whatever is still buffered",
                    // which a call hands its decoder before it reads: as a `FramedRead` made
                    // again from its parts, but for that (one made anew reads first). So the
                    // model decodes what it buffers itself until the decoder wants more.
                    let mut parts = model.take().unwrap().into_parts();
                    let end = parts.io.at == parts.io.bytes.len() && parts.io.clean;
                    let first = if end {
                        parts.codec.decode_eof(&mut parts.read_buf)
                    } else {
                        parts.codec.decode(&mut parts.read_buf)
                    };
                    match first {
                        Ok(None) if !end => failed = false,
                        first => next = Some(first.transpose()),
                    }
                    let mut again = tokio_util::codec::FramedRead::new(parts.io, parts.codec);
                    again.read_buffer_mut().extend_from_slice(&parts.read_buf);
                    model = Some(again);
                }
                let m = model.as_mut().unwrap();
                let next = next.unwrap_or_else(|| {
                    let next = runtime.block_on(poll_fn(|cx| Pin::new(&mut *m).poll_next(cx)));
                    failed = matches!(next, Some(Err(_)));
                    next
                });
                let want = frame_outcome(next).expect("no timeout in memory");
                if *got != want {
                    return Err(format!(
                        "event {i}: got {got:?}, FramedRead {want:?} (at {total} of {}; \
                         events before: {:?}; the stream from {start}: {:?})",
                        taken.len(),
                        &events[i.saturating_sub(6)..i],
                        String::from_utf8_lossy(&taken[start as usize..])
                    ));
                }
                if let FrameOutcome::Frame(_) = got {
                    let read = start + m.get_ref().at as u64 - m.read_buffer().len() as u64;
                    if read != *total {
                        return Err(format!(
                            "event {i}: {total} bytes read after {got:?}, FramedRead {read}"
                        ));
                    }
                }
            }
            FrameEvent::Typed(before, got, after) => {
                let (b, a) = (*before as usize, *after as usize);
                if a > taken.len() || b > a {
                    return Err(format!("event {i}: read {b}..{a} of {}", taken.len()));
                }
                if !got.is_empty() && (got.len() != a - b || got[..] != taken[b..a]) {
                    return Err(format!(
                        "event {i}: a typed read at {b} got {got:?}, the stream {:?}",
                        &taken[b..a.max(b + got.len()).min(taken.len())]
                    ));
                }
                start = *after;
                model = reference(start);
                failed = false;
            }
        }
    }
    Ok(())
}

/// A flaky transport by the seed (as `round`'s), and its two ends.
fn flaky(rng: &mut Rng, seed: u64, fail: bool) -> Arc<Mutex<Shared>> {
    let cap = 1 + rng.below(64) as usize * if rng.chance(4) { 512 } else { 1 };
    Arc::new(Mutex::new(Shared {
        rng: Rng::new(seed ^ 0x5eed),
        queue: VecDeque::new(),
        cap,
        taken: Vec::new(),
        end: End::Open,
        reader_gone: false,
        reader: None,
        writer: None,
        fail_at: (fail && rng.chance(5)).then(|| rng.below(40_000) as usize),
        pending_one_in: 2 + rng.below(6),
        read_timeout_one_in: if rng.chance(3) { 4 + rng.below(50) } else { 0 },
        write_timeout_one_in: if rng.chance(3) { 4 + rng.below(50) } else { 0 },
        max_chunk: [1, 3, 17, 600, 20_000][rng.below(5) as usize],
    }))
}

fn runtime(threads: bool) -> tokio::runtime::Runtime {
    if threads {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }
}

/// What a frames round's writer sends: bytes, or frames it writes with `write_frame`.
enum Input {
    Bytes(Vec<u8>),
    Frames(Vec<Vec<u8>>, LengthDelimitedCodec),
}

/// Runs a frames round with the decoder `new` makes.
fn frames_round_with<D>(
    seed: u64,
    rng: &mut Rng,
    input: Input,
    new: impl Fn() -> D + Send + Clone + 'static,
) -> Result<(), String>
where
    D: net_io::codec::Decoder + Send + 'static,
    D::Item: AsRef<[u8]> + Send,
    D::Error: From<io::Error> + Describe + Send,
{
    let shared = flaky(rng, seed, true);
    let w = ByteWriteChannel::new(Writer(shared.clone()), rng.chance(2));
    let r = ByteReadChannel::new(Reader(shared.clone()));
    let threads = rng.chance(4);
    let ops = 20 + rng.below(300) as usize;
    let (writer_rng, reader_rng) = (
        Rng::new(seed.wrapping_mul(3)),
        Rng::new(seed.wrapping_mul(5)),
    );
    let reader_new = new.clone();
    let (log, events) = runtime(threads)
        .block_on(async move {
            tokio::time::timeout(Duration::from_secs(20), async move {
                let writer = async move {
                    match input {
                        Input::Bytes(input) => {
                            plain_writer(w, input, writer_rng).await;
                            Ok(None)
                        }
                        Input::Frames(payloads, codec) => {
                            frame_writer(w, payloads, codec, writer_rng).await.map(Some)
                        }
                    }
                };
                let reader = frames_reader(r, reader_new, reader_rng, ops);
                if threads {
                    let writer = tokio::spawn(writer);
                    let reader = tokio::spawn(reader);
                    (writer.await.unwrap(), reader.await.unwrap())
                } else {
                    tokio::join!(writer, reader)
                }
            })
            .await
        })
        .map_err(|_| format!("seed {seed}: hung"))?;
    let s = shared.lock().unwrap();
    // Frames written with `write_frame`: the peer receives a prefix of their bytes, all of
    // them after a clean close.
    match log {
        Err(e) => return Err(format!("seed {seed}: writer: {e}")),
        Ok(Some(log))
            if !log.starts_with(&s.taken) || (s.end == End::Shutdown && log != s.taken) =>
        {
            return Err(format!(
                "seed {seed}: the transport carried {} bytes (end {:?}), not a prefix of the \
                 {} bytes of the frames written",
                s.taken.len(),
                s.end,
                log.len()
            ));
        }
        Ok(_) => {}
    }
    if std::env::var_os("MODEL_STATS").is_some() {
        let count = |f: fn(&FrameEvent) -> bool| events.iter().filter(|e| f(e)).count();
        eprintln!(
            "frames seed {seed}: {} frames, {} errors {:?}, {} typed reads, end {}, {} of {} \
             bytes read",
            count(|e| matches!(e, FrameEvent::Read(FrameOutcome::Frame(_), _))),
            count(|e| matches!(e, FrameEvent::Read(FrameOutcome::Error(_), _))),
            events.iter().find_map(|e| match e {
                FrameEvent::Read(FrameOutcome::Error(e), _) => Some(e),
                _ => None,
            }),
            count(|e| matches!(e, FrameEvent::Typed(..))),
            count(|e| matches!(e, FrameEvent::Read(FrameOutcome::End, _))),
            events.last().map_or(0, |e| match e {
                FrameEvent::Read(_, t) | FrameEvent::Typed(_, _, t) => *t,
            }),
            s.taken.len()
        );
    }
    check_frames(&events, &s.taken, s.end == End::Shutdown, new).map_err(|e| {
        format!(
            "seed {seed} (threads {threads}, chunk {}, fail_at {:?}, end {:?}, carried {}): {e}",
            s.max_chunk,
            s.fail_at,
            s.end,
            s.taken.len()
        )
    })
}

fn frames_round(seed: u64) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    match rng.below(3) {
        0 => {
            let max = rng.chance(3).then(|| rng.below(40) as usize);
            let input = Input::Bytes(lines_input(&mut rng));
            frames_round_with(seed, &mut rng, input, move || match max {
                Some(max) => LinesCodec::new_with_max_length(max),
                None => LinesCodec::new(),
            })
        }
        _ => {
            let len = [1, 2, 3, 4, 8][rng.below(5) as usize];
            let offset = rng.below(3) as usize;
            let big = rng.chance(2);
            let adjustment = if rng.chance(3) {
                rng.below(5) as isize - 2
            } else {
                0
            };
            // `num_skip` short of the head: frames that begin with part of it.
            let skip = rng
                .chance(6)
                .then(|| rng.below((offset + len) as u64 + 1) as usize);
            let max = [8, 100, 4096, 30_000, 8 << 20][rng.below(5) as usize];
            let bytes = length_input(&mut rng, len, offset, big, adjustment);
            let new = move || {
                let mut b = LengthDelimitedCodec::builder();
                b.length_field_offset(offset)
                    .length_field_length(len)
                    .length_adjustment(adjustment)
                    .max_frame_length(max);
                if let Some(skip) = skip {
                    b.num_skip(skip);
                }
                if !big {
                    b.little_endian();
                }
                b.new_codec()
            };
            // Or frames that `write_frame` writes with the same codec (which writes no offset
            // and skips the head: with those, the same decoder reads them back).
            let input = if offset == 0 && skip.is_none() && rng.chance(2) {
                let payloads = (0..rng.below(30))
                    .map(|_| {
                        let most = if rng.chance(8) { 20_000 } else { 120 };
                        vec![7; rng.below(most) as usize]
                    })
                    .collect();
                Input::Frames(payloads, new())
            } else {
                Input::Bytes(bytes)
            };
            frames_round_with(seed, &mut rng, input, new)
        }
    }
}

/// One copy call: `copy_and_close` or `copy_to`, its limit, its result, and the source's
/// `total_bytes_read` and the destination's `total_bytes_written` before and after.
#[derive(Debug)]
struct CopyCall {
    and_close: bool,
    limit: u64,
    result: Result<u64, String>,
    read: (u64, u64),
    written: (u64, u64),
    dst_closed: bool,
}

/// Reads the destination transport to its end, or (by the seed) stops early: the copy's
/// writes then fail with `BrokenPipe`.
async fn drain(shared: Arc<Mutex<Shared>>, stop_after: Option<usize>) {
    let mut r = Reader(shared);
    let mut buf = vec![0; 4096];
    let mut got = 0;
    loop {
        if stop_after.is_some_and(|n| got >= n) {
            return;
        }
        match r.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}

async fn copier(
    mut src: ByteReadChannel,
    mut dst: ByteWriteChannel,
    mut rng: Rng,
) -> Vec<CopyCall> {
    let mut calls = Vec::new();
    for _ in 0..200 {
        let and_close = rng.chance(4);
        let limit = match rng.below(4) {
            0 => u64::MAX,
            1 => rng.below(100),
            _ => rng.below(70_000),
        };
        let read = src.total_bytes_read();
        let written = dst.total_bytes_written();
        let result = if and_close {
            src.copy_and_close(&mut dst, limit).await
        } else {
            src.copy_to(&mut dst, limit).await
        };
        let stop = match &result {
            Ok(n) => and_close || *n < limit,
            Err(Error::Timeout) => dst.is_closed_for_write(),
            Err(_) => true,
        };
        calls.push(CopyCall {
            and_close,
            limit,
            result: result.map_err(|e| match e {
                Error::Io(e) => format!("io {:?}", e.kind()),
                e => format!("{e:?}"),
            }),
            read: (read, src.total_bytes_read()),
            written: (written, dst.total_bytes_written()),
            dst_closed: dst.is_closed_for_write(),
        });
        if stop {
            break;
        }
    }
    calls
}

fn copies_round(seed: u64) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let a = flaky(&mut rng, seed, true);
    let b = flaky(&mut rng, seed ^ 0xb, false);
    let input: Vec<u8> = (0..rng.below(200_000)).map(|i| (i % 251) as u8).collect();
    let w = ByteWriteChannel::new(Writer(a.clone()), rng.chance(2));
    let src = ByteReadChannel::new(Reader(a.clone()));
    let dst = ByteWriteChannel::new(Writer(b.clone()), rng.chance(2));
    let stop_after = rng.chance(6).then(|| rng.below(100_000) as usize);
    let threads = rng.chance(4);
    let (writer_rng, copier_rng) = (
        Rng::new(seed.wrapping_mul(3)),
        Rng::new(seed.wrapping_mul(5)),
    );
    let drained = b.clone();
    let calls = runtime(threads)
        .block_on(async move {
            tokio::time::timeout(Duration::from_secs(20), async move {
                let writer = plain_writer(w, input, writer_rng);
                let copier = copier(src, dst, copier_rng);
                let drain = drain(drained, stop_after);
                if threads {
                    let writer = tokio::spawn(writer);
                    let drain = tokio::spawn(drain);
                    let calls = tokio::spawn(copier).await.unwrap();
                    writer.await.unwrap();
                    drain.await.unwrap();
                    calls
                } else {
                    tokio::join!(writer, copier, drain).1
                }
            })
            .await
        })
        .map_err(|_| format!("seed {seed}: hung"))?;
    let (a, b) = (a.lock().unwrap(), b.lock().unwrap());
    let context = || {
        format!(
            "seed {seed} (threads {threads}, source: chunk {}, fail_at {:?}, end {:?}, \
             carried {}; destination: chunk {}, end {:?}, carried {}, drain stops after {:?})",
            a.max_chunk,
            a.fail_at,
            a.end,
            a.taken.len(),
            b.max_chunk,
            b.end,
            b.taken.len(),
            stop_after
        )
    };
    if std::env::var_os("MODEL_STATS").is_some() {
        eprintln!(
            "copies seed {seed}: {:?}, {} of {} bytes copied",
            calls
                .iter()
                .map(|c| (c.and_close, &c.result))
                .collect::<Vec<_>>(),
            b.taken.len(),
            a.taken.len()
        );
    }
    let fail = |e: String| Err(format!("{}: {e}; calls {calls:#?}", context()));
    if !a.taken.starts_with(&b.taken) {
        return fail("the destination carried bytes other than the source's, in order".into());
    }
    let consumed = calls.last().map_or(0, |c| c.read.1) as usize;
    if b.taken.len() < consumed {
        return fail(format!(
            "{consumed} bytes consumed, {} carried on",
            b.taken.len()
        ));
    }
    let mut closed_ok = false;
    for (i, c) in calls.iter().enumerate() {
        let read = c.read.1 - c.read.0;
        match &c.result {
            Ok(n) => {
                if *n > c.limit || read != *n || c.written.1 - c.written.0 != *n {
                    return fail(format!("call {i}: {n} copied, {read} read"));
                }
                if *n < c.limit && (a.end != End::Shutdown || c.read.1 as usize != a.taken.len()) {
                    return fail(format!("call {i}: short of its limit before the end"));
                }
                if c.and_close != c.dst_closed {
                    return fail(format!("call {i}: destination closed {}", c.dst_closed));
                }
                if i + 1 == calls.len() && b.taken.len() != consumed {
                    return fail(format!("call {i}: not all of the copy was flushed"));
                }
                closed_ok |= c.and_close;
            }
            Err(e) => {
                if c.and_close && e != "Timeout" && !c.dst_closed {
                    return fail(format!("call {i}: {e}, destination left open"));
                }
                if e == "io ConnectionReset" {
                    // The source's reset (the destination's transport does not fail so):
                    // after every byte it carried, all of them flushed.
                    if consumed != a.taken.len() || b.taken.len() != consumed {
                        return fail(format!("call {i}: {e} before every byte was copied"));
                    }
                    // "A failure of either side leaves both as the failure left them: `dst`
                    // is not closed".
                    if !c.and_close && c.dst_closed {
                        return fail(format!(
                            "call {i}: {e} of the source closed the destination"
                        ));
                    }
                }
            }
        }
    }
    if closed_ok != (b.end == End::Shutdown) {
        return fail(format!(
            "closed cleanly {closed_ok}, the destination ended {:?}",
            b.end
        ));
    }
    if closed_ok && b.taken.len() != consumed {
        return fail("a clean close without every byte copied".into());
    }
    Ok(())
}

/// Frames with `LinesCodec` and `LengthDelimitedCodec`, and copies, against their models
/// (`MODEL_FRAMES_SEED`, `MODEL_FRAMES_ROUNDS` choose the rounds; default 100 from seed 1, about 3 s).
#[test]
fn frames_and_copies_over_a_flaky_transport_match_the_model() {
    let seeds = net_tests::rng::seeds("MODEL_FRAMES", 100);
    let chosen = std::env::var_os("MODEL_FRAMES_ROUNDS").is_some();
    let limit = Duration::from_secs(if chosen { 3600 } else { 20 });
    let started = Instant::now();
    let mut failures = Vec::new();
    for seed in seeds {
        if started.elapsed() > limit {
            break;
        }
        for result in [frames_round(seed), copies_round(seed)] {
            if let Err(e) = result {
                eprintln!("{e}");
                failures.push(e);
            }
        }
        if failures.len() >= 5 {
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
}
