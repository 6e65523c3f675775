//! UDP: [`Datagram`], [`BoundDatagramSocket`] and [`ConnectedDatagramSocket`].

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use socket2::{Domain, SockRef, Socket as RawSocket, Type};
use tokio::net::UdpSocket;

use crate::address::needs_scope;
use crate::adopt::{INET, check_kind};
use crate::core::{CloseMode, Core, Owner, Setup};
use crate::options::{Kind, SocketOptions};
use crate::repeat::Repeat;
use crate::selector::{SelectorInner, SelectorSleep, lock};
use crate::waiters::Waiters;
use crate::{Error, Result, SelectorManager, SocketAddress};

/// The largest payload a UDP datagram can carry over IPv4: 65,535 − 8 (UDP) − 20 (IP) bytes.
pub const MAX_DATAGRAM_SIZE: usize = 65_507;

/// The largest payload a UDP datagram can carry over IPv6 (without jumbograms): 65,535 − 8
/// (UDP) bytes, the IPv6 header not counting towards its payload length.
pub const MAX_DATAGRAM_SIZE_V6: usize = 65_527;

/// The receive buffer: larger than any UDP payload but an IPv6 jumbogram's (RFC 2675), so a
/// datagram is never silently cut: one that fills more of it than [`MAX_DATAGRAM_SIZE_V6`] is
/// a jumbogram, perhaps cut, and `receive` reports it (see [`jumbogram`]).
const RECEIVE_BUFFER: usize = 65_536;

/// How long a send that waits for room on a socket whose readiness is stuck (see
/// `send_or_wait`) waits before it tries again: the timer's resolution.
const STUCK_RETRY: Duration = Duration::from_millis(1);

/// A UDP packet and the address it came from or goes to.
///
/// `Debug` shows the packet's size and the address, never the packet's bytes (a peer's data,
/// up to 64 KiB, for a datagram received).
///
/// # Examples
///
/// ```
/// use net_sockets::{Datagram, Error, InetSocketAddress};
///
/// let to = InetSocketAddress::new([127, 0, 0, 1], 9003);
/// let datagram = Datagram::new("hello", to)?;
/// assert_eq!(&datagram.packet[..], b"hello");
/// assert!(format!("{datagram:?}").starts_with("Datagram { packet: [5 bytes], address: "));
/// assert!(matches!(Datagram::new(vec![0; 65_508], to), Err(Error::DatagramTooLarge { size: 65_508 })));
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Datagram {
    /// The payload (may be empty: a 0-byte datagram is data).
    pub packet: Bytes,
    /// The peer: where it came from, or where to send it.
    pub address: SocketAddress,
}

impl fmt::Debug for Datagram {
    /// The address and the packet's size: never the packet's bytes, which are the
    /// application's (a peer's, for a datagram received).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Datagram")
            .field("packet", &format_args!("[{} bytes]", self.packet.len()))
            .field("address", &self.address)
            .finish()
    }
}

impl Datagram {
    /// A datagram to (or from) `address`. An empty packet is a datagram too.
    ///
    /// # Errors
    ///
    /// [`Error::DatagramTooLarge`] when `packet` is over [`MAX_DATAGRAM_SIZE`] bytes for an IPv4
    /// address (also one mapped into IPv6, `::ffff:a.b.c.d`, as a socket bound to `::` sees
    /// IPv4 peers: it is reached over IPv4), or over [`MAX_DATAGRAM_SIZE_V6`] for another IPv6
    /// address.
    pub fn new(packet: impl Into<Bytes>, address: impl Into<SocketAddress>) -> Result<Datagram> {
        let packet = packet.into();
        let address = address.into();
        if let SocketAddress::Inet(inet) = &address {
            check_size(packet.len(), &inet.socket_addr())?;
        }
        Ok(Datagram { packet, address })
    }
}

/// Refuses payloads larger than UDP over `to`'s family can carry. An IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`, how a dual-stack socket sees IPv4 peers) is reached over IPv4.
fn check_size(size: usize, to: &SocketAddr) -> Result<()> {
    let limit = if to.ip().to_canonical().is_ipv6() {
        MAX_DATAGRAM_SIZE_V6
    } else {
        MAX_DATAGRAM_SIZE
    };
    if size > limit {
        Err(Error::DatagramTooLarge { size })
    } else {
        Ok(())
    }
}

/// Whether `to` is the connected peer `remote`, also written in the other family's form: a
/// dual-stack socket connected to an IPv4 peer has it as `[::ffff:a.b.c.d]:p`, and `a.b.c.d:p`
/// is the same peer (and the other way round). An IPv6 flow label is no part of the peer's
/// address (the kernel keeps none for it), and neither is a scope id on an address that needs
/// none (the kernel drops it: `[::1%1]:p` is connected as `[::1]:p`).
fn same_peer(remote: SocketAddr, to: SocketAddr) -> bool {
    if remote.port() != to.port() || remote.ip().to_canonical() != to.ip().to_canonical() {
        return false;
    }
    match (remote, to) {
        (SocketAddr::V6(remote), SocketAddr::V6(to)) => {
            remote.scope_id() == to.scope_id() || !needs_scope(remote.ip())
        }
        _ => true,
    }
}

/// Whether a datagram from `from` came from the connected peer `remote`. The kernel delivers
/// only the peer's datagrams once the socket is connected, but keeps those that others sent
/// before (to a socket bound first, or adopted, or connected by `connect_from` to a fixed
/// port): they are dropped, as the kernel drops those that come after. Compares the address
/// (either written in the other family's form, see [`same_peer`]) and the port, not an IPv6
/// flow label or scope, which the kernel's filter already matched.
fn from_peer(remote: SocketAddr, from: SocketAddr) -> bool {
    remote.port() == from.port() && remote.ip().to_canonical() == from.ip().to_canonical()
}

