//! The in-memory, bounded pipe behind [`ByteChannel`].

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{ByteReadChannel, ByteWriteChannel, Error};

/// How many bytes the pipe holds between its two ends (the writer's own buffer comes on top).
pub(crate) const PIPE_CAPACITY: usize = 64 * 1024;

/// An in-memory, bounded pipe: a [`ByteWriteChannel`] whose bytes come out of a
/// [`ByteReadChannel`] (Ktor's `ByteChannel()`).
///
/// The pipe holds at most 64 KiB between its ends; a writer that gets ahead of its reader waits
/// (backpressure), so memory stays bounded. The ends behave like a socket's two directions:
///
/// - without `auto_flush`, written bytes reach the pipe when the writer's buffer fills or on
///   [`flush`](ByteWriteChannel::flush);
/// - [`flush_and_close`](ByteWriteChannel::flush_and_close), and dropping a writer that holds
///   nothing unflushed, end the stream: the reader drains what was delivered, then sees end
///   of stream;
/// - [`ByteWriteChannel::cancel`], a writer that failed for good (a close after a write
///   dropped part-way, see [`ByteWriteChannel`]'s "Failures"), and a writer dropped with bytes
///   its writes accepted still unflushed, or after a write dropped part-way (those bytes are
///   not delivered), make the reader fail with [`Error::Cancelled`] once it has read what was
///   already in the pipe: a stream that lacks bytes never ends cleanly;
/// - cancelling or dropping the reader makes every later write that reaches the pipe fail
///   with [`Error::Cancelled`], including a write already waiting for room, and fails the
///   writer for good (what its buffer held is thrown away): in `auto_flush` mode every write
///   call of at least one byte; otherwise a write that fills the writer's buffer or goes to the
///   pipe directly, or a flush or close with bytes buffered. A write that only adds to the
///   writer's buffer succeeds, as on a socket whose peer is gone.
///
/// Each read and write of the pipe takes a unit of tokio's cooperative budget, as tokio's own
/// `DuplexStream` does: a task that writes to the pipe and reads the bytes back, which never
/// has to wait, still yields to the other tasks of its thread once its budget is spent (before,
/// such a task never yielded: connections served by the same thread were never answered).
///
/// # Examples
///
/// ```
/// use net_io::{ByteChannel, LineEnding};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> net_io::Result<()> {
/// let (mut output, mut input) = ByteChannel::new(true);
/// tokio::spawn(async move {
///     output.write_string_utf8("ping\n").await?;
///     output.write_u32(7).await?;
///     output.flush_and_close().await
/// });
/// assert_eq!(input.read_line(64, LineEnding::Default).await?.as_deref(), Some("ping"));
/// assert_eq!(input.read_u32().await?, 7);
/// assert!(input.read_u8().await.is_err());
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct ByteChannel;

impl ByteChannel {
    /// Creates a pipe and returns its write and read ends.
    ///
    /// `auto_flush` is the writer's mode, as in [`ByteWriteChannel::new`].
    #[allow(clippy::new_ret_no_self)]
    pub fn new(auto_flush: bool) -> (ByteWriteChannel, ByteReadChannel) {
        let shared = Arc::new(Mutex::new(State::default()));
        let writer = PipeWriter {
            shared: Arc::clone(&shared),
        };
        let reader = PipeReader { shared };
        (
            ByteWriteChannel::from_pipe(writer, auto_flush),
            ByteReadChannel::new(reader),
        )
    }
}

#[derive(Debug, Default)]
struct State {
    bytes: VecDeque<u8>,
    /// The writer closed or went away: end of stream once `bytes` is drained.
    write_closed: bool,
    /// The writer cancelled: the reader fails once `bytes` is drained.
    write_cancelled: bool,
    /// The reader cancelled or went away: writes fail.
    read_gone: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

fn lock(shared: &Mutex<State>) -> MutexGuard<'_, State> {
    // The state stays consistent even if a thread panicked while holding the lock.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Lets go of the lock, then wakes `waker`, taken out under it.
///
/// Never under the lock: a waker may be the last reference to its task (an executor whose
/// pending tasks only their wakers keep), and waking or dropping it may drop the task's future,
/// and with it an end of this pipe, whose drop takes the lock.
fn wake_after(state: MutexGuard<'_, State>, waker: Option<Waker>) {
    drop(state);
    if let Some(w) = waker {
        w.wake();
    }
}

/// Keeps the task's waker in `slot` (not cloned again when it is the same task's), and lets go
/// of the lock before the waker it replaces goes (see [`wake_after`]).
fn wait_in(
    mut state: MutexGuard<'_, State>,
    slot: fn(&mut State) -> &mut Option<Waker>,
    cx: &Context<'_>,
) {
    let kept = slot(&mut state);
    if kept.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        return;
    }
    let replaced = kept.replace(cx.waker().clone());
    drop(state);
    drop(replaced);
}

