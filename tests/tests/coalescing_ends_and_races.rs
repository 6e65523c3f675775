//! Flush coalescing (SPEC §4.4) at the end of a connection and under races: answers held back
//! while requests are pending are sent (in order, once) or the connection ends without a clean
//! end, whatever ends it.

use std::time::Duration;

use net_io::LineEnding;
use net_sockets::{SelectorManager, ServerSocket, Socket, a_socket};
use net_tests::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Requests in the burst; each answer is 100 bytes, far more in all than the 4 KiB buffers
/// below take.
const BURST: usize = 400;

fn answer(i: usize) -> String {
    format!("{i:>99}\n")
}

async fn small_buffer_listener(selector: &SelectorManager) -> ServerSocket {
    a_socket(selector)
        .tcp()
        .send_buffer_size(4096)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap()
}

async fn with_small_buffers_on(server: &ServerSocket) -> (TcpStream, Socket) {
    let peer = tokio::net::TcpSocket::new_v4().unwrap();
    peer.set_recv_buffer_size(4096).unwrap();
    net_tests::fault::raw_peer_from(peer, server).await
}

fn assert_every_answer(everything: &[u8]) {
    let answers: String = (0..BURST).map(answer).collect();
    assert_eq!(everything.len(), answers.len(), "answers lost at close");
    assert_eq!(String::from_utf8_lossy(everything), answers);
}

/// `close_gracefully(Duration::ZERO)` on a connection whose answers are held back, more than
/// the socket takes at once: its documentation says held-back answers are not among what such
/// a close loses; they are sent after it, then the end.
#[tokio::test]
async fn close_gracefully_at_once_with_more_held_back_than_the_socket_takes_delivers_them() {
    let selector = SelectorManager::new();
    let server = small_buffer_listener(&selector).await;
    let (mut client, socket) = with_small_buffers_on(&server).await;
    let serving = tokio::spawn(async move {
        let mut connection = socket.connection().unwrap();
        let mut i = 0;
        loop {
            let line = connection
                .input
                .read_line(16, LineEnding::Default)
                .await
                .unwrap();
            if line.as_deref() == Some("close") {
                return connection.close_gracefully(Duration::ZERO).await;
            }
            connection
                .output
                .write_string_utf8(&answer(i))
                .await
                .unwrap();
            connection.output.flush().await.unwrap();
            i += 1;
        }
    });
    let mut requests = "x\n".repeat(BURST);
    requests.push_str("close\n");
    client.write_all(requests.as_bytes()).await.unwrap();
    let closed = within(serving).await.unwrap();
    // The half-close could not send them all at once: the close came with `wait` over.
    assert!(
        matches!(closed, Err(net_sockets::Error::Timeout)),
        "{closed:?}"
    );
    let mut everything = Vec::new();
    let end = within(client.read_to_end(&mut everything)).await;
    assert!(
        end.is_ok(),
        "{end:?} after {} bytes ({closed:?})",
        everything.len()
    );
    assert_every_answer(&everything);
}

/// The same over TLS: the held-back records leave after the close, then `close_notify`; the
/// client reads every answer, then a clean end.
#[tokio::test]
async fn tls_close_gracefully_at_once_with_more_held_back_than_the_socket_takes_delivers_them() {
    use net_tls::TlsExt;
    let selector = SelectorManager::new();
    let pki = net_tests::pki::Pki::generate();
    let server_config = pki.server_config().build().unwrap();
    let server = small_buffer_listener(&selector).await;
    let port = server.port().unwrap();
    let serving = tokio::spawn(async move {
        let tls = net_tests::tls::accept(&server, &server_config).await;
        let mut connection = tls.connection().unwrap();
        let mut i = 0;
        loop {
            let line = connection
                .input
                .read_line(16, LineEnding::Default)
                .await
                .unwrap();
            if line.as_deref() == Some("close") {
                return connection.close_gracefully(Duration::ZERO).await;
            }
            connection
                .output
                .write_string_utf8(&answer(i))
                .await
                .unwrap();
            connection.output.flush().await.unwrap();
            i += 1;
        }
    });
    let client = a_socket(&selector)
        .tcp()
        .receive_buffer_size(4096)
        .connect(("localhost", port))
        .await
        .unwrap();
    let mut tls = within(client.tls(pki.client_config().build().unwrap()))
        .await
        .unwrap();
    let mut input = tls.open_read_channel().unwrap();
    let mut output = tls.open_write_channel(false).unwrap();
    let mut requests = "x\n".repeat(BURST);
    requests.push_str("close\n");
    output.write_string_utf8(&requests).await.unwrap();
    output.flush().await.unwrap();
    let closed = within(serving).await.unwrap();
    assert!(
        matches!(closed, Err(net_sockets::Error::Timeout)),
        "{closed:?}"
    );
    let mut everything = Vec::new();
    let end = loop {
        match within(input.read_line(128, LineEnding::Default)).await {
            Ok(Some(line)) => {
                everything.extend_from_slice(line.as_bytes());
                everything.push(b'\n');
            }
            other => break other,
        }
    };
    assert!(
        matches!(end, Ok(None)),
        "{end:?} after {} bytes ({closed:?})",
        everything.len()
    );
    assert_every_answer(&everything);
    drop((tls, output));
}