/// Whether a socket bound to `local` reaches IPv4 peers through their IPv4-mapped form: an
/// IPv6 socket bound to `::`, or to an IPv4-mapped address.
pub(crate) fn dual_stack(local: SocketAddr) -> bool {
    local.is_ipv6() && (local.ip().is_unspecified() || local.ip().to_canonical().is_ipv4())
}

/// A send from a socket bound to `local` to `to`, which it cannot reach (the OS's error would
/// be `EAFNOSUPPORT`, which has no kind, or `ENETUNREACH`, which reads as a routing fault).
fn unreachable(local: SocketAddr, to: SocketAddr) -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "a socket bound to the {} address {local} cannot send to the {} address {to} (one \
             bound to `::`, unless it is IPv6-only, reaches both families)",
            crate::connect::family(local),
            crate::connect::family(to)
        ),
    ))
}

/// The error of a receive that took a datagram of more than [`MAX_DATAGRAM_SIZE_V6`] bytes:
/// an IPv6 jumbogram (RFC 2675), which a link whose MTU passes 65,575 bytes carries, and which
/// the receive buffer may have cut (tokio's `recv_from` reports the bytes up to the buffer's
/// size, and not the `MSG_TRUNC` that says whether more were dropped).
fn jumbogram(from: SocketAddr) -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "a datagram of more than {MAX_DATAGRAM_SIZE_V6} bytes (an IPv6 jumbogram) from \
             {from} was dropped: jumbograms are not received"
        ),
    ))
}

struct UdpCore {
    core: Core<UdpSocket>,
    /// The receive buffer, kept between receives.
    spare: Mutex<BytesMut>,
    /// The receives waiting for a datagram.
    receives: Mutex<Receives>,
    /// The sends waiting for room (see `send_or_wait`).
    send_waiting: Waiters,
    /// With busy polling: whether a receive waits for input since a receive last returned (a
    /// datagram or an error) or a datagram was sent. Busy polling's cue is the socket
    /// beginning to wait, not every receive that begins while it waits (one begun again after
    /// one dropped while it waited, as a `select!` loop with a timer does at every turn, would
    /// keep a worker polling an idle socket for ever).
    waiting: AtomicBool,
    local: SocketAddress,
    remote: Option<SocketAddr>,
    /// Whether it reaches IPv4 peers too: bound to `::` (or an IPv4-mapped address) and not
    /// IPv6-only (`IPV6_V6ONLY`, set before its bind, or by `net.ipv6.bindv6only = 1`).
    dual_stack: bool,
}

/// A receive waiting for a datagram: it owns the socket and the buffer while it waits.
type WaitingReceive =
    Pin<Box<dyn Future<Output = (io::Result<(usize, SocketAddr)>, BytesMut)> + Send>>;

/// The receives waiting for a datagram, kept by the socket rather than by their tasks: each holds
/// the socket (tokio's readiness future borrows it), so `close` drops them to release the
/// descriptor at once, whether or not their tasks ever run again.
#[derive(Default)]
struct Receives {
    /// Set by `close`: no receive waits any more.
    closed: bool,
    next: u64,
    /// Usually one or none: a linear search beats hashing.
    waiting: Vec<(u64, WaitingReceive)>,
}

impl Receives {
    fn get_mut(&mut self, id: u64) -> Option<&mut WaitingReceive> {
        self.waiting
            .iter_mut()
            .find(|(each, _)| *each == id)
            .map(|(_, receive)| receive)
    }

    fn remove(&mut self, id: u64) -> Option<WaitingReceive> {
        let at = self.waiting.iter().position(|(each, _)| *each == id)?;
        Some(self.waiting.swap_remove(at).1)
    }
}

impl Owner for UdpCore {
    type Io = UdpSocket;
    type Hook = ();

    fn core(&self) -> &Core<UdpSocket> {
        &self.core
    }

    fn close_for_selector(&self) {
        self.close();
    }
}

/// One receive's place among the waiting ones: polls it, and drops it when dropped itself (the
/// receive is then abandoned before it took a datagram).
struct Waiter<'a> {
    udp: &'a UdpCore,
    /// `None` once the receive completed.
    id: Option<u64>,
    /// A copy of the waker it was last polled with, let go of only after the lock of the
    /// waiting receives (and when dropped, only after the receive): the copy that tokio's
    /// readiness replaces under that lock, or drops with the receive, is then never a task's
    /// last. Its drop may drop the task (an executor whose pending tasks only their wakers
    /// keep), and with it a guard that closes this socket: that close would wait for the lock
    /// for ever, or find the socket still held by the receive being dropped and return before
    /// the descriptor went.
    waker: Option<Waker>,
}

impl Future for Waiter<'_> {
    type Output = Result<(usize, SocketAddr, BytesMut)>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(id) = self.id else {
            return Poll::Ready(Err(self.udp.core.closed_error()));
        };
        let replaced = match &mut self.waker {
            Some(waker) if waker.will_wake(cx.waker()) => None,
            waker => waker.replace(cx.waker().clone()),
        };
        let mut receives = lock(&self.udp.receives);
        // `None`: gone, `close` dropped it.
        let polled = receives
            .get_mut(id)
            .map(|waiting| waiting.as_mut().poll(cx));
        let done = match polled {
            Some(Poll::Ready(_)) => receives.remove(id),
            _ => None,
        };
        drop(receives);
        drop(done);
        drop(replaced);
        let (received, buffer) = match polled {
            None => return Poll::Ready(Err(self.udp.core.closed_error())),
            Some(Poll::Pending) => return Poll::Pending,
            Some(Poll::Ready(received)) => received,
        };
        self.id = None;
        Poll::Ready(
            received
                .map(|(size, from)| (size, from, buffer))
                .map_err(|e| Error::from(self.udp.core.failed(e))),
        )
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            let abandoned = lock(&self.udp.receives).remove(id);
            drop(abandoned);
        }
        // `waker` goes only now (see the field).
    }
}

