//! Checks of specific sentences of net-tls's server docs, the crate docs'
//! "Serving TLS in production" and the guide's shutdown section, over loopback.

use std::sync::Arc;
use std::time::Duration;

use net_sockets::{Error as SocketError, SelectorManager, ServerSocket, a_socket};
use net_tests::pki::TestCa;
use net_tests::tls::{localhost, provider};
use net_tests::within;
use net_tls::rustls::client::Resumption;
use net_tls::rustls::pki_types::ServerName;
use net_tls::rustls::{self, ClientConfig, HandshakeKind, RootCertStore, SupportedProtocolVersion};
use net_tls::{TlsExt, TlsServerConfig};
use tokio::io::AsyncReadExt;

fn client_config(
    ca: &TestCa,
    version: &'static SupportedProtocolVersion,
    resume: bool,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !resume {
        config.resumption = Resumption::disabled();
    }
    Arc::new(config)
}

/// A server that runs each handshake, then closes (close_notify, FIN).
async fn serve(selector: &SelectorManager, config: TlsServerConfig) -> (Arc<ServerSocket>, u16) {
    let listener = Arc::new(
        a_socket(selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap(),
    );
    let port = listener.port().unwrap();
    let accepting = Arc::clone(&listener);
    tokio::spawn(async move {
        while let Ok(socket) = accepting.accept().await {
            let config = config.clone();
            tokio::spawn(async move {
                if let Ok(tls) = socket.tls_server(&config).await {
                    tls.close();
                }
            });
        }
    });
    (listener, port)
}

/// Connects with `config` as `name`, reads to the end (the session tickets come before it), and
/// says how the handshake went.
async fn visit(
    port: u16,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
) -> (HandshakeKind, Vec<u8>) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut tls = within(tokio_rustls::TlsConnector::from(config).connect(name, tcp))
        .await
        .unwrap();
    let kind = tls.get_ref().1.handshake_kind().unwrap();
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let mut rest = Vec::new();
    within(tls.read_to_end(&mut rest)).await.unwrap();
    (kind, leaf)
}

/// server.rs:26-29: "keeps the sessions its handshakes made in memory (the last 256 tickets and
/// session IDs: a TLS 1.3 client gets two tickets, each naming its session, a TLS 1.2 client a
/// session ID)". A client's session is resumed while at most 256 entries were stored after and
/// with it, and is not once more were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_keeps_the_last_256_tickets_and_session_ids() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("docs test CA");
    let leaf = ca.server(&["localhost"]);
    // (version, entries per client, other clients after the first: fits, then one too many)
    let cases: [(&'static SupportedProtocolVersion, usize); 2] =
        [(&rustls::version::TLS13, 2), (&rustls::version::TLS12, 1)];
    for (version, per_client) in cases {
        let fits = 256 / per_client - 1;
        for (others, resumed) in [(fits, true), (fits + 1, false)] {
            let config = TlsServerConfig::builder()
                .certificate_chain_pem(leaf.chain_pem().as_bytes())
                .unwrap()
                .private_key_pem(leaf.key_pem().as_bytes())
                .unwrap()
                .build()
                .unwrap();
            let (listener, port) = serve(&selector, config).await;
            let first = client_config(&ca, version, true);
            let other = client_config(&ca, version, false);
            let (kind, _) = visit(port, Arc::clone(&first), localhost()).await;
            assert_eq!(kind, HandshakeKind::Full);
            for _ in 0..others {
                let (kind, _) = visit(port, Arc::clone(&other), localhost()).await;
                assert_eq!(kind, HandshakeKind::Full);
            }
            let (kind, _) = visit(port, first, localhost()).await;
            let expected = if resumed {
                HandshakeKind::Resumed
            } else {
                HandshakeKind::Full
            };
            assert_eq!(
                kind, expected,
                "{version:?}: {others} other clients after the first"
            );
            listener.close();
        }
    }
}

/// server.rs:273-274: "A name given again replaces its earlier certificate." (also when given
/// again in another case, with a trailing dot: the same name for SNI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sni_name_given_again_replaces_its_earlier_certificate() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("docs test CA");
    let default = ca.server(&["localhost"]);
    let earlier = ca.server(&["other.test"]);
    let later = ca.server(&["other.test"]);
    let config = TlsServerConfig::builder()
        .certificate_chain_pem(default.chain_pem().as_bytes())
        .unwrap()
        .private_key_pem(default.key_pem().as_bytes())
        .unwrap()
        .sni_certificate_pem(
            "other.test",
            earlier.chain_pem().as_bytes(),
            earlier.key_pem().as_bytes(),
        )
        .unwrap()
        .sni_certificate_pem(
            "OTHER.test.",
            later.chain_pem().as_bytes(),
            later.key_pem().as_bytes(),
        )
        .unwrap()
        .build()
        .unwrap();
    let (listener, port) = serve(&selector, config).await;
    let client = client_config(&ca, &rustls::version::TLS13, false);
    let name = ServerName::try_from("other.test").unwrap();
    let (_, leaf) = visit(port, client, name).await;
    assert_eq!(
        leaf,
        later.cert_der().to_vec(),
        "the later certificate is served"
    );
    listener.close();
}

