//! Typed reads and count-taking reads against the shared reference model, with the input cut
//! into chunks chosen by the fuzzer: every value is assembled across chunk boundaries
//! correctly, a read that runs out of input fails with `UnexpectedEof` and consumes nothing,
//! and counts and limits from the input, up to `u64::MAX` (`read_bytes`, `peek`,
//! `await_content`, `discard`, `discard_exact`, `read_remaining`, `copy_to`), neither panic nor
//! allocate what the input does not hold (SPEC §4.1: memory follows bytes received);
//! `read_available` hands out a prefix of what is left, at least one byte unless at the end.
//! Transport timeouts come before the chunks the fuzzer picks (an operation they stop consumes
//! nothing, or for `discard` and `copy_to` what `total_bytes_read` says, and reading goes on).
//! The stream ends cleanly or (a flag) with a transport failure, before which every read the
//! bytes decide still succeeds and after which every read that needs more reports it, the
//! bytes a `discard`, `read_fully` or `copy_to` took before it staying taken (SPEC §4; the
//! model's `failing`). Memory the channel holds, counted
//! by a global allocator at every transport read and after every operation, and its peak
//! between those points, stays within twice the bytes the transport handed out plus
//! [`SLACK`] (and, for the peak, the copy a `peek` returns, or the run a `read_bytes` or
//! `read_remaining` returns, which is a copy where a large item grew the buffer).

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use net_io::{ByteReadChannel, ByteWriteChannel, Error};

#[path = "../../crates/net-io/tests/support/model.rs"]
mod model;

use model::{ChunkedReader, Model};

include!("../common.rs");

#[derive(Arbitrary, Debug, Clone)]
enum Op {
    U8,
    I16,
    U16Le,
    U32,
    I32Le,
    U64,
    U64Le,
    F32,
    F64Le,
    Bytes(Count),
    Peek(Count),
    AwaitContent(Count),
    Discard(Count),
    DiscardExact(Count),
    ReadFully(u16),
    SkipIfFound(Vec<u8>),
    /// `read_remaining` with a limit from the input.
    Remaining(Count),
    /// `read_available` into a buffer of this many bytes.
    Available(u16),
    /// `copy_to` a `ByteWriteChannel` with a limit from the input.
    CopyTo(Count),
}

/// The transport of `copy_to`'s destination: it keeps what it is given in a `Vec` reserved for
/// the whole input outside the measurement, so that recording the bytes allocates nothing.
#[derive(Clone)]
struct Recorder(Arc<Mutex<Vec<u8>>>);

