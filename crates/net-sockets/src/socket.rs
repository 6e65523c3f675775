//! A connected stream socket ([`Socket`]), its channels ([`Connection`]), and the socket as one
//! tokio stream ([`SocketStream`]) — written once for every transport: the plain connection, and
//! the layers (TLS) that `net-tls` puts over it.

use std::fmt;
use std::future::Future;
use std::io;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use net_io::{ByteReadChannel, ByteWriteChannel, WriteState};
use socket2::{Domain, SockRef, Type};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::Instrument;

use crate::adopt::{INET, StdStream, check_kind};
use crate::core::{CloseMode, Owner};
use crate::group::Drain;
use crate::options::SocketOptions;
use crate::selector::{SelectorSleep, Unwinds, lock};
use crate::stream::{Conn, Origin, Stream};
use crate::transport::{Ending, Link, Plain, RawStream, Transport};
use crate::{Error, Result, SelectorManager, SocketAddress, UnixSocketAddress};

/// A connected TCP or Unix stream socket, as `connect` and `accept` return it; with a TLS layer
/// (`net-tls`'s `TlsSocket`), the same socket over TLS.
///
/// Read and write through channels: [`open_read_channel`](Self::open_read_channel) and
/// [`open_write_channel`](Self::open_write_channel) (each at most once), or both at once with
/// [`connection`](Self::connection). The channels are `Send + Sync + 'static` and can live in
/// different tasks from each other and from the socket.
///
/// A socket dereferences to its transport layer: for a plain socket that is nothing; for a TLS
/// socket, the session's queries (negotiated protocol, peer certificates, ...).
///
/// # Closing
///
/// - [`close`](Self::close) (from any task) is immediate and synchronous: the kernel sends what
///   was already written to the socket, then FIN, and the descriptor is released before it
///   returns (a read or write that another thread is polling at that moment holds the socket
///   for the moment of its poll: the close waits for it, at most 50 ms, after which the
///   descriptor goes as that poll ends; a task of flush coalescing waiting for room to send
///   held-back answers holds it until the close wakes it, and is not waited for: the
///   descriptor goes as it lets go, just after the close returns); pending reads and writes
///   on the channels fail with [`Error::Closed`], and so does every write or flush called after
///   `close` returned, also one that would only add to the write channel's buffer (one racing
///   the close on another thread may still be buffered: the next call reports the close). A
///   channel that failed before the close (a read reported the peer's reset, a flush met it)
///   reports that failure again instead, as `net_io`'s channels report every failure.
///   Bytes still buffered in a write channel are not sent (flush first): the close then resets
///   the connection (TLS: omits `close_notify`), so that the peer never takes the stream for a
///   complete one. Linux answers a close with unread input with a reset that also drops queued
///   output: [`Connection::close_gracefully`] avoids both. (TLS: a `close_notify` the socket
///   cannot take at once is sent, after everything written, as it drains, as held-back answers
///   are.)
///   Answers held back by flush coalescing ([`SocketOptions::coalesce_flushes`](crate::SocketOptions::coalesce_flushes)) count as
///   written: those the socket cannot take at once are sent by a task as it drains, and the
///   descriptor is released after them (a connection reset instead when they cannot be
///   delivered: a failed send, `socket_timeout` without progress, the selector's close, or the
///   end of the runtime or of a graceful shutdown's grace period). Until then the connection
///   counts as open: it keeps its listener's
///   [`max_connections`](crate::TcpSocketBuilder::max_connections) slot, and
///   [`SelectorManager::shutdown`] and the accepting listener's
///   [`ServerSocket::shutdown`](crate::ServerSocket::shutdown) wait for them within their
///   grace period.
/// - A close of a plain socket (or its selector's) while a write of the write channel is under
///   way in another task (one that goes to the socket directly: auto-flushed, or larger than
///   the channel's buffer) resets the connection when any of that write may have left: the
///   peer never gets part of a write, then a clean end.
/// - After a write, flush or write timeout failed, or after the write channel threw away bytes
///   its writes accepted (cancelled or dropped with some unsent, or a write to the socket
///   dropped part-way, see [`ByteWriteChannel`]'s "Dropped writes"), a close resets the
///   connection (plain TCP) or omits TLS's `close_notify`, so the peer never takes the end for
///   a clean one. (A write that timed out having taken nothing is made good by a later write
///   that reaches the socket, or TLS, such as its retry, or by a flush.)
/// - A Unix socket has no reset: where these rules reset a TCP connection, a plain Unix
///   socket's close ends the stream as a clean close does (the peer reads what was sent, then
///   the end of the stream), so its peer cannot tell that bytes were lost. A protocol over
///   plain Unix sockets that must notice a cut stream frames its messages (a length, a last
///   line), or runs TLS, whose missing `close_notify` the peer sees as a truncation.
/// - Closing only the write channel ([`flush_and_close`](ByteWriteChannel::flush_and_close)) is a
///   half-close: the read channel keeps working. Once the read channel has seen the peer's FIN
///   and the write channel was closed, the socket closes itself.
/// - Dropping the socket and its channels closes it.
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
pub struct Socket<T = Plain> {
    link: Link,
    transport: T,
    read_opened: bool,
    write_opened: bool,
    /// Held by a [`close`](Self::close) while it closes: the transport's `closing` runs once,
    /// and a close that comes meanwhile returns only once the socket is closed.
    closing: Mutex<()>,
}

/// A socket with both channels open, as [`Socket::connection`] returns it.
///
/// The write channel does not auto-flush (as Ktor's `connection()`): call
/// [`flush`](ByteWriteChannel::flush).
#[derive(Debug)]
#[non_exhaustive]
pub struct Connection<T = Plain> {
    /// The socket: addresses, `close`, `await_closed`.
    pub socket: Socket<T>,
    /// The read channel.
    pub input: ByteReadChannel,
    /// The write channel, without auto-flush.
    pub output: ByteWriteChannel,
}

impl Socket<Plain> {
    pub(crate) fn new(link: Link) -> Socket<Plain> {
        Socket::with_transport(link, Plain)
    }

