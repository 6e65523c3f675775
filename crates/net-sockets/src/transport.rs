//! What a [`Socket`](crate::Socket) reads and writes through: the plain connection, or a
//! protocol layer over it (TLS, in `net-tls`).
//!
//! This is the seam between the socket (channels, addresses, closing: written once, in
//! `socket.rs`) and the layer that turns the connection's bytes into the application's. The
//! trait is public as a bound for code generic over plain and TLS sockets; its items, and the
//! types they use, are public only so that `net-tls` can implement a layer: they are hidden
//! from the documentation and not part of the API.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use net_io::Backlog;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::core::{CloseMode, Owner};
use crate::selector::SelectorSleep;
use crate::stream::{Conn, ReadHalf, WriteHalf};

/// What a [`Socket`](crate::Socket) reads and writes through: [`Plain`] bytes here, a TLS
/// session in `net-tls` (its `TlsSocket` is a `Socket<TlsSession>`).
///
/// Use it as a bound to write a conversation once for plain and TLS connections. The
/// trait's items are the seam a protocol layer plugs into: they are hidden from the
/// documentation and may change in any release, so implementing it outside this project's
/// crates is not supported.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// use net_io::LineEnding;
/// use net_sockets::{Connection, Transport};
///
/// /// Greets, then answers each line; serves plain and TLS connections alike.
/// async fn converse<T: Transport>(mut connection: Connection<T>) -> net_sockets::Result<()> {
///     connection.output.write_string_utf8("Please enter your name\n").await?;
///     connection.output.flush().await?;
///     while let Some(name) = connection.input.read_line(1024, LineEnding::Default).await? {
///         connection.output.write_string_utf8(&format!("Hello, {name}!\n")).await?;
///         connection.output.flush().await?;
///     }
///     // The client ended its input: send what is left, then a clean end.
///     connection.close_gracefully(Duration::from_secs(5)).await
/// }
/// ```
pub trait Transport: fmt::Debug + Send + Sync + Unpin + Sized + 'static {
    /// What the read channel reads from.
    #[doc(hidden)]
    type Reader: AsyncRead + Send + Unpin + 'static;
    /// What the write channel writes to.
    #[doc(hidden)]
    type Writer: AsyncWrite + Send + Unpin + 'static;

    /// Whether the writer's bytes go to the socket unchanged, so that the write channel may
    /// hold them in the socket's backlog itself (flush coalescing without a call per write).
    #[doc(hidden)]
    const WRITES_TO_SOCKET: bool = false;

    /// The reading end, for the read channel (made at most once per socket).
    #[doc(hidden)]
    fn reader(&self, link: &Link) -> Self::Reader;

    /// The writing end, for the write channel (made at most once per socket).
    #[doc(hidden)]
    fn writer(&self, link: &Link) -> Self::Writer;

    /// Called once when the socket is [closed](crate::Socket::close), before the descriptor is
    /// released: says how the connection ends (and may hand over a last message, such as
    /// TLS's `close_notify`).
    #[doc(hidden)]
    fn closing(&self, link: &Link) -> Ending;
}

/// How a closing layer wants the connection to end.
#[doc(hidden)]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ending {
    /// What was written, then FIN.
    Graceful,
    /// What was written, then these bytes (what the layer's last message left that the socket
    /// did not take at once), then FIN. They are sent as the socket drains, as answers held
    /// back by flush coalescing are after a close (a failure resets the connection instead).
    GracefulAfter(Bytes),
    /// What was written, then `.0` (what the layer still held of it, that the socket did not
    /// take at once), then `.1` (its last message), then FIN, sent as the socket drains, as
    /// [`GracefulAfter`](Self::GracefulAfter)'s bytes are. The connection keeps its place
    /// under `max_connections_per_ip` until only `.1` is left to send (a layer returning this
    /// has not called [`Link::ending`]).
    GracefulAfterWritten(Bytes, Bytes),
    /// A reset: the peer cannot take the end for a clean one.
    Reset,
}

/// A layer's view of the connection under it.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct Link {
    pub(crate) conn: Arc<Conn>,
}

impl Link {
    /// The layer's reader is gone (its read channel was dropped or cancelled), or will not
    /// wait again (its stream ended or failed): answers held back while that reader had
    /// requests pending (flush coalescing) leave now, instead of waiting for the next write or
    /// the close. A layer whose reader does not own the socket's read half calls this when the
    /// reader is dropped, and when it reports the end of its stream or a failure that it may
    /// have found without a read from the socket.
    pub fn reader_gone(&self) {
        self.conn.reader_gone();
    }

