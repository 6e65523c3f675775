//! Fault suite, TLS: garbage instead of a handshake, a silent client, wrong host, untrusted and
//! expired certificates, a missing client certificate under mutual TLS, and truncation without
//! `close_notify` — each while one well-behaved TLS session with the same server stays open and
//! is answered between the cases (`tests/tls.rs` checks the same failures one by one, with a
//! good client served only afterwards).

use std::time::Duration;

use net_sockets::{SelectorManager, a_socket};
use net_tests::greeting::GreetingClient;
use net_tests::pki::TestCa;
use net_tests::tls::{
    GoodTlsClient, TlsLineServer, assert_refused_without_certificate, certificate_error, connect,
    garbage_client, is_expired, is_not_valid_for_name, is_truncated, is_unknown_issuer,
};
use net_tests::within;
use net_tls::rustls::{self, AlertDescription, CertificateError};
use net_tls::{Error, TlsExt};
use tokio::io::AsyncReadExt;

/// Ends the good session cleanly (close_notify both ways) and checks that the server read
/// every line it sent; its session must be the next report (nothing else ended unexamined).
async fn finish(good: GoodTlsClient, server: &mut TlsLineServer) {
    let sent = good.finish().await;
    let outcome = server.next().await.expect("the good session").outcome;
    outcome.end.expect("the good session ended cleanly");
    assert_eq!(outcome.lines, sent);
}

/// The server's handshake timeout, which every handshake of the test runs under: the silent
/// client's ends the test's wait for it, and the others (the good clients', and those the
/// client fails with an alert) must finish well within it on a loaded machine. (At 500 ms, a
/// starved test saw `HandshakeTimeout` where the client's alert was expected, or a good
/// client's session end as its server side had timed out.)
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Asserts that the next report is a failed handshake, and returns its error.
async fn failed_handshake(server: &mut TlsLineServer) -> Error {
    server.next().await.expect_err("a failed handshake")
}

#[tokio::test]
async fn hostile_tls_clients_fail_typed_while_a_session_goes_on() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("test ca");
    let other_ca = TestCa::new("other ca");
    let expired = ca.expired_server(&["expired.test"]);
    let untrusted = other_ca.server(&["untrusted.test"]);
    let config = ca.server(&["localhost"]).server_config();
    let config = expired.sni_certificate("expired.test", config);
    let config = untrusted
        .sni_certificate("untrusted.test", config)
        .handshake_timeout(HANDSHAKE_TIMEOUT)
        .build()
        .unwrap();
    let mut server = TlsLineServer::lines(&selector, config).await;
    let port = server.port();
    let named = |name: &str| ca.client_config().server_name(name).build().unwrap();
    let mut good = server.good_client(&selector, named("localhost")).await;
    good.round_trip("first").await;

    // Garbage instead of a ClientHello: a typed handshake error; the raw connection is closed.
    let mut garbage = garbage_client(port).await;
    let e = failed_handshake(&mut server).await;
    assert!(
        matches!(e, Error::Handshake(rustls::Error::InvalidMessage(_))),
        "{e:?}"
    );
    let mut rest = Vec::new();
    let _ = within(garbage.read_to_end(&mut rest)).await; // EOF or reset: not a hang
    good.round_trip("after garbage").await;

    // A silent client: the handshake times out; meanwhile the session is answered.
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    good.round_trip("while a client is silent").await;
    let e = failed_handshake(&mut server).await;
    assert!(matches!(e, Error::HandshakeTimeout(_)), "{e:?}");
    let mut buf = [0u8; 16];
    assert!(matches!(
        within(silent.read(&mut buf)).await,
        Ok(0) | Err(_)
    ));
    good.round_trip("after the silent client").await;

    // Certificates the client rejects: wrong host, untrusted issuer, expired; the server is
    // told why by the client's alert.
    type Check = fn(&CertificateError) -> bool;
    let cases: [(&str, Check, AlertDescription); 3] = [
        (
            "wrong.test",
            is_not_valid_for_name,
            AlertDescription::BadCertificate,
        ),
        (
            "untrusted.test",
            is_unknown_issuer,
            AlertDescription::UnknownCA,
        ),
        (
            "expired.test",
            is_expired,
            AlertDescription::CertificateExpired,
        ),
    ];
    for (name, check, alert) in cases {
        let e = within(connect(&selector, "127.0.0.1", port, named(name)))
            .await
            .unwrap_err();
        assert!(certificate_error(&e).is_some_and(check), "{name}: {e:?}");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{name}: {e:?}");
        let server_side = failed_handshake(&mut server).await;
        assert!(
            matches!(
                &server_side,
                Error::Handshake(rustls::Error::AlertReceived(seen)) if *seen == alert
            ),
            "{name}: the server saw the client's alert {alert:?}: {server_side:?}"
        );
        good.round_trip(&format!("after {name}")).await;
    }

    // Truncation: a client closes the TCP connection without close_notify mid-conversation.
    let socket = a_socket(&selector)
        .tcp()
        .connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tls = within(socket.tls(named("localhost"))).await.unwrap();
    // Read everything the server sends before leaving: unread data would turn the FIN into a
    // reset.
    let mut truncating = GreetingClient::start(tls).await;
    truncating.round_trip("whole line").await;
    truncating.say(b"half a li").await;
    // FIN without close_notify.
    truncating
        .connection()
        .with_sock_ref(|s| s.shutdown(std::net::Shutdown::Write))
        .unwrap();
    let outcome = server.next().await.expect("a truncated session").outcome;
    assert_eq!(outcome.lines, ["whole line"]);
    let e = outcome.end.unwrap_err();
    assert!(is_truncated(&e), "{e:?}");
    drop(truncating);
    good.round_trip("after truncation").await;
    finish(good, &mut server).await;
}

#[tokio::test]
async fn a_client_without_certificate_is_refused_under_mutual_tls_while_others_are_served() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("test ca");
    let client_ca = TestCa::new("client ca");
    let client_leaf = client_ca.client("client.test");
    let config = ca
        .server(&["localhost"])
        .mutual_tls_server_config(&client_ca)
        .build()
        .unwrap();
    let mut server = TlsLineServer::lines(&selector, config).await;
    let trusting = || ca.client_config().server_name("localhost");
    let certified = client_leaf.client_certificate(trusting()).build().unwrap();
    let mut good = server.good_client(&selector, certified).await;
    good.round_trip("certified").await;

    let anonymous = trusting().build().unwrap();
    let client = within(connect(&selector, "127.0.0.1", server.port(), anonymous)).await;
    assert_refused_without_certificate(client).await;
    let e = failed_handshake(&mut server).await;
    assert!(
        matches!(e, Error::Handshake(rustls::Error::NoCertificatesPresented)),
        "{e:?}"
    );
    good.round_trip("still certified").await;
    finish(good, &mut server).await;
}
