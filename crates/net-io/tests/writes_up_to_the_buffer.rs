//! Writes of up to 8 KiB that do not fit the room left are buffered after the buffer is written
//! out, never cut: cancel safety, timeouts, flush coalescing, and a randomized differential test
//! against the model of `support/writes.rs` (a dropped write of up to 8 KiB is whole or nothing
//! unless it went to the transport directly; the close at the end is clean exactly when no
//! write was cut). Memory: `writes_up_to_the_buffer_memory.rs`.

mod support;

#[allow(dead_code)]
#[path = "support/writes.rs"]
mod writes;

use std::io;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use net_io::{Backlog, ByteReadChannel, ByteWriteChannel, Error, LineEnding};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use support::{Act, MockWriter, timeout};

const BUFFER: usize = 8 * 1024;

/// Polls `fut` once with a waker that does nothing; `Some(output)` when it completed (then it is
/// dropped either way, as a `select!` that lost drops it).
fn poll1<F: std::future::Future>(fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// Polls `fut` to its end (the transports here never wait once their acts are played).
fn block<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000 {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("hung")
}

fn pattern(from: usize, n: usize) -> Vec<u8> {
    (from..from + n).map(|i| (i % 251) as u8).collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Cancel safety: "a write of up to 8 KiB that went into the buffer is sent whole or not at
//    all", in auto-flush mode too when the buffer held bytes at the call's start.
// ---------------------------------------------------------------------------------------------

/// Auto-flush mode, the buffer non-empty at the call's start (a typed write dropped while its
/// auto-flush waited, then a 6,000-byte write dropped likewise): a 5,000-byte write that does
/// not fit the room left is dropped after the transport took the buffer and 1,000 of its bytes.
/// It is not cut: the rest goes with the next flush, and the close is clean.
#[test]
fn auto_flushed_write_that_does_not_fit_dropped_part_way_is_never_cut() {
    let mock = MockWriter::default();
    let mut output = ByteWriteChannel::new(mock.clone(), true);
    mock.on_write([Act::Stall]);
    assert!(poll1(output.write_u32(0x0102_0304)).is_none());
    let a = pattern(0, 6000);
    mock.on_write([Act::Stall]);
    assert!(
        poll1(output.write_fully(&a)).is_none(),
        "buffered, then waits"
    );
    let b = pattern(6000, 5000);
    // The buffer out (6,004), then 1,000 of the write's bytes, then the transport waits.
    mock.on_write([Act::Take(6004), Act::Take(1000), Act::Stall]);
    assert!(poll1(output.write_fully(&b)).is_none());
    assert_eq!(mock.accepted().len(), 7004);
    assert_eq!(output.total_bytes_written(), 4 + 6000 + 5000);
    block(output.flush()).unwrap();
    block(output.flush_and_close()).unwrap();
    let mut whole = vec![1, 2, 3, 4];
    whole.extend_from_slice(&a);
    whole.extend_from_slice(&b);
    assert!(mock.accepted() == whole, "{} bytes", mock.accepted().len());
    assert_eq!(mock.shutdowns(), 1);
}

/// The same after a flush that timed out (kept bytes, `timed_out` set): not cut either.
#[test]
fn auto_flushed_write_after_a_flush_timeout_dropped_part_way_is_never_cut() {
    let mock = MockWriter::default();
    let mut output = ByteWriteChannel::new(mock.clone(), true);
    mock.on_write([Act::Stall]);
    assert!(poll1(output.write_u64(7)).is_none());
    mock.on_write([Act::Fail(timeout())]);
    assert!(matches!(block(output.flush()), Err(Error::Timeout)));
    assert!(!output.is_closed_for_write());
    let b = pattern(0, 8192);
    mock.on_write([Act::Take(8), Act::Take(10), Act::Stall]);
    assert!(poll1(output.write_fully(&b)).is_none());
    block(output.flush_and_close()).unwrap();
    let mut whole = 7u64.to_be_bytes().to_vec();
    whole.extend_from_slice(&b);
    assert!(mock.accepted() == whole);
}

/// Non-auto-flush: after a direct (9 KiB) write cut and dropped, the next writes of up to 8 KiB
/// are buffered, so nothing of them is lost, but the close must still fail with `BrokenPipe`.
#[test]
fn a_close_after_a_cut_larger_write_still_fails() {
    let mock = MockWriter::default();
    let mut output = ByteWriteChannel::new(mock.clone(), false);
    block(output.write_fully(&pattern(0, 8000))).unwrap();
    mock.on_write([Act::Take(8000), Act::Take(10), Act::Stall]);
    assert!(poll1(output.write_fully(&pattern(8000, 9000))).is_none());
    block(output.write_fully(&pattern(0, 5000))).unwrap();
    block(output.write_fully(&pattern(0, 5000))).unwrap();
    let e = block(output.flush_and_close()).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e:?}");
    assert_eq!(mock.shutdowns(), 0);
}

/// Leaves `bytes` (8 or more) in the buffer of an auto-flushed channel: a typed write (always
/// buffered) then a write that fits, each dropped while its auto-flush waits. (A write made
/// with nothing buffered goes to the transport directly, and leaves nothing buffered.)
fn fill_auto(output: &mut ByteWriteChannel, mock: &MockWriter, bytes: &[u8]) {
    mock.on_write([Act::Stall]);
    let first = u64::from_be_bytes(bytes[..8].try_into().unwrap());
    assert!(poll1(output.write_u64(first)).is_none());
    mock.on_write([Act::Stall]);
    assert!(poll1(output.write_fully(&bytes[8..])).is_none());
    assert!(mock.accepted().is_empty());
}

// ---------------------------------------------------------------------------------------------
// 2. Timeouts.
// ---------------------------------------------------------------------------------------------

/// A write that does not fit times out while the buffer is written out: no effect; the retry
/// sends its bytes once.
#[test]
fn a_write_that_times_out_while_the_buffer_is_written_out_has_no_effect() {
    for auto_flush in [false, true] {
        let mock = MockWriter::default();
        let mut output = ByteWriteChannel::new(mock.clone(), auto_flush);
        if auto_flush {
            fill_auto(&mut output, &mock, &pattern(0, 8000));
        } else {
            block(output.write_fully(&pattern(0, 8000))).unwrap();
        }
        let b = pattern(8000, 5000);
        mock.on_write([Act::Take(100), Act::Fail(timeout())]);
        let r = block(output.write_fully(&b));
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        assert!(!output.is_closed_for_write(), "auto_flush {auto_flush}");
        assert_eq!(
            output.total_bytes_written(),
            8000,
            "auto_flush {auto_flush}"
        );
        block(output.write_fully(&b)).unwrap();
        block(output.flush_and_close()).unwrap();
        assert!(
            mock.accepted() == pattern(0, 13000),
            "auto_flush {auto_flush}"
        );
    }
}

/// An exactly-8 KiB write buffered after the buffer was written out, then timing out while the
/// full buffer (its own bytes) is written out: before any of its bytes left, no effect (retry
/// sends once); after some left, failed for good (`is_closed_for_write`, `Timeout` at once).
#[test]
fn an_8_kib_write_that_times_out_after_it_was_buffered() {
    for auto_flush in [false, true] {
        for took in [0usize, 10] {
            let at = format!("auto_flush {auto_flush}, took {took}");
            let mock = MockWriter::default();
            let mut output = ByteWriteChannel::new(mock.clone(), auto_flush);
            if auto_flush {
                fill_auto(&mut output, &mock, &pattern(0, 100));
            } else {
                block(output.write_fully(&pattern(0, 100))).unwrap();
            }
            let b = pattern(100, BUFFER);
            let mut acts = vec![Act::Take(100)];
            if took > 0 {
                acts.push(Act::Take(took));
            }
            acts.push(Act::Fail(timeout()));
            mock.on_write(acts);
            let r = block(output.write_fully(&b));
            assert!(matches!(r, Err(Error::Timeout)), "{r:?} {at}");
            if took == 0 {
                assert!(!output.is_closed_for_write(), "{at}");
                assert_eq!(output.total_bytes_written(), 100, "{at}");
                block(output.write_fully(&b)).unwrap();
                block(output.flush_and_close()).unwrap();
                assert!(mock.accepted() == pattern(0, 100 + BUFFER), "{at}");
            } else {
                assert!(output.is_closed_for_write(), "{at}");
                let again = block(output.write_u8(1));
                assert!(matches!(again, Err(Error::Timeout)), "{again:?} {at}");
                assert_eq!(mock.accepted().len(), 100 + took, "{at}");
            }
        }
    }
}

// 3. Memory: see `writes_up_to_the_buffer_memory.rs` (a binary of its own: a counting allocator).

// ---------------------------------------------------------------------------------------------
// 4. Flush coalescing: auto-flushed writes held while the backlog is pending.
// ---------------------------------------------------------------------------------------------

/// While the reader has input pending, auto-flushed writes of every size up to 8 KiB (and a
/// larger one) are held in the backlog: nothing reaches the transport, no flush.
#[tokio::test(flavor = "current_thread")]
async fn writes_held_while_the_backlog_is_pending_reach_no_transport() {
    let backlog = Backlog::new();
    let mut input = ByteReadChannel::new(&b"one\ntwo\n"[..]);
    input.share_backlog(backlog.clone());
    let mock = MockWriter::default();
    let mut output = ByteWriteChannel::new(mock.clone(), true);
    output.hold_while(backlog.clone());
    input.read_line(80, LineEnding::Default).await.unwrap();
    assert!(backlog.is_pending());
    let mut expected = Vec::new();
    output.write_u32(0x0a0b_0c0d).await.unwrap();
    expected.extend_from_slice(&[10, 11, 12, 13]);
    for (i, n) in [100usize, 5000, 5000, 8192, 3, 9000]
        .into_iter()
        .enumerate()
    {
        let b = pattern(i * 7, n);
        output.write_fully(&b).await.unwrap();
        expected.extend_from_slice(&b);
    }
    let log = mock.log();
    assert_eq!(
        (log.accepted.len(), log.flushes),
        (0, 0),
        "sent while pending"
    );
    drop(log);
    backlog.with_held(|held| assert!(held[..] == expected[..], "held {} bytes", held.len()));
}

/// Auto-flush, a pending backlog, and a buffer left holding 6,000 bytes by a write dropped while
/// its auto-flush waited (the hold was refused: over the backlog's limit): the next write that
/// does not fit writes the buffer out, then is held (one transport write, no flush), not sent.
#[tokio::test(flavor = "current_thread")]
async fn a_write_that_does_not_fit_after_a_dropped_one_is_held_after_the_buffer() {
    let backlog = Backlog::new();
    let mut input = ByteReadChannel::new(&b"one\ntwo\n"[..]);
    input.share_backlog(backlog.clone());
    let mock = MockWriter::default();
    let mut output = ByteWriteChannel::new(mock.clone(), true);
    output.hold_while(backlog.clone());
    input.read_line(80, LineEnding::Default).await.unwrap();
    // Fill the backlog to its 64 KiB limit.
    let mut held = 0;
    while held + 8000 <= 64 * 1024 {
        output.write_fully(&pattern(0, 8000)).await.unwrap();
        held += 8000;
    }
    let rest = 64 * 1024 - 4 - held;
    output.write_fully(&pattern(0, rest)).await.unwrap();
    held += rest;
    assert_eq!(mock.accepted().len(), 0);
    // Over the limit: buffered, its auto-flush waits, dropped.
    fill_auto(&mut output, &mock, &pattern(0, 6000));
    // The transport sends (here: drops) what the backlog held.
    backlog.with_held(|h| {
        assert_eq!(h.len(), held);
        h.clear();
    });
    let b = pattern(1, 5000);
    output.write_fully(&b).await.unwrap();
    let log = mock.log();
    assert_eq!(log.accepted.len(), 6000, "the buffer out, the write held");
    assert_eq!(log.write_calls, 1);
    assert_eq!(log.flushes, 0, "a flush while pending");
    drop(log);
    backlog.with_held(|h| assert!(h[..] == b[..], "held {} bytes", h.len()));
}

// ---------------------------------------------------------------------------------------------
// 5. Randomized differential test (`support/writes.rs`, tightened).
// ---------------------------------------------------------------------------------------------

fn len() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => 0usize..200,
        2 => 0usize..BUFFER + 1,
        2 => (BUFFER - 200)..(BUFFER + 200),
        1 => 0usize..20_480,
    ]
}

