//! The state a connection is left in after a failure, compared across transports: plain TCP, a
//! Unix stream socket, and TLS on our server's side and on our client's, through tokio's traits
//! (`into_stream`) and through the Ktor-style channels. After each failure (the peer's reset,
//! told to a read or to a send; a read's or a write's `socket_timeout`; the peer's clean end,
//! and that end followed by its reset; our own shutdown; our close; for TLS, the peer's fatal
//! alert, a record that does not decrypt, a truncation), the operations that follow (reads, a
//! read into no room, typed reads, writes of bytes, writes of nothing, single and vectored,
//! flushes, shutdowns, a close) give what the docs say: `SocketStream`'s, `into_stream`'s and
//! `TlsWrite`'s docs, net-io's Failures, guarantees.md's rows on resets, timeouts and the
//! peer's end. Where the transports give the same, a test says so with one expectation for
//! all of them; where they differ, the difference is the documented one (a Unix socket's send
//! told of its peer's close gets `EPIPE`, not `ECONNRESET`; TLS's shutdown sends the records
//! the session holds, so after a write's timeout it times out too).
//!
//! Defects found: once a send (not a read) met the peer's reset, a write of nothing, single or
//! vectored, returned `Ok(0)` over every transport, while a write of bytes failed with `EPIPE`
//! and tokio's own `TcpStream` fails a write of nothing with it too; once our close followed
//! the peer's reset, a shutdown failed with `EPIPE` while every other write call reported the
//! close.

use std::io::{ErrorKind, IoSlice};
use std::time::Duration;

use net_sockets::Transport;
use net_tests::fault::{raw_peer_from, reset, reset_arrived};
use net_tests::loopback::Listeners;
use net_tests::pairs::Ours as Socket;
use net_tests::tls::{hand_server, manual_pair, records, rustls_localhost_server};
use net_tests::within;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A call's result: `Ok` (what it returned, as text), or the failure's kind and OS error code.
type Seen = Result<String, (ErrorKind, Option<i32>)>;

/// The error of a send once the kernel has reported the connection's failure (or after our
/// shutdown).
const EPIPE: Seen = Err((ErrorKind::BrokenPipe, Some(libc::EPIPE)));

/// The peer's reset.
const RESET: Seen = Err((ErrorKind::ConnectionReset, Some(libc::ECONNRESET)));

/// `socket_timeout` (not an OS error).
const TIMED_OUT: Seen = Err((ErrorKind::TimedOut, None));

/// Our close: `Error::Closed`, kind `NotConnected`.
const CLOSED: Seen = Err((ErrorKind::NotConnected, None));

/// What `r` shows.
fn seen<T: std::fmt::Debug>(r: std::io::Result<T>) -> Seen {
    r.map(|v| format!("{v:?}"))
        .map_err(|e| (e.kind(), e.raw_os_error()))
}

/// A successful call that returned what `text` shows.
fn ok(text: &str) -> Seen {
    Ok(text.to_owned())
}

/// A record no key decrypts.
const CORRUPTED: &[u8] = b"\x17\x03\x03\x00\x20corrupted record, not decryptable";

/// The `socket_timeout` of the listeners of the timeout tests (long enough for a TLS handshake
/// on a loaded machine: its reads keep it too).
const TIMEOUT: Duration = Duration::from_secs(1);

/// Our end of a connection, through `into_stream`, plain or TLS.
trait Ours: AsyncRead + AsyncWrite + Unpin + Send {
    /// The socket's `close`.
    fn close(&self);
}

impl<T: Transport> Ours for net_sockets::SocketStream<T> {
    fn close(&self) {
        (**self).close();
    }
}

/// The peer of a connection: a raw socket (for TLS, with a rustls session driven by hand).
enum Peer {
    Tcp(tokio::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
    TlsClient(tokio::net::TcpStream, net_tls::rustls::ClientConnection),
    TlsServer(tokio::net::TcpStream, net_tls::rustls::ServerConnection),
}

impl Peer {
    /// Resets the connection (a Unix peer: closes it with our bytes unread, which reads as a
    /// reset), and returns once the reset reached our side, though no call of ours was told.
    async fn reset_arrived(self) {
        match self {
            Peer::Tcp(s) | Peer::TlsClient(s, _) | Peer::TlsServer(s, _) => reset_arrived(s).await,
            Peer::Unix(s) => net_tests::harness::without_spawns(|| drop(s)),
        }
    }

    /// Resets the connection ([`reset_arrived`](Self::reset_arrived) without the wait).
    fn reset(self) {
        match self {
            Peer::Tcp(s) | Peer::TlsClient(s, _) | Peer::TlsServer(s, _) => reset(s),
            Peer::Unix(s) => net_tests::harness::without_spawns(|| drop(s)),
        }
    }

    /// Ends the peer's sending cleanly: FIN (over TLS, `close_notify` first).
    async fn end_cleanly(&mut self) {
        match self {
            Peer::Tcp(s) => s.shutdown().await.unwrap(),
            Peer::Unix(s) => s.shutdown(std::net::Shutdown::Write).unwrap(),
            Peer::TlsClient(s, c) => {
                c.send_close_notify();
                s.write_all(&records(c)).await.unwrap();
                s.shutdown().await.unwrap();
            }
            Peer::TlsServer(s, c) => {
                c.send_close_notify();
                s.write_all(&records(c)).await.unwrap();
                s.shutdown().await.unwrap();
            }
        }
    }

    /// Sends a record our side cannot decrypt.
    async fn corrupt(&mut self) {
        self.tcp_mut().write_all(CORRUPTED).await.unwrap();
    }

    /// Sends the peer's fatal alert (its session failed on a record it could not decrypt).
    async fn alert(&mut self) {
        match self {
            Peer::TlsClient(s, c) => {
                c.read_tls(&mut &CORRUPTED[..]).unwrap();
                assert!(c.process_new_packets().is_err());
                s.write_all(&records(c)).await.unwrap();
            }
            Peer::TlsServer(s, c) => {
                c.read_tls(&mut &CORRUPTED[..]).unwrap();
                assert!(c.process_new_packets().is_err());
                s.write_all(&records(c)).await.unwrap();
            }
            _ => unreachable!(),
        }
    }

    /// The TCP stream under a TCP or TLS peer.
    fn tcp_mut(&mut self) -> &mut tokio::net::TcpStream {
        match self {
            Peer::Tcp(s) | Peer::TlsClient(s, _) | Peer::TlsServer(s, _) => s,
            Peer::Unix(_) => unreachable!(),
        }
    }
}

/// What carries a connection.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Net {
    /// TCP on `127.0.0.1`.
    Tcp,
    /// A Unix stream socket.
    Unix,
    /// TLS over TCP, our server's side (a rustls client driven by hand).
    TlsServer,
    /// TLS over TCP, our client's side (a rustls server driven by hand).
    TlsClient,
}

