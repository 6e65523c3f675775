//! TLS against real peers: our client against `openssl s_server`, our server against
//! `openssl s_client` and `curl`; TLS 1.2 and 1.3, with and without client certificates, with
//! and without ALPN. Each case forces one cipher suite on the openssl/curl side and checks that
//! both ends report the same version, suite and ALPN protocol, then moves data both ways.
//!
//! Needs `openssl` and `curl` on `PATH` (`.ci/run` installs them; `cargo xtask interop` runs
//! this file). Certificates are made at test time by the kit's [`Pki`] and written to a fresh
//! directory under the system's temporary directory, removed when the test ends. Every child
//! process is killed when its guard is dropped, on every path.

use std::process::{Command, Stdio};

use net_io::LineEnding;
use net_sockets::SelectorManager;
use net_tests::harness::{Process, path_arg, port_at_end};
use net_tests::loopback::connect;
use net_tests::pki::{CLIENT_NAME, Pki, PkiFiles};
use net_tests::tls::{SessionView, TlsTestServer};
use net_tests::within;
use net_tls::{Error, TlsConfig, TlsExt, TlsServerConfig, TlsSocket, TlsVersion};

/// A cipher suite by its OpenSSL name and by the name rustls's `Debug` prints (the IANA name,
/// with `TLS13_` for its `TLS_` in TLS 1.3).
#[derive(Clone, Copy, Debug)]
struct Suite {
    openssl: &'static str,
    iana: &'static str,
}

const TLS13_SUITES: [Suite; 3] = [
    Suite {
        openssl: "TLS_AES_128_GCM_SHA256",
        iana: "TLS13_AES_128_GCM_SHA256",
    },
    Suite {
        openssl: "TLS_AES_256_GCM_SHA384",
        iana: "TLS13_AES_256_GCM_SHA384",
    },
    Suite {
        openssl: "TLS_CHACHA20_POLY1305_SHA256",
        iana: "TLS13_CHACHA20_POLY1305_SHA256",
    },
];

/// TLS 1.2 suites for the ECDSA keys [`Pki`] makes.
const TLS12_SUITES: [Suite; 3] = [
    Suite {
        openssl: "ECDHE-ECDSA-AES128-GCM-SHA256",
        iana: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    },
    Suite {
        openssl: "ECDHE-ECDSA-AES256-GCM-SHA384",
        iana: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    },
    Suite {
        openssl: "ECDHE-ECDSA-CHACHA20-POLY1305",
        iana: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    },
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    Tls12,
    Tls13,
}

impl Version {
    /// The name openssl and curl print.
    fn name(self) -> &'static str {
        match self {
            Version::Tls12 => "TLSv1.2",
            Version::Tls13 => "TLSv1.3",
        }
    }

    fn ours(self) -> TlsVersion {
        match self {
            Version::Tls12 => TlsVersion::Tls12,
            Version::Tls13 => TlsVersion::Tls13,
        }
    }

    /// `openssl s_server` / `s_client` options that allow only this version and `suite`.
    fn openssl_args(self, suite: Suite) -> Vec<String> {
        let (version, cipher) = match self {
            Version::Tls12 => ("-tls1_2", "-cipher"),
            Version::Tls13 => ("-tls1_3", "-ciphersuites"),
        };
        [version, cipher, suite.openssl].map(str::to_owned).to_vec()
    }

    /// `curl` options that allow only this version and `suite`.
    fn curl_args(self, suite: Suite) -> Vec<String> {
        let list = match self {
            Version::Tls12 => ["--tlsv1.2", "--tls-max", "1.2", "--ciphers", suite.openssl],
            Version::Tls13 => [
                "--tlsv1.3",
                "--tls-max",
                "1.3",
                "--tls13-ciphers",
                suite.openssl,
            ],
        };
        list.map(str::to_owned).to_vec()
    }
}

/// One cell of the interop matrix.
#[derive(Clone, Copy, Debug)]
struct Case {
    version: Version,
    suite: Suite,
    mtls: bool,
    alpn: bool,
}

impl std::fmt::Display for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}, {}, {}",
            self.version.name(),
            self.suite.openssl,
            if self.mtls {
                "client certificate"
            } else {
                "no client certificate"
            },
            if self.alpn { "ALPN" } else { "no ALPN" }
        )
    }
}