    /// The layer's stream ended cleanly, though the socket's may not have: TLS's `close_notify`
    /// came, after which the layer reads nothing more from the socket, so the socket's own end
    /// of stream is never read. The read direction is done, as that end would make it: with the
    /// write direction done too (the write channel closed), the socket closes itself, as a
    /// plain socket does.
    pub fn read_ended(&self) {
        self.conn.layer_ended();
    }

    /// The layer is about to send its own end of the stream (TLS's `close_notify`), which the
    /// peer takes for the end of the connection, before the socket's FIN, and the connection
    /// ends with it: in [`closing`](Transport::closing), or in a shutdown of the write side
    /// after the input ended ([`input_ended`](Self::input_ended)), which closes the socket
    /// (in `closing`, not while answers are held back: see [`holds_back`](Self::holds_back)).
    /// The connection leaves its place under its listener's `max_connections_per_ip` now, as a
    /// plain socket leaves it before its FIN, so that a peer that connects again as soon as it
    /// sees that end is never refused for it. Its `max_connections` slot, and a graceful
    /// shutdown's wait for it, stay until the descriptor is released (after held-back answers,
    /// as for a plain socket). (A shutdown before the input ended is a half-close: the
    /// connection stays open, and keeps its place.)
    pub fn ending(&self) {
        self.conn.leave_address_place();
    }

    /// Whether answers are held back by flush coalescing: they leave before anything the layer
    /// sends now. A layer that closes with them held hands its last message to the close
    /// ([`Ending::GracefulAfter`]) instead of calling [`ending`](Self::ending): the
    /// connection keeps its place under `max_connections_per_ip` until the answers left (it is
    /// open until then), and leaves it before that last message.
    pub fn holds_back(&self) -> bool {
        self.conn.holds_bytes()
    }

    /// Whether writes are held back now by flush coalescing: the reader has requests still to
    /// read. A layer may hold its own bytes meanwhile (TLS: plaintext, so that a burst's answers
    /// are sealed as one record), and must hand them over with [`hold`](Self::hold) and
    /// [`send_held`](Self::send_held) when its reader is about to read again, when this turns
    /// `false` after it held some, and before its last message.
    pub fn defers_writes(&self) -> bool {
        self.conn.backlog().is_some_and(Backlog::is_deferring)
    }

    /// Holds `bytes` (the layer's, ready for the socket) after the answers held back, whether or
    /// not the reader has requests pending; `false` (nothing held) when the socket holds nothing
    /// back any more (flush coalescing off, or ended: the connection closes or a send failed),
    /// or past the limit of what it holds. They leave with [`send_held`](Self::send_held).
    pub fn hold(&self, bytes: &[u8]) -> bool {
        self.conn.hold_regardless(bytes)
    }

    /// What is held back leaves now: sent as far as the socket takes it, the rest by a task as
    /// the socket drains (as when the reader is about to wait).
    pub fn send_held(&self) {
        self.conn.reader_gone();
    }

    /// Runs `hook` when a read of the read channel through tokio's traits (which passes its
    /// bytes on, and may stop reading while its writes wait) leaves nothing pending: for a
    /// layer that holds its own bytes while the reader has requests pending
    /// ([`defers_writes`](Self::defers_writes)), to hand them over then ([`hold`](Self::hold),
    /// [`send_held`](Self::send_held)); what the socket holds back leaves after it. Such a read
    /// may not reach the layer's reader (the channel hands out what it buffered). Also when
    /// the socket sent the last of what it held back after the reader began to wait: a layer
    /// whose bytes [`hold`](Self::hold) refused for want of room hands them over then (nothing
    /// else would: its reader waits for input). The hook gets the connection's link (it must
    /// not keep one itself: the connection keeps the hook). Once: a later call changes
    /// nothing.
    pub fn on_passed_on(&self, hook: impl Fn(&Link) + Send + Sync + 'static) {
        self.conn.set_layer_passed_on(Box::new(hook));
    }

    /// Runs `work` soon, with the connection's link, from a task of the selector's runtime: for
    /// work a layer cannot do where it is, such as a drop that finds its session held by
    /// another (TLS hands over the answers held for a reader dropped then, once the session is
    /// free: the task may wait for it, where the drop could not). Never once that runtime
    /// ended (the connection is cut then), nor once the connection is gone: the task does not
    /// keep it, so a socket whose handles are all dropped closes at once, also while that
    /// runtime is not running.
    pub fn run_soon(&self, work: impl FnOnce(&Link) + Send + 'static) {
        self.conn.run_soon(Box::new(work));
    }

    /// The layer's session failed for good, as a read found (TLS: the peer's fatal alert, a
    /// corrupted record): the write channel's calls fail at once with the error `failure`
    /// makes, those that would only add bytes to its buffer too (a channel opened later as
    /// well), since nothing written from now on can reach the peer. The first call counts.
    pub fn session_failed(&self, failure: impl Fn() -> io::Error + Send + Sync + 'static) {
        self.conn
            .layer_failed(crate::stream::LayerFailure(Box::new(failure)));
    }