impl tokio::io::AsyncWrite for Recorder {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut kept = self.0.lock().expect("recorder");
        assert!(
            kept.len() + buf.len() <= kept.capacity(),
            "copy_to wrote more than the input holds"
        );
        kept.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// `copy_to`'s destination and what its transport has taken.
struct Copies {
    channel: ByteWriteChannel,
    taken: Recorder,
}

#[derive(Arbitrary, Debug)]
struct Case {
    ops: Vec<Op>,
    /// The stream ends with a transport failure (`ConnectionReset`) instead of an end of stream.
    fail: bool,
    /// A chunk of up to 256 KiB among the others.
    big: Option<Big>,
    /// Used in turn before each chunk and before the end (none if empty): `true` puts a
    /// transport timeout (`Error::Timeout`, not final) there.
    stalls: Vec<bool>,
    chunks: Vec<Vec<u8>>,
}

/// The transport: the chunks, a timeout before those `stalls` picks and a `Pending` before each
/// of odd length, then the end of the stream or (`fail`) a `ConnectionReset`.
fn reader(chunks: &[Vec<u8>], stalls: &[bool], fail: bool) -> ChunkedReader {
    let end = fail.then(|| std::io::ErrorKind::ConnectionReset.into());
    ChunkedReader::scripted(chunks, |i| stalled(stalls, i), timeout, end)
}

/// Where an operation started: the bytes read, and those `copy_to`'s transport had taken.
struct Start {
    read: u64,
    taken: usize,
}

/// Whether `result` is a transport timeout.
fn is_timeout<T>(result: &net_io::Result<T>) -> bool {
    matches!(result, Err(Error::Timeout))
}

/// After `op` failed with a timeout, which leaves the channel usable: a cancel-safe read (and
/// `read_fully`, which gives back what it took) consumed nothing; `discard` and `copy_to` keep
/// what they took (`total_bytes_read` tells how much), and `copy_to` sent exactly that on.
fn timed_out(
    channel: &ByteReadChannel,
    model: &mut Model,
    copies: &Copies,
    op: &Op,
    start: &Start,
) {
    let consumed = usize::try_from(channel.total_bytes_read() - start.read).expect("a count");
    match op {
        Op::Discard(_) | Op::DiscardExact(_) => {
            model.discard(consumed as u64);
        }
        Op::CopyTo(_) => {
            let want = model.take(consumed).expect("what was copied");
            let taken = copies.taken.0.lock().expect("recorder");
            assert_eq!(
                &taken[start.taken..],
                &want[..],
                "{op:?}: copied before a timeout"
            );
        }
        _ => assert_eq!(
            consumed, 0,
            "{op:?}: consumed {consumed} bytes before a timeout"
        ),
    }
}

/// Whether `result` is the transport's failure.
fn failed<T>(result: &net_io::Result<T>) -> bool {
    matches!(result, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
}

/// Checks a read that takes nothing when it fails: the model's failure (`fails`), or its
/// answer.
fn or_failed<T: std::fmt::Debug>(op: &Op, fails: bool, result: &net_io::Result<T>) {
    if fails {
        assert!(
            failed(result),
            "{op:?}: expected the failure, got {result:?}"
        );
    } else {
        assert!(!failed(result), "{op:?}: failed with bytes enough");
    }
}

/// The most the channel may hold beyond twice the bytes the transport handed out: its usual
/// buffer (8 KiB, `READ_CHUNK`) made before the first byte lands in it, one growth step of at
/// most 64 KiB (`MAX_STEP`) made before the read that fills it, the 1 KiB probe of the first
/// read, and small allocations (the channel's state, the copy of up to 1 KiB `read_bytes` makes
/// of a short run). Copies the API makes by contract (a `peek`) are allowed for the peak
/// separately; what the target keeps (the model's answers, `read_fully`'s destination) is
/// allocated [`outside`] the measurement, and results are dropped before each check.
const SLACK: isize = 64 * 1024 + 8 * 1024 + 8 * 1024;

/// Compares a read of `n` bytes (its bytes, or its error) with the model's answer (`None`:
/// the end of the stream, or the failure if the model `fails`).
fn check<B: AsRef<[u8]>>(
    op: &Op,
    want: Option<Vec<u8>>,
    got: &net_io::Result<B>,
    n: usize,
    left: usize,
    fails: bool,
) {
    match (want, got) {
        (Some(want), Ok(got)) => assert_eq!(got.as_ref(), &want[..], "{op:?}"),
        // A failing stream (`left < n`: the model said `None`).
        (None, Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            assert!(left < n, "{op:?}: failed with {left} bytes left");
        }
        (None, Err(Error::UnexpectedEof { needed, available })) if !fails => {
            assert_eq!(*needed, n, "{op:?}");
            assert_eq!(*available, left, "{op:?}: everything left stays buffered");
        }
        (want, got) => panic!(
            "{op:?}: expected {want:?}, got {:?}",
            got.as_ref().map(|b| b.as_ref())
        ),
    }
}

/// Runs `op` on the channel, then checks its result against the model [`outside`] the
/// measurement, and drops it; returns the bytes of a copy the API makes by contract (a
/// `peek`), which the peak since the last check may hold besides the channel's own.
async fn run(
    channel: &mut ByteReadChannel,
    model: &mut Model,
    copies: &mut Copies,
    op: &Op,
) -> isize {
    let left = model.rest().len();
    let start = Start {
        read: channel.total_bytes_read(),
        taken: outside(|| copies.taken.0.lock().expect("recorder").len()),
    };
    // Returns from `run` if the read timed out.
    macro_rules! timeout {
        ($result:expr) => {
            if is_timeout(&$result) {
                outside(|| timed_out(channel, model, copies, op, &start));
                return 0;
            }
        };
    }
    match op {
        Op::U8 => {
            let got = channel.read_u8().await.map(|v| [v]);
            timeout!(got);
            outside(|| check(op, model.take(1), &got, 1, left, model.fails()));
        }
        Op::I16 => {
            let got = channel.read_i16().await.map(|v| v.to_be_bytes());
            timeout!(got);
            outside(|| check(op, model.take(2), &got, 2, left, model.fails()));
        }
        Op::U16Le => {
            let got = channel.read_u16_le().await.map(|v| v.to_le_bytes());
            timeout!(got);
            outside(|| check(op, model.take(2), &got, 2, left, model.fails()));
        }
        Op::U32 => {
            let got = channel.read_u32().await.map(|v| v.to_be_bytes());
            timeout!(got);
            outside(|| check(op, model.take(4), &got, 4, left, model.fails()));
        }
        Op::I32Le => {
            let got = channel.read_i32_le().await.map(|v| v.to_le_bytes());
            timeout!(got);
            outside(|| check(op, model.take(4), &got, 4, left, model.fails()));
        }
        Op::U64 => {
            let got = channel.read_u64().await.map(|v| v.to_be_bytes());
            timeout!(got);
            outside(|| check(op, model.take(8), &got, 8, left, model.fails()));
        }
        Op::U64Le => {
            let got = channel.read_u64_le().await.map(|v| v.to_le_bytes());
            timeout!(got);
            outside(|| check(op, model.take(8), &got, 8, left, model.fails()));
        }
        Op::F32 => {
            let got = channel.read_f32().await.map(|v| v.to_bits().to_be_bytes());
            timeout!(got);
            outside(|| check(op, model.take(4), &got, 4, left, model.fails()));
        }
        Op::F64Le => {
            let got = channel
                .read_f64_le()
                .await
                .map(|v| v.to_bits().to_le_bytes());
            timeout!(got);
            outside(|| check(op, model.take(8), &got, 8, left, model.fails()));
        }
        Op::Bytes(count) => {
            let n = count.len();
            // Zero-copy from 1 KiB on, unless a large item grew the buffer: then a copy, which
            // the peak may hold beside the buffer (a shorter run is a copy within the slack).
            let got = channel.read_bytes(n).await;
            timeout!(got);
            outside(|| check(op, model.take(n), &got, n, left, model.fails()));
            return got.map_or(0, |b| b.len() as isize);
        }
        Op::Peek(count) => {
            let n = count.len();
            let got = channel.peek(n).await;
            timeout!(got);
            let fails = model.fails() && left < n;
            outside(|| or_failed(op, fails, &got));
            if fails {
                return 0;
            }
            let got = got.expect("peek");
            let copy = got.as_ref().map_or(0, |b| b.len() as isize);
            outside(|| assert_eq!(got.as_deref(), model.peek(n).as_deref(), "{op:?}"));
            return copy;
        }
        Op::AwaitContent(count) => {
            let n = count.len();
            let enough = channel.await_content(n).await;
            timeout!(enough);
            let fails = model.fails() && left < n;
            outside(|| or_failed(op, fails, &enough));
            if !fails {
                let enough = enough.expect("await_content");
                outside(|| assert_eq!(enough, model.has(n), "{op:?}"));
            }
            assert!(channel.available_for_read() >= n.min(left), "{op:?}");
        }
        Op::Discard(count) => {
            let skipped = channel.discard(count.get()).await;
            timeout!(skipped);
            let fails = model.fails() && (left as u64) < count.get();
            outside(|| {
                or_failed(op, fails, &skipped);
                // Before a failure, what was there is skipped all the same.
                let want = model.discard(count.get()) as u64;
                if !fails {
                    assert_eq!(*skipped.as_ref().expect("discard"), want, "{op:?}");
                }
            });
        }
        Op::DiscardExact(count) => {
            let result = channel.discard_exact(count.get()).await;
            timeout!(result);
            outside(|| {
                if model.fails() && (left as u64) < count.get() {
                    or_failed(op, true, &result);
                    model.discard(count.get());
                } else if model.discard_exact(count.get()) {
                    result.expect("discard_exact");
                } else {
                    match result {
                        Err(Error::UnexpectedEof { needed, available }) => {
                            assert_eq!(needed, count.len(), "{op:?}");
                            assert_eq!(available, left, "{op:?}");
                        }
                        other => panic!("{op:?}: expected UnexpectedEof, got {other:?}"),
                    }
                }
            });
        }
        Op::ReadFully(n) => {
            let n = usize::from(*n);
            // The target's: allocated and freed outside the measurement.
            let mut dst = outside(|| vec![0u8; n]);
            let result = channel.read_fully(&mut dst).await;
            timeout!(result);
            outside(move || match result {
                Ok(()) => assert_eq!(Some(dst), model.take(n), "{op:?}"),
                // Before a failure, what was there was copied (and consumed).
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    assert!(model.fails() && left < n, "{op:?}: {e:?}");
                    assert_eq!(dst[..left], model.rest()[..left]);
                    model.discard(left as u64);
                }
                Err(Error::UnexpectedEof { needed, available }) => {
                    // What was there was copied (and consumed).
                    assert_eq!((needed, available), (n, left), "{op:?}");
                    assert_eq!(model.take(n), None);
                    assert_eq!(dst[..left], model.rest()[..left]);
                    model.discard(left as u64);
                }
                Err(e) => panic!("{op:?}: {e:?}"),
            });
        }
        Op::SkipIfFound(pattern) => {
            let found = channel.skip_if_found(pattern).await;
            timeout!(found);
            outside(|| match model.found(pattern) {
                None => or_failed(op, true, &found),
                Some(want) => assert_eq!(found.expect("skip_if_found"), want, "{op:?}"),
            });
        }
        Op::Remaining(count) => {
            let n = count.len();
            let got = channel.read_remaining(n).await;
            timeout!(got);
            if model.fails() && left < n {
                outside(|| {
                    or_failed(op, true, &got);
                    model.drop_skip(true);
                });
                return 0;
            }
            let got = got.expect("read_remaining");
            outside(|| {
                let want = model.take(n.min(left)).expect("what is left");
                assert_eq!(&got[..], &want[..], "{op:?}");
            });
            // As `read_bytes`: the run may be a copy.
            return got.len() as isize;
        }
        Op::Available(n) => {
            let n = usize::from(*n);
            let mut dst = outside(|| vec![0u8; n]);
            // What is buffered already is copied at once, as much of it as fits (the docs:
            // "copies as many as are buffered").
            let buffered = channel.available_for_read();
            let got = channel.read_available(&mut dst).await;
            timeout!(got);
            let fails = model.fails() && left == 0 && n > 0;
            outside(|| or_failed(op, fails, &got));
            if fails {
                return 0;
            }
            let got = got.expect("read_available");
            outside(move || {
                assert!(got <= n, "{op:?}: {got} bytes");
                // Nothing only for an empty buffer or at the end of the stream.
                assert_eq!(
                    got == 0,
                    n == 0 || left == 0,
                    "{op:?}: {got} bytes of {left}"
                );
                if buffered > 0 {
                    assert_eq!(got, n.min(buffered), "{op:?}: {buffered} bytes were buffered");
                }
                assert_eq!(Some(dst[..got].to_vec()), model.take(got), "{op:?}");
            });
        }
        Op::CopyTo(count) => {
            let before = outside(|| copies.taken.0.lock().expect("recorder").len());
            let copied = channel.copy_to(&mut copies.channel, count.get()).await;
            timeout!(copied);
            outside(|| {
                let fails = model.fails() && (left as u64) < count.get();
                or_failed(op, fails, &copied);
                let want = model
                    .take(usize::try_from(count.get()).unwrap_or(usize::MAX).min(left))
                    .expect("what is left");
                if !fails {
                    assert_eq!(
                        *copied.as_ref().expect("copy_to"),
                        want.len() as u64,
                        "{op:?}"
                    );
                }
                let taken = copies.taken.0.lock().expect("recorder");
                // Flushed at the end: every byte copied has reached the transport.
                assert_eq!(&taken[before..], &want[..], "{op:?}");
            });
        }
    }
    0
}

fuzz_target!(|case: Case| {
    let chunks = with_big(&case.chunks, case.big);
    let input: Vec<u8> = chunks.concat();
    let mut model = if case.fail {
        Model::failing(&input)
    } else {
        Model::new(&input)
    };
    let reader = Metered::new(reader(&chunks, &case.stalls, case.fail), SLACK);
    let taken = Recorder(Arc::new(Mutex::new(Vec::with_capacity(input.len()))));
    let mut copies = Copies {
        channel: ByteWriteChannel::new(taken.clone(), false),
        taken,
    };
    start_measuring();
    let mut channel = ByteReadChannel::new(reader);
    drive(async {
        for op in &case.ops {
            let copy = run(&mut channel, &mut model, &mut copies, op).await;
            check_memory(HANDED.get(), SLACK, copy, &|| format!("after {op:?}"));
            assert_eq!(
                channel.total_bytes_read(),
                model.consumed() as u64,
                "{op:?}"
            );
        }
        // Whatever is left is still there, in order (after a failure, all of it buffered).
        let mut rest = channel.read_remaining(usize::MAX).await;
        // Each timeout is reported once, and consumes nothing.
        for _ in 0..=chunks.len() {
            if !is_timeout(&rest) {
                break;
            }
            rest = channel.read_remaining(usize::MAX).await;
        }
        let left = match rest {
            Ok(left) => {
                assert!(!model.fails(), "read_remaining ended a failing stream");
                left
            }
            Err(e) => {
                assert!(model.fails(), "read_remaining: {e:?}");
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e:?}");
                let n = channel.available_for_read();
                channel.read_bytes(n).await.expect("what is buffered")
            }
        };
        outside(|| assert_eq!(&left[..], model.rest()));
        let copy = left.len() as isize;
        drop(left);
        check_memory(HANDED.get(), SLACK, copy, &|| {
            "after read_remaining".to_owned()
        });
    });
    stop_measuring();
});