    /// Adopts a connected `std` stream ([`std::net::TcpStream`] or
    /// [`std::os::unix::net::UnixStream`]) handed over by a supervisor or another library. Its
    /// options are left as they are; it has no `socket_timeout`. It has no host name: a TLS
    /// client on a TCP socket verifies the server against the peer's IP address unless told
    /// another name.
    ///
    /// The descriptor's close-on-exec flag is left as it is: `std` makes its sockets
    /// close-on-exec, so a child process does not inherit them, but one made from an inherited
    /// descriptor (`from_raw_fd`) may lack the flag, and is then inherited by every child
    /// process started later (set it first, through the [re-exported](crate::socket2) socket2,
    /// built with the `all` feature this needs:
    /// `net_sockets::socket2::SockRef::from(&s).set_cloexec(true)`).
    ///
    /// The socket may have other descriptors (a `try_clone` kept, a copy a child process
    /// inherited): [`close`](Self::close) releases this one only, as tokio's and `std`'s drops
    /// do, so the peer sees the end of the stream once the last goes. A half-close
    /// ([`flush_and_close`](net_io::ByteWriteChannel::flush_and_close), a stream's
    /// `poll_shutdown`, [`close_gracefully`](Connection::close_gracefully)) sends FIN all the
    /// same.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when it is not connected (of kind
    /// [`ConnectionReset`](io::ErrorKind::ConnectionReset) for a TCP stream its peer reset
    /// before the adoption, else [`NotConnected`](io::ErrorKind::NotConnected)) or cannot be
    /// registered, of kind [`InvalidInput`](io::ErrorKind::InvalidInput) when the descriptor
    /// the wrapper holds is not a stream socket of its family; [`Error::SelectorClosed`].
    pub fn from_std(selector: &SelectorManager, stream: impl StdStream) -> Result<Socket> {
        let (fd, unix) = stream.into_parts();
        let (families, what) = if unix {
            (&[Domain::UNIX][..], "Unix stream socket")
        } else {
            (INET, "TCP stream socket")
        };
        check_kind(&SockRef::from(&fd), Type::STREAM, families, what)?;
        // macOS: its sends must not raise SIGPIPE, whoever made it.
        crate::adopt::ensure_no_sigpipe(&SockRef::from(&fd))?;
        let inner = selector.inner();
        inner.check_open()?;
        let (stream, local, remote): (Stream, SocketAddress, SocketAddress) = if unix {
            let stream = std::os::unix::net::UnixStream::from(fd);
            stream.set_nonblocking(true)?;
            let local = UnixSocketAddress::reported(&stream.local_addr()?);
            let remote = UnixSocketAddress::reported(&stream.peer_addr()?);
            let stream = inner.register_io(|| tokio::net::UnixStream::from_std(stream))?;
            (Stream::Unix(stream), local.into(), remote.into())
        } else {
            let stream = std::net::TcpStream::from(fd);
            stream.set_nonblocking(true)?;
            // Without a peer, the error the kernel holds for the connection when there is one
            // (reset before the adoption: `ECONNRESET`), else `getpeername`'s (`ENOTCONN`).
            let remote = stream
                .peer_addr()
                .or_else(|e| Err(stream.take_error()?.unwrap_or(e)))?;
            let local = stream.local_addr()?;
            let stream = inner.register_io(|| tokio::net::TcpStream::from_std(stream))?;
            (Stream::Tcp(stream), local.into(), remote.into())
        };
        // No host name, but a TCP peer's address: a TLS client verifies the server against
        // it, as for a socket connected to an address.
        let origin = Origin::Connected {
            host: remote.as_inet().map(|peer| peer.ip().to_string()),
            file: None,
        };
        let conn = Conn::open(
            inner,
            stream,
            local,
            remote,
            &SocketOptions::default(),
            origin,
            // Adopted: whoever made it may have set SO_LINGER.
            true,
        )?;
        Ok(Socket::new(Link { conn }))
    }

    /// Hands the connection to a layer: `start` gets its bytes (`prefix` first) as one stream and
    /// returns the layer. On error, or when the returned future is dropped, the socket is closed.
    async fn upgrade_with<T, E, F, Fut>(self, prefix: Bytes, start: F) -> Result<Socket<T>, E>
    where
        T: Transport,
        E: From<Error>,
        F: FnOnce(RawStream) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.link.conn.core().check_open()?;
        let link = self.link.clone();
        // Whatever happens next, the plain socket's handle is gone: a dropped upgrade drops the
        // stream and with it the last reference, which closes the socket.
        drop(self);
        let span = link.conn.core().span().clone();
        match start(RawStream::new(link.clone(), prefix))
            .instrument(span)
            .await
        {
            Ok(transport) => Ok(Socket::with_transport(link, transport)),
            Err(e) => {
                link.conn.close();
                Err(e)
            }
        }
    }
}

impl<T: Transport> Socket<T> {
    fn with_transport(link: Link, transport: T) -> Socket<T> {
        Socket {
            link,
            transport,
            read_opened: false,
            write_opened: false,
            closing: Mutex::new(()),
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
        self.open(true)?;
        let mut channel = ByteReadChannel::new(self.transport.reader(&self.link));
        if let Some(backlog) = self.link.conn.backlog() {
            channel.share_backlog(backlog.clone());
        }
        Ok(channel)
    }

    /// Opens the channel that writes to the socket; with `auto_flush` every write reaches the
    /// socket before it returns, but for one made while the read channel holds requests not
    /// read yet: flush coalescing (on by default) holds that one back, to leave with the
    /// answers written after it when the reader next waits for input (see
    /// [`SocketOptions::coalesce_flushes`](crate::SocketOptions::coalesce_flushes)).
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
        self.open(false)?;
        let mut channel = ByteWriteChannel::new(self.transport.writer(&self.link), auto_flush);
        // Bytes the channel holds unsent at the close, or threw away (a cancel or drop with
        // some unsent), end the connection as a failed write does.
        // In the backlog's allocation when there is one (one cache line for both channels).
        let state = match self.link.conn.backlog() {
            Some(backlog) => backlog.write_state(),
            None => WriteState::new(),
        };
        channel.share_state(state.clone());
        self.link.conn.watch_channel(state);
        if T::WRITES_TO_SOCKET {
            if let Some(backlog) = self.link.conn.backlog() {
                channel.hold_while(backlog.clone());
            }
        }
        Ok(channel)
    }

