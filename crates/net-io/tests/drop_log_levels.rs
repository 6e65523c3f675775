//! The level of the event a write channel dropped with unflushed bytes logs: `debug` after a
//! write or flush given up while it waited, and `warn` for a forgotten flush, also after a wait
//! that ended (by completing, or by a write call that failed on its own).

mod support;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use net_io::ByteWriteChannel;
use support::{Act, Capture, MockWriter};
use tokio::io::AsyncWrite;

fn poll<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

fn levels_at_drop(w: ByteWriteChannel) -> Vec<(tracing::Level, String)> {
    Capture::during(|| drop(w))
}

fn assert_warns(events: &[(tracing::Level, String)], case: &str) {
    let warnings = events
        .iter()
        .filter(|(l, _)| *l == tracing::Level::WARN)
        .count();
    assert_eq!(
        warnings, 1,
        "{case}: a forgotten flush must warn once: {events:?}"
    );
}

/// A write that waited once (Pending), then was polled to its end; then a small write is
/// buffered and the channel dropped without a flush: a forgotten flush.
#[test]
fn write_pending_then_completed_then_forgotten_flush_warns() {
    let mock = MockWriter::default();
    let mut w = ByteWriteChannel::new(mock.clone(), false);
    {
        let f = pin!(w.write_fully(&[1u8; 8000]));
        assert!(poll(f).is_ready());
    }
    mock.on_write([Act::Stall]);
    {
        let mut f = pin!(w.write_fully(&[2u8; 500]));
        assert!(poll(f.as_mut()).is_pending());
        assert!(matches!(poll(f.as_mut()), Poll::Ready(Ok(()))));
    }
    {
        let f = pin!(w.write_fully(b"abc"));
        assert!(poll(f).is_ready());
    }
    assert_warns(&levels_at_drop(w), "write_fully");
}

/// The same with the last write the one that waited: its bytes (buffered after the drain) are
/// left unflushed.
#[test]
fn typed_write_pending_then_completed_leaving_bytes_warns() {
    let mock = MockWriter::default();
    let mut w = ByteWriteChannel::new(mock.clone(), false);
    {
        let f = pin!(w.write_fully(&[1u8; 8190]));
        assert!(poll(f).is_ready());
    }
    mock.on_write([Act::Stall]);
    {
        let mut f = pin!(w.write_u32(7));
        assert!(poll(f.as_mut()).is_pending());
        assert!(matches!(poll(f.as_mut()), Poll::Ready(Ok(()))));
    }
    assert_warns(&levels_at_drop(w), "write_u32");
}

/// `write_frame` whose drain waited once, then completed; a later write is left unflushed.
#[test]
fn write_frame_pending_then_completed_then_forgotten_flush_warns() {
    let mock = MockWriter::default();
    let mut w = ByteWriteChannel::new(mock.clone(), false);
    {
        let f = pin!(w.write_fully(&[1u8; 8000]));
        assert!(poll(f).is_ready());
    }
    mock.on_write([Act::Stall]);
    let mut codec = tokio_util::codec::BytesCodec::new();
    {
        let mut f = pin!(w.write_frame(&mut codec, bytes::Bytes::from(vec![3u8; 500])));
        assert!(poll(f.as_mut()).is_pending());
        assert!(matches!(poll(f.as_mut()), Poll::Ready(Ok(()))));
    }
    {
        let f = pin!(w.write_fully(b"abc"));
        assert!(poll(f).is_ready());
    }
    assert_warns(&levels_at_drop(w), "write_frame");
}

/// `AsyncWrite::poll_write` that returned Pending, then Ready, leaving bytes buffered.
#[test]
fn trait_write_pending_then_ready_leaving_bytes_warns() {
    let mock = MockWriter::default();
    let mut w = ByteWriteChannel::new(mock.clone(), false);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(
        std::pin::Pin::new(&mut w).poll_write(&mut cx, &[1u8; 8000]),
        Poll::Ready(Ok(8000))
    ));
    assert!(matches!(
        std::pin::Pin::new(&mut w).poll_write(&mut cx, &[1u8; 500]),
        Poll::Ready(Ok(192))
    ));
    mock.on_write([Act::Stall]);
    assert!(
        std::pin::Pin::new(&mut w)
            .poll_write(&mut cx, b"xyz")
            .is_pending()
    );
    assert!(matches!(
        std::pin::Pin::new(&mut w).poll_write(&mut cx, b"xyz"),
        Poll::Ready(Ok(3))
    ));
    assert_warns(&levels_at_drop(w), "poll_write");
}

/// An encoder that always fails.
struct Failing;

impl tokio_util::codec::Encoder<()> for Failing {
    type Error = std::io::Error;
    fn encode(&mut self, _: (), _: &mut BytesMut) -> std::io::Result<()> {
        Err(std::io::Error::other("no"))
    }
}

/// A flush given up while it waited sets `waiting`; the caller then goes on: its later
/// `write_frame` fails in the encoder (it never polls the transport) and returns; the channel
/// is then dropped with the bytes still buffered. The last write call ended (Ready), it was not
/// given up while it waited; by the docs the drop warns.
#[test]
fn forgotten_flush_after_a_failed_frame_still_warns() {
    let mock = MockWriter::default();
    let mut w = ByteWriteChannel::new(mock.clone(), false);
    {
        let f = pin!(w.write_fully(b"hello"));
        assert!(poll(f).is_ready());
    }
    mock.on_write([Act::Stall]);
    {
        // A flush dropped while it waited (a select! that lost): `waiting` is set.
        let f = pin!(w.flush());
        assert!(poll(f).is_pending());
    }
    // The encoder fails: the call returns without polling the transport.
    {
        let mut failing = Failing;
        let f = pin!(w.write_frame(&mut failing, ()));
        assert!(matches!(poll(f), Poll::Ready(Err(_))));
    }
    let events = levels_at_drop(w);
    assert_warns(&events, "failed write_frame after a given-up flush");
}
