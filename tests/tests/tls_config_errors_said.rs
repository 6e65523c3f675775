//! What a configuration mistake says: the messages of `net_tls::Error`'s configuration
//! variants that no test had rendered (found by a coverage run: their `Display` arms, and
//! `ClientVerifier`'s `source`, ran 0 times). Each is made through the builders, as a user
//! makes it, and its text names what was wrong, lower-case, on one line.

use std::error::Error as _;

use net_tests::pki::TestCa;
use net_tls::{Error, TlsConfig, TlsServerConfig};

/// One line, lower-case first, as the crate's other messages.
fn said(e: &Error) -> String {
    let text = e.to_string();
    assert!(!text.contains('\n'), "{text}");
    assert!(text.starts_with(|c: char| c.is_ascii_lowercase()), "{text}");
    text
}

/// A server name that is neither a DNS name nor an IP address: named, escaped (a control
/// character in it does not reach a log or terminal as itself).
#[test]
fn an_invalid_server_name_is_named_escaped() {
    let e = TlsConfig::builder()
        .server_name("bad name\u{1b}[2J")
        .build()
        .unwrap_err();
    assert!(matches!(&e, Error::InvalidServerName { name, .. } if name == "bad name\u{1b}[2J"));
    let text = said(&e);
    assert!(text.contains(r#""bad name\u{1b}[2J""#), "{text}");
    assert!(!text.contains('\u{1b}'), "{text}");
}

/// An SNI certificate for a name no client sends (a wildcard): named, and why.
#[test]
fn an_sni_name_no_client_sends_is_named() {
    let ca = TestCa::new("errors said CA");
    let leaf = ca.server(&["localhost"]);
    let e = TlsServerConfig::builder()
        .sni_certificate_pem(
            "*.example.com",
            leaf.chain_pem().as_bytes(),
            leaf.key_pem().as_bytes(),
        )
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(&e, Error::InvalidSniName { name, .. } if name == "*.example.com"));
    let text = said(&e);
    assert!(text.contains(r#""*.example.com""#), "{text}");
    assert!(text.contains("without wildcard"), "{text}");
}

/// An ALPN name of 256 bytes, and an empty one: the length said, with the range allowed
/// (the name itself is not shown: it may be 256 bytes of anything).
#[test]
fn an_alpn_name_of_a_wrong_length_says_its_length() {
    for (name, length) in [(vec![b'h'; 256], 256), (Vec::new(), 0)] {
        let e = TlsConfig::builder()
            .alpn_protocols(&[b"h2".to_vec(), name.clone()])
            .build()
            .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidAlpnProtocol { protocol, .. } if *protocol == name),
            "{e:?}"
        );
        assert_eq!(
            said(&e),
            format!("alpn protocol name of {length} bytes (1 to 255 allowed)")
        );
    }
}

/// A server configuration with a chain and no key.
#[test]
fn a_server_without_a_private_key_says_so() {
    let ca = TestCa::new("errors said CA");
    let leaf = ca.server(&["localhost"]);
    let e = TlsServerConfig::builder()
        .certificate_chain_pem(leaf.chain_pem().as_bytes())
        .unwrap()
        .build()
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e, Error::MissingPrivateKey), "{e:?}");
    assert_eq!(said(&e), "no private key was given");
    assert!(e.source().is_none());
}

/// Client authentication with no CA to verify against (an empty DER list), required or
/// optional: the server configuration is refused, `ClientVerifier`, its source rustls's
/// reason (no root anchors), not a server that would take or refuse every client.
#[test]
fn client_authentication_without_a_ca_is_refused_with_its_cause() {
    let ca = TestCa::new("errors said CA");
    let leaf = ca.server(&["localhost"]);
    for required in [true, false] {
        let e = TlsServerConfig::builder()
            .certificate_chain_pem(leaf.chain_pem().as_bytes())
            .unwrap()
            .private_key_pem(leaf.key_pem().as_bytes())
            .unwrap()
            .client_auth_der(Vec::new(), required)
            .unwrap()
            .build()
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(e, Error::ClientVerifier(_)), "{e:?}");
        assert_eq!(said(&e), "cannot verify client certificates");
        let cause = e
            .source()
            .expect("the verifier builder's error")
            .to_string();
        assert!(cause.to_lowercase().contains("root"), "{cause}");
    }
}
