//! A vectored write of nothing (no slices, or only empty ones) through a `SocketStream` is a
//! write of nothing: `Ok(0)` at once, as `write(b"")` on the same stream and both writes of
//! nothing on a TLS stream, also while the socket has no room. Before, the plain stream made it
//! a send of no bytes, which waited for room: it hung while the peer read nothing, and with
//! `socket_timeout` it failed with a timeout that marked the connection's writes timed out, so
//! that a close after it reset the connection and the peer lost what was on its way.

use std::io::{ErrorKind, IoSlice};
use std::time::Duration;

use net_tests::pairs::{self, Kind, Ours, Pair, Setup};
use net_tests::pki::Pki;
use net_tests::within;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long a write of nothing may take: it makes no system call that could wait.
const AT_ONCE: Duration = Duration::from_secs(5);

/// Our end of `pair` as one stream (`into_stream`), plain or TLS.
fn stream_of(ours: Ours) -> Box<dyn Stream> {
    match ours {
        Ours::Plain(socket) => Box::new(socket.into_stream().expect("the stream")),
        Ours::Tls(socket) => Box::new(socket.into_stream().expect("the stream")),
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Writes through `stream` until a write waits for room `pause` (the peer reads nothing), and
/// gives that write up; how many bytes the writes took.
async fn fill(stream: &mut dyn Stream, pause: Duration) -> usize {
    let chunk = vec![7u8; 64 * 1024];
    let mut written = 0;
    loop {
        match tokio::time::timeout(pause, stream.write(&chunk)).await {
            Ok(Ok(n)) => written += n,
            Ok(Err(e)) => panic!("a write to a peer that reads nothing: {e:?}"),
            // Given up while it waited for room: the socket is full.
            Err(_) => return written,
        }
        assert!(written < 256 << 20, "the socket never filled");
    }
}

/// The writes of nothing, on a stream whose socket has no room.
async fn writes_of_nothing_at_once(what: &str, stream: &mut dyn Stream) {
    let written = tokio::time::timeout(AT_ONCE, stream.write(b"")).await;
    assert!(
        matches!(written, Ok(Ok(0))),
        "{what}: a write of nothing: {written:?}"
    );
    let nothing = [IoSlice::new(b""), IoSlice::new(b"")];
    let written = tokio::time::timeout(AT_ONCE, stream.write_vectored(&nothing)).await;
    assert!(
        matches!(written, Ok(Ok(0))),
        "{what}: a vectored write of empty slices: {written:?}"
    );
    let written = tokio::time::timeout(AT_ONCE, stream.write_vectored(&[])).await;
    assert!(
        matches!(written, Ok(Ok(0))),
        "{what}: a vectored write of no slices: {written:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vectored_write_of_nothing_returns_at_once_while_the_socket_is_full() {
    let pki = Pki::generate();
    for kind in [Kind::Tcp, Kind::Unix, Kind::Tls] {
        let setup = Setup {
            small_buffers: true,
            ..Setup::default()
        };
        let Pair { peer, ours, .. } = pairs::connect(kind, &pki, setup).await.unwrap();
        let mut stream = stream_of(ours);
        fill(&mut *stream, Duration::from_millis(300)).await;
        writes_of_nothing_at_once(&format!("{kind:?}"), &mut *stream).await;
        drop(peer);
    }
}

/// With `socket_timeout`, a vectored write of nothing on a full socket neither times out nor
/// spoils the end: once the peer read everything, the close is a clean one (the peer reads
/// every byte, then the end), as after a write of nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vectored_write_of_nothing_under_socket_timeout_leaves_the_close_clean() {
    const TIMEOUT: Duration = Duration::from_millis(200);
    let pki = Pki::generate();
    let setup = Setup {
        small_buffers: true,
        timeout: Some(TIMEOUT),
        ..Setup::default()
    };
    let Pair {
        mut peer,
        ours,
        selector,
        ..
    } = pairs::connect(Kind::Tcp, &pki, setup).await.unwrap();
    let Ours::Plain(socket) = ours else {
        unreachable!("a TCP pair")
    };
    let mut stream = socket.into_stream().unwrap();
    // Until a write waits `socket_timeout` for room, and fails having taken nothing.
    let chunk = vec![7u8; 64 * 1024];
    let mut written = 0;
    loop {
        match within(stream.write(&chunk)).await {
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::TimedOut => break,
            Err(e) => panic!("a write to a peer that reads nothing: {e:?}"),
        }
        assert!(written < 256 << 20, "the socket never filled");
    }
    // The flush makes that timeout good: nothing was lost.
    within(stream.flush()).await.expect("the flush");
    let nothing = [IoSlice::new(b"")];
    let result = tokio::time::timeout(AT_ONCE, stream.write_vectored(&nothing)).await;
    // Closed with what was written still on its way: the kernel sends it, then the FIN.
    stream.close();
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let read = within(async {
        loop {
            match peer.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => got += n,
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    assert!(
        matches!(result, Ok(Ok(0))) && read.is_ok() && got == written,
        "a vectored write of nothing on the full socket: {result:?}; then the peer read {got} \
         of {written} bytes written, then {read:?}"
    );
    selector.close();
}
