//! Socket options on every kind of socket they apply to (listeners,
//! accepted, connected, dual-stack), values out of the OS's range, and admission control under
//! concurrency.

use std::time::Duration;

use net_sockets::{Error, SelectorManager, a_socket};
use net_tests::within;

/// A dual-stack listener (bound to `::`) serves IPv4 clients through IPv4-mapped addresses, and
/// their packets carry the IPv4 `IP_TOS`, not the IPv6 traffic class. `type_of_service` marks
/// them too, as the JDK under Ktor does on Linux ("set the V4 option also"): an accepted
/// IPv4-mapped connection has the type of service, and so has a UDP socket bound to `::`
/// (whose datagrams to IPv4 peers carry it). (Before, only `IPV6_TCLASS` was set: IPv4 clients
/// of a dual-stack server were served unmarked.)
#[cfg(target_os = "linux")]
#[tokio::test]
async fn type_of_service_marks_the_ipv4_traffic_of_a_dual_stack_socket() {
    if !net_tests::loopback::has_ipv6_loopback() {
        eprintln!("no IPv6 loopback: skipping");
        return;
    }
    let selector = SelectorManager::new();
    let listener = a_socket(&selector)
        .tcp()
        .type_of_service(0x20)
        .bind(("::", 0))
        .await
        .unwrap();
    let port = listener.port().unwrap();
    let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let accepted = within(listener.accept()).await.unwrap();
    accepted
        .with_sock_ref(|s| {
            assert_eq!(s.tclass_v6()?, 0x20, "the IPv6 traffic class");
            assert_eq!(
                s.tos_v4()?,
                0x20,
                "the IPv4 type of service of a mapped connection"
            );
            Ok(())
        })
        .unwrap();
    drop(client);
    // An IPv6 client's connection has the traffic class.
    let client = std::net::TcpStream::connect(("::1", port)).unwrap();
    let accepted = within(listener.accept()).await.unwrap();
    let tclass = accepted.with_sock_ref(|s| s.tclass_v6()).unwrap();
    assert_eq!(tclass, 0x20, "the IPv6 traffic class of an IPv6 connection");
    drop(client);

    let udp = a_socket(&selector)
        .udp()
        .type_of_service(0x20)
        .bind(("::", 0))
        .await
        .unwrap();
    udp.with_sock_ref(|s| {
        assert_eq!(s.tclass_v6()?, 0x20, "the IPv6 traffic class");
        assert_eq!(
            s.tos_v4()?,
            0x20,
            "the IPv4 type of service of a dual-stack socket"
        );
        Ok(())
    })
    .unwrap();
}

/// Every option a listener is built with reaches the sockets it accepts, whether Linux copies
/// it from the listener or it must be set on each one: `no_delay` (both ways), keep-alive and
/// its three parameters, `linger`, the buffer sizes and the type of service.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn every_listener_option_reaches_the_accepted_sockets() {
    let selector = SelectorManager::new();
    for no_delay in [false, true] {
        let listener = a_socket(&selector)
            .tcp()
            .no_delay(no_delay)
            .keep_alive_idle(Duration::from_secs(42))
            .keep_alive_interval(Duration::from_secs(7))
            .keep_alive_count(5)
            .linger(Duration::from_secs(3))
            .send_buffer_size(64 * 1024)
            .receive_buffer_size(96 * 1024)
            .type_of_service(0x10)
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = listener.port().unwrap();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let accepted = within(listener.accept()).await.unwrap();
        accepted
            .with_sock_ref(|s| {
                assert_eq!(s.tcp_nodelay()?, no_delay);
                assert!(s.keepalive()?);
                assert_eq!(s.tcp_keepalive_time()?, Duration::from_secs(42));
                assert_eq!(s.tcp_keepalive_interval()?, Duration::from_secs(7));
                assert_eq!(s.tcp_keepalive_retries()?, 5);
                assert_eq!(s.linger()?, Some(Duration::from_secs(3)));
                // Linux doubles what it is asked for.
                assert_eq!(s.send_buffer_size()?, 2 * 64 * 1024);
                assert_eq!(s.recv_buffer_size()?, 2 * 96 * 1024);
                assert_eq!(s.tos_v4()?, 0x10);
                Ok(())
            })
            .unwrap();
        drop(client);
    }
}

