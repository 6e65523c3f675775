//! A UDP socket on `::` made IPv6-only by the host (`net.ipv6.bindv6only = 1`, in a network
//! namespace of the test's own) reaches no IPv4 peer: a `connect` or `connect_from` to one
//! written in its IPv4-mapped form (`[::ffff:127.0.0.1]:p`) fails as the plain IPv4 form
//! does, with `Error::Io` of kind `InvalidInput` naming both addresses, not with the OS's
//! `ENETUNREACH` (kind `NetworkUnreachable`), which sends the caller looking for a routing
//! fault.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};

use net_sockets::{Datagram, Error, SelectorManager, a_socket};
use net_tests::harness::{rerun_self_in_own_netns, run_if_child};
use net_tests::loopback::udp_socket;
use net_tests::within;

const CHILD: &str = "NET_TESTS_UDP_MAPPED_V6ONLY_CHILD";

/// Asserts that `result` is the typed error of an unreachable family, naming `remote`.
fn assert_unreachable<T>(result: net_sockets::Result<T>, remote: SocketAddr, case: &str) {
    let err = match result {
        Ok(_) => panic!("{case}: connected"),
        Err(e) => e,
    };
    assert!(matches!(err, Error::Io(_)), "{case}: {err:?}");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{case}: {err:?}");
    let message = err.to_string();
    assert!(message.contains(&remote.to_string()), "{case}: {message}");
    assert!(message.contains("[::]"), "{case}: {message}");
}

/// `connect_from(mapped, "::")` and `connect(mapped)` on a host with `bindv6only = 1`: before,
/// `Io(NetworkUnreachable)` ("Network is unreachable"), while `connect_from` of the plain
/// IPv4 form was `InvalidInput`. An IPv6 peer is still reached from `::`.
#[test]
fn a_udp_connect_to_a_mapped_peer_from_an_ipv6_only_socket_is_invalid_input() {
    rerun_self_in_own_netns(
        "a_udp_connect_to_a_mapped_peer_from_an_ipv6_only_socket_is_invalid_input_child",
        CHILD,
        "mapped peers refused as documented",
    );
}

#[test]
fn a_udp_connect_to_a_mapped_peer_from_an_ipv6_only_socket_is_invalid_input_child() {
    run_if_child(CHILD, async {
        std::fs::write("/proc/sys/net/ipv6/bindv6only", "1").unwrap();
        let selector = SelectorManager::new();
        let peer = udp_socket(&selector).await;
        let port = peer.local_address().port().unwrap();
        let plain = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mapped = SocketAddr::new(Ipv4Addr::LOCALHOST.to_ipv6_mapped().into(), port);
        let udp = || a_socket(&selector).udp();
        assert_unreachable(
            within(udp().connect_from(plain, ("::", 0))).await,
            plain,
            "connect_from, IPv4 form",
        );
        assert_unreachable(
            within(udp().connect_from(mapped, ("::", 0))).await,
            mapped,
            "connect_from, mapped form",
        );
        assert_unreachable(
            within(udp().connect(mapped)).await,
            mapped,
            "connect, mapped form",
        );

        // `::` still reaches IPv6 peers.
        let v6_peer = a_socket(&selector).udp().bind(("::1", 0)).await.unwrap();
        let client = within(udp().connect_from(v6_peer.local_address(), ("::", 0)))
            .await
            .unwrap();
        client
            .send(Datagram::new("v6", v6_peer.local_address()).unwrap())
            .await
            .unwrap();
        assert_eq!(&within(v6_peer.receive()).await.unwrap().packet[..], b"v6");
        println!("mapped peers refused as documented");
    });
}
