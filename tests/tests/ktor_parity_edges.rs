//! Where a Ktor user's assumption meets a difference that `coming_from_ktor.md` now states:
//! each test pins our side of it.
//!
//! - A host name given to `bind` (TCP, UDP) or to a UDP `connect` is its first resolved
//!   address, in the system resolver's order: `localhost` is `::1` first where `/etc/hosts`
//!   lists it (Debian, Ubuntu) and IPv6 is up, where the JDK under Ktor prefers `127.0.0.1`.
//! - `available_for_read` counts only what reads took from the socket: nothing reads in the
//!   background (Ktor's socket channels are filled by a reader coroutine).
//! - A connected datagram socket reports an ICMP "port unreachable" once and goes on
//!   (Ktor's `incoming` ends, without an error, at the first I/O error of a receive).
//! - `read_until` at the end of the input: `None`, and a tail without the delimiter stays
//!   readable (Ktor's `readUntil` throws an `IOException` there, or with `ignoreMissing`
//!   returns how many bytes it wrote before the end).
//! - On a datagram socket bound to `::`, an IPv4 peer's address is IPv4-mapped, as a TCP
//!   listener's clients are (the JDK under Ktor gives the IPv4 address).
//! - A socket whose two directions both ended (the peer's end read, the write channel closed)
//!   closes itself: `is_closed` and `await_closed` say so without a `close` (Ktor's socket
//!   closes only once `close` is called). And `close` sends nothing the write channel still
//!   holds, resetting the connection instead (Ktor's `close` flushes the write channel first).
//! - Without auto-flush, a write channel holds up to 8 KiB until `flush`, and writes out what
//!   it holds when a write does not fit (Ktor's holds up to 1 MiB unflushed).
//! - `SocketOptions`' defaults are Ktor's where Ktor has the option, but for the backlog and
//!   `reuse_address` on TCP listeners, as its docs now say (they said "with Ktor's defaults").

use std::io::ErrorKind;
use std::mem::MaybeUninit;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use net_io::{ByteChannel, ByteReadChannel, Error as IoError};
use net_sockets::{Datagram, Error, SelectorManager, SocketAddress, SocketOptions, a_socket};
use net_tests::harness::{rerun_self_in_own_netns_with_hosts, run_if_child};
use net_tests::loopback::{
    connected_pair, has_ipv6_loopback, next_item, tcp_listener, unbound_udp_address,
};
use net_tests::{payload, pending_after_one_poll, within};

const CHILD: &str = "NET_TESTS_KTOR_PARITY_EDGES_CHILD";

/// `localhost` as Debian's and Ubuntu's `/etc/hosts` list it: the IPv4 line first.
const DEBIAN_HOSTS: &str = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n";

/// The IP socket address of `address`.
fn inet(address: &SocketAddress) -> SocketAddr {
    address.as_inet().expect("an IP address").socket_addr()
}

/// With Debian's `/etc/hosts`, in a network namespace of its own (skipped, saying why, where
/// none can be made): `bind(("localhost", p))` binds the resolver's first address only, which
/// is `::1` (Ktor on the JVM binds `127.0.0.1`, the JDK preferring IPv4), so a client of
/// `127.0.0.1` is refused while a connect to the name, which tries every address, gets
/// through. A UDP bind and a UDP connect to the name take `::1` too.
#[test]
fn a_host_name_binds_the_resolvers_first_address_which_for_localhost_may_be_ipv6() {
    rerun_self_in_own_netns_with_hosts(
        "a_host_name_binds_the_resolvers_first_address_child",
        CHILD,
        DEBIAN_HOSTS,
        "bind of localhost as documented",
    );
}

