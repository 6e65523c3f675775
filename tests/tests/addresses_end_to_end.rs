//! Addresses end to end: an IPv6 link-local address's scope id (the interface) as every
//! address a socket reports carries it (TCP's listener, client and accepted socket, a PROXY
//! protocol listener's proxy, UDP's senders), `Display` read back by `FromStr`, and TLS to
//! such an address verified against the certificate's IP SAN.
#![cfg(target_os = "linux")]

use std::net::{SocketAddr, SocketAddrV6};

use net_io::LineEnding;
use net_sockets::{
    Datagram, InetSocketAddress, ProxyProtocol, SelectorManager, SocketAddress, a_socket,
    proxy_header,
};
use net_tests::within;
use tokio::io::AsyncWriteExt;

const LINK_LOCAL_ENV: &str = "NET_TESTS_LINK_LOCAL_SCOPES";

/// The loopback's index in a network namespace of its own: its first interface.
const LO: u32 = 1;

fn scoped(address: &SocketAddress) -> u32 {
    match address.as_inet().map(|a| a.socket_addr()) {
        Some(SocketAddr::V6(v6)) => v6.scope_id(),
        other => panic!("not an IPv6 address: {other:?}"),
    }
}

/// Reads back what it displays: `[fe80::1%1]:p` is the same address, scope included.
fn reads_back(address: &SocketAddress) {
    let text = address.to_string();
    let read = text.parse::<InetSocketAddress>().unwrap();
    assert_eq!(SocketAddress::from(read), *address, "{text}");
}

/// Every address a socket reports of a link-local address (`fe80::1%1`, on the loopback of a
/// network namespace of the test's own) keeps its scope id, the interface, as the OS reports it
/// (std and tokio alike): a TCP listener's `local_address`, a client's `local_address` and
/// `remote_address`, an accepted socket's both, a PROXY protocol listener's `proxy_address`
/// (the header itself carries no scope: its client has none), a UDP socket's and the sender
/// of every datagram it receives, and the peer of a connected UDP socket; `Display` shows the
/// scope, and `FromStr` reads it back. A reply to a received datagram's address arrives, and a
/// TLS client connected to the address (in any of the forms `connect` takes) verifies it
/// against the certificate's IP SAN `fe80::1`, without the scope.
#[test]
fn link_local_scopes_are_kept_end_to_end() {
    net_tests::harness::rerun_self_in_own_netns(
        "link_local_scopes_are_kept_end_to_end_child",
        LINK_LOCAL_ENV,
        "link-local scopes kept",
    );
}