    /// Whether the read direction finished: the socket's end of stream was read, or the layer
    /// said its stream ended ([`read_ended`](Self::read_ended)).
    pub fn input_ended(&self) -> bool {
        self.conn.input_ended()
    }

    /// Whether bytes written to the connection may be lost: a write failed other than by
    /// timing out, or the write channel holds or threw away bytes its writes accepted. For a
    /// layer that keeps what the socket did not take (a socket write that times out takes
    /// nothing, so it loses nothing) and decides itself whether a timeout of its own calls was
    /// made good.
    pub fn bytes_lost(&self) -> bool {
        self.conn.bytes_lost()
    }

    /// Runs `before` (once) when the connection is cut without the layer's
    /// [`closing`](Transport::closing): by the selector's close, at the end of a graceful
    /// shutdown's grace period, or at the end of the selector's runtime; before the descriptor
    /// is released. For a layer that must take in its own messages the socket holds (with
    /// [`RawStream::try_read`]) so that the kernel does not answer the close with a reset.
    /// A later call replaces an earlier one.
    pub fn before_cut(&self, before: impl FnOnce() + Send + 'static) {
        self.conn.set_before_cut(Box::new(before));
    }
}

/// The plain connection: the channels read and write the socket's bytes as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Plain;

impl Transport for Plain {
    type Reader = ReadHalf;
    type Writer = WriteHalf;
    const WRITES_TO_SOCKET: bool = true;

    fn reader(&self, link: &Link) -> ReadHalf {
        ReadHalf::new(Arc::clone(&link.conn))
    }

    fn writer(&self, link: &Link) -> WriteHalf {
        WriteHalf::new(Arc::clone(&link.conn))
    }

    fn closing(&self, link: &Link) -> Ending {
        match link.conn.close_mode() {
            CloseMode::Graceful => Ending::Graceful,
            CloseMode::Reset => Ending::Reset,
        }
    }
}

/// The connection's bytes as one stream, for a layer's handshake and records: what the
/// connection already received (for STARTTLS: bytes that came with the plain-text command)
/// first, then the socket.
#[doc(hidden)]
#[derive(Debug)]
pub struct RawStream {
    read: ReadHalf,
    write: WriteHalf,
    link: Link,
    /// Whether writes are made for a layer's read (see [`RawStream::reading`]).
    reading: bool,
    /// Whether a read returned something (bytes, the end of stream) since
    /// [`took_input`](RawStream::took_input) last said.
    took: bool,
}

impl RawStream {
    pub(crate) fn new(link: Link, prefix: Bytes) -> RawStream {
        RawStream {
            read: ReadHalf::after(Arc::clone(&link.conn), prefix),
            write: WriteHalf::new(Arc::clone(&link.conn)),
            link,
            reading: false,
            took: false,
        }
    }

    /// The host name given to `connect` (before resolution), or the IP address of the peer
    /// when there is none (a connect to an address, a TCP socket adopted with
    /// [`Socket::from_std`](crate::Socket::from_std)); `None` for accepted and Unix sockets.
    pub fn connect_host(&self) -> Option<&str> {
        self.link.conn.connect_host.as_deref()
    }

    /// A timer on the selector's runtime, so a layer's handshake can be bounded whatever
    /// executor polls it: `Ok(())` once `duration` passed, [`Error::SelectorClosed`](crate::Error::SelectorClosed) when
    /// polled once the selector is closed (also by the end of its runtime, whose timer cannot
    /// be polled then). The selector's close does not wake it (the end of the runtime does):
    /// the close ends a handshake through the socket's reads and writes beside it, which it
    /// wakes and fails.
    pub fn sleep(&self, duration: Duration) -> SelectorSleep {
        SelectorSleep::new(self.link.conn.core().selector(), duration)
    }

    /// Fails with the close error ([`Error::Closed`](crate::Error::Closed) or
    /// [`Error::SelectorClosed`](crate::Error::SelectorClosed)) once the socket is closed: for a
    /// layer that must not take bytes a closed socket can never send.
    ///
    /// # Errors
    ///
    /// As said.
    pub fn check_open(&self) -> io::Result<()> {
        self.link.conn.core().check_open().map_err(io::Error::from)
    }

    /// Fails with the error a send then gets from the kernel (`EPIPE`, kind
    /// [`BrokenPipe`](io::ErrorKind::BrokenPipe)) once a read of the connection reported the
    /// socket's own failure (the peer's reset): for a layer that must not take bytes a dead
    /// connection can never send (and report them written) before the socket says so. One
    /// atomic load.
    ///
    /// # Errors
    ///
    /// As said.
    #[inline]
    pub fn check_alive(&self) -> io::Result<()> {
        if self.link.conn.is_broken() {
            return Err(crate::stream::broken_pipe());
        }
        Ok(())
    }

