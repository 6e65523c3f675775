//! A connected stream socket's shared state ([`Conn`]) and the raw read and write adapters its
//! channels (or a protocol layer such as TLS) wrap.
//!
//! The socket itself is owned by the [`Core`]; the adapters take it per poll, so closing releases
//! the descriptor at once, even while the channels live on in other tasks.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use net_io::{Backlog, WriteState};
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::{Instant, Sleep};

use crate::core::{Cause, CloseMode, CloseWait, Core, Owner, ReleaseHook, Setup};
use crate::group::{Drain, Group, Membership};
use crate::listener::SocketFile;
use crate::options::SocketOptions;
use crate::selector::{OpenConnection, SelectorInner, Unwinds, lock};
use crate::{Result, SocketAddress};

/// A connected stream of either family.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Reads into the unfilled part of `buf` once the socket is readable; the byte count (0 at
    /// the end of the stream).
    ///
    /// tokio's `try_read_buf` reads into uninitialised memory soundly (safe code would have to
    /// zero the buffer first). A read that returns fewer bytes than asked for has drained the
    /// socket: its readiness is cleared (as tokio's own `poll_read` does), so the next read waits
    /// for the reactor instead of making a `recv` that would only say `EAGAIN`.
    ///
    /// Not always, though: a `recv` stops short at the mark of a peer's out-of-band byte
    /// (`MSG_OOB`: TCP's urgent data, which Linux also has on Unix stream sockets), and on a
    /// Unix socket after bytes that came with descriptors (`SCM_RIGHTS`), with input queued
    /// after them; that input is read when more arrives (a readiness event), as with tokio's
    /// own streams. Clearing the readiness only on `EAGAIN` would read it at once, at the cost
    /// of that `recv` on every read that empties the socket: measured, 0.12–0.19 µs of CPU per
    /// ping-pong round trip (3–4 %), for input no common protocol sends (see guarantees.md).
    ///
    /// `readable` says whether the socket may hold input: false after a read drained it (the
    /// next read registers for readiness at once), true otherwise (the read is tried first, as
    /// tokio's `try_read` is, and the task registers only when the runtime has not seen the
    /// socket readable: a read woken by input checks the readiness once, not twice). Either way
    /// the read takes a unit of the task's cooperative budget, as tokio's own reads do.
    fn poll_read_into(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
        readable: &mut bool,
    ) -> Poll<io::Result<usize>> {
        let mut coop = if *readable {
            Some(ready!(tokio::task::coop::poll_proceed(cx)))
        } else {
            None
        };
        loop {
            if coop.is_none() {
                // `poll_read_ready` takes the budget unit itself.
                match self {
                    Stream::Tcp(s) => ready!(s.poll_read_ready(cx))?,
                    Stream::Unix(s) => ready!(s.poll_read_ready(cx))?,
                }
            }
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
            let done = match (got, outcome) {
                (Some(n), _) => {
                    *readable = n == 0 || n == wanted;
                    Ok(n)
                }
                (None, Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Not readable (any more): wait for the reactor, which takes its own unit
                    // of the budget (this one is given back as it drops).
                    *readable = false;
                    coop = None;
                    continue;
                }
                (None, outcome) => outcome,
            };
            if let Some(coop) = coop {
                coop.made_progress();
            }
            return Poll::Ready(done);
        }
    }

    /// Runs `send` once the socket is writable.
    ///
    /// The send is tried first, and the task registers for writability only when the socket
    /// takes nothing (a socket is writable far more often than not, so the send that goes
    /// through checks the readiness once, not twice); it takes a unit of the task's
    /// cooperative budget as tokio's own writes do, so a writer that never waits still yields.
    #[inline]
    fn poll_send(
        &self,
        cx: &mut Context<'_>,
        send: impl Fn(SockRef<'_>) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        loop {
            let sent = match self {
                Stream::Tcp(s) => s.try_io(Interest::WRITABLE, || send(SockRef::from(s))),
                Stream::Unix(s) => s.try_io(Interest::WRITABLE, || send(SockRef::from(s))),
            };
            match sent {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => match self {
                    Stream::Tcp(s) => ready!(s.poll_write_ready(cx))?,
                    Stream::Unix(s) => ready!(s.poll_write_ready(cx))?,
                },
                sent => {
                    coop.made_progress();
                    return Poll::Ready(sent);
                }
            }
        }
    }
}

impl Stream {
    /// Reads into `buf` once the socket holds input; the byte count (0 at the end of the
    /// stream). Unlike tokio's `read_buf` (and [`poll_read_into`](Self::poll_read_into)), a
    /// short read leaves the readiness as it is: only a read that finds nothing waits, so
    /// input queued past a peer's out-of-band byte, or after bytes that came with descriptors,
    /// is read at once. For reads off the hot path (a PROXY protocol header).
    ///
    /// Cancel safe: nothing is read unless the future completes.
    pub(crate) async fn read_some(&self, buf: &mut impl bytes::BufMut) -> io::Result<usize> {
        loop {
            let read = match self {
                Stream::Tcp(s) => {
                    s.readable().await?;
                    s.try_read_buf(buf)
                }
                Stream::Unix(s) => {
                    s.readable().await?;
                    s.try_read_buf(buf)
                }
            };
            match read {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                read => return read,
            }
        }
    }

    /// Reads what the socket holds now, without waiting and without registering a wake-up
    /// (`WouldBlock` when it holds nothing). The socket is asked even when the runtime has not
    /// yet seen it readable (input that came while its task never yielded); a reader that was
    /// woken for what this takes finds nothing and waits again, as after any spurious wake-up.
    fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        use std::io::Read as _;
        (&*SockRef::from(self)).read(buf)
    }

    /// Sends what the socket takes now, without waiting and without registering a wake-up
    /// (`WouldBlock` when it takes nothing).
    fn try_send(&self, buf: &[u8]) -> io::Result<usize> {
        #[cfg(test)]
        if let Some(code) = tests::refused_send() {
            return Err(io::Error::from_raw_os_error(code));
        }
        let send = || SockRef::from(self).send_with_flags(buf, SEND_FLAGS);
        match self {
            Stream::Tcp(s) => s.try_io(Interest::WRITABLE, send),
            Stream::Unix(s) => s.try_io(Interest::WRITABLE, send),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

/// Writes use `MSG_NOSIGNAL` where the OS has it: a peer that is gone is an `EPIPE` error, never
/// a `SIGPIPE`, even in a process that does not ignore the signal (Rust programs do; C hosts may
/// not). On Apple's systems the socket's `SO_NOSIGPIPE` does it (see
/// `adopt::ensure_no_sigpipe`).
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

/// The most bytes flush coalescing holds back; a write that would exceed it sends.
const CORK_LIMIT: usize = 64 * 1024;

/// Up to this size, a write that follows held-back bytes is copied after them and both leave
/// in one plain send; a larger one goes with them in one vectored send.
const SEND_COPY_LIMIT: usize = 4 * 1024;

/// The most slices one vectored send passes (`IOV_MAX` on Linux, macOS and the BSDs): a
/// `sendmsg` given more fails with `EMSGSIZE`, where tokio's streams (through std's `writev`)
/// send the first ones and leave the rest to the caller, as a write may.
const MAX_SLICES: usize = 1024;

const READ_DONE: u8 = 1;
const WRITE_DONE: u8 = 2;

/// No write failed (or the last failure was a timeout that a send or a flush has since made
/// good).
const CLEAN: u8 = 0;
/// The last write timed out; a later successful send (or hold) or flush makes the connection
/// clean again.
const TIMED_OUT: u8 = 1;
/// A write failed: the connection can only be reset.
const FAILED: u8 = 2;
/// A send failed for good (the kernel refused it and says why the connection is gone: see
/// [`ends_the_connection`]), or held-back bytes could not be sent: as `FAILED`, and nothing
/// more can be sent, so a write of nothing fails too, as the kernel answers a send of any size
/// then.
const SEND_FAILED: u8 = 3;

/// What a connected socket, its channels and its adapters share.
///
/// Laid out in declaration order: what every read or write reads (the backlog, the flags,
/// then the core's hot fields) first, in the allocation's first cache line or two, the rest
/// after. At 500 connections a connection's lines are rarely still cached at its next round
/// trip, so each line a round trip touches is a miss.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Conn {
    /// With flush coalescing: whether the read channel holds requests not yet read, and the
    /// written bytes held back meanwhile (they leave before any later byte, and when the reader
    /// is about to wait).
    backlog: Option<Backlog>,
    /// Which directions finished (`READ_DONE`, `WRITE_DONE`).
    done: AtomicU8,
    /// Whether a write failed: `CLEAN`, `TIMED_OUT`, `FAILED` or `SEND_FAILED`.
    write_state: AtomicU8,
    /// Whether a task is sending held bytes for a reader that could not wait for them.
    cork_task: AtomicBool,
    /// A read reported the socket's own failure (an OS error: the peer's reset): the kernel
    /// holds the connection for dead, and nothing written from now on can reach the peer.
    broken: AtomicBool,
    /// With busy polling: whether a read waits for input since the connection last received or
    /// sent something (see [`read_pending`](Self::read_pending)).
    read_waits: AtomicBool,
    /// The OS error of the connection's own failure (the peer's reset, a timeout, an
    /// unreachable host) that a send or a shutdown was told, or 0: the kernel reports it once,
    /// so a read after it finds only the end of the stream, and reports this error instead (see
    /// [`told_to_send`](Self::told_to_send)).
    failure_told_to_send: AtomicI32,
    /// The sends (and shutdowns) under way on the connection: a read that finds the end of the
    /// stream waits for those under way then, since one may have been told the connection's
    /// failure and not noted it yet (see [`sending`](Self::sending)).
    sends: CallsUnderWay,
    /// The reads under way on the connection: a shutdown that may have missed the connection's
    /// failure waits for those under way then (see [`reading`](Self::reading)).
    reads: CallsUnderWay,
    /// With the connection's places in its selector's count and its listener's group as its
    /// release hook, left when the descriptor is released (see [`Counted`]).
    core: Core<Stream, Mutex<Counted>>,
    /// What the write channel holds or threw away, once one is open.
    channel: Mutex<Option<WriteState>>,
    /// The error of the layer's session, once a read found it failed for good (see
    /// [`layer_failed`](Self::layer_failed)): the write channel's calls fail with it.
    layer_failure: Mutex<Option<LayerFailure>>,
    /// What the layer over the connection (TLS) does before a cut (see [`Conn::cut`]).
    before_cut: BeforeCut,
    /// What the layer over the connection sends of its own when a read through tokio's traits
    /// leaves nothing pending, or the task that sends what was held back sent the last of it
    /// (see [`Link::on_passed_on`](crate::transport::Link::on_passed_on)).
    layer_passed_on: LayerPassedOn,
    pub(crate) local: SocketAddress,
    pub(crate) remote: SocketAddress,
    socket_timeout: Option<Duration>,
    /// The host name given to `connect`, else a connected or adopted TCP socket's peer IP
    /// address, for TLS.
    pub(crate) connect_host: Option<String>,
    /// The proxy the connection came through, when a PROXY protocol header named the client.
    pub(crate) proxy: Option<SocketAddress>,
    /// Cancelled when a graceful shutdown of the listener or selector begins.
    pub(crate) draining: Drain,
    /// Bytes received before the socket was handed out (after a PROXY protocol header, when the
    /// header was optional and absent): the read channel's first bytes.
    received: Mutex<Bytes>,
}

/// A layer's hook for [`Link::on_passed_on`](crate::transport::Link::on_passed_on).
pub(crate) type LayerHook = Box<dyn Fn(&crate::transport::Link) + Send + Sync>;

/// Where a connection keeps its layer's [`LayerHook`].
#[derive(Default)]
pub(crate) struct LayerPassedOn(OnceLock<LayerHook>);

impl fmt::Debug for LayerPassedOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LayerPassedOn")
            .field(&self.0.get().is_some())
            .finish()
    }
}

/// A layer's last step before its connection is cut without the layer's `closing` (see
/// [`Link::before_cut`](crate::transport::Link::before_cut)); taken by the first cut.
#[derive(Default)]
struct BeforeCut(Mutex<Option<Box<dyn FnOnce() + Send>>>);

impl fmt::Debug for BeforeCut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = lock(&self.0).is_some();
        f.debug_tuple("BeforeCut").field(&set).finish()
    }
}

/// Where an open connection is counted: in its selector's count (taken over by the task that
/// sends held-back answers after a close, which keeps the descriptor) and in its listener's
/// group.
#[derive(Debug)]
pub(crate) struct Counted {
    /// Declared (so dropped) before the selector's place: see the release.
    group: Option<Membership>,
    selector: Option<OpenConnection>,
    /// The socket file a connecting Unix socket bound to, removed with the descriptor (boxed:
    /// rare, and every connection keeps this record).
    file: Option<Box<SocketFile>>,
    /// How many tasks that send held-back answers for a reader are alive (see
    /// `Conn::uncork_for_reader`; one at a time, but one may start as the last ends): such a
    /// task holds the socket while it waits for room, and lets go as the close wakes it, after
    /// the release.
    uncorking: u32,
}

/// Marks a connection's task that sends held-back answers for a reader ended, as it ends (or
/// is dropped unpolled, by a runtime shutting down).
struct Uncorking(Weak<Conn>);

impl Drop for Uncorking {
    fn drop(&mut self) {
        if let Some(conn) = self.0.upgrade() {
            lock(conn.core.on_release()).uncorking -= 1;
        }
    }
}

/// Released with the descriptor: the selector's count and the group's slot, told whether the
/// connection was cut; the socket file goes.
impl ReleaseHook for Mutex<Counted> {
    fn handed_over(&self) -> bool {
        // Taken only by the release, or before it by a close's `owe`, whose `Owed` keeps the
        // descriptor for the task that sends the held-back answers; or a task sending them for
        // a reader may hold it while it waits for room, until the close wakes it (waiting for
        // it would stall the closing thread, on a thread of one runtime until `LET_GO`).
        let counted = lock(self);
        counted.selector.is_none() || counted.uncorking > 0
    }

    fn released(&self, cause: Cause) {
        let (open, membership, file) = {
            let mut counted = lock(self);
            (
                counted.selector.take(),
                counted.group.take(),
                counted.file.take(),
            )
        };
        if let Some(file) = file {
            file.remove();
        }
        // The listener's group first, then the selector's count: the selector's shutdown
        // waits for its count only, so when it sees none open, no listener of it counts one.
        // Each leaves, for `cause`, also when the other's wake of a shutdown waiting for it
        // panics (a waker that panics, see `Unwinds`).
        let mut unwinds = Unwinds::default();
        if let Some(membership) = membership {
            unwinds.run(|| membership.leave(cause));
        }
        #[cfg(test)]
        tests::between_count_leaves();
        if let Some(open) = open {
            unwinds.run(|| open.leave(cause));
        }
        unwinds.finish();
    }
}

/// Where a connection came from: what its socket keeps of it.
pub(crate) enum Origin {
    /// `connect`, given this host (or IP literal), if any, and the socket file the socket bound
    /// to (a Unix `local_address`), if any.
    Connected {
        host: Option<String>,
        file: Option<SocketFile>,
    },
    /// A listener's `accept`.
    Accepted {
        /// The listener's group of connections.
        group: Arc<Group>,
        /// This connection's place in it.
        membership: Membership,
        /// Its place in the selector's count, taken as the group admitted it (see
        /// [`Group::admit`]).
        counted: OpenConnection,
        /// The proxy, when a PROXY protocol header named the client as `remote`.
        proxy: Option<SocketAddress>,
        /// Bytes already read from the connection that belong to the application.
        received: Bytes,
    },
}

impl Owner for Conn {
    type Io = Stream;
    type Hook = Mutex<Counted>;

    fn core(&self) -> &Core<Stream, Mutex<Counted>> {
        &self.core
    }

