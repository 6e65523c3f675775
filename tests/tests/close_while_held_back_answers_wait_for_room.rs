//! A connection's close while a task of flush coalescing waits for room to send held-back
//! answers (its peer reads nothing, the kernel's buffers are full, and the application's reader
//! waits for the next request): that task holds the socket across its wait, not for the moment
//! of a poll, so a close that resets the connection must not wait for it to let go (it does so
//! as the close wakes it), which would stall the closing thread, a runtime thread, each time.

use std::io::Write as _;
use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_sockets::SelectorManager;
use net_tests::loopback::{accepted_with_full_buffers, tcp_listener};
use net_tests::{pending_after_one_poll, within};

/// The longest a close waits for operations in flight on other threads (the library's
/// `LET_GO`): a close that waited for the task would take at least this long.
const LET_GO: Duration = Duration::from_millis(50);

/// One round: how long the reset close took.
async fn reset_close_with_a_waiting_uncork_task() -> Duration {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut socket, mut peer) = accepted_with_full_buffers(&listener).await;
    // Two requests: the answer to the first is held back while the second is unread.
    peer.write_all(b"one\ntwo\n").unwrap();
    let mut input = socket.open_read_channel().unwrap();
    let mut output = socket.open_write_channel(false).unwrap();
    let one = within(input.read_line(64, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(one.as_deref(), Some("one"));
    output.write_string_utf8("answer\n").await.unwrap();
    within(output.flush()).await.unwrap();
    let two = within(input.read_line(64, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(two.as_deref(), Some("two"));
    // The reader waits for a third request: the held-back answer must go, the socket has no
    // room, and a task waits for room (polled by the yields below, on this thread's runtime).
    let third = input.read_line(64, LineEnding::Default);
    tokio::pin!(third);
    assert!(pending_after_one_poll(third.as_mut()).await);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    // Bytes written and not flushed: the close resets the connection.
    output.write_string_utf8("unflushed\n").await.unwrap();
    let start = Instant::now();
    socket.close();
    let took = start.elapsed();
    drop(peer);
    took
}

/// A reset close with a coalescing task waiting for room returns without waiting for that task
/// (three rounds: a round slowed by this host can take that long on its own, not all three).
#[tokio::test]
async fn a_reset_close_does_not_wait_for_a_task_waiting_for_room() {
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let took = reset_close_with_a_waiting_uncork_task().await;
        rounds.push(took);
        if took < LET_GO {
            return;
        }
    }
    panic!("every close waited for the task that sends held-back answers: {rounds:?}");
}
