//! The datagram examples that stay `no_run` (an echo server that never ends, a client of a
//! fixed port), run on `127.0.0.1:0` and checked against what the text beside them says.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};

use net_sockets::{BoundDatagramSocket, Datagram, SelectorManager, SocketAddress, a_socket};
use net_tests::within;

/// `BoundDatagramSocket`'s example, as written but for its port: echoes every datagram.
async fn echo(socket: BoundDatagramSocket) -> net_sockets::Result<()> {
    loop {
        let datagram = socket.receive().await?;
        socket.send(datagram).await?; // echo
    }
}

/// `ConnectedDatagramSocket`'s example against `BoundDatagramSocket`'s: the ping comes back,
/// from the address the client is connected to.
#[tokio::test]
async fn the_connected_clients_ping_comes_back_from_the_bound_echo() {
    let selector = SelectorManager::new();
    let server = a_socket(&selector)
        .udp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = server.local_address().port().unwrap();
    let echoing = tokio::spawn(echo(server));

    let socket = a_socket(&selector)
        .udp()
        .connect(("127.0.0.1", port))
        .await
        .unwrap();
    socket
        .send(Datagram::new("ping", socket.remote_address()).unwrap())
        .await
        .unwrap();
    let reply = within(socket.receive()).await.unwrap();
    assert_eq!(&reply.packet[..], b"ping");
    assert_eq!(reply.address, socket.remote_address());
    echoing.abort();
}

/// "A socket bound to an unspecified address sends each datagram from the address the OS
/// picks for the route to its peer [...]: a client that sent to `127.0.0.2` gets its answer
/// from `127.0.0.1`, and a client whose socket is connected drops it."
#[tokio::test]
async fn a_wildcard_echo_answers_a_client_of_127_0_0_2_from_127_0_0_1() {
    let selector = SelectorManager::new();
    // `reuse_address`: for the marker socket bound below to 127.0.0.2 on the same port.
    let server = a_socket(&selector)
        .udp()
        .reuse_address(true)
        .bind(("0.0.0.0", 0))
        .await
        .unwrap();
    let port = server.local_address().port().unwrap();
    let echoing = tokio::spawn(echo(server));
    let sent_to = SocketAddr::from(([127, 0, 0, 2], port));

    // A connected client: its ping is answered, but from 127.0.0.1, which it drops.
    let connected = a_socket(&selector).udp().connect(sent_to).await.unwrap();
    connected
        .send(Datagram::new("ping", connected.remote_address()).unwrap())
        .await
        .unwrap();

    // An unconnected client, after it: the echo answers in order, so once this one has its
    // answer, the connected client's has been sent too. It comes from 127.0.0.1.
    let plain = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    plain.send_to(b"pong", sent_to).unwrap();
    let plain = tokio::net::UdpSocket::from_std({
        plain.set_nonblocking(true).unwrap();
        plain
    })
    .unwrap();
    let mut buf = [0; 16];
    let (n, from) = within(plain.recv_from(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], b"pong");
    assert_eq!(from, SocketAddr::from(([127, 0, 0, 1], port)));

    // Then a datagram from the address the connected client is connected to: it is the
    // first that client receives, so the answer to its ping never reached it.
    let marker = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    marker.set_reuse_address(true).unwrap();
    marker.bind(&sent_to.into()).unwrap();
    let marker = UdpSocket::from(marker);
    let SocketAddress::Inet(client) = connected.local_address() else {
        panic!("an IPv4 client");
    };
    marker.send_to(b"marker", client.socket_addr()).unwrap();
    let first = within(connected.receive()).await.unwrap();
    assert_eq!(&first.packet[..], b"marker");
    echoing.abort();
}
