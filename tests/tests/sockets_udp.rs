//! UDP on loopback: datagrams to self, large datagrams, connected sockets, broadcast, ICMP.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use futures_core::Stream;

use net_sockets::{Datagram, Error, MAX_DATAGRAM_SIZE, SelectorManager, SocketAddress, a_socket};
use net_tests::loopback::{next_item, udp_socket};
use net_tests::{Ticker, payload, pending_after_one_poll, within};

#[tokio::test]
async fn ten_datagrams_to_self() {
    let selector = SelectorManager::new();
    let socket = udp_socket(&selector).await;
    let me = socket.local_address();
    for i in 0..10u8 {
        socket
            .send(Datagram::new(vec![i; usize::from(i)], me.clone()).unwrap())
            .await
            .unwrap();
    }
    for i in 0..10u8 {
        let datagram = within(socket.receive()).await.unwrap();
        assert_eq!(
            datagram.packet.len(),
            usize::from(i),
            "0-byte datagrams are data too"
        );
        assert!(datagram.packet.iter().all(|&b| b == i));
        assert_eq!(datagram.address, me);
    }
}

#[tokio::test]
async fn large_datagrams_round_trip_intact() {
    let selector = SelectorManager::new();
    let a = udp_socket(&selector).await;
    let b = udp_socket(&selector).await;
    for size in [10_000, MAX_DATAGRAM_SIZE] {
        let data = payload(size);
        a.send(Datagram::new(data.clone(), b.local_address()).unwrap())
            .await
            .unwrap();
        let got = within(b.receive()).await.unwrap();
        assert_eq!(got.packet.len(), size);
        assert!(got.packet[..] == data[..]);
        assert_eq!(got.address, a.local_address());
        // Echo it back.
        b.send(got).await.unwrap();
        let back = within(a.receive()).await.unwrap();
        assert!(back.packet[..] == data[..]);
    }
}

#[test]
fn oversized_datagrams_are_rejected() {
    let to = SocketAddress::from("127.0.0.1:9".parse::<std::net::SocketAddr>().unwrap());
    let err = Datagram::new(vec![0; 65_508], to.clone()).unwrap_err();
    assert!(matches!(err, Error::DatagramTooLarge { size: 65_508 }));
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(Datagram::new(vec![0; 65_507], to).is_ok());
}

#[tokio::test]
async fn send_rechecks_the_size_of_a_hand_built_datagram() {
    let selector = SelectorManager::new();
    let socket = udp_socket(&selector).await;
    let datagram = Datagram {
        packet: vec![0; 70_000].into(),
        address: socket.local_address(),
    };
    assert!(matches!(
        socket.send(datagram).await,
        Err(Error::DatagramTooLarge { size: 70_000 })
    ));
}

