//! Hosts whose network is set up unlike a developer's laptop, each in a network namespace of its
//! own (skipped, saying why, where one cannot be made), some with an `/etc/hosts` of their own:
//! IPv6 disabled (`net.ipv6.conf.*.disable_ipv6 = 1`), `::` made IPv6-only
//! (`net.ipv6.bindv6only = 1`), and a tiny accept queue cap (`net.core.somaxconn = 4`) with SYN
//! cookies always on; and the ephemeral ports spent towards one address of a name. Binds,
//! connects (of a name with an address this host cannot use among others) and listeners
//! behave as documented, with typed errors.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use net_io::LineEnding;
use net_sockets::{Datagram, Error, SelectorManager, SocketAddress, a_socket};
use net_tests::harness::{
    rerun_self_in_own_netns, rerun_self_in_own_netns_with_hosts, run_if_child,
};
use net_tests::within;

const CHILD: &str = "NET_TESTS_HOSTS_CHILD";

/// A name with an IPv6 and an IPv4 loopback address, a name with the IPv6 one only, and a
/// name with two IPv4 loopback addresses (which the resolver gives in this order).
const HOSTS: &str = "::1 dualhost\n127.0.0.1 dualhost\n::1 v6host\n127.0.0.1 localhost\n\
                     127.0.0.1 splithost\n127.0.0.2 splithost\n";

/// A fixed port (the namespace is the test's own).
const PORT: u16 = 5000;

/// Writes `value` to the namespace's sysctl at `path` (under `/proc/sys/net/`).
fn sysctl(path: &str, value: &str) {
    let path = format!("/proc/sys/net/{path}");
    std::fs::write(&path, value).unwrap_or_else(|e| panic!("set {path} to {value}: {e}"));
}

/// Turns IPv6 off in the namespace, as a container started with it disabled has it: `::1` is
/// gone from the loopback.
fn disable_ipv6() {
    sysctl("ipv6/conf/all/disable_ipv6", "1");
    sysctl("ipv6/conf/lo/disable_ipv6", "1");
}

/// The socket address of `address`, an IP one.
fn inet(address: &SocketAddress) -> SocketAddr {
    address.as_inet().expect("an IP address").socket_addr()
}

/// Asserts that `e` is `Error::Io` of kind `kind`.
fn assert_io(e: &Error, kind: ErrorKind, what: &str) {
    assert!(
        matches!(e, Error::Io(io) if io.kind() == kind),
        "{what}: expected {kind:?}, got {e:?}"
    );
}

/// With IPv6 disabled: binding `::1` (TCP or UDP) fails with kind `AddrNotAvailable`, while a
/// listener on `::` binds and still takes IPv4 clients, reported IPv4-mapped on both ends. A
/// TCP connect to a name with `::1` and `127.0.0.1` goes on to `127.0.0.1` (the resolver even
/// gives it first here), and with nobody listening fails with `ConnectionRefused`: the
/// `EADDRNOTAVAIL` of `::1`, an address this host cannot use, does not hide the refusal. (Before,
/// the error was the last attempt's, `::1`'s: `AddrNotAvailable`, "Cannot assign requested
/// address", as if the ephemeral ports had run out.) A name with `::1` only fails with kind
/// `AddrNotAvailable`. A UDP connect to the name takes `127.0.0.1`.
#[test]
fn ipv6_disabled() {
    rerun_self_in_own_netns_with_hosts(
        "ipv6_disabled_child",
        CHILD,
        HOSTS,
        "ipv6 disabled as documented",
    );
}

