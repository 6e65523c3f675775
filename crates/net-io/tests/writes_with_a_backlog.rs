//! The write side against a model: a scripted transport that sends the flush-coalescing backlog's
//! held bytes before anything written to it (as `net-sockets` does), writes of every kind
//! dropped at chosen polls or met by `Pending`, partial counts, `Error::Timeout` and failures,
//! checked against a model of what the peer must receive (`total_bytes_written` tells how much
//! of each call was accepted; the peer gets exactly those bytes, in order, and a clean close only
//! when nothing was lost).

mod support;

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use net_io::{Backlog, ByteReadChannel, ByteWriteChannel, Error, LineEnding, WriteState};
use support::rng::Rng;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::codec::BytesCodec;

/// What the transport does at one poll.
#[derive(Clone, Copy, Debug)]
enum Act {
    /// Takes up to this many bytes (at least one) after sending what the backlog holds.
    Take(usize),
    Pending,
    /// `Error::Timeout` in an `io::Error` (a `socket_timeout`), nothing taken.
    Timeout,
    /// A broken pipe, nothing taken.
    Broken,
    /// `Ok(0)` from a write (a flush or shutdown goes on).
    Zero,
}

#[derive(Default)]
struct Peer {
    acts: VecDeque<Act>,
    received: Vec<u8>,
    shut_down: bool,
    /// Polls of the transport (write, flush, shutdown) so far.
    polls: usize,
}

/// The scripted transport: sends the backlog's held bytes first at every poll that goes on.
struct Scripted {
    peer: Arc<Mutex<Peer>>,
    backlog: Backlog,
}

impl Scripted {
    fn act(&self) -> Act {
        let mut peer = self.peer.lock().unwrap();
        peer.polls += 1;
        peer.acts.pop_front().unwrap_or(Act::Take(usize::MAX))
    }

    fn send_held(&self) {
        let held = self.backlog.with_held(std::mem::take);
        self.peer.lock().unwrap().received.extend_from_slice(&held);
    }
}

fn timeout() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, Error::Timeout)
}

