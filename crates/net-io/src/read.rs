//! [`ByteReadChannel`]: buffered reads of lines, integers and byte runs from any `AsyncRead`.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use memchr::memmem::Finder;
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};
use tokio_util::codec::Decoder;

use crate::buffer::Buffer;
use crate::error::Failure;
use crate::exclusive::{self, Exclusive};
use crate::line::{Scan, Until, scan_line, scan_until};
use crate::{Backlog, ByteWriteChannel, Error, LineEnding, Result};

/// How many bytes one read from the transport asks for, at least.
const READ_CHUNK: usize = 8 * 1024;

/// The first read of a channel, before it has a buffer, takes at most this many bytes (into a
/// buffer on the stack).
const PROBE: usize = 1024;

/// The most the buffer grows by in one step while a read waits for a count of bytes (a count
/// that may come from the peer), and the size of one read of a bulk copy.
const MAX_STEP: usize = 64 * 1024;

/// Runs of at least this size are handed out without copying by [`ByteReadChannel::read_bytes`]
/// (and the other reads that return `Bytes`), sharing the buffer's allocation, unless a large
/// item grew the buffer (see `take`).
const ZERO_COPY_MIN: usize = 1024;

/// The room lent to a decoder when the channel has no buffer (see `decode_with`): an
/// allocation, so that the buffer's pointer points into memory.
const LENT: usize = 1;

/// A buffer grown past this (by a large item: a long line, `read_bytes` of a large count) is
/// given back once it holds at most `MAX_STEP` bytes (what is left after the item: the start of
/// the next one, moved to a usual buffer; for a decoder, once it is empty), before the next
/// read from the transport, instead of staying with the channel for the rest of its life. Well
/// above what a bulk copy uses (64 KiB reads).
const RELEASE_ABOVE: usize = 4 * MAX_STEP;

/// The transport: only `Send` is asked of it, and the channel is `Sync` all the same (see
/// [`Exclusive`]).
type Source = Exclusive<dyn AsyncRead + Send + Unpin>;

/// The reading end of a byte stream: lines, integers and byte runs from any [`AsyncRead`].
///
/// A channel owns its reader and a buffer. Reads take what they need from the buffer and read
/// more from the transport only when the buffer does not hold enough, into a buffer of 8 KiB or
/// more (the first read, before anything came, takes at most 1 KiB into one on the stack, so
/// that an idle connection holds no read buffer). A read that must wait for more bytes (a
/// line, an integer) keeps the buffer as it is until the whole item is there, so those reads
/// are cancel safe: dropping the future loses nothing, and the next read sees every byte (each
/// method's `# Cancel safety` section says which are).
///
/// A channel is `Send + Sync + 'static` (of the reader, only `Send` is asked): it moves into a
/// spawned task, and a type that holds one can be borrowed across an `.await` in one.
///
/// # Memory
///
/// Memory follows the bytes received, never a count the peer sent: a line read never buffers
/// more than its `limit` plus a delimiter and one transport read, and fails with
/// [`Error::TooLongLine`] instead of growing further; a read that waits for a count of bytes
/// ([`read_bytes`](Self::read_bytes), [`peek`](Self::peek),
/// [`await_content`](Self::await_content), the typed reads) grows the buffer as the bytes
/// arrive, each step by about what it holds already (8 KiB at first), and holds room for at
/// most twice the bytes it received (or 8 KiB more, for fewer), so `read_bytes(0xFFFF_FFFF)`
/// after a hostile length prefix costs a few KiB until the bytes really come. A decoder given to
/// [`read_frame`](Self::read_frame) may make room for a whole frame when it reads the frame's
/// length (tokio-util's `LengthDelimitedCodec` does, up to its `max_frame_length`); room past
/// 256 KiB and past twice what is buffered and 64 KiB more is given back at once, before the
/// next read from the transport, so the buffer then grows as the frame's bytes arrive (once per
/// frame: room a decoder makes again for the same frame is kept, as its `max_frame_length`
/// bounds it). Room within that (a 300 KiB frame begun with 120 KiB buffered) is kept.
/// A buffer that a large item grew (past 256 KiB) is given back once the item has been
/// consumed, when the channel next reads from its transport: a connection that once received a
/// large message or line does not keep that much memory while it waits for the next one (what
/// has come of the next one moves to a buffer of the usual size, once it is at most 64 KiB; with
/// [`read_frame`](Self::read_frame), whose decoder may have made room for a frame it has begun,
/// the buffer is given back once it is empty). The `Bytes` that reads return share the
/// buffer's allocation from 1 KiB on, except in a buffer that a large item grew: there one of
/// at most 256 KiB is copied, so that a small item the application keeps does not keep the
/// large item's buffer alive. The count or limit a read allows is the caller's bound: where a
/// peer sends a read that takes it all (`read_remaining(usize::MAX)`) more than the process may
/// allocate (a 32-bit process near 2 GiB, a limit on its memory, strict overcommit), the buffer
/// first grows by less than double (half as much more, down to what the read needs), then the
/// read fails with an I/O error of kind [`OutOfMemory`](io::ErrorKind::OutOfMemory), as after a
/// transport error (see Failures), instead of the failed allocation ending the process; so
/// does a read whose result cannot be allocated beside the bytes buffered (a line's `String`,
/// the copy [`peek`](Self::peek) returns), and a [`read_fully`](Self::read_fully) that timed
/// out and cannot buffer its bytes again. (A decoder's own allocations in
/// [`read_frame`](Self::read_frame) are the decoder's.) One growth still copies with an
/// allocation that cannot fail: that of a buffer whose allocation a `Bytes` returned earlier
/// (and still kept) shares, whose bytes must move to an allocation of their own; a process
/// that cannot hold those bytes twice ends there.
///
/// # Failures
///
/// After a transport error, bytes received before it are still read first: a read that the
/// buffer can satisfy (a whole line, an integer, `n` bytes) succeeds. A read that needs more
/// reports the error, and so does every later one: the same variant, [`io::ErrorKind`],
/// OS error code and inner error each time (see
/// [Failures reported again](Error#failures-reported-again)); a failed channel never turns
/// into an end of stream. [`Error::Timeout`] is not final: reading may go on after it.
///
/// # Fairness
///
/// A read served from the buffer takes none of tokio's cooperative budget; a read from the
/// transport takes what the transport takes. A socket (plain, or TLS, whose records come from
/// the socket) takes a unit each time it reads from the socket, and the in-memory
/// [`ByteChannel`](crate::ByteChannel) one per read, as tokio's own do. So a task that reads a
/// flood of pipelined items, and never has to wait, still yields to the other tasks of its
/// thread: at the latest after 128 reads from the socket (tokio's budget per turn), each of
/// at most what the channel's buffer has room for (8 KiB usually, 64 KiB in
/// [`copy_to`](Self::copy_to), up to 256 KiB in a buffer that a large item grew; while an
/// item larger than that arrives, up to about as much as is buffered of it). As with
/// tokio's `BufReader`, how many items one turn serves follows how small they are.
///
/// # tokio's I/O traits
///
/// The channel is an [`AsyncRead`] and an [`AsyncBufRead`], so it works with
/// [`tokio::io::copy`], [`tokio_util::codec::FramedRead`] and anything else written against
/// tokio's traits. Trait reads and the channel's own reads share one buffer and may be mixed
/// freely. Errors travel inside an [`io::Error`]; `Error::from` recovers this crate's error.
///
/// A [`FramedRead`](tokio_util::codec::FramedRead) over the channel (or over `&mut` it) reads
/// ahead into a buffer of its own: bytes it took past its last frame are in that buffer, not in
/// the channel, when the code goes back to the channel's own reads (a protocol that upgrades,
/// or reads a body after framed headers). [`read_frame`](Self::read_frame) decodes on the
/// channel's own buffer, and [`into_frames`](Self::into_frames) gives a stream of frames whose
/// [`into_parts`](Frames::into_parts) hands the channel back with every byte not decoded.
///
/// What a trait read leaves buffered is never taken for pending requests by a
/// [`Backlog`](crate::Backlog) (flush coalescing): code written against the traits passes its
/// bytes on, and may stop reading while its writes wait
/// ([`tokio::io::copy_bidirectional`] stops reading one way while its write that way waits,
/// and still expects what it flushes the other way to leave), so nothing it writes is held
/// back for a later read; and what was held back for the channel's own reads before leaves
/// at the first trait read (`poll_read`, `poll_fill_buf` or `consume`) that finds it held.
///
/// # Examples
///
/// ```
/// use net_io::{ByteReadChannel, LineEnding};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> net_io::Result<()> {
/// // Any `AsyncRead` works; a byte slice is one.
/// let mut input = ByteReadChannel::new(&b"HELO example\r\n\x00\x2a"[..]);
/// assert_eq!(input.read_line(512, LineEnding::Default).await?.as_deref(), Some("HELO example"));
/// assert_eq!(input.read_u16().await?, 42);
/// assert_eq!(input.read_line(512, LineEnding::Default).await?, None);
/// # Ok(()) }
/// ```
pub struct ByteReadChannel {
    source: Option<Source>,
    buf: Buffer,
    eof: bool,
    cancelled: bool,
    /// A transport error that ended the stream; reported again by every later read that needs
    /// more than the buffer holds.
    failed: Option<Failure>,
    /// A line read (or `read_until`) failed with `TooLongLine`: if the next read is one too, it
    /// first skips the rest of that line (or item) through the over-long one's delimiter.
    /// Boxed, as it is rare: 8 bytes in every channel rather than 24.
    skip: Option<Box<Skip>>,
    /// Where the last line read or `read_until` that waited for the rest of a partial item
    /// stopped scanning it. Boxed, as only a partial item makes one, and kept once made.
    resume: Option<Box<Resume>>,
    /// `resume` was written and no read has seen bytes consumed since (a flag in the channel,
    /// so that a line read looks into the box only after a partial item).
    resume_live: bool,
    /// Bytes received from the transport (or given to `from_bytes`), less those `cancel`
    /// dropped: what reads consumed is this less what is buffered.
    received: u64,
    /// Told whether unconsumed input is buffered, for flush coalescing.
    backlog: Option<Backlog>,
    /// The buffer grew past `RELEASE_ABOVE`: give it back once it holds at most `MAX_STEP`
    /// bytes.
    oversized: bool,
    /// Room a decoder made for the frame it has begun, ahead of the frame's bytes, was given
    /// back; not again until a frame is decoded, `read_frame` is called again or the channel
    /// becomes a stream of frames (a decoder that makes room at every call would otherwise
    /// have what is buffered copied at every read).
    room_given_back: bool,
}

impl fmt::Debug for ByteReadChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteReadChannel")
            .field("buffered", &self.buf.len())
            .field("eof", &self.eof)
            .field("cancelled", &self.cancelled)
            .field("failed", &self.failed)
            .field("total_bytes_read", &self.total_bytes_read())
            .finish_non_exhaustive()
    }
}