impl UdpCore {
    fn new(
        selector: &Arc<SelectorInner>,
        options: &SocketOptions,
        local: SocketAddr,
        remote: Option<SocketAddr>,
    ) -> Result<Arc<UdpCore>> {
        selector.check_open()?;
        let raw = RawSocket::new(Domain::for_address(local), Type::DGRAM, None)?;
        options.apply(&raw, Kind::Udp, local.is_ipv6())?;
        raw.bind(&local.into())
            .map_err(|e| crate::address::unscoped(local, e))?;
        let remote = match remote {
            Some(remote) => {
                // `::` made IPv6-only by `net.ipv6.bindv6only = 1`: the OS's error for an
                // IPv4 peer, in either form (`[::ffff:a.b.c.d]:p` too), would read as a
                // routing fault.
                if local.is_ipv6() && remote.ip().to_canonical().is_ipv4() && raw.only_v6()? {
                    return Err(unreachable(local, remote));
                }
                raw.connect(&remote.into())
                    .map_err(|e| crate::address::unscoped(remote, e))?;
                // The peer as the kernel connected it: for the unspecified address, this host
                // (`0.0.0.0:p` is `127.0.0.1:p`), where replies come from.
                Some(raw.peer_addr()?.as_socket().unwrap_or(remote))
            }
            None => None,
        };
        Self::adopt(selector, raw.into(), remote)
    }

    /// Registers a bound (and, with `remote`, connected) `std` UDP socket.
    fn adopt(
        selector: &Arc<SelectorInner>,
        socket: std::net::UdpSocket,
        remote: Option<SocketAddr>,
    ) -> Result<Arc<UdpCore>> {
        selector.check_open()?;
        socket.set_nonblocking(true)?;
        let bound = socket.local_addr()?;
        let dual_stack = dual_stack(bound) && !SockRef::from(&socket).only_v6()?;
        let socket = selector.register_io(|| UdpSocket::from_std(socket))?;
        let local = SocketAddress::from(bound);
        let span = match remote {
            Some(remote) => tracing::debug_span!("udp", local = %local, remote = %remote),
            None => tracing::debug_span!("udp", local = %local),
        };
        let setup = Setup {
            // The kernel closes a UDP socket at once, SO_LINGER or not: its close releases the
            // port before it returns, and never asks for SO_LINGER.
            may_linger: false,
            never_lingers: true,
            ..Setup::new(span)
        };
        let udp = Core::open(selector, socket, setup, |core| UdpCore {
            core,
            spare: Mutex::new(BytesMut::new()),
            receives: Mutex::new(Receives::default()),
            send_waiting: Waiters::new(),
            waiting: AtomicBool::new(false),
            local,
            remote,
            dual_stack,
        })?;
        tracing::debug!(parent: udp.core.span(), "datagram socket open");
        Ok(udp)
    }

