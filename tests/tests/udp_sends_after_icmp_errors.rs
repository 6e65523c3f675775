//! A connected UDP socket after an ICMP error: the error is reported once (on the next
//! receive or send), and the socket then works as one that never had it, also in how its
//! sends and receives wait.
//!
//! Linux reports the ICMP error as `EPOLLERR`, which tokio takes for a socket whose writing
//! side is closed, for good: a send that waited on that readiness found it ready at once, again
//! and again, and spun on a CPU until the send buffer drained.

use std::io;
use std::time::Duration;

use net_sockets::{Datagram, Error, SelectorManager, a_socket};
use net_tests::loopback::udp_socket;
use net_tests::{pending_after_one_poll, within};

/// Waits (bounded) until the socket has a pending error (POLLERR), without taking it.
fn wait_for_pending_error(socket: &net_sockets::ConnectedDatagramSocket) -> bool {
    use std::os::fd::AsRawFd;
    socket
        .with_sock_ref(|s| {
            let mut fd = libc::pollfd {
                fd: s.as_raw_fd(),
                events: 0,
                revents: 0,
            };
            // `poll(2)` reports the pending error without taking it (`SO_ERROR` would).
            let n = poll_one(&mut fd, 5000);
            Ok(n > 0 && (fd.revents & libc::POLLERR) != 0)
        })
        .unwrap()
}

#[allow(unsafe_code)]
fn poll_one(fd: &mut libc::pollfd, timeout_ms: i32) -> i32 {
    // SAFETY: `fd` is one valid, writable pollfd.
    unsafe { libc::poll(fd, 1, timeout_ms) }
}

/// The ICMP error surfaces on the next `send` too (SPEC: "on the next receive/send").
#[tokio::test]
async fn icmp_refused_surfaces_on_the_next_send() {
    let selector = SelectorManager::new();
    let gone = udp_socket(&selector).await;
    let gone_address = gone.local_address();
    gone.close();
    let client = a_socket(&selector)
        .udp()
        .connect(gone_address.clone())
        .await
        .unwrap();
    client
        .send(Datagram::new("anyone?", gone_address.clone()).unwrap())
        .await
        .unwrap();
    assert!(wait_for_pending_error(&client), "no ICMP error arrived");
    let err = within(client.send(Datagram::new("again?", gone_address.clone()).unwrap()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err:?}");
}

const SLOW_LOOPBACK_ICMP: &str = "NET_TESTS_UDP_ICMP_SLOW_LOOPBACK";

/// CPU time (user + system) this process has used so far.
#[allow(unsafe_code)]
fn cpu_time() -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0);
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Sends `count` datagrams of `size` bytes on `socket` to its peer, one after the other, and
/// returns (wall time, CPU time) they took.
async fn timed_sends(
    socket: &net_sockets::ConnectedDatagramSocket,
    count: usize,
    size: usize,
) -> (Duration, Duration) {
    let to = socket.remote_address();
    let started = std::time::Instant::now();
    let cpu = cpu_time();
    for i in 0..count {
        within(socket.send(Datagram::new(vec![i as u8; size], to.clone()).unwrap()))
            .await
            .unwrap();
    }
    (started.elapsed(), cpu_time() - cpu)
}

/// A connected socket that once got an ICMP "port unreachable" (reported as documented, and
/// "the socket stays usable") must not burn a CPU whenever a later `send` waits for room in its
/// send buffer: a send that waits sleeps until the buffer drains, as it does on a socket that
/// never saw an ICMP error.
#[test]
fn a_send_waiting_for_room_after_an_icmp_error_does_not_spin() {
    net_tests::harness::rerun_self_on_slow_loopback(
        "a_send_waiting_for_room_after_an_icmp_error_does_not_spin_child",
        SLOW_LOOPBACK_ICMP,
        "4mbit",
        "sends measured",
    );
}

