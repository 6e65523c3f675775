//! The defaults the builders' docs give are the ones the code starts with: `SocketOptions`'
//! fields (each field's doc, and `TcpSocketBuilder`'s summary: `no_delay` on, backlog 1024,
//! flush coalescing on, a 5 s PROXY header timeout, no timeouts, the OS's for the rest), the
//! options every builder starts from, and the TLS configurations' ALPN list (none) and
//! handshake timeout (10 seconds), as their `Debug` shows them.

use std::time::Duration;

use net_sockets::{ProxyProtocol, SelectorManager, SocketOptions, a_socket};
use net_tests::pki::Pki;
use net_tls::{TlsConfig, TlsServerConfig};

/// Each field of `SocketOptions::default()` is the default its doc gives.
#[test]
fn socket_options_default_to_what_their_docs_say() {
    let options = SocketOptions::default();
    // "Default: on for TCP listeners (as tokio does), off otherwise": `None` decides per kind.
    assert_eq!(options.reuse_address, None);
    assert!(!options.reuse_port, "SO_REUSEPORT: off");
    assert_eq!(options.type_of_service, None, "the OS's");
    assert_eq!(options.send_buffer_size, None, "the OS's");
    assert_eq!(options.receive_buffer_size, None, "the OS's");
    assert!(!options.broadcast, "SO_BROADCAST: off");
    assert!(options.no_delay, "TCP_NODELAY: on, as in Ktor");
    assert_eq!(options.keep_alive, None, "the OS's (off)");
    assert_eq!(options.keep_alive_idle, None);
    assert_eq!(options.keep_alive_interval, None);
    assert_eq!(options.keep_alive_count, None);
    assert_eq!(options.tcp_user_timeout, None, "the OS's (none)");
    assert_eq!(options.linger, None, "the OS's (off)");
    assert_eq!(options.socket_timeout, None, "no inactivity timeout");
    assert_eq!(options.connect_timeout, None, "no connect timeout");
    assert_eq!(options.backlog, 1024);
    assert!(options.coalesce_flushes, "flush coalescing: on");
    assert_eq!(options.local_address, None, "the OS picks");
    assert_eq!(options.max_connections, None, "no cap");
    assert_eq!(options.max_connections_per_ip, None, "no cap");
    assert_eq!(options.proxy_protocol, ProxyProtocol::Off);
    assert_eq!(ProxyProtocol::default(), ProxyProtocol::Off);
    assert_eq!(options.proxy_header_timeout, Duration::from_secs(5));
}

/// `a_socket(..)`, `.tcp()` and `.udp()` start from those defaults.
#[tokio::test]
async fn every_socket_builder_starts_from_the_default_options() {
    let selector = SelectorManager::new();
    let default = SocketOptions::default();
    assert_eq!(a_socket(&selector).options(), &default);
    assert_eq!(a_socket(&selector).tcp().options(), &default);
    assert_eq!(a_socket(&selector).udp().options(), &default);
}

/// The TLS builders' defaults: no ALPN and a 10-second handshake timeout on both sides.
#[test]
fn tls_configurations_default_to_no_alpn_and_a_ten_second_handshake_timeout() {
    let pki = Pki::generate();
    let client = format!("{:?}", TlsConfig::builder().build().unwrap());
    let server = format!("{:?}", pki.server_config().build().unwrap());
    for shown in [&client, &server] {
        assert!(shown.contains("alpn_protocols: []"), "{shown}");
        assert!(shown.contains("handshake_timeout: 10s"), "{shown}");
    }
    assert!(client.contains("verification: \"enabled\""), "{client}");
    assert!(server.contains("client_auth: \"none\""), "{server}");
    // The server builder's own start, without the test kit's leaf.
    let bare = format!("{:?}", TlsServerConfig::builder());
    assert!(bare.contains("certificates: 0"), "{bare}");
    assert!(bare.contains("key: false"), "{bare}");
}
