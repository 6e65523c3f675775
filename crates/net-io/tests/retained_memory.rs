//! Channels go back to their usual buffers once a large item has passed: one large frame
//! written, or one large message or line read, does not make every connection that ever had
//! one hold that much memory for the rest of its life.
//!
//! This test binary installs a counting global allocator (`stats_alloc`, as `tests/alloc.rs`
//! does); the counters are process-wide, so the file holds a single `#[test]` that runs every
//! scenario in turn.

use std::alloc::System;

use bytes::Buf;
use net_io::{Backlog, ByteChannel, ByteReadChannel, LineEnding};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tokio_util::codec::{BytesCodec, LengthDelimitedCodec};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not freed so far. (`stats_alloc` counts what a reallocation adds in
/// `bytes_allocated` and what it takes away in `bytes_deallocated`; `bytes_reallocated` is the
/// same change again, not to be added.)
fn live() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

/// The most a channel may hold once the large item has passed: its usual buffer, with room to
/// spare (for a read channel, this includes the 64 KiB an in-memory pipe holds, which dropping
/// its reader frees too).
const USUAL: isize = 128 * 1024;

/// The size of the large item.
const LARGE: usize = 4 << 20;

#[test]
fn large_items_do_not_stay_allocated() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        a_large_frame_written(false).await;
        a_large_frame_written(true).await;
        for before in [0, 100] {
            a_large_frame_that_fails_to_encode(before).await;
        }
        for read in 0..4 {
            a_large_item_read(read).await;
        }
        for read in 0..4 {
            a_large_item_read_then_part_of_the_next(read).await;
        }
        for read in 0..3 {
            a_small_item_kept_after_a_large_line(read).await;
        }
        for (before, size) in [(0, 300 << 10), (0, LARGE), (200 << 10, 300 << 10)] {
            a_large_frame_decoded(before, size).await;
        }
        a_burst_of_held_back_answers_sent().await;
        a_body_copied_then_the_reader_waits().await;
        copies_of_mid_sized_items_in_a_loop_do_not_allocate_per_call().await;
        small_frames_do_not_allocate_per_buffer_written().await;
        for auto_flush in [false, true] {
            for per_call in [1000, 3000] {
                async_writes_to_a_slow_peer_keep_the_buffer_at_8_kib(auto_flush, per_call).await;
            }
        }
        for typed in [false, true] {
            a_small_write_after_a_write_dropped_while_it_drained_keeps_the_buffer_at_8_kib(typed)
                .await;
        }
    });
}

/// The most a backlog keeps allocated between bursts of held-back answers.
const HELD_KEEP: isize = 16 * 1024;

/// A burst of answers held back in a backlog (as flush coalescing holds them: 60 of 1,000
/// bytes), then all sent (the transport advances past what it sent): the backlog does not keep
/// the burst's allocation, so an idle connection holds no more than [`HELD_KEEP`] for it. The
/// bytes sent were advanced past, which leaves the buffer's `capacity()` short of its
/// allocation: before the fix a 64 KiB allocation stayed because what was left of it after
/// the sent bytes was under the limit.
async fn a_burst_of_held_back_answers_sent() {
    let backlog = Backlog::new();
    let mut input = ByteReadChannel::new(&b"a\nb\n"[..]);
    input.share_backlog(backlog.clone());
    let line = input.read_line(16, LineEnding::Default).await.unwrap();
    assert_eq!(line.as_deref(), Some("a"));
    assert!(backlog.is_pending());

    let before = live();
    for _ in 0..60 {
        assert!(backlog.hold(&[b'x'; 1000], 64 * 1024));
    }
    let sent = backlog.with_held(|held| {
        let n = held.len();
        held.advance(n);
        n
    });
    assert_eq!(sent, 60_000);
    let kept = live() - before;
    assert!(
        kept <= HELD_KEEP,
        "the backlog still held {kept} bytes after its burst left"
    );
    drop((input, backlog));
}

