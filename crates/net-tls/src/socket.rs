//! TLS as a transport layer of a [`Socket`]: [`TlsSession`], the [`TlsSocket`] it makes, and the
//! [`TlsExt`] trait that starts it on a connected socket or, for STARTTLS, on a connection.
//!
//! Channels, addresses and closing are the socket's own (written once, in `net-sockets`); this
//! file is only about TLS: the handshakes, the session the two channels share, what a close
//! sends, and what the handshake negotiated.

use std::fmt;
use std::future::Future;
use std::io::{self, Write as _};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};

use net_sockets::layer::{Ending, Link, RawStream, Transport};
use net_sockets::{Connection, Socket, SocketStream};
use rustls::{CipherSuite, NamedGroup};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};

use crate::Truncated;
use crate::handshake::{self, Session};
use crate::server::Settings;
use crate::{Error, Result, TlsConfig, TlsServerConfig, TlsVersion};

/// A TLS connection: a [`Socket`] whose channels read and write through a TLS session.
///
/// It has the surface of a plain socket — channels (each once), [`connection`](Socket::connection),
/// [`into_stream`](Socket::into_stream), addresses, `close`, `await_closed` — and, through
/// [`TlsSession`], what the handshake negotiated: `tls.alpn_protocol()`,
/// `tls.protocol_version()`, `tls.cipher_suite()`, `tls.peer_certificates()`,
/// `tls.server_name()`.
///
/// - [`close`](Socket::close) sends TLS's `close_notify` (after everything written; what the
///   socket cannot take at once is sent as it drains), then closes the socket. After a write,
///   flush or write timeout failed, or while the write channel still holds bytes it did not
///   send (or threw some away), or while a write of it is under way in another task and
///   the session has not taken all of its bytes (any of them may have left), or once the
///   session failed (a read found the peer's fatal alert, or a record that broke the
///   protocol; a fatal alert rustls owes the peer still goes), it sends no
///   `close_notify`, so the peer sees the stream end truncated instead of cleanly; a write
///   that starts as the close runs fails having sent nothing, also one that would only add
///   to the write channel's buffer. A write whose bytes the session took, all of them, and
///   that waits for the socket to take their records (an auto-flushed write, a flush) may
///   fail with the close's error, though its bytes are sent whole before `close_notify`, as
///   everything written is. (A write or flush that timed out took nothing: a later
///   write that goes through, such as its retry, or a flush makes it good, as on a plain
///   socket.) Reads after the close, and those waiting when it came, fail with
///   [`Error::Closed`](net_sockets::Error::Closed), as on a plain socket, also when the peer's
///   last records were still unread (the close takes them in, so that the kernel does not
///   answer it with a reset); so do reads after a cut (the selector's close, the end of a
///   graceful shutdown's grace period or of the runtime), with that close's error
///   (`SelectorClosed`, or `Closed`), never data the cut took in. A read that failed for good
///   before the close (a truncation, a corrupted record, the peer's reset) reports that
///   failure again instead, as on a plain socket.
/// - Dropping the socket (and its channels) without `close`, or a [`TlsStream`] without
///   `poll_shutdown`, sends no `close_notify` either: the peer sees a truncation, as with
///   tokio-rustls's streams.
/// - [`flush_and_close`](net_io::ByteWriteChannel::flush_and_close) on the write channel sends
///   `close_notify` and FIN: a half-close; the read channel keeps working (a read waiting in
///   another task gets what the half-close took in from the socket). Not every peer answers
///   with a `close_notify` of its own: one that then closes TCP without it (`gnutls-cli`
///   does, with TLS 1.2 and 1.3 alike) makes the next read fail with
///   [`Truncated`](crate::Truncated), not end cleanly. After a failed
///   write, or a write to the socket dropped part-way (see [`ByteWriteChannel`](net_io::ByteWriteChannel)'s
///   "Dropped writes"), it sends neither and reports an error.
/// - A peer that sends `close_notify` gives a clean end of stream; one that just drops the
///   connection makes reads fail with [`Truncated`](crate::Truncated) (an
///   [`io::ErrorKind::UnexpectedEof`] error). Once the read channel has had the clean end and
///   the write channel was closed, the socket closes itself, as a plain socket does after the
///   peer's FIN (bytes the peer sent after its `close_notify` thrown away first, as for
///   `close`, so that they do not make that close a reset; see below for those that come
///   later).
/// - A connection that only reads still answers what the session owes the peer: a KeyUpdate
///   reply, a fatal alert for a corrupted record.
/// - Once a read found the session failed (a corrupted record, the peer's fatal alert: the
///   read's error, of kind [`io::ErrorKind::InvalidData`]), writes (also those the write
///   channel would only buffer), flushes and shutdowns fail with that error, also one that was
///   waiting for the socket then, in another task: the read wakes it, so that it does not wait
///   on for a peer that may never read again.
/// - A connection that only writes still takes in the session's own messages when its
///   sending ends (`close`, `flush_and_close`, `poll_shutdown`): the session tickets a TLS 1.3
///   server sends after the handshake, which such a client never reads, would otherwise make
///   the kernel answer the close with a reset that destroys what is still on its way.
///   Application data nobody read is left in the socket, as on a plain socket (see
///   [`Connection::close_gracefully`]), and so is what comes past the first 64 KiB of the
///   session's own messages (a hostile peer can send records without data for ever): the
///   close is then a reset. Bytes a peer sent after its `close_notify`, which TLS says to
///   ignore, are thrown away (the same 64 KiB at most), so that they do not make the close a
///   reset. Only those that came before the close took in what the socket held, or before
///   the socket closed itself: a peer that sends more later (which TLS forbids) meets a
///   closed socket, which the kernel makes a reset, destroying what it still queued for the
///   peer (the end of our last data, `close_notify`), also after
///   [`close_gracefully`](Connection::close_gracefully), whose half-close closes the socket
///   once the peer's `close_notify` was read. The peer still never reads a clean end after
///   part of our data.
pub type TlsSocket = Socket<TlsSession>;

/// A [`TlsSocket`] with both channels open, from [`connection`](Socket::connection).
pub type TlsConnection = Connection<TlsSession>;

/// A [`TlsSocket`] as one [`AsyncRead`] + [`AsyncWrite`] stream, from
/// [`into_stream`](Socket::into_stream), for code written against tokio's I/O traits (hyper,
/// `tokio::io::copy_bidirectional`, codecs). It dereferences to the socket, so the session
/// queries work on it too; `poll_shutdown` sends `close_notify` and FIN (once the session
/// failed, by the peer's fatal alert or a corrupted record a read took in, it fails with that
/// error instead, as writes and flushes do, and sends nothing). A `poll_shutdown` that meets
/// `socket_timeout` (a peer that reads nothing while the session still holds records) loses
/// nothing, as a flush that times out: retried, it sends them, then `close_notify`; a close
/// before that sends no `close_notify`.
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
/// handshake's first input. The handshake timeout bounds the flush and the handshake together
/// (one deadline from the first poll), so a peer that reads nothing cannot hold the upgrade for
/// longer.
///
/// ```
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
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// # let key = rcgen::KeyPair::generate()?;
/// # let cert = rcgen::CertificateParams::new(vec!["localhost".into()])?.self_signed(&key)?;
/// # let config = TlsServerConfig::builder()
/// #     .certificate_chain_pem(cert.pem().as_bytes())?
/// #     .private_key_pem(key.serialize_pem().as_bytes())?
/// #     .build()?;
/// # let client_config = net_tls::TlsConfig::builder()
/// #     .add_root_certificates_pem(cert.pem().as_bytes())?
/// #     .server_name("localhost")
/// #     .build()?;
/// # let selector = net_sockets::SelectorManager::new();
/// # let server = net_sockets::a_socket(&selector).tcp().bind(("127.0.0.1", 0)).await?;
/// # let client = net_sockets::a_socket(&selector).tcp().connect(server.local_address());
/// # let client = tokio::spawn(async move {
/// #     let mut plain = client.await?.connection()?;
/// #     plain.output.write_string_utf8("STARTTLS\r\n").await?;
/// #     plain.output.flush().await?;
/// #     // Not flushed when `tls_server` began: the upgrade sent it.
/// #     let reply = plain.input.read_line(512, LineEnding::Default).await?;
/// #     assert_eq!(reply.as_deref(), Some("220 Ready to start TLS"));
/// #     Ok::<_, BoxError>(plain.tls(client_config).await?)
/// # });
/// # let tls = demo(server.accept().await?, config).await?;
/// # assert!(tls.protocol_version().is_some());
/// # drop(client.await.unwrap().map_err(|e| e.to_string())?);
/// # Ok(()) }
/// ```
///
/// The trait is sealed: it is implemented for [`Socket`] and [`Connection`] only, so that
/// methods can be added to it without breaking anyone.
pub trait TlsExt: Sized + sealed::Sealed {
    /// Runs the client handshake, bounded by `config`'s handshake timeout (on a [`Connection`],
    /// the flush of its output included). SNI and certificate verification use the host name given to
    /// `connect` unless `config` names another ([`TlsConfigBuilder::server_name`](crate::TlsConfigBuilder::server_name));
    /// an IP address is verified against the certificate's IP SANs and sent without SNI (an
    /// IPv4-mapped one given to `connect`, `::ffff:a.b.c.d`, as the IPv4 address it reaches).
    ///
    /// # Errors
    ///
    /// [`Error::Handshake`](crate::Error::Handshake) with rustls's reason (untrusted, expired, wrong host, a fatal alert
    /// from the server), [`Error::HandshakeTimeout`](crate::Error::HandshakeTimeout) (also for a
    /// server that does not read what a [`Connection`]'s output held in time, and for one that
    /// answers with a warning alert such as `close_notify` and stays open: rustls ignores
    /// warnings before the handshake is done), [`Error::InvalidServerName`](crate::Error::InvalidServerName) when there is no
    /// usable name (a socket connected to a bare address still has its IP literal, and a TCP
    /// socket adopted with `Socket::from_std` its peer's; an adopted or connected Unix socket
    /// has none), [`Error::InvalidAlpnProtocol`](crate::Error::InvalidAlpnProtocol) for a
    /// configuration from [`TlsConfig::from_rustls`] whose ALPN list cannot be sent (before
    /// any TLS record is sent), [`Error::Config`](crate::Error::Config) for one rustls cannot
    /// start a connection with (a `max_fragment_size` out of its range; nothing is sent either),
    /// or [`Error::Socket`](crate::Error::Socket). On error the socket is closed.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future closes the socket. On a [`Connection`], what its output still held
    /// for the upgrade to flush is thrown away, also when the future was never polled: the
    /// close is a reset.
    fn tls(self, config: TlsConfig) -> impl Future<Output = Result<TlsSocket>> + Send + 'static;

    /// Runs the server handshake with the configuration current at this moment (see
    /// [`TlsServerConfig::reload`]), bounded by its handshake timeout (on a [`Connection`], the
    /// flush of its output included).
    ///
    /// # Errors
    ///
    /// [`Error::Handshake`](crate::Error::Handshake) with rustls's reason (garbage instead of a ClientHello, no client
    /// certificate when one is required, no common protocol), [`Error::HandshakeTimeout`](crate::Error::HandshakeTimeout) for
    /// a client that does not complete the handshake in time (or, on a [`Connection`], does not
    /// read what its output held in time), [`Error::Config`](crate::Error::Config) for a
    /// configuration from [`TlsServerConfig::from_rustls`] that rustls cannot start a
    /// connection with (a `max_fragment_size` out of its range), or
    /// [`Error::Socket`](crate::Error::Socket). On error the socket is closed.
    ///
    /// The future takes what it needs from `config` when it is made, and does not borrow it:
    /// `tokio::spawn(socket.tls_server(&config))` works, also once `config` is dropped or
    /// replaced.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future closes the socket. On a [`Connection`], what its output still held
    /// for the upgrade to flush is thrown away, also when the future was never polled: the
    /// close is a reset.
    fn tls_server(
        self,
        config: &TlsServerConfig,
    ) -> impl Future<Output = Result<TlsSocket>> + Send + 'static;
}

/// Keeps [`TlsExt`] to this crate's implementations.
mod sealed {
    /// Implemented by the types [`TlsExt`](super::TlsExt) is for.
    pub trait Sealed {}
    impl Sealed for net_sockets::Socket {}
    impl Sealed for net_sockets::Connection {}
}

// The handshakes' futures are boxed: a task is allocated once, at the size of its largest
// state, and keeps it for as long as it lives. Inline, rustls's mid-handshake state (about
// 5 KB) would stay in every connection's task long after its handshake, idle TLS connections
// included; boxed, the task holds a pointer, and the state is freed when the handshake ends
// (one allocation per handshake, among rustls's many). Tests:
// `handshake_futures_are_small_and_still_handshake`, `starttls_handshake_futures_are_small`.

impl TlsExt for Socket {
    fn tls(self, config: TlsConfig) -> impl Future<Output = Result<TlsSocket>> + Send + 'static {
        Box::pin(async move { client(self.connection_or_close()?, config).await })
    }

    fn tls_server(
        self,
        config: &TlsServerConfig,
    ) -> impl Future<Output = Result<TlsSocket>> + Send + 'static {
        let settings = config.settings();
        Box::pin(async move { server(self.connection_or_close()?, settings).await })
    }
}

impl TlsExt for Connection {
    fn tls(self, config: TlsConfig) -> impl Future<Output = Result<TlsSocket>> + Send + 'static {
        let unstarted = Unstarted(Some(self));
        Box::pin(async move { client(unstarted.start(), config).await })
    }

    fn tls_server(
        self,
        config: &TlsServerConfig,
    ) -> impl Future<Output = Result<TlsSocket>> + Send + 'static {
        let unstarted = Unstarted(Some(self));
        let settings = config.settings();
        Box::pin(async move { server(unstarted.start(), settings).await })
    }
}