    /// Held-back answers go first; a connection whose writes failed is reset. Counted as cut.
    fn close_for_selector(&self) {
        self.cut();
    }
}

impl Conn {
    /// Registers a connected stream with the selector. `may_linger`: whether the stream may
    /// have a lingering `SO_LINGER` already (see `Core::may_linger`).
    ///
    /// # Errors
    ///
    /// [`Error::SelectorClosed`](crate::Error::SelectorClosed) when the selector is closed.
    pub(crate) fn open(
        selector: &Arc<SelectorInner>,
        stream: Stream,
        local: SocketAddress,
        remote: SocketAddress,
        options: &SocketOptions,
        origin: Origin,
        may_linger: bool,
    ) -> Result<Arc<Conn>> {
        let span = match &origin {
            Origin::Accepted {
                proxy: Some(proxy), ..
            } => {
                tracing::debug_span!("connection", local = %local, remote = %remote, via = %proxy)
            }
            _ => tracing::debug_span!("connection", local = %local, remote = %remote),
        };
        let (connect_host, proxy, draining, group, held, counted, received, file) = match origin {
            Origin::Connected { host, file } => (
                host,
                None,
                selector.draining().clone(),
                None,
                None,
                selector.connection_opened(),
                Bytes::new(),
                file,
            ),
            Origin::Accepted {
                group,
                membership,
                counted,
                proxy,
                received,
            } => {
                let draining = group.draining().clone();
                let key = membership.key();
                (
                    None,
                    proxy,
                    draining,
                    Some((group, key)),
                    Some(membership),
                    counted,
                    received,
                    None,
                )
            }
        };
        // Released with the descriptor (see its `ReleaseHook`).
        let counted = Mutex::new(Counted {
            group: held,
            selector: Some(counted),
            file: file.map(Box::new),
            uncorking: 0,
        });
        let setup = Setup {
            may_linger,
            ..Setup::releasing(span, counted)
        };
        let conn = Core::open(selector, stream, setup, |core| Conn {
            core,
            done: AtomicU8::new(0),
            write_state: AtomicU8::new(CLEAN),
            channel: Mutex::new(None),
            layer_failure: Mutex::new(None),
            local,
            remote,
            socket_timeout: options.socket_timeout,
            connect_host,
            proxy,
            draining,
            received: Mutex::new(received),
            backlog: options.coalesce_flushes.then(Backlog::new),
            cork_task: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            read_waits: AtomicBool::new(false),
            failure_told_to_send: AtomicI32::new(0),
            sends: CallsUnderWay::default(),
            reads: CallsUnderWay::default(),
            before_cut: BeforeCut::default(),
            layer_passed_on: LayerPassedOn::default(),
        })?;
        if let Some(backlog) = &conn.backlog {
            // A read through tokio's traits that leaves nothing pending sends what was held
            // back, as the reader's wait would (the code may stop reading while it writes).
            let weak = Arc::downgrade(&conn);
            backlog.on_passed_on(move || {
                if let Some(conn) = weak.upgrade() {
                    conn.pass_on_to_layer();
                    conn.reader_gone();
                }
            });
        }
        if let Some((group, key)) = group {
            if !group.enrol(key, &conn) {
                conn.cut();
            }
        }
        Ok(conn)
    }

    /// Closes the socket: gracefully, or with a reset when a write failed or bytes were lost,
    /// also by a write of the write channel under way as the socket was marked closed (see
    /// [`close_after`](Self::close_after)).
    pub(crate) fn close(&self) {
        self.close_as(Cause::Own);
    }

    /// Closes the socket with `mode`, as a layer decided (gracefully: after sending what is
    /// held back; what the socket does not take now is sent by a task as it drains, before the
    /// FIN).
    pub(crate) fn close_with(&self, mode: CloseMode) {
        self.close_after(&[], &[], mode, Cause::Own, false);
    }

    /// Cuts the connection: closes it, as [`close`](Self::close) does, for a graceful shutdown
    /// whose grace period ended or for the selector's close, which count it as cut.
    ///
    /// The layer over the connection runs no `closing` here (no `close_notify`: the peer
    /// sees a cut stream), but what it gave [`set_before_cut`](Self::set_before_cut) runs
    /// first: TLS takes in its own messages the socket holds (a TLS 1.3 server's session
    /// tickets, which a client that never read leaves there), so that the kernel answers the
    /// close with the FIN of a truncated stream, not with a reset that the peer reads as
    /// `ConnectionReset` and that destroys what is still queued for it.
    ///
    /// What runs first may run code the user supplied (a TLS session store from
    /// `TlsConfig::from_rustls`, which rustls hands the session tickets it takes in): a panic
    /// there closes the connection all the same, then goes on to the caller.
    pub(crate) fn cut(&self) {
        let before = lock(&self.before_cut.0).take();
        let mut unwinds = Unwinds::default();
        if let Some(before) = before {
            unwinds.run(before);
        }
        self.close_as(Cause::Cut);
        unwinds.finish();
    }

    /// Sets the layer's hook for a read through tokio's traits that leaves nothing pending, and
    /// for the end of the task that sends what was held back (once).
    pub(crate) fn set_layer_passed_on(&self, hook: LayerHook) {
        let _ = self.layer_passed_on.0.set(hook);
    }

    /// Runs the layer's hook (see [`set_layer_passed_on`](Self::set_layer_passed_on)), if it
    /// set one.
    fn pass_on_to_layer(self: &Arc<Self>) {
        if let Some(layer) = self.layer_passed_on.0.get() {
            layer(&crate::transport::Link {
                conn: Arc::clone(self),
            });
        }
    }

    /// Runs `work` from a task of the selector's runtime (see
    /// [`Link::run_soon`](crate::transport::Link::run_soon)), if the connection is still
    /// there then. The task does not keep it: a connection whose socket and channels are all
    /// dropped closes at once, also while that runtime is not running (a current-thread
    /// runtime between two `block_on`s), and the work, whose layer went with it, is not run.
    pub(crate) fn run_soon(
        self: &Arc<Self>,
        work: Box<dyn FnOnce(&crate::transport::Link) + Send>,
    ) {
        let conn = Arc::downgrade(self);
        drop(self.core.selector().handle().spawn(async move {
            if let Some(conn) = conn.upgrade() {
                work(&crate::transport::Link { conn });
            }
        }));
    }

    /// Sets what runs before a [`cut`](Self::cut) (once per connection: a later call replaces
    /// it).
    pub(crate) fn set_before_cut(&self, before: Box<dyn FnOnce() + Send>) {
        *lock(&self.before_cut.0) = Some(before);
    }

    fn close_as(&self, cause: Cause) {
        self.close_after(&[], &[], self.close_mode(), cause, true);
    }

    /// Closes the socket gracefully after `written` (what a layer still held of what was
    /// written, such as TLS records the socket did not take) and `last` (its last message,
    /// such as what TLS's `close_notify` left that the socket did not take at once): they
    /// leave after the held-back answers, as they do (see
    /// [`send_held_after_close`](Self::send_held_after_close)).
    pub(crate) fn close_sending(&self, written: &[u8], last: Bytes) {
        self.close_after(written, &last, CloseMode::Graceful, Cause::Own, false);
    }

    /// Closes the socket with `mode`; a graceful close first sends what is held back as far as
    /// the socket takes it now, and leaves what is left of it, then `last`, to a task.
    ///
    /// With `again`, a graceful close becomes a reset when, once the socket is marked closed
    /// (no write starts after), a write failed or the write channel holds unsent bytes: a
    /// write of the channel that started on another thread after `mode` was decided (its
    /// first bytes may be with the kernel, the rest never follows) must not end with FIN.
    fn close_after(&self, written: &[u8], last: &[u8], mode: CloseMode, cause: Cause, again: bool) {
        self.stop_holding();
        // The backlog's lock, once (the flag above is set without it): a `hold` on another
        // thread that saw holding still open, and decides under the lock, has finished, and
        // what it held is found below and sent; a later one sees holding ended and goes to
        // the socket, as a write under way at the close. Without it, a write could report its
        // bytes held after this close had looked, and they were lost before a clean FIN.
        if let Some(backlog) = &self.backlog {
            backlog.with_held(|_| ());
        }
        let owes = !self.send_cork_now() || !written.is_empty() || !last.is_empty();
        let owed = if mode == CloseMode::Graceful && owes {
            self.owe(cause)
        } else {
            None
        };
        #[cfg(test)]
        tests::between_close_steps();
        let mut decided = None;
        self.core.close_deciding(
            || {
                // From now on the write channel's calls fail with the close's error, so that
                // none reports bytes written after this close decided (never sent).
                self.end_channel();
                let mode = if again && mode == CloseMode::Graceful && self.write_failed() {
                    CloseMode::Reset
                } else {
                    mode
                };
                decided = Some(mode);
                mode
            },
            cause,
        );
        // The held-back answers are taken only now that the socket is marked closed: until
        // then they stay held, so that a write on another thread sends them before its own
        // bytes (once they are taken, it would find none held and overtake them); from now
        // on every write fails. A close that became a reset drops them (`Owed` resets).
        if let Some(owed) = owed.filter(|_| decided != Some(CloseMode::Reset)) {
            self.send_held_after_close(owed, written, last);
        }
    }

    /// Ends the write channel's calls: from now on they fail with the close's error (`Closed`,
    /// or `SelectorClosed` once the selector began closing), never adding bytes to its buffer
    /// that the close would not send. Before a layer's `closing` decides how the connection
    /// ends (TLS: whether `close_notify` may follow everything written), and again, a no-op
    /// then, as the socket is marked closed.
    pub(crate) fn end_channel(&self) {
        if let Some(state) = lock(&self.channel).as_ref() {
            state.end(io::Error::from(self.core.closed_error()));
        }
    }

    /// For a graceful close that leaves held-back answers to a task: the descriptor, and the
    /// connection's places in the counts, which the task keeps until they left (`None` when
    /// another close released the descriptor already, or took the places: a close under way
    /// on another thread, such as a cut racing the socket's own close, which sends what is
    /// held back itself, so that the places stay taken until it left).
    fn owe(&self, cause: Cause) -> Option<Owed> {
        let stream = self.core.io().ok()?;
        let (open, group) = {
            let mut counted = lock(self.core.on_release());
            // Taken together, by a close's `owe` or the release: never one without the other.
            counted.selector.as_ref()?;
            (counted.selector.take(), counted.group.take())
        };
        Some(Owed {
            stream: Some(stream),
            open,
            group,
            cause,
            span: self.core.span().clone(),
        })
    }

