//! A large frame's allocation is given back once the frame has left, also when its last bytes
//! left through the flush-coalescing backlog (held back with an answer, then sent by the
//! reader's side).
//!
//! This test binary installs a counting global allocator (`stats_alloc`, as `tests/alloc.rs`
//! does); the counters are process-wide, so the file holds a single `#[test]`.

mod support;

use std::alloc::System;

use net_io::{Backlog, ByteReadChannel, ByteWriteChannel, LineEnding};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use support::{Act, MockWriter, poll_once};
use tokio_util::codec::BytesCodec;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not freed so far.
fn live() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

const LARGE: usize = 4 << 20;

/// A 4 MiB frame whose last 100 bytes the transport does not take at once; an answer written
/// while a request is pending is held back with them, and they leave with it. The frame's
/// allocation goes then, not when the channel is dropped. (Before, the channel kept it until
/// then: writes that found the buffer empty never reached the code that gives it back.)
#[test]
fn a_large_frame_whose_rest_was_held_back_is_given_back_once_it_left() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let w = MockWriter::default();
        w.on_write([Act::Take(LARGE - 100), Act::Stall]);
        let mut output = ByteWriteChannel::new(w.clone(), true);
        let backlog = Backlog::new();
        output.hold_while(backlog.clone());
        let frame = bytes::Bytes::from(vec![1u8; LARGE]);
        assert!(
            poll_once(output.write_frame(&mut BytesCodec::new(), frame))
                .await
                .is_none()
        );
        let mut input = ByteReadChannel::new(&b"one\ntwo\n"[..]);
        input.share_backlog(backlog.clone());
        input.read_line(80, LineEnding::Default).await.unwrap();
        assert!(backlog.is_pending());
        // Held, with the frame's last 100 bytes: the reader's side sends them.
        output.write_u8(7).await.unwrap();
        assert_eq!(backlog.with_held(|h| std::mem::take(h).len()), 101);
        input.read_line(80, LineEnding::Default).await.unwrap();
        for _ in 0..100 {
            output.write_fully(b"answer\n").await.unwrap();
        }
        let kept = live();
        drop(output);
        let freed = kept - live();
        assert!(
            freed <= 64 * 1024,
            "the writer still held {freed} bytes after the large frame left"
        );
    });
}