/// A connection handed to an upgrade whose future was not polled yet. Dropped so (the future
/// dropped before its first poll: a `select!` whose other branch was ready first), what its
/// output holds for the upgrade to flush is thrown away on purpose, as by a drop of the
/// upgrade under way: the close is a reset, and no `warn` says that a flush was forgotten.
struct Unstarted(Option<Connection>);

impl Unstarted {
    /// The connection, for the upgrade that starts.
    fn start(mut self) -> Connection {
        self.0.take().expect("an upgrade starts once")
    }
}

impl Drop for Unstarted {
    fn drop(&mut self) {
        if let Some(connection) = &mut self.0 {
            connection.output.cancel();
        }
    }
}

// The handshake timeout bounds the whole upgrade: the flush of the connection's output (STARTTLS)
// and the handshake share one deadline.

// A failure before the handshake starts (the flush, a closed socket) is logged as the
// handshake's own are: the caller's upgrade failed either way.

async fn client(connection: Connection, config: TlsConfig) -> Result<TlsSocket> {
    let limit = config.handshake_timeout;
    let timed_out = || Error::HandshakeTimeout(limit);
    let start = |raw, timer| async move {
        let started = handshake::connect(raw, timer, &config).await;
        finished(started, "client", handshaker().await)
    };
    let before_start = |e| failed("client", e);
    connection
        .upgrade(limit, timed_out, before_start, start)
        .await
}

async fn server(connection: Connection, settings: Arc<Settings>) -> Result<TlsSocket> {
    let limit = settings.handshake_timeout;
    let timed_out = || Error::HandshakeTimeout(limit);
    let start = |raw, timer| async move {
        let started = handshake::accept(raw, timer, &settings).await;
        finished(started, "server", handshaker().await)
    };
    let before_start = |e| failed("server", e);
    connection
        .upgrade(limit, timed_out, before_start, start)
        .await
}

/// The waker of the task that polls the handshake, as its last poll ends: the socket keeps it
/// for its input (the handshake reads on after the peer's last message, and finds nothing),
/// and for its room where a write of the handshake waited. The session notes it (see
/// [`TlsSession::new`]).
fn handshaker() -> impl Future<Output = Waker> {
    std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone()))
}

fn finished(
    started: Result<(tokio_rustls::TlsStream<RawStream>, Session)>,
    side: &'static str,
    handshaker: Waker,
) -> Result<TlsSession> {
    match started {
        Ok((mut stream, session)) => {
            tracing::debug!(side, version = ?session.protocol_version, "tls handshake done");
            // The handshake ends with socket reads (and maybe writes) still waiting: their
            // `socket_timeout` must not run on into the application's first read or write.
            let (raw, _) = stream.get_mut();
            raw.read_done();
            raw.write_done();
            // Records without data (a KeyUpdate, a session ticket, an empty record) are no
            // progress of a read: only a read that returns ends its wait.
            raw.count_waits_by_layer();
            let write_waited = raw.write_waited();
            Ok(TlsSession::new(stream, session, handshaker, write_waited))
        }
        Err(e) => Err(failed(side, e)),
    }
}

fn failed(side: &'static str, e: Error) -> Error {
    match &e {
        // The message says the handshake failed, as `Error`'s `Display` does: `error` is only
        // rustls's reason, escaped as there (it may quote the peer).
        Error::Handshake(reason) => {
            let reason = reason.to_string();
            tracing::debug!(side, error = %net_io::PeerText(&reason), "tls handshake failed");
        }
        _ => tracing::debug!(side, error = %e, "tls handshake failed"),
    }
    e
}

type Shared = Arc<Mutex<Locked>>;

/// What the two directions share, behind one lock.
#[derive(Debug)]
struct Locked {
    stream: tokio_rustls::TlsStream<RawStream>,
    /// The task of the last read that waited for input (or that returned plaintext after it
    /// read on and found nothing, see [`read_session`]; at first, the handshake's, see
    /// [`TlsSession::new`]). A shutdown takes in what the socket holds ([`receive_own`]),
    /// which may be the very input that read waits for: the socket then never tells it of
    /// that input, so the shutdown wakes it.
    reader: Option<Waker>,
    /// An error a read met after plaintext, for the next read (see `read_session`).
    kept: Option<io::Error>,
    /// The socket's error that a write whose bytes rustls had taken met (that write
    /// succeeded, see [`write_records`]), for the next write, flush or shutdown, which reports
    /// it as it was (the kernel would answer it with `EPIPE`, having reported the reset once).
    unreported: Option<io::Error>,
    /// Input came in (and rustls may have taken a KeyUpdate from it) since a read last asked
    /// rustls for the reply it may hold back (see [`answer_owed`]).
    unanswered: bool,
    /// The task of the last write or flush that waited for the socket (or returned with records
    /// the socket had no room for, see [`write_records`]; at first, the handshake's, where a
    /// write of it waited, see [`TlsSession::new`]). A read that finds the session failed
    /// (a corrupted record, the peer's fatal alert) wakes it: the session can send nothing
    /// more, and that write or flush, which waits for a peer that may never read again, fails
    /// with the session's error instead (see [`write_records`]).
    writer: Option<Waker>,
    /// Plaintext written while flush coalescing held writes back (the reader had requests
    /// still to read), not handed to rustls yet, so that the burst's answers are sealed as one
    /// record instead of one per flush: sealed when the reader reads again (or is gone), by
    /// the next write or flush that is not held back, and before `close_notify` (the socket's
    /// close, a shutdown). At most [`PLAIN_LIMIT`] bytes.
    plain: Vec<u8>,
}

impl Locked {
    /// Why nothing more can be written, on a connection known to be dead: the socket's error
    /// a write met after rustls took its bytes ([`unreported`](Self::unreported), taken: the
    /// session failed then), or, once a read reported the socket's failure (the peer's reset),
    /// the error a plain socket's send gets then (`EPIPE`).
    fn dead(&mut self) -> Option<io::Error> {
        self.unreported
            .take()
            .or_else(|| self.stream.get_ref().0.check_alive().err())
    }
}

impl Drop for Locked {
    /// The session goes with the last of the socket and its channels (dropped without
    /// `close`, or after it): the session's own messages the socket holds (a TLS 1.3 server's
    /// session tickets, which a client that never read leaves there) are taken in first, so
    /// that the kernel answers the socket's close with the FIN of a truncated stream, not with
    /// a reset, which the peer would read as `ConnectionReset` and which destroys what is still
    /// queued for it. (After a close, the socket is closed already and this takes nothing.)
    ///
    /// rustls hands what it takes in to code the user supplied (a client's session store,
    /// given through [`TlsConfig::from_rustls`](crate::TlsConfig::from_rustls), gets the
    /// session tickets). Should that panic while the thread unwinds already (a task that
    /// panicked while it held the socket), the process would abort: that second panic is
    /// dropped then (its message was printed as it panicked). Otherwise it goes on.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let receive = std::panic::AssertUnwindSafe(|| receive_own(&mut self.stream));
            let _ = std::panic::catch_unwind(receive);
        } else {
            receive_own(&mut self.stream);
        }
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, Locked> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// The session, for a cut that may come from any thread (the selector's close) while a read
/// or write of another thread holds it for the moment of its poll: waits for that one a few
/// turns; `None` when it is still held then (best effort: the cut goes on without it, never a
/// wait on a lock this thread may hold itself).
fn lock_unless_busy(shared: &Shared) -> Option<MutexGuard<'_, Locked>> {
    for _ in 0..100 {
        match shared.try_lock() {
            Ok(locked) => return Some(locked),
            Err(std::sync::TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => std::thread::yield_now(),
        }
    }
    None
}

/// The session, for a write: with the socket's writes waiting as writes do, even if a read
/// that marked them as its own ([`RawStream::reading`]) panicked before it could unmark them.
fn lock_for_writing(shared: &Shared) -> MutexGuard<'_, Locked> {
    let mut locked = lock(shared);
    locked.stream.get_mut().0.reading(false);
    locked
}

/// Keeps the waker of a write or flush that waits for the socket, for a read that finds the
/// session failed (see [`Locked::writer`]); returns the one it replaces (another task's), to be
/// dropped once the lock is released.
fn writer_waits(locked: &mut Locked, cx: &Context<'_>) -> Option<Waker> {
    match &locked.writer {
        Some(waker) if waker.will_wake(cx.waker()) => None,
        _ => locked.writer.replace(cx.waker().clone()),
    }
}

/// The most plaintext held back for one record ([`Locked::plain`]): what one TLS record
/// carries.
const PLAIN_LIMIT: usize = 16 * 1024;

/// Hands the plaintext held back ([`Locked::plain`]) to rustls, which seals it (as one record
/// where it fits) after the records it has queued; what rustls does not take (its queue is
/// full) stays held, unless `whole` (for the close, which sends no more plaintext after it:
/// rustls's queue then takes it all, past its limit). Dropped once the session failed: it can
/// reach the peer no more, and the session ends without `close_notify`.
fn seal_held(locked: &mut Locked, whole: bool) {
    fn seal<D>(
        session: &mut rustls::ConnectionCommon<D>,
        plain: &[u8],
        whole: bool,
    ) -> io::Result<usize> {
        if whole {
            session.set_buffer_limit(None);
        }
        let mut taken = 0;
        while taken < plain.len() {
            match session.writer().write(&plain[taken..])? {
                0 => break,
                n => taken += n,
            }
        }
        Ok(taken)
    }
    if locked.plain.is_empty() {
        return;
    }
    let sealed = match &mut locked.stream {
        tokio_rustls::TlsStream::Client(s) => seal(s.get_mut().1, &locked.plain, whole),
        tokio_rustls::TlsStream::Server(s) => seal(s.get_mut().1, &locked.plain, whole),
    };
    match sealed {
        Ok(n) => drop(locked.plain.drain(..n)),
        Err(_) => locked.plain.clear(),
    }
    if locked.plain.is_empty() && locked.plain.capacity() > PLAIN_KEEP {
        // A burst of large answers: a connection keeps no more than a small one's room.
        locked.plain = Vec::new();
    }
}

/// The most room for held plaintext a connection keeps between bursts.
const PLAIN_KEEP: usize = 4 * 1024;

/// Seals the plaintext held back ([`seal_held`]), then, as answers held back by flush
/// coalescing leave when the reader is about to wait, has the socket send the session's
/// records: after the answers it holds back, as far as the socket takes them now, the rest by a
/// task as it drains. Where the socket holds nothing back any more (the connection closes or a
/// send failed), what it does not take now stays queued, for the next write, flush or close.
fn release_held(locked: &mut Locked, link: &Link) {
    /// The socket's backlog as rustls's `io::Write`.
    struct Held<'a>(&'a Link);

    impl io::Write for Held<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.0.hold(buf) {
                Ok(buf.len())
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            }
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn hold<D>(session: &mut rustls::ConnectionCommon<D>, link: &Link) -> bool {
        while session.wants_write() {
            if session.write_tls(&mut Held(link)).is_err() {
                return false;
            }
        }
        true
    }

    seal_held(locked, false);
    let all_held = match &mut locked.stream {
        tokio_rustls::TlsStream::Client(s) => hold(s.get_mut().1, link),
        tokio_rustls::TlsStream::Server(s) => hold(s.get_mut().1, link),
    };
    if !all_held {
        // The socket holds its most back: what it refused leaves once it sent that (the
        // session's `on_passed_on` hook), or with the next write. An error here is the next
        // write's or the close's to meet.
        let _ = send_owed(&mut locked.stream);
    }
    link.send_held();
}

/// [`release_held`] where the session holds plaintext held back, or records a release left
/// queued: for a reader that will not read them out itself (gone, or read through tokio's
/// traits).
fn release_owed(locked: &mut Locked, link: &Link) {
    if !locked.plain.is_empty() || wants_write(&locked.stream) {
        release_held(locked, link);
    }
}

/// [`release_owed`] by a task of the selector's runtime, which waits for the session: for a
/// reader's drop, or the socket's hook, that finds it held by another (a write or flush of another
/// thread, a write of nothing, the write channel's drop, a close, shutdown or cut under way, maybe
/// on this thread, the reader's own read when the socket's task runs the hook, another such
/// release), where waiting could wait on this thread itself. The holder need not look for what was
/// left to it (no store-then-load handover, whose order only a fence on the holder's every call
/// would keep): the mutex orders the task's look after the holder's last change, and the reader's
/// "nothing pending" before both.
fn release_soon(shared: &Shared, link: &Link) {
    let shared = Arc::downgrade(shared);
    link.run_soon(move |link| {
        if let Some(shared) = shared.upgrade() {
            release_owed(&mut lock(&shared), link);
        }
    });
}

/// Seals all the plaintext held back ([`seal_held`]), for a write, flush or shutdown that is
/// not held back and must come after it: where rustls's queue is full, the socket takes its
/// records first, and the call waits for it as a write does.
fn poll_seal(locked: &mut Locked, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    loop {
        seal_held(locked, false);
        if locked.plain.is_empty() {
            return Poll::Ready(Ok(()));
        }
        if drain_session(&mut locked.stream, cx)? == Drained::Blocked {
            return Poll::Pending;
        }
    }
}

