//! Resources running out, each in a network namespace of its own (skipped, saying why, where
//! one cannot be made): the ephemeral ports, a listener's accept queue, a send buffer. Each
//! fails, or waits, as documented, and leaves nothing behind.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_sockets::{Connection, Error, SelectorManager, Socket, a_socket};
use net_tests::harness::{rerun_self_in_own_netns, run_if_child};
use net_tests::probe::{CLOCK_TICK, CpuClock, fd_count};
use net_tests::within;
use net_tls::TlsExt as _;

const CHILD: &str = "NET_TESTS_EXHAUSTION_CHILD";

/// A fixed port outside the ephemeral range the tests set (the namespace is the test's own).
const SERVER_PORT: u16 = 5000;

/// Sets the namespace's ephemeral port range (`net.ipv4.ip_local_port_range`) to 10 ports.
fn ten_ephemeral_ports() {
    std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "40000 40009")
        .expect("set ip_local_port_range in the namespace");
}

/// A line echo server at `127.0.0.1:port` on `selector`, serving until the selector closes.
async fn echo_server(selector: &SelectorManager, port: u16) {
    let listener = a_socket(selector)
        .tcp()
        .bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok(socket) = listener.accept().await {
            tokio::spawn(echo_lines(socket));
        }
    });
}

/// Echoes each line `socket` receives until its end or an error.
async fn echo_lines(socket: Socket) {
    let Ok(mut connection) = socket.connection() else {
        return;
    };
    while let Ok(Some(line)) = connection.input.read_line(1024, LineEnding::Default).await {
        if connection
            .output
            .write_string_utf8(&format!("{line}\n"))
            .await
            .is_err()
            || connection.output.flush().await.is_err()
        {
            return;
        }
    }
}