    async fn send(&self, datagram: &Datagram) -> Result<()> {
        let SocketAddress::Inet(to) = &datagram.address else {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a UDP socket cannot send to a Unix socket address",
            )));
        };
        let to = self.reachable(to.socket_addr())?;
        check_size(datagram.packet.len(), &to)?;
        let packet = &datagram.packet[..];
        match self.remote {
            Some(remote) if !same_peer(remote, to) => {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("datagram addressed to {to}, but the socket is connected to {remote}"),
                )));
            }
            Some(_) => self.send_or_wait(|s| s.try_send(packet)).await?,
            None => self.send_or_wait(|s| s.try_send_to(packet, to)).await?,
        }
        // The peer's answer may come at once.
        self.moved();
        Ok(())
    }

    /// `to` as this socket reaches it: an IPv4 socket reaches an IPv4 peer written in its
    /// IPv6-mapped form (`[::ffff:a.b.c.d]:p`) at `a.b.c.d:p` (the OS refuses the mapped form
    /// on an IPv4 socket).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] of kind [`InvalidInput`](io::ErrorKind::InvalidInput) for another IPv6
    /// address on an IPv4 socket, which cannot reach it (the OS's `EAFNOSUPPORT` has no kind),
    /// or on one bound to an IPv4-mapped address (IPv4 in effect, and the same error), and for
    /// an IPv4 address (in either form) on a socket that is not dual-stack (bound to an IPv6
    /// address such as `::1`, which the kernel makes IPv6-only, or IPv6-only by its option):
    /// the OS's `ENETUNREACH` (kind `NetworkUnreachable`) would send the caller looking for a
    /// routing fault.
    fn reachable(&self, to: SocketAddr) -> Result<SocketAddr> {
        let SocketAddress::Inet(local) = &self.local else {
            return Ok(to);
        };
        let local = local.socket_addr();
        match (local, to) {
            (SocketAddr::V4(_), SocketAddr::V6(v6)) => match v6.ip().to_ipv4_mapped() {
                Some(ip) => Ok(SocketAddr::new(IpAddr::V4(ip), v6.port())),
                None => Err(unreachable(local, to)),
            },
            // The kernel sends to an IPv4 address as it is from a dual-stack socket.
            (SocketAddr::V6(_), SocketAddr::V4(_)) if self.dual_stack => Ok(to),
            // `::` made IPv6-only reaches no IPv4 peer, in either form.
            (SocketAddr::V6(_), SocketAddr::V6(v6))
                if !self.dual_stack && v6.ip().to_ipv4_mapped().is_some() =>
            {
                Err(unreachable(local, to))
            }
            _ if crate::connect::reaches(local, to) => Ok(to),
            _ => Err(unreachable(local, to)),
        }
    }

    /// Takes a unit of the cooperative budget, then sends with `try_send` (which registers no
    /// wake-up); if the send buffer is full, waits for room, and sends again. The socket is
    /// polled for room with the waker of `send_waiting`, which wakes every send that waits
    /// (tokio's readiness keeps only the last waker): one kept and not polled, or dropped,
    /// leaves none of the others waiting for ever.
    ///
    /// A wait for room that ends at once, followed by a send that still finds none, is taken
    /// for readiness that is stuck: tokio takes an error the socket reports (`EPOLLERR`: an
    /// ICMP error on a connected socket, or anything left on its error queue) for a writing
    /// side closed for good, and from then on every wait for room ends at once. The send then
    /// tries again after [`STUCK_RETRY`] rather than at once, again and again, on a CPU. (A
    /// healthy socket can look the same now and then: readiness left over from an event that
    /// came meanwhile, or another send that took the room first. That send then waits a
    /// millisecond longer than it had to, once.)
    async fn send_or_wait(&self, try_send: impl Fn(&UdpSocket) -> io::Result<usize>) -> Result<()> {
        // A unit of the task's cooperative budget, as tokio's own sends take: a task whose sends
        // never wait (loopback, a fast link) still yields to the other tasks of its thread.
        // Taken before anything is sent, so that yielding here sends nothing.
        tokio::task::coop::consume_budget().await;
        match try_send(&*self.core.io()?) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => {
                return Err(Error::from(self.core.failed(e)));
            }
            Err(_) => {}
        }
        let wait = self.send_waiting.join();
        loop {
            let mut waited = false;
            {
                let mut room = std::pin::pin!(self.core.run(|s, _| {
                    let ready =
                        s.poll_send_ready(&mut Context::from_waker(self.send_waiting.waker()));
                    waited |= ready.is_pending();
                    ready
                }));
                std::future::poll_fn(|cx| {
                    // Noted before the poll: room that frees after it wakes this task. And
                    // outside it, which holds the socket: the waker this replaces may be the
                    // last of a task that waited here before (its pause after a stuck
                    // readiness renewed the others), whose drop may close this socket, and
                    // that close must not find the socket held (it would return with the
                    // port still bound).
                    wait.note(cx.waker());
                    room.as_mut().poll(cx)
                })
                .await?;
            }
            // Sent, and the socket let go of, before the match: a pause below must not hold
            // it (a close meanwhile would wait for it, then return with the port still bound).
            let sent = try_send(&*self.core.io()?);
            match sent {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => {
                    return Err(Error::from(self.core.failed(e)));
                }
                Err(_) if waited => {}
                Err(_) => {
                    let retry = SelectorSleep::new(self.core.selector(), STUCK_RETRY);
                    self.core.until_closed(retry).await?;
                }
            }
        }
    }

    async fn receive(&self) -> Result<Datagram> {
        // A unit of the task's cooperative budget, as tokio's own receives take: a task that
        // finds datagrams queued every time (a flood) still yields to the other tasks of its
        // thread. Taken before anything is received, so that yielding here loses nothing.
        tokio::task::coop::consume_budget().await;
        let socket = self.core.io()?;
        // The receive buffer is kept between receives (a concurrent receive makes its own):
        // a datagram is copied out at its own size, so the buffer is free again at once.
        let mut buffer = std::mem::take(&mut *lock(&self.spare));
        if buffer.capacity() < RECEIVE_BUFFER {
            buffer = BytesMut::with_capacity(RECEIVE_BUFFER);
        }
        // Fast path: a datagram already queued needs no waiting.
        let ready = match self.remote {
            Some(remote) => loop {
                match socket.try_recv_buf_from(&mut buffer) {
                    // Another's, queued before the socket was connected: dropped.
                    Ok((_, from)) if !from_peer(remote, from) => buffer.clear(),
                    other => break other.map(|(size, _)| (size, remote)),
                }
            },
            None => socket.try_recv_buf_from(&mut buffer),
        };
        let (size, from, buffer) = match ready {
            Ok((size, from)) => {
                self.moved();
                (size, from, buffer)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.core.receiver_waits(&self.waiting);
                let waiter = self.wait(socket, buffer)?;
                let received = self.core.until_closed(waiter).await;
                self.moved();
                received?
            }
            Err(e) => {
                self.moved();
                return Err(Error::from(self.core.failed(e)));
            }
        };
        let mut buffer = buffer;
        if size > MAX_DATAGRAM_SIZE_V6 {
            buffer.clear();
            *lock(&self.spare) = buffer;
            return Err(jumbogram(from));
        }
        let datagram = Datagram {
            packet: Bytes::copy_from_slice(&buffer[..size]),
            address: from.into(),
        };
        buffer.clear();
        *lock(&self.spare) = buffer;
        Ok(datagram)
    }

    /// A receive returned (a datagram or an error), or a datagram was sent (the peer's answer
    /// may come at once): the next receive that finds nothing queued is busy polling's cue
    /// again (see `waiting`). A load alone where busy polling is off.
    #[inline]
    fn moved(&self) {
        if self.waiting.load(Ordering::Relaxed) {
            self.waiting.store(false, Ordering::Relaxed);
        }
    }

    /// Leaves a receive that must wait in the socket's keeping (see [`Receives`]).
    ///
    /// It waits on tokio's readiness future, not the poll path: only that future wakes on an
    /// error-only event (EPOLLERR without EPOLLIN), which is how an ICMP error for a connected
    /// UDP socket arrives.
    fn wait(&self, socket: Arc<UdpSocket>, mut buffer: BytesMut) -> Result<Waiter<'_>> {
        let remote = self.remote;
        let waiting: WaitingReceive = Box::pin(async move {
            let received = match remote {
                Some(remote) => loop {
                    match socket.recv_buf_from(&mut buffer).await {
                        Ok((_, from)) if !from_peer(remote, from) => buffer.clear(),
                        other => break other.map(|(size, _)| (size, remote)),
                    }
                },
                None => socket.recv_buf_from(&mut buffer).await,
            };
            (received, buffer)
        });
        let mut receives = lock(&self.receives);
        if receives.closed {
            drop(receives);
            drop(waiting);
            return Err(self.core.closed_error());
        }
        let id = receives.next;
        receives.next += 1;
        receives.waiting.push((id, waiting));
        Ok(Waiter {
            udp: self,
            id: Some(id),
            waker: None,
        })
    }

    /// Closes the socket: the waiting receives let go of it first, so that the close releases
    /// the descriptor before anyone is woken.
    fn close(&self) {
        let waiting = {
            let mut receives = lock(&self.receives);
            receives.closed = true;
            std::mem::take(&mut receives.waiting)
        };
        drop(waiting);
        self.core.close(CloseMode::Graceful);
    }
}

