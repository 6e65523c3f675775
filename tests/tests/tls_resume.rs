//! Session resumption, in TLS 1.2 and 1.3: `openssl s_client`'s saved sessions (`-sess_out`,
//! `-sess_in`) with our server and our client with `openssl s_server` (session IDs, tickets);
//! sessions offered for another SNI name, to another server (built apart, or a clone of the
//! configuration), again after they resumed, or after the client certificate in them expired;
//! and which sessions our client keeps (by name, of 32 servers).

use net_io::LineEnding;
use net_sockets::SelectorManager;
use net_tests::TempDir;
use net_tests::harness::{Process, path_arg, run_with_input};
use net_tests::pki::Pki;
use net_tests::tls::{LINE_LIMIT, SessionView, TlsTestServer};
use net_tls::{CertificateDer, TlsServerConfig, TlsSocket, TlsVersion};

const VERSIONS: [TlsVersion; 2] = [TlsVersion::Tls13, TlsVersion::Tls12];

/// What our server saw of one session: the negotiated values and the client's chain.
type Seen = (SessionView, Vec<CertificateDer<'static>>);

/// A server that reports each session, answers `pong` to its first line, then closes.
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

/// `openssl s_client` saves the session of its first connection to our server (`-sess_out`)
/// and offers it in a second process (`-sess_in`), under mutual TLS with ALPN: the second
/// handshake is a resumption (`Reused`), and our server's session queries answer as after the
/// full one (the client's chain, ALPN, SNI, version). Both versions. (Guard: resumption by
/// OpenSSL's own client was tested nowhere.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_resumes_a_saved_session_with_our_server() {
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let files = pki.temp_files();
    let dir = TempDir::new("tls-resume");
    for version in VERSIONS {
        let config = pki
            .server
            .mutual_tls_server_config(&pki.ca)
            .protocol_versions(&[version])
            .alpn_protocols(["x-review"])
            .build()
            .unwrap();
        let mut served = server(&selector, config).await;
        let connect = format!("127.0.0.1:{}", served.port());
        let session = dir.join(&format!("{version:?}.pem"));
        let mut views = Vec::new();
        for (flag, reused) in [("-sess_out", "New,"), ("-sess_in", "Reused,")] {
            let run = tokio::task::block_in_place(|| {
                run_with_input(
                    "openssl",
                    [
                        "s_client",
                        "-connect",
                        &connect,
                        "-servername",
                        "localhost",
                        "-CAfile",
                        path_arg(&files.ca),
                        "-verify_return_error",
                        "-cert",
                        path_arg(&files.client_chain),
                        "-key",
                        path_arg(&files.client_key),
                        "-alpn",
                        "x-review",
                        "-ign_eof",
                        match version {
                            TlsVersion::Tls13 => "-tls1_3",
                            _ => "-tls1_2",
                        },
                        flag,
                        path_arg(&session),
                    ],
                    "ping\n",
                )
            });
            assert!(
                run.stdout.lines().any(|l| l == "pong"),
                "{version:?} {flag}: {run:?}"
            );
            assert!(
                run.stdout.lines().any(|l| l.starts_with(reused)),
                "{version:?} {flag}: not {reused} {run:?}"
            );
            views.push(served.next().await.unwrap());
        }
        assert_eq!(views[1], views[0], "{version:?}: resumed against full");
        let (view, chain) = &views[0];
        assert_eq!(view.version, Some(version));
        assert_eq!(view.alpn.as_deref(), Some(&b"x-review"[..]));
        assert_eq!(view.server_name.as_deref(), Some("localhost"));
        assert_eq!(chain, pki.client.chain_der());
    }
}

