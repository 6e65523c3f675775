//! Socket addresses as a user writes them and as sockets report them: `"host:port"` strings that
//! are no such thing, `Display` read back by `FromStr`, the numeric IPv4 forms the system
//! resolver reads, a Unix path that looks like an abstract name, Unix paths with odd bytes,
//! the address a UDP socket takes of a host name, and the local address behind a PROXY header.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use net_sockets::{
    Error, InetSocketAddress, SelectorManager, SocketAddress, UnixSocketAddress, a_socket,
};
use net_tests::within;

/// A `"host:port"` string with one colon too many (`"host:80:90"`, `"a:b:80"`, a port left
/// empty after a host and port) is refused with `InvalidInput` saying what was expected; the
/// hint that an IPv6 address takes brackets is given only where the host (or the whole string)
/// is one. (Before, every host with a colon got that hint: "invalid socket address
/// \"host:80:90\": an IPv6 address takes brackets before its port", which sends the user
/// looking for an IPv6 address that is not there.)
#[tokio::test]
async fn a_host_port_string_with_an_extra_colon_is_refused_for_what_it_is() {
    let selector = SelectorManager::new();
    for text in ["host:80:90", "a:b:80", "localhost:80:", "example.com:443:x"] {
        let e = a_socket(&selector).tcp().connect(text).await.unwrap_err();
        assert!(
            matches!(&e, Error::Io(io) if io.kind() == io::ErrorKind::InvalidInput),
            "{text}: {e:?}"
        );
        let message = e.to_string();
        assert!(message.contains("expected host:port"), "{text}: {message}");
        assert!(!message.contains("brackets"), "{text}: {message}");
    }
    // An IPv6 address without its brackets still gets the hint, scoped or not, with a port or
    // without one.
    for text in [
        "::1:80",
        "::ffff:127.0.0.1:80",
        "fe80::1%2:80",
        "fe80::1%eth0:80",
        "::1",
    ] {
        let e = a_socket(&selector).tcp().connect(text).await.unwrap_err();
        assert!(
            matches!(&e, Error::Io(io) if io.kind() == io::ErrorKind::InvalidInput),
            "{text}: {e:?}"
        );
        assert!(e.to_string().contains("[::1]:80"), "{text}: {e}");
    }
}

/// What an `InetSocketAddress` displays, `FromStr` reads back as the same address: IPv4, IPv6,
/// IPv6 with a numeric scope, IPv4-mapped, ports 0 and 65535; and `connect` takes the same
/// text as that address, never as a host name.
#[test]
fn an_inet_address_reads_back_what_it_displays() {
    for text in [
        "127.0.0.1:0",
        "255.255.255.255:65535",
        "[::1]:9002",
        "[fe80::1%2]:443",
        "[::ffff:127.0.0.1]:65535",
        "[2001:db8::1]:0",
    ] {
        let address: InetSocketAddress = text.parse().unwrap();
        assert_eq!(address.to_string(), text);
        assert_eq!(
            address.to_string().parse::<InetSocketAddress>(),
            Ok(address)
        );
        let outer = SocketAddress::from(address);
        assert_eq!(outer.to_string(), text);
    }
    // A host name is no address here.
    assert!("localhost:80".parse::<InetSocketAddress>().is_err());
}

