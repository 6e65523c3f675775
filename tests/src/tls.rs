//! TLS helpers for tests: a server that reports every connection, connect, what a session
//! negotiated, and the failures a test expects. The certificates are in [`pki`](crate::pki).

use std::future::Future;
use std::sync::Arc;

use net_io::LineEnding;
use net_sockets::{SelectorManager, ServerSocket, a_socket};
use net_tls::rustls::{self, CertificateError};
use net_tls::{Error, TlsConfig, TlsExt, TlsServerConfig, TlsSocket, TlsVersion};
use tokio::sync::mpsc;

use crate::loopback::tcp_listener;
use crate::within;

/// A TLS server on `127.0.0.1:0` for tests. It runs the server handshake of every connection
/// with its configuration, then hands the session to a `serve` function in a task of its own;
/// `serve` reports what the test should see through its [`Reporter`], and a failed handshake is
/// reported as `Err`. The listener closes when the server is dropped.
#[derive(Debug)]
pub struct TlsTestServer<T> {
    listener: Arc<ServerSocket>,
    reports: mpsc::UnboundedReceiver<Result<T, Error>>,
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
        let listener = Arc::new(tcp_listener(selector).await);
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
        TlsTestServer { listener, reports }
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.listener.port().expect("an inet listener")
    }

    /// The next report: what `serve` reported, or the error of a failed handshake (hang safety
    /// net: [`within`]).
    pub async fn next(&mut self) -> Result<T, Error> {
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

/// What one end of a TLS session negotiated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionView {
    /// The protocol version.
    pub version: Option<TlsVersion>,
    /// The cipher suite, as rustls's `Debug` prints it (the IANA name).
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
            let tls_error = e
                .inner_error()
                .and_then(|i| i.downcast_ref::<rustls::Error>());
            assert!(
                matches!(tls_error, Some(rustls::Error::AlertReceived(_))),
                "{e:?}"
            );
        }
    }
}
