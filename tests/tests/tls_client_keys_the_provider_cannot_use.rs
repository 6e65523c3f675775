//! A client certificate whose key the crypto provider cannot sign with, given in PEM or DER.

use net_tests::TempDir;
use net_tests::harness::openssl;
use net_tls::rustls::pki_types::pem::PemObject;
use net_tls::{CertificateDer, Error, PrivateKeyDer, TlsConfig};

/// A client certificate with a 1,024-bit RSA key (which neither `ring` nor `aws-lc-rs` signs
/// with) is refused: from PEM by `client_certificate_pem`, `Error::Pem` saying which keys are
/// taken; from DER by `build()`, `Error::Config`. The DER setter's docs named only a key that
/// does not match its leaf and an empty chain, the PEM one only unusable PEM and an encrypted
/// key.
#[test]
fn a_client_key_the_provider_cannot_sign_with_is_refused_from_pem_and_der() {
    let dir = TempDir::new("tls-client-rsa1024");
    openssl(
        dir.path(),
        &[
            "req",
            "-x509",
            "-nodes",
            "-newkey",
            "rsa:1024",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-subj",
            "/CN=client.test",
            "-days",
            "2",
        ],
    );
    let cert = std::fs::read(dir.join("cert.pem")).unwrap();
    let key = std::fs::read(dir.join("key.pem")).unwrap();

    let from_pem = TlsConfig::builder()
        .client_certificate_pem(&cert, &key)
        .unwrap_err();
    match &from_pem {
        Error::Pem { reason, .. } => assert!(reason.contains("cannot be used"), "{reason}"),
        other => panic!("not an Error::Pem: {other:?}"),
    }

    let cert = CertificateDer::from_pem_slice(&cert).unwrap();
    let key = PrivateKeyDer::from_pem_slice(&key).unwrap();
    let from_der = TlsConfig::builder()
        .client_certificate_der([cert], key)
        .build()
        .unwrap_err();
    assert!(matches!(from_der, Error::Config(_)), "{from_der:?}");
    assert_eq!(from_der.kind(), std::io::ErrorKind::InvalidInput);
}
