//! `tcp-proxy` end to end: `curl` through it to Python's `http.server`, with and without TLS
//! termination; half-closes each way; the PROXY v2 header it sends upstream; and its
//! connection cap.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use net_tests::harness::{Process, path_arg};
use net_tests::pki::Pki;
use net_tests::{HANG_LIMIT, TempDir};

const PROXY: &str = env!("CARGO_BIN_EXE_tcp-proxy");

/// `tcp-proxy 127.0.0.1:0 127.0.0.1:UPSTREAM EXTRA...` and the port it listens on.
fn start_proxy(upstream: u16, extra: &[&str]) -> (Process, u16) {
    let upstream = format!("127.0.0.1:{upstream}");
    let mut args = vec!["127.0.0.1:0", upstream.as_str()];
    args.extend_from_slice(extra);
    let mut proxy = Process::start(PROXY, args);
    let port = proxy.listening_port_after_banner();
    (proxy, port)
}

/// Python's `http.server` serving `dir` on 127.0.0.1 and a free port, once it listens.
fn http_server(dir: &TempDir) -> (Process, u16) {
    let dir = path_arg(dir.path());
    let mut python = Process::start(
        "python3",
        [
            "-u",
            "-m",
            "http.server",
            "0",
            "--bind",
            "127.0.0.1",
            "--directory",
            dir,
        ],
    );
    let line = python.stdout_line_where("serving line", |l| l.starts_with("Serving HTTP on "));
    let port = line
        .split_whitespace()
        .nth(5)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    (python, port)
}

/// A directory with `hello.txt` and a 1 MiB `big.bin`.
fn site() -> TempDir {
    let dir = TempDir::new("proxy-site");
    dir.write("hello.txt", "hello through the proxy\n");
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    dir.write("big.bin", big);
    dir
}

/// Runs `curl ARGS` (silent, with errors shown, bounded): (success, stdout lines, stderr).
fn curl(args: &[&str]) -> (bool, Vec<String>, Vec<String>) {
    let mut all = vec!["-sS", "--max-time", "20"];
    all.extend_from_slice(args);
    let curl = Process::run("curl", all);
    (curl.status.success(), curl.stdout, curl.stderr)
}

/// Waits for the proxy's line about a finished connection and returns (up, down) bytes.
fn connection_line(proxy: &mut Process) -> (u64, u64) {
    let line = proxy.stdout_line_where("a connection line", |l| l.ends_with(" bytes down"));
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(line.starts_with("127.0.0.1:"), "{line}");
    assert_eq!(numbers.len(), 2, "{line}");
    (numbers[0], numbers[1])
}

#[test]
fn curl_through_the_proxy_to_python_http_server() {
    let site = site();
    let (_python, upstream) = http_server(&site);
    let (mut proxy, port) = start_proxy(upstream, &[]);

    let url = format!("http://127.0.0.1:{port}/hello.txt");
    let (ok, stdout, stderr) = curl(&[&url]);
    assert!(ok, "{stderr:?}");
    assert_eq!(stdout, ["hello through the proxy"]);
    let (up, down) = connection_line(&mut proxy);
    assert!(up > 50, "the request went up: {up}");
    assert!(down > 24, "the response came down: {down}");

    let url = format!("http://127.0.0.1:{port}/big.bin");
    let (ok, stdout, stderr) = curl(&["-o", "/dev/null", "-w", "%{size_download}", &url]);
    assert!(ok, "{stderr:?}");
    assert_eq!(stdout, ["1048576"]);
    let (_, down) = connection_line(&mut proxy);
    assert!(down > 1_048_576, "{down}");
}

