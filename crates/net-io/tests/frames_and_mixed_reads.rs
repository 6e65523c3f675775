//! Review of the tokio-trait and codec bridge (hx-traits): an encoder or a decoder that panics,
//! and trait reads (`poll_read` into buffers of every size, `poll_fill_buf`/`consume`) mixed
//! with the channel's own reads and `read_frame`, each dropped at every poll, against the
//! reference model.

mod support;

use std::future::{Future, poll_fn};
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use net_io::{ByteReadChannel, ByteWriteChannel, Error, LineEnding};
use proptest::prelude::*;
use support::model::{Model, Outcome};
use support::{ChunkedReader, MockWriter, split_by};
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};
use tokio_util::codec::{Decoder, Encoder, LinesCodec};

/// Awaits `future`, catching a panic raised by one of its polls (as a task runner that
/// survives a panicking request handler does); the future is dropped after a panic.
async fn catching<F: Future>(future: F) -> std::thread::Result<F::Output> {
    let mut future = std::pin::pin!(future);
    poll_fn(
        |cx| match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        },
    )
    .await
}

/// Writes a 4-byte header, then panics for the item "bug" (an encoder with a bug), or writes
/// the item.
struct HeaderThenItem;

impl Encoder<&'static str> for HeaderThenItem {
    type Error = io::Error;

    fn encode(&mut self, item: &'static str, dst: &mut BytesMut) -> io::Result<()> {
        dst.put_slice(b"HEAD");
        if item == "bug" {
            panic!("encoder bug");
        }
        dst.put_slice(item.as_bytes());
        Ok(())
    }
}

/// An encoder that panics after it wrote part of a frame into the channel's buffer: the part is
/// taken out again, as for an encoder that returns an error, so a caller that survives the
/// panic (a server that catches a handler's panic and answers with an error) never sends a
/// torn frame to the peer, and the count stays what was accepted. Before the fix the peer got
/// `HEADok` after `HEAD` (the cut frame's header): `HEADHEADok`, 10 bytes against a count of 6.
/// Also with bytes buffered before the frame, and with a frame larger than the buffer.
#[tokio::test]
async fn a_panicking_encoder_leaves_no_part_of_its_frame_to_be_sent() {
    for before in [0usize, 100] {
        for auto_flush in [false, true] {
            let transport = MockWriter::default();
            let mut output = ByteWriteChannel::new(transport.clone(), auto_flush);
            let earlier = vec![b'e'; before];
            output.write_fully(&earlier).await.unwrap();
            let panicked = catching(output.write_frame(&mut HeaderThenItem, "bug")).await;
            assert!(panicked.is_err(), "the encoder's panic reaches the caller");
            assert_eq!(output.total_bytes_written(), before as u64);
            output.write_frame(&mut HeaderThenItem, "ok").await.unwrap();
            output.flush_and_close().await.unwrap();
            let mut expected = earlier.clone();
            expected.extend_from_slice(b"HEADok");
            assert_eq!(
                transport.accepted(),
                expected,
                "{before} bytes before, auto_flush {auto_flush}"
            );
            assert_eq!(output.total_bytes_written(), expected.len() as u64);
        }
    }

    // A frame larger than the buffer grows it before the panic: the allocation is given back.
    struct Large;
    impl Encoder<()> for Large {
        type Error = io::Error;

        fn encode(&mut self, (): (), dst: &mut BytesMut) -> io::Result<()> {
            dst.put_slice(&[1; 100_000]);
            panic!("encoder bug after a large part");
        }
    }
    let transport = MockWriter::default();
    let mut output = ByteWriteChannel::new(transport.clone(), false);
    assert!(catching(output.write_frame(&mut Large, ())).await.is_err());
    output.write_fully(b"after").await.unwrap();
    output.flush_and_close().await.unwrap();
    assert_eq!(transport.accepted(), b"after");
}

/// Takes 2 bytes, then panics.
struct TakesTwoThenPanics;

impl Decoder for TakesTwoThenPanics {
    type Item = ();
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<()>> {
        if src.len() >= 2 {
            let _ = src.split_to(2);
            panic!("decoder bug");
        }
        Ok(None)
    }
}

