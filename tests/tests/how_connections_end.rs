//! What the peer sees for each way a connection of ours ends, against what the docs promise
//! (`guarantees.md`, the "Closing" sections of `Socket`, `net_tls` and `Connection`): a clean
//! end (FIN, `close_notify`) only when nothing was lost, a truncation or a reset otherwise, and
//! never a reset where the docs promise a FIN.

use std::io;
use std::time::Duration;

use net_io::ByteReadChannel;
use net_sockets::SelectorManager;
use net_tests::conversation::utf8_line;
use net_tests::loopback::tcp_listener;
use net_tests::pki::TestCa;
use net_tests::tls::{is_truncated, pair};
use net_tests::within;

/// How a connection of a selector is ended from outside the connection.
#[derive(Clone, Copy, Debug, PartialEq)]
enum OuterEnd {
    /// `SelectorManager::close`.
    SelectorClose,
    /// `SelectorManager::shutdown` with no grace period: the connection is cut.
    SelectorShutdown,
    /// The selector's runtime shuts down.
    RuntimeEnd,
}

const OUTER_ENDS: [OuterEnd; 3] = [
    OuterEnd::SelectorClose,
    OuterEnd::SelectorShutdown,
    OuterEnd::RuntimeEnd,
];

/// A TLS 1.3 client of ours (on a selector and runtime of its own) that wrote, never read (the
/// server's session tickets sit unread in its socket), and is ended by `end`: what our server,
/// its peer, reads after the line that arrived.
async fn peer_of_a_tls13_client_that_never_read(end: OuterEnd) -> net_io::Error {
    let server_selector = SelectorManager::new();
    let ca = TestCa::new("review ends ca");
    let server_config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = tcp_listener(&server_selector).await;
    let client_config = ca.client_config().build().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let client_selector = {
        let _runtime = runtime.enter();
        SelectorManager::new()
    };
    let (mut server, mut client) =
        pair(&client_selector, &listener, &server_config, client_config).await;
    let mut input = server.open_read_channel().unwrap();
    let mut output = client.open_write_channel(true).unwrap();
    output.write_string_utf8("whole\nlast").await.unwrap();
    assert_eq!(utf8_line(&mut input).await.as_deref(), Some("whole"));
    // The server's tickets went out with its handshake, before it read the line: on loopback
    // they are in the client's socket now, unread.
    let mut runtime = Some(runtime);
    match end {
        OuterEnd::SelectorClose => client_selector.close(),
        OuterEnd::SelectorShutdown => {
            within(client_selector.shutdown(Duration::ZERO)).await;
        }
        OuterEnd::RuntimeEnd => runtime.take().unwrap().shutdown_background(),
    }
    let e = within(input.read_utf8_line(64)).await.unwrap_err();
    server.close();
    drop((output, client));
    if let Some(runtime) = runtime {
        runtime.shutdown_background();
    }
    e
}

/// The selector's close, its graceful shutdown's cut and the end of its runtime send no
/// `close_notify` (guarantees: "over TLS never a `close_notify`, the client sees a truncated
/// stream"), and the kernel must send the FIN of a truncated stream, not a reset (which the
/// peer reads as `ConnectionReset`, and which destroys what is still queued for it), also for
/// a TLS 1.3 client that never read the server's session tickets, as its own `close()` and drop
/// already do.
#[tokio::test]
async fn a_tls13_client_that_never_read_ended_by_its_selector_or_runtime_is_truncated_not_reset() {
    for end in OUTER_ENDS {
        let e = peer_of_a_tls13_client_that_never_read(end).await;
        assert!(
            is_truncated(&e) && e.kind() == io::ErrorKind::UnexpectedEof,
            "{end:?}: the peer read {e:?}"
        );
        // What a log shows says what happened.
        assert!(
            e.to_string().contains("without tls close_notify"),
            "{end:?}: {e}"
        );
    }
}

// ----- The matrix: every way a connection of ours ends, as its peer sees it ------------------

/// How our side ends its connection.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Way {
    /// `Socket::close`.
    Close,
    /// `Connection::close_gracefully` (the peer never closes: the wait runs out).
    CloseGracefully,
    /// The socket and both channels dropped, no `close`.
    Drop,
    /// `flush_and_close` on the write channel, then everything dropped.
    FlushAndCloseThenDrop,
    /// `cancel()` on the read channel, then `close`.
    ReadCancelThenClose,
    /// Ended from outside: the selector or its runtime.
    Outer(OuterEnd),
}

const WAYS: [Way; 8] = [
    Way::Close,
    Way::CloseGracefully,
    Way::Drop,
    Way::FlushAndCloseThenDrop,
    Way::ReadCancelThenClose,
    Way::Outer(OuterEnd::SelectorClose),
    Way::Outer(OuterEnd::SelectorShutdown),
    Way::Outer(OuterEnd::RuntimeEnd),
];

