//! One connection through a listener of ours, of each kind the stress tests race (TCP, Unix,
//! TLS): the peer's end (a tokio stream, a rustls client over TCP for TLS) and ours.

use std::time::Duration;

use net_sockets::{SelectorManager, ServerSocket, a_socket};
use net_tls::TlsExt;

/// What carries the connection.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// TCP on `127.0.0.1`.
    Tcp,
    /// A Unix stream socket in a temporary directory.
    Unix,
    /// TLS over TCP on `127.0.0.1`.
    Tls,
}

impl Kind {
    /// The kind for a seed: the three in turn.
    pub fn for_seed(seed: u64) -> Kind {
        [Kind::Tcp, Kind::Unix, Kind::Tls][(seed % 3) as usize]
    }
}

/// The peer's stream.
pub trait PeerIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {
    /// Ends the connection with a reset (where there is one).
    fn reset(self: Box<Self>);
}

impl PeerIo for tokio::net::TcpStream {
    fn reset(self: Box<Self>) {
        crate::fault::reset(*self);
    }
}

impl PeerIo for tokio::net::UnixStream {
    fn reset(self: Box<Self>) {}
}

impl PeerIo for tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    fn reset(self: Box<Self>) {
        crate::fault::reset(self.into_inner().0);
    }
}

/// Our side of the connection.
#[derive(Debug)]
pub enum Ours {
    /// TCP or Unix.
    Plain(net_sockets::Socket),
    /// TLS.
    Tls(net_tls::TlsSocket),
}

impl Ours {
    /// Opens both channels.
    pub fn channels(
        &mut self,
        auto_flush: bool,
    ) -> (net_io::ByteReadChannel, net_io::ByteWriteChannel) {
        match self {
            Ours::Plain(s) => (
                s.open_read_channel().unwrap(),
                s.open_write_channel(auto_flush).unwrap(),
            ),
            Ours::Tls(s) => (
                s.open_read_channel().unwrap(),
                s.open_write_channel(auto_flush).unwrap(),
            ),
        }
    }

    /// `close()`.
    pub fn close(&self) {
        match self {
            Ours::Plain(s) => s.close(),
            Ours::Tls(s) => s.close(),
        }
    }

    /// `is_closed()`.
    pub fn is_closed(&self) -> bool {
        match self {
            Ours::Plain(s) => s.is_closed(),
            Ours::Tls(s) => s.is_closed(),
        }
    }

    /// `await_closed()`.
    pub async fn await_closed(&self) {
        match self {
            Ours::Plain(s) => s.await_closed().await,
            Ours::Tls(s) => s.await_closed().await,
        }
    }
}

/// How the connection is made.
#[derive(Clone, Copy, Debug, Default)]
pub struct Setup {
    /// The listener's `coalesce_flushes`.
    pub coalesce: bool,
    /// 8 KiB send buffers on our side and receive buffers on the peer's (TCP and TLS).
    pub small_buffers: bool,
    /// The listener's `socket_timeout`.
    pub timeout: Option<Duration>,
}

/// A made connection: keep the selector, the listener and the directory alive as long as it.
pub struct Pair {
    /// The selector of the listener and of ours.
    pub selector: SelectorManager,
    /// The listener `ours` came from.
    pub listener: ServerSocket,
    /// The peer's end.
    pub peer: Box<dyn PeerIo>,
    /// Our end.
    pub ours: Ours,
    /// The Unix socket's directory (also made for the other kinds).
    pub dir: crate::TempDir,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair")
            .field("listener", &self.listener)
            .field("ours", &self.ours)
            .finish_non_exhaustive()
    }
}

/// What [`connect`] returns when a TLS handshake timed out (a `socket_timeout` passed on a
/// loaded machine): the caller skips the round.
pub const SKIPPED: &str = "skipped: the handshake timed out";

/// A selector, a listener of `kind`, and a connection through it.
pub async fn connect(kind: Kind, pki: &crate::pki::Pki, setup: Setup) -> Result<Pair, String> {
    let selector = SelectorManager::new();
    let dir = crate::TempDir::new("pair");
    let path = dir.join("s.sock");
    let builder = a_socket(&selector)
        .tcp()
        .coalesce_flushes(setup.coalesce)
        .configure(|o| {
            if setup.small_buffers {
                o.send_buffer_size = Some(8 * 1024);
            }
            o.socket_timeout = setup.timeout;
        });
    let listener = if kind == Kind::Unix {
        builder
            .bind(net_sockets::UnixSocketAddress::new(&path))
            .await
    } else {
        builder.bind(("127.0.0.1", 0)).await
    }
    .map_err(|e| e.to_string())?;
    let (peer, ours): (Box<dyn PeerIo>, Ours) = match kind {
        Kind::Unix => {
            let (peer, ours) =
                tokio::join!(tokio::net::UnixStream::connect(&path), listener.accept());
            (Box::new(peer.unwrap()), Ours::Plain(ours.unwrap()))
        }
        Kind::Tcp | Kind::Tls => {
            let port = listener.local_address().as_inet().unwrap().port();
            let peer_socket = tokio::net::TcpSocket::new_v4().unwrap();
            if setup.small_buffers {
                peer_socket.set_recv_buffer_size(8 * 1024).unwrap();
            }
            let (peer, ours) = tokio::join!(
                peer_socket.connect(([127, 0, 0, 1], port).into()),
                listener.accept()
            );
            let (peer, ours) = (peer.unwrap(), ours.unwrap());
            if kind == Kind::Tcp {
                (Box::new(peer), Ours::Plain(ours))
            } else {
                let config = pki.server_config().build().unwrap();
                let connector =
                    tokio_rustls::TlsConnector::from(crate::tls::rustls_client(&pki.ca));
                let (peer, ours) = tokio::join!(
                    connector.connect(crate::tls::localhost(), peer),
                    ours.tls_server(&config)
                );
                let ours = match ours {
                    // The handshake's reads keep `socket_timeout` too: on a loaded machine it
                    // may pass before the handshake is over.
                    Err(net_tls::Error::Socket(net_sockets::Error::Timeout)) => {
                        return Err(SKIPPED.into());
                    }
                    ours => ours.unwrap(),
                };
                (Box::new(peer.unwrap()), Ours::Tls(ours))
            }
        }
    };
    Ok(Pair {
        selector,
        listener,
        peer,
        ours,
        dir,
    })
}
