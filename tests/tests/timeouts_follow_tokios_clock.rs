//! Timeouts as a user's paused-clock test sees them (`#[tokio::test(start_paused = true)]`,
//! `tokio::time::pause`, `advance`): every timer the libraries start for a socket is a timer of
//! its selector's runtime, so a selector made in the test's runtime follows the test's clock,
//! and one with a runtime of its own keeps the system's clock (the guide's step 3 says so).
//!
//! `runtimes_and_harnesses` checks reads under `socket_timeout`, the PROXY header timeout, the
//! TLS handshake timeouts, `close_gracefully` and the graceful shutdowns there; this file
//! checks the rest: writes and flushes under `socket_timeout`, `connect_timeout`, a timeout
//! driven by `advance` alone (no auto-advance), and the selector of a runtime of its own. Each
//! paused runtime runs on a thread of its own, watched on the real clock (see
//! [`net_tests::paused`]): a timer on the wall clock would hang the test for an hour, which the
//! watch turns into a failure.

use std::time::Duration;

use net_io::LineEnding;
use net_sockets::{Error, SelectorManager, a_socket};
use net_tests::loopback::{
    accepted_with_full_buffers, connected_pair, never_accepting_listener, tcp_listener_with,
};
use net_tests::paused::{exactly, paused};
use tokio::time::Instant;

/// An hour: a timer on the wall clock would not fire within a test's watch.
const HOUR: Duration = Duration::from_secs(3600);

/// Pauses the runtime's clock (its set-up done): "now", frozen.
fn pause_now() -> Instant {
    tokio::time::pause();
    Instant::now()
}

/// `socket_timeout` on writes, on a paused clock: a `write_fully` that fills the kernel's
/// buffers towards a peer that reads nothing, and a `flush` of a few bytes behind full
/// buffers, each fail with `Timeout` once the clock jumped an hour.
#[test]
fn writes_and_flushes_under_socket_timeout_fire_on_a_paused_clock() {
    for flush in [false, true] {
        paused(move || async move {
            let selector = SelectorManager::new();
            let listener = tcp_listener_with(&selector, |b| b.socket_timeout(HOUR)).await;
            let (mut server, _peer) = accepted_with_full_buffers(&listener).await;
            let mut output = server.open_write_channel(false).unwrap();
            let started = pause_now();
            let written = if flush {
                output.write_fully(b"bye\n").await.unwrap();
                output.flush().await
            } else {
                output.write_fully(&vec![7u8; 4 << 20]).await
            };
            assert!(
                matches!(written, Err(net_io::Error::Timeout)),
                "flush {flush}: {written:?}"
            );
            exactly(started.elapsed(), HOUR);
            selector.close();
        });
    }
}

/// `connect_timeout` on a paused clock: a connect to a listener whose backlog is full (its SYN
/// dropped) fails with `Error::Timeout` once the clock jumped an hour.
#[test]
fn connect_timeout_fires_on_a_paused_clock() {
    paused(|| async {
        let selector = SelectorManager::new();
        let full = never_accepting_listener(&selector).await;
        // Fill the backlog first, on the real clock (those connects complete in the kernel).
        let mut fillers = Vec::new();
        loop {
            let attempt = a_socket(&selector)
                .tcp()
                .connect_timeout(Duration::from_secs(1))
                .connect(full.local_address())
                .await;
            match attempt {
                Ok(socket) => fillers.push(socket),
                Err(Error::Timeout) => break,
                Err(e) => panic!("{e:?}"),
            }
            assert!(fillers.len() < 64, "the backlog never filled");
        }
        let started = pause_now();
        let attempt = a_socket(&selector)
            .tcp()
            .connect_timeout(HOUR)
            .connect(full.local_address())
            .await;
        assert!(matches!(attempt, Err(Error::Timeout)), "{attempt:?}");
        exactly(started.elapsed(), HOUR);
        selector.close();
    });
}

/// `advance` alone drives `socket_timeout`, as a test that steps its clock expects: the clock
/// never jumps by itself here (the test's task always has work), a read of a silent peer waits
/// through an advance to just before its deadline, and fails with `Timeout` after the advance
/// past it, with no real waiting.
#[test]
fn advance_drives_socket_timeout() {
    paused(|| async {
        let selector = SelectorManager::new();
        let listener = tcp_listener_with(&selector, |b| b.socket_timeout(HOUR)).await;
        let (_client, mut server) = connected_pair(&selector, &listener).await;
        let mut input = server.open_read_channel().unwrap();
        let started = pause_now();
        let reading = tokio::spawn(async move {
            let read = input.read_line(64, LineEnding::Default).await;
            (read, Instant::now())
        });
        // The read starts waiting, its timer set from the paused "now".
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        tokio::time::advance(HOUR - Duration::from_millis(10)).await;
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        assert!(!reading.is_finished(), "the read ended before its deadline");
        tokio::time::advance(Duration::from_millis(20)).await;
        let (read, ended) = reading.await.unwrap();
        assert!(matches!(read, Err(net_io::Error::Timeout)), "{read:?}");
        let waited = ended - started;
        assert!(
            waited > HOUR - Duration::from_millis(10) && waited <= HOUR + Duration::from_millis(10),
            "timed out after {waited:?} on the paused clock"
        );
        selector.close();
    });
}

/// A selector with a runtime of its own (`SelectorManager::builder`), used by a test whose
/// clock is paused: its sockets' timers run on its runtime, whose clock is the system's, so the
/// test's `advance` does not drive them (as documented): an hour's advance leaves a read under
/// a short `socket_timeout` waiting, and it times out once that time passed for real.
#[test]
fn a_selector_of_its_own_runtime_keeps_the_systems_clock() {
    const SHORT: Duration = Duration::from_millis(300);
    paused(|| async {
        let selector = SelectorManager::builder()
            .worker_threads(1)
            .build()
            .unwrap();
        let listener = tcp_listener_with(&selector, |b| b.socket_timeout(SHORT)).await;
        let (_client, mut server) = connected_pair(&selector, &listener).await;
        let mut input = server.open_read_channel().unwrap();
        pause_now();
        let real_start = std::time::Instant::now();
        let reading = tokio::spawn(async move { input.read_line(64, LineEnding::Default).await });
        tokio::task::yield_now().await;
        tokio::time::advance(HOUR).await;
        tokio::task::yield_now().await;
        if real_start.elapsed() < SHORT {
            assert!(
                !reading.is_finished(),
                "the test's clock drove the read's timer"
            );
        }
        let read = reading.await.unwrap();
        assert!(matches!(read, Err(net_io::Error::Timeout)), "{read:?}");
        assert!(
            real_start.elapsed() >= SHORT,
            "timed out after {:?} of real time",
            real_start.elapsed()
        );
        selector.close();
    });
}
