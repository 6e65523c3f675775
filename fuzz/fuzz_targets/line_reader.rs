//! Line reads and `read_until` against the shared reference model (SPEC §2.1, §4.2): every line
//! mode (`read_line` with both endings, `read_line_strict`, `read_line_to`, `read_utf8_line`),
//! `read_until` with one- and multi-byte (and empty) delimiters, random limits, over-long lines
//! skipped by the next read, other reads in between, and the input cut into chunks chosen by the
//! fuzzer, the stream ending cleanly or (a flag) with a transport failure, before which every read
//! the bytes decide still succeeds and after which every read that needs more reports it (SPEC §4;
//! the model's `failing`), and transport timeouts before the chunks the fuzzer picks (a read they
//! stop consumes nothing but the skip of an over-long line, which stays due unless it got
//! through its delimiter; reading goes on). Memory the channel holds, counted by a global allocator at every
//! transport read and after every read, and its peak between those points, stays within twice the
//! bytes the transport handed out plus [`SLACK`] (and, for the peak, the line or item returned;
//! SPEC §4).

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
    /// Look-aheads, which keep the skip of an over-long line due (SPEC §4.2; the model's
    /// `drop_skip`): `peek` and `await_content` for this many bytes, and `skip_if_found` when
    /// it finds nothing (when it finds a pattern of one byte or more, it drops the skip).
    Peek(u8),
    Await(u8),
    SkipIfFound(Vec<u8>),
    /// `discard` of up to this many bytes: a read that drops the skip unless it is for none.
    Discard(u8),
}

