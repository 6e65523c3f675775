//! `a_socket(&selector)` and the TCP and UDP builders: options first, then `bind` or `connect`.

use std::time::Duration;

use socket2::{Domain, SockRef, Socket as RawSocket};

use crate::address::ToSocketAddress;
use crate::adopt::StdListener;
use crate::connect::{self, resolve_first};
use crate::datagram::{BoundDatagramSocket, ConnectedDatagramSocket};
use crate::options::{ProxyProtocol, SocketOptions};
use crate::selector::SelectorSleep;
use crate::{Error, Result, SelectorManager, ServerSocket, Socket, SocketAddress};

/// Starts building a socket on `selector`, as Ktor's `aSocket(selector)`.
///
/// # Examples
///
/// ```
/// use net_sockets::{a_socket, SelectorManager};
///
/// # #[tokio::main] async fn main() -> net_sockets::Result<()> {
/// let selector = SelectorManager::new();
/// let server = a_socket(&selector).tcp().backlog(1024).bind(("127.0.0.1", 0)).await?;
/// let client = a_socket(&selector).tcp().connect(("localhost", server.port().unwrap())).await?;
/// let udp = a_socket(&selector).udp().broadcast(true).bind(("0.0.0.0", 0)).await?;
/// # let _ = (client, udp); Ok(()) }
/// ```
pub fn a_socket(selector: &SelectorManager) -> SocketBuilder {
    SocketBuilder {
        selector: selector.clone(),
        options: SocketOptions::default(),
    }
}

macro_rules! common_setters {
    () => {
        /// Sets `SO_REUSEADDR` (default: on for TCP listeners, off otherwise).
        pub fn reuse_address(mut self, on: bool) -> Self {
            self.options.reuse_address = Some(on);
            self
        }

        /// Sets `SO_REUSEPORT` (default: off). Sockets that all set it, in one process or
        /// several of the same user, share a port, and Linux spreads new connections (TCP
        /// listeners) or the datagrams of each peer (UDP) among them. Closing a TCP listener
        /// resets the connections still waiting in its accept queue, unless
        /// `net.ipv4.tcp_migrate_req` is 1 (Linux 5.14 on), which hands them to another; a UDP
        /// socket's close drops the datagrams still waiting in it. (For a restart, see
        /// [`ServerSocket::close`].)
        pub fn reuse_port(mut self, on: bool) -> Self {
            self.options.reuse_port = on;
            self
        }

        /// Sets the IP type of service (`IP_TOS`, or `IPV6_TCLASS` on IPv6; on Linux, an IPv6
        /// socket gets `IP_TOS` too, for the IPv4 traffic of a dual-stack one; default: the
        /// OS's). On a TCP
        /// socket Linux keeps only the upper six bits (the DSCP): the two ECN bits are the
        /// kernel's.
        pub fn type_of_service(mut self, tos: u8) -> Self {
            self.options.type_of_service = Some(tos);
            self
        }

        /// Sets `SO_SNDBUF` in bytes (default: the OS's). The kernel caps it at its own limit
        /// (a size over `i32::MAX` asks for that largest buffer) and raises a tiny one to its
        /// floor; Linux keeps twice the size (room for its bookkeeping), and `getsockopt` reads
        /// that double back.
        pub fn send_buffer_size(mut self, bytes: usize) -> Self {
            self.options.send_buffer_size = Some(bytes);
            self
        }

        /// Sets `SO_RCVBUF` in bytes (default: the OS's), capped and doubled as
        /// [`send_buffer_size`](Self::send_buffer_size) is.
        pub fn receive_buffer_size(mut self, bytes: usize) -> Self {
            self.options.receive_buffer_size = Some(bytes);
            self
        }

        /// Sets several options at once.
        pub fn configure(mut self, f: impl FnOnce(&mut SocketOptions)) -> Self {
            f(&mut self.options);
            self
        }

        /// The options set so far.
        pub fn options(&self) -> &SocketOptions {
            &self.options
        }
    };
}

/// The first step of [`a_socket`]: options shared by TCP and UDP, then
/// [`tcp`](Self::tcp) or [`udp`](Self::udp), which carry them on.
#[derive(Debug, Clone)]
#[must_use = "a socket builder does nothing until `tcp()` or `udp()` and then `bind` or `connect`"]
pub struct SocketBuilder {
    selector: SelectorManager,
    options: SocketOptions,
}

impl SocketBuilder {
    common_setters!();

    /// Continues with a TCP (or Unix stream) socket.
    pub fn tcp(self) -> TcpSocketBuilder {
        TcpSocketBuilder {
            selector: self.selector,
            options: self.options,
        }
    }

    /// Continues with a UDP socket.
    pub fn udp(self) -> UdpSocketBuilder {
        UdpSocketBuilder {
            selector: self.selector,
            options: self.options,
        }
    }
}

