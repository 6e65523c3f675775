//! [`Backlog`]: what a read channel tells the transport under its paired write channel, so that
//! the transport can coalesce flushes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether a [`ByteReadChannel`](crate::ByteReadChannel) holds input its reader has not consumed
/// yet: requests already received and still to be answered.
///
/// A transport that carries both directions of a connection can use it to coalesce flushes: while
/// the reader has a backlog, the answers it writes are held back and leave together when the
/// reader is about to wait for more input, so a burst of pipelined requests is answered with
/// one send instead of one per request. `net-sockets` does this for its sockets; the channels
/// themselves only keep the flag up to date (one atomic store per read).
///
/// Clones share one flag.
///
/// # Examples
///
/// ```
/// use net_io::{Backlog, ByteReadChannel, LineEnding};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> net_io::Result<()> {
/// let backlog = Backlog::new();
/// let mut input = ByteReadChannel::new(&b"one\ntwo\n"[..]);
/// input.share_backlog(backlog.clone());
/// input.read_line(80, LineEnding::Default).await?;
/// assert!(backlog.is_pending()); // "two" is still to be read
/// input.read_line(80, LineEnding::Default).await?;
/// assert!(!backlog.is_pending());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Backlog(Arc<AtomicBool>);

impl Backlog {
    /// A flag with no backlog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the read channel holds input its reader has not consumed yet.
    pub fn is_pending(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn set(&self, pending: bool) {
        // Relaxed: a hint; a stale value only makes one flush leave early or wait for the
        // reader's next wait.
        if self.0.load(Ordering::Relaxed) != pending {
            self.0.store(pending, Ordering::Relaxed);
        }
    }
}
