//! The contracts of tokio's I/O traits, polled by hand, on each of our implementations over
//! real sockets: a plain `SocketStream`, a `TlsStream` and a connection's channels
//! (`ByteReadChannel`, `ByteWriteChannel`), each against a peer of tokio's own (a `TcpStream`,
//! a tokio-rustls client), and the in-memory `ByteChannel`'s ends; the same checks pass on
//! tokio's `TcpStream` (and its `BufReader`), the reference.
//!
//! - A read into no room is `Ready(Ok(()))` at once and takes nothing (the bytes waiting are
//!   read next), also after the end; `Ready(Ok(()))` with nothing read means the end only: a
//!   read with nothing there waits.
//! - A read into a buffer partly filled (and otherwise uninitialised) appends after what is
//!   filled and leaves that as it was.
//! - A write of nothing, and a vectored write of empty slices only, is `Ready(Ok(0))`; a
//!   vectored write of more slices than `IOV_MAX` (1024) takes a part, and everything arrives
//!   in order.
//! - A flush and a shutdown repeated after they were `Ready(Ok)` are `Ready(Ok)` again.
//! - A read, a fill, a write, a flush or a shutdown that waits, polled again with another waker
//!   (the task moved), wakes that one; a shutdown that waited delivers everything, then the
//!   end.
//! - `AsyncBufRead::consume` of more than `poll_fill_buf` gave is clamped to what it gave: the
//!   bytes that come later are read in full.

use std::future::poll_fn;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use net_sockets::SelectorManager;
use net_tests::fault::raw_peer_of;
use net_tests::loopback::tcp_listener;
use net_tests::pki::TestCa;
use net_tests::tls::{accept_stream, rustls_client};
use net_tests::{payload, within};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// The sizes of the reads: small, and past a channel's chunk (64 KiB), whose reads then go
/// straight to the socket.
const ROOMS: [usize; 2] = [16, 128 * 1024];

/// A waker that notes that it was woken.
#[derive(Default)]
struct Flag(AtomicBool);

impl Flag {
    fn waker() -> (Arc<Flag>, Waker) {
        let flag = Arc::new(Flag::default());
        (Arc::clone(&flag), Waker::from(flag))
    }