macro_rules! datagram_methods {
    () => {
        /// Sends one datagram.
        ///
        /// Several tasks may send on one socket at once (through an `Arc`): when the send
        /// buffer is full, those that wait for room are all woken as it drains, and each goes
        /// on once it finds room; one kept and not polled, or dropped, holds up no other.
        ///
        /// Once the socket reported an error of its own (`EPOLLERR`: an ICMP error on a
        /// connected socket, or anything on its error queue with `IP_RECVERR` set through
        /// `with_sock_ref`), the OS's readiness no longer tells when room frees up (tokio keeps
        /// the error for good): a send that waits for room then tries again every millisecond,
        /// rather than being woken as the buffer drains.
        ///
        /// # Errors
        ///
        /// [`Error::DatagramTooLarge`]; [`Error::Io`] of kind
        /// [`InvalidInput`](io::ErrorKind::InvalidInput) for an IPv6 address (other than an
        /// IPv4-mapped one) on a socket bound to an IPv4 address (or an IPv4-mapped one, IPv4
        /// in effect), or an IPv4 address (in either form) on a socket bound to an IPv6 address
        /// other than `::` (such as `::1`), for a Unix socket address, and on a connected
        /// socket for an address other than its peer's; and from the OS (for example
        /// [`PermissionDenied`](io::ErrorKind::PermissionDenied) for a broadcast address
        /// without `broadcast(true)`, and `ENOBUFS`, of kind `Uncategorized`, for a datagram
        /// that must go in IP fragments, being larger than the link's MTU lets through whole
        /// (over loopback, an IPv6 payload over 65,488 bytes), when it and what the send
        /// buffer still holds take more than twice the buffer's size: with a
        /// `send_buffer_size` of a few KiB, every send of such a datagram fails so; with one
        /// under the datagram's size, such a send from a busy socket fails so at once, where a
        /// send that finds the buffer full otherwise waits for room, and goes once the buffer
        /// drained); [`Error::Closed`] / [`Error::SelectorClosed`]. A send
        /// that fails did not send its datagram, also one that reports an ICMP error a
        /// connected socket got for an earlier datagram (see [`ConnectedDatagramSocket`]).
        ///
        /// # Cancel safety
        ///
        /// Cancel safe: the datagram is sent whole or not at all.
        pub async fn send(&self, datagram: Datagram) -> Result<()> {
            self.core.send(&datagram).await
        }

        /// Receives one datagram, whole: the buffer is larger than any UDP payload but an
        /// IPv6 jumbogram's (RFC 2675: over [`MAX_DATAGRAM_SIZE_V6`] bytes, on a link whose
        /// MTU passes 65,575 bytes), which is dropped and reported, never returned cut.
        ///
        /// # Errors
        ///
        /// [`Error::Io`] from the OS, and of kind
        /// [`InvalidData`](io::ErrorKind::InvalidData) for a jumbogram, which is dropped (the
        /// socket goes on: receive again for the next datagram); [`Error::Closed`] /
        /// [`Error::SelectorClosed`].
        ///
        /// # Cancel safety
        ///
        /// Cancel safe: a datagram is taken from the socket only when the future completes
        /// with it (a connected socket's receive also takes, and drops, those that others sent
        /// before it was connected: see [`ConnectedDatagramSocket`]).
        pub async fn receive(&self) -> Result<Datagram> {
            self.core.receive().await
        }

        /// The received datagrams as a [`Stream`](futures_core::Stream); errors are items,
        /// and the stream ends when the socket or its selector is closed.
        ///
        /// The stream holds the socket: dropping the socket while the stream lives leaves it
        /// open (its port bound, the stream receiving) until the stream is dropped too, or
        /// the selector is closed.
        pub fn incoming(&self) -> DatagramIncoming {
            DatagramIncoming::new(Arc::clone(&self.core))
        }

        /// The local address (with the port the OS picked for port 0).
        pub fn local_address(&self) -> SocketAddress {
            self.core.local.clone()
        }

        /// Closes the socket: pending operations fail with [`Error::Closed`] and the
        /// descriptor is released at once, also while a `receive` (or an `incoming()` stream)
        /// waits in a task that has not run since. Idempotent.
        pub fn close(&self) {
            self.core.close();
        }

        /// Runs `f` with a [`socket2::SockRef`] to the open socket, to read or set options.
        ///
        /// `f` holds the socket while it runs: a `close` meanwhile (inside `f`, or on another
        /// thread) waits up to 50 ms for `f` to return, after which the descriptor (and the
        /// port) goes as `f` returns, no longer before the close returns.
        ///
        /// # Errors
        ///
        /// [`Error::Closed`] (or [`Error::SelectorClosed`]) when the socket is closed; the
        /// error `f` returns, as [`Error::Io`].
        pub fn with_sock_ref<R>(
            &self,
            f: impl FnOnce(socket2::SockRef<'_>) -> io::Result<R>,
        ) -> Result<R> {
            self.core.core.with_sock_ref(f)
        }

        /// Whether the socket is closed.
        pub fn is_closed(&self) -> bool {
            self.core.core.is_closed()
        }

        /// Waits until the socket is closed.
        ///
        /// # Cancel safety
        ///
        /// Cancel safe: dropping the future changes nothing.
        pub async fn await_closed(&self) {
            self.core.core.await_closed().await;
        }
    };
}

/// A UDP socket bound to a local address, sending to and receiving from anyone.
///
/// A socket bound to an IPv4 address sends a datagram addressed to an IPv4 peer in its
/// IPv6-mapped form (`[::ffff:a.b.c.d]:p`, as a socket bound to `::` reports its IPv4 peers)
/// to `a.b.c.d:p`.
///
/// A socket bound to an unspecified address (`0.0.0.0`, `::`) sends each datagram from the
/// address the OS picks for the route to its peer, which need not be the address the peer sent
/// to: a client that sent to `127.0.0.2` gets its answer from `127.0.0.1`, and a client whose
/// socket is connected (as a [`ConnectedDatagramSocket`] is) drops it. A server whose host has
/// several addresses that clients use binds a socket to each.
///
/// Every method takes `&self`: share it in an [`Arc`] to send and receive from different
/// tasks.
///
/// # Examples
///
/// ```no_run
/// use net_sockets::{a_socket, SelectorManager};
///
/// # #[tokio::main] async fn main() -> net_sockets::Result<()> {
/// let selector = SelectorManager::new();
/// let socket = a_socket(&selector).udp().bind(("127.0.0.1", 9003)).await?;
/// loop {
///     let datagram = socket.receive().await?;
///     socket.send(datagram).await?; // echo
/// }
/// # }
/// ```
pub struct BoundDatagramSocket {
    core: Arc<UdpCore>,
}

impl BoundDatagramSocket {
    pub(crate) fn bind(
        selector: &Arc<SelectorInner>,
        address: SocketAddress,
        options: &SocketOptions,
    ) -> Result<BoundDatagramSocket> {
        let SocketAddress::Inet(local) = address else {
            return Err(unix_unsupported());
        };
        Ok(BoundDatagramSocket {
            core: UdpCore::new(selector, options, local.socket_addr(), None)?,
        })
    }

    /// Adopts a bound `std` UDP socket (from a supervisor or another library).
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
    /// [`Error::Io`] when it cannot be registered, of kind
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) when the descriptor the wrapper holds is
    /// not a UDP socket, when the socket is not bound (it would have no port to receive on
    /// until its first send), or when it is connected (it would receive from its peer alone:
    /// adopt it with [`ConnectedDatagramSocket::from_std`]); [`Error::SelectorClosed`].
    pub fn from_std(
        selector: &SelectorManager,
        socket: std::net::UdpSocket,
    ) -> Result<BoundDatagramSocket> {
        check_kind(&SockRef::from(&socket), Type::DGRAM, INET, "UDP socket")?;
        let refused = |why: &str| {
            Err(Error::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the UDP socket to adopt as a bound one {why}"),
            )))
        };
        if socket.local_addr()?.port() == 0 {
            return refused("is not bound");
        }
        if let Ok(peer) = socket.peer_addr() {
            return refused(&format!(
                "is connected to {peer}: `ConnectedDatagramSocket::from_std` adopts it"
            ));
        }
        Ok(BoundDatagramSocket {
            core: UdpCore::adopt(selector.inner(), socket, None)?,
        })
    }

    datagram_methods!();
}

