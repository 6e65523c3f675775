//! Guards of the ping-pong hot path's shortcuts (review hy-perf): what a read that skips a step
//! must still do.

use net_sockets::SelectorManager;
use net_tests::loopback::{connected_pair, tcp_listener};
use net_tests::{Ticker, within};
use tokio::io::AsyncReadExt;

/// A task whose reads never have to wait (the socket always holds input) still lets the other
/// tasks of its thread run: each read takes a unit of tokio's cooperative budget, as tokio's
/// own reads do, so the task yields when the budget is spent. (A read after one that filled its
/// buffer tries the socket first, without asking the reactor, which is where tokio takes the
/// unit otherwise.)
#[tokio::test(flavor = "current_thread")]
async fn a_reader_that_never_waits_still_yields_to_other_tasks() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut client, server) = connected_pair(&selector, &listener).await;
    let mut output = client.open_write_channel(true).unwrap();
    // One send: on loopback the 4,096 bytes arrive together.
    output.write_fully(&[7; 4096]).await.unwrap();
    let mut input = server.into_stream().unwrap();
    let mut byte = [0; 1];
    // The first read may wait for the bytes; once it has one, the other 4,095 are there.
    within(input.read_exact(&mut byte)).await.unwrap();
    let ticker = Ticker::spawn();
    // 4,095 one-byte reads, each filling its buffer: none of them waits.
    for _ in 0..4095 {
        input.read_exact(&mut byte).await.unwrap();
        assert_eq!(byte, [7]);
    }
    assert!(
        ticker.ticks() > 0,
        "the reading task never yielded to the ticker"
    );
}
