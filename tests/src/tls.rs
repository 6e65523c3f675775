//! TLS helpers for tests: a server that reports every connection, connect, what a session
//! negotiated, and the failures a test expects. The certificates are in [`pki`](crate::pki).
//!
//! - [`TlsTestServer`]: a TLS server whose `serve` function reports to the test;
//!   [`TlsLineServer`] is one that speaks the seed's protocol and reports each session's
//!   [`LineSession`], and [`GoodTlsClient`] the well-behaved session that keeps talking to it
//!   while other connections misbehave.
//! - [`connect`], [`accept`], [`SessionView`], [`garbage_client`]; [`manual_pair`] and
//!   [`records`], a rustls client session driven by hand against our server.
//! - Looking inside errors: [`certificate_error`] and its predicates, [`is_truncated`],
//!   [`rustls_error`], [`rustls_io_error`], [`assert_refused_without_certificate`].
//! - Plain rustls configurations for tokio-rustls peers: [`rustls_client`],
//!   [`rustls_client_config`], [`rustls_server`], with [`provider`], [`localhost`] and
//!   [`sha256`].

use std::future::Future;
use std::sync::Arc;

use net_io::LineEnding;
use net_sockets::{SelectorManager, ServerSocket, TcpSocketBuilder, a_socket};
use net_tls::rustls::crypto::{CryptoProvider, ring};
use net_tls::rustls::pki_types::ServerName;
use net_tls::rustls::{
    self, CertificateError, ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion,
};
use net_tls::{
    CertificateDer, Error, TlsConfig, TlsExt, TlsServerConfig, TlsSocket, TlsVersion, Truncated,
};
use tokio::sync::mpsc;

use crate::greeting::{GreetingClient, Outcome, serve_lines};
use crate::pki::{Leaf, TestCa};
use crate::within;

/// A TLS server on `127.0.0.1:0` for tests. It runs the server handshake of every connection
/// with its configuration, then hands the session to a `serve` function in a task of its own;
/// `serve` reports what the test should see through its [`Reporter`], and a failed handshake is
/// reported as `Err`. The listener closes when the server is dropped.
#[derive(Debug)]
pub struct TlsTestServer<T> {
    listener: Arc<ServerSocket>,
    reports: mpsc::UnboundedReceiver<Result<T, Error>>,
    /// Reports received while [`next_where`](Self::next_where) looked for another one.
    early: Vec<Result<T, Error>>,
}

/// How a [`TlsTestServer`]'s `serve` function reports to the test.
#[derive(Debug)]
pub struct Reporter<T>(mpsc::UnboundedSender<Result<T, Error>>);

impl<T> Reporter<T> {
    /// Sends `report` to the test (ignored when the test no longer listens).
    pub fn report(&self, report: T) {
        let _ = self.0.send(Ok(report));
    }
}

impl<T: Send + 'static> TlsTestServer<T> {
    /// Binds `127.0.0.1:0` and starts accepting.
    pub async fn start<F, Fut>(
        selector: &SelectorManager,
        config: TlsServerConfig,
        serve: F,
    ) -> TlsTestServer<T>
    where
        F: Fn(TlsSocket, Reporter<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        TlsTestServer::start_with(selector, config, |tcp| tcp, serve).await
    }

    /// Like [`start`](Self::start), with listener options that `configure` sets (they carry
    /// into accepted sockets, e.g. `socket_timeout`).
    pub async fn start_with<F, Fut>(
        selector: &SelectorManager,
        config: TlsServerConfig,
        configure: impl FnOnce(TcpSocketBuilder) -> TcpSocketBuilder,
        serve: F,
    ) -> TlsTestServer<T>
    where
        F: Fn(TlsSocket, Reporter<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = configure(a_socket(selector).tcp())
            .bind(("127.0.0.1", 0))
            .await
            .expect("bind the TLS test server on 127.0.0.1:0");
        let listener = Arc::new(listener);
        let (tx, reports) = mpsc::unbounded_channel();
        let accepting = Arc::clone(&listener);
        let serve = Arc::new(serve);
        tokio::spawn(async move {
            while let Ok(socket) = accepting.accept().await {
                let (config, tx, serve) = (config.clone(), tx.clone(), Arc::clone(&serve));
                tokio::spawn(async move {
                    match socket.tls_server(&config).await {
                        Ok(tls) => serve(tls, Reporter(tx)).await,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                });
            }
        });
        TlsTestServer {
            listener,
            reports,
            early: Vec::new(),
        }
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.listener.port().expect("an inet listener")
    }

    /// The next report, in the order the connections ended: what `serve` reported, or the
    /// error of a failed handshake (hang safety net: [`within`]).
    pub async fn next(&mut self) -> Result<T, Error> {
        if !self.early.is_empty() {
            return self.early.remove(0);
        }
        self.receive().await
    }

    /// The first report, in order of ending, that `wanted` picks; the reports passed over are
    /// kept for later calls. Connections that end at nearly the same time can then be checked
    /// in any order.
    pub async fn next_where(
        &mut self,
        wanted: impl Fn(&Result<T, Error>) -> bool,
    ) -> Result<T, Error> {
        if let Some(i) = self.early.iter().position(&wanted) {
            return self.early.remove(i);
        }
        loop {
            let report = self.receive().await;
            if wanted(&report) {
                return report;
            }
            self.early.push(report);
        }
    }

    async fn receive(&mut self) -> Result<T, Error> {
        within(self.reports.recv())
            .await
            .expect("the server stopped reporting")
    }
}