/// A selector, its TCP and Unix listeners, and a CA for TLS.
struct World(Listeners);

impl std::ops::Deref for World {
    type Target = Listeners;

    fn deref(&self) -> &Listeners {
        &self.0
    }
}

impl World {
    /// With `timeout`, the listeners give the connections they accept a `socket_timeout` of
    /// [`TIMEOUT`] and an 8 KiB send buffer.
    async fn new(timeout: bool) -> World {
        let configure = |b: net_sockets::TcpSocketBuilder| {
            b.configure(|o| {
                if timeout {
                    o.socket_timeout = Some(TIMEOUT);
                    o.send_buffer_size = Some(8 * 1024);
                }
            })
        };
        World(Listeners::new("failure-state-parity", configure).await)
    }

    /// A connection over `net` (a TCP peer with a 4 KiB receive buffer), our end a socket.
    async fn socket(&self, net: Net) -> (Socket, Peer) {
        match net {
            Net::Tcp => {
                let raw = tokio::net::TcpSocket::new_v4().unwrap();
                raw.set_recv_buffer_size(4096).unwrap();
                let (peer, socket) = raw_peer_from(raw, &self.tcp).await;
                (Socket::Plain(socket), Peer::Tcp(peer))
            }
            Net::Unix => {
                let peer = std::os::unix::net::UnixStream::connect(&self.unix_path).unwrap();
                let socket = within(self.unix.accept()).await.unwrap();
                (Socket::Plain(socket), Peer::Unix(peer))
            }
            Net::TlsServer => {
                let (tls, tcp, conn) = manual_pair(&self.tcp, &self.ca, &self.config).await;
                (Socket::Tls(tls), Peer::TlsClient(tcp, conn))
            }
            Net::TlsClient => {
                let config = rustls_localhost_server(&self.ca);
                let (tls, tcp, conn) = hand_server(&self.selector, &self.ca, config, None).await;
                (Socket::Tls(tls), Peer::TlsServer(tcp, conn))
            }
        }
    }

    /// [`socket`](Self::socket), our end through `into_stream`.
    async fn connect(&self, net: Net) -> (Box<dyn Ours>, Peer) {
        let (socket, peer) = self.socket(net).await;
        let ours: Box<dyn Ours> = match socket {
            Socket::Plain(s) => Box::new(s.into_stream().unwrap()),
            Socket::Tls(s) => Box::new(s.into_stream().unwrap()),
        };
        (ours, peer)
    }
}

/// Every transport.
const ALL: [Net; 4] = [Net::Tcp, Net::Unix, Net::TlsServer, Net::TlsClient];

/// Those whose `socket_timeout` the listener sets (our TLS client connects without one).
const ACCEPTED: [Net; 3] = [Net::Tcp, Net::Unix, Net::TlsServer];

/// A connection of `net` through `world`, after "hello\n" went to the peer (which leaves it
/// unread: a Unix peer's close then reads as a reset).
async fn started(world: &World, net: Net) -> (Box<dyn Ours>, Peer) {
    let (mut ours, peer) = world.connect(net).await;
    within(ours.write_all(b"hello\n")).await.unwrap();
    within(ours.flush()).await.unwrap();
    (ours, peer)
}

/// The error of a write after our shutdown went through: `BrokenPipe` (`EPIPE` on a plain
/// socket, as tokio's `TcpStream` reports it).
fn refused_after_our_shutdown(net: Net) -> Seen {
    match net {
        Net::Tcp | Net::Unix => EPIPE,
        Net::TlsServer | Net::TlsClient => Err((ErrorKind::BrokenPipe, None)),
    }
}

/// A read into 64 bytes.
async fn read(ours: &mut Box<dyn Ours>) -> Seen {
    let mut buf = [0u8; 64];
    seen(within(ours.read(&mut buf)).await)
}

/// A read into no room.
async fn read_nothing(ours: &mut Box<dyn Ours>) -> Seen {
    seen(within(ours.read(&mut [])).await)
}

/// `read_exact` of 4 bytes.
async fn read_exact(ours: &mut Box<dyn Ours>) -> Seen {
    let mut buf = [0u8; 4];
    seen(within(ours.read_exact(&mut buf)).await)
}

/// A write of one byte.
async fn write(ours: &mut Box<dyn Ours>) -> Seen {
    seen(within(ours.write(b"x")).await)
}

/// A write of nothing.
async fn write_nothing(ours: &mut Box<dyn Ours>) -> Seen {
    seen(within(ours.write(b"")).await)
}

/// A vectored write of two empty slices.
async fn write_nothing_vectored(ours: &mut Box<dyn Ours>) -> Seen {
    let nothing = [IoSlice::new(b""), IoSlice::new(b"")];
    seen(within(ours.write_vectored(&nothing)).await)
}

/// A flush.
async fn flush(ours: &mut Box<dyn Ours>) -> Seen {
    seen(within(ours.flush()).await)
}

/// A shutdown.
async fn shutdown(ours: &mut Box<dyn Ours>) -> Seen {
    seen(within(ours.shutdown()).await)
}

/// Writes a byte at a time until a write fails (the reset arrived: the first send, or the one
/// after a write whose bytes rustls took, is told); returns that failure.
async fn write_until_it_fails(ours: &mut Box<dyn Ours>, chunk: &[u8]) -> Seen {
    for _ in 0..100_000 {
        if let Err(e) = within(ours.write(chunk)).await {
            return seen::<()>(Err(e));
        }
    }
    panic!("100,000 writes went through");
}

/// Asserts what `net` saw, call by call.
fn assert_calls(net: Net, what: &str, calls: &[(&str, Seen)], expected: &[Seen]) {
    assert_eq!(calls.len(), expected.len());
    for ((call, got), wanted) in calls.iter().zip(expected) {
        assert_eq!(got, wanted, "{net:?}, {what}: {call}");
    }
}

