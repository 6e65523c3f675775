//! Property tests: the line reader, `read_until`, byte runs and typed reads over random
//! chunkings of random input, compared with the reference model (`support/model.rs`, which the
//! fuzz targets share).

mod support;

use std::time::Duration;

use net_io::{ByteReadChannel, Error, LineEnding};
use proptest::prelude::*;
use support::model::{Model, Outcome};
use support::{ChunkedReader, split_by};

/// The line-reading method under test.
#[derive(Clone, Copy, Debug)]
enum Method {
    Line(LineEnding),
    Strict(LineEnding),
    LineTo(LineEnding),
    Utf8,
}

const METHODS: [Method; 7] = [
    Method::Line(LineEnding::Default),
    Method::Line(LineEnding::Lenient),
    Method::Strict(LineEnding::Default),
    Method::Strict(LineEnding::Lenient),
    Method::LineTo(LineEnding::Default),
    Method::LineTo(LineEnding::Lenient),
    Method::Utf8,
];

impl Method {
    fn lenient(self) -> bool {
        matches!(
            self,
            Method::Utf8
                | Method::Line(LineEnding::Lenient)
                | Method::Strict(LineEnding::Lenient)
                | Method::LineTo(LineEnding::Lenient)
        )
    }

    fn strict(self) -> bool {
        matches!(self, Method::Strict(_))
    }
}

