//! Locks and the wakers they keep: a waker is let go of (replaced, woken, or given back) only
//! once the lock that keeps it is let go of too.
//!
//! A task's waker may be the last reference to its task (an executor whose pending tasks are
//! owned by their wakers, such as `futures`' thread pool, or one whose `wake` drops a task it
//! can no longer schedule): letting go of it drops the task's future, and with it what the
//! future owns. When that is the other end of the same pipe, or a socket (a channel, a wait)
//! of the same connection, its drop takes the very lock that was held: the thread deadlocks
//! on itself.
//!
//! - The pipe behind `ByteChannel`: a read that wakes the writer, a read whose wait replaces
//!   the waker of an earlier wait (its task gone: the reader moved to another task).
//! - A connection's wait for its close, renewed by another task.
//! - A connection's wait for its listener's shutdown, renewed by another task; the start of
//!   that shutdown, which wakes it.
//! - The selector's close, and the end of its runtime, waking a connection's waits.
//! - A TLS session's read waker, renewed by another task or dropped with its channel.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use net_io::{ByteChannel, ByteReadChannel};
use net_sockets::{SelectorManager, a_socket};
use net_tests::loopback::{connected_pair, tcp_listener};
use net_tests::pki::Pki;
use net_tls::{TlsExt, TlsSocket};

/// How long a step that takes microseconds may take before the test calls it a deadlock.
const DEADLOCK: Duration = Duration::from_secs(10);

/// A task's waker that is the only owner of what its task's future holds: dropped with the
/// last clone of the waker (as a task that only its wakers keep is), and by a wake (as by an
/// executor that can no longer run the task it wakes, and drops it).
struct Owner(Mutex<Option<Box<dyn Send>>>);

impl Wake for Owner {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let task = self.0.lock().unwrap().take();
        drop(task);
    }
}

/// A waker that owns nothing yet, and the handle to give it something to own.
fn owning_waker() -> (Waker, Arc<Owner>) {
    let owner = Arc::new(Owner(Mutex::new(None)));
    (Waker::from(Arc::clone(&owner)), owner)
}

/// Runs `step` on a thread of its own: `Err` when it does not return within [`DEADLOCK`]
/// (the thread, deadlocked on itself, is left behind, with the lock it holds: what would take
/// that lock, such as the selector's close, must be left behind too).
fn returns(what: &str, step: impl FnOnce() + Send + 'static) -> Result<(), String> {
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        step();
        let _ = done_tx.send(());
    });
    match done.recv_timeout(DEADLOCK) {
        Ok(()) => Ok(()),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(format!("{what} panicked")),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "{what} deadlocked: a waker was dropped under the lock its task's drop takes"
        )),
    }
}

/// Fails the test with `outcome`'s error, leaving `kept` behind (never dropped: its drop
/// would wait for the lock a deadlocked thread holds).
fn check(outcome: Result<(), String>, kept: impl Sized) {
    if let Err(e) = outcome {
        std::mem::forget(kept);
        panic!("{e}");
    }
}

/// [`check`], then drops `kept` (a runtime among it) on a thread of its own, bounded as in
/// [`returns`]: the runtime's end wakes what still waits, and a wake that deadlocks fails the
/// test instead of hanging it.
fn check_then_end(outcome: Result<(), String>, kept: impl Send + 'static) {
    if outcome.is_err() {
        return check(outcome, kept);
    }
    check(returns("the end of the runtime", move || drop(kept)), ());
}

/// Polls `future` once with `waker`.
fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(waker))
}

/// A read of one byte from `input`, polled once (pending) with a waker that alone owns `owned`
/// (the task's future, holding it): once the input lets go of that waker, or wakes it,
/// `owned` is dropped.
fn read_pending_owning(input: &mut ByteReadChannel, owned: impl Send + 'static) {
    let (waker, owner) = owning_waker();
    read_pending(input, &waker);
    *owner.0.lock().unwrap() = Some(Box::new(owned));
}

/// A read of one byte from `input`, polled once with `waker`, then dropped: pending.
fn read_pending(input: &mut ByteReadChannel, waker: &Waker) {
    let read = std::pin::pin!(input.read_u8());
    assert!(poll_once(read, waker).is_pending(), "nothing to read yet");
}

