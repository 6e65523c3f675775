//! Fault suite, UDP: oversized sends, ICMP port unreachable, and a flood of datagrams to a
//! receiver that does not keep up. Each case checks that the socket (and an echo server's other
//! clients) keep working afterwards.

use std::io;

use bytes::Bytes;
use net_sockets::{
    BoundDatagramSocket, Datagram, Error, MAX_DATAGRAM_SIZE, SelectorManager, SocketAddress,
    a_socket,
};
use net_tests::loopback::udp_socket;
use net_tests::{payload, within};
use tokio::sync::mpsc;

/// A UDP echo server on 127.0.0.1 that survives errors: each is reported, and it goes on
/// serving until it is closed.
async fn echo_server(
    selector: &SelectorManager,
) -> (
    std::sync::Arc<BoundDatagramSocket>,
    mpsc::UnboundedReceiver<Error>,
) {
    let socket = std::sync::Arc::new(udp_socket(selector).await);
    let (tx, errors) = mpsc::unbounded_channel();
    let server = std::sync::Arc::clone(&socket);
    tokio::spawn(async move {
        loop {
            let result = match server.receive().await {
                Ok(datagram) => server.send(datagram).await,
                Err(e) => Err(e),
            };
            match result {
                Err(Error::Closed | Error::SelectorClosed) => return,
                Err(e) => {
                    let _ = tx.send(e);
                }
                Ok(()) => {}
            }
        }
    });
    (socket, errors)
}

/// Sends `packet` to the echo server at `to` and checks that it comes back intact.
async fn echo_round_trip(client: &BoundDatagramSocket, to: &SocketAddress, packet: &[u8]) {
    client
        .send(Datagram::new(packet.to_vec(), to.clone()).unwrap())
        .await
        .unwrap();
    let back = within(client.receive()).await.unwrap();
    assert_eq!(&back.packet[..], packet);
    assert_eq!(&back.address, to);
}

/// A datagram over 65,507 bytes is refused with `DatagramTooLarge` (kind `InvalidInput`), when
/// made and when a hand-built one is sent; nothing is sent, and the socket goes on working.
#[tokio::test]
async fn oversized_sends_are_rejected_and_the_socket_keeps_working() {
    let selector = SelectorManager::new();
    let (server, mut errors) = echo_server(&selector).await;
    let to = server.local_address();
    let good = udp_socket(&selector).await;
    let client = udp_socket(&selector).await;
    echo_round_trip(&good, &to, b"before").await;

    for size in [MAX_DATAGRAM_SIZE + 1, 70_000, 1 << 20] {
        let made = Datagram::new(vec![0u8; size], to.clone()).unwrap_err();
        assert!(matches!(made, Error::DatagramTooLarge { size: s } if s == size));
        let hand_built = Datagram {
            packet: Bytes::from(vec![0u8; size]),
            address: to.clone(),
        };
        let sent = within(client.send(hand_built)).await.unwrap_err();
        assert!(
            matches!(sent, Error::DatagramTooLarge { size: s } if s == size),
            "{sent:?}"
        );
        assert_eq!(sent.kind(), io::ErrorKind::InvalidInput);
        echo_round_trip(&good, &to, format!("after {size}").as_bytes()).await;
    }
    // The largest datagram still goes through whole, from the same socket.
    echo_round_trip(&client, &to, &payload(MAX_DATAGRAM_SIZE)).await;
    assert!(errors.try_recv().is_err(), "the server saw no error");
}