/// Whether `result` is the transport's failure.
fn failed<T>(result: &net_io::Result<T>) -> bool {
    matches!(result, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
}

#[derive(Arbitrary, Debug)]
struct Case {
    reads: Vec<Read>,
    /// The stream ends with a transport failure (`ConnectionReset`) instead of an end of stream.
    fail: bool,
    /// A chunk of up to 256 KiB among the others.
    big: Option<Big>,
    /// Used in turn before each chunk and before the end (none if empty): `true` puts a
    /// transport timeout (`Error::Timeout`, not final) there.
    stalls: Vec<bool>,
    chunks: Vec<Vec<u8>>,
}

/// The reader: the chunks, a timeout before those `stalls` picks and a `Pending` before each of
/// odd length, then the end of the stream or (`fail`) a `ConnectionReset`.
fn reader(chunks: &[Vec<u8>], stalls: &[bool], fail: bool) -> ChunkedReader {
    let end = fail.then(|| std::io::ErrorKind::ConnectionReset.into());
    ChunkedReader::scripted(chunks, |i| stalled(stalls, i), timeout, end)
}

/// Whether `result` is a transport timeout.
fn is_timeout<T>(result: &net_io::Result<T>) -> bool {
    matches!(result, Err(Error::Timeout))
}

/// The most the channel may hold beyond twice the bytes the transport handed out: its usual
/// buffer (8 KiB, `READ_CHUNK`) made before the first byte lands in it, one growth step of at
/// most 64 KiB (`MAX_STEP`) made before the read that fills it, the 1 KiB probe of the first
/// read, and small allocations (the channel's state, `read_line_to`'s 5-byte `String`). The
/// line or item a read returns, a copy by contract of at most the limit (255 bytes) and a
/// delimiter, is allowed for the peak separately; what the target keeps (the model's answers,
/// the comparison) is allocated [`outside`] the measurement, and results are dropped before
/// each check.
const SLACK: isize = 64 * 1024 + 8 * 1024 + 8 * 1024;

fn outcome<T>(
    result: &net_io::Result<Option<T>>,
    limit: usize,
    wrap: impl Fn(&T) -> Outcome,
) -> Outcome {
    match result {
        Ok(Some(v)) => wrap(v),
        Ok(None) => Outcome::End,
        Err(Error::TooLongLine { limit: l }) => {
            assert_eq!(*l, limit);
            Outcome::TooLong
        }
        Err(Error::UnexpectedEof { .. }) => Outcome::UnexpectedEof,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Outcome::InvalidInput,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Outcome::Failed,
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

/// `UnexpectedEof`'s fields, if `result` is one.
fn eof_fields<T>(result: &net_io::Result<T>) -> Option<(usize, usize)> {
    match result {
        Err(Error::UnexpectedEof { needed, available }) => Some((*needed, *available)),
        _ => None,
    }
}

/// An `UnexpectedEof` says what its docs say (SPEC §4.2): `available` is what was buffered
/// when the channel ended, which stays buffered (the model's rest, after any skip the read
/// made), and `needed` is more than that.
fn check_eof_fields(
    read: &Read,
    fields: Option<(usize, usize)>,
    model: &Model,
    channel: &ByteReadChannel,
) {
    let Some((needed, available)) = fields else {
        return;
    };
    assert_eq!(
        available,
        model.rest().len(),
        "{read:?}: UnexpectedEof's `available` after {} bytes",
        model.consumed()
    );
    assert_eq!(
        channel.available_for_read(),
        available,
        "{read:?}: the bytes of an UnexpectedEof stay buffered"
    );
    assert!(
        needed > available,
        "{read:?}: UnexpectedEof needed {needed} with {available} available"
    );
}

/// A line read by `method`, as the channel returned it (for `read_line_to`, what it appended).
async fn read_line(
    channel: &mut ByteReadChannel,
    method: Method,
    limit: usize,
) -> net_io::Result<Option<String>> {
    match method {
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
                    // In place: no copy of the line.
                    out.drain(..5);
                    Ok(Some(out))
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
    }
}

fuzz_target!(|case: Case| {
    let chunks = with_big(&case.chunks, case.big);
    let input: Vec<u8> = chunks.concat();
    let reader = Metered::new(reader(&chunks, &case.stalls, case.fail), SLACK);
    let mut model = if case.fail {
        Model::failing(&input)
    } else {
        Model::new(&input)
    };
    start_measuring();
    let mut channel = ByteReadChannel::new(reader);
    drive(async {
        for read in &case.reads {
            let before = channel.total_bytes_read();
            // After a timeout (which leaves the channel usable): what the skip of an over-long
            // line consumed before it, if one was due (see the model).
            let timed_out = |model: &mut Model, channel: &ByteReadChannel| {
                let consumed = (channel.total_bytes_read() - before) as usize;
                assert!(
                    model.skipped_before_timeout(consumed),
                    "{read:?} consumed {consumed} bytes before a timeout, after {}",
                    model.consumed()
                );
                (false, 0)
            };
            // The read (measured), then its answer compared with the model's outside the
            // measurement; the bytes of the returned line or item, which the peak may hold.
            let (end, copy) = match read {
                Read::Line { method, limit } => {
                    let limit = usize::from(*limit);
                    let actual = read_line(&mut channel, *method, limit).await;
                    if is_timeout(&actual) {
                        outside(|| timed_out(&mut model, &channel))
                    } else {
                        let copy = actual
                            .as_ref()
                            .map_or(0, |line| line.as_ref().map_or(0, String::capacity));
                        let end = outside(|| {
                            let expected = model.line(method.lenient(), method.strict(), limit);
                            let fields = eof_fields(&actual);
                            let actual = outcome(&actual, limit, |s| Outcome::Line(s.clone()));
                            let end = compare(read, actual, expected, &model);
                            check_eof_fields(read, fields, &model, &channel);
                            end
                        });
                        (end, copy)
                    }
                }
                Read::Until { delimiter, limit } => {
                    let limit = usize::from(*limit);
                    let delimiter = delimiter.bytes();
                    let actual = channel.read_until(delimiter, limit).await;
                    if is_timeout(&actual) {
                        outside(|| timed_out(&mut model, &channel))
                    } else {
                        let copy = actual
                            .as_ref()
                            .map_or(0, |item| item.as_ref().map_or(0, |b| b.len()));
                        let end = outside(|| {
                            let expected = model.until(delimiter, limit);
                            let fields = eof_fields(&actual);
                            let actual = outcome(&actual, limit, |b| Outcome::Item(b.to_vec()));
                            let end = compare(read, actual, expected, &model);
                            check_eof_fields(read, fields, &model, &channel);
                            end
                        });
                        (end, copy)
                    }
                }
                Read::Peek(n) => {
                    let n = usize::from(*n);
                    let left = model.rest().len();
                    let actual = channel.peek(n).await;
                    let copy = match &actual {
                        Ok(Some(b)) => b.len(),
                        _ => 0,
                    };
                    outside(|| {
                        if is_timeout(&actual) {
                            assert_eq!(channel.total_bytes_read(), before, "{read:?}");
                        } else if model.fails() && left < n {
                            assert!(failed(&actual), "{read:?}: {actual:?}");
                        } else {
                            let got = actual.as_ref().expect("peek").as_deref();
                            assert_eq!(got, model.peek(n).as_deref(), "{read:?}");
                        }
                    });
                    (false, copy)
                }
                Read::Await(n) => {
                    let n = usize::from(*n);
                    let left = model.rest().len();
                    let actual = channel.await_content(n).await;
                    outside(|| {
                        if is_timeout(&actual) {
                            assert_eq!(channel.total_bytes_read(), before, "{read:?}");
                        } else if model.fails() && left < n {
                            assert!(failed(&actual), "{read:?}: {actual:?}");
                        } else {
                            let got = *actual.as_ref().expect("await_content");
                            assert_eq!(got, model.has(n), "{read:?}");
                        }
                    });
                    (false, 0)
                }
                Read::SkipIfFound(pattern) => {
                    let actual = channel.skip_if_found(pattern).await;
                    outside(|| {
                        if is_timeout(&actual) {
                            assert_eq!(channel.total_bytes_read(), before, "{read:?}");
                            return;
                        }
                        match model.found(pattern) {
                            None => assert!(failed(&actual), "{read:?}: {actual:?}"),
                            Some(want) => {
                                let got = *actual.as_ref().expect("skip_if_found");
                                assert_eq!(got, want, "{read:?} after {} bytes", model.consumed());
                            }
                        }
                    });
                    (false, 0)
                }
                Read::Discard(n) => {
                    let n = u64::from(*n);
                    let left = model.rest().len() as u64;
                    let actual = channel.discard(n).await;
                    outside(|| {
                        if is_timeout(&actual) {
                            // What it took stays taken; a discard of one byte or more drops
                            // the skip once it returns, having taken bytes or not.
                            let consumed = channel.total_bytes_read() - before;
                            model.discard(consumed);
                            model.drop_skip(n > 0);
                        } else if model.fails() && left < n {
                            assert!(failed(&actual), "{read:?}: {actual:?}");
                            model.discard(n);
                        } else {
                            let got = *actual.as_ref().expect("discard");
                            assert_eq!(got, model.discard(n) as u64, "{read:?}");
                        }
                    });
                    (false, 0)
                }
                Read::Byte => {
                    let actual = channel.read_u8().await;
                    let end = outside(|| {
                        if is_timeout(&actual) {
                            // Nothing consumed; a read that takes bytes drops the skip.
                            assert_eq!(channel.total_bytes_read(), before, "{read:?}");
                            model.drop_skip(true);
                            return false;
                        }
                        let at_end = if model.fails() {
                            Outcome::Failed
                        } else {
                            Outcome::End
                        };
                        let expected = model.take(1).map_or(at_end, Outcome::Item);
                        let actual = match actual {
                            Ok(b) => Outcome::Item(vec![b]),
                            Err(Error::UnexpectedEof { needed, available }) => {
                                assert_eq!((needed, available), (1, 0), "read_u8");
                                Outcome::End
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                                Outcome::Failed
                            }
                            Err(e) => panic!("read_u8: {e:?}"),
                        };
                        compare(read, actual, expected, &model)
                    });
                    (end, 0)
                }
            };
            check_memory(HANDED.get(), SLACK, copy as isize, &|| {
                format!("after {read:?}")
            });
            assert_eq!(channel.total_bytes_read(), model.consumed() as u64);
            if end {
                assert!(channel.is_closed_for_read());
            }
        }
        // Whatever the reads left is still there, in order (after a failure, all of it
        // buffered: a failed channel never turns into an end of stream).
        let mut rest = channel.read_remaining(usize::MAX).await;
        // Each timeout is reported once, and consumes nothing.
        for _ in 0..=chunks.len() {
            if !is_timeout(&rest) {
                break;
            }
            rest = channel.read_remaining(usize::MAX).await;
        }
        let left = match rest {
            Ok(left) => {
                assert!(!model.fails(), "read_remaining ended a failing stream");
                left
            }
            Err(e) => {
                assert!(model.fails(), "read_remaining: {e:?}");
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e:?}");
                assert_eq!(channel.total_bytes_read(), model.consumed() as u64);
                assert_eq!(
                    channel.is_closed_for_read(),
                    channel.available_for_read() == 0
                );
                let n = channel.available_for_read();
                channel.read_bytes(n).await.expect("what is buffered")
            }
        };
        outside(|| assert_eq!(&left[..], model.rest()));
        let copy = left.len() as isize;
        drop(left);
        check_memory(HANDED.get(), SLACK, copy, &|| {
            "after read_remaining".to_owned()
        });
    });
    stop_measuring();
});

/// Compares a read's outcome with the model's; whether it was the end of the input (for a
/// failure, with nothing left).
fn compare(read: &Read, actual: Outcome, expected: Outcome, model: &Model) -> bool {
    assert_eq!(
        actual,
        expected,
        "{read:?} after {} bytes",
        model.consumed()
    );
    expected == Outcome::End || (expected == Outcome::Failed && model.rest().is_empty())
}
