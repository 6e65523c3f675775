//! PEM files saved as UTF-16, as Windows PowerShell 5's `>` and `Out-File` write them (a byte
//! order mark, then two bytes a character): the PEM parser finds no BEGIN line in them, and
//! the error said "no CERTIFICATE section found" / "no private key found" of a file that shows
//! one in any editor. The reason says the file is UTF-16, and what to do.

use net_tests::TempDir;
use net_tests::pki::TestCa;
use net_tls::{Error, TlsConfig, TlsServerConfig};

/// `text` in UTF-16, little-endian (PowerShell's "Unicode") or big-endian, after its byte
/// order mark.
fn utf16(text: &str, little_endian: bool) -> Vec<u8> {
    std::iter::once('\u{feff}' as u16)
        .chain(text.encode_utf16())
        .flat_map(|unit| {
            if little_endian {
                unit.to_le_bytes()
            } else {
                unit.to_be_bytes()
            }
        })
        .collect()
}

/// The reason of an `Error::Pem` naming `origin`.
fn pem_reason(result: Result<impl std::fmt::Debug, Error>, origin: &str, what: &str) -> String {
    match result {
        Err(Error::Pem {
            origin: named,
            reason,
            ..
        }) if named.ends_with(origin) => reason,
        other => panic!("{what}: not an Error::Pem naming {origin}: {other:?}"),
    }
}

#[test]
fn a_pem_file_in_utf16_is_refused_saying_so() {
    let ca = TestCa::new("utf16 ca");
    let leaf = ca.server(&["localhost"]);
    let dir = TempDir::new("tls-pem-utf16");
    for little_endian in [true, false] {
        let chain = dir.join("chain.pem");
        std::fs::write(&chain, utf16(leaf.chain_pem(), little_endian)).unwrap();
        let key = dir.join("key.pem");
        std::fs::write(&key, utf16(leaf.key_pem(), little_endian)).unwrap();
        let roots = dir.join("roots.pem");
        std::fs::write(&roots, utf16(ca.pem(), little_endian)).unwrap();
        for (what, result) in [
            (
                "a chain",
                pem_reason(
                    TlsServerConfig::builder().certificate_chain_pem_file(&chain),
                    "chain.pem",
                    "a chain",
                ),
            ),
            (
                "a key",
                pem_reason(
                    TlsServerConfig::builder().private_key_pem_file(&key),
                    "key.pem",
                    "a key",
                ),
            ),
            (
                "roots",
                pem_reason(
                    TlsConfig::builder().add_root_certificates_pem_file(&roots),
                    "roots.pem",
                    "roots",
                ),
            ),
        ] {
            assert!(
                result.contains("UTF-16") && !result.contains("found"),
                "{what}, little-endian {little_endian}: {result}"
            );
        }
    }
}
