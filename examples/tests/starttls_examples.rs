//! `starttls-server` and `starttls-client` end to end: against each other, against
//! `openssl s_client -starttls smtp` and GnuTLS's `gnutls-cli --starttls-proto=smtp`, against
//! Python's `smtplib`, and against a client that
//! sends `STARTTLS` and its ClientHello in one write (the bytes after the command must reach
//! TLS, not be lost or read as a command).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use net_tests::HANG_LIMIT;
use net_tests::harness::{Process, path_arg};
use net_tests::pki::{Pki, PkiFiles};
use net_tests::tls::{localhost, rustls_client_config};
use net_tls::rustls;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const SERVER: &str = env!("CARGO_BIN_EXE_starttls-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_starttls-client");

/// A test PKI and its PEM files.
fn pki() -> (Pki, PkiFiles) {
    let pki = Pki::generate();
    let files = pki.temp_files();
    (pki, files)
}

/// `starttls-server 127.0.0.1 0` with the server certificate of `files`.
fn start_server_with(files: &PkiFiles) -> (Process, u16, String) {
    let chain = path_arg(&files.server_chain);
    start_server(&["--cert", chain, "--key", path_arg(&files.server_key)])
}

/// `starttls-server 127.0.0.1 0 EXTRA...`: (program, port, fingerprint printed).
fn start_server(extra: &[&str]) -> (Process, u16, String) {
    let mut args = vec!["127.0.0.1", "0"];
    args.extend_from_slice(extra);
    let mut server = Process::start(SERVER, args);
    let fingerprint = server
        .stdout_line_where("fingerprint", |l| l.starts_with("SHA-256 fingerprint: "))
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    let port = server.listening_port();
    (server, port, fingerprint)
}

/// What the server says over TLS, after the upgrade, to EHLO, NOOP and QUIT.
const AFTER_TLS: [&str; 4] = ["250-[127.0.0.1]", "250 PIPELINING", "250 OK", "221 Bye"];

#[test]
fn starttls_client_and_server_with_a_ca_issued_certificate() {
    let (_, files) = pki();
    let (mut server, port, fingerprint) = start_server_with(&files);
    let port_text = port.to_string();
    let client = Process::run(
        CLIENT,
        ["localhost", &port_text, "--ca", path_arg(&files.ca)],
    );
    assert!(client.status.success(), "{:?}", client.stderr);
    assert!(client.stderr.is_empty(), "{:?}", client.stderr);
    let (before, rest) = client.stdout.split_at(5);
    assert_eq!(
        before,
        [
            "220 [127.0.0.1] ready",
            "250-[127.0.0.1]",
            "250-PIPELINING",
            "250 STARTTLS",
            "220 Ready to start TLS"
        ]
    );
    assert!(rest[0].starts_with("TLS: TLS 1.3, TLS13_"), "{rest:?}");
    assert!(
        rest[0].ends_with(&format!("peer certificate SHA-256 {fingerprint}")),
        "{rest:?}"
    );
    assert_eq!(&rest[1..], AFTER_TLS);

    let accepted = server.stdout_line_where("accept", |l| l.starts_with("Accepted "));
    let session = server.stdout_line();
    assert!(
        session.starts_with(&format!("TLS with {}: TLS 1.3", &accepted[9..])),
        "{session}"
    );
}

#[test]
fn starttls_client_verifies_by_default_and_insecure_gets_through() {
    let (_server, port, fingerprint) = start_server(&[]);
    let port_text = port.to_string();
    let verifying = Process::run(CLIENT, ["localhost", &port_text]);
    assert_eq!(verifying.status.code(), Some(1));
    // The plain-text part was printed; the upgrade failed on the untrusted certificate.
    assert_eq!(
        verifying.stdout.last().map(String::as_str),
        Some("220 Ready to start TLS")
    );
    let stderr = &verifying.stderr;
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(
        stderr[0].starts_with(&format!("starttls-client: no TLS with localhost:{port}: ")),
        "{stderr:?}"
    );
    assert!(stderr[0].contains("UnknownIssuer"), "{stderr:?}");

    let insecure = Process::run(CLIENT, ["localhost", &port_text, "--insecure"]);
    let (stdout, stderr) = (&insecure.stdout, &insecure.stderr);
    assert!(insecure.status.success(), "{stderr:?}");
    assert!(stderr[0].starts_with("warning: --insecure"), "{stderr:?}");
    assert!(stdout[5].ends_with(&fingerprint), "{stdout:?}");
    assert_eq!(&stdout[6..], AFTER_TLS);
}

