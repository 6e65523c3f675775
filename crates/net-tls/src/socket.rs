//! TLS as a transport layer of a [`Socket`]: [`TlsSession`], the [`TlsSocket`] it makes, and the
//! [`TlsExt`] trait that starts it on a connected socket or, for STARTTLS, on a connection.
//!
//! Channels, addresses and closing are the socket's own (written once, in `net-sockets`); this
//! file is only about TLS: the handshakes, the session the two channels share, what a close
//! sends, and what the handshake negotiated.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use net_sockets::layer::{Ending, Link, RawStream, Transport};
use net_sockets::{Connection, Socket, SocketStream};
use rustls::CipherSuite;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::Truncated;
use crate::handshake::{self, Session};
use crate::{Result, TlsConfig, TlsServerConfig, TlsVersion};

/// A TLS connection: a [`Socket`] whose channels read and write through a TLS session.
///
/// It has the surface of a plain socket — channels (each once), [`connection`](Socket::connection),
/// [`into_stream`](Socket::into_stream), addresses, `close`, `await_closed` — and, through
/// [`TlsSession`], what the handshake negotiated: `tls.alpn_protocol()`,
/// `tls.protocol_version()`, `tls.cipher_suite()`, `tls.peer_certificates()`,
/// `tls.server_name()`.
///
/// - [`close`](Socket::close) sends TLS's `close_notify`, then closes the socket. After a write,
///   flush or write timeout failed it sends no `close_notify`, so the peer sees the stream end
///   truncated instead of cleanly.
/// - [`flush_and_close`](net_io::ByteWriteChannel::flush_and_close) on the write channel sends
///   `close_notify` and FIN: a half-close; the read channel keeps working.
/// - A peer that sends `close_notify` gives a clean end of stream; one that just drops the
///   connection makes reads fail with [`Truncated`](crate::Truncated) (an
///   [`io::ErrorKind::UnexpectedEof`] error).
/// - A connection that only reads still answers what the session owes the peer: a KeyUpdate
///   reply, a fatal alert for a corrupted record.
pub type TlsSocket = Socket<TlsSession>;

/// A [`TlsSocket`] with both channels open, from [`connection`](Socket::connection).
pub type TlsConnection = Connection<TlsSession>;

/// A [`TlsSocket`] as one [`AsyncRead`] + [`AsyncWrite`] stream, from
/// [`into_stream`](Socket::into_stream), for code written against tokio's I/O traits (hyper,
/// `tokio::io::copy_bidirectional`, codecs). It dereferences to the socket, so the session
/// queries work on it too; `poll_shutdown` sends `close_notify` and FIN.
pub type TlsStream = SocketStream<TlsSession>;

/// Adds TLS to a connected [`Socket`] or, for STARTTLS, to a [`Connection`] that already
/// exchanged plain text.
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
///
/// STARTTLS: the plain-text exchange uses the connection's channels; `tls` flushes the output,
/// and bytes the input already holds (a ClientHello that arrived with the command) are the
/// handshake's first input.
///
/// ```no_run
/// use net_io::LineEnding;
/// use net_tls::{TlsExt, TlsServerConfig, TlsSocket};
///
/// # async fn demo(socket: net_sockets::Socket, config: TlsServerConfig) -> Result<TlsSocket, Box<dyn std::error::Error>> {
/// let mut connection = socket.connection()?;
/// if connection.input.read_line(512, LineEnding::Default).await?.as_deref() == Some("STARTTLS") {
///     connection.output.write_string_utf8("220 Ready to start TLS\r\n").await?;
/// }
/// let tls = connection.tls_server(&config).await?;
/// # Ok(tls) }
/// ```
pub trait TlsExt: Sized {
    /// Runs the client handshake. SNI and certificate verification use the host name given to
    /// `connect` unless `config` names another ([`TlsConfigBuilder::server_name`](crate::TlsConfigBuilder::server_name)).
    ///
    /// # Errors
    ///
    /// [`Error::Handshake`](crate::Error::Handshake) with rustls's reason (untrusted, expired, wrong host, an alert from
    /// the server), [`Error::HandshakeTimeout`](crate::Error::HandshakeTimeout), [`Error::InvalidServerName`](crate::Error::InvalidServerName) when there is no
    /// usable name (a socket connected to a bare address still has its IP literal), or
    /// [`Error::Socket`](crate::Error::Socket). On error the socket is closed.
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
    /// [`Error::Handshake`](crate::Error::Handshake) with rustls's reason (garbage instead of a ClientHello, no client
    /// certificate when one is required, no common protocol), [`Error::HandshakeTimeout`](crate::Error::HandshakeTimeout) for
    /// a client that does not complete the handshake in time, or [`Error::Socket`](crate::Error::Socket). On error
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
        self.connection()?.tls(config).await
    }

    async fn tls_server(self, config: &TlsServerConfig) -> Result<TlsSocket> {
        self.connection()?.tls_server(config).await
    }
}

impl TlsExt for Connection {
    async fn tls(self, config: TlsConfig) -> Result<TlsSocket> {
        self.upgrade(|raw| client(raw, config)).await
    }

    async fn tls_server(self, config: &TlsServerConfig) -> Result<TlsSocket> {
        self.upgrade(|raw| server(raw, config)).await
    }
}

async fn client(raw: RawStream, config: TlsConfig) -> Result<TlsSession> {
    let started = handshake::connect(raw, &config).await;
    finished(started, "client")
}

async fn server(raw: RawStream, config: &TlsServerConfig) -> Result<TlsSession> {
    let started = handshake::accept(raw, config).await;
    finished(started, "server")
}