/// Once a read reported the peer's reset, every read reports it again (also after the close:
/// never the close's error nor an end of stream), and every write, of nothing too, and every
/// shutdown fails with `EPIPE` (the guarantees' rows on the peer's reset); once the socket is
/// closed, a write of nothing fails with the close's error (`SocketStream`'s docs). A read into
/// no room reads nothing, without meaning the end. The same over every transport.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_read_reported_the_reset() {
    let world = World::new(false).await;
    for net in ALL {
        let (mut ours, peer) = started(&world, net).await;
        peer.reset();
        assert_eq!(
            read(&mut ours).await,
            RESET,
            "{net:?}: the read told of the reset"
        );
        let calls = [
            ("a read into no room", read_nothing(&mut ours).await),
            ("a write of nothing", write_nothing(&mut ours).await),
            (
                "a vectored write of nothing",
                write_nothing_vectored(&mut ours).await,
            ),
            ("a read", read(&mut ours).await),
            ("read_exact", read_exact(&mut ours).await),
            ("a write", write(&mut ours).await),
            ("a write of nothing again", write_nothing(&mut ours).await),
            ("a shutdown", shutdown(&mut ours).await),
            ("a shutdown again", shutdown(&mut ours).await),
        ];
        let expected = [
            ok("0"),
            EPIPE,
            EPIPE,
            RESET,
            RESET,
            EPIPE,
            EPIPE,
            EPIPE,
            EPIPE,
        ];
        assert_calls(net, "after the read's reset", &calls, &expected);
        ours.close();
        let calls = [
            ("a read", read(&mut ours).await),
            ("a write of nothing", write_nothing(&mut ours).await),
            ("a write", write(&mut ours).await),
        ];
        assert_calls(net, "after the close", &calls, &[RESET, CLOSED, CLOSED]);
    }
    world.selector.close();
}

/// Once a send met the peer's reset (no read told of it: `ECONNRESET` over TCP and TLS, `EPIPE`
/// from a Unix socket's send), a write of nothing, single or vectored, fails as a write of bytes
/// then does, with `EPIPE` (the kernel's answer to a send of any size on the dead connection, as
/// tokio's `TcpStream` reports it: see the next test), every time; reads report the reset, and a
/// shutdown is no clean end. The same over every transport. Before, the write of nothing
/// returned `Ok(0)` over all four, as if the connection could still take bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_send_met_the_reset() {
    let world = World::new(false).await;
    for net in ALL {
        let (mut ours, peer) = started(&world, net).await;
        peer.reset_arrived().await;
        let told = if net == Net::Unix { EPIPE } else { RESET };
        assert_eq!(
            write_until_it_fails(&mut ours, b"y").await,
            told,
            "{net:?}: the write told of the reset"
        );
        let calls = [
            ("a write of nothing", write_nothing(&mut ours).await),
            (
                "a vectored write of nothing",
                write_nothing_vectored(&mut ours).await,
            ),
            ("a write of nothing again", write_nothing(&mut ours).await),
            ("a write", write(&mut ours).await),
            ("a read", read(&mut ours).await),
            ("read_exact", read_exact(&mut ours).await),
            (
                "a write of nothing after the read",
                write_nothing(&mut ours).await,
            ),
            ("a shutdown", shutdown(&mut ours).await),
        ];
        let expected = [EPIPE, EPIPE, EPIPE, EPIPE, RESET, RESET, EPIPE, EPIPE];
        assert_calls(net, "after the send's reset", &calls, &expected);
        ours.close();
    }
    world.selector.close();
}

/// The reference for the previous test: tokio's own `TcpStream`, once a send met the peer's
/// reset, fails a write of nothing with `EPIPE`, as a write of bytes.
#[tokio::test]
async fn tokios_tcp_stream_after_a_send_met_the_reset() {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let address = listener.local_addr().unwrap();
    let (ours, accepted) = tokio::join!(tokio::net::TcpStream::connect(address), listener.accept());
    let (mut ours, peer) = (ours.unwrap(), accepted.unwrap().0);
    reset_arrived(peer).await;
    let mut told = None;
    for _ in 0..100 {
        if let Err(e) = ours.write(b"y").await {
            told = Some(e);
            break;
        }
    }
    assert_eq!(seen::<()>(Err(told.expect("a failed write"))), RESET);
    assert_eq!(seen(ours.write(b"").await), EPIPE);
    assert_eq!(seen(ours.write(b"x").await), EPIPE);
    // Nothing is held above the kernel: a flush has nothing to send.
    assert_eq!(seen(ours.flush().await), ok("()"));
    assert_eq!(seen(ours.flush().await), ok("()"));
}

/// A flush after a send met the peer's reset, and after a read reported it: over TCP and Unix
/// `Ok`, every time, as tokio's `TcpStream`'s (nothing is held above the kernel, so a flush has
/// nothing to send: the reference above); over TLS `EPIPE` once a send met the reset, every
/// time, as tokio-rustls's (the next test): the session still holds the records of the bytes
/// it took that the socket refused, which can never be sent, and a flush that succeeded would
/// say they were; with nothing held (the reset told to a read first) `Ok`, as over TCP. The
/// guarantees' row on writes after the peer's reset says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_after_the_reset() {
    let world = World::new(false).await;
    for net in ALL {
        let tls = matches!(net, Net::TlsServer | Net::TlsClient);
        let (mut ours, peer) = started(&world, net).await;
        peer.reset_arrived().await;
        let told = if net == Net::Unix { EPIPE } else { RESET };
        assert_eq!(
            write_until_it_fails(&mut ours, b"y").await,
            told,
            "{net:?}: the write told of the reset"
        );
        let held = if tls { EPIPE } else { ok("()") };
        let calls = [
            ("a flush", flush(&mut ours).await),
            ("a flush again", flush(&mut ours).await),
        ];
        let expected = [held.clone(), held];
        assert_calls(net, "after a send met the reset", &calls, &expected);
        ours.close();

        let (mut ours, peer) = started(&world, net).await;
        peer.reset();
        assert_eq!(read(&mut ours).await, RESET, "{net:?}: the read's reset");
        let calls = [
            ("a flush", flush(&mut ours).await),
            ("a flush again", flush(&mut ours).await),
        ];
        let expected = [ok("()"), ok("()")];
        assert_calls(net, "after a read reported the reset", &calls, &expected);
        ours.close();
    }
    world.selector.close();
}

