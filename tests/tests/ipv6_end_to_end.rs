//! IPv6 end to end: literals in every form `bind` and `connect` take, dual-stack listeners and
//! the IPv4-mapped addresses they report, UDP on `::1`, PROXY protocol headers with IPv6
//! addresses at the listener, and TLS to an IPv6 address. Traffic only to `::1` and
//! `127.0.0.0/8`; every test skips its IPv6 part on a machine without an IPv6 loopback.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::Duration;

use net_io::LineEnding;
use net_sockets::{
    Datagram, Error, ProxyProtocol, SelectorManager, ServerSocket, Socket, SocketAddress, a_socket,
};
use net_tests::loopback::has_ipv6_loopback;
use net_tests::proxy::v2;
use net_tests::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `true` (and a note) when this machine has no IPv6 loopback: the test then has nothing to do.
fn no_ipv6() -> bool {
    if has_ipv6_loopback() {
        return false;
    }
    eprintln!("no IPv6 loopback: skipping");
    true
}

fn v6(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

async fn first_line(socket: &mut Socket) -> Option<String> {
    let mut input = socket.open_read_channel().unwrap();
    within(input.read_line(8192, LineEnding::Default))
        .await
        .unwrap()
}

/// Guard (documented in `Socket::remote_address`): a listener bound to `::` is dual-stack (the
/// OS's default on Linux), and an IPv4 client's address reaches it IPv4-mapped,
/// `[::ffff:127.0.0.1]:p`, as the OS reports it (and std and tokio): it is not equal to
/// `127.0.0.1:p`, and `ip().to_canonical()` is the IPv4 address. The client's own view is IPv4.
#[tokio::test]
async fn a_dual_stack_listener_reports_an_ipv4_client_in_its_mapped_form() {
    if no_ipv6() {
        return;
    }
    let selector = SelectorManager::new();
    let server = a_socket(&selector).tcp().bind(("::", 0)).await.unwrap();
    let port = server.port().unwrap();
    assert_eq!(server.local_address().to_string(), format!("[::]:{port}"));
    let client = a_socket(&selector)
        .tcp()
        .connect(("127.0.0.1", port))
        .await
        .unwrap();
    let accepted = within(server.accept()).await.unwrap();
    let client_port = client.local_address().port().unwrap();
    let mapped = SocketAddress::from(SocketAddr::new(
        Ipv4Addr::LOCALHOST.to_ipv6_mapped().into(),
        client_port,
    ));
    assert_eq!(accepted.remote_address(), mapped);
    assert_eq!(
        accepted.remote_address().to_string(),
        format!("[::ffff:127.0.0.1]:{client_port}")
    );
    assert_ne!(
        accepted.remote_address(),
        SocketAddress::from(SocketAddr::from(([127, 0, 0, 1], client_port)))
    );
    let ip = accepted.remote_address().as_inet().unwrap().ip();
    assert_eq!(ip.to_canonical(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(
        accepted.local_address(),
        SocketAddress::from(SocketAddr::new(
            Ipv4Addr::LOCALHOST.to_ipv6_mapped().into(),
            port
        ))
    );
    // The client connected over IPv4 and sees IPv4 addresses.
    assert_eq!(
        client.remote_address(),
        SocketAddress::from(SocketAddr::from(([127, 0, 0, 1], port)))
    );
    // The port is taken for IPv4 too.
    let e = a_socket(&selector)
        .tcp()
        .bind(("0.0.0.0", port))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e:?}");
}

/// Guard (documented in `TcpSocketBuilder::bind`): the builder has no `IPV6_V6ONLY` option; an
/// IPv6-only listener on `::`, made with socket2 and adopted with `from_std`, leaves the port's
/// IPv4 side to a listener of its own, which IPv4 clients reach.
#[tokio::test]
async fn an_adopted_ipv6_only_listener_shares_its_port_with_an_ipv4_one() {
    use socket2::{Domain, Socket as RawSocket, Type};
    if no_ipv6() {
        return;
    }
    let selector = SelectorManager::new();
    // The IPv4 listener first, on a port the kernel picks free for IPv4: an IPv6-only socket's
    // port 0 is picked free for IPv6 alone, and on a busy machine IPv4 sockets of others (a
    // client's in `TIME_WAIT`, another test's listener) often hold it, so that binding its IPv4
    // side failed with `AddrInUse` (seen in a run of the whole suite; one run in three with
    // clients' `TIME_WAIT` on a third of the odd ephemeral ports). The IPv6-only bind to that
    // port is retried (with a fresh port) only while an IPv6 socket holds it: were the socket
    // dual-stack despite `IPV6_V6ONLY`, the IPv4 listener would refuse every attempt.
    let mut attempts = 0;
    let (v4, raw) = loop {
        attempts += 1;
        let v4 = a_socket(&selector)
            .tcp()
            .bind(("0.0.0.0", 0))
            .await
            .unwrap();
        let port = v4.port().unwrap();
        let raw = RawSocket::new(Domain::IPV6, Type::STREAM, None).unwrap();
        raw.set_only_v6(true).unwrap();
        match raw.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into()) {
            Ok(()) => break (v4, raw),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempts < 20 => v4.close(),
            Err(e) => panic!("an IPv6-only `::` on port {port} of an IPv4 listener: {e:?}"),
        }
    };
    raw.listen(16).unwrap();
    let only_v6 = a_socket(&selector)
        .tcp()
        .from_std(std::net::TcpListener::from(raw))
        .unwrap();
    let port = only_v6.port().unwrap();
    assert_eq!(v4.port(), Some(port));
    let over_v4 = a_socket(&selector)
        .tcp()
        .connect(("127.0.0.1", port))
        .await
        .unwrap();
    let accepted = within(v4.accept()).await.unwrap();
    assert_eq!(accepted.remote_address(), over_v4.local_address());
    let over_v6 = a_socket(&selector)
        .tcp()
        .connect(("::1", port))
        .await
        .unwrap();
    let accepted = within(only_v6.accept()).await.unwrap();
    assert_eq!(accepted.remote_address(), over_v6.local_address());
}

/// Guard: every form of an IPv6 literal `connect` takes reaches a listener on `::1` (brackets
/// or none in `(host, port)`, brackets in `"host:port"`, a `SocketAddrV6`, a numeric scope),
/// and both ends report `[::1]:p`.
#[tokio::test]
async fn ipv6_literals_in_every_form_reach_a_listener_on_the_ipv6_loopback() {
    if no_ipv6() {
        return;
    }
    let selector = SelectorManager::new();
    let server = a_socket(&selector).tcp().bind("[::1]:0").await.unwrap();
    let port = server.port().unwrap();
    let listening = SocketAddress::from(v6(&format!("[::1]:{port}")));
    assert_eq!(server.local_address(), listening);
    // The loopback interface's index (1 on Linux), as a numeric scope.
    let scope: u32 = std::fs::read_to_string("/sys/class/net/lo/ifindex")
        .ok()
        .and_then(|index| index.trim().parse().ok())
        .unwrap_or(1);
    let forms: Vec<(&str, Socket)> = vec![
        (
            "(\"::1\", p)",
            a_socket(&selector)
                .tcp()
                .connect(("::1", port))
                .await
                .unwrap(),
        ),
        (
            "(\"[::1]\", p)",
            a_socket(&selector)
                .tcp()
                .connect(("[::1]", port))
                .await
                .unwrap(),
        ),
        (
            "\"[::1]:p\"",
            a_socket(&selector)
                .tcp()
                .connect(format!("[::1]:{port}"))
                .await
                .unwrap(),
        ),
        (
            "SocketAddrV6",
            a_socket(&selector)
                .tcp()
                .connect(SocketAddrV6::new(Ipv6Addr::LOCALHOST, port, 0, 0))
                .await
                .unwrap(),
        ),
        (
            "(Ipv6Addr, p)",
            a_socket(&selector)
                .tcp()
                .connect((Ipv6Addr::LOCALHOST, port))
                .await
                .unwrap(),
        ),
        (
            "\"[::1%scope]:p\"",
            a_socket(&selector)
                .tcp()
                .connect(format!("[::1%{scope}]:{port}"))
                .await
                .unwrap(),
        ),
    ];
    for (form, client) in forms {
        assert_eq!(client.remote_address(), listening, "{form}");
        let local = client.local_address();
        assert!(local.to_string().starts_with("[::1]:"), "{form}: {local}");
        let accepted = within(server.accept()).await.unwrap();
        assert_eq!(accepted.remote_address(), local, "{form}");
        assert_eq!(accepted.local_address(), listening, "{form}");
    }
}

/// Guard: a listener on `::1` is IPv6 only (the IPv4 loopback is another address): a connect
/// to `127.0.0.1` at its port is refused, with kind `ConnectionRefused`.
#[tokio::test]
async fn a_listener_on_the_ipv6_loopback_is_not_reached_over_ipv4() {
    if no_ipv6() {
        return;
    }
    let selector = SelectorManager::new();
    let server = a_socket(&selector).tcp().bind(("::1", 0)).await.unwrap();
    let port = server.port().unwrap();
    let e = a_socket(&selector)
        .tcp()
        .connect(("127.0.0.1", port))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e:?}");
}

