//! The [`SelectorManager`]: the I/O driver sockets are registered with, and the one switch that
//! closes them all.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, TryLockError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::runtime::{Handle, Runtime, RuntimeFlavor};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use crate::busy_poll::BusyPoll;
use crate::core::Cause;
use crate::group::{Drain, Generation, Tally, all_leave_or};
use crate::{Error, Result, ShutdownReport};

/// The I/O driver that sockets are registered with, and the switch that closes them all.
///
/// [`SelectorManager::new`] uses the tokio runtime it is called from, and closes when that
/// runtime shuts down; [`SelectorManager::builder`] starts a runtime of its own, and the sockets
/// made through it have their I/O readiness driven there (your tasks can run on any runtime).
/// That runtime stops when the selector closes.
///
/// `SelectorManager` is a cheap handle: clones share one selector. [`close`](Self::close)
/// closes every socket, listener and datagram socket made through it: their pending
/// operations fail with [`Error::SelectorClosed`] and their descriptors are released.
///
/// # Examples
///
/// ```
/// use net_sockets::{a_socket, SelectorManager};
///
/// # #[tokio::main] async fn main() -> net_sockets::Result<()> {
/// let selector = SelectorManager::new();
/// let server = a_socket(&selector).tcp().bind(("127.0.0.1", 0)).await?;
/// // ... serve ...
/// selector.close(); // closes `server` and every connection it accepted
/// assert!(server.is_closed());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SelectorManager {
    inner: Arc<SelectorInner>,
}

/// What every socket made through a selector shares with it.
pub(crate) struct SelectorInner {
    handle: Handle,
    /// Whether the runtime's clock is always the system's: a multi-thread runtime's (its own,
    /// or the one `new` was called in), whose clock tokio never pauses. A current-thread
    /// runtime's clock may be paused and advanced (tokio's `test-util`), so that "now" must be
    /// read in its context.
    system_clock: bool,
    runtime: Mutex<Option<Runtime>>,
    token: CancellationToken,
    closed: AtomicBool,
    /// Held by `close` while it closes the sockets: a close that comes meanwhile returns once
    /// they are closed.
    closing: Mutex<()>,
    /// The thread running `close`, while it closes the sockets: a close it calls itself (the
    /// drop of a task that its wake dropped) returns at once instead of waiting for it.
    closer: Mutex<Option<std::thread::ThreadId>>,
    registry: Mutex<Registry>,
    /// Cancelled when a graceful shutdown begins: every connection's "shutdown began" signal
    /// descends from it.
    draining: Drain,
    /// Set (under the registry's lock) when a graceful shutdown stops the listeners: a
    /// listener registered later fails to open, so none accepts during the grace period.
    stopped_accepting: AtomicBool,
    /// Open connected sockets, for a graceful shutdown to wait on, and how many were cut.
    open_connections: Tally,
    /// Held (shared) by every poll of a sleep of the runtime's timer (see
    /// [`poll_sleep`](SelectorInner::poll_sleep)), and taken (exclusive) once as the runtime of
    /// a `new()` selector ends, before its timer shuts down: a poll either saw the selector
    /// closed or is over by then.
    sleep_polls: RwLock<()>,
    /// Busy polling, when the selector was made with it.
    pub(crate) busy: Option<Arc<BusyPoll>>,
}

/// Something a selector can close: a socket, listener or datagram socket core.
pub(crate) trait Release: Send + Sync {
    /// Closes it because the selector closed.
    fn release(&self);

    /// The selector closes: wakes its pending operations, before any socket is closed.
    fn wake_for_close(&self);

    /// A graceful shutdown began: a listener stops accepting; other sockets do nothing.
    fn stop_accepting(&self) {}
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    entries: ById<Entry>,
}

/// A registered core, until its descriptor is released (its close deregisters it then).
struct Entry {
    core: Weak<dyn Release>,
    /// Whether its owner was built and handed out ([`SelectorInner::reaches_registered`] said
    /// so): a weak reference that no longer upgrades is then one whose owner is being dropped,
    /// its descriptor about to be released by that drop, on its thread. (Before, it is an
    /// owner still being built, which closes itself once it finds the selector closed.)
    built: bool,
}

