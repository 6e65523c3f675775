//! Socket options: plain data set on a builder, applied with socket2.

use std::io;
use std::time::Duration;

use socket2::{Domain, SockRef, Socket as RawSocket, TcpKeepalive, Type};

use crate::{Error, Result, SocketAddress};

/// Options for TCP, Unix and UDP sockets, with Ktor's defaults where Ktor has the option, but
/// for two: `backlog` is 1,024 (Ktor's `backlogSize` is 511), and `reuse_address` is on for TCP
/// listeners (Ktor's `reuseAddress` is off, though the JDK under it sets `SO_REUSEADDR` on
/// every listener). Of those Ktor lacks, `coalesce_flushes` is on.
///
/// Set them with the builder methods of [`TcpSocketBuilder`](crate::TcpSocketBuilder) and
/// [`UdpSocketBuilder`](crate::UdpSocketBuilder), or several at once with `configure`:
///
/// ```
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let selector = net_sockets::SelectorManager::new();
/// let builder = net_sockets::a_socket(&selector).tcp().configure(|options| {
///     options.no_delay = false;
///     options.socket_timeout = Some(Duration::from_secs(30));
/// });
/// # let _ = builder; }
/// ```
///
/// `None` leaves the operating system's default, but for two options: `reuse_address`, which
/// `None` turns on for TCP listeners (`Some(false)` leaves them the OS's off), and `keep_alive`,
/// which `None` turns on when a `keep_alive_*` parameter is set. Options that do not apply to a
/// kind of socket (TCP options and `linger` on UDP, whose close never waits; `broadcast` on TCP;
/// the TCP and IP options on Unix sockets: `no_delay`, keep-alive, `tcp_user_timeout`,
/// `type_of_service`, `reuse_address`, `reuse_port`) are ignored there, also with a value the
/// OS would refuse. The buffer sizes a listener is built with reach each socket it accepts, Unix
/// ones included (whose OS does not pass a listener's on).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SocketOptions {
    /// `SO_REUSEADDR`. Default: on for TCP listeners (as tokio does), off otherwise.
    pub reuse_address: Option<bool>,
    /// `SO_REUSEPORT`. Default: off.
    pub reuse_port: bool,
    /// IP type of service (`IP_TOS`, or `IPV6_TCLASS` on IPv6 sockets; on Linux, an IPv6
    /// socket gets `IP_TOS` too, for the IPv4 traffic of a dual-stack one). Default: the OS's.
    pub type_of_service: Option<u8>,
    /// `SO_SNDBUF` in bytes (the kernel caps it at its own limit; a size over `i32::MAX` asks
    /// for that largest buffer). Default: the OS's.
    pub send_buffer_size: Option<usize>,
    /// `SO_RCVBUF` in bytes (the kernel caps it at its own limit; a size over `i32::MAX` asks
    /// for that largest buffer). Default: the OS's.
    pub receive_buffer_size: Option<usize>,
    /// UDP `SO_BROADCAST`: allows sending to broadcast addresses. Default: off.
    pub broadcast: bool,
    /// TCP `TCP_NODELAY` (Nagle's algorithm off). Default: on, as in Ktor.
    pub no_delay: bool,
    /// TCP `SO_KEEPALIVE`. Default: the OS's (off). Setting any of the `keep_alive_*`
    /// parameters turns it on, unless this is `Some(false)` (the builder's setters of those
    /// parameters set it to `Some(true)`).
    pub keep_alive: Option<bool>,
    /// TCP keep-alive idle time before the first probe (`TCP_KEEPIDLE`), in the whole seconds
    /// the kernel counts (a fraction is rounded up).
    pub keep_alive_idle: Option<Duration>,
    /// TCP keep-alive interval between probes (`TCP_KEEPINTVL`), in whole seconds (a fraction
    /// is rounded up).
    pub keep_alive_interval: Option<Duration>,
    /// TCP keep-alive probe count before the connection is dropped (`TCP_KEEPCNT`).
    pub keep_alive_count: Option<u32>,
    /// Linux's `TCP_USER_TIMEOUT`: how long data sent may stay unacknowledged before the
    /// kernel drops the connection (see
    /// [`TcpSocketBuilder::tcp_user_timeout`](crate::TcpSocketBuilder::tcp_user_timeout)), in
    /// the milliseconds the kernel counts (a fraction is rounded up; a time over `i32::MAX`
    /// milliseconds is that). `Duration::ZERO` is the kernel's default: no such bound.
    /// Default: the OS's (none). Other systems ignore it.
    pub tcp_user_timeout: Option<Duration>,
    /// `SO_LINGER`. Default: the OS's (off). The kernel counts whole seconds: a time with a
    /// fraction is rounded up (so one under a second is 1 s); `Duration::ZERO` makes `close`
    /// reset the connection (not the close of a connection whose directions both ended
    /// cleanly, which sends everything written, then the FIN).
    pub linger: Option<Duration>,
    /// Inactivity timeout on reads and writes of connected and accepted stream sockets (TCP
    /// and Unix; datagram sockets ignore it): a read or write that makes no progress for this
    /// long fails with a timeout (`net_io::Error::Timeout` on the channels; over TLS, records
    /// without data are no progress). `Duration::ZERO`
    /// fails every operation that has to wait, at once. Default: none.
    pub socket_timeout: Option<Duration>,
    /// Limit on the whole of a stream `connect` (`tcp().connect`), name resolution and every
    /// address's attempt included; datagram sockets ignore it. Default: none.
    pub connect_timeout: Option<Duration>,
    /// Listen backlog of TCP and Unix listeners. Default: 1024.
    pub backlog: u32,
    /// Connected and accepted sockets: while the read channel holds requests not yet read,
    /// answers written to the write channel are held back (up to 64 KiB) and leave together when
    /// the reader is about to wait for more input — a burst of pipelined requests is answered
    /// with one send, not one per request. A lone request's answer leaves at once, and a socket
    /// that only writes flushes as it always does. Default: on.
    ///
    /// The trade-off is that of every flush-when-idle server (a hand-tuned tokio server, Go's
    /// `bufio` idiom): while a client pipelines, an answer waits for the requests received with
    /// it to be handled. A server that does slow work per request for pipelining clients may
    /// prefer each answer to leave at once: turn it off. An explicit `flush` of the write
    /// channel while requests are pending is held back the same way (it returns, and the bytes
    /// leave with the burst's answers). `flush_and_close`, `close` and `close_gracefully` send
    /// what was held back first.
    ///
    /// Held-back bytes leave when the reader waits for input or sees the end of its stream
    /// (a frame stream's end at its first error too, which never reads again), when its read
    /// channel is dropped, when a write would pass the 64 KiB limit (on TLS,
    /// 64 KiB of the records that carry them, about 22 bytes more per record), or when the
    /// write side closes; and, once the reader has read the last unread request without waiting
    /// (it handles that request before it reads again), at the next flush or auto-flushed
    /// write, which sends them first: until then an earlier answer of the burst waits for that
    /// handling. So a reader that stops reading while input is still unread (a server that
    /// reads a command sent with a trailing empty line, then only pushes and never reads again)
    /// keeps what is written after it held back, explicit flushes included. Such a server keeps
    /// reading (a `select!` on a read beside its pushes), drops its read channel, or turns
    /// coalescing off. A read through tokio's `AsyncRead` or `AsyncBufRead` (`copy`,
    /// `copy_bidirectional`, `FramedRead`) leaves nothing pending, whatever stays buffered:
    /// such code passes its bytes on and may stop reading while its writes wait.
    ///
    /// Held-back bytes count as written: when their send fails (the peer is gone, or the
    /// kernel is short of memory for the moment, `ENOBUFS`), they are lost as bytes the kernel
    /// took would be, and every later write, of nothing too, fails (`EPIPE`, as the kernel
    /// answers every send once a connection is dead), so that no byte reaches the peer without
    /// those before it; the close resets the connection.
    pub coalesce_flushes: bool,
    /// Stream `connect` (`tcp().connect`): the local address to bind to first
    /// (bind-before-connect: a source address or port of your choosing, or a Unix path, whose
    /// socket file the socket removes when it closes, or at once when its connect fails or is
    /// dropped). With a host name, only the addresses of its family are tried. Of the other
    /// kind than the target (a Unix path and an IP address), the connect fails. Default: the
    /// OS picks. (A UDP socket takes its local address from `bind` or `connect_from`; its
    /// `connect` ignores this.)
    pub local_address: Option<SocketAddress>,
    /// Listeners: how many accepted connections may be open at once; `accept` waits while that
    /// many are. Default: no cap. `Some(0)` makes the listener's `bind` (or adoption) fail with
    /// [`Error::InvalidOption`].
    pub max_connections: Option<usize>,
    /// Listeners: how many connections one client address may have open; one more is closed at
    /// once (a `debug` event, counted in [`ListenerStats`](crate::ListenerStats)). Behind a
    /// PROXY protocol header, the client is the address the proxy reports. A Unix listener's
    /// clients have no IP address: the cap does not apply to them unless a header names one.
    /// Default: no cap. `Some(0)` makes the listener's `bind` (or adoption) fail with
    /// [`Error::InvalidOption`].
    pub max_connections_per_ip: Option<usize>,
    /// Listeners: whether each connection starts with a PROXY protocol header (v1 or v2) that
    /// names the client. Default: [`ProxyProtocol::Off`].
    pub proxy_protocol: ProxyProtocol,
    /// Listeners: how long a connection may take to send its PROXY protocol header: a deadline
    /// for the whole header from the accept, however slowly its bytes come (not an inactivity
    /// timeout). Then the connection is dropped, or, with [`ProxyProtocol::Optional`] and no
    /// whole signature received, taken as it is. Default: 5 seconds.
    pub proxy_header_timeout: Duration,
}

