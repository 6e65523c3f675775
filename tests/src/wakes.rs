//! Re-entrant wake-ups: a task owned by its wakers only, as under an executor that drops a
//! task when its waker fires or when its last waker goes ([`Owner`]), and a step run on a
//! thread of its own, which tells a deadlock (the thread waiting on itself) from a return
//! ([`returns`]). The tests of a close that such a drop makes on the thread that holds a lock
//! the close takes use them.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, mpsc};
use std::task::Wake;
use std::time::Duration;

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
