//! The public API as a user prints and converts it: `Debug` shows state, never the
//! application's bytes or key material; addresses and streams have the conversions and traits
//! of their std counterparts; a truncation is found through every crate's error.

use std::collections::HashSet;
use std::str::FromStr;

use net_io::{Backlog, ByteReadChannel, LineEnding};
use net_sockets::{
    InetSocketAddress, ProxyProtocol, SelectorManager, SocketAddress, UnixSocketAddress, a_socket,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Whether `inner` (an error's `inner_error()`) is a TLS truncation.
fn is_truncated(inner: Option<&(dyn std::error::Error + Send + Sync + 'static)>) -> bool {
    inner.is_some_and(|inner| inner.is::<net_tls::Truncated>())
}

/// A secret a user's protocol carries in plain text (a password, a bearer token).
const SECRET: &str = "Authorization: Bearer hunter2-SECRET-TOKEN";

/// `Debug` of a `SocketStream` (and so of a `TlsStream`) shows the stream as `Socket`'s
/// `Debug` does: addresses and state, never the application bytes it holds (here the first
/// bytes a client sent, read while looking for an optional PROXY header and kept for the
/// reader), nor a dump of every internal lock and buffer (hundreds of lines).
#[tokio::test]
async fn a_socket_streams_debug_shows_no_application_bytes() {
    let selector = SelectorManager::new();
    let listener = a_socket(&selector)
        .tcp()
        .proxy_protocol(ProxyProtocol::Optional)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.port().unwrap();
    let mut client = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    client
        .write_all(format!("{SECRET}\r\n").as_bytes())
        .await
        .unwrap();
    let accepted = net_tests::within(listener.accept()).await.unwrap();
    let stream = accepted.into_stream().unwrap();
    let shown = format!("{stream:?}");
    assert!(
        !shown.contains("hunter2"),
        "Debug of a SocketStream prints the bytes it holds: {}",
        &shown[shown.find("hunter2").unwrap().saturating_sub(200)..][..300]
    );
    assert!(
        shown.len() < 1000,
        "Debug of a SocketStream is {} bytes long",
        shown.len()
    );
}

/// `Debug` of a `Backlog` (a public type of `net_io`) shows the state, not the answers it holds
/// back (application data, of any size).
#[tokio::test]
async fn a_backlogs_debug_shows_no_held_bytes() {
    let backlog = Backlog::new();
    let mut input = ByteReadChannel::new(&b"one\ntwo\n"[..]);
    input.share_backlog(backlog.clone());
    input.read_line(80, LineEnding::Default).await.unwrap();
    assert!(backlog.is_pending());
    assert!(backlog.hold(SECRET.as_bytes(), 1 << 20));
    let shown = format!("{backlog:?}");
    assert!(
        !shown.contains("hunter2"),
        "Debug of a Backlog prints the bytes it holds: {shown}"
    );
}

/// The conversions and traits a user expects of address types, as std's and tokio's have them:
/// `"127.0.0.1:80".parse()` into an `InetSocketAddress` (std's `SocketAddr` parses; the
/// crate's own type did not), `SocketAddrV4`/`SocketAddrV6` into the crate's addresses (they
/// are accepted by `connect` already), `SocketAddress` in a `BTreeMap`/sorted (both its
/// variants are `Ord`; it was not), a `Datagram` in a `HashSet` (both its fields are `Hash`),
/// and `Display` on a `SocketStream` (`TlsStream`) as on the `Socket` it dereferences to.
#[tokio::test]
async fn addresses_and_streams_have_the_std_conversions_and_traits() {
    use std::collections::{BTreeSet, HashSet};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

    use net_sockets::{Datagram, InetSocketAddress, SocketAddress, UnixSocketAddress};

    let parsed: InetSocketAddress = "127.0.0.1:9002".parse().unwrap();
    assert_eq!(parsed, InetSocketAddress::new([127, 0, 0, 1], 9002));
    let parsed: InetSocketAddress = "[::1]:9002".parse().unwrap();
    assert_eq!(parsed.to_string(), "[::1]:9002");
    assert!("localhost:80".parse::<InetSocketAddress>().is_err());

    let v4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1);
    let v6 = SocketAddrV6::new(Ipv6Addr::LOCALHOST, 2, 0, 0);
    assert_eq!(
        InetSocketAddress::from(v4).socket_addr(),
        SocketAddr::V4(v4)
    );
    assert_eq!(
        InetSocketAddress::from(v6).socket_addr(),
        SocketAddr::V6(v6)
    );
    assert_eq!(SocketAddress::from(v4).port(), Some(1));
    assert_eq!(SocketAddress::from(v6).port(), Some(2));

    let sorted: BTreeSet<SocketAddress> = [
        SocketAddress::from(UnixSocketAddress::new("/tmp/b")),
        SocketAddress::from(v6),
        SocketAddress::from(v4),
    ]
    .into_iter()
    .collect();
    assert_eq!(sorted.len(), 3);
    assert!(SocketAddress::from(v4) < SocketAddress::from(v6));

    let datagram = Datagram::new("x", v4).unwrap();
    let set: HashSet<Datagram> = [datagram.clone(), datagram].into_iter().collect();
    assert_eq!(set.len(), 1);

    let selector = SelectorManager::new();
    let listener = a_socket(&selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.port().unwrap();
    let (client, accepted) = tokio::join!(
        a_socket(&selector).tcp().connect(("127.0.0.1", port)),
        listener.accept()
    );
    let client = client.unwrap();
    let shown = client.to_string();
    let stream = client.into_stream().unwrap();
    assert_eq!(format!("{stream}"), shown);
    drop(accepted);
}

/// `Debug` of a connection's `ShutdownSignal` says whether the shutdown began, as `Socket`'s
/// `Debug` says whether it is closed: not a dump of the selector's and listener's signal tree
/// (locks, wait slots, a weak reference per listener of the selector).
#[tokio::test]
async fn a_shutdown_signals_debug_is_its_state_not_the_signal_tree() {
    let selector = SelectorManager::new();
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(
            a_socket(&selector)
                .tcp()
                .bind(("127.0.0.1", 0))
                .await
                .unwrap(),
        );
    }
    let port = listeners[0].port().unwrap();
    let (client, accepted) = tokio::join!(
        a_socket(&selector).tcp().connect(("127.0.0.1", port)),
        listeners[0].accept()
    );
    let (_client, accepted) = (client.unwrap(), accepted.unwrap());
    let shown = format!("{:?}", accepted.shutdown_signal());
    assert!(
        !shown.contains("Mutex") && !shown.contains("Weak") && shown.len() < 100,
        "Debug of a ShutdownSignal: {shown}"
    );
    assert!(shown.contains("false"), "{shown}");
}

/// `Debug` of a listener, of the datagram sockets and of their `incoming()` streams names what
/// a service's log line needs, as `Socket`'s `Debug` does for a stream: the local address, the
/// peer of a connected socket, and whether the socket is closed.
#[tokio::test]
async fn listeners_and_datagram_sockets_debug_name_their_addresses_and_state() {
    let selector = SelectorManager::new();
    let listener = a_socket(&selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let listening = listener.local_address().to_string();
    let shown = format!("{listener:?}");
    assert!(
        shown.starts_with("ServerSocket")
            && shown.contains(&listening)
            && shown.contains("closed: false"),
        "{shown}"
    );
    let shown = format!("{:?}", listener.incoming());
    assert!(
        shown.starts_with("Incoming") && shown.contains(&listening),
        "{shown}"
    );
    listener.close();
    let shown = format!("{listener:?}");
    assert!(shown.contains("closed: true"), "{shown}");

    let bound = a_socket(&selector)
        .udp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let local = bound.local_address().to_string();
    let connected = a_socket(&selector)
        .udp()
        .connect(bound.local_address())
        .await
        .unwrap();
    let connected_local = connected.local_address().to_string();
    let shown = format!("{bound:?}");
    assert!(
        shown.starts_with("BoundDatagramSocket") && shown.contains(&local),
        "{shown}"
    );
    let shown = format!("{connected:?}");
    assert!(
        shown.starts_with("ConnectedDatagramSocket")
            && shown.contains(&connected_local)
            && shown.contains(&local),
        "{shown}"
    );
    let shown = format!("{:?}", bound.incoming());
    assert!(
        shown.starts_with("DatagramIncoming") && shown.contains(&local),
        "{shown}"
    );
    for (shown, socket) in [
        (format!("{bound:?}"), "bound"),
        (format!("{connected:?}"), "connected"),
    ] {
        assert!(shown.contains("closed: false"), "{socket}: {shown}");
    }
    bound.close();
    connected.close();
    for shown in [format!("{bound:?}"), format!("{connected:?}")] {
        assert!(shown.contains("closed: true"), "{shown}");
    }
}

/// `Socket`'s `Display` is `local -> remote`, and its `Debug` names both addresses and whether
/// it is closed; a `SocketStream` prints as the socket it wraps.
#[tokio::test]
async fn a_sockets_debug_and_display_name_its_addresses_and_state() {
    let selector = SelectorManager::new();
    let listener = a_socket(&selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let (client, accepted) = tokio::join!(
        a_socket(&selector).tcp().connect(listener.local_address()),
        listener.accept()
    );
    let (client, accepted) = (client.unwrap(), accepted.unwrap());
    let (local, remote) = (
        client.local_address().to_string(),
        client.remote_address().to_string(),
    );
    assert_eq!(client.to_string(), format!("{local} -> {remote}"));
    assert_eq!(
        accepted.to_string(),
        format!("{remote} -> {local}"),
        "the accepted side"
    );
    let shown = format!("{client:?}");
    assert!(
        shown.starts_with("Socket")
            && shown.contains(&local)
            && shown.contains(&remote)
            && shown.contains("closed: false"),
        "{shown}"
    );

    let stream = accepted.into_stream().unwrap();
    assert_eq!(stream.to_string(), format!("{remote} -> {local}"));
    let shown = format!("{stream:?}");
    assert!(
        shown.starts_with("SocketStream")
            && shown.contains(&format!("{:?}", *stream))
            && shown.contains("closed: false"),
        "{shown}"
    );

    client.close();
    stream.close();
    for shown in [format!("{client:?}"), format!("{stream:?}")] {
        assert!(shown.contains("closed: true"), "{shown}");
    }
}

/// `SelectorManager`'s `Debug` says whether it is closed and whether it runs a runtime of its
/// own.
#[tokio::test]
async fn a_selectors_debug_names_its_state_and_runtime() {
    let on_this_runtime = SelectorManager::new();
    let own = SelectorManager::builder()
        .worker_threads(1)
        .build()
        .unwrap();
    for (selector, own_runtime) in [(&on_this_runtime, false), (&own, true)] {
        let shown = format!("{selector:?}");
        assert!(
            shown.starts_with("SelectorManager")
                && shown.contains("closed: false")
                && shown.contains(&format!("own_runtime: {own_runtime}")),
            "{shown}"
        );
        selector.close();
        let shown = format!("{selector:?}");
        assert!(shown.contains("closed: true"), "{shown}");
    }
}

/// Regression check (passes): no `Debug` of the TLS types a user prints (builders with a key,
/// configurations, the socket, its connection and its stream, the errors of a bad key) shows
/// private key material, as base64 (a line of the PEM) or as bytes (the DER's first bytes as
/// `Debug` prints a byte list or a byte string).
#[tokio::test]
async fn no_tls_debug_shows_private_key_material() {
    use net_tests::pki::Pki;
    use net_tls::{TlsConfig, TlsServerConfig};

    let pki = Pki::generate();
    let pems = [pki.server.key_pem(), pki.client.key_pem()];
    let ders = [pki.server.key_der(), pki.client.key_der()];
    let leaks = |shown: &str| {
        for pem in pems {
            for line in pem
                .lines()
                .filter(|l| !l.starts_with("-----") && l.len() > 16)
            {
                assert!(!shown.contains(&line[..16]), "base64 of a key in: {shown}");
            }
        }
        for der in &ders {
            let bytes = der.secret_der();
            let tail = &bytes[bytes.len() - 12..];
            let listed = format!("{tail:?}");
            assert!(
                !shown.contains(&listed[1..listed.len() - 1]),
                "key bytes in: {shown}"
            );
            let escaped = tail.escape_ascii().to_string();
            assert!(!shown.contains(&escaped), "key bytes in: {shown}");
        }
    };

    let server_builder = pki
        .server
        .sni_certificate("localhost", pki.server_config())
        .private_key_der(pki.server.key_der());
    leaks(&format!("{server_builder:?} {server_builder:#?}"));
    let client_builder = pki.client.client_certificate(pki.client_config());
    leaks(&format!("{client_builder:?} {client_builder:#?}"));
    let server_config = server_builder.build().unwrap();
    let client_config = client_builder.build().unwrap();
    leaks(&format!("{server_config:?} {client_config:#?}"));
    let mismatch = TlsServerConfig::builder()
        .certificate_chain_pem(pki.server.chain_pem().as_bytes())
        .unwrap()
        .private_key_der(pki.client.key_der())
        .build()
        .unwrap_err();
    leaks(&format!("{mismatch} {mismatch:?}"));
    let cut = &pki.server.key_pem()[..pki.server.key_pem().len() - 40];
    let bad = TlsConfig::builder()
        .client_certificate_pem(pki.client.chain_pem().as_bytes(), cut.as_bytes())
        .unwrap_err();
    leaks(&format!("{bad} {bad:?}"));

    let selector = SelectorManager::new();
    let listener = a_socket(&selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let (server, client) =
        net_tests::tls::pair(&selector, &listener, &server_config, client_config).await;
    leaks(&format!("{server:?} {client:#?}"));
    let connection = server.connection().unwrap();
    leaks(&format!("{connection:?}"));
    let stream = client.into_stream().unwrap();
    leaks(&format!("{stream:?} {stream:#?}"));
    drop((connection, stream));
}

/// A TLS peer that ends the TCP stream without `close_notify` is reported as a truncation
/// (`net_tls::Truncated`) inside the channel's error. A program whose functions return
/// `net_sockets::Result` or `net_tls::Result` gets that error through `?`, and must still find
/// the truncation: `inner_error()` on each crate's error reaches it, as on `net_io::Error`
/// (`source()` cannot: an I/O error's source skips the error it carries). Before, only
/// `net_io::Error` had `inner_error()`, and nothing in the other two reached it.
#[tokio::test]
async fn a_truncation_is_found_through_each_crates_error() {
    let selector = SelectorManager::new();
    let listener = net_tests::loopback::tcp_listener(&selector).await;
    let pki = net_tests::pki::Pki::generate();
    let (server, mut client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
    // Dropped without `close`: the peer sees the end of TCP without `close_notify`.
    drop(server);
    let mut input = client.open_read_channel().unwrap();
    let read: net_io::Error = net_tests::within(input.read_line(80, LineEnding::Default))
        .await
        .unwrap_err();
    assert!(is_truncated(read.inner_error()), "{read:?}");
    let sockets = net_sockets::Error::from(read);
    assert!(is_truncated(sockets.inner_error()), "{sockets:?}");
    let tls = net_tls::Error::from(sockets);
    assert!(is_truncated(tls.inner_error()), "{tls:?}");
    // Also after the channel reports its failure again (its inner error then shared).
    let again = net_tests::within(input.read_line(80, LineEnding::Default))
        .await
        .unwrap_err();
    assert!(is_truncated(net_tls::Error::from(again).inner_error()));
}

/// A truncation read through tokio's traits (`TlsStream`), whose error is a plain
/// `io::Error`, is found by `inner_error()` after `?` turned it into either crate's error.
#[tokio::test]
async fn a_truncation_read_through_a_tls_stream_is_found_through_each_crates_error() {
    let selector = SelectorManager::new();
    let listener = net_tests::loopback::tcp_listener(&selector).await;
    let pki = net_tests::pki::Pki::generate();
    let (server, client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
    drop(server);
    let mut stream = client.into_stream().unwrap();
    let mut buf = [0u8; 16];
    let e: std::io::Error = net_tests::within(stream.read(&mut buf)).await.unwrap_err();
    let sockets = net_sockets::Error::from(e);
    assert!(is_truncated(sockets.inner_error()), "{sockets:?}");
    let tls = net_tls::Error::from(sockets);
    assert!(is_truncated(tls.inner_error()), "{tls:?}");
    // Round trip through `io::Error` (a function returning `io::Result` in between).
    let io: std::io::Error = tls.into();
    assert!(is_truncated(net_tls::Error::from(io).inner_error()));
}

/// `Ord`, `Eq` and `Hash` of `SocketAddress` agree, also for Unix paths that `Path` equates.
#[test]
fn socket_address_ord_eq_and_hash_agree() {
    let a = SocketAddress::from(UnixSocketAddress::new("/tmp//x.sock"));
    let b = SocketAddress::from(UnixSocketAddress::new("/tmp/x.sock"));
    let c = SocketAddress::from(UnixSocketAddress::new("\0svc"));
    let d = SocketAddress::from(UnixSocketAddress::new("\0svc/"));
    let v4 = SocketAddress::from(std::net::SocketAddrV4::new([127, 0, 0, 1].into(), 1));
    let mapped: SocketAddress = "[::ffff:127.0.0.1]:1"
        .parse::<InetSocketAddress>()
        .unwrap()
        .into();
    assert_eq!(a, b);
    assert_eq!(a.cmp(&b), std::cmp::Ordering::Equal);
    assert_ne!(c.cmp(&d), std::cmp::Ordering::Equal);
    assert_ne!(v4, mapped);
    assert_ne!(v4.cmp(&mapped), std::cmp::Ordering::Equal);
    let set: HashSet<_> = [a, b, c, d, v4, mapped].into_iter().collect();
    assert_eq!(set.len(), 5);
}

/// `InetSocketAddress::from_str` takes what `connect("host:port")` takes as a literal, and
/// refuses what it refuses.
#[test]
fn inet_from_str_agrees_with_the_literal_forms_connect_takes() {
    for ok in [
        "127.0.0.1:80",
        "[::1]:80",
        "[fe80::1%2]:80",
        "[::ffff:1.2.3.4]:80",
    ] {
        let parsed = InetSocketAddress::from_str(ok).unwrap();
        assert_eq!(
            parsed.socket_addr(),
            ok.parse::<std::net::SocketAddr>().unwrap()
        );
    }
    for bad in [
        "::1:80",
        "[fe80::1%eth0]:80",
        "127.0.0.1:+80",
        "localhost:80",
        "1.2.3.4:65536",
    ] {
        assert!(InetSocketAddress::from_str(bad).is_err(), "{bad}");
    }
}

/// A typed read (`read_bytes`, `read_fully`) cut by a TLS truncation in the middle reports
/// the truncation (`inner_error()` is `Truncated`), not a plain end of stream.
#[tokio::test]
async fn a_typed_read_cut_by_a_truncation_reports_it() {
    let selector = SelectorManager::new();
    let listener = net_tests::loopback::tcp_listener(&selector).await;
    let pki = net_tests::pki::Pki::generate();
    let (mut server, mut client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
    let mut output = server.open_write_channel(true).unwrap();
    net_tests::within(output.write_fully(b"ab")).await.unwrap();
    drop(output);
    drop(server);
    let mut input = client.open_read_channel().unwrap();
    let e = net_tests::within(input.read_bytes(4)).await.unwrap_err();
    assert!(is_truncated(e.inner_error()), "read_bytes: {e:?}");
    let mut buf = [0u8; 4];
    let e = net_tests::within(input.read_fully(&mut buf))
        .await
        .unwrap_err();
    assert!(is_truncated(e.inner_error()), "read_fully: {e:?}");
    let e = net_tests::within(input.read_remaining(100))
        .await
        .unwrap_err();
    assert!(is_truncated(e.inner_error()), "read_remaining: {e:?}");
}
