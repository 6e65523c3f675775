//! What a write channel tells the owner of its transport about the bytes it holds.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::backlog::Shared;
use crate::error::{Error, Failure};

/// Shared with a [`ByteWriteChannel`](crate::ByteWriteChannel) (see
/// [`share_state`](crate::ByteWriteChannel::share_state)): whether the channel holds bytes its
/// writes accepted that have not reached the transport yet, and whether it threw such bytes
/// away. The owner of the transport reads it when the stream ends: a stream that ends while
/// either is true ends with bytes missing, and must not look complete to the peer (the sockets
/// of `net-sockets` then reset the connection instead of sending FIN, and TLS sends no
/// `close_notify`).
///
/// Clones share one state. Share it with one channel: each channel sets the flags for itself
/// alone, so a state shared with two channels says what the last of them to act said (one
/// that flushed clears `has_unsent` while the other still holds bytes).
///
/// ```
/// use net_io::{ByteWriteChannel, WriteState};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> net_io::Result<()> {
/// let state = WriteState::new();
/// let mut output = ByteWriteChannel::new(tokio::io::sink(), false);
/// output.share_state(state.clone());
/// output.write_fully(b"not flushed yet").await?;
/// assert!(state.has_unsent());
/// output.flush().await?;
/// assert!(!state.has_unsent());
/// output.write_fully(b"never flushed").await?;
/// output.cancel();
/// assert!(state.lost_bytes());
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct WriteState(Arc<Shared>);

impl fmt::Debug for WriteState {
    /// The state's flags (not the backlog it may live beside).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteState")
            .field("unsent", &self.has_unsent())
            .field("lost", &self.lost_bytes())
            .field("ended", &self.ended().is_some())
            .finish()
    }
}

/// A write state's flags, kept in a [`Backlog`](crate::Backlog)'s allocation (which a state
/// made on its own has too, unused: one type, and no branch at each access).
#[derive(Debug, Default)]
pub(crate) struct Flags {
    unsent: AtomicBool,
    lost: AtomicBool,
    /// Whether the transport's owner [ended](WriteState::end) it (the error is kept in the
    /// allocation's cold part).
    ended: AtomicBool,
    /// Whether that end was the connection's failure ([`WriteState::fail`]).
    failed: AtomicBool,
}

impl WriteState {
    /// A state for a channel that holds nothing and lost nothing.
    pub fn new() -> WriteState {
        WriteState::default()
    }

    /// The state in a backlog's allocation (see
    /// [`Backlog::write_state`](crate::Backlog::write_state)).
    pub(crate) fn in_backlog(shared: Arc<Shared>) -> WriteState {
        WriteState(shared)
    }

    #[inline]
    fn flags(&self) -> &Flags {
        &self.0.flags
    }

    /// Whether the channel holds bytes its writes accepted that have not reached the transport
    /// (a flush would send them; a stream that ends now ends without them), or a write that
    /// went to the transport directly is waiting, was dropped, or failed, after the transport
    /// took a prefix of it (a stream that ends now ends in the middle of that write; this stays
    /// true until that write goes on to its end, or until the channel knows it was dropped
    /// part-way, when it ends or its next write that goes to the transport directly starts:
    /// from then on [`lost_bytes`](Self::lost_bytes) says so instead).
    ///
    /// A write that goes to the transport directly counts as unsent while a poll of it may hand
    /// the transport its first bytes. An owner that marks the stream ended (so that no
    /// transport write starts after) and then asks this gets `true` for a write whose first
    /// bytes may have gone, or went on, before the mark: both sides are sequentially
    /// consistent.
    pub fn has_unsent(&self) -> bool {
        self.flags().unsent.load(Ordering::SeqCst)
    }

    /// Whether the channel threw away bytes its writes accepted: it was cancelled, dropped or
    /// failed while it held some, or a write that went to the transport directly was dropped
    /// part-way (the stream then ends in the middle of that write), which the channel knows
    /// once it ends or its next such write starts.
    pub fn lost_bytes(&self) -> bool {
        self.flags().lost.load(Ordering::Acquire)
    }

    pub(crate) fn set_unsent(&self, unsent: bool) {
        self.flags().unsent.store(unsent, Ordering::Release);
    }

    /// A direct write is about to hand the transport bytes: unsent, sequentially consistent
    /// with the transport's own check that the stream has not ended (see `has_unsent`).
    pub(crate) fn begin_write(&self) {
        self.flags().unsent.store(true, Ordering::SeqCst);
    }

    /// A buffered write added bytes: unsent, sequentially consistent with
    /// [`end`](Self::end). Returns whether the stream is still open; `false` when the owner
    /// ended it meanwhile (and may have asked [`has_unsent`](Self::has_unsent) before this),
    /// so that the caller takes the bytes back and fails.
    pub(crate) fn add_unsent(&self) -> bool {
        self.flags().unsent.store(true, Ordering::SeqCst);
        !self.flags().ended.load(Ordering::SeqCst)
    }

    pub(crate) fn set_lost(&self) {
        self.flags().lost.store(true, Ordering::Release);
    }

