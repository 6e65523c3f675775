//! Wakers let go of under a lock, elsewhere than a socket's close (see `socket_call_orders` for
//! those): a waker may be the last reference to its task (an executor whose pending tasks
//! only their wakers keep), so dropping it drops the task's future, and with it a guard that
//! may close the same socket, on the same thread. Under a lock that close takes, that close
//! never returned.
//!
//! - A TLS read channel polled by another task than the one that last waited on it: the read
//!   replaced the session's note of the reader's waker under the session's lock, dropping the
//!   other task's waker there; when that was its last reference, the guard's close of the TLS
//!   socket waited for that lock for ever (its `close_notify` is decided under it).
//! - A flush of a plain connection's write channel with answers held back (flush coalescing),
//!   polled by another task than the one that last waited on it for room: it polled the socket
//!   under the lock of the held-back bytes, which replaced the other task's wakers there; the
//!   guard's close, which sends what is held back, waited for that lock for ever.
//! - A TLS write channel's shutdown after the peer's `close_notify` was read: it closes the
//!   socket (both directions are done) under the session's lock, and that close wakes the tasks
//!   waiting for it; a task dropped as it is woken, owning the read channel, waited in the read
//!   channel's drop for that lock for ever.
//! - A TLS write that rustls took and whose records then filled the socket returned what
//!   rustls took, its task's wakers left with the socket only (not with the session, as a
//!   write that waits leaves them); the next write, another task's, replaced them under the
//!   session's lock, and the guard's close of the task they were the last references to
//!   waited for that lock for ever.
//! - A TLS read that returned plaintext after it read on and found nothing, which left its
//!   task's wakers with the socket only (not with the session, as a read that waits leaves
//!   them): the same, on the next read, another task's.
//! - A TLS handshake, whose last poll read on after the peer's last message and found nothing,
//!   which left the wakers of the task that ran it with the socket only (the session noted
//!   no task): the same, on the first read, another task's.
//!
//! A TLS handshake whose write waited for the socket's room: see
//! `reentrant_wakes_after_a_handshake_write_waited`.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use net_sockets::{SelectorManager, Socket, Transport, a_socket};
use net_tests::loopback::tcp_listener;
use net_tests::pki::Pki;
use net_tests::wakes::{CloseOnDrop, DEADLOCK, Owner, Task, returns};
use net_tls::TlsExt;
use tokio::io::{AsyncRead, AsyncWrite};

/// Polls `task` once and leaves it pending, owned by its wakers only, with a guard that closes
/// `socket` when the task is dropped.
fn pending_task_closing_on_drop<T: Transport>(socket: Arc<Socket<T>>, task: Task) {
    let guard = CloseOnDrop(socket);
    let mut task: Task = Box::pin(async move {
        task.await;
        drop(guard);
    });
    let owner = Owner::<Task>::new();
    let waker = Waker::from(Arc::clone(&owner));
    assert!(
        task.as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    );
    *owner.0.lock().unwrap() = Some(task);
}

/// Task A waits on a TLS read channel, then gives the channel away and waits on nothing that
/// keeps it (its wakers, noted by the read, are its only references); another task then reads
/// the channel, which replaces those wakers. As the last of them goes, task A goes, and its
/// guard closes the TLS socket: that close must return, and the read with it.
#[test]
fn a_tls_read_that_replaces_another_tasks_last_waker_lets_it_go_outside_the_session_lock() {
    let pki = Pki::generate();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (selector, listener, server, client, input) = runtime.block_on(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let (server, mut client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
        let input = client.open_read_channel().unwrap();
        (
            selector,
            listener,
            server,
            Arc::new(client),
            Arc::new(Mutex::new(input)),
        )
    });
    let handle = runtime.handle().clone();
    {
        let _context = handle.enter();
        let waits = Arc::clone(&input);
        let task: Task = Box::pin(async move {
            std::future::poll_fn(|cx| {
                let mut input = waits.lock().unwrap();
                let read = pin!(input.read_u8());
                assert!(read.poll(cx).is_pending(), "nothing was sent");
                Poll::Ready(())
            })
            .await;
            std::future::pending::<()>().await;
        });
        pending_task_closing_on_drop(Arc::clone(&client), task);
    }
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
        std::mem::forget((runtime, selector, listener, server, client, input));
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

/// Task A flushes a write channel whose answers are held back (flush coalescing) and more than
/// the socket takes: it waits for room. It then gives the channel away and waits on nothing
/// that keeps it; another task flushes, which replaces its wakers. As the last of them goes,
/// task A goes, and its guard closes the socket: that close must return, and the flush with it.
#[test]
fn a_held_back_flush_that_replaces_another_tasks_last_waker_lets_it_go_outside_the_backlog() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (selector, listener, peer, server, output) = runtime.block_on(async {
        let selector = SelectorManager::new();
        let listener = a_socket(&selector)
            .tcp()
            .send_buffer_size(4096)
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let (peer, server, input, output) = net_tests::fault::held_back_answers(&listener).await;
        (
            selector,
            listener,
            (peer, input),
            Arc::new(server),
            Arc::new(Mutex::new(output)),
        )
    });
    let handle = runtime.handle().clone();
    {
        let _context = handle.enter();
        let waits = Arc::clone(&output);
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
        });
        pending_task_closing_on_drop(Arc::clone(&server), task);
    }
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
        std::mem::forget((runtime, selector, listener, peer, server, output));
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

