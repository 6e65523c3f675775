//! Every option set on a builder is visible through `getsockopt` on the real socket.

use std::time::Duration;

use net_sockets::{SelectorManager, a_socket};
use net_tests::loopback::{connect, echo_server};
use net_tests::within;

#[tokio::test]
async fn tcp_client_options_reach_the_socket() {
    let selector = SelectorManager::new();
    let server = echo_server(&selector).await;
    let socket = a_socket(&selector)
        .tcp()
        .no_delay(false)
        .keep_alive(true)
        .keep_alive_idle(Duration::from_secs(42))
        .keep_alive_interval(Duration::from_secs(7))
        .keep_alive_count(5)
        .reuse_address(true)
        .reuse_port(true)
        .type_of_service(0x10)
        .send_buffer_size(64 * 1024)
        .receive_buffer_size(96 * 1024)
        .linger(Duration::from_secs(3))
        .connect(server.local_address())
        .await
        .unwrap();
    socket
        .with_sock_ref(|s| {
            assert!(!s.tcp_nodelay()?);
            assert!(s.keepalive()?);
            assert_eq!(s.tcp_keepalive_time()?, Duration::from_secs(42));
            assert_eq!(s.tcp_keepalive_interval()?, Duration::from_secs(7));
            assert_eq!(s.tcp_keepalive_retries()?, 5);
            assert!(s.reuse_address()?);
            assert!(s.reuse_port()?);
            assert_eq!(s.tos_v4()?, 0x10);
            // Linux doubles the requested sizes for bookkeeping.
            assert!(s.send_buffer_size()? >= 64 * 1024);
            assert!(s.recv_buffer_size()? >= 96 * 1024);
            assert_eq!(s.linger()?, Some(Duration::from_secs(3)));
            Ok(())
        })
        .unwrap();
}

#[tokio::test]
async fn defaults_are_no_delay_on_and_keep_alive_off() {
    let selector = SelectorManager::new();
    let server = echo_server(&selector).await;
    let socket = connect(&selector, server.local_address()).await;
    socket
        .with_sock_ref(|s| {
            assert!(s.tcp_nodelay()?);
            assert!(!s.keepalive()?);
            assert_eq!(s.linger()?, None);
            Ok(())
        })
        .unwrap();
    // A listener reuses its address by default (as tokio's do), so a restarted server binds.
    server
        .with_sock_ref(|s| s.reuse_address())
        .map(|on| assert!(on))
        .unwrap();
}

#[tokio::test]
async fn listener_options_and_options_of_accepted_sockets() {
    let selector = SelectorManager::new();
    let listener = a_socket(&selector)
        .tcp()
        .reuse_address(false)
        .reuse_port(true)
        .receive_buffer_size(128 * 1024)
        .no_delay(false)
        .keep_alive(true)
        .backlog(16)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    listener
        .with_sock_ref(|s| {
            assert!(!s.reuse_address()?);
            assert!(s.reuse_port()?);
            assert!(s.recv_buffer_size()? >= 128 * 1024);
            Ok(())
        })
        .unwrap();
    let client = connect(&selector, listener.local_address()).await;
    let accepted = within(listener.accept()).await.unwrap();
    accepted
        .with_sock_ref(|s| {
            assert!(!s.tcp_nodelay()?);
            assert!(s.keepalive()?);
            Ok(())
        })
        .unwrap();
    client.close();
}

#[tokio::test]
async fn options_set_on_a_socket_carry_into_tcp_and_udp() {
    let selector = SelectorManager::new();
    let base = a_socket(&selector).configure(|o| {
        o.type_of_service = Some(0x08);
        o.send_buffer_size = Some(48 * 1024);
        o.reuse_port = true;
    });
    let udp = base.clone().udp().bind(("127.0.0.1", 0)).await.unwrap();
    udp.with_sock_ref(|s| {
        assert_eq!(s.tos_v4()?, 0x08);
        assert!(s.send_buffer_size()? >= 48 * 1024);
        assert!(s.reuse_port()?);
        assert!(!s.broadcast()?);
        Ok(())
    })
    .unwrap();
    let server = echo_server(&selector).await;
    let tcp = base
        .tcp()
        .configure(|o| o.no_delay = false)
        .connect(server.local_address())
        .await
        .unwrap();
    tcp.with_sock_ref(|s| {
        assert_eq!(s.tos_v4()?, 0x08);
        assert!(s.reuse_port()?);
        assert!(!s.tcp_nodelay()?);
        Ok(())
    })
    .unwrap();
}

