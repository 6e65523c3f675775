//! The listening socket: [`ServerSocket`] and its [`Incoming`] stream.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use socket2::{Domain, SockRef, Socket as RawSocket, Type};
use tokio::io::unix::AsyncFd;
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit};

use crate::adopt::{StdListener, check_kind};
use crate::core::{CloseMode, Core, OnRelease, Owner, Setup, linger_time};
use crate::group::{Group, ListenerStats, Membership, Refused, ShutdownReport};
use crate::options::{Kind, ProxyProtocol, SocketOptions};
use crate::proxy_protocol::{self, Parse, ProxyError, ProxyHeader};
use crate::repeat::Repeat;
use crate::selector::{OpenConnection, SelectorInner, SelectorSleep, Unwinds, lock};
use crate::stream::{Conn, Origin, Stream};
use crate::transport::Link;
use crate::waiters::Waiters;
use crate::{Error, Result, SelectorManager, Socket, SocketAddress, UnixSocketAddress};

/// How long the accept loop pauses when the process or system is out of descriptors or memory
/// (or its user out of epoll watches).
const EXHAUSTION_BACKOFF: Duration = Duration::from_millis(100);

/// How many errors that `accept(2)` says to retry the accept loop meets in a row before it
/// pauses for [`EXHAUSTION_BACKOFF`]. Each such error of a connection (aborted, reset, refused
/// by a firewall) takes it off the listen queue, and the next try goes on to the next one; but
/// one that takes nothing off (`EPERM` from a security policy that forbids the accept, a
/// seccomp filter) comes back at once on every try, and without a pause the loop would spin.
/// A burst of this many failing connections costs one pause.
const RETRY_BURST: u32 = 64;

/// The least time between two warnings that a listener ran out of descriptors, memory or epoll
/// watches. At the limit, each connection that ends frees a descriptor, the next accept takes
/// it and runs out again: an episode each time, as often as clients close connections (up to
/// one per back-off); the episodes after a warning, within this time, are `debug` events.
const EXHAUSTION_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// A listening TCP or Unix socket, as `bind` on a TCP builder returns it.
///
/// Every method takes `&self`, so a `ServerSocket` can be shared in an [`Arc`] and closed from
/// another task while one is blocked in [`accept`](Self::accept), which then fails with
/// [`Error::Closed`].
///
/// `accept` keeps going through the errors `accept(2)` says to retry (a connection aborted
/// before it was accepted, network errors of that connection), pausing 100 ms after 64 of them
/// in a row: one that takes no connection off the queue (`EPERM` from a security policy that
/// forbids the accept) comes back on every try, and is retried without spinning. When the
/// process runs out of file descriptors (`EMFILE`/`ENFILE`), memory (`ENOBUFS`/`ENOMEM`) or
/// epoll watches for the connections it accepts (`ENOSPC`: `fs.epoll.max_user_watches`; such a
/// connection is closed), it neither fails nor spins: it logs one event (a warning, at most
/// once a minute per listener), pauses 100 ms at a time, and resumes once resources are free.
///
/// A Unix listener removes its socket file when it is closed or dropped, if the file is still
/// the one it created (a successor that bound the same path keeps its file), also when a
/// successor holds a duplicate of the socket: that copy goes on listening, but no connect
/// reaches it by the path any more. A listener adopted with `from_std` or from systemd created
/// none: it leaves the file to whoever made it.
/// A restart that replaces the file (the successor binds a temporary name and renames it over
/// the path) sends every connect made after the rename to the successor, and the old
/// listener's close leaves the successor's file; the connections still waiting in the old
/// listener's queue (made before the rename, never accepted) are reset at its close, as a Unix
/// socket has no `tcp_migrate_req` (see [`close`](Self::close)). A listener renamed into place
/// removes nothing when it closes (the name it bound is gone): its file stays at the path,
/// where connects are refused, until the next server renames its own over it.
///
/// # Examples
///
/// ```no_run
/// use net_sockets::{a_socket, SelectorManager};
///
/// # #[tokio::main] async fn main() -> net_sockets::Result<()> {
/// let selector = SelectorManager::new();
/// let server = a_socket(&selector).tcp().bind(("127.0.0.1", 9002)).await?;
/// println!("Server is listening at {}", server.local_address());
/// loop {
///     let socket = server.accept().await?;
///     println!("Accepted {}", socket.remote_address());
/// }
/// # }
/// ```
pub struct ServerSocket {
    inner: Arc<ListenerInner>,
}

/// A listening socket of either family.
///
/// A Unix listener is not tokio's: its accept (mio's) reads the client's address into a buffer
/// one byte short of a path that fills the whole socket address (108 bytes on Linux, no
/// terminating NUL, which a client may bind), and panics. Ours accepts with socket2, into room
/// for any address.
#[derive(Debug)]
pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(AsyncFd<StdUnixListener>),
}

impl Listener {
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Stream, SocketAddress)>> {
        match self {
            Listener::Tcp(l) => l
                .poll_accept(cx)
                .map_ok(|(s, peer)| (Stream::Tcp(s), peer.into())),
            Listener::Unix(l) => loop {
                let mut ready = ready!(l.poll_read_ready(cx))?;
                if let Ok(accepted) = ready.try_io(|l| accept_unix(l.get_ref())) {
                    let (socket, peer) = accepted?;
                    let stream = tokio::net::UnixStream::from_std(socket.into())?;
                    let remote = UnixSocketAddress::reported_raw(&peer);
                    return Poll::Ready(Ok((Stream::Unix(stream), remote.into())));
                }
            },
        }
    }

    /// The listener's own address (a Unix listener bound to an empty path: the abstract name
    /// Linux picked).
    fn local_address(&self) -> io::Result<SocketAddress> {
        Ok(match self {
            Listener::Tcp(l) => SocketAddress::from(l.local_addr()?),
            Listener::Unix(l) => UnixSocketAddress::reported(&l.get_ref().local_addr()?).into(),
        })
    }
}

/// Registers a listening Unix socket with the current runtime.
// `unsafe`: tokio's registration of a descriptor is `unsafe` (its safe forms are deprecated),
// for the descriptor must stay open and the same while registered.
#[allow(unsafe_code)]
fn unix_listener(raw: RawSocket) -> io::Result<Listener> {
    let listener = StdUnixListener::from(std::os::fd::OwnedFd::from(raw));
    // SAFETY: the `AsyncFd` owns the listener, which owns its descriptor: it stays open, and
    // the same, until the `AsyncFd` (which deregisters it first) drops it; nothing takes the
    // listener out or replaces it (`get_mut` is never called).
    let registered =
        unsafe { AsyncFd::register_with_interest(listener, tokio::io::Interest::READABLE) };
    Ok(Listener::Unix(registered.map_err(io::Error::from)?))
}

/// Accepts a connection on a non-blocking Unix listener, non-blocking and close-on-exec, with
/// its peer's address as the kernel wrote it.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn accept_unix(listener: &StdUnixListener) -> io::Result<(RawSocket, socket2::SockAddr)> {
    SockRef::from(listener).accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn accept_unix(listener: &StdUnixListener) -> io::Result<(RawSocket, socket2::SockAddr)> {
    let (socket, peer) = SockRef::from(listener).accept()?;
    socket.set_nonblocking(true)?;
    Ok((socket, peer))
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l) => l.get_ref().as_fd(),
        }
    }
}

struct ListenerInner {
    core: Core<Listener, OnRelease>,
    local: SocketAddress,
    options: SocketOptions,
    /// Whether the last accept ran out of resources (one event per episode).
    exhausted: AtomicBool,
    /// When this listener last warned that it ran out of resources (at most one warning per
    /// [`EXHAUSTION_WARNING_INTERVAL`]).
    exhaustion_warned: Mutex<Option<Instant>>,
    /// The connections this listener accepted: caps, shutdown signal, counters.
    group: Arc<Group>,
    /// With a PROXY protocol header to read, connections whose header was read (in tasks of
    /// their own, so a slow one holds up no other but for the `max_connections` slot it
    /// holds) wait here for `accept`.
    proxied: Option<Arc<HeaderRead>>,
    /// The `accept`s waiting on the kernel: the listener is polled with their waker, which
    /// wakes every one of them, so that an `accept` kept and not polled (an `incoming()`
    /// stream whose `next()` gave up) holds up no other.
    waiting: Waiters,
    /// Whether the listener was adopted (`from_std`, systemd): listening before its options
    /// were set on it, so connections already queued then did not inherit them.
    adopted: bool,
}