impl SelectorManager {
    /// A selector that drives its sockets with the current tokio runtime.
    ///
    /// The selector closes when that runtime shuts down (`Runtime::shutdown_timeout`,
    /// `shutdown_background`, its drop, the end of a `#[tokio::test]`), as
    /// [`close`](Self::close) closes it: the sockets made through it release their descriptors
    /// then, though they are still held, and every later operation, and every one waiting
    /// then, fails with [`Error::SelectorClosed`], whatever runtime polls it.
    ///
    /// Tasks of any runtime (or none) may use the sockets, but their I/O and timers are that
    /// runtime's: a current-thread runtime drives them only while it runs (inside its
    /// `block_on`), so an operation polled elsewhere meanwhile waits for it. A selector of its
    /// own runtime ([`builder`](Self::builder)) has no such dependency. Every timeout of the
    /// sockets runs on that runtime's clock: in a test that pauses it (`start_paused`),
    /// `tokio::time::advance` drives them (see the
    /// [guide](crate::guide#tests-with-a-paused-clock)).
    ///
    /// # Panics
    ///
    /// Panics when called outside a tokio runtime (as [`Handle::current`] does). The runtime
    /// needs its I/O and its timers (`enable_all`, as `#[tokio::main]` and `#[tokio::test]`
    /// give): without I/O, `bind` and `connect` panic; without timers (`enable_io` alone),
    /// so do a `connect` to a host name (its attempts are 250 ms apart), the graceful
    /// shutdowns, `close_gracefully`, TLS handshakes, every configured timeout, an `accept`
    /// of a listener with the PROXY protocol on (its header's timeout is always set: 5 s by
    /// default), an `accept` that finds the process out of descriptors (it pauses 100 ms
    /// before it tries again), and a UDP send that waits for room once its socket reported an
    /// error (it tries again every millisecond: see `send`), with tokio's message ("timers are
    /// disabled").
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self::on_current_runtime(None)
    }

    /// A selector that drives its sockets with the current tokio runtime, as
    /// [`new`](Self::new) makes, that also **busy-polls**: for `window` after a read of one of
    /// its sockets begins waiting for input (a stream read, TLS included, or a datagram
    /// receive; not an accept), a task of the runtime keeps yielding, so that its worker thread
    /// polls for I/O without blocking instead of going to sleep, and input arriving then is
    /// taken at once. A read begins waiting when it finds nothing, its socket having received
    /// or sent something since a read of it last waited (bytes, the end, an error, a datagram;
    /// an answer sent, whose reply may come at once): a read polled again while it waits (its
    /// task woken by something else, such as a timer beside it in a `select!`), or begun again
    /// after one dropped while it waited (a `select!` loop's, at every turn) or ended by
    /// `socket_timeout` (which received nothing), is no new cue, so a socket that stays idle
    /// costs nothing once `window` passed, however often its task polls it.
    ///
    /// This trades CPU time for latency: a request that arrives while a worker would sleep is
    /// answered without the kernel having to wake that thread, which on a virtual machine takes
    /// tens of microseconds. The price is a worker kept busy for as long as reads keep beginning to
    /// wait less than `window` apart, and for `window` after the last one; once none has for
    /// `window`, nothing polls and nothing is spent until the next one (a window too long for the
    /// clock, such as `Duration::MAX`, never passes: from the first read that waits, a worker
    /// polls until the selector closes, even once no socket is left). Where reads begin
    /// waiting between every two of the task's turns (many busy connections), the runtime's workers
    /// find input ready whenever they poll, with or without it: the task then rests for 10 ms at a
    /// time instead of polling. On the 2-core machine of `BENCHMARKS.md`, with the load generator
    /// on the same cores, a 200 µs window made one connection in ping-pong answer 2.4× the round
    /// trips per second of hand-written tokio and 2.3× Go's (p50 28 µs against 71 and 67 µs), at
    /// 37 µs of the server's CPU time per round trip against 30 and 38. With 50 and 500
    /// connections it measured 0.84–1.09× tokio over several runs, and the same server without
    /// busy polling 0.91–1.02× in the last four; alternated with none round by round, busy
    /// polling measured 2–5% below none in three batches at 50 connections, then within 0.6% of
    /// none in three batches of ten pairs at 50 and 500 connections. The example
    /// `sockets-server` uses it with a 200 µs window.
    ///
    /// Measure before choosing it:
    /// - where the cores are busy anyway (many connections, other processes), polling takes
    ///   time from other work. The polling thread offers its core to other runnable threads at
    ///   every turn (`sched_yield`, which the kernel takes as a hint), but under a CPU quota (a
    ///   container's `cpu.max`) the time it spends counts against the process all the same.
    ///   That yield has a price on idle cores: on a 2-vCPU virtual machine it cut one
    ///   pipelining connection's rate to about half of what a poller that never yields made,
    ///   and without it two CPU-bound processes alongside cut the rate two to five times
    ///   (`BENCHMARKS.md`, forty-first pass);
    /// - tokio lets one thread at a time poll for I/O: when an idle worker of the runtime is
    ///   already asleep polling, the busy one cannot, and input wakes the sleeper as usual, so
    ///   not every request is caught. A runtime of one worker (current-thread, or
    ///   `worker_threads(1)`) has no such sleeper: there the same scenario measured 36–41k
    ///   round trips per second, against 23–33k with two workers;
    /// - each selector made with this polls with a task of its own: several of them on one
    ///   runtime keep several workers busy;
    /// - on a runtime whose clock is paused (tokio's `test-util`), time does not auto-advance
    ///   while the task polls, that is for `window` of real time after a read begins waiting;
    ///   the task's rests are timers, which an idle runtime's paused clock advances to as to
    ///   any other.
    ///
    /// The sockets' tasks must run on this runtime for the polling to reach them (tasks of
    /// another runtime are still woken the usual way). `Duration::ZERO` turns busy polling off
    /// (as `new`).
    ///
    /// # Panics
    ///
    /// As [`new`](Self::new): outside a tokio runtime; and, unless `window` is zero, on a
    /// runtime without timers (`enable_io` alone), whose polling task could not rest.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use net_sockets::SelectorManager;
    ///
    /// # #[tokio::main] async fn main() {
    /// let selector = SelectorManager::with_busy_poll(Duration::from_micros(200));
    /// # selector.close();
    /// # }
    /// ```
    pub fn with_busy_poll(window: Duration) -> Self {
        if !window.is_zero() {
            // The polling task rests with a timer: without timers, the panic comes here, as
            // documented, not in that task, whose end would close the selector.
            let _runtime_has_timers = tokio::time::sleep(Duration::ZERO);
        }
        Self::on_current_runtime((!window.is_zero()).then(|| Arc::new(BusyPoll::new(window))))
    }

    /// The selector's busy polling, when it has it (for tests).
    #[cfg(test)]
    pub(crate) fn busy_poll(&self) -> Option<&BusyPoll> {
        self.inner.busy.as_deref()
    }

    fn on_current_runtime(busy: Option<Arc<BusyPoll>>) -> Self {
        let handle = Handle::current();
        let selector = Self::with_handle(handle.clone(), None, busy.clone());
        // A task that lasts until the selector closes or is dropped: a runtime that shuts down
        // first drops it (before its I/O and time drivers stop), and the drop closes the
        // selector. With busy polling, it is also the task that polls.
        let end = RuntimeEnd(Arc::downgrade(&selector.inner));
        let closed = selector.inner.token.clone();
        drop(handle.spawn(async move {
            let _end = end;
            match busy {
                Some(busy) => {
                    tokio::select! {
                        biased;
                        () = closed.cancelled() => {}
                        () = busy.spin() => {}
                    }
                }
                None => closed.cancelled().await,
            }
        }));
        selector
    }

    /// A builder for a selector with a runtime of its own.
    pub fn builder() -> SelectorManagerBuilder {
        SelectorManagerBuilder {
            worker_threads: None,
            thread_name: None,
        }
    }

    fn with_handle(handle: Handle, runtime: Option<Runtime>, busy: Option<Arc<BusyPoll>>) -> Self {
        let system_clock = handle.runtime_flavor() == RuntimeFlavor::MultiThread;
        SelectorManager {
            inner: Arc::new(SelectorInner {
                handle,
                system_clock,
                runtime: Mutex::new(runtime),
                token: CancellationToken::new(),
                closed: AtomicBool::new(false),
                closing: Mutex::new(()),
                closer: Mutex::new(None),
                registry: Mutex::new(Registry::default()),
                draining: Drain::new(),
                stopped_accepting: AtomicBool::new(false),
                open_connections: Tally::default(),
                sleep_polls: RwLock::new(()),
                busy,
            }),
        }
    }

    /// Closes the selector and every socket made through it.
    ///
    /// Pending operations on those sockets fail with [`Error::SelectorClosed`], their descriptors
    /// are released (as by each socket's own `close`: a task of flush coalescing that waits for
    /// room to send a connection's held-back answers lets go of its socket as the close wakes it,
    /// just after the close returns), and new sockets cannot be made through it. A selector with a
    /// runtime of its own ([`builder`](Self::builder)) stops that runtime: its threads end, in the
    /// background, though the selector and its sockets are still held. Idempotent: a close that
    /// finds another under way (another thread's) returns once that one is done; one that the close
    /// under way makes itself, on its thread (the drop of a task that its wake-up of an operation
    /// dropped, with an executor that drops a task it can no longer run), returns at once, the
    /// selector closed, that close closing the sockets; so does one made inside a socket's close
    /// while another thread's close is under way (the drop of a task that the socket's close woke,
    /// a graceful shutdown waiting for the connection to leave its count): that close may be
    /// waiting to close the same socket. A socket whose last handle another thread is dropping as
    /// the close begins is closed by that drop: the close returns once its descriptor is released
    /// too.
    ///
    /// Each connection's peer sees what was written, then FIN, or a reset where the socket's
    /// own close resets (its write channel held or lost bytes; Linux also resets a connection
    /// closed with input unread). A TLS connection ends without `close_notify`: its peer sees a
    /// truncation.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Shuts down gracefully: every listener made through this selector stops accepting at
    /// once (new connects are refused, except at an adopted socket that other descriptors keep
    /// listening, such as the copy systemd keeps: see
    /// [`ServerSocket::close`](crate::ServerSocket::close); binding a new one fails with
    /// [`Error::SelectorClosed`](crate::Error::SelectorClosed)), every connection learns that shutdown began
    /// ([`Socket::shutdown_requested`](crate::Socket::shutdown_requested)), the selector waits
    /// up to `grace` for the connections to close, then [closes](Self::close) everything left.
    /// Datagram sockets are no connections: nothing tells them, nor waits for them, and that
    /// close closes them (so a shutdown with only datagram sockets open closes them at once).
    ///
    /// The report counts the connected stream sockets open when it began (accepted and
    /// connected ones, not datagram sockets): those closed by the selector's close, or cut by
    /// a listener's shutdown running at the same time, as cut; the others as finished. A
    /// connection a listener admitted before it began is among them, also when `accept` hands
    /// it out only after. Connections made during the grace period are not counted, whether
    /// they finish or are cut. Once it returns, no connection of the selector is open: every
    /// listener's [`stats`](crate::ServerSocket::stats) counts none open.
    ///
    /// What the peer of a connection cut at the end of the grace period sees is what
    /// [`ServerSocket::shutdown`](crate::ServerSocket::shutdown) says: a clean end after what
    /// was written, a reset when bytes were lost, over TLS no `close_notify` (a truncated stream).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the shutdown begun (listeners closed, connections signalled)
    /// but closes nothing else.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> net_sockets::Result<()> {
    /// # let selector = net_sockets::SelectorManager::new();
    /// # let server = net_sockets::a_socket(&selector).tcp().bind(("127.0.0.1", 0)).await?;
    /// # let client = net_sockets::a_socket(&selector).tcp().connect(server.local_address());
    /// # let client = client.await?;
    /// # let socket = server.accept().await?;
    /// # // Both ends are the selector's: each closes when told the shutdown began.
    /// # let serving = tokio::spawn(async move { socket.shutdown_requested().await });
    /// # let leaving = tokio::spawn(async move { client.shutdown_requested().await });
    /// # let udp = net_sockets::a_socket(&selector).udp().bind(("127.0.0.1", 0)).await?;
    /// let report = selector.shutdown(std::time::Duration::from_secs(10)).await;
    /// println!("{} finished, {} cut", report.finished, report.cut);
    /// # assert_eq!((report.finished, report.cut), (2, 0));
    /// # assert!(server.is_closed() && selector.is_closed());
    /// # assert_eq!(server.stats().open, 0);
    /// # assert!(udp.is_closed());
    /// # let bind = net_sockets::a_socket(&selector).tcp().bind(("127.0.0.1", 0)).await;
    /// # assert!(matches!(bind, Err(net_sockets::Error::SelectorClosed)));
    /// # serving.await.unwrap();
    /// # leaving.await.unwrap();
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(&self, grace: std::time::Duration) -> ShutdownReport {
        let inner = &self.inner;
        let entries: Vec<_> = {
            let registry = lock(&inner.registry);
            // Under the lock: a listener registered after this sees the flag, one registered
            // before is among the entries.
            inner.stopped_accepting.store(true, Ordering::Release);
            registry
                .entries
                .values()
                .filter_map(|entry| entry.core.upgrade())
                .collect()
        };
        // A task's waker that panics as a step wakes it stops no step: the shutdown ends as
        // always, then its panic goes on to the caller.
        let mut unwinds = Unwinds::default();
        for entry in entries {
            unwinds.run(|| entry.stop_accepting());
        }
        // Counted before the signal: a connection that closes as the signal wakes it (on
        // another thread, before this one reads on) finished within the grace period.
        // Marked begun at the same instant: a connection made from now on (an outgoing
        // connect during the grace period) is not one of those this shutdown reports on.
        let start = inner.open_connections.begin();
        unwinds.run(|| inner.draining.begin());
        let timer = SelectorSleep::new(inner, grace);
        // A close (also the end of the runtime) ends the wait: what is left is being closed.
        tokio::select! {
            biased;
            () = inner.token.cancelled() => {}
            () = all_leave_or(&inner.open_connections, timer) => {}
        }
        unwinds.run(|| inner.close());
        // A close running on another thread (a plain `close`, another shutdown's) may still be
        // closing connections when this one returns: they have left once it is done, and only
        // then does the count of cuts say how each ended. None stays open after a close: a
        // connection still being set up fails to register and is closed.
        inner.open_connections.all_left().await;
        let report = ShutdownReport::between(start, inner.open_connections.counts_since(start));
        unwinds.finish();
        report
    }

    /// Whether the selector is closed: by [`close`](Self::close), at the end of a graceful
    /// [`shutdown`](Self::shutdown), or, for a selector made by [`new`](Self::new) or
    /// [`with_busy_poll`](Self::with_busy_poll), by the end of its runtime.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    pub(crate) fn inner(&self) -> &Arc<SelectorInner> {
        &self.inner
    }
}