/// [`poll_seal`] for a write, flush or shutdown, which goes on with the session it returns;
/// otherwise the session is let go, and the call returns: `Err(None)` waiting for the socket
/// (noted as a writer's wait, see [`writer_waits`]), `Err(Some(e))` failed.
fn seal_first<'a>(
    mut locked: MutexGuard<'a, Locked>,
    cx: &mut Context<'_>,
) -> Result<MutexGuard<'a, Locked>, Option<io::Error>> {
    match poll_seal(&mut locked, cx) {
        Poll::Ready(Ok(())) => Ok(locked),
        Poll::Ready(Err(e)) => Err(Some(e)),
        Poll::Pending => {
            let replaced = writer_waits(&mut locked, cx);
            drop(locked);
            drop(replaced);
            Err(None)
        }
    }
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
    /// A write or flush through TLS timed out, and no write or flush went through since: the
    /// session must not end with `close_notify` until one does (see [`TlsWrite`]).
    timed_out: Arc<AtomicBool>,
    /// `close_notify` is queued (set under the session's lock): nothing written after it can
    /// reach the peer.
    ended: Arc<AtomicBool>,
    /// The socket's close began: reads fail from then on (see [`TlsRead`]). One that sends
    /// `close_notify` sets it under the session's lock as it takes the session's last records
    /// (and in what the socket held): it sends them, then FIN, so a shutdown must send nothing
    /// more, not even its FIN.
    closed: Arc<AtomicBool>,
    /// Records a shutdown took in ([`receive_own`]) failed the session (set under the
    /// session's lock): a read that finds no more input reports that error (see [`TlsRead`]).
    failed_in: Arc<AtomicBool>,
}

impl TlsSession {
    /// The session of a handshake done; `handshaker` is the waker of the task that polled it
    /// last, whose wakers the socket keeps for its input: it is noted as a waiting read's is,
    /// so that the first read that waits, another task's, which replaces those wakers under
    /// the session's lock, lets go of it last, once the lock is released (it may be its task's
    /// last reference, and that task's drop may close this socket, whose close takes the
    /// lock). Where a write of the handshake waited (`write_waited`: a certificate chain
    /// larger than the socket's send buffer, a peer slow to read), the socket keeps that
    /// task's wakers for its room too, also once the write went through: it is noted as a
    /// waiting write's is then, for the first write that waits, another task's, which
    /// replaces them under the lock. (Only then: such a note would keep the task's memory,
    /// the cell of the handshake's large future, for as long as no write waits.)
    fn new(
        stream: tokio_rustls::TlsStream<RawStream>,
        session: Session,
        handshaker: Waker,
        write_waited: bool,
    ) -> Self {
        let link = stream.get_ref().0.link().clone();
        let writer = write_waited.then(|| handshaker.clone());
        let shared = Arc::new(Mutex::new(Locked {
            stream,
            reader: Some(handshaker),
            kept: None,
            unreported: None,
            // The handshake's last reads may have brought records in.
            unanswered: true,
            writer,
            plain: Vec::new(),
        }));
        // A cut (the selector's close, the end of a graceful shutdown's grace period or of the
        // runtime) sends no `close_notify`, but takes in the session's own messages first, as a
        // close without `close_notify` does (see `closing`). Weak: the connection outlives
        // the session, and must not keep it.
        let session_of_cut = Arc::downgrade(&shared);
        let closed = Arc::new(AtomicBool::new(false));
        let closed_by_cut = Arc::clone(&closed);
        link.before_cut(move || {
            // What the cut takes in is input a plain socket's close throws away: no data for
            // a read after it, as after `close` (see `TlsRead`).
            closed_by_cut.store(true, Ordering::Release);
            if let Some(shared) = session_of_cut.upgrade() {
                if let Some(mut locked) = lock_unless_busy(&shared) {
                    receive_own(&mut locked.stream);
                }
            }
        });
        // A read of the read channel through tokio's traits hands out what the channel
        // buffered without a read of the session, and may stop reading while its writes wait:
        // the answers held back above rustls leave then, as when the reader reads again. So do
        // records a release left queued in the session, the socket holding back its most
        // (see `release_held`), once the socket sent what it held (the reader may be waiting
        // for input meanwhile, and the peer for them). While another holds the session, a
        // task does it once the session is free (see `release_soon`).
        let session_of_reads = Arc::downgrade(&shared);
        link.on_passed_on(move |link| {
            if let Some(shared) = session_of_reads.upgrade() {
                match shared.try_lock() {
                    Ok(mut locked) => release_owed(&mut locked, link),
                    Err(std::sync::TryLockError::Poisoned(p)) => {
                        release_owed(&mut p.into_inner(), link);
                    }
                    Err(std::sync::TryLockError::WouldBlock) => release_soon(&shared, link),
                }
            }
        });
        TlsSession {
            shared,
            session,
            failed: Arc::new(AtomicBool::new(false)),
            timed_out: Arc::new(AtomicBool::new(false)),
            ended: Arc::new(AtomicBool::new(false)),
            closed,
            failed_in: Arc::new(AtomicBool::new(false)),
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

    /// The cipher suite in use. Its `Debug` form is rustls's name: the IANA name for a TLS 1.2
    /// suite (`TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384`), and for a TLS 1.3 one the IANA name
    /// with `TLS13_` for its `TLS_` (`TLS13_AES_256_GCM_SHA384` for `TLS_AES_256_GCM_SHA384`).
    pub fn cipher_suite(&self) -> Option<CipherSuite> {
        self.session.cipher_suite
    }

    /// The key exchange group the handshake's keys came from: with the `aws-lc-rs` feature,
    /// `X25519MLKEM768` where the peer has it (post-quantum; see the crate docs' "Crypto
    /// provider"), else an elliptic curve (`X25519`, `secp256r1`, `secp384r1`). `None` for a
    /// resumed TLS 1.2 session, which makes no new keys.
    pub fn key_exchange_group(&self) -> Option<NamedGroup> {
        self.session.key_exchange_group
    }

    /// The certificates the peer presented, its own first; empty when it presented none.
    pub fn peer_certificates(&self) -> &[CertificateDer<'static>] {
        &self.session.peer_certificates
    }

    /// On a client, the name it gave for the server (the host given to `connect`, or
    /// [`server_name`](crate::TlsConfigBuilder::server_name)), in the form its certificate was
    /// verified against (an IPv6 literal without brackets or scope: `fe80::1`, where the host
    /// was `[fe80::1%eth0]`; an IPv4-mapped address given to `connect`, `::ffff:a.b.c.d`, as
    /// the IPv4 address it reaches, `a.b.c.d`; a DNS name in the case given, without a fully
    /// qualified name's trailing dot: `LocalHost`, where the host was `LocalHost.`); also when
    /// nothing verified it, the verification being off
    /// ([`dangerous_accept_any_server_certificate`](crate::TlsConfigBuilder::dangerous_accept_any_server_certificate))
    /// or left to a configuration's own verifier ([`TlsConfig::from_rustls`]). On a server,
    /// the name the client asked for by SNI, lower-case and without a trailing dot, if any.
    pub fn server_name(&self) -> Option<&str> {
        self.session.server_name.as_deref()
    }
}

impl fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSession")
            .field("protocol_version", &self.session.protocol_version)
            .field("cipher_suite", &self.session.cipher_suite)
            .field("key_exchange_group", &self.session.key_exchange_group)
            .field("alpn_protocol", &self.session.alpn_protocol)
            .finish_non_exhaustive()
    }
}

impl Transport for TlsSession {
    type Reader = TlsRead;
    type Writer = TlsWrite;

    fn reader(&self, link: &Link) -> Self::Reader {
        TlsRead {
            shared: Arc::clone(&self.shared),
            ended: None,
            failed_in: Arc::clone(&self.failed_in),
            closed: Arc::clone(&self.closed),
            write_ended: Arc::clone(&self.ended),
            link: link.clone(),
        }
    }

    fn writer(&self, link: &Link) -> Self::Writer {
        TlsWrite {
            shared: Arc::clone(&self.shared),
            failed: Arc::clone(&self.failed),
            timed_out: Arc::clone(&self.timed_out),
            ended: Arc::clone(&self.ended),
            closed: Arc::clone(&self.closed),
            failed_in: Arc::clone(&self.failed_in),
            link: link.clone(),
            shut_down: false,
        }
    }

    fn closing(&self, link: &Link) -> Ending {
        // Decided under the session's lock, which a write takes before rustls takes any of its
        // bytes: a write of the write channel marks itself under way before it takes the lock
        // (see `WriteState::has_unsent`), so it either is seen here, or finds `ended` set below
        // and fails having sent nothing. (Decided before the lock, a write that started in
        // between sent part of its bytes, then came `close_notify`: a clean end after part of
        // a write.)
        //
        // The peer takes our `close_notify` for the end, and may connect again at once: the
        // connection's per-address place frees before it can be sent (a plain socket's frees
        // before its FIN): below, once the socket took the records the session held before
        // it, or, when those records (or answers held back by flush coalescing) wait for the
        // socket (the connection is open until they left, as a plain one is), by the task
        // that sends them, then the records handed over below, `close_notify` last. (Under
        // the lock: no write of ours holds more meanwhile.)
        let mut locked = lock(&self.shared);
        // Answers held back above rustls come before `close_notify`, after the records rustls
        // holds (their place in the stream).
        seal_held(&mut locked, true);
        let held = link.holds_back();
        if ends_failed(&self.failed, &self.timed_out, link) {
            if !held {
                link.ending();
            }
            // No close_notify: the peer sees a truncated stream, never a clean end. The
            // session's own messages are taken in all the same (a TLS 1.3 client that never
            // read holds the server's session tickets): left unread, they make the kernel
            // answer the close with a reset, which the peer reads as `ConnectionReset`, not a
            // truncation, and which destroys what is still queued for it.
            receive_own(&mut locked.stream);
            self.closed.store(true, Ordering::Release);
            return Ending::Graceful;
        }
        #[cfg(test)]
        tests::close_decided();
        let stream = &mut locked.stream;
        // A record that fails the session here needs no report: reads fail with the close.
        receive_own(stream);
        // A session the peer failed (its fatal alert, a record that broke the protocol, taken
        // in by a read or just now) has no clean end, as a shutdown finds (`poll_shutdown`):
        // no `close_notify`, which rustls would still queue where it sent no fatal alert of
        // its own (for `MessageInterleavedWithHandshakeMessage` it sends none). What it owes
        // the peer (such an alert) still goes.
        let clean = session_failure(stream).is_none();
        self.ended.store(true, Ordering::Release);
        // From here until the socket is closed, a shutdown would find nothing left in the
        // session and send its FIN before the records taken below.
        self.closed.store(true, Ordering::Release);
        if held {
            if clean {
                stream.get_mut().1.send_close_notify();
            }
            // After the held-back answers, as the connection's last message.
            return Ending::GracefulAfter(take_owed(stream).into());
        }
        // What the session still holds of what was written goes first; what the socket does
        // not take now leaves as it drains, and the connection keeps its place until then (a
        // peer that reads nothing holds it open, its end not on its way).
        if send_owed(stream).is_err() {
            return Ending::Reset;
        }
        let written = take_owed(stream);
        if written.is_empty() {
            link.ending();
        }
        if clean {
            stream.get_mut().1.send_close_notify();
        }
        if !written.is_empty() {
            return Ending::GracefulAfterWritten(written.into(), take_owed(stream).into());
        }
        if send_owed(stream).is_err() {
            // The socket failed (the peer reset the connection): nothing more reaches the
            // peer, and a close task would only try again. The end is no clean one.
            return Ending::Reset;
        }
        // What the socket did not take at once (its send buffer is full of data on its way)
        // leaves as it drains, before the FIN: the peer must not see a truncation when
        // nothing was lost.
        let rest = take_owed(stream);
        if rest.is_empty() {
            Ending::Graceful
        } else {
            Ending::GracefulAfter(rest.into())
        }
    }
}

/// Whether the session must end without `close_notify`: a write or flush failed, or timed out
/// and nothing went through since, or the connection lost bytes (a failed socket write, a write
/// channel that holds or threw away bytes). A socket write that timed out is none of these by
/// itself: it took nothing, and rustls keeps the records it did not take, which leave with the
/// next write or flush, or with the close.
fn ends_failed(failed: &AtomicBool, timed_out: &AtomicBool, link: &Link) -> bool {
    failed.load(Ordering::Acquire) || timed_out.load(Ordering::Acquire) || link.bytes_lost()
}

/// The most bytes [`receive_own`] takes in: far more than the session's own messages a peer
/// sends in earnest (a few session tickets of a few hundred bytes each).
const OWN_INPUT_LIMIT: usize = 64 * 1024;

