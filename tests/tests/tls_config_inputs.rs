//! TLS configuration inputs beside the PEM builders: the `from_rustls` escape hatches (a
//! certificate-pinning verifier on the client, a rustls server configuration used as given)
//! and DER certificates and keys on both sides. Each case talks to a server that keeps serving
//! a well-behaved session.

use std::sync::Arc;

use net_sockets::{SelectorManager, a_socket};
use net_tests::pki::TestCa;
use net_tests::tls::{TlsLineServer, assert_refused_without_certificate, provider, sha256};
use net_tests::within;
use net_tls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use net_tls::rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use net_tls::rustls::pki_types::{ServerName, UnixTime};
use net_tls::rustls::{
    self, AlertDescription, CertificateError, DigitallySignedStruct, SignatureScheme,
};
use net_tls::{CertificateDer, Error, TlsConfig, TlsExt, TlsServerConfig, TlsSocket, TlsVersion};

/// Accepts only the server certificate whose SHA-256 is `pin`; the handshake signature is
/// still checked against the key in that certificate.
#[derive(Debug)]
struct PinnedCertificate {
    pin: Vec<u8>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if sha256(end_entity) == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client configuration that trusts only the certificate `leaf` (DER), through `from_rustls`.
fn pinned(leaf: &CertificateDer<'_>) -> TlsConfig {
    let provider = provider();
    let verifier = PinnedCertificate {
        pin: sha256(leaf),
        provider: Arc::clone(&provider),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    TlsConfig::from_rustls(Arc::new(config))
}

/// A client configuration that trusts `ca` and verifies the name `localhost`.
fn localhost_client(ca: &TestCa) -> TlsConfig {
    ca.client_config().server_name("localhost").build().unwrap()
}

/// Asserts that the server's next failed handshake ended on the client's alert (a client that
/// refused the server's certificate).
async fn assert_server_saw_an_alert(server: &mut TlsLineServer) {
    let e = server.failed_handshake().await;
    assert!(
        matches!(e, Error::Handshake(rustls::Error::AlertReceived(_))),
        "{e:?}"
    );
}

async fn connect(
    selector: &SelectorManager,
    port: u16,
    config: TlsConfig,
) -> Result<TlsSocket, Error> {
    let socket = a_socket(selector)
        .tcp()
        .connect(("127.0.0.1", port))
        .await?;
    within(socket.tls(config)).await
}

/// A client pinning the server's certificate completes the handshake, with no CA involved (the
/// pin, not the name `127.0.0.1` the certificate lacks, decides); a client pinning another
/// certificate is refused with a typed handshake error, and the server sees its alert.
#[tokio::test]
async fn a_pinned_certificate_is_accepted_and_any_other_refused() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("pinning ca");
    let leaf = ca.server(&["localhost"]);
    let served = leaf.cert_der().clone();
    let other = ca.server(&["localhost"]).cert_der().clone();
    let mut server = TlsLineServer::lines(&selector, leaf.server_config().build().unwrap()).await;
    let mut good = server.good_client(&selector, localhost_client(&ca)).await;
    good.round_trip("before pinning").await;

    let mut pinned_client = server.good_client(&selector, pinned(&served)).await;
    assert_eq!(
        pinned_client.connection().peer_certificates().first(),
        Some(&served)
    );
    assert_eq!(pinned_client.connection().server_name(), Some("127.0.0.1"));
    pinned_client.round_trip("pinned").await;
    let session = server.finish_good(pinned_client).await;
    assert_eq!(
        session.view.server_name, None,
        "an IP literal is not sent as SNI"
    );
    good.round_trip("after the pinned client").await;

    let e = connect(&selector, server.port(), pinned(&other))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Handshake(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure
            ))
        ),
        "{e:?}"
    );
    assert_server_saw_an_alert(&mut server).await;
    good.round_trip("after the refused client").await;
    server.finish_good(good).await;
}

