//! Claims of net-io's public documentation, each asserted exactly as written.
//! Every test names the doc it checks.

mod support;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::BytesMut;
use net_io::{
    Backlog, ByteChannel, ByteReadChannel, ByteWriteChannel, Error, LineEnding, PeerText,
    SharedError, WriteState,
};
use support::{Act, Capture, ChunkedReader, MockWriter, Step, guard, poll_once, timeout};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::codec::{Encoder, LinesCodec, LinesCodecError};

fn reset() -> io::Error {
    io::Error::from(io::ErrorKind::ConnectionReset)
}

/// A reader that fills every read completely with `7`s, and notes when it is dropped.
struct Endless(#[allow(dead_code)] Arc<()>);

impl AsyncRead for Endless {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = buf.remaining();
        buf.put_slice(&vec![7; n]);
        Poll::Ready(Ok(()))
    }
}

/// ByteReadChannel: "the first read, before anything came, takes at most 1 KiB ...; reads ...
/// into a buffer of 8 KiB or more".
#[tokio::test]
async fn first_read_takes_at_most_1_kib_then_reads_are_8_kib_or_more() {
    let mut input = ByteReadChannel::new(Endless(Arc::new(())));
    input.read_u8().await.unwrap();
    assert_eq!(input.available_for_read(), 1023);
    input.discard(1023).await.unwrap();
    input.read_u8().await.unwrap();
    // The room of the second read: the 8 KiB buffer less the byte `read_u8` settled (the
    // allocation itself is 8 KiB; the claim is about the buffer, not the room of each read).
    assert!(
        input.available_for_read() >= 8 * 1024 - 2,
        "{}",
        input.available_for_read()
    );
}

/// ByteReadChannel::cancel: "The transport is dropped."; later reads fail with Cancelled;
/// total_bytes_read leaves out what cancel dropped.
#[tokio::test]
async fn read_cancel_drops_the_transport_and_the_buffer() {
    let token = Arc::new(());
    let mut input = ByteReadChannel::new(Endless(Arc::clone(&token)));
    input.read_u16().await.unwrap();
    assert_eq!(Arc::strong_count(&token), 2);
    input.cancel();
    assert_eq!(Arc::strong_count(&token), 1, "transport not dropped");
    assert_eq!(input.total_bytes_read(), 2);
    assert_eq!(input.available_for_read(), 0);
    assert!(input.is_closed_for_read());
    assert!(matches!(input.read_u8().await, Err(Error::Cancelled)));
    assert!(matches!(input.read_bytes(0).await, Err(Error::Cancelled)));
    assert!(matches!(input.discard(0).await, Err(Error::Cancelled)));
    assert!(matches!(input.peek(0).await, Err(Error::Cancelled)));
    assert!(matches!(
        input.await_content(0).await,
        Err(Error::Cancelled)
    ));
    assert!(matches!(
        input.skip_if_found(b"").await,
        Err(Error::Cancelled)
    ));
    assert!(matches!(
        input.read_remaining(0).await,
        Err(Error::Cancelled)
    ));
    assert!(matches!(
        input.read_available(&mut []).await,
        Err(Error::Cancelled)
    ));
    assert!(matches!(
        input.read_line(1, LineEnding::Default).await,
        Err(Error::Cancelled)
    ));
    assert!(matches!(
        input.read_until(b"x", 1).await,
        Err(Error::Cancelled)
    ));
    match input.read_frame(&mut LinesCodec::new()).await {
        Err(LinesCodecError::Io(e)) => assert!(matches!(Error::from(e), Error::Cancelled)),
        other => panic!("{other:?}"),
    }
}

/// ByteWriteChannel::cancel: "The transport is dropped without a graceful shutdown"; later
/// writes fail with ClosedForWrite.
#[tokio::test]
async fn write_cancel_drops_the_transport_without_shutdown() {
    let mock = MockWriter::default();
    let mut output = ByteWriteChannel::new(mock.clone(), false);
    output.write_fully(b"abc").await.unwrap();
    output.cancel();
    assert_eq!(Arc::strong_count(&mock.0), 1, "transport not dropped");
    assert_eq!(mock.shutdowns(), 0);
    assert!(mock.accepted().is_empty());
    assert!(output.is_closed_for_write());
    assert!(matches!(
        output.write_u8(1).await,
        Err(Error::ClosedForWrite)
    ));
    assert!(matches!(output.flush().await, Err(Error::ClosedForWrite)));
    assert!(matches!(
        output.flush_and_close().await,
        Err(Error::ClosedForWrite)
    ));
}

/// ByteWriteChannel::cancel: "(or, on a channel that had failed, with its failure)".
#[tokio::test]
async fn cancel_of_a_failed_channel_keeps_reporting_its_failure() {
    let mock = MockWriter::default();
    mock.on_write([Act::Fail(reset())]);
    let mut output = ByteWriteChannel::new(mock.clone(), false);
    let e = output.write_fully(&[1; 9000]).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    output.cancel();
    let e = output.write_u8(1).await.unwrap_err();
    assert!(
        matches!(&e, Error::Io(io) if io.kind() == io::ErrorKind::ConnectionReset),
        "{e:?}"
    );
    let e = output.flush_and_close().await.unwrap_err();
    assert!(
        matches!(&e, Error::Io(io) if io.kind() == io::ErrorKind::ConnectionReset),
        "{e:?}"
    );
}

/// flush_and_close on a failed channel: "it drops the transport and returns the error".
#[tokio::test]
async fn a_close_whose_flush_fails_drops_the_transport() {
    let mock = MockWriter::default();
    mock.on_flush([Act::Fail(reset())]);
    let mut output = ByteWriteChannel::new(mock.clone(), false);
    output.write_fully(b"abc").await.unwrap();
    assert!(output.flush_and_close().await.is_err());
    assert_eq!(Arc::strong_count(&mock.0), 1, "transport not dropped");
    assert_eq!(mock.shutdowns(), 0);
    assert!(output.is_closed_for_write());
}

/// is_closed_for_write / ByteReadChannel::cancel: the writer learns of the reader's cancel
/// "from the first write or flush that reaches the transport and fails, and only then".
#[tokio::test]
async fn the_writer_learns_of_a_cancelled_reader_only_when_a_write_reaches_the_pipe() {
    let (mut output, mut input) = ByteChannel::new(false);
    assert!(!output.auto_flush());
    input.cancel();
    assert!(!output.is_closed_for_write());
    output.write_u8(1).await.unwrap();
    assert!(!output.is_closed_for_write());
    // A flush with nothing buffered reaches nothing that fails.
    let (mut empty, mut gone) = ByteChannel::new(false);
    gone.cancel();
    empty.flush().await.unwrap();
    assert!(!empty.is_closed_for_write());
    assert!(matches!(output.flush().await, Err(Error::Cancelled)));
    assert!(output.is_closed_for_write());
    assert!(matches!(output.write_u8(1).await, Err(Error::Cancelled)));
}

