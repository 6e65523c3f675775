//! TLS features beyond the basic handshake: session resumption (our client with our server,
//! and across `TlsServerConfig::reload` with a python3 `ssl` client that offers the session of
//! the connection before), ALPN offered by one side only, and a half-closed client reading a
//! whole answer, in TLS 1.2 and 1.3.

use net_io::LineEnding;
use net_sockets::SelectorManager;
use net_tests::harness::{Process, path_arg};
use net_tests::pki::{Pki, TestCa};
use net_tests::tls::{LINE_LIMIT, SessionView, TlsTestServer};
use net_tls::rustls::{self, CertificateError};
use net_tls::{CertificateDer, Error, TlsServerConfig, TlsSocket, TlsVersion};

const VERSIONS: [TlsVersion; 2] = [TlsVersion::Tls13, TlsVersion::Tls12];

/// A python3 `ssl` client of `127.0.0.1:PORT`, with a client certificate when CHAIN and KEY
/// are not `-`: for each line on its stdin it connects, offering the session of its last
/// connection that had one, says `ping`, and prints `N REUSED ANSWER`, or `N error WHAT`
/// when the server refused it.
const PYTHON_CLIENT: &str = r#"
import socket, ssl, sys
port, ca, chain, key, version = sys.argv[1:6]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
if chain != "-":
    ctx.load_cert_chain(chain, key)
ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
session = None
i = 0
for _ in sys.stdin:
    try:
        with socket.create_connection(("127.0.0.1", int(port))) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
                tls.sendall(b"ping\n")
                answer = b""
                while not answer.endswith(b"\n"):
                    chunk = tls.recv(100)
                    if not chunk:
                        break
                    answer += chunk
                if not answer:
                    raise ConnectionError("no answer")
                print(i, tls.session_reused, answer.decode().strip(), flush=True)
                session = tls.session
                tls.unwrap()
    except (OSError, ConnectionError) as e:
        print(i, "error", type(e).__name__, flush=True)
    i += 1
"#;

/// What our server saw of one session: the negotiated values and the client's chain.
type Seen = (SessionView, Vec<CertificateDer<'static>>);

/// A server that reports each session, answers `pong` to its first line and reads to its end.
async fn server(selector: &SelectorManager, config: TlsServerConfig) -> TlsTestServer<Seen> {
    TlsTestServer::start(
        selector,
        config,
        |mut tls: TlsSocket, reporter| async move {
            reporter.report((SessionView::of(&tls), tls.peer_certificates().to_vec()));
            let mut input = tls.open_read_channel().unwrap();
            let mut output = tls.open_write_channel(true).unwrap();
            let _ = input.read_line(LINE_LIMIT, LineEnding::Default).await;
            let _ = output.write_string_utf8("pong\n").await;
            let _ = input.read_line(LINE_LIMIT, LineEnding::Default).await;
            tls.close();
        },
    )
    .await
}

fn python_version(version: TlsVersion) -> &'static str {
    match version {
        TlsVersion::Tls13 => "TLSv1_3",
        _ => "TLSv1_2",
    }
}

/// Starts the python client; `certificate` is the (chain, key) files it presents.
fn python_client(
    port: u16,
    ca: &std::path::Path,
    certificate: Option<(&std::path::Path, &std::path::Path)>,
    version: TlsVersion,
) -> Process {
    let (chain, key) = certificate.map_or(("-", "-"), |(c, k)| (path_arg(c), path_arg(k)));
    Process::start(
        "python3",
        [
            "-c",
            PYTHON_CLIENT,
            &port.to_string(),
            path_arg(ca),
            chain,
            key,
            python_version(version),
        ],
    )
}

/// The python client's next connection: what it printed.
fn next_connection(client: &mut Process) -> String {
    client.send("go\n");
    tokio::task::block_in_place(|| client.stdout_line())
}