fn op() -> impl Strategy<Value = writes::Op> {
    use writes::Op;
    prop_oneof![
        8 => len().prop_map(Op::Fully),
        2 => any::<u8>().prop_map(Op::Fill),
        1 => (0usize..300).prop_map(Op::Str),
        1 => len().prop_map(Op::Write),
        3 => any::<u8>().prop_map(Op::Typed),
        1 => (0usize..300, any::<bool>()).prop_map(|(n, ld)| Op::Frame(n, ld)),
        2 => Just(Op::Flush),
        1 => Just(Op::FlushAndClose),
    ]
}

fn step() -> impl Strategy<Value = writes::Step> {
    (
        op(),
        prop_oneof![2 => Just(None), 3 => Just(Some(0)), 1 => (1u8..4).prop_map(Some)],
    )
        .prop_map(|(op, polls)| writes::Step { op, polls })
}

/// Script bytes: takes (partial and whole), pauses, `Error::Timeout`, rarely another error.
fn act() -> impl Strategy<Value = u8> {
    prop_oneof![
        6 => 0u8..160,
        4 => 160u8..240,
        2 => Just(242u8),
        1 => 240u8..=255,
    ]
}

fn case() -> impl Strategy<Value = writes::Case> {
    (
        any::<bool>(),
        prop::collection::vec(act(), 0..400),
        prop::collection::vec(step(), 1..48),
    )
        .prop_map(|(auto_flush, script, steps)| writes::Case {
            auto_flush,
            script,
            steps,
        })
}

/// Thousands of random cases (`WRITES_CASES`, default 1,000).
#[test]
fn random_writes_follow_the_tightened_model() {
    let cases = std::env::var("WRITES_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    // Quiet while cases shrink (each failing try panics); the minimal case is reported below.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = runner.run(&case(), |case| {
        writes::run(&case, &writes::NoMeter);
        Ok(())
    });
    std::panic::set_hook(hook);
    if let Err(e) = result {
        panic!("{e}");
    }
}
