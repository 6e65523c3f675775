//! Every socket option the builders offer, read back with `getsockopt` on the real socket of
//! each kind (TCP listener, accepted, client; UDP bound and connected; Unix listener, accepted,
//! client; IPv4, IPv6, dual-stack), against `SocketOptions`' docs.
#![cfg(target_os = "linux")]

use std::io::ErrorKind;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::Duration;

use net_sockets::{SelectorManager, ServerSocket, UnixSocketAddress, a_socket};
use net_tests::loopback::has_ipv6_loopback;
use net_tests::within;
use socket2::{Domain, SockRef, Socket as RawSocket, Type};

/// What `ss` reports as a listening socket's backlog (its `Send-Q`), or `None` where `ss`
/// cannot be run.
fn listen_backlog(args: &[&str], filter: &str) -> Option<u32> {
    let out = std::process::Command::new("ss")
        .args(args)
        .arg(filter)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The backlog of the TCP listener on `127.0.0.1:port` (every caller's address: a listener of
/// another test on `::` or `0.0.0.0` may hold the same port number).
fn tcp_backlog(port: u16) -> Option<u32> {
    listen_backlog(&["-ltnH"], &format!("src 127.0.0.1 and sport = :{port}"))
}

fn unique_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("options-{}-{tag}.sock", std::process::id()))
}

// ---------------------------------------------------------------------------------------------
// Defaults: what the kernel holds when the user sets nothing.
// ---------------------------------------------------------------------------------------------

/// `SocketOptions`' defaults on the three TCP kinds, IPv4: `no_delay` on (client and accepted),
/// keep-alive off, no linger, `SO_REUSEADDR` on for the listener only, `SO_REUSEPORT` off,
/// backlog 1024.
#[tokio::test]
async fn tcp_defaults_on_listener_client_and_accepted_ipv4() {
    let selector = SelectorManager::new();
    let listener = a_socket(&selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.port().unwrap();
    listener
        .with_sock_ref(|s| {
            assert!(s.reuse_address()?, "listener SO_REUSEADDR on by default");
            assert!(!s.reuse_port()?, "listener SO_REUSEPORT off by default");
            assert_eq!(s.linger()?, None);
            assert!(!s.keepalive()?);
            Ok(())
        })
        .unwrap();
    if let Some(backlog) = tcp_backlog(port) {
        assert_eq!(backlog, 1024, "default backlog");
    }
    let client = within(a_socket(&selector).tcp().connect(("127.0.0.1", port)))
        .await
        .unwrap();
    let accepted = within(listener.accept()).await.unwrap();
    for (which, socket) in [("client", &client), ("accepted", &accepted)] {
        socket
            .with_sock_ref(|s| {
                assert!(s.tcp_nodelay()?, "{which}: TCP_NODELAY on by default");
                assert!(!s.keepalive()?, "{which}: SO_KEEPALIVE off by default");
                assert_eq!(s.linger()?, None, "{which}: no SO_LINGER by default");
                assert!(!s.reuse_port()?, "{which}: SO_REUSEPORT off");
                assert_eq!(s.tos_v4()?, 0, "{which}: OS's IP_TOS (0)");
                Ok(())
            })
            .unwrap();
    }
    client
        .with_sock_ref(|s| {
            assert!(!s.reuse_address()?, "client: SO_REUSEADDR off by default");
            Ok(())
        })
        .unwrap();
}

/// The same on IPv6: a listener on `::` is dual-stack (`IPV6_V6ONLY` off, as the OS makes it),
/// one on `::1` too as far as the option goes; the client and accepted sockets have
/// `TCP_NODELAY` on.
#[tokio::test]
async fn tcp_defaults_ipv6_and_dual_stack() {
    if !has_ipv6_loopback() {
        eprintln!("no IPv6 loopback: skipping");
        return;
    }
    let selector = SelectorManager::new();
    let any = a_socket(&selector).tcp().bind(("::", 0)).await.unwrap();
    assert!(
        !any.with_sock_ref(|s| s.only_v6()).unwrap(),
        "`::` is dual-stack"
    );
    assert!(any.with_sock_ref(|s| s.reuse_address()).unwrap());
    let port = any.port().unwrap();
    // Dual-stack: an IPv4 client reaches it, and its accepted socket has the defaults.
    let v4 = within(a_socket(&selector).tcp().connect(("127.0.0.1", port)))
        .await
        .unwrap();
    let accepted4 = within(any.accept()).await.unwrap();
    let v6 = within(a_socket(&selector).tcp().connect(("::1", port)))
        .await
        .unwrap();
    let accepted6 = within(any.accept()).await.unwrap();
    for (which, socket) in [
        ("v4 client", &v4),
        ("accepted v4-mapped", &accepted4),
        ("v6 client", &v6),
        ("accepted v6", &accepted6),
    ] {
        socket
            .with_sock_ref(|s| {
                assert!(s.tcp_nodelay()?, "{which}: TCP_NODELAY");
                assert!(!s.keepalive()?, "{which}: SO_KEEPALIVE");
                assert_eq!(s.linger()?, None, "{which}: SO_LINGER");
                Ok(())
            })
            .unwrap();
    }
    // `::` is taken for IPv4 too: as `bind`'s docs say, `0.0.0.0` at that port is in use
    // (both with the default SO_REUSEADDR on).
    let e = a_socket(&selector)
        .tcp()
        .bind(("0.0.0.0", port))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AddrInUse, "{e:?}");
}

