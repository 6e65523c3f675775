//! TCP, UDP and Unix sockets with Ktor's builder model, on tokio and socket2.
//!
//! - [`SelectorManager`] is the I/O driver sockets are registered with (the current tokio
//!   runtime, whose shutdown closes it, or one of its own) and the one switch that closes them
//!   all.
//! - [`a_socket`] starts a builder: [`SocketBuilder::tcp`] gives a [`TcpSocketBuilder`] that
//!   binds a [`ServerSocket`] or connects a [`Socket`]; [`SocketBuilder::udp`] a
//!   [`UdpSocketBuilder`] that binds a [`BoundDatagramSocket`] or connects a
//!   [`ConnectedDatagramSocket`]. Options ([`SocketOptions`]) are plain data on the builder,
//!   applied with socket2; any other option is set through `with_sock_ref` (socket2's
//!   `SockRef`, with the crate re-exported as [`socket2`]).
//! - A [`Socket`] hands out `net_io` channels: [`Socket::open_read_channel`],
//!   [`Socket::open_write_channel`], or both as a [`Connection`]; or it becomes one tokio
//!   stream ([`Socket::into_stream`]). The same socket type carries TLS (`net-tls`'s
//!   `TlsSocket` is a `Socket` over a TLS session).
//! - A server toolkit on the TCP builder and the listener: graceful shutdown
//!   ([`ServerSocket::shutdown`], [`SelectorManager::shutdown`], [`Socket::shutdown_requested`]),
//!   admission control ([`TcpSocketBuilder::max_connections`],
//!   [`TcpSocketBuilder::max_connections_per_ip`]), the PROXY protocol ([`ProxyProtocol`] to
//!   read its headers, [`proxy_header`] to write them), and flush coalescing for pipelined
//!   requests ([`TcpSocketBuilder::coalesce_flushes`], on by default).
//! - Sockets made elsewhere are adopted: [`ServerSocket::from_std`], [`Socket::from_std`], the
//!   datagram sockets' `from_std`, and systemd socket activation
//!   ([`TcpSocketBuilder::systemd_listeners`]).
//! - UDP sends and receives whole [`Datagram`]s.
//! - Addresses are [`SocketAddress`]es ([`InetSocketAddress`] or [`UnixSocketAddress`]);
//!   `bind` and `connect` take anything [`ToSocketAddress`]: `("host", port)`, `"host:port"`,
//!   a [`std::net::SocketAddr`], ...
//! - [`Error`] says what went wrong; it converts to and from [`std::io::Error`].
//! - [`guarantees`] lists, in one place, what every failure returns and what it does to the
//!   connection and to other connections.
//!
//! # Example
//!
//! The seed's server: greet, then answer every line until the client leaves.
//!
//! ```no_run
//! use net_io::LineEnding;
//! use net_sockets::{a_socket, SelectorManager};
//!
//! # #[tokio::main] async fn main() -> net_sockets::Result<()> {
//! let selector = SelectorManager::new();
//! let server = a_socket(&selector).tcp().bind(("127.0.0.1", 9002)).await?;
//! println!("Server is listening at {}", server.local_address());
//! loop {
//!     let mut socket = server.accept().await?;
//!     tokio::spawn(async move {
//!         let mut input = socket.open_read_channel()?;
//!         let mut output = socket.open_write_channel(true)?;
//!         output.write_string_utf8("Please enter your name\n").await?;
//!         while let Some(name) = input.read_line(1024, LineEnding::Default).await? {
//!             output.write_string_utf8(&format!("Hello, {name}!\n")).await?;
//!         }
//!         socket.close();
//!         Ok::<_, net_sockets::Error>(())
//!     });
//! }
//! # }
//! ```
//!
//! # Closing
//!
//! `close()` on a socket, listener or datagram socket is synchronous, idempotent and callable
//! from any task: it releases the descriptor at once (after the kernel sends what was written,
//! then FIN) and fails every pending operation with [`Error::Closed`]. `await_closed()` waits
//! for that. (A connection's answers held back by flush coalescing, and TLS's `close_notify`,
//! that the socket cannot take at once are sent by a task as it drains, before the FIN; its
//! descriptor is released after them.) Closing the
//! [`SelectorManager`] does the same to every socket made through it, with
//! [`Error::SelectorClosed`], and so does the end of the tokio runtime a selector made by
//! [`SelectorManager::new`] runs on. After a failed write, or while the write channel still
//! buffers bytes (or after it threw some away), a close resets the connection instead of
//! ending it cleanly (a TCP connection: a Unix socket has no reset, and ends as a clean close
//! does); [`Connection::close_gracefully`] closes without losing what was written (see
//! [`Socket`]'s "Closing" section).
//!
//! All of it is one mechanism: every socket kind is built on the same registered core (the
//! socket it owns, its registration with the selector, closing by itself or by the selector,
//! waiting for readiness or the close), written once.
//!
//! # Cancel safety
//!
//! `accept`, `receive` and `send` are cancel safe; `connect` and `bind` leave nothing behind
//! when dropped (but a host name's lookup, which the system resolver runs to its end). The
//! channels' methods document their own cancel safety.
//!
//! # Platforms
//!
//! Linux, where it is built and tested: what these docs say of behaviour is Linux's. It also
//! builds for macOS and FreeBSD (`cargo xtask ci` checks that where their standard libraries
//! are installed), but is tested on neither. (Adopting a socket, [`ServerSocket::from_std`] and
//! the others, asks for its family through `getsockname` there, where Linux has `SO_DOMAIN`.)
//! Unix datagram sockets are not supported; Unix stream sockets are, through the TCP builder.
//!
//! What reading the code for those systems finds differs from Linux (how a send to a peer
//! that is gone avoids `SIGPIPE`, close-on-exec, Unix paths, options on a connection that
//! is gone, IPv6-only defaults, `linger`) is in the [guide]'s section *Other
//! platforms*.
//!
//! # Tracing
//!
//! Each connection has a `connection` span (fields `local`, `remote`, and `via` behind a PROXY
//! header), each listener a `listener` span; accept, connect and close are `debug` events, and
//! each send of a stream socket (TCP or Unix, TLS included) is a `trace` event, `sent` (a
//! datagram socket's sends are not traced). Running out of descriptors in `accept` is one event
//! per episode, a `warn` at most once a minute per listener (`debug` otherwise); a connection
//! dropped for a failed set-up is a `warn` event, one dropped for a bad PROXY header a `debug`
//! event (a `warn` for the listener's first); a connection refused by `max_connections_per_ip`
//! is a `debug` event. The guide's section *Tracing* lists them all.

