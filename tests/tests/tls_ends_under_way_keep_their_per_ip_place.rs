//! A TLS connection that still has to send records the session holds to a client that reads
//! nothing (its shutdown after its input ended waits for them, or its close left them to be
//! sent as the socket drains) is open, its end not on its way, and keeps its place under
//! `max_connections_per_ip`, as one closed with answers held back by flush coalescing does
//! (`transport_combinations::tls_connection_closed_with_undelivered_held_answers_keeps_its_per_ip_place`).

use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use net_io::LineEnding;

use net_sockets::{SelectorManager, ServerSocket, a_socket};
use net_tests::loopback::next_is_refused;
use net_tests::pki::TestCa;
use net_tests::tls::{localhost, rustls_client};
use net_tests::within;
use net_tls::TlsExt;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;

/// A listener on 127.0.0.1 with `max_connections_per_ip(1)` and a small send buffer, and a TLS
/// connection to it from a client with a small receive buffer: the server's socket, the
/// client's stream.
async fn tls_pair(
    selector: &SelectorManager,
) -> (
    ServerSocket,
    net_tls::TlsSocket,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) {
    let ca = TestCa::new("tls end per ip ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let server = a_socket(selector)
        .tcp()
        .send_buffer_size(4096)
        .max_connections_per_ip(1)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let peer = tokio::net::TcpSocket::new_v4().unwrap();
    peer.set_recv_buffer_size(4096).unwrap();
    let (tcp, accepted) = net_tests::fault::raw_peer_from(peer, &server).await;
    let connector = TlsConnector::from(rustls_client(&ca));
    let (tls, client) = within(async {
        tokio::join!(
            accepted.tls_server(&config),
            connector.connect(localhost(), tcp)
        )
    })
    .await;
    (server, tls.unwrap(), client.unwrap())
}

/// Polls `f` once.
async fn once<T>(mut f: impl FnMut(&mut std::task::Context<'_>) -> Poll<T>) -> Poll<T> {
    std::future::poll_fn(|cx| Poll::Ready(f(cx))).await
}

/// The client sends a line and its `close_notify`, then reads nothing; the server reads to
/// the end, writes more than the socket takes (the session keeps the records it did not
/// take), and shuts its stream down, which waits for the client. The connection is open (in
/// `stats().open`) and its client has seen no end: a second connection from its address is
/// refused under `max_connections_per_ip(1)`. Once the client reads, it gets every byte and
/// the clean end, and the shutdown completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_shutdown_waiting_for_a_client_that_reads_nothing_keeps_its_per_ip_place() {
    let selector = SelectorManager::new();
    let (server, tls, mut client) = tls_pair(&selector).await;
    let mut stream = tls.into_stream().unwrap();
    client.write_all(b"hi\n").await.unwrap();
    client.shutdown().await.unwrap();
    let mut line = Vec::new();
    within(stream.read_to_end(&mut line)).await.unwrap();
    assert_eq!(line, b"hi\n");
    // More than the socket and the client's buffers take: the session keeps the rest.
    let chunk = net_tests::payload(1 << 20);
    let written = match once(|cx| Pin::new(&mut stream).poll_write(cx, &chunk)).await {
        Poll::Ready(Ok(n)) if n > 0 => n,
        other => panic!("the first write took nothing: {other:?}"),
    };
    let shut = once(|cx| Pin::new(&mut stream).poll_shutdown(cx)).await;
    assert!(shut.is_pending(), "the client reads nothing: {shut:?}");
    assert_eq!(server.stats().open, 1);
    let refused = next_is_refused(&server).await;
    let stats = server.stats();
    let reading = tokio::spawn(async move {
        let mut everything = Vec::new();
        client
            .read_to_end(&mut everything)
            .await
            .map(|_| everything)
    });
    within(stream.shutdown()).await.unwrap();
    let everything = within(reading).await.unwrap().unwrap();
    assert_eq!(everything, chunk[..written], "what the client read");
    assert!(
        refused,
        "a second connection from 127.0.0.1 was accepted while the first, its shutdown \
         waiting for the client, was open (stats {stats:?}) under max_connections_per_ip(1)"
    );
    drop(stream);
    assert!(
        !next_is_refused(&server).await,
        "its place is free once it closed"
    );
}

/// The client sends a line and reads nothing; the server answers with more than the socket
/// takes, its flush given up (the session keeps the records the socket did not take: nothing
/// is lost), and closes. The close leaves those records, then `close_notify`, to be sent as
/// the socket drains: the connection is open (in `stats().open`) and its client has seen no
/// end, so a second connection from its address is refused under `max_connections_per_ip(1)`.
/// Once the client reads, it gets every byte and the clean end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_close_with_records_waiting_for_a_client_that_reads_nothing_keeps_its_per_ip_place() {
    let selector = SelectorManager::new();
    let (server, tls, mut client) = tls_pair(&selector).await;
    let mut connection = tls.connection().unwrap();
    client.write_all(b"hi\n").await.unwrap();
    client.flush().await.unwrap();
    let line = within(connection.input.read_line(64, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("hi"));
    // Within rustls's limit: the session takes it all, and the socket only part of it.
    let chunk = net_tests::payload(32 * 1024);
    connection.output.write_fully(&chunk).await.unwrap();
    let flushed = tokio::time::timeout(Duration::from_millis(300), connection.output.flush()).await;
    assert!(flushed.is_err(), "the client reads nothing: {flushed:?}");
    connection.socket.close();
    assert_eq!(server.stats().open, 1, "the records are still to be sent");
    let refused = next_is_refused(&server).await;
    let stats = server.stats();
    let mut everything = Vec::new();
    within(client.read_to_end(&mut everything)).await.unwrap();
    assert_eq!(everything, chunk, "what the client read");
    assert!(
        refused,
        "a second connection from 127.0.0.1 was accepted while the first, closed with records \
         still to send, was open (stats {stats:?}) under max_connections_per_ip(1)"
    );
    drop(connection);
    within(async {
        while server.stats().open != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        !next_is_refused(&server).await,
        "its place is free once it closed"
    );
}
