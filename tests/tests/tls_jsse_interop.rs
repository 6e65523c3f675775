//! TLS against JSSE, Java's own TLS stack (independent of rustls, OpenSSL and GnuTLS), the
//! likeliest peer of a program whose users come from Ktor: a JSSE `SSLSocket` client against
//! our server, and our client against a JSSE server, both played by `tests/java/JssePeer.java`
//! (compiled once per test binary with `javac`, run with `java`).
//!
//! Checked, each time from both ends: the session TLS 1.3 and 1.2 negotiate (version, suite,
//! ALPN, the client's certificate in PKCS#12), failures on either side (certificates, ALPN:
//! typed errors on ours), `close_notify` both ways and the TLS 1.3 half-close, JSSE's
//! `close()` (`user_canceled`, then `close_notify`: a clean end), a TCP close without
//! `close_notify` (a truncation for us), session resumption both ways, KeyUpdates that JSSE
//! forces (`jdk.tls.keyLimits` of 4 KiB: one after every record) across megabytes both ways,
//! byte for byte, a TLS 1.2 renegotiation asked by JSSE (which rustls refuses), and STARTTLS.
//! What is JSSE's own behaviour (no SNI for `localhost` unless set, no half-close in TLS 1.2,
//! no KeyUpdate once its input is closed) is said where a test meets it.
//!
//! Needs a JDK (`java` and `javac`; Debian: `default-jdk-headless`); without one every test
//! says why (the kit's `skipped`) and passes. Each test starts one JVM and runs all its
//! connections in it, as the JVM takes a second or so to start.

use net_io::{ByteReadChannel, ByteWriteChannel, LineEnding};
use net_sockets::{SelectorManager, a_socket};
use net_tests::conversation::send;
use net_tests::harness::{Process, java_peer, path_arg};
use net_tests::pki::{Pki, PkiFiles, TestCa};
use net_tests::tls::{SessionView, TlsTestServer, connect, is_truncated, rustls_error};
use net_tests::within;
use net_tls::{TlsConfig, TlsExt, TlsServerConfig, TlsSocket, TlsVersion};

/// `JssePeer` with JVM `options` and program `args` (see [`java_peer`]); `None` without a
/// JDK.
fn start_jvm(options: &[&str], args: &[String]) -> Option<Process> {
    let classes = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("jsse-peer");
    java_peer(&classes, options, args)
}

fn file_args(ca: &PkiFiles, chain: &std::path::Path, key: &std::path::Path) -> Vec<String> {
    vec![
        path_arg(&ca.ca).to_owned(),
        path_arg(chain).to_owned(),
        path_arg(key).to_owned(),
    ]
}

/// A line of `len` letters, as `JssePeer.textLine` makes it.
fn text_line(seed: usize, len: usize) -> String {
    (0..len)
        .map(|i| char::from(b'a' + ((i * 7 + seed * 3) % 26) as u8))
        .collect()
}

/// The byte at `i` of a bulk transfer, as `JssePeer.bulkByte` makes it.
fn bulk_byte(i: u64) -> u8 {
    (i.wrapping_mul(31) + (i >> 8) * 7 + (i >> 16)) as u8
}

