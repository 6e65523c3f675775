//! A connection closed with answers held back by flush coalescing, which its peer does not
//! take: a graceful shutdown's cut at the end of its grace period resets it, and the log says
//! so, once (the `closed` event, logged as the close began, said `reset=false`).

use std::io::Write as _;
use std::time::Duration;

use net_io::LineEnding;
use net_sockets::SelectorManager;
use net_tests::logs::Every;
use net_tests::loopback::{accepted_with_full_buffers, tcp_listener};
use net_tests::within;

/// The peer pipelines two requests and reads nothing (the kernel's buffers are full): the
/// answer to the first is held back while the second waits to be read, the close leaves it
/// to a task, and the listener's shutdown (or the selector's) with no grace period cuts it: a
/// reset, logged once.
#[test]
fn a_shutdown_that_resets_held_back_answers_logs_the_reset() {
    for by_selector in [false, true] {
        a_shutdown_resets_held_back_answers(by_selector);
    }
}

fn a_shutdown_resets_held_back_answers(by_selector: bool) {
    let events = Every::default();
    let _default = tracing::subscriber::set_default(events.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let selector = SelectorManager::new();
        let server = tcp_listener(&selector).await;
        let (socket, mut peer) = accepted_with_full_buffers(&server).await;
        peer.write_all(b"first\nsecond\n").unwrap();
        let mut connection = socket.connection().unwrap();
        let line = within(connection.input.read_line(100, LineEnding::Default)).await;
        assert_eq!(line.unwrap().as_deref(), Some("first"));
        connection
            .output
            .write_string_utf8("an answer\n")
            .await
            .unwrap();
        connection.output.flush().await.unwrap();
        connection.socket.close();
        assert_eq!(server.stats().open, 1, "the held-back answer keeps it open");
        let report = if by_selector {
            within(selector.shutdown(Duration::ZERO)).await
        } else {
            within(server.shutdown(Duration::ZERO)).await
        };
        assert_eq!(
            (report.finished, report.cut),
            (0, 1),
            "{by_selector}: {report:?}"
        );
        drop(peer);
    });
    drop(runtime);
    let events = events.lines();
    let resets = events
        .iter()
        .filter(|line| *line == "held-back answers not delivered: connection reset")
        .count();
    assert_eq!(
        resets, 1,
        "by_selector {by_selector}: the reset is logged once: {events:?}"
    );
}
