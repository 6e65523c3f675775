//! TLS between this crate's client and server over real loopback sockets: versions, suites,
//! ALPN, SNI, verification failures, mutual TLS, truncation, half-close, large transfers and
//! certificate reload. Every failure case also proves that the server keeps serving a
//! well-behaved client afterwards.

use std::sync::Arc;
use std::time::Duration;

use net_io::LineEnding;
use net_sockets::{SelectorManager, ServerSocket, a_socket};
use net_tests::tls::{Leaf, TestCa};
use net_tls::rustls::{self, CertificateError};
use net_tls::{Error, TlsConfig, TlsExt, TlsServerConfig, TlsSocket, TlsVersion, Truncated};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const LIMIT: usize = 1024;
const SAFETY: Duration = Duration::from_secs(30);

/// The outcome of one server-side handshake, as the server saw it.
type Outcome = Result<TlsSocket, Error>;

/// A TLS server on 127.0.0.1 that reports each handshake and then greets and echoes lines with
/// `Hello, <line>!` until the client leaves.
struct Server {
    port: u16,
    outcomes: mpsc::UnboundedReceiver<Result<SessionView, Error>>,
    _listener: Arc<ServerSocket>,
}

/// What the server's side of a session negotiated.
#[derive(Debug)]
struct SessionView {
    version: Option<TlsVersion>,
    alpn: Option<Vec<u8>>,
    sni: Option<String>,
    client_certs: usize,
}

