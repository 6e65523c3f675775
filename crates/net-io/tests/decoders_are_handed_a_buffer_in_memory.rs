//! A decoder given to `read_frame` (or `into_frames`) is handed a buffer whose pointer points
//! into memory, even when the channel holds no buffer (a new channel, one made from no bytes):
//! tokio-util's `LinesCodec` passes it to the C library's `memchr`, for which a pointer must be
//! valid even for no bytes. The empty `BytesMut` a channel holds before it has a buffer has a
//! dangling pointer (`NonNull::dangling()`), which `FramedRead` never hands a decoder (its
//! buffer is allocated when it is made); handed it, `LinesCodec` was undefined behaviour, as
//! Miri reported (`cargo xtask miri`).

use std::io;
use std::ptr::NonNull;

use bytes::BytesMut;
use net_io::ByteReadChannel;
use tokio_util::codec::{Decoder, LinesCodec};

/// Decodes lines as `LinesCodec` does, after checking that the buffer it is handed points into
/// memory.
struct Checked(LinesCodec);

/// Fails the test when `src` has the dangling pointer of a `BytesMut` with no allocation.
fn assert_in_memory(src: &BytesMut) {
    assert_ne!(
        src.as_ptr(),
        NonNull::<u8>::dangling().as_ptr().cast_const(),
        "the decoder was handed a buffer with a dangling pointer (len {}, capacity {})",
        src.len(),
        src.capacity()
    );
}

impl Decoder for Checked {
    type Item = String;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<String>> {
        assert_in_memory(src);
        self.0.decode(src).map_err(io::Error::other)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> io::Result<Option<String>> {
        assert_in_memory(src);
        self.0.decode_eof(src).map_err(io::Error::other)
    }
}

/// A new channel's first `read_frame` decodes before it reads: the decoder is handed a buffer
/// in memory, and the lines come as they were sent.
#[tokio::test]
async fn a_new_channels_first_decode_is_handed_a_buffer_in_memory() {
    let mut channel = ByteReadChannel::new(&b"first\nsecond\n"[..]);
    let mut codec = Checked(LinesCodec::new());
    for line in ["first", "second"] {
        let got = channel.read_frame(&mut codec).await.expect("a line");
        assert_eq!(got.as_deref(), Some(line));
    }
    assert_eq!(channel.read_frame(&mut codec).await.expect("the end"), None);
}

/// A channel made from no bytes is at its end with no buffer: `decode_eof` is handed a buffer
/// in memory, and there is no frame; the same through `into_frames`.
#[tokio::test]
async fn a_channel_of_no_bytes_hands_decode_eof_a_buffer_in_memory() {
    let mut channel = ByteReadChannel::from_bytes("");
    let frame = channel.read_frame(&mut Checked(LinesCodec::new())).await;
    assert_eq!(frame.expect("the end"), None);
    let mut frames = ByteReadChannel::from_bytes("").into_frames(Checked(LinesCodec::new()));
    assert!(frames.next_frame().await.is_none(), "no frame");
}

/// tokio-util's `LinesCodec` itself, as the crate's docs use it, on a new channel and on one of
/// no bytes (the case Miri reported: `memchr` of a dangling pointer).
#[tokio::test]
async fn lines_codec_reads_a_new_channel_and_one_of_no_bytes() {
    let mut channel = ByteReadChannel::new(&b"a\nb"[..]);
    let mut codec = LinesCodec::new();
    assert_eq!(
        channel.read_frame(&mut codec).await.expect("a line"),
        Some("a".to_owned())
    );
    assert_eq!(
        channel.read_frame(&mut codec).await.expect("the last line"),
        Some("b".to_owned())
    );
    assert_eq!(channel.read_frame(&mut codec).await.expect("the end"), None);
    let mut empty = ByteReadChannel::from_bytes("");
    assert_eq!(
        empty
            .read_frame(&mut LinesCodec::new())
            .await
            .expect("the end"),
        None
    );
}
