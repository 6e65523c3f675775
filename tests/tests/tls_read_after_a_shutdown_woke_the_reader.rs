//! A TLS read by another task than the one that last waited on the read channel, after the
//! write channel's shutdown woke that task.
//!
//! Task A's read waits: the socket keeps task A's wakers (its readiness, the wait for its
//! close), and the session notes task A as its reader. The write channel's shutdown then takes
//! in what the socket holds, and wakes the reader it noted; task A runs, and stays pending on
//! something else, kept by its wakers only (an executor whose pending tasks only their wakers
//! keep). Task B then reads the channel: under the session's lock, the socket puts task B's
//! wakers in place of task A's. As the last of them goes, task A goes, and its guard closes the
//! TLS socket, whose close takes the session's lock: it must not come while the read holds it.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use net_sockets::SelectorManager;
use net_tests::loopback::tcp_listener;
use net_tests::pki::Pki;
use net_tests::wakes::{CloseOnDrop, KeptByWakers, Task, returns};

#[test]
fn a_tls_read_after_a_shutdown_woke_the_last_reader_lets_its_wakers_go_outside_the_session_lock() {
    let pki = Pki::generate();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (selector, listener, server, client, input, output) = runtime.block_on(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let (server, mut client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
        let input = client.open_read_channel().unwrap();
        let output = client.open_write_channel(false).unwrap();
        (
            selector,
            listener,
            server,
            Arc::new(client),
            Arc::new(Mutex::new(input)),
            output,
        )
    });
    let handle = runtime.handle().clone();
    // Task A: its read waits; then it waits on nothing that keeps it.
    let woken = Arc::new(AtomicBool::new(false));
    {
        let kept = KeptByWakers::new(&woken);
        let _context = handle.enter();
        let waits = Arc::clone(&input);
        let guard = CloseOnDrop(Arc::clone(&client));
        let task: Task = Box::pin(async move {
            std::future::poll_fn(|cx| {
                let mut input = waits.lock().unwrap();
                let read = pin!(input.read_u8());
                assert!(read.poll(cx).is_pending(), "nothing was sent");
                Poll::Ready(())
            })
            .await;
            std::future::pending::<()>().await;
            drop(guard);
        });
        kept.start(task);
    }
    // The write channel's shutdown wakes the reader the session noted: task A.
    let mut output = output;
    runtime
        .block_on(net_tests::within(output.flush_and_close()))
        .unwrap();
    assert!(woken.load(Ordering::SeqCst), "the shutdown woke task A");
    assert!(!client.is_closed());
    let reads = Arc::clone(&input);
    let returned = returns(move || {
        let _context = handle.enter();
        let mut input = reads.lock().unwrap();
        let read = pin!(input.read_u8());
        let _ = read.poll(&mut Context::from_waker(Waker::noop()));
    });
    if !returned {
        // Left behind: their drops would wait for the deadlocked thread's locks.
        std::mem::forget((runtime, selector, listener, server, client, input, output));
        panic!(
            "the read never returned: the close of the task whose last waker it replaced \
             waited for the session's lock, which the read held"
        );
    }
    assert!(
        client.is_closed(),
        "the read let go of task A's last waker: its guard closed the socket"
    );
}
