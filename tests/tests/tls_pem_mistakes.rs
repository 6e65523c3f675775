//! PEM files as people get them wrong: a certificate after the leaf cut short or run together
//! with the next, a byte order mark before the first section, a certificate under a label
//! OpenSSL also reads. Each is refused with a typed error or read as the same file without the
//! mistake, never half-accepted.

use net_tests::TempDir;
use net_tests::pki::TestCa;
use net_tests::tls::{TlsLineServer, connect};
use net_tests::within;
use net_tls::{Error, TlsConfig, TlsServerConfig};

/// `pem` with the `line`-th base64 line (counting from 1) of its `section`-th PEM section
/// (counting from 1) left out, as a copy and paste that lost a line leaves it.
fn without_line(pem: &str, section: usize, line: usize) -> String {
    let (mut at_section, mut at_line) = (0, 0);
    let mut kept = Vec::new();
    for text in pem.lines() {
        if text.starts_with("-----BEGIN ") {
            at_section += 1;
            at_line = 0;
        } else if !text.starts_with("-----") {
            at_line += 1;
            if at_section == section && at_line == line {
                continue;
            }
        }
        kept.push(text);
    }
    kept.join("\n") + "\n"
}

/// `pem` with the END line of its `section`-th section (counting from 1) left out.
fn without_end(pem: &str, section: usize) -> String {
    let mut at_section = 0;
    let mut kept = Vec::new();
    for text in pem.lines() {
        if text.starts_with("-----END ") {
            at_section += 1;
            if at_section == section {
                continue;
            }
        }
        kept.push(text);
    }
    kept.join("\n") + "\n"
}

/// A CA whose certificate's DER is a multiple of 3 bytes long, so that its base64 ends without
/// `=` padding: one whose END line is missing runs on into the next section's base64, which
/// then decodes as one body, without a base64 error. (One in three is; 64 tries.)
fn ca_without_padding() -> TestCa {
    for _ in 0..64 {
        let ca = TestCa::new("audit ca");
        if ca.der().len().is_multiple_of(3) {
            return ca;
        }
    }
    panic!("no CA certificate of a length divisible by 3 in 64 tries");
}

/// The reason of an `Error::Pem` that names `origin`.
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

/// A certificate chain whose second certificate (an intermediate or the CA) is broken at the
/// PEM level, while the leaf is whole: a base64 line lost in the middle of it (the DER is cut
/// short), or its END line missing, so that its base64 runs on into the next certificate's
/// (two certificates decoded as one). Both were taken by `certificate_chain_pem` and
/// `build()`: only the leaf is parsed. The server then sent the broken certificate to every
/// client: rustls's client, which found its trust anchor without it, got through, but
/// `openssl s_client` (OpenSSL decodes every certificate it is sent) failed the handshake with
/// "ASN1_get_object: too long ... tls_process_server_certificate: ASN1 lib", and the server
/// logged `Handshake(AlertReceived(BadCertificate))`: a configuration that builds and serves
/// no OpenSSL client. Each must be refused as `Error::Pem` naming the input and the
/// certificate's place, in the server's chain, an SNI chain and a client's chain alike, from
/// bytes and from a file.
///
/// A second certificate that is one whole DER value but not a certificate rustls would parse
/// is still sent as it is, as documented (a peer may accept what rustls would not parse).
#[test]
fn a_chain_with_a_broken_certificate_after_the_leaf_is_refused() {
    let ca = ca_without_padding();
    let leaf = ca.server(&["localhost"]);
    let other = ca.server(&["other.test"]);
    let chain = leaf.chain_pem();
    let line_lost = without_line(chain, 2, 3);
    let end_lost = format!("{}{}", without_end(chain, 2), other.cert_pem());
    let dir = TempDir::new("tls-audit-chain");
    for (what, pem) in [("an END line lost", &end_lost), ("a line lost", &line_lost)] {
        let server = TlsServerConfig::builder()
            .certificate_chain_pem(pem.as_bytes())
            .and_then(|b| b.private_key_pem(leaf.key_pem().as_bytes()))
            .and_then(|b| b.build());
        let reason = pem_reason(server, "PEM bytes", what);
        assert!(reason.contains("certificate 2"), "{what}: {reason}");

        let file = dir.join("fullchain.pem");
        std::fs::write(&file, pem).unwrap();
        let from_file = TlsServerConfig::builder().certificate_chain_pem_file(&file);
        let reason = pem_reason(from_file, "fullchain.pem", what);
        assert!(reason.contains("certificate 2"), "{what}: {reason}");

        let sni = TlsServerConfig::builder().sni_certificate_pem(
            "localhost",
            pem.as_bytes(),
            leaf.key_pem().as_bytes(),
        );
        let reason = pem_reason(sni, "PEM bytes", what);
        assert!(reason.contains("certificate 2"), "{what}: {reason}");

        let client =
            TlsConfig::builder().client_certificate_pem(pem.as_bytes(), leaf.key_pem().as_bytes());
        let reason = pem_reason(client, "PEM bytes", what);
        assert!(reason.contains("certificate 2"), "{what}: {reason}");
    }

    // The chain as written still builds, and so does one whose second certificate is a whole
    // DER value rustls would not parse as a certificate (an empty SEQUENCE).
    let odd = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
    for pem in [chain.to_owned(), format!("{}{odd}", leaf.cert_pem())] {
        let built = TlsServerConfig::builder()
            .certificate_chain_pem(pem.as_bytes())
            .and_then(|b| b.private_key_pem(leaf.key_pem().as_bytes()))
            .and_then(|b| b.build());
        assert!(built.is_ok(), "{pem}: {built:?}");
    }
}

