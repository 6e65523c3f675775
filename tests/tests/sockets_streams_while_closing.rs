//! A socket's stream (`into_stream`, plain or TLS) used through tokio's traits from two tasks
//! at once, while a third task ends it: the stream API's counterpart of
//! `sockets_halves_while_closing.rs`.
//!
//! - Randomised but bounded (a seed per round, printed on failure; `STREAMS_SEED`,
//!   `STREAMS_ROUNDS` choose the rounds; the run stops after `STREAMS_SECS`, 2 s unless
//!   `STREAMS_ROUNDS` is given, 500 s if it is): trait reads in one task (buffers of every size, the empty one
//!   too, reads given up at `Pending`), trait writes in another (single and vectored writes,
//!   empty writes, writes given up at `Pending`, flushes, shutdowns, writes after the
//!   shutdown), while a third closes the socket, closes its selector, or does nothing, and
//!   the peer reads everything, half-closes, resets, or stops reading for a while.
//! - Every operation ends; the peer never reads a clean end after bytes a write reported
//!   written were lost, nor bytes that are not the stream's; our reads return the peer's
//!   bytes in order, then an end or an error that later reads report again; a clean end is
//!   read only after every byte the peer sent; a write after the shutdown fails with
//!   `BrokenPipe`; no descriptor is left behind.

use std::future::poll_fn;
use std::io::{ErrorKind, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use net_sockets::{SelectorManager, SocketStream, Transport};
use net_tests::pairs::{self, Kind, Ours, Pair, PeerIo, SKIPPED, Setup};
use net_tests::rng::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// What the peer does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Peer {
    /// Sends its requests, reads everything.
    ReadAll,
    /// Sends its requests, half-closes, reads everything.
    HalfClose,
    /// Reads a little, then resets the connection.
    Reset,
    /// Reads nothing until the closer acted, then everything.
    Stalls,
}

/// What the third task does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Closer {
    Close,
    CloseSelector,
    /// The listener's graceful shutdown, whose grace period (a few ms) ends with a cut.
    ListenerShutdown,
    /// Nothing: the stream's users and the peer end it.
    Nothing,
}

/// The stream shared by the reading task, the writing task and the closer, as
/// `tokio::io::split` shares it (a lock held for one poll), but with the socket still
/// reachable for its `close`.
struct Shared<T: Transport>(Arc<Mutex<SocketStream<T>>>);

impl<T: Transport> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl<T: Transport> AsyncRead for Shared<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0.lock().unwrap()).poll_read(cx, buf)
    }
}

impl<T: Transport> AsyncWrite for Shared<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0.lock().unwrap()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0.lock().unwrap()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.lock().unwrap().is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0.lock().unwrap()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0.lock().unwrap()).poll_shutdown(cx)
    }
}

/// How a side's read ended.
#[derive(Clone, Debug, PartialEq)]
enum End {
    /// Still open when the side stopped reading.
    Open,
    Clean,
    Failed(ErrorKind),
}

const STREAM: usize = 512 * 1024;

/// What one round chose, for the failure message.
#[derive(Debug)]
struct Choice {
    seed: u64,
    kind: Kind,
    peer: Peer,
    closer: Closer,
    coalesce: bool,
    small_buffers: bool,
    /// The socket's `socket_timeout`, if any: writes to a stalled peer and reads time out.
    timeout: Option<Duration>,
}

/// One round: the choices, a connection of `kind`, and the three tasks.
async fn round(seed: u64, kind: Kind, pki: &net_tests::pki::Pki) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let peer = [Peer::ReadAll, Peer::HalfClose, Peer::Reset, Peer::Stalls][rng.below(4) as usize];
    let closer = match peer {
        // The connection ends only if someone ends it (our reader waits for the peer's end).
        Peer::HalfClose => [
            Closer::Close,
            Closer::CloseSelector,
            Closer::ListenerShutdown,
            Closer::Nothing,
        ][rng.below(4) as usize],
        _ => [
            Closer::Close,
            Closer::CloseSelector,
            Closer::ListenerShutdown,
        ][rng.below(3) as usize],
    };
    let choice = Choice {
        seed,
        kind,
        peer,
        closer,
        coalesce: rng.chance(2),
        small_buffers: rng.chance(2) && kind != Kind::Unix,
        timeout: rng
            .chance(4)
            .then(|| Duration::from_millis(50 + rng.below(100))),
    };
    let setup = Setup {
        coalesce: choice.coalesce,
        small_buffers: choice.small_buffers,
        timeout: choice.timeout,
    };
    let Pair {
        selector,
        listener,
        peer: peer_io,
        ours,
        dir: _dir,
    } = pairs::connect(kind, pki, setup).await?;
    match ours {
        Ours::Plain(s) => {
            let stream = s.into_stream().map_err(|e| e.to_string())?;
            run(choice, rng, selector, listener, peer_io, stream).await
        }
        Ours::Tls(s) => {
            let stream = s.into_stream().map_err(|e| e.to_string())?;
            run(choice, rng, selector, listener, peer_io, stream).await
        }
    }
}

