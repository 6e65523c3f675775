//! The runtime a selector drives its sockets with ends while they are alive, or the sockets are
//! polled by another runtime or by no runtime at all: no panic, typed errors, descriptors
//! released.

use std::future::Future;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_sockets::{Error, SelectorManager, a_socket};
use net_tests::block_on;
use net_tests::loopback::connected_pair;
use net_tests::{HANG_LIMIT, within};

/// The tests of this file count descriptors: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The sockets among this process's descriptors (`socket:[inode]`, one per open socket).
fn open_sockets() -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .filter(|target| target.starts_with("socket:"))
        .collect()
}

/// What each of this process's descriptors is, sorted (for a failure's message).
fn descriptor_targets() -> Vec<String> {
    let mut targets: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .collect();
    targets.sort();
    targets
}

/// The socket (`socket:[inode]`) behind descriptor `fd`.
fn socket_of(fd: std::os::fd::RawFd) -> String {
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
    target.to_string_lossy().into_owned()
}

/// Waits until no thread of this process is named `name` any more; panics after
/// [`HANG_LIMIT`].
fn threads_end(name: &str) {
    let deadline = Instant::now() + HANG_LIMIT;
    loop {
        let running = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .filter(|comm| comm.trim_end() == name)
            .count();
        if running == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{running} threads named {name} still run"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A selector made with `SelectorManager::new()` inside a runtime that then shuts down (as a
/// `#[tokio::test]`'s does when it ends) closes with it: the descriptors of its sockets are
/// released at once, though the sockets, their channels and the selector are still held, and
/// every later use, from another runtime, fails with `SelectorClosed` — never a panic.
#[test]
fn a_runtime_that_shuts_down_closes_its_selector_and_releases_every_descriptor() {
    for multi_thread in [false, true] {
        let _serial = one_at_a_time();
        let other = current_thread();
        let before_targets = descriptor_targets();
        let runtime = if multi_thread {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
        } else {
            current_thread()
        };
        let (selector, listener, mut client, server_side, udp) = runtime.block_on(async {
            let selector = SelectorManager::new();
            let listener = a_socket(&selector)
                .tcp()
                .socket_timeout(Duration::from_secs(5))
                .bind(("127.0.0.1", 0))
                .await
                .unwrap();
            let (client, server_side) = connected_pair(&selector, &listener).await;
            let udp = a_socket(&selector)
                .udp()
                .bind(("127.0.0.1", 0))
                .await
                .unwrap();
            (selector, listener, client, server_side, udp)
        });
        let mut input = client.open_read_channel().unwrap();
        let mut output = client.open_write_channel(true).unwrap();
        // Ours, by inode: other sockets of the process (another test's, released or made
        // meanwhile) do not count.
        let fd = |s: socket2::SockRef<'_>| Ok(s.as_raw_fd());
        let ours = [
            listener.with_sock_ref(fd).unwrap(),
            client.with_sock_ref(fd).unwrap(),
            server_side.with_sock_ref(fd).unwrap(),
            udp.with_sock_ref(fd).unwrap(),
        ]
        .map(socket_of);
        // Returns once the workers dropped every task (long before this bound, but for a
        // machine busy with other tests: after a short bound, a worker still dropping tasks
        // would leave descriptors open).
        runtime.shutdown_timeout(net_tests::HANG_LIMIT);

        assert!(selector.is_closed(), "multi_thread = {multi_thread}");
        // (The selector still holds the runtime's handle, and with it a descriptor of its
        // poller.)
        let open = open_sockets();
        let left_open: Vec<&String> = ours.iter().filter(|s| open.contains(s)).collect();
        assert!(
            left_open.is_empty(),
            "multi_thread = {multi_thread}: {left_open:?}"
        );
        other.block_on(async {
            let err = within(input.read_line(64, LineEnding::Default))
                .await
                .unwrap_err();
            assert!(matches!(Error::from(err), Error::SelectorClosed));
            let err = within(output.write_string_utf8("x\n")).await.unwrap_err();
            assert!(matches!(Error::from(err), Error::SelectorClosed));
            assert!(matches!(
                within(listener.accept()).await,
                Err(Error::SelectorClosed)
            ));
            assert!(matches!(
                within(udp.receive()).await,
                Err(Error::SelectorClosed)
            ));
            let connect = a_socket(&selector)
                .tcp()
                .connect_timeout(Duration::from_secs(5))
                .connect(("localhost", listener.port().unwrap_or(1)));
            assert!(matches!(within(connect).await, Err(Error::SelectorClosed)));
            let bind = a_socket(&selector).tcp().bind(("127.0.0.1", 0));
            assert!(matches!(within(bind).await, Err(Error::SelectorClosed)));
            within(server_side.await_closed()).await;
        });
        drop((selector, listener, client, server_side, udp, input, output));
        // Every descriptor open now was open before (counted as a multiset of what each one
        // is): none is left behind. (Not an equal count: a runtime of an earlier test of this
        // file may still have been releasing its own descriptors when `before` was taken.)
        let after = descriptor_targets();
        let mut left = before_targets.clone();
        for target in &after {
            let kept = left.iter().position(|t| t == target);
            assert!(
                kept.is_some(),
                "multi_thread = {multi_thread}: {target} left open (before {before_targets:?}, \
                 after {after:?})"
            );
            left.swap_remove(kept.unwrap_or_default());
        }
    }
}

/// A graceful shutdown of a selector whose runtime has ended, with connections still held,
/// awaited on another runtime or on no runtime: it returns (the sleep of its grace period would
/// be a timer of the dead runtime, whose poll panics).
#[test]
fn a_graceful_shutdown_after_the_runtime_ended_returns_without_a_panic() {
    let _serial = one_at_a_time();
    for polled_by_tokio in [true, false] {
        let runtime = current_thread();
        let (selector, pair) = runtime.block_on(async {
            let selector = SelectorManager::new();
            let listener = net_tests::loopback::tcp_listener(&selector).await;
            let pair = connected_pair(&selector, &listener).await;
            (selector, pair)
        });
        drop(runtime);
        let shutdown = selector.shutdown(Duration::from_secs(60));
        let started = Instant::now();
        let report = if polled_by_tokio {
            current_thread().block_on(within(shutdown))
        } else {
            block_on(shutdown)
        };
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "waited the grace"
        );
        assert_eq!(report.finished, 0, "{report:?}");
        drop(pair);
    }
}

/// The shutdown of a selector's runtime while a graceful shutdown of that selector is awaited
/// elsewhere (a plain thread): it returns at once, without a panic.
#[test]
fn a_graceful_shutdown_under_way_when_the_runtime_ends_returns() {
    let _serial = one_at_a_time();
    let runtime = current_thread();
    let (selector, pair) = runtime.block_on(async {
        let selector = SelectorManager::new();
        let listener = net_tests::loopback::tcp_listener(&selector).await;
        let pair = connected_pair(&selector, &listener).await;
        (selector, pair)
    });
    let (began, shutdown_began) = std::sync::mpsc::channel();
    let waiting = std::thread::spawn({
        let selector = selector.clone();
        move || {
            let mut shutdown = std::pin::pin!(selector.shutdown(Duration::from_secs(60)));
            let first = block_on(std::future::poll_fn(|cx| {
                Poll::Ready(shutdown.as_mut().poll(cx).is_pending())
            }));
            assert!(first, "nothing to wait for");
            began.send(()).unwrap();
            block_on(shutdown)
        }
    });
    shutdown_began.recv_timeout(HANG_LIMIT).unwrap();
    drop(runtime);
    let report = waiting.join().expect("the waiting thread panicked");
    assert_eq!(report.finished, 0, "{report:?}");
    assert!(selector.is_closed());
    drop(pair);
}

/// A listener's graceful shutdown when its selector's runtime ends, called after the end
/// (polled by another runtime or by none) or under way then (on a plain thread): it returns,
/// without a panic on the dead runtime's timer. The wait polls its branches in a random order,
/// so each case runs several rounds (a timer polled first in any of them panicked).
#[test]
fn a_listener_shutdown_after_or_during_the_end_of_the_runtime_returns_without_a_panic() {
    let _serial = one_at_a_time();
    for round in 0..24 {
        let runtime = current_thread();
        let (selector, listener, pair) = runtime.block_on(async {
            let selector = SelectorManager::new();
            let listener = net_tests::loopback::tcp_listener(&selector).await;
            let pair = connected_pair(&selector, &listener).await;
            (selector, listener, pair)
        });
        let listener = Arc::new(listener);
        let started = Instant::now();
        let report = match round % 3 {
            0 => {
                drop(runtime);
                current_thread().block_on(within(listener.shutdown(Duration::from_secs(60))))
            }
            1 => {
                drop(runtime);
                block_on(listener.shutdown(Duration::from_secs(60)))
            }
            _ => {
                let (began, shutdown_began) = std::sync::mpsc::channel();
                let waiting = std::thread::spawn({
                    let listener = Arc::clone(&listener);
                    move || {
                        let mut shutdown =
                            std::pin::pin!(listener.shutdown(Duration::from_secs(60)));
                        let first = block_on(std::future::poll_fn(|cx| {
                            Poll::Ready(shutdown.as_mut().poll(cx).is_pending())
                        }));
                        assert!(first, "nothing to wait for");
                        began.send(()).unwrap();
                        block_on(shutdown)
                    }
                });
                shutdown_began.recv_timeout(HANG_LIMIT).unwrap();
                drop(runtime);
                let report = waiting.join().expect("the waiting thread panicked");
                // Open when it began, then cut by the selector's close.
                assert_eq!(report.cut, 1, "round {round}: {report:?}");
                report
            }
        };
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "round {round}: waited the grace"
        );
        assert_eq!(report.finished, 0, "round {round}: {report:?}");
        assert!(selector.is_closed() && listener.is_closed());
        drop(pair);
    }
}

