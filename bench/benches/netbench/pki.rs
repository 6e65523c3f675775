//! The benchmark's certificates: the test kit's PKI (`net_tests::pki`: a CA and a server leaf
//! for `localhost`, 127.0.0.1 and ::1, made with rcgen at start-up), written to PEM files that
//! both TLS servers (ours and the baseline) load, so both present the same certificate chain and
//! key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Where the PEM files of one run live.
#[derive(Debug, Clone)]
pub(crate) struct Pki {
    pub(crate) ca: PathBuf,
    pub(crate) chain: PathBuf,
    pub(crate) key: PathBuf,
}

impl Pki {
    /// Makes the kit's CA and server leaf (ECDSA P-256) and writes them to `dir`.
    pub(crate) fn create(dir: &Path) -> Result<Pki> {
        std::fs::create_dir_all(dir)?;
        let files = net_tests::pki::Pki::generate()
            .write_to(dir)
            .with_context(|| format!("writing the certificates to {}", dir.display()))?;
        Ok(Pki {
            ca: files.ca,
            chain: files.server_chain,
            key: files.server_key,
        })
    }
}

/// net-tls's crypto provider, passed explicitly everywhere (as net-tls does), so that both
/// sides of every TLS scenario use the same one.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    net_tls::crypto_provider()
}

/// The load generator's client configuration: trusts the CA, no session resumption (every
/// handshake is a full one).
pub(crate) fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).context("reading the CA")? {
        roots.add(cert?)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// The baseline server's configuration, as a tokio-rustls user writes it.
pub(crate) fn raw_server_config(chain: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(chain)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}