/// Reads the JVM's lines up to `DONE <name>` (the end of one step), returning those after
/// the step's `STEP` line.
fn step_lines(jvm: &mut Process, name: &str) -> Vec<String> {
    let done = format!("DONE {name}");
    let mut lines = Vec::new();
    loop {
        let line = jvm.stdout_line();
        if line == done {
            return lines;
        }
        if !line.starts_with("STEP ") {
            lines.push(line);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Our server against a JSSE client.
// ---------------------------------------------------------------------------------------------

/// How a session ended, as our server's read saw it.
#[derive(Clone, Debug, PartialEq)]
enum End {
    /// `Ok(None)`: the peer's `close_notify`.
    Clean,
    /// A [`Truncated`](net_tls::Truncated) error: the stream ended without `close_notify`.
    Truncated,
    /// Any other error: its kind and the rustls error inside, if any.
    Failed(std::io::ErrorKind, Option<net_tls::rustls::Error>),
}

fn end_of(e: &net_io::Error) -> End {
    if is_truncated(e) {
        End::Truncated
    } else {
        End::Failed(e.kind(), rustls_error(e).cloned())
    }
}

/// What our server saw of one connection.
#[derive(Debug)]
struct ServerView {
    session: SessionView,
    received: Vec<String>,
    end: End,
}

/// Answers every line with `Hello, LINE!` until the end; after the client's clean end it
/// still writes `Bye after your close_notify!` (the client may only have half-closed).
async fn converse(
    session: SessionView,
    mut input: ByteReadChannel,
    mut output: ByteWriteChannel,
) -> ServerView {
    let mut received = Vec::new();
    let end = loop {
        match input.read_line(1 << 20, LineEnding::Default).await {
            Ok(Some(line)) => {
                let answer = format!("Hello, {line}!\n");
                received.push(line);
                if let Err(e) = output.write_string_utf8(&answer).await {
                    break end_of(&e);
                }
            }
            Ok(None) => {
                let _ = output
                    .write_string_utf8("Bye after your close_notify!\n")
                    .await;
                break End::Clean;
            }
            Err(e) => break end_of(&e),
        }
    };
    let _ = output.flush_and_close().await;
    ServerView {
        session,
        received,
        end,
    }
}

async fn line_server(
    selector: &SelectorManager,
    config: TlsServerConfig,
) -> TlsTestServer<ServerView> {
    TlsTestServer::start(
        selector,
        config,
        |mut tls: TlsSocket, reporter| async move {
            let session = SessionView::of(&tls);
            let input = tls.open_read_channel().unwrap();
            let output = tls.open_write_channel(true).unwrap();
            reporter.report(converse(session, input, output).await);
            tls.close();
        },
    )
    .await
}

/// Our echo server for bulk transfers: copies what it reads back until the client's end
/// (`close_notify`), then closes; reports how many bytes it copied and how the copy ended.
async fn echo_server(
    selector: &SelectorManager,
    config: TlsServerConfig,
) -> TlsTestServer<(SessionView, Result<u64, End>)> {
    TlsTestServer::start(
        selector,
        config,
        |mut tls: TlsSocket, reporter| async move {
            let session = SessionView::of(&tls);
            let mut input = tls.open_read_channel().unwrap();
            let mut output = tls.open_write_channel(false).unwrap();
            let copied = input
                .copy_and_close(&mut output, u64::MAX)
                .await
                .map_err(|e| end_of(&e));
            tls.close();
            reporter.report((session, copied));
        },
    )
    .await
}

/// A STARTTLS server: greets in plain text, answers `NOOP`, and on `STARTTLS` upgrades and
/// goes on as [`line_server`]; reports the plain lines it read and the TLS session.
async fn starttls_server(
    selector: &SelectorManager,
    config: TlsServerConfig,
) -> (
    u16,
    tokio::sync::mpsc::UnboundedReceiver<(Vec<String>, ServerView)>,
) {
    let listener = a_socket(selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.port().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let socket = listener.accept().await.unwrap();
        let mut plain = socket.connection().unwrap();
        send(&mut plain.output, "220 ready\r\n").await;
        let mut commands = Vec::new();
        while let Some(command) = plain
            .input
            .read_line(512, LineEnding::Default)
            .await
            .unwrap()
        {
            commands.push(command.clone());
            if command == "STARTTLS" {
                plain
                    .output
                    .write_string_utf8("220 go ahead\r\n")
                    .await
                    .unwrap();
                let mut tls = plain.tls_server(&config).await.unwrap();
                let session = SessionView::of(&tls);
                let input = tls.open_read_channel().unwrap();
                let output = tls.open_write_channel(true).unwrap();
                let view = converse(session, input, output).await;
                tls.close();
                let _ = tx.send((commands, view));
                return;
            }
            send(&mut plain.output, "250 ok\r\n").await;
        }
    });
    (port, rx)
}

/// The JVM options that make JSSE update its keys after every record once 4 KiB went either
/// way (it checks the limit per record, so in practice every 16 KiB record), and log its
/// handshake messages, KeyUpdates included, so that the tests can count them.
const KEY_UPDATES_EVERY_4_KIB: [&str; 2] = [
    "-DjssePeer.keyLimits=AES/GCM/NoPadding KeyUpdate 2^12, ChaCha20-Poly1305 KeyUpdate 2^12",
    "-Djavax.net.debug=ssl:handshake",
];

/// How many bytes cross each way in the KeyUpdate tests.
const BULK: u64 = 4 << 20;

/// The `SESSION` line `JssePeer` prints for a session of `protocol` with the suite our end
/// reports (rustls's `TLS13_` names are IANA's `TLS_` ones).
fn java_session(
    protocol: &str,
    ours: &SessionView,
    alpn: bool,
    peer_certificates: usize,
) -> String {
    let suite = ours.suite.replacen("TLS13_", "TLS_", 1);
    let alpn = if alpn { "http/1.1" } else { "-" };
    format!("SESSION {protocol} {suite} alpn={alpn} peer-certificates={peer_certificates}")
}

fn protocol_of(step: &str) -> (&str, TlsVersion) {
    if step.contains("TLSv1.3") {
        ("TLSv1.3", TlsVersion::Tls13)
    } else {
        ("TLSv1.2", TlsVersion::Tls12)
    }
}

/// `JssePeer tls-client` with the kit's CA and client certificate, another CA (for
/// `untrusted`), and `steps`.
fn jsse_client(
    files: &PkiFiles,
    other_ca: &std::path::Path,
    options: &[&str],
    steps: &[String],
) -> Option<Process> {
    let mut args = vec!["tls-client".to_owned()];
    args.extend(file_args(files, &files.client_chain, &files.client_key));
    args.push(path_arg(other_ca).to_owned());
    args.extend(steps.iter().cloned());
    start_jvm(options, &args)
}

/// A JSSE client against our server, TLS 1.3 and 1.2, without and with ALPN and a client
/// certificate (our server's is optional): both ends report the same session (JSSE sends SNI
/// `localhost` only when told: it leaves out names without a dot), a 20 000-byte line crosses
/// both ways, and JSSE's `shutdownOutput` (a `close_notify`, reading on: a half-close, in TLS
/// 1.2 as in 1.3) is a clean end for our server, whose last line still reaches JSSE before our
/// own `close_notify` ends its reads. Then STARTTLS (plain lines, then JSSE layered on the same
/// connection), and session resumption: JSSE resumes its TLS 1.2 session (the same session ID)
/// and its TLS 1.3 one (our server accepts its PSK, as JSSE's log says: JSSE gives a resumed
/// TLS 1.3 session a new ID), and our server still reports the client certificate JSSE
/// presented in the first handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsse_client_against_our_server() {
    let pki = Pki::generate();
    let files = pki.temp_files();
    let other = net_tests::TempDir::new("net-tests-jsse");
    let other_ca = other.write("other-ca.pem", TestCa::new("another CA").pem());
    let selector = SelectorManager::new();
    let config = pki
        .server_config()
        .client_auth_optional(pki.ca.pem().as_bytes())
        .unwrap()
        .alpn_protocols(["http/1.1"])
        .build()
        .unwrap();
    let mut server = line_server(&selector, config).await;
    let (starttls_port, mut upgraded) =
        starttls_server(&selector, pki.server_config().build().unwrap()).await;
    let p = server.port();
    let talks = [
        format!("talk/{p}/TLSv1.3"),
        format!("talk/{p}/TLSv1.3/alpn/cert"),
        format!("talk/{p}/TLSv1.2"),
        format!("talk/{p}/TLSv1.2/alpn/cert"),
    ];
    let mut steps = talks.to_vec();
    steps.push(format!("starttls/{starttls_port}/TLSv1.3"));
    steps.push(format!("resume/{p}/TLSv1.2/cert"));
    steps.push(format!("resume/{p}/TLSv1.3/cert"));
    let Some(mut jvm) = jsse_client(
        &files,
        &other_ca,
        &["-Djavax.net.debug=ssl:handshake"],
        &steps,
    ) else {
        return;
    };
    let long = text_line(1, 20_000);
    for step in &talks {
        let (protocol, version) = protocol_of(step);
        let (alpn, cert) = (step.contains("alpn"), step.contains("cert"));
        let said = step_lines(&mut jvm, "talk");
        let view = server.next().await.expect("our server's handshake");
        assert_eq!(view.session.version, Some(version), "{step}");
        assert_eq!(
            view.session.alpn,
            alpn.then(|| b"http/1.1".to_vec()),
            "{step}"
        );
        assert_eq!(
            view.session.server_name.as_deref(),
            Some("localhost"),
            "{step}"
        );
        assert_eq!(
            view.session.peer_certificates,
            2 * usize::from(cert),
            "{step}"
        );
        assert_eq!(view.received, ["Hello, rustls", long.as_str()], "{step}");
        assert_eq!(view.end, End::Clean, "{step}");
        let expected = [
            java_session(protocol, &view.session, alpn, 2),
            "ANSWER Hello, Hello, rustls!".to_owned(),
            "LONG true".to_owned(),
            "HALF-CLOSED".to_owned(),
            "AFTER Bye after your close_notify!".to_owned(),
            "EOF".to_owned(),
        ];
        assert_eq!(said, expected, "{step}");
    }
    let said = step_lines(&mut jvm, "starttls");
    let (commands, view) = within(upgraded.recv()).await.expect("the STARTTLS session");
    assert_eq!(commands, ["NOOP", "STARTTLS"]);
    assert_eq!(view.received, ["secret"]);
    assert_eq!(view.end, End::Clean);
    assert_eq!(
        said,
        [
            "PLAIN 220 ready\\r".to_owned(),
            "PLAIN 250 ok\\r".to_owned(),
            "PLAIN 220 go ahead\\r".to_owned(),
            java_session("TLSv1.3", &view.session, false, 2),
            "ANSWER Hello, secret!".to_owned(),
            "AFTER Bye after your close_notify!".to_owned(),
            "EOF".to_owned(),
        ]
    );
    for version in ["TLSv1.2", "TLSv1.3"] {
        let said = step_lines(&mut jvm, "resume");
        for round in 0..2 {
            let view = server.next().await.expect("our server's handshake");
            assert_eq!(view.received, [format!("round {round}")], "{version}");
            assert_eq!(view.end, End::Clean, "{version}");
            // The client's certificate, presented in the first handshake, is the resumed
            // session's too.
            let certificates = view.session.peer_certificates;
            assert_eq!(certificates, 2, "{version} round {round}");
        }
        assert_eq!(
            said,
            [
                "ANSWER Hello, round 0!",
                "ANSWER Hello, round 1!",
                if version == "TLSv1.2" {
                    "RESUMED true"
                } else {
                    "RESUMED false"
                }
            ],
            "{version}"
        );
    }
    let exit = jvm.finish();
    assert!(exit.status.success(), "{exit:#?}");
    // JSSE's log (on stderr): only the second TLS 1.3 connection of `resume` used a PSK, so
    // our server took the ticket it sent after the first.
    let psk = exit
        .stderr
        .iter()
        .filter(|l| l.contains("Using PSK to derive early secret"))
        .count();
    assert_eq!(psk, 1, "our server must accept JSSE's TLS 1.3 ticket");
}

/// What goes wrong between a JSSE client and our server ends with typed errors on our side
/// and nothing lost before it:
/// - JSSE trusting another CA refuses our certificate (`certificate_unknown`): our handshake
///   fails with that alert, TLS 1.3 and 1.2;
/// - our server requiring a client certificate refuses JSSE without one:
///   `NoCertificatesPresented` (JSSE's TLS 1.3 handshake completes first and it reads our
///   `certificate_required`, or, when it is writing its first line as our socket closes,
///   fails on the reset with a broken pipe; in TLS 1.2 likewise with its last flight);
/// - JSSE closing the TCP connection without `close_notify` after a line: the line arrives,
///   then a truncation (not a clean end), TLS 1.3 and 1.2; while JSSE's `close()` (in TLS 1.3
///   a `user_canceled` warning, then `close_notify`) is a clean end;
/// - no protocol in common with JSSE's ALPN list (`h2`, `http/1.1` against our `imap`):
///   `NoApplicationProtocol`, and JSSE gets our `no_application_protocol` alert;
/// - a TLS 1.2 renegotiation JSSE starts (`startHandshake` again): rustls answers with a
///   `no_renegotiation` warning and goes on; the line JSSE writes after its ClientHello still
///   arrives, then JSSE takes the warning as fatal (`received handshake warning`) and sends a
///   `handshake_failure` alert, which ends our read with kind `InvalidData` and that alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsse_client_refused_cut_or_renegotiating_ends_typed_on_our_server() {
    let pki = Pki::generate();
    let files = pki.temp_files();
    let other = net_tests::TempDir::new("net-tests-jsse");
    let other_ca = other.write("other-ca.pem", TestCa::new("another CA").pem());
    let selector = SelectorManager::new();
    let mut server = line_server(&selector, pki.server_config().build().unwrap()).await;
    let required = pki
        .server_config()
        .client_auth_required(pki.ca.pem().as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let mut strict = line_server(&selector, required).await;
    let imap_only = pki
        .server_config()
        .alpn_protocols(["imap"])
        .build()
        .unwrap();
    let mut picky = line_server(&selector, imap_only).await;
    let (p, q, r) = (server.port(), strict.port(), picky.port());
    let steps = [
        format!("talk/{p}/TLSv1.3/untrusted"),
        format!("talk/{p}/TLSv1.2/untrusted"),
        format!("talk/{q}/TLSv1.3"),
        format!("talk/{q}/TLSv1.2"),
        format!("cut/{p}/TLSv1.3"),
        format!("cut/{p}/TLSv1.2"),
        format!("renegotiate/{p}/TLSv1.2"),
        format!("close/{p}/TLSv1.3"),
        format!("close/{p}/TLSv1.2"),
        format!("talk/{r}/TLSv1.3/alpn"),
        format!("talk/{r}/TLSv1.2/alpn"),
    ];
    let Some(mut jvm) = jsse_client(&files, &other_ca, &[], &steps) else {
        return;
    };
    for step in &steps[..2] {
        let said = step_lines(&mut jvm, "talk");
        assert_eq!(said.len(), 1, "{step}: {said:?}");
        assert!(
            said[0].starts_with("FAILED javax.net.ssl.SSLHandshakeException: PKIX path"),
            "{step}: {said:?}"
        );
        match server.next().await {
            Err(net_tls::Error::Handshake(net_tls::rustls::Error::AlertReceived(
                net_tls::rustls::AlertDescription::CertificateUnknown,
            ))) => {}
            other => panic!("{step}: {other:?}"),
        }
    }
    for step in &steps[2..4] {
        let said = step_lines(&mut jvm, "talk");
        match strict.next().await {
            Err(net_tls::Error::Handshake(net_tls::rustls::Error::NoCertificatesPresented)) => {}
            other => panic!("{step}: {other:?}"),
        }
        // JSSE reports our alert (`certificate_required`) or, when its write of the first
        // line met our closed socket before it read the alert, the reset (a broken pipe).
        let failed = said.last().expect("a failure");
        assert!(failed.starts_with("FAILED "), "{step}: {said:?}");
    }
    for step in &steps[4..6] {
        let said = step_lines(&mut jvm, "cut");
        assert_eq!(said, ["ANSWER Hello, cut here!", "CUT"], "{step}");
        let view = server.next().await.expect("our server's handshake");
        assert_eq!(view.received, ["cut here"], "{step}");
        assert_eq!(view.end, End::Truncated, "{step}");
    }
    let said = step_lines(&mut jvm, "renegotiate");
    assert_eq!(
        said,
        [
            "ANSWER Hello, before!",
            "RENEGOTIATION-STARTED",
            "RENEGOTIATION-FAILED javax.net.ssl.SSLHandshakeException: received handshake \
             warning: no_renegotiation",
        ]
    );
    let view = server.next().await.expect("our server's handshake");
    assert_eq!(view.received, ["before", "after"]);
    let handshake_failure =
        net_tls::rustls::Error::AlertReceived(net_tls::rustls::AlertDescription::HandshakeFailure);
    assert_eq!(
        view.end,
        End::Failed(std::io::ErrorKind::InvalidData, Some(handshake_failure))
    );
    for step in &steps[7..9] {
        let said = step_lines(&mut jvm, "close");
        assert_eq!(said, ["ANSWER Hello, closing!", "CLOSED"], "{step}");
        let view = server.next().await.expect("our server's handshake");
        assert_eq!(view.received, ["closing"], "{step}");
        assert_eq!(view.end, End::Clean, "{step}");
    }
    for step in &steps[9..] {
        let said = step_lines(&mut jvm, "talk");
        match picky.next().await {
            Err(net_tls::Error::Handshake(net_tls::rustls::Error::NoApplicationProtocol)) => {}
            other => panic!("{step}: {other:?}"),
        }
        assert_eq!(
            said,
            [
                "FAILED javax.net.ssl.SSLHandshakeException: Received fatal alert: \
              no_application_protocol"
            ],
            "{step}"
        );
    }
    let exit = jvm.finish();
    assert!(exit.status.success(), "{exit:#?}");
}

/// A server that reads to the client's end (its half-close), then writes [`BULK`] bytes of
/// the bulk pattern and closes; reports how the read ended and how the writes did.
async fn flood_server(
    selector: &SelectorManager,
    config: TlsServerConfig,
) -> TlsTestServer<(Result<String, End>, Result<(), End>)> {
    TlsTestServer::start(
        selector,
        config,
        |mut tls: TlsSocket, reporter| async move {
            let mut input = tls.open_read_channel().unwrap();
            let mut output = tls.open_write_channel(false).unwrap();
            let end = next_line(&mut input).await;
            let written = async {
                let mut sent = 0u64;
                while sent < BULK {
                    let n = (BULK - sent).min(9_001);
                    let chunk: Vec<u8> = (sent..sent + n).map(bulk_byte).collect();
                    output.write_fully(&chunk).await?;
                    sent += n;
                }
                output.flush_and_close().await
            }
            .await
            .map_err(|e| end_of(&e));
            tls.close();
            reporter.report((end, written));
        },
    )
    .await
}

/// How many KeyUpdates JSSE's log says it sent and received.
fn key_updates(log: &[String]) -> (usize, usize) {
    let count = |what: &str| log.iter().filter(|l| l.contains(what)).count();
    (
        count("Produced KeyUpdate post-handshake message"),
        count("Consuming KeyUpdate post-handshake message"),
    )
}

/// KeyUpdates both ways across megabytes, JSSE the client: JSSE sends 4 MiB while it reads
/// our server's echo of them, updating its keys after every record once 4 KiB went either way
/// (`jdk.tls.keyLimits`) and asking our server to update its own; every byte comes back, in
/// order, and the session ends cleanly both ways. Then JSSE half-closes first and reads 4 MiB
/// our server writes after that (JSSE's read limits ask for no KeyUpdate then): every byte
/// arrives, and the session ends cleanly. JSSE's log shows hundreds of its KeyUpdates
/// and some of ours (rustls answers requests that arrive together with one KeyUpdate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_updates_every_few_kib_across_megabytes_with_a_jsse_client() {
    let pki = Pki::generate();
    let files = pki.temp_files();
    let selector = SelectorManager::new();
    let mut server = echo_server(&selector, pki.server_config().build().unwrap()).await;
    let mut flood = flood_server(&selector, pki.server_config().build().unwrap()).await;
    let steps = [
        format!("bulk/{}/TLSv1.3/{BULK}", server.port()),
        format!("flood/{}/TLSv1.3/{BULK}", flood.port()),
    ];
    let Some(mut jvm) = jsse_client(&files, &files.ca, &KEY_UPDATES_EVERY_4_KIB, &steps) else {
        return;
    };
    let said = step_lines(&mut jvm, "bulk");
    let (session, copied) = server.next().await.expect("our server's handshake");
    assert_eq!(copied, Ok(BULK));
    assert_eq!(
        said,
        [
            java_session("TLSv1.3", &session, false, 2),
            format!("BULK received={BULK} first-bad=-1"),
        ]
    );
    // JSSE's half-close first: our server writes after it, and JSSE's reads make it update
    // its keys and ask for ours, though it cannot send its KeyUpdates any more.
    let said = step_lines(&mut jvm, "flood");
    let (end, written) = flood.next().await.expect("our server's handshake");
    assert_eq!(end, Ok("END".to_owned()));
    assert_eq!(written, Ok(()));
    assert_eq!(
        said,
        [
            "HALF-CLOSED".to_owned(),
            format!("FLOOD received={BULK} first-bad=-1"),
        ]
    );
    let exit = jvm.finish();
    assert!(exit.status.success(), "{exit:#?}");
    let (sent, received) = key_updates(&exit.stderr);
    assert!(
        sent >= 100 && received >= 1,
        "JSSE's KeyUpdates: {sent} sent, {received} received"
    );
}

