//! The server side: [`TlsServerConfig`], its builder, SNI certificate choice and reloading.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::client::verify_server_name;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, DnsName, PrivateKeyDer, ServerName};

use crate::client::DEFAULT_HANDSHAKE_TIMEOUT;
use crate::{Error, Result, TlsVersion, pem, provider};

/// How a server sets up TLS: its certificates, client authentication, ALPN, handshake timeout.
///
/// Made by [`TlsServerConfig::builder`]; cheap to clone, `Send + Sync`. Clones share one slot:
/// [`reload`](Self::reload) on any of them changes what every later handshake uses (open
/// connections keep the configuration they started with), so a listener can rotate its
/// certificate without a restart.
///
/// Sessions are resumed, as rustls does by default: a configuration made by
/// [`build`](TlsServerConfigBuilder::build) keeps the sessions its handshakes made in memory
/// (the last 256 tickets and session IDs: a TLS 1.3 client gets two tickets, each naming its
/// session, a TLS 1.2 client a session ID). A ticket resumes once (a client that offers it
/// again gets a full handshake), a session ID as often as it is offered; neither resumes for
/// another SNI name than its own. A session is resumed only under the configuration that
/// made it: after a [`reload`](Self::reload) to one built anew, none made before is, so every
/// client does a full handshake under the new configuration, gets its certificate and meets
/// what it requires (a client certificate, another client CA): resuming skips none of it.
/// Under one configuration, though, a session is resumed however long ago it was made, while
/// it is among the last 256 (rustls gives the sessions it keeps no time limit: a TLS 1.3
/// ticket tells the client to drop it after a day, a TLS 1.2 session ID says nothing), and no
/// certificate is checked again: a client whose certificate expired since its session was
/// made still resumes, its `peer_certificates` that certificate. A reload to a configuration
/// built anew ends every session. The tickets of a configuration made by
/// [`build`](TlsServerConfigBuilder::build) allow no TLS 1.3 early data (0-RTT): a client
/// that sends some all the same has it refused and thrown away, unread, and must send it
/// again after the handshake (`gnutls-cli --earlydata` does not: those bytes are lost).
/// Configurations given to [`from_rustls`](Self::from_rustls) keep their own
/// `session_storage` and `ticketer`: two that share them resume each other's sessions, across
/// a reload too (see rustls's `ServerConfig`).
///
/// Its `Debug` output shows how clients are authenticated, as `client_auth`: `"none"`,
/// `"optional"` ([`client_auth_optional`](TlsServerConfigBuilder::client_auth_optional)),
/// `"required"` ([`client_auth_required`](TlsServerConfigBuilder::client_auth_required)), or
/// `"from_rustls"` (by the verifier of a configuration given to
/// [`from_rustls`](TlsServerConfig::from_rustls)).
///
/// # Examples
///
/// ```
/// # fn demo(chain_pem: &[u8], key_pem: &[u8]) -> net_tls::Result<()> {
/// let config = net_tls::TlsServerConfig::builder()
///     .certificate_chain_pem(chain_pem)?
///     .private_key_pem(key_pem)?
///     .alpn_protocols(["h2", "http/1.1"])
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsServerConfig {
    current: Arc<RwLock<Arc<Settings>>>,
}

/// One complete server configuration, swapped whole on reload.
pub(crate) struct Settings {
    pub(crate) rustls: Arc<ServerConfig>,
    pub(crate) handshake_timeout: Duration,
    /// How clients are authenticated, for `Debug`: "none", "optional", "required" or
    /// "from_rustls".
    client_auth: &'static str,
}

impl fmt::Debug for TlsServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = self.settings();
        let mut debug = f.debug_struct("TlsServerConfig");
        debug.field("client_auth", &settings.client_auth);
        crate::negotiated(
            &mut debug,
            &settings.rustls.alpn_protocols,
            settings.handshake_timeout,
        )
    }
}

