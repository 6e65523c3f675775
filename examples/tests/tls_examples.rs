//! End-to-end runs of `sockets-server-tls` and `sockets-client-tls`, against each other and
//! against a TLS HTTP server made here with net-tls. Certificates are made at test time with
//! rcgen and written to a fresh temporary directory that is removed afterwards.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use net_io::LineEnding;
use net_sockets::a_socket;
use net_tls::{TlsExt, TlsServerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// Hang safety net for every wait on a program.
const HANG_LIMIT: Duration = Duration::from_secs(20);

const SERVER: &str = env!("CARGO_BIN_EXE_sockets-server-tls");
const CLIENT: &str = env!("CARGO_BIN_EXE_sockets-client-tls");

/// A directory under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "tls-examples-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A test CA and a server certificate it issued for `localhost` only, as PEM files.
struct Pki {
    ca: String,
    chain: String,
    key: String,
    chain_pem: String,
    key_pem: String,
    leaf_der: Vec<u8>,
    _dir: TempDir,
}

fn pki() -> Pki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "examples test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();

    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();

    let dir = TempDir::new();
    let chain_pem = format!("{}{}", cert.pem(), issuer.pem());
    let key_pem = key.serialize_pem();
    Pki {
        ca: dir.write("ca.pem", &issuer.pem()),
        chain: dir.write("server.pem", &chain_pem),
        key: dir.write("server.key", &key_pem),
        chain_pem,
        key_pem,
        leaf_der: cert.der().to_vec(),
        _dir: dir,
    }
}

/// A running program whose stdout and stderr lines arrive on channels; killed when dropped.
struct Program {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Program {
    fn start(program: &str, args: &[&str]) -> Program {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start program");
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        Program {
            child,
            stdout,
            stderr,
        }
    }

    /// The next line on stdout; panics at EOF or after [`HANG_LIMIT`].
    fn stdout_line(&self) -> String {
        next_line(&self.stdout, "stdout")
    }

    /// The next line on stderr; panics at EOF or after [`HANG_LIMIT`].
    fn stderr_line(&self) -> String {
        next_line(&self.stderr, "stderr")
    }

    /// Waits for the program to exit; returns its status and the rest of stdout and stderr.
    fn finish(mut self) -> (ExitStatus, Vec<String>, Vec<String>) {
        let rest = |rx: &mpsc::Receiver<String>| {
            let mut lines = Vec::new();
            loop {
                match rx.recv_timeout(HANG_LIMIT) {
                    Ok(line) => lines.push(line),
                    Err(mpsc::RecvTimeoutError::Disconnected) => return lines,
                    Err(mpsc::RecvTimeoutError::Timeout) => panic!("program did not exit"),
                }
            }
        };
        let stdout = rest(&self.stdout);
        let stderr = rest(&self.stderr);
        let status = self.child.wait().unwrap();
        (status, stdout, stderr)
    }

    /// Kills the program (a server that would run forever).
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Forwards the lines of `pipe` to a channel from a thread, without their `\n` (a `\r` before
/// it stays); the channel closes at EOF.
fn lines(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            if tx
                .send(String::from_utf8_lossy(&line).into_owned())
                .is_err()
            {
                return;
            }
        }
    });
    rx
}

fn next_line(rx: &mpsc::Receiver<String>, what: &str) -> String {
    match rx.recv_timeout(HANG_LIMIT) {
        Ok(line) => line,
        Err(e) => panic!("no line on {what}: {e:?}"),
    }
}

/// `sockets-server-tls ARGS 127.0.0.1 0`, its start-up lines read: (program, port,
/// fingerprint printed).
fn start_server(args: &[&str]) -> (Program, u16, String) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["127.0.0.1", "0"]);
    let server = Program::start(SERVER, &all);
    let certificate = server.stdout_line();
    assert!(certificate.starts_with("Certificate: "), "{certificate}");
    let fingerprint = server
        .stdout_line()
        .strip_prefix("SHA-256 fingerprint: ")
        .expect("fingerprint line")
        .to_owned();
    let listening = server.stdout_line();
    let port = listening
        .strip_prefix("Server is listening at 127.0.0.1:")
        .expect("listening line")
        .parse()
        .unwrap();
    (server, port, fingerprint)
}