/// ByteChannel: "The pipe holds at most 64 KiB between its ends"; total_bytes_written "counts
/// exactly the bytes ... that the transport took" for a dropped write; a writer dropped after a
/// write dropped part-way makes the reader fail with Cancelled after what was in the pipe.
#[tokio::test]
async fn the_pipe_holds_64_kib_and_a_torn_write_never_ends_cleanly() {
    let (mut output, mut input) = ByteChannel::new(false);
    let data = vec![7u8; 100_000];
    assert!(poll_once(output.write_fully(&data)).await.is_none());
    assert_eq!(output.total_bytes_written(), 64 * 1024);
    drop(output);
    let got = guard(input.read_bytes(64 * 1024)).await.unwrap();
    assert_eq!(got.len(), 64 * 1024);
    assert!(matches!(
        guard(input.read_u8()).await,
        Err(Error::Cancelled)
    ));
}

/// ByteWriteChannel: "Writes go into a buffer of up to 8 KiB, which is written to the transport
/// when it fills"; "A write larger than the buffer goes to the transport directly".
#[tokio::test]
async fn the_write_buffer_is_8_kib() {
    let mock = MockWriter::default();
    let mut output = ByteWriteChannel::new(mock.clone(), false);
    output.write_fully(&[1; 8191]).await.unwrap();
    assert!(mock.accepted().is_empty());
    output.write_u8(2).await.unwrap();
    assert_eq!(mock.accepted().len(), 8192);
    output.write_fully(&[3; 8193]).await.unwrap();
    assert_eq!(mock.accepted().len(), 8192 + 8193);
    assert_eq!(output.total_bytes_written(), 8192 + 8193);
}

/// flush: "After a clean close this is Error::ClosedForWrite too"; flush_and_close: "a second
/// call after a clean close too".
#[tokio::test]
async fn flush_and_close_after_a_clean_close_are_closed_for_write() {
    let mock = MockWriter::default();
    let mut output = ByteWriteChannel::new(mock.clone(), true);
    output.write_fully(b"x").await.unwrap();
    output.flush_and_close().await.unwrap();
    assert_eq!(mock.shutdowns(), 1);
    assert!(matches!(output.flush().await, Err(Error::ClosedForWrite)));
    assert!(matches!(
        output.flush_and_close().await,
        Err(Error::ClosedForWrite)
    ));
    match output.write_frame(&mut LinesCodec::new(), "x").await {
        Err(LinesCodecError::Io(e)) => assert!(matches!(Error::from(e), Error::ClosedForWrite)),
        other => panic!("{other:?}"),
    }
    assert_eq!(mock.shutdowns(), 1);
}

/// Frames: "The stream ends (yields None) at the end of the channel, and after the first
/// error"; into_parts "Gives back the channel (with whatever is still buffered)"; next_frame
/// yields what the stream does.
#[tokio::test]
async fn frames_end_after_the_first_error_and_give_back_the_channel() {
    use futures_core::Stream;
    async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
        std::future::poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
    }
    let input = ByteReadChannel::new(ChunkedReader::new([
        Step::Data(b"a\nb".to_vec()),
        Step::Fail(reset()),
    ]));
    let mut frames = input.into_frames(LinesCodec::new());
    assert_eq!(next(&mut frames).await.unwrap().unwrap(), "a");
    match next(&mut frames).await {
        Some(Err(LinesCodecError::Io(e))) => {
            assert_eq!(Error::from(e).kind(), io::ErrorKind::ConnectionReset)
        }
        other => panic!("{other:?}"),
    }
    assert!(next(&mut frames).await.is_none());
    assert!(next(&mut frames).await.is_none());
    assert!(frames.next_frame().await.is_none());
    let (mut channel, _) = frames.into_parts();
    assert_eq!(channel.available_for_read(), 1);
    assert_eq!(channel.read_u8().await.unwrap(), b'b');

    let mut frames = ByteReadChannel::from_bytes("a\nb\nc").into_frames(LinesCodec::new());
    assert_eq!(next(&mut frames).await.unwrap().unwrap(), "a");
    let (mut channel, _) = frames.into_parts();
    assert_eq!(
        channel
            .read_line(8, LineEnding::Default)
            .await
            .unwrap()
            .as_deref(),
        Some("b")
    );
}

/// read_frame: transport errors reach the decoder as "the I/O error itself for Error::Io";
/// Error::from gives it back, and inner_error reaches its cause.
#[tokio::test]
async fn read_frame_passes_the_io_error_itself() {
    #[derive(Debug)]
    struct Cause;
    impl std::fmt::Display for Cause {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("cause")
        }
    }
    impl std::error::Error for Cause {}
    let mut input = ByteReadChannel::new(ChunkedReader::new([Step::Fail(io::Error::new(
        io::ErrorKind::InvalidData,
        Cause,
    ))]));
    for _ in 0..2 {
        match input.read_frame(&mut LinesCodec::new()).await {
            Err(LinesCodecError::Io(e)) => {
                assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                let e = Error::from(e);
                assert!(matches!(e, Error::Io(_)));
                assert!(e.inner_error().is_some_and(|i| i.is::<Cause>()));
            }
            other => panic!("{other:?}"),
        }
    }
}

