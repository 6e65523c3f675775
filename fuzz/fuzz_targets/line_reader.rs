//! Line reads and `read_until` against the shared reference model (SPEC §2.1, §4.2): every line
//! mode (`read_line` with both endings, `read_line_strict`, `read_line_to`, `read_utf8_line`),
//! `read_until` with one- and multi-byte (and empty) delimiters, random limits, over-long lines
//! skipped by the next read, other reads in between, and the input cut into chunks chosen by
//! the fuzzer.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use net_io::{ByteReadChannel, Error, LineEnding};

#[path = "../../crates/net-io/tests/support/model.rs"]
mod model;

use model::{ChunkedReader, Model, Outcome};

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
enum Delimiter {
    Lf,
    CrLf,
    Blank,
    Other(Vec<u8>),
}

impl Delimiter {
    fn bytes(&self) -> &[u8] {
        match self {
            Delimiter::Lf => b"\n",
            Delimiter::CrLf => b"\r\n",
            Delimiter::Blank => b"\r\n\r\n",
            Delimiter::Other(bytes) => bytes,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Read {
    Line {
        method: Method,
        limit: u8,
    },
    Until {
        delimiter: Delimiter,
        limit: u8,
    },
    /// A read that is not a line read (it drops the skip of an over-long line).
    Byte,
}

#[derive(Arbitrary, Debug)]
struct Case {
    reads: Vec<Read>,
    chunks: Vec<Vec<u8>>,
}

fn outcome<T>(
    result: net_io::Result<Option<T>>,
    limit: usize,
    wrap: impl Fn(T) -> Outcome,
) -> Outcome {
    match result {
        Ok(Some(v)) => wrap(v),
        Ok(None) => Outcome::End,
        Err(Error::TooLongLine { limit: l }) => {
            assert_eq!(l, limit);
            Outcome::TooLong
        }
        Err(Error::UnexpectedEof { .. }) => Outcome::UnexpectedEof,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Outcome::InvalidInput,
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

async fn read_line(channel: &mut ByteReadChannel, method: Method, limit: usize) -> Outcome {
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
    outcome(result, limit, Outcome::Line)
}

fuzz_target!(|case: Case| {
    let input: Vec<u8> = case.chunks.concat();
    let mut channel = ByteReadChannel::new(ChunkedReader::chunks_pausing_at_odd(&case.chunks));
    let mut model = Model::new(&input);
    drive(async {
        for read in &case.reads {
            let (expected, actual) = match read {
                Read::Line { method, limit } => {
                    let limit = usize::from(*limit);
                    let expected = model.line(method.lenient(), method.strict(), limit);
                    (expected, read_line(&mut channel, *method, limit).await)
                }
                Read::Until { delimiter, limit } => {
                    let limit = usize::from(*limit);
                    let delimiter = delimiter.bytes();
                    let expected = model.until(delimiter, limit);
                    let actual = channel.read_until(delimiter, limit).await;
                    (
                        expected,
                        outcome(actual, limit, |b| Outcome::Item(b.to_vec())),
                    )
                }
                Read::Byte => {
                    let expected = model.take(1).map_or(Outcome::End, Outcome::Item);
                    let actual = match channel.read_u8().await {
                        Ok(b) => Outcome::Item(vec![b]),
                        Err(Error::UnexpectedEof { .. }) => Outcome::End,
                        Err(e) => panic!("read_u8: {e:?}"),
                    };
                    (expected, actual)
                }
            };
            assert_eq!(
                actual,
                expected,
                "{read:?} after {} bytes",
                model.consumed()
            );
            assert_eq!(channel.total_bytes_read(), model.consumed() as u64);
            if expected == Outcome::End {
                assert!(channel.is_closed_for_read());
            }
        }
        // Whatever the reads left is still there, in order.
        let left = channel
            .read_remaining(usize::MAX)
            .await
            .expect("read_remaining");
        assert_eq!(&left[..], model.rest());
    });
});
