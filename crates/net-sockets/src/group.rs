//! The connections a listener accepted, as one group: admission control (a cap on open
//! connections, a cap per client address), the "shutdown began" signal, and the bookkeeping a
//! graceful shutdown needs (who is still open, how many finished, how many were cut).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::core::{Cause, Registration, Slots};
use crate::selector::{ById, SelectorSleep, Unwinds, lock};
use crate::stream::Conn;

/// What a graceful shutdown did with the connections open when it began: how many finished
/// within the grace period and how many were cut. `finished + cut` is the number open when it
/// began.
///
/// A connection is cut when a graceful shutdown closes it at the end of its grace period, or the
/// selector closes it. This holds whichever did it: when two shutdowns run at once (a listener's
/// and its selector's, or two of one listener) and the shorter one cuts connections, the longer
/// one, ending with them, reports them as cut too, not as finished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Connections that closed by themselves within the grace period.
    pub finished: usize,
    /// Connections cut: still open when the grace period ended (of this shutdown or of one
    /// running at the same time), or when the selector closed.
    pub cut: usize,
}

impl ShutdownReport {
    /// The report of a shutdown that began at `start` (its [`Tally::begin`]) and ended at
    /// `end` (the [`Tally::counts_since`] of `start`), once everything open at `start` left.
    ///
    /// Both count only the cuts of connections that joined before `start`: one made since (a
    /// selector's connect during the grace period) is none of this shutdown's, finished or cut,
    /// though it may be one of a shutdown that began after it was made.
    pub(crate) fn between(start: Counts, end: Counts) -> ShutdownReport {
        let cuts = usize::try_from(end.cuts.saturating_sub(start.cuts)).unwrap_or(usize::MAX);
        // The cuts counted are of connections open at `start`: never more than those.
        let cut = cuts.min(start.open);
        ShutdownReport {
            finished: start.open - cut,
            cut,
        }
    }
}

/// Open connections, and how many of those that left were cut, by the shutdowns that began
/// before each joined, so that every shutdown counts the cuts of the connections open when it
/// began, and no other, whatever other shutdowns began before or since (one whose future was
/// dropped, or one running at the same time).
///
/// Under one lock, so that a shutdown reads both at one instant: a connection cut at that very
/// moment is counted either as open and not yet cut, or as gone and cut, never half of each.
/// Taken once when a connection opens and once when it closes, never per operation.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    state: Mutex<TallyState>,
    /// Notified when a connection leaves while a shutdown waits for them all
    /// ([`all_left`](Self::all_left)); only then, so that the close of a connection takes no
    /// lock besides the tally's.
    left: Notify,
}

#[derive(Debug, Default)]
struct TallyState {
    /// Connections open.
    open: usize,
    /// The generation a connection joining now is of: connections of an earlier generation
    /// were open (or gone) when the latest shutdown began, those of this one were not.
    generation: usize,
    /// Whether a connection joined since the latest shutdown began (the next one then starts
    /// a generation; otherwise it shares the latest one's boundary).
    joined: bool,
    /// The cuts of the connections of each generation.
    cuts: Vec<u64>,
    /// How many [`all_left`](Tally::all_left) wait: a connection that leaves notifies `left`
    /// only when some do.
    watchers: usize,
}

/// The generation of a connection in its [`Tally`]: which shutdowns began before it joined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Generation(usize);

/// [`Tally`]'s counts at one instant, for the connections of the generations before `before`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Counts {
    /// Connections open (of every generation).
    pub(crate) open: usize,
    /// Connections of a generation before `before` cut so far.
    pub(crate) cuts: u64,
    before: usize,
}

impl TallyState {
    fn counts(&self, before: usize) -> Counts {
        Counts {
            open: self.open,
            cuts: self.cuts.iter().take(before).sum(),
            before,
        }
    }
}

impl Tally {
    /// Counts one more open connection; returns its generation, for [`leave`](Self::leave).
    pub(crate) fn join(&self) -> Generation {
        let mut state = lock(&self.state);
        state.open += 1;
        state.joined = true;
        Generation(state.generation)
    }

