//! The [`Backlog`] a read channel keeps for flush coalescing: input counts as pending only while
//! the reader has unconsumed input and does not wait for more.

mod support;

use net_io::{Backlog, ByteReadChannel, ByteWriteChannel, Error, LineEnding};
use tokio::io::AsyncWriteExt;

use support::poll_once;

/// A reader with `backlog` shared, and the peer that writes to it.
fn reader() -> (tokio::io::DuplexStream, ByteReadChannel, Backlog) {
    let (peer, transport) = tokio::io::duplex(1 << 16);
    let backlog = Backlog::new();
    let mut input = ByteReadChannel::new(transport);
    input.share_backlog(backlog.clone());
    (peer, input, backlog)
}

/// The next line, read with a limit of 8.
async fn line(input: &mut ByteReadChannel) -> Option<String> {
    input.read_line(8, LineEnding::Default).await.unwrap()
}

#[tokio::test]
async fn a_line_left_unread_is_pending_until_it_is_read() {
    let (mut peer, mut input, backlog) = reader();
    peer.write_all(b"one\ntwo\n").await.unwrap();
    assert_eq!(line(&mut input).await.as_deref(), Some("one"));
    assert!(backlog.is_pending());
    assert_eq!(line(&mut input).await.as_deref(), Some("two"));
    assert!(!backlog.is_pending());
}

/// Part of a request is not a pending request once the reader waits for the rest: an answer
/// written meanwhile (by another task) must not be held for a reader that waits.
#[tokio::test]
async fn a_reader_waiting_for_the_rest_of_a_line_has_nothing_pending() {
    let (mut peer, mut input, backlog) = reader();
    peer.write_all(b"one\ntw").await.unwrap();
    assert_eq!(line(&mut input).await.as_deref(), Some("one"));
    assert!(
        backlog.is_pending(),
        "`tw` is unread and the reader is not waiting"
    );
    assert!(
        poll_once(input.read_line(8, LineEnding::Default))
            .await
            .is_none()
    );
    assert!(!backlog.is_pending());
    let (transport, _peer) = tokio::io::duplex(64);
    let mut output = ByteWriteChannel::new(transport, true);
    output.hold_while(backlog.clone());
    output.write_string_utf8("answer\n").await.unwrap();
    assert!(!backlog.is_holding(), "held back for a reader that waits");
}

/// The same once the skip of an over-long line, or a discard, emptied the buffer and the
/// reader waits.
#[tokio::test]
async fn a_reader_waiting_after_a_skip_or_a_discard_has_nothing_pending() {
    let (mut peer, mut input, backlog) = reader();
    peer.write_all(b"far too long").await.unwrap();
    assert!(matches!(
        input.read_line(4, LineEnding::Default).await,
        Err(Error::TooLongLine { limit: 4 })
    ));
    assert!(
        poll_once(input.read_line(4, LineEnding::Default))
            .await
            .is_none()
    );
    assert_eq!(input.available_for_read(), 0);
    assert!(!backlog.is_pending());

    let (mut peer, mut input, backlog) = reader();
    peer.write_all(b"0123456789").await.unwrap();
    assert!(input.await_content(10).await.unwrap());
    assert!(poll_once(input.discard(100)).await.is_none());
    assert!(!backlog.is_pending());
}

/// Bytes held back are never overtaken: while some are held, later ones join them even with
/// nothing pending; with nothing held and nothing pending, nothing is held.
#[tokio::test]
async fn held_bytes_are_not_overtaken() {
    let (mut peer, mut input, backlog) = reader();
    peer.write_all(b"a\nb\n").await.unwrap();
    line(&mut input).await;
    assert!(backlog.hold(b"1", 64), "`b` is pending");
    line(&mut input).await;
    assert!(!backlog.is_pending());
    assert!(backlog.hold(b"2", 64), "joins the held `1`");
    backlog.with_held(|held| {
        assert_eq!(&held[..], b"12");
        held.clear();
    });
    assert!(!backlog.hold(b"3", 64), "nothing held, nothing pending");
}

/// Once the reader has seen the end of the stream it never waits again, so nothing would send
/// answers held back for it: nothing is pending from then on, even with input still buffered
/// (an answer written then leaves at once), and the reads that consume the rest (the skip of an
/// over-long line or item, a frame decoded at the end) leave nothing pending either.
#[tokio::test]
async fn input_consumed_at_the_end_of_the_stream_is_not_pending() {
    // The end of the stream is seen (by a look-ahead) while lines are still buffered.
    for until in [false, true] {
        let (mut peer, mut input, backlog) = reader();
        peer.write_all(b"ok\nfar too long\n").await.unwrap();
        peer.shutdown().await.unwrap();
        assert!(!input.await_content(100).await.unwrap());
        assert_eq!(line(&mut input).await.as_deref(), Some("ok"));
        assert!(
            !backlog.is_pending(),
            "the over-long line is unread, but the stream has ended"
        );
        assert!(
            !backlog.hold(b"ok\n", 64),
            "held for a reader that never waits"
        );
        if until {
            assert!(matches!(
                input.read_until(b"\n", 8).await,
                Err(Error::TooLongLine { limit: 8 })
            ));
            assert_eq!(input.read_until(b"\n", 8).await.unwrap(), None);
        } else {
            assert!(matches!(
                input.read_line(8, LineEnding::Default).await,
                Err(Error::TooLongLine { limit: 8 })
            ));
            assert_eq!(line(&mut input).await, None);
        }
        assert_eq!(input.available_for_read(), 0);
        assert!(
            !backlog.is_pending(),
            "until={until}: nothing is left to read"
        );
        let (transport, _peer) = tokio::io::duplex(64);
        let mut output = ByteWriteChannel::new(transport, true);
        output.hold_while(backlog.clone());
        output.write_string_utf8("bye\n").await.unwrap();
        assert!(
            !backlog.is_holding(),
            "until={until}: the answer is held back"
        );
    }

    // A frame decoded at the end of the stream.
    let (mut peer, mut input, backlog) = reader();
    peer.write_all(b"one\ntwo").await.unwrap();
    peer.shutdown().await.unwrap();
    assert!(!input.await_content(100).await.unwrap());
    assert_eq!(line(&mut input).await.as_deref(), Some("one"));
    assert!(
        !backlog.is_pending(),
        "`two` is unread, but the stream has ended"
    );
    let mut codec = tokio_util::codec::LinesCodec::new();
    assert_eq!(
        input.read_frame(&mut codec).await.unwrap().as_deref(),
        Some("two")
    );
    assert_eq!(input.available_for_read(), 0);
    assert!(!backlog.is_pending(), "the last frame was read");
}