/// A python3 `ssl` client: for each line `PORT HOST` on its stdin it connects to
/// `127.0.0.1:PORT` with `HOST` as SNI and verified name, offering the session of its last
/// connection (of its first with `PORT HOST first`), says `ping`, and prints
/// `N REUSED ANSWER`, or `N error WHAT` when the connection failed.
const PYTHON_CLIENT: &str = r#"
import socket, ssl, sys
ca, version = sys.argv[1:3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
session = first = None
i = 0
for line in sys.stdin:
    port, host, *which = line.split()
    offered = first if which == ["first"] else session
    try:
        with socket.create_connection(("127.0.0.1", int(port))) as raw:
            with ctx.wrap_socket(raw, server_hostname=host, session=offered) as tls:
                tls.sendall(b"ping\n")
                answer = b""
                while not answer.endswith(b"\n"):
                    chunk = tls.recv(100)
                    if not chunk:
                        break
                    answer += chunk
                print(i, tls.session_reused, answer.decode().strip(), flush=True)
                session = tls.session
                first = first or session
    except (OSError, ValueError) as e:
        print(i, "error", type(e).__name__, e, flush=True)
    i += 1
"#;

/// The python client's next connection, to `port` as `host`: what it printed.
fn next_connection(client: &mut Process, port: u16, host: &str) -> String {
    client.send(&format!("{port} {host}\n"));
    tokio::task::block_in_place(|| client.stdout_line())
}

/// A session made for one SNI name (served by its own SNI certificate) and offered for
/// another is not resumed: the client gets a full handshake, the other name's certificate,
/// and our server reports the name asked for. Offered for its own name, it is (the control).
/// Both versions. (Guard: rustls ties a session to its SNI name.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_resumed_only_for_the_sni_name_it_was_made_for() {
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let files = pki.temp_files();
    let other = pki.ca.server(&["other.test"]);
    for version in VERSIONS {
        let config = other
            .sni_certificate("other.test", pki.server_config())
            .protocol_versions(&[version])
            .build()
            .unwrap();
        let mut served = server(&selector, config).await;
        let port = served.port();
        let mut client = Process::start(
            "python3",
            [
                "-c",
                PYTHON_CLIENT,
                path_arg(&files.ca),
                python_version(version),
            ],
        );
        for (i, host, reused) in [
            (0, "other.test", "False"),
            (1, "other.test", "True"),
            (2, "localhost", "False"),
            (3, "localhost", "True"),
        ] {
            let line = next_connection(&mut client, port, host);
            assert_eq!(line, format!("{i} {reused} pong"), "{version:?}");
            let (view, _) = served.next().await.unwrap();
            assert_eq!(view.server_name.as_deref(), Some(host), "{version:?} {i}");
        }
        client.kill();
    }
}

/// Sessions are kept by the configuration that made them: a second server built apart from
/// the same files resumes none of the first's (a full handshake, which succeeds), and one
/// given a clone of the first's configuration resumes them. Both versions. (Guard: the docs
/// say clones share one configuration, and a configuration built anew resumes nothing made
/// before.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_shared_by_clones_and_not_by_configurations_built_apart() {
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let files = pki.temp_files();
    for version in VERSIONS {
        let build = || {
            pki.server_config()
                .protocol_versions(&[version])
                .build()
                .unwrap()
        };
        let config = build();
        let mut first = server(&selector, config.clone()).await;
        let mut apart = server(&selector, build()).await;
        let mut clone = server(&selector, config).await;
        let mut client = Process::start(
            "python3",
            [
                "-c",
                PYTHON_CLIENT,
                path_arg(&files.ca),
                python_version(version),
            ],
        );
        let line = next_connection(&mut client, first.port(), "localhost");
        assert_eq!(line, "0 False pong", "{version:?}");
        first.next().await.unwrap();
        let line = next_connection(&mut client, clone.port(), "localhost");
        assert_eq!(line, "1 True pong", "{version:?}");
        clone.next().await.unwrap();
        let line = next_connection(&mut client, apart.port(), "localhost");
        assert_eq!(line, "2 False pong", "{version:?}");
        apart.next().await.unwrap();
        client.kill();
    }
}

