//! A STARTTLS upgrade future dropped before its first poll (a `tokio::select!` whose other
//! branch, a shutdown signal say, was ready first; a `JoinSet` aborted before the task ran)
//! closes the socket, as its docs say ("Dropping the future closes the socket"), and throws
//! away what the output held for the upgrade to flush (the go-ahead) as a drop of an upgrade
//! that started does: the close is a reset, and nothing is logged above `debug`. Before, the
//! go-ahead was dropped with the channel, which logged the `warn` meant for a flush the
//! application forgot ("write channel dropped with 8 unflushed bytes; they are not sent (call
//! flush_and_close, or cancel to drop them on purpose)"), while the same upgrade dropped after
//! one poll logged at `debug` only.

use std::time::Duration;

use net_sockets::SelectorManager;
use net_tests::logs::Loud;
use net_tests::loopback::tcp_listener;
use net_tests::pki::TestCa;
use net_tests::within;
use net_tls::TlsExt;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

#[test]
fn a_starttls_upgrade_dropped_before_its_first_poll_closes_and_warns_nothing() {
    let loud = Loud::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(loud.clone(), || {
        runtime.block_on(async {
            let selector = SelectorManager::new();
            let ca = TestCa::new("unpolled upgrade ca");
            let server_config = ca.server(&["localhost"]).server_config().build().unwrap();
            let listener = tcp_listener(&selector).await;
            let port = listener.port().unwrap();
            for server in [true, false] {
                let (accepted, tcp) = within(async {
                    tokio::join!(listener.accept(), TcpStream::connect(("127.0.0.1", port)))
                })
                .await;
                let mut plain = accepted.unwrap().connection().unwrap();
                let mut tcp = tcp.unwrap();
                plain.output.write_string_utf8("220 go\r\n").await.unwrap();
                let stop = std::future::ready(());
                // The shutdown branch is ready first: the upgrade is never polled.
                if server {
                    tokio::select! {
                        biased;
                        () = stop => {}
                        _ = plain.tls_server(&server_config) => unreachable!(),
                    }
                } else {
                    let config = ca
                        .client_config()
                        .server_name("localhost")
                        .handshake_timeout(Duration::from_secs(5))
                        .build()
                        .unwrap();
                    tokio::select! {
                        biased;
                        () = stop => {}
                        _ = plain.tls(config) => unreachable!(),
                    }
                }
                // The socket is closed, without the go-ahead: a reset (or an end).
                let mut got = Vec::new();
                let end = within(tcp.read_to_end(&mut got)).await;
                assert!(got.is_empty(), "server {server}: the peer got {got:?}");
                if let Err(e) = end {
                    assert_eq!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset,
                        "server {server}"
                    );
                }
                let loud = loud.lines();
                assert_eq!(
                    loud,
                    Vec::<String>::new(),
                    "server {server}: events above debug"
                );
            }
            selector.close();
        })
    });
}
