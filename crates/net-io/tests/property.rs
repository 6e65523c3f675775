//! Property tests: the line reader and typed reads over random chunkings of random input,
//! compared with a plain reference model.

mod support;

use std::time::Duration;

use net_io::{ByteReadChannel, Error, LineEnding};
use proptest::prelude::*;
use support::{ChunkedReader, split_by};

/// What one line read produced, in a comparable form.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Line(String),
    TooLong,
    UnexpectedEof,
    /// `None`: the input is exhausted.
    End,
    /// Either `TooLong` or `UnexpectedEof` is acceptable (strict read, too-long partial last
    /// line: both rules apply and SPEC does not order them).
    TooLongOrEof,
}

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

/// The reference model: the outcomes of reading `input` line by line until the end or the
/// first error, per SPEC §2.1.
fn model(input: &[u8], lenient: bool, strict: bool, limit: usize) -> Vec<Outcome> {
    let mut out = Vec::new();
    let mut p = 0;
    loop {
        if p == input.len() {
            out.push(Outcome::End);
            return out;
        }
        let rest = &input[p..];
        let delim = if lenient {
            rest.iter().position(|&b| b == b'\n' || b == b'\r')
        } else {
            rest.iter().position(|&b| b == b'\n')
        };
        match delim {
            Some(i) => {
                let (content_len, consumed) = if rest[i] == b'\r' {
                    // Lenient only: CRLF or a lone CR.
                    if rest.get(i + 1) == Some(&b'\n') {
                        (i, i + 2)
                    } else {
                        (i, i + 1)
                    }
                } else if !lenient && i > 0 && rest[i - 1] == b'\r' {
                    (i - 1, i + 1)
                } else {
                    (i, i + 1)
                };
                if content_len > limit {
                    out.push(Outcome::TooLong);
                    return out;
                }
                out.push(Outcome::Line(
                    String::from_utf8_lossy(&rest[..content_len]).into_owned(),
                ));
                p += consumed;
            }
            None => {
                if rest.len() > limit {
                    out.push(if strict {
                        Outcome::TooLongOrEof
                    } else {
                        Outcome::TooLong
                    });
                    return out;
                }
                if strict {
                    out.push(Outcome::UnexpectedEof);
                    return out;
                }
                out.push(Outcome::Line(String::from_utf8_lossy(rest).into_owned()));
                p = input.len();
            }
        }
    }
}

/// Reads `input`, delivered in `chunks`, line by line with `method` until the end or the first
/// error, recording each outcome.
async fn run_reader(
    chunks: &[Vec<u8>],
    pauses: bool,
    method: Method,
    limit: usize,
) -> Vec<Outcome> {
    let reader = if pauses {
        ChunkedReader::chunks_with_pauses(chunks)
    } else {
        ChunkedReader::chunks(chunks)
    };
    let mut ch = ByteReadChannel::new(reader);
    let total: usize = chunks.iter().map(Vec::len).sum();
    let mut out = Vec::new();
    let mut buf = String::from("\u{e9}");
    for _ in 0..total + 2 {
        let res = match method {
            Method::Line(e) => ch.read_line(limit, e).await,
            Method::Strict(e) => ch.read_line_strict(limit, e).await,
            Method::Utf8 => ch.read_utf8_line(limit).await,
            Method::LineTo(e) => {
                let before = buf.len();
                let res = ch.read_line_to(&mut buf, limit, e).await;
                match res {
                    Ok(Some(n)) => {
                        assert_eq!(n, buf.len() - before, "read_line_to count vs appended");
                        let line = buf[before..].to_owned();
                        buf.truncate(before);
                        Ok(Some(line))
                    }
                    Ok(None) => {
                        assert_eq!(buf.len(), before, "read_line_to appended at end");
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            }
        };
        match res {
            Ok(Some(line)) => out.push(Outcome::Line(line)),
            Ok(None) => {
                out.push(Outcome::End);
                return out;
            }
            Err(Error::TooLongLine { limit: l }) => {
                assert_eq!(l, limit, "TooLongLine carries the wrong limit");
                out.push(Outcome::TooLong);
                return out;
            }
            Err(Error::UnexpectedEof { .. }) => {
                out.push(Outcome::UnexpectedEof);
                return out;
            }
            Err(e) => panic!("unexpected error {e:?} after {out:?}"),
        }
    }
    panic!("more lines than input bytes (endless lines?): {out:?}")
}

/// Whether the actual outcomes match the model's.
fn matches_model(actual: &[Outcome], expected: &[Outcome]) -> bool {
    actual.len() == expected.len()
        && actual.iter().zip(expected).all(|(a, e)| match e {
            Outcome::TooLongOrEof => matches!(a, Outcome::TooLong | Outcome::UnexpectedEof),
            e => a == e,
        })
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

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![4 => 1usize..=4, 1 => 5usize..=40], 1..16)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Every line-reading method matches the reference model on random input, chunking and limit.
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
            let expected = model(&input, method.lenient(), method.strict(), limit);
            let actual = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), run_reader(&chunks, pauses, method, limit))
                    .await
                    .expect("line read hung")
            });
            prop_assert!(
                matches_model(&actual, &expected),
                "{:?} limit {} chunks {:?}\n  actual   {:?}\n  expected {:?}",
                method, limit, chunks, actual, expected
            );
        }
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

/// The reference model itself follows SPEC §2.1 on hand-checked inputs.
#[test]
fn model_sanity() {
    use Outcome::*;
    let l = |s: &str| Line(s.to_owned());
    assert_eq!(
        model(b"a\nb\r\nc\rd", true, false, 10),
        [l("a"), l("b"), l("c"), l("d"), End]
    );
    assert_eq!(
        model(b"a\nb\r\nc\rd", false, false, 10),
        [l("a"), l("b"), l("c\rd"), End]
    );
    assert_eq!(model(b"abc\r", false, false, 3), [TooLong]);
    assert_eq!(model(b"abc\r\n", false, false, 3), [l("abc"), End]);
    assert_eq!(model(b"abc\r", true, false, 3), [l("abc"), End]);
    assert_eq!(model(b"abc", false, true, 3), [UnexpectedEof]);
    assert_eq!(model(b"", false, true, 3), [End]);
    assert_eq!(model(b"\r\r", true, false, 0), [l(""), l(""), End]);
    assert_eq!(model(b"\xff\n", true, false, 1), [l("\u{fffd}"), End]);
    assert_eq!(model(b"\xe9\n", true, false, 0), [TooLong]);
}
