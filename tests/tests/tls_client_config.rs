//! The TLS client's configuration: the operating system's trust
//! store (`native_roots`); hyper over our TLS stream.

use std::process::Command;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use net_io::LineEnding;

use net_sockets::SelectorManager;
use net_tests::TempDir;
use net_tests::harness::run_if_child;
use net_tests::pki::TestCa;
use net_tests::tls::{TlsTestServer, connect};
use net_tests::within;
use net_tls::{Error, TlsConfig, TlsServerConfig, rustls};

/// Tells [`native_roots_child`] it runs in the child process, and what to expect there.
const NATIVE_CHILD: &str = "HTLSCLIENT_NATIVE_ROOTS_CHILD";
/// The directory with the chain and key of a server whose certificate the test CA issued.
const NATIVE_CA_DIR: &str = "HTLSCLIENT_NATIVE_CA_DIR";
/// Printed by the child once it checked what it was asked to.
const NATIVE_MARKER: &str = "native roots child done";

/// Runs [`native_roots_child`] in a child process with `vars` set and the OS store's variables
/// (`SSL_CERT_FILE`, `SSL_CERT_DIR`) taken from `vars` only; returns its output, and panics
/// unless it passed.
fn native_roots_in_child(expect: &str, dir: &TempDir, vars: &[(&str, &str)]) -> String {
    let mut command = Command::new(std::env::current_exe().expect("the test binary's path"));
    command
        .args([
            "--exact",
            "native_roots_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .env(NATIVE_CHILD, expect)
        .env(NATIVE_CA_DIR, dir.path());
    for (name, value) in vars {
        command.env(name, value);
    }
    let output = command.output().expect("the child test process");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "child ({expect}) failed:\n{text}");
    assert!(text.contains(NATIVE_MARKER), "child did not run:\n{text}");
    text
}

/// The child of [`native_roots_read_the_os_store_and_an_empty_one_is_an_error`]: builds a
/// client with `native_roots()` and checks what it was told to expect.
#[test]
fn native_roots_child() {
    let Some(expect) = std::env::var_os(NATIVE_CHILD) else {
        return;
    };
    let expect = expect.into_string().expect("a UTF-8 expectation");
    run_if_child(NATIVE_CHILD, async move {
        let built = TlsConfig::builder().native_roots().build();
        match expect.as_str() {
            "trusts the CA" => {
                let dir = std::env::var(NATIVE_CA_DIR).expect("the CA's directory");
                let key_pem = std::fs::read(format!("{dir}/key.pem")).expect("the leaf's key");
                let chain = std::fs::read(format!("{dir}/chain.pem")).expect("the chain");
                let config = net_tls::TlsServerConfig::builder()
                    .certificate_chain_pem(&chain)
                    .unwrap()
                    .private_key_pem(&key_pem)
                    .unwrap()
                    .build()
                    .unwrap();
                let selector = SelectorManager::new();
                let mut server =
                    TlsTestServer::start(&selector, config, |_tls, reporter| async move {
                        reporter.report(());
                    })
                    .await;
                let config = built.expect("the OS store holds the test CA");
                let tls = connect(&selector, "localhost", server.port(), config).await;
                assert!(tls.is_ok(), "{tls:?}");
                assert!(server.next().await.is_ok());
            }
            "an error" => {
                let e = built.expect_err("a client that trusts nothing at all");
                assert!(matches!(e, Error::NativeRoots(_)), "{e:?}");
                assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
                assert!(std::error::Error::source(&e).is_some(), "{e:?}");
            }
            other => panic!("unknown expectation {other:?}"),
        }
        println!("{NATIVE_MARKER}");
    });
}

/// `native_roots()` trusts the certificates of the OS store (here the file `SSL_CERT_FILE`
/// names, as OpenSSL reads it). A store that holds no certificate at all (no file, an empty
/// directory, a file with no certificate in it: a container without `ca-certificates`) fails
/// `build()` with `Error::NativeRoots`, as one that cannot be read does. (Before, an empty
/// store built a client that trusted nothing, and every handshake then failed with
/// `UnknownIssuer`.)
#[test]
fn native_roots_read_the_os_store_and_an_empty_one_is_an_error() {
    let ca = TestCa::new("native roots ca");
    let leaf = ca.server(&["localhost"]);
    let dir = TempDir::new("native-roots");
    let ca_file = dir.write("ca.pem", ca.pem());
    dir.write("chain.pem", leaf.chain_pem());
    dir.write("key.pem", leaf.key_pem());
    let empty_file = dir.write("empty.pem", "no certificate here\n");
    let empty_dir = dir.join("empty");
    std::fs::create_dir(&empty_dir).unwrap();
    let path = |p: &std::path::Path| p.to_str().expect("a UTF-8 path").to_owned();

    native_roots_in_child("trusts the CA", &dir, &[("SSL_CERT_FILE", &path(&ca_file))]);
    native_roots_in_child(
        "an error",
        &dir,
        &[("SSL_CERT_FILE", &path(&dir.join("missing.pem")))],
    );
    native_roots_in_child("an error", &dir, &[("SSL_CERT_DIR", &path(&empty_dir))]);
    native_roots_in_child("an error", &dir, &[("SSL_CERT_FILE", &path(&empty_file))]);
}

/// Reads one HTTP/1.1 response with a `content-length` body from `input`: its status line and
/// its body.
async fn read_response(input: &mut net_io::ByteReadChannel) -> (String, String) {
    let status = input
        .read_line(1024, LineEnding::Default)
        .await
        .unwrap()
        .expect("a status line");
    let mut length = None;
    loop {
        let line = input
            .read_line(1024, LineEnding::Default)
            .await
            .unwrap()
            .expect("a header line");
        if line.is_empty() {
            break;
        }
        match line.split_once(':') {
            Some((name, value)) if name.eq_ignore_ascii_case("content-length") => {
                length = Some(value.trim().parse::<usize>().unwrap());
            }
            _ => {}
        }
    }
    let mut body = vec![0; length.expect("a content-length")];
    input.read_fully(&mut body).await.unwrap();
    (status, String::from_utf8(body).unwrap())
}

/// hyper's HTTP/1.1 server over our server-side `TlsStream`, with keep-alive: our TLS client
/// sends three pipelined requests in one write and gets the three answers in order on the one
/// connection; then the server's graceful shutdown ends the idle connection with
/// `close_notify`: our client reads a clean end, not `Truncated`, and hyper's connection
/// future ends with `Ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_keep_alive_pipelining_and_graceful_shutdown_over_a_tls_stream() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("hyper keep-alive ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = net_tests::loopback::tcp_listener(&selector).await;
    let port = listener.port().unwrap();
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let stream = net_tests::tls::accept(&listener, &config)
            .await
            .into_stream()
            .unwrap();
        let service = service_fn(|request: Request<Incoming>| async move {
            let body = format!("you asked for {}", request.uri().path());
            Ok::<_, std::convert::Infallible>(Response::new(body))
        });
        let connection = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let mut connection = std::pin::pin!(connection);
        tokio::select! {
            done = connection.as_mut() => return done,
            _ = shutdown_rx => {}
        }
        connection.as_mut().graceful_shutdown();
        connection.await
    });

    let mut tls = within(connect(
        &selector,
        "localhost",
        port,
        ca.client_config().build().unwrap(),
    ))
    .await
    .unwrap();
    let mut input = tls.open_read_channel().unwrap();
    let mut output = tls.open_write_channel(true).unwrap();
    let mut requests = String::new();
    for path in ["/a", "/b", "/c"] {
        requests.push_str(&format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n"));
    }
    output.write_string_utf8(&requests).await.unwrap();
    for path in ["/a", "/b", "/c"] {
        let (status, body) = within(read_response(&mut input)).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, format!("you asked for {path}"));
    }
    shutdown_tx.send(()).unwrap();
    let end = within(input.read_line(1024, LineEnding::Default)).await;
    assert!(
        matches!(end, Ok(None)),
        "a clean end (close_notify) after hyper's graceful shutdown: {end:?}"
    );
    within(server)
        .await
        .unwrap()
        .expect("hyper's connection ends cleanly");
}