    fn woken(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Waits (bounded by `within`) until the waker is woken.
    async fn wait(&self, what: &str) {
        let woken = within(async {
            for _ in 0..10_000 {
                if self.woken() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            false
        })
        .await;
        assert!(woken, "{what}: the latest waker was never woken");
    }
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn poll_read_with<R: AsyncRead + Unpin>(
    reader: &mut R,
    waker: &Waker,
    buf: &mut ReadBuf<'_>,
) -> Poll<std::io::Result<()>> {
    Pin::new(reader).poll_read(&mut Context::from_waker(waker), buf)
}

fn poll_write_with<W: AsyncWrite + Unpin>(
    writer: &mut W,
    waker: &Waker,
    buf: &[u8],
) -> Poll<std::io::Result<usize>> {
    Pin::new(writer).poll_write(&mut Context::from_waker(waker), buf)
}

/// The read side's contract: `reader` reads what `peer` writes.
async fn read_contract<R, P>(what: &str, room: usize, reader: &mut R, peer: &mut P)
where
    R: AsyncRead + Unpin,
    P: AsyncWrite + Unpin,
{
    // Nothing there: a read waits (never `Ready(Ok)` with nothing, which is the end), and
    // so does the same read polled again with another waker; the latest is woken.
    let what = &format!("{what} ({room}-byte reads)");
    let mut room = vec![0u8; room];
    let (_, first_waker) = Flag::waker();
    let (second, second_waker) = Flag::waker();
    let mut buf = ReadBuf::new(&mut room);
    assert!(
        poll_read_with(reader, &first_waker, &mut buf).is_pending(),
        "{what}: a read with nothing there"
    );
    assert!(
        poll_read_with(reader, &second_waker, &mut buf).is_pending(),
        "{what}: the read polled again"
    );
    assert!(buf.filled().is_empty(), "{what}");
    peer.write_all(b"abc").await.unwrap();
    peer.flush().await.unwrap();
    second.wait(&format!("{what}: read")).await;

    // A read into no room: at once, nothing taken, no end.
    let mut none = ReadBuf::new(&mut []);
    match poll_read_with(reader, Waker::noop(), &mut none) {
        Poll::Ready(Ok(())) => {}
        other => panic!("{what}: a read into no room: {other:?}"),
    }

    // A read into a buffer partly filled, the rest uninitialised: appended after it.
    let mut storage = vec![MaybeUninit::<u8>::uninit(); room.len() + 2];
    let mut buf = ReadBuf::uninit(&mut storage);
    buf.put_slice(b"<<");
    within(poll_fn(|cx| Pin::new(&mut *reader).poll_read(cx, &mut buf)))
        .await
        .unwrap();
    assert_eq!(buf.filled(), b"<<abc", "{what}: a partly filled buffer");
    assert!(buf.initialized().len() >= buf.filled().len(), "{what}");

    // More than fits: what does not is read next.
    // (Written while read: an in-memory pipe holds less.)
    let more = payload(room.len() + 5);
    let write = async {
        peer.write_all(&more).await.unwrap();
        peer.flush().await.unwrap();
    };
    let read = async {
        let mut got = Vec::new();
        while got.len() < more.len() {
            let mut buf = ReadBuf::new(&mut room);
            poll_fn(|cx| Pin::new(&mut *reader).poll_read(cx, &mut buf))
                .await
                .unwrap();
            assert!(
                !buf.filled().is_empty(),
                "{what}: the end in the midst of the bytes"
            );
            got.extend_from_slice(buf.filled());
        }
        got
    };
    let ((), got) = within(async { tokio::join!(write, read) }).await;
    assert!(got == more, "{what}: the bytes that did not fit");

    // Everything read, the peer still there: a read waits again.
    let mut buf = ReadBuf::new(&mut room);
    assert!(
        poll_read_with(reader, Waker::noop(), &mut buf).is_pending(),
        "{what}: a read after everything was read"
    );

    // The end: `Ready(Ok)` with nothing, every time; a read into no room too.
    peer.write_all(b"z").await.unwrap();
    peer.shutdown().await.unwrap();
    let mut rest = Vec::new();
    within(reader.read_to_end(&mut rest)).await.unwrap();
    assert_eq!(rest, b"z", "{what}");
    for _ in 0..2 {
        let mut buf = ReadBuf::new(&mut room);
        match poll_read_with(reader, Waker::noop(), &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => {}
            other => panic!("{what}: a read after the end: {other:?}"),
        }
        let mut none = ReadBuf::new(&mut []);
        match poll_read_with(reader, Waker::noop(), &mut none) {
            Poll::Ready(Ok(())) => {}
            other => panic!("{what}: a read into no room after the end: {other:?}"),
        }
    }
}

/// The write side's contract: `writer` writes to `peer`, which reads nothing until the test
/// lets it.
async fn write_contract<W, P>(what: &str, writer: &mut W, mut peer: P)
where
    W: AsyncWrite + Unpin,
    P: AsyncRead + Unpin + Send + 'static,
{
    // Writes of nothing.
    match poll_write_with(writer, Waker::noop(), &[]) {
        Poll::Ready(Ok(0)) => {}
        other => panic!("{what}: a write of nothing: {other:?}"),
    }
    let empty = [IoSlice::new(&[]), IoSlice::new(&[]), IoSlice::new(&[])];
    let written =
        Pin::new(&mut *writer).poll_write_vectored(&mut Context::from_waker(Waker::noop()), &empty);
    match written {
        Poll::Ready(Ok(0)) => {}
        other => panic!("{what}: a vectored write of empty slices: {other:?}"),
    }
    match Pin::new(&mut *writer).poll_write_vectored(&mut Context::from_waker(Waker::noop()), &[]) {
        Poll::Ready(Ok(0)) => {}
        other => panic!("{what}: a vectored write of no slices: {other:?}"),
    }

    // More slices than IOV_MAX, an empty one before each byte: a part is taken each time,
    // and the rest is written after it, in order.
    let many = payload(3000);
    let mut at = 0;
    while at < many.len() {
        let slices: Vec<IoSlice<'_>> = many[at..]
            .chunks(1)
            .flat_map(|b| [IoSlice::new(&[]), IoSlice::new(b)])
            .collect();
        let n = within(poll_fn(|cx| {
            Pin::new(&mut *writer).poll_write_vectored(cx, &slices)
        }))
        .await
        .unwrap();
        assert!(
            n > 0 && n <= many.len() - at,
            "{what}: {n} of {}",
            many.len() - at
        );
        at += n;
    }
    within(writer.flush()).await.unwrap();
    let mut got = vec![0u8; many.len()];
    within(peer.read_exact(&mut got)).await.unwrap();
    assert!(got == many, "{what}: the vectored writes' bytes");

    // Writes until the socket is full, then the same write polled again with another waker:
    // the peer's reads wake that one.
    let chunk = payload(64 * 1024);
    let mut pending = false;
    for _ in 0..10_000 {
        match poll_write_with(writer, Waker::noop(), &chunk) {
            Poll::Ready(Ok(n)) => assert!(n > 0, "{what}"),
            Poll::Ready(Err(e)) => panic!("{what}: a write to a full socket: {e}"),
            Poll::Pending => {
                pending = true;
                break;
            }
        }
        match Pin::new(&mut *writer).poll_flush(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => panic!("{what}: a flush to a full socket: {e}"),
            Poll::Pending => {
                pending = true;
                break;
            }
        }
    }
    assert!(pending, "{what}: the socket never filled");
    // A write of nothing to a full socket: nothing written (tokio's `TcpStream` waits for room
    // first).
    match poll_write_with(writer, Waker::noop(), &[]) {
        Poll::Ready(Ok(0)) | Poll::Pending => {}
        other => panic!("{what}: a write of nothing to a full socket: {other:?}"),
    }
    let (_, first_waker) = Flag::waker();
    let (second, second_waker) = Flag::waker();
    let _ = poll_write_with(writer, &first_waker, &chunk);
    let again = poll_write_with(writer, &second_waker, &chunk);
    let flushed = Pin::new(&mut *writer).poll_flush(&mut Context::from_waker(&second_waker));
    assert!(
        again.is_pending() || flushed.is_pending(),
        "{what}: a full socket took a write and a flush: {again:?}, {flushed:?}"
    );
    let drain = tokio::spawn(async move {
        let mut sink = tokio::io::sink();
        tokio::io::copy(&mut peer, &mut sink).await
    });
    second.wait(&format!("{what}: write")).await;

    // Flush and shutdown, each twice.
    within(writer.flush()).await.unwrap();
    within(writer.flush()).await.unwrap();
    within(writer.shutdown()).await.unwrap();
    within(writer.shutdown()).await.unwrap();
    let copied = within(drain).await.unwrap().unwrap();
    assert!(copied > 0, "{what}");
}

/// A shutdown that waits for room, polled again with another waker: the peer's reads wake that
/// one, and the peer gets everything and then the end.
async fn shutdown_contract<W, P>(what: &str, writer: &mut W, peer: P)
where
    W: AsyncWrite + Unpin,
    P: AsyncRead + Unpin + Send + 'static,
{
    let chunk = payload(64 * 1024);
    let mut written = 0u64;
    let mut full = false;
    for _ in 0..10_000 {
        match poll_write_with(writer, Waker::noop(), &chunk) {
            Poll::Ready(Ok(n)) => written += n as u64,
            Poll::Ready(Err(e)) => panic!("{what}: a write to a full socket: {e}"),
            Poll::Pending => {
                full = true;
                break;
            }
        }
    }
    assert!(full, "{what}: the socket never filled");
    let (_, first_waker) = Flag::waker();
    let (second, second_waker) = Flag::waker();
    let drain = |mut peer: P| {
        tokio::spawn(async move {
            let mut sink = tokio::io::sink();
            tokio::io::copy(&mut peer, &mut sink).await
        })
    };
    let shutdown_with = |writer: &mut W, waker: &Waker| {
        Pin::new(writer).poll_shutdown(&mut Context::from_waker(waker))
    };
    let drained = match shutdown_with(writer, &first_waker) {
        Poll::Ready(Ok(())) => drain(peer),
        Poll::Ready(Err(e)) => panic!("{what}: a shutdown with the socket full: {e}"),
        Poll::Pending => {
            assert!(
                shutdown_with(writer, &second_waker).is_pending(),
                "{what}: the shutdown polled again"
            );
            let drained = drain(peer);
            second.wait(&format!("{what}: shutdown")).await;
            within(writer.shutdown()).await.unwrap();
            drained
        }
    };
    within(writer.shutdown()).await.unwrap();
    let copied = within(drained).await.unwrap().unwrap();
    assert_eq!(copied, written, "{what}: what the peer got before the end");
}

/// A plain `SocketStream` follows the contracts, as tokio's `TcpStream` (checked alongside).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_socket_stream_follows_tokios_io_contracts() {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;

    // tokio's own, as the reference.
    for room in ROOMS {
        let (mut tokio_stream, mut peer) = tokio_pair().await;
        read_contract("tokio", room, &mut tokio_stream, &mut peer).await;
    }
    let (mut tokio_stream, peer) = tokio_pair().await;
    write_contract("tokio", &mut tokio_stream, peer).await;
    let (mut tokio_stream, peer) = tokio_pair().await;
    shutdown_contract("tokio", &mut tokio_stream, peer).await;
    let (tokio_stream, mut peer) = tokio_pair().await;
    let mut buffered = tokio::io::BufReader::new(tokio_stream);
    buf_read_contract("tokio's BufReader", &mut buffered, &mut peer).await;

    for room in ROOMS {
        let (mut peer, socket) = raw_peer_of(&server).await;
        let mut stream = socket.into_stream().unwrap();
        read_contract("plain", room, &mut stream, &mut peer).await;
    }
    let (peer, socket) = raw_peer_of(&server).await;
    let mut stream = socket.into_stream().unwrap();
    write_contract("plain", &mut stream, peer).await;
    let (peer, socket) = raw_peer_of(&server).await;
    let mut stream = socket.into_stream().unwrap();
    shutdown_contract("plain", &mut stream, peer).await;
}

/// A connection of tokio's own: (the accepted side, the peer).
async fn tokio_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (accepted, _) = listener.accept().await.unwrap();
    (accepted, peer)
}

/// A `TlsStream` follows the contracts, against a tokio-rustls client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_stream_follows_tokios_io_contracts() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let ca = TestCa::new("contracts ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    for room in ROOMS {
        let (mut stream, mut peer) = accept_stream(&listener, &config, rustls_client(&ca)).await;
        read_contract("tls", room, &mut stream, &mut peer).await;
    }
    let (mut stream, peer) = accept_stream(&listener, &config, rustls_client(&ca)).await;
    write_contract("tls", &mut stream, peer).await;
    let (mut stream, peer) = accept_stream(&listener, &config, rustls_client(&ca)).await;
    shutdown_contract("tls", &mut stream, peer).await;
}

