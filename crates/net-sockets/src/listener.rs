//! The listening socket: [`ServerSocket`] and its [`Incoming`] stream.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::{Domain, SockAddr, SockRef, Socket as RawSocket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio_util::sync::CancellationToken;

use crate::options::{Kind, SocketOptions};
use crate::repeat::Repeat;
use crate::selector::{Release, SelectorInner, lock};
use crate::stream::{SocketCore, Stream};
use crate::{Error, Result, Socket, SocketAddress, UnixSocketAddress};

/// How long the accept loop pauses when the process or system is out of file descriptors.
const EXHAUSTION_BACKOFF: Duration = Duration::from_millis(100);

/// A listening TCP or Unix socket, as `bind` on a TCP builder returns it.
///
/// Every method takes `&self`, so a `ServerSocket` can be shared in an [`Arc`] and closed from
/// another task while one is blocked in [`accept`](Self::accept), which then fails with
/// [`Error::Closed`].
///
/// When the process runs out of file descriptors (`EMFILE`/`ENFILE`), `accept` neither fails
/// nor spins: it logs one warning, pauses 100 ms at a time, and resumes once descriptors are
/// free. A Unix listener removes its socket file when it is closed or dropped.
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
    core: Arc<ListenerCore>,
}

struct ListenerCore {
    fd: Mutex<Option<Arc<AsyncFd<RawSocket>>>>,
    weak: Weak<AsyncFd<RawSocket>>,
    token: CancellationToken,
    selector: Arc<SelectorInner>,
    id: Option<u64>,
    local: SocketAddress,
    unix_path: Option<PathBuf>,
    options: SocketOptions,
    exhausted: AtomicBool,
    span: tracing::Span,
}

impl ServerSocket {
    /// Creates, binds and starts listening; the descriptor is closed on every error path.
    pub(crate) fn bind(
        selector: &Arc<SelectorInner>,
        address: SocketAddress,
        options: SocketOptions,
    ) -> Result<ServerSocket> {
        selector.check_open()?;
        let (raw, local, unix_path) = match &address {
            SocketAddress::Inet(inet) => {
                let target = inet.socket_addr();
                let raw = RawSocket::new(Domain::for_address(target), Type::STREAM, None)?;
                options.apply(&raw, Kind::TcpListener, target.is_ipv6())?;
                raw.bind(&target.into())?;
                let local = raw
                    .local_addr()?
                    .as_socket()
                    .map_or(address.clone(), SocketAddress::from);
                (raw, local, None)
            }
            SocketAddress::Unix(unix) => {
                let raw = RawSocket::new(Domain::UNIX, Type::STREAM, None)?;
                options.apply(&raw, Kind::Unix, false)?;
                raw.bind(&SockAddr::unix(unix.path())?)?;
                (raw, address.clone(), Some(unix.path().to_path_buf()))
            }
        };
        let listening = (|| {
            raw.listen(i32::try_from(options.backlog).unwrap_or(i32::MAX))?;
            raw.set_nonblocking(true)?;
            let _runtime = selector.handle().enter();
            // Deprecated only because an arbitrary `AsRawFd` may close its descriptor early; a
            // socket2 `Socket` owns its descriptor until it is dropped, so this use is sound.
            #[allow(deprecated)]
            AsyncFd::with_interest(raw, Interest::READABLE)
        })();
        let fd = match listening {
            Ok(fd) => Arc::new(fd),
            Err(e) => {
                if let Some(path) = &unix_path {
                    let _ = std::fs::remove_file(path);
                }
                return Err(e.into());
            }
        };
        let span = tracing::debug_span!("listener", local = %local);
        let core = Arc::new_cyclic(|me: &Weak<ListenerCore>| ListenerCore {
            weak: Arc::downgrade(&fd),
            fd: Mutex::new(Some(fd)),
            token: selector.token().child_token(),
            id: selector.register(me.clone() as Weak<dyn Release>).ok(),
            selector: Arc::clone(selector),
            local,
            unix_path,
            options,
            exhausted: AtomicBool::new(false),
            span,
        });
        if core.id.is_none() {
            return Err(Error::SelectorClosed);
        }
        tracing::debug!(parent: &core.span, "listening");
        Ok(ServerSocket { core })
    }

    /// Waits for the next connection and returns it as a [`Socket`], with the builder's
    /// `no_delay`, keep-alive, `linger` and `socket_timeout` applied.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the listener is (or gets) closed, [`Error::SelectorClosed`] when
    /// its selector is; [`Error::Io`] for other failures. Running out of descriptors is not an
    /// error: `accept` waits until one is free.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a connection is taken from the kernel's queue only when the future
    /// completes with it.
    pub async fn accept(&self) -> Result<Socket> {
        self.core.accept().await
    }

    /// The accepted connections as a [`Stream`](futures_core::Stream); it ends when the
    /// listener or its selector is closed.
    pub fn incoming(&self) -> Incoming {
        Incoming::new(Arc::clone(&self.core))
    }

    /// The address the listener is bound to (with the port the OS picked for port 0).
    pub fn local_address(&self) -> SocketAddress {
        self.core.local.clone()
    }

    /// The port the listener is bound to; `None` for a Unix socket.
    pub fn port(&self) -> Option<u16> {
        self.core.local.port()
    }

    /// Closes the listener: pending and later `accept` calls fail with [`Error::Closed`], the
    /// descriptor is released and a Unix socket file removed. Idempotent.
    pub fn close(&self) {
        self.core.close();
    }

