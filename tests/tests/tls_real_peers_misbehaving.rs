//! TLS against real and byte-level peers that misbehave in ways the other suites leave out:
//! data and `close_notify` then a reset; application data right behind a ClientHello; a
//! client that goes away after each of its handshake flights; a ClientHello padded to nearly
//! 64 KiB in many segments; alerts and content types TLS does not define; `close_notify` at the
//! fatal level or after `user_canceled`; a KeyUpdate request, then `close_notify` and a reset;
//! server names by SNI at and over the length limit of a DNS name (`openssl s_client
//! -servername`), with and without a fully qualified name's trailing dot.

use std::io;
use std::time::Duration;

use net_io::ByteReadChannel;
use net_sockets::SelectorManager;
use net_tests::pki::TestCa;
use net_tests::tls::{is_truncated, rustls_server};
use net_tests::within;
use net_tls::rustls;
use tokio::io::AsyncWriteExt;

/// How the peer ends after its data and `close_notify`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum After {
    /// A FIN (tokio-rustls's `shutdown`), then a reset (`SO_LINGER` 0, then the drop).
    FinThenReset,
    /// A reset at once (`SO_LINGER` 0, then the drop), no FIN.
    Reset,
}

/// What our read channel returned: the lines, then the end, twice.
type OurView = (Vec<String>, Vec<Option<(io::ErrorKind, bool)>>);

async fn our_view(input: &mut ByteReadChannel) -> OurView {
    let mut lines = Vec::new();
    let mut ends = Vec::new();
    while ends.len() < 2 && lines.len() < 10 {
        match within(input.read_utf8_line(64)).await {
            Ok(Some(line)) => lines.push(line),
            Ok(None) => ends.push(None),
            Err(e) => ends.push(Some((e.kind(), is_truncated(&e)))),
        }
    }
    (lines, ends)
}

/// A tokio-rustls server sends three lines (the last without its newline) and `close_notify`,
/// then ends as `after` says: our TLS 1.3 client reads every line, then a clean end, whether
/// its first read ran before the reset arrived or after (`read_first`); and through
/// `into_stream`, `read_to_end` returns every byte.
#[tokio::test]
async fn data_and_close_notify_then_a_reset_give_every_line_then_a_clean_end() {
    use tokio::io::AsyncReadExt;
    let selector = SelectorManager::new();
    let ca = TestCa::new("misbehaving peers ca");
    let leaf = ca.server(&["localhost"]);
    let acceptor = tokio_rustls::TlsAcceptor::from(rustls_server(&leaf));
    let all = vec!["one".to_owned(), "two".to_owned(), "thr".to_owned()];
    for after in [After::FinThenReset, After::Reset] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let client_config = ca.client_config().build().unwrap();
        let (ours, peer) = tokio::join!(
            net_tests::tls::connect(&selector, "localhost", port, client_config),
            async {
                let tcp = listener.accept().await.unwrap().0;
                acceptor.accept(tcp).await.unwrap()
            }
        );
        let mut stream = ours.unwrap().into_stream().unwrap();
        let mut peer = peer;
        peer.get_ref().0.set_nodelay(true).unwrap();
        within(peer.write_all(b"one\ntwo\nthr")).await.unwrap();
        match after {
            After::FinThenReset => within(peer.shutdown()).await.unwrap(),
            After::Reset => {
                peer.get_mut().1.send_close_notify();
                within(peer.flush()).await.unwrap();
            }
        }
        socket2::SockRef::from(peer.get_ref().0)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(peer);
        let mut bytes = Vec::new();
        let read = within(stream.read_to_end(&mut bytes)).await;
        assert_eq!(
            (read.map_err(|e| e.kind()), bytes.as_slice()),
            (Ok(11), &b"one\ntwo\nthr"[..]),
            "stream, {after:?}"
        );
        for read_first in [false, true] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let client_config = ca.client_config().build().unwrap();
            let (ours, peer) = tokio::join!(
                net_tests::tls::connect(&selector, "localhost", port, client_config),
                async {
                    let tcp = listener.accept().await.unwrap().0;
                    acceptor.accept(tcp).await.unwrap()
                }
            );
            let mut ours = ours.unwrap();
            let mut input = ours.open_read_channel().unwrap();
            let mut peer = peer;
            peer.get_ref().0.set_nodelay(true).unwrap();
            within(peer.write_all(b"one\ntwo\nthr")).await.unwrap();
            within(peer.flush()).await.unwrap();
            if read_first {
                // Our read takes the first line before the peer ends.
                assert_eq!(
                    within(input.read_utf8_line(64)).await.unwrap().as_deref(),
                    Some("one")
                );
            }
            match after {
                After::FinThenReset => within(peer.shutdown()).await.unwrap(),
                After::Reset => {
                    peer.get_mut().1.send_close_notify();
                    within(peer.flush()).await.unwrap();
                }
            }
            socket2::SockRef::from(peer.get_ref().0)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(peer);
            let (mut lines, ends) = our_view(&mut input).await;
            if read_first {
                lines.insert(0, "one".to_owned());
            }
            assert_eq!(
                (lines, ends),
                (all.clone(), vec![None, None]),
                "{after:?}, read first: {read_first}"
            );
            ours.close();
        }
    }
}