/// A decoder that panics (as `read_frame` documents): what it consumed before the panic is
/// consumed (and counted), the rest stays buffered, and the channel reads on.
#[tokio::test]
async fn a_panicking_decoder_consumes_only_what_it_took() {
    let mut input = ByteReadChannel::new(ChunkedReader::chunks([&b"ab"[..], b"line\n", b"end"]));
    let panicked = catching(input.read_frame(&mut TakesTwoThenPanics)).await;
    assert!(panicked.is_err());
    assert_eq!(input.total_bytes_read(), 2);
    let line = input.read_line(80, LineEnding::Default).await.unwrap();
    assert_eq!(line.as_deref(), Some("line"));
    assert_eq!(input.read_remaining(80).await.unwrap(), &b"end"[..]);
}

/// `read_frame`'s rule for other reads between calls with one decoder (a guard of its doc):
/// between calls that each returned a frame they are fine with the same `LinesCodec`; after a
/// call dropped while it waited (the codec keeps how far it searched), a new codec reads the
/// right line. (The same codec would panic there: it searches from past the buffer's end.)
#[tokio::test]
async fn other_reads_between_frame_reads_follow_the_documented_rule() {
    let (mut output, mut input) = net_io::ByteChannel::new(true);
    let mut codec = LinesCodec::new();
    output.write_string_utf8("one\n#two\nab").await.unwrap();
    assert_eq!(
        input.read_frame(&mut codec).await.unwrap().as_deref(),
        Some("one")
    );
    assert_eq!(input.read_u8().await.unwrap(), b'#');
    assert_eq!(
        input.read_frame(&mut codec).await.unwrap().as_deref(),
        Some("two")
    );

    // Dropped while it waits for the rest of "ab": the codec searched both bytes.
    assert!(
        support::poll_once(input.read_frame(&mut codec))
            .await
            .is_none()
    );
    assert_eq!(input.read_u8().await.unwrap(), b'a');
    output.write_string_utf8("\nxyz\n").await.unwrap();
    let mut fresh = LinesCodec::new();
    assert_eq!(
        input.read_frame(&mut fresh).await.unwrap().as_deref(),
        Some("b")
    );
    assert_eq!(
        input.read_frame(&mut fresh).await.unwrap().as_deref(),
        Some("xyz")
    );
}

/// One read of a mix.
#[derive(Clone, Debug)]
enum Op {
    /// `read_line(limit)`, lenient or not.
    Line(bool, usize),
    /// `read_until(delimiter, limit)`.
    Until(Vec<u8>, usize),
    /// `poll_read` into a buffer of this size (0, small, and the sizes that read from the
    /// transport straight into the caller's buffer).
    TraitRead(usize),
    /// `poll_fill_buf`, then `consume` of at most this many bytes.
    FillConsume(usize),
    /// `read_bytes(n)`.
    Bytes(usize),
    /// `read_frame` with a new `LinesCodec`.
    Frame,
}

fn op() -> impl Strategy<Value = Op> {
    let delimiter = prop_oneof![
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"aa".to_vec())
    ];
    prop_oneof![
        4 => (any::<bool>(), 0usize..=8).prop_map(|(l, n)| Op::Line(l, n)),
        2 => (delimiter, 0usize..=8).prop_map(|(d, n)| Op::Until(d, n)),
        3 => prop_oneof![Just(0usize), 1usize..=5, Just(8192), Just(20_000)].prop_map(Op::TraitRead),
        3 => (0usize..=6).prop_map(Op::FillConsume),
        1 => (0usize..=4).prop_map(Op::Bytes),
        1 => Just(Op::Frame),
    ]
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        3 => Just(b'\r'),
        3 => Just(b'\n'),
        4 => Just(b'a'),
        2 => Just(b'b'),
    ];
    prop::collection::vec(token, 0..60)
}

/// Awaits the read `$read` (made anew each time); with `$dropping`, polled once and dropped
/// while it waits, as a `select!` that keeps losing does, until a poll completes it.
macro_rules! drive {
    ($dropping:expr, $read:expr) => {{
        if $dropping {
            loop {
                if let Some(done) = support::poll_once($read).await {
                    break done;
                }
                tokio::task::yield_now().await;
            }
        } else {
            $read.await
        }
    }};
}

