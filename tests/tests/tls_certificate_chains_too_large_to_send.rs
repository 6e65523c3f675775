//! A certificate chain larger than one handshake message can carry (a TLS Certificate message
//! says its length in three bytes: 16 MiB) is refused where it is given, with
//! `Error::Config`: rustls would take it, and the first handshake that sends it would fail its
//! length check in a debug build (a panic in a destructor during the unwinding of another:
//! the process aborts), or send a length that wrapped in a release build.

use net_tests::pki::Pki;
use net_tls::{CertificateDer, Error, TlsConfig, TlsServerConfig, rustls};

/// One DER SEQUENCE of `len` content bytes: a whole DER value, as a chain's certificates
/// after the leaf must be, and none that any handshake message can carry.
fn too_large(len: usize) -> CertificateDer<'static> {
    let mut der = vec![0x30, 0x84];
    der.extend_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
    der.resize(6 + len, 0);
    CertificateDer::from(der)
}

fn assert_too_large(what: &str, result: Result<impl std::fmt::Debug, Error>) {
    let e = result.expect_err(what);
    assert!(
        matches!(e, Error::Config(rustls::Error::General(_))),
        "{what}: {e:?}"
    );
    let text = e.to_string();
    assert!(text.contains("certificate chain"), "{what}: {text}");
}

#[test]
fn chains_too_large_for_a_handshake_are_refused_when_given() {
    let pki = Pki::generate();
    let huge = too_large(17 << 20);
    let chain = || [pki.server.cert_der().clone(), huge.clone()];

    let server = TlsServerConfig::builder()
        .certificate_chain_der(chain())
        .private_key_der(pki.server.key_der())
        .build();
    assert_too_large("the server's chain", server);

    let sni = pki
        .server_config()
        .sni_certificate_der("localhost", chain(), pki.server.key_der());
    assert_too_large("an SNI chain", sni.map(|_| ()));

    let client = TlsConfig::builder()
        .client_certificate_der(
            [pki.client.cert_der().clone(), huge.clone()],
            pki.client.key_der(),
        )
        .build();
    assert_too_large("a client chain", client);

    // A large chain that fits is taken, as before.
    let fits = TlsServerConfig::builder()
        .certificate_chain_der([pki.server.cert_der().clone(), too_large(1 << 20)])
        .private_key_der(pki.server.key_der())
        .build();
    assert!(fits.is_ok(), "{fits:?}");
}