/// ICMP port unreachable: a connected socket gets `ConnectionRefused` on its next receive and
/// stays usable; an echo server whose answer goes to a port that closed sees no error and keeps
/// serving its other clients.
#[tokio::test]
async fn icmp_unreachable_fails_only_the_connected_socket() {
    let selector = SelectorManager::new();
    let (server, mut errors) = echo_server(&selector).await;
    let to = server.local_address();
    let good = udp_socket(&selector).await;

    // A client that leaves before the answer: the server's reply meets a closed port.
    let leaver = udp_socket(&selector).await;
    leaver
        .send(Datagram::new("answer me later", to.clone()).unwrap())
        .await
        .unwrap();
    leaver.close();
    echo_round_trip(&good, &to, b"served after the unreachable reply").await;

    // A connected socket to a port nobody is bound to learns of the ICMP error. (Not the
    // leaver's: a parallel test may be given that port, or a child process another test
    // spawns meanwhile may hold the leaver until its `exec`.)
    let (closed, _port) = net_tests::loopback::unbound_udp_address();
    let connected = a_socket(&selector)
        .udp()
        .connect(closed.clone())
        .await
        .unwrap();
    connected
        .send(Datagram::new("anyone?", closed.clone()).unwrap())
        .await
        .unwrap();
    let refused = within(connected.receive()).await.unwrap_err();
    assert!(matches!(refused, Error::Io(_)), "{refused:?}");
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    echo_round_trip(&good, &to, b"served while a neighbour was refused").await;

    // Still usable: once someone listens there again, it talks.
    let back = a_socket(&selector)
        .udp()
        .bind(closed.clone())
        .await
        .unwrap();
    connected
        .send(Datagram::new("again", closed).unwrap())
        .await
        .unwrap();
    let got = within(back.receive()).await.unwrap();
    assert_eq!(&got.packet[..], b"again");
    assert!(errors.try_recv().is_err(), "the server saw no error");
}