fn finished(
    started: Result<(tokio_rustls::TlsStream<RawStream>, Session)>,
    side: &'static str,
) -> Result<TlsSession> {
    match started {
        Ok((stream, session)) => {
            tracing::debug!(side, version = ?session.protocol_version, "tls handshake done");
            Ok(TlsSession::new(stream, session))
        }
        Err(e) => {
            tracing::debug!(side, error = %e, "tls handshake failed");
            Err(e)
        }
    }
}

type Shared = Arc<Mutex<tokio_rustls::TlsStream<RawStream>>>;

fn lock(shared: &Shared) -> MutexGuard<'_, tokio_rustls::TlsStream<RawStream>> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// The TLS layer of a [`TlsSocket`]: the session both channels share, and what its handshake
/// negotiated.
///
/// Its methods are reached through the socket (`tls.alpn_protocol()`). The read and write
/// channels can live in different tasks: each read or write takes a short lock on the session
/// (never held across an await).
pub struct TlsSession {
    shared: Shared,
    session: Session,
    /// A write or flush through TLS failed: the session must not end with `close_notify`.
    failed: Arc<AtomicBool>,
}

impl TlsSession {
    fn new(stream: tokio_rustls::TlsStream<RawStream>, session: Session) -> Self {
        TlsSession {
            shared: Arc::new(Mutex::new(stream)),
            session,
            failed: Arc::new(AtomicBool::new(false)),
        }
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
}

impl fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSession")
            .field("protocol_version", &self.session.protocol_version)
            .field("cipher_suite", &self.session.cipher_suite)
            .field("alpn_protocol", &self.session.alpn_protocol)
            .finish_non_exhaustive()
    }
}

impl Transport for TlsSession {
    type Reader = TlsRead;
    type Writer = TlsWrite;

    fn reader(&self, _link: &Link) -> Self::Reader {
        TlsRead(Arc::clone(&self.shared))
    }

    fn writer(&self, _link: &Link) -> Self::Writer {
        TlsWrite {
            shared: Arc::clone(&self.shared),
            failed: Arc::clone(&self.failed),
        }
    }

    fn closing(&self, link: &Link) -> Ending {
        if self.failed.load(Ordering::Acquire) || link.write_failed() {
            // No close_notify: the peer sees a truncated stream, never a clean end.
            return Ending::Graceful;
        }
        let mut stream = lock(&self.shared);
        stream.get_mut().1.send_close_notify();
        send_owed(&mut stream);
        Ending::Graceful
    }
}

/// Sends the records `session` has queued, as far as the socket takes them now, without waiting
/// and without taking over the wake-up of a task waiting to write; what is left goes with the
/// next write or flush.
fn send_owed(stream: &mut tokio_rustls::TlsStream<RawStream>) {
    match stream {
        tokio_rustls::TlsStream::Client(s) => {
            let (raw, session) = s.get_mut();
            write_now(raw, session);
        }
        tokio_rustls::TlsStream::Server(s) => {
            let (raw, session) = s.get_mut();
            write_now(raw, session);
        }
    }
}

fn write_now<D>(raw: &mut RawStream, session: &mut rustls::ConnectionCommon<D>) {
    struct Now<'a>(&'a mut RawStream);

    impl io::Write for Now<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.try_write(buf)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    while session.wants_write() {
        if session.write_tls(&mut Now(raw)).is_err() {
            break;
        }
    }
}

/// The read direction of a shared TLS session.
///
/// rustls reports a stream that ends without `close_notify` as an
/// [`io::ErrorKind::UnexpectedEof`] error (the only source of that kind on a TLS read); this
/// reader keeps the kind and makes the inner error a [`Truncated`], which callers can test for.
#[doc(hidden)]
#[derive(Debug)]
pub struct TlsRead(Shared);

impl AsyncRead for TlsRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut stream = lock(&self.0);
        let read = Pin::new(&mut *stream).poll_read(cx, buf);
        // tokio-rustls writes only on write or flush: send now what reading made the session
        // owe the peer (a KeyUpdate reply, or a fatal alert for a bad record), so a connection
        // that only reads still answers.
        if stream.get_ref().1.wants_write() {
            send_owed(&mut stream);
        }
        match read {
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::UnexpectedEof, Truncated)))
            }
            other => other,
        }
    }
}

/// The write direction of a shared TLS session; a failure marks the session failed.
#[doc(hidden)]
#[derive(Debug)]
pub struct TlsWrite {
    shared: Shared,
    failed: Arc<AtomicBool>,
}

impl TlsWrite {
    fn check<T>(&self, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(_)) = &result {
            self.failed.store(true, Ordering::Release);
        }
        result
    }
}

impl AsyncWrite for TlsWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut *lock(&self.shared)).poll_write(cx, buf);
        self.check(result)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut *lock(&self.shared)).poll_flush(cx);
        self.check(result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.failed.load(Ordering::Acquire) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "an earlier write failed; the session ends without close_notify",
            )));
        }
        let result = Pin::new(&mut *lock(&self.shared)).poll_shutdown(cx);
        self.check(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    fn assert_send<T: Send>(_: &T) {}

    /// Compiles only if the handshake futures are `Send` (they run inside `tokio::spawn`).
    #[allow(dead_code)]
    fn handshake_futures_are_send(
        client: Socket,
        server: Socket,
        connection: Connection,
        c: TlsConfig,
        s: &TlsServerConfig,
    ) {
        assert_send(&client.tls(c.clone()));
        assert_send(&server.tls_server(s));
        assert_send(&connection.tls(c));
    }

    #[test]
    fn sockets_and_configs_can_be_shared_across_tasks() {
        assert_send_sync::<TlsSocket>();
        assert_send_sync::<TlsStream>();
        assert_send_sync::<TlsConfig>();
        assert_send_sync::<TlsServerConfig>();
    }
}
