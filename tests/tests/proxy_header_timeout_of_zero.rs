//! `proxy_header_timeout(Duration::ZERO)`: the deadline passes at the timer's next tick, so
//! only a header already received when the listener takes the connection is read in time.

use std::net::SocketAddr;
use std::time::Duration;

use net_io::LineEnding;
use net_sockets::{ProxyProtocol, SelectorManager, a_socket, proxy_header};
use net_tests::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A required header that came with the connection is read; a client that sends nothing is
/// dropped (counted, its end seen) at the next tick rather than waited for, and the listener
/// goes on.
#[tokio::test]
async fn a_zero_header_timeout_reads_only_a_header_already_received() {
    let selector = SelectorManager::new();
    let server = a_socket(&selector)
        .tcp()
        .proxy_protocol(ProxyProtocol::Required)
        .proxy_header_timeout(Duration::ZERO)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let address = SocketAddr::from(([127, 0, 0, 1], server.port().unwrap()));
    let client: SocketAddr = "192.0.2.7:4242".parse().unwrap();

    // The header and a line are in the listener's receive queue before it takes the
    // connection (loopback delivers a write at once).
    let mut sent_first = TcpStream::connect(address).await.unwrap();
    let header = proxy_header::v2(client, address);
    sent_first
        .write_all(&[&header[..], b"hello\n"].concat())
        .await
        .unwrap();
    let mut socket = within(server.accept()).await.unwrap();
    assert_eq!(socket.remote_address().to_string(), "192.0.2.7:4242");
    let mut input = socket.open_read_channel().unwrap();
    let line = within(input.read_line(64, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("hello"));
    assert_eq!(server.stats().proxy_header_failures, 0);

    // Silent: dropped without its header, the client sees the end.
    let mut silent = TcpStream::connect(address).await.unwrap();
    let accept = server.accept();
    tokio::pin!(accept);
    let mut rest = Vec::new();
    tokio::select! {
        read = within(silent.read_to_end(&mut rest)) => {
            read.expect("the silent client's connection ends, without a reset");
        }
        accepted = &mut accept => panic!("a connection without its header was handed out: {:?}", accepted.map(|s| s.remote_address())),
    }
    assert!(
        rest.is_empty(),
        "nothing is sent to a dropped client: {rest:?}"
    );
    assert_eq!(server.stats().proxy_header_failures, 1);

    // The listener goes on: the next connection with its header is handed out.
    let mut next = TcpStream::connect(address).await.unwrap();
    next.write_all(&proxy_header::v1(client, address).into_bytes())
        .await
        .unwrap();
    let socket = within(accept).await.unwrap();
    assert_eq!(socket.remote_address().to_string(), "192.0.2.7:4242");
}
