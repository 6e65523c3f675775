//! A connected UDP socket after an ICMP error: the error is reported once (on the next
//! receive or send), and the socket then works as one that never had it, also in how its
//! sends and receives wait.
//!
//! Linux reports the ICMP error as `EPOLLERR`, which tokio takes for a socket whose writing
//! side is closed, for good: a send that waited on that readiness found it ready at once, again
//! and again, and spun on a CPU until the send buffer drained. (So does a socket whose error
//! queue holds something, with `IP_RECVERR`.) The tests that need sends to wait run on a
//! loopback slowed to 4 Mbit/s, in a network namespace of their own.

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

/// A UDP socket connected to a port nobody is bound to (see
/// [`unbound_udp_address`](net_tests::loopback::unbound_udp_address)), with a send buffer of
/// `send_buffer` bytes when given; that port's address; and the socket that keeps the port
/// number taken on 127.0.0.1 while it lives.
async fn connected_to_a_closed_port(
    selector: &SelectorManager,
    send_buffer: Option<usize>,
) -> (
    net_sockets::ConnectedDatagramSocket,
    net_sockets::SocketAddress,
    std::net::UdpSocket,
) {
    let (gone_address, reserved) = net_tests::loopback::unbound_udp_address();
    let mut builder = a_socket(selector).udp();
    if let Some(size) = send_buffer {
        builder = builder.send_buffer_size(size);
    }
    let socket = builder.connect(gone_address.clone()).await.unwrap();
    (socket, gone_address, reserved)
}