#[test]
fn curl_through_the_proxy_terminating_tls() {
    let site = site();
    let files = Pki::generate().temp_files();
    let (chain, key, ca) = (
        path_arg(&files.server_chain),
        path_arg(&files.server_key),
        path_arg(&files.ca),
    );
    let (_python, upstream) = http_server(&site);
    let (mut proxy, port) = start_proxy(upstream, &["--tls-cert", chain, "--tls-key", key]);

    let resolve = format!("localhost:{port}:127.0.0.1");
    let url = format!("https://localhost:{port}/hello.txt");
    let (ok, stdout, stderr) = curl(&["--cacert", ca, "--resolve", &resolve, &url]);
    assert!(ok, "{stderr:?}");
    assert_eq!(stdout, ["hello through the proxy"]);
    connection_line(&mut proxy);

    let url = format!("https://localhost:{port}/big.bin");
    let (ok, stdout, stderr) = curl(&[
        "--cacert",
        ca,
        "--resolve",
        &resolve,
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        &url,
    ]);
    assert!(ok, "{stderr:?}");
    assert_eq!(stdout, ["1048576"]);

    // Without the CA, curl refuses the proxy's certificate.
    let (ok, _, stderr) = curl(&["--resolve", &resolve, &url]);
    assert!(!ok);
    assert!(
        stderr.iter().any(|l| l.contains("certificate")),
        "{stderr:?}"
    );
}

/// A one-connection upstream server on a thread: `serve` gets the accepted stream; its result
/// comes back through the handle.
fn upstream<T: Send + 'static>(
    serve: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> (u16, JoinHandle<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(HANG_LIMIT)).unwrap();
        serve(stream)
    });
    (port, handle)
}

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(HANG_LIMIT)).unwrap();
    stream
}

#[test]
fn a_client_that_sends_then_shuts_down_its_write_side_gets_the_whole_response() {
    // The upstream reads the request to its end (it sees the client's half-close through the
    // proxy), then answers at length and closes.
    let (up_port, server) = upstream(|mut stream| {
        let mut request = Vec::new();
        stream.read_to_end(&mut request).unwrap();
        let mut response = format!("received {} bytes\n", request.len()).into_bytes();
        response.extend(std::iter::repeat_n(b'r', 300_000));
        stream.write_all(&response).unwrap();
        request.len()
    });
    let (mut proxy, port) = start_proxy(up_port, &[]);
    let mut client = connect(port);
    client.write_all(&vec![b'q'; 100_000]).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut response = Vec::new();
    client.read_to_end(&mut response).unwrap();
    assert_eq!(server.join().unwrap(), 100_000);
    assert!(response.starts_with(b"received 100000 bytes\n"));
    assert_eq!(response.len(), "received 100000 bytes\n".len() + 300_000);
    assert_eq!(
        connection_line(&mut proxy),
        (100_000, response.len() as u64)
    );
}

#[test]
fn an_upstream_that_shuts_down_its_write_side_still_gets_what_the_client_sends() {
    // The upstream says hello and half-closes at once, then reads the client's bytes to
    // their end.
    let (up_port, server) = upstream(|mut stream| {
        stream.write_all(b"hello, then FIN\n").unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut request = Vec::new();
        stream.read_to_end(&mut request).unwrap();
        request
    });
    let (mut proxy, port) = start_proxy(up_port, &[]);
    let mut client = connect(port);
    let mut greeting = Vec::new();
    client.read_to_end(&mut greeting).unwrap();
    assert_eq!(greeting, b"hello, then FIN\n");
    // After that end of stream, the client's direction still works.
    client.write_all(b"late words\n").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(server.join().unwrap(), b"late words\n");
    assert_eq!(connection_line(&mut proxy), (11, 16));
}

