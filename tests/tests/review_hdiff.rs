//! Review of this pass's changes (helper `hdiff`): cases the changes missed.

use std::io::ErrorKind;
use std::time::Duration;

use net_io::ByteWriteChannel;
use net_sockets::SelectorManager;
use net_tests::fault::raw_peer_of;
use net_tests::loopback::tcp_listener_with;
use net_tests::{payload, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Writes `chunk` with `AsyncWrite::write` until a write times out having taken nothing (the
/// peer reads nothing); returns the bytes taken, in order.
async fn write_until_a_write_without_effect_times_out(
    output: &mut ByteWriteChannel,
    chunk: &[u8],
) -> Vec<u8> {
    within(async {
        let mut sent = Vec::new();
        loop {
            match output.write(chunk).await {
                Ok(n) => sent.extend_from_slice(&chunk[..n]),
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e:?}");
                    assert!(!output.is_closed_for_write(), "the call had no effect");
                    break sent;
                }
            }
        }
    })
    .await
}

/// A `write_fully` larger than the channel's buffer (it goes to the socket directly) that times
/// out having taken nothing had no effect: once a flush went through, `close()` sends everything
/// written, then FIN, as guarantees.md's write-timeout row says. (Before, the direct write left
/// the channel's shared state saying "unsent" when the socket's write timed out, so the close
/// reset the connection and the peer lost what it had not read yet.)
#[tokio::test]
async fn a_direct_write_that_timed_out_without_effect_then_a_flush_ends_with_fin() {
    let selector = SelectorManager::new();
    let listener =
        tcp_listener_with(&selector, |b| b.socket_timeout(Duration::from_millis(200))).await;
    let chunk = payload(64 * 1024);
    let (mut peer, mut socket) = raw_peer_of(&listener).await;
    let mut output = socket.open_write_channel(false).unwrap();
    let expected = write_until_a_write_without_effect_times_out(&mut output, &chunk).await;
    // The socket takes nothing more: this direct write times out before it takes a byte.
    let e = within(output.write_fully(&chunk)).await.unwrap_err();
    assert!(matches!(e, net_io::Error::Timeout), "{e:?}");
    assert!(!output.is_closed_for_write(), "the call had no effect");
    assert_eq!(output.total_bytes_written(), expected.len() as u64);
    let reader = tokio::spawn(async move {
        let mut received = Vec::new();
        peer.read_to_end(&mut received).await.map(|_| received)
    });
    within(output.flush())
        .await
        .expect("the flush goes through");
    socket.close();
    let received = within(reader)
        .await
        .unwrap()
        .expect("every byte written, then a clean end");
    assert_eq!(received.len(), expected.len(), "each byte once");
    assert!(received == expected);
}