/// Keep-alive values the kernel does not take (0, more than it counts, a `Duration::MAX`) and
/// a linger of years fail `bind` and `connect` with `InvalidOption` naming the option, or are
/// clamped as documented: never a panic, never a wrapped value the kernel would take.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn out_of_range_keep_alive_values_are_refused_by_name() {
    let selector = SelectorManager::new();
    let server = net_tests::loopback::tcp_listener(&selector).await;
    type Configure = fn(net_sockets::TcpSocketBuilder) -> net_sockets::TcpSocketBuilder;
    let cases: [(&str, Configure); 6] = [
        ("keep_alive_idle", |b| b.keep_alive_idle(Duration::ZERO)),
        ("keep_alive_idle", |b| b.keep_alive_idle(Duration::MAX)),
        ("keep_alive_interval", |b| {
            b.keep_alive_interval(Duration::from_secs(u64::from(u32::MAX) + 1))
        }),
        ("keep_alive_count", |b| b.keep_alive_count(0)),
        ("keep_alive_count", |b| b.keep_alive_count(u32::MAX)),
        ("keep_alive_count", |b| b.keep_alive_count(1 << 31)),
    ];
    for (option, configure) in cases {
        let bound = configure(a_socket(&selector).tcp())
            .bind(("127.0.0.1", 0))
            .await;
        assert!(
            matches!(&bound, Err(Error::InvalidOption { option: o, .. }) if *o == option),
            "bind with a bad {option}: {bound:?}"
        );
        let connected =
            within(configure(a_socket(&selector).tcp()).connect(server.local_address())).await;
        assert!(
            matches!(&connected, Err(Error::InvalidOption { option: o, .. }) if *o == option),
            "connect with a bad {option}: {connected:?}"
        );
    }
    // A linger of years is the longest the kernel counts, not a wrapped (negative) time.
    let socket = within(
        a_socket(&selector)
            .tcp()
            .linger(Duration::MAX)
            .connect(server.local_address()),
    )
    .await
    .unwrap();
    let linger = socket.with_sock_ref(|s| s.linger()).unwrap();
    assert_eq!(linger, Some(Duration::from_secs(i32::MAX as u64)));
}

