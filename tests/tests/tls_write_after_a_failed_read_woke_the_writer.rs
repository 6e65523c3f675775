//! A TLS flush by another task than the one that last waited on the write channel, after a
//! read that failed (here: `socket_timeout`) woke that task.
//!
//! Task A's flush waits for the socket's room: the socket keeps task A's wakers (its
//! readiness, the wait for its close, the timer), and the session notes task A as its writer.
//! A read then fails, and wakes the writer the session noted (the session may have failed for
//! good); task A runs, and stays pending on something else, kept by its wakers only (an
//! executor whose pending tasks only their wakers keep). Task B then flushes the channel: under
//! the session's lock, the socket puts task B's wakers in place of task A's. As the last of them
//! goes, task A goes, and its guard closes the TLS socket, whose close takes the session's lock:
//! it must not come while the flush holds it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use net_io::ByteReadChannel;
use net_sockets::{SelectorManager, a_socket};
use net_tests::wakes::{CloseOnDrop, KeptByWakers, Task, returns};
use net_tls::TlsExt;
use tokio::io::AsyncWrite;

/// The connection's `socket_timeout`: task A's flush begins to wait half of it after the read
/// began, so that its own wait is far from over when the read's is.
const TIMEOUT: Duration = Duration::from_secs(6);

/// Waits (bounded) until `flag` is set.
fn until_set(flag: &AtomicBool, what: &str) {
    let start = Instant::now();
    while !flag.load(Ordering::SeqCst) {
        assert!(start.elapsed() < Duration::from_secs(30), "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_tls_flush_after_a_failed_read_woke_the_last_writer_lets_its_wakers_go_outside_the_session_lock()
 {
    let pki = net_tests::pki::Pki::generate();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (selector, listener, client, server, input, output) = runtime.block_on(async {
        let selector = SelectorManager::new();
        let listener = a_socket(&selector)
            .tcp()
            .send_buffer_size(4096)
            .socket_timeout(TIMEOUT)
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
        let input = server.open_read_channel().unwrap();
        let output = server.open_write_channel(false).unwrap();
        (
            selector,
            listener,
            client,
            Arc::new(server),
            input,
            Arc::new(Mutex::new(output)),
        )
    });
    let handle = runtime.handle().clone();
    // A read that waits for the client, which sends nothing: it times out after `TIMEOUT`.
    let read_woken = Arc::new(AtomicBool::new(false));
    let read_waker = Waker::from(KeptByWakers::new(&read_woken));
    let mut read: Pin<Box<dyn Future<Output = net_io::Result<u8>> + Send>> = {
        let mut input: ByteReadChannel = input;
        Box::pin(async move { input.read_u8().await })
    };
    {
        let _context = handle.enter();
        assert!(
            read.as_mut()
                .poll(&mut Context::from_waker(&read_waker))
                .is_pending()
        );
    }
    std::thread::sleep(TIMEOUT / 2);
    // Task A: its flush waits for room (the client reads nothing); then it waits on nothing
    // that keeps it.
    let writer_woken = Arc::new(AtomicBool::new(false));
    {
        let kept = KeptByWakers::new(&writer_woken);
        let _context = handle.enter();
        let writes = Arc::clone(&output);
        let guard = CloseOnDrop(Arc::clone(&server));
        let task: Task = Box::pin(async move {
            std::future::poll_fn(|cx| {
                let mut output = writes.lock().unwrap();
                let big = vec![b'a'; 256 * 1024];
                let written = Pin::new(&mut *output).poll_write(cx, &big);
                assert!(
                    matches!(written, Poll::Ready(Ok(n)) if n > 0),
                    "the channel takes the bytes at once: {written:?}"
                );
                let flushed = Pin::new(&mut *output).poll_flush(cx);
                assert!(
                    flushed.is_pending(),
                    "the client reads nothing: {flushed:?}"
                );
                Poll::Ready(())
            })
            .await;
            std::future::pending::<()>().await;
            drop(guard);
        });
        kept.start(task);
    }
    // The read's `socket_timeout` ends its wait: it fails, and wakes the writer the session
    // noted, task A.
    let failed = loop {
        until_set(&read_woken, "the read's socket_timeout never woke it");
        read_woken.store(false, Ordering::SeqCst);
        let _context = handle.enter();
        if let Poll::Ready(failed) = read.as_mut().poll(&mut Context::from_waker(&read_waker)) {
            break failed;
        }
    };
    assert!(matches!(failed, Err(net_io::Error::Timeout)), "{failed:?}");
    assert!(
        writer_woken.load(Ordering::SeqCst),
        "the failed read woke task A"
    );
    assert!(!server.is_closed());
    let flushes = Arc::clone(&output);
    let (polled_tx, polled) = mpsc::channel();
    let returned = returns(move || {
        let _context = handle.enter();
        let mut output = flushes.lock().unwrap();
        let flushed = Pin::new(&mut *output).poll_flush(&mut Context::from_waker(Waker::noop()));
        let _ = polled_tx.send(format!("{flushed:?}"));
    });
    if !returned {
        // Left behind: their drops would wait for the deadlocked thread's locks.
        std::mem::forget((runtime, selector, listener, client, server, output, read));
        panic!(
            "the flush never returned: the close of the task whose last wakers it replaced \
             waited for the session's lock, which the flush held"
        );
    }
    let polled = polled.recv().unwrap();
    assert_eq!(
        polled, "Pending",
        "task B's flush waits for room, task A's own wait far from its timeout"
    );
    assert!(
        server.is_closed(),
        "the flush let go of task A's last wakers: its guard closed the socket"
    );
}
