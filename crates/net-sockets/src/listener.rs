//! The listening socket: [`ServerSocket`] and its [`Incoming`] stream.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::{Domain, SockAddr, SockRef, Socket as RawSocket, Type};
use tokio::net::{TcpListener, UnixListener};

use crate::core::{Core, OnRelease, Owner, Setup};
use crate::options::{Kind, SocketOptions};
use crate::repeat::Repeat;
use crate::selector::SelectorInner;
use crate::stream::{Conn, Stream};
use crate::transport::Link;
use crate::{Error, Result, Socket, SocketAddress, UnixSocketAddress};

/// How long the accept loop pauses when the process or system is out of descriptors or memory.
const EXHAUSTION_BACKOFF: Duration = Duration::from_millis(100);

/// A listening TCP or Unix socket, as `bind` on a TCP builder returns it.
///
/// Every method takes `&self`, so a `ServerSocket` can be shared in an [`Arc`] and closed from
/// another task while one is blocked in [`accept`](Self::accept), which then fails with
/// [`Error::Closed`].
///
/// `accept` keeps going through the errors `accept(2)` says to retry (a connection aborted
/// before it was accepted, network errors of that connection). When the process runs out of
/// file descriptors (`EMFILE`/`ENFILE`) or memory (`ENOBUFS`/`ENOMEM`), it neither fails nor
/// spins: it logs one warning, pauses 100 ms at a time, and resumes once resources are free.
///
/// A Unix listener removes its socket file when it is closed or dropped, if the file is still
/// the one it created (a successor that bound the same path keeps its file).
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
#[derive(Debug)]
pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Stream, SocketAddress)>> {
        match self {
            Listener::Tcp(l) => l
                .poll_accept(cx)
                .map_ok(|(s, peer)| (Stream::Tcp(s), peer.into())),
            Listener::Unix(l) => l.poll_accept(cx).map_ok(|(s, peer)| {
                let path = peer.as_pathname().map(Path::to_path_buf);
                (
                    Stream::Unix(s),
                    UnixSocketAddress::new(path.unwrap_or_default()).into(),
                )
            }),
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l) => l.as_fd(),
        }
    }
}

struct ListenerInner {
    core: Core<Listener>,
    local: SocketAddress,
    options: SocketOptions,
    /// Whether the last accept ran out of resources (one warning per episode).
    exhausted: AtomicBool,
}

impl Owner for ListenerInner {
    type Io = Listener;

    fn core(&self) -> &Core<Listener> {
        &self.core
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
        let backlog = i32::try_from(options.backlog).unwrap_or(i32::MAX);
        match &address {
            SocketAddress::Inet(inet) => {
                let target = inet.socket_addr();
                let raw = RawSocket::new(Domain::for_address(target), Type::STREAM, None)?;
                options.apply(&raw, Kind::TcpListener, target.is_ipv6())?;
                // Accepted sockets get these; a value the OS refuses fails here, not on every
                // accepted connection.
                options.apply_connected(&SockRef::from(&raw), true)?;
                raw.bind(&target.into())?;
                raw.listen(backlog)?;
                raw.set_nonblocking(true)?;
                let listener = {
                    let _runtime = selector.handle().enter();
                    TcpListener::from_std(raw.into())?
                };
                let local = SocketAddress::from(listener.local_addr()?);
                Self::open(selector, Listener::Tcp(listener), local, options, None)
            }
            SocketAddress::Unix(unix) => {
                let raw = RawSocket::new(Domain::UNIX, Type::STREAM, None)?;
                options.apply(&raw, Kind::Unix, false)?;
                raw.bind(&SockAddr::unix(unix.path())?)?;
                // From here on the file is ours: remove it on every error path.
                let owned = SocketFile::record(unix.path());
                let listening = (|| {
                    raw.listen(backlog)?;
                    raw.set_nonblocking(true)?;
                    let _runtime = selector.handle().enter();
                    UnixListener::from_std(raw.into())
                })();
                let listener = match listening {
                    Ok(listener) => listener,
                    Err(e) => {
                        owned.remove();
                        return Err(e.into());
                    }
                };
                let on_release: OnRelease = Box::new(move || owned.remove());
                Self::open(
                    selector,
                    Listener::Unix(listener),
                    address.clone(),
                    options,
                    Some(on_release),
                )
            }
        }
    }

    fn open(
        selector: &Arc<SelectorInner>,
        listener: Listener,
        local: SocketAddress,
        options: SocketOptions,
        on_release: Option<OnRelease>,
    ) -> Result<ServerSocket> {
        let setup = Setup {
            on_release,
            ..Setup::new(tracing::debug_span!("listener", local = %local))
        };
        let inner = Core::open(selector, listener, setup, |core| ListenerInner {
            core,
            local,
            options,
            exhausted: AtomicBool::new(false),
        })?;
        tracing::debug!(parent: inner.core.span(), "listening");
        Ok(ServerSocket { inner })
    }

