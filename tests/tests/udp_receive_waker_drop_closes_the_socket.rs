//! A UDP receive polled by another task than the one that last waited on it, and a receive
//! abandoned on another thread, when that task goes with its last waker and its guard closes
//! the socket.
//!
//! Task A's receive waits: the socket keeps task A's wakers (tokio's readiness, the wait for
//! the close) and, under the lock of its waiting receives, the receive itself, which it polls
//! under that lock. Task A then stays pending on something else, kept by its wakers only (an
//! executor whose pending tasks only their wakers keep). Task B then polls the same receive,
//! or drops it: task B's wakers take the place of task A's, or go with the receive, and as the
//! last of task A's goes, task A goes, and its guard closes the socket. That close takes the
//! lock of the waiting receives: it must not come while the receive's poll holds that lock.
//! And it releases the descriptor before it returns: it must not come while the receive being
//! dropped still holds the socket (before, it came from tokio's readiness as the receive was
//! dropped, waited 50 ms for the socket, and returned with the port still bound).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use net_sockets::{
    BoundDatagramSocket, ConnectedDatagramSocket, Datagram, Error, SelectorManager, SocketAddress,
    a_socket,
};
use net_tests::wakes::{KeptByWakers, OnDrop, Task, returns};

/// A receive in flight, shared by the tasks that poll it.
type Receive = Pin<Box<dyn Future<Output = net_sockets::Result<Datagram>> + Send>>;

/// Which receive task A waits in.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// `receive()` on a socket bound to an address.
    Bound,
    /// `receive()` on a connected socket.
    Connected,
    /// The next item of `incoming()` on a bound socket.
    Incoming,
}

/// The socket under test.
#[derive(Clone)]
enum Udp {
    Bound(Arc<BoundDatagramSocket>),
    Connected(Arc<ConnectedDatagramSocket>),
}

impl Udp {
    fn receive(&self, kind: Kind) -> Receive {
        match (kind, self.clone()) {
            (Kind::Incoming, Udp::Bound(socket)) => {
                let mut incoming = socket.incoming();
                Box::pin(async move {
                    std::future::poll_fn(|cx| {
                        futures_core::Stream::poll_next(Pin::new(&mut incoming), cx)
                    })
                    .await
                    .unwrap_or(Err(Error::Closed))
                })
            }
            (_, Udp::Bound(socket)) => Box::pin(async move { socket.receive().await }),
            (_, Udp::Connected(socket)) => Box::pin(async move { socket.receive().await }),
        }
    }

    fn close(&self) {
        match self {
            Udp::Bound(socket) => socket.close(),
            Udp::Connected(socket) => socket.close(),
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Udp::Bound(socket) => socket.is_closed(),
            Udp::Connected(socket) => socket.is_closed(),
        }
    }

    fn local(&self) -> SocketAddr {
        let local = match self {
            Udp::Bound(socket) => socket.local_address(),
            Udp::Connected(socket) => socket.local_address(),
        };
        let SocketAddress::Inet(local) = local else {
            panic!("a UDP socket bound to {local:?}");
        };
        local.socket_addr()
    }
}

/// What task B does to task A's receive.
#[derive(Clone, Copy, Debug)]
enum Then {
    /// Polls it with its own waker.
    Polls,
    /// Drops it, abandoned before it took a datagram.
    Drops,
}

#[test]
fn a_bound_sockets_receive_polled_by_another_task_lets_the_last_waker_go_outside_its_lock() {
    receive_of_a_task_kept_by_its_wakers(Kind::Bound, Then::Polls);
}

#[test]
fn a_connected_sockets_receive_polled_by_another_task_lets_the_last_waker_go_outside_its_lock() {
    receive_of_a_task_kept_by_its_wakers(Kind::Connected, Then::Polls);
}

#[test]
fn an_incoming_streams_receive_polled_by_another_task_lets_the_last_waker_go_outside_its_lock() {
    receive_of_a_task_kept_by_its_wakers(Kind::Incoming, Then::Polls);
}