/// The first flight of a rustls client (TLS 1.3 and 1.2): one ClientHello for `localhost`.
fn client_hello(ca: &TestCa) -> Vec<u8> {
    client_hello_of(ca, rustls::DEFAULT_VERSIONS)
}

/// The first flight of a rustls client that offers `versions`.
fn client_hello_of(ca: &TestCa, versions: &[&'static rustls::SupportedProtocolVersion]) -> Vec<u8> {
    let config = net_tests::tls::rustls_client_config(ca, versions);
    let mut client = rustls::ClientConnection::new(config, net_tests::tls::localhost()).unwrap();
    let mut hello = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut hello).unwrap();
    }
    hello
}

/// A client that sends application data right behind its ClientHello, in the same segment,
/// as a 0-RTT attempt would without offering early data (no `early_data` extension), offering
/// TLS 1.3 or TLS 1.2 only: our server's handshake fails at once with rustls's typed error
/// (TLS 1.3: `DecryptError`, the record read with the handshake keys; TLS 1.2:
/// `InappropriateMessage`), kind `InvalidData`, long before its handshake timeout, and a
/// session with the same server is answered before, between and after.
#[tokio::test]
async fn application_data_right_behind_a_client_hello_fails_the_handshake_typed_at_once() {
    use net_tests::tls::TlsLineServer;
    let selector = SelectorManager::new();
    let ca = TestCa::new("early bytes ca");
    let config = ca
        .server(&["localhost"])
        .server_config()
        .handshake_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut server = TlsLineServer::lines(&selector, config).await;
    let port = server.port();
    let mut good = server
        .good_client(
            &selector,
            ca.client_config().server_name("localhost").build().unwrap(),
        )
        .await;
    good.round_trip("before").await;
    let started = std::time::Instant::now();
    let tls12: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
    let mut kept = Vec::new();
    for versions in [rustls::DEFAULT_VERSIONS, tls12] {
        let mut bytes = client_hello_of(&ca, versions);
        // An application-data record of 32 bytes, as a client's first 0-RTT record would look.
        bytes.extend_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x20]);
        bytes.extend_from_slice(&[0xab; 32]);
        let mut tcp = within(tokio::net::TcpStream::connect(("127.0.0.1", port)))
            .await
            .unwrap();
        within(tcp.write_all(&bytes)).await.unwrap();
        kept.push(tcp);
        let e = within(server.failed_handshake()).await;
        let expected = if versions.len() == 1 {
            // TLS 1.2: an application-data record where a handshake message must come.
            matches!(
                e,
                net_tls::Error::Handshake(rustls::Error::InappropriateMessage {
                    got_type: rustls::ContentType::ApplicationData,
                    ..
                })
            )
        } else {
            // TLS 1.3: after its ServerHello the server reads the client's records with the
            // handshake keys, which the record cannot be decrypted with.
            matches!(e, net_tls::Error::Handshake(rustls::Error::DecryptError))
        };
        assert!(expected, "{versions:?}: {e:?}");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{versions:?}: {e:?}");
        good.round_trip(&format!("{versions:?}")).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "decided by the handshake timeout: {:?}",
        started.elapsed()
    );
    good.round_trip("after").await;
    drop(kept);
    server.finish_good(good).await;
}

