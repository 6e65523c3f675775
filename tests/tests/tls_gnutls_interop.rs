//! TLS against GnuTLS, a second TLS stack independent of rustls and of OpenSSL: our server
//! against `gnutls-cli`, our client against `gnutls-serv`.
//!
//! Each case checks what both ends report (version, cipher suite, ALPN, SNI, the client's
//! certificate), moves data both ways and checks how the session ended: GnuTLS's `close_notify`
//! (gnutls-cli sends it when its stdin ends, then keeps reading: a half-close) is a clean end
//! for our side, a killed gnutls-cli or gnutls-serv a truncation, and gnutls-cli answers our
//! own half-close by leaving without a `close_notify` (a truncation too). Beyond the handshake
//! matrix: client certificates required and optional, SNI certificate choice, session
//! resumption both ways, TLS 1.3 early data (which our server refuses and gnutls-cli does not
//! send again: nothing arrives twice or out of order), KeyUpdates both ways (`^rekey^`,
//! `^rekey1^`) across a few MiB, TLS 1.2 renegotiation, STARTTLS (`--starttls-proto=smtp`,
//! SIGALRM, and the `^starttls^` inline command, whose plain-text line our server refuses),
//! and what GnuTLS's ClientHello carries that rustls ignores (its extension order, a record
//! size limit, heartbeat, post-handshake authentication, certificate compression, an OCSP
//! status request).
//!
//! Needs `gnutls-cli` and `gnutls-serv` (Debian: `gnutls-bin`); without them every test prints
//! why and passes. Certificates come from the kit's [`Pki`], written to a temporary directory.
//! `gnutls-serv` cannot bind port 0 and print it, so it gets a [`free_port`]; it listens on
//! every address of that port (it has no option to bind one), and the tests connect to it over
//! loopback only.

use net_io::{ByteReadChannel, LineEnding};
use net_sockets::{SelectorManager, a_socket};
use net_tests::conversation::send;
use net_tests::harness::{Process, free_port, gnutls_present, path_arg};
use net_tests::pki::{CLIENT_NAME, Pki, PkiFiles};
use net_tests::tls::{SessionView, TlsTestServer, connect, is_truncated, rustls_error};
use net_tests::{TempDir, within};
use net_tls::{TlsConfig, TlsExt, TlsServerConfig, TlsSocket, TlsVersion};

/// The test PKI in memory and as files, with a second server leaf for [`OTHER_NAME`] (SNI).
struct Certs {
    pki: Pki,
    files: PkiFiles,
    other: net_tests::pki::Leaf,
}

/// The name of the second server certificate, chosen by SNI.
const OTHER_NAME: &str = "other.test";

fn certs() -> Certs {
    let pki = Pki::generate();
    let files = pki.temp_files();
    let other = pki.ca.server(&[OTHER_NAME]);
    Certs { pki, files, other }
}

/// A line of `len` printable, non-palindromic bytes, different for each `seed`.
fn text_line(seed: usize, len: usize) -> String {
    (0..len)
        .map(|i| char::from(b'a' + ((i * 7 + seed * 3) % 26) as u8))
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    Tls12,
    Tls13,
}

/// One cell of the handshake matrix.
#[derive(Clone, Copy, Debug)]
struct Case {
    version: Version,
    /// GnuTLS's name of the cipher, as in its priority strings and its `- Description:` line.
    cipher: &'static str,
    /// The suite as rustls's `Debug` prints it.
    iana: &'static str,
    mtls: bool,
    alpn: bool,
}

impl Case {
    fn ours(self) -> TlsVersion {
        match self.version {
            Version::Tls12 => TlsVersion::Tls12,
            Version::Tls13 => TlsVersion::Tls13,
        }
    }

    /// A GnuTLS priority string that allows only this version and cipher.
    fn priority(self) -> String {
        let version = match self.version {
            Version::Tls12 => "VERS-TLS1.2",
            Version::Tls13 => "VERS-TLS1.3",
        };
        format!("NORMAL:-VERS-ALL:+{version}:-CIPHER-ALL:+{}", self.cipher)
    }

    /// The start and the end of GnuTLS's `- Description:` line for such a session.
    fn description(self) -> (&'static str, String) {
        let start = match self.version {
            Version::Tls12 => "- Description: (TLS1.2-X.509)",
            Version::Tls13 => "- Description: (TLS1.3-X.509)",
        };
        (start, format!("-({})", self.cipher))
    }
}

