//! TLS beyond the basic handshake, with real peers (`openssl`, `python3`'s `ssl`) and our own:
//! optional client certificates, a client certificate from an untrusted CA (optional or
//! required), client CAs too many to name in the request, a peer that speaks only the other
//! TLS version, SNI as OpenSSL sends it (case, trailing dot, unknown name, none, a name that is
//! not a DNS name), a reload while a handshake is under way, and the session queries of
//! resumed sessions, on both sides.

use std::future::Future;
use std::pin::pin;

use net_io::LineEnding;
use net_sockets::{SelectorManager, a_socket};
use net_tests::harness::{Process, path_arg, port_at_end};
use net_tests::pki::{Pki, TestCa};
use net_tests::tls::{
    LINE_LIMIT, SessionView, TlsLineServer, TlsTestServer, connect, rustls_error,
};
use net_tests::within;
use net_tls::rustls::{self, AlertDescription, CertificateError};
use net_tls::{CertificateDer, Error, TlsConfig, TlsExt, TlsServerConfig, TlsSocket, TlsVersion};

const VERSIONS: [TlsVersion; 2] = [TlsVersion::Tls13, TlsVersion::Tls12];

/// Connects to our server at `port` with `config`, expecting the server to refuse the client's
/// certificate with `alert`: in TLS 1.2 the client's handshake fails with it; in TLS 1.3 the
/// client finishes its handshake before the server has checked, and its first read fails with
/// it (kind `InvalidData`).
async fn assert_client_told(
    selector: &SelectorManager,
    port: u16,
    config: TlsConfig,
    version: TlsVersion,
    alert: AlertDescription,
) {
    let client = within(connect(selector, "127.0.0.1", port, config)).await;
    match (version, client) {
        (TlsVersion::Tls12, Err(Error::Handshake(rustls::Error::AlertReceived(got)))) => {
            assert_eq!(got, alert);
        }
        (TlsVersion::Tls13, Ok(mut tls)) => {
            let mut input = tls.open_read_channel().unwrap();
            let e = within(input.read_line(LINE_LIMIT, LineEnding::Default))
                .await
                .expect_err("the refused client's first read fails");
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e:?}");
            assert_eq!(
                rustls_error(&e),
                Some(&rustls::Error::AlertReceived(alert)),
                "{e:?}"
            );
        }
        (version, other) => panic!("{version:?}: {other:?}"),
    }
}

/// `client_auth_optional` serves a client without a certificate (its `peer_certificates` are
/// empty) and one with a certificate from the CA (its chain, leaf first), in both versions.
/// (Guard: documented in the crate docs and on the setter, tested nowhere.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_client_auth_serves_clients_with_and_without_a_certificate() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("server ca");
    let client_ca = TestCa::new("client ca");
    let client_leaf = client_ca.client("client.test");
    for version in VERSIONS {
        let config = ca
            .server(&["localhost"])
            .server_config()
            .client_auth_optional(client_ca.pem().as_bytes())
            .unwrap()
            .protocol_versions(&[version])
            .build()
            .unwrap();
        let mut server = TlsLineServer::lines(&selector, config).await;
        let trusting = || ca.client_config().server_name("localhost");
        for (client, expected) in [
            (trusting(), &[][..]),
            (
                client_leaf.client_certificate(trusting()),
                client_leaf.chain_der(),
            ),
        ] {
            let mut good = server.good_client(&selector, client.build().unwrap()).await;
            good.round_trip("optional").await;
            let session = server.finish_good(good).await;
            assert_eq!(session.view.version, Some(version));
            assert_eq!(session.peer_chain, expected, "{version:?}");
        }
    }
}