/// How a raw client ends its connection in the middle of a handshake.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cut {
    /// `shutdown(Write)`: a FIN.
    Fin,
    /// `SO_LINGER` 0, then the drop: a reset.
    Reset,
}

/// Clients that send a whole ClientHello (TLS 1.3, or TLS 1.2 only), then end the connection
/// (FIN or reset) before the server's flight came back, or after reading the start of it: each
/// fails our server's handshake at once with `Error::Socket` of kind `UnexpectedEof` (a FIN) or
/// `ConnectionReset` (a reset, or a FIN with the server's flight unread, which the kernel may
/// answer with a reset), never by its handshake timeout; a session with the same server is
/// answered in between. (The existing matrix cuts half a ClientHello only.)
#[tokio::test]
async fn a_client_that_ends_after_each_of_its_flights_fails_the_handshake_typed_at_once() {
    use net_tests::tls::TlsLineServer;
    use tokio::io::AsyncReadExt;
    let selector = SelectorManager::new();
    let ca = TestCa::new("cut flights ca");
    let config = ca
        .server(&["localhost"])
        .server_config()
        .handshake_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut server = TlsLineServer::lines(&selector, config).await;
    let port = server.port();
    let mut good = server
        .good_client(
            &selector,
            ca.client_config().server_name("localhost").build().unwrap(),
        )
        .await;
    good.round_trip("before").await;
    let started = std::time::Instant::now();
    let tls12: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
    for versions in [rustls::DEFAULT_VERSIONS, tls12] {
        let hello = client_hello_of(&ca, versions);
        for read_the_flight in [false, true] {
            for cut in [Cut::Fin, Cut::Reset] {
                let what = format!("{versions:?}, read the flight: {read_the_flight}, {cut:?}");
                let mut tcp = within(tokio::net::TcpStream::connect(("127.0.0.1", port)))
                    .await
                    .unwrap();
                within(tcp.write_all(&hello)).await.unwrap();
                if read_the_flight {
                    let mut header = [0u8; 5];
                    within(tcp.read_exact(&mut header)).await.unwrap();
                    assert_eq!(header[0], 0x16, "{what}: a handshake record");
                }
                let kept = match cut {
                    Cut::Fin => {
                        within(tcp.shutdown()).await.unwrap();
                        Some(tcp)
                    }
                    Cut::Reset => {
                        socket2::SockRef::from(&tcp)
                            .set_linger(Some(Duration::ZERO))
                            .unwrap();
                        drop(tcp);
                        None
                    }
                };
                let e = within(server.failed_handshake()).await;
                assert!(matches!(e, net_tls::Error::Socket(_)), "{what}: {e:?}");
                let expected: &[io::ErrorKind] = match cut {
                    Cut::Fin => &[io::ErrorKind::UnexpectedEof, io::ErrorKind::ConnectionReset],
                    Cut::Reset => &[io::ErrorKind::ConnectionReset],
                };
                assert!(expected.contains(&e.kind()), "{what}: {e:?}");
                drop(kept);
                good.round_trip(&what).await;
            }
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "decided by the handshake timeout: {:?}",
        started.elapsed()
    );
    server.finish_good(good).await;
}

/// `hello` (one ClientHello in one record, as `client_hello` gives it) with a padding extension
/// (type 21) that brings the handshake message's body to `body_len` bytes, in records of at
/// most 16 KiB.
fn padded_client_hello(hello: &[u8], body_len: usize) -> Vec<u8> {
    assert_eq!(hello[0], 0x16, "a handshake record");
    let record_len = usize::from(u16::from_be_bytes([hello[3], hello[4]]));
    assert_eq!(hello.len(), 5 + record_len, "one record");
    let message = &hello[5..];
    assert_eq!(message[0], 1, "a ClientHello");
    let mut body = message[4..].to_vec();
    // version (2), random (32), session id, cipher suites, compression methods, extensions
    let mut at = 34;
    at += 1 + usize::from(body[at]);
    at += 2 + usize::from(u16::from_be_bytes([body[at], body[at + 1]]));
    at += 1 + usize::from(body[at]);
    let extensions_at = at;
    let extensions_len = usize::from(u16::from_be_bytes([body[at], body[at + 1]]));
    assert_eq!(body.len(), extensions_at + 2 + extensions_len);
    let padding = body_len - body.len() - 4;
    body.extend_from_slice(&[0x00, 0x15]);
    body.extend_from_slice(&u16::try_from(padding).unwrap().to_be_bytes());
    body.resize(body.len() + padding, 0);
    let extensions_len = u16::try_from(body.len() - extensions_at - 2).unwrap();
    body[extensions_at..extensions_at + 2].copy_from_slice(&extensions_len.to_be_bytes());
    assert_eq!(body.len(), body_len);
    let mut message = vec![1];
    message.extend_from_slice(&u32::try_from(body_len).unwrap().to_be_bytes()[1..]);
    message.extend_from_slice(&body);
    let mut records = Vec::new();
    for chunk in message.chunks(16 * 1024) {
        records.extend_from_slice(&[0x16, 0x03, 0x01]);
        records.extend_from_slice(&u16::try_from(chunk.len()).unwrap().to_be_bytes());
        records.extend_from_slice(chunk);
    }
    records
}

/// A ClientHello padded to nearly 64 KiB (a padding extension, in four records, as large as
/// the extensions' length field lets it be), sent in segments of 1,000 bytes with pauses
/// between them, is answered as any other: the server's flight comes back (rustls takes
/// handshake messages of up to 64 KiB). The client then goes away, and the server's handshake
/// fails typed at once; a session with the same server is answered meanwhile.
#[tokio::test]
async fn a_client_hello_padded_to_nearly_64_kib_in_many_segments_is_answered() {
    use net_tests::tls::TlsLineServer;
    use tokio::io::AsyncReadExt;
    let selector = SelectorManager::new();
    let ca = TestCa::new("padded hello ca");
    let config = ca
        .server(&["localhost"])
        .server_config()
        .handshake_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut server = TlsLineServer::lines(&selector, config).await;
    let port = server.port();
    let mut good = server
        .good_client(
            &selector,
            ca.client_config().server_name("localhost").build().unwrap(),
        )
        .await;
    good.round_trip("before").await;
    let hello = padded_client_hello(&client_hello(&ca), 65_000);
    assert!(hello.len() > 65_000, "{}", hello.len());
    let mut tcp = within(tokio::net::TcpStream::connect(("127.0.0.1", port)))
        .await
        .unwrap();
    tcp.set_nodelay(true).unwrap();
    for (i, segment) in hello.chunks(1000).enumerate() {
        within(tcp.write_all(segment)).await.unwrap();
        if i % 16 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            good.round_trip(&format!("during segment {i}")).await;
        }
    }
    let mut header = [0u8; 5];
    within(tcp.read_exact(&mut header)).await.unwrap();
    // A handshake record: the ServerHello, not an alert (21).
    assert_eq!(header[0], 0x16, "{header:?}");
    within(tcp.shutdown()).await.unwrap();
    let e = within(server.failed_handshake()).await;
    assert!(matches!(e, net_tls::Error::Socket(_)), "{e:?}");
    drop(tcp);
    good.round_trip("after").await;
    server.finish_good(good).await;
}

