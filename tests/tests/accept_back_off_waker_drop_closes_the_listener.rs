//! An `accept` that pauses because the process is out of descriptors, taken over by another
//! task than the one that last waited in it, when that task goes with its last waker and its
//! guard closes the listener.
//!
//! Task A's `accept` pauses (100 ms, `EMFILE`): the listener keeps task A's waker among the
//! accepts that wait for a connection, and the pause (its timer, the waits for the close) holds
//! the others. Task A then stays pending on something else, kept by its wakers only (an
//! executor whose pending tasks only their wakers keep). Task B then polls the same `accept`:
//! the pause takes task B's wakers first, leaving task A's only in the accepts' list, and when
//! the pause is over the accept notes task B there, letting task A's last waker go: task A
//! goes, and its guard closes the listener. That close releases the descriptor before it
//! returns: it must not come while the accept holds the listener for its poll (before, it did:
//! the close waited 50 ms for the listener, stopped the listening, and returned with the
//! descriptor still open).
//!
//! The check runs in a child process (this test binary again) under `ulimit -n 64`, so that the
//! low limit touches nothing else.

use std::fs::File;
use std::future::Future;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use net_sockets::{SelectorManager, Socket};
use net_tests::harness::rerun_self_with_fd_limit;
use net_tests::logs::Loud;
use net_tests::loopback::tcp_listener;
use net_tests::probe::exhaust_descriptors;
use net_tests::wakes::{KeptByWakers, OnDrop, Task, poll_as_another_task, returns};

const CHILD_ENV: &str = "NET_TESTS_ACCEPT_BACK_OFF_WAKER_DROP_CHILD";

/// An `accept` in flight, shared by the tasks that poll it.
type Accept = Pin<Box<dyn Future<Output = net_sockets::Result<Socket>> + Send>>;

/// Before the fix: "task A's close returned with the listener's descriptor still open",
/// left: `Some(false)`, right: `Some(true)`.
#[test]
fn an_accept_taken_over_after_a_pause_lets_the_last_waker_go_outside_the_listener() {
    rerun_self_with_fd_limit(
        "an_accept_taken_over_after_a_pause_lets_the_last_waker_go_outside_the_listener_child",
        CHILD_ENV,
        64,
        "descriptor released",
    );
}

#[test]
fn an_accept_taken_over_after_a_pause_lets_the_last_waker_go_outside_the_listener_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    paused_accept_of_a_task_kept_by_its_wakers();
    println!("descriptor released");
}

/// What `/proc/self/fd/<fd>` links to: `socket:[<inode>]` for a socket.
fn link_of(fd: i32) -> PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap()
}

/// Whether a descriptor of this process links to `link`.
fn holds(link: &PathBuf) -> bool {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|to| to == *link))
}

/// Task A's `accept` pauses, out of descriptors; then only task A's wakers keep task A; task B
/// polls that `accept` until task A is gone: task A's guard must find the listener's
/// descriptor released as its close returns.
fn paused_accept_of_a_task_kept_by_its_wakers() {
    // The pause's warning tells when the accept pauses.
    let logs = Loud::default();
    tracing::subscriber::set_global_default(logs.clone()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let handle = runtime.handle().clone();
    let (selector, listener) = runtime.block_on(async {
        let selector = SelectorManager::new();
        let listener = Arc::new(tcp_listener(&selector).await);
        (selector, listener)
    });
    let link = link_of(listener.with_sock_ref(|s| Ok(s.as_raw_fd())).unwrap());
    // A connection waits in the backlog.
    let _client = std::net::TcpStream::connect(listener.local_address().to_string()).unwrap();
    let released = Arc::new(Mutex::new(None));
    let accepts = Arc::clone(&listener);
    let accept: Accept = Box::pin(async move { accepts.accept().await });
    let accept = Arc::new(Mutex::new(Some(accept)));
    let filler = exhaust_descriptors(|| File::open("/dev/null"));
    // Task A: its accept pauses (polled again at each wake-up until it does, as its executor
    // would: the listener's readiness may come after its first poll); then it waits on
    // nothing that keeps it.
    let woken = Arc::new(AtomicBool::new(false));
    {
        let kept = KeptByWakers::new(&woken);
        let _context = handle.enter();
        let waits = Arc::clone(&accept);
        let paused = Arc::new(AtomicBool::new(false));
        let pausing = Arc::clone(&paused);
        // Closes the listener as task A goes, gives back the descriptors that kept the
        // process out of them, and notes whether the listener's descriptor was released as the
        // close returned.
        let (closes, link, notes) = (Arc::clone(&listener), link.clone(), Arc::clone(&released));
        let guard = OnDrop::new(move || {
            closes.close();
            drop(filler);
            *notes.lock().unwrap() = Some(!holds(&link));
        });
        let mut task: Task = Box::pin(async move {
            std::future::poll_fn(|cx| {
                if pausing.load(Ordering::SeqCst) {
                    return Poll::Ready(());
                }
                let mut accept = waits.lock().unwrap();
                let accept = accept.as_mut().unwrap();
                assert!(
                    accept.as_mut().poll(cx).is_pending(),
                    "accepted out of descriptors"
                );
                Poll::Pending
            })
            .await;
            std::future::pending::<()>().await;
            drop(guard);
        });
        let waker = Waker::from(Arc::clone(&kept));
        for _ in 0..100 {
            woken.store(false, Ordering::SeqCst);
            assert!(
                task.as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending()
            );
            if logs
                .lines()
                .iter()
                .any(|line| line.contains("accept pauses"))
            {
                paused.store(true, Ordering::SeqCst);
                break;
            }
            // Its wake-up: the listener's readiness (bounded wait).
            for _ in 0..5_000 {
                if woken.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        assert!(paused.load(Ordering::SeqCst), "the accept never paused");
        // On to its wait on nothing (the accept is not polled again).
        assert!(
            task.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        *kept.task.lock().unwrap() = Some(task);
    }
    // Only task A's wakers keep it from now on.
    assert!(!listener.is_closed(), "task A went before task B came");
    let polls = Arc::clone(&accept);
    let gone = Arc::clone(&released);
    let returned = returns(move || {
        let _context = handle.enter();
        // Past the accept's pause (100 ms), the accept notes task B among those waiting.
        poll_as_another_task(&polls, 300, Duration::from_millis(10), || {
            gone.lock().unwrap().is_some()
        });
    });
    if !returned {
        std::mem::forget((runtime, selector, listener, accept));
        panic!("task B's polls of the accept never returned");
    }
    assert!(
        listener.is_closed(),
        "task A's last waker outlived task B's polls"
    );
    assert_eq!(
        *released.lock().unwrap(),
        Some(true),
        "task A's close returned with the listener's descriptor still open (the descriptor is \
         released before `close` returns)"
    );
    drop(accept);
    drop(selector);
}
