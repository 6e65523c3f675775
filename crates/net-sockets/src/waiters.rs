//! Several tasks waiting on one readiness of a socket: a listener's for a connection, a UDP
//! socket's for room to send.
//!
//! tokio's `poll_*` readiness functions keep only the waker they were last polled with, so of
//! several tasks waiting that way only the last is woken; were it kept and not polled (a
//! future held past a `select!` that moved on, an `incoming()` stream whose `next()` gave up),
//! the others would wait until it was polled again or dropped. Polled with
//! [`Waiters::waker`], the socket wakes every task waiting: each tries again, one (or more)
//! gets what came, and the others note themselves again and wait on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};

use crate::selector::{lock, wake_all};

/// The operations waiting on one readiness of a socket, and the waker that wakes them all.
pub(crate) struct Waiters {
    list: Arc<List>,
    waker: Waker,
}

/// The waiting operations' wakers.
#[derive(Default)]
struct List {
    places: Mutex<Places>,
}

/// Each waiting operation's place, which it takes as it first notes its waker and gives back as
/// it drops: a note and a leave find it at once, however many wait (thousands may: the tasks
/// of a UDP server sending on one socket whose buffer is full). The free places are reused, so
/// it holds as many as ever waited at once.
#[derive(Default)]
struct Places {
    /// The waker of each place: `None` while the place is free, or its operation has not noted
    /// itself again since a wake took its waker.
    wakers: Vec<Option<Waker>>,
    /// The free places.
    free: Vec<usize>,
}

/// The place of a [`Waiting`] that has noted no waker yet.
const NO_PLACE: usize = usize::MAX;

impl Wake for List {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Taken out first and woken once the lock is let go of: a waker woken may note itself
        // again at once, and a wake may drop a task whose operation takes the lock.
        let wakers: Vec<Waker> = lock(&self.places)
            .wakers
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        wake_all(wakers);
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

    /// A place among the waiting operations, for one operation (taken as it first notes its
    /// waker); it leaves as it drops.
    pub(crate) fn join(&self) -> Waiting<'_> {
        Waiting {
            list: &self.list,
            place: AtomicUsize::new(NO_PLACE),
        }
    }
}

/// One operation's place among a socket's [`Waiters`].
pub(crate) struct Waiting<'a> {
    list: &'a List,
    /// Its index in [`Places::wakers`], or [`NO_PLACE`]; read and written under the lock of
    /// the places (atomic only so that the operation's future stays `Sync`).
    place: AtomicUsize,
}

impl Waiting<'_> {
    /// Notes `waker` as this operation's, to be woken with the others. Called before each poll
    /// of the socket's readiness, so that what comes after the poll wakes this task. A waker
    /// it replaces is dropped once the lock is let go of (its drop may drop a task whose
    /// operation takes the lock).
    pub(crate) fn note(&self, waker: &Waker) {
        let replaced = {
            let mut places = lock(&self.list.places);
            let places = &mut *places;
            let mut place = self.place.load(Ordering::Relaxed);
            if place == NO_PLACE {
                place = places.free.pop().unwrap_or_else(|| {
                    places.wakers.push(None);
                    places.wakers.len() - 1
                });
                self.place.store(place, Ordering::Relaxed);
            }
            match &mut places.wakers[place] {
                Some(noted) if noted.will_wake(waker) => None,
                noted => noted.replace(waker.clone()),
            }
        };
        drop(replaced);
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let place = *self.place.get_mut();
        if place == NO_PLACE {
            return;
        }
        // The waker is dropped once the lock is let go of, as in `note`.
        let removed = {
            let mut places = lock(&self.list.places);
            places.free.push(place);
            places.wakers[place].take()
        };
        drop(removed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::time::{Duration, Instant};

    use super::*;

    /// A task's waker: counts its wake-ups.
    struct Task(AtomicUsize);

    impl Wake for Task {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// 40,000 operations waiting on one socket at once (a UDP server's tasks sending on one
    /// socket whose buffer is full, the accepts of many tasks on one listener): each noting its
    /// waker, all woken and each noting itself again (as each does on its next poll), and all
    /// leaving (a close) take a few milliseconds together, as the wake-ups themselves do.
    /// Before, each note and each leave searched a list of all the others, under the lock:
    /// 20,000 cost 3 s of a debug build (a third of a second optimized), 40,000 four times
    /// that, and every wake of them all (each time the socket had room, or a connection came)
    /// cost most of it again. Now 40,000 take tens of milliseconds: the 2 s bound is far from
    /// both, whatever the machine's load.
    #[test]
    fn a_wake_and_a_close_of_many_waiters_cost_each_one_a_constant_time() {
        const WAITING: usize = 40_000;
        let waiters = Waiters::new();
        let tasks: Vec<_> = (0..WAITING)
            .map(|_| Arc::new(Task(AtomicUsize::new(0))))
            .collect();
        let wakers: Vec<_> = tasks.iter().map(|task| Waker::from(task.clone())).collect();
        let places: Vec<_> = (0..WAITING).map(|_| waiters.join()).collect();
        let start = Instant::now();
        for (place, waker) in places.iter().zip(&wakers) {
            place.note(waker);
        }
        waiters.waker().wake_by_ref();
        for (place, waker) in places.iter().zip(&wakers) {
            place.note(waker);
        }
        drop(places);
        let spent = start.elapsed();
        assert!(
            tasks.iter().all(|task| task.0.load(Ordering::Relaxed) == 1),
            "every waiting operation woken once"
        );
        // A waker left behind by a place that left would be woken here.
        waiters.waker().wake_by_ref();
        assert!(
            tasks.iter().all(|task| task.0.load(Ordering::Relaxed) == 1),
            "a place that left is woken no more"
        );
        assert!(
            spent < Duration::from_secs(2),
            "{spent:?} to note, wake, note again and leave {WAITING} waiting operations"
        );
    }

    /// Places given back are taken again: operations that wait one after another, however
    /// many, hold as many places as ever waited at once.
    #[test]
    fn places_given_back_are_taken_again() {
        let waiters = Waiters::new();
        let waker = Waker::from(Arc::new(Task(AtomicUsize::new(0))));
        let held: Vec<_> = (0..3).map(|_| waiters.join()).collect();
        held.iter().for_each(|waiting| waiting.note(&waker));
        for _ in 0..1000 {
            let waiting = waiters.join();
            waiting.note(&waker);
            waiters.waker().wake_by_ref();
            waiting.note(&waker);
        }
        drop(held);
        let places = lock(&waiters.list.places);
        assert_eq!(
            places.wakers.len(),
            4,
            "places for the most that waited at once"
        );
        assert!(
            places.wakers.iter().all(Option::is_none),
            "every waker let go of"
        );
    }
}
