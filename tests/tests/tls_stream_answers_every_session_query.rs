//! SPEC §4.2: `TlsStream` has "the same session queries as `TlsSocket`". `tls_stream` checks
//! some of them on one side each; this checks all six (`alpn_protocol`, `protocol_version`,
//! `cipher_suite`, `key_exchange_group`, `peer_certificates`, `server_name`) on both sides of a
//! mutual-TLS session: each answers on the stream exactly what it answered on the socket
//! before `into_stream`.

use net_sockets::{SelectorManager, a_socket};
use net_tests::loopback::tcp_listener;
use net_tests::pki::TestCa;
use net_tests::within;
use net_tls::{TlsExt, TlsSession};

/// The six session queries' answers, owned.
type Answers = (
    Option<Vec<u8>>,
    Option<net_tls::TlsVersion>,
    Option<net_tls::rustls::CipherSuite>,
    Option<net_tls::rustls::NamedGroup>,
    Vec<Vec<u8>>,
    Option<String>,
);

fn answers(session: &TlsSession) -> Answers {
    (
        session.alpn_protocol().map(<[u8]>::to_vec),
        session.protocol_version(),
        session.cipher_suite(),
        session.key_exchange_group(),
        session
            .peer_certificates()
            .iter()
            .map(|c| c.as_ref().to_vec())
            .collect(),
        session.server_name().map(str::to_owned),
    )
}

#[tokio::test]
async fn both_sides_answer_every_query_on_the_stream_as_on_the_socket() {
    let selector = SelectorManager::new();
    let servers = TestCa::new("queries server ca");
    let clients = TestCa::new("queries client ca");
    let server_config = servers
        .server(&["localhost"])
        .mutual_tls_server_config(&clients)
        .alpn_protocols(["q/1"])
        .build()
        .unwrap();
    let client_config = clients
        .client("queries client")
        .client_certificate(servers.client_config())
        .server_name("localhost")
        .alpn_protocols(["q/1"])
        .build()
        .unwrap();
    let listener = tcp_listener(&selector).await;
    let port = listener.port().unwrap();
    let server = tokio::spawn(async move {
        let tls = net_tests::tls::accept(&listener, &server_config).await;
        let on_socket = answers(&tls);
        let stream = tls.into_stream().unwrap();
        (on_socket, answers(&stream))
    });
    let socket = a_socket(&selector)
        .tcp()
        .connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tls = within(socket.tls(client_config)).await.unwrap();
    let client_on_socket = answers(&tls);
    let client_on_stream = answers(&tls.into_stream().unwrap());
    let (server_on_socket, server_on_stream) = within(server).await.unwrap();

    for (side, on_socket, on_stream) in [
        ("client", &client_on_socket, &client_on_stream),
        ("server", &server_on_socket, &server_on_stream),
    ] {
        assert_eq!(on_stream, on_socket, "{side}: the stream's answers");
        let (alpn, version, suite, group, peer, name) = on_stream;
        assert_eq!(alpn.as_deref(), Some(&b"q/1"[..]), "{side}");
        assert!(
            version.is_some() && suite.is_some() && group.is_some(),
            "{side}"
        );
        assert!(!peer.is_empty(), "{side}: the peer's chain");
        assert_eq!(name.as_deref(), Some("localhost"), "{side}");
    }
    selector.close();
}
