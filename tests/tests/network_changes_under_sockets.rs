//! The host's network changing under sockets that stay open, as it does under servers and
//! clients that run for months: an address removed and added again (a DHCP renewal, a
//! container's network reconfigured, a VPN reconnecting), the route to a peer missing and then
//! back, the link's MTU lowered. Each test runs in a network namespace of its own (skipped,
//! saying why, where one cannot be made), with its addresses on the namespace's loopback (which
//! takes any number; this kernel may lack the `dummy` link type), so that both ends of a
//! connection lose the address at once and the kernel has neither a route nor a source address
//! for it meanwhile.
//!
//! Covered: a listener bound to an address that goes keeps waiting and serves again once it is
//! back (connects to it meanwhile fail at once with `NetworkUnreachable`); TCP and TLS
//! connections over such an address see no error at all and lose nothing, the kernel
//! trying again until it is back (and ending as a timeout when it stays away longer than
//! `tcp_user_timeout`); UDP sends meanwhile fail typed, one by one, and the socket
//! works again afterwards; a lowered MTU under open connections; connects without a route
//! fail at once, remember nothing, and a name's unroutable address does not hide another's
//! answer.

use std::io::ErrorKind;
use std::process::Command;

use net_io::{ByteReadChannel, ByteWriteChannel};
use net_sockets::{Datagram, Error, SelectorManager, Socket, Transport, a_socket};
use net_tests::harness::{
    rerun_self_in_own_netns, rerun_self_in_own_netns_with_hosts, run_if_child, status,
};
use net_tests::loopback::next_item;
use net_tests::pki::Pki;
use net_tests::probe::tcp_info;
use net_tests::{pending_after_one_poll, within};
use net_tls::TlsExt as _;

const CHILD: &str = "NET_TESTS_NETCHANGE_CHILD";

/// The address that comes and goes, on the namespace's loopback.
const MOVING: &str = "10.9.0.1";

/// An address this namespace has no route to until a test adds it.
const UNROUTED: &str = "10.10.0.1";

/// Runs `ip` with `args` (words separated by spaces) in the test's namespace.
fn ip(args: &str) {
    let done = status(Command::new("ip").args(args.split(' ')));
    assert!(
        done.as_ref().is_ok_and(|s| s.success()),
        "ip {args}: {done:?}"
    );
}

/// The IPv6 address that comes and goes, on the namespace's loopback.
const MOVING_V6: &str = "fd00:9::1";

/// `address` with the prefix of a single address (/32, /128): its only route is its own
/// local one.
fn single(address: &str) -> String {
    let bits = if address.contains(':') { 128 } else { 32 };
    format!("{address}/{bits}")
}

/// Adds `address` to the loopback, and waits for its local route (IPv6's comes a moment
/// later: see `wait_for_local_route`).
fn add(address: &str) {
    ip(&format!("addr add {} dev lo", single(address)));
    if address.contains(':') {
        net_tests::harness::wait_for_local_route(address);
    }
}

/// Removes `address` from the loopback: its local route goes with it.
fn remove(address: &str) {
    ip(&format!("addr del {} dev lo", single(address)));
}

/// Asserts that `e` is the OS's `ENETUNREACH`, as `Error::Io`.
fn assert_unreachable(e: &Error, what: &str) {
    assert!(
        matches!(e, Error::Io(io) if io.raw_os_error() == Some(libc::ENETUNREACH)),
        "{what}: {e:?}"
    );
    assert_eq!(e.kind(), ErrorKind::NetworkUnreachable, "{what}");
}

/// How many times the kernel tried to send the data `socket`'s connection holds and found no
/// route, backing off each time (`TCP_INFO`'s `tcpi_probes`: its probe timer's count, which a
/// send that goes through sets back to zero).
fn failed_sends<T: Transport>(socket: &Socket<T>) -> u8 {
    use std::os::fd::AsRawFd as _;
    socket
        .with_sock_ref(|s| tcp_info(s.as_raw_fd()).map(|info| info.tcpi_probes))
        .unwrap()
}