/// What the writing task saw.
#[derive(Debug, Default)]
struct Written {
    /// Bytes writes reported written (`Ok(n)`), in order from the stream's start.
    ok: usize,
    /// Whether a shutdown returned `Ok`.
    shut_down: bool,
    /// The first error (other than the checks after the shutdown, and timeouts retried).
    error: Option<String>,
    /// Timeouts retried.
    timeouts: usize,
    /// Contract breaks seen.
    wrong: Vec<String>,
}

/// What the reading task saw.
#[derive(Debug)]
struct Read {
    received: Vec<u8>,
    end: End,
    wrong: Vec<String>,
}

async fn run<T: Transport>(
    choice: Choice,
    mut rng: Rng,
    selector: SelectorManager,
    listener: net_sockets::ServerSocket,
    peer_io: Box<dyn PeerIo>,
    stream: SocketStream<T>,
) -> Result<(), String> {
    let shared = Shared(Arc::new(Mutex::new(stream)));
    let peer_mode = choice.peer;
    let (acted_tx, acted_rx) = tokio::sync::oneshot::channel::<()>();

    // The peer: its requests, then it reads (and maybe resets).
    let requests = rng.below(20) as usize;
    let reset_after = rng.below(64 * 1024) as usize;
    let peer_task = tokio::spawn(async move {
        let (mut rd, mut wr) = tokio::io::split(peer_io);
        let mut sent = Vec::new();
        let mut write_failed = None;
        for i in 0..requests {
            let request = format!("request {i}\n");
            if let Err(e) = wr.write_all(request.as_bytes()).await {
                write_failed = Some(e.kind());
                break;
            }
            sent.extend_from_slice(request.as_bytes());
        }
        let mut half_closed = false;
        if peer_mode == Peer::HalfClose {
            half_closed = wr.shutdown().await.is_ok();
        }
        if peer_mode == Peer::Stalls {
            let _ = acted_rx.await;
        }
        let mut received = Vec::new();
        let mut buf = vec![0; 16 * 1024];
        let end = loop {
            match rd.read(&mut buf).await {
                Ok(0) => break write_failed.map_or(End::Clean, End::Failed),
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e) => break End::Failed(e.kind()),
            }
            if peer_mode == Peer::Reset && received.len() >= reset_after {
                rd.unsplit(wr).reset();
                return (
                    received,
                    End::Failed(ErrorKind::Other),
                    sent,
                    half_closed,
                    true,
                );
            }
        };
        drop(wr);
        (received, end, sent, half_closed, false)
    });

    // The writer: pieces of one stream, so the peer's bytes can be checked.
    let body = Arc::new(net_tests::payload(STREAM));
    let expected = Arc::clone(&body);
    let ops = 1 + rng.below(30);
    let mut wrng = Rng::new(choice.seed ^ 0xABCD);
    let mut w = shared.clone();
    let writer = tokio::spawn(async move {
        let mut out = Written::default();
        for _ in 0..ops {
            let len = (1 + wrng.below(20_000) as usize).min(STREAM - out.ok);
            let piece = &body[out.ok..out.ok + len];
            let op = wrng.below(12);
            if out.shut_down && op <= 7 {
                // Every write after the shutdown fails with `BrokenPipe` (the empty one too).
                let empty = op == 7;
                let r =
                    poll_fn(|cx| Pin::new(&mut w).poll_write(cx, if empty { &[] } else { piece }))
                        .await;
                if !matches!(&r, Err(e) if e.kind() == ErrorKind::BrokenPipe) {
                    out.wrong
                        .push(format!("a write (empty {empty}) after the shutdown: {r:?}"));
                }
                continue;
            }
            let r = match op {
                // One write call, to its end.
                0..=3 => poll_fn(|cx| Pin::new(&mut w).poll_write(cx, piece)).await,
                // One write call given up at `Pending` (took nothing then).
                4 | 5 => {
                    match tokio::time::timeout(
                        Duration::from_micros(wrng.below(3000)),
                        poll_fn(|cx| Pin::new(&mut w).poll_write(cx, piece)),
                    )
                    .await
                    {
                        Ok(r) => r,
                        Err(_) => Ok(0),
                    }
                }
                // Vectored: two slices of the stream.
                6 => {
                    let cut = wrng.below(len as u64 + 1) as usize;
                    let (a, b) = piece.split_at(cut);
                    let slices = [IoSlice::new(a), IoSlice::new(b)];
                    poll_fn(|cx| Pin::new(&mut w).poll_write_vectored(cx, &slices)).await
                }
                // Empty: `Ok(0)` at once, or the close's error.
                7 => {
                    let r = poll_fn(|cx| Pin::new(&mut w).poll_write(cx, &[])).await;
                    if let Ok(n) = r
                        && n != 0
                    {
                        out.wrong.push(format!("an empty write wrote {n}"));
                    }
                    r.map(|_| 0)
                }
                8 => w.flush().await.map(|()| 0),
                9 => {
                    tokio::task::yield_now().await;
                    Ok(0)
                }
                _ => {
                    let r = w.shutdown().await;
                    match r {
                        Ok(()) => {
                            out.shut_down = true;
                            // Again: still `Ok`, unless the closer closed the socket meanwhile.
                            if let Err(e) = w.shutdown().await
                                && !matches!(
                                    e.kind(),
                                    ErrorKind::NotConnected | ErrorKind::ConnectionAborted
                                )
                            {
                                out.wrong.push(format!("a second shutdown: {e:?}"));
                            }
                            Ok(0)
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            match r {
                Ok(n) => {
                    if n > len {
                        out.wrong.push(format!("wrote {n} of {len}"));
                    }
                    out.ok += n;
                }
                // A write (or flush, or shutdown) that timed out took nothing: retried (as
                // whatever comes next) or given up.
                Err(e) if e.kind() == ErrorKind::TimedOut && wrng.chance(2) => out.timeouts += 1,
                Err(e) => {
                    out.error = Some(format!("{:?}: {e}", e.kind()));
                    break;
                }
            }
            if out.ok == STREAM {
                break;
            }
        }
        if out.error.is_none() && !out.shut_down && wrng.chance(2) {
            match w.shutdown().await {
                Ok(()) => out.shut_down = true,
                Err(e) => out.error = Some(format!("{:?}: {e}", e.kind())),
            }
        }
        drop(w);
        out
    });

    // The reader.
    let mut rrng = Rng::new(choice.seed ^ 0x1234);
    let mut r = shared.clone();
    let reader = tokio::spawn(async move {
        let mut seen = Read {
            received: Vec::new(),
            end: End::Open,
            wrong: Vec::new(),
        };
        let mut buf = vec![0u8; 64 * 1024];
        let mut timeouts = 0;
        for _ in 0..200 {
            let size = match rrng.below(8) {
                0 => 0,
                1 => buf.len(),
                _ => 1 + rrng.below(300) as usize,
            };
            let read = if rrng.chance(3) {
                // Given up at `Pending`: nothing was taken.
                match tokio::time::timeout(
                    Duration::from_micros(rrng.below(3000)),
                    r.read(&mut buf[..size]),
                )
                .await
                {
                    Ok(read) => read,
                    Err(_) => continue,
                }
            } else {
                r.read(&mut buf[..size]).await
            };
            match (&seen.end, read) {
                // An empty buffer reads nothing, at once, whatever came before (as tokio's
                // `TcpStream` does).
                (_, Ok(0)) if size == 0 => {}
                (End::Open, Ok(0)) => seen.end = End::Clean,
                (End::Open, Ok(n)) => seen.received.extend_from_slice(&buf[..n]),
                (End::Open, Err(e)) if e.kind() == ErrorKind::TimedOut => {
                    timeouts += 1;
                    if timeouts > 3 {
                        break;
                    }
                }
                (End::Open, Err(e)) => seen.end = End::Failed(e.kind()),
                (End::Clean, Ok(0)) => {}
                // After the end, our own close may fail later reads.
                (End::Clean, Err(e))
                    if matches!(
                        e.kind(),
                        ErrorKind::NotConnected | ErrorKind::ConnectionAborted
                    ) => {}
                (End::Failed(kind), Err(e)) if e.kind() == *kind => {}
                (end, again) => {
                    seen.wrong
                        .push(format!("a read after {end:?} (size {size}): {again:?}"));
                    break;
                }
            }
            if seen.end != End::Open && rrng.chance(4) {
                break;
            }
            if rrng.chance(6) {
                tokio::task::yield_now().await;
            }
        }
        drop(r);
        seen
    });

    // The closer.
    for _ in 0..rng.below(40) {
        tokio::task::yield_now().await;
    }
    let hang = |what: &str| format!("{choice:?}: {what} hung");
    let limit = Duration::from_secs(10);
    match choice.closer {
        Closer::Close => shared.0.lock().unwrap().close(),
        Closer::CloseSelector => selector.close(),
        Closer::ListenerShutdown => {
            let grace = Duration::from_millis(rng.below(30));
            tokio::time::timeout(limit, listener.shutdown(grace))
                .await
                .map_err(|_| hang("the listener's shutdown"))?;
        }
        Closer::Nothing => {}
    }
    if choice.closer != Closer::Nothing {
        let closed = {
            let stream = shared.0.lock().unwrap();
            stream.is_closed()
        };
        if !closed {
            return Err(format!("{choice:?}: open after the close"));
        }
    }
    let _ = acted_tx.send(());
    let written = tokio::time::timeout(limit, writer)
        .await
        .map_err(|_| hang("the writer"))?
        .map_err(|e| format!("{choice:?}: the writer panicked: {e}"))?;
    let read = tokio::time::timeout(limit, reader)
        .await
        .map_err(|_| hang("the reader"))?
        .map_err(|e| format!("{choice:?}: the reader panicked: {e}"))?;
    if !written.shut_down {
        // The write side was not shut down: the peer sees the end only at the close.
        shared.0.lock().unwrap().close();
    }
    let (received, end, sent, half_closed, reset) = tokio::time::timeout(limit, peer_task)
        .await
        .map_err(|_| hang("the peer"))?
        .unwrap();
    let stream = Arc::try_unwrap(shared.0)
        .map_err(|_| format!("{choice:?}: the stream is still shared"))?
        .into_inner()
        .unwrap();
    stream.close();
    tokio::time::timeout(limit, stream.await_closed())
        .await
        .map_err(|_| hang("await_closed"))?;
    drop(stream);
    selector.close();

    let what = format!(
        "{choice:?}: {written:?}; our reader read {} of {} then {:?}; the peer sent {requests} requests \
         (half-closed {half_closed}, reset {reset}), read {} then {end:?}",
        read.received.len(),
        sent.len(),
        read.end,
        received.len()
    );
    if !written.wrong.is_empty() || !read.wrong.is_empty() {
        return Err(format!("{what}: {:?} {:?}", written.wrong, read.wrong));
    }
    if received.len() > STREAM || received[..] != expected[..received.len()] {
        return Err(format!("{what}: bytes that are not the stream's"));
    }
    if received.len() > written.ok {
        return Err(format!("{what}: more bytes than writes reported written"));
    }
    let plain_unix = choice.kind == Kind::Unix;
    if end == End::Clean && received.len() != written.ok && !plain_unix {
        return Err(format!(
            "{what}: a clean end after {} of {} bytes written",
            received.len(),
            written.ok
        ));
    }
    if written.shut_down
        && peer_mode != Peer::Reset
        && sent.is_empty()
        && !plain_unix
        && (end != End::Clean || received.len() != written.ok)
    {
        return Err(format!("{what}: the shutdown succeeded"));
    }
    // Our reads: the peer's bytes, in order; a clean end only after all of them.
    if read.received.len() > sent.len() || read.received[..] != sent[..read.received.len()] {
        return Err(format!(
            "{what}: our reader read bytes that are not the peer's"
        ));
    }
    // (A peer that read to its end drops its side: an end too, after all it sent; one that
    // reset the connection sent no end, though a Unix socket has no reset to show; over TLS
    // only `close_notify`, which the peer sends at its half-close, is a clean end.)
    if read.end == End::Clean
        && (read.received.len() != sent.len()
            || (reset && !plain_unix)
            || (choice.kind == Kind::Tls && !half_closed))
    {
        return Err(format!("{what}: our reader saw a clean end too early"));
    }
    Ok(())
}

/// Many rounds, bounded in count and time (about 2 s unless `STREAMS_ROUNDS` is given);
/// descriptors counted before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn stream_reads_and_writes_in_two_tasks_while_a_third_ends_the_socket() {
    let seeds = net_tests::rng::seeds("STREAMS", 1000);
    let first = seeds.start;
    // Long runs stop in time to report (`STREAMS_SECS`, 500 s by default when
    // `STREAMS_ROUNDS` is given).
    let given = std::env::var_os("STREAMS_ROUNDS").is_some();
    let budget = Duration::from_secs(
        std::env::var("STREAMS_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(if given { 500 } else { 2 }),
    );
    let pki = net_tests::pki::Pki::generate();
    let before = net_tests::probe::fd_count();
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut ran = 0;
    let mut skipped = 0;
    for seed in seeds {
        if started.elapsed() > budget {
            break;
        }
        ran += 1;
        let kind = Kind::for_seed(seed);
        match round(seed, kind, &pki).await {
            Err(e) if e == SKIPPED => skipped += 1,
            Err(e) => {
                eprintln!("{e}");
                failures.push(e);
            }
            Ok(()) => {}
        }
    }
    eprintln!("{ran} rounds from seed {first} ({skipped} skipped)");
    // Descriptors: closes that hand a socket to a task (held-back answers) release it as
    // that task ends; bounded wait for them.
    let waited = Instant::now();
    while net_tests::probe::fd_count() > before && waited.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = net_tests::probe::fd_count();
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
    assert!(
        after <= before,
        "descriptors: {before} before, {after} after"
    );
}