#[test]
fn a_host_name_binds_the_resolvers_first_address_child() {
    run_if_child(CHILD, async {
        let first = ("localhost", 0)
            .to_socket_addrs()
            .expect("localhost resolves")
            .next()
            .expect("an address for localhost");
        if std::net::TcpListener::bind("[::1]:0").is_err() || !first.is_ipv6() {
            // A host without an IPv6 loopback (or a resolver that gives IPv4 first) binds
            // 127.0.0.1, as Ktor does: nothing to tell apart.
            net_tests::harness::skipped(&format!(
                "no IPv6 loopback first for localhost ({first}): its IPv6 part"
            ));
            println!("bind of localhost as documented (no IPv6 loopback first: {first})");
            return;
        }
        let selector = SelectorManager::new();
        let listener = a_socket(&selector)
            .tcp()
            .bind(("localhost", 0))
            .await
            .unwrap();
        let bound = inet(&listener.local_address());
        assert_eq!(bound.ip(), first.ip(), "the resolver's first address");
        let port = bound.port();
        let e = within(a_socket(&selector).tcp().connect(("127.0.0.1", port)))
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(&e, Error::Io(io) if io.kind() == ErrorKind::ConnectionRefused),
            "a client of 127.0.0.1: {e:?}"
        );
        let client = within(a_socket(&selector).tcp().connect(("localhost", port)))
            .await
            .unwrap();
        let accepted = within(listener.accept()).await.unwrap();
        assert_eq!(accepted.remote_address(), client.local_address());

        let udp = a_socket(&selector)
            .udp()
            .bind(("localhost", 0))
            .await
            .unwrap();
        let udp_address = inet(&udp.local_address());
        assert_eq!(udp_address.ip(), first.ip());
        let connected = a_socket(&selector)
            .udp()
            .connect(("localhost", udp_address.port()))
            .await
            .unwrap();
        assert_eq!(inet(&connected.remote_address()), udp_address);
        println!("bind of localhost as documented");
    });
}

/// Bytes that reached this host's socket are not counted by `available_for_read` until a
/// read takes them (Ktor's `availableForRead` on a socket's channel counts what its reader
/// coroutine already took): 0 before, all of them after `await_content(1)`.
#[tokio::test]
async fn available_for_read_counts_only_what_reads_took_from_the_socket() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut client, mut server) = connected_pair(&selector, &listener).await;
    let mut output = client.open_write_channel(false).unwrap();
    let mut input = server.open_read_channel().unwrap();
    output.write_fully(b"abc").await.unwrap();
    output.flush().await.unwrap();
    // Wait (bounded) until the three bytes are in the server's socket, without taking them.
    let started = Instant::now();
    loop {
        let queued = server
            .with_sock_ref(|s| s.peek(&mut [MaybeUninit::new(0); 8]))
            .unwrap();
        if queued == 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the bytes never reached the socket"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(input.available_for_read(), 0);
    assert!(!input.is_closed_for_read());
    assert!(within(input.await_content(1)).await.unwrap());
    assert_eq!(input.available_for_read(), 3);
    client.close();
    server.close();
}

/// A connected datagram socket whose peer's port is closed: the ICMP "port unreachable" for
/// its datagram is one `Err` item of `incoming()`, of kind `ConnectionRefused`, and the stream
/// goes on: the next datagram, once a socket is bound there, is the next item (Ktor's
/// `incoming` ends for good at such an error, which it does not report).
#[tokio::test]
async fn a_connected_udp_socket_reports_port_unreachable_once_and_receives_on() {
    let selector = SelectorManager::new();
    let (peer, reserved) = unbound_udp_address();
    let socket = a_socket(&selector)
        .udp()
        .connect(peer.clone())
        .await
        .unwrap();
    socket
        .send(Datagram::new(&b"ping"[..], peer.clone()).unwrap())
        .await
        .unwrap();
    let mut incoming = socket.incoming();
    let first = within(next_item(&mut incoming))
        .await
        .expect("an item, not the end");
    assert!(
        matches!(&first, Err(Error::Io(e)) if e.kind() == ErrorKind::ConnectionRefused),
        "the ICMP error: {first:?}"
    );
    let answering = std::net::UdpSocket::bind(inet(&peer)).unwrap();
    drop(reserved);
    answering
        .send_to(b"pong", inet(&socket.local_address()))
        .unwrap();
    let second = within(next_item(&mut incoming))
        .await
        .expect("an item, not the end")
        .unwrap();
    assert_eq!(&second.packet[..], b"pong");
    assert_eq!(second.address, peer);
    assert!(!socket.is_closed());
}