/// `write_frame` of a frame larger than the write buffer, then writing goes on.
async fn a_large_frame_written(auto_flush: bool) {
    let (mut output, mut input) = ByteChannel::new(auto_flush);
    let drain = tokio::spawn(async move { input.discard(u64::MAX).await });
    let frame = bytes::Bytes::from(vec![1u8; LARGE]);
    output
        .write_frame(&mut BytesCodec::new(), frame)
        .await
        .unwrap();
    output.flush().await.unwrap();
    output.write_u32(7).await.unwrap();
    output.flush().await.unwrap();

    // What dropping the writer frees is what it held.
    let held = live();
    drop(output);
    let freed = held - live();
    assert!(
        freed <= USUAL,
        "auto_flush={auto_flush}: the writer still held {freed} bytes"
    );
    assert_eq!(drain.await.unwrap().unwrap(), LARGE as u64 + 4);
}

/// An encoder that puts most of a large frame into the buffer, then fails.
struct FailsLate;

impl tokio_util::codec::Encoder<usize> for FailsLate {
    type Error = std::io::Error;

    fn encode(&mut self, n: usize, dst: &mut bytes::BytesMut) -> std::io::Result<()> {
        dst.extend_from_slice(&vec![2u8; n]);
        Err(std::io::Error::other("fails late"))
    }
}

/// `write_frame` whose encoder fails after putting a large frame into the buffer (after
/// `before` bytes were buffered), then plain writes go on: the channel does not keep the
/// failed frame's allocation.
async fn a_large_frame_that_fails_to_encode(before: usize) {
    let (mut output, mut input) = ByteChannel::new(false);
    let drain = tokio::spawn(async move { input.read_remaining(1 << 20).await });
    output.write_fully(&vec![1u8; before]).await.unwrap();
    output.write_frame(&mut FailsLate, LARGE).await.unwrap_err();
    output.write_u32(7).await.unwrap();
    output.flush().await.unwrap();

    let held = live();
    drop(output);
    let freed = held - live();
    assert!(
        freed <= USUAL,
        "before={before}: the writer still held {freed} bytes after a failed frame"
    );
    let all = drain.await.unwrap().unwrap();
    assert_eq!(all.len(), before + 4);
    assert!(all[..before].iter().all(|&b| b == 1));
}

/// A large item read in one of four ways, then reading goes on and waits.
async fn a_large_item_read(read: usize) {
    let (mut output, mut input) = ByteChannel::new(false);
    let feed = tokio::spawn(async move {
        output.write_fully(&vec![b'a'; LARGE]).await.unwrap();
        output.write_fully(b"\nxyz\n").await.unwrap();
        output.flush().await.unwrap();
        output
    });
    match read {
        0 => drop(input.read_bytes(LARGE).await.unwrap()),
        1 => {
            let line = input.read_line(LARGE, LineEnding::Default).await.unwrap();
            assert_eq!(line.map(|l| l.len()), Some(LARGE));
        }
        2 => {
            assert!(input.await_content(LARGE).await.unwrap());
            input.discard_exact(LARGE as u64).await.unwrap();
        }
        _ => drop(input.read_remaining(LARGE).await.unwrap()),
    }
    let _output = feed.await.unwrap();
    if read != 1 {
        assert_eq!(input.read_u8().await.unwrap(), b'\n');
    }
    assert_eq!(
        input
            .read_line(8, LineEnding::Default)
            .await
            .unwrap()
            .as_deref(),
        Some("xyz")
    );
    // The reader waits for more input now: an idle connection.
    assert!(
        futures_poll_once(input.read_u8()).await.is_none(),
        "nothing more was sent"
    );

    let held = live();
    drop(input);
    let freed = held - live();
    assert!(
        freed <= USUAL,
        "read {read}: the reader still held {freed} bytes"
    );
}

