//! Fault suite, memory: a 100 MiB "line" without a newline ends with `TooLongLine` after the
//! limit, the server's memory stays bounded while all 100 MiB pass through it (it drains them),
//! and a well-behaved client of the same server is answered meanwhile.
//!
//! A test binary of its own with a single test, so that no other test's memory shows in this
//! process's resident set size.

use net_sockets::SelectorManager;
use net_tests::fault::{GoodClient, LineServer};
use net_tests::probe::{peak_rss_kib, reset_peak_rss, rss_kib};
use net_tests::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: usize = 8192;
const HUGE: u64 = 100 * 1024 * 1024;
/// How much the peak resident set may grow while 100 MiB pass through: buffers, the runtime's
/// threads, allocator slack. Buffering the line would add 100 MiB.
const MAX_GROWTH_KIB: u64 = 24 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_line_is_too_long_and_memory_stays_bounded() {
    let selector = SelectorManager::new();
    let mut server = LineServer::start(&selector, LIMIT, |b| b).await;
    let mut good = GoodClient::connect(&selector, server.port()).await;
    good.round_trip("before").await;

    let peak_reset = reset_peak_rss();
    let rss_before = rss_kib();
    let hwm_before = peak_rss_kib();

    let mut hostile = server.raw_client().await;
    let (mut hostile_in, mut hostile_out) = hostile.split();
    let chunk = vec![b'x'; 64 * 1024];
    let send = async {
        let mut sent = 0u64;
        while sent < HUGE {
            hostile_out.write_all(&chunk).await.unwrap();
            sent += chunk.len() as u64;
        }
        hostile_out.shutdown().await.unwrap();
    };
    let answers = async {
        let mut answers = Vec::new();
        hostile_in.read_to_end(&mut answers).await.unwrap();
        answers
    };
    let talk = async {
        for i in 0..20 {
            good.round_trip(&format!("during {i}")).await;
        }
    };
    let ((), answers, ()) = within(async { tokio::join!(send, answers, talk) }).await;
    assert_eq!(answers, b"Please enter your name\n");

    let outcome = server.next_outcome().await;
    assert!(
        matches!(
            outcome.end,
            Err(net_io::Error::TooLongLine { limit: LIMIT })
        ),
        "{:?}",
        outcome.end
    );
    assert!(outcome.lines.is_empty());
    // Nothing lost: the drain saw every byte of the line.
    assert_eq!(outcome.drained.unwrap().unwrap(), HUGE);

    let hwm_after = peak_rss_kib();
    let growth = hwm_after.saturating_sub(if peak_reset { rss_before } else { hwm_before });
    eprintln!(
        "VmRSS before {rss_before} KiB, VmHWM before {hwm_before} KiB, after {hwm_after} KiB \
         (peak reset: {peak_reset}); growth {growth} KiB for a 100 MiB line"
    );
    assert!(
        growth < MAX_GROWTH_KIB,
        "peak RSS grew by {growth} KiB while a 100 MiB line passed"
    );

    good.round_trip("after").await;
    server.finish_good(good).await;
}