/// Our client resumes with `openssl s_server`, in both versions, whether the server keeps its
/// sessions (`-no_ticket`: TLS 1.2 session IDs, TLS 1.3 tickets that name a session it keeps)
/// or hands them out as tickets: the second connection of a clone of the configuration is
/// `Reused`, and its session queries answer as after the full handshake (the server's
/// certificate included, which a resumed handshake does not send). The client reads one line before it
/// closes; the TLS 1.3 tickets come before it. (Guard: our client was tested resuming only
/// with a python server's tickets.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_resumes_with_openssl_s_server_by_session_id_and_by_ticket() {
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let files = pki.temp_files();
    for version in ["-tls1_3", "-tls1_2"] {
        for tickets in ["-no_ticket", "-tls1"] {
            let mut args = vec![
                "s_server",
                "-accept",
                "127.0.0.1:0",
                "-naccept",
                "2",
                version,
                "-cert",
                path_arg(&files.server_chain),
                "-key",
                path_arg(&files.server_key),
            ];
            // `-tls1` stands for "no option": a version not in play, as the version given last
            // wins in `s_server`'s options before it.
            if tickets == "-no_ticket" {
                args.push(tickets);
            }
            let mut server = Process::start("openssl", args);
            let accept = server.stdout_line_where("ACCEPT line", |l| l.starts_with("ACCEPT "));
            let port = net_tests::harness::port_at_end(&accept);
            let config = pki.client_config().build().unwrap();
            let mut views = Vec::new();
            for i in 0..2 {
                let mut tls = net_tests::within(net_tests::tls::connect(
                    &selector,
                    "localhost",
                    port,
                    config.clone(),
                ))
                .await
                .unwrap();
                let mut input = tls.open_read_channel().unwrap();
                let mut output = tls.open_write_channel(true).unwrap();
                output
                    .write_string_utf8(&format!("hello{i}\n"))
                    .await
                    .unwrap();
                let reused = std::cell::Cell::new(false);
                let hello = format!("hello{i}");
                tokio::task::block_in_place(|| {
                    server.stdout_line_where(&hello, |l| {
                        reused.set(reused.get() || l == "Reused session-id");
                        l == hello
                    })
                });
                server.send("zero\n");
                let line = net_tests::within(input.read_line(64, LineEnding::Default)).await;
                assert_eq!(line.unwrap().as_deref(), Some("zero"));
                assert_eq!(reused.get(), i == 1, "{version} {tickets}: connection {i}");
                views.push((SessionView::of(&tls), tls.peer_certificates().to_vec()));
                tls.close();
            }
            assert_eq!(
                views[1], views[0],
                "{version} {tickets}: resumed against full"
            );
            // `s_server -cert` sends the leaf alone.
            assert_eq!(
                views[0].1,
                [pki.server.cert_der().clone()],
                "{version} {tickets}"
            );
            drop(server);
        }
    }
}

/// Relays one connection from `front` to `127.0.0.1:back` and returns how many bytes the
/// server sent in it (to its end, or until the client took no more).
async fn relay_counting(front: tokio::net::TcpListener, back: u16) -> u64 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (mut client, _) = front.accept().await.unwrap();
    let mut server = tokio::net::TcpStream::connect(("127.0.0.1", back))
        .await
        .unwrap();
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let up = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    };
    // Counted as read from the server, whatever becomes of them: the client may close (with a
    // reset, the server's last records unread) before they all went through, which fails a
    // write to it (`tokio::io::copy` then loses its count: a full handshake counted as 0
    // bytes, "resumed"). What the handshake sent went through before the client's answer.
    let down = async {
        let mut sent = 0;
        let mut buffer = vec![0; 16 * 1024];
        while let Ok(n @ 1..) = server_read.read(&mut buffer).await {
            sent += n as u64;
            if client_write.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
        sent
    };
    tokio::join!(up, down).1
}

