//! `coming_from_ktor.md`'s `flush()` row held to the code: a write channel without auto-flush
//! holds its writes until its 8 KiB buffer fills (then it writes them out, no `flush` asked),
//! not only until a write does not fit the room left, as the row said. A write that brings the
//! buffer to exactly 8 KiB reaches the reader; one byte less stays held.

use net_io::ByteChannel;
use net_sockets::SelectorManager;
use net_tests::loopback::{connected_pair, tcp_listener};
use net_tests::{payload, pending_after_one_poll, within};

/// The write channel's buffer, as `net_io::ByteWriteChannel`'s docs give it.
const BUFFER: usize = 8 * 1024;

/// Over an in-memory pipe: 8 KiB less one byte stay in the writer's buffer; the byte that
/// fills it sends all 8 KiB, without a `flush`.
#[tokio::test]
async fn a_write_that_fills_the_buffer_writes_it_out_without_a_flush() {
    let (mut output, mut input) = ByteChannel::new(false);
    let data = payload(BUFFER);
    for chunk in data[..BUFFER - 1].chunks(1024) {
        within(output.write_fully(chunk)).await.unwrap();
    }
    {
        let nothing_yet = std::pin::pin!(input.await_content(1));
        assert!(
            pending_after_one_poll(nothing_yet).await,
            "8 KiB less one byte, no flush: the reader got bytes"
        );
    }
    within(output.write_fully(&data[BUFFER - 1..]))
        .await
        .unwrap();
    let got = within(input.read_bytes(BUFFER)).await.unwrap();
    assert_eq!(&got[..], &data[..]);
}

/// Over TCP, as the row speaks of a socket's write channel: the 8 KiB that fill the buffer
/// reach the peer without a `flush`.
#[tokio::test]
async fn a_socket_write_channel_sends_a_full_buffer_without_a_flush() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut client, mut server) = connected_pair(&selector, &listener).await;
    let mut output = client.open_write_channel(false).unwrap();
    let mut input = server.open_read_channel().unwrap();
    let data = payload(BUFFER);
    for chunk in data.chunks(1024) {
        within(output.write_fully(chunk)).await.unwrap();
    }
    let got = within(input.read_bytes(BUFFER)).await.unwrap();
    assert_eq!(&got[..], &data[..]);
    client.close();
    server.close();
}
