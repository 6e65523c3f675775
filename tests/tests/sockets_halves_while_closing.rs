//! A socket's two halves used at once, in two tasks, while a third task ends the socket.
//!
//! - Randomised but bounded (a seed per round, printed on failure): the read channel in one
//!   task (lines, bytes, reads cancelled by `select!`), the write channel in another (writes
//!   with and without auto-flush, flushes, `flush_and_close`, a drop), while a third closes the
//!   socket, drops it, or closes its selector, and the peer reads everything, half-closes,
//!   resets, or stops reading for a while. Every operation ends; the peer never reads a clean
//!   end after bytes a write reported written were lost, nor bytes that are not the stream's;
//!   `await_closed` returns; no descriptor is left behind.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_tests::pairs::{self, Kind, Ours, Pair, Setup};
use net_tests::rng::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    /// Drops the socket; the channels end the connection.
    Drop,
    /// Nothing: the channels and the peer end it.
    Nothing,
}

/// How the peer's read ended.
#[derive(Debug, PartialEq)]
enum End {
    Clean,
    Failed(ErrorKind),
}

const STREAM: usize = 512 * 1024;

async fn round(seed: u64, kind: Kind, pki: &net_tests::pki::Pki) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let peer_mode =
        [Peer::ReadAll, Peer::HalfClose, Peer::Reset, Peer::Stalls][rng.below(4) as usize];
    let closer = match peer_mode {
        // The connection ends only if someone ends it.
        Peer::HalfClose => [
            Closer::Close,
            Closer::CloseSelector,
            Closer::Drop,
            Closer::Nothing,
        ][rng.below(4) as usize],
        _ => [Closer::Close, Closer::CloseSelector][rng.below(2) as usize],
    };
    let auto_flush = rng.chance(2);
    let coalesce = rng.chance(2);
    let small_buffers = rng.chance(2) && kind != Kind::Unix;
    let setup = Setup {
        coalesce,
        small_buffers,
        timeout: None,
    };
    let Pair {
        selector,
        listener: _listener,
        peer,
        mut ours,
        dir: _dir,
    } = pairs::connect(kind, pki, setup).await?;
    let (mut input, mut output) = ours.channels(auto_flush);
    let socket = ours;
    let (acted_tx, acted_rx) = tokio::sync::oneshot::channel::<()>();

    // The peer.
    let requests = rng.below(20) as usize;
    let reset_after = rng.below(64 * 1024) as usize;
    let peer_task = tokio::spawn(async move {
        let (mut rd, mut wr) = tokio::io::split(peer);
        let mut sent = 0;
        // A failed write: the connection was reset (see `graceful_round`'s peer).
        let mut write_failed = None;
        for i in 0..requests {
            if let Err(e) = wr.write_all(format!("request {i}\n").as_bytes()).await {
                write_failed = Some(e.kind());
                break;
            }
            sent += 1;
        }
        if peer_mode == Peer::HalfClose {
            let _ = wr.shutdown().await;
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
                return (received, End::Failed(ErrorKind::Other), sent);
            }
        };
        drop(wr);
        (received, end, sent)
    });

    // The writer: pieces of one stream, so the peer's bytes can be checked.
    let body = std::sync::Arc::new(net_tests::payload(STREAM));
    let expected = std::sync::Arc::clone(&body);
    let ops = 1 + rng.below(30);
    let mut wrng = Rng::new(seed ^ 0xABCD);
    let writer = tokio::spawn(async move {
        let mut ok = 0usize;
        let mut attempted = 0usize;
        let mut closed_cleanly = false;
        let mut error = None;
        let mut cancelled = false;
        // The bytes of a dropped write call: sent whole, or not at all, or the stream fails.
        let mut dropped = 0;
        for _ in 0..ops {
            let r = match wrng.below(12) {
                0..=5 => {
                    let len = (1 + wrng.below(20_000) as usize).min(STREAM - attempted);
                    if len == 0 {
                        break;
                    }
                    let piece = &body[attempted..attempted + len];
                    attempted += len;
                    let r = output.write_fully(piece).await;
                    if r.is_ok() {
                        ok = attempted;
                    }
                    r
                }
                // A write dropped by a `select!` (what it took is sent whole with what
                // follows, or the stream is failed); the writer writes no more after it.
                10 if !cancelled => {
                    let len = (1 + wrng.below(20_000) as usize).min(STREAM - attempted);
                    let piece = &body[attempted..attempted + len];
                    attempted += len;
                    let r = tokio::select! {
                        biased;
                        r = output.write_fully(piece) => Some(r),
                        () = tokio::task::yield_now() => None,
                    };
                    match r {
                        Some(Ok(())) => {
                            ok = attempted;
                            Ok(())
                        }
                        Some(Err(e)) => Err(e),
                        None => {
                            cancelled = true;
                            dropped = len;
                            break;
                        }
                    }
                }
                11 => {
                    let r = tokio::select! {
                        biased;
                        r = output.flush_and_close() => Some(r),
                        () = tokio::task::yield_now() => None,
                    };
                    match r {
                        Some(Ok(())) => {
                            closed_cleanly = true;
                            break;
                        }
                        Some(Err(e)) => Err(e),
                        None => {
                            cancelled = true;
                            break;
                        }
                    }
                }
                6 | 7 => output.flush().await,
                8 => {
                    tokio::task::yield_now().await;
                    Ok(())
                }
                _ => {
                    let r = output.flush_and_close().await;
                    closed_cleanly = r.is_ok();
                    if r.is_ok() {
                        break;
                    }
                    r
                }
            };
            if let Err(e) = r {
                error = Some(e.to_string());
                break;
            }
        }
        if error.is_none() && !closed_cleanly && !cancelled && wrng.chance(2) {
            let r = output.flush_and_close().await;
            closed_cleanly = r.is_ok();
            if let Err(e) = r {
                error = Some(e.to_string());
            }
        }
        if cancelled && wrng.chance(2) {
            // Once more, to its end: what the dropped call took goes with it, or it fails.
            let r = output.flush_and_close().await;
            closed_cleanly = r.is_ok();
            if let Err(e) = r {
                error = Some(e.to_string());
            }
        }
        drop(output);
        (ok, attempted, closed_cleanly, error, cancelled, dropped)
    });

    // The reader.
    let mut rrng = Rng::new(seed ^ 0x1234);
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 100];
        for _ in 0..200 {
            let r = match rrng.below(6) {
                0 => input
                    .read_line(64, LineEnding::Default)
                    .await
                    .map(|l| l.is_some()),
                1 => input.read_available(&mut buf).await.map(|n| n > 0),
                2 => tokio::select! {
                    biased;
                    r = input.read_line(64, LineEnding::Default) => r.map(|l| l.is_some()),
                    () = tokio::task::yield_now() => Ok(true),
                },
                3 => input.discard(7).await.map(|n| n > 0),
                4 => match tokio::time::timeout(
                    Duration::from_micros(rrng.below(2000)),
                    input.read_line(64, LineEnding::Default),
                )
                .await
                {
                    Ok(r) => r.map(|l| l.is_some()),
                    Err(_) => Ok(true),
                },
                _ => {
                    tokio::task::yield_now().await;
                    Ok(true)
                }
            };
            match r {
                Ok(true) => {}
                Ok(false) | Err(_) => return,
            }
        }
    });

    // The closer.
    let yields = rng.below(40);
    for _ in 0..yields {
        tokio::task::yield_now().await;
    }
    let hang = |what: &str| {
        format!(
            "seed {seed} {kind:?}: {what} hung ({peer_mode:?}, {closer:?}, auto_flush {auto_flush}, \
             coalesce {coalesce}, small {small_buffers})"
        )
    };
    let limit = Duration::from_secs(10);
    let mut socket = Some(socket);
    match closer {
        Closer::Close => socket.as_ref().unwrap().close(),
        Closer::CloseSelector => selector.close(),
        Closer::Drop => socket = None,
        Closer::Nothing => {}
    }
    if let Some(socket) = socket
        .as_ref()
        .filter(|_| matches!(closer, Closer::Close | Closer::CloseSelector))
    {
        if !socket.is_closed() {
            return Err(format!("seed {seed}: open after {closer:?}"));
        }
        tokio::time::timeout(limit, socket.await_closed())
            .await
            .map_err(|_| hang("await_closed"))?;
    }
    let _ = acted_tx.send(());
    let (ok, attempted, closed_cleanly, error, cancelled, dropped) =
        tokio::time::timeout(limit, writer)
            .await
            .map_err(|_| hang("the writer"))?
            .map_err(|e| format!("seed {seed}: the writer panicked: {e}"))?;
    tokio::time::timeout(limit, reader)
        .await
        .map_err(|_| hang("the reader"))?
        .map_err(|e| format!("seed {seed}: the reader panicked: {e}"))?;
    if closer == Closer::Nothing && !closed_cleanly {
        // The write side was not closed: the peer sees the end only at the socket's close.
        if let Some(socket) = &socket {
            socket.close();
        }
    }
    let (received, end, sent) = tokio::time::timeout(limit, peer_task)
        .await
        .map_err(|_| hang("the peer"))?
        .unwrap();
    if let Some(socket) = socket {
        socket.close();
        tokio::time::timeout(limit, socket.await_closed())
            .await
            .map_err(|_| hang("the last await_closed"))?;
    }
    selector.close();
    let what = format!(
        "seed {seed} {kind:?} ({peer_mode:?}, {closer:?}, auto_flush {auto_flush}, coalesce {coalesce}, \
         small {small_buffers}): ok {ok}, attempted {attempted}, flush_and_close {closed_cleanly}, \
         error {error:?}, cancelled {cancelled}; the peer sent {sent} of {requests}, read {} then {end:?}",
        received.len()
    );
    if received.len() > STREAM || received[..] != expected[..received.len()] {
        return Err(format!("{what}: bytes that are not the stream's"));
    }
    // A plain Unix socket has no reset: its close always looks clean (documented).
    let plain_unix = kind == Kind::Unix;
    // A write whose bytes all reached the transport, and whose flush then met the close,
    // reports the close: its bytes are not lost (the close sends them, then the end).
    // So does a dropped write call, whose bytes are sent whole or not at all (or not in a
    // stream that ends cleanly).
    let whole = (received.len() == attempted && error.as_deref() == Some("socket closed"))
        || (cancelled && received.len() == ok + dropped);
    if end == End::Clean && received.len() != ok && !whole && !plain_unix {
        return Err(format!(
            "{what}: a clean end after {} of {ok} bytes written",
            received.len()
        ));
    }
    // (Input left unread makes the close a reset that drops what is queued: the peer sent
    // nothing to read for this check.)
    let nothing_unread = sent == 0;
    if closed_cleanly
        && peer_mode != Peer::Reset
        && nothing_unread
        && !plain_unix
        && (end != End::Clean || (received.len() != ok && !whole))
    {
        return Err(format!("{what}: flush_and_close succeeded"));
    }
    Ok(())
}

