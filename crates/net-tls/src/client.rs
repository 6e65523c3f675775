//! The client side: [`TlsConfig`] and its builder.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::{Error, Result, TlsVersion, pem, provider};

/// The default time a TLS handshake may take, on either side.
pub(crate) const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a client sets up TLS: whom it trusts, what it presents, what it offers.
///
/// Made by [`TlsConfig::builder`]; cheap to clone (the rustls configuration inside is shared),
/// `Send + Sync`. Defaults: TLS 1.3 and 1.2, the bundled Mozilla roots (webpki-roots), SNI and
/// host-name verification against the name given to `connect` (or
/// [`server_name`](TlsConfigBuilder::server_name)), no client certificate, no ALPN, a 10-second
/// handshake timeout.
///
/// Sessions are resumed, as rustls does by default: a configuration keeps the sessions its
/// handshakes made in memory (up to 8 TLS 1.3 tickets and one TLS 1.2 session a server), by
/// the name the server was verified against, for 32 servers: when a 33rd comes, the server it
/// met first is forgotten, however recently it connected to that one since (rustls keeps them
/// in the order it first met them, not by use). Its clones share them, so a client that
/// connects again with a clone skips the full handshake where the server agrees (the session
/// queries answer as after the full one). A configuration built anew starts with none.
/// [`from_rustls`](TlsConfig::from_rustls) takes other settings (`resumption`). rustls keeps a
/// server's ticket whatever its size (up to 64 KiB) and sends it in the next ClientHello: one
/// that does not fit there beside the other extensions (an ALPN list near
/// [`MAX_ALPN_LIST`](crate::MAX_ALPN_LIST), say) makes that connection to the server fail, and
/// in a debug build rustls's assertion panics in the task that connects. Meet a server that
/// sends such tickets with resumption off (`rustls::client::Resumption::disabled()` through
/// [`from_rustls`](TlsConfig::from_rustls)).
///
/// Its `Debug` output shows how the server's certificate is checked, as `verification`:
/// `"enabled"` (against the trusted roots and the server name), `"disabled"` (after
/// [`dangerous_accept_any_server_certificate`](TlsConfigBuilder::dangerous_accept_any_server_certificate)),
/// or `"from_rustls"` (by the verifier of a configuration given to
/// [`from_rustls`](TlsConfig::from_rustls)).
///
/// # Examples
///
/// ```
/// let config = net_tls::TlsConfig::builder().alpn_protocols(["http/1.1"]).build()?;
/// # Ok::<(), net_tls::Error>(())
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) rustls: Arc<ClientConfig>,
    pub(crate) server_name: Option<ServerName<'static>>,
    pub(crate) handshake_timeout: Duration,
    /// How the server's certificate is checked, for `Debug`: "enabled", "disabled" or
    /// "from_rustls".
    verification: &'static str,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("TlsConfig");
        debug.field("server_name", &self.server_name);
        debug.field("verification", &self.verification);
        crate::negotiated(
            &mut debug,
            &self.rustls.alpn_protocols,
            self.handshake_timeout,
        )
    }
}

impl TlsConfig {
    /// Starts a configuration with the secure defaults listed on [`TlsConfig`].
    pub fn builder() -> TlsConfigBuilder {
        TlsConfigBuilder {
            server_name: None,
            roots: RootCertStore::empty(),
            native_roots: false,
            client_auth: None,
            alpn: Vec::new(),
            insecure: false,
            versions: vec![TlsVersion::Tls13, TlsVersion::Tls12],
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            deferred: None,
        }
    }

