//! Adopting sockets made elsewhere: `std` listeners, streams and UDP sockets, and systemd
//! socket activation (`LISTEN_PID` / `LISTEN_FDS` / `LISTEN_FDNAMES`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use net_io::LineEnding;
use net_sockets::{
    BoundDatagramSocket, ConnectedDatagramSocket, Datagram, Error, SelectorManager, ServerSocket,
    Socket, SocketAddress, a_socket,
};
use net_tests::loopback::tcp_listener;
use net_tests::{TempDir, within};

#[tokio::test]
async fn a_std_listener_is_adopted_with_the_builders_options() {
    let selector = SelectorManager::new();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = std_listener.local_addr().unwrap();
    let server = a_socket(&selector)
        .tcp()
        .socket_timeout(Duration::from_millis(300))
        .from_std(std_listener)
        .unwrap();
    assert_eq!(server.local_address(), SocketAddress::from(address));
    let _client = std::net::TcpStream::connect(address).unwrap();
    let mut accepted = within(server.accept()).await.unwrap();
    // The builder's socket_timeout reached the accepted socket.
    let mut input = accepted.open_read_channel().unwrap();
    let idle = within(input.read_line(64, LineEnding::Default)).await;
    assert!(matches!(idle, Err(net_io::Error::Timeout)), "{idle:?}");
    // The plain form takes the defaults.
    let again = ServerSocket::from_std(
        &selector,
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
    )
    .unwrap();
    assert!(again.port().is_some());
}

#[tokio::test]
async fn a_socket_that_is_not_listening_is_refused() {
    let selector = SelectorManager::new();
    let raw = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    raw.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    let not_listening = std::net::TcpListener::from(raw);
    let e = ServerSocket::from_std(&selector, not_listening).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e:?}");
}

