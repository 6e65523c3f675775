//! A selector with a runtime of its own (`SelectorManager::builder`) stops that runtime when
//! it closes (or is dropped unclosed): its threads end though the selector and its sockets are
//! still held (before, they ran until everything was dropped). What is still held then fails
//! with `SelectorClosed`, never a panic of the stopped runtime.

use std::time::{Duration, Instant};

use net_sockets::{Error, SelectorManager, a_socket};
use net_tests::{HANG_LIMIT, block_on};

/// How many threads of this process are named `name`.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

/// Waits until no thread is named `name`: whether that came within [`HANG_LIMIT`].
fn threads_end(name: &str) -> bool {
    let deadline = Instant::now() + HANG_LIMIT;
    while threads_named(name) > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// A selector of its own runtime, its threads named `name`, with a listener, a connection
/// (both ends) and a datagram socket made through it.
fn selector_with_sockets(
    name: &str,
) -> (
    SelectorManager,
    net_sockets::ServerSocket,
    net_sockets::Socket,
    net_sockets::Socket,
    net_sockets::BoundDatagramSocket,
) {
    let selector = SelectorManager::builder()
        .worker_threads(2)
        .thread_name(name)
        .build()
        .unwrap();
    let (listener, client, server, udp) = block_on(async {
        let listener = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let client = a_socket(&selector)
            .tcp()
            .connect(listener.local_address())
            .await
            .unwrap();
        let server = listener.accept().await.unwrap();
        let udp = a_socket(&selector)
            .udp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        (listener, client, server, udp)
    });
    // (Its workers name themselves as they start: one may not have yet.)
    assert!(threads_named(name) > 0, "the runtime's threads run");
    (selector, listener, client, server, udp)
}

#[test]
fn an_own_runtime_selectors_threads_end_at_its_close_though_its_sockets_are_held() {
    const THREAD: &str = "own-rt-close";
    let (selector, listener, mut client, server, udp) = selector_with_sockets(THREAD);
    let listener_port = listener.port().unwrap();
    selector.close();
    assert!(
        threads_end(THREAD),
        "{} threads of the closed selector's runtime still run after {HANG_LIMIT:?}",
        threads_named(THREAD)
    );
    // Everything still held fails with the close, polled by no runtime at all.
    block_on(async {
        assert!(matches!(
            listener.accept().await,
            Err(Error::SelectorClosed)
        ));
        let read = client.open_read_channel().map(|_| ());
        assert!(matches!(read, Err(Error::SelectorClosed)), "{read:?}");
        assert!(matches!(udp.receive().await, Err(Error::SelectorClosed)));
        let bound = a_socket(&selector).tcp().bind(("127.0.0.1", 0)).await;
        assert!(matches!(bound, Err(Error::SelectorClosed)), "{bound:?}");
        let bound = a_socket(&selector).udp().bind(("127.0.0.1", 0)).await;
        assert!(matches!(bound, Err(Error::SelectorClosed)), "{bound:?}");
        // A host name's lookup would be the stopped runtime's blocking work.
        let connected = a_socket(&selector)
            .tcp()
            .connect(("localhost", listener_port))
            .await;
        assert!(
            matches!(connected, Err(Error::SelectorClosed)),
            "{connected:?}"
        );
        let adopted = net_sockets::ServerSocket::from_std(
            &selector,
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        );
        assert!(matches!(adopted, Err(Error::SelectorClosed)), "{adopted:?}");
        let report = selector.shutdown(Duration::from_secs(1)).await;
        assert_eq!((report.finished, report.cut), (0, 0));
    });
    assert!(server.is_closed());
}

#[test]
fn an_own_runtime_selectors_threads_end_at_the_end_of_its_graceful_shutdown() {
    const THREAD: &str = "own-rt-shutdown";
    let (selector, listener, client, server, udp) = selector_with_sockets(THREAD);
    let report = block_on(selector.shutdown(Duration::from_millis(50)));
    assert_eq!((report.finished, report.cut), (0, 2));
    assert!(
        threads_end(THREAD),
        "{} threads of the shut down selector's runtime still run after {HANG_LIMIT:?}",
        threads_named(THREAD)
    );
    assert!(listener.is_closed() && client.is_closed() && server.is_closed());
    assert!(udp.is_closed());
}

/// An own-runtime selector dropped without a close, its last handle let go in async code
/// (where a blocking shutdown of its runtime would panic), stops its runtime in the background:
/// no panic, and its threads end.
#[tokio::test]
async fn an_own_runtime_selector_dropped_unclosed_in_async_code_ends_its_threads() {
    const NAME: &str = "knet-dropped";
    let selector = SelectorManager::builder()
        .worker_threads(1)
        .thread_name(NAME)
        .build()
        .unwrap();
    let listener = a_socket(&selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    drop(listener);
    drop(selector);
    assert!(threads_end(NAME), "its threads still run");
}
