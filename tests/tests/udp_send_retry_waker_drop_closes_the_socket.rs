//! A UDP send that tries again every millisecond (its socket's readiness stuck after an ICMP
//! error, its send buffer full), taken over by another task than the one that last waited in
//! it, when that task goes with its last waker and its guard closes the socket.
//!
//! Task A's send waits out its pause: the socket keeps task A's waker among the sends that wait
//! for room, and the pause (its timer, the wait for the close) holds the others. Task A then
//! stays pending on something else, kept by its wakers only (an executor whose pending tasks
//! only their wakers keep). Task B then polls the same send: the pause takes task B's wakers
//! first, leaving task A's only in the sends' list, and when the pause is over the send notes
//! task B there, letting task A's last waker go: task A goes, and its guard closes the socket.
//! That close releases the descriptor before it returns: it must not come while the send holds
//! the socket for its poll (before, it did: the close waited 50 ms for the socket, and returned
//! with the port still bound).
//!
//! Runs on a loopback slowed to 4 Mbit/s, in a network namespace of its own, so that sends
//! wait for room.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use net_sockets::{Datagram, SelectorManager, SocketAddress, a_socket};
use net_tests::wakes::{KeptByWakers, OnDrop, Task, poll_as_another_task, returns};

const SLOW_LOOPBACK: &str = "NET_TESTS_UDP_SEND_RETRY_WAKER_DROP_CLOSES_THE_SOCKET";

/// A send in flight, shared by the tasks that poll it.
type Sending = Pin<Box<dyn Future<Output = net_sockets::Result<()>> + Send>>;

/// Before the fix: "task A's close returned with the socket's port still bound", left:
/// `Some(false)`, right: `Some(true)`.
#[test]
fn a_stuck_send_taken_over_by_another_task_lets_the_last_waker_go_outside_the_socket() {
    net_tests::harness::rerun_self_on_slow_loopback(
        "a_stuck_send_taken_over_by_another_task_lets_the_last_waker_go_outside_the_socket_child",
        SLOW_LOOPBACK,
        "4mbit",
        "port freed",
    );
}

#[test]
fn a_stuck_send_taken_over_by_another_task_lets_the_last_waker_go_outside_the_socket_child() {
    if std::env::var_os(SLOW_LOOPBACK).is_none() {
        return;
    }
    stuck_send_of_a_task_kept_by_its_wakers();
    println!("port freed");
}

/// Task A's send waits (its readiness stuck, the buffer full), then only task A's wakers keep
/// task A; task B polls that send until task A is gone: task A's guard must find the port
/// free as its close returns.
fn stuck_send_of_a_task_kept_by_its_wakers() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let handle = runtime.handle().clone();
    let (gone_address, _reserved) = net_tests::loopback::unbound_udp_address();
    let (selector, udp, _back) = runtime.block_on(async {
        let selector = SelectorManager::new();
        let udp = a_socket(&selector)
            .udp()
            .send_buffer_size(4_096)
            .connect(gone_address.clone())
            .await
            .unwrap();
        udp.send(Datagram::new("anyone?", gone_address.clone()).unwrap())
            .await
            .unwrap();
        let refused = net_tests::within(udp.receive()).await.unwrap_err();
        assert_eq!(
            refused.kind(),
            io::ErrorKind::ConnectionRefused,
            "{refused:?}"
        );
        // Someone listens there now: no more ICMP errors, the sends go and fill the buffer.
        let back = a_socket(&selector)
            .udp()
            .bind(gone_address.clone())
            .await
            .unwrap();
        (selector, Arc::new(udp), back)
    });
    let SocketAddress::Inet(local) = udp.local_address() else {
        panic!("a UDP socket bound to {:?}", udp.local_address());
    };
    let local = local.socket_addr();
    let freed = Arc::new(Mutex::new(None));
    // Task A: its send waits (tried again until one does); then it waits on nothing that
    // keeps it.
    let mut waiting = None;
    for _ in 0..1_000 {
        let sends = Arc::clone(&udp);
        let datagram = Datagram::new(vec![0; 1_000], gone_address.clone()).unwrap();
        let send: Sending = Box::pin(async move { sends.send(datagram).await });
        let send = Arc::new(Mutex::new(Some(send)));
        let pended = Arc::new(AtomicBool::new(false));
        let woken = Arc::new(AtomicBool::new(false));
        let kept = KeptByWakers::new(&woken);
        let _context = handle.enter();
        let waits = Arc::clone(&send);
        let noted = Arc::clone(&pended);
        let (closes, freed) = (Arc::clone(&udp), Arc::clone(&freed));
        let mut task: Task = Box::pin(async move {
            let sent = std::future::poll_fn(|cx| {
                let mut send = waits.lock().unwrap();
                Poll::Ready(send.as_mut().unwrap().as_mut().poll(cx).is_ready())
            })
            .await;
            if sent {
                // The socket had room: the next send tries.
                return;
            }
            // Closes the socket as task A goes, and notes whether the port was free as the
            // close returned.
            let guard = OnDrop::new(move || {
                closes.close();
                *freed.lock().unwrap() = Some(std::net::UdpSocket::bind(local).is_ok());
            });
            noted.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await;
            drop(guard);
        });
        let waker = Waker::from(Arc::clone(&kept));
        let polled = task.as_mut().poll(&mut Context::from_waker(&waker));
        if pended.load(Ordering::SeqCst) {
            assert!(polled.is_pending());
            *kept.task.lock().unwrap() = Some(task);
            waiting = Some(send);
            break;
        }
    }
    let send = waiting.expect("no send ever waited for room");
    // Only task A's wakers keep it from now on.
    assert!(!udp.is_closed(), "task A went before task B came");
    let polls = Arc::clone(&send);
    let gone = Arc::clone(&freed);
    let returned = returns(move || {
        let _context = handle.enter();
        // Past the send's pause (a millisecond), the send notes task B among those waiting.
        poll_as_another_task(&polls, 1_000, Duration::from_millis(2), || {
            gone.lock().unwrap().is_some()
        });
    });
    if !returned {
        std::mem::forget((runtime, selector, udp, send));
        panic!("task B's polls of the send never returned");
    }
    assert!(
        udp.is_closed(),
        "task A's last waker outlived task B's polls"
    );
    assert_eq!(
        *freed.lock().unwrap(),
        Some(true),
        "task A's close returned with the socket's port still bound (the descriptor is \
         released before `close` returns)"
    );
    drop(send);
    drop(selector);
}