async fn start_server(selector: &SelectorManager, config: TlsServerConfig) -> Server {
    let listener = Arc::new(
        a_socket(selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap(),
    );
    let port = listener.port().unwrap();
    let (tx, outcomes) = mpsc::unbounded_channel();
    let l = Arc::clone(&listener);
    tokio::spawn(async move {
        while let Ok(socket) = l.accept().await {
            let config = config.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let outcome: Outcome = socket.tls_server(&config).await;
                match outcome {
                    Ok(mut tls) => {
                        let view = SessionView {
                            version: tls.protocol_version(),
                            alpn: tls.alpn_protocol().map(<[u8]>::to_vec),
                            sni: tls.server_name().map(str::to_owned),
                            client_certs: tls.peer_certificates().len(),
                        };
                        let _ = tx.send(Ok(view));
                        serve(&mut tls).await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        }
    });
    Server {
        port,
        outcomes,
        _listener: listener,
    }
}

async fn serve(tls: &mut TlsSocket) {
    let (Ok(mut input), Ok(mut output)) = (tls.open_read_channel(), tls.open_write_channel(true))
    else {
        return;
    };
    if output
        .write_string_utf8("Please enter your name\n")
        .await
        .is_err()
    {
        return;
    }
    while let Ok(Some(line)) = input.read_line(LIMIT, LineEnding::Default).await {
        if output
            .write_string_utf8(&format!("Hello, {line}!\n"))
            .await
            .is_err()
        {
            return;
        }
    }
    let _ = output.flush_and_close().await;
    tls.close();
}

fn server_config(leaf: &Leaf) -> net_tls::TlsServerConfigBuilder {
    TlsServerConfig::builder()
        .certificate_chain_pem(leaf.chain_pem.as_bytes())
        .unwrap()
        .private_key_pem(leaf.key_pem.as_bytes())
        .unwrap()
}

fn client_config(ca: &TestCa) -> net_tls::TlsConfigBuilder {
    TlsConfig::builder()
        .add_root_certificates_pem(ca.pem.as_bytes())
        .unwrap()
}

async fn connect(
    selector: &SelectorManager,
    host: &str,
    port: u16,
    config: TlsConfig,
) -> Result<TlsSocket, Error> {
    let socket = a_socket(selector).tcp().connect((host, port)).await?;
    socket.tls(config).await
}

/// Connects, reads the greeting, says a name and checks the answer.
async fn round_trip(tls: &mut TlsSocket, name: &str) {
    let mut input = tls.open_read_channel().unwrap();
    let mut output = tls.open_write_channel(true).unwrap();
    assert_eq!(
        input
            .read_line(LIMIT, LineEnding::Default)
            .await
            .unwrap()
            .as_deref(),
        Some("Please enter your name")
    );
    output
        .write_string_utf8(&format!("{name}\n"))
        .await
        .unwrap();
    assert_eq!(
        input.read_line(LIMIT, LineEnding::Default).await.unwrap(),
        Some(format!("Hello, {name}!"))
    );
    output.flush_and_close().await.unwrap();
    assert_eq!(
        input.read_line(LIMIT, LineEnding::Default).await.unwrap(),
        None
    );
}

/// Proves the server still serves a good client.
async fn good_client_works(selector: &SelectorManager, server: &mut Server, ca: &TestCa) {
    let mut tls = connect(
        selector,
        "localhost",
        server.port,
        client_config(ca).build().unwrap(),
    )
    .await
    .unwrap();
    round_trip(&mut tls, "still-here").await;
    assert!(next_outcome(server).await.is_ok());
}

async fn next_outcome(server: &mut Server) -> Result<SessionView, Error> {
    tokio::time::timeout(SAFETY, server.outcomes.recv())
        .await
        .expect("server reported nothing")
        .unwrap()
}

fn certificate_error(e: &Error) -> Option<&CertificateError> {
    match e {
        Error::Handshake(rustls::Error::InvalidCertificate(c)) => Some(c),
        _ => None,
    }
}

/// TLS 1.3 and 1.2 both work between our client and server, and both ends report the
/// negotiated version, a suite of that version, ALPN and SNI.
#[tokio::test]
async fn both_versions_negotiate_and_report_the_session() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("test ca");
    let leaf = ca.server(&["localhost", "127.0.0.1"]);
    for version in [TlsVersion::Tls13, TlsVersion::Tls12] {
        let config = server_config(&leaf)
            .protocol_versions(&[version])
            .alpn_protocols(["h2", "http/1.1"])
            .build()
            .unwrap();
        let mut server = start_server(&selector, config).await;
        let client = client_config(&ca)
            .alpn_protocols(["http/1.1"])
            .build()
            .unwrap();
        let mut tls = connect(&selector, "localhost", server.port, client)
            .await
            .unwrap();
        assert_eq!(tls.protocol_version(), Some(version));
        assert_eq!(tls.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(tls.server_name(), Some("localhost"));
        assert!(!tls.peer_certificates().is_empty());
        let suite = format!("{:?}", tls.cipher_suite().unwrap());
        match version {
            TlsVersion::Tls13 => assert!(suite.starts_with("TLS13_"), "{suite}"),
            _ => assert!(suite.starts_with("TLS_ECDHE_"), "{suite}"),
        }
        let seen = next_outcome(&mut server).await.unwrap();
        assert_eq!(seen.version, Some(version));
        assert_eq!(seen.alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert_eq!(seen.sni.as_deref(), Some("localhost"));
        assert_eq!(seen.client_certs, 0);
        round_trip(&mut tls, "Alice").await;
    }
}

/// Connecting by IP address verifies the certificate's IP SANs.
#[tokio::test]
async fn ip_address_is_checked_against_ip_sans() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("test ca");
    let mut with_ip = start_server(
        &selector,
        server_config(&ca.server(&["127.0.0.1"])).build().unwrap(),
    )
    .await;
    let mut tls = connect(
        &selector,
        "127.0.0.1",
        with_ip.port,
        client_config(&ca).build().unwrap(),
    )
    .await
    .unwrap();
    round_trip(&mut tls, "ip").await;
    assert!(next_outcome(&mut with_ip).await.is_ok());

    let without_ip = start_server(
        &selector,
        server_config(&ca.server(&["localhost"])).build().unwrap(),
    )
    .await;
    let e = connect(
        &selector,
        "127.0.0.1",
        without_ip.port,
        client_config(&ca).build().unwrap(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            certificate_error(&e),
            Some(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            )
        ),
        "{e:?}"
    );
}

/// Wrong host, untrusted CA and expired certificates each fail the client's handshake with the
/// matching reason, and the server keeps serving.
#[tokio::test]
async fn verification_failures_are_typed_and_the_server_keeps_serving() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("test ca");
    let other_ca = TestCa::new("other ca");

    // Wrong host: the certificate names another host.
    let mut server = start_server(
        &selector,
        server_config(&ca.server(&["example.test"]))
            .build()
            .unwrap(),
    )
    .await;
    let e = connect(
        &selector,
        "localhost",
        server.port,
        client_config(&ca).build().unwrap(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            certificate_error(&e),
            Some(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            )
        ),
        "{e:?}"
    );
    assert!(
        next_outcome(&mut server).await.is_err(),
        "the server saw the client's alert"
    );

    // Untrusted: signed by a CA the client does not trust.
    let mut server = start_server(
        &selector,
        server_config(&ca.server(&["localhost"])).build().unwrap(),
    )
    .await;
    let e = connect(
        &selector,
        "localhost",
        server.port,
        client_config(&other_ca).build().unwrap(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(certificate_error(&e), Some(CertificateError::UnknownIssuer)),
        "{e:?}"
    );
    assert!(next_outcome(&mut server).await.is_err());
    good_client_works(&selector, &mut server, &ca).await;

    // Expired.
    let mut server = start_server(
        &selector,
        server_config(&ca.expired_server(&["localhost"]))
            .build()
            .unwrap(),
    )
    .await;
    let e = connect(
        &selector,
        "localhost",
        server.port,
        client_config(&ca).build().unwrap(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            certificate_error(&e),
            Some(CertificateError::Expired | CertificateError::ExpiredContext { .. })
        ),
        "{e:?}"
    );
    assert!(next_outcome(&mut server).await.is_err());
}

/// The default client trusts only the bundled public roots, so a private CA is untrusted.
#[tokio::test]
async fn default_roots_do_not_trust_a_private_ca() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("test ca");
    let server = start_server(
        &selector,
        server_config(&ca.server(&["localhost"])).build().unwrap(),
    )
    .await;
    let e = connect(
        &selector,
        "localhost",
        server.port,
        TlsConfig::builder().build().unwrap(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(certificate_error(&e), Some(CertificateError::UnknownIssuer)),
        "{e:?}"
    );
}

/// The seed's trust-all mode connects to a server whose certificate nobody vouches for.
#[tokio::test]
async fn dangerous_mode_accepts_any_certificate() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("test ca");
    let server = start_server(
        &selector,
        server_config(&ca.server(&["elsewhere.test"]))
            .build()
            .unwrap(),
    )
    .await;
    let config = TlsConfig::builder()
        .dangerous_accept_any_server_certificate()
        .build()
        .unwrap();
    let mut tls = connect(&selector, "localhost", server.port, config)
        .await
        .unwrap();
    round_trip(&mut tls, "trusting").await;
}

/// Mutual TLS: a client with a certificate from the required CA is served and its certificate
/// is visible; one without is refused (in TLS 1.3 the client learns it on its first read), and
/// the server reports the missing certificate.
#[tokio::test]
async fn mutual_tls_requires_a_client_certificate() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("test ca");
    let client_ca = TestCa::new("client ca");
    let client_leaf = client_ca.client("client.test");
    for version in [TlsVersion::Tls13, TlsVersion::Tls12] {
        let config = server_config(&ca.server(&["localhost"]))
            .client_auth_required(client_ca.pem.as_bytes())
            .unwrap()
            .protocol_versions(&[version])
            .build()
            .unwrap();
        let mut server = start_server(&selector, config).await;

        let with_cert = client_config(&ca)
            .client_certificate_pem(
                client_leaf.chain_pem.as_bytes(),
                client_leaf.key_pem.as_bytes(),
            )
            .unwrap()
            .build()
            .unwrap();
        let mut tls = connect(&selector, "localhost", server.port, with_cert)
            .await
            .unwrap();
        assert_eq!(next_outcome(&mut server).await.unwrap().client_certs, 2);
        round_trip(&mut tls, "certified").await;

        let client = connect(
            &selector,
            "localhost",
            server.port,
            client_config(&ca).build().unwrap(),
        )
        .await;
        match client {
            Err(e) => assert!(matches!(e, Error::Handshake(_)), "{e:?}"),
            Ok(mut tls) => {
                let mut input = tls.open_read_channel().unwrap();
                let e = input
                    .read_line(LIMIT, LineEnding::Default)
                    .await
                    .unwrap_err();
                let tls_error = e
                    .inner_error()
                    .and_then(|i| i.downcast_ref::<rustls::Error>());
                assert!(
                    matches!(tls_error, Some(rustls::Error::AlertReceived(_))),
                    "{e:?}"
                );
            }
        }
        let e = next_outcome(&mut server).await.unwrap_err();
        assert!(
            matches!(e, Error::Handshake(rustls::Error::NoCertificatesPresented)),
            "{e:?}"
        );
    }
}

/// Garbage instead of a ClientHello and a client that sends nothing both end with a typed
/// error on the server, the raw connection closed, while a good client is served meanwhile.
#[tokio::test]
async fn garbage_and_silent_clients_fail_without_blocking_others() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("test ca");
    let config = server_config(&ca.server(&["localhost"]))
        .handshake_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let mut server = start_server(&selector, config).await;

    let mut garbage = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let e = next_outcome(&mut server).await.unwrap_err();
    assert!(matches!(e, Error::Handshake(_)), "{e:?}");
    // The server closed the raw connection: reading ends (with EOF or a reset) instead of hanging.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(SAFETY, garbage.read_to_end(&mut rest))
        .await
        .expect("raw connection left open");

    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    // While the silent client holds its slot, a good client is served.
    good_client_works(&selector, &mut server, &ca).await;
    let e = next_outcome(&mut server).await.unwrap_err();
    assert!(matches!(e, Error::HandshakeTimeout(_)), "{e:?}");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(SAFETY, silent.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "the server closed the silent connection: {n:?}"
    );
}