/// A TLS client reads the server's `close_notify`, then a task waits for the socket's close,
/// owning the read channel (dropped with the task); the client's write channel then shuts
/// down, which closes the socket (both directions done) and wakes that task, which its
/// executor drops: the read channel's drop must not wait for the session's lock, held by the
/// shutdown that woke it.
#[test]
fn a_tls_shutdown_whose_close_wakes_a_task_owning_the_read_channel_returns() {
    let pki = Pki::generate();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (selector, listener, server, client, input, output) = runtime.block_on(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let (server, mut client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
        let mut input = client.open_read_channel().unwrap();
        let output = client.open_write_channel(false).unwrap();
        server.close();
        let end = net_tests::within(input.read_u8()).await;
        assert!(end.is_err(), "the server's close_notify: {end:?}");
        (selector, listener, server, Arc::new(client), input, output)
    });
    let handle = runtime.handle().clone();
    {
        let _context = handle.enter();
        let waits = Arc::clone(&client);
        let task: Task = Box::pin(async move {
            waits.await_closed().await;
            drop(input);
        });
        pending_task_closing_on_drop(Arc::clone(&client), task);
    }
    assert!(!client.is_closed());
    let output = Arc::new(Mutex::new(output));
    let shuts = Arc::clone(&output);
    let returned = returns(move || {
        let _context = handle.enter();
        let mut output = shuts.lock().unwrap();
        let shutdown = pin!(output.flush_and_close());
        let _ = shutdown.poll(&mut Context::from_waker(Waker::noop()));
    });
    if !returned {
        // Left behind: their drops would wait for the deadlocked thread's locks.
        std::mem::forget((runtime, selector, listener, server, client, output));
        panic!(
            "the shutdown never returned: the task its close woke dropped the read channel, \
             which waited for the session's lock, held by the shutdown"
        );
    }
    assert!(
        client.is_closed(),
        "the shutdown closed the socket, both directions being done"
    );
}

/// Task A writes to a TLS write channel more than the socket takes (a tiny send buffer, a peer
/// that reads nothing): rustls takes the bytes, the socket fills under their records, and the
/// write returns what rustls took, A's wakers left with the socket. A then gives the channel
/// away and waits on nothing that keeps it; another task writes, which replaces those wakers.
/// As the last of them goes, task A goes, and its guard closes the TLS socket: that close must
/// return, and the write with it.
#[test]
fn a_tls_write_that_replaces_the_wakers_of_a_write_that_filled_the_socket_lets_them_go() {
    let pki = Pki::generate();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (selector, listener, client, server, output) = runtime.block_on(async {
        let selector = SelectorManager::new();
        let listener = a_socket(&selector)
            .tcp()
            .send_buffer_size(4096)
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = listener.port().unwrap();
        let server_config = pki.server_config().build().unwrap();
        let client_config = pki.client_config().build().unwrap();
        let connect = async {
            a_socket(&selector)
                .tcp()
                .receive_buffer_size(4096)
                .connect(("localhost", port))
                .await
                .unwrap()
                .tls(client_config)
                .await
                .unwrap()
        };
        let accept = net_tests::tls::accept(&listener, &server_config);
        let (mut server, client) = net_tests::within(async { tokio::join!(accept, connect) }).await;
        let output = server.open_write_channel(false).unwrap();
        (
            selector,
            listener,
            client,
            Arc::new(server),
            Arc::new(Mutex::new(output)),
        )
    });
    let handle = runtime.handle().clone();
    {
        let _context = handle.enter();
        let writes = Arc::clone(&output);
        let task: Task = Box::pin(async move {
            std::future::poll_fn(|cx| {
                let mut output = writes.lock().unwrap();
                // rustls takes the bytes; the socket (a few KiB of send buffer, a peer's
                // window of a few KiB) fills under their records: the write returns what
                // rustls took, the socket holding A's wakers for its room.
                let big = vec![b'a'; 64 * 1024];
                let written = Pin::new(&mut *output).poll_write(cx, &big);
                assert!(
                    matches!(written, Poll::Ready(Ok(n)) if n > 0),
                    "rustls takes the bytes at once: {written:?}"
                );
                Poll::Ready(())
            })
            .await;
            std::future::pending::<()>().await;
        });
        pending_task_closing_on_drop(Arc::clone(&server), task);
    }
    assert!(!server.is_closed());
    let writes = Arc::clone(&output);
    let returned = returns(move || {
        let _context = handle.enter();
        let mut output = writes.lock().unwrap();
        let big = vec![b'b'; 64 * 1024];
        let _ = Pin::new(&mut *output).poll_write(&mut Context::from_waker(Waker::noop()), &big);
    });
    if !returned {
        // Left behind: their drops would wait for the deadlocked thread's locks.
        std::mem::forget((runtime, selector, listener, client, server, output));
        panic!(
            "the write never returned: the close of the task whose last wakers it replaced \
             waited for the session's lock, which the write held"
        );
    }
    assert!(
        server.is_closed(),
        "the write let go of task A's last wakers: its guard closed the socket"
    );
}

