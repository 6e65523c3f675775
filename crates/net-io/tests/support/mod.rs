//! Helpers shared by the integration tests: a scripted `AsyncRead`, a one-shot poll, and a
//! hang guard.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};

/// How long a test may wait for something that must happen before it is declared hung.
pub(crate) const HANG_GUARD: Duration = Duration::from_secs(10);

/// One step of a [`ChunkedReader`] script.
#[derive(Debug)]
pub(crate) enum Step {
    /// Hand out these bytes (over several reads if the caller's buffer is smaller).
    Data(Vec<u8>),
    /// Return `Poll::Pending` once, waking the task immediately.
    Pending,
    /// Fail the read with this error.
    Fail(io::Error),
}

/// An `AsyncRead` that plays back a script of chunks, pauses and errors, then reports EOF.
///
/// Each `poll_read` hands out bytes from one `Data` step at most, so a reader sees exactly the
/// chunk boundaries the test chose. A `Pending` step returns `Poll::Pending` after waking the
/// task, so the reader must cope with data arriving over several polls.
#[derive(Debug, Default)]
pub(crate) struct ChunkedReader {
    steps: VecDeque<Step>,
    /// Current position inside the front `Data` step.
    offset: usize,
    /// How many times `poll_read` has been called.
    pub(crate) polls: usize,
}

impl ChunkedReader {
    /// A reader that plays back `steps` and then reports EOF.
    pub(crate) fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        ChunkedReader {
            steps: steps.into_iter().collect(),
            offset: 0,
            polls: 0,
        }
    }

    /// A reader that hands out `chunks` one per read, with no pauses.
    pub(crate) fn chunks<I, C>(chunks: I) -> Self
    where
        I: IntoIterator<Item = C>,
        C: AsRef<[u8]>,
    {
        Self::new(chunks.into_iter().map(|c| Step::Data(c.as_ref().to_vec())))
    }

    /// A reader that hands out `chunks` one per read with a `Poll::Pending` before each one.
    pub(crate) fn chunks_with_pauses<I, C>(chunks: I) -> Self
    where
        I: IntoIterator<Item = C>,
        C: AsRef<[u8]>,
    {
        let mut steps = Vec::new();
        for c in chunks {
            steps.push(Step::Pending);
            steps.push(Step::Data(c.as_ref().to_vec()));
        }
        Self::new(steps)
    }

    /// A reader that hands out `data` one byte per read, pausing before every byte.
    pub(crate) fn bytewise(data: &[u8]) -> Self {
        Self::chunks_with_pauses(data.chunks(1))
    }
}

impl AsyncRead for ChunkedReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.polls += 1;
        loop {
            match this.steps.front_mut() {
                None => return Poll::Ready(Ok(())),
                Some(Step::Pending) => {
                    this.steps.pop_front();
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Some(Step::Fail(_)) => {
                    let Some(Step::Fail(e)) = this.steps.pop_front() else {
                        unreachable!()
                    };
                    return Poll::Ready(Err(e));
                }
                Some(Step::Data(data)) => {
                    let rest = &data[this.offset..];
                    if rest.is_empty() {
                        this.steps.pop_front();
                        this.offset = 0;
                        continue;
                    }
                    if buf.remaining() == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    let n = rest.len().min(buf.remaining());
                    buf.put_slice(&rest[..n]);
                    this.offset += n;
                    if this.offset == data.len() {
                        this.steps.pop_front();
                        this.offset = 0;
                    }
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

/// Polls `fut` exactly once, then drops it. `Some(output)` if it completed on that poll.
///
/// This is what a `tokio::select!` does to the branch that loses: the future is polled, makes
/// whatever progress it can, and is dropped.
pub(crate) async fn poll_once<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
        Poll::Ready(v) => Poll::Ready(Some(v)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// Awaits `fut`, failing the test if it takes longer than [`HANG_GUARD`] (a hang, not a
/// timing assertion).
pub(crate) async fn guard<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(HANG_GUARD, fut)
        .await
        .expect("operation hung (hang guard expired)")
}

/// Splits `data` into chunks of the given sizes (cycled; sizes of 0 count as 1); the last chunk
/// takes what is left.
pub(crate) fn split_by(data: &[u8], sizes: &[usize]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < data.len() {
        let size = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .max(1);
        let end = (pos + size).min(data.len());
        out.push(data[pos..end].to_vec());
        pos = end;
        i += 1;
    }
    out
}