#[test]
fn link_local_scopes_are_kept_end_to_end_child() {
    net_tests::harness::run_if_child(LINK_LOCAL_ENV, async {
        let added = std::process::Command::new("ip")
            .args(["addr", "add", "fe80::1/64", "dev", "lo", "nodad"])
            .status()
            .unwrap();
        assert!(added.success(), "ip addr add: {added}");
        net_tests::harness::wait_for_local_route("fe80::1");
        let selector = SelectorManager::new();

        // TCP.
        let server = a_socket(&selector)
            .tcp()
            .bind(SocketAddrV6::new("fe80::1".parse().unwrap(), 0, 0, LO))
            .await
            .unwrap();
        let listening = server.local_address();
        assert_eq!(scoped(&listening), LO, "listener {listening}");
        assert!(
            listening.to_string().starts_with("[fe80::1%1]:"),
            "{listening}"
        );
        reads_back(&listening);
        let client = a_socket(&selector).tcp().connect(&listening).await.unwrap();
        let accepted = within(server.accept()).await.unwrap();
        for (what, address) in [
            ("client's local", client.local_address()),
            ("client's remote", client.remote_address()),
            ("accepted's local", accepted.local_address()),
            ("accepted's remote", accepted.remote_address()),
        ] {
            assert_eq!(scoped(&address), LO, "{what}: {address}");
            reads_back(&address);
        }
        assert_eq!(accepted.remote_address(), client.local_address());
        assert_eq!(accepted.local_address(), client.remote_address());
        drop((client, accepted, server));

        // A PROXY protocol listener: the proxy is the connection's peer, scope and all.
        let proxied = a_socket(&selector)
            .tcp()
            .proxy_protocol(ProxyProtocol::Required)
            .bind("[fe80::1%1]:0")
            .await
            .unwrap();
        let target = proxied.local_address().as_inet().unwrap().socket_addr();
        let mut proxy = tokio::net::TcpStream::connect(target).await.unwrap();
        let header = proxy_header::v2(
            "[2001:db8::7]:4242".parse().unwrap(),
            "[fe80::1%1]:443".parse().unwrap(),
        );
        proxy.write_all(&header).await.unwrap();
        proxy.write_all(b"hello\n").await.unwrap();
        let mut accepted = within(proxied.accept()).await.unwrap();
        assert_eq!(accepted.remote_address().to_string(), "[2001:db8::7]:4242");
        let proxy_address = accepted.proxy_address().unwrap();
        assert_eq!(
            proxy_address,
            SocketAddress::from(proxy.local_addr().unwrap())
        );
        assert_eq!(scoped(&proxy_address), LO, "proxy {proxy_address}");
        let mut input = accepted.open_read_channel().unwrap();
        let line = within(input.read_line(64, LineEnding::Default))
            .await
            .unwrap();
        assert_eq!(line.as_deref(), Some("hello"));
        drop((input, accepted, proxy, proxied));

        // UDP.
        let a = a_socket(&selector)
            .udp()
            .bind("[fe80::1%1]:0")
            .await
            .unwrap();
        let b = a_socket(&selector)
            .udp()
            .bind("[fe80::1%lo]:0")
            .await
            .unwrap();
        assert_eq!(scoped(&a.local_address()), LO, "{}", a.local_address());
        assert_eq!(scoped(&b.local_address()), LO, "{}", b.local_address());
        b.send(Datagram::new("to a", a.local_address()).unwrap())
            .await
            .unwrap();
        let got = within(a.receive()).await.unwrap();
        assert_eq!(&got.packet[..], b"to a");
        assert_eq!(got.address, b.local_address(), "sender {}", got.address);
        reads_back(&got.address);
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
        assert_eq!(scoped(&connected.local_address()), LO);
        connected
            .send(Datagram::new("connected", connected.remote_address()).unwrap())
            .await
            .unwrap();
        let got = within(a.receive()).await.unwrap();
        assert_eq!(got.address, connected.local_address());
        a.send(Datagram::new("back", got.address).unwrap())
            .await
            .unwrap();
        let back = within(connected.receive()).await.unwrap();
        assert_eq!(&back.packet[..], b"back");
        assert_eq!(back.address, a.local_address());
        drop((a, b, connected));

        // TLS, verified against the certificate's IP SAN, which has no scope.
        tls_to_a_scoped_address(&selector).await;
        selector.close();
        println!("link-local scopes kept");
    });
}

/// A link-local address given without its scope (`[fe80::1]:p`: which interface it is on is
/// not said) fails a TCP or UDP `bind`, a TCP or UDP `connect`, and a connect's
/// `local_address`, with `Error::Io` of kind `InvalidInput` whose message names the address and
/// says it needs a scope, with an example of one; the OS error, `EINVAL`, is its source. (Before,
/// the OS's bare "Invalid argument (os error 22)", which names nothing.) With its scope each
/// goes through. In a network namespace of the test's own.
#[test]
fn a_link_local_address_without_its_scope_is_named() {
    net_tests::harness::rerun_self_in_own_netns(
        "a_link_local_address_without_its_scope_is_named_child",
        UNSCOPED_ENV,
        "unscoped link-local addresses named",
    );
}

const UNSCOPED_ENV: &str = "NET_TESTS_UNSCOPED_LINK_LOCAL";