/// guide.md §5: "`ServerSocket::shutdown(grace)` closes the listener at once (new connects are
/// refused, a pending `accept` fails with `Error::Closed`)".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_fails_a_pending_accept_with_closed_and_refuses_connects() {
    let selector = SelectorManager::new();
    let listener = Arc::new(
        a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap(),
    );
    let port = listener.port().unwrap();
    let accepting = Arc::clone(&listener);
    let pending = tokio::spawn(async move { accepting.accept().await.map(|_| ()) });
    // Let the accept start waiting.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let report = within(listener.shutdown(Duration::ZERO)).await;
    assert_eq!((report.finished, report.cut), (0, 0));
    let accepted = within(pending).await.unwrap();
    assert!(matches!(accepted, Err(SocketError::Closed)), "{accepted:?}");
    let connect = std::net::TcpStream::connect(("127.0.0.1", port));
    assert_eq!(
        connect.map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
}

/// server.rs:34-36: "Configurations given to `from_rustls` keep their own `session_storage` and
/// `ticketer`: two that share them resume each other's sessions, across a reload too". And the
/// control: a reload to one with storage of its own resumes nothing made before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_rustls_configurations_sharing_session_storage_resume_across_a_reload() {
    use net_tls::rustls::server::ServerSessionMemoryCache;
    let selector = SelectorManager::new();
    let ca = TestCa::new("docs test CA");
    let leaf = ca.server(&["localhost"]);
    let rustls_config = |storage: Option<Arc<dyn rustls::server::StoresServerSessions>>| {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(leaf.chain_der().to_vec(), leaf.key_der())
            .unwrap();
        if let Some(storage) = storage {
            config.session_storage = storage;
        }
        TlsServerConfig::from_rustls(Arc::new(config))
    };
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        for shared in [true, false] {
            let storage: Arc<dyn rustls::server::StoresServerSessions> =
                ServerSessionMemoryCache::new(256);
            let first = rustls_config(Some(Arc::clone(&storage)));
            let (listener, port) = serve(&selector, first.clone()).await;
            let client = client_config(&ca, version, true);
            let (kind, _) = visit(port, Arc::clone(&client), localhost()).await;
            assert_eq!(kind, HandshakeKind::Full);
            let next = rustls_config(shared.then_some(storage));
            first.reload(&next);
            let (kind, _) = visit(port, client, localhost()).await;
            let expected = if shared {
                HandshakeKind::Resumed
            } else {
                HandshakeKind::Full
            };
            assert_eq!(kind, expected, "{version:?}, storage shared: {shared}");
            listener.close();
        }
    }
}

/// server.rs:296-297: `sni_certificate_der` fails with `Error::Config` when "the chain is
/// empty".
#[test]
fn an_empty_sni_chain_is_a_config_error() {
    let ca = TestCa::new("docs test CA");
    let leaf = ca.server(&["other.test"]);
    let refused = TlsServerConfig::builder().sni_certificate_der("other.test", [], leaf.key_der());
    assert!(
        matches!(refused, Err(net_tls::Error::Config(_))),
        "{:?}",
        refused.err()
    );
}

