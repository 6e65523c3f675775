//! The one reference model of `ByteReadChannel`'s reads, and the one scripted reader that feeds
//! them, shared by the property tests (`tests/support/mod.rs` includes this file) and the fuzz
//! targets (`fuzz/common.rs` includes it with `#[path]`).
//!
//! It depends on std and tokio only, so that it can be included anywhere. The model is written
//! as plainly as possible, straight from SPEC §2.1 and §4.2, with no cleverness shared with the
//! implementation: a cursor over the whole input, which it sees at once.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// What one read produced, in a comparable form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A line, decoded as `String::from_utf8_lossy` does.
    Line(String),
    /// The bytes `read_until` returned.
    Item(Vec<u8>),
    /// `Error::TooLongLine`.
    TooLong,
    /// `Error::UnexpectedEof`.
    UnexpectedEof,
    /// An `Error::Io` of kind `InvalidInput` (`read_until` with an empty delimiter).
    InvalidInput,
    /// `Ok(None)`: the input is exhausted.
    End,
    /// The transport's failure, which ends the input of a [`Model::failing`] instead of an end
    /// of stream: the read needed more than the input holds (or to know where it ends).
    Failed,
}

/// A cursor over the input with the channel's rules.
///
/// Reads that fail consume nothing. After `TooLong` from a line read or `read_until`, the next
/// line read or `read_until` first skips through the next delimiter of the over-long line or
/// item (by the rules of the read that found it too long, whichever read comes next); any other
/// read of one byte or more drops that skip, whatever it finds (the look-aheads `peek` and
/// `await_content`, a `skip_if_found` that finds nothing or fails, and reads of no bytes, keep
/// it).
///
/// A [`failing`](Self::failing) model's input ends with a transport failure instead of an end of
/// stream (SPEC §4: "bytes received before it are still read first"): a read that the input
/// decides without knowing where it ends answers as it would with an end of stream; one that
/// needs more, or needs to know that nothing follows, fails ([`Outcome::Failed`]; for the
/// count-taking methods, as documented on each) and consumes nothing unless it is one that
/// consumes as it goes (`discard`, `read_fully`, `copy_to`, the skip of an over-long line).
/// The one exception is a lenient line ended by a CR that is the input's last byte: no byte
/// follows a failure either, so it is a lone CR (as at the end of the stream).
#[derive(Debug)]
pub(crate) struct Model {
    input: Vec<u8>,
    pos: usize,
    skip: Option<Skip>,
    fails: bool,
}

/// The delimiter of an over-long line or item.
#[derive(Debug)]
enum Skip {
    /// A line's (`true`: `LineEnding::Lenient`).
    Line(bool),
    /// `read_until`'s.
    Until(Vec<u8>),
}

impl Model {
    pub(crate) fn new(input: &[u8]) -> Self {
        Model {
            input: input.to_vec(),
            pos: 0,
            skip: None,
            fails: false,
        }
    }

    /// A model whose input ends with a transport failure instead of an end of stream.
    pub(crate) fn failing(input: &[u8]) -> Self {
        Model {
            fails: true,
            ..Model::new(input)
        }
    }

    /// Whether the input ends with a transport failure (see [`failing`](Self::failing)):
    /// then `None` from [`take`](Self::take) and [`peek`](Self::peek), `false` from
    /// [`has`](Self::has) and [`discard_exact`](Self::discard_exact), and a count from
    /// [`discard`](Self::discard) short of its `max`, each mean the failure.
    pub(crate) fn fails(&self) -> bool {
        self.fails
    }

    /// What the channel has not consumed yet.
    pub(crate) fn rest(&self) -> &[u8] {
        &self.input[self.pos..]
    }

    /// How many bytes reads consumed (`total_bytes_read`).
    pub(crate) fn consumed(&self) -> usize {
        self.pos
    }

