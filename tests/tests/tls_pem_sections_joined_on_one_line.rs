//! PEM files whose BEGIN line does not start a line of its own: two files joined by `cat` where
//! the first lacks its last newline (`-----END CERTIFICATE----------BEGIN CERTIFICATE-----`),
//! a byte order mark in the middle of a file (two files saved with one, then joined), a section
//! indented as it was in a YAML file. The PEM parser takes a BEGIN line only at the start of a
//! line, so it skipped such a section, without an error when another came before it: a chain
//! lost the certificate after its leaf, a CA bundle a CA, and a key after a certificate was "not found".
//! Each is refused with `Error::Pem` naming the input and the line, as OpenSSL refuses the
//! joined file ("bad end line").

use std::path::Path;

use net_tests::TempDir;
use net_tests::harness::Process;
use net_tests::pki::TestCa;
use net_tls::{Error, TlsConfig, TlsServerConfig};

/// `pem` without its last newline, as an editor or `echo -n` leaves a file.
fn without_last_newline(pem: &str) -> &str {
    pem.strip_suffix('\n').unwrap_or(pem)
}

/// The reason of an `Error::Pem` that names `origin`; `what` says what was refused.
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

/// Asserts that `reason` names `line` and tells what is wrong.
fn assert_names_the_line(reason: &str, line: usize, what: &str) {
    assert!(
        reason.contains(&format!("line {line} ")) && reason.contains("its own line"),
        "{what}: {reason}"
    );
}

/// Whether OpenSSL reads every certificate of `file` (`openssl crl2pkcs7 -certfile`).
fn openssl_reads_the_certificates_of(file: &Path) -> bool {
    let finished = Process::run(
        "openssl",
        [
            "crl2pkcs7".as_ref(),
            "-nocrl".as_ref(),
            "-certfile".as_ref(),
            file.as_os_str(),
        ],
    );
    finished.status.success()
}

/// A chain and a CA bundle joined by `cat` from files whose first lacked its last newline: the
/// second certificate's BEGIN line runs on from the first's END line. The chain was taken with
/// its leaf alone (the CA or intermediate after it lost: every client that needs it failed
/// with an unknown issuer), the bundle with its first CA alone (the servers of the second then failed with an
/// unknown issuer), as the server's chain, an SNI chain, a client's chain, the client's roots
/// and the server's client CAs alike, from bytes and from files. Each is refused, naming the
/// line, as OpenSSL refuses the file.
#[test]
fn certificates_joined_without_a_newline_are_refused_not_dropped() {
    let root = TestCa::new("joined root");
    let other = TestCa::new("joined other root");
    let leaf = root.server(&["localhost"]);
    let dir = TempDir::new("tls-pem-joined");
    let line = leaf.cert_pem().lines().count();

    let chain = format!("{}{}", without_last_newline(leaf.cert_pem()), root.pem());
    let chain_file = dir.join("fullchain.pem");
    std::fs::write(&chain_file, &chain).unwrap();
    assert!(
        !openssl_reads_the_certificates_of(&chain_file),
        "OpenSSL reads the joined chain"
    );
    let server = TlsServerConfig::builder().certificate_chain_pem_file(&chain_file);
    let reason = pem_reason(server, "fullchain.pem", "a server chain file");
    assert_names_the_line(&reason, line, "a server chain file");
    let server = TlsServerConfig::builder().certificate_chain_pem(chain.as_bytes());
    let reason = pem_reason(server, "PEM bytes", "a server chain");
    assert_names_the_line(&reason, line, "a server chain");
    let sni = TlsServerConfig::builder().sni_certificate_pem(
        "localhost",
        chain.as_bytes(),
        leaf.key_pem().as_bytes(),
    );
    let reason = pem_reason(sni, "PEM bytes", "an SNI chain");
    assert_names_the_line(&reason, line, "an SNI chain");
    let client =
        TlsConfig::builder().client_certificate_pem(chain.as_bytes(), leaf.key_pem().as_bytes());
    let reason = pem_reason(client, "PEM bytes", "a client chain");
    assert_names_the_line(&reason, line, "a client chain");

    let line = root.pem().lines().count();
    let bundle = format!("{}{}", without_last_newline(root.pem()), other.pem());
    let bundle_file = dir.join("bundle.pem");
    std::fs::write(&bundle_file, &bundle).unwrap();
    assert!(
        !openssl_reads_the_certificates_of(&bundle_file),
        "OpenSSL reads the joined bundle"
    );
    let roots = TlsConfig::builder().add_root_certificates_pem_file(&bundle_file);
    let reason = pem_reason(roots, "bundle.pem", "a roots file");
    assert_names_the_line(&reason, line, "a roots file");
    let roots = TlsConfig::builder().add_root_certificates_pem(bundle.as_bytes());
    let reason = pem_reason(roots, "PEM bytes", "roots");
    assert_names_the_line(&reason, line, "roots");
    let required = TlsServerConfig::builder().client_auth_required(bundle.as_bytes());
    let reason = pem_reason(required, "PEM bytes", "required client CAs");
    assert_names_the_line(&reason, line, "required client CAs");
    let optional = TlsServerConfig::builder().client_auth_optional(bundle.as_bytes());
    let reason = pem_reason(optional, "PEM bytes", "optional client CAs");
    assert_names_the_line(&reason, line, "optional client CAs");

    // The same files with their newline: both certificates, each.
    let whole = format!("{}{}", leaf.cert_pem(), root.pem());
    std::fs::write(&chain_file, &whole).unwrap();
    assert!(openssl_reads_the_certificates_of(&chain_file));
    let built = TlsServerConfig::builder()
        .certificate_chain_pem_file(&chain_file)
        .and_then(|b| b.private_key_pem(leaf.key_pem().as_bytes()))
        .and_then(|b| b.build());
    assert!(built.is_ok(), "{built:?}");
}

