//! The registered-socket core: what every socket of this crate — connected stream, listener,
//! datagram socket — is built on.
//!
//! A [`Core`] owns the tokio socket it holds (`S`) and is the one place that knows how a socket
//! lives and dies:
//!
//! - **Ownership.** The core holds the only long-lived strong reference to the socket.
//!   Operations take a short-lived strong reference per poll ([`Core::io`]), so closing releases
//!   the descriptor at once, even while channels or `accept` calls are pending in other tasks
//!   (one in the middle of its poll on another thread is waited for, at most `LET_GO`; a
//!   connection's held-back answers keep it, see `Conn::owe`).
//! - **Registration.** The core is registered with its [`SelectorInner`] when it is made, and
//!   deregistered when it closes, so closing the selector reaches every open socket.
//! - **Closing.** [`Core::close`] is synchronous and idempotent: it marks the core closed,
//!   runs the release hook (a connection leaves its counts: its place under the
//!   listener's caps is free before the peer can see the end), releases the descriptor —
//!   gracefully (the kernel sends what was written, then FIN) or, with [`CloseMode::Reset`],
//!   with a reset — deregisters, then wakes every pending operation (which then fails with
//!   [`Error::Closed`], or [`Error::SelectorClosed`] when the selector closed it) and
//!   `await_closed`. A close that comes while another (another thread's, the selector's)
//!   releases the descriptor returns only once that one is done. (A closing selector wakes the
//!   pending operations of all its sockets first, before it releases any descriptor, so that
//!   they fail with its close rather than see a peer's end.) A socket whose `SO_LINGER` makes
//!   the kernel's close block has that last close run on a blocking thread, never on a runtime
//!   thread. Dropping the last reference closes gracefully.
//! - **Waiting.** [`Core::poll_io`] polls an operation and, when it must wait, also waits for the
//!   close, so a pending operation never outlives the socket. The waits hold places among the
//!   core's own wakers ([`CloseWait`]), under its own lock: a connection's two directions, two
//!   places kept for its life, allocate nothing.

use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use socket2::SockRef;
use tokio_util::sync::CancellationToken;

use crate::selector::{Release, SelectorInner, Unwinds, lock, wake_all};
use crate::{Error, Result};

/// `Core::closing`: open.
const OPEN: u8 = 0;
/// `Core::closing`: closed by its own close, or cut by a graceful shutdown.
const CLOSED: u8 = 1;
/// `Core::closing`: closed while its selector closes.
const CLOSED_BY_SELECTOR: u8 = 2;

/// How [`Core::close`] ends a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseMode {
    /// The kernel sends what was written, then FIN.
    Graceful,
    /// `SO_LINGER` 0: the kernel drops unsent data and sends RST, so the peer cannot mistake the
    /// end for a clean one.
    Reset,
}

/// Why a socket closed, as its [`ReleaseHook`] learns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    /// Its own close: `close`, both directions finished, the drop of its last handle.
    Own,
    /// Cut: by a graceful shutdown at the end of its grace period, or by the selector's close.
    Cut,
}

/// Something to run as the descriptor is released, just before it goes (a Unix listener removes
/// its file; a connection leaves its counts), told why the socket closed: nothing the peer can
/// see as the end comes before it. A core holds its hook in place (a connection's counts are
/// part of its allocation); `()` is none.
pub(crate) trait ReleaseHook: Send + Sync + 'static {
    /// The descriptor is released now, the socket having closed for `cause`.
    fn released(&self, cause: Cause);

    /// Whether the close left the descriptor to a task that still sends for the socket (a
    /// connection's held-back answers, see `Conn::owe`): asked before
    /// [`released`](Self::released), so that the close does not wait for that task.
    fn handed_over(&self) -> bool {
        false
    }
}

impl ReleaseHook for () {
    fn released(&self, _: Cause) {}
}

/// A closure as a [`ReleaseHook`], shared (a listener's).
pub(crate) type OnRelease = Arc<dyn Fn(Cause) + Send + Sync>;

impl ReleaseHook for OnRelease {
    fn released(&self, cause: Cause) {
        self(cause);
    }
}

/// What a [`Core`] can hold: a tokio socket (a stream, a listener, a UDP socket).
pub(crate) trait SocketIo: AsFd + Send + Sync + 'static {}

impl<S: AsFd + Send + Sync + 'static> SocketIo for S {}

/// The lifecycle every socket shares; `S` is the tokio socket it holds.
///
/// Laid out in declaration order, the fields every operation reads (`weak`, `selector`,
/// `closing`) first: with a connection's own hot fields before its core (see `Conn`), one
/// round trip of a connection touches one or two of its cache lines, not four or five.
#[repr(C)]
pub(crate) struct Core<S: SocketIo, H: ReleaseHook = ()> {
    weak: Weak<S>,
    selector: Arc<SelectorInner>,
    /// Set first by `close` ([`OPEN`], then [`CLOSED`] or [`CLOSED_BY_SELECTOR`], whichever the
    /// first close found): checked on every operation, and the variant of the close error
    /// from then on.
    closing: AtomicU8,
    /// Whether something may have given the socket a lingering `SO_LINGER`, so that `close`
    /// must ask the kernel: set where the socket was made with one (the builder's `linger`),
    /// could have come with one (adopted, or accepted from a listener that may linger), or by
    /// [`with_sock_ref`](Self::with_sock_ref). A socket without it skips the `getsockopt`.
    may_linger: AtomicBool,
    /// Whether the kernel's close never waits for the peer, whatever `SO_LINGER` says (a
    /// listening socket's): then `close` releases the descriptor at once, on its own thread.
    never_lingers: bool,
    /// Whether the socket is a listening one this process made: a close that finds it still
    /// held by others after `LET_GO` stops the listening (see `release`).
    listens: bool,
    id: Option<u64>,
    /// The tasks to wake once the descriptor is released (pending operations, `await_closed`);
    /// a closing selector wakes them all before it closes any socket.
    waiters: Mutex<Waiters>,
    io: Mutex<Option<Arc<S>>>,
    span: tracing::Span,
    on_release: H,
    /// The thread (see [`this_thread`]) whose close releases the descriptor now, under `io`'s
    /// lock, or 0: a close that this one causes on its own thread (a release hook's wake-up of
    /// a listener's shutdown, which its executor drops with a guard that closes this socket)
    /// must not wait for that lock, which its own thread holds.
    releasing_on: AtomicUsize,
}

/// A socket type built around a [`Core`]: the selector closes it through its core.
pub(crate) trait Owner: Send + Sync + 'static {
    /// The tokio socket the core holds.
    type Io: SocketIo;
    /// What the core runs as the descriptor is released.
    type Hook: ReleaseHook;

    /// The core.
    fn core(&self) -> &Core<Self::Io, Self::Hook>;

    /// A graceful shutdown of the selector began (a listener stops accepting).
    fn stop_accepting(&self) {}

    /// The selector closes: close as this kind of socket closes (by default gracefully).
    fn close_for_selector(&self) {
        self.core().close(CloseMode::Graceful);
    }
}

impl<T: Owner> Release for T {
    fn release(&self) {
        self.close_for_selector();
    }

    fn stop_accepting(&self) {
        Owner::stop_accepting(self);
    }