#[tokio::test]
async fn udp_options_reach_the_socket() {
    let selector = SelectorManager::new();
    let udp = a_socket(&selector)
        .udp()
        .broadcast(true)
        .reuse_address(true)
        .reuse_port(true)
        .receive_buffer_size(200 * 1024)
        .send_buffer_size(100 * 1024)
        .type_of_service(0x04)
        .bind(("0.0.0.0", 0))
        .await
        .unwrap();
    udp.with_sock_ref(|s| {
        assert!(s.broadcast()?);
        assert!(s.reuse_address()?);
        assert!(s.reuse_port()?);
        assert!(s.recv_buffer_size()? >= 200 * 1024);
        assert!(s.send_buffer_size()? >= 100 * 1024);
        assert_eq!(s.tos_v4()?, 0x04);
        Ok(())
    })
    .unwrap();
    // The option reaches a connected socket too. (To the loopback address rather than the
    // unspecified one the socket above is bound to, so that the connect succeeds everywhere and
    // the check below always runs.)
    let port = udp.local_address().port().expect("an inet socket");
    let connected = a_socket(&selector)
        .udp()
        .broadcast(true)
        .connect(("127.0.0.1", port))
        .await
        .unwrap();
    assert!(connected.with_sock_ref(|s| s.broadcast()).unwrap());
}

#[tokio::test]
async fn ipv6_sockets_take_the_traffic_class() {
    if !net_tests::loopback::has_ipv6_loopback() {
        eprintln!("no IPv6 loopback: skipping");
        return;
    }
    let selector = SelectorManager::new();
    let listener = a_socket(&selector)
        .tcp()
        .type_of_service(0x20)
        .bind(("::1", 0))
        .await
        .unwrap();
    listener
        .with_sock_ref(|s| s.tclass_v6())
        .map(|tclass| assert_eq!(tclass, 0x20))
        .unwrap();
    assert!(listener.local_address().to_string().starts_with("[::1]:"));
}