/// Builds TCP and Unix stream sockets: [`bind`](Self::bind) a [`ServerSocket`] or
/// [`connect`](Self::connect) a [`Socket`].
///
/// Defaults are those of [`SocketOptions`]: `no_delay` on, `reuse_address` on for listeners,
/// backlog 1024, flush coalescing on, a 5 s PROXY header timeout where PROXY headers are
/// read, no other timeouts, and the OS's for everything else.
#[derive(Debug, Clone)]
#[must_use = "a socket builder does nothing until `bind` or `connect`"]
pub struct TcpSocketBuilder {
    selector: SelectorManager,
    options: SocketOptions,
}

impl TcpSocketBuilder {
    common_setters!();

    /// Sets `TCP_NODELAY` (default: on).
    pub fn no_delay(mut self, on: bool) -> Self {
        self.options.no_delay = on;
        self
    }

    /// Turns `SO_KEEPALIVE` on or off (default: the OS's, off).
    ///
    /// Keep-alive is what ends a connection whose peer vanished (its host dropped off the
    /// network: no FIN, no reset, nothing of it arrives again) while nothing sent on it is
    /// unacknowledged: a read waiting on it fails with `net_io::Error::Io` of kind
    /// [`TimedOut`](std::io::ErrorKind::TimedOut) (the OS's `ETIMEDOUT`) some idle + interval
    /// × count after the last packet ([`keep_alive_idle`](Self::keep_alive_idle),
    /// [`keep_alive_interval`](Self::keep_alive_interval),
    /// [`keep_alive_count`](Self::keep_alive_count)), and a write after it with `EPIPE`, kind
    /// [`BrokenPipe`](std::io::ErrorKind::BrokenPipe). Without keep-alive such a connection,
    /// idle, stays open for ever. The kernel sends no probe while data sent is unacknowledged
    /// (written just before the peer vanished; a TLS 1.3 server's session tickets, sent as its
    /// handshake ends): it retransmits instead, for some 15 minutes
    /// (`net.ipv4.tcp_retries2`), before the same `ETIMEDOUT`. [`socket_timeout`](Self::socket_timeout)
    /// bounds every wait in both cases, and [`tcp_user_timeout`](Self::tcp_user_timeout) the
    /// retransmissions.
    pub fn keep_alive(mut self, on: bool) -> Self {
        self.options.keep_alive = Some(on);
        self
    }

    /// Sets the keep-alive idle time before the first probe (turns keep-alive on, also after
    /// `keep_alive(false)`; default: the OS's, `net.ipv4.tcp_keepalive_time` on Linux); the
    /// kernel counts whole seconds, so a fraction is rounded up.
    /// Linux takes 1 to 32,767 s (after the rounding): another time, `Duration::ZERO` among
    /// them, fails a TCP `bind`, `connect` or listener adoption with [`Error::InvalidOption`]
    /// naming it (Unix sockets ignore it).
    pub fn keep_alive_idle(mut self, idle: Duration) -> Self {
        self.options.keep_alive = Some(true);
        self.options.keep_alive_idle = Some(idle);
        self
    }

    /// Sets the keep-alive interval between probes (turns keep-alive on, also after
    /// `keep_alive(false)`; default: the OS's, `net.ipv4.tcp_keepalive_intvl` on Linux); a
    /// fraction of a second is rounded up. Linux takes 1 to 32,767 s
    /// (after the rounding): another time, `Duration::ZERO` among them, fails a TCP `bind`,
    /// `connect` or listener adoption with [`Error::InvalidOption`] naming it (Unix sockets
    /// ignore it).
    pub fn keep_alive_interval(mut self, interval: Duration) -> Self {
        self.options.keep_alive = Some(true);
        self.options.keep_alive_interval = Some(interval);
        self
    }

    /// Sets how many unanswered probes drop the connection (turns keep-alive on, also after
    /// `keep_alive(false)`; default: the OS's, `net.ipv4.tcp_keepalive_probes` on Linux).
    /// Linux takes 1 to 127: another count fails a TCP `bind`, `connect` or listener adoption
    /// with [`Error::InvalidOption`] naming it (Unix sockets ignore it).
    pub fn keep_alive_count(mut self, count: u32) -> Self {
        self.options.keep_alive = Some(true);
        self.options.keep_alive_count = Some(count);
        self
    }

    /// Sets Linux's `TCP_USER_TIMEOUT` (default: the OS's, none): how long data sent may stay
    /// unacknowledged before the kernel drops the connection. A read waiting on it then fails
    /// with `net_io::Error::Io` of kind [`TimedOut`](std::io::ErrorKind::TimedOut) (the OS's
    /// `ETIMEDOUT`), and a write after that read with `EPIPE`, kind
    /// [`BrokenPipe`](std::io::ErrorKind::BrokenPipe), as after keep-alive's end; when no read
    /// waits, the write or flush that meets it fails with `ETIMEDOUT`, and so does every read
    /// after it. It bounds what keep-alive does not: a peer that vanished while something sent
    /// to it was still unacknowledged, to which the kernel otherwise retransmits for some 15
    /// minutes (see [`keep_alive`](Self::keep_alive)). With keep-alive on too, it also decides
    /// when unanswered probes end the connection, in place of
    /// [`keep_alive_count`](Self::keep_alive_count) (tcp(7)). The kernel counts milliseconds:
    /// a fraction is rounded up, a time over `i32::MAX` milliseconds (some 24.8 days) is that,
    /// and `Duration::ZERO` is the kernel's default (no such bound). On a listener it applies
    /// to the connections `accept` hands out. Unix sockets ignore it; systems other than
    /// Linux too.
    pub fn tcp_user_timeout(mut self, timeout: Duration) -> Self {
        self.options.tcp_user_timeout = Some(timeout);
        self
    }

