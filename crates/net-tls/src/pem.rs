//! PEM parsing of certificates and private keys, with errors that name their origin.

use std::path::Path;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{Error, Result};

/// Where PEM input came from, for error messages.
pub(crate) const BYTES: &str = "PEM bytes";

/// Reads a PEM file.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Pem {
        origin: path.display().to_string(),
        reason: format!("cannot read: {e}"),
    })
}

/// Every certificate in `pem`, in order; at least one.
pub(crate) fn certificates(pem: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(origin, e))?;
    if certs.is_empty() {
        return Err(Error::Pem {
            origin: origin.into(),
            reason: "no CERTIFICATE section found".into(),
        });
    }
    Ok(certs)
}

/// Adds every certificate in `pem` to `roots` as a trust anchor.
pub(crate) fn add_roots(roots: &mut rustls::RootCertStore, pem: &[u8], origin: &str) -> Result<()> {
    for cert in certificates(pem, origin)? {
        roots.add(cert).map_err(Error::Config)?;
    }
    Ok(())
}

/// The first private key in `pem`: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
pub(crate) fn private_key(pem: &[u8], origin: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        pem::Error::NoItemsFound => Error::Pem {
            origin: origin.into(),
            reason: "no private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY section) found"
                .into(),
        },
        e => bad(origin, e),
    })
}

fn bad(origin: &str, e: pem::Error) -> Error {
    Error::Pem {
        origin: origin.into(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_garbage_pem_are_errors_naming_the_origin() {
        for input in [&b""[..], b"hello", b"-----BEGIN CERTIFICATE-----\nAAAA"] {
            let e = certificates(input, "ca.pem").unwrap_err();
            assert!(
                matches!(&e, Error::Pem { origin, .. } if origin == "ca.pem"),
                "{e}"
            );
            assert!(private_key(input, "key.pem").is_err());
        }
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = read_file(Path::new("/nonexistent/cert.pem")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/cert.pem"), "{e}");
    }
}