/// A CERTIFICATE section whose content is no certificate (valid base64 of other bytes).
const NOT_A_CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----\n\
dGhpcyBERVIgaXMgbm90IGEgY2VydGlmaWNhdGU=\n\
-----END CERTIFICATE-----\n";

/// A root bundle with a bad certificate among good ones is refused whole, and the error says
/// where: `add_root_certificates_pem_file` names the file, as its documentation says, and both
/// it and `add_root_certificates_pem` say which certificate of the bundle (counting from 1).
/// (Before, both gave `Error::Config(InvalidCertificate(BadEncoding))`, "invalid peer
/// certificate: BadEncoding", with neither the file nor the certificate, and calling a root
/// a peer certificate.)
#[test]
fn a_bad_certificate_in_a_root_bundle_is_refused_naming_the_file_and_the_certificate() {
    let (first, second) = (TestCa::new("bundle ca 1"), TestCa::new("bundle ca 2"));
    let bundle = format!("{}{NOT_A_CERTIFICATE}{}", first.pem(), second.pem());
    let dir = TempDir::new("root-bundle");
    let file = dir.write("bundle.pem", &bundle);
    let path = file.to_str().expect("a UTF-8 path");

    let from_file = TlsConfig::builder()
        .add_root_certificates_pem_file(&file)
        .unwrap_err();
    let from_bytes = TlsConfig::builder()
        .add_root_certificates_pem(bundle.as_bytes())
        .unwrap_err();
    for (e, expected_origin) in [(from_file, path), (from_bytes, "PEM bytes")] {
        let text = e.to_string();
        match &e {
            Error::Pem { origin, reason, .. } => {
                assert_eq!(origin, expected_origin, "{text}");
                assert!(reason.contains("certificate 2 "), "{text}");
                assert!(reason.contains("trust anchor"), "{text}");
            }
            other => panic!("not a PEM error naming its origin: {other:?} ({text})"),
        }
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{text}");
    }
    // The good certificates alone are taken.
    let good = format!("{}{}", first.pem(), second.pem());
    assert!(
        TlsConfig::builder()
            .add_root_certificates_pem(good.as_bytes())
            .is_ok()
    );
}

