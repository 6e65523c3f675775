//! Trust anchors: what a certificate added as a root (the client's `add_root_certificate*`, the
//! server's `client_auth_*`) is trusted for. rustls trusts an anchor for its subject name and
//! key alone, whatever its basicConstraints and key usage say, so a root that is not a CA's
//! still issues; and a server's self-signed certificate pinned as a root must not be marked as
//! a CA, since it is then checked as the server's own certificate too.

use net_sockets::SelectorManager;
use net_tests::TempDir;
use net_tests::harness::{Process, path_arg};
use net_tests::tls::{TlsLineServer, certificate_error, connect};
use net_tests::within;
use net_tls::rustls::{self, AlertDescription, CertificateError};
use net_tls::{CertificateDer, Error, TlsConfig, TlsServerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A self-signed certificate that is not a CA's (`CA:FALSE`, key usage `digitalSignature`
/// only, a server's), as a server might have made for itself, with the key that signs.
fn not_a_ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("parameters");
    params
        .distinguished_name
        .push(DnType::CommonName, "not a ca");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().expect("key");
    CertifiedIssuer::self_signed(params, key).expect("self-signed")
}

/// A leaf for `name`, for `usage`, signed by `issuer`: its certificate (DER and PEM) and key
/// (PEM).
fn issued_by(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    name: &str,
    usage: ExtendedKeyUsagePurpose,
) -> (CertificateDer<'static>, String, String) {
    let mut params = CertificateParams::new(vec![name.to_owned()]).expect("parameters");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, issuer).expect("signed");
    (cert.der().clone(), cert.pem(), key.serialize_pem())
}

/// A certificate that is not a CA's (`CA:FALSE`, no `keyCertSign`: `openssl verify` refuses it
/// as an issuer, "invalid CA certificate"), added as a root, is trusted to issue certificates
/// all the same, as rustls trusts any anchor: by the client (`add_root_certificates_pem`,
/// `_pem_file`, `add_root_certificate`), a server certificate its key signed is accepted; by
/// the server (`client_auth_required`, `client_auth_optional`, `client_auth_der`), a client
/// certificate its key signed. (Guard: documented on the setters, so that users put only CA
/// certificates there.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_that_is_not_a_ca_certificate_is_trusted_to_issue_certificates() {
    let selector = SelectorManager::new();
    let anchor = not_a_ca();
    let (_, server_pem, server_key) =
        issued_by(&anchor, "localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let (client_der, client_pem, client_key) =
        issued_by(&anchor, "client.test", ExtendedKeyUsagePurpose::ClientAuth);

    // The premise, checked by OpenSSL: the anchor is no CA, and what it signed is no chain.
    let dir = TempDir::new("tls-trust-anchors");
    let anchor_file = dir.write("anchor.pem", anchor.pem());
    let server_file = dir.write("server.pem", &server_pem);
    let verified = Process::run(
        "openssl",
        [
            "verify",
            "-CAfile",
            path_arg(&anchor_file),
            path_arg(&server_file),
        ],
    );
    assert!(!verified.status.success(), "{verified:?}");
    assert!(
        verified
            .stdout
            .iter()
            .chain(&verified.stderr)
            .any(|line| line.contains("invalid CA certificate")),
        "{verified:?}"
    );

    let server_config = || {
        TlsServerConfig::builder()
            .certificate_chain_pem(server_pem.as_bytes())
            .unwrap()
            .private_key_pem(server_key.as_bytes())
            .unwrap()
    };
    let mut server = TlsLineServer::lines(&selector, server_config().build().unwrap()).await;
    let clients = [
        TlsConfig::builder()
            .add_root_certificates_pem(anchor.pem().as_bytes())
            .unwrap(),
        TlsConfig::builder()
            .add_root_certificates_pem_file(&anchor_file)
            .unwrap(),
        TlsConfig::builder().add_root_certificate(anchor.der().clone()),
    ];
    for (i, client) in clients.into_iter().enumerate() {
        let client = client.server_name("localhost").build().unwrap();
        server
            .serve_once(&selector, client, &format!("client {i}"))
            .await;
    }

    let trusting_the_server = || {
        TlsConfig::builder()
            .add_root_certificates_pem(anchor.pem().as_bytes())
            .unwrap()
            .server_name("localhost")
            .client_certificate_pem(client_pem.as_bytes(), client_key.as_bytes())
            .unwrap()
            .build()
            .unwrap()
    };
    let servers = [
        server_config().client_auth_required(anchor.pem().as_bytes()),
        server_config().client_auth_optional(anchor.pem().as_bytes()),
        server_config().client_auth_der([anchor.der().clone()], true),
    ];
    for (i, config) in servers.into_iter().enumerate() {
        let mut server = TlsLineServer::lines(&selector, config.unwrap().build().unwrap()).await;
        let mut good = server.good_client(&selector, trusting_the_server()).await;
        good.round_trip(&format!("server {i}")).await;
        let session = server.finish_good(good).await;
        assert_eq!(
            session.peer_chain,
            std::slice::from_ref(&client_der),
            "server {i}"
        );
    }
}

/// A self-signed certificate for `localhost`, with `is_ca`, and its key in PEM.
fn self_signed(is_ca: IsCa) -> (CertificateDer<'static>, String, String) {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("parameters");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.is_ca = is_ca;
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed");
    (cert.der().clone(), cert.pem(), key.serialize_pem())
}

