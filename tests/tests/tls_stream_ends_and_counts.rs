//! How our TLS client's reads end, and what its channels count, against a rustls server driven
//! by hand on a raw TCP stream (TLS 1.3 and TLS 1.2), so that the test decides which records
//! reach the client in which segments:
//!
//! - application data the server sends after its `close_notify` (in the same segment, or in a
//!   later one) is never read: the line, then a clean end, again and again (RFC 8446 §6.1:
//!   "Any data received after a closure alert has been received MUST be ignored");
//! - a line, then part of the next record, then the FIN without `close_notify`: the line, then
//!   `Truncated` (typed), and the same again;
//! - `total_bytes_read` and `total_bytes_written` count plaintext (what the application read
//!   and wrote), not the records' bytes;
//! - against a real peer, python3's `ssl` (OpenSSL), TLS 1.3 and 1.2: 1 MiB, then the stream's
//!   end without `close_notify`: every byte, then `Truncated`.

use std::io::Write as _;
use std::sync::Arc;

use net_io::LineEnding;
use net_sockets::SelectorManager;
use net_tests::pki::TestCa;
use net_tests::tls::{hand_server, records};
use net_tests::tls::{is_truncated, provider};
use net_tests::within;
use net_tls::rustls::{self, ServerConfig, ServerConnection, SupportedProtocolVersion};
use net_tls::{TlsSocket, TlsVersion};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// `conn`'s records for `plaintext`.
fn data(conn: &mut ServerConnection, plaintext: &[u8]) -> Vec<u8> {
    conn.set_buffer_limit(None);
    conn.writer().write_all(plaintext).unwrap();
    records(conn)
}

/// Our TLS client connected to a rustls server of `version` driven by hand, past the
/// handshake, with no session tickets: (our client, the server's raw stream, its session).
async fn hand_server_of(
    selector: &SelectorManager,
    ca: &TestCa,
    version: &'static SupportedProtocolVersion,
) -> (TlsSocket, tokio::net::TcpStream, ServerConnection) {
    let leaf = ca.server(&["localhost"]);
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(leaf.chain_der().to_vec(), leaf.key_der())
        .unwrap();
    config.send_tls13_tickets = 0;
    let (client, tcp, conn) = hand_server(selector, ca, Arc::new(config), None).await;
    // Each write leaves at once (no Nagle wait for our ACK): bytes written before one of our
    // reads have arrived when it runs.
    tcp.set_nodelay(true).unwrap();
    (client, tcp, conn)
}