/// Timers of a selector with a runtime of its own run there, whatever polls the futures: a read
/// and a write under `socket_timeout`, and a connect under `connect_timeout`, polled by a plain
/// thread, fail with their timeouts.
#[test]
fn timeouts_fire_when_no_tokio_runtime_polls() {
    const LIMIT: Duration = Duration::from_millis(200);
    // (At most 15 bytes: the kernel's limit for a thread's name.)
    const THREAD: &str = "timeouts-fire";
    let _serial = one_at_a_time();
    let selector = SelectorManager::builder()
        .worker_threads(1)
        .thread_name(THREAD)
        .build()
        .unwrap();
    block_on(async {
        let listener = a_socket(&selector)
            .tcp()
            .socket_timeout(LIMIT)
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let _client = a_socket(&selector)
            .tcp()
            .connect(listener.local_address())
            .await
            .unwrap();
        let mut server_side = listener.accept().await.unwrap();
        let mut input = server_side.open_read_channel().unwrap();
        let started = Instant::now();
        let err = input.read_line(64, LineEnding::Default).await.unwrap_err();
        assert!(matches!(err, net_io::Error::Timeout), "{err:?}");
        assert!(started.elapsed() >= LIMIT);

        let mut output = server_side.open_write_channel(false).unwrap();
        let chunk = vec![7u8; 64 * 1024];
        let mut written = 0;
        let err = loop {
            match output.write_fully(&chunk).await {
                Ok(()) => written += 1,
                Err(e) => break e,
            }
            assert!(
                written < 4096,
                "256 MiB written to a peer that reads nothing"
            );
        };
        assert!(matches!(err, net_io::Error::Timeout), "{err:?}");

        // A full backlog keeps a connect pending.
        let full = a_socket(&selector)
            .tcp()
            .backlog(0)
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let mut held = Vec::new();
        let err = loop {
            match a_socket(&selector)
                .tcp()
                .connect_timeout(LIMIT)
                .connect(full.local_address())
                .await
            {
                Ok(socket) => held.push(socket),
                Err(e) => break e,
            }
            assert!(held.len() < 64, "connects never stalled");
        };
        assert!(matches!(err, Error::Timeout), "{err:?}");
    });
    selector.close();
    drop(selector);
    // The selector's runtime shuts down in the background, its thread releasing the runtime's
    // descriptors as it ends: wait for that, so that none goes away while the next test of
    // this file counts descriptors.
    threads_end(THREAD);
}