#[test]
fn openssl_s_client_starttls_smtp() {
    let (_, files) = pki();
    let (_server, port, _) = start_server_with(&files);
    let connect = format!("127.0.0.1:{port}");
    let mut openssl = Process::start(
        "openssl",
        [
            "s_client",
            "-starttls",
            "smtp",
            "-connect",
            &connect,
            "-CAfile",
            path_arg(&files.ca),
            "-verify_return_error",
            "-verify_hostname",
            "localhost",
            "-quiet",
            "-crlf",
        ],
    );
    openssl.send("EHLO openssl.test\nNOOP\nHELP\nQUIT\n");
    let finished = openssl.finish();
    let (stdout, stderr) = (finished.stdout, finished.stderr);
    assert!(finished.status.success(), "{stdout:?} {stderr:?}");
    // `-quiet` shows what the server sent after the upgrade, CRLF and all.
    assert_eq!(
        stdout,
        [
            "250-[127.0.0.1]\r",
            "250 PIPELINING\r",
            "250 OK\r",
            "502 Command not implemented\r",
            "221 Bye\r"
        ]
    );
}

/// `starttls-server` against GnuTLS's `gnutls-cli --starttls-proto=smtp`, which sends `EHLO`
/// and `STARTTLS` itself, verifies the certificate for `localhost`, and then sends its stdin
/// over TLS (LF endings: its `--crlf` garbles a read of several lines); `QUIT` ends the
/// session with our `close_notify`, which gnutls-cli reports. Skipped (with a line saying so)
/// without `gnutls-cli`.
#[test]
fn gnutls_cli_starttls_smtp() {
    if !net_tests::harness::gnutls_present() {
        return;
    }
    let (_, files) = pki();
    let (_server, port, _) = start_server_with(&files);
    let port_text = port.to_string();
    let mut gnutls = Process::start(
        "gnutls-cli",
        [
            "--starttls-proto=smtp",
            "--x509cafile",
            path_arg(&files.ca),
            "--verify-hostname=localhost",
            "--logfile=/dev/null",
            "--port",
            &port_text,
            "127.0.0.1",
        ],
    );
    gnutls.send("EHLO gnutls.test\nNOOP\nHELP\nQUIT\n");
    let finished = gnutls.finish();
    let (stdout, stderr) = (finished.stdout, finished.stderr);
    assert!(finished.status.success(), "{stdout:?} {stderr:?}");
    // What the server sent after the upgrade, CRLF and all.
    assert_eq!(
        stdout,
        [
            "250-[127.0.0.1]\r",
            "250 PIPELINING\r",
            "250 OK\r",
            "502 Command not implemented\r",
            "221 Bye\r"
        ]
    );
}

const SMTPLIB: &str = r#"
import smtplib, ssl, sys
host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if ca == "none":
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
else:
    context = ssl.create_default_context(cafile=ca)
smtp = smtplib.SMTP(host, port, timeout=20)
print(smtp.ehlo())
print(smtp.starttls(context=context))
print(smtp.sock.version())
print(smtp.ehlo())
print(smtp.noop())
print(smtp.quit())
"#;

#[test]
fn python_smtplib_upgrades_with_starttls() {
    let expected = [
        r"(250, b'[127.0.0.1]\nPIPELINING\nSTARTTLS')",
        "(220, b'Ready to start TLS')",
        "TLSv1.3",
        r"(250, b'[127.0.0.1]\nPIPELINING')",
        "(250, b'OK')",
        "(221, b'Bye')",
    ];
    // Verified against the test CA.
    let (_, files) = pki();
    let (_server, port, _) = start_server_with(&files);
    let port_text = port.to_string();
    let ca = path_arg(&files.ca);
    let smtplib = Process::run("python3", ["-c", SMTPLIB, "localhost", &port_text, ca]);
    assert!(smtplib.status.success(), "{:#?}", smtplib.stderr);
    assert_eq!(smtplib.stdout, expected);

    // The self-signed certificate, unverified.
    let (_server, port, _) = start_server(&[]);
    let port_text = port.to_string();
    let smtplib = Process::run("python3", ["-c", SMTPLIB, "127.0.0.1", &port_text, "none"]);
    assert!(smtplib.status.success(), "{:#?}", smtplib.stderr);
    assert_eq!(smtplib.stdout, expected);
}