#[test]
fn ipv6_disabled_child() {
    run_if_child(CHILD, async {
        disable_ipv6();
        let selector = SelectorManager::new();
        let e = a_socket(&selector)
            .tcp()
            .bind(("::1", PORT))
            .await
            .map(|_| ())
            .unwrap_err();
        assert_io(&e, ErrorKind::AddrNotAvailable, "TCP bind ::1");
        let e = a_socket(&selector)
            .udp()
            .bind(("::1", 0))
            .await
            .map(|_| ())
            .unwrap_err();
        assert_io(&e, ErrorKind::AddrNotAvailable, "UDP bind ::1");

        // `::` binds, and IPv4 clients reach it.
        let listener = a_socket(&selector).tcp().bind(("::", PORT)).await.unwrap();
        let client = std::net::TcpStream::connect(("127.0.0.1", PORT)).unwrap();
        let accepted = within(listener.accept()).await.unwrap();
        let v4_mapped = |p: u16| SocketAddr::from((Ipv4Addr::LOCALHOST.to_ipv6_mapped(), p));
        assert_eq!(
            inet(&accepted.remote_address()),
            v4_mapped(client.local_addr().unwrap().port())
        );
        assert_eq!(inet(&accepted.local_address()), v4_mapped(PORT));
        drop((accepted, client));
        listener.close();

        // A name with both addresses: the IPv4 one is reached.
        let listener = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", PORT + 1))
            .await
            .unwrap();
        let socket = within(a_socket(&selector).tcp().connect(("dualhost", PORT + 1)))
            .await
            .unwrap();
        assert_eq!(
            inet(&socket.remote_address()),
            SocketAddr::from(([127, 0, 0, 1], PORT + 1))
        );
        drop(socket);
        listener.close();

        // Nobody listening: refused, not "cannot assign requested address".
        let e = within(a_socket(&selector).tcp().connect(("dualhost", PORT + 2)))
            .await
            .map(|_| ())
            .unwrap_err();
        assert_io(
            &e,
            ErrorKind::ConnectionRefused,
            "connect to dualhost, nobody listening",
        );
        let e = within(
            a_socket(&selector)
                .tcp()
                .connect_timeout(Duration::from_secs(5))
                .connect(("dualhost", PORT + 2)),
        )
        .await
        .map(|_| ())
        .unwrap_err();
        assert_io(
            &e,
            ErrorKind::ConnectionRefused,
            "the same with a connect timeout",
        );
        // Only an address this host cannot use: its error, typed.
        let e = within(a_socket(&selector).tcp().connect(("v6host", PORT)))
            .await
            .map(|_| ())
            .unwrap_err();
        assert_io(&e, ErrorKind::AddrNotAvailable, "connect to v6host");

        // UDP: the name's first address, which the resolver gives as the IPv4 one here.
        let server = std::net::UdpSocket::bind(("127.0.0.1", 0)).unwrap();
        let port = server.local_addr().unwrap().port();
        let udp = within(a_socket(&selector).udp().connect(("dualhost", port)))
            .await
            .unwrap();
        assert_eq!(
            inet(&udp.remote_address()),
            SocketAddr::from(([127, 0, 0, 1], port))
        );
        within(udp.send(Datagram::new("ping", udp.remote_address()).unwrap()))
            .await
            .unwrap();
        let mut buf = [0; 8];
        server
            .set_read_timeout(Some(net_tests::HANG_LIMIT))
            .unwrap();
        assert_eq!(server.recv(&mut buf).unwrap(), 4);
        let e = within(a_socket(&selector).udp().connect(("v6host", port)))
            .await
            .map(|_| ())
            .unwrap_err();
        assert_io(&e, ErrorKind::AddrNotAvailable, "UDP connect to v6host");
        println!("ipv6 disabled as documented");
    });
}

/// With every ephemeral port in use towards `127.0.0.2` (where a server listens), a connect to
/// a name with `127.0.0.1` (nobody listening: refused) and then `127.0.0.2` fails with
/// `127.0.0.2`'s error, kind `AddrNotAvailable`: the ports ran out, which a caller must see,
/// not `ConnectionRefused`, as if the server were down. (This host has a route and a source
/// address for `127.0.0.2`, so its `EADDRNOTAVAIL` is not that of an address the host cannot
/// use: before, the refusal hid it.)
#[test]
fn ports_spent_towards_one_address_of_a_name() {
    rerun_self_in_own_netns_with_hosts(
        "ports_spent_towards_one_address_of_a_name_child",
        CHILD,
        HOSTS,
        "spent ports reported as documented",
    );
}

