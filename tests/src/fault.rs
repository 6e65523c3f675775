//! Fixtures for the fault suite (`tests/tests/fault_*.rs`): a line server that reports how
//! each of its connections ended, a well-behaved client that keeps talking to it while another
//! connection misbehaves, and hostile raw peers. Process measurements are in
//! [`probe`](crate::probe).
//!
//! The server speaks the seed's protocol with [`serve_lines`]: a line over its limit ends the
//! conversation, and the server then drains the rest of the connection (counting the bytes) so
//! that a test can check that nothing was lost and memory stayed bounded.

use std::sync::Arc;
use std::time::Duration;

use net_sockets::{SelectorManager, ServerSocket, Socket, TcpSocketBuilder, a_socket};
use tokio::sync::mpsc;

use crate::greeting::{GreetingClient, Outcome, serve_lines};
use crate::within;

/// The well-behaved client of the fault tests: connected before a test misbehaves, it proves,
/// round trip by round trip, that it is still served.
pub type GoodClient = GreetingClient<Socket>;

/// A TCP line server on `127.0.0.1:0` that reports each connection's [`Outcome`].
#[derive(Debug)]
pub struct LineServer {
    /// The listener (closed when the test drops the server).
    pub listener: Arc<ServerSocket>,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
}

impl LineServer {
    /// Starts a server whose lines may have at most `limit` bytes; `configure` sets listener
    /// options (they carry into accepted sockets, e.g. `socket_timeout`).
    pub async fn start(
        selector: &SelectorManager,
        limit: usize,
        configure: impl FnOnce(TcpSocketBuilder) -> TcpSocketBuilder,
    ) -> LineServer {
        let listener = configure(a_socket(selector).tcp())
            .bind(("127.0.0.1", 0))
            .await
            .expect("bind line server");
        let listener = Arc::new(listener);
        let (tx, outcomes) = mpsc::unbounded_channel();
        let accepting = Arc::clone(&listener);
        tokio::spawn(async move {
            while let Ok(socket) = accepting.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(serve_lines(socket, limit).await);
                });
            }
        });
        LineServer { listener, outcomes }
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.listener.port().expect("an inet listener")
    }

    /// A raw tokio connection to the server, for a test that misbehaves byte by byte.
    pub async fn raw_client(&self) -> tokio::net::TcpStream {
        within(tokio::net::TcpStream::connect(("127.0.0.1", self.port())))
            .await
            .expect("raw client connects")
    }

    /// The outcome of the next connection to end (hang safety net: [`within`]).
    pub async fn next_outcome(&mut self) -> Outcome {
        within(self.outcomes.recv())
            .await
            .expect("the server stopped reporting")
    }

    /// Ends `good`'s conversation cleanly and checks that the server read exactly the names it
    /// sent. Its connection must be the next of this server's to end.
    pub async fn finish_good(&mut self, good: GoodClient) {
        let sent = good.finish().await;
        assert_eq!(self.next_outcome().await.lines, sent);
    }
}

/// Connects a [`GoodClient`] to `listener` and serves it there with [`serve_lines`] (for tests
/// that play the server's part for the misbehaving connection themselves). The task's result
/// is the good connection's [`Outcome`].
pub async fn good_client_of(
    selector: &SelectorManager,
    listener: &ServerSocket,
) -> (GoodClient, tokio::task::JoinHandle<Outcome>) {
    let port = listener.port().expect("an inet listener");
    let (connected, accepted) = tokio::join!(
        a_socket(selector).tcp().connect(("127.0.0.1", port)),
        within(listener.accept())
    );
    let served = tokio::spawn(serve_lines(accepted.expect("accept the good client"), 1024));
    let client = GoodClient::start(connected.expect("good client connects")).await;
    (client, served)
}

/// Ends the conversation of a client from [`good_client_of`] cleanly and checks that its server
/// task read exactly the names it sent.
pub async fn finish_good_client_of(good: GoodClient, served: tokio::task::JoinHandle<Outcome>) {
    let sent = good.finish().await;
    let outcome = within(served).await.expect("the good client's server task");
    assert_eq!(outcome.lines, sent);
}