/// A peer that drops the connection without close_notify is reported as truncation, while a
/// clean close is an ordinary end of stream.
#[tokio::test]
async fn truncation_is_distinct_from_a_clean_close() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("test ca");
    let config = server_config(&ca.server(&["localhost"])).build().unwrap();
    let listener = a_socket(&selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.port().unwrap();

    // Truncating peer: plain tokio-rustls, dropped without shutdown.
    let rustls_client = client_config(&ca).build().unwrap();
    let raw = tokio::spawn(async move {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types_certs(&ca.pem) {
            roots.add(cert).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"partial line\n").await.unwrap();
        tls.flush().await.unwrap();
        drop(tls); // FIN without close_notify
        ca
    });
    let mut tls = listener
        .accept()
        .await
        .unwrap()
        .tls_server(&config)
        .await
        .unwrap();
    let ca = raw.await.unwrap();
    let mut input = tls.open_read_channel().unwrap();
    assert_eq!(
        input
            .read_line(LIMIT, LineEnding::Default)
            .await
            .unwrap()
            .as_deref(),
        Some("partial line")
    );
    let e = input
        .read_line(LIMIT, LineEnding::Default)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    assert!(
        e.inner_error().is_some_and(|i| i.is::<Truncated>()),
        "{e:?}"
    );

    // Clean close: our client half-closes with close_notify.
    let client = tokio::spawn({
        let selector = selector.clone();
        async move {
            let mut tls = connect(&selector, "localhost", port, rustls_client)
                .await
                .unwrap();
            let mut output = tls.open_write_channel(false).unwrap();
            output.write_string_utf8("whole line\n").await.unwrap();
            output.flush_and_close().await.unwrap();
            tls
        }
    });
    let mut tls = listener
        .accept()
        .await
        .unwrap()
        .tls_server(&config)
        .await
        .unwrap();
    let mut input = tls.open_read_channel().unwrap();
    assert_eq!(
        input
            .read_line(LIMIT, LineEnding::Default)
            .await
            .unwrap()
            .as_deref(),
        Some("whole line")
    );
    assert_eq!(
        input.read_line(LIMIT, LineEnding::Default).await.unwrap(),
        None
    );
    drop(client.await.unwrap());
    drop(ca);
}