#[tokio::test]
async fn a_connected_socket_talks_to_its_peer_only() {
    let selector = SelectorManager::new();
    let server = udp_socket(&selector).await;
    let client = a_socket(&selector)
        .udp()
        .connect(server.local_address())
        .await
        .unwrap();
    assert_eq!(client.remote_address(), server.local_address());
    client
        .send(Datagram::new("ping", client.remote_address()).unwrap())
        .await
        .unwrap();
    let got = within(server.receive()).await.unwrap();
    assert_eq!(&got.packet[..], b"ping");
    assert_eq!(got.address, client.local_address());
    server
        .send(Datagram::new("pong", got.address).unwrap())
        .await
        .unwrap();
    let reply = within(client.receive()).await.unwrap();
    assert_eq!(&reply.packet[..], b"pong");
    assert_eq!(reply.address, server.local_address());

    let elsewhere = SocketAddress::from("127.0.0.1:9".parse::<std::net::SocketAddr>().unwrap());
    let err = client
        .send(Datagram::new("x", elsewhere).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

/// Connected to the unspecified address (`0.0.0.0:p`, which the kernel takes for this host),
/// the socket reports the peer the kernel connected it to: the address replies come from, and
/// one it may send to. (It reported `0.0.0.0:p`, and refused to send to the address of the
/// replies as to another peer.)
#[tokio::test]
async fn a_socket_connected_to_the_unspecified_address_reports_the_kernels_peer() {
    let selector = SelectorManager::new();
    let server = udp_socket(&selector).await;
    let port = server.local_address().port().unwrap();
    let client = a_socket(&selector)
        .udp()
        .connect(("0.0.0.0", port))
        .await
        .unwrap();
    assert_eq!(client.remote_address(), server.local_address());
    client
        .send(Datagram::new("ping", client.remote_address()).unwrap())
        .await
        .unwrap();
    let got = within(server.receive()).await.unwrap();
    server
        .send(Datagram::new("pong", got.address).unwrap())
        .await
        .unwrap();
    let reply = within(client.receive()).await.unwrap();
    assert_eq!(reply.address, client.remote_address());
    client
        .send(Datagram::new("again", reply.address).unwrap())
        .await
        .unwrap();
    let again = within(server.receive()).await.unwrap();
    assert_eq!(&again.packet[..], b"again");
}

/// Connected from a dual-stack local address (`[::]:0`) to an IPv4 peer, the kernel reports the
/// peer IPv4-mapped (`[::ffff:127.0.0.1]:p`): the address the socket was given is the same
/// peer, and `send` takes it as it takes `remote_address()`. (It refused it: "datagram
/// addressed to 127.0.0.1:p, but the socket is connected to [::ffff:127.0.0.1]:p".) A peer at
/// another port, in either form, is still refused.
#[tokio::test]
async fn a_dual_stack_socket_connected_to_an_ipv4_peer_sends_to_either_form_of_it() {
    let selector = SelectorManager::new();
    if !net_tests::loopback::has_ipv6_loopback() {
        eprintln!("no IPv6: skipping");
        return;
    }
    let server = udp_socket(&selector).await;
    let given = server.local_address();
    let port = given.port().unwrap();
    let client = a_socket(&selector)
        .udp()
        .connect_from(given.clone(), ("::", 0))
        .await
        .unwrap();
    let mapped = SocketAddress::from(std::net::SocketAddr::new(
        std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped().into(),
        port,
    ));
    assert_eq!(client.remote_address(), mapped);
    for (to, text) in [(given, "given"), (mapped, "mapped")] {
        client.send(Datagram::new(text, to).unwrap()).await.unwrap();
        let got = within(server.receive()).await.unwrap();
        assert_eq!(&got.packet[..], text.as_bytes());
    }
    for other in ["127.0.0.1:9", "[::ffff:127.0.0.1]:9", "127.0.0.2"] {
        let other = match other.parse::<std::net::SocketAddr>() {
            Ok(address) => address,
            Err(_) => std::net::SocketAddr::new(other.parse().unwrap(), port),
        };
        let err = client
            .send(Datagram::new("x", other).unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{other}");
    }
}

/// A socket bound to an IPv4 address reaches an IPv4 peer written in its IPv6-mapped form
/// (`[::ffff:a.b.c.d]:p`, as a dual-stack socket reports its peers): the same peer, not the
/// OS's "address family not supported".
#[tokio::test]
async fn an_ipv4_socket_sends_to_an_ipv4_peer_written_in_its_mapped_form() {
    let selector = SelectorManager::new();
    let server = udp_socket(&selector).await;
    let port = server.local_address().port().unwrap();
    let client = udp_socket(&selector).await;
    let mapped = SocketAddress::from(std::net::SocketAddr::new(
        std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped().into(),
        port,
    ));
    client
        .send(Datagram::new("mapped", mapped).unwrap())
        .await
        .unwrap();
    let got = within(server.receive()).await.unwrap();
    assert_eq!(&got.packet[..], b"mapped");
    assert_eq!(got.address, client.local_address());
}

#[tokio::test]
async fn icmp_unreachable_is_connection_refused_and_the_socket_survives() {
    let selector = SelectorManager::new();
    let (gone_address, _port) = net_tests::loopback::unbound_udp_address();
    let client = a_socket(&selector)
        .udp()
        .connect(gone_address.clone())
        .await
        .unwrap();
    client
        .send(Datagram::new("anyone?", gone_address.clone()).unwrap())
        .await
        .unwrap();
    let err = within(client.receive()).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err:?}");

    // Still usable: a new listener on the same port answers.
    let back = a_socket(&selector)
        .udp()
        .bind(gone_address.clone())
        .await
        .unwrap();
    client
        .send(Datagram::new("again", gone_address).unwrap())
        .await
        .unwrap();
    let got = within(back.receive()).await.unwrap();
    assert_eq!(&got.packet[..], b"again");
    back.send(Datagram::new("yes", got.address).unwrap())
        .await
        .unwrap();
    assert_eq!(&within(client.receive()).await.unwrap().packet[..], b"yes");
}

#[tokio::test]
async fn broadcast_needs_the_option() {
    let selector = SelectorManager::new();
    let to = SocketAddress::from("255.255.255.255:9".parse::<std::net::SocketAddr>().unwrap());
    let plain = a_socket(&selector)
        .udp()
        .bind(("0.0.0.0", 0))
        .await
        .unwrap();
    let err = plain
        .send(Datagram::new("hi", to.clone()).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err:?}");

    let allowed = a_socket(&selector)
        .udp()
        .broadcast(true)
        .bind(("0.0.0.0", 0))
        .await
        .unwrap();
    assert!(allowed.with_sock_ref(|s| s.broadcast()).unwrap());
    match allowed.send(Datagram::new("hi", to).unwrap()).await {
        Ok(()) => {}
        // A machine without any route for the limited broadcast address cannot send it at all;
        // the permission check passed, which is what the option controls.
        Err(e) if e.kind() == io::ErrorKind::NetworkUnreachable => {}
        Err(e) => panic!("broadcast with the option failed: {e:?}"),
    }
}

#[tokio::test]
async fn close_fails_a_pending_receive_and_ends_incoming() {
    let selector = SelectorManager::new();
    let socket = Arc::new(udp_socket(&selector).await);
    let receiver = Arc::clone(&socket);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let pending = tokio::spawn(async move {
        let receive = receiver.receive();
        started_tx.send(()).unwrap();
        receive.await
    });
    started_rx.await.unwrap();
    socket.close();
    assert!(matches!(within(pending).await.unwrap(), Err(Error::Closed)));
    assert!(socket.is_closed());
    within(socket.await_closed()).await;
    let mut incoming = socket.incoming();
    assert!(next_item(&mut incoming).await.is_none());
    assert!(matches!(
        socket
            .send(Datagram::new("x", socket.local_address()).unwrap())
            .await,
        Err(Error::Closed)
    ));
}

#[tokio::test]
async fn incoming_yields_datagrams() {
    let selector = SelectorManager::new();
    let socket = udp_socket(&selector).await;
    let sender = udp_socket(&selector).await;
    let mut incoming = socket.incoming();
    for i in 0..3u8 {
        sender
            .send(Datagram::new(vec![i], socket.local_address()).unwrap())
            .await
            .unwrap();
        let got = next_item(&mut incoming).await.unwrap().unwrap();
        assert_eq!(&got.packet[..], &[i]);
    }
}

/// A task that receives datagrams already queued on its socket (a flood, say) still lets the
/// other tasks of its thread run: each receive takes a unit of tokio's cooperative budget, so
/// the task yields when the budget is spent, even though no receive has to wait.
#[tokio::test(flavor = "current_thread")]
async fn a_receiver_that_never_waits_still_yields_to_other_tasks() {
    const QUEUED: usize = 200; // more than a task's budget (128)
    let selector = SelectorManager::new();
    // Room for all of them: a small datagram takes about 1 KiB of receive buffer in the kernel.
    let socket = a_socket(&selector)
        .udp()
        .receive_buffer_size(1 << 20)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let me = socket.local_address();
    for _ in 0..QUEUED {
        socket
            .send(Datagram::new(vec![1], me.clone()).unwrap())
            .await
            .unwrap();
    }
    let ticker = Ticker::spawn();
    for _ in 0..QUEUED {
        within(socket.receive()).await.unwrap();
    }
    assert!(
        ticker.ticks() > 0,
        "the receiving task never yielded to the ticker"
    );
}

/// `close` releases the port at once though another task waits in `receive` and has not run
/// since: a server restarted on the same port binds it again straight away. (Before, the
/// waiting receive held the socket until its task ran again, and the bind failed with
/// `AddrInUse`.)
#[tokio::test(flavor = "current_thread")]
async fn close_releases_the_port_though_a_receive_is_pending() {
    let selector = SelectorManager::new();
    let socket = Arc::new(udp_socket(&selector).await);
    let address = socket.local_address();
    let receiver = Arc::clone(&socket);
    let pending = spawn_waiting(async move { receiver.receive().await }).await;
    socket.close();
    // The receiving task has not run since: the port must be free all the same.
    let again = a_socket(&selector).udp().bind(address.clone()).await;
    assert!(again.is_ok(), "{again:?}");
    assert!(matches!(within(pending).await.unwrap(), Err(Error::Closed)));

    // The same when the selector closes the socket.
    let other = SelectorManager::new();
    let socket = Arc::new(again.unwrap());
    let receiver = Arc::clone(&socket);
    let pending = spawn_waiting(async move { receiver.receive().await }).await;
    selector.close();
    let again = a_socket(&other).udp().bind(address).await;
    assert!(again.is_ok(), "{again:?}");
    assert!(matches!(
        within(pending).await.unwrap(),
        Err(Error::SelectorClosed)
    ));
}

/// An `incoming()` stream that waited for a datagram and is kept without being polled again
/// does not keep a closed socket's port: before, it held the socket until it was dropped.
#[tokio::test]
async fn close_releases_the_port_though_an_incoming_stream_waited() {
    let selector = SelectorManager::new();
    let socket = udp_socket(&selector).await;
    let address = socket.local_address();
    let mut incoming = socket.incoming();
    let waited =
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut incoming).poll_next(cx).is_pending()))
            .await;
    assert!(waited);
    socket.close();
    within(socket.await_closed()).await;
    let again = a_socket(&selector).udp().bind(address).await;
    assert!(again.is_ok(), "{again:?}");
    assert!(next_item(&mut incoming).await.is_none());
}