    /// The owner of the transport closed it: from now on every write call of the channel
    /// (and every flush) fails with `error` (the first given; later calls change nothing),
    /// reported again as the channel's failures are, instead of buffering bytes that would
    /// never be sent: a write that returned `Ok` after the close would report bytes written
    /// that the peer never gets, after an end that looked clean to it. The sockets of
    /// `net-sockets` end the state of their write channel as they close (their error:
    /// `Closed`, or `SelectorClosed`), and once a read reported the connection's failure (the
    /// peer's reset: `EPIPE`, the error a send then gets).
    ///
    /// A call already past its start (waiting for the transport, on another thread) is not
    /// stopped: it learns of the close from the transport. One that only buffers, on another
    /// thread at that moment, either fails having added nothing, or added its bytes before,
    /// so that an owner that asks [`has_unsent`](Self::has_unsent) after this sees them (the
    /// next call fails). `error` is reported as an error the transport returned would be.
    ///
    /// ```
    /// use std::io;
    ///
    /// use net_io::{ByteWriteChannel, WriteState};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let state = WriteState::new();
    /// let mut output = ByteWriteChannel::new(tokio::io::sink(), false);
    /// output.share_state(state.clone());
    /// state.end(io::Error::new(io::ErrorKind::NotConnected, "closed by its owner"));
    /// let e = output.write_fully(b"never accepted").await.unwrap_err();
    /// assert_eq!(e.kind(), io::ErrorKind::NotConnected);
    /// assert!(output.is_closed_for_write());
    /// assert!(!state.has_unsent());
    /// # }
    /// ```
    pub fn end(&self, error: io::Error) {
        let _ = self.0.end.set(Failure::new(Error::from(error)));
        // Sequentially consistent with a buffered write's `add_unsent`: the owner that asks
        // `has_unsent` after this sees its bytes, or the write sees the end.
        self.flags().ended.store(true, Ordering::SeqCst);
    }

    /// The connection failed for good (the peer reset it, or a layer over it failed, as a
    /// read reported): as [`end`](Self::end) with `error`, and a channel then dropped with bytes
    /// buffered logs its event at `debug`, not `warn`: no flush could have sent them, and the
    /// peer, not the application, chose when (a peer must not be able to fill a log kept at
    /// `info`). The sockets of `net-sockets` call it instead of `end` once a read reported the
    /// connection's failure. An end that came first (a close) stays what it was.
    ///
    /// ```
    /// use std::io;
    ///
    /// use net_io::{ByteWriteChannel, WriteState};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let state = WriteState::new();
    /// let mut output = ByteWriteChannel::new(tokio::io::sink(), false);
    /// output.share_state(state.clone());
    /// output.write_fully(b"an answer").await.unwrap();
    /// state.fail(io::Error::from(io::ErrorKind::ConnectionReset));
    /// // The answer can never be sent now: the drop says so at `debug`.
    /// drop(output);
    /// # }
    /// ```
    pub fn fail(&self, error: io::Error) {
        if self.0.end.set(Failure::new(Error::from(error))).is_ok() {
            self.flags().failed.store(true, Ordering::Release);
        }
        self.flags().ended.store(true, Ordering::SeqCst);
    }

    /// Whether [`fail`](Self::fail) ended the stream (and no other end came before it).
    pub(crate) fn is_failed(&self) -> bool {
        self.flags().failed.load(Ordering::Acquire)
    }

    /// Whether [`end`](Self::end) was called.
    #[inline]
    pub(crate) fn is_ended(&self) -> bool {
        self.flags().ended.load(Ordering::Acquire)
    }

    /// The transport's end, once [`end`](Self::end) was called.
    pub(crate) fn ended(&self) -> Option<&Failure> {
        if self.is_ended() {
            self.0.end.get()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use tokio::io::AsyncReadExt;

    use crate::{Backlog, ByteWriteChannel, WriteState};

    #[test]
    fn a_write_state_shows_its_flags_and_not_the_backlog_beside_it() {
        let state = Backlog::new().write_state();
        state.set_unsent(true);
        assert_eq!(
            format!("{state:?}"),
            "WriteState { unsent: true, lost: false, ended: false }"
        );
    }

    /// Every call of `Backlog::write_state` gives the one state in the backlog's allocation:
    /// what a channel sharing one tells it, another sees.
    #[tokio::test]
    async fn every_write_state_of_a_backlog_is_one_state() {
        let backlog = Backlog::new();
        let seen = backlog.write_state();
        let mut output = ByteWriteChannel::new(tokio::io::sink(), false);
        output.share_state(backlog.write_state());
        output.write_fully(b"not flushed yet").await.unwrap();
        assert!(seen.has_unsent());
        output.cancel();
        assert!(seen.lost_bytes());
    }

    /// After `end`, a write that would buffer, a flush of nothing and a write too large to
    /// buffer (which would go to the transport directly) each fail with the end's error, and
    /// the transport gets nothing.
    #[tokio::test]
    async fn after_the_end_every_write_and_flush_fails_with_its_error() {
        for call in ["buffered", "flush", "direct"] {
            let state = WriteState::new();
            let (transport, mut peer) = tokio::io::duplex(1 << 16);
            let mut output = ByteWriteChannel::new(transport, false);
            output.share_state(state.clone());
            state.end(io::Error::new(
                io::ErrorKind::NotConnected,
                "closed by its owner",
            ));
            let result = match call {
                "buffered" => output.write_fully(b"never accepted").await,
                "flush" => output.flush().await,
                _ => output.write_fully(&[7; 20_000]).await,
            };
            let e = result.expect_err(call);
            assert_eq!(e.kind(), io::ErrorKind::NotConnected, "{call}: {e}");
            assert!(!state.has_unsent(), "{call}");
            drop(output);
            let mut received = Vec::new();
            peer.read_to_end(&mut received).await.unwrap();
            assert!(received.is_empty(), "{call}: {} bytes sent", received.len());
        }
    }
}