/// Whether a listener expects a PROXY protocol header (HAProxy's v1 or v2) at the start of each
/// connection, as a load balancer in front of it sends.
///
/// With a header, the accepted socket's [`remote_address`](crate::Socket::remote_address) is
/// the client the proxy names, and [`proxy_address`](crate::Socket::proxy_address) the proxy.
/// A header that is malformed, or missing or not complete within
/// [`proxy_header_timeout`](SocketOptions::proxy_header_timeout) when required (or, when
/// optional, cut short after its whole signature: see [`Optional`](Self::Optional)), drops that
/// connection with a `debug` event (a `warn` for the listener's first: clients cannot fill a
/// log kept at `info`), counted in [`ListenerStats`](crate::ListenerStats); other connections
/// are not affected, and `accept` goes on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyProtocol {
    /// No header: the peer is the client.
    #[default]
    Off,
    /// A header may come first; a connection without one is taken as it is, and so is one
    /// that has sent no whole header when the header timeout passes (a client that waits for
    /// the server to speak first, once the timeout passed) or when it ends its sending, unless
    /// what it sent starts with a whole signature (`PROXY`, or the 12 bytes of v2): that is a
    /// header cut short, dropped and counted as when required. Only for listeners that clients
    /// cannot reach but through the proxy: a client could otherwise send a header that names
    /// any address.
    Optional,
    /// Every connection must start with a header.
    Required,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            reuse_address: None,
            reuse_port: false,
            type_of_service: None,
            send_buffer_size: None,
            receive_buffer_size: None,
            broadcast: false,
            no_delay: true,
            keep_alive: None,
            keep_alive_idle: None,
            keep_alive_interval: None,
            keep_alive_count: None,
            tcp_user_timeout: None,
            linger: None,
            socket_timeout: None,
            connect_timeout: None,
            backlog: 1024,
            coalesce_flushes: true,
            local_address: None,
            max_connections: None,
            max_connections_per_ip: None,
            proxy_protocol: ProxyProtocol::Off,
            proxy_header_timeout: Duration::from_secs(5),
        }
    }
}