    /// The connection.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Sends what the socket takes now, without waiting and without taking over the wake-up
    /// of a task that waits to write: for records a layer owes the peer while it reads or
    /// closes. `WouldBlock` when the socket takes nothing.
    ///
    /// # Errors
    ///
    /// The socket's error; `WouldBlock` as said.
    pub fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write.try_write(buf)
    }

    /// Reads what the connection holds now, without waiting and without taking over the
    /// wake-up of a task that waits to read: for a layer that takes in its own messages as it
    /// ends its sending (a close with input left unread is answered with a reset that
    /// destroys the output still queued). `WouldBlock` when there is nothing; the end of
    /// stream is `Ok(0)`, and the next read finds it again.
    ///
    /// # Errors
    ///
    /// The socket's error (reported again by every later read); `WouldBlock` as said.
    pub fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.read.try_read(buf);
        if read.is_ok() {
            self.took = true;
        }
        read
    }

    /// Whether the last [`poll_read`](AsyncRead::poll_read) of this stream drained the socket
    /// (it returned fewer bytes than it had room for; [`try_read`](Self::try_read) does not
    /// count): a read now would only wait, unless the reactor has seen input since (which a
    /// later read finds all the same). For a layer that reads on after it has something to
    /// return, so that it can skip a read that would only wait.
    pub fn drained(&self) -> bool {
        self.read.drained()
    }

    /// Whether a read of this stream ([`poll_read`](AsyncRead::poll_read) or
    /// [`try_read`](Self::try_read)) returned bytes or the end of stream since the last call:
    /// for a layer that has work to do only after it took in input (records it must answer).
    pub fn took_input(&mut self) -> bool {
        std::mem::take(&mut self.took)
    }

    /// Marks what follows, until called with `false`, as the layer's read: its writes (such as
    /// tokio-rustls's last attempt to send a fatal alert when a record is bad) then send what
    /// the socket takes now and, when it takes nothing, return `Pending` without registering
    /// the task for writability, and its flushes do nothing. A reading task must not take over
    /// the wake-up of a task that waits to write (that task would never be woken, not even by
    /// the close). The records a read makes the layer owe go with [`try_write`](Self::try_write)
    /// or the next write.
    pub fn reading(&mut self, on: bool) {
        self.reading = on;
    }

    /// The layer's read (a handshake, or a read of the application's) is over. A layer may
    /// poll the socket again after it has what it returns (tokio-rustls reads on after a
    /// record), and a socket read left waiting keeps its `socket_timeout` running: without this
    /// call, the next read would count the time in between as waiting and could time out at
    /// once.
    pub fn read_done(&mut self) {
        self.read.done();
    }

    /// From now on a read of the socket that returns does not end the wait of
    /// `socket_timeout`: only [`read_done`](Self::read_done) does. For a layer whose records
    /// may carry nothing for the application (TLS's), so that a peer sending only those cannot
    /// keep a read waiting for ever.
    pub fn count_waits_by_layer(&mut self) {
        self.read.set_layered();
    }

    /// The layer's write or flush (or handshake) is over: as [`read_done`](Self::read_done),
    /// for the write direction's `socket_timeout`.
    pub fn write_done(&mut self) {
        self.write.done();
    }

    /// Whether a write of this stream waited for the socket's room (not one made for a layer's
    /// read, see [`reading`](Self::reading)): the socket then keeps the wakers of the task
    /// that polled it last, also once that write went through, until a write of another task
    /// that waits replaces them (or the stream goes). For a layer that replaces them under a
    /// lock of its own, so that it can note that task and let go of it after the lock (its
    /// wakers may be its task's last references, and its drop may close the socket).
    pub fn write_waited(&self) -> bool {
        self.write.waited()
    }
}

impl AsyncRead for RawStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let read = Pin::new(&mut this.read).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read {
            this.took = true;
        }
        read
    }
}

impl AsyncWrite for RawStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.reading {
            return now(this.write.try_write(buf));
        }
        Pin::new(&mut this.write).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.reading {
            let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
            return now(this.write.try_write(first));
        }
        Pin::new(&mut this.write).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.reading {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.write).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().write).poll_shutdown(cx)
    }
}

/// A write made for a layer's read (see [`RawStream::reading`]): what the socket took, or
/// `Pending`, with no wake-up registered, when it took nothing.
fn now(sent: io::Result<usize>) -> Poll<io::Result<usize>> {
    match sent {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
        sent => Poll::Ready(sent),
    }
}
