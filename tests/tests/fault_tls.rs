//! Fault suite, TLS: garbage instead of a handshake, a silent client, wrong host, untrusted and
//! expired certificates, a missing client certificate under mutual TLS, and truncation without
//! `close_notify` — each while one well-behaved TLS session with the same server stays open and
//! is answered between the cases (`tests/tls.rs` checks the same failures one by one, with a
//! good client served only afterwards).

use std::time::Duration;

use net_io::{ByteReadChannel, ByteWriteChannel, LineEnding};
use net_sockets::{SelectorManager, a_socket};
use net_tests::tls::{Leaf, TestCa};
use net_tests::within;
use net_tls::rustls::{self, CertificateError};
use net_tls::{Error, TlsConfig, TlsConfigBuilder, TlsExt, TlsServerConfig, TlsSocket, Truncated};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const LIMIT: usize = 1024;

/// How one connection to the server ended.
#[derive(Debug)]
enum Outcome {
    /// The handshake failed.
    Handshake(Error),
    /// A session: the lines it read and how the conversation ended.
    Session {
        lines: Vec<String>,
        end: Result<(), net_io::Error>,
    },
}

/// A TLS line server (greeting, then `Hello, <line>!` per line) reporting every connection.
async fn start_server(
    selector: &SelectorManager,
    config: TlsServerConfig,
) -> (u16, mpsc::UnboundedReceiver<Outcome>) {
    let listener = a_socket(selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.port().unwrap();
    let (tx, outcomes) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(socket) = listener.accept().await {
            let (config, tx) = (config.clone(), tx.clone());
            tokio::spawn(async move {
                let outcome = match socket.tls_server(&config).await {
                    Err(e) => Outcome::Handshake(e),
                    Ok(mut tls) => {
                        let mut lines = Vec::new();
                        let end = serve(&mut tls, &mut lines).await;
                        tls.close();
                        Outcome::Session { lines, end }
                    }
                };
                let _ = tx.send(outcome);
            });
        }
    });
    (port, outcomes)
}

async fn serve(tls: &mut TlsSocket, lines: &mut Vec<String>) -> Result<(), net_io::Error> {
    let mut input = tls.open_read_channel().unwrap();
    let mut output = tls.open_write_channel(true).unwrap();
    output.write_string_utf8("Please enter your name\n").await?;
    while let Some(line) = input.read_line(LIMIT, LineEnding::Default).await? {
        output
            .write_string_utf8(&format!("Hello, {line}!\n"))
            .await?;
        lines.push(line);
    }
    output.flush_and_close().await
}

async fn next(outcomes: &mut mpsc::UnboundedReceiver<Outcome>) -> Outcome {
    within(outcomes.recv()).await.expect("server reports")
}

fn server_config(leaf: &Leaf) -> net_tls::TlsServerConfigBuilder {
    TlsServerConfig::builder()
        .certificate_chain_pem(leaf.chain_pem.as_bytes())
        .unwrap()
        .private_key_pem(leaf.key_pem.as_bytes())
        .unwrap()
}

fn client_config(ca: &TestCa) -> TlsConfigBuilder {
    TlsConfig::builder()
        .add_root_certificates_pem(ca.pem.as_bytes())
        .unwrap()
}

async fn connect(
    selector: &SelectorManager,
    port: u16,
    config: TlsConfig,
) -> Result<TlsSocket, Error> {
    let socket = a_socket(selector)
        .tcp()
        .connect(("127.0.0.1", port))
        .await?;
    socket.tls(config).await
}

/// A TLS session that stays open for the whole test.
struct Good {
    tls: TlsSocket,
    input: ByteReadChannel,
    output: ByteWriteChannel,
    sent: Vec<String>,
}

impl Good {
    async fn connect(selector: &SelectorManager, port: u16, config: TlsConfig) -> Good {
        let mut tls = within(connect(selector, port, config)).await.unwrap();
        let mut input = tls.open_read_channel().unwrap();
        let output = tls.open_write_channel(true).unwrap();
        let greeting = within(input.read_line(LIMIT, LineEnding::Default))
            .await
            .unwrap();
        assert_eq!(greeting.as_deref(), Some("Please enter your name"));
        Good {
            tls,
            input,
            output,
            sent: Vec::new(),
        }
    }

    async fn round_trip(&mut self, name: &str) {
        self.output
            .write_string_utf8(&format!("{name}\n"))
            .await
            .unwrap();
        let answer = within(self.input.read_line(LIMIT, LineEnding::Default))
            .await
            .unwrap();
        assert_eq!(answer, Some(format!("Hello, {name}!")));
        self.sent.push(name.to_owned());
    }

    async fn finish(mut self, outcomes: &mut mpsc::UnboundedReceiver<Outcome>) {
        self.output.flush_and_close().await.unwrap();
        let end = within(self.input.read_line(LIMIT, LineEnding::Default))
            .await
            .unwrap();
        assert_eq!(end, None, "a clean end (close_notify)");
        self.tls.close();
        match next(outcomes).await {
            Outcome::Session { lines, end } => {
                end.expect("the good session ended cleanly");
                assert_eq!(lines, self.sent);
            }
            other => panic!("expected the good session, got {other:?}"),
        }
    }
}

fn certificate_error(e: &Error) -> Option<&CertificateError> {
    match e {
        Error::Handshake(rustls::Error::InvalidCertificate(c)) => Some(c),
        _ => None,
    }
}

/// Asserts that the next outcome is a failed handshake, and returns its error.
async fn failed_handshake(outcomes: &mut mpsc::UnboundedReceiver<Outcome>) -> Error {
    match next(outcomes).await {
        Outcome::Handshake(e) => e,
        other => panic!("expected a failed handshake, got {other:?}"),
    }
}

