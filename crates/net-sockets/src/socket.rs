//! A connected stream socket ([`Socket`]), its channels, and the raw [`SocketStream`].

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use net_io::{ByteReadChannel, ByteWriteChannel};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::stream::{ReadHalf, SocketCore, WriteHalf};
use crate::{Error, Result, SocketAddress};

/// A connected TCP or Unix stream socket, as `connect` and `accept` return it.
///
/// Read and write through channels: [`open_read_channel`](Self::open_read_channel) and
/// [`open_write_channel`](Self::open_write_channel) (each at most once), or both at once with
/// [`connection`](Self::connection). The channels are `Send + 'static` and can live in
/// different tasks from each other and from the socket.
///
/// [`close`](Self::close) (from any clone of a reference, any task) sends what was already
/// written, then FIN, and releases the descriptor; pending reads and writes on the channels
/// fail with [`Error::Closed`]. Closing only the write channel
/// ([`flush_and_close`](ByteWriteChannel::flush_and_close)) is a half-close: the read channel
/// keeps working. Once the read channel has seen the peer's FIN and the write channel was
/// closed, the socket closes itself. Dropping the `Socket` and its channels closes it too.
///
/// # Examples
///
/// ```no_run
/// use net_io::LineEnding;
/// use net_sockets::{a_socket, SelectorManager};
///
/// # #[tokio::main] async fn main() -> net_sockets::Result<()> {
/// let selector = SelectorManager::new();
/// let mut socket = a_socket(&selector).tcp().connect(("127.0.0.1", 9002)).await?;
/// let mut input = socket.open_read_channel()?;
/// let mut output = socket.open_write_channel(true)?;
/// println!("{:?}", input.read_line(1024, LineEnding::Default).await?);
/// output.write_string_utf8("Alice\n").await?;
/// socket.close();
/// socket.await_closed().await;
/// # Ok(()) }
/// ```
pub struct Socket {
    core: Arc<SocketCore>,
    read_opened: bool,
    write_opened: bool,
}

/// A socket with both channels open, as [`Socket::connection`] returns it.
///
/// The write channel does not auto-flush (as Ktor's `connection()`): call
/// [`flush`](ByteWriteChannel::flush).
#[derive(Debug)]
pub struct Connection {
    /// The socket: addresses, `close`, `await_closed`.
    pub socket: Socket,
    /// The read channel.
    pub input: ByteReadChannel,
    /// The write channel, without auto-flush.
    pub output: ByteWriteChannel,
}

impl Socket {
    pub(crate) fn new(core: Arc<SocketCore>) -> Socket {
        Socket {
            core,
            read_opened: false,
            write_opened: false,
        }
    }

    /// Opens the channel that reads from the socket.
    ///
    /// The peer's FIN is the end of the channel; a reset is an I/O error of kind
    /// [`ConnectionReset`](io::ErrorKind::ConnectionReset); a read after [`close`](Self::close)
    /// fails with [`Error::Closed`] inside the channel's error (`Error::from` recovers it).
    ///
    /// # Errors
    ///
    /// [`Error::ChannelAlreadyOpen`] on a second call; [`Error::Closed`] (or
    /// [`Error::SelectorClosed`]) when the socket is closed.
    pub fn open_read_channel(&mut self) -> Result<ByteReadChannel> {
        if self.read_opened {
            return Err(Error::ChannelAlreadyOpen);
        }
        self.core.check_open()?;
        self.read_opened = true;
        Ok(ByteReadChannel::new(ReadHalf::new(Arc::clone(&self.core))))
    }

    /// Opens the channel that writes to the socket; with `auto_flush` every write reaches the
    /// socket before it returns.
    ///
    /// [`flush_and_close`](ByteWriteChannel::flush_and_close) on it half-closes the
    /// connection (sends FIN). Writing to a peer that is gone fails with an I/O error
    /// ([`BrokenPipe`](io::ErrorKind::BrokenPipe) or
    /// [`ConnectionReset`](io::ErrorKind::ConnectionReset)), never a `SIGPIPE`.
    ///
    /// # Errors
    ///
    /// [`Error::ChannelAlreadyOpen`] on a second call; [`Error::Closed`] (or
    /// [`Error::SelectorClosed`]) when the socket is closed.
    pub fn open_write_channel(&mut self, auto_flush: bool) -> Result<ByteWriteChannel> {
        if self.write_opened {
            return Err(Error::ChannelAlreadyOpen);
        }
        self.core.check_open()?;
        self.write_opened = true;
        Ok(ByteWriteChannel::new(
            WriteHalf::new(Arc::clone(&self.core)),
            auto_flush,
        ))
    }

    /// Opens both channels (the write channel without auto-flush) and bundles them with the
    /// socket.
    ///
    /// # Errors
    ///
    /// As [`open_read_channel`](Self::open_read_channel) and
    /// [`open_write_channel`](Self::open_write_channel).
    pub fn connection(mut self) -> Result<Connection> {
        let input = self.open_read_channel()?;
        let output = self.open_write_channel(false)?;
        Ok(Connection {
            socket: self,
            input,
            output,
        })
    }