/// Takes in, without waiting, the records the socket holds now, as long as they carry no
/// application data: the session's own messages (a TLS 1.3 server's session tickets, which a
/// client that only writes never reads; a KeyUpdate). Before its sending ends: the kernel
/// answers the close of a socket with input left unread with a reset, which destroys what is
/// still queued for the peer (the last data, `close_notify`, the FIN). Application data
/// stays for the reader, and what comes after it in the socket is left there, as on a plain
/// socket; so is the end of stream. What comes after the peer's `close_notify` is thrown away:
/// nobody can read it.
///
/// At most [`OWN_INPUT_LIMIT`] bytes are taken in: a peer may send records without data for
/// ever (TLS 1.3 KeyUpdates, each after an empty data record, stay within rustls's limits),
/// and this runs in one go, in `close()` or a shutdown's poll, on a thread that serves other
/// connections. What is left makes the close a reset, as on a plain socket with input unread.
///
/// Returns `false` when a record taken in failed the session (a corrupted record, the peer's
/// fatal alert): rustls keeps the error but reports it only when it processes more input, so
/// the caller tells the reader (see [`TlsRead`]).
fn receive_own(stream: &mut tokio_rustls::TlsStream<RawStream>) -> bool {
    fn receive<D>(raw: &mut RawStream, session: &mut rustls::ConnectionCommon<D>) -> bool {
        /// Reads what the socket holds now, at most `.1` bytes.
        struct Now<'a>(&'a mut RawStream, usize);

        impl io::Read for Now<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let room = buf.len().min(self.1);
                match self.0.try_read(&mut buf[..room]) {
                    // Not taken in: the reader finds it.
                    Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
                    read => read,
                }
            }
        }

        // `wants_read` turns false once application data (or `close_notify`) came in.
        let mut taken = 0;
        while session.wants_read() && taken < OWN_INPUT_LIMIT {
            match session.read_tls(&mut Now(raw, OWN_INPUT_LIMIT - taken)) {
                Ok(n) if n > 0 => taken += n,
                _ => break,
            }
            // An error stays in the session for the reader; a fatal alert it owes the peer
            // goes out with the records sent next.
            if session.process_new_packets().is_err() {
                return false;
            }
        }
        // After the peer's `close_notify`, rustls reads nothing more: what follows it is no
        // data for anyone ("MUST be ignored", RFC 8446 §6.1), and, left in the socket, it
        // would make the close a reset that destroys what is still queued for the peer (our
        // last data, our `close_notify`). It is thrown away, within the same limit.
        if session
            .process_new_packets()
            .is_ok_and(|state| state.peer_has_closed())
        {
            let mut ignored = [0u8; 4096];
            while taken < OWN_INPUT_LIMIT {
                match io::Read::read(&mut Now(raw, OWN_INPUT_LIMIT - taken), &mut ignored) {
                    Ok(n) => taken += n,
                    Err(_) => break,
                }
            }
        }
        true
    }
    match stream {
        tokio_rustls::TlsStream::Client(s) => {
            let (raw, session) = s.get_mut();
            receive(raw, session)
        }
        tokio_rustls::TlsStream::Server(s) => {
            let (raw, session) = s.get_mut();
            receive(raw, session)
        }
    }
}

/// The error a failed session keeps, as a read reports it (as tokio-rustls does); `None` while
/// the session has not failed.
fn kept_error(stream: &mut tokio_rustls::TlsStream<RawStream>) -> Option<io::Error> {
    let kept = match stream {
        tokio_rustls::TlsStream::Client(s) => s.get_mut().1.process_new_packets().err(),
        tokio_rustls::TlsStream::Server(s) => s.get_mut().1.process_new_packets().err(),
    }?;
    Some(io::Error::new(io::ErrorKind::InvalidData, kept))
}

/// The error a failed session keeps, as rustls's writer reports it (`InvalidData`), without
/// processing any input; `None` while the session has not failed.
fn session_failure(stream: &mut tokio_rustls::TlsStream<RawStream>) -> Option<io::Error> {
    match stream {
        tokio_rustls::TlsStream::Client(s) => s.get_mut().1.writer().flush().err(),
        tokio_rustls::TlsStream::Server(s) => s.get_mut().1.writer().flush().err(),
    }
}

/// Whether the session has records queued for the socket.
fn wants_write(stream: &tokio_rustls::TlsStream<RawStream>) -> bool {
    match stream {
        tokio_rustls::TlsStream::Client(s) => s.get_ref().1.wants_write(),
        tokio_rustls::TlsStream::Server(s) => s.get_ref().1.wants_write(),
    }
}

/// The records `session` still has queued, taken out of it.
fn take_owed(stream: &mut tokio_rustls::TlsStream<RawStream>) -> Vec<u8> {
    fn take<D>(session: &mut rustls::ConnectionCommon<D>) -> Vec<u8> {
        let mut rest = Vec::new();
        while session.wants_write() {
            // Writing to a `Vec` cannot fail.
            if session.write_tls(&mut rest).is_err() {
                break;
            }
        }
        rest
    }
    match stream {
        tokio_rustls::TlsStream::Client(s) => take(s.get_mut().1),
        tokio_rustls::TlsStream::Server(s) => take(s.get_mut().1),
    }
}

/// Sends the records `session` has queued, as far as the socket takes them now, without waiting
/// and without taking over the wake-up of a task waiting to write; what is left goes with the
/// next write or flush.
///
/// # Errors
///
/// The socket's error, other than that it would block (then the rest simply waits).
fn send_owed(stream: &mut tokio_rustls::TlsStream<RawStream>) -> io::Result<()> {
    match stream {
        tokio_rustls::TlsStream::Client(s) => {
            let (raw, session) = s.get_mut();
            write_now(raw, session)
        }
        tokio_rustls::TlsStream::Server(s) => {
            let (raw, session) = s.get_mut();
            write_now(raw, session)
        }
    }
}

fn write_now<D>(raw: &mut RawStream, session: &mut rustls::ConnectionCommon<D>) -> io::Result<()> {
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
        match session.write_tls(&mut Now(raw)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
            Ok(_) => {}
        }
    }
    Ok(())
}

/// Hands `buf` to `session` and sends its records as far as the socket takes them in this poll,
/// as tokio-rustls's `poll_write` does, with one difference: a call whose bytes rustls took
/// never fails, since those bytes are on their way (a caller that retried a failed call would
/// send them twice). The socket's error after that is reported by the next call instead: it
/// is kept in `unreported`, for the next write, flush or shutdown to report as it was (the
/// socket would answer that one with `EPIPE`, having reported the reset once); a
/// `socket_timeout` needs nothing (the records leave with the next write or flush, or with the
/// close); any other error (the OS's `ETIMEDOUT` too: the connection is dead) marks the
/// session `failed` at once.
///
/// `waits` is set when the socket keeps the task's wakers for its room: when the call is
/// `Pending`, and when it returns what rustls took with the socket full. The caller notes the
/// task in the session then (see [`writer_waits`]), also in the second case: the next write,
/// another task's, replaces those wakers under the session's lock, and the session's note of
/// them, replaced after them and dropped once the lock is released, must be the last to go.
fn write_records<D>(
    raw: &mut RawStream,
    session: &mut rustls::ConnectionCommon<D>,
    cx: &mut Context<'_>,
    buf: &[u8],
    failed: &AtomicBool,
    unreported: &mut Option<io::Error>,
    waits: &mut bool,
) -> Poll<io::Result<usize>> {
    // Records an earlier call left queued go first: a socket that failed under them reports
    // its error here, before this call takes any of its bytes.
    if drain(raw, session, cx)? == Drained::Blocked {
        // The socket takes none of them now: this call waits for it, and hands rustls nothing
        // meanwhile. rustls would take none of the bytes over its limit, but first moves the
        // KeyUpdate reply it holds into its queue, whatever the limit, and makes a new one for
        // the peer's next KeyUpdate: a task polled again and again (its reader's wake-ups, in
        // a `join!`) would grow the queue by one reply per KeyUpdate of a peer that reads
        // nothing. A session that failed (the peer's bad record or fatal alert, taken in by a
        // read) says so at once, as rustls's writer would: the socket may never drain.
        // (rustls's `flush` only checks for that error; it queues nothing.)
        session.writer().flush()?;
        *waits = true;
        return Poll::Pending;
    }
    let mut taken = 0;
    loop {
        match session.writer().write(&buf[taken..]) {
            Ok(n) => taken += n,
            Err(e) if taken == 0 => return Poll::Ready(Err(e)),
            Err(_) => {
                // A fatal session error (the only kind rustls's writer reports): the next call
                // reports it again.
                failed.store(true, Ordering::Release);
                return Poll::Ready(Ok(taken));
            }
        }
        let socket_full = match drain(raw, session, cx) {
            Ok(drained) => drained == Drained::Blocked,
            Err(e) if taken == 0 => return Poll::Ready(Err(e)),
            Err(e) => {
                if !is_socket_timeout(&e) {
                    failed.store(true, Ordering::Release);
                    *unreported = Some(e);
                }
                return Poll::Ready(Ok(taken));
            }
        };
        if socket_full {
            *waits = true;
        }
        match (taken, socket_full) {
            (0, true) => return Poll::Pending,
            (n, true) => return Poll::Ready(Ok(n)),
            (n, false) if n == buf.len() => return Poll::Ready(Ok(n)),
            (_, false) => {}
        }
    }
}

/// [`drain`] for either side of a session.
fn drain_session(
    stream: &mut tokio_rustls::TlsStream<RawStream>,
    cx: &mut Context<'_>,
) -> io::Result<Drained> {
    match stream {
        tokio_rustls::TlsStream::Client(s) => {
            let (raw, session) = s.get_mut();
            drain(raw, session, cx)
        }
        tokio_rustls::TlsStream::Server(s) => {
            let (raw, session) = s.get_mut();
            drain(raw, session, cx)
        }
    }
}

/// How far a [`drain`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drained {
    /// Every queued record is with the socket.
    All,
    /// The socket takes no more now; the task is woken when it does.
    Blocked,
}

/// Sends the records `session` has queued as far as the socket takes them in this poll.
fn drain<D>(
    raw: &mut RawStream,
    session: &mut rustls::ConnectionCommon<D>,
    cx: &mut Context<'_>,
) -> io::Result<Drained> {
    /// The socket as rustls's `io::Write` for one poll: what it cannot take now is
    /// `WouldBlock`, with the task registered for its wake-up.
    struct Polled<'a, 'b> {
        raw: &'a mut RawStream,
        cx: &'a mut Context<'b>,
    }

    impl io::Write for Polled<'_, '_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            match Pin::new(&mut *self.raw).poll_write(self.cx, buf) {
                Poll::Ready(result) => result,
                Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
            }
        }

        // rustls hands over its queued records as one vectored write.
        fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
            match Pin::new(&mut *self.raw).poll_write_vectored(self.cx, bufs) {
                Poll::Ready(result) => result,
                Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
            }
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    let mut socket = Polled { raw, cx };
    while session.wants_write() {
        match session.write_tls(&mut socket) {
            // As tokio-rustls: a socket that took nothing is one that is full.
            Ok(0) => return Ok(Drained::Blocked),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Drained::Blocked),
            Err(e) => return Err(e),
        }
    }
    Ok(Drained::All)
}

/// The read direction of a shared TLS session.
///
/// rustls reports a stream that ends without `close_notify` as an
/// [`io::ErrorKind::UnexpectedEof`] error (the only source of that kind on a TLS read); this
/// reader keeps the kind and makes the inner error a [`Truncated`], which callers can test for.
///
/// tokio-rustls reads the socket on after it has a record to return, leaving a socket read
/// waiting; a read that returns ends it, so that `socket_timeout` counts from when the next read
/// starts waiting.
///
/// Every read after a failure reports it again, as it was: a truncation (rustls would ask the
/// socket again, which, closed meanwhile because both directions finished, would say `Closed`),
/// and an error of kind [`io::ErrorKind::ConnectionAborted`] (the kind of `SelectorClosed`, and
/// of `ECONNABORTED`), which tokio-rustls takes for the end of reading and answers with an end
/// of stream from then on (here the socket is asked again, and reports the same error).
/// Plaintext received before the failure is read first: a bad record (or the peer's fatal
/// alert) that came in one socket read with records of data fails the read that finds no
/// more of their plaintext, not the one that took them in (as tokio-rustls would).
///
/// A session failed by records that a shutdown took in (it reads what the socket holds: see
/// [`receive_own`]) fails the read that finds no more input, with that error: rustls would
/// report it only once more input came, and the read would wait for a peer that, told of the
/// failure by our fatal alert, may send nothing more. A read already waiting then is woken by
/// that shutdown, as for anything else it took in (data, `close_notify`): the socket, whose
/// input it consumed, will not wake it.
///
/// After the socket's `close`, or a cut (its selector's close, the end of a graceful shutdown's
/// grace period or of the runtime), every read fails with the close's error, as a plain socket's
/// does, also when that close took in what the socket held (before its `close_notify`): input a
/// plain socket's close would throw away is no data for a read after it.
#[doc(hidden)]
#[derive(Debug)]
pub struct TlsRead {
    shared: Shared,
    /// How reading ended, when tokio-rustls would not report it again as it was.
    ended: Option<ReadEnd>,
    /// Records a shutdown took in failed the session.
    failed_in: Arc<AtomicBool>,
    /// The socket's close began, or a cut (and may have taken in what the socket held).
    closed: Arc<AtomicBool>,
    /// `close_notify` is queued: nothing may be sent after it.
    write_ended: Arc<AtomicBool>,
    /// The connection, told when this reader is gone.
    link: Link,
}

impl Drop for TlsRead {
    /// Records held back while this reader had requests pending leave now: the socket's read
    /// half lives on in the session, so its own drop does not say that no reader is left. The
    /// session lets go of the waker of this reader's last wait (which would keep its task's
    /// memory for as long as the socket lives), once the lock is released (see `poll_read`).
    /// Not while the session is held, as [`TlsWrite`]'s drop: this drop may come from a task
    /// dropped by a wake-up that the holder made (a shutdown whose socket closes as it ends
    /// the connection wakes the tasks waiting for that close), or from a waker it drops. The
    /// waker then stays, to be woken for nothing or replaced.
    ///
    /// Plaintext held back while this reader had requests pending ([`Locked::plain`]) is sealed
    /// and leaves now too; while another holds the session, a task of the selector's runtime
    /// releases it once the session is free (see [`release_soon`]): at that runtime's next
    /// turn, so not while it does not run (a current-thread runtime between two `block_on`s).
    fn drop(&mut self) {
        let reader = match self.shared.try_lock() {
            Ok(mut locked) => {
                release_held(&mut locked, &self.link);
                locked.reader.take()
            }
            Err(std::sync::TryLockError::Poisoned(p)) => {
                let mut locked = p.into_inner();
                release_held(&mut locked, &self.link);
                locked.reader.take()
            }
            Err(std::sync::TryLockError::WouldBlock) => {
                release_soon(&self.shared, &self.link);
                None
            }
        };
        drop(reader);
        self.link.reader_gone();
    }
}