/// What our side holds as it ends.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Load {
    /// Everything written was flushed; nothing came from the peer.
    Nothing,
    /// `UNSENT` more bytes written and not flushed.
    Unsent,
    /// The peer sent this many bytes, which we never read.
    PeerSentUnread(usize),
    /// A write of `CUT` bytes (more than the sockets take while the peer does not read) was
    /// dropped part-way (after its first poll).
    WriteCutShort,
}

/// The write dropped part-way with `Load::WriteCutShort`.
const CUT: usize = 16 << 20;

const LOADS: [Load; 5] = [
    Load::Nothing,
    Load::Unsent,
    Load::PeerSentUnread(10),
    Load::PeerSentUnread(100_000),
    Load::WriteCutShort,
];

/// Writes `CUT` bytes and drops the write after its first poll, which leaves it part-way.
async fn write_cut_short(output: &mut net_io::ByteWriteChannel) {
    let big = vec![b'c'; CUT];
    let write = output.write_fully(&big);
    let mut write = std::pin::pin!(write);
    assert!(net_tests::pending_after_one_poll(write.as_mut()).await);
}

/// What the peer saw: the bytes it read, then how the stream ended.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Seen {
    /// A clean end (FIN; over TLS, `close_notify`).
    Clean(usize),
    /// `ConnectionReset`.
    Reset(usize),
    /// TLS: the end without `close_notify` (`UnexpectedEof`, `Truncated`).
    Truncated(usize),
}

/// Flushed before the end.
const SENT: usize = 10_000;
/// Written, not flushed, with `Load::Unsent`.
const UNSENT: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Net {
    Tcp,
    Unix,
}

/// Ends our side as `way` says; `runtime` is the one our selector runs on.
async fn end_ours<T: net_sockets::Transport>(
    way: Way,
    connection: net_sockets::Connection<T>,
    selector: &SelectorManager,
    runtime: &mut Option<tokio::runtime::Runtime>,
) {
    if way == Way::CloseGracefully {
        let _ = within(connection.close_gracefully(Duration::from_millis(100))).await;
        return;
    }
    let net_sockets::Connection {
        socket,
        mut input,
        mut output,
        ..
    } = connection;
    match way {
        Way::Close | Way::CloseGracefully => {
            socket.close();
            drop((input, output));
        }
        Way::Drop => drop((socket, input, output)),
        Way::FlushAndCloseThenDrop => {
            // Fails after a write cut short (and sends no FIN): the peer's view is the check.
            let _ = within(output.flush_and_close()).await;
            drop((socket, input, output));
        }
        Way::ReadCancelThenClose => {
            input.cancel();
            socket.close();
            drop((input, output));
        }
        Way::Outer(OuterEnd::SelectorClose) => {
            selector.close();
            drop((socket, input, output));
        }
        Way::Outer(OuterEnd::SelectorShutdown) => {
            within(selector.shutdown(Duration::ZERO)).await;
            drop((socket, input, output));
        }
        Way::Outer(OuterEnd::RuntimeEnd) => {
            runtime.take().unwrap().shutdown_background();
            drop((socket, input, output));
        }
    }
}

/// A selector on a runtime of its own (so that its end can be one of the ways).
fn own_selector() -> (SelectorManager, Option<tokio::runtime::Runtime>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let selector = {
        let _runtime = runtime.enter();
        SelectorManager::new()
    };
    (selector, Some(runtime))
}

/// Reads to the end with a plain socket: how many bytes, then a clean end or a reset.
async fn read_to_end_plain(mut peer: impl tokio::io::AsyncRead + Unpin) -> Seen {
    use tokio::io::AsyncReadExt;
    let mut got = 0;
    let mut buf = vec![0; 64 * 1024];
    loop {
        match within(peer.read(&mut buf)).await {
            Ok(0) => return Seen::Clean(got),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Seen::Reset(got),
            Err(e) => panic!("the peer read {e:?}"),
        }
    }
}