/// A large item read in one of four ways, and only the first bytes of the next item follow:
/// the reader waits for the rest of it, holding those few bytes, not the large item's buffer.
async fn a_large_item_read_then_part_of_the_next(read: usize) {
    let (mut output, mut input) = ByteChannel::new(false);
    let feed = tokio::spawn(async move {
        output.write_fully(&vec![b'a'; LARGE]).await.unwrap();
        output.write_fully(b"\nxy").await.unwrap();
        output.flush().await.unwrap();
        output
    });
    match read {
        0 => drop(input.read_bytes(LARGE + 1).await.unwrap()),
        1 => {
            let line = input.read_line(LARGE, LineEnding::Default).await.unwrap();
            assert_eq!(line.map(|l| l.len()), Some(LARGE));
        }
        2 => {
            assert!(input.await_content(LARGE + 1).await.unwrap());
            input.discard_exact(LARGE as u64 + 1).await.unwrap();
        }
        _ => drop(input.read_remaining(LARGE + 1).await.unwrap()),
    }
    let _output = feed.await.unwrap();
    // The rest of the next line has not come: the reader waits, with "xy" buffered.
    assert!(
        futures_poll_once(input.read_line(8, LineEnding::Default))
            .await
            .is_none(),
        "the next line is not complete"
    );
    assert_eq!(input.available_for_read(), 2);

    let held = live();
    drop(input);
    let freed = held - live();
    assert!(
        freed <= USUAL,
        "read {read}, then part of the next item: the reader still held {freed} bytes"
    );
}

/// A large line, then a small item (large enough to be handed out without copying) read in one
/// of three ways and kept by the application after the channel is gone: it keeps its own bytes,
/// not the large line's buffer. Before the fix, a 1 KiB item kept the 4 MiB buffer.
async fn a_small_item_kept_after_a_large_line(read: usize) {
    let (mut output, mut input) = ByteChannel::new(false);
    let feed = tokio::spawn(async move {
        let mut all = vec![b'a'; LARGE];
        all.push(b'\n');
        all.extend_from_slice(&[7; 1024]);
        all.push(b'\n');
        output.write_fully(&all).await.unwrap();
        output.flush().await.unwrap();
        output
    });
    let line = input.read_line(LARGE, LineEnding::Default).await.unwrap();
    assert_eq!(line.map(|l| l.len()), Some(LARGE));
    let item = match read {
        0 => input.read_bytes(1024).await.unwrap(),
        1 => input.read_until(b"\n", 2048).await.unwrap().unwrap(),
        _ => input.read_remaining(1024).await.unwrap(),
    };
    assert_eq!(&item[..], &[7; 1024][..], "read {read}");
    drop(input);
    drop(feed.await.unwrap());

    let held = live();
    drop(item);
    let freed = held - live();
    assert!(
        freed <= USUAL,
        "read {read}: a kept 1 KiB item held {freed} bytes"
    );
}

/// After `before` bytes read (a buffer grown, but not past what is given back), a large frame
/// read with a decoder that makes room for the whole frame itself (tokio-util's
/// `LengthDelimitedCodec`), then a small one, then reading waits.
async fn a_large_frame_decoded(before: usize, size: usize) {
    let (mut output, mut input) = ByteChannel::new(false);
    let feed = tokio::spawn(async move {
        output.write_fully(&vec![b'b'; before]).await.unwrap();
        output.write_u32(size as u32).await.unwrap();
        output.write_fully(&vec![b'a'; size]).await.unwrap();
        output.write_u32(3).await.unwrap();
        output.write_fully(b"xyz").await.unwrap();
        output.flush().await.unwrap();
        output
    });
    if before > 0 {
        drop(input.read_bytes(before).await.unwrap());
    }
    let mut codec = LengthDelimitedCodec::new();
    let frame = input.read_frame(&mut codec).await.unwrap().unwrap();
    assert_eq!(frame.len(), size);
    drop(frame);
    let _output = feed.await.unwrap();
    let small = input.read_frame(&mut codec).await.unwrap().unwrap();
    assert_eq!(&small[..], b"xyz");
    drop(small);
    assert!(
        futures_poll_once(input.read_frame(&mut codec))
            .await
            .is_none(),
        "nothing more was sent"
    );

    let held = live();
    drop(input);
    let freed = held - live();
    assert!(
        freed <= USUAL,
        "a decoded frame of {size} bytes after {before}: the reader still held {freed} bytes"
    );
}

