//! Runtimes whose clock a test pauses (tokio's `test-util`: `tokio::time::pause`, what
//! `#[tokio::test(start_paused = true)]` does at the start), watched on the real clock.
//!
//! A paused runtime's timers jump ahead whenever it has nothing else to do, so a hang must be
//! caught by another thread, on the real clock, not by a timer of that runtime (such as
//! [`within`](crate::within)'s). The body pauses the clock itself (the kit does not depend on
//! `test-util`), once its set-up is done: a paused runtime with nothing to do jumps to its next
//! timer at once, also while loopback traffic of the set-up is still on its way.

use std::future::Future;
use std::time::Duration;

use crate::HANG_LIMIT;

/// Runs `body` on a current-thread runtime (with I/O and timers), on a thread of its own;
/// panics if it does not finish within [`HANG_LIMIT`] of real time.
pub fn paused<F, Fut>(body: F) -> Fut::Output
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future,
    Fut::Output: Send + 'static,
{
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _ = done.send(runtime.block_on(body()));
    });
    finished
        .recv_timeout(HANG_LIMIT)
        .expect("the paused runtime hung (or its test panicked)")
}

/// Asserts that `waited`, on the paused clock, is `limit` (the timer wheel rounds a deadline up
/// to its next millisecond).
#[track_caller]
pub fn exactly(waited: Duration, limit: Duration) {
    assert!(
        waited >= limit && waited <= limit + Duration::from_millis(2),
        "waited {waited:?} on the paused clock for a limit of {limit:?}"
    );
}