/// Backlog: "nor has one that has seen the end of its stream (or whose transport failed for
/// good), whatever it still holds"; cancel and drop leave nothing pending.
#[tokio::test]
async fn nothing_is_pending_after_the_end_a_failure_a_cancel_or_a_drop() {
    let backlog = Backlog::new();
    let mut input = ByteReadChannel::new(ChunkedReader::chunks([b"x\ny\nz"]));
    input.share_backlog(backlog.clone());
    input.read_line(8, LineEnding::Default).await.unwrap();
    assert!(backlog.is_pending());
    assert!(!input.await_content(100).await.unwrap());
    assert!(!backlog.is_pending(), "pending after the end of the stream");
    input.read_line(8, LineEnding::Default).await.unwrap();
    assert!(!backlog.is_pending());

    let backlog = Backlog::new();
    let mut input = ByteReadChannel::new(ChunkedReader::new([
        Step::Data(b"x\ny\nz".to_vec()),
        Step::Fail(reset()),
    ]));
    input.share_backlog(backlog.clone());
    input.read_line(8, LineEnding::Default).await.unwrap();
    assert!(backlog.is_pending());
    assert!(input.read_bytes(100).await.is_err());
    assert!(!backlog.is_pending(), "pending after a failure");
    assert_eq!(input.read_u8().await.unwrap(), b'y');
    assert!(!backlog.is_pending());

    let backlog = Backlog::new();
    let mut input = ByteReadChannel::new(ChunkedReader::chunks([b"x\ny\n"]));
    input.share_backlog(backlog.clone());
    input.read_line(8, LineEnding::Default).await.unwrap();
    assert!(backlog.is_pending());
    input.cancel();
    assert!(!backlog.is_pending(), "pending after cancel");

    let backlog = Backlog::new();
    let mut input = ByteReadChannel::new(ChunkedReader::chunks([b"x\ny\n"]));
    input.share_backlog(backlog.clone());
    input.read_line(8, LineEnding::Default).await.unwrap();
    assert!(backlog.is_pending());
    drop(input);
    assert!(!backlog.is_pending(), "pending after drop");
}

/// Backlog::hold / close / with_held / is_holding, as documented.
#[test]
fn backlog_hold_rules() {
    let backlog = Backlog::new();
    assert!(!backlog.hold(b"a", 10), "held with nothing pending");
    assert!(!backlog.is_holding());
    // Pending: via a channel that leaves input unconsumed.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut input = ByteReadChannel::new(ChunkedReader::chunks([b"x\ny\n"]));
    input.share_backlog(backlog.clone());
    rt.block_on(input.read_line(8, LineEnding::Default))
        .unwrap();
    assert!(backlog.is_pending());
    assert!(backlog.hold(b"abc", 5));
    assert!(backlog.is_holding());
    assert!(!backlog.hold(b"def", 5), "past the limit");
    rt.block_on(input.read_line(8, LineEnding::Default))
        .unwrap();
    assert!(!backlog.is_pending());
    // Bytes already held: later ones must not overtake them.
    assert!(backlog.hold(b"de", 5));
    assert_eq!(backlog.with_held(|held| held.split().to_vec()), b"abcde");
    assert!(!backlog.is_holding());
    assert!(!backlog.hold(b"f", 5));
    backlog.close();
    assert!(!backlog.hold(b"g", 5));
    let clone = backlog.clone();
    assert_eq!(clone.with_held(|held| held.len()), 0);
}

/// Error: round trips, From<io::Error> through a SharedError, SharedError not wrapped twice,
/// Display/source of SharedError, inner_error for the variants without one.
#[test]
fn error_and_shared_error_claims() {
    let shared = SharedError::new(Error::Timeout);
    let io = io::Error::other(shared.clone());
    assert!(matches!(Error::from(io), Error::Timeout));
    let again = SharedError::new(shared.clone());
    assert!(again.same_as(&shared));
    assert_eq!(shared.to_string(), Error::Timeout.to_string());
    assert!(shared.get_ref().is::<Error>());
    for e in [
        Error::TooLongLine { limit: 1 },
        Error::UnexpectedEof {
            needed: 2,
            available: 1,
        },
        Error::ClosedForWrite,
        Error::Cancelled,
        Error::Timeout,
        Error::Io(io::Error::from(io::ErrorKind::ConnectionReset)),
        Error::Io(io::Error::from_raw_os_error(104)),
    ] {
        assert!(e.inner_error().is_none(), "{e:?}");
        let kind = e.kind();
        let io = io::Error::from(e);
        assert_eq!(io.kind(), kind);
    }
    assert_eq!(Error::ClosedForWrite.kind(), io::ErrorKind::BrokenPipe);
    assert_eq!(Error::Cancelled.kind(), io::ErrorKind::ConnectionAborted);
    assert_eq!(
        Error::TooLongLine { limit: 1 }.kind(),
        io::ErrorKind::InvalidData
    );
    // Display is transparent for Io, and source is the io error's source.
    let e = Error::Io(io::Error::other("boom"));
    assert_eq!(e.to_string(), "boom");
}

/// "Each report is an equal Error: ... the same raw_os_error".
#[tokio::test]
async fn an_os_error_is_reported_again_with_its_code() {
    let mut input = ByteReadChannel::new(ChunkedReader::new([Step::Fail(
        io::Error::from_raw_os_error(104),
    )]));
    for _ in 0..3 {
        match input.read_u8().await {
            Err(Error::Io(e)) => assert_eq!(e.raw_os_error(), Some(104)),
            other => panic!("{other:?}"),
        }
    }
    let mock = MockWriter::default();
    mock.on_write([Act::Fail(io::Error::from_raw_os_error(32))]);
    let mut output = ByteWriteChannel::new(mock, true);
    for _ in 0..3 {
        match output.write_u8(1).await {
            Err(Error::Io(e)) => assert_eq!(e.raw_os_error(), Some(32)),
            other => panic!("{other:?}"),
        }
    }
}

/// UnexpectedEof's fields, as each read documents them.
#[tokio::test]
async fn unexpected_eof_fields() {
    let eof = |r: Result<(), Error>| match r {
        Err(Error::UnexpectedEof { needed, available }) => (needed, available),
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("ok"),
    };
    let mut input = ByteReadChannel::from_bytes("ab");
    assert_eq!(eof(input.read_u32().await.map(drop)), (4, 2));
    assert_eq!(input.available_for_read(), 2, "bytes stay buffered");
    assert_eq!(eof(input.read_bytes(10).await.map(drop)), (10, 2));
    assert_eq!(eof(input.read_until(b"\r\n", 10).await.map(drop)), (4, 2));
    assert_eq!(
        eof(input
            .read_line_strict(10, LineEnding::Default)
            .await
            .map(drop)),
        (3, 2)
    );
    assert_eq!(input.available_for_read(), 2);
    let mut dst = [0; 10];
    assert_eq!(eof(input.read_fully(&mut dst).await), (10, 2));
    assert_eq!(&dst[..2], b"ab");
    let mut input = ByteReadChannel::from_bytes("abc");
    assert_eq!(eof(input.discard_exact(10).await), (10, 3));
    assert_eq!(input.available_for_read(), 0, "discard_exact skipped them");
}