#[tokio::test]
async fn std_streams_of_both_families_are_adopted() {
    let selector = SelectorManager::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    let socket = Socket::from_std(&selector, client).unwrap();
    assert_eq!(
        socket.remote_address(),
        SocketAddress::from(listener.local_addr().unwrap())
    );
    let mut connection = socket.connection().unwrap();
    connection.output.write_string_utf8("ping\n").await.unwrap();
    connection.output.flush().await.unwrap();
    let mut line = String::new();
    BufReader::new(&mut peer).read_line(&mut line).unwrap();
    assert_eq!(line, "ping\n");
    peer.write_all(b"pong\n").unwrap();
    let answer = within(connection.input.read_line(64, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(answer.as_deref(), Some("pong"));

    let dir = TempDir::new("adopt-unix");
    let path = dir.join("s.sock");
    let unix_listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let server = ServerSocket::from_std(&selector, unix_listener).unwrap();
    assert_eq!(
        server.local_address().to_string(),
        path.display().to_string()
    );
    let unix_client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let mut adopted = Socket::from_std(&selector, unix_client).unwrap();
    let mut accepted = within(server.accept()).await.unwrap();
    let mut output = adopted.open_write_channel(true).unwrap();
    output.write_string_utf8("over unix\n").await.unwrap();
    let mut input = accepted.open_read_channel().unwrap();
    let line = within(input.read_line(64, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(line.as_deref(), Some("over unix"));
    // An adopted Unix listener leaves the file, which is not its own, when it closes.
    server.close();
    assert!(path.exists());
}

#[tokio::test]
async fn std_udp_sockets_are_adopted() {
    let selector = SelectorManager::new();
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b_address = b.local_addr().unwrap();
    a.connect(b_address).unwrap();
    let bound = BoundDatagramSocket::from_std(&selector, b).unwrap();
    let connected = ConnectedDatagramSocket::from_std(&selector, a).unwrap();
    assert_eq!(connected.remote_address(), SocketAddress::from(b_address));
    connected
        .send(Datagram::new("hi", connected.remote_address()).unwrap())
        .await
        .unwrap();
    let got = within(bound.receive()).await.unwrap();
    assert_eq!(&got.packet[..], b"hi");
    let unconnected = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let e = ConnectedDatagramSocket::from_std(&selector, unconnected).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotConnected, "{e:?}");
}

#[tokio::test]
async fn without_socket_activation_there_is_nothing_to_take() {
    if std::env::var_os(ACTIVATED).is_some() || std::env::var_os(MISCOUNTED).is_some() {
        return;
    }
    let selector = SelectorManager::new();
    let e = a_socket(&selector).tcp().systemd_listeners().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e:?}");
}

/// Set in the child that plays a socket-activated service, to the name of its test.
const ACTIVATED: &str = "NET_TESTS_SYSTEMD_CHILD";
/// Set in the child that plays a service whose `LISTEN_FDS` counts more descriptors than it
/// was given.
const MISCOUNTED: &str = "NET_TESTS_SYSTEMD_MISCOUNTED";
/// Set for `datagram_among_them_child`: what its descriptors 3 and 4 must be
/// (`socket:[inode]` each, `:` between them).
const PASSED_SOCKETS: &str = "NET_TESTS_SYSTEMD_PASSED_SOCKETS";

/// As systemd does: the listening socket is descriptor 3 of the service's process, and
/// `LISTEN_PID` is that process's id (bash sets it to its own and `exec`s the service, which
/// keeps the id).
#[test]
fn a_socket_activated_process_takes_its_listener() {
    if std::env::var_os(ACTIVATED).is_some() || std::env::var_os(MISCOUNTED).is_some() {
        return;
    }
    let line = activate_tcp("", "activated_child");
    assert_eq!(line, "hello from web\n");
}

/// Passes `listener` to a child process as systemd does (descriptor 3, `LISTEN_PID`,
/// `LISTEN_FDS=1`), runs the test `child` there, and returns what the child's first
/// connection, made by `connect`, reads: its first line.
fn socket_activate(
    listener: std::os::fd::OwnedFd,
    child: &str,
    connect: impl FnOnce() -> Box<dyn std::io::Read>,
) -> String {
    socket_activate_after(listener, "", child, connect)
}

/// [`socket_activate`], with the shell commands `setup` run in the child's shell first (a
/// `ulimit`).
fn socket_activate_after(
    listener: std::os::fd::OwnedFd,
    setup: &str,
    child: &str,
    connect: impl FnOnce() -> Box<dyn std::io::Read>,
) -> String {
    socket2::SockRef::from(&listener)
        .set_cloexec(false)
        .unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    let to_three = if fd == 3 {
        String::new()
    } else {
        format!("exec 3<&{fd} {fd}<&-; ")
    };
    let script = format!(
        "{to_three}{setup}LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web exec \"$0\" \
         --exact {child} --nocapture"
    );
    let process = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg(std::env::current_exe().unwrap())
        .env(ACTIVATED, child)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The child's descriptor 3 keeps the socket listening.
    drop(listener);
    let mut line = String::new();
    let _ = BufReader::new(connect()).read_line(&mut line);
    let output = process.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the activated child failed (read {line:?}): {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    line
}

/// [`socket_activate_after`] with a TCP listener on `127.0.0.1`, which the parent connects to.
fn activate_tcp(setup: &str, child: &str) -> String {
    activate_tcp_on("127.0.0.1:0", setup, child)
}

/// [`activate_tcp`] with the listener bound to `address`.
fn activate_tcp_on(address: &str, setup: &str, child: &str) -> String {
    let listener = std::net::TcpListener::bind(address).unwrap();
    let address = listener.local_addr().unwrap();
    socket_activate_after(listener.into(), setup, child, || {
        let stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Box::new(stream)
    })
}

/// Runs `future` on a current-thread runtime of its own (a socket-activated child's).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Whether this process is the child `name` of `socket_activate`.
fn is_child(name: &str) -> bool {
    std::env::var(ACTIVATED).is_ok_and(|child| child == name)
}

/// The socket-activated side of the test above (does nothing in a normal run).
#[test]
fn activated_child() {
    if !is_child("activated_child") {
        return;
    }
    block_on(async {
        let selector = SelectorManager::new();
        let mut listeners = a_socket(&selector).tcp().systemd_listeners().unwrap();
        assert_eq!(listeners.len(), 1);
        let (name, server) = listeners.remove(0);
        assert_eq!(name, "web");
        // Taken once per process.
        let again = a_socket(&selector).tcp().systemd_listeners().unwrap_err();
        assert!(matches!(&again, Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidInput));
        let mut socket = within(server.accept()).await.unwrap();
        let mut output = socket.open_write_channel(true).unwrap();
        output
            .write_string_utf8(&format!("hello from {name}\n"))
            .await
            .unwrap();
        output.flush_and_close().await.unwrap();
    });
}

/// The type of service `type_of_service_child`'s builder asks for.
const TOS: u32 = 0x28;

/// A socket-activated listener takes the builder's options as a bound one does, its family's
/// included: they are first tried on a scratch socket of the listener's family (a value the
/// OS refuses is found before the descriptors are taken). An IPv4 listener with a type of
/// service is taken (were the scratch socket an IPv6 one, the traffic class set on it would
/// fail the call with `InvalidOption { option: "type_of_service" }`, "Protocol not
/// available"), and the listener and what it accepts carry `IP_TOS`. (Found by mutation
/// testing: no test saw the scratch socket's family.)
#[test]
fn an_activated_ipv4_listener_takes_its_type_of_service() {
    if std::env::var_os(ACTIVATED).is_some() || std::env::var_os(MISCOUNTED).is_some() {
        return;
    }
    let line = activate_tcp_on("127.0.0.1:0", "", "type_of_service_child");
    assert_eq!(line, "tos 40\n");
}

/// The same on IPv6, where the listener carries both the traffic class and `IP_TOS`.
#[test]
fn an_activated_ipv6_listener_takes_its_type_of_service() {
    if std::env::var_os(ACTIVATED).is_some() || std::env::var_os(MISCOUNTED).is_some() {
        return;
    }
    if !net_tests::loopback::has_ipv6_loopback() {
        net_tests::harness::skipped("no IPv6 loopback here");
        return;
    }
    let line = activate_tcp_on("[::1]:0", "", "type_of_service_child");
    assert_eq!(line, "tos 40\n");
}

/// The socket-activated side of the two tests above (does nothing in a normal run).
#[test]
fn type_of_service_child() {
    if !is_child("type_of_service_child") {
        return;
    }
    block_on(async {
        let selector = SelectorManager::new();
        let mut listeners = a_socket(&selector)
            .tcp()
            .type_of_service(TOS as u8)
            .systemd_listeners()
            .expect("an activated listener with a type of service");
        assert_eq!(listeners.len(), 1);
        let (_, server) = listeners.remove(0);
        let SocketAddress::Inet(address) = server.local_address() else {
            panic!("not an IP listener: {:?}", server.local_address())
        };
        let ipv6 = address.socket_addr().is_ipv6();
        let tos = |s: socket2::SockRef<'_>| {
            let class = if ipv6 { Some(s.tclass_v6()?) } else { None };
            Ok((s.tos_v4()?, class))
        };
        let expected = (TOS, ipv6.then_some(TOS));
        assert_eq!(server.with_sock_ref(tos).unwrap(), expected, "listener");
        let mut socket = within(server.accept()).await.unwrap();
        assert_eq!(socket.with_sock_ref(tos).unwrap(), expected, "accepted");
        let mut output = socket.open_write_channel(true).unwrap();
        output.write_string_utf8("tos 40\n").await.unwrap();
        output.flush_and_close().await.unwrap();
    });
}

/// A listener systemd passed is close-on-exec once adopted: a process the service starts (a
/// CGI-like helper) does not inherit it, and does not keep it listening after the service
/// closes it. (systemd passes it without close-on-exec, for the service's `exec`.)
#[test]
fn a_socket_activated_listener_does_not_leak_into_the_services_children() {
    if std::env::var_os(ACTIVATED).is_some() || std::env::var_os(MISCOUNTED).is_some() {
        return;
    }
    let line = activate_tcp("", "activated_spawning_child");
    assert_eq!(line, "the helper holds no listener\n");
}

#[test]
fn activated_spawning_child() {
    if !is_child("activated_spawning_child") {
        return;
    }
    // The socket passed (`socket:[inode]`), whichever descriptor holds it once adopted.
    let listener = std::fs::read_link("/proc/self/fd/3").unwrap();
    block_on(async {
        let selector = SelectorManager::new();
        let (_, server) = a_socket(&selector)
            .tcp()
            .systemd_listeners()
            .unwrap()
            .remove(0);
        let helper = Command::new("sh")
            .arg("-c")
            .arg("for fd in /proc/$$/fd/*; do readlink \"$fd\"; done")
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        let held = String::from_utf8(helper.stdout).unwrap();
        assert!(
            !held
                .lines()
                .any(|target| target == listener.to_str().unwrap()),
            "the helper inherited the listener {listener:?}: {held}"
        );
        let mut socket = within(server.accept()).await.unwrap();
        let mut output = socket.open_write_channel(true).unwrap();
        output
            .write_string_utf8("the helper holds no listener\n")
            .await
            .unwrap();
        output.flush_and_close().await.unwrap();
    });
}

/// `LISTEN_FDS` that counts more descriptors than systemd passed (a hand-written unit, a wrapper
/// script) must not make the process take descriptors it does not own: the call fails with
/// `InvalidInput`, and what the process had open there (the runtime's own descriptors, a file)
/// stays open and working — no abort, no descriptor closed under its owner.
#[test]
fn a_miscounted_socket_activation_takes_nothing_it_does_not_own() {
    if std::env::var_os(ACTIVATED).is_some() || std::env::var_os(MISCOUNTED).is_some() {
        return;
    }
    // bash closes what the child would inherit from this process above descriptor 2 (another
    // test may be passing a listener meanwhile), sets `LISTEN_PID` to its own id and `exec`s
    // the test binary, which keeps it.
    let output = Command::new("bash")
        .arg("-c")
        .arg(
            "for fd in $(seq 3 15); do eval \"exec $fd<&-\"; done; \
             LISTEN_PID=$$ LISTEN_FDS=13 exec \"$0\" --exact miscounted_child --nocapture",
        )
        .arg(std::env::current_exe().unwrap())
        .env(MISCOUNTED, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the miscounted child failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The child of the test above (does nothing in a normal run): its runtime's descriptors and an
/// open file sit where `LISTEN_FDS` says listening sockets are.
#[test]
fn miscounted_child() {
    if std::env::var_os(MISCOUNTED).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let file = std::fs::File::open("/dev/null").unwrap();
    let open_before: Vec<bool> = (3..16)
        .map(|fd| std::path::Path::new(&format!("/proc/self/fd/{fd}")).exists())
        .collect();
    runtime.block_on(async {
        let selector = SelectorManager::new();
        let e = a_socket(&selector).tcp().systemd_listeners().unwrap_err();
        assert!(
            matches!(&e, Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidInput),
            "{e:?}"
        );
        // The runtime still polls its sockets: a connection is accepted and answered.
        let server = tcp_listener(&selector).await;
        let port = server.port().unwrap();
        let client = tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let mut line = String::new();
            tokio::io::AsyncBufReadExt::read_line(
                &mut tokio::io::BufReader::new(&mut stream),
                &mut line,
            )
            .await
            .unwrap();
            line
        });
        let mut socket = within(server.accept()).await.unwrap();
        let mut output = socket.open_write_channel(true).unwrap();
        output.write_string_utf8("still polled\n").await.unwrap();
        assert_eq!(within(client).await.unwrap(), "still polled\n");
    });
    let open_after: Vec<bool> = (3..16)
        .map(|fd| std::path::Path::new(&format!("/proc/self/fd/{fd}")).exists())
        .collect();
    assert_eq!(
        open_before, open_after,
        "descriptors 3..16 open before and after"
    );
    drop(file);
}

/// A `std` wrapper holds whatever descriptor it was made from (`From<OwnedFd>` is safe code):
/// adopting one of the wrong type or family is an `InvalidInput` error, never a socket that
/// then reads a datagram socket as a byte stream (or a stream as datagrams).
#[tokio::test]
async fn sockets_of_the_wrong_type_or_family_are_refused() {
    use std::os::fd::OwnedFd;

    let selector = SelectorManager::new();
    let refused = |e: Error| assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e:?}");

    // A connected UDP socket as a TCP stream.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.connect(udp.local_addr().unwrap()).unwrap();
    let as_stream = std::net::TcpStream::from(OwnedFd::from(udp));
    refused(Socket::from_std(&selector, as_stream).unwrap_err());

    // A connected Unix datagram socket as a Unix stream.
    let (a, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
    let as_stream = std::os::unix::net::UnixStream::from(OwnedFd::from(a));
    refused(Socket::from_std(&selector, as_stream).unwrap_err());

    // TCP sockets as UDP sockets: a listener (bound), a connected stream (connected).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let as_udp = std::net::UdpSocket::from(OwnedFd::from(client));
    refused(ConnectedDatagramSocket::from_std(&selector, as_udp).unwrap_err());
    let as_udp = std::net::UdpSocket::from(OwnedFd::from(listener));
    refused(BoundDatagramSocket::from_std(&selector, as_udp).unwrap_err());

    // A listening Unix socket of another type (SOCK_SEQPACKET) as a stream listener.
    let dir = TempDir::new("adopt-seqpacket");
    let path = dir.join("s.sock");
    let raw = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None).unwrap();
    raw.bind(&socket2::SockAddr::unix(&path).unwrap()).unwrap();
    raw.listen(8).unwrap();
    let as_listener = std::os::unix::net::UnixListener::from(OwnedFd::from(raw));
    refused(ServerSocket::from_std(&selector, as_listener).unwrap_err());
}

/// A datagram or stream socket of another IP protocol (UDP-Lite, SCTP), which no UDP or TCP
/// peer reaches, is refused as the wrong type is: the type and the family alone let it
/// through. (Skipped where the kernel has no such protocol.)
#[tokio::test]
async fn sockets_of_another_ip_protocol_are_refused() {
    use socket2::{Domain, Protocol, Socket as RawSocket, Type};
    use std::os::fd::OwnedFd;

    const UDPLITE: i32 = 136;
    const SCTP: i32 = 132;
    let selector = SelectorManager::new();
    let refused = |e: Error| assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e:?}");
    let local = "127.0.0.1:0"
        .parse::<std::net::SocketAddr>()
        .unwrap()
        .into();

    if let Ok(raw) = RawSocket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::from(UDPLITE))) {
        raw.bind(&local).unwrap();
        let as_udp = std::net::UdpSocket::from(OwnedFd::from(raw.try_clone().unwrap()));
        refused(BoundDatagramSocket::from_std(&selector, as_udp).unwrap_err());
        raw.connect(&raw.local_addr().unwrap()).unwrap();
        let as_udp = std::net::UdpSocket::from(OwnedFd::from(raw));
        refused(ConnectedDatagramSocket::from_std(&selector, as_udp).unwrap_err());
    } else {
        net_tests::harness::skipped("no UDP-Lite here: that part");
    }
    if let Ok(raw) = RawSocket::new(Domain::IPV4, Type::STREAM, Some(Protocol::from(SCTP))) {
        raw.bind(&local).unwrap();
        raw.listen(8).unwrap();
        let as_listener = std::net::TcpListener::from(OwnedFd::from(raw));
        refused(ServerSocket::from_std(&selector, as_listener).unwrap_err());
    } else {
        net_tests::harness::skipped("no SCTP here: that part");
    }
}

