//! Cancellation at every poll, for the operations `cancel_every_poll.rs` and the other cancel
//! tests leave out: each is polled k times (k = 1, 2, …), woken only by its own waker, then
//! dropped, as `select!` or `timeout` would; then what its documentation promises is checked.
//!
//! - The tokio traits of a socket's stream (`Socket::into_stream`, plain TCP, TLS and Unix):
//!   a dropped `write` took nothing (tokio's contract), a dropped `read` consumed nothing, a
//!   dropped `shutdown` called again ends the stream cleanly after every byte, and a stream
//!   dropped during its shutdown never ends a cut stream cleanly.
//! - The channels' own tokio traits (TCP, TLS): the same contract for `write` and `read`.
//! - Typed writes and `write_frame` of a socket's write channel: each value whole or absent;
//!   `write_fully` past the buffer: a prefix of each call, and no clean end after a cut one.
//! - `read_remaining`, `await_content`, `peek`, `skip_if_found` and `read_available` over TCP,
//!   TLS and Unix, dropped at every byte: nothing consumed until they complete.
//! - `read_fully` and `discard` (not cancel safe; on an in-memory channel, where each poll sees
//!   what was written before it): what a dropped one consumed is exactly what
//!   `total_bytes_read` counts (`read_fully`: the start of its buffer), and nothing else.
//! - `copy_to` into a socket (TCP, TLS) dropped and called again: never a clean wrong stream.
//! - Pipelined answers under flush coalescing, with reads and flushes dropped: each once.
//! - A write channel's `flush` dropped, then the socket's `close`: no clean end after a cut.
//! - Writes given up turn after turn still end at `socket_timeout`.
//! - `await_closed`; a listener's and a selector's `shutdown`; an `accept` that waits for a
//!   place under `max_connections` (plain, and behind a PROXY header); a connected datagram
//!   socket's `send` and `receive`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use net_io::{ByteChannel, ByteReadChannel, LineEnding};
use net_sockets::{SelectorManager, Socket, UnixSocketAddress, a_socket};
use net_tests::loopback::{connected_pair, tcp_listener, tcp_listener_with, udp_socket};
use net_tests::pki::Pki;
use net_tests::{TempDir, payload, poll_at_most, within};
use net_tls::TlsExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The transports a socket's stream runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tcp,
    Tls,
    Unix,
}

const KINDS: [Kind; 3] = [Kind::Tcp, Kind::Tls, Kind::Unix];

/// A socket's stream of either transport, behind tokio's traits.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {
    /// The socket's `close` (the stream dereferences to its socket).
    fn close(&self);
}

impl Stream for net_sockets::SocketStream {
    fn close(&self) {
        Socket::close(self);
    }
}

impl Stream for net_tls::TlsStream {
    fn close(&self) {
        net_tls::TlsSocket::close(self);
    }
}

/// One connection of `kind` with small socket buffers on the way from ours to theirs (so that
/// our writes wait): our side, the peer's, and what keeps the listener (and the socket file)
/// alive.
async fn connection(
    selector: &SelectorManager,
    kind: Kind,
    pki: &Pki,
) -> (Side, Side, Box<dyn std::any::Any + Send>) {
    let (ours, theirs, keep): (Socket, Socket, Box<dyn std::any::Any + Send>) = match kind {
        Kind::Tcp | Kind::Tls => {
            let listener = tcp_listener_with(selector, |b| b.receive_buffer_size(4096)).await;
            let ours = a_socket(selector)
                .tcp()
                .send_buffer_size(4096)
                .connect(listener.local_address())
                .await
                .unwrap();
            let theirs = within(listener.accept()).await.unwrap();
            (ours, theirs, Box::new(listener))
        }
        Kind::Unix => {
            let dir = TempDir::new("cancel-gaps");
            let path = dir.join("s.sock");
            let listener = a_socket(selector)
                .tcp()
                .receive_buffer_size(4096)
                .bind(UnixSocketAddress::new(&path))
                .await
                .unwrap();
            let ours = a_socket(selector)
                .tcp()
                .send_buffer_size(4096)
                .connect(UnixSocketAddress::new(&path))
                .await
                .unwrap();
            let theirs = within(listener.accept()).await.unwrap();
            (ours, theirs, Box::new((listener, dir)))
        }
    };
    if kind == Kind::Tls {
        let server_config = pki.server_config().build().unwrap();
        let client_config = pki.client_config().build().unwrap();
        let (ours, theirs) = within(async {
            tokio::join!(ours.tls(client_config), theirs.tls_server(&server_config))
        })
        .await;
        (Side::Tls(ours.unwrap()), Side::Tls(theirs.unwrap()), keep)
    } else {
        (Side::Plain(ours), Side::Plain(theirs), keep)
    }
}

/// [`connection`], our side as a stream.
async fn stream_and_peer(
    selector: &SelectorManager,
    kind: Kind,
    pki: &Pki,
) -> (Box<dyn Stream>, Side, Box<dyn std::any::Any + Send>) {
    let (ours, theirs, keep) = connection(selector, kind, pki).await;
    let ours: Box<dyn Stream> = match ours {
        Side::Plain(s) => Box::new(s.into_stream().unwrap()),
        Side::Tls(s) => Box::new(s.into_stream().unwrap()),
    };
    (ours, theirs, keep)
}

/// One side of a connection, plain or TLS.
enum Side {
    Plain(Socket),
    Tls(net_tls::TlsSocket),
}

impl Side {
    fn input(&mut self) -> ByteReadChannel {
        match self {
            Self::Plain(s) => s.open_read_channel().unwrap(),
            Self::Tls(s) => s.open_read_channel().unwrap(),
        }
    }

    fn output(&mut self, auto_flush: bool) -> net_io::ByteWriteChannel {
        match self {
            Self::Plain(s) => s.open_write_channel(auto_flush).unwrap(),
            Self::Tls(s) => s.open_write_channel(auto_flush).unwrap(),
        }
    }

    fn close(&self) {
        match self {
            Self::Plain(s) => s.close(),
            Self::Tls(s) => s.close(),
        }
    }
}

