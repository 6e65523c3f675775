//! The shared test kit: one place for the fixtures of the integration tests in `tests/tests/`,
//! the examples' tests (`examples/tests/`) and the benchmark's certificates.
//!
//! - [`within`]: a hang safety net around a future (tests synchronise on events; this only
//!   turns a bug that hangs into a failure). [`pending_after_one_poll`]: drop a future midway;
//!   [`poll_at_most`]: drop it after k wake-ups (the cancel-at-every-poll tests).
//!   [`Ticker`]: tells whether a task gave other tasks of its thread a turn. [`block_on`]:
//!   a future polled by a plain thread, with no tokio context at all.
//!   [`payload`]: deterministic test data.
//! - [`loopback`]: listeners, connections and UDP sockets on `127.0.0.1:0` in one line, an echo
//!   server, and [`Channels`](loopback::Channels), which lets one helper serve plain and TLS
//!   sockets.
//! - [`greeting`]: the seed's protocol (`Please enter your name` / `Hello, NAME!`), server and
//!   client.
//! - [`conversation`]: one end of a plain line conversation: the next line, a line sent.
//! - [`pki`]: the test PKI (a CA and the leaves it issues), made at run time with rcgen, with
//!   PEM files for tools. [`tls`]: connect, and classify the failures tests expect.
//! - [`harness`]: child processes — a program read line by line, signalled and killed on drop,
//!   a real HAProxy in front of a server, this test binary run again under a descriptor limit —
//!   and a blocking line client (from `127.0.0.2` if need be) for the example servers.
//! - [`logs`]: the libraries' events at `info` and above, as lines.
//! - [`probe`]: descriptors, CPU time and memory of this process. [`leaks`]: checks that a
//!   scenario run many times leaves no heap, descriptor, task or thread behind.
//! - [`proxy`]: PROXY protocol v2 headers written by hand.
//! - [`records`]: TLS 1.3 records written by hand (empty records, KeyUpdates) for hostile peers.
//! - [`fault`]: the fault suite's line server, its well-behaved client and hostile peers.
//! - [`pairs`]: one connection through a listener of ours, TCP, Unix or TLS, with the peer's
//!   end, for the stress tests that race a socket's users and its close.
//! - [`rng`]: a small deterministic generator for the seeded stress tests; [`stress`]: their
//!   loop of rounds.
//! - [`paused`]: a runtime whose clock the test pauses, on a thread of its own watched on the
//!   real clock, and the check that a timer waited exactly its time on that clock.
//! - [`wakes`]: a task owned by its wakers only, and a step that must return (not deadlock),
//!   for the tests of re-entrant wake-ups.
//! - [`TempDir`]: a temporary directory that removes itself.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

pub mod conversation;
pub mod fault;
pub mod greeting;
pub mod harness;
pub mod leaks;
pub mod logs;
pub mod loopback;
pub mod pairs;
pub mod paused;
pub mod pki;
pub mod probe;
pub mod proxy;
pub mod records;
pub mod rng;
pub mod sends;
pub mod stress;
mod temp;
pub mod tls;
pub mod wakes;

pub use temp::TempDir;

/// Polls `future` to completion on the calling thread, which parks between polls: no tokio
/// context at all. Panics if it takes longer than [`HANG_LIMIT`].
pub fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    let deadline = std::time::Instant::now() + HANG_LIMIT;
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(!left.is_zero(), "block_on: hung for {HANG_LIMIT:?}");
        std::thread::park_timeout(left);
    }
}

/// The hang safety net used by the tests.
pub const HANG_LIMIT: Duration = Duration::from_secs(20);

/// Awaits `future`, panicking if it takes longer than [`HANG_LIMIT`].
pub async fn within<F: Future>(future: F) -> F::Output {
    match tokio::time::timeout(HANG_LIMIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("operation hung for {HANG_LIMIT:?}"),
    }
}

/// A deterministic payload of `len` bytes (not all equal, so misordering shows).
pub fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Polls `future` once; `true` if it is still pending (the test then drops it, to check what a
/// cancelled operation leaves behind).
pub async fn pending_after_one_poll<F: Future>(mut future: Pin<&mut F>) -> bool {
    std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx).is_pending())).await
}

/// How long [`poll_at_most`] lets a pending operation wait for its wake-up (less than
/// [`HANG_LIMIT`]).
pub const WAKE_LIMIT: Duration = Duration::from_secs(10);

/// Polls `future` at most `polls` times, each time after its waker was woken (the first at
/// once), as a `select!` or a `timeout` that gives up after `polls` wake-ups would; `Some` with
/// its output if it completed, `None` if it was still pending after the last poll, and then it
/// is dropped before this returns. Panics when no wake-up came for [`WAKE_LIMIT`] (the
/// operation hung, or the test waits for an event that cannot come).
pub async fn poll_at_most<F: Future>(future: F, polls: usize) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut done = 0;
    let mut last = std::time::Instant::now();
    within(std::future::poll_fn(|cx| {
        // The hang net's own timer wakes this task too: that is no wake-up of the future.
        assert!(
            last.elapsed() < WAKE_LIMIT,
            "no wake-up for poll {} in {WAKE_LIMIT:?}",
            done + 1
        );
        done += 1;
        match future.as_mut().poll(cx) {
            Poll::Ready(output) => Poll::Ready(Some(output)),
            Poll::Pending if done >= polls => Poll::Ready(None),
            Poll::Pending => {
                last = std::time::Instant::now();
                Poll::Pending
            }
        }
    }))
    .await
}

/// A task that counts its turns on the runtime, to tell whether another task of the same thread
/// yielded (tokio's cooperative budget) while it never had to wait. Stopped on drop.
#[derive(Debug)]
pub struct Ticker {
    ticks: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Ticker {
    /// Spawns the counting task on the current runtime; it has its first turn when the
    /// spawning task first yields.
    pub fn spawn() -> Ticker {
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let task = tokio::spawn({
            let ticks = std::sync::Arc::clone(&ticks);
            async move {
                loop {
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            }
        });
        Ticker { ticks, task }
    }

    /// The turns counted so far.
    pub fn ticks(&self) -> usize {
        self.ticks.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The workspace README's Rust code, compiled (and run) as doc tests of this package, which is
/// never published (the README lies outside every published crate).
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct WorkspaceReadme;