    /// Marks a channel open, once.
    fn open(&mut self, read: bool) -> Result<()> {
        let opened = if read {
            &mut self.read_opened
        } else {
            &mut self.write_opened
        };
        if *opened {
            return Err(Error::ChannelAlreadyOpen);
        }
        self.link.conn.core().check_open()?;
        *opened = true;
        Ok(())
    }

    /// Opens both channels (the write channel without auto-flush) and bundles them with the
    /// socket.
    ///
    /// # Errors
    ///
    /// As [`open_read_channel`](Self::open_read_channel) and
    /// [`open_write_channel`](Self::open_write_channel).
    pub fn connection(mut self) -> Result<Connection<T>> {
        let (input, output) = self.open_both()?;
        Ok(Connection {
            socket: self,
            input,
            output,
        })
    }

    /// [`connection`](Self::connection) for a layer that takes the socket over (TLS), whose
    /// failures close the socket: so does this one's (a channel already open, the socket
    /// closed). Otherwise the socket, gone with the error, would live on in the open channel,
    /// which would read on what the peer sends.
    ///
    /// # Errors
    ///
    /// As [`connection`](Self::connection).
    #[doc(hidden)]
    pub fn connection_or_close(mut self) -> Result<Connection<T>> {
        match self.open_both() {
            Ok((input, output)) => Ok(Connection {
                socket: self,
                input,
                output,
            }),
            Err(e) => {
                self.close();
                Err(e)
            }
        }
    }

    /// Opens both channels, the write channel without auto-flush.
    fn open_both(&mut self) -> Result<(ByteReadChannel, ByteWriteChannel)> {
        let input = self.open_read_channel()?;
        let output = self.open_write_channel(false)?;
        Ok((input, output))
    }

    /// Turns the socket into one [`AsyncRead`] + [`AsyncWrite`] stream, for code written against
    /// tokio's I/O traits.
    ///
    /// The stream keeps the socket's `socket_timeout`, and closing the socket (or its selector)
    /// fails its pending operations, as with the channels. `poll_shutdown` half-closes. A read
    /// that failed for good (the socket's error; TLS: a truncation, a corrupted record, the
    /// peer's fatal alert) fails again, the same way, every later read.
    ///
    /// # Errors
    ///
    /// [`Error::ChannelAlreadyOpen`] when a channel was already opened; [`Error::Closed`] (or
    /// [`Error::SelectorClosed`]) when the socket is closed.
    pub fn into_stream(mut self) -> Result<SocketStream<T>> {
        self.open(true)?;
        self.open(false)?;
        Ok(SocketStream {
            reader: self.transport.reader(&self.link),
            writer: self.transport.writer(&self.link),
            socket: self,
        })
    }

    /// The local address. A connection a dual-stack listener (bound to `::`) accepted from an
    /// IPv4 client has it IPv4-mapped, as [`remote_address`](Self::remote_address) does.
    /// Behind a PROXY protocol header it is still the socket's own, where the proxy connected
    /// to: the address the header says the client connected to is not reported.
    pub fn local_address(&self) -> SocketAddress {
        self.link.conn.local.clone()
    }

