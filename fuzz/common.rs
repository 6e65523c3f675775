// Shared by the net-io fuzz targets (included with `include!`): a poller that drives a future to
// completion without a runtime. The scripted reader and the reference model come from
// `crates/net-io/tests/support/model.rs`, which each target includes as `mod model` (the
// property tests use the same file).

use std::future::Future;
use std::task::{Context, Poll, Waker};

/// Polls `future` until it completes. The reader wakes at once whenever it is pending, so a
/// bounded number of polls suffices; more means a read that never finishes (a hang).
fn drive<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000_000 {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
    panic!("a read did not complete although all input was available");
}

/// A count from the fuzz input: mostly small, sometimes hostile (up to `u64::MAX`).
#[allow(dead_code)]
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Count {
    Small(u16),
    /// `u64::MAX >> (n % 64)`: 2^k - 1 for every k, `u64::MAX` and `u32::MAX` among them.
    AllOnes(u8),
    /// `1 << (n % 64)`.
    Power(u8),
    Raw(u64),
}

#[allow(dead_code)]
impl Count {
    fn get(self) -> u64 {
        match self {
            Count::Small(n) => u64::from(n),
            Count::AllOnes(n) => u64::MAX >> (n % 64),
            Count::Power(n) => 1 << (n % 64),
            Count::Raw(n) => n,
        }
    }

    /// As a `usize` (saturating; this is a 64-bit target).
    fn len(self) -> usize {
        usize::try_from(self.get()).unwrap_or(usize::MAX)
    }
}