/// Polls `poll` until it is ready; with `dropping`, a pending poll is given up (nothing of it
/// kept) and made again after a yield.
async fn trait_poll<T>(
    dropping: bool,
    mut poll: impl FnMut(&mut std::task::Context<'_>) -> Poll<io::Result<T>>,
) -> T {
    loop {
        let polled = poll_fn(|cx| match poll(cx) {
            Poll::Ready(result) => Poll::Ready(Some(result)),
            Poll::Pending if dropping => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        })
        .await;
        match polled {
            Some(result) => return result.unwrap(),
            None => tokio::task::yield_now().await,
        }
    }
}

fn outcome<T>(result: net_io::Result<Option<T>>, wrap: impl Fn(T) -> Outcome) -> Outcome {
    match result {
        Ok(Some(v)) => wrap(v),
        Ok(None) => Outcome::End,
        Err(Error::TooLongLine { .. }) => Outcome::TooLong,
        Err(Error::UnexpectedEof { .. }) => Outcome::UnexpectedEof,
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

async fn run_mix(input: &[u8], chunks: &[Vec<u8>], ops: &[Op], pauses: bool, dropping: bool) {
    let reader = if pauses {
        ChunkedReader::chunks_with_pauses(chunks)
    } else {
        ChunkedReader::chunks(chunks)
    };
    let mut ch = ByteReadChannel::new(reader);
    let mut model = Model::new(input);
    // Whether the skip of an over-long line is due: the model keeps it to itself, and a frame
    // read, which drops it whatever it finds, is left out while it is.
    let mut skip_due = false;
    for (i, op) in ops.iter().enumerate() {
        let (got, want) = match op {
            Op::Line(lenient, limit) => {
                let want = model.line(*lenient, false, *limit);
                let ending = if *lenient {
                    LineEnding::Lenient
                } else {
                    LineEnding::Default
                };
                let got = drive!(dropping, ch.read_line(*limit, ending));
                (outcome(got, Outcome::Line), want)
            }
            Op::Until(delimiter, limit) => {
                let want = model.until(delimiter, *limit);
                let got = drive!(dropping, ch.read_until(delimiter, *limit));
                (outcome(got, |b| Outcome::Item(b.to_vec())), want)
            }
            Op::TraitRead(n) => {
                let mut buf = vec![0u8; *n];
                let mut out = ReadBuf::new(&mut buf);
                trait_poll(dropping, |cx| Pin::new(&mut ch).poll_read(cx, &mut out)).await;
                let got = out.filled().to_vec();
                if *n > 0 && got.is_empty() {
                    assert!(model.rest().is_empty(), "op {i}: an end before the end");
                }
                let want = model.take(got.len()).expect("more than the input");
                (Outcome::Item(got), Outcome::Item(want))
            }
            Op::FillConsume(k) => {
                let got = trait_poll(dropping, |cx| {
                    Pin::new(&mut ch).poll_fill_buf(cx).map_ok(<[u8]>::to_vec)
                })
                .await;
                if got.is_empty() {
                    assert!(model.rest().is_empty(), "op {i}: an end before the end");
                }
                assert!(model.rest().starts_with(&got), "op {i}: fill_buf {got:?}");
                let k = (*k).min(got.len());
                Pin::new(&mut ch).consume(k);
                let want = model.take(k).expect("more than the input");
                (Outcome::Item(got[..k].to_vec()), Outcome::Item(want))
            }
            Op::Bytes(n) => {
                let want = model.take(*n).map_or(Outcome::End, Outcome::Item);
                let got = match drive!(dropping, ch.read_bytes(*n)) {
                    Ok(b) => Outcome::Item(b.to_vec()),
                    Err(Error::UnexpectedEof { .. }) => Outcome::End,
                    Err(e) => panic!("read_bytes: {e:?}"),
                };
                (got, want)
            }
            Op::Frame if skip_due => continue,
            Op::Frame => {
                // `LinesCodec`: through the next LF, CR before it dropped; at the end the last
                // bytes (but a lone CR, which it leaves).
                let rest = model.rest().to_vec();
                let want = if rest.is_empty() || rest == b"\r" {
                    Outcome::End
                } else {
                    let end = rest
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(rest.len(), |p| p + 1);
                    let mut line = rest[..end].to_vec();
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    model.take(end);
                    Outcome::Line(String::from_utf8(line).unwrap())
                };
                let got = match drive!(dropping, ch.read_frame(&mut LinesCodec::new())) {
                    Ok(Some(line)) => Outcome::Line(line),
                    Ok(None) => Outcome::End,
                    Err(e) => panic!("read_frame: {e:?}"),
                };
                (got, want)
            }
        };
        match (&got, op) {
            (Outcome::TooLong, _) => skip_due = true,
            (_, Op::Line(..) | Op::Until(..)) => skip_due = false,
            (Outcome::Item(b), _) if !b.is_empty() => skip_due = false,
            (_, Op::Bytes(n)) if *n > 0 => skip_due = false,
            _ => {}
        }
        assert_eq!(got, want, "op {i} {op:?} in {ops:?}, chunks {chunks:?}");
        assert_eq!(
            ch.total_bytes_read(),
            model.consumed() as u64,
            "after op {i} {op:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Trait reads into buffers of every size (0, small, and 8 KiB and more, which read from
    /// the transport straight into the caller's buffer), `poll_fill_buf`/`consume`, line reads,
    /// `read_until`, `read_bytes` and `read_frame`, mixed on one channel, each dropped at every
    /// poll or not: every byte is read once, in order, as the model says (the skip of an
    /// over-long line included), and `total_bytes_read` follows.
    #[test]
    fn trait_and_channel_reads_mixed_and_dropped_match_model(
        input in input(),
        ops in prop::collection::vec(op(), 1..24),
        sizes in prop::collection::vec(1usize..=5, 1..8),
        pauses in any::<bool>(),
        dropping in any::<bool>(),
    ) {
        let chunks = split_by(&input, &sizes);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), run_mix(&input, &chunks, &ops, pauses, dropping))
                .await
                .expect("a read hung");
        });
    }
}

/// Codecs outside tokio-util's contract (a decoder only consumes from the buffer it is given;
/// an encoder only appends to it) get no panic from the channel. A decoder that puts bytes
/// back: they count as received, so `total_bytes_read` stays whole (before the fix it
/// subtracted past zero: a panic in a debug build). An encoder that clears the buffer it is
/// given cannot take away what earlier writes buffered (before, a subtraction past zero, then
/// a failed channel, or bytes lost silently).
#[tokio::test]
async fn codecs_that_break_the_buffer_contract_get_no_panic() {
    struct PutsBack(bool);
    impl Decoder for PutsBack {
        type Item = ();
        type Error = io::Error;
        fn decode(&mut self, src: &mut BytesMut) -> Result<Option<()>, io::Error> {
            if std::mem::replace(&mut self.0, true) {
                return Ok(None);
            }
            src.extend_from_slice(b"--");
            Ok(Some(()))
        }
    }
    let mut input = ByteReadChannel::from_bytes(&b"ab"[..]);
    assert_eq!(input.peek(2).await.unwrap().as_deref(), Some(&b"ab"[..]));
    input.read_frame(&mut PutsBack(false)).await.unwrap();
    assert_eq!(input.total_bytes_read(), 0);
    assert_eq!(input.read_remaining(10).await.unwrap(), &b"ab--"[..]);
    assert_eq!(input.total_bytes_read(), 4);

    // An encoder is given a buffer of its own, after what earlier writes buffered: one that
    // clears it takes away nothing of theirs. (Before, clearing then appending at least as
    // many bytes sent the frame without them, and `Ok`; clearing then failing lost them, and
    // the channel still ended cleanly.)
    struct Clears;
    impl Encoder<&'static [u8]> for Clears {
        type Error = io::Error;
        fn encode(&mut self, item: &'static [u8], dst: &mut BytesMut) -> Result<(), io::Error> {
            dst.clear();
            if item == b"fail" {
                return Err(io::Error::other("the encoder gave up"));
            }
            dst.extend_from_slice(item);
            Ok(())
        }
    }
    for frame in [
        &b""[..],
        b"x",
        b"a frame longer than what was buffered before it",
    ] {
        let mock = MockWriter::default();
        let mut output = ByteWriteChannel::new(mock.clone(), false);
        output.write_fully(b"earlier, buffered|").await.unwrap();
        output.write_frame(&mut Clears, frame).await.unwrap();
        output.flush_and_close().await.unwrap();
        assert_eq!(
            mock.accepted(),
            [&b"earlier, buffered|"[..], frame].concat()
        );
        assert_eq!(mock.shutdowns(), 1);
    }
    let mock = MockWriter::default();
    let mut output = ByteWriteChannel::new(mock.clone(), false);
    let state = net_io::WriteState::new();
    output.share_state(state.clone());
    output.write_fully(b"earlier, buffered|").await.unwrap();
    assert!(output.write_frame(&mut Clears, b"fail").await.is_err());
    output.write_fully(b"after").await.unwrap();
    output.flush_and_close().await.unwrap();
    assert_eq!(mock.accepted(), &b"earlier, buffered|after"[..]);
    assert!(!state.lost_bytes());
}