/// Which kind of socket options are applied to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    TcpListener,
    TcpStream,
    Udp,
    Unix,
}

impl SocketOptions {
    /// Applies the options that must be set before `bind`/`connect`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] naming the option the OS refused.
    pub(crate) fn apply(&self, socket: &RawSocket, kind: Kind, ipv6: bool) -> Result<()> {
        if kind != Kind::Unix {
            let reuse = self.reuse_address.unwrap_or(kind == Kind::TcpListener);
            if reuse {
                set("reuse_address", socket.set_reuse_address(true))?;
            }
            if self.reuse_port {
                set("reuse_port", socket.set_reuse_port(true))?;
            }
            self.apply_type_of_service(&SockRef::from(socket), ipv6)?;
        }
        self.apply_buffer_sizes(&SockRef::from(socket))?;
        match kind {
            Kind::Udp => {
                if self.broadcast {
                    set("broadcast", socket.set_broadcast(true))?;
                }
            }
            // Not `linger`: a connect attempt that is dropped (it lost, or the connect's future
            // was) must close without waiting for the peer; the one kept gets it.
            Kind::TcpStream => self.apply_stream(&SockRef::from(socket), true)?,
            Kind::Unix => self.apply_connected(&SockRef::from(socket), false)?,
            Kind::TcpListener => {}
        }
        Ok(())
    }