    /// Waits for the next connection and returns it as a [`Socket`], with the builder's
    /// `no_delay`, keep-alive, `linger` and `socket_timeout` applied.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the listener is (or gets) closed, [`Error::SelectorClosed`] when
    /// its selector is; [`Error::Io`] for errors `accept(2)` does not say to retry (the
    /// retryable ones, and running out of descriptors or memory, make `accept` wait instead).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a connection is taken from the kernel's queue only when the future
    /// completes with it.
    pub async fn accept(&self) -> Result<Socket> {
        self.inner.accept().await
    }

    /// The accepted connections as a [`Stream`](futures_core::Stream); it ends when the
    /// listener or its selector is closed.
    pub fn incoming(&self) -> Incoming {
        Incoming::new(Arc::clone(&self.inner))
    }

    /// The address the listener is bound to (with the port the OS picked for port 0).
    pub fn local_address(&self) -> SocketAddress {
        self.inner.local.clone()
    }

    /// The port the listener is bound to; `None` for a Unix socket.
    pub fn port(&self) -> Option<u16> {
        self.inner.local.port()
    }

    /// Closes the listener: pending and later `accept` calls fail with [`Error::Closed`], the
    /// descriptor is released (new connects are refused) and a Unix socket file removed.
    /// Idempotent.
    pub fn close(&self) {
        self.inner.core.close(crate::core::CloseMode::Graceful);
    }

    /// Runs `f` with a [`socket2::SockRef`] to the open listener, to read or set options.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the listener is closed; the error `f` returns, as [`Error::Io`].
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
    async fn accept(&self) -> Result<Socket> {
        let selector = self.core.selector();
        loop {
            let accepted = self
                .core
                .run(|listener, cx| {
                    // The accepted stream registers with the runtime current while it is made:
                    // the selector's.
                    let _runtime = selector.handle().enter();
                    listener.poll_accept(cx)
                })
                .await;
            let (stream, remote) = match accepted {
                Ok(accepted) => accepted,
                Err(Error::Io(e)) => match classify(&e) {
                    AcceptError::Retry => {
                        tracing::debug!(parent: self.core.span(), error = %e, "accept failed; retrying");
                        continue;
                    }
                    AcceptError::Exhausted => {
                        if !self.exhausted.swap(true, Ordering::Relaxed) {
                            tracing::warn!(parent: self.core.span(), error = %e, "out of descriptors or memory; accept pauses and retries every 100 ms");
                        }
                        let backoff = {
                            let _runtime = selector.handle().enter();
                            tokio::time::sleep(EXHAUSTION_BACKOFF)
                        };
                        self.core
                            .guard(async {
                                backoff.await;
                                Ok(())
                            })
                            .await?;
                        continue;
                    }
                    AcceptError::Fatal => return Err(Error::Io(e)),
                },
                Err(e) => return Err(e),
            };
            if self.exhausted.swap(false, Ordering::Relaxed) {
                tracing::debug!(parent: self.core.span(), "resources available again, accepting");
            }
            match self.wrap(stream, remote) {
                Ok(socket) => return Ok(socket),
                Err(Error::SelectorClosed) => return Err(Error::SelectorClosed),
                Err(e) => {
                    tracing::warn!(parent: self.core.span(), error = %e, "dropped a connection that failed set-up");
                }
            }
        }
    }

    /// Turns an accepted stream into a [`Socket`] registered with the selector.
    fn wrap(&self, stream: Stream, remote: SocketAddress) -> Result<Socket> {
        let tcp = matches!(stream, Stream::Tcp(_));
        self.options.apply_connected(&SockRef::from(&stream), tcp)?;
        let local = match &stream {
            Stream::Tcp(s) => SocketAddress::from(s.local_addr()?),
            Stream::Unix(_) => self.local.clone(),
        };
        let conn = Conn::open(
            self.core.selector(),
            stream,
            local,
            remote,
            &self.options,
            None,
        )?;
        tracing::debug!(parent: conn.core().span(), "accepted");
        Ok(Socket::new(Link { conn }))
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
/// retried; running out of descriptors or memory waits.
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
        libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => AcceptError::Exhausted,
        _ => AcceptError::Fatal,
    }
}

/// A Unix socket file this listener made, identified by device and inode, so that it is only
/// removed while it is still that file.
struct SocketFile {
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

impl SocketFile {
    fn record(path: &Path) -> SocketFile {
        SocketFile {
            path: path.to_path_buf(),
            identity: identity(path),
        }
    }

    fn remove(&self) {
        if self.identity.is_some() && identity(&self.path) == self.identity {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// The stream of accepted connections of a [`ServerSocket`], from
/// [`ServerSocket::incoming`]; it ends when the listener or its selector is closed.
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
        self.get_mut().inner.poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for code in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
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
}