/// A UDP socket connected to one peer: it sends only there and receives only from there (also
/// when others sent to its port before it was connected, to a socket adopted with
/// [`from_std`](Self::from_std) or bound to a fixed port by `connect_from`: the kernel keeps
/// those datagrams, and `receive` drops them).
///
/// `send` takes a datagram addressed to the peer as [`remote_address`](Self::remote_address)
/// reports it or, for an IPv4 peer, in the other form (`a.b.c.d:p` and `[::ffff:a.b.c.d]:p`
/// are the same peer), or for an IPv6 peer with what the kernel does not keep as the peer's:
/// a flow label, or a scope id on an address that needs none (not link-local: `[::1%1]:p` is
/// `[::1]:p`), as the address it was connected to may have; any other address is refused with
/// [`Error::Io`] of kind [`InvalidInput`](io::ErrorKind::InvalidInput).
///
/// An ICMP "port unreachable" for an earlier datagram surfaces as an [`Error::Io`] of kind
/// [`ConnectionRefused`](io::ErrorKind::ConnectionRefused) on the next `send` or `receive`;
/// the socket stays usable. The `send` that reports it has not sent its own datagram (a `send`
/// that fails never has): send that one again for it to go out.
///
/// # Examples
///
/// ```no_run
/// use net_sockets::{a_socket, Datagram, SelectorManager};
///
/// # #[tokio::main] async fn main() -> net_sockets::Result<()> {
/// let selector = SelectorManager::new();
/// let socket = a_socket(&selector).udp().connect(("127.0.0.1", 9003)).await?;
/// socket.send(Datagram::new("ping", socket.remote_address())?).await?;
/// let reply = socket.receive().await?;
/// # let _ = reply; Ok(()) }
/// ```
pub struct ConnectedDatagramSocket {
    core: Arc<UdpCore>,
}