impl fmt::Debug for SelectorManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelectorManager")
            .field("closed", &self.is_closed())
            .field("own_runtime", &lock(&self.inner.runtime).is_some())
            .finish()
    }
}

impl fmt::Debug for SelectorInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelectorInner")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl SelectorInner {
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// "Now" on the clock of the selector's runtime, whose timers its sockets' timeouts are:
    /// the task asking may run on another runtime (or none), whose clock may be paused, ahead
    /// or behind. Free for a multi-thread runtime (the system's clock); for a current-thread
    /// one, read in its context.
    pub(crate) fn now(&self) -> tokio::time::Instant {
        if self.system_clock {
            tokio::time::Instant::from_std(std::time::Instant::now())
        } else {
            let _runtime = self.handle.enter();
            tokio::time::Instant::now()
        }
    }

    /// Registers an I/O resource with the selector's runtime: runs `make` (a tokio type's
    /// `from_std`) in that runtime's context.
    ///
    /// # Errors
    ///
    /// [`Error::SelectorClosed`] when the registration fails with the selector closed: the end
    /// of a `new()` selector's runtime closes the selector, then shuts its I/O driver down, and
    /// a registration that comes after (its caller found the selector open just before) fails
    /// with tokio's own error ("A Tokio 1.x context was found, but it is being shutdown").
    /// Otherwise `make`'s error, as [`Error::Io`].
    pub(crate) fn register_io<T>(&self, make: impl FnOnce() -> io::Result<T>) -> Result<T> {
        let _runtime = self.handle.enter();
        make().map_err(|e| {
            if self.is_closed() {
                Error::SelectorClosed
            } else {
                Error::Io(e)
            }
        })
    }

    pub(crate) fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Polls `sleep`, a sleep of this selector's runtime's timer, from any thread: fails with
    /// [`Error::SelectorClosed`] once the selector is closed, without polling it.
    ///
    /// The end of a `new()` selector's runtime closes the selector, then shuts the runtime's
    /// timer down, after which tokio panics on a poll of its sleeps ("A Tokio 1.x context was
    /// found, but it is being shutdown"), or fires them as if elapsed. A check of the close
    /// just before the poll does not help: the runtime, on another thread, may end in between.
    /// So the check and the poll are made under `sleep_polls`, which the end of the runtime
    /// takes before the timer shuts down (see [`RuntimeEnd`]): a poll that found the selector
    /// open is over before the timer stops. A shared lock, taken only where a sleep is polled
    /// (a wait's first poll, a sleep that fired), never on a wait's common path.
    pub(crate) fn poll_sleep(
        &self,
        sleep: Pin<&mut Sleep>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<()>> {
        let _polling = self
            .sleep_polls
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if self.is_closed() {
            return Poll::Ready(Err(Error::SelectorClosed));
        }
        sleep.poll(cx).map(Ok)
    }

    /// The runtime's timer may shut down after this: every later poll of its sleeps finds the
    /// selector closed (see [`poll_sleep`](Self::poll_sleep)).
    fn stop_sleep_polls(&self) {
        debug_assert!(self.is_closed());
        drop(
            self.sleep_polls
                .write()
                .unwrap_or_else(PoisonError::into_inner),
        );
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The first step of [`close`](Self::close) alone: the selector is closed, its sockets not
    /// yet. An operation of another thread that found its socket open just before the close
    /// began sees this state (a test can hold it still).
    #[cfg(test)]
    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Fails with [`Error::SelectorClosed`] once the selector is closed.
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            Err(Error::SelectorClosed)
        } else {
            Ok(())
        }
    }

    /// Whether a graceful shutdown stopped the listeners (new ones must not accept).
    pub(crate) fn stopped_accepting(&self) -> bool {
        self.stopped_accepting.load(Ordering::Acquire)
    }

    /// The signal that a graceful shutdown began.
    pub(crate) fn draining(&self) -> &Drain {
        &self.draining
    }

    /// How many connections the selector counts open.
    #[cfg(test)]
    pub(crate) fn open_connections(&self) -> usize {
        self.open_connections.open()
    }

    /// Counts a connection open until the guard leaves (or is dropped: the connection closed
    /// by itself).
    pub(crate) fn connection_opened(self: &Arc<Self>) -> OpenConnection {
        let generation = self.open_connections.join();
        OpenConnection {
            selector: Arc::clone(self),
            cause: Cause::Own,
            generation,
        }
    }

    /// Registers a core so that [`close`](Self::close) reaches it; fails once closed.
    pub(crate) fn register(&self, core: Weak<dyn Release>) -> Result<u64> {
        let mut registry = lock(&self.registry);
        if self.is_closed() {
            return Err(Error::SelectorClosed);
        }
        let id = registry.next_id;
        registry.next_id += 1;
        registry.entries.insert(id, Entry { core, built: false });
        Ok(id)
    }

    /// Whether a close will still reach the core registered as `id`, now built: `false` once
    /// a close began.
    ///
    /// Read under the registry's lock: a close that began earlier is seen, and one that begins
    /// later reads the entries after this, when the core is built (its weak reference
    /// upgrades, or, once its owner is being dropped, the close waits for that drop to release
    /// it).
    pub(crate) fn reaches_registered(&self, id: u64) -> bool {
        let mut registry = lock(&self.registry);
        if self.is_closed() {
            return false;
        }
        if let Some(entry) = registry.entries.get_mut(&id) {
            entry.built = true;
        }
        true
    }

    pub(crate) fn deregister(&self, id: u64) {
        lock(&self.registry).entries.remove(&id);
    }

    fn close(&self) {
        // A close called by the close under way, on its thread (a task its wake dropped, whose
        // drop closes the selector): the selector is closed already, and that close closes the
        // sockets; waiting for it would wait for ever.
        let this_thread = std::thread::current().id();
        if *lock(&self.closer) == Some(this_thread) {
            return;
        }
        // A close that finds another under way waits for it: it too returns with every socket
        // closed, its descriptor released. Except one made while this thread releases a
        // socket's descriptor (inside that socket's close: the drop of a task that its release
        // woke): the close under way may be waiting for that socket, whose lock this thread
        // holds, so this one returns once that close marked the selector closed, as a close
        // that the close under way makes itself does.
        let _closing = match self.closing.try_lock() {
            Ok(closing) => closing,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) if crate::core::releasing_here() => {
                // The close under way marks it at once, under the registry's lock, which no
                // socket's close holds while it releases its descriptor.
                while !self.is_closed() {
                    std::thread::yield_now();
                }
                return;
            }
            Err(TryLockError::WouldBlock) => lock(&self.closing),
        };
        let _closer = Closer::mark(&self.closer, this_thread);
        // The entries stay until each core's close deregisters it, once its descriptor went:
        // no core registers after this (the flag is set under the lock).
        let (open, dropping) = {
            let registry = lock(&self.registry);
            if self.closed.swap(true, Ordering::AcqRel) {
                return;
            }
            let mut open = Vec::with_capacity(registry.entries.len());
            let mut dropping = Vec::new();
            for (&id, entry) in &registry.entries {
                match entry.core.upgrade() {
                    Some(core) => open.push(core),
                    // Its last handle is being dropped on another thread: that drop closes it.
                    None if entry.built => dropping.push(id),
                    // Still being built: it finds the selector closed and closes itself.
                    None => {}
                }
            }
            (open, dropping)
        };
        tracing::debug!(
            sockets = open.len() + dropping.len(),
            "selector manager closing"
        );
        // Waking every socket's pending operations first makes each fail with `SelectorClosed`
        // before any descriptor (and so any peer of a socket of this selector) is closed. A
        // task's waker that panics stops none of the steps: the close ends as always, then
        // its panic goes on to the caller.
        let mut unwinds = Unwinds::default();
        for core in &open {
            unwinds.run(|| core.wake_for_close());
        }
        unwinds.run(|| self.token.cancel());
        for core in open {
            unwinds.run(|| core.release());
        }
        // A socket whose drop began as this close did is one of this selector's sockets too:
        // the close returns once its descriptor is released (a listener's port free, a peer
        // told), as for those it closed itself. The drop's close takes microseconds (at most
        // `LET_GO` for an operation in flight).
        for id in dropping {
            self.wait_for_deregistration(id);
        }
        // A runtime of its own has nothing left to drive: its threads end (in the background:
        // a blocking thread still closing a socket that lingers finishes that first), though
        // handles of the selector and of its sockets are still held. What is made through it
        // later fails on the closed selector before it reaches the runtime.
        let runtime = lock(&self.runtime).take();
        if let Some(runtime) = runtime {
            runtime.shutdown_background();
        }
        unwinds.finish();
    }

    /// Returns once the core registered as `id`, which another thread is closing, has
    /// deregistered (its descriptor released).
    ///
    /// Bounded: a drop's close lets go within `LET_GO` (50 ms) of an operation in
    /// flight, so a wait past [`DROP_WAIT`] means something held the socket that should not
    /// have; the close then returns with a warning rather than hang.
    fn wait_for_deregistration(&self, id: u64) {
        let started = std::time::Instant::now();
        let mut turns = 0;
        let mut pause = Duration::from_micros(100);
        while lock(&self.registry).entries.contains_key(&id) {
            if started.elapsed() > DROP_WAIT {
                tracing::warn!(
                    waited_ms = DROP_WAIT.as_millis() as u64,
                    "selector manager closed while a socket being dropped on another thread \
                     still held its descriptor"
                );
                return;
            }
            if turns < 64 {
                turns += 1;
                std::thread::yield_now();
            } else {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(10));
            }
        }
    }
}

