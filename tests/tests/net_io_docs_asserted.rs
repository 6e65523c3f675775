//! net-io's docs asserted on the public API (a doc-truth audit, the thirty-eighth pass): each
//! test asserts one sentence of the rustdoc, and fails if the sentence is false of the code.
//! (More of the same in `crates/net-io/tests/docs_asserted.rs`.)

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use net_io::{ByteReadChannel, ByteWriteChannel, WriteState};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

/// A source that hands over as much as the reader's buffer takes, and records each read's size.
struct Recorder {
    data: Vec<u8>,
    at: usize,
    given: Arc<Mutex<Vec<usize>>>,
}

impl AsyncRead for Recorder {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = buf.remaining().min(self.data.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        self.given.lock().unwrap().push(n);
        Poll::Ready(Ok(()))
    }
}

/// read.rs, `copy_to`: "a read may take more than is left to copy (what it takes past `limit`
/// stays buffered for the next read)".
#[tokio::test]
async fn copy_to_keeps_what_it_read_past_its_limit_buffered() {
    let given = Arc::new(Mutex::new(Vec::new()));
    let data: Vec<u8> = (0..256 * 1024u32).map(|i| i as u8).collect();
    let mut input = ByteReadChannel::new(Recorder {
        data: data.clone(),
        at: 0,
        given: given.clone(),
    });
    // The first read fills a small probe; consume it so that the buffer is empty (and made).
    let mut consumed = input.available_for_read().max(1);
    input.read_bytes(consumed).await.unwrap();
    let rest = input.available_for_read();
    if rest > 0 {
        input.read_bytes(rest).await.unwrap();
        consumed += rest;
    }
    assert_eq!(input.available_for_read(), 0);
    given.lock().unwrap().clear();

    let mut dst = ByteWriteChannel::new(Vec::new(), false);
    let copied = input.copy_to(&mut dst, 10).await.unwrap();
    assert_eq!(copied, 10);
    let taken: usize = given.lock().unwrap().iter().sum();
    assert!(taken > 10, "the read took {taken} bytes");
    assert_eq!(input.available_for_read(), taken - 10);
    let next = input.read_bytes(5).await.unwrap();
    assert_eq!(&next[..], &data[consumed + 10..consumed + 15]);
}

/// read.rs, `copy_to`: "up to 64 KiB at a time".
#[tokio::test]
async fn copy_to_reads_at_most_64_kib_at_a_time() {
    let given = Arc::new(Mutex::new(Vec::new()));
    let mut input = ByteReadChannel::new(Recorder {
        data: vec![7; 1024 * 1024],
        at: 0,
        given: given.clone(),
    });
    let mut dst = ByteWriteChannel::new(tokio::io::sink(), false);
    let copied = input.copy_to(&mut dst, u64::MAX).await.unwrap();
    assert_eq!(copied, 1024 * 1024);
    let reads = given.lock().unwrap().clone();
    assert!(reads.iter().all(|&n| n <= 64 * 1024), "{reads:?}");
}

fn ended_channel(first: io::ErrorKind) -> (ByteWriteChannel, WriteState) {
    let state = WriteState::new();
    let mut output = ByteWriteChannel::new(tokio::io::sink(), false);
    output.share_state(state.clone());
    state.end(io::Error::new(first, "first"));
    // "the first given; later calls change nothing"
    state.end(io::Error::other("second"));
    (output, state)
}

