//! [`ByteWriteChannel`]: buffered writes of bytes, text and integers to any `AsyncWrite`.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::AsyncWrite;
use tokio_util::codec::Encoder;

use crate::error::Failure;
use crate::exclusive::{self, Exclusive};
use crate::pipe::PipeWriter;
use crate::{Backlog, Error, Result, WriteState};

/// The most bytes held in a shared backlog (see `hold_while`); a write past it goes to the
/// transport, which sends the held bytes first.
const HOLD_LIMIT: usize = 64 * 1024;

/// The most bytes a writer buffers before it writes them to the transport.
const WRITE_BUFFER: usize = 8 * 1024;

/// The most bytes one `poll_write` hands to the transport directly.
const MAX_DIRECT: usize = 64 * 1024;

enum Sink {
    /// Only `Send` is asked of the writer, and the channel is `Sync` all the same (see
    /// [`Exclusive`]).
    Io(Exclusive<dyn AsyncWrite + Send + Unpin>),
    Pipe(PipeWriter),
}

impl Sink {
    #[inline]
    fn pin(&mut self) -> Pin<&mut (dyn AsyncWrite + Send + Unpin)> {
        match self {
            Sink::Io(w) => Pin::new(exclusive::get(w)),
            Sink::Pipe(p) => Pin::new(p),
        }
    }
}

/// The writing end of a byte stream: bytes, text and integers to any [`AsyncWrite`].
///
/// Writes go into a buffer of up to 8 KiB, which is written to the transport when it fills, on
/// [`flush`](Self::flush), and, in `auto_flush` mode, at the end of every write call (the peer
/// sees each write without a `flush`). A write of up to 8 KiB that does not fit the room left
/// waits for what the buffer holds to be written out, then is buffered whole, as tokio's
/// `BufWriter` does; a larger write goes to the transport directly, after what the buffer
/// holds. A slow peer holds the writer back (backpressure); memory never grows past the
/// buffer, also when write calls are dropped while they wait (see
/// [Dropped writes](#dropped-writes)), but for [`write_frame`](Self::write_frame): a frame
/// that does not fit the room left is added whole, the buffer's allocation growing to hold it
/// (doubling: a small frame that meets the end of the buffer leaves it at 16 KiB, which it
/// keeps), and an allocation larger than 16 KiB (a large frame) is given back once the frame
/// has been written out — by that call, or by whatever writes the buffer out after the call
/// was dropped — or taken out again (a write that timed out without effect).
///
/// Close with [`flush_and_close`](Self::flush_and_close): it writes what is buffered, then shuts
/// the transport's write side down (a socket sends FIN; its read side keeps working). Dropping
/// the channel instead drops the transport **without** writing what is still buffered, logs a
/// `warn` event with the number of bytes lost (a `debug` event once a write or flush of the
/// channel returned [`Error::Timeout`], until what it kept was written out, or when its last
/// write or flush was dropped while it waited, by a deadline of the caller's own or a
/// `select!`: its caller knows, and a peer that reads nothing must not be able to fill a log
/// kept at `info`; a `debug` event too once the connection failed, as its owner told the
/// [shared state](WriteState::fail), a socket once a read reported the peer's reset: no flush
/// could have sent them) and tells the
/// [shared state](Self::share_state) (a socket then resets the connection on close; the reader
/// of an in-memory [`ByteChannel`](crate::ByteChannel) fails with [`Error::Cancelled`] once it
/// has read what was delivered, never seeing a clean end of a stream that lacks those bytes).
/// A channel dropped with nothing lost ends a pipe's stream cleanly.
///
/// [`total_bytes_written`](Self::total_bytes_written) counts the bytes writes accepted.
///
/// A channel is `Send + Sync + 'static` (of the writer, only `Send` is asked): it moves into a
/// spawned task, and a type that holds one can be borrowed across an `.await` in one.
///
/// # Failures
///
/// A failed write is never retried into duplicates, and a failed channel never closes cleanly:
///
/// - **[`Error::Timeout`] during a write call** (the transport saw no progress in time): if
///   none of the call's bytes had reached the transport, the call had no effect: its bytes
///   are taken out of the buffer again (bytes accepted by earlier calls stay buffered, in
///   order), the error is returned and the channel stays usable, so retrying the call sends
///   its bytes exactly once. If some of its bytes had reached the transport, the channel is
///   failed for good, as below (a retry would send them twice). Both return `Timeout`:
///   [`is_closed_for_write`](Self::is_closed_for_write) tells them apart (`false`: retry;
///   `true`: every later call returns the same `Timeout` at once, so a loop that retries on
///   `Timeout` must check it).
/// - **`Error::Timeout` during [`flush`](Self::flush)**: the buffer is kept; retrying the
///   flush goes on where it stopped, nothing is sent twice.
/// - **Any other transport error** during a write or a flush fails the channel for good: the
///   buffer and the transport are dropped (the reader of an in-memory
///   [`ByteChannel`](crate::ByteChannel) then fails with [`Error::Cancelled`] once it has read
///   what was delivered, never sees a clean end), and every later write, flush or close
///   reports the same error (the same variant, [`io::ErrorKind`], OS error code and inner
///   error, see [Failures reported again](Error#failures-reported-again)).
///   [`is_closed_for_write`](Self::is_closed_for_write) is then true.
/// - **[`flush_and_close`](Self::flush_and_close) on a failed channel, or when its own flush
///   fails** (a timeout included), does not shut the transport down (no FIN, no TLS
///   `close_notify`, nothing that tells the peer the data ended well): it drops the transport
///   and returns the error, and the channel is failed for good.
/// - **The transport's shutdown fails** (in [`flush_and_close`](Self::flush_and_close) or
///   `poll_shutdown`): the channel is failed for good, as above; a second shutdown reports
///   the same error, not success.
/// - **[`flush_and_close`](Self::flush_and_close) (or `poll_shutdown`) after a write that went
///   to the transport directly was dropped part-way** (see [Dropped writes](#dropped-writes)),
///   whatever was written after it: the stream ends in the middle of that write, so the
///   transport is dropped without a shutdown and the close fails the channel for good with an
///   [`Error::Io`] of kind [`io::ErrorKind::BrokenPipe`], which every later operation reports.
///   A write that waited part-way and then went on to its end (its future polled again) left
///   nothing missing.
///
/// # Dropped writes
///
/// No write is all-or-nothing, but dropping a write future before it completes (a
/// `tokio::select!` branch that lost, a timeout) leaves the channel open and in a defined state:
///
/// - Bytes that reached the channel's buffer stay there, in order, until they are written: the
///   next write, [`flush`](Self::flush) or [`flush_and_close`](Self::flush_and_close) sends
///   them. Nothing is written twice.
/// - Typed writes (`write_u32`, ...), [`write_frame`](Self::write_frame) and, but for the case
///   below, writes of up to 8 KiB copy their bytes into it whole before they wait, so
///   a dropped one is never cut: it is sent whole with what follows, or not at all when it was
///   dropped while it waited for room. One that does not fit the room left, and a
///   `write_frame` that finds the buffer holding 8 KiB or more, first wait for the buffer to be
///   written out and add nothing until then, so calls dropped over and over against a peer
///   that takes nothing never grow the buffer past its size (`write_frame`: its size and one
///   frame).
/// - A write that goes to the transport directly — one larger than 8 KiB, or, in `auto_flush`
///   mode, one made while the buffer is empty — may be dropped after the transport took a
///   prefix of it: that prefix is sent, the rest of the slice is not.
///
/// So the peer receives everything written before the dropped write, then a prefix (from
/// nothing to all) of its bytes, then whatever is written next. A protocol with framing cannot
/// go on after that: close or [`cancel`](Self::cancel) the channel. The
/// [shared state](Self::share_state) counts the rest of such a write as unsent, then as lost
/// once the channel ends or its next write that goes to the transport directly starts: the
/// close of a socket of
/// `net-sockets` then resets (TLS: sends no `close_notify`). On any transport,
/// `flush_and_close` (and `poll_shutdown`) then reports an error instead of shutting the
/// transport down (no FIN, no `close_notify`; see [Failures](#failures)), and the reader of an
/// in-memory [`ByteChannel`](crate::ByteChannel) fails instead of seeing a clean end (also
/// when the channel is dropped instead).
/// [`flush`](Self::flush) itself loses
/// nothing when dropped.
///
/// # tokio's I/O traits
///
/// The channel is an [`AsyncWrite`], so it works with [`tokio::io::copy`],
/// [`tokio_util::codec::FramedWrite`] and anything else written against tokio's traits:
///
/// - `poll_write` accepts what fits in the room left in the buffer (unlike
///   [`write_fully`](Self::write_fully), which buffers a call whole or not at all), and a
///   write of 8 KiB or more with an empty buffer goes to the transport directly. It writes the
///   buffer out first when it is full, or when what a slow transport has not taken yet fills
///   the end of the buffer's allocation (so that the buffer keeps to its 8 KiB). In
///   `auto_flush` mode it then tries to flush without waiting (call `poll_flush` to be sure,
///   as the trait says). So after `AsyncWriteExt::write_all` on a transport that was full (a
///   TLS record the socket could not take yet), the last bytes may wait for the next write or
///   a flush: a task that writes and then waits for something else flushes first
///   (`AsyncWriteExt::flush`). The channel's own [`write_fully`](Self::write_fully) and
///   typed writes wait for their auto-flush. The rules of [Failures](#failures) apply to each
///   call, but for one thing: an error from `poll_write` means that it took nothing (tokio's
///   contract), so one whose bytes the transport took before its flush failed returns how
///   many it took, and the failure comes with the next call.
/// - `poll_flush` is [`flush`](Self::flush), but for a channel closed cleanly: there it
///   returns `Ok(())` (nothing is left to flush), as tokio's `TcpStream` does, so a
///   `FramedWrite` may be closed twice.
/// - `poll_shutdown` is [`flush_and_close`](Self::flush_and_close), with its failure rules;
///   on a channel already closed cleanly it returns `Ok(())` (it may be called again).
///
/// Errors travel inside an [`io::Error`]; `Error::from` recovers this crate's error.
///
/// # Examples
///
/// ```
/// use net_io::ByteWriteChannel;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> net_io::Result<()> {
/// let (client, mut server) = tokio::io::duplex(1024);
/// let mut output = ByteWriteChannel::new(client, false);
/// output.write_string_utf8("STAT\r\n").await?;
/// output.write_u16(512).await?;
/// output.flush_and_close().await?;
///
/// let mut received = Vec::new();
/// tokio::io::AsyncReadExt::read_to_end(&mut server, &mut received).await?;
/// assert_eq!(received, b"STAT\r\n\x02\x00");
/// # Ok(()) }
/// ```
pub struct ByteWriteChannel {
    /// `None` once closed, cancelled or failed.
    sink: Option<Sink>,
    buf: BytesMut,
    auto_flush: bool,
    /// The failure every later operation reports.
    failed: Option<Failure>,
    /// Bytes accepted by writes.
    written: u64,
    /// While it is pending, auto-flushed writes are held in it (see `hold_while`).
    backlog: Option<Backlog>,
    /// Whether `cancel` ended it (not a clean close, though no failure is recorded).
    cancelled: bool,
    /// Told whether bytes are held or were thrown away (see `share_state`).
    state: Option<WriteState>,
    /// A direct write is waiting, or was dropped, after the transport took part of it: a stream
    /// that ends now ends in the middle of that write. (The next direct write that starts finds
    /// the earlier one dropped: its rest is lost for good.)
    torn: bool,
    /// Bytes its writes accepted were thrown away: a direct write cut short was found dropped
    /// (the next direct write started), so the stream misses the rest of it for good and must
    /// never end cleanly; or the channel ended holding some. A state shared later hears of it
    /// at once.
    lost: bool,
    /// A write call or a flush timed out (a write call without effect): the next write is not
    /// held in the backlog but goes to the transport (which holds it itself if it may), so
    /// that the transport learns that the stream goes on, and a close does not end it as a
    /// failed one.
    timed_out: bool,
    /// A write call or a flush returned [`Error::Timeout`] and kept bytes in the buffer: its
    /// caller was told that they may never be sent, so a drop that throws bytes away after it
    /// is no forgotten flush (it logs a `debug` event, not a `warn`). A peer that reads
    /// nothing decides how often this happens. Cleared once the buffer is written out (the
    /// kept bytes left): bytes dropped after that are a forgotten flush again.
    timeout_reported: bool,
    /// The last write call or flush was left waiting for the transport (it returned
    /// `Pending`) and has not ended since: a drop now follows a wait that its caller gave up
    /// (a deadline of its own, a `select!`), as after a `Timeout`, not a forgotten flush (a
    /// `debug` event, not a `warn`: a peer that reads nothing decides how often this happens).
    waiting: bool,
    /// The buffer's allocation grew past twice its usual size to hold a large frame: given back
    /// once the buffer is written out (by the `write_frame` call, or by whatever writes it out
    /// after that call was dropped or timed out).
    large: bool,
}