    /// `read_line` (`strict`: `read_line_strict`); `lenient`: `LineEnding::Lenient`, else
    /// `LineEnding::Default`.
    pub(crate) fn line(&mut self, lenient: bool, strict: bool, limit: usize) -> Outcome {
        if !self.skip_due() {
            return Outcome::Failed;
        }
        let rest = self.rest();
        if rest.is_empty() {
            return self.end();
        }
        // A last line without a delimiter: over the limit it is too long (strict or not).
        let (content, end) = match line_delimiter(rest, lenient) {
            Some(found) => found,
            // Before a failure: too long once no delimiter can end it within the limit (in
            // `Default` mode, a CR right at the limit may still start a CRLF).
            None if self.fails => {
                let least = if !lenient && rest.ends_with(b"\r") {
                    rest.len() - 1
                } else {
                    rest.len()
                };
                if least > limit {
                    self.skip = Some(Skip::Line(lenient));
                    return Outcome::TooLong;
                }
                return Outcome::Failed;
            }
            None if strict && rest.len() <= limit => return Outcome::UnexpectedEof,
            None => (rest.len(), rest.len()),
        };
        if content > limit {
            self.skip = Some(Skip::Line(lenient));
            return Outcome::TooLong;
        }
        let line = String::from_utf8_lossy(&rest[..content]).into_owned();
        self.pos += end;
        Outcome::Line(line)
    }

    /// `Ok(None)` at the end of the input, or the failure that ends it.
    fn end(&self) -> Outcome {
        if self.fails {
            Outcome::Failed
        } else {
            Outcome::End
        }
    }

    /// Skips the rest of an over-long line or item through its delimiter, if one is due;
    /// false if the input fails before the delimiter (what was skipped stays skipped, and the
    /// skip stays due).
    fn skip_due(&mut self) -> bool {
        let Some(skip) = self.skip.take() else {
            return true;
        };
        let rest = self.rest();
        if self.fails {
            let (skipped, found) = match &skip {
                // A lenient CR that ends the input may start a CRLF: it stays.
                Skip::Line(true) if rest.ends_with(b"\r") => match line_delimiter(rest, true) {
                    Some((i, end)) if i + 1 < rest.len() => (end, true),
                    _ => (rest.len() - 1, false),
                },
                Skip::Line(lenient) => match line_delimiter(rest, *lenient) {
                    Some((_, end)) => (end, true),
                    None => (rest.len(), false),
                },
                // The delimiter's first bytes may end the input: they stay.
                Skip::Until(delimiter) => match find(rest, delimiter) {
                    Some(i) => (i + delimiter.len(), true),
                    None => (rest.len().saturating_sub(delimiter.len() - 1), false),
                },
            };
            self.pos += skipped;
            if !found {
                self.skip = Some(skip);
            }
            return found;
        }
        let skipped = match skip {
            Skip::Line(lenient) => line_delimiter(rest, lenient).map(|(_, end)| end),
            Skip::Until(delimiter) => find(rest, &delimiter).map(|i| i + delimiter.len()),
        };
        self.pos += skipped.unwrap_or(rest.len());
        true
    }

    /// A read that takes bytes (`takes`) drops a due skip.
    pub(crate) fn drop_skip(&mut self, takes: bool) {
        if takes {
            self.skip = None;
        }
    }

    /// `read_until(delimiter, limit)`.
    pub(crate) fn until(&mut self, delimiter: &[u8], limit: usize) -> Outcome {
        if delimiter.is_empty() {
            return Outcome::InvalidInput;
        }
        if !self.skip_due() {
            return Outcome::Failed;
        }
        let rest = self.rest();
        if rest.is_empty() {
            return self.end();
        }
        match find(rest, delimiter) {
            Some(i) if i <= limit => {
                let item = rest[..i].to_vec();
                self.pos += i + delimiter.len();
                Outcome::Item(item)
            }
            Some(_) => {
                self.skip = Some(Skip::Until(delimiter.to_vec()));
                Outcome::TooLong
            }
            // Before a failure: undecided while a delimiter may still start at or before the
            // limit (its first bytes ending the input).
            None if self.fails
                && (rest.len() <= limit
                    || (rest.len().saturating_sub(delimiter.len() - 1)..=limit)
                        .any(|p| delimiter.starts_with(&rest[p..]))) =>
            {
                Outcome::Failed
            }
            None if rest.len() > limit => {
                self.skip = Some(Skip::Until(delimiter.to_vec()));
                Outcome::TooLong
            }
            None => Outcome::UnexpectedEof,
        }
    }