    /// Counts one open connection fewer, of generation `generation`, and one more cut of that
    /// generation when `cause` is a cut.
    pub(crate) fn leave(&self, cause: Cause, generation: Generation) {
        let watched = {
            let mut state = lock(&self.state);
            state.open -= 1;
            if cause == Cause::Cut {
                let Generation(generation) = generation;
                if state.cuts.len() <= generation {
                    state.cuts.resize(generation + 1, 0);
                }
                state.cuts[generation] += 1;
            }
            state.watchers > 0
        };
        if watched {
            self.left.notify_waiters();
        }
    }

    /// Marks a shutdown begun, and returns the counts at that instant: a connection joins
    /// either before (and is among those open) or after (and is of a later generation, none of
    /// this shutdown's).
    pub(crate) fn begin(&self) -> Counts {
        let mut state = lock(&self.state);
        if state.joined {
            state.joined = false;
            state.generation += 1;
        }
        state.counts(state.generation)
    }

    /// The counts now of the generations `start` counts: its shutdown's.
    pub(crate) fn counts_since(&self, start: Counts) -> Counts {
        lock(&self.state).counts(start.before)
    }

    /// How many connections are open now.
    pub(crate) fn open(&self) -> usize {
        lock(&self.state).open
    }

    /// Waits until no connection is open.
    ///
    /// Counted among the watchers (under the lock a leaving connection reads them with)
    /// before it creates its first wait for `left`: a connection that leaves before is seen
    /// in the count it reads next, one that leaves after notifies that wait, which a
    /// notification reaches once it was created, polled or not.
    pub(crate) async fn all_left(&self) {
        let _watching = Watching::new(self);
        loop {
            let one_left = self.left.notified();
            if self.open() == 0 {
                return;
            }
            one_left.await;
        }
    }
}

/// A wait of [`Tally::all_left`], counted among the tally's watchers while it lasts.
struct Watching<'a>(&'a Tally);

impl<'a> Watching<'a> {
    fn new(tally: &'a Tally) -> Self {
        lock(&tally.state).watchers += 1;
        Watching(tally)
    }
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        lock(&self.0.state).watchers -= 1;
    }
}

/// Counters of a listener, from [`ServerSocket::stats`](crate::ServerSocket::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerStats {
    /// Connections handed out by `accept`.
    pub accepted: u64,
    /// Of those, how many are open now.
    pub open: usize,
    /// Connections closed at once because their client address had `max_connections_per_ip`
    /// connections open.
    pub refused_per_ip: u64,
    /// Connections dropped because their PROXY protocol header was missing, malformed, late or
    /// cut short (a required header is missing also when the connection ended or failed before
    /// it was complete; an optional one is cut short when the connection ends, fails or times
    /// out after a whole signature, `PROXY` or v2's 12 bytes, and before the header is
    /// complete; with an optional one, a connection that failed before a whole signature is
    /// dropped without being counted here).
    pub proxy_header_failures: u64,
}

/// The "shutdown began" signal of a selector, or of a listener (its selector's child).
///
/// A flag, set before anyone waiting is woken (by this drain's start or its parent's): so a
/// wait that registered once, and is polled again by the same task, costs two atomic loads.
/// The waits hold places among the drain's [`Slots`] (a listener's: one per connection that
/// waits); the start wakes them, and a parent's start its children's too. All of it behind one
/// reference count: every connection and every shutdown signal holds a clone, so a clone or a
/// drop is one atomic operation.
#[derive(Clone, Debug)]
pub(crate) struct Drain(Arc<DrainState>);

#[derive(Debug)]
struct DrainState {
    began: AtomicBool,
    parent: Option<Drain>,
    /// The waits on this drain: taken (and woken) by its start or its parent's.
    waiting: Mutex<Slots>,
    /// A selector's drain: its listeners', whose waits its start wakes too.
    children: Mutex<Vec<Weak<DrainState>>>,
}