/// A connection's channels follow the contracts, `AsyncBufRead`'s too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connections_channels_follow_tokios_io_contracts() {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    for auto_flush in [false, true] {
        for room in ROOMS {
            let (mut peer, mut socket) = raw_peer_of(&server).await;
            let mut input = socket.open_read_channel().unwrap();
            read_contract("read channel", room, &mut input, &mut peer).await;
        }
        let (peer, mut socket) = raw_peer_of(&server).await;
        let mut output = socket.open_write_channel(auto_flush).unwrap();
        write_contract("write channel", &mut output, peer).await;
        let (peer, mut socket) = raw_peer_of(&server).await;
        let mut output = socket.open_write_channel(auto_flush).unwrap();
        shutdown_contract("write channel", &mut output, peer).await;
    }

    let (mut peer, mut socket) = raw_peer_of(&server).await;
    let mut input = socket.open_read_channel().unwrap();
    buf_read_contract("read channel", &mut input, &mut peer).await;
}

/// `AsyncBufRead`'s contract: `reader` reads what `peer` writes.
async fn buf_read_contract<R, P>(what: &str, reader: &mut R, peer: &mut P)
where
    R: AsyncBufRead + Unpin,
    P: AsyncWrite + Unpin,
{
    let fill_with = |reader: &mut R, waker: &Waker| match Pin::new(reader)
        .poll_fill_buf(&mut Context::from_waker(waker))
    {
        Poll::Ready(filled) => Poll::Ready(filled.map(<[u8]>::to_vec)),
        Poll::Pending => Poll::Pending,
    };
    // Nothing there: the fill waits, polled again with another waker too, which is woken.
    let (_, first_waker) = Flag::waker();
    let (second, second_waker) = Flag::waker();
    assert!(
        fill_with(reader, &first_waker).is_pending(),
        "{what}: a fill with nothing there"
    );
    assert!(
        fill_with(reader, &second_waker).is_pending(),
        "{what}: the fill polled again"
    );
    peer.write_all(b"abc").await.unwrap();
    peer.flush().await.unwrap();
    second.wait(&format!("{what}: fill")).await;
    let filled = within(poll_fn(|cx| {
        Pin::new(&mut *reader)
            .poll_fill_buf(cx)
            .map_ok(<[u8]>::to_vec)
    }))
    .await
    .unwrap();
    assert_eq!(filled, b"abc", "{what}");

    // A consume past what the fill gave takes that only: the bytes that come later stay.
    Pin::new(&mut *reader).consume(10);
    assert!(
        fill_with(reader, Waker::noop()).is_pending(),
        "{what}: a fill after a consume past the buffer"
    );
    peer.write_all(b"defg").await.unwrap();
    peer.shutdown().await.unwrap();
    let mut rest = Vec::new();
    within(reader.read_to_end(&mut rest)).await.unwrap();
    assert_eq!(
        rest, b"defg",
        "{what}: the bytes after a consume past the buffer"
    );

    // The end: an empty fill, every time.
    for _ in 0..2 {
        match fill_with(reader, Waker::noop()) {
            Poll::Ready(Ok(filled)) if filled.is_empty() => {}
            other => panic!("{what}: a fill after the end: {other:?}"),
        }
    }
}