/// Marks the thread running a selector's close for as long as it closes the sockets.
struct Closer<'a>(&'a Mutex<Option<std::thread::ThreadId>>);

impl<'a> Closer<'a> {
    fn mark(closer: &'a Mutex<Option<std::thread::ThreadId>>, id: std::thread::ThreadId) -> Self {
        *lock(closer) = Some(id);
        Closer(closer)
    }
}

impl Drop for Closer<'_> {
    fn drop(&mut self) {
        *lock(self.0) = None;
    }
}

/// The longest a selector's close waits for a socket being dropped on another thread (see
/// [`SelectorInner::wait_for_deregistration`]).
const DROP_WAIT: Duration = Duration::from_secs(1);

impl Drop for SelectorInner {
    fn drop(&mut self) {
        // Ends the task that watches for the end of the runtime (no socket is left to wake).
        self.token.cancel();
        if let Some(runtime) = lock(&self.runtime).take() {
            runtime.shutdown_background();
        }
    }
}

/// Closes the selector when dropped: held by a task of the runtime a selector made by
/// [`SelectorManager::new`] uses, which the runtime drops when it shuts down.
struct RuntimeEnd(Weak<SelectorInner>);

impl Drop for RuntimeEnd {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade() {
            // Closed already (the usual end of this task: the close's cancel woke it): nobody
            // waits for this close, which would only wait for that one on a runtime thread.
            if !inner.is_closed() {
                tracing::debug!("the selector's runtime shut down");
                inner.close();
            }
            // Before the runtime's timer shuts down (after its tasks are dropped): a poll of
            // one of its sleeps on another thread, which found the selector open, is over.
            inner.stop_sleep_polls();
        }
    }
}