fn matrix(version: Version) -> Vec<Case> {
    let suites: [(&str, &str); 3] = match version {
        Version::Tls13 => [
            ("AES-128-GCM", "TLS13_AES_128_GCM_SHA256"),
            ("AES-256-GCM", "TLS13_AES_256_GCM_SHA384"),
            ("CHACHA20-POLY1305", "TLS13_CHACHA20_POLY1305_SHA256"),
        ],
        Version::Tls12 => [
            ("AES-128-GCM", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
            ("AES-256-GCM", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
            (
                "CHACHA20-POLY1305",
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            ),
        ],
    };
    [(false, false), (false, true), (true, false), (true, true)]
        .into_iter()
        .enumerate()
        .map(|(i, (mtls, alpn))| Case {
            version,
            cipher: suites[i % 3].0,
            iana: suites[i % 3].1,
            mtls,
            alpn,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Our server against `gnutls-cli`.
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

/// What our server saw of one connection.
#[derive(Debug)]
struct ServerView {
    session: SessionView,
    received: Vec<String>,
    end: End,
}

/// Our server's answer to `line`: `Hello, <line>!`, or for `expand N` a line of `Hello, `, `N`
/// bytes and `!` (sent as one write, so in records as large as TLS allows).
fn answer(line: &str) -> String {
    match line
        .strip_prefix("expand ")
        .and_then(|n| n.parse::<usize>().ok())
    {
        Some(n) => format!("Hello, {}!", text_line(n, n)),
        None => format!("Hello, {line}!"),
    }
}

/// Reads lines until the end, answering each with [`answer`]; after the client's clean
/// end it still writes `Bye after your close_notify!` (the client only half-closed), then
/// closes.
async fn converse(mut tls: TlsSocket) -> ServerView {
    let session = SessionView::of(&tls);
    let mut input = tls.open_read_channel().unwrap();
    let mut output = tls.open_write_channel(true).unwrap();
    let mut received = Vec::new();
    let end = loop {
        match input.read_line(1 << 20, LineEnding::Default).await {
            Ok(Some(line)) => {
                let answer = format!("{}\n", answer(&line));
                received.push(line);
                if let Err(e) = output.write_string_utf8(&answer).await {
                    break End::Failed(e.kind(), rustls_error(&e).cloned());
                }
            }
            Ok(None) => {
                // The peer may have closed both ways (its tests say whether this arrived).
                let _ = output
                    .write_string_utf8("Bye after your close_notify!\n")
                    .await;
                break End::Clean;
            }
            Err(e) if is_truncated(&e) => break End::Truncated,
            Err(e) => break End::Failed(e.kind(), rustls_error(&e).cloned()),
        }
    };
    let _ = output.flush_and_close().await;
    tls.close();
    ServerView {
        session,
        received,
        end,
    }
}

async fn our_server(
    selector: &SelectorManager,
    config: TlsServerConfig,
) -> TlsTestServer<ServerView> {
    TlsTestServer::start(selector, config, |tls, reporter| async move {
        reporter.report(converse(tls).await);
    })
    .await
}

/// `gnutls-cli` options to connect to our server on `port` as `localhost` (over 127.0.0.1),
/// trusting the test CA, with informational messages on stdout.
fn cli_args(files: &PkiFiles, port: u16, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--x509cafile",
        path_arg(&files.ca),
        "--port",
        &port.to_string(),
        "127.0.0.1",
    ]
    .map(str::to_owned)
    .to_vec();
    if !extra.iter().any(|a| a.starts_with("--sni-hostname")) {
        args.extend(["--sni-hostname=localhost", "--verify-hostname=localhost"].map(str::to_owned));
    }
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    args
}

fn cli_cert_args(files: &PkiFiles) -> [String; 2] {
    [
        format!("--x509certfile={}", path_arg(&files.client_chain)),
        format!("--x509keyfile={}", path_arg(&files.client_key)),
    ]
}

fn our_server_config(pki: &Pki, case: Case) -> TlsServerConfig {
    let mut config = pki.server_config();
    if case.mtls {
        config = config
            .client_auth_required(pki.ca.pem().as_bytes())
            .unwrap();
    }
    if case.alpn {
        config = config.alpn_protocols(["http/1.1"]);
    }
    config.build().unwrap()
}

async fn gnutls_cli_against_our_server(certs: &Certs, case: Case) {
    let selector = SelectorManager::new();
    let mut server = our_server(&selector, our_server_config(&certs.pki, case)).await;
    let priority = format!("--priority={}", case.priority());
    let mut extra: Vec<String> = vec![priority];
    if case.mtls {
        extra.extend(cli_cert_args(&certs.files));
    }
    if case.alpn {
        // Our server's choice, not GnuTLS's first preference, must be reported.
        extra.extend(["--alpn=h2", "--alpn=http/1.1"].map(str::to_owned));
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut client = Process::start("gnutls-cli", cli_args(&certs.files, server.port(), &extra));
    let long = text_line(1, 20_000);
    client.send(&format!("Hello, rustls\n{long}\n"));

    // What gnutls-cli reports, in the order it prints it.
    let (start, end) = case.description();
    let description = client.stdout_line_where("description", |l| l.starts_with("- Description:"));
    assert!(
        description.starts_with(start) && description.ends_with(&end),
        "{case:?}: {description}"
    );
    let alpn = client.stdout_line_where("handshake end or ALPN", |l| {
        l.starts_with("- Application protocol:") || l == "- Handshake was completed"
    });
    if case.alpn {
        assert_eq!(alpn, "- Application protocol: http/1.1", "{case:?}");
    } else {
        assert_eq!(alpn, "- Handshake was completed", "{case:?}");
    }
    client.stdout_line_where("first answer", |l| l == "Hello, Hello, rustls!");
    let expected_long = format!("Hello, {long}!");
    client.stdout_line_where("long answer", |l| l == expected_long);

    // The end of stdin: gnutls-cli sends close_notify and reads on; our server writes once
    // more and closes, and gnutls-cli reports our close_notify.
    let exit = client.finish();
    assert!(exit.status.success(), "{case:?}: {exit:#?}");
    let bye = exit
        .stdout
        .iter()
        .position(|l| l == "Bye after your close_notify!");
    let closed = exit
        .stdout
        .iter()
        .position(|l| l == "- Peer has closed the GnuTLS connection");
    assert!(
        bye.is_some() && closed.is_some() && bye < closed,
        "{case:?}: {exit:#?}"
    );

    let view = server.next().await.expect("our server's handshake");
    let expected = SessionView {
        version: Some(case.ours()),
        suite: case.iana.to_owned(),
        alpn: case.alpn.then(|| b"http/1.1".to_vec()),
        server_name: Some("localhost".to_owned()),
        peer_certificates: 2 * usize::from(case.mtls),
    };
    assert_eq!(view.session, expected, "{case:?}");
    assert_eq!(view.received, ["Hello, rustls", long.as_str()], "{case:?}");
    assert_eq!(view.end, End::Clean, "{case:?}");
    println!("PASS gnutls-cli -> our server: {case:?}");
}

/// gnutls-cli against our server with TLS 1.3, each cipher in turn, with and without a
/// client certificate (required) and ALPN: both ends report the same session, a 20 000-byte
/// line (two records) crosses both ways, and gnutls-cli's close_notify is a clean end for us
/// after which our last line still reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnutls_cli_against_our_server_tls13() {
    if !gnutls_present() {
        return;
    }
    let certs = certs();
    for case in matrix(Version::Tls13) {
        gnutls_cli_against_our_server(&certs, case).await;
    }
}

/// As [`gnutls_cli_against_our_server_tls13`], with TLS 1.2 and its ECDHE-ECDSA suites.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnutls_cli_against_our_server_tls12() {
    if !gnutls_present() {
        return;
    }
    let certs = certs();
    for case in matrix(Version::Tls12) {
        gnutls_cli_against_our_server(&certs, case).await;
    }
}

/// Starts gnutls-cli against our server with `extra` options, sends `lines`, and returns it
/// once it printed the answer to the last one.
fn talking_cli(files: &PkiFiles, port: u16, extra: &[&str], lines: &[&str]) -> Process {
    let mut client = Process::start("gnutls-cli", cli_args(files, port, extra));
    for line in lines {
        client.send(&format!("{line}\n"));
    }
    if let Some(last) = lines.last() {
        let answer = answer(last);
        client.stdout_line_where("the last answer", |l| l == answer);
    }
    client
}

/// Our server with an optional client certificate: gnutls-cli with its certificate is seen
/// with it (leaf and CA), without one is accepted and seen with none; both sessions move
/// data and end cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnutls_cli_with_and_without_a_certificate_when_ours_is_optional() {
    if !gnutls_present() {
        return;
    }
    let certs = certs();
    let selector = SelectorManager::new();
    let config = certs
        .pki
        .server_config()
        .client_auth_optional(certs.pki.ca.pem().as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let mut server = our_server(&selector, config).await;
    for with_cert in [true, false] {
        let mut extra: Vec<String> = Vec::new();
        if with_cert {
            extra.extend(cli_cert_args(&certs.files));
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let mut client = talking_cli(&certs.files, server.port(), &extra, &["optional"]);
        assert!(client.finish().status.success());
        let view = server.next().await.expect("our server's handshake");
        assert_eq!(view.session.peer_certificates, 2 * usize::from(with_cert));
        assert_eq!(view.received, ["optional"]);
        assert_eq!(view.end, End::Clean);
    }
}

/// Our server requiring a client certificate refuses gnutls-cli without one, with TLS 1.2
/// and 1.3: our handshake fails with `NoCertificatesPresented`, and gnutls-cli gets no answer
/// and fails (with TLS 1.3 it learns of the refusal after its handshake, from our alert).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_server_refuses_gnutls_cli_without_a_certificate() {
    if !gnutls_present() {
        return;
    }
    let certs = certs();
    for version in [Version::Tls12, Version::Tls13] {
        let case = Case {
            mtls: true,
            ..matrix(version)[0]
        };
        let selector = SelectorManager::new();
        let mut server = our_server(&selector, our_server_config(&certs.pki, case)).await;
        let priority = format!("--priority={}", case.priority());
        let mut client = Process::start(
            "gnutls-cli",
            cli_args(&certs.files, server.port(), &[&priority]),
        );
        client.send("Hello\n");
        match server.next().await {
            Err(net_tls::Error::Handshake(net_tls::rustls::Error::NoCertificatesPresented)) => {}
            other => panic!("{case:?}: expected NoCertificatesPresented, got {other:?}"),
        }
        let exit = client.finish();
        assert!(!exit.status.success(), "{case:?}: {exit:#?}");
        assert!(
            !exit.stdout.iter().any(|l| l.starts_with("Hello, ")),
            "{case:?}: {exit:#?}"
        );
        let text = format!("{:?} {:?}", exit.stdout, exit.stderr);
        assert!(
            text.contains("Certificate is required"),
            "{case:?}: {exit:#?}"
        );
    }
}

/// SNI: our server presents the certificate registered for the name gnutls-cli asks for
/// (gnutls-cli verifies it for that name), reports that name, and presents its default
/// certificate to a gnutls-cli that sends no SNI (reported as no name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_server_picks_its_certificate_by_gnutls_clis_sni() {
    if !gnutls_present() {
        return;
    }
    let certs = certs();
    let selector = SelectorManager::new();
    let config = certs
        .other
        .sni_certificate(OTHER_NAME, certs.pki.server_config())
        .build()
        .unwrap();
    let mut server = our_server(&selector, config).await;
    let other_sni = format!("--sni-hostname={OTHER_NAME}");
    let other_verify = format!("--verify-hostname={OTHER_NAME}");
    let cases: [(&[&str], Option<&str>); 3] = [
        (&[&other_sni, &other_verify], Some(OTHER_NAME)),
        (
            &["--sni-hostname=localhost", "--verify-hostname=localhost"],
            Some("localhost"),
        ),
        // No SNI: the default certificate, verified here for 127.0.0.1.
        (
            &[
                "--sni-hostname=",
                "--disable-sni",
                "--verify-hostname=127.0.0.1",
            ],
            None,
        ),
    ];
    for (extra, name) in cases {
        let mut client = talking_cli(&certs.files, server.port(), extra, &["sni"]);
        let exit = client.finish();
        assert!(exit.status.success(), "{name:?}: {exit:#?}");
        let view = server.next().await.expect("our server's handshake");
        assert_eq!(view.session.server_name.as_deref(), name);
        assert_eq!(view.received, ["sni"]);
    }
    // The certificate for OTHER_NAME is not valid for localhost: gnutls-cli asking for
    // OTHER_NAME but checking localhost refuses it, so the name really chose the certificate.
    let mut client = Process::start(
        "gnutls-cli",
        cli_args(
            &certs.files,
            server.port(),
            &[&other_sni, "--verify-hostname=localhost"],
        ),
    );
    let exit = client.finish();
    assert!(!exit.status.success(), "{exit:#?}");
}

/// gnutls-cli killed in the middle of a session (no close_notify): our server's read reports
/// a truncation, not a clean end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gnutls_cli_is_a_truncation_for_our_server() {
    if !gnutls_present() {
        return;
    }
    let certs = certs();
    let selector = SelectorManager::new();
    let mut server = our_server(&selector, certs.pki.server_config().build().unwrap()).await;
    for version in [Version::Tls13, Version::Tls12] {
        let priority = format!("--priority={}", matrix(version)[0].priority());
        let mut client = talking_cli(&certs.files, server.port(), &[&priority], &["cut here"]);
        client.kill();
        let view = server.next().await.expect("our server's handshake");
        assert_eq!(view.received, ["cut here"], "{version:?}");
        assert_eq!(view.end, End::Truncated, "{version:?}");
    }
}

/// Session resumption: gnutls-cli `--resume` resumes its first session with our server
/// (a TLS 1.3 ticket, a TLS 1.2 session ID or ticket), and the resumed session carries data
/// both ways and ends cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnutls_cli_resumes_its_session_with_our_server() {
    if !gnutls_present() {
        return;
    }
    let certs = certs();
    let selector = SelectorManager::new();
    let mut server = our_server(&selector, certs.pki.server_config().build().unwrap()).await;
    for version in [Version::Tls13, Version::Tls12] {
        let priority = format!("--priority={}", matrix(version)[0].priority());
        let mut client = Process::start(
            "gnutls-cli",
            cli_args(
                &certs.files,
                server.port(),
                &[&priority, "--resume", "--waitresumption"],
            ),
        );
        let resumption = client.stdout_line_where("resumption", |l| {
            l.contains("This is a resumed session") || l.contains("was NOT resumed")
        });
        assert_eq!(resumption, "*** This is a resumed session", "{version:?}");
        client.send("resumed\n");
        client.stdout_line_where("answer", |l| l == "Hello, resumed!");
        let exit = client.finish();
        assert!(exit.status.success(), "{version:?}: {exit:#?}");
        let first = server.next().await.expect("the first handshake");
        assert!(first.received.is_empty(), "{version:?}: {first:?}");
        let second = server.next().await.expect("the resumed handshake");
        assert_eq!(second.received, ["resumed"], "{version:?}");
        assert_eq!(second.end, End::Clean, "{version:?}");
    }
}