#[test]
fn a_link_local_address_without_its_scope_is_named_child() {
    net_tests::harness::run_if_child(UNSCOPED_ENV, async {
        let added = std::process::Command::new("ip")
            .args(["addr", "add", "fe80::1/64", "dev", "lo", "nodad"])
            .status()
            .unwrap();
        assert!(added.success(), "ip addr add: {added}");
        net_tests::harness::wait_for_local_route("fe80::1");
        let selector = SelectorManager::new();
        let server = a_socket(&selector)
            .tcp()
            .bind("[fe80::1%1]:0")
            .await
            .unwrap();
        let port = server.port().unwrap();
        let unscoped = format!("[fe80::1]:{port}");
        // The message names the address and says what it lacks (a connect's local address
        // in its own error's source, printed in a chain); the OS error is the last source.
        let check = |what: &str, e: net_sockets::Error, named: &str| {
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{what}: {e:?}");
            let mut chain = vec![e.to_string()];
            let mut os = None;
            let mut source = std::error::Error::source(&e);
            while let Some(error) = source {
                chain.push(error.to_string());
                if let Some(io) = error.downcast_ref::<std::io::Error>() {
                    os = io.raw_os_error().or(os);
                }
                source = error.source();
            }
            let message = chain.join(": ");
            assert!(chain[0].contains(named), "{what}: {message}");
            assert!(message.contains("without a scope"), "{what}: {message}");
            assert!(message.contains("[fe80::1%eth0]:"), "{what}: {message}");
            assert_eq!(os, Some(libc::EINVAL), "{what}: {message}");
        };
        let e = a_socket(&selector)
            .tcp()
            .bind("[fe80::1]:0")
            .await
            .unwrap_err();
        check("TCP bind", e, "[fe80::1]:0");
        let e = a_socket(&selector)
            .udp()
            .bind("[fe80::1]:0")
            .await
            .unwrap_err();
        check("UDP bind", e, "[fe80::1]:0");
        let e = a_socket(&selector)
            .tcp()
            .connect(&unscoped)
            .await
            .unwrap_err();
        check("TCP connect", e, &unscoped);
        let e = a_socket(&selector)
            .udp()
            .connect(&unscoped)
            .await
            .unwrap_err();
        check("UDP connect", e, &unscoped);
        let local: SocketAddr = "[fe80::1]:0".parse().unwrap();
        let e = a_socket(&selector)
            .tcp()
            .local_address(local)
            .connect(format!("[fe80::1%1]:{port}"))
            .await
            .unwrap_err();
        check("TCP connect's local address", e, "[fe80::1]:0");
        let e = a_socket(&selector)
            .udp()
            .connect_from(format!("[fe80::1%1]:{port}"), local)
            .await
            .unwrap_err();
        check("UDP connect_from's local address", e, "[fe80::1]:0");
        // With its scope, each goes through.
        let scoped: SocketAddr = "[fe80::1%1]:0".parse().unwrap();
        let client = a_socket(&selector)
            .tcp()
            .local_address(scoped)
            .connect(format!("[fe80::1%1]:{port}"))
            .await
            .unwrap();
        drop((client, within(server.accept()).await.unwrap()));
        let udp = a_socket(&selector).udp().bind(scoped).await.unwrap();
        let connected = a_socket(&selector)
            .udp()
            .connect_from(udp.local_address(), scoped)
            .await
            .unwrap();
        assert_eq!(connected.remote_address(), udp.local_address());
        selector.close();
        println!("unscoped link-local addresses named");
    });
}

async fn tls_to_a_scoped_address(selector: &SelectorManager) {
    use net_tls::TlsExt;
    let pki = net_tests::pki::Pki::with_server_names(&["fe80::1"]);
    let server_config = pki.server_config().build().unwrap();
    let server = a_socket(selector)
        .tcp()
        .bind("[fe80::1%1]:0")
        .await
        .unwrap();
    let port = server.port().unwrap();
    let serving = tokio::spawn(async move {
        while let Ok(socket) = server.accept().await {
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
    let address = SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), port, 0, LO));
    for (what, connected) in [
        (
            "a SocketAddr",
            a_socket(selector).tcp().connect(address).await,
        ),
        (
            "\"[fe80::1%1]:p\"",
            a_socket(selector)
                .tcp()
                .connect(format!("[fe80::1%1]:{port}"))
                .await,
        ),
        (
            "(\"fe80::1%lo\", p)",
            a_socket(selector).tcp().connect(("fe80::1%lo", port)).await,
        ),
        (
            "\"[fe80::1%lo]:p\"",
            a_socket(selector)
                .tcp()
                .connect(format!("[fe80::1%lo]:{port}"))
                .await,
        ),
    ] {
        let socket = connected.unwrap_or_else(|e| panic!("{what}: {e:?}"));
        let mut tls = within(socket.tls(pki.client_config().build().unwrap()))
            .await
            .unwrap_or_else(|e| panic!("TLS to {what}: {e:?}"));
        let mut input = tls.open_read_channel().unwrap();
        let line = within(input.read_line(64, LineEnding::Default))
            .await
            .unwrap();
        assert_eq!(line.as_deref(), Some("hi"), "{what}");
    }
    serving.abort();
}

