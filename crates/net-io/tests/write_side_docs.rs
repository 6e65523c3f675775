//! The write side of `ByteWriteChannel` and the in-memory pipe against
//! their documentation, over in-memory transports.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use net_io::{ByteChannel, ByteReadChannel, ByteWriteChannel, Error};
use tokio::io::AsyncWrite;

/// Polls `fut` once, then drops it (a `select!` branch that lost); whether it was pending.
async fn poll_once_then_drop<F: Future>(fut: F) -> bool {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_pending())).await
}

async fn guard<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("hung")
}

/// The pipe's docs (as corrected): once the reader is cancelled or dropped, every write that
/// reaches the pipe fails with `Error::Cancelled` and fails the writer for good; in
/// `auto_flush` mode that is every write call, otherwise a write that only adds to the
/// buffer succeeds and the flush fails. (They said "every later write", untrue without
/// `auto_flush`.)
#[tokio::test]
async fn a_pipe_writer_whose_reader_is_gone_fails_every_write_that_reaches_the_pipe() {
    for auto_flush in [false, true] {
        for cancel in [false, true] {
            let (mut output, mut input) = ByteChannel::new(auto_flush);
            output.write_fully(b"before").await.unwrap();
            output.flush().await.unwrap();
            if cancel {
                input.cancel();
            } else {
                drop(input);
            }
            let what = format!("auto_flush={auto_flush} cancel={cancel}");
            let first = guard(output.write_u8(1)).await;
            if auto_flush {
                assert!(
                    matches!(first, Err(Error::Cancelled)),
                    "{what}: write_u8: {first:?}"
                );
            } else {
                assert!(first.is_ok(), "{what}: a buffered write_u8: {first:?}");
                let flushed = guard(output.flush()).await;
                assert!(
                    matches!(flushed, Err(Error::Cancelled)),
                    "{what}: flush: {flushed:?}"
                );
            }
            assert!(output.is_closed_for_write(), "{what}");
            let again = guard(output.write_fully(b"more")).await;
            assert!(
                matches!(again, Err(Error::Cancelled)),
                "{what}: write_fully: {again:?}"
            );
            let closed = guard(output.flush_and_close()).await;
            assert!(
                matches!(closed, Err(Error::Cancelled)),
                "{what}: close: {closed:?}"
            );
        }
    }

    // A write larger than the buffer goes to the pipe directly: it fails at once.
    let (mut output, input) = ByteChannel::new(false);
    drop(input);
    let big = guard(output.write_fully(&[0u8; 20_000])).await;
    assert!(matches!(big, Err(Error::Cancelled)), "{big:?}");
}

/// Reads what `input` delivers until it ends; the bytes and how it ended (`None`: cleanly).
async fn read_to_end(mut input: ByteReadChannel) -> (Vec<u8>, Option<Error>) {
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match guard(input.read_available(&mut buf)).await {
            Ok(0) => return (received, None),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) => return (received, Some(e)),
        }
    }
}

/// A `write_fully` that goes to the transport directly, dropped after the transport took part
/// of it: `total_bytes_written` counts exactly what was taken, so the peer receives exactly
/// `total_bytes_written` bytes (everything before, the prefix, what came after).
#[tokio::test]
async fn total_bytes_written_counts_exactly_the_prefix_of_a_dropped_write() {
    for auto_flush in [false, true] {
        let (mut output, input) = ByteChannel::new(auto_flush);
        output.write_fully(b"head").await.unwrap();
        let big = vec![7u8; 200_000];
        assert!(poll_once_then_drop(output.write_fully(&big)).await);
        let taken = output.total_bytes_written();
        assert!(
            taken > 4 && taken < 4 + 200_000,
            "auto_flush={auto_flush}: {taken}"
        );
        let reader = tokio::spawn(read_to_end(input));
        output.write_fully(b"tail").await.unwrap();
        output.flush().await.unwrap();
        let total = output.total_bytes_written();
        output.cancel();
        let (received, end) = guard(reader).await.unwrap();
        assert!(matches!(end, Some(Error::Cancelled)), "{end:?}");
        assert_eq!(received.len() as u64, total, "auto_flush={auto_flush}");
        assert!(received.ends_with(b"tail"));
    }
}