/// Reads `input` slowly once `go` fires, to its end: what it read, and how it ended (`Ok`: a
/// clean end).
fn slow_reader(
    mut input: ByteReadChannel,
    go: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<(Vec<u8>, net_io::Result<()>)> {
    tokio::spawn(async move {
        let _ = go.await;
        let mut got = Vec::new();
        let mut room = [0u8; 1024];
        let end = loop {
            match within(input.read_available(&mut room)).await {
                Ok(0) => break Ok(()),
                Ok(n) => got.extend_from_slice(&room[..n]),
                Err(e) => break Err(e),
            }
            tokio::task::yield_now().await;
        };
        (got, end)
    })
}

/// `AsyncWriteExt::write` on a socket's stream, dropped after k polls (k = 1, 2, 3, 4, over
/// and over) while the peer reads slowly through small buffers: tokio's contract is that a
/// write that did not complete wrote nothing, so the peer reads exactly the bytes the completed
/// writes reported, then the clean end that `shutdown` makes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_writes_dropped_at_every_poll_send_exactly_what_they_reported() {
    let pki = Pki::generate();
    let selector = SelectorManager::new();
    for kind in KINDS {
        let (mut stream, mut peer, _keep) = stream_and_peer(&selector, kind, &pki).await;
        let (go, started) = tokio::sync::oneshot::channel();
        let reader = slow_reader(peer.input(), started);
        let mut go = Some(go);
        let data = payload(400_000);
        let mut sent = 0;
        let mut polls = 1;
        let mut dropped = 0;
        let mut calls = 0;
        while sent < data.len() {
            calls += 1;
            assert!(calls < 100_000, "{kind:?}: no end after {calls} writes");
            let end = (sent + 5000).min(data.len());
            // One poll until the reader runs: no wake-up would come for a second.
            let tries = if go.is_some() { 1 } else { polls };
            match poll_at_most(stream.write(&data[sent..end]), tries).await {
                Some(written) => sent += written.unwrap(),
                None => {
                    dropped += 1;
                    if let Some(go) = go.take() {
                        go.send(()).unwrap();
                    }
                }
            }
            polls = polls % 4 + 1;
        }
        assert!(dropped > 0, "{kind:?}: no write had to wait");
        within(stream.shutdown()).await.unwrap();
        if let Some(go) = go.take() {
            go.send(()).unwrap();
        }
        let (got, end) = within(reader).await.unwrap();
        end.unwrap_or_else(|e| panic!("{kind:?}: the peer's end: {e:?}"));
        assert_eq!(got.len(), data.len(), "{kind:?}: the peer's length");
        assert!(got == data, "{kind:?}: the peer's stream differs");
        drop((stream, peer));
    }
}

/// `AsyncReadExt::read` on a socket's stream, dropped after k polls (k = 1, 2, 3) while the
/// peer writes in small pieces: a read that did not complete consumed nothing, so the reads
/// that completed return the exact stream, then its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_reads_dropped_at_every_poll_lose_nothing() {
    let pki = Pki::generate();
    let selector = SelectorManager::new();
    for kind in KINDS {
        let (mut stream, mut peer, _keep) = stream_and_peer(&selector, kind, &pki).await;
        let mut output = peer.output(false);
        let data = payload(20_000);
        // One chunk per read begun: a read often starts before its chunk is in.
        let release = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
        let writer = tokio::spawn({
            let data = data.clone();
            let release = release.clone();
            async move {
                for chunk in data.chunks(97) {
                    release.acquire().await.unwrap().forget();
                    output.write_fully(chunk).await.unwrap();
                    output.flush().await.unwrap();
                    tokio::task::yield_now().await;
                }
                output.flush_and_close().await.unwrap();
                output
            }
        });
        let mut got = Vec::new();
        let mut room = vec![0u8; 300];
        let mut polls = 1;
        let mut dropped = 0;
        loop {
            match poll_at_most(stream.read(&mut room), polls).await {
                Some(Ok(0)) => break,
                Some(Ok(n)) => got.extend_from_slice(&room[..n]),
                Some(Err(e)) => panic!("{kind:?}: {e:?}"),
                None => dropped += 1,
            }
            release.add_permits(1);
            polls = polls % 3 + 1;
        }
        assert!(dropped > 0, "{kind:?}: no read had to wait");
        assert!(
            got == data,
            "{kind:?}: the stream differs ({} bytes)",
            got.len()
        );
        drop(within(writer).await.unwrap());
        drop((stream, peer));
    }
}

/// `AsyncWriteExt::shutdown` on a socket's stream, dropped after k polls (k = 1, 2, … until it
/// completes) while what was written cannot all leave yet (TLS: `close_notify` behind it), then
/// called again: the peer reads every byte written, then one clean end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_shutdowns_dropped_at_every_poll_then_called_again_end_cleanly() {
    let pki = Pki::generate();
    let selector = SelectorManager::new();
    for kind in KINDS {
        let mut completed = false;
        for polls in 1..=64 {
            let (mut stream, mut peer, _keep) = stream_and_peer(&selector, kind, &pki).await;
            let (go, started) = tokio::sync::oneshot::channel();
            let reader = slow_reader(peer.input(), started);
            // Fill the way to the peer, then one more write that waits for room.
            let data = payload(300_000);
            let mut sent = 0;
            while sent < data.len() {
                let end = (sent + 4000).min(data.len());
                match poll_at_most(stream.write(&data[sent..end]), 1).await {
                    Some(written) => sent += written.unwrap(),
                    None => break,
                }
            }
            assert!(sent < data.len(), "{kind:?}: the socket took everything");
            // TLS keeps what rustls took of a write that waited: the shutdown sends it first.
            let shutdown = stream.shutdown();
            let mut go = Some(go);
            let done = {
                let mut shutdown = std::pin::pin!(shutdown);
                let first = net_tests::pending_after_one_poll(shutdown.as_mut()).await;
                if first {
                    go.take().unwrap().send(()).unwrap();
                    if polls > 1 {
                        poll_at_most(shutdown, polls - 1).await
                    } else {
                        None
                    }
                } else {
                    Some(Ok(()))
                }
            };
            if let Some(go) = go.take() {
                go.send(()).unwrap();
            }
            match done {
                Some(result) => {
                    result.unwrap();
                    completed = true;
                }
                None => within(stream.shutdown())
                    .await
                    .unwrap_or_else(|e| panic!("{kind:?}, poll {polls}: {e:?}")),
            }
            let (got, end) = within(reader).await.unwrap();
            end.unwrap_or_else(|e| panic!("{kind:?}, poll {polls}: the peer's end: {e:?}"));
            assert_eq!(got.len(), sent, "{kind:?}, poll {polls}: the peer's length");
            assert!(
                got == data[..sent],
                "{kind:?}, poll {polls}: the stream differs"
            );
            drop((stream, peer));
            if completed {
                break;
            }
        }
        assert!(
            completed,
            "{kind:?}: the shutdown did not complete in 64 polls"
        );
    }
}

/// The same, but the stream is dropped (or first `close`d, through its socket) after its
/// shutdown was polled k times (k = 0, 1, 2, 3) instead of called again, while what its writes
/// reported written cannot all leave yet (TLS: records rustls holds for the socket). Dropped:
/// the peer reads every byte and a clean end, or a prefix and a failed end (TLS: a truncation,
/// "as with tokio-rustls's streams") — never a clean end after part of the stream. Closed:
/// "`close` sends TLS's `close_notify` (after everything written; what the socket cannot take
/// at once is sent as it drains)": every byte, then a clean end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_dropped_during_their_shutdown_never_end_a_cut_stream_cleanly() {
    let pki = Pki::generate();
    let selector = SelectorManager::new();
    for (kind, close) in KINDS.iter().flat_map(|&k| [(k, false), (k, true)]) {
        for polls in 0..=3 {
            let what = format!("{kind:?}, close {close}, {polls} polls");
            let (mut stream, mut peer, keep) = stream_and_peer(&selector, kind, &pki).await;
            let (go, started) = tokio::sync::oneshot::channel();
            let reader = slow_reader(peer.input(), started);
            let data = payload(300_000);
            let mut sent = 0;
            while sent < data.len() {
                let end = (sent + 4000).min(data.len());
                match poll_at_most(stream.write(&data[sent..end]), 1).await {
                    Some(written) => sent += written.unwrap(),
                    None => break,
                }
            }
            assert!(sent < data.len(), "{what}: the socket took everything");
            let mut go = Some(go);
            if polls > 0 {
                let mut shutdown = std::pin::pin!(stream.shutdown());
                if net_tests::pending_after_one_poll(shutdown.as_mut()).await {
                    go.take().unwrap().send(()).unwrap();
                    if polls > 1 {
                        drop(poll_at_most(shutdown, polls - 1).await);
                    }
                }
            }
            if close {
                stream.close();
            }
            drop(stream);
            if let Some(go) = go.take() {
                go.send(()).unwrap();
            }
            let (got, end) = within(reader).await.unwrap();
            assert!(
                data[..sent].starts_with(&got),
                "{what}: bytes that were not sent"
            );
            if close {
                end.unwrap_or_else(|e| panic!("{what}: after {} of {sent}: {e:?}", got.len()));
                assert_eq!(got.len(), sent, "{what}: the close lost bytes written");
            } else if end.is_ok() {
                assert_eq!(
                    got.len(),
                    sent,
                    "{what}: a clean end after part of the stream"
                );
            }
            drop((peer, keep));
        }
    }
}

