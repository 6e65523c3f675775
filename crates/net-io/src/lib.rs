//! Byte channels for network protocols: Ktor's `ByteReadChannel` and `ByteWriteChannel` on tokio.
//!
//! - [`ByteReadChannel`] reads lines (with Ktor's line rules and a mandatory length limit),
//!   big- and little-endian integers and floats, and byte runs from any
//!   [`AsyncRead`](tokio::io::AsyncRead), and bridges to [`tokio_util::codec`] decoders
//!   (re-exported as [`codec`], with [`bytes`]).
//! - [`ByteWriteChannel`] writes bytes, text and integers to any
//!   [`AsyncWrite`](tokio::io::AsyncWrite), buffered or auto-flushed, and closes with a
//!   half-close.
//! - [`ByteChannel`] is an in-memory, bounded pipe between the two.
//! - [`LineEnding`] picks the line delimiters; [`Error`] says what went wrong, and
//!   [`SharedError`] carries the inner error of a failure that a channel reports more than once.
//! - [`PeerText`] shows text a peer sent with control characters, line separators and bidi
//!   controls escaped, for logs and terminals.
//!
//! Both channels implement tokio's I/O traits ([`AsyncRead`](tokio::io::AsyncRead) and
//! [`AsyncBufRead`](tokio::io::AsyncBufRead) for reading, [`AsyncWrite`](tokio::io::AsyncWrite)
//! for writing), so [`tokio::io::copy`] and tokio-util's `FramedRead` and `FramedWrite` work on
//! them, mixed freely with the channels' own methods (but for the bytes a `FramedRead` read
//! past its last frame: they stay in its own buffer, not in the channel;
//! [`read_frame`](ByteReadChannel::read_frame) decodes on the channel's buffer, and leaves
//! them there). What takes one stream that both reads and writes (`copy_bidirectional`,
//! tokio-util's `Framed`) takes the two channels of a connection joined with
//! [`tokio::io::join`], as here:
//!
//! ```
//! use net_io::ByteChannel;
//! use tokio::io::AsyncWriteExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
//! // A connection's two channels (here in-memory pipes), as one stream.
//! let (mut client_out, input) = ByteChannel::new(true);
//! let (output, mut client_in) = ByteChannel::new(true);
//! let mut near = tokio::io::join(input, output);
//! let (mut far, mut far_peer) = tokio::io::duplex(64);
//! client_out.write_all(b"ping").await?;
//! client_out.shutdown().await?;
//! far_peer.write_all(b"pong").await?;
//! far_peer.shutdown().await?;
//! assert_eq!(tokio::io::copy_bidirectional(&mut near, &mut far).await?, (4, 4));
//! assert_eq!(client_in.read_remaining(16).await?, &b"pong"[..]);
//! # Ok(()) }
//! ```
//!
//! # Failures
//!
//! Memory follows the bytes received, never a count the peer sent; a failure is reported again,
//! with its type, to every later operation, after the bytes received before it were read; a
//! write that failed is never retried into duplicates, and a failed write channel never closes
//! as if all went well. [`ByteReadChannel`] and [`ByteWriteChannel`] each document their rules
//! in a `# Failures` section.
//!
//! This crate knows nothing of sockets: `net-sockets` hands out these channels for TCP and Unix
//! sockets, and `net-tls` for TLS streams.
//!
//! # Cancel safety
//!
//! Every read that waits for a whole item (a line, an integer, `n` bytes) consumes nothing until
//! the item is complete, so dropping its future (in a `tokio::select!`, say) loses no bytes: the
//! next read sees them. Reads that copy into a caller's slice piece by piece
//! ([`read_fully`](ByteReadChannel::read_fully)), skip ([`discard`](ByteReadChannel::discard))
//! or pump ([`copy_to`](ByteReadChannel::copy_to)) are not cancel safe, nor are writes
//! ([`flush`](ByteWriteChannel::flush) is). Each method's `# Cancel safety` section says which
//! it is.
//!
//! # Example
//!
//! ```
//! use net_io::{ByteChannel, LineEnding};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> net_io::Result<()> {
//! let (mut output, mut input) = ByteChannel::new(false);
//! output.write_string_utf8("Hello\r\nworld\n").await?;
//! output.flush_and_close().await?;
//! while let Some(line) = input.read_line(1024, LineEnding::Default).await? {
//!     println!("{line}");
//! }
//! # Ok(()) }
//! ```

mod backlog;
mod buffer;
mod error;
mod escape;
mod exclusive;
mod line;
mod pipe;
mod read;
mod write;
mod write_state;

pub use backlog::Backlog;
pub use error::{Error, Result, SharedError};
pub use escape::PeerText;
pub use line::LineEnding;
pub use pipe::ByteChannel;
pub use read::{ByteReadChannel, Frames};
pub use write::ByteWriteChannel;
pub use write_state::WriteState;

/// The `bytes` crate, whose [`Bytes`](bytes::Bytes) the channels' byte reads return and
/// [`write_bytes`](ByteWriteChannel::write_bytes) takes: the same version these channels use.
pub use bytes;

/// tokio-util's codec traits and codecs, the same version that
/// [`read_frame`](ByteReadChannel::read_frame), [`into_frames`](ByteReadChannel::into_frames)
/// and [`write_frame`](ByteWriteChannel::write_frame) take. A decoder or encoder written
/// against [`Decoder`](codec::Decoder) and [`Encoder`](codec::Encoder) from here fits the
/// channels whatever version of `tokio-util` the application itself depends on.
pub use tokio_util::codec;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