/// A `BoundDatagramSocket` receives from anyone: a `std` socket that was never bound (it has
/// no port to receive on, and would report `0.0.0.0:0` for ever, though the kernel binds it
/// at its first send) or that is connected (it receives only from its peer) is refused.
#[tokio::test]
async fn a_udp_socket_adopted_as_bound_must_be_bound_and_not_connected() {
    use socket2::{Domain, Socket as RawSocket, Type};

    let selector = SelectorManager::new();
    let refused = |e: Error| assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e:?}");

    let unbound = RawSocket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
    refused(BoundDatagramSocket::from_std(&selector, unbound.into()).unwrap_err());

    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let connected = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    connected.connect(peer.local_addr().unwrap()).unwrap();
    refused(BoundDatagramSocket::from_std(&selector, connected).unwrap_err());
}

/// An adopted IPv6-only socket bound to `::` (`IPV6_V6ONLY`, as the builder's docs advise for
/// IPv6 alone; or every such socket under `net.ipv6.bindv6only = 1`) cannot reach IPv4 peers:
/// a send to one is `InvalidInput`, as from any socket that is not dual-stack, not the OS's
/// `NetworkUnreachable`.
#[tokio::test]
async fn an_adopted_ipv6_only_udp_socket_sending_to_ipv4_is_invalid_input() {
    use socket2::{Domain, Socket as RawSocket, Type};

    if !net_tests::loopback::has_ipv6_loopback() {
        eprintln!("no IPv6 loopback: skipped");
        return;
    }
    let selector = SelectorManager::new();
    let peer = net_tests::loopback::udp_socket(&selector).await;
    let raw = RawSocket::new(Domain::IPV6, Type::DGRAM, None).unwrap();
    raw.set_only_v6(true).unwrap();
    raw.bind(&"[::]:0".parse::<std::net::SocketAddr>().unwrap().into())
        .unwrap();
    let v6only = BoundDatagramSocket::from_std(&selector, raw.into()).unwrap();
    let port = peer.local_address().port().unwrap();
    let mapped =
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped().into(), port);
    for to in [peer.local_address(), SocketAddress::from(mapped)] {
        let e = v6only
            .send(Datagram::new("x", to.clone()).unwrap())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "to {to}: {e:?}");
    }
    // IPv6 peers are reached.
    let peer6 = a_socket(&selector).udp().bind(("::1", 0)).await.unwrap();
    v6only
        .send(Datagram::new("six", peer6.local_address()).unwrap())
        .await
        .unwrap();
    let got = within(peer6.receive()).await.unwrap();
    assert_eq!(&got.packet[..], b"six");
}