/// error.rs:61-63 and server.rs:400-401: a client-certificate verifier that cannot be built
/// from the roots ("for example, none was usable") is `Error::ClientVerifier`, from `build()`;
/// PEM that holds no certificate is `Error::Pem` from the setter (server.rs:346).
#[test]
fn client_auth_roots_errors_are_the_documented_variants() {
    let ca = TestCa::new("docs test CA");
    let leaf = ca.server(&["localhost"]);
    let base = || {
        TlsServerConfig::builder()
            .certificate_chain_pem(leaf.chain_pem().as_bytes())
            .unwrap()
            .private_key_pem(leaf.key_pem().as_bytes())
            .unwrap()
    };
    for required in [true, false] {
        let built = base().client_auth_der([], required).unwrap().build();
        assert!(
            matches!(built, Err(net_tls::Error::ClientVerifier(_))),
            "{:?}",
            built.err()
        );
    }
    let empty = base().client_auth_optional(b"");
    assert!(
        matches!(empty, Err(net_tls::Error::Pem { .. })),
        "{:?}",
        empty.err()
    );
    let empty = base().client_auth_required(b"no PEM here\n");
    assert!(
        matches!(empty, Err(net_tls::Error::Pem { .. })),
        "{:?}",
        empty.err()
    );
}

/// A handshake timeout too large for the clock (`Duration::MAX`) is no bound, never a panic
/// (as the docs say of `socket_timeout` and `close_gracefully`'s `wait`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_timeout_of_duration_max_neither_panics_nor_fires() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("docs test CA");
    let leaf = ca.server(&["localhost"]);
    let config = TlsServerConfig::builder()
        .certificate_chain_pem(leaf.chain_pem().as_bytes())
        .unwrap()
        .private_key_pem(leaf.key_pem().as_bytes())
        .unwrap()
        .handshake_timeout(Duration::MAX)
        .build()
        .unwrap();
    let (listener, port) = serve(&selector, config).await;
    let (kind, _) = visit(
        port,
        client_config(&ca, &rustls::version::TLS13, false),
        localhost(),
    )
    .await;
    assert_eq!(kind, HandshakeKind::Full);
    let client = net_tls::TlsConfig::builder()
        .add_root_certificates_pem(ca.pem().as_bytes())
        .unwrap()
        .handshake_timeout(Duration::MAX)
        .build()
        .unwrap();
    let tls = within(net_tests::tls::connect(
        &selector,
        "localhost",
        port,
        client,
    ))
    .await;
    assert!(tls.is_ok(), "{:?}", tls.err());
    listener.close();
}

/// guide.md §3 ("Idle clients"): the timeout "starts when a read or write begins to wait: the
/// time the server spends between reads ... does not count, but for a read dropped while it
/// waited (by `select!` or a deadline of the server's own), which leaves it running, so that
/// the time until the next read counts too". With `socket_timeout` 2 s: a read that starts
/// after 500 ms of the server's own work waits the whole 2 s; a read that starts 500 ms
/// after one dropped while it waited times out 2 s after the dropped one began (1.5 s later;
/// the bound allows 400 ms for a loaded machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_dropped_while_it_waited_leaves_the_socket_timeout_running() {
    use net_io::LineEnding;
    use std::time::Instant;
    let timeout = Duration::from_secs(2);
    let selector = SelectorManager::new();
    let server = a_socket(&selector)
        .tcp()
        .socket_timeout(timeout)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = server.port().unwrap();
    for dropped_first in [false, true] {
        let _client = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut socket = within(server.accept()).await.unwrap();
        let mut input = socket.open_read_channel().unwrap();
        let began = Instant::now();
        if dropped_first {
            let read = input.read_line(80, LineEnding::Default);
            assert!(
                tokio::time::timeout(Duration::from_millis(100), read)
                    .await
                    .is_err()
            );
        }
        // The server's own work between reads.
        tokio::time::sleep(Duration::from_millis(500).saturating_sub(began.elapsed())).await;
        let start = Instant::now();
        let read = within(input.read_line(80, LineEnding::Default)).await;
        let waited = start.elapsed();
        assert!(matches!(read, Err(net_io::Error::Timeout)), "{read:?}");
        if dropped_first {
            assert!(
                waited < Duration::from_millis(1900),
                "after a dropped read the next waited {waited:?} (the timer was to run on)"
            );
        } else {
            assert!(waited >= timeout, "waited {waited:?}");
        }
        socket.close();
    }
}