/// Writes pieces of the stream to `output`, returning how many bytes writes accepted.
async fn write_pieces(
    output: &mut net_io::ByteWriteChannel,
    body: &[u8],
    pieces: &[usize],
) -> usize {
    let mut ok = 0;
    for &len in pieces {
        if output.write_fully(&body[ok..ok + len]).await.is_err() {
            break;
        }
        ok += len;
    }
    ok
}

/// `close_gracefully(wait)` on a connection while the selector closes, or the peer reads
/// nothing, keeps sending, resets or half-closes: it returns (within `wait`, or with the
/// selector's close), and `Ok` means the peer read everything written, then a clean end.
async fn graceful_round(seed: u64, kind: Kind, pki: &net_tests::pki::Pki) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    // `Chatty`: keeps sending while it reads nothing (the drain never meets the end).
    let chatty = rng.chance(3);
    let peer_mode =
        [Peer::ReadAll, Peer::HalfClose, Peer::Reset, Peer::Stalls][rng.below(4) as usize];
    let close_selector = rng.chance(3);
    let coalesce = rng.chance(2);
    let small_buffers = rng.chance(2) && kind != Kind::Unix;
    let setup = Setup {
        coalesce,
        small_buffers,
        timeout: None,
    };
    let Pair {
        selector,
        listener: _listener,
        peer,
        ours,
        dir: _dir,
    } = pairs::connect(kind, pki, setup).await?;
    let wait = Duration::from_millis(rng.below(200));
    let pieces: Vec<usize> = (0..rng.below(8))
        .map(|_| 1 + rng.below(20_000) as usize)
        .collect();
    let body = std::sync::Arc::new(net_tests::payload(STREAM));
    let reset_after = rng.below(64 * 1024) as usize;
    let (acted_tx, acted_rx) = tokio::sync::oneshot::channel::<()>();
    let peer_task = tokio::spawn(async move {
        let (mut rd, mut wr) = tokio::io::split(peer);
        // A write of the peer's that fails: the connection was reset. Linux reports a reset
        // once, to the first call that asks, so a read after that write sees only the end of
        // the stream (`Ok(0)`), which is then no clean end.
        let mut write_failed = wr.write_all(b"hello\n").await.err().map(|e| e.kind());
        if peer_mode == Peer::HalfClose {
            let _ = wr.shutdown().await;
        }
        let chatter = async {
            if chatty && peer_mode != Peer::HalfClose {
                for _ in 0..2000 {
                    if let Err(e) = wr.write_all(b"more\n").await {
                        return Some(e.kind());
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            None
        };
        if peer_mode == Peer::Stalls {
            tokio::select! {
                _ = acted_rx => {}
                failed = chatter => write_failed = write_failed.or(failed),
            }
        } else {
            drop(chatter);
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
                return (received, End::Failed(ErrorKind::Other));
            }
        };
        (received, end)
    });
    let written = std::sync::Arc::clone(&body);
    let closing = match ours {
        Ours::Plain(s) => {
            let mut c = s.connection().unwrap();
            tokio::spawn(async move {
                let ok = write_pieces(&mut c.output, &written, &pieces).await;
                (ok, c.close_gracefully(wait).await)
            })
        }
        Ours::Tls(s) => {
            let mut c = s.connection().unwrap();
            tokio::spawn(async move {
                let ok = write_pieces(&mut c.output, &written, &pieces).await;
                (ok, c.close_gracefully(wait).await)
            })
        }
    };
    for _ in 0..rng.below(40) {
        tokio::task::yield_now().await;
    }
    if close_selector {
        selector.close();
    }
    let what = format!(
        "seed {seed} {kind:?} (graceful, {peer_mode:?}, chatty {chatty}, selector closed \
         {close_selector}, wait {wait:?}, coalesce {coalesce}, small {small_buffers})"
    );
    let (ok, closed) = match tokio::time::timeout(wait + Duration::from_secs(10), closing).await {
        Ok(done) => done.map_err(|e| format!("{what}: panicked: {e}"))?,
        Err(_) => return Err(format!("{what}: close_gracefully hung")),
    };
    let _ = acted_tx.send(());
    let (received, end) = tokio::time::timeout(Duration::from_secs(10), peer_task)
        .await
        .map_err(|_| format!("{what}: the peer hung"))?
        .unwrap();
    selector.close();
    let what = format!(
        "{what}: ok {ok}, close_gracefully {closed:?}; the peer read {} then {end:?}",
        received.len()
    );
    if received.len() > STREAM || received[..] != body[..received.len()] {
        return Err(format!("{what}: bytes that are not the stream's"));
    }
    // `Ok` says the output was flushed and shut down: delivered with a clean end when the
    // drain met the peer's end (input left unread, by a chatty peer at `wait` or at the
    // selector's close, makes the close a reset).
    let drained = !chatty && !close_selector;
    if closed.is_ok()
        && peer_mode != Peer::Reset
        && drained
        && (end != End::Clean || received.len() != ok)
    {
        return Err(format!("{what}: close_gracefully returned Ok"));
    }
    if end == End::Clean && received.len() != ok && kind != Kind::Unix {
        return Err(format!("{what}: a clean end after bytes were lost"));
    }
    Ok(())
}

/// Many rounds of `graceful_round` (`HALVES_SEED`, `HALVES_ROUNDS` choose the rounds).
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn close_gracefully_while_the_selector_closes_or_the_peer_misbehaves() {
    let seeds = net_tests::rng::seeds("HALVES", 150);
    let pki = net_tests::pki::Pki::generate();
    let started = Instant::now();
    let mut failures = Vec::new();
    for seed in seeds {
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
        let kind = Kind::for_seed(seed);
        if let Err(e) = graceful_round(seed, kind, &pki).await {
            eprintln!("{e}");
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
}

/// Many rounds, bounded in count and time; descriptors counted before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn halves_in_two_tasks_while_a_third_ends_the_socket() {
    let seeds = net_tests::rng::seeds("HALVES", 300);
    let pki = net_tests::pki::Pki::generate();
    let before = net_tests::probe::fd_count();
    let started = Instant::now();
    let mut failures = Vec::new();
    for seed in seeds {
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
        let kind = Kind::for_seed(seed);
        if let Err(e) = round(seed, kind, &pki).await {
            eprintln!("{e}");
            failures.push(e);
        }
    }
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