impl<T> Drop for TlsTestServer<T> {
    fn drop(&mut self) {
        self.listener.close();
    }
}

/// The line limit of a [`TlsLineServer`] (and of the tests' own reads from one).
pub const LINE_LIMIT: usize = 1024;

/// How a session with a [`TlsLineServer`] went, as the server saw it.
#[derive(Debug)]
pub struct LineSession {
    /// What the session negotiated.
    pub view: SessionView,
    /// The certificates the client presented (its chain, under mutual TLS).
    pub peer_chain: Vec<CertificateDer<'static>>,
    /// The lines the server read and how the conversation ended.
    pub outcome: Outcome,
}

/// A TLS server that speaks the seed's protocol ([`serve_lines`], lines of at most
/// [`LINE_LIMIT`] bytes) and reports each connection: its [`LineSession`], or the error of its
/// failed handshake.
pub type TlsLineServer = TlsTestServer<LineSession>;

/// A well-behaved TLS session with a [`TlsLineServer`]: connected before a test misbehaves, it
/// proves, round trip by round trip, that the server still serves it.
pub type GoodTlsClient = GreetingClient<TlsSocket>;

impl TlsTestServer<LineSession> {
    /// Starts a [`TlsLineServer`] with `config` and the listener's default options.
    pub async fn lines(selector: &SelectorManager, config: TlsServerConfig) -> TlsLineServer {
        TlsLineServer::lines_with(selector, config, |tcp| tcp).await
    }

    /// Starts a [`TlsLineServer`] whose listener options `configure` sets.
    pub async fn lines_with(
        selector: &SelectorManager,
        config: TlsServerConfig,
        configure: impl FnOnce(TcpSocketBuilder) -> TcpSocketBuilder,
    ) -> TlsLineServer {
        TlsTestServer::start_with(selector, config, configure, |tls, reporter| async move {
            let view = SessionView::of(&tls);
            let peer_chain = tls.peer_certificates().to_vec();
            let outcome = serve_lines(tls, LINE_LIMIT).await;
            reporter.report(LineSession {
                view,
                peer_chain,
                outcome,
            });
        })
        .await
    }

    /// The error of the next failed handshake, in order of ending (sessions that ended before
    /// it are kept for later calls).
    pub async fn failed_handshake(&mut self) -> Error {
        match self.next_where(Result::is_err).await {
            Err(e) => e,
            Ok(_) => unreachable!("picked a failed handshake"),
        }
    }

    /// The session whose first line is `first` (or that read no line, for `None`).
    pub async fn session(&mut self, first: Option<&str>) -> LineSession {
        let starts_with_first = |report: &Result<LineSession, Error>| {
            report
                .as_ref()
                .is_ok_and(|s| s.outcome.lines.first().map(String::as_str) == first)
        };
        match self.next_where(starts_with_first).await {
            Ok(session) => session,
            Err(_) => unreachable!("picked a session"),
        }
    }

    /// Connects a [`GoodTlsClient`] to this server with `config` and reads the greeting.
    pub async fn good_client(
        &self,
        selector: &SelectorManager,
        config: TlsConfig,
    ) -> GoodTlsClient {
        let tls = within(connect(selector, "127.0.0.1", self.port(), config))
            .await
            .expect("the good client connects and completes its handshake");
        GreetingClient::start(tls).await
    }

