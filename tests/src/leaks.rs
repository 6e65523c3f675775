//! Leak checks: a scenario run many times must not leave heap memory, descriptors, tasks or
//! threads behind in proportion to the runs.
//!
//! [`Leaks::check`] runs a scenario [`WARM`] times, marks, [`N1`] more times, marks again,
//! [`N2`] more times and marks a last time; between the last two marks the live heap may grow
//! by at most [`HEAP_SLACK`] (caches filling up to their bound grow it before), and the
//! descriptors, the runtime's alive tasks and the threads not at all (threads by at most 4: the
//! blocking pool's). The heap is counted by a counting global allocator that the test binary
//! installs (`stats_alloc`; the workspace forbids `unsafe`): its live bytes are given to
//! [`Leaks::new`], and the counts being process-wide, such a binary holds a single `#[test]`.
//! [`count_spans`] installs a tracing subscriber that keeps each span, with 1 KiB of heap,
//! until its last handle closes it: a span left open then shows in the heap too.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

use crate::probe::fd_count;
use crate::within;

/// Runs before the first mark.
pub const WARM: usize = 20;
/// Runs between the first two marks.
pub const N1: usize = 60;
/// Runs between the last two marks.
pub const N2: usize = 200;
/// Heap growth allowed between the last two marks (fixed, not proportional to `N2`).
pub const HEAP_SLACK: isize = 48 * 1024;

/// How long an idle thread of the runtime's blocking pool lives in [`runtime`] (tokio's
/// default: 10 s). On a loaded machine, blocking closes (linger) overlap and the pool grows by
/// several threads, which then outlive a mark's 3 s wait and read as a thread leak; with a
/// short keep-alive they are gone when it counts.
pub const BLOCKING_KEEP_ALIVE: Duration = Duration::from_millis(100);

/// The runtime of a leak check: multi-thread (two workers), or current-thread with
/// `LEAKS_CURRENT_THREAD` set; a short keep-alive for the blocking pool's threads.
pub fn runtime() -> tokio::runtime::Runtime {
    if std::env::var("LEAKS_CURRENT_THREAD").is_ok() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_keep_alive(BLOCKING_KEEP_ALIVE)
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_keep_alive(BLOCKING_KEEP_ALIVE)
            .build()
            .unwrap()
    }
}

/// The runtime's alive tasks (call from inside it).
pub fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[derive(Clone, Copy, Debug)]
struct Mark {
    heap: isize,
    fds: usize,
    tasks: usize,
    threads: usize,
}

/// The checks made so far, and those that failed.
#[derive(Debug)]
pub struct Leaks {
    live: fn() -> isize,
    /// One line per failed check (what grew).
    pub failures: Vec<String>,
}

impl Leaks {
    /// Checks whose heap is `live()` (the counting allocator's live bytes).
    pub fn new(live: fn() -> isize) -> Leaks {
        Leaks {
            live,
            failures: Vec::new(),
        }
    }

    /// Checks scenario `name`: `one(i)` is its `i`-th run (each bounded by [`within`]).
    /// `LEAKS_ONLY=<part of a name>` skips the others.
    pub async fn check<F, Fut>(&mut self, name: &str, one: F)
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = ()>,
    {
        self.check_n(name, N1, N2, one).await;
    }

    /// [`check`](Self::check) with `n1` and `n2` runs between the marks (fewer, for slow
    /// scenarios; more, for one that fills a cache first).
    pub async fn check_n<F, Fut>(&mut self, name: &str, n1: usize, n2: usize, mut one: F)
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = ()>,
    {
        if std::env::var("LEAKS_ONLY").is_ok_and(|only| !name.contains(&only)) {
            return;
        }
        let started = Instant::now();
        for i in 0..WARM {
            within(one(i)).await;
        }
        let base = self.settle(None).await;
        for i in 0..n1 {
            within(one(WARM + i)).await;
        }
        let first = self.settle(Some(base)).await;
        for i in 0..n2 {
            within(one(WARM + n1 + i)).await;
        }
        let second = self.settle(Some(first)).await;
        let heap = second.heap - first.heap;
        let line = format!(
            "{name}: heap +{} over {n1} then +{heap} over {n2}; fds {} -> {} -> {}; tasks {} -> {} -> {}; threads {} -> {} -> {} ({:?})",
            first.heap - base.heap,
            base.fds,
            first.fds,
            second.fds,
            base.tasks,
            first.tasks,
            second.tasks,
            base.threads,
            first.threads,
            second.threads,
            started.elapsed()
        );
        eprintln!("{line}");
        if heap > HEAP_SLACK
            || second.fds > base.fds
            || second.tasks > base.tasks
            || second.threads > first.threads + 4
        {
            self.failures.push(line);
        }
    }

