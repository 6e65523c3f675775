//! A client that sends its ClientHello, takes in the server's whole flight, and then stalls,
//! never sending its Finished (its certificate, under mutual TLS): the server's handshake ends
//! with `HandshakeTimeout` after the handshake timeout, in TLS 1.3 and 1.2 alike, the client
//! sees the connection end, and an open session is answered while it waits. (Guard of the
//! guarantees row "A client that never sends its ClientHello", which said nothing of a client
//! that stalls later.)

use std::time::Duration;

use net_sockets::SelectorManager;
use net_tests::pki::TestCa;
use net_tests::tls::{TlsLineServer, localhost, records, rustls_client_config};
use net_tests::within;
use net_tls::Error;
use net_tls::rustls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stalling_after_the_servers_flight_ends_at_the_handshake_timeout() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("stalling ca");
    let timeout = Duration::from_millis(400);
    let config = ca
        .server(&["localhost"])
        .server_config()
        .handshake_timeout(timeout)
        .build()
        .unwrap();
    let mut server = TlsLineServer::lines(&selector, config).await;
    let good_config = ca.client_config().server_name("localhost").build().unwrap();
    let mut good = server.good_client(&selector, good_config).await;
    good.round_trip("before").await;
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut conn =
            rustls::ClientConnection::new(rustls_client_config(&ca, &[version]), localhost())
                .unwrap();
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port()))
            .await
            .unwrap();
        tcp.write_all(&records(&mut conn)).await.unwrap();
        // The server's flight, until the client has what it needs to finish (it then wants to
        // write its Finished, which it never sends).
        let mut buf = vec![0u8; 64 * 1024];
        while !conn.wants_write() {
            let n = within(tcp.read(&mut buf)).await.unwrap();
            assert!(n > 0, "{version:?}: the server ended its flight early");
            conn.read_tls(&mut &buf[..n]).unwrap();
            conn.process_new_packets().unwrap();
        }
        good.round_trip("while a client stalls").await;
        let e = server.failed_handshake().await;
        assert!(
            matches!(e, Error::HandshakeTimeout(t) if t == timeout),
            "{version:?}: {e:?}"
        );
        // The server closed: the client reads the end (or a reset), never hangs.
        let end = within(tcp.read(&mut buf)).await;
        assert!(matches!(end, Ok(0) | Err(_)), "{version:?}: {end:?}");
        good.round_trip("after").await;
    }
    server.finish_good(good).await;
}