/// An end of a [`TlsRead`] (a failure, or the peer's clean end) that it reports again itself.
#[derive(Clone, Debug, PartialEq)]
enum ReadEnd {
    /// The peer's `close_notify` was read: every later read finds the end again (`Ok` with
    /// nothing read), also after the socket's close, as a plain socket's read does.
    Clean,
    /// The peer ended the stream without `close_notify`.
    Truncated,
    /// The socket failed with `ConnectionAborted`.
    Aborted,
    /// The socket failed with this OS error (the peer's reset): reported again by every later
    /// read, also after the socket's close, as a plain socket's read does.
    Os(i32),
    /// The session failed (a corrupted record, the peer's fatal alert): rustls keeps its
    /// error but does not report it again, and would wait for more input instead.
    Failed(rustls::Error),
}

/// Reads what the session has for the application into `buf`, as tokio-rustls's `poll_read`
/// does (once it has plaintext, it reads on while the socket has records, to fill `buf`; but
/// not once a read drained the socket, where tokio-rustls polls it once more to be told to
/// wait), but for one error: a `socket_timeout` met by a read after plaintext is dropped, not
/// kept for the next call as any other error of such a read is (in `kept`: the next call
/// returns the plaintext the session still holds first, as does a call whose session fails on
/// records after some with plaintext, see [`held_plaintext`]). That timeout is a
/// deadline that passed while the task was late to run, the records having come in time: this
/// read returns plaintext, which restarts the timeout, so the next read must wait afresh, not
/// fail at once.
///
/// `waits` is set when a read on after plaintext found nothing: the call returns that
/// plaintext, but the socket keeps the task's wakers for its input, as for a read that waits
/// (the caller notes the task in the session then too, see [`TlsRead`]'s `poll_read`).
fn read_session(
    stream: &mut tokio_rustls::TlsStream<RawStream>,
    kept: &mut Option<io::Error>,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
    waits: &mut bool,
) -> Poll<io::Result<()>> {
    if let Some(e) = kept.take() {
        if held_plaintext(stream, buf) > 0 {
            *kept = Some(e);
            return Poll::Ready(Ok(()));
        }
        return Poll::Ready(Err(e));
    }
    let mut stream = Pin::new(stream);
    let data = match ready!(stream.as_mut().poll_fill_buf(cx)) {
        Ok(data) => data,
        Err(e) => {
            // The session failed on a record that came in one socket read with records before
            // it: their plaintext, which rustls keeps, comes first (tokio-rustls reports the
            // failure at once), and the failure with the read after the last of it.
            if held_plaintext(stream.as_mut().get_mut(), buf) > 0 {
                *kept = Some(e);
                return Poll::Ready(Ok(()));
            }
            return Poll::Ready(Err(e));
        }
    };
    let n = data.len().min(buf.remaining());
    buf.put_slice(&data[..n]);
    stream.as_mut().consume(n);
    while n > 0 && buf.remaining() > 0 {
        if stream.get_ref().1.wants_read() && stream.get_ref().0.drained() {
            // rustls holds no more plaintext, and the socket has nothing now: reading on
            // would only wait.
            break;
        }
        let data = match stream.as_mut().poll_fill_buf(cx) {
            Poll::Ready(Ok([])) => break,
            Poll::Pending => {
                *waits = true;
                break;
            }
            Poll::Ready(Ok(data)) => data,
            Poll::Ready(Err(e)) => {
                if !is_socket_timeout(&e) {
                    *kept = Some(e);
                }
                break;
            }
        };
        let n = data.len().min(buf.remaining());
        buf.put_slice(&data[..n]);
        stream.as_mut().consume(n);
    }
    Poll::Ready(Ok(()))
}

/// Moves what plaintext the session holds into `buf`, without reading the socket; how many
/// bytes (none when the session holds none, whatever its state).
fn held_plaintext(stream: &mut tokio_rustls::TlsStream<RawStream>, buf: &mut ReadBuf<'_>) -> usize {
    fn take<D>(session: &mut rustls::ConnectionCommon<D>, buf: &mut ReadBuf<'_>) -> usize {
        let n = io::Read::read(&mut session.reader(), buf.initialize_unfilled()).unwrap_or(0);
        buf.advance(n);
        n
    }
    match stream {
        tokio_rustls::TlsStream::Client(s) => take(s.get_mut().1, buf),
        tokio_rustls::TlsStream::Server(s) => take(s.get_mut().1, buf),
    }
}

/// Whether `e` is the socket's `socket_timeout` (not an error of the OS's).
fn is_socket_timeout(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::TimedOut
        && e.get_ref()
            .and_then(|inner| inner.downcast_ref::<net_io::Error>())
            .is_some_and(|inner| matches!(inner, net_io::Error::Timeout))
}

/// The error of a read that found the stream truncated.
fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, Truncated)
}

/// After a read's poll: sends what reading made the session owe the peer, and ends the read's
/// socket wait when the read is `done`.
///
/// tokio-rustls writes only on write or flush: what reading made the session owe the peer (a
/// KeyUpdate reply, or a fatal alert for a bad record) is sent now, so a connection that only
/// reads still answers. rustls holds a KeyUpdate reply back until the next application data: a
/// write of nothing queues it (and no record of its own), unless `close_notify` was queued
/// (`write_ended`), after which nothing may follow. It is queued only once what the session
/// queued before has left the socket: a write of nothing queues the reply past rustls's buffer
/// limit, and rustls, which holds one reply at a time and makes no other while it holds one,
/// would make a new one for each KeyUpdate the peer sends, so that a peer that asks for update
/// after update and reads nothing would grow the session's queue without bound. (Our next
/// write, or `close_notify`, takes the reply rustls holds.) rustls makes a reply only as it
/// takes in records, which only come with input: the write of nothing is made once after input
/// came (`unanswered`, set by any socket read that returned something, in this poll or an
/// earlier one, even when the poll then waits), not on every poll (a poll whose socket reads
/// all found nothing took in no records).
fn answer_owed<D>(
    raw: &mut RawStream,
    session: &mut rustls::ConnectionCommon<D>,
    unanswered: &mut bool,
    write_ended: bool,
    done: bool,
) {
    *unanswered |= raw.took_input();
    if session.wants_write() {
        // A socket that failed fails the next write or flush too.
        let _ = write_now(raw, session);
    }
    if *unanswered && !write_ended && !session.wants_write() {
        *unanswered = false;
        let _ = session.writer().write(&[]);
        if session.wants_write() {
            let _ = write_now(raw, session);
        }
    }
    if done {
        raw.read_done();
    }
}

impl AsyncRead for TlsRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            // Nothing to read into: done at once, as tokio's own reads are.
            return Poll::Ready(Ok(()));
        }
        match &this.ended {
            Some(ReadEnd::Clean) => return Poll::Ready(Ok(())),
            Some(ReadEnd::Truncated) => return Poll::Ready(Err(truncated())),
            Some(ReadEnd::Failed(e)) => {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e.clone())));
            }
            Some(ReadEnd::Os(code)) => {
                return Poll::Ready(Err(io::Error::from_raw_os_error(*code)));
            }
            _ => {}
        }
        let mut locked = lock(&this.shared);
        if !locked.plain.is_empty() && !this.closed.load(Ordering::Acquire) {
            // The reader reads again, with no request pending: the answers held back above
            // rustls are sealed, as one record, and leave (as held-back answers leave when the
            // reader is about to wait).
            release_held(&mut locked, &this.link);
        }
        let Locked {
            stream,
            reader,
            kept,
            unanswered,
            writer,
            ..
        } = &mut *locked;
        if this.closed.load(Ordering::Acquire) {
            // What the close took in, to spare the connection a reset, is input a plain
            // socket's close throws away: a read after it fails as there, with the close's error.
            let e = stream.get_ref().0.check_open().err();
            return Poll::Ready(Err(e.unwrap_or_else(|| net_sockets::Error::Closed.into())));
        }
        if this.ended == Some(ReadEnd::Aborted) {
            // The socket reports its failure again (a closed socket, or the OS error it kept);
            // what it would give otherwise is no plaintext either.
            let mut scratch = [0u8; 1];
            let again =
                Pin::new(&mut stream.get_mut().0).poll_read(cx, &mut ReadBuf::new(&mut scratch));
            return match again {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                _ => Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into())),
            };
        }
        // tokio-rustls's read may write (a last try at a fatal alert): not with this task's
        // wake-up, which would take over the writer's.
        stream.get_mut().0.reading(true);
        let before = buf.filled().len();
        // A read into no room reads nothing without meaning the end.
        let room = buf.remaining() > 0;
        let mut waits = false;
        let mut read = read_session(stream, kept, cx, buf, &mut waits);
        stream.get_mut().0.reading(false);
        if read.is_pending() && this.failed_in.load(Ordering::Acquire) {
            // Waiting, though the session failed on records a shutdown took in.
            if let Some(e) = kept_error(stream) {
                read = Poll::Ready(Err(e));
            }
        }
        // For a shutdown that takes in the input this read waits for (the same task's waker,
        // as nearly always, is not stored again). The one it replaces (another task's) goes
        // once the lock is released: it may be its task's last reference, and that task's drop
        // may close this socket, whose close takes the lock. Also for a read that returns
        // plaintext but left its task's wakers with the socket (it read on, and found nothing):
        // the next read, another task's, replaces those under the lock, so this note of them,
        // replaced after them and dropped once the lock is released, must be the last to go.
        let stands = reader
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()));
        let replaced = if (read.is_pending() || waits) && !stands {
            reader.replace(cx.waker().clone())
        } else {
            None
        };
        let write_ended = this.write_ended.load(Ordering::Acquire);
        match stream {
            tokio_rustls::TlsStream::Client(s) => {
                let (raw, session) = s.get_mut();
                answer_owed(raw, session, unanswered, write_ended, read.is_ready());
            }
            tokio_rustls::TlsStream::Server(s) => {
                let (raw, session) = s.get_mut();
                answer_owed(raw, session, unanswered, write_ended, read.is_ready());
            }
        }
        // A read that failed, or keeps a failure for the next read: the session may have failed
        // for good, and a write or flush waiting for the socket would wait on for a peer that
        // may never read again. Woken, it fails with the session's error (or, for any other
        // failure, waits again). The note stays: the socket keeps that task's wakers too,
        // which the next write or flush, another task's, replaces under the lock; the note,
        // replaced after them and dropped once the lock is released, must be the last of them
        // to go (see `writer_waits`).
        let waiting_writer = if matches!(read, Poll::Ready(Err(_))) || kept.is_some() {
            writer.clone()
        } else {
            None
        };
        let ended = matches!(read, Poll::Ready(Ok(()))) && room && buf.filled().len() == before;
        if ended {
            // The peer's `close_notify`: what came after it is thrown away (see
            // `receive_own`), since the socket may close itself below (our write side done
            // too), and input left unread would make the kernel answer that close with a
            // reset that destroys what is still queued for the peer (our last data, our
            // `close_notify`).
            receive_own(stream);
        }
        drop(locked);
        drop(replaced);
        if let Some(writer) = waiting_writer {
            writer.wake();
        }
        if let Poll::Ready(result) = &read {
            if result.is_err() || ended {
                // The end of the stream (or a failure), which rustls may report without a read
                // from the socket (a `close_notify` that came with the last records): the
                // reader never waits again, so what was held back for it leaves now.
                this.link.reader_gone();
            }
            if ended {
                // The peer's `close_notify`: rustls reads nothing more, so the socket's own
                // end is never read. The read direction is done (with the write channel closed
                // too, the socket closes itself, as a plain one does).
                this.link.read_ended();
                this.ended = Some(ReadEnd::Clean);
            }
        }
        match read {
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                this.ended = Some(ReadEnd::Truncated);
                Poll::Ready(Err(truncated()))
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::ConnectionAborted => {
                this.ended = Some(ReadEnd::Aborted);
                Poll::Ready(Err(e))
            }
            Poll::Ready(Err(e)) if e.raw_os_error().is_some() => {
                // The socket's own failure, final (as the socket's read half keeps it): a
                // close after it must not turn it into the close's error.
                this.ended = e.raw_os_error().map(ReadEnd::Os);
                Poll::Ready(Err(e))
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
                if let Some(tls) = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
                    this.ended = Some(ReadEnd::Failed(tls.clone()));
                    // Writes fail with it, those the write channel would only buffer too.
                    let failed = tls.clone();
                    this.link.session_failed(move || {
                        io::Error::new(io::ErrorKind::InvalidData, failed.clone())
                    });
                }
                Poll::Ready(Err(e))
            }
            other => other,
        }
    }
}