    /// The peer's address.
    ///
    /// A listener bound to `::` is dual-stack (the OS's default on Linux; not on a host with
    /// `net.ipv6.bindv6only = 1`, see [`TcpSocketBuilder::bind`](crate::TcpSocketBuilder::bind))
    /// and sees an IPv4 client as the OS reports it, IPv4-mapped: `[::ffff:127.0.0.1]:p`,
    /// which is not equal to `127.0.0.1:p`. Compare the IP's
    /// [`to_canonical`](std::net::IpAddr::to_canonical) form with an IPv4 address
    /// (`max_connections_per_ip` counts such a client as its IPv4 address). A listener bound
    /// to `0.0.0.0`, or a PROXY protocol header with IPv4 addresses (v1 `TCP4`, v2
    /// `AF_INET`), gives the plain IPv4 form. A header with IPv6
    /// addresses (v1 `TCP6`, v2 `AF_INET6`) that names an IPv4-mapped client, as a proxy
    /// writes one when the client's family differs from that of the address it connected to,
    /// gives the mapped form, as written.
    ///
    /// ```
    /// # async fn f(socket: net_sockets::Socket) -> bool {
    /// let ip = socket.remote_address().as_inet().map(|a| a.ip().to_canonical());
    /// if ip == Some(std::net::Ipv4Addr::LOCALHOST.into()) {
    ///     // 127.0.0.1, over IPv4 or IPv4-mapped.
    /// #   return true;
    /// }
    /// # false
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> net_sockets::Result<()> {
    /// # let selector = net_sockets::SelectorManager::new();
    /// # let mut checked = 0;
    /// # // `::` where the host has IPv6 and dual-stack listeners, then plain IPv4.
    /// # for host in ["::", "127.0.0.1"] {
    /// #     let Ok(server) = net_sockets::a_socket(&selector).tcp().bind((host, 0)).await else {
    /// #         continue;
    /// #     };
    /// #     let port = server.local_address().port().unwrap();
    /// #     let client = net_sockets::a_socket(&selector).tcp().connect(("127.0.0.1", port));
    /// #     let Ok(_client) = client.await else { continue };
    /// #     let socket = server.accept().await?;
    /// #     let seen = socket.remote_address().as_inet().unwrap().ip();
    /// #     let mapped = std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped();
    /// #     let plain = std::net::IpAddr::from([127, 0, 0, 1]);
    /// #     assert_eq!(seen, if host == "::" { mapped.into() } else { plain });
    /// #     assert!(f(socket).await, "{host}");
    /// #     checked += 1;
    /// # }
    /// # assert!(checked > 0);
    /// # Ok(()) }
    /// ```
    pub fn remote_address(&self) -> SocketAddress {
        self.link.conn.remote.clone()
    }

    /// The proxy this connection came through, when the listener read a PROXY protocol header
    /// that named the client ([`remote_address`](Self::remote_address) is then the client).
    pub fn proxy_address(&self) -> Option<SocketAddress> {
        self.link.conn.proxy.clone()
    }

    /// Waits until a graceful shutdown of the listener that accepted this socket (or of its
    /// selector) begins: the moment to finish the exchange under way, say goodbye, and close.
    ///
    /// The future may be pinned once and polled again after it completed (a `select!` on
    /// `&mut` it in a loop that goes round once more): it is ready again.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: made to be a branch of `tokio::select!` beside a read.
    ///
    /// # Examples
    ///
    /// ```
    /// use net_io::LineEnding;
    ///
    /// # async fn serve(socket: net_sockets::Socket) -> net_sockets::Result<()> {
    /// let mut connection = socket.connection()?;
    /// loop {
    ///     let line = tokio::select! {
    ///         line = connection.input.read_line(1024, LineEnding::Default) => line?,
    ///         () = connection.socket.shutdown_requested() => break,
    ///     };
    ///     let Some(line) = line else { break };
    ///     connection.output.write_string_utf8(&format!("Hello, {line}!\n")).await?;
    ///     connection.output.flush().await?;
    /// }
    /// connection.output.write_string_utf8("Server is shutting down\n").await?;
    /// connection.close_gracefully(std::time::Duration::from_secs(1)).await
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> net_sockets::Result<()> {
    /// # let selector = net_sockets::SelectorManager::new();
    /// # let server = net_sockets::a_socket(&selector).tcp().bind(("127.0.0.1", 0)).await?;
    /// # let client = net_sockets::a_socket(&selector).tcp().connect(server.local_address());
    /// # let mut client = client.await?.connection()?;
    /// # let serving = tokio::spawn(serve(server.accept().await?));
    /// # client.output.write_string_utf8("Alice\n").await?;
    /// # client.output.flush().await?;
    /// # let reply = client.input.read_line(1024, LineEnding::Default).await?;
    /// # assert_eq!(reply.as_deref(), Some("Hello, Alice!"));
    /// # let shutdown = server.shutdown(std::time::Duration::from_secs(10));
    /// # let client = async move {
    /// #     let goodbye = client.input.read_line(1024, LineEnding::Default).await?;
    /// #     assert_eq!(goodbye.as_deref(), Some("Server is shutting down"));
    /// #     assert_eq!(client.input.read_line(1024, LineEnding::Default).await?, None);
    /// #     drop(client); // closed, as `close_gracefully` waits for
    /// #     Ok::<_, net_sockets::Error>(())
    /// # };
    /// # let (report, client) = tokio::join!(shutdown, client);
    /// # client?;
    /// # assert_eq!((report.finished, report.cut), (1, 0));
    /// # serving.await.unwrap()?;
    /// # Ok(()) }
    /// ```
    pub fn shutdown_requested(&self) -> impl Future<Output = ()> + Send + '_ {
        self.link.conn.draining.requested()
    }

    /// Whether a graceful shutdown of this socket's listener or selector began.
    pub fn is_shutdown_requested(&self) -> bool {
        self.link.conn.draining.has_begun()
    }

    /// The "shutdown began" signal of [`shutdown_requested`](Self::shutdown_requested) as a
    /// handle of its own, for tasks that hold this socket's channels but not the socket.
    pub fn shutdown_signal(&self) -> ShutdownSignal {
        ShutdownSignal(self.link.conn.draining.clone())
    }

    /// Closes the socket at once; idempotent. See [Closing](Self#closing) for what the peer
    /// sees. A close that finds another under way (another thread's at the same moment, or the
    /// selector's) leaves the closing to it and returns once that one closed the socket and
    /// released its descriptor (or, for a socket whose `SO_LINGER` makes the kernel's close
    /// wait for the peer, handed it to the blocking thread that releases it).
    pub fn close(&self) {
        let core = self.link.conn.core();
        if core.is_closed() {
            return self.closed_by_another();
        }
        // The layer's `closing` may hand over its last records (TLS: data rustls took, then
        // `close_notify`), which the close that took them sends before the FIN: a second close
        // must not release the socket before that one handed them over. It waits for that one
        // (which does not wait for the peer), so that the socket is closed when it returns.
        let _closing = lock(&self.closing);
        if core.is_closed() {
            return self.closed_by_another();
        }
        // The write channel's calls fail from here on: a write on another thread that only
        // buffers its bytes (no auto-flush) must not report them written once the layer's
        // `closing` decided the end (TLS: `close_notify`) without them. One that buffered
        // them before is found unsent by that decision.
        self.link.conn.end_channel();
        // The layer's `closing` may run code the user supplied (a TLS session store from
        // `TlsConfig::from_rustls`, handed the session tickets taken in): should it panic, no
        // clean end is known, and the connection is reset all the same before the panic goes
        // on to the caller.
        let mut unwinds = Unwinds::default();
        let mut ending = Ending::Reset;
        unwinds.run(|| ending = self.transport.closing(&self.link));
        match ending {
            Ending::GracefulAfter(last) => self.link.conn.close_sending(&[], last),
            Ending::GracefulAfterWritten(written, last) => {
                self.link.conn.close_sending(&written, last)
            }
            // The channels' bytes are the socket's: the connection decides again once the
            // socket is marked closed (a write under way then resets it).
            Ending::Graceful if T::WRITES_TO_SOCKET => self.link.conn.close(),
            Ending::Graceful => self.link.conn.close_with(CloseMode::Graceful),
            Ending::Reset => self.link.conn.close_with(CloseMode::Reset),
        }
        unwinds.finish();
    }

    /// A close that found the socket closed or closing (by another thread's close, or the
    /// selector's) returns once it is closed: its descriptor released, as after a close of its
    /// own. One that the selector's close has not reached yet is closed as that close closes
    /// it.
    fn closed_by_another(&self) {
        if !self.link.conn.core().await_release() {
            self.link.conn.cut();
        }
    }

    /// Whether the socket is closed (by [`close`](Self::close), by its selector, or because
    /// both directions finished).
    pub fn is_closed(&self) -> bool {
        self.link.conn.core().is_closed()
    }

    /// Waits until the socket is closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future changes nothing.
    pub async fn await_closed(&self) {
        self.link.conn.core().await_closed().await;
    }

    /// Runs `f` with a [`socket2::SockRef`] to the open socket, to read or set options.
    ///
    /// `f` holds the socket while it runs: a `close` meanwhile (inside `f`, or on another
    /// thread) waits up to 50 ms for `f` to return, after which the descriptor (and the FIN or
    /// reset) goes as `f` returns, no longer before the close returns.
    ///
    /// The channels rely on the kernel's report of a connection's failure (a reset, a
    /// timeout), which it makes once, to the first call that asks: `f` should not read or
    /// write through the socket, nor take its pending error (`SO_ERROR`, socket2's
    /// `take_error`). A failure taken so is lost to the channels, whose reads then find a clean
    /// end of stream.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] (or [`Error::SelectorClosed`]) when the socket is closed; the error `f`
    /// returns, as [`Error::Io`].
    pub fn with_sock_ref<R>(
        &self,
        f: impl FnOnce(socket2::SockRef<'_>) -> io::Result<R>,
    ) -> Result<R> {
        self.link.conn.core().with_sock_ref(f)
    }
}

impl<T> Deref for Socket<T> {
    type Target = T;

    /// The transport layer: for a TLS socket, the session's queries.
    fn deref(&self) -> &T {
        &self.transport
    }
}

impl<T: fmt::Debug> fmt::Debug for Socket<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("local", &self.link.conn.local)
            .field("remote", &self.link.conn.remote)
            .field("closed", &self.link.conn.core().is_closed())
            .field("transport", &self.transport)
            .finish()
    }
}