/// Maps a read's result to the model's form; any other error fails the test.
fn outcome<T>(
    res: net_io::Result<Option<T>>,
    limit: usize,
    wrap: impl Fn(T) -> Outcome,
) -> Outcome {
    match res {
        Ok(Some(v)) => wrap(v),
        Ok(None) => Outcome::End,
        Err(Error::TooLongLine { limit: l }) => {
            assert_eq!(l, limit, "TooLongLine carries the wrong limit");
            Outcome::TooLong
        }
        Err(Error::UnexpectedEof { .. }) => Outcome::UnexpectedEof,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Outcome::InvalidInput,
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

/// One line read with `method`.
async fn read_line(ch: &mut ByteReadChannel, method: Method, limit: usize) -> Outcome {
    let res = match method {
        Method::Line(e) => ch.read_line(limit, e).await,
        Method::Strict(e) => ch.read_line_strict(limit, e).await,
        Method::Utf8 => ch.read_utf8_line(limit).await,
        Method::LineTo(e) => {
            let mut buf = String::from("\u{e9}");
            let res = ch.read_line_to(&mut buf, limit, e).await;
            match res {
                Ok(Some(n)) => {
                    assert_eq!(n, buf.len() - 2, "read_line_to count vs appended");
                    Ok(Some(buf[2..].to_owned()))
                }
                Ok(None) => {
                    assert_eq!(buf, "\u{e9}", "read_line_to touched the string");
                    Ok(None)
                }
                Err(e) => {
                    assert_eq!(buf, "\u{e9}", "read_line_to touched the string");
                    Err(e)
                }
            }
        }
    };
    outcome(res, limit, Outcome::Line)
}

/// Reads `input`, delivered in `chunks`, line by line with `method` until the end or an
/// unterminated strict line, beside the model; returns (actual, expected) outcomes.
async fn run_lines(
    input: &[u8],
    chunks: &[Vec<u8>],
    pauses: bool,
    method: Method,
    limit: usize,
) -> (Vec<Outcome>, Vec<Outcome>) {
    let reader = if pauses {
        ChunkedReader::chunks_with_pauses(chunks)
    } else {
        ChunkedReader::chunks(chunks)
    };
    let mut ch = ByteReadChannel::new(reader);
    let mut model = Model::new(input);
    let (mut actual, mut expected) = (Vec::new(), Vec::new());
    for _ in 0..input.len() + 2 {
        let want = model.line(method.lenient(), method.strict(), limit);
        let got = read_line(&mut ch, method, limit).await;
        let done = matches!(want, Outcome::End | Outcome::UnexpectedEof);
        expected.push(want);
        actual.push(got);
        if done || actual != expected {
            break;
        }
        assert_eq!(
            ch.total_bytes_read(),
            model.consumed() as u64,
            "total_bytes_read"
        );
    }
    (actual, expected)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// Random line input biased toward CR, LF, 'a' and fragments of multi-byte UTF-8.
fn line_input() -> impl Strategy<Value = Vec<u8>> {
    let fragments = vec![0xc3u8, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80, 0xff];
    let chars = vec!["\u{e9}", "\u{20ac}", "\u{1f600}"];
    let token = prop_oneof![
        3 => Just(vec![b'\r']),
        3 => Just(vec![b'\n']),
        3 => Just(vec![b'a']),
        1 => Just(b"\r\n".to_vec()),
        3 => prop::sample::select(fragments).prop_map(|b| vec![b]),
        2 => prop::sample::select(chars).prop_map(|s| s.as_bytes().to_vec()),
        1 => any::<u8>().prop_map(|b| vec![b]),
    ];
    prop::collection::vec(token, 0..48).prop_map(|v| v.concat())
}

fn limit() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 0usize..=20, 1 => Just(1usize << 16), 1 => Just(usize::MAX)]
}

/// One read of a mixed sequence.
#[derive(Clone, Debug)]
enum Op {
    Line(usize, usize),
    Until(Vec<u8>, usize),
    Bytes(usize),
    Peek(usize),
    Discard(u64),
    SkipIfFound(Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    let delimiter = prop_oneof![
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"a\r".to_vec()),
        Just(b"\r\n\r\n".to_vec()),
        Just(Vec::new()),
    ];
    prop_oneof![
        4 => (0..METHODS.len(), 0usize..=12).prop_map(|(m, l)| Op::Line(m, l)),
        4 => (delimiter, 0usize..=12).prop_map(|(d, l)| Op::Until(d, l)),
        1 => (0usize..=6).prop_map(Op::Bytes),
        1 => (0usize..=6).prop_map(Op::Peek),
        1 => (0u64..=6).prop_map(Op::Discard),
        1 => prop::collection::vec(prop::sample::select(vec![b'a', b'\r', b'\n']), 0..3)
            .prop_map(Op::SkipIfFound),
    ]
}

/// Awaits the read `$read` (an expression making a new future each time); with `$dropping`,
/// as a `select!` that keeps losing does: polled once and dropped while it waits, then made
/// again, until a poll completes it.
macro_rules! drive {
    ($dropping:expr, $read:expr) => {{
        if $dropping {
            let mut polls = 0;
            loop {
                if let Some(done) = support::poll_once($read).await {
                    break done;
                }
                polls += 1;
                assert!(polls < 100_000, "no progress");
                tokio::task::yield_now().await;
            }
        } else {
            $read.await
        }
    }};
}

/// Runs `op` on the channel and on the model; returns (actual, expected). With `dropping`, each
/// cancel-safe read is dropped at every poll that does not complete it (see `drive!`).
async fn run_op(
    ch: &mut ByteReadChannel,
    model: &mut Model,
    op: &Op,
    dropping: bool,
) -> (Outcome, Outcome) {
    let bytes = |v: Option<Vec<u8>>| v.map_or(Outcome::End, Outcome::Item);
    match op {
        Op::Line(m, limit) => {
            let method = METHODS[*m];
            let want = model.line(method.lenient(), method.strict(), *limit);
            (drive!(dropping, read_line(ch, method, *limit)), want)
        }
        Op::Until(delimiter, limit) => {
            let want = model.until(delimiter, *limit);
            let got = outcome(
                drive!(dropping, ch.read_until(delimiter, *limit)),
                *limit,
                |b| Outcome::Item(b.to_vec()),
            );
            (got, want)
        }
        Op::Bytes(n) => {
            let want = bytes(model.take(*n));
            let got = match drive!(dropping, ch.read_bytes(*n)) {
                Ok(b) => Outcome::Item(b.to_vec()),
                Err(Error::UnexpectedEof { .. }) => Outcome::End,
                Err(e) => panic!("read_bytes: {e:?}"),
            };
            (got, want)
        }
        Op::Peek(n) => {
            let want = bytes(model.peek(*n));
            let got = drive!(dropping, ch.peek(*n)).unwrap();
            (bytes(got.map(|b| b.to_vec())), want)
        }
        Op::Discard(n) => {
            let want = model.discard(*n) as u64;
            let got = ch.discard(*n).await.unwrap();
            (
                Outcome::Item(got.to_be_bytes().to_vec()),
                Outcome::Item(want.to_be_bytes().to_vec()),
            )
        }
        Op::SkipIfFound(pattern) => {
            let want = model.skip_if_found(pattern);
            let got = drive!(dropping, ch.skip_if_found(pattern)).unwrap();
            (
                Outcome::Item(vec![u8::from(got)]),
                Outcome::Item(vec![u8::from(want)]),
            )
        }
    }
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![4 => 1usize..=4, 1 => 5usize..=40], 1..16)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Every line-reading method matches the reference model on random input, chunking and
    /// limit, over- long lines (skipped by the next read) included.
    #[test]
    fn line_reads_match_model(
        input in line_input(),
        sizes in chunk_sizes(),
        pauses in any::<bool>(),
        limit in limit(),
    ) {
        let chunks = split_by(&input, &sizes);
        let rt = runtime();
        for method in METHODS {
            let (actual, expected) = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), run_lines(&input, &chunks, pauses, method, limit))
                    .await
                    .expect("line read hung")
            });
            prop_assert_eq!(
                &actual, &expected,
                "{:?} limit {} chunks {:?}", method, limit, chunks
            );
        }
    }

    /// Random mixes of line reads (every method), read_until (one- and multi-byte delimiters),
    /// byte runs, look-ahead and skips match the model, bytes consumed included.
    #[test]
    fn mixed_reads_match_model(
        input in line_input(),
        ops in prop::collection::vec(op(), 1..24),
        sizes in chunk_sizes(),
        pauses in any::<bool>(),
    ) {
        let chunks = split_by(&input, &sizes);
        let reader = if pauses {
            ChunkedReader::chunks_with_pauses(&chunks)
        } else {
            ChunkedReader::chunks(&chunks)
        };
        let mut ch = ByteReadChannel::new(reader);
        let mut model = Model::new(&input);
        runtime().block_on(async {
            tokio::time::timeout(Duration::from_secs(10), async {
                for (i, op) in ops.iter().enumerate() {
                    let (got, want) = run_op(&mut ch, &mut model, op, false).await;
                    assert_eq!(got, want, "op {i} {op:?} in {ops:?}, chunks {chunks:?}");
                    assert_eq!(ch.total_bytes_read(), model.consumed() as u64, "after op {i} {op:?}");
                }
            })
            .await
            .expect("read hung");
        });
    }

    /// The same mixes, with every cancel-safe read (all but `discard`) dropped at each poll
    /// that does not complete it, as a `select!` that keeps losing drops it, then made again:
    /// the outcomes and the bytes consumed are the model's, as if no read had been dropped.
    #[test]
    fn mixed_reads_dropped_at_every_poll_match_model(
        input in line_input(),
        ops in prop::collection::vec(op(), 1..24),
        sizes in chunk_sizes(),
    ) {
        let chunks = split_by(&input, &sizes);
        let mut ch = ByteReadChannel::new(ChunkedReader::chunks_with_pauses(&chunks));
        let mut model = Model::new(&input);
        runtime().block_on(async {
            tokio::time::timeout(Duration::from_secs(10), async {
                for (i, op) in ops.iter().enumerate() {
                    let (got, want) = run_op(&mut ch, &mut model, op, true).await;
                    assert_eq!(got, want, "op {i} {op:?} in {ops:?}, chunks {chunks:?}");
                    assert_eq!(ch.total_bytes_read(), model.consumed() as u64, "after op {i} {op:?}");
                }
            })
            .await
            .expect("read hung");
        });
    }

    /// Random u8..u64 BE/LE reads over random chunking match the reference; a cut tail is kept.
    #[test]
    fn typed_reads_match_reference(
        ops in prop::collection::vec((0u8..7, any::<u64>()), 0..40),
        tail in (0u8..7, any::<u64>(), any::<prop::sample::Index>()),
        sizes in chunk_sizes(),
        pauses in any::<bool>(),
    ) {
        fn size(kind: u8) -> usize {
            match kind {
                0 => 1,
                1 | 2 => 2,
                3 | 4 => 4,
                _ => 8,
            }
        }
        fn encode(kind: u8, v: u64) -> Vec<u8> {
            match kind {
                0 => vec![v as u8],
                1 => (v as u16).to_be_bytes().to_vec(),
                2 => (v as u16).to_le_bytes().to_vec(),
                3 => (v as u32).to_be_bytes().to_vec(),
                4 => (v as u32).to_le_bytes().to_vec(),
                5 => v.to_be_bytes().to_vec(),
                _ => v.to_le_bytes().to_vec(),
            }
        }
        let mut input = Vec::new();
        for &(kind, v) in &ops {
            input.extend(encode(kind, v));
        }
        let (tail_kind, tail_value, tail_cut) = tail;
        let tail_len = tail_cut.index(size(tail_kind));
        let tail_bytes = encode(tail_kind, tail_value)[..tail_len].to_vec();
        input.extend_from_slice(&tail_bytes);

        let chunks = split_by(&input, &sizes);
        let reader = if pauses {
            ChunkedReader::chunks_with_pauses(&chunks)
        } else {
            ChunkedReader::chunks(&chunks)
        };
        let mut ch = ByteReadChannel::new(reader);
        runtime().block_on(async {
            tokio::time::timeout(Duration::from_secs(10), async {
                for &(kind, v) in &ops {
                    let got = match kind {
                        0 => u64::from(ch.read_u8().await.unwrap()),
                        1 => u64::from(ch.read_u16().await.unwrap()),
                        2 => u64::from(ch.read_u16_le().await.unwrap()),
                        3 => u64::from(ch.read_u32().await.unwrap()),
                        4 => u64::from(ch.read_u32_le().await.unwrap()),
                        5 => ch.read_u64().await.unwrap(),
                        _ => ch.read_u64_le().await.unwrap(),
                    };
                    let want = match kind {
                        0 => v & 0xff,
                        1 | 2 => v & 0xffff,
                        3 | 4 => v & 0xffff_ffff,
                        _ => v,
                    };
                    assert_eq!(got, want, "kind {kind}");
                }
                let res = match tail_kind {
                    0 => ch.read_u8().await.map(drop),
                    1 => ch.read_u16().await.map(drop),
                    2 => ch.read_u16_le().await.map(drop),
                    3 => ch.read_u32().await.map(drop),
                    4 => ch.read_u32_le().await.map(drop),
                    5 => ch.read_u64().await.map(drop),
                    _ => ch.read_u64_le().await.map(drop),
                };
                match res {
                    Err(Error::UnexpectedEof { needed, available }) => {
                        assert_eq!((needed, available), (size(tail_kind), tail_len));
                    }
                    other => panic!("truncated tail: expected UnexpectedEof, got {other:?}"),
                }
                let rest = ch.read_remaining(usize::MAX).await.unwrap();
                assert_eq!(&rest[..], &tail_bytes[..]);
            })
            .await
            .expect("typed read hung");
        });
    }
}