impl TlsServerConfig {
    /// Starts a configuration: TLS 1.3 and 1.2, no client authentication, no ALPN, a 10-second
    /// handshake timeout. A certificate chain and key are required.
    pub fn builder() -> TlsServerConfigBuilder {
        TlsServerConfigBuilder {
            chain: None,
            key: None,
            sni: Vec::new(),
            client_auth: ClientAuth::None,
            alpn: Vec::new(),
            versions: vec![TlsVersion::Tls13, TlsVersion::Tls12],
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// Uses a rustls server configuration as it is: the escape hatch for what the builder does
    /// not offer (a custom client-certificate verifier or certificate resolver, session
    /// storage, key logging, another crypto provider).
    ///
    /// The configuration is used as given, including its crypto provider, protocol versions,
    /// ALPN protocols, client authentication and certificate resolver (which decides how SNI
    /// chooses a certificate); nothing of the builder's defaults is added, and one thing is
    /// taken away: TLS 1.3 early data (0-RTT) is refused whatever `max_early_data_size` says
    /// (a client that wants those bytes delivered must send them again after the handshake;
    /// RFC 8446 leaves that to the client's application, and some clients never do, such as
    /// `gnutls-cli --earlydata`: its early data is then lost), as the socket has no way to
    /// hand them to the application. The handshake timeout is the default, 10 seconds. The
    /// result can be [`reload`](Self::reload)ed like any other. A configuration rustls cannot
    /// start a connection with (a `max_fragment_size` out of its range) fails each handshake
    /// with [`Error::Config`], before any TLS record is sent.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// use net_tls::rustls;
    /// use net_tls::{CertificateDer, PrivateKeyDer, TlsServerConfig};
    ///
    /// # fn demo(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<(), rustls::Error> {
    /// let mut rustls_config =
    ///     rustls::ServerConfig::builder_with_provider(net_tls::crypto_provider())
    ///         .with_protocol_versions(&[&rustls::version::TLS13])?
    ///         .with_no_client_auth()
    ///         .with_single_cert(chain, key)?;
    /// rustls_config.alpn_protocols = vec![b"h2".to_vec()];
    /// let config = TlsServerConfig::from_rustls(Arc::new(rustls_config));
    /// # Ok(()) }
    /// ```
    pub fn from_rustls(config: Arc<ServerConfig>) -> TlsServerConfig {
        let settings = Settings {
            rustls: config,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            client_auth: "from_rustls",
        };
        TlsServerConfig {
            current: Arc::new(RwLock::new(Arc::new(settings))),
        }
    }

    /// Makes every later handshake, through this value or any clone of it, use `new`'s
    /// certificates and settings. Connections already open are not affected.
    pub fn reload(&self, new: &TlsServerConfig) {
        let settings = new.settings();
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = settings;
    }

    pub(crate) fn settings(&self) -> Arc<Settings> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }
}

#[derive(Debug)]
enum ClientAuth {
    None,
    Optional(RootCertStore),
    Required(RootCertStore),
}

/// Builds a [`TlsServerConfig`].
#[must_use = "a configuration builder does nothing until `build`"]
pub struct TlsServerConfigBuilder {
    chain: Option<Vec<CertificateDer<'static>>>,
    key: Option<PrivateKeyDer<'static>>,
    sni: Vec<(String, Arc<CertifiedKey>)>,
    client_auth: ClientAuth,
    alpn: Vec<Vec<u8>>,
    versions: Vec<TlsVersion>,
    handshake_timeout: Duration,
}

impl fmt::Debug for TlsServerConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServerConfigBuilder")
            .field("certificates", &self.chain.as_ref().map_or(0, Vec::len))
            .field("key", &self.key.is_some())
            .field(
                "sni_names",
                &self.sni.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

impl TlsServerConfigBuilder {
    /// The server's certificate chain in PEM, leaf first.
    ///
    /// # Errors
    ///
    /// [`Error::Pem`] for input with no certificate or bad PEM, whose first certificate (the
    /// leaf) is not one (its body corrupted), or with a certificate after the leaf that is not
    /// one whole DER value (a base64 line lost, an END line missing). The certificates after
    /// the leaf are not parsed further: they are sent as they are. A chain too large for a
    /// handshake message (over 16 MiB) makes [`build`](Self::build) fail with
    /// [`Error::Config`].
    pub fn certificate_chain_pem(mut self, pem: &[u8]) -> Result<Self> {
        self.chain = Some(pem::chain(pem, pem::BYTES)?);
        Ok(self)
    }

    /// As [`certificate_chain_pem`](Self::certificate_chain_pem), from a file.
    ///
    /// # Errors
    ///
    /// [`Error::ReadFile`] when the file cannot be read (missing, unreadable), with the
    /// operating system's error as its source and kind; [`Error::Pem`] naming the file when it
    /// is empty or malformed.
    pub fn certificate_chain_pem_file(mut self, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        self.chain = Some(pem::chain(
            &pem::read_file(path)?,
            &path.display().to_string(),
        )?);
        Ok(self)
    }

    /// The server's certificate chain in DER, leaf first. An empty chain makes
    /// [`build`](Self::build) fail with [`Error::MissingCertificateChain`], and one too large
    /// for a handshake message (over 16 MiB) with [`Error::Config`].
    ///
    /// # Examples
    ///
    /// ```
    /// use net_tls::{CertificateDer, PrivateKeyDer, TlsServerConfig};
    ///
    /// # fn demo(leaf: CertificateDer<'static>, ca: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> net_tls::Result<()> {
    /// let config = TlsServerConfig::builder()
    ///     .certificate_chain_der([leaf, ca])
    ///     .private_key_der(key)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn certificate_chain_der(
        mut self,
        chain: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Self {
        self.chain = Some(chain.into_iter().collect());
        self
    }

    /// The private key of the leaf certificate in DER (PKCS#8, PKCS#1 or SEC1, as the
    /// [`PrivateKeyDer`] variant says). A key rustls cannot use, or one that does not match the
    /// certificate, makes [`build`](Self::build) fail with [`Error::Config`].
    pub fn private_key_der(mut self, key: PrivateKeyDer<'static>) -> Self {
        self.key = Some(key);
        self
    }

    /// The private key of the leaf certificate in PEM: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    ///
    /// # Errors
    ///
    /// [`Error::Pem`] when no key is found, the PEM is malformed, the key is encrypted, or it is
    /// not a key the crypto provider can sign with: its body corrupted, or, with `ring` (the
    /// default), anything but RSA of 2048 to 4096 bits, ECDSA on P-256 or P-384 with its
    /// public key included (OpenSSL includes it unless told `-no_public`), or Ed25519 (PKCS#8
    /// only); with `aws-lc-rs`, anything but RSA of 2048 to 8192 bits, ECDSA on P-256, P-384
    /// or P-521, Ed25519, or ML-DSA (PKCS#8 only; see the crate docs' "Crypto provider").
    pub fn private_key_pem(mut self, pem: &[u8]) -> Result<Self> {
        self.key = Some(pem::private_key(pem, pem::BYTES)?);
        Ok(self)
    }

    /// As [`private_key_pem`](Self::private_key_pem), from a file.
    ///
    /// # Errors
    ///
    /// [`Error::ReadFile`] when the file cannot be read (missing, unreadable), with the
    /// operating system's error as its source and kind; [`Error::Pem`] naming the file when it
    /// is empty or malformed, or its key is encrypted.
    pub fn private_key_pem_file(mut self, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        self.key = Some(pem::private_key(
            &pem::read_file(path)?,
            &path.display().to_string(),
        )?);
        Ok(self)
    }

    /// Serves another certificate to clients that ask for `host_name` by SNI (compared without
    /// regard to ASCII case, and to a fully qualified name's trailing dot). Clients that send
    /// another DNS name, an IP address (which SNI may not carry) or none get the default
    /// chain; one that sends a name that is not a DNS name (a space in it, a label over 63
    /// characters, two trailing dots) is refused by rustls, with or without SNI certificates,
    /// and so is one that sends a name of 253 characters, the longest, with the trailing dot
    /// (rustls takes 253 characters, dot included; RFC 6066 says to send no dot):
    /// its handshake fails with
    /// [`Error::Handshake`]`(`[`PeerMisbehaved::ServerNameMustContainOneHostName`](rustls::PeerMisbehaved::ServerNameMustContainOneHostName)`)`,
    /// the client told `illegal_parameter`. A name given again replaces its earlier
    /// certificate.
    ///
    /// # Errors
    ///
    /// [`Error::Pem`] for unusable PEM, [`Error::Config`] when the key does not match the
    /// certificate or the certificate does not cover `host_name`, [`Error::InvalidSniName`] for a name no client sends by SNI (see
    /// [`sni_certificate_der`](Self::sni_certificate_der)).
    pub fn sni_certificate_pem(self, host_name: &str, chain: &[u8], key: &[u8]) -> Result<Self> {
        let chain = pem::chain(chain, pem::BYTES)?;
        let key = pem::private_key(key, pem::BYTES)?;
        self.sni_certificate_der(host_name, chain, key)
    }

    /// As [`sni_certificate_pem`](Self::sni_certificate_pem), from DER: the chain (leaf
    /// first) and its key.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSniName`] for a name no client sends by SNI, whose certificate would
    /// never be served: SNI carries one DNS name, in ASCII, so not an IP address, a wildcard
    /// (`*.example.com`: add each name) or a name with other characters (give its punycode
    /// form, `xn--...`), or one that ends with more than the one trailing dot of a fully
    /// qualified name. [`Error::Config`] when the key does not match the certificate, the
    /// chain is empty or too large for a handshake message (over 16 MiB), or its leaf does
    /// not cover `host_name` (a wildcard covers the names it matches), as rustls's own SNI
    /// resolver refuses it: every client asking for that name would fail its handshake. A
    /// leaf without a subjectAltName (its host only in the common name, which rustls's clients
    /// ignore and OpenSSL's still check) is taken.
    pub fn sni_certificate_der(
        mut self,
        host_name: &str,
        chain: impl IntoIterator<Item = CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self> {
        // Clients send the name without a fully qualified name's trailing dot. A second dot
        // would be kept (a DNS name may end with one), and no client sends the name that
        // leaves: an empty last label.
        let name = host_name.strip_suffix('.').unwrap_or(host_name);
        let dns_name = match DnsName::try_from(name) {
            Ok(dns_name) if !name.ends_with('.') => dns_name.to_owned(),
            // As rustls's own SNI resolver refuses it ("Bad DNS name").
            _ => {
                return Err(Error::InvalidSniName {
                    name: host_name.into(),
                });
            }
        };
        let chain: Vec<_> = chain.into_iter().collect();
        crate::check_chain(&chain)?;
        let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(Error::Config)?;
        // A leaf that does not cover the name would fail every handshake that asks for it: a
        // mistake in the configuration, refused here as rustls's own SNI resolver refuses it.
        // A leaf that names no host at all (no subjectAltName: a legacy certificate with its
        // host in the common name, which OpenSSL's clients still accept) is taken as before.
        let covered = certified
            .end_entity_cert()
            .and_then(ParsedCertificate::try_from)
            .and_then(|leaf| verify_server_name(&leaf, &ServerName::DnsName(dns_name)));
        match covered {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { presented, .. },
            )) if presented.is_empty() => {}
            covered => covered.map_err(Error::Config)?,
        }
        self.sni
            .push((name.to_ascii_lowercase(), Arc::new(certified)));
        Ok(self)
    }

    /// Asks clients for a certificate and verifies any that is sent against the CAs in
    /// `ca_pem`; clients without one are still accepted.
    ///
    /// The request names the CAs, a hint for a client with several certificates, unless their
    /// names take more than one handshake message carries (over 64,511 bytes, each with a
    /// two-byte length: some 600 CAs of usual names); then it names none, and clients are
    /// verified against all of them just the same.
    ///
    /// The CA certificates are trusted as a client's roots are
    /// ([`add_root_certificates_pem`](crate::TlsConfigBuilder::add_root_certificates_pem)
    /// says how): for their subject name and key, whatever their basicConstraints and key usage
    /// say, so give only CA certificates (one that is not a CA's still issues client
    /// certificates). A client's self-signed certificate pinned here must not be marked as a
    /// CA: one marked `CA:TRUE` fails the server's handshake with
    /// [`Error::Handshake`]`(InvalidCertificate(Other(..)))`, webpki's `CaUsedAsEndEntity`.
    ///
    /// # Errors
    ///
    /// [`Error::Pem`] for unusable PEM or an unusable CA certificate (the reason says which,
    /// counting from 1).
    pub fn client_auth_optional(mut self, ca_pem: &[u8]) -> Result<Self> {
        self.client_auth = ClientAuth::Optional(roots(ca_pem)?);
        Ok(self)
    }

    /// Requires every client to present a certificate issued by one of the CAs in `ca_pem`.
    /// The request names the CAs when their names fit in it, and the CAs are trusted as
    /// anchors, CA certificates or not, as [`client_auth_optional`](Self::client_auth_optional)
    /// says.
    ///
    /// # Errors
    ///
    /// [`Error::Pem`] for unusable PEM or an unusable CA certificate (the reason says which,
    /// counting from 1).
    pub fn client_auth_required(mut self, ca_pem: &[u8]) -> Result<Self> {
        self.client_auth = ClientAuth::Required(roots(ca_pem)?);
        Ok(self)
    }

    /// As [`client_auth_optional`](Self::client_auth_optional) or, with `required`,
    /// [`client_auth_required`](Self::client_auth_required), with the CA certificates in DER
    /// (trusted as anchors, CA certificates or not, as there).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an unusable CA certificate.
    pub fn client_auth_der(
        mut self,
        cas: impl IntoIterator<Item = CertificateDer<'static>>,
        required: bool,
    ) -> Result<Self> {
        let mut roots = RootCertStore::empty();
        for ca in cas {
            roots.add(ca).map_err(Error::Config)?;
        }
        self.client_auth = if required {
            ClientAuth::Required(roots)
        } else {
            ClientAuth::Optional(roots)
        };
        Ok(self)
    }

    negotiation_setters! {
        alpn: "The application protocols (ALPN) the server accepts, most preferred first \
               (default: none: no protocol is chosen, whatever a client offers). With a list, a \
               client that offers ALPN but none of these is refused \
               (`no_application_protocol`).",
        versions: "Limits the protocol versions accepted (default: TLS 1.3 and TLS 1.2).",
        timeout: "How long a client may take to complete the handshake before the connection \
                  is closed with [`Error::HandshakeTimeout`] (default 10 seconds), so a silent \
                  client cannot hold a slot forever."
    }

    /// Builds the configuration.
    ///
    /// # Errors
    ///
    /// [`Error::MissingCertificateChain`] / [`Error::MissingPrivateKey`] when either was not
    /// given (or the chain is empty); [`Error::ClientVerifier`] when the client-certificate roots are unusable;
    /// [`Error::InvalidAlpnProtocol`] for an ALPN name no client can send; [`Error::Config`]
    /// when the key does not match the certificate, the chain is too large for a handshake
    /// message (over 16 MiB), or rustls refuses the combination.
    pub fn build(self) -> Result<TlsServerConfig> {
        crate::check_alpn(&self.alpn)?;
        let provider = provider();
        let chain = self
            .chain
            .filter(|chain| !chain.is_empty())
            .ok_or(Error::MissingCertificateChain)?;
        crate::check_chain(&chain)?;
        let key = self.key.ok_or(Error::MissingPrivateKey)?;
        let default =
            Arc::new(CertifiedKey::from_der(chain, key, &provider).map_err(Error::Config)?);
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&crate::versions(&self.versions)?)
            .map_err(Error::Config)?;
        let client_auth = match self.client_auth {
            ClientAuth::None => "none",
            ClientAuth::Optional(_) => "optional",
            ClientAuth::Required(_) => "required",
        };
        let builder = match self.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Optional(roots) => {
                builder.with_client_cert_verifier(client_verifier(roots, &provider, false)?)
            }
            ClientAuth::Required(roots) => {
                builder.with_client_cert_verifier(client_verifier(roots, &provider, true)?)
            }
        };
        let resolver = SniResolver {
            default,
            by_name: self.sni.into_iter().collect(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = self.alpn;
        let settings = Settings {
            rustls: Arc::new(config),
            handshake_timeout: self.handshake_timeout,
            client_auth,
        };
        Ok(TlsServerConfig {
            current: Arc::new(RwLock::new(Arc::new(settings))),
        })
    }
}

/// The most bytes the client CAs' names may take in a CertificateRequest, each with its
/// two-byte length: what one handshake message carries (65,535 bytes, the most rustls's
/// clients take and the most the list's own length field can say), less room for the
/// request's other fields.
const MAX_CA_NAMES: usize = 0xffff - 1024;

/// Verifies client certificates against `roots`. The request names the CAs (a hint for a
/// client with several certificates) only when their names fit in it: rustls would encode a
/// longer list with a length that wrapped (a request no client can decode; in a debug build,
/// a panic that aborts the process).
fn client_verifier(
    roots: RootCertStore,
    provider: &Arc<rustls::crypto::CryptoProvider>,
    required: bool,
) -> Result<Arc<dyn ClientCertVerifier>> {
    let names: usize = roots
        .subjects()
        .iter()
        .map(|name| 2 + name.as_ref().len())
        .sum();
    let mut verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
    if names > MAX_CA_NAMES {
        verifier = verifier.clear_root_hint_subjects();
    }
    if !required {
        verifier = verifier.allow_unauthenticated();
    }
    verifier.build().map_err(Error::ClientVerifier)
}

fn roots(ca_pem: &[u8]) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    pem::add_roots(&mut roots, ca_pem, pem::BYTES)?;
    Ok(roots)
}