/// A TLS 1.3 session with our server whose client is a tokio-rustls client taken apart: the
/// client's TCP stream and the writer of its records, to send what rustls would not.
async fn raw_tls13_peer(
    selector: &SelectorManager,
    ca: &TestCa,
) -> (
    tokio::net::TcpStream,
    net_tests::records::RecordWriter,
    net_tls::TlsSocket,
) {
    let (tcp, _session, records, server) = net_tests::records::raw_tls13_peer(selector, ca).await;
    (tcp, records, server)
}

/// A TLS 1.3 peer sends a line, then an alert whose code TLS does not define (200), as a
/// warning or as a fatal alert, or a record of a content type TLS does not define (99), then
/// another line, all in one segment: our server reads the first line, then its read fails with
/// rustls's typed error (kind `InvalidData`; `AlertReceived(Unknown(200))`, TLS 1.3 taking
/// every warning but `user_canceled` as fatal, or `InvalidMessage(InvalidContentType)`), again
/// on the next read; the line after it is
/// never delivered, and nothing waits or panics.
#[tokio::test]
async fn unknown_alerts_and_content_types_after_a_line_fail_the_read_typed() {
    use net_io::LineEnding;
    use net_tests::tls::rustls_error;
    use rustls::ContentType;
    let selector = SelectorManager::new();
    let ca = TestCa::new("unknown alerts ca");
    let unknown = rustls::Error::AlertReceived(rustls::AlertDescription::Unknown(200));
    let bad_type = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
    let cases: [(&str, ContentType, &[u8], &rustls::Error); 3] = [
        ("warning 200", ContentType::Alert, &[1, 200], &unknown),
        ("fatal 200", ContentType::Alert, &[2, 200], &unknown),
        (
            "content type 99",
            ContentType::Unknown(99),
            b"what is this",
            &bad_type,
        ),
    ];
    for (what, typ, payload, expected) in cases {
        let (mut tcp, mut records, mut server) = raw_tls13_peer(&selector, &ca).await;
        let mut bytes = Vec::new();
        records.record(ContentType::ApplicationData, b"first\n", &mut bytes);
        records.record(typ, payload, &mut bytes);
        records.record(ContentType::ApplicationData, b"second\n", &mut bytes);
        within(tcp.write_all(&bytes)).await.unwrap();
        let mut input = server.open_read_channel().unwrap();
        let line = within(input.read_line(64, LineEnding::Default)).await;
        assert_eq!(line.unwrap().as_deref(), Some("first"), "{what}");
        for _ in 0..2 {
            let e = within(input.read_line(64, LineEnding::Default))
                .await
                .expect_err(what);
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}: {e:?}");
            assert_eq!(rustls_error(&e), Some(expected), "{what}: {e:?}");
        }
        server.close();
    }
}

