//! Support for the round-two TLS test files (`tls_config_inputs.rs`, `tls_read_only.rs`,
//! `tls_faults_matrix.rs`, `tls_stream.rs`): a TLS line server that reports how each of its
//! connections ended, a well-behaved session that keeps talking to it while other connections
//! misbehave, tokio-rustls peer configurations, DER conversions of the test PKI, and the one
//! place that looks inside a channel's error.
//!
//! The line server speaks the seed's protocol: it greets with [`GREETING`], answers every line
//! with `Hello, <line>!`, and at the client's clean end half-closes (`close_notify`) and closes.

// Each test file uses a part of this module.
#![allow(dead_code)]

use std::sync::Arc;

use net_io::{ByteReadChannel, ByteWriteChannel, LineEnding};
use net_sockets::{SelectorManager, ServerSocket, TcpSocketBuilder, a_socket};
use net_tests::pki::{Leaf, TestCa};
use net_tests::within;
use net_tls::rustls::crypto::ring;
use net_tls::rustls::pki_types::pem::PemObject;
use net_tls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use net_tls::{
    CertificateDer, Error, PrivateKeyDer, TlsConfig, TlsConfigBuilder, TlsExt, TlsServerConfig,
    TlsServerConfigBuilder, TlsSocket, TlsVersion, Truncated,
};
use tokio::sync::mpsc;

/// The line limit of the server and of the well-behaved clients.
pub(crate) const LIMIT: usize = 1024;

/// The greeting the line server sends first.
pub(crate) const GREETING: &str = "Please enter your name";

// ---------------------------------------------------------------------------------------------
// Looking inside errors.
// ---------------------------------------------------------------------------------------------

/// Whether `e` is a TLS truncation: the peer ended the stream without `close_notify`.
pub(crate) fn is_truncated(e: &net_io::Error) -> bool {
    e.kind() == std::io::ErrorKind::UnexpectedEof
        && e.inner_error().is_some_and(|inner| inner.is::<Truncated>())
}

/// The rustls error inside a channel error, if any.
pub(crate) fn rustls_error(e: &net_io::Error) -> Option<&rustls::Error> {
    e.inner_error()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// The rustls error inside an I/O error from a tokio-rustls stream, if any.
pub(crate) fn rustls_io_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

// ---------------------------------------------------------------------------------------------
// Configurations.
// ---------------------------------------------------------------------------------------------

/// A server configuration builder for `leaf` (PEM input).
pub(crate) fn server_config(leaf: &Leaf) -> TlsServerConfigBuilder {
    TlsServerConfig::builder()
        .certificate_chain_pem(leaf.chain_pem().as_bytes())
        .unwrap()
        .private_key_pem(leaf.key_pem().as_bytes())
        .unwrap()
}

/// A client configuration builder trusting `ca`, verifying the name `localhost`.
pub(crate) fn client_config(ca: &TestCa) -> TlsConfigBuilder {
    TlsConfig::builder()
        .add_root_certificates_pem(ca.pem().as_bytes())
        .unwrap()
        .server_name("localhost")
}

/// Every certificate of a PEM chain, as DER.
pub(crate) fn der_chain(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// The private key of a PEM key file, as DER.
pub(crate) fn der_key(pem: &str) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// The ring provider, passed explicitly as the library does.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// A rustls client configuration (for a tokio-rustls peer) trusting `ca`, TLS 1.3 only (the
/// tests that use it need KeyUpdate or TLS 1.3 records).
pub(crate) fn rustls_client(ca: &TestCa) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in der_chain(ca.pem()) {
        roots.add(cert).unwrap();
    }
    Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A rustls server configuration (for a tokio-rustls peer) serving `leaf`, TLS 1.3 only.
pub(crate) fn rustls_server(leaf: &Leaf) -> Arc<ServerConfig> {
    Arc::new(
        ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(der_chain(leaf.chain_pem()), der_key(leaf.key_pem()))
            .unwrap(),
    )
}

/// The name tokio-rustls clients verify the server against.
pub(crate) fn localhost() -> rustls::pki_types::ServerName<'static> {
    rustls::pki_types::ServerName::try_from("localhost").unwrap()
}

/// The SHA-256 of `data`, from rustls's ring provider.
pub(crate) fn sha256(data: &[u8]) -> Vec<u8> {
    let suite = ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
    let hash = suite.tls13().expect("a TLS 1.3 suite").common.hash_provider;
    hash.hash(data).as_ref().to_vec()
}

// ---------------------------------------------------------------------------------------------
// The line server.
// ---------------------------------------------------------------------------------------------

/// What the server's side of a session negotiated.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub(crate) version: Option<TlsVersion>,
    pub(crate) alpn: Option<Vec<u8>>,
    pub(crate) sni: Option<String>,
    pub(crate) peer_certificates: Vec<CertificateDer<'static>>,
}

