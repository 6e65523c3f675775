//! Running out of descriptors at accept: the accept loop backs off instead of failing or
//! spinning, and resumes when descriptors are free.
//!
//! The check runs in a child process (this test binary again) under `ulimit -n 64`, so that the
//! low limit touches nothing else.

use std::time::Duration;

use net_sockets::{Error, SelectorManager};
use net_tests::harness::{rerun_self_with_fd_limit, run_if_child};
use net_tests::loopback::{connect, tcp_listener};
use net_tests::probe::{CpuClock, exhaust_descriptors};
use net_tests::within;

const CHILD_ENV: &str = "NET_TESTS_EMFILE_CHILD";

#[test]
fn accept_survives_descriptor_exhaustion() {
    rerun_self_with_fd_limit("emfile_child", CHILD_ENV, 64, "emfile child passed");
}

#[test]
fn emfile_child() {
    run_if_child(CHILD_ENV, async {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        // Two connections wait in the backlog; their client descriptors exist already.
        let _a = connect(&selector, listener.local_address()).await;
        let _b = connect(&selector, listener.local_address()).await;
        let cpu = CpuClock::open();
        let filler = exhaust_descriptors(|| std::fs::File::open("/dev/null"));
        let cpu_before = cpu.ticks();
        let mut accept = Box::pin(listener.accept());
        let early = tokio::time::timeout(Duration::from_millis(500), &mut accept).await;
        assert!(
            early.is_err(),
            "accept returned while out of descriptors: {early:?}"
        );
        let spent = cpu.ticks() - cpu_before;
        // A spinning loop burns the whole 500 ms (50 ticks at 100 Hz).
        assert!(
            spent < 15,
            "accept loop used {spent} ticks of CPU in 500 ms"
        );
        drop(filler);
        let first = within(accept).await.unwrap();
        let second = within(listener.accept()).await.unwrap();
        assert_ne!(first.remote_address(), second.remote_address());
        println!("emfile child passed");
    });
}

const RUNTIME_END_CHILD_ENV: &str = "NET_TESTS_EMFILE_RUNTIME_END_CHILD";

/// The runtime of a selector made by `SelectorManager::new()` ends while an `accept`, polled
/// by another runtime, pauses because the process is out of descriptors: the `accept` fails
/// with the selector's close, never a panic on the dead runtime's timer (its pause is a sleep
/// of that runtime).
#[test]
fn an_accept_pausing_out_of_descriptors_ends_with_its_runtime_without_a_panic() {
    rerun_self_with_fd_limit(
        "runtime_end_child",
        RUNTIME_END_CHILD_ENV,
        64,
        "runtime end child passed",
    );
}

#[test]
fn runtime_end_child() {
    if std::env::var_os(RUNTIME_END_CHILD_ENV).is_none() {
        return;
    }
    let selectors = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (selector, listener) = selectors.block_on(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        (selector, listener)
    });
    // A connection waits in the backlog.
    let _client = std::net::TcpStream::connect(listener.local_address().to_string()).unwrap();
    let other = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let filler = exhaust_descriptors(|| std::fs::File::open("/dev/null"));
    let mut accept = Box::pin(listener.accept());
    let early = other
        .block_on(async { tokio::time::timeout(Duration::from_millis(300), &mut accept).await });
    assert!(
        early.is_err(),
        "accept returned while out of descriptors: {early:?}"
    );
    // The selector's runtime ends while the accept pauses.
    drop(selectors);
    let accepted = other.block_on(async { within(accept).await });
    assert!(
        matches!(accepted, Err(Error::SelectorClosed)),
        "{accepted:?}"
    );
    assert!(selector.is_closed());
    drop(filler);
    println!("runtime end child passed");
}