impl fmt::Debug for ByteWriteChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteWriteChannel")
            .field("buffered", &self.buf.len())
            .field("auto_flush", &self.auto_flush)
            .field("closed", &self.sink.is_none())
            .field("failed", &self.failed)
            .field("total_bytes_written", &self.written)
            .finish_non_exhaustive()
    }
}

macro_rules! typed_writes {
    ($($(#[$doc:meta])* $name:ident($ty:ty) = $put:ident;)*) => {$(
        $(#[$doc])*
        ///
        /// # Errors
        ///
        /// [`Error::ClosedForWrite`] after close, or the transport's error (see
        /// [Failures](Self#failures)).
        ///
        /// # Cancel safety
        ///
        /// Not cancel safe, but a dropped call leaves the value either not written at all
        /// (dropped while it waited for room: a value that does not fit the room left in the
        /// buffer waits for the buffer to be written out before it is added) or buffered whole,
        /// to be sent with what follows (dropped while the buffer was written out or flushed
        /// after it was added); the caller cannot tell which. Calls dropped over and over
        /// against a peer that takes nothing never grow the buffer past its 8 KiB (see
        /// [Dropped writes](Self#dropped-writes)).
        pub fn $name(&mut self, value: $ty) -> impl Future<Output = Result<()>> + Send + '_ {
            const CALL: usize = std::mem::size_of::<$ty>();
            // Until the value is added to the buffer.
            let mut value = Some(value);
            let mut rest = Rest::Start;
            poll_fn(move |cx| {
                if let Some(v) = value {
                    if let Rest::Start = rest {
                        self.check_writable()?;
                        rest = if self.buf.len() + CALL > WRITE_BUFFER || !self.fits_in_place(CALL) {
                            Rest::Room
                        } else {
                            Rest::Done
                        };
                    }
                    if !matches!(rest, Rest::Done) {
                        ready!(self.poll_rest(cx, &[], &mut rest))?;
                    }
                    value = None;
                    self.buffer().$put(v);
                    self.added(CALL)?;
                    self.written += CALL as u64;
                    rest = self.after_write(CALL);
                }
                if let Rest::Done = rest {
                    // Added to the buffer, nothing to write out (the usual case): as
                    // `poll_rest` would answer, without the call.
                    self.waiting = false;
                    return Poll::Ready(Ok(()));
                }
                self.poll_rest(cx, &[], &mut rest)
            })
        }
    )*};
}

impl ByteWriteChannel {
    /// Wraps a writer. With `auto_flush`, every write call ends flushed.
    pub fn new<W>(writer: W, auto_flush: bool) -> Self
    where
        W: AsyncWrite + Send + Unpin + 'static,
    {
        Self::with_sink(Sink::Io(Box::new(Mutex::new(writer))), auto_flush)
    }

    pub(crate) fn from_pipe(writer: PipeWriter, auto_flush: bool) -> Self {
        Self::with_sink(Sink::Pipe(writer), auto_flush)
    }

    fn with_sink(sink: Sink, auto_flush: bool) -> Self {
        ByteWriteChannel {
            sink: Some(sink),
            buf: BytesMut::new(),
            auto_flush,
            failed: None,
            written: 0,
            backlog: None,
            cancelled: false,
            state: None,
            torn: false,
            lost: false,
            timed_out: false,
            timeout_reported: false,
            waiting: false,
            large: false,
        }
    }

    /// Keeps `state` told whether this channel holds bytes its writes accepted that have not
    /// reached the transport, and whether it threw such bytes away: cancelled or dropped while
    /// it held some, or after a write that went to the transport directly was dropped part-way
    /// (see [Dropped writes](Self#dropped-writes)). The owner of the transport reads it to end
    /// the stream as a failed one rather than a complete one when bytes are missing: the
    /// sockets of `net-sockets` share one with the write channels they open, and their close
    /// then resets the connection instead of sending FIN (TLS: sends no `close_notify`).
    /// Replaces a state shared before; a state shared after the channel already threw bytes
    /// away hears of it at once.
    pub fn share_state(&mut self, state: WriteState) {
        state.set_unsent(!self.buf.is_empty() || self.torn);
        if self.lost {
            state.set_lost();
        }
        self.state = Some(state);
    }

    /// Tells the shared state whether bytes are unsent now: buffered, or the rest of a write
    /// cut short.
    fn note_buffer(&self) {
        if let Some(state) = &self.state {
            state.set_unsent(!self.buf.is_empty() || self.torn);
        }
    }

    /// Tells the shared state that the last `n` bytes of the buffer were just added by a
    /// call, unless the transport's owner ended the stream meanwhile: an owner on another
    /// thread that ended it after this call checked (a socket's close) may have looked for
    /// unsent bytes before they came, and decided on a clean end without them. Then the
    /// bytes are taken back out and the call fails with the end's error, having added
    /// nothing. Both sides are sequentially consistent (see [`WriteState::add_unsent`]).
    fn added(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            // Nothing added (an empty write, a frame encoded to no bytes): no unsent bytes to
            // tell of, and nothing for the end to lose.
            self.note_buffer();
            return Ok(());
        }
        #[cfg(test)]
        tests::before_noting();
        if self.state.as_ref().is_none_or(WriteState::add_unsent) {
            return Ok(());
        }
        let keep = self.buf.len() - n;
        self.buf.truncate(keep);
        self.note_buffer();
        Err(self.fail_ended())
    }

    /// Tells the shared state, if bytes are about to be thrown away (or a write was cut
    /// short: the stream already ends in the middle of it).
    fn abandon_buffered(&mut self) {
        if !self.buf.is_empty() || self.torn {
            self.mark_lost();
        }
        self.torn = false;
    }

    /// Bytes the channel's writes accepted are lost: the stream must not end cleanly.
    fn mark_lost(&mut self) {
        self.lost = true;
        if let Some(state) = &self.state {
            state.set_lost();
        }
    }

    /// Holds the auto-flushed writes of this channel's own write methods in `backlog` while it
    /// is pending (flush coalescing without a call into the transport per write). Writes
    /// through its [`AsyncWrite`] implementation go to the transport, whose own holding, if
    /// any, applies (a `net-sockets` socket's does).
    ///
    /// Only for a channel that writes straight to a transport that sends the backlog's held
    /// bytes before anything written to it, and when its reader is about to wait for input
    /// (`net-sockets` does this for its plain sockets); never for a channel under another layer
    /// (TLS), whose transport holds different bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use net_io::{Backlog, ByteReadChannel, ByteWriteChannel, LineEnding};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> net_io::Result<()> {
    /// let backlog = Backlog::new();
    /// let mut input = ByteReadChannel::new(&b"one\ntwo\n"[..]);
    /// input.share_backlog(backlog.clone());
    /// let (transport, mut peer) = tokio::io::duplex(64);
    /// let mut output = ByteWriteChannel::new(transport, true);
    /// output.hold_while(backlog.clone());
    ///
    /// input.read_line(80, LineEnding::Default).await?;
    /// output.write_string_utf8("1\n").await?; // "two" is pending: held
    /// backlog.with_held(|held| assert_eq!(&held[..], b"1\n"));
    /// input.read_line(80, LineEnding::Default).await?;
    /// output.write_string_utf8("2\n").await?; // nothing pending: to the transport
    /// # use tokio::io::AsyncReadExt;
    /// let mut sent = [0; 2];
    /// peer.read_exact(&mut sent).await?;
    /// assert_eq!(&sent, b"2\n"); // a real transport sends the held bytes first
    ///
    /// backlog.close();
    /// assert!(!backlog.hold(b"late", 1024));
    /// # Ok(()) }
    /// ```
    pub fn hold_while(&mut self, backlog: Backlog) {
        self.backlog = Some(backlog);
    }

    /// Whether every write call ends flushed.
    pub fn auto_flush(&self) -> bool {
        self.auto_flush
    }

    /// Whether the channel was closed, cancelled or failed for good; writes then fail (with
    /// [`Error::ClosedForWrite`], or with the failure).
    ///
    /// It is this channel's own state: a close of its socket (or of whatever
    /// [ended](WriteState::end) its shared state), or the cancel of an in-memory
    /// [`ByteChannel`](crate::ByteChannel)'s reader, is learnt from the next write or flush
    /// call (the first that reaches the transport, for a `ByteChannel`), which fails, and only
    /// then does this turn true (Ktor's `isClosedForWrite` of a `ByteChannel` turns true as soon
    /// as its reader cancels).
    pub fn is_closed_for_write(&self) -> bool {
        self.sink.is_none()
    }

    /// How many bytes writes have accepted so far (Ktor's `totalBytesWritten`), whether or not
    /// they have left the buffer yet. A write call that had no effect (see
    /// [Failures](Self#failures)) counts nothing; one dropped before it completed (see
    /// [Dropped writes](Self#dropped-writes)) counts exactly the bytes it left buffered or
    /// that the transport took, so the count before and after such a call tells how much of
    /// it the peer will receive. One that failed the channel for good counts the bytes of it
    /// that the transport took, if any (a prefix, for a typed write or a frame too: the rest
    /// was thrown away with the buffer).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> net_io::Result<()> {
    /// let (mut output, _input) = net_io::ByteChannel::new(false);
    /// output.write_string_utf8("abc").await?;
    /// output.write_u32(7).await?;
    /// assert_eq!(output.total_bytes_written(), 7);
    /// # Ok(()) }
    /// ```
    pub fn total_bytes_written(&self) -> u64 {
        self.written
    }

    typed_writes! {
        /// Writes one byte.
        write_u8(u8) = put_u8;
        /// Writes one signed byte.
        write_i8(i8) = put_i8;
        /// Writes a big-endian `u16`.
        write_u16(u16) = put_u16;
        /// Writes a big-endian `i16`.
        write_i16(i16) = put_i16;
        /// Writes a big-endian `u32`.
        write_u32(u32) = put_u32;
        /// Writes a big-endian `i32`.
        write_i32(i32) = put_i32;
        /// Writes a big-endian `u64`.
        write_u64(u64) = put_u64;
        /// Writes a big-endian `i64`.
        write_i64(i64) = put_i64;
        /// Writes a big-endian IEEE 754 `f32`.
        write_f32(f32) = put_f32;
        /// Writes a big-endian IEEE 754 `f64`.
        write_f64(f64) = put_f64;
        /// Writes a little-endian `u16`.
        write_u16_le(u16) = put_u16_le;
        /// Writes a little-endian `i16`.
        write_i16_le(i16) = put_i16_le;
        /// Writes a little-endian `u32`.
        write_u32_le(u32) = put_u32_le;
        /// Writes a little-endian `i32`.
        write_i32_le(i32) = put_i32_le;
        /// Writes a little-endian `u64`.
        write_u64_le(u64) = put_u64_le;
        /// Writes a little-endian `i64`.
        write_i64_le(i64) = put_i64_le;
        /// Writes a little-endian IEEE 754 `f32`.
        write_f32_le(f32) = put_f32_le;
        /// Writes a little-endian IEEE 754 `f64`.
        write_f64_le(f64) = put_f64_le;
    }

    /// Writes all of `src`.
    ///
    /// # Errors
    ///
    /// [`Error::ClosedForWrite`] after close, or the transport's error: after
    /// [`Error::Timeout`] the call either had no effect or the channel failed for good (see
    /// [Failures](Self#failures)).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a dropped call of up to 8 KiB that went into the buffer is sent whole
    /// or not at all, but part of a larger one, or of one that went to the transport directly
    /// in `auto_flush` mode, may have been written (see [Dropped writes](Self#dropped-writes)
    /// for exactly what the peer then receives).
    pub fn write_fully<'a>(
        &'a mut self,
        src: &'a [u8],
    ) -> impl Future<Output = Result<()>> + Send + 'a {
        self.write_call(src, Self::start_write)
    }

    /// A write call of `src` as one small state (instead of nested async bodies: the task of a
    /// connection that awaits a write holds this future): `start` (at the first poll) says
    /// what is left to do, which [`poll_rest`](Self::poll_rest) then does.
    fn write_call<'a, B>(
        &'a mut self,
        src: B,
        start: impl Fn(&mut Self, &[u8]) -> Result<Rest> + Send + 'a,
    ) -> impl Future<Output = Result<()>> + Send + 'a
    where
        B: AsRef<[u8]> + Send + 'a,
    {
        let mut rest = Rest::Start;
        poll_fn(move |cx| {
            if let Rest::Start = rest {
                rest = start(self, src.as_ref())?;
            }
            self.poll_rest(cx, src.as_ref(), &mut rest)
        })
    }

    /// The first step of [`write_fully`](Self::write_fully): holds, buffers or hands over
    /// `src`; returns what is left to do.
    fn start_write(&mut self, src: &[u8]) -> Result<Rest> {
        self.check_writable()?;
        if self.auto_flush && self.buf.is_empty() {
            if !std::mem::take(&mut self.timed_out) && self.held(src) {
                self.written += src.len() as u64;
                return Ok(Rest::Done);
            }
            // About to be flushed anyway: skip the copy. Straight to the transport, which is
            // then flushed (unless the shared backlog is pending: then the flush waits for the
            // reader).
            return Ok(Rest::Direct {
                sent: 0,
                then: Then::FlushUnlessDeferring,
            });
        }
        if self.buf.len() + src.len() <= WRITE_BUFFER && self.fits_in_place(src.len()) {
            self.buffer().extend_from_slice(src);
            self.added(src.len())?;
            self.written += src.len() as u64;
            return Ok(self.after_write(src.len()));
        }
        if src.len() <= WRITE_BUFFER {
            // No larger than the buffer, but more than the room left (or, in a buffer left partly
            // written out by a call dropped or timed out while it wrote it, than the room at
            // the end of its allocation): the buffer is written out first, then `src` is
            // buffered whole, as `BufWriter` does (one transport write per buffer, not two;
            // the allocation never doubles; not sent after the buffer as a larger write is,
            // which a drop could cut).
            return Ok(Rest::RoomFor);
        }
        // Too big for the buffer: skip the copy.
        Ok(Rest::Through {
            then: if self.auto_flush {
                // All of `src` reached the transport: a failure now fails the channel.
                Then::FlushCall
            } else {
                Then::Done
            },
        })
    }

    /// Polls what is left of a write call (see [`Rest`]); `src` is the call's bytes, for the
    /// steps that write them straight to the transport.
    fn poll_rest(&mut self, cx: &mut Context<'_>, src: &[u8], rest: &mut Rest) -> Poll<Result<()>> {
        let polled = self.poll_rest_steps(cx, src, rest);
        self.waiting = polled.is_pending();
        polled
    }

    /// [`poll_rest`](Self::poll_rest)'s steps.
    fn poll_rest_steps(
        &mut self,
        cx: &mut Context<'_>,
        src: &[u8],
        rest: &mut Rest,
    ) -> Poll<Result<()>> {
        loop {
            match rest {
                Rest::Start | Rest::Done => return Poll::Ready(Ok(())),
                Rest::FlushCall { call } => {
                    let call = *call;
                    *rest = if !std::mem::take(&mut self.timed_out) && self.held(&self.buf) {
                        self.buf.clear();
                        self.note_buffer();
                        // What was kept after a timeout left with them.
                        self.timeout_reported = false;
                        if self.large {
                            // A large frame's rest left with them: its allocation goes now.
                            self.release_large();
                        }
                        Rest::Done
                    } else {
                        Rest::Drain { call, flush: true }
                    };
                }
                Rest::Room => {
                    if let Err(e) = ready!(self.poll_drain(cx)) {
                        *rest = Rest::Done;
                        return Poll::Ready(Err(self.call_failed(e, 0)));
                    }
                    *rest = Rest::Done;
                }
                Rest::RoomFor => {
                    if let Err(e) = ready!(self.poll_drain(cx)) {
                        *rest = Rest::Done;
                        return Poll::Ready(Err(self.call_failed(e, 0)));
                    }
                    self.buffer().extend_from_slice(src);
                    if let Err(e) = self.added(src.len()) {
                        *rest = Rest::Done;
                        return Poll::Ready(Err(e));
                    }
                    self.written += src.len() as u64;
                    *rest = self.after_write(src.len());
                }
                Rest::Drain { call, flush } => {
                    let (call, flush) = (*call, *flush);
                    if let Err(e) = ready!(self.poll_drain(cx)) {
                        *rest = Rest::Done;
                        return Poll::Ready(Err(self.call_failed(e, call)));
                    }
                    // A call with bytes of its own had them all reach the transport; one of
                    // none (an empty write, a frame encoded to no bytes) had none.
                    *rest = if flush {
                        Rest::Flush { took: call > 0 }
                    } else {
                        Rest::Done
                    };
                }
                Rest::Flush { took } => {
                    let took = *took;
                    let Some(sink) = self.sink.as_mut() else {
                        *rest = Rest::Done;
                        return Poll::Ready(Err(Error::ClosedForWrite));
                    };
                    let flushed = ready!(sink.pin().poll_flush(cx));
                    *rest = Rest::Done;
                    if let Err(e) = flushed {
                        let e = Error::from(e);
                        if !took && matches!(e, Error::Timeout) {
                            // A call of no bytes: it had no effect, as a `flush` that timed
                            // out in the transport (the buffer is written out).
                            self.timed_out = true;
                            return Poll::Ready(Err(e));
                        }
                        // The call's bytes all reached the transport: a failure now fails the
                        // channel.
                        return Poll::Ready(Err(self.fail(e)));
                    }
                }
                Rest::Through { then } => {
                    let then = *then;
                    if let Err(e) = ready!(self.poll_drain(cx)) {
                        *rest = Rest::Done;
                        return Poll::Ready(Err(self.call_failed(e, 0)));
                    }
                    *rest = Rest::Direct { sent: 0, then };
                }
                Rest::Direct { sent, then } => {
                    let then = *then;
                    // An auto-flushed write of nothing hands the transport nothing.
                    if *sent < src.len() || then != Then::FlushUnlessDeferring {
                        if let Err(e) = ready!(self.poll_write_direct(cx, src, sent)) {
                            // A timeout before any byte left has no effect; anything else
                            // fails.
                            let e = if *sent == 0 {
                                self.call_failed(e, 0)
                            } else {
                                self.fail(Error::from(e))
                            };
                            *rest = Rest::Done;
                            return Poll::Ready(Err(e));
                        }
                    }
                    *rest = match then {
                        Then::Done => Rest::Done,
                        Then::FlushCall => {
                            // As `Rest::FlushCall` with none of the call's bytes in the (empty)
                            // buffer: they all reached the transport.
                            if !std::mem::take(&mut self.timed_out) && self.held(&self.buf) {
                                Rest::Done
                            } else {
                                Rest::Flush { took: true }
                            }
                        }
                        Then::FlushUnlessDeferring => {
                            if self.backlog.as_ref().is_some_and(Backlog::is_deferring) {
                                Rest::Done
                            } else {
                                Rest::Flush {
                                    took: !src.is_empty(),
                                }
                            }
                        }
                    };
                }
            }
        }
    }

    /// Writes all of `src`.
    ///
    /// # Errors
    ///
    /// As [`write_fully`](Self::write_fully).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`write_fully`](Self::write_fully).
    pub fn write_bytes(&mut self, src: Bytes) -> impl Future<Output = Result<()>> + Send + '_ {
        self.write_call(src, Self::start_write)
    }

    /// Writes `s` as UTF-8.
    ///
    /// # Errors
    ///
    /// As [`write_fully`](Self::write_fully).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`write_fully`](Self::write_fully).
    pub fn write_string_utf8<'a>(
        &'a mut self,
        s: &'a str,
    ) -> impl Future<Output = Result<()>> + Send + 'a {
        // `write_fully`'s own future: no second state machine around it.
        self.write_fully(s.as_bytes())
    }

    /// Encodes `item` with a [`tokio_util::codec`] encoder and writes it.
    ///
    /// The encoder writes the whole frame into the channel's buffer, which grows to hold a frame
    /// larger than it; once such a frame has been written out (by this call, or, if it was
    /// dropped, by the next write or flush that writes the buffer out), or taken out again
    /// after a timeout without effect, the large allocation is given back. If the encoder
    /// fails, or panics, whatever it put into the buffer is taken out again, and the
    /// allocation a large failed frame made is given back: a caller that survives the panic
    /// never sends part of a frame (the panic goes on to the caller).
    ///
    /// # Errors
    ///
    /// The encoder's error; [`Error::ClosedForWrite`] and transport errors reach it through its
    /// `From<std::io::Error>`. The encoder is given a buffer of its own, after what earlier
    /// writes buffered: one that clears it (outside tokio-util's contract, which only appends)
    /// takes none of their bytes away.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, but a dropped call leaves the frame either not encoded at all (dropped
    /// while it waited for room: a call that finds the buffer holding 8 KiB or more waits for
    /// it to be written out before it encodes) or buffered whole, to be sent with what follows
    /// (dropped while the buffer was written out or flushed after it was encoded); the caller
    /// cannot tell which. Calls dropped over and over against a peer that takes nothing never
    /// make the buffer hold more than 8 KiB and one frame (see
    /// [Dropped writes](Self#dropped-writes)).
    ///
    /// # Examples
    ///
    /// ```
    /// use net_io::{ByteChannel, LineEnding};
    /// use tokio_util::codec::LinesCodec;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (mut output, mut input) = ByteChannel::new(true);
    /// output.write_frame(&mut LinesCodec::new(), "hello").await?;
    /// assert_eq!(input.read_line(80, LineEnding::Default).await?.as_deref(), Some("hello"));
    /// # Ok(()) }
    /// ```
    pub async fn write_frame<T, E>(&mut self, encoder: &mut E, item: T) -> Result<(), E::Error>
    where
        E: Encoder<T>,
        E::Error: From<io::Error>,
    {
        self.check_writable().map_err(io::Error::from)?;
        if self.buf.len() >= WRITE_BUFFER {
            // Full (calls were dropped while they waited): written out before another frame
            // is added, so that dropped calls cannot grow the buffer.
            self.make_room().await.map_err(io::Error::from)?;
        }
        // A write call that ends without polling the transport (its encoder failed) ends any
        // earlier wait too: a drop after it is no given-up wait.
        self.waiting = false;
        let before = self.buf.len();
        let encoded = if before == 0 {
            // An encoder that panics part-way must not leave part of a frame to be sent with
            // the next write (a caller may survive the panic): the guard takes it out as it
            // unwinds, as for an encoder that fails.
            let mut guard = PartialFrame {
                buf: self.buffer(),
                armed: true,
            };
            let encoded = encoder.encode(item, guard.buf);
            guard.armed = encoded.is_err();
            encoded
        } else {
            // Bytes earlier writes buffered: the encoder gets a buffer of its own after them
            // (the rest of the same allocation), so that one outside the contract (which
            // clears the buffer it is given, say) cannot take them away. A frame that fails,
            // or panics, is dropped with it.
            //
            // The two halves share the allocation, so a frame that outgrows the room after the
            // buffered bytes cannot take the free space before them (where bytes written out
            // were): it would be encoded into a new allocation and copied back, once per buffer
            // written out. That space is taken back first, without allocating: a move of the
            // buffered bytes to the front, only when at least as many were written out since.
            // Only a buffer partly written out has such space (its capacity, counted from
            // its first byte, is then less than its allocation's), and only asking for what
            // completes the allocation can take it back: `try_reclaim(WRITE_BUFFER)`, room
            // for 8 KiB more past bytes buffered in an 8 KiB allocation, never could, and
            // cost a call at every frame.
            if self.buf.capacity() < WRITE_BUFFER {
                let _ = self.buf.try_reclaim(WRITE_BUFFER.saturating_sub(before));
            }
            let mut frame = self.buf.split_off(before);
            let encoded = encoder.encode(item, &mut frame);
            if encoded.is_ok() {
                self.buf.unsplit(frame);
            }
            encoded
        };
        self.note_buffer();
        encoded?;
        let call = self.buf.len() - before;
        self.added(call).map_err(io::Error::from)?;
        // The encoder writes the whole frame into the buffer, which grows to hold a large one:
        // its allocation is given back once the buffer is written out (`poll_drain`), also
        // when this call is dropped or times out before that.
        if self.buf.capacity() > 2 * WRITE_BUFFER {
            self.large = true;
        }
        self.written += call as u64;
        self.finish_write(call).await.map_err(io::Error::from)?;
        if self.large && self.buf.is_empty() {
            // The frame left without a drain (held back in the shared backlog): give its
            // allocation back here.
            self.release_large();
        }
        Ok(())
    }

    /// Writes everything buffered to the transport and flushes it.
    ///
    /// # Errors
    ///
    /// [`Error::ClosedForWrite`] after close, or the transport's error. After
    /// [`Error::Timeout`] the buffer is kept and the channel stays usable; any other error
    /// fails it for good (see [Failures](Self#failures)).
    ///
    /// After a clean close this is [`Error::ClosedForWrite`] too (Ktor's `flush` does nothing
    /// there). The [`AsyncWrite`] implementation's flush differs after a clean close: it returns
    /// `Ok(())`, as tokio's own streams do. With `tokio::io::AsyncWriteExt` in scope,
    /// `channel.flush()` still calls this method; `AsyncWriteExt::flush(&mut channel)` calls
    /// the trait's.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost or written twice: bytes not yet written stay
    /// buffered for the next flush.
    pub async fn flush(&mut self) -> Result<()> {
        self.check_writable()?;
        poll_fn(|cx| self.poll_flush_buffer(cx)).await
    }

    /// Flushes, then closes the write side of the transport (a socket sends FIN, and its read
    /// side keeps working: a half-close). Later writes fail with [`Error::ClosedForWrite`].
    ///
    /// A channel that failed, or whose flush here fails, or whose stream misses the rest of a
    /// write dropped part-way, is not shut down (the peer must not take a failed stream for a
    /// complete one): the transport is dropped and the error returned (see
    /// [Failures](Self#failures)). In the last case what the channel buffers is not written
    /// out either ([`flush`](Self::flush) does). If the shutdown itself fails, the channel is
    /// failed for good with that error too.
    ///
    /// # Errors
    ///
    /// [`Error::ClosedForWrite`] if already closed (a second call after a clean close too:
    /// Ktor's `flushAndClose` does nothing there; `poll_shutdown` returns `Ok(())`), the
    /// channel's failure, the transport's error, or, after a write dropped part-way, an
    /// [`Error::Io`] of kind [`io::ErrorKind::BrokenPipe`].
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: if dropped before it completes, the channel may stay open with some bytes
    /// unwritten.
    pub async fn flush_and_close(&mut self) -> Result<()> {
        self.check_writable()?;
        poll_fn(|cx| self.poll_close(cx)).await
    }

    /// Drops what is buffered and closes: later writes fail with [`Error::ClosedForWrite`]
    /// (or, on a channel that had failed, with its failure).
    ///
    /// The transport is dropped without a graceful shutdown; if bytes were thrown away, the
    /// [shared state](Self::share_state) is told first. The reader of an in-memory
    /// [`ByteChannel`](crate::ByteChannel) fails with [`Error::Cancelled`] once it has read what
    /// was already delivered (Ktor's `cancel(cause)` fails the reader at once, buffered bytes
    /// and all, with the cause; no cause is carried here).
    pub fn cancel(&mut self) {
        if self.sink.is_none() {
            // Closed already (cleanly, cancelled, or failed): nothing to throw away, and a
            // clean close stays one.
            return;
        }
        self.abandon_buffered();
        self.buf = BytesMut::new();
        self.note_buffer();
        if let Some(Sink::Pipe(pipe)) = &self.sink {
            pipe.cancel();
        }
        self.sink = None;
        self.cancelled = true;
    }

    /// Ends the stream short of what it was to carry (a copy whose source failed): as
    /// [`cancel`](Self::cancel), and the shared state is told that bytes were lost, so that the
    /// transport's owner never ends it cleanly.
    pub(crate) fn cut_short(&mut self) {
        if self.sink.is_none() {
            // Closed already (cleanly, or failed, which told the shared state): nothing more
            // to end, and nothing thrown away.
            return;
        }
        self.mark_lost();
        self.cancel();
    }

    /// The write buffer, allocated at its full size on first use. (A caller that adds bytes
    /// then tells the shared state: `note_buffer`.)
    fn buffer(&mut self) -> &mut BytesMut {
        if self.buf.capacity() == 0 {
            self.buf.reserve(WRITE_BUFFER);
        }
        &mut self.buf
    }

    /// Fails with the channel's failure, or [`Error::ClosedForWrite`] once closed; once the
    /// transport's owner ended the shared state ([`WriteState::end`]), fails the channel with
    /// that error.
    #[inline]
    fn check_writable(&mut self) -> Result<()> {
        if let Some(failure) = &self.failed {
            return Err(failure.report());
        }
        if self.sink.is_none() {
            return Err(Error::ClosedForWrite);
        }
        // The transport's owner closed it: no bytes are accepted that could never be sent,
        // and the channel fails with the close's error, as when a write reaches the transport.
        if self.state.as_ref().is_some_and(WriteState::is_ended) {
            return Err(self.fail_ended());
        }
        Ok(())
    }

    /// Whether `n` more bytes fit the end of the buffer's allocation without growing it (the
    /// room before its bytes, where bytes written out were, is taken back when the allocation
    /// allows, without allocating). An empty buffer always does. A buffer left partly written
    /// out by a call dropped or timed out while it wrote it may not: a call is then written
    /// out first, instead of doubling the allocation.
    #[inline]
    fn fits_in_place(&mut self, n: usize) -> bool {
        self.buf.is_empty() || self.buf.capacity() - self.buf.len() >= n || self.buf.try_reclaim(n)
    }

    /// Fails the channel with the error its transport's owner [ended](WriteState::end) the
    /// shared state with (out of line: the write path only loads the flag).
    #[cold]
    #[inline(never)]
    fn fail_ended(&mut self) -> Error {
        let ended = self.state.as_ref().and_then(WriteState::ended);
        let e = ended.map_or(Error::ClosedForWrite, Failure::report);
        self.fail(e)
    }

    /// Before a call adds bytes to the buffer: writes what is buffered to the transport, so
    /// that calls dropped while they wait cannot grow the buffer. A timeout leaves the call
    /// without effect (the buffer is kept); anything else fails the channel.
    async fn make_room(&mut self) -> Result<()> {
        let mut rest = Rest::Room;
        poll_fn(|cx| self.poll_rest(cx, &[], &mut rest)).await
    }

    /// After a call added its last `call` bytes to the buffer: what is left to do (write it
    /// out if full, flush in auto-flush mode).
    fn after_write(&self, call: usize) -> Rest {
        if self.auto_flush {
            Rest::FlushCall { call }
        } else if self.buf.len() >= WRITE_BUFFER {
            Rest::Drain { call, flush: false }
        } else {
            Rest::Done
        }
    }

    /// Polls [`after_write`](Self::after_write)'s steps to their end.
    async fn finish_write(&mut self, call: usize) -> Result<()> {
        let mut rest = self.after_write(call);
        if let Rest::Done = rest {
            // Nothing to write out (the usual case): no poll of the steps.
            self.waiting = false;
            return Ok(());
        }
        poll_fn(|cx| self.poll_rest(cx, &[], &mut rest)).await
    }

    /// Holds `bytes` in the shared backlog, when one is pending and they fit; whether they
    /// were held (and so count as written).
    #[inline]
    fn held(&self, bytes: &[u8]) -> bool {
        self.backlog
            .as_ref()
            .is_some_and(|b| b.is_pending() && b.hold(bytes, HOLD_LIMIT))
    }

    /// Whether bytes its writes accepted wait in the buffer (for
    /// [`ByteReadChannel::copy_to`](crate::ByteReadChannel::copy_to)).
    pub(crate) fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Writes what is buffered, then `src`, to the transport, without copying `src` into the
    /// buffer (for [`ByteReadChannel::copy_to`](crate::ByteReadChannel::copy_to)).
    ///
    /// On [`Error::Timeout`] before any of `src` was taken, the call had no effect.
    pub(crate) fn write_through<'a>(
        &'a mut self,
        src: &'a [u8],
    ) -> impl Future<Output = Result<()>> + Send + 'a {
        self.write_call(src, |channel, _| {
            channel.check_writable()?;
            Ok(Rest::Through { then: Then::Done })
        })
    }

    /// Writes `src[*sent..]` straight to the transport (the buffer is empty), counting what
    /// it takes in `sent`.
    ///
    /// Inlined: an auto-flushed write's poll is one function.
    #[inline(always)]
    fn poll_write_direct(
        &mut self,
        cx: &mut Context<'_>,
        src: &[u8],
        sent: &mut usize,
    ) -> Poll<io::Result<()>> {
        let Self {
            sink,
            written,
            torn,
            lost,
            state,
            ..
        } = self;
        if *sent == 0 && *torn {
            // A new write: the one cut short before it was dropped, its rest is lost.
            *torn = false;
            *lost = true;
            if let Some(state) = state {
                state.set_lost();
            }
        }
        let Some(sink) = sink.as_mut() else {
            return Poll::Ready(Err(Error::ClosedForWrite.into()));
        };
        while *sent < src.len() {
            if *sent == 0 {
                if let Some(state) = state {
                    // While the transport may take the first bytes, the write counts as
                    // unsent: an owner that ends the stream meanwhile (a socket's close on
                    // another thread) must not end it cleanly after a prefix of it.
                    state.begin_write();
                }
            }
            let Poll::Ready(n) = sink.pin().poll_write(cx, &src[*sent..]) else {
                if let Some(state) = state {
                    if *sent == 0 {
                        // Nothing taken: the write has no effect yet, dropped or not.
                        state.set_unsent(false);
                    } else if !*torn {
                        // Dropped now, or ended by a close, the write leaves a prefix of
                        // `src` sent: the rest is unsent until it goes on.
                        state.set_unsent(true);
                    }
                }
                if *sent > 0 {
                    *torn = true;
                }
                return Poll::Pending;
            };
            let n = match n {
                Ok(0) => Err(io::ErrorKind::WriteZero.into()),
                other => other,
            };
            let n = match n {
                Ok(n) => n,
                Err(e) => {
                    if *sent > 0 {
                        // Failed part-way (a socket closed between two of its sends, say): the
                        // stream ends in the middle of this write, whatever decides its end
                        // later (a close that looks after the failure must not send FIN).
                        *torn = true;
                    }
                    return Poll::Ready(Err(e));
                }
            };
            *sent += n;
            *written += n as u64;
        }
        // The write went on to its end (the buffer is empty while it runs).
        *torn = false;
        if let Some(state) = state {
            state.set_unsent(false);
        }
        Poll::Ready(Ok(()))
    }

    /// The buffer holds at most its usual size in a large frame's allocation: back to the usual
    /// buffer (what it holds moves; an empty one is made by the next write), so that the
    /// channel does not keep the largest frame it ever sent.
    fn release_large(&mut self) {
        let mut usual = BytesMut::new();
        if !self.buf.is_empty() {
            usual.reserve(WRITE_BUFFER);
            usual.extend_from_slice(&self.buf);
        }
        self.buf = usual;
        self.large = false;
    }

    /// Writes the buffer out to the transport (no transport flush).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Self {
            sink,
            buf,
            state,
            torn,
            ..
        } = self;
        if buf.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let Some(sink) = sink.as_mut() else {
            return Poll::Ready(Err(Error::ClosedForWrite.into()));
        };
        while !buf.is_empty() {
            let n = ready!(sink.pin().poll_write(cx, buf))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            buf.advance(n);
        }
        // What a timeout kept has left: see `timeout_reported`.
        self.timeout_reported = false;
        if let Some(state) = state {
            // The rest of a write cut short is still missing.
            state.set_unsent(*torn);
        }
        if self.large {
            self.release_large();
        }
        Poll::Ready(Ok(()))
    }

    /// Writes the buffer out and flushes the transport.
    fn poll_drain_and_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        match self.sink.as_mut() {
            Some(sink) => sink.pin().poll_flush(cx),
            None => Poll::Ready(Err(Error::ClosedForWrite.into())),
        }
    }

    /// [`flush`](Self::flush) on a writable channel.
    fn poll_flush_buffer(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let polled = self.poll_drain_and_flush(cx);
        self.waiting = polled.is_pending();
        match ready!(polled) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => {
                let e = Error::from(e);
                if matches!(e, Error::Timeout) {
                    // The buffer is kept: the next flush goes on from where this one stopped.
                    // (A flush that timed out in the transport, with the buffer written out,
                    // kept nothing here.) The next write goes to the transport, as after a
                    // write call that timed out (see `timed_out`).
                    self.timeout_reported = !self.buf.is_empty();
                    self.timed_out = true;
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Err(self.fail(e)))
            }
        }
    }

    /// [`flush_and_close`](Self::flush_and_close) on a writable channel.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let polled = self.poll_close_steps(cx);
        self.waiting = polled.is_pending();
        polled
    }

    /// [`poll_close`](Self::poll_close)'s steps.
    fn poll_close_steps(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.torn || self.lost {
            // The stream ends in the middle of a write that was dropped part-way: no shutdown,
            // which would tell the peer that it is complete.
            let e = io::Error::new(
                io::ErrorKind::BrokenPipe,
                "a write was dropped after the transport took part of it; the stream misses \
                 the rest and is not shut down",
            );
            return Poll::Ready(Err(self.fail(e.into())));
        }
        if let Err(e) = ready!(self.poll_drain_and_flush(cx)) {
            // Not everything left: drop the transport without shutting it down.
            return Poll::Ready(Err(self.fail(Error::from(e))));
        }
        let Some(sink) = self.sink.as_mut() else {
            return Poll::Ready(Err(Error::ClosedForWrite));
        };
        match ready!(sink.pin().poll_shutdown(cx)) {
            Ok(()) => {
                self.sink = None;
                self.buf = BytesMut::new();
                Poll::Ready(Ok(()))
            }
            // Whether the end reached the peer is unknown: a failure, recorded as any other,
            // so that no later call (a second shutdown included) reports a clean close.
            Err(e) => Poll::Ready(Err(self.fail(Error::from(e)))),
        }
    }

    /// `poll_write` of [`AsyncWrite`]: accepts what fits in the buffer.
    fn poll_write_buffered(&mut self, cx: &mut Context<'_>, src: &[u8]) -> Poll<Result<usize>> {
        self.check_writable()?;
        if src.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let fits = WRITE_BUFFER.saturating_sub(self.buf.len()).min(src.len());
        if self.buf.len() >= WRITE_BUFFER || !self.fits_in_place(fits) {
            // Full; or partly written out, its free space before its bytes where the allocation
            // cannot take them back yet (as many as it holds must have left first): the rest
            // is written out before more is added, as when full, instead of growing the
            // allocation past the buffer's size.
            // None of `src` is in the buffer: a timeout here leaves the call without effect.
            if let Err(e) = ready!(self.poll_drain(cx)) {
                return Poll::Ready(Err(self.call_failed(e, 0)));
            }
        }
        let n = if self.buf.is_empty() && src.len() >= WRITE_BUFFER {
            // Large, and nothing buffered: one write straight to the transport.
            if self.sink.is_some() && std::mem::take(&mut self.torn) {
                // A new write to the transport: the one cut short before it was dropped, and
                // its rest is lost (as in `poll_write_direct`), no longer unsent: the shared
                // state says what the (empty) buffer holds.
                self.mark_lost();
                self.note_buffer();
            }
            let Some(sink) = self.sink.as_mut() else {
                return Poll::Ready(Err(Error::ClosedForWrite));
            };
            match ready!(sink.pin().poll_write(cx, &src[..src.len().min(MAX_DIRECT)])) {
                Ok(0) => {
                    let e = io::Error::from(io::ErrorKind::WriteZero);
                    return Poll::Ready(Err(self.fail(e.into())));
                }
                Ok(n) => {
                    self.written += n as u64;
                    n
                }
                // A transport write that fails took nothing: the call had no effect.
                Err(e) => return Poll::Ready(Err(self.call_failed(e, 0))),
            }
        } else {
            let n = (WRITE_BUFFER - self.buf.len()).min(src.len());
            self.buffer().extend_from_slice(&src[..n]);
            self.added(n)?;
            self.written += n as u64;
            n
        };
        if self.auto_flush {
            // Push it on if the transport is ready; what is left goes with the next write or
            // `poll_flush`. The bytes are accepted either way.
            if let Poll::Ready(Err(e)) = self.poll_drain_and_flush(cx) {
                let e = Error::from(e);
                if matches!(e, Error::Timeout) {
                    // Kept, and the next write goes to the transport, as after a write call
                    // that timed out (see `timed_out`).
                    self.timed_out = true;
                } else {
                    // Failed for good. What of the call's bytes is still buffered is thrown
                    // away, and was not accepted; what the transport took was: then the call
                    // reports that (an error says that it took nothing, and a caller that
                    // retries would send them twice), and the next one the failure.
                    let left = n.min(self.buf.len());
                    self.written -= left as u64;
                    let failure = self.fail(e);
                    return Poll::Ready(if left < n { Ok(n - left) } else { Err(failure) });
                }
            }
        }
        Poll::Ready(Ok(n))
    }

    /// Maps a transport error met by a write call whose bytes are the buffer's last `call`
    /// (0 when they are not in the buffer and none was written).
    ///
    /// A timeout before any of them left the buffer makes the call one without effect: they are
    /// taken out again, and the channel stays usable. Anything else fails it for good.
    fn call_failed(&mut self, e: io::Error, call: usize) -> Error {
        let e = Error::from(e);
        if matches!(e, Error::Timeout) && self.buf.len() >= call {
            let keep = self.buf.len() - call;
            self.buf.truncate(keep);
            self.note_buffer();
            self.written -= call as u64;
            self.timed_out = true;
            self.timeout_reported = keep > 0;
            if self.large && keep <= WRITE_BUFFER {
                // A large frame taken out again: its allocation goes with it.
                self.release_large();
            }
            return e;
        }
        // Failed for good: what is left of the call's bytes is thrown away with the buffer,
        // and the call accepted none of it (what the transport took still counts).
        self.written -= call.min(self.buf.len()) as u64;
        self.fail(e)
    }

    /// Fails the channel for good: the buffer and the transport are dropped (not shut down),
    /// and every later operation reports `e`. Returns the first report.
    fn fail(&mut self, e: Error) -> Error {
        let failure = Failure::new(e);
        let first = failure.report();
        self.failed = Some(failure);
        if let Some(Sink::Pipe(pipe)) = &self.sink {
            // A failed stream never ends cleanly: the pipe's reader fails too (dropping the
            // pipe's writer alone would end its stream).
            pipe.cancel();
        }
        self.sink = None;
        // The transport reports its own failure; bytes the buffer held are lost with it.
        self.abandon_buffered();
        self.buf = BytesMut::new();
        self.note_buffer();
        first
    }
}