/// A read that takes bytes from the pipe wakes the writer that waited for room: the writer's
/// task, which only that waker kept, goes, and with it the writer, whose drop ends the pipe.
#[test]
fn a_pipe_read_that_wakes_the_last_waker_of_the_writers_task_returns() {
    let (mut output, mut input) = ByteChannel::new(true);
    // The pipe full: the next write waits for room.
    net_tests::block_on(output.write_fully(&vec![7; 64 * 1024])).expect("the pipe takes 64 KiB");
    let (waker, owner) = owning_waker();
    {
        let write = std::pin::pin!(output.write_fully(b"x"));
        assert!(poll_once(write, &waker).is_pending(), "the pipe is full");
    }
    // The writer goes with its task, which only the waker the pipe keeps still holds.
    *owner.0.lock().unwrap() = Some(Box::new(output));
    drop((waker, owner));
    let outcome = returns("a pipe read that wakes the writer", move || {
        let mut buf = [0; 1024];
        let n = net_tests::block_on(input.read_available(&mut buf)).expect("the bytes piped");
        assert!(n > 0);
    });
    check(outcome, ());
}

/// A read whose task is not the one that waited last (the reader moved to another task)
/// replaces the waker the pipe kept: the earlier task, which only that waker kept, goes, and
/// with it the writer it owned.
#[test]
fn a_pipe_read_that_replaces_the_last_waker_of_another_task_returns() {
    let (output, mut input) = ByteChannel::new(true);
    read_pending_owning(&mut input, output);
    let outcome = returns(
        "a pipe read that replaces an earlier task's waker",
        move || {
            read_pending(&mut input, Waker::noop());
        },
    );
    check(outcome, ());
}

/// A connection's read waits for the socket's close too; a read from another task (the read
/// channel moved) renews that wait's waker. The earlier task, which only its waker kept, goes,
/// and with it the socket it owned, waiting for its own close.
#[test]
fn a_socket_read_that_renews_the_last_waker_of_another_task_returns() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let selector = runtime.block_on(async { SelectorManager::new() });
    let (mut client, _server) = runtime.block_on(async {
        let listener = tcp_listener(&selector).await;
        connected_pair(&selector, &listener).await
    });
    let mut input = client.open_read_channel().expect("a read channel");
    // The earlier task's future: the socket, waiting (registered) for its close.
    let mut closed: Pin<Box<dyn Future<Output = ()> + Send>> =
        Box::pin(async move { client.await_closed().await });
    assert!(poll_once(closed.as_mut(), Waker::noop()).is_pending());
    read_pending_owning(&mut input, closed);
    let outcome = returns(
        "a socket read that renews an earlier task's waker",
        move || {
            read_pending(&mut input, Waker::noop());
            drop(input);
        },
    );
    check(outcome, (runtime, selector, _server));
}

/// A connection's wait for its listener's shutdown, polled by another task, renews its waker:
/// the earlier task, which only that waker kept, goes, and with it another connection's wait
/// for the same shutdown.
#[test]
fn a_shutdown_wait_that_renews_the_last_waker_of_another_task_returns() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let selector = runtime.block_on(async { SelectorManager::new() });
    let (first, second, _clients) = runtime.block_on(async {
        let listener = tcp_listener(&selector).await;
        let (one, first) = connected_pair(&selector, &listener).await;
        let (two, second) = connected_pair(&selector, &listener).await;
        (first, second, (one, two, listener))
    });
    let mut other: Pin<Box<dyn Future<Output = ()> + Send>> =
        Box::pin(async move { second.shutdown_requested().await });
    assert!(poll_once(other.as_mut(), Waker::noop()).is_pending());
    let (waker, owner) = owning_waker();
    let outcome = returns(
        "a shutdown wait that renews an earlier task's waker",
        move || {
            let mut requested = Box::pin(first.shutdown_requested());
            assert!(poll_once(requested.as_mut(), &waker).is_pending());
            *owner.0.lock().unwrap() = Some(Box::new(other));
            drop((waker, owner));
            assert!(poll_once(requested.as_mut(), Waker::noop()).is_pending());
        },
    );
    check(outcome, (runtime, selector, _clients));
}

/// The start of a listener's shutdown wakes the connections that wait for it: a wake that
/// drops its task (an executor that can no longer run it) drops another connection's wait for
/// the same shutdown with it.
#[test]
fn a_shutdown_whose_wake_drops_another_wait_returns() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let selector = runtime.block_on(async { SelectorManager::new() });
    let (listener, first, second, _clients) = runtime.block_on(async {
        let listener = tcp_listener(&selector).await;
        let (one, first) = connected_pair(&selector, &listener).await;
        let (two, second) = connected_pair(&selector, &listener).await;
        (listener, first, second, (one, two))
    });
    let mut other: Pin<Box<dyn Future<Output = ()> + Send>> =
        Box::pin(async move { second.shutdown_requested().await });
    assert!(poll_once(other.as_mut(), Waker::noop()).is_pending());
    let (waker, owner) = owning_waker();
    *owner.0.lock().unwrap() = Some(Box::new(other));
    drop(owner);
    let first = Arc::new(first);
    let waiting = Arc::clone(&first);
    let mut requested: Pin<Box<dyn Future<Output = ()> + Send>> =
        Box::pin(async move { waiting.shutdown_requested().await });
    assert!(poll_once(requested.as_mut(), &waker).is_pending());
    drop(waker);
    let outcome = returns("a shutdown's start that wakes a wait", move || {
        let shutdown = std::pin::pin!(listener.shutdown(Duration::from_secs(5)));
        let _ = poll_once(shutdown, Waker::noop());
        assert!(poll_once(requested.as_mut(), Waker::noop()).is_ready());
    });
    check(outcome, (runtime, selector, first, _clients));
}

