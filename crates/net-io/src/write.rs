//! [`ByteWriteChannel`]: buffered writes of bytes, text and integers to any `AsyncWrite`.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::AsyncWrite;
use tokio_util::codec::Encoder;

use crate::pipe::PipeWriter;
use crate::{Error, Result};

/// The most bytes a writer buffers before it writes them to the transport.
const WRITE_BUFFER: usize = 8 * 1024;

enum Sink {
    Io(Box<dyn AsyncWrite + Send + Unpin>),
    Pipe(PipeWriter),
}

impl Sink {
    fn pin(&mut self) -> Pin<&mut (dyn AsyncWrite + Send + Unpin)> {
        match self {
            Sink::Io(w) => Pin::new(w.as_mut()),
            Sink::Pipe(p) => Pin::new(p),
        }
    }
}

/// The writing end of a byte stream: bytes, text and integers to any [`AsyncWrite`].
///
/// Writes go into a buffer of up to 8 KiB, which is written to the transport when it fills, on
/// [`flush`](Self::flush), and, in `auto_flush` mode, at the end of every write call (the peer
/// sees each write without a `flush`). A write larger than the buffer goes to the transport
/// directly. A slow peer holds the writer back (backpressure); memory never grows past the buffer.
///
/// Close with [`flush_and_close`](Self::flush_and_close): it writes what is buffered, then shuts
/// the transport's write side down (a socket sends FIN; its read side keeps working). Dropping
/// the channel instead drops the transport **without** writing what is still buffered.
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
///   below, writes that fit the room left in the buffer copy their bytes into it whole before
///   they wait, so a dropped one is never lost: it is sent with what follows.
/// - A write that goes to the transport directly — one larger than the room left in the buffer,
///   or, in `auto_flush` mode, one made while the buffer is empty — may be dropped after the
///   transport took a prefix of it: that prefix is sent, the rest of the slice is not.
///
/// So the peer receives everything written before the dropped write, then a prefix (from
/// nothing to all) of its bytes, then whatever is written next. A protocol with framing cannot
/// go on after that; close or [`cancel`](Self::cancel) the channel. [`flush`](Self::flush)
/// itself loses nothing when dropped.
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
    /// `None` once closed or cancelled.
    sink: Option<Sink>,
    buf: BytesMut,
    auto_flush: bool,
}

impl fmt::Debug for ByteWriteChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteWriteChannel")
            .field("buffered", &self.buf.len())
            .field("auto_flush", &self.auto_flush)
            .field("closed", &self.sink.is_none())
            .finish_non_exhaustive()
    }
}

