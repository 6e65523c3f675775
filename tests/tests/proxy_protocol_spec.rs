//! The PROXY protocol at a listener, checked against what HAProxy's `doc/proxy-protocol.txt`
//! asks of a receiver: the lines and binary headers it must reject (each drops only its
//! connection), the ones it must accept (and what `remote_address` and `proxy_address` report
//! then), and the bytes after a header, which belong to the application whether they came in
//! the header's segment or after a header sent a byte at a time.
//!
//! The HAProxy cases need `haproxy` (`.ci/run` installs Debian's package when it is missing), as
//! `proxy_haproxy.rs` does.

use std::net::SocketAddr;
use std::time::Duration;

use net_sockets::{ProxyProtocol, SelectorManager, ServerSocket, SocketAddress, a_socket};
use net_tests::proxy::{inet_block, v2};
use net_tests::{payload, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn listener(mode: ProxyProtocol) -> (SelectorManager, ServerSocket, SocketAddr) {
    let selector = SelectorManager::new();
    let server = a_socket(&selector)
        .tcp()
        .proxy_protocol(mode)
        .proxy_header_timeout(Duration::from_secs(10))
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let address = SocketAddr::from(([127, 0, 0, 1], server.port().unwrap()));
    (selector, server, address)
}

/// The v2 address block of [2001:db8::7]:4242 -> [2001:db8::1]:9002.
fn inet6_block() -> Vec<u8> {
    let source: std::net::Ipv6Addr = "2001:db8::7".parse().unwrap();
    let destination: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
    let mut block = source.octets().to_vec();
    block.extend_from_slice(&destination.octets());
    block.extend_from_slice(&4242u16.to_be_bytes());
    block.extend_from_slice(&9002u16.to_be_bytes());
    block
}

/// Sends `bytes` on a new connection, then waits until the listener dropped it: the client
/// reads the end (or a reset) and nothing else, no `accept` hands it out, and the listener
/// counts one more failure.
async fn dropped(server: &ServerSocket, address: SocketAddr, what: &str, bytes: &[u8]) {
    let before = server.stats().proxy_header_failures;
    let mut client = TcpStream::connect(address).await.unwrap();
    client.write_all(bytes).await.unwrap();
    let mut rest = Vec::new();
    let accept = server.accept();
    tokio::pin!(accept);
    let read = tokio::select! {
        accepted = &mut accept => {
            let accepted = accepted.unwrap();
            let mut input = accepted.into_stream().unwrap();
            let mut got = Vec::new();
            let _ = tokio::time::timeout(Duration::from_millis(200), input.read_to_end(&mut got)).await;
            panic!(
                "{what}: handed out from {}, reading {:?}",
                input.remote_address(),
                String::from_utf8_lossy(&got)
            );
        }
        read = within(client.read_to_end(&mut rest)) => read,
    };
    assert!(
        read.is_ok()
            || read
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "{what}: {read:?}"
    );
    assert!(rest.is_empty(), "{what}: answered {rest:?}");
    within(async {
        while server.stats().proxy_header_failures == before {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert_eq!(server.stats().proxy_header_failures, before + 1, "{what}");
}

/// Sends `header`, then `after`, on a new connection; the socket handed out names `client`
/// (`None`: the connection's own peer, and no proxy address) and reads `after` exactly.
async fn accepted(
    server: &ServerSocket,
    address: SocketAddr,
    what: &str,
    header: &[u8],
    client: Option<&str>,
) {
    let after = b"after the header\r\n\0\xff";
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(&[header, &after[..]].concat())
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let socket = within(server.accept()).await.unwrap();
    let peer = SocketAddress::from(stream.local_addr().unwrap());
    match client {
        Some(client) => {
            assert_eq!(socket.remote_address().to_string(), client, "{what}");
            assert_eq!(socket.proxy_address(), Some(peer), "{what}");
        }
        None => {
            assert_eq!(socket.remote_address(), peer, "{what}");
            assert_eq!(socket.proxy_address(), None, "{what}");
        }
    }
    let mut input = socket.into_stream().unwrap();
    let mut got = Vec::new();
    within(input.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, after, "{what}");
}

/// Version 1 lines that break the specification's grammar (section 2.1): exactly one space
/// between fields, `TCP4`/`TCP6`/`UNKNOWN` in upper case, IPv4 as four decimals without heading
/// zeroes, ports in `0..=65535` without heading zeroes, a CRLF (never a CR or LF alone) within
/// 107 bytes. Each drops its connection.
#[tokio::test]
async fn v1_lines_the_specification_forbids_drop_their_connection() {
    let (_selector, server, address) = listener(ProxyProtocol::Required).await;
    let group = "ffff:".repeat(7) + "ffff";
    let long_unknown = format!("PROXY UNKNOWN {group} {group} 65535 655355\r\n");
    assert_eq!(long_unknown.len(), 108);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "two spaces after PROXY",
            b"PROXY  TCP4 192.0.2.7 127.0.0.1 1 2\r\n".to_vec(),
        ),
        (
            "two spaces between addresses",
            b"PROXY TCP4 192.0.2.7  127.0.0.1 1 2\r\n".to_vec(),
        ),
        ("a tab", b"PROXY TCP4 192.0.2.7\t127.0.0.1 1 2\r\n".to_vec()),
        (
            "lower-case protocol",
            b"PROXY tcp4 192.0.2.7 127.0.0.1 1 2\r\n".to_vec(),
        ),
        ("TCP5", b"PROXY TCP5 192.0.2.7 127.0.0.1 1 2\r\n".to_vec()),
        (
            "heading zero in an IPv4 number",
            b"PROXY TCP4 192.0.2.07 127.0.0.1 1 2\r\n".to_vec(),
        ),
        (
            "three IPv4 numbers",
            b"PROXY TCP4 192.0.2 127.0.0.1 1 2\r\n".to_vec(),
        ),
        (
            "an IPv4 number over 255",
            b"PROXY TCP4 192.0.2.256 127.0.0.1 1 2\r\n".to_vec(),
        ),
        (
            "IPv4 in TCP6",
            b"PROXY TCP6 192.0.2.7 127.0.0.1 1 2\r\n".to_vec(),
        ),
        ("IPv6 in TCP4", b"PROXY TCP4 ::1 ::1 1 2\r\n".to_vec()),
        (
            "an IPv6 zone",
            b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n".to_vec(),
        ),
        (
            "nine IPv6 groups",
            b"PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n".to_vec(),
        ),
        (
            "heading zero in a port",
            b"PROXY TCP4 192.0.2.7 127.0.0.1 01 2\r\n".to_vec(),
        ),
        (
            "port 65536",
            b"PROXY TCP4 192.0.2.7 127.0.0.1 1 65536\r\n".to_vec(),
        ),
        (
            "signed port",
            b"PROXY TCP4 192.0.2.7 127.0.0.1 +1 2\r\n".to_vec(),
        ),
        (
            "hex port",
            b"PROXY TCP4 192.0.2.7 127.0.0.1 0x1 2\r\n".to_vec(),
        ),
        (
            "missing port",
            b"PROXY TCP4 192.0.2.7 127.0.0.1 1\r\n".to_vec(),
        ),
        (
            "extra field",
            b"PROXY TCP4 192.0.2.7 127.0.0.1 1 2 3\r\n".to_vec(),
        ),
        (
            "trailing space",
            b"PROXY TCP4 192.0.2.7 127.0.0.1 1 2 \r\n".to_vec(),
        ),
        (
            "LF alone",
            b"PROXY TCP4 192.0.2.7 127.0.0.1 1 2\nhello\r\n".to_vec(),
        ),
        (
            "CR alone",
            b"PROXY TCP4 192.0.2.7 127.0.0.1 1 2\rhello\r\n".to_vec(),
        ),
        (
            "CR CR LF",
            b"PROXY TCP4 192.0.2.7 127.0.0.1 1 2\r\r\n".to_vec(),
        ),
        (
            "no space after PROXY",
            b"PROXYTCP4 192.0.2.7 127.0.0.1 1 2\r\n".to_vec(),
        ),
        ("PROXY and CRLF", b"PROXY\r\n".to_vec()),
        ("UNKNOWN glued to more", b"PROXY UNKNOWNX\r\n".to_vec()),
        ("no CRLF in 107 bytes", long_unknown.into_bytes()),
        (
            "no CRLF at all",
            [&b"PROXY UNKNOWN "[..], &[b'x'; 200]].concat(),
        ),
    ];
    for (what, bytes) in &cases {
        dropped(&server, address, what, bytes).await;
    }
    assert_eq!(server.stats().accepted, 0);
}

/// Version 1 lines the specification allows, with the application's bytes (a CR, a NUL and a
/// byte over 127 among them) in the same segment: the longest lines (104 bytes of `TCP6`, 107
/// of `UNKNOWN`), `UNKNOWN` with anything before its CRLF, IPv6 in upper case and compressed,
/// the extreme ports.
#[tokio::test]
async fn v1_lines_the_specification_allows_are_read_and_what_follows_is_kept() {
    let (_selector, server, address) = listener(ProxyProtocol::Required).await;
    let group = "ffff:".repeat(7) + "ffff";
    let longest_tcp6 = format!("PROXY TCP6 {group} {group} 65535 65535\r\n");
    assert_eq!(longest_tcp6.len(), 104);
    let longest_unknown = format!("PROXY UNKNOWN {group} {group} 65535 65535\r\n");
    assert_eq!(longest_unknown.len(), 107);
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        (
            "TCP4",
            b"PROXY TCP4 192.0.2.7 127.0.0.1 4242 9002\r\n".to_vec(),
            Some("192.0.2.7:4242"),
        ),
        (
            "TCP4 extremes",
            b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n".to_vec(),
            Some("0.0.0.0:0"),
        ),
        (
            "TCP6, upper case",
            b"PROXY TCP6 2001:DB8::7 2001:db8::1 4242 9002\r\n".to_vec(),
            Some("[2001:db8::7]:4242"),
        ),
        (
            "TCP6, longest",
            longest_tcp6.into_bytes(),
            Some("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
        ),
        ("UNKNOWN, short", b"PROXY UNKNOWN\r\n".to_vec(), None),
        ("UNKNOWN, longest", longest_unknown.into_bytes(), None),
        (
            "UNKNOWN, anything before the CRLF",
            b"PROXY UNKNOWN \x00\xff\r \n what\r\n".to_vec(),
            None,
        ),
    ];
    for (what, header, client) in &cases {
        accepted(&server, address, what, header, *client).await;
    }
    assert_eq!(server.stats().proxy_header_failures, 0);
}

/// Version 2 headers the specification says to reject (section 2.2): a version other than 2,
/// a command other than `LOCAL` and `PROXY`, a family or transport other than the ones it
/// lists, an address block shorter than its family's, and (section 2.2.7 onwards) a TLV that
/// runs past the header.
#[tokio::test]
async fn v2_headers_the_specification_forbids_drop_their_connection() {
    let (_selector, server, address) = listener(ProxyProtocol::Required).await;
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for version in [0x0, 0x1, 0x3, 0xF] {
        cases.push((
            format!("version {version}"),
            v2(version << 4 | 1, 0x11, &inet_block()),
        ));
    }
    for command in 0x2..=0xF {
        cases.push((
            format!("command {command}"),
            v2(0x20 | command, 0x11, &inet_block()),
        ));
    }
    for family in [0x4, 0x5, 0xF] {
        cases.push((
            format!("family {family}"),
            v2(0x21, family << 4 | 1, &inet_block()),
        ));
    }
    for transport in [0x3, 0x4, 0xF] {
        cases.push((
            format!("transport {transport}"),
            v2(0x21, 0x10 | transport, &inet_block()),
        ));
    }
    cases.push((
        "AF_INET block of 11 bytes".into(),
        v2(0x21, 0x11, &inet_block()[..11]),
    ));
    cases.push((
        "AF_INET6 block of 35 bytes".into(),
        v2(0x21, 0x21, &inet6_block()[..35]),
    ));
    cases.push((
        "AF_UNIX block of 215 bytes".into(),
        v2(0x21, 0x31, &[0; 215]),
    ));
    cases.push((
        "a TLV running past the header".into(),
        v2(
            0x21,
            0x11,
            &[&inet_block()[..], &[0x04, 0x00, 0x02, 0x00]].concat(),
        ),
    ));
    cases.push((
        "a TLV header cut short".into(),
        v2(0x21, 0x11, &[&inet_block()[..], &[0x04, 0x00]].concat()),
    ));
    for (what, bytes) in &cases {
        dropped(&server, address, what, bytes).await;
    }
    assert_eq!(server.stats().accepted, 0);
}

/// Version 2 headers the specification allows, each with the application's bytes in the same
/// segment: `PROXY` over IPv4 and IPv6, `DGRAM` as well as `STREAM` (documented: reported),
/// addresses followed by TLVs (a `NOOP`, a `CRC32C` that is not checked), `LOCAL` (whose family
/// and address block are ignored, and must be skipped by the length), `AF_UNSPEC`, transport
/// `UNSPEC` and `AF_UNIX` (none names a client).
#[tokio::test]
async fn v2_headers_the_specification_allows_are_read_and_what_follows_is_kept() {
    let (_selector, server, address) = listener(ProxyProtocol::Required).await;
    let tlvs = [
        0x04, 0x00, 0x03, 1, 2, 3, 0x03, 0x00, 0x04, 0xDE, 0xAD, 0xBE, 0xEF,
    ];
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        (
            "AF_INET STREAM",
            v2(0x21, 0x11, &inet_block()),
            Some("192.0.2.7:4242"),
        ),
        (
            "AF_INET DGRAM",
            v2(0x21, 0x12, &inet_block()),
            Some("192.0.2.7:4242"),
        ),
        (
            "AF_INET6 STREAM",
            v2(0x21, 0x21, &inet6_block()),
            Some("[2001:db8::7]:4242"),
        ),
        (
            "AF_INET6 DGRAM",
            v2(0x21, 0x22, &inet6_block()),
            Some("[2001:db8::7]:4242"),
        ),
        (
            "AF_INET with TLVs",
            v2(0x21, 0x11, &[&inet_block()[..], &tlvs[..]].concat()),
            Some("192.0.2.7:4242"),
        ),
        ("LOCAL, no block", v2(0x20, 0x00, &[]), None),
        (
            "LOCAL, an AF_INET block",
            v2(0x20, 0x11, &inet_block()),
            None,
        ),
        ("LOCAL, an unknown family", v2(0x20, 0xFF, b"ignored"), None),
        ("AF_UNSPEC", v2(0x21, 0x00, b"ignored"), None),
        (
            "AF_INET, transport UNSPEC",
            v2(0x21, 0x10, &inet_block()),
            None,
        ),
        ("AF_UNIX STREAM", v2(0x21, 0x31, &[b'/'; 216]), None),
        ("AF_UNIX DGRAM", v2(0x21, 0x32, &[b'/'; 216]), None),
    ];
    for (what, header, client) in &cases {
        accepted(&server, address, what, header, *client).await;
    }
    assert_eq!(server.stats().proxy_header_failures, 0);
}

/// A header sent one byte at a time (each its own segment, well within the timeout), then the
/// application's bytes, also one at a time: the socket names the client and reads every
/// application byte, in order.
#[tokio::test]
async fn a_header_sent_a_byte_at_a_time_is_read_and_what_follows_is_kept() {
    let (_selector, server, address) = listener(ProxyProtocol::Required).await;
    let headers: [(&str, Vec<u8>); 3] = [
        (
            "v1",
            b"PROXY TCP4 192.0.2.7 127.0.0.1 4242 9002\r\n".to_vec(),
        ),
        ("v2", v2(0x21, 0x11, &inet_block())),
        (
            "v2 with a TLV",
            v2(
                0x21,
                0x11,
                &[&inet_block()[..], &[0x04, 0x00, 0x01, 0xAA]].concat(),
            ),
        ),
    ];
    for (what, header) in headers {
        let after = b"\r\n\r\n\0\r\nQUIT\nPROXY TCP4\r\n";
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let sending = tokio::spawn(async move {
            for byte in header.iter().chain(after) {
                stream.write_all(&[*byte]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            stream.shutdown().await.unwrap();
            stream
        });
        let socket = within(server.accept()).await.unwrap();
        assert_eq!(
            socket.remote_address().to_string(),
            "192.0.2.7:4242",
            "{what}"
        );
        let mut input = socket.into_stream().unwrap();
        let mut got = Vec::new();
        within(input.read_to_end(&mut got)).await.unwrap();
        assert_eq!(got, after, "{what}");
        drop(within(sending).await.unwrap());
    }
}

/// A header followed, in the same write, by more than the listener reads at once (512 bytes)
/// and more than a socket buffer: every application byte arrives once and in order, read in
/// small pieces.
#[tokio::test]
async fn a_header_followed_by_much_data_loses_and_reorders_nothing() {
    let (_selector, server, address) = listener(ProxyProtocol::Required).await;
    for header in [
        b"PROXY TCP4 192.0.2.7 127.0.0.1 4242 9002\r\n".to_vec(),
        v2(0x21, 0x21, &inet6_block()),
    ] {
        let data = payload(300_000);
        let sent = [&header[..], &data[..]].concat();
        let mut stream = TcpStream::connect(address).await.unwrap();
        let writing = tokio::spawn(async move {
            stream.write_all(&sent).await.unwrap();
            stream.shutdown().await.unwrap();
            stream
        });
        let socket = within(server.accept()).await.unwrap();
        let mut input = socket.into_stream().unwrap();
        let mut got = Vec::new();
        let mut piece = [0u8; 7];
        within(async {
            loop {
                let n = input.read(&mut piece).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&piece[..n]);
            }
        })
        .await;
        assert_eq!(got.len(), data.len());
        assert!(got == data, "the application's bytes differ");
        drop(within(writing).await.unwrap());
    }
}

/// With `Optional`, application bytes that start like a v2 signature (a blank line: `\r\n`,
/// and more) but differ from it before its end are the application's, all of them, handed out
/// as they came; so are bytes that start like `PROXY` but differ before its end.
#[tokio::test]
async fn an_optional_header_absent_behind_a_partial_signature_keeps_every_byte() {
    let (_selector, server, address) = listener(ProxyProtocol::Optional).await;
    for sent in [
        &b"\r\n\r\nhello\r\n"[..],
        b"\r\n\r\n\0\r\nQUIX\n",
        b"PROXIMITY\r\n",
        b"PROX\r\n",
    ] {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(sent).await.unwrap();
        stream.shutdown().await.unwrap();
        let socket = within(server.accept()).await.unwrap();
        assert_eq!(
            socket.remote_address(),
            SocketAddress::from(stream.local_addr().unwrap())
        );
        assert_eq!(socket.proxy_address(), None);
        let mut input = socket.into_stream().unwrap();
        let mut got = Vec::new();
        within(input.read_to_end(&mut got)).await.unwrap();
        assert_eq!(got, sent);
    }
    assert_eq!(server.stats().proxy_header_failures, 0);
}

/// What the listener handed out for one connection HAProxy relayed.
#[derive(Debug)]
struct Relayed {
    remote: SocketAddress,
    proxy: Option<SocketAddress>,
    /// Everything the connection sent after its header.
    sent: Vec<u8>,
}

/// A real HAProxy (`send-proxy` or `send-proxy-v2` with `proxy-v2-options crc32c,unique-id`,
/// health checks sent with the header: `check-send-proxy`) in front of a listener requiring a
/// header, with frontends on IPv4, IPv6 (where the host has `::1`) and a Unix socket. The
/// headers it really sends, beyond those `proxy_haproxy.rs` covers: health checks (v2 `LOCAL`
/// with a `CRC32C` TLV; v1 names HAProxy's own connection), TLVs after the addresses (`CRC32C`, `UNIQUE_ID`), IPv6 addresses,
/// and for a Unix client v2 `LOCAL` `AF_UNSPEC` or v1 `UNKNOWN`. Each is read: the clients are
/// named (a Unix one keeps the connection's own peer, with no proxy address), and what each
/// sent arrives whole.
async fn haproxy_headers(keyword: &str) {
    use net_tests::harness::{Process, free_port, path_arg, system_program};
    let selector = SelectorManager::new();
    let server = std::sync::Arc::new(
        a_socket(&selector)
            .tcp()
            .proxy_protocol(ProxyProtocol::Required)
            .bind(("127.0.0.1", 0))
            .await
            .unwrap(),
    );
    let backend = SocketAddr::from(([127, 0, 0, 1], server.port().unwrap()));
    let (relayed_tx, mut relayed) = tokio::sync::mpsc::unbounded_channel();
    let accepting = std::sync::Arc::clone(&server);
    let serving = tokio::spawn(async move {
        while let Ok(socket) = accepting.accept().await {
            let relayed_tx = relayed_tx.clone();
            tokio::spawn(async move {
                let remote = socket.remote_address();
                let proxy = socket.proxy_address();
                let mut input = socket.into_stream().unwrap();
                let mut sent = Vec::new();
                let _ = within(input.read_to_end(&mut sent)).await;
                let _ = relayed_tx.send(Relayed {
                    remote,
                    proxy,
                    sent,
                });
            });
        }
    });
    let ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    let dir = net_tests::TempDir::new("haproxy-spec");
    let unix_front = dir.join("front.sock");
    let front = SocketAddr::from(([127, 0, 0, 1], free_port()));
    // `free_port` checks 127.0.0.1 only: a port free there may be taken on `::1`.
    let port6 = (0..100)
        .map(|_| free_port())
        .find(|&port| std::net::TcpListener::bind(("::1", port)).is_ok() || !ipv6)
        .expect("a port free on ::1");
    let front6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port6));
    let options = if keyword == "send-proxy-v2" {
        " proxy-v2-options crc32c,unique-id"
    } else {
        ""
    };
    let bind6 = if ipv6 {
        format!("    bind {front6}\n")
    } else {
        String::new()
    };
    let config = format!(
        "global\n    maxconn 64\n    nbthread 1\n    noreuseport\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    \
         timeout server 30s\n    unique-id-format %{{+X}}o\\ %ci:%cp_%fi:%fp_%Ts_%rt:%pid\n\
         frontend front\n    bind {front}\n{bind6}    bind unix@{}\n    default_backend back\n\
         backend back\n    server app {backend} {keyword}{options} check check-send-proxy inter 100ms\n",
        path_arg(&unix_front)
    );
    let path = dir.write("haproxy.cfg", &config);
    let haproxy = Process::start(&system_program("haproxy"), ["-db", "-f", path_arg(&path)]);
    within(async {
        while tokio::net::UnixStream::connect(&unix_front).await.is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // The clients: IPv4 from 127.0.0.2, IPv6, Unix; each sends one line and ends.
    let v4 = tokio::net::TcpSocket::new_v4().unwrap();
    v4.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut v4 = v4.connect(front).await.unwrap();
    v4.write_all(b"from ipv4\n").await.unwrap();
    v4.shutdown().await.unwrap();
    let v4_address = SocketAddress::from(v4.local_addr().unwrap());
    let mut v6 = None;
    if ipv6 {
        let mut stream = TcpStream::connect(front6).await.unwrap();
        stream.write_all(b"from ipv6\n").await.unwrap();
        stream.shutdown().await.unwrap();
        v6 = Some(stream);
    }
    let mut unix = tokio::net::UnixStream::connect(&unix_front).await.unwrap();
    unix.write_all(b"from unix\n").await.unwrap();
    unix.shutdown().await.unwrap();
    let mut wanted: Vec<&[u8]> = vec![b"from ipv4\n", b"from unix\n"];
    if ipv6 {
        wanted.push(b"from ipv6\n");
    }
    let mut health_checks = 0;
    within(async {
        while !wanted.is_empty() || health_checks < 2 {
            let one = relayed.recv().await.expect("the accept loop ended");
            let haproxy_itself =
                one.remote.as_inet().map(|a| a.ip()) == Some(std::net::Ipv4Addr::LOCALHOST.into());
            match &one.sent[..] {
                // A v2 health check is `LOCAL`; a v1 one names HAProxy's own connection.
                b"" => {
                    assert!(haproxy_itself, "{keyword}: health check {one:?}");
                    health_checks += 1;
                }
                b"from ipv4\n" => {
                    assert_eq!(one.remote, v4_address, "{keyword}");
                    assert!(one.proxy.is_some(), "{keyword}: {one:?}");
                }
                b"from ipv6\n" => {
                    let v6 = v6.as_ref().unwrap();
                    assert_eq!(
                        one.remote,
                        SocketAddress::from(v6.local_addr().unwrap()),
                        "{keyword}"
                    );
                    assert!(one.proxy.is_some(), "{keyword}: {one:?}");
                }
                b"from unix\n" => {
                    assert!(haproxy_itself && one.proxy.is_none(), "{keyword}: {one:?}");
                }
                other => panic!("{keyword}: unexpected {:?}", String::from_utf8_lossy(other)),
            }
            wanted.retain(|w| *w != &one.sent[..]);
        }
    })
    .await;
    assert_eq!(server.stats().proxy_header_failures, 0, "{keyword}");
    drop(haproxy);
    server.close();
    let _ = within(serving).await;
}

#[tokio::test]
async fn haproxy_v2_health_checks_tlvs_ipv6_and_unix_clients_are_read() {
    haproxy_headers("send-proxy-v2").await;
}

#[tokio::test]
async fn haproxy_v1_health_checks_ipv6_and_unix_clients_are_read() {
    haproxy_headers("send-proxy").await;
}