#[tokio::test]
async fn hostile_tls_clients_fail_typed_while_a_session_goes_on() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("test ca");
    let other_ca = TestCa::new("other ca");
    let expired = ca.expired_server(&["expired.test"]);
    let untrusted = other_ca.server(&["untrusted.test"]);
    let config = server_config(&ca.server(&["localhost"]))
        .sni_certificate_pem(
            "expired.test",
            expired.chain_pem.as_bytes(),
            expired.key_pem.as_bytes(),
        )
        .unwrap()
        .sni_certificate_pem(
            "untrusted.test",
            untrusted.chain_pem.as_bytes(),
            untrusted.key_pem.as_bytes(),
        )
        .unwrap()
        .handshake_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let (port, mut outcomes) = start_server(&selector, config).await;
    let named = |name: &str| client_config(&ca).server_name(name).build().unwrap();
    let mut good = Good::connect(&selector, port, named("localhost")).await;
    good.round_trip("first").await;

    // Garbage instead of a ClientHello: a typed handshake error; the raw connection is closed.
    let mut garbage = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let e = failed_handshake(&mut outcomes).await;
    assert!(
        matches!(e, Error::Handshake(rustls::Error::InvalidMessage(_))),
        "{e:?}"
    );
    let mut rest = Vec::new();
    let _ = within(garbage.read_to_end(&mut rest)).await; // EOF or reset: not a hang
    good.round_trip("after garbage").await;

    // A silent client: the handshake times out; meanwhile the session is answered.
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    good.round_trip("while a client is silent").await;
    let e = failed_handshake(&mut outcomes).await;
    assert!(matches!(e, Error::HandshakeTimeout(_)), "{e:?}");
    let mut buf = [0u8; 16];
    assert!(matches!(
        within(silent.read(&mut buf)).await,
        Ok(0) | Err(_)
    ));
    good.round_trip("after the silent client").await;

    // Certificates the client rejects: wrong host, untrusted issuer, expired.
    type Check = fn(&CertificateError) -> bool;
    let cases: [(&str, Check); 3] = [
        ("wrong.test", |c| {
            matches!(
                c,
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            )
        }),
        ("untrusted.test", |c| {
            matches!(c, CertificateError::UnknownIssuer)
        }),
        ("expired.test", |c| {
            matches!(
                c,
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            )
        }),
    ];
    for (name, check) in cases {
        let e = within(connect(&selector, port, named(name)))
            .await
            .unwrap_err();
        assert!(certificate_error(&e).is_some_and(check), "{name}: {e:?}");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{name}: {e:?}");
        let server_side = failed_handshake(&mut outcomes).await;
        assert!(
            matches!(
                server_side,
                Error::Handshake(rustls::Error::AlertReceived(_))
            ),
            "{name}: the server saw the client's alert: {server_side:?}"
        );
        good.round_trip(&format!("after {name}")).await;
    }

    // Truncation: a client closes the TCP connection without close_notify mid-conversation.
    let socket = a_socket(&selector)
        .tcp()
        .connect(("127.0.0.1", port))
        .await
        .unwrap();
    let raw = socket.handle();
    let mut tls = within(socket.tls(named("localhost"))).await.unwrap();
    let mut input = tls.open_read_channel().unwrap();
    let mut output = tls.open_write_channel(true).unwrap();
    // Read everything the server sends before leaving: unread data would turn the FIN into a
    // reset.
    let greeting = within(input.read_line(LIMIT, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(greeting.as_deref(), Some("Please enter your name"));
    output.write_string_utf8("whole line\n").await.unwrap();
    let answer = within(input.read_line(LIMIT, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(answer.as_deref(), Some("Hello, whole line!"));
    output.write_string_utf8("half a li").await.unwrap();
    raw.close(); // FIN without close_notify
    match next(&mut outcomes).await {
        Outcome::Session { lines, end } => {
            assert_eq!(lines, ["whole line"]);
            let e = end.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
            assert!(
                e.inner_error().is_some_and(|i| i.is::<Truncated>()),
                "{e:?}"
            );
        }
        other => panic!("expected a truncated session, got {other:?}"),
    }
    drop(tls);
    good.round_trip("after truncation").await;
    good.finish(&mut outcomes).await;
}

#[tokio::test]
async fn a_client_without_certificate_is_refused_under_mutual_tls_while_others_are_served() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("test ca");
    let client_ca = TestCa::new("client ca");
    let client_leaf = client_ca.client("client.test");
    let config = server_config(&ca.server(&["localhost"]))
        .client_auth_required(client_ca.pem.as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let (port, mut outcomes) = start_server(&selector, config).await;
    let certified = client_config(&ca)
        .server_name("localhost")
        .client_certificate_pem(
            client_leaf.chain_pem.as_bytes(),
            client_leaf.key_pem.as_bytes(),
        )
        .unwrap()
        .build()
        .unwrap();
    let mut good = Good::connect(&selector, port, certified).await;
    good.round_trip("certified").await;

    let anonymous = client_config(&ca).server_name("localhost").build().unwrap();
    match within(connect(&selector, port, anonymous)).await {
        Err(e) => assert!(matches!(e, Error::Handshake(_)), "{e:?}"),
        // TLS 1.3: the client learns of the rejection on its first read.
        Ok(mut tls) => {
            let mut input = tls.open_read_channel().unwrap();
            let e = within(input.read_line(LIMIT, LineEnding::Default))
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
    let e = failed_handshake(&mut outcomes).await;
    assert!(
        matches!(e, Error::Handshake(rustls::Error::NoCertificatesPresented)),
        "{e:?}"
    );
    good.round_trip("still certified").await;
    good.finish(&mut outcomes).await;
}
