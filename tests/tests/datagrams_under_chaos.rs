//! UDP sockets shared by several tasks under seeded chaos: bound and connected (made by the
//! builder or adopted from `std`), on 127.0.0.1, 127.0.0.2, `::1`, the dual-stack `::` and the
//! IPv4-mapped `::ffff:127.0.0.2`, on a selector of the test's runtime (busy polling or not)
//! or with a runtime of its own. (The library has no Unix datagram sockets: a bind to a Unix
//! address is `Unsupported`, checked in `documented_errors_and_panics`.)
//!
//! - Randomised but bounded (a seed per round, printed on failure; `DCHAOS_SEED` and
//!   `DCHAOS_ROUNDS` choose the rounds, a round takes some 50 ms; a seed fixes a round's plan,
//!   not how its tasks interleave): each socket has one to three sending tasks and none, one
//!   or several receiving tasks (`receive`, or an `incoming()` stream). Sends are of random
//!   sizes (0, 1, a few bytes, around the receive buffer the round set with
//!   `receive_buffer_size`, the largest UDP payloads and over), to random peers (of the
//!   socket's family, in either form for IPv4, now and then of the other family, or a port
//!   nobody is bound to: ICMP refusals), and receives and sends are cancelled after a random
//!   number of polls. Once per round a task closes a socket mid-run, or the selector, or a
//!   socket then the selector, or nothing, while another binds and connects new sockets.
//! - Checked: every datagram received was sent (its send returned `Ok`), whole (its length and
//!   checksum, as it was sent: the receive buffer is larger than any UDP payload, also one
//!   larger than the socket's `SO_RCVBUF`), from the socket that sent it, once; a socket's
//!   datagrams arrive in the order each of its tasks sent them where one task receives them
//!   (loopback drops when a receive buffer is full, but never reorders: delivery is counted,
//!   not required); every error is the documented one: `DatagramTooLarge { size }` exactly for
//!   a payload over its family's limit, `InvalidInput` for a peer the socket cannot reach,
//!   `ConnectionRefused` only on a connected socket whose peer is gone, `Closed` /
//!   `SelectorClosed` only after that close, and from then on always (and a bind on the
//!   closed selector `SelectorClosed`); no task hangs or panics; no descriptor is left behind.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_core::Stream;
use net_sockets::{
    BoundDatagramSocket, ConnectedDatagramSocket, Datagram, DatagramIncoming, Error,
    MAX_DATAGRAM_SIZE, MAX_DATAGRAM_SIZE_V6, SelectorManager, SocketAddress, a_socket,
};
use net_tests::rng::Rng;

/// The header of a datagram of [`HEADER`] bytes or more: sender, task, sequence, length, and
/// a checksum of the rest.
const HEADER: usize = 20;

/// Who sent a datagram: the socket (its index in the round), its task, the task's sequence.
type Key = (u32, u32, u32);

