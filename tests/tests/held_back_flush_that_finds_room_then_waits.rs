//! A flush of held-back answers (flush coalescing) by another task than the one that last
//! waited on the write channel for room, at a moment when the socket has some room again, but
//! not enough for everything held back.
//!
//! Task A's flush waited for room: the connection's wait for its close keeps task A's waker.
//! The socket's room then comes back (the peer reads a little), which wakes task A's wait for
//! room; task A runs, and stays pending on something else, kept by its wakers only (an
//! executor whose pending tasks only their wakers keep). Task B then flushes: it finds room,
//! sends part of what is held back under the lock of the held-back bytes, and must wait for
//! the rest, which puts its waker in the place of task A's. As the last of task A's wakers
//! goes, task A goes, and its guard closes the socket: that close takes the lock of the
//! held-back bytes, so it must not come while the flush holds it.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use net_sockets::{SelectorManager, a_socket};
use net_tests::wakes::{CloseOnDrop, KeptByWakers, Task, returns};
use tokio::io::AsyncReadExt;

/// Without `socket_timeout`: task A's waker is kept by the connection's wait for its close.
#[test]
fn a_held_back_flush_that_finds_some_room_then_waits_lets_the_other_tasks_wakers_go() {
    flush_finding_some_room(None);
}

/// With `socket_timeout`: its timer keeps task A's waker too.
#[test]
fn a_held_back_flush_that_finds_some_room_then_waits_lets_the_timers_waker_go_too() {
    flush_finding_some_room(Some(Duration::from_secs(600)));
}

/// Task A's flush waits for room; the peer reads a little, which wakes it; task B's flush
/// then finds some room, and must wait for the rest: it must return, task A gone and the
/// socket closed by task A's guard.
fn flush_finding_some_room(socket_timeout: Option<Duration>) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (selector, listener, mut peer, input, server, output) = runtime.block_on(async {
        let selector = SelectorManager::new();
        let mut builder = a_socket(&selector).tcp().send_buffer_size(4096);
        if let Some(timeout) = socket_timeout {
            builder = builder.socket_timeout(timeout);
        }
        let listener = builder.bind(("127.0.0.1", 0)).await.unwrap();
        let (peer, server, input, output) = net_tests::fault::held_back_answers(&listener).await;
        (
            selector,
            listener,
            peer,
            input,
            Arc::new(server),
            Arc::new(Mutex::new(output)),
        )
    });
    let handle = runtime.handle().clone();
    // Task A: its flush waits for room; then it waits on nothing that keeps it.
    let woken = Arc::new(AtomicBool::new(false));
    let kept = KeptByWakers::new(&woken);
    {
        let _context = handle.enter();
        let waits = Arc::clone(&output);
        let guard = CloseOnDrop(Arc::clone(&server));
        let task: Task = Box::pin(async move {
            std::future::poll_fn(|cx| {
                let mut output = waits.lock().unwrap();
                let flush = pin!(output.flush());
                assert!(
                    flush.poll(cx).is_pending(),
                    "the socket took 60 KB a peer never reads"
                );
                Poll::Ready(())
            })
            .await;
            std::future::pending::<()>().await;
            drop(guard);
        });
        kept.start(task);
    }
    // Only task A's wakers keep it from now on.
    drop(kept);
    // The peer reads a little: the socket has room again, which wakes task A's wait for it.
    runtime.block_on(async {
        let start = Instant::now();
        let mut buf = [0; 1024];
        while !woken.load(Ordering::SeqCst) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the socket's room never woke task A"
            );
            let read = tokio::time::timeout(Duration::from_millis(20), peer.read(&mut buf)).await;
            if let Ok(read) = read {
                assert!(read.unwrap() > 0, "the server ended its sending");
            }
        }
    });
    assert!(!server.is_closed());
    let flushes = Arc::clone(&output);
    let returned = returns(move || {
        let _context = handle.enter();
        let mut output = flushes.lock().unwrap();
        let flush = pin!(output.flush());
        let _ = flush.poll(&mut Context::from_waker(Waker::noop()));
    });
    if !returned {
        // Left behind: their drops would wait for the deadlocked thread's locks.
        std::mem::forget((runtime, selector, listener, peer, input, server, output));
        panic!(
            "the flush never returned: the close of the task whose last waker it replaced \
             waited for the lock of the held-back bytes, which the flush held"
        );
    }
    assert!(
        server.is_closed(),
        "the flush let go of task A's last waker: its guard closed the socket"
    );
}