impl Drain {
    /// A selector's drain.
    pub(crate) fn new() -> Drain {
        Drain(Arc::new(DrainState {
            began: AtomicBool::new(false),
            parent: None,
            waiting: Mutex::default(),
            children: Mutex::default(),
        }))
    }

    /// A listener's drain: it begins with its own shutdown or with its selector's.
    pub(crate) fn child(&self) -> Drain {
        debug_assert!(self.0.parent.is_none(), "one level of children");
        let child = Drain(Arc::new(DrainState {
            began: AtomicBool::new(false),
            parent: Some(self.clone()),
            waiting: Mutex::default(),
            children: Mutex::default(),
        }));
        let mut children = lock(&self.0.children);
        // Listeners come and go: those gone leave no entry behind.
        children.retain(|child| child.strong_count() > 0);
        children.push(Arc::downgrade(&child.0));
        child
    }

    /// Begins the shutdown: wakes every wait on this drain and its children.
    pub(crate) fn begin(&self) {
        self.0.began.store(true, Ordering::SeqCst);
        // Each taken under the waits' lock, which a wait takes to register: it either sees the
        // flag, or is woken here. Woken once that lock is let go of: a wake may drop its task
        // (an executor that can no longer run it), and with it another wait on this drain,
        // whose drop takes the lock.
        // A waker that panics (see `Unwinds`) leaves no other wait asleep.
        let mut unwinds = Unwinds::default();
        let woken = lock(&self.0.waiting).take();
        unwinds.run(|| woken.wake());
        let children: Vec<_> = lock(&self.0.children)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for child in children {
            let woken = lock(&child.waiting).take();
            unwinds.run(|| woken.wake());
        }
        unwinds.finish();
    }

    /// Whether the shutdown began.
    #[inline]
    pub(crate) fn has_begun(&self) -> bool {
        self.0.began.load(Ordering::Acquire)
            || self
                .0
                .parent
                .as_ref()
                .is_some_and(|parent| parent.0.began.load(Ordering::Acquire))
    }

    /// Waits until the shutdown began. Cancel safe.
    pub(crate) fn requested(&self) -> Requested<'_> {
        Requested {
            drain: self,
            registration: Registration::default(),
        }
    }
}

/// The wait of [`Drain::requested`]: polled beside every read that waits (a `tokio::select!`
/// branch in a connection's loop), so its common case is inlined and touches only its own
/// few fields: while this task's waker stands and the shutdown has not begun, two loads and a
/// waker comparison. The first poll takes a place among the drain's waits, the drop gives it
/// back.
#[derive(Debug)]
pub(crate) struct Requested<'a> {
    drain: &'a Drain,
    registration: Registration,
}

impl Future for Requested<'_> {
    type Output = ();

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.registration.stands(cx) && !this.drain.has_begun() {
            return Poll::Pending;
        }
        this.poll_registering(cx)
    }
}

impl Requested<'_> {
    /// Under the waits' lock; the wakers it lets go of go after it (see `LetGo`).
    #[inline(never)]
    fn poll_registering(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut waiting = lock(&self.drain.0.waiting);
        if self.drain.has_begun() {
            let gone = self.registration.leave(&mut waiting);
            drop(waiting);
            drop(gone);
            return Poll::Ready(());
        }
        let gone = self.registration.register(&mut waiting, cx);
        drop(waiting);
        drop(gone);
        Poll::Pending
    }
}

impl Drop for Requested<'_> {
    fn drop(&mut self) {
        if self.registration.is_registered() {
            // The lock goes at the end of this statement, before the wakers.
            let gone = self.registration.leave(&mut lock(&self.drain.0.waiting));
            drop(gone);
        }
    }
}

/// Waits until `open` counts none, or until `timer` fires: the grace period of a graceful
/// shutdown.
/// The timer ends the wait also once the selector is closed (see [`SelectorSleep`]).
pub(crate) async fn all_leave_or(open: &Tally, timer: SelectorSleep) {
    tokio::select! {
        () = open.all_left() => {}
        _ = timer => {}
    }
}