/// The reference for the previous test: tokio-rustls's client stream, once a send met the
/// peer's reset (rustls took the bytes of that write), fails a flush with `EPIPE`, every time:
/// the flush sends the records the session holds first.
#[tokio::test]
async fn tokio_rustls_flush_after_a_send_met_the_reset() {
    use net_tests::tls::{localhost, rustls_client};
    let world = World::new(false).await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let address = listener.local_addr().unwrap();
    let connector = tokio_rustls::TlsConnector::from(rustls_client(&world.ca));
    let acceptor = tokio_rustls::TlsAcceptor::from(rustls_localhost_server(&world.ca));
    let client = async {
        let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
        connector.connect(localhost(), tcp).await.unwrap()
    };
    let server = async {
        let tcp = listener.accept().await.unwrap().0;
        acceptor.accept(tcp).await.unwrap()
    };
    let (mut ours, peer) = within(async { tokio::join!(client, server) }).await;
    reset_arrived(peer.into_inner().0).await;
    let mut told = None;
    for _ in 0..100 {
        if let Err(e) = within(ours.write(b"y")).await {
            told = Some(e);
            break;
        }
    }
    assert_eq!(seen::<()>(Err(told.expect("a failed write"))), RESET);
    assert_eq!(seen(within(ours.flush()).await), EPIPE);
    assert_eq!(seen(within(ours.flush()).await), EPIPE);
    world.selector.close();
}

/// A read's `socket_timeout` leaves the connection usable: the writes (of nothing too) go
/// through, the next read times out again, and the shutdown is a clean end (the guarantees:
/// a channel whose transport reports the timeout stays usable; and
/// `writes_after_a_reset::a_read_timeout_leaves_the_writes_alone`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_read_timed_out() {
    let world = World::new(true).await;
    for net in ACCEPTED {
        let (mut ours, peer) = started(&world, net).await;
        assert_eq!(
            read(&mut ours).await,
            TIMED_OUT,
            "{net:?}: the read timed out"
        );
        let calls = [
            ("a read into no room", read_nothing(&mut ours).await),
            ("a write of nothing", write_nothing(&mut ours).await),
            (
                "a vectored write of nothing",
                write_nothing_vectored(&mut ours).await,
            ),
            ("a write", write(&mut ours).await),
            ("a flush", flush(&mut ours).await),
            ("a read", read(&mut ours).await),
            ("a shutdown", shutdown(&mut ours).await),
            (
                "a write of nothing after the shutdown",
                write_nothing(&mut ours).await,
            ),
        ];
        let expected = [
            ok("0"),
            ok("0"),
            ok("0"),
            ok("1"),
            ok("()"),
            TIMED_OUT,
            ok("()"),
            refused_after_our_shutdown(net),
        ];
        assert_calls(net, "after the read's timeout", &calls, &expected);
        ours.close();
        // A timeout is no failure for good: a read after the close reports the close.
        assert_eq!(
            read(&mut ours).await,
            CLOSED,
            "{net:?}: a read after the close"
        );
        drop(peer);
    }
    world.selector.close();
}

/// A write's `socket_timeout` (the peer reads nothing) took nothing and leaves the connection
/// usable: a write of nothing is `Ok(0)`. The shutdown, a flush first, makes the timeout good
/// on a plain socket, where everything written is with the kernel, and sends FIN
/// (`SocketStream`'s docs); over TLS it sends the records the session holds first, and the
/// peer, reading nothing, lets it time out too, losing nothing (`TlsWrite`'s docs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_write_timed_out() {
    let world = World::new(true).await;
    let chunk = vec![7u8; 64 * 1024];
    for net in ACCEPTED {
        let (mut ours, peer) = started(&world, net).await;
        assert_eq!(
            write_until_it_fails(&mut ours, &chunk).await,
            TIMED_OUT,
            "{net:?}: the write timed out"
        );
        let calls = [
            ("a write of nothing", write_nothing(&mut ours).await),
            (
                "a vectored write of nothing",
                write_nothing_vectored(&mut ours).await,
            ),
            ("a read into no room", read_nothing(&mut ours).await),
            ("a shutdown", shutdown(&mut ours).await),
        ];
        let shut = if net == Net::TlsServer {
            TIMED_OUT
        } else {
            ok("()")
        };
        assert_calls(
            net,
            "after the write's timeout",
            &calls,
            &[ok("0"), ok("0"), ok("0"), shut],
        );
        ours.close();
        drop(peer);
    }
    world.selector.close();
}

/// After the peer's clean end (FIN; over TLS, `close_notify` first), every read reads the end
/// again (`read_exact`: `UnexpectedEof`), and writes go on until our own shutdown (the
/// guarantees' row on the peer's half-close), after which a write fails with `BrokenPipe`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_peers_clean_end() {
    let world = World::new(false).await;
    for net in ALL {
        let (mut ours, mut peer) = started(&world, net).await;
        peer.end_cleanly().await;
        assert_eq!(read(&mut ours).await, ok("0"), "{net:?}: the end");
        let calls = [
            ("a read", read(&mut ours).await),
            ("read_exact", read_exact(&mut ours).await),
            ("a read into no room", read_nothing(&mut ours).await),
            ("a write of nothing", write_nothing(&mut ours).await),
            (
                "a vectored write of nothing",
                write_nothing_vectored(&mut ours).await,
            ),
            ("a write", write(&mut ours).await),
            ("a flush", flush(&mut ours).await),
            ("a shutdown", shutdown(&mut ours).await),
            (
                "a write of nothing after the shutdown",
                write_nothing(&mut ours).await,
            ),
            ("a read after the shutdown", read(&mut ours).await),
        ];
        let expected = [
            ok("0"),
            Err((ErrorKind::UnexpectedEof, None)),
            ok("0"),
            ok("0"),
            ok("0"),
            ok("1"),
            ok("()"),
            ok("()"),
            refused_after_our_shutdown(net),
            ok("0"),
        ];
        assert_calls(net, "after the peer's end", &calls, &expected);
        ours.close();
        assert_eq!(
            read(&mut ours).await,
            ok("0"),
            "{net:?}: a read after the close"
        );
    }
    world.selector.close();
}

/// After our own shutdown, a write (of nothing too) fails with `BrokenPipe`, a flush and another
/// shutdown stay `Ok`, also after the close (`SocketStream`'s and `TlsWrite`'s docs), and the
/// reads go on to the peer's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_our_shutdown() {
    let world = World::new(false).await;
    for net in ALL {
        let (mut ours, mut peer) = started(&world, net).await;
        assert_eq!(shutdown(&mut ours).await, ok("()"), "{net:?}: the shutdown");
        peer.end_cleanly().await;
        let calls = [
            ("a write", write(&mut ours).await),
            ("a write of nothing", write_nothing(&mut ours).await),
            (
                "a vectored write of nothing",
                write_nothing_vectored(&mut ours).await,
            ),
            ("a flush", flush(&mut ours).await),
            ("a shutdown again", shutdown(&mut ours).await),
            ("a read", read(&mut ours).await),
        ];
        let refused = refused_after_our_shutdown(net);
        let expected = [
            refused.clone(),
            refused.clone(),
            refused.clone(),
            ok("()"),
            ok("()"),
            ok("0"),
        ];
        assert_calls(net, "after our shutdown", &calls, &expected);
        ours.close();
        let calls = [
            ("a flush", flush(&mut ours).await),
            ("a shutdown", shutdown(&mut ours).await),
            ("a write of nothing", write_nothing(&mut ours).await),
        ];
        assert_calls(
            net,
            "after the close",
            &calls,
            &[ok("()"), ok("()"), refused],
        );
    }
    world.selector.close();
}