/// `TcpSocketBuilder::from_std` adopts a listener "with this builder's options for the
/// connections it accepts, the buffer sizes and the type of service among them". A listener
/// handed over by a supervisor (systemd socket activation above all: the connection that
/// activates the service is queued before the service runs) often has connections waiting in
/// its accept queue already. Those finished their handshake before the adoption set the
/// options on the listener, so they did not inherit them: each must get the builder's buffer
/// sizes and type of service all the same, as it gets `no_delay`, keep-alive and linger.
#[tokio::test]
async fn a_connection_queued_before_the_adoption_gets_the_builders_options() {
    let selector = SelectorManager::new();
    for local in ["127.0.0.1:0", "[::1]:0"] {
        let Ok(std) = std::net::TcpListener::bind(local) else {
            continue; // no IPv6 here
        };
        let address = std.local_addr().unwrap();
        // Queued before the adoption: the kernel completes the handshake at once.
        let _early = std::net::TcpStream::connect(address).unwrap();
        let listener = a_socket(&selector)
            .tcp()
            .no_delay(false)
            .send_buffer_size(64 * 1024)
            .receive_buffer_size(96 * 1024)
            .type_of_service(0x28)
            .from_std(std)
            .unwrap();
        let _late = std::net::TcpStream::connect(address).unwrap();
        for which in ["queued before the adoption", "connected after it"] {
            let accepted = within(listener.accept()).await.unwrap();
            let (nodelay, sndbuf, rcvbuf, tos) = accepted
                .with_sock_ref(|s| {
                    let tos = if address.is_ipv6() {
                        s.tclass_v6()?
                    } else {
                        s.tos_v4()?
                    };
                    Ok((
                        s.tcp_nodelay()?,
                        s.send_buffer_size()?,
                        s.recv_buffer_size()?,
                        tos,
                    ))
                })
                .unwrap();
            assert!(!nodelay, "{local}, {which}: no_delay(false)");
            // Linux doubles what it is asked for.
            assert_eq!(
                (sndbuf, rcvbuf, tos),
                (2 * 64 * 1024, 2 * 96 * 1024, 0x28),
                "{local}, {which}: the builder's buffer sizes and type of service"
            );
        }
    }
}

