//! The write side of `ByteWriteChannel` against its documented contract (the `# Failures` and
//! `# Dropped writes` sections of its docs), shared by the `writes` fuzz target and the
//! property test `tests/writes_property.rs` (each includes this file as `mod writes`).
//!
//! A [`ScriptedWriter`] plays a script, one step per `poll_write`, `poll_flush` or
//! `poll_shutdown`: take up to k bytes, `Pending` (waking the task), an I/O error
//! (`BrokenPipe`, a plain `TimedOut` kind) or `Error::Timeout` carried in an `io::Error`; once
//! the script is played, every call succeeds, so an operation driven to completion completes.
//! It records every byte it took and whether a shutdown succeeded.
//!
//! [`run`] plays [`Step`]s on a channel, each driven to completion or polled a few times and
//! dropped (as `select!` or a timeout does), and checks after each:
//!
//! 1. the received bytes are the calls' bytes, in call order, each call contributing what the
//!    docs allow: all of it (it returned `Ok`), nothing (`Error::Timeout` that left the channel
//!    usable: "the call had no effect", or a dropped `poll_write`), nothing or all of it (a
//!    dropped typed write or `write_frame`), or a prefix (a dropped `write_fully`, a call that
//!    failed the channel); a `poll_write` that returned `Ok(n)` gives its first `n` bytes;
//!    what is still buffered may be missing at the end, never after a successful flush, close or
//!    auto-flushed write call (`poll_write` only tries to flush);
//! 2. a shutdown succeeds only if the received bytes are every call's whole or nothing (no write
//!    cut part-way) and all of them, and only when `flush_and_close`/`shutdown` returned `Ok`;
//! 3. once failed for good, every operation reports an error of the same kind, the transport is
//!    dropped and sees nothing more; once cancelled or closed, writes fail and the transport
//!    sees nothing more;
//! 4. the channel buffers at most 8 KiB plus the largest frame written (a [`Meter`] may check
//!    the memory allocated too);
//! 5. nothing panics, and no operation driven to completion hangs.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use net_io::{ByteWriteChannel, Error};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{BytesCodec, Encoder, LengthDelimitedCodec};

/// The channel's write buffer (`WRITE_BUFFER` in `write.rs`).
const WRITE_BUFFER: usize = 8 * 1024;

/// What the transport does on one call, decoded from one script byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Act {
    /// Take at most this many bytes (a write), succeed (a flush or a shutdown).
    Take(usize),
    /// `Pending`, after waking the task.
    Pending,
    /// `BrokenPipe`.
    Broken,
    /// A plain `TimedOut` kind: an I/O error as any other for the channel.
    TimedOutKind,
    /// `Error::Timeout` carried in an `io::Error` (the channel's own timeout rules apply).
    Timeout,
}

impl Act {
    /// Mostly progress, some pauses, a few errors.
    pub(crate) fn decode(b: u8) -> Act {
        match b {
            0..=159 => {
                let n = usize::from(b / 4) + 1;
                Act::Take(match b % 4 {
                    0 => n,
                    1 => n * 64,
                    2 => n * 1024,
                    _ => usize::MAX,
                })
            }
            160..=239 => Act::Pending,
            _ => match b % 4 {
                0 => Act::Broken,
                1 => Act::TimedOutKind,
                _ => Act::Timeout,
            },
        }
    }
}

/// What a [`ScriptedWriter`] saw.
#[derive(Debug, Default)]
pub(crate) struct Log {
    script: Vec<u8>,
    next: usize,
    /// Every byte taken, in order.
    pub(crate) received: Vec<u8>,
    /// Whether a `poll_shutdown` succeeded.
    pub(crate) shut_down: bool,
    /// Calls made after a successful shutdown (none may come).
    pub(crate) after_shutdown: usize,
}

