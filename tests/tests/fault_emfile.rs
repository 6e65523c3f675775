//! Fault suite, descriptors: a server under a low descriptor limit is flooded with connections
//! past it. While it is out of descriptors it does not spin (its CPU time stays low), a client
//! connected before the flood is answered throughout, and once descriptors are free again it
//! accepts and serves new clients.
//!
//! `sockets_emfile.rs` checks the accept back-off alone; this adds the flood and the
//! well-behaved connection. The check runs in a child process (this test binary again) under
//! `ulimit -n 64`, so that the low limit touches nothing else.

use std::time::Duration;

use net_sockets::SelectorManager;
use net_tests::fault::{GoodClient, LineServer};
use net_tests::harness::{rerun_self_with_fd_limit, run_if_child};
use net_tests::probe::{CpuClock, exhaust_descriptors};

const CHILD_ENV: &str = "NET_TESTS_FAULT_EMFILE_CHILD";

#[test]
fn a_flood_past_the_descriptor_limit_neither_spins_nor_starves_others() {
    let text = rerun_self_with_fd_limit("flood_child", CHILD_ENV, 64, "flood child passed");
    for line in text.lines().filter(|l| l.contains("ticks")) {
        eprintln!("child: {line}");
    }
}

#[test]
fn flood_child() {
    run_if_child(CHILD_ENV, async {
        let selector = SelectorManager::new();
        let server = LineServer::start(&selector, 1024, |b| b).await;
        let port = server.port();
        let mut good = GoodClient::connect(&selector, port).await;
        good.round_trip("before the flood").await;
        let cpu = CpuClock::open();

        // Connect until this process has no descriptor left: every connection waits in the
        // backlog (its server side needs a descriptor that does not exist), and the next
        // `socket()` fails with EMFILE.
        let flood = exhaust_descriptors(|| std::net::TcpStream::connect(("127.0.0.1", port)));
        assert!(flood.len() > 10, "only {} connections", flood.len());

        // At the limit, for about half a second: the good client is answered every 50 ms, and
        // the accept loop, which cannot accept, must not spin.
        let cpu_before = cpu.ticks();
        let started = std::time::Instant::now();
        for i in 0..10 {
            good.round_trip(&format!("at the limit {i}")).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let spent = cpu.ticks() - cpu_before;
        let elapsed = started.elapsed();
        println!(
            "{} flooding connections; {spent} ticks of CPU in {elapsed:?} at the limit",
            flood.len()
        );
        // A spinning accept loop burns all of it (50 ticks at 100 Hz for 500 ms).
        assert!(
            spent < 15,
            "{spent} ticks of CPU in {elapsed:?} at the limit"
        );

        // Descriptors free again: the server accepts and serves new clients.
        drop(flood);
        let mut fresh = GoodClient::connect(&selector, port).await;
        fresh.round_trip("after the flood").await;
        good.round_trip("still here").await;
        fresh.finish().await;
        good.finish().await;
        println!("flood child passed");
    });
}
