//! `read_frame`'s "# Panics": a decoder's panic goes on to the caller, what it consumed is
//! consumed and counted by `total_bytes_read`, the rest stays buffered, and the channel reads
//! on. With a decoder outside tokio-util's contract (one that puts bytes into the buffer, which
//! the channel counts as received) that panics after it did.

use std::io;
use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use net_io::{ByteReadChannel, LineEnding};
use tokio_util::codec::Decoder;

/// Rewrites the buffer in place (takes two bytes, puts three back), then panics: a decoder
/// that unescapes what it finds, say, and then meets input it did not expect.
struct RewritesThenPanics;

impl Decoder for RewritesThenPanics {
    type Item = ();
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<()>> {
        src.advance(2);
        src.extend_from_slice(b"abc");
        panic!("the decoder met input it did not expect");
    }
}

/// Polls `future` once, catching a panic.
fn poll_catching<F: Future>(future: F) -> std::thread::Result<Poll<F::Output>> {
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        std::pin::pin!(future).poll(&mut Context::from_waker(Waker::noop()))
    }))
}

/// The channel took the bytes put in as bytes the decoder left, but not as bytes received:
/// `total_bytes_read` then subtracted past zero (a panic in a debug build, "attempt to subtract
/// with overflow", also from a line read that had to wait, which asks for it; a count near
/// `u64::MAX` in a release build).
#[test]
fn a_decoder_that_panics_after_putting_bytes_back_leaves_the_count_whole() {
    let mut input = ByteReadChannel::from_bytes(&b"0123456789"[..]);
    assert!(poll_catching(input.read_frame(&mut RewritesThenPanics)).is_err());
    // The two bytes taken and the three put back: as for a decoder that returns.
    assert_eq!(input.available_for_read(), 11);
    let counted = std::panic::catch_unwind(AssertUnwindSafe(|| input.total_bytes_read()));
    assert_eq!(counted.ok(), Some(0));
    // The channel reads on, the count with it.
    let line = poll_catching(input.read_line(100, LineEnding::Default)).unwrap();
    assert!(
        matches!(&line, Poll::Ready(Ok(Some(line))) if line == "23456789abc"),
        "{line:?}"
    );
    assert_eq!(input.total_bytes_read(), 11);
}