/// A receive dropped while it waits takes nothing: the datagram sent afterwards goes to the
/// next receive.
#[tokio::test]
async fn a_receive_dropped_while_waiting_loses_no_datagram() {
    let selector = SelectorManager::new();
    let socket = udp_socket(&selector).await;
    let sender = udp_socket(&selector).await;
    for i in 0..3u8 {
        {
            let mut receive = std::pin::pin!(socket.receive());
            assert!(pending_after_one_poll(receive.as_mut()).await);
        }
        sender
            .send(Datagram::new(vec![i], socket.local_address()).unwrap())
            .await
            .unwrap();
        let got = within(socket.receive()).await.unwrap();
        assert_eq!(&got.packet[..], &[i]);
    }
}

/// An ICMP "port unreachable" that arrives while a connected socket's receive already waits
/// (an error-only readiness event, no datagram) ends that receive with `ConnectionRefused`.
#[tokio::test]
async fn icmp_unreachable_ends_a_receive_that_already_waits() {
    let selector = SelectorManager::new();
    let (gone_address, _port) = net_tests::loopback::unbound_udp_address();
    let client = Arc::new(
        a_socket(&selector)
            .udp()
            .connect(gone_address.clone())
            .await
            .unwrap(),
    );
    let receiver = Arc::clone(&client);
    let pending = spawn_waiting(async move { receiver.receive().await }).await;
    client
        .send(Datagram::new("anyone?", gone_address).unwrap())
        .await
        .unwrap();
    let err = within(pending).await.unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err:?}");
}