/// A combined file (a certificate, then its key, as HAProxy and others take them) whose
/// certificate lacked its last newline when the key was appended: `private_key_pem_file` said
/// "no private key found" of a file that plainly has one. It names the joined line instead.
#[test]
fn a_key_joined_to_a_certificate_is_not_reported_missing() {
    let root = TestCa::new("combined root");
    let leaf = root.server(&["localhost"]);
    let dir = TempDir::new("tls-pem-joined-key");
    let combined = format!(
        "{}{}",
        without_last_newline(leaf.cert_pem()),
        leaf.key_pem()
    );
    let file = dir.join("combined.pem");
    std::fs::write(&file, &combined).unwrap();
    let key = TlsServerConfig::builder().private_key_pem_file(&file);
    let reason = pem_reason(key, "combined.pem", "a combined file's key");
    assert_names_the_line(
        &reason,
        leaf.cert_pem().lines().count(),
        "a combined file's key",
    );
    assert!(!reason.contains("no private key"), "{reason}");
}

/// A BEGIN line after other text on its line: a byte order mark (two files, each saved with
/// one by a Windows tool, then joined: only the file's first is skipped) or the indentation of
/// a YAML block. The section was skipped, the one before it kept. Both are refused, naming the
/// line; files that only look alike (text that is not a BEGIN line, CRLF line ends, blanks
/// after an END line) still load.
#[test]
fn a_begin_line_after_other_text_is_refused_not_skipped() {
    let first = TestCa::new("first text root");
    let second = TestCa::new("second text root");
    let line = first.pem().lines().count() + 1;
    let indented: String = second
        .pem()
        .lines()
        .map(|text| format!("  {text}\n"))
        .collect();
    for (what, bundle) in [
        (
            "a byte order mark",
            format!("\u{feff}{}\u{feff}{}", first.pem(), second.pem()),
        ),
        ("an indented section", format!("{}{indented}", first.pem())),
    ] {
        let roots = TlsConfig::builder().add_root_certificates_pem(bundle.as_bytes());
        let reason = pem_reason(roots, "PEM bytes", what);
        assert_names_the_line(&reason, line, what);
    }
    for (what, bundle) in [
        (
            "text around the sections",
            format!(
                "subject=CN = first\n{}note: -----END\n{}",
                first.pem(),
                second.pem()
            ),
        ),
        (
            "CRLF line ends",
            format!("{}{}", first.pem(), second.pem()).replace('\n', "\r\n"),
        ),
        (
            "blanks after an END line",
            format!(
                "{}{}",
                first.pem().replace(
                    "-----END CERTIFICATE-----\n",
                    "-----END CERTIFICATE-----  \n"
                ),
                second.pem()
            ),
        ),
    ] {
        let roots = TlsConfig::builder().add_root_certificates_pem(bundle.as_bytes());
        assert!(roots.is_ok(), "{what}: {roots:?}");
    }
}
