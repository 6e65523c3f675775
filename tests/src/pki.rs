//! The one test PKI of the repository, made at run time with rcgen: a CA, the leaves it issues
//! (server, client, expired, wrong host), their PEM and DER forms, net-tls configurations that
//! use them, and PEM files for tools such as `openssl` and `curl`. Nothing is checked in; every
//! run makes fresh ECDSA P-256 keys.
//!
//! - [`Pki`]: the usual set — a CA, a server leaf for [`SERVER_NAMES`] and a client leaf
//!   ([`CLIENT_NAME`]) — and [`Pki::write_to`] for the files.
//! - [`TestCa`]: a CA for tests that need leaves of their own (other names, other CAs).
//! - [`Leaf`]: one issued certificate with its chain and key.

use std::io;
use std::path::{Path, PathBuf};

use net_tls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use net_tls::{
    CertificateDer, TlsConfig, TlsConfigBuilder, TlsServerConfig, TlsServerConfigBuilder,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::TempDir;

/// The names of [`Pki::server`]: `localhost` and the IPv4 and IPv6 loopback addresses.
pub const SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The common name of [`Pki::client`] (what a server that prints its peer shows).
pub const CLIENT_NAME: &str = "net-tests client";

/// The only name of [`TestCa::wrong_host_server`]'s leaf.
pub const WRONG_HOST: &str = "wrong-host.test";

/// A CA, a server leaf for [`SERVER_NAMES`] and a client leaf, all valid now.
#[derive(Debug)]
pub struct Pki {
    /// The CA that issued both leaves.
    pub ca: TestCa,
    /// The server leaf (ServerAuth).
    pub server: Leaf,
    /// The client leaf for mutual TLS (ClientAuth), common name [`CLIENT_NAME`].
    pub client: Leaf,
}

impl Pki {
    /// A fresh CA with a server leaf for [`SERVER_NAMES`] and a client leaf.
    pub fn generate() -> Pki {
        Pki::with_server_names(&SERVER_NAMES)
    }

    /// Like [`Pki::generate`], with a server leaf for `names` only (DNS names or IP addresses).
    pub fn with_server_names(names: &[&str]) -> Pki {
        let ca = TestCa::new("net-tests CA");
        let server = ca.server(names);
        let client = ca.client(CLIENT_NAME);
        Pki { ca, server, client }
    }

    /// A server configuration with the server leaf; set more options, then `build()`.
    pub fn server_config(&self) -> TlsServerConfigBuilder {
        self.server.server_config()
    }

    /// A client configuration that trusts this CA only; set more options, then `build()`.
    pub fn client_config(&self) -> TlsConfigBuilder {
        self.ca.client_config()
    }

    /// Writes the PEM files (see [`Pki::write_to`]) into a fresh temporary directory, removed
    /// when the returned [`PkiFiles`] is dropped.
    pub fn temp_files(&self) -> PkiFiles {
        let dir = TempDir::new("net-tests-pki");
        let files = self.write_to(dir.path()).expect("write the PKI's files");
        PkiFiles {
            _dir: Some(dir),
            ..files
        }
    }

    /// Writes the CA, both chains (leaf then CA) and both keys as PEM files into `dir` (which
    /// must exist) and returns their paths.
    ///
    /// # Errors
    ///
    /// Those of writing the files.
    pub fn write_to(&self, dir: &Path) -> io::Result<PkiFiles> {
        let write = |name: &str, contents: &str| -> io::Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, contents)?;
            Ok(path)
        };
        Ok(PkiFiles {
            ca: write("ca.pem", self.ca.pem())?,
            server_chain: write("server.pem", self.server.chain_pem())?,
            server_key: write("server.key", self.server.key_pem())?,
            client_chain: write("client.pem", self.client.chain_pem())?,
            client_key: write("client.key", self.client.key_pem())?,
            _dir: None,
        })
    }
}

/// Where [`Pki::write_to`] or [`Pki::temp_files`] put the PEM files.
#[derive(Debug)]
pub struct PkiFiles {
    /// The CA certificate (`ca.pem`).
    pub ca: PathBuf,
    /// The server leaf followed by the CA (`server.pem`).
    pub server_chain: PathBuf,
    /// The server's PKCS#8 key (`server.key`).
    pub server_key: PathBuf,
    /// The client leaf followed by the CA (`client.pem`).
    pub client_chain: PathBuf,
    /// The client's PKCS#8 key (`client.key`).
    pub client_key: PathBuf,
    /// The temporary directory of [`Pki::temp_files`], removed on drop.
    _dir: Option<TempDir>,
}

