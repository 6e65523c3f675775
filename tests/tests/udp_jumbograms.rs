//! A UDP datagram larger than any the receive buffer was sized for: an IPv6 jumbogram
//! (RFC 2675) is reported, never returned cut as if it were whole (SPEC §2.2: datagrams are
//! never silently truncated).

use std::io;
use std::net::SocketAddr;

use net_sockets::{Datagram, Error, SelectorManager, a_socket};
use net_tests::{payload, within};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const JUMBO_CHILD: &str = "NET_TESTS_UDP_JUMBOGRAM";

/// An IPv6 packet from `[::1]:4242` to `[::1]:port` carrying a UDP datagram of `payload` as an
/// RFC 2675 jumbogram: a Hop-by-Hop Jumbo Payload option, the IPv6 and UDP length fields 0,
/// and no UDP checksum (0), which a socket with `UDP_NO_CHECK6_RX` takes as checked.
fn udp_jumbogram(port: u16, payload: &[u8]) -> Vec<u8> {
    let loopback = std::net::Ipv6Addr::LOCALHOST.octets();
    let udp_len = u32::try_from(8 + payload.len()).unwrap();
    let mut packet = vec![0x60, 0, 0, 0, 0, 0, 0 /* Hop-by-Hop */, 64];
    packet.extend_from_slice(&loopback);
    packet.extend_from_slice(&loopback);
    // Hop-by-Hop: next header UDP, 8 bytes, the Jumbo Payload option (0xC2, 4 bytes).
    packet.extend_from_slice(&[17, 0, 0xC2, 4]);
    packet.extend_from_slice(&(8 + udp_len).to_be_bytes());
    packet.extend_from_slice(&4242u16.to_be_bytes());
    packet.extend_from_slice(&port.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0, 0]); // length 0 (jumbo), no checksum
    packet.extend_from_slice(payload);
    packet
}

/// Sets `UDP_NO_CHECK6_RX` on `socket`: it takes IPv6 datagrams without a UDP checksum.
#[allow(unsafe_code)]
fn accept_no_checksum(socket: &net_sockets::BoundDatagramSocket) {
    use std::os::fd::AsRawFd;
    socket
        .with_sock_ref(|s| {
            let on: libc::c_int = 1;
            // SAFETY: a valid descriptor, and a pointer to a c_int with its size.
            let rc = unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::IPPROTO_UDP,
                    libc::UDP_NO_CHECK6_RX,
                    (&raw const on).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        })
        .unwrap();
}

/// `receive` promises a datagram whole ("the buffer is larger than any UDP payload"; SPEC
/// §2.2: never silently truncated). Over IPv6, a link whose MTU passes 65,575 bytes (here a
/// loopback given an MTU of 200,000) carries RFC 2675 jumbograms, and Linux hands a UDP socket
/// one whole (70,000 bytes here) once its checksum is known good: checked by the NIC, or, as
/// here, none to check (`UDP_NO_CHECK6_RX`; loopback packets sent through a raw socket would
/// otherwise be checked only as they are copied out, and a cut copy drops them). `receive`
/// must then return all of it or fail with a typed error (`InvalidData`), never return its
/// first 65,536 bytes as if they were the datagram. The socket goes on working.
#[test]
fn a_udp_jumbogram_is_received_whole_or_reported() {
    net_tests::harness::rerun_self_in_own_netns(
        "a_udp_jumbogram_is_received_whole_or_reported_child",
        JUMBO_CHILD,
        "jumbogram checked",
    );
}

#[test]
fn a_udp_jumbogram_is_received_whole_or_reported_child() {
    net_tests::harness::run_if_child(JUMBO_CHILD, async {
        let mtu = std::process::Command::new("ip")
            .args(["link", "set", "lo", "mtu", "200000"])
            .env("PATH", net_tests::harness::path_with_sbin())
            .status();
        assert!(mtu.as_ref().is_ok_and(|s| s.success()), "{mtu:?}");
        net_tests::harness::wait_for_local_route("::1");
        let selector = SelectorManager::new();
        let socket = a_socket(&selector).udp().bind(("::1", 0)).await.unwrap();
        accept_no_checksum(&socket);
        let port = socket.local_address().port().unwrap();
        let raw = socket2::Socket::new(
            socket2::Domain::IPV6,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(libc::IPPROTO_RAW)),
        )
        .unwrap();
        let data = payload(70_000);
        let packet = udp_jumbogram(port, &data);
        let sent = raw
            .send_to(&packet, &socket2::SockAddr::from(addr("[::1]:0")))
            .unwrap();
        assert_eq!(sent, packet.len());
        match within(socket.receive()).await {
            Ok(datagram) => assert!(
                datagram.packet.len() == data.len() && datagram.packet[..] == data[..],
                "a {}-byte datagram was received as {} bytes, with no error",
                data.len(),
                datagram.packet.len()
            ),
            Err(e) => assert!(
                matches!(&e, Error::Io(io) if io.kind() == io::ErrorKind::InvalidData),
                "{e:?}"
            ),
        }
        // The socket goes on: an ordinary datagram comes through whole.
        let sender = a_socket(&selector).udp().bind(("::1", 0)).await.unwrap();
        sender
            .send(Datagram::new("after", socket.local_address()).unwrap())
            .await
            .unwrap();
        assert_eq!(
            &within(socket.receive()).await.unwrap().packet[..],
            b"after"
        );
        println!("jumbogram checked");
    });
}
