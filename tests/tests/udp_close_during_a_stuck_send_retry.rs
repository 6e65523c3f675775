//! A connected UDP socket that got an ICMP error has readiness that no longer says when room
//! frees up in its send buffer (tokio keeps the error for good): a send that finds the buffer
//! full tries again every millisecond. Its `close()` (or its selector's) meanwhile must still
//! release the port before it returns, as the guarantees' row on a close during a send says,
//! and the send must fail with the close's error when polled.
//!
//! Runs on a loopback slowed to 4 Mbit/s, in a network namespace of its own, so that sends
//! wait for room.

use std::io;

use net_sockets::{Datagram, Error, SelectorManager, a_socket};
use net_tests::{pending_after_one_poll, within};

const SLOW_LOOPBACK: &str = "NET_TESTS_UDP_CLOSE_DURING_A_STUCK_SEND_RETRY";

/// Before, the send held the socket through its 1 ms pause between tries, so the close (on
/// the same thread as the send's task) waited its 50 ms for it, then returned with the port
/// still bound: the bind below failed with `AddrInUse`.
#[test]
fn a_close_while_a_send_retries_after_an_icmp_error_frees_the_port() {
    net_tests::harness::rerun_self_on_slow_loopback(
        "a_close_while_a_send_retries_after_an_icmp_error_frees_the_port_child",
        SLOW_LOOPBACK,
        "4mbit",
        "port rebound",
    );
}

#[test]
fn a_close_while_a_send_retries_after_an_icmp_error_frees_the_port_child() {
    net_tests::harness::run_if_child(SLOW_LOOPBACK, close_while_a_send_retries(End::Socket));
}

/// The same for the selector's close, which closes the socket the same way.
#[test]
fn a_selector_close_while_a_send_retries_after_an_icmp_error_frees_the_port() {
    net_tests::harness::rerun_self_on_slow_loopback(
        "a_selector_close_while_a_send_retries_after_an_icmp_error_frees_the_port_child",
        SLOW_LOOPBACK,
        "4mbit",
        "port rebound",
    );
}

#[test]
fn a_selector_close_while_a_send_retries_after_an_icmp_error_frees_the_port_child() {
    net_tests::harness::run_if_child(SLOW_LOOPBACK, close_while_a_send_retries(End::Selector));
}

/// What closes the socket.
#[derive(Clone, Copy, Debug)]
enum End {
    Socket,
    Selector,
}

/// Gets a connected socket's send to wait for room after an ICMP error, closes the socket
/// (`end`), and checks that its port is free at once and that the send fails with the close.
async fn close_while_a_send_retries(end: End) {
    let selector = SelectorManager::new();
    let (gone_address, _reserved) = net_tests::loopback::unbound_udp_address();
    let socket = a_socket(&selector)
        .udp()
        .send_buffer_size(4_096)
        .connect(gone_address.clone())
        .await
        .unwrap();
    socket
        .send(Datagram::new("anyone?", gone_address.clone()).unwrap())
        .await
        .unwrap();
    let refused = within(socket.receive()).await.unwrap_err();
    assert_eq!(
        refused.kind(),
        io::ErrorKind::ConnectionRefused,
        "{refused:?}"
    );
    // Someone listens there now: no more ICMP errors, the sends go and fill the buffer.
    let _back = a_socket(&selector)
        .udp()
        .bind(gone_address.clone())
        .await
        .unwrap();
    let local = socket.local_address();
    let mut waiting = None;
    for _ in 0..1_000 {
        let mut send =
            Box::pin(socket.send(Datagram::new(vec![0; 1_000], gone_address.clone()).unwrap()));
        if pending_after_one_poll(send.as_mut()).await {
            waiting = Some(send);
            break;
        }
    }
    let mut waiting = waiting.expect("no send ever waited for room");
    match end {
        End::Socket => socket.close(),
        End::Selector => selector.close(),
    }
    let again = a_socket(&SelectorManager::new()).udp().bind(local).await;
    assert!(again.is_ok(), "{end:?}: the port is still bound: {again:?}");
    println!("port rebound");
    let e = within(waiting.as_mut()).await.unwrap_err();
    match end {
        End::Socket => assert!(matches!(e, Error::Closed), "{e:?}"),
        End::Selector => assert!(matches!(e, Error::SelectorClosed), "{e:?}"),
    }
}
