//! The selector's close (or the end of its runtime) wakes its sockets' pending operations and
//! those waiting for a socket to close. An executor whose tasks only their wakers keep drops a
//! task it can no longer run as it is woken: when that task owns something whose drop closes
//! the selector (a server's guard that closes it on drop), that close runs on the closing
//! thread, inside the close under way. It must return (the selector is closed already), not
//! wait for the close that called it.

use std::sync::Arc;
use std::task::{Context, Waker};

use net_sockets::{SelectorManager, Socket};
use net_tests::loopback::{connected_pair, tcp_listener};
use net_tests::wakes::{Owner, returns};

/// Closes its selector when dropped.
struct CloseOnDrop(SelectorManager);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A selector of `runtime` and a connection through it (the client, the server's end).
fn connection(runtime: &tokio::runtime::Runtime) -> (SelectorManager, Socket, Socket) {
    runtime.block_on(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let (client, server) = connected_pair(&selector, &listener).await;
        (selector, client, server)
    })
}

/// A read of `client` left pending, its task (the read channel and a guard that closes
/// `selector`) owned by the waker only.
fn task_closing_on_drop(client: &mut Socket, selector: &SelectorManager) {
    let mut input = client.open_read_channel().unwrap();
    let owner = Owner::<Box<dyn Send>>::new();
    let waker = Waker::from(Arc::clone(&owner));
    {
        let read = std::pin::pin!(input.read_u8());
        let pending = std::future::Future::poll(read, &mut Context::from_waker(&waker));
        assert!(pending.is_pending(), "nothing to read yet");
    }
    *owner.0.lock().unwrap() = Some(Box::new((input, CloseOnDrop(selector.clone()))));
}

#[test]
fn a_close_whose_wake_drops_a_task_that_closes_the_selector_returns() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (selector, mut client, server) = connection(&runtime);
    task_closing_on_drop(&mut client, &selector);
    let closing = selector.clone();
    if !returns(move || closing.close()) {
        // Left behind: their drops would wait for the deadlocked thread's locks.
        std::mem::forget((runtime, selector, client, server));
        panic!("the close deadlocked: a task it woke closed the selector on its thread");
    }
    assert!(selector.is_closed());
    assert!(client.is_closed() && server.is_closed());
}

#[test]
fn a_runtime_end_whose_wake_drops_a_task_that_closes_the_selector_returns() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (selector, mut client, server) = connection(&runtime);
    task_closing_on_drop(&mut client, &selector);
    if !returns(move || drop(runtime)) {
        std::mem::forget((selector, client, server));
        panic!("the end of the runtime deadlocked: a task its close woke closed the selector");
    }
    assert!(selector.is_closed());
    assert!(client.is_closed() && server.is_closed());
}