#[test]
fn a_send_waiting_for_room_after_an_icmp_error_does_not_spin_child() {
    const COUNT: usize = 150;
    const SIZE: usize = 1_000;
    net_tests::harness::run_if_child(SLOW_LOOPBACK_ICMP, async {
        let selector = SelectorManager::new();
        // Control: a connected socket that never saw an ICMP error.
        let peer_a = udp_socket(&selector).await;
        let control = a_socket(&selector)
            .udp()
            .send_buffer_size(4_096)
            .connect(peer_a.local_address())
            .await
            .unwrap();
        let (wall_a, cpu_a) = timed_sends(&control, COUNT, SIZE).await;
        println!("control: wall {wall_a:?}, cpu {cpu_a:?}");

        // The same, after an ICMP error that `receive` reported.
        let gone = udp_socket(&selector).await;
        let gone_address = gone.local_address();
        gone.close();
        let refused = a_socket(&selector)
            .udp()
            .send_buffer_size(4_096)
            .connect(gone_address.clone())
            .await
            .unwrap();
        refused
            .send(Datagram::new("anyone?", gone_address.clone()).unwrap())
            .await
            .unwrap();
        let err = within(refused.receive()).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err:?}");
        // Someone listens there again: no more ICMP errors.
        let _back = a_socket(&selector).udp().bind(gone_address).await.unwrap();
        let (wall_b, cpu_b) = timed_sends(&refused, COUNT, SIZE).await;
        println!("after an ICMP error: wall {wall_b:?}, cpu {cpu_b:?}");
        println!("sends measured");
        // The sends waited (the loopback is slow) ...
        assert!(wall_b > Duration::from_millis(150), "{wall_b:?}");
        // ... and waiting took little CPU, as for the control.
        assert!(
            cpu_b < wall_b / 4,
            "sends after an ICMP error spun: {cpu_b:?} of CPU in {wall_b:?} (control: {cpu_a:?} \
             in {wall_a:?})"
        );
    });
}

const SLOW_LOOPBACK_CLOSE: &str = "NET_TESTS_UDP_ICMP_SLOW_LOOPBACK_CLOSE";

/// A send that waits for room in a task that has not
/// run since does not keep the port bound past `close()`; it fails with `Closed` when polled.
#[test]
fn close_while_a_send_waits_for_room_frees_the_port() {
    net_tests::harness::rerun_self_on_slow_loopback(
        "close_while_a_send_waits_for_room_frees_the_port_child",
        SLOW_LOOPBACK_CLOSE,
        "4mbit",
        "port rebound",
    );
}

#[test]
fn close_while_a_send_waits_for_room_frees_the_port_child() {
    net_tests::harness::run_if_child(SLOW_LOOPBACK_CLOSE, async {
        let selector = SelectorManager::new();
        let peer = udp_socket(&selector).await;
        let sender = a_socket(&selector)
            .udp()
            .send_buffer_size(4_096)
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let local = sender.local_address();
        let to = peer.local_address();
        let mut waiting = None;
        for _ in 0..1_000 {
            let mut send =
                Box::pin(sender.send(Datagram::new(vec![0; 1_000], to.clone()).unwrap()));
            if pending_after_one_poll(send.as_mut()).await {
                waiting = Some(send);
                break;
            }
        }
        let mut waiting = waiting.expect("no send ever waited for room");
        sender.close();
        let again = a_socket(&selector).udp().bind(local).await;
        assert!(again.is_ok(), "the port is still bound: {again:?}");
        println!("port rebound");
        let e = within(waiting.as_mut()).await.unwrap_err();
        assert!(matches!(e, Error::Closed), "{e:?}");
    });
}

/// A receive that waits after an ICMP error was reported (by a receive, then by a send) does
/// not spin.
#[tokio::test]
async fn a_receive_waiting_after_an_icmp_error_does_not_spin() {
    let selector = SelectorManager::new();
    let gone = udp_socket(&selector).await;
    let gone_address = gone.local_address();
    gone.close();
    let client = a_socket(&selector)
        .udp()
        .connect(gone_address.clone())
        .await
        .unwrap();
    for round in 0..2 {
        client
            .send(Datagram::new("anyone?", gone_address.clone()).unwrap())
            .await
            .unwrap();
        assert!(wait_for_pending_error(&client), "no ICMP error arrived");
        // Round 0: reported by the receive; round 1: by a send.
        let err = if round == 0 {
            within(client.receive()).await.unwrap_err()
        } else {
            within(client.send(Datagram::new("x", gone_address.clone()).unwrap()))
                .await
                .unwrap_err()
        };
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err:?}");
        let started = std::time::Instant::now();
        let cpu = cpu_time();
        assert!(
            tokio::time::timeout(Duration::from_millis(300), client.receive())
                .await
                .is_err()
        );
        let (wall, cpu) = (started.elapsed(), cpu_time() - cpu);
        assert!(cpu < wall / 4, "round {round}: {cpu:?} of CPU in {wall:?}");
    }
}