/// The accepted connections of one listener.
#[derive(Debug)]
pub(crate) struct Group {
    /// Begins when a shutdown of the listener or of its selector begins.
    draining: Drain,
    /// `max_connections`: a permit per open connection.
    slots: Option<Arc<Semaphore>>,
    per_ip_limit: Option<usize>,
    state: Mutex<Members>,
    accepted: AtomicU64,
    refused_per_ip: AtomicU64,
    pub(crate) proxy_header_failures: AtomicU64,
    /// The members open, and how many were cut.
    open: Tally,
    /// Cancelled when a shutdown's grace period ends: members that are closed but still send
    /// held-back answers (see `Membership::cut_signal`) stop and reset their connection.
    cut: CancellationToken,
}

#[derive(Debug, Default)]
struct Members {
    next: u64,
    open: ById<Weak<Conn>>,
    per_ip: HashMap<IpAddr, usize>,
    /// The listener closed, or a shutdown began: no connection is admitted any more.
    shut: bool,
    /// A shutdown's grace period ended: a connection admitted before it began and set up only
    /// now is cut as it enrols.
    cutting: bool,
}

/// Why [`Group::admit`] refused a connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its client address has `max_connections_per_ip` connections open.
    PerIp,
    /// The listener closed, or a shutdown began.
    Shut,
}

/// A connection's place in its group, released when the connection closes.
#[derive(Debug)]
pub(crate) struct Membership {
    group: Arc<Group>,
    key: u64,
    ip: Option<IpAddr>,
    _slot: Option<OwnedSemaphorePermit>,
    /// Why the connection closed, for the group's count of cuts.
    cause: Cause,
    generation: Generation,
}

impl Membership {
    /// The key the group knows this connection by.
    pub(crate) fn key(&self) -> u64 {
        self.key
    }

    /// Leaves the group, the connection having closed for `cause`.
    pub(crate) fn leave(mut self, cause: Cause) {
        self.cause = cause;
    }

    /// Completes when a shutdown of the group cuts its members (its grace period ended): a
    /// closed connection whose held-back answers are still being sent stops then.
    pub(crate) fn cut_signal(&self) -> WaitForCancellationFutureOwned {
        self.group.cut.clone().cancelled_owned()
    }

    /// Leaves the per-address count now, ahead of the rest (the slot, the group's count of
    /// open connections), which go when the membership does.
    pub(crate) fn leave_address(&mut self) {
        if let Some(ip) = self.ip.take() {
            leave_per_ip(&mut lock(&self.group.state), ip);
        }
    }
}

