//! TLS set-up shared by the TLS examples: the server's certificate (from files, or self-signed
//! at start-up), the client's trust (`--ca`, `--insecure`), and what a handshake negotiated.

use std::path::Path;

use anyhow::Context;
use net_tls::rustls::pki_types::CertificateDer;
use net_tls::rustls::pki_types::pem::PemObject;
use net_tls::{TlsConfig, TlsServerConfig, TlsServerConfigBuilder, TlsSession, TlsVersion};

/// The names a self-signed certificate made by [`server_identity`] is valid for.
pub const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A server's certificate and key, ready for more options, with the lines a server prints
/// about it at start-up (`Certificate: ...`, `SHA-256 fingerprint: ...`).
///
/// With `cert_and_key`, the PEM chain (leaf first) and key from those files; without, a fresh
/// self-signed certificate for [`SELF_SIGNED_NAMES`] whose common name is `program`, so that a
/// client run with `--insecure` can be checked against the printed fingerprint by hand.
///
/// # Errors
///
/// A file that cannot be read or holds no usable certificate or key.
pub fn server_identity(
    cert_and_key: Option<(&Path, &Path)>,
    program: &str,
) -> anyhow::Result<(TlsServerConfigBuilder, Vec<String>)> {
    let builder = net_tls::TlsServerConfig::builder();
    match cert_and_key {
        Some((cert, key)) => {
            let builder = builder
                .certificate_chain_pem_file(cert)
                .and_then(|b| b.private_key_pem_file(key))?;
            // The file was just read and parsed; its first certificate is the leaf.
            let leaf = CertificateDer::from_pem_file(cert)
                .with_context(|| format!("no certificate in {}", cert.display()))?;
            let about = vec![
                format!("Certificate: {}", cert.display()),
                format!("SHA-256 fingerprint: {}", sha256_fingerprint(&leaf)),
            ];
            Ok((builder, about))
        }
        None => {
            let (cert_pem, key_pem, der) = self_signed(program)?;
            let about = vec![
                format!(
                    "Certificate: self-signed for {}",
                    SELF_SIGNED_NAMES.join(", ")
                ),
                format!("SHA-256 fingerprint: {}", sha256_fingerprint(&der)),
            ];
            let builder = builder
                .certificate_chain_pem(cert_pem.as_bytes())
                .and_then(|b| b.private_key_pem(key_pem.as_bytes()))?;
            Ok((builder, about))
        }
    }
}

/// Builds a configuration that began with [`server_identity`]`(cert_and_key, ..)`. A private
/// key that is not the certificate's is reported as such, naming both files (net-tls's own
/// message, from bytes, cannot name them).
///
/// # Errors
///
/// As [`TlsServerConfigBuilder::build`].
pub fn build_server_config(
    builder: TlsServerConfigBuilder,
    cert_and_key: Option<(&Path, &Path)>,
) -> anyhow::Result<TlsServerConfig> {
    use net_tls::rustls::{Error::InconsistentKeys, InconsistentKeys::KeyMismatch};
    builder.build().map_err(|e| match (e, cert_and_key) {
        (net_tls::Error::Config(InconsistentKeys(KeyMismatch)), Some((cert, key))) => {
            anyhow::anyhow!(
                "the private key in {} does not match the certificate in {}",
                key.display(),
                cert.display()
            )
        }
        (e, _) => e.into(),
    })
}