impl AsyncWrite for Scripted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        assert!(!self.peer.lock().unwrap().shut_down, "write after shutdown");
        match self.act() {
            Act::Take(n) => {
                self.send_held();
                let k = n.clamp(1, buf.len().max(1)).min(buf.len());
                self.peer
                    .lock()
                    .unwrap()
                    .received
                    .extend_from_slice(&buf[..k]);
                Poll::Ready(Ok(k))
            }
            Act::Pending => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Act::Timeout => Poll::Ready(Err(timeout())),
            Act::Broken => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            Act::Zero => Poll::Ready(Ok(0)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.act() {
            Act::Take(_) | Act::Zero => {
                self.send_held();
                Poll::Ready(Ok(()))
            }
            Act::Pending => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Act::Timeout => Poll::Ready(Err(timeout())),
            Act::Broken => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.act() {
            Act::Take(_) | Act::Zero => {
                self.send_held();
                let mut peer = self.peer.lock().unwrap();
                assert!(!peer.shut_down, "shut down twice");
                peer.shut_down = true;
                Poll::Ready(Ok(()))
            }
            Act::Pending => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Act::Timeout => Poll::Ready(Err(timeout())),
            Act::Broken => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }
}

/// An encoder that writes part of the frame, then fails.
struct Failing;

impl tokio_util::codec::Encoder<Bytes> for Failing {
    type Error = io::Error;

    fn encode(&mut self, item: Bytes, dst: &mut bytes::BytesMut) -> io::Result<()> {
        dst.extend_from_slice(&item[..item.len() / 2]);
        Err(io::Error::other("encoder failed"))
    }
}

/// Polls `fut` up to `polls` times (a noop waker); `None` when it was still pending (then
/// dropped).
fn poll_up_to<F: Future>(fut: F, polls: usize) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..polls {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
    }
    None
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Fully(usize),
    Str(usize),
    Bytes(usize),
    U32,
    U64Le,
    Frame(usize),
    /// `AsyncWrite::poll_write` once to completion (what it returns is what it took).
    Write(usize),
    Flush,
    TraitFlush,
    FlushAndClose,
    Shutdown,
    /// The reader reads one line of two it received: input is pending.
    Pend,
    Cancel,
    /// A frame whose encoder fails after writing part of it.
    BadFrame(usize),
    /// The reader reads what is left and is about to wait: the transport sends what is held.
    Wait,
}

fn gen_len(rng: &mut Rng) -> usize {
    match rng.below(4) {
        0 => rng.below(16) as usize,
        1 => rng.below(4_000) as usize,
        2 => 6_000 + rng.below(6_000) as usize,
        _ => 9_000 + rng.below(70_000) as usize,
    }
}

fn gen_op(rng: &mut Rng) -> Op {
    match rng.below(26) {
        0..=4 => Op::Fully(gen_len(rng)),
        5 => Op::Str(rng.below(300) as usize),
        6 => Op::Bytes(gen_len(rng)),
        7 | 8 => Op::U32,
        9 => Op::U64Le,
        10 | 11 => Op::Frame(gen_len(rng)),
        12 | 13 => Op::Write(gen_len(rng)),
        14 | 15 => Op::Flush,
        16 => Op::TraitFlush,
        17 => Op::FlushAndClose,
        18 => Op::Shutdown,
        19..=22 => Op::Pend,
        23 => Op::Wait,
        24 => {
            if rng.below(6) == 0 {
                Op::Cancel
            } else {
                Op::Wait
            }
        }
        _ => Op::BadFrame(gen_len(rng)),
    }
}

fn gen_act(rng: &mut Rng) -> Act {
    match rng.below(20) {
        0..=5 => Act::Take(1 + rng.below(100) as usize),
        6..=9 => Act::Take(1 + rng.below(20_000) as usize),
        10..=13 => Act::Take(usize::MAX),
        14..=17 => Act::Pending,
        18 => Act::Timeout,
        _ => match rng.below(8) {
            0 => Act::Broken,
            1 => Act::Zero,
            _ => Act::Timeout,
        },
    }
}

/// A reader whose backlog the test drives: `Pend` leaves one line unread, `Wait` reads it.
struct Reader {
    peer: tokio::io::DuplexStream,
    input: ByteReadChannel,
    unread: usize,
}

impl Reader {
    fn pend(&mut self) {
        let _ = poll_up_to(self.peer.write_all(b"r\nr\n"), 1).expect("room in the duplex");
        self.unread += 2;
        self.read_line();
    }

    fn read_line(&mut self) {
        let line = poll_up_to(self.input.read_line(8, LineEnding::Default), 4)
            .expect("a line is there")
            .unwrap();
        assert_eq!(line.as_deref(), Some("r"));
        self.unread -= 1;
    }

    fn drain(&mut self) {
        while self.unread > 0 {
            self.read_line();
        }
    }
}

/// The run's trace, printed when a check fails.
fn fail(seed: u64, trace: &[String], why: String) -> ! {
    panic!(
        "seed {seed}: {why}\ntrace (last 30):\n{}",
        trace[trace.len().saturating_sub(30)..].join("\n")
    );
}

/// One seeded run.
fn run(seed: u64, auto_flush: bool, hold: bool) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let backlog = Backlog::new();
    let (peer_in, transport_in) = tokio::io::duplex(1 << 16);
    let mut reader = Reader {
        peer: peer_in,
        input: ByteReadChannel::new(transport_in),
        unread: 0,
    };
    reader.input.share_backlog(backlog.clone());
    let peer = Arc::new(Mutex::new(Peer::default()));
    {
        let mut p = peer.lock().unwrap();
        for _ in 0..(rng.below(300)) {
            let act = gen_act(&mut rng);
            p.acts.push_back(act);
        }
    }
    let transport = Scripted {
        peer: Arc::clone(&peer),
        backlog: backlog.clone(),
    };
    let mut output = ByteWriteChannel::new(transport, auto_flush);
    let state = WriteState::new();
    output.share_state(state.clone());
    if hold {
        output.hold_while(backlog.clone());
    }
    let mut expected: Vec<u8> = Vec::new();
    let mut counter: u8 = 0;
    let mut trace = Vec::new();
    let steps = 1 + rng.below(40);
    for _ in 0..steps {
        let op = gen_op(&mut rng);
        // None: to completion (bounded); Some(k): dropped after k polls.
        let polls = if rng.below(3) == 0 {
            1 + rng.below(12) as usize
        } else {
            2_000
        };
        let len = match op {
            Op::Fully(n)
            | Op::Str(n)
            | Op::Bytes(n)
            | Op::Frame(n)
            | Op::Write(n)
            | Op::BadFrame(n) => n,
            Op::U32 => 4,
            Op::U64Le => 8,
            _ => 0,
        };
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                counter = counter.wrapping_add(1);
                if matches!(op, Op::Str(_)) {
                    b'a' + counter % 26
                } else {
                    counter
                }
            })
            .collect();
        let before = output.total_bytes_written();
        let was_closed = output.is_closed_for_write();
        let result: Option<Result<usize, Error>> = match op {
            Op::Fully(_) => poll_up_to(output.write_fully(&bytes), polls).map(|r| r.map(|()| len)),
            Op::Str(_) => poll_up_to(
                output.write_string_utf8(std::str::from_utf8(&bytes).unwrap()),
                polls,
            )
            .map(|r| r.map(|()| len)),
            Op::Bytes(_) => poll_up_to(output.write_bytes(Bytes::from(bytes.clone())), polls)
                .map(|r| r.map(|()| len)),
            Op::U32 => poll_up_to(
                output.write_u32(u32::from_be_bytes(bytes[..4].try_into().unwrap())),
                polls,
            )
            .map(|r| r.map(|()| len)),
            Op::U64Le => poll_up_to(
                output.write_u64_le(u64::from_le_bytes(bytes[..8].try_into().unwrap())),
                polls,
            )
            .map(|r| r.map(|()| len)),
            Op::Frame(_) => poll_up_to(
                output.write_frame(&mut BytesCodec::new(), Bytes::from(bytes.clone())),
                polls,
            )
            .map(|r| r.map(|()| len).map_err(Error::from)),
            Op::BadFrame(_) => {
                let r = poll_up_to(
                    output.write_frame(&mut Failing, Bytes::from(bytes.clone())),
                    polls,
                );
                // Nothing of a failed frame is accepted.
                r.map(|r| r.map(|()| len).map_err(Error::from))
            }
            Op::Cancel => {
                output.cancel();
                Some(Ok(0))
            }
            Op::Write(_) => poll_up_to(AsyncWriteExt::write(&mut output, &bytes), polls)
                .map(|r| r.map_err(Error::from)),
            Op::Flush => poll_up_to(output.flush(), polls).map(|r| r.map(|()| 0)),
            Op::TraitFlush => poll_up_to(AsyncWriteExt::flush(&mut output), polls)
                .map(|r| r.map(|()| 0).map_err(Error::from)),
            Op::FlushAndClose => poll_up_to(output.flush_and_close(), polls).map(|r| r.map(|()| 0)),
            Op::Shutdown => poll_up_to(AsyncWriteExt::shutdown(&mut output), polls)
                .map(|r| r.map(|()| 0).map_err(Error::from)),
            Op::Pend => {
                reader.pend();
                Some(Ok(0))
            }
            Op::Wait => {
                reader.drain();
                // The reader is about to wait: the transport sends what is held.
                let held = backlog.with_held(std::mem::take);
                peer.lock().unwrap().received.extend_from_slice(&held);
                Some(Ok(0))
            }
        };
        let after = output.total_bytes_written();
        let delta = (after - before) as usize;
        trace.push(format!(
            "{op:?} polls={polls} -> {result:?} delta={delta} closed={} pending={} held={:?} unsent={} lost={}",
            output.is_closed_for_write(),
            backlog.is_pending(),
            backlog.is_holding(),
            state.has_unsent(),
            state.lost_bytes()
        ));
        if delta > len {
            fail(
                seed,
                &trace,
                format!("counted {delta} of a {len}-byte call"),
            );
        }
        match &result {
            Some(Ok(n)) if len > 0 && *n != delta => {
                fail(seed, &trace, format!("returned {n}, counted {delta}"))
            }
            Some(Ok(_)) if len > 0 && !matches!(op, Op::Write(_)) && delta != len => {
                fail(seed, &trace, format!("Ok but counted {delta} of {len}"))
            }
            Some(Err(Error::Timeout)) if !output.is_closed_for_write() && delta != 0 => fail(
                seed,
                &trace,
                format!("a retryable timeout counted {delta} bytes"),
            ),
            Some(Err(e))
                if !output.is_closed_for_write()
                    && !matches!(e, Error::Timeout)
                    && !matches!(op, Op::BadFrame(_)) =>
            {
                fail(seed, &trace, format!("{e:?} left the channel open"))
            }
            Some(Err(_)) if matches!(op, Op::Write(_)) && delta != 0 => fail(
                seed,
                &trace,
                format!("poll_write errored after counting {delta}"),
            ),
            _ => {}
        }
        if result.is_none()
            && matches!(op, Op::U32 | Op::U64Le | Op::Frame(_))
            && delta != 0
            && delta != len
        {
            fail(seed, &trace, format!("a dropped {op:?} was cut at {delta}"));
        }
        if matches!(op, Op::BadFrame(_)) && delta != 0 {
            fail(seed, &trace, format!("a failed frame counted {delta}"));
        }
        if was_closed && delta != 0 {
            fail(seed, &trace, "a closed channel accepted bytes".into());
        }
        expected.extend_from_slice(&bytes[..delta]);
        let received = peer.lock().unwrap().received.clone();
        if !expected.starts_with(&received) {
            let at = received
                .iter()
                .zip(&expected)
                .position(|(a, b)| a != b)
                .unwrap_or(expected.len());
            fail(
                seed,
                &trace,
                format!(
                    "the peer received {} bytes, not a prefix of the {} accepted (differs at {at})",
                    received.len(),
                    expected.len()
                ),
            );
        }
        {
            // What an owner that closes now sees: with nothing unsent and nothing lost, it ends
            // the stream cleanly, so every accepted byte must be with the transport or held.
            let mut all = received.clone();
            backlog.with_held(|held| all.extend_from_slice(held));
            if !state.has_unsent() && !state.lost_bytes() && all != expected {
                fail(
                    seed,
                    &trace,
                    format!(
                        "the state says nothing is unsent or lost, but {} of {} accepted bytes \
                         reached the transport or the backlog",
                        all.len(),
                        expected.len()
                    ),
                );
            }
        }
        let flushed_ok = matches!(
            (op, &result),
            (
                Op::Flush | Op::TraitFlush | Op::FlushAndClose | Op::Shutdown,
                Some(Ok(_))
            )
        );
        if flushed_ok && !was_closed && received != expected {
            fail(
                seed,
                &trace,
                format!(
                    "{op:?} succeeded but the peer has {} of {} accepted bytes",
                    received.len(),
                    expected.len()
                ),
            );
        }
        if matches!((op, &result), (Op::Flush, Some(Ok(_)))) && state.has_unsent() {
            // Unsent after a flush only with the rest of a cut write missing.
            if !matches!(
                poll_up_to(output.flush_and_close(), 2000),
                Some(Err(Error::Io(_)))
            ) {
                fail(
                    seed,
                    &trace,
                    "unsent after a flush, yet no cut write".into(),
                );
            }
        }
        if matches!(
            (op, &result),
            (Op::FlushAndClose | Op::Shutdown, Some(Ok(_)))
        ) && !was_closed
            && !peer.lock().unwrap().shut_down
        {
            fail(seed, &trace, "a clean close without a shutdown".into());
        }
        if peer.lock().unwrap().shut_down && received != expected {
            fail(
                seed,
                &trace,
                format!(
                    "the transport was shut down (a clean end) with {} of {} accepted bytes sent",
                    received.len(),
                    expected.len()
                ),
            );
        }
        if output.is_closed_for_write() {
            break;
        }
    }
    if rng.below(3) == 0 {
        // Dropped instead of closed: the state must say whether accepted bytes are missing.
        drop(output);
        let mut all = peer.lock().unwrap().received.clone();
        backlog.with_held(|held| all.extend_from_slice(held));
        trace.push(format!(
            "dropped: unsent={} lost={} sent+held={} accepted={}",
            state.has_unsent(),
            state.lost_bytes(),
            all.len(),
            expected.len()
        ));
        if all != expected && !state.lost_bytes() {
            fail(
                seed,
                &trace,
                "accepted bytes are missing, yet lost_bytes() is false".into(),
            );
        }
        return;
    }
    // The end: a close with a transport that takes everything from now on.
    peer.lock().unwrap().acts.clear();
    reader.drain();
    let closed = poll_up_to(output.flush_and_close(), 2_000);
    let received = peer.lock().unwrap().received.clone();
    let shut = peer.lock().unwrap().shut_down;
    trace.push(format!("final close -> {closed:?} shut={shut}"));
    if matches!(closed, Some(Err(_))) {
        let mut all = received.clone();
        backlog.with_held(|held| all.extend_from_slice(held));
        if all != expected && !state.lost_bytes() && !state.has_unsent() {
            fail(
                seed,
                &trace,
                "a failed close lost accepted bytes, yet the state says nothing".into(),
            );
        }
    }
    if shut && received != expected {
        fail(
            seed,
            &trace,
            format!(
                "clean end with {} of {} accepted bytes",
                received.len(),
                expected.len()
            ),
        );
    }
}