/// A connection taken from the kernel and not yet handed out by `accept`. It is not a member
/// of the group yet (not counted, not waited for by a shutdown) but holds its
/// `max_connections` slot; dropping it closes it and frees the slot.
struct Taken {
    stream: Stream,
    /// The client: the peer, or the address its PROXY protocol header names.
    remote: SocketAddress,
    slot: Option<OwnedSemaphorePermit>,
    /// The proxy's address, when a PROXY protocol header named the client.
    proxy: Option<SocketAddress>,
    /// Bytes read with the PROXY protocol header that are the application's: those after
    /// the header, or all of them when an optional header was not there.
    received: Bytes,
}

/// Connections whose PROXY protocol header was read, waiting for `accept`, first come first
/// served. It is shut when the listener closes: what waits is dropped then, and what arrives
/// later is refused, so that no connection is handed out after the close and none holds up a
/// graceful shutdown.
struct HeaderRead {
    /// `None` once shut.
    waiting: Mutex<Option<VecDeque<Taken>>>,
    /// Woken when a connection joins.
    joined: Notify,
}

impl HeaderRead {
    fn new() -> HeaderRead {
        HeaderRead {
            waiting: Mutex::new(Some(VecDeque::new())),
            joined: Notify::new(),
        }
    }

    /// Adds a connection for `accept`; gives it back (for the caller to drop) when the queue
    /// is shut.
    fn push(&self, taken: Taken) -> Option<Taken> {
        match lock(&self.waiting).as_mut() {
            Some(waiting) => waiting.push_back(taken),
            None => return Some(taken),
        }
        self.joined.notify_waiters();
        None
    }

    /// The next connection. Once the queue is shut this never completes: `accept` waits for
    /// it only together with the listener's close.
    ///
    /// Cancel safe: a connection is taken off the queue only when the future completes.
    async fn pop(&self) -> Taken {
        loop {
            // Made before looking, so that a connection joining in between still wakes it.
            let joined = self.joined.notified();
            if let Some(taken) = lock(&self.waiting).as_mut().and_then(VecDeque::pop_front) {
                return taken;
            }
            joined.await;
        }
    }

    /// Drops every waiting connection (outside the lock: each drop closes a descriptor and
    /// frees a slot) and refuses the ones that come later.
    fn shut(&self) {
        let waiting = lock(&self.waiting).take();
        drop(waiting);
    }
}

/// What one step of `accept` got.
enum Next {
    /// A connection to admit and hand out.
    Ready(Taken),
    /// A connection whose PROXY protocol header is still to be read.
    ReadHeader {
        stream: Stream,
        peer: SocketAddress,
        slot: Option<OwnedSemaphorePermit>,
    },
}

impl Owner for ListenerInner {
    type Io = Listener;
    type Hook = OnRelease;

    fn core(&self) -> &Core<Listener, OnRelease> {
        &self.core
    }

    fn stop_accepting(&self) {
        self.core.close(CloseMode::Graceful);
    }
}

impl ServerSocket {
    /// Creates, binds and starts listening; the descriptor is closed on every error path.
    pub(crate) fn bind(
        selector: &Arc<SelectorInner>,
        address: SocketAddress,
        options: SocketOptions,
    ) -> Result<ServerSocket> {
        selector.check_open()?;
        options.check_listener()?;
        let backlog = i32::try_from(options.backlog).unwrap_or(i32::MAX);
        match &address {
            SocketAddress::Inet(inet) => {
                let target = inet.socket_addr();
                let raw = RawSocket::new(Domain::for_address(target), Type::STREAM, None)?;
                options.apply(&raw, Kind::TcpListener, target.is_ipv6())?;
                // Accepted sockets get these; a value the OS refuses fails here, not on every
                // accepted connection.
                options.apply_connected(&SockRef::from(&raw), true)?;
                raw.bind(&target.into())
                    .map_err(|e| crate::address::unscoped(target, e))?;
                raw.listen(backlog)?;
                raw.set_nonblocking(true)?;
                let listener = selector.register_io(|| TcpListener::from_std(raw.into()))?;
                let local = SocketAddress::from(listener.local_addr()?);
                Self::open(
                    selector,
                    Listener::Tcp(listener),
                    local,
                    options,
                    None,
                    false,
                    false,
                )
            }
            SocketAddress::Unix(unix) => {
                let raw = RawSocket::new(Domain::UNIX, Type::STREAM, None)?;
                options.apply(&raw, Kind::Unix, false)?;
                raw.bind(&unix.sock_addr()?).map_err(|e| unix.in_use(e))?;
                // From here on the file is ours: remove it on every error path.
                let owned = SocketFile::record(unix.path());
                let listening = (|| {
                    raw.listen(backlog)?;
                    raw.set_nonblocking(true)?;
                    selector.register_io(|| unix_listener(raw))
                })();
                let listener = match listening {
                    Ok(listener) => listener,
                    Err(e) => {
                        owned.remove();
                        return Err(e);
                    }
                };
                let on_release: OnRelease = Arc::new(move |_| owned.remove());
                // What the OS bound: the path as given, or for an empty path the abstract name
                // Linux picked (autobind).
                let local = listener.local_address().unwrap_or_else(|_| address.clone());
                Self::open(
                    selector,
                    listener,
                    local,
                    options,
                    Some(on_release),
                    false,
                    false,
                )
            }
        }
    }

