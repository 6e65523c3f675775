//! A Unix stream's half-close (`flush_and_close`, a `SocketStream`'s `shutdown`,
//! `close_gracefully`) once the peer closed with what we sent still unread in it.
//!
//! That peer never gets those bytes. Over TCP its close is a reset, and the half-close that
//! meets it reports `ConnectionReset`. A Unix socket has no reset, but Linux leaves the same
//! `ECONNRESET` in the survivor's `SO_ERROR` (`unix_release_sock`: the closing side's input was
//! not empty), and the survivor's `shutdown(2)` succeeds whatever the peer did. The half-close
//! must read that error and report it, as over TCP: never a clean end after a loss. A peer
//! that read every byte before it closed leaves no error, and the half-close stays `Ok`.

use std::io::{ErrorKind, Read};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::time::Duration;

use net_sockets::{Connection, SelectorManager, UnixSocketAddress, a_socket};
use net_tests::{TempDir, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SENT: &[u8] = b"a request the peer never reads";

/// A connection accepted by a Unix listener of ours, that has written and flushed [`SENT`],
/// and the `std` client at its other end (the listener goes: the connection stays).
async fn accepted_after_sending(
    selector: &SelectorManager,
    dir: &TempDir,
) -> (Connection, StdUnixStream) {
    let path = dir.join("s.sock");
    let listener = a_socket(selector)
        .tcp()
        .bind(UnixSocketAddress::new(&path))
        .await
        .unwrap();
    let peer = StdUnixStream::connect(&path).unwrap();
    let socket = within(listener.accept()).await.unwrap();
    listener.close();
    let mut connection = socket.connection().unwrap();
    connection.output.write_fully(SENT).await.unwrap();
    connection.output.flush().await.unwrap();
    (connection, peer)
}

fn is_reset(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::ConnectionReset
}

#[tokio::test]
async fn flush_and_close_after_the_peer_dropped_what_we_sent_is_connection_reset() {
    let selector = SelectorManager::new();
    let dir = TempDir::new("unix-dropped-flush-and-close");
    let (mut connection, peer) = accepted_after_sending(&selector, &dir).await;
    // Closed with our bytes unread: they are gone.
    drop(peer);
    let shut = within(connection.output.flush_and_close()).await;
    assert!(
        matches!(&shut, Err(net_io::Error::Io(e)) if is_reset(e)),
        "flush_and_close after the peer dropped the bytes sent: {shut:?}, not ConnectionReset"
    );
    // Nor does a read after it take the connection's end for a clean one.
    let mut room = [0u8; 16];
    let read = within(connection.input.read_available(&mut room)).await;
    assert!(
        matches!(&read, Err(net_io::Error::Io(e)) if is_reset(e)),
        "a read after that half-close: {read:?}, not ConnectionReset"
    );
}

#[tokio::test]
async fn a_streams_shutdown_after_the_peer_dropped_what_we_sent_is_connection_reset() {
    let selector = SelectorManager::new();
    let dir = TempDir::new("unix-dropped-stream-shutdown");
    let path = dir.join("s.sock");
    let listener = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new(&path))
        .await
        .unwrap();
    let peer = StdUnixStream::connect(&path).unwrap();
    let mut stream = within(listener.accept())
        .await
        .unwrap()
        .into_stream()
        .unwrap();
    stream.write_all(SENT).await.unwrap();
    stream.flush().await.unwrap();
    drop(peer);
    let shut = within(stream.shutdown()).await;
    assert!(
        matches!(&shut, Err(e) if is_reset(e)),
        "shutdown after the peer dropped the bytes sent: {shut:?}, not ConnectionReset"
    );
    // The kernel told it once; a second shutdown, and a read, report it again.
    let again = within(stream.shutdown()).await;
    assert!(
        matches!(&again, Err(e) if is_reset(e)),
        "a second shutdown: {again:?}, not ConnectionReset"
    );
    let mut room = [0u8; 16];
    let read = within(stream.read(&mut room)).await;
    assert!(
        matches!(&read, Err(e) if is_reset(e)),
        "a read after those shutdowns: {read:?}, not ConnectionReset"
    );
}