/// Guard: UDP on `::1`: a bound socket sends and receives, each datagram naming its sender as
/// `[::1]:p`; a connected socket reports its peer and exchanges datagrams with it.
#[tokio::test]
async fn udp_on_the_ipv6_loopback_sends_receives_and_connects() {
    if no_ipv6() {
        return;
    }
    let selector = SelectorManager::new();
    let a = a_socket(&selector).udp().bind(("::1", 0)).await.unwrap();
    let b = a_socket(&selector).udp().bind("[::1]:0").await.unwrap();
    assert!(a.local_address().to_string().starts_with("[::1]:"));
    b.send(Datagram::new("to a", a.local_address()).unwrap())
        .await
        .unwrap();
    let got = within(a.receive()).await.unwrap();
    assert_eq!(&got.packet[..], b"to a");
    assert_eq!(got.address, b.local_address());
    a.send(Datagram::new("reply", got.address).unwrap())
        .await
        .unwrap();
    let reply = within(b.receive()).await.unwrap();
    assert_eq!(&reply.packet[..], b"reply");
    assert_eq!(reply.address, a.local_address());

    let connected = a_socket(&selector)
        .udp()
        .connect(a.local_address())
        .await
        .unwrap();
    assert_eq!(connected.remote_address(), a.local_address());
    assert!(
        connected.local_address().to_string().starts_with("[::1]:"),
        "{}",
        connected.local_address()
    );
    connected
        .send(Datagram::new("connected", a.local_address()).unwrap())
        .await
        .unwrap();
    let got = within(a.receive()).await.unwrap();
    assert_eq!(&got.packet[..], b"connected");
    assert_eq!(got.address, connected.local_address());
    a.send(Datagram::new("back", got.address).unwrap())
        .await
        .unwrap();
    let back = within(connected.receive()).await.unwrap();
    assert_eq!(&back.packet[..], b"back");
    assert_eq!(back.address, a.local_address());
}