#[test]
fn send_proxy_v2_tells_upstream_the_clients_address() {
    let (up_port, server) = upstream(|mut stream| {
        let mut fixed = [0u8; 16];
        stream.read_exact(&mut fixed).unwrap();
        let mut addresses = vec![0u8; usize::from(u16::from_be_bytes([fixed[14], fixed[15]]))];
        stream.read_exact(&mut addresses).unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
        stream.write_all(&rest).unwrap();
        (fixed, addresses, rest)
    });
    let (_proxy, port) = start_proxy(up_port, &["--send-proxy-v2"]);
    let mut client = connect(port);
    let client_port = client.local_addr().unwrap().port();
    client.write_all(b"payload").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut echoed = Vec::new();
    client.read_to_end(&mut echoed).unwrap();
    assert_eq!(echoed, b"payload");

    let (fixed, addresses, rest) = server.join().unwrap();
    assert_eq!(&fixed[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!(&fixed[12..16], &[0x21, 0x11, 0x00, 0x0C]);
    let mut expected = vec![127, 0, 0, 1, 127, 0, 0, 1];
    expected.extend_from_slice(&client_port.to_be_bytes());
    expected.extend_from_slice(&port.to_be_bytes());
    assert_eq!(addresses, expected);
    assert_eq!(rest, b"payload");
}

#[test]
fn max_connections_holds_new_clients_until_a_place_frees() {
    // An echo upstream for each connection, telling the test when it accepts one.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_port = listener.local_addr().unwrap().port();
    let (accepted, accepts) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(2) {
            let mut stream = stream.unwrap();
            accepted.send(()).unwrap();
            std::thread::spawn(move || {
                let mut reader = stream.try_clone().unwrap();
                let _ = std::io::copy(&mut reader, &mut stream);
                let _ = stream.shutdown(Shutdown::Write);
            });
        }
    });
    let (_proxy, port) = start_proxy(up_port, &["--max-connections", "1"]);

    let mut first = connect(port);
    first.write_all(b"1").unwrap();
    let mut byte = [0u8; 1];
    first.read_exact(&mut byte).unwrap();
    accepts.recv_timeout(HANG_LIMIT).unwrap();

    // The second waits in the backlog: nothing reaches upstream while the first is open (a
    // bounded wait: time is the behaviour here).
    let mut second = connect(port);
    second.write_all(b"2").unwrap();
    assert!(accepts.recv_timeout(Duration::from_millis(500)).is_err());

    first.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    first.read_to_end(&mut rest).unwrap();
    accepts.recv_timeout(HANG_LIMIT).unwrap();
    second.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"2");
}

/// What a reader of `stream` sees after the bytes it already has: `Ok(n)` for a clean end of
/// stream after `n` more bytes, or the error (a reset).
async fn rest_of(mut stream: tokio::net::TcpStream) -> std::io::Result<usize> {
    use tokio::io::AsyncReadExt;
    let mut rest = Vec::new();
    tokio::time::timeout(HANG_LIMIT, stream.read_to_end(&mut rest))
        .await
        .expect("the connection ends")
}

/// A reset on one side is never passed on as a clean end of stream (which would make a cut
/// request or response look complete): the proxy resets the other side too. So does a client
/// whose upstream cannot be reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_on_either_side_reaches_the_other_as_a_reset_never_a_clean_end() {
    use std::io::ErrorKind::ConnectionReset;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    // The upstream's port stays ours: when its listener stops, connects there are refused.
    let upstream_port = net_tests::loopback::RefusingPort::new();
    let listener = TcpListener::from_std(upstream_port.listen()).unwrap();
    let (mut proxy, port) = start_proxy(upstream_port.port(), &[]);

    // The client resets in the middle of its request, once the upstream has the first half.
    let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut upstream, _) = listener.accept().await.unwrap();
    client.write_all(b"half a request").await.unwrap();
    upstream.read_exact(&mut [0; 14]).await.unwrap();
    net_tests::fault::reset(client);
    let end = rest_of(upstream).await;
    assert_eq!(end.map_err(|e| e.kind()), Err(ConnectionReset));
    proxy.stdout_line_where("the first connection's end", |l| l.contains("reset"));

    // The upstream resets in the middle of its response, once the client has the first half.
    let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut upstream, _) = listener.accept().await.unwrap();
    upstream.write_all(b"half a response").await.unwrap();
    client.read_exact(&mut [0; 15]).await.unwrap();
    net_tests::fault::reset(upstream);
    let end = rest_of(client).await;
    assert_eq!(end.map_err(|e| e.kind()), Err(ConnectionReset));
    proxy.stdout_line_where("the second connection's end", |l| l.contains("reset"));

    // Nobody listens upstream any more: the client is reset, not shown a clean end (the reset
    // can come before the connect has reported success: then the connect reports it). The
    // listener stops listening, also in a copy of its descriptor that a parallel test's child
    // holds until its `exec` (a plain drop left it listening there, and the proxy's connect
    // succeeded, then was reset).
    net_tests::loopback::stop_listening(&listener);
    drop(listener);
    let end = match TcpStream::connect(("127.0.0.1", port)).await {
        Ok(client) => rest_of(client).await,
        Err(e) => Err(e),
    };
    assert_eq!(end.map_err(|e| e.kind()), Err(ConnectionReset));
    proxy.stdout_line_where("the third connection's end", |l| {
        l.ends_with("cannot connect upstream: Connection refused (os error 111)")
    });
}