impl<T> fmt::Display for Socket<T> {
    /// Prints `local -> remote`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.link.conn.local, self.link.conn.remote)
    }
}

impl<T: Transport> Connection<T> {
    /// Closes without losing what was accepted: flushes and closes the output (FIN; over TLS,
    /// `close_notify` first), reads and discards input until the peer's end of stream or until
    /// `wait` has passed, then closes the socket. An output already closed cleanly
    /// ([`flush_and_close`](ByteWriteChannel::flush_and_close)) is left as it is, and the input
    /// is drained all the same.
    ///
    /// Reading the peer's input to its end keeps the kernel from answering the close with a
    /// reset that would destroy output still queued for the peer. A `socket_timeout` shorter
    /// than `wait` does not end the drain (a peer may be silent that long, then send a last
    /// word), but a `socket_timeout` of zero, which fails every wait at once, ends it at the
    /// first moment the peer has sent nothing more.
    ///
    /// `wait` bounds the whole call, the flush included: a peer that reads nothing (so that
    /// the output cannot be flushed) holds it `wait` at most, then the socket is closed at once,
    /// as [`Socket::close`] closes it, and the call fails with [`Error::Timeout`]. Bytes the
    /// write channel still holds then are lost (thrown away as
    /// [`cancel`](net_io::ByteWriteChannel::cancel) throws them: no `warn` event, the
    /// `Timeout` tells the caller), so that close is a reset (TLS: no `close_notify`), never a
    /// clean end; on TCP the reset also drops what the kernel still queued for the peer
    /// (written before, not received yet). Answers held back by flush coalescing are not among
    /// the lost: their writes reported them written, and they are sent after the close, as
    /// after [`Socket::close`] (so `wait` does not bound how long the connection stays open
    /// then; `socket_timeout` does). A `wait` of [`Duration::ZERO`] closes at once, after what
    /// can be flushed without waiting; one too large for the clock (`Duration::MAX`) is no
    /// bound.
    ///
    /// `Ok` says that the output was flushed to the kernel and closed, not that the peer
    /// received it: to a peer that vanished (its host dropped off the network, answering
    /// nothing), a call whose output the socket took returns `Ok` once `wait` has passed, and
    /// the kernel goes on retransmitting the data and the FIN on its own after the descriptor
    /// was released.
    ///
    /// # Errors
    ///
    /// The error of the flush or of the output's close, or the output's failure, or
    /// [`Error::Channel`]`(`[`ClosedForWrite`](net_io::Error::ClosedForWrite)`)` for an output
    /// that was cancelled (the socket is then closed at once: with a reset after a failed write
    /// or bytes thrown away); [`Error::Timeout`] when the output could not be flushed and
    /// closed within `wait`. Errors while discarding input are not reported, nor is a drain
    /// that `wait` (or the selector's close, or a graceful shutdown's cut at the end of its
    /// grace period) ends before the peer's end of stream: the output was flushed and closed
    /// by then, but the close of a socket with input left unread is a reset, which on TCP
    /// drops what the kernel still queued for a peer that had not read it all.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future closes the socket at once, as [`Socket::close`]; what the output
    /// still held is thrown away as when `wait` runs out (the close then resets, and no
    /// warning is logged: the caller dropped it on purpose), also when it was never polled.
    pub fn close_gracefully(self, wait: Duration) -> impl Future<Output = Result<()>> + Send {
        let unstarted = Unstarted(Some(self));
        async move { unstarted.start().close_gracefully_now(wait).await }
    }