/// UDP defaults: `SO_BROADCAST` off, `SO_REUSEADDR` and `SO_REUSEPORT` off, `::` dual-stack, on
/// bound and connected sockets.
#[tokio::test]
async fn udp_defaults_bound_connected_and_dual_stack() {
    let selector = SelectorManager::new();
    let bound = a_socket(&selector)
        .udp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = bound.local_address().port().unwrap();
    let connected = a_socket(&selector)
        .udp()
        .connect(("127.0.0.1", port))
        .await
        .unwrap();
    let check = |which: &'static str| {
        move |s: SockRef<'_>| {
            assert!(!s.broadcast()?, "{which}: SO_BROADCAST off");
            assert!(!s.reuse_address()?, "{which}: SO_REUSEADDR off");
            assert!(!s.reuse_port()?, "{which}: SO_REUSEPORT off");
            Ok(())
        }
    };
    bound.with_sock_ref(check("bound")).unwrap();
    connected.with_sock_ref(check("connected")).unwrap();
    // Without SO_REUSEADDR, a second bind to the port is refused.
    let e = a_socket(&selector)
        .udp()
        .bind(("127.0.0.1", port))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AddrInUse, "{e:?}");
    if has_ipv6_loopback() {
        let any = a_socket(&selector).udp().bind(("::", 0)).await.unwrap();
        any.with_sock_ref(check("bound ::")).unwrap();
        assert!(
            !any.with_sock_ref(|s| s.only_v6()).unwrap(),
            "`::` dual-stack"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Values set are the values read back.
// ---------------------------------------------------------------------------------------------

/// Every option set on a listener's builder is on the listener (where it applies) and on each
/// socket it accepts, read back exactly (buffer sizes doubled, as Linux does).
#[tokio::test]
async fn listener_options_reach_every_accepted_socket_exactly_ipv4() {
    let selector = SelectorManager::new();
    let listener = a_socket(&selector)
        .tcp()
        .no_delay(false)
        .keep_alive_idle(Duration::from_secs(42))
        .keep_alive_interval(Duration::from_secs(7))
        .keep_alive_count(5)
        .type_of_service(0x28)
        .send_buffer_size(64 * 1024)
        .receive_buffer_size(96 * 1024)
        .linger(Duration::from_secs(3))
        .reuse_port(true)
        .backlog(37)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.port().unwrap();
    if let Some(backlog) = tcp_backlog(port) {
        assert_eq!(backlog, 37);
    }
    listener
        .with_sock_ref(|s| {
            assert_eq!(s.tos_v4()?, 0x28);
            assert!(s.reuse_port()?);
            assert_eq!(s.send_buffer_size()?, 2 * 64 * 1024);
            assert_eq!(s.recv_buffer_size()?, 2 * 96 * 1024);
            Ok(())
        })
        .unwrap();
    let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let accepted = within(listener.accept()).await.unwrap();
    accepted
        .with_sock_ref(|s| {
            assert!(!s.tcp_nodelay()?);
            assert!(s.keepalive()?);
            assert_eq!(s.tcp_keepalive_time()?, Duration::from_secs(42));
            assert_eq!(s.tcp_keepalive_interval()?, Duration::from_secs(7));
            assert_eq!(s.tcp_keepalive_retries()?, 5);
            assert_eq!(s.tos_v4()?, 0x28, "IP_TOS inherited from the listener");
            assert_eq!(s.send_buffer_size()?, 2 * 64 * 1024);
            assert_eq!(s.recv_buffer_size()?, 2 * 96 * 1024);
            assert_eq!(s.linger()?, Some(Duration::from_secs(3)));
            Ok(())
        })
        .unwrap();
    drop(client);
}

/// `tcp_user_timeout` is on the listener, on each socket it accepts, and on a connected
/// socket, in the milliseconds the kernel counts: a fraction rounded up (never the 0 that
/// means the kernel's default), a time past the kernel's largest (`i32::MAX` ms, some 24.8
/// days) clamped to it rather than refused, and `Duration::ZERO` the kernel's default (none).
/// Unset, the OS's default (none) is left; Unix sockets ignore it. A listener adopted with the
/// builder's `from_std` gets it too, for itself and each socket it accepts, as a bound one
/// does.
#[tokio::test]
async fn tcp_user_timeout_reaches_listener_accepted_and_connected_sockets() {
    let selector = SelectorManager::new();
    let listener = a_socket(&selector)
        .tcp()
        .tcp_user_timeout(Duration::from_millis(2500))
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.port().unwrap();
    let user_timeout = |s: SockRef<'_>| s.tcp_user_timeout();
    assert_eq!(
        listener.with_sock_ref(user_timeout).unwrap(),
        Some(Duration::from_millis(2500)),
        "listener"
    );
    let cases = [
        (None, None),
        (Some(Duration::from_millis(700)), Some(700)),
        (Some(Duration::from_micros(1500)), Some(2)),
        (Some(Duration::from_nanos(1)), Some(1)),
        (Some(Duration::MAX), Some(i32::MAX as u64)),
        (Some(Duration::ZERO), None),
    ];
    for (asked, read_back) in cases {
        let builder = a_socket(&selector).tcp();
        let builder = match asked {
            Some(timeout) => builder.tcp_user_timeout(timeout),
            None => builder,
        };
        let client = within(builder.connect(("127.0.0.1", port))).await.unwrap();
        let accepted = within(listener.accept()).await.unwrap();
        assert_eq!(
            client.with_sock_ref(user_timeout).unwrap(),
            read_back.map(Duration::from_millis),
            "connected, asked {asked:?}"
        );
        assert_eq!(
            accepted.with_sock_ref(user_timeout).unwrap(),
            Some(Duration::from_millis(2500)),
            "accepted (the listener's), the client asked {asked:?}"
        );
    }
    // An adopted listener: set on it as it is adopted, and on what it accepts.
    let std_listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let adopted = a_socket(&selector)
        .tcp()
        .tcp_user_timeout(Duration::from_millis(1200))
        .from_std(std_listener)
        .unwrap();
    assert_eq!(
        adopted.with_sock_ref(user_timeout).unwrap(),
        Some(Duration::from_millis(1200)),
        "adopted listener"
    );
    let adopted_port = adopted.port().unwrap();
    let _client = within(
        a_socket(&selector)
            .tcp()
            .connect(("127.0.0.1", adopted_port)),
    )
    .await
    .unwrap();
    let accepted = within(adopted.accept()).await.unwrap();
    assert_eq!(
        accepted.with_sock_ref(user_timeout).unwrap(),
        Some(Duration::from_millis(1200)),
        "accepted by the adopted listener"
    );
    // Unix sockets ignore it, as they do the other TCP options.
    let path = unique_path("user-timeout");
    let _ = std::fs::remove_file(&path);
    let builder = a_socket(&selector)
        .tcp()
        .tcp_user_timeout(Duration::from_secs(1));
    let address = UnixSocketAddress::new(&path);
    let unix = builder.clone().bind(address.clone()).await.unwrap();
    let _client = within(builder.connect(address)).await.unwrap();
    let _accepted = within(unix.accept()).await.unwrap();
    unix.close();
    let _ = std::fs::remove_file(&path);
}

/// IPv6: the traffic class (and `IP_TOS`, on Linux) of a listener on `::1` and of the sockets
/// it accepts, and of an IPv6 client; exact buffer sizes.
#[tokio::test]
async fn type_of_service_on_ipv6_listener_accepted_and_client() {
    if !has_ipv6_loopback() {
        eprintln!("no IPv6 loopback: skipping");
        return;
    }
    let selector = SelectorManager::new();
    let listener = a_socket(&selector)
        .tcp()
        .type_of_service(0x48)
        .bind(("::1", 0))
        .await
        .unwrap();
    let port = listener.port().unwrap();
    let client = within(
        a_socket(&selector)
            .tcp()
            .type_of_service(0x20)
            .connect(("::1", port)),
    )
    .await
    .unwrap();
    let accepted = within(listener.accept()).await.unwrap();
    let tos = |s: SockRef<'_>| Ok((s.tclass_v6()?, s.tos_v4()?));
    assert_eq!(listener.with_sock_ref(tos).unwrap(), (0x48, 0x48));
    assert_eq!(
        accepted.with_sock_ref(tos).unwrap(),
        (0x48, 0x48),
        "accepted"
    );
    assert_eq!(client.with_sock_ref(tos).unwrap(), (0x20, 0x20), "client");
}

/// UDP: the type of service on a `::` socket (both options), on a connected IPv6 one, and the
/// broadcast flag and reuse flags read back.
#[tokio::test]
async fn udp_options_ipv6_and_connected() {
    if !has_ipv6_loopback() {
        eprintln!("no IPv6 loopback: skipping");
        return;
    }
    let selector = SelectorManager::new();
    let any = a_socket(&selector)
        .udp()
        .type_of_service(0x10)
        .reuse_address(true)
        .bind(("::", 0))
        .await
        .unwrap();
    let port = any.local_address().port().unwrap();
    assert_eq!(
        any.with_sock_ref(|s| Ok((s.tclass_v6()?, s.tos_v4()?, s.reuse_address()?)))
            .unwrap(),
        (0x10, 0x10, true)
    );
    // SO_REUSEADDR on both: Linux lets a second UDP socket bind the port.
    let again = a_socket(&selector)
        .udp()
        .reuse_address(true)
        .bind(("::", port))
        .await;
    assert!(again.is_ok(), "{again:?}");
    let connected = a_socket(&selector)
        .udp()
        .type_of_service(0x0c)
        .broadcast(true)
        .connect(("::1", port))
        .await
        .unwrap();
    assert_eq!(
        connected
            .with_sock_ref(|s| Ok((s.tclass_v6()?, s.tos_v4()?, s.broadcast()?)))
            .unwrap(),
        (0x0c, 0x0c, true)
    );
}

// ---------------------------------------------------------------------------------------------
// Backlog.
// ---------------------------------------------------------------------------------------------

/// A Unix listener's backlog is the one asked for: Linux queues backlog + 1 connections, then a
/// non-blocking connect fails with `EAGAIN`.
#[tokio::test]
async fn unix_listener_backlog_is_the_one_set() {
    let selector = SelectorManager::new();
    let path = unique_path("backlog");
    let _ = std::fs::remove_file(&path);
    let listener = a_socket(&selector)
        .tcp()
        .backlog(3)
        .bind(UnixSocketAddress::new(&path))
        .await
        .unwrap();
    let mut queued = Vec::new();
    let mut refused = None;
    for _ in 0..10 {
        let raw = RawSocket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        raw.set_nonblocking(true).unwrap();
        match raw.connect(&socket2::SockAddr::unix(&path).unwrap()) {
            Ok(()) => queued.push(raw),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert_eq!(queued.len(), 4, "backlog 3 queues 4 on Linux: {refused:?}");
    listener.close();
    let _ = std::fs::remove_file(&path);
}

/// A backlog above what a C int holds is clamped (the kernel then caps it at `somaxconn`), not
/// wrapped to a negative or small value.
#[tokio::test]
async fn a_huge_backlog_is_the_largest_not_wrapped() {
    let selector = SelectorManager::new();
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096);
    for backlog in [u32::MAX, 1 << 31, i32::MAX as u32] {
        let listener = a_socket(&selector)
            .tcp()
            .backlog(backlog)
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        if let Some(got) = tcp_backlog(listener.port().unwrap()) {
            assert_eq!(got, somaxconn, "backlog({backlog})");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Adopted sockets.
// ---------------------------------------------------------------------------------------------

fn std_listener_v4() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap()
}

/// `Socket::from_std`: "Its options are left as they are" — `TCP_NODELAY` off, keep-alive on,
/// a linger time stay what the std socket had (not the builder defaults).
#[tokio::test]
async fn an_adopted_stream_keeps_its_own_options() {
    let selector = SelectorManager::new();
    let listener = std_listener_v4();
    let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    stream.set_nodelay(false).unwrap();
    SockRef::from(&stream).set_keepalive(true).unwrap();
    SockRef::from(&stream).set_tos_v4(0x10).unwrap();
    let socket = net_sockets::Socket::from_std(&selector, stream).unwrap();
    socket
        .with_sock_ref(|s| {
            assert!(!s.tcp_nodelay()?);
            assert!(s.keepalive()?);
            assert_eq!(s.tos_v4()?, 0x10);
            Ok(())
        })
        .unwrap();
}

/// `ServerSocket::from_std`: the connections get the defaults of `SocketOptions` (`no_delay`
/// on); what the adopter set on the listener and the defaults leave alone (keep-alive, IP_TOS)
/// is inherited as the kernel does.
#[tokio::test]
async fn an_adopted_listener_gives_defaults_and_keeps_what_it_had() {
    let selector = SelectorManager::new();
    let std = std_listener_v4();
    SockRef::from(&std).set_tcp_nodelay(false).unwrap();
    SockRef::from(&std).set_keepalive(true).unwrap();
    SockRef::from(&std).set_tos_v4(0x18).unwrap();
    let port = std.local_addr().unwrap().port();
    let listener = ServerSocket::from_std(&selector, std).unwrap();
    let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let accepted = within(listener.accept()).await.unwrap();
    accepted
        .with_sock_ref(|s| {
            assert!(s.tcp_nodelay()?, "the default `no_delay` (on)");
            assert!(s.keepalive()?, "inherited from the listener");
            assert_eq!(s.tos_v4()?, 0x18, "inherited from the listener");
            Ok(())
        })
        .unwrap();
}

/// `TcpSocketBuilder::from_std` adopts "with this builder's options for the connections it
/// accepts": `no_delay`, keep-alive, linger, the buffer sizes and the type of service reach
/// them (the type of service once was silently dropped for an adopted listener).
#[tokio::test]
async fn an_adopted_listener_gives_the_builders_options_to_its_connections() {
    let selector = SelectorManager::new();
    let std = std_listener_v4();
    let port = std.local_addr().unwrap().port();
    let listener = a_socket(&selector)
        .tcp()
        .no_delay(false)
        .keep_alive_idle(Duration::from_secs(33))
        .linger(Duration::from_secs(2))
        .receive_buffer_size(80 * 1024)
        .type_of_service(0x30)
        .from_std(std)
        .unwrap();
    let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let accepted = within(listener.accept()).await.unwrap();
    let (nodelay, idle, linger, rcvbuf) = accepted
        .with_sock_ref(|s| {
            Ok((
                s.tcp_nodelay()?,
                s.tcp_keepalive_time()?,
                s.linger()?,
                s.recv_buffer_size()?,
            ))
        })
        .unwrap();
    assert!(!nodelay);
    assert_eq!(idle, Duration::from_secs(33));
    assert_eq!(linger, Some(Duration::from_secs(2)));
    assert_eq!(rcvbuf, 2 * 80 * 1024);
    let tos = accepted.with_sock_ref(|s| s.tos_v4()).unwrap();
    assert_eq!(
        tos, 0x30,
        "the builder's type_of_service(0x30) on the connections of an adopted listener"
    );
}

// ---------------------------------------------------------------------------------------------
// Unix sockets: TCP/IP options ignored, linger and buffers applied.
// ---------------------------------------------------------------------------------------------

/// A Unix client and listener with every TCP/IP option set: ignored (no error); `reuse_*` not
/// set; the buffer sizes and linger reach the client.
#[tokio::test]
async fn unix_ignores_ip_options_on_every_kind() {
    let selector = SelectorManager::new();
    let path = unique_path("ignored");
    let _ = std::fs::remove_file(&path);
    let builder = a_socket(&selector)
        .tcp()
        .no_delay(false)
        .type_of_service(0xff)
        .reuse_address(true)
        .reuse_port(true)
        .keep_alive(true)
        .keep_alive_idle(Duration::MAX);
    let address = UnixSocketAddress::new(&path);
    let listener = builder.clone().bind(address.clone()).await.unwrap();
    let client = within(builder.connect(address)).await.unwrap();
    let accepted = within(listener.accept()).await.unwrap();
    for (which, r) in [
        (
            "listener",
            listener.with_sock_ref(|s| Ok((s.reuse_address()?, s.reuse_port()?))),
        ),
        (
            "client",
            client.with_sock_ref(|s| Ok((s.reuse_address()?, s.reuse_port()?))),
        ),
        (
            "accepted",
            accepted.with_sock_ref(|s| Ok((s.reuse_address()?, s.reuse_port()?))),
        ),
    ] {
        assert_eq!(r.unwrap(), (false, false), "{which}");
    }
    listener.close();
    let _ = std::fs::remove_file(&path);
}

// ---------------------------------------------------------------------------------------------
// Refused values: typed errors on every path.
// ---------------------------------------------------------------------------------------------

/// A value the OS refuses fails `connect` with `Error::InvalidOption` naming the option, also
/// for a host name (whose attempts are raced), and for UDP `bind`/`connect`.
#[tokio::test]
async fn a_refused_value_is_invalid_option_on_every_path() {
    let selector = SelectorManager::new();
    let listener = std_listener_v4();
    let port = listener.local_addr().unwrap().port();
    for target in ["127.0.0.1", "localhost"] {
        let e = within(
            a_socket(&selector)
                .tcp()
                .keep_alive_count(0)
                .connect((target, port)),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&e, net_sockets::Error::InvalidOption { option, .. } if *option == "keep_alive_count"),
            "{target}: {e:?}"
        );
    }
    // An idle time above the kernel's limit (32767 s).
    let e = a_socket(&selector)
        .tcp()
        .keep_alive_idle(Duration::from_secs(40_000))
        .bind(("127.0.0.1", 0))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, net_sockets::Error::InvalidOption { option, .. } if *option == "keep_alive_idle"),
        "{e:?}"
    );
}

/// Linger on IPv6 and a dual-stack client; the accepted IPv4-mapped connection of a `::`
/// listener gets the listener's `IP_TOS` (the guarantee's row), and its buffer sizes.
#[tokio::test]
async fn dual_stack_accepted_gets_tos_and_buffers() {
    if !has_ipv6_loopback() {
        eprintln!("no IPv6 loopback: skipping");
        return;
    }
    let selector = SelectorManager::new();
    let listener = a_socket(&selector)
        .tcp()
        .type_of_service(0x40)
        .send_buffer_size(32 * 1024)
        .linger(Duration::from_millis(1))
        .bind(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::UNSPECIFIED,
            0,
            0,
            0,
        )))
        .await
        .unwrap();
    let port = listener.port().unwrap();
    let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let accepted = within(listener.accept()).await.unwrap();
    assert_eq!(
        accepted
            .with_sock_ref(|s| Ok((s.tos_v4()?, s.send_buffer_size()?, s.linger()?)))
            .unwrap(),
        (0x40, 2 * 32 * 1024, Some(Duration::from_secs(1)))
    );
}