/// With TLS terminated at the proxy, a client whose session ends without `close_notify` (a
/// truncation) gets its upstream reset, not shown a clean end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_cut_without_close_notify_resets_the_upstream() {
    use net_tests::tls::{localhost, rustls_client};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let pki = Pki::generate();
    let files = pki.temp_files();
    let (chain, key) = (path_arg(&files.server_chain), path_arg(&files.server_key));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_port = listener.local_addr().unwrap().port();
    let (mut proxy, port) = start_proxy(up_port, &["--tls-cert", chain, "--tls-key", key]);

    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(rustls_client(&pki.ca));
    let mut tls = connector.connect(localhost(), tcp).await.unwrap();
    let (mut upstream, _) = listener.accept().await.unwrap();
    tls.write_all(b"half a request").await.unwrap();
    tls.flush().await.unwrap();
    upstream.read_exact(&mut [0; 14]).await.unwrap();
    // The TCP connection ends (FIN) without TLS's `close_notify`.
    let (tcp, _) = tls.into_inner();
    drop(tcp);
    let end = rest_of(upstream).await;
    assert_eq!(
        end.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset)
    );
    proxy.stdout_line_where("the connection's end", |l| l.starts_with("127.0.0.1:"));
}

/// Whether `result`, what a blocking read or write (bounded by [`HANG_LIMIT`]) came to, is the
/// end of the connection (end of stream, a reset, a broken pipe), not the hang guard firing.
fn ended<T: std::fmt::Debug>(result: &std::io::Result<T>) -> bool {
    use std::io::ErrorKind::{TimedOut, WouldBlock};
    !matches!(result, Err(e) if matches!(e.kind(), WouldBlock | TimedOut))
}

/// A client that connects and sends nothing, with an upstream that sends nothing either, is
/// closed after `--idle-timeout`, and so is its upstream connection; the proxy says why.
#[test]
fn a_silent_connection_is_closed_on_both_sides_after_the_idle_timeout() {
    let (up_port, server) = upstream(|mut stream| {
        let mut rest = Vec::new();
        let end = stream.read_to_end(&mut rest);
        (ended(&end), rest.len())
    });
    let (mut proxy, port) = start_proxy(up_port, &["--idle-timeout", "1"]);
    let mut client = connect(port);
    let client_port = client.local_addr().unwrap().port();
    let mut rest = Vec::new();
    let end = client.read_to_end(&mut rest);
    assert!(ended(&end), "the client was not closed: {end:?}");
    assert!(rest.is_empty());
    assert_eq!(
        server.join().unwrap(),
        (true, 0),
        "the upstream was not closed"
    );
    let line = proxy.stdout_line_where("the connection's end", |l| {
        l.starts_with(&format!("127.0.0.1:{client_port} -> "))
    });
    assert!(line.ends_with("timed out"), "{line}");
}

/// An upstream that takes nothing while the client sends (a write that makes no progress) gets
/// the connection closed after `--idle-timeout`, the client's side too.
#[test]
fn an_upstream_that_takes_nothing_is_closed_with_its_client_after_the_idle_timeout() {
    let (stalled, stall) = mpsc::channel::<()>();
    let (up_port, server) = upstream(move |mut stream| {
        // Reads nothing until the client has seen its end; then what is left ends too.
        stall.recv_timeout(HANG_LIMIT).unwrap();
        let mut rest = Vec::new();
        ended(&stream.read_to_end(&mut rest))
    });
    let (mut proxy, port) = start_proxy(up_port, &["--idle-timeout", "1"]);
    let mut client = connect(port);
    client.set_write_timeout(Some(HANG_LIMIT)).unwrap();
    let client_port = client.local_addr().unwrap().port();
    // More than every buffer on the way holds: the writes stop making progress, until the
    // proxy closes the connection.
    let chunk = vec![b'w'; 64 * 1024];
    let mut written = 0usize;
    let failed = loop {
        if let Err(e) = client.write_all(&chunk) {
            break e;
        }
        written += chunk.len();
        assert!(written < 1 << 30, "a gigabyte went into a stalled upstream");
    };
    assert!(ended::<()>(&Err(failed)), "the client was not closed");
    stalled.send(()).unwrap();
    assert!(server.join().unwrap(), "the upstream was not closed");
    let line = proxy.stdout_line_where("the connection's end", |l| {
        l.starts_with(&format!("127.0.0.1:{client_port} -> "))
    });
    assert!(line.ends_with("timed out"), "{line}");
}