    /// [`close_gracefully`](Self::close_gracefully), once its future is first polled.
    async fn close_gracefully_now(self, wait: Duration) -> Result<()> {
        let Connection {
            socket,
            mut input,
            mut output,
        } = self;
        // One deadline for the whole call, on the selector runtime's clock (the task awaiting
        // this may run on another runtime, or none): a peer that reads nothing must not hold
        // the flush for ever. A sleep of the selector's runtime, which ends the wait also once
        // the selector is closed (its runtime may end meanwhile, and its timer cannot be
        // polled then).
        let mut deadline = SelectorSleep::new(socket.link.conn.core().selector(), wait);
        // The channel's `AsyncWrite` shutdown is `flush_and_close`, except on an output already
        // closed cleanly: that one is done (its FIN on its way), not an error, and the input
        // must still be drained before the close.
        let shut = tokio::select! {
            biased;
            shut = tokio::io::AsyncWriteExt::shutdown(&mut output) => shut,
            // Unconstrained, as `tokio::time::timeout` polls its timer: a flush or a drain
            // that spends the task's cooperative budget every turn (the peer reads or sends as
            // fast as the socket goes) must not keep the deadline from firing.
            over = tokio::task::unconstrained(&mut deadline) => {
                // Bytes the channel accepted are still in it (or a flush was cut short): the
                // channel tells the close, which resets the connection.
                socket.close();
                // Then they are thrown away on purpose: the caller learns it from the
                // `Timeout`, so the channel's drop must not log the `warn` meant for a flush
                // forgotten (a peer that reads nothing would set the rate of warnings).
                output.cancel();
                return Err(over.err().unwrap_or(Error::Timeout));
            }
        };
        if let Err(e) = shut {
            socket.close();
            return Err(e.into());
        }
        // A `socket_timeout` met while draining is the peer's silence, not its end: `wait`
        // bounds the drain (a zero timeout fails every wait at once: nothing to wait for).
        let at_once = socket.link.conn.times_out_at_once();
        let drain = async {
            // `discard` returns `Ok` only at the peer's end of stream.
            while let Err(net_io::Error::Timeout) = input.discard(u64::MAX).await {
                if at_once {
                    break;
                }
            }
        };
        tokio::select! {
            biased;
            () = drain => {}
            _ = tokio::task::unconstrained(&mut deadline) => {}
        }
        socket.close();
        Ok(())
    }
}

/// A connection handed to [`Connection::close_gracefully`] whose future was not polled yet.
/// Dropped so (the future dropped before its first poll: a `select!` whose other branch was
/// ready first), what its output holds is thrown away on purpose, as by a drop of the call
/// under way: the close is a reset, and no `warn` says that a flush was forgotten.
struct Unstarted<T: Transport>(Option<Connection<T>>);

impl<T: Transport> Unstarted<T> {
    /// The connection, for the call that starts.
    fn start(mut self) -> Connection<T> {
        self.0.take().expect("a close starts once")
    }
}

impl<T: Transport> Drop for Unstarted<T> {
    fn drop(&mut self) {
        if let Some(connection) = &mut self.0 {
            connection.output.cancel();
        }
    }
}

impl Connection<Plain> {
    /// Hands the connection to a layer (TLS; for STARTTLS after a plain-text exchange): the
    /// output is flushed before the layer starts, and input already buffered (bytes that arrived with the
    /// plain-text command) is the layer's first input. When a read of the input already failed
    /// (the peer reset the connection), that error is returned and no layer is started. Nor is
    /// one started when the output's stream misses the rest of a write dropped part-way: the
    /// upgrade fails with an [`Error::Io`] of kind [`BrokenPipe`](io::ErrorKind::BrokenPipe),
    /// as the output's `flush_and_close` would. On error, or when the returned future is
    /// dropped, the socket is closed.
    ///
    /// `limit` bounds the whole upgrade, the flush included: `start` gets the rest of it, a
    /// sleep on the selector runtime's clock that ends `limit` after this call was first
    /// polled, to bound its handshake. A flush still under way then fails the upgrade with
    /// `timed_out()`'s error (what the output still held is thrown away, as by
    /// [`close_gracefully`](Connection::close_gracefully)'s `wait`), or with the close once
    /// the selector is closed.
    ///
    /// Each failure of the upgrade itself (before `start` runs: the flush, a read that had
    /// failed, a gap, the deadline, a closed socket) goes through `failed`, in the
    /// connection's span, so that the layer can report it as it reports its own handshake's
    /// failures; `start`'s failures are returned as they are.
    #[doc(hidden)]
    pub async fn upgrade<T, E, F, Fut>(
        self,
        limit: Duration,
        timed_out: impl FnOnce() -> E,
        failed: impl FnOnce(E) -> E,
        start: F,
    ) -> Result<Socket<T>, E>
    where
        T: Transport,
        E: From<Error>,
        F: FnOnce(RawStream, SelectorSleep) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let Connection {
            socket,
            mut input,
            mut output,
        } = self;
        // One deadline for the flush and the layer's handshake: a peer that reads nothing must
        // not hold the flush for ever. A sleep of the selector's runtime, as the layer's would
        // be (see `close_gracefully`).
        let mut deadline = SelectorSleep::new(socket.link.conn.core().selector(), limit);
        let taken = async {
            let prefix = input.read_bytes(input.available_for_read()).await?;
            // A read that failed (a reset) is final, but the socket reports it only once: on
            // it, the layer would see an end of stream, or a broken pipe when it writes. The
            // channel reports it again, without reading (an end of stream it saw: `false`).
            // Before the flush, which it fails too, with the broken pipe.
            if input.is_closed_for_read() {
                input.await_content(1).await?;
            }
            output.flush().await?;
            // A write that went to the socket directly and was dropped part-way left the
            // stream without the rest of its bytes: a layer must not start on a stream with a
            // gap (its session could never end cleanly either), as after a cancelled input.
            if socket.link.conn.bytes_lost() {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "a write was dropped after the socket took part of it; the stream misses \
                     the rest, and no layer starts on it",
                )
                .into());
            }
            Ok::<_, net_io::Error>(prefix)
        };
        let taken = tokio::select! {
            biased;
            taken = taken => taken,
            // Unconstrained, as in `close_gracefully`.
            over = tokio::task::unconstrained(&mut deadline) => {
                socket.close();
                // Thrown away on purpose: the caller learns it from the error (no `warn`).
                output.cancel();
                let span = socket.link.conn.core().span();
                return Err(span.in_scope(|| {
                    failed(match over {
                        Ok(()) => timed_out(),
                        Err(closed) => closed.into(),
                    })
                }));
            }
        };
        let prefix = match taken {
            Ok(prefix) => prefix,
            Err(e) => {
                socket.close();
                // What the output still holds (a reply left for this flush, when the input
                // had failed already) is thrown away by the upgrade, which tells the caller
                // why: not a flush the caller forgot (no `warn`).
                output.cancel();
                let span = socket.link.conn.core().span();
                return Err(span.in_scope(|| failed(Error::from(e).into())));
            }
        };
        drop((input, output));
        if let Err(e) = socket.link.conn.core().check_open() {
            let span = socket.link.conn.core().span();
            return Err(span.in_scope(|| failed(e.into())));
        }
        socket
            .upgrade_with(prefix, |raw| start(raw, deadline))
            .await
    }
}

