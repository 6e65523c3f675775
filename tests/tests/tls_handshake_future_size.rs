//! Memory an idle TLS connection keeps: the handshake's futures.
//!
//! A task that runs a handshake (`socket.tls_server(&config).await`, then serves) is allocated
//! once, at the size of its largest state, and keeps that size for as long as the connection
//! lives: a handshake future that holds rustls's mid-handshake state inline (about 5 KB) would
//! make every idle TLS connection's task carry it long after the handshake ended. The
//! handshake futures are therefore boxed: what a task holds of one is a pointer, and the
//! handshake's state is freed when it ends.

use net_io::LineEnding;
use net_sockets::SelectorManager;
use net_tests::loopback::tcp_listener;
use net_tests::pki::Pki;
use net_tests::within;
use net_tls::TlsExt;

/// The most a handshake future may take inline: a few words, not the handshake's state.
const SMALL_FUTURE: usize = 64;

#[tokio::test]
async fn handshake_futures_are_small_and_still_handshake() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let pki = Pki::generate();
    let server_config = pki.server_config().build().unwrap();
    let client_config = pki.client_config().build().unwrap();
    let port = listener.port().unwrap();
    let (accepted, connected) = within(async {
        tokio::join!(
            listener.accept(),
            net_sockets::a_socket(&selector)
                .tcp()
                .connect(("localhost", port))
        )
    })
    .await;
    let server = accepted.unwrap().tls_server(&server_config);
    let client = connected.unwrap().tls(client_config);
    let (server_size, client_size) = (size_of_val(&server), size_of_val(&client));
    assert!(
        server_size <= SMALL_FUTURE && client_size <= SMALL_FUTURE,
        "tls_server's future takes {server_size} bytes inline, tls's {client_size}"
    );
    // They still do what they did.
    let (server, client) = within(async { tokio::join!(server, client) }).await;
    let (mut server, mut client) = (server.unwrap(), client.unwrap());
    let mut output = server.open_write_channel(true).unwrap();
    output.write_string_utf8("hello\n").await.unwrap();
    let mut input = client.open_read_channel().unwrap();
    let line = within(input.read_line(64, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("hello"));
}

#[tokio::test]
async fn starttls_handshake_futures_are_small() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let pki = Pki::generate();
    let server_config = pki.server_config().build().unwrap();
    let client_config = pki.client_config().build().unwrap();
    let port = listener.port().unwrap();
    let (accepted, connected) = within(async {
        tokio::join!(
            listener.accept(),
            net_sockets::a_socket(&selector)
                .tcp()
                .connect(("localhost", port))
        )
    })
    .await;
    let server = accepted
        .unwrap()
        .connection()
        .unwrap()
        .tls_server(&server_config);
    let client = connected.unwrap().connection().unwrap().tls(client_config);
    let (server_size, client_size) = (size_of_val(&server), size_of_val(&client));
    assert!(
        server_size <= SMALL_FUTURE && client_size <= SMALL_FUTURE,
        "Connection::tls_server's future takes {server_size} bytes inline, tls's {client_size}"
    );
    let (server, client) = within(async { tokio::join!(server, client) }).await;
    assert!(server.is_ok() && client.is_ok());
}
