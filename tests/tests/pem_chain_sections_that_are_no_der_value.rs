//! A PEM certificate chain whose second section decodes to bytes that are no DER value at
//! all: not a SEQUENCE (text put into the section), or a SEQUENCE whose long-form length is
//! malformed (no length octets, more than four, or fewer than it announces). rustls would
//! send such bytes to every client as the intermediate; the chain is refused with
//! `Error::Pem` naming the file and the certificate. Tests had given only a whole DER value
//! of the wrong length (found by a coverage run: `one_der_value`'s two early refusals ran 0
//! times).

use net_tests::pki::TestCa;
use net_tls::{Error, TlsServerConfig};

/// The base64 of each section and what it holds.
const NOT_DER: &[(&str, &str)] = &[
    ("bm90IGEgY2VydGlmaWNhdGU=", "text, no SEQUENCE tag"),
    (
        "MIAAAA==",
        "a SEQUENCE of indefinite length (no length octets)",
    ),
    ("MIUBAgMEBQ==", "a SEQUENCE with five length octets"),
    ("MIIB", "a SEQUENCE cut inside its two length octets"),
];

#[test]
fn a_chain_whose_intermediate_is_no_der_value_is_refused_naming_it() {
    let ca = TestCa::new("no der value CA");
    let leaf = ca.server(&["localhost"]);
    let dir = net_tests::TempDir::new("pem-no-der-value");
    for (base64, what) in NOT_DER {
        let pem = format!(
            "{}-----BEGIN CERTIFICATE-----\n{base64}\n-----END CERTIFICATE-----\n",
            leaf.cert_pem()
        );
        let path = dir.join("chain.pem");
        std::fs::write(&path, &pem).unwrap();
        let e = TlsServerConfig::builder()
            .certificate_chain_pem_file(&path)
            .map(|_| ())
            .unwrap_err();
        let Error::Pem { origin, reason, .. } = &e else {
            panic!("{what}: not a PEM error: {e:?}");
        };
        assert!(origin.contains("chain.pem"), "{what}: {origin}");
        assert!(
            reason.contains("certificate 2 is not one whole DER value"),
            "{what}: {reason}"
        );

        let e = TlsServerConfig::builder()
            .certificate_chain_pem(pem.as_bytes())
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(e, Error::Pem { .. }), "{what}: {e:?}");
    }
}
