//! The line reader against a small reference model: every mode (`read_line` with both endings,
//! `read_line_strict`, `read_line_to`, `read_utf8_line`), a random limit, and the input cut into
//! chunks chosen by the fuzzer. After `TooLongLine` the line must still be there, unconsumed.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use net_io::{ByteReadChannel, Error, LineEnding};

include!("../common.rs");

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Method {
    Default,
    Lenient,
    StrictDefault,
    StrictLenient,
    LineToDefault,
    LineToLenient,
    Utf8,
}

impl Method {
    fn lenient(self) -> bool {
        matches!(
            self,
            Method::Lenient | Method::StrictLenient | Method::LineToLenient | Method::Utf8
        )
    }

    fn strict(self) -> bool {
        matches!(self, Method::StrictDefault | Method::StrictLenient)
    }

    fn ending(self) -> LineEnding {
        if self.lenient() {
            LineEnding::Lenient
        } else {
            LineEnding::Default
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Case {
    method: Method,
    limit: u8,
    chunks: Vec<Vec<u8>>,
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Line(String),
    End,
    TooLong,
    UnexpectedEof,
}

/// The next line of `rest` by the rules of SPEC §2.1, as (outcome, bytes consumed).
fn model_line(rest: &[u8], lenient: bool, strict: bool, limit: usize) -> (Outcome, usize) {
    if rest.is_empty() {
        return (Outcome::End, 0);
    }
    let delimiter = rest
        .iter()
        .position(|&b| b == b'\n' || (lenient && b == b'\r'));
    let (content, consumed) = match delimiter {
        Some(i) if rest[i] == b'\r' => (
            i,
            if rest.get(i + 1) == Some(&b'\n') {
                i + 2
            } else {
                i + 1
            },
        ),
        Some(i) if !lenient && i > 0 && rest[i - 1] == b'\r' => (i - 1, i + 1),
        Some(i) => (i, i + 1),
        None => {
            if rest.len() > limit {
                return (Outcome::TooLong, 0);
            }
            if strict {
                return (Outcome::UnexpectedEof, 0);
            }
            (rest.len(), rest.len())
        }
    };
    if content > limit {
        return (Outcome::TooLong, 0);
    }
    let line = String::from_utf8_lossy(&rest[..content]).into_owned();
    (Outcome::Line(line), consumed)
}

async fn read(channel: &mut ByteReadChannel, method: Method, limit: usize) -> Outcome {
    let result = match method {
        Method::Default | Method::Lenient => channel.read_line(limit, method.ending()).await,
        Method::StrictDefault | Method::StrictLenient => {
            channel.read_line_strict(limit, method.ending()).await
        }
        Method::Utf8 => channel.read_utf8_line(limit).await,
        Method::LineToDefault | Method::LineToLenient => {
            let mut out = String::from("kept:");
            match channel.read_line_to(&mut out, limit, method.ending()).await {
                Ok(Some(n)) => {
                    assert_eq!(n, out.len() - 5, "returned length");
                    assert!(out.starts_with("kept:"));
                    Ok(Some(out[5..].to_owned()))
                }
                Ok(None) => {
                    assert_eq!(out, "kept:", "untouched at the end");
                    Ok(None)
                }
                Err(e) => {
                    assert_eq!(out, "kept:", "untouched on error");
                    Err(e)
                }
            }
        }
    };
    match result {
        Ok(Some(line)) => Outcome::Line(line),
        Ok(None) => Outcome::End,
        Err(Error::TooLongLine { limit: l }) => {
            assert_eq!(l, limit);
            Outcome::TooLong
        }
        Err(Error::UnexpectedEof { .. }) => Outcome::UnexpectedEof,
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

fuzz_target!(|case: Case| {
    let input: Vec<u8> = case.chunks.concat();
    let limit = usize::from(case.limit);
    let mut channel = ByteReadChannel::new(ChunkedReader::new(case.chunks));
    let (lenient, strict) = (case.method.lenient(), case.method.strict());
    let mut position = 0;
    drive(async {
        loop {
            let (expected, consumed) = model_line(&input[position..], lenient, strict, limit);
            let actual = read(&mut channel, case.method, limit).await;
            // An unterminated last line over the limit may be reported either way by a strict
            // read: both are true.
            let either = strict
                && expected == Outcome::TooLong
                && actual == Outcome::UnexpectedEof
                && !input[position..]
                    .iter()
                    .any(|&b| b == b'\n' || (lenient && b == b'\r'));
            assert!(
                actual == expected || either,
                "at byte {position}: expected {expected:?}, got {actual:?}"
            );
            match actual {
                Outcome::Line(_) => position += consumed,
                Outcome::End => {
                    assert!(channel.is_closed_for_read());
                    // And again: the end is sticky.
                    assert_eq!(read(&mut channel, case.method, limit).await, Outcome::End);
                    return;
                }
                Outcome::TooLong | Outcome::UnexpectedEof => {
                    // Nothing was consumed: without a limit (and not strict), the same line.
                    let (expected, _) = model_line(&input[position..], lenient, false, usize::MAX);
                    let again = read(
                        &mut channel,
                        if lenient {
                            Method::Lenient
                        } else {
                            Method::Default
                        },
                        usize::MAX,
                    )
                    .await;
                    assert_eq!(again, expected, "the line stayed buffered");
                    return;
                }
            }
        }
    });
});