/// A connection where bytes keep moving one way is not idle, however long the other way stays
/// silent: a client that sent its request and only reads a slow answer for longer than
/// `--idle-timeout` gets all of it.
#[test]
fn a_slow_answer_to_a_silent_client_outlasts_the_idle_timeout() {
    let (up_port, server) = upstream(|mut stream| {
        let mut request = [0u8; 4];
        stream.read_exact(&mut request).unwrap();
        // A line every 300 ms for 2.1 s: more than the idle timeout in all, never that long
        // without a byte (the pace is the behaviour here).
        for i in 0..7 {
            stream.write_all(format!("part {i}\n").as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
        }
        request
    });
    let (mut proxy, port) = start_proxy(up_port, &["--idle-timeout", "1"]);
    let mut client = connect(port);
    client.write_all(b"GET\n").unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(server.join().unwrap(), *b"GET\n");
    let expected: String = (0..7).map(|i| format!("part {i}\n")).collect();
    assert_eq!(answer, expected);
    assert_eq!(connection_line(&mut proxy), (4, expected.len() as u64));
}

/// SIGTERM (or Ctrl-C) in the middle of a transfer is not passed on as a clean end either:
/// the proxy resets both sides of every open connection, so that the client never takes a cut
/// response for a whole one, and exits 0.
#[test]
fn a_signal_in_the_middle_of_a_transfer_resets_both_sides_never_a_clean_end() {
    use std::io::ErrorKind::ConnectionReset;
    for signal in ["TERM", "INT"] {
        let (sent, sent_there) = mpsc::channel();
        let (upstream_port, upstream) = upstream(move |mut stream| {
            stream.write_all(b"half a response").unwrap();
            sent.send(()).unwrap();
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).map_err(|e| e.kind())
        });
        let (mut proxy, port) = start_proxy(upstream_port, &[]);
        let mut client = connect(port);
        sent_there.recv_timeout(HANG_LIMIT).unwrap();
        client.read_exact(&mut [0; 15]).unwrap();

        proxy.signal(signal);
        let mut rest = Vec::new();
        let end = client.read_to_end(&mut rest).map_err(|e| e.kind());
        assert_eq!(end, Err(ConnectionReset), "SIG{signal}: the client's end");
        let end = upstream.join().unwrap();
        assert_eq!(end, Err(ConnectionReset), "SIG{signal}: the upstream's end");
        let finished = proxy.finish();
        assert!(finished.status.success(), "SIG{signal}: {finished:?}");
    }
}

/// Every address the proxy prints can be pasted back into a command line: an IPv6 one in
/// brackets (`[::1]:8080`), the upstream as the listening address and the connection's line.
#[test]
fn ipv6_addresses_are_printed_in_brackets() {
    let listener = TcpListener::bind("[::1]:0").unwrap();
    let upstream = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.write_all(b"hi\n").unwrap();
        // Dropped: a clean end, passed on to the client.
    });
    let upstream_arg = format!("[::1]:{upstream}");
    let mut proxy = Process::start(PROXY, ["[::1]:0", &upstream_arg]);
    assert_eq!(
        proxy.stdout_line(),
        format!("Forwarding to [::1]:{upstream}")
    );
    let listening = proxy.stdout_line();
    assert!(
        listening.starts_with("Proxy is listening at [::1]:"),
        "{listening}"
    );
    let port = net_tests::harness::port_at_end(&listening);

    let mut client = TcpStream::connect(("::1", port)).unwrap();
    client.set_read_timeout(Some(HANG_LIMIT)).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"hi\n");
    server.join().unwrap();
    let line = proxy.stdout_line();
    let client_port = client.local_addr().unwrap().port();
    assert_eq!(
        line,
        format!("[::1]:{client_port} -> [::1]:{upstream}: 0 bytes up, 3 bytes down")
    );

    // The address it cannot listen at, too (taken by the proxy above).
    let listen_arg = format!("[::1]:{port}");
    let taken = Process::run(PROXY, [listen_arg.as_str(), &upstream_arg]);
    let failure = taken.failure_line();
    assert!(
        failure.starts_with(&format!("tcp-proxy: cannot listen at [::1]:{port}: ")),
        "{failure}"
    );
}