    /// Adopts a socket that is already listening (from `std`, or passed by systemd), with
    /// `options` for the connections it accepts. An adopted Unix listener does not remove its
    /// file on close (the file is not this listener's).
    pub(crate) fn adopt(
        selector: &Arc<SelectorInner>,
        raw: RawSocket,
        options: SocketOptions,
    ) -> Result<ServerSocket> {
        selector.check_open()?;
        options.check_listener()?;
        let families = [Domain::IPV4, Domain::IPV6, Domain::UNIX];
        check_kind(
            &SockRef::from(&raw),
            Type::STREAM,
            &families,
            "TCP or Unix stream socket",
        )?;
        if !crate::adopt::listens(&SockRef::from(&raw))? {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the socket to adopt is not listening",
            )));
        }
        raw.set_nonblocking(true)?;
        let domain = crate::adopt::family(&SockRef::from(&raw))?;
        let unix = domain == Domain::UNIX;
        if !unix {
            // Marks the connections it accepts, which inherit it, as a bound listener's do.
            options.apply_type_of_service(&SockRef::from(&raw), domain == Domain::IPV6)?;
        }
        // The buffer sizes are for the connections it accepts, as a bound listener's are: a
        // TCP connection takes its listener's (a Unix one gets them in `wrap`).
        options.apply_buffer_sizes(&SockRef::from(&raw))?;
        options.apply_connected(&SockRef::from(&raw), !unix)?;
        // Whoever made it may have set a lingering SO_LINGER, which the sockets it accepts
        // inherit; asked once here (after this, only `with_sock_ref` can set one, and it says so).
        let lingers = linger_time(&raw).is_some();
        if unix {
            let listener = selector.register_io(|| unix_listener(raw))?;
            let local = listener.local_address()?;
            Self::open(selector, listener, local, options, None, lingers, true)
        } else {
            let listener = selector.register_io(|| TcpListener::from_std(raw.into()))?;
            let local = SocketAddress::from(listener.local_addr()?);
            Self::open(
                selector,
                Listener::Tcp(listener),
                local,
                options,
                None,
                lingers,
                true,
            )
        }
    }

    /// Adopts a listening `std` socket ([`std::net::TcpListener`] or
    /// [`std::os::unix::net::UnixListener`]) handed over by a supervisor or another library;
    /// the connections it accepts get the defaults of [`SocketOptions`]. To choose options, use
    /// [`TcpSocketBuilder::from_std`](crate::TcpSocketBuilder::from_std). A Unix listener's
    /// socket file is not its own: closed, it leaves the file where it is.
    ///
    /// The descriptor's close-on-exec flag is left as it is: `std` makes its sockets
    /// close-on-exec, so a child process does not inherit them, but one made from an inherited
    /// descriptor (`from_raw_fd`) may lack the flag, and is then inherited by every child
    /// process started later (set it first, through the [re-exported](crate::socket2) socket2,
    /// built with the `all` feature this needs:
    /// `net_sockets::socket2::SockRef::from(&s).set_cloexec(true)`).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] of kind [`InvalidInput`](io::ErrorKind::InvalidInput) when the socket is
    /// not listening or is not a TCP or Unix stream socket, or the OS error when it cannot be
    /// registered; [`Error::SelectorClosed`].
    pub fn from_std(
        selector: &SelectorManager,
        listener: impl StdListener,
    ) -> Result<ServerSocket> {
        crate::a_socket(selector).tcp().from_std(listener)
    }

    fn open(
        selector: &Arc<SelectorInner>,
        listener: Listener,
        local: SocketAddress,
        options: SocketOptions,
        on_release: Option<OnRelease>,
        may_linger: bool,
        adopted: bool,
    ) -> Result<ServerSocket> {
        let group = Group::new(
            selector.draining().child(),
            options.max_connections,
            options.max_connections_per_ip,
        );
        let proxied =
            (options.proxy_protocol != ProxyProtocol::Off).then(|| Arc::new(HeaderRead::new()));
        // The core runs this once, on whichever path closes the listener (`close`, a shutdown,
        // the selector, the last drop), before that close returns: an `accept` that found the
        // listener open admits its connection before this, or not at all.
        let shut: OnRelease = {
            let group = Arc::clone(&group);
            let proxied = proxied.clone();
            Arc::new(move |cause| {
                group.shut();
                if let Some(proxied) = &proxied {
                    proxied.shut();
                }
                if let Some(on_release) = &on_release {
                    on_release(cause);
                }
            })
        };
        let setup = Setup {
            // For the connections it accepts (Linux copies the listener's SO_LINGER to them).
            may_linger,
            // The kernel closes a listening socket at once, SO_LINGER or not: its close
            // releases the descriptor before it returns (new connects are refused).
            never_lingers: true,
            // An adopted socket may be another process's too (systemd's copy): its close
            // must leave it listening for them.
            listens: !adopted,
            ..Setup::releasing(tracing::debug_span!("listener", local = %local), shut)
        };
        let inner = Core::open(selector, listener, setup, |core| ListenerInner {
            core,
            local,
            options,
            exhausted: AtomicBool::new(false),
            exhaustion_warned: Mutex::new(None),
            group,
            proxied,
            waiting: Waiters::new(),
            adopted,
        })?;
        // Checked after registering: a graceful shutdown of the selector that began earlier
        // stops this listener too (dropping it closes it).
        if selector.stopped_accepting() {
            return Err(Error::SelectorClosed);
        }
        tracing::debug!(parent: inner.core.span(), "listening");
        Ok(ServerSocket { inner })
    }

    /// Waits for the next connection and returns it as a [`Socket`], with the builder's
    /// `no_delay`, keep-alive, `linger` and `socket_timeout` applied.
    ///
    /// Several tasks may wait in `accept` on one listener (through an `Arc`): each connection
    /// goes to one of them, and one that gives up leaves the others waiting, not stranded. So
    /// does one kept and not polled, such as the `accept` an [`incoming`](Self::incoming)
    /// stream keeps under way when a `next()` on it gave up (a timeout around it): the
    /// connections go to the others meanwhile. Under
    /// [`max_connections`](crate::TcpSocketBuilder::max_connections), a waiting `accept`
    /// holds one of the places, polled or not, until it completes or is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the listener is (or gets) closed, [`Error::SelectorClosed`] when
    /// its selector is; [`Error::Io`] for errors `accept(2)` does not say to retry (the
    /// retryable ones, and running out of descriptors or memory, make `accept` wait instead).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: no connection is lost. Without a PROXY protocol header to read, a
    /// connection is taken from the kernel's queue only when the future completes with it.
    /// With one, a waiting `accept` takes connections from the kernel as they come and has
    /// their headers read in tasks of their own; when it is dropped, those reads go on: a
    /// connection whose header was read waits for the next `accept`, and one whose header is
    /// bad or late is dropped, whether or not an `accept` is pending.
    pub async fn accept(&self) -> Result<Socket> {
        self.inner.accept().await
    }

    /// The accepted connections as a [`Stream`](futures_core::Stream); it ends when the
    /// listener or its selector is closed, and after an error: the errors `accept(2)` says to
    /// retry are retried as [`accept`](Self::accept) does, so an [`Error::Io`] item means the
    /// listener itself is broken, and it is the stream's last item. The listener stays open
    /// (a later `accept` reports the error again) until it is closed or dropped. The stream
    /// holds the listener: it stays open while the stream exists, also once this
    /// `ServerSocket` is dropped (its [`close`](Self::close) ends both).
    pub fn incoming(&self) -> Incoming {
        Incoming::new(Arc::clone(&self.inner))
    }

    /// The address the listener is bound to (with the port the OS picked for port 0, and for
    /// a Unix socket bound to an empty path, the abstract name Linux picked).
    pub fn local_address(&self) -> SocketAddress {
        self.inner.local.clone()
    }

    /// The port the listener is bound to; `None` for a Unix socket.
    pub fn port(&self) -> Option<u16> {
        self.inner.local.port()
    }

    /// Closes the listener: pending and later `accept` calls fail with [`Error::Closed`], the
    /// descriptor is released (new connects are refused) and a Unix socket file removed. A
    /// socket with other descriptors (adopted from systemd, which keeps a copy, or handed over
    /// to a successor) goes on listening for them: only this process's descriptor goes.
    /// Connections taken from the kernel but not handed out by `accept` (their PROXY protocol
    /// header being read, or read and waiting) are closed too, and those still in the kernel's
    /// listen queue (connected, never accepted: at `max_connections`, say) are reset by the
    /// kernel (their clients read `ConnectionReset`; what they sent is never read), unless
    /// other descriptors keep the socket listening, or, for a TCP listener made with
    /// [`reuse_port`](crate::TcpSocketBuilder::reuse_port), `net.ipv4.tcp_migrate_req` is 1 and
    /// another listener of the port takes them over. (On Linux a client whose handshake
    /// completes just as the close runs may see no reset until it sends: its first send is
    /// answered with one.) Idempotent: a close that finds another under way (another thread's,
    /// the selector's) returns once that one released the descriptor.
    ///
    /// # Restarts
    ///
    /// To hand the port to a successor without losing a connection, give it a copy of this socket
    /// (a duplicate through [`with_sock_ref`](Self::with_sock_ref), adopted with
    /// [`from_std`](Self::from_std) or through socket activation), whose queue this close leaves to
    /// it; or let it bind its own `reuse_port` listener with `net.ipv4.tcp_migrate_req` set to 1
    /// (with 0, the connections in this listener's queue are reset). A Unix listener this process
    /// bound removes its socket file as it closes, duplicated or not: a copy is then reached by no
    /// path (an abstract name has no file, and stays reachable). Let the successor bind a file of
    /// its own and rename it over the path instead (see [`ServerSocket`]), or bind the socket with
    /// `std` and adopt it with [`from_std`](Self::from_std): an adopted listener's close leaves the
    /// file. Then end the accept loop before the close: drop its pending `accept`, which then takes
    /// no connection, or accept and close in one task, as a `select!` between `accept` and a stop
    /// signal does. (A listener that reads PROXY protocol headers takes connections from the kernel
    /// as they come, and its close drops those it has not handed out.) An `accept` under way on
    /// another thread as the close comes may have taken a connection from the kernel already: that
    /// one is closed, never handed out (a client that sent something is reset); and one that still
    /// holds the listener 50 ms into the close (a thread stalled in its poll), as a `with_sock_ref`
    /// closure can, makes the close of a listener this process bound (never of an adopted one) stop
    /// the listening with `shutdown(SHUT_RD)`, for every copy of the socket: the successor's accept
    /// fails, and connects are refused.
    pub fn close(&self) {
        self.inner.core.close(CloseMode::Graceful);
    }

    /// Shuts down gracefully: stops accepting at once (new connects are refused, and those
    /// still in the kernel's listen queue reset, except at a socket that other descriptors keep
    /// listening, as [`close`](Self::close) says; pending `accept` calls fail with
    /// [`Error::Closed`]; see [`close`](Self::close) for a restart that hands the port to a
    /// successor), tells every connection it accepted that shutdown began
    /// ([`Socket::shutdown_requested`]), waits up to `grace` for them to close,
    /// then closes the rest, and reports how many finished and how many were cut (see
    /// [`ShutdownReport`] for how they are counted when another shutdown runs at the same
    /// time).
    ///
    /// A connection closed with answers still held back by flush coalescing (more than its
    /// socket took at once) counts as open until they all left: the shutdown waits for them
    /// too, and at the end of the grace period resets such a connection (never a clean end
    /// with answers missing).
    ///
    /// A connection cut at the end of the grace period is closed as [`Socket::close`] closes a
    /// plain socket: its peer gets what was written, then a clean end, or a reset when bytes
    /// were lost (its write channel still buffers some, a write is under way, a write failed;
    /// a plain Unix socket has no reset). A TLS connection gets no `close_notify`: its peer sees
    /// the stream truncated, never a clean end.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the shutdown begun (the listener closed, connections
    /// signalled) but closes no connection.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> net_sockets::Result<()> {
    /// # let selector = net_sockets::SelectorManager::new();
    /// # let server = net_sockets::a_socket(&selector).tcp().bind(("127.0.0.1", 0)).await?;
    /// # let _client = net_sockets::a_socket(&selector).tcp().connect(server.local_address());
    /// # let _client = _client.await?;
    /// # let socket = server.accept().await?;
    /// # // A connection that closes when told the shutdown began, as a server's would.
    /// # let serving = tokio::spawn(async move { socket.shutdown_requested().await });
    /// # let (accepting, report) = tokio::join!(server.accept(), async {
    /// let report = server.shutdown(std::time::Duration::from_secs(10)).await;
    /// println!("{} finished, {} cut", report.finished, report.cut);
    /// # report });
    /// # assert_eq!((report.finished, report.cut), (1, 0));
    /// # assert!(server.is_closed());
    /// # assert!(matches!(accepting, Err(net_sockets::Error::Closed)));
    /// # let address = server.local_address();
    /// # let refused = net_sockets::a_socket(&selector).tcp().connect(address).await;
    /// # assert!(refused.is_err());
    /// # serving.await.unwrap();
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        // A task's waker that panics as the close wakes it stops no step: the shutdown ends as
        // always, then its panic goes on to the caller.
        let mut unwinds = Unwinds::default();
        unwinds.run(|| self.close());
        let timer = SelectorSleep::new(self.inner.core.selector(), grace);
        let closed = self.inner.core.selector().token();
        let report = self.inner.group.drain(grace, timer, closed).await;
        unwinds.finish();
        report
    }

    /// Counters of this listener: connections accepted and open, refused by
    /// `max_connections_per_ip`, dropped for a bad PROXY protocol header.
    pub fn stats(&self) -> ListenerStats {
        self.inner.group.stats()
    }

    /// Runs `f` with a [`socket2::SockRef`] to the open listener, to read or set options.
    ///
    /// `f` holds the listener while it runs: a [`close`](Self::close) meanwhile (inside `f`,
    /// or on another thread) waits up to 50 ms for `f` to return, then stops the listening
    /// (`shutdown(SHUT_RD)`: connects are refused once it returns; an adopted listener goes
    /// on listening until `f` returns) and leaves the descriptor to go as `f` returns.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] (or [`Error::SelectorClosed`]) when the listener is closed; the error
    /// `f` returns, as [`Error::Io`].
    pub fn with_sock_ref<R>(&self, f: impl FnOnce(SockRef<'_>) -> io::Result<R>) -> Result<R> {
        self.inner.core.with_sock_ref(f)
    }

    /// Whether the listener is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.core.is_closed()
    }

    /// Waits until the listener is closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future changes nothing.
    pub async fn await_closed(&self) {
        self.inner.core.await_closed().await;
    }
}