/// Many quick connections, from two client addresses at once, to a listener with both caps:
/// no more connections are ever open than `max_connections`, nor from one address than
/// `max_connections_per_ip`, and once every client saw its end no place is left taken: the
/// listener counts none open, and admits a full set again from each address.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn caps_hold_and_free_every_place_under_many_parallel_connections() {
    use std::collections::HashMap;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::sync::{Arc, Mutex};

    use net_io::LineEnding;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const MAX: usize = 4;
    const PER_IP: usize = 3;
    const CLIENTS: usize = 600;
    const IN_FLIGHT: usize = 48;
    let clients = [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2)];

    let selector = SelectorManager::new();
    let server = Arc::new(
        a_socket(&selector)
            .tcp()
            .max_connections(MAX)
            .max_connections_per_ip(PER_IP)
            .bind(("127.0.0.1", 0))
            .await
            .unwrap(),
    );
    let address = SocketAddr::from(([127, 0, 0, 1], server.port().unwrap()));
    // Open connections as the handlers see them: all, and by address; and the most seen.
    #[derive(Default)]
    struct Seen {
        open: usize,
        by_ip: HashMap<IpAddr, usize>,
        most: usize,
        most_by_ip: usize,
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let serving = {
        let server = Arc::clone(&server);
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let mut handlers = tokio::task::JoinSet::new();
            while let Ok(mut socket) = server.accept().await {
                let ip = socket.remote_address().as_inet().unwrap().ip();
                {
                    let mut seen = seen.lock().unwrap();
                    seen.open += 1;
                    seen.most = seen.most.max(seen.open);
                    let by_ip = seen.by_ip.entry(ip).or_insert(0);
                    *by_ip += 1;
                    let by_ip = *by_ip;
                    seen.most_by_ip = seen.most_by_ip.max(by_ip);
                    assert!(server.stats().open <= MAX, "{:?}", server.stats());
                }
                let seen = Arc::clone(&seen);
                handlers.spawn(async move {
                    let mut input = socket.open_read_channel().unwrap();
                    let _ = input.read_line(16, LineEnding::Default).await;
                    drop(input);
                    {
                        let mut seen = seen.lock().unwrap();
                        seen.open -= 1;
                        *seen.by_ip.get_mut(&ip).unwrap() -= 1;
                    }
                    socket.close();
                });
                while handlers.try_join_next().is_some() {}
            }
            while handlers.join_next().await.is_some() {}
        })
    };

    let gate = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut connecting = tokio::task::JoinSet::new();
    for i in 0..CLIENTS {
        let permit = Arc::clone(&gate).acquire_owned().await.unwrap();
        let from = clients[i % clients.len()];
        connecting.spawn(async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::from((from, 0))).unwrap();
            let mut stream = socket.connect(address).await.unwrap();
            // Refused ones are closed at once: the write or the read may fail.
            let _ = stream.write_all(b"x\n").await;
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
            drop(permit);
        });
    }
    while let Some(done) = within(connecting.join_next()).await {
        done.unwrap();
    }
    {
        let seen = seen.lock().unwrap();
        assert!(seen.most <= MAX, "{} open at once", seen.most);
        assert!(
            seen.most_by_ip <= PER_IP,
            "{} from one address",
            seen.most_by_ip
        );
    }
    // Every client saw its end: every place is free.
    assert_eq!(server.stats().open, 0, "{:?}", server.stats());
    // A full set from one address, and the rest of the cap from the other, is admitted.
    let mut kept = Vec::new();
    for from in [clients[0], clients[0], clients[0], clients[1]] {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((from, 0))).unwrap();
        kept.push(within(socket.connect(address)).await.unwrap());
    }
    let open = async {
        loop {
            if server.stats().open == MAX {
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    within(open).await;
    drop(kept);
    server.close();
    within(serving).await.unwrap();
}

/// A listener adopted with `from_std` gets the builder's options for the connections it
/// accepts, the buffer sizes among them, TCP as Unix: each accepted socket has the sizes asked
/// for. (Before, an adopted Unix listener's connections got them and an adopted TCP one's did
/// not: they were set on a listener only before its `bind`, and a TCP connection takes its
/// listener's.)
#[cfg(target_os = "linux")]
#[tokio::test]
async fn an_adopted_listener_gives_its_connections_the_builders_buffer_sizes() {
    let selector = SelectorManager::new();
    let builder = a_socket(&selector)
        .tcp()
        .send_buffer_size(64 * 1024)
        .receive_buffer_size(96 * 1024);
    let check = |which: &'static str| {
        move |s: socket2::SockRef<'_>| {
            // Linux doubles what it is asked for; its defaults differ.
            assert_eq!(s.send_buffer_size()?, 2 * 64 * 1024, "{which}");
            assert_eq!(s.recv_buffer_size()?, 2 * 96 * 1024, "{which}");
            Ok(())
        }
    };

    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = std_listener.local_addr().unwrap();
    let server = builder.clone().from_std(std_listener).unwrap();
    server.with_sock_ref(check("adopted TCP listener")).unwrap();
    let client = std::net::TcpStream::connect(address).unwrap();
    let accepted = within(server.accept()).await.unwrap();
    accepted.with_sock_ref(check("accepted TCP")).unwrap();
    drop(client);

    let dir = net_tests::TempDir::new("hopts");
    let path = dir.join("adopted.sock");
    let std_listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let server = builder.from_std(std_listener).unwrap();
    server
        .with_sock_ref(check("adopted Unix listener"))
        .unwrap();
    let client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let accepted = within(server.accept()).await.unwrap();
    accepted.with_sock_ref(check("accepted Unix")).unwrap();
    drop(client);
}