/// Reads the client's greeting lines: the server's prompt and one answer per request line.
fn assert_greeted(client: &Program, port: u16) {
    for expected in [
        "Please enter your name".to_owned(),
        "Hello, GET / HTTP/1.1!".to_owned(),
        format!("Hello, Host: localhost:{port}!"),
        "Hello, Connection: close!".to_owned(),
        "Hello, !".to_owned(),
    ] {
        assert_eq!(client.stdout_line(), expected);
    }
}

#[test]
fn tls_client_and_server_with_a_ca_issued_certificate() {
    let pki = pki();
    let (mut server, port, fingerprint) = start_server(&["--cert", &pki.chain, "--key", &pki.key]);
    let leaf_fingerprint = examples::sha256_fingerprint(&pki.leaf_der);
    assert_eq!(fingerprint, leaf_fingerprint);
    assert_eq!(fingerprint.len(), 32 * 3 - 1);

    let port_text = port.to_string();
    let client = Program::start(CLIENT, &["localhost", &port_text, "--ca", &pki.ca]);
    assert_greeted(&client, port);
    let connected = client.stderr_line();
    assert!(
        connected.starts_with(&format!("Connected to 127.0.0.1:{port}: TLS 1.3, TLS13_")),
        "{connected}"
    );
    assert!(
        connected.ends_with(&format!("no ALPN, peer certificate SHA-256 {fingerprint}")),
        "{connected}"
    );

    let accepted = server.stdout_line();
    assert!(accepted.starts_with("Accepted 127.0.0.1:"), "{accepted}");
    let session = server.stdout_line();
    assert!(
        session.starts_with(&format!("TLS with {}: TLS 1.3, TLS13_", &accepted[9..])),
        "{session}"
    );

    // The server waits for more lines, as sockets-server does; the client for the end of the
    // response. Killing the server ends the TCP stream without close_notify: the client reports
    // the truncation and fails.
    server.kill();
    let (status, stdout, stderr) = client.finish();
    assert!(!status.success());
    assert!(stdout.is_empty(), "{stdout:?}");
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(stderr[0].contains("close_notify"), "{stderr:?}");
}

#[test]
fn self_signed_server_refuses_nobody_but_only_insecure_clients_get_through() {
    let (mut server, port, fingerprint) = start_server(&[]);
    let port_text = port.to_string();

    // Verification is on by default: the self-signed certificate is not trusted.
    let client = Program::start(CLIENT, &["localhost", &port_text]);
    let (status, stdout, stderr) = client.finish();
    assert!(!status.success());
    assert!(stdout.is_empty(), "{stdout:?}");
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(
        stderr[0].starts_with(&format!(
            "sockets-client-tls: no TLS with localhost:{port}: "
        )),
        "{stderr:?}"
    );
    assert!(stderr[0].contains("UnknownIssuer"), "{stderr:?}");
    let accepted = server.stdout_line();
    let failed = server.stderr_line();
    assert_eq!(
        failed,
        format!(
            "Handshake with {} failed: tls handshake failed: received fatal alert: UnknownCA",
            &accepted["Accepted ".len()..]
        )
    );

    // The server keeps serving: an --insecure client gets through, warned, and sees the
    // fingerprint the server printed.
    let client = Program::start(CLIENT, &["localhost", &port_text, "--insecure"]);
    assert_greeted(&client, port);
    let warning = client.stderr_line();
    assert!(warning.starts_with("warning: --insecure"), "{warning}");
    let connected = client.stderr_line();
    assert!(
        connected.ends_with(&format!("peer certificate SHA-256 {fingerprint}")),
        "{connected}"
    );
    server.kill();
    let (status, _, _) = client.finish();
    assert!(!status.success());
}