/// A stream that puts `command` in front of the first write, so that the command and the
/// first TLS record (the ClientHello) leave in one `write`, and that reads the server's
/// one-line reply to the command before anything else is read. It records the size of each
/// write made on the socket.
struct CommandThenTls {
    inner: TcpStream,
    command: Option<Vec<u8>>,
    /// The command and the first write's bytes, while not all written.
    pending: Vec<u8>,
    /// The length the first write reports once `pending` is written.
    first_len: usize,
    reply: Vec<u8>,
    reply_done: bool,
    writes: Vec<usize>,
}

impl CommandThenTls {
    fn new(inner: TcpStream, command: &str) -> Self {
        CommandThenTls {
            inner,
            command: Some(command.as_bytes().to_vec()),
            pending: Vec::new(),
            first_len: 0,
            reply: Vec::new(),
            reply_done: false,
            writes: Vec::new(),
        }
    }
}

impl AsyncWrite for CommandThenTls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if let Some(mut command) = this.command.take() {
            command.extend_from_slice(buf);
            this.pending = command;
            this.first_len = buf.len();
        }
        if this.pending.is_empty() {
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
            this.writes.push(n);
            return Poll::Ready(Ok(n));
        }
        while !this.pending.is_empty() {
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &this.pending))?;
            this.writes.push(n);
            this.pending.drain(..n);
        }
        Poll::Ready(Ok(this.first_len))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl AsyncRead for CommandThenTls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while !this.reply_done {
            // One byte at a time: nothing after the reply's line end is taken from TLS.
            let mut byte = [0u8; 1];
            let mut one = tokio::io::ReadBuf::new(&mut byte);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut one))?;
            if one.filled().is_empty() {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            this.reply.push(byte[0]);
            this.reply_done = byte[0] == b'\n' || this.reply.len() > 512;
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

/// Reads one SMTP reply (all its lines) byte by byte, so that nothing past it is consumed.
async fn read_reply(stream: &mut TcpStream) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        while line.last() != Some(&b'\n') {
            line.push(stream.read_u8().await.expect("a reply byte"));
        }
        let line = String::from_utf8(line).unwrap().trim_end().to_owned();
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line);
        if last {
            return lines;
        }
    }
}

