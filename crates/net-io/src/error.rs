//! The crate's error type and its mapping to [`std::io::Error`].

use std::fmt;
use std::io;

/// A specialised `Result` whose error defaults to [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong when reading from or writing to a channel.
///
/// Every variant converts into a [`std::io::Error`] with a fitting [`io::ErrorKind`], and an
/// [`io::Error`] that carries an `Error` as its inner error converts back into that variant, so
/// a transport adapter can report [`Error::Timeout`] from `poll_read` as
/// `io::Error::new(io::ErrorKind::TimedOut, Error::Timeout)` and the channel's user still sees
/// `Error::Timeout`.
///
/// The `Display` text is for people; match on the variant, not on the message.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A line had more than `limit` bytes of content before its delimiter.
    ///
    /// The line is left unconsumed in the channel's buffer.
    TooLongLine {
        /// The limit the read was given.
        limit: usize,
    },
    /// The channel ended before a read had all the bytes it needed.
    ///
    /// The bytes that did arrive stay buffered and can still be read.
    UnexpectedEof {
        /// How many bytes the read needed.
        needed: usize,
        /// How many were buffered when the channel ended.
        available: usize,
    },
    /// The write side was closed (or cancelled) before this write.
    ClosedForWrite,
    /// The channel, or its other end, was cancelled.
    Cancelled,
    /// The transport saw no progress within its inactivity timeout.
    Timeout,
    /// The underlying transport failed.
    Io(io::Error),
}

impl Error {
    /// The [`io::ErrorKind`] this error maps to when converted into an [`io::Error`].
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Error::TooLongLine { .. } => io::ErrorKind::InvalidData,
            Error::UnexpectedEof { .. } => io::ErrorKind::UnexpectedEof,
            Error::ClosedForWrite => io::ErrorKind::BrokenPipe,
            Error::Cancelled => io::ErrorKind::ConnectionAborted,
            Error::Timeout => io::ErrorKind::TimedOut,
            Error::Io(e) => e.kind(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooLongLine { limit } => {
                write!(f, "line longer than the limit of {limit} bytes")
            }
            Error::UnexpectedEof { needed, available } => write!(
                f,
                "unexpected end of stream: needed {needed} bytes, {available} available"
            ),
            Error::ClosedForWrite => f.write_str("channel closed for write"),
            Error::Cancelled => f.write_str("channel cancelled"),
            Error::Timeout => f.write_str("timed out"),
            // Transparent: the I/O error's own message (and its source as ours), so error chains
            // do not print it twice.
            Error::Io(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => e.source(),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    /// Wraps an I/O error, unwrapping an `Error` that an adapter carried inside it.
    fn from(e: io::Error) -> Self {
        match e.downcast::<Error>() {
            Ok(inner) => inner,
            Err(e) => Error::Io(e),
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(e) => e,
            other => io::Error::new(other.kind(), other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_io_error() {
        let io: io::Error = Error::Timeout.into();
        assert_eq!(io.kind(), io::ErrorKind::TimedOut);
        assert!(matches!(Error::from(io), Error::Timeout));

        let io: io::Error = Error::TooLongLine { limit: 7 }.into();
        assert!(matches!(Error::from(io), Error::TooLongLine { limit: 7 }));
    }

    #[test]
    fn plain_io_error_stays_io() {
        let e = Error::from(io::Error::from(io::ErrorKind::ConnectionReset));
        match e {
            Error::Io(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
            other => panic!("expected Io, got {other:?}"),
        }
    }
}