/// Sends `text` as a line on `connection` and asserts that it comes back.
async fn assert_echoes(connection: &mut Connection, text: &str) {
    let Connection { input, output, .. } = connection;
    output
        .write_string_utf8(&format!("{text}\n"))
        .await
        .unwrap();
    output.flush().await.unwrap();
    let back = within(input.read_line(1024, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(back.as_deref(), Some(text));
}

/// With every ephemeral port in use towards one server address, one more connect there fails
/// at once with `Error::Io` of kind `AddrNotAvailable` (the OS's `EADDRNOTAVAIL`), leaves no
/// descriptor, and the connections made before go on working; a connect to another
/// destination still succeeds (the kernel reuses a port towards another address). A connect
/// bound to a `local_address` of port 0 first fails in its bind, with kind `AddrInUse`.
#[test]
fn connects_with_every_ephemeral_port_in_use() {
    rerun_self_in_own_netns(
        "connects_with_every_ephemeral_port_in_use_child",
        CHILD,
        "ports exhausted as documented",
    );
}

#[test]
fn connects_with_every_ephemeral_port_in_use_child() {
    run_if_child(CHILD, async {
        ten_ephemeral_ports();
        let selector = SelectorManager::new();
        echo_server(&selector, SERVER_PORT).await;
        echo_server(&selector, SERVER_PORT + 1).await;
        let mut held = Vec::new();
        for _ in 0..10 {
            let socket = within(
                a_socket(&selector)
                    .tcp()
                    .connect(("127.0.0.1", SERVER_PORT)),
            )
            .await
            .unwrap();
            held.push(socket.connection().unwrap());
        }
        let before = fd_count();
        let e = within(
            a_socket(&selector)
                .tcp()
                .connect(("127.0.0.1", SERVER_PORT)),
        )
        .await
        .map(|_| ())
        .unwrap_err();
        assert!(
            matches!(&e, Error::Io(io) if io.kind() == std::io::ErrorKind::AddrNotAvailable),
            "{e:?}"
        );
        assert_eq!(e.kind(), std::io::ErrorKind::AddrNotAvailable);
        // The same with a connect timeout: the error, not the timeout.
        let e = within(
            a_socket(&selector)
                .tcp()
                .connect_timeout(Duration::from_secs(5))
                .connect(("127.0.0.1", SERVER_PORT)),
        )
        .await
        .map(|_| ())
        .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrNotAvailable, "{e:?}");
        // Bound to a local address with port 0 first: the bind finds no free port.
        let e = within(
            a_socket(&selector)
                .tcp()
                .local_address(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
                .connect(("127.0.0.1", SERVER_PORT)),
        )
        .await
        .map(|_| ())
        .unwrap_err();
        assert!(
            matches!(&e, Error::Io(io) if io.kind() == std::io::ErrorKind::AddrInUse),
            "{e:?}"
        );
        println!("bound to port 0 with every port in use: {e:?}");
        assert_eq!(fd_count(), before, "a failed connect left a descriptor");
        for (i, socket) in held.iter_mut().enumerate() {
            assert_echoes(socket, &format!("still here {i}")).await;
        }
        // Another destination: the ports are reused towards it.
        let other = within(
            a_socket(&selector)
                .tcp()
                .connect(("127.0.0.1", SERVER_PORT + 1)),
        )
        .await
        .unwrap();
        assert_echoes(&mut other.connection().unwrap(), "elsewhere").await;
        // Once one of the ten closes, its port serves the next connect (from its TIME_WAIT:
        // Linux reuses it for a new connection a second after its last segment, with
        // `tcp_tw_reuse`, on loopback by default, set here in case this kernel's default is
        // off).
        let _ = std::fs::write("/proc/sys/net/ipv4/tcp_tw_reuse", "1");
        drop(held.pop());
        let deadline = Instant::now() + Duration::from_secs(10);
        let again = loop {
            match a_socket(&selector)
                .tcp()
                .connect(("127.0.0.1", SERVER_PORT))
                .await
            {
                Ok(socket) => break socket,
                Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                    assert!(Instant::now() < deadline, "the port never came back");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("{e:?}"),
            }
        };
        assert_echoes(&mut again.connection().unwrap(), "a port again").await;
        println!("ports exhausted as documented");
    });
}

/// UDP sockets on every ephemeral port: one more `connect` (which binds a free port) and one
/// more `bind` to port 0 fail with `Error::Io` of kind `AddrInUse`, leave no descriptor, and
/// the sockets made before keep working.
#[test]
fn udp_with_every_ephemeral_port_in_use() {
    rerun_self_in_own_netns(
        "udp_with_every_ephemeral_port_in_use_child",
        CHILD,
        "udp ports exhausted as documented",
    );
}

#[test]
fn udp_with_every_ephemeral_port_in_use_child() {
    run_if_child(CHILD, async {
        ten_ephemeral_ports();
        let selector = SelectorManager::new();
        let server = a_socket(&selector)
            .udp()
            .bind(("127.0.0.1", SERVER_PORT))
            .await
            .unwrap();
        let mut held = Vec::new();
        for _ in 0..10 {
            held.push(
                a_socket(&selector)
                    .udp()
                    .connect(("127.0.0.1", SERVER_PORT))
                    .await
                    .unwrap(),
            );
        }
        let before = fd_count();
        let connect = a_socket(&selector)
            .udp()
            .connect(("127.0.0.1", SERVER_PORT))
            .await
            .map(|_| ())
            .unwrap_err();
        println!("UDP connect with every port in use: {connect:?}");
        assert!(
            matches!(&connect, Error::Io(e) if e.kind() == std::io::ErrorKind::AddrInUse),
            "{connect:?}"
        );
        let bind = a_socket(&selector)
            .udp()
            .bind(("127.0.0.1", 0))
            .await
            .map(|_| ())
            .unwrap_err();
        println!("UDP bind with every port in use: {bind:?}");
        assert!(
            matches!(&bind, Error::Io(e) if e.kind() == std::io::ErrorKind::AddrInUse),
            "{bind:?}"
        );
        assert_eq!(
            fd_count(),
            before,
            "a failed UDP connect or bind left a descriptor"
        );
        for socket in &held {
            socket
                .send(net_sockets::Datagram::new("hi", socket.remote_address()).unwrap())
                .await
                .unwrap();
            let got = within(server.receive()).await.unwrap();
            assert_eq!(&got.packet[..], b"hi");
        }
        println!("udp ports exhausted as documented");
    });
}

/// A listener whose accept queue is full (a backlog of 1, nobody accepting) drops new SYNs: a
/// connect to it ends with `Error::Timeout` after its `connect_timeout`, leaving no
/// descriptor; once the listener accepts, every connection whose connect succeeded is served.
#[test]
fn connects_to_a_full_accept_queue() {
    rerun_self_in_own_netns(
        "connects_to_a_full_accept_queue_child",
        CHILD,
        "accept queue as documented",
    );
}

#[test]
fn connects_to_a_full_accept_queue_child() {
    run_if_child(CHILD, async {
        let selector = SelectorManager::new();
        let listener = a_socket(&selector)
            .tcp()
            .backlog(1)
            .bind(("127.0.0.1", SERVER_PORT))
            .await
            .unwrap();
        let mut connected = Vec::new();
        let mut timed_out = 0;
        for i in 0..4 {
            let before = fd_count();
            let started = Instant::now();
            let attempt = within(
                a_socket(&selector)
                    .tcp()
                    .connect_timeout(Duration::from_secs(1))
                    .connect(("127.0.0.1", SERVER_PORT)),
            )
            .await;
            match attempt {
                Ok(socket) => connected.push((i, socket.connection().unwrap())),
                Err(Error::Timeout) => {
                    assert!(started.elapsed() >= Duration::from_millis(990));
                    assert_eq!(
                        fd_count(),
                        before,
                        "a connect that timed out left a descriptor"
                    );
                    timed_out += 1;
                }
                Err(e) => panic!("connect {i}: {e:?}"),
            }
        }
        assert!(
            timed_out > 0,
            "no connect timed out: {} connected",
            connected.len()
        );
        assert!(!connected.is_empty(), "the queue took no connection");
        // Each client says who it is before the server accepts anything.
        for (i, Connection { output, .. }) in &mut connected {
            output
                .write_string_utf8(&format!("client {i}\n"))
                .await
                .unwrap();
            output.flush().await.unwrap();
        }
        let mut served = Vec::new();
        for _ in 0..connected.len() {
            let socket = within(listener.accept()).await.unwrap();
            let Connection {
                mut input,
                mut output,
                ..
            } = socket.connection().unwrap();
            let line = within(input.read_line(64, LineEnding::Default))
                .await
                .unwrap()
                .unwrap();
            output
                .write_string_utf8(&format!("{line}\n"))
                .await
                .unwrap();
            output.flush().await.unwrap();
            served.push(line);
        }
        for (i, Connection { input, .. }) in &mut connected {
            let back = within(input.read_line(64, LineEnding::Default))
                .await
                .unwrap();
            assert_eq!(back, Some(format!("client {i}")));
        }
        served.sort();
        let mut expected: Vec<String> = connected
            .iter()
            .map(|(i, _)| format!("client {i}"))
            .collect();
        expected.sort();
        assert_eq!(served, expected);
        println!("TCP: {} connected, {timed_out} timed out", connected.len());

        // A Unix listener: a connect into its full backlog fails at once (`EAGAIN`), and the
        // connections it queued are all served.
        let dir = net_tests::TempDir::new("exhaustion-backlog");
        let path = net_sockets::UnixSocketAddress::new(dir.join("s.sock"));
        let listener = a_socket(&selector)
            .tcp()
            .backlog(1)
            .bind(path.clone())
            .await
            .unwrap();
        let mut connected = Vec::new();
        let refused = loop {
            assert!(connected.len() < 64, "the backlog never filled");
            let before = fd_count();
            match within(a_socket(&selector).tcp().connect(path.clone())).await {
                Ok(socket) => connected.push(socket.connection().unwrap()),
                Err(e) => {
                    assert_eq!(fd_count(), before, "a refused connect left a descriptor");
                    break e;
                }
            }
        };
        assert!(
            matches!(&refused, Error::Io(e) if e.raw_os_error() == Some(libc::EAGAIN)),
            "{refused:?}"
        );
        for (i, connection) in connected.iter_mut().enumerate() {
            connection
                .output
                .write_string_utf8(&format!("unix client {i}\n"))
                .await
                .unwrap();
            connection.output.flush().await.unwrap();
        }
        for _ in 0..connected.len() {
            tokio::spawn(echo_lines(within(listener.accept()).await.unwrap()));
        }
        for (i, connection) in connected.iter_mut().enumerate() {
            let back = within(connection.input.read_line(64, LineEnding::Default))
                .await
                .unwrap();
            assert_eq!(back, Some(format!("unix client {i}")));
        }
        println!(
            "accept queue as documented: {} Unix connections queued, then {refused:?}",
            connected.len()
        );
    });
}

/// A write to a peer that never reads, through a small send buffer, waits without spinning
/// (the process's CPU time over the wait stays a small part of it) until `socket_timeout` ends
/// it with `net_io::Error::Timeout`; the peer then reads what reached it and a reset, never a
/// clean end (the write was cut). Over TCP, a Unix socket and TLS.
#[test]
fn writes_to_a_peer_that_never_reads() {
    rerun_self_in_own_netns(
        "writes_to_a_peer_that_never_reads_child",
        CHILD,
        "a full send buffer as documented",
    );
}

/// How long each write below waits at most.
const WRITE_TIMEOUT: Duration = Duration::from_millis(1500);

/// Writes `chunk` bytes at a time to `socket` until a write fails, and asserts that it was the timeout, after
/// [`WRITE_TIMEOUT`], and that the writer spent little CPU time meanwhile.
async fn write_until_timeout<T: net_sockets::Transport>(
    socket: &mut Socket<T>,
    chunk: usize,
    what: &str,
) {
    let mut output = socket.open_write_channel(false).unwrap();
    let chunk = vec![b'x'; chunk];
    let clock = CpuClock::open();
    let started = Instant::now();
    let cpu = clock.ticks();
    let e = net_tests::loopback::write_until_error(&mut output, &chunk).await;
    let wall = started.elapsed();
    let spent = CLOCK_TICK * u32::try_from(clock.ticks() - cpu).unwrap();
    assert!(matches!(e, net_io::Error::Timeout), "{what}: {e:?}");
    assert!(wall >= WRITE_TIMEOUT, "{what}: ended after {wall:?}");
    assert!(
        spent * 5 < wall,
        "{what}: the wait spun: {spent:?} of CPU time in {wall:?}"
    );
    println!("{what}: {e:?} after {wall:?}, {spent:?} of CPU time");
}

/// Reads from `peer` until an error or the end, checking each byte is one the writer wrote;
/// returns the count and how it ended (`None`: a clean end).
fn read_to_the_end(peer: impl std::io::Read) -> (usize, Option<std::io::ErrorKind>) {
    let mut reader = BufReader::new(peer);
    let mut count = 0;
    let end = loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) => break Some(e.kind()),
        };
        if buf.is_empty() {
            break None;
        }
        assert!(buf.iter().all(|&b| b == b'x'));
        let n = buf.len();
        count += n;
        reader.consume(n);
        assert!(count < 64 << 20);
    };
    (count, end)
}