/// A rustls server configuration is used as given: its ALPN list and its protocol versions
/// (TLS 1.3 only here) decide, with nothing of the builder's defaults added.
#[tokio::test]
async fn a_rustls_server_configuration_is_used_as_given() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("from_rustls ca");
    let leaf = ca.server(&["localhost"]);
    let mut rustls_config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(leaf.chain_der().to_vec(), leaf.key_der())
        .unwrap();
    rustls_config.alpn_protocols = vec![b"line/1".to_vec()];
    let config = TlsServerConfig::from_rustls(Arc::new(rustls_config));
    let mut server = TlsLineServer::lines(&selector, config).await;

    let offers = ca
        .client_config()
        .server_name("localhost")
        .alpn_protocols(["h2", "line/1"])
        .build()
        .unwrap();
    let mut good = server.good_client(&selector, offers).await;
    good.round_trip("negotiated").await;

    let tls12_only = ca
        .client_config()
        .server_name("localhost")
        .protocol_versions(&[TlsVersion::Tls12])
        .build()
        .unwrap();
    let e = connect(&selector, server.port(), tls12_only)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Handshake(rustls::Error::AlertReceived(
                AlertDescription::ProtocolVersion
            ))
        ),
        "{e:?}"
    );
    let server_side = server.failed_handshake().await;
    assert!(
        matches!(
            server_side,
            Error::Handshake(rustls::Error::PeerIncompatible(_))
        ),
        "{server_side:?}"
    );

    good.round_trip("after the TLS 1.2 client").await;
    let view = server.finish_good(good).await.view;
    assert_eq!(view.version, Some(TlsVersion::Tls13));
    assert_eq!(view.alpn.as_deref(), Some(&b"line/1"[..]));
}

/// A server built from a DER chain and key serves a client that trusts the CA given as DER
/// (`add_root_certificate`); the client sees the chain it was given.
#[tokio::test]
async fn der_chain_key_and_root_make_a_working_session() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("der ca");
    let leaf = ca.server(&["localhost"]);
    let chain = leaf.chain_der().to_vec();
    let config = TlsServerConfig::builder()
        .certificate_chain_der(chain.clone())
        .private_key_der(leaf.key_der())
        .build()
        .unwrap();
    let mut server = TlsLineServer::lines(&selector, config).await;
    let client = TlsConfig::builder()
        .add_root_certificate(ca.der())
        .server_name("localhost")
        .build()
        .unwrap();
    let mut good = server.good_client(&selector, client).await;
    assert_eq!(good.connection().peer_certificates(), &chain[..]);
    good.round_trip("der").await;
    let view = server.finish_good(good).await.view;
    assert_eq!(view.server_name.as_deref(), Some("localhost"));

    // The DER root replaced the bundled roots: a CA it did not name is not trusted.
    let other_ca = TestCa::new("other ca");
    let refused = TlsConfig::builder()
        .add_root_certificate(other_ca.der())
        .server_name("localhost")
        .build()
        .unwrap();
    let e = connect(&selector, server.port(), refused)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Handshake(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))
        ),
        "{e:?}"
    );
    assert_server_saw_an_alert(&mut server).await;
}

/// A client certificate given as DER passes mutual TLS; the server sees the chain that was
/// sent, and a client without one is still refused.
#[tokio::test]
async fn a_der_client_certificate_passes_mutual_tls() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("server ca");
    let client_ca = TestCa::new("client ca");
    let client_leaf = client_ca.client("client.test");
    let config = ca
        .server(&["localhost"])
        .mutual_tls_server_config(&client_ca)
        .build()
        .unwrap();
    let mut server = TlsLineServer::lines(&selector, config).await;
    let client_chain = client_leaf.chain_der().to_vec();
    let certified = ca
        .client_config()
        .server_name("localhost")
        .client_certificate_der(client_chain.clone(), client_leaf.key_der())
        .build()
        .unwrap();
    let mut good = server.good_client(&selector, certified).await;
    good.round_trip("certified by der").await;
    let session = server.finish_good(good).await;
    assert_eq!(session.peer_chain, client_chain);

    // Without a certificate: refused (in TLS 1.3 the client learns it on its first read).
    let anonymous = localhost_client(&ca);
    assert_refused_without_certificate(connect(&selector, server.port(), anonymous).await).await;
    let e = server.failed_handshake().await;
    assert!(
        matches!(e, Error::Handshake(rustls::Error::NoCertificatesPresented)),
        "{e:?}"
    );
}