/// Seeded runs of the model (auto-flush or not, with and without a flush-coalescing backlog).
#[test]
fn writes_with_a_backlog_follow_the_model() {
    let seeds: u64 = std::env::var("WRITE_REVIEW_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    for seed in 0..seeds {
        for (auto_flush, hold) in [(true, true), (false, true), (true, false), (false, false)] {
            run(seed, auto_flush, hold);
        }
    }
}

/// The same calls over an in-memory [`ByteChannel`](net_io::ByteChannel), whose pipe holds
/// 64 KiB: calls dropped while the pipe is full, a reader that drains it between calls, and
/// at the end the reader sees every accepted byte and a clean end, or fails (never a clean end
/// of a stream that lacks accepted bytes).
#[test]
fn writes_over_a_pipe_follow_the_model() {
    let seeds: u64 = std::env::var("WRITE_REVIEW_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000);
    for seed in 0..seeds {
        for auto_flush in [false, true] {
            run_pipe(seed, auto_flush);
        }
    }
}

fn run_pipe(seed: u64, auto_flush: bool) {
    let mut rng = Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
    let (mut output, mut input) = net_io::ByteChannel::new(auto_flush);
    let mut expected = Vec::new();
    let mut received = Vec::new();
    let mut trace = Vec::new();
    let mut counter = 0u8;
    for _ in 0..1 + rng.below(40) {
        let mut op = gen_op(&mut rng);
        if matches!(op, Op::Pend | Op::Wait) {
            // The reader takes what the pipe holds.
            let mut buf = vec![0; 100_000];
            let got = poll_up_to(input.read_available(&mut buf), 1);
            if let Some(Ok(n)) = got {
                received.extend_from_slice(&buf[..n]);
            }
            trace.push(format!(
                "read -> {:?}",
                got.map(|r| r.map(|_| received.len()))
            ));
            continue;
        }
        if matches!(op, Op::BadFrame(_)) && rng.below(2) == 0 {
            op = Op::Cancel;
        }
        let polls = if rng.below(2) == 0 {
            1 + rng.below(3) as usize
        } else {
            50
        };
        let len = match op {
            Op::Fully(n)
            | Op::Str(n)
            | Op::Bytes(n)
            | Op::Frame(n)
            | Op::Write(n)
            | Op::BadFrame(n) => n,
            Op::U32 => 4,
            Op::U64Le => 8,
            _ => 0,
        };
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                counter = counter.wrapping_add(1);
                b'a' + counter % 26
            })
            .collect();
        let before = output.total_bytes_written();
        let result: Option<Result<(), Error>> = match op {
            Op::Fully(_) => poll_up_to(output.write_fully(&bytes), polls),
            Op::Str(_) => poll_up_to(
                output.write_string_utf8(std::str::from_utf8(&bytes).unwrap()),
                polls,
            ),
            Op::Bytes(_) => poll_up_to(output.write_bytes(Bytes::from(bytes.clone())), polls),
            Op::U32 => poll_up_to(
                output.write_u32(u32::from_be_bytes(bytes[..4].try_into().unwrap())),
                polls,
            ),
            Op::U64Le => poll_up_to(
                output.write_u64_le(u64::from_le_bytes(bytes[..8].try_into().unwrap())),
                polls,
            ),
            Op::Frame(_) => poll_up_to(
                output.write_frame(&mut BytesCodec::new(), Bytes::from(bytes.clone())),
                polls,
            )
            .map(|r| r.map_err(Error::from)),
            Op::BadFrame(_) => poll_up_to(
                output.write_frame(&mut Failing, Bytes::from(bytes.clone())),
                polls,
            )
            .map(|r| r.map_err(Error::from)),
            Op::Write(_) => poll_up_to(AsyncWriteExt::write(&mut output, &bytes), polls)
                .map(|r| r.map(|_| ()).map_err(Error::from)),
            Op::Flush => poll_up_to(output.flush(), polls),
            Op::TraitFlush => {
                poll_up_to(AsyncWriteExt::flush(&mut output), polls).map(|r| r.map_err(Error::from))
            }
            Op::FlushAndClose => poll_up_to(output.flush_and_close(), polls),
            Op::Shutdown => poll_up_to(AsyncWriteExt::shutdown(&mut output), polls)
                .map(|r| r.map_err(Error::from)),
            Op::Cancel => {
                output.cancel();
                Some(Ok(()))
            }
            Op::Pend | Op::Wait => unreachable!(),
        };
        let delta = (output.total_bytes_written() - before) as usize;
        trace.push(format!("{op:?} polls={polls} -> {result:?} delta={delta}"));
        if delta > len {
            fail(seed, &trace, format!("counted {delta} of {len}"));
        }
        expected.extend_from_slice(&bytes[..delta]);
        if !expected.starts_with(&received) {
            fail(
                seed,
                &trace,
                "the reader got bytes not accepted, or out of order".into(),
            );
        }
        if output.is_closed_for_write() {
            break;
        }
    }
    let closed = if rng.below(3) == 0 {
        drop(output);
        None
    } else {
        let r = poll_up_to(output.flush_and_close(), 1);
        // The reader may have to drain a full pipe first: a second try after it reads.
        let mut buf = vec![0; 200_000];
        if let Some(Ok(n)) = poll_up_to(input.read_available(&mut buf), 1) {
            received.extend_from_slice(&buf[..n]);
        }
        let r = match r {
            None => poll_up_to(output.flush_and_close(), 4),
            r => r,
        };
        drop(output);
        Some(r)
    };
    trace.push(format!("close -> {closed:?}"));
    let rest = poll_up_to(input.read_remaining(usize::MAX), 4);
    trace.push(format!(
        "rest -> {:?}",
        rest.as_ref().map(|r| r.as_ref().map(|b| b.len()))
    ));
    match rest {
        Some(Ok(rest)) => {
            received.extend_from_slice(&rest);
            if received != expected {
                fail(
                    seed,
                    &trace,
                    format!(
                        "a clean end after {} of {} accepted bytes",
                        received.len(),
                        expected.len()
                    ),
                );
            }
        }
        Some(Err(_)) => {}
        None => fail(
            seed,
            &trace,
            "the reader hangs after the writer is gone".into(),
        ),
    }
}