    /// Uses a rustls client configuration as it is: the escape hatch for what the builder does
    /// not offer (a custom certificate verifier such as pinning, session resumption settings,
    /// key logging, another crypto provider).
    ///
    /// The configuration is used as given, including its crypto provider, protocol versions,
    /// ALPN protocols, client certificate and `enable_sni`; nothing of the builder's defaults is
    /// added. The name passed to the verifier, and sent as SNI when it is a DNS name (never an
    /// IP address), is the host given to `connect` (a socket connected to a bare address passes
    /// its IP literal); whether and how the certificate is checked against it is up to the
    /// configuration's verifier. A connection without a host name (a Unix socket) has no name
    /// to pass, and such a configuration cannot be given one: its handshake fails with
    /// [`Error::InvalidServerName`] (the builder's
    /// [`server_name`](TlsConfigBuilder::server_name) names the server there). The handshake
    /// timeout is the default, 10 seconds. An ALPN list that cannot be sent (a name empty or
    /// over 255 bytes, a list over [`MAX_ALPN_LIST`](crate::MAX_ALPN_LIST)) fails each
    /// handshake with [`Error::InvalidAlpnProtocol`] before any TLS record is sent (on a
    /// `Connection`, after its plain-text output was flushed), and one rustls cannot start a
    /// connection with (a `max_fragment_size` out of its range) with [`Error::Config`].
    ///
    /// # Examples
    ///
    /// Certificate pinning: trust exactly one server certificate, known by the SHA-256 of its
    /// DER encoding, whoever issued it and whatever names it carries. The handshake's signature
    /// is still checked against the key in that certificate.
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// use net_tls::rustls::client::danger::{
    ///     HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
    /// };
    /// use net_tls::rustls::crypto::hash::HashAlgorithm;
    /// use net_tls::rustls::crypto::{
    ///     CryptoProvider, verify_tls12_signature, verify_tls13_signature,
    /// };
    /// use net_tls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    /// use net_tls::rustls::{self, CertificateError, DigitallySignedStruct, SignatureScheme};
    /// use net_tls::TlsConfig;
    ///
    /// /// The SHA-256 of `data`, from the crate's crypto provider (no other crate needed).
    /// fn sha256(data: &[u8]) -> Vec<u8> {
    ///     let provider = net_tls::crypto_provider();
    ///     let hash = provider
    ///         .cipher_suites
    ///         .iter()
    ///         .filter_map(|suite| suite.tls13())
    ///         .map(|suite| suite.common.hash_provider)
    ///         .find(|hash| hash.algorithm() == HashAlgorithm::SHA256)
    ///         .expect("TLS13_AES_128_GCM_SHA256 is in every provider");
    ///     hash.hash(data).as_ref().to_vec()
    /// }
    ///
    /// /// Accepts only the server certificate whose SHA-256 is `pin`.
    /// #[derive(Debug)]
    /// struct PinnedCertificate {
    ///     pin: Vec<u8>,
    ///     provider: Arc<CryptoProvider>,
    /// }
    ///
    /// impl ServerCertVerifier for PinnedCertificate {
    ///     fn verify_server_cert(
    ///         &self,
    ///         end_entity: &CertificateDer<'_>,
    ///         _intermediates: &[CertificateDer<'_>],
    ///         _server_name: &ServerName<'_>,
    ///         _ocsp_response: &[u8],
    ///         _now: UnixTime,
    ///     ) -> Result<ServerCertVerified, rustls::Error> {
    ///         if sha256(end_entity) == self.pin {
    ///             Ok(ServerCertVerified::assertion())
    ///         } else {
    ///             Err(rustls::Error::InvalidCertificate(
    ///                 CertificateError::ApplicationVerificationFailure,
    ///             ))
    ///         }
    ///     }
    ///
    ///     fn verify_tls12_signature(
    ///         &self,
    ///         message: &[u8],
    ///         cert: &CertificateDer<'_>,
    ///         dss: &DigitallySignedStruct,
    ///     ) -> Result<HandshakeSignatureValid, rustls::Error> {
    ///         let algorithms = &self.provider.signature_verification_algorithms;
    ///         verify_tls12_signature(message, cert, dss, algorithms)
    ///     }
    ///
    ///     fn verify_tls13_signature(
    ///         &self,
    ///         message: &[u8],
    ///         cert: &CertificateDer<'_>,
    ///         dss: &DigitallySignedStruct,
    ///     ) -> Result<HandshakeSignatureValid, rustls::Error> {
    ///         let algorithms = &self.provider.signature_verification_algorithms;
    ///         verify_tls13_signature(message, cert, dss, algorithms)
    ///     }
    ///
    ///     fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
    ///         self.provider.signature_verification_algorithms.supported_schemes()
    ///     }
    /// }
    ///
    /// # fn demo(server_certificate_der: &[u8]) -> Result<TlsConfig, rustls::Error> {
    /// let provider = net_tls::crypto_provider();
    /// let verifier = PinnedCertificate {
    ///     pin: sha256(server_certificate_der),
    ///     provider: Arc::clone(&provider),
    /// };
    /// let rustls_config = rustls::ClientConfig::builder_with_provider(provider)
    ///     .with_safe_default_protocol_versions()?
    ///     .dangerous()
    ///     .with_custom_certificate_verifier(Arc::new(verifier))
    ///     .with_no_client_auth();
    /// let config = TlsConfig::from_rustls(Arc::new(rustls_config));
    /// // tcp_socket.tls(config).await? now connects only to the pinned server.
    /// # Ok(config) }
    /// # demo(b"a certificate").unwrap();
    /// ```
    pub fn from_rustls(config: Arc<ClientConfig>) -> TlsConfig {
        TlsConfig {
            rustls: config,
            server_name: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            verification: "from_rustls",
        }
    }