/// A sleep on the timer of a selector's runtime, which any thread may poll: it completes with
/// `Ok(())` when it elapses, or with [`Error::SelectorClosed`] when polled once the selector is
/// closed (also by the end of a `new()` selector's runtime, whose timer then cannot be polled:
/// see [`SelectorInner::poll_sleep`]).
///
/// The selector's close does not wake a task waiting on it alone (the end of the runtime does,
/// as it fires its timers): it bounds a wait the close wakes, beside it (a socket's operation,
/// which then fails with the close; the selector's token), as a `select!` branch.
///
/// For a protocol layer's timers (a TLS handshake's); not part of the API.
#[doc(hidden)]
#[must_use = "a sleep does nothing unless polled"]
pub struct SelectorSleep {
    sleep: Pin<Box<Sleep>>,
    selector: Arc<SelectorInner>,
}

impl SelectorSleep {
    /// A sleep of `duration` from now on the selector runtime's clock.
    pub(crate) fn new(selector: &Arc<SelectorInner>, duration: Duration) -> SelectorSleep {
        let sleep = {
            let _runtime = selector.handle().enter();
            tokio::time::sleep(duration)
        };
        SelectorSleep {
            sleep: Box::pin(sleep),
            selector: Arc::clone(selector),
        }
    }

    /// Sets the sleep to end `duration` from now, on the selector runtime's clock.
    pub(crate) fn reset_after(&mut self, duration: Duration) {
        let now = self.selector.now();
        self.sleep.as_mut().reset(now + duration);
    }
}