/// A name sent by SNI longer than a DNS name may be (`openssl s_client -servername` with four
/// labels of 63 characters, 255 in all; OpenSSL sends names of up to 255 characters) fails
/// our server's handshake, with SNI certificates or without, as every name that is not a DNS
/// name does: `Handshake(PeerMisbehaved(ServerNameMustContainOneHostName))`, at
/// once, and the client is told `illegal_parameter`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_names_longer_than_a_dns_name_fail_the_handshake_typed() {
    use net_sockets::a_socket;
    use net_tests::harness::Process;
    use net_tests::pki::Pki;
    use net_tls::TlsExt;
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let named = pki.ca.server(&["other.test"]);
    let with_sni = named
        .sni_certificate("other.test", pki.server_config())
        .build()
        .unwrap();
    let without_sni = pki.server_config().build().unwrap();
    let label = "x".repeat(63);
    let of_255 = [label.as_str(); 4].join(".");
    assert_eq!(of_255.len(), 255);
    for config in [with_sni, without_sni] {
        for name in [&of_255] {
            let listener = a_socket(&selector)
                .tcp()
                .bind(("127.0.0.1", 0))
                .await
                .unwrap();
            let port = listener.port().unwrap();
            let config = config.clone();
            let task =
                tokio::spawn(async move { listener.accept().await?.tls_server(&config).await });
            let args = [
                "s_client".to_owned(),
                "-brief".to_owned(),
                "-connect".to_owned(),
                format!("127.0.0.1:{port}"),
                "-servername".to_owned(),
                name.clone(),
            ];
            let s_client = tokio::task::spawn_blocking(move || Process::run("openssl", args));
            let served = within(task).await.unwrap();
            assert!(
                matches!(
                    served,
                    Err(net_tls::Error::Handshake(rustls::Error::PeerMisbehaved(
                        rustls::PeerMisbehaved::ServerNameMustContainOneHostName
                    )))
                ),
                "{}: {served:?}",
                name.len()
            );
            let finished = within(s_client).await.unwrap();
            let told = finished.stderr.join("\n");
            assert!(
                told.contains("alert illegal parameter"),
                "{}: {finished:?}",
                name.len()
            );
        }
    }
}