/// Runs gnutls-cli `--resume --earlydata` (two lines in the file, one on stdin) against our
/// server with `config`; returns what gnutls-cli printed and what our server received in the
/// resumed session.
async fn early_data_session(certs: &Certs, config: TlsServerConfig) -> (Vec<String>, Vec<String>) {
    let dir = TempDir::new("net-tests-gnutls-early");
    let early = dir.write("early.txt", "early one\nearly two\n");
    let selector = SelectorManager::new();
    let mut server = our_server(&selector, config).await;
    let early_arg = format!("--earlydata={}", path_arg(&early));
    let priority = format!("--priority={}", matrix(Version::Tls13)[0].priority());
    let mut client = Process::start(
        "gnutls-cli",
        cli_args(
            &certs.files,
            server.port(),
            &[&priority, "--resume", "--waitresumption", &early_arg],
        ),
    );
    client.stdout_line_where("resumption", |l| l == "*** This is a resumed session");
    client.send("after\n");
    client.stdout_line_where("answer", |l| l == "Hello, after!");
    let exit = client.finish();
    assert!(exit.status.success(), "{exit:#?}");
    let first = server.next().await.expect("the first handshake");
    assert!(first.received.is_empty(), "{first:?}");
    let second = server.next().await.expect("the resumed handshake");
    assert_eq!(second.end, End::Clean);
    (exit.stdout, second.received)
}