/// Typed writes (`write_u64`) and `write_frame` on a socket's write channel (TCP and TLS, with
/// and without auto-flush), dropped after k polls (k = 1, 2, 3, 4, over and over) while the
/// peer reads slowly: each value or frame is sent whole or not at all, in order; what the peer
/// reads matches `total_bytes_written`, then a clean end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_writes_and_frames_dropped_at_every_poll_are_whole_or_absent() {
    use tokio_util::codec::LengthDelimitedCodec;
    let pki = Pki::generate();
    let selector = SelectorManager::new();
    let cases = [Kind::Tcp, Kind::Tls].into_iter().flat_map(|kind| {
        [(false, false), (true, false), (false, true), (true, true)]
            .map(|(auto_flush, frames)| (kind, auto_flush, frames))
    });
    for (kind, auto_flush, frames) in cases {
        let (mut ours, mut theirs, _keep) = connection(&selector, kind, &pki).await;
        let mut output = ours.output(auto_flush);
        let (go, started) = tokio::sync::oneshot::channel();
        let reader = slow_reader(theirs.input(), started);
        let mut go = Some(go);
        let mut codec = LengthDelimitedCodec::new();
        let mut polls = 1;
        let mut dropped = 0;
        for i in 0..60_000u64 {
            let tries = if go.is_some() { 1 } else { polls };
            let done = if frames {
                let frame = bytes::Bytes::from(format!("frame {i:08}"));
                poll_at_most(output.write_frame(&mut codec, frame), tries).await
            } else {
                poll_at_most(output.write_u64(i), tries)
                    .await
                    .map(|r| r.map_err(std::io::Error::from))
            };
            match done {
                Some(result) => result.unwrap(),
                None => {
                    dropped += 1;
                    if let Some(go) = go.take() {
                        go.send(()).unwrap();
                    }
                }
            }
            polls = polls % 4 + 1;
        }
        if let Some(go) = go.take() {
            go.send(()).unwrap();
        }
        within(output.flush_and_close()).await.unwrap();
        let written = output.total_bytes_written();
        let (got, end) = within(reader).await.unwrap();
        let what = format!("{kind:?}, auto_flush {auto_flush}, frames {frames}");
        end.unwrap_or_else(|e| panic!("{what}: the peer's end: {e:?}"));
        assert!(dropped > 0, "{what}: no write had to wait");
        assert_eq!(got.len() as u64, written, "{what}: total_bytes_written");
        // Whole values, increasing (some absent).
        let mut last = None;
        let mut rest = &got[..];
        while !rest.is_empty() {
            let value = if frames {
                assert!(rest.len() >= 4 + 14, "{what}: a cut frame at the end");
                let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                assert_eq!(len, 14, "{what}: a frame of {len} bytes");
                let text = std::str::from_utf8(&rest[4..4 + len]).unwrap();
                let value = text.strip_prefix("frame ").unwrap().parse::<u64>().unwrap();
                rest = &rest[4 + len..];
                value
            } else {
                assert!(rest.len() >= 8, "{what}: a cut value at the end");
                let value = u64::from_be_bytes(rest[..8].try_into().unwrap());
                rest = &rest[8..];
                value
            };
            assert!(last < Some(value), "{what}: {value} after {last:?}");
            last = Some(value);
        }
        drop((output, ours, theirs));
    }
}

/// Polls `future` once (then `None` if it is pending): the caller goes on polling it.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
    poll_at_most(future, 1).await
}

/// `read_fully` polled k times (k = 1, 2, … 10, over and over), a piece of its bytes written
/// (an in-memory channel: each poll sees what was written before it) before each poll, then
/// dropped: not cancel safe, and what its docs say is lost is all that is: the bytes already
/// copied into its buffer, at its start, which `total_bytes_read` counts; the next read goes
/// on right after them.
#[tokio::test]
async fn read_fully_dropped_at_every_poll_consumes_only_what_it_copied() {
    let (mut output, mut input) = ByteChannel::new(true);
    let data = payload(30_000);
    let mut written = 0;
    let mut got = Vec::new();
    let mut polls = 1;
    let (mut cut, mut whole) = (0, 0);
    while got.len() < data.len() {
        let mut room = vec![0u8; 500.min(data.len() - got.len())];
        let before = input.total_bytes_read();
        let done = {
            let mut read = Box::pin(input.read_fully(&mut room));
            let mut done = None;
            for _ in 0..polls {
                let end = (written + 61).min(data.len());
                output.write_fully(&data[written..end]).await.unwrap();
                written = end;
                done = poll_once(&mut read).await;
                if done.is_some() {
                    break;
                }
            }
            done
        };
        let consumed = (input.total_bytes_read() - before) as usize;
        match done {
            Some(done) => {
                done.unwrap();
                assert_eq!(consumed, room.len());
                whole += 1;
            }
            None => {
                assert!(
                    consumed < room.len(),
                    "a dropped read_fully consumed it all"
                );
                if consumed > 0 {
                    cut += 1;
                }
            }
        }
        got.extend_from_slice(&room[..consumed]);
        assert!(
            got == data[..got.len()],
            "the stream differs at {}",
            got.len()
        );
        polls = polls % 10 + 1;
    }
    assert!(
        cut > 0 && whole > 0,
        "{cut} cut, {whole} whole: the test shows too little"
    );
    output.flush_and_close().await.unwrap();
    assert_eq!(within(input.read_remaining(10)).await.unwrap().len(), 0);
    assert_eq!(input.total_bytes_read(), data.len() as u64);
}

