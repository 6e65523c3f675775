//! `WriteState::has_unsent` after a write cut short: once the channel knows that write was
//! dropped part-way (its next write that goes to the transport directly started), `lost_bytes`
//! says so instead, and `has_unsent` says only what the buffer holds. A write through
//! `AsyncWrite` that goes to the transport directly is such a write, as the channel's own are.

mod support;

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use net_io::{ByteWriteChannel, WriteState};
use support::{Act, MockWriter};
use tokio::io::AsyncWriteExt;

/// Polls `fut` once with a waker that does nothing; `Some(output)` when it completed.
fn poll1<F: std::future::Future>(fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

#[test]
fn a_direct_write_after_a_cut_write_leaves_only_lost_bytes() {
    // The channel's own direct write and a trait write that goes to the transport directly:
    // both start after the cut write, and nothing is buffered after either.
    for through_the_trait in [false, true] {
        let w = MockWriter::default();
        w.on_write([Act::Take(1), Act::Stall]);
        let mut out = ByteWriteChannel::new(w.clone(), false);
        let state = WriteState::new();
        out.share_state(state.clone());
        assert!(poll1(out.write_fully(&[1u8; 20_000])).is_none());
        assert!(state.has_unsent() && !state.lost_bytes());
        if through_the_trait {
            let n = poll1(AsyncWriteExt::write(&mut out, &[2u8; 10_000]))
                .unwrap()
                .unwrap();
            assert_eq!(w.accepted().len(), 1 + n, "went to the transport directly");
        } else {
            poll1(out.write_fully(&[2u8; 10_000])).unwrap().unwrap();
            assert_eq!(w.accepted().len(), 1 + 10_000);
        }
        assert!(state.lost_bytes());
        assert!(
            !state.has_unsent(),
            "nothing is buffered and no write is under way, yet has_unsent is true \
             (through the trait: {through_the_trait})"
        );
    }
}