/// Connects, reads the greeting and does the plain-text EHLO.
async fn plain_ehlo(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert_eq!(read_reply(&mut stream).await, ["220 [127.0.0.1] ready"]);
    stream.write_all(b"EHLO hard.case\r\n").await.unwrap();
    assert_eq!(
        read_reply(&mut stream).await,
        ["250-[127.0.0.1]", "250-PIPELINING", "250 STARTTLS"]
    );
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_the_client_hello_in_one_write() {
    let (pki, files) = pki();
    let (_server, port, _) = start_server_with(&files);
    let stream = plain_ehlo(port).await;

    let config = rustls_client_config(&pki.ca, rustls::DEFAULT_VERSIONS);
    let connector = tokio_rustls::TlsConnector::from(config);
    let adapter = CommandThenTls::new(stream, "STARTTLS\r\n");
    let tls = tokio::time::timeout(HANG_LIMIT, connector.connect(localhost(), adapter))
        .await
        .expect("the handshake does not hang")
        .expect("the handshake succeeds");

    let (adapter, _) = tls.get_ref();
    assert_eq!(adapter.reply, b"220 Ready to start TLS\r\n");
    // The command and the whole ClientHello went out in the first write on the socket.
    assert_eq!(adapter.writes[0], "STARTTLS\r\n".len() + adapter.first_len);
    assert!(adapter.first_len > 100, "{}", adapter.first_len);

    let mut tls = BufReader::new(tls);
    let mut replies = Vec::new();
    for command in ["EHLO hard.case", "NOOP", "QUIT"] {
        tls.write_all(format!("{command}\r\n").as_bytes())
            .await
            .unwrap();
        tls.flush().await.unwrap();
        loop {
            let mut line = String::new();
            tls.read_line(&mut line).await.unwrap();
            let line = line.trim_end().to_owned();
            let last = line.as_bytes().get(3) != Some(&b'-');
            replies.push(line);
            if last {
                break;
            }
        }
    }
    assert_eq!(replies, AFTER_TLS);
    // The server ends the session cleanly (close_notify): a clean end of stream.
    let mut rest = Vec::new();
    tls.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_pipelined_after_starttls_is_never_run_as_a_command() {
    let (mut server, port, _) = start_server(&[]);
    let mut stream = plain_ehlo(port).await;
    // RFC 3207 forbids this; a server that answered the NOOP would let an attacker inject
    // commands into the TLS session (the STARTTLS command injection flaw).
    stream.write_all(b"STARTTLS\r\nNOOP\r\n").await.unwrap();
    assert_eq!(read_reply(&mut stream).await, ["220 Ready to start TLS"]);
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(HANG_LIMIT, stream.read_to_end(&mut rest))
        .await
        .expect("the server ends the connection");
    assert!(
        !String::from_utf8_lossy(&rest).contains("250"),
        "answered in plain text: {rest:?}"
    );
    let failed = tokio::task::spawn_blocking(move || server.stderr_line())
        .await
        .unwrap();
    assert!(failed.starts_with("No TLS with 127.0.0.1:"), "{failed}");
}

/// Replies to pipelined commands may wait for each other, but never for a command that has
/// not fully arrived: with the start of the next command buffered, the reply to the last whole
/// one leaves before the server waits for the rest (RFC 2920: flush before waiting for input).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_next_command_does_not_hold_back_the_reply() {
    let (_server, port, _) = start_server(&[]);
    let mut stream = plain_ehlo(port).await;
    stream.write_all(b"NOOP\r\nNOOP\r\nNO").await.unwrap();
    for _ in 0..2 {
        let reply = tokio::time::timeout(HANG_LIMIT, read_reply(&mut stream))
            .await
            .expect("the replies to the whole commands come without the rest");
        assert_eq!(reply, ["250 OK"]);
    }
    stream.write_all(b"OP\r\nQUIT\r\n").await.unwrap();
    assert_eq!(read_reply(&mut stream).await, ["250 OK"]);
    assert_eq!(read_reply(&mut stream).await, ["221 Bye"]);
}

/// A server that accepts, sends `said` and then stays silent (reading whatever comes until the
/// client leaves): the client gives up after its `--timeout` with one line saying what it
/// waited for, instead of waiting for ever.
#[test]
fn starttls_client_gives_up_on_a_silent_server() {
    use std::io::Write;
    const GREETING: &str = "220 silent.test ready\r\n";
    const EHLO: &str = "250-silent.test\r\n250 STARTTLS\r\n";
    const READY: &str = "220 Ready to start TLS\r\n";
    let cases = [
        (
            String::new(),
            "starttls-client: timed out: no reply to the greeting within 1 s (see --timeout)",
        ),
        (
            GREETING.to_owned(),
            "starttls-client: timed out: no reply to EHLO within 1 s (see --timeout)",
        ),
        (
            format!("{GREETING}{EHLO}"),
            "starttls-client: timed out: no reply to STARTTLS within 1 s (see --timeout)",
        ),
        (
            format!("{GREETING}{EHLO}{READY}"),
            "starttls-client: no TLS with 127.0.0.1:",
        ),
    ];
    for (said, expected) in cases {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port().to_string();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(said.as_bytes()).unwrap();
            // Ends when the client's exit closes the connection.
            let _ = std::io::copy(&mut stream, &mut std::io::sink());
        });
        let started = std::time::Instant::now();
        let client = Process::run(CLIENT, ["127.0.0.1", &port, "--timeout", "1"]);
        let waited = started.elapsed();
        assert_eq!(client.status.code(), Some(1), "{client:?}");
        assert_eq!(client.stderr.len(), 1, "{client:?}");
        assert!(client.stderr[0].starts_with(expected), "{client:?}");
        assert!(waited >= std::time::Duration::from_secs(1), "{waited:?}");
        server.join().unwrap();
    }
}