macro_rules! typed_writes {
    ($($(#[$doc:meta])* $name:ident($ty:ty) = $put:ident;)*) => {$(
        $(#[$doc])*
        ///
        /// # Errors
        ///
        /// [`Error::ClosedForWrite`] after close, or the transport's error.
        ///
        /// # Cancel safety
        ///
        /// Not cancel safe: the value may be buffered, partly written or not written.
        pub async fn $name(&mut self, value: $ty) -> Result<()> {
            self.check_open()?;
            self.buffer().$put(value);
            self.after_write().await
        }
    )*};
}

impl ByteWriteChannel {
    /// Wraps a writer. With `auto_flush`, every write call ends flushed.
    pub fn new<W>(writer: W, auto_flush: bool) -> Self
    where
        W: AsyncWrite + Send + Unpin + 'static,
    {
        Self::with_sink(Sink::Io(Box::new(writer)), auto_flush)
    }

    pub(crate) fn from_pipe(writer: PipeWriter, auto_flush: bool) -> Self {
        Self::with_sink(Sink::Pipe(writer), auto_flush)
    }

    fn with_sink(sink: Sink, auto_flush: bool) -> Self {
        ByteWriteChannel {
            sink: Some(sink),
            buf: BytesMut::new(),
            auto_flush,
        }
    }

    /// Whether every write call ends flushed.
    pub fn auto_flush(&self) -> bool {
        self.auto_flush
    }

    /// Whether the channel was closed or cancelled; writes then fail with
    /// [`Error::ClosedForWrite`].
    pub fn is_closed_for_write(&self) -> bool {
        self.sink.is_none()
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
    /// [`Error::ClosedForWrite`] after close, or the transport's error.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: part of `src` may have been written or buffered (see
    /// [Dropped writes](Self#dropped-writes) for exactly what the peer then receives).
    pub async fn write_fully(&mut self, src: &[u8]) -> Result<()> {
        self.check_open()?;
        if self.buf.len() + src.len() <= WRITE_BUFFER && !(self.auto_flush && self.buf.is_empty()) {
            self.buffer().extend_from_slice(src);
            return self.after_write().await;
        }
        // Too big for the buffer, or about to be flushed anyway: skip the copy.
        self.write_buffered().await?;
        self.write_direct(src).await?;
        if self.auto_flush {
            self.flush().await?;
        }
        Ok(())
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
    pub async fn write_bytes(&mut self, src: Bytes) -> Result<()> {
        self.write_fully(&src).await
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
    pub async fn write_string_utf8(&mut self, s: &str) -> Result<()> {
        self.write_fully(s.as_bytes()).await
    }

    /// Encodes `item` with a [`tokio_util::codec`] encoder and writes it.
    ///
    /// # Errors
    ///
    /// The encoder's error; [`Error::ClosedForWrite`] and transport errors reach it through its
    /// `From<std::io::Error>`.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`write_fully`](Self::write_fully).
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
        self.check_open().map_err(io::Error::from)?;
        encoder.encode(item, self.buffer())?;
        self.after_write().await.map_err(io::Error::from)?;
        Ok(())
    }

    /// Writes everything buffered to the transport and flushes it.
    ///
    /// # Errors
    ///
    /// [`Error::ClosedForWrite`] after close, or the transport's error.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost or written twice: bytes not yet written stay
    /// buffered for the next flush.
    pub async fn flush(&mut self) -> Result<()> {
        self.check_open()?;
        self.write_buffered().await?;
        let sink = self.sink.as_mut().ok_or(Error::ClosedForWrite)?;
        poll_fn(|cx| sink.pin().poll_flush(cx)).await?;
        Ok(())
    }

    /// Flushes, then closes the write side of the transport (a socket sends FIN, and its read
    /// side keeps working: a half-close). Later writes fail with [`Error::ClosedForWrite`].
    ///
    /// The channel counts as closed even when flushing fails; the error is returned.
    ///
    /// # Errors
    ///
    /// [`Error::ClosedForWrite`] if already closed, or the transport's error.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: if dropped before it completes, the channel may stay open with some bytes
    /// unwritten.
    pub async fn flush_and_close(&mut self) -> Result<()> {
        let flushed = self.flush().await;
        let Some(mut sink) = self.sink.take() else {
            return flushed;
        };
        self.buf = BytesMut::new();
        let shut = poll_fn(|cx| sink.pin().poll_shutdown(cx)).await;
        flushed?;
        shut?;
        Ok(())
    }

    /// Drops what is buffered and closes: later writes fail with [`Error::ClosedForWrite`].
    ///
    /// The transport is dropped without a graceful shutdown. The reader of an in-memory
    /// [`ByteChannel`](crate::ByteChannel) fails with [`Error::Cancelled`] once it has read what
    /// was already delivered.
    pub fn cancel(&mut self) {
        self.buf = BytesMut::new();
        if let Some(Sink::Pipe(pipe)) = &self.sink {
            pipe.cancel();
        }
        self.sink = None;
    }

    /// The write buffer, allocated at its full size on first use.
    fn buffer(&mut self) -> &mut BytesMut {
        if self.buf.capacity() == 0 {
            self.buf.reserve(WRITE_BUFFER);
        }
        &mut self.buf
    }

    fn check_open(&self) -> Result<()> {
        if self.sink.is_none() {
            Err(Error::ClosedForWrite)
        } else {
            Ok(())
        }
    }

    /// After bytes were added to the buffer: write it out if full, flush in auto-flush mode.
    async fn after_write(&mut self) -> Result<()> {
        if self.auto_flush {
            self.flush().await
        } else if self.buf.len() >= WRITE_BUFFER {
            self.write_buffered().await
        } else {
            Ok(())
        }
    }

    /// Writes out the buffer (no transport flush).
    async fn write_buffered(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let Self { sink, buf, .. } = self;
        let sink = sink.as_mut().ok_or(Error::ClosedForWrite)?;
        poll_fn(|cx| {
            while !buf.is_empty() {
                let n = ready!(sink.pin().poll_write(cx, buf))?;
                if n == 0 {
                    return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero)));
                }
                buf.advance(n);
            }
            Poll::Ready(Ok(()))
        })
        .await
        .map_err(|e| self.write_failed(e))
    }

    /// Writes what is buffered, then `src`, to the transport, without copying `src` into the
    /// buffer (for [`ByteReadChannel::copy_to`](crate::ByteReadChannel::copy_to)).
    pub(crate) async fn write_through(&mut self, src: &[u8]) -> Result<()> {
        self.check_open()?;
        self.write_buffered().await?;
        self.write_direct(src).await
    }

    /// Writes `src` straight to the transport (the buffer must be empty).
    async fn write_direct(&mut self, mut src: &[u8]) -> Result<()> {
        let sink = self.sink.as_mut().ok_or(Error::ClosedForWrite)?;
        poll_fn(|cx| poll_write_all(sink, cx, &mut src))
            .await
            .map_err(|e| self.write_failed(e))
    }

    /// Maps a transport error; a cancelled reader closes this end for good.
    fn write_failed(&mut self, e: io::Error) -> Error {
        let e = Error::from(e);
        if matches!(e, Error::Cancelled) {
            self.sink = None;
            self.buf = BytesMut::new();
        }
        e
    }
}

fn poll_write_all(sink: &mut Sink, cx: &mut Context<'_>, src: &mut &[u8]) -> Poll<io::Result<()>> {
    while !src.is_empty() {
        let n = ready!(sink.pin().poll_write(cx, src))?;
        if n == 0 {
            return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero)));
        }
        *src = &src[n..];
    }
    Poll::Ready(Ok(()))
}