macro_rules! typed_reads {
    ($($(#[$doc:meta])* $name:ident -> $ty:ty = $get:ident;)*) => {$(
        $(#[$doc])*
        ///
        /// # Errors
        ///
        /// [`Error::UnexpectedEof`] if the stream ends first (the bytes that did arrive stay
        /// buffered), [`Error::Cancelled`], or the transport's error.
        ///
        /// # Cancel safety
        ///
        /// Cancel safe: nothing is consumed until all the bytes are there.
        pub async fn $name(&mut self) -> Result<$ty> {
            const SIZE: usize = std::mem::size_of::<$ty>();
            self.require(SIZE).await?;
            let value = self.buf.bytes_mut().$get();
            self.publish();
            Ok(value)
        }
    )*};
}

/// Where a line read or `read_until` that waited for the rest of a partial item stopped
/// scanning it: no delimiter of its kind ends before `from` (for `read_until`, none starts
/// there). The next read of the same kind (one started again after a cancel: a `select!` that
/// another branch won) goes on from there while nothing has been consumed since, so a partial
/// item costs CPU for the bytes received, not at every cancel.
#[derive(Debug, Default)]
struct Resume {
    /// [`ByteReadChannel::total_bytes_read`] when the scan stopped.
    consumed: u64,
    /// Where the next scan may start.
    from: usize,
    /// A line read's ending; `None` for `read_until`.
    ending: Option<LineEnding>,
    /// A `read_until`'s delimiter (empty for a line read).
    delimiter: Vec<u8>,
}

/// The delimiter of an over-long line or item, through which the next line read or
/// `read_until` skips its rest.
#[derive(Debug)]
enum Skip {
    /// A line's, by the ending of the read that found the line too long.
    Line(LineEnding),
    /// `read_until`'s.
    Until(Box<[u8]>),
}

impl ByteReadChannel {
    /// Wraps a reader.
    pub fn new<R>(reader: R) -> Self
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        ByteReadChannel {
            source: Some(Box::new(Mutex::new(reader))),
            buf: Buffer::default(),
            eof: false,
            cancelled: false,
            failed: None,
            skip: None,
            resume: None,
            resume_live: false,
            received: 0,
            backlog: None,
            oversized: false,
            room_given_back: false,
        }
    }

    /// A channel that holds exactly `bytes` and then ends (for tests and fixtures).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> net_io::Result<()> {
    /// let mut input = net_io::ByteReadChannel::from_bytes(&b"\x01\x02"[..]);
    /// assert_eq!(input.read_u16().await?, 0x0102);
    /// assert!(input.is_closed_for_read());
    /// # Ok(()) }
    /// ```
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        let bytes: Bytes = bytes.into();
        ByteReadChannel {
            source: None,
            buf: Buffer::from(BytesMut::from(&bytes[..])),
            eof: true,
            cancelled: false,
            failed: None,
            skip: None,
            resume: None,
            resume_live: false,
            received: bytes.len() as u64,
            backlog: None,
            oversized: false,
            room_given_back: false,
        }
    }

    /// How many bytes are buffered and can be read without waiting.
    pub fn available_for_read(&self) -> usize {
        if self.cancelled { 0 } else { self.buf.len() }
    }

    /// Whether nothing more can be read: the channel was cancelled, or its transport ended or
    /// failed for good and nothing is left in its buffer. Bytes received before a failure keep
    /// it open for read until they are read (Ktor's `isClosedForRead` is true as soon as the
    /// channel has a close cause).
    ///
    /// The end of the stream (or a failure) is known only once a read has seen it: unlike
    /// Ktor's `ByteChannel`, whose `isClosedForRead` turns true as soon as its writer has closed
    /// and every byte was read, this stays `false` until a read (or
    /// [`await_content`](Self::await_content)) finds the end: a loop that reads until
    /// `is_closed_for_read` gets [`Error::UnexpectedEof`] from its last read; loop on
    /// `await_content(1)` instead. (A channel made by [`from_bytes`](Self::from_bytes) knows its
    /// end from the start: it turns true as its last byte is read, so such a loop, tried on
    /// one, works there and fails on a socket.)
    ///
    /// ```
    /// use net_io::ByteChannel;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> net_io::Result<()> {
    /// let (mut output, mut input) = ByteChannel::new(true);
    /// output.write_u8(7).await?;
    /// output.flush_and_close().await?;
    /// assert_eq!(input.read_u8().await?, 7);
    /// assert!(!input.is_closed_for_read()); // the end is not known yet
    /// assert!(!input.await_content(1).await?);
    /// assert!(input.is_closed_for_read());
    /// # Ok(()) }
    /// ```
    pub fn is_closed_for_read(&self) -> bool {
        self.cancelled || (self.buf.is_empty() && (self.eof || self.failed.is_some()))
    }

    /// How many bytes reads have consumed so far (Ktor's `totalBytesRead`): returned, skipped
    /// or copied, delimiters included; not those still buffered or dropped by
    /// [`cancel`](Self::cancel).
    ///
    /// ```
    /// use net_io::{ByteReadChannel, LineEnding};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> net_io::Result<()> {
    /// let mut input = ByteReadChannel::from_bytes("ab\r\n\x00\x07");
    /// input.read_line(10, LineEnding::Default).await?;
    /// assert_eq!(input.total_bytes_read(), 4);
    /// input.read_u16().await?;
    /// assert_eq!(input.total_bytes_read(), 6);
    /// # Ok(()) }
    /// ```
    pub fn total_bytes_read(&self) -> u64 {
        self.received - self.buf.len() as u64
    }

    /// Keeps `backlog` told whether this channel holds input not consumed yet (see
    /// [`Backlog`]): after every read that consumes, and before every read from the transport
    /// (which may wait: a waiting reader has nothing pending). Once a read has seen the end of
    /// the stream, or the transport failed for good, nothing is pending any more, whatever is
    /// still buffered: the reader never waits again, so nothing would send what is held back
    /// for it.
    pub fn share_backlog(&mut self, backlog: Backlog) {
        self.backlog = Some(backlog);
        self.publish();
    }

    /// Drops the first `n` buffered bytes, which a read consumed, and tells the backlog.
    fn drop_consumed(&mut self, n: usize) {
        self.buf.consume(n);
        self.publish();
    }

    /// Tells the backlog (if any) whether input is buffered.
    fn publish(&self) {
        self.tell(!self.buf.is_empty());
    }

    /// After a read through tokio's traits: nothing is pending, and answers held back before
    /// (for an own read's pending input) leave, since such code may stop reading while its
    /// writes wait. The same when a frame stream ends at an error (it never reads again).
    fn pass_on(&self) {
        if let Some(backlog) = &self.backlog {
            backlog.passed_on();
        }
    }

    /// Tells the backlog (if any) whether `unconsumed` input is pending: never once the stream
    /// ended or failed for good, since no read from the transport follows (the one before
    /// which a transport sends what it held back).
    fn tell(&self, unconsumed: bool) {
        if let Some(backlog) = &self.backlog {
            backlog.set(unconsumed && !self.eof && self.failed.is_none());
        }
    }

    /// Discards everything buffered and stops reading: later reads fail with
    /// [`Error::Cancelled`]. The transport is dropped. For an in-memory
    /// [`ByteChannel`](crate::ByteChannel), the writer's next write that reaches the pipe fails
    /// with [`Error::Cancelled`] (a write that only adds to the writer's buffer still succeeds,
    /// as on a socket whose peer is gone), and the writer's
    /// [`is_closed_for_write`](ByteWriteChannel::is_closed_for_write) turns true only then
    /// (Ktor's `cancel(cause)` fails the writer's next write at once, with the cause; no cause
    /// is carried here).
    pub fn cancel(&mut self) {
        self.cancelled = true;
        self.resume_live = false;
        self.received -= self.buf.len() as u64;
        self.buf = Buffer::default();
        // Nothing is pending any more, before the transport learns that no reader is left (a
        // socket then sends the answers it held back for the reader).
        self.publish();
        self.source = None;
    }

    // ----- lines -------------------------------------------------------------------------

    /// Reads a line with Ktor's `readUTF8Line` rules: LF, CRLF or a lone CR ends it.
    ///
    /// The same as [`read_line(limit, LineEnding::Lenient)`](Self::read_line).
    ///
    /// # Errors
    ///
    /// As [`read_line`](Self::read_line).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is consumed until the whole line is there.
    pub async fn read_utf8_line(&mut self, limit: usize) -> Result<Option<String>> {
        self.read_line(limit, LineEnding::Lenient).await
    }

    /// Reads one line, without its delimiter.
    ///
    /// - `limit` is the most bytes of content (delimiter excluded) the line may have, counted as
    ///   received, before UTF-8 decoding. Exactly `limit` bytes followed by a delimiter or the end
    ///   of the stream is a line; one more byte is [`Error::TooLongLine`].
    /// - `ending` picks the delimiters (see [`LineEnding`]). A CR that is the last byte
    ///   received so far waits for the next byte to tell a lone CR from CRLF; at the end of the
    ///   stream, or when the transport fails, it is a lone CR. So in `Lenient` mode a peer that
    ///   sends `"cmd\r"` and then waits for an answer gets none until it sends another byte or
    ///   closes; protocols that end lines with CRLF are better read with `Default`.
    /// - A last line without a delimiter is returned as it is when the stream ends; when the
    ///   transport fails instead, the failure is reported and the bytes stay buffered.
    /// - `Ok(None)` only when the stream ended before the first byte of a line; an empty line is
    ///   `Some("")`.
    /// - Invalid or truncated UTF-8 becomes U+FFFD, exactly as [`String::from_utf8_lossy`] does.
    ///
    /// # Over-long lines
    ///
    /// A line with more than `limit` bytes fails with [`Error::TooLongLine`] as soon as the
    /// limit is passed, without waiting for its delimiter, and consumes nothing. If the next
    /// read is a line read (or [`read_until`](Self::read_until)), it first discards the rest of
    /// the over-long line through its delimiter, as tokio-util's `LinesCodec` does, then reads
    /// the following line: a server can answer "line too long" and go on. The skip ends at the
    /// over-long line's own delimiter (by this read's `ending`), also for a `read_until` that
    /// follows, whatever that one's delimiter: the peer loses that line, nothing more. Memory stays bounded
    /// while it skips, however long the line is. Any other read instead sees the over-long
    /// line's bytes as they are; one whose future is dropped while it waits took nothing, and
    /// leaves the skip due, and so do a read of no bytes (`read_bytes(0)`, `discard(0)`, a
    /// read into an empty buffer), the look-aheads ([`peek`](Self::peek),
    /// [`await_content`](Self::await_content)) and a [`skip_if_found`](Self::skip_if_found)
    /// that finds nothing. Another read of one byte or more that fails (a
    /// [`Error::Timeout`], an early end) ends the skip, as one that succeeds does: the next
    /// line read starts at the line's bytes as they are.
    ///
    /// # Errors
    ///
    /// [`Error::TooLongLine`], [`Error::Cancelled`], or the transport's error; an
    /// [`Error::Io`] of kind [`OutOfMemory`](io::ErrorKind::OutOfMemory) where the line, as
    /// large as the limit lets it be, cannot be allocated beside its bytes (see
    /// [Memory](Self#memory): they stay buffered).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing of the line is consumed until the whole line is there (skipping an
    /// over-long line before it may be interrupted, and goes on with the next line read). A
    /// line read started again after one was dropped (in a `select!` loop whose other
    /// branches win often) goes on scanning the partial line where the dropped one stopped, if
    /// that was the last line read or `read_until` to wait, with the same ending, and nothing
    /// was consumed since (so do `read_line_to`, `read_line_strict` and `read_utf8_line`): a
    /// long partial line costs time for the bytes received, not at every cancel (tokio-util's
    /// `LinesCodec` keeps its place the same way).
    ///
    /// # Examples
    ///
    /// ```
    /// use net_io::{ByteReadChannel, Error, LineEnding};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> net_io::Result<()> {
    /// let mut input = ByteReadChannel::from_bytes("four\r\n\nfive!\nlast");
    /// assert_eq!(input.read_line(4, LineEnding::Default).await?.as_deref(), Some("four"));
    /// assert_eq!(input.read_line(4, LineEnding::Default).await?.as_deref(), Some(""));
    /// assert!(matches!(input.read_line(4, LineEnding::Default).await, Err(Error::TooLongLine { limit: 4 })));
    /// // The over-long "five!" is skipped.
    /// assert_eq!(input.read_line(4, LineEnding::Default).await?.as_deref(), Some("last"));
    /// assert_eq!(input.read_line(4, LineEnding::Default).await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn read_line(&mut self, limit: usize, ending: LineEnding) -> Result<Option<String>> {
        let Some((content, consumed, _)) = self.next_line(limit, ending).await? else {
            return Ok(None);
        };
        let Some(line) = crate::line::try_lossy_string(&self.buf[..content]) else {
            return Err(self.fail(line_out_of_memory()));
        };
        self.drop_consumed(consumed);
        Ok(Some(line))
    }

    /// As [`read_line`](Self::read_line), but a stream that ends after some content and before a
    /// delimiter is an error.
    ///
    /// # Errors
    ///
    /// [`Error::UnexpectedEof`] for an unterminated last line (it stays buffered), and the errors
    /// of [`read_line`](Self::read_line).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is consumed until the whole line is there.
    pub async fn read_line_strict(
        &mut self,
        limit: usize,
        ending: LineEnding,
    ) -> Result<Option<String>> {
        let Some((content, consumed, delimited)) = self.next_line(limit, ending).await? else {
            return Ok(None);
        };
        if !delimited {
            return Err(Error::UnexpectedEof {
                needed: consumed + 1,
                available: consumed,
            });
        }
        let Some(line) = crate::line::try_lossy_string(&self.buf[..content]) else {
            return Err(self.fail(line_out_of_memory()));
        };
        self.drop_consumed(consumed);
        Ok(Some(line))
    }

    /// Appends one line to `out`, reusing its allocation; returns how many bytes were appended.
    ///
    /// The rules are those of [`read_line`](Self::read_line). With a `String` that is reused
    /// (cleared between lines), reading a line allocates nothing once the buffers have grown to
    /// the longest line. `out` is left untouched unless a whole line was read.
    ///
    /// The count is of the bytes appended to `out`: the bytes received for the line's content,
    /// but for invalid UTF-8, each replacement character (U+FFFD) taking three bytes (Ktor's
    /// `readLineTo` returns the bytes received).
    ///
    /// # Errors
    ///
    /// As [`read_line`](Self::read_line).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is consumed, and `out` is not touched, until the whole line is there.
    ///
    /// # Examples
    ///
    /// ```
    /// use net_io::{ByteReadChannel, LineEnding};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> net_io::Result<()> {
    /// let mut input = ByteReadChannel::from_bytes("a\nbb\n");
    /// let mut line = String::new();
    /// let mut total = 0;
    /// while let Some(n) = input.read_line_to(&mut line, 80, LineEnding::Default).await? {
    ///     total += n;
    ///     line.clear();
    /// }
    /// assert_eq!(total, 3);
    /// # Ok(()) }
    /// ```
    pub fn read_line_to<'a>(
        &'a mut self,
        out: &'a mut String,
        limit: usize,
        ending: LineEnding,
    ) -> impl Future<Output = Result<Option<usize>>> + Send + 'a {
        // One poll function, no second state machine around `next_line`'s: the hottest call
        // of a line protocol's server.
        let mut state = LineScan::default();
        poll_fn(move |cx| {
            let Some((content, consumed, _)) =
                ready!(self.poll_next_line(cx, &mut state, limit, ending))?
            else {
                return Poll::Ready(Ok(None));
            };
            let before = out.len();
            if !crate::line::try_push_lossy(out, &self.buf[..content]) {
                return Poll::Ready(Err(self.fail(line_out_of_memory())));
            }
            self.drop_consumed(consumed);
            Poll::Ready(Ok(Some(out.len() - before)))
        })
    }

    /// Waits until a whole line is buffered; returns (content length, bytes to consume,
    /// delimited). Consumes nothing but the rest of an earlier over-long line.
    ///
    /// One future for the skip, the scans and the reads between them (a line read is the
    /// hottest path of a line protocol's server). The buffer is scanned only when it may hold
    /// an answer it did not hold at the last scan: not while it is empty and the stream goes
    /// on, and not again when a poll finds the transport still not ready.
    fn next_line(
        &mut self,
        limit: usize,
        ending: LineEnding,
    ) -> impl Future<Output = Result<Option<(usize, usize, bool)>>> + Send + '_ {
        let mut state = LineScan::default();
        poll_fn(move |cx| self.poll_next_line(cx, &mut state, limit, ending))
    }

    /// [`next_line`](Self::next_line) as a poll, its progress kept in `state` (fresh for each
    /// line).
    #[inline(always)]
    fn poll_next_line(
        &mut self,
        cx: &mut Context<'_>,
        state: &mut LineScan,
        limit: usize,
        ending: LineEnding,
    ) -> Poll<Result<Option<(usize, usize, bool)>>> {
        let LineScan { from, scan } = state;
        let scan = match scan {
            Some(scan) => scan,
            None => {
                self.check_cancelled()?;
                if self.skip.is_some() {
                    ready!(self.poll_skip_due(cx))?;
                }
                if self.resume_live {
                    *from = self.resume_from(Some(ending), &[]);
                }
                scan.insert(!self.buf.is_empty() || self.eof)
            }
        };
        loop {
            if *scan {
                match scan_line(&self.buf, limit, ending, self.eof, *from) {
                    Scan::Line {
                        content,
                        consumed,
                        delimited,
                    } => return Poll::Ready(Ok(Some((content, consumed, delimited)))),
                    Scan::Exhausted => return Poll::Ready(Ok(None)),
                    Scan::TooLong => {
                        self.skip = Some(Box::new(Skip::Line(ending)));
                        return Poll::Ready(Err(Error::TooLongLine { limit }));
                    }
                    Scan::NeedMore { from: next } => {
                        *from = next;
                        *scan = false;
                        self.scan_stopped(Some(ending), &[], next);
                    }
                }
            }
            // Bytes, or the end of the stream: either can decide the line. So can a failure:
            // no byte follows it, so a CR that ends the bytes is no CRLF. What that decides
            // is read first; then the failure is reported. (Off the hot path: the scans
            // above need not know of failures.)
            if let Err(e) = ready!(self.poll_fill_releasing(cx, 0, MAX_STEP)) {
                // Only a failure for good: after a timeout, more bytes may come.
                if self.failed.is_none() {
                    return Poll::Ready(Err(e));
                }
                return Poll::Ready(self.line_before_failure(e, limit, ending, *from));
            }
            *scan = true;
        }
    }

    /// After the transport failed for good with `e`: the line that its bytes end now that no
    /// byte follows (a lenient line ended by a CR), or `e`.
    #[cold]
    #[inline(never)]
    fn line_before_failure(
        &self,
        e: Error,
        limit: usize,
        ending: LineEnding,
        from: usize,
    ) -> Result<Option<(usize, usize, bool)>> {
        // Scanned as if the stream ended, a lenient CR that ends the bytes is a delimiter; a
        // line that only the end of the stream would end is no line after a failure.
        match scan_line(&self.buf, limit, ending, true, from) {
            Scan::Line {
                content,
                consumed,
                delimited: true,
            } => Ok(Some((content, consumed, true))),
            _ => Err(e),
        }
    }

    /// Remembers where a scan for a partial item stopped (see [`Resume`]): `ending` for a line
    /// read, or `None` and the `delimiter` of a `read_until`.
    #[inline(never)]
    fn scan_stopped(&mut self, ending: Option<LineEnding>, delimiter: &[u8], from: usize) {
        let consumed = self.total_bytes_read();
        let resume = self.resume.get_or_insert_with(Box::default);
        resume.consumed = consumed;
        resume.from = from;
        resume.ending = ending;
        resume.delimiter.clear();
        resume.delimiter.extend_from_slice(delimiter);
        self.resume_live = true;
    }

    /// Where a scan for the next item of this kind may start: where the last scan of the same
    /// kind stopped, if nothing was consumed since (else 0, and that scan is forgotten).
    #[inline(never)]
    fn resume_from(&mut self, ending: Option<LineEnding>, delimiter: &[u8]) -> usize {
        let Some(resume) = &self.resume else {
            return 0;
        };
        if resume.consumed != self.total_bytes_read() {
            self.resume_live = false;
            return 0;
        }
        if resume.ending == ending && resume.delimiter == delimiter {
            resume.from.min(self.buf.len())
        } else {
            0
        }
    }

    /// Discards the rest of an over-long line through its delimiter (or to the end of the
    /// stream), keeping no more than one transport read buffered.
    fn poll_skip_rest_of_line(
        &mut self,
        cx: &mut Context<'_>,
        ending: LineEnding,
    ) -> Poll<Result<()>> {
        loop {
            match scan_line(&self.buf, usize::MAX, ending, self.eof, 0) {
                Scan::Line { consumed, .. } => {
                    self.buf.consume(consumed);
                    break;
                }
                Scan::NeedMore { from } => {
                    // Nothing before `from` ends the line; a CR at `from` may start a CRLF.
                    self.buf.consume(from);
                    ready!(self.poll_fill(cx))?;
                }
                Scan::Exhausted | Scan::TooLong => break,
            }
        }
        // Consumed without a read from the transport, which may not come (the end of the
        // stream): what is left is pending, or nothing is.
        self.publish();
        Poll::Ready(Ok(()))
    }

    /// Reads the bytes before the next `delimiter`, which is consumed and not returned; `None`
    /// when the stream ended before the first byte of an item.
    ///
    /// The limit rule is [`read_line`](Self::read_line)'s: exactly `limit` bytes followed by the
    /// delimiter is an item; one byte more is [`Error::TooLongLine`], decided without waiting for
    /// the delimiter (a multi-byte delimiter whose first bytes sit right at the limit waits for
    /// the rest). After `TooLongLine`, the next `read_until` (or line read) first skips the rest
    /// of the over-long item through its delimiter, and memory stays bounded while it does: this
    /// call's `delimiter`, also for a line read that follows (a body read up to `"\r\n.\r\n"`,
    /// then commands by line), so that none of the item's bytes is read as a line of its own. A
    /// multi-byte delimiter split across transport reads is found.
    ///
    /// # Errors
    ///
    /// [`Error::TooLongLine`]; [`Error::UnexpectedEof`] if the stream ends after some bytes and
    /// no delimiter (they stay buffered; `TooLongLine` instead if they are more than `limit`);
    /// an [`Error::Io`] of kind [`InvalidInput`](io::ErrorKind::InvalidInput) for an empty
    /// `delimiter`; [`Error::Cancelled`]; or the transport's error.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing of the item is consumed until it is all there (skipping an
    /// over-long item before it may be interrupted, and goes on with the next read). A
    /// `read_until` of the same delimiter started again after one was dropped goes on scanning
    /// where the dropped one stopped, as a line read does.
    ///
    /// # Examples
    ///
    /// ```
    /// use net_io::{ByteReadChannel, Error};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> net_io::Result<()> {
    /// let mut input = ByteReadChannel::from_bytes("HEAD\r\n\r\noversized body\r\n\r\nend");
    /// assert_eq!(input.read_until(b"\r\n\r\n", 8).await?.as_deref(), Some(&b"HEAD"[..]));
    /// assert!(matches!(input.read_until(b"\r\n\r\n", 8).await, Err(Error::TooLongLine { limit: 8 })));
    /// // The over-long item is skipped; "end" has no delimiter.
    /// assert!(matches!(input.read_until(b"\r\n\r\n", 8).await, Err(Error::UnexpectedEof { .. })));
    /// assert_eq!(input.read_remaining(8).await?, &b"end"[..]);
    /// assert_eq!(input.read_until(b"\r\n\r\n", 8).await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn read_until(&mut self, delimiter: &[u8], limit: usize) -> Result<Option<Bytes>> {
        if delimiter.is_empty() {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "read_until: empty delimiter",
            )));
        }
        self.check_cancelled()?;
        let finder = Finder::new(delimiter);
        if self.skip.is_some() {
            poll_fn(|cx| self.poll_skip_due(cx)).await?;
        }
        let mut from = 0;
        if self.resume_live {
            from = self.resume_from(None, delimiter);
        }
        loop {
            match scan_until(&self.buf, &finder, limit, self.eof, from) {
                Until::Found { content } => {
                    let item = self.take(content);
                    self.drop_consumed(delimiter.len());
                    return Ok(Some(item));
                }
                Until::Exhausted => return Ok(None),
                Until::TooLong => {
                    self.skip = Some(Box::new(Skip::Until(delimiter.into())));
                    return Err(Error::TooLongLine { limit });
                }
                Until::Unterminated => {
                    // The item needed what is there and the part of the delimiter missing
                    // after it (its first bytes may end the buffer).
                    let begun = (1..delimiter.len().min(self.buf.len() + 1))
                        .rev()
                        .find(|&k| self.buf.ends_with(&delimiter[..k]))
                        .unwrap_or(0);
                    return Err(Error::UnexpectedEof {
                        needed: self.buf.len() + (delimiter.len() - begun),
                        available: self.buf.len(),
                    });
                }
                Until::NeedMore { from: next } => {
                    from = next;
                    self.scan_stopped(None, delimiter, next);
                    // Unlike a CR for a lenient line, a failure completes no item here (a
                    // delimiter must be all there): report it.
                    self.fill().await?;
                }
            }
        }
    }

    /// Discards the rest of an over-long item through `delimiter` (or to the end of the
    /// stream), keeping no more than one transport read buffered.
    fn poll_skip_through(&mut self, cx: &mut Context<'_>, delimiter: &[u8]) -> Poll<Result<()>> {
        let finder = Finder::new(delimiter);
        let keep = delimiter.len() - 1;
        loop {
            if let Some(i) = finder.find(&self.buf) {
                self.buf.consume(i + delimiter.len());
                break;
            }
            if self.eof {
                self.buf.clear();
                break;
            }
            // The delimiter's first bytes may end the buffer.
            self.buf.consume(self.buf.len().saturating_sub(keep));
            ready!(self.poll_fill(cx))?;
        }
        // As for a line: consumed, perhaps at the end of the stream.
        self.publish();
        Poll::Ready(Ok(()))
    }

    /// Discards the rest of the over-long line or item a line read or `read_until` failed on,
    /// through that one's own delimiter (a line's ending, or `read_until`'s delimiter), whichever
    /// of the two reads comes next: the peer loses that line or item, nothing more, and none of
    /// its bytes is read as a line or item of its own. The skip stays due while it waits, and
    /// after a failure.
    fn poll_skip_due(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let Some(skip) = self.skip.take() else {
            return Poll::Ready(Ok(()));
        };
        let skipped = match &*skip {
            Skip::Line(ending) => self.poll_skip_rest_of_line(cx, *ending),
            Skip::Until(delimiter) => self.poll_skip_through(cx, delimiter),
        };
        if !matches!(skipped, Poll::Ready(Ok(()))) {
            self.skip = Some(skip);
        }
        skipped
    }

    // ----- typed reads -------------------------------------------------------------------

    typed_reads! {
        /// Reads one byte.
        read_u8 -> u8 = get_u8;
        /// Reads one signed byte.
        read_i8 -> i8 = get_i8;
        /// Reads a big-endian `u16`.
        read_u16 -> u16 = get_u16;
        /// Reads a big-endian `i16`.
        read_i16 -> i16 = get_i16;
        /// Reads a big-endian `u32`.
        read_u32 -> u32 = get_u32;
        /// Reads a big-endian `i32`.
        read_i32 -> i32 = get_i32;
        /// Reads a big-endian `u64`.
        read_u64 -> u64 = get_u64;
        /// Reads a big-endian `i64`.
        read_i64 -> i64 = get_i64;
        /// Reads a big-endian IEEE 754 `f32`.
        read_f32 -> f32 = get_f32;
        /// Reads a big-endian IEEE 754 `f64`.
        read_f64 -> f64 = get_f64;
        /// Reads a little-endian `u16`.
        read_u16_le -> u16 = get_u16_le;
        /// Reads a little-endian `i16`.
        read_i16_le -> i16 = get_i16_le;
        /// Reads a little-endian `u32`.
        read_u32_le -> u32 = get_u32_le;
        /// Reads a little-endian `i32`.
        read_i32_le -> i32 = get_i32_le;
        /// Reads a little-endian `u64`.
        read_u64_le -> u64 = get_u64_le;
        /// Reads a little-endian `i64`.
        read_i64_le -> i64 = get_i64_le;
        /// Reads a little-endian IEEE 754 `f32`.
        read_f32_le -> f32 = get_f32_le;
        /// Reads a little-endian IEEE 754 `f64`.
        read_f64_le -> f64 = get_f64_le;
    }

    // ----- byte runs ---------------------------------------------------------------------

    /// Fills `dst` completely.
    ///
    /// `dst` is the caller's memory, allocated at its full size before a byte arrives: for a
    /// count that a peer sent (a length prefix), [`read_bytes`](Self::read_bytes) grows with
    /// the bytes received instead (see [Memory](Self#memory)). The read itself buffers no more
    /// than the bytes received.
    ///
    /// On [`Error::Timeout`] nothing is consumed: the bytes that had arrived are buffered again
    /// (`dst` holds a copy of them at its start), so a retry reads every byte once, in order.
    /// Where the process cannot allocate that second copy (see [Memory](Self#memory)), the
    /// read fails instead with an I/O error of kind
    /// [`OutOfMemory`](io::ErrorKind::OutOfMemory), as after a transport error.
    ///
    /// # Errors
    ///
    /// [`Error::UnexpectedEof`] if the stream ends first, [`Error::Timeout`] as above,
    /// [`Error::Cancelled`], or the transport's error (`OutOfMemory` as above among them).
    /// But for a timeout, `dst` then holds the bytes that did arrive, at its start, and they
    /// are consumed ([`total_bytes_read`](Self::total_bytes_read) counts them).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: bytes already copied into `dst` are consumed. Use
    /// [`read_bytes`](Self::read_bytes) where the future may be dropped.
    pub async fn read_fully(&mut self, dst: &mut [u8]) -> Result<()> {
        // A read of nothing fails on a cancelled channel too, as every read does.
        self.check_cancelled()?;
        let mut filled = 0;
        while filled < dst.len() {
            let n = match self.read_available(&mut dst[filled..]).await {
                Ok(n) => n,
                Err(Error::Timeout) => {
                    // Reading may go on after a timeout, and the error carries no count: give
                    // the bytes back so that a retry starts where this call started. They were
                    // received, so memory still follows bytes received.
                    if filled > 0 {
                        // A buffer of the usual size at least: one that empties keeps its
                        // allocation, and reads go into it.
                        let size = (filled + self.buf.len()).max(READ_CHUNK);
                        // A second copy of what `dst` holds: where the process cannot hold it
                        // (as large as `dst`), the bytes stay consumed and the channel fails,
                        // instead of the failed allocation ending the process.
                        let mut again = Vec::new();
                        if again.try_reserve_exact(size).is_err() {
                            return Err(self.fail(out_of_memory()));
                        }
                        let mut buf = BytesMut::from(Bytes::from(again));
                        buf.extend_from_slice(&dst[..filled]);
                        buf.extend_from_slice(&self.buf);
                        self.buf = Buffer::from(buf);
                        self.oversized |= self.buf.capacity() > RELEASE_ABOVE;
                        // The reader waited for more: nothing is pending, whatever it holds
                        // (as after every read that timed out).
                        self.tell(false);
                    }
                    return Err(Error::Timeout);
                }
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Err(Error::UnexpectedEof {
                    needed: dst.len(),
                    available: filled,
                });
            }
            filled += n;
        }
        Ok(())
    }

    /// Waits for at least one byte, then copies as many as are buffered (up to `dst.len()`).
    ///
    /// Returns `Ok(0)` only at the end of the stream (Ktor's `readAvailable`: `-1`) or when
    /// `dst` is empty: an empty `dst` is `Ok(0)` at once, without waiting for a byte (Ktor's
    /// waits for one first). When nothing is buffered and `dst` is large, the transport reads
    /// straight into `dst`.
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`] or the transport's error.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn read_available(&mut self, dst: &mut [u8]) -> Result<usize> {
        let mut out = ReadBuf::new(dst);
        poll_fn(|cx| self.poll_read_into(cx, &mut out, false)).await?;
        Ok(out.filled().len())
    }

    /// Waits for at least one byte (unless `out` is full), then copies as many as are buffered
    /// into `out`; nothing at the end of the stream. `passed_on`: the bytes are for code that
    /// passes them on (tokio's traits), and what stays buffered is no request held for a later
    /// read (see `AsyncRead`'s implementation): the backlog is told that nothing is pending.
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
        passed_on: bool,
    ) -> Poll<Result<()>> {
        self.check_cancelled()?;
        if out.remaining() == 0 {
            // Takes nothing: the skip of an over-long line stays due, as after `consume(0)`.
            return Poll::Ready(Ok(()));
        }
        // The skip of an over-long line is dropped only by a read that takes bytes or fails:
        // one that waits and is dropped (the read is cancel safe) took none, and leaves it due.
        if self.buf.is_empty() {
            if out.remaining() >= READ_CHUNK && !self.eof && self.failed.is_none() {
                if self.oversized {
                    self.release();
                }
                if let Some(source) = self.source.as_deref_mut().map(exclusive::get) {
                    // Skip the copy through our buffer.
                    let before = out.filled().len();
                    return match ready!(Pin::new(source).poll_read(cx, out)) {
                        Ok(()) => {
                            let n = out.filled().len() - before;
                            if n == 0 {
                                self.eof = true;
                            } else {
                                self.skip = None;
                            }
                            self.received += n as u64;
                            if passed_on {
                                // What was held for an own read before leaves: a layer (TLS)
                                // may have had these bytes without a read of the socket, which
                                // would have sent it.
                                self.pass_on();
                            }
                            Poll::Ready(Ok(()))
                        }
                        Err(e) => {
                            // A read of one byte or more that fails ends the skip, as
                            // `read_bytes` does (see `read_line`'s "Over-long lines").
                            self.skip = None;
                            Poll::Ready(Err(self.fail(e)))
                        }
                    };
                }
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) => return Poll::Ready(Ok(())),
                Ok(_) => {}
                Err(e) => {
                    // As above: a failed read of one byte or more ends the skip.
                    self.skip = None;
                    return Poll::Ready(Err(e));
                }
            }
        }
        let n = self.buf.len().min(out.remaining());
        out.put_slice(&self.buf[..n]);
        self.skip = None;
        if passed_on {
            self.buf.consume(n);
            self.pass_on();
        } else {
            self.drop_consumed(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Reads exactly `n` bytes; runs of 1 KiB or more are handed out without a copy.
    ///
    /// The buffer grows as the bytes arrive (see [Memory](Self#memory)): `n` may come from the
    /// peer, and even `usize::MAX` only waits for bytes (and at the end of the stream is
    /// [`Error::UnexpectedEof`]).
    ///
    /// # Errors
    ///
    /// [`Error::UnexpectedEof`] if the stream ends first (the bytes stay buffered),
    /// [`Error::Cancelled`], or the transport's error.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is consumed until all `n` bytes are there.
    pub async fn read_bytes(&mut self, n: usize) -> Result<Bytes> {
        self.require(n).await?;
        Ok(self.take(n))
    }

    /// Reads everything up to the end of the stream, or the first `limit` bytes if the stream is
    /// longer (the rest stays buffered or unread).
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`] or the transport's error.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is consumed until the end of the stream or `limit` is reached.
    pub async fn read_remaining(&mut self, limit: usize) -> Result<Bytes> {
        self.check_cancelled()?;
        let filled: Result<()> = async {
            while self.buf.len() < limit {
                // Grow step by step: `limit` may be far larger than the stream.
                if self.fill_toward(limit).await? == 0 {
                    break;
                }
            }
            Ok(())
        }
        .await;
        self.end_read(limit > 0);
        filled?;
        let n = self.buf.len().min(limit);
        Ok(self.take(n))
    }

    /// Skips up to `max` bytes, stopping early at the end of the stream; returns how many were
    /// skipped.
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`] or the transport's error. On [`Error::Timeout`] (after which
    /// reading may go on) the bytes skipped so far stay skipped, and the error does not say how
    /// many: compare [`total_bytes_read`](Self::total_bytes_read) before and after.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: bytes skipped before the future is dropped are gone, and the count is lost.
    pub async fn discard(&mut self, max: u64) -> Result<u64> {
        self.check_cancelled()?;
        let mut skipped = 0u64;
        let done: Result<()> = async {
            while skipped < max {
                if self.buf.is_empty() && self.fill().await? == 0 {
                    break;
                }
                let n = usize::try_from(max - skipped)
                    .unwrap_or(usize::MAX)
                    .min(self.buf.len());
                self.buf.consume(n);
                // Bytes taken: the skip of an over-long line is dropped now, not when the call
                // starts (one dropped while it waits, before it took a byte, leaves it due).
                self.skip = None;
                skipped += n as u64;
            }
            Ok(())
        }
        .await;
        self.end_read(max > 0);
        self.publish();
        done?;
        Ok(skipped)
    }

    /// Skips exactly `n` bytes.
    ///
    /// # Errors
    ///
    /// [`Error::UnexpectedEof`] if the stream ends first (what was there is skipped),
    /// [`Error::Cancelled`], or the transport's error. On [`Error::Timeout`] the bytes skipped so far stay skipped, as for
    /// [`discard`](Self::discard).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`discard`](Self::discard).
    pub async fn discard_exact(&mut self, n: u64) -> Result<()> {
        let skipped = self.discard(n).await?;
        if skipped < n {
            let clamp = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
            return Err(Error::UnexpectedEof {
                needed: clamp(n),
                available: clamp(skipped),
            });
        }
        Ok(())
    }

    /// Waits until at least `min` bytes are buffered: `true` when they are, `false` when the
    /// stream ended with fewer.
    ///
    /// The buffer grows as the bytes arrive, never by `min` at once (see
    /// [Memory](Self#memory)). A look-ahead: after [`Error::TooLongLine`] the next line read
    /// still skips the rest of the over-long line (the bytes seen here may be that rest).
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`] or the transport's error.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn await_content(&mut self, min: usize) -> Result<bool> {
        // A look-ahead: the skip of an over-long line stays due for the next line read.
        self.check_cancelled()?;
        while self.buf.len() < min {
            if self.fill_toward(min).await? == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Returns a copy of the next `n` bytes without consuming them; `None` if the stream ends
    /// with fewer. A look-ahead, as [`await_content`](Self::await_content).
    ///
    /// The copy is allocated once the bytes are there: where the process may hold them once
    /// but not twice (see [Memory](Self#memory)), the read fails with an I/O error of kind
    /// [`OutOfMemory`](io::ErrorKind::OutOfMemory), as one whose buffer cannot grow does,
    /// instead of the failed allocation ending the process; the bytes stay buffered
    /// ([`read_bytes`](Self::read_bytes) hands them out without a copy).
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`], the transport's error, or [`Error::Io`] of kind `OutOfMemory` as
    /// above.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn peek(&mut self, n: usize) -> Result<Option<Bytes>> {
        if !self.await_content(n).await? {
            return Ok(None);
        }
        // `n` may come from the peer: a copy that cannot be allocated fails the read, as a
        // buffer that cannot grow does, instead of aborting the process.
        let mut copy = Vec::new();
        if copy.try_reserve_exact(n).is_err() {
            return Err(self.fail(copy_out_of_memory()));
        }
        copy.extend_from_slice(&self.buf[..n]);
        Ok(Some(Bytes::from(copy)))
    }

    /// Consumes `pattern` if the stream continues with it; returns whether it did.
    ///
    /// Answers `false` as soon as the bytes buffered differ from the start of `pattern`: it
    /// waits for more only while they are a prefix of it (a peer that sent a short command and
    /// waits for the answer is not kept waiting by a check for a longer prefix). One that
    /// answers `false` (or fails) took nothing: a look-ahead, as [`peek`](Self::peek), after
    /// which the next line read still skips the rest of an over-long line.
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`] or the transport's error.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn skip_if_found(&mut self, pattern: &[u8]) -> Result<bool> {
        self.check_cancelled()?;
        let found: Result<bool> = async {
            // The bytes compared so far: a read only adds bytes, so each is compared once (a
            // long pattern whose bytes arrive one at a time is not compared again from its
            // start after every read).
            let mut checked = 0;
            loop {
                let n = self.buf.len().min(pattern.len());
                if self.buf[checked..n] != pattern[checked..n] {
                    return Ok(false);
                }
                checked = n;
                if n == pattern.len() {
                    return Ok(true);
                }
                // Grows as the bytes arrive (see Memory), as `await_content` does.
                if self.fill_toward(pattern.len()).await? == 0 {
                    return Ok(false);
                }
            }
        }
        .await;
        // Finding nothing (or failing) took nothing: a look-ahead, as `peek`, which leaves the
        // skip of an over-long line due. Were it dropped, a loop that checks for a prefix
        // before each line read would read an over-long line again and again.
        self.end_read(!pattern.is_empty() && matches!(found, Ok(true)));
        if !found? {
            return Ok(false);
        }
        self.drop_consumed(pattern.len());
        Ok(true)
    }

    /// Copies up to `limit` bytes (until the end of the stream) into `dst`; returns how many were
    /// copied. `dst` is flushed whenever this channel has nothing buffered and must wait for
    /// more (a source that is ready costs no flush), and at the end; it is not closed. (What
    /// `dst` buffered is written out before the source is read; a deadline of the source,
    /// such as a socket's `socket_timeout`, runs from when the copy found it had to wait, so
    /// the time the transport's own flush then takes, a TLS session's records that the socket
    /// had no room for, counts.)
    ///
    /// It makes room for up to 64 KiB at a time (less when less is left to copy, but at least
    /// 4 KiB) and reads into all the room the buffer has: a read may take more than is left to
    /// copy (what it takes past `limit` stays buffered for the next read), and more than
    /// 64 KiB when an earlier item grew the buffer past that (up to 256 KiB, kept for the
    /// copy).
    /// After a copy of 64 KiB or more, the room it made is given back when it returns, unless
    /// more than 8 KiB of what follows is already buffered, so a connection that copied a large
    /// body holds its usual buffer while it waits for the next item.
    ///
    /// A failure of either side leaves both as the failure left them (Ktor's `copyTo` cancels
    /// this channel and closes `dst` with the cause): `dst` is not closed (what was copied
    /// before a failure of this channel's transport was flushed), and on a failure of `dst`
    /// the chunk it was writing is not consumed here.
    ///
    /// # Errors
    ///
    /// Either side's error. The count of what was copied before an error is not returned: to
    /// go on after a [`Error::Timeout`] of this channel, compare
    /// [`total_bytes_read`](Self::total_bytes_read) before and after to know what is left of
    /// `limit`.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a chunk may be written to `dst` and still be in this channel.
    pub async fn copy_to(&mut self, dst: &mut ByteWriteChannel, limit: u64) -> Result<u64> {
        self.check_cancelled()?;
        let mut copied = 0u64;
        let done: Result<()> = async {
            while copied < limit {
                if self.buf.is_empty() {
                    if dst.has_buffered() {
                        // Bytes the caller wrote before the copy: written out before the
                        // source is polled, so that a wait for them does not count against
                        // the source's deadline (a write that waits is not its silence).
                        dst.flush().await?;
                    }
                    // A bulk copy reads up to 64 KiB at a time (the usual chunk is 8 KiB): an
                    // eighth of the system calls. No more room than is left to copy.
                    let left = usize::try_from(limit - copied).unwrap_or(usize::MAX);
                    let want = left.min(MAX_STEP);
                    // The destination is flushed only when the source makes this copy wait (as
                    // `tokio::io::copy` does), not before every read: a source that is ready
                    // (a body already received) costs no flush per chunk.
                    let read = poll_fn(|cx| match self.poll_fill_by(cx, want) {
                        Poll::Ready(read) => Poll::Ready(Some(read)),
                        Poll::Pending => Poll::Ready(None),
                    })
                    .await;
                    let read = match read {
                        Some(Err(e)) => {
                            // What was copied before the source failed reaches the peer.
                            dst.flush().await?;
                            return Err(e);
                        }
                        Some(Ok(n)) => n,
                        None => {
                            // About to wait for the source: let the destination's peer see
                            // what it has so far (an interactive echo must not stall behind a
                            // buffer).
                            dst.flush().await?;
                            self.fill_by(want).await?
                        }
                    };
                    if read == 0 {
                        break;
                    }
                }
                let n = usize::try_from(limit - copied)
                    .unwrap_or(usize::MAX)
                    .min(self.buf.len());
                // These bytes are being passed on, not waiting to be read: a transport that
                // holds answers back while requests wait (flush coalescing) must not hold these.
                self.tell(self.buf.len() > n);
                // Bytes taken: the skip of an over-long line is dropped now, not when the call
                // starts (one dropped while it waits, before it took a byte, leaves it due).
                self.skip = None;
                // Straight from this buffer to the transport: no copy into `dst`'s buffer.
                dst.write_through(&self.buf[..n]).await?;
                self.drop_consumed(n);
                copied += n as u64;
            }
            dst.flush().await
        }
        .await;
        self.end_read(limit > 0);
        if copied >= MAX_STEP as u64
            && !self.oversized
            && self.buf.capacity() > 2 * READ_CHUNK
            && self.buf.len() <= READ_CHUNK
        {
            // A large body's 64 KiB reads grew the buffer; the reader that waits for its next
            // item holds its usual one (a keep-alive connection that received one upload
            // through here kept 64 KiB, eight times its usual buffer, for the rest of its
            // life). Copies of smaller items keep the room, so that a loop of them does not
            // allocate per call.
            self.release();
        }
        done?;
        Ok(copied)
    }

    /// Copies up to `limit` bytes (until the end of the stream) into `dst` as
    /// [`copy_to`](Self::copy_to) does, then closes `dst` with
    /// [`flush_and_close`](ByteWriteChannel::flush_and_close); returns how many were copied
    /// (Ktor's `copyAndClose`).
    ///
    /// If the copy fails, `dst` is cut short, as Ktor's `copyAndClose` closes it with the
    /// cause: what was copied is delivered, then `dst` is [cancelled](ByteWriteChannel::cancel)
    /// and counts as having lost bytes, so its peer never sees a clean end of a stream that
    /// stops short (the reader of an in-memory [`ByteChannel`](crate::ByteChannel) fails with
    /// [`Error::Cancelled`]; a socket's close resets the connection). But for a
    /// [`Error::Timeout`] of this channel, or one of `dst` that had no effect (its transport
    /// took none of the chunk it was writing): then `dst` stays open, and a later call goes on
    /// with the copy. A timeout of `dst` after its transport took part of a chunk fails `dst`
    /// for good (see [Failures](ByteWriteChannel#failures)): its stream already ends in the
    /// middle of that chunk, so it never ends cleanly (as when cut short), and every later
    /// call returns the same `Timeout` at once, so a loop that retries on `Timeout` must check
    /// [`is_closed_for_write`](ByteWriteChannel::is_closed_for_write).
    ///
    /// # Errors
    ///
    /// Either side's error.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`copy_to`](Self::copy_to).
    ///
    /// # Examples
    ///
    /// ```
    /// use net_io::{ByteChannel, ByteReadChannel};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> net_io::Result<()> {
    /// let (mut output, mut input) = ByteChannel::new(false);
    /// let mut source = ByteReadChannel::from_bytes("payload");
    /// assert_eq!(source.copy_and_close(&mut output, u64::MAX).await?, 7);
    /// assert!(output.is_closed_for_write());
    /// assert_eq!(input.read_remaining(100).await?, &b"payload"[..]);
    /// # Ok(()) }
    /// ```
    pub async fn copy_and_close(&mut self, dst: &mut ByteWriteChannel, limit: u64) -> Result<u64> {
        let copied = match self.copy_to(dst, limit).await {
            Ok(copied) => copied,
            Err(e) => {
                if !matches!(e, Error::Timeout) {
                    dst.cut_short();
                }
                return Err(e);
            }
        };
        dst.flush_and_close().await?;
        Ok(copied)
    }

    // ----- codec bridge ------------------------------------------------------------------

    /// Decodes the next frame with a [`tokio_util::codec`] decoder; `Ok(None)` at the end of the
    /// stream.
    ///
    /// The decoder works on this channel's buffer directly, so bytes buffered by earlier reads
    /// are seen by the decoder and vice versa. At the end of the stream the decoder's
    /// [`decode_eof`](Decoder::decode_eof) decides what leftover bytes mean. What the decoder
    /// consumed of a frame it had begun is not left over: tokio-util's `LengthDelimitedCodec`,
    /// whose stream ends right after a length prefix, returns `Ok(None)`, as at a clean end
    /// between frames (as in `FramedRead`); with a byte of the frame more, its
    /// "bytes remaining on stream" error.
    ///
    /// # Errors
    ///
    /// The decoder's error; transport errors and [`Error::Cancelled`] reach it through its
    /// `From<std::io::Error>`, as the [`io::Error`] that `From<Error>` makes: the I/O error
    /// itself for [`Error::Io`], an `io::Error` wrapping this crate's [`Error`] otherwise.
    /// `Error::from` on that `io::Error` gives this crate's error back in both cases (then
    /// [`Error::inner_error`] reaches an I/O error's cause, such as a TLS error).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe when the next call passes the same decoder: what a decoder consumed of a
    /// frame it had begun stays in the decoder (tokio-util's `LengthDelimitedCodec` keeps the
    /// length prefix it read; its line and delimiter codecs consume nothing until they return
    /// a frame, but for the rest of an over-long line or item, which they discard after their
    /// length error), and the channel keeps every byte not consumed. A new decoder after a dropped
    /// call starts from what the channel holds, without what the old one consumed.
    ///
    /// Between a call that returned no frame (dropped, or failed, a [`Error::Timeout`] say) and
    /// the next call with the same decoder, read nothing else from the channel: a decoder may
    /// keep where it stopped in the buffer (tokio-util's `LinesCodec` and `AnyDelimiterCodec`
    /// keep how far they searched for the delimiter), and other reads move the buffer under
    /// it: `LinesCodec` then panics, or returns two lines as one. After other reads, pass a
    /// new decoder. (Other reads between calls that each returned a frame are fine.)
    ///
    /// One call hands its decoder what is buffered once, and again only after more bytes
    /// arrive (as tokio-util's `FramedRead`), however often the call is polled: a decoder's
    /// `Ok(None)` means that it needs more bytes (tokio-util's rule), so one that returns it
    /// while a frame is still there waits for the next bytes, as with `FramedRead`. A new call
    /// cannot know that its decoder is the last call's, so a call made again after every
    /// cancel (a `select!` loop whose other branch wins) hands the decoder the partial frame
    /// every time: cheap for tokio-util's codecs, which keep their place, but a decoder that
    /// searches from the start of the buffer, or reserves room for the whole frame, at every
    /// call does that work at every cancel. In such a loop, use
    /// [`into_frames`](Self::into_frames), whose [`next_frame`](Frames::next_frame) knows its
    /// decoder, or keep one `read_frame` future across the loop's turns.
    ///
    /// # Panics
    ///
    /// A decoder's panic goes on to the caller; what the decoder consumed before it panicked
    /// is consumed (and counted by [`total_bytes_read`](Self::total_bytes_read)), the rest stays
    /// buffered, and the channel reads on.
    ///
    /// # Examples
    ///
    /// ```
    /// use net_io::ByteReadChannel;
    /// use tokio_util::codec::LinesCodec;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut input = ByteReadChannel::from_bytes("one\ntwo\n");
    /// let mut codec = LinesCodec::new_with_max_length(1024);
    /// assert_eq!(input.read_frame(&mut codec).await?.as_deref(), Some("one"));
    /// assert_eq!(input.read_frame(&mut codec).await?.as_deref(), Some("two"));
    /// assert_eq!(input.read_frame(&mut codec).await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn read_frame<D>(&mut self, decoder: &mut D) -> Result<Option<D::Item>, D::Error>
    where
        D: Decoder,
        D::Error: From<io::Error>,
    {
        // Room is given back once per frame, or per call: the decoder may be another one than
        // the last call's (which may have been dropped after it gave back its room).
        self.room_given_back = false;
        // Within this call the decoder is the same: it is not handed the same bytes twice (a
        // wake-up with nothing new, a `select!` that polls every branch, reads first).
        let mut undecodable = None;
        poll_fn(|cx| self.poll_frame(cx, decoder, &mut undecodable)).await
    }

    /// Turns the channel into a [`Stream`](futures_core::Stream) of frames decoded by `decoder`.
    ///
    /// ```
    /// use std::pin::Pin;
    /// use futures_core::Stream;
    /// use net_io::ByteReadChannel;
    /// use tokio_util::codec::LinesCodec;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let mut frames = ByteReadChannel::from_bytes("a\nb\n").into_frames(LinesCodec::new());
    /// let mut lines = Vec::new();
    /// while let Some(line) = frames.next_frame().await {
    ///     lines.push(line.unwrap());
    /// }
    /// assert_eq!(lines, ["a", "b"]);
    ///
    /// // Or as a `Stream`, for code written against one.
    /// let mut frames = ByteReadChannel::from_bytes("c\n").into_frames(LinesCodec::new());
    /// let next = std::future::poll_fn(|cx| Pin::new(&mut frames).poll_next(cx)).await;
    /// assert_eq!(next.unwrap().unwrap(), "c");
    /// # }
    /// ```
    pub fn into_frames<D: Decoder>(mut self, decoder: D) -> Frames<D> {
        // A new decoder, as for every `read_frame` call: an earlier call (dropped after it gave
        // back its decoder's room) must not keep this one's room.
        self.room_given_back = false;
        Frames {
            channel: self,
            decoder,
            done: false,
            undecodable: None,
        }
    }

    /// `undecodable`: `received` and the buffer's length when this `decoder` (a stream's own,
    /// or the same call's) last found no frame; it is not handed the same bytes again before
    /// more arrive (as tokio-util's `FramedRead`: a decoder that searches from the start would
    /// otherwise scan what is buffered at every poll, and a stream's `next_frame` made again
    /// after every cancel).
    fn poll_frame<D>(
        &mut self,
        cx: &mut Context<'_>,
        decoder: &mut D,
        undecodable: &mut Option<(u64, usize)>,
    ) -> Poll<Result<Option<D::Item>, D::Error>>
    where
        D: Decoder,
        D::Error: From<io::Error>,
    {
        if let Err(e) = self.check_cancelled() {
            return Poll::Ready(Err(io::Error::from(e).into()));
        }
        let frame = ready!(self.poll_decode(cx, decoder, undecodable));
        self.end_read(true);
        if frame.is_err() {
            // The decoder may have consumed input before it failed (or the transport failed):
            // say what is left.
            self.publish();
        }
        Poll::Ready(frame)
    }

    /// [`poll_frame`](Self::poll_frame)'s decoding and reading.
    fn poll_decode<D>(
        &mut self,
        cx: &mut Context<'_>,
        decoder: &mut D,
        undecodable: &mut Option<(u64, usize)>,
    ) -> Poll<Result<Option<D::Item>, D::Error>>
    where
        D: Decoder,
        D::Error: From<io::Error>,
    {
        // Nothing received or consumed since this decoder last found no frame: read first.
        let mut decode = *undecodable != Some((self.received, self.buf.len()));
        loop {
            if self.eof {
                // No read from the transport follows to clear the backlog: say what is left.
                let before = self.buf.capacity();
                let frame = self.decode_with(|buf| decoder.decode_eof(buf));
                let after = self.buf.capacity();
                if after > before
                    && after > RELEASE_ABOVE
                    && after > self.buf.len().saturating_mul(2).saturating_add(MAX_STEP)
                {
                    // Room the decoder made just now for a length the peer announced, which
                    // no byte will fill any more. (Only that: a buffer the channel grew with
                    // the bytes it received is not copied at every frame read after the end.)
                    self.release();
                }
                self.publish();
                return Poll::Ready(frame);
            }
            if decode {
                // What is buffered is decoded first, even after a transport error.
                *undecodable = None;
                let frame = self.decode_with(|buf| decoder.decode(buf));
                // A decoder may make room for a whole frame itself: the channel gives a buffer
                // grown that way back too, once it is empty.
                self.oversized |= self.buf.capacity() > RELEASE_ABOVE;
                if let Some(frame) = frame? {
                    self.room_given_back = false;
                    self.publish();
                    return Poll::Ready(Ok(Some(frame)));
                }
                *undecodable = Some((self.received, self.buf.len()));
            }
            decode = true;
            if self.oversized
                && !self.room_given_back
                && self.buf.capacity() > self.buf.len().saturating_mul(2).saturating_add(MAX_STEP)
            {
                // The room is for a length the peer announced, not for bytes received (a
                // 4-byte prefix saying 8 MiB made `LengthDelimitedCodec` reserve 8 MiB): give
                // it back, so that the buffer grows as the frame's bytes arrive. Once per
                // frame, a copy of what is buffered.
                self.release();
                self.room_given_back = true;
            }
            if let Err(e) = ready!(self.poll_fill_releasing(cx, 0, 0)) {
                return Poll::Ready(Err(io::Error::from(e).into()));
            }
        }
    }

    // ----- buffer management -------------------------------------------------------------

    /// Fails once the channel was cancelled.
    fn check_cancelled(&self) -> Result<()> {
        if self.cancelled {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Ends a read other than a line read: the skip of an over-long line is dropped, unless the
    /// read takes no bytes (`takes` false: a read of no bytes, a `skip_if_found` that found
    /// nothing). Called once the read is done (or, for one that is not cancel safe, once it
    /// takes bytes), not when it starts: one dropped while it waits took nothing, and leaves the
    /// skip due (as `read_available` does).
    fn end_read(&mut self, takes: bool) {
        if takes {
            self.skip = None;
        }
    }

    /// Waits until `n` bytes are buffered, or fails with `UnexpectedEof`.
    async fn require(&mut self, n: usize) -> Result<()> {
        self.check_cancelled()?;
        let complete = self.await_content(n).await;
        self.end_read(n > 0);
        if complete? {
            Ok(())
        } else {
            Err(Error::UnexpectedEof {
                needed: n,
                available: self.buf.len(),
            })
        }
    }

    /// Runs a decoder's `decode` on the buffer. A decoder only consumes (tokio-util's do); bytes
    /// one puts in count as received, so that the count of what was read stays whole, also
    /// when the decoder panics after it put them in (the count is kept as it unwinds).
    ///
    /// A channel without a buffer (a new one, one of no bytes, one that gave its room back)
    /// holds an empty `BytesMut` whose pointer dangles, which `FramedRead` never hands a
    /// decoder and which a decoder may pass where a pointer must be valid even for no bytes
    /// (tokio-util's `LinesCodec` to the C library's `memchr`: undefined behaviour). Such a
    /// decoder is lent a buffer of `LENT` byte instead, dropped after it if still empty: an
    /// idle channel still holds no buffer.
    fn decode_with<T>(&mut self, decode: impl FnOnce(&mut BytesMut) -> T) -> T {
        // A decoder may change bytes in place, which would leave a partial item's scan wrong.
        self.resume_live = false;
        let bytes = self.buf.bytes_mut();
        let lent = bytes.capacity() == 0;
        if lent {
            *bytes = BytesMut::with_capacity(LENT);
        }
        let counted = PutIn {
            len: bytes.len(),
            bytes,
            received: &mut self.received,
        };
        let decoded = decode(counted.bytes);
        drop(counted);
        if lent {
            let bytes = self.buf.bytes_mut();
            if bytes.is_empty() && bytes.capacity() <= LENT {
                *bytes = BytesMut::new();
            }
        }
        decoded
    }

    /// Takes `n` buffered bytes: a run of at least `ZERO_COPY_MIN` shares the buffer's
    /// allocation, which lives as long as the run does. Not where a large item grew the buffer
    /// (past `RELEASE_ABOVE`): there only an item of that size shares it, and a smaller one is
    /// copied, so that one the application keeps does not keep that much memory (a 1 KiB item
    /// after a 4 MiB line would keep the line's buffer).
    fn take(&mut self, n: usize) -> Bytes {
        if n >= ZERO_COPY_MIN && (!self.oversized || n > RELEASE_ABOVE) {
            let bytes = self.buf.bytes_mut().split_to(n).freeze();
            self.publish();
            bytes
        } else {
            let bytes = Bytes::copy_from_slice(&self.buf[..n]);
            self.drop_consumed(n);
            bytes
        }
    }

    /// Reads once from the transport; `Ok(0)` at the end of the stream.
    async fn fill(&mut self) -> Result<usize> {
        self.fill_by(0).await
    }

    /// As `fill`, making room for at least `want` more bytes first.
    async fn fill_by(&mut self, want: usize) -> Result<usize> {
        poll_fn(|cx| self.poll_fill_by(cx, want)).await
    }

    /// As `fill`, on the way to `target` buffered bytes, a count that may come from the peer:
    /// the buffer grows by what is buffered already (at least a chunk, at most 64 KiB), never
    /// by the count itself; and only once the room an earlier step made is half filled. (The
    /// request grows with what is buffered, and a step makes just that much room: asked for at
    /// every read, one byte later the room fell short of it again, and a peer that sent a byte
    /// per segment had the buffer reallocated at every read, up to 128 KiB.)
    async fn fill_toward(&mut self, target: usize) -> Result<usize> {
        let len = self.buf.len();
        let want = target
            .saturating_sub(len)
            .min(len.max(READ_CHUNK))
            .min(MAX_STEP);
        let want = if self.buf.spare() >= want.div_ceil(2) {
            0
        } else {
            want
        };
        self.fill_by(want).await
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize>> {
        self.poll_fill_by(cx, 0)
    }

    #[inline]
    fn poll_fill_by(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<Result<usize>> {
        self.poll_fill_releasing(cx, want, MAX_STEP)
    }

    /// As `poll_fill_by`; a buffer that a large item grew is given back first if it holds at
    /// most `left` bytes. A decoder's reads pass 0: a decoder may have made room for the rest
    /// of a frame it has begun, which the buffer's first bytes may be.
    ///
    /// Inlined into its callers (a line read's is the hottest path of a line protocol's
    /// server): the rare cases (the first read, a buffer to grow or give back) are calls.
    #[inline(always)]
    fn poll_fill_releasing(
        &mut self,
        cx: &mut Context<'_>,
        want: usize,
        left: usize,
    ) -> Poll<Result<usize>> {
        self.check_cancelled()?;
        if let Some(failure) = &self.failed {
            return Poll::Ready(Err(failure.report()));
        }
        if self.eof {
            return Poll::Ready(Ok(0));
        }
        if self.oversized && self.buf.len() <= left {
            // A large item has passed: a reader that may now wait holds its usual buffer, with
            // what has come of the next item. (A copy of at most 64 KiB, once per buffer grown
            // past 256 KiB: growing that far again takes more bytes received than that.)
            self.release();
        }
        if self.source.is_none() {
            self.eof = true;
            return Poll::Ready(Ok(0));
        }
        if let Some(backlog) = &self.backlog {
            // The transport may make this reader wait: answers written meanwhile must leave,
            // whatever part of a request is buffered. (The flag is set again by the read that
            // consumes and leaves input behind.)
            backlog.set(false);
        }
        let spare = self.buf.spare();
        if spare < want || spare < READ_CHUNK / 2 {
            if self.received == 0 && self.buf.capacity() == 0 {
                return self.poll_first_fill(cx, want);
            }
            if !self.make_room(want) {
                return Poll::Ready(Err(self.fail(out_of_memory())));
            }
        }
        let Some(source) = self.source.as_deref_mut().map(exclusive::get) else {
            return Poll::Ready(Ok(0));
        };
        match ready!(tokio_util::io::poll_read_buf(
            Pin::new(source),
            cx,
            self.buf.bytes_mut()
        )) {
            Ok(0) => {
                self.eof = true;
                Poll::Ready(Ok(0))
            }
            Ok(n) => {
                self.received += n as u64;
                Poll::Ready(Ok(n))
            }
            Err(e) => Poll::Ready(Err(self.fail(e))),
        }
    }

    /// The first read of a channel that has received nothing yet, and has no buffer: it goes
    /// to a small buffer on the stack, and the channel's own is made when bytes arrive. An
    /// idle connection holds no read buffer. (Later, a buffer whose bytes were all split off
    /// has no capacity left either, but `make_room` takes its allocation back.)
    #[cold]
    #[inline(never)]
    fn poll_first_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<Result<usize>> {
        let Some(source) = self.source.as_deref_mut().map(exclusive::get) else {
            return Poll::Ready(Ok(0));
        };
        let mut probe = [0; PROBE];
        let mut read_buf = ReadBuf::new(&mut probe);
        match ready!(Pin::new(source).poll_read(cx, &mut read_buf)) {
            Ok(()) if read_buf.filled().is_empty() => {
                self.eof = true;
                Poll::Ready(Ok(0))
            }
            Ok(()) => {
                let n = read_buf.filled().len();
                let buf = self.buf.bytes_mut();
                buf.reserve(want.max(READ_CHUNK));
                buf.extend_from_slice(read_buf.filled());
                self.received += n as u64;
                Poll::Ready(Ok(n))
            }
            Err(e) => Poll::Ready(Err(self.fail(e))),
        }
    }

    /// Makes room for at least `want` more bytes, and half a chunk, before a read; false if the
    /// allocation failed (the buffer is left as it was).
    #[inline(never)]
    fn make_room(&mut self, want: usize) -> bool {
        let made = if self.buf.capacity() == 0 {
            self.buf.bytes_mut().reserve(want.max(READ_CHUNK));
            true
        } else {
            // Asking for no more than half a chunk lets the unread tail move to the front of
            // the existing allocation instead of allocating, so a steady stream of reads does
            // not allocate.
            grow(self.buf.bytes_mut(), want.max(READ_CHUNK / 2))
        };
        self.oversized |= self.buf.capacity() > RELEASE_ABOVE;
        made
    }

    /// Gives back the buffer that a large item grew; what it still holds moves to a buffer of
    /// the usual size (or the next read makes one).
    #[cold]
    fn release(&mut self) {
        self.buf = if self.buf.is_empty() {
            Buffer::default()
        } else {
            let mut usual = BytesMut::with_capacity(self.buf.len() + READ_CHUNK);
            usual.extend_from_slice(&self.buf);
            Buffer::from(usual)
        };
        self.oversized = false;
    }

    /// Records a transport error so later reads report it too (a timeout is not final); returns
    /// its first report.
    fn fail(&mut self, e: io::Error) -> Error {
        let e = Error::from(e);
        if matches!(e, Error::Timeout) {
            return e;
        }
        let failure = Failure::new(e);
        let first = failure.report();
        self.failed = Some(failure);
        self.source = None;
        first
    }
}

/// Makes room in `buf` for `additional` more bytes: by moving its bytes to the front of its
/// allocation where that is enough (no allocation), else in a new allocation of `additional`
/// more than it holds, or twice what it holds if that is more (amortized growth, following the
/// bytes held). Not `BytesMut::reserve`, which doubles the whole allocation whatever it holds:
/// a read toward a count that had received 64 KiB and one byte held 256 KiB.
/// False if the allocation failed (the buffer is left as it was).
#[inline]
fn grow(buf: &mut BytesMut, additional: usize) -> bool {
    buf.try_reclaim(additional) || reallocate(buf, additional)
}

/// [`grow`]'s allocation (off the path of a steady stream of reads): the bytes move to the
/// front of their allocation (or to one of their own, if a `Bytes` handed out shares it), which
/// `realloc` grows to exactly the room asked for (as `Vec::reserve` would, without doubling).
/// Where twice what it holds cannot be had (a 32-bit process holding 1 GiB, whose address
/// space may have no free 2 GiB run; a limit on the process's memory), it tries half as much
/// more, and so on down to `additional` (not `additional` at once: each step may copy all it
/// holds, as musl's `realloc` does, and steps of `additional` near the limit copied a buffer of
/// hundreds of MiB thousands of times); false where not even that can be had (the bytes stay as
/// they were).
#[cold]
#[inline(never)]
fn reallocate(buf: &mut BytesMut, additional: usize) -> bool {
    let len = buf.len();
    let mut more = grown_capacity(len, additional) - len;
    let mut bytes = Vec::from(std::mem::take(buf));
    let made = loop {
        if bytes.try_reserve_exact(more).is_ok() {
            break true;
        }
        if more <= additional {
            break false;
        }
        more = (more / 2).max(additional);
    };
    // No copy: the `Bytes` is the allocation's only handle.
    *buf = BytesMut::from(Bytes::from(bytes));
    made
}

/// The error of a read whose buffer could not grow: the process may not allocate that much.
#[cold]
fn out_of_memory() -> io::Error {
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        "the read buffer could not grow: the process may not allocate more memory",
    )
}

/// The error of a line read whose line could not be allocated.
#[cold]
fn line_out_of_memory() -> io::Error {
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        "the line read could not be allocated: the process may not allocate more memory",
    )
}

/// The error of a `peek` whose copy could not be allocated.
#[cold]
fn copy_out_of_memory() -> io::Error {
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        "the copy of the bytes peeked at could not be allocated: the process may not allocate \
         more memory",
    )
}