    /// Sets `SO_LINGER` (default: the OS's, off; the kernel's wait for it runs on a blocking
    /// thread, never a runtime thread). The kernel counts whole seconds: a time with a
    /// fraction is rounded up, so one under a second is 1 s. `Duration::ZERO` makes `close`
    /// reset the connection; a
    /// connection that closes itself because both its directions ended cleanly (the end of its
    /// input read, and its write side shut down with success, in either order) still ends as
    /// that shutdown promised: everything written, then the FIN. On a
    /// listener it applies to the connections `accept` hands out; one the listener refuses or
    /// drops before that (over `max_connections_per_ip`, a bad PROXY header) closes without
    /// lingering, as nothing was sent on it (with `Duration::ZERO`, with a reset). On a connect
    /// it is set on the connection `connect` returns: an attempt dropped before (one that lost
    /// the race of a host name's addresses, or any when the connect's future is dropped) closes
    /// without lingering too.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.options.linger = Some(linger);
        self
    }

    /// Sets the inactivity timeout on reads and writes of connected and accepted sockets: an
    /// operation that makes no progress for this long fails with a timeout (default: none).
    ///
    /// The time runs from when a read (or a write) starts waiting, and only one that completes
    /// on the socket (bytes received or sent, the end of the stream, an error) starts it
    /// afresh: a read given up while waiting (its future dropped by `select!` or `timeout`)
    /// leaves it running for the next read, so a `select!` loop that makes a new read each turn
    /// still ends after this long without input. A read served from bytes received before (a
    /// `read_bytes` of what a given-up `read_line` left buffered) leaves it running too: the
    /// time spent after it counts, and the next read that waits fails at once when the time
    /// is up. A write waits for the kernel to say that the socket takes bytes again, which
    /// Linux says only once a third of the send buffer drained (of a Unix socket's, whose
    /// peer's unread input counts against it, three quarters): a peer that reads, but slower
    /// than that per timeout (a third of a 4 MiB buffer in 30 s is some 45 KB/s), times out
    /// all the same (a smaller [`send_buffer_size`](Self::send_buffer_size) lowers that rate).
    ///
    /// Over TLS, a read completes when it returns data (or the end, or an error): records that
    /// carry no data (session tickets, key updates, empty records, which a peer can send for
    /// ever within rustls's limits) do not start it afresh, nor does part of a record.
    ///
    /// It is an inactivity timeout, not a deadline: a peer that sends a byte now and then
    /// keeps a read going however long it takes (see the
    /// [guide](crate::guide#3-timeouts-idle-and-slow-clients) for a deadline per request).
    /// [`Duration::ZERO`] is no "no timeout" (leave it unset for that): every read or write
    /// that has to wait fails at once, as any timeout does (a read loses nothing: retried, it
    /// goes on where it stopped). A duration too large for the clock (`Duration::MAX`) means
    /// no timeout. It applies to stream sockets (TCP and Unix); datagram sockets ignore it.
    pub fn socket_timeout(mut self, timeout: Duration) -> Self {
        self.options.socket_timeout = Some(timeout);
        self
    }

    /// Bounds the whole of [`connect`](Self::connect), name resolution included: one deadline
    /// for every address of a host name together, not one per attempt (default: none). A
    /// connect it ends fails with [`Error::Timeout`](crate::Error::Timeout) and leaves no
    /// descriptor (nor a Unix socket file) behind, but for a host name's lookup under way:
    /// the system resolver (`getaddrinfo`, on a blocking thread) cannot be stopped, and runs
    /// on, holding that
    /// thread and its query's socket, until it answers or its own timeout passes (5 s per try
    /// by default), as after a connect future dropped during the lookup. Meanwhile dropping
    /// the runtime it runs on, the selector's, waits for it (tokio's runtime waits for its
    /// blocking threads when dropped: the end of `#[tokio::main]`, for a
    /// [`SelectorManager::new`](crate::SelectorManager::new) selector); a selector of its own
    /// runtime ([`SelectorManager::builder`](crate::SelectorManager::builder)) is dropped
    /// without waiting, the lookup running on. With
    /// [`Duration::ZERO`] the deadline passes at the timer's next tick (about 1 ms): only a
    /// connect that completes by then succeeds (to a loopback address, or a host name found
    /// at once, it usually does); a duration too large for the clock (`Duration::MAX`) is no
    /// bound.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = Some(timeout);
        self
    }

    /// Binds the connecting socket to `address` before it connects (a chosen source address,
    /// or port; default: none, the OS picks). With a host name, only the addresses of
    /// `address`'s family are tried; [`Error::Resolve`](crate::Error::Resolve) when it has
    /// none (always, for a Unix path).
    /// A Unix path with an IP address to connect to, an IP address with a Unix socket, or an IP
    /// address of the other family than an IP address to connect to (IPv4 and IPv6), fails
    /// the connect with [`Error::Io`](crate::Error::Io) of kind
    /// [`InvalidInput`](std::io::ErrorKind::InvalidInput); so does an IPv4-mapped address
    /// (`::ffff:a.b.c.d`, IPv4 in effect) with an IPv6 address that is not IPv4-mapped, and
    /// an IPv6 address other than `::` (such as `::1`) with an IPv4-mapped one. With a port
    /// other than 0
    /// the attempts are not raced (each would need that port): the next address is tried when
    /// the one before fails, so bound the whole with [`connect_timeout`](Self::connect_timeout)
    /// when an address may not answer at all. A Unix path makes a socket file, which the socket
    /// removes when it closes (while it is still that file), as a listener does, and at once
    /// when the connect fails or its future is dropped. An address that cannot be bound (an IP
    /// address's port held by another socket, an IP address this host does not have, a Unix
    /// path in a directory that does not exist) fails the connect with
    /// [`Error::Io`](crate::Error::Io) of the OS error's kind
    /// ([`AddrInUse`](std::io::ErrorKind::AddrInUse),
    /// [`AddrNotAvailable`](std::io::ErrorKind::AddrNotAvailable),
    /// [`NotFound`](std::io::ErrorKind::NotFound)), whose message names the local address
    /// (and the address it was to connect to), the OS error its source; a file already at a
    /// Unix path is named as [`bind`](Self::bind) names it.
    pub fn local_address(mut self, address: impl Into<SocketAddress>) -> Self {
        self.options.local_address = Some(address.into());
        self
    }

    /// Coalesces flushes (default: on): while the read channel holds requests not yet read,
    /// answers are held back and leave together when the reader is about to wait; see
    /// [`SocketOptions::coalesce_flushes`].
    pub fn coalesce_flushes(mut self, on: bool) -> Self {
        self.options.coalesce_flushes = on;
        self
    }

    /// Sets the listen backlog (default 1024). Linux caps it, without an error, at
    /// `net.core.somaxconn` (4096 by default since Linux 5.4, 128 before; a container may set
    /// less): a listener then holds at most about that many connections it has not accepted.
    /// A connect beyond them waits, its SYNs unanswered (SYN cookies or not), until the
    /// listener accepts or the connect's `connect_timeout` ends it with [`Error::Timeout`].
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.options.backlog = backlog;
        self
    }

    /// Caps the connections a listener has open at once: `accept` waits while `n` connections
    /// it accepted are open, and goes on when one closes (default: no cap). A connection closed
    /// with answers still held back by flush coalescing counts as open until they left (or
    /// failed: see `socket_timeout` for a peer that stops reading). A plain connection's slot
    /// is free before its client can see the end (its FIN or reset); over TLS, the slot is
    /// free once the descriptor is released, just after the `close_notify` the client sees as
    /// the end (a client that connects again at once waits in the listen queue for those
    /// moments, and is never refused; its place under
    /// [`max_connections_per_ip`](Self::max_connections_per_ip) is free before the end).
    ///
    /// `n` must be at least 1: with 0, [`bind`](Self::bind), [`from_std`](Self::from_std) and
    /// [`systemd_listeners`](Self::systemd_listeners) fail with [`Error::InvalidOption`].
    pub fn max_connections(mut self, n: usize) -> Self {
        self.options.max_connections = Some(n);
        self
    }

    /// Caps the connections one client address may have open on a listener: one more is
    /// closed at once (default: no cap). Behind a PROXY protocol header the client is the
    /// address the proxy reports. An IPv4 client of a dual-stack listener (`::ffff:a.b.c.d`)
    /// counts as its IPv4 address; an IPv6 client as its whole address, so a host with a /64
    /// of its own has as many caps as addresses. A client of a Unix listener has no IP address
    /// (at most a path or an abstract name it bound): the cap does not apply to it, unless a
    /// PROXY protocol header names its IP address; [`max_connections`](Self::max_connections)
    /// bounds them all.
    ///
    /// A connection's place is free before its client can see the end of it — the FIN (or
    /// reset) of its close, or of a shutdown of its write side after its input ended, which
    /// closes it; over TLS, the `close_notify` of that close or shutdown — so a client that saw
    /// the end and connects again at once is never refused for that place. The place is kept
    /// while the end is not on its way: a TLS close or shutdown that still has to send the
    /// records before its `close_notify` (to a client that reads nothing) keeps it. A write
    /// side shut down while the input has not ended is a half-close: the connection is still
    /// open, and keeps its place until its input ends too (or it closes).
    ///
    /// `n` must be at least 1: with 0, [`bind`](Self::bind), [`from_std`](Self::from_std) and
    /// [`systemd_listeners`](Self::systemd_listeners) fail with [`Error::InvalidOption`].
    pub fn max_connections_per_ip(mut self, n: usize) -> Self {
        self.options.max_connections_per_ip = Some(n);
        self
    }

    /// Expects a PROXY protocol header (v1 or v2) on each accepted connection (default:
    /// [`ProxyProtocol::Off`]); see [`ProxyProtocol`].
    pub fn proxy_protocol(mut self, mode: ProxyProtocol) -> Self {
        self.options.proxy_protocol = mode;
        self
    }

    /// How long a connection may take to send its PROXY protocol header (default 5 s): then it
    /// is dropped when the header is required, and when it is optional it is taken as it is,
    /// unless what it sent starts with a whole signature (`PROXY`, or the 12 bytes of v2): that
    /// header, cut short, drops it too (see [`ProxyProtocol::Optional`]). A deadline counted
    /// from the accept, however slowly the header's bytes come. With [`Duration::ZERO`] the
    /// deadline passes at the timer's next tick (about 1 ms): only a header already received
    /// when the listener takes the connection is read in time; a duration too large for the
    /// clock (`Duration::MAX`) is no bound.
    pub fn proxy_header_timeout(mut self, timeout: Duration) -> Self {
        self.options.proxy_header_timeout = timeout;
        self
    }

    /// Binds a listener to `address` (a host name binds its first resolved address; a
    /// [`UnixSocketAddress`](crate::UnixSocketAddress) creates a Unix socket file).
    ///
    /// `::` (the IPv6 unspecified address) binds a dual-stack listener, as the OS makes it by
    /// default (on Linux, `net.ipv6.bindv6only = 0`): it accepts IPv4 clients too, and reports
    /// them IPv4-mapped (see [`Socket::remote_address`]); the port is then taken for IPv4 as
    /// well, so binding `0.0.0.0` at it fails with kind
    /// [`AddrInUse`](std::io::ErrorKind::AddrInUse). On a host with `net.ipv6.bindv6only = 1`
    /// it is IPv6-only instead: an IPv4 client's connect is refused, and `0.0.0.0` binds at the
    /// same port (bind both for both families). With IPv6 disabled
    /// (`net.ipv6.conf.all.disable_ipv6 = 1`) `::` still binds and takes IPv4 clients, but
    /// `::1` fails with kind [`AddrNotAvailable`](std::io::ErrorKind::AddrNotAvailable). A
    /// specific IPv6 address (`::1`) takes IPv6 clients only. The builder has no
    /// `IPV6_V6ONLY` option: for an IPv6-only listener on `::` (beside an IPv4 one at the same
    /// port), make it with `socket2` (`set_only_v6(true)` before its `bind`) and adopt it with
    /// [`from_std`](Self::from_std).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the socket cannot be created, configured or bound (e.g. kind
    /// [`AddrInUse`](std::io::ErrorKind::AddrInUse); for a Unix path, also when a file is
    /// there, such as the socket file of a process that ended without removing it: it is not
    /// replaced, and the message names it); [`Error::Resolve`] when a host name
    /// does not resolve; [`Error::SelectorClosed`] when the selector is closed
    /// or its graceful shutdown began; [`Error::InvalidOption`] for an option value the OS
    /// refuses, or a cap of zero connections.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is bound until the future completes.
    pub async fn bind(self, address: impl ToSocketAddress) -> Result<ServerSocket> {
        let address =
            resolve_first(self.selector.inner(), address.to_socket_target()?, None).await?;
        ServerSocket::bind(self.selector.inner(), address, self.options)
    }

    /// Adopts a listening `std` socket ([`std::net::TcpListener`] or
    /// [`std::os::unix::net::UnixListener`], from a supervisor or another library) with this
    /// builder's options for the connections it accepts, the buffer sizes and the type of
    /// service among them (which are set on the listener, as a TCP connection takes its
    /// listener's, and on each connection it had queued already); `backlog` and `reuse_*` are
    /// the socket's own already. A Unix listener's socket file is not the adopted listener's:
    /// closed, it leaves the file where it is (as do the Unix listeners of
    /// [`systemd_listeners`](Self::systemd_listeners), whose files are systemd's).
    ///
    /// The descriptor's close-on-exec flag is left as it is: `std` makes its sockets
    /// close-on-exec, so a child process does not inherit them, but one made from an inherited
    /// descriptor (`from_raw_fd`) may lack the flag, and is then inherited by every child
    /// process started later (set it first, through the [re-exported](crate::socket2) socket2,
    /// built with the `all` feature this needs:
    /// `net_sockets::socket2::SockRef::from(&s).set_cloexec(true)`).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] of kind [`InvalidInput`](std::io::ErrorKind::InvalidInput) when the socket
    /// is not listening or is not a TCP or Unix stream socket; [`Error::InvalidOption`];
    /// [`Error::SelectorClosed`].
    pub fn from_std(self, listener: impl StdListener) -> Result<ServerSocket> {
        let (fd, _) = listener.into_parts();
        ServerSocket::adopt(self.selector.inner(), RawSocket::from(fd), self.options)
    }

    /// The listening sockets systemd passed to this socket-activated process (`LISTEN_PID`,
    /// `LISTEN_FDS`, `LISTEN_FDNAMES`), with this builder's options for the connections they
    /// accept, each with its name (the socket unit's `FileDescriptorName=`, or `unknown`), in
    /// the order systemd passed them.
    ///
    /// The descriptors can be taken once per process: a later call fails with kind
    /// [`InvalidInput`](std::io::ErrorKind::InvalidInput), also once the variables are gone (a
    /// service that removed them after taking its listeners is not told it was never
    /// activated). The variables are left as they are (a child process does not match
    /// `LISTEN_PID`).
    /// Each listener holds a close-on-exec duplicate of the descriptor systemd passed (which
    /// systemd passes without the flag, for the service's `exec`), and the passed descriptors
    /// (3 and on) are closed once every one is adopted: a process the service starts does not
    /// inherit them, nor keep them listening after the service closes them.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] of kind [`NotFound`](std::io::ErrorKind::NotFound) when the process was not
    /// socket-activated; of kind [`InvalidInput`](std::io::ErrorKind::InvalidInput) when the
    /// variables are malformed (among them a `LISTEN_FDNAMES` that names more or fewer
    /// descriptors than `LISTEN_FDS` counts, which systemd never sets: its names could not be
    /// matched to the descriptors), the descriptors were taken already, or one is not a listening
    /// TCP or Unix stream socket (datagram sockets are not supported: then none is taken, and
    /// they all stay open where systemd put them, for the service to adopt another way);
    /// [`Error::InvalidOption`] for a cap of zero connections or an option value the OS
    /// refuses, and [`Error::SelectorClosed`] when the selector is closed or its graceful
    /// shutdown began (all found before a descriptor is adopted: they are left for a call with
    /// the options corrected, or on an open selector, to take); the OS error, kind kept, when
    /// one cannot be adopted: the runtime cannot watch it (`epoll_ctl` fails with `ENOSPC`
    /// once the user has `fs.epoll.max_user_watches` watches, or with `ENOMEM`), or no
    /// descriptor is left for its duplicate (`EMFILE`). Then the listeners adopted already are
    /// closed (their duplicates: the sockets go on listening), and every passed descriptor is
    /// left open where systemd put it, blocking or not as it was (the builder's options set on
    /// the sockets adopted already stay set), with the connections queued in it, for a later
    /// call (once the limit is lifted) to take.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> net_sockets::Result<()> {
    /// let selector = net_sockets::SelectorManager::new();
    /// for (name, server) in net_sockets::a_socket(&selector).tcp().systemd_listeners()? {
    ///     println!("{name}: listening at {}", server.local_address());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn systemd_listeners(self) -> Result<Vec<(String, ServerSocket)>> {
        // Before the descriptors are taken, which can be done once only: an error after
        // would close them for good.
        self.options.check_listener()?;
        let selector = self.selector.inner();
        selector.check_open()?;
        if selector.stopped_accepting() {
            return Err(Error::SelectorClosed);
        }
        let taken = crate::adopt::systemd_listen_fds()?;
        // A value the OS refuses (the TCP options', which Unix sockets ignore) is found before
        // any descriptor is adopted, and they are given back for a call with the options
        // corrected: an error after would close them for good.
        let tcp = taken
            .iter()
            .filter_map(|(_, raw)| Some((crate::adopt::family(&SockRef::from(raw)).ok()?, raw)))
            .find(|(domain, _)| *domain != Domain::UNIX);
        if let Some((domain, raw)) = tcp {
            if let Err(e) = self.options.check_on_a_scratch_socket(domain, raw) {
                crate::adopt::give_back(taken);
                return Err(e);
            }
        }
        // Each is adopted as a duplicate (close-on-exec), the descriptor systemd passed kept
        // until all are: an error in adopting one (the runtime cannot watch it, `epoll_ctl`
        // failing with ENOSPC at `fs.epoll.max_user_watches` or with ENOMEM; no descriptor
        // left for a duplicate; a graceful shutdown of the selector begun meanwhile) closes
        // the duplicates only, and gives the descriptors back, open where systemd put them.
        // An adopted listener's close never stops its socket (`shutdown`), so the socket goes
        // on listening through them.
        let nonblocking: Vec<Option<bool>> = taken
            .iter()
            .map(|(_, raw)| raw.nonblocking().ok())
            .collect();
        let mut listeners = Vec::with_capacity(taken.len());
        for (name, raw) in &taken {
            let adopted = raw
                .try_clone()
                .map_err(Error::from)
                .and_then(|copy| ServerSocket::adopt(selector, copy, self.options.clone()));
            match adopted {
                Ok(server) => listeners.push((name.clone(), server)),
                Err(e) => {
                    drop(listeners);
                    // The adoption made the socket non-blocking (a flag its descriptors share):
                    // given back as it was passed.
                    for ((_, raw), nonblocking) in taken.iter().zip(nonblocking) {
                        if let Some(nonblocking) = nonblocking {
                            let _ = raw.set_nonblocking(nonblocking);
                        }
                    }
                    crate::adopt::give_back(taken);
                    return Err(e);
                }
            }
        }
        // Closes the descriptors systemd passed: their sockets are the listeners' now.
        drop(taken);
        Ok(listeners)
    }

    /// Connects to `address`. A host name is resolved and every address tried, IPv6 and IPv4
    /// interleaved and raced, the resolver's first address first (`localhost`, on a host whose
    /// resolver gives `::1` and then `127.0.0.1`, tries `::1` first; a new attempt starts
    /// every 250 ms, or as soon as one fails), so a dead address family does not stall the
    /// connect (one at a time with a fixed local port: see
    /// [`local_address`](Self::local_address)).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] of kind [`ConnectionRefused`](std::io::ErrorKind::ConnectionRefused)
    /// (or another kind) when every attempt failed — the last attempt's error, unless that
    /// attempt's address is one this host cannot use at all (kind
    /// [`AddrNotAvailable`](std::io::ErrorKind::AddrNotAvailable), `EAFNOSUPPORT` or
    /// [`NetworkUnreachable`](std::io::ErrorKind::NetworkUnreachable), where the host has no
    /// route or no source address for it: `::1` where IPv6 is disabled) and an earlier one's
    /// error is not such an error: `localhost` with IPv6 disabled and nobody listening fails
    /// with `ConnectionRefused`, not `AddrNotAvailable`. The ephemeral ports spent towards an
    /// address of the name are not such an error: its `AddrNotAvailable` is reported as the
    /// last attempt's;
    /// [`Error::Timeout`] after `connect_timeout`; [`Error::Resolve`] when the name does not
    /// resolve (or has no address of the `local_address`'s family); [`Error::Io`] of kind
    /// [`InvalidInput`](std::io::ErrorKind::InvalidInput) when the `local_address` is of the
    /// other kind than `address` (a Unix path and an IP address), or of the other IP family
    /// than an IP address given as `address`; [`Error::InvalidOption`] for an option value the
    /// OS refuses (a keep-alive count of 0, say); [`Error::SelectorClosed`] when the selector is
    /// closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future abandons the attempts and closes their descriptors (a
    /// host name's lookup under way runs on to its end on its blocking thread: see
    /// [`connect_timeout`](Self::connect_timeout)).
    pub async fn connect(self, address: impl ToSocketAddress) -> Result<Socket> {
        let target = address.to_socket_target()?;
        let selector = self.selector.inner();
        selector.check_open()?;
        let attempt = connect::connect(selector, target, &self.options);
        // The close first. An attempt that failed as the selector closed reports the close:
        // the end of a `SelectorManager::new()` selector's runtime, on another thread, may
        // come between this check and the attempt's poll, and fail its wait with tokio's own
        // error ("A Tokio 1.x context was found, but it is being shutdown").
        let guarded = async {
            tokio::select! {
                biased;
                () = selector.token().cancelled() => Err(Error::SelectorClosed),
                r = attempt => r.map_err(|e| if selector.is_closed() { Error::SelectorClosed } else { e }),
            }
        };
        match self.options.connect_timeout {
            Some(limit) => {
                // Timers come from the selector's runtime, so a connect can be awaited anywhere;
                // this one fails with `SelectorClosed` once the selector is closed, never
                // polled after its runtime ended.
                let timer = SelectorSleep::new(selector, limit);
                tokio::select! {
                    biased;
                    r = guarded => r,
                    fired = timer => Err(fired.err().unwrap_or(Error::Timeout)),
                }
            }
            None => guarded.await,
        }
    }
}