/// A fresh self-signed end-entity certificate (not a CA: rustls refuses a CA certificate as a
/// server's own) for [`SELF_SIGNED_NAMES`]: its PEM, its key's PEM, and its DER.
fn self_signed(common_name: &str) -> anyhow::Result<(String, String, Vec<u8>)> {
    use rcgen::{
        CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut params = CertificateParams::new(SELF_SIGNED_NAMES.map(str::to_owned).to_vec())
        .context("certificate names")?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().context("generating a key")?;
    let cert = params.self_signed(&key).context("making the certificate")?;
    Ok((cert.pem(), key.serialize_pem(), cert.der().to_vec()))
}

/// A TLS server's certificate, from its command line (`--cert FILE --key FILE`, or neither for a
/// self-signed one).
#[derive(clap::Args, Debug)]
pub struct Identity {
    /// The certificate chain, leaf first (PEM); default: a self-signed certificate.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<std::path::PathBuf>,
}

impl Identity {
    /// The configuration builder with this certificate, and lines describing it (see
    /// [`server_identity`]).
    ///
    /// # Errors
    ///
    /// As [`server_identity`].
    pub fn builder(&self, program: &str) -> anyhow::Result<(TlsServerConfigBuilder, Vec<String>)> {
        server_identity(self.files(), program)
    }

    /// Builds a configuration that began with [`Identity::builder`] (see
    /// [`build_server_config`]).
    ///
    /// # Errors
    ///
    /// As [`build_server_config`].
    pub fn build(&self, builder: TlsServerConfigBuilder) -> anyhow::Result<TlsServerConfig> {
        build_server_config(builder, self.files())
    }

    fn files(&self) -> Option<(&Path, &Path)> {
        self.cert.as_deref().zip(self.key.as_deref())
    }
}

/// How a TLS client decides whom to trust, from its command line (`--ca FILE`, `--insecure`).
#[derive(clap::Args, Debug)]
pub struct Trust {
    /// Trust the CA certificates in this PEM file instead of the bundled roots.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// Accept any server certificate (unsafe: the Kotlin sample's trust-all mode, or a test
    /// against a self-signed server).
    #[arg(long)]
    pub insecure: bool,
}

impl Trust {
    /// Ends the program with a usage error (exit status 2) when `--ca` and `--insecure` come
    /// together; call it right after parsing the command line `A`.
    pub fn check<A: clap::CommandFactory>(&self) {
        if self.ca.is_some() && self.insecure {
            crate::cli::usage_error::<A>("--ca and --insecure exclude each other");
        }
    }

    /// The client configuration: the bundled Mozilla roots, the CA file's certificates instead,
    /// or (with a warning on stderr) no verification at all.
    ///
    /// # Errors
    ///
    /// A CA file that cannot be read or holds no certificate.
    pub fn config(&self) -> anyhow::Result<TlsConfig> {
        let mut config = TlsConfig::builder();
        if let Some(ca) = &self.ca {
            config = config.add_root_certificates_pem_file(ca)?;
        }
        if self.insecure {
            crate::say_err!(
                "warning: --insecure: the server's certificate is not verified; \
                 anyone on the path can read and change this connection"
            );
            config = config.dangerous_accept_any_server_certificate();
        }
        Ok(config.build()?)
    }
}

/// Whether a server's failed handshake (`e`) is the end of a shutdown's grace period closing
/// the socket under it (`stop` is the socket's shutdown signal): a connection the shutdown
/// reports as cut (`Closed N connections still open ...`), not a client whose handshake failed.
pub fn cut_by_shutdown(e: &net_tls::Error, stop: &net_sockets::ShutdownSignal) -> bool {
    stop.is_requested() && matches!(e, net_tls::Error::Socket(net_sockets::Error::Closed))
}

/// The SHA-256 fingerprint of a DER certificate, as upper-case hex pairs joined by colons (the
/// form `openssl x509 -fingerprint -sha256` prints).
pub fn sha256_fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let pairs: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    pairs.join(":")
}

/// What a TLS handshake negotiated, for people: e.g.
/// `TLS 1.3, TLS13_AES_256_GCM_SHA384, key exchange X25519MLKEM768, ALPN h2`, followed by the
/// peer certificate's SHA-256 fingerprint when it presented one. Takes a `TlsSocket`, a
/// `TlsStream` or the session.
pub fn describe_session(tls: &TlsSession) -> String {
    let version = match tls.protocol_version() {
        Some(TlsVersion::Tls12) => "TLS 1.2",
        Some(TlsVersion::Tls13) => "TLS 1.3",
        _ => "TLS (unknown version)",
    };
    let suite = tls
        .cipher_suite()
        .map_or_else(|| "no cipher suite".to_owned(), |s| format!("{s:?}"));
    let exchange = tls.key_exchange_group().map_or_else(
        || "no key exchange".to_owned(),
        |g| format!("key exchange {g:?}"),
    );
    let alpn = tls.alpn_protocol().map_or_else(
        || "no ALPN".to_owned(),
        |p| format!("ALPN {}", String::from_utf8_lossy(p)),
    );
    match tls.peer_certificates().first() {
        Some(cert) => format!(
            "{version}, {suite}, {exchange}, {alpn}, peer certificate SHA-256 {}",
            sha256_fingerprint(cert)
        ),
        None => format!("{version}, {suite}, {exchange}, {alpn}"),
    }
}