/// Decodes `ok\n` frames; anything else is an error that leaves what is buffered where it is
/// (as `tokio_util`'s `LengthDelimitedCodec` leaves a header announcing a frame over its
/// limit).
struct OkOrBad;

impl tokio_util::codec::Decoder for OkOrBad {
    type Item = ();
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut bytes::BytesMut) -> std::io::Result<Option<()>> {
        if src.len() < 3 {
            return Ok(None);
        }
        if src.starts_with(b"ok\n") {
            let _ = src.split_to(3);
            return Ok(Some(()));
        }
        Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "bad"))
    }
}

/// A frame stream ends at its first error (`None` from then on): like a reader that saw the
/// end of its stream, it never reads again, so nothing would ever send what is held back for
/// it. The answer to the bad frame, written after the error while the bad bytes are still
/// buffered, must leave at once (and so must one held back before), not wait for the close.
#[tokio::test]
async fn an_answer_written_after_a_frame_streams_error_leaves_at_once() {
    let selector = SelectorManager::new();
    let server = net_tests::loopback::tcp_listener(&selector).await;
    let (mut client, mut socket) = net_tests::fault::raw_peer_of(&server).await;
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        let input = socket.open_read_channel().unwrap();
        let mut output = socket.open_write_channel(true).unwrap();
        let mut frames = input.into_frames(OkOrBad);
        while let Some(frame) = frames.next_frame().await {
            match frame {
                Ok(()) => output.write_string_utf8("fine\n").await.unwrap(),
                Err(_) => output.write_string_utf8("bad frame\n").await.unwrap(),
            }
        }
        // The stream ended; the connection stays open (a server that goes on pushing).
        let _ = finished.await;
        drop((socket, frames, output));
    });
    client.write_all(b"ok\nnot ok\n").await.unwrap();
    let mut answers = [0; 15];
    within(client.read_exact(&mut answers)).await.unwrap();
    assert_eq!(&answers, b"fine\nbad frame\n");
    drop(done);
    within(serving).await.unwrap();
}

/// The same over TLS, whose held-back records wait in the socket under the session.
#[tokio::test]
async fn a_tls_answer_written_after_a_frame_streams_error_leaves_at_once() {
    use net_tls::TlsExt;
    let selector = SelectorManager::new();
    let pki = net_tests::pki::Pki::generate();
    let server_config = pki.server_config().build().unwrap();
    let server = net_tests::loopback::tcp_listener(&selector).await;
    let port = server.port().unwrap();
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        let mut tls = net_tests::tls::accept(&server, &server_config).await;
        let input = tls.open_read_channel().unwrap();
        let mut output = tls.open_write_channel(true).unwrap();
        let mut frames = input.into_frames(OkOrBad);
        while let Some(frame) = frames.next_frame().await {
            match frame {
                Ok(()) => output.write_string_utf8("fine\n").await.unwrap(),
                Err(_) => output.write_string_utf8("bad frame\n").await.unwrap(),
            }
        }
        let _ = finished.await;
        drop((tls, frames, output));
    });
    let client = a_socket(&selector)
        .tcp()
        .connect(("localhost", port))
        .await
        .unwrap();
    let mut tls = within(client.tls(pki.client_config().build().unwrap()))
        .await
        .unwrap();
    let mut input = tls.open_read_channel().unwrap();
    let mut output = tls.open_write_channel(false).unwrap();
    output.write_string_utf8("ok\nnot ok\n").await.unwrap();
    output.flush().await.unwrap();
    let mut answers = [0; 15];
    within(input.read_fully(&mut answers)).await.unwrap();
    assert_eq!(&answers, b"fine\nbad frame\n");
    drop(done);
    within(serving).await.unwrap();
    drop((tls, input, output));
}