    fn wake_for_close(&self) {
        self.core().wake_for_selector();
    }
}

/// How a [`Core`] is made: the parts that differ between socket kinds.
pub(crate) struct Setup<H: ReleaseHook = ()> {
    /// The span of this socket's events.
    pub(crate) span: tracing::Span,
    /// Run as the descriptor is released, just before it goes.
    pub(crate) on_release: H,
    /// Whether the socket may have a lingering `SO_LINGER` from the start (see
    /// `Core::may_linger`); `true` unless its maker knows it has none.
    pub(crate) may_linger: bool,
    /// Whether the kernel's close of the socket never waits for the peer, whatever its
    /// `SO_LINGER` (a listening socket's; see `Core::never_lingers`).
    pub(crate) never_lingers: bool,
    /// Whether the socket is a listening one this process bound (not adopted: other processes
    /// may hold it too): its close stops the listening when an operation in flight on another
    /// thread still holds the socket after `LET_GO`.
    pub(crate) listens: bool,
}

impl Setup {
    /// A setup with only a span.
    pub(crate) fn new(span: tracing::Span) -> Setup {
        Setup::releasing(span, ())
    }
}

impl<H: ReleaseHook> Setup<H> {
    /// A setup with a span and a release hook.
    pub(crate) fn releasing(span: tracing::Span, on_release: H) -> Setup<H> {
        Setup {
            span,
            on_release,
            may_linger: true,
            never_lingers: false,
            listens: false,
        }
    }
}

impl<S: SocketIo, H: ReleaseHook> Core<S, H> {
    /// Registers `io` with `selector` and builds its owner around the new core.
    ///
    /// # Errors
    ///
    /// [`Error::SelectorClosed`] when the selector is closed, also when it closed while the
    /// owner was being built (`io` is dropped, its descriptor released).
    pub(crate) fn open<T>(
        selector: &Arc<SelectorInner>,
        io: S,
        setup: Setup<H>,
        build: impl FnOnce(Core<S, H>) -> T,
    ) -> Result<Arc<T>>
    where
        T: Owner<Io = S, Hook = H>,
    {
        let io = Arc::new(io);
        let owner = Arc::new_cyclic(|me: &Weak<T>| {
            build(Core {
                weak: Arc::downgrade(&io),
                io: Mutex::new(Some(io)),
                waiters: Mutex::default(),
                closing: AtomicU8::new(OPEN),
                id: selector.register(me.clone() as Weak<dyn Release>).ok(),
                selector: Arc::clone(selector),
                on_release: setup.on_release,
                may_linger: AtomicBool::new(setup.may_linger),
                never_lingers: setup.never_lingers,
                listens: setup.listens,
                span: setup.span,
                releasing_on: AtomicUsize::new(0),
            })
        });
        // A selector that closed after the core registered, while it was still being built,
        // could not reach it (its weak reference did not upgrade yet): fail, and close it as
        // cut, as the selector's close cuts a connection (a connection a listener admitted
        // before a graceful shutdown began, still being set up when the selector closed, is
        // one that shutdown counts as open at its start: the close cut it; the hooks of
        // listeners and datagram sockets do not look at the cause).
        if !owner
            .core()
            .id
            .is_some_and(|id| selector.reaches_registered(id))
        {
            owner.core().close_as(CloseMode::Graceful, Cause::Cut);
            return Err(Error::SelectorClosed);
        }
        Ok(owner)
    }

    /// The socket, while it is open.
    ///
    /// # Errors
    ///
    /// The close error ([`Error::Closed`] or [`Error::SelectorClosed`]) once closing began.
    pub(crate) fn io(&self) -> Result<Arc<S>> {
        // A closing selector wakes the waiting operations first and closes its sockets right
        // after; an operation waiting meanwhile is failed by `poll_io`'s close wait.
        // Sequentially consistent with `close_deciding`'s mark: an operation either finds the
        // socket closed here, or the close finds what the operation's caller noted before
        // (a write channel's write under way).
        if self.closing.load(Ordering::SeqCst) != OPEN {
            return Err(self.closed_error());
        }
        self.weak.upgrade().ok_or_else(|| self.closed_error())
    }