/// TLS 1.3 early data with our server's defaults (tickets that allow no 0-RTT): gnutls-cli
/// offers early data all the same, our server takes none of it, and gnutls-cli does not send
/// the file's lines again after the handshake (it leaves that to its user): only the stdin
/// line arrives, once. Nothing arrives twice or out of order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnutls_cli_early_data_is_not_sent_to_our_server_by_default() {
    if !gnutls_present() {
        return;
    }
    let certs = certs();
    let config = certs.pki.server_config().build().unwrap();
    let (printed, received) = early_data_session(&certs, config).await;
    assert_eq!(received, ["after"], "{printed:#?}");
}

/// TLS 1.3 early data with a `from_rustls` configuration whose tickets allow 0-RTT
/// (`max_early_data_size`): our server refuses the early data all the same (as `from_rustls`
/// documents) and reads none of it; gnutls-cli does not send it again, and the session goes
/// on with the stdin line, received once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnutls_cli_early_data_refused_by_our_server_arrives_at_most_once() {
    if !gnutls_present() {
        return;
    }
    let certs = certs();
    let mut rustls_config = (*net_tests::tls::rustls_server(&certs.pki.server)).clone();
    rustls_config.max_early_data_size = 16_384;
    let config = TlsServerConfig::from_rustls(std::sync::Arc::new(rustls_config));
    let (printed, received) = early_data_session(&certs, config).await;
    assert_eq!(received, ["after"], "{printed:#?}");
}

/// KeyUpdates in the middle of a stream, both ways: gnutls-cli sends 2 MiB in lines of 1 KiB
/// with a KeyUpdate every 256 lines, alternately `^rekey^` (its own keys only) and `^rekey1^`
/// (asking our server to update its keys too), while our server answers every line. Every
/// line crosses both ways intact and in order, every rekey completes, and the session ends
/// cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_updates_both_ways_across_megabytes_with_gnutls_cli() {
    if !gnutls_present() {
        return;
    }
    const LINES: usize = 2048;
    const EVERY: usize = 256;
    let certs = certs();
    let selector = SelectorManager::new();
    let mut server = our_server(&selector, certs.pki.server_config().build().unwrap()).await;
    let priority = format!("--priority={}", matrix(Version::Tls13)[2].priority());
    let mut client = Process::start(
        "gnutls-cli",
        cli_args(
            &certs.files,
            server.port(),
            &[&priority, "--inline-commands"],
        ),
    );
    client.stdout_line_where("handshake", |l| l == "- Handshake was completed");
    let lines: Vec<String> = (0..LINES).map(|i| text_line(i, 1023)).collect();
    let mut rekeys = 0;
    for (i, line) in lines.iter().enumerate() {
        client.send(&format!("{line}\n"));
        if i % EVERY == EVERY / 2 {
            // A command is taken from stdin on a line of its own.
            let command = if rekeys % 2 == 0 {
                "^rekey^"
            } else {
                "^rekey1^"
            };
            client.send(&format!("{command}\n"));
            rekeys += 1;
        }
    }
    let mut answers = 0;
    let mut rekeyed = 0;
    while answers < LINES {
        let line = client.stdout_line_where("an answer or a rekey", |l| {
            l.starts_with("Hello, ") || l == "- Rekey was completed"
        });
        if line == "- Rekey was completed" {
            rekeyed += 1;
            continue;
        }
        let expected = format!("Hello, {}!", lines[answers]);
        assert!(line == expected, "answer {answers} differs");
        answers += 1;
    }
    let exit = client.finish();
    assert!(exit.status.success(), "{:?}", exit.stderr);
    rekeyed += exit
        .stdout
        .iter()
        .filter(|l| *l == "- Rekey was completed")
        .count();
    assert_eq!(rekeyed, rekeys);
    let view = server.next().await.expect("our server's handshake");
    assert_eq!(view.received.len(), LINES);
    assert!(view.received == lines, "what our server received differs");
    assert_eq!(view.end, End::Clean);
}