impl fmt::Debug for ServerSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSocket")
            .field("local", &self.inner.local)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl ListenerInner {
    /// The next connection: admitted (within the caps), with its PROXY protocol header read.
    async fn accept(self: &Arc<Self>) -> Result<Socket> {
        loop {
            let next = self.core.until_closed(self.next()).await?;
            // A step that completed while the listener was closing hands nothing out: the
            // connection is dropped, and its slot freed. (A close landing after this check is
            // caught by the admission, which the close shuts.)
            self.core.check_open()?;
            match next {
                Next::Ready(taken) => {
                    if let Some(socket) = self.admit(taken)? {
                        return Ok(socket);
                    }
                }
                Next::ReadHeader { stream, peer, slot } => {
                    self.read_header_later(stream, peer, slot);
                }
            }
        }
    }

    /// One step of `accept`: a connection whose header was read, or the next one from the
    /// kernel (within `max_connections`). Neither is taken unless the future completes.
    async fn next(&self) -> Result<Next> {
        let from_kernel = async {
            let slot = self.group.slot().await;
            let (stream, peer) = self.accept_stream().await?;
            Ok(match self.proxied {
                None => Next::Ready(Taken {
                    stream,
                    remote: peer,
                    slot,
                    proxy: None,
                    received: Bytes::new(),
                }),
                Some(_) => Next::ReadHeader { stream, peer, slot },
            })
        };
        match &self.proxied {
            None => from_kernel.await,
            Some(proxied) => tokio::select! {
                // The ones whose header was read came first; they also hold slots already, so
                // at the cap they are all `accept` can hand out.
                biased;
                taken = proxied.pop() => Ok(Next::Ready(taken)),
                next = from_kernel => next,
            },
        }
    }

    /// Takes the next connection from the kernel, retrying the errors `accept(2)` says to
    /// retry (pausing after [`RETRY_BURST`] of them in a row) and pausing while descriptors or
    /// memory are exhausted.
    async fn accept_stream(&self) -> Result<(Stream, SocketAddress)> {
        let selector = self.core.selector();
        let wait = self.waiting.join();
        // The errors to retry met in a row since the last pause.
        let mut retried = 0;
        loop {
            let accept = self.core.run(|listener, _| {
                // The accepted stream registers with the runtime current while it is made:
                // the selector's.
                let _runtime = selector.handle().enter();
                listener.poll_accept(&mut Context::from_waker(self.waiting.waker()))
            });
            let mut accept = std::pin::pin!(accept);
            let accepted = std::future::poll_fn(|cx| {
                // Noted before the poll: a connection that comes after it wakes this task. And
                // outside it, which holds the listener: the waker this replaces may be the
                // last of a task that waited here before (its pause renewed the others), whose
                // drop may close this listener, and that close must not find the listener
                // held (it would return with the descriptor still open).
                wait.note(cx.waker());
                accept.as_mut().poll(cx)
            })
            .await;
            match accepted {
                Ok(accepted) => {
                    if self.exhausted.swap(false, Ordering::Relaxed) {
                        tracing::debug!(parent: self.core.span(), "resources available again, accepting");
                    }
                    if self.inherits_a_linger_time(&accepted.0) {
                        // Linux copied the listener's SO_LINGER to the connection, and a
                        // lingering close waits, on the thread that makes it, for the peer to
                        // acknowledge the end (for the whole linger time when its host never
                        // answers). A connection refused or dropped before it is handed out
                        // is closed on a runtime thread, with nothing sent on it: it must not
                        // linger. `wrap` gives it its linger back as it becomes a socket, whose
                        // lingering close runs off the runtime. (A linger of 0 stays: that
                        // close is a reset, which never waits.)
                        let _ = SockRef::from(&accepted.0).set_linger(None);
                    }
                    return Ok(accepted);
                }
                // An accept in flight as the listener closed fails on the closed socket
                // (Linux: `EINVAL` once the close stopped the listening, when the accept held
                // the socket for too long): that is the close.
                Err(Error::Io(_)) if self.core.is_closed() => {
                    return Err(self.core.closed_error());
                }
                Err(Error::Io(e)) => match classify(&e) {
                    AcceptError::Retry => {
                        tracing::debug!(parent: self.core.span(), error = %e, "accept failed; retrying");
                        retried += 1;
                        if retried == RETRY_BURST {
                            retried = 0;
                            if self.warn_of_exhaustion() {
                                tracing::warn!(parent: self.core.span(), error = %e, "accept failed {RETRY_BURST} times in a row; pausing 100 ms between such bursts");
                            } else {
                                tracing::debug!(parent: self.core.span(), error = %e, "accept failed {RETRY_BURST} times in a row; pausing 100 ms between such bursts");
                            }
                            self.back_off().await?;
                        }
                    }
                    AcceptError::Exhausted => {
                        if !self.exhausted.swap(true, Ordering::Relaxed) {
                            // What ran out, for the operator who raises its limit.
                            let what = if e.raw_os_error() == Some(libc::ENOSPC) {
                                "epoll watches (fs.epoll.max_user_watches)"
                            } else {
                                "descriptors or memory"
                            };
                            if self.warn_of_exhaustion() {
                                tracing::warn!(parent: self.core.span(), error = %e, "out of {what}; accept pauses and retries every 100 ms");
                            } else {
                                tracing::debug!(parent: self.core.span(), error = %e, "out of {what}; accept pauses and retries every 100 ms");
                            }
                        }
                        self.back_off().await?;
                    }
                    AcceptError::Fatal => return Err(Error::Io(e)),
                },
                Err(e) => return Err(e),
            }
        }
    }

    /// Pauses the accept loop for [`EXHAUSTION_BACKOFF`].
    ///
    /// # Errors
    ///
    /// The close error when the listener or its selector closes meanwhile.
    async fn back_off(&self) -> Result<()> {
        // A sleep of the selector's runtime, which fails once the selector is closed (also by
        // the end of that runtime: its timer must not be polled after it, though the task
        // polling is another runtime's).
        let backoff = SelectorSleep::new(self.core.selector(), EXHAUSTION_BACKOFF);
        tokio::select! {
            biased;
            () = self.core.await_closed() => Err(self.core.closed_error()),
            slept = backoff => slept.map_err(|_| self.core.closed_error()),
        }
    }

    /// Whether an episode of running out of resources that begins now is a warning: the
    /// first, and one at least [`EXHAUSTION_WARNING_INTERVAL`] after the last warning.
    fn warn_of_exhaustion(&self) -> bool {
        let now = Instant::now();
        let mut warned = lock(&self.exhaustion_warned);
        let warn =
            warned.is_none_or(|last| now.duration_since(last) >= EXHAUSTION_WARNING_INTERVAL);
        if warn {
            *warned = Some(now);
        }
        warn
    }

    /// Reads the PROXY protocol header of `stream` in a task of its own (bounded by the header
    /// timeout and by the listener's close); a connection with a good header joins the queue
    /// `accept` takes from, unless the listener closed meanwhile.
    fn read_header_later(
        &self,
        mut stream: Stream,
        peer: SocketAddress,
        slot: Option<OwnedSemaphorePermit>,
    ) {
        // The task holds what it needs, never the listener itself: a listener dropped while
        // a header is being read closes at once (its drop cancels `closed`).
        let Some(proxied) = self.proxied.clone() else {
            return;
        };
        let closed = self.core.close_token();
        let group = Arc::clone(&self.group);
        let span = self.core.span().clone();
        let required = self.options.proxy_protocol == ProxyProtocol::Required;
        let limit = self.options.proxy_header_timeout;
        let timer = {
            let _runtime = self.core.selector().handle().enter();
            tokio::time::sleep(limit)
        };
        let task = async move {
            let mut start = HeaderBytes::default();
            let read = tokio::select! {
                biased;
                () = closed.cancelled() => return,
                read = start.read(&mut stream, required) => read,
                // No header in time. Optional, the connection is taken as it is, with what it
                // sent (a client of a protocol where the server speaks first sends nothing).
                () = timer => if required || start.has_signature() {
                    Err(HeaderError::Late(limit))
                } else {
                    Ok((None, start.into_bytes()))
                },
            };
            match read {
                Ok((proxy, received)) => {
                    let (remote, proxy) = match proxy.and_then(|h| h.addresses) {
                        Some(addresses) => {
                            (SocketAddress::from(addresses.source), Some(peer.clone()))
                        }
                        None => (peer, None),
                    };
                    let taken = Taken {
                        stream,
                        remote,
                        slot,
                        proxy,
                        received,
                    };
                    if let Some(taken) = proxied.push(taken) {
                        tracing::debug!(parent: &span, remote = %taken.remote, "dropped a connection whose header was read after the listener closed");
                    }
                }
                // Optional, a connection that failed before a header began (before a whole
                // signature) sent no bad header: dropped quietly (a proxy's fault is what the
                // count and the warning tell of).
                Err(HeaderError::Io(e)) if !required => {
                    tracing::debug!(parent: &span, peer = %peer, error = %e, "dropped a connection that failed before it sent a PROXY protocol header");
                }
                Err(e) => {
                    // A client that skips the proxy (a port scanner, for one) decides how
                    // often this happens: the listener's first one is a warning (a proxy that
                    // sends no header shows at `info`), the others are at `debug`, so that
                    // clients cannot fill a log kept at `info`; the stats count them all.
                    if group.proxy_header_failures.fetch_add(1, Ordering::Relaxed) == 0 {
                        tracing::warn!(parent: &span, peer = %peer, error = %e, "dropped a connection: bad PROXY protocol header");
                    } else {
                        tracing::debug!(parent: &span, peer = %peer, error = %e, "dropped a connection: bad PROXY protocol header");
                    }
                }
            }
        };
        drop(self.core.selector().handle().spawn(task));
    }

    /// Admits a connection under the per-address cap and makes it a [`Socket`], as `accept`
    /// hands it out; `None` when it was refused or failed set-up (it is closed, with a `debug`
    /// or `warn` event).
    ///
    /// # Errors
    ///
    /// The close error when the listener or its selector closed (or a shutdown began) since
    /// `accept` found it open, also while the connection was being set up: the connection is
    /// closed unanswered (no `warn`: no set-up failed).
    fn admit(&self, taken: Taken) -> Result<Option<Socket>> {
        let Taken {
            stream,
            remote,
            slot,
            proxy,
            received,
        } = taken;
        let ip = remote.as_inet().map(|a| a.ip().to_canonical());
        let selector = self.core.selector();
        let admitted = self.group.admit(ip, slot, || selector.connection_opened());
        let (membership, counted) = match admitted {
            Ok(admitted) => admitted,
            Err(Refused::PerIp) => {
                tracing::debug!(parent: self.core.span(), remote = %remote, "refused: too many connections from this address");
                return Ok(None);
            }
            Err(Refused::Shut) => return Err(self.core.closed_error()),
        };
        #[cfg(test)]
        tests::between_admission_and_wrap();
        match self.wrap(stream, remote, membership, counted, proxy, received) {
            Ok(socket) => Ok(Some(socket)),
            // The selector (or the listener) closed under it, as asked: no set-up failed.
            Err(_) if self.core.is_closed() => Err(self.core.closed_error()),
            Err(e) => {
                tracing::warn!(parent: self.core.span(), error = %e, "dropped a connection that failed set-up");
                Ok(None)
            }
        }
    }

    /// Whether the connections this listener accepts may come with a lingering `SO_LINGER`:
    /// Linux copies the listener's, set by the builder's `linger`, through `with_sock_ref`, or
    /// before the listener was adopted.
    fn lingers(&self) -> bool {
        self.options.linger.is_some() || self.core.may_linger()
    }

    /// Whether `stream`, just accepted, came with a lingering `SO_LINGER` (a time, not 0, which
    /// makes a close a reset) copied from the listener: the builder's, known here; one set
    /// through `with_sock_ref` or before the listener was adopted, asked of the kernel.
    fn inherits_a_linger_time(&self, stream: &Stream) -> bool {
        if self.core.may_linger() {
            linger_time(stream).is_some()
        } else {
            self.options.linger.is_some_and(|time| !time.is_zero())
        }
    }

    /// Turns an accepted stream into a [`Socket`] registered with the selector.
    fn wrap(
        &self,
        stream: Stream,
        remote: SocketAddress,
        membership: Membership,
        counted: OpenConnection,
        proxy: Option<SocketAddress>,
        received: Bytes,
    ) -> Result<Socket> {
        // A set-up that fails drops the two places in this order: the group's first, then the
        // selector's (parameters would go in the reverse order of theirs), so that the
        // selector's count reads none only once its listeners' do.
        let places = (membership, counted);
        // macOS: its sends must not raise SIGPIPE (one queued before an adopted listener was
        // adopted did not inherit that from it).
        crate::adopt::ensure_no_sigpipe(&SockRef::from(&stream))?;
        let tcp = matches!(stream, Stream::Tcp(_));
        let (local, ipv6) = match &stream {
            Stream::Tcp(s) => {
                let local = s.local_addr()?;
                (SocketAddress::from(local), local.is_ipv6())
            }
            Stream::Unix(_) => (self.local.clone(), false),
        };
        match &stream {
            // A TCP connection inherits the listener's buffer sizes and type of service; a
            // Unix one does not.
            Stream::Unix(_) => self.options.apply_buffer_sizes(&SockRef::from(&stream))?,
            // An adopted listener got them only as it was adopted: a connection the kernel
            // queued before (the one that socket-activated the service) has the old ones.
            Stream::Tcp(s) if self.adopted => {
                let sock = SockRef::from(s);
                self.options.apply_buffer_sizes(&sock)?;
                self.options.apply_type_of_service(&sock, ipv6)?;
            }
            Stream::Tcp(_) => {}
        }
        // The builder's linger among them, last: a connection that fails here closes on this
        // thread, and must not linger (see `accept_stream`).
        self.options.apply_connected(&SockRef::from(&stream), tcp)?;
        if self.options.linger.is_none() && self.core.may_linger() {
            // The listener's own SO_LINGER (set through `with_sock_ref`, or before it was
            // adopted), which `accept_stream` took off the connection.
            if let Ok(Ok(Some(time))) = self.core.io().map(|l| SockRef::from(&*l).linger()) {
                SockRef::from(&stream).set_linger(Some(time))?;
            }
        }
        let (membership, counted) = places;
        let origin = Origin::Accepted {
            group: Arc::clone(&self.group),
            membership,
            counted,
            proxy,
            received,
        };
        let conn = Conn::open(
            self.core.selector(),
            stream,
            local,
            remote,
            &self.options,
            origin,
            self.lingers(),
        )?;
        tracing::debug!(parent: conn.core().span(), "accepted");
        Ok(Socket::new(Link { conn }))
    }
}