#[test]
fn ports_spent_towards_one_address_of_a_name_child() {
    run_if_child(CHILD, async {
        sysctl("ipv4/ip_local_port_range", "40000 40001");
        let _server = std::net::TcpListener::bind(("127.0.0.2", PORT)).unwrap();
        let _held: Vec<_> = (0..2)
            .map(|_| std::net::TcpStream::connect(("127.0.0.2", PORT)).unwrap())
            .collect();
        let spent = std::net::TcpStream::connect(("127.0.0.2", PORT)).unwrap_err();
        assert_eq!(spent.kind(), ErrorKind::AddrNotAvailable, "{spent:?}");
        // The order the connect tries them in: the refused address first.
        let order: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&("splithost", PORT))
            .unwrap()
            .collect();
        let [first, second] =
            [[127, 0, 0, 1], [127, 0, 0, 2]].map(|ip| SocketAddr::from((ip, PORT)));
        assert_eq!(order, [first, second], "the resolver's order");
        let selector = SelectorManager::new();
        let e = within(a_socket(&selector).tcp().connect(("splithost", PORT)))
            .await
            .map(|_| ())
            .unwrap_err();
        assert_io(
            &e,
            ErrorKind::AddrNotAvailable,
            "connect to splithost, ports spent towards 127.0.0.2",
        );
        println!("spent ports reported as documented");
    });
}

/// A connect from a local address to a name tries only the name's addresses of the local
/// address's family, as `local_address` and `connect_from` say, and fails with
/// `Error::Resolve`, naming that family, where the name has none: `v6host` (`::1` only) from
/// `127.0.0.1`; `localhost` (`127.0.0.1` only) from `::1` and `::`, and over TCP from
/// `::ffff:127.0.0.1` (IPv4 in effect, but a TCP connect to a name keeps its IPv4-mapped
/// addresses only; a UDP socket reaches IPv4 from it). A name with both families is reached
/// from either, at the address of the local one's family. (Before this test, a connect that
/// tried every address of the name, or kept the wrong family, passed every test.)
#[test]
fn connects_from_a_local_address_keep_the_names_addresses_of_its_family() {
    rerun_self_in_own_netns_with_hosts(
        "connects_from_a_local_address_keep_the_names_addresses_of_its_family_child",
        CHILD,
        HOSTS,
        "families kept as documented",
    );
}

#[test]
fn connects_from_a_local_address_keep_the_names_addresses_of_its_family_child() {
    run_if_child(CHILD, async {
        let check = |e: &Error, host: &str, family: &str, what: &str| {
            let expected = format!("the name has no {family} address, the local address's family");
            assert!(
                matches!(e, Error::Resolve { host: h, source, .. }
                    if h == host && source.kind() == ErrorKind::NotFound
                        && source.to_string() == expected),
                "{what}: expected Resolve ({expected}), got {e:?}"
            );
        };
        let ip = |text: &str| text.parse::<std::net::IpAddr>().unwrap();
        let selector = SelectorManager::new();
        for (host, local, family, udp_too) in [
            ("v6host", "127.0.0.1", "IPv4", true),
            ("localhost", "::1", "IPv6", true),
            ("localhost", "::", "IPv6", false),
            ("localhost", "::ffff:127.0.0.1", "IPv4-mapped", false),
        ] {
            let what = format!("TCP to {host} from {local}");
            let tcp = a_socket(&selector)
                .tcp()
                .local_address(SocketAddr::new(ip(local), 0))
                .connect((host, PORT));
            let e = within(tcp).await.map(|_| ()).unwrap_err();
            check(&e, host, family, &what);
            if udp_too {
                let what = format!("UDP to {host} from {local}");
                let udp = a_socket(&selector)
                    .udp()
                    .connect_from((host, PORT), (ip(local), 0));
                let e = within(udp).await.map(|_| ()).unwrap_err();
                check(&e, host, family, &what);
            }
        }
        let v4 = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", PORT))
            .await
            .unwrap();
        let v6 = a_socket(&selector).tcp().bind(("::1", PORT)).await.unwrap();
        for (local, listener) in [("127.0.0.1", &v4), ("::1", &v6)] {
            let connect = a_socket(&selector)
                .tcp()
                .local_address(SocketAddr::new(ip(local), 0))
                .connect(("dualhost", PORT));
            let client = within(connect).await.unwrap();
            assert_eq!(
                client.remote_address(),
                listener.local_address(),
                "dualhost from {local}"
            );
        }
        println!("families kept as documented");
    });
}

