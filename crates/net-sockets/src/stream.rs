//! The shared core of a connected socket and the read/write adapters its channels wrap.
//!
//! The core owns the only strong reference to the tokio stream; the adapters hold a weak one
//! and upgrade it per poll (one atomic operation, no lock), so closing the core — by
//! [`Socket::close`](crate::Socket::close) or by the selector — releases the descriptor at
//! once, even while the channels live on in other tasks. The core's cancellation token wakes
//! adapters that are waiting for readiness; it is only polled on the pending path.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::selector::{Release, SelectorInner, lock};
use crate::{Error, Result, SocketAddress};

/// A connected stream of either family.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_read_ready(cx),
            Stream::Unix(s) => s.poll_read_ready(cx),
        }
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_write_ready(cx),
            Stream::Unix(s) => s.poll_write_ready(cx),
        }
    }

    /// Reads into the unfilled part of `buf` without zeroing it first (tokio's `try_read_buf`
    /// reads into uninitialised memory soundly; safe code would have to zero it, which cost a
    /// memset of the whole buffer on every read).
    ///
    /// A read that returns fewer bytes than asked for has drained the socket: its readiness is
    /// cleared (as tokio's own `poll_read` does), so the next read waits for the reactor instead
    /// of making a `recv` that would only say `EAGAIN`. The readiness cleared is the one seen
    /// before the read, so an event that arrives after it is not lost.
    fn try_read_buf(&self, buf: &mut ReadBuf<'_>) -> io::Result<usize> {
        let wanted = buf.remaining();
        let mut got = None;
        let mut read = |n: io::Result<usize>| {
            let n = n?;
            got = Some(n);
            if n > 0 && n < wanted {
                // Makes `try_io` clear the readiness; `got` carries the bytes read.
                Err(io::Error::from(io::ErrorKind::WouldBlock))
            } else {
                Ok(n)
            }
        };
        let outcome = match self {
            Stream::Tcp(s) => s.try_io(Interest::READABLE, || read(s.try_read_buf(buf))),
            Stream::Unix(s) => s.try_io(Interest::READABLE, || read(s.try_read_buf(buf))),
        };
        match got {
            Some(n) => Ok(n),
            None => outcome,
        }
    }

    /// Writes with `MSG_NOSIGNAL`: a peer that is gone is an `EPIPE` error, never a `SIGPIPE`,
    /// even in a process that does not ignore the signal (Rust programs do; C hosts may not).
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        let send = || SockRef::from(self).send_with_flags(buf, SEND_FLAGS);
        match self {
            Stream::Tcp(s) => s.try_io(Interest::WRITABLE, send),
            Stream::Unix(s) => s.try_io(Interest::WRITABLE, send),
        }
    }

    fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let send = || SockRef::from(self).send_vectored_with_flags(bufs, SEND_FLAGS);
        match self {
            Stream::Tcp(s) => s.try_io(Interest::WRITABLE, send),
            Stream::Unix(s) => s.try_io(Interest::WRITABLE, send),
        }
    }
}

#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd"
))]
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd"
)))]
const SEND_FLAGS: libc::c_int = 0;

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

const READ_DONE: u8 = 1;
const WRITE_DONE: u8 = 2;

/// What a [`Socket`](crate::Socket) and its channels share.
#[derive(Debug)]
pub(crate) struct SocketCore {
    stream: Mutex<Option<Arc<Stream>>>,
    weak: Weak<Stream>,
    token: CancellationToken,
    /// Set by `close` before anything else: the adapters check it on every operation, where
    /// `token.is_cancelled()` would take the token's mutex.
    closing: AtomicBool,
    selector: Arc<SelectorInner>,
    id: Option<u64>,
    done: AtomicU8,
    pub(crate) local: SocketAddress,
    pub(crate) remote: SocketAddress,
    pub(crate) socket_timeout: Option<Duration>,
    pub(crate) connect_host: Option<String>,
    pub(crate) span: tracing::Span,
}

impl SocketCore {
    /// Wraps a connected stream; fails (dropping the stream) when the selector is closed.
    pub(crate) fn new(
        selector: &Arc<SelectorInner>,
        stream: Stream,
        local: SocketAddress,
        remote: SocketAddress,
        socket_timeout: Option<Duration>,
        connect_host: Option<String>,
    ) -> Result<Arc<SocketCore>> {
        let span = tracing::debug_span!("connection", local = %local, remote = %remote);
        let stream = Arc::new(stream);
        let core = Arc::new_cyclic(|me: &Weak<SocketCore>| SocketCore {
            weak: Arc::downgrade(&stream),
            stream: Mutex::new(Some(stream)),
            token: selector.token().child_token(),
            closing: AtomicBool::new(false),
            id: selector.register(me.clone() as Weak<dyn Release>).ok(),
            selector: Arc::clone(selector),
            done: AtomicU8::new(0),
            local,
            remote,
            socket_timeout,
            connect_host,
            span,
        });
        if core.id.is_none() {
            return Err(Error::SelectorClosed);
        }
        Ok(core)
    }

    /// Releases the descriptor (after what was written is sent, the kernel sends FIN) and wakes
    /// every pending operation. Idempotent.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Release);
        let stream = lock(&self.stream).take();
        self.token.cancel();
        if let Some(stream) = stream {
            drop(stream);
            if let Some(id) = self.id {
                self.selector.deregister(id);
            }
            tracing::debug!(parent: &self.span, "socket closed");
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.token.is_cancelled()
    }

