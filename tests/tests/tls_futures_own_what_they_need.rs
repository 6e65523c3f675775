//! The future of `tls_server(&config)` takes what it needs from the configuration when it is
//! made ("the configuration current at this moment"), so it does not borrow `config`: it can be
//! handed to `tokio::spawn` as it is, or kept in a `JoinSet`, after the configuration is
//! dropped or replaced, as tokio-rustls's `TlsAcceptor::accept` future can. Before, the future
//! borrowed `config` for as long as it lived, and `tokio::spawn(socket.tls_server(&config))`
//! did not compile (`config` does not live long enough: "argument requires that `config` is
//! borrowed for `'static`"). Both forms: a `Socket` and a STARTTLS `Connection`; and the client's
//! `tls(config)`, which owns its configuration.
//!
//! Pinned beside it (it held before): such a future, made and kept before it is spawned, counts
//! its handshake timeout from its first poll, as the docs say.

use std::sync::Arc;

use net_io::LineEnding;
use net_sockets::SelectorManager;
use net_tests::loopback::tcp_listener;
use net_tests::pki::TestCa;
use net_tests::tls::{localhost, rustls_client};
use net_tests::within;
use net_tls::TlsExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A tokio-rustls client that reads one line over TLS, after `STARTTLS` and our go-ahead when
/// `starttls`.
async fn client(ca: Arc<TestCa>, mut tcp: TcpStream, starttls: bool) -> String {
    if starttls {
        tcp.write_all(b"STARTTLS\r\n").await.unwrap();
        let mut go = [0u8; 8];
        tcp.read_exact(&mut go).await.unwrap();
        assert_eq!(&go, b"220 go\r\n");
    }
    let mut tls = TlsConnector::from(rustls_client(&ca))
        .connect(localhost(), tcp)
        .await
        .unwrap();
    let mut line = Vec::new();
    while !line.ends_with(b"\n") {
        line.push(tls.read_u8().await.unwrap());
    }
    String::from_utf8(line).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_server_future_is_spawned_as_it_is_after_its_config_is_dropped() {
    let selector = SelectorManager::new();
    let ca = Arc::new(TestCa::new("futures ca"));
    let listener = tcp_listener(&selector).await;
    let port = listener.port().unwrap();
    for starttls in [false, true] {
        let (accepted, tcp) = within(async {
            tokio::join!(listener.accept(), TcpStream::connect(("127.0.0.1", port)))
        })
        .await;
        let peer = tokio::spawn(client(Arc::clone(&ca), tcp.unwrap(), starttls));
        let config = ca.server(&["localhost"]).server_config().build().unwrap();
        let handshake = if starttls {
            let mut plain = accepted.unwrap().connection().unwrap();
            let line = within(plain.input.read_line(64, LineEnding::Default)).await;
            assert_eq!(line.unwrap().as_deref(), Some("STARTTLS"));
            plain.output.write_string_utf8("220 go\r\n").await.unwrap();
            tokio::spawn(plain.tls_server(&config))
        } else {
            tokio::spawn(accepted.unwrap().tls_server(&config))
        };
        drop(config);
        let tls = within(handshake).await.unwrap().unwrap();
        let mut secure = tls.connection().unwrap();
        secure.output.write_string_utf8("hello\n").await.unwrap();
        secure.output.flush().await.unwrap();
        assert_eq!(
            within(peer).await.unwrap(),
            "hello\n",
            "starttls {starttls}"
        );
        secure.socket.close();
    }
    selector.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_server_futures_outlive_their_config_in_a_join_set() {
    let selector = SelectorManager::new();
    let ca = Arc::new(TestCa::new("futures ca"));
    let listener = tcp_listener(&selector).await;
    let port = listener.port().unwrap();
    let mut handshakes = tokio::task::JoinSet::new();
    let mut peers = Vec::new();
    {
        // A configuration that lives only in this block, as one reloaded into a local would.
        let config = ca.server(&["localhost"]).server_config().build().unwrap();
        for _ in 0..3 {
            let (accepted, tcp) = within(async {
                tokio::join!(listener.accept(), TcpStream::connect(("127.0.0.1", port)))
            })
            .await;
            peers.push(tokio::spawn(client(Arc::clone(&ca), tcp.unwrap(), false)));
            handshakes.spawn(accepted.unwrap().tls_server(&config));
        }
    }
    let mut served = Vec::new();
    while let Some(done) = within(handshakes.join_next()).await {
        let tls = done.unwrap().unwrap();
        let mut secure = tls.connection().unwrap();
        secure.output.write_string_utf8("hi\n").await.unwrap();
        secure.output.flush().await.unwrap();
        // Open until the peers read.
        served.push(secure);
    }
    assert_eq!(served.len(), 3);
    for peer in peers {
        assert_eq!(within(peer).await.unwrap(), "hi\n");
    }
    for secure in served {
        secure.socket.close();
    }
    selector.close();
}

/// The handshake timeout counts from the future's first poll, not from the call that made it
/// (as the docs say: "one deadline from the first poll"): a future made, kept past its
/// timeout, then spawned still gets its whole handshake, on a `Socket` and on a STARTTLS
/// `Connection`, on either side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_timeout_counts_from_the_first_poll() {
    const TIMEOUT: std::time::Duration = std::time::Duration::from_millis(200);
    let selector = SelectorManager::new();
    let ca = Arc::new(TestCa::new("futures ca"));
    let listener = tcp_listener(&selector).await;
    let port = listener.port().unwrap();
    for starttls in [false, true] {
        for we_are_server in [true, false] {
            let case = format!("starttls {starttls}, server {we_are_server}");
            let (accepted, tcp) = within(async {
                tokio::join!(listener.accept(), TcpStream::connect(("127.0.0.1", port)))
            })
            .await;
            let (accepted, tcp) = (accepted.unwrap(), tcp.unwrap());
            let handshake = if we_are_server {
                let config = ca
                    .server(&["localhost"])
                    .server_config()
                    .handshake_timeout(TIMEOUT)
                    .build()
                    .unwrap();
                if starttls {
                    futures_boxed(accepted.connection().unwrap().tls_server(&config))
                } else {
                    futures_boxed(accepted.tls_server(&config))
                }
            } else {
                let config = ca
                    .client_config()
                    .server_name("localhost")
                    .handshake_timeout(TIMEOUT)
                    .build()
                    .unwrap();
                if starttls {
                    futures_boxed(accepted.connection().unwrap().tls(config))
                } else {
                    futures_boxed(accepted.tls(config))
                }
            };
            tokio::time::sleep(TIMEOUT * 3).await;
            let handshake = tokio::spawn(handshake);
            if we_are_server {
                let connector = TlsConnector::from(rustls_client(&ca));
                let client = within(connector.connect(localhost(), tcp)).await;
                assert!(client.is_ok(), "{case}: {client:?}");
            } else {
                let leaf = ca.server(&["localhost"]);
                let acceptor =
                    tokio_rustls::TlsAcceptor::from(net_tests::tls::rustls_server(&leaf));
                let server = within(acceptor.accept(tcp)).await;
                assert!(server.is_ok(), "{case}: {server:?}");
            }
            let tls = within(handshake).await.unwrap();
            assert!(tls.is_ok(), "{case}: {tls:?}");
        }
    }
    selector.close();
}

/// `future`, boxed, so that the four kinds of upgrade have one type.
fn futures_boxed(
    future: impl std::future::Future<Output = net_tls::Result<net_tls::TlsSocket>> + Send + 'static,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = net_tls::Result<net_tls::TlsSocket>> + Send>>
{
    Box::pin(future)
}