/// Builds UDP sockets: [`bind`](Self::bind) a [`BoundDatagramSocket`] or
/// [`connect`](Self::connect) a [`ConnectedDatagramSocket`].
#[derive(Debug, Clone)]
#[must_use = "a socket builder does nothing until `bind` or `connect`"]
pub struct UdpSocketBuilder {
    selector: SelectorManager,
    options: SocketOptions,
}

impl UdpSocketBuilder {
    common_setters!();

    /// Sets `SO_BROADCAST`: allows sending to broadcast addresses (default: off).
    pub fn broadcast(mut self, on: bool) -> Self {
        self.options.broadcast = on;
        self
    }

    /// Binds a datagram socket to `address` (port 0 picks a free port; a host name binds its
    /// first resolved address).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the socket cannot be created or bound (of kind
    /// [`Unsupported`](std::io::ErrorKind::Unsupported) for a Unix socket address: Unix datagram
    /// sockets are not supported); [`Error::InvalidOption`] for an option value the OS refuses;
    /// [`Error::Resolve`]; [`Error::SelectorClosed`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is bound until the future completes.
    pub async fn bind(self, address: impl ToSocketAddress) -> Result<BoundDatagramSocket> {
        let address =
            resolve_first(self.selector.inner(), address.to_socket_target()?, None).await?;
        BoundDatagramSocket::bind(self.selector.inner(), address, &self.options)
    }