/// The UTF-8 byte order mark that Windows tools put before a file's text (PowerShell 5's
/// `Set-Content -Encoding UTF8`, `Out-File -Encoding utf8`, Notepad before 2019).
const BOM: &str = "\u{feff}";

/// PEM files saved with a UTF-8 byte order mark before the first BEGIN line. The PEM parser
/// takes BEGIN only at the start of a line, so the first section was skipped as text before
/// it: without an error when more followed. A CA bundle lost its first CA (the client then
/// failed `InvalidCertificate(UnknownIssuer)` against every server that CA issued for, while the
/// bundle "loaded"), a chain lost its leaf (the intermediate became the leaf: a key mismatch
/// at `build()`), and a file of one certificate or a key was "no CERTIFICATE section found" /
/// "no private key found" in a file that plainly has one. With the mark skipped, each works
/// as the same file without it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pem_files_with_a_byte_order_mark_lose_nothing() {
    let selector = net_sockets::SelectorManager::new();
    let first = TestCa::new("first ca");
    let second = TestCa::new("second ca");
    let leaf = first.server(&["localhost", "127.0.0.1"]);
    let dir = TempDir::new("tls-audit-bom");

    // A CA bundle: its first CA is trusted.
    let server = TlsLineServer::lines(&selector, leaf.server_config().build().unwrap()).await;
    let bundle = dir.join("bundle.pem");
    std::fs::write(&bundle, format!("{BOM}{}{}", first.pem(), second.pem())).unwrap();
    let client = TlsConfig::builder()
        .add_root_certificates_pem_file(&bundle)
        .and_then(|b| b.build())
        .unwrap();
    let connected = within(connect(
        &selector,
        "localhost",
        server.port(),
        client.clone(),
    ))
    .await;
    assert!(
        connected.is_ok(),
        "the bundle's first CA, after a byte order mark: {:?}",
        connected.err()
    );
    drop(connected);

    // A chain (with CRLF line ends, as Windows writes them) and a key: the leaf is served.
    let chain = format!("{BOM}{}", leaf.chain_pem().replace('\n', "\r\n"));
    let key = format!("{BOM}{}", leaf.key_pem());
    let config = TlsServerConfig::builder()
        .certificate_chain_pem(chain.as_bytes())
        .and_then(|b| b.private_key_pem(key.as_bytes()))
        .and_then(|b| b.build())
        .unwrap_or_else(|e| panic!("a chain and key after a byte order mark: {e:?}"));
    let mut server = TlsLineServer::lines(&selector, config).await;
    server.serve_once(&selector, client, "bom").await;

    // A file of one certificate.
    let alone = format!("{BOM}{}", leaf.cert_pem());
    let built = TlsServerConfig::builder().certificate_chain_pem(alone.as_bytes());
    assert!(
        built.is_ok(),
        "one certificate after a byte order mark: {built:?}"
    );
}