/// Guard: a dual-stack UDP socket (bound to `::`) sends to an IPv4 peer written as IPv4
/// (`127.0.0.1:p`), as it does to its mapped form, and sees its replies from the mapped form.
#[tokio::test]
async fn a_dual_stack_udp_socket_sends_to_an_ipv4_peer_in_either_form() {
    if no_ipv6() {
        return;
    }
    let selector = SelectorManager::new();
    let dual = a_socket(&selector).udp().bind(("::", 0)).await.unwrap();
    let peer = a_socket(&selector)
        .udp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = peer.local_address().port().unwrap();
    let mapped = SocketAddr::new(Ipv4Addr::LOCALHOST.to_ipv6_mapped().into(), port);
    for (to, text) in [(peer.local_address(), "plain"), (mapped.into(), "mapped")] {
        dual.send(Datagram::new(text, to.clone()).unwrap())
            .await
            .unwrap_or_else(|e| panic!("{to}: {e:?}"));
        let got = within(peer.receive()).await.unwrap();
        assert_eq!(&got.packet[..], text.as_bytes());
    }
    peer.send(
        Datagram::new(
            "reply",
            SocketAddr::from(([127, 0, 0, 1], dual.local_address().port().unwrap())),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let reply = within(dual.receive()).await.unwrap();
    assert_eq!(
        reply.address,
        SocketAddress::from(SocketAddr::new(
            Ipv4Addr::LOCALHOST.to_ipv6_mapped().into(),
            port
        ))
    );
}

async fn proxied_listener(selector: &SelectorManager) -> (ServerSocket, SocketAddr) {
    let server = a_socket(selector)
        .tcp()
        .proxy_protocol(ProxyProtocol::Required)
        .bind(("::1", 0))
        .await
        .unwrap();
    let address = v6(&format!("[::1]:{}", server.port().unwrap()));
    (server, address)
}

/// Guard: at a listener on `::1`, a v1 `TCP6` header and a v2 `AF_INET6` header name the
/// client (`remote_address`), the proxy is the connection's peer (`proxy_address`), and the
/// line after the header arrives whole; an IPv4-mapped client in a `TCP6` line is reported as
/// written.
#[tokio::test]
async fn ipv6_proxy_headers_name_the_client_at_an_ipv6_listener() {
    if no_ipv6() {
        return;
    }
    let selector = SelectorManager::new();
    let (server, address) = proxied_listener(&selector).await;
    let mut block = Vec::new();
    block.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
    block.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    block.extend_from_slice(&4242u16.to_be_bytes());
    block.extend_from_slice(&443u16.to_be_bytes());
    let cases = [
        (
            b"PROXY TCP6 2001:db8::1 ::1 56324 443\r\n".to_vec(),
            "[2001:db8::1]:56324",
        ),
        (
            b"PROXY TCP6 ::ffff:192.0.2.1 ::1 5 443\r\n".to_vec(),
            "[::ffff:192.0.2.1]:5",
        ),
        (v2(0x21, 0x21, &block), "[2001:db8::7]:4242"),
    ];
    for (header, client) in cases {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let mut sent = header;
        sent.extend_from_slice(b"hello\n");
        stream.write_all(&sent).await.unwrap();
        let mut accepted = within(server.accept()).await.unwrap();
        assert_eq!(accepted.remote_address().to_string(), client);
        assert_eq!(
            accepted.proxy_address(),
            Some(SocketAddress::from(stream.local_addr().unwrap())),
            "{client}"
        );
        assert_eq!(first_line(&mut accepted).await.as_deref(), Some("hello"));
    }
    assert_eq!(server.stats().proxy_header_failures, 0);
}

/// Guard: a v1 `TCP6` line with an IPv4 literal (or a `TCP4` line with an IPv6 one, or a
/// scoped IPv6 address), and a v2 `AF_INET6` header whose length is shorter than two IPv6
/// addresses and ports, are invalid: the connection is dropped (counted as a header failure),
/// and the next connection is served.
#[tokio::test]
async fn mismatched_or_short_ipv6_proxy_headers_drop_the_connection() {
    if no_ipv6() {
        return;
    }
    let selector = SelectorManager::new();
    let (server, address) = proxied_listener(&selector).await;
    let bad: [(&str, Vec<u8>); 5] = [
        (
            "TCP6 with IPv4",
            b"PROXY TCP6 127.0.0.1 127.0.0.1 1 2\r\n".to_vec(),
        ),
        ("TCP4 with IPv6", b"PROXY TCP4 ::1 ::1 1 2\r\n".to_vec()),
        ("TCP6 scoped", b"PROXY TCP6 fe80::1%1 ::1 1 2\r\n".to_vec()),
        ("AF_INET6, 12 bytes", v2(0x21, 0x21, &[0; 12])),
        ("AF_INET6, 35 bytes", v2(0x21, 0x21, &[0; 35])),
    ];
    for (i, (what, header)) in bad.iter().enumerate() {
        // Headers are read while an `accept` waits: the bad connection, then a good one, which
        // that `accept` hands out.
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(header).await.unwrap();
        stream.write_all(b"hello\n").await.unwrap();
        let mut good = TcpStream::connect(address).await.unwrap();
        good.write_all(b"PROXY TCP6 ::2 ::1 7 8\r\nok\n")
            .await
            .unwrap();
        let mut accepted = within(server.accept()).await.unwrap();
        assert_eq!(accepted.remote_address().to_string(), "[::2]:7", "{what}");
        assert_eq!(first_line(&mut accepted).await.as_deref(), Some("ok"));
        let mut rest = Vec::new();
        let read = within(stream.read_to_end(&mut rest)).await;
        assert!(
            read.is_err() || rest.is_empty(),
            "{what}: {read:?} {rest:?}"
        );
        let failures = i as u64 + 1;
        within(async {
            while server.stats().proxy_header_failures < failures {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await;
        assert_eq!(server.stats().proxy_header_failures, failures, "{what}");
    }
}

/// Guard: TLS to `::1`: the host given to `connect` (`::1` bare, bracketed, or in
/// `"[::1]:p"`) is the name verified, as an IP address, against the certificate's IP SANs; a
/// certificate without `::1` is refused for its name.
#[tokio::test]
async fn tls_to_the_ipv6_loopback_verifies_its_ip_address() {
    use net_tls::TlsExt;
    if no_ipv6() {
        return;
    }
    let selector = SelectorManager::new();
    for (names, valid) in [
        (&["localhost", "::1"][..], true),
        (&["127.0.0.1"][..], false),
    ] {
        let pki = net_tests::pki::Pki::with_server_names(names);
        let server_config = pki.server_config().build().unwrap();
        let server = a_socket(&selector).tcp().bind(("::1", 0)).await.unwrap();
        let port = server.port().unwrap();
        let serving = tokio::spawn(async move {
            loop {
                let Ok(socket) = server.accept().await else {
                    return;
                };
                let config = server_config.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = socket.tls_server(&config).await {
                        let mut out = tls.open_write_channel(false).unwrap();
                        let _ = out.write_string_utf8("hi\n").await;
                        let _ = out.flush().await;
                    }
                });
            }
        });
        for host in ["::1", "[::1]"] {
            let socket = a_socket(&selector)
                .tcp()
                .connect((host, port))
                .await
                .unwrap();
            let result = within(socket.tls(pki.client_config().build().unwrap())).await;
            check_tls(result, valid, host).await;
        }
        let socket = a_socket(&selector)
            .tcp()
            .connect(format!("[::1]:{port}"))
            .await
            .unwrap();
        let result = within(socket.tls(pki.client_config().build().unwrap())).await;
        check_tls(result, valid, "\"[::1]:p\"").await;
        serving.abort();
    }
}

async fn check_tls(result: net_tls::Result<net_tls::TlsSocket>, valid: bool, what: &str) {
    if valid {
        let mut tls = result.unwrap_or_else(|e| panic!("{what}: {e:?}"));
        assert_eq!(tls.server_name(), Some("::1"), "{what}");
        let mut input = tls.open_read_channel().unwrap();
        let line = within(input.read_line(64, LineEnding::Default))
            .await
            .unwrap();
        assert_eq!(line.as_deref(), Some("hi"), "{what}");
    } else {
        let e = result.expect_err(what);
        net_tests::tls::assert_certificate_error(&e, net_tests::tls::is_not_valid_for_name);
    }
}

/// Guard (the guide's admission control): on a dual-stack listener, `max_connections_per_ip`
/// counts an IPv4 client reaching it IPv4-mapped as its IPv4 address, the same client as a
/// PROXY header naming that IPv4 address; an IPv6 client is another address.
#[tokio::test]
async fn the_per_ip_cap_counts_an_ipv4_mapped_client_as_its_ipv4_address() {
    if no_ipv6() {
        return;
    }
    let selector = SelectorManager::new();
    let server = a_socket(&selector)
        .tcp()
        .max_connections_per_ip(1)
        .proxy_protocol(ProxyProtocol::Optional)
        .bind(("::", 0))
        .await
        .unwrap();
    let port = server.port().unwrap();
    let mut over_v4 = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    over_v4.write_all(b"one\n").await.unwrap();
    let mut first = within(server.accept()).await.unwrap();
    let ip = first.remote_address().as_inet().unwrap().ip();
    assert_eq!(ip, IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped()));
    assert_eq!(first_line(&mut first).await.as_deref(), Some("one"));
    // The same client, as a proxy names it: over its cap.
    let mut named = TcpStream::connect(("::1", port)).await.unwrap();
    named
        .write_all(b"PROXY TCP4 127.0.0.1 127.0.0.1 5 6\r\ntwo\n")
        .await
        .unwrap();
    let mut over_v6 = TcpStream::connect(("::1", port)).await.unwrap();
    over_v6.write_all(b"three\n").await.unwrap();
    let mut third = within(server.accept()).await.unwrap();
    assert_eq!(
        third.remote_address(),
        SocketAddress::from(over_v6.local_addr().unwrap())
    );
    assert_eq!(first_line(&mut third).await.as_deref(), Some("three"));
    let mut rest = Vec::new();
    let read = within(named.read_to_end(&mut rest)).await;
    assert!(read.is_err() || rest.is_empty(), "{read:?} {rest:?}");
    within(async {
        while server.stats().refused_per_ip < 1 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert_eq!(server.stats().refused_per_ip, 1);
    drop(first);
}

/// A local address IPv4-mapped (`::ffff:127.0.0.1`, as a dual-stack listener reports an IPv4
/// client) is IPv4 in effect: a socket bound to it cannot reach an IPv6 address, and one bound
/// to a specific IPv6 address (`::1`) cannot reach an IPv4-mapped one. A TCP connect with such
/// a `local_address`, a UDP `connect_from` and a UDP `send` fail with `Error::Io` of kind
/// `InvalidInput` naming both addresses, as for a local address of the other family. (Before,
/// the OS's `EAFNOSUPPORT`, kind `Uncategorized`, "Address family not supported by protocol",
/// for the mapped local address; `ENETUNREACH` for `::1` to a mapped target.) A mapped local
/// address still reaches IPv4 peers, and `::` both families.
#[tokio::test]
async fn a_local_address_ipv4_mapped_reaches_ipv4_only() {
    if no_ipv6() {
        return;
    }
    let selector = SelectorManager::new();
    let mapped_local = v6("[::ffff:127.0.0.1]:0");
    let v6_local = v6("[::1]:0");
    let tcp_v6 = a_socket(&selector).tcp().bind(("::1", 0)).await.unwrap();
    let tcp_v4 = a_socket(&selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let tcp_v4_mapped = SocketAddr::new(
        Ipv4Addr::LOCALHOST.to_ipv6_mapped().into(),
        tcp_v4.port().unwrap(),
    );
    let udp_v6 = a_socket(&selector).udp().bind(("::1", 0)).await.unwrap();
    let udp_v4 = a_socket(&selector)
        .udp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let udp_v4_mapped = SocketAddr::new(
        Ipv4Addr::LOCALHOST.to_ipv6_mapped().into(),
        udp_v4.local_address().port().unwrap(),
    );
    let refused = |what: &str, local: SocketAddr, target: &dyn std::fmt::Display, e: Error| {
        assert!(
            matches!(&e, Error::Io(io) if io.kind() == io::ErrorKind::InvalidInput),
            "{what} {local} to {target}: {e:?}"
        );
        let message = e.to_string();
        assert!(
            message.contains(&local.ip().to_string()),
            "{what}: {message}"
        );
        assert!(message.contains(&target.to_string()), "{what}: {message}");
    };
    for (local, target) in [
        (mapped_local, tcp_v6.local_address()),
        (v6_local, tcp_v4_mapped.into()),
    ] {
        let e = a_socket(&selector)
            .tcp()
            .local_address(local)
            .connect(&target)
            .await
            .unwrap_err();
        refused("TCP", local, &target, e);
    }
    for (local, target) in [
        (mapped_local, udp_v6.local_address()),
        (v6_local, udp_v4_mapped.into()),
    ] {
        let e = a_socket(&selector)
            .udp()
            .connect_from(&target, local)
            .await
            .unwrap_err();
        refused("UDP connect_from", local, &target, e);
    }
    let bound = a_socket(&selector).udp().bind(mapped_local).await.unwrap();
    let e = bound
        .send(Datagram::new("x", udp_v6.local_address()).unwrap())
        .await
        .unwrap_err();
    refused("UDP send", mapped_local, &udp_v6.local_address(), e);
    // IPv4 peers, in either form, it reaches.
    for to in [udp_v4.local_address(), udp_v4_mapped.into()] {
        bound
            .send(Datagram::new("v4", to.clone()).unwrap())
            .await
            .unwrap_or_else(|e| panic!("{to}: {e:?}"));
        let got = within(udp_v4.receive()).await.unwrap();
        assert_eq!(&got.packet[..], b"v4");
    }
    let tcp = a_socket(&selector)
        .tcp()
        .local_address(mapped_local)
        .connect(tcp_v4_mapped)
        .await
        .unwrap();
    assert_eq!(tcp.remote_address(), SocketAddress::from(tcp_v4_mapped));
    // `::` reaches both.
    for target in [tcp_v6.local_address(), tcp_v4_mapped.into()] {
        a_socket(&selector)
            .tcp()
            .local_address(v6("[::]:0"))
            .connect(&target)
            .await
            .unwrap_or_else(|e| panic!("{target}: {e:?}"));
    }
}

/// A UDP `connect_from` a dual-stack local address (`::`) to a host name whose only address is
/// IPv4 (`127.1`, as `localhost` is on many hosts) connects to it, as it does to the IPv4
/// literal. (Before, the name's IPv4 addresses were dropped as "of the other family" and the
/// connect failed with `Error::Resolve`: "the name has no IPv6 address".)
#[tokio::test]
async fn a_dual_stack_udp_connect_from_reaches_a_name_with_ipv4_addresses_only() {
    if no_ipv6() {
        return;
    }
    let selector = SelectorManager::new();
    let peer = a_socket(&selector)
        .udp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = peer.local_address().port().unwrap();
    let connected = a_socket(&selector)
        .udp()
        .connect_from(("127.1", port), ("::", 0))
        .await
        .unwrap();
    let mapped = SocketAddr::new(Ipv4Addr::LOCALHOST.to_ipv6_mapped().into(), port);
    assert_eq!(connected.remote_address(), SocketAddress::from(mapped));
    connected
        .send(Datagram::new("hi", connected.remote_address()).unwrap())
        .await
        .unwrap();
    let got = within(peer.receive()).await.unwrap();
    assert_eq!(&got.packet[..], b"hi");
}

/// A UDP socket bound to an IPv6 address that is not dual-stack (`::1`) cannot reach an IPv4
/// address: `send` fails with `Error::Io` of kind `InvalidInput` naming both, as a socket bound
/// to an IPv4 address sending to an IPv6 one does, and as `connect_from` refuses the same pair;
/// nothing is sent, and the socket goes on. (Before, the OS's `ENETUNREACH`, kind
/// `NetworkUnreachable`, which reads as a routing fault: the kernel makes a socket bound to
/// `::1` IPv6-only.)
#[tokio::test]
async fn an_ipv6_only_udp_socket_sending_to_an_ipv4_address_is_invalid_input() {
    if no_ipv6() {
        return;
    }
    let selector = SelectorManager::new();
    let socket = a_socket(&selector).udp().bind(("::1", 0)).await.unwrap();
    let v4_peer = a_socket(&selector)
        .udp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let v6_peer = a_socket(&selector).udp().bind(("::1", 0)).await.unwrap();
    let v4_port = v4_peer.local_address().port().unwrap();
    for to in [
        v4_peer.local_address(),
        SocketAddress::from(SocketAddr::new(
            Ipv4Addr::LOCALHOST.to_ipv6_mapped().into(),
            v4_port,
        )),
    ] {
        let result = socket.send(Datagram::new("x", to.clone()).unwrap()).await;
        let err = match result {
            Err(e) => e,
            Ok(()) => {
                let got = tokio::time::timeout(Duration::from_millis(500), v4_peer.receive()).await;
                panic!("{to}: sent; the peer got {got:?}");
            }
        };
        assert!(matches!(err, Error::Io(_)), "{to}: {err:?}");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{to}: {err:?}");
        let message = err.to_string();
        assert!(
            message.contains(&socket.local_address().to_string()),
            "{message}"
        );
        assert!(message.contains(&to.to_string()), "{message}");
        socket
            .send(Datagram::new("still", v6_peer.local_address()).unwrap())
            .await
            .unwrap();
        let got = within(v6_peer.receive()).await.unwrap();
        assert_eq!(&got.packet[..], b"still");
    }
}