    /// A datagram socket connected to `remote` (with a host name, its first resolved address
    /// only: no other is tried, as no datagram says whether it arrived), bound to a free port
    /// on the unspecified address of the same family. A host name's lookup has no bound but
    /// the system resolver's own (with glibc, `resolv.conf`'s `timeout` and `attempts`, 5 s
    /// and 2 by default, for each server), as for [`bind`](Self::bind), here and on the TCP
    /// builder: bound it with `tokio::time::timeout` if need be (the lookup runs on after
    /// it, as after a TCP [`connect_timeout`](crate::TcpSocketBuilder::connect_timeout)).
    ///
    /// The socket's peer is the one the kernel connected it to: for the unspecified address
    /// (`0.0.0.0:p`), which the kernel takes for this host, that is this host's address
    /// (`127.0.0.1:p`), where replies come from; `remote_address` reports it, and `send` takes
    /// it.
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind); [`Error::Io`](crate::Error::Io) of kind
    /// [`InvalidInput`](std::io::ErrorKind::InvalidInput) for a `remote` at port 0, which no
    /// datagram can reach.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is bound until the future completes.
    pub async fn connect(self, remote: impl ToSocketAddress) -> Result<ConnectedDatagramSocket> {
        let remote = resolve_first(self.selector.inner(), remote.to_socket_target()?, None).await?;
        ConnectedDatagramSocket::connect(self.selector.inner(), remote, None, &self.options)
    }

    /// A datagram socket bound to `local` and connected to `remote` (with a host name, its first
    /// address that `local` reaches: of `local`'s family, or for a dual-stack `local`, `::`,
    /// also an IPv4 one). Its peer is the one the kernel connected it to, as for
    /// [`connect`](Self::connect).
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind); [`Error::Resolve`] also when `remote`'s name has no address
    /// that `local` reaches; [`Error::Io`] of kind
    /// [`InvalidInput`](std::io::ErrorKind::InvalidInput) for a `remote` at port 0 (as for
    /// [`connect`](Self::connect)), and when `local` and `remote` are of
    /// different IP families, except a dual-stack `local` (`::`, or an IPv4-mapped address)
    /// with an IPv4 `remote`, which it reaches through its IPv4-mapped form; also when `local`
    /// is IPv4-mapped (IPv4 in effect) and `remote` an IPv6 address that is not, or `local` an
    /// IPv6 address other than `::` and `remote` IPv4-mapped.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is bound until the future completes.
    pub async fn connect_from(
        self,
        remote: impl ToSocketAddress,
        local: impl ToSocketAddress,
    ) -> Result<ConnectedDatagramSocket> {
        let local = resolve_first(self.selector.inner(), local.to_socket_target()?, None).await?;
        let remote = resolve_first(
            self.selector.inner(),
            remote.to_socket_target()?,
            Some(&local),
        )
        .await?;
        ConnectedDatagramSocket::connect(self.selector.inner(), remote, Some(local), &self.options)
    }
}