// ---------------------------------------------------------------------------------------------
// Our client against a JSSE server.
// ---------------------------------------------------------------------------------------------

/// `JssePeer tls-server` with the kit's server certificate, trusting the kit's CA for client
/// certificates, with `steps`; returns it and its port.
fn jsse_server(files: &PkiFiles, options: &[&str], steps: &[&str]) -> Option<(Process, u16)> {
    let mut args = vec!["tls-server".to_owned()];
    args.extend(file_args(files, &files.server_chain, &files.server_key));
    args.extend(steps.iter().map(|s| (*s).to_owned()));
    let mut jvm = start_jvm(options, &args)?;
    let line = jvm.stdout_line();
    let port = line
        .strip_prefix("LISTENING ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not JssePeer's port: {line:?}"));
    Some((jvm, port))
}

/// The next line, `END` at a clean end, or how the read failed.
async fn next_line(input: &mut ByteReadChannel) -> Result<String, End> {
    match within(input.read_line(1 << 20, LineEnding::Default)).await {
        Ok(Some(line)) => Ok(line),
        Ok(None) => Ok("END".to_owned()),
        Err(e) => Err(end_of(&e)),
    }
}

fn our_client_config(pki: &Pki, version: TlsVersion, cert: bool, alpn: bool) -> TlsConfig {
    let mut config = pki
        .client_config()
        .server_name("localhost")
        .protocol_versions(&[version]);
    if cert {
        config = pki.client.client_certificate(config);
    }
    if alpn {
        config = config.alpn_protocols(["h2", "http/1.1"]);
    }
    config.build().unwrap()
}