// ---------------------------------------------------------------------------------------------
// STARTTLS: an SMTP-like server on our STARTTLS API.
// ---------------------------------------------------------------------------------------------

/// What the SMTP-like server saw: the plain-text commands, then the TLS session.
#[derive(Debug)]
struct StarttlsView {
    plain: Vec<String>,
    /// The TLS session, or the upgrade's error.
    tls: Result<ServerView, net_tls::Error>,
}

/// Accepts one connection on 127.0.0.1 and speaks just enough SMTP for a STARTTLS client:
/// the `220` greeting, `EHLO`/`HELO` offering `STARTTLS`, `STARTTLS` (then the upgrade with
/// `tls_server` on the connection) and `502` for anything else; over TLS, [`converse`].
async fn smtp_like_server(
    selector: &SelectorManager,
    config: TlsServerConfig,
) -> (u16, tokio::task::JoinHandle<StarttlsView>) {
    let listener = a_socket(selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.port().unwrap();
    let serving = tokio::spawn(async move {
        let socket = listener.accept().await.unwrap();
        let mut plain = socket.connection().unwrap();
        let mut commands = Vec::new();
        send(&mut plain.output, "220 localhost ESMTP ready\r\n").await;
        loop {
            let command = plain
                .input
                .read_line(512, LineEnding::Default)
                .await
                .unwrap()
                .expect("STARTTLS before the end");
            commands.push(command.clone());
            let verb = command.split(' ').next().unwrap_or("").to_ascii_uppercase();
            match verb.as_str() {
                "EHLO" | "HELO" => {
                    send(&mut plain.output, "250-localhost\r\n250 STARTTLS\r\n").await;
                }
                "STARTTLS" => break,
                _ => send(&mut plain.output, "502 Command not implemented\r\n").await,
            }
        }
        // Not flushed here: the upgrade flushes it first.
        plain
            .output
            .write_string_utf8("220 Ready to start TLS\r\n")
            .await
            .unwrap();
        let tls = match plain.tls_server(&config).await {
            Ok(tls) => Ok(converse(tls).await),
            Err(e) => Err(e),
        };
        StarttlsView {
            plain: commands,
            tls,
        }
    });
    (port, serving)
}

/// `gnutls-cli --starttls-proto=smtp` against the SMTP-like server on our STARTTLS API: it
/// reads the greeting, sends `EHLO` and `STARTTLS`, upgrades, verifies our certificate, and
/// the lines it sends over TLS get their answers; its close_notify is a clean end for us.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnutls_cli_starttls_smtp_against_our_starttls_server() {
    if !gnutls_present() {
        return;
    }
    let certs = certs();
    let selector = SelectorManager::new();
    let (port, serving) =
        smtp_like_server(&selector, certs.pki.server_config().build().unwrap()).await;
    let mut client = talking_cli(
        &certs.files,
        port,
        &["--starttls-proto=smtp"],
        &["over TLS"],
    );
    let exit = client.finish();
    assert!(exit.status.success(), "{exit:#?}");
    let view = within(serving).await.unwrap();
    assert_eq!(view.plain.len(), 2, "{view:?}");
    assert!(view.plain[0].starts_with("EHLO "), "{view:?}");
    assert_eq!(view.plain[1], "STARTTLS");
    let tls = view.tls.expect("the STARTTLS handshake");
    assert_eq!(tls.received, ["over TLS"]);
    assert_eq!(tls.session.version, Some(TlsVersion::Tls13));
    assert_eq!(tls.end, End::Clean);
}

/// `gnutls-cli --starttls` driven by hand: plain-text commands typed on its stdin get plain
/// answers (`502`, then `220` to `STARTTLS`), SIGALRM starts TLS on the same connection (as
/// gnutls-cli documents), and then lines go over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnutls_cli_starttls_by_hand_against_our_starttls_server() {
    if !gnutls_present() {
        return;
    }
    let certs = certs();
    let selector = SelectorManager::new();
    let (port, serving) =
        smtp_like_server(&selector, certs.pki.server_config().build().unwrap()).await;
    let mut client = Process::start("gnutls-cli", cli_args(&certs.files, port, &["--starttls"]));
    client.stdout_line_where("greeting", |l| l.starts_with("220 localhost"));
    client.send("NOOP\n");
    client.stdout_line_where("refusal", |l| l.starts_with("502 "));
    client.send("STARTTLS\n");
    client.stdout_line_where("go-ahead", |l| l.starts_with("220 Ready"));
    client.signal("ALRM");
    client.stdout_line_where("handshake", |l| l.starts_with("- Description: (TLS1.3"));
    client.send("secure now\n");
    client.stdout_line_where("answer", |l| l == "Hello, secure now!");
    let exit = client.finish();
    assert!(exit.status.success(), "{exit:#?}");
    let view = within(serving).await.unwrap();
    assert_eq!(view.plain, ["NOOP", "STARTTLS"]);
    let tls = view.tls.expect("the STARTTLS handshake");
    assert_eq!(tls.received, ["secure now"]);
    assert_eq!(tls.end, End::Clean);
}