/// A client certificate issued by a CA the server does not trust is refused, whether client
/// authentication is optional or required: the server's handshake fails with
/// `Handshake(InvalidCertificate(UnknownIssuer))`, the client is told `unknown_ca` (TLS 1.2: its
/// handshake fails; TLS 1.3: its first read), and the server goes on serving. (Guard: the
/// guarantees table had no row for it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_from_an_untrusted_ca_is_refused_typed_on_both_sides() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("server ca");
    let client_ca = TestCa::new("client ca");
    let stranger = TestCa::new("stranger ca").client("stranger.test");
    let member = client_ca.client("member.test");
    for required in [false, true] {
        for version in VERSIONS {
            let config = ca
                .server(&["localhost"])
                .server_config()
                .client_auth_der([client_ca.der()], required)
                .unwrap()
                .protocol_versions(&[version])
                .build()
                .unwrap();
            let mut server = TlsLineServer::lines(&selector, config).await;
            let trusting = || ca.client_config().server_name("localhost");
            let refused = stranger.client_certificate(trusting()).build().unwrap();
            let port = server.port();
            assert_client_told(
                &selector,
                port,
                refused,
                version,
                AlertDescription::UnknownCA,
            )
            .await;
            let e = server.failed_handshake().await;
            assert!(
                matches!(
                    e,
                    Error::Handshake(rustls::Error::InvalidCertificate(
                        CertificateError::UnknownIssuer
                    ))
                ),
                "required {required}, {version:?}: {e:?}"
            );
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
            let member = member.client_certificate(trusting()).build().unwrap();
            server.serve_once(&selector, member, "member").await;
        }
    }
}

/// Our client without a certificate against our server that requires one: the server's error
/// is `NoCertificatesPresented`, the client is told `certificate_required` (TLS 1.2: its
/// handshake; TLS 1.3: its first read, also after a write went out first). (Guard of the
/// guarantees row, with the alert named and a write before the read.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_is_told_certificate_required_even_after_writing() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("server ca");
    let client_ca = TestCa::new("client ca");
    for version in VERSIONS {
        let config = ca
            .server(&["localhost"])
            .mutual_tls_server_config(&client_ca)
            .protocol_versions(&[version])
            .build()
            .unwrap();
        let mut server = TlsLineServer::lines(&selector, config).await;
        let anonymous = ca.client_config().server_name("localhost").build().unwrap();
        let client = within(connect(&selector, "127.0.0.1", server.port(), anonymous)).await;
        match (version, client) {
            (
                TlsVersion::Tls12,
                Err(Error::Handshake(rustls::Error::AlertReceived(
                    AlertDescription::CertificateRequired,
                ))),
            ) => {}
            (TlsVersion::Tls13, Ok(mut tls)) => {
                let mut output = tls.open_write_channel(true).unwrap();
                let mut input = tls.open_read_channel().unwrap();
                // The request leaves before the client knows: the write itself succeeds.
                within(output.write_string_utf8("GET / HTTP/1.1\r\n\r\n"))
                    .await
                    .unwrap();
                let e = within(input.read_line(LINE_LIMIT, LineEnding::Default))
                    .await
                    .expect_err("the refused client's read fails");
                assert!(matches!(e, net_io::Error::Io(_)), "{e:?}");
                assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e:?}");
                assert_eq!(
                    rustls_error(&e),
                    Some(&rustls::Error::AlertReceived(
                        AlertDescription::CertificateRequired
                    )),
                    "{e:?}"
                );
            }
            (version, other) => panic!("{version:?}: {other:?}"),
        }
        let e = server.failed_handshake().await;
        assert!(
            matches!(e, Error::Handshake(rustls::Error::NoCertificatesPresented)),
            "{version:?}: {e:?}"
        );
    }
}

fn the_other(version: TlsVersion) -> TlsVersion {
    match version {
        TlsVersion::Tls13 => TlsVersion::Tls12,
        _ => TlsVersion::Tls13,
    }
}

fn openssl_flag(version: TlsVersion) -> &'static str {
    match version {
        TlsVersion::Tls13 => "-tls1_3",
        _ => "-tls1_2",
    }
}

