//! The example clients show what a server sent as `net_io::PeerText` shows peer text: a hostile
//! server cannot clear the user's terminal (`ESC [2J`), write the clipboard (OSC 52), overwrite
//! a line with a bare CR, or reorder and break lines with bidi controls and Unicode separators.
//! Each test starts a small hostile server here, runs the client against it and checks the
//! exact output (escaped) and that no raw control character reached stdout. A tab, which the
//! chat server relays as ordinary text, stays a tab; so does the CRLF of an HTTP response.

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};

use net_io::LineEnding;
use net_sockets::{SelectorManager, a_socket};
use net_tests::HANG_LIMIT;
use net_tests::conversation::{line, send};
use net_tests::harness::{Process, RunOutput, path_arg, run_with_input};
use net_tests::pki::Pki;
use net_tests::tls::TlsTestServer;
use net_tls::TlsExt;

/// A hostile line: a screen clear, an OSC 52 clipboard write ended by BEL, a bare CR that
/// would put `Server closed` over the line's start, a right-to-left override, a line and a
/// paragraph separator, DEL, a NUL, a C1 CSI (U+009B) and a tab.
const HOSTILE: &str = "Please \u{1b}[2Jenter\u{1b}]52;c;aGk=\u{7}\rServer closed\u{202e}eman\u{2028}x\u{2029}y\u{7f}\0\u{9b}2J\tz";

/// [`HOSTILE`] as the clients show it.
const HOSTILE_SHOWN: &str = "Please \\u{1b}[2Jenter\\u{1b}]52;c;aGk=\\u{7}\\rServer closed\\u{202e}eman\\u{2028}x\\u{2029}y\\u{7f}\\0\\u{9b}2J\tz";

/// Text a well-behaved server sends: shown exactly as it came.
const PLAIN: &str = "Hello, Zo\u{eb} \u{5e9}\u{5dc}\u{5d5}\u{5dd} \"q\" \\ 100%!";

/// Panics if `text` has a character that could change what a terminal shows around it: a
/// control character other than LF and tab (and CR right before LF when `crlf` is allowed), a
/// line or paragraph separator, or a bidi control.
fn assert_no_raw_controls(text: &str, crlf: bool) {
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let allowed = c == '\n' || c == '\t' || (crlf && c == '\r' && chars.peek() == Some(&'\n'));
        assert!(
            allowed || !net_io::PeerText::escapes(c),
            "raw {c:?} in {text:?}"
        );
    }
}

/// A TCP server on 127.0.0.1 that sends `lines` to its one client, then closes its side and
/// reads until the client closes (so that the close is never a reset); its port.
fn tcp_server_sending(lines: Vec<u8>) -> (std::thread::JoinHandle<()>, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(HANG_LIMIT)).unwrap();
        stream.write_all(&lines).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let _ = stream.read_to_end(&mut Vec::new());
    });
    (server, port)
}

#[test]
fn sockets_client_escapes_what_the_server_sends() {
    let mut sent = format!("{HOSTILE}\n{PLAIN}\r\n").into_bytes();
    // Not UTF-8: shown as U+FFFD, as before.
    sent.extend_from_slice(b"bad \xff byte\n");
    let (server, port) = tcp_server_sending(sent);
    let RunOutput {
        status,
        stdout,
        stderr,
    } = run_with_input(
        env!("CARGO_BIN_EXE_sockets-client"),
        ["127.0.0.1", &port.to_string()],
        "",
    );
    server.join().unwrap();
    assert!(status.success(), "{stderr}");
    assert_eq!(
        stdout,
        format!("{HOSTILE_SHOWN}\n{PLAIN}\nbad \u{fffd} byte\nServer closed a connection\n")
    );
    assert_no_raw_controls(&stdout, false);
}

#[test]
fn udp_echo_client_escapes_the_reply() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(HANG_LIMIT)).unwrap();
    let port = socket.local_addr().unwrap().port();
    // The first reply is hostile (a LF in it too), the second an honest echo.
    let server = std::thread::spawn(move || {
        let mut buffer = [0; 2048];
        let (_, from) = socket.recv_from(&mut buffer).unwrap();
        let hostile = format!("{HOSTILE}\nforged line");
        socket.send_to(hostile.as_bytes(), from).unwrap();
        let (n, from) = socket.recv_from(&mut buffer).unwrap();
        socket.send_to(&buffer[..n], from).unwrap();
    });
    let RunOutput {
        status,
        stdout,
        stderr,
    } = run_with_input(
        env!("CARGO_BIN_EXE_udp-echo"),
        ["client", "127.0.0.1", &port.to_string()],
        &format!("one\n{PLAIN}\tend\n"),
    );
    server.join().unwrap();
    assert!(status.success(), "{stderr}");
    assert_eq!(
        stdout,
        format!("{HOSTILE_SHOWN}\\nforged line\n{PLAIN}\tend\n")
    );
    assert_no_raw_controls(&stdout, false);
}