    /// Polls `op` on the open socket. When `op` is pending, the task also waits for the close:
    /// a close makes the next poll fail with the close error.
    ///
    /// The socket is held only while `op` runs. Errors are `io::Error`s; the close error is one
    /// that carries [`Error::Closed`] / [`Error::SelectorClosed`] (`Error::from` recovers it).
    #[inline]
    pub(crate) fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        wait: &mut CloseWait,
        op: impl FnOnce(&S, &mut Context<'_>) -> Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        let io = self.io()?;
        match op(&io, cx) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => {
                drop(io);
                match wait.poll(cx, self) {
                    Poll::Ready(()) => Poll::Ready(Err(self.closed_error().into())),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    /// A read of this socket begins waiting (or is pending only for its task's spent budget):
    /// the cue of the selector's busy polling, when it has it. Returns whether it was one:
    /// `false` without busy polling, and for a spent budget (whose task tokio wakes itself).
    /// The caller remembers a cue until input comes or bytes leave: a read polled again while
    /// it waits is no new one (see `Conn::read_pending`).
    #[inline]
    pub(crate) fn reader_waits(&self) -> bool {
        match &self.selector.busy {
            Some(busy) => busy.kick_unless_budget_spent(),
            None => false,
        }
    }

    /// A receive found nothing queued: the cue of the selector's busy polling, when it has it,
    /// if the socket begins waiting for input, `waiting` false (set here, cleared by the
    /// caller when a datagram comes or goes): a receive begun while another waits, or again
    /// after one dropped while it waited, is no new cue.
    #[inline]
    pub(crate) fn receiver_waits(&self, waiting: &AtomicBool) {
        if let Some(busy) = &self.selector.busy {
            if !waiting.swap(true, Ordering::Relaxed) {
                busy.kick();
            }
        }
    }

    /// The error of an operation that failed: the close error once the selector is closed.
    /// The end of a `SelectorManager::new()` selector's runtime closes the selector, then
    /// shuts its I/O driver down, which fails the waits of the selector's sockets with tokio's
    /// own error ("A Tokio 1.x context was found, but it is being shutdown"), and the
    /// selector's close may reset a peer of one of its sockets before it closes that socket:
    /// an operation of another thread that found the socket open just before gets such an
    /// error. Applied where the callers of [`poll_io`](Self::poll_io) handle an error (out of
    /// the way of a successful operation).
    #[cold]
    #[inline(never)]
    pub(crate) fn failed(&self, e: io::Error) -> io::Error {
        if self.selector.is_closed() {
            self.closed_error().into()
        } else {
            e
        }
    }

    /// Repeats `op` until it completes or the socket closes (an `async` form of
    /// [`poll_io`](Self::poll_io)).
    pub(crate) async fn run<R>(
        &self,
        mut op: impl FnMut(&S, &mut Context<'_>) -> Poll<io::Result<R>>,
    ) -> Result<R> {
        let mut watch = Watch::new(self);
        std::future::poll_fn(|cx| self.poll_io(cx, &mut watch.wait, &mut op))
            .await
            .map_err(|e| Error::from(self.failed(e)))
    }

    /// Runs `future` until it completes or the socket closes (then fails with the close error).
    pub(crate) async fn until_closed<R>(
        &self,
        future: impl Future<Output = Result<R>>,
    ) -> Result<R> {
        let mut future = std::pin::pin!(future);
        let mut watch = Watch::new(self);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = future.as_mut().poll(cx) {
                return Poll::Ready(r);
            }
            watch.wait.poll(cx, self).map(|()| Err(self.closed_error()))
        })
        .await
    }

    /// Runs `f` with a [`SockRef`] to the open socket.
    ///
    /// # Errors
    ///
    /// The close error when closed; the error `f` returns, as [`Error::Io`].
    pub(crate) fn with_sock_ref<R>(
        &self,
        f: impl FnOnce(SockRef<'_>) -> io::Result<R>,
    ) -> Result<R> {
        let io = self.io()?;
        // `f` may set SO_LINGER: from now on `close` asks the kernel. Stored before `f` runs,
        // so that a listener's socket accepted after `f` set it sees this too.
        self.may_linger.store(true, Ordering::SeqCst);
        f(SockRef::from(&*io)).map_err(Error::Io)
    }

    /// Whether something may have given the socket a lingering `SO_LINGER` (see the field).
    pub(crate) fn may_linger(&self) -> bool {
        self.may_linger.load(Ordering::SeqCst)
    }

    /// Closes the socket (see the module docs). Idempotent; the first call's mode wins.
    pub(crate) fn close(&self, mode: CloseMode) {
        self.close_as(mode, Cause::Own);
    }

    /// Closes the socket, as [`close`](Self::close), for `cause`: the first call's mode and
    /// cause win.
    pub(crate) fn close_as(&self, mode: CloseMode, cause: Cause) {
        self.close_deciding(|| mode, cause);
    }

    /// Closes the socket, as [`close_as`](Self::close_as), in the mode `mode` returns: asked
    /// once the socket is marked closed, so that no operation starts after it looked (an
    /// operation that started before the mark may still be under way: its caller notes that
    /// first, and `mode` finds it).
    pub(crate) fn close_deciding(&self, mode: impl FnOnce() -> CloseMode, cause: Cause) {
        // Who closed it is settled here, once: a socket closed before its selector reports
        // `Closed` also after the selector closed. (The selector's close sets its flag before
        // it closes any socket.)
        let closed = if self.selector.is_closed() {
            CLOSED_BY_SELECTOR
        } else {
            CLOSED
        };
        // A close made by the close under way, on its thread (see `releasing_on`): the socket
        // is closed already, and that close releases it as this one returns.
        if self.releases_on_this_thread() {
            return;
        }
        // Held from before the mark until the descriptor is released: a close that comes
        // meanwhile (another thread's, the selector's) and finds the socket marked waits here,
        // so that it too returns with the socket closed (a listener's port free, the peer
        // told), not while this one still releases it.
        let mut held = lock(&self.io);
        let _ = self
            .closing
            .compare_exchange(OPEN, closed, Ordering::SeqCst, Ordering::SeqCst);
        let Some(io) = held.take() else {
            return;
        };
        // Deregistered once the descriptor went, and also should a step below unwind: a
        // selector's close that began as this socket's owner was being dropped waits for the
        // deregistration (see `SelectorInner::close`).
        let registered = Registered(self);
        let releasing = Releasing::on(&self.releasing_on);
        let mode = mode();
        // A task's waker that panics as a step wakes it (the release's counts wake a graceful
        // shutdown waiting for them) stops no step: the close ends as always, every task
        // waiting on the socket woken, then the panic goes on (see `Unwinds`).
        let mut unwinds = Unwinds::default();
        self.release(io, mode, cause, &mut unwinds);
        drop(registered);
        tracing::debug!(parent: &self.span, reset = mode == CloseMode::Reset, "closed");
        // Only now, and only by the close that released it: a task that `await_closed` wakes
        // finds the descriptor released (a Unix listener's file removed), also when another
        // close ran at the same time. Operations that start meanwhile fail on `closing`; those
        // pending are woken here and fail then.
        let (woken, token) = {
            let mut waiters = lock(&self.waiters);
            waiters.released = true;
            (waiters.slots.take(), waiters.token.take())
        };
        // The lock goes before the wake-ups: a wake may drop its task (an executor that can no
        // longer run it), and with it a guard whose drop closes this same socket, on this
        // thread; that close finds the socket closed and waits for this lock (see
        // `await_release`), which it would wait for for ever.
        drop(releasing);
        drop(held);
        // A waker that panics leaves neither the other waits asleep nor the token standing.
        unwinds.run(|| woken.wake());
        if let Some(token) = token {
            unwinds.run(|| token.cancel());
        }
        unwinds.finish();
    }

    /// For a close that found the socket closed or closing: returns once the close that marked
    /// it closed (another thread's, the selector's) released the descriptor, with `true`;
    /// `false` at once when no close marked it yet (its selector's close began, cancelling
    /// its operations, and has not reached it: the caller closes it as that close will).
    pub(crate) fn await_release(&self) -> bool {
        if self.closing.load(Ordering::SeqCst) == OPEN {
            return false;
        }
        // Made by the close under way, on its thread: it releases the descriptor as this
        // returns (waiting for its lock would wait for ever).
        if !self.releases_on_this_thread() {
            drop(lock(&self.io));
        }
        true
    }

    /// Whether a close on this thread is releasing the descriptor now (this call comes from
    /// inside it: a wake-up or a drop that it caused).
    fn releases_on_this_thread(&self) -> bool {
        let this = this_thread();
        this != 0 && self.releasing_on.load(Ordering::SeqCst) == this
    }

    /// `unwinds` keeps a panic of the release hook (a waker it wakes), for the close to go on
    /// with once done.
    fn release(&self, io: Arc<S>, mode: CloseMode, cause: Cause, unwinds: &mut Unwinds) {
        // First the counts: the kernel's close sends the FIN (or the reset), the peer sees the
        // end at once and may connect again, and another thread may accept that connection
        // before this one comes back from the close. It must find the place this one held free
        // (`max_connections_per_ip`, `max_connections`). Those waiting for the socket to close
        // (`await_closed`, pending operations) are woken only after the descriptor went.
        let handed_over = self.on_release.handed_over();
        unwinds.run(|| self.on_release.released(cause));
        if mode == CloseMode::Reset {
            // Best effort: a socket that cannot take the option still closes.
            let _ = SockRef::from(&*io).set_linger(Some(Duration::ZERO));
            self.let_go(io, handed_over);
        } else if let Some(linger) = (!self.never_lingers && self.may_linger())
            .then(|| linger_time(&io))
            .flatten()
        {
            // With SO_LINGER set, the kernel's close of the socket waits for the peer, on the
            // thread that drops the last reference: a blocking thread takes this one and drops
            // it once it is the last (see `drop_when_last`), not a runtime thread. (A runtime
            // shutting down refuses it: see `LingeringClose`.)
            let close = LingeringClose {
                io: Some(io),
                linger,
            };
            drop(self.selector.handle().spawn_blocking(move || close.run()));
        } else if self.never_lingers {
            // A listener's or datagram socket's close never waits for a peer: the descriptor
            // goes before this close returns, also when an operation in flight on another
            // thread (a send, an accept) holds the socket for the moment of its poll (its port
            // would be bound until that poll ended, after the close returned).
            if let Some(shared) = drop_when_last(io, LET_GO) {
                if self.listens {
                    // Still held (a `with_sock_ref` closure that closes its own listener, a
                    // thread stalled in its poll): Linux stops a listening socket at its
                    // `shutdown(SHUT_RD)`, whoever holds it, so connects are refused from now
                    // on. Only then, and never for an adopted listener: the shutdown stops the
                    // socket for every descriptor of it, also those of other processes (the
                    // copy systemd keeps of an activated service's socket, a successor's that
                    // took the listener over), which closing ours leaves listening.
                    let _ = SockRef::from(&*shared).shutdown(std::net::Shutdown::Read);
                }
                drop(shared);
            }
        } else {
            self.let_go(io, handed_over);
        }
    }

    /// Drops a connection's reference to its socket: the descriptor goes (the kernel sends the
    /// FIN or the reset) before the close returns, also while an operation in flight on another
    /// thread (a read or write of a channel) holds the socket for the moment of its poll: the
    /// close waits for it (at most `LET_GO`; one still holding it then releases it as it lets
    /// go). A descriptor `handed_over` to a task that sends what a graceful close still owes
    /// goes once that task is done; one a task holds while it waits for room to send held-back
    /// answers goes as the close's wake-up makes that task let go, just after the close.
    fn let_go(&self, io: Arc<S>, handed_over: bool) {
        if handed_over {
            drop(io);
        } else {
            drop(drop_when_last(io, LET_GO));
        }
    }

    /// The release hook.
    pub(crate) fn on_release(&self) -> &H {
        &self.on_release
    }

    /// Whether `close` was called, or the selector began closing the socket.
    pub(crate) fn is_closed(&self) -> bool {
        self.closing.load(Ordering::Acquire) != OPEN || self.selector.is_closed()
    }

    /// Whether `close` was called (or the selector closed the socket): as
    /// [`is_closed`](Self::is_closed) without the selector's own state, for the paths that
    /// run at every round trip.
    #[inline]
    pub(crate) fn close_begun(&self) -> bool {
        self.closing.load(Ordering::Acquire) != OPEN
    }

    /// Waits until the socket is closed, its descriptor released.
    pub(crate) async fn await_closed(&self) {
        let mut watch = Watch::new(self);
        std::future::poll_fn(|cx| watch.wait.poll_released(cx, self)).await;
    }

    /// A token cancelled once the socket is closed, its descriptor released (also by the drop
    /// of its owner), for tasks that must not keep the owner alive.
    pub(crate) fn close_token(&self) -> CancellationToken {
        let mut waiters = lock(&self.waiters);
        if waiters.released {
            let token = CancellationToken::new();
            token.cancel();
            return token;
        }
        waiters
            .token
            .get_or_insert_with(CancellationToken::new)
            .clone()
    }

    /// The selector closes: wakes every pending operation (which then fails with
    /// [`Error::SelectorClosed`]) before the selector closes any socket. The waits keep their
    /// places; their wakers are woken once the lock is let go of (see [`LetGo`]): a wake may
    /// drop its task (an executor that can no longer run it), and with it a wait or channel of
    /// this socket, whose drop takes that lock.
    pub(crate) fn wake_for_selector(&self) {
        let woken = lock(&self.waiters).slots.wakers();
        wake_all(woken);
    }

    /// [`Error::Closed`], or [`Error::SelectorClosed`] when the selector closed the socket (or,
    /// not closed yet, when the selector began closing it), as it was when the socket closed.
    pub(crate) fn closed_error(&self) -> Error {
        match self.closing.load(Ordering::Acquire) {
            CLOSED => Error::Closed,
            CLOSED_BY_SELECTOR => Error::SelectorClosed,
            _ => Error::closed(self.selector.is_closed()),
        }
    }

    /// Fails with the close error once closed.
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            Err(self.closed_error())
        } else {
            Ok(())
        }
    }

    /// The selector the socket is registered with.
    pub(crate) fn selector(&self) -> &Arc<SelectorInner> {
        &self.selector
    }

    /// The span of this socket's events.
    pub(crate) fn span(&self) -> &tracing::Span {
        &self.span
    }
}

/// An identity of the calling thread, unique among the threads alive (the address of a
/// thread-local), or 0 where it cannot be had (the thread's locals being torn down).
fn this_thread() -> usize {
    thread_local! {
        static MARK: u8 = const { 0 };
    }
    MARK.try_with(|mark| std::ptr::from_ref(mark) as usize)
        .unwrap_or(0)
}

/// Marks the calling thread as the one releasing a core's descriptor (see
/// `Core::releasing_on`), until dropped (also should the release unwind).
struct Releasing<'a>(&'a AtomicUsize);