/// TooLongLine: "Nothing is consumed by the failed read"; read_line_to: "out is left untouched
/// unless a whole line was read".
#[tokio::test]
async fn too_long_line_consumes_nothing_and_leaves_out_untouched() {
    let mut input = ByteReadChannel::from_bytes("toolong\nok\n");
    let mut out = String::from("keep");
    assert!(matches!(
        input.read_line_to(&mut out, 3, LineEnding::Default).await,
        Err(Error::TooLongLine { limit: 3 })
    ));
    assert_eq!(out, "keep");
    assert_eq!(input.available_for_read(), 11);
    assert_eq!(input.total_bytes_read(), 0);
    assert_eq!(
        input
            .read_line_to(&mut out, 3, LineEnding::Default)
            .await
            .unwrap(),
        Some(2)
    );
    assert_eq!(out, "keepok");
    assert_eq!(
        input
            .read_line_to(&mut out, 3, LineEnding::Default)
            .await
            .unwrap(),
        None
    );
    assert_eq!(out, "keepok");

    let mut input = ByteReadChannel::new(ChunkedReader::new([
        Step::Data(b"partial".to_vec()),
        Step::Fail(reset()),
    ]));
    let mut out = String::from("keep");
    assert!(
        input
            .read_line_to(&mut out, 80, LineEnding::Default)
            .await
            .is_err()
    );
    assert_eq!(out, "keep");
}

/// copy_to: "dst is flushed whenever this channel has nothing buffered and must wait for
/// more"; on a failure of this channel "dst is not closed (what was copied ... was
/// flushed)"; "on a failure of dst the chunk it was writing is not consumed here".
#[tokio::test]
async fn copy_to_flushes_before_it_waits_and_leaves_both_sides_on_failure() {
    let (mut feeder, mut source) = ByteChannel::new(true);
    feeder.write_fully(b"abc").await.unwrap();
    let mock = MockWriter::default();
    let mut dst = ByteWriteChannel::new(mock.clone(), false);
    assert!(
        poll_once(source.copy_to(&mut dst, u64::MAX))
            .await
            .is_none()
    );
    assert_eq!(mock.accepted(), b"abc");
    assert!(mock.log().flushes >= 1);

    let mut source = ByteReadChannel::new(ChunkedReader::new([
        Step::Data(b"abc".to_vec()),
        Step::Fail(reset()),
    ]));
    let mock = MockWriter::default();
    let mut dst = ByteWriteChannel::new(mock.clone(), false);
    assert!(source.copy_to(&mut dst, u64::MAX).await.is_err());
    assert_eq!(mock.accepted(), b"abc");
    assert!(!dst.is_closed_for_write());
    assert_eq!(mock.shutdowns(), 0);

    let mut source = ByteReadChannel::from_bytes("hello");
    let mock = MockWriter::default();
    mock.on_write([Act::Fail(reset())]);
    let mut dst = ByteWriteChannel::new(mock.clone(), false);
    assert!(source.copy_to(&mut dst, u64::MAX).await.is_err());
    assert_eq!(source.available_for_read(), 5);
    assert_eq!(source.total_bytes_read(), 0);
}

/// ByteWriteChannel drop: tells the shared state (lost), and "Gone with the channel"
/// has_unsent is false; share_state "Replaces a state shared before"; "a state shared after
/// the channel already threw bytes away hears of it at once".
#[tokio::test]
async fn the_shared_state_on_drop_replace_and_late_share() {
    let first = WriteState::new();
    let second = WriteState::new();
    let (mut output, _input) = ByteChannel::new(false);
    output.share_state(first.clone());
    output.share_state(second.clone());
    output.write_fully(b"abc").await.unwrap();
    assert!(second.has_unsent());
    assert!(!first.has_unsent(), "a replaced state is still told");
    drop(output);
    assert!(second.lost_bytes());
    assert!(!second.has_unsent());

    let (mut output, input) = ByteChannel::new(false);
    output.write_fully(b"abc").await.unwrap();
    drop(input);
    assert!(matches!(output.flush().await, Err(Error::Cancelled)));
    let late = WriteState::new();
    output.share_state(late.clone());
    assert!(late.lost_bytes());
    assert!(!late.has_unsent());
}

/// Fairness: "A read served from the buffer takes none of tokio's cooperative budget".
#[tokio::test(flavor = "current_thread")]
async fn reads_served_from_the_buffer_take_no_budget() {
    let ran = Arc::new(AtomicBool::new(false));
    let (mut output, mut input) = ByteChannel::new(true);
    output.write_fully(&[1; 1000]).await.unwrap();
    tokio::task::yield_now().await;
    let flag = Arc::clone(&ran);
    tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
    for _ in 0..1000 {
        input.read_u8().await.unwrap();
    }
    assert!(!ran.load(Ordering::SeqCst), "a buffered read yielded");
}

/// ByteChannel: "Each read and write of the pipe takes a unit of tokio's cooperative budget":
/// a task that writes and reads back, never waiting, still yields.
#[tokio::test(flavor = "current_thread")]
async fn a_pipe_round_trip_loop_yields() {
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
    let (mut output, mut input) = ByteChannel::new(true);
    let mut n = 0;
    while !ran.load(Ordering::SeqCst) && n < 10_000 {
        output.write_u8(1).await.unwrap();
        input.read_u8().await.unwrap();
        n += 1;
    }
    assert!(
        ran.load(Ordering::SeqCst),
        "never yielded in {n} round trips"
    );
    assert!(n <= 256, "yielded only after {n} round trips");
}

/// write_frame: "The encoder is given a buffer of its own, after what earlier writes buffered:
/// one that clears it takes none of their bytes away"; a failed frame is taken out again.
#[tokio::test]
async fn write_frame_protects_earlier_bytes_and_drops_a_failed_frame() {
    struct Clearing;
    impl Encoder<&'static str> for Clearing {
        type Error = io::Error;
        fn encode(&mut self, item: &'static str, dst: &mut BytesMut) -> io::Result<()> {
            dst.clear();
            dst.extend_from_slice(item.as_bytes());
            if item == "bad" {
                return Err(io::Error::other("bad"));
            }
            Ok(())
        }
    }
    let mock = MockWriter::default();
    let mut output = ByteWriteChannel::new(mock.clone(), false);
    output.write_fully(b"abc").await.unwrap();
    output.write_frame(&mut Clearing, "X").await.unwrap();
    assert!(output.write_frame(&mut Clearing, "bad").await.is_err());
    assert_eq!(output.total_bytes_written(), 4);
    output.flush().await.unwrap();
    assert_eq!(mock.accepted(), b"abcX");
    assert!(output.write_frame(&mut Clearing, "bad").await.is_err());
    output.flush().await.unwrap();
    assert_eq!(mock.accepted(), b"abcX");
}