/// A session made under one configuration must not let a client skip, by resuming it, what a
/// configuration reloaded since requires (rustls ties resumption state to a `ServerConfig`,
/// and shares nothing between two unless told to): a client without a certificate, served
/// under `client_auth_optional`, is refused after a reload to `client_auth_required` though it
/// offers its session; a client whose certificate's CA the reloaded configuration no longer
/// trusts is refused too. Without a reload, the same client does resume (the control: the
/// python client offers its session, and our server takes it), with the session queries as
/// before. Both versions. (Guard: holds on the current code.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_from_before_a_reload_does_not_skip_the_new_client_authentication() {
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let files = pki.temp_files();
    let other_ca = TestCa::new("other client ca");
    for version in VERSIONS {
        // Control: no reload, the second connection resumes.
        let optional = || {
            pki.server_config()
                .client_auth_optional(pki.ca.pem().as_bytes())
                .unwrap()
                .build()
                .unwrap()
        };
        let mut served = server(&selector, optional()).await;
        let mut client = python_client(served.port(), &files.ca, None, version);
        assert_eq!(next_connection(&mut client), "0 False pong", "{version:?}");
        let first = served.next().await.unwrap();
        assert_eq!(next_connection(&mut client), "1 True pong", "{version:?}");
        assert_eq!(served.next().await.unwrap(), first, "{version:?}: resumed");
        assert!(first.1.is_empty());

        // A reload to `client_auth_required`: the session does not let the client in.
        let config = optional();
        let mut served = server(&selector, config.clone()).await;
        let mut client = python_client(served.port(), &files.ca, None, version);
        assert_eq!(next_connection(&mut client), "0 False pong", "{version:?}");
        assert!(served.next().await.unwrap().1.is_empty());
        config.reload(
            &pki.server
                .mutual_tls_server_config(&pki.ca)
                .build()
                .unwrap(),
        );
        let refused = next_connection(&mut client);
        assert!(refused.starts_with("1 error"), "{version:?}: {refused}");
        let e = served.next().await.unwrap_err();
        assert!(
            matches!(e, Error::Handshake(rustls::Error::NoCertificatesPresented)),
            "{version:?}: {e:?}"
        );

        // A reload to another client CA: the session of a client of the old one is no way in.
        let config = pki
            .server
            .mutual_tls_server_config(&pki.ca)
            .build()
            .unwrap();
        let mut served = server(&selector, config.clone()).await;
        let mut client = python_client(
            served.port(),
            &files.ca,
            Some((&files.client_chain, &files.client_key)),
            version,
        );
        assert_eq!(next_connection(&mut client), "0 False pong", "{version:?}");
        assert_eq!(served.next().await.unwrap().1, pki.client.chain_der());
        config.reload(
            &pki.server
                .mutual_tls_server_config(&other_ca)
                .build()
                .unwrap(),
        );
        let refused = next_connection(&mut client);
        assert!(refused.starts_with("1 error"), "{version:?}: {refused}");
        let e = served.next().await.unwrap_err();
        assert!(
            matches!(
                e,
                Error::Handshake(rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer
                ))
            ),
            "{version:?}: {e:?}"
        );
    }
}

/// ALPN offered by one side only: no protocol is agreed, and neither side fails (rustls, RFC
/// 7301: a server without ALPN ignores the client's list; a client that offers none gets
/// none), in both versions; the other session queries are unaffected. (Guard.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_on_one_side_only_agrees_on_none_on_both_sides() {
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let listener = net_tests::loopback::tcp_listener(&selector).await;
    for version in VERSIONS {
        for (server_alpn, client_alpn) in [(true, false), (false, true)] {
            let mut server = pki.server_config().protocol_versions(&[version]);
            if server_alpn {
                server = server.alpn_protocols(["h2", "http/1.1"]);
            }
            let mut client = pki.client_config();
            if client_alpn {
                client = client.alpn_protocols(["h2", "http/1.1"]);
            }
            let (s, c) = net_tests::tls::pair(
                &selector,
                &listener,
                &server.build().unwrap(),
                client.build().unwrap(),
            )
            .await;
            let case = format!("{version:?}, server {server_alpn}, client {client_alpn}");
            assert_eq!(s.alpn_protocol(), None, "{case}");
            assert_eq!(c.alpn_protocol(), None, "{case}");
            assert_eq!(s.protocol_version(), Some(version), "{case}");
            assert_eq!(c.protocol_version(), Some(version), "{case}");
            assert_eq!(s.cipher_suite(), c.cipher_suite(), "{case}");
            assert_eq!(s.server_name(), Some("localhost"), "{case}");
            assert_eq!(c.server_name(), Some("localhost"), "{case}");
            assert!(s.peer_certificates().is_empty(), "{case}");
            assert_eq!(c.peer_certificates(), pki.server.chain_der(), "{case}");
        }
    }
}