/// Our client against a JSSE server, TLS 1.3 and 1.2, without and with ALPN and a client
/// certificate (required by JSSE): both ends report the same session, a 40 000-byte line is
/// answered, and our `close_notify` is a clean end for JSSE's reads. With TLS 1.3, JSSE then
/// still writes (a half-close) and its own `close_notify` ends our read cleanly after that
/// line; with TLS 1.2, JSSE answers our `close_notify` with its own at once and cannot write
/// any more (its `SSLSocket` closes both ways: "Socket output is already shutdown"), a clean
/// end for us too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_against_a_jsse_server() {
    let pki = Pki::generate();
    let files = pki.temp_files();
    let selector = SelectorManager::new();
    let steps = [
        "echo/TLSv1.3",
        "echo/TLSv1.3/need-cert/alpn",
        "echo/TLSv1.2",
        "echo/TLSv1.2/need-cert/alpn",
    ];
    let Some((mut jvm, port)) = jsse_server(&files, &[], &steps) else {
        return;
    };
    let long = text_line(2, 40_000);
    for step in steps {
        let (protocol, version) = protocol_of(step);
        let (cert, alpn) = (step.contains("need-cert"), step.contains("alpn"));
        let config = our_client_config(&pki, version, cert, alpn);
        let mut tls = within(connect(&selector, "127.0.0.1", port, config))
            .await
            .unwrap();
        let session = SessionView::of(&tls);
        assert_eq!(session.version, Some(version), "{step}");
        assert_eq!(session.alpn, alpn.then(|| b"http/1.1".to_vec()), "{step}");
        assert_eq!(session.peer_certificates, 2, "{step}");
        let mut input = tls.open_read_channel().unwrap();
        let mut output = tls.open_write_channel(true).unwrap();
        send(&mut output, &format!("one\n{long}\n")).await;
        assert_eq!(
            next_line(&mut input).await,
            Ok("Hello, one!".to_owned()),
            "{step}"
        );
        assert_eq!(
            next_line(&mut input).await,
            Ok(format!("Hello, {long}!")),
            "{step}"
        );
        output.flush_and_close().await.unwrap();
        if version == TlsVersion::Tls13 {
            let bye = next_line(&mut input).await;
            assert_eq!(bye, Ok("Bye after your close_notify!".to_owned()), "{step}");
        }
        assert_eq!(next_line(&mut input).await, Ok("END".to_owned()), "{step}");
        tls.close();
        let said = step_lines(&mut jvm, "echo");
        let mut expected = vec![
            java_session(protocol, &session, alpn, 2 * usize::from(cert)),
            "CLIENT-CLOSED after 2 lines".to_owned(),
        ];
        expected.push(if version == TlsVersion::Tls13 {
            "BYE-WRITTEN".to_owned()
        } else {
            "FAILED java.net.SocketException: Socket output is already shutdown".to_owned()
        });
        assert_eq!(said, expected, "{step}");
    }
    let exit = jvm.finish();
    assert!(exit.status.success(), "{exit:#?}");
}