/// Returns once `socket`'s kernel socket holds bytes not read yet (polled every millisecond).
async fn until_held(socket: &TlsSocket) {
    loop {
        let held = socket
            .with_sock_ref(|s| s.peek(&mut [std::mem::MaybeUninit::uninit(); 1]))
            .is_ok_and(|n| n > 0);
        if held {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// The versions each test runs with: rustls's, and what our `protocol_version()` says of it.
const VERSIONS: [(&SupportedProtocolVersion, TlsVersion); 2] = [
    (&rustls::version::TLS13, TlsVersion::Tls13),
    (&rustls::version::TLS12, TlsVersion::Tls12),
];

/// The server sends a line, `close_notify`, then a line of application data in a valid record
/// (in the same segment, or in a later one): our client reads the first line, then a clean
/// end, every time; the second line never.
#[tokio::test]
async fn data_after_the_peers_close_notify_is_never_read() {
    for (version, expected) in VERSIONS {
        for same_segment in [true, false] {
            let what = format!("{expected:?}, same segment: {same_segment}");
            let selector = SelectorManager::new();
            let ca = TestCa::new("data after close_notify");
            let (mut client, mut tcp, mut conn) = hand_server_of(&selector, &ca, version).await;
            assert_eq!(client.protocol_version(), Some(expected));
            let mut input = client.open_read_channel().unwrap();
            let mut bytes = data(&mut conn, b"hello\n");
            conn.send_close_notify();
            bytes.extend(records(&mut conn));
            let after = data(&mut conn, b"after close_notify\n");
            assert!(
                !after.is_empty(),
                "{what}: rustls made the record after close_notify"
            );
            if same_segment {
                bytes.extend(&after);
            }
            tcp.write_all(&bytes).await.unwrap();
            let line = within(input.read_line(64, LineEnding::Default)).await;
            assert_eq!(line.unwrap().as_deref(), Some("hello"), "{what}");
            if !same_segment {
                tcp.write_all(&after).await.unwrap();
                // In our socket before the read that finds the end (which throws it away):
                // bytes that come after our socket closed would be answered with a reset.
                within(until_held(&client)).await;
            }
            for _ in 0..3 {
                let end = within(input.read_line(64, LineEnding::Default)).await;
                assert_eq!(end.unwrap(), None, "{what}: the server's close_notify");
            }
            assert_eq!(input.total_bytes_read(), 6, "{what}");
            // Our write side ends too: the socket closes itself, and reads still end cleanly.
            let mut output = client.open_write_channel(true).unwrap();
            within(output.flush_and_close()).await.unwrap();
            let end = within(input.read_line(64, LineEnding::Default)).await;
            assert_eq!(end.unwrap(), None, "{what}: after our flush_and_close");
            let mut rest = Vec::new();
            let read = within(tcp.read_to_end(&mut rest)).await;
            assert!(read.is_ok(), "{what}: {read:?} after {} bytes", rest.len());
            let mut slice = &rest[..];
            while !slice.is_empty() {
                conn.read_tls(&mut slice).unwrap();
            }
            let state = conn.process_new_packets().unwrap();
            assert!(state.peer_has_closed(), "{what}: our close_notify");
            drop(input);
            drop(client);
            selector.close();
        }
    }
}

/// The server sends a line, then the first half of the next record, then its FIN without
/// `close_notify`: our client reads the line, then fails with `Truncated`, and again after.
#[tokio::test]
async fn a_fin_in_the_middle_of_a_record_is_a_truncation_after_the_line() {
    for (version, expected) in VERSIONS {
        let selector = SelectorManager::new();
        let ca = TestCa::new("fin in a record");
        let (mut client, mut tcp, mut conn) = hand_server_of(&selector, &ca, version).await;
        let mut input = client.open_read_channel().unwrap();
        let mut bytes = data(&mut conn, b"hello\n");
        let next = data(&mut conn, b"the line cut short\n");
        bytes.extend(&next[..next.len() / 2]);
        tcp.write_all(&bytes).await.unwrap();
        tcp.shutdown().await.unwrap();
        let line = within(input.read_line(64, LineEnding::Default)).await;
        assert_eq!(line.unwrap().as_deref(), Some("hello"), "{expected:?}");
        for _ in 0..2 {
            let end = within(input.read_line(64, LineEnding::Default)).await;
            let e = end.expect_err("a truncation");
            assert!(is_truncated(&e), "{expected:?}: {e:?}");
        }
        assert_eq!(input.total_bytes_read(), 6, "{expected:?}");
        drop(input);
        drop(client);
        selector.close();
    }
}

/// What the application wrote and read, counted in plaintext bytes, whatever the records
/// around them: 100 KiB each way (many records), counted the same on both sides.
#[tokio::test]
async fn total_bytes_count_plaintext_not_records() {
    const LEN: usize = 100 * 1024;
    for (version, expected) in VERSIONS {
        let selector = SelectorManager::new();
        let ca = TestCa::new("plaintext counts");
        let (client, mut tcp, mut conn) = hand_server_of(&selector, &ca, version).await;
        let mut connection = client.connection().unwrap();
        let sent = data(&mut conn, &vec![b's'; LEN]);
        assert!(
            sent.len() > LEN,
            "{expected:?}: records are longer than their plaintext"
        );
        tcp.write_all(&sent).await.unwrap();
        let mut buf = vec![0u8; LEN];
        within(connection.input.read_fully(&mut buf)).await.unwrap();
        assert_eq!(
            connection.input.total_bytes_read(),
            LEN as u64,
            "{expected:?}"
        );

        within(connection.output.write_fully(&vec![b'c'; LEN]))
            .await
            .unwrap();
        within(connection.output.flush()).await.unwrap();
        assert_eq!(
            connection.output.total_bytes_written(),
            LEN as u64,
            "{expected:?}"
        );
        // The server gets every byte, in more bytes of records.
        let mut received = 0;
        let mut raw = 0;
        let mut chunk = vec![0u8; 64 * 1024];
        within(async {
            while received < LEN {
                let n = tcp.read(&mut chunk).await.unwrap();
                assert!(n > 0, "{expected:?}: the end after {received} bytes");
                raw += n;
                let mut slice = &chunk[..n];
                while !slice.is_empty() {
                    conn.read_tls(&mut slice).unwrap();
                    let state = conn.process_new_packets().unwrap();
                    let mut plain = vec![0u8; state.plaintext_bytes_to_read()];
                    std::io::Read::read_exact(&mut conn.reader(), &mut plain).unwrap();
                    received += plain.len();
                }
            }
        })
        .await;
        assert_eq!(received, LEN, "{expected:?}");
        assert!(raw > LEN, "{expected:?}: {raw} bytes of records");
        assert_eq!(connection.input.total_bytes_read(), LEN as u64);
        assert_eq!(connection.output.total_bytes_written(), LEN as u64);
        drop(connection);
        selector.close();
    }
}

/// A python3 `ssl` server (OpenSSL) of the version given: for each connection it sends
/// the given number of bytes, then shuts its stream down without `close_notify`, and reads to
/// our end; it prints `listening at 127.0.0.1:PORT` first. One connection.
const PYTHON_TRUNCATING: &str = r#"
import socket, ssl, sys
chain, key, version, length = sys.argv[1:5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(chain, key)
v = ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2
ctx.minimum_version = v
ctx.maximum_version = v
server = socket.create_server(("127.0.0.1", 0))
print("listening at 127.0.0.1:%d" % server.getsockname()[1], flush=True)
raw, _ = server.accept()
tls = ctx.wrap_socket(raw, server_side=True)
tls.sendall(b"t" * int(length))
# An SSLSocket's shutdown drops the TLS session and shuts the TCP stream down, sending no
# close_notify; what it reads then is the raw stream.
tls.shutdown(socket.SHUT_WR)
# Waits for our end, so that its close cannot be a reset of what it sent.
while tls.recv(65536):
    pass
tls.close()
"#;

/// Against a real peer, python3's `ssl` (OpenSSL), TLS 1.3 and TLS 1.2: a server that sends
/// 1 MiB and ends its stream without `close_notify`. Our client reads every byte, then
/// `Truncated` (typed), never a clean end, and `total_bytes_read` is the plaintext's length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_python_ssl_a_stream_ended_without_close_notify_is_read_whole_then_truncated() {
    use net_tests::harness::{Process, path_arg, port_at_end};
    const LEN: usize = 1024 * 1024;
    let pki = net_tests::pki::Pki::generate();
    let files = pki.temp_files();
    for (version, expected) in [("1.3", TlsVersion::Tls13), ("1.2", TlsVersion::Tls12)] {
        let length = LEN.to_string();
        let mut python = Process::start(
            "python3",
            [
                "-c",
                PYTHON_TRUNCATING,
                path_arg(&files.server_chain),
                path_arg(&files.server_key),
                version,
                &length,
            ],
        );
        let port = port_at_end(&tokio::task::block_in_place(|| python.stdout_line()));
        let selector = SelectorManager::new();
        let config = pki.client_config().build().unwrap();
        let mut tls = within(net_tests::tls::connect(
            &selector,
            "localhost",
            port,
            config,
        ))
        .await
        .unwrap();
        assert_eq!(tls.protocol_version(), Some(expected));
        let mut input = tls.open_read_channel().unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut read = 0;
        let end = within(async {
            loop {
                match input.read_available(&mut buf).await {
                    Ok(0) => return None,
                    Ok(n) => {
                        assert!(buf[..n].iter().all(|&b| b == b't'), "{expected:?}");
                        read += n;
                    }
                    Err(e) => return Some(e),
                }
            }
        })
        .await;
        assert_eq!(read, LEN, "{expected:?}: {end:?}");
        let e = end.unwrap_or_else(|| panic!("{expected:?}: a clean end without close_notify"));
        assert!(is_truncated(&e), "{expected:?}: {e:?}");
        let again = within(input.read_available(&mut buf)).await;
        assert!(
            again.as_ref().is_err_and(is_truncated),
            "{expected:?}: {again:?}"
        );
        assert_eq!(input.total_bytes_read(), LEN as u64, "{expected:?}");
        drop(input);
        tls.close();
        let exit = tokio::task::block_in_place(|| python.finish());
        assert!(exit.status.success(), "{exit:?}");
        selector.close();
    }
}
