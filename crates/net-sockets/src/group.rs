//! The connections a listener accepted, as one group: admission control (a cap on open
//! connections, a cap per client address), the "shutdown began" signal, and the bookkeeping a
//! graceful shutdown needs (who is still open, how many finished, how many were cut).

use std::collections::HashMap;
use std::future::poll_fn;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::core::Registered;
use crate::selector::lock;
use crate::stream::Conn;

/// What a graceful shutdown did: how many connections finished within the grace period and how
/// many were still open when it ended and were closed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Connections that closed by themselves within the grace period.
    pub finished: usize,
    /// Connections still open when the grace period ended, closed then.
    pub cut: usize,
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
    /// Connections dropped because their PROXY protocol header was missing, malformed or late.
    pub proxy_header_failures: u64,
}

/// The "shutdown began" signal of a selector, or of a listener (its selector's child).
///
/// A token, cancelled to wake those waiting, and a flag set before any cancellation of it (this
/// drain's own, or its parent's): so a wait that registered once, and is polled again by the
/// same task, costs two atomic loads rather than the token's two locks, which every connection
/// of the listener shares.
#[derive(Clone, Debug)]
pub(crate) struct Drain {
    token: CancellationToken,
    began: Arc<AtomicBool>,
    parent: Option<Arc<AtomicBool>>,
}

impl Drain {
    /// A selector's drain.
    pub(crate) fn new() -> Drain {
        Drain {
            token: CancellationToken::new(),
            began: Arc::new(AtomicBool::new(false)),
            parent: None,
        }
    }

    /// A listener's drain: it begins with its own shutdown or with its selector's.
    pub(crate) fn child(&self) -> Drain {
        debug_assert!(self.parent.is_none(), "one level of children");
        Drain {
            token: self.token.child_token(),
            began: Arc::new(AtomicBool::new(false)),
            parent: Some(Arc::clone(&self.began)),
        }
    }

    /// Begins the shutdown: wakes every wait on this drain and its children.
    pub(crate) fn begin(&self) {
        self.began.store(true, Ordering::Release);
        self.token.cancel();
    }

    /// Whether the shutdown began.
    pub(crate) fn has_begun(&self) -> bool {
        self.began.load(Ordering::Acquire)
            || self
                .parent
                .as_ref()
                .is_some_and(|parent| parent.load(Ordering::Acquire))
    }

    /// Waits until the shutdown began. Cancel safe.
    pub(crate) async fn requested(&self) {
        let mut cancelled = pin!(self.token.cancelled());
        let mut registered = Registered::default();
        poll_fn(|cx| registered.poll(cx, cancelled.as_mut(), || self.has_begun())).await;
    }
}

/// Waits until `open` counts none (`left` is notified each time one leaves), or until `timer`
/// fires: the grace period of a graceful shutdown.
pub(crate) async fn all_leave_or(open: &AtomicUsize, left: &Notify, timer: tokio::time::Sleep) {
    let all_left = async {
        loop {
            let one_left = left.notified();
            if open.load(Ordering::Acquire) == 0 {
                return;
            }
            one_left.await;
        }
    };
    tokio::select! {
        () = all_left => {}
        () = timer => {}
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
    /// Woken when a member leaves.
    left: Notify,
    accepted: AtomicU64,
    refused_per_ip: AtomicU64,
    pub(crate) proxy_header_failures: AtomicU64,
    open: AtomicUsize,
}

#[derive(Debug, Default)]
struct Members {
    next: u64,
    open: HashMap<u64, Weak<Conn>>,
    per_ip: HashMap<IpAddr, usize>,
}

/// A connection's place in its group, released when the connection closes.
#[derive(Debug)]
pub(crate) struct Membership {
    group: Arc<Group>,
    key: u64,
    ip: Option<IpAddr>,
    _slot: Option<OwnedSemaphorePermit>,
}

impl Membership {
    /// The key the group knows this connection by.
    pub(crate) fn key(&self) -> u64 {
        self.key
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        {
            let mut members = lock(&self.group.state);
            members.open.remove(&self.key);
            if let Some(ip) = self.ip {
                if let Some(count) = members.per_ip.get_mut(&ip) {
                    *count -= 1;
                    if *count == 0 {
                        members.per_ip.remove(&ip);
                    }
                }
            }
        }
        self.group.open.fetch_sub(1, Ordering::AcqRel);
        self.group.left.notify_waiters();
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
            left: Notify::new(),
            accepted: AtomicU64::new(0),
            refused_per_ip: AtomicU64::new(0),
            proxy_header_failures: AtomicU64::new(0),
            open: AtomicUsize::new(0),
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

    /// Admits a connection from `ip`, or refuses it when its address is at its cap.
    pub(crate) fn admit(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Option<Membership> {
        let mut members = lock(&self.state);
        if let (Some(ip), Some(limit)) = (ip, self.per_ip_limit) {
            let count = members.per_ip.entry(ip).or_insert(0);
            if *count >= limit {
                drop(members);
                self.refused_per_ip.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            *count += 1;
        }
        let key = members.next;
        members.next += 1;
        drop(members);
        self.open.fetch_add(1, Ordering::AcqRel);
        Some(Membership {
            group: Arc::clone(self),
            key,
            ip: ip.filter(|_| self.per_ip_limit.is_some()),
            _slot: slot,
        })
    }

    /// Records the connection of membership `key`, so a shutdown can close it.
    pub(crate) fn enrol(&self, key: u64, conn: &Arc<Conn>) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        let mut members = lock(&self.state);
        // A connection that closed already left; recording it would only keep a dead entry.
        if !conn.is_closed() {
            members.open.insert(key, Arc::downgrade(conn));
        }
    }

    /// The signal that a shutdown began.
    pub(crate) fn draining(&self) -> &Drain {
        &self.draining
    }

    pub(crate) fn stats(&self) -> ListenerStats {
        ListenerStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            open: self.open.load(Ordering::Acquire),
            refused_per_ip: self.refused_per_ip.load(Ordering::Relaxed),
            proxy_header_failures: self.proxy_header_failures.load(Ordering::Relaxed),
        }
    }

    /// Signals every member that shutdown began, waits up to `grace` for them to close, then
    /// closes the rest.
    pub(crate) async fn drain(&self, grace: Duration, timer: tokio::time::Sleep) -> ShutdownReport {
        // Counted before the signal: a connection that closes as the signal wakes it (on
        // another thread, before this one reads on) finished within the grace period.
        let at_start = self.open.load(Ordering::Acquire);
        self.draining.begin();
        all_leave_or(&self.open, &self.left, timer).await;
        let remaining: Vec<Arc<Conn>> = lock(&self.state)
            .open
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        let cut = remaining.len();
        for conn in remaining {
            conn.close();
        }
        tracing::debug!(
            finished = at_start.saturating_sub(cut),
            cut,
            ?grace,
            "shutdown drained"
        );
        ShutdownReport {
            finished: at_start.saturating_sub(cut),
            cut,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
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

    /// A wait made after the start completes at once.
    #[test]
    fn a_wait_after_the_start_completes_at_once() {
        let drain = Drain::new();
        let child = drain.child();
        drain.begin();
        let (waker, _) = counting();
        assert!(poll_once(pin!(child.requested()), &waker));
    }
}