/// How one connection to a [`LineServer`] ended, as the server saw it.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The handshake failed (the server closed the connection).
    Handshake(Error),
    /// A session: what it negotiated, the lines it read, and how the conversation ended.
    Session {
        view: View,
        lines: Vec<String>,
        end: Result<(), net_io::Error>,
    },
}

/// A TLS line server on `127.0.0.1:0` that reports each connection's [`Outcome`].
pub(crate) struct LineServer {
    pub(crate) port: u16,
    pub(crate) listener: Arc<ServerSocket>,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    /// Outcomes read while looking for another one.
    early: Vec<Outcome>,
}

impl LineServer {
    /// Starts a server with `config` and the listener's default options.
    pub(crate) async fn start(selector: &SelectorManager, config: TlsServerConfig) -> LineServer {
        LineServer::start_with(selector, config, |tcp| tcp).await
    }

    /// Starts a server whose listener options `configure` sets (they carry into accepted
    /// sockets, e.g. `socket_timeout`).
    pub(crate) async fn start_with(
        selector: &SelectorManager,
        config: TlsServerConfig,
        configure: impl FnOnce(TcpSocketBuilder) -> TcpSocketBuilder,
    ) -> LineServer {
        let listener = configure(a_socket(selector).tcp())
            .bind(("127.0.0.1", 0))
            .await
            .expect("bind the TLS line server");
        let listener = Arc::new(listener);
        let port = listener.port().expect("an inet listener");
        let (tx, outcomes) = mpsc::unbounded_channel();
        let accepting = Arc::clone(&listener);
        tokio::spawn(async move {
            while let Ok(socket) = accepting.accept().await {
                let (config, tx) = (config.clone(), tx.clone());
                tokio::spawn(async move {
                    let outcome = match socket.tls_server(&config).await {
                        Err(e) => Outcome::Handshake(e),
                        Ok(mut tls) => {
                            let view = View {
                                version: tls.protocol_version(),
                                alpn: tls.alpn_protocol().map(<[u8]>::to_vec),
                                sni: tls.server_name().map(str::to_owned),
                                peer_certificates: tls.peer_certificates().to_vec(),
                            };
                            let mut lines = Vec::new();
                            let end = serve_lines(&mut tls, &mut lines).await;
                            tls.close();
                            Outcome::Session { view, lines, end }
                        }
                    };
                    let _ = tx.send(outcome);
                });
            }
        });
        LineServer {
            port,
            listener,
            outcomes,
            early: Vec::new(),
        }
    }

    /// The outcome of the next connection to end (in order of ending).
    pub(crate) async fn next(&mut self) -> Outcome {
        if !self.early.is_empty() {
            return self.early.remove(0);
        }
        within(self.outcomes.recv())
            .await
            .expect("the server stopped reporting")
    }

    /// The first outcome, in order of ending, that `wanted` picks; outcomes passed over are
    /// kept for later calls. Connections that end at nearly the same time can then be checked
    /// in any order.
    pub(crate) async fn outcome_where(&mut self, wanted: impl Fn(&Outcome) -> bool) -> Outcome {
        if let Some(i) = self.early.iter().position(&wanted) {
            return self.early.remove(i);
        }
        loop {
            let outcome = within(self.outcomes.recv())
                .await
                .expect("the server stopped reporting");
            if wanted(&outcome) {
                return outcome;
            }
            self.early.push(outcome);
        }
    }