impl<'a> Releasing<'a> {
    fn on(releasing_on: &'a AtomicUsize) -> Self {
        releasing_on.store(this_thread(), Ordering::SeqCst);
        let _ = RELEASES_HERE.try_with(|n| n.set(n.get() + 1));
        Releasing(releasing_on)
    }
}

impl Drop for Releasing<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::SeqCst);
        let _ = RELEASES_HERE.try_with(|n| n.set(n.get().saturating_sub(1)));
    }
}

thread_local! {
    /// How many closes on this thread are releasing a descriptor now (a close made inside
    /// another, by a wake-up it caused, counts too).
    static RELEASES_HERE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Whether a close on this thread is releasing a socket's descriptor now: this call comes from
/// inside it (a wake-up or a drop it caused), and holds that socket's lock, which a selector's
/// close on another thread may be waiting for (see `SelectorInner::close`).
pub(crate) fn releasing_here() -> bool {
    RELEASES_HERE.try_with(|n| n.get() > 0).unwrap_or(false)
}

/// A core's registration with its selector, until the close that released the descriptor
/// drops it: only once the descriptor went, so that the selector's close that comes meanwhile
/// still finds this socket and waits for this close (see `close_deciding`) before it returns,
/// and a selector's close that found the socket's owner being dropped waits for this.
struct Registered<'a, S: SocketIo, H: ReleaseHook>(&'a Core<S, H>);

impl<S: SocketIo, H: ReleaseHook> Drop for Registered<'_, S, H> {
    fn drop(&mut self) {
        if let Some(id) = self.0.id {
            self.0.selector.deregister(id);
        }
    }
}

/// The longest a close of a socket that does not linger waits for operations in flight on other
/// threads to let go of it (they hold it for one poll; a `with_sock_ref` closure that closes
/// its own socket would hold it until the close returned, which then lets go at this bound).
const LET_GO: Duration = Duration::from_millis(50);

