//! Claims of the prose documents (the crates' top-level docs, `coming_from_ktor.md`,
//! `guide.md`) that no other test states as such.
//!
//! - net-tls's crate docs: "The key may be PKCS#8, PKCS#1 (RSA) or SEC1 (EC), unencrypted":
//!   a server configured with a SEC1 (`EC PRIVATE KEY`) or a PKCS#1 (`RSA PRIVATE KEY`) key
//!   completes a handshake. The keys are converted (and the RSA one made) by `openssl`.
//! - net-tls's crate docs: "an empty or malformed one is [`Error::Pem`] naming the file": also
//!   a file whose PEM armour is intact but whose body is not a key or certificate (a base64
//!   line lost in a copy).

use std::process::Command;

use net_io::LineEnding;
use net_sockets::{SelectorManager, a_socket};
use net_tests::pki::Pki;
use net_tests::tls::{LINE_LIMIT, pair};
use net_tests::{TempDir, within};
use net_tls::{Error, TlsConfig, TlsServerConfig};

/// Runs `openssl` with `args`; panics with its stderr if it fails.
fn openssl(args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("`openssl` is needed by this test (Debian: apt-get install openssl)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// One line each way over a handshake with `server` and `client`.
async fn handshake_and_talk(server: &TlsServerConfig, client: TlsConfig) {
    let selector = SelectorManager::new();
    let listener = a_socket(&selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let (mut server_side, mut client_side) = pair(&selector, &listener, server, client).await;
    let mut output = client_side.open_write_channel(true).unwrap();
    let mut input = server_side.open_read_channel().unwrap();
    output.write_string_utf8("hello\n").await.unwrap();
    let line = within(input.read_line(LINE_LIMIT, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("hello"));
}

#[tokio::test]
async fn a_sec1_ec_key_serves_tls() {
    let pki = Pki::generate();
    let dir = TempDir::new("docs-claims-sec1");
    let pkcs8 = dir.write("key.pem", pki.server.key_pem());
    let sec1 = dir.join("sec1.pem");
    openssl(&[
        "ec",
        "-in",
        pkcs8.to_str().unwrap(),
        "-out",
        sec1.to_str().unwrap(),
    ]);
    let key = std::fs::read(&sec1).unwrap();
    assert!(key.starts_with(b"-----BEGIN EC PRIVATE KEY-----"));
    let server = TlsServerConfig::builder()
        .certificate_chain_pem(pki.server.chain_pem().as_bytes())
        .unwrap()
        .private_key_pem(&key)
        .unwrap()
        .build()
        .unwrap();
    handshake_and_talk(&server, pki.client_config().build().unwrap()).await;
}

#[tokio::test]
async fn a_pkcs1_rsa_key_serves_tls() {
    let dir = TempDir::new("docs-claims-pkcs1");
    let (pkcs8, cert, pkcs1) = (
        dir.join("key.pem"),
        dir.join("cert.pem"),
        dir.join("rsa.pem"),
    );
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
        "-keyout",
        pkcs8.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    openssl(&[
        "rsa",
        "-traditional",
        "-in",
        pkcs8.to_str().unwrap(),
        "-out",
        pkcs1.to_str().unwrap(),
    ]);
    let key = std::fs::read(&pkcs1).unwrap();
    assert!(key.starts_with(b"-----BEGIN RSA PRIVATE KEY-----"));
    let server = TlsServerConfig::builder()
        .certificate_chain_pem(&std::fs::read(&cert).unwrap())
        .unwrap()
        .private_key_pem(&key)
        .unwrap()
        .build()
        .unwrap();
    // The claim is about the server's key: the client does not verify this self-signed leaf.
    let client = TlsConfig::builder()
        .dangerous_accept_any_server_certificate()
        .build()
        .unwrap();
    handshake_and_talk(&server, client).await;
}

/// `pem` without its second line: the first 64 base64 characters of the first section's body.
/// What is left still decodes (whole lines of 48 bytes), into DER that is no longer a key or a
/// certificate.
fn without_second_line(pem: &str) -> String {
    let mut lines: Vec<&str> = pem.lines().collect();
    assert!(lines.len() > 3, "{pem}");
    lines.remove(1);
    lines.join("\n") + "\n"
}

/// The origin of a PEM error, or a panic saying what came instead.
fn pem_origin<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    match result {
        Err(Error::Pem { origin, reason, .. }) => {
            assert!(!reason.is_empty());
            origin
        }
        other => panic!("not Error::Pem: {other:?}"),
    }
}

/// Before the fix the corrupted key loaded without complaint and `build` failed with
/// `Error::Config` ("failed to parse private key"), naming no file; the corrupted leaf
/// certificate the same way, at `build`.
#[test]
fn a_corrupted_key_or_leaf_certificate_is_a_pem_error_naming_its_file() {
    let pki = Pki::generate();
    let dir = TempDir::new("corrupted-pem");
    let key = without_second_line(pki.server.key_pem());
    let chain = without_second_line(pki.server.chain_pem());
    let key_file = dir.write("corrupted.key", &key);
    let chain_file = dir.write("corrupted.crt", &chain);

    let origin = pem_origin(TlsServerConfig::builder().private_key_pem_file(&key_file));
    assert!(origin.contains("corrupted.key"), "{origin}");
    let origin = pem_origin(TlsServerConfig::builder().certificate_chain_pem_file(&chain_file));
    assert!(origin.contains("corrupted.crt"), "{origin}");

    // From bytes: the same errors.
    pem_origin(TlsServerConfig::builder().private_key_pem(key.as_bytes()));
    pem_origin(TlsServerConfig::builder().certificate_chain_pem(chain.as_bytes()));
    pem_origin(TlsServerConfig::builder().sni_certificate_pem(
        "localhost",
        pki.server.chain_pem().as_bytes(),
        key.as_bytes(),
    ));
    pem_origin(
        TlsConfig::builder()
            .client_certificate_pem(chain.as_bytes(), pki.server.key_pem().as_bytes()),
    );

    // The intact files still serve.
    let good = TlsServerConfig::builder()
        .certificate_chain_pem(pki.server.chain_pem().as_bytes())
        .unwrap()
        .private_key_pem(pki.server.key_pem().as_bytes())
        .unwrap()
        .build();
    assert!(good.is_ok(), "{good:?}");
}
