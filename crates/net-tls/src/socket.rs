//! [`TlsSocket`] and the [`TlsExt`] trait that makes one from a connected [`Socket`].

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use net_io::{ByteReadChannel, ByteWriteChannel};
use net_sockets::{Socket, SocketAddress, SocketHandle, SocketStream};
use rustls::CipherSuite;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsStream;
use tracing::Instrument;

use crate::handshake::{self, Session, TruncationAware};
use crate::{Error, Result, TlsConfig, TlsServerConfig, TlsVersion};

/// Adds TLS to a connected [`Socket`].
///
/// # Examples
///
/// ```no_run
/// use net_sockets::{a_socket, SelectorManager};
/// use net_tls::{TlsConfig, TlsExt};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let selector = SelectorManager::new();
/// let mut tls = a_socket(&selector).tcp().connect(("example.com", 443)).await?
///     .tls(TlsConfig::builder().build()?).await?;
/// let mut output = tls.open_write_channel(true)?;
/// output.write_string_utf8("GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n").await?;
/// # Ok(()) }
/// ```
pub trait TlsExt: Sized {
    /// Runs the client handshake. SNI and certificate verification use the host name given to
    /// `connect` unless `config` names another ([`TlsConfigBuilder::server_name`](crate::TlsConfigBuilder::server_name)).
    ///
    /// # Errors
    ///
    /// [`Error::Handshake`] with rustls's reason (untrusted, expired, wrong host, an alert from
    /// the server), [`Error::HandshakeTimeout`], [`Error::InvalidServerName`] when there is no
    /// usable name (a socket connected to a bare address still has its IP literal), or
    /// [`Error::Socket`]. On error the socket is closed.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future closes the socket.
    fn tls(self, config: TlsConfig) -> impl Future<Output = Result<TlsSocket>> + Send;

    /// Runs the server handshake with the configuration current at this moment (see
    /// [`TlsServerConfig::reload`]), bounded by its handshake timeout.
    ///
    /// # Errors
    ///
    /// [`Error::Handshake`] with rustls's reason (garbage instead of a ClientHello, no client
    /// certificate when one is required, no common protocol), [`Error::HandshakeTimeout`] for
    /// a client that does not complete the handshake in time, or [`Error::Socket`]. On error
    /// the socket is closed.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future closes the socket.
    fn tls_server(self, config: &TlsServerConfig)
    -> impl Future<Output = Result<TlsSocket>> + Send;
}

impl TlsExt for Socket {
    async fn tls(self, config: TlsConfig) -> Result<TlsSocket> {
        let host = self.connect_host().map(str::to_owned);
        let stream = self.into_stream()?;
        let handle = stream.socket().handle();
        let span = stream.socket().span().clone();
        match handshake::connect(stream, &config, host.as_deref())
            .instrument(span)
            .await
        {
            Ok((stream, session)) => {
                tracing::debug!(version = ?session.protocol_version, "tls client handshake done");
                Ok(TlsSocket::new(stream, session, handle))
            }
            Err(e) => {
                tracing::debug!(error = %e, "tls client handshake failed");
                handle.close();
                Err(e)
            }
        }
    }

    async fn tls_server(self, config: &TlsServerConfig) -> Result<TlsSocket> {
        let stream = self.into_stream()?;
        let handle = stream.socket().handle();
        let span = stream.socket().span().clone();
        match handshake::accept(stream, config).instrument(span).await {
            Ok((stream, session)) => {
                tracing::debug!(version = ?session.protocol_version, "tls server handshake done");
                Ok(TlsSocket::new(stream, session, handle))
            }
            Err(e) => {
                tracing::debug!(error = %e, "tls server handshake failed");
                handle.close();
                Err(e)
            }
        }
    }
}

type Shared = Arc<Mutex<TlsStream<SocketStream>>>;

fn lock(shared: &Shared) -> MutexGuard<'_, TlsStream<SocketStream>> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// A TLS connection over a [`Socket`]: the same channels, addresses and closing, plus what the
/// handshake negotiated.
///
/// The read and write channels can live in different tasks. Both directions share one TLS
/// session, so each read or write takes a short lock on it (never held across an await).
///
/// - [`close`](Self::close) sends TLS's `close_notify`, then closes the socket as
///   [`Socket::close`] does.
/// - [`ByteWriteChannel::flush_and_close`] on the write channel sends `close_notify` and FIN:
///   a half-close; the read channel keeps working.
/// - A peer that sends `close_notify` gives a clean end of stream; one that just drops the
///   connection makes reads fail with [`Truncated`](crate::Truncated) (an
///   [`io::ErrorKind::UnexpectedEof`] error).
pub struct TlsSocket {
    shared: Shared,
    session: Session,
    handle: SocketHandle,
    read_opened: bool,
    write_opened: bool,
}