/// A dual-stack socket (bound to `::`) sees IPv4 peers as IPv4-mapped IPv6 addresses
/// (`::ffff:127.0.0.1`); a datagram to one travels as IPv4, so the IPv4 limit applies: a reply
/// over 65,507 bytes is `DatagramTooLarge`, as to the IPv4 address itself, and the largest one
/// goes through. (Before, `Datagram::new` took it and `send` failed with the OS's `EMSGSIZE`,
/// kind `Uncategorized`.)
#[tokio::test]
async fn ipv4_mapped_addresses_take_the_ipv4_limit() {
    let selector = SelectorManager::new();
    if !net_tests::loopback::has_ipv6_loopback() {
        eprintln!("no IPv6: skipping");
        return;
    }
    let dual = a_socket(&selector).udp().bind(("::", 0)).await.unwrap();
    let client = udp_socket(&selector).await;
    let to_dual = SocketAddress::from(std::net::SocketAddr::from((
        [127, 0, 0, 1],
        dual.local_address().port().unwrap(),
    )));
    client
        .send(Datagram::new("hello", to_dual).unwrap())
        .await
        .unwrap();
    let got = within(dual.receive()).await.unwrap();
    let mapped = got.address.clone();
    let ip = mapped.as_inet().unwrap().ip();
    assert!(ip.is_ipv6() && ip.to_canonical().is_ipv4(), "{mapped}");

    let made = Datagram::new(vec![0; MAX_DATAGRAM_SIZE + 1], mapped.clone()).unwrap_err();
    assert!(
        matches!(made, Error::DatagramTooLarge { size } if size == MAX_DATAGRAM_SIZE + 1),
        "{made:?}"
    );
    let hand_built = Datagram {
        packet: vec![0; MAX_DATAGRAM_SIZE + 1].into(),
        address: mapped.clone(),
    };
    let sent = dual.send(hand_built).await.unwrap_err();
    assert!(
        matches!(sent, Error::DatagramTooLarge { size } if size == MAX_DATAGRAM_SIZE + 1),
        "{sent:?}"
    );
    assert_eq!(sent.kind(), io::ErrorKind::InvalidInput);

    let largest = payload(MAX_DATAGRAM_SIZE);
    dual.send(Datagram::new(largest.clone(), mapped).unwrap())
        .await
        .unwrap();
    assert!(within(client.receive()).await.unwrap().packet[..] == largest[..]);
}

/// Spawns `receive` and returns once it waits (it was polled once and is pending).
async fn spawn_waiting<F>(receive: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (waiting_tx, waiting_rx) = tokio::sync::oneshot::channel();
    let pending = tokio::spawn(async move {
        let mut receive = std::pin::pin!(receive);
        assert!(pending_after_one_poll(receive.as_mut()).await);
        waiting_tx.send(()).unwrap();
        receive.await
    });
    waiting_rx.await.unwrap();
    pending
}