/// Server names by SNI at the limit of a DNS name's length, sent by `openssl s_client` to a
/// server with SNI certificates for a name of 252 characters and one of 253 (the longest):
/// the name of 252 with a fully qualified name's trailing dot, and the name of 253 without
/// it, get their certificates (the server reports them without the dot); the name of 253 with
/// the dot (254 characters) is refused by rustls, which takes SNI names of up to 253
/// characters, dot included: `Handshake(PeerMisbehaved(ServerNameMustContainOneHostName))`,
/// the client told `illegal_parameter`, as the docs of `sni_certificate_pem` now say. (They
/// said SNI names were compared without regard to the trailing dot, with no exception.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_dns_names_by_sni_with_and_without_their_trailing_dot() {
    use net_sockets::a_socket;
    use net_tests::harness::{Process, path_arg};
    use net_tests::pki::Pki;
    use net_tls::TlsExt;
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let files = pki.temp_files();
    let label = "x".repeat(63);
    let of_253 = format!("{label}.{label}.{label}.{}", "z".repeat(61));
    let of_252 = format!("{label}.{label}.{label}.{}", "y".repeat(60));
    assert_eq!((of_253.len(), of_252.len()), (253, 252));
    let config = pki
        .ca
        .server(&[of_253.as_str()])
        .sni_certificate(
            &of_253,
            pki.ca
                .server(&[of_252.as_str()])
                .sni_certificate(&of_252, pki.server_config()),
        )
        .build()
        .unwrap();
    for (sent, served) in [
        (format!("{of_252}."), Some(&of_252)),
        (of_253.clone(), Some(&of_253)),
        (format!("{of_253}."), None),
    ] {
        let listener = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = listener.port().unwrap();
        let config = config.clone();
        let task = tokio::spawn(async move { listener.accept().await?.tls_server(&config).await });
        let connect_to = format!("127.0.0.1:{port}");
        let mut s_client = Process::start(
            "openssl",
            [
                "s_client",
                "-brief",
                "-connect",
                &connect_to,
                "-CAfile",
                path_arg(&files.ca),
                "-servername",
                &sent,
            ],
        );
        let handshake = within(task).await.unwrap();
        let told = match served {
            Some(name) => {
                let tls = handshake.unwrap_or_else(|e| panic!("{}: {e:?}", sent.len()));
                assert_eq!(tls.server_name(), Some(name.as_str()), "{}", sent.len());
                drop(tls);
                format!("Peer certificate: CN = {name}")
            }
            None => {
                assert!(
                    matches!(
                        handshake,
                        Err(net_tls::Error::Handshake(rustls::Error::PeerMisbehaved(
                            rustls::PeerMisbehaved::ServerNameMustContainOneHostName
                        )))
                    ),
                    "{}: {handshake:?}",
                    sent.len()
                );
                "alert illegal parameter".to_owned()
            }
        };
        let finished = s_client.finish();
        assert!(
            finished.stderr.iter().any(|l| l.contains(&told)),
            "{}: {finished:?}",
            sent.len()
        );
    }
}