/// A TLS client connected to an IPv4 peer written IPv4-mapped (`[::ffff:127.0.0.1]:p`, as a
/// dual-stack listener reports its IPv4 clients, and as a reply goes back to one) verifies the
/// server's certificate against the IPv4 address it reaches, `127.0.0.1`, as it does when
/// connected to `127.0.0.1:p`, and as Java (under Ktor) and Go compare the two forms; a
/// certificate for another address is still refused for its name. (Before, it was verified as
/// the IPv6 address `::ffff:127.0.0.1`, which no IPv4 host's certificate names: "certificate
/// not valid for name \"::ffff:127.0.0.1\"; certificate is only valid for
/// IpAddress(127.0.0.1)".) A name given with `server_name` is verified as it is written.
#[tokio::test]
async fn tls_to_an_ipv4_mapped_peer_verifies_its_ipv4_address() {
    use net_tls::TlsExt;
    if !net_tests::loopback::has_ipv6_loopback() {
        // An IPv4-mapped address is reached through an IPv6 socket.
        eprintln!("no IPv6 loopback: skipping");
        return;
    }
    let selector = SelectorManager::new();
    for (names, valid) in [(&["127.0.0.1"][..], true), (&["127.0.0.2"][..], false)] {
        let pki = net_tests::pki::Pki::with_server_names(names);
        let server_config = pki.server_config().build().unwrap();
        let server = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = server.port().unwrap();
        let serving = tokio::spawn(async move {
            while let Ok(socket) = server.accept().await {
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
        let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{port}").parse().unwrap();
        for (what, connected) in [
            (
                "a SocketAddr",
                a_socket(&selector).tcp().connect(mapped).await,
            ),
            (
                "\"[::ffff:127.0.0.1]:p\"",
                a_socket(&selector)
                    .tcp()
                    .connect(format!("[::ffff:127.0.0.1]:{port}"))
                    .await,
            ),
            (
                "(\"::ffff:127.0.0.1\", p)",
                a_socket(&selector)
                    .tcp()
                    .connect(("::ffff:127.0.0.1", port))
                    .await,
            ),
        ] {
            let socket = connected.unwrap_or_else(|e| panic!("{what}: {e:?}"));
            assert_eq!(
                socket.remote_address(),
                SocketAddress::from(mapped),
                "{what}"
            );
            let result = within(socket.tls(pki.client_config().build().unwrap())).await;
            if valid {
                let mut tls = result.unwrap_or_else(|e| panic!("TLS to {what}: {e}"));
                assert_eq!(tls.server_name(), Some("127.0.0.1"), "{what}");
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
        // Written out by the user, the name is verified as written.
        let socket = a_socket(&selector).tcp().connect(mapped).await.unwrap();
        let config = pki
            .client_config()
            .server_name("::ffff:127.0.0.1")
            .build()
            .unwrap();
        let e = within(socket.tls(config))
            .await
            .expect_err("an explicit mapped name");
        net_tests::tls::assert_certificate_error(&e, net_tests::tls::is_not_valid_for_name);
        serving.abort();
    }
}

/// Guard (documented in `proxy_header::v1` and `v2`): neither PROXY header carries an IPv6
/// scope id or flow information: a scoped client is written as its bare address (a v1 `TCP6`
/// line with a scope in it is no PROXY line, and a listener refuses it).
#[test]
fn proxy_headers_leave_scopes_and_flow_labels_out() {
    let source = SocketAddr::V6(SocketAddrV6::new("fe80::7".parse().unwrap(), 4242, 9, 2));
    let destination: SocketAddr = "[fe80::1%2]:443".parse().unwrap();
    assert_eq!(
        proxy_header::v1(source, destination),
        "PROXY TCP6 fe80::7 fe80::1 4242 443\r\n"
    );
    let unscoped = |a: SocketAddr| SocketAddr::new(a.ip(), a.port());
    assert_eq!(
        proxy_header::v2(source, destination),
        proxy_header::v2(unscoped(source), unscoped(destination))
    );
}