impl Log {
    fn act(&mut self) -> Act {
        if self.shut_down {
            self.after_shutdown += 1;
        }
        match self.script.get(self.next) {
            Some(&b) => {
                self.next += 1;
                Act::decode(b)
            }
            None => Act::Take(usize::MAX),
        }
    }
}

/// The transport: plays the script, records what it took. Clones share the log.
#[derive(Clone, Debug)]
pub(crate) struct ScriptedWriter(pub(crate) Arc<Mutex<Log>>);

impl ScriptedWriter {
    /// A writer playing `script`, with room for `capacity` received bytes reserved up front
    /// (so that recording them allocates nothing while the channel's memory is measured).
    pub(crate) fn new(script: Vec<u8>, capacity: usize) -> Self {
        ScriptedWriter(Arc::new(Mutex::new(Log {
            script,
            received: Vec::with_capacity(capacity),
            ..Log::default()
        })))
    }

    pub(crate) fn log(&self) -> MutexGuard<'_, Log> {
        self.0.lock().unwrap()
    }

    fn result(act: Act, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        Poll::Ready(match act {
            Act::Take(n) => Ok(n),
            Act::Pending => {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Act::Broken => Err(io::ErrorKind::BrokenPipe.into()),
            Act::TimedOutKind => Err(io::ErrorKind::TimedOut.into()),
            Act::Timeout => Err(io::Error::new(io::ErrorKind::TimedOut, Error::Timeout)),
        })
    }
}

impl AsyncWrite for ScriptedWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        src: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut log = self.log();
        let act = log.act();
        let poll = Self::result(act, cx);
        if let Poll::Ready(Ok(n)) = poll {
            let n = n.min(src.len());
            log.received.extend_from_slice(&src[..n]);
            return Poll::Ready(Ok(n));
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let act = self.log().act();
        Self::result(act, cx).map_ok(|_| ())
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut log = self.log();
        let act = log.act();
        let poll = Self::result(act, cx).map_ok(|_| ());
        if let Poll::Ready(Ok(())) = poll {
            log.shut_down = true;
        }
        poll
    }
}

/// One operation on the channel.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// `write_fully` of this many bytes of the counter pattern.
    Fully(usize),
    /// `write_fully` of the room left in the buffer less `k % 16` bytes: brings the buffer to
    /// its edge, where a typed write or a frame no longer fits.
    Fill(u8),
    /// `write_string_utf8` of this many ASCII characters of the counter pattern.
    Str(usize),
    /// `AsyncWriteExt::write` (one `poll_write`) of this many pattern bytes: takes the count it
    /// returns, nothing if dropped (`Pending` takes nothing, as tokio's trait says).
    Write(usize),
    /// A typed write (the selector picks which), its value from the counter pattern.
    Typed(u8),
    /// `write_frame` of this many pattern bytes, with `LengthDelimitedCodec` (true) or
    /// `BytesCodec`.
    Frame(usize, bool),
    Flush,
    FlushAndClose,
    /// `AsyncWriteExt::shutdown`.
    Shutdown,
    Cancel,
}

/// An operation, driven to completion (`polls: None`) or polled `polls + 1` times and dropped
/// if it has not completed by then.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub(crate) op: Op,
    pub(crate) polls: Option<u8>,
}

/// A whole case.
#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub(crate) auto_flush: bool,
    pub(crate) script: Vec<u8>,
    pub(crate) steps: Vec<Step>,
}

/// Measures memory for [`run`]; the property test's does nothing.
pub(crate) trait Meter {
    /// Runs `f`, the check's own work, out of the measurement.
    fn outside<T>(&self, f: impl FnOnce() -> T) -> T {
        f()
    }

    /// Checks the memory the channel holds now (and at its peak since the last check), with
    /// `largest_frame` the largest frame written so far (encoded).
    fn check(&self, _largest_frame: usize, _at: &dyn Fn() -> String) {}
}

/// No measurement.
pub(crate) struct NoMeter;

impl Meter for NoMeter {}

