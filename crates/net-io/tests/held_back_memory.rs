//! A writer held back by a peer that takes nothing holds at most the write channel's buffer
//! (8 KiB): small writes fill the buffer and then wait; a write larger than the buffer goes to
//! the transport directly and is never copied, however large it is.
//!
//! This test binary installs a counting global allocator (`stats_alloc`, as `tests/alloc.rs`
//! does); the counters are process-wide, so the file holds a single `#[test]` that runs every
//! scenario in turn on a current-thread runtime.

use std::alloc::System;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use net_io::ByteWriteChannel;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tokio::io::AsyncWrite;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not freed so far. (`stats_alloc` counts what a `realloc` adds or frees
/// in `bytes_allocated` and `bytes_deallocated` already; `bytes_reallocated` is the same
/// again.)
fn live() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

/// The write channel's buffer.
const BUFFER: isize = 8 * 1024;

/// Room for the channel's own small allocations (the boxed transport).
const SLACK: isize = 1024;

/// A transport whose peer takes nothing: every write, flush and shutdown waits for ever.
struct Stalled;

impl AsyncWrite for Stalled {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Pending
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Pending
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Pending
    }
}

/// Polls `future` once: `Some(output)` if it completed, `None` if it waits.
async fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    std::future::poll_fn(|cx| {
        Poll::Ready(match future.as_mut().poll(cx) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        })
    })
    .await
}

/// The bytes `grow` left allocated, starting from a fresh channel over [`Stalled`].
async fn held_by(auto_flush: bool, grow: impl AsyncFnOnce(&mut ByteWriteChannel)) -> isize {
    let before = live();
    let mut output = ByteWriteChannel::new(Stalled, auto_flush);
    grow(&mut output).await;
    let held = live() - before;
    drop(output);
    held
}

#[test]
fn a_writer_held_back_by_its_peer_holds_at_most_its_buffer() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let large = vec![7u8; 32 << 20];
        let small = [7u8; 1000];
        for auto_flush in [false, true] {
            // One write of 32 MiB: it waits, and nothing of it was copied.
            let held = held_by(auto_flush, async |output| {
                assert!(poll_once(output.write_fully(&large)).await.is_none());
            })
            .await;
            assert!(
                held <= SLACK,
                "auto_flush={auto_flush}: a waiting 32 MiB write held {held} bytes"
            );

            // Small writes until one waits: the buffer fills, then writes wait.
            let held = held_by(auto_flush, async |output| {
                let mut accepted = 0;
                while let Some(done) = poll_once(output.write_fully(&small)).await {
                    done.unwrap();
                    accepted += small.len();
                    assert!(accepted <= BUFFER as usize, "accepted {accepted} bytes");
                }
                // Then a large write waits too, behind the full buffer, without a copy.
                assert!(poll_once(output.write_fully(&large)).await.is_none());
            })
            .await;
            assert!(
                held <= BUFFER + SLACK,
                "auto_flush={auto_flush}: small writes held {held} bytes"
            );

            // Typed writes until one waits.
            let held = held_by(auto_flush, async |output| {
                let mut accepted = 0;
                while let Some(done) = poll_once(output.write_u64(7)).await {
                    done.unwrap();
                    accepted += 8;
                    assert!(accepted <= BUFFER as usize, "accepted {accepted} bytes");
                }
            })
            .await;
            assert!(
                held <= BUFFER + SLACK,
                "auto_flush={auto_flush}: typed writes held {held} bytes"
            );

            // Writes each polled once and dropped (a `select!` branch that lost, a zero
            // timeout), on and on against the stalled peer: once the buffer is full they wait
            // for room before they add anything, so dropping them cannot grow it. One byte
            // first, so that the typed writes do not meet the buffer's end evenly.
            for kind in ["write_u64", "write_i32", "write_frame", "write_string_utf8"] {
                let held = held_by(auto_flush, async |output| {
                    let mut codec = tokio_util::codec::BytesCodec::new();
                    drop(poll_once(output.write_u8(1)).await);
                    for _ in 0..100_000 {
                        match kind {
                            "write_u64" => drop(poll_once(output.write_u64(7)).await),
                            "write_i32" => drop(poll_once(output.write_i32(-7)).await),
                            "write_frame" => {
                                let frame = bytes::Bytes::from_static(b"12345678");
                                drop(poll_once(output.write_frame(&mut codec, frame)).await);
                            }
                            _ => drop(poll_once(output.write_string_utf8("1234567")).await),
                        }
                    }
                    // A frame's size is known only once it is encoded: a full buffer waits, a
                    // frame that fills it is added whole.
                    let room = if kind == "write_frame" {
                        BUFFER + 8
                    } else {
                        BUFFER
                    };
                    let accepted = output.total_bytes_written();
                    assert!(
                        accepted <= room as u64,
                        "auto_flush={auto_flush}: {kind}: accepted {accepted} bytes"
                    );
                })
                .await;
                // A frame that does not fit the room left is added whole, and the buffer's
                // allocation grows to hold it (as `ByteWriteChannel`'s docs say of `write_frame`).
                let most = if kind == "write_frame" {
                    2 * BUFFER
                } else {
                    BUFFER
                };
                assert!(
                    held <= most + SLACK,
                    "auto_flush={auto_flush}: dropped {kind} calls held {held} bytes"
                );
            }

            // Through `AsyncWrite`: `write_all` takes what fits, then waits.
            let held = held_by(auto_flush, async |output| {
                use tokio::io::AsyncWriteExt;
                assert!(poll_once(output.write_all(&small)).await.is_some());
                assert!(poll_once(output.write_all(&large)).await.is_none());
            })
            .await;
            assert!(
                held <= BUFFER + SLACK,
                "auto_flush={auto_flush}: AsyncWrite held {held} bytes"
            );
        }

        // A buffer that fills up in the usual way (a peer that takes everything, no call
        // dropped) keeps its size: a typed write that does not fit the room left waits for the
        // buffer to be written out before it is added, instead of growing the allocation.
        for kind in ["write_u64", "write_i32", "write_string_utf8", "write_frame"] {
            let before = live();
            let mut output = ByteWriteChannel::new(tokio::io::sink(), false);
            let mut codec = tokio_util::codec::BytesCodec::new();
            // One byte first, so that the items do not meet the buffer's end evenly.
            output.write_u8(1).await.unwrap();
            for _ in 0..10_000 {
                match kind {
                    "write_u64" => output.write_u64(7).await.unwrap(),
                    "write_i32" => output.write_i32(-7).await.unwrap(),
                    "write_frame" => {
                        let frame = bytes::Bytes::from_static(b"12345678");
                        output.write_frame(&mut codec, frame).await.unwrap();
                    }
                    _ => output.write_string_utf8("1234567").await.unwrap(),
                }
            }
            let held = live() - before;
            drop(output);
            // A frame's size is known only once it is encoded: one that does not fit the room
            // left is added whole, and the allocation grows to hold it.
            let most = if kind == "write_frame" {
                2 * BUFFER
            } else {
                BUFFER
            };
            assert!(held <= most + SLACK, "{kind}: held {held} bytes");
        }
    });
}