/// The ICMP error surfaces on the next `send` too (SPEC: "on the next receive/send").
#[tokio::test]
async fn icmp_refused_surfaces_on_the_next_send() {
    let selector = SelectorManager::new();
    let (client, gone_address, _port) = connected_to_a_closed_port(&selector, None).await;
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
        let (refused, gone_address, _port) =
            connected_to_a_closed_port(&selector, Some(4_096)).await;
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

/// A send that waits for room in a task that has not run since does not keep the port bound past `close()`; it fails with `Closed` when polled.
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
    let (client, gone_address, _port) = connected_to_a_closed_port(&selector, None).await;
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

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

// ---------------------------------------------------------------------------------------
// Out of descriptors, a send that waits for room waits: it needs no descriptor of its own.

const EMFILE_ENV: &str = "NET_TESTS_UDP_WAIT_EMFILE";

#[test]
fn a_send_waiting_for_room_out_of_descriptors() {
    net_tests::harness::rerun_self_on_slow_loopback(
        "a_send_waiting_for_room_out_of_descriptors_child",
        EMFILE_ENV,
        "4mbit",
        "emfile sends done",
    );
}

#[test]
#[allow(unsafe_code)]
fn a_send_waiting_for_room_out_of_descriptors_child() {
    net_tests::harness::run_if_child(EMFILE_ENV, async {
        let selector = SelectorManager::new();
        let peer = udp_socket(&selector).await;
        let sender = a_socket(&selector)
            .udp()
            .send_buffer_size(4_096)
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let to = peer.local_address();
        // A low limit, so that exhausting it is cheap (this is a child process of its own).
        let limit = libc::rlimit {
            rlim_cur: (open_fds() + 32) as libc::rlim_t,
            rlim_max: (open_fds() + 32) as libc::rlim_t,
        };
        // SAFETY: a valid rlimit.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
        let held = net_tests::probe::exhaust_descriptors(|| std::fs::File::open("/dev/null"));
        println!("holding {} extra descriptors; at the limit", held.len());
        let mut failures = Vec::new();
        for i in 0..200 {
            if let Err(e) =
                within(sender.send(Datagram::new(vec![0; 1_000], to.clone()).unwrap())).await
            {
                failures.push(format!("send {i}: {e:?} (kind {:?})", e.kind()));
                if failures.len() > 3 {
                    break;
                }
            }
        }
        drop(held);
        println!("emfile sends done");
        assert!(
            failures.is_empty(),
            "sends failed at the descriptor limit: {failures:#?}"
        );
    });
}

// ---------------------------------------------------------------------------------------
// With IP_RECVERR, the error queue keeps EPOLLERR up: a send that waits for room does not
// spin on the stuck readiness either.

const RECVERR_ENV: &str = "NET_TESTS_UDP_WAIT_RECVERR";

#[test]
fn a_send_waiting_for_room_with_ip_recverr_does_not_spin() {
    net_tests::harness::rerun_self_on_slow_loopback(
        "a_send_waiting_for_room_with_ip_recverr_does_not_spin_child",
        RECVERR_ENV,
        "4mbit",
        "recverr sends measured",
    );
}

#[test]
#[allow(unsafe_code)]
fn a_send_waiting_for_room_with_ip_recverr_does_not_spin_child() {
    const COUNT: usize = 150;
    const SIZE: usize = 1_000;
    net_tests::harness::run_if_child(RECVERR_ENV, async {
        let selector = SelectorManager::new();
        let (refused, gone_address, _port) =
            connected_to_a_closed_port(&selector, Some(4_096)).await;
        refused
            .with_sock_ref(|s| {
                use std::os::fd::AsRawFd;
                let one: libc::c_int = 1;
                // SAFETY: a valid int option.
                let rc = unsafe {
                    libc::setsockopt(
                        s.as_raw_fd(),
                        libc::IPPROTO_IP,
                        libc::IP_RECVERR,
                        (&one as *const libc::c_int).cast(),
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
        refused
            .send(Datagram::new("anyone?", gone_address.clone()).unwrap())
            .await
            .unwrap();
        let err = within(refused.receive()).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err:?}");
        let _back = a_socket(&selector)
            .udp()
            .bind(gone_address.clone())
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let cpu = cpu_time();
        for i in 0..COUNT {
            within(refused.send(Datagram::new(vec![i as u8; SIZE], gone_address.clone()).unwrap()))
                .await
                .unwrap();
        }
        let (wall, cpu) = (started.elapsed(), cpu_time() - cpu);
        println!("with IP_RECVERR: wall {wall:?}, cpu {cpu:?}");
        println!("recverr sends measured");
        assert!(wall > Duration::from_millis(150), "{wall:?}");
        assert!(cpu < wall / 4, "sends spun: {cpu:?} of CPU in {wall:?}");
    });
}

// ---------------------------------------------------------------------------------------
// Cancel safety under concurrency: sends cut at every await point leak no descriptor, leave
// no turn stuck, and later sends finish.

const CANCEL_ENV: &str = "NET_TESTS_UDP_WAIT_CANCEL";

#[test]
fn cancelled_concurrent_sends_leak_nothing() {
    net_tests::harness::rerun_self_on_slow_loopback(
        "cancelled_concurrent_sends_leak_nothing_child",
        CANCEL_ENV,
        "4mbit",
        "cancel checks done",
    );
}

#[test]
fn cancelled_concurrent_sends_leak_nothing_child() {
    net_tests::harness::run_if_child(CANCEL_ENV, async {
        let selector = SelectorManager::new();
        let peer = udp_socket(&selector).await;
        let to = peer.local_address();
        let sender = std::sync::Arc::new(
            a_socket(&selector)
                .udp()
                .send_buffer_size(4_096)
                .bind(("127.0.0.1", 0))
                .await
                .unwrap(),
        );
        let baseline = open_fds();
        let tasks: Vec<_> = (0..6)
            .map(|t| {
                let sender = std::sync::Arc::clone(&sender);
                let to = to.clone();
                tokio::spawn(async move {
                    let mut cut = 0;
                    for i in 0..60u64 {
                        let send = sender.send(Datagram::new(vec![t; 1_000], to.clone()).unwrap());
                        let limit =
                            Duration::from_micros(200 + (i * 37 + u64::from(t) * 91) % 3_000);
                        if tokio::time::timeout(limit, send).await.is_err() {
                            cut += 1;
                        }
                    }
                    cut
                })
            })
            .collect();
        let mut cut = 0;
        for t in tasks {
            cut += within(t).await.unwrap();
        }
        let after = open_fds();
        println!("{cut} sends cut; fds {baseline} -> {after}");
        assert!(cut > 0, "no send was cut while waiting");
        assert_eq!(after, baseline, "descriptors leaked");
        for _ in 0..20 {
            within(sender.send(Datagram::new(vec![9; 1_000], to.clone()).unwrap()))
                .await
                .unwrap();
        }
        println!("cancel checks done");
    });
}

// ---------------------------------------------------------------------------------------
// The selector's runtime ends while a send (in a task of another runtime) waits for room;
// also IPv6 and dual-stack sends that wait.

const RUNTIME_END_ENV: &str = "NET_TESTS_UDP_WAIT_RUNTIME_END";

#[test]
fn runtime_end_and_families_while_sends_wait() {
    net_tests::harness::rerun_self_on_slow_loopback(
        "runtime_end_and_families_while_sends_wait_child",
        RUNTIME_END_ENV,
        "4mbit",
        "runtime end checks done",
    );
}

#[test]
fn runtime_end_and_families_while_sends_wait_child() {
    if std::env::var_os(RUNTIME_END_ENV).is_none() {
        return;
    }
    for shutdown in 0..2 {
        let selector_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (selector, sender, to) = selector_rt.block_on(async {
            let selector = SelectorManager::new();
            let peer = udp_socket(&selector).await;
            let sender = a_socket(&selector)
                .udp()
                .send_buffer_size(4_096)
                .bind(("127.0.0.1", 0))
                .await
                .unwrap();
            let to = peer.local_address();
            std::mem::forget(peer);
            (selector, sender, to)
        });
        let other = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let fds_before = open_fds();
        other.block_on(async {
            let mut waiting = None;
            for _ in 0..1_000 {
                let mut send =
                    Box::pin(sender.send(Datagram::new(vec![0; 1_000], to.clone()).unwrap()));
                if net_tests::pending_after_one_poll(send.as_mut()).await {
                    waiting = Some(send);
                    break;
                }
            }
            let mut waiting = waiting.expect("no send waited");
            if shutdown == 0 {
                std::thread::spawn(move || drop(selector_rt))
                    .join()
                    .unwrap();
            } else {
                selector_rt.shutdown_background();
                // The runtime ends in the background: until it has, the waiting send may still
                // find room (the slow loopback drains) and succeed. Once the selector knows,
                // every operation fails.
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while !selector.is_closed() {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the selector never closed"
                    );
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            let e = within(waiting.as_mut()).await.unwrap_err();
            println!("runtime end ({shutdown}): {e:?}");
            assert!(matches!(e, net_sockets::Error::SelectorClosed), "{e:?}");
            drop(waiting);
            let e = within(sender.send(Datagram::new(vec![0; 10], to.clone()).unwrap()))
                .await
                .unwrap_err();
            assert!(matches!(e, net_sockets::Error::SelectorClosed), "{e:?}");
        });
        drop(selector);
        drop(sender);
        println!("fds before {fds_before}, after {}", open_fds());
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let selector = SelectorManager::new();
            for (local, peer_at) in [("::", "127.0.0.1"), ("::1", "::1"), ("::", "::1")] {
                let peer = a_socket(&selector).udp().bind((peer_at, 0)).await.unwrap();
                let to = peer.local_address();
                let sender = a_socket(&selector)
                    .udp()
                    .send_buffer_size(4_096)
                    .bind((local, 0))
                    .await
                    .unwrap();
                let started = std::time::Instant::now();
                for i in 0..100 {
                    within(sender.send(Datagram::new(vec![i as u8; 1_000], to.clone()).unwrap()))
                        .await
                        .unwrap();
                }
                let connected = a_socket(&selector)
                    .udp()
                    .send_buffer_size(4_096)
                    .connect(to.clone())
                    .await
                    .unwrap();
                for i in 0..100 {
                    within(
                        connected.send(Datagram::new(vec![i as u8; 1_000], to.clone()).unwrap()),
                    )
                    .await
                    .unwrap();
                }
                println!("{local} -> {peer_at}: {:?}", started.elapsed());
            }
        });
    println!("runtime end checks done");
}

// ---------------------------------------------------------------------------------------
// An ICMP error that arrives while sends wait for room surfaces (not a hang, not a spin).

const ICMP_WAIT_ENV: &str = "NET_TESTS_UDP_WAIT_ICMP_WAIT";

#[test]
fn icmp_error_while_sends_wait() {
    net_tests::harness::rerun_self_on_slow_loopback(
        "icmp_error_while_sends_wait_child",
        ICMP_WAIT_ENV,
        "4mbit",
        "icmp wait checks done",
    );
}

#[test]
fn icmp_error_while_sends_wait_child() {
    net_tests::harness::run_if_child(ICMP_WAIT_ENV, async {
        let selector = SelectorManager::new();
        let (refused, gone_address, _port) =
            connected_to_a_closed_port(&selector, Some(4_096)).await;
        let refused = std::sync::Arc::new(refused);
        let started = std::time::Instant::now();
        let cpu = cpu_time();
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let refused = std::sync::Arc::clone(&refused);
                let to = gone_address.clone();
                tokio::spawn(async move {
                    let mut errors = Vec::new();
                    for _ in 0..100 {
                        if let Err(e) =
                            within(refused.send(Datagram::new(vec![1; 1_000], to.clone()).unwrap()))
                                .await
                        {
                            errors.push(e.kind());
                        }
                    }
                    errors
                })
            })
            .collect();
        let mut errors = Vec::new();
        for t in tasks {
            errors.extend(within(t).await.unwrap());
        }
        let (wall, cpu) = (started.elapsed(), cpu_time() - cpu);
        println!("errors {errors:?}; wall {wall:?} cpu {cpu:?}");
        assert!(!errors.is_empty(), "no ICMP error surfaced");
        assert!(
            errors
                .iter()
                .all(|k| *k == io::ErrorKind::ConnectionRefused),
            "{errors:?}"
        );
        assert!(cpu < wall / 3, "spun: {cpu:?} in {wall:?}");
        println!("icmp wait checks done");
    });
}

// ---------------------------------------------------------------------------------------
// close() racing sends that wait, on a multi-thread runtime: each ends Ok or Closed, and
// the port is free as close returns.

const CLOSE_RACE_ENV: &str = "NET_TESTS_UDP_WAIT_CLOSE_RACE";

#[test]
fn close_racing_waiting_sends() {
    net_tests::harness::rerun_self_on_slow_loopback(
        "close_racing_waiting_sends_child",
        CLOSE_RACE_ENV,
        "4mbit",
        "close races done",
    );
}

#[test]
fn close_racing_waiting_sends_child() {
    if std::env::var_os(CLOSE_RACE_ENV).is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let selector = SelectorManager::new();
        let peer = udp_socket(&selector).await;
        let to = peer.local_address();
        let baseline = open_fds();
        for round in 0..40u64 {
            let sender = std::sync::Arc::new(
                a_socket(&selector)
                    .udp()
                    .send_buffer_size(4_096)
                    .bind(("127.0.0.1", 0))
                    .await
                    .unwrap(),
            );
            let local = sender.local_address();
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let sender = std::sync::Arc::clone(&sender);
                    let to = to.clone();
                    tokio::spawn(async move {
                        loop {
                            match sender
                                .send(Datagram::new(vec![0; 1_000], to.clone()).unwrap())
                                .await
                            {
                                Ok(()) => {}
                                Err(net_sockets::Error::Closed) => return,
                                Err(e) => panic!("{e:?}"),
                            }
                        }
                    })
                })
                .collect();
            tokio::time::sleep(Duration::from_micros(500 + round * 300)).await;
            sender.close();
            let again = a_socket(&selector).udp().bind(local).await;
            assert!(again.is_ok(), "round {round}: port still bound: {again:?}");
            for t in tasks {
                within(t).await.unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let after = open_fds();
        println!("fds {baseline} -> {after}");
        assert_eq!(after, baseline);
        println!("close races done");
    });
}