/// FNV-1a, 32 bits.
fn checksum(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

/// The datagram of `len` bytes that `key` stands for: under [`HEADER`] bytes, `len` copies of a
/// byte made from `len` (a cut shows); else the header, then bytes made from the key.
fn make_packet(key: Key, len: usize) -> Bytes {
    if len < HEADER {
        return Bytes::from(vec![0xA0 ^ len as u8; len]);
    }
    let (node, task, seq) = key;
    let body: Vec<u8> = (0..len - HEADER)
        .map(|i| ((i as u32).wrapping_mul(13) ^ seq.wrapping_mul(7) ^ node ^ (task << 4)) as u8)
        .collect();
    let mut packet = Vec::with_capacity(len);
    for word in [node, task, seq, len as u32, checksum(&body)] {
        packet.extend_from_slice(&word.to_be_bytes());
    }
    packet.extend_from_slice(&body);
    Bytes::from(packet)
}

/// The key of a received datagram of [`HEADER`] bytes or more, once it is checked whole; `None`
/// for a shorter one, checked too.
fn parse(packet: &[u8]) -> Result<Option<Key>, String> {
    if packet.len() < HEADER {
        return if packet.iter().all(|b| *b == 0xA0 ^ packet.len() as u8) {
            Ok(None)
        } else {
            Err(format!("a short datagram not sent as it came: {packet:?}"))
        };
    }
    let word = |at: usize| u32::from_be_bytes(packet[at * 4..at * 4 + 4].try_into().unwrap());
    let key = (word(0), word(1), word(2));
    if word(3) as usize != packet.len() {
        return Err(format!(
            "{key:?}: {} bytes received of {} sent (cut or mixed)",
            packet.len(),
            word(3)
        ));
    }
    if checksum(&packet[HEADER..]) != word(4) || packet[..] != make_packet(key, packet.len())[..] {
        return Err(format!("{key:?}: the bytes are not those sent"));
    }
    Ok(Some(key))
}

/// One socket of a round.
enum Sock {
    Bound(BoundDatagramSocket),
    Connected(ConnectedDatagramSocket),
}

impl Sock {
    async fn send(&self, datagram: Datagram) -> net_sockets::Result<()> {
        match self {
            Sock::Bound(s) => s.send(datagram).await,
            Sock::Connected(s) => s.send(datagram).await,
        }
    }

    async fn receive(&self) -> net_sockets::Result<Datagram> {
        match self {
            Sock::Bound(s) => s.receive().await,
            Sock::Connected(s) => s.receive().await,
        }
    }

    fn incoming(&self) -> DatagramIncoming {
        match self {
            Sock::Bound(s) => s.incoming(),
            Sock::Connected(s) => s.incoming(),
        }
    }

    fn close(&self) {
        match self {
            Sock::Bound(s) => s.close(),
            Sock::Connected(s) => s.close(),
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Sock::Bound(s) => s.is_closed(),
            Sock::Connected(s) => s.is_closed(),
        }
    }

    async fn await_closed(&self) {
        match self {
            Sock::Bound(s) => s.await_closed().await,
            Sock::Connected(s) => s.await_closed().await,
        }
    }

    fn receive_buffer(&self) -> net_sockets::Result<usize> {
        match self {
            Sock::Bound(s) => s.with_sock_ref(|s| s.recv_buffer_size()),
            Sock::Connected(s) => s.with_sock_ref(|s| s.recv_buffer_size()),
        }
    }

    fn local(&self) -> SocketAddr {
        let address = match self {
            Sock::Bound(s) => s.local_address(),
            Sock::Connected(s) => s.local_address(),
        };
        match address {
            SocketAddress::Inet(inet) => inet.socket_addr(),
            SocketAddress::Unix(_) => unreachable!(),
        }
    }
}

/// How a socket's datagrams are received.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Receivers {
    None,
    /// One task calling `receive`: the order of each sender's datagrams is checked.
    One,
    /// One task reading an `incoming()` stream: the order is checked too.
    Stream,
    /// Several tasks calling `receive` at once.
    Several(usize),
}

/// A socket of a round and what is known of it.
struct Node {
    socket: Sock,
    local: SocketAddr,
    /// The family of the peers it reaches: `None` for both (dual-stack `::`).
    v6: Option<bool>,
    /// For a connected socket, its peer: another node, or the port nobody is bound to.
    peer: Option<Peer>,
    receivers: Receivers,
    /// Set before its own close.
    closed: AtomicBool,
}

#[derive(Clone, Copy, Debug)]
enum Peer {
    Node(usize),
    Nobody,
}

/// What a round's tasks record.
#[derive(Default)]
struct Records {
    /// Datagrams whose send returned `Ok`.
    sent: HashSet<Key>,
    /// Datagrams whose send failed (or was cancelled before it completed).
    unsent: HashSet<Key>,
    /// Datagrams received with a header.
    received: usize,
    /// Short datagrams received.
    short: usize,
    /// The errors seen, by their kind.
    errors: HashMap<String, usize>,
    problems: Vec<String>,
}

struct Round {
    nodes: Vec<Node>,
    nobody: SocketAddr,
    selector: SelectorManager,
    /// Set before the selector's close.
    selector_closed: AtomicBool,
    records: Mutex<Records>,
    /// Set once every sender is done.
    stop: AtomicBool,
    /// The sockets that the binding task made (and sent an empty datagram from).
    strangers: Mutex<HashSet<SocketAddr>>,
    rcvbuf: Option<usize>,
}