/// `discard` polled k times (k = 1, 2, … 10, over and over), a piece of the stream written
/// before each poll, then dropped: not cancel safe (the bytes it skipped are gone, its count
/// lost), but `total_bytes_read` counts what it skipped, and the next read goes on right after
/// them.
#[tokio::test]
async fn discard_dropped_at_every_poll_skips_what_total_bytes_read_counts() {
    let (mut output, mut input) = ByteChannel::new(true);
    let data = payload(30_000);
    let mut written = 0;
    let mut polls = 1;
    let (mut cut, mut whole) = (0, 0);
    while (input.total_bytes_read() as usize) < data.len() {
        let at = input.total_bytes_read() as usize;
        let done = {
            let mut skip = Box::pin(input.discard(300));
            let mut done = None;
            for _ in 0..polls {
                let end = (written + 61).min(data.len());
                output.write_fully(&data[written..end]).await.unwrap();
                written = end;
                done = poll_once(&mut skip).await;
                if done.is_some() {
                    break;
                }
            }
            done
        };
        let skipped = input.total_bytes_read() as usize - at;
        match done {
            Some(done) => {
                assert_eq!(done.unwrap() as usize, skipped);
                whole += 1;
            }
            None if skipped > 0 => cut += 1,
            None => {}
        }
        // What follows is the stream right after what was skipped.
        let n = 7.min(data.len() - at - skipped);
        if n > 0 && input.available_for_read() >= n {
            let read = within(input.read_bytes(n)).await.unwrap();
            assert!(read[..] == data[at + skipped..][..n], "at {}", at + skipped);
        }
        polls = polls % 10 + 1;
    }
    assert!(
        cut > 0 && whole > 0,
        "{cut} cut, {whole} whole: the test shows too little"
    );
    output.flush_and_close().await.unwrap();
    assert_eq!(within(input.discard(10)).await.unwrap(), 0);
}

/// `await_closed` of a socket, a listener and a datagram socket, dropped after one poll (and
/// again after two: nothing wakes it before the close): cancel safe, "dropping the future
/// changes nothing": the object still works, and a later `await_closed` returns at its close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn await_closed_dropped_changes_nothing() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut ours, mut theirs) = connected_pair(&selector, &listener).await;
    let udp = udp_socket(&selector).await;
    for _ in 0..3 {
        assert!(poll_at_most(ours.await_closed(), 1).await.is_none());
        assert!(poll_at_most(listener.await_closed(), 1).await.is_none());
        assert!(poll_at_most(udp.await_closed(), 1).await.is_none());
    }
    // All still work.
    let mut output = ours.open_write_channel(true).unwrap();
    output.write_string_utf8("still open\n").await.unwrap();
    let mut input = theirs.open_read_channel().unwrap();
    let line = within(input.read_line(64, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(line.as_deref(), Some("still open"));
    let another = net_tests::loopback::connect(&selector, listener.local_address()).await;
    drop((within(listener.accept()).await.unwrap(), another));
    let to = udp.local_address();
    let sender = udp_socket(&selector).await;
    within(sender.send(net_sockets::Datagram::new(&b"x"[..], to).unwrap()))
        .await
        .unwrap();
    assert_eq!(&within(udp.receive()).await.unwrap().packet[..], b"x");
    // A later wait returns at the close.
    let waits = async {
        tokio::join!(
            ours.await_closed(),
            listener.await_closed(),
            udp.await_closed()
        )
    };
    // Polled after the waits (`join!` polls in order): they wait first.
    let closes = async {
        ours.close();
        listener.close();
        udp.close();
    };
    within(async { tokio::join!(waits, closes) }).await;
    drop((output, input, theirs));
}

/// `write_fully` of 20,000 bytes (more than the buffer: it goes to the transport directly), and
/// auto-flushed ones of 3,000 (made while the buffer is empty: they go there too), each call's
/// bytes all one value, dropped after k polls (k = 1, 2, … 5, over and over) while
/// the peer reads slowly: what the docs promise ("Dropped writes"): the peer receives each call
/// in order, whole or a prefix (from nothing to all), never a byte twice; a call that
/// completed is whole; and where a call was cut, `flush_and_close` fails with `BrokenPipe` and
/// the peer sees no clean end (TCP: a reset; TLS: no `close_notify`), while with none cut both
/// end cleanly after the exact bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_writes_dropped_at_every_poll_send_prefixes_and_never_end_a_cut_stream_cleanly() {
    let pki = Pki::generate();
    let selector = SelectorManager::new();
    for (kind, auto_flush) in [
        (Kind::Tcp, false),
        (Kind::Tls, false),
        (Kind::Tcp, true),
        (Kind::Tls, true),
    ] {
        // Auto-flushed, a call made while the buffer is empty goes to the transport too.
        let call_len = if auto_flush { 3000 } else { 20_000 };
        let what = format!("{kind:?}, auto_flush {auto_flush}");
        let (mut ours, mut theirs, _keep) = connection(&selector, kind, &pki).await;
        let mut output = ours.output(auto_flush);
        let (go, started) = tokio::sync::oneshot::channel();
        let reader = slow_reader(theirs.input(), started);
        let mut go = Some(go);
        let mut completed = Vec::new();
        let mut polls = 1;
        for value in 1..=120u8 {
            let call = vec![value; call_len];
            let tries = if go.is_some() { 1 } else { polls };
            match poll_at_most(output.write_fully(&call), tries).await {
                Some(done) => {
                    done.unwrap();
                    completed.push(value);
                }
                None => {
                    if let Some(go) = go.take() {
                        go.send(()).unwrap();
                    }
                }
            }
            polls = polls % 5 + 1;
        }
        if let Some(go) = go.take() {
            go.send(()).unwrap();
        }
        let closed = within(output.flush_and_close()).await;
        ours.close();
        let (got, end) = within(reader).await.unwrap();
        // The runs of equal bytes: increasing values, none longer than a call.
        let mut runs: Vec<(u8, usize)> = Vec::new();
        for &byte in &got {
            match runs.last_mut() {
                Some((value, len)) if *value == byte => *len += 1,
                _ => {
                    if let Some(&(last, _)) = runs.last() {
                        assert!(byte > last, "{what}: {byte} after {last}");
                    }
                    runs.push((byte, 1));
                }
            }
        }
        for &(value, len) in &runs {
            assert!(len <= call_len, "{what}: call {value} sent {len} bytes");
        }
        // Every completed call is whole (but one a reset cut at the peer's end).
        let last = runs.last().map(|r| r.0);
        for &(value, len) in &runs {
            if completed.contains(&value) && Some(value) != last {
                assert_eq!(len, call_len, "{what}: completed call {value}");
            }
        }
        match (closed, end) {
            (Ok(()), Ok(())) => {
                assert!(
                    runs.iter().all(|&(_, len)| len == call_len),
                    "{what}: a clean end after a cut call"
                );
                for value in &completed {
                    assert!(runs.iter().any(|r| r.0 == *value), "{what}: {value} lost");
                }
            }
            (Err(e), Err(_)) => {
                let broken_pipe = std::io::ErrorKind::BrokenPipe;
                assert!(
                    matches!(&e, net_io::Error::Io(io) if io.kind() == broken_pipe),
                    "{what}: the close: {e:?}"
                );
            }
            (closed, end) => panic!("{what}: the close: {closed:?}, the peer's end: {end:?}"),
        }
        drop((output, ours, theirs));
    }
}