/// gnutls-cli 3.7's `^starttls^` inline command sends its own line (`^starttls^` and LF) in
/// plain text before its ClientHello. Our STARTTLS server takes no plain text after
/// `STARTTLS` as part of TLS: the upgrade fails with a handshake error (and our alert ends
/// gnutls-cli's handshake) instead of skipping or running those bytes. (A gnutls-cli that
/// does not send the line gets an ordinary session.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnutls_clis_starttls_inline_command_leaks_plain_text_and_our_server_refuses_it() {
    if !gnutls_present() {
        return;
    }
    let certs = certs();
    let selector = SelectorManager::new();
    let (port, serving) =
        smtp_like_server(&selector, certs.pki.server_config().build().unwrap()).await;
    let mut client = Process::start(
        "gnutls-cli",
        cli_args(&certs.files, port, &["--starttls", "--inline-commands"]),
    );
    client.stdout_line_where("greeting", |l| l.starts_with("220 localhost"));
    client.send("STARTTLS\n");
    client.stdout_line_where("go-ahead", |l| l.starts_with("220 Ready"));
    client.send("^starttls^\n");
    let exit = client.finish();
    let view = within(serving).await.unwrap();
    assert_eq!(view.plain, ["STARTTLS"]);
    match view.tls {
        Err(net_tls::Error::Handshake(net_tls::rustls::Error::InvalidMessage(_))) => {
            // Its exit status depends on whether the end of its stdin came first.
            assert!(
                !exit.stdout.iter().any(|l| l.starts_with("- Description:")),
                "{exit:#?}"
            );
        }
        // A gnutls-cli that does not send the command's line: a session with no data.
        Ok(tls) => assert!(tls.received.is_empty() && tls.end == End::Clean, "{tls:?}"),
        Err(e) => panic!("expected a refused handshake, got {e:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Our client against `gnutls-serv`.
// ---------------------------------------------------------------------------------------------

/// Starts `gnutls-serv --echo` on a free port with the server chain and `extra` options, and
/// returns it with its port once it listens.
fn gnutls_serv(files: &PkiFiles, extra: &[&str]) -> (Process, u16) {
    let port = free_port();
    let mut args: Vec<String> = [
        "--echo",
        "--port",
        &port.to_string(),
        "--x509certfile",
        path_arg(&files.server_chain),
        "--x509keyfile",
        path_arg(&files.server_key),
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let mut server = Process::start("gnutls-serv", &args);
    // It says so on stderr, once per address family.
    loop {
        let line = server.stderr_line();
        if line.starts_with("Echo Server listening on IPv4") {
            assert!(line.ends_with("...done"), "{line}");
            break;
        }
    }
    (server, port)
}

fn our_client_config(pki: &Pki, case: Case) -> TlsConfig {
    let mut config = pki.client_config();
    if case.mtls {
        config = pki.client.client_certificate(config);
    }
    if case.alpn {
        config = config.alpn_protocols(["h2", "http/1.1"]);
    }
    config.build().unwrap()
}

/// Reads one line of at most 1 MiB.
async fn line(input: &mut ByteReadChannel) -> Option<String> {
    within(input.read_line(1 << 20, LineEnding::Default))
        .await
        .unwrap()
}

async fn our_client_against_gnutls_serv(certs: &Certs, case: Case) {
    let priority = format!("--priority={}", case.priority());
    let ca = format!("--x509cafile={}", path_arg(&certs.files.ca));
    let mut extra = vec![priority.as_str()];
    if case.mtls {
        extra.extend(["--require-client-cert", "--verify-client-cert", &ca]);
    }
    if case.alpn {
        extra.push("--alpn=http/1.1");
    }
    let (mut server, port) = gnutls_serv(&certs.files, &extra);
    let selector = SelectorManager::new();
    let mut tls = within(connect(
        &selector,
        "127.0.0.1",
        port,
        our_client_config(&certs.pki, case),
    ))
    .await
    .unwrap_or_else(|e| panic!("{case:?}: {e}"));
    let view = SessionView::of(&tls);
    assert_eq!(view.version, Some(case.ours()), "{case:?}");
    assert_eq!(view.suite, case.iana, "{case:?}");
    assert_eq!(
        view.alpn.as_deref(),
        case.alpn.then_some(&b"http/1.1"[..]),
        "{case:?}"
    );
    // gnutls-serv sends the server leaf and the CA.
    assert_eq!(view.peer_certificates, 2, "{case:?}");

    // Data both ways: gnutls-serv echoes.
    let mut input = tls.open_read_channel().unwrap();
    let mut output = tls.open_write_channel(true).unwrap();
    let long = text_line(2, 40_000);
    for sent in ["Hello, GnuTLS", long.as_str()] {
        output
            .write_string_utf8(&format!("{sent}\n"))
            .await
            .unwrap();
        assert_eq!(line(&mut input).await.as_deref(), Some(sent), "{case:?}");
    }

    // What gnutls-serv reports about the same session.
    let version = match case.version {
        Version::Tls12 => "- Version: TLS1.2",
        Version::Tls13 => "- Version: TLS1.3",
    };
    server.stdout_line_where("version", |l| l == version);
    let cipher = format!("- Cipher: {}", case.cipher);
    server.stdout_line_where("cipher", |l| l == cipher);
    if case.alpn {
        server.stdout_line_where("ALPN", |l| l == "- Application protocol: http/1.1");
    }
    let printed = server.printed_so_far();
    if case.mtls {
        assert!(
            printed.contains("- Got a certificate list of 2 certificates."),
            "{case:?}: {printed}"
        );
        assert!(printed.contains(CLIENT_NAME), "{case:?}: {printed}");
    }

    // Our half-close (close_notify and FIN): gnutls-serv answers with its own close_notify,
    // a clean end for our read.
    output.flush_and_close().await.unwrap();
    let end = within(input.read_line(1024, LineEnding::Default)).await;
    assert!(matches!(end, Ok(None)), "{case:?}: {end:?}");
    tls.close();
    assert!(server.is_running(), "{case:?}");
    println!("PASS our client -> gnutls-serv: {case:?}");
}

/// Our client against gnutls-serv with TLS 1.3, each cipher in turn, with and without a
/// client certificate (required and verified by gnutls-serv) and ALPN: both ends report the
/// same session, a 40 000-byte line is echoed, and our close_notify gets gnutls-serv's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_against_gnutls_serv_tls13() {
    if !gnutls_present() {
        return;
    }
    let certs = certs();
    for case in matrix(Version::Tls13) {
        our_client_against_gnutls_serv(&certs, case).await;
    }
}

/// As [`our_client_against_gnutls_serv_tls13`], with TLS 1.2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_against_gnutls_serv_tls12() {
    if !gnutls_present() {
        return;
    }
    let certs = certs();
    for case in matrix(Version::Tls12) {
        our_client_against_gnutls_serv(&certs, case).await;
    }
}

/// What GnuTLS offers that rustls ignores or does not have does not disturb our server:
/// a record size limit of 512 bytes (RFC 8449: rustls does not answer it, so no limit holds
/// and our 40 000-byte answer comes in full-size records), heartbeat, post-handshake
/// authentication, certificate compression, a single key share, no tickets, an OCSP status
/// request (made by default). Each session moves data both ways and ends cleanly.
///
/// With `--recordsize`, gnutls-cli 3.7 sends only the first 512 bytes of each read from its
/// stdin (of any server: the rest of a 40 000-byte line is lost), so those sessions send short
/// lines only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnutls_cli_extensions_rustls_ignores_do_not_disturb_our_server() {
    if !gnutls_present() {
        return;
    }
    let certs = certs();
    let selector = SelectorManager::new();
    let config = certs
        .pki
        .server_config()
        .client_auth_optional(certs.pki.ca.pem().as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let mut server = our_server(&selector, config).await;
    let long = text_line(3, 40_000);
    let tls12 = format!("--priority={}", matrix(Version::Tls12)[0].priority());
    let variants: [&[&str]; 9] = [
        &["--recordsize=512"],
        &["--recordsize=512", &tls12],
        &["--heartbeat"],
        &["--heartbeat", &tls12],
        &["--post-handshake-auth"],
        &["--compress-cert=zlib"],
        &["--single-key-share"],
        &["--noticket"],
        &["--priority=NORMAL:%NO_TICKETS:-VERS-TLS1.3"],
    ];
    for extra in variants {
        let mut lines = vec!["first", "expand 40000"];
        if !extra[0].starts_with("--recordsize") {
            lines.push(&long);
        }
        let mut client = talking_cli(&certs.files, server.port(), extra, &lines);
        let exit = client.finish();
        assert!(exit.status.success(), "{extra:?}: {exit:#?}");
        let printed = client.printed_so_far();
        let expanded = answer("expand 40000");
        assert!(printed.contains(&expanded), "{extra:?}");
        let view = server.next().await.expect("our server's handshake");
        assert_eq!(view.received, lines, "{extra:?}");
        assert_eq!(view.end, End::Clean, "{extra:?}");
    }
}

/// TLS 1.2 renegotiation asked by gnutls-cli (`--rehandshake`): our server (rustls) refuses
/// it with a `no_renegotiation` warning; gnutls-cli asks again at once, and rustls ends the
/// session on that second request: our read fails with kind `InvalidData` and
/// `PeerMisbehaved::TooManyRenegotiationRequests` inside, and gnutls-cli reports the
/// rehandshake failed on an unclean end. (OpenSSL's clients end the session themselves
/// after the warning: see `tls_sessions_edges`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnutls_cli_renegotiation_twice_ends_the_session_with_our_server() {
    if !gnutls_present() {
        return;
    }
    let certs = certs();
    let selector = SelectorManager::new();
    let mut server = our_server(&selector, certs.pki.server_config().build().unwrap()).await;
    let tls12 = format!("--priority={}", matrix(Version::Tls12)[0].priority());
    let mut client = Process::start(
        "gnutls-cli",
        cli_args(&certs.files, server.port(), &[&tls12, "--rehandshake"]),
    );
    let view = server.next().await.expect("our server's handshake");
    assert_eq!(view.session.version, Some(TlsVersion::Tls12));
    assert!(view.received.is_empty(), "{view:?}");
    let misbehaved = net_tls::rustls::Error::PeerMisbehaved(
        net_tls::rustls::PeerMisbehaved::TooManyRenegotiationRequests,
    );
    assert_eq!(
        view.end,
        End::Failed(std::io::ErrorKind::InvalidData, Some(misbehaved))
    );
    let exit = client.finish();
    assert!(!exit.status.success(), "{exit:#?}");
    let text = format!("{exit:?}");
    assert!(
        text.contains("Received alert [100]: No renegotiation is allowed")
            && text.contains("ReHandshake has failed"),
        "{exit:#?}"
    );
}