#[test]
fn tls_client_prints_an_http_response_and_verifies_the_host_name() {
    let pki = pki();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = TlsServerConfig::builder()
        .certificate_chain_pem(pki.chain_pem.as_bytes())
        .unwrap()
        .private_key_pem(pki.key_pem.as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let selector = net_sockets::SelectorManager::new();
    let listener = runtime.block_on(async {
        a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap()
    });
    let port = listener.port().unwrap();
    const RESPONSE: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n";
    // Serves one HTTP exchange per connection; sends each request's raw bytes to the test.
    let (requests, received) = mpsc::channel();
    runtime.spawn(async move {
        while let Ok(socket) = listener.accept().await {
            let Ok(mut tls) = socket.tls_server(&config).await else {
                continue;
            };
            let mut input = tls.open_read_channel().unwrap();
            let mut output = tls.open_write_channel(false).unwrap();
            let mut request = String::new();
            loop {
                let mut line = String::new();
                match input.read_line(1024, LineEnding::Default).await {
                    Ok(Some(l)) => line.push_str(&l),
                    _ => break,
                }
                request.push_str(&line);
                request.push('\n');
                if line.is_empty() {
                    break;
                }
            }
            requests.send(request).unwrap();
            output.write_string_utf8(RESPONSE).await.unwrap();
            output.flush_and_close().await.unwrap();
            tls.close();
        }
    });

    let port_text = port.to_string();
    let client = Program::start(CLIENT, &["localhost", &port_text, "--ca", &pki.ca]);
    let (status, stdout, stderr) = client.finish();
    assert!(status.success(), "{stderr:?}");
    assert_eq!(
        stdout,
        [
            "HTTP/1.1 200 OK\r",
            "Content-Type: text/plain\r",
            "Content-Length: 6\r",
            "Connection: close\r",
            "\r",
            "hello"
        ]
    );
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(
        stderr[0].starts_with("Connected to 127.0.0.1:"),
        "{stderr:?}"
    );
    assert_eq!(
        received.recv_timeout(HANG_LIMIT).unwrap(),
        format!("GET / HTTP/1.1\nHost: localhost:{port}\nConnection: close\n\n")
    );

    // The certificate names only localhost: connecting by address fails verification.
    let client = Program::start(CLIENT, &["127.0.0.1", &port_text, "--ca", &pki.ca]);
    let (status, stdout, stderr) = client.finish();
    assert!(!status.success());
    assert!(stdout.is_empty(), "{stdout:?}");
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(
        stderr[0].contains("certificate not valid for name \"127.0.0.1\""),
        "{stderr:?}"
    );
    selector.close();
}

#[test]
fn bad_arguments_and_files_are_one_line_and_non_zero() {
    let dir = TempDir::new();
    let missing = dir.0.join("missing.pem");
    let missing = missing.to_str().unwrap();
    let empty = dir.write("empty.pem", "");
    let cases: [(&str, Vec<&str>, &str); 7] = [
        (CLIENT, vec!["--ca", missing], "missing.pem"),
        (CLIENT, vec!["--ca", &empty], "empty.pem"),
        (CLIENT, vec!["--ca", &empty, "--insecure"], "exclude"),
        (CLIENT, vec!["--bogus"], "--bogus"),
        (SERVER, vec!["--cert", &empty], "--key"),
        (
            SERVER,
            vec!["--cert", missing, "--key", missing],
            "missing.pem",
        ),
        (SERVER, vec!["--client-ca", missing], "missing.pem"),
    ];
    for (program, args, needle) in cases {
        let mut all = args.clone();
        all.extend(["127.0.0.1", "0"]);
        let (status, stdout, stderr) = Program::start(program, &all).finish();
        assert!(!status.success(), "{program} {args:?}");
        assert!(stdout.is_empty(), "{program} {args:?}: {stdout:?}");
        assert_eq!(stderr.len(), 1, "{program} {args:?}: {stderr:?}");
        assert!(stderr[0].contains(needle), "{program} {args:?}: {stderr:?}");
    }
}