/// discard: "On Error::Timeout ... the bytes skipped so far stay skipped ...: compare
/// total_bytes_read before and after"; read_remaining: nothing consumed before the end.
#[tokio::test]
async fn discard_and_read_remaining_across_a_timeout() {
    let mut input = ByteReadChannel::new(ChunkedReader::new([
        Step::Data(b"abc".to_vec()),
        Step::Fail(timeout()),
        Step::Data(b"def".to_vec()),
    ]));
    assert!(matches!(input.discard(10).await, Err(Error::Timeout)));
    assert_eq!(input.total_bytes_read(), 3);
    assert_eq!(input.discard(10).await.unwrap(), 3);

    let mut input = ByteReadChannel::new(ChunkedReader::new([
        Step::Data(b"abc".to_vec()),
        Step::Fail(timeout()),
        Step::Data(b"def".to_vec()),
    ]));
    assert!(matches!(
        input.read_remaining(10).await,
        Err(Error::Timeout)
    ));
    assert_eq!(input.total_bytes_read(), 0);
    assert_eq!(input.read_remaining(10).await.unwrap(), &b"abcdef"[..]);
}

/// is_closed_for_read: "stays false until a read ... finds the end"; "Bytes received before a
/// failure keep it open for read until they are read".
#[tokio::test]
async fn is_closed_for_read_follows_what_reads_found() {
    let (output, mut input) = ByteChannel::new(false);
    drop(output);
    assert!(!input.is_closed_for_read());
    assert_eq!(input.read_available(&mut [0; 4]).await.unwrap(), 0);
    assert!(input.is_closed_for_read());

    let mut input = ByteReadChannel::new(ChunkedReader::new([
        Step::Data(b"ab".to_vec()),
        Step::Fail(reset()),
    ]));
    assert!(input.read_u32().await.is_err());
    assert!(!input.is_closed_for_read());
    assert_eq!(input.read_u16().await.unwrap(), 0x6162);
    assert!(input.is_closed_for_read());
    assert!(input.read_u8().await.is_err());
}

/// PeerText: the characters listed are escaped, padding and precision apply to the escaped
/// text, a backslash is shown as it is.
#[test]
fn peer_text_claims() {
    for c in ('\u{0}'..='\u{1f}').chain(['\u{7f}', '\u{85}', '\u{9f}', '\u{80}']) {
        assert!(PeerText::escapes(c), "{c:?}");
        assert!(!PeerText(&c.to_string()).to_string().contains(c), "{c:?}");
    }
    for c in [
        '\u{2028}', '\u{2029}', '\u{202a}', '\u{202e}', '\u{2066}', '\u{2069}', '\u{200e}',
        '\u{200f}', '\u{61c}',
    ] {
        assert!(PeerText::escapes(c), "{c:?}");
        assert_eq!(
            PeerText(&c.to_string()).to_string(),
            c.escape_debug().to_string()
        );
    }
    assert_eq!(PeerText("a\\b").to_string(), "a\\b");
    assert_eq!(format!("{:>5}", PeerText("\n")), "   \\n");
    assert_eq!(format!("{:-<5}", PeerText("\n")), "\\n---");
    assert_eq!(format!("{:.1}", PeerText("\u{1b}")), "\\");
}

/// Send + Sync + 'static, as documented for both channels (and the shared types).
#[test]
fn channels_are_send_sync_static() {
    fn check<T: Send + Sync + 'static>() {}
    check::<ByteReadChannel>();
    check::<ByteWriteChannel>();
    check::<Backlog>();
    check::<WriteState>();
    check::<Error>();
    check::<SharedError>();
    check::<net_io::Frames<LinesCodec>>();
}

/// AsyncWrite::poll_shutdown on a channel whose transport stalls nothing: Ok twice after a
/// clean close; poll_flush Ok after it.
#[tokio::test]
async fn trait_close_twice_is_ok() {
    use tokio::io::AsyncWriteExt;
    let mock = MockWriter::default();
    let mut output = ByteWriteChannel::new(mock.clone(), false);
    AsyncWriteExt::write_all(&mut output, b"abc").await.unwrap();
    AsyncWriteExt::shutdown(&mut output).await.unwrap();
    AsyncWriteExt::shutdown(&mut output).await.unwrap();
    AsyncWriteExt::flush(&mut output).await.unwrap();
    assert_eq!(mock.accepted(), b"abc");
    assert_eq!(mock.shutdowns(), 1);
    let _ = AsyncWrite::is_write_vectored(&output);
}

/// Backlog: the flag is "set after a read that consumes and leaves input unconsumed ...
/// cleared before it reads from its transport ...: a look-ahead that had to read ... leaves it
/// cleared until the next read that consumes"; and the next read that consumes sets it.
#[tokio::test]
async fn a_look_ahead_that_read_from_the_transport_leaves_nothing_pending_until_a_read() {
    let mut pending = Vec::new();
    for look in ["peek", "await_content", "skip_if_found", "fill_buf"] {
        let backlog = Backlog::new();
        let mut input = ByteReadChannel::new(ChunkedReader::new([
            Step::Data(b"GET /a\r\nGET /b\r\n".to_vec()),
            Step::Pending,
        ]));
        input.share_backlog(backlog.clone());
        match look {
            "peek" => assert!(input.peek(3).await.unwrap().is_some()),
            "await_content" => assert!(input.await_content(3).await.unwrap()),
            "skip_if_found" => assert!(!input.skip_if_found(b"POST").await.unwrap()),
            _ => {
                use tokio::io::AsyncBufReadExt;
                assert!(!input.fill_buf().await.unwrap().is_empty());
            }
        }
        // Two requests are buffered, none consumed.
        assert_eq!(input.available_for_read(), 16);
        if backlog.is_pending() {
            pending.push(look);
        }
        let line = input.read_line(80, LineEnding::Default).await.unwrap();
        assert_eq!(line.as_deref(), Some("GET /a"));
        assert!(
            backlog.is_pending(),
            "{look}: the read that consumed set it"
        );
    }
    assert!(pending.is_empty(), "pending after: {pending:?}");
}

/// read_bytes: "runs of 1 KiB or more are handed out without a copy" (sharing the buffer).
#[tokio::test]
async fn runs_of_1_kib_share_the_buffer() {
    let mut input = ByteReadChannel::new(ChunkedReader::chunks([vec![5u8; 1024], vec![6u8; 6000]]));
    input.read_bytes(1024).await.unwrap();
    assert!(input.await_content(4096).await.unwrap());
    let a = input.read_bytes(1024).await.unwrap();
    let b = input.read_bytes(1024).await.unwrap();
    assert_eq!(
        a.as_ptr().wrapping_add(1024),
        b.as_ptr(),
        "copied, not shared"
    );
}