/// Connects a raw tokio peer (a hostile client that the test drives byte by byte) to
/// `listener` and accepts it: (the peer, our accepted side).
pub async fn raw_peer_of(listener: &ServerSocket) -> (tokio::net::TcpStream, Socket) {
    let peer = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
    raw_peer_from(peer, listener).await
}

/// Like [`raw_peer_of`], for a peer socket the test has configured (buffer sizes).
pub async fn raw_peer_from(
    peer: tokio::net::TcpSocket,
    listener: &ServerSocket,
) -> (tokio::net::TcpStream, Socket) {
    let address = listener
        .local_address()
        .as_inet()
        .expect("an inet listener")
        .socket_addr();
    let (peer, accepted) =
        within(async { tokio::join!(peer.connect(address), listener.accept()) }).await;
    (
        peer.expect("raw peer connects"),
        accepted.expect("accept the raw peer"),
    )
}

/// A connection whose write channel holds answers back (flush coalescing) and has more of
/// them than the socket takes: a raw peer with a 4 KiB receive buffer connects to `listener`
/// (bound with a small send buffer) and sends two requests; the server reads the first, writes
/// and flushes 60 answers of 1,000 bytes (held back while the second request is unread), then
/// reads the second. The next flush sends what is held back and, the peer reading nothing,
/// waits for room. Returns the peer, the server's socket and its channels (no auto-flush).
pub async fn held_back_answers(
    listener: &ServerSocket,
) -> (
    tokio::net::TcpStream,
    Socket,
    net_io::ByteReadChannel,
    net_io::ByteWriteChannel,
) {
    use net_io::LineEnding;
    use tokio::io::AsyncWriteExt;
    let raw = tokio::net::TcpSocket::new_v4().unwrap();
    raw.set_recv_buffer_size(4096).unwrap();
    let (mut peer, mut server) = raw_peer_from(raw, listener).await;
    let mut input = server.open_read_channel().unwrap();
    let mut output = server.open_write_channel(false).unwrap();
    // Two requests: while the second is unread, the answers to the first are held back.
    peer.write_all(b"x\ny\n").await.unwrap();
    let first = input.read_line(16, LineEnding::Default).await.unwrap();
    assert_eq!(first.as_deref(), Some("x"));
    let answer = [b'a'; 1000];
    for _ in 0..60 {
        output.write_fully(&answer).await.unwrap();
        output.flush().await.unwrap();
    }
    // The second request read: nothing is pending, a flush sends what is held back.
    let second = input.read_line(16, LineEnding::Default).await.unwrap();
    assert_eq!(second.as_deref(), Some("y"));
    (peer, server, input, output)
}

/// Makes `stream` reset its connection when it is dropped (`SO_LINGER` 0), then drops it, with
/// no child process starting meanwhile ([`without_spawns`](crate::harness::without_spawns)):
/// one would hold the socket until its `exec`, and the reset would wait for that.
pub fn reset(stream: tokio::net::TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("set SO_LINGER 0");
    crate::harness::without_spawns(|| drop(stream));
}