/// A CA that issues leaves.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pem: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new self-signed CA with this common name.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-signed CA");
        let pem = issuer.pem();
        TestCa { issuer, pem }
    }

    /// The CA certificate in PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The CA certificate in DER.
    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A client configuration that trusts this CA only; set more options, then `build()`.
    pub fn client_config(&self) -> TlsConfigBuilder {
        TlsConfig::builder()
            .add_root_certificates_pem(self.pem.as_bytes())
            .expect("the CA's PEM")
    }

    /// A server leaf for `names` (DNS names or IP addresses), valid now; its common name is the
    /// first name.
    pub fn server(&self, names: &[&str]) -> Leaf {
        self.leaf(names, ExtendedKeyUsagePurpose::ServerAuth, false)
    }

    /// A server leaf for `names` whose validity ended in 2001.
    pub fn expired_server(&self, names: &[&str]) -> Leaf {
        self.leaf(names, ExtendedKeyUsagePurpose::ServerAuth, true)
    }

    /// A server leaf, valid now, for [`WRONG_HOST`] only: a client that connects to any of
    /// [`SERVER_NAMES`] must reject it.
    pub fn wrong_host_server(&self) -> Leaf {
        self.server(&[WRONG_HOST])
    }

    /// A client leaf (ClientAuth) with this common name.
    pub fn client(&self, name: &str) -> Leaf {
        self.leaf(&[name], ExtendedKeyUsagePurpose::ClientAuth, false)
    }

    /// A client leaf for `name` whose validity ends `valid_for` from now (to the second).
    pub fn client_expiring_in(&self, name: &str, valid_for: std::time::Duration) -> Leaf {
        let end = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            + valid_for;
        self.leaf_with(&[name], ExtendedKeyUsagePurpose::ClientAuth, |params| {
            params.not_after = rcgen::date_time_ymd(1970, 1, 1) + end;
        })
    }

    fn leaf(&self, names: &[&str], usage: ExtendedKeyUsagePurpose, expired: bool) -> Leaf {
        self.leaf_with(names, usage, |params| {
            if expired {
                params.not_before = rcgen::date_time_ymd(2000, 1, 1);
                params.not_after = rcgen::date_time_ymd(2001, 1, 1);
            }
        })
    }

    fn leaf_with(
        &self,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        validity: impl FnOnce(&mut CertificateParams),
    ) -> Leaf {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf parameters");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        validity(&mut params);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed leaf");
        Leaf {
            cert_pem: cert.pem(),
            chain_pem: format!("{}{}", cert.pem(), self.pem),
            chain_der: vec![cert.der().clone(), self.der()],
            cert_der: cert.der().clone(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }
}

/// One issued certificate, with its chain (the leaf, then its CA) and its key.
#[derive(Clone, Debug)]
pub struct Leaf {
    cert_pem: String,
    chain_pem: String,
    chain_der: Vec<CertificateDer<'static>>,
    cert_der: CertificateDer<'static>,
    key_pem: String,
    key_der: Vec<u8>,
}

impl Leaf {
    /// The leaf certificate alone, in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The leaf certificate followed by its CA's, in PEM.
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The leaf certificate followed by its CA's, in DER (what a peer that was sent the chain
    /// sees as `peer_certificates()`).
    pub fn chain_der(&self) -> &[CertificateDer<'static>] {
        &self.chain_der
    }

    /// The leaf certificate in DER (what a peer's `peer_certificates()[0]` is).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The private key, PKCS#8 in PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The private key, PKCS#8 in DER.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// A server configuration that presents this leaf; set more options, then `build()`.
    pub fn server_config(&self) -> TlsServerConfigBuilder {
        TlsServerConfig::builder()
            .certificate_chain_pem(self.chain_pem.as_bytes())
            .expect("the leaf's chain")
            .private_key_pem(self.key_pem.as_bytes())
            .expect("the leaf's key")
    }

    /// A server configuration that presents this leaf and requires a client certificate
    /// issued by `client_ca` (mutual TLS); set more options, then `build()`.
    pub fn mutual_tls_server_config(&self, client_ca: &TestCa) -> TlsServerConfigBuilder {
        self.server_config()
            .client_auth_required(client_ca.pem().as_bytes())
            .expect("the client CA's PEM")
    }

    /// `config` with this leaf as the certificate for clients that ask for `name` (SNI).
    pub fn sni_certificate(
        &self,
        name: &str,
        config: TlsServerConfigBuilder,
    ) -> TlsServerConfigBuilder {
        config
            .sni_certificate_pem(name, self.chain_pem.as_bytes(), self.key_pem.as_bytes())
            .expect("the leaf's chain and key")
    }

    /// `config` with this leaf as its client certificate (for mutual TLS).
    pub fn client_certificate(&self, config: TlsConfigBuilder) -> TlsConfigBuilder {
        config
            .client_certificate_pem(self.chain_pem.as_bytes(), self.key_pem.as_bytes())
            .expect("the leaf's chain and key")
    }
}