/// What the docs let a call contribute to the received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Allowed {
    /// It returned `Ok`: all of it.
    Whole,
    /// It had no effect (a timeout that left the channel usable).
    Nothing,
    /// Dropped typed write or frame: nothing or all of it, never part.
    WholeOrNothing,
    /// Dropped `write_fully` (a prefix may have gone to the transport directly), or a call that
    /// failed the channel: any prefix.
    Prefix,
}

#[derive(Debug)]
struct Call {
    bytes: Vec<u8>,
    allowed: Allowed,
}

/// The positions (call, offset in it) that the bytes received so far may have reached, given
/// the calls made so far: an NFA over the calls, fed the received bytes as they come.
#[derive(Debug)]
struct Positions {
    /// Whether a call may contribute part of its bytes (`Prefix`): false for the check of a
    /// clean end, which no cut write may precede.
    cuts: bool,
    states: Vec<(usize, usize)>,
    /// How many received bytes were fed.
    fed: usize,
}

impl Positions {
    fn new(cuts: bool) -> Self {
        Positions {
            cuts,
            states: vec![(0, 0)],
            fed: 0,
        }
    }

    fn len(call: &Call) -> usize {
        if call.allowed == Allowed::Nothing {
            0
        } else {
            call.bytes.len()
        }
    }

    /// Adds the positions reachable without a byte.
    fn close(&mut self, calls: &[Call]) {
        let mut i = 0;
        while i < self.states.len() {
            let (c, j) = self.states[i];
            i += 1;
            let Some(call) = calls.get(c) else { continue };
            let skip = j == Self::len(call)
                || (j == 0 && call.allowed != Allowed::Whole)
                || (self.cuts && call.allowed == Allowed::Prefix);
            if skip && !self.states.contains(&(c + 1, 0)) {
                self.states.push((c + 1, 0));
            }
        }
    }

    /// Feeds the received bytes not fed yet; whether some position explains them all.
    fn feed(&mut self, calls: &[Call], received: &[u8]) -> bool {
        self.close(calls);
        for &b in &received[self.fed..] {
            let mut next = Vec::new();
            for &(c, j) in &self.states {
                let Some(call) = calls.get(c) else { continue };
                if j < Self::len(call) && call.bytes[j] == b && !next.contains(&(c, j + 1)) {
                    next.push((c, j + 1));
                }
            }
            self.states = next;
            self.close(calls);
        }
        self.fed = received.len();
        !self.states.is_empty()
    }

    /// Whether the bytes fed may be all the calls' bytes.
    fn complete(&self, calls: &[Call]) -> bool {
        self.states.contains(&(calls.len(), 0))
    }
}

/// Where the channel stands, as the checker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Open,
    /// Failed for good with an error of this kind and text (which every later call reports:
    /// the same variant, kind, OS error code and inner error).
    Failed(io::ErrorKind, String),
    /// Failed for good by an auto-flushed `poll_write` that returned what the transport took
    /// before its flush failed: the next call reports the failure (then `Failed`).
    FailedUnreported,
    Cancelled,
    Closed,
}

/// The outcome of one step.
enum Outcome {
    Done(Result<(), Error>),
    Dropped,
}

/// Polls `fut` until it completes (`polls: None`) or at most `polls + 1` times.
fn poll_step<F: Future>(fut: F, polls: Option<u8>) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    let limit = polls.map_or(1_000_000, |p| usize::from(p) + 1);
    for _ in 0..limit {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
    }
    assert!(
        polls.is_some(),
        "an operation did not complete although the transport makes progress (a hang)"
    );
    None
}

/// The counter pattern: byte `i` of the whole run is `i % 251`.
fn pattern(counter: &mut usize, n: usize) -> Vec<u8> {
    let bytes = (*counter..*counter + n).map(|i| (i % 251) as u8).collect();
    *counter += n;
    bytes
}