    pub(crate) async fn await_closed(&self) {
        self.token.cancelled().await;
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            Err(Error::closed(self.selector.is_closed()))
        } else {
            Ok(())
        }
    }

    fn closed_error(&self) -> io::Error {
        Error::closed(self.selector.is_closed()).into_io()
    }

    /// Marks one direction finished; once both are, the socket closes itself (as Ktor's does
    /// when both of its channels are done).
    fn finish(&self, direction: u8) {
        let before = self.done.fetch_or(direction, Ordering::AcqRel);
        if before | direction == READ_DONE | WRITE_DONE && before != READ_DONE | WRITE_DONE {
            self.close();
        }
    }

    /// Runs `f` on the stream while it is open.
    pub(crate) fn with_stream<R>(&self, f: impl FnOnce(&Stream) -> io::Result<R>) -> Result<R> {
        match self.weak.upgrade() {
            Some(stream) if !self.is_closed() => f(&stream).map_err(Error::Io),
            _ => Err(Error::closed(self.selector.is_closed())),
        }
    }

    fn timer(&self) -> Option<Timer> {
        let duration = self.socket_timeout?;
        let _runtime = self.selector.handle().enter();
        let sleep = Box::pin(tokio::time::sleep(duration));
        Some(Timer {
            duration,
            sleep,
            armed: false,
        })
    }
}

impl Release for SocketCore {
    fn release(&self) {
        self.close();
    }
}

impl Drop for SocketCore {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            if lock(&self.stream).is_some() {
                self.selector.deregister(id);
            }
        }
    }
}

/// The inactivity timer of `socket_timeout`: armed when an operation starts waiting,
/// disarmed by progress.
#[derive(Debug)]
struct Timer {
    duration: Duration,
    sleep: Pin<Box<Sleep>>,
    armed: bool,
}

impl Timer {
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.armed {
            self.sleep.as_mut().reset(Instant::now() + self.duration);
            self.armed = true;
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.armed = false;
            return true;
        }
        false
    }

    fn progress(&mut self) {
        self.armed = false;
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, net_io::Error::Timeout)
}

/// The state one direction's adapter keeps: the weak stream, the wake-up on close, the timer.
#[derive(Debug)]
struct Half {
    core: Arc<SocketCore>,
    stream: Weak<Stream>,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    timer: Option<Timer>,
}

impl Half {
    fn new(core: Arc<SocketCore>) -> Half {
        Half {
            stream: core.weak.clone(),
            cancelled: Box::pin(core.token.clone().cancelled_owned()),
            timer: core.timer(),
            core,
        }
    }

    /// The stream, or the error that says why it is gone.
    fn stream(&self) -> io::Result<Arc<Stream>> {
        // A selector that closes cancels the token first and closes its sockets right after;
        // an operation waiting meanwhile is failed by `poll_wait`.
        if self.core.closing.load(Ordering::Acquire) {
            return Err(self.core.closed_error());
        }
        self.stream
            .upgrade()
            .ok_or_else(|| self.core.closed_error())
    }

    /// Called when the stream is not ready: `Ready(Err)` when the socket was closed meanwhile
    /// or on timeout, `Pending` to wait (`Ready(Ok)` is never returned: the caller retries).
    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.cancelled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(self.core.closed_error()));
        }
        if let Some(timer) = &mut self.timer {
            if timer.poll_expired(cx) {
                return Poll::Ready(Err(timed_out()));
            }
        }
        Poll::Pending
    }

    fn progress(&mut self) {
        if let Some(timer) = &mut self.timer {
            timer.progress();
        }
    }
}

/// The read direction of a socket, as an [`AsyncRead`] for a `ByteReadChannel`.
#[derive(Debug)]
pub(crate) struct ReadHalf {
    half: Half,
}

impl ReadHalf {
    pub(crate) fn new(core: Arc<SocketCore>) -> ReadHalf {
        ReadHalf {
            half: Half::new(core),
        }
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let half = &mut self.get_mut().half;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            let stream = half.stream()?;
            match stream.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => {
                    match stream.try_read_buf(buf) {
                        Ok(n) => {
                            half.progress();
                            if n == 0 {
                                // An end of stream caused by our own close (of this socket's
                                // peer through the same selector) reports the close.
                                if half.core.token.is_cancelled() {
                                    return Poll::Ready(Err(half.core.closed_error()));
                                }
                                half.core.finish(READ_DONE);
                            }
                            return Poll::Ready(Ok(()));
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    drop(stream);
                    ready!(half.poll_wait(cx))?;
                }
            }
        }
    }
}

/// The write direction of a socket, as an [`AsyncWrite`] for a `ByteWriteChannel`.
#[derive(Debug)]
pub(crate) struct WriteHalf {
    half: Half,
    shut_down: bool,
}

impl WriteHalf {
    pub(crate) fn new(core: Arc<SocketCore>) -> WriteHalf {
        WriteHalf {
            half: Half::new(core),
            shut_down: false,
        }
    }

    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        mut write: impl FnMut(&Stream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        let half = &mut self.half;
        loop {
            let stream = half.stream()?;
            match stream.poll_write_ready(cx) {
                Poll::Ready(Ok(())) => match write(&stream) {
                    Ok(n) => {
                        half.progress();
                        return Poll::Ready(Ok(n));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Poll::Ready(Err(e)),
                },
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    drop(stream);
                    ready!(half.poll_wait(cx))?;
                }
            }
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.get_mut().poll_write_with(cx, |s| s.try_write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |s| s.try_write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.shut_down {
            return Poll::Ready(Ok(()));
        }
        let stream = this.half.stream()?;
        match SockRef::from(&*stream).shutdown(std::net::Shutdown::Write) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
        drop(stream);
        this.shut_down = true;
        tracing::debug!(parent: &this.half.core.span, "write side shut down");
        this.half.core.finish(WRITE_DONE);
        Poll::Ready(Ok(()))
    }
}