/// `starttls-client` shows the server's lines escaped before and after the upgrade; a server
/// that answers with a hostile status line gets it quoted, escaped, in the one error line.
#[test]
fn starttls_client_escapes_the_server_lines() {
    let pki = Pki::generate();
    let files = pki.temp_files();
    let config = pki.server_config().build().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let selector = SelectorManager::new();
    let listener = runtime.block_on(async {
        a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap()
    });
    let port = listener.port().unwrap().to_string();
    let server = runtime.spawn(async move {
        let mut plain = listener.accept().await.unwrap().connection().unwrap();
        let (input, output) = (&mut plain.input, &mut plain.output);
        send(output, &format!("220 {HOSTILE}\r\n")).await;
        assert!(line(input).await.starts_with("EHLO "));
        send(output, &format!("250-{PLAIN}\r\n250 STARTTLS\r\n")).await;
        assert_eq!(line(input).await, "STARTTLS");
        send(output, "220 Go ahead\u{202e}\r\n").await;
        let mut secure = plain
            .tls_server(&config)
            .await
            .unwrap()
            .connection()
            .unwrap();
        let (input, output) = (&mut secure.input, &mut secure.output);
        assert!(line(input).await.starts_with("EHLO "));
        send(output, "250-x\u{1b}[H\u{1b}[2J\r\n250 SIZE\u{2029}1\r\n").await;
        assert_eq!(line(input).await, "NOOP");
        send(output, "250 OK\r\n").await;
        assert_eq!(line(input).await, "QUIT");
        send(output, "221 Bye\u{2028}\u{7}\r\n").await;
        let _ = secure.input.discard(u64::MAX).await;
    });
    let client = Process::run(
        env!("CARGO_BIN_EXE_starttls-client"),
        ["localhost", &port, "--ca", path_arg(&files.ca)],
    );
    runtime.block_on(server).unwrap();
    assert!(client.status.success(), "{:?}", client.stderr);
    let stdout = client.stdout.join("\n");
    assert_no_raw_controls(&stdout, false);
    let (before, after) = client.stdout.split_at(5);
    assert_eq!(
        before[..4],
        [
            format!("220 {HOSTILE_SHOWN}"),
            format!("250-{PLAIN}"),
            "250 STARTTLS".to_owned(),
            "220 Go ahead\\u{202e}".to_owned(),
        ]
    );
    assert!(before[4].starts_with("TLS: TLS 1.3"), "{before:?}");
    assert_eq!(
        after,
        [
            "250-x\\u{1b}[H\\u{1b}[2J",
            "250 SIZE\\u{2029}1",
            "250 OK",
            "221 Bye\\u{2028}\\u{7}"
        ]
    );

    // A refusal: its status line is quoted in the error, escaped.
    let (server, port) = tcp_server_sending(format!("554 {HOSTILE}\r\n").into_bytes());
    let refused = Process::run(
        env!("CARGO_BIN_EXE_starttls-client"),
        ["localhost", &port.to_string(), "--ca", path_arg(&files.ca)],
    );
    server.join().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(refused.stdout, [format!("554 {HOSTILE_SHOWN}")]);
    assert_eq!(refused.stderr.len(), 1, "{:?}", refused.stderr);
    assert_no_raw_controls(&refused.stderr[0], false);
    selector.close();
}

/// `sockets-client-tls` copies the response as it comes, but escaped: a CRLF stays (so an
/// honest response prints byte for byte as before), a bare CR, an escape sequence, a bidi
/// control or a separator does not; bytes that are not UTF-8 show as U+FFFD. The response comes
/// in pieces, so that a CRLF and a character are cut between two reads.
#[test]
fn tls_client_escapes_the_response_and_keeps_its_crlf() {
    let pki = Pki::with_server_names(&["localhost"]);
    let files = pki.temp_files();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = pki.server_config().build().unwrap();
    let _guard = runtime.enter();
    let selector = SelectorManager::new();
    let pieces: [&[u8]; 6] = [
        b"HTTP/1.1 200 OK\r",
        b"\nX-Evil: a\rb\x1b[2J\r\n\r\n",
        "hello \u{202e}dlrow\u{2028}x\u{1b}]52;c;aGk=\u{7}".as_bytes(),
        // An e with an acute accent, cut in two, then a byte that is not UTF-8.
        b"caf\xc3",
        b"\xa9 \xff\tend\r",
        // A C1 CSI (U+009B), and a CR at the very end with no LF after it.
        b"\n\xc2\x9b2J\r",
    ];
    let mut server = runtime.block_on(TlsTestServer::start(
        &selector,
        config,
        move |mut tls, reporter| async move {
            let mut input = tls.open_read_channel().unwrap();
            let mut output = tls.open_write_channel(false).unwrap();
            while let Ok(Some(line)) = input.read_line(1024, LineEnding::Default).await {
                if line.is_empty() {
                    break;
                }
            }
            for piece in pieces {
                output.write_fully(piece).await.unwrap();
                output.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
            output.flush_and_close().await.unwrap();
            tls.close();
            reporter.report(());
        },
    ));
    let port = server.port().to_string();
    let ca = path_arg(&files.ca);
    let exit = run_with_input(
        env!("CARGO_BIN_EXE_sockets-client-tls"),
        ["localhost", &port, "--ca", ca],
        "",
    );
    runtime.block_on(server.next()).unwrap();
    assert!(exit.status.success(), "{}", exit.stderr);
    assert_eq!(
        exit.stdout,
        "HTTP/1.1 200 OK\r\nX-Evil: a\\rb\\u{1b}[2J\r\n\r\n\
         hello \\u{202e}dlrow\\u{2028}x\\u{1b}]52;c;aGk=\\u{7}\
         caf\u{e9} \u{fffd}\tend\r\n\\u{9b}2J\\r"
    );
    assert_no_raw_controls(&exit.stdout, true);
    selector.close();
}