    /// After a line read or `read_until` that timed out having consumed `consumed` bytes: only
    /// the skip of an over-long line consumes before such a read times out, through its
    /// delimiter (then it is done) or short of it (then it stays due). Whether the bytes
    /// consumed fit that (a read with no skip due consumes nothing).
    pub(crate) fn skipped_before_timeout(&mut self, consumed: usize) -> bool {
        let Some(region) = self.input.get(self.pos..self.pos + consumed) else {
            return false;
        };
        let end = match &self.skip {
            None => return consumed == 0,
            Some(Skip::Line(lenient)) => line_delimiter(region, *lenient).map(|(_, end)| end),
            Some(Skip::Until(delimiter)) => find(region, delimiter).map(|i| i + delimiter.len()),
        };
        match end {
            Some(end) if end != consumed => return false,
            Some(_) => self.skip = None,
            None => {}
        }
        self.pos += consumed;
        true
    }

    /// Exactly `n` bytes (`read_bytes`, typed reads), or `None` at the end of the input (then
    /// nothing is consumed).
    pub(crate) fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        self.drop_skip(n > 0);
        let bytes = self.rest().get(..n)?.to_vec();
        self.pos += n;
        Some(bytes)
    }

    /// The next `n` bytes without consuming them (`peek`), `None` if the input has fewer.
    pub(crate) fn peek(&mut self, n: usize) -> Option<Vec<u8>> {
        self.rest().get(..n).map(<[u8]>::to_vec)
    }

    /// Whether `n` bytes are there (`await_content`).
    pub(crate) fn has(&mut self, n: usize) -> bool {
        self.rest().len() >= n
    }

    /// Skips up to `max` bytes (`discard`); returns how many.
    pub(crate) fn discard(&mut self, max: u64) -> usize {
        self.drop_skip(max > 0);
        let n = usize::try_from(max)
            .unwrap_or(usize::MAX)
            .min(self.rest().len());
        self.pos += n;
        n
    }

    /// Skips exactly `n` bytes (`discard_exact`): false at the end of the input, when what
    /// was there is skipped anyway.
    pub(crate) fn discard_exact(&mut self, n: u64) -> bool {
        let enough = self.rest().len() as u64 >= n;
        self.discard(n);
        enough
    }

    /// `skip_if_found`, `None` for the failure (a failing input that is a proper prefix of
    /// `pattern`).
    pub(crate) fn found(&mut self, pattern: &[u8]) -> Option<bool> {
        let rest = self.rest();
        if self.fails && rest.len() < pattern.len() && pattern.starts_with(rest) {
            return None;
        }
        Some(self.skip_if_found(pattern))
    }

    /// Consumes `pattern` if the input continues with it (`skip_if_found`).
    pub(crate) fn skip_if_found(&mut self, pattern: &[u8]) -> bool {
        if self.rest().starts_with(pattern) {
            self.drop_skip(!pattern.is_empty());
            self.pos += pattern.len();
            true
        } else {
            false
        }
    }
}