/// An ALPN name that cannot go on the wire is refused when either side's configuration is
/// built, and a handshake never starts with it: an empty one (as splitting an empty setting on
/// commas gives), one longer than the 255 bytes its one-byte length holds, or a list too long
/// to fit a ClientHello. Once, the client's handshake panicked on the empty name (rustls's
/// encoder asserts a name is not empty) and sent a ClientHello the server could not decode for
/// the long one (its length wrapped to 44). A 255-byte name, the longest, still negotiates.
#[tokio::test]
async fn alpn_names_that_cannot_be_sent_are_refused_at_build() {
    let longest = vec![b'a'; 255];
    let too_long = vec![b'a'; 256];
    let too_many = vec![longest.clone(); 256]; // 65,536 bytes with their lengths
    // What is refused, and the name the error names.
    let refused = [
        (
            "an empty name",
            vec![b"h2".to_vec(), Vec::new()],
            Vec::new(),
        ),
        ("a 256-byte name", vec![too_long.clone()], too_long),
        ("256 names of 255 bytes", too_many, longest.clone()),
    ];
    let ca = TestCa::new("alpn ca");
    let leaf = ca.server(&["localhost"]);
    for (what, names, named) in &refused {
        let client = ca
            .client_config()
            .alpn_protocols(names)
            .build()
            .unwrap_err();
        assert!(
            matches!(&client, Error::InvalidAlpnProtocol { protocol, .. } if protocol == named),
            "{what}: {client:?}"
        );
        assert_eq!(client.kind(), std::io::ErrorKind::InvalidInput);
        let server = leaf
            .server_config()
            .alpn_protocols(names)
            .build()
            .unwrap_err();
        assert!(
            matches!(&server, Error::InvalidAlpnProtocol { protocol, .. } if protocol == named),
            "{what}: {server:?}"
        );
        assert_eq!(server.kind(), std::io::ErrorKind::InvalidInput);
    }

    let selector = SelectorManager::new();
    let config = leaf
        .server_config()
        .alpn_protocols([&longest])
        .build()
        .unwrap();
    let mut server = TlsLineServer::lines(&selector, config).await;
    let offers = ca
        .client_config()
        .server_name("localhost")
        .alpn_protocols([&longest])
        .build()
        .unwrap();
    let mut good = server.good_client(&selector, offers).await;
    assert_eq!(good.connection().alpn_protocol(), Some(&longest[..]));
    good.round_trip("a 255-byte ALPN name").await;
    let session = server.finish_good(good).await;
    assert_eq!(session.view.alpn, Some(longest));
}

