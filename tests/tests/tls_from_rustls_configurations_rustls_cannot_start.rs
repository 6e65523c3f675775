//! A configuration given through `from_rustls` that rustls cannot start a connection with (a
//! `max_fragment_size` out of its range, which rustls checks only when a connection is made):
//! each handshake fails with `Error::Config`, kind `InvalidInput`, the configuration named as
//! the cause, and sends nothing. Before, it failed with `Error::Handshake`, kind `InvalidData`,
//! and a log line `tls handshake failed`: the text of a peer that sent bad data.

use std::io::ErrorKind;
use std::sync::Arc;

use net_sockets::SelectorManager;
use net_tests::loopback::tcp_listener;
use net_tests::pki::TestCa;
use net_tests::tls::{TlsLineServer, connect, rustls_client, rustls_server};
use net_tests::within;
use net_tls::{Error, TlsConfig, TlsExt, TlsServerConfig, rustls};
use tokio::io::AsyncReadExt;

/// Outside the range rustls takes (32 to 16,389 bytes).
const BAD_FRAGMENT_SIZE: Option<usize> = Some(1);

fn is_config_error(e: &Error) -> bool {
    matches!(e, Error::Config(rustls::Error::BadMaxFragmentSize))
}

#[tokio::test]
async fn a_from_rustls_server_configuration_rustls_cannot_start_is_a_config_error() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("fragment ca");
    let leaf = ca.server(&["localhost"]);
    let mut rustls_config = Arc::unwrap_or_clone(rustls_server(&leaf));
    rustls_config.max_fragment_size = BAD_FRAGMENT_SIZE;
    let config = TlsServerConfig::from_rustls(Arc::new(rustls_config));
    let mut server = TlsLineServer::lines(&selector, config).await;
    let client = ca.client_config().server_name("localhost").build().unwrap();
    let refused = within(connect(&selector, "127.0.0.1", server.port(), client)).await;
    assert!(refused.is_err(), "{refused:?}");
    let e = server.failed_handshake().await;
    assert!(is_config_error(&e), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e:?}");
    assert!(
        e.to_string().starts_with("invalid tls configuration: "),
        "{e}"
    );
}

#[tokio::test]
async fn a_from_rustls_client_configuration_rustls_cannot_start_is_a_config_error() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("fragment ca");
    let mut rustls_config = Arc::unwrap_or_clone(rustls_client(&ca));
    rustls_config.max_fragment_size = BAD_FRAGMENT_SIZE;
    let config = TlsConfig::from_rustls(Arc::new(rustls_config));
    let listener = tcp_listener(&selector).await;
    let port = listener.port().unwrap();
    let peer = async {
        let mut raw = listener.accept().await.unwrap().into_stream().unwrap();
        let mut seen = Vec::new();
        let _ = raw.read_to_end(&mut seen).await;
        seen
    };
    let client = async {
        let socket = net_sockets::a_socket(&selector)
            .tcp()
            .connect(("localhost", port))
            .await
            .unwrap();
        socket.tls(config).await
    };
    let (seen, client) = within(async { tokio::join!(peer, client) }).await;
    let e = client.unwrap_err();
    assert!(is_config_error(&e), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e:?}");
    assert!(seen.is_empty(), "nothing is sent: {seen:?}");
}
