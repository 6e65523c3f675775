//! What the fuzz targets in `fuzz/` (`cargo xtask fuzz`) found, each as a regular test with
//! the input that showed it.

use net_tests::pki::TestCa;
use net_tls::{Error, TlsConfig, TlsServerConfig};

/// `pem` with its certificates under `label`, the BEGIN line ending in `begin_end` (the five
/// dashes, and whatever the parser also takes after or among them).
fn relabelled(pem: &str, label: &str, begin_end: &str) -> String {
    pem.replace(
        "-----BEGIN CERTIFICATE-----",
        &format!("-----BEGIN {label}{begin_end}"),
    )
    .replace(
        "-----END CERTIFICATE-----",
        &format!("-----END {label}-----"),
    )
}

/// A change to a whole PEM text (its line endings).
type Reshape = fn(String) -> String;

/// The reason of an `Error::Pem` for PEM bytes.
fn pem_reason(result: Result<impl std::fmt::Debug, Error>, what: &str) -> String {
    match result {
        Err(Error::Pem { origin, reason, .. }) if origin == "PEM bytes" => reason,
        other => panic!("{what}: not an Error::Pem naming PEM bytes: {other:?}"),
    }
}

/// The PEM parser (rustls-pki-types) ends a line at a CR as at an LF, and reads a BEGIN line
/// whose five closing dashes have spaces after or among them (`-----BEGIN X--- --`). A
/// certificate under `TRUSTED CERTIFICATE` or `X509 CERTIFICATE`, which the parser skips, is
/// refused wherever the parser sees its BEGIN line; before, in a file with CR line endings, or
/// with such dashes, the check for these labels (which read lines ended by LF only, and wanted
/// the dashes together) missed it, and a CA bundle loaded without that CA, as the docs say it
/// never does. Found by the `pem` fuzz target (`"-----BEGIN TRUSTED CERTIFICATE----- \r..."`,
/// refused with LF line endings, went through to the parser with CRs).
#[test]
fn a_certificate_under_another_label_is_refused_whatever_the_line_endings() {
    let first = TestCa::new("first ca");
    let second = TestCa::new("second ca");
    let third = TestCa::new("third ca");
    let leaf = first.server(&["localhost"]);
    let line = first.pem().lines().count() + 1;
    let shapes: [(&str, &str, Reshape); 4] = [
        ("CR line endings", "-----", |pem| pem.replace('\n', "\r")),
        ("CRLF line endings", "-----", |pem| {
            pem.replace('\n', "\r\n")
        }),
        ("dashes with a space among them", "--- --", |pem| pem),
        (
            "dashes with spaces among and after them",
            "---- -  ",
            |pem| pem,
        ),
    ];
    for label in ["TRUSTED CERTIFICATE", "X509 CERTIFICATE"] {
        for (shape, begin_end, reshape) in shapes {
            let what = format!("{label}, {shape}");
            let bundle = reshape(format!(
                "{}{}{}",
                first.pem(),
                relabelled(second.pem(), label, begin_end),
                third.pem()
            ));
            let roots = TlsConfig::builder().add_root_certificates_pem(bundle.as_bytes());
            let reason = pem_reason(roots, &what);
            assert!(
                reason.contains(&format!("line {line} begins a {label} section")),
                "{what}: {reason}"
            );
            let client_cas = TlsServerConfig::builder().client_auth_required(bundle.as_bytes());
            let reason = pem_reason(client_cas, &what);
            assert!(reason.contains(label), "{what}: {reason}");
            let chain = reshape(format!(
                "{}{}",
                leaf.cert_pem(),
                relabelled(first.pem(), label, begin_end)
            ));
            let server = TlsServerConfig::builder().certificate_chain_pem(chain.as_bytes());
            let reason = pem_reason(server, &what);
            assert!(reason.contains(label), "{what}: {reason}");
        }
    }
}
