//! Every send of a TLS socket is a `sent` trace event, as the crates' docs say.
//!
//! net-sockets' crate docs, "Tracing": "each send of a stream socket (TCP or Unix, TLS
//! included) is a `trace` event, `sent`" (and the guide's table of events: `sent`, with
//! `bytes`). The bytes a TLS session owes its peer and sends without waiting (its
//! `close_notify` at the socket's close, a KeyUpdate's reply made while it reads) once went out
//! with no `sent` event.

use net_io::LineEnding;
use net_sockets::SelectorManager;
use net_tests::sends::Sends;
use net_tests::within;

/// net-sockets' crate docs, "Tracing": "each send of a stream socket (TCP or Unix, TLS
/// included) is a `trace` event, `sent`". A TLS socket's `close()` sends its `close_notify`
/// (the socket takes it at once here): that send is one too.
#[test]
fn the_close_notify_a_tls_close_sends_is_a_sent_event() {
    let sends = Sends::default();
    let counted = sends.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(sends, || {
        runtime.block_on(async move {
            let selector = SelectorManager::new();
            let pki = net_tests::pki::Pki::generate();
            let listener = net_tests::loopback::tcp_listener(&selector).await;
            let (server, mut client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
            let mut input = client.open_read_channel().unwrap();
            // The server's session tickets (TLS 1.3) are read before counting.
            let mut output = client.open_write_channel(true).unwrap();
            output.write_string_utf8("ping\n").await.unwrap();
            let mut server = server.connection().unwrap();
            let line = within(server.input.read_line(64, LineEnding::Default))
                .await
                .unwrap();
            assert_eq!(line.as_deref(), Some("ping"));
            server.output.write_string_utf8("pong\n").await.unwrap();
            server.output.flush().await.unwrap();
            let line = within(input.read_line(64, LineEnding::Default))
                .await
                .unwrap();
            assert_eq!(line.as_deref(), Some("pong"));

            let before = counted.count();
            server.socket.close();
            // The close_notify arrived: a clean end, not a truncation.
            let end = within(input.read_line(64, LineEnding::Default))
                .await
                .unwrap();
            assert_eq!(end, None);
            assert!(
                counted.count() > before,
                "the close_notify reached the client, but no `sent` event was recorded for it"
            );
            drop((server, input, output, client));
            selector.close();
        });
    });
}
