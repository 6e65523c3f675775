//! [`Backlog`]: what a read channel tells the transport under its paired write channel, so that
//! the transport can coalesce flushes.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};

use bytes::BytesMut;

use crate::WriteState;
use crate::error::Failure;
use crate::write_state::Flags;

/// Whether a [`ByteReadChannel`](crate::ByteReadChannel) holds input its reader has not consumed
/// yet — requests already received and still to be answered — and the answers held back
/// meanwhile. A reader that waits for more input has none pending, whatever part of a request
/// it holds; nor has one that has seen the end of its stream (or whose transport failed for
/// good, or whose [`Frames`](crate::Frames) stream ended at an error), whatever it still holds:
/// it never waits again, so nothing would send answers held back for it.
///
/// A transport that carries both directions of a connection can use it to coalesce flushes: while
/// the reader has a backlog, the answers it writes are held back and leave together when the
/// reader is about to wait for more input, so a burst of pipelined requests is answered with
/// one send instead of one per request. `net-sockets` does this for its sockets; the read
/// channel only keeps the flag up to date (set after a read of its own that consumes and leaves
/// input unconsumed, unless the stream has ended; cleared by every read through tokio's traits,
/// `poll_fill_buf` included, which passes its bytes on and may stop reading while its writes
/// wait (and which has the transport send what was held back for an earlier read: see
/// [`on_passed_on`](Backlog::on_passed_on)); cleared too before a read reads from its
/// transport, which may wait: a look-ahead that had to read, `peek`, `await_content` or a
/// `skip_if_found` that found nothing, leaves it cleared until the next read of its own that
/// consumes, so answers written after it leave at once),
/// and a write channel that writes straight to such a transport can hold its answers here itself
/// ([`ByteWriteChannel::hold_while`](crate::ByteWriteChannel::hold_while)).
///
/// Clones share one backlog.
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
#[derive(Clone, Default)]
pub struct Backlog(Arc<Shared>);

impl fmt::Debug for Backlog {
    /// The state, and how many bytes are held: never the held bytes, which are the
    /// application's.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backlog")
            .field("pending", &self.is_pending())
            .field("holding", &self.is_holding())
            .field("closed", &self.0.closed.load(Ordering::Acquire))
            .field("held_bytes", &held_len(&self.0.held))
            .finish_non_exhaustive()
    }
}

/// A backlog's state, and the flags of the [`WriteState`] that lives beside it (see
/// [`Backlog::write_state`]): one allocation for what a connection's read and write channels
/// share with its transport. Laid out in this order (`repr(C)`): the flags and the lock that
/// reads and writes touch fill the allocation's first 64 bytes with the `Arc`'s counts; the
/// transport's hook, which only a read through tokio's traits with bytes held runs, comes
/// after them.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct Shared {
    pending: AtomicBool,
    /// Whether `held` may hold bytes (checked without the lock).
    holding: AtomicBool,
    /// Whether holding ended for good.
    closed: AtomicBool,
    /// The write state's flags.
    pub(crate) flags: Flags,
    held: Mutex<BytesMut>,
    /// What the transport runs when a read through tokio's traits leaves nothing pending while
    /// bytes are held (see [`Backlog::on_passed_on`]).
    passed_on: PassedOn,
    /// The transport's end, once its owner ended it ([`WriteState::end`](crate::WriteState::end)).
    pub(crate) end: OnceLock<Failure>,
}

/// The transport's hook for [`Backlog::on_passed_on`].
#[derive(Default)]
struct PassedOn(OnceLock<Box<dyn Fn() + Send + Sync>>);

impl fmt::Debug for PassedOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "PassedOn(set)"
        } else {
            "PassedOn(unset)"
        })
    }
}