    /// Applies `type_of_service`: before `bind`/`connect`, and to a TCP listener adopted with a
    /// builder (whose connections inherit it, as a bound listener's do).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] when the OS refused it.
    pub(crate) fn apply_type_of_service(&self, socket: &SockRef<'_>, ipv6: bool) -> Result<()> {
        if let Some(tos) = self.type_of_service {
            if ipv6 {
                set("type_of_service", socket.set_tclass_v6(u32::from(tos)))?;
                // A dual-stack socket's IPv4 traffic (IPv4-mapped peers, and the
                // connections a listener accepts from them, which inherit it) carries
                // `IP_TOS`, not the traffic class: set it too, as the JDK does on Linux.
                #[cfg(any(target_os = "linux", target_os = "android"))]
                set("type_of_service", socket.set_tos_v4(u32::from(tos)))?;
            } else {
                set("type_of_service", socket.set_tos_v4(u32::from(tos)))?;
            }
        }
        Ok(())
    }

    /// Applies `send_buffer_size` and `receive_buffer_size`: before `bind`/`connect`, and to
    /// each stream a Unix listener accepts (which, unlike a TCP one's, gets the OS's defaults,
    /// not the listener's sizes).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] naming the option the OS refused.
    pub(crate) fn apply_buffer_sizes(&self, socket: &SockRef<'_>) -> Result<()> {
        if let Some(size) = self.send_buffer_size {
            let size = buffer_size(size);
            set("send_buffer_size", socket.set_send_buffer_size(size))?;
        }
        if let Some(size) = self.receive_buffer_size {
            let size = buffer_size(size);
            set("receive_buffer_size", socket.set_recv_buffer_size(size))?;
        }
        Ok(())
    }

    /// Applies the options that matter on a connected (or accepted) stream.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] naming the option the OS refused.
    pub(crate) fn apply_connected(&self, socket: &SockRef<'_>, tcp: bool) -> Result<()> {
        self.apply_stream(socket, tcp)?;
        self.apply_linger(socket)
    }

    /// Applies the options of [`apply_connected`](Self::apply_connected) but `linger`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] naming the option the OS refused.
    fn apply_stream(&self, socket: &SockRef<'_>, tcp: bool) -> Result<()> {
        if tcp {
            set("no_delay", socket.set_tcp_nodelay(self.no_delay))?;
            let params = self.keep_alive_idle.is_some()
                || self.keep_alive_interval.is_some()
                || self.keep_alive_count.is_some();
            if params && self.keep_alive != Some(false) {
                set("keep_alive", socket.set_keepalive(true))?;
                if let Some(idle) = self.keep_alive_idle {
                    let idle = TcpKeepalive::new().with_time(whole_seconds(idle));
                    set("keep_alive_idle", socket.set_tcp_keepalive(&idle))?;
                }
                #[cfg(not(any(target_os = "openbsd", target_os = "haiku")))]
                if let Some(interval) = self.keep_alive_interval {
                    let interval = TcpKeepalive::new().with_interval(whole_seconds(interval));
                    set("keep_alive_interval", socket.set_tcp_keepalive(&interval))?;
                }
                #[cfg(not(any(target_os = "openbsd", target_os = "haiku")))]
                if let Some(count) = self.keep_alive_count {
                    let count = TcpKeepalive::new().with_retries(count);
                    set("keep_alive_count", socket.set_tcp_keepalive(&count))?;
                }
            } else if let Some(on) = self.keep_alive {
                set("keep_alive", socket.set_keepalive(on))?;
            }
            #[cfg(any(target_os = "linux", target_os = "android"))]
            if let Some(timeout) = self.tcp_user_timeout {
                // socket2 truncates to whole milliseconds (so under one would be 0, the
                // kernel's default) and passes up to `u32::MAX`, which the kernel refuses.
                let timeout = Some(whole_millis(timeout)).filter(|t| !t.is_zero());
                set("tcp_user_timeout", socket.set_tcp_user_timeout(timeout))?;
            }
        }
        Ok(())
    }

