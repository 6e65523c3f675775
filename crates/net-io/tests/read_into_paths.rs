//! `read_available` and tokio's `poll_read` take one of two paths: a small `dst` is served from
//! the channel's buffer, a large one (8 KiB or more) with nothing buffered has the transport
//! read straight into it. Mutation testing (cargo-mutants) found what the direct path counts
//! checked by no test: `poll_read` into a buffer that already held bytes counted those too
//! (`n = filled + before`, not `filled - before`), and never saw the end of the stream.

mod support;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use net_io::ByteReadChannel;
use support::{ChunkedReader, guard};
use tokio::io::{AsyncRead, ReadBuf};

/// Larger than the size from which a read goes straight into `dst`.
const LARGE: usize = 16 * 1024;

/// A transport that reports the end of the stream once, then has bytes again (as a terminal
/// or a misbehaving layer may): the channel's end must stay the end.
struct BytesAfterTheEnd {
    ended: bool,
}

impl AsyncRead for BytesAfterTheEnd {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.ended {
            buf.put_slice(b"late");
        }
        self.ended = true;
        Poll::Ready(Ok(()))
    }
}

/// Once a read saw the end of the stream, a read of any size answers the end again, without
/// asking the transport: one of 8 KiB or more (which otherwise reads straight into `dst`) too.
#[tokio::test]
async fn the_end_of_the_stream_stays_the_end_for_a_large_read() {
    for first in [16, LARGE] {
        let mut input = ByteReadChannel::new(BytesAfterTheEnd { ended: false });
        let mut dst = vec![0u8; first];
        assert_eq!(guard(input.read_available(&mut dst)).await.unwrap(), 0);
        assert!(input.is_closed_for_read());
        for size in [LARGE, 16] {
            let mut dst = vec![0u8; size];
            let n = guard(input.read_available(&mut dst)).await.unwrap();
            assert_eq!(
                &dst[..n],
                b"",
                "first read {first}, then {size}: read past the end"
            );
        }
        assert_eq!(input.total_bytes_read(), 0);
    }
}

/// tokio's `poll_read` into a buffer that already holds bytes (its contract allows that): the
/// bytes read straight into it are the new ones only, counted once, and a read that adds none
/// is the end of the stream.
#[tokio::test]
async fn a_large_poll_read_into_a_partly_filled_buffer_counts_only_the_new_bytes() {
    let mut input = ByteReadChannel::new(ChunkedReader::chunks([b"abcde"]));
    let mut storage = vec![0u8; 2 * LARGE];
    let mut out = ReadBuf::new(&mut storage);
    out.put_slice(b"0123456789");
    guard(poll_read(&mut input, &mut out)).await.unwrap();
    assert_eq!(out.filled(), b"0123456789abcde");
    guard(poll_read(&mut input, &mut out)).await.unwrap();
    assert_eq!(out.filled(), b"0123456789abcde");
    assert!(
        input.is_closed_for_read(),
        "the end of the stream was missed"
    );
    assert_eq!(input.total_bytes_read(), 5);
}

/// One `poll_read` to completion.
async fn poll_read(input: &mut ByteReadChannel, out: &mut ReadBuf<'_>) -> io::Result<()> {
    std::future::poll_fn(|cx| Pin::new(&mut *input).poll_read(cx, out)).await
}
