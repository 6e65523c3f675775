//! The crate's error type and its mapping to [`std::io::Error`].

use std::fmt;
use std::io;

/// A specialised `Result` whose error defaults to [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong when creating, using or closing a socket.
///
/// Operating-system failures keep their [`io::ErrorKind`]: a refused connection is
/// `Error::Io` with kind [`ConnectionRefused`](io::ErrorKind::ConnectionRefused), a reset one
/// [`ConnectionReset`](io::ErrorKind::ConnectionReset). [`Error::kind`] gives the kind of every
/// variant, and `Error` converts into an [`io::Error`] with that kind (and back: an `io::Error`
/// that carries an `Error` converts back into that variant).
///
/// Errors that a channel reports while reading or writing are [`net_io::Error`]s; when the
/// socket below the channel was closed, that error carries this crate's [`Error::Closed`] or
/// [`Error::SelectorClosed`], and `Error::from(net_io_error)` recovers it.
///
/// The `Display` text is for people; match on the variant, not on the message.
///
/// # Examples
///
/// ```
/// use std::io::ErrorKind;
/// use net_sockets::{a_socket, Error, SelectorManager};
///
/// # #[tokio::main] async fn main() {
/// let selector = SelectorManager::new();
/// match a_socket(&selector).tcp().connect(("127.0.0.1", 9)).await {
///     Ok(socket) => println!("connected to {}", socket.remote_address()),
///     Err(e) if e.kind() == ErrorKind::ConnectionRefused => println!("nobody listens"),
///     Err(Error::Timeout) => println!("too slow"),
///     Err(e) => println!("failed: {e}"),
/// }
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The operating system reported an error (connect refused, reset, address in use, ...).
    Io(io::Error),
    /// A channel operation failed (a line too long, an unexpected end of stream, ...).
    Channel(net_io::Error),
    /// The read or write channel of this socket was already opened.
    ChannelAlreadyOpen,
    /// The socket or listener was closed.
    Closed,
    /// The [`SelectorManager`](crate::SelectorManager) that made the socket was closed (or,
    /// for a listener being bound or adopted, its graceful shutdown began).
    SelectorClosed,
    /// A datagram was larger than a UDP packet can carry: 65,507 bytes over IPv4, 65,527 over
    /// IPv6.
    DatagramTooLarge {
        /// The size of the rejected packet in bytes.
        size: usize,
    },
    /// A host name did not resolve to any address.
    #[non_exhaustive]
    Resolve {
        /// The host name that failed.
        host: String,
        /// The resolver's error (kind [`NotFound`](io::ErrorKind::NotFound) when the name
        /// resolved to no address). The system resolver's errors all come with the same kind
        /// from `std` (uncategorized; [`InvalidInput`](io::ErrorKind::InvalidInput) for a
        /// name with a NUL byte), so only their message tells a name that does not exist from
        /// a failure worth retrying; glibc's say "Name or service not known" for the first
        /// (NXDOMAIN, or a name it refuses to ask for: not ASCII, a label over 63 bytes),
        /// "Temporary failure in name resolution" for the second (a server's failure, no
        /// answer within `resolv.conf`'s timeout), and "No address associated with hostname"
        /// for a name without an address; musl's (a `*-linux-musl` build) say "Name does not
        /// resolve", "Try again" and "Name has no usable address". A lookup that fails with the
        /// process or the system out of descriptors is no `Resolve` error but
        /// [`Error::Io`](Error::Io) with the OS's `EMFILE` (`ENFILE`), as the same call to an
        /// IP address gets (glibc says "Name or service not known" then).
        source: io::Error,
    },
    /// The operating system refused a socket option's value (for example a keep-alive interval
    /// of zero), or a listener option has a value no listener can serve with
    /// (`max_connections(0)`, `max_connections_per_ip(0)`; `source` then carries no OS error):
    /// `bind` or `connect` (or a listener's adoption) fails instead of every connection failing
    /// later.
    #[non_exhaustive]
    InvalidOption {
        /// The option, as the builder method that sets it is named (`keep_alive_interval`).
        option: &'static str,
        /// The operating system's error, or one saying why the value is invalid.
        source: io::Error,
    },
    /// A connect did not finish within its `connect_timeout`, or a socket saw no progress
    /// within its `socket_timeout`.
    Timeout,
}