/// The fields of the line of `/proc/net/tcp` (Linux) for the TCP connection from `local` to
/// `remote` (IPv4), if the kernel lists it.
fn proc_net_tcp_line(
    local: std::net::SocketAddr,
    remote: std::net::SocketAddr,
) -> Option<Vec<String>> {
    fn hex(address: std::net::SocketAddr) -> String {
        let std::net::SocketAddr::V4(v4) = address else {
            panic!("an IPv4 address: {address}");
        };
        let ip = u32::from_ne_bytes(v4.ip().octets());
        format!("{ip:08X}:{:04X}", v4.port())
    }
    let (local, remote) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table
        .lines()
        .skip(1)
        .map(|line| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .find(|fields| fields.get(1) == Some(&local) && fields.get(2) == Some(&remote))
}

/// Whether the kernel still lists the TCP connection from `local` to `remote` (IPv4) in
/// `/proc/net/tcp` (Linux). A connection the peer's reset ended is not listed any more, though
/// its socket is still open and no read or write of ours has been told: a test waits for that
/// (with [`reset_arrived`]) to act on a reset the library cannot know of yet.
pub fn kernel_lists_connection(local: std::net::SocketAddr, remote: std::net::SocketAddr) -> bool {
    proc_net_tcp_line(local, remote).is_some()
}

/// How many bytes the kernel holds unacknowledged on the TCP connection from `local` to
/// `remote` (`/proc/net/tcp`'s `tx_queue`); panics when it does not list the connection.
pub fn unacknowledged(local: std::net::SocketAddr, remote: std::net::SocketAddr) -> u32 {
    let line = proc_net_tcp_line(local, remote).expect("the connection in /proc/net/tcp");
    let tx = line[4].split(':').next().expect("tx_queue:rx_queue");
    u32::from_str_radix(tx, 16).expect("a hex tx_queue")
}

/// The Internet checksum of `bytes`.
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A packet socket that sees every frame on the network namespace's interfaces, for
/// [`port_unreachable`] (needs `CAP_NET_RAW`: in a network namespace of the test's own).
pub fn sniffer() -> socket2::Socket {
    let sniffer = socket2::Socket::new(
        socket2::Domain::PACKET,
        socket2::Type::RAW,
        Some(socket2::Protocol::from(i32::from(
            (libc::ETH_P_ALL as u16).to_be(),
        ))),
    )
    .expect("a packet socket (in the test's own network namespace)");
    sniffer
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a read timeout on the packet socket");
    sniffer
}

/// Sends the end `ours` of the TCP connection to `theirs` (on loopback) an ICMP port
/// unreachable (what a firewall's `REJECT` answers by default) about the segment that would
/// come next from it, as a router on the path would: the kernel keeps `ECONNREFUSED` as the
/// connection's soft error, and the connection lives on. `sniffer` ([`sniffer`], made before
/// it) saw that end's last segment with data, which tells the next sequence number. With
/// nothing unacknowledged then, no acknowledgement clears the soft error.
pub fn port_unreachable(
    sniffer: &socket2::Socket,
    ours: std::net::SocketAddr,
    theirs: std::net::SocketAddr,
) {
    use std::io::Read as _;
    let mut frame = [0u8; 65536];
    let (ip_header, next_seq) = loop {
        let n = (&*sniffer).read(&mut frame).expect("a frame on lo");
        // lo's frames: a 14-byte Ethernet header, then IPv4.
        if n < 14 + 20 || frame[12..14] != [0x08, 0x00] || frame[14 + 9] != 6 {
            continue;
        }
        let ip = &frame[14..n];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let tcp = &ip[ihl..];
        let data_offset = usize::from(tcp[12] >> 4) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let payload = total - ihl - data_offset;
        if u16::from_be_bytes([tcp[0], tcp[1]]) != ours.port()
            || u16::from_be_bytes([tcp[2], tcp[3]]) != theirs.port()
            || payload == 0
        {
            continue;
        }
        let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        break (ip[..ihl].to_vec(), seq.wrapping_add(payload as u32));
    };
    // Type 3 (destination unreachable), code 3 (port), then the offending segment's IP header
    // and the first 8 bytes of its TCP header: the ports and the sequence number.
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&ip_header);
    icmp.extend_from_slice(&ours.port().to_be_bytes());
    icmp.extend_from_slice(&theirs.port().to_be_bytes());
    icmp.extend_from_slice(&next_seq.to_be_bytes());
    let sum = checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let raw = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::ICMPV4),
    )
    .expect("a raw ICMP socket (in the test's own network namespace)");
    raw.send_to(&icmp, &ours.into())
        .expect("send the ICMP error");
}