impl Round {
    fn count(&self, e: &Error) {
        let name = match e {
            Error::Io(io) => format!("{:?}", io.kind()),
            Error::DatagramTooLarge { .. } => "DatagramTooLarge".to_owned(),
            other => format!("{other:?}"),
        };
        *self.records.lock().unwrap().errors.entry(name).or_default() += 1;
    }

    fn problem(&self, what: String) {
        self.records.lock().unwrap().problems.push(what);
    }

    /// Whether `e` is the close error `node` may report now.
    fn close_error(&self, node: usize, e: &Error) -> bool {
        let own = self.nodes[node].closed.load(Ordering::SeqCst);
        let selector = self.selector_closed.load(Ordering::SeqCst);
        match e {
            Error::Closed => own,
            Error::SelectorClosed => selector,
            _ => false,
        }
    }

    /// Whether `node` may be told of an ICMP refusal: a connected socket whose peer is nobody
    /// or a socket that was closed.
    fn may_be_refused(&self, node: usize) -> bool {
        match self.nodes[node].peer {
            Some(Peer::Nobody) => true,
            Some(Peer::Node(peer)) => {
                self.nodes[peer].closed.load(Ordering::SeqCst)
                    || self.selector_closed.load(Ordering::SeqCst)
            }
            None => false,
        }
    }

    /// Checks an error of `node`'s `what`; `true` when it is its close (the task stops).
    fn check_error(&self, node: usize, what: &str, e: &Error) -> bool {
        if self.close_error(node, e) {
            return true;
        }
        if let Error::Io(io) = e
            && io.kind() == ErrorKind::ConnectionRefused
            && self.may_be_refused(node)
        {
            return false;
        }
        self.problem(format!("node {node}: {what} failed with {e:?}"));
        // Stop this task: a wrong close error would repeat.
        matches!(e, Error::Closed | Error::SelectorClosed)
    }

    /// Checks a received datagram.
    fn check_received(&self, node: usize, datagram: &Datagram, log: &mut Vec<Key>) {
        let SocketAddress::Inet(from) = &datagram.address else {
            self.problem(format!(
                "node {node}: a datagram from {:?}",
                datagram.address
            ));
            return;
        };
        let from = from.socket_addr();
        match parse(&datagram.packet) {
            Err(e) => self.problem(format!("node {node}: {e}")),
            Ok(None) => {
                let known = self.nodes.iter().any(|n| same_socket(n.local, from))
                    || self
                        .strangers
                        .lock()
                        .unwrap()
                        .iter()
                        .any(|s| same_socket(*s, from));
                if !known {
                    self.problem(format!(
                        "node {node}: a short datagram from a stranger {from}"
                    ));
                }
                self.records.lock().unwrap().short += 1;
            }
            Ok(Some(key)) => {
                let sender = key.0 as usize;
                if sender >= self.nodes.len() || !same_socket(self.nodes[sender].local, from) {
                    self.problem(format!("node {node}: {key:?} came from {from}"));
                }
                log.push(key);
            }
        }
    }
}

/// Whether `from` is the socket bound to `local` (written in either family's form; `::`
/// matches any address).
fn same_socket(local: SocketAddr, from: SocketAddr) -> bool {
    local.port() == from.port()
        && (local.ip().is_unspecified() || local.ip().to_canonical() == from.ip().to_canonical())
}

/// `to` as `from` sends to it: a dual-stack node (bound to `::`) as `::1`, or as 127.0.0.1
/// from an IPv4 node.
fn reachable_form(from: &Node, to: SocketAddr) -> SocketAddr {
    if !to.ip().is_unspecified() {
        return to;
    }
    match from.v6 {
        Some(false) => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), to.port()),
        _ => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), to.port()),
    }
}

