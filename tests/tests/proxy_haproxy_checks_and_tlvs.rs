//! A real HAProxy sending PROXY v2 headers with TLVs (`proxy-v2-options`) and health checks
//! (`check`: v2 `LOCAL` headers), to a listener that requires the header and caps each address
//! at one connection: checks are handed out with the proxy's own address, clients with theirs,
//! and no header is counted as bad.

use std::net::SocketAddr;

use net_io::LineEnding;
use net_sockets::{InetSocketAddress, ProxyProtocol, SelectorManager, a_socket};
use net_tests::TempDir;
use net_tests::harness::{Process, free_port, system_program};
use net_tests::within;

#[tokio::test]
async fn haproxy_health_checks_and_tlvs_are_read_as_local_and_proxy_headers() {
    let selector = SelectorManager::new();
    let server = a_socket(&selector)
        .tcp()
        .proxy_protocol(ProxyProtocol::Required)
        .max_connections_per_ip(1)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let backend = SocketAddr::from(([127, 0, 0, 1], server.port().unwrap()));
    let dir = TempDir::new("haproxy-checks");
    let front = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = format!(
        "global\n    maxconn 64\n    nbthread 1\n    noreuseport\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    \
         timeout server 30s\n    timeout check 5s\n\
         frontend front\n    bind {front}\n    unique-id-format %{{+X}}o\\ %ci:%cp\n    \
         default_backend back\n\
         backend back\n    server app {backend} send-proxy-v2 \
         proxy-v2-options authority,crc32c,unique-id check inter 100ms\n"
    );
    let path = dir.write("haproxy.cfg", &config);
    let haproxy = system_program("haproxy");
    let _process = Process::start(&haproxy, ["-db", "-f", path.to_str().unwrap()]);

    // Health checks come first: `LOCAL` headers, handed out with the proxy's address.
    let check = within(server.accept()).await.unwrap();
    assert_eq!(check.proxy_address(), None);
    assert_eq!(
        check.remote_address().as_inet().map(|a| a.ip()),
        Some([127, 0, 0, 1].into())
    );
    drop(check);

    // HAProxy binds its frontend before it starts checking.
    let client = within(
        a_socket(&selector)
            .tcp()
            .local_address(InetSocketAddress::new([127, 0, 0, 2], 0))
            .connect(front),
    )
    .await
    .unwrap();
    let client_address = client.local_address();
    let mut client = client.connection().unwrap();
    client.output.write_string_utf8("hello\n").await.unwrap();
    client.output.flush().await.unwrap();
    loop {
        let accepted = within(server.accept()).await.unwrap();
        if accepted.remote_address() != client_address {
            // Another health check.
            assert_eq!(accepted.proxy_address(), None);
            continue;
        }
        assert!(accepted.proxy_address().is_some());
        let mut accepted = accepted;
        let mut input = accepted.open_read_channel().unwrap();
        let line = within(input.read_line(1024, LineEnding::Default))
            .await
            .unwrap();
        assert_eq!(line.as_deref(), Some("hello"));
        break;
    }
    assert_eq!(server.stats().proxy_header_failures, 0);
}