impl ConnectedDatagramSocket {
    pub(crate) fn connect(
        selector: &Arc<SelectorInner>,
        remote: SocketAddress,
        local: Option<SocketAddress>,
        options: &SocketOptions,
    ) -> Result<ConnectedDatagramSocket> {
        let SocketAddress::Inet(remote) = remote else {
            return Err(unix_unsupported());
        };
        let remote = remote.socket_addr();
        if remote.port() == 0 {
            // The kernel takes the connect but leaves the socket without a peer: its read-back
            // would fail with `ENOTCONN`, a kind that reads as a closed socket.
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a UDP socket cannot be connected to port 0 ({remote}): nothing is there"),
            )));
        }
        let local = match local {
            Some(SocketAddress::Inet(local)) => {
                let local = local.socket_addr();
                // A dual-stack socket reaches an IPv4 peer through its IPv4-mapped form; no
                // other reaches the other family.
                if !(dual_stack(local) && remote.is_ipv4()) {
                    crate::connect::check_family(local, remote)?;
                }
                local
            }
            Some(SocketAddress::Unix(_)) => return Err(unix_unsupported()),
            None => {
                let ip = if remote.is_ipv6() {
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                } else {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                };
                SocketAddr::new(ip, 0)
            }
        };
        Ok(ConnectedDatagramSocket {
            core: UdpCore::new(selector, options, local, Some(remote))?,
        })
    }

    /// Adopts a connected `std` UDP socket (from a supervisor or another library).
    ///
    /// Its close-on-exec flag is left as it is, as by
    /// [`BoundDatagramSocket::from_std`].
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when it cannot be registered, of kind
    /// [`NotConnected`](io::ErrorKind::NotConnected) when it has no peer, of kind
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) when the descriptor the wrapper holds is
    /// not a UDP socket; [`Error::SelectorClosed`].
    pub fn from_std(
        selector: &SelectorManager,
        socket: std::net::UdpSocket,
    ) -> Result<ConnectedDatagramSocket> {
        check_kind(&SockRef::from(&socket), Type::DGRAM, INET, "UDP socket")?;
        let remote = socket.peer_addr()?;
        Ok(ConnectedDatagramSocket {
            core: UdpCore::adopt(selector.inner(), socket, Some(remote))?,
        })
    }

    datagram_methods!();

    /// The peer's address, as the kernel connected the socket: for a `remote` given as the
    /// unspecified address (`0.0.0.0:p`), this host's (`127.0.0.1:p`), where replies come from.
    pub fn remote_address(&self) -> SocketAddress {
        self.core
            .remote
            .map(SocketAddress::from)
            .unwrap_or_else(|| self.core.local.clone())
    }
}

fn unix_unsupported() -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::Unsupported,
        "Unix datagram sockets are not supported",
    ))
}

impl fmt::Debug for BoundDatagramSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundDatagramSocket")
            .field("local", &self.core.local)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl fmt::Debug for ConnectedDatagramSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectedDatagramSocket")
            .field("local", &self.core.local)
            .field("remote", &self.core.remote)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// The stream of received datagrams, from `incoming()` on a datagram socket.
#[must_use = "streams do nothing unless polled"]
pub struct DatagramIncoming {
    inner: Repeat<UdpCore, Datagram>,
}

impl DatagramIncoming {
    fn new(core: Arc<UdpCore>) -> Self {
        DatagramIncoming {
            inner: Repeat::new(core, |core| Box::pin(async move { core.receive().await })),
        }
    }
}

impl fmt::Debug for DatagramIncoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramIncoming")
            .field("local", &self.inner.core().local)
            .finish_non_exhaustive()
    }
}

impl futures_core::Stream for DatagramIncoming {
    type Item = Result<Datagram>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().inner.poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::a_socket;

    /// The peer of a connected socket as `send` takes it: a flow label never counts, a scope id
    /// only on an address that needs one (another link's `fe80::1` is another peer).
    #[test]
    fn same_peer_ignores_what_the_kernel_does_not_keep() {
        let v6 = |ip: &str, port, flow, scope| {
            SocketAddr::V6(std::net::SocketAddrV6::new(
                ip.parse().unwrap(),
                port,
                flow,
                scope,
            ))
        };
        let v4: SocketAddr = "127.0.0.1:5".parse().unwrap();
        assert!(same_peer(v4, v6("::ffff:127.0.0.1", 5, 0, 0)));
        assert!(same_peer(v6("::ffff:127.0.0.1", 5, 0, 0), v4));
        assert!(!same_peer(v4, v6("::ffff:127.0.0.1", 6, 0, 0)));
        assert!(same_peer(v6("::1", 5, 0, 0), v6("::1", 5, 7, 0)));
        assert!(same_peer(v6("::1", 5, 0, 0), v6("::1", 5, 0, 1)));
        assert!(!same_peer(v6("::1", 5, 0, 0), v6("::2", 5, 0, 0)));
        assert!(same_peer(v6("fe80::1", 5, 0, 2), v6("fe80::1", 5, 9, 2)));
        assert!(!same_peer(v6("fe80::1", 5, 0, 2), v6("fe80::1", 5, 0, 3)));
        assert!(!same_peer(v6("fe80::1", 5, 0, 2), v6("fe80::1", 5, 0, 0)));
        assert!(!same_peer(v6("ff02::1", 5, 0, 2), v6("ff02::1", 5, 0, 3)));
        assert!(same_peer(v6("ff0e::1", 5, 0, 0), v6("ff0e::1", 5, 0, 3)));
    }

    /// A socket connected to a port of 127.0.0.93 nobody is bound to (the same port held on
    /// 127.0.0.1 by the returned `std` socket while it lives, so that no bind to port 0 gets
    /// it), and that address.
    async fn connected_to_nobody(
        selector: &SelectorManager,
    ) -> (ConnectedDatagramSocket, SocketAddr, std::net::UdpSocket) {
        let reserved = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let gone = SocketAddr::from(([127, 0, 0, 93], reserved.local_addr().unwrap().port()));
        let socket = a_socket(selector).udp().connect(gone).await.unwrap();
        (socket, gone, reserved)
    }

