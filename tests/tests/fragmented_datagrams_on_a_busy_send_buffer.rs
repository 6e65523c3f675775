//! A datagram the OS must cut into IP fragments (over loopback, an IPv6 payload over 65,488
//! bytes) counts the bytes still in the send buffer too: Linux refuses it with `ENOBUFS` when
//! they and it pass twice `SO_SNDBUF`, at once, where a send that finds the buffer full
//! otherwise waits for room. With a `send_buffer_size` under the datagram's size, it goes out
//! from an empty buffer and fails from a busy one; once the buffer drained, it goes again.
//! In a network namespace whose loopback is slowed, so that datagrams wait in its queue and
//! hold the sender's buffer (skipped where one cannot be made); that queue drops the large
//! datagrams' 64 KiB fragments, larger than its burst, so only the sends are checked for them.

use std::pin::pin;

use net_sockets::{Datagram, Error, MAX_DATAGRAM_SIZE_V6, SelectorManager, a_socket};
use net_tests::harness::{rerun_self_on_slow_loopback, run_if_child};
use net_tests::{payload, pending_after_one_poll, within};

const CHILD: &str = "NET_TESTS_BUSY_SEND_BUFFER_CHILD";

/// Of the sizes this test was run with, 20,000 (a buffer of 40,000 bytes) is one where the
/// largest IPv6 datagram fits an empty buffer and not a full one.
const SEND_BUFFER: usize = 20_000;

/// At most this many small datagrams fill the buffer.
const MAX_SMALL: usize = 1_000;

#[test]
fn a_fragmented_datagram_fails_with_enobufs_on_a_busy_send_buffer_only() {
    rerun_self_on_slow_loopback(
        "a_fragmented_datagram_fails_with_enobufs_on_a_busy_send_buffer_only_child",
        CHILD,
        // Slow enough that the full buffer stays too full for the large datagram while this
        // host leaves the test unscheduled between the two sends: at 1 Mbit/s, a pause of
        // 200 ms there drained enough for it to go (and the test failed); at 200 kbit/s it
        // still fails with a pause of 500 ms.
        "200kbit",
        "busy buffer as documented",
    );
}

#[test]
fn a_fragmented_datagram_fails_with_enobufs_on_a_busy_send_buffer_only_child() {
    run_if_child(CHILD, async {
        let selector = SelectorManager::new();
        let receiver = a_socket(&selector)
            .udp()
            .receive_buffer_size(8 << 20)
            .bind(("::1", 0))
            .await
            .unwrap();
        let to = receiver.local_address();
        let sender = a_socket(&selector)
            .udp()
            .send_buffer_size(SEND_BUFFER)
            .bind(("::1", 0))
            .await
            .unwrap();
        let big = || Datagram::new(payload(MAX_DATAGRAM_SIZE_V6), to.clone()).unwrap();

        // From an empty buffer it goes (the slowed loopback's queue then drops its fragment of
        // 64 KiB, larger than the queue's burst: what counts here is the send).
        within(sender.send(big())).await.unwrap();

        // Small datagrams until one has to wait: the buffer is full (the one that waited is
        // dropped, unsent).
        let mut small = 0;
        loop {
            assert!(
                small < MAX_SMALL,
                "{MAX_SMALL} small datagrams never filled the buffer"
            );
            let send = pin!(sender.send(Datagram::new(vec![2; 1_000], to.clone()).unwrap()));
            if pending_after_one_poll(send).await {
                break;
            }
            small += 1;
        }
        let sent = within(sender.send(big())).await;
        assert!(
            matches!(&sent, Err(Error::Io(e)) if e.raw_os_error() == Some(libc::ENOBUFS)),
            "after {small} small datagrams: {sent:?}"
        );

        // Once they are through, it goes again.
        for _ in 0..small {
            assert_eq!(
                within(receiver.receive()).await.unwrap().packet.len(),
                1_000
            );
        }
        within(sender.send(big())).await.unwrap();
        println!("busy buffer as documented");
    });
}
