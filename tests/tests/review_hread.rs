//! Read side review round (hread): `ByteReadChannel`'s look-ahead.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use net_io::{ByteChannel, LineEnding};
use net_tests::within;

/// Polls `future` once: its output if it completed, `None` if it is still pending (then dropped).
async fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// `skip_if_found` answers `false` as soon as the bytes buffered differ from the pattern, without
/// waiting for as many bytes as the pattern has: a client that sent a short command ("QUIT")
/// and waits for the answer is not kept waiting by a server checking for a longer prefix (a
/// PROXY header's). (Before, it waited for 12 bytes that never came.) Nothing is consumed;
/// a prefix of the pattern still waits for more.
#[tokio::test]
async fn skip_if_found_answers_as_soon_as_the_bytes_differ() {
    let (mut output, mut input) = ByteChannel::new(true);
    within(output.write_fully(b"QUIT\n")).await.unwrap();
    let found = poll_once(input.skip_if_found(b"PROXY TCP4 ")).await;
    assert!(matches!(found, Some(Ok(false))), "{found:?}");
    assert_eq!(
        within(input.read_line(64, LineEnding::Default))
            .await
            .unwrap()
            .as_deref(),
        Some("QUIT")
    );
    // A prefix of the pattern cannot decide yet.
    within(output.write_fully(b"PROXY")).await.unwrap();
    assert!(
        poll_once(input.skip_if_found(b"PROXY TCP4 "))
            .await
            .is_none()
    );
    within(output.write_fully(b" TCP6 ")).await.unwrap();
    let found = poll_once(input.skip_if_found(b"PROXY TCP4 ")).await;
    assert!(matches!(found, Some(Ok(false))), "{found:?}");
    assert_eq!(input.available_for_read(), 11);
    assert!(within(input.skip_if_found(b"PROXY TCP6 ")).await.unwrap());
    assert_eq!(input.total_bytes_read(), 16);
}