    /// The name the server is verified against, decided from an explicit
    /// [`server_name`](TlsConfigBuilder::server_name) or else the host given to `connect`. An
    /// IPv4-mapped IPv6 address there (`::ffff:a.b.c.d`, the text of a socket address such as
    /// a dual-stack listener reports its IPv4 clients with) is the IPv4 address it reaches,
    /// whose certificate names it so; an explicit name is verified as it is written.
    pub(crate) fn name_for(&self, connect_host: Option<&str>) -> Result<ServerName<'static>> {
        if let Some(name) = &self.server_name {
            return Ok(name.clone());
        }
        let host = connect_host.ok_or_else(|| Error::InvalidServerName {
            name: String::new(),
        })?;
        match server_name(host)? {
            ServerName::IpAddress(ip) => {
                let ip = std::net::IpAddr::from(ip).to_canonical();
                Ok(ServerName::IpAddress(ip.into()))
            }
            name => Ok(name),
        }
    }
}

pub(crate) fn server_name(name: &str) -> Result<ServerName<'static>> {
    let invalid = || Error::InvalidServerName { name: name.into() };
    // An IPv6 literal may come with brackets from a URL-style host; nothing else may.
    if let Some(inner) = name.strip_prefix('[') {
        let ip = inner
            .strip_suffix(']')
            .and_then(ipv6_literal)
            .ok_or_else(invalid)?;
        return Ok(ServerName::IpAddress(std::net::IpAddr::V6(ip).into()));
    }
    if name.contains('%') {
        let ip = ipv6_literal(name).ok_or_else(invalid)?;
        return Ok(ServerName::IpAddress(std::net::IpAddr::V6(ip).into()));
    }
    match ServerName::try_from(name.to_owned()) {
        Ok(server_name) => Ok(server_name),
        // rustls counts a fully qualified name's trailing dot toward its limit of 253
        // characters: the longest DNS names are taken without it, as the dot is dropped
        // anyway. A second dot, or what is no DNS name without the dot, stays refused.
        Err(_) => match name.strip_suffix('.') {
            Some(rest) if !rest.ends_with('.') => match ServerName::try_from(rest.to_owned()) {
                Ok(dns_name @ ServerName::DnsName(_)) => Ok(dns_name),
                _ => Err(invalid()),
            },
            _ => Err(invalid()),
        },
    }
}