/// The write direction of a shared TLS session; a failure marks the session failed.
///
/// A write that fails took none of its bytes, so retrying it after a `Timeout` sends each byte
/// once; a write or flush that succeeds ends any socket write it left waiting, so that
/// `socket_timeout` counts from when the next one starts waiting.
///
/// A write or flush that times out leaves the session as it was before the call: rustls took
/// none of the write's bytes, and keeps every record the socket has not taken, up to the byte
/// (it hands the socket its queue and drops only what the socket took). So a timeout does not
/// fail the session for good, as on a plain socket: the session ends without `close_notify`
/// only until a later write goes through (rustls takes its bytes: the retry, or whatever the
/// caller writes instead) or a flush does (`poll_shutdown` flushes first, as tokio's contract
/// has it). A shutdown that times out is such a flush too, also once its `close_notify` is
/// queued: its retry sends the records left, `close_notify` last. Any other failure is for
/// good.
///
/// A write after `close_notify` (from `poll_shutdown` or the socket's `close`), once the
/// socket is closed, or once a read reported the socket's failure (the peer's reset: then with
/// `EPIPE`, as a plain socket's send, and so does a shutdown, unless ours went through
/// before or the socket's close came since), fails before rustls takes anything: its bytes
/// could never reach the peer. A write
/// whose bytes rustls took and that met the socket's failure succeeds; the next write, flush
/// or shutdown reports that error, and every write after it fails with `EPIPE`, a write of
/// nothing too, as on a plain socket. Once the session failed (the peer's fatal alert, or a
/// corrupted record, taken in by a read), a write, flush or shutdown fails with that error
/// (`InvalidData`), as rustls's writer reports it; the shutdown sends nothing. A write, flush or
/// shutdown waiting for the socket then (in another task) is woken by the read that finds the
/// failure, and fails with it: it would otherwise wait for a peer that may never read again.
/// A flush after the socket's close fails with the close's error; a shutdown once the socket's
/// close began fails with its error (`Closed`, or `SelectorClosed` after its selector's close),
/// whatever failed before (the peer's reset, a failed write, the session's failure), and sends
/// nothing: that close sends the session's last records, then the FIN. Once this
/// writer's own shutdown went through, a flush and another shutdown stay `Ok`, also after the
/// close, as on a plain socket: the end was made.
#[doc(hidden)]
#[derive(Debug)]
pub struct TlsWrite {
    shared: Shared,
    failed: Arc<AtomicBool>,
    ended: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
    timed_out: Arc<AtomicBool>,
    /// Records a shutdown took in failed the session: the reader reports it.
    failed_in: Arc<AtomicBool>,
    /// Whether the connection's writes failed, or its write channel lost bytes.
    link: Link,
    /// This writer's own `poll_shutdown` completed: a later write fails with `BrokenPipe`, as
    /// on a plain socket, also once the socket closed itself (the peer's end read too).
    shut_down: bool,
}

impl Drop for TlsWrite {
    /// The session lets go of the waker of this writer's last wait (which would keep its
    /// task's memory for as long as the socket lives), dropped once the lock is released. Not
    /// while the session is held: this drop may come from a waker the holder drops (a read
    /// that renews the waker of a task that owned the write channel), or from the socket's
    /// close under way on this thread. The waker then stays, to be woken for nothing or
    /// replaced.
    fn drop(&mut self) {
        let writer = match self.shared.try_lock() {
            Ok(mut locked) => locked.writer.take(),
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().writer.take(),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        drop(writer);
    }
}

impl TlsWrite {
    /// A write refused before rustls took anything, on a connection known to be dead: fails
    /// the session (see [`check`](Self::check)). Out of line: the common write never comes here.
    #[cold]
    #[inline(never)]
    fn refuse(&self, e: io::Error) -> Poll<io::Result<usize>> {
        self.check(Poll::Ready(Err(e)))
    }

    /// After a write or flush: a `socket_timeout` is made good by the next call that goes
    /// through; any other failure (the OS's `ETIMEDOUT` too) fails the session for good.
    fn check<T>(&self, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match &result {
            Poll::Ready(Ok(_)) => {
                if self.timed_out.load(Ordering::Acquire) {
                    self.timed_out.store(false, Ordering::Release);
                }
            }
            Poll::Ready(Err(e)) if is_socket_timeout(e) => {
                self.timed_out.store(true, Ordering::Release);
            }
            Poll::Ready(Err(_)) => self.failed.store(true, Ordering::Release),
            Poll::Pending => {}
        }
        result
    }