/// Why a PROXY protocol header was not accepted.
#[derive(Debug)]
enum HeaderError {
    Missing,
    Invalid(ProxyError),
    Late(Duration),
    Ended,
    /// The connection failed (a reset) after a whole signature: a header cut short.
    Failed(io::Error),
    Io(io::Error),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Missing => f.write_str("the connection did not start with one"),
            HeaderError::Invalid(e) => fmt::Display::fmt(e, f),
            HeaderError::Late(limit) => write!(f, "not complete within {limit:?}"),
            HeaderError::Ended => f.write_str("the connection ended before it was complete"),
            HeaderError::Failed(e) => {
                write!(f, "the connection failed before it was complete: {e}")
            }
            HeaderError::Io(e) => fmt::Display::fmt(e, f),
        }
    }
}

/// The most bytes a read for a PROXY protocol header asks for (and makes room for): room for
/// any v1 header, and for a v2 header with IPv6 addresses and the TLVs proxies commonly add,
/// with the first bytes of the application's data. A longer v2 header takes more reads, so
/// that the memory held for a header follows the bytes received, not the length it announces.
const HEADER_READ: usize = 512;

/// The first bytes of a connection, read to look for a PROXY protocol header.
#[derive(Default)]
struct HeaderBytes {
    buf: Vec<u8>,
}