#[tokio::test]
async fn close_gracefully_after_the_peer_dropped_what_we_sent_fails() {
    let selector = SelectorManager::new();
    let dir = TempDir::new("unix-dropped-close-gracefully");
    let (connection, peer) = accepted_after_sending(&selector, &dir).await;
    drop(peer);
    let closed = within(connection.close_gracefully(Duration::from_secs(5))).await;
    assert!(
        matches!(&closed, Err(net_sockets::Error::Io(e)) if is_reset(e)),
        "close_gracefully after the peer dropped the bytes sent: {closed:?}, not ConnectionReset"
    );
}

/// A client of ours whose connection the listener never accepted (it closed with the
/// connection queued, our bytes in it): the same loss, the same error.
#[tokio::test]
async fn a_clients_flush_and_close_after_its_connection_was_never_accepted_is_connection_reset() {
    let selector = SelectorManager::new();
    let dir = TempDir::new("unix-dropped-never-accepted");
    let path = dir.join("s.sock");
    let listener = StdUnixListener::bind(&path).unwrap();
    let socket = within(
        a_socket(&selector)
            .tcp()
            .connect(UnixSocketAddress::new(&path)),
    )
    .await
    .unwrap();
    let mut connection = socket.connection().unwrap();
    connection.output.write_fully(SENT).await.unwrap();
    connection.output.flush().await.unwrap();
    drop(listener);
    let shut = within(connection.output.flush_and_close()).await;
    assert!(
        matches!(&shut, Err(net_io::Error::Io(e)) if is_reset(e)),
        "flush_and_close of a connection never accepted: {shut:?}, not ConnectionReset"
    );
}

/// The other side of it: a peer that read every byte and then closed lost nothing, and the
/// half-close after its close is `Ok`, the connection's input a clean end.
#[tokio::test]
async fn a_half_close_after_the_peer_read_everything_and_closed_is_ok() {
    let selector = SelectorManager::new();
    let dir = TempDir::new("unix-read-then-closed");
    let (mut connection, mut peer) = accepted_after_sending(&selector, &dir).await;
    let mut received = vec![0u8; SENT.len()];
    peer.read_exact(&mut received).unwrap();
    assert_eq!(received, SENT);
    drop(peer);
    within(connection.output.flush_and_close()).await.unwrap();
    let mut room = [0u8; 16];
    let read = within(connection.input.read_available(&mut room)).await;
    assert!(
        matches!(read, Ok(0)),
        "the end of a peer that lost nothing: {read:?}"
    );
}

/// The half-close takes the kernel's error (it tells it once): what the peer sent before it
/// closed is still read, every byte, and only then the reset, never a clean end.
#[tokio::test]
async fn what_the_peer_sent_before_it_closed_is_read_before_the_reset() {
    use std::io::Write;
    let selector = SelectorManager::new();
    let dir = TempDir::new("unix-dropped-then-read");
    let (mut connection, mut peer) = accepted_after_sending(&selector, &dir).await;
    peer.write_all(b"last words\n").unwrap();
    drop(peer);
    let shut = within(connection.output.flush_and_close()).await;
    assert!(
        matches!(&shut, Err(net_io::Error::Io(e)) if is_reset(e)),
        "flush_and_close after the peer dropped the bytes sent: {shut:?}, not ConnectionReset"
    );
    let line = within(connection.input.read_line(64, net_io::LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("last words"));
    let end = within(connection.input.read_line(64, net_io::LineEnding::Default)).await;
    assert!(
        matches!(&end, Err(net_io::Error::Io(e)) if is_reset(e)),
        "the read after the peer's last words: {end:?}, not ConnectionReset"
    );
}