/// A side pinned to one TLS version against a peer that speaks only the other: our server
/// fails with `Handshake(PeerIncompatible(_))` (against our client and `openssl s_client`),
/// our client with `Handshake(AlertReceived(ProtocolVersion))` (against our server and
/// `openssl s_server`); all kind `InvalidData`, and the server goes on serving. (Guard: only a
/// TLS 1.1 client had a row.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_the_other_tls_version_is_refused_typed_on_both_sides() {
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let files = pki.temp_files();
    let is_version_alert = |e: &Error| {
        matches!(
            e,
            Error::Handshake(rustls::Error::AlertReceived(
                AlertDescription::ProtocolVersion
            ))
        )
    };
    for server_version in VERSIONS {
        let client_version = the_other(server_version);
        let config = pki
            .server_config()
            .protocol_versions(&[server_version])
            .build()
            .unwrap();
        let mut server = TlsLineServer::lines(&selector, config).await;
        let pinned = pki
            .client_config()
            .server_name("localhost")
            .protocol_versions(&[client_version])
            .build()
            .unwrap();
        // Our client.
        let e = within(connect(
            &selector,
            "127.0.0.1",
            server.port(),
            pinned.clone(),
        ))
        .await
        .unwrap_err();
        assert!(is_version_alert(&e), "{client_version:?} client: {e:?}");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        let e = server.failed_handshake().await;
        assert!(
            matches!(e, Error::Handshake(rustls::Error::PeerIncompatible(_))),
            "{server_version:?} server: {e:?}"
        );
        // openssl s_client.
        let connect_to = format!("127.0.0.1:{}", server.port());
        let ca = path_arg(&files.ca).to_owned();
        let flag = openssl_flag(client_version);
        let s_client = tokio::task::spawn_blocking(move || {
            Process::start(
                "openssl",
                ["s_client", "-connect", &connect_to, "-CAfile", &ca, flag],
            )
            .finish()
        });
        let e = server.failed_handshake().await;
        assert!(
            matches!(e, Error::Handshake(rustls::Error::PeerIncompatible(_))),
            "{server_version:?} server, s_client {flag}: {e:?}"
        );
        let s_client = within(s_client).await.unwrap();
        assert!(!s_client.status.success(), "{s_client:?}");
        assert!(
            s_client
                .stderr
                .iter()
                .any(|l| l.contains("alert protocol version")),
            "{s_client:?}"
        );
        let good = pki
            .client_config()
            .server_name("localhost")
            .build()
            .unwrap();
        server.serve_once(&selector, good, "still").await;

        // openssl s_server, speaking only `server_version`, against our client pinned to the
        // other.
        let mut s_server = Process::start(
            "openssl",
            [
                "s_server",
                "-accept",
                "127.0.0.1:0",
                "-naccept",
                "1",
                "-cert",
                path_arg(&files.server_chain),
                "-key",
                path_arg(&files.server_key),
                openssl_flag(server_version),
            ],
        );
        let accept = s_server.stdout_line_where("ACCEPT line", |l| l.starts_with("ACCEPT "));
        let e = within(connect(
            &selector,
            "localhost",
            port_at_end(&accept),
            pinned,
        ))
        .await
        .unwrap_err();
        assert!(
            is_version_alert(&e),
            "{client_version:?} client against s_server: {e:?}"
        );
    }
}

/// Accepts one connection of a listener bound here and runs the server handshake; the port and
/// the task.
async fn accept_one(
    selector: &SelectorManager,
    config: TlsServerConfig,
) -> (u16, tokio::task::JoinHandle<Result<TlsSocket, Error>>) {
    let listener = a_socket(selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.port().unwrap();
    let task = tokio::spawn(async move { listener.accept().await?.tls_server(&config).await });
    (port, task)
}

/// SNI as `openssl s_client` sends it, not normalised as rustls's client does: a name in
/// another case and with a fully qualified name's trailing dot gets the SNI certificate, and
/// the server reports it lower-case without the dot; an unknown name and no SNI at all get the
/// default certificate, the server reporting the name sent, or none. (Guard: only our own
/// client was tested.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_gets_the_sni_certificate_whatever_the_case_or_trailing_dot() {
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let files = pki.temp_files();
    let named = pki.ca.server(&["other.test"]);
    let config = named
        .sni_certificate("other.test", pki.server_config())
        .build()
        .unwrap();
    for (args, served, reported) in [
        (
            &["-servername", "OTHER.Test."][..],
            "other.test",
            Some("other.test"),
        ),
        (
            &["-servername", "Other.Test"],
            "other.test",
            Some("other.test"),
        ),
        (
            &["-servername", "nobody.test"],
            "localhost",
            Some("nobody.test"),
        ),
        (&["-noservername"], "localhost", None),
    ] {
        let (port, task) = accept_one(&selector, config.clone()).await;
        let connect_to = format!("127.0.0.1:{port}");
        let mut s_client = Process::start(
            "openssl",
            [
                &["s_client", "-brief", "-connect", &connect_to, "-CAfile"][..],
                &[path_arg(&files.ca)],
                args,
            ]
            .concat(),
        );
        let tls = within(task).await.unwrap().unwrap();
        assert_eq!(tls.server_name(), reported, "{args:?}");
        drop(tls);
        let finished = s_client.finish();
        let peer = format!("Peer certificate: CN = {served}");
        assert!(finished.stderr.contains(&peer), "{args:?}: {finished:?}");
    }
}

