//! Flush coalescing (SPEC §4.4) with readers and writers shaped as users write them: answers
//! written by a task other than the reader, requests read through tokio's `AsyncBufRead` and
//! through a tokio-util codec. Every answer held back while requests were pending must leave
//! once the reader waits, without the client sending anything more.

use net_io::LineEnding;
use net_sockets::SelectorManager;
use net_tests::fault::raw_peer_of;
use net_tests::loopback::tcp_listener;
use net_tests::within;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads exactly `text` (the guard of [`within`] fails a test whose answers never come).
async fn read_exactly(stream: &mut TcpStream, text: &str) {
    let mut buf = vec![0; text.len()];
    within(stream.read_exact(&mut buf)).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&buf), text);
}

/// A chat server's shape: the reader task hands each line to a writer task over a channel, and
/// only the writer task writes; here the reader waits until the writer wrote each answer (an
/// in-order handler), so that the answers to `a` and `b` are written while requests are still
/// pending. The last request of the burst is cut in two: their answers arrive while the reader
/// waits for its rest, before the client sends it.
#[tokio::test]
async fn answers_written_by_another_task_while_requests_are_pending_all_arrive() {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let (mut client, mut socket) = raw_peer_of(&server).await;
    let input = socket.open_read_channel().unwrap();
    let output = socket.open_write_channel(true).unwrap();
    let serving = serve_through_a_writer_task(input, output, true);
    client.write_all(b"a\nb\nc").await.unwrap();
    read_exactly(&mut client, "Hello, a!\nHello, b!\n").await;
    client.write_all(b"\n").await.unwrap();
    read_exactly(&mut client, "Hello, c!\n").await;
    drop(client);
    within(serving).await.unwrap();
    drop(socket);
}

/// The reader reads through tokio's `AsyncBufReadExt::lines` (the channel's `AsyncBufRead`),
/// the last request of the burst cut in two: the answers to the whole ones arrive while the
/// reader waits for its rest.
#[tokio::test]
async fn a_burst_read_through_tokio_lines_is_answered() {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let (mut client, mut socket) = raw_peer_of(&server).await;
    let input = socket.open_read_channel().unwrap();
    let mut output = socket.open_write_channel(true).unwrap();
    let serving = tokio::spawn(async move {
        let mut lines = input.lines();
        while let Ok(Some(line)) = lines.next_line().await {
            output
                .write_string_utf8(&format!("Hello, {line}!\n"))
                .await
                .unwrap();
        }
    });
    client.write_all(b"a\nb\nc").await.unwrap();
    read_exactly(&mut client, "Hello, a!\nHello, b!\n").await;
    client.write_all(b"\n").await.unwrap();
    read_exactly(&mut client, "Hello, c!\n").await;
    drop(client);
    within(serving).await.unwrap();
    drop(socket);
}

/// The reader reads frames with a tokio-util codec (`into_frames`), and the last request of
/// the burst is cut in two: the answers to the whole ones arrive while the reader waits for
/// the rest of the last, before the client sends it.
#[tokio::test]
async fn a_burst_read_as_frames_is_answered_while_the_reader_waits_for_the_rest() {
    use futures_core::Stream;
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let (mut client, mut socket) = raw_peer_of(&server).await;
    let input = socket.open_read_channel().unwrap();
    let mut output = socket.open_write_channel(true).unwrap();
    let serving = tokio::spawn(async move {
        let mut frames = std::pin::pin!(input.into_frames(tokio_util::codec::LinesCodec::new()));
        while let Some(Ok(line)) = std::future::poll_fn(|cx| frames.as_mut().poll_next(cx)).await {
            output
                .write_string_utf8(&format!("Hello, {line}!\n"))
                .await
                .unwrap();
        }
    });
    client.write_all(b"a\nb\nc\nd").await.unwrap();
    read_exactly(&mut client, "Hello, a!\nHello, b!\nHello, c!\n").await;
    client.write_all(b"\n").await.unwrap();
    read_exactly(&mut client, "Hello, d!\n").await;
    drop(client);
    within(serving).await.unwrap();
    drop(socket);
}

/// Serves `input`/`output` with a reader task and a writer task fed by a channel, as a chat
/// server does; with `in_order`, the reader reads the next request only once the writer wrote
/// the answer to the last.
fn serve_through_a_writer_task(
    mut input: net_io::ByteReadChannel,
    mut output: net_io::ByteWriteChannel,
    in_order: bool,
) -> tokio::task::JoinHandle<()> {
    let (lines, mut to_write) = tokio::sync::mpsc::channel::<(String, Option<Written>)>(4);
    let writer = tokio::spawn(async move {
        while let Some((line, written)) = to_write.recv().await {
            if output
                .write_string_utf8(&format!("Hello, {line}!\n"))
                .await
                .is_err()
            {
                break;
            }
            if let Some(written) = written {
                let _ = written.send(());
            }
        }
    });
    tokio::spawn(async move {
        while let Ok(Some(line)) = input.read_line(1024, LineEnding::Default).await {
            let (written, was_written) = if in_order {
                let (tx, rx) = tokio::sync::oneshot::channel();
                (Some(tx), Some(rx))
            } else {
                (None, None)
            };
            if lines.send((line, written)).await.is_err() {
                break;
            }
            match was_written {
                Some(was_written) => {
                    if was_written.await.is_err() {
                        break;
                    }
                }
                // Some work per request, during which the writer, on the other thread, may
                // write its answer while the next request is pending.
                None => {
                    for _ in 0..4 {
                        tokio::task::yield_now().await;
                    }
                }
            }
        }
        drop(lines);
        let _ = writer.await;
    })
}