/// A 1 MiB body copied with `copy_to` (as a keep-alive server copies an upload), then the
/// reader waits for the next request: it holds what a reader that skipped the same body with
/// `discard_exact` holds, its usual buffer. Before the fix, the copy's 64 KiB reads left their
/// buffer to the connection for the rest of its life: 57,344 bytes more per idle connection
/// (found by building HTTP/1.1 on the channels).
async fn a_body_copied_then_the_reader_waits() {
    const BODY: usize = 1 << 20;
    let mut held = [0; 2];
    for (copy, held) in [false, true].into_iter().zip(&mut held) {
        let (mut output, mut input) = ByteChannel::new(false);
        let feed = tokio::spawn(async move {
            output.write_fully(b"POST /up\n").await.unwrap();
            output.write_fully(&vec![b'a'; BODY]).await.unwrap();
            output.flush().await.unwrap();
            output
        });
        let request = input.read_line(100, LineEnding::Default).await.unwrap();
        assert_eq!(request.as_deref(), Some("POST /up"));
        if copy {
            let mut sink = net_io::ByteWriteChannel::new(tokio::io::sink(), false);
            let copied = input.copy_to(&mut sink, BODY as u64).await.unwrap();
            assert_eq!(copied, BODY as u64);
        } else {
            input.discard_exact(BODY as u64).await.unwrap();
        }
        let _output = feed.await.unwrap();
        // The reader waits for the next request: an idle keep-alive connection.
        assert!(
            futures_poll_once(input.read_line(100, LineEnding::Default))
                .await
                .is_none(),
            "nothing more was sent"
        );
        let before = live();
        drop(input);
        *held = before - live();
    }
    let [skipped, copied] = held;
    assert!(
        copied - skipped <= 4096,
        "after copy_to the idle reader held {copied} bytes, after discard_exact {skipped}"
    );
}

/// Items of 20,000 bytes, each a length then a body copied with `copy_to` (a relay of framed
/// messages): once the first has made room, the copies do not allocate per call (7
/// allocations for 100 copies here, as the buffer moves its bytes now and then). The first
/// fix of the retained buffer above gave the room back after every copy, so each call
/// allocated it again: 169 allocations for 100 copies (found by the review).
async fn copies_of_mid_sized_items_in_a_loop_do_not_allocate_per_call() {
    const ITEM: usize = 20_000;
    const ITEMS: usize = 104;
    let mut input_bytes = Vec::new();
    for i in 0..ITEMS {
        input_bytes.extend_from_slice(&(ITEM as u32).to_be_bytes());
        input_bytes.extend(std::iter::repeat_n(i as u8, ITEM));
    }
    let mut input = ByteReadChannel::new(std::io::Cursor::new(input_bytes));
    let mut sink = net_io::ByteWriteChannel::new(tokio::io::sink(), false);
    let mut allocations = 0;
    for i in 0..ITEMS {
        let before = GLOBAL.stats();
        let n = input.read_u32().await.unwrap();
        let copied = input.copy_to(&mut sink, u64::from(n)).await.unwrap();
        assert_eq!(copied, ITEM as u64);
        let after = GLOBAL.stats();
        if i >= 4 {
            allocations += (after.allocations + after.reallocations)
                - (before.allocations + before.reallocations);
        }
    }
    assert!(
        allocations <= 16,
        "{allocations} allocations for {} copies",
        ITEMS - 4
    );
}