/// After our close, every call fails with the close's error, `Error::Closed` (a write of
/// nothing too, a flush, a shutdown: `SocketStream`'s and `TlsWrite`'s docs; every read: the
/// guarantees' row on a close), over every transport; a read into no room reads nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_our_close() {
    let world = World::new(false).await;
    for net in ALL {
        let (mut ours, peer) = started(&world, net).await;
        ours.close();
        let calls = [
            ("a read", read(&mut ours).await),
            ("read_exact", read_exact(&mut ours).await),
            ("a write", write(&mut ours).await),
            ("a write of nothing", write_nothing(&mut ours).await),
            (
                "a vectored write of nothing",
                write_nothing_vectored(&mut ours).await,
            ),
            ("a flush", flush(&mut ours).await),
            ("a shutdown", shutdown(&mut ours).await),
            ("a read into no room", read_nothing(&mut ours).await),
        ];
        let expected = [
            CLOSED,
            CLOSED,
            CLOSED,
            CLOSED,
            CLOSED,
            CLOSED,
            CLOSED,
            ok("0"),
        ];
        assert_calls(net, "after our close", &calls, &expected);
        let e = within(ours.write(b"")).await.unwrap_err();
        assert!(
            matches!(net_sockets::Error::from(e), net_sockets::Error::Closed),
            "{net:?}: the close's error"
        );
        drop(peer);
    }
    world.selector.close();
}

/// How a TLS session fails.
#[derive(Clone, Copy, Debug)]
enum SessionFailure {
    /// The peer sends its fatal alert.
    PeersAlert,
    /// The peer sends a record that does not decrypt.
    Corrupted,
}

/// Once a read reported the session's failure (`InvalidData`), every read, write (of nothing
/// too), flush and shutdown fails with that error (`TlsWrite`'s docs), on our server's side as
/// on our client's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_tls_session_failed() {
    let world = World::new(false).await;
    for failure in [SessionFailure::PeersAlert, SessionFailure::Corrupted] {
        for net in [Net::TlsServer, Net::TlsClient] {
            let (mut ours, mut peer) = started(&world, net).await;
            match failure {
                SessionFailure::PeersAlert => peer.alert().await,
                SessionFailure::Corrupted => peer.corrupt().await,
            }
            let mut buf = [0u8; 64];
            let e = within(ours.read(&mut buf)).await.unwrap_err();
            assert_eq!(
                e.kind(),
                ErrorKind::InvalidData,
                "{net:?}, {failure:?}: {e:?}"
            );
            let wanted = e.to_string();
            let mut again = Vec::new();
            for _ in 0..2 {
                again.push(within(ours.read(&mut buf)).await.map(drop));
                again.push(within(ours.write(b"")).await.map(drop));
                let nothing = [IoSlice::new(b"")];
                again.push(within(ours.write_vectored(&nothing)).await.map(drop));
                again.push(within(ours.write(b"x")).await.map(drop));
                again.push(within(ours.flush()).await);
                again.push(within(ours.shutdown()).await);
            }
            for (i, result) in again.iter().enumerate() {
                assert!(
                    matches!(result, Err(e) if e.kind() == ErrorKind::InvalidData
                        && e.to_string() == wanted),
                    "{net:?}, {failure:?}, call {i}: {result:?}, not the read's {wanted}"
                );
            }
            ours.close();
            let after = within(ours.read(&mut buf)).await;
            assert!(
                matches!(&after, Err(e) if e.to_string() == wanted),
                "{net:?}, {failure:?}: a read after the close: {after:?}"
            );
        }
    }
    world.selector.close();
}

/// A TLS peer that ends the TCP connection without `close_notify`: every read reports the
/// truncation again (`into_stream`'s docs), on our server's side as on our client's; the
/// writes go on, as after the peer's clean end (the peer only ended its sending).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_tls_truncation() {
    let world = World::new(false).await;
    for net in [Net::TlsServer, Net::TlsClient] {
        let (mut ours, mut peer) = started(&world, net).await;
        within(peer.tcp_mut().shutdown()).await.unwrap();
        let truncated = (ErrorKind::UnexpectedEof, None);
        for round in 0..3 {
            let mut buf = [0u8; 64];
            let e = within(ours.read(&mut buf)).await.unwrap_err();
            assert_eq!(
                (e.kind(), e.raw_os_error()),
                truncated,
                "{net:?}, read {round}"
            );
            assert!(
                e.get_ref()
                    .is_some_and(|inner| inner.is::<net_tls::Truncated>()),
                "{net:?}, read {round}: {e:?}"
            );
        }
        let calls = [
            ("read_exact", read_exact(&mut ours).await),
            ("a read into no room", read_nothing(&mut ours).await),
            ("a write of nothing", write_nothing(&mut ours).await),
            (
                "a vectored write of nothing",
                write_nothing_vectored(&mut ours).await,
            ),
            ("a write", write(&mut ours).await),
            ("a flush", flush(&mut ours).await),
        ];
        let expected = [Err(truncated), ok("0"), ok("0"), ok("0"), ok("1"), ok("()")];
        assert_calls(net, "after the truncation", &calls, &expected);
        ours.close();
        let mut buf = [0u8; 64];
        let after = within(ours.read(&mut buf)).await;
        assert!(
            matches!(&after, Err(e) if e.get_ref().is_some_and(|i| i.is::<net_tls::Truncated>())),
            "{net:?}: a read after the close: {after:?}"
        );
    }
    world.selector.close();
}