/// `systemd_listeners` takes the descriptors systemd passed "once per process". A call on a
/// closed selector fails with `Error::SelectorClosed`; a builder with an option value the OS
/// refuses (a keep-alive count of 0, an idle time over the kernel's 32767 s) fails with
/// `Error::InvalidOption`, as its docs say. Neither may cost the service its listeners: the
/// service fixes its options (or selector) and calls again, and gets them. (Before, the
/// descriptors were taken first and closed on the error: the second call failed with "taken
/// already", and the service had lost its listeners for good.)
#[test]
fn a_refused_option_value_leaves_the_systemd_listeners_to_take() {
    if std::env::var_os(ACTIVATED).is_some() || std::env::var_os(MISCOUNTED).is_some() {
        return;
    }
    let line = activate_tcp("", "refused_option_child");
    assert_eq!(line, "hello\n");
}

/// The socket-activated side of the test above (does nothing in a normal run).
#[test]
fn refused_option_child() {
    if !is_child("refused_option_child") {
        return;
    }
    block_on(async {
        let closed = SelectorManager::new();
        closed.close();
        let e = a_socket(&closed).tcp().systemd_listeners().unwrap_err();
        assert!(matches!(&e, Error::SelectorClosed), "{e:?}");
        let selector = SelectorManager::new();
        let e = a_socket(&selector)
            .tcp()
            .keep_alive_count(0)
            .systemd_listeners()
            .unwrap_err();
        assert!(
            matches!(
                &e,
                Error::InvalidOption {
                    option: "keep_alive_count",
                    ..
                }
            ),
            "{e:?}"
        );
        let mut listeners = a_socket(&selector)
            .tcp()
            .keep_alive_count(3)
            .systemd_listeners()
            .expect("a call with a value the OS takes gets the listeners");
        let (_, server) = listeners.remove(0);
        let mut socket = within(server.accept()).await.unwrap();
        let mut output = socket.open_write_channel(true).unwrap();
        output.write_string_utf8("hello\n").await.unwrap();
        output.flush_and_close().await.unwrap();
    });
}