    /// After a shutdown: a `socket_timeout` is a flush's (the shutdown sends what the session
    /// holds, `close_notify` last, and rustls keeps every record the socket did not take), made
    /// good by a retry, whose flush sends them; any other failure fails the session for good.
    /// (Writes fail either way once `close_notify` is queued: nothing may follow it.)
    fn check_shutdown(&self, result: Poll<io::Result<()>>) -> Poll<io::Result<()>> {
        match &result {
            Poll::Ready(Err(e)) if is_socket_timeout(e) => {
                self.timed_out.store(true, Ordering::Release);
            }
            Poll::Ready(Err(_)) => self.failed.store(true, Ordering::Release),
            _ => {}
        }
        result
    }
}

/// After a write or flush: one that succeeded is over, whatever socket write it left waiting.
fn write_done<T>(stream: &mut tokio_rustls::TlsStream<RawStream>, result: &Poll<io::Result<T>>) {
    if let Poll::Ready(Ok(_)) = result {
        stream.get_mut().0.write_done();
    }
}

impl AsyncWrite for TlsWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.shut_down {
            // Our own shutdown went first (the socket may have closed itself since, the
            // peer's end read too): the error of a write after a shutdown, as on a plain socket.
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "written after close_notify was sent",
            )));
        }
        let mut locked = lock_for_writing(&self.shared);
        // Nothing written after close_notify or the socket's close can reach the peer: fail
        // before rustls takes the bytes (it would, and the call would succeed). An empty write
        // too, as on a plain socket.
        if let Err(e) = locked.stream.get_ref().0.check_open() {
            return Poll::Ready(Err(e));
        }
        // Nor on a connection known to be dead: rustls would take the bytes, and the call
        // succeed, though they can never be sent.
        if let Some(e) = locked.dead() {
            drop(locked);
            return self.refuse(e);
        }
        if self.ended.load(Ordering::Acquire) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "written after close_notify was sent",
            )));
        }
        if buf.is_empty() {
            // Once the session failed (the peer's fatal alert, a corrupted record, taken in by
            // a read), a write of nothing fails with that error too, as a write of bytes does
            // (and as a plain socket's write of nothing does once a read reported its reset).
            // Otherwise it is the socket's write of nothing: `EPIPE` once a send of the
            // session's records met the socket's failure (the peer's reset), as a write of
            // bytes gets then, from the records left queued.
            return match session_failure(&mut locked.stream) {
                Some(e) => {
                    drop(locked);
                    self.check(Poll::Ready(Err(e)))
                }
                None => Pin::new(&mut locked.stream.get_mut().0).poll_write(cx, buf),
            };
        }
        if self.link.defers_writes() && locked.plain.len() + buf.len() <= PLAIN_LIMIT {
            // Flush coalescing: the reader has requests still to read, so this answer waits
            // above rustls, to be sealed with the rest of the burst's as one record (see
            // `Locked::plain`).
            locked.plain.extend_from_slice(buf);
            write_done(&mut locked.stream, &Poll::Ready(Ok(())));
            drop(locked);
            return self.check(Poll::Ready(Ok(buf.len())));
        }
        let mut waits = false;
        let result = if !locked.plain.is_empty() && locked.plain.len() + buf.len() <= PLAIN_LIMIT {
            // Not held back any more: the answers held back and this one leave now, sealed as
            // one record. rustls takes them (what its full queue does not take stays held, for
            // the flush that follows, and goes first); the socket takes the records as far as
            // it can, as `write_records` has it (a failure after the bytes were taken is the
            // next call's to report).
            locked.plain.extend_from_slice(buf);
            seal_held(&mut locked, false);
            match drain_session(&mut locked.stream, cx) {
                Ok(drained) => waits = drained == Drained::Blocked,
                Err(e) => {
                    if !is_socket_timeout(&e) {
                        self.failed.store(true, Ordering::Release);
                        locked.unreported = Some(e);
                    }
                }
            }
            Poll::Ready(Ok(buf.len()))
        } else {
            if !locked.plain.is_empty() {
                // What was held back goes first.
                locked = match seal_first(locked, cx) {
                    Ok(locked) => locked,
                    Err(None) => return Poll::Pending,
                    Err(Some(e)) => return self.check(Poll::Ready(Err(e))),
                };
            }
            let Locked {
                stream, unreported, ..
            } = &mut *locked;
            // rustls directly, not tokio-rustls's `poll_write`: that one reports the socket's
            // error from a call whose bytes rustls already took.
            match stream {
                tokio_rustls::TlsStream::Client(s) => {
                    let (raw, session) = s.get_mut();
                    write_records(raw, session, cx, buf, &self.failed, unreported, &mut waits)
                }
                tokio_rustls::TlsStream::Server(s) => {
                    let (raw, session) = s.get_mut();
                    write_records(raw, session, cx, buf, &self.failed, unreported, &mut waits)
                }
            }
        };
        write_done(&mut locked.stream, &result);
        // Also after a write that returns what rustls took with the socket full, whose task's
        // wakers the socket keeps (see `write_records`).
        let replaced = if waits {
            writer_waits(&mut locked, cx)
        } else {
            None
        };
        drop(locked);
        drop(replaced);
        self.check(result)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.shut_down {
            // Our own shutdown went through: everything, `close_notify` last, went to the
            // socket, and nothing can be written since. `Ok`, as on a plain socket, also once
            // the socket closed.
            return Poll::Ready(Ok(()));
        }
        let mut locked = lock_for_writing(&self.shared);
        // After our own close of the socket, the close's error, as on a plain socket (after a
        // cut, the flush below fails with it):
        // no write failed, so the session is not failed by it (a shutdown after it reports the
        // close too, not a failed write).
        if self.closed.load(Ordering::Acquire) {
            if let Err(e) = locked.stream.get_ref().0.check_open() {
                return Poll::Ready(Err(e));
            }
        }
        if let Some(e) = locked.unreported.take() {
            // See `poll_write` (the session failed already).
            drop(locked);
            return Poll::Ready(Err(e));
        }
        // Held back, the reader still having requests pending.
        if !locked.plain.is_empty() {
            if self.link.defers_writes() {
                #[cfg(test)]
                tests::flush_deferred();
            } else {
                // Not held back: what was held back goes first, as one record.
                locked = match seal_first(locked, cx) {
                    Ok(locked) => locked,
                    Err(None) => return Poll::Pending,
                    Err(Some(e)) => return self.check(Poll::Ready(Err(e))),
                };
            }
        }
        let stream = &mut locked.stream;
        let result = Pin::new(&mut *stream).poll_flush(cx);
        write_done(stream, &result);
        let replaced = if result.is_pending() {
            writer_waits(&mut locked, cx)
        } else {
            None
        };
        drop(locked);
        drop(replaced);
        self.check(result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.shut_down {
            // Done before (the end was made): `Ok` again, as on a plain socket, also once the
            // socket closed.
            return Poll::Ready(Ok(()));
        }
        // Once the socket's close began (ours, a cut, the selector's), the close's error, as a
        // write (of nothing too) and a flush get then, whatever failed before (the peer's
        // reset, a failed write, the session's failure): that close sends the session's last
        // records, or decided not to. (Also while that close is still under way.)
        let open = lock_for_writing(&self.shared)
            .stream
            .get_ref()
            .0
            .check_open();
        if let Err(e) = open {
            return Poll::Ready(Err(e));
        }
        if self.closed.load(Ordering::Acquire) {
            return Poll::Ready(Err(net_sockets::Error::Closed.into()));
        }
        // A shutdown is a flush first (tokio's contract; `AsyncWriteExt::shutdown` does not
        // flush before it): a write that timed out took nothing, and the flush that sends what
        // the session holds makes it good, as on a plain socket. (A flush that times out again
        // fails this shutdown with that timeout, which a retry may make good.)
        if self.timed_out.load(Ordering::Acquire) && !self.failed.load(Ordering::Acquire) {
            ready!(self.as_mut().poll_flush(cx))?;
        }
        // The socket's error a write met after rustls took its bytes (see `poll_write`); or,
        // once a read reported the socket's failure, the error a plain socket's shutdown
        // reports then, every time. Not after our own shutdown went through: the end was
        // made before the connection died (a plain socket's shutdown stays `Ok` then).
        let dead = if self.shut_down {
            None
        } else {
            lock_for_writing(&self.shared).dead()
        };
        if let Some(e) = dead {
            return self.check_shutdown(Poll::Ready(Err(e)));
        }
        // As the socket's close: no close_notify once bytes are missing (a write channel that
        // holds or lost some, a write cut short).
        if ends_failed(&self.failed, &self.timed_out, &self.link) {
            // A write or flush failed with the session's own failure (the peer's fatal alert,
            // a corrupted record): the shutdown reports that error, as they did.
            if !self.ended.load(Ordering::Acquire) {
                if let Some(e) = session_failure(&mut lock_for_writing(&self.shared).stream) {
                    return Poll::Ready(Err(e));
                }
            }
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "an earlier write failed; the session ends without close_notify",
            )));
        }
        let mut locked = lock_for_writing(&self.shared);
        if self.closed.load(Ordering::Acquire) {
            // The socket's close sends the session's last records and the FIN: the error of a
            // shutdown after the close (`SelectorClosed` after a cut by the selector), also while
            // that close is still under way (it may have begun since the check above).
            let e = locked.stream.get_ref().0.check_open().err();
            return Poll::Ready(Err(e.unwrap_or_else(|| net_sockets::Error::Closed.into())));
        }
        // What flush coalescing held back above rustls comes before `close_notify`.
        locked = match seal_first(locked, cx) {
            Ok(locked) => locked,
            Err(None) => return Poll::Pending,
            Err(Some(e)) => return self.check_shutdown(Poll::Ready(Err(e))),
        };
        let mut woken = None;
        if !self.ended.load(Ordering::Acquire) {
            // A session that failed before this shutdown (the peer's fatal alert, a corrupted
            // record, taken in by a read) can end in no clean way: the shutdown fails with that
            // error and sends nothing, as a write or flush does (rustls's writer reports it),
            // and as a shutdown after a read reported the peer's reset does.
            if let Some(e) = session_failure(&mut locked.stream) {
                drop(locked);
                return self.check_shutdown(Poll::Ready(Err(e)));
            }
            if !receive_own(&mut locked.stream) {
                // The FIN must not be followed by a close answered with a reset; what failed
                // the session on the way is the reader's to report.
                self.failed_in.store(true, Ordering::Release);
            }
            // What was taken in (data, `close_notify`, a failure) may be what a waiting read
            // waits for, and the socket will not tell it. The note stays: the socket keeps that
            // task's wakers too, which the next read, another task's, replaces under the lock;
            // the note, replaced after them and dropped once the lock is released, must be the
            // last of them to go (see `TlsRead`'s `poll_read`).
            woken = locked.reader.clone();
        } else if !self.shut_down {
            // Polled again, waiting for the socket to take the last records and
            // `close_notify`, after a read found the session failed (and woke this task): no
            // clean end can come of it, and the peer may never read again. (Once the shutdown
            // went through, the end was made: it stays `Ok`.)
            if let Some(e) = session_failure(&mut locked.stream) {
                drop(locked);
                return self.check_shutdown(Poll::Ready(Err(e)));
            }
        }
        self.ended.store(true, Ordering::Release);
        let mut result = Poll::Ready(Ok(()));
        if self.link.input_ended() {
            // This shutdown ends the connection (its socket closes once the FIN is sent): its
            // per-address place frees before the peer can see our `close_notify`, as in
            // `closing`; but only once the records the session holds before it are with the
            // socket. Until then the connection is open, its end not on its way: a peer that
            // reads nothing would hold it open, with this shutdown pending, and connect again
            // with its place free.
            result = match drain_session(&mut locked.stream, cx) {
                Ok(Drained::All) => {
                    self.link.ending();
                    Poll::Ready(Ok(()))
                }
                Ok(Drained::Blocked) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            };
        }
        if let Poll::Ready(Ok(())) = result {
            result = Pin::new(&mut locked.stream).poll_shutdown(cx);
        }
        let replaced = if result.is_pending() {
            writer_waits(&mut locked, cx)
        } else {
            None
        };
        drop(locked);
        drop(replaced);
        if let Some(reader) = woken {
            reader.wake();
        }
        if let Poll::Ready(Ok(())) = &result {
            self.shut_down = true;
        }
        self.check_shutdown(result)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use net_sockets::{SelectorManager, a_socket};

    use super::*;

    thread_local! {
        /// Run by this thread's next `closing` once it decided whether to send `close_notify`.
        static CLOSE_DECIDED: RefCell<Option<Box<dyn FnOnce()>>> = const { RefCell::new(None) };
        /// Run by this thread's next flush that found answers held back, the reader having
        /// requests pending, while it holds the session.
        static FLUSH_DEFERRED: RefCell<Option<Box<dyn FnOnce()>>> = const { RefCell::new(None) };
    }

    /// The seam in `poll_flush`: runs the hook this thread set, if any.
    pub(super) fn flush_deferred() {
        if let Some(hook) = FLUSH_DEFERRED.with(|hook| hook.borrow_mut().take()) {
            hook();
        }
    }

    /// The seam in `closing`: runs the hook this thread set, if any.
    pub(super) fn close_decided() {
        if let Some(hook) = CLOSE_DECIDED.with(|hook| hook.borrow_mut().take()) {
            hook();
        }
    }

    /// A TLS connection over loopback: (client, server).
    async fn tls_pair(selector: &SelectorManager) -> (TlsSocket, TlsSocket) {
        pair_across(selector, selector, &configs()).await
    }

    /// A TLS connection over loopback whose client's configuration `client` makes from the
    /// server's certificate (DER, for `localhost` and `127.0.0.1`): (client, server).
    async fn tls_pair_with(
        selector: &SelectorManager,
        client: impl FnOnce(CertificateDer<'static>) -> TlsConfig,
    ) -> (TlsSocket, TlsSocket) {
        pair_across(selector, selector, &configs_with(client)).await
    }

    /// A server configuration with a certificate for `localhost` and `127.0.0.1`, and the
    /// client's, which `client` makes from that certificate (DER).
    fn configs_with(
        client: impl FnOnce(CertificateDer<'static>) -> TlsConfig,
    ) -> (TlsConfig, TlsServerConfig) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let server = TlsServerConfig::builder()
            .certificate_chain_pem(cert.pem().as_bytes())
            .unwrap()
            .private_key_pem(key.serialize_pem().as_bytes())
            .unwrap()
            .build()
            .unwrap();
        (client(cert.der().clone()), server)
    }

    /// Both sides report the key exchange their handshake made, the one the crate's provider
    /// prefers: with `aws-lc-rs`, the post-quantum hybrid `X25519MLKEM768`; with `ring`, which
    /// has none, X25519 (rustls 0.23.48's `ring` provider puts P-384 first, at about 12 times
    /// the cost: this crate orders them as before).
    #[tokio::test]
    async fn both_sides_report_the_key_exchange_the_provider_prefers() {
        let selector = SelectorManager::new();
        let (client, server) = tls_pair(&selector).await;
        let group = client.key_exchange_group();
        assert_eq!(group, server.key_exchange_group());
        if cfg!(feature = "aws-lc-rs") {
            assert_eq!(group, Some(NamedGroup::X25519MLKEM768));
        } else {
            assert_eq!(group, Some(NamedGroup::X25519));
        }
        let debug = format!("{:?}", *client);
        assert!(
            debug.contains(&format!("key_exchange_group: {group:?}")),
            "{debug}"
        );
    }

    /// A client whose provider has no post-quantum key exchange (X25519 alone, as many peers
    /// have today) still connects to the server, on X25519, and both sides say so.
    #[tokio::test]
    async fn a_client_without_post_quantum_key_exchange_connects_on_an_elliptic_curve() {
        let selector = SelectorManager::new();
        let (client, server) = tls_pair_with(&selector, |certificate| {
            let mut provider = Arc::unwrap_or_clone(crate::crypto_provider());
            provider
                .kx_groups
                .retain(|group| group.name() == NamedGroup::X25519);
            let mut roots = rustls::RootCertStore::empty();
            roots.add(certificate).unwrap();
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            TlsConfig::from_rustls(Arc::new(config))
        })
        .await;
        assert_eq!(client.key_exchange_group(), Some(NamedGroup::X25519));
        assert_eq!(server.key_exchange_group(), Some(NamedGroup::X25519));
    }

    /// A close (another thread's) that decided on `close_notify` because no write was under
    /// way, and a write of the write channel that starts right then: the close must not send
    /// `close_notify` after part of that write. The peer must see none of the write then
    /// `close_notify`, or the write cut short without it (a truncation), never part of it then
    /// a clean end. The close pauses just after it decided (a seam in `closing`), the write
    /// starts meanwhile, and the peer stops reading once it has some bytes of it, so that the
    /// rest cannot follow before the close goes on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_that_starts_as_the_close_decided_is_never_ended_by_close_notify() {
        // More than loopback's socket buffers hold: the write cannot end while the peer waits.
        const LEN: usize = 16 * 1024 * 1024;
        for server_writes in [true, false] {
            let selector = SelectorManager::new();
            let (client, server) = tls_pair(&selector).await;
            let (mut writing, mut peer) = if server_writes {
                (server, client)
            } else {
                (client, server)
            };
            let mut output = writing.open_write_channel(true).unwrap();
            let mut input = peer.open_read_channel().unwrap();
            let writing = Arc::new(writing);
            // The peer reads some bytes, says so, waits for `resume`, then reads to the end.
            let read = Arc::new(AtomicUsize::new(0));
            let (resume, resumed) = tokio::sync::oneshot::channel::<()>();
            let reader = tokio::spawn({
                let read = Arc::clone(&read);
                async move {
                    let mut buf = vec![0; 64 * 1024];
                    let mut resumed = Some(resumed);
                    loop {
                        match input.read_available(&mut buf).await {
                            Ok(0) => return None,
                            Ok(n) => {
                                read.fetch_add(n, Ordering::SeqCst);
                            }
                            Err(e) => return Some(format!("{e:?}")),
                        }
                        if let Some(resumed) = resumed.take() {
                            let _ = resumed.await;
                        }
                    }
                }
            });
            // The close, paused once it decided until `go`.
            let (decided, has_decided) = mpsc::channel();
            let (go, wait_go) = mpsc::channel::<()>();
            let closer = std::thread::spawn({
                let writing = Arc::clone(&writing);
                move || {
                    CLOSE_DECIDED.with(|hook| {
                        *hook.borrow_mut() = Some(Box::new(move || {
                            let _ = decided.send(());
                            let _ = wait_go.recv_timeout(Duration::from_secs(5));
                        }));
                    });
                    writing.close();
                }
            });
            has_decided
                .recv_timeout(Duration::from_secs(5))
                .expect("the close decided");
            // The write, on a thread of its own: it may wait for the session the paused close
            // holds.
            let writer = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async move { output.write_fully(&vec![7; LEN]).await.is_ok() })
            });
            // Bounded guard: the first bytes of the write reach the peer, or none can.
            let started = Instant::now();
            while read.load(Ordering::SeqCst) == 0 && started.elapsed() < Duration::from_millis(300)
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            go.send(()).unwrap();
            closer.join().unwrap();
            let _ = resume.send(());
            let ended = tokio::time::timeout(Duration::from_secs(10), reader)
                .await
                .expect("the peer's read ended")
                .unwrap();
            let wrote_all = writer.join().unwrap();
            let read = read.load(Ordering::SeqCst);
            if ended.is_none() {
                assert!(
                    read == 0 || (read == LEN && wrote_all),
                    "server writes: {server_writes}: the peer read {read} of the {LEN} bytes \
                     of a write, then close_notify"
                );
            }
            drop(peer);
            selector.close();
        }
    }

    /// A write that only adds to the write channel's buffer (no auto-flush), on another thread
    /// just as a close decided on `close_notify` (nothing was buffered then): the close sends
    /// those bytes no more than any others still buffered, so the write must fail, or the close
    /// must omit `close_notify`. The peer must never read a clean end after a write that
    /// returned `Ok` was lost. It did: the write channel learnt of the close only after the
    /// layer's `closing` had queued `close_notify`, and took the bytes meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_buffered_write_racing_the_close_is_never_followed_by_close_notify() {
        let selector = SelectorManager::new();
        let (mut client, server) = tls_pair(&selector).await;
        let mut server = server;
        let mut output = server.open_write_channel(false).unwrap();
        let mut input = client.open_read_channel().unwrap();
        let server = Arc::new(server);
        // The close, which writes (once, without waiting) as it decided.
        let (wrote, written) = mpsc::channel();
        let closer = std::thread::spawn({
            let server = Arc::clone(&server);
            move || {
                CLOSE_DECIDED.with(|hook| {
                    *hook.borrow_mut() = Some(Box::new(move || {
                        let mut write = std::pin::pin!(output.write_fully(b"accepted?\n"));
                        let polled = write.as_mut().poll(&mut Context::from_waker(Waker::noop()));
                        let _ = wrote.send(matches!(polled, Poll::Ready(Ok(()))));
                    }));
                });
                server.close();
            }
        });
        let accepted = written
            .recv_timeout(Duration::from_secs(5))
            .expect("the close decided");
        closer.join().unwrap();
        let mut buf = [0; 64];
        let end = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match input.read_available(&mut buf).await {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .await
        .expect("the peer's read ended");
        assert!(
            !(accepted && end.is_ok()),
            "a write returned Ok as the close ran, and the peer read a clean end without it"
        );
        drop(client);
        selector.close();
    }

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

    /// The reader's read channel is dropped (another thread) while a flush that found an
    /// answer held back for it, the reader still having a request pending, holds the session:
    /// the drop cannot take the session, and leaves the answer to a task, which must send it
    /// once the flush let the session go. The flush pauses at that point (a seam) while the
    /// drop happens.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_answer_a_flush_held_as_the_reader_was_dropped_leaves() {
        let selector = SelectorManager::new();
        let (mut client, mut server) = tls_pair(&selector).await;
        let Channels {
            mut client_in,
            _client_out,
            server_in,
            mut server_out,
        } = b_pending(&mut client, &mut server).await;
        server_out.write_string_utf8("A\n").await.unwrap();
        let (paused, has_paused) = mpsc::channel();
        let (go, wait_go) = mpsc::channel::<()>();
        let flusher = std::thread::spawn(move || {
            FLUSH_DEFERRED.with(|hook| {
                *hook.borrow_mut() = Some(Box::new(move || {
                    let _ = paused.send(());
                    let _ = wait_go.recv_timeout(Duration::from_secs(5));
                }));
            });
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let flushed = server_out.flush().await;
                    (flushed.is_ok(), server_out)
                })
        });
        has_paused
            .recv_timeout(Duration::from_secs(5))
            .expect("the flush found the answer held");
        drop(server_in);
        go.send(()).unwrap();
        let (flushed, _server_out) = flusher.join().unwrap();
        assert!(flushed);
        let answer = tokio::time::timeout(
            Duration::from_secs(2),
            client_in.read_line(16, net_io::LineEnding::Default),
        )
        .await;
        assert!(
            matches!(answer, Ok(Ok(Some(ref line))) if line == "A"),
            "the answer never came after the reader was dropped: {answer:?}"
        );
        drop(server);
    }

    /// A reader dropped while another holds the session, one that is neither a write nor a
    /// flush (here the test; in use a write of nothing, the write channel's drop, a read
    /// through tokio's traits of the socket's own bytes), cannot take it, and leaves the
    /// answers held for its pending requests to a task of the selector's runtime, which
    /// sends them once the session is free: the holder need not look for them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_answer_held_as_the_reader_was_dropped_under_another_holder_leaves() {
        reader_dropped_under_the_test(drop).await;
    }

    /// A client and a server configuration, made once for many connections: the client
    /// accepts any server certificate, for `localhost`.
    fn configs() -> (TlsConfig, TlsServerConfig) {
        configs_with(|_| {
            TlsConfig::builder()
                .dangerous_accept_any_server_certificate()
                .server_name("localhost")
                .build()
                .unwrap()
        })
    }

    /// A TLS connection over loopback, the server's socket on `server_selector`, the client's
    /// on `client_selector` (which may be the same): (client, server).
    async fn pair_across(
        server_selector: &SelectorManager,
        client_selector: &SelectorManager,
        configs: &(TlsConfig, TlsServerConfig),
    ) -> (TlsSocket, TlsSocket) {
        let listener = a_socket(server_selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let (client, server) = tokio::join!(
            a_socket(client_selector)
                .tcp()
                .connect(listener.local_address()),
            listener.accept()
        );
        let (client, server) = tokio::join!(
            client.unwrap().tls(configs.0.clone()),
            server.unwrap().tls_server(&configs.1)
        );
        (client.unwrap(), server.unwrap())
    }

    /// The channels of a connection whose server read "a" of the client's "a\nb\n" ("b" is
    /// pending).
    struct Channels {
        client_in: net_io::ByteReadChannel,
        _client_out: net_io::ByteWriteChannel,
        server_in: net_io::ByteReadChannel,
        server_out: net_io::ByteWriteChannel,
    }

    /// The peer's `close_notify`, come with its last requests, ends the server's stream
    /// without another read from the socket: an answer held back for those requests (one
    /// larger than the session holds as plaintext, so its records wait in the socket) leaves
    /// at that end, though the server then neither writes, flushes nor closes (its reader,
    /// whose wait would send it, never waits again). With the end's `reader_gone` call left
    /// out, the answer never came ("Err(Elapsed(()))").
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_answer_held_when_the_peers_close_notify_is_read_leaves_at_that_end() {
        let selector = SelectorManager::new();
        let (mut client, mut server) = tls_pair(&selector).await;
        let mut client_out = client.open_write_channel(true).unwrap();
        let mut client_in = client.open_read_channel().unwrap();
        let mut server_in = server.open_read_channel().unwrap();
        let mut server_out = server.open_write_channel(false).unwrap();
        let answer = format!("{}\n", "A".repeat(40_000));
        // The requests and `close_notify` are in the server's socket before it reads.
        client_out.write_string_utf8("a\nb\n").await.unwrap();
        client_out.flush_and_close().await.unwrap();
        let line = server_in.read_line(16, net_io::LineEnding::Default).await;
        assert_eq!(line.unwrap().as_deref(), Some("a"));
        server_out.write_string_utf8(&answer).await.unwrap();
        server_out.flush().await.unwrap();
        let line = server_in.read_line(16, net_io::LineEnding::Default).await;
        assert_eq!(line.unwrap().as_deref(), Some("b"));
        let end = server_in.read_line(16, net_io::LineEnding::Default).await;
        assert!(matches!(end, Ok(None)), "{end:?}");
        let came = tokio::time::timeout(
            Duration::from_secs(2),
            client_in.read_line(64 * 1024, net_io::LineEnding::Default),
        )
        .await;
        assert!(
            matches!(came, Ok(Ok(Some(ref line))) if line.len() == answer.len() - 1),
            "the answer never came after the peer's end was read: {:?}",
            came.map(|read| read.map(|line| line.map(|line| line.len())))
        );
        drop((server_in, server_out, server));
    }

    async fn b_pending(client: &mut TlsSocket, server: &mut TlsSocket) -> Channels {
        let mut client_out = client.open_write_channel(true).unwrap();
        let client_in = client.open_read_channel().unwrap();
        let mut server_in = server.open_read_channel().unwrap();
        let server_out = server.open_write_channel(false).unwrap();
        client_out.write_string_utf8("a\nb\n").await.unwrap();
        let line = server_in.read_line(16, net_io::LineEnding::Default).await;
        assert_eq!(line.unwrap().as_deref(), Some("a"));
        Channels {
            client_in,
            _client_out: client_out,
            server_in,
            server_out,
        }
    }

    /// [`b_pending`], then the server wrote and flushed the answer "A", held above rustls for
    /// "b".
    async fn answer_held(client: &mut TlsSocket, server: &mut TlsSocket) -> Channels {
        let mut channels = b_pending(client, server).await;
        channels.server_out.write_string_utf8("A\n").await.unwrap();
        channels.server_out.flush().await.unwrap();
        assert_eq!(lock(&server.shared).plain, b"A\n", "the answer is held");
        channels
    }

    /// The next line the client reads, within 2 s.
    async fn next_line(
        client_in: &mut net_io::ByteReadChannel,
    ) -> std::result::Result<net_io::Result<Option<String>>, tokio::time::error::Elapsed> {
        tokio::time::timeout(
            Duration::from_secs(2),
            client_in.read_line(16, net_io::LineEnding::Default),
        )
        .await
    }

    /// A reader dropped under another holder on a current-thread runtime, the selector's: the
    /// task that takes the answer over runs once the runtime runs again, and sends it.
    #[tokio::test]
    async fn a_handover_on_a_current_thread_runtime_sends_the_answer() {
        reader_dropped_under_the_test(drop).await;
    }

    /// The reader dropped under another holder on a thread with no runtime: the task is
    /// spawned on the selector's runtime all the same, and sends the answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_handover_from_a_thread_without_a_runtime_sends_the_answer() {
        reader_dropped_under_the_test(|reader| {
            std::thread::spawn(move || drop(reader)).join().unwrap();
        })
        .await;
    }

    /// An answer held ([`answer_held`]), then the reader dropped by `drop_reader` while the
    /// test holds the session: the client gets the answer all the same.
    async fn reader_dropped_under_the_test(drop_reader: impl FnOnce(net_io::ByteReadChannel)) {
        let selector = SelectorManager::new();
        let (mut client, mut server) = tls_pair(&selector).await;
        let mut held = answer_held(&mut client, &mut server).await;
        {
            let session = lock(&server.shared);
            drop_reader(held.server_in);
            drop(session);
        }
        let answer = next_line(&mut held.client_in).await;
        assert!(
            matches!(answer, Ok(Ok(Some(ref line))) if line == "A"),
            "the answer never came after the reader was dropped: {answer:?}"
        );
    }

    /// The server's selector has a runtime of its own, which its close ends (in the
    /// background), as the test holds the session; the reader is dropped then: no panic and
    /// no hang (the task may find that runtime ended), and the client sees no clean end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_handover_as_the_selectors_own_runtime_ends_neither_panics_nor_ends_cleanly() {
        let client_selector = SelectorManager::new();
        let server_selector = SelectorManager::builder().build().unwrap();
        let (mut client, mut server) =
            pair_across(&server_selector, &client_selector, &configs()).await;
        let mut held = answer_held(&mut client, &mut server).await;
        {
            let session = lock(&server.shared);
            server_selector.close();
            drop(held.server_in);
            drop(session);
        }
        let end = next_line(&mut held.client_in).await;
        assert!(matches!(end, Ok(Err(_))), "{end:?}");
    }

    /// Two runtimes for [`stalled_handover`]: a multi-thread one for the client's selector, and
    /// a current-thread one for the server's, which runs only inside its `block_on`s.
    fn two_runtimes() -> (tokio::runtime::Runtime, tokio::runtime::Runtime) {
        let client = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let server = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        (client, server)
    }

    /// A connection whose server's selector runs on `server_runtime`, which is not running as
    /// the reader is dropped under another holder (the test): the task that takes the answer
    /// over waits for that runtime.
    struct Stalled {
        client_in: net_io::ByteReadChannel,
        _client_out: net_io::ByteWriteChannel,
        _client: TlsSocket,
        server: TlsSocket,
        server_out: net_io::ByteWriteChannel,
    }

    fn stalled_handover(
        client_runtime: &tokio::runtime::Runtime,
        server_runtime: &tokio::runtime::Runtime,
    ) -> Stalled {
        let client_selector = client_runtime.block_on(async { SelectorManager::new() });
        let server_selector = server_runtime.block_on(async { SelectorManager::new() });
        let configs = configs();
        let (mut client, mut server) =
            server_runtime.block_on(pair_across(&server_selector, &client_selector, &configs));
        let held = server_runtime.block_on(answer_held(&mut client, &mut server));
        {
            let session = lock(&server.shared);
            drop(held.server_in);
            drop(session);
        }
        Stalled {
            client_in: held.client_in,
            _client_out: held._client_out,
            _client: client,
            server,
            server_out: held.server_out,
        }
    }

    /// The server's socket and channels are all dropped while the task that takes its answer
    /// over waits for the selector's runtime, which is not running: the socket closes at once
    /// all the same, as a dropped socket does (the peer sees its end, a truncation). The task
    /// does not keep the connection: before, it did, and the socket stayed open until that
    /// runtime ran again (the client waited 2 s for nothing).
    #[test]
    fn a_socket_dropped_while_a_handover_waits_for_a_stalled_runtime_closes_at_once() {
        let (client_runtime, server_runtime) = two_runtimes();
        let mut stalled = stalled_handover(&client_runtime, &server_runtime);
        drop(stalled.server_out);
        drop(stalled.server);
        let end = client_runtime.block_on(next_line(&mut stalled.client_in));
        assert!(
            matches!(end, Ok(Err(_))),
            "the client never saw the dropped socket's end: {end:?}"
        );
    }

    /// The selector's runtime is dropped while the task that takes the answer over waits for
    /// it: the task is dropped unrun, without a panic or a hang, and the connection is cut
    /// (the client sees no clean end).
    #[test]
    fn a_runtime_dropped_with_a_handover_waiting_cuts_the_connection() {
        let (client_runtime, server_runtime) = two_runtimes();
        let mut stalled = stalled_handover(&client_runtime, &server_runtime);
        drop(server_runtime);
        let end = client_runtime.block_on(next_line(&mut stalled.client_in));
        assert!(matches!(end, Ok(Err(_))), "{end:?}");
    }

    /// What the writer thread does after its answer, in [`race_once`].
    #[derive(Clone, Copy, Debug)]
    enum Then {
        Flush,
        FlushAndClose,
        Close,
    }

    /// The answer "A" written, then `then`, on another thread, as the reader (with "b"
    /// pending) is dropped or, `trait_read`, reads "b" through tokio's traits (the socket's
    /// hook): the client gets "A", then the clean end after a close or half-close.
    async fn race_once(
        selector: &SelectorManager,
        configs: &(TlsConfig, TlsServerConfig),
        run: usize,
        then: Then,
        trait_read: bool,
    ) {
        let (mut client, mut server) = pair_across(selector, selector, configs).await;
        let Channels {
            mut client_in,
            _client_out,
            mut server_in,
            mut server_out,
        } = b_pending(&mut client, &mut server).await;
        let start = Arc::new(std::sync::Barrier::new(2));
        let writer_start = Arc::clone(&start);
        let writer = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    writer_start.wait();
                    // Shifts the two sides against each other from run to run.
                    for _ in 0..(run % 7) * 50 {
                        std::hint::spin_loop();
                    }
                    server_out.write_string_utf8("A\n").await.unwrap();
                    match then {
                        Then::Flush => server_out.flush().await.unwrap(),
                        Then::FlushAndClose => server_out.flush_and_close().await.unwrap(),
                        Then::Close => {
                            server_out.flush().await.unwrap();
                            server.close();
                        }
                    }
                    (server_out, server)
                })
        });
        start.wait();
        for _ in 0..(run % 5) * 50 {
            std::hint::spin_loop();
        }
        if trait_read {
            let mut buf = [0u8; 8];
            let n = tokio::io::AsyncReadExt::read(&mut server_in, &mut buf)
                .await
                .unwrap();
            assert_eq!(&buf[..n], b"b\n");
        } else {
            drop(server_in);
        }
        let _kept = tokio::task::spawn_blocking(move || writer.join().unwrap())
            .await
            .unwrap();
        let answer = next_line(&mut client_in).await;
        assert!(
            matches!(answer, Ok(Ok(Some(ref line))) if line == "A"),
            "run {run}, {then:?}, trait read {trait_read}: {answer:?}"
        );
        if !matches!(then, Then::Flush) {
            let end = next_line(&mut client_in).await;
            assert!(
                matches!(end, Ok(Ok(None))),
                "run {run}, {then:?}, trait read {trait_read}: no clean end: {end:?}"
            );
        }
    }

    /// [`race_once`] each way, `RACE_RUNS` times (default 8).
    async fn races(selector: &SelectorManager) {
        let configs = configs();
        let runs = std::env::var("RACE_RUNS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(8);
        for run in 0..runs {
            for then in [Then::Flush, Then::FlushAndClose, Then::Close] {
                race_once(selector, &configs, run, then, run % 2 == 1).await;
            }
        }
    }

    /// A write and flush, half-close or close of another thread racing the reader's drop, or
    /// its read through tokio's traits, on a multi-thread runtime: the answer always leaves,
    /// before the clean end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_racing_the_readers_drop_leaves_on_a_multi_thread_runtime() {
        races(&SelectorManager::new()).await;
    }

    /// The same on a current-thread runtime, the selector's.
    #[tokio::test]
    async fn a_write_racing_the_readers_drop_leaves_on_a_current_thread_runtime() {
        races(&SelectorManager::new()).await;
    }
}