/// A peer that ended cleanly, then reset the connection on bytes of ours that reached it after:
/// the reads still read the clean end (the guarantees' reset row), while a send fails with
/// `EPIPE` and so does every write after it, a write of nothing too (the write of nothing
/// returned `Ok(0)` before), and the shutdown is no clean end. The same over every transport
/// (a Unix peer: its close with our bytes unread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_peers_clean_end_then_its_reset() {
    let world = World::new(false).await;
    for net in ALL {
        let (mut ours, mut peer) = started(&world, net).await;
        peer.end_cleanly().await;
        assert_eq!(read(&mut ours).await, ok("0"), "{net:?}: the end");
        assert_eq!(
            write(&mut ours).await,
            ok("1"),
            "{net:?}: a write after the end"
        );
        peer.reset_arrived().await;
        assert_eq!(
            write_until_it_fails(&mut ours, b"y").await,
            EPIPE,
            "{net:?}: the write told of the reset"
        );
        let calls = [
            ("a write of nothing", write_nothing(&mut ours).await),
            (
                "a vectored write of nothing",
                write_nothing_vectored(&mut ours).await,
            ),
            ("a write", write(&mut ours).await),
            ("a read", read(&mut ours).await),
            (
                "a write of nothing after the read",
                write_nothing(&mut ours).await,
            ),
        ];
        let expected = [EPIPE, EPIPE, EPIPE, ok("0"), EPIPE];
        assert_calls(net, "after the end and the reset", &calls, &expected);
        let e = within(ours.shutdown()).await.unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::BrokenPipe,
            "{net:?}: the shutdown: {e:?}"
        );
        ours.close();
    }
    world.selector.close();
}

/// A channel call's result, as [`Seen`].
fn channel_seen<T: std::fmt::Debug>(r: net_io::Result<T>) -> Seen {
    r.map(|v| format!("{v:?}")).map_err(|e| {
        let os = match &e {
            net_io::Error::Io(io) => io.raw_os_error(),
            _ => None,
        };
        (e.kind(), os)
    })
}

/// What a connection's channels give after a failure.
#[derive(Clone, Copy, Debug)]
enum ChannelCase {
    /// A read reported the peer's reset.
    ResetRead,
    /// A flush met the peer's reset.
    ResetFlush,
    /// The peer ended cleanly.
    PeersEnd,
    /// Our close.
    OurClose,
}

/// The Ktor-style channels (`open_read_channel`, `open_write_channel`, with and without
/// auto-flush) give the same after each failure over every transport: a failure is reported
/// again with its type by every later read and every write call, a write of nothing and a
/// flush too (net-io's Failures; the guarantees' reset rows: `EPIPE` once a read reported the
/// reset, the reset itself, `ECONNRESET`, when a flush met it first, `EPIPE` from a Unix
/// socket's send); the peer's clean end is read again and leaves the writes alone; our close
/// fails every call with `Error::Closed`. A read into no room is `Ok(0)` at once
/// (`read_available`'s docs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_channels_after_each_failure() {
    use net_io::LineEnding::Default as Lf;
    let world = World::new(false).await;
    let cases = [
        ChannelCase::ResetRead,
        ChannelCase::ResetFlush,
        ChannelCase::PeersEnd,
        ChannelCase::OurClose,
    ];
    for case in cases {
        for auto_flush in [false, true] {
            for net in ALL {
                let (mut socket, peer) = world.socket(net).await;
                // Kept open until the end, but where the case resets it.
                let mut peer = Some(peer);
                let (mut input, mut output) = socket.channels(auto_flush);
                within(output.write_fully(b"hello\n")).await.unwrap();
                within(output.flush()).await.unwrap();
                let what = format!("{case:?}, auto_flush {auto_flush}");
                let (read_error, write_error) = match case {
                    ChannelCase::ResetRead => {
                        peer.take().unwrap().reset();
                        let first = within(input.read_line(64, Lf)).await;
                        assert_eq!(channel_seen(first), RESET, "{net:?}, {what}");
                        (RESET, EPIPE)
                    }
                    ChannelCase::ResetFlush => {
                        peer.take().unwrap().reset_arrived().await;
                        let written = within(output.write_fully(b"y")).await;
                        let flushed = match written {
                            Ok(()) => within(output.flush()).await,
                            failed => failed,
                        };
                        let told = if net == Net::Unix { EPIPE } else { RESET };
                        assert_eq!(channel_seen(flushed), told, "{net:?}, {what}");
                        (RESET, told)
                    }
                    ChannelCase::PeersEnd => {
                        peer.as_mut().unwrap().end_cleanly().await;
                        let first = within(input.read_line(64, Lf)).await;
                        assert_eq!(channel_seen(first), ok("None"), "{net:?}, {what}");
                        (ok("None"), ok("()"))
                    }
                    ChannelCase::OurClose => {
                        socket.close();
                        (CLOSED, CLOSED)
                    }
                };
                let mut none = [0u8; 0];
                let calls = [
                    (
                        "read_line",
                        channel_seen(within(input.read_line(64, Lf)).await),
                    ),
                    ("read_available into no room", {
                        channel_seen(within(input.read_available(&mut none)).await)
                    }),
                    ("write_fully of nothing", {
                        channel_seen(within(output.write_fully(b"")).await)
                    }),
                    ("flush", channel_seen(within(output.flush()).await)),
                    ("write_fully of nothing again", {
                        channel_seen(within(output.write_fully(b"")).await)
                    }),
                    ("read_line again", {
                        channel_seen(within(input.read_line(64, Lf)).await)
                    }),
                ];
                let expected = [
                    read_error.clone(),
                    ok("0"),
                    write_error.clone(),
                    write_error.clone(),
                    write_error,
                    read_error,
                ];
                assert_calls(net, &what, &calls, &expected);
                let read_u32 = channel_seen(within(input.read_u32()).await);
                let wanted = match case {
                    ChannelCase::PeersEnd => Err((ErrorKind::UnexpectedEof, None)),
                    ChannelCase::OurClose => CLOSED,
                    ChannelCase::ResetRead | ChannelCase::ResetFlush => RESET,
                };
                assert_eq!(read_u32, wanted, "{net:?}, {what}: read_u32");
                socket.close();
                drop(peer);
            }
        }
    }
    world.selector.close();
}

/// What comes before a `close_gracefully`.
#[derive(Clone, Copy, Debug)]
enum BeforeTheClose {
    /// A read reported the peer's reset.
    ResetRead,
    /// The peer's reset arrived; no call was told.
    ResetArrived,
    /// A flush met the peer's reset.
    ResetFlush,
    /// The peer ended cleanly, and a read read the end.
    PeersEnd,
    /// Our close.
    OurClose,
    /// A read reported the TLS session's failure (a record that does not decrypt).
    SessionFailed,
}