    /// The next failed handshake's error.
    pub(crate) async fn failed_handshake(&mut self) -> Error {
        match self
            .outcome_where(|o| matches!(o, Outcome::Handshake(_)))
            .await
        {
            Outcome::Handshake(e) => e,
            Outcome::Session { .. } => unreachable!("picked a handshake"),
        }
    }

    /// The session whose first line is `first` (or that read no line, for `None`).
    pub(crate) async fn session(
        &mut self,
        first: Option<&str>,
    ) -> (View, Vec<String>, Result<(), net_io::Error>) {
        let picked = self
            .outcome_where(|o| {
                matches!(o, Outcome::Session { lines, .. } if lines.first().map(String::as_str) == first)
            })
            .await;
        match picked {
            Outcome::Session { view, lines, end } => (view, lines, end),
            Outcome::Handshake(_) => unreachable!("picked a session"),
        }
    }
}

/// Greets, answers each line, and half-closes at the client's clean end.
async fn serve_lines(tls: &mut TlsSocket, lines: &mut Vec<String>) -> Result<(), net_io::Error> {
    let mut input = tls.open_read_channel().expect("a fresh TLS socket");
    let mut output = tls.open_write_channel(true).expect("a fresh TLS socket");
    output.write_string_utf8(&format!("{GREETING}\n")).await?;
    while let Some(line) = input.read_line(LIMIT, LineEnding::Default).await? {
        output
            .write_string_utf8(&format!("Hello, {line}!\n"))
            .await?;
        lines.push(line);
    }
    output.flush_and_close().await
}

// ---------------------------------------------------------------------------------------------
// A well-behaved session.
// ---------------------------------------------------------------------------------------------

/// A session with the line server that stays open while other connections misbehave, and is
/// answered between them.
pub(crate) struct Good {
    tls: TlsSocket,
    input: ByteReadChannel,
    output: ByteWriteChannel,
    sent: Vec<String>,
}

impl Good {
    /// Connects, completes the handshake and reads the greeting.
    pub(crate) async fn connect(selector: &SelectorManager, port: u16, config: TlsConfig) -> Good {
        let socket = within(a_socket(selector).tcp().connect(("127.0.0.1", port)))
            .await
            .expect("connect the good client");
        let mut tls = within(socket.tls(config))
            .await
            .expect("the good client's handshake");
        let mut input = tls.open_read_channel().unwrap();
        let output = tls.open_write_channel(true).unwrap();
        let greeting = within(input.read_line(LIMIT, LineEnding::Default))
            .await
            .unwrap();
        assert_eq!(greeting.as_deref(), Some(GREETING));
        Good {
            tls,
            input,
            output,
            sent: Vec::new(),
        }
    }

    /// Sends a line and checks the answer.
    pub(crate) async fn round_trip(&mut self, name: &str) {
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

    /// The client's TLS socket (for the session queries).
    pub(crate) fn tls(&self) -> &TlsSocket {
        &self.tls
    }

    /// Ends the session cleanly, checks that the server saw every line and a clean end, and
    /// returns what the server's side negotiated.
    pub(crate) async fn finish(mut self, server: &mut LineServer) -> View {
        self.output.flush_and_close().await.unwrap();
        let end = within(self.input.read_line(LIMIT, LineEnding::Default))
            .await
            .unwrap();
        assert_eq!(end, None, "a clean end (close_notify)");
        self.tls.close();
        let first = self.sent.first().cloned();
        let (view, lines, end) = server.session(first.as_deref()).await;
        end.expect("the good session ended cleanly");
        assert_eq!(lines, self.sent);
        view
    }

    /// A whole session in one call: connect, one round trip named `name`, a clean end.
    pub(crate) async fn once(
        selector: &SelectorManager,
        server: &mut LineServer,
        config: TlsConfig,
        name: &str,
    ) {
        let mut good = Good::connect(selector, server.port, config).await;
        good.round_trip(name).await;
        good.finish(server).await;
    }
}