/// guide.md §4: "At `max_connections` the listener takes no connection from the kernel, so one
/// over its address's cap waits in the listen queue with the others and is closed only once a
/// slot frees and it is taken." `max_connections(2)`, `max_connections_per_ip(1)`: A from
/// 127.0.0.1 and C from 127.0.0.2 are open; B from 127.0.0.1 stays connected (not refused)
/// while the listener is full, and is refused once C closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_over_its_address_cap_waits_at_max_connections_and_is_refused_once_taken() {
    use tokio::net::TcpSocket;
    let selector = SelectorManager::new();
    let server = Arc::new(
        a_socket(&selector)
            .tcp()
            .max_connections(2)
            .max_connections_per_ip(1)
            .bind(("127.0.0.1", 0))
            .await
            .unwrap(),
    );
    let port = server.port().unwrap();
    let from = |ip: [u8; 4]| async move {
        let socket = TcpSocket::new_v4().unwrap();
        socket
            .bind((std::net::Ipv4Addr::from(ip), 0).into())
            .unwrap();
        socket.connect(([127, 0, 0, 1], port).into()).await.unwrap()
    };
    let _a = from([127, 0, 0, 1]).await;
    let a_served = within(server.accept()).await.unwrap();
    let _c = from([127, 0, 0, 2]).await;
    let c_served = within(server.accept()).await.unwrap();
    let mut b = from([127, 0, 0, 1]).await;
    let accepting = Arc::clone(&server);
    let next = tokio::spawn(async move { accepting.accept().await.map(|_| ()) });
    // B stays open while the listener is full: nothing to read, no end, no reset.
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(300), b.read(&mut byte)).await;
    assert!(
        early.is_err(),
        "B ended while the listener was full: {early:?}"
    );
    assert_eq!(server.stats().refused_per_ip, 0);
    // A slot frees: B is taken and refused (A from its address is still open).
    c_served.close();
    let late = within(b.read(&mut byte)).await;
    assert!(
        matches!(late, Ok(0)) || late.is_err(),
        "B was not closed once taken: {late:?}"
    );
    assert_eq!(server.stats().refused_per_ip, 1);
    assert!(!next.is_finished(), "B was handed out");
    next.abort();
    drop(a_served);
}

/// guarantees.md, TLS row "A PEM file that cannot be read": the variant is
/// `net_tls::Error::ReadFile { path, source }`, also after a round trip through `io::Error`
/// (its named test asserts the kind and the OS code, not the variant), and "an empty or
/// malformed file is `Error::Pem`" naming the file (server.rs:199-201, 259-261).
#[test]
fn pem_files_that_cannot_be_read_or_hold_nothing_are_the_documented_variants() {
    let dir = net_tests::TempDir::new("docs-pem");
    let missing = dir.join("missing.pem");
    let empty = dir.write("empty.pem", "");
    for path in [missing.clone(), dir.path().to_path_buf()] {
        let errors = [
            TlsServerConfig::builder()
                .certificate_chain_pem_file(&path)
                .unwrap_err(),
            TlsServerConfig::builder()
                .private_key_pem_file(&path)
                .unwrap_err(),
            net_tls::TlsConfig::builder()
                .add_root_certificates_pem_file(&path)
                .unwrap_err(),
        ];
        for e in errors {
            assert!(
                matches!(&e, net_tls::Error::ReadFile { path: p, .. } if *p == path),
                "{e:?}"
            );
            let back = net_tls::Error::from(std::io::Error::from(e));
            assert!(matches!(back, net_tls::Error::ReadFile { .. }), "{back:?}");
        }
    }
    let errors = [
        TlsServerConfig::builder()
            .certificate_chain_pem_file(&empty)
            .unwrap_err(),
        TlsServerConfig::builder()
            .private_key_pem_file(&empty)
            .unwrap_err(),
        net_tls::TlsConfig::builder()
            .add_root_certificates_pem_file(&empty)
            .unwrap_err(),
    ];
    for e in errors {
        assert!(
            matches!(&e, net_tls::Error::Pem { origin, .. } if *origin == empty.display().to_string()),
            "{e:?}"
        );
    }
}