/// `read_until` at the end of the input is `None` (also for an empty input), and a tail
/// without the delimiter is `UnexpectedEof` with the tail left to read (Ktor's `readUntil`
/// throws an `IOException` at the end, empty input included; with `ignoreMissing` it returns
/// how many bytes it wrote before the end).
#[tokio::test]
async fn read_until_at_the_end_is_none_and_a_tail_without_delimiter_stays_readable() {
    let mut empty = ByteReadChannel::from_bytes("");
    assert_eq!(within(empty.read_until(b"\r\n", 64)).await.unwrap(), None);

    let mut input = ByteReadChannel::from_bytes("a\r\ntail");
    assert_eq!(
        within(input.read_until(b"\r\n", 64))
            .await
            .unwrap()
            .as_deref(),
        Some(&b"a"[..])
    );
    let e = within(input.read_until(b"\r\n", 64)).await.unwrap_err();
    assert!(
        matches!(e, IoError::UnexpectedEof { available: 4, .. }),
        "{e:?}"
    );
    assert_eq!(input.available_for_read(), 4);
    assert_eq!(
        within(input.read_remaining(64)).await.unwrap(),
        &b"tail"[..]
    );
    assert_eq!(within(input.read_until(b"\r\n", 64)).await.unwrap(), None);
    assert!(input.is_closed_for_read());
}

/// `SocketOptions`' defaults, next to Ktor's `SocketOptions` (`TCPClientSocketOptions`,
/// `AcceptorOptions`, `UDPSocketOptions`): `noDelay` on, `keepAlive` and `lingerSeconds` the
/// OS's (off), no `socketTimeout`, the OS's buffer sizes and type of service, `reusePort` and
/// `broadcast` off, the same here; the backlog is 1,024 (Ktor's 511), and `SO_REUSEADDR` is
/// on for a TCP listener (Ktor's `reuseAddress` is off) and off for connected and datagram
/// sockets, as in Ktor.
#[tokio::test]
async fn the_option_defaults_are_ktors_but_for_the_backlog_and_a_listeners_reuse_address() {
    let defaults = SocketOptions::default();
    assert!(defaults.no_delay);
    assert_eq!(defaults.keep_alive, None);
    assert_eq!(defaults.linger, None);
    assert_eq!(defaults.socket_timeout, None);
    assert_eq!(defaults.send_buffer_size, None);
    assert_eq!(defaults.receive_buffer_size, None);
    assert_eq!(defaults.type_of_service, None);
    assert!(!defaults.reuse_port);
    assert!(!defaults.broadcast);
    assert_eq!(defaults.backlog, 1024, "Ktor's backlogSize is 511");
    assert_eq!(defaults.reuse_address, None);

    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    assert!(listener.with_sock_ref(|s| s.reuse_address()).unwrap());
    let (client, server) = connected_pair(&selector, &listener).await;
    for socket in [&client, &server] {
        assert!(socket.with_sock_ref(|s| s.tcp_nodelay()).unwrap());
        assert!(!socket.with_sock_ref(|s| s.keepalive()).unwrap());
        assert_eq!(socket.with_sock_ref(|s| s.linger()).unwrap(), None);
    }
    // An accepted socket has the listener's (the kernel copies it), as under the JDK.
    assert!(!client.with_sock_ref(|s| s.reuse_address()).unwrap());
    let udp = a_socket(&selector)
        .udp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    assert!(!udp.with_sock_ref(|s| s.reuse_address()).unwrap());
    assert!(!udp.with_sock_ref(|s| s.broadcast()).unwrap());
}

