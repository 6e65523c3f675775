//! How TLS connections end (review 53): a shutdown whose own flush of `close_notify` and the
//! data before it meets `socket_timeout`, and what a retry of it, or the peer, sees then.

use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use net_sockets::SelectorManager;
use net_tests::pki::TestCa;
use net_tests::tls::{localhost, rustls_client};
use net_tests::within;
use net_tls::TlsExt;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;

/// The listener's `socket_timeout`.
const TIMEOUT: Duration = Duration::from_millis(500);

/// The peer's reader: every byte until a clean end, or the error that ended it.
type Reader = tokio::task::JoinHandle<std::io::Result<Vec<u8>>>;

/// A server `TlsStream` with `socket_timeout` 200 ms and small buffers, whose writes all went
/// through (the session took every byte) though the peer reads nothing, so that the session
/// still holds records the socket could not take; the bytes written; and the peer (a
/// tokio-rustls client), which reads to its end once `go` is sent.
async fn stalled_after_accepted_writes(
    selector: &SelectorManager,
) -> (
    net_tls::TlsStream,
    tokio::sync::oneshot::Sender<()>,
    Reader,
    Vec<u8>,
) {
    let ca = TestCa::new("tls ends ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = net_tests::loopback::tcp_listener_with(selector, |b| {
        b.socket_timeout(TIMEOUT).send_buffer_size(16 * 1024)
    })
    .await;
    let port = listener.port().unwrap();
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(16 * 1024).unwrap();
    let (accepted, tcp) = within(async {
        tokio::join!(
            listener.accept(),
            tcp.connect(([127, 0, 0, 1], port).into())
        )
    })
    .await;
    let connector = TlsConnector::from(rustls_client(&ca));
    let (server, client) = within(async {
        tokio::join!(
            accepted.unwrap().tls_server(&config),
            connector.connect(localhost(), tcp.unwrap())
        )
    })
    .await;
    let mut stream = server.unwrap().into_stream().unwrap();
    let mut client = client.unwrap();
    within(stream.flush()).await.unwrap();
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        let _ = wait.await;
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.map(|_| received)
    });
    // Writes polled once each, until six in a row, 30 ms apart, cannot go on (the socket is
    // full, not just waiting for the peer's acknowledgements): each that returned took its
    // bytes (the session holds what the socket did not take); one that is pending took none.
    // Well within `socket_timeout`, so that no write times out.
    let chunk = net_tests::payload(16 * 1024);
    let mut sent = Vec::new();
    let mut pending = 0;
    for _ in 0..1000 {
        let polled =
            std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut stream).poll_write(cx, &chunk)))
                .await;
        match polled {
            Poll::Ready(Ok(n)) => {
                sent.extend_from_slice(&chunk[..n]);
                pending = 0;
            }
            Poll::Ready(Err(e)) => panic!("a write failed: {e:?}"),
            Poll::Pending => {
                pending += 1;
                if pending == 6 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
    }
    assert!(!sent.is_empty(), "no write went through");
    (stream, go, reader, sent)
}

/// Every write of a `TlsStream` went through (no write or flush timed out or failed); the
/// peer reads nothing for a while, so the shutdown, which must first send what the session
/// holds, then `close_notify`, meets `socket_timeout` and fails with `TimedOut`. That is a flush
/// that timed out, which takes nothing and loses nothing: the session still holds every record
/// (`TlsWrite`: "a timeout does not fail the session for good ... a flush does"), and the
/// stream's docs say that a shutdown after a timeout, retried, makes it good. Once the peer
/// reads again, the retried shutdown must succeed and the peer read every byte, then a clean
/// end — as it does when an earlier write had timed out instead (see
/// `a_shutdown_that_timed_out_after_a_timed_out_write_is_retried`). It failed with
/// `BrokenPipe` ("an earlier write failed"), no write having failed, and the peer's read
/// ended with `ConnectionReset` though nothing was lost: a shutdown's timeout failed the session
/// for good, where a flush's or a write's does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_stream_shutdown_that_timed_out_with_every_write_accepted_is_retried() {
    let selector = SelectorManager::new();
    let (mut stream, go, reader, sent) = stalled_after_accepted_writes(&selector).await;
    let shut = within(stream.shutdown()).await;
    assert_eq!(
        shut.as_ref().map_err(std::io::Error::kind),
        Err(std::io::ErrorKind::TimedOut),
        "the first shutdown, the peer reading nothing: {shut:?}"
    );
    go.send(()).unwrap();
    let retried = within(stream.shutdown()).await;
    drop(stream);
    let received = within(reader).await.unwrap();
    assert!(
        retried.is_ok(),
        "the retried shutdown failed: {retried:?}; the peer got {:?}",
        received.as_ref().map(Vec::len)
    );
    match received {
        Ok(received) => assert!(
            received == sent,
            "{} bytes received of {}",
            received.len(),
            sent.len()
        ),
        Err(e) => panic!("every byte, then a clean end, expected: {e:?}"),
    }
}
