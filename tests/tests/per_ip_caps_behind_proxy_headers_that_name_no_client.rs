//! `max_connections_per_ip` behind PROXY protocol headers that name no client: a v1
//! `PROXY UNKNOWN` line and a v2 `LOCAL` header (a proxy's own connection, such as HAProxy's
//! health checks) leave the connection's own address as its remote address (the PROXY
//! specification: the receiver uses the real connection's addresses), so such a connection
//! counts against the proxy's own address, with every other such connection of that proxy,
//! while a header that names a client counts against that client (guarantees.md, the row of
//! `max_connections_per_ip`).

use std::net::SocketAddr;

use net_sockets::{ProxyProtocol, SelectorManager, Socket, a_socket};
use net_tests::proxy::v2;
use net_tests::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A connection to `address` from the proxy (this process) that sends `header`.
async fn through_the_proxy(address: SocketAddr, header: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(header).await.unwrap();
    stream
}

/// Whether the listener closed `stream` unanswered (the end of stream, or a reset; a
/// connection handed out instead stays open, and `within` fails).
async fn refused(mut stream: TcpStream) -> bool {
    let mut rest = Vec::new();
    let _ = within(stream.read_to_end(&mut rest)).await;
    rest.is_empty()
}

#[tokio::test]
async fn headers_that_name_no_client_count_against_the_proxys_own_address() {
    let selector = SelectorManager::new();
    let server = a_socket(&selector)
        .tcp()
        .proxy_protocol(ProxyProtocol::Required)
        .max_connections_per_ip(1)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let address = SocketAddr::from(([127, 0, 0, 1], server.port().unwrap()));
    let server = std::sync::Arc::new(server);
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel::<Socket>();
    let accepting = {
        let server = std::sync::Arc::clone(&server);
        tokio::spawn(async move {
            while let Ok(socket) = server.accept().await {
                if accepted_tx.send(socket).is_err() {
                    break;
                }
            }
        })
    };
    let local = v2(0x20, 0x00, &[]);

    // `PROXY UNKNOWN`: the proxy's own address is the client, and takes its one place.
    let mut unknown = through_the_proxy(address, b"PROXY UNKNOWN\r\n").await;
    let first = within(accepted.recv()).await.unwrap();
    let proxy = unknown.local_addr().unwrap();
    assert_eq!(first.remote_address().to_string(), proxy.to_string());
    assert_eq!(first.proxy_address(), None);

    // A v2 `LOCAL` header from the same proxy counts against that address too: refused.
    let again = through_the_proxy(address, &local).await;
    assert!(refused(again).await, "a LOCAL connection was served");
    assert_eq!(server.stats().refused_per_ip, 1);

    // A header that names a client counts against the client, not the proxy: admitted.
    let named = through_the_proxy(address, b"PROXY TCP4 192.0.2.1 127.0.0.1 1 9002\r\n").await;
    let client = within(accepted.recv()).await.unwrap();
    assert_eq!(client.remote_address().to_string(), "192.0.2.1:1");
    assert_eq!(
        client.proxy_address().map(|a| a.to_string()),
        Some(named.local_addr().unwrap().to_string())
    );

    // The UNKNOWN connection ends: its place frees before its client sees the end, and a
    // `LOCAL` connection of the proxy takes it, the proxy's address its remote address.
    first.close();
    let mut end = Vec::new();
    within(unknown.read_to_end(&mut end)).await.unwrap();
    let mut health_check = through_the_proxy(address, &local).await;
    let second = within(accepted.recv()).await.unwrap();
    assert_eq!(
        second.remote_address().to_string(),
        health_check.local_addr().unwrap().to_string()
    );
    assert_eq!(second.proxy_address(), None);

    // And now a `PROXY UNKNOWN` one is the one too many.
    let over = through_the_proxy(address, b"PROXY UNKNOWN\r\n").await;
    assert!(refused(over).await, "an UNKNOWN connection was served");
    assert_eq!(server.stats().refused_per_ip, 2);

    second.close();
    let _ = within(health_check.read_to_end(&mut end)).await;
    drop((client, named));
    accepting.abort();
    server.close();
    selector.close();
}