/// A name sent by SNI that is not a DNS name (a space in it, two trailing dots, a label of
/// 64 characters: OpenSSL sends what it is given) does not get the default certificate, as
/// another name does: rustls refuses the ClientHello, the server's handshake fails with
/// `Handshake(PeerMisbehaved(ServerNameMustContainOneHostName))` and the client is told
/// `illegal_parameter`, with or without SNI certificates. (The docs said every other name got
/// the default chain.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sni_name_that_is_not_a_dns_name_fails_the_handshake() {
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let named = pki.ca.server(&["other.test"]);
    let with_sni = named
        .sni_certificate("other.test", pki.server_config())
        .build()
        .unwrap();
    let without_sni = pki.server_config().build().unwrap();
    let long_label = format!("{}.test", "x".repeat(64));
    for config in [with_sni, without_sni] {
        for name in ["other test", "other.test..", &long_label] {
            let (port, task) = accept_one(&selector, config.clone()).await;
            let connect_to = format!("127.0.0.1:{port}");
            let args = [
                "s_client",
                "-brief",
                "-connect",
                &connect_to,
                "-servername",
                name,
            ]
            .map(str::to_owned);
            let s_client = tokio::task::spawn_blocking(move || Process::run("openssl", args));
            let served = within(task).await.unwrap();
            assert!(
                matches!(
                    served,
                    Err(Error::Handshake(rustls::Error::PeerMisbehaved(
                        rustls::PeerMisbehaved::ServerNameMustContainOneHostName
                    )))
                ),
                "{name:?}: {served:?}"
            );
            let finished = within(s_client).await.unwrap();
            let told = finished.stderr.join("\n");
            assert!(
                told.contains("alert illegal parameter"),
                "{name:?}: {finished:?}"
            );
        }
    }
}

/// A reload while a server handshake is under way (it started, and waits for the ClientHello):
/// that handshake completes with the certificate current when it started, and the one after
/// the reload gets the new certificate. (Guard of `tls_server`'s "the configuration current at
/// this moment".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_reaches_handshakes_that_start_after_it_not_one_under_way() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("reload ca");
    let (first, second) = (ca.server(&["localhost"]), ca.server(&["localhost"]));
    let config = first.server_config().build().unwrap();
    let listener = a_socket(&selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.port().unwrap();
    let early = a_socket(&selector)
        .tcp()
        .connect(("localhost", port))
        .await
        .unwrap();
    let accepted = listener.accept().await.unwrap();
    let (started, has_started) = tokio::sync::oneshot::channel();
    let under_way = tokio::spawn({
        let config = config.clone();
        async move {
            let mut handshake = pin!(accepted.tls_server(&config));
            let mut started = Some(started);
            std::future::poll_fn(|cx| {
                let polled = handshake.as_mut().poll(cx);
                if let Some(started) = started.take() {
                    let _ = started.send(polled.is_pending());
                }
                polled
            })
            .await
        }
    });
    assert!(within(has_started).await.unwrap(), "the handshake waits");
    config.reload(&second.server_config().build().unwrap());
    let trusting = || ca.client_config().build().unwrap();
    let (client, served) = tokio::join!(early.tls(trusting()), under_way);
    let (client, served) = (client.unwrap(), served.unwrap().unwrap());
    assert_eq!(&client.peer_certificates()[0], first.cert_der());
    let later = connect(&selector, "localhost", port, trusting());
    let (later, accepted) = within(async {
        tokio::join!(later, async {
            listener.accept().await.unwrap().tls_server(&config).await
        })
    })
    .await;
    assert_eq!(&later.unwrap().peer_certificates()[0], second.cert_der());
    drop((accepted, served));
}

fn python_version(version: TlsVersion) -> &'static str {
    match version {
        TlsVersion::Tls13 => "TLSv1_3",
        _ => "TLSv1_2",
    }
}