/// Resets `peer`'s connection ([`reset`]) and returns once the reset reached our side of it
/// (the kernel no longer lists it: [`kernel_lists_connection`]; hang safety net: [`within`]).
pub async fn reset_arrived(peer: tokio::net::TcpStream) {
    let (ours, theirs) = (
        peer.peer_addr().expect("the peer's remote address"),
        peer.local_addr().expect("the peer's local address"),
    );
    reset(peer);
    within(async {
        while kernel_lists_connection(ours, theirs) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

/// Sends `bytes` on `peer` with `passed` attached (one `SCM_RIGHTS` control message, laid out
/// as glibc's `cmsghdr` on a 64-bit target: the length, a `size_t`; the level; the type; the
/// descriptor; padding).
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
pub fn send_with_a_descriptor(
    peer: &std::os::unix::net::UnixStream,
    bytes: &[u8],
    passed: &impl std::os::fd::AsRawFd,
) {
    assert_eq!(std::mem::size_of::<libc::cmsghdr>(), 16);
    let mut control = Vec::with_capacity(24);
    control.extend_from_slice(&20usize.to_ne_bytes());
    control.extend_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
    control.extend_from_slice(&libc::SCM_RIGHTS.to_ne_bytes());
    control.extend_from_slice(&passed.as_raw_fd().to_ne_bytes());
    control.extend_from_slice(&[0; 4]);
    let bufs = [std::io::IoSlice::new(bytes)];
    let message = socket2::MsgHdr::new()
        .with_buffers(&bufs)
        .with_control(&control);
    socket2::SockRef::from(peer).sendmsg(&message, 0).unwrap();
}

/// The environment variable that names the port of [`EPOLL_WATCH_SHIM`].
pub const EPOLL_WATCH_SHIM_PORT_ENV: &str = "NET_TESTS_EPOLL_WATCHES_PORT";

/// The source of an `LD_PRELOAD` shim (see [`preload_shim`](crate::harness::preload_shim)) that
/// fails `EPOLL_CTL_ADD` with `ENOSPC`, as the kernel does once the user has
/// `fs.epoll.max_user_watches` watches, for the first accepted (not listening) IPv4 socket
/// whose local port is [`EPOLL_WATCH_SHIM_PORT_ENV`]'s value; every other call goes to the C
/// library.
pub const EPOLL_WATCH_SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>

static int failed;

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event) {
    static int (*real)(int, int, int, struct epoll_event *);
    if (!real) real = (int (*)(int, int, int, struct epoll_event *))dlsym(RTLD_NEXT, "epoll_ctl");
    const char *port = getenv("NET_TESTS_EPOLL_WATCHES_PORT");
    if (op == EPOLL_CTL_ADD && port && !__atomic_load_n(&failed, __ATOMIC_SEQ_CST)) {
        int listening = 0;
        socklen_t size = sizeof listening;
        struct sockaddr_in local;
        socklen_t local_size = sizeof local;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) == 0 && !listening
            && getsockname(fd, (struct sockaddr *)&local, &local_size) == 0
            && local.sin_family == AF_INET && ntohs(local.sin_port) == atoi(port)
            && !__atomic_exchange_n(&failed, 1, __ATOMIC_SEQ_CST)) {
            errno = ENOSPC;
            return -1;
        }
    }
    return real(epfd, op, fd, event);
}
"#;

/// The environment variable that names the port of [`EPOLL_LISTENER_WATCH_SHIM`], read at each
/// call (a child may set it once it bound the listener).
pub const EPOLL_LISTENER_WATCH_SHIM_PORT_ENV: &str = "NET_TESTS_EPOLL_LISTENER_WATCHES_PORT";

/// The source of an `LD_PRELOAD` shim (see [`preload_shim`](crate::harness::preload_shim)) that
/// fails `EPOLL_CTL_ADD` with `ENOSPC`, as the kernel does once the user has
/// `fs.epoll.max_user_watches` watches, for the first listening IPv4 socket whose local port is
/// [`EPOLL_LISTENER_WATCH_SHIM_PORT_ENV`]'s value (whatever its descriptor: a duplicate too);
/// every other call goes to the C library.
pub const EPOLL_LISTENER_WATCH_SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>

static int failed;

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event) {
    static int (*real)(int, int, int, struct epoll_event *);
    if (!real) real = (int (*)(int, int, int, struct epoll_event *))dlsym(RTLD_NEXT, "epoll_ctl");
    const char *port = getenv("NET_TESTS_EPOLL_LISTENER_WATCHES_PORT");
    if (op == EPOLL_CTL_ADD && port && !__atomic_load_n(&failed, __ATOMIC_SEQ_CST)) {
        int listening = 0;
        socklen_t size = sizeof listening;
        struct sockaddr_in local;
        socklen_t local_size = sizeof local;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) == 0 && listening
            && getsockname(fd, (struct sockaddr *)&local, &local_size) == 0
            && local.sin_family == AF_INET && ntohs(local.sin_port) == atoi(port)
            && !__atomic_exchange_n(&failed, 1, __ATOMIC_SEQ_CST)) {
            errno = ENOSPC;
            return -1;
        }
    }
    return real(epfd, op, fd, event);
}
"#;
