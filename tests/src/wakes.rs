//! Re-entrant wake-ups: a task owned by its wakers only, as under an executor that drops a
//! task when its waker fires or when its last waker goes ([`Owner`]), and a step run on a
//! thread of its own, which tells a deadlock (the thread waiting on itself) from a return
//! ([`returns`]). The tests of a close that such a drop makes on the thread that holds a lock
//! the close takes use them.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use net_sockets::{Socket, Transport};

/// Longer than any step of these tests takes (microseconds): past it, the thread that runs
/// the step waits on itself.
pub const DEADLOCK: Duration = Duration::from_secs(5);

/// A task, as [`Owner`] owns it.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A waker that is the only owner of what its task holds (a [`Task`], or its state): dropped
/// with the waker's last copy, as a task that only its wakers keep is, and by a wake, as by an
/// executor that can no longer run the task it wakes and drops it.
pub struct Owner<T>(pub Mutex<Option<T>>);

impl<T> std::fmt::Debug for Owner<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let owns = self.0.lock().map(|o| o.is_some()).unwrap_or(false);
        f.debug_struct("Owner").field("owns", &owns).finish()
    }
}

impl<T> Owner<T> {
    /// An owner of nothing yet: put what it owns in its `Mutex`.
    pub fn new() -> Arc<Self> {
        Arc::new(Owner(Mutex::new(None)))
    }
}

impl<T: Send + 'static> Wake for Owner<T> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let owned = self.0.lock().unwrap().take();
        drop(owned);
    }
}

/// Runs `step` on a thread of its own: whether it returned within [`DEADLOCK`] (a thread that
/// waits on itself is left behind).
pub fn returns(step: impl FnOnce() + Send + 'static) -> bool {
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        step();
        let _ = done_tx.send(());
    });
    done.recv_timeout(DEADLOCK).is_ok()
}

/// Closes its socket when dropped: a connection's guard, held by a task, so that the task's
/// drop closes the connection (plain or TLS: a `TlsSocket` is a `Socket` too).
pub struct CloseOnDrop<T: Transport>(pub Arc<Socket<T>>);

impl<T: Transport> std::fmt::Debug for CloseOnDrop<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CloseOnDrop").field(&self.0).finish()
    }
}

impl<T: Transport> Drop for CloseOnDrop<T> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A task that only its wakers keep and that a wake-up leaves pending: a wake only notes that
/// it came (in `woken`), registering nothing new; the task put in `task` goes with the last of
/// its wakers.
pub struct KeptByWakers {
    /// The task, dropped with the last waker.
    pub task: Mutex<Option<Task>>,
    /// Set by each wake-up.
    pub woken: Arc<AtomicBool>,
}

impl std::fmt::Debug for KeptByWakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptByWakers")
            .field("woken", &self.woken.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl KeptByWakers {
    /// A waker-kept task of nothing yet (put it in `task`), whose wakes set `woken`.
    pub fn new(woken: &Arc<AtomicBool>) -> Arc<Self> {
        Arc::new(KeptByWakers {
            task: Mutex::new(None),
            woken: Arc::clone(woken),
        })
    }
}

impl KeptByWakers {
    /// Starts `task` as this waker-kept task: polls it once with a waker of this (it must be
    /// left pending, waiting on what it polled), then keeps it in `task`, so that it goes with
    /// the last of the wakers its waits hold.
    pub fn start(self: &Arc<Self>, mut task: Task) {
        let waker = Waker::from(Arc::clone(self));
        assert!(
            task.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending(),
            "the task ended at its first poll"
        );
        *self.task.lock().unwrap() = Some(task);
    }
}

impl Wake for KeptByWakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
    }
}

/// Runs its closure when dropped: the guard of a task that only its wakers keep, closing a
/// socket (and noting what the test checks as that close returns) when the task goes.
pub struct OnDrop<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> OnDrop<F> {
    /// A guard that runs `then` when dropped.
    pub fn new(then: F) -> Self {
        OnDrop(Some(then))
    }
}

impl<F: FnOnce()> std::fmt::Debug for OnDrop<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnDrop")
            .field("ran", &self.0.is_none())
            .finish()
    }
}

impl<F: FnOnce()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(then) = self.0.take() {
            then();
        }
    }
}

/// A future that several tasks poll in turn (`None` once it completed).
pub type Shared<T> = Arc<Mutex<Option<Pin<Box<dyn Future<Output = T> + Send>>>>>;

/// Polls `shared` as another task would (task B: a waker that does nothing), at most `rounds`
/// times, `pause` apart, until it completes or `done` says what the test waits for came.
pub fn poll_as_another_task<T>(
    shared: &Shared<T>,
    rounds: usize,
    pause: Duration,
    done: impl Fn() -> bool,
) {
    for _ in 0..rounds {
        let mut polled = shared.lock().unwrap();
        let Some(future) = polled.as_mut() else {
            return;
        };
        if future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready()
        {
            *polled = None;
        }
        drop(polled);
        if done() {
            return;
        }
        std::thread::sleep(pause);
    }
}