/// Every combination of client certificate and ALPN for `version`, the suites taken in turn.
fn matrix(version: Version) -> Vec<Case> {
    let suites = match version {
        Version::Tls12 => TLS12_SUITES,
        Version::Tls13 => TLS13_SUITES,
    };
    [(false, false), (false, true), (true, false), (true, true)]
        .into_iter()
        .enumerate()
        .map(|(i, (mtls, alpn))| Case {
            version,
            suite: suites[i % suites.len()],
            mtls,
            alpn,
        })
        .collect()
}

/// Panics with a clear message when `tool` cannot be run.
fn require(tool: &str, version_arg: &str) {
    let found = Command::new(tool)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{tool}` is needed by the TLS interop tests and could not be run: install it \
         (Debian: apt-get install {tool}); `.ci/run` does this on CI"
    );
}

/// The test PKI, in memory (for our side) and as PEM files (for openssl and curl).
struct Certs {
    pki: Pki,
    files: PkiFiles,
}

fn certs() -> Certs {
    let pki = Pki::generate();
    let files = pki.temp_files();
    Certs { pki, files }
}

/// A line of `len` printable, non-palindromic bytes.
fn text_line(len: usize) -> String {
    (0..len)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Our client against `openssl s_server`.
// ---------------------------------------------------------------------------------------------

/// Starts `openssl s_server -rev` (answers each line reversed) for one connection and returns
/// it with its port, read from its `ACCEPT` line.
fn s_server(files: &PkiFiles, case: Case, require_client_cert: bool) -> (Process, u16) {
    let mut args: Vec<String> = [
        "s_server",
        "-accept",
        "127.0.0.1:0",
        "-naccept",
        "1",
        "-rev",
        "-cert",
        path_arg(&files.server_chain),
        "-key",
        path_arg(&files.server_key),
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(case.version.openssl_args(case.suite));
    if require_client_cert {
        args.extend(
            [
                "-Verify",
                "1",
                "-verify_return_error",
                "-CAfile",
                path_arg(&files.ca),
            ]
            .map(str::to_owned),
        );
    }
    if case.alpn {
        args.extend(["-alpn", "http/1.1"].map(str::to_owned));
    }
    let mut server = Process::start("openssl", &args);
    let accept = server.stdout_line_where("ACCEPT line", |l| l.starts_with("ACCEPT "));
    (server, port_at_end(&accept))
}

fn our_client_config(pki: &Pki, case: Case) -> TlsConfig {
    let mut config = pki.client_config();
    if case.mtls {
        config = pki.client.client_certificate(config);
    }
    if case.alpn {
        // The server's choice, not our first preference, must be reported.
        config = config.alpn_protocols(["h2", "http/1.1"]);
    }
    config.build().unwrap()
}

async fn our_client_against_s_server(certs: &Certs, case: Case) {
    let (mut server, port) = s_server(&certs.files, case, case.mtls);
    let selector = SelectorManager::new();
    let socket = connect(&selector, ("127.0.0.1", port)).await;
    let mut tls = within(socket.tls(our_client_config(&certs.pki, case)))
        .await
        .unwrap_or_else(|e| panic!("{case}: handshake failed: {e}"));

    // What our client reports.
    assert_eq!(tls.protocol_version(), Some(case.version.ours()), "{case}");
    assert_eq!(SessionView::of(&tls).suite, case.suite.iana, "{case}");
    let expected_alpn = case.alpn.then_some(&b"http/1.1"[..]);
    assert_eq!(tls.alpn_protocol(), expected_alpn, "{case}");
    assert_eq!(tls.server_name(), Some("127.0.0.1"), "{case}");

    // Data both ways: s_server -rev answers each line reversed.
    let mut input = tls.open_read_channel().unwrap();
    let mut output = tls.open_write_channel(true).unwrap();
    for line in ["Hello, openssl".to_owned(), text_line(3000)] {
        output
            .write_string_utf8(&format!("{line}\n"))
            .await
            .unwrap();
        let reversed: String = line.chars().rev().collect();
        let answer = within(input.read_line(8192, LineEnding::Default))
            .await
            .unwrap_or_else(|e| panic!("{case}: read failed: {e}"));
        assert_eq!(answer.as_deref(), Some(reversed.as_str()), "{case}");
    }

    // Our close_notify ends the session; s_server answers with its own and exits.
    output.flush_and_close().await.unwrap();
    let end = within(input.read_line(8192, LineEnding::Default)).await;
    assert!(matches!(end, Ok(None)), "{case}: {end:?}");
    tls.close();
    let exit = server.finish();
    let stderr = &exit.stderr;
    assert!(
        exit.status.success(),
        "{case}: s_server {}: {stderr:#?}",
        exit.status
    );

    // What openssl reports about the same session: ALPN on stdout (after the ACCEPT line read
    // above: it is printed once the handshake is done), the rest on stderr in -rev mode.
    let has = |line: &str| stderr.iter().any(|l| l == line);
    let version = format!("Protocol version: {}", case.version.name());
    assert!(has(&version), "{case}: {version:?} not in {stderr:#?}");
    let cipher = format!("Ciphersuite: {}", case.suite.openssl);
    assert!(has(&cipher), "{case}: {cipher:?} not in {stderr:#?}");
    let alpn = "ALPN protocols selected: http/1.1";
    let alpn_reported = exit.stdout.iter().any(|l| l == alpn);
    assert_eq!(alpn_reported, case.alpn, "{case}: {:#?}", exit.stdout);
    if case.mtls {
        assert!(
            has(&format!("Peer certificate: CN = {CLIENT_NAME}")),
            "{case}: {stderr:#?}"
        );
    } else {
        assert!(has("No peer certificate"), "{case}: {stderr:#?}");
    }
    println!("PASS our client -> openssl s_server: {case}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_against_openssl_s_server_tls13() {
    require("openssl", "version");
    let certs = certs();
    for case in matrix(Version::Tls13) {
        our_client_against_s_server(&certs, case).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_against_openssl_s_server_tls12() {
    require("openssl", "version");
    let certs = certs();
    for case in matrix(Version::Tls12) {
        our_client_against_s_server(&certs, case).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_server_refuses_our_client_without_a_certificate() {
    require("openssl", "version");
    let certs = certs();
    for version in [Version::Tls12, Version::Tls13] {
        let case = Case {
            version,
            mtls: false,
            alpn: false,
            ..matrix(version)[0]
        };
        let (mut server, port) = s_server(&certs.files, case, true);
        let selector = SelectorManager::new();
        let socket = connect(&selector, ("127.0.0.1", port)).await;
        let refusal = match within(socket.tls(our_client_config(&certs.pki, case))).await {
            // TLS 1.2: the server's alert ends the handshake.
            Err(Error::Handshake(e)) => e.to_string(),
            Err(e) => panic!("{case}: unexpected error {e}"),
            // TLS 1.3: the handshake completes on the client before the server has checked
            // the (missing) certificate; the alert arrives with the first read.
            Ok(mut tls) => {
                let mut input = tls.open_read_channel().unwrap();
                let read = within(input.read_line(1024, LineEnding::Default)).await;
                match read {
                    Err(e) => e.to_string(),
                    Ok(line) => panic!("{case}: read {line:?} without a certificate"),
                }
            }
        };
        let expected = match version {
            Version::Tls12 => "HandshakeFailure",
            Version::Tls13 => "CertificateRequired",
        };
        assert!(
            refusal.contains("received fatal alert") && refusal.contains(expected),
            "{case}: {refusal}"
        );
        // s_server says why, and (with -naccept 1) exits.
        let stderr = server.finish().stderr;
        assert!(
            stderr
                .iter()
                .any(|l| l.contains("peer did not return a certificate")),
            "{case}: {stderr:#?}"
        );
        println!(
            "PASS openssl s_server -Verify refuses our client without a certificate: {}",
            case.version.name()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Our server against `openssl s_client` and `curl`.
// ---------------------------------------------------------------------------------------------

/// What our server saw of one connection.
#[derive(Debug)]
struct ServerView {
    session: SessionView,
    /// The lines the client sent (an HTTP request's lines, or the lines of a conversation).
    received: Vec<String>,
}

/// How our server talks once the handshake is done.
#[derive(Clone, Copy, Debug)]
enum Talk {
    /// Answers each line with `Hello, <line>!` until `bye`, which gets `Bye!` and a close.
    Lines,
    /// Reads an HTTP/1.1 request and answers `hello over TLS`, then closes.
    Http,
}

/// Our server (the library, in this process) on 127.0.0.1:0. Each connection's outcome is
/// reported once the client is done.
async fn our_server(
    selector: &SelectorManager,
    config: TlsServerConfig,
    talk: Talk,
) -> TlsTestServer<ServerView> {
    TlsTestServer::start(selector, config, move |tls, reporter| async move {
        reporter.report(converse(tls, talk).await);
    })
    .await
}

async fn converse(mut tls: TlsSocket, talk: Talk) -> ServerView {
    let mut view = ServerView {
        session: SessionView::of(&tls),
        received: Vec::new(),
    };
    let mut input = tls.open_read_channel().unwrap();
    let mut output = tls.open_write_channel(true).unwrap();
    loop {
        let Ok(Some(line)) = input.read_line(8192, LineEnding::Default).await else {
            break;
        };
        view.received.push(line.clone());
        match talk {
            Talk::Lines if line == "bye" => {
                let _ = output.write_string_utf8("Bye!\n").await;
                break;
            }
            Talk::Lines => {
                if output
                    .write_string_utf8(&format!("Hello, {line}!\n"))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            Talk::Http if line.is_empty() => {
                let body = "hello over TLS\n";
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = output.write_string_utf8(&response).await;
                break;
            }
            Talk::Http => {}
        }
    }
    let _ = output.flush_and_close().await;
    tls.close();
    view
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

/// Checks what our server reports about a session with openssl or curl, which connect to
/// `localhost` and, with a client certificate, send the leaf and the CA (s_client finds the CA
/// in -CAfile; client.pem holds both for curl).
async fn assert_our_server_saw(server: &mut TlsTestServer<ServerView>, case: Case) -> ServerView {
    let view = server
        .next()
        .await
        .unwrap_or_else(|e| panic!("{case}: our server failed: {e}"));
    let expected = SessionView {
        version: Some(case.version.ours()),
        suite: case.suite.iana.to_owned(),
        alpn: case.alpn.then(|| b"http/1.1".to_vec()),
        server_name: Some("localhost".to_owned()),
        peer_certificates: 2 * usize::from(case.mtls),
    };
    assert_eq!(view.session, expected, "{case}");
    view
}

fn s_client_args(files: &PkiFiles, case: Case, port: u16, with_cert: bool) -> Vec<String> {
    let mut args: Vec<String> = [
        "s_client",
        "-connect",
        &format!("127.0.0.1:{port}"),
        "-servername",
        "localhost",
        "-CAfile",
        path_arg(&files.ca),
        "-verify_return_error",
        "-ign_eof",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(case.version.openssl_args(case.suite));
    if with_cert {
        args.extend(
            [
                "-cert",
                path_arg(&files.client_chain),
                "-key",
                path_arg(&files.client_key),
            ]
            .map(str::to_owned),
        );
    }
    if case.alpn {
        args.extend(["-alpn", "h2,http/1.1"].map(str::to_owned));
    }
    args
}

async fn s_client_against_our_server(certs: &Certs, case: Case) {
    let selector = SelectorManager::new();
    let mut server = our_server(&selector, our_server_config(&certs.pki, case), Talk::Lines).await;
    let args = s_client_args(&certs.files, case, server.port(), case.mtls);
    let mut client = Process::start("openssl", &args);
    let long = text_line(3000);
    client.send(&format!("Hello, rustls\n{long}\nbye\n"));

    // What s_client reports, in the order it prints it.
    client.stdout_line_where("verification", |l| l == "Verification: OK");
    let new = client.stdout_line_where("session line", |l| l.starts_with("New, "));
    assert_eq!(
        new,
        format!(
            "New, {}, Cipher is {}",
            case.version.name(),
            case.suite.openssl
        ),
        "{case}"
    );
    let alpn = client.stdout_line_where("ALPN line", |l| {
        l.starts_with("ALPN protocol: ") || l == "No ALPN negotiated"
    });
    if case.alpn {
        assert_eq!(alpn, "ALPN protocol: http/1.1", "{case}");
    } else {
        assert_eq!(alpn, "No ALPN negotiated", "{case}");
    }

    // Data both ways, then our close_notify ends s_client.
    client.stdout_line_where("first answer", |l| l == "Hello, Hello, rustls!");
    let expected_long = format!("Hello, {long}!");
    client.stdout_line_where("long answer", |l| l == expected_long);
    client.stdout_line_where("goodbye", |l| l == "Bye!");
    // s_client prints `closed` when its read ends with the peer's close_notify
    // (`SSL_ERROR_ZERO_RETURN`); an end without one prints `read:errno=0` or an error.
    client.stdout_line_where("close_notify", |l| l == "closed");
    let status = client.finish().status;
    assert!(status.success(), "{case}: s_client {status}");

    // What our server reports about the same session.
    let view = assert_our_server_saw(&mut server, case).await;
    assert_eq!(
        view.received,
        ["Hello, rustls", long.as_str(), "bye"],
        "{case}"
    );
    println!("PASS openssl s_client -> our server: {case}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_against_our_server_tls13() {
    require("openssl", "version");
    let certs = certs();
    for case in matrix(Version::Tls13) {
        s_client_against_our_server(&certs, case).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_against_our_server_tls12() {
    require("openssl", "version");
    let certs = certs();
    for case in matrix(Version::Tls12) {
        s_client_against_our_server(&certs, case).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_server_refuses_openssl_s_client_without_a_certificate() {
    require("openssl", "version");
    let certs = certs();
    for version in [Version::Tls12, Version::Tls13] {
        let case = Case {
            version,
            mtls: true,
            alpn: false,
            ..matrix(version)[0]
        };
        let selector = SelectorManager::new();
        let mut server =
            our_server(&selector, our_server_config(&certs.pki, case), Talk::Lines).await;
        let args = s_client_args(&certs.files, case, server.port(), false);
        let mut client = Process::start("openssl", &args);
        client.send("Hello\n");
        match server.next().await {
            Err(Error::Handshake(net_tls::rustls::Error::NoCertificatesPresented)) => {}
            other => panic!("{case}: expected NoCertificatesPresented, got {other:?}"),
        }
        let exit = client.finish();
        let stdout = &exit.stdout;
        assert!(
            !exit.status.success(),
            "{case}: s_client succeeded: {stdout:#?}"
        );
        assert!(
            !stdout.iter().any(|l| l.starts_with("Hello, ")),
            "{case}: {stdout:#?}"
        );
        println!(
            "PASS our server refuses openssl s_client without a certificate: {}",
            case.version.name()
        );
    }
}

async fn curl_against_our_server(certs: &Certs, case: Case) {
    let selector = SelectorManager::new();
    let mut server = our_server(&selector, our_server_config(&certs.pki, case), Talk::Http).await;
    let port = server.port();
    let url = format!("https://localhost:{port}/");
    let files = &certs.files;
    let mut args: Vec<String> = [
        "--silent",
        "--show-error",
        "--verbose",
        "--http1.1",
        "--cacert",
        path_arg(&files.ca),
        "--resolve",
        &format!("localhost:{port}:127.0.0.1"),
        "--write-out",
        "%{http_code} %{http_version} %{ssl_verify_result}\n",
        &url,
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(case.version.curl_args(case.suite));
    if case.mtls {
        args.extend(
            [
                "--cert",
                path_arg(&files.client_chain),
                "--key",
                path_arg(&files.client_key),
            ]
            .map(str::to_owned),
        );
    }
    if !case.alpn {
        args.push("--no-alpn".to_owned());
    }
    let exit = Process::start("curl", &args).finish();
    let (status, stdout, stderr) = (exit.status, exit.stdout, exit.stderr);
    assert!(status.success(), "{case}: curl {status}: {stderr:#?}");

    // What curl reports: the body, then status, HTTP version and verification result (0: ok).
    assert_eq!(stdout, ["hello over TLS", "200 1.1 0"], "{case}");
    let using = format!(
        "* SSL connection using {} / {}",
        case.version.name(),
        case.suite.openssl
    );
    // curl 7 ends the line there; curl 8 goes on with ` / GROUP / KEY TYPE`.
    let reported = stderr
        .iter()
        .any(|l| l == &using || l.starts_with(&format!("{using} / ")));
    assert!(reported, "{case}: {using:?} not in {stderr:#?}");
    let accepted = stderr
        .iter()
        .any(|l| l == "* ALPN: server accepted http/1.1");
    assert_eq!(accepted, case.alpn, "{case}: {stderr:#?}");

    // What our server reports about the same session, and the request it got.
    let view = assert_our_server_saw(&mut server, case).await;
    assert_eq!(view.received[0], "GET / HTTP/1.1", "{case}");
    assert!(
        view.received.contains(&format!("Host: localhost:{port}")),
        "{case}: {:?}",
        view.received
    );
    assert_eq!(view.received.last().map(String::as_str), Some(""), "{case}");
    println!("PASS curl -> our server: {case}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_against_our_server_tls13() {
    require("curl", "--version");
    let certs = certs();
    for case in matrix(Version::Tls13) {
        curl_against_our_server(&certs, case).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_against_our_server_tls12() {
    require("curl", "--version");
    let certs = certs();
    for case in matrix(Version::Tls12) {
        curl_against_our_server(&certs, case).await;
    }
}