/// With `net.ipv6.bindv6only = 1`, a listener bound to `::` is IPv6-only, as `bind`'s docs
/// say: an IPv4 client's connect is refused (`ConnectionRefused`), an IPv6 one is served and
/// both ends report plain IPv6 addresses, and a listener on `0.0.0.0` binds at the same port
/// and takes the IPv4 clients, reported as plain IPv4 addresses.
#[test]
fn bindv6only() {
    rerun_self_in_own_netns("bindv6only_child", CHILD, "bindv6only as documented");
}

#[test]
fn bindv6only_child() {
    run_if_child(CHILD, async {
        sysctl("ipv6/bindv6only", "1");
        let selector = SelectorManager::new();
        let v6 = a_socket(&selector).tcp().bind(("::", PORT)).await.unwrap();
        assert!(v6.with_sock_ref(|s| s.only_v6()).unwrap());
        let e = within(a_socket(&selector).tcp().connect(("127.0.0.1", PORT)))
            .await
            .map(|_| ())
            .unwrap_err();
        assert_io(
            &e,
            ErrorKind::ConnectionRefused,
            "IPv4 client of an IPv6-only ::",
        );
        let client = within(a_socket(&selector).tcp().connect(("::1", PORT)))
            .await
            .unwrap();
        let accepted = within(v6.accept()).await.unwrap();
        assert_eq!(
            inet(&accepted.local_address()),
            "[::1]:5000".parse().unwrap()
        );
        assert_eq!(accepted.remote_address(), client.local_address());
        assert_eq!(
            inet(&client.remote_address()),
            "[::1]:5000".parse().unwrap()
        );

        let v4 = a_socket(&selector)
            .tcp()
            .bind(("0.0.0.0", PORT))
            .await
            .unwrap();
        let client = within(a_socket(&selector).tcp().connect(("127.0.0.1", PORT)))
            .await
            .unwrap();
        let accepted = within(v4.accept()).await.unwrap();
        assert_eq!(
            inet(&accepted.local_address()),
            "127.0.0.1:5000".parse().unwrap()
        );
        assert_eq!(accepted.remote_address(), client.local_address());
        println!("bindv6only as documented");
    });
}

/// With `net.core.somaxconn = 4` (and SYN cookies always on, `net.ipv4.tcp_syncookies = 2`),
/// a listener with the default backlog of 1024 queues only as many unaccepted connections as
/// the cap allows (Linux caps the backlog silently, as `backlog`'s docs say): 5 here. The next
/// connect waits, its SYNs unanswered, until its `connect_timeout` ends it with
/// `Error::Timeout`; once the listener accepts, the queued connections are served, and a new
/// connect goes through.
#[test]
fn a_backlog_over_somaxconn() {
    rerun_self_in_own_netns(
        "a_backlog_over_somaxconn_child",
        CHILD,
        "somaxconn as documented",
    );
}

#[test]
fn a_backlog_over_somaxconn_child() {
    run_if_child(CHILD, async {
        sysctl("core/somaxconn", "4");
        sysctl("ipv4/tcp_syncookies", "2");
        let selector = SelectorManager::new();
        let listener = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", PORT))
            .await
            .unwrap();
        let connect = || {
            a_socket(&selector)
                .tcp()
                .connect_timeout(Duration::from_secs(1))
                .connect(("127.0.0.1", PORT))
        };
        let mut queued = Vec::new();
        let e = loop {
            assert!(queued.len() < 20, "the backlog was not capped");
            match within(connect()).await {
                Ok(socket) => queued.push(socket.connection().unwrap()),
                Err(e) => break e,
            }
        };
        assert!(matches!(e, Error::Timeout), "{e:?}");
        assert_eq!(queued.len(), 5, "connections queued with somaxconn 4");
        for client in &mut queued {
            let accepted = within(listener.accept()).await.unwrap();
            let mut server = accepted.connection().unwrap();
            server.output.write_string_utf8("hello\n").await.unwrap();
            server.output.flush().await.unwrap();
            let line = within(client.input.read_line(64, LineEnding::Default))
                .await
                .unwrap();
            assert_eq!(line.as_deref(), Some("hello"));
        }
        // The listener goes on: one more client connects and is accepted.
        let late = within(connect()).await.unwrap();
        let accepted = within(listener.accept()).await.unwrap();
        assert_eq!(accepted.remote_address(), late.local_address());
        println!("somaxconn as documented");
    });
}