/// tokio's `AsyncWriteExt::write` and `AsyncReadExt::read` on a socket's channels (plain and
/// TLS; the write channel with and without auto-flush), dropped after k polls: tokio's contract
/// for its traits is that a call that did not complete took nothing, so the peer reads exactly
/// the bytes the completed writes reported, and the completed reads return the exact stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_trait_writes_and_reads_dropped_at_every_poll_keep_the_exact_stream() {
    let pki = Pki::generate();
    let selector = SelectorManager::new();
    for (kind, auto_flush) in [
        (Kind::Tcp, false),
        (Kind::Tcp, true),
        (Kind::Tls, false),
        (Kind::Tls, true),
    ] {
        let what = format!("{kind:?}, auto_flush {auto_flush}");
        let (mut ours, mut theirs, _keep) = connection(&selector, kind, &pki).await;
        let mut output = ours.output(auto_flush);
        let mut input = theirs.input();
        let data = payload(300_000);
        let (go, started) = tokio::sync::oneshot::channel::<()>();
        let reader = tokio::spawn(async move {
            let _ = started.await;
            let mut got = Vec::new();
            let mut room = vec![0u8; 700];
            let mut polls = 1;
            loop {
                match poll_at_most(input.read(&mut room), polls).await {
                    Some(Ok(0)) => break,
                    Some(Ok(n)) => got.extend_from_slice(&room[..n]),
                    Some(Err(e)) => panic!("{e:?}"),
                    // Dropped while it waited (where the writer did not keep up).
                    None => {}
                }
                polls = polls % 3 + 1;
                tokio::task::yield_now().await;
            }
            got
        });
        let mut go = Some(go);
        let mut sent = 0;
        let mut polls = 1;
        let mut dropped = 0;
        let mut calls = 0;
        while sent < data.len() {
            calls += 1;
            assert!(calls < 100_000, "{what}: no end after {calls} writes");
            let end = (sent + 3000).min(data.len());
            let tries = if go.is_some() { 1 } else { polls };
            match poll_at_most(output.write(&data[sent..end]), tries).await {
                Some(written) => sent += written.unwrap(),
                None => {
                    dropped += 1;
                    if let Some(go) = go.take() {
                        go.send(()).unwrap();
                    }
                }
            }
            polls = polls % 4 + 1;
        }
        if let Some(go) = go.take() {
            go.send(()).unwrap();
        }
        assert!(dropped > 0, "{what}: no write had to wait");
        within(output.shutdown()).await.unwrap();
        assert_eq!(output.total_bytes_written(), data.len() as u64, "{what}");
        let got = within(reader).await.unwrap();
        assert_eq!(got.len(), data.len(), "{what}: the peer's length");
        assert!(got == data, "{what}: the peer's stream differs");
        drop((output, ours, theirs));
    }
}

/// A server that answers pipelined requests with flush coalescing on (the default: answers
/// are held back while requests wait to be read), its `read_line` and `flush` calls dropped
/// after k polls (k = 1, 2, 3, over and over) and begun again, over TCP and TLS: every answer
/// reaches the client once, in order, and none is held back for ever (the client reads them
/// all while it sends nothing more). The client sends each batch once a read of the server
/// was dropped while it waited, so that every run drops reads there, however the two tasks
/// are scheduled (the server's first poll of a read after its flush is its only one then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_answers_with_reads_and_flushes_dropped_at_every_poll_all_arrive_once() {
    const REQUESTS: usize = 300;
    let pki = Pki::generate();
    let selector = SelectorManager::new();
    for kind in [Kind::Tcp, Kind::Tls] {
        // The client is `ours` (small send buffer), the server `theirs`.
        let (mut client, mut server, _keep) = connection(&selector, kind, &pki).await;
        let mut server_in = server.input();
        let mut server_out = server.output(false);
        let reads_dropped = Arc::new(AtomicUsize::new(0));
        let dropping = Arc::clone(&reads_dropped);
        let served = tokio::spawn(async move {
            let mut polls = 1;
            let mut flushes_dropped = 0;
            let mut flushed = false;
            loop {
                let line = loop {
                    let read = server_in.read_line(64, LineEnding::Default);
                    let tries = if std::mem::take(&mut flushed) {
                        1
                    } else {
                        polls
                    };
                    match poll_at_most(read, tries).await {
                        Some(line) => break line.unwrap(),
                        None => {
                            dropping.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    polls = polls % 3 + 1;
                };
                let Some(line) = line else { break };
                server_out
                    .write_string_utf8(&format!("answer to {line}\n"))
                    .await
                    .unwrap();
                loop {
                    match poll_at_most(server_out.flush(), polls).await {
                        Some(done) => break done.unwrap(),
                        None => flushes_dropped += 1,
                    }
                    polls = polls % 3 + 1;
                }
                flushed = true;
            }
            within(server_out.flush_and_close()).await.unwrap();
            flushes_dropped
        });
        let mut client_out = client.output(false);
        let mut client_in = client.input();
        // In three batches, each sent once the answers to the one before arrived: the server's
        // read waits (and is dropped) at least there, as its held-back answers leave.
        for batch in (0..REQUESTS).collect::<Vec<_>>().chunks(REQUESTS / 3) {
            let before = reads_dropped.load(Ordering::SeqCst);
            let requests: String = batch.iter().map(|i| format!("request {i}\n")).collect();
            // All at once, in pieces that cut lines, as a pipelining client sends.
            for piece in requests.as_bytes().chunks(1000) {
                within(client_out.write_fully(piece)).await.unwrap();
                within(client_out.flush()).await.unwrap();
            }
            for i in batch {
                let answer = within(client_in.read_line(64, LineEnding::Default)).await;
                let expected = format!("answer to request {i}");
                assert_eq!(answer.unwrap().as_deref(), Some(&expected[..]), "{kind:?}");
            }
            // The server, with nothing to read, drops its read after one poll.
            within(async {
                while reads_dropped.load(Ordering::SeqCst) == before {
                    tokio::task::yield_now().await;
                }
            })
            .await;
        }
        within(client_out.flush_and_close()).await.unwrap();
        within(served).await.unwrap();
        assert!(
            reads_dropped.load(Ordering::SeqCst) >= 3,
            "{kind:?}: a read dropped at each batch"
        );
        let end = within(client_in.read_line(64, LineEnding::Default)).await;
        assert_eq!(end.unwrap(), None, "{kind:?}");
        drop((client_out, client_in, client, server));
    }
}

/// A listener's and a selector's graceful `shutdown` dropped after k polls (k = 1, 2, 3, 4),
/// each poll after the first woken by one of the connections closing (the test closes one
/// after each poll): "dropping the future leaves the shutdown begun (the listener closed,
/// connections signalled) but closes no connection": the others stay open and usable, and a
/// second shutdown (no grace period) reports them as cut, none as finished (a selector's: the
/// clients, its own outgoing connections, too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdowns_dropped_at_every_poll_close_no_connection_and_can_be_run_again() {
    const OPEN: usize = 4;
    for of_selector in [false, true] {
        for polls in 1..=OPEN {
            let what = format!("selector {of_selector}, {polls} polls");
            let selector = SelectorManager::new();
            let listener = tcp_listener(&selector).await;
            let mut pairs = Vec::new();
            for _ in 0..OPEN {
                pairs.push(connected_pair(&selector, &listener).await);
            }
            let mut closed = 0;
            let shutdown = async {
                if of_selector {
                    selector.shutdown(Duration::from_secs(60)).await
                } else {
                    listener.shutdown(Duration::from_secs(60)).await
                }
            };
            let done = {
                let mut shutdown = std::pin::pin!(shutdown);
                // One connection closed after each poll: the wake-up of the next.
                let closing = std::future::poll_fn(|cx| {
                    let polled = shutdown.as_mut().poll(cx);
                    if polled.is_pending() && closed < OPEN {
                        pairs[closed].1.close();
                        closed += 1;
                    }
                    polled
                });
                poll_at_most(closing, polls).await
            };
            assert!(done.is_none(), "{what}: the shutdown ended: {done:?}");
            assert_eq!(closed, polls, "{what}");
            assert!(listener.is_closed(), "{what}");
            for (i, (client, served)) in pairs.iter_mut().enumerate().skip(closed) {
                within(served.shutdown_requested()).await;
                assert!(
                    !served.is_closed(),
                    "{what}: connection {i} closed by the drop"
                );
                // Still usable both ways.
                let mut output = served.open_write_channel(true).unwrap();
                output.write_string_utf8("still here\n").await.unwrap();
                let mut input = client.open_read_channel().unwrap();
                let line = within(input.read_line(64, LineEnding::Default)).await;
                assert_eq!(line.unwrap().as_deref(), Some("still here"), "{what}");
            }
            let report = if of_selector {
                within(selector.shutdown(Duration::ZERO)).await
            } else {
                within(listener.shutdown(Duration::ZERO)).await
            };
            // A selector's counts the clients too (outgoing connections of the same selector).
            let open = OPEN - closed + if of_selector { OPEN } else { 0 };
            assert_eq!(
                (report.finished, report.cut),
                (0, open),
                "{what}: {report:?}"
            );
            for (i, (_, served)) in pairs.iter().enumerate() {
                assert!(served.is_closed(), "{what}: connection {i} left open");
            }
            assert_eq!(listener.stats().open, 0, "{what}");
        }
    }
}