    /// Runs `f` with a [`socket2::SockRef`] to the open listener, to read or set options.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the listener is closed; the error `f` returns, as [`Error::Io`].
    pub fn with_sock_ref<R>(&self, f: impl FnOnce(SockRef<'_>) -> io::Result<R>) -> Result<R> {
        let fd = self.core.weak.upgrade().filter(|_| !self.is_closed());
        let fd = fd.ok_or_else(|| self.core.closed_error())?;
        f(SockRef::from(fd.get_ref())).map_err(Error::Io)
    }

    /// Whether the listener is closed.
    pub fn is_closed(&self) -> bool {
        self.core.token.is_cancelled()
    }

    /// Waits until the listener is closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future changes nothing.
    pub async fn await_closed(&self) {
        self.core.token.cancelled().await;
    }
}

impl fmt::Debug for ServerSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSocket")
            .field("local", &self.core.local)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl ListenerCore {
    fn closed_error(&self) -> Error {
        Error::closed(self.selector.is_closed())
    }

    async fn accept(&self) -> Result<Socket> {
        loop {
            if self.token.is_cancelled() {
                return Err(self.closed_error());
            }
            // The accept future holds the listener only while it is polled, so `close` releases
            // the descriptor at once even while an accept is pending.
            let result = tokio::select! {
                biased;
                () = self.token.cancelled() => return Err(self.closed_error()),
                r = std::future::poll_fn(|cx| self.poll_accept(cx)) => match r {
                    Some(r) => r,
                    None => return Err(self.closed_error()),
                },
            };
            match result {
                Ok((raw, peer)) => {
                    if self.exhausted.swap(false, Ordering::Relaxed) {
                        tracing::debug!(parent: &self.span, "descriptors available again, accepting");
                    }
                    match self.wrap(raw, &peer) {
                        Ok(socket) => return Ok(socket),
                        Err(Error::SelectorClosed) => return Err(Error::SelectorClosed),
                        Err(e) => {
                            tracing::debug!(parent: &self.span, error = %e, "dropped a connection that failed set-up")
                        }
                    }
                }
                Err(e) if is_descriptor_exhaustion(&e) => {
                    if !self.exhausted.swap(true, Ordering::Relaxed) {
                        tracing::warn!(parent: &self.span, error = %e, "out of file descriptors; accept pauses and retries every 100 ms");
                    }
                    tokio::select! {
                        biased;
                        () = self.token.cancelled() => return Err(self.closed_error()),
                        () = self.backoff() => {}
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    /// Turns an accepted descriptor into a [`Socket`] registered with the selector.
    fn wrap(&self, raw: RawSocket, peer: &SockAddr) -> Result<Socket> {
        raw.set_nonblocking(true)?;
        let tcp = self.unix_path.is_none() && !peer.is_unix();
        self.options.apply_connected(&SockRef::from(&raw), tcp)?;
        let local = if tcp {
            raw.local_addr()?
                .as_socket()
                .map_or_else(|| self.local.clone(), SocketAddress::from)
        } else {
            self.local.clone()
        };
        let remote = sock_addr_to_address(peer);
        let stream = {
            let _runtime = self.selector.handle().enter();
            if tcp {
                Stream::Tcp(tokio::net::TcpStream::from_std(raw.into())?)
            } else {
                Stream::Unix(tokio::net::UnixStream::from_std(raw.into())?)
            }
        };
        let core = SocketCore::new(
            &self.selector,
            stream,
            local,
            remote,
            self.options.socket_timeout,
            None,
        )?;
        tracing::debug!(parent: &core.span, "accepted");
        Ok(Socket::new(core))
    }

    /// The pause after running out of descriptors, timed by the selector's runtime.
    fn backoff(&self) -> tokio::time::Sleep {
        let _runtime = self.selector.handle().enter();
        tokio::time::sleep(EXHAUSTION_BACKOFF)
    }

    /// One accept; `None` when the listener is gone.
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<Option<io::Result<(RawSocket, SockAddr)>>> {
        loop {
            let Some(fd) = self.weak.upgrade() else {
                return Poll::Ready(None);
            };
            let mut guard = match std::task::ready!(fd.poll_read_ready(cx)) {
                Ok(guard) => guard,
                Err(e) => return Poll::Ready(Some(Err(e))),
            };
            if let Ok(result) = guard.try_io(|inner| inner.get_ref().accept()) {
                return Poll::Ready(Some(result));
            }
        }
    }

    fn close(&self) {
        let fd = lock(&self.fd).take();
        self.token.cancel();
        if let Some(fd) = fd {
            drop(fd);
            if let Some(path) = &self.unix_path {
                let _ = std::fs::remove_file(path);
            }
            if let Some(id) = self.id {
                self.selector.deregister(id);
            }
            tracing::debug!(parent: &self.span, "listener closed");
        }
    }
}

impl Release for ListenerCore {
    fn release(&self) {
        self.close();
    }
}

impl Drop for ListenerCore {
    fn drop(&mut self) {
        self.close();
    }
}

/// `EMFILE`, `ENFILE` (and the allocation failures `ENOBUFS`, `ENOMEM`): the accept loop
/// waits for resources instead of failing. Rust reports these as `Uncategorized`.
fn is_descriptor_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12))
}

pub(crate) fn sock_addr_to_address(address: &SockAddr) -> SocketAddress {
    match address.as_socket() {
        Some(inet) => inet.into(),
        None => {
            UnixSocketAddress::new(address.as_pathname().map(PathBuf::from).unwrap_or_default())
                .into()
        }
    }
}

/// The stream of accepted connections of a [`ServerSocket`], from
/// [`ServerSocket::incoming`]; it ends when the listener or its selector is closed.
pub struct Incoming {
    inner: Repeat<ListenerCore, Socket>,
}

impl Incoming {
    fn new(core: Arc<ListenerCore>) -> Self {
        Incoming {
            inner: Repeat::new(core, |core| Box::pin(async move { core.accept().await })),
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
        self.get_mut().inner.poll_next(cx)
    }
}