/// gnutls-serv requiring a client certificate refuses our client without one: with TLS 1.2
/// our handshake fails on gnutls-serv's fatal alert (GnuTLS 3.7 sends `decode_error`), with
/// TLS 1.3 our handshake completes and the first read fails with its `certificate_required`
/// alert (kind `InvalidData`); gnutls-serv says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnutls_serv_refuses_our_client_without_a_certificate() {
    if !gnutls_present() {
        return;
    }
    let certs = certs();
    for version in [Version::Tls12, Version::Tls13] {
        let case = Case {
            mtls: false,
            alpn: false,
            ..matrix(version)[0]
        };
        let priority = format!("--priority={}", case.priority());
        let ca = format!("--x509cafile={}", path_arg(&certs.files.ca));
        let (mut server, port) = gnutls_serv(
            &certs.files,
            &[
                &priority,
                "--require-client-cert",
                "--verify-client-cert",
                &ca,
            ],
        );
        let selector = SelectorManager::new();
        let config = our_client_config(&certs.pki, case);
        let outcome = within(connect(&selector, "127.0.0.1", port, config)).await;
        match (version, outcome) {
            (
                Version::Tls12,
                Err(net_tls::Error::Handshake(net_tls::rustls::Error::AlertReceived(_))),
            ) => {}
            (Version::Tls13, Ok(mut tls)) => {
                let mut input = tls.open_read_channel().unwrap();
                let e = within(input.read_line(1024, LineEnding::Default))
                    .await
                    .expect_err("a read without a certificate must fail");
                assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e:?}");
                assert_eq!(
                    rustls_error(&e),
                    Some(&net_tls::rustls::Error::AlertReceived(
                        net_tls::rustls::AlertDescription::CertificateRequired
                    )),
                    "{e:?}"
                );
            }
            (version, outcome) => panic!("{version:?}: {outcome:?}"),
        }
        let why = server.stderr_line();
        let why = if why.starts_with("Echo Server listening") {
            server.stderr_line()
        } else {
            why
        };
        assert!(
            why.starts_with("Error in handshake: "),
            "{version:?}: {why}"
        );
    }
}