/// The first line delimiter in `rest`: (content length, bytes up to the delimiter's end).
fn line_delimiter(rest: &[u8], lenient: bool) -> Option<(usize, usize)> {
    let i = rest
        .iter()
        .position(|&b| b == b'\n' || (lenient && b == b'\r'))?;
    Some(if rest[i] == b'\r' {
        // Lenient only: CRLF, or a lone CR (also when it is the input's last byte).
        if rest.get(i + 1) == Some(&b'\n') {
            (i, i + 2)
        } else {
            (i, i + 1)
        }
    } else if !lenient && i > 0 && rest[i - 1] == b'\r' {
        (i - 1, i + 1)
    } else {
        (i, i + 1)
    })
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One step of a [`ChunkedReader`] script.
#[derive(Debug)]
pub(crate) enum Step {
    /// Hand out these bytes (over several reads if the caller's buffer is smaller).
    Data(Vec<u8>),
    /// Return `Poll::Pending` once, waking the task immediately.
    Pending,
    /// Fail the read with this error.
    Fail(io::Error),
}

/// An `AsyncRead` that plays back a script of chunks, pauses and errors, then reports EOF.
///
/// Each `poll_read` hands out bytes from one `Data` step at most, so a reader sees exactly the
/// chunk boundaries the script chose. A `Pending` step returns `Poll::Pending` after waking the
/// task, so the reader must cope with data arriving over several polls.
#[derive(Debug, Default)]
pub(crate) struct ChunkedReader {
    steps: VecDeque<Step>,
    /// Current position inside the front `Data` step.
    offset: usize,
    /// How many times `poll_read` has been called.
    pub(crate) polls: usize,
}

impl ChunkedReader {
    /// A reader that plays back `steps` and then reports EOF.
    pub(crate) fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        ChunkedReader {
            steps: steps.into_iter().collect(),
            offset: 0,
            polls: 0,
        }
    }

    /// A reader that hands out `chunks` one per read, with no pauses.
    pub(crate) fn chunks<I, C>(chunks: I) -> Self
    where
        I: IntoIterator<Item = C>,
        C: AsRef<[u8]>,
    {
        Self::new(chunks.into_iter().map(|c| Step::Data(c.as_ref().to_vec())))
    }

    /// A reader that hands out `chunks` one per read with a `Poll::Pending` before each one.
    pub(crate) fn chunks_with_pauses<I, C>(chunks: I) -> Self
    where
        I: IntoIterator<Item = C>,
        C: AsRef<[u8]>,
    {
        let mut steps = Vec::new();
        for c in chunks {
            steps.push(Step::Pending);
            steps.push(Step::Data(c.as_ref().to_vec()));
        }
        Self::new(steps)
    }

    /// A reader that hands out `chunks` one per read, with a `Poll::Pending` before each chunk
    /// of odd length (the fuzz targets' choice: the fuzzer picks the pauses with the lengths).
    pub(crate) fn chunks_pausing_at_odd<I, C>(chunks: I) -> Self
    where
        I: IntoIterator<Item = C>,
        C: AsRef<[u8]>,
    {
        let mut steps = Vec::new();
        for c in chunks {
            let c = c.as_ref();
            if c.len() % 2 == 1 {
                steps.push(Step::Pending);
            }
            steps.push(Step::Data(c.to_vec()));
        }
        Self::new(steps)
    }

    /// The fuzz targets' reader: `chunks` one per read, with a read failing with `timeout()`
    /// before each chunk (and before the end) that `stalled` picks by its index, and a
    /// `Poll::Pending` before each chunk of odd length; then `end`'s error, or the end of the
    /// stream.
    pub(crate) fn scripted(
        chunks: &[Vec<u8>],
        stalled: impl Fn(usize) -> bool,
        timeout: impl Fn() -> io::Error,
        end: Option<io::Error>,
    ) -> Self {
        let mut steps = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            if stalled(i) {
                steps.push(Step::Fail(timeout()));
            }
            if chunk.len() % 2 == 1 {
                steps.push(Step::Pending);
            }
            steps.push(Step::Data(chunk.clone()));
        }
        if stalled(chunks.len()) {
            steps.push(Step::Fail(timeout()));
        }
        steps.extend(end.map(Step::Fail));
        Self::new(steps)
    }

    /// A reader that hands out `data` one byte per read, pausing before every byte.
    pub(crate) fn bytewise(data: &[u8]) -> Self {
        Self::chunks_with_pauses(data.chunks(1))
    }
}

impl AsyncRead for ChunkedReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.polls += 1;
        loop {
            match this.steps.pop_front() {
                None => return Poll::Ready(Ok(())),
                Some(Step::Pending) => {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Some(Step::Fail(e)) => return Poll::Ready(Err(e)),
                Some(Step::Data(data)) => {
                    let rest = &data[this.offset..];
                    if rest.is_empty() {
                        this.offset = 0;
                        continue;
                    }
                    if buf.remaining() == 0 {
                        this.steps.push_front(Step::Data(data));
                        return Poll::Ready(Ok(()));
                    }
                    let n = rest.len().min(buf.remaining());
                    buf.put_slice(&rest[..n]);
                    this.offset += n;
                    if this.offset == data.len() {
                        this.offset = 0;
                    } else {
                        this.steps.push_front(Step::Data(data));
                    }
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}