/// copy_and_close: "If the copy fails, dst is cut short ...: what was copied is delivered,
/// then dst is cancelled and counts as having lost bytes".
#[tokio::test]
async fn copy_and_close_marks_the_destination_lost() {
    let mut source = ByteReadChannel::new(ChunkedReader::new([
        Step::Data(b"abc".to_vec()),
        Step::Fail(reset()),
    ]));
    let (mut dst, mut input) = ByteChannel::new(false);
    let state = WriteState::new();
    dst.share_state(state.clone());
    assert!(source.copy_and_close(&mut dst, u64::MAX).await.is_err());
    assert!(state.lost_bytes());
    assert!(dst.is_closed_for_write());
    assert_eq!(input.read_bytes(3).await.unwrap(), &b"abc"[..]);
    assert!(matches!(input.read_u8().await, Err(Error::Cancelled)));
}

// ----- drop logging ---------------------------------------------------------------------

fn levels_during(f: impl FnOnce()) -> Vec<tracing::Level> {
    Capture::during(f).into_iter().map(|(l, _)| l).collect()
}

/// ByteWriteChannel: dropping logs "a `debug` event once a write or flush of the channel
/// returned Error::Timeout, until what it kept was written out"; a `warn` otherwise.
#[test]
fn drop_after_a_timeout_logs_debug_until_the_kept_bytes_left() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // A flush that timed out with the bytes kept: debug.
    let mock = MockWriter::default();
    mock.on_write([Act::Fail(timeout())]);
    let mut output = ByteWriteChannel::new(mock.clone(), false);
    rt.block_on(output.write_fully(b"abc")).unwrap();
    assert!(matches!(rt.block_on(output.flush()), Err(Error::Timeout)));
    assert_eq!(levels_during(|| drop(output)), [tracing::Level::DEBUG]);

    // A write call that timed out without effect, with earlier bytes kept: debug.
    let mock = MockWriter::default();
    let mut output = ByteWriteChannel::new(mock.clone(), false);
    rt.block_on(output.write_fully(b"abc")).unwrap();
    mock.on_write([Act::Fail(timeout())]);
    assert!(matches!(
        rt.block_on(output.write_fully(&[1; 9000])),
        Err(Error::Timeout)
    ));
    assert!(!output.is_closed_for_write());
    assert_eq!(levels_during(|| drop(output)), [tracing::Level::DEBUG]);

    // The kept bytes left, then new ones were dropped: warn again.
    let mock = MockWriter::default();
    mock.on_write([Act::Fail(timeout())]);
    let mut output = ByteWriteChannel::new(mock.clone(), false);
    rt.block_on(output.write_fully(b"abc")).unwrap();
    assert!(matches!(rt.block_on(output.flush()), Err(Error::Timeout)));
    rt.block_on(output.flush()).unwrap();
    rt.block_on(output.write_fully(b"def")).unwrap();
    assert_eq!(levels_during(|| drop(output)), [tracing::Level::WARN]);

    // A write call that timed out without effect with nothing buffered kept nothing: bytes
    // written after it and dropped are a forgotten flush (warn).
    let mock = MockWriter::default();
    let mut output = ByteWriteChannel::new(mock.clone(), false);
    mock.on_write([Act::Fail(timeout())]);
    assert!(matches!(
        rt.block_on(output.write_fully(&[1; 9000])),
        Err(Error::Timeout)
    ));
    rt.block_on(output.write_fully(b"def")).unwrap();
    assert_eq!(levels_during(|| drop(output)), [tracing::Level::WARN]);
}

/// Pipe: "a flush or close with bytes buffered" fails after the reader is gone; a close with
/// nothing buffered is not listed, and "in auto_flush mode every write call of at least one
/// byte" fails.
#[tokio::test]
async fn pipe_writes_after_the_reader_is_gone_in_each_mode() {
    let (mut output, input) = ByteChannel::new(true);
    drop(input);
    assert!(matches!(output.write_u8(1).await, Err(Error::Cancelled)));
    assert!(output.is_closed_for_write());

    let (mut output, input) = ByteChannel::new(true);
    drop(input);
    output.write_fully(b"").await.unwrap();
    assert!(matches!(
        output.write_fully(b"x").await,
        Err(Error::Cancelled)
    ));

    let (mut output, input) = ByteChannel::new(false);
    drop(input);
    output.write_fully(b"x").await.unwrap();
    assert!(matches!(
        output.flush_and_close().await,
        Err(Error::Cancelled)
    ));

    let (mut output, input) = ByteChannel::new(false);
    drop(input);
    assert!(matches!(
        output.write_fully(&[1; 8192]).await,
        Err(Error::Cancelled)
    ));
}

/// The root README's "Using net-io" example, as written.
#[tokio::test]
async fn the_readme_example() {
    let (mut output, mut input) = ByteChannel::new(true);
    output.write_string_utf8("Alice\r\n").await.unwrap();
    output.write_u32(7).await.unwrap();
    output.flush_and_close().await.unwrap();
    assert_eq!(
        input
            .read_line(1024, LineEnding::Default)
            .await
            .unwrap()
            .as_deref(),
        Some("Alice")
    );
    assert_eq!(input.read_u32().await.unwrap(), 7);
    assert_eq!(
        input.read_line(1024, LineEnding::Default).await.unwrap(),
        None
    );
}

/// read_available: "When nothing is buffered and dst is large, the transport reads straight
/// into dst" (nothing is left buffered); "copies as many as are buffered" otherwise.
#[tokio::test]
async fn read_available_reads_straight_into_a_large_slice() {
    let mut input = ByteReadChannel::new(Endless(Arc::new(())));
    let mut dst = vec![0; 16 * 1024];
    assert_eq!(input.read_available(&mut dst).await.unwrap(), 16 * 1024);
    assert_eq!(input.available_for_read(), 0);
    assert_eq!(input.total_bytes_read(), 16 * 1024);
    let mut small = [0; 10];
    assert_eq!(input.read_available(&mut small).await.unwrap(), 10);
    assert!(input.available_for_read() > 0);
}