/// One cell over plain TCP or Unix: our client (on its own selector and runtime) against a
/// tokio peer that reads to the end.
async fn plain_cell(net: Net, way: Way, load: Load) -> Seen {
    use tokio::io::AsyncWriteExt;
    let dir = net_tests::TempDir::new("review-ends");
    let (selector, mut runtime) = own_selector();
    let builder = net_sockets::a_socket(&selector).tcp();
    let (socket, mut peer): (_, Box<dyn Peer>) = match net {
        Net::Tcp => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let (socket, peer) = tokio::join!(builder.connect(("127.0.0.1", port)), async {
                listener.accept().await.unwrap().0
            });
            (socket.unwrap(), Box::new(peer))
        }
        Net::Unix => {
            let path = dir.path().join("s");
            let listener = tokio::net::UnixListener::bind(&path).unwrap();
            let (socket, peer) = tokio::join!(
                builder.connect(net_sockets::UnixSocketAddress::new(&path)),
                async { listener.accept().await.unwrap().0 }
            );
            (socket.unwrap(), Box::new(peer))
        }
    };
    let mut connection = socket.connection().unwrap();
    if let Load::PeerSentUnread(n) = load {
        // Loopback and Unix sockets take this much at once: once written, it is in our socket.
        within(peer.write_all(&vec![b'p'; n])).await.unwrap();
    }
    connection
        .output
        .write_fully(&net_tests::payload(SENT))
        .await
        .unwrap();
    within(connection.output.flush()).await.unwrap();
    if load == Load::Unsent {
        connection
            .output
            .write_fully(&[b'u'; UNSENT])
            .await
            .unwrap();
    }
    if load == Load::WriteCutShort {
        write_cut_short(&mut connection.output).await;
    }
    end_ours(way, connection, &selector, &mut runtime).await;
    let seen = read_to_end_plain(&mut peer).await;
    if let Some(runtime) = runtime {
        runtime.shutdown_background();
    }
    seen
}

trait Peer: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<P: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Peer for P {}

/// What the docs promise a plain peer sees, as a check of what it saw.
fn plain_documented(net: Net, way: Way, load: Load, seen: Seen) -> bool {
    // A clean end after everything (what was flushed, and what a flushing end flushed).
    let flushes = matches!(way, Way::CloseGracefully | Way::FlushAndCloseThenDrop);
    let all = SENT
        + if load == Load::Unsent && flushes {
            UNSENT
        } else {
            0
        };
    let clean = seen == Seen::Clean(all);
    // Linux answers a close with input unread with a reset (Socket's "Closing"); on a Unix
    // socket, after every byte sent (guarantees, "A plain Unix socket closed where ...").
    let unread_reset = match net {
        Net::Tcp => matches!(seen, Seen::Reset(n) if n <= SENT),
        Net::Unix => seen == Seen::Reset(SENT),
    };
    // Bytes thrown away unsent: a TCP reset; a Unix socket has no reset and ends as a clean
    // close does, without them.
    let lost = match net {
        Net::Tcp => matches!(seen, Seen::Reset(n) if n <= SENT),
        Net::Unix => seen == Seen::Clean(SENT),
    };
    match load {
        Load::Nothing => clean,
        Load::Unsent if flushes => clean,
        Load::Unsent => lost,
        // The graceful close reads the input, so no reset; the drop after a half-close may
        // come after the peer read the FIN, or before.
        Load::PeerSentUnread(_) => match way {
            Way::CloseGracefully => clean,
            Way::FlushAndCloseThenDrop => clean || unread_reset,
            _ => unread_reset,
        },
        // Never a clean end after part of a write (guarantees, "A write future dropped before
        // it completes"), but on a Unix socket, which has no reset.
        Load::WriteCutShort => match net {
            Net::Tcp => matches!(seen, Seen::Reset(n) if n < SENT + CUT),
            Net::Unix => matches!(seen, Seen::Clean(n) if n > SENT && n < SENT + CUT),
        },
    }
}

