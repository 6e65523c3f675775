//! Review of the tokio-trait and codec bridge (hx-traits): an encoder that panics.

mod support;

use std::future::{Future, poll_fn};
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::task::Poll;

use bytes::{BufMut, BytesMut};
use net_io::ByteWriteChannel;
use support::MockWriter;
use tokio_util::codec::Encoder;

/// Awaits `future`, catching a panic raised by one of its polls (as a task runner that
/// survives a panicking request handler does); the future is dropped after a panic.
async fn catching<F: Future>(future: F) -> std::thread::Result<F::Output> {
    let mut future = std::pin::pin!(future);
    poll_fn(
        |cx| match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        },
    )
    .await
}

/// Writes a 4-byte header, then panics for the item "bug" (an encoder with a bug), or writes
/// the item.
struct HeaderThenItem;

impl Encoder<&'static str> for HeaderThenItem {
    type Error = io::Error;

    fn encode(&mut self, item: &'static str, dst: &mut BytesMut) -> io::Result<()> {
        dst.put_slice(b"HEAD");
        if item == "bug" {
            panic!("encoder bug");
        }
        dst.put_slice(item.as_bytes());
        Ok(())
    }
}

/// An encoder that panics after it wrote part of a frame into the channel's buffer: the part is
/// taken out again, as for an encoder that returns an error, so a caller that survives the
/// panic (a server that catches a handler's panic and answers with an error) never sends a
/// torn frame to the peer, and the count stays what was accepted. Before the fix the peer got
/// `HEADok` after `HEAD` (the cut frame's header): `HEADHEADok`, 10 bytes against a count of 6.
/// Also with bytes buffered before the frame, and with a frame larger than the buffer.
#[tokio::test]
async fn a_panicking_encoder_leaves_no_part_of_its_frame_to_be_sent() {
    for before in [0usize, 100] {
        for auto_flush in [false, true] {
            let transport = MockWriter::default();
            let mut output = ByteWriteChannel::new(transport.clone(), auto_flush);
            let earlier = vec![b'e'; before];
            output.write_fully(&earlier).await.unwrap();
            let panicked = catching(output.write_frame(&mut HeaderThenItem, "bug")).await;
            assert!(panicked.is_err(), "the encoder's panic reaches the caller");
            assert_eq!(output.total_bytes_written(), before as u64);
            output.write_frame(&mut HeaderThenItem, "ok").await.unwrap();
            output.flush_and_close().await.unwrap();
            let mut expected = earlier.clone();
            expected.extend_from_slice(b"HEADok");
            assert_eq!(
                transport.accepted(),
                expected,
                "{before} bytes before, auto_flush {auto_flush}"
            );
            assert_eq!(output.total_bytes_written(), expected.len() as u64);
        }
    }

    // A frame larger than the buffer grows it before the panic: the allocation is given back.
    struct Large;
    impl Encoder<()> for Large {
        type Error = io::Error;

        fn encode(&mut self, (): (), dst: &mut BytesMut) -> io::Result<()> {
            dst.put_slice(&[1; 100_000]);
            panic!("encoder bug after a large part");
        }
    }
    let transport = MockWriter::default();
    let mut output = ByteWriteChannel::new(transport.clone(), false);
    assert!(catching(output.write_frame(&mut Large, ())).await.is_err());
    output.write_fully(b"after").await.unwrap();
    output.flush_and_close().await.unwrap();
    assert_eq!(transport.accepted(), b"after");
}