/// Task A reads a TLS read channel once the peer's records are there, four of 2 KiB (two full
/// reads of the 4 KiB that rustls reads at a time): the read returns their plaintext, but after
/// the second full read it read on, found nothing, and left A's wakers with the socket. A then
/// gives the channel away and waits on nothing that keeps it; another task reads, which
/// replaces those wakers. As the last of them goes, task A goes, and its guard closes the TLS
/// socket: that close must return, and the read with it.
#[test]
fn a_tls_read_that_replaces_the_wakers_of_a_read_that_returned_plaintext_lets_them_go() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::AsyncWriteExt;
    const PLAINTEXT: usize = 2048 - 22; // a TLS 1.3 record of 2 KiB
    let pki = Pki::generate();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = pki.server_config().build().unwrap();
    let (selector, listener, peer, server, input) = runtime.block_on(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let (mut server, mut tcp, mut client) =
            net_tests::tls::manual_pair(&listener, &pki.ca, &config).await;
        let input = server.open_read_channel().unwrap();
        let mut sent = Vec::new();
        for _ in 0..4 {
            std::io::Write::write_all(&mut client.writer(), &[b'r'; PLAINTEXT]).unwrap();
            sent.extend(net_tests::tls::records(&mut client));
        }
        assert_eq!(sent.len(), 8192, "four records of 2 KiB");
        tcp.write_all(&sent).await.unwrap();
        (
            selector,
            listener,
            (tcp, client),
            Arc::new(server),
            Arc::new(Mutex::new(input)),
        )
    });
    let handle = runtime.handle().clone();
    // Until the reactor saw the records: each try a task of its own, whose guard closes the
    // socket only if its read returned them (a try that waits is let go of by the next one).
    let started = std::time::Instant::now();
    let mut returned_plaintext = false;
    while !returned_plaintext && started.elapsed() < DEADLOCK {
        let _context = handle.enter();
        let reads = Arc::clone(&input);
        let armed = Arc::new(AtomicBool::new(false));
        let guard = CloseIfArmed(Arc::clone(&armed), Arc::clone(&server));
        let arms = Arc::clone(&armed);
        let mut task: Task = Box::pin(async move {
            std::future::poll_fn(|cx| {
                let mut input = reads.lock().unwrap();
                let mut bytes = [0u8; 16 * 1024];
                let mut buf = tokio::io::ReadBuf::new(&mut bytes);
                match Pin::new(&mut *input).poll_read(cx, &mut buf) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(read) => read.unwrap(),
                }
                assert_eq!(
                    buf.filled().len(),
                    4 * PLAINTEXT,
                    "every record's plaintext"
                );
                arms.store(true, Ordering::SeqCst);
                Poll::Ready(())
            })
            .await;
            std::future::pending::<()>().await;
            drop(guard);
        });
        let owner = Owner::<Task>::new();
        let waker = Waker::from(Arc::clone(&owner));
        assert!(
            task.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        *owner.0.lock().unwrap() = Some(task);
        returned_plaintext = armed.load(Ordering::SeqCst);
        if !returned_plaintext {
            std::thread::yield_now();
        }
    }
    assert!(returned_plaintext, "the peer's records never came in");
    assert!(!server.is_closed());
    let reads = Arc::clone(&input);
    let returned = returns(move || {
        let _context = handle.enter();
        let mut input = reads.lock().unwrap();
        let mut bytes = [0u8; 16 * 1024];
        let mut buf = tokio::io::ReadBuf::new(&mut bytes);
        let _ = Pin::new(&mut *input).poll_read(&mut Context::from_waker(Waker::noop()), &mut buf);
    });
    if !returned {
        // Left behind: their drops would wait for the deadlocked thread's locks.
        std::mem::forget((runtime, selector, listener, peer, server, input));
        panic!(
            "the read never returned: the close of the task whose last wakers it replaced \
             waited for the session's lock, which the read held"
        );
    }
    assert!(
        server.is_closed(),
        "the read let go of task A's last wakers: its guard closed the socket"
    );
}