/// Our client given the longest DNS name (253 characters) with a fully qualified name's
/// trailing dot as its `server_name` drops the dot, as it does for every other name: it
/// connects to a server with an SNI certificate for that name, which it verifies, and both
/// sides report the name without the dot. Before, `build()` failed with
/// `InvalidServerName` (rustls counts the dot toward its limit of 253 characters), though the
/// docs say the dot is dropped, and the name without it was taken.
#[tokio::test]
async fn our_client_drops_the_trailing_dot_of_the_longest_dns_name() {
    use net_sockets::a_socket;
    use net_tests::pki::Pki;
    use net_tls::TlsExt;
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let label = "x".repeat(63);
    let of_253 = format!("{label}.{label}.{label}.{}", "z".repeat(61));
    let config = pki
        .ca
        .server(&[of_253.as_str()])
        .sni_certificate(&of_253, pki.server_config())
        .build()
        .unwrap();
    let client = pki
        .ca
        .client_config()
        .server_name(&format!("{of_253}."))
        .build()
        .expect("the longest DNS name with its trailing dot");
    let listener = a_socket(&selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.port().unwrap();
    let (server, client) = within(async {
        tokio::join!(
            async { listener.accept().await.unwrap().tls_server(&config).await },
            net_tests::tls::connect(&selector, "127.0.0.1", port, client)
        )
    })
    .await;
    let (server, client) = (server.unwrap(), client.unwrap());
    assert_eq!(server.server_name(), Some(of_253.as_str()));
    assert_eq!(client.server_name(), Some(of_253.as_str()));
    // Names that are no DNS name with or without one dot stay refused.
    for name in [
        format!("{of_253}.."),
        format!("x{of_253}."),
        "a b.".to_owned(),
    ] {
        let refused = pki.ca.client_config().server_name(&name).build();
        let given = |n: &String| *n == name;
        assert!(
            matches!(&refused, Err(net_tls::Error::InvalidServerName { name: n, .. }) if given(n)),
            "{}: {refused:?}",
            name.len()
        );
    }
}

/// A TLS 1.3 peer ends with `close_notify` sent at the fatal level (as some implementations
/// send it), or with `user_canceled` then `close_notify` (RFC 8446's way to cancel), after a
/// line, all in one segment: our server reads the line, then a clean end, twice; no error.
#[tokio::test]
async fn close_notify_at_the_fatal_level_or_after_user_canceled_is_a_clean_end() {
    use rustls::ContentType;
    let selector = SelectorManager::new();
    let ca = TestCa::new("close notify levels ca");
    let ends: [(&str, &[&[u8]]); 2] = [
        ("fatal close_notify", &[&[2, 0]]),
        ("user_canceled, close_notify", &[&[1, 90], &[1, 0]]),
    ];
    for (what, alerts) in ends {
        let (mut tcp, mut records, mut server) = raw_tls13_peer(&selector, &ca).await;
        let mut bytes = Vec::new();
        records.record(ContentType::ApplicationData, b"first\n", &mut bytes);
        for alert in alerts {
            records.record(ContentType::Alert, alert, &mut bytes);
        }
        within(tcp.write_all(&bytes)).await.unwrap();
        let mut input = server.open_read_channel().unwrap();
        let line = within(input.read_utf8_line(64)).await;
        assert_eq!(line.unwrap().as_deref(), Some("first"), "{what}");
        for _ in 0..2 {
            let end = within(input.read_utf8_line(64)).await;
            assert!(matches!(end, Ok(None)), "{what}: {end:?}");
        }
        server.close();
    }
}

/// A TLS 1.3 peer sends a line, a KeyUpdate that asks for ours (`update_requested`), a line
/// under its next keys and `close_notify`, then resets the connection (or only ends it, FIN):
/// our server, which only reads, reads both lines, then a clean end, twice. Its KeyUpdate
/// reply, which meets the reset, takes nothing away from what the peer sent before its
/// `close_notify`.
#[tokio::test]
async fn a_key_update_request_then_close_notify_and_a_reset_give_every_line_then_the_end() {
    use rustls::ContentType;
    let selector = SelectorManager::new();
    let ca = TestCa::new("key update then reset ca");
    for after in [After::Reset, After::FinThenReset] {
        let (mut tcp, mut records, mut server) = raw_tls13_peer(&selector, &ca).await;
        let mut bytes = Vec::new();
        records.record(ContentType::ApplicationData, b"first\n", &mut bytes);
        records.key_update_requested(&mut bytes);
        records.record(ContentType::ApplicationData, b"second\n", &mut bytes);
        records.record(ContentType::Alert, &[1, 0], &mut bytes);
        within(tcp.write_all(&bytes)).await.unwrap();
        if after == After::FinThenReset {
            within(tcp.shutdown()).await.unwrap();
        }
        socket2::SockRef::from(&tcp)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(tcp);
        let mut input = server.open_read_channel().unwrap();
        for expected in ["first", "second"] {
            let line = within(input.read_utf8_line(64)).await;
            assert_eq!(line.unwrap().as_deref(), Some(expected), "{after:?}");
        }
        for _ in 0..2 {
            let end = within(input.read_utf8_line(64)).await;
            assert!(matches!(end, Ok(None)), "{after:?}: {end:?}");
        }
        server.close();
    }
}
