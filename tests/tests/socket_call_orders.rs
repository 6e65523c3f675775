//! Call orders of a socket's API that a user may make in any order.
//!
//! - A task woken by a socket's close (a read of its channel waiting, an `await_closed`, a
//!   listener's `accept`) whose executor drops it as it is woken (one whose tasks only their
//!   wakers keep), when the task owns a guard that closes the same socket as it is dropped:
//!   that `close` runs on the closing thread, inside the close under way, finds the socket
//!   closed, and must return (the descriptor is released already), not wait for the close that
//!   called it. Before, the close woke its waiters while it still held the lock a second close
//!   waits on: `close()` never returned (plain and TLS sockets, listeners alike; the selector's
//!   close wakes them before that lock is taken, and returned).
//! - The same when what the close wakes is a graceful shutdown (of the listener that accepted
//!   the connection, or of its selector) waiting for its connections: the connection leaves
//!   the shutdown's count, which wakes it, as its descriptor is released, under that lock; and
//!   when the guard closes the selector instead, whose close closes that socket too. A close
//!   made by the close under way, on its thread, returns at once (that close releases the
//!   descriptor as it returns). Before, `close()` never returned there either.

use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

use net_sockets::{SelectorManager, ServerSocket, Socket, Transport};
use net_tests::loopback::{connected_pair, tcp_listener};
use net_tests::pki::Pki;
use net_tests::wakes::{Owner, Task, returns};

/// What the test closes: a connection (plain or TLS) or a listener.
trait Closable: Send + Sync + 'static {
    fn close(&self);
    fn is_closed(&self) -> bool;
}

impl<T: Transport> Closable for Socket<T> {
    fn close(&self) {
        Socket::close(self);
    }

    fn is_closed(&self) -> bool {
        Socket::is_closed(self)
    }
}

impl Closable for ServerSocket {
    fn close(&self) {
        ServerSocket::close(self);
    }

    fn is_closed(&self) -> bool {
        ServerSocket::is_closed(self)
    }
}

/// Closes its socket when dropped (a connection's or a server's guard).
struct CloseOnDrop(Arc<dyn Closable>);

impl Closable for SelectorManager {
    fn close(&self) {
        SelectorManager::close(self);
    }