fn rustls_pki_types_certs(pem: &str) -> Vec<net_tls::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    net_tls::CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(Result::unwrap)
        .collect()
}

/// Half-close over TLS: the client sends, closes its write side with close_notify, and still
/// reads the whole reply; 1 MiB and 64 MiB arrive intact in both directions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_and_large_transfers_arrive_intact() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("test ca");
    let config = server_config(&ca.server(&["localhost"])).build().unwrap();
    let listener = a_socket(&selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.port().unwrap();
    // Echo server: reads until close_notify, then sends everything back and closes.
    let server = tokio::spawn(async move {
        for _ in 0..2 {
            let mut tls = listener
                .accept()
                .await
                .unwrap()
                .tls_server(&config)
                .await
                .unwrap();
            let mut input = tls.open_read_channel().unwrap();
            let mut output = tls.open_write_channel(false).unwrap();
            tokio::spawn(async move {
                input.copy_to(&mut output, u64::MAX).await.unwrap();
                output.flush_and_close().await.unwrap();
                tls.close();
            });
        }
    });
    for size in [1 << 20, 64 << 20] {
        let payload: Arc<Vec<u8>> = Arc::new(
            (0..size)
                .map(|i: usize| (i.wrapping_mul(31) >> 3) as u8)
                .collect(),
        );
        let mut tls = connect(
            &selector,
            "localhost",
            port,
            client_config(&ca).build().unwrap(),
        )
        .await
        .unwrap();
        let mut input = tls.open_read_channel().unwrap();
        let mut output = tls.open_write_channel(false).unwrap();
        let sent = Arc::clone(&payload);
        let writer = tokio::spawn(async move {
            output.write_fully(&sent).await.unwrap();
            output.flush_and_close().await.unwrap();
        });
        let echoed = tokio::time::timeout(SAFETY * 4, input.read_remaining(usize::MAX))
            .await
            .unwrap()
            .unwrap();
        writer.await.unwrap();
        assert_eq!(echoed.len(), payload.len());
        assert!(echoed[..] == payload[..], "{size} bytes came back changed");
    }
    server.await.unwrap();
}