/// Small frames written with `write_frame` (no auto flush) after bytes already buffered: the
/// count of allocations does not grow with the bytes written. The frame is split off the buffer
/// (the halves share its allocation), and one that met the end of that allocation was encoded
/// into a new 8 KiB allocation and copied back, once per buffer written out: 132 allocations
/// for 1 MiB of 100-byte lines (tokio's `FramedWrite`: 3 whatever the size). Found by the
/// write-side complexity audit.
async fn small_frames_do_not_allocate_per_buffer_written() {
    for frame in [10usize, 100, 1000] {
        let mut output = net_io::ByteWriteChannel::new(tokio::io::sink(), false);
        let mut codec = tokio_util::codec::LinesCodec::new();
        let line = "y".repeat(frame - 1);
        let before = allocations();
        for _ in 0..(1 << 20) / frame {
            output.write_frame(&mut codec, line.as_str()).await.unwrap();
        }
        output.flush().await.unwrap();
        let made = allocations() - before;
        assert!(
            made <= 16,
            "1 MiB of {frame}-byte frames: {made} allocations"
        );
    }
}

/// A transport that takes at most `per_call` bytes a call, and is not ready every other call
/// (a peer that reads slowly).
struct Slow {
    per_call: usize,
    ready: bool,
}

impl tokio::io::AsyncWrite for Slow {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        src: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.ready = !self.ready;
        if !self.ready {
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        std::task::Poll::Ready(Ok(src.len().min(self.per_call)))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Writes through `AsyncWrite` of 100 bytes each to a peer that takes part of the buffer at a
/// time: the channel holds its 8 KiB buffer, no more (guarantees.md: a writer held back by its
/// peer holds the write channel's buffer). `poll_write` waited only while the buffer held a
/// full 8 KiB; once the transport had taken part of it, the next call added bytes after the
/// rest, and the allocation, whose free space was then before its bytes, grew to 16 KiB. Found
/// by the write-side complexity audit.
async fn async_writes_to_a_slow_peer_keep_the_buffer_at_8_kib(auto_flush: bool, per_call: usize) {
    use tokio::io::AsyncWriteExt;
    let slow = Slow {
        per_call,
        ready: false,
    };
    let mut output = net_io::ByteWriteChannel::new(slow, auto_flush);
    let before = live();
    for _ in 0..655 {
        output.write_all(&[3u8; 100]).await.unwrap();
    }
    let held = live() - before;
    output.flush().await.unwrap();
    assert!(
        held <= 9 * 1024,
        "auto_flush={auto_flush}, {per_call} bytes a call: the channel held {held} bytes"
    );
}

/// A `write_fully` too big for the room left, dropped while it wrote the buffer out to a slow
/// peer (a deadline of the caller's), leaves the buffer partly written, the end of its
/// allocation used; a small write after it does not double the allocation (it kept 16 KiB,
/// where guarantees.md says a writer held back by its peer holds the 8 KiB buffer; found by
/// the review of the write-side complexity fixes).
/// The same for a typed write (`typed`), which adds to the buffer by its own path.
async fn a_small_write_after_a_write_dropped_while_it_drained_keeps_the_buffer_at_8_kib(
    typed: bool,
) {
    let slow = Slow {
        per_call: 1000,
        ready: false,
    };
    let mut output = net_io::ByteWriteChannel::new(slow, false);
    output.write_fully(&[1u8; 8191]).await.unwrap();
    // Too big for the room left: the buffer is written out first; dropped after one poll
    // (the transport took 1,000 bytes, then was not ready).
    assert!(
        futures_poll_once(output.write_fully(&[2u8; 1000]))
            .await
            .is_none()
    );
    let before = live();
    if typed {
        output.write_u64(3).await.unwrap();
    } else {
        output.write_fully(&[3u8; 100]).await.unwrap();
    }
    let grown = live() - before;
    output.flush().await.unwrap();
    assert!(
        grown <= 1024,
        "typed={typed}: a small write after the dropped one grew the heap by {grown} bytes"
    );
}

/// Allocations and reallocations so far.
fn allocations() -> usize {
    let s = GLOBAL.stats();
    s.allocations + s.reallocations
}

/// Polls `fut` once; `Some` if it completed.
async fn futures_poll_once<F: std::future::Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
        std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}