impl HeaderBytes {
    /// Reads a PROXY protocol header from the start of `stream`. Returns the header (`None`
    /// when an optional header is absent: the bytes are not a header, or the stream ended
    /// before a whole signature came; after one, a stream that ends is an error) and the bytes
    /// read that belong to the application: all of them when the header is absent, those that
    /// came after it otherwise (each read takes what has arrived, up to [`HEADER_READ`] bytes,
    /// so a header usually takes one read; the buffer holds at most that much more than was
    /// received).
    /// Cancel safe: what was read stays here.
    async fn read(
        &mut self,
        stream: &mut Stream,
        required: bool,
    ) -> std::result::Result<(Option<ProxyHeader>, Bytes), HeaderError> {
        use bytes::BufMut;
        loop {
            match proxy_protocol::parse(&self.buf) {
                Parse::Done { header, consumed } => {
                    let after = if consumed == self.buf.len() {
                        Bytes::new()
                    } else {
                        Bytes::from(std::mem::take(&mut self.buf)).slice(consumed..)
                    };
                    return Ok((Some(header), after));
                }
                Parse::NotProxy if required => return Err(HeaderError::Missing),
                Parse::NotProxy => return Ok((None, std::mem::take(self).into_bytes())),
                Parse::Invalid(e) => return Err(HeaderError::Invalid(e)),
                Parse::NeedMore { .. } => {}
            }
            // What has come, up to `HEADER_READ` bytes (the bytes after a header are the
            // application's), never more than decides (the limit of both versions). Room is
            // made for that much once the buffer is full, whatever length a v2 header
            // announced (and not on every read: a header sent a byte at a time fills the room
            // it has). Only the bytes read are appended, so a read dropped mid-way leaves
            // nothing behind.
            let room = (proxy_protocol::MAX_HEADER - self.buf.len()).min(HEADER_READ);
            if self.buf.len() == self.buf.capacity() {
                self.buf.reserve_exact(room);
            }
            let mut room = (&mut self.buf).limit(room);
            let n = stream.read_some(&mut room).await.map_err(|e| {
                // After a whole signature, a header cut short (counted, also when optional).
                if self.has_signature() {
                    HeaderError::Failed(e)
                } else {
                    HeaderError::Io(e)
                }
            })?;
            if n == 0 {
                // Optional, a client that ended its sending sent no header: what it sent is
                // the application's, as when the header timeout passes.
                // One that sent a whole signature sent a header, cut short: rejected.
                if required || self.has_signature() {
                    return Err(HeaderError::Ended);
                }
                return Ok((None, std::mem::take(self).into_bytes()));
            }
        }
    }

    /// Whether the bytes read start with a whole PROXY protocol signature.
    fn has_signature(&self) -> bool {
        proxy_protocol::has_signature(&self.buf)
    }

    /// The bytes read, which are the application's when there is no header.
    fn into_bytes(self) -> Bytes {
        Bytes::from(self.buf)
    }
}

/// What the accept loop does after an error.
#[derive(Debug, PartialEq, Eq)]
enum AcceptError {
    /// A failure of the one connection being accepted: take the next.
    Retry,
    /// Out of descriptors or memory: pause, then retry.
    Exhausted,
    /// The listener itself is broken.
    Fatal,
}

/// Classifies an `accept(2)` error as its manual page says: errors of the pending connection
/// (including the network errors Linux passes on from it, and `EPERM` from a firewall) are
/// retried; running out of descriptors or memory waits. So does `ENOSPC`, which `accept(2)`
/// never returns but the runtime's watch of the accepted connection does (`epoll_ctl(2)`: the
/// user has `fs.epoll.max_user_watches` watches): a limit of the process's user, as `ENFILE`
/// is of the system, not a fault of the listener (the connection is closed, as one that fails
/// set-up is).
fn classify(e: &io::Error) -> AcceptError {
    if e.kind() == io::ErrorKind::Interrupted {
        return AcceptError::Retry;
    }
    let Some(code) = e.raw_os_error() else {
        return AcceptError::Fatal;
    };
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if code == libc::ENONET {
        return AcceptError::Retry;
    }
    match code {
        libc::ECONNABORTED
        | libc::ECONNRESET
        | libc::EPROTO
        | libc::ENETDOWN
        | libc::ENOPROTOOPT
        | libc::EHOSTDOWN
        | libc::EHOSTUNREACH
        | libc::EOPNOTSUPP
        | libc::ENETUNREACH
        | libc::EPERM
        | libc::EINTR => AcceptError::Retry,
        libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::ENOSPC => {
            AcceptError::Exhausted
        }
        _ => AcceptError::Fatal,
    }
}

/// A Unix socket file a socket made by binding (a listener's, or a connecting socket's local
/// address), identified by device and inode, so that it is only removed while it is still that
/// file. (An abstract or empty name has no file: removing does nothing.)
///
/// Where the OS allows (`O_PATH`, Linux), the record holds the file's inode open until the file
/// is removed: the socket's close, which comes first, would otherwise free the inode of a file
/// someone else unlinked, and a file bound at the path in between could get its number (ext4
/// gives it out again at once) and be taken for this one. Held, the number stays this file's.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    identity: Option<(u64, u64)>,
    /// The file's inode, held open (one descriptor) until `remove`.
    pinned: Mutex<Option<std::fs::File>>,
}

impl SocketFile {
    pub(crate) fn record(path: &Path) -> SocketFile {
        let pinned = pin(path);
        let identity = match &pinned {
            Some(file) => file.metadata().ok().map(|m| (m.dev(), m.ino())),
            None => identity(path),
        };
        SocketFile {
            // A relative path as it resolved when the socket was bound: the working directory
            // may change before the file is removed.
            path: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
            identity,
            pinned: Mutex::new(pinned),
        }
    }