/// Drops `io` once no other reference to it is left, so that the socket's lingering close
/// waits for the peer on this (blocking) thread (or, for a socket that never lingers or a
/// connection without a linger time, so that its descriptor goes before its close returns,
/// with `LET_GO` as `linger`); waits at most
/// `linger` (the socket's linger time) for the others. They hold theirs briefly (an operation while it runs, a task that
/// sends held-back answers for a reader until the close wakes it), except a task that sends
/// held-back answers after the close (bounded by `socket_timeout`): one still at it after
/// `linger` drops its reference last, on a blocking thread too, or resets the connection.
/// (Closing a duplicate descriptor here instead raced with the runtime thread's drop of the
/// original: whichever closed last waited for the peer, sometimes a runtime thread.)
///
/// A time too large for the clock (the kernel reports a time of 2^31 s or more set through
/// socket2 as a negative one, read as some 10^19 s) sets no limit.
///
/// Returns the reference when others still hold the socket after `linger`, for the caller to
/// drop (the descriptor then goes with the last of them).
#[must_use = "the reference still shared after `linger`"]
fn drop_when_last<S>(mut io: Arc<S>, linger: Duration) -> Option<Arc<S>> {
    let until = Instant::now().checked_add(linger);
    // An operation in flight lets go within microseconds: a few turns first, then pauses.
    let mut turns = 0;
    let mut pause = Duration::from_micros(100);
    loop {
        match Arc::try_unwrap(io) {
            Ok(last) => {
                drop(last);
                return None;
            }
            Err(shared) if until.is_none_or(|until| Instant::now() < until) => {
                io = shared;
                if turns < 64 {
                    turns += 1;
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
            }
            Err(shared) => return Some(shared),
        }
    }
}

/// A lingering close handed to a blocking thread of the selector's runtime.
///
/// A runtime that is shutting down (its end closes the selector, and with it this socket)
/// refuses new blocking work and drops the closure at once, on the thread that closes: the one
/// ending the runtime (`shutdown_background`, made to be called from an async context;
/// `shutdown_timeout`, whose timeout it would overrun), or one of its workers, which releases
/// the selector's other sockets only after this one. Dropped without having run, this close
/// runs on a thread of its own instead (and only where no thread can be started, on the spot).
struct LingeringClose<S: SocketIo> {
    io: Option<Arc<S>>,
    linger: Duration,
}

impl<S: SocketIo> LingeringClose<S> {
    fn run(mut self) {
        if let Some(io) = self.io.take() {
            drop(drop_when_last(io, self.linger));
        }
    }
}

impl<S: SocketIo> Drop for LingeringClose<S> {
    fn drop(&mut self) {
        if let Some(io) = self.io.take() {
            let linger = self.linger;
            let _ = std::thread::Builder::new()
                .name("net-linger".into())
                .spawn(move || drop(drop_when_last(io, linger)));
        }
    }
}

/// The time the kernel's close of `io` waits for the peer, if it does (`SO_LINGER` with a time,
/// set by the builder's `linger`, through `with_sock_ref`, inherited from the listener, or there
/// when the socket was adopted).
pub(crate) fn linger_time(io: &impl AsFd) -> Option<Duration> {
    SockRef::from(io)
        .linger()
        .ok()
        .flatten()
        .filter(|time| !time.is_zero())
}

impl<S: SocketIo, H: ReleaseHook> Drop for Core<S, H> {
    fn drop(&mut self) {
        self.close(CloseMode::Graceful);
    }
}

impl<S: SocketIo, H: ReleaseHook> fmt::Debug for Core<S, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("closed", &(self.closing.load(Ordering::Relaxed) != OPEN))
            .finish_non_exhaustive()
    }
}

/// The wake-up on close of one pending operation: its place among its core's [`Waiters`],
/// taken by the first wait and kept (one direction of a connection keeps it for the
/// connection's life, renewing the waker only when another task polls); given back with
/// [`leave`](Self::leave) (see [`Watch`]).
///
/// Every wake-up on close comes after the core's `closing` flag or its selector's `closed`
/// flag is set, so while neither is and this task's waker stands, a wait is two loads and a
/// waker comparison, inlined into every operation that waits; the rest is a call.
#[derive(Debug, Default)]
pub(crate) struct CloseWait {
    registration: Registration,
}

impl CloseWait {
    /// Ready once the core closed (its descriptor released) or its selector began closing it.
    #[inline]
    pub(crate) fn poll<S: SocketIo, H: ReleaseHook>(
        &mut self,
        cx: &mut Context<'_>,
        core: &Core<S, H>,
    ) -> Poll<()> {
        if self.registration.stands(cx)
            && core.closing.load(Ordering::Acquire) == OPEN
            && !core.selector.is_closed()
        {
            return Poll::Pending;
        }
        self.poll_registering(cx, core, true)
    }

    /// Whether this task's waker is in place (see [`Registration::stands`]).
    #[inline]
    pub(crate) fn stands(&self, cx: &Context<'_>) -> bool {
        self.registration.stands(cx)
    }

    /// Ready once the core closed, its descriptor released (not before, also when its selector
    /// closes it).
    fn poll_released<S: SocketIo, H: ReleaseHook>(
        &mut self,
        cx: &mut Context<'_>,
        core: &Core<S, H>,
    ) -> Poll<()> {
        self.poll_registering(cx, core, false)
    }

    /// Under the waiters' lock, which a close takes to wake them: either this sees the close's
    /// mark, or the close finds the waker put here. The wakers this lets go of go after the
    /// lock (see [`LetGo`]).
    #[inline(never)]
    fn poll_registering<S: SocketIo, H: ReleaseHook>(
        &mut self,
        cx: &mut Context<'_>,
        core: &Core<S, H>,
        with_selector: bool,
    ) -> Poll<()> {
        let mut waiters = lock(&core.waiters);
        if waiters.released || (with_selector && core.selector.is_closed()) {
            let gone = self.registration.leave(&mut waiters.slots);
            drop(waiters);
            drop(gone);
            return Poll::Ready(());
        }
        let gone = self.registration.register(&mut waiters.slots, cx);
        drop(waiters);
        drop(gone);
        Poll::Pending
    }

    /// Whether a wait took a place and keeps it (with the waker of the task that polled it
    /// last), until another task's wait renews it or it is given back.
    pub(crate) fn is_registered(&self) -> bool {
        self.registration.is_registered()
    }

    /// Gives the place back: the wait is over for good.
    pub(crate) fn leave<S: SocketIo, H: ReleaseHook>(&mut self, core: &Core<S, H>) {
        if self.registration.is_registered() {
            // The lock goes at the end of this statement, before the wakers.
            let gone = self.registration.leave(&mut lock(&core.waiters).slots);
            drop(gone);
        }
    }
}

/// One wait's place among a [`Slots`] (a core's waiters, a drain's), and the waker it put
/// there: the registration a wait keeps from poll to poll, renewed only when another task polls.
#[derive(Debug, Default)]
pub(crate) struct Registration(Option<(usize, Waker)>);

/// The wakers a [`Registration`] let go of (replaced by another task's, or given back), for
/// the caller to drop once it let go of the lock of the [`Slots`]: a waker may be the last
/// reference to its task (an executor whose pending tasks only their wakers keep, the task's
/// wait having moved to another task), whose future then goes with it, and with it what that
/// future holds: another wait on the same slots, a socket of the same core, whose drop takes
/// that lock.
pub(crate) type LetGo = [Option<Waker>; 2];

impl Registration {
    /// Whether this task's waker is in place: the wait registered, and this task polled it last.
    #[inline]
    pub(crate) fn stands(&self, cx: &Context<'_>) -> bool {
        self.0
            .as_ref()
            .is_some_and(|(_, waker)| waker.will_wake(cx.waker()))
    }