/// The capacity [`reallocate`] asks for, for `additional` bytes more than the `len` held:
/// twice `len` if that is more, but never past what a `Vec` may hold (`isize::MAX` bytes, 2 GiB
/// where `usize` has 32 bits, where a buffer of 1 GiB doubled made `reserve_exact` panic with
/// "capacity overflow" though the room asked for fitted); and at least a chunk, the usual
/// buffer. (A buffer whose allocation a run handed out without a copy still shares, with few
/// bytes in it, was made anew with those bytes and half a chunk: the channel then read 4 KiB
/// at a time, as long as it lived, since a buffer that empties keeps its allocation.)
fn grown_capacity(len: usize, additional: usize) -> usize {
    let doubled = len.saturating_mul(2).min(isize::MAX.unsigned_abs());
    len.saturating_add(additional).max(doubled).max(READ_CHUNK)
}

impl Drop for ByteReadChannel {
    /// A channel nobody reads any more has no backlog to wait for.
    fn drop(&mut self) {
        if let Some(backlog) = &self.backlog {
            backlog.set(false);
        }
    }
}

impl AsyncRead for ByteReadChannel {
    /// Reads what is buffered, or waits for the transport (as
    /// [`read_available`](ByteReadChannel::read_available), but what it leaves buffered is
    /// not pending for a [`Backlog`](crate::Backlog): see
    /// [tokio's I/O traits](ByteReadChannel#tokios-io-traits)); this crate's errors travel
    /// inside the [`io::Error`].
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut()
            .poll_read_into(cx, buf, true)
            .map_err(io::Error::from)
    }
}