    /// Applies `linger`: to a connected stream once it is kept (see `Kind::TcpStream`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] when the OS refused it.
    pub(crate) fn apply_linger(&self, socket: &SockRef<'_>) -> Result<()> {
        if let Some(linger) = self.linger {
            // 0 seconds means "reset on close", which a time under a second must not become.
            set("linger", socket.set_linger(Some(whole_seconds(linger))))?;
        }
        Ok(())
    }
}

/// `time` in the whole seconds the kernel counts in a C int, for linger and keep-alive times: a
/// fraction rounded up (a time under a second must not become 0, which means something else
/// or is refused), clamped rather than wrapped to negative.
fn whole_seconds(time: Duration) -> Duration {
    let seconds = time
        .as_secs()
        .saturating_add(u64::from(time.subsec_nanos() > 0))
        .min(i32::MAX as u64);
    Duration::from_secs(seconds)
}

/// `time` in the whole milliseconds the kernel counts `TCP_USER_TIMEOUT` in, a C int: a fraction
/// rounded up (a time under a millisecond must not become 0, the kernel's default), clamped
/// rather than refused.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn whole_millis(time: Duration) -> Duration {
    let millis = time
        .as_millis()
        .saturating_add(u128::from(time.subsec_nanos() % 1_000_000 > 0))
        .min(i32::MAX as u128);
    Duration::from_millis(millis as u64)
}

/// A buffer size as the kernel takes it, in a C int: a larger one is clamped (the kernel then
/// gives its largest buffer), not wrapped (4 GiB would become 0, the smallest buffer).
fn buffer_size(size: usize) -> usize {
    size.min(i32::MAX as usize)
}

impl SocketOptions {
    /// Refuses listener options that no listener can serve with: a cap of zero connections
    /// (`accept` would wait for ever, or every client would be refused).
    pub(crate) fn check_listener(&self) -> Result<()> {
        let caps = [
            ("max_connections", self.max_connections),
            ("max_connections_per_ip", self.max_connections_per_ip),
        ];
        for (option, cap) in caps {
            if cap == Some(0) {
                let source = io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a cap of 0 connections admits none: give at least 1",
                );
                return Err(Error::InvalidOption { option, source });
            }
        }
        Ok(())
    }
}

impl SocketOptions {
    /// Sets the options an adopted TCP listener of `domain` gets (on itself, for its
    /// connections) on a TCP socket made for the purpose and closed at once: a value the OS
    /// refuses (a keep-alive count of 0) is found before what can be adopted only once
    /// (systemd's descriptors) is. Where no such socket can be made (a process out of
    /// descriptors, a unit denied the family, which socket activation lets serve TCP), they are
    /// set on `listener` itself, as its adoption would set them (one refused leaves those set
    /// before it there).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] naming the option the OS refused.
    pub(crate) fn check_on_a_scratch_socket(
        &self,
        domain: Domain,
        listener: &RawSocket,
    ) -> Result<()> {
        let scratch = RawSocket::new(domain, Type::STREAM, None).ok();
        let socket = SockRef::from(scratch.as_ref().unwrap_or(listener));
        self.apply_type_of_service(&socket, domain == Domain::IPV6)?;
        self.apply_buffer_sizes(&socket)?;
        self.apply_connected(&socket, true)
    }
}

/// Names the option a failed `setsockopt` was for.
fn set(option: &'static str, result: io::Result<()>) -> Result<()> {
    result.map_err(|source| Error::InvalidOption { option, source })
}