/// Takes one connection of `ip` off the per-address count.
fn leave_per_ip(members: &mut Members, ip: IpAddr) {
    if let Entry::Occupied(mut count) = members.per_ip.entry(ip) {
        *count.get_mut() -= 1;
        if *count.get() == 0 {
            count.remove();
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        {
            let mut members = lock(&self.group.state);
            members.open.remove(&self.key);
            if let Some(ip) = self.ip {
                leave_per_ip(&mut members, ip);
            }
        }
        self.group.open.leave(self.cause, self.generation);
    }
}

impl Group {
    pub(crate) fn new(
        draining: Drain,
        max_connections: Option<usize>,
        max_per_ip: Option<usize>,
    ) -> Arc<Group> {
        Arc::new(Group {
            draining,
            slots: max_connections.map(|n| Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS)))),
            per_ip_limit: max_per_ip,
            state: Mutex::new(Members::default()),
            accepted: AtomicU64::new(0),
            refused_per_ip: AtomicU64::new(0),
            proxy_header_failures: AtomicU64::new(0),
            open: Tally::default(),
            cut: CancellationToken::new(),
        })
    }

    /// Waits for a free slot under `max_connections` (at once without a cap).
    ///
    /// Cancel safe: a slot is taken only when the future completes.
    pub(crate) async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        let slots = self.slots.as_ref()?;
        // The semaphore is never closed.
        Arc::clone(slots).acquire_owned().await.ok()
    }

    /// Admits a connection from `ip`, or refuses it when its address is at its cap or the group
    /// is [shut](Self::shut); `counted` (the connection's place in its selector's count) is
    /// taken for an admitted one, and returned with its membership.
    ///
    /// Under the lock that shutting takes: a connection is admitted before the listener closed
    /// or a shutdown began (and is among those that shutdown counts open at its start), or not
    /// at all. `counted` runs under that lock too: a graceful shutdown of the selector closes
    /// the listener (which shuts the group) before it counts the connections open, so an
    /// admitted connection is among them, however long it then takes to become a socket.
    pub(crate) fn admit<T>(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
        slot: Option<OwnedSemaphorePermit>,
        counted: impl FnOnce() -> T,
    ) -> Result<(Membership, T), Refused> {
        let mut members = lock(&self.state);
        if members.shut {
            return Err(Refused::Shut);
        }
        if let (Some(ip), Some(limit)) = (ip, self.per_ip_limit) {
            // One lookup; a refusal (any refusal, with a limit of 0) leaves no entry behind
            // for an address with none open.
            let admitted = match members.per_ip.entry(ip) {
                Entry::Occupied(mut open) if *open.get() < limit => {
                    *open.get_mut() += 1;
                    true
                }
                Entry::Vacant(none) if limit > 0 => {
                    none.insert(1);
                    true
                }
                _ => false,
            };
            if !admitted {
                drop(members);
                self.refused_per_ip.fetch_add(1, Ordering::Relaxed);
                return Err(Refused::PerIp);
            }
        }
        let key = members.next;
        members.next += 1;
        let generation = self.open.join();
        let counted = counted();
        drop(members);
        let membership = Membership {
            group: Arc::clone(self),
            key,
            ip: ip.filter(|_| self.per_ip_limit.is_some()),
            _slot: slot,
            cause: Cause::Own,
            generation,
        };
        Ok((membership, counted))
    }

    /// Admits no connection any more: the listener closed.
    pub(crate) fn shut(&self) {
        lock(&self.state).shut = true;
    }

    /// Records the connection of membership `key`, so a shutdown can cut it. Returns `false`
    /// when a shutdown's grace period already ended: the caller cuts the connection.
    #[must_use]
    pub(crate) fn enrol(&self, key: u64, conn: &Arc<Conn>) -> bool {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        let mut members = lock(&self.state);
        if members.cutting {
            return false;
        }
        // A connection that closed already left; recording it would only keep a dead entry.
        if !conn.is_closed() {
            members.open.insert(key, Arc::downgrade(conn));
        }
        true
    }

    /// The signal that a shutdown began.
    pub(crate) fn draining(&self) -> &Drain {
        &self.draining
    }

    pub(crate) fn stats(&self) -> ListenerStats {
        ListenerStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            open: self.open.open(),
            refused_per_ip: self.refused_per_ip.load(Ordering::Relaxed),
            proxy_header_failures: self.proxy_header_failures.load(Ordering::Relaxed),
        }
    }

    /// Signals every member that shutdown began, waits up to `grace` (`timer`) for them to
    /// close, then cuts the rest. The selector's close (`closed`: its token) ends the wait
    /// too: it cuts the members itself, and when it is the end of the selector's runtime, that
    /// runtime's timer cannot be polled any more.
    pub(crate) async fn drain(
        &self,
        grace: Duration,
        timer: SelectorSleep,
        closed: &CancellationToken,
    ) -> ShutdownReport {
        // A task's waker that panics as a step wakes it stops no step (see `Unwinds`).
        let mut unwinds = Unwinds::default();
        // Counted before the signal: a connection that closes as the signal wakes it (on
        // another thread, before this one reads on) finished within the grace period. Shut
        // under the same lock: every connection admitted is counted here, none is admitted
        // after (the listener's close shut the group already, unless another thread's close
        // of it is still running).
        let start = {
            let mut members = lock(&self.state);
            members.shut = true;
            self.open.begin()
        };
        unwinds.run(|| self.draining.begin());
        tokio::select! {
            biased;
            () = closed.cancelled() => {}
            () = all_leave_or(&self.open, timer) => {}
        }
        let remaining: Vec<Arc<Conn>> = {
            let mut members = lock(&self.state);
            members.cutting = true;
            members.open.values().filter_map(Weak::upgrade).collect()
        };
        unwinds.run(|| self.cut.cancel());
        for conn in remaining {
            unwinds.run(|| conn.cut());
        }
        // Those closing meanwhile (by themselves, or cut by another shutdown or the selector
        // on another thread) have left once their close is done: only then does the count of
        // cuts say how each of them ended. None stays open: the cut ones are closed, and one
        // admitted before the start but not yet set up is cut as it enrols.
        self.open.all_left().await;
        let report = ShutdownReport::between(start, self.open.counts_since(start));
        tracing::debug!(
            finished = report.finished,
            cut = report.cut,
            ?grace,
            "shutdown drained"
        );
        unwinds.finish();
        report
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::pin::pin;
    use std::sync::atomic::AtomicUsize;
    use std::task::Context;
    use std::task::Waker;

    use super::*;

    /// Polls `wait` once with `waker`; whether it completed.
    fn poll_once(wait: Pin<&mut impl Future<Output = ()>>, waker: &Waker) -> bool {
        wait.poll(&mut Context::from_waker(waker)).is_ready()
    }

    /// A waker that counts its wake-ups.
    fn counting() -> (Waker, Arc<AtomicUsize>) {
        struct Count(Arc<AtomicUsize>);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(AtomicUsize::new(0));
        (Waker::from(Arc::new(Count(Arc::clone(&count)))), count)
    }

    /// A wait registered once, then polled again and again by the same task (as a pinned
    /// `select!` branch is), is woken by its own drain's start and by its parent's.
    #[test]
    fn a_wait_polled_again_is_woken_by_its_drain_and_by_the_parent() {
        for by_parent in [false, true] {
            let selector = Drain::new();
            let listener = selector.child();
            let mut wait = pin!(listener.requested());
            let (waker, woken) = counting();
            for _ in 0..3 {
                assert!(!poll_once(wait.as_mut(), &waker));
            }
            assert!(!listener.has_begun());
            if by_parent {
                selector.begin();
            } else {
                listener.begin();
            }
            assert_eq!(woken.load(Ordering::SeqCst), 1);
            assert!(listener.has_begun());
            assert!(poll_once(wait.as_mut(), &waker));
            // The parent's drain does not begin with a listener's.
            assert_eq!(selector.has_begun(), by_parent);
        }
    }

    /// A wait that moves to another task wakes that task.
    #[test]
    fn a_wait_polled_by_another_task_wakes_that_task() {
        let drain = Drain::new();
        let mut wait = pin!(drain.requested());
        let (first, first_woken) = counting();
        let (second, second_woken) = counting();
        assert!(!poll_once(wait.as_mut(), &first));
        assert!(!poll_once(wait.as_mut(), &second));
        drain.begin();
        assert_eq!(second_woken.load(Ordering::SeqCst), 1);
        assert_eq!(first_woken.load(Ordering::SeqCst), 0);
        assert!(poll_once(wait.as_mut(), &second));
    }

    /// A report counts the cuts, between its two readings, of the connections open when its
    /// shutdown began: not those of connections that joined since, and those of connections
    /// that joined after an earlier shutdown began (one whose future was dropped) but before it.
    #[test]
    fn a_tally_counts_the_cuts_of_the_connections_open_when_each_shutdown_began() {
        let tally = Tally::default();
        let first: Vec<_> = (0..3).map(|_| tally.join()).collect();
        let first_start = tally.begin();
        assert_eq!((first_start.open, first_start.cuts), (3, 0));
        tally.leave(Cause::Own, first[0]);
        // Joined after the first shutdown began, before the second.
        let between = tally.join();
        let second_start = tally.begin();
        assert_eq!((second_start.open, second_start.cuts), (3, 0));
        // A third beginning with nobody joined since reads as the second.
        let third_start = tally.begin();
        let after = tally.join();
        tally.leave(Cause::Cut, first[1]);
        tally.leave(Cause::Cut, between);
        tally.leave(Cause::Cut, after);
        tally.leave(Cause::Cut, first[2]);
        assert_eq!(tally.open(), 0);
        let report = |start| ShutdownReport::between(start, tally.counts_since(start));
        let (finished, cut) = (1, 2);
        assert_eq!(report(first_start), ShutdownReport { finished, cut });
        let (finished, cut) = (0, 3);
        assert_eq!(report(second_start), ShutdownReport { finished, cut });
        assert_eq!(report(third_start), ShutdownReport { finished, cut });
    }

    /// A refusal records nothing: with a per-address cap of 0 (which the builder refuses; the
    /// group itself takes it) every connection is refused, and the addresses it came from (behind a PROXY protocol header, any address the
    /// peer names) leave no entry behind. Admitted ones leave none once they closed.
    #[test]
    fn per_ip_counts_keep_no_entry_for_refused_or_closed_addresses() {
        for limit in [0, 1] {
            let group = Group::new(Drain::new().child(), None, Some(limit));
            let mut admitted = Vec::new();
            for i in 0..100u8 {
                let ip = IpAddr::from([192, 0, 2, i]);
                match group.admit(Some(ip), None, || ()) {
                    Ok((membership, ())) => admitted.push(membership),
                    Err(refused) => assert_eq!(refused, Refused::PerIp, "limit {limit}"),
                }
            }
            assert_eq!(admitted.len(), limit * 100);
            assert_eq!(lock(&group.state).per_ip.len(), admitted.len());
            drop(admitted);
            assert!(
                lock(&group.state).per_ip.is_empty(),
                "limit {limit}: {} entries left",
                lock(&group.state).per_ip.len()
            );
            let refused = if limit == 0 { 100 } else { 0 };
            assert_eq!(group.stats().refused_per_ip, refused);
        }
    }

    /// Waits that end give their place among the drain's waits back, for the next to take: a
    /// listener whose connections come and go keeps as many places as ever waited at once.
    /// Listeners that are gone leave no entry among their selector's children.
    #[test]
    fn waits_that_end_give_their_place_back_and_gone_listeners_leave_no_entry() {
        let selector = Drain::new();
        let listener = selector.child();
        let (waker, woken) = counting();
        for _ in 0..100 {
            let mut waits: Vec<_> = (0..4).map(|_| Box::pin(listener.requested())).collect();
            for wait in &mut waits {
                assert!(!poll_once(wait.as_mut(), &waker));
            }
            assert_eq!(lock(&listener.0.waiting).count(), (4, 2));
            waits.truncate(1);
            assert_eq!(lock(&listener.0.waiting).count(), (1, 2));
        }
        for _ in 0..100 {
            drop(selector.child());
        }
        assert_eq!(lock(&selector.0.children).len(), 2);
        // The selector's start wakes the listener's wait, and takes every place.
        let mut last = Box::pin(listener.requested());
        assert!(!poll_once(last.as_mut(), &waker));
        selector.begin();
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        assert_eq!(lock(&listener.0.waiting).count(), (0, 0));
        assert!(poll_once(last.as_mut(), &waker));
    }

    /// A wait made after the start completes at once.
    #[test]
    fn a_wait_after_the_start_completes_at_once() {
        let drain = Drain::new();
        let child = drain.child();
        drain.begin();
        let (waker, _) = counting();
        assert!(poll_once(pin!(child.requested()), &waker));
    }

    /// A wait polled again after the start is ready again (no panic, as an `async fn`'s would);
    /// a wait dropped while registered is not woken by a later start (its registration went
    /// with it).
    #[test]
    fn a_wait_is_ready_again_after_the_start_and_a_dropped_one_is_not_woken() {
        let drain = Drain::new();
        let (waker, woken) = counting();
        let mut wait = pin!(drain.requested());
        assert!(!poll_once(wait.as_mut(), &waker));
        drain.begin();
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        assert!(poll_once(wait.as_mut(), &waker));
        assert!(poll_once(wait.as_mut(), &waker));

        let drain = Drain::new();
        let (waker, woken) = counting();
        {
            let wait = pin!(drain.requested());
            assert!(!poll_once(wait, &waker));
        }
        drain.begin();
        assert_eq!(woken.load(Ordering::SeqCst), 0);
    }

    /// Sixteen tasks selecting on one wait each beside other wake-ups, 40 times over, the start
    /// coming from the drain or its parent: every task sees it (no lost wake-up).
    #[test]
    fn every_task_waiting_on_a_drain_sees_its_start_or_its_parents() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            for round in 0..40 {
                let parent = Drain::new();
                let child = Arc::new(parent.child());
                let notify = Arc::new(tokio::sync::Notify::new());
                let mut tasks = Vec::new();
                for _ in 0..16 {
                    let child = Arc::clone(&child);
                    let notify = Arc::clone(&notify);
                    tasks.push(tokio::spawn(async move {
                        let stop = child.requested();
                        tokio::pin!(stop);
                        for _ in 0..1_000_000u32 {
                            tokio::select! {
                                biased;
                                () = notify.notified() => {}
                                () = &mut stop => return,
                            }
                        }
                        panic!("bounded loop ran out");
                    }));
                }
                for i in 0..(round % 7) * 20 {
                    if i % 3 == 0 {
                        notify.notify_waiters();
                    } else {
                        tokio::task::yield_now().await;
                    }
                }
                if round % 2 == 0 {
                    parent.begin();
                } else {
                    child.begin();
                }
                for _ in 0..50 {
                    notify.notify_waiters();
                    tokio::task::yield_now().await;
                }
                for t in tasks {
                    tokio::time::timeout(Duration::from_secs(5), t)
                        .await
                        .expect("lost wake-up")
                        .unwrap();
                }
            }
        });
    }

    /// A wait for every connection to leave is woken by each leave and completes once the
    /// last one left; once it is dropped it is no longer counted: a leave then wakes nobody.
    #[test]
    fn all_left_is_woken_by_the_last_leave_and_stops_watching_when_dropped() {
        let tally = Tally::default();
        let first = tally.join();
        let second = tally.join();
        let (waker, woken) = counting();
        {
            let mut wait = pin!(tally.all_left());
            assert!(!poll_once(wait.as_mut(), &waker));
            assert_eq!(lock(&tally.state).watchers, 1);
            tally.leave(Cause::Own, first);
            assert_eq!(woken.load(Ordering::SeqCst), 1);
            assert!(!poll_once(wait.as_mut(), &waker), "one is still open");
            tally.leave(Cause::Cut, second);
            assert_eq!(woken.load(Ordering::SeqCst), 2);
            assert!(poll_once(wait.as_mut(), &waker));
        }
        assert_eq!(lock(&tally.state).watchers, 0);
        let third = tally.join();
        let mut dropped = Box::pin(tally.all_left());
        assert!(!poll_once(dropped.as_mut(), &waker));
        drop(dropped);
        assert_eq!(lock(&tally.state).watchers, 0);
        tally.leave(Cause::Own, third);
        assert_eq!(
            woken.load(Ordering::SeqCst),
            2,
            "a dropped wait is not woken"
        );
    }

    /// Connections leaving on other threads as the wait begins: however the leaves and the
    /// wait's start interleave, the wait completes (a leave before the wait watched is in the
    /// count it reads, one after notifies it).
    #[test]
    fn all_left_completes_however_the_leaves_race_its_start() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            for round in 0..300 {
                let tally = Arc::new(Tally::default());
                let joined: Vec<_> = (0..4).map(|_| tally.join()).collect();
                let leaving: Vec<_> = joined
                    .into_iter()
                    .map(|generation| {
                        let tally = Arc::clone(&tally);
                        std::thread::spawn(move || tally.leave(Cause::Own, generation))
                    })
                    .collect();
                tokio::time::timeout(Duration::from_secs(5), tally.all_left())
                    .await
                    .unwrap_or_else(|_| panic!("round {round}: the last leave was lost"));
                for thread in leaving {
                    thread.join().unwrap();
                }
            }
        });
    }
}