/// The TCP options are ignored on Unix sockets "also with a value the OS would refuse": a
/// socket-activated Unix listener is adopted by a builder with a keep-alive count of 0 (the
/// check of the options for a refused value concerns TCP listeners only).
#[test]
fn a_socket_activated_unix_listener_ignores_a_refused_tcp_option() {
    if std::env::var_os(ACTIVATED).is_some() || std::env::var_os(MISCOUNTED).is_some() {
        return;
    }
    let dir = TempDir::new("aopts");
    let path = dir.join("activated.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let line = socket_activate(listener.into(), "unix_activated_child", || {
        let stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Box::new(stream)
    });
    assert_eq!(line, "hello\n");
}

/// The socket-activated side of the test above (does nothing in a normal run).
#[test]
fn unix_activated_child() {
    if !is_child("unix_activated_child") {
        return;
    }
    block_on(async {
        let selector = SelectorManager::new();
        let mut listeners = a_socket(&selector)
            .tcp()
            .keep_alive_count(0)
            .systemd_listeners()
            .expect("TCP options are ignored on a Unix listener");
        let (_, server) = listeners.remove(0);
        let mut socket = within(server.accept()).await.unwrap();
        let mut output = socket.open_write_channel(true).unwrap();
        output.write_string_utf8("hello\n").await.unwrap();
        output.flush_and_close().await.unwrap();
    });
}