impl AsyncBufRead for ByteReadChannel {
    /// The channel's buffer, filled from the transport first if it is empty.
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        // A look-ahead: the skip of an over-long line stays due until `consume` takes bytes.
        this.check_cancelled()?;
        if this.buf.is_empty() {
            ready!(this.poll_fill(cx))?;
        }
        // What it hands out is passed on, as by `poll_read`: not pending for a backlog, also
        // before `consume` (the caller may wait on a write first), and what was held for an
        // own read before leaves.
        this.pass_on();
        Poll::Ready(Ok(&this.buf[..]))
    }

    /// Consumes `amt` bytes of those [`poll_fill_buf`](Self::poll_fill_buf) returned; taking
    /// any drops a due skip of an over-long line (the bytes are read as they are). What is left
    /// buffered is not pending for a [`Backlog`](crate::Backlog), as after `poll_read`.
    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        let n = amt.min(this.buf.len());
        if n > 0 {
            this.skip = None;
        }
        // As after `poll_read`: nothing is held back for a reader through tokio's traits.
        this.buf.consume(n);
        this.pass_on();
    }
}

/// A [`Stream`](futures_core::Stream) of frames decoded from a [`ByteReadChannel`]; made by
/// [`ByteReadChannel::into_frames`].
///
/// The stream ends (yields `None`) at the end of the channel, and after the first error. Ended
/// at an error, it never reads again, whatever is still buffered (the bytes the decoder failed
/// on): for a shared [`Backlog`](crate::Backlog) nothing is pending any more, as at the end of
/// the stream, and what was held back for it leaves then (see
/// [`Backlog::on_passed_on`](crate::Backlog::on_passed_on)), so that an answer to the bad frame
/// is not held back until the connection closes. ([`into_parts`](Self::into_parts) gives the
/// channel back to read on.)
#[derive(Debug)]
#[must_use = "streams do nothing unless polled"]
pub struct Frames<D> {
    channel: ByteReadChannel,
    decoder: D,
    done: bool,
    /// See [`ByteReadChannel::poll_frame`].
    undecodable: Option<(u64, usize)>,
}

