//! Fault suite, lines: hostile line input over real loopback sockets (invalid UTF-8, UTF-8 split
//! at every byte boundary, a read dropped at every byte of a line), each while a well-behaved
//! client of the same server keeps being answered. Regressions found by fuzzing go here too.
//!
//! The 100 MiB line has a test binary of its own (`fault_long_line.rs`): it measures memory.

use net_io::LineEnding;
use net_sockets::SelectorManager;
use net_tests::fault::{
    GoodClient, LineServer, finish_good_client_of, good_client_of, raw_peer_of,
};
use net_tests::loopback::tcp_listener;
use net_tests::{pending_after_one_poll, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: usize = 1024;

/// Invalid and truncated UTF-8 in lines is replaced with U+FFFD exactly as
/// `String::from_utf8_lossy` does; the connection goes on, and so does another one.
#[tokio::test]
async fn invalid_utf8_is_replaced_and_the_connection_goes_on() {
    let selector = SelectorManager::new();
    let mut server = LineServer::start(&selector, LIMIT, |b| b).await;
    let mut good = GoodClient::connect(&selector, server.port()).await;

    let inputs: [&[u8]; 6] = [
        b"caf\xe9",           // Latin-1, not UTF-8
        b"\xff\xfe\xfd",      // never valid
        b"euro \xe2\x82",     // truncated 3-byte sequence
        b"\xc0\xaf overlong", // overlong encoding of '/'
        b"\xed\xa0\x80 surrogate",
        "plain é €".as_bytes(),
    ];
    let mut hostile = server.raw_client().await;
    let mut expected_answers = b"Please enter your name\n".to_vec();
    for input in inputs {
        hostile.write_all(input).await.unwrap();
        hostile.write_all(b"\r\n").await.unwrap();
        good.round_trip("meanwhile").await;
        expected_answers
            .extend_from_slice(format!("Hello, {}!\n", String::from_utf8_lossy(input)).as_bytes());
    }
    hostile.shutdown().await.unwrap();
    let mut answers = Vec::new();
    within(hostile.read_to_end(&mut answers)).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&answers),
        String::from_utf8_lossy(&expected_answers)
    );

    let outcome = server.next_outcome().await;
    outcome.end.expect("the hostile connection ended cleanly");
    let expected: Vec<String> = inputs
        .iter()
        .map(|i| String::from_utf8_lossy(i).into_owned())
        .collect();
    assert_eq!(outcome.lines, expected);

    good.round_trip("after").await;
    server.finish_good(good).await;
}

/// A line of 1-, 2-, 3- and 4-byte characters, sent as two separate writes split at every byte
/// offset (the reader holds the first part before the second is sent), decodes exactly.
#[tokio::test]
async fn utf8_split_at_every_byte_boundary_decodes_exactly() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut good, good_served) = good_client_of(&selector, &listener).await;

    let text = "aé€😀z ∑x\u{10FFFF}";
    let line = format!("{text}\r\n");
    let bytes = line.as_bytes();
    let (mut peer, mut accepted) = raw_peer_of(&listener).await;
    let mut input = accepted.open_read_channel().unwrap();
    for cut in 1..bytes.len() {
        peer.write_all(&bytes[..cut]).await.unwrap();
        peer.flush().await.unwrap();
        // The reader has the first part buffered before the second part is written.
        assert!(within(input.await_content(cut)).await.unwrap());
        peer.write_all(&bytes[cut..]).await.unwrap();
        peer.flush().await.unwrap();
        let got = within(input.read_line(LIMIT, LineEnding::Default))
            .await
            .unwrap();
        assert_eq!(got.as_deref(), Some(text), "split at byte {cut}");
        if cut % 8 == 0 {
            good.round_trip(&format!("cut {cut}")).await;
        }
    }
    drop(peer);
    assert_eq!(
        within(input.read_line(LIMIT, LineEnding::Default))
            .await
            .unwrap(),
        None
    );
    finish_good_client_of(good, good_served).await;
}

/// A line arriving one byte at a time, with a `read_line` started and dropped after every byte,
/// and a `read_u64` dropped after every byte of the integer: nothing is lost.
#[tokio::test]
async fn reads_dropped_at_every_byte_lose_nothing() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut good, good_served) = good_client_of(&selector, &listener).await;
    let (mut peer, mut accepted) = raw_peer_of(&listener).await;
    let mut input = accepted.open_read_channel().unwrap();

    let line = "dropped reads keep every byte é\r\n";
    for (i, byte) in line.as_bytes().iter().enumerate() {
        let last = i + 1 == line.len();
        peer.write_all(&[*byte]).await.unwrap();
        assert!(within(input.await_content(i + 1)).await.unwrap());
        if !last {
            let read = std::pin::pin!(input.read_line(LIMIT, LineEnding::Default));
            assert!(pending_after_one_poll(read).await, "line complete at {i}");
        }
    }
    let got = within(input.read_line(LIMIT, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some("dropped reads keep every byte é"));
    good.round_trip("between").await;

    let value = 0x0102_0304_0506_0708_u64.to_be_bytes();
    for (i, byte) in value.iter().enumerate() {
        peer.write_all(&[*byte]).await.unwrap();
        assert!(within(input.await_content(i + 1)).await.unwrap());
        if i + 1 < value.len() {
            let read = std::pin::pin!(input.read_u64());
            assert!(pending_after_one_poll(read).await);
        }
    }
    assert_eq!(
        within(input.read_u64()).await.unwrap(),
        0x0102_0304_0506_0708
    );
    assert_eq!(input.available_for_read(), 0);
    finish_good_client_of(good, good_served).await;
}