/// Tells a connection that a graceful shutdown of its listener or selector began; from
/// [`Socket::shutdown_signal`]. Cheap to clone; clones share one signal.
#[derive(Clone)]
pub struct ShutdownSignal(Drain);

impl fmt::Debug for ShutdownSignal {
    /// Whether the shutdown began (not the listener's and selector's signals it hangs from).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownSignal")
            .field("requested", &self.is_requested())
            .finish_non_exhaustive()
    }
}

impl ShutdownSignal {
    /// Waits until the shutdown began (at once if it already has).
    ///
    /// In a loop that selects on it beside a read, make the future once, pin it and select on
    /// `&mut` it: it then registers its wake-up once, rather than on every pass.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: made to be a branch of `tokio::select!` beside a read.
    pub fn requested(&self) -> impl Future<Output = ()> + Send + '_ {
        self.0.requested()
    }

    /// Whether the shutdown began.
    pub fn is_requested(&self) -> bool {
        self.0.has_begun()
    }
}

/// A [`Socket`] as one [`AsyncRead`] + [`AsyncWrite`] stream, from [`Socket::into_stream`].
///
/// It dereferences to the socket (addresses, `close`, the transport's queries).
/// `poll_shutdown` half-closes (sends FIN; over TLS, `close_notify` first). A write after it
/// fails with `BrokenPipe` (on a plain socket the OS error `EPIPE`, as tokio's `TcpStream`
/// reports it) and changes nothing: what was written before the shutdown still reaches the
/// peer, then the end of the stream. Otherwise a write after the socket's close or its
/// selector's, a write of nothing too, and so a flush and a shutdown, fails with that close's
/// error ([`Error::Closed`](crate::Error::Closed) or
/// [`Error::SelectorClosed`](crate::Error::SelectorClosed)), over TLS as on a plain socket,
/// whatever failed before it (the close decided how the connection ends); a read after it
/// reports again the failure or end a read reported before it, else the close's error.
/// Once the connection failed (a read reported the peer's reset, or a write met it), every
/// later write, a write of nothing too, fails with `EPIPE` (kind `BrokenPipe`), as a send of any
/// size then gets from the kernel, and as tokio's `TcpStream` reports it. A send the kernel
/// refuses only for the moment (short of memory: `ENOBUFS`, `ENOMEM`) fails that write alone:
/// a write of nothing after it is `Ok(0)`, and later writes go through, though the close then
/// resets the connection, as after any failed write.
///
/// A write that timed out (`socket_timeout`) took none of its bytes; a retry that went
/// through, a flush or the shutdown itself (a flush first) makes it good, and the shutdown
/// sends FIN as usual (over TLS, `close_notify` first). After any other failed write,
/// `poll_shutdown` fails with `BrokenPipe` and sends no FIN: the socket's close resets the
/// connection instead.
pub struct SocketStream<T: Transport = Plain> {
    socket: Socket<T>,
    reader: T::Reader,
    writer: T::Writer,
}

impl<T: Transport> fmt::Debug for SocketStream<T> {
    /// The socket's `Debug` (addresses, state, the transport's queries): never the bytes the
    /// reader and writer hold, which are the application's.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketStream")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> fmt::Display for SocketStream<T> {
    /// Prints `local -> remote`, as the socket's `Display` does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.socket, f)
    }
}

impl<T: Transport> Deref for SocketStream<T> {
    type Target = Socket<T>;

    fn deref(&self) -> &Socket<T> {
        &self.socket
    }
}

impl<T: Transport> AsyncRead for SocketStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().reader).poll_read(cx, buf)
    }
}