impl<D> Frames<D> {
    /// Gives back the channel (with whatever is still buffered) and the decoder.
    pub fn into_parts(self) -> (ByteReadChannel, D) {
        (self.channel, self.decoder)
    }

    /// The next frame: what the [`Stream`](futures_core::Stream) yields next, without
    /// `StreamExt` or `poll_fn`; `None` at the end of the stream and after the first error.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the decoder stays in `self` with what it consumed of a frame it began, and
    /// the channel keeps every byte not consumed (see
    /// [`ByteReadChannel::read_frame`]).
    pub async fn next_frame(&mut self) -> Option<Result<D::Item, D::Error>>
    where
        D: Decoder,
        D::Error: From<io::Error>,
    {
        poll_fn(|cx| self.poll_next_frame(cx)).await
    }

    /// The stream's poll, for [`next_frame`](Self::next_frame) and `poll_next`.
    fn poll_next_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<D::Item, D::Error>>>
    where
        D: Decoder,
        D::Error: From<io::Error>,
    {
        if self.done {
            return Poll::Ready(None);
        }
        let result = ready!(
            self.channel
                .poll_frame(cx, &mut self.decoder, &mut self.undecodable)
        );
        match result {
            Ok(Some(frame)) => Poll::Ready(Some(Ok(frame))),
            Ok(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Err(e) => {
                self.done = true;
                // The stream ends here, perhaps with what the decoder failed on still buffered:
                // as a reader at the end of its stream, it never reads again, so nothing is
                // pending, and what was held back for it leaves now.
                self.channel.pass_on();
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

impl<D> futures_core::Stream for Frames<D>
where
    D: Decoder + Unpin,
    D::Error: From<io::Error>,
{
    type Item = Result<D::Item, D::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_next_frame(cx)
    }
}

/// The buffer a decoder is given, and the channel's count of bytes received, which the bytes the
/// decoder put in (outside tokio-util's contract) join when it returns or panics.
struct PutIn<'a> {
    bytes: &'a mut BytesMut,
    /// The buffer's length before the decoder ran.
    len: usize,
    received: &'a mut u64,
}

impl Drop for PutIn<'_> {
    fn drop(&mut self) {
        *self.received += self.bytes.len().saturating_sub(self.len) as u64;
    }
}

/// The progress of one line read between polls: where the next scan may start, and whether to
/// scan before reading (decided at the first poll, after skipping the rest of an over-long
/// line).
#[derive(Debug, Default)]
struct LineScan {
    from: usize,
    scan: Option<bool>,
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::future::Future;
    use std::task::Waker;

    use super::*;

    /// A transport that hands out its chunks (each over as many reads as the reader's room
    /// needs), then the end of the stream.
    struct Chunks(VecDeque<Vec<u8>>);

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(chunk) = self.0.front_mut() {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk[..n]);
                chunk.drain(..n);
                if chunk.is_empty() {
                    self.0.pop_front();
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    /// A transport that hands out what the test puts in, and otherwise waits (never ends).
    #[derive(Clone, Default)]
    struct Trickle(std::sync::Arc<Mutex<VecDeque<u8>>>);

    impl Trickle {
        fn put(&self, bytes: &[u8]) {
            self.0.lock().unwrap().extend(bytes);
        }
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let mut queued = self.0.lock().unwrap();
            if queued.is_empty() {
                return Poll::Pending;
            }
            let n = queued.len().min(buf.remaining());
            for byte in queued.drain(..n) {
                buf.put_slice(&[byte]);
            }
            Poll::Ready(Ok(()))
        }
    }

    /// Polls `future` once (a `select!` whose other branch then wins drops it).
    fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
        let mut future = std::pin::pin!(future);
        future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
    }

    /// A line read (or `read_until`) dropped while it waits for the rest of a partial item (a
    /// `select!` that another branch won) and started again goes on scanning where the
    /// dropped one stopped, so the CPU a partial item costs follows the bytes received, not
    /// the number of cancels: with 256 KiB buffered, 100 cancels (a byte arriving between
    /// each) scan a few bytes each. Before, each new read scanned the partial item from its
    /// start (about 11 µs per cancel with 1 MiB buffered, in a release build): a peer's long
    /// partial line, on a server whose connection task selects over its reads and a busy
    /// broadcast, cost that at every message of the broadcast.
    #[test]
    fn a_read_started_again_after_a_cancel_scans_only_the_new_bytes() {
        const PARTIAL: usize = 256 * 1024;
        const CANCELS: usize = 100;
        type Read = fn(&mut ByteReadChannel, &mut String) -> Poll<Result<Option<usize>>>;
        let reads: [(&str, Read); 5] = [
            ("read_line", |input, _| {
                poll_once(input.read_line(1 << 20, LineEnding::Default))
                    .map_ok(|line| line.map(|line| line.len()))
            }),
            ("read_line lenient", |input, _| {
                poll_once(input.read_line(1 << 20, LineEnding::Lenient))
                    .map_ok(|line| line.map(|line| line.len()))
            }),
            ("read_line_to", |input, out| {
                poll_once(input.read_line_to(out, 1 << 20, LineEnding::Default))
            }),
            ("read_until", |input, _| {
                poll_once(input.read_until(b"\r\n\r\n", 1 << 20))
                    .map_ok(|item| item.map(|item| item.len()))
            }),
            ("read_line_strict", |input, _| {
                poll_once(input.read_line_strict(1 << 20, LineEnding::Default))
                    .map_ok(|line| line.map(|line| line.len()))
            }),
        ];
        for (name, read) in reads {
            let peer = Trickle::default();
            let mut input = ByteReadChannel::new(peer.clone());
            let mut out = String::new();
            // An item before: where a scan stopped is counted from the bytes consumed.
            let first: &[u8] = if name == "read_until" {
                b"first\r\n\r\n"
            } else {
                b"first\n"
            };
            peer.put(first);
            assert_eq!(
                read(&mut input, &mut out).map_err(drop),
                Poll::Ready(Ok(Some(5))),
                "{name}"
            );
            out.clear();
            peer.put(&vec![b'a'; PARTIAL]);
            assert!(read(&mut input, &mut out).is_pending(), "{name}");
            crate::line::SCANNED.set(0);
            for _ in 0..CANCELS {
                peer.put(b"a");
                assert!(read(&mut input, &mut out).is_pending(), "{name}");
            }
            let scanned = crate::line::SCANNED.get();
            // At least the byte each read found new: a count that stayed 0 would prove nothing.
            assert!(
                (CANCELS..=CANCELS * 8).contains(&scanned),
                "{name}: {CANCELS} reads started again scanned {scanned} bytes"
            );
            peer.put(b"\r\n\r\n");
            assert_eq!(
                read(&mut input, &mut out).map_err(drop),
                Poll::Ready(Ok(Some(PARTIAL + CANCELS))),
                "{name}"
            );
        }
    }

    /// Where a read stopped scanning is of its kind only: another kind of read, or a read of
    /// the same kind after bytes were consumed, scans from the start.
    #[test]
    fn where_a_scan_stopped_is_used_by_the_same_kind_of_read_only() {
        let peer = Trickle::default();
        let mut input = ByteReadChannel::new(peer.clone());
        // Default: a lone CR is content, so the scan of "abc\rdef" stops at its end.
        peer.put(b"abc\rdef");
        assert!(poll_once(input.read_line(100, LineEnding::Default)).is_pending());
        let lenient = poll_once(input.read_line(100, LineEnding::Lenient));
        assert!(matches!(lenient, Poll::Ready(Ok(Some(ref line))) if line == "abc"));
        // "def" is left; a `read_until` of a delimiter the line scan passed over finds it.
        assert!(poll_once(input.read_line(100, LineEnding::Default)).is_pending());
        let until = poll_once(input.read_until(b"e", 100));
        assert!(matches!(until, Poll::Ready(Ok(Some(ref item))) if &item[..] == b"d"));
        // "f" is left; a longer delimiter's scan, then a shorter one that it contains.
        peer.put(b"\r\n\r");
        assert!(poll_once(input.read_until(b"\r\n\r\n", 100)).is_pending());
        let until = poll_once(input.read_until(b"\r\n", 100));
        assert!(matches!(until, Poll::Ready(Ok(Some(ref item))) if &item[..] == b"f"));
        // "\r" is left: after the consume, the same kind of read scans it again.
        peer.put(b"x\n");
        let line = poll_once(input.read_line(100, LineEnding::Lenient));
        assert!(matches!(line, Poll::Ready(Ok(Some(ref line))) if line.is_empty()));
        let line = poll_once(input.read_line(100, LineEnding::Lenient));
        assert!(matches!(line, Poll::Ready(Ok(Some(ref line))) if line == "x"));
    }

    /// Polls `future`, which never waits on this transport, to its end.
    fn ready<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..1000 {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
        }
        panic!("a read on a transport that is always ready did not complete");
    }