/// `pem` with each of its sections' labels changed from `CERTIFICATE` to `label`.
fn relabelled(pem: &str, label: &str) -> String {
    pem.replace(
        "-----BEGIN CERTIFICATE-----",
        &format!("-----BEGIN {label}-----"),
    )
    .replace(
        "-----END CERTIFICATE-----",
        &format!("-----END {label}-----"),
    )
}

/// The reasons a certificate relabelled `label` is refused for: in a roots bundle read from a
/// file (after one ordinary CA), as client-auth CAs, and in a chain after the leaf; with the
/// bundle's line the section begins at.
struct Refusals {
    line: usize,
    roots: String,
    client_cas: String,
    chain: String,
}

fn refusals(label: &str) -> Refusals {
    let first = TestCa::new("first ca");
    let second = TestCa::new("second ca");
    let leaf = first.server(&["localhost"]);
    let dir = TempDir::new("tls-pem-labels");
    let bundle = format!("{}{}", first.pem(), relabelled(second.pem(), label));
    let file = dir.join("bundle.pem");
    std::fs::write(&file, &bundle).unwrap();
    let roots = TlsConfig::builder().add_root_certificates_pem_file(&file);
    let client_cas = TlsServerConfig::builder().client_auth_required(bundle.as_bytes());
    let chain = format!("{}{}", leaf.cert_pem(), relabelled(first.pem(), label));
    let server = TlsServerConfig::builder().certificate_chain_pem(chain.as_bytes());
    Refusals {
        line: first.pem().lines().count() + 1,
        roots: pem_reason(roots, "bundle.pem", label),
        client_cas: pem_reason(client_cas, "PEM bytes", label),
        chain: pem_reason(server, "PEM bytes", label),
    }
}

/// A CA bundle or a chain with a certificate under a label OpenSSL also reads, `TRUSTED
/// CERTIFICATE` (what `openssl x509 -trustout` writes: the certificate and OpenSSL's trust
/// settings) or the old `X509 CERTIFICATE`. The PEM parser skips such a section as one of
/// another kind: a bundle with ordinary certificates around it loaded without it, and the
/// servers of that CA then failed with an unknown issuer. Each is refused with `Error::Pem`
/// naming the section's line and how to convert it, as a roots bundle, client-auth CAs and a
/// chain alike.
#[test]
fn a_certificate_under_another_label_is_refused_not_skipped() {
    for label in ["TRUSTED CERTIFICATE", "X509 CERTIFICATE"] {
        let told = refusals(label);
        let begins = format!("line {} begins a {label} section", told.line);
        assert!(
            told.roots.contains(&begins) && told.roots.contains("openssl x509"),
            "{label}: {}",
            told.roots
        );
        for reason in [told.client_cas, told.chain] {
            assert!(reason.contains(label), "{label}: {reason}");
        }
    }
}

/// A certificate whose label is `CERTIFICATE` written a little differently: a blank before the
/// closing dashes (`-----BEGIN CERTIFICATE -----`, with its END line alike), two blanks after
/// BEGIN, or in lower case. The PEM parser reads the label as written, so such a section is one
/// of another kind and was skipped: a bundle with ordinary certificates around it loaded
/// without that CA. Each is refused with `Error::Pem` naming the line and the label as the
/// parser read it, quoted, and saying how to write it.
#[test]
fn a_certificate_label_written_differently_is_refused_not_skipped() {
    for label in [
        "CERTIFICATE ",
        " CERTIFICATE",
        "certificate",
        "Certificate  ",
    ] {
        let told = refusals(label);
        let begins = format!("line {} begins a section labelled \"{label}\"", told.line);
        assert!(
            told.roots.contains(&begins) && told.roots.contains("-----BEGIN CERTIFICATE-----"),
            "{label:?}: {}",
            told.roots
        );
        for reason in [told.client_cas, told.chain] {
            assert!(
                reason.contains(&format!("\"{label}\"")),
                "{label:?}: {reason}"
            );
        }
    }
    // A section of another kind whose label only mentions certificates is still skipped.
    let (first, second) = (TestCa::new("first ca"), TestCa::new("second ca"));
    let request = "-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n";
    let bundle = format!("{}{request}{}", first.pem(), second.pem());
    let built = TlsConfig::builder().add_root_certificates_pem(bundle.as_bytes());
    assert!(
        built.is_ok(),
        "a bundle with a CSR among its CAs: {built:?}"
    );
}
