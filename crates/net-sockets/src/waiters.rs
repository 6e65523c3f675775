//! Several tasks waiting on one readiness of a socket: a listener's for a connection, a UDP
//! socket's for room to send.
//!
//! tokio's `poll_*` readiness functions keep only the waker they were last polled with, so of
//! several tasks waiting that way only the last is woken; were it kept and not polled (a
//! future held past a `select!` that moved on, an `incoming()` stream whose `next()` gave up),
//! the others would wait until it was polled again or dropped. Polled with
//! [`Waiters::waker`], the socket wakes every task waiting: each tries again, one (or more)
//! gets what came, and the others note themselves again and wait on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};

use crate::selector::lock;

/// The operations waiting on one readiness of a socket, and the waker that wakes them all.
pub(crate) struct Waiters {
    list: Arc<List>,
    waker: Waker,
}

/// Each waiting operation's number and waker.
#[derive(Default)]
struct List {
    wakers: Mutex<Vec<(u64, Waker)>>,
    /// The number of the next operation to wait.
    next: AtomicU64,
}

impl Wake for List {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Taken out first and woken once the lock is let go of: a waker woken may note itself
        // again at once, and a wake may drop a task whose operation takes the lock.
        let wakers = std::mem::take(&mut *lock(&self.wakers));
        for (_, waker) in wakers {
            waker.wake();
        }
    }
}

impl Waiters {
    pub(crate) fn new() -> Waiters {
        let list = Arc::new(List::default());
        Waiters {
            waker: Waker::from(Arc::clone(&list)),
            list,
        }
    }

    /// The waker to poll the socket's readiness with: it wakes every waiting operation.
    pub(crate) fn waker(&self) -> &Waker {
        &self.waker
    }

    /// A place among the waiting operations, for one operation; it leaves as it drops.
    pub(crate) fn join(&self) -> Waiting<'_> {
        Waiting {
            list: &self.list,
            number: self.list.next.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// One operation's place among a socket's [`Waiters`].
pub(crate) struct Waiting<'a> {
    list: &'a List,
    number: u64,
}

impl Waiting<'_> {
    /// Notes `waker` as this operation's, to be woken with the others. Called before each poll
    /// of the socket's readiness, so that what comes after the poll wakes this task. A waker
    /// it replaces is dropped once the lock is let go of (its drop may drop a task whose
    /// operation takes the lock).
    pub(crate) fn note(&self, waker: &Waker) {
        let replaced = {
            let mut wakers = lock(&self.list.wakers);
            match wakers.iter_mut().find(|(number, _)| *number == self.number) {
                Some((_, noted)) if noted.will_wake(waker) => None,
                Some((_, noted)) => Some(std::mem::replace(noted, waker.clone())),
                None => {
                    wakers.push((self.number, waker.clone()));
                    None
                }
            }
        };
        drop(replaced);
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        // The waker is dropped once the lock is let go of, as in `note`.
        let removed = {
            let mut wakers = lock(&self.list.wakers);
            let place = wakers.iter().position(|(number, _)| *number == self.number);
            place.map(|place| wakers.swap_remove(place))
        };
        drop(removed);
    }
}