    /// A graceful close found held-back answers that the socket cannot take now. Their writes
    /// reported success, so they are owed as anything written before a close is: a task sends
    /// them as the socket drains and keeps the descriptor until then (its release then sends
    /// FIN), as the kernel goes on sending what was written before a close. A failed send, a
    /// peer that takes nothing for `socket_timeout`, or the selector's close resets the
    /// connection instead: the peer must not take the end for a clean one. So does the end of
    /// the runtime before they all left. The connection stays in its selector's count until
    /// then (`owed` holds its place, from [`owe`](Self::owe)), so that a graceful shutdown of
    /// the selector waits for them (within its grace period) instead of resetting the
    /// connection with its close.
    ///
    /// `written`, then `last`, go after the held-back answers. `owed.cause` is why the
    /// connection closes: a cut stays one in the counts, whether the answers then leave or not
    /// (and also when the task dies with its runtime unpolled).
    fn send_held_after_close(&self, mut owed: Owed, written: &[u8], last: &[u8]) {
        let Some(stream) = owed.stream.clone() else {
            return;
        };
        let mut rest = match &self.backlog {
            Some(backlog) => backlog.with_held(std::mem::take),
            None => BytesMut::new(),
        };
        rest.extend_from_slice(written);
        rest.extend_from_slice(last);
        // The layer's last message (TLS's `close_notify`) is what the peer takes for the end:
        // the connection leaves its per-address place once only that is left, after the
        // held-back answers, before it can leave (a layer leaves it itself when nothing is held
        // back: see `Link::ending`).
        let layer_end = last.len();
        let group_cut = owed.group.as_ref().map(Membership::cut_signal);
        let selector_closed = self.core.selector().token().clone();
        let handle = self.core.selector().handle().clone();
        let span = self.core.span().clone();
        let timeout = self.socket_timeout;
        #[cfg(test)]
        let gate = tests::GATE.with(|g| g.borrow_mut().take());
        let task = async move {
            #[cfg(test)]
            if let Some(gate) = gate {
                let _ = gate.await;
            }
            let group = &mut owed.group;
            let send = async {
                while !rest.is_empty() {
                    if rest.len() <= layer_end {
                        if let Some(group) = group.as_mut() {
                            group.leave_address();
                        }
                    }
                    let writable = async {
                        match &*stream {
                            Stream::Tcp(s) => s.writable().await,
                            Stream::Unix(s) => s.writable().await,
                        }
                    };
                    // A duration too large for the clock is no timeout.
                    match timeout.and_then(|limit| deadline_after(Instant::now(), limit)) {
                        Some(deadline) => tokio::time::timeout_at(deadline, writable)
                            .await
                            .map_err(|_| timed_out())??,
                        None => writable.await?,
                    }
                    // The held-back answers in a send of their own: one that took the layer's
                    // last message with them would let it leave before the place.
                    let upto = match rest.len().checked_sub(layer_end) {
                        Some(answers) if answers > 0 => answers,
                        _ => rest.len(),
                    };
                    match stream.try_send(&rest[..upto]) {
                        Ok(bytes) => {
                            tracing::trace!(parent: &span, bytes, "sent");
                            rest.advance(bytes);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok::<_, io::Error>(())
            };
            let mut cut = false;
            let delivered = tokio::select! {
                biased;
                sent = send => sent.is_ok(),
                () = selector_closed.cancelled() => {
                    cut = true;
                    false
                }
                () = async {
                    match group_cut {
                        Some(cut) => cut.await,
                        None => std::future::pending().await,
                    }
                } => {
                    cut = true;
                    false
                }
            };
            if cut {
                owed.cause = Cause::Cut;
            }
            drop(stream);
            if delivered {
                owed.delivered();
            }
        };
        drop(handle.spawn(task));
    }

    /// The backlog the read channel keeps up to date, when flushes are coalesced.
    pub(crate) fn backlog(&self) -> Option<&Backlog> {
        self.backlog.as_ref()
    }

    /// Whether writes are held back now: the reader has requests still to read.
    pub(crate) fn deferring(&self) -> bool {
        self.backlog.as_ref().is_some_and(Backlog::is_pending)
    }

    /// Writes are not held back any more (closed, or a send failed): later writes reach the
    /// socket, which reports why.
    fn stop_holding(&self) {
        if let Some(backlog) = &self.backlog {
            backlog.close();
        }
    }

    /// Holds `buf` back, if it fits; `false` when it must be sent instead (and after a failed
    /// send, so that sending reports the failure).
    fn hold(&self, buf: &[u8]) -> bool {
        self.backlog
            .as_ref()
            .is_some_and(|backlog| backlog.hold(buf, CORK_LIMIT))
    }

    /// Holds `buf` back whether or not the reader has requests pending (a layer's bytes, see
    /// `Link::hold`); `false` when it must be sent instead.
    pub(crate) fn hold_regardless(&self, buf: &[u8]) -> bool {
        self.backlog
            .as_ref()
            .is_some_and(|backlog| backlog.hold_regardless(buf, CORK_LIMIT))
    }

    /// Whether bytes are held back, checked under the backlog's lock.
    pub(crate) fn holds_bytes(&self) -> bool {
        self.backlog
            .as_ref()
            .is_some_and(|backlog| backlog.with_held(|held| !held.is_empty()))
    }

    /// Whether bytes are held back.
    fn corked(&self) -> bool {
        self.backlog.as_ref().is_some_and(Backlog::is_holding)
    }

    /// Sends what is held back as far as the socket takes it now, without waiting; whether
    /// nothing is left.
    fn send_cork_now(&self) -> bool {
        let Some(backlog) = self.backlog.as_ref().filter(|b| b.is_holding()) else {
            return true;
        };
        let Ok(stream) = self.core.io() else {
            return true;
        };
        backlog.with_held(|held| {
            let _sending = self.sending();
            while !held.is_empty() {
                match stream.try_send(held) {
                    Ok(bytes) => {
                        tracing::trace!(parent: self.core.span(), bytes, "sent");
                        self.io_moved();
                        held.advance(bytes);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                    Err(e) => {
                        // What was held back cannot be delivered (the peer is gone, or the
                        // kernel refused the send for the moment: either way these bytes,
                        // taken as written, are lost, and nothing may follow them). The write
                        // channel learns it from its next write; the close resets.
                        self.told_to_send(&e);
                        self.write_state.fetch_max(SEND_FAILED, Ordering::AcqRel);
                        self.stop_holding();
                        held.clear();
                    }
                }
            }
            true
        })
    }

    /// Before the reader waits for input: the held-back answers leave now. What the socket does
    /// not take at once is sent by a task of its own as the socket drains, so the reader neither
    /// waits for it nor takes over the wake-up of a task waiting to write.
    ///
    /// The task keeps the connection only while it sends: while it waits for the socket to
    /// drain it holds no strong reference, so a connection whose socket and channels are all
    /// dropped closes, and its close takes the held bytes over (with their `socket_timeout`,
    /// see [`send_held_after_close`](Self::send_held_after_close)).
    fn uncork_for_reader(self: &Arc<Self>) {
        if self.send_cork_now() || self.cork_task.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        let closed = self.core.close_token();
        lock(self.core.on_release()).uncorking += 1;
        let alive = Uncorking(weak.clone());
        let task = async move {
            let _alive = alive;
            loop {
                let Some(stream) = weak.upgrade().and_then(|conn| conn.core.io().ok()) else {
                    break;
                };
                let writable = async {
                    match &*stream {
                        Stream::Tcp(s) => s.writable().await,
                        Stream::Unix(s) => s.writable().await,
                    }
                };
                let drained = tokio::select! {
                    biased;
                    ready = writable => ready.is_ok(),
                    () = closed.cancelled() => false,
                };
                drop(stream);
                if !drained {
                    break;
                }
                let Some(conn) = weak.upgrade() else { return };
                if !conn.send_cork_now() {
                    continue;
                }
                conn.cork_task.store(false, Ordering::Release);
                // All held bytes left: the layer hands over what `hold` refused it for want of
                // room (TLS: the records of answers released while the socket held its most),
                // which would otherwise wait for the next write while the reader waits for
                // input (and the peer, maybe, for them).
                conn.pass_on_to_layer();
                // Bytes held after that send and before the flag was cleared found this task
                // still running and started none: they are this task's to send. (The check
                // takes the backlog's lock, which `hold` takes too, so either it sees them or
                // their reader sees the flag clear and starts a task.)
                if !conn.holds_bytes() || conn.cork_task.swap(true, Ordering::AcqRel) {
                    return;
                }
            }
            if let Some(conn) = weak.upgrade() {
                conn.cork_task.store(false, Ordering::Release);
            }
        };
        drop(self.core.selector().handle().spawn(task));
    }

    /// The layer's stream ended cleanly, though the socket's may not have (TLS: the peer's
    /// `close_notify`, after which the layer reads nothing more): the read direction is done,
    /// as the socket's own end of stream makes it.
    pub(crate) fn layer_ended(&self) {
        self.finish(READ_DONE);
    }

    /// Whether the read direction finished (the socket's end of stream, or the layer's).
    pub(crate) fn input_ended(&self) -> bool {
        self.done.load(Ordering::Acquire) & READ_DONE != 0
    }

    /// The connection leaves its place under its listener's `max_connections_per_ip` now (its
    /// `max_connections` slot and the rest of its counts go with the descriptor, as before).
    pub(crate) fn leave_address_place(&self) {
        if let Some(membership) = lock(self.core.on_release()).group.as_mut() {
            membership.leave_address();
        }
    }

    /// A reader of the connection is gone (its read channel dropped or cancelled): what was
    /// held back for it leaves now, since no reader will wait again and send it.
    pub(crate) fn reader_gone(self: &Arc<Self>) {
        if self.corked() {
            self.uncork_for_reader();
        }
    }

    /// How a plain close ends the connection: a reset once a write failed, so the peer cannot
    /// take the end for a clean one.
    pub(crate) fn close_mode(&self) -> CloseMode {
        if self.write_failed() {
            CloseMode::Reset
        } else {
            CloseMode::Graceful
        }
    }

    /// Whether the socket is closed (or its selector began closing it).
    pub(crate) fn is_closed(&self) -> bool {
        self.core.is_closed()
    }

    /// Watches the write channel's `state`: a channel that holds bytes unsent when the
    /// connection ends, or threw such bytes away, ends it as a failed write does. It replaces
    /// the state of a channel opened before (STARTTLS: the plain-text channel, which the
    /// upgrade flushed; if it had thrown bytes away, that is remembered as a failed write).
    pub(crate) fn watch_channel(&self, state: WriteState) {
        let mut channel = lock(&self.channel);
        // A close that began before this lock was taken may have looked for a channel to end
        // already (it ends it under this lock): a channel opened as it closes is ended here.
        if self.core.close_begun() {
            state.end(io::Error::from(self.core.closed_error()));
        }
        // So is one opened after a read reported the connection's failure (see `broke`), or
        // its layer's (see `layer_failed`).
        if self.is_broken() {
            state.fail(broken_pipe());
        } else if let Some(failure) = lock(&self.layer_failure).as_ref() {
            state.fail((failure.0)());
        }
        let before = channel.replace(state);
        drop(channel);
        if before.is_some_and(|before| before.lost_bytes() || before.has_unsent()) {
            self.write_state.fetch_max(FAILED, Ordering::AcqRel);
        }
    }

    /// A read reported the socket's own failure (an OS error, kept by the read half): the
    /// connection is dead. From now on its write channel's calls fail at once with the error a
    /// send then gets from the kernel (`EPIPE`), as does a shutdown (a TCP socket's would
    /// report `ENOTCONN`, which is taken for the peer's earlier close, a Unix socket's would
    /// succeed) and a layer's write ([`RawStream::check_alive`](crate::layer::RawStream::check_alive)):
    /// none may report success for bytes, or an end, that can never reach the peer. Out of
    /// line: only a failed read comes here; writes load the flag (the channel its state's).
    #[cold]
    #[inline(never)]
    fn broke(&self) {
        self.broken.store(true, Ordering::Release);
        if let Some(state) = lock(&self.channel).as_ref() {
            state.fail(broken_pipe());
        }
    }

    /// A read of the layer over the connection (TLS) found its session failed for good (the
    /// peer's fatal alert, a corrupted record), with the error `failure` makes: from now on the
    /// write channel's calls fail at once with it, as the layer's own writes do, also those
    /// that would only add bytes to the channel's buffer: none could ever reach the peer.
    pub(crate) fn layer_failed(&self, failure: LayerFailure) {
        let mut stored = lock(&self.layer_failure);
        if stored.is_some() {
            return;
        }
        let e = (failure.0)();
        *stored = Some(failure);
        drop(stored);
        if let Some(state) = lock(&self.channel).as_ref() {
            state.fail(e);
        }
    }

    /// A call other than a read (a send, a shutdown) was told the socket's error `e`: when it
    /// is the connection's own failure, which the kernel tells once (see
    /// [`connection_failure`]), the read that then finds only the end of the stream reports it
    /// instead (see `ReadHalf`'s `poll_read`). Out of line: only failures come here.
    #[cold]
    #[inline(never)]
    fn told_to_send(&self, e: &io::Error) {
        if let Some(code) = connection_failure(e) {
            let _ = self.failure_told_to_send.compare_exchange(
                0,
                code,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    /// Counts a send (or a shutdown) as under way until the guard drops; a failure told to it
    /// must be noted ([`told_to_send`](Self::told_to_send)) before then.
    ///
    /// The kernel tells the connection's failure once, to the first call: a send on one thread
    /// may take it, and a read on another find only the end of the stream, before the send's
    /// failure is noted. Such a read waits for the sends under way ([`CallsUnderWay::wait`];
    /// see `ReadHalf`'s `poll_read`), so that it reports the failure, never a clean end.
    #[inline]
    fn sending(&self) -> UnderWay<'_> {
        self.sends.begin()
    }

    /// Counts a read as under way until the guard drops; a failure of the socket told to it
    /// must be noted ([`read_failed`](Self::read_failed)) before then.
    ///
    /// As [`sending`](Self::sending), the other way: a read on one thread may take the
    /// connection's failure, and a shutdown on another find nothing that tells it the
    /// connection is gone (a TCP shutdown's `ENOTCONN` with no error left; a Unix socket's
    /// shutdown succeeds whatever the peer did), before the read noted it. Such a shutdown
    /// waits for the reads under way (see `WriteHalf`'s `poll_shutdown`).
    #[inline]
    fn reading(&self) -> UnderWay<'_> {
        self.reads.begin()
    }

    /// A read of the socket failed with `e`: a failure as the selector closes is the close;
    /// only the socket's own errors (an OS error: the peer's reset) tell the connection it is
    /// dead (see [`broke`](Self::broke)). Returns the error to report.
    #[cold]
    #[inline(never)]
    fn read_failed(&self, e: io::Error) -> io::Error {
        let e = self.core.failed(e);
        if e.raw_os_error().is_some() {
            self.broke();
        }
        e
    }

    /// A read of the connection is pending: busy polling's cue when the read begins waiting,
    /// the connection having received or sent something since a read last waited (a read
    /// that returned, an answer sent: the peer's next message may come at once). A read polled
    /// again while it waits (its task woken by something else: a timer beside it in a
    /// `select!`), or begun again after one dropped while it waited or ended by
    /// `socket_timeout`, is no new cue: it would keep a worker polling an idle connection for
    /// ever. A read pending only for its task's spent budget is none (see
    /// [`Core::reader_waits`]).
    #[inline]
    fn read_pending(&self) {
        if !self.read_waits.load(Ordering::Relaxed) && self.core.reader_waits() {
            self.read_waits.store(true, Ordering::Relaxed);
        }
    }

    /// A read returned (other than by `socket_timeout`), or bytes were sent: the next read
    /// that waits is busy polling's cue again (see [`read_pending`](Self::read_pending)). A
    /// load alone where busy polling is off.
    #[inline]
    fn io_moved(&self) {
        if self.read_waits.load(Ordering::Relaxed) {
            self.read_waits.store(false, Ordering::Relaxed);
        }
    }

    /// Whether no byte may be sent any more (`SEND_FAILED`): a send was refused for good, or
    /// held-back bytes, taken as written, could not be sent, and nothing written later may
    /// reach the peer without them. A write then fails as a write of nothing does (`EPIPE`,
    /// or the close's error), without a send: the kernel's answer after a dead connection's
    /// refusal, and the only one that leaves no gap after bytes lost for a passing reason
    /// (`ENOBUFS`).
    #[inline]
    fn sends_refused(&self) -> bool {
        self.write_state.load(Ordering::Acquire) == SEND_FAILED
    }

    /// Whether a read reported the socket's own failure (see [`broke`](Self::broke)).
    #[inline]
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// After a send went through, or a flush (or the flush a shutdown makes) found everything
    /// written with the kernel (or held back to leave before anything else): a write that
    /// timed out, and took nothing, has been made good.
    #[inline]
    fn timeout_made_good(&self) {
        let state = &self.write_state;
        if state.load(Ordering::Acquire) == TIMED_OUT {
            let _ = state.compare_exchange(TIMED_OUT, CLEAN, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Whether a write, flush or write timeout failed (and no later flush made good a timeout),
    /// or the write channel holds or threw away bytes its writes accepted: the connection must
    /// not end as if nothing was lost.
    pub(crate) fn write_failed(&self) -> bool {
        self.write_state.load(Ordering::Acquire) != CLEAN
            || lock(&self.channel)
                .as_ref()
                .is_some_and(|state| state.has_unsent() || state.lost_bytes())
    }

    /// Whether a write failed other than by timing out, or the write channel holds or threw
    /// away bytes its writes accepted (see [`Link::bytes_lost`](crate::layer::Link::bytes_lost)).
    pub(crate) fn bytes_lost(&self) -> bool {
        self.write_state.load(Ordering::Acquire) >= FAILED
            || lock(&self.channel)
                .as_ref()
                .is_some_and(|state| state.has_unsent() || state.lost_bytes())
    }

    /// Whether a listener accepted the connection (and it still holds its place there).
    fn accepted(&self) -> bool {
        lock(self.core.on_release()).group.is_some()
    }

    /// Marks one direction finished; once both are, the socket closes itself (Ktor's closes
    /// only once `close` is called and both of its channels are done).
    fn finish(&self, direction: u8) {
        let before = self.done.fetch_or(direction, Ordering::AcqRel);
        if before | direction == READ_DONE | WRITE_DONE && before != READ_DONE | WRITE_DONE {
            self.end_without_reset();
            self.close();
        }
    }

    /// Before the close of a connection whose directions both ended cleanly (its write side
    /// shut down with success, which promised everything written, then the FIN): takes off an
    /// `SO_LINGER` of 0 (the builder's `linger(Duration::ZERO)`, or one set through
    /// `with_sock_ref`), which would make that close a reset that throws away what the kernel
    /// still has for the peer. A reset the close decides itself (a write failed since) still
    /// resets.
    fn end_without_reset(&self) {
        if !self.core.may_linger() {
            return;
        }
        if let Ok(stream) = self.core.io() {
            let socket = SockRef::from(&*stream);
            if matches!(socket.linger(), Ok(Some(time)) if time.is_zero()) {
                // Best effort: a socket that refuses it closes as it would have.
                let _ = socket.set_linger(None);
            }
        }
    }

    fn timer(&self) -> Option<Timer> {
        Some(Timer::new(self.socket_timeout?))
    }

    /// Whether `socket_timeout` is zero: every wait then fails at once.
    pub(crate) fn times_out_at_once(&self) -> bool {
        self.socket_timeout.is_some_and(|t| t.is_zero())
    }
}

/// The descriptor of a closed connection whose held-back answers a task still sends, and its
/// place in the selector's count. Dropped before they all left (a failed send, a timeout, the
/// selector's close, the task dropped with its runtime), it resets the connection: the peer
/// must not take the end for a clean one.
struct Owed {
    stream: Option<Arc<Stream>>,
    open: Option<OpenConnection>,
    /// Its place in its listener's group, so that the listener's shutdown waits for it too.
    group: Option<Membership>,
    /// Why the connection ends, for the selector's count.
    cause: Cause,
    /// The connection's span, for the event of the reset (the `closed` event, logged as the
    /// close began, said `reset=false`).
    span: tracing::Span,
}

impl Owed {
    /// Everything left: the descriptor is released gracefully (its release sends the FIN).
    fn delivered(mut self) {
        let cause = self.cause;
        let stream = self.stream.take();
        let open = self.open.take();
        let group = self.group.take();
        // The kernel's close may wait for the peer (`SO_LINGER`): not on a runtime thread. (A
        // runtime shutting down drops the closure instead, and with it all three.) The counts
        // first: the peer may connect again as soon as it sees the FIN (see `Core::release`).
        drop(tokio::task::spawn_blocking(move || {
            // The group before the selector's count (see `Counted`'s release).
            if let Some(group) = group {
                group.leave(cause);
            }
            if let Some(open) = open {
                open.leave(cause);
            }
            drop(stream);
        }));
    }
}

impl Drop for Owed {
    fn drop(&mut self) {
        // The counts before the reset, as before a FIN (see `Core::release`).
        // The group before the selector's count (see `Counted`'s release).
        let stream = self.stream.take();
        if let Some(group) = self.group.take() {
            group.leave(self.cause);
        }
        if let Some(open) = self.open.take() {
            open.leave(self.cause);
        }
        if let Some(stream) = stream {
            let _ = SockRef::from(&*stream).set_linger(Some(Duration::ZERO));
            tracing::debug!(parent: &self.span, "held-back answers not delivered: connection reset");
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Dropped without `close` (the socket and its channels all gone): a connection whose
        // writes failed still ends with a reset.
        self.close();
    }
}

/// The inactivity timer of `socket_timeout`: armed when an operation starts waiting,
/// disarmed by progress.
///
/// Arming only notes the deadline: the sleep is moved (a timer-wheel update) only when it
/// fires before the deadline it serves, so a busy connection moves it once per `duration`, not
/// once per wait; and it is polled again only when it fired, another task waits, or its last
/// poll was refused for the task's spent cooperative budget. A sleep left behind by a disarmed
/// timer may wake its task once, for nothing. The sleep is made by the first wait (a direction
/// that never waits, such as an idle connection's writes, has none).
///
/// Laid out in this order (`repr(C)`): an operation that does not wait reads `duration` (where
/// `Option<Timer>` keeps whether there is a timer) and writes `deadline`, next to the
/// [`Half`]'s connection; a wait reads on.
#[derive(Debug)]
#[repr(C)]
struct Timer {
    duration: Duration,
    /// When the waiting operation times out; `None` while disarmed.
    deadline: Option<Instant>,
    /// The deadline `sleep` is set for (kept here: a new wait compares it with the clock
    /// without reading the sleep, which is another allocation, a cache miss at every wait of
    /// a connection among hundreds).
    due: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
    /// The waker `sleep` was last polled with, since it last moved.
    waker: Option<Waker>,
}

impl Timer {
    fn new(duration: Duration) -> Timer {
        Timer {
            duration,
            sleep: None,
            due: None,
            deadline: None,
            waker: None,
        }
    }

    /// Whether the operation waited `duration` without progress, or the selector closed (the
    /// sleep is not polled then: see [`SelectorInner::poll_sleep`]). A duration too large for
    /// the clock never expires. The sleep is registered with the timer of `selector`'s runtime,
    /// and the deadline read on its clock, whatever executor polls.
    ///
    /// Inlined into every wait: the common case (the sleep due at or before this wait's
    /// deadline, not fired, due to wake this task) reads the clock once at the start of a wait
    /// and compares; the rest is a call.
    #[inline]
    fn poll_expired(&mut self, cx: &mut Context<'_>, selector: &SelectorInner) -> bool {
        let deadline = match self.deadline {
            Some(deadline) => {
                // A wait polled again: whether its sleep fired, the sleep says.
                if let (Some(sleep), Some(waker)) = (&self.sleep, &self.waker) {
                    if self.due <= Some(deadline)
                        && !sleep.is_elapsed()
                        && waker.will_wake(cx.waker())
                    {
                        return false;
                    }
                }
                deadline
            }
            None => {
                let now = selector.now();
                let Some(deadline) = deadline_after(now, self.duration) else {
                    return false;
                };
                self.deadline = Some(deadline);
                // A new wait: a sleep fires at or after its deadline, on this clock, so one due
                // later than now has not fired, and the sleep need not be read.
                if self.due.is_some_and(|due| now < due && due <= deadline)
                    && self
                        .waker
                        .as_ref()
                        .is_some_and(|waker| waker.will_wake(cx.waker()))
                    && !selector.is_closed()
                {
                    return false;
                }
                deadline
            }
        };
        self.poll_sleep(cx, selector, deadline)
    }

    /// [`poll_expired`](Self::poll_expired) past its common case.
    #[inline(never)]
    fn poll_sleep(
        &mut self,
        cx: &mut Context<'_>,
        selector: &SelectorInner,
        deadline: Instant,
    ) -> bool {
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                if sleep.deadline() > deadline {
                    sleep.as_mut().reset(deadline);
                    self.due = Some(deadline);
                    self.waker = None;
                }
                sleep
            }
            None => {
                let _runtime = selector.handle().enter();
                self.due = Some(deadline);
                self.sleep
                    .insert(Box::pin(tokio::time::sleep_until(deadline)))
            }
        };
        // Not fired, and due to wake this task (at or before `deadline`): nothing to do.
        if !sleep.is_elapsed()
            && self
                .waker
                .as_ref()
                .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            return false;
        }
        // Polled under the selector's guard: the runtime of the selector may end on another
        // thread (its timer then panics when polled); the poll then fails with its close.
        loop {
            match selector.poll_sleep(sleep.as_mut(), cx) {
                Poll::Pending => break,
                Poll::Ready(Ok(())) if sleep.deadline() < deadline => {
                    // It fired for an earlier wait: on to this one's deadline.
                    sleep.as_mut().reset(deadline);
                    self.due = Some(deadline);
                }
                // Elapsed, or the selector closed: the wait is over (the caller tells which).
                Poll::Ready(_) => {
                    self.deadline = None;
                    self.waker = None;
                    return true;
                }
            }
        }
        // A poll refused because the task's cooperative budget is spent registered nothing
        // (a new sleep is not even in the timer wheel): the next poll must poll it again. A
        // pending poll gives back the budget it took, so what is left now is what it found.
        self.waker = tokio::task::coop::has_budget_remaining().then(|| cx.waker().clone());
        false
    }

    /// Makes this task the one the sleep wakes, in place of another task's waker that it may
    /// keep (a wait of that task which this one takes over: see `Half::take_over_send`), which
    /// goes here. Nothing else changes: whether the wait is over is still for the next
    /// [`poll_expired`](Self::poll_expired) to say.
    #[cold]
    #[inline(never)]
    fn take_over(&mut self, cx: &mut Context<'_>, selector: &SelectorInner) {
        let Some(sleep) = &mut self.sleep else {
            return;
        };
        if self
            .waker
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            return;
        }
        // As `poll_sleep` keeps it: a fired sleep (or a closed selector) keeps no waker.
        self.waker = match selector.poll_sleep(sleep.as_mut(), cx) {
            Poll::Pending => tokio::task::coop::has_budget_remaining().then(|| cx.waker().clone()),
            Poll::Ready(_) => None,
        };
    }

    /// The operation is over: the next one that waits starts afresh.
    fn disarm(&mut self) {
        self.deadline = None;
    }
}

/// `now + duration`, or `None` (no timeout) for a duration too large for the clock: also one
/// that ends in the clock's last millisecond, which tokio's timer would round up past the end
/// of the clock (an `Instant + Duration` that panics).
fn deadline_after(now: Instant, duration: Duration) -> Option<Instant> {
    now.checked_add(duration)
        .filter(|deadline| deadline.checked_add(Duration::from_millis(1)).is_some())
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, net_io::Error::Timeout)
}

/// Whether `e` is `socket_timeout`'s (see [`timed_out`]), not the OS's `ETIMEDOUT` (a dead
/// connection).
fn is_socket_timeout(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::TimedOut && e.raw_os_error().is_none()
}

/// The state one direction's adapter keeps: the connection, the wake-up on close, the timer.
///
/// Laid out in this order (`repr(C)`), as the read and write halves are: what every operation
/// reads first, what a wait adds after, so that an operation that does not wait touches as few
/// cache lines as it can (a connection's among hundreds are not in the core's cache).
#[derive(Debug)]
#[repr(C)]
struct Half {
    conn: Arc<Conn>,
    timer: Option<Timer>,
    wait: CloseWait,
}

impl Half {
    fn new(conn: Arc<Conn>) -> Half {
        Half {
            timer: conn.timer(),
            conn,
            wait: CloseWait::default(),
        }
    }

    /// Polls the send `op` (see [`polled`](Self::polled)), counted as under way
    /// ([`Conn::sending`]) while it runs; a failure of the connection told to it is noted
    /// before the count drops.
    #[inline]
    fn poll_send<R>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(&Stream, &mut Context<'_>) -> Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        let polled = {
            let conn = &*self.conn;
            let _sending = conn.sending();
            let polled = conn.core.poll_io(cx, &mut self.wait, op);
            if let Poll::Ready(Err(e)) = &polled {
                conn.told_to_send(e);
            }
            polled
        };
        self.polled(cx, false, polled)
    }

    /// Polls the read `op` (see [`polled`](Self::polled)), counted as under way
    /// ([`Conn::reading`]) while it runs; a failure of the socket told to it is noted before
    /// the count drops.
    #[inline]
    fn poll_recv<R>(
        &mut self,
        cx: &mut Context<'_>,
        layered: bool,
        op: impl FnOnce(&Stream, &mut Context<'_>) -> Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        let polled = {
            let conn = &*self.conn;
            let _reading = conn.reading();
            match conn.core.poll_io(cx, &mut self.wait, op) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(conn.read_failed(e))),
                polled => polled,
            }
        };
        self.polled(cx, layered, polled)
    }

    /// Makes this task the one a write waiting for room wakes (the socket's writability, the
    /// wake-up on close, the timer), in place of another task that polled this half last:
    /// `Pending` while the socket has no room. For a send made under a lock that the socket's
    /// close takes (the held-back bytes'): the other task's wakers go here, before it, since
    /// one may be the last reference to its task (an executor whose pending tasks only their
    /// wakers keep), whose drop may close this socket on this thread. Also when the socket has
    /// room now: the send under the lock may take only part of it, then wait, and put this
    /// task's wakers in place of the other task's there.
    #[cold]
    #[inline(never)]
    fn take_over_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = self.conn.core.poll_io(cx, &mut self.wait, |s, cx| match s {
            Stream::Tcp(s) => s.poll_write_ready(cx),
            Stream::Unix(s) => s.poll_write_ready(cx),
        });
        match polled {
            // Room: the send under the lock goes on (the timer is the send's to end), this
            // task's wakers in place of the other's.
            Poll::Ready(Ok(())) => {
                let core = &self.conn.core;
                if self.wait.poll(cx, core).is_ready() {
                    return Poll::Ready(Err(core.closed_error().into()));
                }
                if let Some(timer) = &mut self.timer {
                    timer.take_over(cx, core.selector());
                }
                Poll::Ready(Ok(()))
            }
            polled => self.polled(cx, false, polled),
        }
    }