/// `connection().close_gracefully(wait)` after `before`: the result, as [`Seen`].
async fn close_gracefully<T: Transport>(
    mut connection: net_sockets::Connection<T>,
    before: BeforeTheClose,
    peer: Peer,
) -> Seen {
    use net_io::LineEnding::Default as Lf;
    within(connection.output.write_fully(b"hello\n"))
        .await
        .unwrap();
    within(connection.output.flush()).await.unwrap();
    // Kept open until the end, but where the case resets it.
    let mut peer = Some(peer);
    match before {
        BeforeTheClose::ResetRead => {
            peer.take().unwrap().reset();
            within(connection.input.read_line(64, Lf))
                .await
                .unwrap_err();
        }
        BeforeTheClose::ResetArrived => peer.take().unwrap().reset_arrived().await,
        BeforeTheClose::ResetFlush => {
            peer.take().unwrap().reset_arrived().await;
            within(connection.output.write_fully(b"y")).await.unwrap();
            within(connection.output.flush()).await.unwrap_err();
        }
        BeforeTheClose::PeersEnd => {
            peer.as_mut().unwrap().end_cleanly().await;
            let end = within(connection.input.read_line(64, Lf)).await;
            assert!(matches!(end, Ok(None)), "{end:?}");
        }
        BeforeTheClose::OurClose => connection.socket.close(),
        BeforeTheClose::SessionFailed => {
            peer.as_mut().unwrap().corrupt().await;
            within(connection.input.read_line(64, Lf))
                .await
                .unwrap_err();
        }
    }
    let closed = within(connection.close_gracefully(Duration::from_secs(5))).await;
    drop(peer);
    seen(closed.map_err(std::io::Error::from))
}

/// `close_gracefully` after each failure reports it (never `Ok`, a clean end, after one), the
/// same over every transport but where the docs say otherwise: after a read reported the reset,
/// `EPIPE` (the guarantees' reset row); after a flush met it, the flush's error again (the
/// output's failure: `ECONNRESET`, a Unix socket's `EPIPE`); once the reset arrived with no
/// call told, the reset over TCP and Unix, `EPIPE` over TLS (whose read of what came in before
/// its `close_notify` is told the reset: the same row); after our close, `Error::Closed`; after
/// a TLS session's failure, that failure. After the peer's clean end, `Ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_gracefully_after_each_failure() {
    let world = World::new(false).await;
    let cases = [
        BeforeTheClose::ResetRead,
        BeforeTheClose::ResetArrived,
        BeforeTheClose::ResetFlush,
        BeforeTheClose::PeersEnd,
        BeforeTheClose::OurClose,
        BeforeTheClose::SessionFailed,
    ];
    for before in cases {
        for net in ALL {
            let tls = matches!(net, Net::TlsServer | Net::TlsClient);
            let expected = match before {
                BeforeTheClose::SessionFailed if !tls => continue,
                BeforeTheClose::SessionFailed => Err((ErrorKind::InvalidData, None)),
                BeforeTheClose::ResetRead => EPIPE,
                BeforeTheClose::ResetArrived if tls => EPIPE,
                BeforeTheClose::ResetArrived => RESET,
                BeforeTheClose::ResetFlush if net == Net::Unix => EPIPE,
                BeforeTheClose::ResetFlush => RESET,
                BeforeTheClose::PeersEnd => ok("()"),
                BeforeTheClose::OurClose => CLOSED,
            };
            let (socket, peer) = world.socket(net).await;
            let closed = match socket {
                Socket::Plain(s) => close_gracefully(s.connection().unwrap(), before, peer).await,
                Socket::Tls(s) => close_gracefully(s.connection().unwrap(), before, peer).await,
            };
            assert_eq!(closed, expected, "{net:?}, {before:?}");
        }
    }
    world.selector.close();
}

/// `into_stream` after our close fails with `Error::Closed` (its docs), over every transport,
/// and so does `connection`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn into_stream_and_connection_after_our_close() {
    let world = World::new(false).await;
    for net in ALL {
        for stream in [true, false] {
            let (socket, peer) = world.socket(net).await;
            socket.close();
            let refused = match (socket, stream) {
                (Socket::Plain(s), true) => s.into_stream().err(),
                (Socket::Plain(s), false) => s.connection().err(),
                (Socket::Tls(s), true) => s.into_stream().err(),
                (Socket::Tls(s), false) => s.connection().err(),
            };
            assert!(
                matches!(refused, Some(net_sockets::Error::Closed)),
                "{net:?}, into_stream {stream}: {refused:?}"
            );
            drop(peer);
        }
    }
    world.selector.close();
}

/// What failed before our close.
#[derive(Clone, Copy, Debug)]
enum BeforeOurClose {
    /// A read reported the peer's reset.
    ResetRead,
    /// A send met the peer's reset (no read told of it).
    ResetSend,
    /// A read read the peer's clean end.
    PeersEnd,
    /// A read reported the TLS session's failure (a record that does not decrypt).
    SessionFailed,
    /// A read reported a TLS truncation.
    Truncation,
}

/// Once our close came after a failure, every call of the write side fails with the close's
/// error, `Error::Closed`, whatever failed before: a write, of nothing too (single or
/// vectored), a flush and a shutdown alike, every time (`SocketStream`'s and `TlsWrite`'s
/// docs: a shutdown once the socket's close began fails with its error). A read reports again
/// what a read reported before the close (the reset, the end, the session's failure, the
/// truncation: the guarantees' rows), else the close's error (only a send was told of the
/// reset). The same over every transport. Before, a shutdown after the peer's reset (told to a
/// read or to a send) then our close failed with `EPIPE`, the earlier failure's error, while
/// the writes, of nothing too, and the flush reported the close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_each_failure_then_our_close() {
    let world = World::new(false).await;
    let cases = [
        BeforeOurClose::ResetRead,
        BeforeOurClose::ResetSend,
        BeforeOurClose::PeersEnd,
        BeforeOurClose::SessionFailed,
        BeforeOurClose::Truncation,
    ];
    for before in cases {
        for net in ALL {
            let tls = matches!(net, Net::TlsServer | Net::TlsClient);
            if !tls
                && matches!(
                    before,
                    BeforeOurClose::SessionFailed | BeforeOurClose::Truncation
                )
            {
                continue;
            }
            let (mut ours, peer) = started(&world, net).await;
            // Kept open until the end, but where the case resets it.
            let mut peer = Some(peer);
            let first = match before {
                BeforeOurClose::ResetRead => {
                    peer.take().unwrap().reset();
                    read(&mut ours).await
                }
                BeforeOurClose::ResetSend => {
                    peer.take().unwrap().reset_arrived().await;
                    write_until_it_fails(&mut ours, b"y").await
                }
                BeforeOurClose::PeersEnd => {
                    peer.as_mut().unwrap().end_cleanly().await;
                    read(&mut ours).await
                }
                BeforeOurClose::SessionFailed => {
                    peer.as_mut().unwrap().corrupt().await;
                    read(&mut ours).await
                }
                BeforeOurClose::Truncation => {
                    within(peer.as_mut().unwrap().tcp_mut().shutdown())
                        .await
                        .unwrap();
                    read(&mut ours).await
                }
            };
            let (told, read_after) = match before {
                BeforeOurClose::ResetRead => (RESET, RESET),
                BeforeOurClose::ResetSend if net == Net::Unix => (EPIPE, CLOSED),
                BeforeOurClose::ResetSend => (RESET, CLOSED),
                BeforeOurClose::PeersEnd => (ok("0"), ok("0")),
                BeforeOurClose::SessionFailed => {
                    let failed = Err((ErrorKind::InvalidData, None));
                    (failed.clone(), failed)
                }
                BeforeOurClose::Truncation => {
                    let truncated = Err((ErrorKind::UnexpectedEof, None));
                    (truncated.clone(), truncated)
                }
            };
            assert_eq!(first, told, "{net:?}, {before:?}: the failure");
            ours.close();
            let calls = [
                ("a write", write(&mut ours).await),
                ("a write of nothing", write_nothing(&mut ours).await),
                (
                    "a vectored write of nothing",
                    write_nothing_vectored(&mut ours).await,
                ),
                ("a flush", flush(&mut ours).await),
                ("a shutdown", shutdown(&mut ours).await),
                ("a shutdown again", shutdown(&mut ours).await),
                ("a flush after the shutdown", flush(&mut ours).await),
                ("a read", read(&mut ours).await),
                ("a read again", read(&mut ours).await),
            ];
            let expected = [
                CLOSED,
                CLOSED,
                CLOSED,
                CLOSED,
                CLOSED,
                CLOSED,
                CLOSED,
                read_after.clone(),
                read_after,
            ];
            let what = format!("{before:?}, then our close");
            assert_calls(net, &what, &calls, &expected);
            drop(peer);
        }
    }
    world.selector.close();
}