/// Every outcome of line reads with these rules until the end (or an unterminated strict line).
fn model_lines(input: &[u8], lenient: bool, strict: bool, limit: usize) -> Vec<Outcome> {
    let mut model = Model::new(input);
    let mut out = Vec::new();
    loop {
        let o = model.line(lenient, strict, limit);
        let done = matches!(o, Outcome::End | Outcome::UnexpectedEof);
        out.push(o);
        if done {
            return out;
        }
    }
}

/// The reference model itself follows SPEC §2.1 and §4.2 on hand-checked inputs.
#[test]
fn model_sanity() {
    use Outcome::*;
    let l = |s: &str| Line(s.to_owned());
    assert_eq!(
        model_lines(b"a\nb\r\nc\rd", true, false, 10),
        [l("a"), l("b"), l("c"), l("d"), End]
    );
    assert_eq!(
        model_lines(b"a\nb\r\nc\rd", false, false, 10),
        [l("a"), l("b"), l("c\rd"), End]
    );
    assert_eq!(model_lines(b"abc\r", false, false, 3), [TooLong, End]);
    assert_eq!(model_lines(b"abc\r\n", false, false, 3), [l("abc"), End]);
    assert_eq!(model_lines(b"abc\r", true, false, 3), [l("abc"), End]);
    assert_eq!(model_lines(b"abc", false, true, 3), [UnexpectedEof]);
    assert_eq!(model_lines(b"abcd", false, true, 3), [TooLong, End]);
    assert_eq!(model_lines(b"", false, true, 3), [End]);
    assert_eq!(model_lines(b"\r\r", true, false, 0), [l(""), l(""), End]);
    assert_eq!(model_lines(b"\xff\n", true, false, 1), [l("\u{fffd}"), End]);
    assert_eq!(model_lines(b"\xe9\n", true, false, 0), [TooLong, End]);
    // The over-long line is skipped through its delimiter, CRLF (lenient) as one.
    assert_eq!(
        model_lines(b"abcd\r\nx\n", true, false, 3),
        [TooLong, l("x"), End]
    );
    assert_eq!(model_lines(b"abcd\rx\n", false, false, 3), [TooLong, End]);

    let mut m = Model::new(b"ab--cdefg--h");
    assert_eq!(m.until(b"--", 2), Item(b"ab".to_vec()));
    assert_eq!(m.until(b"--", 2), TooLong);
    assert_eq!(m.until(b"--", 2), UnexpectedEof);
    assert_eq!(m.take(1), Some(b"h".to_vec()));
    assert_eq!(m.until(b"--", 2), End);
    assert_eq!(m.until(b"", 2), InvalidInput);
    // Another read drops the skip.
    let mut m = Model::new(b"abcd\nx\n");
    assert_eq!(m.line(false, false, 3), TooLong);
    assert_eq!(m.take(1), Some(b"a".to_vec()));
    assert_eq!(m.line(false, false, 3), l("bcd"));
}