/// An IPv6 address, with or without a scope (`fe80::1%eth0`, `fe80::1%2`), which is dropped:
/// it says which of this host's links reaches the address, and a certificate's IP SAN has none.
fn ipv6_literal(text: &str) -> Option<std::net::Ipv6Addr> {
    let (address, scope) = match text.split_once('%') {
        Some((address, scope)) => (address, Some(scope)),
        None => (text, None),
    };
    let scope_is_valid = |scope: &str| {
        !scope.is_empty()
            && scope
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    if scope.is_some_and(|scope| !scope_is_valid(scope)) {
        return None;
    }
    address.parse().ok()
}

/// Builds a [`TlsConfig`]; see there for the defaults.
#[must_use = "a configuration builder does nothing until `build`"]
pub struct TlsConfigBuilder {
    server_name: Option<String>,
    roots: RootCertStore,
    native_roots: bool,
    client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    alpn: Vec<Vec<u8>>,
    insecure: bool,
    versions: Vec<TlsVersion>,
    handshake_timeout: Duration,
    /// An error found by a setter that cannot return one, reported by `build`.
    deferred: Option<Error>,
}

impl fmt::Debug for TlsConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfigBuilder")
            .field("server_name", &self.server_name)
            .field("custom_roots", &self.roots.len())
            .field("native_roots", &self.native_roots)
            .field("client_certificate", &self.client_auth.is_some())
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl TlsConfigBuilder {
    /// Sends `name` as SNI and verifies the server's certificate against it, instead of the host
    /// given to `connect`. An IP address is checked against the certificate's IP SANs and is
    /// not sent as SNI (RFC 6066 allows only DNS names there). An IPv6 literal may be given in
    /// brackets (`[::1]`); no other name may. An IPv6 literal's scope (`fe80::1%eth0`,
    /// `fe80::1%2`, as the host given to `connect` may have it) is dropped: the certificate
    /// names the address. An IPv4-mapped address (`::ffff:a.b.c.d`) is verified as written
    /// here, though as the host given to `connect` it is verified as its IPv4 address.
    ///
    /// The name is checked when the configuration is built: an empty one, or one that is
    /// neither a DNS name nor an IP address, makes [`build`](Self::build) fail with
    /// [`Error::InvalidServerName`]. A DNS name is in ASCII: give an internationalised one in
    /// its punycode form (`xn--bcher-kva.example` for `bücher.example`). A fully qualified
    /// name's trailing dot is dropped (rustls drops it), here as from the host given to
    /// `connect`: `localhost.` is verified as `localhost`, and sent so by SNI. The case is kept,
    /// and the certificate check ignores it: `LOCALHOST` passes a certificate for `localhost`.
    pub fn server_name(mut self, name: &str) -> Self {
        self.server_name = Some(name.to_owned());
        self
    }

    /// Trusts the CA certificates in a PEM bundle.
    ///
    /// Adding any root replaces the bundled Mozilla roots: the client then trusts exactly the
    /// roots it was given (plus the OS store after [`native_roots`](Self::native_roots)).
    ///
    /// A root is trusted as rustls trusts any anchor: for its subject name and key, whatever
    /// its basicConstraints and key usage say. So give only CA certificates: one that is not a
    /// CA's (`CA:FALSE`, no `keyCertSign`; `openssl verify` refuses it as an issuer) is
    /// trusted all the same to issue certificates, for any name, to whoever holds its key.
    ///
    /// A server's self-signed certificate can be pinned as a root only if it is not marked as
    /// a CA (no basicConstraints, as rcgen makes it by default, or `CA:FALSE`: `openssl req
    /// -x509` marks it `CA:TRUE` unless given `-addext basicConstraints=critical,CA:FALSE`). One
    /// marked `CA:TRUE` is refused as the server's own certificate: the handshake fails with
    /// [`Error::Handshake`]`(InvalidCertificate(Other(other)))`, where `other` holds webpki's
    /// `CaUsedAsEndEntity`, an error type rustls does not re-export: `other.to_string()` is
    /// `"CaUsedAsEndEntity"`.
    ///
    /// # Errors
    ///
    /// [`Error::Pem`] for input with no certificate, bad PEM, or a certificate that cannot be
    /// a trust anchor (the reason says which, counting from 1); nothing of the bundle is
    /// trusted then.
    pub fn add_root_certificates_pem(mut self, pem: &[u8]) -> Result<Self> {
        pem::add_roots(&mut self.roots, pem, pem::BYTES)?;
        Ok(self)
    }

    /// As [`add_root_certificates_pem`](Self::add_root_certificates_pem), from a file: each
    /// certificate is trusted as an anchor, CA or not, as said there.
    ///
    /// # Errors
    ///
    /// As there, naming the file; [`Error::ReadFile`] when it cannot be read (missing,
    /// unreadable), with the operating system's error as its source and kind.
    pub fn add_root_certificates_pem_file(mut self, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        pem::add_roots(
            &mut self.roots,
            &pem::read_file(path)?,
            &path.display().to_string(),
        )?;
        Ok(self)
    }

    /// Trusts one CA certificate (DER). A certificate that cannot be a trust anchor makes
    /// [`build`](Self::build) fail with [`Error::Config`].
    ///
    /// The certificate is trusted as an anchor, CA or not, and a pinned self-signed
    /// certificate must not be marked as a CA, as
    /// [`add_root_certificates_pem`](Self::add_root_certificates_pem) says.
    pub fn add_root_certificate(mut self, der: CertificateDer<'static>) -> Self {
        if let Err(e) = self.roots.add(der) {
            self.deferred.get_or_insert(Error::Config(e));
        }
        self
    }

    /// Trusts the operating system's certificate store (read when the configuration is
    /// built) instead of the bundled Mozilla roots, along with any root added.
    ///
    /// The store is what OpenSSL reads: the file and directory that `SSL_CERT_FILE` and
    /// `SSL_CERT_DIR` name, else the platform's usual places. A store that cannot be read, or
    /// that holds no usable certificate (none found: a container without `ca-certificates`),
    /// makes [`build`](Self::build) fail with [`Error::NativeRoots`].
    pub fn native_roots(mut self) -> Self {
        self.native_roots = true;
        self
    }

    /// Presents a client certificate (mutual TLS): a PEM chain, leaf first, and its private key
    /// (PKCS#8, PKCS#1 or SEC1, unencrypted).
    ///
    /// # Errors
    ///
    /// [`Error::Pem`] for unusable PEM, an encrypted key, or a key the crypto provider cannot
    /// sign with (those
    /// [`TlsServerConfigBuilder::private_key_pem`](crate::TlsServerConfigBuilder::private_key_pem)
    /// lists: with `ring`, not a 1,024-bit RSA key, for one).
    pub fn client_certificate_pem(mut self, chain: &[u8], key: &[u8]) -> Result<Self> {
        let chain = pem::chain(chain, pem::BYTES)?;
        let key = pem::private_key(key, pem::BYTES)?;
        self.client_auth = Some((chain, key));
        Ok(self)
    }

    /// Presents a client certificate (mutual TLS) given in DER: the chain, leaf first, and its
    /// private key.
    ///
    /// A key that does not match the leaf, a key the crypto provider cannot sign with (as
    /// [`client_certificate_pem`](Self::client_certificate_pem) says), or an empty chain, or
    /// one too large for a handshake message (over 16 MiB), makes [`build`](Self::build) fail
    /// with [`Error::Config`].
    ///
    /// # Examples
    ///
    /// ```
    /// use net_tls::{CertificateDer, PrivateKeyDer, TlsConfig};
    ///
    /// # fn demo(leaf: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> net_tls::Result<()> {
    /// let config = TlsConfig::builder().client_certificate_der([leaf], key).build()?;
    /// # Ok(()) }
    /// ```
    pub fn client_certificate_der(
        mut self,
        chain: impl IntoIterator<Item = CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Self {
        self.client_auth = Some((chain.into_iter().collect(), key));
        self
    }

    negotiation_setters! {
        alpn: "Offers these application protocols (ALPN), most preferred first (default: none).",
        versions: "Limits the protocol versions offered (default: TLS 1.3 and TLS 1.2).",
        timeout: "How long the handshake may take before it fails with \
                  [`Error::HandshakeTimeout`] (default 10 seconds)."
    }

    /// **Dangerous:** accepts any server certificate, from anyone, for any name: the connection
    /// is encrypted but not authenticated, so anyone on the path can read and change it.
    ///
    /// This is the trust-all mode of Ktor's documentation sample, for testing against a server
    /// with a throw-away certificate. Building such a configuration logs a warning.
    ///
    /// The server must still sign the handshake with its certificate's key, and that signature
    /// is checked: the key must be one the crypto provider verifies signatures with (its
    /// `signature_verification_algorithms`; with `ring`, the default: RSA of 2048 to 8192
    /// bits, ECDSA on P-256 or P-384, Ed25519). A server whose certificate has another key is
    /// refused all the same: one with an old device's 1,024-bit RSA key fails the handshake
    /// with [`Error::Handshake`]`(InvalidCertificate(BadSignature))`; one with an ECDSA key on
    /// P-521 (under `ring`) finds no signature scheme the client offers, and OpenSSL's server
    /// then answers `handshake_failure`: [`Error::Handshake`]`(AlertReceived(HandshakeFailure))`.
    pub fn dangerous_accept_any_server_certificate(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// Builds the configuration.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidServerName`] for an unusable [`server_name`](Self::server_name),
    /// [`Error::InvalidAlpnProtocol`] for an ALPN list that cannot be sent,
    /// [`Error::Config`] when rustls refuses the combination (no protocol version, a client key
    /// that does not match its certificate, a client chain too large for a handshake message:
    /// over 16 MiB), [`Error::NativeRoots`] when the OS certificate
    /// store was asked for and could not be read or held no usable certificate.
    pub fn build(self) -> Result<TlsConfig> {
        if let Some(e) = self.deferred {
            return Err(e);
        }
        crate::check_alpn(&self.alpn)?;
        let provider = provider();
        let server_name = self.server_name.as_deref().map(server_name).transpose()?;
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&crate::versions(&self.versions)?)
            .map_err(Error::Config)?;
        let builder = if self.insecure {
            tracing::warn!(
                "TLS client configured to accept any server certificate: connections are not authenticated"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCertificate(provider)))
        } else {
            let mut roots = self.roots;
            if self.native_roots {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    // Not one certificate the store could give: a client that goes on would
                    // trust none of it, and fail each handshake with `UnknownIssuer`.
                    let e: Box<dyn std::error::Error + Send + Sync> =
                        match found.errors.into_iter().next() {
                            Some(e) => Box::new(e),
                            None => Box::new(std::io::Error::new(
                                std::io::ErrorKind::NotFound,
                                "the system's certificate store holds no usable certificate",
                            )),
                        };
                    return Err(Error::NativeRoots(e));
                }
            } else if roots.is_empty() {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            builder.with_root_certificates(roots)
        };
        let mut config = match self.client_auth {
            Some((chain, key)) => {
                crate::check_chain(&chain)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(Error::Config)?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn;
        Ok(TlsConfig {
            rustls: Arc::new(config),
            server_name,
            handshake_timeout: self.handshake_timeout,
            verification: if self.insecure { "disabled" } else { "enabled" },
        })
    }
}

/// Accepts every certificate, but still checks that the handshake is signed by the key in it.
#[derive(Debug)]
struct AcceptAnyServerCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_leaf() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let key = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        (cert.der().clone(), key)
    }

    #[test]
    fn der_client_certificate_is_checked_at_build() {
        let (cert, key) = client_leaf();
        let built = TlsConfig::builder()
            .client_certificate_der([cert.clone()], key.clone_key())
            .build();
        assert!(built.is_ok(), "{built:?}");

        let (_, other_key) = client_leaf();
        let mismatch = TlsConfig::builder()
            .client_certificate_der([cert], other_key)
            .build()
            .unwrap_err();
        assert!(
            matches!(
                mismatch,
                Error::Config(rustls::Error::InconsistentKeys(
                    rustls::InconsistentKeys::KeyMismatch
                ))
            ),
            "{mismatch:?}"
        );

        let empty = TlsConfig::builder()
            .client_certificate_der([], key)
            .build()
            .unwrap_err();
        assert!(
            matches!(empty, Error::Config(rustls::Error::NoCertificatesPresented)),
            "{empty:?}"
        );
    }

    /// `server_name("")` was refused with "no tls server name ... (set one with server_name)",
    /// although the user had set one: the message must fit an empty name given.
    #[test]
    fn an_empty_server_name_is_refused_as_empty() {
        let err = TlsConfig::builder().server_name("").build().unwrap_err();
        assert!(
            matches!(&err, Error::InvalidServerName { name } if name.is_empty()),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("empty"), "{text}");
        assert!(!text.contains("set one"), "{text}");
        assert!(text.contains("server_name"), "{text}");
    }

    /// Brackets were trimmed from any name, so `[localhost]` and `[127.0.0.1]` were accepted
    /// as `localhost` and `127.0.0.1`: brackets belong only around an IPv6 literal.
    #[test]
    fn brackets_are_accepted_only_around_an_ipv6_literal() {
        for name in [
            "[localhost]",
            "[127.0.0.1]",
            "[::1",
            "::1]",
            "[[::1]]",
            "[]",
            "[example.com",
        ] {
            let err = TlsConfig::builder().server_name(name).build().unwrap_err();
            assert!(
                matches!(&err, Error::InvalidServerName { name: given } if given == name),
                "{name}: {err:?}"
            );
        }
        for (name, ip) in [("[::1]", "::1"), ("::1", "::1"), ("127.0.0.1", "127.0.0.1")] {
            let config = TlsConfig::builder().server_name(name).build().unwrap();
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(
                config.server_name,
                Some(ServerName::IpAddress(ip.into())),
                "{name}"
            );
        }
    }

    /// A scoped IPv6 literal (`fe80::1%eth0`, `fe80::1%2`: link-local addresses need one) is
    /// the address without its scope, which is this host's routing and no part of the
    /// certificate's IP SAN. The host given to `connect` keeps a named scope (the resolver
    /// took it), so a TLS connect to `("fe80::1%eth0", 443)` failed with `InvalidServerName`
    /// where one to `("fe80::1%2", 443)`, whose host is the address, verified `fe80::1`.
    #[test]
    fn a_scoped_ipv6_literal_is_verified_as_its_address() {
        let ip = ServerName::IpAddress("fe80::1".parse::<std::net::IpAddr>().unwrap().into());
        for name in ["fe80::1%eth0", "fe80::1%2", "[fe80::1%eth0]", "[fe80::1%2]"] {
            let config = TlsConfig::builder().server_name(name).build().unwrap();
            assert_eq!(config.server_name, Some(ip.clone()), "{name}");
        }
        let config = TlsConfig::builder().build().unwrap();
        assert_eq!(config.name_for(Some("fe80::1%eth0")).unwrap(), ip);
        for name in [
            "fe80::1%",
            "[fe80::1%]",
            "localhost%eth0",
            "127.0.0.1%1",
            "fe80::1%a b",
        ] {
            let err = TlsConfig::builder().server_name(name).build().unwrap_err();
            assert!(
                matches!(&err, Error::InvalidServerName { name: given } if given == name),
                "{name}: {err:?}"
            );
        }
    }

    /// The Debug output did not show that certificate verification was turned off
    /// (`dangerous_accept_any_server_certificate`): a security setting must be visible.
    #[test]
    fn debug_shows_whether_certificates_are_verified() {
        let insecure = TlsConfig::builder()
            .dangerous_accept_any_server_certificate()
            .build()
            .unwrap();
        let text = format!("{insecure:?}");
        assert!(text.contains(r#"verification: "disabled""#), "{text}");

        let secure = TlsConfig::builder().build().unwrap();
        let text = format!("{secure:?}");
        assert!(text.contains(r#"verification: "enabled""#), "{text}");

        let given = TlsConfig::from_rustls(secure.rustls.clone());
        let text = format!("{given:?}");
        assert!(text.contains(r#"verification: "from_rustls""#), "{text}");
    }

    #[test]
    fn from_rustls_keeps_the_given_configuration() {
        let rustls_config = Arc::new(
            ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth(),
        );
        let config = TlsConfig::from_rustls(Arc::clone(&rustls_config));
        assert!(Arc::ptr_eq(&config.rustls, &rustls_config));
        assert_eq!(config.handshake_timeout, DEFAULT_HANDSHAKE_TIMEOUT);
        assert!(config.server_name.is_none());
    }

    /// A fully qualified name's trailing dot is dropped once, also from the longest DNS name
    /// (253 characters, which rustls refuses with the dot); a second dot is refused, though
    /// the name without one of them (`localhost.`) is one rustls takes.
    #[test]
    fn a_trailing_dot_is_dropped_once_and_a_second_is_refused() {
        let label = "x".repeat(63);
        let of_253 = format!("{label}.{label}.{label}.{}", "z".repeat(61));
        let config = TlsConfig::builder()
            .server_name(&format!("{of_253}."))
            .build()
            .expect("the longest DNS name with its trailing dot");
        assert_eq!(
            config.server_name,
            Some(ServerName::try_from(of_253.clone()).unwrap())
        );
        for name in ["localhost..", "a.example..", "127.0.0.1.", "a b."] {
            let err = TlsConfig::builder().server_name(name).build().unwrap_err();
            assert!(
                matches!(&err, Error::InvalidServerName { name: given } if given == name),
                "{name}: {err:?}"
            );
        }
    }

    /// The builder's Debug output shows what it trusts and presents, turned-off verification
    /// first among them, as the built configuration's does.
    #[test]
    fn the_builders_debug_shows_its_trust_settings() {
        let (cert, key) = client_leaf();
        let builder = TlsConfig::builder()
            .server_name("localhost")
            .add_root_certificate(cert.clone())
            .native_roots()
            .client_certificate_der([cert], key)
            .dangerous_accept_any_server_certificate();
        let text = format!("{builder:?}");
        for field in [
            r#"server_name: Some("localhost")"#,
            "custom_roots: 1",
            "native_roots: true",
            "client_certificate: true",
            "insecure: true",
        ] {
            assert!(text.contains(field), "{field}: {text}");
        }
        let text = format!("{:?}", TlsConfig::builder());
        assert!(text.contains("insecure: false"), "{text}");
    }

    /// A root added replaces the bundled Mozilla roots (the client trusts exactly the roots it
    /// was given); with none added, the bundled ones are trusted. rustls's verifier shows how
    /// many roots it holds only in its Debug output, so that is read here.
    #[test]
    fn an_added_root_replaces_the_bundled_roots() {
        let (cert, _) = client_leaf();
        let custom = TlsConfig::builder()
            .add_root_certificate(cert)
            .build()
            .unwrap();
        let text = format!("{:?}", custom.rustls);
        assert!(text.contains(r#"roots: "(1 roots)""#), "{text}");
        let bundled = TlsConfig::builder().build().unwrap();
        let text = format!("{:?}", bundled.rustls);
        let count = webpki_roots::TLS_SERVER_ROOTS.len();
        assert!(count > 1, "{count}");
        assert!(
            text.contains(&format!(r#"roots: "({count} roots)""#)),
            "{text}"
        );
    }
}