/// Every way our plain TCP or Unix connection ends, with nothing left, with bytes unsent and
/// with the peer's bytes unread, ends as the docs say for its peer (see `plain_documented`).
#[tokio::test]
async fn every_way_a_plain_connection_ends_is_what_the_docs_say_its_peer_sees() {
    let mut wrong = Vec::new();
    for net in [Net::Tcp, Net::Unix] {
        for way in WAYS {
            for load in LOADS {
                let seen = plain_cell(net, way, load).await;
                eprintln!("{net:?} {way:?} {load:?}: {seen:?}");
                if !plain_documented(net, way, load, seen) {
                    wrong.push(format!("{net:?} {way:?} {load:?}: {seen:?}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

// ----- The same matrix over TLS ---------------------------------------------------------------

/// Which side of the TLS connection is ours (the other is this crate's too, as the peer).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Side {
    Client,
    Server,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Tls {
    V12,
    V13,
    /// TLS 1.3 with a client certificate.
    V13Mutual,
}

/// Reads to the end through the peer's TLS read channel.
async fn read_to_end_tls(input: &mut ByteReadChannel) -> Seen {
    // `discard` does not say how many bytes it skipped before an error: the channel's count.
    let before = input.total_bytes_read();
    let end = loop {
        match within(input.discard(u64::MAX)).await {
            Ok(0) => break Ok(()),
            Ok(_) => {}
            Err(e) => break Err(e),
        }
    };
    let got = usize::try_from(input.total_bytes_read() - before).unwrap();
    match end {
        Ok(()) => Seen::Clean(got),
        Err(e) if is_truncated(&e) => Seen::Truncated(got),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Seen::Reset(got),
        Err(e) => panic!("the peer read {e:?}"),
    }
}

/// One TLS cell: our side (on its own selector and runtime) ends as `way` says, the peer
/// reads to the end. Our client never reads (TLS 1.3: the server's tickets stay unread).
async fn tls_cell(side: Side, tls: Tls, way: Way, load: Load) -> Seen {
    tls_cell_over(Net::Tcp, side, tls, way, load).await
}

/// A TLS connection over `net`: `listener_selector`'s listener accepts it with
/// `server_config`, a client of `client_selector` connects with `client_config` (for the name
/// `localhost`); returns (server side, client side).
async fn tls_pair_over(
    net: Net,
    client_selector: &SelectorManager,
    listener_selector: &SelectorManager,
    server_config: &net_tls::TlsServerConfig,
    client_config: net_tls::TlsConfig,
    dir: &net_tests::TempDir,
) -> (net_tls::TlsSocket, net_tls::TlsSocket) {
    use net_tls::TlsExt;
    match net {
        Net::Tcp => {
            let listener = tcp_listener(listener_selector).await;
            pair(client_selector, &listener, server_config, client_config).await
        }
        Net::Unix => {
            let address = net_sockets::UnixSocketAddress::new(dir.path().join("tls"));
            let listener = net_sockets::a_socket(listener_selector)
                .tcp()
                .bind(address.clone())
                .await
                .unwrap();
            // A Unix connect completes once the kernel queued it: accept after it.
            let socket = within(
                net_sockets::a_socket(client_selector)
                    .tcp()
                    .connect(address),
            )
            .await
            .unwrap();
            let accepted = within(listener.accept()).await.unwrap();
            let (server, client) = within(async {
                tokio::join!(
                    accepted.tls_server(server_config),
                    socket.tls(client_config)
                )
            })
            .await;
            (server.unwrap(), client.unwrap())
        }
    }
}

/// [`tls_cell`] over `net`.
async fn tls_cell_over(net: Net, side: Side, tls: Tls, way: Way, load: Load) -> Seen {
    let dir = net_tests::TempDir::new("review-ends-tls");
    use net_tls::TlsVersion;
    let ca = TestCa::new("review ends matrix ca");
    let client_leaf = ca.client("review ends client");
    let server_leaf = ca.server(&["localhost"]);
    let (server_config, client_config) = match tls {
        Tls::V12 => (
            server_leaf.server_config(),
            ca.client_config()
                .server_name("localhost")
                .protocol_versions(&[TlsVersion::Tls12]),
        ),
        Tls::V13 => (
            server_leaf.server_config(),
            ca.client_config()
                .server_name("localhost")
                .protocol_versions(&[TlsVersion::Tls13]),
        ),
        Tls::V13Mutual => (
            server_leaf.mutual_tls_server_config(&ca),
            client_leaf.client_certificate(ca.client_config().server_name("localhost")),
        ),
    };
    let (server_config, client_config) = (
        server_config.build().unwrap(),
        client_config.build().unwrap(),
    );
    let (ours_selector, mut runtime) = own_selector();
    let peer_selector = SelectorManager::new();
    let (ours, peer) = match side {
        Side::Client => {
            let (server, client) = tls_pair_over(
                net,
                &ours_selector,
                &peer_selector,
                &server_config,
                client_config,
                &dir,
            )
            .await;
            (client, server)
        }
        Side::Server => {
            let (server, client) = tls_pair_over(
                net,
                &peer_selector,
                &ours_selector,
                &server_config,
                client_config,
                &dir,
            )
            .await;
            (server, client)
        }
    };
    assert_eq!(
        ours.protocol_version(),
        Some(if tls == Tls::V12 {
            TlsVersion::Tls12
        } else {
            TlsVersion::Tls13
        })
    );
    let mut peer = peer.connection().unwrap();
    let mut connection = ours.connection().unwrap();
    if let Load::PeerSentUnread(n) = load {
        peer.output.write_fully(&vec![b'p'; n]).await.unwrap();
        within(peer.output.flush()).await.unwrap();
    }
    connection
        .output
        .write_fully(&net_tests::payload(SENT))
        .await
        .unwrap();
    within(connection.output.flush()).await.unwrap();
    if load == Load::Unsent {
        connection
            .output
            .write_fully(&[b'u'; UNSENT])
            .await
            .unwrap();
    }
    if load == Load::WriteCutShort {
        write_cut_short(&mut connection.output).await;
    }
    end_ours(way, connection, &ours_selector, &mut runtime).await;
    let seen = read_to_end_tls(&mut peer.input).await;
    peer.socket.close();
    if let Some(runtime) = runtime {
        runtime.shutdown_background();
    }
    seen
}

/// What the docs promise a TLS peer sees.
fn tls_documented(way: Way, load: Load, seen: Seen) -> bool {
    let flushes = matches!(way, Way::CloseGracefully | Way::FlushAndCloseThenDrop);
    let all = SENT
        + if load == Load::Unsent && flushes {
            UNSENT
        } else {
            0
        };
    let clean = seen == Seen::Clean(all);
    // No `close_notify` (a drop, a cut): the FIN of a truncated stream, after everything sent.
    let truncated = seen == Seen::Truncated(SENT);
    // Bytes thrown away: never a clean end (no `close_notify`; a reset where the connection
    // decides that bytes were lost).
    let not_clean = matches!(seen, Seen::Truncated(n) | Seen::Reset(n) if n <= SENT);
    let closes = matches!(way, Way::Close | Way::ReadCancelThenClose);
    match load {
        Load::Nothing if closes || flushes => clean,
        Load::Nothing => truncated,
        Load::Unsent if flushes => clean,
        Load::Unsent => not_clean,
        // The close takes the peer's last record in before its `close_notify` (guarantees:
        // "We `close()` a TLS socket while the peer's last data waits unread in it").
        Load::PeerSentUnread(10) if closes || flushes => clean,
        // More than the close takes in (its records after the first that carries data): as a
        // plain socket closed with input unread, a reset, unless the peer read our
        // `close_notify` first.
        Load::PeerSentUnread(_) if closes || flushes => {
            clean || matches!(seen, Seen::Reset(n) if n <= SENT)
        }
        // No `close_notify`: a truncation, or a reset with input unread.
        Load::PeerSentUnread(_) => truncated || matches!(seen, Seen::Reset(n) if n <= SENT),
        // Never `close_notify` after part of a write.
        Load::WriteCutShort => {
            matches!(seen, Seen::Truncated(n) | Seen::Reset(n) if n < SENT + CUT)
        }
    }
}

/// Every TLS cell of one side: TLS 1.2, 1.3 and mutual TLS, every way, every load.
async fn tls_cells_of(side: Side) -> Vec<String> {
    let mut wrong = Vec::new();
    for tls in [Tls::V12, Tls::V13, Tls::V13Mutual] {
        for way in WAYS {
            for load in LOADS {
                let seen = tls_cell(side, tls, way, load).await;
                eprintln!("{side:?} {tls:?} {way:?} {load:?}: {seen:?}");
                if !tls_documented(way, load, seen) {
                    wrong.push(format!("{side:?} {tls:?} {way:?} {load:?}: {seen:?}"));
                }
            }
        }
    }
    wrong
}

/// Every way our TLS client ends (TLS 1.2, 1.3, mutual TLS; it never reads, so a TLS 1.3
/// server's session tickets stay unread in its socket), with nothing left, bytes unsent, the
/// peer's data unread, or a write cut short, ends as the docs say for its peer (see
/// `tls_documented`). Before the cut took the session's own messages in, its selector's close,
/// graceful shutdown and runtime end were a reset for TLS 1.3 (6 cells).
#[tokio::test]
async fn every_way_a_tls_client_ends_is_what_the_docs_say_its_peer_sees() {
    let wrong = tls_cells_of(Side::Client).await;
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The same over a Unix socket, TLS 1.3, either side: where the kernel would answer a close
/// with the peer's input unread with `ECONNRESET` after every byte, the session's own
/// messages are taken in first as over TCP.
#[tokio::test]
async fn every_way_a_tls13_connection_over_unix_ends_is_what_the_docs_say_its_peer_sees() {
    let mut wrong = Vec::new();
    for side in [Side::Client, Side::Server] {
        for way in WAYS {
            for load in LOADS {
                let seen = tls_cell_over(Net::Unix, side, Tls::V13, way, load).await;
                eprintln!("Unix {side:?} {way:?} {load:?}: {seen:?}");
                if !tls_documented(way, load, seen) {
                    wrong.push(format!("Unix {side:?} {way:?} {load:?}: {seen:?}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The same for our TLS server, whose peer is a client of this crate.
#[tokio::test]
async fn every_way_a_tls_server_ends_is_what_the_docs_say_its_peer_sees() {
    let wrong = tls_cells_of(Side::Server).await;
    assert!(wrong.is_empty(), "{wrong:#?}");
}

// ----- Through `into_stream` ------------------------------------------------------------------

/// A socket turned into a stream (tokio's I/O traits), written to, then `shutdown()` (a
/// half-close) and dropped, or dropped without it: its peer reads every byte, then a clean end
/// after the shutdown (TLS: `close_notify`), and a truncation after a bare drop (TLS; plain:
/// the FIN), also from a TLS 1.3 client that never read the server's tickets.
#[tokio::test]
async fn a_stream_shut_down_ends_cleanly_and_a_stream_dropped_ends_truncated() {
    use tokio::io::AsyncWriteExt;
    let selector = SelectorManager::new();
    for shutdown in [true, false] {
        // Plain TCP.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (ours, peer) = tokio::join!(
            net_sockets::a_socket(&selector)
                .tcp()
                .connect(("127.0.0.1", port)),
            async { listener.accept().await.unwrap().0 }
        );
        let mut stream = ours.unwrap().into_stream().unwrap();
        within(stream.write_all(&net_tests::payload(SENT)))
            .await
            .unwrap();
        if shutdown {
            within(stream.shutdown()).await.unwrap();
        }
        drop(stream);
        assert_eq!(
            read_to_end_plain(peer).await,
            Seen::Clean(SENT),
            "plain, {shutdown}"
        );

        // TLS 1.3: our client never reads.
        let ca = TestCa::new("review ends stream ca");
        let server_config = ca.server(&["localhost"]).server_config().build().unwrap();
        let listener = tcp_listener(&selector).await;
        let client_config = ca.client_config().build().unwrap();
        let (server, client) = pair(&selector, &listener, &server_config, client_config).await;
        let mut peer = server.connection().unwrap();
        let mut stream = client.into_stream().unwrap();
        within(stream.write_all(&net_tests::payload(SENT)))
            .await
            .unwrap();
        if shutdown {
            within(stream.shutdown()).await.unwrap();
        }
        drop(stream);
        let expected = if shutdown {
            Seen::Clean(SENT)
        } else {
            Seen::Truncated(SENT)
        };
        assert_eq!(
            read_to_end_tls(&mut peer.input).await,
            expected,
            "tls, {shutdown}"
        );
        peer.socket.close();
    }
}

// ----- The reverse: our view of each way the peer ends ----------------------------------------

/// How the peer ends, after `one\ntwo\nthr` (a last line without its newline).
#[derive(Clone, Copy, Debug, PartialEq)]
enum PeerEnd {
    /// tokio's `shutdown()` (TLS: `close_notify`), then the drop: FIN.
    Clean,
    /// A drop without `shutdown()`: FIN (TLS: without `close_notify`).
    Drop,
    /// `SO_LINGER` 0, then the drop: a reset.
    Reset,
}

/// What our read channel returned: the lines, then the end (`None` for a clean one, else the
/// error's kind and whether it is a TLS truncation), twice (an end is reported again).
type OurView = (Vec<String>, Vec<Option<(io::ErrorKind, bool)>>);

async fn our_view(input: &mut ByteReadChannel) -> OurView {
    let mut lines = Vec::new();
    let mut ends = Vec::new();
    while ends.len() < 2 {
        match within(input.read_utf8_line(64)).await {
            Ok(Some(line)) => lines.push(line),
            Ok(None) => ends.push(None),
            Err(e) => ends.push(Some((e.kind(), is_truncated(&e)))),
        }
    }
    (lines, ends)
}

/// Ends a tokio peer (`shutdown` for `Clean`), after its last bytes.
async fn end_peer<S: tokio::io::AsyncWrite + Unpin>(
    mut peer: S,
    end: PeerEnd,
    tcp: impl Fn(&S) -> &tokio::net::TcpStream,
) {
    use tokio::io::AsyncWriteExt;
    // Without Nagle's delay, which would keep the last bytes back behind the TLS server's
    // unacknowledged session tickets, for its reset to throw away.
    tcp(&peer).set_nodelay(true).unwrap();
    within(peer.write_all(b"one\ntwo\nthr")).await.unwrap();
    within(peer.flush()).await.unwrap();
    match end {
        PeerEnd::Clean => within(peer.shutdown()).await.unwrap(),
        PeerEnd::Drop => {}
        PeerEnd::Reset => socket2::SockRef::from(tcp(&peer))
            .set_linger(Some(Duration::ZERO))
            .unwrap(),
    }
    drop(peer);
}

/// Our plain and TLS 1.3 clients see each way a tokio (tokio-rustls) server ends as the docs
/// say: a clean end after every line (the last one without its newline included); a reset
/// after the whole lines only (`ConnectionReset`, again on the next read); over TLS, an end
/// without `close_notify` after the whole lines only (`UnexpectedEof`, `Truncated`, again).
#[tokio::test]
async fn our_side_sees_each_way_the_peer_ends_as_documented() {
    use net_tests::tls::rustls_server;
    let selector = SelectorManager::new();
    let ca = TestCa::new("review ends reverse ca");
    let leaf = ca.server(&["localhost"]);
    let acceptor = tokio_rustls::TlsAcceptor::from(rustls_server(&leaf));
    let whole = || vec!["one".to_owned(), "two".to_owned()];
    let all = || vec!["one".to_owned(), "two".to_owned(), "thr".to_owned()];
    let reset = Some((io::ErrorKind::ConnectionReset, false));
    let truncated = Some((io::ErrorKind::UnexpectedEof, true));
    for end in [PeerEnd::Clean, PeerEnd::Drop, PeerEnd::Reset] {
        // Plain TCP: a drop is a FIN, as a shutdown.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (ours, peer) = tokio::join!(
            net_sockets::a_socket(&selector)
                .tcp()
                .connect(("127.0.0.1", port)),
            async { listener.accept().await.unwrap().0 }
        );
        let mut ours = ours.unwrap();
        let mut input = ours.open_read_channel().unwrap();
        end_peer(peer, end, |s| s).await;
        let expected = match end {
            PeerEnd::Clean | PeerEnd::Drop => (all(), vec![None, None]),
            PeerEnd::Reset => (whole(), vec![reset, reset]),
        };
        assert_eq!(our_view(&mut input).await, expected, "plain, {end:?}");
        ours.close();

        // TLS 1.3, the peer a tokio-rustls server.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let client_config = ca.client_config().build().unwrap();
        let (ours, peer) = tokio::join!(
            net_tests::tls::connect(&selector, "localhost", port, client_config),
            async {
                let tcp = listener.accept().await.unwrap().0;
                acceptor.accept(tcp).await.unwrap()
            }
        );
        let mut ours = ours.unwrap();
        let mut input = ours.open_read_channel().unwrap();
        end_peer(peer, end, |s| s.get_ref().0).await;
        let expected = match end {
            PeerEnd::Clean => (all(), vec![None, None]),
            PeerEnd::Drop => (whole(), vec![truncated, truncated]),
            PeerEnd::Reset => (whole(), vec![reset, reset]),
        };
        assert_eq!(our_view(&mut input).await, expected, "tls, {end:?}");
        ours.close();
    }
}

// ----- After a write that timed out -----------------------------------------------------------

/// A TLS 1.3 client of ours (it never reads: the server's tickets stay unread in its socket)
/// whose write times out (`socket_timeout`, a server that reads nothing) and which then
/// `close()`s: no `close_notify` (guarantees: "Our write fails ... then `flush_and_close` /
/// `close`"), and the FIN of a truncated stream, not a reset: the server reads every byte the
/// client's socket took, then `Truncated`.
#[tokio::test]
async fn a_tls13_client_closed_after_a_timed_out_write_is_truncated_after_everything_sent() {
    use net_tls::TlsExt;
    const TIMEOUT: Duration = Duration::from_millis(200);
    const CHUNK: usize = 64 * 1024;
    let selector = SelectorManager::new();
    let ca = TestCa::new("review ends timeout ca");
    let server_config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = tcp_listener(&selector).await;
    let port = listener.port().unwrap();
    let client_config = ca.client_config().build().unwrap();
    let (server, client) = tokio::join!(net_tests::tls::accept(&listener, &server_config), async {
        let socket = net_sockets::a_socket(&selector)
            .tcp()
            .socket_timeout(TIMEOUT)
            .connect(("localhost", port))
            .await
            .unwrap();
        socket.tls(client_config).await.unwrap()
    });
    let mut client = client;
    let mut output = client.open_write_channel(true).unwrap();
    let chunk = net_tests::payload(CHUNK);
    // Far more than loopback's buffers hold: a write must stall, then time out.
    let mut failure = None;
    for _ in 0..1024 {
        if let Err(e) = within(output.write_fully(&chunk)).await {
            failure = Some(e);
            break;
        }
    }
    assert!(
        matches!(failure, Some(net_io::Error::Timeout)),
        "{failure:?}"
    );
    client.close();
    let mut peer = server.connection().unwrap();
    let seen = read_to_end_tls(&mut peer.input).await;
    assert!(matches!(seen, Seen::Truncated(n) if n > 0), "{seen:?}");
    peer.socket.close();
    drop(output);
}

// ----- Against python3's `ssl` (OpenSSL), which sends two session tickets -----------------------

/// A python3 `ssl` server, TLS 1.3 (OpenSSL sends two session tickets after the handshake): it
/// prints `listening at 127.0.0.1:PORT`, then for each connection reads to the end (ragged
/// ends not suppressed) and prints `BYTES clean`, `BYTES eof` (no `close_notify`) or `BYTES
/// reset`.
const PYTHON_READER: &str = r#"
import socket, ssl, sys
chain, key = sys.argv[1:3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(chain, key)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
# Some Pythons (Debian's 3.11.2) set this by default and take a missing close_notify for a
# clean end: asked to tell them apart, as the others do (they then raise a plain SSLError
# for it, not SSLEOFError).
ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
server = socket.create_server(("127.0.0.1", 0))
print("listening at 127.0.0.1:%d" % server.getsockname()[1], flush=True)
while True:
    raw, _ = server.accept()
    tls = ctx.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False)
    got, end = 0, "clean"
    try:
        while True:
            data = tls.recv(65536)
            if not data:
                break
            got += len(data)
    except ssl.SSLEOFError:
        end = "eof"
    except ConnectionResetError:
        end = "reset"
    except ssl.SSLError as e:
        eof = getattr(e, "reason", None) == "UNEXPECTED_EOF_WHILE_READING"
        end = "eof" if eof else "other:%r" % (e,)
    except Exception as e:
        end = "other:%r" % (e,)
    print(got, end, flush=True)
    raw.close()
"#;

/// Returns once `socket`'s kernel socket holds bytes not read yet (polled every millisecond).
async fn until_readable<T: net_sockets::Transport>(socket: &net_sockets::Socket<T>) {
    loop {
        let held = socket
            .with_sock_ref(|s| s.peek(&mut [std::mem::MaybeUninit::uninit(); 1]))
            .is_ok_and(|n| n > 0);
        if held {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Our TLS 1.3 client, which never reads (OpenSSL's session tickets stay unread in its
/// socket), ends each way against python3's `ssl`: a clean end (OpenSSL read our
/// `close_notify`) after `close`, `close_gracefully` and `flush_and_close`, after every byte;
/// `SSLEOFError` (no `close_notify`) after a drop, a cut and a `close` with bytes unsent, after
/// every byte sent. (Guard: the interop of our clean and cut ends. This python reports a reset
/// in the middle of its read as `SSLEOFError` too, so the FIN-or-reset question is left to the
/// tests above.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_python_ssl_our_tls13_client_that_never_read_ends_as_documented() {
    use net_tests::harness::{Process, path_arg, port_at_end};
    let pki = net_tests::pki::Pki::generate();
    let files = pki.temp_files();
    let mut python = Process::start(
        "python3",
        [
            "-c",
            PYTHON_READER,
            path_arg(&files.server_chain),
            path_arg(&files.server_key),
        ],
    );
    let port = port_at_end(&tokio::task::block_in_place(|| python.stdout_line()));
    let cells = [
        (Way::Close, Load::Nothing, format!("{SENT} clean")),
        (Way::CloseGracefully, Load::Nothing, format!("{SENT} clean")),
        (
            Way::FlushAndCloseThenDrop,
            Load::Unsent,
            format!("{} clean", SENT + UNSENT),
        ),
        (Way::Close, Load::Unsent, format!("{SENT} eof")),
        (Way::Drop, Load::Nothing, format!("{SENT} eof")),
        (
            Way::Outer(OuterEnd::SelectorClose),
            Load::Nothing,
            format!("{SENT} eof"),
        ),
        (
            Way::Outer(OuterEnd::SelectorShutdown),
            Load::Nothing,
            format!("{SENT} eof"),
        ),
        (
            Way::Outer(OuterEnd::RuntimeEnd),
            Load::Nothing,
            format!("{SENT} eof"),
        ),
    ];
    let mut wrong = Vec::new();
    for (way, load, expected) in cells {
        let (selector, mut runtime) = own_selector();
        let config = pki.client_config().build().unwrap();
        let tls = within(net_tests::tls::connect(
            &selector,
            "localhost",
            port,
            config,
        ))
        .await
        .unwrap();
        // OpenSSL sends its tickets as its handshake ends: wait until they are in our socket.
        within(until_readable(&tls)).await;
        let mut connection = tls.connection().unwrap();
        connection
            .output
            .write_fully(&net_tests::payload(SENT))
            .await
            .unwrap();
        within(connection.output.flush()).await.unwrap();
        if load == Load::Unsent {
            connection
                .output
                .write_fully(&[b'u'; UNSENT])
                .await
                .unwrap();
        }
        end_ours(way, connection, &selector, &mut runtime).await;
        let line = tokio::task::block_in_place(|| python.stdout_line());
        if line != expected {
            wrong.push(format!("{way:?} {load:?}: {line} (documented: {expected})"));
        }
        if let Some(runtime) = runtime {
            runtime.shutdown_background();
        }
    }
    python.kill();
    assert!(wrong.is_empty(), "{wrong:#?}");
}
