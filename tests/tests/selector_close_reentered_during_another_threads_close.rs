//! A connection's close leaves the selector's count of open connections while it still holds
//! the socket (before the peer can see the end), and that wakes a graceful shutdown waiting
//! for the count. An executor that can no longer run the shutdown's task drops it as it is
//! woken, on the closing thread: when the task owns a guard that closes the selector on drop,
//! that close runs inside the connection's close. If another thread's close of the selector
//! began meanwhile, that close waits to close this connection, which the closing thread holds:
//! the close on the closing thread must not wait for it in turn.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};
use std::time::{Duration, Instant};

use net_sockets::{SelectorManager, ShutdownReport};
use net_tests::loopback::{connected_pair, tcp_listener};
use net_tests::wakes::returns;

/// Closes its selector when dropped.
struct CloseOnDrop(SelectorManager);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

type Shutdown = Pin<Box<dyn Future<Output = ShutdownReport> + Send>>;

/// The waker of a task that only it owns (a graceful shutdown and a guard that closes the
/// selector): its wake first lets another thread begin closing the selector, as a close of
/// another thread could at any moment, then drops the task, as an executor that can no longer
/// run it does.
struct DroppedOnWake {
    task: Mutex<Option<(Shutdown, CloseOnDrop)>>,
    selector: SelectorManager,
}

impl Wake for DroppedOnWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let Some(task) = self.task.lock().unwrap().take() else {
            return;
        };
        let other = self.selector.clone();
        std::thread::spawn(move || other.close());
        let began = Instant::now();
        while !self.selector.is_closed() && began.elapsed() < Duration::from_secs(5) {
            std::thread::yield_now();
        }
        drop(task);
    }
}

#[test]
fn a_selector_close_made_inside_a_connections_close_during_another_threads_close_returns() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let selector = runtime.block_on(async { SelectorManager::new() });
    let (listener, client, server) = runtime.block_on(async {
        let listener = tcp_listener(&selector).await;
        let (client, server) = connected_pair(&selector, &listener).await;
        (listener, client, Arc::new(server))
    });
    let owner = Arc::new(DroppedOnWake {
        task: Mutex::new(None),
        selector: selector.clone(),
    });
    let waker = Waker::from(Arc::clone(&owner));
    let shutting = selector.clone();
    let mut shutdown: Shutdown =
        Box::pin(async move { shutting.shutdown(Duration::from_secs(60)).await });
    assert!(
        shutdown
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending(),
        "the shutdown waits for the connection"
    );
    *owner.task.lock().unwrap() = Some((shutdown, CloseOnDrop(selector.clone())));
    drop(waker);
    let closing = Arc::clone(&server);
    if !returns(move || closing.close()) {
        // Left behind: their drops would wait for the deadlocked threads' locks.
        std::mem::forget((runtime, selector, listener, client, server, owner));
        panic!(
            "deadlock: the connection's close waited for the selector's close of another \
             thread, which waited for the connection's close"
        );
    }
    assert!(selector.is_closed());
    let other_close = selector.clone();
    assert!(
        returns(move || other_close.close()),
        "the other thread's close finished"
    );
    assert!(client.is_closed() && server.is_closed() && listener.is_closed());
}