    /// Ends `good`'s session cleanly (`close_notify` both ways), checks that the server read
    /// every line it sent and saw a clean end, and returns the server's view of the session.
    pub async fn finish_good(&mut self, good: GoodTlsClient) -> LineSession {
        let sent = good.finish().await;
        let session = self.session(sent.first().map(String::as_str)).await;
        if let Err(e) = &session.outcome.end {
            panic!("the good session did not end cleanly: {e:?}");
        }
        assert_eq!(session.outcome.lines, sent);
        session
    }

    /// A whole good session: connect, one round trip saying `name`, a clean end.
    pub async fn serve_once(&mut self, selector: &SelectorManager, config: TlsConfig, name: &str) {
        let mut good = self.good_client(selector, config).await;
        good.round_trip(name).await;
        self.finish_good(good).await;
    }
}

/// What one end of a TLS session negotiated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionView {
    /// The protocol version.
    pub version: Option<TlsVersion>,
    /// The cipher suite, as rustls's `Debug` prints it (the IANA name, `TLS13_` for `TLS_` in
    /// TLS 1.3).
    pub suite: String,
    /// The ALPN protocol, if one was agreed.
    pub alpn: Option<Vec<u8>>,
    /// The server name: the one the client asked for (SNI), as either end sees it.
    pub server_name: Option<String>,
    /// How many certificates the peer presented.
    pub peer_certificates: usize,
}

impl SessionView {
    /// What `tls` negotiated.
    pub fn of(tls: &TlsSocket) -> SessionView {
        SessionView {
            version: tls.protocol_version(),
            suite: format!("{:?}", tls.cipher_suite().expect("a negotiated suite")),
            alpn: tls.alpn_protocol().map(<[u8]>::to_vec),
            server_name: tls.server_name().map(str::to_owned),
            peer_certificates: tls.peer_certificates().len(),
        }
    }
}

/// Connects to `host:port` and runs the client handshake with `config`.
///
/// # Errors
///
/// The connect's or the handshake's.
pub async fn connect(
    selector: &SelectorManager,
    host: &str,
    port: u16,
    config: TlsConfig,
) -> Result<TlsSocket, Error> {
    let socket = a_socket(selector).tcp().connect((host, port)).await?;
    socket.tls(config).await
}

/// A TLS connection over loopback: `listener` accepts it with `server_config` while a client of
/// `selector` connects to `localhost` with `client_config`; returns (server side, client side),
/// and panics if either side fails.
pub async fn pair(
    selector: &SelectorManager,
    listener: &ServerSocket,
    server_config: &TlsServerConfig,
    client_config: TlsConfig,
) -> (TlsSocket, TlsSocket) {
    let port = listener.port().expect("a TCP listener");
    let accept = accept(listener, server_config);
    let connect = async {
        connect(selector, "localhost", port, client_config)
            .await
            .expect("the client's connect and handshake")
    };
    crate::within(async { tokio::join!(accept, connect) }).await
}

/// [`pair`] with `pki`'s usual server and client configurations.
pub async fn pair_of(
    selector: &SelectorManager,
    listener: &ServerSocket,
    pki: &crate::pki::Pki,
) -> (TlsSocket, TlsSocket) {
    let server_config = pki
        .server_config()
        .build()
        .expect("the server configuration");
    let client_config = pki
        .client_config()
        .build()
        .expect("the client configuration");
    pair(selector, listener, &server_config, client_config).await
}

/// Accepts the next connection of `listener` and runs the server handshake with `config`;
/// panics if either fails.
pub async fn accept(listener: &ServerSocket, config: &TlsServerConfig) -> TlsSocket {
    listener
        .accept()
        .await
        .expect("accept")
        .tls_server(config)
        .await
        .expect("the server handshake")
}

/// A server-side `TlsStream` that `listener` accepted (handshake with `config`), and a
/// tokio-rustls client with `client` connected to it.
pub async fn accept_stream(
    listener: &ServerSocket,
    config: &TlsServerConfig,
    client: Arc<ClientConfig>,
) -> (
    net_tls::TlsStream,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) {
    let port = listener.port().expect("a listener's port");
    let accepted = async {
        accept(listener, config)
            .await
            .into_stream()
            .expect("the session as a stream")
    };
    let connecting = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        tokio_rustls::TlsConnector::from(client)
            .connect(localhost(), tcp)
            .await
            .expect("the client's handshake")
    };
    within(async { tokio::join!(accepted, connecting) }).await
}