/// Polls `future` at most `polls` times, yielding in between; `None` if it did not complete
/// (it is then dropped: cancelled).
async fn polled<F: Future>(future: F, polls: u64) -> Option<F::Output> {
    let mut future = pin!(future);
    for _ in 0..polls {
        let poll = std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
        if let Poll::Ready(output) = poll {
            return Some(output);
        }
        tokio::task::yield_now().await;
    }
    None
}

/// The next item of `stream`.
async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}

/// A size for a datagram: small, around the receive buffer, around the limits, or over.
fn size(rng: &mut Rng, rcvbuf: Option<usize>) -> usize {
    match rng.below(12) {
        0 => rng.below(2) as usize,
        1 => rng.below(HEADER as u64 + 2) as usize,
        2 => {
            let around = rcvbuf.unwrap_or(8192);
            around - 64 + rng.below(128) as usize
        }
        3 => match rng.below(4) {
            0 => MAX_DATAGRAM_SIZE,
            1 => MAX_DATAGRAM_SIZE + 1,
            2 => MAX_DATAGRAM_SIZE_V6,
            _ => MAX_DATAGRAM_SIZE_V6 + 1,
        },
        4 if rng.chance(4) => 100_000,
        5 => 1000 + rng.below(20_000) as usize,
        _ => HEADER + rng.below(400) as usize,
    }
}

/// One sending task of `node`: `count` datagrams.
async fn sender(round: Arc<Round>, node: usize, task: u32, count: u32, seed: u64) {
    let mut rng = Rng::new(seed);
    let me = &round.nodes[node];
    let seq = AtomicU32::new(0);
    for _ in 0..count {
        let seq = seq.fetch_add(1, Ordering::Relaxed);
        let key = (node as u32, task, seq);
        let len = size(&mut rng, round.rcvbuf);
        // The peer: a connected socket's own; else another node, now and then one of the
        // other family or nobody.
        let to: SocketAddr = match me.peer {
            Some(Peer::Node(peer)) => round.nodes[peer].local,
            Some(Peer::Nobody) => round.nobody,
            None if rng.chance(8) => round.nobody,
            None => {
                let other = rng.below(round.nodes.len() as u64) as usize;
                round.nodes[other].local
            }
        };
        let mut to = reachable_form(me, to);
        // An IPv4 peer now and then in its IPv4-mapped form, as a dual-stack socket sees it.
        if let IpAddr::V4(v4) = to.ip()
            && rng.chance(4)
        {
            to = SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), to.port());
        }
        let v4 = to.ip().to_canonical().is_ipv4();
        let reaches = match me.v6 {
            None => true,
            Some(v6) => v4 != v6,
        };
        let limit = if !v4 {
            MAX_DATAGRAM_SIZE_V6
        } else {
            MAX_DATAGRAM_SIZE
        };
        let datagram = Datagram {
            packet: make_packet(key, len),
            address: to.into(),
        };
        let polls = if rng.chance(5) { 1 + rng.below(3) } else { 64 };
        let outcome = polled(me.socket.send(datagram), polls).await;
        let sent = matches!(outcome, Some(Ok(())));
        {
            let mut records = round.records.lock().unwrap();
            if sent {
                records.sent.insert(key);
            } else {
                records.unsent.insert(key);
            }
        }
        if let Some(Err(e)) = &outcome {
            round.count(e);
        }
        match outcome {
            None => {}
            Some(Ok(())) if !reaches || len > limit => {
                round.problem(format!(
                    "node {node}: a send of {len} bytes to {to} went (from {})",
                    me.local
                ));
            }
            Some(Ok(())) => {}
            Some(Err(Error::DatagramTooLarge { size })) if len > limit && size == len => {}
            // Both refusals are typed; the address is looked at first.
            Some(Err(Error::Io(e))) if !reaches && e.kind() == ErrorKind::InvalidInput => {}
            Some(Err(e)) => {
                if len > limit || !reaches {
                    // The typed refusal comes first, whatever else holds.
                    round.problem(format!(
                        "node {node}: a send of {len} bytes to {to} failed with {e:?}"
                    ));
                    if matches!(e, Error::Closed | Error::SelectorClosed) {
                        return;
                    }
                } else if round.check_error(node, "send", &e) {
                    return;
                }
            }
        }
        if rng.chance(4) {
            tokio::task::yield_now().await;
        }
        if rng.chance(20) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// One receiving task of `node` (reading an `incoming()` stream when `stream`), until the