/// What goes wrong between our client and a JSSE server ends with typed errors on our side,
/// and nothing lost before it:
/// - a JSSE certificate from a CA we do not trust: `InvalidCertificate(UnknownIssuer)`, and
///   one for another name than the one we asked for: `NotValidForName`;
/// - JSSE requiring a client certificate we do not have: in TLS 1.3 our handshake completes
///   and our first read fails with JSSE's `bad_certificate` alert (kind `InvalidData`), in
///   TLS 1.2 our handshake fails with it;
/// - JSSE closing the TCP connection without `close_notify` after a line: the line, then a
///   truncation, TLS 1.3 and 1.2; while JSSE's `close()` (in TLS 1.3 a `user_canceled`
///   warning, then `close_notify`) is a clean end;
/// - no protocol in common with JSSE's ALPN list (our `h2` against its `http/1.1`): our
///   handshake fails on its `no_application_protocol` alert;
/// - a TLS 1.2 renegotiation JSSE asks for (HelloRequest): rustls answers `no_renegotiation`
///   and goes on; the line JSSE wrote after asking arrives, then JSSE takes the warning as
///   fatal and sends `handshake_failure`, which ends our read with kind `InvalidData`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsse_server_refusing_cutting_or_renegotiating_ends_typed_on_our_client() {
    let pki = Pki::generate();
    let files = pki.temp_files();
    let selector = SelectorManager::new();
    let steps = [
        "refused/TLSv1.3",
        "refused/TLSv1.2",
        "refused/TLSv1.3/need-cert",
        "refused/TLSv1.2/need-cert",
        "cut/TLSv1.3",
        "cut/TLSv1.2",
        "renegotiate/TLSv1.2",
        "close/TLSv1.3",
        "close/TLSv1.2",
        "refused/TLSv1.3/alpn",
        "refused/TLSv1.2/alpn",
    ];
    let Some((mut jvm, port)) = jsse_server(&files, &[], &steps) else {
        return;
    };
    let other = TestCa::new("another CA");
    let untrusting = other
        .client_config()
        .server_name("localhost")
        .build()
        .unwrap();
    let wrong_name = pki
        .client_config()
        .server_name(net_tests::pki::WRONG_HOST)
        .build()
        .unwrap();
    for (step, config, expected) in [
        (
            steps[0],
            untrusting,
            net_tests::tls::is_unknown_issuer as fn(&net_tls::rustls::CertificateError) -> bool,
        ),
        (steps[1], wrong_name, net_tests::tls::is_not_valid_for_name),
    ] {
        let e = within(connect(&selector, "127.0.0.1", port, config))
            .await
            .expect_err(step);
        net_tests::tls::assert_certificate_error(&e, expected);
        let said = step_lines(&mut jvm, "refused");
        assert_eq!(said.len(), 1, "{step}: {said:?}");
        assert!(
            said[0].starts_with("FAILED javax.net.ssl.SSLHandshakeException: Received fatal alert"),
            "{step}: {said:?}"
        );
    }
    let bad_certificate =
        net_tls::rustls::Error::AlertReceived(net_tls::rustls::AlertDescription::BadCertificate);
    for step in &steps[2..4] {
        let (_, version) = protocol_of(step);
        let config = our_client_config(&pki, version, false, false);
        match (
            version,
            within(connect(&selector, "127.0.0.1", port, config)).await,
        ) {
            (TlsVersion::Tls13, Ok(mut tls)) => {
                let mut input = tls.open_read_channel().unwrap();
                assert_eq!(
                    next_line(&mut input).await,
                    Err(End::Failed(
                        std::io::ErrorKind::InvalidData,
                        Some(bad_certificate.clone())
                    )),
                    "{step}"
                );
            }
            (TlsVersion::Tls12, Err(net_tls::Error::Handshake(e))) => {
                assert_eq!(e, bad_certificate, "{step}");
            }
            (_, other) => panic!("{step}: {other:?}"),
        }
        let said = step_lines(&mut jvm, "refused");
        assert!(
            said.last()
                .is_some_and(|l| l.starts_with("FAILED javax.net.ssl.SSLHandshakeException")),
            "{step}: {said:?}"
        );
    }
    for step in &steps[4..6] {
        let (_, version) = protocol_of(step);
        let config = our_client_config(&pki, version, false, false);
        let mut tls = within(connect(&selector, "127.0.0.1", port, config))
            .await
            .unwrap();
        let mut input = tls.open_read_channel().unwrap();
        let mut output = tls.open_write_channel(true).unwrap();
        send(&mut output, "before\n").await;
        assert_eq!(
            next_line(&mut input).await,
            Ok("Hello, before the cut!".to_owned()),
            "{step}"
        );
        assert_eq!(next_line(&mut input).await, Err(End::Truncated), "{step}");
        tls.close();
        assert_eq!(step_lines(&mut jvm, "cut"), ["GOT before", "CUT"], "{step}");
    }
    let config = our_client_config(&pki, TlsVersion::Tls12, false, false);
    let mut tls = within(connect(&selector, "127.0.0.1", port, config))
        .await
        .unwrap();
    let mut input = tls.open_read_channel().unwrap();
    let mut output = tls.open_write_channel(true).unwrap();
    send(&mut output, "before\n").await;
    assert_eq!(next_line(&mut input).await, Ok("Hello, before!".to_owned()));
    assert_eq!(
        next_line(&mut input).await,
        Ok("after the renegotiation".to_owned())
    );
    let handshake_failure =
        net_tls::rustls::Error::AlertReceived(net_tls::rustls::AlertDescription::HandshakeFailure);
    assert_eq!(
        next_line(&mut input).await,
        Err(End::Failed(
            std::io::ErrorKind::InvalidData,
            Some(handshake_failure)
        ))
    );
    tls.close();
    assert_eq!(
        step_lines(&mut jvm, "renegotiate"),
        [
            "GOT before",
            "RENEGOTIATION-STARTED",
            "RENEGOTIATION-FAILED javax.net.ssl.SSLHandshakeException: received handshake \
             warning: no_renegotiation",
        ]
    );
    for step in &steps[7..9] {
        let (_, version) = protocol_of(step);
        let config = our_client_config(&pki, version, false, false);
        let mut tls = within(connect(&selector, "127.0.0.1", port, config))
            .await
            .unwrap();
        let mut input = tls.open_read_channel().unwrap();
        let mut output = tls.open_write_channel(true).unwrap();
        send(&mut output, "before\n").await;
        let answer = next_line(&mut input).await;
        assert_eq!(answer, Ok("Hello, before the close!".to_owned()), "{step}");
        assert_eq!(next_line(&mut input).await, Ok("END".to_owned()), "{step}");
        tls.close();
        assert_eq!(
            step_lines(&mut jvm, "close"),
            ["GOT before", "CLOSED"],
            "{step}"
        );
    }
    let no_protocol = net_tls::rustls::Error::AlertReceived(
        net_tls::rustls::AlertDescription::NoApplicationProtocol,
    );
    for step in &steps[9..] {
        let (_, version) = protocol_of(step);
        let config = pki
            .client_config()
            .server_name("localhost")
            .protocol_versions(&[version])
            .alpn_protocols(["h2"])
            .build()
            .unwrap();
        match within(connect(&selector, "127.0.0.1", port, config)).await {
            Err(net_tls::Error::Handshake(e)) => assert_eq!(e, no_protocol, "{step}"),
            other => panic!("{step}: {other:?}"),
        }
        let said = step_lines(&mut jvm, "refused");
        assert_eq!(said.len(), 1, "{step}: {said:?}");
        assert!(
            said[0].starts_with("FAILED javax.net.ssl.SSLHandshakeException"),
            "{step}: {said:?}"
        );
    }
    let exit = jvm.finish();
    assert!(exit.status.success(), "{exit:#?}");
}

