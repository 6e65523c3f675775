//! A write channel dropped with bytes buffered after its transport's owner told the shared
//! state that the connection failed ([`WriteState::fail`]: a socket, once a read reported the
//! peer's reset) logs at `debug`, not the `warn` of a forgotten flush; after the owner's own
//! end ([`WriteState::end`]: a close), a forgotten flush still warns, also when the failure
//! comes after that end.

mod support;

use std::io;

use net_io::{ByteWriteChannel, WriteState};
use support::Capture;

/// A channel with `b"an answer"` buffered, its state shared.
async fn with_an_answer_buffered() -> (ByteWriteChannel, WriteState) {
    let state = WriteState::new();
    let mut output = ByteWriteChannel::new(tokio::io::sink(), false);
    output.share_state(state.clone());
    output.write_fully(b"an answer").await.unwrap();
    (output, state)
}

fn levels(events: &[(tracing::Level, String)]) -> Vec<tracing::Level> {
    events.iter().map(|(level, _)| *level).collect()
}

#[tokio::test]
async fn a_drop_after_the_connection_failed_logs_at_debug() {
    let (output, state) = with_an_answer_buffered().await;
    state.fail(io::Error::from(io::ErrorKind::ConnectionReset));
    let events = Capture::during(|| drop(output));
    assert_eq!(levels(&events), [tracing::Level::DEBUG], "{events:?}");
    assert!(state.lost_bytes());
}

#[tokio::test]
async fn a_drop_after_the_owner_s_end_still_warns_whatever_failed_after() {
    let (output, state) = with_an_answer_buffered().await;
    state.end(io::Error::from(io::ErrorKind::NotConnected));
    state.fail(io::Error::from(io::ErrorKind::ConnectionReset));
    let events = Capture::during(|| drop(output));
    assert_eq!(levels(&events), [tracing::Level::WARN], "{events:?}");
}
