//! UDP: a connected socket's receives, and the address family of a send.

use std::io;
use std::net::{Ipv6Addr, SocketAddr};
use std::pin::pin;

use net_sockets::{ConnectedDatagramSocket, Datagram, Error, SelectorManager, a_socket};
use net_tests::loopback::udp_socket;
use net_tests::{Ticker, pending_after_one_poll, within};

/// A connected socket receives only from its peer, also the datagrams that others sent to its
/// port before it was connected (and that the kernel had queued then): an adopted `std` socket
/// bound, sent to, then connected. The peer's own datagrams, queued before or sent after, arrive
/// in order, reported from the peer. (Before, the first `receive` returned another's datagram
/// as if it came from the peer.)
#[tokio::test]
async fn a_connected_socket_drops_datagrams_others_queued_before_its_connect() {
    let selector = SelectorManager::new();
    let peer = udp_socket(&selector).await;
    let other = udp_socket(&selector).await;
    let std = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = std.local_addr().unwrap();
    // Loopback queues each datagram on the receiving socket before `send` returns.
    other
        .send(Datagram::new("not from the peer", local).unwrap())
        .await
        .unwrap();
    peer.send(Datagram::new("early", local).unwrap())
        .await
        .unwrap();
    other
        .send(Datagram::new(Vec::new(), local).unwrap())
        .await
        .unwrap();
    std.connect(peer.local_address().as_inet().unwrap().socket_addr())
        .unwrap();
    let socket = ConnectedDatagramSocket::from_std(&selector, std).unwrap();
    peer.send(Datagram::new("late", local).unwrap())
        .await
        .unwrap();
    for expected in ["early", "late"] {
        let got = within(socket.receive()).await.unwrap();
        assert_eq!(
            (&got.packet[..], &got.address),
            (expected.as_bytes(), &peer.local_address())
        );
    }
    let mut next = pin!(socket.receive());
    assert!(
        pending_after_one_poll(next.as_mut()).await,
        "a datagram from another was received"
    );
}

/// A socket bound to an IPv4 address cannot reach an IPv6 one (other than an IPv4 peer in its
/// IPv6-mapped form): `send` fails with `Error::Io` of kind `InvalidInput`, as a `connect` from
/// one family to the other does, and the socket goes on sending to IPv4 peers. (Before, the
/// OS's "address family not supported", of kind `Uncategorized`, which no caller can match.)
#[tokio::test]
async fn an_ipv4_socket_sending_to_an_ipv6_address_is_invalid_input() {
    let selector = SelectorManager::new();
    let socket = udp_socket(&selector).await;
    let receiver = udp_socket(&selector).await;
    for ip in [
        Ipv6Addr::LOCALHOST,
        Ipv6Addr::UNSPECIFIED,
        "fe80::1".parse().unwrap(),
    ] {
        let to = SocketAddr::new(ip.into(), 9);
        let err = socket
            .send(Datagram::new("x", to).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Io(_)), "{to}: {err:?}");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{to}: {err:?}");
        socket
            .send(Datagram::new("still", receiver.local_address()).unwrap())
            .await
            .unwrap();
        let got = within(receiver.receive()).await.unwrap();
        assert_eq!(&got.packet[..], b"still");
    }
}

/// Guard: a received datagram holds an allocation of its own size, not the socket's 64 KiB
/// receive buffer (a `Bytes` split off it would keep the whole block alive while the caller
/// holds the datagram): 10,000 small datagrams held at once hold their bytes only.
#[tokio::test]
async fn a_received_datagram_holds_only_its_own_bytes() {
    const HELD: usize = 10_000;
    let selector = SelectorManager::new();
    let socket = a_socket(&selector)
        .udp()
        .receive_buffer_size(1 << 22)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let sender = udp_socket(&selector).await;
    let mut held = Vec::with_capacity(HELD);
    while held.len() < HELD {
        // In rounds the receive buffer holds whole.
        let round = (HELD - held.len()).min(500);
        for i in 0..round {
            let packet = vec![b'x'; 1 + i % 3];
            sender
                .send(Datagram::new(packet, socket.local_address()).unwrap())
                .await
                .unwrap();
        }
        for _ in 0..round {
            held.push(within(socket.receive()).await.unwrap().packet);
        }
    }
    for (i, packet) in held.into_iter().enumerate() {
        let len = packet.len();
        let own = packet
            .try_into_mut()
            .unwrap_or_else(|_| panic!("datagram {i} shares its allocation"));
        assert_eq!(own.capacity(), len, "datagram {i}");
    }
}

/// A task whose sends never have to wait (loopback takes every datagram at once) still lets
/// the other tasks of its thread run: each send takes a unit of tokio's cooperative budget, as
/// tokio's own sends do (and as this socket's receives and a stream's writes do), so the
/// sending task yields when the budget is spent. (Before, 1,000 sends ran without a turn for
/// anyone else.)
#[tokio::test(flavor = "current_thread")]
async fn a_sender_that_never_waits_still_yields_to_other_tasks() {
    let selector = SelectorManager::new();
    let socket = udp_socket(&selector).await;
    let sink = udp_socket(&selector).await;
    let to = sink.local_address();
    // The first send may wait for the reactor to report the new socket writable.
    socket
        .send(Datagram::new(vec![0], to.clone()).unwrap())
        .await
        .unwrap();
    let ticker = Ticker::spawn();
    for _ in 0..1_000 {
        socket
            .send(Datagram::new(vec![1], to.clone()).unwrap())
            .await
            .unwrap();
    }
    assert!(
        ticker.ticks() > 0,
        "the sending task never yielded to the ticker"
    );
}

/// A UDP `connect` (or `connect_from`) to port 0 can never send anywhere: the kernel takes the
/// `connect(2)` but leaves the socket without a peer, so the builder's read-back of the peer
/// failed with the OS's `ENOTCONN` — `Error::Io` of kind `NotConnected`, "Transport endpoint is
/// not connected", from a call that was connecting it (and the kind `Error::Closed` reports).
/// It must be refused as `InvalidInput`, naming the port, as a bound socket's `send` to port
/// 0 is (the OS's `EINVAL`).
#[tokio::test]
async fn a_udp_connect_to_port_zero_is_invalid_input() {
    let selector = SelectorManager::new();
    for remote in ["127.0.0.1:0", "[::1]:0", "0.0.0.0:0"] {
        if remote.contains("::1") && !net_tests::loopback::has_ipv6_loopback() {
            continue;
        }
        let e = a_socket(&selector)
            .udp()
            .connect(remote)
            .await
            .expect_err("a UDP socket connected to port 0");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{remote}: {e:?}");
        assert!(e.to_string().contains("port 0"), "{remote}: {e}");
    }
    let e = a_socket(&selector)
        .udp()
        .connect_from("127.0.0.1:0", "127.0.0.1:0")
        .await
        .expect_err("a UDP socket connected to port 0");
    assert!(
        matches!(&e, Error::Io(io) if io.kind() == io::ErrorKind::InvalidInput),
        "{e:?}"
    );
}
