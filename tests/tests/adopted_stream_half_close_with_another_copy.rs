//! A stream adopted with `Socket::from_std` whose socket has another descriptor (a `try_clone`
//! kept by the program, a copy a child process inherited): `flush_and_close` on its write
//! channel, and `poll_shutdown` on its stream, half-close it, sending FIN, also after the
//! peer's end of stream was read (over TLS: after the peer's `close_notify`, ours, then FIN).

use std::io::{Read, Write};
use std::time::Duration;

use net_sockets::{SelectorManager, Socket};
use net_tests::pki::TestCa;
use net_tests::tls::rustls_localhost_server;
use net_tests::within;
use net_tls::TlsExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn peer_reads_to_the_end(peer: std::net::TcpStream) -> Vec<u8> {
    let mut peer = peer;
    peer.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut got = Vec::new();
    peer.read_to_end(&mut got)
        .map(|_| got)
        .unwrap_or_else(|e| panic!("the peer never read the end of the stream: {e}"))
}

#[tokio::test]
async fn flush_and_close_after_the_peers_end_sends_fin_while_another_copy_lives() {
    let selector = SelectorManager::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    let copy = client.try_clone().unwrap();
    let socket = Socket::from_std(&selector, client).unwrap();
    let mut connection = socket.connection().unwrap();
    peer.write_all(b"request").unwrap();
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    let mut request = Vec::new();
    within(connection.input.read_to_end(&mut request))
        .await
        .unwrap();
    assert_eq!(request, b"request");
    connection.output.write_fully(b"answer").await.unwrap();
    within(connection.output.flush_and_close()).await.unwrap();
    let got = tokio::task::spawn_blocking(move || peer_reads_to_the_end(peer))
        .await
        .unwrap();
    assert_eq!(got, b"answer");
    drop(copy);
}

#[tokio::test]
async fn a_stream_shutdown_after_the_peers_end_sends_fin_while_another_copy_lives() {
    let selector = SelectorManager::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    let copy = client.try_clone().unwrap();
    let mut stream = Socket::from_std(&selector, client)
        .unwrap()
        .into_stream()
        .unwrap();
    peer.write_all(b"request").unwrap();
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    let mut request = Vec::new();
    within(stream.read_to_end(&mut request)).await.unwrap();
    assert_eq!(request, b"request");
    stream.write_all(b"answer").await.unwrap();
    within(stream.shutdown()).await.unwrap();
    let got = tokio::task::spawn_blocking(move || peer_reads_to_the_end(peer))
        .await
        .unwrap();
    assert_eq!(got, b"answer");
    drop(copy);
}

#[tokio::test]
async fn a_tls_stream_shutdown_after_the_peers_close_notify_sends_fin_while_another_copy_lives() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("adopted copies");
    let acceptor = tokio_rustls::TlsAcceptor::from(rustls_localhost_server(&ca));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let copy = client.try_clone().unwrap();
    let config = ca.client_config().server_name("localhost").build().unwrap();
    let (peer, ours) = within(async {
        tokio::join!(
            async { acceptor.accept(listener.accept().await.unwrap().0).await },
            Socket::from_std(&selector, client).unwrap().tls(config),
        )
    })
    .await;
    let (mut peer, mut ours) = (peer.unwrap(), ours.unwrap().into_stream().unwrap());
    peer.write_all(b"request").await.unwrap();
    within(peer.shutdown()).await.unwrap();
    let mut request = Vec::new();
    within(ours.read_to_end(&mut request)).await.unwrap();
    assert_eq!(request, b"request");
    ours.write_all(b"answer").await.unwrap();
    within(ours.shutdown()).await.unwrap();
    let mut got = Vec::new();
    within(peer.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"answer");
    // Past our close_notify, the TCP stream's end.
    let mut rest = Vec::new();
    within(peer.get_mut().0.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    drop(copy);
}