/// A transport that takes `first` bytes of the first write, then times out every write
/// (`Error::Timeout`, as `socket_timeout` reports it) while `stalled`.
struct Stalls {
    first: usize,
    stalled: Arc<AtomicBool>,
    taken: Arc<AtomicUsize>,
}

impl AsyncWrite for Stalls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.first > 0 {
            let n = self.first.min(buf.len());
            self.first -= n;
            self.taken.fetch_add(n, Ordering::SeqCst);
            return Poll::Ready(Ok(n));
        }
        if self.stalled.load(Ordering::SeqCst) {
            return Poll::Ready(Err(Error::Timeout.into()));
        }
        self.taken.fetch_add(buf.len(), Ordering::SeqCst);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Both kinds of write timeout return `Error::Timeout`: one without effect (retry it) and one
/// that failed the channel for good (every later call returns the same `Timeout` at once, so
/// a loop that retries on `Timeout` alone would spin). `is_closed_for_write` tells them apart,
/// as the docs say.
#[tokio::test]
async fn is_closed_for_write_tells_a_retryable_timeout_from_a_final_one() {
    for auto_flush in [false, true] {
        // Without effect: nothing of the call reached the transport.
        let stalled = Arc::new(AtomicBool::new(true));
        let taken = Arc::new(AtomicUsize::new(0));
        let mut output = ByteWriteChannel::new(
            Stalls {
                first: 0,
                stalled: Arc::clone(&stalled),
                taken: Arc::clone(&taken),
            },
            auto_flush,
        );
        let big = vec![1u8; 20_000];
        let res = output.write_fully(&big).await;
        assert!(matches!(res, Err(Error::Timeout)), "{res:?}");
        assert!(!output.is_closed_for_write(), "auto_flush={auto_flush}");
        stalled.store(false, Ordering::SeqCst);
        output.write_fully(&big).await.unwrap();
        output.flush_and_close().await.unwrap();
        assert_eq!(taken.load(Ordering::SeqCst), big.len(), "each byte once");

        // Part of the call reached the transport: failed for good.
        let stalled = Arc::new(AtomicBool::new(true));
        let mut output = ByteWriteChannel::new(
            Stalls {
                first: 100,
                stalled: Arc::clone(&stalled),
                taken: Arc::new(AtomicUsize::new(0)),
            },
            auto_flush,
        );
        let res = output.write_fully(&big).await;
        assert!(matches!(res, Err(Error::Timeout)), "{res:?}");
        assert!(output.is_closed_for_write(), "auto_flush={auto_flush}");
        stalled.store(false, Ordering::SeqCst);
        let again = output.write_fully(&big).await;
        assert!(matches!(again, Err(Error::Timeout)), "{again:?}");
        assert!(output.flush_and_close().await.is_err());
    }
}

/// `WriteState`'s docs: a state is for one channel; shared with two, it says what the last of
/// them to act said. (A guard for the documented limitation: nothing merges two channels.)
#[tokio::test]
async fn a_write_state_shared_with_two_channels_says_what_the_last_said() {
    let state = net_io::WriteState::new();
    let mut first = ByteWriteChannel::new(tokio::io::sink(), false);
    let mut second = ByteWriteChannel::new(tokio::io::sink(), false);
    first.share_state(state.clone());
    second.share_state(state.clone());
    first.write_fully(b"held").await.unwrap();
    assert!(state.has_unsent());
    second.write_fully(b"x").await.unwrap();
    second.flush().await.unwrap();
    assert!(!state.has_unsent(), "the second channel's flush spoke last");
    first.cancel();
    assert!(state.lost_bytes());
}