/// A datagram socket bound to `::` (dual-stack, as the OS makes it by default) reports an IPv4
/// peer IPv4-mapped, `[::ffff:127.0.0.1]:p`, in `Datagram::address` (Ktor on the JVM gives
/// `/127.0.0.1:p`: compare `ip().to_canonical()`), and a reply to that address reaches the peer.
#[tokio::test]
async fn a_dual_stack_datagram_socket_reports_ipv4_peers_ipv4_mapped() {
    if !has_ipv6_loopback() {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    }
    let selector = SelectorManager::new();
    let socket = a_socket(&selector).udp().bind(("::", 0)).await.unwrap();
    if socket.with_sock_ref(|s| s.only_v6()).unwrap() {
        net_tests::harness::skipped("`::` is IPv6-only here (net.ipv6.bindv6only = 1)");
        return;
    }
    let port = inet(&socket.local_address()).port();
    let peer = std::net::UdpSocket::bind(("127.0.0.1", 0)).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    peer.send_to(b"ping", ("127.0.0.1", port)).unwrap();
    let datagram = within(socket.receive()).await.unwrap();
    let from = inet(&datagram.address);
    let peer_address = peer.local_addr().unwrap();
    assert_eq!(
        from.ip().to_string(),
        format!("::ffff:{}", peer_address.ip()),
        "IPv4-mapped"
    );
    assert_eq!(from.ip().to_canonical(), peer_address.ip());
    assert_eq!(from.port(), peer_address.port());
    socket
        .send(Datagram::new(&b"pong"[..], datagram.address).unwrap())
        .await
        .unwrap();
    let mut reply = [0; 8];
    let (n, _) = peer.recv_from(&mut reply).unwrap();
    assert_eq!(&reply[..n], b"pong");
}

/// Both directions of a socket ended, and no `close`: the socket is closed all the same
/// (`is_closed`, `await_closed`), where Ktor's stays open until `close` is called.
#[tokio::test]
async fn a_socket_whose_directions_both_ended_closes_itself_without_close() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut client, mut server) = connected_pair(&selector, &listener).await;
    let mut input = client.open_read_channel().unwrap();
    let mut output = client.open_write_channel(false).unwrap();
    let mut server_output = server.open_write_channel(false).unwrap();
    server_output.write_fully(b"x\n").await.unwrap();
    server_output.flush_and_close().await.unwrap();
    assert_eq!(
        within(input.read_utf8_line(8)).await.unwrap().as_deref(),
        Some("x")
    );
    assert_eq!(within(input.read_utf8_line(8)).await.unwrap(), None);
    assert!(!client.is_closed(), "only the read direction ended");
    output.flush_and_close().await.unwrap();
    within(client.await_closed()).await;
    assert!(client.is_closed());
    server.close();
}

/// A line written to a channel that does not auto-flush, then `close`: the line is not sent,
/// and the peer's read fails with a reset rather than ending cleanly (Ktor's `close` flushes
/// and closes the write channel first, so its peer gets the line, then the end).
#[tokio::test]
async fn close_sends_nothing_the_write_channel_still_holds_and_resets() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut client, mut server) = connected_pair(&selector, &listener).await;
    let mut output = client.open_write_channel(false).unwrap();
    let mut input = server.open_read_channel().unwrap();
    output.write_string_utf8("bye\n").await.unwrap();
    client.close();
    let e = within(input.read_utf8_line(8)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e:?}");
    assert_eq!(input.total_bytes_read(), 0);
    server.close();
}

/// Nine writes of 1 KiB to a channel that does not auto-flush, and no `flush`: the first eight
/// KiB reach the reader as the eighth fills the buffer, the ninth stays held until `flush`
/// (Ktor's `ByteChannel` holds up to 1 MiB of writes until `flush`, so its reader would see
/// none of them).
#[tokio::test]
async fn without_auto_flush_a_write_channel_holds_8_kib_not_a_mebibyte() {
    let (mut output, mut input) = ByteChannel::new(false);
    let data = payload(9 * 1024);
    for chunk in data.chunks(1024) {
        within(output.write_fully(chunk)).await.unwrap();
    }
    let first = within(input.read_bytes(8 * 1024)).await.unwrap();
    assert_eq!(&first[..], &data[..8 * 1024]);
    {
        let more = std::pin::pin!(input.await_content(1));
        assert!(
            pending_after_one_poll(more).await,
            "the last KiB waits for a flush"
        );
    }
    within(output.flush()).await.unwrap();
    let rest = within(input.read_bytes(1024)).await.unwrap();
    assert_eq!(&rest[..], &data[8 * 1024..]);
}