/// write_state.rs, `WriteState::end`: "from now on every write call of the channel (and every
/// flush) fails with `error` (the first given; later calls change nothing), reported again as
/// the channel's failures are".
#[tokio::test]
async fn every_write_call_and_flush_after_end_fails_with_the_first_error() {
    let kind = io::ErrorKind::NotConnected;

    let (mut output, state) = ended_channel(kind);
    assert_eq!(output.write_u32(1).await.unwrap_err().kind(), kind);
    assert_eq!(
        output.write_u32(1).await.unwrap_err().kind(),
        kind,
        "reported again"
    );
    assert_eq!(output.flush().await.unwrap_err().kind(), kind);
    assert_eq!(output.flush_and_close().await.unwrap_err().kind(), kind);
    assert!(output.is_closed_for_write());
    assert!(!state.has_unsent());

    let (mut output, _state) = ended_channel(kind);
    assert_eq!(output.flush().await.unwrap_err().kind(), kind);

    let (mut output, _state) = ended_channel(kind);
    let e = output
        .write_frame(
            &mut tokio_util::codec::BytesCodec::new(),
            bytes::Bytes::from_static(b"x"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), kind);

    let (mut output, _state) = ended_channel(kind);
    assert_eq!(
        output
            .write_bytes(bytes::Bytes::from_static(b"x"))
            .await
            .unwrap_err()
            .kind(),
        kind
    );

    let (mut output, _state) = ended_channel(kind);
    assert_eq!(
        output.write_string_utf8("x").await.unwrap_err().kind(),
        kind
    );

    // The AsyncWrite face.
    let (mut output, _state) = ended_channel(kind);
    assert_eq!(
        AsyncWriteExt::write(&mut output, b"x")
            .await
            .unwrap_err()
            .kind(),
        kind
    );
    assert_eq!(
        AsyncWriteExt::flush(&mut output).await.unwrap_err().kind(),
        kind
    );
    assert_eq!(
        AsyncWriteExt::shutdown(&mut output)
            .await
            .unwrap_err()
            .kind(),
        kind
    );

    let (mut output, _state) = ended_channel(kind);
    assert_eq!(
        AsyncWriteExt::flush(&mut output).await.unwrap_err().kind(),
        kind
    );
    let (mut output, _state) = ended_channel(kind);
    assert_eq!(
        AsyncWriteExt::shutdown(&mut output)
            .await
            .unwrap_err()
            .kind(),
        kind
    );
}

/// write_state.rs, `WriteState::end` + write.rs `is_closed_for_write`: a write buffered before
/// the end is not sent: the next flush fails, and the shared state says bytes were lost.
#[tokio::test]
async fn bytes_buffered_before_end_count_as_lost() {
    let state = WriteState::new();
    let mut output = ByteWriteChannel::new(tokio::io::sink(), false);
    output.share_state(state.clone());
    output.write_fully(b"before").await.unwrap();
    assert!(state.has_unsent());
    state.end(io::Error::new(io::ErrorKind::NotConnected, "closed"));
    assert!(
        !output.is_closed_for_write(),
        "learnt from the next call, not before"
    );
    assert_eq!(
        output.flush().await.unwrap_err().kind(),
        io::ErrorKind::NotConnected
    );
    assert!(output.is_closed_for_write());
    assert!(state.lost_bytes());
    assert!(!state.has_unsent());
}

/// A transport that takes everything and records each write's size.
struct Taker(Arc<Mutex<Vec<usize>>>);

