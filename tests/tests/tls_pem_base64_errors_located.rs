//! A character that cannot be in base64 inside a PEM section (a typo, a line of text pasted
//! into the section): the error named neither the line nor the section, and showed the
//! character as a number (`base64 decode error: InvalidCharacter(33)`), so the one bad
//! certificate of a bundle of many could not be found from it. It names the line and shows
//! the character.

use net_tests::pki::TestCa;
use net_tls::{Error, TlsConfig, TlsServerConfig};

/// The reason of an `Error::Pem` naming `PEM bytes`.
fn pem_reason(result: Result<impl std::fmt::Debug, Error>, what: &str) -> String {
    match result {
        Err(Error::Pem { origin, reason, .. }) if origin == "PEM bytes" => reason,
        other => panic!("{what}: not an Error::Pem naming PEM bytes: {other:?}"),
    }
}

/// `pem` with `bad` put at the start of its `line`-th line (counting from 1).
fn with_at(pem: &str, line: usize, bad: &str) -> String {
    pem.lines()
        .enumerate()
        .map(|(at, text)| {
            if at + 1 == line {
                format!("{bad}{text}\n")
            } else {
                format!("{text}\n")
            }
        })
        .collect()
}

#[test]
fn a_character_that_cannot_be_in_base64_is_named_with_its_line() {
    let cas: Vec<TestCa> = (1..=3).map(|n| TestCa::new(&format!("ca {n}"))).collect();
    let bundle: String = cas.iter().map(TestCa::pem).collect();
    // The third base64 line of the second certificate.
    let line = cas[0].pem().lines().count() + 4;
    for (bad, shown) in [("!", "'!'"), ("\u{7f}", "0x7f"), ("é", "0xc3")] {
        let broken = with_at(&bundle, line, bad);
        let roots = TlsConfig::builder().add_root_certificates_pem(broken.as_bytes());
        let reason = pem_reason(roots, bad);
        assert!(
            reason.contains(&format!("line {line} ")) && reason.contains(shown),
            "{bad:?}: {reason}"
        );
        assert!(!reason.contains("InvalidCharacter"), "{bad:?}: {reason}");
    }

    // A chain, and a key: the same.
    let leaf = cas[0].server(&["localhost"]);
    let chain = with_at(leaf.chain_pem(), 2, "#");
    let server = TlsServerConfig::builder().certificate_chain_pem(chain.as_bytes());
    let reason = pem_reason(server, "a chain");
    assert!(
        reason.contains("line 2 ") && reason.contains("'#'"),
        "{reason}"
    );
    let key = with_at(leaf.key_pem(), 3, "Comment: my key");
    let server = TlsServerConfig::builder().private_key_pem(key.as_bytes());
    let reason = pem_reason(server, "a key");
    assert!(
        reason.contains("line 3 ") && reason.contains("':'"),
        "{reason}"
    );

    // A section the loaders do not read is not decoded: a character there is no error.
    let other = format!("-----BEGIN OTHER-----\n!!!\n-----END OTHER-----\n{bundle}");
    let roots = TlsConfig::builder().add_root_certificates_pem(other.as_bytes());
    assert!(roots.is_ok(), "{roots:?}");
}