/// A certificate authority made here, to issue what `TestCa` does not: intermediates and
/// leaves with chosen validity.
struct Issuer {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Issuer {
    fn root(name: &str) -> Issuer {
        let key = rcgen::KeyPair::generate().unwrap();
        Issuer {
            issuer: rcgen::CertifiedIssuer::self_signed(Issuer::ca_params(name), key).unwrap(),
        }
    }

    fn ca_params(name: &str) -> rcgen::CertificateParams {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        params
    }

    fn intermediate(&self, name: &str) -> Issuer {
        let key = rcgen::KeyPair::generate().unwrap();
        Issuer {
            issuer: rcgen::CertifiedIssuer::signed_by(Issuer::ca_params(name), key, &self.issuer)
                .unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server leaf for `localhost`, valid from the first day to the second (year, month,
    /// day): its PEM and its key's PEM.
    fn leaf(&self, not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A server configuration presenting `chain` (PEM, leaf first) with `key`.
fn serving(chain: &str, key: &str) -> TlsServerConfig {
    TlsServerConfig::builder()
        .certificate_chain_pem(chain.as_bytes())
        .unwrap()
        .private_key_pem(key.as_bytes())
        .unwrap()
        .build()
        .unwrap()
}

/// Connects to a server presenting `chain` with `key`, trusting only `root`, and returns the
/// client's result and the server's handshake outcome.
async fn verify(
    selector: &SelectorManager,
    chain: &str,
    key: &str,
    root: &Issuer,
) -> (Result<(), Error>, Result<(), Error>) {
    let mut server =
        TlsTestServer::start(selector, serving(chain, key), |_tls, reporter| async move {
            reporter.report(())
        })
        .await;
    let client = TlsConfig::builder()
        .add_root_certificates_pem(root.pem().as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let connected = within(connect(selector, "localhost", server.port(), client))
        .await
        .map(drop);
    (connected, server.next().await)
}

/// The certificate errors the documentation of `net_tls::Error` tells users to match on are
/// the ones a handshake gives, with the server's view: an expired leaf is
/// `InvalidCertificate(ExpiredContext { .. })` (the doc named only `Expired`, which rustls no
/// longer returns, so a `match` written from it never matched), a leaf not valid yet
/// `NotValidYetContext { .. }`, both carrying the leaf's own dates; the server receives the
/// client's `certificate_expired` alert. A leaf sent without the intermediate that issued it is
/// `UnknownIssuer` (the server receives `unknown_ca`), and the same leaf sent with it passes.
#[tokio::test]
async fn certificate_time_and_chain_errors_are_the_documented_variants() {
    use net_tls::rustls::{AlertDescription, CertificateError};
    let selector = SelectorManager::new();
    let root = Issuer::root("time root");

    let (expired, key) = root.leaf((2000, 1, 1), (2001, 1, 1));
    let (client, server) = verify(&selector, &expired, &key, &root).await;
    let not_after = net_tls::rustls::pki_types::UnixTime::since_unix_epoch(
        std::time::Duration::from_secs(978_307_200), // 2001-01-01T00:00:00Z
    );
    match client {
        Err(Error::Handshake(rustls::Error::InvalidCertificate(
            CertificateError::ExpiredContext { not_after: at, .. },
        ))) => assert_eq!(at, not_after),
        other => panic!("not ExpiredContext: {other:?}"),
    }
    assert!(
        matches!(
            server,
            Err(Error::Handshake(rustls::Error::AlertReceived(
                AlertDescription::CertificateExpired
            )))
        ),
        "{server:?}"
    );

    let (early, key) = root.leaf((4000, 1, 1), (4001, 1, 1));
    let (client, server) = verify(&selector, &early, &key, &root).await;
    assert!(
        matches!(
            client,
            Err(Error::Handshake(rustls::Error::InvalidCertificate(
                CertificateError::NotValidYetContext { .. }
            )))
        ),
        "{client:?}"
    );
    assert!(
        matches!(
            server,
            Err(Error::Handshake(rustls::Error::AlertReceived(
                AlertDescription::CertificateExpired
            )))
        ),
        "{server:?}"
    );

    let intermediate = root.intermediate("time intermediate");
    let (leaf, key) = intermediate.leaf((2000, 1, 1), (4000, 1, 1));
    let (client, server) = verify(&selector, &leaf, &key, &root).await;
    assert!(
        matches!(
            client,
            Err(Error::Handshake(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            )))
        ),
        "{client:?}"
    );
    assert!(
        matches!(
            server,
            Err(Error::Handshake(rustls::Error::AlertReceived(
                AlertDescription::UnknownCA
            )))
        ),
        "{server:?}"
    );
    let chain = format!("{leaf}{}", intermediate.pem());
    let (client, server) = verify(&selector, &chain, &key, &root).await;
    assert!(client.is_ok(), "{client:?}");
    assert!(server.is_ok(), "{server:?}");
}

/// A client verifying the server by IP address (connected to a bare address, or given one by
/// `server_name`) checks the certificate's IP SANs but sends no SNI, as RFC 6066 forbids an
/// address there: the server's `server_name()` is `None`. A DNS name is sent, lowercased and
/// without a trailing dot, whatever case the client wrote it in. (The docs said the client
/// sends SNI for whatever name it verifies.)
#[tokio::test]
async fn an_ip_address_is_verified_but_never_sent_as_sni() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("sni ip ca");
    let leaf = ca.server(&["localhost", "127.0.0.1", "::1"]);
    let mut server = TlsTestServer::start(
        &selector,
        leaf.server_config().build().unwrap(),
        |tls, reporter| async move { reporter.report(tls.server_name().map(str::to_owned)) },
    )
    .await;
    // musl's resolver finds names in the hosts file in their case only (`LOCALHOST` would go
    // to DNS): there the upper-case name is given by `server_name`.
    let (upper_host, upper_name) = if cfg!(target_env = "musl") {
        ("127.0.0.1", Some("LOCALHOST"))
    } else {
        ("LOCALHOST", None)
    };
    let cases = [
        ("127.0.0.1", None, "127.0.0.1", None),
        ("127.0.0.1", Some("::1"), "::1", None),
        ("127.0.0.1", Some("[::1]"), "::1", None),
        (upper_host, upper_name, "LOCALHOST", Some("localhost")),
        (
            "127.0.0.1",
            Some("LocalHost."),
            "LocalHost",
            Some("localhost"),
        ),
    ];
    for (host, name, verified, sni) in cases {
        let mut config = ca.client_config();
        if let Some(name) = name {
            config = config.server_name(name);
        }
        let tls = within(connect(
            &selector,
            host,
            server.port(),
            config.build().unwrap(),
        ))
        .await
        .unwrap();
        assert_eq!(tls.server_name(), Some(verified), "{host} {name:?}");
        let seen = server.next().await.unwrap();
        assert_eq!(seen.as_deref(), sni, "{host} {name:?}");
    }
}

/// A client handshake against a server that accepts and stays silent ends at whichever of the
/// socket's `socket_timeout` and the configuration's `handshake_timeout` comes first: the
/// handshake's reads are the socket's reads. A shorter `socket_timeout` gives
/// `Error::Socket(net_sockets::Error::Timeout)` (kind `TimedOut`), a shorter handshake timeout
/// `Error::HandshakeTimeout`. (The handshake timeout's documentation named only the latter.)
#[tokio::test]
async fn a_silent_servers_handshake_ends_at_the_first_of_socket_and_handshake_timeouts() {
    use std::time::{Duration, Instant};
    const SHORT: Duration = Duration::from_millis(150);
    const LONG: Duration = Duration::from_secs(30);
    let selector = SelectorManager::new();
    let ca = TestCa::new("silent ca");
    let silent = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = silent.local_addr().unwrap().port();
    for (socket_timeout, handshake_timeout) in [(SHORT, LONG), (LONG, SHORT)] {
        let socket = net_sockets::a_socket(&selector)
            .tcp()
            .socket_timeout(socket_timeout)
            .connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (_held, _) = silent.accept().unwrap();
        let config = ca
            .client_config()
            .server_name("localhost")
            .handshake_timeout(handshake_timeout)
            .build()
            .unwrap();
        let started = Instant::now();
        let e = within(net_tls::TlsExt::tls(socket, config))
            .await
            .expect_err("a silent server");
        let took = started.elapsed();
        assert!(took >= SHORT && took < LONG, "{took:?} {e:?}");
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e:?}");
        if socket_timeout == SHORT {
            assert!(
                matches!(e, Error::Socket(net_sockets::Error::Timeout)),
                "{e:?}"
            );
        } else {
            assert!(
                matches!(e, Error::HandshakeTimeout(t) if t == SHORT),
                "{e:?}"
            );
        }
    }
}

/// A server that answers our ClientHello with a `close_notify` alert (a warning) and keeps the
/// connection open counts as one that never answers, as `TlsExt::tls`'s docs say: rustls
/// ignores warning alerts before the handshake is done, so the handshake ends with
/// `HandshakeTimeout` once the timeout passes (not at once with the alert).
#[tokio::test]
async fn a_close_notify_instead_of_a_server_hello_ends_with_the_handshake_timeout() {
    use net_tls::TlsExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = server.local_addr().unwrap().port();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let peer = tokio::spawn(async move {
        let (mut stream, _) = server.accept().await.unwrap();
        let mut hello = vec![0; 4096];
        let _ = stream.read(&mut hello).await.unwrap();
        // A TLS 1.2 plain-text record: alert, level warning (1), close_notify (0).
        stream
            .write_all(b"\x15\x03\x03\x00\x02\x01\x00")
            .await
            .unwrap();
        // Open until the client is done.
        let _ = done_rx.await;
    });
    let ca = TestCa::new("close_notify CA");
    let config = ca
        .client_config()
        .handshake_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let selector = SelectorManager::new();
    let socket = net_sockets::a_socket(&selector)
        .tcp()
        .connect(("127.0.0.1", port))
        .await
        .unwrap();
    let e = within(socket.tls(config)).await.unwrap_err();
    assert!(matches!(e, Error::HandshakeTimeout(_)), "{e:?}");
    drop(done_tx);
    peer.await.unwrap();
}