/// One round trip with our server at `back` through a relay on `host` (a loopback address, or
/// `localhost`, relayed from `127.0.0.1`: the name the client verifies and keeps its session
/// by): whether the client resumed, told by the bytes the server sent (a full handshake sends
/// the chain, `cert_len` bytes, on top of what a resumed one sends: with net-tls's
/// `aws-lc-rs` provider that includes the 1,088-byte ML-KEM ciphertext of `X25519MLKEM768`).
async fn resumed(
    selector: &SelectorManager,
    config: &net_tls::TlsConfig,
    host: &str,
    back: u16,
    cert_len: usize,
) -> bool {
    let bind = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    let front = tokio::net::TcpListener::bind((bind, 0)).await.unwrap();
    let port = front.local_addr().unwrap().port();
    let relay = tokio::spawn(relay_counting(front, back));
    let mut tls = net_tests::within(net_tests::tls::connect(
        selector,
        host,
        port,
        config.clone(),
    ))
    .await
    .unwrap();
    let post_quantum =
        tls.key_exchange_group() == Some(net_tls::rustls::NamedGroup::X25519MLKEM768);
    let mut input = tls.open_read_channel().unwrap();
    let mut output = tls.open_write_channel(true).unwrap();
    output.write_string_utf8("ping\n").await.unwrap();
    // TLS 1.3 tickets come before the answer: read, they are kept.
    let answer = net_tests::within(input.read_line(LINE_LIMIT, LineEnding::Default)).await;
    assert_eq!(answer.unwrap().as_deref(), Some("pong"), "{host}");
    tls.close();
    let sent = net_tests::within(relay).await.unwrap();
    let ciphertext = if post_quantum { 1088 } else { 0 };
    sent < (cert_len + ciphertext) as u64
}

/// A client configuration keeps the sessions of 32 servers, and forgets the one it met first
/// when a 33rd comes, however recently it connected to that one since (rustls's cache keeps
/// them in the order it first met them): a client that connects to server A, to 31 others, to
/// A again (resumed: 32 kept), then to one more, has A's session forgotten, though it
/// connected to A more recently than to 31 others, whose sessions it keeps. Both versions.
/// Before the fix the docs said it kept the sessions "of the servers it connected to last".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_forgets_the_server_it_met_first_when_a_33rd_comes() {
    let selector = SelectorManager::new();
    let hosts: Vec<String> = (2..=35).map(|n| format!("127.0.0.{n}")).collect();
    let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let pki = Pki::generate();
    let leaf = pki.ca.server(&names);
    let chain_len: usize = leaf.chain_der().iter().map(|c| c.len()).sum();
    for version in VERSIONS {
        let config = leaf
            .server_config()
            .protocol_versions(&[version])
            .build()
            .unwrap();
        let served = server(&selector, config).await;
        let back = served.port();
        let client = pki.client_config().build().unwrap();
        let resumes = async |host: &str| resumed(&selector, &client, host, back, chain_len).await;
        let a = names[0];
        assert!(!resumes(a).await);
        for other in &names[1..32] {
            assert!(!resumes(other).await, "{version:?}: {other}");
        }
        assert!(resumes(a).await, "{version:?}: A, among 32 servers");
        assert!(!resumes(names[32]).await, "{version:?}");
        assert!(
            !resumes(a).await,
            "{version:?}: A, met first, is still kept after a 33rd server"
        );
        // A, met anew, took the place of the one met first after it; the next one is kept.
        assert!(resumes(names[2]).await, "{version:?}");
        assert!(!resumes(names[1]).await, "{version:?}");
    }
}

/// One round trip with our server at `port` (`ping`, `pong`, then a clean close).
async fn ping(
    selector: &SelectorManager,
    port: u16,
    config: &net_tls::TlsConfig,
) -> Result<(), net_tls::Error> {
    let mut tls = net_tests::within(net_tests::tls::connect(
        selector,
        "localhost",
        port,
        config.clone(),
    ))
    .await?;
    let mut input = tls.open_read_channel()?;
    let mut output = tls.open_write_channel(true)?;
    output.write_string_utf8("ping\n").await?;
    let answer = net_tests::within(input.read_line(LINE_LIMIT, LineEnding::Default)).await?;
    assert_eq!(answer.as_deref(), Some("pong"));
    tls.close();
    Ok(())
}