/// `accept` under `max_connections(2)`, with both places taken and a third client waiting
/// (plain, and behind a PROXY protocol header), dropped after k polls (k = 1, 2, 3), one held
/// connection closed after its first poll (the place that frees wakes it): no connection is
/// lost or handed out twice, and no place is kept: once all are closed, two new connections
/// are accepted at once, and the listener counts none open at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepts_waiting_for_a_place_dropped_at_every_poll_lose_and_keep_nothing() {
    use net_sockets::ProxyProtocol;
    let selector = SelectorManager::new();
    for proxied in [false, true] {
        for polls in 1..=3 {
            let what = format!("proxied {proxied}, {polls} polls");
            let listener = tcp_listener_with(&selector, |b| {
                let b = b.max_connections(2);
                if proxied {
                    b.proxy_protocol(ProxyProtocol::Required)
                } else {
                    b
                }
            })
            .await;
            let port = listener.port().unwrap();
            let client = |n: u8| async move {
                let mut client = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                let header = format!("PROXY TCP4 192.0.2.{n} 192.0.2.200 4000 80\r\n");
                if proxied {
                    client.write_all(header.as_bytes()).await.unwrap();
                }
                client
                    .write_all(format!("hello {n}\n").as_bytes())
                    .await
                    .unwrap();
                client
            };
            let mut clients = Vec::new();
            let mut held = Vec::new();
            for n in 1..=2 {
                clients.push(client(n).await);
                held.push(within(listener.accept()).await.unwrap());
            }
            clients.push(client(3).await);
            let mut freed = false;
            let done = {
                let mut accept = std::pin::pin!(listener.accept());
                let closing = std::future::poll_fn(|cx| {
                    let polled = accept.as_mut().poll(cx);
                    if polled.is_pending() && !freed {
                        held.remove(0).close();
                        freed = true;
                    }
                    polled
                });
                poll_at_most(closing, polls).await
            };
            assert!(freed, "{what}: accepted without a free place");
            let mut third = match done {
                Some(accepted) => accepted.unwrap(),
                None => within(listener.accept()).await.unwrap(),
            };
            let mut input = third.open_read_channel().unwrap();
            let line = within(input.read_line(64, LineEnding::Default)).await;
            assert_eq!(line.unwrap().as_deref(), Some("hello 3"), "{what}");
            drop((input, third));
            held.clear();
            // Every place free again: two at once.
            clients.clear();
            for n in 4..=5 {
                clients.push(client(n).await);
                let mut socket = within(listener.accept()).await.unwrap();
                let mut input = socket.open_read_channel().unwrap();
                let line = within(input.read_line(64, LineEnding::Default)).await;
                assert_eq!(line.unwrap(), Some(format!("hello {n}")), "{what}");
                held.push(socket);
            }
            drop(held);
            within(async {
                while listener.stats().open != 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await;
            assert_eq!(listener.stats().proxy_header_failures, 0, "{what}");
        }
    }
}

/// A write channel's `flush` dropped after k polls (k = 1, 2, … until it completes) while the
/// socket (TLS: and the session) cannot take everything yet, then the socket `close`d: "bytes
/// still buffered in a write channel are not sent: the close then resets (TLS: omits
/// `close_notify`)", and what the transport took is sent: the peer reads everything and a
/// clean end, or a prefix and a failed end — never a clean end after part of the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_after_flushes_dropped_at_every_poll_never_end_a_cut_stream_cleanly() {
    let pki = Pki::generate();
    let selector = SelectorManager::new();
    // (A plain Unix socket has no reset: its peer cannot tell a cut stream, as documented.)
    for kind in [Kind::Tcp, Kind::Tls] {
        let mut completed = false;
        for polls in 1..=64 {
            let what = format!("{kind:?}, {polls} polls");
            let (mut ours, mut theirs, keep) = connection(&selector, kind, &pki).await;
            let mut output = ours.output(false);
            let (go, started) = tokio::sync::oneshot::channel();
            let reader = slow_reader(theirs.input(), started);
            // Fill the way to the peer until a flush has to wait, then a little more.
            let data = payload(300_000);
            let mut sent = 0;
            let mut go = Some(go);
            let mut done = None;
            for chunk in data.chunks(3000) {
                within(output.write_fully(chunk)).await.unwrap();
                sent += chunk.len();
                if poll_at_most(output.flush(), 1).await.is_none() {
                    within(output.write_fully(&data[sent..sent + 3000]))
                        .await
                        .ok();
                    sent += 3000;
                    let mut flush = std::pin::pin!(output.flush());
                    assert!(net_tests::pending_after_one_poll(flush.as_mut()).await);
                    go.take().unwrap().send(()).unwrap();
                    done = Some(if polls > 1 {
                        poll_at_most(flush, polls - 1).await
                    } else {
                        None
                    });
                    break;
                }
            }
            let done = done.unwrap_or_else(|| panic!("{what}: no flush had to wait"));
            ours.close();
            let (got, end) = within(reader).await.unwrap();
            assert!(
                data[..sent].starts_with(&got),
                "{what}: bytes that were not sent"
            );
            if end.is_ok() {
                assert_eq!(
                    got.len(),
                    sent,
                    "{what}: a clean end after part of the stream"
                );
            }
            drop((output, ours, theirs, keep));
            if let Some(flushed) = done {
                flushed.unwrap();
                completed = true;
                break;
            }
        }
        assert!(
            completed,
            "{kind:?}: the flush did not complete in 64 polls"
        );
    }
}

