//! A server configuration built with an empty certificate chain (`certificate_chain_der([])`)
//! fails with `Error::MissingCertificateChain`, as the builder's docs say; its `Display` text
//! says the chain given was empty, not that none was given.

use net_tests::pki::Pki;
use net_tls::{Error, TlsServerConfig};

#[test]
fn an_empty_chain_given_is_not_told_none_was_given() {
    let pki = Pki::generate();
    let e = TlsServerConfig::builder()
        .certificate_chain_der([])
        .private_key_der(pki.server.key_der())
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::MissingCertificateChain), "{e:?}");
    let shown = e.to_string();
    assert!(
        shown.contains("empty"),
        "an empty chain was given, and the error says {shown:?}"
    );
    let none = TlsServerConfig::builder()
        .private_key_der(pki.server.key_der())
        .build()
        .unwrap_err();
    assert!(matches!(none, Error::MissingCertificateChain), "{none:?}");
    assert!(none.to_string().contains("no certificate chain"), "{none}");
}