#[derive(Debug)]
pub(crate) struct PipeReader {
    shared: Arc<Mutex<State>>,
}

#[derive(Debug)]
pub(crate) struct PipeWriter {
    shared: Arc<Mutex<State>>,
}

impl PipeWriter {
    /// Ends the stream with an error for the reader.
    pub(crate) fn cancel(&self) {
        let mut state = lock(&self.shared);
        state.write_cancelled = true;
        let reader = state.read_waker.take();
        wake_after(state, reader);
    }
}

impl AsyncRead for PipeReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // A unit of the task's cooperative budget, as tokio's own in-memory pipe
        // (`DuplexStream`) takes: a task that finds bytes every time (one that writes to the
        // pipe and reads them back, never waiting) still yields to the other tasks of its
        // thread. Taken before anything is read, so that yielding here takes nothing.
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        let read = self.read_now(cx, buf);
        if read.is_ready() {
            coop.made_progress();
        }
        read
    }
}

impl PipeReader {
    /// [`poll_read`](AsyncRead::poll_read) once the task may go on.
    fn read_now(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut state = lock(&self.shared);
        if !state.bytes.is_empty() {
            let n = state.bytes.len().min(buf.remaining());
            let (front, back) = state.bytes.as_slices();
            let from_front = n.min(front.len());
            buf.put_slice(&front[..from_front]);
            buf.put_slice(&back[..n - from_front]);
            state.bytes.drain(..n);
            let writer = state.write_waker.take();
            wake_after(state, writer);
            return Poll::Ready(Ok(()));
        }
        if state.write_cancelled {
            return Poll::Ready(Err(Error::Cancelled.into()));
        }
        if state.write_closed {
            return Poll::Ready(Ok(()));
        }
        wait_in(state, |state| &mut state.read_waker, cx);
        Poll::Pending
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        let mut state = lock(&self.shared);
        state.read_gone = true;
        state.bytes = VecDeque::new();
        let writer = state.write_waker.take();
        wake_after(state, writer);
    }
}

impl AsyncWrite for PipeWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        src: &[u8],
    ) -> Poll<io::Result<usize>> {
        // A unit of the task's cooperative budget, as for a read (and as tokio's
        // `DuplexStream` takes): a writer whose reader keeps up never waits for room.
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        let written = self.write_now(cx, src);
        if written.is_ready() {
            coop.made_progress();
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = lock(&self.shared);
        state.write_closed = true;
        let reader = state.read_waker.take();
        wake_after(state, reader);
        Poll::Ready(Ok(()))
    }
}

impl PipeWriter {
    /// [`poll_write`](AsyncWrite::poll_write) once the task may go on.
    fn write_now(&self, cx: &mut Context<'_>, src: &[u8]) -> Poll<io::Result<usize>> {
        let mut state = lock(&self.shared);
        if state.read_gone {
            return Poll::Ready(Err(Error::Cancelled.into()));
        }
        if state.write_closed || state.write_cancelled {
            return Poll::Ready(Err(Error::ClosedForWrite.into()));
        }
        let room = PIPE_CAPACITY - state.bytes.len();
        if room == 0 {
            wait_in(state, |state| &mut state.write_waker, cx);
            return Poll::Pending;
        }
        let n = room.min(src.len());
        state.bytes.extend(&src[..n]);
        let reader = state.read_waker.take();
        wake_after(state, reader);
        Poll::Ready(Ok(n))
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        let mut state = lock(&self.shared);
        state.write_closed = true;
        let reader = state.read_waker.take();
        wake_after(state, reader);
    }
}