/// A connected datagram socket's `send` and `receive` dropped after k polls (k = 1, 2, 3),
/// each way between it and a bound one: cancel safe, as a bound one's: every datagram sent is
/// received once, whole, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_datagram_operations_dropped_at_every_poll_lose_and_double_nothing() {
    use net_sockets::Datagram;
    let selector = SelectorManager::new();
    let bound = udp_socket(&selector).await;
    let connected = a_socket(&selector)
        .udp()
        .connect(bound.local_address())
        .await
        .unwrap();
    for to_connected in [false, true] {
        let mut expected = Vec::new();
        for i in 0..40u32 {
            let packet = bytes::Bytes::from(format!("datagram {i}, {to_connected}"));
            let polls = (i % 3 + 1) as usize;
            let sent = if to_connected {
                let datagram = Datagram::new(packet.clone(), connected.local_address()).unwrap();
                poll_at_most(bound.send(datagram), polls).await
            } else {
                let datagram = Datagram::new(packet.clone(), bound.local_address()).unwrap();
                poll_at_most(connected.send(datagram), polls).await
            };
            if let Some(done) = sent {
                done.unwrap();
                expected.push(packet);
            }
            if expected.is_empty() {
                // Nothing to wake a receive that waits.
                continue;
            }
            for k in 1..=3 {
                let received = if to_connected {
                    poll_at_most(connected.receive(), k).await
                } else {
                    poll_at_most(bound.receive(), k).await
                };
                if let Some(done) = received {
                    assert_eq!(Some(&done.unwrap().packet), expected.first(), "at {i}");
                    expected.remove(0);
                    break;
                }
            }
        }
        while !expected.is_empty() {
            let got = if to_connected {
                within(connected.receive()).await
            } else {
                within(bound.receive()).await
            };
            assert_eq!(got.unwrap().packet, expected.remove(0));
        }
    }
}

/// `socket_timeout`'s docs: "The time runs from when a read (or a write) starts waiting, and
/// only one that completes on the socket … starts it afresh": so writes given up while they
/// wait (a `select!` loop with a heartbeat, a `timeout` around each), to a peer that reads
/// nothing, made again turn after turn, still end after `socket_timeout` without progress:
/// `write_fully` past the buffer, `flush` after a buffered write, and the stream's `write`,
/// over TCP and TLS. Each turn gives up after 20 ms; with a 200 ms `socket_timeout`, the
/// timeout comes in a few turns (the bound, 400 turns, is some 40 times that).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_given_up_turn_after_turn_still_time_out() {
    const TURNS: usize = 400;
    let pki = Pki::generate();
    let selector = SelectorManager::new();
    for kind in [Kind::Tcp, Kind::Tls] {
        for how in ["write_fully", "flush", "stream write"] {
            let what = format!("{kind:?}, {how}");
            let listener = tcp_listener_with(&selector, |b| b.receive_buffer_size(4096)).await;
            let socket = a_socket(&selector)
                .tcp()
                .send_buffer_size(4096)
                .socket_timeout(Duration::from_millis(200))
                .connect(listener.local_address())
                .await
                .unwrap();
            // The peer never reads.
            let accepted = within(listener.accept()).await.unwrap();
            let (ours, _theirs): (Side, Box<dyn std::any::Any + Send>) = if kind == Kind::Tls {
                let server_config = pki.server_config().build().unwrap();
                let client_config = pki.client_config().build().unwrap();
                let (ours, theirs) = within(async {
                    tokio::join!(
                        socket.tls(client_config),
                        accepted.tls_server(&server_config)
                    )
                })
                .await;
                (Side::Tls(ours.unwrap()), Box::new(theirs.unwrap()))
            } else {
                (Side::Plain(socket), Box::new(accepted))
            };
            let chunk = payload(20_000);
            let mut outcome = None;
            if how == "stream write" {
                let mut stream: Box<dyn Stream> = match ours {
                    Side::Plain(s) => Box::new(s.into_stream().unwrap()),
                    Side::Tls(s) => Box::new(s.into_stream().unwrap()),
                };
                for turn in 0..TURNS {
                    let write = stream.write(&chunk);
                    match tokio::time::timeout(Duration::from_millis(20), write).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            outcome = Some((turn, e.kind()));
                            break;
                        }
                        Err(_) => {}
                    }
                }
            } else {
                let mut ours = ours;
                let mut output = ours.output(false);
                for turn in 0..TURNS {
                    let done = if how == "flush" {
                        // A buffered write that fits (whole or not at all), then its flush.
                        let turn = async {
                            output.write_fully(&chunk[..1000]).await?;
                            output.flush().await
                        };
                        tokio::time::timeout(Duration::from_millis(20), turn).await
                    } else {
                        let turn = output.write_fully(&chunk);
                        tokio::time::timeout(Duration::from_millis(20), turn).await
                    };
                    let done = done.unwrap_or(Ok(()));
                    if let Err(e) = done {
                        outcome = Some((turn, std::io::Error::from(e).kind()));
                        break;
                    }
                }
                output.cancel();
                drop((output, ours));
            }
            let (turn, error) =
                outcome.unwrap_or_else(|| panic!("{what}: no timeout in {TURNS} turns"));
            assert_eq!(
                error,
                std::io::ErrorKind::TimedOut,
                "{what}: at turn {turn}"
            );
        }
    }
}

/// `copy_to` into a socket's write channel (TCP, and TLS, whose session takes part of a large
/// chunk), from a source that is always ready, dropped after k polls (k = 1, 2, 3, over and
/// over) while the peer reads slowly, then called again until the source's end: not cancel
/// safe ("a chunk may be written to `dst` and still be in this channel"), but never silently
/// wrong: the source is read once, to its end, and either the peer reads the exact stream and
/// a clean end, or `flush_and_close` fails and the peer sees no clean end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_into_a_socket_dropped_at_every_poll_never_end_a_wrong_stream_cleanly() {
    let pki = Pki::generate();
    let selector = SelectorManager::new();
    for kind in [Kind::Tcp, Kind::Tls] {
        let (mut ours, mut theirs, _keep) = connection(&selector, kind, &pki).await;
        let mut output = ours.output(false);
        let data = payload(400_000);
        let mut source = ByteReadChannel::from_bytes(bytes::Bytes::from(data.clone()));
        let (go, started) = tokio::sync::oneshot::channel();
        let reader = slow_reader(theirs.input(), started);
        let mut go = Some(go);
        let mut polls = 1;
        let mut dropped = 0;
        for copies in 1.. {
            // After 200 copies, one runs to the end.
            let tries = if copies > 200 { usize::MAX } else { polls };
            match poll_at_most(source.copy_to(&mut output, u64::MAX), tries).await {
                Some(copied) => {
                    copied.unwrap();
                    break;
                }
                None => {
                    dropped += 1;
                    if let Some(go) = go.take() {
                        go.send(()).unwrap();
                    }
                }
            }
            polls = polls % 3 + 1;
        }
        if let Some(go) = go.take() {
            go.send(()).unwrap();
        }
        assert!(dropped > 0, "{kind:?}: no copy was dropped");
        assert_eq!(source.total_bytes_read(), data.len() as u64, "{kind:?}");
        let closed = within(output.flush_and_close()).await;
        ours.close();
        let (got, end) = within(reader).await.unwrap();
        match (closed, end) {
            (Ok(()), Ok(())) => assert!(got == data, "{kind:?}: a clean end after a wrong stream"),
            (Err(_), Err(_)) => {}
            (closed, end) => panic!("{kind:?}: the close: {closed:?}, the peer's end: {end:?}"),
        }
        drop((output, ours, theirs));
    }
}

