//! Running out of descriptors at accept: the accept loop backs off instead of failing or
//! spinning, and resumes when descriptors are free.
//!
//! The check runs in a child process (this test binary again) under `ulimit -n 64`, so that the
//! low limit touches nothing else.

use std::time::Duration;

use net_sockets::SelectorManager;
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