/// gnutls-serv killed while our client reads (after a session that sent SNI, which
/// gnutls-serv reports): a truncation, not a clean end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gnutls_serv_is_a_truncation_for_our_client() {
    if !gnutls_present() {
        return;
    }
    let certs = certs();
    for version in [Version::Tls13, Version::Tls12] {
        let case = Case {
            mtls: false,
            alpn: false,
            ..matrix(version)[0]
        };
        let priority = format!("--priority={}", case.priority());
        let (mut server, port) = gnutls_serv(&certs.files, &[&priority]);
        let selector = SelectorManager::new();
        let config = our_client_config(&certs.pki, case);
        let mut tls = within(connect(&selector, "localhost", port, config))
            .await
            .unwrap();
        assert_eq!(tls.server_name(), Some("localhost"));
        let mut input = tls.open_read_channel().unwrap();
        let mut output = tls.open_write_channel(true).unwrap();
        output.write_string_utf8("before the cut\n").await.unwrap();
        assert_eq!(line(&mut input).await.as_deref(), Some("before the cut"));
        server.stdout_line_where("SNI", |l| l == "- Given server name[1]: localhost");
        server.kill();
        let end = within(input.read_line(1024, LineEnding::Default)).await;
        match end {
            Err(e) => assert!(is_truncated(&e), "{version:?}: {e:?}"),
            Ok(read) => panic!("{version:?}: {read:?}"),
        }
    }
}

/// Our client resumes its session with gnutls-serv on its second connection (a TLS 1.3
/// ticket, a TLS 1.2 session), as gnutls-serv reports; each session echoes a line, and our
/// half-close gets gnutls-serv's close_notify (a clean end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_resumes_with_gnutls_serv() {
    if !gnutls_present() {
        return;
    }
    let certs = certs();
    for version in [Version::Tls13, Version::Tls12] {
        let case = Case {
            mtls: false,
            alpn: false,
            ..matrix(version)[0]
        };
        let priority = format!("--priority={}", case.priority());
        let (mut server, port) = gnutls_serv(&certs.files, &[&priority]);
        let selector = SelectorManager::new();
        let config = our_client_config(&certs.pki, case);
        for round in 0..2 {
            let mut tls = within(connect(&selector, "localhost", port, config.clone()))
                .await
                .unwrap();
            let mut input = tls.open_read_channel().unwrap();
            let mut output = tls.open_write_channel(true).unwrap();
            let sent = format!("round {round}");
            output
                .write_string_utf8(&format!("{sent}\n"))
                .await
                .unwrap();
            assert_eq!(line(&mut input).await, Some(sent), "{version:?}");
            output.flush_and_close().await.unwrap();
            let end = within(input.read_line(1024, LineEnding::Default)).await;
            assert!(matches!(end, Ok(None)), "{version:?}: {end:?}");
            tls.close();
            let accepted = server.stdout_line_where("accepted", |l| {
                l.starts_with("* Accepted connection") || l == "*** This is a resumed session"
            });
            assert!(
                accepted.starts_with("* Accepted"),
                "{version:?}: {accepted}"
            );
        }
        // The second connection's report says it resumed (the first's does not).
        server.stdout_line_where("resumed", |l| l == "*** This is a resumed session");
        let printed = server.printed_so_far();
        assert_eq!(
            printed.matches("This is a resumed session").count(),
            1,
            "{printed}"
        );
    }
}

/// Our server half-closes first (`flush_and_close` after its answer) and reads on: gnutls-cli
/// takes our close_notify for the end of the session and exits without a close_notify of its
/// own (TLS 1.2 and 1.3 alike), so the read our server left open reports a truncation, as
/// `TlsSocket`'s documentation says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_half_close_ends_gnutls_cli_which_sends_no_close_notify_back() {
    if !gnutls_present() {
        return;
    }
    let certs = certs();
    let selector = SelectorManager::new();
    let config = certs.pki.server_config().build().unwrap();
    let mut server = TlsTestServer::start(&selector, config, |mut tls, reporter| async move {
        let mut input = tls.open_read_channel().unwrap();
        let mut output = tls.open_write_channel(true).unwrap();
        let first = input.read_line(1024, LineEnding::Default).await;
        output
            .write_string_utf8("Hello, and goodbye\n")
            .await
            .unwrap();
        output.flush_and_close().await.unwrap();
        let after = input.read_line(1024, LineEnding::Default).await;
        let after = match after {
            Ok(line) => format!("Ok({line:?})"),
            Err(e) if is_truncated(&e) => "Truncated".to_owned(),
            Err(e) => format!("Err({e})"),
        };
        tls.close();
        reporter.report((first.unwrap(), after));
    })
    .await;
    for version in [Version::Tls13, Version::Tls12] {
        let priority = format!("--priority={}", matrix(version)[0].priority());
        let mut client = Process::start(
            "gnutls-cli",
            cli_args(&certs.files, server.port(), &[&priority]),
        );
        client.send("one\n");
        client.stdout_line_where("answer", |l| l == "Hello, and goodbye");
        client.stdout_line_where("end", |l| l == "- Peer has closed the GnuTLS connection");
        let report = server.next().await.unwrap();
        assert_eq!(
            report,
            (Some("one".to_owned()), "Truncated".to_owned()),
            "{version:?}"
        );
        let exit = client.finish();
        assert!(exit.status.success(), "{version:?}: {exit:?}");
    }
}