    /// Awaits `future`, failing the test after 20 s.
    async fn within<T>(future: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(20), future)
            .await
            .expect("hung")
    }

    /// Receives waiting side by side on one socket (two tasks sharing it through an `Arc`) each
    /// keep their own place: both are woken and both get a datagram. Had they shared one (the
    /// same id), the second's poll would drive the first's receive with its own waker, and the
    /// first task, never woken again, would wait for ever.
    #[tokio::test]
    async fn receives_waiting_side_by_side_each_get_a_datagram() {
        let selector = SelectorManager::new();
        let socket = Arc::new(
            a_socket(&selector)
                .udp()
                .bind(("127.0.0.1", 0))
                .await
                .unwrap(),
        );
        let receives: Vec<_> = (0..2)
            .map(|_| {
                let socket = Arc::clone(&socket);
                tokio::spawn(async move { socket.receive().await })
            })
            .collect();
        // Each task puts its receive in the socket's keeping and polls it in one turn.
        while lock(&socket.core.receives).waiting.len() < 2 {
            tokio::task::yield_now().await;
        }
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_address().port().unwrap();
        for packet in ["one", "two"] {
            peer.send_to(packet.as_bytes(), ("127.0.0.1", port))
                .unwrap();
        }
        let mut received = Vec::new();
        for receive in receives {
            let datagram = tokio::time::timeout(Duration::from_secs(20), receive)
                .await
                .expect("a receive waiting beside another was never woken")
                .unwrap()
                .unwrap();
            received.push(datagram.packet);
        }
        received.sort();
        assert_eq!(received, ["one", "two"]);
    }

    /// The receive buffer (64 KiB) is kept between receives, not made again for each: a
    /// datagram is copied out at its own size, and the same buffer waits for the next.
    #[tokio::test]
    async fn the_receive_buffer_is_kept_between_receives() {
        let selector = SelectorManager::new();
        let socket = a_socket(&selector)
            .udp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_address().port().unwrap();
        let mut buffers = Vec::new();
        for packet in ["one", "two", "three"] {
            peer.send_to(packet.as_bytes(), ("127.0.0.1", port))
                .unwrap();
            let datagram = within(socket.receive()).await.unwrap();
            assert_eq!(datagram.packet, packet);
            let spare = lock(&socket.core.spare);
            assert!(spare.capacity() >= RECEIVE_BUFFER && spare.is_empty());
            buffers.push(spare.as_ptr());
        }
        assert!(
            buffers.iter().all(|each| *each == buffers[0]),
            "a buffer made for each receive: {buffers:?}"
        );
    }

    /// Sends a datagram to nobody and waits until the ICMP error for it is pending on `socket`
    /// (seen on a duplicate of its descriptor, registered with the same runtime, without
    /// taking it).
    async fn draw_icmp_error(socket: &ConnectedDatagramSocket, gone: SocketAddr) {
        within(socket.send(Datagram::new("anyone?", gone).unwrap()))
            .await
            .unwrap();
        let duplicate = socket.with_sock_ref(|s| s.try_clone()).unwrap();
        let duplicate = UdpSocket::from_std(duplicate.into()).unwrap();
        let ready = within(duplicate.ready(tokio::io::Interest::ERROR))
            .await
            .unwrap();
        assert!(ready.is_error(), "{ready:?}");
    }

    /// A receive that waits when an error of its socket comes (an ICMP "port unreachable"),
    /// polled after the selector was marked closed and before its close reached this socket,
    /// reports the close, `SelectorClosed`, as the selector's close promises of every pending
    /// operation (and as a send that waited for room, and a stream's reads, do), not the error
    /// the socket happened to hold.
    #[tokio::test]
    async fn a_waiting_receive_failing_as_the_selector_closes_reports_the_close() {
        let selector = SelectorManager::new();
        let (socket, gone, _reserved) = connected_to_nobody(&selector).await;
        let mut receive = pin!(socket.receive());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(receive.as_mut().poll(&mut cx).is_pending());
        draw_icmp_error(&socket, gone).await;
        // The selector is closing: marked closed, this socket not closed yet.
        selector.inner().mark_closed();
        let received = receive.as_mut().poll(&mut cx);
        assert!(
            matches!(received, Poll::Ready(Err(Error::SelectorClosed))),
            "{received:?}"
        );
    }

    /// The same for a receive that finds the error without waiting (its socket readable, as
    /// after a datagram taken earlier).
    #[tokio::test]
    async fn a_receive_failing_at_once_as_the_selector_closes_reports_the_close() {
        let selector = SelectorManager::new();
        let (socket, gone, _reserved) = connected_to_nobody(&selector).await;
        // A receive that took an error leaves the socket readable in tokio's eyes (only a
        // receive that finds nothing clears that): the next one tries at once.
        draw_icmp_error(&socket, gone).await;
        let first = within(socket.receive()).await;
        assert!(
            matches!(&first, Err(Error::Io(e)) if e.kind() == io::ErrorKind::ConnectionRefused),
            "{first:?}"
        );
        draw_icmp_error(&socket, gone).await;
        selector.inner().mark_closed();
        let received = within(socket.receive()).await;
        assert!(
            matches!(received, Err(Error::SelectorClosed)),
            "{received:?}"
        );
    }

    /// The same for a send, which finds its socket's error before it sends.
    #[tokio::test]
    async fn a_send_failing_as_the_selector_closes_reports_the_close() {
        let selector = SelectorManager::new();
        let (socket, gone, _reserved) = connected_to_nobody(&selector).await;
        draw_icmp_error(&socket, gone).await;
        selector.inner().mark_closed();
        let sent = within(socket.send(Datagram::new("again?", gone).unwrap())).await;
        assert!(matches!(sent, Err(Error::SelectorClosed)), "{sent:?}");
    }
}