/// What is left of a write call once it started (see `ByteWriteChannel::poll_rest`): a
/// failure of any step is the call's.
#[derive(Clone, Copy, Debug)]
enum Rest {
    /// Not started yet.
    Start,
    /// Nothing: the call is done.
    Done,
    /// The buffer is written out to make room for the call's bytes, which are not in it yet (a
    /// timeout leaves the call without effect).
    Room,
    /// As `Room`, then the call's bytes are copied into the buffer whole and the call goes on
    /// as one that buffered them at its start.
    RoomFor,
    /// The buffer, whose last `call` bytes are the call's, is written out and the transport
    /// flushed, unless the shared backlog takes the buffer (held back while the reader has
    /// requests pending).
    FlushCall { call: usize },
    /// The buffer, whose last `call` bytes are the call's, is written out (a timeout takes
    /// them out again: the call has no effect); then the transport is flushed if `flush`.
    Drain { call: usize, flush: bool },
    /// The transport is flushed: the call's bytes all reached it, so a failure fails the
    /// channel, but for a call of no bytes (`took` false), whose timeout has no effect.
    Flush { took: bool },
    /// The buffer (none of the call's bytes are in it) is written out, then the call's bytes
    /// go straight to the transport, then `then`.
    Through { then: Then },
    /// The call's bytes from `sent` on go straight to the transport (the buffer is empty),
    /// then `then`.
    Direct { sent: usize, then: Then },
}