/// 20,000 datagrams to a receiver with a small receive buffer that reads none of them while
/// they arrive: the kernel drops what does not fit, and every datagram that is delivered is
/// intact and in order; afterwards the receiver gets new datagrams intact.
#[tokio::test]
async fn a_flood_to_a_slow_receiver_drops_in_the_kernel_and_the_socket_keeps_working() {
    const FLOOD: u32 = 20_000;
    let selector = SelectorManager::new();
    let receiver = a_socket(&selector)
        .udp()
        .receive_buffer_size(16 * 1024)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let to = receiver.local_address();
    let sender = udp_socket(&selector).await;
    let datagram = |seq: u32| {
        let mut packet = seq.to_be_bytes().to_vec();
        packet.extend_from_slice(&payload(200));
        packet
    };
    within(async {
        for seq in 0..FLOOD {
            sender
                .send(Datagram::new(datagram(seq), to.clone()).unwrap())
                .await
                .unwrap();
        }
    })
    .await;

    // Drain what the kernel kept, without waiting: a non-blocking receive says when it is empty.
    let mut delivered = Vec::new();
    let mut buf = vec![0u8; 2048];
    loop {
        // The socket is non-blocking (it is registered with tokio): `read` says `WouldBlock`
        // when the queue is empty.
        let received = receiver
            .with_sock_ref(|s| io::Read::read(&mut &*s, &mut buf))
            .map_err(io::Error::from);
        match received {
            Ok(n) => {
                let bytes = &buf[..n];
                let seq = u32::from_be_bytes(bytes[..4].try_into().unwrap());
                assert_eq!(bytes, datagram(seq), "datagram {seq} intact");
                delivered.push(seq);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("receive failed: {e:?}"),
        }
    }
    eprintln!(
        "{} of {FLOOD} flooded datagrams were delivered",
        delivered.len()
    );
    assert!(!delivered.is_empty(), "the queue held some datagrams");
    assert!(
        delivered.len() < FLOOD as usize,
        "a 16 KiB buffer cannot hold 20,000 datagrams: the kernel dropped some"
    );
    assert!(delivered.windows(2).all(|w| w[0] < w[1]), "in order");

    // The socket keeps working: new datagrams arrive whole, through the normal receive.
    for i in 0..5u32 {
        let packet = datagram(FLOOD + i);
        sender
            .send(Datagram::new(packet.clone(), to.clone()).unwrap())
            .await
            .unwrap();
        let got = within(receiver.receive()).await.unwrap();
        assert_eq!(&got.packet[..], &packet[..]);
        assert_eq!(got.address, sender.local_address());
    }
}

/// A receiver, and a sender whose small send buffer (4 KiB) a few datagrams fill while the
/// slowed loopback drains it.
async fn receiver_and_small_buffer_sender(
    selector: &SelectorManager,
) -> (BoundDatagramSocket, std::sync::Arc<BoundDatagramSocket>) {
    let receiver = udp_socket(selector).await;
    let sender = a_socket(selector)
        .udp()
        .send_buffer_size(4_096)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    (receiver, std::sync::Arc::new(sender))
}

const SLOW_LOOPBACK: &str = "NET_TESTS_UDP_SLOW_LOOPBACK";

/// Several tasks sending on one socket whose send buffer is full each finish as it drains:
/// none is left waiting for a wake-up that went to another. The loopback of a network namespace
/// of its own is slowed, so that datagrams queue and fill the sender's (small) send buffer.
#[test]
fn concurrent_sends_on_a_full_send_buffer_all_finish() {
    net_tests::harness::rerun_self_on_slow_loopback(
        "concurrent_sends_on_a_full_send_buffer_all_finish_child",
        SLOW_LOOPBACK,
        "4mbit",
        "all sends finished",
    );
}

#[test]
fn concurrent_sends_on_a_full_send_buffer_all_finish_child() {
    const TASKS: usize = 8;
    const EACH: usize = 16;
    const SIZE: usize = 1_000;
    net_tests::harness::run_if_child(SLOW_LOOPBACK, async {
        let selector = SelectorManager::new();
        let (receiver, sender) = receiver_and_small_buffer_sender(&selector).await;
        let to = receiver.local_address().clone();
        let receiving = tokio::spawn(async move {
            let mut counts = [0usize; TASKS];
            for _ in 0..TASKS * EACH {
                let datagram = receiver.receive().await.unwrap();
                assert_eq!(datagram.packet.len(), SIZE);
                counts[usize::from(datagram.packet[0])] += 1;
            }
            counts
        });
        let sends: Vec<_> = (0..TASKS)
            .map(|task| {
                let sender = std::sync::Arc::clone(&sender);
                let to = to.clone();
                tokio::spawn(async move {
                    for _ in 0..EACH {
                        let packet = vec![task as u8; SIZE];
                        sender
                            .send(Datagram::new(packet, to.clone()).unwrap())
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for send in sends {
            within(send).await.unwrap();
        }
        println!("all sends finished");
        assert_eq!(within(receiving).await.unwrap(), [EACH; TASKS]);
    });
}

const KEPT_SEND: &str = "NET_TESTS_UDP_KEPT_SEND";

/// A send that waits for room and is then kept and not polled (a future held past a
/// `select!` that moved on) holds up no other send on the socket: another task's sends, which
/// fill the buffer and wait for room in turn, all finish. Before, the waiting sends took turns,
/// and the kept one held the turn until it was polled again or dropped. On the slowed loopback
/// of a network namespace of its own, as above.
#[test]
fn a_send_kept_and_not_polled_holds_up_no_other_send() {
    net_tests::harness::rerun_self_on_slow_loopback(
        "a_send_kept_and_not_polled_holds_up_no_other_send_child",
        KEPT_SEND,
        "4mbit",
        "the other sends finished",
    );
}

#[test]
fn a_send_kept_and_not_polled_holds_up_no_other_send_child() {
    const SIZE: usize = 1_000;
    net_tests::harness::run_if_child(KEPT_SEND, async {
        let selector = SelectorManager::new();
        let (receiver, sender) = receiver_and_small_buffer_sender(&selector).await;
        let to = receiver.local_address().clone();
        // Sends polled once each until one has to wait for room: that one is kept.
        let mut kept = None;
        for _ in 0..10_000 {
            let mut send =
                Box::pin(sender.send(Datagram::new(vec![1u8; SIZE], to.clone()).unwrap()));
            let waits = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(send.as_mut().poll(cx).is_pending())
            })
            .await;
            if waits {
                kept = Some(send);
                break;
            }
        }
        let kept = kept.expect("a send that waits for room");
        let others = tokio::spawn({
            let sender = std::sync::Arc::clone(&sender);
            async move {
                for _ in 0..32 {
                    let datagram = Datagram::new(vec![2u8; SIZE], to.clone()).unwrap();
                    sender.send(datagram).await.unwrap();
                }
            }
        });
        within(others).await.unwrap();
        println!("the other sends finished");
        drop((kept, receiver));
    });
}