#[test]
fn writes_to_a_peer_that_never_reads_child() {
    run_if_child(CHILD, async {
        let selector = SelectorManager::new();
        let small = || {
            a_socket(&selector)
                .tcp()
                .send_buffer_size(4096)
                .socket_timeout(WRITE_TIMEOUT)
        };

        // TCP: writes the channel buffers, and writes past its 8 KiB, which go to the socket
        // directly.
        let server = std::net::TcpListener::bind(("127.0.0.1", SERVER_PORT)).unwrap();
        socket2::SockRef::from(&server)
            .set_recv_buffer_size(4096)
            .unwrap();
        for chunk in [4096, 64 * 1024] {
            let mut socket = small().connect(("127.0.0.1", SERVER_PORT)).await.unwrap();
            let (peer, _) = server.accept().unwrap();
            write_until_timeout(&mut socket, chunk, &format!("TCP, {chunk}-byte writes")).await;
            socket.close();
            peer.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let (count, end) = read_to_the_end(peer);
            assert_eq!(
                end,
                Some(std::io::ErrorKind::ConnectionReset),
                "TCP, {chunk}-byte writes, after {count} bytes"
            );
        }

        // A Unix socket (which has no reset, as documented: the peer reads what reached it,
        // then the end).
        let dir = net_tests::TempDir::new("exhaustion");
        let path = dir.join("s.sock");
        let server = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut socket = small()
            .connect(net_sockets::UnixSocketAddress::new(&path))
            .await
            .unwrap();
        let (peer, _) = server.accept().unwrap();
        write_until_timeout(&mut socket, 4096, "Unix").await;
        socket.close();
        peer.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (count, end) = read_to_the_end(peer);
        assert_eq!(end, None, "Unix, after {count} bytes");

        // TLS, the server of ours reading nothing after the handshake.
        let pki = net_tests::pki::Pki::generate();
        let listener = a_socket(&selector)
            .tcp()
            .receive_buffer_size(4096)
            .bind(("127.0.0.1", SERVER_PORT + 1))
            .await
            .unwrap();
        let server_config = pki.server_config().build().unwrap();
        let accepting = async {
            let accepted = listener.accept().await.unwrap();
            accepted.tls_server(&server_config).await.unwrap()
        };
        let connecting = async {
            let socket = small()
                .connect(("localhost", SERVER_PORT + 1))
                .await
                .unwrap();
            socket
                .tls(pki.client_config().build().unwrap())
                .await
                .unwrap()
        };
        let (tls_server, mut tls_client) =
            within(async { tokio::join!(accepting, connecting) }).await;
        write_until_timeout(&mut tls_client, 4096, "TLS").await;
        drop((tls_client, tls_server));
        println!("a full send buffer as documented");
    });
}