/// As the docs of `TlsServerConfig` say: a session is resumed however old, and no certificate
/// is checked again, so a client whose certificate expired since its session was made resumes
/// under `client_auth_required`, the server reporting that certificate, while a full handshake
/// with it (a configuration built anew, which has no session) is refused as expired. Both
/// versions. (Guard of the documented behaviour: a certificate's end does not end the
/// sessions made with it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_resumes_after_the_client_certificate_in_it_expired() {
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let valid_for = std::time::Duration::from_secs(4);
    let expiry = tokio::time::Instant::now() + valid_for;
    let short_lived = pki.ca.client_expiring_in("short-lived client", valid_for);
    let client_config = || {
        short_lived
            .client_certificate(pki.client_config())
            .build()
            .unwrap()
    };
    let mut sessions = Vec::new();
    for version in VERSIONS {
        let config = pki
            .server
            .mutual_tls_server_config(&pki.ca)
            .protocol_versions(&[version])
            .build()
            .unwrap();
        let mut served = server(&selector, config).await;
        let client = client_config();
        ping(&selector, served.port(), &client).await.unwrap();
        let (_, chain) = served.next().await.unwrap();
        assert_eq!(chain, short_lived.chain_der(), "{version:?}");
        sessions.push((version, served, client));
    }
    assert!(
        tokio::time::Instant::now() < expiry,
        "the first handshakes took longer than the certificate's {valid_for:?}"
    );
    // Past the certificate's end (webpki checks to the second).
    tokio::time::sleep_until(expiry + std::time::Duration::from_millis(1500)).await;
    for (version, mut served, client) in sessions {
        ping(&selector, served.port(), &client).await.unwrap();
        let (_, chain) = served.next().await.unwrap();
        assert_eq!(chain, short_lived.chain_der(), "{version:?}: resumed");
        // A full handshake with the same certificate is refused. (In TLS 1.3 the client may
        // learn of it only on its read: its own outcome is not the point.)
        let _ = ping(&selector, served.port(), &client_config()).await;
        let refused = served.next().await.unwrap_err();
        assert!(
            matches!(
                refused,
                net_tls::Error::Handshake(net_tls::rustls::Error::InvalidCertificate(
                    net_tls::rustls::CertificateError::Expired
                        | net_tls::rustls::CertificateError::ExpiredContext { .. }
                ))
            ),
            "{version:?}: {refused:?}"
        );
    }
}

/// The client offers a session only to the name it was made with, on any port: a session of
/// `localhost` is not offered to `127.0.0.1`, the same server at the same port (a full
/// handshake), and is resumed with `localhost` at another port (a relay of its own), as the
/// docs say (kept "by the name the server was verified against"). Both versions. (Guard.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_offered_by_name_whatever_the_port() {
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let chain_len: usize = pki.server.chain_der().iter().map(|c| c.len()).sum();
    for version in VERSIONS {
        let config = pki
            .server_config()
            .protocol_versions(&[version])
            .build()
            .unwrap();
        let served = server(&selector, config).await;
        let back = served.port();
        let client = pki.client_config().build().unwrap();
        let resumes = async |host: &str| resumed(&selector, &client, host, back, chain_len).await;
        assert!(!resumes("localhost").await, "{version:?}");
        assert!(!resumes("127.0.0.1").await, "{version:?}: another name");
        assert!(resumes("localhost").await, "{version:?}: another port");
        assert!(resumes("127.0.0.1").await, "{version:?}");
    }
}

/// A TLS 1.3 ticket resumes once: the session a python client got first, offered again after
/// it resumed, is not resumed (a full handshake, which succeeds: rustls takes a ticket of its
/// store as it resumes it), while a TLS 1.2 session ID resumes again. As the docs of
/// `TlsServerConfig` say. (Guard.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls13_ticket_resumes_once_and_a_tls12_session_again() {
    let selector = SelectorManager::new();
    let pki = Pki::generate();
    let files = pki.temp_files();
    for version in VERSIONS {
        let config = pki
            .server_config()
            .protocol_versions(&[version])
            .build()
            .unwrap();
        let mut served = server(&selector, config).await;
        let port = served.port();
        let mut client = Process::start(
            "python3",
            [
                "-c",
                PYTHON_CLIENT,
                path_arg(&files.ca),
                python_version(version),
            ],
        );
        let again = match version {
            TlsVersion::Tls13 => "False",
            _ => "True",
        };
        for (i, which, reused) in [(0, "", "False"), (1, "first", "True"), (2, "first", again)] {
            let line = next_connection(&mut client, port, &format!("localhost {which}"));
            assert_eq!(line, format!("{i} {reused} pong"), "{version:?}");
            served.next().await.unwrap();
        }
        client.kill();
    }
}