impl fmt::Debug for TlsSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSocket")
            .field("local", &self.handle.local_address())
            .field("remote", &self.handle.remote_address())
            .field("protocol_version", &self.session.protocol_version)
            .field("cipher_suite", &self.session.cipher_suite)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl TlsSocket {
    fn new(stream: TlsStream<SocketStream>, session: Session, handle: SocketHandle) -> Self {
        TlsSocket {
            shared: Arc::new(Mutex::new(stream)),
            session,
            handle,
            read_opened: false,
            write_opened: false,
        }
    }

    /// Opens the channel that reads decrypted bytes (once).
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] with [`net_sockets::Error::ChannelAlreadyOpen`] on a second call, or
    /// [`net_sockets::Error::Closed`] after close.
    pub fn open_read_channel(&mut self) -> Result<ByteReadChannel> {
        self.check_open(self.read_opened)?;
        self.read_opened = true;
        Ok(ByteReadChannel::new(TruncationAware(ReadHalf(Arc::clone(
            &self.shared,
        )))))
    }

    /// Opens the channel that writes bytes to encrypt and send (once). With `auto_flush`, every
    /// write call ends flushed.
    ///
    /// # Errors
    ///
    /// As [`open_read_channel`](Self::open_read_channel).
    pub fn open_write_channel(&mut self, auto_flush: bool) -> Result<ByteWriteChannel> {
        self.check_open(self.write_opened)?;
        self.write_opened = true;
        Ok(ByteWriteChannel::new(
            WriteHalf(Arc::clone(&self.shared)),
            auto_flush,
        ))
    }

    /// Opens both channels at once (the write channel without auto-flush, as
    /// [`Socket::connection`] does).
    ///
    /// # Errors
    ///
    /// As [`open_read_channel`](Self::open_read_channel).
    pub fn connection(mut self) -> Result<TlsConnection> {
        let input = self.open_read_channel()?;
        let output = self.open_write_channel(false)?;
        Ok(TlsConnection {
            socket: self,
            input,
            output,
        })
    }

    fn check_open(&self, opened: bool) -> Result<()> {
        if opened {
            return Err(Error::Socket(net_sockets::Error::ChannelAlreadyOpen));
        }
        if self.handle.is_closed() {
            return Err(Error::Socket(net_sockets::Error::Closed));
        }
        Ok(())
    }

    /// The local address.
    pub fn local_address(&self) -> SocketAddress {
        self.handle.local_address()
    }

    /// The peer's address.
    pub fn remote_address(&self) -> SocketAddress {
        self.handle.remote_address()
    }

    /// The application protocol agreed by ALPN, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.session.alpn_protocol.as_deref()
    }

    /// The TLS version in use.
    pub fn protocol_version(&self) -> Option<TlsVersion> {
        self.session.protocol_version
    }

    /// The cipher suite in use (its `Debug` form is the IANA name, e.g.
    /// `TLS13_AES_256_GCM_SHA384`).
    pub fn cipher_suite(&self) -> Option<CipherSuite> {
        self.session.cipher_suite
    }

    /// The certificates the peer presented, its own first; empty when it presented none.
    pub fn peer_certificates(&self) -> &[CertificateDer<'static>] {
        &self.session.peer_certificates
    }

    /// On a client, the name the server was verified against; on a server, the name the client
    /// asked for by SNI, if any.
    pub fn server_name(&self) -> Option<&str> {
        self.session.server_name.as_deref()
    }

    /// Sends `close_notify` (as far as the socket takes it without waiting), then closes the
    /// socket as [`Socket::close`] does. Idempotent.
    pub fn close(&self) {
        if self.handle.is_closed() {
            return;
        }
        {
            let mut stream = lock(&self.shared);
            match &mut *stream {
                TlsStream::Client(s) => s.get_mut().1.send_close_notify(),
                TlsStream::Server(s) => s.get_mut().1.send_close_notify(),
            }
            // Best effort without blocking: write what the socket's buffer takes now.
            let mut cx = Context::from_waker(Waker::noop());
            let _ = Pin::new(&mut *stream).poll_flush(&mut cx);
        }
        self.handle.close();
    }

    /// Whether the socket is closed.
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Waits until the socket is closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn await_closed(&self) {
        self.handle.await_closed().await;
    }
}

/// A [`TlsSocket`] with both channels open, from [`TlsSocket::connection`].
#[derive(Debug)]
#[non_exhaustive]
pub struct TlsConnection {
    /// The socket, for addresses, session queries and closing.
    pub socket: TlsSocket,
    /// Decrypted bytes from the peer.
    pub input: ByteReadChannel,
    /// Bytes to encrypt and send (no auto-flush).
    pub output: ByteWriteChannel,
}

/// The read direction of a shared TLS stream.
#[derive(Debug)]
struct ReadHalf(Shared);

/// The write direction of a shared TLS stream.
#[derive(Debug)]
struct WriteHalf(Shared);

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *lock(&self.0)).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *lock(&self.0)).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *lock(&self.0)).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *lock(&self.0)).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    fn assert_send<T: Send>(_: &T) {}

    /// Compiles only if both handshake futures are `Send` (they run inside `tokio::spawn`).
    #[allow(dead_code)]
    fn handshake_futures_are_send(
        client: Socket,
        server: Socket,
        c: TlsConfig,
        s: &TlsServerConfig,
    ) {
        assert_send(&client.tls(c));
        assert_send(&server.tls_server(s));
    }

    #[test]
    fn sockets_and_configs_can_be_shared_across_tasks() {
        assert_send_sync::<TlsSocket>();
        assert_send_sync::<TlsConfig>();
        assert_send_sync::<TlsServerConfig>();
    }
}