/// KeyUpdates both ways across megabytes, JSSE the server: our client sends 4 MiB while it
/// reads JSSE's echo of them, JSSE updating its keys after every record once 4 KiB went
/// either way and asking ours to update; every byte comes back in order, and our
/// `close_notify`, sent once they all came back, gets JSSE's (a clean end). Then JSSE writes after our
/// half-close, and ends the session at its first key limit (JSSE's, see below): what it sent
/// arrives exactly, then a clean end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_updates_every_few_kib_across_megabytes_with_a_jsse_server() {
    let pki = Pki::generate();
    let files = pki.temp_files();
    let selector = SelectorManager::new();
    let flood = format!("flood/TLSv1.3/{BULK}");
    let steps = ["bulk/TLSv1.3", flood.as_str()];
    let Some((mut jvm, port)) = jsse_server(&files, &KEY_UPDATES_EVERY_4_KIB, &steps) else {
        return;
    };
    let config = our_client_config(&pki, TlsVersion::Tls13, false, false);
    let mut tls = within(connect(&selector, "127.0.0.1", port, config))
        .await
        .unwrap();
    let session = SessionView::of(&tls);
    let mut input = tls.open_read_channel().unwrap();
    let mut output = tls.open_write_channel(false).unwrap();
    // Our close_notify only once the whole echo came back: JSSE 17, once it has read it, fails
    // its next write at a key limit ("Socket has been closed or broken", seen 1 run in 7).
    let echoed = tokio::sync::Notify::new();
    let write = async {
        let mut sent = 0u64;
        while sent < BULK {
            let n = (BULK - sent).min(9_001);
            let chunk: Vec<u8> = (sent..sent + n).map(bulk_byte).collect();
            output.write_fully(&chunk).await.unwrap();
            sent += n;
        }
        output.flush().await.unwrap();
        echoed.notified().await;
        output.flush_and_close().await.unwrap();
    };
    let read = async {
        let mut buffer = vec![0u8; 13_000];
        let mut received = 0u64;
        loop {
            let n = input.read_available(&mut buffer).await.unwrap();
            if n == 0 {
                return received;
            }
            for (i, byte) in buffer[..n].iter().enumerate() {
                assert_eq!(
                    *byte,
                    bulk_byte(received + i as u64),
                    "byte {}",
                    received + i as u64
                );
            }
            received += n as u64;
            if received == BULK {
                echoed.notify_one();
            }
        }
    };
    let ((), received) = within(async { tokio::join!(write, read) }).await;
    assert_eq!(received, BULK);
    tls.close();
    assert_eq!(
        step_lines(&mut jvm, "bulk"),
        [
            java_session("TLSv1.3", &session, false, 0),
            format!("ECHOED {BULK}")
        ]
    );
    // Our half-close first, then JSSE writes 4 MiB. JSSE 17 cannot update its keys once it has
    // read our close_notify: at its first key limit it ends the session instead (its
    // KeyUpdate would start a "handshake", which it refuses on a closed input), with a
    // close_notify, and its write fails. That is JSSE's (its own comment allows key updates on
    // a write-only connection); ours is to deliver every byte JSSE sent, exactly, then report
    // the clean end its close_notify is.
    let config = our_client_config(&pki, TlsVersion::Tls13, false, false);
    let mut tls = within(connect(&selector, "127.0.0.1", port, config))
        .await
        .unwrap();
    let mut input = tls.open_read_channel().unwrap();
    let mut output = tls.open_write_channel(false).unwrap();
    output.flush_and_close().await.unwrap();
    let mut buffer = vec![0u8; 13_000];
    let mut received = 0u64;
    loop {
        let n = within(input.read_available(&mut buffer)).await.unwrap();
        if n == 0 {
            break;
        }
        for (i, byte) in buffer[..n].iter().enumerate() {
            let at = received + i as u64;
            assert_eq!(*byte, bulk_byte(at), "byte {at}");
        }
        received += n as u64;
    }
    assert!(received > 0 && received < BULK, "{received}");
    tls.close();
    let said = step_lines(&mut jvm, "flood");
    assert_eq!(said[0], "CLIENT-CLOSED -1");
    assert!(
        said[1].starts_with("FAILED java.net.SocketException"),
        "{said:?}"
    );
    let exit = jvm.finish();
    assert!(exit.status.success(), "{exit:#?}");
    let (sent, received) = key_updates(&exit.stderr);
    assert!(
        sent >= 100 && received >= 1,
        "JSSE's KeyUpdates: {sent} sent, {received} received"
    );
}