/// What a write that went straight to the transport does after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Then {
    /// Nothing.
    Done,
    /// As [`Rest::FlushCall`], with none of the call's bytes in the buffer.
    FlushCall,
    /// A flush, unless the shared backlog is deferring (the reader has requests pending: the
    /// transport sends when the reader is about to wait).
    FlushUnlessDeferring,
}

/// The bytes an encoder added to an empty buffer, taken out of it when dropped armed: when the
/// encoder failed, or panicked.
struct PartialFrame<'a> {
    buf: &'a mut BytesMut,
    armed: bool,
}

impl Drop for PartialFrame<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Nothing was buffered before the frame: the allocation a large failed frame made
        // goes with it.
        if self.buf.capacity() > 2 * WRITE_BUFFER {
            *self.buf = BytesMut::new();
        } else {
            self.buf.clear();
        }
    }
}

impl AsyncWrite for ByteWriteChannel {
    /// Accepts what fits in the buffer (see
    /// [tokio's I/O traits](ByteWriteChannel#tokios-io-traits)).
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        src: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = this.poll_write_buffered(cx, src);
        this.waiting = polled.is_pending();
        polled.map_err(io::Error::from)
    }

    /// [`flush`](ByteWriteChannel::flush); `Ok(())` on a channel already closed cleanly.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.sink.is_none() && this.failed.is_none() && !this.cancelled {
            // Closed cleanly: nothing is left to flush (tokio's own streams say the same).
            return Poll::Ready(Ok(()));
        }
        this.check_writable()?;
        this.poll_flush_buffer(cx).map_err(io::Error::from)
    }

    /// [`flush_and_close`](ByteWriteChannel::flush_and_close); `Ok(())` on a channel already
    /// closed cleanly.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(failure) = &this.failed {
            return Poll::Ready(Err(failure.report().into()));
        }
        if this.sink.is_none() {
            // Closed cleanly before, or cancelled: a cancelled channel's end is no clean one.
            return Poll::Ready(if this.cancelled {
                Err(Error::ClosedForWrite.into())
            } else {
                Ok(())
            });
        }
        // The transport's owner ended it (a socket's close): no clean end from here.
        this.check_writable()?;
        this.poll_close(cx).map_err(io::Error::from)
    }
}

