//! Claims of the TLS rows of `guarantees.md` that none of the tests the rows named asserted.

use net_tests::pki::TestCa;
use net_tls::{Error, rustls};

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
                assert!(
                    reason.contains("certificate 2 "),
                    "required {required}: {text}"
                );
                assert!(
                    reason.contains("trust anchor"),
                    "required {required}: {text}"
                );
            }
            other => panic!("required {required}: not a PEM error: {other:?} ({text})"),
        }
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{text}");
    }
    // The good certificates alone are taken.
    let good = format!("{}{}", first.pem(), second.pem());
    assert!(
        server
            .server_config()
            .client_auth_required(good.as_bytes())
            .is_ok()
    );
    assert!(
        server
            .server_config()
            .client_auth_optional(good.as_bytes())
            .is_ok()
    );
}

/// The peer's fatal alert in a session of ours, read by `until_input_arrives`'s caller next:
/// (our server's socket, the peer's raw TCP stream).
async fn a_session_the_peer_aborted(
    listener: &net_sockets::ServerSocket,
    ca: &TestCa,
    config: &net_tls::TlsServerConfig,
) -> (net_tls::TlsSocket, tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let (server, mut tcp, mut conn) = net_tests::tls::manual_pair(listener, ca, config).await;
    // The peer gets a record it cannot decrypt, and answers with its fatal alert.
    conn.read_tls(&mut &b"\x17\x03\x03\x00\x20corrupted record, not decryptable"[..])
        .unwrap();
    assert!(conn.process_new_packets().is_err());
    let alert = net_tests::tls::records(&mut conn);
    assert!(!alert.is_empty(), "the peer's fatal alert");
    tcp.write_all(&alert).await.unwrap();
    (server, tcp)
}

/// Whether `e` is the peer's fatal alert as the row says: kind `InvalidData`, inner
/// `rustls::Error::AlertReceived(_)`.
fn is_the_peers_alert(e: &net_io::Error) -> bool {
    e.kind() == std::io::ErrorKind::InvalidData
        && matches!(
            net_tests::tls::rustls_error(e),
            Some(rustls::Error::AlertReceived(_))
        )
}

/// [`is_the_peers_alert`] for the stream view's `io::Error`.
fn is_the_peers_alert_io(e: std::io::Error) -> bool {
    is_the_peers_alert(&net_io::Error::from(e))
}

/// What the peer has received since it was last drained: `None` for nothing at all (no
/// record, no FIN). Loopback hands a segment to the peer's socket before the send returns.
fn received_since(tcp: &tokio::net::TcpStream) -> Option<usize> {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    for _ in 0..1000 {
        match tcp.try_read(&mut buf) {
            Ok(0) => return Some(total),
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return (total > 0).then_some(total);
            }
            Err(e) => panic!("the peer's read: {e:?}"),
        }
    }
    panic!("the peer keeps receiving");
}

/// Row "The peer's fatal alert ..., which a read of ours reported, then our half-close": the
/// read fails with `net_io::Error::Io`, kind `InvalidData`, inner `AlertReceived(_)`; then
/// writes, flushes, the write channel's `flush_and_close` and a `TlsStream`'s `shutdown` all
/// fail with that error, and the shutdown sends nothing. (The named test checked that the read's
/// error shows `AlertReceived` and that the half-close fails, not the writes, the flushes, the
/// kinds, nor what the peer receives.)
#[tokio::test]
async fn after_the_peers_fatal_alert_every_write_side_call_fails_with_it_and_sends_nothing() {
    use net_sockets::SelectorManager;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let selector = SelectorManager::new();
    let ca = TestCa::new("rows fatal alert ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = net_tests::loopback::tcp_listener(&selector).await;

    // Through the channels.
    let (mut server, tcp) = a_session_the_peer_aborted(&listener, &ca, &config).await;
    let mut input = server.open_read_channel().unwrap();
    let mut output = server.open_write_channel(false).unwrap();
    let e = net_tests::within(input.read_line(1024, net_io::LineEnding::Default))
        .await
        .unwrap_err();
    assert!(matches!(e, net_io::Error::Io(_)), "{e:?}");
    assert!(is_the_peers_alert(&e), "read: {e:?}");
    let _ = received_since(&tcp); // the session tickets
    // A write that would only add bytes to the channel's buffer too.
    let e = net_tests::within(output.write_string_utf8("late\n"))
        .await
        .unwrap_err();
    assert!(is_the_peers_alert(&e), "write: {e:?}");
    let e = net_tests::within(output.flush()).await.unwrap_err();
    assert!(is_the_peers_alert(&e), "flush: {e:?}");
    let e = net_tests::within(output.flush_and_close())
        .await
        .unwrap_err();
    assert!(is_the_peers_alert(&e), "flush_and_close: {e:?}");
    assert_eq!(
        received_since(&tcp),
        None,
        "the channel's half-close sent something"
    );
    drop((input, output, server, tcp));

    // Through the stream view.
    let (server, tcp) = a_session_the_peer_aborted(&listener, &ca, &config).await;
    let mut stream = server.into_stream().unwrap();
    let mut buf = [0u8; 64];
    let e = net_tests::within(stream.read(&mut buf)).await.unwrap_err();
    let shown = format!("{e:?}");
    assert!(is_the_peers_alert_io(e), "read: {shown}");
    let _ = received_since(&tcp); // the session tickets
    let e = net_tests::within(stream.write(b"late\n"))
        .await
        .unwrap_err();
    let shown = format!("{e:?}");
    assert!(is_the_peers_alert_io(e), "write: {shown}");
    let e = net_tests::within(stream.flush()).await.unwrap_err();
    let shown = format!("{e:?}");
    assert!(is_the_peers_alert_io(e), "flush: {shown}");
    let e = net_tests::within(stream.shutdown()).await.unwrap_err();
    let shown = format!("{e:?}");
    assert!(is_the_peers_alert_io(e), "shutdown: {shown}");
    assert_eq!(
        received_since(&tcp),
        None,
        "the stream's shutdown sent something"
    );
}

/// Row "A name given to `sni_certificate_pem` / `_der` that no client sends by SNI": the setter
/// fails with `InvalidSniName { name, .. }`, the name as given, kind `InvalidInput`; and row
/// "A client `server_name` that is empty, neither a DNS name nor an IP address, or bracketed
/// around anything but an IPv6 literal, or with a scope on anything but an IPv6 literal":
/// `build()` fails with `InvalidServerName { name, .. }`, kind `InvalidInput`. (The named unit
/// tests checked the variants, through `sni_certificate_der` only, and not the kinds.)
#[test]
fn unusable_sni_and_server_names_are_the_documented_variants_of_kind_invalid_input() {
    let leaf = TestCa::new("names ca").server(&["localhost"]);
    for name in [
        "*.example.com",
        "127.0.0.1",
        "::1",
        "",
        "b\u{fc}cher.example",
        "a.test..",
    ] {
        let e = leaf
            .server_config()
            .sni_certificate_pem(name, leaf.chain_pem().as_bytes(), leaf.key_pem().as_bytes())
            .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidSniName { name: n, .. } if n == name),
            "{name:?}: {e:?}"
        );
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::InvalidInput,
            "{name:?}: {e:?}"
        );
    }
    for name in ["", "a b", "[localhost]", "[127.0.0.1]", "localhost%eth0"] {
        let e = TestCa::new("names ca")
            .client_config()
            .server_name(name)
            .build()
            .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidServerName { name: n, .. } if n == name),
            "{name:?}: {e:?}"
        );
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::InvalidInput,
            "{name:?}: {e:?}"
        );
    }
}
