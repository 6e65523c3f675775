//! Per-operation work of `copy_to` and `write_frame` that tokio's own idioms
//! (`tokio::io::copy`, `FramedWrite`) do not do, counted deterministically: flushes of the
//! destination, allocations.
//!
//! This test binary installs a counting global allocator (`stats_alloc`, as tests/alloc.rs).
//! Its counters are process-wide: every test here takes `SERIAL` so that no other test of this
//! binary allocates while one counts (the harness's own thread still may: see the
//! `write_frame` test).

mod support;

use std::alloc::System;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use bytes::BytesMut;
use net_io::{ByteChannel, ByteReadChannel, ByteWriteChannel};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use support::{Act, ChunkedReader, MockWriter, Step, poll_once};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::codec::Encoder;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// One test at a time in this binary (the allocation counters are process-wide).
static SERIAL: Mutex<()> = Mutex::new(());

/// Allocations plus reallocations so far.
fn allocation_count() -> usize {
    let s = GLOBAL.stats();
    s.allocations + s.reallocations
}

/// Runs `test` on a current-thread runtime while no other test of this binary runs.
fn serially<T>(test: impl std::future::Future<Output = T>) -> T {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(test)
}

/// A source that is always ready: `left` bytes, at most `chunk` per read (a body already
/// received, a file).
struct Ready {
    left: usize,
    chunk: usize,
}

impl AsyncRead for Ready {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.chunk.min(self.left).min(buf.remaining());
        buf.put_slice(&vec![7; n]);
        self.left -= n;
        Poll::Ready(Ok(()))
    }
}

/// SPEC of `copy_to`: "`dst` is flushed whenever this channel has nothing buffered and must
/// wait for more, and at the end". A copy from a source that never makes it wait flushes once,
/// at the end, as `tokio::io::copy` does (it flushes only when its read is pending). Before,
/// `copy_to` flushed before every read from the source, whether that read would wait or not:
/// 17 flushes for 1 MiB read 64 KiB at a time, 131 when the source hands out 8 KiB per read
/// (a TLS stream's flush, or a buffering layer's, does work each time).
#[test]
fn copy_to_flushes_only_when_the_source_makes_it_wait() {
    serially(copy_to_flushes_only_when_the_source_makes_it_wait_body());
}

async fn copy_to_flushes_only_when_the_source_makes_it_wait_body() {
    const SIZE: usize = 1 << 20;
    for chunk in [8 * 1024, 64 * 1024] {
        let mock = MockWriter::default();
        let mut dst = ByteWriteChannel::new(mock.clone(), false);
        let mut src = ByteReadChannel::new(Ready { left: SIZE, chunk });
        assert_eq!(src.copy_to(&mut dst, u64::MAX).await.unwrap(), SIZE as u64);
        assert_eq!(mock.log().accepted.len(), SIZE);
        let flushes = mock.log().flushes;
        assert!(
            flushes <= 2,
            "a copy of 1 MiB from a source that never waits ({chunk} bytes per read) flushed \
             the destination {flushes} times (tokio::io::copy: once)"
        );
    }

    // It still flushes before it waits: an interactive echo must not stall behind a buffer.
    let (mut feeder, mut source) = ByteChannel::new(true);
    feeder.write_fully(b"abc").await.unwrap();
    let mock = MockWriter::default();
    let mut dst = ByteWriteChannel::new(mock.clone(), false);
    assert!(
        poll_once(source.copy_to(&mut dst, u64::MAX))
            .await
            .is_none()
    );
    assert_eq!(mock.accepted(), b"abc");
    assert!(mock.log().flushes >= 1, "not flushed before waiting");

    // And what was copied before the source failed was flushed.
    let mut source = ByteReadChannel::new(ChunkedReader::new([
        Step::Data(b"abc".to_vec()),
        Step::Fail(io::ErrorKind::ConnectionReset.into()),
    ]));
    let mock = MockWriter::default();
    let mut dst = ByteWriteChannel::new(mock.clone(), false);
    assert!(source.copy_to(&mut dst, u64::MAX).await.is_err());
    assert_eq!(mock.accepted(), b"abc");
    assert!(
        mock.log().flushes >= 1,
        "not flushed before the source's failure"
    );
}

/// Appends its item, as tokio-util's encoders do.
struct Raw;

impl Encoder<&[u8]> for Raw {
    type Error = io::Error;

    fn encode(&mut self, item: &[u8], dst: &mut BytesMut) -> io::Result<()> {
        dst.extend_from_slice(item);
        Ok(())
    }
}

/// `write_frame`'s doc: a frame that outgrows the room after the buffered bytes "cannot take
/// the free space before them (where bytes written out were): it would be encoded into a new
/// allocation and copied back, once per buffer written out. That space is taken back first,
/// without allocating: a move of the buffered bytes to the front, only when at least as many
/// were written out since." The call that was to take it back, `try_reclaim(WRITE_BUFFER)`,
/// asked for 8 KiB of room past the bytes buffered in an 8 KiB allocation, which it can never
/// give: it never moved anything (and cost a call, about 35 instructions, at every frame
/// written after buffered bytes, the usual case of a loop of `write_frame`).
#[test]
fn write_frame_takes_back_the_room_before_bytes_left_by_a_partial_write_out() {
    // The counters are process-wide, and the test harness's own thread may allocate as the
    // other test ends (its result, its output): the least of three runs is the call's own.
    let least = (0..3)
        .map(|_| serially(write_frame_takes_back_the_room_body()))
        .min();
    assert_eq!(
        least,
        Some(0),
        "a frame that fits the buffer's allocation, once what was written out is taken back, \
         was encoded into an allocation of its own"
    );
}

/// The scenario, checked for what it delivers; returns the allocations of the measured call.
async fn write_frame_takes_back_the_room_body() -> usize {
    let mock = MockWriter::default();
    let mut out = ByteWriteChannel::new(mock.clone(), false);
    // A frame after buffered bytes (the buffer then shares its allocation with frames), sent.
    out.write_fully(b"x").await.unwrap();
    out.write_frame(&mut Raw, &[1; 10][..]).await.unwrap();
    out.flush().await.unwrap();
    // 6,000 bytes buffered; a flush whose write the transport takes 5,000 of, then stalls
    // (given up: a `select!` whose other branch won). 1,000 bytes are left 5,000 bytes into
    // the 8 KiB allocation.
    out.write_fully(&[2; 6000]).await.unwrap();
    mock.on_write([Act::Take(5000), Act::Stall]);
    assert!(poll_once(out.flush()).await.is_none());
    // A 4,000-byte frame fits the allocation once the 1,000 bytes move to its front.
    let before = allocation_count();
    out.write_frame(&mut Raw, &[3; 4000][..]).await.unwrap();
    let allocations = allocation_count() - before;
    out.flush().await.unwrap();
    let mut expected = b"x".to_vec();
    expected.extend_from_slice(&[1; 10]);
    expected.extend_from_slice(&[2; 6000]);
    expected.extend_from_slice(&[3; 4000]);
    assert_eq!(mock.accepted(), expected);
    allocations
}
