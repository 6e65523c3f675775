//! A STARTTLS upgrade whose input had already seen the peer's reset fails with that reset, as
//! the docs say, and throws away the reply the caller left for it to flush (`220 Ready to start
//! TLS`, written and not flushed, as the docs' example does: "flushes the reply first"). That
//! is the upgrade's own decision, and a peer's doing: it must log nothing above `debug` (the
//! guide: "A server can keep its log at info whatever its clients do"). Before, the upgrade
//! dropped the write channel with the reply in it, which logged the `warn` meant for a flush
//! the application forgot: "write channel dropped with 8 unflushed bytes; they are not sent
//! (call flush_and_close, or cancel to drop them on purpose)", once per such client.

use std::time::Duration;

use net_io::LineEnding;
use net_sockets::SelectorManager;
use net_tests::logs::Loud;
use net_tests::loopback::tcp_listener;
use net_tests::pki::TestCa;
use net_tests::within;
use net_tls::TlsExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[test]
fn starttls_after_the_input_saw_a_reset_fails_typed_and_warns_nothing() {
    let loud = Loud::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(loud.clone(), || {
        runtime.block_on(async {
            let selector = SelectorManager::new();
            let ca = TestCa::new("starttls reset ca");
            let listener = tcp_listener(&selector).await;
            let port = listener.port().unwrap();
            for server in [true, false] {
                let (accepted, tcp) = within(async {
                    tokio::join!(listener.accept(), TcpStream::connect(("127.0.0.1", port)))
                })
                .await;
                let mut plain = accepted.unwrap().connection().unwrap();
                let mut tcp = tcp.unwrap();
                tcp.write_all(b"STARTTLS\r\n").await.unwrap();
                let line = within(plain.input.read_line(64, LineEnding::Default)).await;
                assert_eq!(line.unwrap().as_deref(), Some("STARTTLS"));
                // The go-ahead, left for the upgrade to flush.
                plain
                    .output
                    .write_string_utf8("220 Ready to start TLS\r\n")
                    .await
                    .unwrap();
                // The client resets; the server looks for input pipelined after the command
                // (an injection check) and finds the reset.
                net_tests::fault::reset_arrived(tcp).await;
                let looked = within(plain.input.await_content(1)).await;
                assert!(looked.is_err(), "server {server}: {looked:?}");
                let upgraded = if server {
                    let config = ca
                        .server(&["localhost"])
                        .server_config()
                        .handshake_timeout(Duration::from_secs(5))
                        .build()
                        .unwrap();
                    within(plain.tls_server(&config)).await
                } else {
                    let config = ca
                        .client_config()
                        .server_name("localhost")
                        .handshake_timeout(Duration::from_secs(5))
                        .build()
                        .unwrap();
                    within(plain.tls(config)).await
                };
                let e = upgraded.expect_err("no upgrade after a reset");
                assert!(
                    matches!(e, net_tls::Error::Socket(_)),
                    "server {server}: {e:?}"
                );
                let kind = std::io::Error::from(e).kind();
                assert_eq!(kind, std::io::ErrorKind::ConnectionReset, "server {server}");
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