    /// Turns the socket into one [`AsyncRead`] + [`AsyncWrite`] stream, for protocol layers
    /// such as TLS that wrap the transport themselves.
    ///
    /// The stream keeps the socket's `socket_timeout`, and closing the socket (or its
    /// selector) fails its pending operations, as with the channels.
    ///
    /// # Errors
    ///
    /// [`Error::ChannelAlreadyOpen`] when a channel was already opened; [`Error::Closed`] (or
    /// [`Error::SelectorClosed`]) when the socket is closed.
    pub fn into_stream(mut self) -> Result<SocketStream> {
        if self.read_opened || self.write_opened {
            return Err(Error::ChannelAlreadyOpen);
        }
        self.core.check_open()?;
        self.read_opened = true;
        self.write_opened = true;
        Ok(SocketStream {
            read: ReadHalf::new(Arc::clone(&self.core)),
            write: WriteHalf::new(Arc::clone(&self.core)),
            socket: self,
        })
    }

    /// The local address.
    pub fn local_address(&self) -> SocketAddress {
        self.core.local.clone()
    }

    /// The peer's address.
    pub fn remote_address(&self) -> SocketAddress {
        self.core.remote.clone()
    }

    /// The host name given to `connect` (before resolution), if it was a name or literal;
    /// `None` for accepted sockets and Unix sockets. TLS uses it for SNI and verification.
    pub fn connect_host(&self) -> Option<&str> {
        self.core.connect_host.as_deref()
    }

    /// A cheap, cloneable handle to this socket's addresses and `close`, for code that hands
    /// the socket (or its stream) away but must still close it.
    pub fn handle(&self) -> SocketHandle {
        SocketHandle {
            core: Arc::clone(&self.core),
        }
    }

    /// The tracing span of this connection (fields `local` and `remote`).
    pub fn span(&self) -> &tracing::Span {
        &self.core.span
    }

    /// Closes the socket: what was already written is sent, then FIN; the descriptor is
    /// released and pending channel operations fail with [`Error::Closed`]. Idempotent.
    ///
    /// Bytes still buffered in a write channel that was not flushed are not sent: flush (or
    /// `flush_and_close`) the channel first.
    pub fn close(&self) {
        self.core.close();
    }

    /// Whether the socket is closed (by [`close`](Self::close), by its selector, or because
    /// both directions finished).
    pub fn is_closed(&self) -> bool {
        self.core.is_closed()
    }

    /// Waits until the socket is closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future changes nothing.
    pub async fn await_closed(&self) {
        self.core.await_closed().await;
    }

    /// Runs `f` with a [`socket2::SockRef`] to the open socket, to read or set options.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the socket is closed; the error `f` returns, as [`Error::Io`].
    pub fn with_sock_ref<R>(
        &self,
        f: impl FnOnce(socket2::SockRef<'_>) -> io::Result<R>,
    ) -> Result<R> {
        self.core
            .with_stream(|stream| f(socket2::SockRef::from(stream)))
    }
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("local", &self.core.local)
            .field("remote", &self.core.remote)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl fmt::Display for Socket {
    /// Prints `local -> remote`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.core.local, self.core.remote)
    }
}

/// A cloneable handle to a [`Socket`]'s addresses and lifecycle, from [`Socket::handle`].
///
/// It keeps the socket's shared state alive (not its channels): closing through it is the same
/// as [`Socket::close`].
#[derive(Clone)]
pub struct SocketHandle {
    core: Arc<SocketCore>,
}

impl SocketHandle {
    /// The local address.
    pub fn local_address(&self) -> SocketAddress {
        self.core.local.clone()
    }

    /// The peer's address.
    pub fn remote_address(&self) -> SocketAddress {
        self.core.remote.clone()
    }

    /// Closes the socket, as [`Socket::close`].
    pub fn close(&self) {
        self.core.close();
    }

    /// Whether the socket is closed.
    pub fn is_closed(&self) -> bool {
        self.core.is_closed()
    }

    /// Waits until the socket is closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future changes nothing.
    pub async fn await_closed(&self) {
        self.core.await_closed().await;
    }
}

impl fmt::Debug for SocketHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketHandle")
            .field("local", &self.core.local)
            .field("remote", &self.core.remote)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// A [`Socket`] as one [`AsyncRead`] + [`AsyncWrite`] stream, from [`Socket::into_stream`].
///
/// `poll_shutdown` half-closes (sends FIN); [`socket`](Self::socket) gives the addresses,
/// `close` and `await_closed`.
#[derive(Debug)]
pub struct SocketStream {
    socket: Socket,
    read: ReadHalf,
    write: WriteHalf,
}

impl SocketStream {
    /// The socket this stream reads and writes.
    pub fn socket(&self) -> &Socket {
        &self.socket
    }
}

impl AsyncRead for SocketStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().read).poll_read(cx, buf)
    }
}

impl AsyncWrite for SocketStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().write).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().write).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().write).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().write).poll_shutdown(cx)
    }
}
