// Shared by the net-io fuzz targets (included with `include!`): a poller that drives a future to
// completion without a runtime. The scripted reader and the reference model come from
// `crates/net-io/tests/support/model.rs`, which each target includes as `mod model` (the
// property tests use the same file).

use std::future::Future;
use std::task::{Context, Poll, Waker};

/// Polls `future` until it completes. The reader wakes at once whenever it is pending, so a
/// bounded number of polls suffices; more means a read that never finishes (a hang).
#[allow(dead_code)] // the `writes` target polls its own way
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

/// A chunk of `2^(shift % 19)` copies of `byte` (up to 256 KiB), put among the fuzzer's chunks
/// before the one at `at` (modulo their count plus one): an item, a line or a skip that grows
/// the channel's buffer past the 8 KiB a 4 KiB fuzz input can reach (its growth steps, a buffer
/// grown past 256 KiB given back), within the same memory bounds.
#[allow(dead_code)]
#[derive(Arbitrary, Debug, Clone, Copy)]
struct Big {
    at: u8,
    shift: u8,
    byte: u8,
}

/// `chunks` with `big` put among them.
#[allow(dead_code)]
fn with_big(chunks: &[Vec<u8>], big: Option<Big>) -> Vec<Vec<u8>> {
    let mut chunks = chunks.to_vec();
    if let Some(Big { at, shift, byte }) = big {
        let at = usize::from(at) % (chunks.len() + 1);
        chunks.insert(at, vec![byte; 1 << (shift % 19)]);
    }
    chunks
}

/// Whether `stalls` (used in turn, none if empty) puts a transport timeout before chunk `i`.
#[allow(dead_code)]
fn stalled(stalls: &[bool], i: usize) -> bool {
    !stalls.is_empty() && stalls[i % stalls.len()]
}

/// A transport timeout as an adapter reports it: not final.
#[allow(dead_code)]
fn timeout() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, net_io::Error::Timeout)
}

// Memory measurement (SPEC §4: memory follows bytes received, never a number a peer sent),
// shared by the net-io targets: a counting global allocator that records its peak, and
// checkpoints that hold what the channel has allocated, now and at its peak since the last
// checkpoint, to twice the bytes the transport handed out plus a slack each target justifies.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

/// The counting allocator, wrapped to record the peak of the live bytes (`stats_alloc` keeps
/// none): the memory bound must hold at every instant, not only where the target looks.
struct Peak(&'static StatsAlloc<System>);

#[global_allocator]
static GLOBAL: Peak = Peak(&INSTRUMENTED_SYSTEM);

/// The most bytes measured (see [`measured`]) since the last checkpoint.
static PEAK: AtomicIsize = AtomicIsize::new(0);

/// What the target itself holds, allocated in [`outside`]: kept out of what is measured.
static OUTSIDE: AtomicIsize = AtomicIsize::new(0);

impl Peak {
    fn note(&self) {
        PEAK.fetch_max(measured(), Ordering::Relaxed);
    }
}

// SAFETY: every call goes unchanged to `stats_alloc`'s allocator (which counts it and calls
// `System`); the wrapper only reads the counters after an allocation.
unsafe impl GlobalAlloc for Peak {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let ptr = unsafe { self.0.alloc(layout) };
        self.note();
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let ptr = unsafe { self.0.alloc_zeroed(layout) };
        self.note();
        ptr
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let ptr = unsafe { self.0.realloc(ptr, layout, new_size) };
        self.note();
        ptr
    }
}

/// Bytes allocated and not freed so far.
fn live() -> isize {
    let s = GLOBAL.0.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

/// Bytes live, less what the target keeps of its own (see [`outside`]).
fn measured() -> isize {
    live() - OUTSIDE.load(Ordering::Relaxed)
}

thread_local! {
    /// What was measured when the channel under test was made; `None` while nothing is
    /// measured (a reference run, the final checks).
    static BASE: Cell<Option<isize>> = const { Cell::new(None) };
}

/// Starts measuring the channel: from now on, checkpoints check.
fn start_measuring() {
    PEAK.store(measured(), Ordering::Relaxed);
    BASE.set(Some(measured()));
}

/// Stops measuring: checkpoints check nothing any more.
#[allow(dead_code)]
fn stop_measuring() {
    BASE.set(None);
}

/// Runs `f`, the target's own work (a model's answer, a comparison), out of the measurement:
/// what it leaves allocated (or frees of what an earlier `outside` allocated) is the target's,
/// and what it allocates meanwhile adds nothing to the peak.
#[allow(dead_code)]
fn outside<T>(f: impl FnOnce() -> T) -> T {
    let before = live();
    let outer = PEAK.load(Ordering::Relaxed);
    let out = f();
    OUTSIDE.fetch_add(live() - before, Ordering::Relaxed);
    PEAK.store(outer, Ordering::Relaxed);
    out
}

/// Checks memory with `received` bytes handed out by the transport so far: what is measured
/// now, and its peak since the last checkpoint, at most twice that plus `slack`; the peak may
/// also hold `extra` (what calls the channel cannot prevent allocated meanwhile). Nothing while
/// not measuring.
fn check_memory(received: usize, slack: isize, extra: isize, at: &dyn Fn() -> String) {
    let Some(base) = BASE.get() else {
        return;
    };
    let now = measured();
    let bound = 2 * received as isize + slack;
    let held = now - base;
    assert!(
        held <= bound,
        "the channel holds {held} bytes {} after receiving {received}",
        at()
    );
    let peak = PEAK.load(Ordering::Relaxed) - base;
    assert!(
        peak <= bound + extra,
        "memory peaked at {peak} bytes before {}, after receiving {received} (calls the \
         channel cannot prevent allocated {extra})",
        at()
    );
    PEAK.store(now, Ordering::Relaxed);
}

thread_local! {
    /// Bytes a [`Metered`] transport has handed out.
    static HANDED: Cell<usize> = const { Cell::new(0) };
}

/// A transport that checks memory (with the target's `SLACK`) at every read, before reading
/// from `R`, and counts what `R` hands out in [`HANDED`]; what `R` frees as it goes (a chunk it
/// has played) is the target's, not the channel's, and kept out of the measurement.
#[allow(dead_code)]
struct Metered<R> {
    inner: R,
    slack: isize,
}

#[allow(dead_code)]
impl<R> Metered<R> {
    fn new(inner: R, slack: isize) -> Self {
        HANDED.set(0);
        Metered { inner, slack }
    }
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Metered<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        check_memory(HANDED.get(), this.slack, 0, &|| {
            "at a transport read".to_owned()
        });
        let before = buf.filled().len();
        let poll = outside(|| std::pin::Pin::new(&mut this.inner).poll_read(cx, buf));
        HANDED.set(HANDED.get() + (buf.filled().len() - before));
        poll
    }
}