impl Future for SelectorSleep {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        this.selector.poll_sleep(this.sleep.as_mut(), cx)
    }
}

impl fmt::Debug for SelectorSleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelectorSleep")
            .field("deadline", &self.sleep.deadline())
            .finish_non_exhaustive()
    }
}

/// The most worker threads a selector's own runtime may have.
const MAX_WORKER_THREADS: usize = 32_768;

/// Builds a [`SelectorManager`] with a tokio runtime of its own.
///
/// The runtime runs until the selector closes ([`close`](SelectorManager::close), or the end of
/// a graceful [`shutdown`](SelectorManager::shutdown)), or until the selector and everything
/// made through it are dropped: its threads then end, in the background (a blocking thread
/// still closing a socket that lingers finishes that first).
///
/// Its clock is the system's: the timeouts of its sockets end in real time, also when a test
/// that uses them pauses its own runtime's clock (see the
/// [guide](crate::guide#tests-with-a-paused-clock)).
///
/// # Examples
///
/// ```
/// let selector = net_sockets::SelectorManager::builder().worker_threads(2).build()?;
/// selector.close();
/// # Ok::<(), net_sockets::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a selector builder does nothing until `build`"]
pub struct SelectorManagerBuilder {
    worker_threads: Option<usize>,
    thread_name: Option<String>,
}