/// An UPSTREAM that is the proxy's own listening address (the same address, a name that
/// resolves to it, or a loopback address when it listens on every address) would make every
/// connection connect to the proxy again, and that one again, until the descriptors run out:
/// the proxy refuses to start, with one line saying why. The same port on another address is
/// not the proxy and is accepted.
#[test]
fn an_upstream_that_is_the_proxy_itself_is_refused_at_start() {
    let port = net_tests::harness::free_port();
    let at = |host: &str| format!("{host}:{port}");
    let cases = [
        (at("127.0.0.1"), at("127.0.0.1")),
        (at("127.0.0.1"), at("localhost")),
        (at("0.0.0.0"), at("127.0.0.1")),
        (at("0.0.0.0"), at("127.0.0.2")),
    ];
    for (listen, upstream) in cases {
        let finished = Process::run(PROXY, [listen.as_str(), upstream.as_str()]);
        assert_eq!(finished.status.code(), Some(1), "{finished:?}");
        let line = finished.stderr.last().map(String::as_str).unwrap_or("");
        let expected = format!(
            "tcp-proxy: upstream {upstream} is this proxy's own listening address: \
             every connection would come back to the proxy"
        );
        assert!(
            line.starts_with(&expected),
            "{listen} {upstream}: {finished:?}"
        );
    }
    // Another address with the same port is another server.
    let mut proxy = Process::start(PROXY, [at("127.0.0.1"), at("127.0.0.2")]);
    assert_eq!(proxy.listening_port_after_banner(), port);
    proxy.kill();
}

/// An UPSTREAM whose name does not resolve when the proxy starts is worth a line at start (a
/// typo shows at once, not at the first client), but not a refusal: it may resolve later, so
/// the proxy listens, and each connection resolves it again and reports its own failure.
#[test]
fn an_upstream_that_does_not_resolve_at_start_is_reported_and_tried_again_per_connection() {
    let upstream = "no-such-host.invalid:80";
    let mut proxy = Process::start(PROXY, ["127.0.0.1:0", upstream]);
    let line = proxy.stdout_line_where("the warning", |l| l.starts_with("Upstream "));
    assert!(
        line.starts_with(&format!("Upstream {upstream} does not resolve now (")),
        "{line}"
    );
    assert!(line.ends_with("): each connection tries again"), "{line}");
    let port = proxy.listening_port_after_banner();
    // The client gets nothing, and the end (a reset: the other side failed).
    let mut client = connect(port);
    let mut rest = Vec::new();
    let read = client.read_to_end(&mut rest);
    assert!(ended(&read) && rest.is_empty(), "{read:?} {rest:?}");
    let failed = proxy.stdout_line_where("the connection's line", |l| l.contains(" -> "));
    assert!(failed.contains(&format!(" -> {upstream}: ")), "{failed}");
    proxy.kill();
}

/// A client still in its TLS handshake when the proxy stops is reset too, as the README says
/// of every open connection: it was counted in `Shutting down (1 open)`.
#[test]
fn a_signal_during_a_clients_tls_handshake_resets_that_client() {
    use std::io::ErrorKind::ConnectionReset;
    let pki = Pki::generate();
    let files = pki.temp_files();
    let (chain, key) = (path_arg(&files.server_chain), path_arg(&files.server_key));
    // Never reached: the client stops before its handshake ends.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = listener.local_addr().unwrap().port();
    let (mut proxy, port) = start_proxy(upstream, &["--tls-cert", chain, "--tls-key", key]);

    let config = net_tests::tls::rustls_client(&pki.ca);
    let name = "localhost".try_into().unwrap();
    let mut tls = tokio_rustls::rustls::ClientConnection::new(config, name).unwrap();
    let mut client = connect(port);
    client
        .write_all(&net_tests::tls::records(&mut tls))
        .unwrap();
    // The server's first flight: the proxy has accepted and is in the handshake.
    client.read_exact(&mut [0; 5]).unwrap();

    proxy.signal("TERM");
    assert_eq!(proxy.stdout_line(), "Shutting down (1 open)");
    let mut rest = Vec::new();
    let end = client.read_to_end(&mut rest).map_err(|e| e.kind());
    assert_eq!(end, Err(ConnectionReset), "the client's end");
    let finished = proxy.finish();
    assert!(finished.status.success(), "{finished:?}");
}