/// Waits (bounded) until the kernel has tried to send what `socket` holds and failed: the
/// address was gone.
async fn wait_for_a_failed_send<T: Transport>(socket: &Socket<T>) {
    within(async {
        while failed_sends(socket) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// A listener bound to an address that is removed keeps listening: an `accept` under way, and
/// `incoming()`, wait (neither fails nor ends) while connects to the address fail at once with
/// the OS's `ENETUNREACH` (kind `NetworkUnreachable`) and a new bind to it (a listener's, a
/// connect's `local_address`) with `AddrNotAvailable`; a listener on `0.0.0.0` goes on serving the addresses that stay. Once
/// the address is back, the waiting `accept` takes the next connection and `incoming()` the one
/// after, as on a listener whose address never went.
#[test]
fn a_listener_on_an_address_removed_and_added_again() {
    rerun_self_in_own_netns(
        "a_listener_on_an_address_removed_and_added_again_child",
        CHILD,
        "the listener served again",
    );
}

#[test]
fn a_listener_on_an_address_removed_and_added_again_child() {
    run_if_child(CHILD, async {
        let selector = SelectorManager::new();
        add(MOVING);
        let listener = a_socket(&selector).tcp().bind((MOVING, 0)).await.unwrap();
        let port = listener.port().unwrap();
        let every = a_socket(&selector)
            .tcp()
            .bind(("0.0.0.0", 0))
            .await
            .unwrap();
        let every_port = every.port().unwrap();
        let mut accept = Box::pin(listener.accept());
        assert!(pending_after_one_poll(accept.as_mut()).await);

        remove(MOVING);
        for target in [port, every_port] {
            let e = within(a_socket(&selector).tcp().connect((MOVING, target)))
                .await
                .map(|_| ())
                .unwrap_err();
            assert_unreachable(&e, "a connect to the removed address");
        }
        let e = a_socket(&selector)
            .tcp()
            .bind((MOVING, 0))
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AddrNotAvailable, "{e:?}");
        let from: std::net::SocketAddr = format!("{MOVING}:0").parse().unwrap();
        let e = within(
            a_socket(&selector)
                .tcp()
                .local_address(from)
                .connect(("127.0.0.1", every_port)),
        )
        .await
        .map(|_| ())
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AddrNotAvailable, "{e:?}");
        // The listener on every address serves the loopback meanwhile.
        let _client = within(a_socket(&selector).tcp().connect(("127.0.0.1", every_port)))
            .await
            .unwrap();
        within(every.accept()).await.unwrap();
        assert!(
            pending_after_one_poll(accept.as_mut()).await,
            "the accept under way ended"
        );

        add(MOVING);
        let first = within(a_socket(&selector).tcp().connect((MOVING, port)))
            .await
            .unwrap();
        let accepted = within(accept).await.unwrap();
        assert_eq!(accepted.remote_address(), first.local_address());
        let mut incoming = listener.incoming();
        let second = within(a_socket(&selector).tcp().connect((MOVING, port)))
            .await
            .unwrap();
        let accepted = next_item(&mut incoming).await.unwrap().unwrap();
        assert_eq!(accepted.remote_address(), second.local_address());
        println!("the listener served again");
    });
}

/// Writes `size` bytes of `byte` and flushes.
async fn write(output: &mut ByteWriteChannel, byte: u8, size: usize) {
    within(async {
        output.write_fully(&vec![byte; size]).await?;
        output.flush().await
    })
    .await
    .expect("a write while the address is gone");
}

/// Reads `size` bytes and asserts each is `byte`.
async fn read(input: &mut ByteReadChannel, byte: u8, size: usize) {
    let mut got = vec![0; size];
    within(input.read_fully(&mut got))
        .await
        .expect("the read of what was written while the address was gone");
    assert!(got.iter().all(|&b| b == byte), "bytes changed on the way");
}

/// 200 KB: more than one round of segments, fewer than the buffers hold.
const WRITTEN: usize = 200_000;

/// TCP and TLS connections over an address removed and added again (IPv4 and IPv6) lose nothing
/// and see no error: while it is gone, writes (and flushes) on both ends succeed, the kernel keeping the
/// data and trying to send it again and again, backing off (its failed route is a soft error,
/// reported only if the connection times out); once it is back, everything written arrives
/// whole, both ways, and the connections go on.
#[test]
fn connections_over_an_address_removed_and_added_again_lose_nothing() {
    rerun_self_in_own_netns(
        "connections_over_an_address_removed_and_added_again_lose_nothing_child",
        CHILD,
        "nothing lost",
    );
}

#[test]
fn connections_over_an_address_removed_and_added_again_lose_nothing_child() {
    run_if_child(CHILD, async {
        let selector = SelectorManager::new();
        let families = if net_tests::loopback::has_ipv6_loopback() {
            &[MOVING, MOVING_V6][..]
        } else {
            eprintln!("no IPv6 here: IPv4 only");
            &[MOVING][..]
        };
        for &moving in families {
            add(moving);
            let listener = a_socket(&selector).tcp().bind((moving, 0)).await.unwrap();
            let port = listener.port().unwrap();

            // Plain TCP.
            let client = within(a_socket(&selector).tcp().connect((moving, port)))
                .await
                .unwrap();
            let server = within(listener.accept()).await.unwrap();
            let mut client = client.connection().unwrap();
            let mut server = server.connection().unwrap();
            remove(moving);
            write(&mut client.output, 1, WRITTEN).await;
            write(&mut server.output, 2, WRITTEN).await;
            wait_for_a_failed_send(&client.socket).await;
            add(moving);
            read(&mut server.input, 1, WRITTEN).await;
            read(&mut client.input, 2, WRITTEN).await;
            write(&mut client.output, 3, 10).await;
            read(&mut server.input, 3, 10).await;

            // TLS, its certificate for `localhost`.
            let pki = Pki::generate();
            let server_config = pki.server_config().build().unwrap();
            let client_config = pki
                .client_config()
                .server_name("localhost")
                .build()
                .unwrap();
            let connect = async {
                let socket = a_socket(&selector).tcp().connect((moving, port)).await?;
                socket.tls(client_config).await
            };
            let accept = async { listener.accept().await?.tls_server(&server_config).await };
            let (client, server) = within(async { tokio::join!(connect, accept) }).await;
            let mut client = client.unwrap().connection().unwrap();
            let mut server = server.unwrap().connection().unwrap();
            remove(moving);
            write(&mut client.output, 4, WRITTEN).await;
            write(&mut server.output, 5, WRITTEN).await;
            wait_for_a_failed_send(&client.socket).await;
            add(moving);
            read(&mut server.input, 4, WRITTEN).await;
            read(&mut client.input, 5, WRITTEN).await;
            write(&mut client.output, 6, 10).await;
            read(&mut server.input, 6, 10).await;
        }
        println!("nothing lost");
    });
}

/// UDP sockets while their IPv4 address is gone: a send from a socket bound to it, and a send of
/// a socket connected to it, fail at once with the OS's `ENETUNREACH` (`Error::Io`, kind
/// `NetworkUnreachable`), and so does a send to it; nothing is sent. No failure poisons a
/// socket: a `receive` under way meanwhile goes on waiting, and once the address is back the
/// same sockets send, and receive what is sent to them.
#[test]
fn udp_sockets_while_their_address_is_gone() {
    rerun_self_in_own_netns(
        "udp_sockets_while_their_address_is_gone_child",
        CHILD,
        "the sockets work again",
    );
}

#[test]
fn udp_sockets_while_their_address_is_gone_child() {
    run_if_child(CHILD, async {
        let selector = SelectorManager::new();
        add(MOVING);
        let bound = a_socket(&selector).udp().bind((MOVING, 0)).await.unwrap();
        let peer = a_socket(&selector)
            .udp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let connected = a_socket(&selector)
            .udp()
            .connect(bound.local_address())
            .await
            .unwrap();
        let mut receive = Box::pin(bound.receive());
        assert!(pending_after_one_poll(receive.as_mut()).await);

        remove(MOVING);
        let to_peer = Datagram::new("from the removed address", peer.local_address()).unwrap();
        let e = within(bound.send(to_peer)).await.unwrap_err();
        assert_unreachable(&e, "a send from the removed address");
        let to_bound = Datagram::new("to the removed address", bound.local_address()).unwrap();
        let e = within(connected.send(to_bound.clone())).await.unwrap_err();
        assert_unreachable(&e, "a connected socket's send to the removed address");
        let e = within(peer.send(to_bound)).await.unwrap_err();
        assert_unreachable(&e, "a send to the removed address");
        assert!(
            pending_after_one_poll(receive.as_mut()).await,
            "the receive under way ended"
        );

        add(MOVING);
        let back = Datagram::new("back", bound.local_address()).unwrap();
        within(connected.send(back)).await.unwrap();
        let got = within(receive).await.unwrap();
        assert_eq!(&got.packet[..], b"back");
        assert_eq!(got.address, connected.local_address());
        let reply = Datagram::new("reply", peer.local_address()).unwrap();
        within(bound.send(reply)).await.unwrap();
        let got = within(peer.receive()).await.unwrap();
        assert_eq!(&got.packet[..], b"reply");
        println!("the sockets work again");
    });
}

/// The loopback's MTU lowered to 1,280 bytes (IPv6's least) under open connections: a TCP and a
/// TLS connection carry 1 MiB each way whole (the kernel learns the smaller size from its own
/// "fragmentation needed" and resends); a UDP datagram larger than the new MTU (3,000 bytes,
/// and the largest, 65,507) goes in IP fragments and arrives whole, as guarantees.md's row on
/// fragments says, and one byte more is `Error::DatagramTooLarge`, as before.
#[test]
fn a_lowered_mtu_under_open_sockets() {
    rerun_self_in_own_netns(
        "a_lowered_mtu_under_open_sockets_child",
        CHILD,
        "the smaller MTU carried everything",
    );
}

/// 1 MiB.
const BIG: usize = 1 << 20;

#[test]
fn a_lowered_mtu_under_open_sockets_child() {
    run_if_child(CHILD, async {
        let selector = SelectorManager::new();
        let listener = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = listener.port().unwrap();
        let client = within(a_socket(&selector).tcp().connect(("127.0.0.1", port)))
            .await
            .unwrap();
        let server = within(listener.accept()).await.unwrap();
        let mut plain = (client.connection().unwrap(), server.connection().unwrap());
        let pki = Pki::generate();
        let (client, server) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
        let mut tls = (client.connection().unwrap(), server.connection().unwrap());
        let bound = a_socket(&selector)
            .udp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let sender = a_socket(&selector)
            .udp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();

        ip("link set lo mtu 1280");
        let (client, server) = &mut plain;
        let (_, ()) = tokio::join!(
            write(&mut client.output, 7, BIG),
            read(&mut server.input, 7, BIG)
        );
        let (_, ()) = tokio::join!(
            write(&mut server.output, 8, BIG),
            read(&mut client.input, 8, BIG)
        );
        let (client, server) = &mut tls;
        let (_, ()) = tokio::join!(
            write(&mut client.output, 9, BIG),
            read(&mut server.input, 9, BIG)
        );
        let (_, ()) = tokio::join!(
            write(&mut server.output, 10, BIG),
            read(&mut client.input, 10, BIG)
        );
        for size in [3_000, 65_507] {
            let datagram = Datagram::new(vec![11; size], bound.local_address()).unwrap();
            within(sender.send(datagram)).await.unwrap();
            let got = within(bound.receive()).await.unwrap();
            assert_eq!(got.packet.len(), size);
        }
        let e = Datagram::new(vec![0; 65_508], bound.local_address()).unwrap_err();
        assert!(
            matches!(e, Error::DatagramTooLarge { size: 65_508 }),
            "{e:?}"
        );
        println!("the smaller MTU carried everything");
    });
}

/// A name with an address this namespace has no route to, then the loopback's.
const HOSTS: &str = "127.0.0.1 localhost\n10.10.0.1 gateway\n127.0.0.1 gateway\n";

/// Connects while the route is missing fail at once (never at `connect_timeout`) with the OS's
/// `ENETUNREACH` (kind `NetworkUnreachable`), TCP and UDP alike; a name with an address that
/// has no route and one served (`127.0.0.1`) connects to the one served, and with nobody
/// listening there the error is that address's `ConnectionRefused`, not the unroutable one's
/// (glibc's resolver gives an address without a route last). Nothing is remembered: once the
/// route is back (the address added), the same connects go through, and the name's reaches
/// its other address when nobody listens at `127.0.0.1`.
#[test]
fn connects_while_the_route_is_missing_and_once_it_is_back() {
    rerun_self_in_own_netns_with_hosts(
        "connects_while_the_route_is_missing_and_once_it_is_back_child",
        CHILD,
        HOSTS,
        "connects as documented",
    );
}

#[test]
fn connects_while_the_route_is_missing_and_once_it_is_back_child() {
    run_if_child(CHILD, async {
        let selector = SelectorManager::new();
        // A fixed port: the namespace is the test's own.
        const PORT: u16 = 5000;
        let e = within(
            a_socket(&selector)
                .tcp()
                .connect_timeout(net_tests::HANG_LIMIT * 2)
                .connect((UNROUTED, PORT)),
        )
        .await
        .map(|_| ())
        .unwrap_err();
        assert_unreachable(&e, "a TCP connect without a route");
        let e = within(a_socket(&selector).udp().connect((UNROUTED, PORT)))
            .await
            .map(|_| ())
            .unwrap_err();
        assert_unreachable(&e, "a UDP connect without a route");
        let e = within(a_socket(&selector).tcp().connect(("gateway", PORT)))
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e:?}");
        let loopback = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", PORT))
            .await
            .unwrap();
        let client = within(a_socket(&selector).tcp().connect(("gateway", PORT)))
            .await
            .unwrap();
        assert_eq!(
            client.remote_address().to_string(),
            format!("127.0.0.1:{PORT}")
        );
        within(loopback.accept()).await.unwrap();
        drop(loopback);

        add(UNROUTED);
        let listener = a_socket(&selector)
            .tcp()
            .bind((UNROUTED, PORT))
            .await
            .unwrap();
        within(a_socket(&selector).tcp().connect((UNROUTED, PORT)))
            .await
            .unwrap();
        within(listener.accept()).await.unwrap();
        within(a_socket(&selector).udp().connect((UNROUTED, PORT)))
            .await
            .unwrap();
        let client = within(a_socket(&selector).tcp().connect(("gateway", PORT)))
            .await
            .unwrap();
        assert_eq!(
            client.remote_address().to_string(),
            format!("{UNROUTED}:{PORT}")
        );
        within(listener.accept()).await.unwrap();
        println!("connects as documented");
    });
}