/// The channels after a failure, then our close: a channel whose connection failed (a read
/// reported the reset: `EPIPE`; a flush met it: the flush's error) reports that failure again
/// to every later call, as net-io's Failures have it, the close's error only where none came
/// before (after the peer's clean end); the read channel reads again what it read before.
/// The same over every transport, with and without auto-flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_channels_after_each_failure_then_our_close() {
    use net_io::LineEnding::Default as Lf;
    let world = World::new(false).await;
    let cases = [
        ChannelCase::ResetRead,
        ChannelCase::ResetFlush,
        ChannelCase::PeersEnd,
    ];
    for case in cases {
        for auto_flush in [false, true] {
            for net in ALL {
                let (mut socket, peer) = world.socket(net).await;
                // Kept open until the end, but where the case resets it.
                let mut peer = Some(peer);
                let (mut input, mut output) = socket.channels(auto_flush);
                within(output.write_fully(b"hello\n")).await.unwrap();
                within(output.flush()).await.unwrap();
                let what = format!("{case:?}, auto_flush {auto_flush}, then our close");
                let (read_error, write_error) = match case {
                    ChannelCase::ResetRead => {
                        peer.take().unwrap().reset();
                        let first = within(input.read_line(64, Lf)).await;
                        assert_eq!(channel_seen(first), RESET, "{net:?}, {what}");
                        (RESET, EPIPE)
                    }
                    ChannelCase::ResetFlush => {
                        peer.take().unwrap().reset_arrived().await;
                        let written = within(output.write_fully(b"y")).await;
                        let flushed = match written {
                            Ok(()) => within(output.flush()).await,
                            failed => failed,
                        };
                        let told = if net == Net::Unix { EPIPE } else { RESET };
                        assert_eq!(channel_seen(flushed), told.clone(), "{net:?}, {what}");
                        (CLOSED, told)
                    }
                    ChannelCase::PeersEnd => {
                        peer.as_mut().unwrap().end_cleanly().await;
                        let first = within(input.read_line(64, Lf)).await;
                        assert_eq!(channel_seen(first), ok("None"), "{net:?}, {what}");
                        (ok("None"), CLOSED)
                    }
                    ChannelCase::OurClose => unreachable!(),
                };
                socket.close();
                let calls = [
                    ("write_fully", {
                        channel_seen(within(output.write_fully(b"x")).await)
                    }),
                    ("write_fully of nothing", {
                        channel_seen(within(output.write_fully(b"")).await)
                    }),
                    ("flush", channel_seen(within(output.flush()).await)),
                    ("flush_and_close", {
                        channel_seen(within(output.flush_and_close()).await)
                    }),
                    (
                        "read_line",
                        channel_seen(within(input.read_line(64, Lf)).await),
                    ),
                ];
                let expected = [
                    write_error.clone(),
                    write_error.clone(),
                    write_error.clone(),
                    write_error,
                    read_error,
                ];
                assert_calls(net, &what, &calls, &expected);
                drop(peer);
            }
        }
    }
    world.selector.close();
}

/// As [`after_each_failure_then_our_close`], the close its selector's: once a read reported the
/// peer's reset and the selector closed, every call of the write side fails with the
/// selector's close, `Error::SelectorClosed` (kind `ConnectionAborted`), a shutdown as the
/// writes and the flush (before, the shutdown failed with `EPIPE`), and a read reports the
/// reset again (the guarantees' reset row). The same over every transport.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_peers_reset_then_the_selectors_close() {
    let selector_closed: Seen = Err((ErrorKind::ConnectionAborted, None));
    for net in ALL {
        let world = World::new(false).await;
        let (mut ours, peer) = started(&world, net).await;
        peer.reset();
        assert_eq!(read(&mut ours).await, RESET, "{net:?}: the read's reset");
        world.selector.close();
        let calls = [
            ("a write", write(&mut ours).await),
            ("a write of nothing", write_nothing(&mut ours).await),
            (
                "a vectored write of nothing",
                write_nothing_vectored(&mut ours).await,
            ),
            ("a flush", flush(&mut ours).await),
            ("a shutdown", shutdown(&mut ours).await),
            ("a read", read(&mut ours).await),
        ];
        let expected = [
            selector_closed.clone(),
            selector_closed.clone(),
            selector_closed.clone(),
            selector_closed.clone(),
            selector_closed.clone(),
            RESET,
        ];
        assert_calls(
            net,
            "the reset, then the selector's close",
            &calls,
            &expected,
        );
        let e = within(ours.shutdown()).await.unwrap_err();
        assert!(
            matches!(
                net_sockets::Error::from(e),
                net_sockets::Error::SelectorClosed
            ),
            "{net:?}: the selector's close"
        );
    }
}
