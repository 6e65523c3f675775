//! Configuration mistakes that rustls reports in words meant for other cases: each is still the
//! documented `Error::Config`, and its text says what the caller gave, not what a peer did or
//! what the caller never touched.

use net_tests::pki::Pki;
use net_tls::{Error, TlsConfig, TlsServerConfig, rustls};

/// An empty chain for a client certificate (`client_certificate_der([], key)`) or an SNI
/// certificate (`sni_certificate_der(name, [], key)`) is `Error::Config(NoCertificatesPresented)`,
/// as documented, but its text was rustls's "invalid tls configuration: peer sent no
/// certificates": no peer was there, the caller's chain was empty.
#[test]
fn an_empty_chain_is_not_blamed_on_a_peer() {
    let pki = Pki::generate();
    let client = TlsConfig::builder()
        .client_certificate_der([], pki.client.key_der())
        .build()
        .unwrap_err();
    let sni = TlsServerConfig::builder()
        .sni_certificate_der("localhost", [], pki.server.key_der())
        .unwrap_err();
    for (what, e) in [("a client chain", client), ("an SNI chain", sni)] {
        assert!(
            matches!(e, Error::Config(rustls::Error::NoCertificatesPresented)),
            "{what}: {e:?}"
        );
        let text = e.to_string();
        assert!(
            !text.contains("peer") && text.contains("chain is empty"),
            "{what}: {text}"
        );
    }
}

/// `protocol_versions(&[])` fails `build()` with `Error::Config`, as documented ("no protocol
/// version"), but its text was rustls's "unexpected error: no usable cipher suites
/// configured", of cipher suites the caller never set.
#[test]
fn no_protocol_version_is_named_as_such() {
    let pki = Pki::generate();
    let client = TlsConfig::builder()
        .protocol_versions(&[])
        .build()
        .unwrap_err();
    let server = pki
        .server_config()
        .protocol_versions(&[])
        .build()
        .unwrap_err();
    for (what, e) in [("a client", client), ("a server", server)] {
        assert!(matches!(e, Error::Config(_)), "{what}: {e:?}");
        let text = e.to_string();
        assert!(
            text.contains("no protocol version")
                && !text.contains("cipher suites")
                && !text.contains("unexpected"),
            "{what}: {text}"
        );
    }
}

/// A certificate of the caller's own that rustls refuses is `Error::Config`, as documented,
/// but its text was rustls's, for a peer's: "invalid peer certificate: ..." for a root or a
/// client CA given in DER that is not a certificate, or for an SNI certificate that does not
/// cover its name; and a key that does not match its certificate (a chain given in the wrong
/// order, a key file of another certificate) was "keys may not be consistent: KeyMismatch".
#[test]
fn the_callers_own_certificates_and_keys_are_not_called_a_peers() {
    let pki = Pki::generate();
    let not_a_certificate = || net_tls::CertificateDer::from(b"not a certificate".to_vec());
    let root = TlsConfig::builder()
        .add_root_certificate(not_a_certificate())
        .build()
        .unwrap_err();
    let client_ca = TlsServerConfig::builder()
        .client_auth_der([not_a_certificate()], true)
        .unwrap_err();
    let other = pki.ca.server(&["other.test"]);
    let sni = TlsServerConfig::builder()
        .sni_certificate_der("localhost", other.chain_der().to_vec(), other.key_der())
        .unwrap_err();
    for (what, e) in [
        ("a root", root),
        ("a client CA", client_ca),
        ("an SNI certificate", sni),
    ] {
        assert!(
            matches!(e, Error::Config(rustls::Error::InvalidCertificate(_))),
            "{what}: {e:?}"
        );
        let text = e.to_string();
        assert!(
            !text.contains("peer") && text.contains("invalid certificate"),
            "{what}: {text}"
        );
    }

    let reversed: Vec<_> = pki.server.chain_der().iter().rev().cloned().collect();
    let server = TlsServerConfig::builder()
        .certificate_chain_der(reversed)
        .private_key_der(pki.server.key_der())
        .build()
        .unwrap_err();
    let client = TlsConfig::builder()
        .client_certificate_der(pki.client.chain_der().to_vec(), pki.server.key_der())
        .build()
        .unwrap_err();
    for (what, e) in [
        ("a reversed server chain", server),
        ("another's key", client),
    ] {
        assert!(
            matches!(
                e,
                Error::Config(rustls::Error::InconsistentKeys(
                    rustls::InconsistentKeys::KeyMismatch
                ))
            ),
            "{what}: {e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains("does not match") && text.contains("first"),
            "{what}: {text}"
        );
    }
}

/// A key the crypto provider does not sign with (Ed448, which neither `ring` nor `aws-lc-rs`
/// does) is `Error::Pem` saying which keys it takes, but its reason began with rustls's
/// "unexpected error: failed to parse private key ...": an expected refusal.
#[test]
fn a_key_the_provider_does_not_sign_with_is_no_unexpected_error() {
    let dir = net_tests::TempDir::new("tls-ed448");
    let path = dir.join("ed448.pem");
    let made = net_tests::harness::Process::run(
        "openssl",
        [
            "genpkey".as_ref(),
            "-algorithm".as_ref(),
            "ed448".as_ref(),
            "-out".as_ref(),
            path.as_os_str(),
        ],
    );
    assert!(made.status.success(), "{made:?}");
    let refused = TlsServerConfig::builder()
        .private_key_pem_file(&path)
        .unwrap_err();
    match &refused {
        Error::Pem { reason, .. } => assert!(
            reason.contains("cannot be used") && !reason.contains("unexpected"),
            "{reason}"
        ),
        other => panic!("not an Error::Pem: {other:?}"),
    }
}
