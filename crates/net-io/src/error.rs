//! The crate's error type and its mapping to [`std::io::Error`].

use std::fmt;
use std::io;
use std::sync::Arc;

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
/// # Failures reported again
///
/// A channel whose transport failed reports that failure to every later operation that needs
/// the transport. Each report is an equal `Error`: the same variant, and for [`Error::Io`] the
/// same [`io::ErrorKind`], the same [`raw_os_error`](io::Error::raw_os_error) and the same inner
/// error. An inner error cannot be copied, so a channel keeps it in a [`SharedError`] and every
/// report (the first one included) carries that wrapper; [`Error::inner_error`] looks through
/// it.
///
/// The `Display` text is for people; match on the variant, not on the message.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A line (or a [`read_until`](crate::ByteReadChannel::read_until) item) had more than
    /// `limit` bytes of content before its delimiter.
    ///
    /// Nothing is consumed by the failed read. If the next read of the channel is a line read
    /// (or `read_until`), it first skips the rest of the over-long line, through its delimiter
    /// (the over-long line's or item's own, whichever of the two reads comes next).
    TooLongLine {
        /// The limit the read was given.
        limit: usize,
    },
    /// The channel ended before a read had all the bytes it needed.
    ///
    /// The bytes that did arrive stay buffered and can still be read, except after
    /// [`read_fully`](crate::ByteReadChannel::read_fully), which has copied them into its slice,
    /// and [`discard_exact`](crate::ByteReadChannel::discard_exact), which has skipped them.
    UnexpectedEof {
        /// How many bytes the read needed.
        needed: usize,
        /// How many were buffered when the channel ended.
        available: usize,
    },
    /// The write side was closed (or cancelled) before this write.
    ClosedForWrite,
    /// The channel, or its other end, was cancelled.
    ///
    /// An in-memory [`ByteChannel`](crate::ByteChannel) reports it for an other end that went
    /// away too: to its writer once the reader is dropped, and to its reader, once it has read
    /// what was delivered, when the writer was dropped or failed with bytes missing from the
    /// stream (see [`ByteChannel`](crate::ByteChannel)).
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

    /// The inner error of an [`Error::Io`], looking through the [`SharedError`] wrapper that a
    /// channel puts around a failure it reports more than once; `None` for other variants and
    /// for I/O errors without an inner error (an OS error code, a bare kind).
    ///
    /// Downcast it to find an error type of a lower layer, such as a TLS crate's marker for a
    /// truncated stream.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io;
    /// use net_io::{ByteReadChannel, Error, LineEnding};
    ///
    /// #[derive(Debug)]
    /// struct Truncated;
    /// impl std::fmt::Display for Truncated {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    ///         f.write_str("truncated")
    ///     }
    /// }
    /// impl std::error::Error for Truncated {}
    ///
    /// /// A reader that fails at once with a custom inner error.
    /// struct Failing;
    /// impl tokio::io::AsyncRead for Failing {
    ///     fn poll_read(
    ///         self: std::pin::Pin<&mut Self>,
    ///         _: &mut std::task::Context<'_>,
    ///         _: &mut tokio::io::ReadBuf<'_>,
    ///     ) -> std::task::Poll<io::Result<()>> {
    ///         std::task::Poll::Ready(Err(io::Error::new(io::ErrorKind::UnexpectedEof, Truncated)))
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let mut input = ByteReadChannel::new(Failing);
    /// for _ in 0..2 {
    ///     let e = input.read_line(80, LineEnding::Default).await.unwrap_err();
    ///     assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    ///     assert!(e.inner_error().is_some_and(|inner| inner.is::<Truncated>()));
    /// }
    /// # }
    /// ```
    pub fn inner_error(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        let Error::Io(e) = self else {
            return None;
        };
        let inner = e.get_ref()?;
        match inner.downcast_ref::<SharedError>() {
            Some(shared) => Some(shared.get_ref()),
            None => Some(inner),
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
    /// Wraps an I/O error, unwrapping an `Error` that an adapter carried inside it (directly,
    /// or inside a [`SharedError`]).
    fn from(e: io::Error) -> Self {
        match e.downcast::<Error>() {
            Ok(inner) => inner,
            Err(e) => {
                let carried = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<SharedError>())
                    .and_then(|shared| shared.get_ref().downcast_ref::<Error>())
                    .and_then(Failure::copy);
                match carried {
                    Some(failure) => failure.report(),
                    None => Error::Io(e),
                }
            }
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

/// An inner error shared by every report of one failure.
///
/// A channel that fails keeps the failure and reports it again to every later operation (see
/// [Failures reported again](Error#failures-reported-again)). An [`io::Error`]'s inner error
/// cannot be copied, so the channel moves it into a `SharedError` (an [`Arc`]) and each report
/// is a new `io::Error` of the same kind around a clone of it. [`Error::inner_error`] looks
/// through the wrapper; so does [`get_ref`](Self::get_ref). `Display` and
/// [`source`](std::error::Error::source) are those of the wrapped error.
#[derive(Clone)]
pub struct SharedError(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl SharedError {
    /// Wraps `error` (a `SharedError` given here is not wrapped twice).
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        match error.into().downcast::<SharedError>() {
            Ok(shared) => *shared,
            Err(other) => SharedError(Arc::from(other)),
        }
    }

    /// The wrapped error, for downcasting.
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }

    /// Whether `self` and `other` wrap the very same error (not merely equal ones).
    pub fn same_as(&self, other: &SharedError) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedError").field(&self.0).finish()
    }
}

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// A failure a channel keeps, to report it again (as an equal [`Error`]) to every later
/// operation. Boxed: a channel that never fails (most) holds 8 bytes for it, not 24, in
/// every connection's task.
#[derive(Debug)]
pub(crate) struct Failure(Box<Repr>);

#[derive(Debug)]
enum Repr {
    TooLongLine(usize),
    UnexpectedEof(usize, usize),
    ClosedForWrite,
    Cancelled,
    Timeout,
    /// An OS error code (`io::Error::from_raw_os_error`).
    Os(i32),
    /// An I/O error of a kind and nothing more.
    Kind(io::ErrorKind),
    /// An I/O error with an inner error.
    Shared(io::ErrorKind, SharedError),
}

impl Failure {
    /// Keeps `e`; an inner error moves into a [`SharedError`].
    pub(crate) fn new(e: Error) -> Failure {
        Failure(Box::new(match e {
            Error::TooLongLine { limit } => Repr::TooLongLine(limit),
            Error::UnexpectedEof { needed, available } => Repr::UnexpectedEof(needed, available),
            Error::ClosedForWrite => Repr::ClosedForWrite,
            Error::Cancelled => Repr::Cancelled,
            Error::Timeout => Repr::Timeout,
            Error::Io(io) => match io.raw_os_error() {
                Some(code) => Repr::Os(code),
                None => {
                    let kind = io.kind();
                    // A kind, perhaps with a message of the standard library's own
                    // (`read_exact`'s "failed to fill whole buffer"), kept as text.
                    let message = io.get_ref().is_none().then(|| io.to_string());
                    match (io.into_inner(), message) {
                        (Some(inner), _) => Repr::Shared(kind, SharedError::new(inner)),
                        (None, Some(m)) if m != io::Error::from(kind).to_string() => {
                            Repr::Shared(kind, SharedError::new(m))
                        }
                        (None, _) => Repr::Kind(kind),
                    }
                }
            },
        }))
    }

    /// A copy of `e`; `None` for an I/O error whose inner error is not shared.
    fn copy(e: &Error) -> Option<Failure> {
        Some(Failure(Box::new(match e {
            Error::TooLongLine { limit } => Repr::TooLongLine(*limit),
            Error::UnexpectedEof { needed, available } => Repr::UnexpectedEof(*needed, *available),
            Error::ClosedForWrite => Repr::ClosedForWrite,
            Error::Cancelled => Repr::Cancelled,
            Error::Timeout => Repr::Timeout,
            Error::Io(io) => match (io.raw_os_error(), io.get_ref()) {
                (Some(code), _) => Repr::Os(code),
                (None, None) => Repr::Kind(io.kind()),
                (None, Some(inner)) => {
                    Repr::Shared(io.kind(), inner.downcast_ref::<SharedError>()?.clone())
                }
            },
        })))
    }

    /// The failure as an error to return.
    pub(crate) fn report(&self) -> Error {
        match &*self.0 {
            Repr::TooLongLine(limit) => Error::TooLongLine { limit: *limit },
            Repr::UnexpectedEof(needed, available) => Error::UnexpectedEof {
                needed: *needed,
                available: *available,
            },
            Repr::ClosedForWrite => Error::ClosedForWrite,
            Repr::Cancelled => Error::Cancelled,
            Repr::Timeout => Error::Timeout,
            Repr::Os(code) => Error::Io(io::Error::from_raw_os_error(*code)),
            Repr::Kind(kind) => Error::Io(io::Error::from(*kind)),
            Repr::Shared(kind, shared) => Error::Io(io::Error::new(*kind, shared.clone())),
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

    /// A failure kept to be reported again keeps the message of an I/O error that has one but
    /// no inner error (the standard library's own, e.g. `read_exact`'s), not only its kind.
    #[test]
    fn a_kept_failure_keeps_a_standard_librarys_message() {
        let io = std::io::Read::read_exact(&mut &b""[..], &mut [0; 1]).unwrap_err();
        let message = io.to_string();
        assert_ne!(message, io::Error::from(io.kind()).to_string());
        let failure = Failure::new(Error::Io(io));
        for _ in 0..2 {
            match failure.report() {
                Error::Io(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
                    assert_eq!(e.to_string(), message);
                }
                other => panic!("expected Io, got {other:?}"),
            }
        }
        // One of a kind and nothing more stays that.
        let failure = Failure::new(Error::Io(io::ErrorKind::BrokenPipe.into()));
        assert!(matches!(&*failure.0, Repr::Kind(io::ErrorKind::BrokenPipe)));
    }

    #[test]
    fn plain_io_error_stays_io() {
        let e = Error::from(io::Error::from(io::ErrorKind::ConnectionReset));
        match e {
            Error::Io(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
            other => panic!("expected Io, got {other:?}"),
        }
    }

    /// `same_as` tells the very same error from an equal one, and `Debug` shows the wrapped
    /// error. (Mutation testing: `same_as` answering `true` whatever it was given, and `Debug`
    /// writing nothing, passed every test, which checked only a failure's own reports.)
    #[test]
    fn a_shared_error_is_the_same_as_its_clones_only_and_shows_what_it_wraps() {
        let shared = SharedError::new(io::Error::other("the cause"));
        assert!(shared.same_as(&shared.clone()));
        let equal = SharedError::new(io::Error::other("the cause"));
        assert!(!shared.same_as(&equal), "an equal error is not the same");
        let shown = format!("{shared:?}");
        assert!(
            shown.starts_with("SharedError(") && shown.contains("the cause"),
            "{shown}"
        );
    }
}