#[test]
fn a_bound_sockets_receive_dropped_by_another_task_lets_the_last_waker_go_outside_its_lock() {
    receive_of_a_task_kept_by_its_wakers(Kind::Bound, Then::Drops);
}

#[test]
fn a_connected_sockets_receive_dropped_by_another_task_lets_the_last_waker_go_outside_its_lock() {
    receive_of_a_task_kept_by_its_wakers(Kind::Connected, Then::Drops);
}

/// Task A's receive waits, then only task A's wakers keep task A; task B polls (or drops) that
/// receive: it must return, task A gone and the socket closed by task A's guard, its port
/// free as that close returned.
fn receive_of_a_task_kept_by_its_wakers(kind: Kind, then: Then) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The connected socket's peer, which sends nothing.
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (selector, udp) = runtime.block_on(async {
        let selector = SelectorManager::new();
        let builder = a_socket(&selector).udp();
        let udp = match kind {
            Kind::Bound | Kind::Incoming => {
                Udp::Bound(Arc::new(builder.bind(("127.0.0.1", 0)).await.unwrap()))
            }
            Kind::Connected => Udp::Connected(Arc::new(
                builder.connect(peer.local_addr().unwrap()).await.unwrap(),
            )),
        };
        (selector, udp)
    });
    let local = udp.local();
    let handle = runtime.handle().clone();
    let receive = Arc::new(Mutex::new(Some(udp.receive(kind))));
    let freed = Arc::new(Mutex::new(None));
    // Task A: its receive waits; then it waits on nothing that keeps it.
    let woken = Arc::new(AtomicBool::new(false));
    {
        let kept = KeptByWakers::new(&woken);
        let _context = handle.enter();
        let waits = Arc::clone(&receive);
        // Closes the socket as task A goes, and notes whether the port was free as the close
        // returned.
        let (closes, notes) = (udp.clone(), Arc::clone(&freed));
        let guard = OnDrop::new(move || {
            closes.close();
            *notes.lock().unwrap() = Some(std::net::UdpSocket::bind(local).is_ok());
        });
        let task: Task = Box::pin(async move {
            std::future::poll_fn(|cx| {
                let mut receive = waits.lock().unwrap();
                let receive = receive.as_mut().unwrap();
                assert!(receive.as_mut().poll(cx).is_pending(), "nothing was sent");
                Poll::Ready(())
            })
            .await;
            std::future::pending::<()>().await;
            drop(guard);
        });
        kept.start(task);
    }
    // Only task A's wakers keep it from now on.
    assert!(!udp.is_closed(), "task A went before task B came");
    let polls = Arc::clone(&receive);
    let returned = returns(move || {
        let _context = handle.enter();
        let mut receive = polls.lock().unwrap();
        match then {
            Then::Polls => {
                let polled = receive.as_mut().unwrap().as_mut();
                let _ = polled.poll(&mut Context::from_waker(Waker::noop()));
            }
            Then::Drops => drop(receive.take()),
        }
    });
    if !returned {
        // Left behind: their drops would wait for the deadlocked thread's locks.
        std::mem::forget((runtime, selector, udp, receive, peer));
        panic!(
            "task B's receive ({kind:?}, {then:?}) never returned: the close of task A, whose \
             last waker it let go of, waited for the lock of the socket's waiting receives, \
             which that receive held"
        );
    }
    assert!(
        udp.is_closed(),
        "task A's last waker outlived task B's receive ({kind:?}, {then:?})"
    );
    assert_eq!(
        *freed.lock().unwrap(),
        Some(true),
        "task A's close ({kind:?}, {then:?}) returned with the socket's port still bound (the \
         descriptor is released before `close` returns)"
    );
    if let Some(receive) = receive.lock().unwrap().as_mut() {
        let polled = receive
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()));
        assert!(
            matches!(polled, Poll::Ready(Err(Error::Closed))),
            "{polled:?} from the receive of a closed socket ({kind:?})"
        );
    }
    drop(selector);
}