/// A rustls client configuration given through `from_rustls` with an ALPN name that cannot be
/// sent fails its handshake with `InvalidAlpnProtocol` before a byte is sent, as the builder's
/// would have at `build()`. Once, the empty name panicked in rustls's encoder (a debug
/// assertion; in a release build, a ClientHello no server decodes). A well-formed list still
/// negotiates.
#[tokio::test]
async fn a_from_rustls_alpn_name_that_cannot_be_sent_fails_the_handshake_with_a_typed_error() {
    let ca = TestCa::new("from_rustls alpn ca");
    let leaf = ca.server(&["localhost"]);
    let selector = SelectorManager::new();
    let config = leaf
        .server_config()
        .alpn_protocols([b"h2"])
        .build()
        .unwrap();
    let mut server = TlsLineServer::lines(&selector, config).await;
    let with_alpn = |alpn: Vec<Vec<u8>>| {
        let provider = provider();
        let verifier = PinnedCertificate {
            pin: sha256(leaf.cert_der()),
            provider: Arc::clone(&provider),
        };
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        config.alpn_protocols = alpn;
        TlsConfig::from_rustls(Arc::new(config))
    };
    let refused = [
        (
            "an empty name",
            vec![b"h2".to_vec(), Vec::new()],
            Vec::new(),
        ),
        ("a 256-byte name", vec![vec![b'a'; 256]], vec![b'a'; 256]),
    ];
    for (what, alpn, named) in refused {
        let socket = a_socket(&selector)
            .tcp()
            .connect(("localhost", server.port()))
            .await
            .unwrap();
        let e = within(socket.tls(with_alpn(alpn))).await.unwrap_err();
        assert!(
            matches!(&e, Error::InvalidAlpnProtocol { protocol, .. } if *protocol == named),
            "{what}: {e:?}"
        );
    }
    let mut good = server
        .good_client(&selector, with_alpn(vec![b"h2".to_vec()]))
        .await;
    assert_eq!(good.connection().alpn_protocol(), Some(&b"h2"[..]));
    good.round_trip("a well-formed list").await;
    server.finish_good(good).await;
}

/// A self-signed certificate with the given DNS SANs (none: no SAN extension) and common name.
fn certificate(
    sans: &[&str],
    common_name: Option<&str>,
) -> (CertificateDer<'static>, net_tls::PrivateKeyDer<'static>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
            .unwrap();
    let mut dn = rcgen::DistinguishedName::new();
    if let Some(cn) = common_name {
        dn.push(rcgen::DnType::CommonName, cn);
    }
    params.distinguished_name = dn;
    let cert = params.self_signed(&key).unwrap();
    let key = net_tls::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    (cert.der().clone(), key)
}

/// The check of `sni_certificate_der` that the leaf covers the name, on the cases it must take: a name in another case
/// than the certificate's, with the trailing dot of a fully qualified name, a wildcard, and a
/// certificate that also names an IP address.
#[test]
fn sni_certificates_that_cover_the_name_are_taken() {
    for (sans, name) in [
        (&["other.test"][..], "OTHER.TEST."),
        (&["Other.Test"][..], "other.test"),
        (&["*.example.com"][..], "A.Example.Com."),
        (&["127.0.0.1", "other.test"][..], "other.test"),
    ] {
        let (cert, key) = certificate(sans, None);
        let taken = TlsServerConfig::builder().sni_certificate_der(name, [cert], key);
        assert!(taken.is_ok(), "{sans:?} for {name:?}: {taken:?}");
    }
    // And those it must refuse: the wildcard's own parent, a deeper name, an IP-only leaf.
    for (sans, name) in [
        (&["*.example.com"][..], "example.com"),
        (&["*.example.com"][..], "a.b.example.com"),
        (&["127.0.0.1"][..], "localhost"),
    ] {
        let (cert, key) = certificate(sans, None);
        let taken = TlsServerConfig::builder().sni_certificate_der(name, [cert], key);
        assert!(taken.is_err(), "{sans:?} for {name:?}: taken");
    }
}

/// A leaf without a subjectAltName whose common name is the SNI name (a legacy certificate,
/// which OpenSSL-based clients — python's `ssl`, `s_client -verify_hostname` — still accept by
/// their common-name fallback) is taken, as before the check of the name came (which refused
/// it as `Error::Config(NotValidForName..)`, though not every client fails with it).
#[test]
fn a_common_name_only_sni_certificate_is_taken_as_before() {
    let (cert, key) = certificate(&[], Some("other.test"));
    let taken = TlsServerConfig::builder().sni_certificate_der("other.test", [cert], key);
    assert!(taken.is_ok(), "{taken:?}");
}