/// How many bytes are held; `None` while another thread holds the lock (a `Debug` must not
/// wait for it).
fn held_len(held: &Mutex<BytesMut>) -> Option<usize> {
    match held.try_lock() {
        Ok(held) => Some(held.len()),
        Err(TryLockError::Poisoned(held)) => Some(held.into_inner().len()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// The largest allocation of held bytes kept between bursts.
const HELD_KEEP: usize = 16 * 1024;

impl Backlog {
    /// A backlog with no input pending and nothing held.
    pub fn new() -> Self {
        Self::default()
    }

    /// The write state that lives in this backlog's allocation, for the write channel paired
    /// with the read channel that shares the backlog: one allocation instead of two, and one
    /// cache line that both channels touch. Every call returns the same state (clones share
    /// it): share it with one channel, as any [`WriteState`].
    ///
    /// ```
    /// use net_io::{Backlog, ByteWriteChannel};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> net_io::Result<()> {
    /// let backlog = Backlog::new();
    /// let state = backlog.write_state();
    /// let mut output = ByteWriteChannel::new(tokio::io::sink(), false);
    /// output.share_state(backlog.write_state());
    /// output.write_fully(b"not flushed yet").await?;
    /// assert!(state.has_unsent());
    /// # Ok(()) }
    /// ```
    pub fn write_state(&self) -> WriteState {
        WriteState::in_backlog(Arc::clone(&self.0))
    }

    /// Whether the read channel holds input its reader has not consumed yet, and is not
    /// waiting for more (never once it has seen the end of its stream), as its last read that
    /// consumed left it: a look-ahead that read from the transport since leaves it `false`.
    #[inline]
    pub fn is_pending(&self) -> bool {
        self.0.pending.load(Ordering::Relaxed)
    }

    /// Called by every read that may wait and every consuming read (a load when the flag
    /// stays as it is, which is the common case: inlined).
    #[inline]
    pub(crate) fn set(&self, pending: bool) {
        if self.0.pending.load(Ordering::Relaxed) != pending {
            self.change(pending);
        }
    }

    #[inline(never)]
    fn change(&self, pending: bool) {
        if pending {
            // Relaxed: a `hold` that misses it only sends at once.
            self.0.pending.store(true, Ordering::Relaxed);
        } else {
            // Under the lock, which `hold` decides under: a `hold` either came first, and the
            // reader, which checks for held bytes after this before it waits, sends them; or
            // it comes after and sees nothing pending.
            let _held = self.lock();
            self.0.pending.store(false, Ordering::Relaxed);
        }
    }

    /// Sets what the transport runs when a read through tokio's traits (which passes its bytes
    /// on, and may stop reading while its writes wait), or a [`Frames`](crate::Frames) stream
    /// that ends at an error (it never reads again), leaves nothing pending where input was
    /// pending or bytes are held: the transport sends what is held, as when its reader is about
    /// to wait (and a layer above it what it held itself meanwhile). Once: a later call changes
    /// nothing.
    pub fn on_passed_on(&self, f: impl Fn() + Send + Sync + 'static) {
        let _ = self.0.passed_on.0.set(Box::new(f));
    }

    /// A read through tokio's traits, or a frame stream's end at an error: nothing is pending,
    /// and what is held leaves.
    #[inline]
    pub(crate) fn passed_on(&self) {
        let was_pending = self.is_pending();
        self.set(false);
        if was_pending || self.is_holding() {
            if let Some(f) = self.0.passed_on.0.get() {
                f();
            }
        }
    }

    /// Holds `bytes` back after those already held, if input is pending or bytes are already
    /// held (which these must not overtake), and the total stays within `limit`; `false`
    /// (nothing held) otherwise. The transport sends held bytes before anything else written
    /// to it.
    #[must_use = "on `false` nothing was held: the bytes must be written another way"]
    pub fn hold(&self, bytes: &[u8], limit: usize) -> bool {
        self.hold_if(bytes, limit, true)
    }

    /// Holds `bytes` back after those already held, as [`hold`](Self::hold), but whether or not
    /// input is pending: for a layer above the transport that holds its own bytes while input is
    /// pending (TLS plaintext, sealed as one record per burst) and turns them into the
    /// transport's when its reader is about to wait, then has the transport send them. `false`
    /// (nothing held) once holding ended for good, or when the total would pass `limit`.
    #[must_use = "on `false` nothing was held: the bytes must be written another way"]
    pub fn hold_regardless(&self, bytes: &[u8], limit: usize) -> bool {
        self.hold_if(bytes, limit, false)
    }

    /// [`hold`](Self::hold) when `only_pending`, else
    /// [`hold_regardless`](Self::hold_regardless).
    fn hold_if(&self, bytes: &[u8], limit: usize, only_pending: bool) -> bool {
        let mut held = self.lock();
        if self.0.closed.load(Ordering::Acquire)
            || held.len() + bytes.len() > limit
            || (only_pending && held.is_empty() && !self.0.pending.load(Ordering::Relaxed))
        {
            return false;
        }
        held.extend_from_slice(bytes);
        self.0.holding.store(true, Ordering::Release);
        true
    }

    /// Ends holding for good: from now on [`hold`](Self::hold) returns `false`, so that later
    /// writes reach the transport and learn that it closed or failed. Bytes already held stay
    /// until the transport sends or clears them.
    pub fn close(&self) {
        // No lock: a transport may close while it sends held bytes. A `hold` racing with this
        // may still land; the transport sends or clears it with the rest.
        self.0.closed.store(true, Ordering::Release);
    }

    /// Whether writes are held back now: input is pending and holding has not ended.
    #[inline]
    pub fn is_deferring(&self) -> bool {
        self.is_pending() && !self.0.closed.load(Ordering::Acquire)
    }

    /// Whether bytes may be held (cheap: no lock).
    #[inline]
    pub fn is_holding(&self) -> bool {
        self.0.holding.load(Ordering::Acquire)
    }

    /// Runs `f` on the held bytes (a transport sends a prefix and advances past it, or clears
    /// them); returns what `f` returns.
    pub fn with_held<R>(&self, f: impl FnOnce(&mut BytesMut) -> R) -> R {
        let mut held = self.lock();
        let result = f(&mut held);
        if held.is_empty() {
            self.0.holding.store(false, Ordering::Release);
            // Bytes sent were advanced past, and `capacity()` counts only what is left after
            // them: take the whole allocation back (no copy: nothing is held) to see its size.
            if held.capacity() > HELD_KEEP || held.try_reclaim(HELD_KEEP + 1) {
                *held = BytesMut::new();
            }
        }
        result
    }

    fn lock(&self) -> MutexGuard<'_, BytesMut> {
        self.0.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use bytes::Buf;

    use super::*;

    /// What reads and writes touch ends within the allocation's first 64 bytes (an `Arc`'s
    /// two counts, 16 bytes, come first): the transport's hook, cold, comes after it.
    #[test]
    fn the_hot_fields_fit_in_the_first_64_bytes_of_the_allocation() {
        let hot_end = offset_of!(Shared, held) + size_of::<Mutex<BytesMut>>();
        assert!(16 + hot_end <= 64, "{hot_end}");
        assert!(offset_of!(Shared, passed_on) >= hot_end);
    }

    /// A backlog with input pending.
    fn pending() -> Backlog {
        let backlog = Backlog::new();
        backlog.set(true);
        backlog
    }

    #[test]
    fn the_pending_flag_follows_every_change() {
        let backlog = Backlog::new();
        assert!(!backlog.is_pending());
        backlog.set(true);
        assert!(backlog.is_pending());
        backlog.set(true);
        assert!(backlog.is_pending());
        backlog.set(false);
        assert!(!backlog.is_pending());
    }

    /// Bytes are held while input is pending, or after bytes already held (which they must not
    /// overtake), up to the limit exactly; never once holding was closed.
    #[test]
    fn hold_holds_exactly_when_pending_or_holding_within_the_limit_and_open() {
        assert!(
            !Backlog::new().hold(b"a", 10),
            "nothing pending, nothing held"
        );
        let backlog = pending();
        assert!(!backlog.hold(&[1; 11], 10), "past the limit");
        assert!(!backlog.is_holding());
        assert!(backlog.hold(&[1; 4], 10));
        assert!(backlog.is_holding());
        backlog.set(false);
        assert!(
            backlog.hold(&[2; 6], 10),
            "after held bytes, up to the limit"
        );
        assert!(!backlog.hold(&[3], 10), "one past the limit");
        backlog.with_held(|held| assert_eq!(&held[..], [1, 1, 1, 1, 2, 2, 2, 2, 2, 2]));
        let closed = pending();
        closed.close();
        assert!(!closed.hold(b"a", 10), "closed");
    }

    #[test]
    fn writes_are_deferred_while_input_is_pending_and_holding_is_open() {
        let backlog = Backlog::new();
        assert!(!backlog.is_deferring());
        backlog.set(true);
        assert!(backlog.is_deferring());
        backlog.close();
        assert!(!backlog.is_deferring());
    }

    /// A read that passes its bytes on leaves nothing pending, and runs the transport's hook
    /// when (and only when) input was pending or bytes are held (a layer above the transport
    /// may hold bytes of its own while input is pending).
    #[test]
    fn passing_bytes_on_runs_the_hook_after_pending_input_or_with_bytes_held() {
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let backlog = pending();
        let counted = Arc::clone(&runs);
        backlog.on_passed_on(move || {
            counted.fetch_add(1, Ordering::Relaxed);
        });
        backlog.passed_on();
        assert!(!backlog.is_pending());
        assert_eq!(runs.load(Ordering::Relaxed), 1, "input was pending");
        backlog.passed_on();
        assert_eq!(
            runs.load(Ordering::Relaxed),
            1,
            "nothing pending, nothing held"
        );
        assert!(backlog.hold_regardless(b"answer", 64));
        backlog.passed_on();
        assert!(!backlog.is_pending());
        assert_eq!(runs.load(Ordering::Relaxed), 2, "bytes held");
        backlog.with_held(BytesMut::clear);
        assert!(!backlog.is_holding());
    }

    /// The held bytes' allocation is kept between bursts up to `HELD_KEEP` bytes exactly,
    /// counted over the whole allocation (also when the bytes were advanced past).
    #[test]
    fn an_allocation_of_held_bytes_is_kept_up_to_held_keep() {
        for (size, advanced, kept) in [
            (100, false, true),
            // A write buffer's worth of answers.
            (8 * 1024, false, true),
            (HELD_KEEP, false, true),
            (HELD_KEEP, true, true),
            (HELD_KEEP + 1, false, false),
            (HELD_KEEP + 1, true, false),
        ] {
            let backlog = Backlog::new();
            backlog.with_held(|held| {
                *held = BytesMut::with_capacity(size);
                if advanced {
                    held.extend_from_slice(&vec![0; size]);
                    held.advance(size);
                }
            });
            let capacity = backlog.with_held(|held| {
                let _ = held.try_reclaim(size);
                held.capacity()
            });
            assert_eq!(
                capacity >= size,
                kept,
                "{size} (advanced: {advanced}): {capacity}"
            );
        }
    }

    /// `Debug` shows how many bytes are held, never the bytes, and does not wait for the lock.
    #[test]
    fn a_backlog_shows_how_many_bytes_it_holds() {
        let backlog = pending();
        assert!(backlog.hold(b"secret", 64));
        assert_eq!(
            format!("{backlog:?}"),
            "Backlog { pending: true, holding: true, closed: false, held_bytes: Some(6), .. }"
        );
        let shown = backlog.with_held(|_| format!("{backlog:?}"));
        assert!(shown.contains("held_bytes: None"), "{shown}");
    }
}