/// A builder, or a setter's result, that is dropped unused loses its options and binds or
/// connects nothing: the compiler warns (each builder is `#[must_use]`). Each of these fails
/// to compile under `deny(unused_must_use)`:
///
/// ```compile_fail
/// #[deny(unused_must_use)]
/// fn lost(selector: &net_sockets::SelectorManager) {
///     let tcp = net_sockets::a_socket(selector).tcp();
///     tcp.clone().no_delay(false); // the option is lost
///     let _ = tcp;
/// }
/// ```
///
/// ```compile_fail
/// #[deny(unused_must_use)]
/// fn lost(selector: &net_sockets::SelectorManager) {
///     let udp = net_sockets::a_socket(selector).udp();
///     udp.clone().broadcast(true);
///     let _ = udp;
/// }
/// ```
///
/// ```compile_fail
/// #[deny(unused_must_use)]
/// fn lost(selector: &net_sockets::SelectorManager) {
///     let builder = net_sockets::a_socket(selector);
///     builder.clone().reuse_port(true);
///     let _ = builder;
/// }
/// ```
///
/// ```compile_fail
/// #[deny(unused_must_use)]
/// fn lost() {
///     let builder = net_sockets::SelectorManager::builder();
///     builder.clone().worker_threads(2);
///     let _ = builder;
/// }
/// ```
///
/// The same, used, compiles:
///
/// ```
/// #[deny(unused_must_use)]
/// fn kept(selector: &net_sockets::SelectorManager) {
///     let _ = net_sockets::a_socket(selector).reuse_port(true);
///     let _ = net_sockets::a_socket(selector).tcp().no_delay(false);
///     let _ = net_sockets::a_socket(selector).udp().broadcast(true);
///     let _ = net_sockets::SelectorManager::builder().worker_threads(2);
/// }
/// ```
#[cfg(doctest)]
pub struct BuildersAreMustUse;