/// A half-close in TLS 1.2 as in TLS 1.3 (our client and our server): the client's
/// `flush_and_close` sends `close_notify` and FIN, the server reads its request and the clean
/// end, then answers 256 KiB, which the client, its read channel still open, reads whole,
/// then a clean end. (TLS 1.2 has no half-close of its own: RFC 5246 has a peer answer
/// `close_notify` with its own; rustls lets the session go on, and so do we.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_client_reads_the_whole_answer_in_both_versions() {
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let listener = net_tests::loopback::tcp_listener(&selector).await;
    let answer = net_tests::payload(256 * 1024);
    for version in VERSIONS {
        let server = pki
            .server_config()
            .protocol_versions(&[version])
            .build()
            .unwrap();
        let (mut s, mut c) = net_tests::tls::pair(
            &selector,
            &listener,
            &server,
            pki.client_config().build().unwrap(),
        )
        .await;
        let mut s_in = s.open_read_channel().unwrap();
        let mut s_out = s.open_write_channel(false).unwrap();
        let mut c_in = c.open_read_channel().unwrap();
        let mut c_out = c.open_write_channel(false).unwrap();
        c_out.write_string_utf8("request\n").await.unwrap();
        net_tests::within(c_out.flush_and_close()).await.unwrap();
        let line = net_tests::within(s_in.read_line(LINE_LIMIT, LineEnding::Default)).await;
        assert_eq!(line.unwrap().as_deref(), Some("request"), "{version:?}");
        let end = net_tests::within(s_in.read_line(LINE_LIMIT, LineEnding::Default)).await;
        assert!(matches!(end, Ok(None)), "{version:?}: {end:?}");
        let sent = answer.clone();
        let writer = tokio::spawn(async move {
            s_out.write_fully(&sent).await.unwrap();
            s_out.flush_and_close().await.unwrap();
            drop(s_out);
            s.close();
        });
        let got = net_tests::within(c_in.read_remaining(usize::MAX)).await;
        let got = got.unwrap_or_else(|e| panic!("{version:?}: {e:?}"));
        assert!(got[..] == answer[..], "{version:?}: {} bytes", got.len());
        writer.await.unwrap();
        c.close();
    }
}

/// Relays one connection from `front` to `127.0.0.1:back` and returns how many bytes the
/// server sent in it (to its end).
async fn relay_counting(front: tokio::net::TcpListener, back: u16) -> u64 {
    let (mut client, _) = front.accept().await.unwrap();
    let mut server = tokio::net::TcpStream::connect(("127.0.0.1", back))
        .await
        .unwrap();
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let up = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut server_write).await;
    };
    let down = async {
        let n = tokio::io::copy(&mut server_read, &mut client_write)
            .await
            .unwrap_or(0);
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut client_write).await;
        n
    };
    tokio::join!(up, down).1
}

/// Our client resumes with our server (both built by their builders, the client's
/// configuration cloned for each connection), in both versions: the second handshake sends no
/// certificate chain (the server sends fewer bytes by more than the chain's length), and the
/// session queries answer on both sides as after the full handshake (the client still reports
/// the server's chain, which it was not sent again). (Guard: resumption between our own client
/// and server was tested nowhere; the crate docs now say it happens.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_resumes_with_our_server_and_the_queries_answer_as_before() {
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let chain_len: usize = pki.server.chain_der().iter().map(|c| c.len()).sum();
    for version in VERSIONS {
        let config = pki
            .server
            .mutual_tls_server_config(&pki.ca)
            .protocol_versions(&[version])
            .alpn_protocols(["x-review"])
            .build()
            .unwrap();
        let mut served = server(&selector, config).await;
        let client = pki
            .client
            .client_certificate(pki.client_config())
            .alpn_protocols(["x-review"])
            .build()
            .unwrap();
        let mut sent = Vec::new();
        let mut views = Vec::new();
        for _ in 0..2 {
            let front = tokio::net::TcpListener::bind(("127.0.0.1", 0))
                .await
                .unwrap();
            let port = front.local_addr().unwrap().port();
            let relay = tokio::spawn(relay_counting(front, served.port()));
            let mut tls = net_tests::within(net_tests::tls::connect(
                &selector,
                "localhost",
                port,
                client.clone(),
            ))
            .await
            .unwrap();
            let mut input = tls.open_read_channel().unwrap();
            let mut output = tls.open_write_channel(true).unwrap();
            output.write_string_utf8("ping\n").await.unwrap();
            let answer = net_tests::within(input.read_line(LINE_LIMIT, LineEnding::Default)).await;
            assert_eq!(answer.unwrap().as_deref(), Some("pong"), "{version:?}");
            let client_view = (SessionView::of(&tls), tls.peer_certificates().to_vec());
            net_tests::within(output.flush_and_close()).await.unwrap();
            let end = net_tests::within(input.read_line(LINE_LIMIT, LineEnding::Default)).await;
            assert!(matches!(end, Ok(None)), "{version:?}: {end:?}");
            tls.close();
            sent.push(net_tests::within(relay).await.unwrap());
            views.push((served.next().await.unwrap(), client_view));
        }
        assert!(
            sent[1] + chain_len as u64 <= sent[0],
            "{version:?}: the server sent {sent:?} bytes; its chain is {chain_len}: not resumed"
        );
        assert_eq!(views[1], views[0], "{version:?}: resumed against full");
        let ((server_view, client_chain), (client_view, server_chain)) = &views[0];
        assert_eq!(server_view.version, Some(version));
        assert_eq!(client_view.version, Some(version));
        assert_eq!(server_view.alpn.as_deref(), Some(&b"x-review"[..]));
        assert_eq!(client_view.alpn.as_deref(), Some(&b"x-review"[..]));
        assert_eq!(server_view.server_name.as_deref(), Some("localhost"));
        assert_eq!(client_chain, pki.client.chain_der());
        assert_eq!(server_chain, pki.server.chain_der());
    }
}