/// Picks the certificate by the SNI name a client sent, falling back to the default.
#[derive(Debug)]
struct SniResolver {
    default: Arc<CertifiedKey>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = hello
            .server_name()
            .and_then(|name| self.by_name.get(&name.to_ascii_lowercase()))
            .unwrap_or(&self.default);
        Some(Arc::clone(chosen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_chain_or_key_is_named() {
        let missing_both = TlsServerConfig::builder().build().unwrap_err();
        assert!(
            matches!(missing_both, Error::MissingCertificateChain),
            "{missing_both:?}"
        );
        let key = rcgen::KeyPair::generate().unwrap();
        let missing_chain = TlsServerConfig::builder()
            .private_key_pem(key.serialize_pem().as_bytes())
            .unwrap()
            .build()
            .unwrap_err();
        assert!(
            matches!(missing_chain, Error::MissingCertificateChain),
            "{missing_chain:?}"
        );
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let missing_key = TlsServerConfig::builder()
            .certificate_chain_pem(cert.pem().as_bytes())
            .unwrap()
            .build()
            .unwrap_err();
        assert!(
            matches!(missing_key, Error::MissingPrivateKey),
            "{missing_key:?}"
        );
    }

    fn self_signed(name: &str) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let key = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        (cert.der().clone(), key)
    }

    #[test]
    fn der_chain_and_key_build_and_are_checked() {
        let (cert, key) = self_signed("localhost");
        let config = TlsServerConfig::builder()
            .certificate_chain_der([cert.clone()])
            .private_key_der(key.clone_key())
            .build();
        assert!(config.is_ok(), "{config:?}");

        let empty = TlsServerConfig::builder()
            .certificate_chain_der([])
            .private_key_der(key.clone_key())
            .build()
            .unwrap_err();
        assert!(matches!(empty, Error::MissingCertificateChain), "{empty:?}");

        let (_, other_key) = self_signed("localhost");
        let mismatch = TlsServerConfig::builder()
            .certificate_chain_der([cert])
            .private_key_der(other_key)
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
    }

    /// A builder given everything in DER: a chain and key for `localhost`, an SNI certificate
    /// for `Other.Test`, and required client auth under one root.
    fn builder_with_everything() -> TlsServerConfigBuilder {
        let (cert, key) = self_signed("localhost");
        let (other, other_key) = self_signed("other.test");
        let (ca, _) = self_signed("client ca");
        TlsServerConfig::builder()
            .certificate_chain_der([cert])
            .private_key_der(key)
            .sni_certificate_der("Other.Test", [other], other_key)
            .unwrap()
            .client_auth_der([ca], true)
            .unwrap()
    }

    #[test]
    fn sni_certificates_and_client_roots_in_der() {
        let built = builder_with_everything().build();
        assert!(built.is_ok(), "{built:?}");
        let (cert, _) = self_signed("localhost");
        let (_, wrong_key) = self_signed("x");
        let mismatch = TlsServerConfig::builder()
            .sni_certificate_der("x", [cert], wrong_key)
            .unwrap_err();
        assert!(matches!(mismatch, Error::Config(_)), "{mismatch:?}");
        let garbage = TlsServerConfig::builder()
            .client_auth_der([CertificateDer::from(vec![1, 2, 3])], false)
            .unwrap_err();
        assert!(matches!(garbage, Error::Config(_)), "{garbage:?}");
    }

    /// A name no client can send by SNI (clients send one DNS name, ASCII, without wildcard;
    /// never an IP address) is refused, typed, instead of a certificate that is never served.
    #[test]
    fn an_sni_name_no_client_can_send_is_refused() {
        for name in [
            "*.example.com",
            "127.0.0.1",
            "::1",
            "",
            "b\u{fc}cher.example",
            "a b",
            // One trailing dot is a fully qualified name's; a second leaves an empty label,
            // which no client sends (rustls refuses such an SNI name).
            "other.test..",
            ".",
        ] {
            let (cert, key) = self_signed("localhost");
            let refused = TlsServerConfig::builder().sni_certificate_der(name, [cert], key);
            assert!(
                matches!(&refused, Err(Error::InvalidSniName { name: n }) if n == name),
                "{name:?}: {refused:?}"
            );
        }
        for name in ["Other.Test.", "xn--bcher-kva.example", "localhost"] {
            let (cert, key) = self_signed(name.trim_end_matches('.'));
            let taken = TlsServerConfig::builder().sni_certificate_der(name, [cert], key);
            assert!(taken.is_ok(), "{name:?}: {taken:?}");
        }
    }

    /// A certificate that does not cover the name it is given for was taken, and every client
    /// that asked for that name failed its handshake with a wrong-host error. It is refused, as
    /// rustls's own SNI resolver refuses it; a wildcard certificate covers the names it matches.
    #[test]
    fn an_sni_certificate_for_another_name_is_refused() {
        let (cert, key) = self_signed("localhost");
        let refused = TlsServerConfig::builder()
            .sni_certificate_der("other.test", [cert], key)
            .unwrap_err();
        assert!(
            matches!(
                refused,
                Error::Config(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName
                        | rustls::CertificateError::NotValidForNameContext { .. }
                ))
            ),
            "{refused:?}"
        );
        let (wildcard, key) = self_signed("*.example.com");
        let taken =
            TlsServerConfig::builder().sni_certificate_der("a.example.com", [wildcard], key);
        assert!(taken.is_ok(), "{taken:?}");
    }