/// `systemd_listeners` finds an option value the OS refuses before it adopts a descriptor, on
/// a TCP socket made for the purpose; where none can be made (a process out of descriptors,
/// here `ulimit -n` and the table filled; a unit with `RestrictAddressFamilies=AF_UNIX`, which
/// socket activation lets serve TCP), on the listener itself. Before, the check was skipped
/// there: the refused value was found as the listener was adopted, the descriptor was closed,
/// and the corrected call failed with "taken already".
#[test]
fn a_refused_option_leaves_the_listeners_also_when_no_scratch_socket_can_be_made() {
    if std::env::var_os(ACTIVATED).is_some() || std::env::var_os(MISCOUNTED).is_some() {
        return;
    }
    let line = activate_tcp("ulimit -n 256; ", "out_of_descriptors_child");
    assert_eq!(line, "hello\n");
}

/// The socket-activated side of the test above (does nothing in a normal run).
#[test]
fn out_of_descriptors_child() {
    if !is_child("out_of_descriptors_child") {
        return;
    }
    block_on(async {
        let selector = SelectorManager::new();
        // Fill the descriptor table (bounded by the `ulimit -n 256` of the script).
        let mut filler = Vec::new();
        while filler.len() < 1024 {
            match std::fs::File::open("/dev/null") {
                Ok(file) => filler.push(file),
                Err(_) => break,
            }
        }
        let e = a_socket(&selector)
            .tcp()
            .keep_alive_count(0)
            .systemd_listeners()
            .unwrap_err();
        drop(filler);
        assert!(
            matches!(
                &e,
                Error::InvalidOption {
                    option: "keep_alive_count",
                    ..
                }
            ),
            "{e:?}"
        );
        let mut listeners = a_socket(&selector)
            .tcp()
            .keep_alive_count(3)
            .systemd_listeners()
            .expect("the corrected call gets the listener");
        let (_, server) = listeners.remove(0);
        let mut socket = within(server.accept()).await.unwrap();
        let mut output = socket.open_write_channel(true).unwrap();
        output.write_string_utf8("hello\n").await.unwrap();
        output.flush_and_close().await.unwrap();
    });
}