impl<T: Transport> AsyncWrite for SocketStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().writer).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().writer).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.writer.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::core::Owner;
    use crate::{SelectorManager, a_socket};

    /// `close_gracefully`'s `wait` is a timer of the selector's runtime, and runs on its clock,
    /// whatever polls the call: here a runtime whose paused clock jumps ahead whenever it has
    /// nothing to do. The call ends after `wait` of real time (the peer reads nothing, so the
    /// flush never completes), neither at once nor never.
    #[test]
    fn close_gracefully_waits_on_the_selectors_clock_whatever_polls() {
        const WAIT: Duration = Duration::from_millis(300);
        let selector = SelectorManager::builder()
            .worker_threads(1)
            .build()
            .unwrap();
        let paused = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let (done, closed) = std::sync::mpsc::channel();
        let polling = selector.clone();
        std::thread::spawn(move || {
            paused.block_on(async {
                let listener = a_socket(&polling)
                    .tcp()
                    .send_buffer_size(4096)
                    .bind(("127.0.0.1", 0))
                    .await
                    .unwrap();
                let port = listener.local_address().as_inet().unwrap().port();
                let peer = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                socket2::SockRef::from(&peer)
                    .set_recv_buffer_size(4096)
                    .unwrap();
                let socket = listener.accept().await.unwrap();
                let chunk = vec![7u8; 64 * 1024];
                socket
                    .with_sock_ref(|sock| {
                        while sock.send(&chunk).is_ok() {}
                        Ok(())
                    })
                    .unwrap();
                let mut connection = socket.connection().unwrap();
                connection.output.write_fully(b"bye\n").await.unwrap();
                let started = Instant::now();
                let result = connection.close_gracefully(WAIT).await;
                let _ = done.send((result, started.elapsed()));
                drop(peer);
            });
        });
        let (result, took) = closed
            .recv_timeout(Duration::from_secs(10))
            .expect("close_gracefully never returned");
        assert!(matches!(result, Err(crate::Error::Timeout)), "{result:?}");
        assert!(took >= WAIT, "{took:?}");
        selector.close();
    }

    /// A connection accepted through `selector`, and its peer (a std stream, left open).
    async fn accepted(selector: &SelectorManager) -> (crate::Socket, std::net::TcpStream) {
        let listener = a_socket(selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = listener.local_address().as_inet().unwrap().port();
        let peer = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        (listener.accept().await.unwrap(), peer)
    }

    /// Whether `socket` is closed, its descriptor released: `await_closed` is ready at once.
    fn released(socket: &crate::Socket) -> bool {
        use std::task::{Context, Waker};

        let closed = std::pin::pin!(socket.await_closed());
        closed
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready()
    }

    /// What `peer` reads next (within 10 s).
    fn peer_reads(peer: &std::net::TcpStream) -> std::io::Result<usize> {
        use std::io::Read as _;

        peer.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        (&*peer).read(&mut [0; 16])
    }

    /// While something holds `socket` (a close then waits up to 50 ms for it, as for a poll
    /// in flight on another thread), `close` on another thread, then, once `began` says it
    /// marked its work, `close` again here: whether the second returned with the socket
    /// released.
    fn second_close_finds_it_released(
        socket: &crate::Socket,
        close: impl Fn() + Sync,
        began: impl Fn() -> bool,
    ) -> bool {
        let held = socket.link.conn.core().io().unwrap();
        let released = std::thread::scope(|scope| {
            let first = scope.spawn(&close);
            let started = Instant::now();
            while !began() {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "the first close never began"
                );
                std::thread::yield_now();
            }
            close();
            let released = released(socket);
            first.join().unwrap();
            released
        });
        drop(held);
        released
    }

    /// A plain socket's close decides again once the socket is marked closed: a write that
    /// failed after the layer had chosen a clean end (here between the close's two steps, a
    /// send the kernel refused for the moment, so the peer is alive and reads what it gets)
    /// makes the close a reset, never FIN after a stream with a gap.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_write_that_fails_as_the_close_decides_makes_it_a_reset() {
        let selector = SelectorManager::new();
        let (socket, peer) = accepted(&selector).await;
        let mut write = crate::stream::WriteHalf::new(std::sync::Arc::clone(&socket.link.conn));
        let (refused_tx, refused) = std::sync::mpsc::channel();
        crate::stream::tests::BETWEEN.with(|between| {
            *between.borrow_mut() = Some(Box::new(move || {
                crate::stream::tests::REFUSED_SEND.with(|r| r.set(Some(libc::ENOBUFS)));
                refused_tx.send(write.try_write(b"lost")).unwrap();
            }));
        });
        socket.close();
        let refused = refused.try_recv().expect("the close ran its step");
        assert_eq!(
            refused.as_ref().map_err(std::io::Error::raw_os_error),
            Err(Some(libc::ENOBUFS)),
            "{refused:?}"
        );
        let read = peer_reads(&peer);
        assert!(
            matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "the peer read {read:?}"
        );
        selector.close();
    }

    /// A close that finds another under way returns only once that one released the socket:
    /// the second close, made once the socket reads closed, returns with `await_closed` ready,
    /// not while the first still waits for the socket's holder.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_close_that_finds_another_under_way_returns_once_that_one_released_the_socket() {
        let selector = SelectorManager::new();
        let (socket, _peer) = accepted(&selector).await;
        assert!(
            second_close_finds_it_released(&socket, || socket.close(), || socket.is_closed()),
            "the second close returned before the socket was released"
        );
        selector.close();
    }

    /// A selector's close that finds another under way (on another thread) returns only once
    /// that one closed the sockets: the second, made once the selector reads closed, returns
    /// with the socket released, not while the first still waits for the socket's holder.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_selector_close_that_finds_another_under_way_returns_once_it_closed_the_sockets() {
        let selector = SelectorManager::new();
        let (socket, _peer) = accepted(&selector).await;
        assert!(
            second_close_finds_it_released(&socket, || selector.close(), || selector.is_closed()),
            "the second close returned before the socket was released"
        );
    }

    /// A close of a socket that its selector's close has not reached yet (the selector reads
    /// closed, its sockets not yet) closes it, as that close will: it returns with the socket
    /// released, and the peer sees the end (FIN or reset).
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_close_before_the_selectors_close_reached_the_socket_closes_it() {
        let selector = SelectorManager::new();
        let (socket, peer) = accepted(&selector).await;
        selector.inner().mark_closed();
        assert!(socket.is_closed());
        socket.close();
        assert!(released(&socket), "the close returned with the socket open");
        let read = peer_reads(&peer);
        assert!(
            matches!(&read, Ok(0))
                || matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "the peer read {read:?}"
        );
        selector.close();
    }

    /// A lingering close while something else still holds the socket (an operation that runs,
    /// a task that waits for the socket to drain), with data the peer has not taken: whoever
    /// lets go last makes the kernel's close, which waits for the peer. That must be the
    /// blocking thread the close runs on, never the holder (a runtime thread). It was the holder
    /// whenever the blocking thread closed its duplicate descriptor first.
    #[tokio::test(flavor = "current_thread")]
    async fn a_holder_of_a_lingering_socket_lets_go_without_waiting_for_the_peer() {
        let selector = SelectorManager::new();
        let listener = a_socket(&selector)
            .tcp()
            .linger(Duration::from_secs(3))
            .send_buffer_size(32 * 1024)
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        // A peer that takes a few KiB and never reads.
        let peer = tokio::net::TcpSocket::new_v4().unwrap();
        peer.set_recv_buffer_size(4096).unwrap();
        let port = listener.local_address().as_inet().unwrap().port();
        let _peer = peer.connect(([127, 0, 0, 1], port).into()).await.unwrap();
        let socket = listener.accept().await.unwrap();
        let mut connection = socket.connection().unwrap();
        connection
            .output
            .write_fully(&vec![7; 16 * 1024])
            .await
            .unwrap();
        connection.output.flush().await.unwrap();
        let held = connection.socket.link.conn.core().io().unwrap();
        connection.socket.close();
        // Time for the close's blocking thread to do what it does first.
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        drop(held);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "letting go of the socket waited {:?} for the peer",
            started.elapsed()
        );
    }
}