    /// Whether the wait holds a place.
    pub(crate) fn is_registered(&self) -> bool {
        self.0.is_some()
    }

    /// Puts this task's waker in the wait's place, taking one the first time; `slots` is
    /// locked by the caller, who checked under that lock that the event has not come. Returns
    /// the wakers it replaced, to drop after that lock.
    #[must_use = "dropped once the lock of the slots is let go of"]
    pub(crate) fn register(&mut self, slots: &mut Slots, cx: &Context<'_>) -> LetGo {
        match &mut self.0 {
            Some((place, waker)) => {
                let replaced = (!waker.will_wake(cx.waker()))
                    .then(|| std::mem::replace(waker, cx.waker().clone()));
                [replaced, slots.put(*place, waker.clone())]
            }
            None => {
                let place = slots.insert(cx.waker().clone());
                self.0 = Some((place, cx.waker().clone()));
                [None, None]
            }
        }
    }

    /// Gives the place back (if the event did not take it already). Returns the wakers it let
    /// go of, to drop after the lock of `slots`.
    #[must_use = "dropped once the lock of the slots is let go of"]
    pub(crate) fn leave(&mut self, slots: &mut Slots) -> LetGo {
        match self.0.take() {
            Some((place, waker)) => [Some(waker), slots.remove(place)],
            None => [None, None],
        }
    }
}

/// A [`CloseWait`] that gives its place back when dropped: the wait of one operation.
struct Watch<'a, S: SocketIo, H: ReleaseHook> {
    core: &'a Core<S, H>,
    wait: CloseWait,
}

impl<'a, S: SocketIo, H: ReleaseHook> Watch<'a, S, H> {
    fn new(core: &'a Core<S, H>) -> Self {
        Watch {
            core,
            wait: CloseWait::default(),
        }
    }
}

impl<S: SocketIo, H: ReleaseHook> Drop for Watch<'_, S, H> {
    fn drop(&mut self) {
        self.wait.leave(self.core);
    }
}

/// Who waits for a core's close.
#[derive(Default)]
struct Waiters {
    /// Set by the close that released the descriptor, before it wakes anyone.
    released: bool,
    slots: Slots,
    /// The token of [`Core::close_token`], once asked for.
    token: Option<CancellationToken>,
}

/// The wakers of the waits that one event ends (a socket's close, a shutdown's start), each in
/// a place of its own until the wait leaves: two inline (a connection's two directions: no
/// allocation), more (a listener's or datagram socket's operations, a listener's connections)
/// in a vector whose free places are reused, so it holds as many as ever waited at once.
#[derive(Debug)]
pub(crate) struct Slots {
    inline: [Option<Waker>; 2],
    more: Vec<Place>,
    /// The first free place of `more` (a list through the free places), or `NO_PLACE`.
    free: usize,
}

const NO_PLACE: usize = usize::MAX;

/// A place of [`Slots::more`].
#[derive(Debug)]
enum Place {
    Taken(Waker),
    /// Free; the next free place, or `NO_PLACE`.
    Free(usize),
}

impl Default for Slots {
    fn default() -> Self {
        Slots {
            inline: [None, None],
            more: Vec::new(),
            free: NO_PLACE,
        }
    }
}

impl Slots {
    /// Puts `waker` in a free place, and returns it.
    fn insert(&mut self, waker: Waker) -> usize {
        if let Some(free) = self.inline.iter().position(Option::is_none) {
            self.inline[free] = Some(waker);
            return free;
        }
        let index = self.free;
        match self.more.get_mut(index) {
            Some(place) => {
                let Place::Free(next) = *place else {
                    unreachable!("a taken place on the free list")
                };
                *place = Place::Taken(waker);
                self.free = next;
                index + 2
            }
            None => {
                self.more.push(Place::Taken(waker));
                self.more.len() + 1
            }
        }
    }

    /// Puts `waker` in `place`, which this wait took and still holds (the places are taken away
    /// only by [`take`](Self::take), once the event came, and no wait takes one after it).
    /// Returns the waker it replaces.
    fn put(&mut self, place: usize, waker: Waker) -> Option<Waker> {
        match place {
            0 | 1 => self.inline[place].replace(waker),
            _ => match self.more.get_mut(place - 2) {
                Some(Place::Taken(held)) => Some(std::mem::replace(held, waker)),
                _ => None,
            },
        }
    }

    /// Frees `place`, unless [`take`](Self::take) took it already; returns its waker.
    fn remove(&mut self, place: usize) -> Option<Waker> {
        match place {
            0 | 1 => self.inline[place].take(),
            _ => {
                let index = place - 2;
                let held = self.more.get_mut(index)?;
                match std::mem::replace(held, Place::Free(self.free)) {
                    Place::Taken(waker) => {
                        self.free = index;
                        Some(waker)
                    }
                    free @ Place::Free(_) => {
                        *held = free;
                        None
                    }
                }
            }
        }
    }

    /// Takes every waker out (the event came), to wake them once the lock is let go.
    pub(crate) fn take(&mut self) -> Slots {
        std::mem::take(self)
    }

    pub(crate) fn wake(self) {
        let more = self.more.into_iter().filter_map(|place| match place {
            Place::Taken(waker) => Some(waker),
            Place::Free(_) => None,
        });
        wake_all(self.inline.into_iter().flatten().chain(more));
    }

    /// A copy of every waker, to wake once the lock is let go of (the waits keep their places).
    fn wakers(&self) -> Vec<Waker> {
        let more = self.more.iter().filter_map(|place| match place {
            Place::Taken(waker) => Some(waker),
            Place::Free(_) => None,
        });
        self.inline.iter().flatten().chain(more).cloned().collect()
    }