/// Options that do not apply to a kind are ignored there, as `SocketOptions` says: the TCP
/// options on UDP (even a keep-alive count the OS refuses on TCP), `linger` on UDP, `broadcast`
/// on TCP.
#[tokio::test]
async fn options_of_another_kind_are_ignored_on_udp_and_tcp() {
    let selector = SelectorManager::new();
    let udp = a_socket(&selector)
        .configure(|o| {
            o.no_delay = true;
            o.keep_alive = Some(true);
            o.keep_alive_count = Some(0);
            o.linger = Some(Duration::from_secs(4));
            o.backlog = 0;
        })
        .udp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    assert_eq!(
        udp.with_sock_ref(|s| Ok((s.keepalive()?, s.linger()?)))
            .unwrap(),
        (false, None)
    );
    let listener = a_socket(&selector)
        .configure(|o| o.broadcast = true)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let client = within(
        a_socket(&selector)
            .configure(|o| o.broadcast = true)
            .tcp()
            .connect(listener.local_address()),
    )
    .await
    .unwrap();
    assert!(!listener.with_sock_ref(|s| s.broadcast()).unwrap());
    assert!(!client.with_sock_ref(|s| s.broadcast()).unwrap());
}

/// `broadcast` does what its docs say on the wire (loopback's broadcast address,
/// 127.255.255.255): off by default, a send there is refused (`PermissionDenied`, the OS's
/// `EACCES`); on, it is delivered.
#[tokio::test]
async fn broadcast_off_refuses_and_on_delivers_to_the_loopback_broadcast_address() {
    use net_sockets::Datagram;
    let selector = SelectorManager::new();
    let receiver = a_socket(&selector)
        .udp()
        .bind(("0.0.0.0", 0))
        .await
        .unwrap();
    let port = receiver.local_address().port().unwrap();
    let target = std::net::SocketAddr::from(([127, 255, 255, 255], port));
    let off = a_socket(&selector)
        .udp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let e = within(off.send(Datagram::new("no", target).unwrap()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e:?}");
    let on = a_socket(&selector)
        .udp()
        .broadcast(true)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    within(on.send(Datagram::new("yes", target).unwrap()))
        .await
        .unwrap();
    let got = within(receiver.receive()).await.unwrap();
    assert_eq!(&got.packet[..], b"yes");
}

/// An IPv6 TCP client connecting to an IPv4-mapped address (IPv4 traffic on an IPv6 socket)
/// and a UDP socket on `::` connected to an IPv4 peer carry `IP_TOS` as well as the traffic
/// class.
#[tokio::test]
async fn type_of_service_on_ipv6_sockets_with_ipv4_peers() {
    if !has_ipv6_loopback() {
        eprintln!("no IPv6 loopback: skipping");
        return;
    }
    let selector = SelectorManager::new();
    let listener = std_listener_v4();
    let port = listener.local_addr().unwrap().port();
    let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{port}").parse().unwrap();
    let client = within(
        a_socket(&selector)
            .tcp()
            .type_of_service(0x60)
            .connect(mapped),
    )
    .await
    .unwrap();
    assert_eq!(
        client
            .with_sock_ref(|s| Ok((s.tclass_v6()?, s.tos_v4()?)))
            .unwrap(),
        (0x60, 0x60)
    );
    let udp = a_socket(&selector)
        .udp()
        .type_of_service(0x64)
        .connect_from(("127.0.0.1", 9), ("::", 0))
        .await
        .unwrap();
    assert_eq!(
        udp.with_sock_ref(|s| Ok((s.tclass_v6()?, s.tos_v4()?)))
            .unwrap(),
        (0x64, 0x64)
    );
}
