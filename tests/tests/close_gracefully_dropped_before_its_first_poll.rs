//! `Connection::close_gracefully`'s docs: "Dropping the future closes the socket at once, as
//! `Socket::close`; what the output still held is thrown away as when `wait` runs out (the
//! close then resets, and no warning is logged: the caller dropped it on purpose)". That holds
//! also for a future dropped before its first poll (a `tokio::select!` whose other branch, a
//! shutdown signal say, was ready first), plain and over TLS: the close is a reset (the peer
//! gets none of the bytes, over TLS no `close_notify`), and nothing is logged above `debug`.
//! Before, such a drop logged the `warn` meant for a flush the application forgot: "write
//! channel dropped with 5 unflushed bytes; they are not sent (call flush_and_close, or cancel
//! to drop them on purpose)".

use std::time::Duration;

use net_sockets::{Connection, SelectorManager, Transport};
use net_tests::logs::Loud;
use net_tests::loopback::tcp_listener;
use net_tests::pki::Pki;
use net_tests::within;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Leaves `bye\r\n` unflushed in `connection`'s output, then makes its `close_gracefully`
/// future and drops it unpolled, as a `select!` whose other branch was ready first does.
async fn close_gracefully_never_polled<T: Transport>(mut connection: Connection<T>) {
    connection
        .output
        .write_string_utf8("bye\r\n")
        .await
        .unwrap();
    let stop = std::future::ready(());
    tokio::select! {
        biased;
        () = stop => {}
        _ = connection.close_gracefully(Duration::from_secs(5)) => unreachable!(),
    }
}

#[test]
fn close_gracefully_dropped_before_its_first_poll_resets_and_warns_nothing() {
    let loud = Loud::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(loud.clone(), || {
        runtime.block_on(async {
            let selector = SelectorManager::new();
            let listener = tcp_listener(&selector).await;
            let port = listener.port().unwrap();
            // Plain: the peer is a tokio stream, and must get none of the bytes.
            let (accepted, tcp) = within(async {
                tokio::join!(listener.accept(), TcpStream::connect(("127.0.0.1", port)))
            })
            .await;
            let mut tcp = tcp.unwrap();
            close_gracefully_never_polled(accepted.unwrap().connection().unwrap()).await;
            let mut got = Vec::new();
            let end = within(tcp.read_to_end(&mut got)).await;
            assert!(got.is_empty(), "plain: the peer got {got:?}");
            if let Err(e) = end {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "plain");
            }
            assert_eq!(loud.lines(), Vec::<String>::new(), "plain");
            // TLS: the peer (our client) gets no clean end.
            let pki = Pki::generate();
            let (server, client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
            close_gracefully_never_polled(server.connection().unwrap()).await;
            let mut client = client.connection().unwrap();
            let read = within(client.input.read_line(64, net_io::LineEnding::Default)).await;
            assert!(
                read.is_err(),
                "tls: the client read {read:?}, not a cut stream"
            );
            client.socket.close();
            assert_eq!(loud.lines(), Vec::<String>::new(), "tls");
            selector.close();
        })
    });
}