/// A TLS client and its server, connected on loopback.
fn tls_pair(runtime: &tokio::runtime::Runtime) -> (SelectorManager, TlsSocket, TlsSocket) {
    runtime.block_on(async {
        let selector = SelectorManager::new();
        let pki = Pki::generate();
        let server_config = pki.server_config().build().expect("a server config");
        let client_config = pki.client_config().build().expect("a client config");
        let listener = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .expect("a listener");
        let port = listener.port().expect("its port");
        let accept = async {
            listener
                .accept()
                .await
                .expect("accepted")
                .tls_server(&server_config)
                .await
                .expect("the server's handshake")
        };
        let connect = async {
            a_socket(&selector)
                .tcp()
                .connect(("localhost", port))
                .await
                .expect("connected")
                .tls(client_config)
                .await
                .expect("the client's handshake")
        };
        let (server, client) = tokio::join!(accept, connect);
        (selector, client, server)
    })
}

/// A TLS read from another task (the read channel moved) renews the waker the session keeps
/// for a shutdown: the earlier task, which only that waker kept, goes, and with it the socket
/// and its write channel.
#[test]
fn a_tls_read_that_renews_the_last_waker_of_another_task_returns() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let (selector, mut client, server) = tls_pair(&runtime);
    let mut input = client.open_read_channel().expect("a read channel");
    let output = client.open_write_channel(true).expect("a write channel");
    read_pending_owning(&mut input, (client, output));
    let outcome = returns(
        "a TLS read that renews an earlier task's waker",
        move || {
            read_pending(&mut input, Waker::noop());
            drop(input);
        },
    );
    check_then_end(outcome, (runtime, selector, server));
}

/// The TLS read channel dropped by another task lets go of the waker the session keeps: the
/// earlier task, which only that waker kept, goes, and with it the socket and its write
/// channel.
#[test]
fn a_tls_read_channel_dropped_after_another_task_waited_returns() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let (selector, mut client, server) = tls_pair(&runtime);
    let mut input = client.open_read_channel().expect("a read channel");
    let output = client.open_write_channel(true).expect("a write channel");
    read_pending_owning(&mut input, (client, output));
    let outcome = returns("a TLS read channel's drop", move || drop(input));
    check_then_end(outcome, (runtime, selector, server));
}

/// The selector's close wakes every pending operation of its sockets: a wake that drops its
/// task (an executor that can no longer run it) drops the read channel that task owned, whose
/// drop gives its wait's place back under the connection's waiters' lock.
#[test]
fn a_selector_close_whose_wake_drops_a_read_channel_returns() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let selector = runtime.block_on(async { SelectorManager::new() });
    let (mut client, server) = runtime.block_on(async {
        let listener = tcp_listener(&selector).await;
        connected_pair(&selector, &listener).await
    });
    let mut input = client.open_read_channel().expect("a read channel");
    let (waker, owner) = owning_waker();
    read_pending(&mut input, &waker);
    *owner.0.lock().unwrap() = Some(Box::new(input));
    drop((waker, owner));
    let closing = selector.clone();
    let outcome = returns("a selector's close that wakes a read", move || {
        closing.close();
    });
    check(outcome, (runtime, selector, client, server));
}

/// The same over TLS, through the end of the selector's runtime (as a `#[tokio::main]` that
/// returns ends it): the task, woken, drops the socket and its write channel.
#[test]
fn a_runtime_end_whose_wake_drops_a_tls_socket_returns() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let (selector, mut client, server) = tls_pair(&runtime);
    let mut input = client.open_read_channel().expect("a read channel");
    let output = client.open_write_channel(true).expect("a write channel");
    let (waker, owner) = owning_waker();
    read_pending(&mut input, &waker);
    *owner.0.lock().unwrap() = Some(Box::new((client, output, input)));
    drop((waker, owner));
    let outcome = returns(
        "the end of a selector's runtime that wakes a TLS read",
        move || {
            drop(runtime);
        },
    );
    check(outcome, (selector, server));
}