/// Closes its socket when dropped, once armed (a connection's guard, for a task that did what
/// the test needs).
struct CloseIfArmed<T: Transport>(Arc<std::sync::atomic::AtomicBool>, Arc<Socket<T>>);

impl<T: Transport> Drop for CloseIfArmed<T> {
    fn drop(&mut self) {
        if self.0.load(std::sync::atomic::Ordering::SeqCst) {
            self.1.close();
        }
    }
}

/// Task A runs a server handshake (polled until it is done, then left pending, owned by its
/// wakers only): the handshake's last poll read on after the client's `Finished` and found
/// nothing, so the socket keeps A's wakers for its input. A hands the channels away, with a
/// guard that closes the TLS socket; another task reads, which replaces those wakers under the
/// session's lock. As the last of them goes (the session's note of A, let go of once the lock
/// is), task A goes, and its guard closes the TLS socket: that close must return, and the read
/// with it.
#[test]
fn a_tls_read_that_replaces_the_wakers_the_handshake_left_lets_them_go() {
    let pki = Pki::generate();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = pki.server_config().build().unwrap();
    let client_config = pki.client_config().build().unwrap();
    let (selector, listener, client, accepted) = runtime.block_on(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let port = listener.port().unwrap();
        let connecting = selector.clone();
        let client = tokio::spawn(async move {
            a_socket(&connecting)
                .tcp()
                .connect(("localhost", port))
                .await
                .unwrap()
                .tls(client_config)
                .await
                .unwrap()
        });
        let accepted = net_tests::within(listener.accept()).await.unwrap();
        (selector, listener, client, accepted)
    });
    let handle = runtime.handle().clone();
    let (published, handed) = mpsc::channel();
    let mut task: Task = Box::pin(async move {
        let mut server = accepted.tls_server(&config).await.unwrap();
        let input = server.open_read_channel().unwrap();
        let output = server.open_write_channel(false).unwrap();
        let server = Arc::new(server);
        let guard = CloseOnDrop(Arc::clone(&server));
        published.send((server, input, output)).unwrap();
        std::future::pending::<()>().await;
        drop(guard);
    });
    // Polled by this thread until the handshake is done (its wake-ups, which find no task in
    // the owner meanwhile, are not needed: it is polled again and again), then left pending.
    let owner = Owner::<Task>::new();
    let waker = Waker::from(Arc::clone(&owner));
    let started = std::time::Instant::now();
    let (server, input, output) = loop {
        {
            let _context = handle.enter();
            assert!(
                task.as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending()
            );
        }
        if let Ok(handed) = handed.try_recv() {
            break handed;
        }
        assert!(started.elapsed() < DEADLOCK, "the handshake never ended");
        std::thread::sleep(Duration::from_millis(1));
    };
    // From now on only its wakers keep it.
    *owner.0.lock().unwrap() = Some(task);
    drop((waker, owner));
    let client = runtime.block_on(net_tests::within(client)).unwrap();
    assert!(!server.is_closed());
    let input = Arc::new(Mutex::new(input));
    let reads = Arc::clone(&input);
    let returned = returns(move || {
        let _context = handle.enter();
        let mut input = reads.lock().unwrap();
        let read = pin!(input.read_u8());
        let _ = read.poll(&mut Context::from_waker(Waker::noop()));
    });
    if !returned {
        // Left behind: their drops would wait for the deadlocked thread's locks.
        std::mem::forget((runtime, selector, listener, client, server, input, output));
        panic!(
            "the read never returned: the close of the task whose last wakers it replaced (left \
             by its handshake) waited for the session's lock, which the read held"
        );
    }
    // No write of the handshake waited: the session notes A as a reader only, and nothing
    // else keeps it (the write channel, alive, holds no note of it).
    assert!(
        server.is_closed(),
        "the read let go of task A's last wakers: its guard closed the socket"
    );
    drop(output);
}