impl tokio::io::AsyncWrite for Taker {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        src: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.lock().unwrap().push(src.len());
        Poll::Ready(Ok(src.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// write.rs, "tokio's I/O traits": "`poll_write` accepts what fits in the buffer (a large
/// write with an empty buffer goes to the transport directly)"; struct doc: "Writes go into a
/// buffer of up to 8 KiB".
#[tokio::test]
async fn poll_write_accepts_what_fits_and_a_large_one_goes_direct() {
    let writes = Arc::new(Mutex::new(Vec::new()));
    let mut output = ByteWriteChannel::new(Taker(writes.clone()), false);
    assert_eq!(
        AsyncWriteExt::write(&mut output, &[1; 100]).await.unwrap(),
        100
    );
    assert!(writes.lock().unwrap().is_empty(), "buffered, not sent");
    let n = AsyncWriteExt::write(&mut output, &[2; 20_000])
        .await
        .unwrap();
    assert_eq!(n, 8 * 1024 - 100, "what fits in the 8 KiB buffer");
    assert!(
        writes.lock().unwrap().is_empty(),
        "still only buffered: {:?}",
        writes.lock().unwrap()
    );
    AsyncWriteExt::flush(&mut output).await.unwrap();
    assert_eq!(writes.lock().unwrap().iter().sum::<usize>(), 8 * 1024);
    writes.lock().unwrap().clear();
    let n = AsyncWriteExt::write(&mut output, &[3; 20_000])
        .await
        .unwrap();
    assert_eq!(n, 20_000);
    assert_eq!(
        *writes.lock().unwrap(),
        vec![20_000],
        "one transport write, not copied"
    );
}

/// pipe.rs: "The pipe holds at most 64 KiB between its ends; a writer that gets ahead of its
/// reader waits".
#[tokio::test]
async fn a_pipe_holds_at_most_64_kib_between_its_ends() {
    let (mut output, input) = net_io::ByteChannel::new(false);
    let big = vec![9u8; 1024 * 1024];
    tokio::select! {
        biased;
        _ = output.write_fully(&big) => panic!("a 1 MiB write to an unread pipe completed"),
        () = tokio::task::yield_now() => {}
    }
    let accepted = output.total_bytes_written();
    assert!(accepted <= 64 * 1024 + 8 * 1024, "accepted {accepted}");
    assert!(accepted >= 64 * 1024, "accepted {accepted}");
    drop(input);
}

/// pipe.rs: "cancelling or dropping the reader makes every later write that reaches the pipe
/// fail with `Error::Cancelled` ... in `auto_flush` mode every write call of at least one byte;
/// otherwise ... A write that only adds to the writer's buffer succeeds".
#[tokio::test]
async fn writes_after_the_pipe_reader_went_away() {
    let (mut output, input) = net_io::ByteChannel::new(true);
    drop(input);
    assert!(matches!(
        output.write_u8(1).await,
        Err(net_io::Error::Cancelled)
    ));
    assert!(output.is_closed_for_write());

    let (mut output, input) = net_io::ByteChannel::new(false);
    drop(input);
    output.write_u8(1).await.unwrap();
    output.write_fully(b"small").await.unwrap();
    assert!(matches!(
        output.flush().await,
        Err(net_io::Error::Cancelled)
    ));
}

/// read.rs, `copy_to`: "more than 64 KiB when an earlier item grew the buffer past that (up to
/// 256 KiB, which is kept)", after a count read grew the buffer to the 256 KiB past which it
/// is given back.
#[tokio::test]
async fn copy_to_reads_at_most_256_kib_at_a_time_after_a_large_item() {
    let given = Arc::new(Mutex::new(Vec::new()));
    let mut input = ByteReadChannel::new(Recorder {
        data: vec![7; 2 * 1024 * 1024],
        at: 0,
        given: given.clone(),
    });
    input.read_bytes(200 * 1024).await.unwrap();
    let rest = input.available_for_read();
    if rest > 0 {
        input.read_bytes(rest).await.unwrap();
    }
    given.lock().unwrap().clear();
    let mut dst = ByteWriteChannel::new(tokio::io::sink(), false);
    input.copy_to(&mut dst, u64::MAX).await.unwrap();
    let reads = given.lock().unwrap().clone();
    let max = reads.iter().max().copied().unwrap_or(0);
    assert!(
        max <= 256 * 1024,
        "largest transport read {max} bytes; reads {:?}",
        &reads[..reads.len().min(8)]
    );
}

#[derive(Debug)]
struct Marker;
impl std::fmt::Display for Marker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("marker")
    }
}
impl std::error::Error for Marker {}

/// write_state.rs, `WriteState::end`: "`error` is reported as an error the transport returned
/// would be" / "reported again as the channel's failures are" (same variant, kind, OS code,
/// inner error: error.rs "Failures reported again").
#[tokio::test]
async fn an_end_error_is_reported_again_with_its_os_code_and_inner_error() {
    let state = WriteState::new();
    let mut output = ByteWriteChannel::new(tokio::io::sink(), false);
    output.share_state(state.clone());
    state.end(io::Error::from_raw_os_error(libc::ECONNRESET));
    for _ in 0..2 {
        let e = output.write_u8(1).await.unwrap_err();
        assert!(matches!(e, net_io::Error::Io(_)), "{e:?}");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        let io_e = io::Error::from(e);
        assert_eq!(io_e.raw_os_error(), Some(libc::ECONNRESET));
    }

    let state = WriteState::new();
    let mut output = ByteWriteChannel::new(tokio::io::sink(), false);
    output.share_state(state.clone());
    state.end(io::Error::new(io::ErrorKind::NotConnected, Marker));
    for _ in 0..2 {
        let e = output.flush().await.unwrap_err();
        assert!(e.inner_error().is_some_and(|i| i.is::<Marker>()), "{e:?}");
    }

    // An end error that carries this crate's error is that error (as from a transport).
    let state = WriteState::new();
    let mut output = ByteWriteChannel::new(tokio::io::sink(), false);
    output.share_state(state.clone());
    state.end(io::Error::new(
        io::ErrorKind::TimedOut,
        net_io::Error::Timeout,
    ));
    let e = output.write_u8(1).await.unwrap_err();
    assert!(matches!(e, net_io::Error::Timeout), "{e:?}");
    // A transport's Timeout before any byte left is a call without effect; the channel stays
    // usable ("Failures"). After `end` the doc says every later call fails with `error`:
    let e2 = output.write_u8(1).await.unwrap_err();
    assert!(matches!(e2, net_io::Error::Timeout), "{e2:?}");
    assert!(
        output.is_closed_for_write(),
        "an end with Timeout still fails the channel for good"
    );
}

/// A transport that never takes anything.
struct Stall;

impl tokio::io::AsyncWrite for Stall {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Pending
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Pending
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Pending
    }
}