    /// With `LEAKS_SANITY` set, checks the harness itself first: a scenario that leaks
    /// 200 bytes, a descriptor and a task each run must fail each count.
    pub async fn sanity_if_asked(&mut self) {
        if std::env::var("LEAKS_SANITY").is_ok() {
            self.check("sanity: a deliberate leak", |_| async {
                std::mem::forget(vec![0u8; 200]);
                std::mem::forget(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
                drop(tokio::spawn(std::future::pending::<()>()));
            })
            .await;
        }
    }

    /// Fails with every check that left something behind, under `what`.
    pub fn assert_none_left(&self, what: &str) {
        assert!(
            self.failures.is_empty(),
            "{what} that left something behind:\n{}",
            self.failures.join("\n")
        );
    }

    /// Waits (bounded) until descriptors, tasks and threads are no more than `limit`'s, then
    /// marks.
    async fn settle(&self, limit: Option<Mark>) -> Mark {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            // A few turns for closes under way (their tasks, the blocking pool).
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let fds = fd_count();
            let tasks = alive_tasks();
            let done = match limit {
                None => true,
                Some(l) => fds <= l.fds && tasks <= l.tasks && thread_count() <= l.threads,
            };
            if done || Instant::now() > deadline {
                return Mark {
                    heap: (self.live)(),
                    fds,
                    tasks,
                    threads: thread_count(),
                };
            }
        }
    }
}

/// A tracing subscriber that keeps each span until its last handle closes it, as
/// `tracing-subscriber`'s registry does, with 1 KiB of heap: installed as the global default by
/// [`count_spans`], a span that outlives its connection shows in the heap a leak check counts
/// (no subscriber, the default, makes spans that hold nothing).
#[derive(Debug, Default)]
pub struct SpanCount {
    next: AtomicU64,
    open: Mutex<HashMap<u64, OpenSpan>>,
}

/// An open span's handles, and the heap it holds.
#[derive(Debug)]
struct OpenSpan {
    handles: usize,
    _held: Box<[u8]>,
}

impl SpanCount {
    /// The spans open now.
    pub fn open(&self) -> usize {
        lock(&self.open).len()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Installs a [`SpanCount`] as the process's global tracing subscriber (once per process: the
/// test binary holds a single test) and returns it.
pub fn count_spans() -> Arc<SpanCount> {
    let count = Arc::new(SpanCount::default());
    tracing::subscriber::set_global_default(Counting(Arc::clone(&count)))
        .expect("no global subscriber installed before");
    count
}

struct Counting(Arc<SpanCount>);

impl Subscriber for Counting {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        let id = self.0.next.fetch_add(1, Ordering::Relaxed) + 1;
        let span = OpenSpan {
            handles: 1,
            _held: vec![0u8; 1024].into_boxed_slice(),
        };
        lock(&self.0.open).insert(id, span);
        Id::from_u64(id)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, _: &Event<'_>) {}

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}

    fn clone_span(&self, id: &Id) -> Id {
        if let Some(span) = lock(&self.0.open).get_mut(&id.into_u64()) {
            span.handles += 1;
        }
        id.clone()
    }

    fn try_close(&self, id: Id) -> bool {
        let mut open = lock(&self.0.open);
        let Some(span) = open.get_mut(&id.into_u64()) else {
            return false;
        };
        span.handles -= 1;
        if span.handles > 0 {
            return false;
        }
        open.remove(&id.into_u64());
        true
    }
}