/// The kernel takes `SO_LINGER` in whole seconds, and 0 seconds means "reset on close". A
/// linger time under a second (or with a fraction) must not be cut down to 0: that would turn
/// every graceful close into a reset that the peer reads as `ConnectionReset`, its queued data
/// at risk. Checked on a connected socket and on an accepted one.
#[tokio::test]
async fn a_linger_under_a_second_never_turns_close_into_a_reset() {
    use net_tests::loopback::tcp_listener_with;

    let selector = SelectorManager::new();
    let listener = tcp_listener_with(&selector, |b| b.linger(Duration::from_millis(500))).await;
    for client_closes in [true, false] {
        let client = a_socket(&selector)
            .tcp()
            .linger(Duration::from_millis(1500))
            .connect(listener.local_address())
            .await
            .unwrap();
        let accepted = within(listener.accept()).await.unwrap();
        // Rounded up, never down.
        assert_eq!(
            client.with_sock_ref(|s| s.linger()).unwrap(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            accepted.with_sock_ref(|s| s.linger()).unwrap(),
            Some(Duration::from_secs(1))
        );
        if client_closes {
            close_after_a_line_and_see_a_clean_end(client, accepted).await;
        } else {
            close_after_a_line_and_see_a_clean_end(accepted, client).await;
        }
    }
}

/// `linger(Duration::ZERO)` makes `close` a reset, as its docs say; but a connection whose two
/// directions both ended cleanly (the peer's end of stream read, and our write side shut down
/// with `flush_and_close`, which reported success) is not closed by `close`: it closes itself,
/// and that close must be the end `flush_and_close` promised — everything written, then the
/// FIN. Before, it was a reset: the peer read `ConnectionReset` instead of the end of the
/// stream, and what the kernel still had for it was thrown away. Either order: the input ended
/// first (the shutdown closes the connection), or the write side was shut down first (the end
/// of the input closes it; on loopback everything has arrived by then, so this order passed
/// before too). The answer fits in the kernel's buffers; the peer reads it only after the
/// server's socket closed.
#[tokio::test]
async fn a_zero_linger_never_turns_the_end_of_both_directions_into_a_reset() {
    use net_io::LineEnding;
    use net_tests::loopback::tcp_listener_with;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let selector = SelectorManager::new();
    let listener = tcp_listener_with(&selector, |b| b.linger(Duration::ZERO)).await;
    let answer = net_tests::payload(64 * 1024);
    for input_ends_first in [true, false] {
        let mut peer = within(tokio::net::TcpStream::connect(
            listener.local_address().to_string(),
        ))
        .await
        .unwrap();
        let accepted = within(listener.accept()).await.unwrap();
        let mut connection = accepted.connection().unwrap();
        peer.write_all(b"request\n").await.unwrap();
        let request = within(connection.input.read_line(64, LineEnding::Default)).await;
        assert_eq!(request.unwrap().as_deref(), Some("request"));
        if input_ends_first {
            peer.shutdown().await.unwrap();
            let end = within(connection.input.read_line(64, LineEnding::Default)).await;
            assert!(matches!(end, Ok(None)), "{end:?}");
        }
        connection.output.write_fully(&answer).await.unwrap();
        within(connection.output.flush_and_close()).await.unwrap();
        if !input_ends_first {
            peer.shutdown().await.unwrap();
            let end = within(connection.input.read_line(64, LineEnding::Default)).await;
            assert!(matches!(end, Ok(None)), "{end:?}");
        }
        // Both directions ended: the socket closed itself.
        within(connection.socket.await_closed()).await;
        let mut received = Vec::new();
        let read = within(peer.read_to_end(&mut received)).await;
        assert!(
            read.is_ok(),
            "input ended first: {input_ends_first}: the peer read {read:?} after {} of {} bytes",
            received.len(),
            answer.len()
        );
        assert!(received == answer, "input ended first: {input_ends_first}");
    }
}

/// `closing` writes a line and closes; `reading` must get the line, then a clean end of stream.
async fn close_after_a_line_and_see_a_clean_end(
    mut closing: net_sockets::Socket,
    mut reading: net_sockets::Socket,
) {
    use net_io::LineEnding;

    let mut input = reading.open_read_channel().unwrap();
    let mut output = closing.open_write_channel(true).unwrap();
    output.write_string_utf8("last words\n").await.unwrap();
    closing.close();
    let line = within(input.read_line(64, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("last words"));
    let end = within(input.read_line(64, LineEnding::Default)).await;
    assert!(
        matches!(end, Ok(None)),
        "a clean end of stream, not {end:?}"
    );
}

/// The kernel counts keep-alive times in whole seconds and refuses 0: a time with a fraction
/// is rounded up (500 ms is 1 s, 1.5 s is 2 s), never down to a value the OS refuses.
#[tokio::test]
async fn keep_alive_times_with_a_fraction_are_rounded_up() {
    let selector = SelectorManager::new();
    let server = echo_server(&selector).await;
    let socket = within(
        a_socket(&selector)
            .tcp()
            .keep_alive_idle(Duration::from_millis(500))
            .keep_alive_interval(Duration::from_millis(1500))
            .connect(server.local_address()),
    )
    .await
    .unwrap();
    socket
        .with_sock_ref(|s| {
            assert!(s.keepalive()?);
            assert_eq!(s.tcp_keepalive_time()?, Duration::from_secs(1));
            assert_eq!(s.tcp_keepalive_interval()?, Duration::from_secs(2));
            Ok(())
        })
        .unwrap();
}

/// The kernel takes buffer sizes as a C int. A size above what one holds (a `usize` of
/// 4 GiB or more) is as large a buffer as the kernel gives, as `i32::MAX` is — never the
/// low 32 bits of the size, which for exactly 4 GiB is 0: the smallest buffer there is.
#[cfg(target_pointer_width = "64")]
#[tokio::test]
async fn buffer_sizes_beyond_a_c_int_are_the_largest_not_wrapped() {
    let selector = SelectorManager::new();
    let sizes = |requested: usize| {
        let selector = selector.clone();
        async move {
            let udp = a_socket(&selector)
                .udp()
                .send_buffer_size(requested)
                .receive_buffer_size(requested)
                .bind(("127.0.0.1", 0))
                .await
                .unwrap();
            udp.with_sock_ref(|s| Ok((s.send_buffer_size()?, s.recv_buffer_size()?)))
                .unwrap()
        }
    };
    let largest = sizes(i32::MAX as usize).await;
    for requested in [1 << 32, (1 << 32) + 4096, usize::MAX] {
        assert_eq!(sizes(requested).await, largest, "requested {requested}");
    }
}

/// On a Unix socket the TCP and IP options (`no_delay`, keep-alive, type of service, the
/// `reuse_*` flags) are ignored, as `SocketOptions` says, even with values the OS would refuse
/// on TCP (a keep-alive interval of zero): `bind`, `connect` and `accept` succeed. The buffer
/// sizes and `linger` reach the listener, the client and the accepted socket.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn tcp_and_ip_options_are_ignored_on_unix_sockets_and_buffer_sizes_apply() {
    let selector = SelectorManager::new();
    let path = std::env::temp_dir().join(format!("net-sockets-{}-opts.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let builder = a_socket(&selector)
        .tcp()
        .no_delay(true)
        .keep_alive(true)
        .keep_alive_interval(Duration::ZERO)
        .keep_alive_count(0)
        .type_of_service(0x10)
        .reuse_address(true)
        .reuse_port(true)
        .send_buffer_size(16 * 1024)
        .receive_buffer_size(24 * 1024)
        .linger(Duration::from_secs(3));
    let address = net_sockets::UnixSocketAddress::new(&path);
    let server = builder.clone().bind(address.clone()).await.unwrap();
    let client = within(builder.connect(address)).await.unwrap();
    let accepted = within(server.accept()).await.unwrap();
    let check = |which: &'static str| {
        move |s: socket2::SockRef<'_>| {
            // Linux doubles what it is asked for; its defaults are far larger.
            assert_eq!(s.send_buffer_size()?, 2 * 16 * 1024, "{which}");
            assert_eq!(s.recv_buffer_size()?, 2 * 24 * 1024, "{which}");
            assert!(!s.keepalive()?, "{which}");
            Ok(())
        }
    };
    server.with_sock_ref(check("listener")).unwrap();
    client.with_sock_ref(check("client")).unwrap();
    accepted.with_sock_ref(check("accepted")).unwrap();
    client
        .with_sock_ref(|s| {
            assert_eq!(s.linger()?, Some(Duration::from_secs(3)));
            Ok(())
        })
        .unwrap();
    accepted
        .with_sock_ref(|s| {
            assert_eq!(s.linger()?, Some(Duration::from_secs(3)));
            assert!(!s.keepalive()?);
            Ok(())
        })
        .unwrap();
    server.close();
}

/// A keep-alive parameter turns keep-alive on, as its docs say, also after `keep_alive(false)`:
/// the last call wins. (Before, `keep_alive(false)` won whatever came after it.)
#[tokio::test]
async fn a_keep_alive_parameter_after_keep_alive_false_turns_it_on() {
    let selector = net_sockets::SelectorManager::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = net_tests::within(
        net_sockets::a_socket(&selector)
            .tcp()
            .keep_alive(false)
            .keep_alive_idle(std::time::Duration::from_secs(42))
            .connect(listener.local_addr().unwrap()),
    )
    .await
    .unwrap();
    let (on, idle) = socket
        .with_sock_ref(|s| Ok((s.keepalive()?, s.tcp_keepalive_time()?)))
        .unwrap();
    assert!(on);
    assert_eq!(idle, std::time::Duration::from_secs(42));
    // And the other way round: `keep_alive(false)` last turns it off.
    let socket = net_tests::within(
        net_sockets::a_socket(&selector)
            .tcp()
            .keep_alive_count(3)
            .keep_alive(false)
            .connect(listener.local_addr().unwrap()),
    )
    .await
    .unwrap();
    assert!(!socket.with_sock_ref(|s| s.keepalive()).unwrap());
}

/// two listeners on one port with `reuse_port` both accept connections (the
/// kernel spreads them by 4-tuple); 64 clients, each side must get at least one.
#[tokio::test]
async fn two_reuse_port_listeners_both_accept() {
    let selector = SelectorManager::new();
    let first = a_socket(&selector)
        .tcp()
        .reuse_port(true)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = first.port().unwrap();
    let second = a_socket(&selector)
        .tcp()
        .reuse_port(true)
        .bind(("127.0.0.1", port))
        .await
        .unwrap();
    let mut clients = Vec::new();
    for _ in 0..64 {
        clients.push(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
    }
    let (mut a, mut b) = (0, 0);
    while a + b < 64 {
        tokio::select! {
            r = first.accept() => { r.unwrap(); a += 1; }
            r = second.accept() => { r.unwrap(); b += 1; }
            () = tokio::time::sleep(Duration::from_secs(10)) => panic!("stalled at {a}+{b}"),
        }
    }
    assert!(a > 0 && b > 0, "{a} / {b}");
}

/// a backlog of 0 still makes a listener that accepts (Linux queues one), TCP and
/// Unix, and a UDP socket with zero and `usize::MAX` buffer sizes binds and carries a datagram.
#[tokio::test]
async fn a_backlog_of_zero_and_extreme_buffer_sizes_still_work() {
    let selector = SelectorManager::new();
    let tcp = a_socket(&selector)
        .tcp()
        .backlog(0)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let _client = std::net::TcpStream::connect(("127.0.0.1", tcp.port().unwrap())).unwrap();
    within(tcp.accept()).await.unwrap();
    let dir = net_tests::TempDir::new("aopt0");
    let path = dir.join("zero.sock");
    let unix = a_socket(&selector)
        .tcp()
        .backlog(0)
        .bind(net_sockets::UnixSocketAddress::new(&path))
        .await
        .unwrap();
    let _client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    within(unix.accept()).await.unwrap();
    for size in [0, usize::MAX] {
        let udp = a_socket(&selector)
            .udp()
            .send_buffer_size(size)
            .receive_buffer_size(size)
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sender
            .send_to(b"hello", ("127.0.0.1", udp.local_address().port().unwrap()))
            .unwrap();
        let datagram = within(udp.receive()).await.unwrap();
        assert_eq!(&datagram.packet[..], b"hello", "buffer size {size}");
    }
}