/// Our server's TLS socket (accepted by `listener` with `config`), and a rustls client session
/// on a raw TCP stream, past the handshake (TLS 1.3): the test drives the client's records by
/// hand ([`records`]).
pub async fn manual_pair(
    listener: &ServerSocket,
    ca: &TestCa,
    config: &TlsServerConfig,
) -> (TlsSocket, tokio::net::TcpStream, rustls::ClientConnection) {
    let port = listener.port().expect("a TCP listener");
    let connector = tokio_rustls::TlsConnector::from(rustls_client(ca));
    let (server, client) = within(async {
        tokio::join!(
            async {
                listener
                    .accept()
                    .await
                    .expect("accept")
                    .tls_server(config)
                    .await
            },
            async {
                let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .expect("connect");
                connector.connect(localhost(), tcp).await
            }
        )
    })
    .await;
    let (tcp, conn) = client.expect("the client's handshake").into_inner();
    (server.expect("the server handshake"), tcp, conn)
}

/// A rustls server configuration (ring, TLS 1.2 and 1.3) with a `localhost` certificate of
/// `ca`, for [`hand_server`].
pub fn rustls_localhost_server(ca: &TestCa) -> Arc<ServerConfig> {
    rustls_server(&ca.server(&["localhost"]))
}

/// Our TLS client connected to a rustls server driven by hand (`config`'s session, past the
/// handshake): (our client, the server's raw TCP stream, its rustls session). The server's
/// socket has a receive buffer of `recv_buffer` bytes (`None`: the default). The test decides
/// which records reach our client, in which segments, and when the server reads ([`records`],
/// [`read_session_to_the_end`]).
pub async fn hand_server(
    selector: &SelectorManager,
    ca: &TestCa,
    config: Arc<ServerConfig>,
    recv_buffer: Option<u32>,
) -> (TlsSocket, tokio::net::TcpStream, rustls::ServerConnection) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listening = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        listening.set_recv_buffer_size(size).unwrap();
    }
    listening.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let port = listening.local_addr().unwrap().port();
    let listener = listening.listen(4).unwrap();
    let config = ca.client_config().server_name("localhost").build().unwrap();
    let (accepted, client) = within(async {
        tokio::join!(
            async {
                let (tcp, _) = listener.accept().await.expect("accept");
                acceptor.accept(tcp).await
            },
            async {
                a_socket(selector)
                    .tcp()
                    .connect(("127.0.0.1", port))
                    .await
                    .expect("connect")
                    .tls(config)
                    .await
            }
        )
    })
    .await;
    let (tcp, conn) = accepted.expect("the server's handshake").into_inner();
    (client.expect("our client's handshake"), tcp, conn)
}

/// What a hand-driven peer (`conn` on `tcp`) reads of our side's records until the end: (how
/// it ended: `"close_notify"`, `"truncated"` for a FIN without it, or the error's kind; the
/// plaintext bytes received).
pub async fn read_session_to_the_end<D>(
    tcp: &mut tokio::net::TcpStream,
    conn: &mut rustls::ConnectionCommon<D>,
) -> (String, usize) {
    use tokio::io::AsyncReadExt;
    let mut received = 0;
    let mut buf = vec![0u8; 64 * 1024];
    within(async {
        loop {
            let n = match tcp.read(&mut buf).await {
                Ok(0) => return ("truncated".to_owned(), received),
                Ok(n) => n,
                Err(e) => return (format!("{:?}", e.kind()), received),
            };
            let mut slice = &buf[..n];
            while !slice.is_empty() {
                conn.read_tls(&mut slice).unwrap();
                let state = conn.process_new_packets().unwrap();
                let mut plain = vec![0u8; state.plaintext_bytes_to_read()];
                std::io::Read::read_exact(&mut conn.reader(), &mut plain).unwrap();
                received += plain.len();
                if state.peer_has_closed() {
                    return ("close_notify".to_owned(), received);
                }
            }
        }
    })
    .await
}

/// The records `conn` (a client's or a server's) has queued, taken out of it.
pub fn records<D>(conn: &mut rustls::ConnectionCommon<D>) -> Vec<u8> {
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("writing to a Vec");
    }
    out
}