/// read_line: "Another read of one byte or more that fails (a Error::Timeout, an early end)
/// ends the skip ...: the next line read starts at the line's bytes as they are"; a
/// look-ahead that fails leaves it due.
#[tokio::test]
async fn a_failed_read_of_bytes_ends_the_skip_and_a_failed_look_ahead_does_not() {
    let script = || {
        ByteReadChannel::new(ChunkedReader::new([
            Step::Data(b"abcdef\nok\n".to_vec()),
            Step::Fail(timeout()),
        ]))
    };
    for read in ["read_bytes", "read_remaining", "read_fully", "discard"] {
        let mut input = script();
        assert!(matches!(
            input.read_line(5, LineEnding::Default).await,
            Err(Error::TooLongLine { limit: 5 })
        ));
        let e = match read {
            "read_bytes" => input.read_bytes(100).await.map(drop),
            "read_remaining" => input.read_remaining(100).await.map(drop),
            "read_fully" => input.read_fully(&mut [0; 100]).await,
            _ => input.discard(100).await.map(drop),
        };
        assert!(matches!(e, Err(Error::Timeout)), "{read}: {e:?}");
        if read == "discard" {
            // What it skipped stays skipped: the whole buffer, through "ok\n".
            continue;
        }
        assert_eq!(
            input
                .read_line(10, LineEnding::Default)
                .await
                .unwrap()
                .as_deref(),
            Some("abcdef"),
            "{read}"
        );
    }
    for look in ["peek", "await_content", "skip_if_found"] {
        let mut input = script();
        assert!(input.read_line(5, LineEnding::Default).await.is_err());
        let e = match look {
            "peek" => input.peek(100).await.map(drop),
            "await_content" => input.await_content(100).await.map(drop),
            _ => input.skip_if_found(b"abcdef\nok\nmore").await.map(drop),
        };
        assert!(matches!(e, Err(Error::Timeout)), "{look}: {e:?}");
        assert_eq!(
            input
                .read_line(10, LineEnding::Default)
                .await
                .unwrap()
                .as_deref(),
            Some("ok"),
            "{look}"
        );
    }
}

/// The same sentence when the skip has taken all that was buffered and then timed out: a read
/// of one byte or more that finds nothing buffered and fails ends the skip too, whichever read
/// it is (`read_available`, `read_fully`, the `AsyncRead` implementation each kept it due, so
/// the next line read threw away a line that `read_bytes` would have kept; `discard` and
/// `read_remaining` end it themselves, which no test checked until mutation testing found it).
#[tokio::test]
async fn a_failed_read_of_bytes_with_nothing_buffered_ends_the_skip() {
    let reads = [
        "read_bytes",
        "read_available",
        "read_fully",
        "poll_read",
        "discard",
        "discard_exact",
        "read_remaining",
    ];
    for read in reads {
        let mut input = ByteReadChannel::new(ChunkedReader::new([
            Step::Data(b"abcdef".to_vec()),
            Step::Fail(timeout()),
            Step::Fail(timeout()),
            Step::Data(b"gh\nok\n".to_vec()),
        ]));
        assert!(matches!(
            input.read_line(5, LineEnding::Default).await,
            Err(Error::TooLongLine { limit: 5 })
        ));
        // The skip takes what is buffered of the long line, then times out: still due.
        assert!(matches!(
            input.read_line(5, LineEnding::Default).await,
            Err(Error::Timeout)
        ));
        assert_eq!(input.available_for_read(), 0);
        let e = match read {
            "read_bytes" => input.read_bytes(10).await.map(drop),
            "read_available" => input.read_available(&mut [0; 10]).await.map(drop),
            "read_fully" => input.read_fully(&mut [0; 10]).await,
            "discard" => input.discard(10).await.map(drop),
            "discard_exact" => input.discard_exact(10).await,
            "read_remaining" => input.read_remaining(10).await.map(drop),
            _ => tokio::io::AsyncReadExt::read(&mut input, &mut [0; 10])
                .await
                .map(drop)
                .map_err(Error::from),
        };
        assert!(matches!(e, Err(Error::Timeout)), "{read}: {e:?}");
        assert_eq!(
            input
                .read_line(10, LineEnding::Default)
                .await
                .unwrap()
                .as_deref(),
            Some("gh"),
            "{read}"
        );
    }
}

/// ByteWriteChannel: "A write of up to 8 KiB that does not fit the room left waits for what the
/// buffer holds to be written out, then is buffered whole, as tokio's `BufWriter` does; a
/// larger write goes to the transport directly, after what the buffer holds."
#[tokio::test]
async fn a_write_that_does_not_fit_the_room_left_goes_out_after_the_buffer() {
    let mock = MockWriter::default();
    let mut output = ByteWriteChannel::new(mock.clone(), false);
    output.write_fully(&[1; 8190]).await.unwrap();
    assert!(mock.accepted().is_empty());
    output.write_fully(b"abcd").await.unwrap();
    assert_eq!(mock.accepted().len(), 8190, "the buffer, not the write");
    // Up to 8 KiB: buffered whole, after the buffer (and a full buffer is written out).
    output.write_fully(&[2; 8192]).await.unwrap();
    assert_eq!(mock.accepted().len(), 8194 + 8192);
    output.write_u8(3).await.unwrap();
    assert_eq!(mock.accepted().len(), 8194 + 8192, "buffered");
    // Larger: the buffer, then the write, straight to the transport.
    output.write_fully(&[4; 8193]).await.unwrap();
    let accepted = mock.accepted();
    assert_eq!(accepted.len(), 8194 + 8192 + 1 + 8193);
    assert!(accepted[..8190].iter().all(|&b| b == 1) && &accepted[8190..8194] == b"abcd");
    assert!(accepted[8194..8194 + 8192].iter().all(|&b| b == 2));
    assert_eq!(accepted[8194 + 8192], 3);
    assert!(accepted[8194 + 8193..].iter().all(|&b| b == 4));
    assert_eq!(output.total_bytes_written(), accepted.len() as u64);
}

/// hold_while: "Holds the auto-flushed writes of this channel's own write methods in `backlog`
/// while it is pending ... Writes through its AsyncWrite implementation go to the transport".
#[tokio::test]
async fn hold_while_holds_the_channels_own_writes_not_its_trait_writes() {
    use tokio::io::AsyncWriteExt;
    let backlog = Backlog::new();
    let mut input = ByteReadChannel::new(&b"one\ntwo\nthree\n"[..]);
    input.share_backlog(backlog.clone());
    let (transport, _peer) = tokio::io::duplex(64);
    let mut output = ByteWriteChannel::new(transport, true);
    output.hold_while(backlog.clone());
    input.read_line(80, LineEnding::Default).await.unwrap();
    assert!(backlog.is_pending());
    output.write_string_utf8("1\n").await.unwrap();
    assert_eq!(backlog.with_held(|held| held.len()), 2, "own write held");
    AsyncWriteExt::write_all(&mut output, b"2\n").await.unwrap();
    assert_eq!(
        backlog.with_held(|held| held.len()),
        2,
        "a trait write was held"
    );
}

