//! TLS against real peers: our client against `openssl s_server`, our server against
//! `openssl s_client` and `curl`; TLS 1.2 and 1.3, with and without client certificates, with
//! and without ALPN. Each case forces one cipher suite on the openssl/curl side and checks that
//! both ends report the same version, suite and ALPN protocol, then moves data both ways.
//!
//! Needs `openssl` and `curl` on `PATH` (`.ci/run` installs them; `cargo xtask interop` runs
//! this file). Certificates are made at test time by [`TestCa`] and written to a fresh
//! directory under the system's temporary directory, removed when the test ends. Every child
//! process is killed when its guard is dropped, on every path.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use net_io::LineEnding;
use net_sockets::{SelectorManager, ServerSocket, a_socket};
use net_tests::tls::TestCa;
use net_tests::within;
use net_tls::{Error, TlsConfig, TlsExt, TlsServerConfig, TlsSocket, TlsVersion};
use tokio::sync::mpsc;

/// A cipher suite by its OpenSSL name and by the IANA name rustls's `Debug` prints.
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

/// TLS 1.2 suites for the ECDSA keys [`TestCa`] makes.
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

/// A fresh directory under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "net-tls-interop-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temporary directory");
        TempDir(path)
    }

    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write temporary file");
        path.to_str().expect("UTF-8 temporary path").to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A test PKI: a CA, a server leaf for `localhost` and `127.0.0.1`, a client leaf; in memory
/// and as PEM files.
struct Pki {
    ca_pem: String,
    server_chain_pem: String,
    server_key_pem: String,
    client_chain_pem: String,
    client_key_pem: String,
    ca: String,
    server_chain: String,
    server_key: String,
    client_chain: String,
    client_key: String,
    _dir: TempDir,
}

fn pki() -> Pki {
    let ca = TestCa::new("interop test CA");
    let server = ca.server(&["localhost", "127.0.0.1"]);
    let client = ca.client("interop client");
    let dir = TempDir::new();
    Pki {
        ca: dir.write("ca.pem", &ca.pem),
        server_chain: dir.write("server.pem", &server.chain_pem),
        server_key: dir.write("server.key", &server.key_pem),
        client_chain: dir.write("client.pem", &client.chain_pem),
        client_key: dir.write("client.key", &client.key_pem),
        ca_pem: ca.pem,
        server_chain_pem: server.chain_pem,
        server_key_pem: server.key_pem,
        client_chain_pem: client.chain_pem,
        client_key_pem: client.key_pem,
        _dir: dir,
    }
}

/// A child process whose stdout and stderr lines arrive on channels; killed when dropped.
struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: mpsc::UnboundedReceiver<String>,
    stderr: mpsc::UnboundedReceiver<String>,
    /// Every stdout line read so far, for failure messages.
    seen: Vec<String>,
}

impl Peer {
    fn spawn(program: &str, args: &[String]) -> Peer {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let stdout = forward_lines(child.stdout.take().expect("stdout"));
        let stderr = forward_lines(child.stderr.take().expect("stderr"));
        Peer {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            seen: Vec::new(),
        }
    }

    /// Reads stdout until a line satisfies `wanted`, and returns it.
    async fn line(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        loop {
            match within(self.stdout.recv()).await {
                Some(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                None => {
                    let stderr = self.drain_stderr();
                    panic!(
                        "no {what} before the end of output; stdout: {:#?}, stderr: {stderr:#?}",
                        self.seen
                    )
                }
            }
        }
    }

    /// Writes `text` to the peer's stdin.
    fn send(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(text.as_bytes()).expect("write to peer");
        stdin.flush().expect("flush to peer");
    }

    /// Waits for the peer to end its output and exit; returns its status, all of its stdout
    /// and all of its stderr.
    async fn exit(&mut self) -> (ExitStatus, Vec<String>, Vec<String>) {
        self.stdin = None;
        while let Some(line) = within(self.stdout.recv()).await {
            self.seen.push(line);
        }
        let mut stderr = Vec::new();
        while let Some(line) = within(self.stderr.recv()).await {
            stderr.push(line);
        }
        // Both pipes are closed: the process has exited or is about to.
        let status = self.child.wait().expect("wait for peer");
        (status, self.seen.clone(), stderr)
    }

    fn drain_stderr(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(line) = self.stderr.try_recv() {
            lines.push(line);
        }
        lines
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends each line of `pipe` (without its line ending) to a channel from a thread; the channel
/// closes at EOF.
fn forward_lines(pipe: impl Read + Send + 'static) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line);
            if tx
                .send(text.trim_end_matches(['\r', '\n']).to_owned())
                .is_err()
            {
                return;
            }
        }
    });
    rx
}