/// Decodes `ok\n` frames; anything else is an error that consumes everything buffered (as a
/// decoder that drops a bad frame does).
struct OkOrBad;

impl tokio_util::codec::Decoder for OkOrBad {
    type Item = ();
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut bytes::BytesMut) -> std::io::Result<Option<()>> {
        if src.len() < 3 {
            return Ok(None);
        }
        if src.starts_with(b"ok\n") {
            let _ = src.split_to(3);
            return Ok(Some(()));
        }
        src.clear();
        Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "bad"))
    }
}

/// A decoder's error that consumed what was buffered leaves nothing pending: an answer written
/// after it (the error's report) is not held for input that is no longer there.
#[tokio::test]
async fn a_decoder_error_that_consumed_the_input_leaves_nothing_pending() {
    let (mut peer, mut input, backlog) = reader();
    peer.write_all(b"ok\nbad").await.unwrap();
    assert_eq!(input.read_frame(&mut OkOrBad).await.unwrap(), Some(()));
    assert!(backlog.is_pending(), "`bad` is unread");
    let e = input.read_frame(&mut OkOrBad).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    assert_eq!(input.available_for_read(), 0);
    assert!(!backlog.is_pending(), "the decoder consumed `bad`");
    let (transport, _peer) = tokio::io::duplex(64);
    let mut output = ByteWriteChannel::new(transport, true);
    output.hold_while(backlog.clone());
    output.write_string_utf8("bad frame\n").await.unwrap();
    assert!(!backlog.is_holding(), "held back for input that is gone");
}

/// Decodes `ok\n` frames; anything else is an error that leaves the input where it is (as
/// `LengthDelimitedCodec` leaves a header that announces a frame over its limit).
struct OkOrKept;

impl tokio_util::codec::Decoder for OkOrKept {
    type Item = ();
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut bytes::BytesMut) -> std::io::Result<Option<()>> {
        if src.len() < 3 {
            return Ok(None);
        }
        if src.starts_with(b"ok\n") {
            let _ = src.split_to(3);
            return Ok(Some(()));
        }
        Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "bad"))
    }
}

/// A frame stream ends at its first error and never reads again, though the bytes it failed on
/// stay buffered: nothing is pending any more (as at the end of the stream), and the transport
/// is told to send what it held back.
#[tokio::test]
async fn a_frame_stream_that_ended_at_an_error_has_nothing_pending() {
    let (mut peer, input, backlog) = reader();
    let sends = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let told = std::sync::Arc::clone(&sends);
    backlog.on_passed_on(move || {
        told.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    peer.write_all(b"ok\nbad\n").await.unwrap();
    let mut frames = input.into_frames(OkOrKept);
    assert!(frames.next_frame().await.unwrap().is_ok());
    assert!(backlog.is_pending(), "`bad` is unread");
    assert!(backlog.hold(b"fine\n", 1024));
    assert!(frames.next_frame().await.unwrap().is_err());
    assert!(frames.next_frame().await.is_none());
    assert!(!backlog.is_pending(), "the stream never reads `bad`");
    assert_eq!(sends.load(std::sync::atomic::Ordering::Relaxed), 1);
    let (input, _) = frames.into_parts();
    assert_eq!(input.available_for_read(), 4, "`bad` stays buffered");
}

/// `hold_regardless` holds with nothing pending (a layer's bytes, handed over as its reader
/// reads again), after what is held and within its limit; `is_deferring` says whether writes
/// are held back: input pending and holding not ended.
#[tokio::test]
async fn a_layer_holds_its_bytes_regardless_of_pending_input_until_holding_ends() {
    let (mut peer, mut input, backlog) = reader();
    assert!(!backlog.is_deferring());
    peer.write_all(b"one\ntwo\n").await.unwrap();
    assert_eq!(line(&mut input).await.as_deref(), Some("one"));
    assert!(backlog.is_deferring());
    assert!(backlog.hold(b"ONE\n", 64));
    assert_eq!(line(&mut input).await.as_deref(), Some("two"));
    assert!(!backlog.is_pending() && !backlog.is_deferring());
    assert!(backlog.hold_regardless(b"TWO\n", 64));
    assert!(!backlog.hold_regardless(&[b'x'; 64], 64), "past the limit");
    backlog.with_held(|held| assert_eq!(&held[..], b"ONE\nTWO\n"));
    backlog.with_held(|held| held.clear());
    assert!(
        backlog.hold_regardless(b"THREE\n", 64),
        "with nothing held either"
    );
    backlog.close();
    assert!(!backlog.hold_regardless(b"late", 64));
    peer.write_all(b"three\nfour\n").await.unwrap();
    assert_eq!(line(&mut input).await.as_deref(), Some("three"));
    assert!(
        backlog.is_pending() && !backlog.is_deferring(),
        "holding ended"
    );
}