/// Error's Display is transparent for Io ("the I/O error's own message (and its source as
/// ours)"); SharedError: "Display and source are those of the wrapped error".
#[test]
fn display_and_source_are_transparent() {
    use std::error::Error as _;
    #[derive(Debug)]
    struct Outer(io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("outer")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let shared = SharedError::new(Outer(io::Error::other("root")));
    assert_eq!(shared.to_string(), "outer");
    assert_eq!(shared.source().unwrap().to_string(), "root");
    let e = Error::Io(io::Error::other(shared));
    assert_eq!(e.to_string(), "outer");
    assert_eq!(e.source().unwrap().to_string(), "root");
    assert!(e.inner_error().is_some_and(|i| i.is::<Outer>()));
}

/// ByteReadChannel, "tokio's I/O traits": a `FramedRead` over `&mut` the channel keeps the
/// bytes it read past its last frame in its own buffer; `read_frame` and `into_frames` (then
/// `into_parts`) leave them in the channel.
#[tokio::test]
async fn framed_read_keeps_bytes_past_its_frame_and_read_frame_does_not() {
    use futures_core::Stream;
    use tokio_util::codec::FramedRead;
    let input = "HELLO\nbody bytes";
    let mut channel = ByteReadChannel::from_bytes(input);
    {
        let mut framed = FramedRead::new(&mut channel, LinesCodec::new());
        let first = std::future::poll_fn(|cx| Pin::new(&mut framed).poll_next(cx)).await;
        assert_eq!(first.unwrap().unwrap(), "HELLO");
        assert_eq!(framed.read_buffer().as_ref(), b"body bytes");
    }
    assert_eq!(channel.available_for_read(), 0);

    let mut channel = ByteReadChannel::from_bytes(input);
    let first = channel.read_frame(&mut LinesCodec::new()).await.unwrap();
    assert_eq!(first.as_deref(), Some("HELLO"));
    assert_eq!(
        channel.read_remaining(64).await.unwrap(),
        &b"body bytes"[..]
    );

    let mut frames = ByteReadChannel::from_bytes(input).into_frames(LinesCodec::new());
    let first = std::future::poll_fn(|cx| Pin::new(&mut frames).poll_next(cx)).await;
    assert_eq!(first.unwrap().unwrap(), "HELLO");
    let (mut channel, _) = frames.into_parts();
    assert_eq!(
        channel.read_remaining(64).await.unwrap(),
        &b"body bytes"[..]
    );
}

/// Frames::next_frame: "what the Stream yields next ... None at the end of the stream and
/// after the first error".
#[tokio::test]
async fn next_frame_yields_frames_then_the_error_then_none() {
    let input = ByteReadChannel::new(ChunkedReader::new([
        Step::Data(b"a\nb".to_vec()),
        Step::Fail(reset()),
    ]));
    let mut frames = input.into_frames(LinesCodec::new());
    assert_eq!(frames.next_frame().await.unwrap().unwrap(), "a");
    match frames.next_frame().await {
        Some(Err(LinesCodecError::Io(e))) => {
            assert_eq!(Error::from(e).kind(), io::ErrorKind::ConnectionReset)
        }
        other => panic!("{other:?}"),
    }
    assert!(frames.next_frame().await.is_none());
    let mut frames = ByteReadChannel::from_bytes("x\ny").into_frames(LinesCodec::new());
    assert_eq!(frames.next_frame().await.unwrap().unwrap(), "x");
    assert_eq!(frames.next_frame().await.unwrap().unwrap(), "y");
    assert!(frames.next_frame().await.is_none());
}

/// ByteWriteChannel, Failures: "`Error::Timeout` during a write call: if none of the call's
/// bytes had reached the transport, the call had no effect ... the channel stays usable": a
/// call of no bytes, auto-flushed, whose flush times out after bytes kept before it left.
#[tokio::test]
async fn a_write_of_no_bytes_whose_flush_timed_out_had_no_effect() {
    let mock = MockWriter::default();
    let mut output = ByteWriteChannel::new(mock.clone(), true);
    // A trait write whose auto-flush timed out keeps its bytes (and took them).
    mock.on_write([Act::Fail(timeout())]);
    let took = tokio::io::AsyncWriteExt::write(&mut output, b"kept").await;
    assert_eq!(took.unwrap(), 4);
    mock.on_flush([Act::Fail(timeout())]);
    let e = output.write_fully(b"").await.unwrap_err();
    assert!(matches!(e, Error::Timeout), "{e:?}");
    assert_eq!(mock.accepted(), b"kept");
    assert!(
        !output.is_closed_for_write(),
        "a call of no bytes whose flush timed out failed the channel"
    );
    output.write_fully(b"next").await.unwrap();
    assert_eq!(mock.accepted(), b"keptnext");
}

/// ByteWriteChannel: "Writes go into a buffer of up to 8 KiB, which is written to the
/// transport when it fills, on flush, and, in auto_flush mode, at the end of every write call":
/// frames wait in the buffer for the flush; a write larger than the buffer, which goes to the
/// transport directly after what the buffer holds, still ends flushed in auto_flush mode.
#[tokio::test]
async fn writes_leave_when_the_buffer_fills_on_flush_or_flushed_at_the_end_of_each_call() {
    let mock = MockWriter::default();
    let mut output = ByteWriteChannel::new(mock.clone(), false);
    let mut codec = LinesCodec::new();
    output.write_frame(&mut codec, "one").await.unwrap();
    output.write_frame(&mut codec, "two").await.unwrap();
    assert_eq!(mock.accepted(), b"", "a frame left before the flush");
    output.flush().await.unwrap();
    assert_eq!(mock.accepted(), b"one\ntwo\n");

    // In auto_flush mode, after a trait write that found the transport not ready (its bytes
    // wait in the buffer), so that the large write goes out after them.
    let mock = MockWriter::default();
    let mut output = ByteWriteChannel::new(mock.clone(), true);
    mock.on_write([Act::Stall]);
    let took = tokio::io::AsyncWriteExt::write(&mut output, b"first").await;
    assert_eq!(took.unwrap(), 5);
    let large = vec![7; 20_000];
    output.write_fully(&large).await.unwrap();
    assert_eq!(mock.accepted(), [&b"first"[..], &large].concat());
    assert_eq!(mock.log().flushes, 1, "the large write did not end flushed");
}