impl SelectorManagerBuilder {
    /// How many threads the selector's runtime runs (default: tokio's, one per core; 0 is
    /// taken as 1; more than 32,768 makes [`build`](Self::build) fail).
    pub fn worker_threads(mut self, n: usize) -> Self {
        self.worker_threads = Some(n.max(1));
        self
    }

    /// The name of the runtime's threads (default `net-selector`; one with a NUL byte makes
    /// [`build`](Self::build) fail).
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.thread_name = Some(name.into());
        self
    }

    /// Starts the runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the runtime's I/O driver cannot be created, of kind
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) for a thread name with a NUL byte (which
    /// no thread can have) or more than 32,768 workers.
    ///
    /// # Panics
    ///
    /// When the OS refuses to start one of the runtime's threads (tokio's builder panics then,
    /// "OS can't spawn worker thread").
    pub fn build(self) -> Result<SelectorManager> {
        let name = self.thread_name.unwrap_or_else(|| "net-selector".into());
        if name.contains('\0') {
            // std would panic as the runtime names its first thread.
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a thread name may not contain a NUL byte",
            )));
        }
        if self.worker_threads.is_some_and(|n| n > MAX_WORKER_THREADS) {
            // tokio's builder would overflow adding its blocking threads, or try to start
            // them all.
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a selector runs at most {MAX_WORKER_THREADS} worker threads"),
            )));
        }
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.enable_all().thread_name(name);
        if let Some(n) = self.worker_threads {
            builder.worker_threads(n);
        }
        let runtime = builder.build().map_err(Error::Io)?;
        let handle = runtime.handle().clone();
        Ok(SelectorManager::with_handle(handle, Some(runtime), None))
    }
}