/// The extremes of a listener's graceful shutdown, at its `max_connections` cap with an
/// `accept` waiting for a place: a grace of `Duration::MAX` stops accepting at once (the
/// waiting `accept` fails), and returns as soon as the connections close by themselves when
/// told, all finished; a grace of `Duration::ZERO` cuts at once the ones that do not listen.
/// Neither panics on the time (`Instant + Duration::MAX` would).
#[tokio::test]
async fn shutdowns_with_no_grace_and_the_longest_grace_count_every_connection() {
    use std::sync::Arc;

    use net_io::LineEnding;

    let selector = SelectorManager::new();
    for grace in [Duration::MAX, Duration::ZERO] {
        let server = Arc::new(
            a_socket(&selector)
                .tcp()
                .max_connections(2)
                .bind(("127.0.0.1", 0))
                .await
                .unwrap(),
        );
        let port = server.port().unwrap();
        let mut clients = Vec::new();
        let mut handlers = Vec::new();
        for _ in 0..2 {
            clients.push(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
            let socket = within(server.accept()).await.unwrap();
            handlers.push(tokio::spawn(async move {
                let mut connection = socket.connection().unwrap();
                let polite = grace == Duration::MAX;
                tokio::select! {
                    read = connection.input.read_line(64, LineEnding::Default) => read.map(|_| ()),
                    () = connection.socket.shutdown_requested(), if polite => {
                        connection.socket.close();
                        Ok(())
                    }
                }
            }));
        }
        // A third client waits in the backlog, and an accept for a place.
        clients.push(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
        let waiting = {
            let server = Arc::clone(&server);
            tokio::spawn(async move { server.accept().await })
        };
        let report = within(server.shutdown(grace)).await;
        let (finished, cut) = if grace == Duration::MAX {
            (2, 0)
        } else {
            (0, 2)
        };
        assert_eq!(
            (report.finished, report.cut),
            (finished, cut),
            "grace {grace:?}: {report:?}"
        );
        let accepted = within(waiting).await.unwrap();
        assert!(matches!(accepted, Err(Error::Closed)), "{accepted:?}");
        for handler in handlers {
            let ended = within(handler).await.unwrap();
            assert_eq!(ended.is_ok(), grace == Duration::MAX, "{ended:?}");
        }
        assert_eq!(server.stats().open, 0);
    }
}

/// A listener dropped without a shutdown leaves the connections it accepted open and served,
/// and a later shutdown of the selector still tells them, counts them and cuts the ones left.
#[tokio::test]
async fn connections_outlive_their_dropped_listener_and_the_selector_shutdown_counts_them() {
    use net_io::LineEnding;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

    let selector = SelectorManager::new();
    let server = net_tests::loopback::tcp_listener(&selector).await;
    let address = server.local_address();
    let port = server.port().unwrap();
    let client = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let socket = within(server.accept()).await.unwrap();
    drop(server);
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
    assert!(refused.is_err(), "{address} still listens");
    let mut connection = socket.connection().unwrap();
    let (read, mut write) = client.into_split();
    let mut read = tokio::io::BufReader::new(read);
    write.write_all(b"ping\n").await.unwrap();
    let line = within(connection.input.read_line(64, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("ping"));
    connection.output.write_string_utf8("pong\n").await.unwrap();
    connection.output.flush().await.unwrap();
    let mut answer = String::new();
    within(read.read_line(&mut answer)).await.unwrap();
    assert_eq!(answer, "pong\n");
    assert!(!connection.socket.is_shutdown_requested());

    let shutdown = {
        let selector = selector.clone();
        tokio::spawn(async move { selector.shutdown(Duration::from_millis(100)).await })
    };
    within(connection.socket.shutdown_requested()).await;
    let report = within(shutdown).await.unwrap();
    assert_eq!((report.finished, report.cut), (0, 1), "{report:?}");
    let after = within(connection.input.read_line(64, LineEnding::Default)).await;
    assert!(after.is_err(), "{after:?}");
}

/// A shutdown that begins while connections keep coming and `accept` keeps handing them out, on
/// other threads: every connection `accept` handed out is told (a handler that closes when told
/// ends), and the report counts each one, as finished; none is left to be cut at the end of
/// the grace period, and none handed out is missing from the count.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shutdown_amid_accepts_counts_and_tells_every_connection_handed_out() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let selector = SelectorManager::new();
    for round in 0..20 {
        let server = Arc::new(
            a_socket(&selector)
                .tcp()
                .bind(("127.0.0.1", 0))
                .await
                .unwrap(),
        );
        let port = server.port().unwrap();
        let handed_out = Arc::new(AtomicUsize::new(0));
        let (enough, mut enough_seen) = tokio::sync::mpsc::channel::<()>(1);
        let accepting = {
            let server = Arc::clone(&server);
            let handed_out = Arc::clone(&handed_out);
            tokio::spawn(async move {
                let mut handlers = tokio::task::JoinSet::new();
                while let Ok(socket) = server.accept().await {
                    if handed_out.fetch_add(1, Ordering::SeqCst) + 1 == 8 {
                        let _ = enough.try_send(());
                    }
                    handlers.spawn(async move {
                        socket.shutdown_requested().await;
                        socket.close();
                    });
                }
                handlers
            })
        };
        let connecting = tokio::spawn(async move {
            let mut clients = Vec::new();
            for _ in 0..64 {
                match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    Ok(client) => clients.push(client),
                    Err(_) => break,
                }
            }
            clients
        });
        within(enough_seen.recv()).await;
        let report = within(server.shutdown(Duration::from_secs(10))).await;
        let mut handlers = within(accepting).await.unwrap();
        let handed_out = handed_out.load(Ordering::SeqCst);
        assert_eq!(
            (report.finished, report.cut),
            (handed_out, 0),
            "round {round}: {report:?}"
        );
        while let Some(ended) = within(handlers.join_next()).await {
            ended.unwrap();
        }
        drop(within(connecting).await.unwrap());
        assert_eq!(server.stats().open, 0);
    }
}