    /// A buffer of more than half of what a `Vec` may hold (`isize::MAX` bytes: 1 GiB and
    /// more where `usize` has 32 bits, reached by `read_remaining(usize::MAX)` or a long line
    /// with a high limit) grows to that at most, or by what is asked for, instead of to twice
    /// its length, which no `Vec` may have: `reserve_exact` panicked ("capacity overflow")
    /// where the room asked for fitted.
    #[test]
    fn a_buffer_past_half_of_what_a_vec_holds_grows_within_it() {
        let most = isize::MAX.unsigned_abs();
        for len in [most / 2 + 1, most - MAX_STEP, most - READ_CHUNK / 2] {
            let room = grown_capacity(len, READ_CHUNK / 2);
            assert!(room <= most, "len {len}: room {room} past isize::MAX");
            assert!(room >= len + READ_CHUNK / 2, "len {len}: room {room}");
        }
        // Below that: twice the length, or the length and the room asked for if that is more.
        assert_eq!(grown_capacity(most / 2, 1), most - 1);
        assert_eq!(grown_capacity(1024, READ_CHUNK), 1024 + READ_CHUNK);
        // The room asked for is never cut short: past `isize::MAX`, `try_reserve_exact` fails
        // (and the read with `OutOfMemory`).
        assert_eq!(grown_capacity(most, 1), most + 1);
    }

