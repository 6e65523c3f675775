//! An auto-flushed write of nothing (an empty slice or string, a frame encoded to no bytes)
//! whose transport flush times out: none of the call's bytes reached the transport (it has
//! none), so, as `ByteWriteChannel`'s "Failures" says, the call had no effect and the channel
//! stays usable, as after a `flush` that timed out the same way.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use net_io::{ByteWriteChannel, Error};
use net_tests::within;
use tokio::io::AsyncWrite;

/// Takes every byte; its next `flushes_timing_out` flushes time out.
#[derive(Default)]
struct Sink {
    taken: Vec<u8>,
    flushes_timing_out: usize,
}

#[derive(Clone, Default)]
struct Transport(Arc<Mutex<Sink>>);

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        src: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.lock().unwrap().taken.extend_from_slice(src);
        Poll::Ready(Ok(src.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut sink = self.0.lock().unwrap();
        if sink.flushes_timing_out > 0 {
            sink.flushes_timing_out -= 1;
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, Error::Timeout)));
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn an_empty_auto_flushed_write_whose_flush_times_out_leaves_the_channel_usable() {
    for case in ["flush", "write_fully", "write_string_utf8", "write_frame"] {
        let transport = Transport::default();
        let mut output = ByteWriteChannel::new(transport.clone(), true);
        within(output.write_fully(b"before")).await.unwrap();
        transport.0.lock().unwrap().flushes_timing_out = 1;
        let result = match case {
            "flush" => within(output.flush()).await,
            "write_fully" => within(output.write_fully(b"")).await,
            "write_string_utf8" => within(output.write_string_utf8("")).await,
            _ => within(output.write_frame(
                &mut tokio_util::codec::BytesCodec::new(),
                net_io::bytes::Bytes::new(),
            ))
            .await
            .map_err(Error::from),
        };
        assert!(matches!(result, Err(Error::Timeout)), "{case}: {result:?}");
        assert!(
            !output.is_closed_for_write(),
            "{case}: a call that had no bytes to send failed the channel for good on a timeout"
        );
        within(output.write_fully(b" after")).await.unwrap();
        within(output.flush_and_close()).await.unwrap();
        assert_eq!(transport.0.lock().unwrap().taken, b"before after", "{case}");
    }
}