    /// What an operation's poll returns once its `op` was polled: a pending operation that
    /// outlives `socket_timeout` fails with a timeout.
    ///
    /// With `layered`, an operation that completes leaves the timer armed: the layer above
    /// (TLS) says when its own operation is over ([`done`](Self::done)), so that records that
    /// carry nothing for the application do not count as progress.
    #[inline(always)]
    fn polled<R>(
        &mut self,
        cx: &mut Context<'_>,
        layered: bool,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Ready(r) => {
                if !layered {
                    self.done();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let selector = self.conn.core.selector();
                let expired = self
                    .timer
                    .as_mut()
                    .is_some_and(|t| t.poll_expired(cx, selector));
                if expired {
                    Poll::Ready(Err(self.expired()))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    /// Why a wait whose timer said it is over failed: the close, when the selector (or the
    /// socket) closed meanwhile (the timer is not polled then), else the timeout.
    #[cold]
    #[inline(never)]
    fn expired(&self) -> io::Error {
        let core = &self.conn.core;
        if core.is_closed() || core.selector().is_closed() {
            core.closed_error().into()
        } else {
            timed_out()
        }
    }

    /// The operation is over: the next one that waits starts a fresh timer.
    fn done(&mut self) {
        if let Some(timer) = &mut self.timer {
            timer.disarm();
        }
    }
}

impl Drop for Half {
    fn drop(&mut self) {
        self.wait.leave(&self.conn.core);
    }
}

/// The calls of one kind (sends, or reads) under way on a connection, for a caller that must
/// see what each call that began before a moment noted: it [`wait`](Self::wait)s for the calls
/// under way then, not for those that begin later (a busy writer on another thread, say,
/// whose sends follow one another).
///
/// Counted in two epochs: bit 31 says which is current, bits 0–14 count the calls that began
/// in epoch 0, bits 16–30 those that began in epoch 1. A call counts itself in the epoch
/// current as it counts itself (a compare-exchange), before its system call, and uncounts
/// itself after it noted what the call was told (a `Release` subtract); a waiter makes the
/// other epoch current and waits until nothing is counted in the one it ended. One waiter at a
/// time per counter: the sends' is the read half (one per connection, as it finds the end of
/// the stream), the reads' the write half's shutdown.
///
/// Why a waiter misses nothing: a call whose system call took the connection's failure before
/// the waiter's own call (a read that found the end it left; the kernel's lock on the socket
/// orders the two) had counted itself before that, so before the waiter ended the epoch, and
/// in the epoch it ended; the waiter sees it counted, and once its count drops (the `Acquire`
/// load that finds it dropped reads the subtract, or a later change of the same word) sees its
/// note. A call counted after the waiter ended the epoch makes its system call after the
/// waiter's: it cannot have taken what the waiter's call missed.
#[derive(Debug, Default)]
struct CallsUnderWay(AtomicU32);

/// Which epoch is current (see [`CallsUnderWay`]).
const EPOCH: u32 = 1 << 31;
/// The count of each epoch.
const COUNT: [u32; 2] = [0x7FFF, 0x7FFF << 16];

impl CallsUnderWay {
    /// Counts a call as under way until the guard drops.
    #[inline]
    fn begin(&self) -> UnderWay<'_> {
        // Counted in the epoch current as it counts itself (one compare-exchange): a call
        // counted in an epoch read before a waiter ended it could land in a slot that is no
        // longer the one the next waiter ends.
        let mut word = self.0.load(Ordering::Relaxed);
        #[cfg(test)]
        tests::between_epoch_and_count();
        loop {
            // 1 << 0 in epoch 0, 1 << 16 in epoch 1 (bit 31 moved to bit 4).
            let one = 1 << ((word >> 27) & 16);
            match self.0.compare_exchange_weak(
                word,
                word + one,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return UnderWay {
                        calls: &self.0,
                        one,
                    };
                }
                Err(now) => word = now,
            }
        }
    }

    /// Returns once every call under way now is over, and what it noted can be seen. A call
    /// takes a system call's time (microseconds) after the kernel answered it, so this spins
    /// briefly, then yields the thread until it is over; calls that begin meanwhile are not
    /// waited for.
    #[inline]
    fn wait(&self) {
        if self.0.load(Ordering::Acquire) & !EPOCH != 0 {
            self.wait_for_those_under_way();
        }
    }

    /// [`wait`](Self::wait), when calls are under way: ends their epoch, and waits for them.
    #[cold]
    #[inline(never)]
    fn wait_for_those_under_way(&self) {
        let before = self.0.fetch_xor(EPOCH, Ordering::AcqRel);
        let ended = COUNT[usize::from(before & EPOCH != 0)];
        let mut spins = 0_u32;
        while self.0.load(Ordering::Acquire) & ended != 0 {
            if spins < 64 {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// A send or a read under way on a connection, counted until it drops (see
/// [`Conn::sending`], [`Conn::reading`]).
struct UnderWay<'a> {
    calls: &'a AtomicU32,
    /// What it added: one call, in the epoch current when it began.
    one: u32,
}

impl Drop for UnderWay<'_> {
    #[inline]
    fn drop(&mut self) {
        self.calls.fetch_sub(self.one, Ordering::Release);
    }
}

/// Bytes a read half returns before the socket's (received before the socket was handed
/// out). Boxed, and only while there are some: most connections have none, and a read half is
/// touched on every read, so it is 24 bytes smaller this way.
#[derive(Debug, Default)]
struct Early(Option<Box<Bytes>>);

impl Early {
    fn new(bytes: Bytes) -> Early {
        Early((!bytes.is_empty()).then(|| Box::new(bytes)))
    }

    fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The first `max` bytes (all of them when fewer), taken.
    fn take_up_to(&mut self, max: usize) -> Bytes {
        let Some(bytes) = &mut self.0 else {
            return Bytes::new();
        };
        let taken = bytes.split_to(max.min(bytes.len()));
        if bytes.is_empty() {
            self.0 = None;
        }
        taken
    }

    /// All of them, taken.
    fn take_all(&mut self) -> Bytes {
        self.0.take().map(|bytes| *bytes).unwrap_or_default()
    }
}

/// The read direction of a connected socket, as an [`AsyncRead`].
#[doc(hidden)]
#[derive(Debug)]
#[repr(C)]
pub struct ReadHalf {
    /// Bytes received before the socket was handed out, read first.
    received: Early,
    /// The OS error a read of the socket failed with, reported again by every later read: the
    /// kernel reports a reset once and an end of stream after it, which a reader without a
    /// channel to remember the failure (a `SocketStream`, a TLS layer) would take for a clean
    /// end or a truncation. (`ECONNRESET` also when a send was told of the reset first, and
    /// the read found that end of stream, and likewise a timeout: see
    /// `Conn::failure_told_to_send`.)
    failed: Option<i32>,
    /// The end of stream was read: later reads read it again (once both directions are done
    /// the socket closes itself, and a read of a closed socket would fail).
    ended: bool,
    /// Whether the socket may hold input: false once a read drained it, until the read that
    /// waits for the reactor (see `Stream::poll_read_into`).
    readable: bool,
    /// A protocol layer's reads: a socket read that returns does not end the wait of
    /// `socket_timeout`; the layer's own read that returns does ([`done`](Self::done)).
    layered: bool,
    /// Last: what every read checks comes first (see [`Half`]).
    half: Half,
}

impl ReadHalf {
    pub(crate) fn new(conn: Arc<Conn>) -> ReadHalf {
        Self::after(conn, Bytes::new())
    }

    /// A read half whose first bytes are `earlier` (bytes a channel that is gone read from the
    /// socket, for STARTTLS), then the bytes the connection keeps (received before the socket
    /// was handed out, or given back by the read half before this one: see `Drop`), then the
    /// socket's.
    pub(crate) fn after(conn: Arc<Conn>, earlier: Bytes) -> ReadHalf {
        let kept = std::mem::take(&mut *lock(&conn.received));
        let received = match (earlier.is_empty(), kept.is_empty()) {
            (_, true) => earlier,
            (true, false) => kept,
            (false, false) => [earlier, kept].concat().into(),
        };
        ReadHalf {
            half: Half::new(conn),
            received: Early::new(received),
            failed: None,
            ended: false,
            readable: true,
            layered: false,
        }
    }

    /// From now on only [`done`](Self::done) ends a read's wait (see `layered`).
    pub(crate) fn set_layered(&mut self) {
        self.layered = true;
    }

    /// A protocol layer's read is over, though a read of the socket it made may still be
    /// waiting: the next read's wait starts a fresh `socket_timeout`.
    pub(crate) fn done(&mut self) {
        self.half.done();
    }

    /// Whether the last read drained the socket (it returned less than it asked for: see
    /// `readable`): a read now waits, unless the reactor has seen input since.
    pub(crate) fn drained(&self) -> bool {
        !self.readable && self.received.is_empty() && self.failed.is_none() && !self.ended
    }

    /// Reads what is there now, without waiting and without registering a wake-up
    /// (`WouldBlock` when nothing is): for input a protocol layer takes in as it ends its
    /// sending. The end of stream is `Ok(0)`, left for the next read to find; a socket error
    /// is final, as a read's. What it returns makes the next read that waits busy polling's
    /// cue, as a read's does (see [`Conn::read_pending`]).
    pub(crate) fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.received.is_empty() {
            let early = self.received.take_up_to(buf.len());
            buf[..early.len()].copy_from_slice(&early);
            return Ok(early.len());
        }
        if let Some(code) = self.failed {
            return Err(io::Error::from_raw_os_error(code));
        }
        if self.ended {
            return Ok(0);
        }
        let conn = &self.half.conn;
        let stream = conn.core.io().map_err(io::Error::from)?;
        let reading = conn.reading();
        match stream.try_recv(buf) {
            Err(e)
                if !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                // As a waiting read's.
                let e = conn.read_failed(e);
                drop(reading);
                drop(stream);
                Err(self.read_failed(e))
            }
            Err(e) => Err(e),
            // Input received, as a read's: the next read that waits is busy polling's cue.
            Ok(n) => {
                conn.io_moved();
                Ok(n)
            }
        }
    }

    /// A read failed with `e`, which [`Conn::read_failed`] saw when the socket's read failed:
    /// only the socket's own errors (an OS error: the peer's reset) are final, kept for every
    /// later read; a timeout or a close is reported by the next read as it finds things then.
    /// Returns the error to report.
    #[cold]
    #[inline(never)]
    fn read_failed(&mut self, e: io::Error) -> io::Error {
        self.failed = e.raw_os_error();
        e
    }
}

impl Drop for ReadHalf {
    /// Gives the bytes received before the socket was handed out and not read yet back to the
    /// connection, for the read half that follows (a layer's, after STARTTLS): a channel that
    /// read nothing of them before it was dropped must not lose them. They come after whatever
    /// the dropped channel had buffered, which the next read half gets first.
    ///
    /// Answers held back while its reader had requests pending leave now: no reader waits on
    /// this half any more, so none would send them before the next write or the close.
    fn drop(&mut self) {
        self.half.conn.reader_gone();
        if !self.received.is_empty() {
            let early = self.received.take_all();
            let mut kept = lock(&self.half.conn.received);
            *kept = if kept.is_empty() {
                early
            } else {
                [&early[..], &kept[..]].concat().into()
            };
        }
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if !this.received.is_empty() {
            buf.put_slice(&this.received.take_up_to(buf.remaining()));
            return Poll::Ready(Ok(()));
        }
        if let Some(code) = this.failed {
            return Poll::Ready(Err(io::Error::from_raw_os_error(code)));
        }
        if this.ended {
            return Poll::Ready(Ok(()));
        }
        let half = &mut this.half;
        if half.conn.corked() {
            half.conn.uncork_for_reader();
        }
        let readable = &mut this.readable;
        let polled = half.poll_recv(cx, this.layered, |s, cx| {
            s.poll_read_into(cx, buf, readable)
        });
        match &polled {
            Poll::Pending => {
                // The next poll comes once the reactor saw input (or for another reason: then
                // the read finds nothing and waits again).
                this.readable = true;
                half.conn.read_pending();
            }
            // `socket_timeout` ended the wait: nothing came, so the read that waits next is no
            // new cue for busy polling (a server that reads again after each timeout would keep
            // a worker polling its idle connection).
            Poll::Ready(Err(e)) if is_socket_timeout(e) => {}
            Poll::Ready(_) => half.conn.io_moved(),
        }
        let n = match ready!(polled) {
            Ok(n) => n,
            Err(e) => return Poll::Ready(Err(this.read_failed(e))),
        };
        if n == 0 {
            let conn = &half.conn;
            // An end of stream caused by our own close (of this socket's peer through the same
            // selector) reports the close.
            if conn.core.is_closed() {
                return Poll::Ready(Err(conn.core.closed_error().into()));
            }
            // A send on another thread may have been told the connection's failure, which left
            // this end, and not noted it yet (see `Conn::sending`).
            conn.sends.wait();
            let told = conn.failure_told_to_send.load(Ordering::Acquire);
            if told != 0 {
                // The connection failed (the peer's reset, a timeout), and a send, not a read,
                // was told (the kernel tells once): this end of the stream is the failure's,
                // never the peer's clean end. Reported as a read that met it would have, and
                // again by every later read.
                this.failed = Some(told);
                conn.broke();
                return Poll::Ready(Err(io::Error::from_raw_os_error(told)));
            }
            this.ended = true;
            conn.finish(READ_DONE);
        }
        Poll::Ready(Ok(()))
    }
}

/// The write direction of a connected socket, as an [`AsyncWrite`]. Writes go to the kernel at
/// once (`poll_flush` has nothing to do).
#[doc(hidden)]
#[derive(Debug)]
#[repr(C)]
pub struct WriteHalf {
    /// First: see [`Half`].
    shut_down: bool,
    half: Half,
}

impl WriteHalf {
    pub(crate) fn new(conn: Arc<Conn>) -> WriteHalf {
        WriteHalf {
            half: Half::new(conn),
            shut_down: false,
        }
    }

    /// A protocol layer's write or flush is over, though a write to the socket it made may
    /// still be waiting: the next write's wait starts a fresh `socket_timeout`.
    pub(crate) fn done(&mut self) {
        self.half.done();
    }

    /// Whether a send of this half waited (for the socket's room, or its task's spent budget):
    /// the socket then keeps the wakers of the task that polled it last, after the send went
    /// through too, until a wait of another task replaces them or the half goes.
    pub(crate) fn waited(&self) -> bool {
        self.half.wait.is_registered()
    }

    /// Sends what the socket takes now, without waiting and without taking over the wake-up of
    /// a task waiting to write (`WouldBlock` when it takes nothing). For bytes a protocol layer
    /// owes the peer while it reads.
    pub(crate) fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.shut_down {
            return Err(broken_pipe());
        }
        let conn = &self.half.conn;
        if conn.sends_refused() {
            return self.nothing_written();
        }
        // Held-back bytes leave first. When they cannot all leave now, these join them, or,
        // when they do not fit, wait: sent now, they would overtake bytes written before them.
        if !conn.send_cork_now() {
            return if conn.hold(buf) {
                Ok(buf.len())
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let stream = conn.core.io().map_err(io::Error::from)?;
        let sending = conn.sending();
        let result = stream.try_send(buf);
        match &result {
            // A send like any other (a TLS `close_notify`, a KeyUpdate's reply): traced as
            // the crate's docs say of every send of a stream socket.
            Ok(bytes) => {
                tracing::trace!(parent: conn.core.span(), bytes, "sent");
                conn.io_moved();
            }
            Err(e) => conn.told_to_send(e),
        }
        drop(sending);
        self.record(result)
    }

    /// The result of a write of nothing: `Ok(0)`, or, once the socket's close began (`close`,
    /// a cut, the selector's close), the close's error, as a write of something gets (and as
    /// TLS's write of nothing); once a read reported the connection's failure, or a send was
    /// refused for good (the peer's reset told to a write: see [`ends_the_connection`]; not a
    /// send refused for the moment, `ENOBUFS`) or held-back bytes could not be sent, `EPIPE`,
    /// as a send of any size then gets (tokio's `TcpStream`'s write of nothing too), and as
    /// TLS's write of nothing and the write channel's.
    fn nothing_written(&self) -> io::Result<usize> {
        let conn = &self.half.conn;
        if conn.core.close_begun() {
            return Err(conn.core.closed_error().into());
        }
        if conn.is_broken() || conn.sends_refused() {
            return Err(broken_pipe());
        }
        Ok(0)
    }

    #[inline]
    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        send: impl Fn(SockRef<'_>) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        let result = ready!(self.half.poll_send(cx, |s, cx| s.poll_send(cx, send)));
        if let Ok(bytes) = &result {
            tracing::trace!(parent: self.half.conn.core.span(), bytes, "sent");
            self.half.conn.io_moved();
        }
        Poll::Ready(self.record(result))
    }

    /// Marks the connection's writes failed after an error (a close is not one); after a send,
    /// a timed-out write is made good.
    #[inline]
    fn record(&self, result: io::Result<usize>) -> io::Result<usize> {
        match result {
            Ok(bytes) => {
                // Bytes went on after a write that timed out, which took nothing: the stream
                // has no gap where it stopped (the caller retried it, or went on without it),
                // as after a flush. A close need not reset it any more.
                self.half.conn.timeout_made_good();
                Ok(bytes)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(e),
            Err(e) => Err(self.record_failure(e)),
        }
    }

    /// [`record`](Self::record) for a failed send: its error, which is the close once the
    /// selector is closed (see [`Core::failed`]).
    #[inline(never)]
    fn record_failure(&self, e: io::Error) -> io::Error {
        // A close is not a write failure: the close itself decided how the connection ends.
        if !self.half.conn.core.is_closed() {
            // `socket_timeout`'s, not the OS's `ETIMEDOUT` (the connection is dead then).
            let state = if is_socket_timeout(&e) {
                TIMED_OUT
            } else if ends_the_connection(&e) {
                SEND_FAILED
            } else {
                // Refused for now (short of memory: `ENOBUFS`, `ENOMEM`), the connection alive:
                // the call took nothing, and a later one may go through (a write of nothing is
                // `Ok(0)`); a failed write all the same, so the close resets.
                FAILED
            };
            self.half
                .conn
                .write_state
                .fetch_max(state, Ordering::AcqRel);
            if state == SEND_FAILED {
                self.half.conn.stop_holding();
            }
        }
        self.half.conn.core.failed(e)
    }
}

impl WriteHalf {
    /// Sends `buf`, after what is held back: both go in one system call where the
    /// socket takes them; returns how many bytes of `buf` were sent (none of them before every
    /// held byte left; an empty `buf`, for a flush or a shutdown, once nothing is held back).
    #[inline(always)]
    fn poll_send_after_cork(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &self.half.conn.backlog {
            Some(backlog) if backlog.is_holding() => {
                let held = backlog.clone();
                self.poll_send_held(cx, buf, &held)
            }
            // Nothing held back: the plain path.
            _ if buf.is_empty() => Poll::Ready(Ok(0)),
            _ => self.poll_send(cx, |s| s.send_with_flags(buf, SEND_FLAGS)),
        }
    }

    /// [`poll_send_after_cork`](Self::poll_send_after_cork) while bytes may be held back in
    /// `held` (kept out of line: the plain path is the hot one).
    #[inline(never)]
    fn poll_send_held(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
        held: &Backlog,
    ) -> Poll<io::Result<usize>> {
        // The sends below wait for room under the lock of the held-back bytes, which the
        // socket's close takes: the wakers of another task that waited here last go before it
        // (see `take_over_send`).
        if !self.half.wait.stands(cx) {
            if let Err(e) = ready!(self.half.take_over_send(cx)) {
                return Poll::Ready(self.record(Err(e)));
            }
        }
        loop {
            let sent = held.with_held(|held| {
                if held.is_empty() {
                    return Poll::Ready(Ok::<_, io::Error>(None));
                }
                let before = held.len();
                if buf.len() > SEND_COPY_LIMIT || before + buf.len() > CORK_LIMIT {
                    let sent = ready!(self.poll_send(cx, |s| {
                        let bufs = [io::IoSlice::new(held), io::IoSlice::new(buf)];
                        s.send_vectored_with_flags(&bufs, SEND_FLAGS)
                    }))?;
                    held.advance(sent.min(before));
                    return Poll::Ready(Ok(went(held, sent.saturating_sub(before))));
                }
                // A small `buf` is copied after the held bytes: one plain send, cheaper than a
                // vectored one. What of `buf` does not go is taken back out.
                held.extend_from_slice(buf);
                let result = self.poll_send(cx, |s| s.send_with_flags(held, SEND_FLAGS));
                let Poll::Ready(Ok(sent)) = result else {
                    held.truncate(before);
                    return result.map_ok(|_| None);
                };
                held.advance(sent);
                let of_buf = sent.saturating_sub(before);
                held.truncate(held.len() - (buf.len() - of_buf));
                Poll::Ready(Ok(went(held, of_buf)))
            });
            match ready!(sent)? {
                // All held bytes were sent, and some of `buf`.
                Some(of_buf) if of_buf > 0 => return Poll::Ready(Ok(of_buf)),
                // Held bytes remain (also when `buf` is empty: a flush or a shutdown returns
                // only once they all left): go on.
                Some(_) => {}
                // Nothing held (any more), none of `buf` sent.
                None => break,
            }
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.poll_send(cx, |s| s.send_with_flags(buf, SEND_FLAGS))
    }
}

/// What a send of held-back bytes followed by `of_buf` bytes of the write's own left: `None`
/// when nothing is held any more and none of the write's bytes went, so the write goes on
/// without the held bytes.
fn went(held: &BytesMut, of_buf: usize) -> Option<usize> {
    (of_buf > 0 || !held.is_empty()).then_some(of_buf)
}

/// Makes the error of a layer's failed session, for each write channel it fails.
pub(crate) struct LayerFailure(pub(crate) Box<dyn Fn() -> io::Error + Send + Sync>);

impl fmt::Debug for LayerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LayerFailure").field(&(self.0)()).finish()
    }
}

/// The kernel's `EPIPE`, without a system call: what a write gets after the write side was
/// shut down (as tokio's `TcpStream` reports it), and what a write or a shutdown gets after a
/// read reported the socket's own failure (a send gets it then, after the read got
/// `ECONNRESET`).
///
/// A write after the shutdown is refused, not failed: the stream's data and its FIN went out
/// before it, so it must not mark the connection's writes failed (a close would then reset the
/// connection and throw away what the kernel has not sent yet).
pub(crate) fn broken_pipe() -> io::Error {
    io::Error::from_raw_os_error(libc::EPIPE)
}

/// Whether a send's error `e` says the connection is gone, so that no send can go through any
/// more: `EPIPE` (the connection's failure was told before, or a Unix socket's peer closed),
/// `ENOTCONN`, or the connection's own failure ([`connection_failure`]: the peer's reset, a
/// timeout, an unreachable host). Not an error the kernel gives for the moment, the connection
/// alive (`ENOBUFS`, `ENOMEM`: short of memory; `EINTR`), nor one that is no OS error.
fn ends_the_connection(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ENOTCONN))
        || connection_failure(e).is_some()
}

/// The OS error code of `e` when it is the connection's own failure, which the kernel reports
/// once, to whichever call comes first, and as an end of stream to every read after it: the
/// peer's reset; the socket's destruction (`ECONNABORTED`: `ss -K`, `SOCK_DESTROY`); a timeout
/// (`TCP_USER_TIMEOUT`, keepalive, retransmissions), reported as `ETIMEDOUT` or as the soft
/// error an ICMP message or a failed route left on the connection before it (Linux's
/// `tcp_write_err`): an unreachable host or network, a port or protocol unreachable (a
/// firewall's `REJECT`), an administratively prohibited destination, a parameter problem, a
/// source route failed, an unknown or isolated host. Not `EPIPE`: the peer's reset after its
/// own clean end (a read reads that end, rightly), or a send after the write side was shut
/// down. (Without `IP_RECVERR`, which this crate never sets, an ICMP error reaches a send only
/// once the connection timed out.)
fn connection_failure(e: &io::Error) -> Option<i32> {
    e.raw_os_error().filter(|&code| {
        // An unknown or isolated host: an error code only Linux has.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if code == libc::ENONET {
            return true;
        }
        matches!(
            code,
            libc::ECONNRESET
                | libc::ECONNABORTED
                | libc::ETIMEDOUT
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::ECONNREFUSED
                | libc::ENOPROTOOPT
                | libc::EACCES
                | libc::EPROTO
                | libc::EOPNOTSUPP
                | libc::EHOSTDOWN
        )
    })
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // An empty write after the shutdown fails too, as tokio's `TcpStream`'s.
        if this.shut_down {
            return Poll::Ready(Err(broken_pipe()));
        }
        if buf.is_empty() || this.half.conn.sends_refused() {
            return Poll::Ready(this.nothing_written());
        }
        if this.half.conn.deferring() && this.half.conn.hold(buf) {
            // Held back to leave before anything written later: as good as sent.
            this.half.conn.timeout_made_good();
            return Poll::Ready(Ok(buf.len()));
        }
        this.poll_send_after_cork(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.shut_down {
            return Poll::Ready(Err(broken_pipe()));
        }
        // Empty slices at the start, then no more than one send takes.
        let start = bufs
            .iter()
            .position(|b| !b.is_empty())
            .unwrap_or(bufs.len());
        let Some(first) = bufs.get(start) else {
            // Nothing to write: a write of nothing, at once (a send of no bytes would wait for
            // room, and could time out and spoil the end).
            return Poll::Ready(this.nothing_written());
        };
        if this.half.conn.sends_refused() {
            return Poll::Ready(this.nothing_written());
        }
        if this.half.conn.corked() || this.half.conn.deferring() {
            // One slice at a time through the cork: the vectored form is for the plain path.
            return Pin::new(this).poll_write(cx, first);
        }
        let bufs = &bufs[start..];
        let bufs = &bufs[..bufs.len().min(MAX_SLICES)];
        this.poll_send(cx, |s| s.send_vectored_with_flags(bufs, SEND_FLAGS))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.shut_down && this.half.conn.core.close_begun() {
            // Closed (by `close`, a cut, the selector): a flush fails as every other operation
            // does then, also with nothing to send. (After our own shutdown it stays `Ok`:
            // the socket may have closed itself, both directions being done.)
            return Poll::Ready(Err(this.half.conn.core.closed_error().into()));
        }
        if this.half.conn.corked() && !this.half.conn.deferring() {
            ready!(this.poll_send_after_cork(cx, &[]))?;
        }
        // Everything written is with the kernel (or held back to leave before anything else):
        // a timed-out write has been made good.
        this.half.conn.timeout_made_good();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.shut_down {
            return Poll::Ready(Ok(()));
        }
        if this.half.conn.core.close_begun() {
            // Closed (by `close`, a cut, the selector): the close's error, as a write (of
            // nothing too) and a flush get then, whatever failed before (the peer's reset, a
            // failed write): the close decided how the connection ends.
            return Poll::Ready(Err(this.half.conn.core.closed_error().into()));
        }
        // What the cork holds leaves before the FIN.
        ready!(this.poll_send_after_cork(cx, &[]))?;
        let conn = &this.half.conn;
        // A shutdown is a flush first (tokio's contract; `AsyncWriteExt::shutdown` does not
        // flush before it): everything written is with the kernel, so a timed-out write, which
        // took nothing, has been made good as by `poll_flush`.
        conn.timeout_made_good();
        if conn.is_broken() {
            // A read reported the connection's failure: no end can reach the peer, and none
            // is reported as made (every time: the flag stays).
            return Poll::Ready(Err(broken_pipe()));
        }
        if conn.write_failed() {
            // No FIN after a failed write: the close resets the connection instead.
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "an earlier write failed; the connection is reset on close instead of shut down",
            )));
        }
        let stream = conn.core.io().map_err(io::Error::from)?;
        if conn.done.load(Ordering::Acquire) & READ_DONE != 0 {
            // The input ended already: this shutdown ends the connection, which closes instead
            // (gracefully: what was written, then the FIN), so that its place under the
            // listener's caps is free before the peer sees the end (see `Core::release`). A
            // shutdown made before the input ended is a half-close, of a connection still open.
            // The close sends that FIN only where this descriptor is the socket's last: one
            // adopted (`Socket::from_std`) or connected may have others (a `try_clone` kept, a
            // copy a child process inherited, a duplicate made through `with_sock_ref`), which
            // keep it open, so such a connection shuts its write side down itself first (one
            // a listener accepted, whose FIN must follow its leaving the listener's counts,
            // is left to the close).
            if !conn.accepted() {
                // Best effort, as the close's FIN: a peer gone since its end is no failure.
                let _ = SockRef::from(&*stream).shutdown(std::net::Shutdown::Write);
            }
            drop(stream);
            this.shut_down = true;
            tracing::debug!(parent: conn.core.span(), "write side shut down");
            conn.finish(WRITE_DONE);
            return Poll::Ready(Ok(()));
        }
        let socket = SockRef::from(&*stream);
        let sending = conn.sending();
        // Whether nothing this shutdown found tells the connection is gone though it may be:
        // a Unix socket's shutdown succeeds whatever the peer did.
        let unsure = match socket.shutdown(std::net::Shutdown::Write) {
            Ok(()) if matches!(*stream, Stream::Unix(_)) => {
                // The peer closed with what we sent unread (or, never accepted, its
                // listener did): those bytes are lost, and Linux leaves `ECONNRESET` for this
                // socket, as a TCP peer's reset would. No clean end: reported as over TCP.
                if let Ok(Some(e)) = socket.take_error() {
                    if connection_failure(&e).is_some() {
                        conn.told_to_send(&e);
                        return Poll::Ready(Err(e));
                    }
                }
                true
            }
            Ok(()) => false,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                // The connection is gone. When it failed before the peer's end (its reset, a
                // timeout: the kernel still holds the error for the next call when none was
                // told), this shutdown reports the failure: no clean end. Otherwise (`EPIPE`:
                // the peer's reset came after its clean end, to bytes that reached it after it
                // closed; or none), `Ok`, as before: the peer ended the connection cleanly, and
                // what it refused after is an HTTP client's usual way to leave, not a failure.
                if let Ok(Some(e)) = socket.take_error() {
                    if connection_failure(&e).is_some() {
                        conn.told_to_send(&e);
                        return Poll::Ready(Err(e));
                    }
                }
                true
            }
            Err(e) => return Poll::Ready(Err(e)),
        };
        drop(sending);
        drop(stream);
        if unsure {
            // A read on another thread may have been told the connection's failure (the
            // kernel tells one call) and not noted it yet (see `Conn::reading`). A failure a
            // read noted is no clean end, as above.
            conn.reads.wait();
            if conn.is_broken() {
                return Poll::Ready(Err(broken_pipe()));
            }
            // Nor is a failure a send or an earlier shutdown was told (this one's `ENOTCONN`
            // finds no error left once a shutdown's `SO_ERROR` took it): reported as the
            // reads after it report it, every time.
            let told = conn.failure_told_to_send.load(Ordering::Acquire);
            if told != 0 {
                return Poll::Ready(Err(io::Error::from_raw_os_error(told)));
            }
        }
        this.shut_down = true;
        tracing::debug!(parent: conn.core.span(), "write side shut down");
        conn.finish(WRITE_DONE);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::future::poll_fn;

    use super::*;

    const LIMIT: Duration = Duration::from_secs(10);

    fn timer() -> Timer {
        Timer::new(LIMIT)
    }

    /// Early bytes come out in order, whatever the sizes asked for, and nothing is kept (not
    /// even an empty box) once they are all taken.
    #[test]
    fn early_bytes_come_out_in_order_and_leave_nothing_behind() {
        let mut early = Early::new(Bytes::from_static(b"hello world"));
        assert!(!early.is_empty());
        assert_eq!(early.take_up_to(0), Bytes::new());
        assert_eq!(early.take_up_to(5), Bytes::from_static(b"hello"));
        assert_eq!(early.take_up_to(100), Bytes::from_static(b" world"));
        assert!(early.is_empty() && early.0.is_none());
        assert_eq!(early.take_all(), Bytes::new());

        let mut early = Early::new(Bytes::from_static(b"ab"));
        assert_eq!(early.take_up_to(1), Bytes::from_static(b"a"));
        assert_eq!(early.take_all(), Bytes::from_static(b"b"));
        assert!(early.is_empty());
        assert!(Early::new(Bytes::new()).0.is_none());
    }

    /// A read channel sharing `conn`'s backlog that read one request and has another still to
    /// read, so that the connection's writes are held back; and the end its requests come from.
    async fn request_pending(conn: &Conn) -> (tokio::io::DuplexStream, net_io::ByteReadChannel) {
        let (mut requests, reader) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut requests, b"a\nb\n")
            .await
            .unwrap();
        let mut input = net_io::ByteReadChannel::new(reader);
        input.share_backlog(conn.backlog().unwrap().clone());
        input
            .read_line(8, net_io::LineEnding::Default)
            .await
            .unwrap();
        (requests, input)
    }

    /// A connection of `selector` over `ours`, one end of a Unix socket pair (set non-blocking
    /// here), with the default options.
    fn unix_conn(
        selector: &crate::SelectorManager,
        ours: std::os::unix::net::UnixStream,
    ) -> Arc<Conn> {
        ours.set_nonblocking(true).unwrap();
        let local = crate::address::UnixSocketAddress::reported(&ours.local_addr().unwrap());
        let remote = crate::address::UnixSocketAddress::reported(&ours.peer_addr().unwrap());
        let stream = {
            let _runtime = selector.inner().handle().enter();
            Stream::Unix(tokio::net::UnixStream::from_std(ours).unwrap())
        };
        Conn::open(
            selector.inner(),
            stream,
            local.into(),
            remote.into(),
            &SocketOptions::default(),
            Origin::Connected {
                host: None,
                file: None,
            },
            false,
        )
        .unwrap()
    }

    /// A send the kernel refused for the moment (short of memory: `ENOBUFS`, `ENOMEM`; `EINTR`),
    /// the connection alive, fails that write only: a write of nothing after it is `Ok(0)` and
    /// the next write of bytes goes through, though the writes count as failed (the close
    /// resets, as after any failed write). A send refused for good (`EPIPE`, `ENOTCONN`, the
    /// peer's reset, the connection's timeout, an unreachable host) fails every later write of
    /// nothing with `EPIPE`, as the kernel answers a send of any size then.
    #[tokio::test]
    async fn only_a_send_refused_for_good_fails_the_writes_of_nothing_after_it() {
        let selector = crate::SelectorManager::new();
        let errors = [
            (libc::ENOBUFS, false),
            (libc::ENOMEM, false),
            (libc::EINTR, false),
            (libc::EPIPE, true),
            (libc::ENOTCONN, true),
            (libc::ECONNRESET, true),
            (libc::ETIMEDOUT, true),
            (libc::EHOSTUNREACH, true),
        ];
        for (code, for_good) in errors {
            let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
            let conn = unix_conn(&selector, ours);
            let mut write = WriteHalf::new(Arc::clone(&conn));
            let e = write.record(Err(io::Error::from_raw_os_error(code)));
            assert_eq!(
                e.unwrap_err().raw_os_error(),
                Some(code),
                "{code}: reported"
            );
            let nothing = write.nothing_written();
            if for_good {
                let e = nothing.expect_err("EPIPE");
                assert_eq!(e.raw_os_error(), Some(libc::EPIPE), "{code}: {e:?}");
            } else {
                assert_eq!(nothing.ok(), Some(0), "{code}: a write of nothing");
                let send = poll_fn(|cx| Pin::new(&mut write).poll_write(cx, b"x"));
                let sent = tokio::time::timeout(LIMIT, send).await;
                assert!(
                    matches!(sent, Ok(Ok(1))),
                    "{code}: a write of bytes: {sent:?}"
                );
            }
            assert!(conn.write_failed(), "{code}: the writes count as failed");
            drop(write);
            conn.close();
            drop(theirs);
        }
        selector.close();
    }

    /// A read without waiting (a TLS layer's, as it ends its sending) that fails as the
    /// selector closes reports the close, as a waiting read does, not the error the closing
    /// selector caused (a reset from a peer of this socket that it closed first), and does not
    /// keep that error for the reads after it.
    #[tokio::test]
    async fn a_read_without_waiting_that_fails_as_the_selector_closes_reports_the_close() {
        use std::io::Write as _;

        let selector = crate::SelectorManager::new();
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        // Bytes of ours that the peer will leave unread.
        (&ours).write_all(b"unread").unwrap();
        let conn = unix_conn(&selector, ours);
        let mut read = ReadHalf::new(Arc::clone(&conn));
        // The peer closes with our bytes unread: our next read is a reset.
        theirs.write_all(b"unread").unwrap();
        drop(theirs);
        // The selector is closing: marked closed, this socket not closed yet.
        selector.inner().mark_closed();
        let mut buf = [0; 16];
        let mut got = read.try_read(&mut buf);
        // The peer's bytes may come first.
        if let Ok(n) = got {
            assert_eq!(&buf[..n], b"unread");
            got = read.try_read(&mut buf);
        }
        let e = crate::Error::from(got.expect_err("a reset"));
        assert!(
            matches!(e, crate::Error::SelectorClosed),
            "the close, not {e:?}"
        );
        assert_eq!(read.failed, None, "the reset is not kept");
        drop(read);
        conn.close();
    }

    /// Bytes taken in by a read without waiting (a TLS layer's, as it ends its sending) are
    /// input received, as a read's: the next read that waits is busy polling's cue again (the
    /// peer's next message may come at once), though the read before it waited and no read
    /// returned since.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bytes_taken_by_a_read_without_waiting_make_the_next_wait_a_cue() {
        use std::io::Write as _;
        use std::task::Waker;

        /// Polls a read of `read` once: whether it is pending.
        fn pending(read: &mut ReadHalf) -> bool {
            let mut buf = [0; 16];
            let mut buf = ReadBuf::new(&mut buf);
            Pin::new(read)
                .poll_read(&mut Context::from_waker(Waker::noop()), &mut buf)
                .is_pending()
        }

        /// Waits (bounded) until `done` holds.
        async fn until(done: impl Fn() -> bool) -> bool {
            let start = std::time::Instant::now();
            while start.elapsed() < LIMIT {
                if done() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            false
        }

        let selector = crate::SelectorManager::with_busy_poll(Duration::from_millis(20));
        let busy = selector.busy_poll().expect("busy polling");
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let conn = unix_conn(&selector, ours);
        let mut read = ReadHalf::new(Arc::clone(&conn));
        assert!(until(|| busy.is_dormant()).await, "polling before any read");
        assert!(pending(&mut read));
        assert!(!busy.is_dormant(), "no cue");
        assert!(until(|| busy.is_dormant()).await, "still polling");
        // The socket waits already: a read begun again is no cue.
        assert!(pending(&mut read));
        assert!(busy.is_dormant(), "a read begun again kicked");
        theirs.write_all(b"tickets").unwrap();
        let mut buf = [0; 16];
        let start = std::time::Instant::now();
        let got = loop {
            match read.try_read(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && start.elapsed() < LIMIT => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                got => break got,
            }
        };
        assert_eq!(got.unwrap(), 7);
        assert!(pending(&mut read));
        assert!(
            !busy.is_dormant(),
            "no cue after bytes taken without waiting"
        );
        drop(read);
        conn.close();
        selector.close();
    }

    thread_local! {
        /// What runs on this thread in a close, after the held-back answers were looked at and
        /// before the socket is marked closed.
        pub(crate) static BETWEEN: std::cell::RefCell<Option<Box<dyn FnOnce()>>> =
            std::cell::RefCell::new(None);
    }

    thread_local! {
        /// What the task that sends held-back answers after a close waits for first, when
        /// the close runs on this thread.
        pub(super) static GATE: std::cell::RefCell<Option<tokio::sync::oneshot::Receiver<()>>> =
            const { std::cell::RefCell::new(None) };
    }

    thread_local! {
        /// What runs on this thread in `CallsUnderWay::begin`, after it read the epoch and
        /// before it counts itself (a preemption there).
        static EPOCH_READ: std::cell::RefCell<Option<Box<dyn FnOnce()>>> =
            std::cell::RefCell::new(None);
    }

    pub(super) fn between_epoch_and_count() {
        if let Some(step) = EPOCH_READ.with(|b| b.borrow_mut().take()) {
            step();
        }
    }

    /// A call that read the epoch before one waiter ended it, and counted itself only after
    /// that waiter was done (preempted between its load and its add), is counted in a slot that
    /// is not current: the next waiter ends the other slot and returns at once, though the
    /// call is still under way (its system call may have taken the connection's failure
    /// before the waiter's own call, and not noted it yet).
    #[test]
    fn a_waiter_waits_for_a_call_that_read_the_epoch_before_an_earlier_waiter_ended_it() {
        use std::sync::mpsc::channel;
        let calls = Arc::new(CallsUnderWay::default());
        // A call under way on another thread, so that the first waiter ends epoch 0.
        let (counted_tx, counted) = channel();
        let (release, release_rx) = channel::<()>();
        let first = {
            let calls = Arc::clone(&calls);
            std::thread::spawn(move || {
                let call = calls.begin();
                counted_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                drop(call);
            })
        };
        counted.recv().unwrap();
        // This thread's call reads epoch 0, then is preempted while the first waiter ends
        // epoch 0 and returns once the first call is over.
        EPOCH_READ.with(|b| {
            let calls = Arc::clone(&calls);
            *b.borrow_mut() = Some(Box::new(move || {
                let waiter = {
                    let calls = Arc::clone(&calls);
                    std::thread::spawn(move || calls.wait())
                };
                while calls.0.load(Ordering::Acquire) & EPOCH == 0 {
                    std::thread::yield_now();
                }
                release.send(()).unwrap();
                first.join().unwrap();
                waiter.join().unwrap();
            }));
        });
        let late = calls.begin();
        // Its system call runs now (say it takes the connection's failure); before it notes
        // it, another waiter's call finds what it left, and waits for the calls under way.
        let (returned_tx, returned) = channel();
        let second = {
            let calls = Arc::clone(&calls);
            std::thread::spawn(move || {
                calls.wait();
                returned_tx.send(()).unwrap();
            })
        };
        let early = returned.recv_timeout(Duration::from_millis(300)).is_ok();
        let word = calls.0.load(Ordering::Acquire);
        drop(late);
        second.join().unwrap();
        assert!(
            !early,
            "the second waiter returned while a call it must wait for was under way \
             (counted in the slot the first waiter ended, which is current again: {word:#010x})"
        );
    }

    thread_local! {
        /// What runs on this thread in a connection's release, between its leaving one count
        /// and the other.
        static BETWEEN_LEAVES: std::cell::RefCell<Option<Box<dyn FnOnce()>>> =
            std::cell::RefCell::new(None);
    }

    pub(super) fn between_count_leaves() {
        if let Some(step) = BETWEEN_LEAVES.with(|b| b.borrow_mut().take()) {
            step();
        }
    }

    /// A closing connection leaves its listener's group before its selector's count: when the
    /// selector's count reads none open (and a graceful shutdown of the selector, which waits
    /// for that, returns), its listener's `stats().open` reads none too.
    #[test]
    fn a_connection_leaves_its_listeners_count_before_its_selectors() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let selector = {
            let _inside = runtime.enter();
            crate::SelectorManager::new()
        };
        let (listener, _client, server_side) = runtime.block_on(async {
            let listener = crate::a_socket(&selector)
                .tcp()
                .bind(("127.0.0.1", 0))
                .await
                .unwrap();
            let client = crate::a_socket(&selector)
                .tcp()
                .connect(listener.local_address())
                .await
                .unwrap();
            let server_side = listener.accept().await.unwrap();
            (Arc::new(listener), client, server_side)
        });
        assert_eq!(listener.stats().open, 1);
        let (seen_tx, seen) = std::sync::mpsc::channel();
        BETWEEN_LEAVES.with(|b| {
            let selector = selector.clone();
            let listener = Arc::clone(&listener);
            *b.borrow_mut() = Some(Box::new(move || {
                let counted = selector.inner().open_connections();
                seen_tx.send((counted, listener.stats().open)).unwrap();
            }));
        });
        {
            let _inside = runtime.enter();
            server_side.close();
        }
        let (selectors, listeners) = seen
            .recv_timeout(LIMIT)
            .expect("the release ran on this thread");
        // `_client` is still open: the selector counts it.
        assert!(
            selectors > 1 || listeners == 0,
            "the selector's count left first: it reads {selectors} open (its client only) while \
             the listener's reads {listeners}"
        );
        assert_eq!(listener.stats().open, 0);
        selector.close();
    }

    thread_local! {
        /// The error this thread's next `Stream::try_send` fails with, without a send.
        pub(crate) static REFUSED_SEND: std::cell::Cell<Option<i32>> = const { std::cell::Cell::new(None) };
    }

    /// The seam in `Stream::try_send`: the error this thread set, if any, once.
    pub(super) fn refused_send() -> Option<i32> {
        REFUSED_SEND.with(std::cell::Cell::take)
    }

    /// Held-back answers whose send the kernel refused, though only for the moment (`ENOBUFS`:
    /// short of memory; the connection alive), are lost, taken as written as they were: no
    /// later byte may reach the peer without them, a gap in the stream it reads. A write after
    /// them fails (`EPIPE`, as after held-back answers a dead connection refused, where the
    /// kernel refuses every later send), and so does a write of nothing; the writes count as
    /// failed (the close resets). Before, the next write went out, and the peer read it with
    /// the answers before it missing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn no_write_reaches_the_peer_without_the_held_back_answers_a_send_lost() {
        use std::io::Read as _;
        use std::task::{Wake, Waker};

        const FIRST: &[u8] = b"held back, then refused\n";
        const SECOND: &[u8] = b"written after it\n";
        struct Noop;
        impl Wake for Noop {
            fn wake(self: Arc<Self>) {}
        }

        let selector = crate::SelectorManager::new();
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let conn = unix_conn(&selector, ours);
        // A request still to read: writes are held back.
        let (_requests, input) = request_pending(&conn).await;
        assert!(conn.backlog().unwrap().is_pending());
        let waker = Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        let mut write = WriteHalf::new(Arc::clone(&conn));
        let held = Pin::new(&mut write).poll_write(&mut cx, FIRST);
        assert!(matches!(held, Poll::Ready(Ok(n)) if n == FIRST.len()));
        assert!(conn.corked());
        // The reader is about to wait: the held-back answer leaves, and the kernel refuses it.
        REFUSED_SEND.with(|refused| refused.set(Some(libc::ENOBUFS)));
        assert!(conn.send_cork_now(), "nothing is held any more");
        assert!(!conn.holds_bytes());

        let sent = tokio::time::timeout(
            LIMIT,
            poll_fn(|cx| Pin::new(&mut write).poll_write(cx, SECOND)),
        )
        .await
        .expect("the write returns");
        let e = sent.expect_err("no write after the lost answer");
        assert_eq!(e.raw_os_error(), Some(libc::EPIPE), "{e:?}");
        let nothing = Pin::new(&mut write).poll_write(&mut cx, b"");
        assert!(
            matches!(&nothing, Poll::Ready(Err(e)) if e.raw_os_error() == Some(libc::EPIPE)),
            "a write of nothing: {nothing:?}"
        );
        assert!(conn.write_failed());
        // The peer got nothing: neither the lost answer nor what followed it.
        theirs.set_nonblocking(true).unwrap();
        let mut got = [0u8; 64];
        let read = theirs.read(&mut got);
        assert!(
            matches!(&read, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "the peer read {read:?}: {:?}",
            read.as_ref()
                .map(|&n| String::from_utf8_lossy(&got[..n]).into_owned())
        );
        drop(write);
        drop(input);
        conn.close();
        selector.close();
    }

    pub(super) fn between_close_steps() {
        if let Some(step) = BETWEEN.with(|b| b.borrow_mut().take()) {
            step();
        }
    }

    /// A write made after the close's first step, while the reader still has requests pending
    /// and the socket took every answer held back (so the close owes nothing), is not held
    /// back: it goes to the socket, which the peer reads before the end, or fails. Held back
    /// there, its write reported success and no one sent it: the peer read a clean end with
    /// the answer missing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_write_after_the_close_began_is_never_held_back_unsent() {
        use std::io::Read as _;
        use std::task::Waker;

        const ZERO: &[u8] = b"sent before any request\n";
        const FIRST: &[u8] = b"held back, then sent by the close\n";
        const SECOND: &[u8] = b"written as the close decides\n";

        let selector = crate::SelectorManager::new();
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let conn = unix_conn(&selector, ours);
        let mut cx = Context::from_waker(Waker::noop());
        let mut write = WriteHalf::new(Arc::clone(&conn));
        // Sent at once (no request read yet), once the runtime saw the socket writable: so
        // the close finds it writable too, and sends the held-back answer itself.
        let started = std::time::Instant::now();
        while Pin::new(&mut write).poll_write(&mut cx, ZERO).is_pending() {
            assert!(started.elapsed() < LIMIT, "the socket never took the write");
            tokio::task::yield_now().await;
        }
        // A request still to read: writes are held back.
        let (_requests, input) = request_pending(&conn).await;
        assert!(conn.backlog().unwrap().is_pending());
        let held = Pin::new(&mut write).poll_write(&mut cx, FIRST);
        assert!(matches!(held, Poll::Ready(Ok(n)) if n == FIRST.len()));
        assert!(conn.corked());

        let (done, result) = std::sync::mpsc::channel();
        BETWEEN.with(|b| {
            *b.borrow_mut() = Some(Box::new(move || {
                assert!(
                    conn_is_pending_still(&write),
                    "the reader's request is still pending"
                );
                // The socket has room; the runtime may not have seen it writable yet.
                let written = write_when_it_takes(&mut write, SECOND);
                done.send((written, write)).unwrap();
            }));
        });
        conn.close();
        let (written, write) = result.recv().unwrap();
        drop((write, input));
        theirs.set_read_timeout(Some(LIMIT)).unwrap();
        let mut received = Vec::new();
        let read = theirs.read_to_end(&mut received);
        let expected = match written {
            Some(n) => [ZERO, FIRST, &SECOND[..n]].concat(),
            None => [ZERO, FIRST].concat(),
        };
        assert!(read.is_ok(), "the peer read {read:?}");
        assert_eq!(
            String::from_utf8_lossy(&received),
            String::from_utf8_lossy(&expected),
            "every answer whose write succeeded, in order, before the end"
        );
        selector.close();
    }

    /// Polls a write of `bytes` on this thread until the socket takes it or it fails (within
    /// `LIMIT`): what it wrote, `None` when it failed.
    fn write_when_it_takes(write: &mut WriteHalf, bytes: &[u8]) -> Option<usize> {
        let mut cx = Context::from_waker(Waker::noop());
        let started = std::time::Instant::now();
        loop {
            match Pin::new(&mut *write).poll_write(&mut cx, bytes) {
                Poll::Ready(written) => return written.ok(),
                Poll::Pending if started.elapsed() < LIMIT => std::thread::yield_now(),
                Poll::Pending => panic!("the socket never took the write"),
            }
        }
    }

    /// Whether the reader of `write`'s connection still has requests pending.
    fn conn_is_pending_still(write: &WriteHalf) -> bool {
        write.half.conn.backlog().unwrap().is_pending()
    }

    /// A write on another thread that reaches the socket while a close sends the held-back
    /// answers the socket did not take at once leaves after them, or fails: it must not
    /// overtake them (the peer would read the answers out of order, then a clean end).
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_write_during_a_close_never_overtakes_the_held_back_answers() {
        use std::io::{Read as _, Write as _};
        use std::task::{Wake, Waker};

        const FIRST: &[u8] = b"held back before the close\n";
        const SECOND: &[u8] = b"written during the close\n";
        struct Noop;
        impl Wake for Noop {
            fn wake(self: Arc<Self>) {}
        }

        let selector = crate::SelectorManager::new();
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        // The socket takes nothing more: the held-back answer cannot leave at the close.
        ours.set_nonblocking(true).unwrap();
        let mut filled = 0;
        for size in [4096, 256, 16, 1] {
            loop {
                match (&ours).write(&vec![b'.'; size]) {
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        let conn = unix_conn(&selector, ours);
        // A request still to read: writes are held back.
        let (_requests, _input) = request_pending(&conn).await;
        assert!(conn.backlog().unwrap().is_pending());
        let waker = Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        let mut write = WriteHalf::new(Arc::clone(&conn));
        let held = Pin::new(&mut write).poll_write(&mut cx, FIRST);
        assert!(matches!(held, Poll::Ready(Ok(n)) if n == FIRST.len()));
        assert!(conn.corked());

        // Between the close's steps the peer takes what fills the socket, and another write
        // goes out as soon as the socket takes it (or fails).
        // The task that sends held-back answers after the close waits until the write is over.
        let (open_gate, gate) = tokio::sync::oneshot::channel();
        GATE.with(|g| *g.borrow_mut() = Some(gate));
        let (done, result) = std::sync::mpsc::channel();
        BETWEEN.with(|b| {
            *b.borrow_mut() = Some(Box::new(move || {
                let mut filler = vec![0; filled];
                theirs.read_exact(&mut filler).unwrap();
                let written = write_when_it_takes(&mut write, SECOND);
                let _ = open_gate.send(());
                done.send((theirs, written, write)).unwrap();
            }));
        });
        conn.close();
        let (mut theirs, written, write) = result.recv().unwrap();
        drop(write);
        let received = tokio::task::spawn_blocking(move || {
            theirs.set_read_timeout(Some(LIMIT)).unwrap();
            let mut received = Vec::new();
            theirs.read_to_end(&mut received).map(|_| received)
        })
        .await
        .unwrap();
        let expected = match written {
            Some(n) => [FIRST, &SECOND[..n]].concat(),
            None => FIRST.to_vec(),
        };
        match received {
            Ok(received) => assert_eq!(
                String::from_utf8_lossy(&received),
                String::from_utf8_lossy(&expected),
                "the answers in the order they were written"
            ),
            Err(e) => panic!("the peer read {e} after a close that lost nothing"),
        }
    }

    /// A close and a cut of one accepted connection at once (its task's `close` on one thread,
    /// the end of a listener shutdown's grace period or the selector's close on another), with
    /// an answer held back that the socket cannot take: whichever close sends it, the
    /// connection keeps its place in its listener's group (its `max_connections` slot, the
    /// count a shutdown waits on) until it left. (Each close took the answer's descriptor;
    /// only the first took the places, and when the other took the answer, the first found
    /// nothing to send and let the places go at once: the slot freed, and a shutdown stopped
    /// waiting, while the answer was still on its way, sent by a task no shutdown could cut.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_cut_racing_a_close_with_an_answer_held_back_keeps_the_group_place_until_it_left() {
        use std::io::{Read as _, Write as _};
        use std::task::{Wake, Waker};

        const HELD: &[u8] = b"held back before the close\n";
        struct Noop;
        impl Wake for Noop {
            fn wake(self: Arc<Self>) {}
        }

        let selector = crate::SelectorManager::new();
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        // The socket takes nothing more: the held-back answer cannot leave at the close.
        ours.set_nonblocking(true).unwrap();
        let mut filled = 0;
        for size in [4096, 256, 16, 1] {
            loop {
                match (&ours).write(&vec![b'.'; size]) {
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        // Accepted by a listener with `max_connections(1)`.
        let group = Group::new(selector.inner().draining().child(), Some(1), None);
        let slot = group.slot().await;
        let (membership, counted) = group
            .admit(None, slot, || selector.inner().connection_opened())
            .unwrap();
        let local = crate::address::UnixSocketAddress::reported(&ours.local_addr().unwrap());
        let remote = crate::address::UnixSocketAddress::reported(&ours.peer_addr().unwrap());
        let stream = {
            let _runtime = selector.inner().handle().enter();
            Stream::Unix(tokio::net::UnixStream::from_std(ours).unwrap())
        };
        let origin = Origin::Accepted {
            group: Arc::clone(&group),
            membership,
            counted,
            proxy: None,
            received: Bytes::new(),
        };
        let options = SocketOptions::default();
        let conn = Conn::open(
            selector.inner(),
            stream,
            local.into(),
            remote.into(),
            &options,
            origin,
            false,
        )
        .unwrap();
        // A request still to read: writes are held back.
        let (_requests, _input) = request_pending(&conn).await;
        let waker = Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        let mut write = WriteHalf::new(Arc::clone(&conn));
        let held = Pin::new(&mut write).poll_write(&mut cx, HELD);
        assert!(matches!(held, Poll::Ready(Ok(n)) if n == HELD.len()));
        assert!(conn.corked());
        drop(write);

        // The cut lands between the close's steps: after the close took the places, before
        // it marked the socket closed.
        let cutting = Arc::clone(&conn);
        BETWEEN.with(|b| *b.borrow_mut() = Some(Box::new(move || cutting.cut())));
        conn.close();
        assert!(conn.is_closed());
        // The peer has read nothing: the answer has not left, and the connection is open.
        // (A window for the tasks the close started to run: once they have, it stays so.)
        let watched = std::time::Instant::now();
        while watched.elapsed() < Duration::from_millis(300) {
            assert_eq!(
                group.stats().open,
                1,
                "the connection left its group with its answer still held back"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The peer reads: everything arrives, then the end, and the connection leaves.
        let received = tokio::task::spawn_blocking(move || {
            theirs.set_read_timeout(Some(LIMIT)).unwrap();
            let mut received = Vec::new();
            theirs.read_to_end(&mut received).map(|_| received)
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(received.len(), filled + HELD.len());
        assert!(received.ends_with(HELD));
        let started = std::time::Instant::now();
        while group.stats().open > 0 {
            assert!(started.elapsed() < LIMIT, "the connection never left");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(group.slot().await.is_some());
    }

    /// Waits until `timer` expires; how long that took.
    async fn until_expired(timer: &mut Timer) -> Duration {
        until_expired_on(timer, &crate::SelectorManager::new()).await
    }

    /// Waits until `timer` expires, on `selector`'s clock; how long that took.
    async fn until_expired_on(timer: &mut Timer, selector: &crate::SelectorManager) -> Duration {
        let start = Instant::now();
        poll_fn(|cx| {
            if timer.poll_expired(cx, selector.inner()) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        start.elapsed()
    }

    /// Each wait gets the whole duration from its own start, though the sleep was first set
    /// for an earlier wait; and the waiting task is woken at that moment, not later.
    #[tokio::test(start_paused = true)]
    async fn a_wait_expires_a_full_duration_after_it_starts() {
        let mut timer = timer();
        assert_eq!(until_expired(&mut timer).await, LIMIT);

        // A wait that ends with progress after 4 s, then one that waits for good.
        let progress = tokio::time::timeout(Duration::from_secs(4), until_expired(&mut timer));
        assert!(progress.await.is_err());
        timer.disarm();
        assert_eq!(until_expired(&mut timer).await, LIMIT);

        // Many short waits in a row, longer than the duration in all: none expires.
        for _ in 0..30 {
            let progress = tokio::time::timeout(Duration::from_secs(1), until_expired(&mut timer));
            assert!(progress.await.is_err());
            timer.disarm();
        }
        assert_eq!(until_expired(&mut timer).await, LIMIT);
    }

    /// A wait first polled when the task's cooperative budget is spent (the sleep is then
    /// refused its poll, and registers nothing) still expires: the task's next poll registers
    /// the sleep rather than trusting a registration that was never made.
    #[tokio::test(start_paused = true)]
    async fn a_wait_first_polled_without_budget_still_expires() {
        let mut timer = timer();
        let selector = crate::SelectorManager::new();
        let mut first = true;
        let wait = poll_fn(|cx| {
            if first {
                first = false;
                // Spend the budget, as a task does that found much to do before this wait.
                while let Poll::Ready(spent) = tokio::task::coop::poll_proceed(cx) {
                    spent.made_progress();
                }
            }
            if timer.poll_expired(cx, selector.inner()) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        let started = Instant::now();
        // The hang guard: a sleep never registered never fires.
        let expired = tokio::time::timeout(LIMIT * 3, wait).await;
        assert!(expired.is_ok(), "the wait never expired");
        assert_eq!(started.elapsed(), LIMIT);
    }

    /// `socket_timeout` runs on the selector runtime's clock, whatever polls the read: here a
    /// task of a runtime whose (paused) clock is an hour ahead, as in a `start_paused` test
    /// with a selector of its own runtime. (Before, the deadline was taken from the polling
    /// runtime's "now" and waited for on the selector's clock: the read timed out an hour late.)
    #[test]
    fn socket_timeout_runs_on_the_selectors_clock_whatever_polls() {
        const TIMEOUT: Duration = Duration::from_millis(200);
        let selector = crate::SelectorManager::builder()
            .worker_threads(1)
            .build()
            .unwrap();
        let ahead = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let (done, timed_out) = std::sync::mpsc::channel();
        let polling = selector.clone();
        std::thread::spawn(move || {
            ahead.block_on(async {
                tokio::time::advance(Duration::from_secs(3600)).await;
                let listener = crate::a_socket(&polling)
                    .tcp()
                    .socket_timeout(TIMEOUT)
                    .bind(("127.0.0.1", 0))
                    .await
                    .unwrap();
                let _client = crate::a_socket(&polling)
                    .tcp()
                    .connect(listener.local_address())
                    .await
                    .unwrap();
                let mut server_side = listener.accept().await.unwrap();
                let mut input = server_side.open_read_channel().unwrap();
                let started = std::time::Instant::now();
                let read = input.read_line(64, net_io::LineEnding::Default).await;
                let _ = done.send((read, started.elapsed()));
            });
        });
        let (read, waited) = timed_out
            .recv_timeout(Duration::from_secs(10))
            .expect("the read did not time out after socket_timeout");
        assert!(matches!(read, Err(net_io::Error::Timeout)), "{read:?}");
        assert!(waited >= TIMEOUT, "timed out after {waited:?}");
        selector.close();
    }

    /// Polls a wait of `timer` with the selector's runtime alive, then (after disarming the
    /// timer when `new_wait`) with that runtime ended, on a current-thread and on a
    /// multi-thread runtime: the second poll must find the wait over.
    fn a_wait_after_the_selectors_runtime_ended(new_wait: bool) {
        // A waker that `will_wake` itself (the no-op waker's vtable may not compare equal).
        struct Ignored;
        impl std::task::Wake for Ignored {
            fn wake(self: Arc<Self>) {}
        }
        let waker = Waker::from(Arc::new(Ignored));
        let mut cx = Context::from_waker(&waker);
        for multi_thread in [false, true] {
            let dying = if multi_thread {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            }
            .unwrap();
            let selector = dying.block_on(async { crate::SelectorManager::new() });
            let mut timer = timer();
            // The wait registers its sleep with the selector's runtime's timer.
            assert!(!timer.poll_expired(&mut cx, selector.inner()));
            if new_wait {
                timer.disarm();
            }
            drop(dying);
            assert!(selector.is_closed());
            assert!(
                timer.poll_expired(&mut cx, selector.inner()),
                "multi-thread {multi_thread}, new wait {new_wait}: the wait went on after the \
                 selector closed"
            );
        }
    }

    /// A `socket_timeout` whose deadline falls in the clock's last millisecond is no timeout,
    /// as one too large for the clock: tokio's timer rounds a deadline up to the next
    /// millisecond with an `Instant + Duration` that would panic there (SPEC §4.1: no overflow
    /// panic for any duration). On a paused clock, so that the wait starts exactly when asked.
    #[tokio::test(start_paused = true)]
    async fn a_timeout_ending_in_the_clocks_last_millisecond_is_no_timeout() {
        let selector = crate::SelectorManager::new();
        let now = selector.inner().now();
        // The longest duration `now` can take: whole seconds, then nanoseconds.
        let fits = |d: Duration| now.checked_add(d).is_some();
        let (mut secs, mut top) = (0u64, u64::MAX);
        while secs < top {
            let mid = secs + (top - secs).div_ceil(2);
            if fits(Duration::from_secs(mid)) {
                secs = mid
            } else {
                top = mid - 1
            }
        }
        let (mut nanos, mut top) = (0u32, 999_999_999u32);
        while nanos < top {
            let mid = nanos + (top - nanos).div_ceil(2);
            if fits(Duration::new(secs, mid)) {
                nanos = mid
            } else {
                top = mid - 1
            }
        }
        let to_end = Duration::new(secs, nanos);
        for before_end in [Duration::from_micros(500), Duration::ZERO] {
            let mut timer = Timer::new(to_end - before_end);
            let expired = poll_fn(|cx| Poll::Ready(timer.poll_expired(cx, selector.inner()))).await;
            assert!(
                !expired && timer.sleep.is_none(),
                "{before_end:?} before the end"
            );
        }
        // Two milliseconds before the end still has a timer.
        let mut timer = Timer::new(to_end - Duration::from_millis(2));
        let expired = poll_fn(|cx| Poll::Ready(timer.poll_expired(cx, selector.inner()))).await;
        assert!(!expired && timer.sleep.is_some());
        selector.close();
    }

    /// A wait polled by a thread of another runtime (or none) after the selector's runtime
    /// ended, its timer shut down with it: the wait is over (the caller reports the close),
    /// never tokio's panic ("A Tokio 1.x context was found, but it is being shutdown"), which a
    /// task racing the end of the runtime (its check of the close just before it) used to hit.
    #[test]
    fn a_wait_polled_after_the_selectors_runtime_ended_is_over_without_a_panic() {
        a_wait_after_the_selectors_runtime_ended(false);
    }

    /// Guard: a new wait (the last one ended with progress, its sleep not due yet) polled after
    /// the selector's runtime ended is over too, though its sleep has not fired: a new wait
    /// that finds its sleep due later reads the clock, not the sleep, and must still see the
    /// close.
    #[test]
    fn a_new_wait_after_the_selectors_runtime_ended_is_over() {
        a_wait_after_the_selectors_runtime_ended(true);
    }

    /// A wait polled by another task than the last one wakes the new task.
    #[tokio::test(start_paused = true)]
    async fn a_wait_moved_to_another_task_wakes_that_task() {
        let mut timer = timer();
        let first = tokio::time::timeout(Duration::from_secs(3), until_expired(&mut timer));
        assert!(first.await.is_err());
        // The same wait (not disarmed), now polled by another task.
        let started = Instant::now();
        let waited = tokio::spawn(async move { until_expired(&mut timer).await });
        waited.await.unwrap();
        assert_eq!(started.elapsed(), LIMIT - Duration::from_secs(3));
    }

    /// Model: waits of pseudo-random lengths, from the main task or a spawned one, with idle
    /// gaps between (the sleep may fire while nobody polls it): a wait expires exactly LIMIT
    /// after it starts, never earlier, never later.
    #[tokio::test(start_paused = true)]
    async fn waits_of_any_length_from_any_task_expire_exactly_the_timeout_after_they_begin() {
        let selector = crate::SelectorManager::new();
        let mut timer = timer();
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for step in 0..400 {
            let long = next(4) == 0;
            let w = if long {
                LIMIT + Duration::from_millis(1000 + next(5000))
            } else {
                Duration::from_millis(next(9000))
            };
            let gap = match next(3) {
                0 => Duration::ZERO,
                1 => Duration::from_millis(next(3000)),
                _ => Duration::from_millis(next(25000)),
            };
            tokio::time::sleep(gap).await;
            let spawned = next(3) == 0;
            let (t, res) = if spawned {
                let sel = selector.clone();
                tokio::spawn(async move {
                    let r = tokio::time::timeout(w, until_expired_on(&mut timer, &sel)).await;
                    (timer, r)
                })
                .await
                .unwrap()
            } else {
                let r = tokio::time::timeout(w, until_expired_on(&mut timer, &selector)).await;
                (timer, r)
            };
            timer = t;
            match res {
                Ok(waited) => {
                    assert!(
                        long,
                        "step {step}: expired early after {waited:?} (w {w:?})"
                    );
                    assert_eq!(waited, LIMIT, "step {step}");
                }
                Err(_) => {
                    assert!(
                        !long,
                        "step {step}: never expired (w {w:?}, spawned {spawned})"
                    );
                    timer.disarm();
                }
            }
        }
        selector.close();
    }
}