/// A socket unit with a datagram socket among its sockets (`ListenStream=` beside
/// `ListenDatagram=`): `systemd_listeners` fails with `InvalidInput` (datagram sockets are not
/// supported) and takes nothing, as it does for the other errors it finds before adopting: every
/// descriptor stays where systemd put it, open, for the service to adopt another way. (Before,
/// the TCP listener at descriptor 3, checked first, was taken, then closed with the error: the
/// service had lost it, and descriptor 3 was free for the next file it opened.)
#[test]
fn a_datagram_socket_among_the_activated_ones_leaves_every_descriptor_in_place() {
    if std::env::var_os(ACTIVATED).is_some() || std::env::var_os(MISCOUNTED).is_some() {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let datagram = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for fd in [
        socket2::SockRef::from(&listener),
        socket2::SockRef::from(&datagram),
    ] {
        fd.set_cloexec(false).unwrap();
    }
    let (stream_fd, datagram_fd) = (
        std::os::fd::AsRawFd::as_raw_fd(&listener),
        std::os::fd::AsRawFd::as_raw_fd(&datagram),
    );
    // What the child must find at descriptors 3 and 4 (checked there before the calls).
    let target = |fd: i32| std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
    let expected = format!(
        "{}:{}",
        target(stream_fd).display(),
        target(datagram_fd).display()
    );
    // In the child's shell: every other descriptor it inherited closed first (other tests of
    // this process may be passing descriptors of their own meanwhile, without close-on-exec:
    // bash, asked to put one where another is open, saves that one to a descriptor of 10 or
    // more, which can lose one of ours), then both moved out of the way to spare descriptors
    // under 10 (either may be descriptor 3 or 4 already), then to 3 (the listener) and 4 (the
    // datagram socket), as systemd orders a unit's sockets.
    let mut spare = (5..10).filter(|fd| ![stream_fd, datagram_fd].contains(fd));
    let (spare_stream, spare_datagram) = (spare.next().unwrap(), spare.next().unwrap());
    let script = format!(
        "for fd in $(cd /proc/$$/fd && echo *); do \
           case $fd in 0|1|2|{stream_fd}|{datagram_fd}) ;; *) eval \"exec $fd<&-\" ;; esac; \
         done; \
         exec {spare_stream}<&{stream_fd} {spare_datagram}<&{datagram_fd}; \
         exec {stream_fd}<&- {datagram_fd}<&-; \
         exec 3<&{spare_stream} 4<&{spare_datagram} {spare_stream}<&- {spare_datagram}<&-; \
         LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=web:dns exec \"$0\" \
         --exact datagram_among_them_child --nocapture"
    );
    let output = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .arg(std::env::current_exe().unwrap())
        .env(ACTIVATED, "datagram_among_them_child")
        .env(PASSED_SOCKETS, expected)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    drop((listener, datagram));
    assert!(
        output.status.success(),
        "the activated child failed ({script}): {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The socket-activated side of the test above (does nothing in a normal run).
#[test]
fn datagram_among_them_child() {
    if !is_child("datagram_among_them_child") {
        return;
    }
    let target = |fd: i32| std::fs::read_link(format!("/proc/self/fd/{fd}")).ok();
    let before = [target(3), target(4)];
    // The listener at 3 and the datagram socket at 4, as the parent passed them (else the
    // calls below would fail for another reason, and the test prove nothing).
    let passed = std::env::var(PASSED_SOCKETS).unwrap();
    let shown = |target: &Option<std::path::PathBuf>| {
        target
            .as_ref()
            .map(|path| path.display().to_string())
            .unwrap_or_default()
    };
    assert_eq!(
        format!("{}:{}", shown(&before[0]), shown(&before[1])),
        passed,
        "passed descriptors: {before:?}"
    );
    block_on(async {
        let selector = SelectorManager::new();
        // Twice: the first call took nothing, so the second finds the same descriptors.
        for call in 1..=2 {
            let e = a_socket(&selector).tcp().systemd_listeners().unwrap_err();
            assert!(matches!(&e, Error::Io(_)), "call {call}: {e:?}");
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::InvalidInput,
                "call {call}: {e:?}"
            );
        }
    });
    assert_eq!(
        [target(3), target(4)],
        before,
        "descriptors 3 and 4 after the refused calls"
    );
}
