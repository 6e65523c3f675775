//! The trust-all client (`dangerous_accept_any_server_certificate`) against `openssl s_server`
//! with keys made by `openssl req`: it takes any certificate, but still checks the handshake's
//! signature, so a key the crypto provider does not verify fails the handshake.

use std::path::Path;

use net_sockets::SelectorManager;
use net_tests::harness::{Process, openssl, path_arg, port_at_end};
use net_tests::loopback::connect;
use net_tests::{TempDir, within};
use net_tls::rustls::{self, AlertDescription, CertificateError, SignatureScheme};
use net_tls::{Error, TlsConfig, TlsExt, TlsVersion};

/// Makes `<name>.key` and `<name>.pem` in `dir`: a self-signed certificate, as a device makes
/// for itself, with a key of `newkey` (an `openssl req -newkey` argument) and its options.
fn self_signed(dir: &Path, name: &str, newkey: &[&str]) {
    let (key, cert) = (format!("{name}.key"), format!("{name}.pem"));
    let args = [
        &["req", "-x509", "-nodes", "-newkey"][..],
        newkey,
        &[
            "-keyout",
            &key,
            "-out",
            &cert,
            "-subj",
            "/CN=device.test",
            "-days",
            "2",
        ],
    ]
    .concat();
    openssl(dir, &args);
}

/// Our trust-all client's handshake with `openssl s_server` serving `<name>.pem` in `dir`.
async fn trust_all_handshake(dir: &Path, name: &str, version: TlsVersion) -> Result<(), Error> {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let version_flag = match version {
        TlsVersion::Tls12 => "-tls1_2",
        _ => "-tls1_3",
    };
    // Security level 0: OpenSSL 3 refuses to serve a 1,024-bit RSA key otherwise.
    let mut server = Process::start(
        "openssl",
        [
            "s_server",
            "-accept",
            "127.0.0.1:0",
            "-naccept",
            "1",
            "-rev",
            "-cert",
            path_arg(&cert),
            "-key",
            path_arg(&key),
            "-cipher",
            "DEFAULT@SECLEVEL=0",
            version_flag,
        ],
    );
    let accept = server.stdout_line_where("ACCEPT line", |l| l.starts_with("ACCEPT "));
    let selector = SelectorManager::new();
    let socket = connect(&selector, ("127.0.0.1", port_at_end(&accept))).await;
    let config = TlsConfig::builder()
        .dangerous_accept_any_server_certificate()
        .protocol_versions(&[version])
        .build()
        .unwrap();
    let done = within(socket.tls(config)).await;
    if let Ok(tls) = &done {
        tls.close();
    }
    server.finish();
    done.map(drop)
}

/// `dangerous_accept_any_server_certificate` said it accepts any server certificate; a server
/// whose certificate has a key the crypto provider does not verify signatures with (an old
/// device's 1,024-bit RSA key; an ECDSA key on P-521 with `ring`) is refused all the same:
/// `Handshake(InvalidCertificate(BadSignature))` for the RSA key, and for P-521, whose
/// signature scheme the client does not offer, the server's `handshake_failure` alert. A
/// 2,048-bit RSA key, ECDSA on P-256 and P-384, and Ed25519 pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_all_still_needs_a_server_key_the_provider_verifies() {
    let dir = TempDir::new("trust-all-keys");
    self_signed(dir.path(), "rsa1024", &["rsa:1024"]);
    self_signed(dir.path(), "rsa2048", &["rsa:2048"]);
    let p256 = ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
    self_signed(dir.path(), "p256", &p256);
    let p384 = ["ec", "-pkeyopt", "ec_paramgen_curve:P-384"];
    self_signed(dir.path(), "p384", &p384);
    self_signed(dir.path(), "ed25519", &["ed25519"]);
    let p521 = ["ec", "-pkeyopt", "ec_paramgen_curve:P-521"];
    self_signed(dir.path(), "p521", &p521);
    let provider = net_tls::crypto_provider();
    let verifies_p521 = provider
        .signature_verification_algorithms
        .supported_schemes()
        .contains(&SignatureScheme::ECDSA_NISTP521_SHA512);
    for version in [TlsVersion::Tls13, TlsVersion::Tls12] {
        for name in ["rsa2048", "p256", "p384", "ed25519"] {
            let done = trust_all_handshake(dir.path(), name, version).await;
            assert!(done.is_ok(), "{name} {version:?}: {done:?}");
        }
        let weak_rsa = trust_all_handshake(dir.path(), "rsa1024", version).await;
        assert!(
            matches!(
                weak_rsa,
                Err(Error::Handshake(rustls::Error::InvalidCertificate(
                    CertificateError::BadSignature
                )))
            ),
            "rsa1024 {version:?}: {weak_rsa:?}"
        );
        let p521 = trust_all_handshake(dir.path(), "p521", version).await;
        if verifies_p521 {
            assert!(p521.is_ok(), "p521 {version:?}: {p521:?}");
        } else {
            assert!(
                matches!(
                    p521,
                    Err(Error::Handshake(rustls::Error::AlertReceived(
                        AlertDescription::HandshakeFailure
                    )))
                ),
                "p521 {version:?}: {p521:?}"
            );
        }
    }
}
