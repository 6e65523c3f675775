//! A private key whose PEM lost its newlines (put on one line, or with its newlines written as
//! `\n`, as an environment variable or a configuration value often holds it) is refused with
//! an error that names the mistake without quoting the key: an error's text goes to logs and
//! terminals, and a key is the one secret a server holds. Before, the reason quoted the
//! line after the BEGIN marker, up to 64 bytes: for an Ed25519 key in PKCS#8, the 16 bytes of
//! its header and then 20 of the 32 bytes of its secret seed ("no \"-----END PRIVATE
//! KEY-----MFECAQEwBQYDK2VwBCIEI...\" line"). The same for a key inside a file of certificates
//! (one file holding both, as some servers keep them) and a client's key.

use net_tests::pki::TestCa;
use rcgen::KeyPair;

/// Each way a PEM loses its newlines, applied to `pem`.
fn without_newlines(pem: &str) -> Vec<(&'static str, String)> {
    vec![
        ("on one line", pem.replace('\n', "")),
        ("on one line, spaced", pem.replace('\n', " ")),
        ("with its newlines as \\n", pem.replace('\n', "\\n")),
        (
            "on one line after a name (an environment file's)",
            format!("KEY={}", pem.replace('\n', "")),
        ),
    ]
}

/// The base64 characters of a key's PKCS#8 header, before its first secret byte (Ed25519's
/// header, the shortest, is 16 bytes: 21 characters and a third).
const HEADER: usize = 21;

/// Panics if the text of `e` (its `Display` and its `Debug`) holds 8 characters in a row of
/// the base64 of `pem`'s key past its header.
fn assert_quotes_no_key(e: &net_tls::Error, pem: &str, case: &str) {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let shown = format!("{e} {e:?}");
    let quoted: Vec<&str> = (HEADER..body.len() - 8)
        .map(|i| &body[i..i + 8])
        .filter(|w| shown.contains(w))
        .collect();
    assert!(
        quoted.is_empty(),
        "{case}: the error quotes the key ({} windows of 8 characters): {e}",
        quoted.len()
    );
    assert!(
        matches!(e, net_tls::Error::Pem { .. }),
        "{case}: not a PEM error: {e:?}"
    );
}

/// An Ed25519 key (its secret seed right after a 16-byte header) and a P-256 key.
fn keys() -> Vec<(&'static str, String)> {
    vec![
        (
            "Ed25519",
            KeyPair::generate_for(&rcgen::PKCS_ED25519)
                .unwrap()
                .serialize_pem(),
        ),
        (
            "P-256",
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .unwrap()
                .serialize_pem(),
        ),
    ]
}

#[test]
fn a_server_key_without_its_newlines_is_refused_without_being_quoted() {
    for (kind, pem) in keys() {
        for (shape, text) in without_newlines(&pem) {
            let e = net_tls::TlsServerConfig::builder()
                .private_key_pem(text.as_bytes())
                .expect_err("a key without its newlines");
            assert_quotes_no_key(&e, &pem, &format!("{kind} key {shape}"));
        }
    }
}

#[test]
fn a_key_without_its_newlines_in_a_file_of_certificates_is_not_quoted() {
    let ca = TestCa::new("pem quotes ca");
    let leaf = ca.server(&["localhost"]);
    for (kind, pem) in keys() {
        for (shape, text) in without_newlines(&pem) {
            let both = format!("{}{text}\n", leaf.chain_pem());
            let e = net_tls::TlsServerConfig::builder()
                .certificate_chain_pem(both.as_bytes())
                .expect_err("a chain with a broken section");
            assert_quotes_no_key(&e, &pem, &format!("{kind} key {shape} after a chain"));
        }
    }
}

#[test]
fn a_client_key_without_its_newlines_is_refused_without_being_quoted() {
    let ca = TestCa::new("pem quotes ca");
    let leaf = ca.server(&["localhost"]);
    for (kind, pem) in keys() {
        for (shape, text) in without_newlines(&pem) {
            let e = ca
                .client_config()
                .client_certificate_pem(leaf.chain_pem().as_bytes(), text.as_bytes())
                .expect_err("a client key without its newlines");
            assert_quotes_no_key(&e, &pem, &format!("client's {kind} key {shape}"));
        }
    }
}