/// A raw TCP client of the TLS server at `127.0.0.1:port` that sends an HTTP request where the
/// server expects a ClientHello.
pub async fn garbage_client(port: u16) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut raw = within(tokio::net::TcpStream::connect(("127.0.0.1", port)))
        .await
        .expect("raw client connects");
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("raw client writes");
    raw
}

/// The reason a handshake failed on the peer's certificate, if that is why it failed.
pub fn certificate_error(e: &Error) -> Option<&CertificateError> {
    match e {
        Error::Handshake(rustls::Error::InvalidCertificate(c)) => Some(c),
        _ => None,
    }
}

/// Asserts that a handshake failed on the peer's certificate for the reason `expected` accepts
/// (one of [`is_not_valid_for_name`], [`is_unknown_issuer`], [`is_expired`]).
pub fn assert_certificate_error(e: &Error, expected: impl Fn(&CertificateError) -> bool) {
    assert!(certificate_error(e).is_some_and(expected), "{e:?}");
}

/// Whether a certificate error says that the certificate names another host.
pub fn is_not_valid_for_name(e: &CertificateError) -> bool {
    matches!(
        e,
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
    )
}

/// Whether a certificate error says that no trusted CA issued the certificate.
pub fn is_unknown_issuer(e: &CertificateError) -> bool {
    matches!(e, CertificateError::UnknownIssuer)
}

/// Whether a certificate error says that the certificate has expired.
pub fn is_expired(e: &CertificateError) -> bool {
    matches!(
        e,
        CertificateError::Expired | CertificateError::ExpiredContext { .. }
    )
}

/// Asserts that a server requiring a client certificate refused a client that had none: the
/// client's handshake failed (TLS 1.2), or, since in TLS 1.3 the client finishes its handshake
/// before the server has checked, its first read fails with the server's alert.
pub async fn assert_refused_without_certificate(client: Result<TlsSocket, Error>) {
    match client {
        Err(e) => assert!(matches!(e, Error::Handshake(_)), "{e:?}"),
        Ok(mut tls) => {
            let mut input = tls.open_read_channel().expect("open the read channel");
            let e = within(input.read_line(1024, LineEnding::Default))
                .await
                .expect_err("a read without a certificate must fail");
            assert!(
                matches!(rustls_error(&e), Some(rustls::Error::AlertReceived(_))),
                "{e:?}"
            );
        }
    }
}

/// Whether `e` is a TLS truncation: the peer ended the stream without `close_notify`.
pub fn is_truncated(e: &net_io::Error) -> bool {
    e.kind() == std::io::ErrorKind::UnexpectedEof
        && e.inner_error().is_some_and(|inner| inner.is::<Truncated>())
}

/// The rustls error inside a channel error, if any.
pub fn rustls_error(e: &net_io::Error) -> Option<&rustls::Error> {
    e.inner_error()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// The rustls error inside an I/O error from a tokio-rustls stream, if any.
pub fn rustls_io_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// The library's crypto provider (`net_tls::crypto_provider`), passed explicitly as the
/// library does.
pub fn provider() -> Arc<CryptoProvider> {
    net_tls::crypto_provider()
}

/// A rustls client configuration (for a tokio-rustls peer) that trusts `ca` only and speaks
/// `versions` (`rustls::DEFAULT_VERSIONS`, or one version).
pub fn rustls_client_config(
    ca: &TestCa,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der()).expect("the CA certificate");
    Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .expect("protocol versions the provider supports")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A rustls client configuration that trusts `ca`, TLS 1.3 only (for the tests that need
/// KeyUpdate or TLS 1.3 records).
pub fn rustls_client(ca: &TestCa) -> Arc<ClientConfig> {
    rustls_client_config(ca, &[&rustls::version::TLS13])
}

/// A rustls server configuration (for a tokio-rustls peer) serving `leaf`, TLS 1.3 only.
pub fn rustls_server(leaf: &Leaf) -> Arc<ServerConfig> {
    Arc::new(
        ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_no_client_auth()
            .with_single_cert(leaf.chain_der().to_vec(), leaf.key_der())
            .expect("the leaf's chain and key"),
    )
}

/// The name tokio-rustls clients verify the server against: `localhost`.
pub fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a DNS name")
}

/// The SHA-256 of `data`, from rustls's ring provider.
pub fn sha256(data: &[u8]) -> Vec<u8> {
    let suite = ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
    let hash = suite.tls13().expect("a TLS 1.3 suite").common.hash_provider;
    hash.hash(data).as_ref().to_vec()
}
