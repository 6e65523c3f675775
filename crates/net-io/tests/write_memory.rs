//! A write channel's buffer goes back to its usual size once a frame larger than it has left:
//! one large `write_frame` does not make every connection that ever sent one hold that much
//! memory for the rest of its life.
//!
//! This test binary installs a counting global allocator (`stats_alloc`, as `tests/alloc.rs`
//! does); the counters are process-wide, so the file holds a single `#[test]`.

use std::alloc::System;

use net_io::ByteChannel;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tokio_util::codec::BytesCodec;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not freed so far.
fn live() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize + s.bytes_reallocated
}

/// The most a write channel may hold once everything it was given has left (its 8 KiB buffer,
/// with room to spare).
const USUAL: isize = 32 * 1024;

#[test]
fn a_large_frame_does_not_stay_allocated() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        for auto_flush in [false, true] {
            let (mut output, mut input) = ByteChannel::new(auto_flush);
            let drain = tokio::spawn(async move { input.discard(u64::MAX).await });
            let frame = bytes::Bytes::from(vec![1u8; 4 << 20]);
            output
                .write_frame(&mut BytesCodec::new(), frame)
                .await
                .unwrap();
            output.flush().await.unwrap();
            // The channel goes on as usual after it.
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
            assert_eq!(drain.await.unwrap().unwrap(), (4 << 20) + 4);
        }
    });
}