/// On SIGTERM the server says goodbye as SMTP does (`421 HOST Server is shutting down`, RFC
/// 5321 3.8) to a session still in plain text and to one over TLS (then `close_notify`: a
/// clean end), after answering the commands it already received; it exits 0.
#[test]
fn sigterm_says_421_in_plain_text_and_over_tls_and_exits_0() {
    let (pki, files) = pki();
    let chain = path_arg(&files.server_chain);
    let key = path_arg(&files.server_key);
    let (mut server, port, _) = start_server(&["--cert", chain, "--key", key, "--grace", "5"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (mut plain, mut tls) = runtime.block_on(async {
        let plain = plain_ehlo(port).await;
        let mut upgraded = plain_ehlo(port).await;
        upgraded.write_all(b"STARTTLS\r\n").await.unwrap();
        assert_eq!(read_reply(&mut upgraded).await, ["220 Ready to start TLS"]);
        let config = rustls_client_config(&pki.ca, rustls::DEFAULT_VERSIONS);
        let connector = tokio_rustls::TlsConnector::from(config);
        let tls = connector.connect(localhost(), upgraded).await.unwrap();
        (BufReader::new(plain), BufReader::new(tls))
    });
    server.stdout_line_where("the session", |l| l.starts_with("TLS with "));
    runtime.block_on(async {
        // Answered before the signal: both sessions are waiting for a command when it comes.
        for command in ["NOOP\r\n", "NOOP\r\n"] {
            plain.write_all(command.as_bytes()).await.unwrap();
            tls.write_all(command.as_bytes()).await.unwrap();
            tls.flush().await.unwrap();
            let (mut a, mut b) = (String::new(), String::new());
            plain.read_line(&mut a).await.unwrap();
            tls.read_line(&mut b).await.unwrap();
            assert_eq!((a.as_str(), b.as_str()), ("250 OK\r\n", "250 OK\r\n"));
        }
    });
    server.signal("TERM");
    let rest = |stream: &mut (dyn tokio::io::AsyncRead + Unpin + Send)| {
        runtime.block_on(async {
            let mut rest = String::new();
            tokio::time::timeout(HANG_LIMIT, stream.read_to_string(&mut rest))
                .await
                .expect("the server ends the session")
                .map(|_| rest)
                .map_err(|e| e.to_string())
        })
    };
    let goodbye = "421 [127.0.0.1] Server is shutting down\r\n".to_owned();
    assert_eq!(rest(&mut plain), Ok(goodbye.clone()));
    // A clean end (close_notify): an end without it is an `UnexpectedEof` error here.
    assert_eq!(rest(&mut tls), Ok(goodbye));
    assert_eq!(server.stdout_line(), "Shutting down (2 open)");
    runtime.block_on(async { tls.shutdown().await.unwrap() });
    drop((plain, tls));
    let finished = server.finish();
    assert_eq!(finished.status.code(), Some(0), "{finished:?}");
    assert_eq!(finished.stdout, ["Server stopped"]);
    assert!(finished.stderr.is_empty(), "{finished:?}");
}

/// A server that sends one line at a time, `220-` after `220-`, and never the reply's last
/// line: each line arrives well within `--timeout`, so the socket's timeout never fires. The
/// whole reply has one deadline, `--timeout`, and at most `REPLY_LINES` lines (100): the
/// client gives up on both, with one line saying which, instead of keeping every line for ever.
#[test]
fn starttls_client_bounds_a_reply_in_lines_and_in_time() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    // (lines sent at once, then one line every 100 ms; --timeout; the failure expected)
    let cases = [
        (
            100_000,
            "30",
            "starttls-client: the reply to the greeting has more than 100 lines",
        ),
        (
            1,
            "1",
            "starttls-client: timed out: no complete reply to the greeting within 1 s (see --timeout)",
        ),
    ];
    for (burst, timeout, expected) in cases {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port().to_string();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let burst: String = (0..burst).map(|n| format!("220-line {n}\r\n")).collect();
            if stream.write_all(burst.as_bytes()).is_err() {
                return;
            }
            // A trickle, bounded: 10 s at most, or until the client has gone.
            for n in 0..100 {
                std::thread::sleep(Duration::from_millis(100));
                if stream
                    .write_all(format!("220-slow {n}\r\n").as_bytes())
                    .is_err()
                {
                    return;
                }
            }
        });
        let started = Instant::now();
        let client = Process::run(CLIENT, ["127.0.0.1", &port, "--timeout", timeout]);
        let waited = started.elapsed();
        assert_eq!(client.status.code(), Some(1), "{:?}", client.stderr);
        assert_eq!(client.stderr, [expected], "after {waited:?}");
        assert!(
            client.stdout.len() <= 100,
            "{} lines printed",
            client.stdout.len()
        );
        // Well before the server's trickle ends (10 s).
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        server.join().unwrap();
    }
}