/// A self-signed certificate for `localhost` made by `openssl req -x509` (the configuration's
/// `v3_ca` marks it `CA:TRUE`), with `extra` arguments; its PEM and its key's.
fn openssl_self_signed(dir: &TempDir, name: &str, extra: &[&str]) -> (String, String) {
    let (cert, key) = (
        dir.join(&format!("{name}.pem")),
        dir.join(&format!("{name}.key")),
    );
    let mut args = vec![
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost",
        "-keyout",
        path_arg(&key),
        "-out",
        path_arg(&cert),
    ];
    args.extend_from_slice(extra);
    let made = Process::run("openssl", &args);
    assert!(made.status.success(), "{made:?}");
    let read = |path| std::fs::read_to_string(path).expect("openssl's output");
    (read(&cert), read(&key))
}

/// Whether `e` is the client's refusal of a server certificate that is marked as a CA
/// (`CA:TRUE`) but used as the server's own: webpki's `CaUsedAsEndEntity`, which rustls passes
/// on as `InvalidCertificate(Other(..))`, its `Display` naming it.
fn is_ca_used_as_end_entity(e: &Error) -> bool {
    matches!(
        certificate_error(e),
        Some(CertificateError::Other(other)) if other.0.to_string() == "CaUsedAsEndEntity"
    ) && e.to_string().ends_with("CaUsedAsEndEntity))")
}

/// Pinning a server's self-signed certificate by adding it as the client's root works only if
/// the certificate is not marked as a CA: without `CA:TRUE` (rcgen's default, no
/// basicConstraints; or `CA:FALSE`, also as `openssl req -x509 -addext
/// basicConstraints=critical,CA:FALSE` makes it) the handshake succeeds; with `CA:TRUE` (what
/// `openssl req -x509` makes by default) the client's handshake fails with
/// `Handshake(InvalidCertificate(Other(..)))`, webpki's `CaUsedAsEndEntity` (its `Display` ends
/// `invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))`), kind `InvalidData`, and
/// the server's with `AlertReceived(CertificateUnknown)`. The same holds for a client's
/// self-signed certificate pinned by `client_auth_*`. (Guard: documented on the setters.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_self_signed_certificate_works_only_if_it_is_not_a_ca() {
    let selector = SelectorManager::new();
    let dir = TempDir::new("tls-trust-anchors");
    let rcgen_made = |is_ca| {
        let (_, pem, key) = self_signed(is_ca);
        (pem, key)
    };
    let cases = [
        ("rcgen NoCa", rcgen_made(IsCa::NoCa), true),
        ("rcgen ExplicitNoCa", rcgen_made(IsCa::ExplicitNoCa), true),
        (
            "rcgen Ca",
            rcgen_made(IsCa::Ca(BasicConstraints::Unconstrained)),
            false,
        ),
        (
            "openssl CA:FALSE",
            openssl_self_signed(
                &dir,
                "no-ca",
                &["-addext", "basicConstraints=critical,CA:FALSE"],
            ),
            true,
        ),
        (
            "openssl default",
            openssl_self_signed(&dir, "default", &[]),
            false,
        ),
    ];
    for (what, (pem, key), works) in cases {
        let config = TlsServerConfig::builder()
            .certificate_chain_pem(pem.as_bytes())
            .unwrap()
            .private_key_pem(key.as_bytes())
            .unwrap()
            .build()
            .unwrap();
        let mut server = TlsLineServer::lines(&selector, config).await;
        let pinning = TlsConfig::builder()
            .add_root_certificates_pem(pem.as_bytes())
            .unwrap()
            .server_name("localhost")
            .build()
            .unwrap();
        if works {
            server.serve_once(&selector, pinning, what).await;
            continue;
        }
        let e = within(connect(&selector, "127.0.0.1", server.port(), pinning))
            .await
            .expect_err(what);
        assert!(is_ca_used_as_end_entity(&e), "{what}: {e:?} / {e}");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{what}");
        let seen = server.failed_handshake().await;
        assert!(
            matches!(
                seen,
                Error::Handshake(rustls::Error::AlertReceived(
                    AlertDescription::CertificateUnknown
                ))
            ),
            "{what}: {seen:?}"
        );
    }

    // The server side: a client's self-signed certificate pinned by `client_auth_der`.
    let server_leaf = self_signed(IsCa::NoCa);
    for (is_ca, works) in [
        (IsCa::ExplicitNoCa, true),
        (IsCa::Ca(BasicConstraints::Unconstrained), false),
    ] {
        let (client_der, client_pem, client_key) = self_signed(is_ca);
        let config = TlsServerConfig::builder()
            .certificate_chain_pem(server_leaf.1.as_bytes())
            .unwrap()
            .private_key_pem(server_leaf.2.as_bytes())
            .unwrap()
            .client_auth_der([client_der.clone()], true)
            .unwrap()
            .protocol_versions(&[net_tls::TlsVersion::Tls12])
            .build()
            .unwrap();
        let mut server = TlsLineServer::lines(&selector, config).await;
        let client = TlsConfig::builder()
            .add_root_certificate(server_leaf.0.clone())
            .server_name("localhost")
            .client_certificate_pem(client_pem.as_bytes(), client_key.as_bytes())
            .unwrap()
            .build()
            .unwrap();
        if works {
            let mut good = server.good_client(&selector, client).await;
            good.round_trip("pinned client").await;
            let session = server.finish_good(good).await;
            assert_eq!(session.peer_chain, [client_der]);
            continue;
        }
        let e = within(connect(&selector, "127.0.0.1", server.port(), client))
            .await
            .expect_err("a client certificate marked as a CA");
        assert!(
            matches!(
                e,
                Error::Handshake(rustls::Error::AlertReceived(
                    AlertDescription::CertificateUnknown
                ))
            ),
            "{e:?}"
        );
        let seen = server.failed_handshake().await;
        assert!(is_ca_used_as_end_entity(&seen), "{seen:?} / {seen}");
    }
}