/// senders are done and nothing more comes, or the socket is closed; the keys it received, in
/// order.
async fn receiver(round: Arc<Round>, node: usize, stream: bool, seed: u64) -> Vec<Key> {
    let mut rng = Rng::new(seed);
    let me = &round.nodes[node];
    let mut log = Vec::new();
    let mut incoming = stream.then(|| me.socket.incoming());
    let started = Instant::now();
    loop {
        if started.elapsed() > Duration::from_secs(15) {
            round.problem(format!("node {node}: a receiver still at it after 15 s"));
            return log;
        }
        let stopping = round.stop.load(Ordering::SeqCst);
        let limit = Duration::from_millis(20);
        let outcome = match &mut incoming {
            Some(incoming) => match tokio::time::timeout(limit, next(incoming)).await {
                Err(_) => None,
                Ok(None) => {
                    if !round.nodes[node].closed.load(Ordering::SeqCst)
                        && !round.selector_closed.load(Ordering::SeqCst)
                    {
                        round.problem(format!("node {node}: the stream ended, nothing closed"));
                    }
                    return log;
                }
                Ok(Some(item)) => Some(item),
            },
            None if rng.chance(4) => {
                // Cancelled after a few polls, or completed by then.
                match polled(me.socket.receive(), 1 + rng.below(4)).await {
                    None => continue,
                    some => some,
                }
            }
            None => tokio::time::timeout(limit, me.socket.receive()).await.ok(),
        };
        match outcome {
            None if stopping => return log,
            None => {}
            Some(Ok(datagram)) => round.check_received(node, &datagram, &mut log),
            Some(Err(e)) => {
                round.count(&e);
                if round.check_error(node, "receive", &e) {
                    return log;
                }
            }
        }
    }
}

/// The chaos of a round: closes a socket, or the selector, or a socket then the selector, after
/// a while, or nothing.
async fn chaos(round: Arc<Round>, seed: u64) {
    let mut rng = Rng::new(seed);
    let what = rng.below(5);
    tokio::time::sleep(Duration::from_millis(rng.below(15))).await;
    if what < 2 {
        let node = rng.below(round.nodes.len() as u64) as usize;
        round.nodes[node].closed.store(true, Ordering::SeqCst);
        round.nodes[node].socket.close();
        tokio::time::sleep(Duration::from_millis(rng.below(10))).await;
    }
    if what == 1 || what == 2 {
        round.selector_closed.store(true, Ordering::SeqCst);
        round.selector.close();
    }
}

/// Binds and connects sockets on the round's selector while the round runs (its selector may
/// close meanwhile), each sending a datagram to a node and closing, or just dropped: each bind
/// or connect gives an open socket or, only once the selector's close began, `SelectorClosed`,
/// as does every operation of a socket the close caught.
async fn binder(round: Arc<Round>, seed: u64) {
    let mut rng = Rng::new(seed);
    let to = round.nodes[0].local;
    let to = SocketAddr::new(to.ip().to_canonical(), to.port());
    let to = if to.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), to.port())
    } else {
        to
    };
    let local: SocketAddr = if to.is_ipv6() {
        (Ipv6Addr::LOCALHOST, 0).into()
    } else {
        (Ipv4Addr::LOCALHOST, 0).into()
    };
    let closed = |e: &Error| {
        matches!(e, Error::SelectorClosed) && round.selector_closed.load(Ordering::SeqCst)
    };
    for _ in 0..20 {
        if round.stop.load(Ordering::SeqCst) {
            return;
        }
        let builder = a_socket(&round.selector).udp();
        let socket = if rng.chance(2) {
            builder.bind(local).await.map(Sock::Bound)
        } else {
            builder.connect_from(to, local).await.map(Sock::Connected)
        };
        match socket {
            Err(e) if closed(&e) => return,
            Err(e) => return round.problem(format!("a bind or connect failed with {e:?}")),
            Ok(socket) => {
                // Empty: the node checks that it came from one of these.
                let from = socket.local();
                round.strangers.lock().unwrap().insert(from);
                let datagram = Datagram::new(Bytes::new(), to).unwrap();
                match socket.send(datagram).await {
                    Ok(()) => {}
                    Err(e) if closed(&e) => return,
                    Err(e) => return round.problem(format!("a new socket's send: {e:?}")),
                }
                if rng.chance(2) {
                    socket.close();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.below(3))).await;
    }
}