#![cfg(unix)]

#[doc = include_str!("guarantees.md")]
pub mod guarantees {}

#[doc = include_str!("guide.md")]
pub mod guide {}

#[doc = include_str!("coming_from_ktor.md")]
pub mod coming_from_ktor {}

mod address;
mod adopt;
mod builder;
mod busy_poll;
mod connect;
mod core;
mod datagram;
mod described;
mod error;
mod group;
mod listener;
mod options;
mod proxy_protocol;
mod repeat;
mod selector;
mod socket;
mod stream;
mod transport;
mod waiters;

pub use address::{InetSocketAddress, SocketAddress, ToSocketAddress, UnixSocketAddress};
pub use adopt::{StdListener, StdStream};
pub use builder::{SocketBuilder, TcpSocketBuilder, UdpSocketBuilder, a_socket};
pub use datagram::{
    BoundDatagramSocket, ConnectedDatagramSocket, Datagram, DatagramIncoming, MAX_DATAGRAM_SIZE,
    MAX_DATAGRAM_SIZE_V6,
};
pub use error::{Error, Result};
pub use group::{ListenerStats, ShutdownReport};
pub use listener::{Incoming, ServerSocket};
pub use options::{ProxyProtocol, SocketOptions};
pub use selector::{SelectorManager, SelectorManagerBuilder};
pub use socket::{Connection, ShutdownSignal, Socket, SocketStream};
pub use transport::{Plain, Transport};

/// The `socket2` crate, whose [`SockRef`](socket2::SockRef) the `with_sock_ref` methods
/// ([`Socket::with_sock_ref`], [`ServerSocket::with_sock_ref`], the datagram sockets') hand
/// over: the same version, with the features this crate builds it with (`all`). A helper that
/// takes a `SockRef`, and the socket2 values its setters take (a
/// [`TcpKeepalive`](socket2::TcpKeepalive), a [`SockAddr`](socket2::SockAddr)), named from
/// here fit those methods whatever version of `socket2` the application itself depends on.
pub use socket2;

/// PROXY protocol headers to send, for a proxy in front of a server that reads them (this
/// crate's listeners with [`ProxyProtocol`], HAProxy's `accept-proxy`, nginx's
/// `proxy_protocol`): written first on the connection to that server, they tell it the
/// client's address.
pub mod proxy_header {
    pub use crate::proxy_protocol::{
        encode_v1 as v1, encode_v2 as v2, encode_v2_local as v2_local,
    };
}

/// The seam a protocol layer (TLS, in `net-tls`) plugs into. Not part of the API: hidden from
/// the documentation and free to change.
#[doc(hidden)]
pub mod layer {
    pub use crate::selector::SelectorSleep;
    pub use crate::stream::{ReadHalf, WriteHalf};
    pub use crate::transport::{Ending, Link, RawStream, Transport};
}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