/// The channels of an in-memory `ByteChannel` follow the contracts too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_channels_ends_follow_tokios_io_contracts() {
    for auto_flush in [false, true] {
        for room in ROOMS {
            let (mut output, mut input) = net_io::ByteChannel::new(auto_flush);
            read_contract("pipe's reader", room, &mut input, &mut output).await;
        }
        let (mut output, input) = net_io::ByteChannel::new(auto_flush);
        write_contract("pipe's writer", &mut output, input).await;
        let (mut output, input) = net_io::ByteChannel::new(auto_flush);
        shutdown_contract("pipe's writer", &mut output, input).await;
        let (mut output, mut input) = net_io::ByteChannel::new(auto_flush);
        buf_read_contract("pipe's reader", &mut input, &mut output).await;
    }
}

/// Both directions waiting at once, each polled again with another waker: the peer's bytes wake
/// the read's latest waker, its reads the write's, neither taking the other's place.
async fn both_ways_contract<R, W, P>(what: &str, reader: &mut R, writer: &mut W, mut peer: P)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    P: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let chunk = payload(64 * 1024);
    let mut full = false;
    for _ in 0..10_000 {
        match poll_write_with(writer, Waker::noop(), &chunk) {
            Poll::Ready(Ok(_)) => {}
            Poll::Ready(Err(e)) => panic!("{what}: a write to a full socket: {e}"),
            Poll::Pending => {
                full = true;
                break;
            }
        }
    }
    assert!(full, "{what}: the socket never filled");
    let (_, read_first) = Flag::waker();
    let (read, read_second) = Flag::waker();
    let (_, write_first) = Flag::waker();
    let (write, write_second) = Flag::waker();
    let mut room = [0u8; 16];
    let mut buf = ReadBuf::new(&mut room);
    assert!(
        poll_read_with(reader, &read_first, &mut buf).is_pending(),
        "{what}: read"
    );
    assert!(
        poll_write_with(writer, &write_first, &chunk).is_pending(),
        "{what}: write"
    );
    assert!(
        poll_read_with(reader, &read_second, &mut buf).is_pending(),
        "{what}: read"
    );
    assert!(
        poll_write_with(writer, &write_second, &chunk).is_pending(),
        "{what}: write"
    );
    peer.write_all(b"abc").await.unwrap();
    peer.flush().await.unwrap();
    read.wait(&format!("{what}: read beside a write")).await;
    let (mut peer_reader, _peer_writer) = tokio::io::split(peer);
    let drain = tokio::spawn(async move {
        let mut sink = tokio::io::sink();
        tokio::io::copy(&mut peer_reader, &mut sink).await
    });
    write.wait(&format!("{what}: write beside a read")).await;
    let mut buf = ReadBuf::new(&mut room);
    within(poll_fn(|cx| Pin::new(&mut *reader).poll_read(cx, &mut buf)))
        .await
        .unwrap();
    assert_eq!(buf.filled(), b"abc", "{what}");
    within(writer.shutdown()).await.unwrap();
    within(drain).await.unwrap().unwrap();
}

/// Both directions of each kind of stream waiting at once, their tasks moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_directions_waiting_wake_their_latest_wakers() {
    let (tokio_stream, peer) = tokio_pair().await;
    let (mut r, mut w) = tokio::io::split(tokio_stream);
    both_ways_contract("tokio", &mut r, &mut w, peer).await;

    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let (peer, socket) = raw_peer_of(&server).await;
    let (mut r, mut w) = tokio::io::split(socket.into_stream().unwrap());
    both_ways_contract("plain", &mut r, &mut w, peer).await;

    let (peer, mut socket) = raw_peer_of(&server).await;
    let mut input = socket.open_read_channel().unwrap();
    let mut output = socket.open_write_channel(false).unwrap();
    both_ways_contract("channels", &mut input, &mut output, peer).await;

    let ca = TestCa::new("contracts ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let (stream, peer) = accept_stream(&server, &config, rustls_client(&ca)).await;
    let (mut r, mut w) = tokio::io::split(stream);
    both_ways_contract("tls", &mut r, &mut w, peer).await;
}