    /// SPEC §4.1: a count-taking read grows its buffer as the bytes arrive, to at most twice
    /// what it received (or 8 KiB more, for fewer). With `BytesMut::reserve`, which doubles
    /// the whole allocation, one byte received made `await_content(usize::MAX)` hold 16 KiB,
    /// 8 KiB and one byte 32 KiB, and 64 KiB and one byte 256 KiB (found by the `typed_reads`
    /// fuzz target).
    #[test]
    fn a_count_taking_read_holds_at_most_twice_what_it_received() {
        for received in [
            1,
            PROBE + 1,
            READ_CHUNK,
            READ_CHUNK + 1,
            2 * READ_CHUNK + 1,
            MAX_STEP - 1,
            MAX_STEP + 1,
            MAX_STEP + READ_CHUNK / 2,
            2 * MAX_STEP + 1,
            RELEASE_ABOVE + 1,
            1 << 20,
        ] {
            for first in [1, PROBE, READ_CHUNK] {
                let first = first.min(received);
                let chunks = [vec![7; first], vec![7; received - first]];
                let chunks = chunks.into_iter().filter(|c| !c.is_empty()).collect();
                let mut channel = ByteReadChannel::new(Chunks(chunks));
                assert!(!ready(channel.await_content(usize::MAX)).unwrap());
                assert_eq!(channel.available_for_read(), received);
                let held = channel.buf.capacity();
                assert!(
                    held <= (2 * received).max(received + READ_CHUNK),
                    "{held} bytes held after receiving {received} (the first read {first})"
                );
            }
        }
    }
}