/// Tells the reader that the writer wrote an answer.
type Written = tokio::sync::oneshot::Sender<()>;

/// Rounds of a burst of requests: the client sends more only once it has every answer due.
const ROUNDS: usize = 200;

/// A round: three requests, the last cut before its line ending, and the answers to the first
/// two (which must arrive while the reader waits for the rest of the third); then that rest
/// and the third answer.
fn burst(round: usize) -> [(String, String); 2] {
    [
        (
            format!("r{round}x0\nr{round}x1\nr{round}x2"),
            format!("Hello, r{round}x0!\nHello, r{round}x1!\n"),
        ),
        ("\n".to_owned(), format!("Hello, r{round}x2!\n")),
    ]
}

/// The same on a runtime with two worker threads, the reader and the writer running on either,
/// for many bursts, the reader not waiting for the writer: an answer the writer holds back just
/// as the reader goes to wait is never stranded (the reader's wait sends it, or the writer
/// sends it itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_from_a_writer_task_are_never_stranded_across_threads() {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let (mut client, mut socket) = raw_peer_of(&server).await;
    let input = socket.open_read_channel().unwrap();
    let output = socket.open_write_channel(true).unwrap();
    let serving = serve_through_a_writer_task(input, output, false);
    for round in 0..ROUNDS {
        for (requests, answers) in burst(round) {
            client.write_all(requests.as_bytes()).await.unwrap();
            read_exactly(&mut client, &answers).await;
        }
    }
    drop(client);
    within(serving).await.unwrap();
    drop(socket);
}

/// The same over TLS, the records held back under the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_answers_from_a_writer_task_are_never_stranded_across_threads() {
    use net_tls::TlsExt;
    let selector = SelectorManager::new();
    let pki = net_tests::pki::Pki::generate();
    let server_config = pki.server_config().build().unwrap();
    let server = tcp_listener(&selector).await;
    let port = server.port().unwrap();
    let serving = tokio::spawn(async move {
        let socket = server.accept().await.unwrap();
        let mut tls = socket.tls_server(&server_config).await.unwrap();
        let input = tls.open_read_channel().unwrap();
        let output = tls.open_write_channel(true).unwrap();
        serve_through_a_writer_task(input, output, false)
            .await
            .unwrap();
        drop(tls);
    });
    let client = net_sockets::a_socket(&selector)
        .tcp()
        .connect(("localhost", port))
        .await
        .unwrap();
    let mut tls = within(client.tls(pki.client_config().build().unwrap()))
        .await
        .unwrap();
    let mut input = tls.open_read_channel().unwrap();
    let mut output = tls.open_write_channel(false).unwrap();
    for round in 0..ROUNDS {
        for (requests, answers) in burst(round) {
            output.write_string_utf8(&requests).await.unwrap();
            output.flush().await.unwrap();
            let mut got = String::new();
            while got.len() < answers.len() {
                let line = within(input.read_line(1024, LineEnding::Default))
                    .await
                    .unwrap()
                    .expect("an answer, not the end");
                got.push_str(&line);
                got.push('\n');
            }
            assert_eq!(got, answers);
        }
    }
    drop((input, output, tls));
    within(serving).await.unwrap();
}

/// A server that reads a command sent with a trailing empty line, and then only pushes: once
/// it drops its read channel (as `SocketOptions::coalesce_flushes` advises), each push leaves
/// when it is written, the client reading one before the server writes the next.
#[tokio::test]
async fn a_push_server_that_dropped_its_read_channel_sends_each_push_at_once() {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let (mut client, mut socket) = raw_peer_of(&server).await;
    let mut input = socket.open_read_channel().unwrap();
    let mut output = socket.open_write_channel(true).unwrap();
    let (next, mut pushes) = tokio::sync::mpsc::channel::<usize>(1);
    let serving = tokio::spawn(async move {
        let command = input.read_line(1024, LineEnding::Default).await.unwrap();
        assert_eq!(command.as_deref(), Some("WATCH"));
        // The empty line is still unread.
        drop(input);
        while let Some(event) = pushes.recv().await {
            output
                .write_string_utf8(&format!("event {event}\n"))
                .await
                .unwrap();
        }
    });
    client.write_all(b"WATCH\n\n").await.unwrap();
    for event in 0..3 {
        next.send(event).await.unwrap();
        read_exactly(&mut client, &format!("event {event}\n")).await;
    }
    drop(next);
    within(serving).await.unwrap();
    drop(socket);
}