/// A host that is no IP literal to `std` goes to the system resolver, which (glibc's does)
/// reads the numeric forms of `inet_aton` (`127.1`, `0x7f.1`, `2130706433`) as IPv4
/// addresses, as the `ToSocketAddress` documentation says: such a connect reaches `127.0.0.1`.
#[tokio::test]
async fn numeric_ipv4_forms_reach_the_address_the_resolver_reads() {
    let selector = SelectorManager::new();
    let listener = a_socket(&selector).tcp().bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_address().port().unwrap();
    let expected = SocketAddress::from(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    for host in ["127.1", "0x7f.1", "2130706433"] {
        let socket = within(a_socket(&selector).tcp().connect((host, port)))
            .await
            .unwrap_or_else(|e| panic!("{host}: {e:?}"));
        assert_eq!(socket.remote_address(), expected, "{host}");
        within(listener.accept()).await.unwrap();
    }
}

/// A path that begins with `@` is a file's path, not a name in the abstract namespace (which
/// begins with a NUL byte): the two are different addresses, though both display as `@svc`,
/// as `ss` shows them, and as the `UnixSocketAddress` documentation says.
#[test]
fn a_path_beginning_with_an_at_sign_is_a_path() {
    let path = UnixSocketAddress::new("@svc");
    let name = UnixSocketAddress::new("\0svc");
    assert_ne!(path, name);
    assert_eq!(path.to_string(), "@svc");
    assert_eq!(name.to_string(), "@svc");
    assert_eq!(
        path.path().as_os_str().as_encoded_bytes().first(),
        Some(&b'@')
    );
}

/// Paths with a space, a newline and a byte that is not UTF-8 bind and connect as they are, and
/// both ends report them byte for byte: the listener its own, the accepted connection its
/// client's, the client both. `Display` escapes the newline (and shows the stray byte as
/// U+FFFD), `Debug` escapes both; neither lets the newline through.
#[tokio::test]
async fn unix_paths_with_odd_bytes_are_reported_byte_for_byte() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let selector = SelectorManager::new();
    let dir = net_tests::TempDir::new("addr-odd");
    let server_path = dir.path().join(OsStr::from_bytes(b"s rv\n\xff.sock"));
    let client_path = dir.path().join(OsStr::from_bytes(b"c l\n\xfe.sock"));
    let listener = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new(&server_path))
        .await
        .unwrap();
    assert_eq!(
        listener.local_address(),
        SocketAddress::from(UnixSocketAddress::new(&server_path))
    );
    let client = within(
        a_socket(&selector)
            .tcp()
            .local_address(UnixSocketAddress::new(&client_path))
            .connect(UnixSocketAddress::new(&server_path)),
    )
    .await
    .unwrap();
    let accepted = within(listener.accept()).await.unwrap();
    for (what, reported, expected) in [
        ("client local", client.local_address(), &client_path),
        ("client remote", client.remote_address(), &server_path),
        ("accepted local", accepted.local_address(), &server_path),
        ("accepted remote", accepted.remote_address(), &client_path),
    ] {
        let unix = reported
            .as_unix()
            .unwrap_or_else(|| panic!("{what}: {reported}"));
        assert_eq!(
            unix.path().as_os_str().as_bytes(),
            expected.as_os_str().as_bytes(),
            "{what}"
        );
        let shown = reported.to_string();
        assert!(
            shown.ends_with("/c l\\n\u{fffd}.sock") || shown.ends_with("/s rv\\n\u{fffd}.sock"),
            "{what}: {shown:?}"
        );
        let debug = format!("{reported:?}");
        assert!(
            !shown.contains('\n') && !debug.contains('\n'),
            "{what}: {debug}"
        );
        assert!(debug.contains("\\n\\x"), "{what}: {debug}");
    }
}

/// A UDP `connect` to a host name is connected to the name's first resolved address, the one
/// the system resolver gives first, as its documentation says (no other is tried: no datagram
/// says whether it arrived); `bind` to a name binds that address too.
#[tokio::test]
async fn udp_to_a_host_name_takes_its_first_resolved_address() {
    use std::net::ToSocketAddrs;
    let Some(first) = ("localhost", 9)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
    else {
        net_tests::harness::skipped("localhost does not resolve");
        return;
    };
    if first.is_ipv6() && !net_tests::loopback::has_ipv6_loopback() {
        eprintln!("localhost is ::1 first, and there is no IPv6 loopback: skipping");
        return;
    }
    let selector = SelectorManager::new();
    let connected = a_socket(&selector)
        .udp()
        .connect(("localhost", 9))
        .await
        .unwrap();
    assert_eq!(connected.remote_address(), SocketAddress::from(first));
    let bound = a_socket(&selector)
        .udp()
        .bind(("localhost", 0))
        .await
        .unwrap();
    assert_eq!(
        bound.local_address().as_inet().map(|a| a.ip()),
        Some(first.ip())
    );
}

/// Behind a PROXY protocol header, an accepted socket reports the client the header names as
/// its `remote_address`, the proxy as its `proxy_address`, and its own address (where the proxy
/// connected to) as its `local_address`: the header's destination address is not reported, as
/// `Socket::local_address` says.
#[tokio::test]
async fn behind_a_proxy_header_the_local_address_is_the_sockets_own() {
    use tokio::io::AsyncWriteExt;
    let selector = SelectorManager::new();
    let listener = a_socket(&selector)
        .tcp()
        .proxy_protocol(net_sockets::ProxyProtocol::Required)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let own = listener.local_address();
    let mut proxy = tokio::net::TcpStream::connect(own.as_inet().unwrap().socket_addr())
        .await
        .unwrap();
    let proxy_address = SocketAddress::from(proxy.local_addr().unwrap());
    proxy
        .write_all(b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n")
        .await
        .unwrap();
    let accepted = within(listener.accept()).await.unwrap();
    assert_eq!(
        accepted.remote_address(),
        SocketAddress::from(SocketAddr::from(([192, 0, 2, 1], 56324)))
    );
    assert_eq!(accepted.proxy_address(), Some(proxy_address));
    assert_eq!(accepted.local_address(), own);
}