/// One open connection in its selector's count; leaves when the connection closes.
#[derive(Debug)]
pub(crate) struct OpenConnection {
    selector: Arc<SelectorInner>,
    /// Why the connection closed, for the selector's count of cuts.
    cause: Cause,
    /// Which graceful shutdowns began before it opened: it is none of those's reports.
    generation: Generation,
}

impl OpenConnection {
    /// Leaves the count, the connection having closed for `cause`.
    pub(crate) fn leave(mut self, cause: Cause) {
        self.cause = cause;
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.selector
            .open_connections
            .leave(self.cause, self.generation);
    }
}

/// Locks a mutex, ignoring poisoning (the guarded data stays consistent on every path).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Steps that may run code the user supplied (a task's waker: a custom executor's may panic as
/// it is woken), each run whatever the steps before it did: a step's panic is kept, and goes
/// on to the caller at [`finish`](Self::finish), once every step ran. So one task's waker that
/// panics leaves no other task unwoken, no socket open, nothing half done.
///
/// (The panic is kept behind a `Mutex`, never locked, only so that a future that keeps it
/// across an `await`, a graceful shutdown's, stays `Sync`.)
#[derive(Default)]
pub(crate) struct Unwinds(Mutex<Option<Box<dyn std::any::Any + Send>>>);

impl Unwinds {
    /// Runs `step`, keeping its panic (the first one) for [`finish`](Self::finish).
    pub(crate) fn run(&mut self, step: impl FnOnce()) {
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)) {
            self.0
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert(panic);
        }
    }

    /// Goes on with the first panic a step met, if any; but not on a thread that unwinds
    /// already (the steps ran in a drop during that unwinding), where a second panic would
    /// abort the process: the kept one is dropped then (its message was printed as it
    /// panicked).
    pub(crate) fn finish(self) {
        let kept = self.0.into_inner().unwrap_or_else(PoisonError::into_inner);
        if let Some(panic) = kept {
            if !std::thread::panicking() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

/// Wakes every waker of `wakers`, also when one panics (see [`Unwinds`]): the first panic goes
/// on once all were woken.
pub(crate) fn wake_all(wakers: impl IntoIterator<Item = Waker>) {
    let mut unwinds = Unwinds::default();
    for waker in wakers {
        unwinds.run(|| waker.wake());
    }
    unwinds.finish();
}

/// A map keyed by numbers this crate hands out itself, one after another (a socket's
/// registration, a connection's membership): never a value a peer chose, so the keys need no
/// defence against collisions picked on purpose, and a multiplication hashes one.
pub(crate) type ById<V> = HashMap<u64, V, BuildHasherDefault<Sequential>>;

/// The hasher of [`ById`]: Fibonacci hashing, a multiplication by 2^64 divided by the golden
/// ratio, which spreads consecutive keys over the whole hash (SipHash, the default, costs some
/// twenty times as much, for resistance these keys do not need).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sequential(u64);

impl Hasher for Sequential {
    fn write(&mut self, bytes: &[u8]) {
        // Only for keys that are not a `u64` (none in this crate): each byte mixed in.
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}