/// A UDP socket of the kind the seed picks.
async fn make_node(
    rng: &mut Rng,
    selector: &SelectorManager,
    ipv6: bool,
    rcvbuf: Option<usize>,
    peers: &[(SocketAddr, Option<bool>)],
    nobody: SocketAddr,
) -> Node {
    let mut builder = a_socket(selector).udp();
    if let Some(size) = rcvbuf {
        builder = builder.receive_buffer_size(size);
    }
    let receivers = match rng.below(5) {
        0 => Receivers::None,
        1 => Receivers::One,
        2 => Receivers::Stream,
        _ => Receivers::Several(2 + rng.below(2) as usize),
    };
    // A connected socket, to a bound node (or to nobody), once there are some.
    let bound: Vec<usize> = (0..peers.len()).filter(|&i| peers[i].1.is_some()).collect();
    if !bound.is_empty() && rng.chance(3) {
        let peer = if rng.chance(4) {
            Peer::Nobody
        } else {
            Peer::Node(bound[rng.below(bound.len() as u64) as usize])
        };
        let remote = match peer {
            Peer::Node(i) => peers[i].0,
            Peer::Nobody => nobody,
        };
        // An IPv4 peer also from a dual-stack socket (bound to `::`), through its mapped form.
        let mapped = remote.ip().to_canonical().is_ipv4() && remote.is_ipv6();
        let dual_stack = ipv6 && remote.is_ipv4() && rng.chance(3);
        let local: SocketAddr = if dual_stack {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        } else if mapped {
            // To an IPv4 peer written in its mapped form: from an IPv4-mapped address too.
            (Ipv4Addr::LOCALHOST.to_ipv6_mapped(), 0).into()
        } else if remote.is_ipv6() {
            (Ipv6Addr::LOCALHOST, 0).into()
        } else {
            ([127, 0, 0, 1 + rng.below(2) as u8], 0).into()
        };
        let socket = if rng.chance(4) {
            // Adopted from `std`.
            let socket = std::net::UdpSocket::bind(local).expect("bind a std UDP socket");
            socket.connect(remote).expect("connect a std UDP socket");
            ConnectedDatagramSocket::from_std(selector, socket).expect("adopt a UDP socket")
        } else {
            builder
                .connect_from(remote, local)
                .await
                .expect("connect a UDP socket")
        };
        let socket = Sock::Connected(socket);
        return Node {
            local: socket.local(),
            socket,
            v6: (!dual_stack).then_some(remote.is_ipv6() && !mapped),
            peer: Some(peer),
            receivers,
            closed: AtomicBool::new(false),
        };
    }
    let (ip, v6): (IpAddr, Option<bool>) = match rng.below(if ipv6 { 7 } else { 2 }) {
        0 => (Ipv4Addr::LOCALHOST.into(), Some(false)),
        1 => (Ipv4Addr::new(127, 0, 0, 2).into(), Some(false)),
        2 | 3 => (Ipv6Addr::LOCALHOST.into(), Some(true)),
        // IPv4 in effect.
        4 => (
            Ipv4Addr::new(127, 0, 0, 2).to_ipv6_mapped().into(),
            Some(false),
        ),
        _ => (Ipv6Addr::UNSPECIFIED.into(), None),
    };
    let socket = if rng.chance(4) {
        // Adopted from `std`.
        let socket = std::net::UdpSocket::bind((ip, 0)).expect("bind a std UDP socket");
        BoundDatagramSocket::from_std(selector, socket).expect("adopt a UDP socket")
    } else {
        builder.bind((ip, 0)).await.expect("bind a UDP socket")
    };
    let socket = Sock::Bound(socket);
    Node {
        local: socket.local(),
        socket,
        v6,
        peer: None,
        receivers,
        closed: AtomicBool::new(false),
    }
}