/// The same promise over an in-memory `ByteChannel` (whose pipe takes part of a write when it
/// has room for only part): `write_fully` of 20,000 bytes, each call's bytes one value, polled
/// once and dropped when the pipe is full, the reader taking 5,000 bytes between calls. The
/// reader gets each call in order, whole or a prefix; where a call was cut, `flush_and_close`
/// fails with `BrokenPipe` (or, with the writer dropped instead, nothing is said) and the
/// reader fails with `Cancelled` after what was delivered, never a clean end.
#[tokio::test]
async fn pipe_writes_dropped_part_way_never_end_the_readers_stream_cleanly() {
    const CALL: usize = 20_000;
    for close in [true, false] {
        let (mut output, mut input) = ByteChannel::new(false);
        let mut got = Vec::new();
        let mut room = vec![0u8; 5000];
        let mut cut = 0;
        for value in 1..=60u8 {
            let call = vec![value; CALL];
            let before = output.total_bytes_written();
            if poll_at_most(output.write_fully(&call), 1).await.is_none() {
                let took = output.total_bytes_written() - before;
                if took > 0 && took < CALL as u64 {
                    cut += 1;
                }
            }
            let n = within(input.read_available(&mut room)).await.unwrap();
            got.extend_from_slice(&room[..n]);
        }
        assert!(
            cut > 0,
            "close {close}: no write was cut: the test shows nothing"
        );
        if close {
            let closed = within(output.flush_and_close()).await;
            let e = closed.expect_err("a clean close after a cut write");
            let kind = std::io::Error::from(e).kind();
            assert_eq!(kind, std::io::ErrorKind::BrokenPipe, "close {close}");
        } else {
            drop(output);
        }
        let end = loop {
            match within(input.read_available(&mut room)).await {
                Ok(0) => break Ok(()),
                Ok(n) => got.extend_from_slice(&room[..n]),
                Err(e) => break Err(e),
            }
        };
        assert!(
            matches!(end, Err(net_io::Error::Cancelled)),
            "close {close}: the reader's end: {end:?}"
        );
        // Runs of increasing values, none longer than a call.
        let mut last = 0u8;
        let mut run = 0;
        for &byte in &got {
            if byte != last {
                assert!(byte > last, "close {close}: {byte} after {last}");
                (last, run) = (byte, 0);
            }
            run += 1;
            assert!(
                run <= CALL,
                "close {close}: call {byte} delivered more than once"
            );
        }
    }
}

/// The look-aheads and the other cancel-safe reads the socket tests left out — `read_remaining`,
/// `await_content`, `peek`, `skip_if_found`, `read_available` — over TCP, TLS (one record per
/// byte) and Unix, each polled k times (k = 1, 2, 3, 4) while its item arrives one byte per
/// poll, dropped, and made again until it completes: "cancel safe: nothing is consumed" until
/// it completes, and then what it returns and consumes is its item, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_aheads_and_reads_dropped_at_every_byte_lose_nothing() {
    let pki = Pki::generate();
    let selector = SelectorManager::new();
    for kind in KINDS {
        let (mut ours, mut theirs, _keep) = connection(&selector, kind, &pki).await;
        let mut input = ours.input();
        // The peer writes one byte per permit (auto-flushed: TLS, one record per byte).
        let mut output = theirs.output(true);
        let release = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
        let items: [(&str, &[u8]); 5] = [
            ("read_remaining", b"0123456789"),
            ("await_content", b"abcdefg"),
            ("peek", b"hijkl"),
            ("skip_if_found", b"MARK"),
            ("read_available", b"z"),
        ];
        let stream: Vec<u8> = items.iter().flat_map(|(_, item)| item.to_vec()).collect();
        let writer = tokio::spawn({
            let release = release.clone();
            async move {
                for byte in stream {
                    release.acquire().await.unwrap().forget();
                    output.write_u8(byte).await.unwrap();
                }
                output
            }
        });
        let mut polls = 1;
        // Bytes released so far, and up to where: never past the item read now (a poll that
        // waits without a byte more, a wake-up of another cause, would otherwise release the
        // next item's bytes ahead, and its read could complete before it was ever dropped).
        let mut granted = 0;
        let mut limit = 0;
        for (name, item) in items {
            let what = format!("{kind:?}, {name}");
            let at = input.total_bytes_read();
            limit += item.len();
            // One byte released after each poll that waits: the wake-up of the next.
            let mut dropped = 0;
            loop {
                let released = &release;
                let granted = &mut granted;
                let mut pending_polls = 0;
                macro_rules! attempt {
                    ($read:expr) => {{
                        let mut read = std::pin::pin!($read);
                        let releasing = std::future::poll_fn(|cx| {
                            let polled = read.as_mut().poll(cx);
                            if polled.is_pending() {
                                pending_polls += 1;
                                if *granted < limit {
                                    *granted += 1;
                                    released.add_permits(1);
                                }
                            }
                            polled
                        });
                        poll_at_most(releasing, polls).await
                    }};
                }
                let mut room = [0u8; 64];
                let done: Option<Vec<u8>> = match name {
                    "read_remaining" => {
                        attempt!(input.read_remaining(item.len())).map(|r| r.unwrap().to_vec())
                    }
                    "await_content" => attempt!(input.await_content(item.len())).map(|r| {
                        assert!(r.unwrap());
                        Vec::new()
                    }),
                    "peek" => {
                        attempt!(input.peek(item.len())).map(|r| r.unwrap().unwrap().to_vec())
                    }
                    "skip_if_found" => attempt!(input.skip_if_found(item)).map(|r| {
                        assert!(r.unwrap(), "{what}: not found");
                        item.to_vec()
                    }),
                    _ => attempt!(input.read_available(&mut room))
                        .map(|r| room[..r.unwrap()].to_vec()),
                };
                polls = polls % 4 + 1;
                let Some(got) = done else {
                    dropped += 1;
                    // Nothing consumed.
                    assert_eq!(
                        input.total_bytes_read(),
                        at,
                        "{what}: a dropped read consumed"
                    );
                    assert!(pending_polls > 0);
                    continue;
                };
                match name {
                    "await_content" | "peek" => {
                        // Look-aheads: nothing consumed; the item is then read whole.
                        assert_eq!(input.total_bytes_read(), at, "{what}");
                        if name == "peek" {
                            assert_eq!(got, item, "{what}");
                        }
                        let read = within(input.read_bytes(item.len())).await.unwrap();
                        assert_eq!(&read[..], item, "{what}");
                    }
                    _ => assert_eq!(got, item, "{what}"),
                }
                assert_eq!(input.total_bytes_read(), at + item.len() as u64, "{what}");
                break;
            }
            assert!(
                dropped > 0 || item.len() == 1,
                "{what}: no read was dropped"
            );
        }
        drop(within(writer).await.unwrap());
    }
}