impl Drop for ByteWriteChannel {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            if self.state.as_ref().is_some_and(WriteState::is_failed) {
                // The connection failed (the peer's reset, as a read reported): no flush could
                // have sent them, and the peer chose when.
                tracing::debug!(
                    unflushed = self.buf.len(),
                    "write channel dropped with {} unflushed bytes after its connection failed; \
                     they could not be sent",
                    self.buf.len()
                );
            } else if self.timeout_reported || self.waiting {
                // The caller was told (the timeout), and gave up: the usual end of a
                // connection whose peer reads nothing, which a peer must not turn into
                // warnings at a rate of its choosing.
                tracing::debug!(
                    unflushed = self.buf.len(),
                    "write channel dropped with {} unflushed bytes after a write or flush timed \
                     out or was given up while it waited; they are not sent",
                    self.buf.len()
                );
            } else {
                tracing::warn!(
                    unflushed = self.buf.len(),
                    "write channel dropped with {} unflushed bytes; they are not sent (call \
                     flush_and_close, or cancel to drop them on purpose)",
                    self.buf.len()
                );
            }
        }
        self.abandon_buffered();
        if let Some(state) = &self.state {
            // Gone with the channel: thrown away (told just above), not held.
            state.set_unsent(false);
        }
        if self.lost {
            if let Some(Sink::Pipe(pipe)) = &self.sink {
                // The stream lacks bytes that writes accepted: the reader must not see a clean
                // end (a socket's close resets for the same reason).
                pipe.cancel();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::task::Waker;

    use super::*;

    thread_local! {
        /// Run by this thread's next buffered write once its bytes are in the buffer, before
        /// it tells the shared state.
        static BEFORE_NOTING: RefCell<Option<Box<dyn FnOnce()>>> = const { RefCell::new(None) };
    }

    /// The seam in `added`: runs the hook this thread set, if any.
    pub(super) fn before_noting() {
        if let Some(hook) = BEFORE_NOTING.with(|hook| hook.borrow_mut().take()) {
            hook();
        }
    }

    /// The owner ends the stream (a socket's close on another thread) after a buffered write
    /// checked that it may write, and looks for unsent bytes before the write told the state
    /// of its own: the owner then ends the stream cleanly, so the write must fail, having
    /// added nothing, not report bytes written that are never sent. It returned `Ok`.
    #[test]
    fn a_buffered_write_that_meets_the_end_as_it_buffers_fails() {
        let state = WriteState::new();
        let mut output = ByteWriteChannel::new(tokio::io::sink(), false);
        output.share_state(state.clone());
        let owner = state.clone();
        let looked = std::rc::Rc::new(std::cell::Cell::new(None));
        let seen = std::rc::Rc::clone(&looked);
        BEFORE_NOTING.with(|hook| {
            *hook.borrow_mut() = Some(Box::new(move || {
                owner.end(io::Error::new(io::ErrorKind::NotConnected, "closed"));
                seen.set(Some(owner.has_unsent()));
            }));
        });
        let written = std::pin::pin!(output.write_fully(b"lost?"))
            .poll(&mut Context::from_waker(Waker::noop()));
        assert_eq!(
            looked.get(),
            Some(false),
            "the owner looked as the write buffered"
        );
        assert!(
            matches!(written, Poll::Ready(Err(_))),
            "a write returned {written:?} though the owner ended the stream without its bytes"
        );
        assert!(!state.has_unsent());
    }
}
