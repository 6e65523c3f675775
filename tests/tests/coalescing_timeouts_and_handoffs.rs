//! Flush coalescing (SPEC §4.4) with a reader that a timeout cuts short, and with a read
//! channel handed to another task mid-burst: answers held back for requests still unread leave
//! once the reader waits, also when that wait is cancelled by a `tokio::time::timeout` (a
//! keep-alive server's idle check), and what is written after it leaves at once; a read channel
//! moved to another task keeps holding nothing back for ever and reorders nothing.

use std::time::Duration;

use net_io::{ByteReadChannel, ByteWriteChannel, LineEnding};
use net_sockets::SelectorManager;
use net_tests::fault::raw_peer_of;
use net_tests::loopback::tcp_listener;
use net_tests::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the server waits for a line before it sends a keep-alive `ping`.
const IDLE: Duration = Duration::from_millis(100);

/// A keep-alive server: answers each line with its upper-case form, and each idle period
/// (a `tokio::time::timeout` around `read_line` that fires, dropping the read) with `ping`,
/// `pings` times; then reads the rest of the lines.
async fn serve_with_pings(
    mut input: ByteReadChannel,
    mut output: ByteWriteChannel,
    pings: usize,
) -> (ByteReadChannel, ByteWriteChannel) {
    let mut sent = 0;
    loop {
        match tokio::time::timeout(IDLE, input.read_line(64, LineEnding::Default)).await {
            Ok(Ok(Some(line))) => output
                .write_string_utf8(&format!("{}\n", line.to_uppercase()))
                .await
                .unwrap(),
            Ok(_) => break,
            Err(_) if sent < pings => {
                output.write_string_utf8("ping\n").await.unwrap();
                sent += 1;
            }
            Err(_) => {}
        }
    }
    (input, output)
}

/// Two whole requests and the start of a third: the answers to the whole ones are held back
/// while the next is unread, and leave when the reader waits for the rest of the third; the
/// timeout then cuts that wait, and each `ping` written after it leaves at once (nothing is
/// pending), before the client sends anything more.
#[tokio::test]
async fn answers_and_pings_leave_when_a_timeout_cuts_the_readers_wait() {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let (mut client, mut socket) = raw_peer_of(&server).await;
    let input = socket.open_read_channel().unwrap();
    let output = socket.open_write_channel(true).unwrap();
    let serving = tokio::spawn(serve_with_pings(input, output, 2));
    client.write_all(b"a\nb\nc").await.unwrap();
    let mut got = vec![0u8; "A\nB\nping\nping\n".len()];
    within(client.read_exact(&mut got)).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&got), "A\nB\nping\nping\n");
    client.write_all(b"\n").await.unwrap();
    let mut got = vec![0u8; 2];
    within(client.read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"C\n");
    client.shutdown().await.unwrap();
    drop(within(serving).await.unwrap());
    drop(socket);
}

/// The same over TLS, the records held under the session.
#[tokio::test]
async fn tls_answers_and_pings_leave_when_a_timeout_cuts_the_readers_wait() {
    let selector = SelectorManager::new();
    let pki = net_tests::pki::Pki::generate();
    let listener = tcp_listener(&selector).await;
    let (mut server, mut client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
    let input = server.open_read_channel().unwrap();
    let output = server.open_write_channel(true).unwrap();
    let serving = tokio::spawn(serve_with_pings(input, output, 2));
    let mut client_out = client.open_write_channel(true).unwrap();
    let mut client_in = client.open_read_channel().unwrap();
    client_out.write_string_utf8("a\nb\nc").await.unwrap();
    for expected in ["A", "B", "ping", "ping"] {
        let line = within(client_in.read_line(64, LineEnding::Default)).await;
        assert_eq!(line.unwrap().as_deref(), Some(expected));
    }
    client_out.write_string_utf8("\n").await.unwrap();
    let line = within(client_in.read_line(64, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("C"));
    client_out.flush_and_close().await.unwrap();
    drop(within(serving).await.unwrap());
    drop((server, client, client_in));
}

/// A server task reads the first request of a burst and answers it (held back: the second is
/// unread), then hands both channels to another task, which reads on: the first answer leaves,
/// before the second, once that task waits, without the client sending more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_channel_handed_to_another_task_mid_burst_loses_and_reorders_nothing() {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let (mut client, mut socket) = raw_peer_of(&server).await;
    let mut input = socket.open_read_channel().unwrap();
    let mut output = socket.open_write_channel(true).unwrap();
    let (hand, handed) = tokio::sync::oneshot::channel::<(ByteReadChannel, ByteWriteChannel)>();
    let second = tokio::spawn(async move {
        let (mut input, mut output) = handed.await.unwrap();
        while let Ok(Some(line)) = input.read_line(64, LineEnding::Default).await {
            output
                .write_string_utf8(&format!("second task: {line}\n"))
                .await
                .unwrap();
        }
    });
    client.write_all(b"a\nb\n").await.unwrap();
    assert!(within(input.await_content(4)).await.unwrap());
    let first = within(input.read_line(64, LineEnding::Default)).await;
    assert_eq!(first.unwrap().as_deref(), Some("a"));
    assert_eq!(input.available_for_read(), 2, "`b` is unread");
    output.write_string_utf8("first task: a\n").await.unwrap();
    hand.send((input, output)).unwrap();
    let expected = "first task: a\nsecond task: b\n";
    let mut got = vec![0u8; expected.len()];
    within(client.read_exact(&mut got)).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&got), expected);
    drop(client);
    within(second).await.unwrap();
    drop(socket);
}

/// Over TLS, a reader that reads the rest of a burst without waiting (its request is handled
/// before the next read, as a slow one is) holds nothing pending, but the answer held back
/// before still waits: an explicit flush with nothing new to send lets it leave (through the
/// session's flush, which has no records of its own).
#[tokio::test]
async fn tls_an_answer_held_for_a_request_since_read_leaves_at_a_flush_of_nothing_new() {
    let selector = SelectorManager::new();
    let pki = net_tests::pki::Pki::generate();
    let listener = tcp_listener(&selector).await;
    let (mut server, mut client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
    let mut input = server.open_read_channel().unwrap();
    let mut output = server.open_write_channel(true).unwrap();
    let mut client_out = client.open_write_channel(true).unwrap();
    let mut client_in = client.open_read_channel().unwrap();
    client_out.write_string_utf8("a\nb\n").await.unwrap();
    let first = within(input.read_line(64, LineEnding::Default)).await;
    assert_eq!(first.unwrap().as_deref(), Some("a"));
    assert_eq!(input.available_for_read(), 2, "`b` is unread");
    output.write_string_utf8("A\n").await.unwrap();
    let second = within(input.read_line(64, LineEnding::Default)).await;
    assert_eq!(second.unwrap().as_deref(), Some("b"));
    assert_eq!(input.available_for_read(), 0, "nothing is pending");
    within(output.flush()).await.unwrap();
    let line = within(client_in.read_line(64, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("A"));
    drop((input, output, server, client_out, client_in, client));
}
