//! A connected UDP socket takes a datagram addressed to the very address it was connected to,
//! also when that address carries what the kernel does not keep as the peer's: an IPv6 flow
//! label, or a scope id on an address that needs none (`[::1%1]:p` is `[::1]:p`).

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use net_sockets::{Datagram, SelectorManager, a_socket};
use net_tests::loopback::has_ipv6_loopback;
use net_tests::within;

/// Before: `send` failed with `Io(InvalidInput)`, "datagram addressed to [::1]:p, but the
/// socket is connected to [::1]:p" (the flow label, which `Display` does not show, set), and
/// "datagram addressed to [::1%1]:p, but the socket is connected to [::1]:p".
#[tokio::test]
async fn a_connected_socket_sends_to_its_peer_given_with_a_flow_label_or_a_needless_scope() {
    if !has_ipv6_loopback() {
        eprintln!("no IPv6 loopback: skipped");
        return;
    }
    let selector = SelectorManager::new();
    let peer = a_socket(&selector).udp().bind(("::1", 0)).await.unwrap();
    let port = peer.local_address().port().unwrap();
    for (flow_label, scope) in [(7, 0), (0, 1), (7, 1)] {
        let to = SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::LOCALHOST,
            port,
            flow_label,
            scope,
        ));
        let client = a_socket(&selector).udp().connect(to).await.unwrap();
        let case = format!("flow label {flow_label}, scope {scope}");
        client
            .send(Datagram::new(case.clone(), to).unwrap())
            .await
            .unwrap_or_else(|e| panic!("{case}: {e:?}"));
        let got = within(peer.receive()).await.unwrap();
        assert_eq!(&got.packet[..], case.as_bytes());
        assert_eq!(got.address, client.local_address(), "{case}");
    }
}
