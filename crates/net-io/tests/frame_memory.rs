//! What a write channel keeps allocated after a large frame whose
//! `write_frame` call was dropped (a `select!` that lost, a `timeout`) while the frame was on
//! its way out.
//!
//! This binary installs a counting global allocator (as `tests/retained_memory.rs` does); its
//! counters are process-wide, so the file holds a single `#[test]`.

use std::alloc::System;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Context;
use std::task::Poll;

use net_io::{ByteChannel, ByteWriteChannel, Error};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tokio::io::AsyncWrite;
use tokio_util::codec::BytesCodec;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn live() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

/// The most a writer may hold once a large frame has left: its usual buffer, with room.
const USUAL: isize = 64 * 1024;

const LARGE: usize = 4 << 20;

/// Polls `fut` once, then drops it; whether it was still pending.
async fn poll_once_then_drop<F: Future>(fut: F) -> bool {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_pending())).await
}

#[test]
fn a_large_frame_whose_call_was_dropped_does_not_stay_allocated() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        for auto_flush in [false, true] {
            for then_flush in [false, true] {
                a_dropped_large_frame(auto_flush, then_flush).await;
            }
            for before in [0, 100] {
                a_large_frame_that_timed_out(auto_flush, before).await;
            }
        }
    });
}

/// `write_frame` of a 4 MiB frame against a reader that has not read yet (the pipe takes
/// 64 KiB), dropped while it waits; then the reader drains, the writer goes on with small
/// writes (and an explicit flush, or only auto-flushed / buffer-filling writes).
async fn a_dropped_large_frame(auto_flush: bool, then_flush: bool) {
    let (mut output, mut input) = ByteChannel::new(auto_flush);
    let frame = bytes::Bytes::from(vec![1u8; LARGE]);
    let pending = poll_once_then_drop(output.write_frame(&mut BytesCodec::new(), frame)).await;
    assert!(pending, "the frame cannot have left: the pipe takes 64 KiB");
    let drain = tokio::spawn(async move { input.discard(u64::MAX).await });
    if then_flush {
        output.flush().await.unwrap();
    }
    // Enough small writes to send the rest of the frame out of the buffer in every mode.
    for i in 0..4_000u32 {
        output.write_u32(i).await.unwrap();
    }
    output.flush().await.unwrap();

    let held = live();
    drop(output);
    let freed = held - live();
    assert!(
        freed <= USUAL,
        "auto_flush={auto_flush} then_flush={then_flush}: the writer still held {freed} bytes \
         after the dropped frame left"
    );
    let received = tokio::time::timeout(std::time::Duration::from_secs(10), drain)
        .await
        .expect("reader hung")
        .unwrap()
        .unwrap();
    assert_eq!(received, LARGE as u64 + 4 * 4_000);
}

/// A transport that takes everything, but for one write that times out (`Error::Timeout`, as
/// `socket_timeout` reports it) once `armed`.
struct TimesOutOnce {
    armed: Arc<AtomicBool>,
}

impl AsyncWrite for TimesOutOnce {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.armed.swap(false, Ordering::SeqCst) {
            return Poll::Ready(Err(Error::Timeout.into()));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// `write_frame` of a 4 MiB frame (after `before` bytes written) whose write times out before
/// any of it left: the call has no effect (the frame is taken out again), and its allocation
/// must go with it, whatever is written next (here a plain write, which in `auto_flush` mode
/// goes to the transport directly and never touches the buffer).
async fn a_large_frame_that_timed_out(auto_flush: bool, before: usize) {
    let armed = Arc::new(AtomicBool::new(false));
    let mut output = ByteWriteChannel::new(
        TimesOutOnce {
            armed: Arc::clone(&armed),
        },
        auto_flush,
    );
    output.write_fully(&vec![0u8; before]).await.unwrap();
    armed.store(true, Ordering::SeqCst);
    let frame = bytes::Bytes::from(vec![1u8; LARGE]);
    let written = output.write_frame(&mut BytesCodec::new(), frame).await;
    assert!(
        matches!(written.map_err(Error::from), Err(Error::Timeout)),
        "the frame's write must time out"
    );
    output.write_fully(b"after").await.unwrap();
    output.flush().await.unwrap();

    let held = live();
    drop(output);
    let freed = held - live();
    assert!(
        freed <= USUAL,
        "auto_flush={auto_flush} before={before}: the writer still held {freed} bytes after \
         the frame that timed out was taken out"
    );
}