    /// How many waits hold a place, and the places of `more` (free or not).
    #[cfg(test)]
    pub(crate) fn count(&self) -> (usize, usize) {
        let taken = self
            .more
            .iter()
            .filter(|place| matches!(place, Place::Taken(_)))
            .count();
        (
            self.inline.iter().flatten().count() + taken,
            self.more.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::Waker;

    use super::*;
    use crate::SelectorManager;

    /// The simplest owner: a core and nothing else.
    struct Plain(Core<tokio::net::UdpSocket>);

    impl Owner for Plain {
        type Io = tokio::net::UdpSocket;
        type Hook = ();

        fn core(&self) -> &Core<tokio::net::UdpSocket> {
            &self.0
        }
    }

    /// A connection: the simplest owner of a TCP stream, with a release hook.
    struct PlainTcp(Core<tokio::net::TcpStream, OnRelease>);

    impl Owner for PlainTcp {
        type Io = tokio::net::TcpStream;
        type Hook = OnRelease;

        fn core(&self) -> &Core<tokio::net::TcpStream, OnRelease> {
            &self.0
        }
    }

    /// A UDP socket of `selector` with no release hook.
    async fn udp_socket(selector: &SelectorManager) -> Arc<Plain> {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let setup = Setup {
            may_linger: false,
            never_lingers: true,
            ..Setup::new(tracing::Span::none())
        };
        Core::open(selector.inner(), socket, setup, Plain).unwrap()
    }

    /// How many waits hold a place among the core's waiters, and the places kept beyond the
    /// two inline.
    fn places(core: &Core<tokio::net::UdpSocket>) -> (usize, usize) {
        lock(&core.waiters).slots.count()
    }

    /// Waits that end (completed, cancelled by a drop) give their place among the core's
    /// waiters back, for the next wait to take: a socket many tasks wait on in turn (a
    /// listener, a datagram socket) keeps as many places as ever waited at once, not one per
    /// wait it ever had. (`places` counts the waits holding one, and the places beyond the two
    /// inline, free or not.)
    #[tokio::test]
    async fn a_wait_that_ends_gives_its_place_back() {
        let selector = SelectorManager::new();
        let udp = udp_socket(&selector).await;
        let core = udp.core();
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..100 {
            let mut receive = Box::pin(core.run(|socket, cx| socket.poll_recv_ready(cx)));
            let mut closed = Box::pin(core.await_closed());
            let mut until = Box::pin(core.until_closed(std::future::pending::<Result<()>>()));
            assert!(receive.as_mut().poll(&mut cx).is_pending());
            assert!(closed.as_mut().poll(&mut cx).is_pending());
            assert!(until.as_mut().poll(&mut cx).is_pending());
            assert_eq!(places(core), (3, 1));
            drop(closed);
            assert_eq!(places(core), (2, 1));
            drop((receive, until));
            assert_eq!(places(core), (0, 1));
        }
        // Five at once, left in another order than taken, then five again.
        for _ in 0..2 {
            let mut waits: Vec<_> = (0..5)
                .map(|_| Box::pin(core.run(|socket, cx| socket.poll_recv_ready(cx))))
                .collect();
            for wait in &mut waits {
                assert!(wait.as_mut().poll(&mut cx).is_pending());
            }
            assert_eq!(places(core), (5, 3));
            drop(waits.remove(4));
            drop(waits.remove(0));
            drop(waits.remove(1));
            assert_eq!(places(core), (2, 3));
            waits.clear();
            assert_eq!(places(core), (0, 3));
        }
        // Ready ones leave too.
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = core.io().unwrap().local_addr().unwrap();
        let mut receive = Box::pin(core.run(|socket, cx| socket.poll_recv_ready(cx)));
        assert!(receive.as_mut().poll(&mut cx).is_pending());
        sender.send_to(b"x", address).unwrap();
        receive.await.unwrap();
        assert_eq!(places(core), (0, 3));
        // Waits that end after the close took every waker: some polled (ready), some dropped.
        let mut waits: Vec<_> = (0..5).map(|_| Box::pin(core.await_closed())).collect();
        for wait in &mut waits {
            assert!(wait.as_mut().poll(&mut cx).is_pending());
        }
        core.close(CloseMode::Graceful);
        for wait in waits.iter_mut().step_by(2) {
            assert!(wait.as_mut().poll(&mut cx).is_ready());
        }
        waits.clear();
        assert_eq!(places(core), (0, 0));
    }

    /// A waker that counts its wake-ups.
    struct Counted(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counted {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A pending operation that another task polls next (a listener's accept or a datagram
    /// socket's receive moved between tasks) is woken by the close through that task's waker,
    /// not the first one's: the two places inline and those beyond them alike. A stale waker
    /// would leave the task that waits now asleep for ever.
    #[tokio::test]
    async fn a_wait_polled_by_another_task_is_woken_by_the_close_through_that_tasks_waker() {
        let selector = SelectorManager::new();
        let udp = udp_socket(&selector).await;
        let core = udp.core();
        let first = Arc::new(Counted(0.into()));
        let then = Arc::new(Counted(0.into()));
        let first_waker = Waker::from(Arc::clone(&first));
        let then_waker = Waker::from(Arc::clone(&then));
        let mut waits: Vec<_> = (0..5)
            .map(|_| Box::pin(core.run(|socket, cx| socket.poll_recv_ready(cx))))
            .collect();
        for wait in &mut waits {
            assert!(
                wait.as_mut()
                    .poll(&mut Context::from_waker(&first_waker))
                    .is_pending()
            );
        }
        for wait in &mut waits {
            assert!(
                wait.as_mut()
                    .poll(&mut Context::from_waker(&then_waker))
                    .is_pending()
            );
        }
        assert_eq!(places(core), (5, 3));
        core.close(CloseMode::Graceful);
        assert_eq!(
            then.0.load(Ordering::SeqCst),
            5,
            "every wait's new task woken"
        );
        assert_eq!(first.0.load(Ordering::SeqCst), 0, "no task that left woken");
        for wait in &mut waits {
            let polled = wait.as_mut().poll(&mut Context::from_waker(&then_waker));
            assert!(
                matches!(polled, Poll::Ready(Err(Error::Closed))),
                "{polled:?}"
            );
        }
    }

    /// A wait that begins on one thread while the socket, or its selector, closes on another
    /// is always woken (the close error), however the two interleave: a lost wake-up would
    /// leave the operation pending for ever.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wait_racing_a_close_on_another_thread_is_always_woken() {
        for round in 0..400 {
            let selector = SelectorManager::new();
            let udp = udp_socket(&selector).await;
            let by_selector = round % 2 == 1;
            let waiting = {
                let udp = Arc::clone(&udp);
                tokio::spawn(async move {
                    udp.core()
                        .run(|socket, cx| socket.poll_recv_ready(cx))
                        .await
                })
            };
            for _ in 0..round % 7 {
                tokio::task::yield_now().await;
            }
            let closing = std::thread::spawn(move || {
                if by_selector {
                    selector.close();
                } else {
                    udp.core().close(CloseMode::Graceful);
                }
            });
            let waited = tokio::time::timeout(Duration::from_secs(10), waiting)
                .await
                .unwrap_or_else(|_| panic!("round {round}: the wait was never woken"))
                .unwrap();
            closing.join().unwrap();
            let expected = if by_selector {
                Error::SelectorClosed
            } else {
                Error::Closed
            };
            assert!(
                matches!(&waited, Err(e) if e.to_string() == expected.to_string()),
                "round {round}: {waited:?}"
            );
        }
    }

    /// The close lands between an operation's check of the socket and its wait for the close
    /// (here inside the operation, which then finds nothing ready): the wait, which registers
    /// after the close woke everyone registered, must see the close and end, not wait for a
    /// wake-up that came before it.
    #[tokio::test]
    async fn a_wait_that_registers_after_the_close_woke_everyone_ends_at_once() {
        for by_selector in [false, true] {
            let selector = SelectorManager::new();
            let udp = udp_socket(&selector).await;
            let core = udp.core();
            let operation = core.run(|socket, cx| {
                if by_selector {
                    selector.close();
                } else {
                    core.close(CloseMode::Graceful);
                }
                socket.poll_recv_ready(cx)
            });
            let polled = pin!(operation).poll(&mut Context::from_waker(Waker::noop()));
            let expected = if by_selector {
                Error::SelectorClosed
            } else {
                Error::Closed
            };
            assert!(
                matches!(&polled, Poll::Ready(Err(e)) if e.to_string() == expected.to_string()),
                "closed by the selector {by_selector}: {polled:?}"
            );
        }
    }

    /// Who closed a socket is settled by its first close: one closed on its own before its
    /// selector closed fails with `Closed` also after the selector closed, and one the
    /// selector closed with `SelectorClosed`, also after its own close came later.
    #[tokio::test]
    async fn the_close_error_names_the_first_close_also_after_the_other() {
        let selector = SelectorManager::new();
        let own = udp_socket(&selector).await;
        let by_selector = udp_socket(&selector).await;
        own.core().close(CloseMode::Graceful);
        selector.close();
        by_selector.core().close(CloseMode::Graceful);
        for (udp, expected) in [(own, Error::Closed), (by_selector, Error::SelectorClosed)] {
            let core = udp.core();
            for error in [core.io().unwrap_err(), core.check_open().unwrap_err()] {
                assert_eq!(error.to_string(), expected.to_string());
            }
            let polled = pin!(core.run(|socket, cx| socket.poll_recv_ready(cx)))
                .poll(&mut Context::from_waker(Waker::noop()));
            assert!(
                matches!(&polled, Poll::Ready(Err(e)) if e.to_string() == expected.to_string()),
                "{expected:?}: {polled:?}"
            );
        }
    }

    /// The token of a task that must not keep its socket alive is cancelled once the socket
    /// closed, whether it was asked for before the close or after.
    #[tokio::test]
    async fn a_close_token_is_cancelled_by_the_close_whenever_it_was_asked_for() {
        let selector = SelectorManager::new();
        let udp = udp_socket(&selector).await;
        let before = udp.core().close_token();
        assert!(!before.is_cancelled());
        udp.core().close(CloseMode::Graceful);
        assert!(before.is_cancelled());
        assert!(udp.core().close_token().is_cancelled());
        // Closed with its selector.
        let udp = udp_socket(&selector).await;
        let before = udp.core().close_token();
        selector.close();
        assert!(before.is_cancelled());
        udp.core().await_closed().await;
    }

    /// A socket leaves its counts (runs its release hook) before its peer can see the end: a
    /// client that saw the FIN (or the reset) of a connection and connects again must find the
    /// place that connection held under the listener's caps free, also when its new connection
    /// is accepted on another thread while the close is still returning. The hook ran after the
    /// kernel's close, which on loopback delivers the FIN before it returns.
    #[tokio::test]
    async fn a_socket_leaves_its_counts_before_its_peer_can_see_the_end() {
        for mode in [CloseMode::Graceful, CloseMode::Reset] {
            let selector = SelectorManager::new();
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            peer.set_nonblocking(true).unwrap();
            let (accepted, _) = listener.accept().unwrap();
            accepted.set_nonblocking(true).unwrap();
            let stream = tokio::net::TcpStream::from_std(accepted).unwrap();
            let seen = Arc::new(Mutex::new(None));
            let on_release: OnRelease = {
                let seen = Arc::clone(&seen);
                Arc::new(move |_| {
                    let mut byte = [0; 1];
                    let read = std::io::Read::read(&mut &peer, &mut byte);
                    *lock(&seen) = Some(format!("{read:?}"));
                })
            };
            let setup = Setup {
                may_linger: false,
                ..Setup::releasing(tracing::Span::none(), on_release)
            };
            let socket = Core::open(selector.inner(), stream, setup, PlainTcp).unwrap();
            socket.core().close(mode);
            let seen = lock(&seen).take().expect("the release hook ran");
            assert!(
                seen.contains("WouldBlock"),
                "{mode:?}: the peer saw the end before the socket left its counts: {seen}"
            );
        }
    }

    /// The end of a `SelectorManager::new()` selector's runtime, on another thread, between an
    /// operation's check of its socket and its wait on the socket's readiness: the wait fails
    /// with tokio's own error ("A Tokio 1.x context was found, but it is being shutdown"), and
    /// the operation reports the close, `SelectorClosed`, as every one waiting then does.
    #[test]
    fn an_operation_failed_by_the_end_of_the_selectors_runtime_reports_selector_closed() {
        let dying = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (selector, udp) = dying.block_on(async {
            let selector = SelectorManager::new();
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let setup = Setup {
                may_linger: false,
                never_lingers: true,
                ..Setup::new(tracing::Span::none())
            };
            let udp = Core::open(selector.inner(), socket, setup, Plain).unwrap();
            (selector, udp)
        });
        let mut dying = Some(dying);
        let operation = udp.core().run(|socket, cx| {
            // The socket was found open; the runtime ends before the wait.
            drop(dying.take());
            socket.poll_recv_ready(cx)
        });
        let polled = pin!(operation).poll(&mut Context::from_waker(Waker::noop()));
        assert!(selector.is_closed());
        assert!(
            matches!(polled, Poll::Ready(Err(Error::SelectorClosed))),
            "{polled:?}"
        );
    }

    /// The selector's close, on another thread, while an operation of one of its sockets runs:
    /// the operation's failure (here a reset: the close resets the peer, a socket of the same
    /// selector with input unread, before it closes this one) is the close, `SelectorClosed`,
    /// as the selector's close promises of every pending operation.
    #[tokio::test]
    async fn an_operation_failing_as_the_selector_closes_reports_selector_closed() {
        let selector = SelectorManager::new();
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let setup = Setup {
            may_linger: false,
            never_lingers: true,
            ..Setup::new(tracing::Span::none())
        };
        let udp = Core::open(selector.inner(), socket, setup, Plain).unwrap();
        let operation = udp.core().run(|_, _| {
            selector.close();
            Poll::Ready(Err::<(), _>(io::Error::from(
                io::ErrorKind::ConnectionReset,
            )))
        });
        let polled = pin!(operation).poll(&mut Context::from_waker(Waker::noop()));
        assert!(
            matches!(polled, Poll::Ready(Err(Error::SelectorClosed))),
            "{polled:?}"
        );
    }

    /// A linger time the clock cannot reach: socket2's `set_linger` writes a time of 2^31 s or
    /// more (`Duration::MAX` here, through `with_sock_ref`, or a C program's negative
    /// `l_linger` on an adopted socket) as a negative C int, which the kernel reports back and
    /// socket2 reads as some 10^19 s. The close's wait for the other holders must not overflow
    /// the clock (a panic on the blocking thread, an abort where panics abort).
    #[test]
    fn a_linger_time_beyond_the_clock_never_panics_the_close() {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        SockRef::from(&socket)
            .set_linger(Some(Duration::MAX))
            .unwrap();
        let linger = linger_time(&socket).expect("a linger time");
        drop(drop_when_last(Arc::new(socket), linger));
    }

    /// The selector closes after the core registered but before it was built (`build` runs
    /// in between, so closing there hits that instant every time): the selector's sweep cannot
    /// reach a core not yet built, so `open` must not hand it out as a live socket.
    #[tokio::test]
    async fn a_selector_that_closes_while_a_core_is_built_closes_it() {
        let selector = SelectorManager::new();
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        let opened = Core::open(
            selector.inner(),
            socket,
            Setup::new(tracing::Span::none()),
            |core| {
                selector.close();
                Plain(core)
            },
        );
        if let Ok(plain) = &opened {
            assert!(
                plain.core().with_sock_ref(|_| Ok(())).is_err(),
                "a socket of a closed selector is still open"
            );
        }
        assert!(matches!(opened, Err(Error::SelectorClosed)));
        // Its descriptor is released: the port is free.
        std::net::UdpSocket::bind(address).unwrap();
    }
}
