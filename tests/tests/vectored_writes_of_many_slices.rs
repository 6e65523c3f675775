//! A vectored write of more slices than one system call takes (Linux's `IOV_MAX`, 1024), on a
//! plain `SocketStream`, TCP and Unix: as tokio's `TcpStream` and `UnixStream` (through std,
//! which passes at most `IOV_MAX` slices), the write sends a first part of them, the caller
//! writes the rest, every byte reaches the peer in order, and the stream still ends cleanly.

use std::io::IoSlice;

use net_sockets::{SelectorManager, UnixSocketAddress, a_socket};
use net_tests::fault::raw_peer_of;
use net_tests::loopback::tcp_listener;
use net_tests::within;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// More slices than `IOV_MAX`.
const SLICES: usize = 3000;

/// Writes `data` one byte a slice through `write_vectored`, to the end, then shuts down.
async fn write_one_byte_slices(stream: &mut (impl AsyncWrite + Unpin), data: &[u8]) {
    assert!(stream.is_write_vectored());
    let mut at = 0;
    let mut calls = 0;
    while at < data.len() {
        calls += 1;
        assert!(calls <= data.len(), "no progress");
        let slices: Vec<IoSlice<'_>> = data[at..].chunks(1).map(IoSlice::new).collect();
        let n = within(stream.write_vectored(&slices))
            .await
            .expect("a vectored write of many slices");
        assert!(n > 0, "a vectored write took nothing");
        at += n;
    }
    within(stream.shutdown())
        .await
        .expect("the clean end after the vectored writes");
}

async fn read_all(peer: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut got = Vec::new();
    within(peer.read_to_end(&mut got)).await.unwrap();
    got
}

/// Writes `SLICES` bytes one a slice through `stream`, and checks that `peer` reads them all,
/// in order, then the end.
async fn sends_every_byte_in_order(
    stream: &mut (impl AsyncWrite + Unpin),
    peer: &mut (impl AsyncRead + Unpin),
) {
    let data: Vec<u8> = (0..SLICES).map(|i| (i % 251) as u8).collect();
    let (_, got) = tokio::join!(write_one_byte_slices(stream, &data), read_all(peer));
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the bytes arrived out of order");
}

#[tokio::test]
async fn a_vectored_write_of_more_slices_than_iov_max_over_tcp_sends_them_all() {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let (mut client, socket) = raw_peer_of(&server).await;
    let mut stream = socket.into_stream().unwrap();
    sends_every_byte_in_order(&mut stream, &mut client).await;
}

#[tokio::test]
async fn a_vectored_write_of_more_slices_than_iov_max_over_unix_sends_them_all() {
    let selector = SelectorManager::new();
    let dir = net_tests::TempDir::new("vectored-unix");
    let path = dir.join("s");
    let listener = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new(&path))
        .await
        .unwrap();
    let mut client = tokio::net::UnixStream::connect(&path).await.unwrap();
    let socket = within(listener.accept()).await.unwrap();
    let mut stream = socket.into_stream().unwrap();
    sends_every_byte_in_order(&mut stream, &mut client).await;
}

/// More empty slices than `IOV_MAX` before the bytes: the write still takes bytes (a write
/// that returns 0 though it was given bytes reads as `WriteZero` to its caller).
#[tokio::test]
async fn a_vectored_write_after_more_empty_slices_than_iov_max_takes_bytes() {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let (mut client, socket) = raw_peer_of(&server).await;
    let mut stream = socket.into_stream().unwrap();
    let mut slices = vec![IoSlice::new(&[]); SLICES];
    slices.push(IoSlice::new(b"xyz"));
    let n = within(stream.write_vectored(&slices)).await.unwrap();
    assert_eq!(n, 3);
    within(stream.shutdown()).await.unwrap();
    assert_eq!(read_all(&mut client).await, b"xyz");
}