/// write.rs, "Dropped writes": "calls dropped over and over against a peer that takes nothing
/// never grow the buffer past its size (`write_frame`: its size and one frame)"; typed writes:
/// "never grow the buffer past its 8 KiB". (Nothing leaves, so what writes accepted is what the
/// buffer holds.)
#[tokio::test]
async fn dropped_writes_against_a_stalled_peer_stay_within_the_buffer() {
    use std::future::Future;
    use std::task::Waker;
    fn poll_once<F: Future>(f: F) -> bool {
        let mut f = std::pin::pin!(f);
        f.as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready()
    }
    for auto_flush in [false, true] {
        let mut output = ByteWriteChannel::new(Stall, auto_flush);
        for _ in 0..10_000 {
            let _ = poll_once(output.write_u64(1));
        }
        assert!(
            output.total_bytes_written() <= 8 * 1024,
            "typed: {}",
            output.total_bytes_written()
        );
        for _ in 0..10_000 {
            let _ = poll_once(output.write_fully(&[1; 100]));
        }
        assert!(
            output.total_bytes_written() <= 8 * 1024,
            "write_fully: {}",
            output.total_bytes_written()
        );
        let before = output.total_bytes_written();
        for _ in 0..10_000 {
            let _ = poll_once(output.write_frame(
                &mut tokio_util::codec::BytesCodec::new(),
                bytes::Bytes::from_static(&[2; 100]),
            ));
        }
        assert!(
            output.total_bytes_written() <= (8 * 1024).max(before) + 100,
            "write_frame: {}",
            output.total_bytes_written()
        );
    }
}

/// read.rs, `read_bytes`: "runs of 1 KiB or more are handed out without a copy" (they share the
/// buffer's allocation: two runs read one after the other lie side by side in it).
#[tokio::test]
async fn read_bytes_of_1_kib_or_more_share_the_buffer() {
    let given = Arc::new(Mutex::new(Vec::new()));
    let mut input = ByteReadChannel::new(Recorder {
        data: vec![5; 64 * 1024],
        at: 0,
        given,
    });
    input.read_bytes(1).await.unwrap();
    let a = input.read_bytes(1024).await.unwrap();
    let b = input.read_bytes(1024).await.unwrap();
    assert_eq!(b.as_ptr() as usize, a.as_ptr() as usize + 1024);
    let c = input.read_bytes(1500).await.unwrap();
    assert_eq!(c.as_ptr() as usize, b.as_ptr() as usize + 1024);
}