/// Reloading the server configuration: new handshakes see the new certificate, an open session
/// keeps working; SNI picks a per-name certificate.
#[tokio::test]
async fn reload_and_sni_choose_the_certificate() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("test ca");
    let first = ca.server(&["localhost"]);
    let second = ca.server(&["localhost"]);
    let named = ca.server(&["other.test"]);
    let config = server_config(&first)
        .sni_certificate_pem(
            "Other.Test",
            named.chain_pem.as_bytes(),
            named.key_pem.as_bytes(),
        )
        .unwrap()
        .build()
        .unwrap();
    let mut server = start_server(&selector, config.clone()).await;
    let leaf_der = |leaf: &Leaf| rustls_pki_types_certs(&leaf.chain_pem).remove(0);

    let mut open = connect(
        &selector,
        "localhost",
        server.port,
        client_config(&ca).build().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(open.peer_certificates()[0], leaf_der(&first));
    assert!(next_outcome(&mut server).await.is_ok());

    let by_name = client_config(&ca)
        .server_name("other.test")
        .build()
        .unwrap();
    let tls = connect(&selector, "localhost", server.port, by_name)
        .await
        .unwrap();
    assert_eq!(tls.peer_certificates()[0], leaf_der(&named));
    assert_eq!(
        next_outcome(&mut server).await.unwrap().sni.as_deref(),
        Some("other.test")
    );

    config.reload(&server_config(&second).build().unwrap());
    let mut fresh = connect(
        &selector,
        "localhost",
        server.port,
        client_config(&ca).build().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(fresh.peer_certificates()[0], leaf_der(&second));
    assert!(next_outcome(&mut server).await.is_ok());
    round_trip(&mut fresh, "new").await;
    round_trip(&mut open, "old").await;
}