/// One round; `Err` names the seed and what went wrong.
async fn round(seed: u64, ipv6: bool) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    // The selector: on this runtime, busy polling or not, or with a runtime of its own (the
    // sockets' I/O then runs there, their operations are polled here).
    let selector = match rng.below(4) {
        0 | 1 => SelectorManager::new(),
        2 => SelectorManager::with_busy_poll(Duration::from_micros(200)),
        _ => SelectorManager::builder()
            .worker_threads(1)
            .build()
            .map_err(|e| format!("seed {seed}: a selector's runtime: {e:?}"))?,
    };
    let rcvbuf = match rng.below(3) {
        0 => None,
        1 => Some(4096),
        _ => Some(16_384 + rng.below(65_536) as usize),
    };
    let reserved = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let nobody = SocketAddr::from(([127, 0, 0, 93], reserved.local_addr().unwrap().port()));
    let mut nodes = Vec::new();
    let mut peers: Vec<(SocketAddr, Option<bool>)> = Vec::new();
    for _ in 0..3 + rng.below(4) {
        let node = make_node(&mut rng, &selector, ipv6, rcvbuf, &peers, nobody).await;
        // Only bound nodes are peers of the connected ones (`Some` marks them bound).
        let bound = node.peer.is_none();
        peers.push((node.local, if bound { Some(true) } else { None }));
        nodes.push(node);
    }
    let round = Arc::new(Round {
        nodes,
        nobody,
        selector: selector.clone(),
        selector_closed: AtomicBool::new(false),
        records: Mutex::new(Records::default()),
        stop: AtomicBool::new(false),
        strangers: Mutex::default(),
        rcvbuf,
    });

    let mut receivers = Vec::new();
    for (i, node) in round.nodes.iter().enumerate() {
        let tasks = match node.receivers {
            Receivers::None => 0,
            Receivers::One | Receivers::Stream => 1,
            Receivers::Several(n) => n,
        };
        for _ in 0..tasks {
            let stream = node.receivers == Receivers::Stream;
            let ordered = matches!(node.receivers, Receivers::One | Receivers::Stream);
            let task = tokio::spawn(receiver(Arc::clone(&round), i, stream, rng.below(u64::MAX)));
            receivers.push((i, ordered, task));
        }
    }
    let mut senders = Vec::new();
    for i in 0..round.nodes.len() {
        for task in 0..1 + rng.below(3) as u32 {
            let count = 5 + rng.below(40) as u32;
            senders.push(tokio::spawn(sender(
                Arc::clone(&round),
                i,
                task,
                count,
                rng.below(u64::MAX),
            )));
        }
    }
    let chaos = tokio::spawn(chaos(Arc::clone(&round), rng.below(u64::MAX)));
    let binder = tokio::spawn(binder(Arc::clone(&round), rng.below(u64::MAX)));

    let limit = Duration::from_secs(20);
    let failed = |what: &str| format!("seed {seed}: {what}");
    for task in senders {
        match tokio::time::timeout(limit, task).await {
            Err(_) => return Err(failed("a sender hung")),
            Ok(Err(e)) => return Err(failed(&format!("a sender panicked: {e}"))),
            Ok(Ok(())) => {}
        }
    }
    round.stop.store(true, Ordering::SeqCst);
    tokio::time::timeout(limit, binder)
        .await
        .map_err(|_| failed("the binding task hung"))?
        .map_err(|e| failed(&format!("the binding task panicked: {e}")))?;
    tokio::time::timeout(limit, chaos)
        .await
        .map_err(|_| failed("the chaos task hung"))?
        .map_err(|e| failed(&format!("the chaos task panicked: {e}")))?;
    let mut logs: Vec<(usize, bool, Vec<Key>)> = Vec::new();
    for (node, ordered, task) in receivers {
        match tokio::time::timeout(limit, task).await {
            Err(_) => return Err(failed("a receiver hung")),
            Ok(Err(e)) => return Err(failed(&format!("a receiver panicked: {e}"))),
            Ok(Ok(log)) => logs.push((node, ordered, log)),
        }
    }

    // After a close, every operation fails with that close's error, at once.
    for (i, node) in round.nodes.iter().enumerate() {
        let own = node.closed.load(Ordering::SeqCst);
        let selector = round.selector_closed.load(Ordering::SeqCst);
        if !own && !selector {
            continue;
        }
        let to = match node.peer {
            Some(Peer::Node(peer)) => reachable_form(node, round.nodes[peer].local),
            Some(Peer::Nobody) => nobody,
            None => reachable_form(node, node.local),
        };
        let to = Datagram::new("after", to).unwrap();
        let sent = tokio::time::timeout(limit, node.socket.send(to))
            .await
            .map_err(|_| failed("a send after the close hung"))?;
        let received = tokio::time::timeout(limit, node.socket.receive())
            .await
            .map_err(|_| failed("a receive after the close hung"))?;
        if !node.socket.is_closed() {
            round.problem(format!("node {i}: not closed after its close"));
        }
        tokio::time::timeout(limit, node.socket.await_closed())
            .await
            .map_err(|_| failed("`await_closed` after the close hung"))?;
        let options = node.socket.receive_buffer().err();
        for (what, e) in [
            ("send", sent.err()),
            ("receive", received.err()),
            ("with_sock_ref", options),
        ] {
            match e {
                Some(e) if round.close_error(i, &e) => {}
                other => round.problem(format!("node {i}: a {what} after the close: {other:?}")),
            }
        }
    }

    let mut records = std::mem::take(&mut *round.records.lock().unwrap());
    let mut seen = HashSet::new();
    for (node, ordered, log) in logs {
        let mut last: HashMap<(u32, u32), u32> = HashMap::new();
        for key in &log {
            if !seen.insert(*key) {
                records
                    .problems
                    .push(format!("node {node}: {key:?} received twice"));
            }
            if !records.sent.contains(key) {
                let why = if records.unsent.contains(key) {
                    "whose send failed"
                } else {
                    "never sent"
                };
                records
                    .problems
                    .push(format!("node {node}: {key:?} received, {why}"));
            }
            if ordered
                && let Some(before) = last.insert((key.0, key.1), key.2)
                && before >= key.2
            {
                records
                    .problems
                    .push(format!("node {node}: {key:?} received after seq {before}"));
            }
        }
        records.received += log.len();
    }
    {
        let mut totals = TOTALS.lock().unwrap();
        totals.0 += records.sent.len();
        totals.1 += records.received + records.short;
        for (name, n) in &records.errors {
            *totals
                .2
                .get_or_insert_default()
                .entry(name.clone())
                .or_default() += n;
        }
    }
    selector.close();
    match a_socket(&selector).udp().bind(("127.0.0.1", 0)).await {
        Err(Error::SelectorClosed) => {}
        other => records
            .problems
            .push(format!("a bind on the closed selector: {other:?}")),
    }
    drop(reserved);
    if records.problems.is_empty() {
        Ok(())
    } else {
        Err(failed(&format!("{:#?}", records.problems)))
    }
}

/// Datagrams sent and received, and the errors seen, in all rounds (printed at the end).
static TOTALS: Mutex<Totals> = Mutex::new((0, 0, None));

/// Datagrams sent, datagrams received, errors by kind.
type Totals = (usize, usize, Option<HashMap<String, usize>>);

/// UDP sockets under chaos (`DCHAOS_SEED`, `DCHAOS_ROUNDS` choose the rounds).
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn datagram_sockets_shared_by_tasks_under_chaos_keep_every_datagram_exact() {
    let ipv6 = net_tests::loopback::has_ipv6_loopback();
    net_tests::stress::run_rounds("DCHAOS", 40, Duration::from_secs(5), |seed| {
        round(seed, ipv6)
    })
    .await;
    eprintln!("sent, received, errors: {:?}", TOTALS.lock().unwrap());
}