impl Error {
    /// The [`io::ErrorKind`] this error maps to when converted into an [`io::Error`].
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Error::Io(e) => e.kind(),
            Error::Channel(e) => e.kind(),
            Error::ChannelAlreadyOpen => io::ErrorKind::AlreadyExists,
            Error::Closed => io::ErrorKind::NotConnected,
            Error::SelectorClosed => io::ErrorKind::ConnectionAborted,
            Error::DatagramTooLarge { .. } => io::ErrorKind::InvalidInput,
            Error::Resolve { .. } => io::ErrorKind::NotFound,
            Error::InvalidOption { .. } => io::ErrorKind::InvalidInput,
            Error::Timeout => io::ErrorKind::TimedOut,
        }
    }

    /// The error a transport reported inside an I/O error, found as
    /// [`net_io::Error::inner_error`] finds it (also when a channel reports its failure again):
    /// for example `net_tls::Truncated`, when a TLS peer ended the stream without
    /// `close_notify`. `None` for the other variants and for an I/O error that carries no error
    /// of its own (an operating system's error as the system reported it; one this crate
    /// reworded, such as a Unix path in use, carries its message).
    /// (`source()` does not reach it: the source of an I/O error is the source of the error it
    /// carries.)
    pub fn inner_error(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match self {
            Error::Io(e) => {
                let inner = e.get_ref()?;
                match inner.downcast_ref::<net_io::SharedError>() {
                    Some(shared) => Some(shared.get_ref()),
                    None => Some(inner),
                }
            }
            Error::Channel(e) => e.inner_error(),
            _ => None,
        }
    }

    /// `Closed`, or `SelectorClosed` when the selector manager was closed.
    pub(crate) fn closed(selector_closed: bool) -> Self {
        if selector_closed {
            Error::SelectorClosed
        } else {
            Error::Closed
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Transparent: the wrapped error's message, and its source as ours.
            Error::Io(e) => fmt::Display::fmt(e, f),
            Error::Channel(e) => fmt::Display::fmt(e, f),
            Error::ChannelAlreadyOpen => f.write_str("channel already open"),
            Error::Closed => f.write_str("socket closed"),
            // Also the error of a listener bound or adopted while the selector's graceful
            // shutdown runs, before the selector closes.
            Error::SelectorClosed => f.write_str("selector manager closed or shutting down"),
            Error::DatagramTooLarge { size } => {
                write!(
                    f,
                    "datagram of {size} bytes exceeds what UDP can carry to its address"
                )
            }
            Error::Resolve { host, .. } => write!(f, "could not resolve host {host:?}"),
            Error::InvalidOption { option, source } if source.raw_os_error().is_some() => {
                write!(f, "the operating system refused the value of {option}")
            }
            Error::InvalidOption { option, .. } => write!(f, "invalid value of {option}"),
            Error::Timeout => f.write_str("timed out"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => e.source(),
            Error::Channel(e) => e.source(),
            Error::Resolve { source, .. } | Error::InvalidOption { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    /// Wraps an I/O error, unwrapping an `Error` (or a [`net_io::Error`]) carried inside it.
    fn from(e: io::Error) -> Self {
        match e.downcast::<Error>() {
            Ok(inner) => inner,
            Err(e) => Error::from(net_io::Error::from(e)),
        }
    }
}

impl From<net_io::Error> for Error {
    /// Maps a channel error: `Timeout` becomes [`Error::Timeout`], an I/O error becomes
    /// [`Error::Io`] (or the `Error` it carries, such as [`Error::Closed`]; also when a channel
    /// reports its failure again, for every variant but `Io`, `Resolve` and `InvalidOption`),
    /// the rest [`Error::Channel`].
    fn from(e: net_io::Error) -> Self {
        // A channel reports a failure again with its inner error shared (`net_io::SharedError`):
        // recover our variants that can be copied through the accessor.
        match e
            .inner_error()
            .and_then(|inner| inner.downcast_ref::<Error>())
        {
            Some(Error::Closed) => return Error::Closed,
            Some(Error::SelectorClosed) => return Error::SelectorClosed,
            Some(Error::ChannelAlreadyOpen) => return Error::ChannelAlreadyOpen,
            Some(Error::DatagramTooLarge { size }) => {
                return Error::DatagramTooLarge { size: *size };
            }
            Some(Error::Timeout) => return Error::Timeout,
            _ => {}
        }
        match e {
            net_io::Error::Timeout => Error::Timeout,
            net_io::Error::Io(io) => match io.downcast::<Error>() {
                Ok(inner) => inner,
                Err(io) => Error::Io(io),
            },
            other => Error::Channel(other),
        }
    }
}

impl From<Error> for io::Error {
    /// An I/O error of the error's [`kind`](Error::kind): `Error::Io` is its I/O error,
    /// `Error::Channel` and `Error::Timeout` carry the [`net_io::Error`] (`Timeout` carries
    /// `net_io::Error::Timeout`, so a channel reading through it sees a timeout, not a
    /// failure), the rest carry the `Error`.
    fn from(e: Error) -> Self {
        match e {
            Error::Io(e) => e,
            Error::Channel(e) => e.into(),
            Error::Timeout => net_io::Error::Timeout.into(),
            other => io::Error::new(other.kind(), other),
        }
    }
}

pub(crate) use crate::described::Described;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_round_trips_through_io_and_net_io() {
        let io = io::Error::from(Error::Closed);
        assert_eq!(io.kind(), io::ErrorKind::NotConnected);
        let channel = net_io::Error::from(io);
        assert!(matches!(Error::from(channel), Error::Closed));
    }

    /// Every variant that can be copied is recovered as itself from a failure reported again
    /// (its error shared), as `From<net_io::Error>` says.
    #[test]
    fn each_copied_variant_is_recovered_through_a_shared_inner_error() {
        for variant in [
            Error::Closed,
            Error::SelectorClosed,
            Error::ChannelAlreadyOpen,
            Error::DatagramTooLarge { size: 70_000 },
            Error::Timeout,
        ] {
            let (kind, text) = (variant.kind(), format!("{variant:?}"));
            let shared = net_io::SharedError::new(variant);
            let channel = net_io::Error::Io(io::Error::new(kind, shared));
            let back = Error::from(channel);
            assert_eq!(format!("{back:?}"), text);
            assert_eq!(back.kind(), kind);
        }
    }

    /// `InvalidOption` says whether the OS refused the value (an OS error as its source) or the
    /// value is one no socket can serve with (`max_connections(0)`).
    #[test]
    fn an_invalid_option_says_who_refused_it() {
        let refused = Error::InvalidOption {
            option: "keep_alive_count",
            source: io::Error::from_raw_os_error(libc::EINVAL),
        };
        assert_eq!(
            refused.to_string(),
            "the operating system refused the value of keep_alive_count"
        );
        let invalid = Error::InvalidOption {
            option: "max_connections",
            source: io::Error::new(io::ErrorKind::InvalidInput, "a cap of 0 admits none"),
        };
        assert_eq!(invalid.to_string(), "invalid value of max_connections");
    }

    /// `source()` gives the cause of every variant that wraps one: an I/O error's (which is the
    /// source of the error it carries), a channel error's, and a resolver's or an option's own.
    #[test]
    fn source_gives_the_cause_of_each_variant_that_has_one() {
        let os = || io::Error::from_raw_os_error(libc::EADDRINUSE);
        let described = || Described::error(io::ErrorKind::AddrInUse, "in use".into(), os());
        let with_source = [
            Error::Io(described()),
            Error::Channel(net_io::Error::Io(described())),
            Error::Resolve {
                host: "example.invalid".into(),
                source: os(),
            },
            Error::InvalidOption {
                option: "linger",
                source: os(),
            },
        ];
        for e in &with_source {
            let source = std::error::Error::source(e);
            let os_code = source
                .and_then(|s| s.downcast_ref::<io::Error>())
                .and_then(io::Error::raw_os_error);
            assert_eq!(os_code, Some(libc::EADDRINUSE), "{e:?}: {source:?}");
        }
        for e in [Error::Closed, Error::Timeout, Error::Io(os())] {
            assert!(std::error::Error::source(&e).is_none(), "{e:?}");
        }
    }

    /// `inner_error` finds the error a transport reported inside an I/O error, in `Io` and in a
    /// `Channel` error made by hand from an I/O one, shared or not.
    #[test]
    fn inner_error_is_found_in_io_and_channel_errors() {
        #[derive(Debug)]
        struct Transport;
        impl fmt::Display for Transport {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the transport's own error")
            }
        }
        impl std::error::Error for Transport {}
        let carried = || io::Error::other(Transport);
        let shared = || io::Error::other(net_io::SharedError::new(Transport));
        for e in [
            Error::Io(carried()),
            Error::Io(shared()),
            Error::Channel(net_io::Error::Io(carried())),
            Error::Channel(net_io::Error::Io(shared())),
        ] {
            let inner = e.inner_error();
            assert!(
                inner.is_some_and(|inner| inner.is::<Transport>()),
                "{e:?}: {inner:?}"
            );
        }
        let os = Error::Io(io::Error::from_raw_os_error(libc::ECONNRESET));
        assert!(os.inner_error().is_none());
        assert!(Error::Closed.inner_error().is_none());
    }

    #[test]
    fn timeout_maps_to_timeout() {
        assert!(matches!(
            Error::from(net_io::Error::Timeout),
            Error::Timeout
        ));
        let io = io::Error::new(io::ErrorKind::TimedOut, net_io::Error::Timeout);
        assert!(matches!(Error::from(io), Error::Timeout));
    }

    #[test]
    fn refused_keeps_its_kind() {
        let e = Error::from(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        assert!(matches!(e, Error::Io(_)));
    }
}