    pub(crate) fn remove(&self) {
        // Let go of the inode only after the comparison and the unlink.
        let _pinned = lock(&self.pinned).take();
        if self.identity.is_some() && identity(&self.path) == self.identity {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The inode at `path` (the link itself, as `identity` sees it), held open without opening the
/// socket behind it; `None` where the OS cannot (then the record holds the numbers only).
///
/// `open(2)` is called directly: `std`'s `custom_flags` drops the bits of the C library's
/// `O_ACCMODE`, which musl's counts `O_PATH` among (as its `O_SEARCH`), so through `std` a
/// musl build opened the socket file for reading, which fails (`ENXIO`).
#[allow(unsafe_code)]
fn pin(path: &Path) -> Option<std::fs::File> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::os::fd::{FromRawFd, OwnedFd};
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: `path` is a NUL-terminated string that lives through the call, the only
        // pointer `open` reads; no mode is passed, as the flags create nothing.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: `open` just returned this descriptor, open and owned by nothing else.
        Some(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = path;
        None
    }
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// The stream of accepted connections of a [`ServerSocket`], from
/// [`ServerSocket::incoming`]; it ends when the listener or its selector is closed, and after
/// the first error it yields (an error `accept(2)` does not say to retry).
#[must_use = "streams do nothing unless polled"]
pub struct Incoming {
    inner: Repeat<ListenerInner, Socket>,
}

impl Incoming {
    fn new(inner: Arc<ListenerInner>) -> Self {
        Incoming {
            inner: Repeat::new(inner, |inner| Box::pin(async move { inner.accept().await })),
        }
    }
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("local", &self.inner.core().local)
            .finish_non_exhaustive()
    }
}

impl futures_core::Stream for Incoming {
    type Item = Result<Socket>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let inner = &mut self.get_mut().inner;
        let next = ready!(inner.poll_next(cx));
        // `accept` retries every error that concerns one connection; one it reports is the
        // listener's own and comes back on every later try, so it is the last item.
        if let Some(Err(_)) = next {
            inner.end();
        }
        Poll::Ready(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener's file is unlinked by someone else (a new instance of the service, which
    /// then binds the path again). The listener's close releases its descriptor first, which
    /// frees the file's inode, and removes its file right after: a file bound at the path in
    /// between may get the freed inode number (ext4 gives it to the next file at once), and
    /// must not be taken for the listener's and removed.
    #[test]
    fn a_file_bound_after_the_socket_closed_is_not_removed_though_it_reused_the_inode() {
        use std::os::unix::net::UnixListener as StdUnixListener;
        let dir = std::env::temp_dir().join(format!(
            "net-sockets-{}-socket-file-reuse",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("s.sock");
        let mut reused = 0;
        for _ in 0..20 {
            let first = StdUnixListener::bind(&path).unwrap();
            let file = SocketFile::record(&path);
            let first_inode = std::fs::symlink_metadata(&path).unwrap().ino();
            // Someone else unlinks it; the listener closes (as `Core::release` does: the
            // descriptor first, then the file); a new listener binds the path in between.
            std::fs::remove_file(&path).unwrap();
            drop(first);
            let second = StdUnixListener::bind(&path).unwrap();
            if std::fs::symlink_metadata(&path).unwrap().ino() == first_inode {
                reused += 1;
            }
            file.remove();
            assert!(
                std::fs::symlink_metadata(&path).is_ok(),
                "the first listener's close removed the second listener's file \
                 (the inode number was reused {reused} times)"
            );
            drop(second);
            std::fs::remove_file(&path).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// On Linux the record of a socket file holds the file's inode open, whatever the C library
    /// the program is built with. (Before, with musl, it held the numbers only: `O_PATH` went
    /// through `std`'s `custom_flags`, which drops the bits of `O_ACCMODE`, and musl counts
    /// `O_PATH` in it; the open without it failed with `ENXIO`, a socket file opened for
    /// reading, so a file that got the inode's number after the socket's close was removed.)
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn the_record_holds_the_socket_files_inode_open() {
        use std::os::unix::net::UnixListener as StdUnixListener;
        let dir = std::env::temp_dir().join(format!(
            "net-sockets-{}-socket-file-pinned",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("s.sock");
        let listener = StdUnixListener::bind(&path).unwrap();
        let file = SocketFile::record(&path);
        let pinned = lock(&file.pinned)
            .as_ref()
            .map(|pinned| pinned.metadata().map(|m| (m.dev(), m.ino())));
        let on_disk = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(
            pinned
                .expect("the record holds no descriptor of the socket file's inode")
                .unwrap(),
            (on_disk.dev(), on_disk.ino())
        );
        file.remove();
        assert!(
            std::fs::symlink_metadata(&path).is_err(),
            "the record did not remove its own file"
        );
        drop(listener);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn accept_errors_are_classified_as_accept_2_says() {
        let retry = [
            libc::ECONNABORTED,
            libc::ECONNRESET,
            libc::EPROTO,
            libc::ENETDOWN,
            libc::ENOPROTOOPT,
            libc::EHOSTDOWN,
            libc::EHOSTUNREACH,
            libc::EOPNOTSUPP,
            libc::ENETUNREACH,
            libc::EPERM,
            libc::EINTR,
            #[cfg(any(target_os = "linux", target_os = "android"))]
            libc::ENONET,
        ];
        for code in retry {
            let e = io::Error::from_raw_os_error(code);
            assert_eq!(classify(&e), AcceptError::Retry, "{e}");
        }
        let exhausted = [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
            libc::ENOMEM,
            libc::ENOSPC,
        ];
        for code in exhausted {
            let e = io::Error::from_raw_os_error(code);
            assert_eq!(classify(&e), AcceptError::Exhausted, "{e}");
        }
        for code in [libc::EBADF, libc::EINVAL, libc::ENOTSOCK, libc::EFAULT] {
            let e = io::Error::from_raw_os_error(code);
            assert_eq!(classify(&e), AcceptError::Fatal, "{e}");
        }
        assert_eq!(
            classify(&io::Error::from(io::ErrorKind::Interrupted)),
            AcceptError::Retry
        );
        assert_eq!(
            classify(&io::Error::other("not from the OS")),
            AcceptError::Fatal
        );
    }

    #[tokio::test]
    async fn a_close_drops_the_connections_whose_header_was_read_and_frees_their_slots() {
        use tokio::io::AsyncReadExt;
        let selector = SelectorManager::new();
        let server = crate::a_socket(&selector)
            .tcp()
            .proxy_protocol(ProxyProtocol::Required)
            .max_connections(1)
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = server.port().unwrap();
        let inner = &server.inner;
        let proxied = inner.proxied.as_ref().unwrap();
        let mut clients = Vec::new();
        let mut taken = Vec::new();
        for slot in [inner.group.slot().await, None] {
            clients.push(
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap(),
            );
            let (stream, remote) = inner.accept_stream().await.unwrap();
            taken.push(Taken {
                stream,
                remote,
                slot,
                proxy: None,
                received: Bytes::new(),
            });
        }
        let late = taken.pop().unwrap();
        // As the header-reading tasks leave them: one before the close, one after.
        assert!(proxied.push(taken.pop().unwrap()).is_none());
        server.close();
        assert!(
            proxied.push(late).is_some(),
            "the queue took one after the close"
        );
        let accepted = server.accept().await;
        assert!(matches!(accepted, Err(Error::Closed)), "{accepted:?}");
        assert_eq!(server.stats(), ListenerStats::default());
        // The slot is free again, and both clients see the end.
        let slot = tokio::time::timeout(Duration::from_secs(5), inner.group.slot()).await;
        assert!(slot.is_ok(), "the slot of a dropped connection stays taken");
        for client in &mut clients {
            let mut rest = Vec::new();
            let read = client.read_to_end(&mut rest).await;
            assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        }
    }

    /// `accept` found the listener open, then a close or a shutdown landed before it admitted
    /// the connection it took from the kernel (another thread can close in between): the
    /// connection is not handed out, and is closed unanswered. The steps of `accept` are taken
    /// one by one here, so that the close lands in that window every time.
    #[tokio::test]
    async fn a_close_after_accepts_open_check_hands_nothing_out() {
        use tokio::io::AsyncReadExt;
        for shutdown in [false, true] {
            let selector = SelectorManager::new();
            let server = crate::a_socket(&selector)
                .tcp()
                .bind(("127.0.0.1", 0))
                .await
                .unwrap();
            let port = server.port().unwrap();
            let inner = &server.inner;
            let _held_client = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let held = server.accept().await.unwrap();
            let mut client = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let (stream, remote) = inner.accept_stream().await.unwrap();
            inner.core.check_open().unwrap();
            // The close lands here (a shutdown begins on its first poll).
            let draining = if shutdown {
                let mut draining = Box::pin(server.shutdown(Duration::from_secs(10)));
                let polled = poll_once(draining.as_mut()).await;
                assert!(polled.is_none(), "ended with a connection open: {polled:?}");
                Some(draining)
            } else {
                server.close();
                None
            };
            let taken = Taken {
                stream,
                remote,
                slot: None,
                proxy: None,
                received: Bytes::new(),
            };
            let admitted = inner.admit(taken);
            assert!(
                matches!(admitted, Err(Error::Closed)),
                "shutdown: {shutdown}: {admitted:?}"
            );
            assert_eq!(server.stats().accepted, 1);
            assert_eq!(server.stats().open, 1);
            let mut rest = Vec::new();
            let read = client.read_to_end(&mut rest).await;
            assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
            // The shutdown waits for the one connection it counted, and no other.
            if let Some(draining) = draining {
                drop(held);
                let report = tokio::time::timeout(Duration::from_secs(5), draining)
                    .await
                    .unwrap();
                assert_eq!((report.finished, report.cut), (1, 0), "{report:?}");
            }
        }
    }

    thread_local! {
        /// What runs on this thread in `admit`, after the group admitted the connection and
        /// before it becomes a socket (another thread acting in that moment).
        static ADMITTED: std::cell::RefCell<Option<Box<dyn FnOnce()>>> =
            std::cell::RefCell::new(None);
    }

    pub(super) fn between_admission_and_wrap() {
        if let Some(step) = ADMITTED.with(|a| a.borrow_mut().take()) {
            step();
        }
    }

    type Report = Pin<Box<dyn std::future::Future<Output = ShutdownReport> + Send>>;

    /// Has the next `admit` on this thread begin a graceful shutdown of `selector`, with
    /// `grace`, after the group admitted its connection: the shutdown runs on a thread of its
    /// own (not on the selector's runtime, which its close stops), and `admit` goes on once it
    /// began (with `until_closed`, once it closed the selector); it comes back through the
    /// receiver.
    fn shutdown_in_admission(
        selector: &SelectorManager,
        grace: Duration,
        until_closed: bool,
    ) -> std::sync::mpsc::Receiver<Report> {
        let (begun, shutdown) = std::sync::mpsc::channel::<Report>();
        let selector = selector.clone();
        ADMITTED.with(|a| {
            *a.borrow_mut() = Some(Box::new(move || {
                let inner = Arc::clone(selector.inner());
                let (report, running) = tokio::sync::oneshot::channel();
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    let _ = report.send(runtime.block_on(selector.shutdown(grace)));
                });
                for _ in 0..5_000 {
                    let reached = if until_closed {
                        inner.is_closed()
                    } else {
                        inner.draining().has_begun()
                    };
                    if reached {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                begun
                    .send(Box::pin(async move { running.await.unwrap() }))
                    .unwrap();
            }));
        });
        shutdown
    }

    /// A selector with a runtime of its own (which runs a shutdown while the test's thread is
    /// held in `admit`), a listener of it on 127.0.0.1, and the listener's port.
    async fn selector_of_its_own_listening() -> (SelectorManager, ServerSocket, u16) {
        let selector = SelectorManager::builder()
            .worker_threads(1)
            .build()
            .unwrap();
        let server = crate::a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = server.port().unwrap();
        (selector, server, port)
    }

    /// `accept` admitted a connection, then a graceful shutdown of the selector began (on
    /// another thread) before the connection became a socket. The listener was open when it
    /// was admitted, so `accept` hands it out, told that shutdown began, and the selector's
    /// report counts it among the connections open when it began (with another connection
    /// held open, so that the shutdown waits; without one, it must not end at once and close
    /// the selector under the connection being set up).
    #[tokio::test]
    async fn a_connection_admitted_as_a_selector_shutdown_begins_is_in_its_report() {
        for held in [false, true] {
            let (selector, server, port) = selector_of_its_own_listening().await;
            let mut clients = Vec::new();
            let mut sockets = Vec::new();
            if held {
                clients.push(
                    tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .unwrap(),
                );
                sockets.push(server.accept().await.unwrap());
            }
            clients.push(
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap(),
            );
            let shutdown = shutdown_in_admission(&selector, Duration::from_secs(10), false);
            let accepted = server.accept().await;
            let report = shutdown.try_recv().expect("the shutdown began in `admit`");
            let socket = accepted.unwrap_or_else(|e| panic!("held {held}: {e}"));
            assert!(socket.is_shutdown_requested(), "held {held}");
            sockets.push(socket);
            for socket in &sockets {
                socket.close();
            }
            let report = tokio::time::timeout(Duration::from_secs(5), report)
                .await
                .unwrap();
            let open = sockets.len();
            assert_eq!(
                (report.finished, report.cut),
                (open, 0),
                "held {held}: {report:?}"
            );
        }
    }

    /// As above, with no grace: the selector closes while the admitted connection is still
    /// being set up (its registration then fails). It was open when the shutdown began and the
    /// selector's close ended it: the report counts it as cut, not as finished.
    #[tokio::test]
    async fn a_connection_the_selector_closed_while_it_was_set_up_counts_as_cut() {
        let (selector, server, port) = selector_of_its_own_listening().await;
        let _client = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let shutdown = shutdown_in_admission(&selector, Duration::ZERO, true);
        let accepted = server.accept().await;
        let report = shutdown.try_recv().expect("the shutdown began in `admit`");
        let report = tokio::time::timeout(Duration::from_secs(5), report)
            .await
            .unwrap();
        assert_eq!((report.finished, report.cut), (0, 1), "{report:?}");
        if let Ok(socket) = accepted {
            assert!(socket.is_closed());
        }
    }

    /// Counts the `warn` events of this thread (installed with `set_default`).
    struct Warnings(Arc<std::sync::atomic::AtomicUsize>);

    impl tracing::Subscriber for Warnings {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            if *event.metadata().level() == tracing::Level::WARN {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    /// The selector closes (its `close`, another thread's, in that moment) while `accept` sets
    /// up a connection it took: `accept` fails with `SelectorClosed`, as every operation
    /// pending then, and logs no warning. The connection is not one that "failed set-up"
    /// (a `warn`, for an operator to look into): its selector closed under it, as the
    /// operator asked.
    #[tokio::test]
    async fn a_connection_set_up_as_the_selector_closes_is_no_warning() {
        let warnings = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let _recording = tracing::subscriber::set_default(Warnings(warnings.clone()));
        let selector = SelectorManager::new();
        let server = crate::a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let _client = tokio::net::TcpStream::connect(("127.0.0.1", server.port().unwrap()))
            .await
            .unwrap();
        let closing = selector.clone();
        ADMITTED.with(|a| *a.borrow_mut() = Some(Box::new(move || closing.close())));
        let accepted = tokio::time::timeout(Duration::from_secs(5), server.accept())
            .await
            .unwrap();
        assert!(
            matches!(accepted, Err(Error::SelectorClosed)),
            "{accepted:?}"
        );
        assert_eq!(warnings.load(Ordering::SeqCst), 0, "warnings logged");
    }

    /// Polls `future` once: its output, if it completed.
    async fn poll_once<F: std::future::Future>(mut future: Pin<&mut F>) -> Option<F::Output> {
        std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
            Poll::Ready(output) => Poll::Ready(Some(output)),
            Poll::Pending => Poll::Ready(None),
        })
        .await
    }

    /// A v2 header whose length field announces the longest header accepted (4,096 bytes), of
    /// which the peer sends 20 bytes and then nothing: the memory held for it follows the bytes
    /// received, not the length the peer announced.
    #[tokio::test]
    async fn a_header_announced_long_but_sent_short_holds_memory_for_what_came() {
        use std::io::Write as _;
        use tokio::net::UnixStream;

        let mut start = b"\r\n\r\n\x00\r\nQUIT\n\x21\x11".to_vec();
        let length = u16::try_from(proxy_protocol::MAX_HEADER - 16).unwrap();
        start.extend_from_slice(&length.to_be_bytes());
        start.extend_from_slice(&[192, 0, 2, 7]);
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        (&theirs).write_all(&start).unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut stream = Stream::Unix(UnixStream::from_std(ours).unwrap());
        let mut bytes = HeaderBytes::default();
        // The read waits for the rest, which never comes; each try is cut short (the read is
        // cancel safe) until the 20 bytes are in.
        for _ in 0..500 {
            let read =
                tokio::time::timeout(Duration::from_millis(10), bytes.read(&mut stream, true));
            assert!(read.await.is_err(), "the read ended without a whole header");
            if bytes.buf.len() == start.len() {
                break;
            }
        }
        assert_eq!(bytes.buf.len(), start.len());
        assert!(
            bytes.buf.capacity() <= start.len() + HEADER_READ,
            "{} bytes held for the {} received",
            bytes.buf.capacity(),
            start.len()
        );
        drop(theirs);
    }

    /// A header and the application's first bytes that arrive together are taken in one read
    /// (before, a v1 header was read in pieces of what the parser was sure of: about 15 reads),
    /// and the bytes after the header are handed on, not lost.
    #[tokio::test]
    async fn a_header_and_what_follows_it_are_read_at_once() {
        use std::io::Write as _;
        use tokio::net::UnixStream;

        let v1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 4242 443\r\n".to_vec();
        let mut v2 = b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
        v2.extend_from_slice(&[192, 0, 2, 7, 198, 51, 100, 1, 0x10, 0x92, 0x01, 0xbb]);
        for header in [v1, v2] {
            let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
            let mut sent = header.clone();
            sent.extend_from_slice(b"hello\n");
            (&theirs).write_all(&sent).unwrap();
            ours.set_nonblocking(true).unwrap();
            let mut stream = Stream::Unix(UnixStream::from_std(ours).unwrap());
            let mut bytes = HeaderBytes::default();
            // Bounded: the peer stays open, so a parser that never decides would wait forever.
            let (read, after) =
                tokio::time::timeout(Duration::from_secs(5), bytes.read(&mut stream, true))
                    .await
                    .expect("the header is decided from the bytes sent")
                    .unwrap();
            let addresses = read.and_then(|h| h.addresses).expect("the addresses");
            assert_eq!(addresses.source.to_string(), "192.0.2.7:4242");
            assert_eq!(&after[..], b"hello\n");
            let Stream::Unix(ours) = &stream else {
                unreachable!()
            };
            let left = ours.try_read(&mut [0; 1]).unwrap_err();
            assert_eq!(left.kind(), io::ErrorKind::WouldBlock, "read in one go");
        }
    }
}
