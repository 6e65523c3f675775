//! Claims of the TLS rows of `guarantees.md` that none of the tests the rows named asserted.

use net_tests::pki::TestCa;
use net_tls::Error;

/// A CERTIFICATE section whose content is no certificate (valid base64 of other bytes).
const NOT_A_CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----\n\
dGhpcyBERVIgaXMgbm90IGEgY2VydGlmaWNhdGU=\n\
-----END CERTIFICATE-----\n";

/// Row "A CA bundle in PEM (... `client_auth_required` / `_optional`) with a certificate that
/// cannot be a trust anchor among good ones": `Error::Pem`, kind `InvalidInput`, naming
/// `PEM bytes` and the certificate's place in the bundle, counting from 1. (The named test
/// checked the client's `add_root_certificates_pem` / `_file` only.)
#[test]
fn a_bad_certificate_in_a_client_ca_bundle_is_refused_naming_the_certificate() {
    let (first, second) = (TestCa::new("client ca 1"), TestCa::new("client ca 2"));
    let bundle = format!("{}{NOT_A_CERTIFICATE}{}", first.pem(), second.pem());
    let server = TestCa::new("server ca").server(&["localhost"]);
    for required in [false, true] {
        let builder = server.server_config();
        let e = if required {
            builder.client_auth_required(bundle.as_bytes()).unwrap_err()
        } else {
            builder.client_auth_optional(bundle.as_bytes()).unwrap_err()
        };
        let text = e.to_string();
        match &e {
            Error::Pem { origin, reason, .. } => {
                assert_eq!(origin, "PEM bytes", "required {required}: {text}");
                assert!(reason.contains("certificate 2 "), "required {required}: {text}");
                assert!(reason.contains("trust anchor"), "required {required}: {text}");
            }
            other => panic!("required {required}: not a PEM error: {other:?} ({text})"),
        }
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{text}");
    }
    // The good certificates alone are taken.
    let good = format!("{}{}", first.pem(), second.pem());
    assert!(server.server_config().client_auth_required(good.as_bytes()).is_ok());
    assert!(server.server_config().client_auth_optional(good.as_bytes()).is_ok());
}