/// A python3 `ssl` client that connects twice to `127.0.0.1:PORT` with a client certificate
/// and ALPN `x-review`, the second time resuming the first session; after each answer it
/// prints `N REUSED VERSION ALPN ANSWER`.
const PYTHON_RESUMING_CLIENT: &str = r#"
import socket, ssl, sys
port, ca, chain, key, version = sys.argv[1:6]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
ctx.load_cert_chain(chain, key)
ctx.set_alpn_protocols(["x-review"])
ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
session = None
for i in range(2):
    with socket.create_connection(("127.0.0.1", int(port))) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
            tls.sendall(b"ping\n")
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = tls.recv(100)
                if not chunk:
                    break
                answer += chunk
            print(i, tls.session_reused, tls.version(), tls.selected_alpn_protocol(),
                  answer.decode().strip(), flush=True)
            session = tls.session
            tls.unwrap()
"#;

/// A python3 `ssl` server that requires a client certificate and offers ALPN `x-review`; it
/// prints `listening at 127.0.0.1:PORT`, then, for each of two connections, says `hello` and reads to the client's
/// end, and prints `N REUSED VERSION CLIENT_CN`.
const PYTHON_SERVER: &str = r#"
import socket, ssl, sys
ca, chain, key, version = sys.argv[1:5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(chain, key)
ctx.load_verify_locations(ca)
ctx.verify_mode = ssl.CERT_REQUIRED
ctx.set_alpn_protocols(["x-review"])
ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
server = socket.create_server(("127.0.0.1", 0))
print("listening at 127.0.0.1:%d" % server.getsockname()[1], flush=True)
for i in range(2):
    raw, _ = server.accept()
    with ctx.wrap_socket(raw, server_side=True) as tls:
        tls.sendall(b"hello\n")
        while tls.recv(100):
            pass
        subject = dict(field[0] for field in tls.getpeercert()["subject"])
        print(i, tls.session_reused, tls.version(), subject["commonName"], flush=True)
        try:
            tls.unwrap()
        except OSError:
            pass
"#;

/// What one side of a session reports, and the peer's chain.
type Seen = (SessionView, Vec<CertificateDer<'static>>);

fn seen(tls: &TlsSocket) -> Seen {
    (SessionView::of(tls), tls.peer_certificates().to_vec())
}

/// A resumed session (python3 `ssl` says it was, on the other side) answers the session
/// queries as the full handshake before it did, on our server (the client's chain under mutual
/// TLS, SNI, ALPN, version) and on our client (the server's chain, which a resumed handshake
/// does not send again), in both versions. (Guard: resumption was tested nowhere.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_sessions_answer_the_session_queries_as_the_full_handshake_did() {
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let files = pki.temp_files();
    for version in VERSIONS {
        // A python client resumes with our server.
        let config = pki
            .server_config()
            .client_auth_required(pki.ca.pem().as_bytes())
            .unwrap()
            .alpn_protocols(["x-review"])
            .build()
            .unwrap();
        let mut server = TlsTestServer::start(&selector, config, |mut tls, reporter| async move {
            reporter.report(seen(&tls));
            let mut input = tls.open_read_channel().unwrap();
            let mut output = tls.open_write_channel(true).unwrap();
            let _ = input.read_line(LINE_LIMIT, LineEnding::Default).await;
            let _ = output.write_string_utf8("pong\n").await;
            let _ = input.read_line(LINE_LIMIT, LineEnding::Default).await;
            tls.close();
        })
        .await;
        let port = server.port().to_string();
        let mut client = Process::start(
            "python3",
            [
                "-c",
                PYTHON_RESUMING_CLIENT,
                &port,
                path_arg(&files.ca),
                path_arg(&files.client_chain),
                path_arg(&files.client_key),
                python_version(version),
            ],
        );
        let mut views = Vec::new();
        for (i, reused) in [(0, "False"), (1, "True")] {
            let line = tokio::task::block_in_place(|| client.stdout_line());
            let name = match version {
                TlsVersion::Tls13 => "TLSv1.3",
                _ => "TLSv1.2",
            };
            assert_eq!(line, format!("{i} {reused} {name} x-review pong"));
            views.push(server.next().await.unwrap());
        }
        let (view, chain) = &views[0];
        assert_eq!(views[1], views[0], "{version:?}: resumed against full");
        assert_eq!(view.version, Some(version));
        assert_eq!(view.alpn.as_deref(), Some(&b"x-review"[..]));
        assert_eq!(view.server_name.as_deref(), Some("localhost"));
        assert_eq!(chain, pki.client.chain_der());

        // Our client resumes with a python server.
        let mut python = Process::start(
            "python3",
            [
                "-c",
                PYTHON_SERVER,
                path_arg(&files.ca),
                path_arg(&files.server_chain),
                path_arg(&files.server_key),
                python_version(version),
            ],
        );
        let port = port_at_end(&tokio::task::block_in_place(|| python.stdout_line()));
        let config = pki
            .client
            .client_certificate(pki.client_config())
            .alpn_protocols(["x-review"])
            .build()
            .unwrap();
        let mut views = Vec::new();
        for (i, reused) in [(0, "False"), (1, "True")] {
            let mut tls = within(connect(&selector, "localhost", port, config.clone()))
                .await
                .unwrap();
            let mut input = tls.open_read_channel().unwrap();
            let hello = within(input.read_line(LINE_LIMIT, LineEnding::Default)).await;
            assert_eq!(hello.unwrap().as_deref(), Some("hello"));
            views.push(seen(&tls));
            tls.close();
            let line = tokio::task::block_in_place(|| python.stdout_line());
            assert!(
                line.starts_with(&format!("{i} {reused} ")),
                "{version:?}: {line}"
            );
        }
        let (view, chain) = &views[0];
        assert_eq!(views[1], views[0], "{version:?}: resumed against full");
        assert_eq!(view.version, Some(version));
        assert_eq!(view.alpn.as_deref(), Some(&b"x-review"[..]));
        assert_eq!(view.server_name.as_deref(), Some("localhost"));
        assert_eq!(chain, pki.server.chain_der());
    }
}

/// The names of the client CAs go into the server's CertificateRequest as a hint, in a list
/// whose length field has two bytes. A CA bundle whose names take more than that (here 70
/// CAs whose names are 1 KB each) made rustls overflow it: a panic in the handshake (an
/// abort of the whole process, the assertion failing in a destructor) in a debug build, a
/// length that wrapped (a request no client can decode) in a release one. The server now asks
/// without naming the CAs when they do not fit, and still verifies against all of them; a
/// bundle whose names fit is still named, to OpenSSL's `s_client` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cas_too_many_to_name_in_the_request_still_authenticate_clients() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("server ca");
    let client_cas: Vec<TestCa> = (0..70)
        .map(|i| TestCa::new(&format!("client ca {i:02} {}", "n".repeat(1000))))
        .collect();
    let bundle = |cas: &[TestCa]| cas.iter().map(TestCa::pem).collect::<String>();
    // (CAs trusted, whether the request names them): about 61 KB of names fit, 71 KB do not.
    for (cas, named) in [(&client_cas[..59], true), (&client_cas[..], false)] {
        let member = cas[cas.len() - 1].client("member.test");
        for version in VERSIONS {
            let config = ca
                .server(&["localhost"])
                .server_config()
                .client_auth_optional(bundle(cas).as_bytes())
                .unwrap()
                .protocol_versions(&[version])
                .build()
                .unwrap();
            let mut server = TlsLineServer::lines(&selector, config).await;
            let client = member
                .client_certificate(ca.client_config().server_name("localhost"))
                .build()
                .unwrap();
            let mut good = server.good_client(&selector, client).await;
            good.round_trip("member").await;
            let session = server.finish_good(good).await;
            assert_eq!(session.peer_chain, member.chain_der(), "{version:?}");

            let connect_to = format!("127.0.0.1:{}", server.port());
            let s_client = tokio::task::spawn_blocking(move || {
                Process::run(
                    "openssl",
                    ["s_client", "-connect", &connect_to, openssl_flag(version)],
                )
            });
            let finished = within(s_client).await.unwrap();
            let stdout = finished.stdout.join("\n");
            let told = if named {
                "Acceptable client certificate CA names"
            } else {
                "No client certificate CA names sent"
            };
            assert!(stdout.contains(told), "{version:?}, {named}: {finished:?}");
            assert!(server.next().await.is_ok(), "{version:?}: s_client served");
        }
    }
}