/// The watch a selector keeps on its runtime's end leaves no task behind once the selector is
/// dropped or closed: a program that makes selectors for ever does not grow.
#[test]
fn selectors_dropped_or_closed_leave_no_task_behind() {
    let _serial = one_at_a_time();
    let runtime = current_thread();
    runtime.block_on(async {
        let metrics = tokio::runtime::Handle::current().metrics();
        let before = metrics.num_alive_tasks();
        for close in [false, true] {
            for _ in 0..100 {
                let selector = SelectorManager::new();
                if close {
                    selector.close();
                }
            }
        }
        within(async {
            while metrics.num_alive_tasks() != before {
                tokio::task::yield_now().await;
            }
        })
        .await;
    });
}

/// A connect to a host name (its attempts raced, with a delay between them) still pending,
/// polled by another runtime, when the runtime of its `SelectorManager::new()` selector ends: it
/// fails with `SelectorClosed`, never a panic on the dead runtime's timer.
#[test]
fn a_connect_to_a_host_name_pending_when_the_runtime_ends_fails_without_a_panic() {
    let _serial = one_at_a_time();
    // The listener whose full backlog keeps a connect pending, on a selector that lives on.
    let keeper = SelectorManager::builder()
        .worker_threads(1)
        .build()
        .unwrap();
    let other = current_thread();
    let dying = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let selector = dying.block_on(async { SelectorManager::new() });
    let (listener, _fillers, mut pending) = other.block_on(async {
        let listener = net_tests::loopback::never_accepting_listener(&keeper).await;
        let port = listener.port().unwrap();
        let mut fillers = Vec::new();
        let pending = loop {
            let mut attempt = Box::pin(a_socket(&selector).tcp().connect(("localhost", port)));
            match tokio::time::timeout(Duration::from_millis(600), &mut attempt).await {
                Ok(socket) => fillers.push(socket.unwrap()),
                Err(_) => break attempt,
            }
            assert!(fillers.len() < 64, "connects never stalled");
        };
        (listener, fillers, pending)
    });
    drop(dying);
    let connected = other.block_on(within(&mut pending));
    assert!(
        matches!(connected, Err(Error::SelectorClosed)),
        "{connected:?}"
    );
    drop((pending, listener));
    keeper.close();
}

/// After the runtime of a `SelectorManager::new()` selector ended, binding or connecting through
/// it with a host name (resolved on a blocking thread of that runtime) fails with
/// `SelectorClosed`, as with an address: not with a name-resolution error.
#[test]
fn binding_to_a_host_name_after_the_runtime_ended_is_selector_closed() {
    let _serial = one_at_a_time();
    let dying = current_thread();
    let selector = dying.block_on(async { SelectorManager::new() });
    drop(dying);
    current_thread().block_on(async {
        let tcp = within(a_socket(&selector).tcp().bind(("localhost", 0))).await;
        assert!(matches!(tcp, Err(Error::SelectorClosed)), "{tcp:?}");
        let udp = within(a_socket(&selector).udp().bind(("localhost", 0))).await;
        assert!(matches!(udp, Err(Error::SelectorClosed)), "{udp:?}");
        let connected = within(a_socket(&selector).udp().connect(("localhost", 9))).await;
        assert!(
            matches!(connected, Err(Error::SelectorClosed)),
            "{connected:?}"
        );
    });
}