/// A line of `len` printable, non-palindromic bytes.
fn text_line(len: usize) -> String {
    (0..len)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect()
}

fn suite_name(tls: &TlsSocket) -> String {
    format!("{:?}", tls.cipher_suite().expect("a negotiated suite"))
}

// ---------------------------------------------------------------------------------------------
// Our client against `openssl s_server`.
// ---------------------------------------------------------------------------------------------

/// Starts `openssl s_server -rev` (answers each line reversed) for one connection and returns
/// it with its port, read from its `ACCEPT` line.
async fn s_server(pki: &Pki, case: Case, require_client_cert: bool) -> (Peer, u16) {
    let mut args: Vec<String> = [
        "s_server",
        "-accept",
        "127.0.0.1:0",
        "-naccept",
        "1",
        "-rev",
        "-cert",
        &pki.server_chain,
        "-key",
        &pki.server_key,
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(case.version.openssl_args(case.suite));
    if require_client_cert {
        args.extend(
            ["-Verify", "1", "-verify_return_error", "-CAfile", &pki.ca].map(str::to_owned),
        );
    }
    if case.alpn {
        args.extend(["-alpn", "http/1.1"].map(str::to_owned));
    }
    let mut server = Peer::spawn("openssl", &args);
    let accept = server
        .line("ACCEPT line", |l| l.starts_with("ACCEPT "))
        .await;
    let port = accept
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {accept:?}"));
    (server, port)
}

fn our_client_config(pki: &Pki, case: Case) -> TlsConfig {
    let mut config = TlsConfig::builder()
        .add_root_certificates_pem(pki.ca_pem.as_bytes())
        .unwrap();
    if case.mtls {
        config = config
            .client_certificate_pem(
                pki.client_chain_pem.as_bytes(),
                pki.client_key_pem.as_bytes(),
            )
            .unwrap();
    }
    if case.alpn {
        // The server's choice, not our first preference, must be reported.
        config = config.alpn_protocols(["h2", "http/1.1"]);
    }
    config.build().unwrap()
}

async fn our_client_against_s_server(pki: &Pki, case: Case) {
    let (mut server, port) = s_server(pki, case, case.mtls).await;
    let selector = SelectorManager::new();
    let socket = within(a_socket(&selector).tcp().connect(("127.0.0.1", port)))
        .await
        .unwrap();
    let mut tls = within(socket.tls(our_client_config(pki, case)))
        .await
        .unwrap_or_else(|e| panic!("{case}: handshake failed: {e}"));

    // What our client reports.
    assert_eq!(tls.protocol_version(), Some(case.version.ours()), "{case}");
    assert_eq!(suite_name(&tls), case.suite.iana, "{case}");
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
    let (status, stdout, stderr) = server.exit().await;
    assert!(status.success(), "{case}: s_server {status}: {stderr:#?}");

    // What openssl reports about the same session: ALPN on stdout, the rest on stderr in -rev
    // mode.
    let has = |line: &str| stderr.iter().any(|l| l == line);
    let version = format!("Protocol version: {}", case.version.name());
    assert!(has(&version), "{case}: {version:?} not in {stderr:#?}");
    let cipher = format!("Ciphersuite: {}", case.suite.openssl);
    assert!(has(&cipher), "{case}: {cipher:?} not in {stderr:#?}");
    let alpn = "ALPN protocols selected: http/1.1";
    let alpn_reported = stdout.iter().any(|l| l == alpn);
    assert_eq!(alpn_reported, case.alpn, "{case}: {stdout:#?}");
    if case.mtls {
        assert!(
            has("Peer certificate: CN = interop client"),
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
    let pki = pki();
    for case in matrix(Version::Tls13) {
        our_client_against_s_server(&pki, case).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_against_openssl_s_server_tls12() {
    require("openssl", "version");
    let pki = pki();
    for case in matrix(Version::Tls12) {
        our_client_against_s_server(&pki, case).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_server_refuses_our_client_without_a_certificate() {
    require("openssl", "version");
    let pki = pki();
    for version in [Version::Tls12, Version::Tls13] {
        let case = Case {
            version,
            mtls: false,
            alpn: false,
            ..matrix(version)[0]
        };
        let (mut server, port) = s_server(&pki, case, true).await;
        let selector = SelectorManager::new();
        let socket = within(a_socket(&selector).tcp().connect(("127.0.0.1", port)))
            .await
            .unwrap();
        let refusal = match within(socket.tls(our_client_config(&pki, case))).await {
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
        let (_, _, stderr) = server.exit().await;
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
    version: Option<TlsVersion>,
    suite: String,
    alpn: Option<Vec<u8>>,
    sni: Option<String>,
    client_certificates: usize,
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

/// Our server (the library, in this process) on 127.0.0.1:0. Each connection's outcome is sent
/// on the returned channel once the client is done.
async fn our_server(
    selector: &SelectorManager,
    config: TlsServerConfig,
    talk: Talk,
) -> (u16, mpsc::UnboundedReceiver<Result<ServerView, Error>>) {
    let listener: ServerSocket = a_socket(selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.port().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(socket) = listener.accept().await {
            let config = config.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let outcome = match socket.tls_server(&config).await {
                    Ok(tls) => Ok(converse(tls, talk).await),
                    Err(e) => Err(e),
                };
                let _ = tx.send(outcome);
            });
        }
    });
    (port, rx)
}

async fn converse(mut tls: TlsSocket, talk: Talk) -> ServerView {
    let mut view = ServerView {
        version: tls.protocol_version(),
        suite: suite_name(&tls),
        alpn: tls.alpn_protocol().map(<[u8]>::to_vec),
        sni: tls.server_name().map(str::to_owned),
        client_certificates: tls.peer_certificates().len(),
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
    let mut config = TlsServerConfig::builder()
        .certificate_chain_pem(pki.server_chain_pem.as_bytes())
        .unwrap()
        .private_key_pem(pki.server_key_pem.as_bytes())
        .unwrap();
    if case.mtls {
        config = config.client_auth_required(pki.ca_pem.as_bytes()).unwrap();
    }
    if case.alpn {
        config = config.alpn_protocols(["http/1.1"]);
    }
    config.build().unwrap()
}

fn s_client_args(pki: &Pki, case: Case, port: u16, with_cert: bool) -> Vec<String> {
    let mut args: Vec<String> = [
        "s_client",
        "-connect",
        &format!("127.0.0.1:{port}"),
        "-servername",
        "localhost",
        "-CAfile",
        &pki.ca,
        "-verify_return_error",
        "-ign_eof",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(case.version.openssl_args(case.suite));
    if with_cert {
        args.extend(["-cert", &pki.client_chain, "-key", &pki.client_key].map(str::to_owned));
    }
    if case.alpn {
        args.extend(["-alpn", "h2,http/1.1"].map(str::to_owned));
    }
    args
}

async fn s_client_against_our_server(pki: &Pki, case: Case) {
    let selector = SelectorManager::new();
    let (port, mut outcomes) =
        our_server(&selector, our_server_config(pki, case), Talk::Lines).await;
    let mut client = Peer::spawn("openssl", &s_client_args(pki, case, port, case.mtls));
    let long = text_line(3000);
    client.send(&format!("Hello, rustls\n{long}\nbye\n"));

    // What s_client reports, in the order it prints it.
    client
        .line("verification", |l| l == "Verification: OK")
        .await;
    let new = client
        .line("session line", |l| l.starts_with("New, "))
        .await;
    assert_eq!(
        new,
        format!(
            "New, {}, Cipher is {}",
            case.version.name(),
            case.suite.openssl
        ),
        "{case}"
    );
    let alpn = client
        .line("ALPN line", |l| {
            l.starts_with("ALPN protocol: ") || l == "No ALPN negotiated"
        })
        .await;
    if case.alpn {
        assert_eq!(alpn, "ALPN protocol: http/1.1", "{case}");
    } else {
        assert_eq!(alpn, "No ALPN negotiated", "{case}");
    }

    // Data both ways, then our close_notify ends s_client.
    client
        .line("first answer", |l| l == "Hello, Hello, rustls!")
        .await;
    let expected_long = format!("Hello, {long}!");
    client.line("long answer", |l| l == expected_long).await;
    client.line("goodbye", |l| l == "Bye!").await;
    let (status, _, _) = client.exit().await;
    assert!(status.success(), "{case}: s_client {status}");

    // What our server reports about the same session.
    let view = within(outcomes.recv())
        .await
        .expect("an outcome")
        .unwrap_or_else(|e| panic!("{case}: our server failed: {e}"));
    assert_eq!(view.version, Some(case.version.ours()), "{case}");
    assert_eq!(view.suite, case.suite.iana, "{case}");
    let expected_alpn = case.alpn.then(|| b"http/1.1".to_vec());
    assert_eq!(view.alpn, expected_alpn, "{case}");
    assert_eq!(view.sni.as_deref(), Some("localhost"), "{case}");
    // With -cert, s_client sends its leaf and the CA it finds in -CAfile.
    assert_eq!(
        view.client_certificates,
        2 * usize::from(case.mtls),
        "{case}"
    );
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
    let pki = pki();
    for case in matrix(Version::Tls13) {
        s_client_against_our_server(&pki, case).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_against_our_server_tls12() {
    require("openssl", "version");
    let pki = pki();
    for case in matrix(Version::Tls12) {
        s_client_against_our_server(&pki, case).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_server_refuses_openssl_s_client_without_a_certificate() {
    require("openssl", "version");
    let pki = pki();
    for version in [Version::Tls12, Version::Tls13] {
        let case = Case {
            version,
            mtls: true,
            alpn: false,
            ..matrix(version)[0]
        };
        let selector = SelectorManager::new();
        let (port, mut outcomes) =
            our_server(&selector, our_server_config(&pki, case), Talk::Lines).await;
        let mut client = Peer::spawn("openssl", &s_client_args(&pki, case, port, false));
        client.send("Hello\n");
        let outcome = within(outcomes.recv()).await.expect("an outcome");
        match outcome {
            Err(Error::Handshake(net_tls::rustls::Error::NoCertificatesPresented)) => {}
            other => panic!("{case}: expected NoCertificatesPresented, got {other:?}"),
        }
        let (status, stdout, _) = client.exit().await;
        assert!(!status.success(), "{case}: s_client succeeded: {stdout:#?}");
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

async fn curl_against_our_server(pki: &Pki, case: Case) {
    let selector = SelectorManager::new();
    let (port, mut outcomes) =
        our_server(&selector, our_server_config(pki, case), Talk::Http).await;
    let url = format!("https://localhost:{port}/");
    let mut args: Vec<String> = [
        "--silent",
        "--show-error",
        "--verbose",
        "--http1.1",
        "--cacert",
        &pki.ca,
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
        args.extend(["--cert", &pki.client_chain, "--key", &pki.client_key].map(str::to_owned));
    }
    if !case.alpn {
        args.push("--no-alpn".to_owned());
    }
    let mut curl = Peer::spawn("curl", &args);
    let (status, stdout, stderr) = curl.exit().await;
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
    let view = within(outcomes.recv())
        .await
        .expect("an outcome")
        .unwrap_or_else(|e| panic!("{case}: our server failed: {e}"));
    assert_eq!(view.version, Some(case.version.ours()), "{case}");
    assert_eq!(view.suite, case.suite.iana, "{case}");
    let expected_alpn = case.alpn.then(|| b"http/1.1".to_vec());
    assert_eq!(view.alpn, expected_alpn, "{case}");
    assert_eq!(view.sni.as_deref(), Some("localhost"), "{case}");
    // client.pem holds the leaf and the CA; curl sends both.
    assert_eq!(
        view.client_certificates,
        2 * usize::from(case.mtls),
        "{case}"
    );
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
    let pki = pki();
    for case in matrix(Version::Tls13) {
        curl_against_our_server(&pki, case).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_against_our_server_tls12() {
    require("curl", "--version");
    let pki = pki();
    for case in matrix(Version::Tls12) {
        curl_against_our_server(&pki, case).await;
    }
}
