//! PROXY protocol behind a real HAProxy (`send-proxy` and `send-proxy-v2`): the accepted
//! socket's remote address is the client HAProxy saw, and the proxy's own address stays
//! available.
//!
//! Needs `haproxy` on the PATH (`.ci/run` installs Debian's package when it is missing).

use std::net::SocketAddr;

use net_io::LineEnding;
use net_sockets::{InetSocketAddress, ProxyProtocol, SelectorManager, a_socket};
use net_tests::harness::{Haproxy, SendProxy};
use net_tests::within;

async fn through_haproxy(send: SendProxy) {
    let selector = SelectorManager::new();
    let server = a_socket(&selector)
        .tcp()
        .proxy_protocol(ProxyProtocol::Required)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let backend = SocketAddr::from(([127, 0, 0, 1], server.port().unwrap()));
    let haproxy = Haproxy::start(backend, send);
    // HAProxy's readiness probe above was a connection too; serve until ours arrives.
    let client = within(
        a_socket(&selector)
            .tcp()
            .local_address(InetSocketAddress::new([127, 0, 0, 2], 0))
            .connect(haproxy.front()),
    )
    .await
    .unwrap();
    let client_address = client.local_address();
    let mut client = client.connection().unwrap();
    client
        .output
        .write_string_utf8("hello through haproxy\n")
        .await
        .unwrap();
    client.output.flush().await.unwrap();
    loop {
        let mut accepted = within(server.accept()).await.unwrap();
        if accepted.remote_address() != client_address {
            // The readiness probe: HAProxy relayed it with the probe's own address.
            continue;
        }
        let proxy = accepted.proxy_address().expect("HAProxy's own address");
        assert_eq!(proxy.as_inet().map(|a| a.ip()), Some([127, 0, 0, 1].into()));
        let mut input = accepted.open_read_channel().unwrap();
        let line = within(input.read_line(1024, LineEnding::Default))
            .await
            .unwrap();
        assert_eq!(line.as_deref(), Some("hello through haproxy"));
        break;
    }
    assert_eq!(server.stats().proxy_header_failures, 0);
}

#[tokio::test]
async fn haproxy_send_proxy_v1_names_the_client() {
    through_haproxy(SendProxy::V1).await;
}

#[tokio::test]
async fn haproxy_send_proxy_v2_names_the_client() {
    through_haproxy(SendProxy::V2).await;
}