/// Our server half-closes first (`flush_and_close` after its first answer) and reads on: JSSE
/// reads the end of the stream. With TLS 1.3, JSSE can still write (a half-close): its late
/// line reaches our server, then its `close_notify`, a clean end. With TLS 1.2, JSSE answers
/// our `close_notify` with its own and closes its side too, so its late write fails in JSSE
/// ("Socket output is already shutdown") and our read ends cleanly, with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_server_half_closes_first_and_hears_a_jsse_client_out() {
    let pki = Pki::generate();
    let files = pki.temp_files();
    let selector = SelectorManager::new();
    let config = pki.server_config().build().unwrap();
    let mut server = TlsTestServer::start(&selector, config, |mut tls, reporter| async move {
        let mut input = tls.open_read_channel().unwrap();
        let mut output = tls.open_write_channel(true).unwrap();
        let first = next_line(&mut input).await;
        send(&mut output, "Hello, first!\n").await;
        output.flush_and_close().await.unwrap();
        let mut after = Vec::new();
        loop {
            let line = next_line(&mut input).await;
            let end = line.as_ref().map_or(true, |l| l == "END");
            after.push(line);
            if end {
                break;
            }
        }
        tls.close();
        reporter.report((first, after));
    })
    .await;
    let p = server.port();
    let steps = [format!("late/{p}/TLSv1.3"), format!("late/{p}/TLSv1.2")];
    let Some(mut jvm) = jsse_client(&files, &files.ca, &[], &steps) else {
        return;
    };
    for step in &steps {
        let said = step_lines(&mut jvm, "late");
        let (first, after) = server.next().await.expect("our server's handshake");
        assert_eq!(first, Ok("first".to_owned()), "{step}");
        let late = if step.contains("TLSv1.3") {
            assert_eq!(
                after,
                [Ok("late".to_owned()), Ok("END".to_owned())],
                "{step}"
            );
            "LATE-WRITTEN"
        } else {
            assert_eq!(after, [Ok("END".to_owned())], "{step}");
            "LATE-FAILED java.net.SocketException: Socket output is already shutdown"
        };
        assert_eq!(said, ["ANSWER Hello, first!", "READ null", late], "{step}");
    }
    let exit = jvm.finish();
    assert!(exit.status.success(), "{exit:#?}");
}

