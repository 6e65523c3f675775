// Shared by the fuzz targets (included with `include!`): a reader that hands out the input in
// the chunks the fuzzer chose, sometimes answering `Pending` first, and a poller that drives a
// future to completion without a runtime.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, ReadBuf};

/// Hands out `chunks` one read at a time (a chunk larger than the caller's buffer is split).
/// Before a chunk whose first length byte is odd it answers `Pending` once (waking at once), so
/// reads resume after a wait at every kind of boundary.
struct ChunkedReader {
    chunks: Vec<Vec<u8>>,
    next: usize,
    offset: usize,
    stalled: bool,
}

impl ChunkedReader {
    fn new(chunks: Vec<Vec<u8>>) -> Self {
        ChunkedReader {
            chunks: chunks.into_iter().filter(|c| !c.is_empty()).collect(),
            next: 0,
            offset: 0,
            stalled: false,
        }
    }
}

impl AsyncRead for ChunkedReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let Some(chunk) = this.chunks.get(this.next) else {
            return Poll::Ready(Ok(())); // end of stream
        };
        if this.offset == 0 && chunk.len() % 2 == 1 && !this.stalled {
            this.stalled = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.stalled = false;
        let n = (chunk.len() - this.offset).min(buf.remaining());
        buf.put_slice(&chunk[this.offset..this.offset + n]);
        this.offset += n;
        if this.offset == chunk.len() {
            this.next += 1;
            this.offset = 0;
        }
        Poll::Ready(Ok(()))
    }
}

/// Polls `future` until it completes. The reader wakes at once whenever it is pending, so a
/// bounded number of polls suffices; more means a read that never finishes (a hang).
fn drive<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000_000 {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
    panic!("a read did not complete although all input was available");
}