    /// The Debug output did not say whether clients must present a certificate: a security
    /// setting must be visible (as the client's `verification` is), also after a reload.
    #[test]
    fn debug_shows_how_clients_are_authenticated() {
        let (cert, key) = self_signed("localhost");
        let (ca, _) = self_signed("client ca");
        let builder = || {
            TlsServerConfig::builder()
                .certificate_chain_der([cert.clone()])
                .private_key_der(key.clone_key())
        };
        let none = builder().build().unwrap();
        let optional = builder()
            .client_auth_der([ca.clone()], false)
            .unwrap()
            .build()
            .unwrap();
        let required = builder()
            .client_auth_der([ca], true)
            .unwrap()
            .build()
            .unwrap();
        let rustls_config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key.clone_key())
            .unwrap();
        let given = TlsServerConfig::from_rustls(Arc::new(rustls_config));
        for (config, expected) in [
            (&none, "none"),
            (&optional, "optional"),
            (&required, "required"),
            (&given, "from_rustls"),
        ] {
            let text = format!("{config:?}");
            assert!(
                text.contains(&format!(r#"client_auth: "{expected}""#)),
                "{text}"
            );
        }
        none.reload(&required);
        let text = format!("{none:?}");
        assert!(text.contains(r#"client_auth: "required""#), "{text}");
    }

    #[test]
    fn from_rustls_keeps_the_given_configuration() {
        let (cert, key) = self_signed("localhost");
        let mut rustls_config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        rustls_config.alpn_protocols = vec![b"h2".to_vec()];
        let rustls_config = Arc::new(rustls_config);
        let config = TlsServerConfig::from_rustls(Arc::clone(&rustls_config));
        let settings = config.settings();
        assert!(Arc::ptr_eq(&settings.rustls, &rustls_config));
        assert_eq!(settings.handshake_timeout, DEFAULT_HANDSHAKE_TIMEOUT);
    }

    /// Anchors (not parsed: only their subjects count here) whose names, as a
    /// CertificateRequest carries them (each a DER SEQUENCE with a two-byte length before it),
    /// take exactly `total` bytes.
    fn anchors_naming(total: usize) -> RootCertStore {
        let anchor = |subject_len: usize| rustls_pki_types::TrustAnchor {
            subject: vec![b'n'; subject_len].into(),
            subject_public_key_info: Vec::new().into(),
            name_constraints: None,
        };
        let mut roots = RootCertStore::empty();
        let mut left = total;
        // Each name of 256 to 65,535 bytes takes 2 + 4 (SEQUENCE tag and length) more.
        while left > 2_000 {
            roots.roots.push(anchor(1_000));
            left -= 1_006;
        }
        roots.roots.push(anchor(left - 6));
        let named: usize = roots.subjects().iter().map(|s| 2 + s.as_ref().len()).sum();
        assert_eq!(named, total);
        roots
    }

    /// The client CAs are named in the request while their names fit in it (up to
    /// MAX_CA_NAMES bytes), and not beyond: a list over 65,535 bytes made rustls wrap its
    /// length (a debug build panics). Required client auth refuses a client without a
    /// certificate; optional lets it in.
    #[test]
    fn client_cas_are_named_while_they_fit_and_required_means_required() {
        let provider = provider();
        for (total, named) in [
            (MAX_CA_NAMES, true),
            (MAX_CA_NAMES + 1, false),
            (0xffff + 1, false),
        ] {
            let roots = anchors_naming(total);
            let count = roots.len();
            let verifier = client_verifier(roots, &provider, true).unwrap();
            let hints = verifier.root_hint_subjects().len();
            assert_eq!(hints, if named { count } else { 0 }, "{total} bytes");
        }
        let required = client_verifier(anchors_naming(3_000), &provider, true).unwrap();
        assert!(required.client_auth_mandatory());
        let optional = client_verifier(anchors_naming(3_000), &provider, false).unwrap();
        assert!(!optional.client_auth_mandatory());
    }

    /// The builder's Debug output shows what the configuration will serve and require.
    #[test]
    fn the_builders_debug_shows_its_certificates_and_client_auth() {
        let builder = builder_with_everything();
        let text = format!("{builder:?}");
        for field in [
            "certificates: 1",
            "key: true",
            r#"sni_names: ["other.test"]"#,
            "client_auth: Required(",
        ] {
            assert!(text.contains(field), "{field}: {text}");
        }
        let text = format!("{:?}", TlsServerConfig::builder());
        assert!(text.contains("client_auth: None"), "{text}");
    }

    /// A chain is taken while it fits one handshake message, each certificate framed by its 5
    /// bytes, up to the limit itself; one byte more is refused.
    #[test]
    fn a_chain_is_taken_up_to_what_one_handshake_message_carries() {
        let chain = |sizes: &[usize]| -> Vec<CertificateDer<'static>> {
            sizes
                .iter()
                .map(|&n| CertificateDer::from(vec![0; n - 5]))
                .collect()
        };
        let half = crate::MAX_CHAIN / 2;
        for sizes in [vec![crate::MAX_CHAIN], vec![half, crate::MAX_CHAIN - half]] {
            assert!(crate::check_chain(&chain(&sizes)).is_ok(), "{sizes:?}");
            let mut over = sizes.clone();
            *over.last_mut().unwrap() += 1;
            let refused = crate::check_chain(&chain(&over)).unwrap_err();
            assert!(
                refused.to_string().contains("certificate chain"),
                "{over:?}: {refused}"
            );
        }
    }
}