/// Our client resumes its sessions with a JSSE server (its stateless tickets, TLS 1.3 and
/// 1.2), using one `TlsConfig` for two connections: the resumed TLS 1.2 session makes no new
/// keys (our `key_exchange_group` is `None`), and JSSE's log says it took our TLS 1.3 PSK
/// (once: the second connection). Each session answers a line and ends cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_resumes_its_sessions_with_a_jsse_server() {
    let pki = Pki::generate();
    let files = pki.temp_files();
    let selector = SelectorManager::new();
    let steps = [
        "echo/TLSv1.3",
        "echo/TLSv1.3",
        "echo/TLSv1.2",
        "echo/TLSv1.2",
    ];
    let Some((mut jvm, port)) = jsse_server(&files, &["-Djavax.net.debug=ssl:handshake"], &steps)
    else {
        return;
    };
    for version in [TlsVersion::Tls13, TlsVersion::Tls12] {
        let config = our_client_config(&pki, version, false, false);
        for round in 0..2 {
            let mut tls = within(connect(&selector, "127.0.0.1", port, config.clone()))
                .await
                .unwrap();
            let resumed = tls.key_exchange_group().is_none();
            let expected = version == TlsVersion::Tls12 && round == 1;
            assert_eq!(resumed, expected, "{version:?} round {round}");
            let mut input = tls.open_read_channel().unwrap();
            let mut output = tls.open_write_channel(true).unwrap();
            send(&mut output, "one\n").await;
            assert_eq!(next_line(&mut input).await, Ok("Hello, one!".to_owned()));
            output.flush_and_close().await.unwrap();
            if version == TlsVersion::Tls13 {
                let bye = next_line(&mut input).await;
                assert_eq!(bye, Ok("Bye after your close_notify!".to_owned()));
            }
            assert_eq!(next_line(&mut input).await, Ok("END".to_owned()));
            tls.close();
            let said = step_lines(&mut jvm, "echo");
            assert_eq!(said[1], "CLIENT-CLOSED after 1 lines", "{version:?}");
        }
    }
    let exit = jvm.finish();
    assert!(exit.status.success(), "{exit:#?}");
    let psk = exit
        .stderr
        .iter()
        .filter(|l| l.contains("Using PSK to derive early secret"))
        .count();
    assert_eq!(
        psk, 1,
        "JSSE must accept our TLS 1.3 ticket on the second connection"
    );
}