/// The channel's buffered byte count, from its `Debug` output.
fn buffered(channel: &ByteWriteChannel) -> usize {
    let debug = format!("{channel:?}");
    let rest = &debug[debug.find("buffered: ").expect("Debug shows `buffered`") + 10..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().expect("a count")
}

/// How many bytes the `Op::Typed` selector writes.
fn typed_len(which: u8) -> usize {
    [1, 2, 4, 8, 2, 4, 8, 4, 8][usize::from(which) % 9]
}

/// The typed write `which` of the value whose encoding is `b`.
async fn typed(channel: &mut ByteWriteChannel, which: u8, b: &[u8]) -> Result<(), Error> {
    match which % 9 {
        0 => channel.write_u8(b[0]).await,
        1 => channel.write_i16(i16::from_be_bytes([b[0], b[1]])).await,
        2 => {
            channel
                .write_u32(u32::from_be_bytes(b.try_into().unwrap()))
                .await
        }
        3 => {
            channel
                .write_u64(u64::from_be_bytes(b.try_into().unwrap()))
                .await
        }
        4 => channel.write_u16_le(u16::from_le_bytes([b[0], b[1]])).await,
        5 => {
            channel
                .write_i32_le(i32::from_le_bytes(b.try_into().unwrap()))
                .await
        }
        6 => {
            channel
                .write_i64_le(i64::from_le_bytes(b.try_into().unwrap()))
                .await
        }
        7 => {
            let v = f32::from_bits(u32::from_be_bytes(b.try_into().unwrap()));
            channel.write_f32(v).await
        }
        _ => {
            let v = f64::from_bits(u64::from_le_bytes(b.try_into().unwrap()));
            channel.write_f64_le(v).await
        }
    }
}

/// The most bytes a case may send (what the transport reserves).
pub(crate) fn capacity(case: &Case) -> usize {
    case.steps
        .iter()
        .map(|s| match s.op {
            Op::Fully(n) | Op::Str(n) | Op::Write(n) => n,
            Op::Fill(_) => WRITE_BUFFER,
            Op::Frame(n, _) => n + 4,
            Op::Typed(_) => 8,
            _ => 0,
        })
        .sum::<usize>()
        + 64
}

/// Plays `case` and checks the contract after every step (panics on a violation).
pub(crate) fn run(case: &Case, meter: &impl Meter) {
    let writer = meter.outside(|| ScriptedWriter::new(case.script.clone(), capacity(case)));
    let log = writer.clone();
    let mut channel = ByteWriteChannel::new(writer, case.auto_flush);
    let mut calls: Vec<Call> = Vec::new();
    let mut any = Positions::new(true);
    let mut clean = Positions::new(false);
    let mut status = Status::Open;
    let mut counter = 0;
    let mut largest_frame = 0;
    let mut frozen = 0;

    for (index, step) in case.steps.iter().enumerate() {
        // The bytes the call writes, made outside the measurement.
        let (bytes, item) = meter.outside(|| match step.op {
            Op::Fully(n) | Op::Write(n) => (pattern(&mut counter, n), None),
            Op::Fill(k) => {
                let room = WRITE_BUFFER.saturating_sub(buffered(&channel) + usize::from(k % 16));
                (pattern(&mut counter, room), None)
            }
            Op::Str(n) => {
                let b: Vec<u8> = pattern(&mut counter, n)
                    .into_iter()
                    .map(|b| b' ' + b % 95)
                    .collect();
                (b, None)
            }
            Op::Typed(which) => (pattern(&mut counter, typed_len(which)), None),
            Op::Frame(n, length_delimited) => {
                let item = Bytes::from(pattern(&mut counter, n));
                let mut encoded = BytesMut::new();
                if length_delimited {
                    LengthDelimitedCodec::new()
                        .encode(item.clone(), &mut encoded)
                        .unwrap();
                } else {
                    BytesCodec::new()
                        .encode(item.clone(), &mut encoded)
                        .unwrap();
                }
                (encoded.to_vec(), Some(item))
            }
            _ => (Vec::new(), None),
        });
        let text = meter.outside(|| String::from_utf8(bytes.clone()).unwrap_or_default());
        // Whether a dropped `write_fully`/`write_string_utf8` may be cut ("Dropped writes"): one
        // of up to 8 KiB is buffered whole before it waits, but for an auto-flushed one made
        // with nothing buffered, which goes to the transport directly, as a larger one does.
        let may_be_cut = bytes.len() > WRITE_BUFFER
            || (case.auto_flush && meter.outside(|| buffered(&channel)) == 0);
        let is_write = matches!(
            step.op,
            Op::Fully(_) | Op::Fill(_) | Op::Str(_) | Op::Write(_) | Op::Typed(_) | Op::Frame(..)
        );
        // What `Op::Write` returned: how many of its bytes it took.
        let mut took = None;
        if let Op::Frame(..) = step.op {
            largest_frame = largest_frame.max(bytes.len());
        }

        let written_before = channel.total_bytes_written();
        let polls = step.polls;
        let outcome = match &step.op {
            Op::Fully(_) | Op::Fill(_) => poll_step(channel.write_fully(&bytes), polls),
            Op::Str(_) => poll_step(channel.write_string_utf8(&text), polls),
            Op::Write(_) => poll_step(AsyncWriteExt::write(&mut channel, &bytes), polls).map(|r| {
                r.map(|n| {
                    assert!(
                        n <= bytes.len(),
                        "poll_write took {n} of {} bytes",
                        bytes.len()
                    );
                    // `write` of nothing returns 0; otherwise at least one byte is taken.
                    assert!(n > 0 || bytes.is_empty(), "poll_write returned Ok(0)");
                    took = Some(n);
                })
                .map_err(Error::from)
            }),
            Op::Typed(which) => poll_step(typed(&mut channel, *which, &bytes), polls),
            Op::Frame(_, length_delimited) => {
                let item = item.clone().unwrap();
                let result = if *length_delimited {
                    let mut codec = LengthDelimitedCodec::new();
                    poll_step(channel.write_frame(&mut codec, item), polls)
                } else {
                    let mut codec = BytesCodec::new();
                    poll_step(channel.write_frame(&mut codec, item), polls)
                };
                result.map(|r| r.map_err(Error::from))
            }
            Op::Flush => poll_step(channel.flush(), polls),
            Op::FlushAndClose => poll_step(channel.flush_and_close(), polls),
            Op::Shutdown => poll_step(AsyncWriteExt::shutdown(&mut channel), polls)
                .map(|r| r.map_err(Error::from)),
            Op::Cancel => {
                channel.cancel();
                Some(Ok(()))
            }
        };
        let outcome = match outcome {
            Some(result) => Outcome::Done(result),
            None => Outcome::Dropped,
        };
        drop((text, item));

        meter.outside(|| {
            let at = || format!("step {index} {step:?} of {case:?}");
            let closed = channel.is_closed_for_write();
            let before = status.clone();
            // What the call may have contributed, and the channel's new status.
            let mut checkpoint = false;
            let allowed = match (&outcome, &before) {
                (Outcome::Dropped, Status::Open) => {
                    assert!(!closed, "a pending call closed the channel: {}", at());
                    match step.op {
                        Op::Fully(_) | Op::Fill(_) | Op::Str(_) if may_be_cut => Allowed::Prefix,
                        Op::Write(_) => Allowed::Nothing,
                        _ => Allowed::WholeOrNothing,
                    }
                }
                (Outcome::Dropped, _) => panic!(
                    "a call on a channel {before:?} did not complete at once: {}",
                    at()
                ),
                (Outcome::Done(Ok(())), Status::Open) => {
                    match step.op {
                        Op::Cancel => status = Status::Cancelled,
                        Op::FlushAndClose | Op::Shutdown => {
                            assert!(closed, "closed Ok, channel still open: {}", at());
                            assert!(
                                log.log().shut_down,
                                "closed Ok without a shutdown: {}",
                                at()
                            );
                            status = Status::Closed;
                            checkpoint = true;
                        }
                        Op::Flush => checkpoint = true,
                        // `poll_write` only tries to flush, in auto-flush mode too; when that
                        // fails after the transport took some of its bytes, it returns those
                        // (an error would say it took none), and the failure comes next.
                        Op::Write(_) if closed => {
                            assert!(case.auto_flush, "Ok, but the channel closed: {}", at());
                            status = Status::FailedUnreported;
                        }
                        Op::Write(_) => {}
                        _ => checkpoint = case.auto_flush,
                    }
                    if !matches!(
                        step.op,
                        Op::Cancel | Op::FlushAndClose | Op::Shutdown | Op::Write(_)
                    ) {
                        assert!(!closed, "Ok, but the channel closed: {}", at());
                    }
                    Allowed::Whole
                }
                (Outcome::Done(Err(e)), Status::Open) => {
                    if closed {
                        status = Status::Failed(e.kind(), e.to_string());
                        Allowed::Prefix
                    } else {
                        // Only a timeout leaves the channel usable, and a write call it
                        // stopped had no effect.
                        assert!(
                            matches!(e, Error::Timeout),
                            "{e:?} left the channel open: {}",
                            at()
                        );
                        assert!(
                            !matches!(step.op, Op::FlushAndClose | Op::Shutdown),
                            "a close that failed left the channel open: {}",
                            at()
                        );
                        Allowed::Nothing
                    }
                }
                (Outcome::Done(result), Status::Failed(kind, text)) => {
                    match (result, &step.op) {
                        (Ok(()), Op::Cancel) => {}
                        (Ok(()), _) => panic!("Ok on a failed channel: {}", at()),
                        (Err(e), _) => assert_eq!(
                            (e.kind(), e.to_string()),
                            (*kind, text.clone()),
                            "a failed channel reported another error ({e:?}): {}",
                            at()
                        ),
                    }
                    Allowed::Nothing
                }
                (Outcome::Done(result), Status::FailedUnreported) => {
                    match (result, &step.op) {
                        (Ok(()), Op::Cancel) => {}
                        (Ok(()), _) => panic!("Ok on a failed channel: {}", at()),
                        (Err(e), _) => {
                            assert!(!matches!(e, Error::Timeout), "{e:?}: {}", at());
                            status = Status::Failed(e.kind(), e.to_string());
                        }
                    }
                    Allowed::Nothing
                }
                (Outcome::Done(result), Status::Cancelled | Status::Closed) => {
                    match (result, &step.op) {
                        (_, Op::Cancel) => {}
                        (Ok(()), Op::Shutdown) => {
                            assert_eq!(before, Status::Closed, "shutdown Ok after cancel: {}", at())
                        }
                        (Ok(()), _) => panic!("Ok on a channel {before:?}: {}", at()),
                        (Err(e), _) => assert!(
                            matches!(e, Error::ClosedForWrite),
                            "{e:?} on a channel {before:?}: {}",
                            at()
                        ),
                    }
                    Allowed::Nothing
                }
            };
            if is_write {
                let mut bytes = bytes.clone();
                if let Some(n) = took {
                    bytes.truncate(n);
                }
                calls.push(Call { bytes, allowed });
            }

            let log = log.log();
            // (5) `total_bytes_written` counts what writes accepted: all of a call that
            // returned `Ok` (what `poll_write` took), nothing of one that had no effect; and
            // while the channel is open, every byte it accepted is buffered or sent.
            let counted = channel.total_bytes_written() - written_before;
            if let Some(n) = took {
                assert_eq!(counted, n as u64, "total_bytes_written: {}", at());
            } else if is_write {
                match (&outcome, &calls.last().expect("a write call").allowed) {
                    (Outcome::Done(Ok(())), _) => {
                        assert_eq!(counted, bytes.len() as u64, "total_bytes_written: {}", at())
                    }
                    (_, Allowed::Nothing) => {
                        assert_eq!(counted, 0, "total_bytes_written: {}", at())
                    }
                    _ => assert!(
                        counted <= bytes.len() as u64,
                        "total_bytes_written: {}",
                        at()
                    ),
                }
            } else {
                assert_eq!(counted, 0, "total_bytes_written: {}", at());
            }
            if status == Status::Open {
                assert_eq!(
                    channel.total_bytes_written(),
                    (log.received.len() + buffered(&channel)) as u64,
                    "total_bytes_written against the bytes sent and buffered: {}",
                    at()
                );
            }
            // (3) Nothing more reaches a transport that failed, was cancelled or closed.
            if before != Status::Open {
                assert_eq!(
                    log.received.len(),
                    frozen,
                    "the transport took bytes after the channel {before:?}: {}",
                    at()
                );
            }
            assert_eq!(log.after_shutdown, 0, "calls after a shutdown: {}", at());
            frozen = log.received.len();
            // (1) No byte duplicated, reordered or made up.
            assert!(
                any.feed(&calls, &log.received),
                "the transport received bytes the calls do not explain: {}\nreceived {} bytes",
                at(),
                log.received.len()
            );
            if checkpoint {
                assert!(
                    any.complete(&calls),
                    "bytes of calls that returned Ok are missing after a flush: {}",
                    at()
                );
            }
            // (2) A clean end only after every call's bytes, none cut.
            let fits = clean.feed(&calls, &log.received);
            if log.shut_down {
                assert!(
                    fits && clean.complete(&calls),
                    "the transport was shut down cleanly after a write cut part-way or with \
                     bytes missing: {}",
                    at()
                );
                assert!(
                    matches!(status, Status::Closed),
                    "a shutdown happened, the channel is {status:?}: {}",
                    at()
                );
            }
            // (4) Bounded buffering.
            assert!(
                buffered(&channel) <= WRITE_BUFFER + largest_frame,
                "the channel buffers {} bytes (largest frame {largest_frame}): {}",
                buffered(&channel),
                at()
            );
        });
        if matches!(
            status,
            Status::Failed(..) | Status::FailedUnreported | Status::Cancelled
        ) {
            // The transport is dropped with the buffer.
            assert_eq!(
                Arc::strong_count(&log.0),
                1,
                "the transport outlived a channel {status:?}"
            );
        }
        meter.check(largest_frame, &|| format!("after step {index} {step:?}"));
    }
    // (6) The end: once the transport takes everything, a flush writes every accepted byte
    // out, and `flush_and_close` ends the stream cleanly exactly when no write was cut
    // part-way (`BrokenPipe` otherwise).
    if status == Status::Open {
        meter.outside(|| {
            let mut log = log.log();
            log.next = log.script.len();
        });
        let flushed = poll_step(channel.flush(), None);
        assert!(
            matches!(flushed, Some(Ok(()))),
            "the last flush returned {flushed:?}: {case:?}"
        );
        let uncut = meter.outside(|| {
            let log = log.log();
            assert!(
                any.feed(&calls, &log.received) && any.complete(&calls),
                "after the last flush, the received bytes are not the calls': {case:?}"
            );
            clean.feed(&calls, &log.received) && clean.complete(&calls)
        });
        let closed = poll_step(channel.flush_and_close(), None).expect("driven to its end");
        match &closed {
            Ok(()) => assert!(uncut, "a clean close after a write cut part-way: {case:?}"),
            Err(e) => {
                assert!(
                    !uncut,
                    "no write was cut, but the close failed ({e:?}): {case:?}"
                );
                assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e:?}: {case:?}");
            }
        }
    }
    drop(channel);
}
