//! A datagram that the OS must cut into IP fragments (larger than the link's MTU allows: over
//! loopback, whose MTU is 65,536 bytes, an IPv6 payload over 65,488 bytes) takes its whole size
//! from the socket's send buffer before any fragment goes, and Linux refuses it with `ENOBUFS`
//! when that is more than twice `SO_SNDBUF`: with a small `send_buffer_size`, the largest IPv6
//! datagrams never go. `send` documents it; the socket goes on working.

use net_sockets::SelectorManager;
use net_sockets::{Datagram, Error, MAX_DATAGRAM_SIZE, MAX_DATAGRAM_SIZE_V6, a_socket};
use net_tests::within;

/// The largest IPv6 payload over loopback that goes unfragmented: 65,536 − 40 (IPv6) − 8 (UDP).
const UNFRAGMENTED_V6: usize = 65_488;

/// `send`'s docs: "`ENOBUFS` ... for a datagram the OS must cut into IP fragments ... when it
/// takes more than twice the socket's send buffer".
#[tokio::test]
async fn a_fragmented_datagram_larger_than_twice_the_send_buffer_fails_with_enobufs() {
    if !net_tests::loopback::has_ipv6_loopback() {
        eprintln!("no IPv6 loopback: skipping");
        return;
    }
    let lo_mtu = std::fs::read_to_string("/sys/class/net/lo/mtu").unwrap_or_default();
    if lo_mtu.trim() != "65536" {
        net_tests::harness::skipped(&format!("loopback's MTU is {lo_mtu:?}, not 65536"));
        return;
    }
    let selector = SelectorManager::new();
    let receiver = a_socket(&selector).udp().bind(("::1", 0)).await.unwrap();
    let to = receiver.local_address();
    let small = a_socket(&selector)
        .udp()
        .send_buffer_size(4096)
        .bind(("::1", 0))
        .await
        .unwrap();
    let large = a_socket(&selector).udp().bind(("::1", 0)).await.unwrap();
    for size in [UNFRAGMENTED_V6 + 1, MAX_DATAGRAM_SIZE_V6] {
        let sent = within(small.send(Datagram::new(vec![1; size], to.clone()).unwrap())).await;
        assert!(
            matches!(&sent, Err(Error::Io(e)) if e.raw_os_error() == Some(libc::ENOBUFS)),
            "{size} bytes: {sent:?}"
        );
        // The same from a socket with the OS's send buffer goes through, whole.
        within(large.send(Datagram::new(vec![2; size], to.clone()).unwrap()))
            .await
            .unwrap();
        let received = within(receiver.receive()).await.unwrap();
        assert_eq!(received.packet.len(), size);
        assert!(received.packet.iter().all(|b| *b == 2));
    }
    // Unfragmented, the small buffer's socket sends the largest IPv6 payload that fits the
    // MTU, and it goes on working.
    within(small.send(Datagram::new(vec![3; UNFRAGMENTED_V6], to.clone()).unwrap()))
        .await
        .unwrap();
    let received = within(receiver.receive()).await.unwrap();
    assert_eq!(received.packet.len(), UNFRAGMENTED_V6);

    // Over IPv4 loopback the largest payload is never fragmented: it goes whatever the buffer.
    let receiver = a_socket(&selector)
        .udp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let small = a_socket(&selector)
        .udp()
        .send_buffer_size(4096)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let to = receiver.local_address();
    within(small.send(Datagram::new(vec![4; MAX_DATAGRAM_SIZE], to).unwrap()))
        .await
        .unwrap();
    assert_eq!(
        within(receiver.receive()).await.unwrap().packet.len(),
        MAX_DATAGRAM_SIZE
    );
}