/// An address gone for longer than the connection's `tcp_user_timeout` (1 s here) ends it as
/// that option's docs say, the failed route never showing: a read waiting meanwhile fails with
/// the OS's `ETIMEDOUT` (kind `TimedOut`), and so does the read after it (never an end of
/// stream), and a write after them with `EPIPE`; when no read waits, the write that meets it
/// fails with `ETIMEDOUT`, and so does the read after it. The address coming back later does
/// not revive the connection.
#[test]
fn an_address_gone_longer_than_tcp_user_timeout_ends_the_connection() {
    rerun_self_in_own_netns(
        "an_address_gone_longer_than_tcp_user_timeout_ends_the_connection_child",
        CHILD,
        "timed out as documented",
    );
}

/// Asserts that `r` failed with the OS's error `code`.
fn assert_os_error(r: Result<(), net_io::Error>, code: i32, what: &str) {
    match r {
        Err(net_io::Error::Io(e)) if e.raw_os_error() == Some(code) => {}
        other => panic!("{what}: {other:?}"),
    }
}

#[test]
fn an_address_gone_longer_than_tcp_user_timeout_ends_the_connection_child() {
    run_if_child(CHILD, async {
        let selector = SelectorManager::new();
        add(MOVING);
        let listener = a_socket(&selector).tcp().bind((MOVING, 0)).await.unwrap();
        let port = listener.port().unwrap();
        for read_waits in [true, false] {
            let client = within(
                a_socket(&selector)
                    .tcp()
                    .tcp_user_timeout(std::time::Duration::from_secs(1))
                    .connect((MOVING, port)),
            )
            .await
            .unwrap();
            let _server = within(listener.accept()).await.unwrap();
            let mut client = client.connection().unwrap();
            remove(MOVING);
            if read_waits {
                write(&mut client.output, 1, 10).await;
                let read = within(client.input.read_available(&mut [0; 10]))
                    .await
                    .map(|_| ());
                assert_os_error(read, libc::ETIMEDOUT, "the waiting read");
                add(MOVING);
                let read = within(client.input.read_available(&mut [0; 10]))
                    .await
                    .map(|_| ());
                assert_os_error(read, libc::ETIMEDOUT, "the read after it");
                let written = within(async {
                    client.output.write_fully(b"x").await?;
                    client.output.flush().await
                })
                .await;
                assert_os_error(written, libc::EPIPE, "a write after the reads");
            } else {
                // Bounded: the send buffer fills after a few writes, nothing leaving.
                let written = within(async {
                    for _ in 0..1_000 {
                        client.output.write_fully(&[2; 65_536]).await?;
                        client.output.flush().await?;
                    }
                    Ok(())
                })
                .await;
                assert_os_error(written, libc::ETIMEDOUT, "the writes");
                add(MOVING);
                let read = within(client.input.read_available(&mut [0; 10]))
                    .await
                    .map(|_| ());
                assert_os_error(read, libc::ETIMEDOUT, "the read after them");
            }
        }
        println!("timed out as documented");
    });
}
