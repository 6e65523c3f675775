//! Flush coalescing over TLS (SPEC §4.4): answers whose plaintext was held above rustls while
//! the reader had requests pending must all reach the peer once the reader waits for more
//! input, also when the socket cannot take them at once.

use std::time::Duration;

use net_io::LineEnding;
use net_sockets::{SelectorManager, a_socket};
use net_tests::within;
use net_tls::TlsExt;

/// An answer that fits in one record, so that it is held above rustls.
fn answer(i: usize) -> String {
    format!("{i}:{}", "x".repeat(15_000))
}

/// A server that answers "q" and not "n", and says when it read an "n"; the client sends
/// `pairs` pairs "q\nn\n", each in one record once the server read the last one's "n" (so that
/// the answer to its "q" is held while its "n" is pending, and leaves, as one record, when the
/// server's reader reads again), and reads nothing until it sent them all, into small socket
/// buffers: the answers pile up in what the socket holds back (at most 64 KiB), then in the
/// session's queue. Past some count the server's write waits for the client, which is fine:
/// the client stops sending when the server does not read its pair at once. Then it reads:
/// every answer must come (the server's reader waits for input meanwhile; or, `dropping`, the
/// server drops its read channel after the last pair's "n" and writes nothing more). Returns
/// how many pairs the server read, `None` when it read them all.
async fn pile_up_then_read(
    selector: &SelectorManager,
    pairs: usize,
    dropping: bool,
) -> Option<usize> {
    let pki = net_tests::pki::Pki::generate();
    let server_config = pki.server_config().build().unwrap();
    let server = a_socket(selector)
        .tcp()
        .send_buffer_size(4096)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = server.port().unwrap();
    let (read_n, mut n_read) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        let mut tls = net_tests::tls::accept(&server, &server_config).await;
        let mut input = tls.open_read_channel().unwrap();
        let mut output = tls.open_write_channel(true).unwrap();
        let mut i = 0;
        while let Ok(Some(line)) = input.read_line(16, LineEnding::Default).await {
            if line == "q" {
                let written = output.write_string_utf8(&format!("{}\n", answer(i))).await;
                if written.is_err() {
                    break;
                }
                i += 1;
            } else if read_n.send(()).is_err() {
                break;
            } else if line == "d" {
                // The reader goes; the writer stays, with nothing more to say.
                drop(input);
                let _ = finished.await;
                drop((tls, output));
                return;
            }
        }
        drop((tls, input, output));
    });
    let client = a_socket(selector)
        .tcp()
        .receive_buffer_size(4096)
        .connect(("localhost", port))
        .await
        .unwrap();
    let mut tls = within(client.tls(pki.client_config().build().unwrap()))
        .await
        .unwrap();
    let mut input = tls.open_read_channel().unwrap();
    let mut output = tls.open_write_channel(true).unwrap();
    let mut sent = 0;
    let mut stopped = None;
    while sent < pairs {
        let last = if dropping && sent + 1 == pairs {
            "d"
        } else {
            "n"
        };
        output
            .write_string_utf8(&format!("q\n{last}\n"))
            .await
            .unwrap();
        sent += 1;
        // The server's write of this pair's answer waits for the client to read.
        if tokio::time::timeout(Duration::from_millis(300), n_read.recv())
            .await
            .is_err()
        {
            stopped = Some(sent);
            break;
        }
    }
    for i in 0..sent {
        let read = tokio::time::timeout(
            Duration::from_secs(2),
            input.read_line(64 * 1024, LineEnding::Default),
        )
        .await;
        match read {
            Ok(line) => assert_eq!(line.unwrap().as_deref(), Some(answer(i).as_str())),
            Err(_) if dropping => {
                panic!("answer {i} of {sent} never came after the server dropped its reader")
            }
            Err(_) => {
                // Left in the session, not slow: the server's next write sends it.
                output.write_string_utf8("q\n").await.unwrap();
                let after = within(input.read_line(64 * 1024, LineEnding::Default)).await;
                panic!(
                    "answer {i} of {sent} never came while the server's reader waited for \
                     input; after one more request it came: {}",
                    matches!(after, Ok(Some(ref line)) if *line == answer(i))
                );
            }
        }
    }
    drop((tls, input, output));
    let _ = done.send(());
    within(serving).await.unwrap();
    stopped
}

/// Whatever the socket's buffers take, one of these counts releases answers into a socket that
/// holds back all it may as its last act before the server's reader waits: what it refused
/// must leave all the same, once the socket sent the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_released_while_the_socket_holds_its_most_reach_a_peer_that_reads_late() {
    let selector = SelectorManager::new();
    for pairs in 3..=10 {
        if pile_up_then_read(&selector, pairs, false).await.is_some() {
            // Past here the server's writes wait for the client: nothing more to learn.
            return;
        }
    }
}

/// The same where the last release is the server's read channel's drop (the server writes
/// nothing more, and keeps its socket).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_released_by_a_reader_dropped_while_the_socket_holds_its_most_all_leave() {
    let selector = SelectorManager::new();
    for pairs in 3..=10 {
        if pile_up_then_read(&selector, pairs, true).await.is_some() {
            return;
        }
    }
}
