//! What `read_frame`'s documentation says tokio-util's codecs consume: `LengthDelimitedCodec`
//! keeps a length prefix it read (so a stream that ends right after one is, for it, a clean
//! end), and `LinesCodec` consumes nothing until it returns a line, but for the rest of an
//! over-long line, which it discards after its length error (so a call dropped while it
//! discards has consumed those bytes, and the same decoder goes on with the next line).

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Waker};

use futures_core::Stream;
use net_io::{ByteChannel, ByteReadChannel};
use net_tests::within;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec, LinesCodec, LinesCodecError};

/// Polls `future` once (it is dropped after); whether it was still pending.
fn pending_after_one_poll<F: Future>(future: F) -> bool {
    let future = pin!(future);
    future
        .poll(&mut Context::from_waker(Waker::noop()))
        .is_pending()
}

/// A stream that ends right after a length prefix: the decoder consumed the prefix, and its
/// end of stream is `Ok(None)`, as at a clean end between frames; with one byte of the frame
/// more, its "bytes remaining on stream" error.
#[tokio::test]
async fn a_stream_that_ends_after_a_length_prefix_is_a_clean_end_for_the_codec() {
    let mut input = ByteReadChannel::from_bytes(&[0u8, 0, 0, 100][..]);
    let mut codec = LengthDelimitedCodec::new();
    assert!(
        within(input.read_frame(&mut codec))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(input.total_bytes_read(), 4, "the prefix is the decoder's");
    assert_eq!(input.available_for_read(), 0);
    // As tokio-util's own `FramedRead` ends such a stream.
    let mut framed = FramedRead::new(&[0u8, 0, 0, 100][..], LengthDelimitedCodec::new());
    let next = within(std::future::poll_fn(|cx| {
        Pin::new(&mut framed).poll_next(cx)
    }))
    .await;
    assert!(next.is_none(), "{next:?}");

    let mut input = ByteReadChannel::from_bytes(&[0u8, 0, 0, 100, 7][..]);
    let mut codec = LengthDelimitedCodec::new();
    let e = within(input.read_frame(&mut codec)).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::Other, "{e:?}");
    assert_eq!(e.to_string(), "bytes remaining on stream");
}

/// After `LinesCodec`'s length error, a call dropped while the rest of the over-long line
/// arrives has consumed (discarded) what came of it; the same decoder then returns the next
/// line, and nothing else is lost.
#[tokio::test]
async fn a_lines_codec_discarding_an_over_long_line_consumes_it_before_any_frame() {
    let (mut output, mut input) = ByteChannel::new(true);
    let mut codec = LinesCodec::new_with_max_length(4);
    output.write_fully(b"abcdefgh").await.unwrap();
    let e = within(input.read_frame(&mut codec)).await.unwrap_err();
    assert!(matches!(e, LinesCodecError::MaxLineLengthExceeded), "{e:?}");
    assert_eq!(input.total_bytes_read(), 0, "the error consumes nothing");

    output.write_fully(b"ijkl").await.unwrap();
    assert!(pending_after_one_poll(input.read_frame(&mut codec)));
    assert_eq!(
        input.total_bytes_read(),
        12,
        "the over-long line's bytes were discarded before any frame"
    );
    assert_eq!(input.available_for_read(), 0);

    output.write_fully(b"mn\nok\n").await.unwrap();
    let line = within(input.read_frame(&mut codec)).await.unwrap();
    assert_eq!(line.as_deref(), Some("ok"));
    assert_eq!(input.total_bytes_read(), 18);
}