/// A transport whose owner closes it from another thread: after the mark no write takes a
/// byte (the mark is taken under the same lock as a write's append).
#[derive(Clone, Default)]
struct Closable(Arc<Mutex<(bool, Vec<u8>)>>);

impl AsyncWrite for Closable {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut inner = self.0.lock().unwrap();
        if inner.0 {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        }
        // Small steps, so that a direct write takes several.
        let n = buf.len().min(3_000);
        inner.1.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.0.lock().unwrap().0 {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// `WriteState::end` racing the writes of another thread: an owner that marks its transport
/// closed, ends the state, and finds nothing unsent and nothing lost ends the stream cleanly,
/// so every byte the channel ever accepted must be with the transport by then.
#[test]
fn an_owner_that_sees_nothing_unsent_has_every_accepted_byte() {
    let runs: u64 = std::env::var("WRITE_REVIEW_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(100, |n: u64| n / 10 + 1);
    for seed in 0..runs {
        for auto_flush in [false, true] {
            let transport = Closable::default();
            let state = WriteState::new();
            let mut output = ByteWriteChannel::new(transport.clone(), auto_flush);
            output.share_state(state.clone());
            let writer = std::thread::spawn(move || {
                let mut rng = Rng(seed.wrapping_mul(0xA24B_AED4_963E_E407) | 1);
                for _ in 0..10_000 {
                    let n = gen_len(&mut rng);
                    let data = vec![7u8; n];
                    let r = match rng.below(5) {
                        0 => poll_up_to(output.write_u32(9), 1),
                        1 => poll_up_to(output.flush(), 1),
                        2 => poll_up_to(AsyncWriteExt::write(&mut output, &data), 1)
                            .map(|r| r.map(|_| ()).map_err(Error::from)),
                        _ => poll_up_to(output.write_fully(&data), 1),
                    };
                    if matches!(r, Some(Err(_))) {
                        break;
                    }
                }
                output.total_bytes_written()
            });
            let mut spin = Rng(seed | 1);
            for _ in 0..spin.below(200_000) {
                std::hint::spin_loop();
            }
            let at_check = {
                let mut inner = transport.0.lock().unwrap();
                inner.0 = true;
                inner.1.len()
            };
            state.end(io::ErrorKind::NotConnected.into());
            let clean = !state.has_unsent() && !state.lost_bytes();
            let accepted = writer.join().unwrap();
            if clean {
                assert_eq!(
                    accepted, at_check as u64,
                    "seed {seed} auto_flush {auto_flush}: the owner saw nothing unsent, yet the \
                     channel accepted {accepted} bytes and the transport had {at_check}"
                );
            }
        }
    }
}
