//! `ByteReadChannel`'s look-ahead and the skip of an over-long
//! line after a read dropped while it waits.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use net_io::{ByteChannel, Error, LineEnding};
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

/// `discard`, `discard_exact` and `copy_to` dropped while they wait, before they took a byte
/// (a lost `select!` branch, a timeout), leave the skip of an over-long line due, as the read
/// docs say of every read that took nothing and as the cancel-safe reads do: the next line
/// read still skips the rest of that line and does not hand its tail to the server as a line
/// of its own. (Before, they dropped the skip when they started, and the next line read
/// returned "QUIT".) Once they take bytes, those bytes are read as they are.
#[tokio::test]
async fn a_discard_or_copy_dropped_before_it_took_a_byte_keeps_the_skip_of_an_over_long_line() {
    for read in ["discard", "discard_exact", "copy_to", "copy_and_close"] {
        let (mut output, mut input) = ByteChannel::new(true);
        within(output.write_fully(b"toolong")).await.unwrap();
        let too_long = within(input.read_line(4, LineEnding::Default)).await;
        assert!(
            matches!(too_long, Err(Error::TooLongLine { limit: 4 })),
            "{too_long:?}"
        );
        // A line read skips what came of the over-long line, then waits: dropped there.
        assert!(
            poll_once(input.read_line(100, LineEnding::Default))
                .await
                .is_none()
        );
        assert_eq!(input.available_for_read(), 0);
        let (mut sink, _sink_input) = ByteChannel::new(true);
        let pending = match read {
            "discard" => poll_once(input.discard(4)).await.is_none(),
            "discard_exact" => poll_once(input.discard_exact(4)).await.is_none(),
            "copy_to" => poll_once(input.copy_to(&mut sink, 4)).await.is_none(),
            _ => poll_once(input.copy_and_close(&mut sink, 4))
                .await
                .is_none(),
        };
        assert!(pending, "{read} waits");
        within(output.write_fully(b"QUIT\nnext\n")).await.unwrap();
        assert_eq!(
            within(input.read_line(100, LineEnding::Default))
                .await
                .unwrap()
                .as_deref(),
            Some("next"),
            "after a dropped {read}"
        );
    }
    // Bytes taken: the over-long line's rest is read as it is, by the discard and after it.
    let (mut output, mut input) = ByteChannel::new(true);
    within(output.write_fully(b"toolong")).await.unwrap();
    assert!(
        within(input.read_line(4, LineEnding::Default))
            .await
            .is_err()
    );
    within(output.write_fully(b"QUIT\nnext\n")).await.unwrap();
    assert_eq!(within(input.discard(2)).await.unwrap(), 2);
    assert_eq!(
        within(input.read_line(100, LineEnding::Default))
            .await
            .unwrap()
            .as_deref(),
        Some("olongQUIT")
    );
}