    fn is_closed(&self) -> bool {
        SelectorManager::is_closed(self)
    }
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Leaves `task` pending, owned by its waker only, with a guard that closes `socket` when the
/// task is dropped.
fn pending_task_closing_on_drop(socket: Arc<dyn Closable>, task: Task, case: &str) {
    let guard = CloseOnDrop(socket);
    let mut task: Task = Box::pin(async move {
        task.await;
        drop(guard);
    });
    let owner = Owner::<Task>::new();
    let waker = Waker::from(Arc::clone(&owner));
    let polled = task.as_mut().poll(&mut Context::from_waker(&waker));
    assert!(polled.is_pending(), "{case}: nothing to wait for");
    *owner.0.lock().unwrap() = Some(task);
}

/// What a case closes, and what its woken task waits for.
#[derive(Clone, Copy, Debug)]
enum Case {
    /// A plain connection; its task reads its read channel.
    PlainRead,
    /// A plain connection; its task waits in `await_closed`.
    PlainAwaitClosed,
    /// A TLS connection; its task reads its read channel.
    TlsRead,
    /// A TLS connection; its task waits in `await_closed`.
    TlsAwaitClosed,
    /// A listener; its task waits in `accept`.
    ListenerAccept,
    /// A listener; its task waits in `await_closed`.
    ListenerAwaitClosed,
}

/// Makes the case's socket, leaves its task pending; returns the selector, the socket, and
/// what must live as long as the test (the listener, the peer).
async fn set_up(
    case: Case,
    pki: &Pki,
) -> (SelectorManager, Arc<dyn Closable>, Box<dyn Send + Sync>) {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let name = format!("{case:?}");
    match case {
        Case::PlainRead | Case::PlainAwaitClosed => {
            let (mut client, server) = connected_pair(&selector, &listener).await;
            let mut input = client.open_read_channel().unwrap();
            let client = Arc::new(client);
            let task: Task = if matches!(case, Case::PlainRead) {
                Box::pin(async move {
                    let _ = input.read_u8().await;
                })
            } else {
                let waits = Arc::clone(&client);
                Box::pin(async move {
                    waits.await_closed().await;
                    drop(input);
                })
            };
            pending_task_closing_on_drop(client.clone(), task, &name);
            (selector, client, Box::new((listener, server)))
        }
        Case::TlsRead | Case::TlsAwaitClosed => {
            let (server, mut client) = net_tests::tls::pair_of(&selector, &listener, pki).await;
            let mut input = client.open_read_channel().unwrap();
            let client = Arc::new(client);
            let task: Task = if matches!(case, Case::TlsRead) {
                Box::pin(async move {
                    let _ = input.read_u8().await;
                })
            } else {
                let waits = Arc::clone(&client);
                Box::pin(async move {
                    waits.await_closed().await;
                    drop(input);
                })
            };
            pending_task_closing_on_drop(client.clone(), task, &name);
            (selector, client, Box::new((listener, server)))
        }
        Case::ListenerAccept | Case::ListenerAwaitClosed => {
            let listener = Arc::new(listener);
            let waits = Arc::clone(&listener);
            let task: Task = if matches!(case, Case::ListenerAccept) {
                Box::pin(async move {
                    let _ = waits.accept().await;
                })
            } else {
                Box::pin(async move { waits.await_closed().await })
            };
            pending_task_closing_on_drop(listener.clone(), task, &name);
            (selector, listener, Box::new(()))
        }
    }
}

#[test]
fn a_close_whose_wake_drops_a_task_that_closes_the_same_socket_returns() {
    let pki = Pki::generate();
    let mut deadlocked = Vec::new();
    for case in [
        Case::PlainRead,
        Case::PlainAwaitClosed,
        Case::TlsRead,
        Case::TlsAwaitClosed,
        Case::ListenerAccept,
        Case::ListenerAwaitClosed,
    ] {
        for by_selector in [false, true] {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            let (selector, socket, kept) = runtime.block_on(set_up(case, &pki));
            let closing = (selector.clone(), Arc::clone(&socket));
            let returned = returns(move || {
                if by_selector {
                    closing.0.close();
                } else {
                    closing.1.close();
                }
            });
            if !returned {
                // Left behind: their drops would wait for the deadlocked thread's locks.
                std::mem::forget((runtime, selector, socket, kept));
                deadlocked.push(format!("{case:?}, by the selector: {by_selector}"));
                continue;
            }
            assert!(
                socket.is_closed(),
                "{case:?}, by the selector: {by_selector}"
            );
        }
    }
    assert!(
        deadlocked.is_empty(),
        "the close never returned (a task it woke closed the same socket on its thread): \
         {deadlocked:?}"
    );
}

/// A graceful shutdown of a listener (or of the selector) waits for its connections; the close
/// of one of them wakes it as the connection leaves the counts, just before its descriptor
/// goes. When that wake drops the shutdown's task (owned by its waker only) with a guard that
/// closes the same connection, or the selector (whose close closes that connection too), that
/// second close must return too.
#[test]
fn a_close_whose_count_wakes_a_shutdown_task_that_closes_the_same_socket_returns() {
    let mut deadlocked = Vec::new();
    for (of_selector, guard_closes_selector) in [(false, false), (true, false), (false, true)] {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (selector, listener, client, server) = runtime.block_on(async {
            let selector = SelectorManager::new();
            let listener = Arc::new(tcp_listener(&selector).await);
            let (client, server) = connected_pair(&selector, &listener).await;
            (selector, listener, client, Arc::new(server))
        });
        let shutting = (selector.clone(), Arc::clone(&listener));
        let task: Task = Box::pin(async move {
            let grace = Duration::from_secs(60);
            if of_selector {
                shutting.0.shutdown(grace).await;
            } else {
                shutting.1.shutdown(grace).await;
            }
        });
        let guarded: Arc<dyn Closable> = if guard_closes_selector {
            Arc::new(selector.clone())
        } else {
            server.clone()
        };
        pending_task_closing_on_drop(guarded, task, "shutdown");
        let closing = Arc::clone(&server);
        if !returns(move || closing.close()) {
            std::mem::forget((runtime, selector, listener, client, server));
            deadlocked.push(format!(
                "the shutdown of the selector: {of_selector}, the guard closes the selector: \
                 {guard_closes_selector}"
            ));
            continue;
        }
        assert!(server.is_closed());
        assert_eq!(selector.is_closed(), guard_closes_selector);
    }
    assert!(
        deadlocked.is_empty(),
        "the close never returned (a shutdown task its count woke closed the same socket on \
         its thread): {deadlocked:?}"
    );
}
